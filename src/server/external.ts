import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AgentDDL } from "../core/ddl/index.js";
import { ChorusError, StatusCode } from "../core/protocol/index.js";
import type { ActionRequest, AgentHandler } from "./types.js";

export const EXTERNAL_PROTOCOLS = {
  activationRequest: "io.choria.mcorpc.external.v1.activation_request",
  rpcRequest: "io.choria.mcorpc.external.v1.rpc_request",
} as const;

const SCHEMA_BASE = "https://choria.io/schemas/mcorpc/external/v1";

/** Why an external agent run failed; the message is what the caller sees. */
export class ExternalAgentError extends ChorusError {}

export interface ExternalRunOptions {
  /** Kill the process group after this long. */
  timeoutMs: number;
  /** Also kill when this aborts (the node's DDL timeout). */
  signal?: AbortSignal;
  /** The server config file, for CHORIA_EXTERNAL_CONFIG. */
  configFile?: string;
  facts?: Record<string, unknown>;
  /** Largest reply file accepted (default 4 MiB, the wire limit). */
  maxReplyBytes?: number;
  /** stdout/stderr kept for error messages (default 64 KiB each); the rest is read and dropped. */
  maxOutputBytes?: number;
}

export interface ExternalRunResult {
  reply: unknown;
  stdout: string;
  stderr: string;
}

/** Keeps the first `max` bytes of a stream and discards the rest (still reading, so the child never blocks). */
class Capture {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;
  constructor(private readonly max: number) {}
  push(b: Buffer): void {
    if (this.size >= this.max) {
      this.truncated = true;
      return;
    }
    const take = b.subarray(0, this.max - this.size);
    this.chunks.push(take);
    this.size += take.length;
    if (take.length < b.length) this.truncated = true;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString("utf8") + (this.truncated ? "…" : "");
  }
}

function tail(s: string, n = 300): string {
  const t = s.trim();
  return t.length > n ? `…${t.slice(-n)}` : t;
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    // Negative pid: the whole process group the detached child leads, grandchildren included.
    process.kill(-pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/**
 * Runs `<command> <request file> <reply file> <protocol>` per Choria's external agent
 * protocol and returns the parsed reply file. The child leads its own process group
 * so a timeout kills everything it started. Throws ExternalAgentError with a message
 * fit for the caller on any failure.
 */
export async function runExternal(
  command: string,
  protocol: string,
  request: unknown,
  opts: ExternalRunOptions,
): Promise<ExternalRunResult> {
  const dir = await mkdtemp(join(tmpdir(), "chorus-external-"));
  try {
    const reqFile = join(dir, "request.json");
    const repFile = join(dir, "reply.json");
    const factsFile = join(dir, "facts.json");
    await Promise.all([
      writeFile(reqFile, JSON.stringify(request), { mode: 0o600 }),
      writeFile(repFile, "", { mode: 0o600 }),
      writeFile(factsFile, JSON.stringify(opts.facts ?? {}), { mode: 0o600 }),
    ]);
    const maxOut = opts.maxOutputBytes ?? 64 * 1024;
    const stdout = new Capture(maxOut);
    const stderr = new Capture(maxOut);
    const outcome = await new Promise<{ code: number | null; signal: string | null; timedOut: boolean }>(
      (resolve, reject) => {
        if (opts.signal?.aborted) {
          reject(
            new ExternalAgentError("external_timeout", "the request timed out before the agent started"),
          );
          return;
        }
        const child = spawn(command, [reqFile, repFile, protocol], {
          cwd: dir,
          detached: true,
          stdio: ["ignore", "pipe", "pipe"],
          // A small, explicit environment, as go-choria passes.
          env: {
            PATH: process.env.PATH ?? "/usr/bin:/bin",
            CHORIA_EXTERNAL_REQUEST: reqFile,
            CHORIA_EXTERNAL_REPLY: repFile,
            CHORIA_EXTERNAL_PROTOCOL: protocol,
            CHORIA_EXTERNAL_CONFIG: opts.configFile ?? "",
            CHORIA_EXTERNAL_FACTS: factsFile,
          },
        });
        let timedOut = false;
        const kill = () => {
          timedOut = true;
          killGroup(child.pid);
        };
        const timer = setTimeout(kill, opts.timeoutMs);
        opts.signal?.addEventListener("abort", kill, { once: true });
        child.stdout.on("data", (b: Buffer) => stdout.push(b));
        child.stderr.on("data", (b: Buffer) => stderr.push(b));
        const done = () => {
          clearTimeout(timer);
          opts.signal?.removeEventListener("abort", kill);
        };
        child.once("error", (err: NodeJS.ErrnoException) => {
          done();
          const why =
            err.code === "EACCES"
              ? "permission denied (is it executable?)"
              : err.code === "ENOENT"
                ? "no such file"
                : err.message;
          reject(new ExternalAgentError("external_exec", `cannot run ${command}: ${why}`));
        });
        // "close" comes once the pipes are drained, so stderr is complete. A background
        // grandchild may hold the pipes open, though: shortly after "exit", stop waiting.
        child.once("close", (code, signal) => {
          done();
          resolve({ code, signal, timedOut });
        });
        child.once("exit", () => {
          setTimeout(() => {
            child.stdout.destroy();
            child.stderr.destroy();
          }, 200).unref();
        });
      },
    );
    const secs = (opts.timeoutMs / 1000).toFixed(1).replace(/\.0$/, "");
    if (outcome.timedOut) {
      throw new ExternalAgentError(
        "external_timeout",
        `${command} did not finish within ${secs}s and was killed`,
      );
    }
    if (outcome.code !== 0) {
      const how = outcome.signal ? `was killed by ${outcome.signal}` : `exited with code ${outcome.code}`;
      const err = tail(stderr.text());
      throw new ExternalAgentError("external_failed", `${command} ${how}${err ? `: ${err}` : ""}`);
    }
    const maxReply = opts.maxReplyBytes ?? 4 * 1024 * 1024;
    const size = (await stat(repFile)).size;
    if (size > maxReply) {
      throw new ExternalAgentError(
        "external_reply",
        `${command} wrote a ${size} byte reply, more than the ${maxReply} allowed`,
      );
    }
    const text = await readFile(repFile, "utf8");
    if (text.trim() === "") throw new ExternalAgentError("external_reply", `${command} wrote no reply`);
    let reply: unknown;
    try {
      reply = JSON.parse(text);
    } catch (err) {
      throw new ExternalAgentError(
        "external_reply",
        `${command} wrote a reply that is not JSON: ${(err as Error).message}`,
      );
    }
    return { reply, stdout: stdout.text(), stderr: stderr.text() };
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Asks the agent whether it wants to run here (`{"activate": bool}`); a failure means no. */
export async function activationCheck(
  command: string,
  agent: string,
  opts: Omit<ExternalRunOptions, "timeoutMs"> & { timeoutMs?: number } = {},
): Promise<{ activate: boolean; reason?: string }> {
  try {
    const { reply } = await runExternal(
      command,
      EXTERNAL_PROTOCOLS.activationRequest,
      {
        $schema: `${SCHEMA_BASE}/activation_request.json`,
        protocol: EXTERNAL_PROTOCOLS.activationRequest,
        agent,
      },
      { ...opts, timeoutMs: opts.timeoutMs ?? 2000 },
    );
    const r = reply as { activate?: unknown };
    if (r === null || typeof r !== "object" || typeof r.activate !== "boolean") {
      return {
        activate: false,
        reason: `activation reply has no boolean "activate": ${JSON.stringify(reply).slice(0, 200)}`,
      };
    }
    return r.activate ? { activate: true } : { activate: false, reason: "the agent declined activation" };
  } catch (err) {
    return { activate: false, reason: (err as Error).message };
  }
}

/** Checks an rpc_reply: `{statuscode 0..5, statusmsg, data{}}`. */
function checkReply(
  reply: unknown,
  command: string,
): { statuscode: number; statusmsg: string; data: Record<string, unknown> } {
  const bad = (why: string) =>
    new ExternalAgentError("external_reply", `${command} wrote an invalid reply: ${why}`);
  if (reply === null || typeof reply !== "object" || Array.isArray(reply)) throw bad("not a JSON object");
  const r = reply as Record<string, unknown>;
  const code = r.statuscode ?? 0;
  if (typeof code !== "number" || !Number.isInteger(code) || code < 0 || code > 5)
    throw bad("statuscode must be an integer 0..5");
  const msg = r.statusmsg ?? (code === 0 ? "OK" : "");
  if (typeof msg !== "string") throw bad("statusmsg must be a string");
  const data = r.data ?? {};
  if (data === null || typeof data !== "object" || Array.isArray(data)) throw bad("data must be an object");
  return { statuscode: code, statusmsg: msg, data: data as Record<string, unknown> };
}

export interface ExternalAgentOptions {
  configFile?: string;
  /** Called with stderr of failed runs, for the server log. */
  onFailure?(agent: string, action: string, err: Error, stderr: string): void;
}

/**
 * The kill deadline for an action: a little before the DDL timeout, so the caller
 * gets a status 5 "killed" reply instead of the silence a DDL timeout means.
 */
export function externalKillMs(ddlTimeoutS: number): number {
  const ms = ddlTimeoutS > 0 ? ddlTimeoutS * 1000 : 10_000;
  // A quarter of the budget, at most 1 s: room for the exit, the reply and a busy event loop.
  return ms - Math.min(1000, ms / 4);
}

/** Handlers for every action in an external agent's DDL, each running `command`. */
export function externalAgentHandlers(
  ddl: AgentDDL,
  command: string,
  opts: ExternalAgentOptions = {},
): Record<string, AgentHandler> {
  const name = ddl.metadata.name;
  const timeoutMs = externalKillMs(ddl.metadata.timeout);
  const handler: AgentHandler = async (req: ActionRequest, reply) => {
    const request = {
      $schema: `${SCHEMA_BASE}/rpc_request.json`,
      protocol: EXTERNAL_PROTOCOLS.rpcRequest,
      agent: name,
      action: req.action,
      requestid: req.requestId,
      senderid: req.sender,
      callerid: req.caller,
      collective: req.collective,
      ttl: req.ttl,
      msgtime: Math.floor(req.time / 1e9),
      data: req.data,
    };
    let result: ExternalRunResult;
    try {
      result = await runExternal(command, EXTERNAL_PROTOCOLS.rpcRequest, request, {
        timeoutMs,
        signal: req.signal,
        facts: req.node.facts,
        ...(opts.configFile !== undefined && { configFile: opts.configFile }),
      });
    } catch (err) {
      opts.onFailure?.(name, req.action, err as Error, "");
      reply.fail(`${name}#${req.action} failed: ${(err as Error).message}`, StatusCode.UnknownError);
      return;
    }
    let r: ReturnType<typeof checkReply>;
    try {
      r = checkReply(result.reply, command);
    } catch (err) {
      opts.onFailure?.(name, req.action, err as Error, result.stderr);
      reply.fail(`${name}#${req.action} failed: ${(err as Error).message}`, StatusCode.UnknownError);
      return;
    }
    reply.statuscode = r.statuscode;
    reply.statusmsg = r.statusmsg;
    Object.assign(reply.data, r.data);
  };
  return Object.fromEntries(ddl.actions.map((a) => [a.action, handler]));
}
