import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";

// CLI tests run the built `chorus`; `npm test` builds first, a bare `vitest` run
// builds here when dist/ is missing.
export default function setup(): void {
  if (!existsSync(new URL("../dist/apps/cli/main.js", import.meta.url))) {
    execFileSync("npx", ["tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" });
  }
}
