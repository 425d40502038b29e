#!/usr/bin/env bash
# Delta reloads (issue 13) against full reloads, in one run, on one database (the large
# generated workspace): for each --reload-mode,
#   1. change-to-visible latency of one-row commits (a random project grant's level is
#      toggled; bench/reload-latency.py commits, then asks until an answer names the new
#      version) and the reloader's time per load, wall and thread CPU (from authzd's log);
#   2. request p99 idle, then while 10 commits/s arrive (bench/loadgen, 20,000 calls/s,
#      4 connections, 5 s runs), and authzd's peak RSS over a minute of those commits
#      against its steady RSS before them.
# Each mode runs on a fresh scratch copy of DB.
#
#   bench/delta-reload.sh AUTHZD DB [COMMITS]     # DB: a schema-2 store, e.g. authzctl generate
#                                                 # --users 100000 --groups 10000 --projects 50000
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bench/delta-reload.sh AUTHZD DB [COMMITS]" >&2; exit 2; }
authzd=$1 db=$2 commits=${3:-60}
loadgen=$(pwd)/bench/loadgen/authz-loadgen
make -s -C bench/loadgen >&2
dir=$(mktemp -d /tmp/delta-reload.XXXXXX)
trap 'kill "${pid:-}" "${committer:-}" 2>/dev/null || true; rm -rf "$dir"' EXIT

fresh_copy() { rm -f "$dir"/x.db*; cp "$db" "$dir/x.db"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

echo "machine: $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in full delta; do
    fresh_copy
    python3 bench/reload-latency.py --authzd "$authzd" --db "$dir/x.db" --mode watch --commits "$commits" \
        --change grant --reload-mode "$mode" --probe-interval-ms 1 --label "$mode" --json "$dir/latency-$mode.json"
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
done

for mode in full delta; do
    fresh_copy
    "$authzd" --db "$dir/x.db" --socket "$dir/x.sock" --reload-mode "$mode" --poll-interval 0 --log-level info \
        2> "$dir/authzd-$mode.log" &
    pid=$!
    for _ in $(seq 300); do [ -S "$dir/x.sock" ] && break; sleep 0.1; done
    sleep 2
    run_load() {
        for _ in 1 2; do
            "$loadgen" --socket "$dir/x.sock" --db "$dir/x.db" --rate 20000 --connections 4 --depth 64 \
                --duration 5 --quiet | grep -oE "p99 [0-9.]+" | sed "s/$/ us/" | tr '\n' ' '
        done
    }
    echo "$mode idle:           $(run_load)"
    steady=$(rss_kb "$pid")
    python3 - "$dir/x.db" 60 <<'PY' &
import random, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA busy_timeout = 5000")
top = db.execute("SELECT max(pk) FROM project_grants").fetchone()[0]
end = time.monotonic() + float(sys.argv[2])
next_at = time.monotonic()
while time.monotonic() < end:
    db.execute("UPDATE project_grants SET level = CASE WHEN level = 'can_view' THEN 'can_edit' ELSE 'can_view' END "
               "WHERE pk = (SELECT min(pk) FROM project_grants WHERE pk >= ?)", (random.randint(1, top),))
    next_at += 0.1  # 10 commits/s
    time.sleep(max(0.0, next_at - time.monotonic()))
PY
    committer=$!
    peak=$steady
    ( while kill -0 "$committer" 2>/dev/null; do rss_kb "$pid"; sleep 0.1; done ) > "$dir/rss-$mode.txt" &
    sampler=$!
    echo "$mode 10 commits/s:   $(run_load)"
    wait "$committer"
    wait "$sampler" || true
    peak=$(sort -n "$dir/rss-$mode.txt" | tail -1)
    loads=$(grep -c "reloaded the workspace snapshot" "$dir/authzd-$mode.log" || true)
    methods=$(grep -oE "method=[a-z]+" "$dir/authzd-$mode.log" | sort | uniq -c | tr -s ' ' | tr '\n' ' ')
    cpu=$(grep -oE "load-cpu-us=[0-9]+" "$dir/authzd-$mode.log" | cut -d= -f2 | sort -n \
        | awk '{a[NR]=$1} END {if (NR) printf "p50 %.2f ms, p99 %.2f ms, max %.2f ms", a[int((NR+1)/2)]/1000, a[int(NR*0.99+0.999)]/1000, a[NR]/1000}')
    echo "$mode RSS: steady $((steady / 1024)) MB, peak over 60 s of commits $((peak / 1024)) MB (x$(awk -v p="$peak" -v s="$steady" 'BEGIN {printf "%.2f", p / s}'))"
    echo "$mode reloads: $loads ($methods), reload CPU $cpu"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
done
