#!/usr/bin/env bash
# The test command: installs missing system packages, checks the generated protobuf-c code
# is current, builds everything (a compiler warning in this package's own code fails the
# run), and runs every test, including every conformance file in ../shared/conformance.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/gen-proto.sh --check

log=$(mktemp)
trap 'rm -f "$log"' EXIT
swift build --build-tests 2>&1 | tee "$log"
if grep -E "^$(pwd)/(Sources|Tests)/.*: warning:" "$log" | sort -u | grep .; then
    echo "error: the build has warnings (above); this package builds warning-free" >&2
    exit 1
fi
swift test --skip-build
