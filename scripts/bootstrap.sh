#!/usr/bin/env bash
# Installs what Chorus needs on a fresh machine: npm packages, nats-server and PostgreSQL.
# Idempotent: does nothing when everything is already present.
set -euo pipefail
cd "$(dirname "$0")/.."

find_nats() {
  if [ -n "${CHORUS_NATS_SERVER:-}" ] && [ -x "${CHORUS_NATS_SERVER}" ]; then echo "$CHORUS_NATS_SERVER"; return 0; fi
  if command -v nats-server >/dev/null 2>&1; then command -v nats-server; return 0; fi
  if [ -x /usr/sbin/nats-server ]; then echo /usr/sbin/nats-server; return 0; fi
  return 1
}

if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 12) ? 0 : 1)'; then
  echo "bootstrap: Chorus needs Node.js 20.12 or later; this is $(node --version). Install a newer Node 20 LTS." >&2
  exit 1
fi

if ! find_nats >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing nats-server from Debian (apt-get install -y nats-server)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    # Debian starts a system broker on 4222; Chorus runs its own, so stop it if it came up.
    pkill -f '^/usr/sbin/nats-server -c /etc/nats-server.conf' 2>/dev/null || true
  else
    echo "bootstrap: nats-server is missing. Install the Debian package 'nats-server'" >&2
    echo "           (sudo apt-get install nats-server) or set CHORUS_NATS_SERVER to its path." >&2
    exit 1
  fi
fi

# PostgreSQL: the receiver's shared store; its tests start a private server from these
# binaries (test/helpers/postgres.ts), so only the package is needed, not a running cluster.
find_initdb() {
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ]; then echo "$d/initdb"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1; then command -v initdb; return 0; fi
  return 1
}

if ! find_initdb >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing PostgreSQL from Debian (apt-get install -y postgresql)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    # Debian creates and starts a cluster on 5432; Chorus's tests run their own, so stop it.
    if command -v pg_lsclusters >/dev/null 2>&1; then
      pg_lsclusters --no-header 2>/dev/null | while read -r ver name _; do
        pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
      done
    fi
  else
    echo "bootstrap: PostgreSQL is missing (the receiver tests start a private server)." >&2
    echo "           Install the Debian package 'postgresql' (sudo apt-get install postgresql)." >&2
    exit 1
  fi
fi

# Chromium: the web console's browser tests drive Debian's chromium through playwright-core
# (never `npx playwright install`: it downloads a browser, and hosts may be offline).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing chromium from Debian (apt-get install -y chromium)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "bootstrap: chromium is missing (the web console's browser tests need it)." >&2
    echo "           Install the Debian package 'chromium' (sudo apt-get install chromium)." >&2
    exit 1
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "bootstrap: installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "bootstrap: building"
npm run --silent build
