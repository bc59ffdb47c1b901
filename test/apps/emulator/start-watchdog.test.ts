import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { Emulator } from "../../../src/apps/emulator/index.js";
import { createDevSetup } from "../../../src/apps/setup/index.js";

// A broker that accepts TCP connections and never says a word: connecting to it stalls.
describe("emulator start with a silent broker", () => {
  const dir = mkdtempSync(join(tmpdir(), "chorus-emu-silent-"));
  const sockets: Socket[] = [];
  let silent: NetServer | undefined;
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => silent?.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it("fails start() with a clear error instead of waiting forever", async () => {
    silent = createServer((s) => void sockets.push(s));
    await new Promise<void>((r) => silent?.listen(0, "127.0.0.1", r));
    const port = (silent.address() as { port: number }).port;
    const setup = await createDevSetup({ dir, brokerPort: port, force: true, serverIdentities: ["n1"] });
    const em = Emulator.fromConfigFile(setup.emulatorConfig, {
      nodes: 20,
      workers: 2,
      // long enough for worker threads to load on a busy machine and reach the connect
      startTimeoutMs: 4000,
      logger: pino({ level: "silent" }),
    });
    const t0 = Date.now();
    await expect(em.start()).rejects.toThrow(/reported nothing for 4000 ms while starting/);
    // well before nats.js's own 20 s connect timeout would have said anything
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(sockets.length).toBeGreaterThan(0);
  }, 30_000);
});
