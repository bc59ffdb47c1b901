import { spawn } from "node:child_process";
import { Ajv } from "ajv";
import { HelperError } from "./errors.js";

/** What the helper reads on stdin (Choria's helper protocol). */
export interface HelperInput {
  identity: string;
  csr: { csr: string; public_key: string; ssldir: string } | null;
  ed25519_pubkey: { public_key: string; directory: string; signature: string } | null;
  /** rpcutil#inventory's reply data as a JSON string, as Choria passes it */
  inventory: string;
  /** the node's verified provisioning token claims */
  jwt: Record<string, unknown>;
}

/** server_claims a helper may set on the minted server token. */
export interface ServerClaimsOverride {
  ou?: string;
  /** absolute unix seconds (a small number is taken as seconds from now, see mint.ts) */
  exp?: number;
  collectives?: string[];
  pub_subjects?: string[];
  permissions?: { submission?: boolean; streams?: boolean; governor?: boolean; service_host?: boolean };
}

/** What the helper prints on stdout. */
export interface HelperOutput {
  defer?: boolean;
  shutdown?: boolean;
  msg?: string;
  configuration?: Record<string, string>;
  action_policies?: Record<string, string>;
  opa_policies?: Record<string, string>;
  certificate?: string;
  ca?: string;
  ssldir?: string;
  key?: string;
  server_claims?: ServerClaimsOverride;
  upgrade?: string;
}

export interface HelperRunOptions {
  timeoutMs: number;
  /** stdout larger than this is refused (default 1 MiB) */
  maxOutputBytes?: number;
  /** stops the helper early (the service is stopping) */
  signal?: AbortSignal;
}

export const HELPER_MAX_OUTPUT = 1024 * 1024;
const STDERR_TAIL = 2048;

const SCALAR = { type: ["string", "number", "boolean"] } as const;
const STR_MAP = { type: "object", additionalProperties: { type: "string" } } as const;
const OUTPUT_SCHEMA = {
  type: "object",
  properties: {
    defer: { type: "boolean" },
    shutdown: { type: "boolean" },
    msg: { type: "string" },
    configuration: { type: "object", additionalProperties: SCALAR },
    action_policies: STR_MAP,
    opa_policies: STR_MAP,
    certificate: { type: "string" },
    ca: { type: "string" },
    ssldir: { type: "string" },
    key: { type: "string" },
    upgrade: { type: "string" },
    server_claims: {
      type: "object",
      properties: {
        ou: { type: "string" },
        exp: { type: "number" },
        collectives: { type: "array", items: { type: "string", minLength: 1 } },
        pub_subjects: { type: "array", items: { type: "string", minLength: 1 } },
        permissions: { type: "object", additionalProperties: { type: "boolean" } },
      },
    },
  },
} as const;
const validateOutput = new Ajv({ allErrors: true, strict: false }).compile(OUTPUT_SCHEMA);

function tail(s: string): string {
  const t = s.trim();
  return t.length > 300 ? `…${t.slice(-300)}` : t;
}

/** Checks and normalizes the helper's parsed answer (configuration values become strings). */
export function checkHelperOutput(v: unknown): HelperOutput {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new HelperError("garbage", "the helper's output is not a JSON object");
  if (!validateOutput(v)) {
    const why = (validateOutput.errors ?? [])
      .map(
        (e) => `${e.instancePath.replace(/^\//, "").replace(/\//g, ".") || "(top level)"} ${e.message ?? ""}`,
      )
      .join("; ");
    throw new HelperError("invalid", `the helper's output is not valid: ${why}`);
  }
  const out = v as HelperOutput & { configuration?: Record<string, string | number | boolean> };
  if (out.configuration) {
    out.configuration = Object.fromEntries(Object.entries(out.configuration).map(([k, x]) => [k, String(x)]));
  }
  return out;
}

/**
 * Runs the helper once: `input` as JSON on stdin, one JSON object expected on stdout
 * and exit status 0. It runs in its own process group, so on timeout (or too much
 * output, or abort) the whole group is killed, grandchildren included.
 */
export function runHelper(argv: string[], input: HelperInput, o: HelperRunOptions): Promise<HelperOutput> {
  const max = o.maxOutputBytes ?? HELPER_MAX_OUTPUT;
  const [cmd, ...args] = argv;
  if (!cmd) return Promise.reject(new HelperError("spawn", "no helper command"));
  return new Promise<HelperOutput>((resolve, reject) => {
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], detached: true });
    } catch (err) {
      reject(new HelperError("spawn", `cannot run helper ${cmd}: ${(err as Error).message}`, { cause: err }));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let stderr = "";
    let failure: HelperError | undefined;
    let settled = false;
    let closeTimer: NodeJS.Timeout | undefined;

    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
      // a grandchild that left the group could keep the pipes open: stop waiting for them
      closeTimer ??= setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish(null, "SIGKILL");
      }, 1000);
    };
    const stopWith = (e: HelperError) => {
      failure ??= e;
      killGroup();
    };
    const timer = setTimeout(
      () =>
        stopWith(
          new HelperError("timeout", `the helper did not finish within ${o.timeoutMs} ms and was killed`),
        ),
      o.timeoutMs,
    );
    const onAbort = () =>
      stopWith(new HelperError("timeout", "the helper was stopped: the service is stopping"));
    o.signal?.addEventListener("abort", onAbort, { once: true });

    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(closeTimer);
      o.signal?.removeEventListener("abort", onAbort);
      if (failure) return reject(failure);
      if (code !== 0) {
        const how = code === null ? `was killed by ${signal ?? "a signal"}` : `exited with status ${code}`;
        const why = tail(stderr);
        return reject(new HelperError("exit", `the helper ${how}${why ? `: ${why}` : ""}`));
      }
      const text = Buffer.concat(chunks).toString("utf8").trim();
      if (text === "") return reject(new HelperError("empty", "the helper printed nothing"));
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return reject(new HelperError("garbage", `the helper's output is not JSON: ${tail(text)}`));
      }
      try {
        resolve(checkHelperOutput(parsed));
      } catch (err) {
        reject(err as Error);
      }
    };

    child.once("error", (err) => {
      failure ??= new HelperError("spawn", `cannot run helper ${cmd}: ${err.message}`, { cause: err });
      finish(null, null);
    });
    child.stdout?.on("data", (d: Buffer) => {
      size += d.length;
      if (size > max) {
        stopWith(new HelperError("too_large", `the helper printed more than ${max} bytes`));
        return;
      }
      chunks.push(d);
    });
    child.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString("utf8")).slice(-STDERR_TAIL);
    });
    child.once("close", (code, signal) => finish(code, signal));
    // a helper that exits without reading stdin makes the write fail with EPIPE: its exit status tells more
    child.stdin?.on("error", () => {});
    child.stdin?.end(JSON.stringify(input));
  });
}
