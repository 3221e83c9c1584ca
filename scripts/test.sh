#!/usr/bin/env bash
# test.sh — the whole test suite: dependencies, model, peer venv (gguf-py, llama-cpp-python, openai,
# litellm), a Release build and an ASan+UBSan build, then ctest. GPU tests (label gpu) skip without
# a GPU; run them on a GPU machine with bench/gpu_check.sh.
set -euo pipefail
here="$(dirname "$0")"
source "$here/common.sh"
bash "$here/install_deps.sh"
bash "$here/fetch_model.sh"
bash "$here/fetch_testdata.sh"
bash "$here/setup_venv.sh"
jobs="$(nproc)"
bash "$here/build.sh" "$QN_BUILD"
bash "$here/build.sh" "$QN_ROOT/build-asan" -DQN_SANITIZE=ON -DQN_CPU_ONLY=ON
rc=0
echo "=== ctest: ASan+UBSan build (labels cpu, excluding slow/peer) ==="
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir "$QN_ROOT/build-asan" -L cpu -LE 'slow|peer' -j"$jobs" --output-on-failure || rc=1
echo "=== ctest: Release build (all tests) ==="
# the llama.cpp parity test compares perplexity on the whole of alice29 (QN_PARITY_PPL_CHUNKS=N: N windows;
# llama.cpp's side from tests/fixtures/llamacpp/ppl_alice29.json, 3 windows live; QN_PARITY_PPL_LIVE=1: all live)
ctest --test-dir "$QN_BUILD" -j"$jobs" --output-on-failure || rc=1
exit $rc
