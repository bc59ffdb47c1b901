// Provisioning as docs/provisioning.md tells a user to try it: setup dev --provisioning,
// `chorus provisioner run` and `chorus server run` as processes, then the new node
// answers the ordinary client under its own identity.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeTokenUnverified } from "../../../src/core/security/index.js";
import { chorusAsync } from "../../helpers/cli.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const BIN = fileURLToPath(new URL("../../../bin/chorus.js", import.meta.url));

let fleet: SecureFleet;
const procs: ChildProcess[] = [];
const output = new Map<ChildProcess, string>();

function start(args: string[]): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  output.set(child, "");
  const keep = (d: Buffer) => output.set(child, (output.get(child) ?? "") + d.toString());
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  procs.push(child);
  return child;
}

beforeAll(async () => {
  fleet = await startSecureFleet({ servers: [], provisioning: true });
}, 60_000);

afterAll(async () => {
  await Promise.all(
    procs.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve();
          p.once("exit", () => resolve());
          p.kill("SIGTERM");
          setTimeout(() => p.kill("SIGKILL"), 10_000).unref();
        }),
    ),
  );
  await fleet?.stop();
});

describe("a node enrols itself with no human step", () => {
  it("chorus server run with only provisioning.jwt is enrolled by chorus provisioner run and answers as itself", async () => {
    const p = fleet.setup.provisioning!;
    const provisioner = start(["provisioner", "run", "--config", p.serviceConfig]);
    const server = start(["server", "run", "--config", p.serverConfig]);
    const configDir = dirname(p.serverConfig);

    // the node has no server token until the provisioner configures it
    expect(existsSync(join(configDir, "server.jwt"))).toBe(false);
    const deadline = Date.now() + 60_000;
    let replies: { sender: string }[] = [];
    while (Date.now() < deadline) {
      const r = await chorusAsync([
        "req",
        "rpcutil",
        "ping",
        "--config",
        fleet.setup.clientConfig,
        "-I",
        p.identity,
        "--json",
      ]);
      if (r.status === 0) {
        replies = (JSON.parse(r.stdout) as { replies: { sender: string }[] }).replies;
        if (replies.length > 0) break;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    const why = `provisioner:\n${output.get(provisioner)}\nserver:\n${output.get(server)}`;
    expect(
      replies.map((r) => r.sender),
      why,
    ).toEqual([p.identity]);
    // the same process restarted itself in-process into normal mode
    expect(server.exitCode, why).toBeNull();

    // what it was given: its own key and a server token for its identity, files 0600
    const token = readFileSync(join(configDir, "server.jwt"), "utf8").trim();
    const claims = decodeTokenUnverified(token);
    expect(claims).toMatchObject({ purpose: "choria_server", identity: p.identity });
    expect(String(claims.iss)).toMatch(/^C-/); // minted by the provisioner's chain issuer
    for (const f of ["server.seed", "server.jwt", "server.jwt.nats"]) {
      expect([f, statSync(join(configDir, f)).mode & 0o777]).toEqual([f, 0o600]);
    }
  }, 120_000);
});
