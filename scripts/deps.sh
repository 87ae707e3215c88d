#!/usr/bin/env bash
# Installs the Debian packages Shoal needs to build, test and benchmark.
# Idempotent: it asks apt only for what is missing, and does nothing when all is there.
# Usage: deps.sh [fuzz]
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libxxhash-dev libzstd-dev          # hashing, checkpoint compression
  libssl-dev                         # SHA-256 of the server's ACL passwords
  libcmocka-dev                      # unit test framework
  libhiredis-dev redis-tools redis-server python3-redis   # real clients in tests
  liblmdb-dev librocksdb-dev libleveldb-dev                # benchmark anchors only
)
# `deps.sh fuzz` (make fuzz) also installs clang, whose libFuzzer runs tests/fuzz.
if [ "${1:-}" = fuzz ]; then
  packages+=(clang libclang-rt-14-dev)   # the compiler and its libFuzzer runtime
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
