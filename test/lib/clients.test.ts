import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

// What a package user gets: an app whose node_modules/chorus is this package, importing
// through package.json "exports" with Node's own resolver (run after `npm run build`).
describe("package exports", () => {
  const app = mkdtempSync(join(tmpdir(), "chorus-app-"));
  mkdirSync(join(app, "node_modules"));
  symlinkSync(ROOT, join(app, "node_modules", "chorus"), "dir");
  afterAll(() => rmSync(app, { recursive: true, force: true }));

  it("chorus/clients/<agent> is the built typed client, reading its DDL from the package", () => {
    writeFileSync(
      join(app, "main.mjs"),
      `
      import { fileURLToPath } from "node:url";
      import { Client } from "chorus";
      import { RpcutilClient } from "chorus/clients/rpcutil";
      import { ChoriaUtilClient } from "chorus/clients/choria_util";
      const calls = [];
      const client = { request: (...a) => (calls.push(a), Promise.resolve({ replies: [] })) };
      await new RpcutilClient(client).ping();
      await new ChoriaUtilClient(client).info();
      console.log(JSON.stringify({
        resolved: fileURLToPath(import.meta.resolve("chorus/clients/rpcutil")),
        client: typeof Client,
        calls: calls.map(([agent, action, , o]) => [agent, action, o.ddl.metadata.name]),
      }));
      `,
    );
    const out = JSON.parse(execFileSync(process.execPath, ["main.mjs"], { cwd: app, encoding: "utf8" })) as {
      resolved: string;
      client: string;
      calls: string[][];
    };
    expect(out.resolved).toBe(join(ROOT, "dist", "client", "generated", "rpcutil.js"));
    expect(out.client).toBe("function");
    expect(out.calls).toEqual([
      ["rpcutil", "ping", "rpcutil"],
      ["choria_util", "info", "choria_util"],
    ]);
    // the "types" condition points at declarations the build wrote
    for (const agent of ["rpcutil", "choria_util"]) {
      expect(existsSync(join(ROOT, "dist", "client", "generated", `${agent}.d.ts`))).toBe(true);
    }
  });
});
