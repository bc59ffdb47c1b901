#!/bin/sh
# Added latency through a federation broker vs a direct request; see bench/federation.ts.
exec "$(dirname "$0")/ts.sh" federation "$@"
