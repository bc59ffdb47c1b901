#!/bin/sh
# The web console at 50 000 nodes: the fleet page in chromium (first render, JS heap) against a static table and the raw JSON, and the server under 50 polling sessions against bare fastify serving the same JSON, same run; see bench/ui.ts.
exec "$(dirname "$0")/ts.sh" ui "$@"
