#!/usr/bin/env bash
# Builds examples/swift-service the way a service's own package would build it: depending on
# this repository by URL and version (Package.swift: from "0.1.0").
#
#   examples/swift-service/build.sh            build .build/debug/swift-service
#
# The URL is resolved to a bare clone of this repository's current commit (HEAD: commit what
# you want built), tagged 0.1.<commit time> (SwiftPM remembers which commit a version was and
# refuses the same version on another commit, so each commit gets its own), through a SwiftPM
# mirror written into the example's own .swiftpm/ (git-ignored). The other packages come as usual. SwiftPM refuses a
# package depended on by version whose products' targets carry unsafeFlags, so this build is
# the check that AuthzClient (and what it needs) can be used by URL and version.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
url=https://github.com/authz-sidecar/authz-sidecar.git
version=0.1.$(git -C "$root" log -1 --format=%ct)
work=$here/.build-deps

if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
    echo "note: the example builds against the committed HEAD; uncommitted changes are not in it" >&2
fi
rm -rf "$work"
mkdir -p "$work"
git clone -q --bare "$root" "$work/authz-sidecar.git"
git -C "$work/authz-sidecar.git" tag -f "$version" "$(git -C "$root" rev-parse HEAD)" >/dev/null
swift package --package-path "$here" config set-mirror --original "$url" --mirror "file://$work/authz-sidecar.git"
# A fresh resolution each time: the tag moves with HEAD.
rm -f "$here/Package.resolved"
swift package --package-path "$here" reset
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! swift build --package-path "$here" 2>&1 | tee "$log"; then
    exit 1
fi
if grep -E "^$here/Sources/.*: warning:" "$log" | sort -u | grep .; then
    echo "error: examples/swift-service builds with warnings (above)" >&2
    exit 1
fi
echo "examples/swift-service: built $(swift build --package-path "$here" --show-bin-path)/swift-service against $url at $version (HEAD $(git -C "$root" rev-parse --short HEAD))"
