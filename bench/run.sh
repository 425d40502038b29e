#!/usr/bin/env bash
# Every load-test scenario of the sidecar, against authzd (epoll and SwiftNIO transports)
# and the two baselines (the C echo server: framing only; the SQLite-per-request server),
# on the demo and the large workspace. Release builds; each measured scenario is run N
# times and the median of every metric is kept. Writes the loadgen's raw JSON of every run,
# server logs and summary.json under the out dir, and (unless --quick or --no-report)
# rewrites the load-test section of bench/RESULTS.md from it with bench/report.py.
#
#   bench/run.sh [--runs 3] [--duration 5] [--quick] [--out bench/out/run] [--skip-large] [--bin DIR]
#
#   --runs N       runs of every measured scenario (default 3; medians are reported)
#   --duration S   measured seconds per loadgen run (default 5; each run also warms up 1 s)
#   --quick        for development: --runs 1 --duration 2 and a smaller large workspace
#                  (20,000 users, 2,000 groups, 10,000 projects)
#   --out DIR      where everything goes (default bench/out/run)
#   --skip-large   only the demo workspace
#   --bin DIR      use the authzd/authzctl in DIR (also $AUTHZ_BIN) instead of building
#                  them with `swift build -c release`
#   --no-report    do not rewrite bench/RESULTS.md (a full run does; --quick never does)
#   --normal-rate R  the open-loop rate of the reload-under-load comparison (default 20000
#                  calls/s: a busy service's sidecar, leaving the 2 cores room)
#
# Progress goes to stderr. Exit status: 1 if any run against authzd had errors (request
# errors reported by the loadgen, authzd dying, a reload-latency run failing), 2 for bad
# options; errors of the baselines are reported but do not fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
command_line="bench/run.sh${*:+ $*}"

runs="" duration="" quick=0 out=bench/out/run skip_large=0 bin=${AUTHZ_BIN:-} normal_rate=20000 no_report=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=${2:?--runs needs a value}; shift 2 ;;
        --duration) duration=${2:?--duration needs a value}; shift 2 ;;
        --quick) quick=1; shift ;;
        --out) out=${2:?--out needs a value}; shift 2 ;;
        --skip-large) skip_large=1; shift ;;
        --bin) bin=${2:?--bin needs a value}; shift 2 ;;
        --normal-rate) normal_rate=${2:?--normal-rate needs a value}; shift 2 ;;
        --no-report) no_report=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$quick" = 1 ]; then
    runs=${runs:-1} duration=${duration:-2}
    large_users=20000 large_groups=2000 large_projects=10000
else
    runs=${runs:-3} duration=${duration:-5}
    large_users=100000 large_groups=10000 large_projects=50000
fi
large_grants=20 large_seed=1
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --runs must be a positive integer" >&2; exit 2; }
[[ "$duration" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "run.sh: --duration must be a number of seconds" >&2; exit 2; }
warmup=1

say() { printf '[run %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
lib() { python3 "$root/bench/runlib.py" "$@"; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
logs=$out/logs raw=$out/raw scratch=$out/scratch reloads=$out/reload
rm -rf "$logs" "$raw" "$scratch" "$reloads" "$out/manifest.tsv" "$out/summary.json" "$out/report.md"
mkdir -p "$logs" "$raw/demo" "$raw/large" "$scratch" "$reloads" "$out/demo" "$out/large"
sockets=$out/sock
if [ ${#sockets} -gt 80 ]; then sockets=$(mktemp -d /tmp/authz-bench-sock.XXXXXX); fi  # sun_path is 108 bytes
mkdir -p "$sockets"
manifest=$out/manifest.tsv
: > "$manifest"
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
lib machine > "$out/machine.json"
say "out dir $out; runs $runs x ${duration}s (+${warmup}s warm-up); $(cat "$out/machine.json")"

# ---- processes started here, stopped on exit ----------------------------------------------
pids=()
forget_pid() {
    local keep=() p
    for p in ${pids[@]+"${pids[@]}"}; do [ "$p" = "$1" ] || keep+=("$p"); done
    pids=(${keep[@]+"${keep[@]}"})
}
cleanup() {
    local p
    for p in ${pids[@]+"${pids[@]}"}; do kill -TERM "$p" 2>/dev/null || true; done
    for p in ${pids[@]+"${pids[@]}"}; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$scratch"
    [ "$sockets" = "$out/sock" ] || rm -rf "$sockets"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# ---- build -----------------------------------------------------------------------------------
say "installing missing system packages (scripts/install-deps.sh)"
scripts/install-deps.sh
if [ -n "$bin" ]; then
    bin=$(cd "$bin" && pwd)
    say "using the binaries in $bin (not building)"
    built=false
else
    say "building authzd and authzctl (swift build -c release)"
    swift build -c release --product authzd >&2
    swift build -c release --product authzctl >&2
    bin=$(swift build -c release --show-bin-path)
    built=true
fi
for b in authzd authzctl; do [ -x "$bin/$b" ] || { say "ERROR: no $bin/$b"; exit 1; }; done
say "building the loadgen and the baselines (make)"
make -s -C bench/echo >&2
make -s -C bench/loadgen >&2
make -s -C bench/sqlite-server >&2
authzd=$bin/authzd authzctl=$bin/authzctl
loadgen=$root/bench/loadgen/authz-loadgen
echo_server=$root/bench/echo/authz-echo
sqlite_server=$root/bench/sqlite-server/authz-sqlite-server

# ---- workspaces ------------------------------------------------------------------------------
workspaces=(demo)
say "writing the demo workspace (authzctl demo)"
rm -f "$out/demo/demo.db" "$out/demo/demo.db-wal" "$out/demo/demo.db-shm"
"$authzctl" demo --db "$out/demo/demo.db" > /dev/null 2> "$logs/demo-workspace.log"
large_params="users=$large_users groups=$large_groups projects=$large_projects grants-per-project=$large_grants seed=$large_seed"
if [ "$skip_large" = 0 ]; then
    workspaces+=(large)
    large_db=$out/large/large.db
    if [ -f "$large_db" ] && [ -f "$out/large/params.txt" ] && [ "$(cat "$out/large/params.txt")" = "$large_params" ]; then
        say "reusing the large workspace $large_db ($large_params)"
    else
        say "generating the large workspace ($large_params)"
        rm -f "$large_db" "$large_db-wal" "$large_db-shm" "$out/large/params.txt"
        "$authzctl" generate --users "$large_users" --groups "$large_groups" --projects "$large_projects" \
            --grants-per-project "$large_grants" --seed "$large_seed" > "$out/large/large.json"
        say "importing it (authzctl import, $(du -h "$out/large/large.json" | cut -f1) document)"
        "$authzctl" import --db "$large_db" "$out/large/large.json" > /dev/null
        rm -f "$out/large/large.json"
        echo "$large_params" > "$out/large/params.txt"
    fi
fi
db_of() { echo "$out/$1/$1.db"; }

# ---- servers ---------------------------------------------------------------------------------
server_pid="" server_name="" server_sock="" server_dead=0
start_server() {  # NAME LOGNAME CMD... (the command must listen on $server_sock)
    server_name=$1; local log=$logs/$2.log; shift 2
    rm -f "$server_sock"
    "$@" > "$log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    server_dead=0
    if ! lib wait-socket --socket "$server_sock" --pid "$server_pid" --timeout 300; then
        say "ERROR: $server_name did not start; last lines of $log:"
        tail -5 "$log" >&2 || true
        server_dead=1
        return 1
    fi
}
stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    forget_pid "$server_pid"
    server_pid=""
    rm -f "$server_sock"
}
authzd_args() {  # WORKSPACE-DB SOCKET: the flags every authzd here gets
    echo --db "$1" --socket "$2" --log-level warning
}

# ---- loadgen runs ----------------------------------------------------------------------------
total_runs=$((runs * 22 * ${#workspaces[@]} + (skip_large == 0 ? runs : 0)))
step=0
hook_before="" hook_after="" run_note=""
run_scenario() {  # WORKSPACE SCENARIO CONFIG LOADGEN-ARGS...; server_* and db set by the caller
    local ws=$1 scenario=$2 config=$3; shift 3
    local i rc label json result
    label="$ws-$server_name-$scenario-$config"
    for i in $(seq "$runs"); do
        step=$((step + 1))
        json=$raw/$ws/$label.run$i.json
        rm -f "$json"
        if [ "$server_dead" = 1 ] || ! kill -0 "$server_pid" 2>/dev/null; then
            server_dead=1
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ws" "$server_name" "$scenario" "$config" "$i" 99 "" \
                '{"error":"the server is not running"}' >> "$manifest"
            say "[$step/$total_runs] $label run $i/$runs: SKIPPED, the server is not running"
            continue
        fi
        run_note=""
        [ -z "$hook_before" ] || "$hook_before" "$i"
        rc=0
        "$loadgen" --socket "$server_sock" --db "$db" --duration "$duration" --warmup "$warmup" \
            --server-pid "$server_pid" --quiet --json "$json" --label "$label" "$@" > "${json%.json}.txt" 2>&1 || rc=$?
        [ -z "$hook_after" ] || "$hook_after" "$i"
        if ! kill -0 "$server_pid" 2>/dev/null; then
            server_dead=1
            run_note='{"error":"the server died during the run"}'
            [ "$rc" != 0 ] || rc=98
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ws" "$server_name" "$scenario" "$config" "$i" "$rc" "$json" \
            "$run_note" >> "$manifest"
        result=$(lib line "$json")
        say "[$step/$total_runs] $label run $i/$runs: $result"
        if [ "$rc" != 0 ]; then
            say "  ERRORS: loadgen exit status $rc${run_note:+ $run_note}; see ${json%.json}.txt"
        fi
    done
}
closed_loop_set() {  # WORKSPACE [extra loadgen args]: round trip and the three pipelined shapes
    local ws=$1; shift
    local shape
    run_scenario "$ws" round_trip 1x1 --connections 1 --depth 1 "$@"
    for shape in 4x32 16x32 64x8; do
        run_scenario "$ws" pipelined "$shape" --connections "${shape%x*}" --depth "${shape#*x}" "$@"
    done
}
open_loop() {  # WORKSPACE RATE BASIS
    local ws=$1 rate=$2 basis=$3
    if [ "$rate" -lt 1 ]; then
        say "no open-loop run for $server_name on $ws: no peak throughput was measured"
        return 0
    fi
    hook_before="" hook_after="note_basis"
    basis_note="{\"rate_basis\":\"$basis\"}"
    run_scenario "$ws" open_loop "r$rate" --rate "$rate" --connections 16 --depth 64
    hook_after=""
}
note_basis() { [ -n "$run_note" ] || run_note=$basis_note; }
batches() { run_scenario "$1" batch50 4x8 --batch 50 --connections 4 --depth 8; }

# (e): one small commit per second while the open loop runs
commit_pid="" commit_json="" version_before=""
start_committer() {
    commit_json=$raw/large/commits.run$1.json
    version_before=$(lib status-field --socket "$server_sock" --authzctl "$authzctl" snapshot_version)
    lib commit-loop --db "$db" --interval 1 --duration "$(python3 -c "print($warmup + $duration + 0.5)")" \
        --out "$commit_json" &
    commit_pid=$!
    pids+=("$commit_pid")
}
stop_committer() {
    wait "$commit_pid" 2>/dev/null || true
    forget_pid "$commit_pid"
    sleep 1  # let the last commit's reload finish before reading the version
    local after commits
    after=$(lib status-field --socket "$server_sock" --authzctl "$authzctl" snapshot_version)
    commits=$(python3 -c "import json; print(json.load(open('$commit_json'))['commits'])" 2>/dev/null || echo 0)
    [ -n "$run_note" ] || run_note="{\"commits\":$commits,\"versions_advanced\":$(( ${after:-0} - ${version_before:-0} ))}"
    say "  background commits: $commits, snapshot versions advanced: $(( ${after:-0} - ${version_before:-0} ))"
}

measure_started_load=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average before measuring: $measure_started_load; $total_runs loadgen runs of ~$(python3 -c "print($duration + $warmup)") s"
declare -A epoll_rate
for ws in "${workspaces[@]}"; do
    db=$(db_of "$ws")
    say "=== workspace $ws ($db)"

    server_sock=$sockets/echo.sock
    say "--- echo baseline (authz-echo, 1 loop)"
    start_server echo "$ws-echo" "$echo_server" --socket "$server_sock" || true
    closed_loop_set "$ws" --expect-fixed
    stop_server

    server_sock=$sockets/authzd-epoll.sock
    say "--- authzd, epoll transport"
    # shellcheck disable=SC2046
    start_server authzd-epoll "$ws-authzd-epoll" "$authzd" $(authzd_args "$db" "$server_sock") --transport epoll || true
    "$authzctl" status --socket "$server_sock" > "$out/$ws/status.json" 2>/dev/null || true
    closed_loop_set "$ws"
    peak=$(lib peak --manifest "$manifest" --workspace "$ws" --server authzd-epoll)
    epoll_rate[$ws]=$((peak / 2))
    open_loop "$ws" "${epoll_rate[$ws]}" "50% of the authzd-epoll peak ($peak calls/s)"
    batches "$ws"
    stop_server

    server_sock=$sockets/authzd-nio.sock
    say "--- authzd, SwiftNIO transport"
    # shellcheck disable=SC2046
    start_server authzd-nio "$ws-authzd-nio" "$authzd" $(authzd_args "$db" "$server_sock") --transport nio || true
    closed_loop_set "$ws"
    open_loop "$ws" "${epoll_rate[$ws]}" "50% of the authzd-epoll peak ($peak calls/s)"
    batches "$ws"
    stop_server

    server_sock=$sockets/sqlite.sock
    say "--- SQLite-per-request baseline (authz-sqlite-server)"
    start_server sqlite "$ws-sqlite" "$sqlite_server" --socket "$server_sock" --db "$db" || true
    closed_loop_set "$ws"
    sqlite_peak=$(lib peak --manifest "$manifest" --workspace "$ws" --server sqlite)
    open_loop "$ws" "$((sqlite_peak / 2))" "50% of the sqlite server's own peak ($sqlite_peak calls/s)"
    batches "$ws"
    stop_server

    if [ "$ws" = large ]; then
        say "--- (e) authzd epoll, open loop while one commit per second reloads the snapshot (scratch copy)"
        lib copy-db "$db" "$scratch/reload-under-load.db"
        db=$scratch/reload-under-load.db
        server_sock=$sockets/authzd-reload.sock
        # shellcheck disable=SC2046
        start_server authzd-epoll "large-authzd-epoll-reloading" "$authzd" $(authzd_args "$db" "$server_sock") \
            --transport epoll || true
        # At a fixed "normal" rate that leaves the 2 cores room (50% of peak saturates them,
        # see (c)), first idle, then with the commits: the difference is the reloads' cost.
        run_scenario large reload_idle "r$normal_rate" --rate "$normal_rate" --connections 4 --depth 64
        hook_before=start_committer hook_after=stop_committer
        run_scenario large reload_under_load "r$normal_rate" --rate "$normal_rate" --connections 4 --depth 64
        hook_before="" hook_after=""
        stop_server
        db=$(db_of large)
    fi
done

# ---- (f) reload latency: reload-latency.py starts its own authzd on a scratch copy --------------
reload_latency() {  # WORKSPACE MODE ARGS...
    local ws=$1 mode=$2; shift 2
    local copy=$scratch/latency-$ws-$mode.db i rc json
    lib copy-db "$(db_of "$ws")" "$copy"
    for i in $(seq "$runs"); do
        json=$reloads/latency-$ws-$mode.run$i.json
        rc=0
        python3 bench/reload-latency.py --authzd "$authzd" --db "$copy" --mode "$mode" --json "$json" \
            --label "$ws-$mode" "$@" > "$reloads/latency-$ws-$mode.run$i.txt" 2>&1 || rc=$?
        if [ "$rc" = 0 ]; then
            say "(f) reload latency $ws $mode run $i/$runs: $(tail -1 "$reloads/latency-$ws-$mode.run$i.txt")"
        else
            say "(f) reload latency $ws $mode run $i/$runs: FAILED (exit $rc); see $reloads/latency-$ws-$mode.run$i.txt"
            printf '{"workspace":"%s","server":"authzd-epoll","scenario":"reload_latency","config":"%s","run":%s,"rc":%s,"note":"reload-latency.py failed"}\n' \
                "$ws" "$mode" "$i" "$rc" >> "$reloads/failures.jsonl"
        fi
    done
}
say "=== (f) reload latency (change to visible)"
reload_latency demo watch --commits 200
reload_latency demo poll --commits 40 --gap-ms 500
if [ "$skip_large" = 0 ]; then
    reload_latency large watch --commits 10 --gap-ms 300 --probe-interval-ms 2
fi

# ---- (g) reload duration of the large workspace: load-ms of the reloads authzd logs ---------------
if [ "$skip_large" = 0 ]; then
    say "=== (g) reload duration, large workspace (5 commits 2 s apart per run, authzd --log-level info)"
    lib copy-db "$(db_of large)" "$scratch/reload-duration.db"
    all_ms="[]"
    for i in $(seq "$runs"); do
        server_sock=$sockets/authzd-duration.sock
        start_server authzd-epoll "large-reload-duration.run$i" "$authzd" --db "$scratch/reload-duration.db" \
            --socket "$server_sock" --log-level info || true
        lib commit-loop --db "$scratch/reload-duration.db" --count 5 --interval 2 --out "$reloads/duration-commits.run$i.json"
        for _ in $(seq 100); do  # up to 10 s for the fifth reload
            [ "$(grep -c 'reloaded the workspace snapshot' "$logs/large-reload-duration.run$i.log" || true)" -ge 5 ] && break
            sleep 0.1
        done
        stop_server
        ms=$(lib reload-durations --log "$logs/large-reload-duration.run$i.log")
        say "(g) run $i/$runs: load-ms $ms"
        all_ms=$(python3 -c "import json,sys; print(json.dumps(json.loads(sys.argv[1]) + json.loads(sys.argv[2])))" "$all_ms" "$ms")
    done
    printf '{"commits_per_run": 5, "gap_s": 2, "runs": %s, "load_ms": %s}\n' "$runs" "$all_ms" > "$reloads/duration.json"
fi

# ---- summary ---------------------------------------------------------------------------------
git_commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git_dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)
python3 - "$out/run.json" <<PY
import json, sys
json.dump({
    "command": """$command_line""", "started_at": "$started_at",
    "options": {"runs": $runs, "duration_s": $duration, "warmup_s": $warmup, "quick": bool($quick),
                "skip_large": bool($skip_large)},
    "workspaces": {"demo": "authzctl demo",
                   "large": None if $skip_large else "authzctl generate --users $large_users --groups $large_groups --projects $large_projects --grants-per-project $large_grants --seed $large_seed"},
    "binaries": {"bin": "$bin", "built_by_run_sh": $( [ "$built" = true ] && echo True || echo False ),
                 "git_commit": "$git_commit", "modified_tracked_files": $git_dirty},
    "loadavg_before_measuring": [float(x) for x in "$measure_started_load".split()],
}, open(sys.argv[1], "w"), indent=2)
PY
lib summarize --out "$out"
python3 bench/report.py --summary "$out/summary.json" --print > "$out/report.md" || say "report.py failed"
if [ "$quick" = 1 ] || [ "$no_report" = 1 ]; then
    say "done: $out/summary.json (preview of the RESULTS.md section: $out/report.md; write it with bench/report.py --summary $out/summary.json)"
else
    python3 bench/report.py --summary "$out/summary.json" >&2 || say "report.py failed"
    say "done: bench/RESULTS.md's load-test section rewritten from $out/summary.json (the analysis block is kept: update it by hand)"
fi

status=0
python3 - "$out/summary.json" <<'PY' || status=1
import json, sys
s = json.load(open(sys.argv[1]))
for e in s["errors"]:
    detail = [f"exit {e.get('rc')}"]
    if e.get("errors"):
        detail.append(f"{e['errors']} errors " + " ".join(f"{k}={v}" for k, v in (e.get("kinds") or {}).items()))
    if e.get("note"):
        detail.append(e["note"])
    print(f"[run] ERRORS: {e.get('workspace')} {e.get('server')} {e.get('scenario')} {e.get('config')} "
          f"run {e.get('run')}: " + ", ".join(detail), file=sys.stderr)
sys.exit(1 if s["authzd_errors"] else 0)
PY
exit "$status"
