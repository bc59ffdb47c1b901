import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Filter } from "../../core/protocol/index.js";
import { ClientError, naming, opt, type MessagePart } from "../errors.js";
import { checkExternalReply } from "./schemas.js";

export const EXTERNAL_REQUEST_PROTOCOL = "io.choria.choria.discovery.v1.external_request";
export const EXTERNAL_REPLY_PROTOCOL = "io.choria.choria.discovery.v1.external_reply";

export interface ExternalOptions {
  /** program and optional arguments, split on spaces */
  command: string;
  filter: Filter;
  collective: string;
  timeoutMs: number;
  /** every discovery option, passed through to the program */
  options: Record<string, string>;
  /** what the caller calls `options`, for errors (default `options`) */
  optionsName?: string;
}

function fail(msg: string | MessagePart[], cause?: unknown, option?: string): never {
  const parts = ["external discovery: ", ...(typeof msg === "string" ? [msg] : msg)];
  throw new ClientError("discovery_failed", parts, {
    ...(cause !== undefined && { cause }),
    ...(option !== undefined && { option }),
  });
}

/**
 * External discovery as Choria runs it: `command REQUEST_FILE REPLY_FILE PROTOCOL`
 * with the same three in CHORIA_EXTERNAL_{REQUEST,REPLY,PROTOCOL}. The program has
 * the discovery timeout to write `{protocol, nodes}` or `{protocol, error}`; it is
 * killed (with its process group) when the time is up.
 */
export async function runExternal(o: ExternalOptions): Promise<string[]> {
  const argv = o.command.split(/\s+/).filter((a) => a !== "");
  const prog = argv[0];
  const name = o.optionsName ?? "options";
  if (prog === undefined) fail(naming`no command (set ${opt(name)} command=PATH)`, undefined, name);
  const dir = mkdtempSync(join(tmpdir(), "chorus-external-"));
  const reqFile = join(dir, "request.json");
  const repFile = join(dir, "reply.json");
  const f = o.filter;
  writeFileSync(
    reqFile,
    JSON.stringify({
      protocol: EXTERNAL_REQUEST_PROTOCOL,
      collective: o.collective,
      timeout: Math.max(1, Math.ceil(o.timeoutMs / 1000)),
      options: o.options,
      // The request schema wants compound as plain expression strings.
      filter: {
        fact: f.fact,
        cf_class: f.cf_class,
        agent: f.agent,
        identity: f.identity,
        compound: f.compound.flat().map((c) => c.expr),
      },
    }),
    { mode: 0o600 },
  );
  try {
    const { code, signal, stderr, timedOut } = await new Promise<{
      code: number | null;
      signal: NodeJS.Signals | null;
      stderr: string;
      timedOut: boolean;
    }>((resolve, reject) => {
      const child = spawn(prog, [...argv.slice(1), reqFile, repFile, EXTERNAL_REQUEST_PROTOCOL], {
        env: {
          ...process.env,
          CHORIA_EXTERNAL_REQUEST: reqFile,
          CHORIA_EXTERNAL_REPLY: repFile,
          CHORIA_EXTERNAL_PROTOCOL: EXTERNAL_REQUEST_PROTOCOL,
        },
        stdio: ["ignore", "ignore", "pipe"],
        // Its own process group, so a shell script's children die with it on timeout.
        detached: true,
      });
      let stderr = "";
      let timedOut = false;
      child.stderr.on("data", (d: Buffer) => {
        if (stderr.length < 8192) stderr += d.toString();
      });
      const timer = setTimeout(() => {
        timedOut = true;
        try {
          process.kill(-(child.pid as number), "SIGKILL");
        } catch {
          child.kill("SIGKILL");
        }
      }, o.timeoutMs);
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once("close", (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stderr, timedOut });
      });
    }).catch((err: NodeJS.ErrnoException) =>
      fail(
        `cannot run ${prog}: ${err.code === "ENOENT" ? "no such program" : err.code === "EACCES" ? "not executable" : err.message}`,
        err,
      ),
    );
    const lastLine = stderr.trim().split("\n").pop() ?? "";
    if (timedOut) fail(`${prog} did not finish within ${o.timeoutMs / 1000}s and was killed`);
    if (code !== 0) {
      fail(
        `${prog} ${signal ? `was killed by ${signal}` : `exited with status ${code}`}${lastLine ? `: ${lastLine}` : ""}`,
      );
    }
    let text: string;
    try {
      text = readFileSync(repFile, "utf8");
    } catch {
      return fail(`${prog} wrote no reply to ${"$"}CHORIA_EXTERNAL_REPLY`);
    }
    if (text.trim() === "") fail(`${prog} wrote an empty reply`);
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      fail(`${prog} wrote a reply that is not JSON: ${(err as Error).message}`, err);
    }
    const why = checkExternalReply(doc);
    if (why !== undefined) fail(`${prog} wrote a reply that is not an ${EXTERNAL_REPLY_PROTOCOL}: ${why}`);
    const reply = doc as { error?: string; nodes?: string[] };
    if (reply.error) fail(`${prog} reported: ${reply.error}`);
    return [...new Set(reply.nodes ?? [])];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
