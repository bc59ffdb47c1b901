import bcrypt from "bcrypt";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Emulator, emulatedIdentity } from "../../../src/apps/emulator/index.js";
import { startUi, type UiServer } from "../../../src/apps/ui/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const quiet = pino({ level: "silent" });
const N = 4;
const PASSWORD = "s3cret-dev";

let fleet: SecureFleet;
let emulator: Emulator;
let ui: UiServer;
let shortUi: UiServer;
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
  o: { body?: unknown; cookie?: string; rawBody?: string } = {},
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
  fleet = await startSecureFleet();
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
  ui = await startUi(common);
  shortUi = await startUi({ ...common, sessionTtlMs: 300 });
  await ui.refreshFleet();
}, 60_000);

afterAll(async () => {
  await ui?.close();
  await shortUi?.close();
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

  it("counts requests and login failures", async () => {
    const r = await call(ui.url, "GET", "/metrics");
    expect(r.status).toBe(200);
    expect(r.body).toMatch(/chorus_ui_login_failures_total [1-9]/);
    expect(r.body).toMatch(/chorus_ui_http_requests_total\{/);
  });
});
