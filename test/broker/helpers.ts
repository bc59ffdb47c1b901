import { execFileSync } from "node:child_process";
import { join } from "node:path";
import {
  createAccount,
  createOperator,
  createUser,
  encodeAccount,
  encodeOperator,
  encodeUser,
} from "@nats-io/jwt";
import { parseConfig, brokerSettings, type BrokerSettings } from "../../src/core/config/index.js";
import type { NatsConnection } from "../../src/core/connector/index.js";
import { freePort } from "../helpers/nats.js";

/** Broker settings on random loopback ports, from a Choria-style config snippet. */
export async function testBrokerSettings(dir: string, extra: string[] = []): Promise<BrokerSettings> {
  const clientPort = await freePort();
  const monitorPort = await freePort();
  return brokerSettings(
    parseConfig(
      [
        "identity = broker.test",
        "plugin.choria.broker_network = true",
        `plugin.choria.network.client_port = ${clientPort}`,
        `plugin.choria.network.monitor_port = ${monitorPort}`,
        `plugin.choria.network.runtime_dir = ${join(dir, "run")}`,
        ...extra,
      ].join("\n"),
      join(dir, "broker.conf"),
    ),
  );
}

/** A throwaway CA and a server+client certificate for 127.0.0.1/localhost, made with openssl. */
export function makeCerts(dir: string): { ca: string; cert: string; key: string } {
  const ca = join(dir, "ca.pem");
  const caKey = join(dir, "ca.key");
  const key = join(dir, "broker.key");
  const csr = join(dir, "broker.csr");
  const cert = join(dir, "broker.pem");
  const ext = join(dir, "ext.cnf");
  const run = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  run(
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    caKey,
    "-out",
    ca,
    "-days",
    "2",
    "-subj",
    "/CN=test-ca",
  );
  run(
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    key,
    "-out",
    csr,
    "-subj",
    "/CN=localhost",
  );
  execFileSync("sh", [
    "-c",
    `printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' > ${ext}`,
  ]);
  run(
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca,
    "-CAkey",
    caKey,
    "-CAcreateserial",
    "-out",
    cert,
    "-days",
    "2",
    "-extfile",
    ext,
  );
  return { ca, cert, key };
}

/** Operator, SYSTEM and CHORIA accounts plus one CHORIA user, as setup would produce them. */
export async function makeTrust(): Promise<{
  trustJson: Record<string, unknown>;
  userJwt: string;
  userSeed: Uint8Array;
}> {
  const operator = createOperator();
  const system = createAccount();
  const choria = createAccount();
  // Account limits default to zero in @nats-io/jwt; -1 means unlimited.
  const limits = {
    subs: -1,
    data: -1,
    payload: -1,
    imports: -1,
    exports: -1,
    wildcards: true,
    conn: -1,
    leaf: -1,
  };
  const systemJwt = await encodeAccount("SYSTEM", system, { limits }, { signer: operator });
  const choriaJwt = await encodeAccount("CHORIA", choria, { limits }, { signer: operator });
  const operatorJwt = await encodeOperator("CHORUS", operator, { system_account: system.getPublicKey() });
  const user = createUser();
  const userJwt = await encodeUser("tester", user, choria);
  return {
    trustJson: {
      operator: operatorJwt,
      system_account: system.getPublicKey(),
      accounts: { [system.getPublicKey()]: systemJwt, [choria.getPublicKey()]: choriaJwt },
    },
    userJwt,
    userSeed: user.getSeed(),
  };
}

export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Answers `subject` on `responder` with "pong from <name> to <body>" and asks it from
 * `asker` until the answer crosses (interest travels over a link once it is up), for up
 * to 15 s; returns the answer ("" when none came).
 */
export async function answerAcross(
  responder: NatsConnection,
  asker: NatsConnection,
  subject: string,
  names: { responder: string; asker: string },
): Promise<string> {
  responder.subscribe(subject, {
    callback: (_err, m) => {
      m.respond(`pong from ${names.responder} to ${m.string()}`);
    },
  });
  await responder.flush();
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    try {
      return (await asker.request(subject, names.asker, { timeout: 500 })).string();
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return "";
}
