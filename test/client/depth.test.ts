import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  computeSummaries,
  exitCodeFor,
  renderJson,
  renderJsonl,
  renderSummaries,
  renderTable,
  renderText,
} from "../../src/apps/cli/render/index.js";
import {
  Client,
  TOO_DEEP_STATUSMSG,
  emptyDropCounts,
  openReply,
  parseRpcReplyBody,
  type ClientLogger,
  type RpcReply,
  type RpcResult,
} from "../../src/client/index.js";
import { ReplyCollector } from "../../src/client/collect.js";
import { lineLogger } from "../../src/core/util/index.js";
import { Emulator, emulatedIdentity } from "../../src/apps/emulator/index.js";
import {
  MAX_JSON_DEPTH,
  encodeMessage,
  encodeReply,
  encodeSecureReply,
  encodeTransport,
} from "../../src/core/protocol/index.js";
import { Server } from "../../src/server/index.js";
import { chorusAsync, type CliResult } from "../helpers/cli.js";
import { startNats } from "../helpers/nats.js";
import { startSecureFleet, type SecureFleet } from "../helpers/fleet.js";
import { TEST_DDL, startServerResponder, type Responder } from "./fleet.js";

// A node that answers with data nested 15 000 levels deep must cost the client that
// one reply (reported as failed, naming the node), never the process or the other
// replies. Real broker (TLS, JWT auth, ACLs), two Chorus servers, a few emulated nodes,
// and one node with genuine server credentials publishing hand-built replies: no
// Chorus server can serialise such data, but anyone holding a node's key can send it.

const DEPTH = 15_000;
const BAD = "evil.lab";
const SERVERS = ["a.lab", "b.lab"];
const EMULATED = Array.from({ length: 4 }, (_, i) => emulatedIdentity(i + 1));
const EVERYONE = [...SERVERS, ...EMULATED, BAD];
const quiet = pino({ level: "silent" });

/** `{"statuscode":0,"statusmsg":"OK","data":{"<key>":[[[[...]]]]}}`, built without recursion. */
function deepBody(key: string): string {
  return `{"statuscode":0,"statusmsg":"OK","data":{"${key}":${"[".repeat(DEPTH)}${"]".repeat(DEPTH)}}}`;
}

let fleet: SecureFleet;
let emulator: Emulator;
let evil: Responder;
let override: string | undefined;
const servers: Server[] = [];

beforeAll(async () => {
  fleet = await startSecureFleet({ servers: [...SERVERS, BAD], streams: false });
  for (const identity of SERVERS) {
    const server = await Server.fromConfigFile(fleet.setup.serverConfigs[identity] as string, {
      logger: quiet,
    });
    server.registerAgent(TEST_DDL, { echo: (req) => ({ message: req.data.message }) });
    await server.start();
    servers.push(server);
  }
  emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, { nodes: EMULATED.length, logger: quiet });
  await emulator.start();

  evil = await startEvil();
  // the body really is what the test claims: parseable, and too deep for JSON.stringify
  const doc = JSON.parse(deepBody("x")) as unknown;
  expect(() => JSON.stringify(doc)).toThrow(RangeError);
}, 60_000);

afterAll(async () => {
  await evil?.stop();
  await emulator?.stop();
  await Promise.all(servers.map((s) => s.stop()));
  await fleet?.stop();
});

function capture(): { logger: ClientLogger; warnings: string[] } {
  const warnings: string[] = [];
  return {
    warnings,
    logger: lineLogger((level, line) => {
      if (level === "warn" || level === "error") warnings.push(line);
    }),
  };
}

/** The bad node's reply as a failed one, the others untouched. */
function expectBadReplyReported(r: RpcResult, good: string[]): void {
  expect(r.replies.map((x) => x.sender).sort()).toEqual([...good, BAD].sort());
  const bad = r.replies.find((x) => x.sender === BAD);
  expect(bad).toMatchObject({ statuscode: 5, statusmsg: TOO_DEEP_STATUSMSG, data: {} });
  expect(r.stats).toMatchObject({ responses: good.length + 1, ok: good.length, failed: 1, noResponses: [] });
  expect(r.stats.dropped).toEqual({ malformed: 0, hash: 0, signature: 0, request: 0, duplicate: 0 });
  expect(exitCodeFor(r.stats)).toBe(2);
  // every output the CLI has copes with the result
  const ddl = TEST_DDL.metadata.name === r.agent ? TEST_DDL : undefined;
  for (const text of [renderText(r, ddl, "all"), renderJson(r), renderJsonl(r), renderTable(r, ddl)]) {
    expect(text).toContain(BAD);
    expect(text).toContain(TOO_DEEP_STATUSMSG);
    for (const g of good) expect(text).toContain(g);
  }
}

describe("a reply nested 15 000 levels deep", () => {
  it("is one failed reply through the Client API, the others kept", async () => {
    for (const verifyReplySignatures of [false, true]) {
      const { logger, warnings } = capture();
      const c = await Client.fromConfigFile(fleet.setup.clientConfig, { logger, verifyReplySignatures });
      c.registerDDL(TEST_DDL);
      try {
        const r = await c.request("testagent", "echo", { message: "hi there" }, { nodes: [...SERVERS, BAD] });
        expectBadReplyReported(r, SERVERS);
        for (const s of SERVERS) {
          expect(r.replies.find((x) => x.sender === s)?.data).toEqual({ message: "hi there", extra: "dflt" });
        }
        expect(warnings).toEqual([`reply from ${BAD} rejected: ${TOO_DEEP_STATUSMSG}`]);
      } finally {
        await c.close();
      }
    }
  });

  it("does not disturb discovery or a fleet-wide request", async () => {
    const { logger, warnings } = capture();
    const c = await Client.fromConfigFile(fleet.setup.clientConfig, { logger, discoveryTimeoutMs: 1500 });
    try {
      const r = await c.request("rpcutil", "ping", {}, { discoveryWindowed: true });
      expect(r.stats.discovered).toBe(EVERYONE.length);
      expectBadReplyReported(r, [...SERVERS, ...EMULATED]);
      for (const x of r.replies) if (x.sender !== BAD) expect(typeof x.data.pong).toBe("number");
      expect(warnings.join("\n")).toContain(`reply from ${BAD} rejected`);
    } finally {
      await c.close();
    }
  });

  describe("chorus req (built CLI)", () => {
    const env = () => ({ CHORUS_CONFIG: fleet.setup.clientConfig });
    const args = (...extra: string[]) => [
      "req",
      "rpcutil",
      "ping",
      ...EVERYONE.flatMap((n) => ["-I", n]),
      "--timeout",
      "5",
      ...extra,
    ];
    const good = [...SERVERS, ...EMULATED];

    /** No crash, rc 2 (some node failed), the warning on stderr naming the node. */
    function expectReported(r: CliResult): void {
      expect(r.stderr).not.toMatch(/RangeError|Maximum call stack|at .*\.js:\d+/);
      expect(r.stderr).toContain(`chorus: reply from ${BAD} rejected: ${TOO_DEEP_STATUSMSG}\n`);
      expect(r.status).toBe(2);
    }

    for (const verify of [[], ["--verify-replies"]]) {
      const how = verify.length ? "verified by the worker pool" : "hash-checked";
      it(`text output, replies ${how}`, async () => {
        const r = await chorusAsync(args(...verify), env());
        expectReported(r);
        for (const g of good)
          expect(r.stdout).toMatch(new RegExp(`^${g.replace(/\./g, "\\.")}\\s*\\n\\s+Timestamp: \\d+$`, "m"));
        expect(r.stdout).toMatch(
          new RegExp(
            `^${BAD.replace(".", "\\.")}\\s+Unknown Request Status\\n    ${TOO_DEEP_STATUSMSG}$`,
            "m",
          ),
        );
        expect(r.stdout).toContain(`            Responses: ${EVERYONE.length}\n`);
        expect(r.stdout).toContain("                   OK: 6\n");
        expect(r.stdout).toContain("               Failed: 1\n");
      });

      it(`--json, replies ${how}`, async () => {
        const r = await chorusAsync(args("--json", ...verify), env());
        expectReported(r);
        const doc = JSON.parse(r.stdout) as {
          replies: { sender: string; statuscode: number; statusmsg: string; data: Record<string, unknown> }[];
          request_stats: Record<string, unknown>;
        };
        expect(doc.replies.map((x) => x.sender).sort()).toEqual([...EVERYONE].sort());
        for (const x of doc.replies) {
          if (x.sender === BAD) {
            expect(x).toMatchObject({ statuscode: 5, statusmsg: TOO_DEEP_STATUSMSG, data: {} });
          } else {
            expect(x.statuscode).toBe(0);
            expect(typeof x.data.pong).toBe("number");
          }
        }
        expect(doc.request_stats).toMatchObject({ responses: 7, ok: 6, failed: 1, no_responses: [] });
      });

      it(`--table, replies ${how}`, async () => {
        const r = await chorusAsync(args("--table", ...verify), env());
        expectReported(r);
        const rows = r.stdout.split("\n").filter((l) => l.startsWith("| ") && !l.startsWith("| Sender"));
        expect(rows).toHaveLength(EVERYONE.length);
        for (const g of good) expect(rows.find((l) => l.startsWith(`| ${g} `))).toMatch(/\| OK +\| \d+ +\|$/);
        const bad = rows.find((l) => l.startsWith(`| ${BAD} `));
        expect(bad).toContain(TOO_DEEP_STATUSMSG);
      });
    }
  });

  it(`lets ${MAX_JSON_DEPTH} levels through (the limit counts the whole body)`, async () => {
    // {"data":{"message":<62 arrays>}} is 64 levels in all; one array more is refused
    const c = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: capture().logger });
    c.registerDDL(TEST_DDL);
    const inner = (n: number) => "[".repeat(n) + "]".repeat(n);
    try {
      for (const [n, ok] of [
        [MAX_JSON_DEPTH - 2, true],
        [MAX_JSON_DEPTH - 1, false],
      ] as const) {
        override = `{"statuscode":0,"statusmsg":"OK","data":{"message":${inner(n)}}}`;
        const r = await c.request("testagent", "echo", { message: "hi" }, { nodes: [BAD] });
        expect(r.replies).toHaveLength(1);
        expect(r.replies[0]?.statuscode).toBe(ok ? 0 : 5);
        if (ok) expect(renderText(r, TEST_DDL)).toContain("Message: [");
      }
    } finally {
      override = undefined;
      await c.close();
    }
  });
});

describe("the pieces, without a fleet", () => {
  const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
  const replyBytes = (message: string) =>
    encodeReply({ message: encodeMessage(message), request: "r1", sender: "n1", agent: "a", time: 1 });
  const withField = (json: Buffer, field: string) =>
    Buffer.from(`${json.toString().slice(0, -1)},"x":${field}}`);

  // the layer check itself is parseLayer's (src/core/protocol/codec.ts), shared with the server
  it("drops a reply whose outer layers nest too deep as malformed", () => {
    const good = encodeSecureReply(replyBytes("{}"));
    const cases: [Buffer, string][] = [
      [withField(encodeTransport(good, { sender: "n1" }), deep(DEPTH)), "transport"],
      [encodeTransport(withField(good, deep(DEPTH)), {}), "secure reply"],
      [encodeTransport(encodeSecureReply(withField(replyBytes("{}"), deep(DEPTH))), {}), "reply"],
    ];
    for (const [bytes, what] of cases) {
      const o = openReply(bytes);
      expect(o).toMatchObject({ ok: false, reason: "malformed" });
      if (!o.ok) expect(o.detail).toMatch(new RegExp(`^${what} is nested .*${MAX_JSON_DEPTH}`));
    }
    // the depth is checked layer by layer: a deep payload inside base64 is the body's business
    const o = openReply(encodeTransport(encodeSecureReply(replyBytes(deepBody("x"))), {}));
    expect(o.ok).toBe(true);
  });

  it("turns a too deep RPC body into a failed reply, keeping 64 levels", () => {
    expect(parseRpcReplyBody(Buffer.from(deepBody("x")))).toEqual({
      statuscode: 5,
      statusmsg: TOO_DEEP_STATUSMSG,
      data: {},
      tooDeep: true,
    });
    const at = (n: number) => Buffer.from(`{"data":{"x":${deep(n)}}}`);
    expect(parseRpcReplyBody(at(MAX_JSON_DEPTH - 2))).toMatchObject({ statuscode: 0, statusmsg: "OK" });
    expect(parseRpcReplyBody(at(MAX_JSON_DEPTH - 1))).toMatchObject({ statuscode: 5, tooDeep: true });
    // brackets in strings are not nesting
    const str = Buffer.from(JSON.stringify({ data: { x: deep(DEPTH) } }));
    expect(parseRpcReplyBody(str)).toMatchObject({ statuscode: 0, data: { x: deep(DEPTH) } });
  });

  it("renders results built by hand with deep data without throwing", () => {
    const deepData = JSON.parse(deep(DEPTH)) as unknown;
    const reply = (sender: string, data: Record<string, unknown>): RpcReply => ({
      sender,
      statuscode: 0,
      statusmsg: "OK",
      data,
      time: new Date(0),
    });
    const r: RpcResult = {
      agent: "testagent",
      action: "echo",
      replies: [reply("ok.lab", { message: "fine" }), reply("deep.lab", { message: deepData })],
      stats: {
        requestid: "r1",
        discovered: 2,
        responses: 2,
        ok: 2,
        failed: 0,
        noResponses: [],
        unexpected: [],
        discoverMs: 0,
        publishMs: 0,
        requestMs: 0,
        startTime: new Date(0),
        dropped: emptyDropCounts(),
      },
    };
    const text = renderText(r, TEST_DDL, "all");
    expect(text).toMatch(/^ok\.lab\n +Message: fine$/m);
    expect(text).toMatch(/^deep\.lab\n +Message: \(not shown: nested too deep\)$/m);
    const table = renderTable(r, TEST_DDL);
    expect(table).toMatch(/\| deep\.lab \| OK +\| \(not shown: nested too deep\) +\|/);
    const json = JSON.parse(renderJson(r)) as {
      replies: { sender: string; statusmsg: string; data: object }[];
    };
    expect(json.replies[0]).toMatchObject({ sender: "ok.lab", data: { message: "fine" } });
    expect(json.replies[1]).toMatchObject({
      sender: "deep.lab",
      statusmsg: `OK (data nested more than ${MAX_JSON_DEPTH} levels deep not shown)`,
      data: {},
    });
    const lines = renderJsonl(r).trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[1] as string)).toMatchObject({ sender: "deep.lab", data: {} });
    const summaries = computeSummaries(
      { ...TEST_DDL.actions[0]!, aggregate: [{ function: "summary", args: ["message"] }] },
      r.replies,
    );
    expect(summaries[0]?.counts).toEqual({ fine: 1, "(nested too deep)": 1 });
    expect(renderSummaries(summaries)).toContain("fine: 1");
  });

  it("keeps collecting when a reply handler throws", async () => {
    const nats = await startNats();
    const nc = await connect({ servers: nats.url });
    try {
      const seen: string[] = [];
      const errors: string[] = [];
      const c = new ReplyCollector(
        nc,
        "replies",
        (data) => {
          const s = Buffer.from(data).toString();
          if (s === "bad") throw new RangeError("Maximum call stack size exceeded");
          seen.push(s);
        },
        undefined,
        (err) => errors.push((err as Error).message),
      );
      for (const m of ["one", "bad", "two"]) nc.publish("replies", m);
      await nc.flush();
      c.start(300);
      await c.done;
      expect(seen).toEqual(["one", "two"]);
      expect(errors).toEqual(["Maximum call stack size exceeded"]);
    } finally {
      await nc.close();
      await nats.stop();
    }
  });
});

/**
 * The bad node, with its own server credentials (so its replies pass --verify-replies):
 * answers every action with the deep body, or with `override` while that is set.
 */
async function startEvil(): Promise<Responder> {
  return startServerResponder(fleet.setup.serverConfigs[BAD] as string, BAD, {
    agents: ["discovery", "rpcutil", "testagent"],
    rawHandler: (action) => override ?? deepBody(action === "ping" ? "pong" : "message"),
  });
}
