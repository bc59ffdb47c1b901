#!/bin/sh
# Ping of N nodes over a 3-broker cluster against one broker, same run; see bench/cluster-ping.ts.
exec "$(dirname "$0")/ts.sh" cluster-ping "$@"
