#!/usr/bin/env bash
# Installs the system packages the sidecar builds against, if any are missing.
# Debian/Ubuntu: libsqlite3-dev (the store), libprotobuf-c-dev + protobuf-c-compiler (the
# wire format), pkg-config (SwiftPM finds both libraries through it), sqlite3 (operators),
# protobuf-compiler (protoc: the Python client's generated code, scripts/gen-python.sh).
set -euo pipefail

packages=(libsqlite3-dev libprotobuf-c-dev protobuf-c-compiler pkg-config sqlite3 protobuf-compiler)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "installing missing system packages: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
