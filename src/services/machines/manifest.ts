import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { silentLogger } from "../../core/util/index.js";
import { parseGoDuration } from "./duration.js";
import { MachineError } from "./errors.js";
import type { MachineManifest, WatcherFactory, WatcherHost } from "./types.js";
import { WATCHER_TYPES } from "./watchers/index.js";

// yaml loads on first use: a server that runs no machines never pays for it
const requireYaml = createRequire(import.meta.url);
const yaml = (): typeof import("yaml") => requireYaml("yaml") as typeof import("yaml");

type Json = Record<string, unknown>;

/** The smallest interval a watcher may run at (go-choria refuses less than 500ms). */
export const MIN_INTERVAL_MS = 500;

/**
 * Choria's published manifest schema, adjusted to what go-choria accepts and what this
 * engine checks itself:
 * - Go durations: the schema says `^\d+[hms]$`, go-choria parses with Go's parser
 *   ("1m30s", "500ms"); parseGoDuration checks them and names the path.
 * - watchers: the schema's per-type `anyOf` gives unreadable errors (and its timer entry
 *   says type "schedule"); each type's factory checks its properties instead.
 * - unknown keys are refused at the top level, in transitions and in watchers (the schema
 *   means to with `additionalItems`, which has no effect on objects).
 */
function schema(): Json {
  const url = new URL("../../../schemas/choria/machine/v1/manifest.json", import.meta.url);
  const s = JSON.parse(readFileSync(url, "utf8")) as Json;
  delete s.$schema;
  delete s.id;
  s.additionalProperties = false;
  const defs = s.definitions as Record<string, Json>;
  defs.GoDuration = { type: "string" };
  defs.Transition!.additionalProperties = false;
  // go-choria's Go type is a list of subscriptions; the schema shows one
  const sub = { $ref: "#/definitions/MachineSubscription" };
  (defs.Transition!.properties as Json).subscribe = { anyOf: [sub, { type: "array", items: sub }] };
  (defs.MachineSubscription as Json).additionalProperties = false;
  const base = defs.WatcherBase!;
  base.additionalProperties = false;
  const bp = base.properties as Json;
  bp.type = { type: "string", minLength: 1 };
  bp.properties = { type: ["object", "null"] };
  (s.properties as Record<string, Json>).watchers!.items = { $ref: "#/definitions/WatcherBase" };
  return s;
}

let validator: ValidateFunction | undefined;
function validate(): ValidateFunction {
  // strict:false: the vendored schema has keywords (additionalItems on objects) strict mode refuses
  validator ??= new Ajv({ allErrors: false, strict: false, logger: false }).compile(schema());
  return validator;
}

/** `/watchers/0/interval` => `watchers[0].interval` */
function dotted(instancePath: string, extra?: string): string {
  const parts = instancePath.split("/").slice(1);
  if (extra !== undefined) parts.push(extra);
  let out = "";
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out === "" ? p : `.${p}`;
  return out === "" ? "(top level)" : out;
}

function ajvMessage(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  if (e.keyword === "additionalProperties") {
    return `${dotted(e.instancePath, String(p.additionalProperty))}: unknown key`;
  }
  if (e.keyword === "required") {
    return `${dotted(e.instancePath, String(p.missingProperty))}: is required`;
  }
  return `${dotted(e.instancePath)}: ${e.message ?? "is invalid"}`;
}

/** A host for checking a watcher's properties without running it. */
function checkHost(m: MachineManifest, directory: string): WatcherHost {
  return {
    machineName: m.name,
    machineVersion: m.version,
    directory,
    services: { identity: "manifest-check" },
    state: () => m.initial_state,
    data: () => ({}),
    dataPut() {},
    dataDelete() {},
    success() {},
    fail() {},
    fire() {},
    announce() {},
    log: silentLogger,
  };
}

function fail(file: string, code: "bad_manifest" | "bad_watcher", msg: string): MachineError {
  return new MachineError(code, `${file}: ${msg}`);
}

/**
 * Checks a manifest object: the schema, then what the schema cannot say (states and
 * transitions that exist, unique names, durations, watcher types and their properties).
 * `constructWatchers` builds each watcher once to let its type check its properties.
 */
export function validateManifest(
  obj: unknown,
  file: string,
  watcherTypes: Record<string, WatcherFactory> = WATCHER_TYPES,
  constructWatchers = true,
): MachineManifest {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw fail(file, "bad_manifest", "a machine manifest must be a map");
  }
  const v = validate();
  if (!v(obj)) {
    // an anyOf reports each branch's error: the deepest one says most about the mistake
    const errs = [...v.errors!].sort((a, b) => b.instancePath.length - a.instancePath.length);
    throw fail(file, "bad_manifest", ajvMessage(errs[0]!));
  }
  const m = obj as MachineManifest;

  const states = new Set<string>();
  const transitions = new Set<string>();
  m.transitions.forEach((t, i) => {
    if (transitions.has(t.name)) {
      throw fail(file, "bad_manifest", `transitions[${i}].name: duplicate transition name "${t.name}"`);
    }
    transitions.add(t.name);
    for (const s of [...t.from, t.destination]) states.add(s);
  });
  if (!states.has(m.initial_state)) {
    throw fail(
      file,
      "bad_manifest",
      `initial_state: "${m.initial_state}" is not a state of any transition (states: ${[...states].join(", ")})`,
    );
  }
  const knownTransition = (t: string | undefined, where: string): void => {
    if (t !== undefined && t !== "" && !transitions.has(t)) {
      throw fail(
        file,
        "bad_manifest",
        `${where}: unknown transition "${t}" (transitions: ${[...transitions].join(", ")})`,
      );
    }
  };

  const names = new Set<string>();
  m.watchers.forEach((w, i) => {
    const at = `watchers[${i}]`;
    if (names.has(w.name)) throw fail(file, "bad_manifest", `${at}.name: duplicate watcher name "${w.name}"`);
    names.add(w.name);
    if (!Object.hasOwn(watcherTypes, w.type)) {
      throw fail(
        file,
        "bad_manifest",
        `${at}.type: unknown watcher type "${w.type}" (known: ${Object.keys(watcherTypes).sort().join(", ")})`,
      );
    }
    (w.state_match ?? []).forEach((s, j) => {
      if (!states.has(s)) {
        throw fail(
          file,
          "bad_manifest",
          `${at}.state_match[${j}]: unknown state "${s}" (states: ${[...states].join(", ")})`,
        );
      }
    });
    knownTransition(w.success_transition, `${at}.success_transition`);
    knownTransition(w.fail_transition, `${at}.fail_transition`);
    try {
      if (w.interval !== undefined) {
        const ms = parseGoDuration(w.interval, `${at}.interval`);
        if (ms < MIN_INTERVAL_MS) {
          throw new MachineError(
            "bad_manifest",
            `${at}.interval: ${w.interval} is too small (at least 500ms)`,
          );
        }
      }
      if (w.announce_interval !== undefined) {
        const ms = parseGoDuration(w.announce_interval, `${at}.announce_interval`);
        if (ms !== 0 && ms < 1000) {
          throw new MachineError(
            "bad_manifest",
            `${at}.announce_interval: ${w.announce_interval} is too small (at least 1s)`,
          );
        }
      }
    } catch (err) {
      if (err instanceof MachineError) throw fail(file, err.code as "bad_manifest", err.message);
      throw err;
    }
  });

  if (constructWatchers) {
    const host = checkHost(m, ".");
    m.watchers.forEach((w, i) => {
      const at = `watchers[${i}]`;
      try {
        const built = watcherTypes[w.type]!(w, host, at);
        void Promise.resolve(built.close?.()).catch(() => undefined);
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        // factories name `watchers[i].properties.key`; add the path if one did not
        throw fail(file, "bad_watcher", why.startsWith(at) ? why : `${at}.properties: ${why}`);
      }
    });
  }
  return m;
}

/** Parses and checks a machine manifest (YAML, or JSON when `file` ends in .json). */
export function parseManifest(
  text: string,
  file: string,
  watcherTypes: Record<string, WatcherFactory> = WATCHER_TYPES,
): MachineManifest {
  let obj: unknown;
  try {
    obj = file.endsWith(".json") ? JSON.parse(text) : yaml().parse(text);
  } catch (err) {
    throw fail(file, "bad_manifest", `does not parse: ${(err as Error).message}`);
  }
  return validateManifest(obj, file, watcherTypes);
}

export function loadManifestFile(
  file: string,
  watcherTypes: Record<string, WatcherFactory> = WATCHER_TYPES,
): MachineManifest {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new MachineError("io", `${file}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  return parseManifest(text, file, watcherTypes);
}
