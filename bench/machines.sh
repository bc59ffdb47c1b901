#!/bin/sh
# CPU and memory per watcher: 1 000 emulated nodes with 5 watchers each against an idle emulator, same run; see bench/machines.ts.
exec "$(dirname "$0")/ts.sh" machines "$@"
