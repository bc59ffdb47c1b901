// The AAA service as a user runs it: `chorus setup dev --aaa`, `chorus aaa run` as its
// own process, `chorus login`, requests signed through it; then kill -9 mid-burst.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { Agent, request as httpsRequest } from "node:https";
import { connect as tlsConnect } from "node:tls";
import { fileURLToPath } from "node:url";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../../src/client/index.js";
import { encodeMessage, encodeRequest, newRequestId, nowNanos } from "../../../src/core/protocol/index.js";
import {
  generateKeyPair,
  issueNatsUserJwt,
  loadSeedFile,
  orgIssuer,
  sign,
  writeSeedFile,
  type ClientClaims,
  type NatsTrust,
} from "../../../src/core/security/index.js";
import { Server } from "../../../src/server/index.js";
import { chorusAsync, type CliResult } from "../../helpers/cli.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";
import { freePort } from "../../helpers/nats.js";
import { quietLogger } from "../../server/helpers.js";

const BIN = fileURLToPath(new URL("../../../bin/chorus.js", import.meta.url));
const IDS = ["web1.example.net", "db1.example.net"];

let fleet: SecureFleet;
let servers: Server[] = [];
let admin: Client;
let jsm: JetStreamManager;
let aaaProc: ChildProcess | undefined;
let ca: string;
let port: number;

const aaaFiles = () => fleet.setup.aaa!;

/** Starts `chorus aaa run` and waits until its HTTPS port accepts connections. */
async function startAaa(): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, "aaa", "run", "--config", aaaFiles().serviceConfig], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`chorus aaa run exited ${child.exitCode}: ${stderr}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = tlsConnect({ host: "127.0.0.1", port, ca }, () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (up) return child;
    if (Date.now() > deadline) throw new Error(`chorus aaa run did not listen: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function killAaa(signal: NodeJS.Signals): Promise<void> {
  const child = aaaProc;
  aaaProc = undefined;
  if (!child || child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill(signal);
  });
}

beforeAll(async () => {
  port = await freePort();
  fleet = await startSecureFleet({ servers: IDS, aaa: { port } });
  ca = readFileSync(fleet.setup.caFile, "utf8");
  servers = await Promise.all(
    IDS.map((id) => Server.fromConfigFile(fleet.setup.serverConfigs[id]!, { logger: quietLogger })),
  );
  await Promise.all(servers.map((s) => s.start()));
  admin = await Client.fromConfigFile(fleet.setup.adminClientConfig, { logger: quietLogger });
  jsm = await jetstreamManager(await admin.connect());
  aaaProc = await startAaa();
}, 90_000);

afterAll(async () => {
  await killAaa("SIGTERM");
  await admin?.close();
  await Promise.all(servers.map((s) => s.stop()));
  await fleet?.stop();
});

let loggedIn: Promise<CliResult> | undefined;
/** `chorus login` as the setup's admin user, once per file. */
const loginOnce = (): Promise<CliResult> =>
  (loggedIn ??= chorusAsync(
    ["login", "--config", aaaFiles().clientConfig, "--username", aaaFiles().username, "--password-stdin"],
    {},
    30_000,
    `${aaaFiles().password}\n`,
  ));

interface Audited {
  callerid: string;
  action: string;
  request: { id: string; agent: string; caller: string };
}

const fileRecords = (): Audited[] =>
  readFileSync(fleet.setup.dir + "/aaa-audit.log", "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Audited];
      } catch {
        return []; // a line torn by kill -9 is not a record
      }
    });

async function streamRecords(): Promise<Audited[]> {
  const stream = aaaFiles().auditStream!.stream;
  const info = await jsm.streams.info(stream);
  const out: Audited[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (m) out.push(m.json<Audited>());
  }
  return out;
}

const countBy = (ids: string[]) => {
  const m = new Map<string, number>();
  for (const id of ids) m.set(id, (m.get(id) ?? 0) + 1);
  return m;
};

describe("the AAA service from chorus setup dev --aaa", () => {
  it("logs a user in, signs their requests for the fleet and audits each to the file and the stream", async () => {
    const a = aaaFiles();
    const login = await loginOnce();
    expect(login.stderr).toBe("");
    expect(login.status).toBe(0);

    const req = await chorusAsync(["req", "rpcutil", "ping", "--config", a.clientConfig, "--json"]);
    expect(req.stderr).toBe("");
    expect(req.status).toBe(0);
    const { replies } = JSON.parse(req.stdout) as { replies: { sender: string; statuscode: number }[] };
    expect(replies.map((r) => r.sender).sort()).toEqual([...IDS].sort());
    expect(replies.every((r) => r.statuscode === 0)).toBe(true);

    const mine = fileRecords().filter((r) => r.request.agent === "rpcutil" && r.callerid === "up=admin");
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ action: "allow", request: { caller: "up=admin", agent: "rpcutil" } });
    // the same record reaches the JetStream stream the service created for itself
    const deadline = Date.now() + 10_000;
    let inStream: Audited[] = [];
    while (Date.now() < deadline) {
      inStream = (await streamRecords()).filter((r) => r.request.id === mine[0]!.request.id);
      if (inStream.length > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(inStream).toHaveLength(1);
  }, 60_000);

  it("kill -9 mid-burst: every request it signed has exactly one audit record, in the file and the stream", async () => {
    const a = aaaFiles();
    expect((await loginOnce()).status).toBe(0);
    const token = readFileSync(a.userTokenFile, "utf8").trim();
    const seed = loadSeedFile(a.userSeedFile).seedHex;
    const agent = new Agent({ keepAlive: true, maxSockets: 16, ca });
    const signOne = (): Promise<string | undefined> => {
      const id = newRequestId();
      const bytes = encodeRequest({
        message: encodeMessage('{"agent":"rpcutil","action":"ping","data":{}}'),
        id,
        sender: "burst.example",
        caller: "up=admin",
        collective: fleet.setup.collective,
        agent: "rpcutil",
        ttl: 60,
        time: nowNanos(),
      });
      const body = JSON.stringify({
        token,
        signature: sign(seed, bytes).toString("hex"),
        request: bytes.toString("base64"),
      });
      return new Promise((resolve) => {
        const r = httpsRequest(
          `https://127.0.0.1:${port}/choria/v1/sign`,
          { method: "POST", agent, headers: { "content-type": "application/json" } },
          (res) => {
            let text = "";
            res.on("data", (d: Buffer) => (text += d.toString()));
            res.on("end", () =>
              resolve(res.statusCode === 200 && text.includes("secure_request") ? id : undefined),
            );
            res.on("error", () => resolve(undefined));
          },
        );
        r.on("error", () => resolve(undefined));
        r.end(body);
      });
    };

    const signed: string[] = [];
    let refused = 0;
    let stop = false;
    const worker = async () => {
      while (!stop) {
        const id = await signOne();
        if (id) signed.push(id);
        else refused++;
        if (refused > 0) return; // the service is gone
      }
    };
    const workers = Array.from({ length: 16 }, worker);
    while (signed.length < 300) await new Promise((r) => setTimeout(r, 5));
    await killAaa("SIGKILL");
    await Promise.all(workers);
    stop = true;
    agent.destroy();
    expect(signed.length).toBeGreaterThanOrEqual(300);

    // the file: written and synced before each answer, so every signed id is there, once
    const fileCounts = countBy(fileRecords().map((r) => r.request.id));
    expect(signed.filter((id) => fileCounts.get(id) !== 1)).toEqual([]);
    expect([...fileCounts.values()].every((n) => n === 1)).toBe(true);

    // the stream: what the dead service had not got acked is re-sent from its spool by
    // the next one, and JetStream drops what it already had
    aaaProc = await startAaa();
    const deadline = Date.now() + 30_000;
    let streamCounts = new Map<string, number>();
    while (Date.now() < deadline) {
      streamCounts = countBy((await streamRecords()).map((r) => r.request.id));
      if (signed.every((id) => streamCounts.has(id))) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(signed.filter((id) => streamCounts.get(id) !== 1)).toEqual([]);
    expect([...streamCounts.entries()].filter(([, n]) => n !== 1)).toEqual([]);
    // (both may also hold a record of a request the kill kept from being answered: the
    // auditors write side by side, so one may have it without the other)
  }, 120_000);

  it("a user whose name has a dot (the signer writes up=jane_doe) still gets every reply", async () => {
    const a = aaaFiles();
    const users = JSON.parse(readFileSync(a.usersFile, "utf8")) as { username: string }[];
    if (!users.some((u) => u.username === "jane.doe")) {
      users.push({ ...(users[0] as { username: string }), username: "jane.doe" });
      writeFileSync(a.usersFile, JSON.stringify(users));
    }
    // her key, and the NATS user the org issues for her caller id (as setup does for admin)
    const cred = `${fleet.setup.dir}/credentials`;
    const kp = generateKeyPair();
    writeSeedFile(`${cred}/jane-user.seed`, kp);
    const trust = JSON.parse(readFileSync(`${fleet.setup.dir}/nats-trust.json`, "utf8")) as NatsTrust;
    const natsJwt = await issueNatsUserJwt(
      orgIssuer(loadSeedFile(fleet.setup.issuerSeedFile)),
      trust,
      {
        purpose: "choria_client_id",
        iss: "",
        public_key: kp.publicHex,
        callerid: "up=jane.doe",
        permissions: { signed_fleet_management: true },
      } as ClientClaims,
      kp.publicHex,
      Math.floor(Date.now() / 1000) + 3600,
    );
    writeFileSync(`${cred}/jane-user.jwt.nats`, natsJwt);
    const conf = `${fleet.setup.dir}/jane-client.conf`;
    writeFileSync(
      conf,
      readFileSync(a.clientConfig, "utf8")
        .replaceAll("aaa-user.jwt", "jane-user.jwt")
        .replaceAll("aaa-user.seed", "jane-user.seed"),
    );
    const login = await chorusAsync(
      ["login", "--config", conf, "--username", "jane.doe", "--password-stdin"],
      {},
      30_000,
      `${a.password}\n`,
    );
    expect(login.stderr).toBe("");
    expect(login.status).toBe(0);
    const req = await chorusAsync(["req", "rpcutil", "ping", "--config", conf, "--json"]);
    expect(req.status, req.stderr).toBe(0);
    const { replies } = JSON.parse(req.stdout) as { replies: { sender: string }[] };
    expect(replies.map((r) => r.sender).sort()).toEqual([...IDS].sort());
  }, 60_000);
});
