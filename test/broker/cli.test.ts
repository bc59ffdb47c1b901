import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterEach, describe, expect, it, vi } from "vitest";
import { register } from "../../src/apps/cli/broker.js";

afterEach(() => vi.restoreAllMocks());

async function runCli(args: string[]): Promise<{ code: number | undefined; stderr: string }> {
  let stderr = "";
  vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  const exit = vi.spyOn(process, "exit").mockImplementation(((code?: number) => {
    throw new Error(`exit:${code}`);
  }) as never);
  const program = new Command().exitOverride();
  register(program);
  try {
    await program.parseAsync(["node", "chorus", ...args]);
  } catch (err) {
    if (!String(err).includes("exit:")) throw err;
  }
  return { code: exit.mock.calls[0]?.[0] as number | undefined, stderr };
}

describe("chorus broker run", () => {
  it("exits 1 with one clear line on a config error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-cli-"));
    try {
      const f = join(dir, "broker.conf");
      writeFileSync(f, "plugin.choria.broker_network = maybe\n");
      const r = await runCli(["broker", "run", "--config", f]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `chorus broker: ${f}:1: plugin.choria.broker_network: "maybe" is not a boolean (use true/false, yes/no, y/n, 1/0, t/f, on/off)\n`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("exits 1 on a missing config file", async () => {
    const r = await runCli(["broker", "run", "--config", "/nonexistent/broker.conf"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      "chorus broker: /nonexistent/broker.conf: cannot read configuration: no such file\n",
    );
  });
});
