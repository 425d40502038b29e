#!/usr/bin/env bash
# Builds the self-contained release tarball:
#
#   dist/authz-sidecar-VERSION-linux-ARCH.tar.gz
#     authz-sidecar-VERSION-linux-ARCH/
#       bin/authzd, bin/authzctl      release builds, Swift runtime linked in statically
#       deploy/                       systemd unit and environment, kubernetes/, Containerfile
#       README.md, VERSION
#       runtime-packages.txt          the Debian packages providing the shared libraries
#                                     the binaries need (libc, libsqlite3, libprotobuf-c, …)
#
# The binaries link the Swift standard library and Foundation statically
# (--static-swift-stdlib); this script fails if either one still needs any library of the
# Swift toolchain (libswift*, libFoundation*, libdispatch, libBlocksRuntime, anything under
# the toolchain's directory) or a library outside the allowed system list. VERSION is the
# VERSION file if there is one, else `git describe --tags --always --dirty`. The build
# uses its own scratch folder (.build-static) and takes several minutes the first time.
# Prints the tarball's path as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f VERSION ]; then
    version=$(tr -d '[:space:]' <VERSION)
else
    version=$(git describe --tags --always --dirty 2>/dev/null || echo unknown)
fi
arch=$(uname -m)
name="authz-sidecar-$version-linux-$arch"

scripts/install-deps.sh
build=(swift build -c release --static-swift-stdlib --scratch-path .build-static)
for product in authzd authzctl; do
    echo "building $product (release, static Swift runtime)…" >&2
    "${build[@]}" --product "$product" >&2
done
bin=$("${build[@]}" --show-bin-path)

# The shared libraries a packaged binary may need: the C library and the system libraries
# the sidecar is built on (from Debian's packages, not the toolchain).
allowed='^(linux-vdso\.so\.1|ld-linux[-a-z0-9_]*\.so\.[0-9]+|libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libutil\.so\.1|libsqlite3\.so\.0|libprotobuf-c\.so\.1|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libz\.so\.1)$'
toolchain=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")
check_libraries() {
    local binary=$1 listing problems=0
    listing=$(env -u LD_LIBRARY_PATH ldd "$binary")
    while read -r library _ path _; do
        [ -n "$library" ] || continue
        # "libfoo.so => /path (0x…)", "/lib64/ld-linux-x86-64.so.2 (0x…)", "linux-vdso.so.1 (0x…)"
        local soname=${library##*/}
        if [ "$path" = "not" ]; then
            echo "error: $binary needs $soname, which is not found" >&2
            problems=1
        elif [[ "$path" == "$toolchain"/* || "$library" == "$toolchain"/* ]] \
            || [[ "$soname" =~ ^lib(swift|Foundation|dispatch|BlocksRuntime|_FoundationICU|icu) ]]; then
            echo "error: $binary needs $soname from the Swift toolchain ($path)" >&2
            problems=1
        elif ! [[ "$soname" =~ $allowed ]]; then
            echo "error: $binary needs $soname ($path), which is not on the allowed list of system libraries" >&2
            problems=1
        fi
    done <<<"$(sed -e 's/^[[:space:]]*//' <<<"$listing")"
    if readelf -d "$binary" | grep -E '\((RUNPATH|RPATH)\)' | grep -qF "$toolchain"; then
        echo "error: $binary has a run path into the Swift toolchain:" >&2
        readelf -d "$binary" | grep -E '\((RUNPATH|RPATH)\)' >&2
        problems=1
    fi
    return $problems
}

rm -rf "dist/$name" "dist/$name.tar.gz"
mkdir -p "dist/$name/bin"
for product in authzd authzctl; do
    install -m 0755 "$bin/$product" "dist/$name/bin/$product"
    check_libraries "dist/$name/bin/$product"
done
cp -R deploy "dist/$name/deploy"
cp README.md "dist/$name/"
for extra in LICENSE LICENSE.txt NOTICE; do
    [ -f "$extra" ] && cp "$extra" "dist/$name/"
done
echo "$version" >"dist/$name/VERSION"

# The Debian packages that provide the libraries the binaries load (for deploy/Containerfile
# and other hosts): found from this machine's resolution of each library.
for product in authzd authzctl; do
    ldd "dist/$name/bin/$product" | awk '$3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u | while read -r path; do
    dpkg-query -S "$(readlink -f "$path")" 2>/dev/null || dpkg-query -S "$path" 2>/dev/null || {
        echo "error: no Debian package provides $path" >&2
        exit 1
    }
done | cut -d: -f1 | sort -u >"dist/$name/runtime-packages.txt"

tar -C dist --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$(git log -1 --format=%ct 2>/dev/null || date +%s)" \
    -czf "dist/$name.tar.gz" "$name"
echo "packaged $(du -h "dist/$name.tar.gz" | cut -f1) with $(tr '\n' ' ' <"dist/$name/runtime-packages.txt")from Debian" >&2
echo "dist/$name.tar.gz"
