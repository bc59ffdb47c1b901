import { X509Certificate, createHash, createPrivateKey, timingSafeEqual, type KeyObject } from "node:crypto";
import { dirname, isAbsolute, join, resolve } from "node:path";
import {
  parseBool,
  parseConfig,
  serverSettings,
  type ProvisioningSettings,
  type ServerSettings,
} from "../../core/config/index.js";
import { builtinDDL, findAction, type AgentDDL, type InputDDL } from "../../core/ddl/index.js";
import { ChorusError, StatusCode } from "../../core/protocol/index.js";
import {
  generateKeyPair,
  openFromProvisioner,
  provisioningKeyPair,
  publicHexFromSeed,
  sign,
  verifyToken,
  type ProvisioningClaims,
  type ProvisioningKeyPair,
} from "../../core/security/index.js";
import type { ActionReply, ActionRequest, AgentHandler } from "../types.js";
import { createRsaCsr } from "./csr.js";
import { ProvisionError } from "./errors.js";
import { diskStore, renderConfig, setConfigKey, type ProvisionStore } from "./files.js";

/** What a server asks of whoever runs it: start it again from its config file, or end the process. */
export interface ServerExitRequest {
  action: "restart" | "shutdown";
  reason: string;
}

/** Waits, so tests need not sit through Choria's seconds. */
export interface ProvisionTuning {
  /** least wait before restart and reprovision act (Choria: 2 s) */
  minDelayMs?: number;
  /** random seconds reprovision and shutdown add, and restart's default splay (Choria: 10) */
  splayS?: number;
  /** how long a caller holds the provisioning lock after each call (Choria: 2 min) */
  lockMs?: number;
}

export interface ProvisionAgentStats {
  /** choria_provision requests handled */
  requests: number;
  /** refused for a missing or wrong token */
  refusedToken: number;
  /** refused because another caller holds the lock */
  refusedLock: number;
  /** answered with a failure for any other reason */
  failed: number;
}

export interface ProvisionAgentOptions {
  /** true in provisioning mode; otherwise only reprovision is offered */
  provisionMode: boolean;
  identity: string;
  /** the provisioning.jwt text and its verified claims */
  jwt: string;
  claims: ProvisioningClaims;
  settings: ProvisioningSettings;
  requestExit(r: ServerExitRequest): void;
  /** why `configFile` would start in provisioning mode again, or undefined when it would not */
  wouldProvision(configFile: string): string | undefined;
  /** configure succeeded: the lifecycle `provisioned` event */
  onProvisioned?(): void;
  /** a refused request, for a (rate limited) log line */
  onRefused?(reason: "token" | "lock", detail: string): void;
  tuning?: ProvisionTuning;
  /** where the node's seed, tokens, config and TLS files live (default: the disk) */
  store?: ProvisionStore;
}

const CONFIG_LIMIT = 65_536;
let ddl: AgentDDL | undefined;

/**
 * Choria's choria_provision DDL with Chorus's changes: `config` and `server_jwt` up to
 * 64 KiB (2048 was too small for real configs and chained JWTs), `nats_jwt` for the
 * node's NATS user JWT, and `key` as the base64 AES-GCM envelope instead of a PEM.
 */
export function choriaProvisionDDL(): AgentDDL {
  if (ddl) return ddl;
  const d = structuredClone(builtinDDL("choria_provision"));
  const configure = findAction(d, "configure");
  if (!configure) throw new ProvisionError("config", "the choria_provision DDL has no configure action");
  const input = configure.input;
  (input.config as InputDDL).maxlength = CONFIG_LIMIT;
  (input.server_jwt as InputDDL).maxlength = CONFIG_LIMIT;
  input.key = {
    ...(input.key as InputDDL),
    description: "The private key, sealed for this node: base64 of nonce, AES-256-GCM ciphertext and tag",
    prompt: "Sealed private key",
    validation: "^[A-Za-z0-9+/]+={0,2}$",
  };
  input.nats_jwt = {
    prompt: "NATS JWT",
    description: "The node's NATS user JWT, written beside the server JWT",
    type: "string",
    default: "",
    optional: true,
    maxlength: CONFIG_LIMIT,
    validation: ".",
  };
  // An optional "" default would be filled in by clients and then fail its own "."
  // validation on the node: absent is what these inputs mean.
  for (const a of d.actions) {
    for (const i of Object.values(a.input)) if (i.optional && i.default === "") delete i.default;
  }
  ddl = d;
  return d;
}

const LOCK_MS = 120_000;
const MAX_SPLAY_S = 3600;
const POLICY = /^[A-Za-z0-9_-]+\.policy$/;
const REGO = /^[A-Za-z0-9_-]+\.rego$/;

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

function refused(message: string): ProvisionError {
  return new ProvisionError("refused", message);
}

/** A string map from a JSON object; scalars are taken as their text, anything else refused. */
function stringMap(v: unknown, what: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v)) throw refused(`${what} must be an object`);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (typeof x === "string") out[k] = x;
    else if (typeof x === "number" || typeof x === "boolean") out[k] = String(x);
    else throw refused(`${what}: the value of ${k} must be a string`);
  }
  return out;
}

/**
 * The choria_provision agent. Every action needs the provisioning token (`cht`), which
 * is never empty; the ones that change credentials also take a lock so two
 * provisioners cannot interleave on one node. The token is checked before the lock,
 * so a caller without it cannot hold the lock either.
 */
export class ProvisionAgent {
  readonly stats: ProvisionAgentStats = { requests: 0, refusedToken: 0, refusedLock: 0, failed: 0 };
  /** this process's X25519 pair; configure's sealed key is opened with it */
  private readonly ecdh: ProvisioningKeyPair = provisioningKeyPair();
  private readonly o: ProvisionAgentOptions;
  private readonly store: ProvisionStore;
  private readonly want: Buffer;
  private lockOwner: string | undefined;
  private lockUntil = 0;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(o: ProvisionAgentOptions) {
    this.o = o;
    this.store = o.store ?? diskStore;
    this.want = digest(o.claims.cht);
  }

  /** The handlers, for AgentRegistry.register(choriaProvisionDDL(), ...). */
  handlers(): Record<string, AgentHandler> {
    return {
      jwt: this.action({ lock: true, provisionOnly: true }, () => this.jwt()),
      gen25519: this.action({ lock: true, provisionOnly: true }, (req) => this.gen25519(req)),
      gencsr: this.action({ lock: true, provisionOnly: true }, (req) => this.gencsr(req)),
      configure: this.action({ lock: true, provisionOnly: true }, (req) => this.configure(req)),
      restart: this.action({ provisionOnly: true }, (req) => this.restart(req)),
      reprovision: this.action({}, () => this.reprovision()),
      shutdown: this.action({ provisionOnly: true }, () => this.shutdown()),
      release_update: this.action({}, (_req, reply) => {
        reply.fail(
          "release_update is not supported by Chorus: update the package instead",
          StatusCode.UnknownError,
        );
      }),
    };
  }

  /** The public half of this process's ECDH pair (the `jwt` action's ecdh_public). */
  get ecdhPublic(): string {
    return this.ecdh.publicHex;
  }

  /** Cancels restarts and shutdowns not yet due (the server is stopping anyway). */
  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private action(
    opts: { lock?: boolean; provisionOnly?: boolean },
    fn: (
      req: ActionRequest,
      reply: ActionReply,
    ) => Promise<Record<string, unknown> | void> | Record<string, unknown> | void,
  ): AgentHandler {
    return async (req, reply) => {
      this.stats.requests++;
      if (!this.tokenOk(req.data.token)) {
        this.stats.refusedToken++;
        this.o.onRefused?.("token", `${req.caller} sent a wrong provisioning token to ${req.action}`);
        reply.fail("Incorrect provision token supplied");
        return;
      }
      if (opts.provisionOnly && !this.o.provisionMode) {
        this.stats.failed++;
        reply.fail(`${req.action} is only available in provisioning mode`);
        return;
      }
      if (opts.lock && !this.takeLock(req)) {
        this.stats.refusedLock++;
        this.o.onRefused?.("lock", `${req.caller} could not take the provisioning lock for ${req.action}`);
        reply.fail("Could not obtain provisioning lock");
        return;
      }
      try {
        const out = await fn(req, reply);
        if (reply.statuscode !== StatusCode.OK) this.stats.failed++;
        return out;
      } catch (err) {
        if (!(err instanceof ChorusError)) throw err;
        this.stats.failed++;
        reply.fail(err.message);
        return;
      }
    };
  }

  private tokenOk(token: unknown): boolean {
    // Choria lets any token through when the node has none; an empty one is never enough here
    if (typeof token !== "string" || token === "" || this.o.claims.cht === "") return false;
    return timingSafeEqual(digest(token), this.want);
  }

  private takeLock(req: ActionRequest): boolean {
    const owner = `${req.sender}.${req.caller}`;
    const now = Date.now();
    if (this.lockOwner !== undefined && this.lockOwner !== owner && now < this.lockUntil) return false;
    this.lockOwner = owner;
    this.lockUntil = now + (this.o.tuning?.lockMs ?? LOCK_MS);
    return true;
  }

  private later(delayMs: number, r: ServerExitRequest): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.o.requestExit(r);
    }, delayMs);
    this.timers.add(t);
  }

  private splayS(): number {
    return this.o.tuning?.splayS ?? 10;
  }

  private jwt(): Record<string, unknown> {
    return { jwt: this.o.jwt, ecdh_public: this.ecdh.publicHex };
  }

  private gen25519(req: ActionRequest): Record<string, unknown> {
    const nonce = str(req.data.nonce);
    if (nonce === "") throw refused("a nonce is required");
    const s = this.o.settings;
    const kp = generateKeyPair();
    this.store.write(s.seedFile, kp.seedHex, 0o600);
    // the old token is for another key: it must not be used with the new seed
    this.store.remove(s.tokenFile);
    this.store.remove(s.natsJwtFile);
    return {
      public_key: kp.publicHex,
      signature: sign(kp.seedHex, Buffer.from(nonce, "utf8")).toString("hex"),
      directory: dirname(s.seedFile),
    };
  }

  private async gencsr(req: ActionRequest): Promise<Record<string, unknown>> {
    const cn = str(req.data.cn) || this.o.identity;
    if (cn !== this.o.identity)
      throw refused(`the CSR common name must be this node's identity ${this.o.identity}, not ${cn}`);
    const subject = {
      cn,
      C: str(req.data.C),
      L: str(req.data.L),
      O: str(req.data.O),
      OU: str(req.data.OU),
      ST: str(req.data.ST),
    };
    const csr = await createRsaCsr(subject);
    const dir = this.o.settings.sslDir;
    this.store.write(join(dir, "private.pem"), csr.keyPem, 0o600);
    this.store.write(join(dir, "csr.pem"), csr.csrPem, 0o600);
    return { csr: csr.csrPem, public_key: csr.publicKeyPem, ssldir: dir };
  }

  private configure(req: ActionRequest): Record<string, unknown> {
    const s = this.o.settings;
    const settings = this.newSettings(str(req.data.config));
    const configFile = s.configFile;
    const text = renderConfig(settings);
    let ss: ServerSettings;
    try {
      ss = serverSettings(parseConfig(text, configFile));
    } catch (err) {
      throw refused(`the configuration does not parse: ${(err as Error).message}`);
    }

    // Everything is checked before anything is written, so a refusal leaves the node as it was.
    const serverJwt = str(req.data.server_jwt).trim();
    if (serverJwt) this.checkServerJwt(serverJwt, ss);
    const natsJwt = str(req.data.nats_jwt).trim();
    if (natsJwt && !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(natsJwt))
      throw refused("nats_jwt is not a JWT");
    const tls = this.tlsFiles(req);
    const policies = [
      ...this.policies(req.data.action_policies, POLICY, join(ss.configDir, "policies")),
      ...this.policies(req.data.opa_policies, REGO, join(ss.configDir, "policies", "rego")),
    ];

    const store = this.store;
    for (const [file, content] of [...policies, ...tls.files]) store.write(file, content, 0o600);
    if (tls.files.length > 0) store.remove(join(tls.dir, "csr.pem"));
    if (natsJwt) store.write(ss.natsJwtFile, natsJwt, 0o600);
    if (serverJwt) store.write(ss.tokenFile, serverJwt, 0o600);
    // last: a config naming the new credentials only exists once they do
    store.write(configFile, text, 0o600);
    this.o.onProvisioned?.();
    return { message: `Wrote ${Buffer.byteLength(text)} bytes to ${configFile}` };
  }

  /** The settings to write, checked: a JSON string map that does not turn provisioning on. */
  private newSettings(config: string): Record<string, string> {
    let doc: unknown;
    try {
      doc = JSON.parse(config);
    } catch {
      throw refused("the configuration is not JSON");
    }
    if (doc === null || typeof doc !== "object" || Array.isArray(doc))
      throw refused("the configuration must be a JSON object of settings");
    const settings = stringMap(doc, "configuration");
    if (Object.keys(settings).length === 0)
      throw refused("Did not receive any configuration to write, cannot write an empty configuration file");
    const key = "plugin.choria.server.provision";
    const p = settings[key];
    if (p !== undefined) {
      const on = parseBool(p);
      if (on === undefined) throw refused(`${key}: "${p}" is not a boolean`);
      if (on) throw refused(`the configuration sets ${key}: the node would never leave provisioning mode`);
    } else if (this.o.claims.chpd) {
      throw refused(`the configuration must set ${key} = false: this node provisions by default`);
    }
    // the node knows where its seed and token live: name them when the helper did not
    const s = this.o.settings;
    settings["plugin.security.choria.seed_file"] ??= s.seedFile;
    settings["plugin.security.choria.token_file"] ??= s.tokenFile;
    return settings;
  }

  /** A server JWT the new config can run with: trusted, for this identity and for the key on disk. */
  private checkServerJwt(jwt: string, ss: ServerSettings): void {
    let c: Record<string, unknown>;
    try {
      c = verifyToken(jwt, ss.issuers) as unknown as Record<string, unknown>;
    } catch (err) {
      throw refused(`server_jwt does not verify with the configured issuers: ${(err as Error).message}`);
    }
    if (c.purpose !== "choria_server")
      throw refused(`server_jwt is a ${String(c.purpose)} token, not choria_server`);
    if (c.identity !== ss.identity)
      throw refused(
        `server_jwt is for identity ${String(c.identity)}, the configuration says ${ss.identity}`,
      );
    const publicHex = this.seedPublic(ss.seedFile);
    if (c.public_key !== publicHex)
      throw refused(
        `server_jwt is for public key ${String(c.public_key)}, ${ss.seedFile} holds ${publicHex}`,
      );
  }

  /** The public key of the seed at `file`, which the server token must be for. */
  private seedPublic(file: string): string {
    let text: string | undefined;
    try {
      text = this.store.read(file);
    } catch (err) {
      throw refused(`server_jwt needs the node's seed: ${(err as Error).message}`);
    }
    if (text === undefined) throw refused(`server_jwt needs the node's seed: ${file} does not exist`);
    const seedHex = text.trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(seedHex))
      throw refused(`server_jwt needs the node's seed: ${file} does not hold a 32 byte hex ed25519 seed`);
    return publicHexFromSeed(seedHex);
  }

  /** TLS files to write: the sealed key opened, certificate and CA parsed, the certificate matching the key. */
  private tlsFiles(req: ActionRequest): { dir: string; files: [string, string][] } {
    const d = req.data;
    const sslIn = str(d.ssldir);
    if (sslIn && (!isAbsolute(sslIn) || resolve(sslIn) !== sslIn.replace(/\/+$/, "")))
      throw refused("ssldir must be an absolute, normalised path");
    const dir = sslIn ? resolve(sslIn) : this.o.settings.sslDir;
    const files: [string, string][] = [];
    const keyFile = join(dir, "private.pem");
    let key: KeyObject | undefined;
    const sealed = str(d.key);
    if (sealed) {
      const peer = str(d.ecdh_public);
      if (!peer) throw refused("a key needs the provisioner's ecdh_public");
      const pem = openFromProvisioner(sealed, peer, this.ecdh).toString("utf8");
      try {
        key = createPrivateKey(pem);
      } catch {
        throw refused("the decrypted key is not a private key");
      }
      files.push([keyFile, pem]);
    }
    const certPem = str(d.certificate);
    if (certPem) {
      const cert = parseCert(certPem, "certificate");
      if (!key) {
        const pem = this.store.read(keyFile);
        if (pem === undefined)
          throw refused(`a certificate needs its private key: ${keyFile} does not exist`);
        try {
          key = createPrivateKey(pem);
        } catch {
          throw refused(`${keyFile} is not a private key`);
        }
      }
      if (!cert.checkPrivateKey(key)) throw refused("the certificate is not for the node's private key");
      files.push([join(dir, "certificate.pem"), certPem]);
    }
    const caPem = str(d.ca);
    if (caPem) {
      parseCert(caPem, "ca");
      files.push([join(dir, "ca.pem"), caPem]);
    }
    return { dir, files };
  }

  private policies(v: unknown, name: RegExp, dir: string): [string, string][] {
    return Object.entries(stringMap(v, "policies")).map(([file, content]) => {
      if (!name.test(file)) throw refused(`policy file name ${JSON.stringify(file)} is not allowed`);
      return [join(dir, file), content];
    });
  }

  private restart(req: ActionRequest): Record<string, unknown> {
    const why = this.o.wouldProvision(this.o.settings.configFile);
    if (why !== undefined)
      throw refused(`the configuration would start in provisioning mode again (${why}), not restarting`);
    const raw = req.data.splay;
    const splay =
      typeof raw === "number" && Number.isFinite(raw) && raw >= 0
        ? Math.min(raw, MAX_SPLAY_S)
        : this.splayS();
    const delayMs =
      (this.o.tuning?.minDelayMs ?? 2000) + Math.floor(Math.random() * Math.floor(splay)) * 1000;
    this.later(delayMs, { action: "restart", reason: "choria_provision#restart" });
    return { message: `Restarting Choria Server after ${Math.round(delayMs / 1000)}s` };
  }

  private reprovision(): Record<string, unknown> {
    if (this.o.provisionMode) throw refused("Server is already in provisioning mode");
    setConfigKey(this.o.settings.configFile, "plugin.choria.server.provision", "true", this.store);
    const delayMs = (this.o.tuning?.minDelayMs ?? 2000) + Math.floor(Math.random() * this.splayS()) * 1000;
    this.later(delayMs, { action: "restart", reason: "choria_provision#reprovision" });
    return { message: `Restarting Choria Server in provisioning mode after ${Math.round(delayMs / 1000)}s` };
  }

  private shutdown(): Record<string, unknown> {
    const delayMs = Math.floor(Math.random() * this.splayS()) * 1000;
    this.later(delayMs, { action: "shutdown", reason: "choria_provision#shutdown" });
    return { message: `Shutting down Choria Server after ${Math.round(delayMs / 1000)}s` };
  }
}

function parseCert(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw refused(`${what} is not a PEM certificate`);
  }
}
