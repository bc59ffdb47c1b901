#!/bin/sh
# Receiver ingest rate; see bench/receiver-ingest.ts. The receivers are the built CLI.
set -e
cd "$(dirname "$0")/.."
npm run --silent build
exec bench/ts.sh receiver-ingest "$@"
