#!/bin/sh
# Compiles the repo to a scratch dir and runs bench/<name>.ts there (no tsx here).
# Usage: bench/ts.sh NAME [args...]
set -e
name=$1
shift
cd "$(dirname "$0")/.."
out=$(mktemp -d /tmp/chorus-bench-build.XXXXXX)
npx tsc -p tsconfig.json --outDir "$out" --noEmit false --declaration false --sourceMap false >/dev/null || true
ln -sfn "$PWD/node_modules" "$out/node_modules"
ln -sfn "$PWD/schemas" "$out/schemas"
ln -sfn "$PWD/package.json" "$out/package.json"
node $BENCH_NODE_FLAGS "$out/bench/$name.js" "$@"
rm -rf "$out"
