import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { register as registerDiscover } from "../../src/apps/cli/discover.js";
import { register as registerPing } from "../../src/apps/cli/ping.js";
import { register as registerReq } from "../../src/apps/cli/req.js";
import {
  filterFromFlags,
  parseKeyValues,
  readNodesFile,
  resolveConfigPath,
} from "../../src/apps/cli/common.js";
import { secondsArg } from "../../src/apps/cli/flags.js";
import { programShell } from "../../src/apps/cli/launch.js";
import { replyPrefix } from "../../src/core/protocol/index.js";
import { startNats, type TestNats } from "../helpers/nats.js";
import { COLLECTIVE, makeTrust, startResponder, type Responder, type TestTrust } from "./fleet.js";

let nats: TestNats;
let trust: TestTrust;
let responders: Responder[];
let config: string;

beforeAll(async () => {
  nats = await startNats();
  trust = makeTrust();
  config = join(trust.dir, "client.conf");
  writeFileSync(
    config,
    [
      "identity = cli.example",
      `collectives = ${COLLECTIVE}`,
      `plugin.choria.middleware_hosts = ${nats.url}`,
      "plugin.security.provider = choria",
      "plugin.security.choria.seed_file = client.seed",
      "plugin.security.choria.token_file = client.jwt",
      "plugin.security.issuer.names = org",
      `plugin.security.issuer.org.public = ${trust.issuers[0]}`,
      "discovery_timeout = 1",
      "",
    ].join("\n"),
  );
  responders = await Promise.all(
    ["n1", "n2"].map((identity) =>
      startResponder(nats.url, trust, {
        identity,
        handler: () => ({ statuscode: 0, statusmsg: "OK", data: { pong: 1700000000 } }),
      }),
    ),
  );
});

afterAll(async () => {
  await Promise.all((responders ?? []).map((r) => r.stop()));
  await nats?.stop();
  trust?.cleanup();
});

afterEach(() => {
  vi.restoreAllMocks();
  process.exitCode = undefined;
});

interface Run {
  stdout: string;
  stderr: string;
  exitCode: number | undefined;
}

/** Runs one command in-process, as `chorus <args>` would, capturing output and exit status. */
async function run(args: string[]): Promise<Run> {
  // the program's own shell: it words refused flag values like the rest of the CLI
  const program = programShell().exitOverride();
  program.configureOutput({ writeErr: () => {}, writeOut: () => {} });
  registerReq(program);
  registerPing(program);
  registerDiscover(program);
  let stdout = "";
  let stderr = "";
  vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => {
    stdout += String(s);
    return true;
  });
  vi.spyOn(process.stderr, "write").mockImplementation((s: string | Uint8Array) => {
    stderr += String(s);
    return true;
  });
  let exitCode: number | undefined;
  vi.spyOn(process, "exit").mockImplementation((code?: string | number | null) => {
    exitCode = Number(code ?? 0);
    throw new Error("process.exit");
  });
  try {
    await program.parseAsync(["node", "chorus", ...args]);
    exitCode = process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if ((err as Error).message !== "process.exit") {
      // commander usage errors
      stderr += (err as Error).message;
      exitCode = (err as { exitCode?: number }).exitCode ?? 1;
    }
  } finally {
    vi.restoreAllMocks();
    process.exitCode = undefined;
  }
  return { stdout, stderr, exitCode };
}

describe("chorus req", () => {
  it("--json prints go-choria's result shape and exits 0", async () => {
    const r = await run(["req", "rpcutil", "ping", "--config", config, "-I", "n1", "-I", "n2", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.agent).toBe("rpcutil");
    expect(doc.replies.map((x: { sender: string }) => x.sender).sort()).toEqual(["n1", "n2"]);
    expect(doc.replies[0].data).toEqual({ pong: 1700000000 });
    expect(doc.request_stats).toMatchObject({
      discovered: 2,
      responses: 2,
      ok: 2,
      failed: 0,
      no_responses: [],
    });
  });

  it("text output lists non-responders and exits 2", async () => {
    const nodes = join(trust.dir, "nodes.txt");
    writeFileSync(nodes, "# fleet\nn1\n\nghost\n");
    const r = await run(["req", "rpcutil", "ping", "--config", config, "--nodes", nodes, "--timeout", "0.5"]);
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toMatch(/^n1\s*\n\s+Timestamp: 1700000000\n/);
    expect(r.stdout).toContain("No responses from: 1\n\n    ghost\n");
    expect(r.stdout).toContain("           Discovered: 2\n");
  });

  it("discovery through the broadcast agent with a filter", async () => {
    const r = await run([
      "req",
      "rpcutil",
      "ping",
      "--config",
      config,
      "-I",
      "/^n/",
      "--discovery-timeout",
      "0.4",
      "--display",
      "none",
    ]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("            Responses: 2\n");
  });

  it("reports bad inputs in one line naming the input", async () => {
    const r = await run(["req", "rpcutil", "get_fact", "--config", config, "-I", "n1", "bogus=1"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^chorus req: .*input "bogus" is not an input of this action.*\n$/);
    const r2 = await run(["req", "rpcutil", "ping", "--config", config, "-I", "n1", "notkeyvalue"]);
    expect(r2.stderr).toBe('chorus req: argument "notkeyvalue" is not an input of the form key=value\n');
    expect(r2.exitCode).toBe(1);
  });

  it("rejects bad options naming them", async () => {
    const r = await run(["req", "rpcutil", "ping", "--config", config, "--timeout", "soon"]);
    expect(r.stderr).toBe('chorus req: --timeout: "soon" is not a positive number of seconds\n');
    const r2 = await run(["req", "rpcutil", "ping", "--config", config, "--display", "some"]);
    expect(r2.stderr).toMatch(/--display/);
    expect(r2.exitCode).not.toBe(0);
    const r3 = await run(["req", "rpcutil", "ping", "--config", config, "-F", "os<>linux"]);
    expect(r3.exitCode).toBe(1);
    expect(r3.stderr).toMatch(/^chorus req: .*os<>linux/);
    const r4 = await run(["req", "rpcutil", "ping", "--config", join(trust.dir, "missing.conf")]);
    expect(r4.stderr).toMatch(/--config: .*missing.conf does not exist/);
  });
});

// The library names options (limit, replyTo, discoveryOptions ...); the CLI says the
// same things with its flags. Every line here is what `chorus` printed before the
// library stopped speaking in flags, so the mapping must reproduce it to the letter.
describe("option errors name the flags", () => {
  const inbox = replyPrefix(COLLECTIVE, "choria=tester");
  const cases: [string[], string][] = [
    [["--limit", "2", "--broadcast"], "--limit needs direct mode (not --broadcast or --service)"],
    [["--batch", "2", "--service"], "--batch and --canary need direct mode (not --broadcast or --service)"],
    [
      ["--canary", "1", "--broadcast"],
      "--batch and --canary need direct mode (not --broadcast or --service)",
    ],
    [
      ["--reply-to", `${inbox}.x`, "--retry", "1"],
      "--reply-to cannot be combined with --batch, --canary or --retry",
    ],
    [["--limit", "abc"], '--limit: "abc" is not a count or a percentage such as 10 or 25%'],
    [["--limit", "150%"], "--limit: 150% is not a percentage between 0 and 100"],
    [["--limit", "0"], "--limit: 0 is not a positive whole number"],
    [["--reply-to", "a.*"], '--reply-to: "a.*" is not a NATS subject without wildcards'],
    [
      ["--reply-to", "other.x"],
      `--reply-to: "other.x" is not under this caller's inbox ${inbox}.; nodes refuse any other reply subject`,
    ],
    [["--limit", "1", "--limit-seed", "7"], "--limit-seed needs --limit-method random"],
    [["--limit-method", "random"], "--limit-method needs --limit"],
    [["--batch-sleep", "1"], "--batch-sleep needs --batch"],
    [["--batch", "0"], '--batch: "0" is not a positive whole number'],
    [["--canary", "x"], '--canary: "x" is not a positive whole number'],
    [["--ttl", "0.5"], '--ttl: "0.5" is not a positive whole number'],
    [["--retry", "-1"], '--retry: "-1" is not a whole number'],
    [["--do", "file=x"], "broadcast discovery takes no --do options (got file)"],
    [["-I", "group:web"], "-I group:web: groups need inventory discovery (--dm inventory)"],
    [["--dm", "flatfile"], "flatfile discovery needs --do file=PATH (or --nodes PATH)"],
    [["--dm", "inventory"], "inventory discovery needs --do file=PATH"],
    [["--dm", "external"], "external discovery needs --do command=PROGRAM"],
    [["--dm", "external", "--do", "command= "], "external discovery: no command (set --do command=PATH)"],
    [
      ["--dm", "flatfile", "--do", "file=x", "--do", "nope=1"],
      "--do nope: not an option of flatfile discovery (known: file, format, filter, status)",
    ],
  ];
  it.each(cases)("req %j", async (args, message) => {
    const r = await run(["req", "rpcutil", "ping", "--config", config, ...args]);
    expect(r.stderr).toBe(`chorus req: ${message}\n`);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe("");
  });

  it("file methods refuse filters they cannot apply, naming the flags", async () => {
    const nodes = join(trust.dir, "nodes.txt");
    writeFileSync(nodes, "n1\n");
    const r = await run(["req", "rpcutil", "ping", "--config", config, "--nodes", nodes, "-F", "os=linux"]);
    expect(r.stderr).toBe(
      "chorus req: flatfile discovery only knows identities: use -I, or an inventory file (--dm inventory) to filter on facts, classes, agents or -S\n",
    );
    expect(r.exitCode).toBe(1);
  });

  it("discover says the same", async () => {
    const r = await run(["discover", "--config", config, "--do", "file=x"]);
    expect(r.stderr).toBe("chorus discover: broadcast discovery takes no --do options (got file)\n");
    expect(r.exitCode).toBe(1);
    const g = await run(["discover", "--config", config, "-I", "group:web"]);
    expect(g.stderr).toBe(
      "chorus discover: -I group:web: groups need inventory discovery (--dm inventory)\n",
    );
  });
});

describe("chorus ping and discover", () => {
  it("ping prints each sender and a summary", async () => {
    const r = await run(["ping", "--config", config, "--timeout", "0.4"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^n[12]\s+time=\d+\.\d ms$/m);
    expect(r.stdout).toMatch(/^2 replies min\/avg\/max = [\d.]+\/[\d.]+\/[\d.]+ ms$/m);
  });

  it("discover prints identities, or JSON", async () => {
    const r = await run(["discover", "--config", config, "--discovery-timeout", "0.4"]);
    expect(r.stdout).toBe("n1\nn2\n");
    const j = await run(["discover", "--config", config, "-I", "n2", "-I", "zz", "--json"]);
    expect(JSON.parse(j.stdout)).toEqual(["n2", "zz"]);
  });
});

describe("shared CLI helpers", () => {
  it("resolves the config: flag, then CHORUS_CONFIG, then ./chorus.conf", () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-cfg-"));
    try {
      const a = join(dir, "a.conf");
      writeFileSync(a, "");
      expect(resolveConfigPath(a, {}, dir)).toBe(a);
      expect(resolveConfigPath(undefined, { CHORUS_CONFIG: a }, dir)).toBe(a);
      expect(() => resolveConfigPath(undefined, { CHORUS_CONFIG: join(dir, "x") }, dir)).toThrow(
        /CHORUS_CONFIG: .* does not exist/,
      );
      expect(() => resolveConfigPath(undefined, {}, dir)).toThrow(/chorus setup dev/);
      writeFileSync(join(dir, "chorus.conf"), "");
      expect(resolveConfigPath(undefined, {}, dir)).toBe(join(dir, "chorus.conf"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("parses key=value inputs, seconds and node files", () => {
    expect(parseKeyValues(["a=1", "b=x=y", "c="])).toEqual({ a: "1", b: "x=y", c: "" });
    expect(() => parseKeyValues(["=1"])).toThrow(/argument "=1"/);
    expect(secondsArg("--timeout")("1.5")).toBe(1500);
    expect(secondsArg("--batch-sleep", { zero: true })("0")).toBe(0);
    expect(() => secondsArg("--timeout")("0")).toThrow('--timeout: "0" is not a positive number of seconds');
    expect(() => readNodesFile(join(trust.dir, "nope"))).toThrow(/--nodes: cannot read/);
  });

  it("builds filters from flags", () => {
    const f = filterFromFlags({
      identity: ["a"],
      fact: ["os=linux"],
      class: ["web"],
      agent: ["rpcutil"],
      with: ["country=uk apache"],
    });
    expect(f).toEqual({
      identity: ["a"],
      fact: [
        { fact: "os", operator: "==", value: "linux" },
        { fact: "country", operator: "==", value: "uk" },
      ],
      cf_class: ["web", "apache"],
      agent: ["rpcutil"],
      compound: [],
    });
  });
});
