#!/bin/sh
# Compiles the repo to a scratch dir and runs bench/submission.ts there (no tsx here).
set -e
cd "$(dirname "$0")/.."
out=$(mktemp -d /tmp/chorus-bench-build.XXXXXX)
npx tsc -p tsconfig.json --outDir "$out" --noEmit false --declaration false --sourceMap false >/dev/null || true
ln -sfn "$PWD/node_modules" "$out/node_modules"
ln -sfn "$PWD/schemas" "$out/schemas"
ln -sfn "$PWD/package.json" "$out/package.json"
node $BENCH_NODE_FLAGS "$out/bench/submission.js" "$@"
rm -rf "$out"
