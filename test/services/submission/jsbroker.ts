import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import { replyPrefix } from "../../../src/core/protocol/index.js";
import {
  createCA,
  createClientToken,
  createNatsTrust,
  createServerToken,
  decodeTokenUnverified,
  generateKeyPair,
  issueCert,
  issueNatsUserJwt,
  orgIssuer,
  renderNatsTrustConfig,
  type ClientClaims,
  type ClientPermissions,
  type KeyPair,
  type NatsTrust,
  type ServerClaims,
  type ServerPermissions,
} from "../../../src/core/security/index.js";
import { freePort, natsServerBinary } from "../../helpers/nats.js";

export interface Cred {
  kp: KeyPair;
  natsJwt: string;
  token: string;
  callerId: string;
  /** the reply prefix the broker ACL lets this user subscribe to */
  inbox: string;
}

/**
 * A secured (operator mode, TLS, Chorus user JWTs) JetStream-enabled nats-server on
 * a random port, which can be SIGKILLed and restarted on the same port and store:
 * what the streams and submission tests need to check permissions and crash recovery.
 */
export interface JsBroker {
  url: string;
  port: number;
  caFile: string;
  dir: string;
  storeDir: string;
  org: ReturnType<typeof orgIssuer>;
  trust: NatsTrust;
  client(callerid: string, permissions?: ClientPermissions): Promise<Cred>;
  server(identity: string, collectives: string[], permissions?: ServerPermissions): Promise<Cred>;
  connect(cred: Cred, opts?: { reconnect?: boolean; inboxPrefix?: string }): Promise<NatsConnection>;
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const quiet = { info: () => {}, warn: () => {}, error: () => {} };

export async function startJsBroker(): Promise<JsBroker> {
  const org = orgIssuer(generateKeyPair());
  const trust = await createNatsTrust(org);
  const dir = mkdtempSync(join(tmpdir(), "chorus-js-"));
  const ca = await createCA("Chorus Test CA", 1);
  const srv = await issueCert(ca, "localhost", { dns: ["localhost"], ip: ["127.0.0.1"] }, 1, "server");
  const caFile = join(dir, "ca.pem");
  writeFileSync(caFile, ca.certPem);
  writeFileSync(join(dir, "broker.pem"), srv.certPem);
  writeFileSync(join(dir, "broker.key"), srv.keyPem);
  const storeDir = join(dir, "js");
  mkdirSync(storeDir);
  const port = await freePort();
  const monitorPort = await freePort();
  const conf = join(dir, "nats.conf");
  writeFileSync(
    conf,
    [
      `listen: "127.0.0.1:${port}"`,
      `http: "127.0.0.1:${monitorPort}"`,
      renderNatsTrustConfig(trust),
      `tls {\n  cert_file: "${join(dir, "broker.pem")}"\n  key_file: "${join(dir, "broker.key")}"\n  ca_file: "${caFile}"\n  timeout: 2\n}`,
      `jetstream {\n  store_dir: "${storeDir}"\n}`,
      "",
    ].join("\n"),
  );
  let proc: ChildProcess | undefined;
  const open: NatsConnection[] = [];

  async function launch(): Promise<void> {
    const p = spawn(natsServerBinary(), ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
    let logs = "";
    p.stderr?.on("data", (d: Buffer) => (logs += d.toString()));
    proc = p;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (p.exitCode !== null) throw new Error(`nats-server exited: ${logs}`);
      try {
        // js-enabled-only: JetStream must have recovered its store, not just the listener
        const res = await fetch(`http://127.0.0.1:${monitorPort}/healthz?js-enabled-only=true`);
        if (res.ok) return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`nats-server did not become ready: ${logs}`);
  }

  async function kill(): Promise<void> {
    const p = proc;
    if (!p || p.exitCode !== null) return;
    const done = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await done;
  }

  await launch();

  const mkCred = async (claimsJwt: string, kp: KeyPair, callerId: string, inbox: string): Promise<Cred> => {
    const claims = decodeTokenUnverified(claimsJwt) as unknown as ClientClaims | ServerClaims;
    return { kp, natsJwt: await issueNatsUserJwt(org, trust, claims), token: claimsJwt, callerId, inbox };
  };

  return {
    url: `tls://127.0.0.1:${port}`,
    port,
    caFile,
    dir,
    storeDir,
    org,
    trust,
    async client(callerid, permissions) {
      const kp = generateKeyPair();
      const jwt = createClientToken(
        { callerid, publicKeyHex: kp.publicHex, validityS: 3600, ...(permissions && { permissions }) },
        org,
      );
      return mkCred(jwt, kp, callerid, replyPrefix("mcollective", callerid));
    },
    async server(identity, collectives, permissions) {
      const kp = generateKeyPair();
      const jwt = createServerToken(
        {
          identity,
          collectives,
          publicKeyHex: kp.publicHex,
          validityS: 3600,
          ...(permissions && { permissions }),
        },
        org,
      );
      return mkCred(jwt, kp, `choria=${identity}`, replyPrefix(collectives[0] ?? "mcollective", identity));
    },
    async connect(cred, opts = {}) {
      const nc = await connectNats({
        servers: [`tls://127.0.0.1:${port}`],
        name: cred.callerId,
        caFile,
        natsJwt: cred.natsJwt,
        seedHex: cred.kp.seedHex,
        reconnect: opts.reconnect ?? false,
        reconnectTimeWaitMs: 100,
        logger: quiet,
        inboxPrefix: opts.inboxPrefix ?? cred.inbox,
      });
      open.push(nc);
      return nc;
    },
    kill,
    restart: launch,
    async stop() {
      await Promise.all(open.map((nc) => nc.close().catch(() => {})));
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
