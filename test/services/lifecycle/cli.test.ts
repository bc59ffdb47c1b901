import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { buildProgram } from "../../../src/apps/cli/main.js";
import { formatEvent } from "../../../src/apps/cli/event.js";
import { newLifecycleEvent } from "../../../src/services/lifecycle/index.js";
import { Server } from "../../../src/server/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const NODE = "cli1.example.net";

describe("chorus event", () => {
  let fleet: SecureFleet;
  beforeAll(async () => {
    fleet = await startSecureFleet({ servers: [NODE] });
  }, 60_000);
  afterAll(async () => fleet?.stop());

  it("formats one line per event", () => {
    const ev = newLifecycleEvent("governor", {
      identity: "n1",
      component: "server",
      governor: "PUPPET",
      sequence: 3,
      eventType: "enter",
      timestamp: 1_700_000_000,
    });
    expect(formatEvent(ev)).toBe("2023-11-14T22:13:20Z [governor] n1 server enter PUPPET slot 3");
  });

  it("watch prints matching events; tally counts nodes by version", async () => {
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      out.push(String(chunk));
      return true;
    });
    const errs: string[] = [];
    const errSpy = vi.spyOn(process.stderr, "write").mockImplementation((chunk) => {
      errs.push(String(chunk));
      return true;
    });
    let metrics = "";
    try {
      const cfg = fleet.setup.clientConfig;
      const watch = (await buildProgram()).parseAsync(
        [
          "event",
          "watch",
          "--config",
          cfg,
          "--identity",
          NODE,
          "--type",
          "startup",
          "--count",
          "1",
          "--timeout",
          "15",
        ],
        { from: "user" },
      );
      const tally = (await buildProgram()).parseAsync(
        ["event", "tally", "--config", cfg, "--timeout", "4", "--interval", "10", "--port", "0"],
        { from: "user" },
      );
      await new Promise((r) => setTimeout(r, 700));
      const server = await Server.fromConfigFile(fleet.setup.serverConfigs[NODE] as string, {
        logger: pino({ level: "silent" }),
      });
      await server.start();
      await watch;
      const port = /127\.0\.0\.1:(\d+)\/metrics/.exec(errs.join(""))?.[1];
      for (let i = 0; i < 40 && !metrics.includes("tally_versions{"); i++) {
        metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        await new Promise((r) => setTimeout(r, 50));
      }
      await tally;
      await server.stop();
    } finally {
      spy.mockRestore();
      errSpy.mockRestore();
    }
    const text = out.join("");
    expect(text).toMatch(new RegExp(`\\[startup\\] ${NODE.replace(/\./g, "\\.")} server version \\S+`));
    expect(text).toMatch(/ 1 node\n\s+1 {2}server {2}\S+/);
    expect(metrics).toMatch(/choria_lifecycle_tally_versions\{component="server",version="[^"]+"\} 1/);
  }, 30_000);
});
