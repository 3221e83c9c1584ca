#!/usr/bin/env bash
# gpu_llamacpp.sh — builds the peer (llama.cpp with ggml-cuda, from the source the llama-cpp-python sdist
# vendors; scripts/build_llamacpp.sh fetches it) on the GPU machine: llama-bench and test-backend-ops,
# for sm_90 only. The source travels as .gpullama/llama.tar.xz (git-ignored; made by
#   tar -C ~/.cache/quern -cJf .gpullama/llama.tar.xz llama.cpp  (minus build/, models/, non-CUDA backends)).
# Output: $QN_LLAMA_DIR (default /tmp/llama.cpp) with build-cuda/bin/{llama-bench,test-backend-ops}.
set -uo pipefail
cd "$(dirname "$0")/.."
D=${QN_LLAMA_DIR:-/tmp/llama.cpp}
if [ ! -x "$D/build-cuda/bin/llama-bench" ]; then
    [ -f .gpullama/llama.tar.xz ] || { echo "gpu_llamacpp: .gpullama/llama.tar.xz missing"; exit 1; }
    mkdir -p "$(dirname "$D")" && tar -C "$(dirname "$D")" -xJf .gpullama/llama.tar.xz
    cmake -S "$D" -B "$D/build-cuda" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DLLAMA_CURL=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=ON -DGGML_NATIVE=ON \
        >"${OUT:-/tmp}/llama_configure.log" 2>&1 || { tail -20 "${OUT:-/tmp}/llama_configure.log"; exit 1; }
    ninja -C "$D/build-cuda" llama-bench test-backend-ops >"${OUT:-/tmp}/llama_build.log" 2>&1 ||
        { tail -30 "${OUT:-/tmp}/llama_build.log"; exit 1; }
fi
ls -la "$D/build-cuda/bin/llama-bench" "$D/build-cuda/bin/test-backend-ops"
