#!/usr/bin/env bash
# A/B probe of request latency while the snapshot reloads: starts AUTHZD on a scratch copy
# of DB, runs the open-loop load (20,000 calls/s, 4 connections) twice idle, then twice
# while 14 commits land one second apart, and prints the p99s and authzd's load times.
# Used to compare builds (e.g. the reloader's nice value) for bench/RESULTS.md's analysis.
#
#   bench/reload-ab.sh AUTHZD DB LABEL      # DB: e.g. bench/out/run/large/large.db
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 3 ] || { echo "usage: bench/reload-ab.sh AUTHZD DB LABEL" >&2; exit 2; }
authzd=$1 db=$2 label=$3
loadgen=$(pwd)/bench/loadgen/authz-loadgen
make -s -C bench/loadgen >&2
dir=$(mktemp -d /tmp/reload-ab.XXXXXX)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$dir"' EXIT
cp "$db" "$dir/x.db"
"$authzd" --db "$dir/x.db" --socket "$dir/x.sock" --log-level info 2> "$dir/authzd.log" &
pid=$!
for _ in $(seq 100); do [ -S "$dir/x.sock" ] && break; sleep 0.1; done
sleep 1
load() {
    for _ in 1 2; do
        "$loadgen" --socket "$dir/x.sock" --db "$dir/x.db" --rate 20000 --connections 4 --depth 64 \
            --duration 5 --quiet | grep -oE "p99 [0-9.,]+" | tr '\n' ' '
    done
}
echo "$label idle:      $(load)"
python3 - "$dir/x.db" <<'PY' &
import sqlite3, sys, time
for _ in range(14):
    db = sqlite3.connect(sys.argv[1])
    db.execute("UPDATE groups SET name = name || '.' WHERE pk = 1")
    db.commit()
    db.close()
    time.sleep(1)
PY
committer=$!
echo "$label reloading: $(load)"
wait "$committer"
sleep 2
echo "$label load-ms: $(grep -oE 'load-ms=[0-9]+' "$dir/authzd.log" | cut -d= -f2 | tr '\n' ' ')"
