#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ (see fuzz/README.md).
#
#   scripts/fuzz.sh TARGET SECONDS    one target (frame, request, ...) or `all` (one after
#                                     another, SECONDS each)
#   scripts/fuzz.sh --list            the targets
#   scripts/fuzz.sh --write-seeds     regenerates the committed seed corpus fuzz/corpus/
#
# Builds the fuzz package if needed (release, -sanitize=fuzzer,address; a compiler warning in
# fuzz/Sources fails), then runs each target on a copy of its seed corpus
# (fuzz/.build/work/corpus/TARGET, which keeps what earlier runs found) for SECONDS with
# -max_total_time. Fails (exit 1) on any crash, broken invariant, hang (an input running
# over 60 s: -timeout, generous because on a loaded machine an input taking milliseconds was
# once starved for 11 s), leak or sanitizer report; the input that caused it is saved under fuzz/artifacts/ (git-ignored:
# add it to the seed corpus and as a regression test in the normal suites). Prints the
# executions per second of each target and the total.
#
# Environment: FUZZ_JOBS=N runs N processes per target in parallel (libFuzzer -fork; default
# 1); FUZZ_WORK_DIR (default fuzz/.build/work) holds the working corpora, logs and a copy of
# the binaries run (a rebuild does not disturb a long run; two runs need two directories).
# Extra libFuzzer flags can follow SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# SwiftPM's --sanitize=fuzzer --sanitize=address pass two -sanitize= flags to swiftc, of
# which only the last counts (no coverage: libFuzzer runs blind). --sanitize=fuzzer stays for
# how SwiftPM links a fuzzer (libFuzzer's main), the -Xswiftc flag comes after it and wins.
build_flags=(-c release --package-path fuzz --sanitize=fuzzer
    -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address)
# The Swift runtime's backtracer hangs in a crashing fuzzer (it waits on a terminal):
# libFuzzer and the sanitizers report crashes themselves.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

targets() {
    for dir in fuzz/Sources/fuzz-*/; do
        basename "$dir" | sed 's/^fuzz-//'
    done
}

build() {
    scripts/install-deps.sh
    local log
    log=$(mktemp)
    echo "== building the fuzz targets (swift build ${build_flags[*]})" >&2
    if ! swift build "${build_flags[@]}" >"$log" 2>&1; then
        grep -v "ld.gold: warning: Cannot export local symbol" "$log" >&2
        rm -f "$log"
        exit 1
    fi
    if grep -E "^$root/fuzz/Sources/.*: warning:" "$log" | sort -u | grep .; then
        echo "error: the fuzz targets build with warnings (above)" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
    bin=$(swift build "${build_flags[@]}" --show-bin-path)
}

case "${1:-}" in
    --list)
        targets
        exit 0
        ;;
    --write-seeds)
        build
        for target in $(targets); do
            rm -rf "fuzz/corpus/$target"
            mkdir -p "fuzz/corpus/$target"
            AUTHZ_FUZZ_WRITE_SEEDS="fuzz/corpus/$target" "$bin/fuzz-$target"
        done
        exit 0
        ;;
    "" | -h | --help)
        sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac

target=$1
seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer flags]}
shift 2
extra=("$@")
if [ "$target" = all ]; then
    selected=$(targets)
else
    targets | grep -x "$target" >/dev/null || { echo "no fuzz target '$target' (have: $(targets | xargs))" >&2; exit 2; }
    selected=$target
fi

build
work=${FUZZ_WORK_DIR:-fuzz/.build/work}
mkdir -p fuzz/artifacts "$work/bin" "$work/logs"
total_runs=0
total_seconds=0
failed=()
summary=()
for name in $selected; do
    corpus=$work/corpus/$name
    mkdir -p "$corpus"
    if [ -d "fuzz/corpus/$name" ]; then
        cp -p fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
    else
        echo "warning: no seed corpus fuzz/corpus/$name: starting from nothing" >&2
    fi
    log=$work/logs/$name.log
    cp "$bin/fuzz-$name" "$work/bin/fuzz-$name"
    flags=(-max_total_time="$seconds" -timeout=60 -print_final_stats=1
        -artifact_prefix="$root/fuzz/artifacts/$name-")
    if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
        flags+=(-fork="$FUZZ_JOBS" -ignore_crashes=0)
    fi
    echo "== fuzz-$name for ${seconds}s (corpus $corpus: $(ls "$corpus" | wc -l) inputs; log $log)" >&2
    started=$(date +%s.%N)
    set +e
    # CPU seconds too: on a shared machine the wall-clock rate says more about the load.
    timing=$work/logs/$name.cpu
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f '%U %S' -o "$timing" "$work/bin/fuzz-$name" "${flags[@]}" "${extra[@]}" "$corpus" >"$log" 2>&1
    else
        "$work/bin/fuzz-$name" "${flags[@]}" "${extra[@]}" "$corpus" >"$log" 2>&1
    fi
    status=$?
    set -e
    elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    # -fork prints no final stats: count the executions from the last status line.
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$runs" ] || runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    runs=${runs:-0}
    rate=$(awk -v r="$runs" -v s="$elapsed" 'BEGIN { printf "%d", (s > 0 ? r / s : 0) }')
    reports=$(grep -cE '^==fuzz==|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|SUMMARY: (AddressSanitizer|LeakSanitizer|libFuzzer|UndefinedBehaviorSanitizer)|^==[0-9]+== ?ERROR' "$log" || true)
    cpu=$(awk 'NF == 2 && $1 ~ /^[0-9.]+$/ { printf "%.1f", $1 + $2 }' "$timing" 2>/dev/null || true)
    line=$(printf '%-12s %12s executions in %6.1f s: %8s exec/s' "$name" "$runs" "$elapsed" "$rate")
    if [ -n "$cpu" ]; then
        line+=$(awk -v r="$runs" -v c="$cpu" 'BEGIN { printf " (%.1f CPU s, %d per CPU second)", c, (c > 0 ? r / c : 0) }')
        total_cpu=$(awk -v a="${total_cpu:-0}" -v b="$cpu" 'BEGIN { printf "%.1f", a + b }')
    fi
    if [ "$status" -ne 0 ] || [ "$reports" -ne 0 ]; then
        line+="  FAILED (exit $status)"
        failed+=("$name")
        echo "---- fuzz-$name: the end of $log" >&2
        grep -v "ld.gold" "$log" | tail -60 >&2
        ls -t "fuzz/artifacts/$name-"* 2>/dev/null | head -3 | sed 's/^/saved input: /' >&2
    fi
    echo "$line"
    summary+=("$line")
    total_runs=$((total_runs + runs))
    total_seconds=$(awk -v a="$total_seconds" -v b="$elapsed" 'BEGIN { printf "%.1f", a + b }')
done
if [ "$(echo "$selected" | wc -w)" -gt 1 ]; then
    printf '%-12s %12s executions in %6.1f s: %8s exec/s' total "$total_runs" "$total_seconds" \
        "$(awk -v r="$total_runs" -v s="$total_seconds" 'BEGIN { printf "%d", (s > 0 ? r / s : 0) }')"
    if [ -n "${total_cpu:-}" ]; then
        awk -v r="$total_runs" -v c="$total_cpu" 'BEGIN { printf " (%.1f CPU s, %d per CPU second)", c, (c > 0 ? r / c : 0) }'
    fi
    echo
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "error: fuzzing found problems in: ${failed[*]}" >&2
    exit 1
fi
