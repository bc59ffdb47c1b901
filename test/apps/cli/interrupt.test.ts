import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Emulator } from "../../../src/apps/emulator/index.js";
import { chorusAsync, type CliResult } from "../../helpers/cli.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const BIN = fileURLToPath(new URL("../../../bin/chorus.js", import.meta.url));
const N = 30;

/**
 * Runs the built CLI and sends it one SIGINT once `ready()` holds (polled), as a
 * user pressing ^C would. The fleet runs in this process, so nothing here blocks.
 */
function interrupted(args: string[], env: Record<string, string>, ready: () => boolean): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const poll = setInterval(() => {
      if (!ready()) return;
      clearInterval(poll);
      child.kill("SIGINT");
    }, 50);
    const timer = setTimeout(() => child.kill("SIGKILL"), 40_000);
    child.once("error", reject);
    child.once("close", (status) => {
      clearInterval(poll);
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

describe("chorus CLI against an emulated fleet", () => {
  let fleet: SecureFleet;
  let emulator: Emulator;
  let env: Record<string, string>;
  let nodesFile: string;
  let ids: string[];

  beforeAll(async () => {
    fleet = await startSecureFleet();
    emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, {
      nodes: N,
      workers: 0,
      logger: pino({ level: "silent" }),
    });
    await emulator.start();
    env = { CHORUS_CONFIG: fleet.setup.clientConfig };
    const r = await chorusAsync(["discover", "--discovery-window"], env);
    ids = r.stdout.trim().split("\n");
    expect(ids).toHaveLength(N);
    nodesFile = join(fleet.setup.dir, "nodes.txt");
    writeFileSync(nodesFile, ids.join("\n") + "\n");
  }, 60_000);
  afterAll(async () => {
    await emulator?.stop();
    await fleet?.stop();
  });

  /** Requests the emulator has received so far (discovery included). */
  const received = () => emulator.decoder.stats.messages;

  /** The ready() for `interrupted`: `n` more requests arrived, then `settleMs` passed. */
  function after(n: number, settleMs: number): () => boolean {
    const start = received();
    let seenAt = 0;
    return () => {
      if (seenAt === 0 && received() >= start + n) seenAt = Date.now();
      return seenAt > 0 && Date.now() - seenAt >= settleMs;
    };
  }

  it("^C between batches exits 130 and lists the nodes the request was not sent to", async () => {
    const r = await interrupted(
      ["req", "rpcutil", "ping", "--nodes", nodesFile, "--batch", "2", "--batch-sleep", "30"],
      env,
      // the first batch's request arrived and its replies had time to come back
      after(1, 1_500),
    );
    expect(r.status).toBe(130);
    expect(r.stdout).toMatch(/ Responses: 2\n/);
    expect(r.stdout).toContain(`Interrupted (^C): the request was not sent to ${N - 2} nodes.`);
    expect(r.stdout).toContain(`Not sent to: ${N - 2}\n`);
    // the first 20 are named, the rest counted
    const named = ids.slice(2).filter((id) => r.stdout.includes(id));
    expect(named).toEqual(ids.slice(2, 22));
    expect(r.stdout).toContain(`... and ${N - 22} more`);
  }, 60_000);

  it("^C between batches with --json marks the result interrupted and says so on stderr", async () => {
    const r = await interrupted(
      ["req", "rpcutil", "ping", "--nodes", nodesFile, "--batch", "5", "--batch-sleep", "30", "--json"],
      env,
      after(1, 1_500),
    );
    expect(r.status).toBe(130);
    const doc = JSON.parse(r.stdout);
    expect(doc.interrupted).toBe(true);
    expect(doc.skipped).toEqual(ids.slice(5));
    expect(doc.request_stats.responses).toBe(5);
    expect(r.stderr).toContain(
      `chorus req: interrupted (^C): showing the replies so far; the request was not sent to ${N - 5} nodes\n`,
    );
  }, 60_000);

  it("^C during discovery sends nothing, exits 130 and counts every node found as not sent", async () => {
    const before = received();
    const r = await interrupted(
      ["req", "rpcutil", "ping", "--discovery-timeout", "30"],
      env,
      // the discovery request arrived and every node had time to answer it
      after(1, 1_500),
    );
    expect(r.status).toBe(130);
    expect(r.stdout).toMatch(new RegExp(` Discovered: ${N}\\n`));
    expect(r.stdout).toMatch(/ Responses: 0\n/);
    expect(r.stdout).toContain(`Interrupted (^C): the request was not sent to ${N} nodes.`);
    expect(r.stdout).toContain(`Not sent to: ${N}\n`);
    expect(r.stdout).toContain(`... and ${N - 20} more`);
    // only the discovery request ever reached the fleet
    expect(received() - before).toBe(1);
  }, 60_000);

  it("^C during `discover` prints what was found and exits 130", async () => {
    const r = await interrupted(["discover", "--discovery-timeout", "30"], env, after(1, 1_500));
    expect(r.status).toBe(130);
    expect(r.stdout.trim().split("\n")).toEqual([...ids].sort());
    expect(r.stderr).toContain(`chorus discover: interrupted (^C): showing the ${N} nodes found so far\n`);
  }, 60_000);

  it("^C during `ping` prints the replies so far and exits 130", async () => {
    const r = await interrupted(["ping", "--timeout", "30"], env, after(1, 1_500));
    expect(r.status).toBe(130);
    expect(r.stdout).toContain(`${N} replies min/avg/max`);
    expect(r.stderr).toContain(`chorus ping: interrupted (^C): showing the ${N} replies received so far\n`);
  }, 60_000);

  // One message, one exit code (1, "discovery found nothing") for all three commands.
  it.each([
    ["discover", ["discover", "-F", "role=nosuchrole", "--discovery-timeout", "1"]],
    ["ping", ["ping", "-F", "role=nosuchrole", "--timeout", "1"]],
    ["req", ["req", "rpcutil", "ping", "-F", "role=nosuchrole", "--discovery-timeout", "1"]],
  ])(
    "%s says no nodes matched the filter and exits 1",
    async (cmd, args) => {
      const r = await chorusAsync(args, env);
      expect(r.status).toBe(1);
      // exactly one line of ours, the same words for every command
      const ours = r.stderr.split("\n").filter((l) => l.startsWith("chorus"));
      expect(ours).toEqual([`chorus ${cmd}: no nodes matched the filter`]);
      if (cmd === "discover") expect(r.stdout).toBe("");
      if (cmd === "ping") expect(r.stdout).toBe("");
      if (cmd === "req") expect(r.stdout).toMatch(/ Discovered: 0\n/);
    },
    30_000,
  );

  it("discover --json still prints an empty array when nothing matched", async () => {
    const r = await chorusAsync(
      ["discover", "-F", "role=nosuchrole", "--discovery-timeout", "1", "--json"],
      env,
    );
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual([]);
    expect(r.stderr).toContain("chorus discover: no nodes matched the filter\n");
  }, 30_000);

  it("a single reply is counted in the singular", async () => {
    const r = await chorusAsync(["ping", "-I", ids[0] as string, "--timeout", "1"], env);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("1 reply min/avg/max");
  }, 30_000);
});
