#!/usr/bin/env bash
# The test command: installs missing system packages, checks the generated protobuf-c code
# is current, builds everything (a compiler warning in this package's own code fails the
# run), and runs every test, including every conformance file in ../shared/conformance,
# the Python client's (clients/python/test.sh: its generated code, pytest) and the
# many-nodes convergence test (scripts/test-litestream.sh: Litestream from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's header says how far into the run it starts (for CI's time budget).
started=$SECONDS
step() { echo "== [$(( (SECONDS - started) / 60 ))m$(( (SECONDS - started) % 60 ))s] $*"; }

scripts/install-deps.sh
scripts/gen-proto.sh --check

step "build, tests included (a warning in this package's own code fails)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
swift build --build-tests 2>&1 | tee "$log"
if grep -E "^$(pwd)/(Sources|Tests)/.*: warning:" "$log" | sort -u | grep .; then
    echo "error: the build has warnings (above); this package builds warning-free" >&2
    exit 1
fi

step "examples/swift-service: a package depending on this one by URL and version (AuthzClient)"
if ! examples/swift-service/build.sh >"$log" 2>&1; then
    cat "$log"
    echo "error: examples/swift-service does not build" >&2
    exit 1
fi
tail -1 "$log"
swift_service=$(swift build --package-path examples/swift-service --show-bin-path)/swift-service

step "the wire contract from C: examples/c-client asks a real authzd"
make -s -C examples/c-client
bin=$(swift build --show-bin-path)
scratch=$(mktemp -d)
trap 'rm -f "$log"; [ -n "${authzd_pid:-}" ] && kill "$authzd_pid" 2>/dev/null; rm -rf "$scratch"' EXIT
"$bin/authzctl" demo --db "$scratch/demo.db" >/dev/null 2>&1
"$bin/authzd" --db "$scratch/demo.db" --socket "$scratch/authz.sock" --log-level warning &
authzd_pid=$!
for _ in $(seq 100); do [ -S "$scratch/authz.sock" ] && break; sleep 0.1; done
answer=$(examples/c-client/authz_ask "$scratch/authz.sock" linus revenue-dashboard)
if [ "$answer" != "level=full_access reason=owner snapshot_version=1" ]; then
    echo "error: the C client got '$answer'" >&2
    exit 1
fi
echo "C client: $answer"
answer=$("$swift_service" "$scratch/authz.sock" linus revenue-dashboard dc-warehouse)
if [ "$answer" != "allowed: project: full_access (owner), connection: use (group_access), snapshot 1" ]; then
    echo "error: examples/swift-service got '$answer'" >&2
    exit 1
fi
echo "Swift service: $answer"
kill -TERM "$authzd_pid"
wait "$authzd_pid"
authzd_pid=""
[ ! -e "$scratch/authz.sock" ] || { echo "error: authzd left its socket behind" >&2; exit 1; }
echo "authzd stopped cleanly on SIGTERM"

step "the Python client (clients/python): generated code current, pytest against a real authzd"
AUTHZD=$bin/authzd AUTHZCTL=$bin/authzctl clients/python/test.sh

step "load smoke: the C load generator against authzd, with reloads under load (bench/smoke.sh)"
bash bench/smoke.sh "$bin"

step "swift test"
swift test --skip-build

step "the server tests again on the SwiftNIO transport (--transport nio)"
AUTHZ_TEST_TRANSPORT=nio swift test --skip-build --filter AuthzServerTests

step "timing requirements, each test alone on a quiet machine"
AUTHZ_STRICT_TIMING=1 swift test --skip-build --filter "fourDaemonsOnOneDatabaseServeACommitWithin100ms"

step "Kubernetes manifests validate (scripts/validate-manifests.sh)"
scripts/validate-manifests.sh

step "many nodes: Litestream to three followers, each with its own authzd (scripts/test-litestream.sh)"
scripts/test-litestream.sh "$bin"

step "the release tarball runs without the Swift toolchain (scripts/test-package.sh)"
scripts/test-package.sh
step "done"
