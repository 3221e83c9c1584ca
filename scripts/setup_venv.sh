#!/usr/bin/env bash
# setup_venv.sh — the Python venv used only by tests and tools that compare against peers:
# gguf-py, numpy, llama-cpp-python (built from its sdist, CPU), openai, litellm, transformers + sentencepiece
# (llama.cpp's HF converter as a peer).
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [ ! -x "$QN_VENV/bin/python" ]; then
  "$QN_SYS_PY" -m venv "$QN_VENV"
fi
py="$QN_VENV/bin/python"
"$py" -m pip install -q --upgrade pip >/dev/null
"$py" -c "import gguf, numpy" 2>/dev/null || "$py" -m pip install -q gguf numpy
"$py" -c "import openai, litellm, aiohttp" 2>/dev/null || "$py" -m pip install -q openai litellm aiohttp
# llama.cpp's convert_hf_to_gguf.py as the peer of `quern convert` (tests/e2e/test_convert_*.py): the
# transformers version its requirements pin, sentencepiece (imported before the BPE path), the HF
# tokenizers library (reads our tokenizer.json); torch is replaced by tests/fixtures/torch_stub
"$py" -c "import transformers, sentencepiece, tokenizers, google.protobuf" 2>/dev/null ||
  "$py" -m pip install -q "transformers==4.57.6" sentencepiece tokenizers protobuf
# llama-cpp-python built from source for this CPU (qn_ggml_cpu_args: native ISA, never AMX); the stamp
# records the package and flags it was built with, and a venv built otherwise is rebuilt. LLAVA_BUILD=OFF: the
# multimodal library (tools/mtmd) is imported only by llava chat handlers, which no test uses; it is minutes
# of the CI's 2-core build
ggml_args="$(qn_ggml_cpu_args) -DLLAVA_BUILD=OFF"
stamp="$QN_VENV/.llamacpp-build"
if ! "$py" -c "import llama_cpp" 2>/dev/null || [ "$(cat "$stamp" 2>/dev/null)" != "$QN_LLAMACPP_PKG $ggml_args" ]; then
  echo "setup_venv: building $QN_LLAMACPP_PKG from source (a few minutes; $ggml_args)..."
  "$py" -m pip install -q scikit-build-core cmake ninja
  "$py" -m pip uninstall -q -y llama-cpp-python >/dev/null 2>&1 || true
  # --no-cache-dir: pip's wheel cache knows the version, not the flags it was built with
  CMAKE_ARGS="$ggml_args" "$py" -m pip install -q --no-build-isolation --no-binary llama-cpp-python \
    --no-cache-dir "$QN_LLAMACPP_PKG"
  "$py" -c "import llama_cpp"
  echo "$QN_LLAMACPP_PKG $ggml_args" >"$stamp"
fi
echo "setup_venv: ok ($py)"
