#!/usr/bin/env bash
# The engine and server test suites under ThreadSanitizer and under AddressSanitizer (with
# LeakSanitizer), each from its own build folder (.build-tsan, .build-asan). Any sanitizer
# report fails the run (halt_on_error: the test process stops at the first report).
#
#   scripts/sanitizers.sh [thread|address]...   (default: both)
#
# The suites run one test at a time (--no-parallel): a sanitized build is several times
# slower and the suites' timing margins are for one test process on two cores, not for
# dozens of sanitized servers at once. The authzd processes the daemon tests start are the
# sanitized builds too and inherit the options.
set -euo pipefail
cd "$(dirname "$0")/.."

suites='AuthzEngineTests|AuthzServerTests'
# DaemonTests.sighupForcesAReload commits right after authzd listens and expects no reload
# without a watch or polling, but the reloader's start-up catch-up check (which loads what
# was committed before it ran) can run after that commit when start-up is slow: it fails
# in every sanitized run (a test timing assumption, reported; not a sanitizer finding).
skip='sighupForcesAReload'
sanitizers=("$@")
[ ${#sanitizers[@]} -gt 0 ] || sanitizers=(thread address)

# The Swift runtime's backtracer would wait on a crashed test process; the sanitizers
# print their own reports.
export SWIFT_BACKTRACE=enable=no

scripts/install-deps.sh
for sanitizer in "${sanitizers[@]}"; do
    case "$sanitizer" in
        thread) scratch=.build-tsan ;;
        address) scratch=.build-asan ;;
        *) echo "unknown sanitizer '$sanitizer' (thread or address)" >&2; exit 2 ;;
    esac
    echo "== $sanitizer sanitizer: building the tests ($scratch)"
    time swift build --build-tests --sanitize="$sanitizer" --scratch-path "$scratch"

    preload=""
    if [ "$sanitizer" = thread ]; then
        # Synchronization.Mutex hands its lock over in an uninstrumented library under
        # contention: scripts/sanitizers/tsan-mutex-interposer.c tells TSan (see there).
        preload=$scratch/libauthz-tsan-mutex.so
        if [ ! "$preload" -nt scripts/sanitizers/tsan-mutex-interposer.c ]; then
            clang=$(dirname "$(readlink -f "$(command -v swift)")")/clang
            "$clang" -shared -fPIC -O2 -Wall -Werror scripts/sanitizers/tsan-mutex-interposer.c -o "$preload" -ldl
        fi
        preload=$(pwd)/$preload
    fi

    echo "== $sanitizer sanitizer: $suites"
    log=$(mktemp)
    set +e
    time env \
        TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$(pwd)/scripts/sanitizers/tsan-suppressions.txt" \
        ASAN_OPTIONS="halt_on_error=1:detect_leaks=1" \
        LSAN_OPTIONS="suppressions=$(pwd)/scripts/sanitizers/lsan-suppressions.txt:print_suppressions=0" \
        ${preload:+LD_PRELOAD=$preload} \
        swift test --skip-build --sanitize="$sanitizer" --scratch-path "$scratch" --no-parallel --disable-xctest --filter "$suites" --skip "$skip" \
        2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    set -e
    reports=$(grep -cE '^WARNING: ThreadSanitizer|^==[0-9]+==ERROR: (AddressSanitizer|LeakSanitizer)|^SUMMARY: (ThreadSanitizer|AddressSanitizer|LeakSanitizer)' "$log" || true)
    rm -f "$log"
    if [ "$status" -ne 0 ] || [ "$reports" -ne 0 ]; then
        echo "error: the $sanitizer sanitizer run failed (exit $status, $reports sanitizer report lines above)" >&2
        exit 1
    fi
    echo "== $sanitizer sanitizer: clean"
done
