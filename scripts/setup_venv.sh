#!/usr/bin/env bash
# setup_venv.sh — the Python venv used only by tests and tools that compare against peers:
# gguf-py, numpy, llama-cpp-python (built from its sdist, CPU), openai, litellm, transformers + sentencepiece
# (llama.cpp's HF converter as a peer), NVIDIA's cuobjdump and nvdisasm (the wgmma SASS check, tests/kernels/test_wgmma_sass.py:
# the CUDA toolkit here ships nvcc without it).
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [ ! -x "$QN_VENV/bin/python" ]; then
  "$QN_SYS_PY" -m venv "$QN_VENV"
fi
py="$QN_VENV/bin/python"
"$py" -m pip install -q --upgrade pip >/dev/null
"$py" -c "import gguf, numpy" 2>/dev/null || "$py" -m pip install -q gguf numpy
"$py" -c "import openai, litellm, aiohttp" 2>/dev/null || "$py" -m pip install -q openai litellm aiohttp
ls "$QN_VENV"/lib/python3*/site-packages/nvidia/*/bin/nvdisasm >/dev/null 2>&1 ||
  "$py" -m pip install -q "nvidia-cuda-cuobjdump==13.5.37" "nvidia-cuda-nvdisasm==13.5.37" # -sass runs nvdisasm
# llama.cpp's convert_hf_to_gguf.py as the peer of `quern convert` (tests/e2e/test_convert_*.py): the
# transformers version its requirements pin, sentencepiece (imported before the BPE path), the HF
# tokenizers library (reads our tokenizer.json); torch is replaced by tests/fixtures/torch_stub
"$py" -c "import transformers, sentencepiece, tokenizers, google.protobuf" 2>/dev/null ||
  "$py" -m pip install -q "transformers==4.57.6" sentencepiece tokenizers protobuf
# llama-cpp-python built from source for this CPU (qn_ggml_cpu_args: native ISA, never AMX); the stamp
# records the package and flags it was built with, and a venv built otherwise is rebuilt. LLAVA_BUILD=OFF: the
# multimodal library (tools/mtmd) is imported only by llava chat handlers, which no test uses; it is minutes
# of the CI's 2-core build. LLAMA_BUILD_COMMON=OFF: llama.cpp's common library (argument parsing, chat
# templates; libllama-common) is not loaded by the Python package (it loads libllama and ggml only), and it was
# ~175 s of the 425 s build on a 2-core machine. llama-cpp-python forces it on in its CMakeLists.txt, so the build
# runs from the sdist (fetch_testdata.sh) with that one line turned off; where the line is not found, the sdist
# builds as it is.
ggml_args="$(qn_ggml_cpu_args) -DLLAVA_BUILD=OFF -DLLAMA_BUILD_COMMON=OFF"
stamp="$QN_VENV/.llamacpp-build"
if ! "$py" -c "import llama_cpp" 2>/dev/null || [ "$(cat "$stamp" 2>/dev/null)" != "$QN_LLAMACPP_PKG $ggml_args" ]; then
  echo "setup_venv: building $QN_LLAMACPP_PKG from source (a few minutes; $ggml_args)..."
  "$py" -m pip install -q scikit-build-core cmake ninja
  "$py" -m pip uninstall -q -y llama-cpp-python >/dev/null 2>&1 || true
  src=$(mktemp -d)
  sdist=$(ls "$QN_CACHE"/sdist/llama_cpp_python-"${QN_LLAMACPP_PKG#*==}".tar.gz 2>/dev/null || true)
  [ -n "$sdist" ] || "$QN_SYS_PY" -m pip download -q --no-deps --no-binary :all: "$QN_LLAMACPP_PKG" -d "$src"
  tar xzf "${sdist:-$(ls "$src"/llama_cpp_python-*.tar.gz)}" -C "$src"
  dir=$(ls -d "$src"/llama_cpp_python-*/)
  force='set(LLAMA_BUILD_COMMON ON CACHE BOOL "Build llama.cpp common library" FORCE)'
  if grep -qF "$force" "$dir/CMakeLists.txt"; then
    "$QN_SYS_PY" -c 'import sys; p, s = sys.argv[1:]; t = open(p).read()
open(p, "w").write(t.replace(s, "# (setup_venv.sh: LLAMA_BUILD_COMMON left to CMAKE_ARGS)"))' "$dir/CMakeLists.txt" "$force"
  else
    echo "setup_venv: $QN_LLAMACPP_PKG's CMakeLists.txt does not force LLAMA_BUILD_COMMON as expected: built as it is"
  fi
  # --no-cache-dir: pip's wheel cache knows the version, not the flags it was built with
  CMAKE_ARGS="$ggml_args" "$py" -m pip install -q --no-build-isolation --no-cache-dir "$dir"
  rm -rf "$src"
  "$py" -c "import llama_cpp"
  echo "$QN_LLAMACPP_PKG $ggml_args" >"$stamp"
fi
echo "setup_venv: ok ($py)"
