import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, extname, resolve } from "node:path";
import type { KV } from "@nats-io/kv";
import { parseDocument, stringify as yamlStringify } from "yaml";
import { parseDuration } from "../../core/config/index.js";
import type { NatsConnection } from "../../core/connector/index.js";
import { StreamsError, createBucket, kvOp, openBucket } from "../streams/index.js";
import { PlaybookError } from "./errors.js";
import type { DataStore, DataStoreDef } from "./types.js";

/** What opening a store may need: a broker connection (kv), where relative paths start, the environment. */
export interface DataDeps {
  nc?: NatsConnection;
  /** relative `file` and shell `cwd` paths start here (default: process.cwd()) */
  cwd?: string;
  /** the environment store reads and writes this (default: process.env, so shell tasks see writes) */
  env?: NodeJS.ProcessEnv;
}

/** Choria's shell data store timeout. */
export const SHELL_STORE_TIMEOUT_MS = 10_000;

const describeErr = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Every failure of a store is a PlaybookError("data") naming the store, the operation and the key. */
async function guard<T>(store: string, what: string, fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PlaybookError) throw err;
    throw new PlaybookError("data", `data store ${store}: ${what}: ${describeErr(err)}`, { cause: err });
  }
}

class MemoryStore implements DataStore {
  readonly type = "memory" as const;
  private readonly values = new Map<string, unknown>();
  constructor(readonly name: string) {}
  read(key: string): Promise<unknown> {
    // a copy, so a caller changing what it read does not change the store
    return Promise.resolve(structuredClone(this.values.get(key)));
  }
  write(key: string, value: unknown): Promise<void> {
    this.values.set(key, structuredClone(value));
    return Promise.resolve();
  }
  delete(key: string): Promise<void> {
    this.values.delete(key);
    return Promise.resolve();
  }
}

/** Choria's environment store: key K is the variable `<prefix>K`; values are strings. */
class EnvironmentStore implements DataStore {
  readonly type = "environment" as const;
  constructor(
    readonly name: string,
    private readonly prefix: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {}
  private variable(key: string): string {
    if (key === "" || /[=\0]/.test(key)) {
      throw new PlaybookError(
        "data",
        `data store ${this.name}: "${key}" cannot name an environment variable`,
      );
    }
    return `${this.prefix}${key}`;
  }
  read(key: string): Promise<unknown> {
    return Promise.resolve(this.env[this.variable(key)]);
  }
  write(key: string, value: unknown): Promise<void> {
    this.env[this.variable(key)] = typeof value === "string" ? value : JSON.stringify(value);
    return Promise.resolve();
  }
  delete(key: string): Promise<void> {
    delete this.env[this.variable(key)];
    return Promise.resolve();
  }
}

/**
 * A YAML or JSON file holding one mapping; each key is a top-level key. The file is read
 * on every operation (another run may have changed it) and written whole to a temporary
 * file that is renamed over it, so a reader never sees half a file.
 */
class FileStore implements DataStore {
  readonly type = "file" as const;
  constructor(
    readonly name: string,
    readonly path: string,
    private readonly format: "yaml" | "json",
  ) {}

  load(): Record<string, unknown> {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (err) {
      throw new PlaybookError(
        "data",
        `data store ${this.name}: cannot read ${this.path}: ${describeErr(err)}`,
        {
          cause: err,
        },
      );
    }
    if (text.trim() === "") return {};
    let data: unknown;
    if (this.format === "json") {
      try {
        data = JSON.parse(text);
      } catch (err) {
        throw new PlaybookError(
          "data",
          `data store ${this.name}: ${this.path} is not valid JSON: ${describeErr(err)}`,
          {
            cause: err,
          },
        );
      }
    } else {
      const doc = parseDocument(text);
      const first = doc.errors[0];
      if (first) {
        const line = first.linePos?.[0].line;
        const where = line === undefined ? this.path : `${this.path}:${line}`;
        throw new PlaybookError(
          "data",
          `data store ${this.name}: ${where}: not valid YAML: ${first.message.split("\n")[0]}`,
        );
      }
      data = doc.toJS();
    }
    if (data === null || data === undefined) return {};
    if (typeof data !== "object" || Array.isArray(data)) {
      throw new PlaybookError(
        "data",
        `data store ${this.name}: ${this.path} must hold a mapping of keys to values, not ${Array.isArray(data) ? "a list" : typeof data}`,
      );
    }
    return data as Record<string, unknown>;
  }

  private save(data: Record<string, unknown>): void {
    const text = this.format === "json" ? JSON.stringify(data, null, 2) + "\n" : yamlStringify(data);
    const tmp = `${this.path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    try {
      writeFileSync(tmp, text);
      renameSync(tmp, this.path);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw new PlaybookError(
        "data",
        `data store ${this.name}: cannot write ${this.path}: ${describeErr(err)}`,
        {
          cause: err,
        },
      );
    }
  }

  read(key: string): Promise<unknown> {
    return guard(this.name, `reading ${key}`, () => {
      const data = this.load();
      return Object.hasOwn(data, key) ? data[key] : undefined;
    });
  }
  write(key: string, value: unknown): Promise<void> {
    return guard(this.name, `writing ${key}`, () => {
      const data = this.load();
      data[key] = value;
      this.save(data);
    });
  }
  delete(key: string): Promise<void> {
    return guard(this.name, `deleting ${key}`, () => {
      const data = this.load();
      if (!Object.hasOwn(data, key)) return;
      delete data[key];
      this.save(data);
    });
  }
}

/** A Choria Streams KV bucket; values are stored as JSON (a value that is not JSON reads as its text). */
export class KvStore implements DataStore {
  readonly type = "kv" as const;
  constructor(
    readonly name: string,
    readonly bucket: string,
    /** the open bucket: locks on this store use it too */
    readonly kv: KV,
  ) {}
  read(key: string): Promise<unknown> {
    return guard(this.name, `reading ${key}`, async () => {
      const e = await kvOp(`reading ${key} from bucket ${this.bucket}`, () => this.kv.get(key));
      if (!e || e.operation !== "PUT") return undefined;
      const text = e.string();
      try {
        return JSON.parse(text) as unknown;
      } catch {
        // written by `chorus kv put` or another tool as plain text
        return text;
      }
    });
  }
  write(key: string, value: unknown): Promise<void> {
    return guard(this.name, `writing ${key}`, async () => {
      await kvOp(`writing ${key} to bucket ${this.bucket}`, () =>
        this.kv.put(key, JSON.stringify(value ?? null)),
      );
    });
  }
  delete(key: string): Promise<void> {
    return guard(this.name, `deleting ${key}`, async () => {
      await kvOp(`deleting ${key} from bucket ${this.bucket}`, () => this.kv.delete(key));
    });
  }
}

const SHELL_KEY_RE = /^[a-zA-Z0-9_-]+$/;

/**
 * Choria's shell store: `COMMAND --read|--write|--delete KEY` with CHORIA_DATA_KEY,
 * CHORIA_DATA_ACTION (and CHORIA_DATA_VALUE on write) in its environment; on read its
 * stdout (less the final newline) is the value, nothing at all meaning no value. A
 * non-zero exit fails the operation.
 */
class ShellStore implements DataStore {
  readonly type = "shell" as const;
  constructor(
    readonly name: string,
    private readonly command: string,
    private readonly timeoutMs: number,
    private readonly cwd: string,
    private readonly environment: Record<string, string>,
  ) {}

  private run(action: "read" | "write" | "delete", key: string, value?: string): Promise<string> {
    if (!SHELL_KEY_RE.test(key)) {
      return Promise.reject(
        new PlaybookError("data", `data store ${this.name}: key "${key}" must match ^[a-zA-Z0-9_-]+$`),
      );
    }
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...this.environment,
      CHORIA_DATA_KEY: key,
      CHORIA_DATA_ACTION: action,
      ...(value !== undefined && { CHORIA_DATA_VALUE: value }),
    };
    // through sh so COMMAND may carry its own arguments; the key goes as "$@", never spliced
    const child = spawn("/bin/sh", ["-c", `${this.command} "$@"`, "sh", `--${action}`, key], {
      cwd: this.cwd,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    return new Promise((resolvePromise, reject) => {
      let stdout = "";
      let stderr = "";
      let timedOut = false;
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => {
        timedOut = true;
        // the whole group: sh and whatever it started
        try {
          if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
        } catch {
          child.kill("SIGKILL");
        }
      }, this.timeoutMs);
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(
          new PlaybookError("data", `data store ${this.name}: cannot run ${this.command}: ${err.message}`),
        );
      });
      child.once("close", (code) => {
        clearTimeout(timer);
        if (timedOut) {
          reject(
            new PlaybookError(
              "data",
              `data store ${this.name}: ${this.command} --${action} ${key} did not finish within ${this.timeoutMs}ms`,
            ),
          );
        } else if (code !== 0) {
          const why = stderr.trim().split("\n").slice(-3).join(" / ");
          reject(
            new PlaybookError(
              "data",
              `data store ${this.name}: could not ${action} key ${key}: ${this.command} exited ${code}${why ? `: ${why}` : ""}`,
            ),
          );
        } else resolvePromise(stdout);
      });
    });
  }

  /** Empty output is "no value" (an input bound to the key falls back to its default). */
  async read(key: string): Promise<unknown> {
    const out = (await this.run("read", key)).replace(/\r?\n$/, "");
    return out === "" ? undefined : out;
  }
  async write(key: string, value: unknown): Promise<void> {
    await this.run("write", key, typeof value === "string" ? value : JSON.stringify(value));
  }
  async delete(key: string): Promise<void> {
    await this.run("delete", key);
  }
}

function fileFormat(name: string, def: { file: string; format?: "yaml" | "json" }): "yaml" | "json" {
  if (def.format !== undefined) {
    if (def.format !== "yaml" && def.format !== "json") {
      throw new PlaybookError(
        "data",
        `data store ${name}: format must be yaml or json, not ${String(def.format)}`,
      );
    }
    return def.format;
  }
  const ext = extname(def.file).toLowerCase();
  if (ext === ".json") return "json";
  if (ext === ".yaml" || ext === ".yml") return "yaml";
  throw new PlaybookError(
    "data",
    `data store ${name}: cannot tell the format of ${def.file} from its extension: set format: yaml or json`,
  );
}

async function openKv(
  name: string,
  def: { bucket: string; create?: boolean },
  deps: DataDeps,
): Promise<KvStore> {
  if (!deps.nc) {
    throw new PlaybookError("data", `data store ${name}: a kv store needs a connection to the broker`);
  }
  const nc = deps.nc;
  try {
    return new KvStore(name, def.bucket, await openBucket(nc, def.bucket));
  } catch (err) {
    if (def.create === true && err instanceof StreamsError && err.code === "no_bucket") {
      try {
        return new KvStore(name, def.bucket, await createBucket(nc, def.bucket));
      } catch (cerr) {
        // another run created it between our look and our create
        if (cerr instanceof StreamsError && cerr.code === "exists") {
          return new KvStore(name, def.bucket, await openBucket(nc, def.bucket));
        }
        throw new PlaybookError(
          "data",
          `data store ${name}: creating bucket ${def.bucket}: ${describeErr(cerr)}`,
          {
            cause: cerr,
          },
        );
      }
    }
    const hint =
      err instanceof StreamsError && err.code === "no_bucket"
        ? " (set create: true, or chorus kv add it)"
        : "";
    throw new PlaybookError(
      "data",
      `data store ${name}: opening bucket ${def.bucket}: ${describeErr(err)}${hint}`,
      {
        cause: err,
      },
    );
  }
}

/** Opens one data store from its definition; a store that cannot be used is a PlaybookError("data"). */
export async function openDataStore(
  name: string,
  def: DataStoreDef,
  deps: DataDeps = {},
): Promise<DataStore> {
  const cwd = deps.cwd ?? process.cwd();
  switch (def.type) {
    case "memory":
      return new MemoryStore(name);
    case "environment":
      return new EnvironmentStore(name, def.prefix ?? "", deps.env ?? process.env);
    case "file": {
      if (typeof def.file !== "string" || def.file === "") {
        throw new PlaybookError("data", `data store ${name}: a file store needs a file`);
      }
      const path = resolve(cwd, def.file);
      const store = new FileStore(name, path, fileFormat(name, def));
      if (!existsSync(path)) {
        if (def.create !== true) {
          throw new PlaybookError(
            "data",
            `data store ${name}: ${path} does not exist (set create: true to start it empty)`,
          );
        }
        const format = fileFormat(name, def);
        try {
          mkdirSync(dirname(path), { recursive: true });
          // "wx": never clobber a file another run made meanwhile
          writeFileSync(path, format === "json" ? "{}\n" : "", { flag: "wx" });
        } catch (err) {
          if (!existsSync(path)) {
            throw new PlaybookError(
              "data",
              `data store ${name}: cannot create ${path}: ${describeErr(err)}`,
              {
                cause: err,
              },
            );
          }
        }
      }
      store.load(); // a broken file fails now, before any task runs
      return store;
    }
    case "kv":
      return openKv(name, def, deps);
    case "shell": {
      if (typeof def.command !== "string" || def.command.trim() === "") {
        throw new PlaybookError("data", `data store ${name}: a shell store needs a command`);
      }
      let timeoutMs = SHELL_STORE_TIMEOUT_MS;
      if (def.timeout !== undefined) {
        const t = parseDuration(String(def.timeout));
        if (t === undefined || t <= 0) {
          throw new PlaybookError(
            "data",
            `data store ${name}: timeout "${def.timeout}" is not a duration like 10s`,
          );
        }
        timeoutMs = t;
      }
      return new ShellStore(
        name,
        def.command,
        timeoutMs,
        resolve(cwd, def.cwd ?? "."),
        def.environment ?? {},
      );
    }
    default: {
      const t = (def as { type?: unknown }).type;
      const hint =
        t === "consul" || t === "etcd" ? ": Chorus has no consul or etcd store, use kv (Choria Streams)" : "";
      throw new PlaybookError("data", `data store ${name}: unknown type ${String(t)}${hint}`);
    }
  }
}

/** Opens every store of a playbook; if one fails, those already open are closed. */
export async function openDataStores(
  defs: Record<string, DataStoreDef>,
  deps: DataDeps = {},
): Promise<Record<string, DataStore>> {
  const out: Record<string, DataStore> = {};
  try {
    for (const [name, def] of Object.entries(defs)) out[name] = await openDataStore(name, def, deps);
  } catch (err) {
    await Promise.all(Object.values(out).map((s) => s.close?.().catch(() => {})));
    throw err;
  }
  return out;
}
