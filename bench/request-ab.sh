#!/usr/bin/env bash
# A/B of the request path: two authzd builds on the same database, measured alternately in
# one run (so machine noise hits both alike). For each shape (connections x depth) and run,
# each build serves a fresh process; prints the median calls/s and server CPU per call of
# each, and the ratio B/A. Used for "no regression" checks of request-path changes.
#
#   bench/request-ab.sh AUTHZD_A AUTHZD_B DB [--runs 5] [--duration 4] [--shapes "1x1 4x32 16x32"]
#       [--transport epoll] [--b-flags "FLAGS"] [--b-metrics] [--raw FILE] [--b-db DB_B]
#
# --b-db serves B from another file (the same workspace written by B's own authzctl, when
# the two builds have different schema versions: store schema 2 of issue 13 reads no
# version-1 file, and older builds read no version-2 file).
# --b-flags passes extra authzd flags to B only. --b-metrics runs B with --metrics-listen on
# a Unix socket in the scratch directory and scrapes /metrics once in the middle of each B
# run (the A/B for the metrics overhead: the same binary as A and B). --raw appends every
# run's numbers (shape, A calls/s, A us/call, B calls/s, B us/call) to FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { echo "usage: bench/request-ab.sh AUTHZD_A AUTHZD_B DB [--runs N] [--duration S] [--shapes \"CxD ...\"] [--transport T] [--b-flags \"FLAGS\"] [--b-metrics] [--b-db DB_B]" >&2; exit 2; }
a=$1 b=$2 db=$3
shift 3
runs=5 duration=4 shapes="1x1 4x32 16x32" transport=epoll b_flags="" b_metrics=0 raw="" b_db=""
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --shapes) shapes=$2; shift 2 ;;
        --transport) transport=$2; shift 2 ;;
        --b-flags) b_flags=$2; shift 2 ;;
        --b-metrics) b_metrics=1; shift ;;
        --raw) raw=$2; shift 2 ;;
        --b-db) b_db=$2; shift 2 ;;
        *) echo "request-ab.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
loadgen=$(pwd)/bench/loadgen/authz-loadgen
make -s -C bench/loadgen >&2
dir=$(mktemp -d /tmp/request-ab.XXXXXX)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$dir"' EXIT
cp "$db" "$dir/a.db"
cp "${b_db:-$db}" "$dir/b.db"
b_metrics_flags=() b_scrape=""
if [ "$b_metrics" = 1 ]; then
    b_scrape="$dir/metrics.sock"
    b_metrics_flags=(--metrics-listen "$b_scrape")
fi

measure() {  # binary db connections depth [extra authzd flags...] -> "calls_per_s us_per_call"
    local binary=$1 database=$2 connections=$3 depth=$4
    shift 4
    cp "$database" "$dir/x.db"
    rm -f "$dir/x.db-wal" "$dir/x.db-shm"
    "$binary" --db "$dir/x.db" --socket "$dir/x.sock" --transport "$transport" --log-level warning "$@" 2> "$dir/authzd.log" &
    pid=$!
    for _ in $(seq 100); do [ -S "$dir/x.sock" ] && break; sleep 0.05; done
    local scraper=""
    if [ -n "$scrape" ]; then
        # One scrape in the middle of the run: it must answer, with the requests counted.
        ( sleep "$(python3 -c "print($duration / 2)")"
          curl -sf --unix-socket "$scrape" http://authzd/metrics > "$dir/scrape.txt" ) &
        scraper=$!
    fi
    "$loadgen" --socket "$dir/x.sock" --db "$dir/x.db" --connections "$connections" --depth "$depth" --duration "$duration" \
        --server-pid "$pid" --json "$dir/r.json" --quiet > /dev/null
    if [ -n "$scraper" ]; then
        wait "$scraper" || { echo "request-ab.sh: the scrape of B's /metrics failed" >&2; exit 1; }
        grep -q '^authzd_requests_total{' "$dir/scrape.txt" || { echo "request-ab.sh: B's /metrics has no request counts" >&2; exit 1; }
    fi
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["throughput"]["calls_per_s"], r["cpu"]["server_us_per_call"])' "$dir/r.json"
}

# The last column: the median over runs of B/A CPU per call of the runs measured back to back
# (A and B alternate), steadier than the ratio of the medians when the machine's load drifts.
printf "%-7s %14s %14s %8s %12s %12s %8s %8s\n" shape "A calls/s" "B calls/s" "B/A" "A us/call" "B us/call" "B/A" "paired"
for shape in $shapes; do
    c=${shape%x*} d=${shape#*x}
    : > "$dir/a" ; : > "$dir/b"
    for _ in $(seq "$runs"); do
        scrape="" measure "$a" "$dir/a.db" "$c" "$d" >> "$dir/a"
        # shellcheck disable=SC2086  # b_flags is a list of flags
        scrape="$b_scrape" measure "$b" "$dir/b.db" "$c" "$d" $b_flags "${b_metrics_flags[@]}" >> "$dir/b"
    done
    [ -z "$raw" ] || paste -d " " "$dir/a" "$dir/b" | sed "s/^/$shape /" >> "$raw"
    python3 - "$shape" "$dir/a" "$dir/b" <<'PY'
import statistics, sys
shape, fa, fb = sys.argv[1:]
def med(path, i): return statistics.median(float(l.split()[i]) for l in open(path) if l.strip())
ta, tb, ca, cb = med(fa, 0), med(fb, 0), med(fa, 1), med(fb, 1)
rows = lambda path: [float(l.split()[1]) for l in open(path) if l.strip()]
paired = statistics.median(b / a for a, b in zip(rows(fa), rows(fb)))
print(f"{shape:<7} {ta:14.0f} {tb:14.0f} {tb/ta:8.3f} {ca:12.3f} {cb:12.3f} {cb/ca:8.3f} {paired:8.3f}")
PY
done
