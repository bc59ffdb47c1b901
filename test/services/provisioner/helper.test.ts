import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  HelperError,
  checkHelperOutput,
  runHelper,
  type HelperInput,
} from "../../../src/services/provisioner/index.js";

const dir = mkdtempSync(join(tmpdir(), "chorus-prov-helper-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const INPUT: HelperInput = {
  identity: "node1.example.net",
  csr: null,
  ed25519_pubkey: { public_key: "ab".repeat(32), directory: "/etc/chorus", signature: "cd".repeat(64) },
  inventory: JSON.stringify({ facts: { os: "linux" } }),
  jwt: { cht: "x" },
};

/** A node script as the helper: argv is [node, script]. */
function helper(name: string, body: string): string[] {
  const file = join(dir, `${name}.mjs`);
  writeFileSync(file, body);
  return [process.execPath, file];
}

async function failure(argv: string[], timeoutMs = 5000, maxOutputBytes?: number): Promise<HelperError> {
  try {
    await runHelper(argv, INPUT, { timeoutMs, ...(maxOutputBytes !== undefined && { maxOutputBytes }) });
  } catch (err) {
    expect(err).toBeInstanceOf(HelperError);
    return err as HelperError;
  }
  throw new Error("the helper did not fail");
}

/** Running, not gone or a zombie waiting to be reaped (a container's init may be slow to). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

describe("helper contract", () => {
  it("sends the node as JSON on stdin and reads the answer from stdout", async () => {
    const argv = helper(
      "good",
      `import { readFileSync } from "node:fs";
       const input = JSON.parse(readFileSync(0, "utf8"));
       process.stdout.write(JSON.stringify({
         msg: "ok",
         configuration: { identity: input.identity, "plugin.choria.stats_port": 8222, "x.flag": true,
           facts_os: JSON.parse(input.inventory).facts.os, dir: input.ed25519_pubkey.directory },
         server_claims: { collectives: ["c1"], exp: 157680000 },
       }));`,
    );
    const out = await runHelper(argv, INPUT, { timeoutMs: 5000 });
    expect(out.msg).toBe("ok");
    // numbers and booleans become strings, as the node's config needs
    expect(out.configuration).toEqual({
      identity: "node1.example.net",
      "plugin.choria.stats_port": "8222",
      "x.flag": "true",
      facts_os: "linux",
      dir: "/etc/chorus",
    });
    expect(out.server_claims).toEqual({ collectives: ["c1"], exp: 157680000 });
  });

  it("kills a hanging helper and its children at the timeout", async () => {
    const pidFile = join(dir, "child.pid");
    const argv = helper(
      "hang",
      `import { spawn } from "node:child_process";
       import { writeFileSync } from "node:fs";
       const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
       writeFileSync(${JSON.stringify(pidFile)}, String(child.pid));
       setInterval(() => {}, 1000);`,
    );
    const t0 = Date.now();
    const e = await failure(argv, 800);
    expect(e.code).toBe("timeout");
    expect(e.message).toMatch(/did not finish within 800 ms and was killed/);
    expect(Date.now() - t0).toBeLessThan(3000);
    const grandchild = Number(readFileSync(pidFile, "utf8"));
    await new Promise((r) => setTimeout(r, 100));
    expect(alive(grandchild)).toBe(false);
  });

  it("reports a crash with its exit status and stderr", async () => {
    const e = await failure(helper("crash", `process.stderr.write("no database\\n"); process.exit(3);`));
    expect(e.code).toBe("exit");
    expect(e.message).toBe("the helper exited with status 3: no database");
  });

  it("refuses garbage, empty and oversized output, and JSON of the wrong shape", async () => {
    const garbage = await failure(helper("garbage", `process.stdout.write("Traceback: oops");`));
    expect(garbage.code).toBe("garbage");
    expect(garbage.message).toMatch(/not JSON: Traceback: oops/);
    const array = await failure(helper("array", `process.stdout.write("[1,2]");`));
    expect(array.code).toBe("garbage");
    const empty = await failure(helper("empty", `process.stdout.write("  \\n");`));
    expect(empty.code).toBe("empty");
    expect(empty.message).toBe("the helper printed nothing");
    const big = await failure(
      helper("big", `process.stdout.write("x".repeat(100000)); setInterval(() => {}, 1000);`),
      5000,
      4096,
    );
    expect(big.code).toBe("too_large");
    const shape = await failure(
      helper("shape", `process.stdout.write(JSON.stringify({ configuration: { a: [1] }, defer: "no" }));`),
    );
    expect(shape.code).toBe("invalid");
    expect(shape.message).toMatch(/configuration\.a/);
    expect(shape.message).toMatch(/defer/);
  });

  it("says when the helper cannot be run", async () => {
    const e = await failure([join(dir, "does-not-exist")]);
    expect(e.code).toBe("spawn");
    expect(e.message).toMatch(/cannot run helper .*does-not-exist/);
  });

  it("tolerates a helper that never reads its input", async () => {
    const out = await runHelper(
      helper("noread", `process.stdout.write('{"defer":true,"msg":"later"}');`),
      INPUT,
      {
        timeoutMs: 5000,
      },
    );
    expect(out).toEqual({ defer: true, msg: "later" });
  });

  it("checks parsed output", () => {
    expect(checkHelperOutput({ shutdown: true })).toEqual({ shutdown: true });
    expect(() => checkHelperOutput("x")).toThrow(/not a JSON object/);
  });
});
