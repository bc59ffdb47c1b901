#!/bin/sh
# AAA signer and login throughput; see bench/aaa.ts.
exec "$(dirname "$0")/ts.sh" aaa "$@"
