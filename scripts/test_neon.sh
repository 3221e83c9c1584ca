#!/usr/bin/env bash
# test_neon.sh [BUILD_DIR] — the arm64 (NEON) CPU kernels, tested on this x86-64 machine: cross-builds the
# kernels, the runtime and their C tests for aarch64 (scripts/aarch64-linux-gnu.cmake) and runs the tests
# labelled `neon` under qemu-aarch64 (user-mode emulation: right answers, meaningless timings).
# Installs, when missing: gcc-aarch64-linux-gnu, qemu-user and the arm64 cmocka/jansson/PCRE2 -dev packages
# (Debian multiarch). libevent-dev is not installed for arm64: its arm64 package replaces the amd64 one, so
# the cross build leaves the HTTP host and the quern executable out (QN_BUILD_HOST=OFF).
set -euo pipefail
source "$(dirname "$0")/common.sh"
dir="${1:-$QN_ROOT/build-arm64}"
pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libcmocka-dev:arm64 libjansson-dev:arm64 libpcre2-dev:arm64)
if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
cmake -S "$QN_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$QN_ROOT/scripts/aarch64-linux-gnu.cmake" -DQN_CPU_ONLY=ON -DQN_BUILD_HOST=OFF \
  -DQN_PYTHON="$QN_VENV/bin/python" >/dev/null
ninja -C "$dir" -j"$(nproc)"
echo "=== ctest: arm64 cross build under qemu-aarch64 (label neon) ==="
ctest --test-dir "$dir" -L neon -j"$(nproc)" --output-on-failure --no-tests=error
