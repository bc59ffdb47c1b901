import { X509Certificate, randomBytes, webcrypto } from "node:crypto";
import { posix } from "node:path";
import type * as X509 from "@peculiar/x509";
import type { CertificateAuthority } from "../../core/ca/index.js";
import {
  SecurityError,
  sealForNode,
  verify,
  verifyProvisioningToken,
  type Issuer,
  type ProvisioningClaims,
} from "../../core/security/index.js";
import type { Logger } from "../../core/util/index.js";
import { truthy, type ProvisionerConfig } from "./config.js";
import { HelperError, ProvisionError } from "./errors.js";
import type { HelperInput, HelperOutput } from "./helper.js";
import { mintServerCredential, planServerToken } from "./mint.js";

/** One RPC to one node; resolves with the reply's data when its status is OK. */
export interface NodeRpc {
  /**
   * Tries up to `tries` times with backoff. Throws ProvisionError "no_reply" when the
   * node never answered, "rpc_failed" (with the node's message) when it refused.
   */
  call(
    identity: string,
    agent: string,
    action: string,
    data: Record<string, unknown>,
    o: { tries: number },
  ): Promise<Record<string, unknown>>;
}

export interface SequenceDeps {
  config: ProvisionerConfig;
  rpc: NodeRpc;
  /** runs the helper (counted and timed by the caller); absent without one */
  helper?: (input: HelperInput) => Promise<HelperOutput>;
  /** the chain issuer that signs server tokens (ed25519) */
  chainIssuer?: () => Issuer;
  /** the CHORIA account the node's NATS user belongs to (ed25519) */
  choriaAccountPublic?: string;
  /** the CA store that signs CSRs (pki without a certificate from the helper) */
  ca?: () => Promise<CertificateAuthority>;
  /** node configuration keys under default_configuration (the broker URLs) */
  nodeDefaults?: Record<string, string>;
  /** org issuer keys a node is told to trust when its configuration names no issuers */
  issuers?: string[];
  log: Pick<Logger, "debug" | "info" | "warn">;
  /** keeps the work item (in-progress ack) between steps */
  working?: () => void;
  signal?: AbortSignal;
  /** counts shutdown requests from the helper */
  onShutdownRequest?: () => void;
  /**
   * Set once configure was sent: from then on the node may have written its new config
   * even if no answer came, so an interrupted attempt must not be handed on at once.
   */
  progress?: { configureSent: boolean };
}

export type ProvisionOutcomeKind =
  /** configured and restarted */
  | "provisioned"
  /** an earlier attempt had configured it: this one only restarted it */
  | "already_done"
  /** the helper asked to try again later */
  | "deferred"
  /** the helper asked for the node to shut down, and it was told to */
  | "shutdown";

export interface ProvisionOutcome {
  outcome: ProvisionOutcomeKind;
  message?: string;
}

const AGENT = "choria_provision";

// @peculiar/x509 needs the Reflect metadata API before it loads; most runs never parse a CSR
let x509Lib: Promise<typeof X509> | undefined;
const loadX509 = (): Promise<typeof X509> =>
  (x509Lib ??= import("reflect-metadata").then(() => import("@peculiar/x509")));
const x509Crypto = webcrypto as unknown as NonNullable<
  Parameters<X509.Pkcs10CertificateRequest["verify"]>[0]
>;

/** The CSR's single CN, after checking its signature. */
export async function csrCommonName(pem: string): Promise<string> {
  const x509 = await loadX509();
  let csr: X509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (err) {
    throw new ProvisionError("untrusted", "the node's CSR is not a PEM certificate request", { cause: err });
  }
  let ok = false;
  try {
    ok = await csr.verify(x509Crypto);
  } catch {
    // an algorithm the library cannot check counts as a bad signature
  }
  if (!ok) throw new ProvisionError("untrusted", "the node's CSR signature does not match its key");
  const cns = csr.subjectName.getField("CN");
  if (cns.length !== 1)
    throw new ProvisionError("untrusted", `the node's CSR names ${cns.length} common names, not one`);
  return cns[0] as string;
}

function str(d: Record<string, unknown>, key: string, action: string): string {
  const v = d[key];
  if (typeof v !== "string" || v === "")
    throw new ProvisionError("rpc_failed", `${action} answered without ${key}`);
  return v;
}

/**
 * Provisions one node, Choria's sequence: jwt (verify the provisioning token), gen25519
 * (key proof over a nonce), rpcutil#inventory, gencsr (pki), the helper, mint, a last
 * check that the node is still the one in provisioning mode, configure, restart.
 *
 * `redelivered`: an earlier attempt may have configured the node and died before the
 * restart; the node is then asked to restart first, which it refuses while its written
 * config still says provision, so the node is never configured twice.
 */
export async function provisionNode(
  d: SequenceDeps,
  identity: string,
  o: { redelivered?: boolean } = {},
): Promise<ProvisionOutcome> {
  const cfg = d.config;
  const log = d.log;
  const stopped = () => {
    if (d.signal?.aborted) throw new ProvisionError("stopped", "the provisioner is stopping");
  };
  const call = async (action: string, data: Record<string, unknown>, tries: number) => {
    stopped();
    const r = await d.rpc.call(identity, AGENT, action, { token: cfg.token, ...data }, { tries });
    d.working?.();
    return r;
  };
  checkDenied(cfg.cert_deny_list, identity, "identity");

  if (o.redelivered) {
    try {
      await call("restart", { splay: 1 }, 1);
      log.info({ identity }, "node was configured by an earlier attempt; restarted it");
      return { outcome: "already_done", message: "restarted after an earlier configure" };
    } catch (err) {
      if (!(err instanceof ProvisionError) || err.code === "stopped") throw err;
      if (err.code === "no_reply")
        throw new ProvisionError(
          "state",
          `${identity} does not answer in provisioning mode any more (provisioned or gone)`,
          { cause: err },
        );
      // refused: its config still says provision, so start over
      log.debug({ identity, why: err.message }, "node not configured yet; provisioning it");
    }
  }

  // 1. the provisioning token: is this one of our nodes?
  const first = await call("jwt", {}, 3);
  const jwt = str(first, "jwt", "jwt");
  let claims: ProvisioningClaims;
  try {
    claims = verifyProvisioningToken(jwt, cfg.jwtVerifyKeys);
  } catch (err) {
    throw new ProvisionError("untrusted", `${identity}'s provisioning token: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (claims.cht !== cfg.token)
    throw new ProvisionError(
      "untrusted",
      `${identity}'s provisioning token carries a different token (cht) than this provisioner's`,
    );

  // 2. the node's own ed25519 key, proven by signing our nonce
  let ed: HelperInput["ed25519_pubkey"] = null;
  if (cfg.features.ed25519) {
    const nonce = randomBytes(32).toString("hex");
    const g = await call("gen25519", { nonce }, 5);
    const pub = str(g, "public_key", "gen25519").toLowerCase();
    const sig = str(g, "signature", "gen25519");
    if (!/^[0-9a-f]{64}$/.test(pub) || !/^[0-9a-fA-F]{128}$/.test(sig))
      throw new ProvisionError("untrusted", `${identity}'s gen25519 key or signature is not hex ed25519`);
    if (!verify(pub, Buffer.from(nonce), Buffer.from(sig, "hex")))
      throw new ProvisionError(
        "untrusted",
        `${identity}'s gen25519 signature over the nonce does not verify`,
      );
    ed = { public_key: pub, directory: typeof g.directory === "string" ? g.directory : "", signature: sig };
  }

  // 3. what the node is, for the helper
  stopped();
  const inventory = await d.rpc.call(identity, "rpcutil", "inventory", {}, { tries: 5 });
  d.working?.();

  // 4. a CSR for pki; the key stays on the node
  let csr: HelperInput["csr"] = null;
  if (cfg.features.pki) {
    const c = await call("gencsr", { cn: identity }, 1);
    csr = {
      csr: str(c, "csr", "gencsr"),
      public_key: typeof c.public_key === "string" ? c.public_key : "",
      ssldir: typeof c.ssldir === "string" ? c.ssldir : "",
    };
    const cn = await csrCommonName(csr.csr);
    if (cn !== identity)
      throw new ProvisionError(
        "untrusted",
        `${identity}'s CSR is for ${JSON.stringify(cn)}, not its identity`,
      );
    checkDenied(cfg.cert_deny_list, cn, "CSR common name");
  }

  // 5. the helper decides the configuration
  let out: HelperOutput = {};
  if (d.helper) {
    stopped();
    try {
      out = await d.helper({
        identity,
        csr,
        ed25519_pubkey: ed,
        inventory: JSON.stringify(inventory),
        jwt: { ...claims },
      });
    } catch (err) {
      if (err instanceof HelperError)
        throw new ProvisionError("helper", `helper for ${identity}: ${err.message}`, { cause: err });
      throw err;
    }
    d.working?.();
    if (out.defer) return { outcome: "deferred", message: out.msg ?? "the helper deferred the node" };
    if (out.shutdown) {
      d.onShutdownRequest?.();
      await call("shutdown", {}, 1);
      return { outcome: "shutdown", message: out.msg ?? "the helper asked for a shutdown" };
    }
    if (!out.configuration || Object.keys(out.configuration).length === 0)
      throw new ProvisionError("helper", `the helper returned no configuration for ${identity}`);
    if (out.upgrade)
      log.warn({ identity, upgrade: out.upgrade }, "release updates are not supported; ignoring upgrade");
  }

  // 6. still the same node process in provisioning mode? (its ECDH key is per process)
  const again = await call("jwt", {}, 3);
  if (str(again, "jwt", "jwt") !== jwt)
    throw new ProvisionError("state", `${identity}'s provisioning token changed during provisioning`);
  const ecdh = typeof again.ecdh_public === "string" ? again.ecdh_public : "";

  // 7. what it will run with
  const ssldir = cfg.features.pki && csr ? (out.ssldir ?? csr.ssldir) : "";
  const configuration = nodeConfiguration(d, identity, out, ed, ssldir);
  const data: Record<string, unknown> = {};
  if (cfg.features.ed25519 && ed) {
    const issuer = d.chainIssuer?.();
    if (!issuer || !d.choriaAccountPublic)
      throw new ProvisionError("mint", "no chain issuer or CHORIA account to mint server credentials with");
    const plan = planServerToken(identity, {
      collectives: (configuration.collectives ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== ""),
      validityS: cfg.serverJwtValidityS,
      override: out.server_claims,
      issuerExp: issuer.issexp,
    });
    for (const note of plan.notes) log.info({ identity }, note);
    const minted = await mintServerCredential(plan, ed.public_key, issuer, d.choriaAccountPublic);
    data.server_jwt = minted.serverJwt;
    data.nats_jwt = minted.natsJwt;
  }
  if (cfg.features.pki && csr) {
    if (out.certificate) {
      data.certificate = out.certificate;
      if (out.ca) data.ca = out.ca;
    } else if (d.ca) {
      try {
        const ca = await d.ca();
        const signed = await ca.sign(csr.csr, {
          sans: { dns: [identity] },
          usage: "both",
          validityDays: leafDays(ca, cfg.certificateValidityDays),
        });
        data.certificate = signed.certificatePem;
        data.ca = signed.chainPem;
      } catch (err) {
        throw new ProvisionError("mint", `cannot sign ${identity}'s CSR: ${(err as Error).message}`, {
          cause: err,
        });
      }
    } else
      throw new ProvisionError(
        "mint",
        `nothing signed ${identity}'s CSR: no certificate from the helper, no ca`,
      );
    if (ssldir) data.ssldir = ssldir;
  }
  if (out.key) {
    if (!ecdh) throw new ProvisionError("state", `${identity} gave no ECDH key to send its private key with`);
    try {
      const sealed = sealForNode(Buffer.from(out.key), ecdh);
      data.key = sealed.sealed;
      data.ecdh_public = sealed.ecdhPublic;
    } catch (err) {
      if (err instanceof SecurityError)
        throw new ProvisionError("untrusted", `${identity}'s ECDH key: ${err.message}`, { cause: err });
      throw err;
    }
  }
  if (out.action_policies) data.action_policies = out.action_policies;
  if (out.opa_policies) data.opa_policies = out.opa_policies;
  data.config = JSON.stringify(configuration);

  // 8. configure, 9. restart: the restart's acceptance is the end
  if (d.progress) d.progress.configureSent = true;
  await call("configure", data, 5);
  await call("restart", { splay: 1 }, 3);
  return { outcome: "provisioned", ...(out.msg !== undefined && { message: out.msg }) };
}

/**
 * The node's configuration: built-in defaults (broker, issuers), then
 * default_configuration, then the helper's; keys a node cannot run without filled in
 * (identity, provision off, collectives, issuers, its key and token files, with pki its
 * certificate and key in `ssldir`).
 */
export function nodeConfiguration(
  d: Pick<SequenceDeps, "config" | "nodeDefaults" | "issuers">,
  identity: string,
  out: HelperOutput,
  ed: HelperInput["ed25519_pubkey"],
  ssldir = "",
): Record<string, string> {
  const c: Record<string, string> = {
    ...d.nodeDefaults,
    ...d.config.default_configuration,
    ...out.configuration,
  };
  const provision = c["plugin.choria.server.provision"];
  if (provision !== undefined && truthy(provision))
    throw new ProvisionError(
      "helper",
      `the configuration for ${identity} keeps plugin.choria.server.provision on: the node would never leave provisioning mode`,
    );
  c["plugin.choria.server.provision"] = "false";
  if (c.identity !== undefined && c.identity !== identity)
    throw new ProvisionError("helper", `the configuration for ${identity} names identity ${c.identity}`);
  c.identity = identity;
  const sc = out.server_claims?.collectives;
  if (sc && sc.length > 0) c.collectives ??= sc.join(",");
  c.collectives ??= d.config.collectives.join(",");
  if (c["plugin.security.issuer.names"] === undefined && d.issuers && d.issuers.length > 0) {
    const names = d.issuers.map((_, i) => (i === 0 ? "org" : `org${i + 1}`));
    c["plugin.security.issuer.names"] = names.join(",");
    names.forEach((n, i) => (c[`plugin.security.issuer.${n}.public`] = d.issuers?.[i] as string));
  }
  if (ed) {
    c["plugin.security.provider"] ??= "choria";
    if (ed.directory) {
      c["plugin.security.choria.seed_file"] ??= posix.join(ed.directory, "server.seed");
      c["plugin.security.choria.token_file"] ??= posix.join(ed.directory, "server.jwt");
    }
  }
  if (ssldir) {
    // the files configure writes there; the CA stays the site's choice (the broker's may differ)
    c["plugin.security.choria.certificate"] ??= posix.join(ssldir, "certificate.pem");
    c["plugin.security.choria.key"] ??= posix.join(ssldir, "private.pem");
  }
  return c;
}

const DAY_MS = 86_400_000;

/** The configured leaf validity, cut to what the CA's policy and its intermediate's life allow. */
function leafDays(ca: CertificateAuthority, wanted: number): number {
  const left = Math.floor(
    (Date.parse(new X509Certificate(ca.intermediatePem).validTo) - Date.now()) / DAY_MS,
  );
  const days = Math.min(wanted, ca.policy.max_validity_days, left);
  if (days < 1) throw new ProvisionError("mint", "the CA's intermediate certificate expires within a day");
  return days;
}

function checkDenied(patterns: string[], name: string, what: string): void {
  for (const p of patterns) {
    if (new RegExp(p, "i").test(name))
      throw new ProvisionError(
        "denied",
        `${what} ${JSON.stringify(name)} is refused by cert_deny_list (${p})`,
      );
  }
}
