// A protocol v1 fleet the way a user runs one: `chorus setup dev --security x509`, then
// `chorus broker run`, `chorus server run`, `chorus emulate` and `chorus ping`/`rpc` as
// separate processes with the files setup wrote.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chorus, chorusAsync } from "../../helpers/cli.js";
import { freePort } from "../../helpers/nats.js";

const BIN = fileURLToPath(new URL("../../../bin/chorus.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "chorus-cli-x509-"));
const procs: ChildProcess[] = [];

/** Starts a long-running chorus command and resolves once its output shows `ready`. */
function start(args: string[], ready: RegExp): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    procs.push(child);
    let out = "";
    const timer = setTimeout(() => reject(new Error(`${args.join(" ")} not ready: ${out}`)), 30_000);
    const see = (d: Buffer) => {
      out += d.toString();
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout.on("data", see);
    child.stderr.on("data", see);
    child.once("exit", (code) => reject(new Error(`${args.join(" ")} exited ${code}: ${out}`)));
  });
}

beforeAll(async () => {
  const port = await freePort();
  const r = chorus([
    "setup",
    "dev",
    "--security",
    "x509",
    "--dir",
    dir,
    "--force",
    "--port",
    String(port),
    "--server",
    "node1.mcollective",
    "--user",
    "alice",
  ]);
  expect(r.status, r.stderr).toBe(0);
  await start(["broker", "run", "--config", join(dir, "broker.conf")], /ready|listening|started/i);
  await start(
    ["server", "run", "--config", join(dir, "server-node1.mcollective.conf")],
    /ready|connected|started/i,
  );
  await start(["emulate", "--config", join(dir, "emulator.conf"), "--nodes", "25"], /ready/i);
}, 90_000);

afterAll(async () => {
  for (const p of procs.reverse()) {
    if (p.exitCode === null) {
      const done = new Promise((r) => p.once("exit", r));
      p.kill("SIGTERM");
      await done;
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

describe("a v1 (x509) fleet from the CLI", () => {
  it("chorus ping and discover reach the server and every emulated node over protocol v1", async () => {
    const ping = await chorusAsync(["ping", "--config", join(dir, "client.conf")], {}, 30_000);
    expect(ping.status, ping.stderr).toBe(0);
    expect(ping.stdout).toMatch(/node1\.mcollective/);
    const found = await chorusAsync(["discover", "--config", join(dir, "client.conf"), "--json"], {}, 30_000);
    expect(found.status, found.stderr).toBe(0);
    const names = JSON.parse(found.stdout) as string[];
    expect(names).toHaveLength(26);
    expect(names).toContain("node1.mcollective");
  });

  it("chorus rpc runs an action on the real v1 server", async () => {
    const r = await chorusAsync(
      ["rpc", "rpcutil", "ping", "--config", join(dir, "client.conf"), "-I", "node1.mcollective", "--json"],
      {},
      30_000,
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("node1.mcollective");
    expect(r.stdout).toContain('"pong"');
  });
});
