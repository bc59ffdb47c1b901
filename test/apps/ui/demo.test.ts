// `chorus demo` starts the web console over its fleet and prints where and how to log in;
// the demo's `stay` hook is where a caller (the CLI's --stay) keeps it up: here, the test
// logs in through it while the demo's fleet still runs.
import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { describe, expect, it } from "vitest";
import { runDemo } from "../../../src/apps/demo/index.js";
import { renderPing, renderStats, renderText } from "../../../src/apps/cli/render/index.js";

/** HTTPS to the demo console, trusting the demo's dev CA. */
function call(
  ca: Buffer,
  url: string,
  method: string,
  body?: unknown,
  cookie?: string,
): Promise<{ status: number; json: unknown; cookie: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method,
        ca,
        headers: {
          ...(body !== undefined && { "content-type": "application/json" }),
          ...(cookie && { cookie }),
        },
      },
      (res) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            json: text ? (JSON.parse(text) as unknown) : undefined,
            cookie: String(res.headers["set-cookie"] ?? "").split(";")[0],
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

describe("the demo's web console", () => {
  it("runs beside the demo fleet with the login it prints", async () => {
    const lines: string[] = [];
    let seen: { total: number } | undefined;
    const r = await runDemo({
      nodes: 3,
      render: { ping: renderPing, text: renderText, stats: renderStats },
      out: (l) => lines.push(l),
      stay: async () => {
        const printed = lines.find((l) => l.includes("web console:")) ?? "";
        const m =
          /web console: (https:\/\/\S+) \(log in as (\S+) \/ (\S+); the browser needs (\S+) trusted/.exec(
            printed,
          );
        expect(m, printed).not.toBeNull();
        const [, url, username, password, caFile] = m as unknown as [string, string, string, string, string];
        const ca = readFileSync(caFile);
        const login = await call(ca, new URL("/api/login", url).href, "POST", { username, password });
        expect(login.status).toBe(200);
        const fleet = await call(ca, new URL("/api/fleet", url).href, "GET", undefined, login.cookie);
        seen = fleet.json as { total: number };
      },
    });
    expect(r.ui?.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
    expect(seen?.total).toBe(3);
    expect(lines.some((l) => /everything keeps running; the console is at https:/.test(l))).toBe(true);
    expect(lines.at(-1)).toContain("demo stopped");
  }, 60_000);
});
