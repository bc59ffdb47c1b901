import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Client } from "../../../src/client/index.js";
import {
  ChoriaSecurity,
  createClientToken,
  createProvisioningToken,
  createServerToken,
  generateKeyPair,
  orgIssuer,
  writeSeedFile,
} from "../../../src/core/security/index.js";
import { choriaProvisionDDL } from "../../../src/server/index.js";
import { chorusAsync } from "../../helpers/cli.js";
import { startNats, type TestNats } from "../../helpers/nats.js";

const CHT = "cli-token";
const orgKp = generateKeyPair();
const org = orgIssuer(orgKp);
let nats: TestNats;
let dir: string;
const clients: Client[] = [];

function client(collective: string): Client {
  const kp = generateKeyPair();
  const name = `c${clients.length}`;
  writeSeedFile(join(dir, `${name}.seed`), kp);
  writeFileSync(
    join(dir, `${name}.jwt`),
    createClientToken(
      {
        callerid: `choria=${name}`,
        publicKeyHex: kp.publicHex,
        validityS: 600,
        permissions: { fleet_management: true },
      },
      org,
    ),
  );
  const c = new Client({
    security: new ChoriaSecurity({
      seedFile: join(dir, `${name}.seed`),
      tokenFile: join(dir, `${name}.jwt`),
      issuers: [orgKp.publicHex],
    }),
    servers: [nats.url],
    collective,
    identity: `${name}.example`,
  });
  c.registerDDL(choriaProvisionDDL());
  clients.push(c);
  return c;
}

/** Repeats a request to `id` until it gets a reply (the node is still starting). */
async function ask(
  c: Client,
  id: string,
  agent: string,
  action: string,
  data: Record<string, unknown>,
  verify = false,
) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await c.request(agent, action, data, {
      nodes: [id],
      timeoutMs: 1000,
      verifyReplySignatures: verify,
    });
    if (r.replies.length === 1)
      return r.replies[0] as { statuscode: number; statusmsg: string; data: Record<string, unknown> };
    if (Date.now() > deadline) throw new Error(`${id} did not answer ${agent}#${action}`);
  }
}

/** A fresh node directory: an unprovisioned config and a provisioning token. */
function nodeDir(id: string): string {
  const d = join(dir, id);
  mkdirSync(d, { recursive: true });
  const conf = join(d, "server.conf");
  writeFileSync(conf, `identity = ${id}\nplugin.choria.server.provision = true\nloglevel = warn\n`);
  writeFileSync(
    join(d, "provisioning.jwt"),
    createProvisioningToken({ cht: CHT, chu: nats.url, validityS: 600 }, org),
  );
  return conf;
}

beforeAll(async () => {
  nats = await startNats();
  dir = mkdtempSync(join(tmpdir(), "chorus-provcli-"));
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it("chorus server run comes back in normal mode after restart, and stops on SIGTERM", async () => {
  const id = "cli1.example";
  const conf = nodeDir(id);
  const run = chorusAsync(["server", "run", "--config", conf], {}, 40_000);
  const prov = client("provisioning");
  const gen = await ask(prov, id, "choria_provision", "gen25519", { token: CHT, nonce: "n" });
  expect(gen.statuscode, gen.statusmsg).toBe(0);
  const serverJwt = createServerToken(
    {
      identity: id,
      collectives: ["mcollective"],
      publicKeyHex: gen.data.public_key as string,
      validityS: 600,
    },
    org,
  );
  const configured = await ask(prov, id, "choria_provision", "configure", {
    token: CHT,
    server_jwt: serverJwt,
    config: JSON.stringify({
      identity: id,
      "plugin.choria.middleware_hosts": nats.url,
      "plugin.security.issuer.names": "dev",
      "plugin.security.issuer.dev.public": orgKp.publicHex,
      "plugin.choria.server.provision": "false",
      rpcauthorization: "false",
      loglevel: "warn",
    }),
  });
  expect(configured.statuscode, configured.statusmsg).toBe(0);
  const restart = await ask(prov, id, "choria_provision", "restart", { token: CHT, splay: 0 });
  expect(restart.statuscode, restart.statusmsg).toBe(0);
  const ping = await ask(client("mcollective"), id, "rpcutil", "ping", {}, true);
  expect(ping.statuscode).toBe(0);
  const pid = await ask(client("mcollective"), id, "rpcutil", "daemon_stats", {});
  process.kill(pid.data.pid as number, "SIGTERM");
  const r = await run;
  expect(r.stderr).not.toMatch(/chorus server:/);
  expect(r.status).toBe(0);
}, 45_000);

it("chorus server run exits 0 when told to shut down", async () => {
  const id = "cli2.example";
  const run = chorusAsync(["server", "run", "--config", nodeDir(id)], {}, 30_000);
  const r = await ask(client("provisioning"), id, "choria_provision", "shutdown", { token: CHT });
  expect(r.statuscode, r.statusmsg).toBe(0);
  const done = await run;
  expect(done.status).toBe(0);
}, 35_000);
