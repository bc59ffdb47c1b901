// `chorus provisioner run` as a user runs it: its own process, a node enrolled, SIGTERM.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chorusAsync } from "../../helpers/cli.js";
import { provisioningFixture, type ProvisioningFixture } from "./fixture.js";

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
});
