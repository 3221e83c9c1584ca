#!/usr/bin/env bash
# setup_venv_vllm_client.sh — vLLM's own serving benchmark client (`vllm bench serve`, vllm/benchmarks/serve.py) in a
# venv of its own (~/.cache/quern/venv-vllm-client; QN_VLLM_CLIENT_VENV overrides), used by
# tests/e2e/test_vllm_bench_client.py (which skips without it) to show that `quern serve` speaks what that client
# expects. The client code runs unmodified from the vllm 0.33.0 wheel.
#
# Why so big (about 7 GB): every module under vllm/ imports torch on the way in (vllm/env_override.py), and PyPI's
# Linux torch needs its CUDA libraries to import even on a machine without a GPU (without them: "libcufile.so.0:
# cannot open shared object file"). What is left out is the rest of vLLM's GPU stack: the wheel goes in with
# --no-deps beside scripts/vllm_client_requirements.txt, the exact set resolved from vLLM's declared requirements
# minus its GPU kernel packages (that file's header lists them). vllm._C (the CUDA extension) then fails to load
# and vLLM logs "Failed to import from vllm._C"; the benchmark client never calls into it.
# scripts/test.sh does not run this (size), like setup_venv_peers.sh.
set -euo pipefail
source "$(dirname "$0")/common.sh"
venv="${QN_VLLM_CLIENT_VENV:-$QN_CACHE/venv-vllm-client}"
[ -x "$venv/bin/python" ] || "$QN_SYS_PY" -m venv "$venv"
pip="$venv/bin/python -m pip"
$pip install -q --upgrade pip >/dev/null
$pip install -q --no-deps -r "$QN_ROOT/scripts/vllm_client_requirements.txt"
$pip install -q --no-deps --only-binary :all: vllm==0.33.0
# the client path imports: the CLI, the serve benchmark, its datasets and the HF tokenizer wrapper
"$venv/bin/vllm" bench serve --help >/dev/null 2>&1 || { echo "setup_venv_vllm_client: vllm bench serve --help failed" >&2; exit 1; }
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
print("setup_venv_vllm_client: ok, vllm", md.version("vllm"), "torch", md.version("torch"),
      "transformers", md.version("transformers"), "aiohttp", md.version("aiohttp"))
PY
