#!/bin/sh
# Copy throughput of the replicator (ordered, parallel) against a plain JetStream copier, same run; see bench/replicator.ts.
exec "$(dirname "$0")/ts.sh" replicator "$@"
