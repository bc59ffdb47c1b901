import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerBuiltinAgents } from "../../src/server/index.js";
import { StatusCode, type RpcReplyBody } from "../../src/core/protocol/index.js";
import {
  AgentRegistry,
  NodeRuntime,
  RequestDecoder,
  activationCheck,
  externalKillMs,
  scanAgentDirs,
  type AgentScan,
} from "../../src/server/index.js";
import { buildRequest, makeFixture, parseReply, type Fixture } from "./helpers.js";

const EXAMPLES = fileURLToPath(new URL("../../examples/agents", import.meta.url));

let fx: Fixture;
let libdir: string;
let agentDir: string;

beforeAll(() => {
  fx = makeFixture();
  libdir = join(fx.dir, "lib");
  agentDir = join(libdir, "mcollective", "agent");
  mkdirSync(agentDir, { recursive: true });
});
afterAll(() => fx?.cleanup());

function ddl(name: string, extra: Record<string, unknown> = {}, timeout = 2): string {
  return JSON.stringify({
    metadata: {
      name,
      description: "test",
      author: "tests",
      license: "Apache-2.0",
      version: "1.0.0",
      url: "https://example.invalid",
      timeout,
      provider: "external",
      ...extra,
    },
    actions: [{ action: "run", description: "run it", input: {}, output: {} }],
  });
}

const ACTIVATE = `if [ "$3" = io.choria.mcorpc.external.v1.activation_request ]; then echo '{"activate":true}' > "$2"; exit 0; fi`;

/** An external agent written as a shell script; `body` runs for rpc requests. */
function shellAgent(name: string, body: string, opts: { timeout?: number; activation?: string } = {}): void {
  writeFileSync(join(agentDir, `${name}.json`), ddl(name, {}, opts.timeout ?? 2));
  writeFileSync(join(agentDir, name), `#!/bin/sh\n${opts.activation ?? ACTIVATE}\n${body}\n`, {
    mode: 0o755,
  });
}

function nodeFor(scan: AgentScan): NodeRuntime {
  const registry = new AgentRegistry();
  registerBuiltinAgents(registry);
  for (const a of scan.agents) registry.register(a.ddl, a.actions);
  const sec = fx.serverSecurity("ext.example");
  return new NodeRuntime({
    identity: "ext.example",
    collectives: ["mcollective"],
    registry,
    credential: { token: sec.token, sign: (d) => sec.sign(d) },
    facts: { os: "linux", role: "test" },
  });
}

let decoder: RequestDecoder;
async function call(
  node: NodeRuntime,
  agent: string,
  action: string,
  data: Record<string, unknown> = {},
): Promise<RpcReplyBody | undefined> {
  decoder ??= new RequestDecoder({ security: fx.serverSecurity("decoder.example") });
  const req = buildRequest({ caller: fx.client, agent, body: { action, data } });
  const r = await node.handle(decoder.decode(req.bytes));
  return r ? parseReply(r.data).body : undefined;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill(0); it only counts as alive if it is not one.
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
};

describe("example external agents (Python and shell) and agent modules", () => {
  let node: NodeRuntime;
  let scan: AgentScan;
  beforeAll(async () => {
    // Python start-up alone can take a second or more on a busy 2-core machine.
    scan = await scanAgentDirs([EXAMPLES], { activationTimeoutMs: 10_000 });
    node = nodeFor(scan);
  });

  it("loads every example after its activation check", () => {
    expect(scan.problems).toEqual([]);
    expect(scan.agents.map((a) => [a.name, a.kind])).toEqual([
      ["pyecho", "external"],
      ["shuptime", "external"],
      ["tsgreet", "module"],
    ]);
  });

  it("Python: passes inputs, caller and facts; returns data", async () => {
    const r = await call(node, "pyecho", "echo", { message: "hello world" });
    expect(r).toEqual({
      action: "echo",
      statuscode: 0,
      statusmsg: "OK",
      data: { message: "hello world", caller: "choria=tester", os: "linux" },
    });
  });

  it("Python: the agent's own failure status reaches the caller", async () => {
    expect((await call(node, "pyecho", "add", { a: 2, b: 3 }))?.data).toEqual({ sum: 5 });
    expect(await call(node, "pyecho", "add", { a: 2, b: 0 })).toMatchObject({
      statuscode: StatusCode.Aborted,
      statusmsg: "b may not be 0 in this example",
    });
  });

  it("shell: answers both actions", async () => {
    expect((await call(node, "shuptime", "greet", { name: "Ada" }))?.data).toEqual({ greeting: "hello Ada" });
    const up = await call(node, "shuptime", "uptime");
    expect(up?.statuscode).toBe(0);
    expect(typeof up?.data.seconds).toBe("number");
  });

  it("module agent: handlers from <name>.mjs, DDL output defaults applied", async () => {
    expect((await call(node, "tsgreet", "hello", { name: "Ada" }))?.data).toEqual({
      greeting: "hello Ada from ext.example",
      mood: "cheerful",
    });
    expect(await call(node, "tsgreet", "hello", { name: "Voldemort" })).toMatchObject({ statuscode: 1 });
  });

  it("leaves no temp files behind", () => {
    const left = readdirSync(tmpdir()).filter((f) => f.startsWith("chorus-external-"));
    // other suites may be running agents right now; ours must not accumulate
    expect(left.length).toBeLessThan(5);
  });
});

describe("external agents that misbehave", () => {
  let node: NodeRuntime;
  let scan: AgentScan;
  const pidFile = () => join(fx.dir, "hang.pids");

  beforeAll(async () => {
    shellAgent("badjson", `echo 'this is { not json' > "$2"`);
    shellAgent("nonzero", `echo "disk on fire" >&2; exit 3`);
    shellAgent("noreply", `exit 0`);
    shellAgent("badreply", `echo '{"statuscode": 9, "data": {}}' > "$2"`);
    shellAgent(
      "hang",
      // a grandchild in the same process group, then the agent itself blocks
      `sleep 300 & echo "$$ $!" > ${pidFile()}; sleep 300`,
    );
    shellAgent("chatty", `head -c 8000000 /dev/zero | tr '\\0' x; exit 0`);
    shellAgent("bigreply", `head -c 5000000 /dev/zero | tr '\\0' x > "$2"`);
    shellAgent(
      "daemonish",
      // leaves a child behind that holds stdout open, then replies and exits
      `sleep 30 & echo $! > ${join(fx.dir, "daemonish.pid")}; echo '{"statuscode":0,"statusmsg":"OK","data":{"ok":true}}' > "$2"`,
    );
    shellAgent("lostexec", `echo '{"statuscode":0,"statusmsg":"OK","data":{}}' > "$2"`);
    scan = await scanAgentDirs([libdir], { activationTimeoutMs: 10_000 });
    node = nodeFor(scan);
  });

  const status5 = async (agent: string, pattern: RegExp) => {
    const r = await call(node, agent, "run");
    expect(r?.statuscode).toBe(StatusCode.UnknownError);
    expect(r?.statusmsg).toMatch(pattern);
    return r;
  };

  it("invalid JSON in the reply", async () => {
    await status5("badjson", /^badjson#run failed: .*not JSON/);
  });

  it("non-zero exit, with stderr in the message", async () => {
    await status5("nonzero", /exited with code 3: disk on fire/);
  });

  it("no reply written, or a reply that breaks the protocol", async () => {
    await status5("noreply", /wrote no reply/);
    await status5("badreply", /statuscode must be an integer 0\.\.5/);
  });

  it("megabytes on stdout are drained and dropped; a too large reply file is refused", async () => {
    await status5("chatty", /wrote no reply/);
    await status5("bigreply", /byte reply, more than the 4194304 allowed/);
  });

  it("a child left holding the pipes does not delay the reply", async () => {
    const t0 = Date.now();
    expect(await call(node, "daemonish", "run")).toMatchObject({ statuscode: 0, data: { ok: true } });
    expect(Date.now() - t0).toBeLessThan(1500);
    process.kill(Number(readFileSync(join(fx.dir, "daemonish.pid"), "utf8")), "SIGKILL");
  });

  it("not executable any more when the request comes", async () => {
    chmodSync(join(agentDir, "lostexec"), 0o644);
    try {
      await status5("lostexec", /permission denied/);
    } finally {
      chmodSync(join(agentDir, "lostexec"), 0o755);
    }
  });

  it("never exits: killed with its process group before the DDL timeout, status 5, no zombie", async () => {
    const t0 = Date.now();
    await status5("hang", /did not finish within 1\.5s and was killed/);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(externalKillMs(2) - 50);
    expect(took).toBeLessThan(2000);
    const [agentPid, grandchild] = readFileSync(pidFile(), "utf8").trim().split(" ").map(Number);
    expect(alive(agentPid!)).toBe(false);
    expect(alive(grandchild!)).toBe(false);
    // nothing of ours left as a zombie either
    const zombies = execFileSync("ps", ["-o", "stat=", "--ppid", String(process.pid)], { encoding: "utf8" })
      .split("\n")
      .filter((s) => s.startsWith("Z"));
    expect(zombies).toEqual([]);
  });
});

describe("loading", () => {
  it("refuses a DDL that fails its schema, with the reason; skips DDLs without an implementation", async () => {
    const dir = join(fx.dir, "lib2", "mcollective", "agent");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "tooquick.json"), ddl("tooquick", {}, 1));
    writeFileSync(join(dir, "tooquick"), `#!/bin/sh\n${ACTIVATE}\n`, { mode: 0o755 });
    writeFileSync(join(dir, "misnamed.json"), ddl("othername"));
    writeFileSync(join(dir, "clientonly.json"), ddl("clientonly", { provider: undefined }));
    writeFileSync(join(dir, "noexec.json"), ddl("noexec"));
    writeFileSync(join(dir, "noexec"), `#!/bin/sh\n${ACTIVATE}\n`, { mode: 0o644 });
    writeFileSync(join(dir, "declines.json"), ddl("declines"));
    writeFileSync(join(dir, "declines"), `#!/bin/sh\necho '{"activate":false}' > "$2"\n`, { mode: 0o755 });
    writeFileSync(join(dir, "slowstart.json"), ddl("slowstart"));
    writeFileSync(join(dir, "slowstart"), `#!/bin/sh\nsleep 30\n`, { mode: 0o755 });
    writeFileSync(join(dir, "badmod.json"), ddl("badmod", { provider: undefined }));
    writeFileSync(join(dir, "badmod.mjs"), `export const actions = { nosuch: () => ({}) };\n`);
    const scan = await scanAgentDirs([join(fx.dir, "lib2")], { activationTimeoutMs: 500 });
    expect(scan.agents).toEqual([]);
    const reasons = Object.fromEntries(scan.problems.map((p) => [p.file.split("/").pop(), p.reason]));
    expect(reasons["tooquick.json"]).toMatch(/timeout.*must be >= 2/);
    expect(reasons["misnamed.json"]).toMatch(/names agent "othername"/);
    expect(reasons["noexec"]).toMatch(/needs an executable/);
    expect(reasons["declines"]).toMatch(/not activated: the agent declined/);
    expect(reasons["slowstart"]).toMatch(/not activated: .*did not finish within 0\.5s/);
    expect(reasons["badmod.mjs"]).toMatch(/handler for "nosuch"/);
    expect(scan.skipped.map((f) => f.split("/").pop())).toEqual(["clientonly.json"]);
  });

  it("activationCheck says why an agent that does not speak the protocol is not activated", async () => {
    const exe = join(fx.dir, "mute");
    writeFileSync(exe, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    expect(await activationCheck(exe, "mute")).toEqual({ activate: false, reason: `${exe} wrote no reply` });
  });
});
