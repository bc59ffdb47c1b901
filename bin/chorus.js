#!/usr/bin/env node
// launch.js loads only the command being run (see src/cli/launch.ts).
import("../dist/apps/cli/launch.js")
  .then((m) => m.main(process.argv))
  .catch((err) => {
    console.error(`chorus: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
