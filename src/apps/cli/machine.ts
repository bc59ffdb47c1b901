import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { Option, type Command } from "commander";
import { parse as parseYaml } from "yaml";
import { ClientError, type Client, type RpcResult } from "../../client/index.js";
import { ChorusError } from "../../core/protocol/index.js";
import {
  MACHINE_TRANSITION_SUBJECT,
  MachineError,
  MachineManager,
  loadManifestFile,
  machineGraph,
  machineSpecPublicKey,
  signMachineSpec,
  type ManagedMachine,
  type MachineEventSink,
  type MachineManifest,
  type TransitionEventData,
} from "../../services/machines/index.js";
import {
  addConfigOption,
  addDiscoveryOptions,
  addFilterOptions,
  targetingFromFlags,
  withClient,
  type DiscoveryFlags,
} from "./common.js";
import { guarded } from "./errors.js";
import { intArg, secondsArg } from "./flags.js";
import { exitCodeFor, interruptedNote, nothingMatched, plural } from "./render/index.js";

type Write = (s: string) => void;
const stdout: Write = (s) => process.stdout.write(s);
const stderr: Write = (s) => process.stderr.write(s);

/**
 * The machine.yaml files a path names: the file itself, DIR/machine.yaml, or else
 * DIR/<each>/machine.yaml (a machine store, as plugin.choria.machine.store holds them).
 */
export function machineFiles(path: string): string[] {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw new MachineError(
      "io",
      `${path}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : (err as Error).message}`,
    );
  }
  if (!st.isDirectory()) return [path];
  const own = join(path, "machine.yaml");
  if (existsSync(own)) return [own];
  const found = readdirSync(path, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(path, e.name, "machine.yaml")))
    .map((e) => join(path, e.name, "machine.yaml"))
    .sort();
  if (found.length === 0)
    throw new MachineError("not_found", `${path}: no machine.yaml in it or in its subdirectories`);
  return found;
}

export interface ValidateResult {
  ok: { file: string; manifest: MachineManifest }[];
  errors: { file: string; message: string }[];
}

/** Loads every machine a path names; a bad one is reported (its message names the path) and the rest still checked. */
export function validateMachines(path: string): ValidateResult {
  const r: ValidateResult = { ok: [], errors: [] };
  for (const file of machineFiles(path)) {
    try {
      r.ok.push({ file, manifest: loadManifestFile(file) });
    } catch (err) {
      if (!(err instanceof ChorusError)) throw err;
      // the engine's messages already start with the file; do not say it twice
      r.errors.push({
        file,
        message: err.message.startsWith(file) ? err.message : `${file}: ${err.message}`,
      });
    }
  }
  return r;
}

/** `machine validate`: one line per machine; exit 1 when any is invalid. */
export function validateCommand(path: string, out: Write = stdout, err: Write = stderr): number {
  const r = validateMachines(path);
  for (const { file, manifest: m } of r.ok) {
    out(
      `${file}: ${m.name} ${m.version} is valid: ${plural(m.transitions.length, "transition")}, ${plural(m.watchers.length, "watcher")}, initial state ${m.initial_state}\n`,
    );
  }
  for (const e of r.errors) err(`${e.message}\n`);
  return r.errors.length > 0 ? 1 : 0;
}

/** A file of facts (JSON or YAML, as a server's facts file), for `machine run --facts`. */
function readFacts(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ClientError("usage", `--facts: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    try {
      v = parseYaml(text);
    } catch (err) {
      throw new ClientError("usage", `--facts: ${file} is neither JSON nor YAML: ${(err as Error).message}`);
    }
  }
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw new ClientError("usage", `--facts: ${file} must hold an object of facts`);
  return v as Record<string, unknown>;
}

const clock = (unixS: number): string => new Date(unixS * 1000).toISOString().slice(11, 19);

/** One line per transition: time, machine, from -> to, the transition and why. */
export function formatTransition(ev: TransitionEventData, withIdentity = false): string {
  const why = ev.info ? `, ${ev.info}` : "";
  return `${clock(ev.timestamp)} ${withIdentity ? `${ev.identity} ` : ""}${ev.machine}: ${ev.from_state} -> ${ev.to_state} (${ev.transition}${why})`;
}

/** One line per watcher state: time, machine#watcher, type, and the fields a reader wants first. */
export function formatWatcherState(type: string, d: Record<string, unknown>, withIdentity = false): string {
  const ts = typeof d.timestamp === "number" ? d.timestamp : Date.now() / 1000;
  const skip = new Set(["identity", "id", "version", "timestamp", "machine", "name", "type", "protocol"]);
  const fields = Object.entries(d)
    .filter(([k, v]) => !skip.has(k) && v !== undefined && v !== null && v !== "" && typeof v !== "object")
    .map(([k, v]) => `${k}=${typeof v === "string" && /\s/.test(v) ? JSON.stringify(v) : String(v)}`)
    .join(" ");
  const who = withIdentity ? `${String(d.identity ?? "")} ` : "";
  return `${clock(ts)} ${who}${String(d.machine ?? "")}#${String(d.name ?? "")} ${type}${fields ? ` ${fields}` : ""}`;
}

export interface RunFlags {
  identity?: string;
  facts?: string;
  /** also print watcher states */
  verbose?: boolean;
  json?: boolean;
}

/**
 * `machine run`: the machines of a directory in this process, no server and no broker,
 * printing transitions as they happen until `signal` aborts; 0 then, 1 when nothing
 * could be loaded.
 */
export async function runMachines(
  dir: string,
  o: RunFlags,
  signal: AbortSignal,
  out: Write = stdout,
  err: Write = stderr,
): Promise<number> {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new ClientError("usage", `${dir}: not a directory of machines`);
  const facts = o.facts !== undefined ? readFacts(o.facts) : {};
  const identity = o.identity ?? hostname();
  const events: MachineEventSink = {
    transition: (ev) => out(`${o.json ? JSON.stringify(ev) : formatTransition(ev)}\n`),
    watcherState: (type, d) => {
      if (o.verbose) out(`${o.json ? JSON.stringify({ type, ...d }) : formatWatcherState(type, d)}\n`);
    },
  };
  // a machine's own directory runs that machine; any other directory is a store
  const own = ["machine.yaml", "machine.yml", "machine.json"].map((n) => join(dir, n)).find(existsSync);
  const manager = new MachineManager({
    ...(own === undefined && { directory: dir }),
    services: { identity, facts: () => facts, events },
  });
  if (own !== undefined) {
    try {
      manager.add(loadManifestFile(own), dir, "file");
    } catch (e) {
      if (!(e instanceof ChorusError)) throw e;
      err(`${e.message}\n`);
      err(`chorus machine run: no machine could be started from ${dir}\n`);
      return 1;
    }
  }
  await manager.start();
  try {
    for (const p of manager.problems()) err(`${problemText(p)}\n`);
    const running = manager.machines();
    if (running.length === 0) {
      err(`chorus machine run: no machine could be started from ${dir}\n`);
      return 1;
    }
    err(
      `running ${plural(running.length, "machine")} as ${identity}: ${running.map((m) => m.name).join(", ")}; Ctrl-C to stop\n`,
    );
    if (!signal.aborted)
      await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    return 0;
  } finally {
    await manager.stop();
  }
}

function problemText(p: unknown): string {
  if (typeof p === "string") return p;
  if (p instanceof Error) return p.message;
  const r = p as { path?: unknown; file?: unknown; message?: unknown; error?: unknown };
  const where = r.path ?? r.file;
  const what = r.message ?? r.error;
  return `${where !== undefined ? `${String(where)}: ` : ""}${what instanceof Error ? what.message : String(what)}`;
}

interface WatchFlags {
  config?: string;
  identity?: string;
  machine?: string;
  transitions?: boolean;
  json?: boolean;
  count?: number;
  /** ms */
  timeout?: number;
}

/** `machine watch`: transitions and watcher states from the broker, one line each. */
async function watch(o: WatchFlags): Promise<void> {
  await withClient(o.config, async (client, signal) => {
    const nc = await client.connect();
    let seen = 0;
    const done = new AbortController();
    const stop = () => done.abort();
    signal.addEventListener("abort", stop, { once: true });
    const timer = o.timeout !== undefined ? setTimeout(stop, o.timeout) : undefined;
    const onMessage = (subject: string, data: Uint8Array) => {
      let ce: { type?: unknown; data?: unknown };
      try {
        ce = JSON.parse(new TextDecoder().decode(data)) as typeof ce;
      } catch (e) {
        process.stderr.write(`chorus machine watch: skipped ${subject}: ${(e as Error).message}\n`);
        return;
      }
      const d = (ce.data ?? {}) as Record<string, unknown>;
      if (o.identity !== undefined && d.identity !== o.identity) return;
      if (o.machine !== undefined && d.machine !== o.machine) return;
      if (o.json) process.stdout.write(`${JSON.stringify(ce)}\n`);
      else if (subject === MACHINE_TRANSITION_SUBJECT)
        process.stdout.write(`${formatTransition(d as unknown as TransitionEventData, true)}\n`);
      else {
        // choria.machine.watcher.<type>.state
        const type = subject.split(".")[3] ?? "";
        process.stdout.write(`${formatWatcherState(type, d, true)}\n`);
      }
      if (o.count !== undefined && ++seen >= o.count) stop();
    };
    const subjects = o.transitions
      ? [MACHINE_TRANSITION_SUBJECT]
      : [MACHINE_TRANSITION_SUBJECT, "choria.machine.watcher.>"];
    const subs = subjects.map((s) =>
      nc.subscribe(s, {
        callback: (e, m) => {
          if (e) {
            process.stderr.write(`chorus machine watch: ${e.message} (the token needs events_viewer)\n`);
            process.exitCode = 1;
            stop();
            return;
          }
          onMessage(m.subject, m.data);
        },
      }),
    );
    await nc.flush();
    if (!done.signal.aborted)
      await new Promise<void>((r) => done.signal.addEventListener("abort", () => r(), { once: true }));
    clearTimeout(timer);
    signal.removeEventListener("abort", stop);
    for (const s of subs) s.unsubscribe();
  });
}

/** One running machine on one node, from choria_util#machine_states. */
export interface MachineRow {
  node: string;
  name: string;
  version: string;
  state: string;
  scout: boolean;
}

/** The rows of a machine_states result, by node then machine; failed replies apart. */
export function machineRows(result: RpcResult): {
  rows: MachineRow[];
  errors: { node: string; message: string }[];
} {
  const rows: MachineRow[] = [];
  const errors: { node: string; message: string }[] = [];
  for (const r of result.replies) {
    if (r.statuscode !== 0) {
      errors.push({ node: r.sender, message: r.statusmsg });
      continue;
    }
    const states = r.data.states;
    if (states === null || typeof states !== "object") continue;
    for (const v of Object.values(states as Record<string, unknown>)) {
      const m = (v ?? {}) as Record<string, unknown>;
      rows.push({
        node: r.sender,
        name: String(m.name ?? ""),
        version: String(m.version ?? ""),
        state: String(m.state ?? ""),
        scout: m.scout === true,
      });
    }
  }
  rows.sort((a, b) => a.node.localeCompare(b.node) || a.name.localeCompare(b.name));
  return { rows, errors };
}

/** NODE MACHINE VERSION STATE, one line per machine, then failed nodes and a count. */
export function renderMachineRows(
  rows: readonly MachineRow[],
  errors: readonly { node: string; message: string }[],
): string {
  const w = (k: "node" | "name" | "version", head: string) =>
    Math.max(head.length, ...rows.map((r) => r[k].length));
  const [wn, wm, wv] = [w("node", "NODE"), w("name", "MACHINE"), w("version", "VERSION")];
  const line = (a: string, b: string, c: string, d: string) =>
    `${a.padEnd(wn)}  ${b.padEnd(wm)}  ${c.padEnd(wv)}  ${d}`.trimEnd();
  const out: string[] = [];
  if (rows.length > 0) {
    out.push(line("NODE", "MACHINE", "VERSION", "STATE"));
    for (const r of rows) out.push(line(r.node, r.name, r.version, r.scout ? `${r.state} (scout)` : r.state));
    out.push("");
  }
  for (const e of errors) out.push(`${e.node}: ${e.message}`);
  if (errors.length > 0) out.push("");
  out.push(`${plural(rows.length, "machine")} on ${plural(new Set(rows.map((r) => r.node)).size, "node")}`);
  return `${out.join("\n")}\n`;
}

interface StatesFlags extends DiscoveryFlags {
  json?: boolean;
  /** ms */
  timeout?: number;
}

/** `machine states` with a client: the table (or JSON) and the request's exit code (see req). */
export async function machineStates(
  client: Client,
  o: StatesFlags,
  signal: AbortSignal,
  out: Write = stdout,
  err: Write = stderr,
): Promise<number> {
  const result = await client.request(
    "choria_util",
    "machine_states",
    {},
    { signal, ...targetingFromFlags(o) },
  );
  const { rows, errors } = machineRows(result);
  out(o.json ? `${JSON.stringify({ machines: rows, errors }, null, 2)}\n` : renderMachineRows(rows, errors));
  const exit = exitCodeFor(result.stats);
  if (exit === 1) err(nothingMatched("machine states"));
  if (result.stats.interrupted)
    err(
      interruptedNote(
        "machine states",
        `showing the ${plural(result.replies.length, "reply", "replies")} so far`,
      ),
    );
  return exit;
}

/**
 * `machine sign`: a signed machine spec (the KV value a `machines` watcher installs) from
 * a JSON list of machines and a hex ed25519 seed file; with `publicKey`, the key to
 * configure on nodes instead.
 */
export function signCommand(
  list: string,
  o: { seed: string; publicKey?: boolean },
  out: Write = stdout,
): void {
  let seed: string;
  try {
    seed = readFileSync(o.seed, "utf8");
  } catch (err) {
    throw new ClientError("usage", `--seed: cannot read ${o.seed}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (o.publicKey) {
    out(`${machineSpecPublicKey(seed)}\n`);
    return;
  }
  let entries: unknown;
  try {
    entries = JSON.parse(readFileSync(list, "utf8"));
  } catch (err) {
    throw new ClientError("usage", `${list}: ${(err as Error).message}`, { cause: err });
  }
  out(`${signMachineSpec(entries as ManagedMachine[], seed)}\n`);
}

/** `chorus machine validate|graph|run|watch|states|sign`: autonomous agents. */
export function register(program: Command): void {
  const machine = program
    .command("machine")
    .description(
      "Autonomous agents (state machines): validate, draw, run locally, watch events, list states",
    );
  machine
    .command("validate <path>")
    .description("Check machine.yaml files: a file, a machine's directory, or a store of machines")
    .action(
      guarded("machine validate", (path: string) => {
        process.exitCode = validateCommand(path);
      }),
    );
  machine
    .command("graph <file>")
    .description("Print a machine's states and transitions as a Mermaid or Graphviz DOT graph")
    .addOption(new Option("--format <format>", "graph format").choices(["mermaid", "dot"]).default("mermaid"))
    .action(
      guarded("machine graph", (file: string, o: { format: "mermaid" | "dot" }) => {
        const files = machineFiles(file);
        if (files.length > 1)
          throw new ClientError(
            "usage",
            `${file} holds ${files.length} machines: name one of them (${files.join(", ")})`,
          );
        process.stdout.write(machineGraph(loadManifestFile(files[0] as string), o.format));
      }),
    );
  machine
    .command("run <dir>")
    .description("Run the machines of a directory in the foreground, without a server, printing transitions")
    .option("--identity <identity>", "the identity the machines see (default: this host's name)")
    .option("--facts <file>", "facts the machines see (JSON or YAML object)")
    .option("--verbose", "also print every watcher state announcement")
    .option("--json", "print events as JSON")
    .action(
      guarded("machine run", async (dir: string, o: RunFlags) => {
        const ac = new AbortController();
        const stop = () => ac.abort();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
        try {
          process.exitCode = await runMachines(dir, o, ac.signal);
        } finally {
          process.off("SIGINT", stop);
          process.off("SIGTERM", stop);
        }
      }),
    );
  const w = machine
    .command("watch")
    .description("Print machine transitions and watcher states from the broker as they happen")
    .option("--identity <identity>", "only this node")
    .option("--machine <name>", "only this machine")
    .option("--transitions", "only transitions, no watcher states")
    .option("--json", "print each CloudEvent's JSON")
    .option("--count <n>", "exit after n events", intArg("--count", { min: 1 }))
    .option("--timeout <seconds>", "exit after this long", secondsArg("--timeout"));
  addConfigOption(w);
  w.action(guarded("machine watch", watch));
  machine
    .command("sign [list]")
    .description(
      "Sign a JSON list of machines (name, source, checksum, verify_checksum, match...) as a spec for KV",
    )
    .requiredOption("--seed <file>", "the hex ed25519 seed to sign with")
    .option("--public-key", "print the seed's public key (for plugin.machines.signing_key) instead")
    .action(
      guarded("machine sign", (list: string | undefined, o: { seed: string; publicKey?: boolean }) => {
        if (list === undefined && !o.publicKey)
          throw new ClientError("usage", "name the JSON list of machines to sign");
        signCommand(list ?? "", o);
      }),
    );
  const st = machine
    .command("states")
    .description("List the machines running on matching nodes and their states (choria_util#machine_states)");
  addConfigOption(st);
  addFilterOptions(st);
  addDiscoveryOptions(st);
  st.option("--timeout <seconds>", "how long to wait for replies", secondsArg("--timeout"))
    .option("--json", "print JSON")
    .action(
      guarded("machine states", async (o: StatesFlags) => {
        await withClient(o.config, async (client, signal) => {
          process.exitCode = await machineStates(client, o, signal);
        });
      }),
    );
}
