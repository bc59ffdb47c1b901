import { readFileSync } from "node:fs";

function readVersion(): string {
  // src/server and dist/server both sit two levels below the package root.
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version?: unknown;
    };
    return typeof pkg.version === "string" ? pkg.version : "0.0.0";
  } catch {
    return "0.0.0";
  }
}

/** The Chorus version reported by rpcutil and choria_util. */
export const CHORUS_VERSION: string = readVersion();
