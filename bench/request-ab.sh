#!/usr/bin/env bash
# A/B of the request path: two authzd builds on the same database, measured alternately in
# one run (so machine noise hits both alike). For each shape (connections x depth) and run,
# each build serves a fresh process; prints the median calls/s and server CPU per call of
# each, and the ratio B/A. Used for "no regression" checks of request-path changes.
#
#   bench/request-ab.sh AUTHZD_A AUTHZD_B DB [--runs 5] [--duration 4] [--shapes "1x1 4x32 16x32"]
#       [--transport epoll]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { echo "usage: bench/request-ab.sh AUTHZD_A AUTHZD_B DB [--runs N] [--duration S] [--shapes \"CxD ...\"] [--transport T]" >&2; exit 2; }
a=$1 b=$2 db=$3
shift 3
runs=5 duration=4 shapes="1x1 4x32 16x32" transport=epoll
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --shapes) shapes=$2; shift 2 ;;
        --transport) transport=$2; shift 2 ;;
        *) echo "request-ab.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
loadgen=$(pwd)/bench/loadgen/authz-loadgen
make -s -C bench/loadgen >&2
dir=$(mktemp -d /tmp/request-ab.XXXXXX)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$dir"' EXIT
cp "$db" "$dir/x.db"

measure() {  # binary connections depth -> "calls_per_s us_per_call"
    "$1" --db "$dir/x.db" --socket "$dir/x.sock" --transport "$transport" --log-level warning 2> "$dir/authzd.log" &
    pid=$!
    for _ in $(seq 100); do [ -S "$dir/x.sock" ] && break; sleep 0.05; done
    "$loadgen" --socket "$dir/x.sock" --db "$dir/x.db" --connections "$2" --depth "$3" --duration "$duration" \
        --server-pid "$pid" --json "$dir/r.json" --quiet > /dev/null
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["throughput"]["calls_per_s"], r["cpu"]["server_us_per_call"])' "$dir/r.json"
}

printf "%-7s %14s %14s %8s %12s %12s %8s\n" shape "A calls/s" "B calls/s" "B/A" "A us/call" "B us/call" "B/A"
for shape in $shapes; do
    c=${shape%x*} d=${shape#*x}
    : > "$dir/a" ; : > "$dir/b"
    for _ in $(seq "$runs"); do
        measure "$a" "$c" "$d" >> "$dir/a"
        measure "$b" "$c" "$d" >> "$dir/b"
    done
    python3 - "$shape" "$dir/a" "$dir/b" <<'PY'
import statistics, sys
shape, fa, fb = sys.argv[1:]
def med(path, i): return statistics.median(float(l.split()[i]) for l in open(path) if l.strip())
ta, tb, ca, cb = med(fa, 0), med(fb, 0), med(fa, 1), med(fb, 1)
print(f"{shape:<7} {ta:14.0f} {tb:14.0f} {tb/ta:8.3f} {ca:12.3f} {cb:12.3f} {cb/ca:8.3f}")
PY
done
