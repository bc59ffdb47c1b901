#!/bin/sh
# Ping of N protocol v1 nodes against raw NATS and protocol v2, same run; see bench/v1.ts.
exec "$(dirname "$0")/ts.sh" v1 "$@"
