// `chorus provisioner run` as a user runs it: its own process, a node enrolled, SIGTERM.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chorusAsync } from "../../helpers/cli.js";
import { provisioningFixture, until, type ProvisioningFixture, type TestNode } from "./fixture.js";

const BIN = fileURLToPath(new URL("../../../bin/chorus.js", import.meta.url));
let fx: ProvisioningFixture;

beforeAll(async () => {
  fx = await provisioningFixture();
});
afterAll(async () => {
  await fx?.stop();
});

describe("chorus provisioner run", () => {
  it("refuses a bad config, naming the key", async () => {
    const bad = join(fx.fleet.setup.dir, "bad-provisioner.yaml");
    writeFileSync(bad, "token: x\nworkers: none\n");
    const r = await chorusAsync(["provisioner", "run", "--config", bad]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^chorus provisioner: .*bad-provisioner\.yaml: .*workers: must be integer/m);
    expect(r.stderr).toMatch(/jwt_verify_cert: is required/);
  });

  it("provisions a node, then stops on SIGTERM", async () => {
    const config = fx.writeConfig({ loglevel: "info" }, "cli-provisioner.yaml");
    const child = spawn(process.execPath, [BIN, "provisioner", "run", "--config", config], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    try {
      const node = await fx.node("cli1.example.net");
      await node.whenNormal();
      expect(node.calls.configure).toBe(1);
    } finally {
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    }
    expect(stderr).toMatch(/"msg":"node provisioned"/);
    expect(stderr).toMatch(/"msg":"provisioner stopped"/);
  });

  it("kill -9 mid-batch: a second process finishes the batch and every node is configured exactly once", async () => {
    const config = fx.writeConfig({ loglevel: "info", workers: 2 }, "kill9-provisioner.yaml");
    const ids = [1, 2, 3, 4, 5, 6].map((i) => `kill9-${i}.example.net`);
    const nodes: TestNode[] = [];
    for (const id of ids) {
      const n = await fx.node(id);
      // slow configures, so the kill lands while some are in flight
      n.configureDelayMs = 1000;
      nodes.push(n);
    }
    const configures = () => nodes.reduce((a, n) => a + (n.calls.configure ?? 0), 0);
    const run = () =>
      spawn(process.execPath, [BIN, "provisioner", "run", "--config", config], {
        stdio: ["ignore", "ignore", "ignore"],
      });
    const first = run();
    await until("the first configure", () => configures() >= 1, 30_000);
    const died = new Promise<NodeJS.Signals | null>((r) => first.once("exit", (_c, sig) => r(sig)));
    first.kill("SIGKILL");
    expect(await died).toBe("SIGKILL");
    const done = nodes.filter((n) => n.mode === "normal").length;
    expect(done).toBeLessThan(ids.length);

    const second = run();
    try {
      await Promise.all(nodes.map((n) => n.whenNormal(60_000)));
      for (const n of nodes) expect([n.identity, n.calls.configure]).toEqual([n.identity, 1]);
    } finally {
      const exited = new Promise((r) => second.once("exit", r));
      second.kill("SIGTERM");
      await exited;
    }
  }, 120_000);
});
