#!/usr/bin/env bash
# Load smoke test for CI (~10 s): the loadgen against a real authzd on the demo workspace.
# Fails if any loadgen run reports an error, if authzd dies, or if the commits made during
# the last run are not all served afterwards. A debug build is fine.
#
#   bench/smoke.sh BIN_DIR        # BIN_DIR holds authzd and authzctl, e.g. $(swift build --show-bin-path)
#
# Runs (each 1 s after a 0.5 s warm-up): 1 connection x 1; 16 x 16; batches of 50 checks
# (4 x 8); open loop at 2,000 calls/s; and 16 x 16 while another process commits 10 changes
# to the database (so the snapshot is reloaded under load).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

[ $# -eq 1 ] || { echo "usage: bench/smoke.sh BIN_DIR" >&2; exit 2; }
bin=$(cd "$1" && pwd)
for b in authzd authzctl; do [ -x "$bin/$b" ] || { echo "smoke: no $bin/$b" >&2; exit 2; }; done

say() { printf '[smoke %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
lib() { python3 "$root/bench/runlib.py" "$@"; }

make -s -C bench/loadgen >&2
loadgen=$root/bench/loadgen/authz-loadgen

tmp=$(mktemp -d /tmp/authz-smoke.XXXXXX)
authzd_pid="" commit_pid=""
cleanup() {
    local p
    for p in $commit_pid $authzd_pid; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $commit_pid $authzd_pid; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

db=$tmp/demo.db sock=$tmp/authz.sock
"$bin/authzctl" demo --db "$db" > /dev/null 2>&1
"$bin/authzd" --db "$db" --socket "$sock" --log-level warning 2> "$tmp/authzd.log" &
authzd_pid=$!
lib wait-socket --socket "$sock" --pid "$authzd_pid" --timeout 60 || { cat "$tmp/authzd.log" >&2; exit 1; }

failed=0
check_alive() {
    if ! kill -0 "$authzd_pid" 2>/dev/null; then
        say "FAILED: authzd died; its log:"
        cat "$tmp/authzd.log" >&2
        exit 1
    fi
}
run() {  # LABEL LOADGEN-ARGS...
    local label=$1 rc=0; shift
    "$loadgen" --socket "$sock" --db "$db" --warmup 0.5 --duration 1 --server-pid "$authzd_pid" --quiet \
        --json "$tmp/$label.json" --label "$label" "$@" > "$tmp/$label.txt" 2>&1 || rc=$?
    check_alive
    if [ "$rc" = 0 ]; then
        say "$label: $(lib line "$tmp/$label.json")"
    else
        say "FAILED: $label: loadgen exit status $rc"
        cat "$tmp/$label.txt" >&2
        failed=1
    fi
}

run round-trip --connections 1 --depth 1
run pipelined-16x16 --connections 16 --depth 16
run batch50-4x8 --batch 50 --connections 4 --depth 8
run open-loop-2000 --rate 2000 --connections 4 --depth 16

before=$(lib status-field --socket "$sock" --authzctl "$bin/authzctl" snapshot_version)
lib commit-loop --db "$db" --count 10 --interval 0.1 --out "$tmp/commits.json" &
commit_pid=$!
run reloading-16x16 --connections 16 --depth 16
wait "$commit_pid" || { say "FAILED: the committing process failed"; failed=1; }
commit_pid=""
if [ -z "$before" ]; then
    say "FAILED: authzctl status did not answer"
    exit 1
fi
want=$((before + 10)) served=""
for _ in $(seq 40); do  # the last commit must be served within 2 s
    served=$(lib status-field --socket "$sock" --authzctl "$bin/authzctl" snapshot_version)
    [ "${served:-0}" -ge "$want" ] && break
    sleep 0.05
done
if [ "${served:-0}" -ge "$want" ]; then
    say "reloads under load: snapshot version $before -> $served after 10 commits"
else
    say "FAILED: after 10 commits authzd serves version ${served:-?}, expected $want"
    failed=1
fi
check_alive

if [ "$failed" != 0 ]; then
    say "FAILED"
    exit 1
fi
say "ok"
