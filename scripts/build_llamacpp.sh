#!/usr/bin/env bash
# build_llamacpp.sh — builds llama.cpp's own CLI tools (llama-bench, llama-perplexity, llama-quantize,
# llama-imatrix)
# from the llama-cpp-python sdist's vendored source, CPU only, for benchmarks and peer checks.
# Output: $QN_CACHE/llama.cpp/build/bin/. Not part of the test suite (the venv's llama-cpp-python is).
set -euo pipefail
source "$(dirname "$0")/common.sh"
bash "$(dirname "$0")/fetch_testdata.sh" >/dev/null
src="$QN_CACHE/llama.cpp"
if [ ! -x "$src/build/bin/llama-bench" ] || [ ! -x "$src/build/bin/llama-imatrix" ]; then
  cmake -S "$src" -B "$src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  ninja -C "$src/build" llama-bench llama-perplexity llama-quantize llama-imatrix
fi
echo "build_llamacpp: $src/build/bin"
