import { appendFileSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chorusAsync } from "../../helpers/cli.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

let fleet: SecureFleet;
let clientConf: string;
let adminConf: string;
let serverConf: string;

const run = (args: string[], config = clientConf) => chorusAsync([...args, "--config", config]);

beforeAll(async () => {
  fleet = await startSecureFleet();
  const dir = fleet.setup.dir;
  clientConf = fleet.setup.clientConfig;
  // the broker's credential has streams_admin: stands in for an operator's admin login
  adminConf = join(dir, "admin.conf");
  writeFileSync(
    adminConf,
    readFileSync(clientConf, "utf8")
      .replace("credentials/client.seed", "credentials/broker.seed")
      .replace("credentials/client.jwt", "credentials/broker.jwt"),
  );
  serverConf = Object.values(fleet.setup.serverConfigs)[0]!;
  writeFileSync(join(dir, "payload.json"), '{"hello":"world"}');
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
});

describe("chorus kv", () => {
  it("manages a bucket end to end", async () => {
    const add = await run(["kv", "add", "CFG", "--history", "3"], adminConf);
    expect(add.stderr).toBe("");
    expect(add.stdout).toMatch(/KV bucket CFG[\s\S]*history:\s+3/);
    expect((await run(["kv", "put", "CFG", "web.port", "80"])).stdout).toMatch(/web.port = revision 1/);
    await run(["kv", "put", "CFG", "web.port", "8080"]);
    expect((await run(["kv", "get", "CFG", "web.port", "--raw"])).stdout).toBe("8080");
    const hist = JSON.parse((await run(["kv", "history", "CFG", "web.port", "--json"])).stdout);
    expect(hist.map((h: { value: string }) => h.value)).toEqual(["80", "8080"]);
    expect(JSON.parse((await run(["kv", "keys", "CFG", "--json"])).stdout)).toEqual(["web.port"]);
    expect(JSON.parse((await run(["kv", "status", "CFG", "--json"])).stdout)).toMatchObject({
      bucket: "CFG",
      history: 3,
      maxValueSize: 10240,
    });
    expect((await run(["kv", "list"])).stdout).toMatch(/^CFG\t/m);
    expect((await run(["kv", "del", "CFG", "web.port"])).status).toBe(0);
    const gone = await run(["kv", "get", "CFG", "web.port"]);
    expect(gone.status).toBe(1);
    expect(gone.stderr).toMatch(/key web.port is not in bucket CFG/);
    expect((await run(["kv", "purge", "CFG", "web.port"])).status).toBe(0);
  }, 60_000);

  it("says when a bucket is missing or not allowed", async () => {
    const missing = await run(["kv", "get", "NOPE", "x"]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toBe("chorus kv get: KV bucket NOPE does not exist\n");
    const denied = await run(["kv", "add", "MINE"]);
    expect(denied.status).toBe(1);
    expect(denied.stderr).toMatch(/chorus kv add: creating KV bucket MINE: not permitted by the broker/);
  }, 30_000);
});

describe("chorus governor and election", () => {
  it("say when the governor or leader is missing", async () => {
    const gov = await run(["governor", "view", "NOPE"], adminConf);
    expect(gov.status).toBe(1);
    expect(gov.stderr).toBe("chorus governor view: governor NOPE does not exist\n");
    const add = await run(["governor", "add", "JOBS", "2", "60"], adminConf);
    expect(add.stdout).toMatch(/governor JOBS: capacity 2, expire 60s, 0 active/);
    // options go before "--": everything after it is the command
    const ran = await chorusAsync([
      "governor",
      "run",
      "--config",
      adminConf,
      "JOBS",
      "--",
      process.execPath,
      "-e",
      "process.exit(3)",
    ]);
    expect(ran.stderr).toBe("");
    expect(ran.status).toBe(3);
    expect((await run(["governor", "view", "JOBS", "--json"], adminConf)).stdout).toMatch(/"active": 0/);
    const leader = await run(["election", "leader", "nobody"], adminConf);
    expect(leader.stdout).toBe("no leader\n");
  }, 60_000);
});

describe("chorus tool submit", () => {
  it("spools a message in the node's spool", async () => {
    const spool = join(fleet.setup.dir, "spool");
    // setup dev gives servers a spool: take it away to see the refusal first
    writeFileSync(
      serverConf,
      readFileSync(serverConf, "utf8").replace(/^plugin\.choria\.submission\.spool = .*$/m, ""),
    );
    const noSpool = await run(["tool", "submit", "app.x", join(fleet.setup.dir, "payload.json")], serverConf);
    expect(noSpool.status).toBe(1);
    expect(noSpool.stderr).toMatch(/plugin.choria.submission.spool is not set/);
    appendFileSync(
      serverConf,
      `plugin.choria.submission.spool = ${spool}\nplugin.choria.submission.max_spool_size = 1\n`,
    );
    const args = ["tool", "submit", "--reliable", "--priority", "1", "--sender", "cron", "app.x"];
    const ok = await run([...args, join(fleet.setup.dir, "payload.json")], serverConf);
    expect(ok.stderr).toBe("");
    expect(ok.stdout).toMatch(
      /spooled reliable message \S+ for mcollective.submission.in.app.x at priority 1/,
    );
    const files = readdirSync(join(spool, "P1"));
    expect(files).toHaveLength(1);
    const msg = JSON.parse(readFileSync(join(spool, "P1", files[0]!), "utf8"));
    expect(msg).toMatchObject({
      subject: "app.x",
      reliable: true,
      sender: "cron",
      ttl: 86400,
      max_tries: 100,
    });
    const full = await run([...args, join(fleet.setup.dir, "payload.json")], serverConf);
    expect(full.status).toBe(1);
    expect(full.stderr).toMatch(/chorus tool submit: spool is full: priority 1 already holds 1 messages/);
    const bad = await run(
      ["tool", "submit", "--priority", "7", "a", join(fleet.setup.dir, "payload.json")],
      serverConf,
    );
    expect(bad.stderr).toMatch(/priority must be 0..4/);
    const missingFile = await run(["tool", "submit", "a", "/nonexistent"], serverConf);
    expect(missingFile.stderr).toMatch(/cannot read \/nonexistent/);
  }, 60_000);
});
