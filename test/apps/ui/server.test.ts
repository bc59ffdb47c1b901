import bcrypt from "bcrypt";
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Emulator, emulatedIdentity } from "../../../src/apps/emulator/index.js";
import { startUi, type AuditResponse, type UiServer } from "../../../src/apps/ui/index.js";
import { Client } from "../../../src/client/index.js";
import { Server } from "../../../src/server/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";
import { credentialConfig as issueConfig } from "./credentials.js";
import { auditRecord } from "./records.js";

const quiet = pino({ level: "silent" });
const N = 4;
const PASSWORD = "s3cret-dev";
const METRICS_TOKEN = "scrape-me-0123456789";
const REG_NODE = "reg1.example.net";

/** A logger keeping its lines: what a console logged, at which level. */
function captured(): { log: pino.Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const log = pino(
    { level: "info" },
    { write: (l: string) => void lines.push(JSON.parse(l) as { level: number; msg: string }) },
  );
  return { log, lines };
}

let fleet: SecureFleet;
let emulator: Emulator;
let ui: UiServer;
let shortUi: UiServer;
/** reads the audit stream with the setup's admin credential, which may not read registration */
let adminUi: UiServer;
/** with a credential that may subscribe to registration */
let regUi: UiServer;
let regServer: Server | undefined;
let admin: Client;
let auditor: Client;
const uiLog = captured();
const brokerLines: string[] = [];
const adminLog = captured();
let ca: Buffer;
let web: string;

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json: () => unknown;
}

/** Real HTTPS with the setup's CA (no global trust changes). */
function call(
  base: string,
  method: string,
  path: string,
  o: { body?: unknown; cookie?: string; rawBody?: string; headers?: Record<string, string> } = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const u = new URL(path, base);
    const payload = o.rawBody ?? (o.body === undefined ? undefined : JSON.stringify(o.body));
    const req = httpsRequest(
      {
        hostname: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method,
        ca,
        headers: {
          ...(payload !== undefined && { "content-type": "application/json" }),
          ...(o.cookie && { cookie: o.cookie }),
          ...o.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8");
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) });
        });
      },
    );
    req.on("error", reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

async function loginAs(base: string, username = "admin", password = PASSWORD): Promise<string> {
  const r = await call(base, "POST", "/api/login", { body: { username, password } });
  expect(r.status).toBe(200);
  const set = String(r.headers["set-cookie"]);
  expect(set).toMatch(/HttpOnly/);
  expect(set).toMatch(/Secure/);
  expect(set).toMatch(/SameSite=Strict/);
  return set.split(";")[0] as string;
}

function parseSse(text: string): { event: string; data: unknown }[] {
  return text
    .split("\n\n")
    .filter((b) => b.trim() !== "")
    .map((b) => {
      const ev = /^event: (.*)$/m.exec(b)?.[1] ?? "";
      const data = /^data: (.*)$/m.exec(b)?.[1] ?? "null";
      return { event: ev, data: JSON.parse(data) as unknown };
    });
}

beforeAll(async () => {
  fleet = await startSecureFleet({
    servers: [REG_NODE],
    brokerLog: (_l, line) => void brokerLines.push(line),
  });
  emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, {
    nodes: N,
    logger: quiet,
    jobs: false,
    facts: (i) => ({ role: i <= 2 ? "web" : "db", os: { family: i === 1 ? "Debian" : "RedHat" } }),
  });
  await emulator.start();
  ca = readFileSync(fleet.setup.caFile);
  web = mkdtempSync(join(tmpdir(), "chorus-ui-web-"));
  mkdirSync(join(web, "root"));
  writeFileSync(join(web, "root", "index.html"), "<!doctype html><title>console</title>");
  writeFileSync(join(web, "root", "app.js"), "console.log(1)");
  writeFileSync(join(web, "secret.txt"), "outside the web root");
  const common = {
    config: fleet.setup.clientConfig,
    cert: join(fleet.setup.dir, "tls", "broker.pem"),
    key: join(fleet.setup.dir, "tls", "broker.key"),
    devPassword: PASSWORD,
    users: { bob: await bcrypt.hash("bobs-pw", 4) },
    webRoot: join(web, "root"),
    discoveryTimeoutMs: 800,
    logger: quiet,
  };
  ui = await startUi({ ...common, metricsToken: METRICS_TOKEN, logger: uiLog.log });
  shortUi = await startUi({ ...common, sessionTtlMs: 300 });

  // Credentials an operator would issue: one as the AAA service's auditor has (publish
  // audit records), one for a console that may also subscribe to registration.
  const credentialConfig = (name: string, o: Parameters<typeof issueConfig>[3]) =>
    issueConfig(fleet.setup, name, fleet.setup.clientConfig, o);
  const auditorConf = await credentialConfig("auditor", {
    callerid: "aaa=auditor",
    validityS: 3600,
    claims: { pub_subjects: ["chorus.aaa.audit"] },
  });
  const consoleConf = await credentialConfig("console", {
    callerid: "chorus=console",
    validityS: 3600,
    permissions: { streams_user: true, events_viewer: true },
    claims: { sub_subjects: ["*.broadcast.agent.registration"] },
  });

  // the audit stream as the AAA service's JetStream auditor keeps it, with three records
  admin = await Client.fromConfigFile(fleet.setup.adminClientConfig, { logger: quiet });
  await (
    await jetstreamManager(await admin.connect())
  ).streams.add({
    name: "CHORUS_AAA_AUDIT",
    subjects: ["chorus.aaa.audit"],
  });
  auditor = await Client.fromConfigFile(auditorConf, { logger: quiet });
  const js = jetstream(await auditor.connect());
  await js.publish("chorus.aaa.audit", auditRecord("up=alice", "rpcutil", "ping", "allow"));
  await js.publish("chorus.aaa.audit", auditRecord("up=bob", "puppet", "disable", "deny"));
  await js.publish("chorus.aaa.audit", auditRecord("up=alice", "puppet", "status", "allow"));
  adminUi = await startUi({ ...common, auditConfig: fleet.setup.adminClientConfig, logger: adminLog.log });

  // no inventory poll after the first: what it learns later came by registration
  regUi = await startUi({ ...common, auditConfig: consoleConf, inventoryEveryMs: 0 });
  await Promise.all([ui.refreshFleet(), regUi.refreshFleet()]);
}, 60_000);

afterAll(async () => {
  await regServer?.stop();
  await ui?.close();
  await shortUi?.close();
  await adminUi?.close();
  await regUi?.close();
  await admin?.close();
  await auditor?.close();
  await emulator?.stop();
  await fleet?.stop();
  rmSync(web, { recursive: true, force: true });
});

describe("sessions", () => {
  it("logs in with the dev password and reports the session", async () => {
    const cookie = await loginAs(ui.url);
    const s = await call(ui.url, "GET", "/api/session", { cookie });
    expect(s.status).toBe(200);
    expect(s.json()).toMatchObject({ username: "admin", mode: "local" });
    const out = await call(ui.url, "POST", "/api/logout", { cookie });
    expect(out.status).toBe(200);
    expect((await call(ui.url, "GET", "/api/session", { cookie })).status).toBe(401);
  });

  it("refuses a wrong password and unauthenticated calls", async () => {
    const r = await call(ui.url, "POST", "/api/login", { body: { username: "admin", password: "nope" } });
    expect(r.status).toBe(401);
    expect(r.json()).toEqual({ error: "wrong username or password" });
    const f = await call(ui.url, "GET", "/api/fleet");
    expect(f.status).toBe(401);
    expect(f.json()).toEqual({ error: "not logged in" });
    const forged = await call(ui.url, "GET", "/api/fleet", { cookie: "chorus_session=made-up" });
    expect(forged.status).toBe(401);
  });

  it("expires sessions", async () => {
    const cookie = await loginAs(shortUi.url);
    await new Promise((r) => setTimeout(r, 400));
    const r = await call(shortUi.url, "GET", "/api/fleet", { cookie });
    expect(r.status).toBe(401);
    expect(r.json()).toEqual({ error: "session expired: log in again" });
  });

  it("refuses a login body without a password", async () => {
    const r = await call(ui.url, "POST", "/api/login", { body: { username: "admin" } });
    expect(r.status).toBe(400);
    expect((r.json() as { error: string }).error).toMatch(/password/);
  });
});

describe("fleet", () => {
  it("lists the emulated nodes as alive and filters them", async () => {
    const cookie = await loginAs(ui.url);
    const all = await call(ui.url, "GET", "/api/fleet", { cookie });
    expect(all.status).toBe(200);
    const body = all.json() as { total: number; nodes: { identity: string; status: string }[] };
    expect(body.total).toBe(N);
    expect(body.nodes.map((n) => n.identity)).toEqual([1, 2, 3, 4].map((i) => emulatedIdentity(i)));
    expect(body.nodes.every((n) => n.status === "alive")).toBe(true);

    const webOnly = (await call(ui.url, "GET", "/api/fleet?fact=role%3Dweb", { cookie })).json() as {
      nodes: { identity: string }[];
    };
    expect(webOnly.nodes.map((n) => n.identity)).toEqual([emulatedIdentity(1), emulatedIdentity(2)]);

    const q = encodeURIComponent('facts.role == "db"');
    const db = (
      await call(ui.url, "GET", `/api/fleet?compound=${q}&limit=1&offset=1`, { cookie })
    ).json() as {
      total: number;
      nodes: { identity: string }[];
    };
    expect(db.total).toBe(2);
    expect(db.nodes.map((n) => n.identity)).toEqual([emulatedIdentity(4)]);

    const one = await call(ui.url, "GET", `/api/fleet/${emulatedIdentity(1)}`, { cookie });
    expect((one.json() as { facts: { role: string } }).facts.role).toBe("web");
    expect((await call(ui.url, "GET", "/api/fleet/nope.example", { cookie })).status).toBe(404);

    const counts = await call(ui.url, "GET", "/api/fleet/counts?fact=os.family", { cookie });
    expect(counts.json()).toEqual({ fact: "os.family", counts: { Debian: 1, RedHat: 3 } });
  });

  it("answers a bad filter or limit with 400", async () => {
    const cookie = await loginAs(ui.url);
    const bad = await call(ui.url, "GET", `/api/fleet?compound=${encodeURIComponent("facts.role ==")}`, {
      cookie,
    });
    expect(bad.status).toBe(400);
    expect((bad.json() as { error: string }).error).toMatch(/bad filter/);
    const badFact = await call(ui.url, "GET", "/api/fleet?fact=%3D%3D", { cookie });
    expect(badFact.status).toBe(400);
    const big = await call(ui.url, "GET", "/api/fleet?limit=5000", { cookie });
    expect(big.status).toBe(400);
  });
});

describe("discovery and requests", () => {
  it("previews discovery", async () => {
    const cookie = await loginAs(ui.url);
    const r = await call(ui.url, "POST", "/api/discover", {
      cookie,
      body: { agent: "rpcutil", filter: { fact: ["role=db"] } },
    });
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({ count: 2, nodes: [emulatedIdentity(3), emulatedIdentity(4)] });
  });

  it("streams a request's replies over SSE", async () => {
    const cookie = await loginAs(ui.url);
    const start = await call(ui.url, "POST", "/api/requests", {
      cookie,
      body: { agent: "rpcutil", action: "ping", filter: { fact: ["role=web"] } },
    });
    expect(start.status).toBe(200);
    const { id } = start.json() as { id: string };
    const ev = await call(ui.url, "GET", `/api/requests/${id}/events`, { cookie });
    expect(ev.status).toBe(200);
    expect(ev.headers["content-type"]).toMatch(/text\/event-stream/);
    const events = parseSse(ev.body);
    const replies = events
      .filter((e) => e.event === "reply")
      .map((e) => (e.data as { sender: string }).sender);
    expect(replies.sort()).toEqual([emulatedIdentity(1), emulatedIdentity(2)]);
    expect(events.at(-1)).toEqual({ event: "end", data: { ok: true } });
    const summary = events.find((e) => e.event === "summary")?.data as { ok: number; discovered: number };
    expect(summary).toMatchObject({ ok: 2, discovered: 2 });
    expect(events.filter((e) => e.event === "progress").at(-1)?.data).toEqual({ done: 2, total: 2 });
  });

  it("lets only the user who started a request follow it", async () => {
    const cookie = await loginAs(ui.url);
    const start = await call(ui.url, "POST", "/api/requests", {
      cookie,
      body: { agent: "rpcutil", action: "ping", filter: { identity: [emulatedIdentity(1)] } },
    });
    const { id } = start.json() as { id: string };
    const bob = await loginAs(ui.url, "bob", "bobs-pw");
    const r = await call(ui.url, "GET", `/api/requests/${id}/events`, { cookie: bob });
    expect(r.status).toBe(404);
    const mine = parseSse((await call(ui.url, "GET", `/api/requests/${id}/events`, { cookie })).body);
    expect(mine.filter((e) => e.event === "reply")).toHaveLength(1);
  });

  it("refuses bad request bodies", async () => {
    const cookie = await loginAs(ui.url);
    const noAction = await call(ui.url, "POST", "/api/requests", { cookie, body: { agent: "rpcutil" } });
    expect(noAction.status).toBe(400);
    const badInput = await call(ui.url, "POST", "/api/requests", {
      cookie,
      body: { agent: "rpcutil", action: "ping", inputs: { bogus: 1 } },
    });
    expect(badInput.status).toBe(400);
    expect((badInput.json() as { error: string }).error).toMatch(/bogus/);
    const unknown = await call(ui.url, "POST", "/api/requests", {
      cookie,
      body: { agent: "rpcutil", action: "nosuch" },
    });
    expect(unknown.status).toBe(400);
    const notJson = await call(ui.url, "POST", "/api/requests", { cookie, rawBody: "{nope" });
    expect(notJson.status).toBe(400);
  });

  it("lists DDLs and says when no receiver is configured", async () => {
    const cookie = await loginAs(ui.url);
    const d = (await call(ui.url, "GET", "/api/ddl", { cookie })).json() as {
      agents: { name: string; actions: { name: string }[] }[];
    };
    expect(d.agents.find((a) => a.name === "rpcutil")?.actions.map((a) => a.name)).toContain("ping");
    const jobs = await call(ui.url, "GET", "/api/jobs", { cookie });
    expect(jobs.status).toBe(503);
    expect((jobs.json() as { error: string }).error).toMatch(/receiver/);
  });
});

describe("request pacing", () => {
  it("refuses batch_sleep without batch_size and pacing out of range", async () => {
    const cookie = await loginAs(ui.url);
    const start = (extra: Record<string, unknown>) =>
      call(ui.url, "POST", "/api/requests", { cookie, body: { agent: "rpcutil", action: "ping", ...extra } });
    const sleepOnly = await start({ batch_sleep: 2 });
    expect(sleepOnly.status).toBe(400);
    expect(sleepOnly.json()).toEqual({ error: "batch_sleep needs batch_size" });
    for (const bad of [
      { canary: 0 },
      { canary: 1.5 },
      { batch_size: 0 },
      { batch_size: 2, batch_sleep: -1 },
    ]) {
      const r = await start(bad);
      expect(r.status, JSON.stringify(bad)).toBe(400);
      expect((r.json() as { error: string }).error).toMatch(/canary|batch_size|batch_sleep/);
    }
  });

  it("a failing canary stops the request: the rest is never sent", async () => {
    const cookie = await loginAs(ui.url);
    // every node fails get_config_item for an unknown item, so the one-node canary fails
    const start = await call(ui.url, "POST", "/api/requests", {
      cookie,
      body: {
        agent: "rpcutil",
        action: "get_config_item",
        inputs: { item: "no.such.item" },
        filter: { identity: [1, 2, 3, 4].map(emulatedIdentity) },
        canary: 1,
        batch_size: 2,
        batch_sleep: 0,
      },
    });
    expect(start.status).toBe(200);
    const { id } = start.json() as { id: string };
    const events = parseSse((await call(ui.url, "GET", `/api/requests/${id}/events`, { cookie })).body);
    expect(events.filter((e) => e.event === "reply")).toHaveLength(1);
    expect(events.find((e) => e.event === "summary")?.data).toMatchObject({
      responses: 1,
      failed: 1,
      canaryStopped: true,
      skipped: 3,
    });
    expect(events.at(-1)).toEqual({ event: "end", data: { ok: false } });
    // a good canary goes on to every node
    const good = await call(ui.url, "POST", "/api/requests", {
      cookie,
      body: {
        agent: "rpcutil",
        action: "ping",
        filter: { identity: [1, 2, 3, 4].map(emulatedIdentity) },
        canary: 1,
        batch_size: 2,
        batch_sleep: 0,
      },
    });
    const { id: gid } = good.json() as { id: string };
    const ge = parseSse((await call(ui.url, "GET", `/api/requests/${gid}/events`, { cookie })).body);
    expect(ge.find((e) => e.event === "summary")?.data).toMatchObject({ responses: N, ok: N });
    expect(
      (ge.find((e) => e.event === "summary")?.data as { canaryStopped?: boolean }).canaryStopped,
    ).toBeUndefined();
  });
});

describe("audit", () => {
  it("without an audit config, says how to enable the audit view", async () => {
    const cookie = await loginAs(ui.url);
    const r = await call(ui.url, "GET", "/api/audit", { cookie });
    expect(r.status).toBe(200);
    const body = r.json() as AuditResponse;
    expect(body.records).toEqual([]);
    expect(body.note).toMatch(/--audit-config FILE.*CHORUS_AAA_AUDIT.*admin-client\.conf/);
  });

  it("reads the AAA audit stream with the admin credential, newest first, filtered", async () => {
    const cookie = await loginAs(adminUi.url);
    const get = async (q = "") => {
      const r = await call(adminUi.url, "GET", `/api/audit${q}`, { cookie });
      expect(r.status).toBe(200);
      return r.json() as AuditResponse;
    };
    let all = await get();
    for (let i = 0; i < 100 && all.records.length < 3; i++) {
      await new Promise((r) => setTimeout(r, 50));
      all = await get();
    }
    expect(all.note).toBeUndefined();
    expect(all.stream).toBe("CHORUS_AAA_AUDIT");
    expect(all.records.map((e) => `${e.caller} ${e.agent}#${e.action} ${e.decision}`)).toEqual([
      "up=alice puppet#status allow",
      "up=bob puppet#disable deny",
      "up=alice rpcutil#ping allow",
    ]);
    expect((await get("?decision=deny")).records.map((e) => e.caller)).toEqual(["up=bob"]);
    expect((await get("?caller=ALICE&agent=puppet")).records.map((e) => e.action)).toEqual(["status"]);
    const page = await get("?limit=1");
    expect(page).toMatchObject({ matched: 3 });
    expect((await get(`?limit=1&before=${page.records[0]!.seq}`)).records[0]?.action).toBe("disable");
    // new records appear without a restart
    const js = jetstream(await auditor.connect());
    await js.publish("chorus.aaa.audit", auditRecord("up=carol", "service", "restart", "deny"));
    let live = await get("?caller=carol");
    for (let i = 0; i < 100 && live.records.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      live = await get("?caller=carol");
    }
    expect(live.records[0]).toMatchObject({ agent: "service", action: "restart", decision: "deny" });
  });

  it("refuses bad audit queries", async () => {
    const cookie = await loginAs(adminUi.url);
    for (const q of ["?decision=maybe", "?limit=0", "?limit=5000", "?before=x"]) {
      const r = await call(adminUi.url, "GET", `/api/audit${q}`, { cookie });
      expect(r.status, q).toBe(400);
      expect((r.json() as { error: string }).error).toMatch(/^bad request/);
    }
  });
});

describe("registration", () => {
  const fleetOf = async (u: UiServer) =>
    (await call(u.url, "GET", "/api/fleet", { cookie: await loginAs(u.url) })).json() as {
      registration: string;
      inventoryEveryS: number;
    };

  it("is not subscribed without a credential for it, and nothing warns", async () => {
    expect(await ui.registration()).toBe("off");
    expect(await fleetOf(ui)).toMatchObject({ registration: "off", inventoryEveryS: 60 });
    expect(uiLog.lines.filter((l) => l.level >= 40)).toEqual([]);
  });

  it("refused for the admin credential: one info line, no warning, and the inventory poll carries on", async () => {
    expect(await adminUi.registration()).toBe("refused");
    expect((await fleetOf(adminUi)).registration).toBe("refused");
    const said = adminLog.lines.filter((l) => /registration/.test(l.msg));
    expect(said, JSON.stringify(said)).toHaveLength(1);
    expect(said[0]).toMatchObject({ level: 30 });
    expect(said[0]!.msg).toMatch(
      /may not subscribe to mcollective\.broadcast\.agent\.registration \(its NATS permissions do not include it\)/,
    );
    // the credential's NATS JWT told: the broker was not asked, so it logged no violation
    expect(brokerLines.filter((l) => /Subscription Violation/.test(l))).toEqual([]);
    expect(adminLog.lines.filter((l) => l.level >= 40)).toEqual([]);
    expect(adminUi.fleet.size).toBe(N);
  });

  it("live for a credential that may subscribe: a node's registration shows up without a poll", async () => {
    expect(await regUi.registration()).toBe("live");
    expect(regUi.fleet.get(REG_NODE)).toBeUndefined();
    const conf = fleet.setup.serverConfigs[REG_NODE]!;
    appendFileSync(conf, "\nregistration = inventory_content\nregistration_splay = false\n");
    regServer = await Server.fromConfigFile(conf, { logger: quiet });
    await regServer.start();
    // its lifecycle startup event may list the node first, without facts: wait for the registration
    const registered = () => (regUi.fleet.get(REG_NODE)?.facts as { role?: string } | undefined)?.role;
    for (let i = 0; i < 100 && !registered(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(regUi.fleet.get(REG_NODE)).toMatchObject({ status: "alive", facts: { role: "dev" } });
    expect((await fleetOf(regUi)).registration).toBe("live");
  });
});

describe("static files and metrics", () => {
  it("serves the front end and refuses traversal", async () => {
    const index = await call(ui.url, "GET", "/");
    expect(index.status).toBe(200);
    expect(index.headers["content-type"]).toMatch(/text\/html/);
    expect(index.body).toContain("console");
    const js = await call(ui.url, "GET", "/app.js");
    expect(js.headers["content-type"]).toMatch(/javascript/);
    for (const p of ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt"]) {
      const r = await call(ui.url, "GET", p);
      expect(r.status).toBe(404);
      expect(r.body).not.toContain("outside the web root");
    }
  });

  it("serves metrics to the bearer token or a session only, and counts requests and login failures", async () => {
    const anon = await call(ui.url, "GET", "/metrics");
    expect(anon.status).toBe(401);
    expect(anon.json()).toEqual({
      error: "metrics need the bearer token (--metrics-token-file) or a logged-in session",
    });
    expect(anon.body).not.toContain("chorus_ui");
    const wrong = await call(ui.url, "GET", "/metrics", { headers: { authorization: "Bearer nope" } });
    expect(wrong.status).toBe(401);
    const r = await call(ui.url, "GET", "/metrics", {
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    });
    expect(r.status).toBe(200);
    expect(r.body).toMatch(/chorus_ui_login_failures_total [1-9]/);
    expect(r.body).toMatch(/chorus_ui_http_requests_total\{/);
    const bySession = await call(ui.url, "GET", "/metrics", { cookie: await loginAs(ui.url) });
    expect(bySession.status).toBe(200);
    // a console without a token: sessions only, and the message says how to add one
    const other = await call(shortUi.url, "GET", "/metrics", { headers: { authorization: "Bearer x" } });
    expect(other.status).toBe(401);
    expect((other.json() as { error: string }).error).toMatch(/--metrics-token-file/);
  });
});
