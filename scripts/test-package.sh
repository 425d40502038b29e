#!/usr/bin/env bash
# Proves the release tarball of scripts/package.sh is self-contained: extracts it into a
# temporary folder and, with the Swift toolchain out of reach (its folder hidden under an
# empty tmpfs in a private mount namespace when this runs as root, and in any case an
# emptied environment: no LD_LIBRARY_PATH, PATH=/usr/bin:/bin), checks with ldd that
# nothing resolves into the toolchain, writes the demo workspace with the packaged
# authzctl, starts the packaged authzd on it, asks it for its status (--ready) and a
# check over the socket, and stops it with SIGTERM: it must exit 0 and remove its socket.
# These are the steps deploy/Containerfile takes on a Debian base.
#
#   scripts/test-package.sh              # builds the tarball first (scripts/package.sh)
#   scripts/test-package.sh TARBALL      # tests that tarball
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--inside" ]; then
    # The checks themselves, run by the part below in the emptied environment.
    root=$2 toolchain=$3
    bin="$root/bin"
    work=$(mktemp -d)
    authzd_pid=""
    trap '[ -n "$authzd_pid" ] && kill "$authzd_pid" 2>/dev/null; rm -rf "$work"' EXIT
    fail() { echo "error: $*" >&2; exit 1; }

    [ -z "${LD_LIBRARY_PATH:-}" ] || fail "LD_LIBRARY_PATH is set"
    ! command -v swift >/dev/null 2>&1 || fail "swift is on the PATH: $(command -v swift)"
    if [ -e "$toolchain/usr/bin/swift" ]; then
        echo "the toolchain is still visible at $toolchain (no mount namespace): relying on ldd and the environment"
    else
        echo "the toolchain at $toolchain is hidden"
    fi
    for binary in authzd authzctl; do
        libraries=$(ldd "$bin/$binary")
        if grep -E "not found|$toolchain|libswift|libFoundation|libdispatch|libBlocksRuntime" <<<"$libraries"; then
            fail "$binary needs the libraries above"
        fi
    done
    echo "ldd $bin/authzd:"
    ldd "$bin/authzd" | sed 's/ (0x[0-9a-f]*)//; s/^/  /'

    [ "$("$bin/authzctl" demo --db "$work/authz.db" 2>/dev/null)" = 1 ] || fail "authzctl demo did not print version 1"
    "$bin/authzd" --db "$work/authz.db" --socket "$work/authz.sock" --log-level warning 2>"$work/authzd.log" &
    authzd_pid=$!
    ready=""
    for _ in $(seq 100); do
        if "$bin/authzctl" status --socket "$work/authz.sock" --ready >"$work/status.json" 2>/dev/null; then
            ready=yes
            break
        fi
        kill -0 "$authzd_pid" 2>/dev/null || fail "authzd exited: $(cat "$work/authzd.log")"
        sleep 0.1
    done
    [ -n "$ready" ] || fail "authzd not ready after 10 s: $(cat "$work/authzd.log")"
    grep -q '"snapshot_version": 1,' "$work/status.json" || fail "unexpected status: $(cat "$work/status.json")"

    query='{"op":"effective_permission","user":"linus","project":"revenue-dashboard"}'
    expected='{"level":"full_access","reason":"owner","steps":[{"reason":"owner","level":"full_access"}],"snapshot_version":1}'
    answer=$(echo "$query" | "$bin/authzctl" check --socket "$work/authz.sock")
    [ "$answer" = "$expected" ] || fail "the check over the socket answered '$answer'"
    local_answer=$(echo "$query" | "$bin/authzctl" check --db "$work/authz.db")
    [ "$local_answer" = "$expected" ] || fail "the local check answered '$local_answer'"

    kill -TERM "$authzd_pid"
    status=0
    wait "$authzd_pid" || status=$?
    authzd_pid=""
    [ "$status" -eq 0 ] || fail "authzd exited $status on SIGTERM: $(cat "$work/authzd.log")"
    [ ! -e "$work/authz.sock" ] || fail "authzd left its socket behind"
    [ ! -s "$work/authzd.log" ] || fail "authzd logged warnings: $(cat "$work/authzd.log")"
    echo "packaged authzctl and authzd: ready, answered $answer over the socket, stopped on SIGTERM with status 0"
    exit 0
fi

tarball=${1:-}
if [ -z "$tarball" ]; then
    tarball=$(scripts/package.sh | tail -n 1)
fi
toolchain=$(dirname "$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")")

extracted=$(mktemp -d)
chmod 0755 "$extracted"
trap 'rm -rf "$extracted"' EXIT
tar -C "$extracted" -xzf "$tarball"
root=$(echo "$extracted"/authz-sidecar-*)
[ -d "$root" ] || { echo "error: $tarball holds no authz-sidecar-* folder" >&2; exit 1; }
for file in bin/authzd bin/authzctl deploy/authzd.service deploy/authzd.env deploy/kubernetes/kustomization.yaml \
    deploy/Containerfile runtime-packages.txt VERSION README.md; do
    [ -e "$root/$file" ] || { echo "error: $tarball lacks $file" >&2; exit 1; }
done
echo "$tarball: $(cd "$root" && find . -type f | sort | tr '\n' ' ')"

# The Debian packages the tarball names (what deploy/Containerfile installs) are what this
# machine has: the binaries below run against them.
while read -r package; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || { echo "error: runtime package $package is not installed" >&2; exit 1; }
done <"$root/runtime-packages.txt"

script=$(readlink -f "$0")
inside=(env -i PATH=/usr/bin:/bin HOME="$extracted" bash "$script" --inside "$root" "$toolchain")
if [ "$(id -u)" -eq 0 ] && [ "$toolchain" != / ] && [ "$toolchain" != /usr ] \
    && unshare --mount --propagation private true 2>/dev/null; then
    # tmpfs over the toolchain's folder, in a mount namespace of this command only.
    unshare --mount --propagation private \
        bash -c 'mount -t tmpfs -o ro,size=64k authz-no-toolchain "$1" && shift && exec "$@"' _ "$toolchain" "${inside[@]}"
else
    echo "note: cannot hide $toolchain in a mount namespace here (needs root and unshare)"
    "${inside[@]}"
fi
