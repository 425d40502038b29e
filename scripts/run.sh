#!/usr/bin/env bash
# One command to run the sidecar: installs missing system packages, builds release
# binaries, writes the demo workspace into ./authz.db if there is no database yet, and runs
# authzd on ./authz.sock in the foreground (Ctrl-C stops it gracefully).
#
#   scripts/run.sh                  # demo database, socket ./authz.sock
#   AUTHZ_DB=/var/lib/authz/ws.db AUTHZ_SOCKET=/run/authz.sock scripts/run.sh [authzd flags…]
set -euo pipefail
cd "$(dirname "$0")/.."

db=${AUTHZ_DB:-./authz.db}
socket=${AUTHZ_SOCKET:-./authz.sock}

scripts/install-deps.sh
echo "building release binaries (the first build takes a few minutes)…" >&2
swift build -c release --product authzctl >&2
swift build -c release --product authzd >&2
bin=$(swift build -c release --show-bin-path)

if [ ! -e "$db" ]; then
    echo "no database at $db: writing the demo workspace" >&2
    "$bin/authzctl" demo --db "$db" >/dev/null
fi
echo "authzd on $socket (database $db); ask it with: $bin/authzctl check --socket $socket" >&2
exec "$bin/authzd" --db "$db" --socket "$socket" "$@"
