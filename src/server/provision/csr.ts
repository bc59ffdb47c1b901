import { createPrivateKey, webcrypto } from "node:crypto";
import type * as X509 from "@peculiar/x509";
import { loadX509, x509Crypto } from "../../core/security/index.js";

/** The subject fields gencsr takes, under Choria's input names. */
export interface CsrSubject {
  cn: string;
  C?: string;
  L?: string;
  O?: string;
  OU?: string;
  ST?: string;
}

export interface GeneratedCsr {
  csrPem: string;
  /** PKCS#1 ("RSA PRIVATE KEY"), the form Choria's file security provider reads */
  keyPem: string;
  publicKeyPem: string;
}

const RSA = {
  name: "RSASSA-PKCS1-v1_5",
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: "SHA-256",
} as const;

/** An RSA-2048 key and a SHA-256 CSR for it, the subject in Go's pkix order, the CN also as a DNS SAN. */
export async function createRsaCsr(subject: CsrSubject): Promise<GeneratedCsr> {
  const x509 = await loadX509();
  const crypto = x509Crypto;
  const keys = (await webcrypto.subtle.generateKey(RSA, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const name: X509.JsonName = [];
  for (const k of ["C", "ST", "L", "O", "OU"] as const) {
    const v = subject[k];
    if (v) name.push({ [k]: [v] });
  }
  name.push({ CN: [subject.cn] });
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name,
      keys: keys as unknown as X509.Pkcs10CertificateRequestCreateParams["keys"],
      signingAlgorithm: RSA,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: subject.cn }], false)],
    },
    crypto,
  );
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
  const spki = Buffer.from(await webcrypto.subtle.exportKey("spki", keys.publicKey));
  return {
    csrPem: csr.toString("pem"),
    keyPem: createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" })
      .export({ format: "pem", type: "pkcs1" })
      .toString(),
    publicKeyPem: x509.PemConverter.encode(spki, "PUBLIC KEY"),
  };
}
