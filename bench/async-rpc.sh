#!/bin/sh
# A 10 000-node asynchronous request through the receivers; see bench/async-rpc.ts.
exec "$(dirname "$0")/ts.sh" async-rpc "$@"
