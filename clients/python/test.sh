#!/usr/bin/env bash
# Tests the Python client (clients/python) against a real authzd:
#   - a virtualenv in clients/python/.venv-test (ignored by git), with the package installed
#     from this folder (pip install ./clients/python) and pytest;
#   - the drift check of the generated protobuf code (scripts/gen-python.sh --check);
#   - pytest, with the daemon and the CLI from $AUTHZD and $AUTHZCTL (default: the binaries
#     of `swift build --show-bin-path`), the scenarios from ../shared/conformance.
# Needs python3 (3.10+, with venv) and network access to PyPI on the first run.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

if [ -z "${AUTHZD:-}" ] || [ -z "${AUTHZCTL:-}" ]; then
    bin=$(swift build --show-bin-path)
    export AUTHZD="${AUTHZD:-$bin/authzd}" AUTHZCTL="${AUTHZCTL:-$bin/authzctl}"
fi

scripts/gen-python.sh --check

venv="$here/.venv-test"
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$here" pytest
"$venv/bin/python" -c 'import google.protobuf, authz_sidecar; print("authz_sidecar", authz_sidecar.__version__, "with protobuf", google.protobuf.__version__)'

cd "$here"
# -p no:cacheprovider: no .pytest_cache in the repository.
"$venv/bin/python" -m pytest -p no:cacheprovider -q "$@" tests
