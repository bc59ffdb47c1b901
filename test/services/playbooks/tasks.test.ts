import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Emulator, emulatedIdentity } from "../../../src/apps/emulator/index.js";
import { Client } from "../../../src/client/index.js";
import {
  openDataStore,
  runPlaybook,
  type DataStore,
  type Playbook,
  type PlaybookEvent,
  type Task,
} from "../../../src/services/playbooks/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const quiet = pino({ level: "silent" });
const nodes = [1, 2].map(emulatedIdentity);

let fleet: SecureFleet;
let emulator: Emulator;
let client: Client;
let dir: string;

interface Hit {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}
const hits: Hit[] = [];
let http: Server;
let base: string;

beforeAll(async () => {
  fleet = await startSecureFleet();
  emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, { nodes: 2, logger: quiet });
  await emulator.start();
  client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet, discoveryTimeoutMs: 800 });
  dir = mkdtempSync(join(tmpdir(), "chorus-pb-tasks-"));
  http = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      hits.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
      if (req.url?.startsWith("/slow")) return void setTimeout(() => res.end("late"), 2000);
      res.statusCode = req.url?.startsWith("/broken") ? 500 : 200;
      res.end(req.url?.startsWith("/broken") ? "no" : "thanks");
    });
  });
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
}, 60_000);
afterAll(async () => {
  http?.closeAllConnections();
  await new Promise((r) => http?.close(r));
  await client?.close();
  await emulator?.stop();
  await fleet?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function book(tasks: Task[], over: Partial<Playbook> = {}): Playbook {
  return {
    metadata: { name: "tasks", version: "1.0.0" },
    uses: {},
    inputs: {},
    nodes: { two: { type: "list", nodes } },
    data_stores: {},
    locks: [],
    pre_book: [],
    tasks,
    on_success: [],
    on_fail: [],
    post_book: [],
    source: join(dir, "book.yaml"),
    ...over,
  };
}

describe("webhook tasks", () => {
  it("GET sends data as query parameters with the headers and a fresh X-Choria-Request-ID", async () => {
    hits.length = 0;
    const hook: Task = {
      type: "webhook",
      uri: `${base}/get?x=1`,
      method: "GET",
      headers: { "X-Team": "ops" },
      data: { deploy: "web", count: 2 },
    };
    const r = await runPlaybook(book([hook, hook]), { client });
    expect(r.report.success).toBe(true);
    expect(hits).toHaveLength(2);
    const h = hits[0] as Hit;
    expect(h.method).toBe("GET");
    const u = new URL(h.url, base);
    expect(Object.fromEntries(u.searchParams)).toEqual({ x: "1", deploy: "web", count: "2" });
    expect(h.headers["x-team"]).toBe("ops");
    expect(h.headers["x-choria-request-id"]).toMatch(/^[0-9A-Za-z]{27}$/);
    expect(hits[1]?.headers["x-choria-request-id"]).not.toBe(h.headers["x-choria-request-id"]);
    expect(r.tasks[0]?.msg).toBe(`Successfully sent GET request to ${base}/get (200)`);
  });

  it("POST sends JSON; a non-2xx status and a timeout fail the task", async () => {
    hits.length = 0;
    const r = await runPlaybook(
      book([{ type: "webhook", uri: `${base}/post`, data: { a: [1, 2], b: "c" } }]),
      {
        client,
      },
    );
    expect(r.report.success).toBe(true);
    expect(hits[0]?.method).toBe("POST");
    expect(hits[0]?.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(hits[0]?.body ?? "")).toEqual({ a: [1, 2], b: "c" });
    expect(hits[0]?.headers["x-choria-request-id"]).toBeTruthy();

    const broken = await runPlaybook(book([{ type: "webhook", uri: `${base}/broken` }]), { client });
    expect(broken.report.success).toBe(false);
    expect(broken.tasks[0]?.msg).toBe(`POST request to ${base}/broken failed: 500 Internal Server Error`);

    const slow = await runPlaybook(book([{ type: "webhook", uri: `${base}/slow`, timeout: "200ms" }]), {
      client,
    });
    expect(slow.tasks[0]?.msg).toBe(`POST ${base}/slow failed: timed out after 0.2s`);
  });
});

describe("shell tasks", () => {
  it("appends --nodes, uses cwd and environment, and keeps the output", async () => {
    mkdirSync(join(dir, "sub"), { recursive: true });
    const r = await runPlaybook(
      book([
        {
          type: "shell",
          command: 'echo "$GREETING from $(basename "$PWD"):"',
          cwd: "sub",
          environment: { GREETING: "hello" },
          nodes: "two",
        },
      ]),
      { client },
    );
    expect(r.report.success).toBe(true);
    const data = r.tasks[0]?.data as { exit_code: number; stdout: string };
    expect(data.exit_code).toBe(0);
    expect(data.stdout).toBe(`hello from sub: --nodes ${nodes.join(",")}\n`);
    // output lines go to the log
    expect(r.logs.some((l) => l.msg === `hello from sub: --nodes ${nodes.join(",")}`)).toBe(true);
  });

  it("a timeout kills the command and fails the task", async () => {
    const t0 = Date.now();
    const r = await runPlaybook(book([{ type: "shell", command: "sleep 10", timeout: "300ms" }]), { client });
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(r.report.success).toBe(false);
    expect(r.tasks[0]?.msg).toBe("Command timed out after 0.3s: sleep 10");
  });
});

describe("data tasks", () => {
  it("writes and deletes store/key with rendered values", async () => {
    const mem: DataStore = await openDataStore("mem", { type: "memory" });
    const r = await runPlaybook(
      book([
        { type: "data", action: "write", key: "mem/version", value: { v: "1.2.3", n: 3 } },
        { type: "data", action: "write", key: "mem/gone", value: "x" },
        { type: "data", action: "delete", key: "mem/gone" },
      ]),
      { client, stores: { mem } },
    );
    expect(r.report.success).toBe(true);
    expect(await mem.read("version")).toEqual({ v: "1.2.3", n: 3 });
    expect(await mem.read("gone")).toBeUndefined();

    const bad = await runPlaybook(book([{ type: "data", action: "write", key: "nope/k", value: 1 }]), {
      client,
      stores: { mem },
    });
    expect(bad.tasks[0]?.msg).toBe("data task failed: key nope/k: no data store nope");
  });
});

describe("job tasks (the workflow agent on emulated nodes)", () => {
  it("starts the workflow on every node and waits until every execution succeeds", async () => {
    const events: PlaybookEvent[] = [];
    const r = await runPlaybook(
      book([
        {
          type: "job",
          nodes: "two",
          workflow: {
            name: "pbjob",
            steps: [
              { name: "a", run: "sleep 0.3" },
              { name: "b", needs: ["a"], run: "true" },
            ],
          },
        },
      ]),
      { client, jobPollMs: 200, onEvent: (e) => events.push(e) },
    );
    expect(r.report.fail_message).toBeUndefined();
    expect(r.report.success).toBe(true);
    const data = r.tasks[0]?.data as Record<string, { state: string; execution_id: string }>;
    expect(Object.keys(data).sort()).toEqual(nodes);
    expect(Object.values(data).every((e) => e.state === "succeeded")).toBe(true);
    // it polled at least once while the first step slept
    expect(events.some((e) => e.kind === "task_progress" && e.done === 0)).toBe(true);
    expect(events.some((e) => e.kind === "task_progress" && e.done === 2 && e.total === 2)).toBe(true);
  });

  it("fails when an execution fails; wait: false returns once started", async () => {
    const failing = await runPlaybook(
      book([{ type: "job", nodes: "two", workflow: "name: broken\nsteps:\n  - {name: a, run: 'exit 4'}\n" }]),
      { client, jobPollMs: 200 },
    );
    expect(failing.report.success).toBe(false);
    expect(failing.tasks[0]?.msg).toContain("2 execution(s) did not succeed");

    const started = await runPlaybook(
      book([
        {
          type: "job",
          nodes: "two",
          wait: false,
          workflow: "name: nap\nsteps:\n  - {name: a, run: 'sleep 0.2'}\n",
        },
      ]),
      { client },
    );
    expect(started.report.success).toBe(true);
    expect(started.tasks[0]?.msg).toBe("Workflow started on 2 node(s)");
  });
});
