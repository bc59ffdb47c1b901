#!/bin/sh
# Provisioning throughput (provisioner + emulator in provisioning mode); see bench/provisioning.ts.
exec "$(dirname "$0")/ts.sh" provisioning "$@"
