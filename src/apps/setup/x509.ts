// `chorus setup dev --security x509`: a local fleet on protocol v1, where every part
// proves itself with an x509 certificate from one CA (go-choria's `file` provider).
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { CertificateAuthority, type CaSans } from "../../core/ca/index.js";
import { compileRegex, regexProblem, type SafeRegex } from "../../core/protocol/index.js";
import {
  DEFAULT_CERTNAME_ALLOW_LIST,
  DEFAULT_PRIVILEGED_USERS,
  LOCALHOST_SANS,
  type CertUsage,
} from "../../core/security/index.js";
import { writeFileAtomicSync } from "../../core/util/index.js";
import { conf } from "./dev.js";
import { SetupError } from "./errors.js";

// go-choria's defaults live with the provider that applies them
export { DEFAULT_CERTNAME_ALLOW_LIST, DEFAULT_PRIVILEGED_USERS };

const DEFAULT_VALIDITY_DAYS = 365;
// a name as Choria's caller id pattern takes it (`^[a-z]+=([\w.-]+)`) that is also a DNS name
const CERTNAME = /^[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?$/;
const USER = /^[A-Za-z0-9_](?:[\w-]*[A-Za-z0-9_])?$/;

/** One certificate and its key on disk; `certname` is the CN, what v1 caller ids and identities name. */
export interface X509Credential {
  certname: string;
  certFile: string;
  keyFile: string;
}

export interface X509CertificateRequest {
  certname: string;
  /** TLS use: the broker needs both, every other part only connects (client) */
  usage: CertUsage;
  /** SANs beyond the certname itself, which is always a DNS SAN */
  sans?: CaSans;
  validityDays?: number;
  certFile: string;
  keyFile: string;
}

/**
 * Makes a certificate authority in `caDir` with the project's CA (as `chorus ca init`):
 * RSA, so Choria nodes that predate ECDSA take it too. Choria's default deny list is
 * off, because a v1 fleet's names are exactly the `.mcollective` ones it denies.
 */
export async function createX509Authority(
  caDir: string,
  o: { cn?: string; validityDays?: number } = {},
): Promise<CertificateAuthority> {
  // one day beyond the leaves: a leaf may not outlive the intermediate that signs it
  const days = (o.validityDays ?? DEFAULT_VALIDITY_DAYS) + 1;
  return CertificateAuthority.init(caDir, {
    algorithm: "rsa",
    cn: o.cn ?? "Chorus x509 development CA",
    rootValidityDays: days,
    intermediateValidityDays: days,
    policy: { deny_names: [] },
  });
}

/**
 * An RSA-2048 key and a certificate for it signed by `authority` (RSA PKCS#1 v1.5
 * SHA-256 is the v1 signature, so v1 keys are RSA). The key is written 0600.
 */
export async function issueX509Certificate(
  authority: CertificateAuthority,
  r: X509CertificateRequest,
): Promise<X509Credential> {
  checkCertname(r.certname);
  // the server tier is heavy, and only certificate making needs its CSR code
  const { createRsaCsr } = await import("../../server/index.js");
  const csr = await createRsaCsr({ cn: r.certname });
  const sans: CaSans = { ...r.sans, dns: [r.certname, ...(r.sans?.dns ?? [])] };
  const signed = await authority.sign(csr.csrPem, {
    sans,
    usage: r.usage,
    validityDays: r.validityDays ?? DEFAULT_VALIDITY_DAYS,
  });
  writeFileAtomicSync(r.keyFile, csr.keyPem, { mode: 0o600, mkdir: true });
  writeFileAtomicSync(r.certFile, signed.certificatePem, { mode: 0o644, mkdir: true });
  return { certname: r.certname, certFile: r.certFile, keyFile: r.keyFile };
}

/**
 * The `file` security provider's keys for `cred`, paths relative to `configDir` as the
 * config reader resolves them: add these to a v2 client's keys to make a mixed-fleet client.
 */
export function fileSecurityKeys(
  cred: Pick<X509Credential, "certFile" | "keyFile">,
  caFile: string,
  configDir: string,
): Record<string, string> {
  return {
    "plugin.security.file.certificate": relative(configDir, cred.certFile),
    "plugin.security.file.key": relative(configDir, cred.keyFile),
    "plugin.security.file.ca": relative(configDir, caFile),
  };
}

export interface X509FleetOptions {
  dir: string;
  collective?: string;
  /** server identities, each a certificate CN; default node1.mcollective */
  nodes?: string[];
  /** client users: certificate `<user>.mcollective`, caller `choria=<user>.mcollective`; default $USER */
  users?: string[];
  /** the privileged certificate's name, as an AAA signer holds; default aaa.privileged.mcollective */
  privileged?: string;
  brokerPort?: number;
  /** leaf validity in days (default 365, as setup dev's TLS certificates) */
  validityDays?: number;
  /** Choria Streams in the broker, store in `<dir>/streams`; default true */
  streams?: boolean;
  /** written as `plugin.choria.security.certname_whitelist`; callers and nodes must match it */
  allowList?: string[];
  /** written as `plugin.choria.security.privileged_users`; the privileged name must match it */
  privilegedUsers?: string[];
  /** refuse to overwrite an existing non-empty dir unless set */
  force?: boolean;
}

export interface X509Client extends X509Credential {
  /** `choria=<certname>` */
  callerId: string;
  config: string;
}

export interface X509Server extends X509Credential {
  config: string;
}

export interface X509Fleet {
  dir: string;
  collective: string;
  brokerUrl: string;
  /** the CA's own directory: `chorus ca list|sign|revoke --dir` work on it */
  caDir: string;
  /** the intermediate then the root: what every part trusts (`plugin.security.file.ca`) */
  caFile: string;
  broker: X509Credential;
  brokerConfig: string;
  /** by identity */
  servers: Record<string, X509Server>;
  serverConfigs: Record<string, string>;
  /** by user, in `users` order; the first one's config is client.conf */
  clients: Record<string, X509Client>;
  clientConfig: string;
  privileged: X509Client;
  emulator: X509Credential;
  emulatorConfig: string;
  allowList: string[];
  privilegedUsers: string[];
}

function checkCertname(name: string): void {
  if (!CERTNAME.test(name) || name.length > 64)
    throw new SetupError("usage", `"${name}" is not a usable certificate name (letters, digits, . _ -)`);
}

function compileAll(what: string, patterns: readonly string[]): SafeRegex[] {
  return patterns.map((p) => {
    const re = compileRegex(p);
    if (!re) throw new SetupError("usage", `${what} pattern "${p}" does not compile: ${regexProblem(p)}`);
    return re;
  });
}

function requireMatch(name: string, what: string, list: readonly string[], key: string): void {
  if (!compileAll(key, list).some((re) => re.test(name)))
    throw new SetupError(
      "usage",
      `${what} "${name}" does not match ${key} (${list.join(",")}): nodes would refuse it`,
    );
}

/** The fleet directory: created 0700, or refused when it has files and `force` is off. */
function prepareDir(dir: string, force: boolean | undefined): void {
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    if (!force)
      throw new SetupError(
        "exists",
        `${dir} is not empty: choose another --dir or pass --force to overwrite`,
      );
    // a CA refuses to be made over another; only replace what is recognisably ours
    const caDir = join(dir, "ca");
    if (existsSync(join(caDir, "index.json"))) rmSync(caDir, { recursive: true, force: true });
  }
  mkdirSync(join(dir, "tls"), { recursive: true, mode: 0o700 });
}

/**
 * A v1 fleet on this machine: a CA (in `<dir>/ca`), RSA certificates for the broker,
 * servers, clients, a privileged user and the emulator, and configs that point at them,
 * under the file names `chorus setup dev` uses (broker.conf, server-<id>.conf,
 * client.conf, emulator.conf).
 */
export async function makeX509Fleet(opts: X509FleetOptions): Promise<X509Fleet> {
  const dir = resolve(opts.dir);
  const collective = opts.collective ?? "mcollective";
  const port = opts.brokerPort ?? 4222;
  const validityDays = opts.validityDays ?? DEFAULT_VALIDITY_DAYS;
  const nodes = opts.nodes ?? ["node1.mcollective"];
  const users = opts.users ?? [process.env.USER || "developer"];
  const privilegedName = opts.privileged ?? "aaa.privileged.mcollective";
  const allowList = opts.allowList ?? [...DEFAULT_CERTNAME_ALLOW_LIST];
  const privilegedUsers = opts.privilegedUsers ?? [...DEFAULT_PRIVILEGED_USERS];
  if (nodes.length === 0) throw new SetupError("usage", "a fleet needs at least one server");
  if (users.length === 0) throw new SetupError("usage", "a fleet needs at least one client user");
  for (const u of users) {
    if (!USER.test(u))
      throw new SetupError("usage", `user "${u}" is not a usable name (letters, digits, _ -), try --user`);
  }
  // every name is checked before anything is written, so a refusal leaves no half fleet
  for (const n of nodes) {
    checkCertname(n);
    requireMatch(n, "server identity", allowList, "plugin.choria.security.certname_whitelist");
  }
  for (const u of users)
    requireMatch(`${u}.mcollective`, "client", allowList, "plugin.choria.security.certname_whitelist");
  checkCertname(privilegedName);
  requireMatch(privilegedName, "privileged name", privilegedUsers, "plugin.choria.security.privileged_users");
  // each certificate has its own files under tls/, named by certname ("broker" for the broker)
  const reserved = ["broker", "broker.mcollective", "emulator.mcollective"];
  const taken = [...nodes, ...users.map((u) => `${u}.mcollective`), privilegedName].find(
    (n, i, all) => reserved.includes(n) || all.indexOf(n) !== i,
  );
  if (taken !== undefined) throw new SetupError("usage", `the certificate name "${taken}" is used twice`);

  prepareDir(dir, opts.force);
  const tls = join(dir, "tls");
  const caDir = join(dir, "ca");
  const authority = await createX509Authority(caDir, { validityDays });
  const caFile = join(tls, "ca.pem");
  writeFileAtomicSync(caFile, authority.chainPem, { mode: 0o644 });

  const issue = (certname: string, usage: CertUsage, base: string, sans?: CaSans) =>
    issueX509Certificate(authority, {
      certname,
      usage,
      validityDays,
      certFile: join(tls, `${base}.pem`),
      keyFile: join(tls, `${base}.key`),
      ...(sans && { sans }),
    });
  // key generation runs on libuv's threads, so the certificates are made side by side
  const [broker, emulator, privilegedCred, serverCreds, clientCreds] = await Promise.all([
    issue("broker.mcollective", "both", "broker", {
      dns: [...LOCALHOST_SANS.dns],
      ip: [...LOCALHOST_SANS.ip],
    }),
    issue("emulator.mcollective", "client", "emulator.mcollective"),
    issue(privilegedName, "client", privilegedName),
    Promise.all(nodes.map((n) => issue(n, "client", n))),
    Promise.all(users.map((u) => issue(`${u}.mcollective`, "client", `${u}.mcollective`))),
  ]);

  const brokerUrl = `tls://127.0.0.1:${port}`;
  const keys = (cred: X509Credential) => fileSecurityKeys(cred, caFile, dir);
  const common = {
    collectives: collective,
    main_collective: collective,
    "plugin.choria.middleware_hosts": brokerUrl,
    "plugin.security.provider": "file",
  };
  // what a node checks callers against, written out so the file shows the rules in force
  const callerRules = {
    "plugin.choria.security.certname_whitelist": allowList.join(","),
    "plugin.choria.security.privileged_users": privilegedUsers.join(","),
  };
  const write = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileAtomicSync(path, text, { mode: 0o644 });
    return path;
  };

  const brokerConfig = write(
    "broker.conf",
    conf(
      {
        identity: broker.certname,
        "plugin.choria.broker_network": true,
        "plugin.choria.network.listen_address": "127.0.0.1",
        "plugin.choria.network.client_port": port,
        // no NATS trust: a pure v1 broker, which admits only clients with a certificate from the CA
        "plugin.security.provider": "file",
        ...keys(broker),
        "plugin.choria.network.stream.store": opts.streams === false ? undefined : "streams",
      },
      "Chorus broker for a protocol v1 (x509) fleet",
    ),
  );

  write("facts.json", `${JSON.stringify({ os: "linux", role: "dev", location: "lab" }, null, 2)}\n`);
  const servers: Record<string, X509Server> = {};
  const serverConfigs: Record<string, string> = {};
  nodes.forEach((identity, i) => {
    const cred = serverCreds[i] as X509Credential;
    const config = write(
      `server-${identity}.conf`,
      conf(
        {
          ...common,
          // a v1 node's identity must be its certificate's name
          identity,
          ...keys(cred),
          ...callerRules,
          "plugin.yaml": "facts.json",
          "plugin.actionpolicy.allow_unconfigured": true,
          "plugin.choria.submission.spool": `spool/${identity}`,
        },
        `Chorus server ${identity} (protocol v1, x509)`,
      ),
    );
    servers[identity] = { ...cred, config };
    serverConfigs[identity] = config;
  });

  const clientFile = (cred: X509Credential, name: string, header: string): X509Client => ({
    ...cred,
    callerId: `choria=${cred.certname}`,
    config: write(name, conf({ ...common, identity: cred.certname, ...keys(cred) }, header)),
  });
  const clients: Record<string, X509Client> = {};
  users.forEach((user, i) => {
    const cred = clientCreds[i] as X509Credential;
    const name = i === 0 ? "client.conf" : `client-${user}.conf`;
    clients[user] = clientFile(cred, name, `Chorus client ${cred.certname} (protocol v1, x509)`);
  });
  const privileged = clientFile(
    privilegedCred,
    "privileged.conf",
    `Privileged client ${privilegedName}: what an AAA signer holds; nodes take any caller id it signs`,
  );

  const emulatorConfig = write(
    "emulator.conf",
    conf(
      {
        ...common,
        identity: emulator.certname,
        ...keys(emulator),
        ...callerRules,
        "plugin.actionpolicy.allow_unconfigured": true,
      },
      // v1 replies are not signed, so the virtual nodes need no certificates of their own
      "Chorus emulator (protocol v1, x509): the certificate is for its broker connection only",
    ),
  );

  return {
    dir,
    collective,
    brokerUrl,
    caDir,
    caFile,
    broker,
    brokerConfig,
    servers,
    serverConfigs,
    clients,
    clientConfig: (clients[users[0] as string] as X509Client).config,
    privileged,
    emulator,
    emulatorConfig,
    allowList,
    privilegedUsers,
  };
}
