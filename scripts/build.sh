#!/usr/bin/env bash
# build.sh [BUILD_DIR] [cmake args...] — configure + build (Ninja, Release). CUDA is compiled
# whenever nvcc is found (CPU-only otherwise, or with -DQN_CPU_ONLY=ON).
set -euo pipefail
source "$(dirname "$0")/common.sh"
dir="${1:-$QN_BUILD}"; shift || true
export PATH="$PATH:/usr/local/cuda/bin"
cmake -S "$QN_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQN_PYTHON="$QN_VENV/bin/python" "$@" >/dev/null
ninja -C "$dir" -j"$(nproc)"
