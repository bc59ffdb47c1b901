import { readFileSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { Option, type Command } from "commander";
import {
  CaError,
  CertificateAuthority,
  MAX_CSR_BYTES,
  REVOCATION_REASONS,
  type CaSans,
  type CertificateInfo,
  type RevocationReason,
} from "../../core/ca/index.js";
import type { CertUsage } from "../../core/security/index.js";
import { collect } from "./common.js";
import { guarded } from "./errors.js";
import { FlagError, intArg } from "./flags.js";
// words.js alone: the render index would load the client for nothing
import { plural } from "./render/words.js";

interface InitFlags {
  dir: string;
  algorithm: "rsa" | "ed25519";
  cn: string;
  rootValidity: number;
  intermediateValidity: number;
  allow?: string[];
  deny?: string[];
  defaultDeny: boolean;
  maxValidity?: number;
}

interface SignFlags {
  dir: string;
  san?: CaSans;
  validity?: number;
  usage: CertUsage;
  out?: string;
  chain?: string;
}

const days = (flag: string) =>
  intArg(flag, { min: 1, max: 36_500, expected: "a number of days from 1 to 36500" });

/** A file error in a few words ("no such file"), not node's "ENOENT: ..., open 'x'". */
function fsError(what: string, path: string, err: unknown): CaError {
  const code = (err as NodeJS.ErrnoException).code;
  const why =
    code === "ENOENT"
      ? "no such file"
      : code === "EACCES" || code === "EPERM"
        ? "permission denied"
        : code === "EISDIR"
          ? "it is a directory"
          : (err as Error).message;
  return new CaError("io", `cannot ${what} ${path}: ${why}`, { cause: err });
}

const SAN_KINDS = ["dns", "ip", "email", "uri"] as const;

/** `--san` values: `kind:value`, or a bare value taken as an IP, an email, a URI or a DNS name by its shape. */
function sanArg(v: string, prev: CaSans | undefined): CaSans {
  const sans: CaSans = { ...(prev ?? {}) };
  const m = /^(dns|ip|email|uri):(.*)$/i.exec(v);
  const kind = m
    ? ((m[1] as string).toLowerCase() as (typeof SAN_KINDS)[number])
    : isIP(v)
      ? "ip"
      : v.includes("://")
        ? "uri"
        : v.includes("@")
          ? "email"
          : "dns";
  const value = m ? (m[2] as string) : v;
  if (value.trim() === "") throw new FlagError(`--san: "${v}" has no name`);
  sans[kind] = [...(sans[kind] ?? []), value];
  return sans;
}

function writeOut(path: string, text: string): void {
  try {
    writeFileSync(path, text, { mode: 0o644 });
  } catch (err) {
    throw fsError("write", path, err);
  }
}

/** The CSR from a file, or stdin for "-" or none; a little over the size limit is read so sign() can refuse it. */
async function readCsr(file: string | undefined): Promise<string> {
  if (file !== undefined && file !== "-") {
    try {
      return readFileSync(file, "utf8");
    } catch (err) {
      throw fsError("read", file, err);
    }
  }
  if (process.stdin.isTTY) throw new CaError("bad_csr", "no CSR: give a file, or pipe one on standard input");
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size > MAX_CSR_BYTES) break;
  }
  return Buffer.concat(chunks).toString("utf8");
}

const day = (d: Date) => d.toISOString().slice(0, 10);

function sansText(s: CaSans): string {
  return SAN_KINDS.flatMap((k) => (s[k] ?? []).map((v) => (k === "dns" ? v : `${k}:${v}`))).join(",");
}

function renderList(certs: readonly CertificateInfo[]): string {
  if (certs.length === 0) return "No certificates issued\n";
  const rows = [
    ["SERIAL", "STATUS", "NOT AFTER", "SUBJECT", "SANS"],
    ...certs.map((c) => [
      c.serial,
      c.status,
      day(c.notAfter),
      c.subject.replace(/\n/g, ","),
      sansText(c.sans),
    ]),
  ];
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  const lines = rows.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] as number)))
      .join("  ")
      .trimEnd(),
  );
  const revoked = certs.filter((c) => c.status === "revoked").length;
  return `${lines.join("\n")}\n\n${plural(certs.length, "certificate")}, ${revoked} revoked\n`;
}

function listJson(certs: readonly CertificateInfo[]): string {
  const rows = certs.map((c) => ({
    ...c,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    ...(c.revokedAt ? { revokedAt: c.revokedAt.toISOString() } : {}),
  }));
  return `${JSON.stringify(rows, null, 2)}\n`;
}

/** `chorus ca init|sign|revoke|list|crl|verify --dir DIR`: a file-backed certificate authority. */
export function register(program: Command): void {
  const ca = program
    .command("ca")
    .description("A certificate authority in a directory: root, signing intermediate, CRL");
  const sub = (name: string, desc: string) =>
    ca.command(name).description(desc).requiredOption("--dir <dir>", "the CA's directory");

  sub("init", "Create a CA: a root and the intermediate that signs")
    .addOption(new Option("--algorithm <alg>", "key type").choices(["rsa", "ed25519"]).default("rsa"))
    .option("--cn <name>", "the root's common name (the intermediate's adds \" Intermediate\")", "Chorus CA")
    .option("--root-validity <days>", "root lifetime", days("--root-validity"), 3650)
    .option("--intermediate-validity <days>", "intermediate lifetime", days("--intermediate-validity"), 1825)
    .option("--allow <regex>", "names (CN and DNS SANs) must match one of these (repeatable)", collect)
    .option(
      "--deny <regex>",
      "refuse names matching this, instead of Choria's cert_deny_list (repeatable)",
      collect,
    )
    .option("--no-default-deny", "start with no denied names instead of Choria's cert_deny_list")
    .option("--max-validity <days>", "longest leaf lifetime (default 1825)", days("--max-validity"))
    .action(
      guarded("ca init", async (o: InitFlags) => {
        const policy = {
          ...(o.allow ? { allowed_names: o.allow } : {}),
          ...(o.deny ? { deny_names: o.deny } : o.defaultDeny ? {} : { deny_names: [] }),
          ...(o.maxValidity !== undefined ? { max_validity_days: o.maxValidity } : {}),
        };
        const made = await CertificateAuthority.init(o.dir, {
          algorithm: o.algorithm,
          cn: o.cn,
          rootValidityDays: o.rootValidity,
          intermediateValidityDays: o.intermediateValidity,
          policy,
        });
        const deny = made.policy.deny_names.length ? made.policy.deny_names.join(" ") : "none";
        process.stdout.write(
          [
            `Created an ${made.algorithm} certificate authority in ${made.dir}`,
            `  root:         ${join(made.dir, "root.pem")}`,
            `  intermediate: ${join(made.dir, "intermediate.pem")} (signs certificates and CRLs)`,
            `  chain:        ${join(made.dir, "chain.pem")}`,
            `  denied names: ${deny}`,
            `  allowed:      ${made.policy.allowed_names.join(" ") || "any other name"}`,
            `  max validity: ${made.policy.max_validity_days} days`,
            `Signing needs only the intermediate key: ${join(made.dir, "root.key")} can be moved offline.`,
            "",
          ].join("\n"),
        );
      }),
    );

  sub("sign", "Sign a CSR (PEM file, or standard input); prints the certificate")
    .argument("[csr]", "CSR file, - or absent for standard input")
    .option(
      "--san <name>",
      "subject alternative name: dns:, ip:, email:, uri: or a bare name (repeatable; replaces the CSR's)",
      sanArg,
    )
    .option(
      "--validity <days>",
      "certificate lifetime (default 365, or the policy's maximum if lower)",
      days("--validity"),
    )
    .addOption(
      new Option("--usage <usage>", "TLS use the certificate allows")
        .choices(["server", "client", "both"])
        .default("both"),
    )
    .option("--out <file>", "write the certificate here instead of standard output")
    .option("--chain <file>", "also write the intermediate and root here")
    .action(
      guarded("ca sign", async (file: string | undefined, o: SignFlags) => {
        const csr = await readCsr(file);
        const authority = await CertificateAuthority.open(o.dir);
        const signed = await authority.sign(csr, {
          ...(o.san ? { sans: o.san } : {}),
          ...(o.validity !== undefined ? { validityDays: o.validity } : {}),
          usage: o.usage,
        });
        if (o.out) writeOut(o.out, signed.certificatePem);
        else process.stdout.write(signed.certificatePem);
        if (o.chain) writeOut(o.chain, signed.chainPem);
        process.stderr.write(
          `signed serial ${signed.serial}, valid until ${signed.notAfter.toISOString()}\n`,
        );
      }),
    );

  sub("revoke", "Revoke a certificate by serial; it is in the next CRL")
    .argument("<serial>", "the serial number (hex) from chorus ca list")
    .addOption(
      new Option("--reason <reason>", "RFC 5280 reason")
        .choices([...REVOCATION_REASONS])
        .default("unspecified"),
    )
    .action(
      guarded("ca revoke", async (serial: string, o: { dir: string; reason: RevocationReason }) => {
        const authority = await CertificateAuthority.open(o.dir);
        const r = await authority.revoke(serial, o.reason);
        process.stdout.write(`revoked ${r.serial} (${r.subject.replace(/\n/g, ",")}), reason ${o.reason}\n`);
      }),
    );

  sub("list", "List the certificates issued")
    .option("--json", "JSON output")
    .action(
      guarded("ca list", async (o: { dir: string; json?: boolean }) => {
        const authority = await CertificateAuthority.open(o.dir);
        const certs = await authority.list();
        process.stdout.write(o.json ? listJson(certs) : renderList(certs));
      }),
    );

  sub("crl", "Make a CRL signed by the intermediate; prints it")
    .option(
      "--next-update <days>",
      "when relying parties should fetch the next one",
      days("--next-update"),
      7,
    )
    .option("--out <file>", "write the CRL here instead of standard output")
    .action(
      guarded("ca crl", async (o: { dir: string; nextUpdate: number; out?: string }) => {
        const authority = await CertificateAuthority.open(o.dir);
        const crl = await authority.crl({ nextUpdateDays: o.nextUpdate });
        if (o.out) writeOut(o.out, crl);
        else process.stdout.write(crl);
      }),
    );

  sub("verify", "Check that a certificate was issued by this CA, is in date and not revoked")
    .argument("<cert>", "certificate PEM file")
    .action(
      guarded("ca verify", async (file: string, o: { dir: string }) => {
        let pem: string;
        try {
          pem = readFileSync(file, "utf8");
        } catch (err) {
          throw fsError("read", file, err);
        }
        const authority = await CertificateAuthority.open(o.dir);
        const v = await authority.verifyChain(pem);
        if (!v.valid) {
          process.stderr.write(`chorus ca verify: ${file}: ${v.reason}: ${v.message}\n`);
          process.exit(1);
        }
        process.stdout.write(`${file}: valid, serial ${v.serial}, until ${v.notAfter.toISOString()}\n`);
      }),
    );
}
