#!/usr/bin/env bash
# The lookups benchmark (issue 10) on the large generated workspace, release builds:
# ListProjects pages of 1,000 for an admin (who opens every project), for the non-admin who
# opens the most of a 2,000-user sample and for the sample's median user, per page, per
# item and per listing, in process and over authzd's socket (round trips and the server's
# CPU time), against the naive way in the same run (one EffectivePermission per project,
# pipelined over the socket); ListProjectAccess for a project shared with the whole
# workspace; allocations per page; the snapshot load and build times. With --baseline REV,
# also the snapshot load and build times of that revision (the cost the lookups' indexes
# add to every reload). Raw JSON under bench/out/lookups (not committed); a summary on stderr.
#
#   bench/lookups.sh [--runs 5] [--duration 3] [--depth 128] [--baseline REV] [--bin DIR]
#                    [--users 100000 --groups 10000 --projects 50000 --grants-per-project 20]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

runs=5 duration=3 depth=128 baseline="" bin=${AUTHZ_BIN:-}
users=100000 groups=10000 projects=50000 grants=20 seed=1
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=${2:?}; shift 2 ;;
        --duration) duration=${2:?}; shift 2 ;;
        --depth) depth=${2:?}; shift 2 ;;
        --baseline) baseline=${2:?}; shift 2 ;;
        --bin) bin=${2:?}; shift 2 ;;
        --users) users=${2:?}; shift 2 ;;
        --groups) groups=${2:?}; shift 2 ;;
        --projects) projects=${2:?}; shift 2 ;;
        --grants-per-project) grants=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "lookups.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf '[lookups %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
out=bench/out/lookups
mkdir -p "$out"
scripts/install-deps.sh >&2

if [ -z "$bin" ]; then
    say "building authzd and authzctl (swift build -c release)"
    swift build -c release --product authzd >&2
    swift build -c release --product authzctl >&2
    bin=$(swift build -c release --show-bin-path)
fi
say "building lookups-bench (bench/lookups, release)"
(cd bench/lookups && swift build -c release >&2)
lb=bench/lookups/.build/release/lookups-bench

say "machine: $(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'), load $(cut -d' ' -f1-3 /proc/loadavg)"

params="users=$users groups=$groups projects=$projects grants-per-project=$grants seed=$seed"
db=$out/large.db
if [ -f "$db" ] && [ -f "$out/params.txt" ] && [ "$(cat "$out/params.txt")" = "$params" ]; then
    say "reusing $db ($params)"
else
    say "generating and importing the workspace ($params)"
    rm -f "$db" "$db-wal" "$db-shm" "$out/params.txt"
    "$bin/authzctl" generate --users "$users" --groups "$groups" --projects "$projects" \
        --grants-per-project "$grants" --seed "$seed" > "$out/large.json"
    "$bin/authzctl" import --db "$db" "$out/large.json" > /dev/null
    rm -f "$out/large.json"
    echo "$params" > "$out/params.txt"
fi

say "in process (lookups-bench engine, $runs runs)"
"$lb" engine --db "$db" --runs "$runs" > "$out/engine.json"

say "over the socket (lookups-bench socket, $runs runs of at least $duration s, naive depth $depth)"
sock=$out/authzd.sock
rm -f "$sock"
"$bin/authzd" --db "$db" --socket "$sock" --no-watch --poll-interval 0 --log-level warning 2> "$out/authzd.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { say "authzd did not start (see $out/authzd.log)"; exit 1; }
"$lb" socket --db "$db" --socket "$sock" --server-pid "$pid" --runs "$runs" --duration "$duration" \
    --depth "$depth" > "$out/socket.json"
kill "$pid"
wait "$pid" 2>/dev/null || true
trap - EXIT

if [ -n "$baseline" ]; then
    # The same snapshot load and build compiled from REV (no lookups there) and from this
    # tree: two small packages, run alternately (3 rounds of $runs builds each) so that both
    # see the same machine; the build is timed in thread CPU time.
    say "baseline: snapshot load and build at $baseline against this tree"
    base=$out/baseline
    rm -rf "$base"
    mkdir -p "$base/src"
    git archive "$baseline" | tar -x -C "$base/src"
    for variant in baseline head; do
        dir=$base/timer-$variant
        source_root=$([ "$variant" = baseline ] && echo "../src" || echo "$root")
        mkdir -p "$dir/Sources/build-timer"
        cat > "$dir/Package.swift" <<SWIFT
// swift-tools-version:6.0
import PackageDescription
let package = Package(
    name: "build-timer",
    dependencies: [.package(name: "authz-sidecar", path: "$source_root")],
    targets: [.executableTarget(name: "build-timer", dependencies: [
        .product(name: "AuthzEngine", package: "authz-sidecar"),
        .product(name: "AuthzStore", package: "authz-sidecar")])],
    swiftLanguageModes: [.v6])
SWIFT
        cat > "$dir/Sources/build-timer/main.swift" <<'SWIFT'
import AuthzEngine
import AuthzStore
import Foundation
func wall() -> Double { var ts = timespec(); clock_gettime(CLOCK_MONOTONIC, &ts); return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9 }
func cpu() -> Double { var ts = timespec(); clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9 }
func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2 }
let db = CommandLine.arguments[1], runs = Int(CommandLine.arguments[2]) ?? 5
var load: [Double] = [], build: [Double] = []
for _ in 0 ..< min(runs, 3) { let t = wall(); _ = try! SnapshotLoader.load(path: db); load.append(wall() - t) }
let (workspace, version) = try! WorkspaceStore.open(path: db, create: false).exportWorkspace()
for _ in 0 ..< runs { let t = cpu(); let s = Snapshot(workspace: workspace, version: version); build.append(cpu() - t); precondition(s.userCount > 0) }
print("{\"load_s_median\": \(median(load)), \"build_ms_median\": \(median(build) * 1000)}")
SWIFT
        (cd "$dir" && swift build -c release >&2)
    done
    : > "$out/baseline.jsonl"
    for round in 1 2 3; do
        for variant in baseline head; do
            printf '{"variant": "%s", "round": %s, "result": %s}\n' "$variant" "$round" \
                "$("$base/timer-$variant/.build/release/build-timer" "$root/$db" "$runs")" >> "$out/baseline.jsonl"
        done
    done
fi

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
engine = json.load(open(f"{out}/engine.json"))
socket = json.load(open(f"{out}/socket.json"))
s = engine["subjects"]
print(f"snapshot: load {engine['snapshot']['load_s_median']} s, build {engine['snapshot']['build_ms_median']} ms (medians)", file=sys.stderr)
if os.path.exists(f"{out}/baseline.jsonl"):
    rows = [json.loads(line) for line in open(f"{out}/baseline.jsonl") if line.strip()]
    for variant in ["baseline", "head"]:
        mine = [r["result"] for r in rows if r["variant"] == variant]
        builds = sorted(r["build_ms_median"] for r in mine)
        loads = sorted(r["load_s_median"] for r in mine)
        print(f"{variant}: build {', '.join(f'{b:.0f}' for b in builds)} ms (medians of each round, thread CPU), "
              f"load {', '.join(f'{l:.2f}' for l in loads)} s (wall)", file=sys.stderr)
for name in ["admin", "top_sampled", "typical"]:
    e, k = engine[f"list_projects_{name}"], socket[f"list_projects_{name}"]
    n = k["naive"]
    print(f"ListProjects {name} ({e['items']} projects): engine {e['page_us_median']} us/page ({e['item_ns']} ns/item), "
          f"listing {e['listing_ms_median']} ms; socket: round trip {k['round_trip_us_median']} us/page, server CPU "
          f"{k['server_cpu_us_per_page']} us/page ({k['server_cpu_ns_per_item']} ns/item), {k['server_cpu_ms_per_listing']} ms/listing; "
          f"naive: {n['wall_ms_median']} ms wall, {n['server_cpu_ms_per_listing']} ms server CPU per listing -> "
          f"x{k['naive_over_lookup_server_cpu']} CPU, x{k['naive_over_lookup_wall']} wall", file=sys.stderr)
a, k = engine["list_project_access_shared"], socket["list_project_access_shared"]
print(f"ListProjectAccess {s['shared_project']['project']} ({a['items']} users): engine {a['page_us_median']} us/page, listing "
      f"{a['listing_ms_median']} ms; socket: round trip {k['round_trip_us_median']} us/page, server CPU {k['server_cpu_us_per_page']} us/page, "
      f"{k['server_cpu_ms_per_listing']} ms/listing; naive x{k['naive_over_lookup_server_cpu']} CPU", file=sys.stderr)
PY
say "raw results: $out/engine.json, $out/socket.json${baseline:+, $out/baseline.jsonl}"
