import { createHash } from "node:crypto";
import { lstatSync, readFileSync, statSync } from "node:fs";
import { CHORUS_VERSION } from "../../core/util/index.js";
import { DataError, type DataDdl, type DataOutput, type DataPlugin } from "./types.js";

function ddl(
  name: string,
  description: string,
  query: string | undefined,
  output: Record<string, DataOutput>,
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
    },
    ...(query === undefined
      ? {}
      : {
          input: {
            query: { prompt: query, description: query, type: "string", optional: false },
          },
        }),
    output,
  };
}

const out = (type: string, description: string): DataOutput => ({
  description,
  display_as: description,
  type,
});

function fileType(s: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): string {
  if (s.isSymbolicLink()) return "symlink";
  if (s.isDirectory()) return "directory";
  if (s.isFile()) return "file";
  return "unknown";
}

export const fstatPlugin: DataPlugin = {
  name: "fstat",
  ddl: ddl("fstat", "Retrieve file stat data for a given file", "File Name", {
    name: out("string", "File Name"),
    output: out("string", "Output"),
    present: out("boolean", "Present"),
    size: out("integer", "Size"),
    mode: out("string", "Mode"),
    type: out("string", "Type"),
    uid: out("integer", "Owner"),
    gid: out("integer", "Group"),
    mtime: out("string", "Modification time"),
    mtime_seconds: out("integer", "Modification time (seconds)"),
    md5: out("string", "MD5"),
  }),
  run(query: string): Record<string, unknown> {
    if (query === "") throw new DataError("fstat requires a file name");
    const base = { name: query, output: "not present", present: false, size: 0, type: "unknown" };
    let l;
    try {
      l = lstatSync(query);
    } catch {
      return base;
    }
    const s = l.isSymbolicLink()
      ? (() => {
          try {
            return statSync(query);
          } catch {
            return l;
          }
        })()
      : l;
    let md5 = "";
    if (s.isFile()) {
      try {
        md5 = createHash("md5").update(readFileSync(query)).digest("hex");
      } catch {
        md5 = "";
      }
    }
    return {
      name: query,
      output: "present",
      present: true,
      size: s.size,
      mode: (s.mode & 0o7777).toString(8).padStart(4, "0"),
      type: fileType(l),
      uid: s.uid,
      gid: s.gid,
      mtime: s.mtime.toISOString(),
      mtime_seconds: Math.floor(s.mtimeMs / 1000),
      md5,
    };
  },
};

export const sysctlPlugin: DataPlugin = {
  name: "sysctl",
  ddl: ddl("sysctl", "Retrieve values for a given sysctl", "Sysctl key", {
    value: out("string", "Value"),
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

/** Runtime facts the node exposes to the `choria` data plugin. */
export interface ChoriaRuntime {
  configFile(): string;
  connectedServer(): string;
  agents(): readonly string[];
  classes(): readonly string[];
}

export function choriaPlugin(rt: ChoriaRuntime): DataPlugin {
  return {
    name: "choria",
    ddl: ddl("choria", "Runtime information about the Chorus server", undefined, {
      version: out("string", "Version"),
      config_file: out("string", "Config file"),
      connected_broker: out("string", "Connected broker"),
      agents: out("array", "Agents"),
      classes: out("array", "Classes"),
    }),
    run(): Record<string, unknown> {
      return {
        version: CHORUS_VERSION,
        config_file: rt.configFile(),
        connected_broker: rt.connectedServer(),
        agents: [...rt.agents()],
        classes: [...rt.classes()],
      };
    },
  };
}
