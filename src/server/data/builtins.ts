import { createHash } from "node:crypto";
import { existsSync, lstatSync, readFileSync, statSync, type Stats } from "node:fs";
import { cpus } from "node:os";
import { CHORUS_VERSION } from "../../core/util/index.js";
import { DataError, type DataDdl, type DataNode, type DataOutput, type DataPlugin } from "./types.js";

function ddl(
  name: string,
  description: string,
  query: string | undefined,
  output: Record<string, DataOutput>,
  input: { description?: string; validation?: string; maxlength?: number } = {},
): DataDdl {
  return {
    metadata: {
      name,
      description,
      author: "Chorus",
      license: "Apache-2.0",
      version: CHORUS_VERSION,
      url: "https://choria.io",
      timeout: 1,
      provider: "chorus",
    },
    ...(query !== undefined && {
      query: {
        prompt: query,
        description: input.description ?? query,
        type: "string",
        optional: false,
        ...(input.validation !== undefined && { validation: input.validation }),
        ...(input.maxlength !== undefined && { maxlength: input.maxlength }),
      },
    }),
    output,
  };
}

const out = (type: string, display_as: string, description = display_as): DataOutput => ({
  description,
  display_as,
  type,
});

function fileType(s: Stats): string {
  if (s.isSymbolicLink()) return "symlink";
  if (s.isDirectory()) return "directory";
  if (s.isFile()) return "file";
  if (s.isSocket()) return "socket";
  if (s.isCharacterDevice()) return "chardev";
  if (s.isBlockDevice()) return "blockdev";
  return "unknown";
}

/** "%F %T" in local time, as the Ruby fstat plugin formats times. */
function rubyTime(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

const TIMES = ["mtime", "ctime", "atime"] as const;

/**
 * The Ruby MCollective fstat plugin's outputs (go-choria has no fstat of its own):
 * `present` is 1 or 0, `mode` the full st_mode in octal, times as "%F %T" plus
 * `_seconds` and `_age`; a symlink is described by lstat, and a dangling one is absent.
 */
export const fstatPlugin: DataPlugin = {
  name: "fstat",
  ddl: ddl("fstat", "Retrieve file stat data for a given file", "File Name", {
    name: out("string", "Name", "File name"),
    output: out("string", "Status", "Human readable information about the file"),
    present: out("integer", "Present", "Indicates if the file exist using 0 or 1"),
    size: out("integer", "Size", "File size"),
    mode: out("string", "Mode", "File mode"),
    mtime: out("string", "Modification time", "File modification time"),
    ctime: out("string", "Change time", "File change time"),
    atime: out("string", "Access time", "File access time"),
    mtime_seconds: out("integer", "Modification time", "File modification time in seconds"),
    ctime_seconds: out("integer", "Change time", "File change time in seconds"),
    atime_seconds: out("integer", "Access time", "File access time in seconds"),
    mtime_age: out("integer", "Modification age", "File modification age in seconds"),
    ctime_age: out("integer", "Change age", "File change age in seconds"),
    atime_age: out("integer", "Access age", "File access age in seconds"),
    md5: out("string", "MD5", "File MD5 digest"),
    type: out("string", "Type", "File type"),
    uid: out("integer", "Owner", "File owner"),
    gid: out("integer", "Group", "File group"),
  }),
  run(query: string): Record<string, unknown> {
    if (query === "") throw new DataError("fstat requires a file name");
    const r: Record<string, unknown> = {
      name: query,
      output: "not present",
      type: "unknown",
      mode: "0000",
      present: 0,
      size: 0,
      md5: "",
      uid: 0,
      gid: 0,
    };
    for (const t of TIMES) Object.assign(r, { [t]: "", [`${t}_seconds`]: 0, [`${t}_age`]: 0 });
    let s: Stats;
    try {
      if (!existsSync(query)) return r;
      const l = lstatSync(query);
      s = l.isSymbolicLink() ? l : statSync(query);
    } catch {
      return r;
    }
    const now = Math.floor(Date.now() / 1000);
    r["output"] = "present";
    r["present"] = 1;
    r["size"] = s.size;
    r["uid"] = s.uid;
    r["gid"] = s.gid;
    for (const t of TIMES) {
      const d = s[t];
      const secs = Math.floor(d.getTime() / 1000);
      Object.assign(r, { [t]: rubyTime(d), [`${t}_seconds`]: secs, [`${t}_age`]: now - secs });
    }
    r["mode"] = s.mode.toString(8);
    r["type"] = fileType(s);
    if (s.isFile()) {
      try {
        r["md5"] = createHash("md5").update(readFileSync(query)).digest("hex");
      } catch {
        // unreadable: present with no digest, as a stat without read permission allows
      }
    }
    return r;
  },
};

export const sysctlPlugin: DataPlugin = {
  name: "sysctl",
  ddl: ddl("sysctl", "Retrieve values for a given sysctl", "Sysctl key", {
    value: out("string", "Value", "Sysctl value"),
  }),
  run(query: string): Record<string, unknown> {
    if (!/^[A-Za-z0-9_.-]+$/.test(query) || query.includes("..")) {
      throw new DataError(`invalid sysctl key ${JSON.stringify(query)}`);
    }
    try {
      const v = readFileSync(`/proc/sys/${query.replaceAll(".", "/")}`, "utf8").trim();
      const n = Number(v);
      return { value: v !== "" && Number.isFinite(n) && /^-?\d+$/.test(v) ? n : v };
    } catch {
      throw new DataError(`could not read sysctl ${query}`);
    }
  },
};

/** go-choria's choriadata outputs, less the Go runtime ones (go_version, goroutines, built, commit). */
export const choriaPlugin: DataPlugin = {
  name: "choria",
  ddl: ddl("choria", "Data about a the running Choria instance", undefined, {
    agents: out("Array", "Agents", "Known agents hosted by this server"),
    agents_count: out("integer", "Agents", "Number of active agents on the node"),
    classes: out("Array", "Class Names", "List of classes this machine is tagged with"),
    classes_count: out("integer", "Classes", "Number of classes this node is tagged with"),
    machines: out("Array", "Machines Names", "The names of running machines"),
    machines_count: out("integer", "Machines", "The number of running Autonomous Agents"),
    configfile: out("string", "Configuration File", "The path to the running configuration"),
    connected_broker: out("string", "Connected Broker", "The Choria Broker this server is connected to"),
    provisioning: out("boolean", "Provisioning", "If the node is currently in Provisioning mode"),
    pid: out("integer", "PID", "The process ID of the running process"),
    cpus: out("integer", "CPUs", "The number of logical CPUs"),
    uptime: out("integer", "Uptime", "The time, in seconds, that the server has been up"),
    total: out("integer", "Total Messages", "The number of messages this server processed"),
    validated: out("integer", "Valid Messages", "Messages that passed validation"),
    unvalidated: out("integer", "Invalid Messages", "Messages that did not pass validation"),
    passed: out("integer", "Passed Messages", "Messages that matched filters"),
    filtered: out("integer", "Filtered Messages", "Messages that did not match filters"),
    replies: out("integer", "Reply Messages", "The number of reply messages this server sent"),
    ttlexpired: out("integer", "Expired Messages", "Messages rejected due to TTL expiration"),
    events: out("integer", "Events", "Lifecycle events published"),
    version: out("string", "Version", "The running version of the server"),
    license: out("string", "License", "The license this server is released under"),
  }),
  run(_query: string, node: DataNode): Record<string, unknown> {
    const s = node.stats;
    const agents = [...node.agents];
    const classes = [...node.classes];
    const machines = node.machineStates?.() ?? [];
    return {
      agents,
      agents_count: agents.length,
      classes,
      classes_count: classes.length,
      machines: machines.map((m) => m.name),
      machines_count: machines.length,
      configfile: node.host.configFile ?? "",
      connected_broker: node.host.connectedServer(),
      provisioning: false,
      pid: process.pid,
      cpus: cpus().length,
      uptime: Math.floor((Date.now() - node.host.startTime) / 1000),
      total: s.total,
      validated: s.validated,
      unvalidated: s.unvalidated,
      passed: s.passed,
      filtered: s.filtered,
      replies: s.replies,
      ttlexpired: s.ttlexpired,
      events: s.events,
      version: node.host.version,
      license: "Apache-2.0",
    };
  },
};

const NAGIOS_STATES = ["OK", "WARNING", "CRITICAL", "UNKNOWN"];

/** A nagios exit code (or a name already) as go-choria's nagioswatcher.StateName spells it. */
function nagiosStateName(v: unknown): string {
  if (typeof v === "string") return v;
  return typeof v === "number" ? (NAGIOS_STATES[v] ?? "UNKNOWN") : "UNKNOWN";
}

/**
 * go-choria's scout data plugin: `scout("check").state` and friends for the Scout check
 * of that name. An unknown check gives no outputs, so a filter on it does not match.
 */
export const scoutPlugin: DataPlugin = {
  name: "scout",
  ddl: ddl(
    "scout",
    "Data about a specific Scout check",
    "Check",
    {
      name: out("string", "Name", "The name of the Scout check"),
      version: out("string", "Version", "The version of the Scout check state machine"),
      state: out("string", "State", "The state the Scout check is in"),
      path: out("string", "Path", "The path on disk where the Scout check is stored"),
      id: out("string", "ID", "The unique ID of the running state machine"),
      start_time: out("integer", "Start Time", "The time the check started in UTC"),
      uptime: out("integer", "Uptime", "The time the check has been running in seconds"),
      history: out("Hash", "History", "Recent past states of the check"),
    },
    {
      description: "The Scout check to retrieve data for",
      validation: "^[a-zA-Z][a-zA-Z0-9_-]+$",
      maxlength: 50,
    },
  ),
  run(query: string, node: DataNode): Record<string, unknown> {
    const m = (node.machineStates?.() ?? []).find((s) => s.scout && s.name === query);
    if (!m) return {};
    const hist = m.current_state?.["history"];
    return {
      name: m.name,
      version: m.version,
      state: m.state,
      path: m.path,
      id: m.id,
      start_time: m.start_time,
      uptime: Math.floor(Date.now() / 1000) - m.start_time,
      history: Array.isArray(hist)
        ? hist.map((h: unknown) =>
            nagiosStateName(typeof h === "object" && h !== null ? (h as { status?: unknown }).status : h),
          )
        : [],
    };
  },
};

/** go-choria's machine_state data plugin: one machine by name, path or instance id. */
export const machineStatePlugin: DataPlugin = {
  name: "machine_state",
  ddl: ddl(
    "machine_state",
    "Data about a Choria Autonomous Agent",
    "Machine",
    {
      name: out("string", "Name", "The machine name"),
      version: out("string", "Version", "The machine version"),
      state: out("string", "Current State", "The state the machine is in currently"),
      path: out("string", "Path", "The path the machine is stored in on disk"),
      id: out("string", "ID", "The unique instance id"),
      start_time: out("integer", "Start Time", "The time this machine started, seconds since 1970"),
      available_transitions: out(
        "Array",
        "Available Transitions",
        "The names of transition events that's valid for this machine",
      ),
      scout: out("boolean", "Scout", "Indicates if this machine is a Scout check"),
      current_state: out("Hash", "Scout State", "For Scout checks, this is the extended Scout state"),
    },
    { description: "The machine name, path or ID to match", validation: ".+", maxlength: 256 },
  ),
  run(query: string, node: DataNode): Record<string, unknown> {
    const m = (node.machineStates?.() ?? []).find(
      (s) => s.id === query || s.path === query || s.name === query,
    );
    if (!m) throw new DataError(`no machine matching ${JSON.stringify(query)} found`);
    const { current_state, ...rest } = m;
    return { ...rest, ...(m.scout && { current_state: current_state ?? {} }) };
  },
};

export const BUILTIN_DATA_PLUGINS: readonly DataPlugin[] = [
  choriaPlugin,
  fstatPlugin,
  machineStatePlugin,
  scoutPlugin,
  sysctlPlugin,
];
