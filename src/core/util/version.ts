import { readFileSync } from "node:fs";

function readVersion(): string {
  // src/core/util and dist/core/util both sit three levels below the package root.
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
      version?: unknown;
    };
    return typeof pkg.version === "string" ? pkg.version : "0.0.0";
  } catch {
    return "0.0.0";
  }
}

/** The Chorus version (package.json), reported by rpcutil, choria_util and `chorus --version`. */
export const CHORUS_VERSION: string = readVersion();
