import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { Client } from "../../src/client/index.js";
import { register } from "../../src/apps/cli/server.js";
import { startNats, type TestNats } from "../helpers/nats.js";
import { COLLECTIVE, makeFixture, sleep, type Fixture } from "./helpers.js";

let nats: TestNats;
let fx: Fixture;

beforeAll(async () => {
  nats = await startNats();
  fx = makeFixture();
});
afterAll(async () => {
  await nats?.stop();
  fx?.cleanup();
});
afterEach(() => vi.restoreAllMocks());

function program(): Command {
  const p = new Command().exitOverride();
  register(p);
  return p;
}

function writeConfig(name: string, lines: string[]): string {
  const path = join(fx.dir, name);
  writeFileSync(path, lines.join("\n") + "\n");
  return path;
}

describe("chorus server run", () => {
  it("prints one line and exits 1 on a config error", async () => {
    const conf = writeConfig("bad.conf", ["identity = x.example", "plugin.security.provider = puppet"]);
    const err: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation((s) => {
      err.push(String(s));
      return true;
    });
    vi.spyOn(process, "exit").mockImplementation((code) => {
      throw new Error(`exit ${String(code)}`);
    });
    await expect(program().parseAsync(["node", "chorus", "server", "run", "--config", conf])).rejects.toThrow(
      "exit 1",
    );
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(/^chorus server: .*bad\.conf:2: .*puppet.*\n$/);
  });

  it("exits 1 with one line when the config file is missing", async () => {
    const err: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation((s) => {
      err.push(String(s));
      return true;
    });
    vi.spyOn(process, "exit").mockImplementation((code) => {
      throw new Error(`exit ${String(code)}`);
    });
    await expect(
      program().parseAsync(["node", "chorus", "server", "run", "--config", join(fx.dir, "none.conf")]),
    ).rejects.toThrow("exit 1");
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(/^chorus server: .*none\.conf/);
  });

  it("serves until SIGTERM, then stops cleanly", async () => {
    const id = "cli.example";
    fx.serverSecurity(id);
    const conf = writeConfig("server.conf", [
      `identity = ${id}`,
      `collectives = ${COLLECTIVE}`,
      `plugin.choria.middleware_hosts = ${nats.url}`,
      "plugin.security.provider = choria",
      `plugin.security.choria.seed_file = ${id}.seed`,
      `plugin.security.choria.token_file = ${id}.jwt`,
      "plugin.security.issuer.names = dev",
      `plugin.security.issuer.dev.public = ${fx.orgKp.publicHex}`,
      "loglevel = error",
    ]);
    const running = program().parseAsync(["node", "chorus", "server", "run", "--config", conf]);
    const client = new Client({ security: fx.clientSecurity, servers: [nats.url], collective: COLLECTIVE });
    try {
      let found: string[] = [];
      for (let i = 0; i < 20 && found.length === 0; i++) {
        found = await client.discover({ timeoutMs: 300 });
        if (found.length === 0) await sleep(100);
      }
      expect(found).toEqual([id]);
      process.emit("SIGTERM");
      await running;
      expect(await client.discover({ timeoutMs: 300 })).toEqual([]);
    } finally {
      await client.close();
    }
  });
});
