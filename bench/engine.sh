#!/usr/bin/env bash
# Engine and store numbers for the large generated workspace (release builds, medians):
# import, snapshot load, resident memory of the loaded snapshot, ns per decision, and
# `authzctl check` throughput. Writes raw JSON under bench/out/ (not committed) and prints
# a summary; bench/RESULTS.md quotes it.
#
#   bench/engine.sh [--users 100000 --groups 10000 --projects 50000 --grants-per-project 20 --runs 5]
set -euo pipefail
cd "$(dirname "$0")/.."

users=100000 groups=10000 projects=50000 grants=20 runs=5
while [ $# -gt 0 ]; do
    case "$1" in
        --users) users=$2; shift 2 ;;
        --groups) groups=$2; shift 2 ;;
        --projects) projects=$2; shift 2 ;;
        --grants-per-project) grants=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

out=bench/out/engine
mkdir -p "$out"
scripts/install-deps.sh
echo "== building release binaries" >&2
swift build -c release --product authzctl >&2
(cd bench/engine && swift build -c release >&2)
ctl=$(swift build -c release --show-bin-path)/authzctl
eb=bench/engine/.build/release/engine-bench

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1024/1024)}' /proc/meminfo) GiB, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

echo "== generate, decode, import, load, decisions (engine-bench full)" >&2
"$eb" full --dir "$out" --users "$users" --groups "$groups" --projects "$projects" \
    --grants-per-project "$grants" --runs "$runs" --import-runs 1 > "$out/full.json"

echo "== authzctl import of the generated document (wall time, $runs runs)" >&2
for i in $(seq "$runs"); do
    rm -f "$out/cli.db" "$out/cli.db-wal" "$out/cli.db-shm"
    /usr/bin/time -f "%e" -o "$out/import-$i.time" "$ctl" import --db "$out/cli.db" "$out/large.json" >/dev/null 2>&1
done
cat "$out"/import-*.time | sort -n | awk '{a[NR]=$1} END {print "authzctl import median: " a[int((NR+1)/2)] " s"}' >&2

echo "== resident memory of one loaded snapshot" >&2
"$eb" rss --db "$out/large.db" | tee "$out/rss.json" >&2

echo "== authzctl check throughput: 1,000,000 queries (60% effective_permission, 30% can_use, 10% seat_type)" >&2
python3 - "$users" "$projects" > "$out/queries.jsonl" <<'PY'
import random, sys
users, projects = int(sys.argv[1]), int(sys.argv[2])
random.seed(7)
out = sys.stdout
for _ in range(1_000_000):
    u, p, a = int(users * random.random() ** 2), int(projects * random.random() ** 2), int(200 * random.random() ** 2)
    r = random.random()
    if r < 0.6:
        out.write('{"op":"effective_permission","user":"u-%06d","project":"p-%06d"}\n' % (u, p))
    elif r < 0.9:
        out.write('{"op":"can_use","user":"u-%06d","asset":"a-%04d","project":"p-%06d"}\n' % (u, a, p))
    else:
        out.write('{"op":"seat_type","user":"u-%06d"}\n' % u)
PY
for i in $(seq "$runs"); do
    /usr/bin/time -f "%e" -o "$out/check-$i.time" "$ctl" check --db "$out/large.db" < "$out/queries.jsonl" > /dev/null
done
cat "$out"/check-*.time | sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "authzctl check: median %.2f s for 1,000,000 queries (including the snapshot load) = %.0f queries/s\n", m, 1000000/m}' | tee "$out/check.txt" >&2

echo "== raw results in $out/full.json" >&2
cat "$out/full.json"
