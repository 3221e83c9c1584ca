#!/usr/bin/env bash
# build_llamacpp.sh — builds llama.cpp's own CLI tools (llama-bench, llama-perplexity, llama-quantize,
# llama-imatrix)
# from the llama-cpp-python sdist's vendored source, CPU only, for benchmarks and peer checks.
# Output: $QN_CACHE/llama.cpp/build/bin/. Not part of the test suite (the venv's llama-cpp-python is).
set -euo pipefail
source "$(dirname "$0")/common.sh"
bash "$(dirname "$0")/fetch_testdata.sh" >/dev/null
src="$QN_CACHE/llama.cpp"
ggml_args="$(qn_ggml_cpu_args)"
stamp="$src/build/.quern-build"
if [ ! -x "$src/build/bin/llama-bench" ] || [ ! -x "$src/build/bin/llama-imatrix" ] ||
   [ "$(cat "$stamp" 2>/dev/null)" != "$ggml_args" ]; then
  # shellcheck disable=SC2086  # ggml_args is a list of -D options
  cmake -S "$src" -B "$src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release $ggml_args -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  ninja -C "$src/build" llama-bench llama-perplexity llama-quantize llama-imatrix
  echo "$ggml_args" >"$stamp"
fi
echo "build_llamacpp: $src/build/bin"
