// The web console at fleet scale, each figure against a baseline measured in the same run.
//
// A. The fleet page with N synthetic nodes (default 50 000) in Debian's chromium
//    (playwright-core): time from navigation until the first page of 100 rows and the
//    node count are drawn, and the page's JS heap (after a forced GC) and DOM nodes, from
//    the Chrome DevTools Protocol. Baselines, from a bare HTTPS server in the same run:
//    - a static HTML table of the same N rows (identity, status, age): time to its first
//      paint and until the whole table is in the page, heap, DOM nodes;
//    - the raw JSON of the same N nodes (every field the console has), fetched and parsed
//      by a blank page: time, heap holding the parsed rows.
// B. The console server under S concurrent sessions (default 50), each polling the fleet
//    page's two calls (a random page of /api/fleet and /api/fleet/counts?fact=os) once a
//    second, as S browsers on the fleet page would: request latency (median, p99), and the
//    server process's RSS and CPU. Baseline: a bare fastify HTTPS server answering the
//    same paths with the same JSON bodies, precomputed, under the same load.
// Each server runs in its own child process, so its RSS and CPU are its own.
// Not part of the tests. Run: bench/ui.sh [--nodes 50000] [--sessions 50] [--window 15] [--runs 3]
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { Agent, request as httpsRequest } from "node:https";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { fastify } from "fastify";
import { pino } from "pino";
import { chromium, type Browser, type Page } from "playwright-core";
import { emulatedFacts, emulatedIdentity } from "../src/apps/emulator/index.js";
import { startUi, type FleetNode } from "../src/apps/ui/index.js";
import { startSecureFleet } from "../test/helpers/fleet.js";

const { values: opt } = parseArgs({
  options: {
    nodes: { type: "string", default: "50000" },
    sessions: { type: "string", default: "50" },
    window: { type: "string", default: "15" },
    runs: { type: "string", default: "3" },
    poll: { type: "string", default: "1000" },
    // internal: a child serving one side
    child: { type: "string" },
    dir: { type: "string" },
    web: { type: "string" },
    assets: { type: "boolean", default: false },
  },
});
const NODES = Number(opt.nodes);
const SESSIONS = Number(opt.sessions);
const WINDOW_S = Number(opt.window);
const POLL_MS = Number(opt.poll);
const PAGE = 100;
const PASSWORD = "bench-password";
const CHROMIUM = process.env.CHORUS_CHROMIUM ?? "/usr/bin/chromium";
const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// what the functions run inside the page use (this file is compiled without the DOM library)
declare const document: {
  querySelectorAll(selector: string): { length: number };
  querySelector(selector: string): { textContent: string | null } | null;
};

/** Node i as registration would describe it: the emulator's facts, a class, four agents. */
function synthetic(i: number): {
  identity: string;
  facts: Record<string, unknown>;
  classes: string[];
  agents: string[];
} {
  const facts = emulatedFacts(i);
  return {
    identity: emulatedIdentity(i),
    facts,
    classes: [`role::${String(facts.role)}`],
    agents: ["choria_util", "discovery", "rpcutil", "scout"],
  };
}

// ---------------------------------------------------------------------------------------
// children

interface Sample {
  rss: number;
  heap: number;
  /** CPU µs (user + system) since the child started */
  cpu: number;
}

function reportLoop(): void {
  const send = () => {
    const m = process.memoryUsage();
    const c = process.cpuUsage();
    if (process.connected)
      process.send?.({ sample: { rss: m.rss, heap: m.heapUsed, cpu: c.user + c.system } satisfies Sample });
  };
  setInterval(send, 250).unref();
  send();
}

async function consoleChild(dir: string, web: string): Promise<void> {
  const ui = await startUi({
    config: join(dir, "client.conf"),
    cert: join(dir, "tls", "broker.pem"),
    key: join(dir, "tls", "broker.key"),
    devPassword: PASSWORD,
    webRoot: web,
    inventoryEveryMs: 0,
    discoveryTimeoutMs: 500,
    logger: pino({ level: "error" }, pino.destination(2)),
  });
  await ui.refreshFleet();
  const now = Date.now();
  for (let i = 1; i <= NODES; i++) {
    const n = synthetic(i);
    ui.fleet.seen(n.identity, n, now);
  }
  process.send?.({ url: ui.url });
  reportLoop();
  process.on("message", (m) => {
    if (m === "stop") void ui.close().then(() => process.exit(0));
  });
}

/**
 * The bare server: the same bodies the console would send, made once; with `assets`, also
 * the page baselines (the whole table as HTML, all nodes as JSON), kept out of the RSS the
 * sessions' baseline measures.
 */
async function bareChild(dir: string, assets: boolean): Promise<void> {
  const now = Date.now();
  const nodes: FleetNode[] = [];
  for (let i = 1; i <= NODES; i++) {
    const n = synthetic(i);
    nodes.push({ ...n, lastSeen: new Date(now).toISOString(), ageS: 0, status: "alive" });
  }
  nodes.sort((a, b) => (a.identity < b.identity ? -1 : 1));
  const summary = { alive: NODES, stale: 0, gone: 0 };
  const pages: string[] = [];
  for (let off = 0; off < NODES; off += PAGE)
    pages.push(
      JSON.stringify({
        total: NODES,
        offset: off,
        limit: PAGE,
        nodes: nodes.slice(off, off + PAGE),
        summary,
        registration: "off",
        inventoryEveryS: 0,
      }),
    );
  const counts: Record<string, number> = {};
  for (const n of nodes) counts[String(n.facts.os)] = (counts[String(n.facts.os)] ?? 0) + 1;
  const countsBody = JSON.stringify({ fact: "os", counts });
  const rows = assets ? JSON.stringify(nodes) : "";
  const table = [
    "<!doctype html><html><head><meta charset=utf-8><title>table</title></head><body>",
    `<p id=total>${NODES} nodes</p><table><thead><tr><th>identity</th><th>status</th><th>age</th></tr></thead><tbody>`,
    ...(assets ? nodes : []).map(
      (n) => `<tr><td>${n.identity}</td><td>${n.status}</td><td>${n.ageS}s</td></tr>`,
    ),
    "</tbody></table></body></html>",
  ].join("\n");

  const app = fastify({
    https: {
      cert: readFileSync(join(dir, "tls", "broker.pem")),
      key: readFileSync(join(dir, "tls", "broker.key")),
    },
  });
  const json = "application/json; charset=utf-8";
  app.get<{ Querystring: { offset?: string } }>("/api/fleet", async (req, reply) => {
    const off = Math.max(0, Math.floor(Number(req.query.offset ?? 0) / PAGE));
    return reply.type(json).send(pages[Math.min(off, pages.length - 1)]);
  });
  app.get("/api/fleet/counts", async (_req, reply) => reply.type(json).send(countsBody));
  app.get("/rows.json", async (_req, reply) => reply.type(json).send(rows));
  app.get("/table.html", async (_req, reply) => reply.type("text/html; charset=utf-8").send(table));
  app.get("/blank.html", async (_req, reply) =>
    reply.type("text/html; charset=utf-8").send("<!doctype html><title>blank</title>"),
  );
  await app.listen({ host: "127.0.0.1", port: 0 });
  const addr = app.server.address();
  process.send?.({ url: `https://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/` });
  reportLoop();
  process.on("message", (m) => {
    if (m === "stop") void app.close().then(() => process.exit(0));
  });
}

// ---------------------------------------------------------------------------------------
// parent

interface Server {
  url: string;
  proc: ChildProcess;
  samples: Sample[];
  stop(): Promise<void>;
}

function startChild(kind: "console" | "bare", dir: string, web: string, assets = false): Promise<Server> {
  const script = fileURLToPath(import.meta.url);
  const proc = spawn(
    process.execPath,
    [
      script,
      ...["--child", kind, "--dir", dir, "--web", web, "--nodes", String(NODES)],
      ...(assets ? ["--assets"] : []),
    ],
    { stdio: ["ignore", "inherit", "inherit", "ipc"] },
  );
  const samples: Sample[] = [];
  return new Promise((resolve, reject) => {
    proc.once("exit", (code) => reject(new Error(`${kind} server exited ${code}`)));
    proc.on("message", (m: { url?: string; sample?: Sample }) => {
      if (m.sample) samples.push(m.sample);
      if (m.url)
        resolve({
          url: m.url,
          proc,
          samples,
          stop: () =>
            new Promise<void>((done) => {
              if (proc.exitCode !== null || !proc.connected) return done();
              proc.removeAllListeners("exit");
              proc.once("exit", () => done());
              proc.send("stop");
            }),
        });
    });
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] as number;
const f0 = (x: number) => Math.round(x).toString();
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

interface PageFigures {
  ms: number;
  /** the static table: first paint */
  firstPaintMs?: number;
  heapMiB: number;
  domNodes: number;
  /** RSS of the renderer process (a fresh browser for each page): the DOM is not in the JS heap */
  rendererMiB: number;
}

/** VmRSS of a process, MiB (0 when it is gone). */
function rssOf(pid: number): number {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb ? Number(kb) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** JS heap after a full GC and DOM nodes (DevTools protocol), and the renderers' RSS. */
async function pageMemory(page: Page): Promise<{ heapMiB: number; domNodes: number; rendererMiB: number }> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Performance.enable");
  await cdp.send("HeapProfiler.collectGarbage");
  const { metrics } = await cdp.send("Performance.getMetrics");
  const get = (name: string) => metrics.find((m) => m.name === name)?.value ?? 0;
  await cdp.detach();
  const bcdp = await (page.context().browser() as Browser).newBrowserCDPSession();
  const info = (await bcdp.send("SystemInfo.getProcessInfo")) as {
    processInfo: { type: string; id: number }[];
  };
  await bcdp.detach();
  // a fresh browser per page, renderers limited to one: that one holds just this page
  const rendererMiB = info.processInfo
    .filter((p) => p.type === "renderer")
    .reduce((sum, p) => sum + rssOf(p.id), 0);
  return { heapMiB: get("JSHeapUsedSize") / MiB, domNodes: get("Nodes"), rendererMiB };
}

async function consolePage(browser: Browser, url: string): Promise<PageFigures> {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 900 } });
  try {
    const login = await ctx.request.post(new URL("/api/login", url).href, {
      data: { username: "admin", password: PASSWORD },
    });
    if (!login.ok()) throw new Error(`console login: ${login.status()}`);
    const page = await ctx.newPage();
    await page.goto(new URL("#/fleet", url).href, { waitUntil: "commit" });
    // time since the navigation started, taken in the page on the first frame that has it all
    const ms = await page.waitForFunction(
      (want: string) =>
        document.querySelectorAll('[data-testid="fleet-table"] tbody tr').length === 100 &&
        document.querySelector('[data-testid="fleet-total"]')?.textContent === want
          ? performance.now()
          : false,
      `${NODES} nodes`,
      { polling: "raf", timeout: 60_000 },
    );
    return { ms: (await ms.jsonValue()) as number, ...(await pageMemory(page)) };
  } finally {
    await ctx.close();
  }
}

async function tablePage(browser: Browser, url: string): Promise<PageFigures> {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 900 } });
  try {
    const page = await ctx.newPage();
    await page.goto(new URL("/table.html", url).href, { waitUntil: "commit" });
    const ms = await page.waitForFunction(
      (n: number) => (document.querySelectorAll("tbody tr").length === n ? performance.now() : false),
      NODES,
      { polling: "raf", timeout: 120_000 },
    );
    await page.waitForLoadState("load");
    const firstPaintMs = await page.evaluate(
      () => performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? Number.NaN,
    );
    return { ms: (await ms.jsonValue()) as number, firstPaintMs, ...(await pageMemory(page)) };
  } finally {
    await ctx.close();
  }
}

async function jsonPage(browser: Browser, url: string): Promise<PageFigures> {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  try {
    const page = await ctx.newPage();
    await page.goto(new URL("/blank.html", url).href);
    const ms = await page.evaluate(async () => {
      const t0 = performance.now();
      const rows = (await (await fetch("/rows.json")).json()) as unknown[];
      // keep the rows, as a page showing them would
      (globalThis as { rows?: unknown[] }).rows = rows;
      return performance.now() - t0;
    });
    return { ms, ...(await pageMemory(page)) };
  } finally {
    await ctx.close();
  }
}

// -- B: sessions polling -------------------------------------------------------------------

function get(url: string, agent: Agent, cookie: string | undefined, ca: Buffer): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { agent, ca, headers: cookie ? { cookie } : {} }, (res) => {
      res.on("data", () => {});
      res.on("end", () =>
        res.statusCode === 200
          ? resolve(performance.now() - t0)
          : reject(new Error(`${url}: ${res.statusCode}`)),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

async function loginCookie(url: string, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      new URL("/api/login", url),
      { method: "POST", ca, headers: { "content-type": "application/json" } },
      (res) => {
        res.resume();
        res.on("end", () =>
          res.statusCode === 200
            ? resolve(String(res.headers["set-cookie"]).split(";")[0] as string)
            : reject(new Error(`login ${res.statusCode}`)),
        );
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify({ username: "admin", password: PASSWORD }));
  });
}

interface LoadFigures {
  p50: number;
  p99: number;
  requests: number;
  errors: number;
  rssMiB: number;
  rssMaxMiB: number;
  /** server CPU, fraction of one core, over the window */
  cpu: number;
}

async function sessionsLoad(server: Server, ca: Buffer, withLogin: boolean): Promise<LoadFigures> {
  const sessions = await Promise.all(
    Array.from({ length: SESSIONS }, async () => ({
      // a browser keeps a few connections per host
      agent: new Agent({ keepAlive: true, maxSockets: 6 }),
      cookie: withLogin ? await loginCookie(server.url, ca) : undefined,
    })),
  );
  const lat: number[] = [];
  let errors = 0;
  let measuring = false;
  let stop = false;
  const loop = async (s: (typeof sessions)[number]) => {
    await sleep(Math.random() * POLL_MS);
    while (!stop) {
      const next = Date.now() + POLL_MS;
      const off = Math.floor(Math.random() * (NODES / PAGE)) * PAGE;
      const calls = [
        get(new URL(`/api/fleet?offset=${off}&limit=${PAGE}`, server.url).href, s.agent, s.cookie, ca),
        get(new URL("/api/fleet/counts?fact=os", server.url).href, s.agent, s.cookie, ca),
      ];
      for (const r of await Promise.allSettled(calls)) {
        if (!measuring) continue;
        if (r.status === "fulfilled") lat.push(r.value);
        else errors++;
      }
      await sleep(Math.max(0, next - Date.now()));
    }
  };
  const loops = sessions.map(loop);
  await sleep(2_000); // connections up, JIT warm
  const from = server.samples.length;
  measuring = true;
  const t0 = Date.now();
  await sleep(WINDOW_S * 1000);
  measuring = false;
  const wall = (Date.now() - t0) / 1000;
  const window = server.samples.slice(from);
  stop = true;
  await Promise.all(loops);
  for (const s of sessions) s.agent.destroy();
  const first = window[0] as Sample;
  const last = window.at(-1) as Sample;
  return {
    p50: median(lat),
    p99: pct(lat, 0.99),
    requests: lat.length / wall,
    errors,
    rssMiB: median(window.map((w) => w.rss)) / MiB,
    rssMaxMiB: Math.max(...window.map((w) => w.rss)) / MiB,
    cpu: (last.cpu - first.cpu) / 1e6 / wall,
  };
}

async function main(): Promise<void> {
  if (opt.child === "console") return consoleChild(opt.dir as string, opt.web as string);
  if (opt.child === "bare") return bareChild(opt.dir as string, opt.assets === true);
  const runs = Number(opt.runs);
  const root = process.cwd();
  const web = mkdtempSync(join(tmpdir(), "chorus-bench-ui-web-"));
  execFileSync(process.execPath, [join(root, "scripts", "build-ui.mjs"), "--out", web]);
  const fleet = await startSecureFleet({ streams: false });
  const dir = fleet.setup.dir;
  const ca = readFileSync(fleet.setup.caFile);
  const load0 = loadavg();
  const [consoleSrv, pages] = await Promise.all([
    startChild("console", dir, web),
    startChild("bare", dir, web, true),
  ]);
  let bare: Server | undefined;
  const launch = () =>
    chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--renderer-process-limit=1",
      ],
    });
  /** one page in its own browser, closed after */
  const fresh = async (f: (b: Browser, url: string) => Promise<PageFigures>, url: string) => {
    const b = await launch();
    try {
      return await f(b, url);
    } finally {
      await b.close();
    }
  };
  const A = { console: [] as PageFigures[], table: [] as PageFigures[], json: [] as PageFigures[] };
  const B = { console: [] as LoadFigures[], bare: [] as LoadFigures[] };
  try {
    for (let r = 0; r < runs; r++) {
      // alternate so drift spreads over every side
      A.table.push(await fresh(tablePage, pages.url));
      A.json.push(await fresh(jsonPage, pages.url));
      A.console.push(await fresh(consolePage, consoleSrv.url));
      console.error(
        `run ${r + 1}/${runs} page: console ${JSON.stringify(A.console.at(-1))} table ${JSON.stringify(A.table.at(-1))} json ${JSON.stringify(A.json.at(-1))}`,
      );
    }
    await pages.stop();
    bare = await startChild("bare", dir, web);
    for (let r = 0; r < runs; r++) {
      B.bare.push(await sessionsLoad(bare, ca, false));
      B.console.push(await sessionsLoad(consoleSrv, ca, true));
      console.error(
        `run ${r + 1}/${runs} sessions: console ${JSON.stringify(B.console.at(-1))} bare ${JSON.stringify(B.bare.at(-1))}`,
      );
    }
  } finally {
    await consoleSrv.stop();
    await pages.stop().catch(() => {});
    await bare?.stop();
    await fleet.stop();
    rmSync(web, { recursive: true, force: true });
  }

  const m = <T>(xs: T[], k: keyof T) => median(xs.map((x) => x[k] as number));
  const load1 = loadavg();
  console.log(
    `ui bench: ${NODES} nodes, ${SESSIONS} sessions polling every ${POLL_MS} ms for ${WINDOW_S} s, ${runs} runs (medians); ` +
      `load average ${load0.map(f2).join(" ")} -> ${load1.map(f2).join(" ")}`,
  );
  console.log("A. fleet page in chromium");
  console.log(
    `  console, first 100 rows + count drawn: ${f0(m(A.console, "ms"))} ms, JS heap ${f1(m(A.console, "heapMiB"))} MiB, ` +
      `renderer RSS ${f0(m(A.console, "rendererMiB"))} MiB, ${f0(m(A.console, "domNodes"))} DOM nodes`,
  );
  console.log(
    `  static table of ${NODES} rows: first paint ${f0(m(A.table, "firstPaintMs"))} ms, complete ${f0(m(A.table, "ms"))} ms, ` +
      `JS heap ${f1(m(A.table, "heapMiB"))} MiB, renderer RSS ${f0(m(A.table, "rendererMiB"))} MiB, ${f0(m(A.table, "domNodes"))} DOM nodes`,
  );
  console.log(
    `  raw JSON of ${NODES} nodes, fetch + parse: ${f0(m(A.json, "ms"))} ms, JS heap ${f1(m(A.json, "heapMiB"))} MiB, ` +
      `renderer RSS ${f0(m(A.json, "rendererMiB"))} MiB`,
  );
  console.log(
    `  ratios: time console/table ${f2(m(A.console, "ms") / m(A.table, "ms"))}, console/first paint ${f2(m(A.console, "ms") / m(A.table, "firstPaintMs"))}, console/JSON ${f2(m(A.console, "ms") / m(A.json, "ms"))}; ` +
      `renderer RSS console/table ${f2(m(A.console, "rendererMiB") / m(A.table, "rendererMiB"))}, console/JSON ${f2(m(A.console, "rendererMiB") / m(A.json, "rendererMiB"))}; ` +
      `JS heap console/JSON ${f2(m(A.console, "heapMiB") / m(A.json, "heapMiB"))}`,
  );
  console.log(`B. ${SESSIONS} sessions on the server`);
  for (const [name, xs] of [
    ["console", B.console],
    ["bare fastify, same JSON", B.bare],
  ] as const)
    console.log(
      `  ${name}: ${f0(m(xs, "requests"))} req/s, latency p50 ${f1(m(xs, "p50"))} ms p99 ${f1(m(xs, "p99"))} ms, ` +
        `RSS ${f0(m(xs, "rssMiB"))} MiB (max ${f0(m(xs, "rssMaxMiB"))}), CPU ${f0(m(xs, "cpu") * 100)}% of a core, errors ${m(xs, "errors")}`,
    );
  console.log(
    `  ratios console/bare: p50 ${f2(m(B.console, "p50") / m(B.bare, "p50"))}, p99 ${f2(m(B.console, "p99") / m(B.bare, "p99"))}, ` +
      `RSS ${f2(m(B.console, "rssMiB") / m(B.bare, "rssMiB"))}, CPU ${f2(m(B.console, "cpu") / m(B.bare, "cpu"))}`,
  );
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
