#!/bin/sh
# Reliable submission throughput; see bench/submission.ts.
exec "$(dirname "$0")/ts.sh" submission "$@"
