#!/usr/bin/env bash
# gpu_llamacpp.sh — builds the peer (llama.cpp with ggml-cuda, from the source the llama-cpp-python sdist
# vendors; scripts/build_llamacpp.sh fetches it) on the GPU machine: llama-bench and test-backend-ops,
# for sm_90 only. The source travels as .gpullama/llama.tar.xz (git-ignored; made by
#   tar -C ~/.cache/quern -cJf .gpullama/llama.tar.xz llama.cpp  (minus build/, models/, non-CUDA backends)).
# Output: $QN_LLAMA_DIR (default /tmp/llama.cpp) with build-cuda/bin/{llama-bench,test-backend-ops}.
# The build costs ~340 s of device time. `bench/gpu_llamacpp.sh --make-bin` (on the dev machine, after the same
# build there: its CUDA toolkit is the GPU machine's, 13.0, and nvcc needs no GPU) packs the built binaries and
# shared libraries into .gpullama/llama-bin.tar.xz (~40 MB, git-ignored; with the tree and .gpudeps it just fits a
# device call's 64 MiB carry); where that bundle travels, this script unpacks it to the same /tmp/llama.cpp, where
# the build's RPATH finds the libraries, instead of building. Build it here with
#   cmake -S ~/.cache/quern/llama.cpp -B /tmp/llama.cpp/build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release \
#     -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF -DGGML_AVX2=ON \
#     -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
#     -DLLAMA_BUILD_TESTS=ON -DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,/tmp/custub \
#     && ninja -C /tmp/llama.cpp/build-cuda llama-bench test-backend-ops
# where /tmp/custub/libcuda.so.1 links to the toolkit's stub (lib64/stubs/libcuda.so): with no driver here, the
# executables' link needs it to resolve libggml-cuda's driver calls (the driver's own library is used at run time).
set -uo pipefail
cd "$(dirname "$0")/.."
D=${QN_LLAMA_DIR:-/tmp/llama.cpp}
BIN=.gpullama/llama-bin.tar.xz
if [ "${1:-}" = "--make-bin" ]; then
    [ -x "$D/build-cuda/bin/test-backend-ops" ] || { echo "gpu_llamacpp: no build at $D/build-cuda"; exit 1; }
    mkdir -p .gpullama "$D/ggml/include"
    cp ~/.cache/quern/llama.cpp/ggml/include/ggml.h "$D/ggml/include/" # gpu_kernels_vs_ggml.sh reads enum ggml_op
    (cd "$D/build-cuda/bin" && strip --strip-unneeded ./*.so* llama-bench test-backend-ops 2>/dev/null)
    tar -C "$(dirname "$D")" -cJf "$BIN" "$(basename "$D")/ggml/include/ggml.h" \
        $(cd "$(dirname "$D")" && ls -d "$(basename "$D")"/build-cuda/bin/{llama-bench,test-backend-ops,*.so*})
    du -sh "$BIN"
    exit 0
fi
if [ ! -x "$D/build-cuda/bin/llama-bench" ] && [ -f "$BIN" ]; then
    mkdir -p "$(dirname "$D")" && tar -C "$(dirname "$D")" -xJf "$BIN"
    ldd "$D/build-cuda/bin/test-backend-ops" "$D/build-cuda/bin/llama-bench" | grep "not found" &&
        echo "gpu_llamacpp: the unpacked binaries miss libraries (above)"
fi
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
