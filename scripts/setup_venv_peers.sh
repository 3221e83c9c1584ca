#!/usr/bin/env bash
# setup_venv_peers.sh — the separate venv of the GPTQ / AWQ / bitsandbytes peers (~/.cache/quern/venv-peers), used by
# tests/fixtures/make_quant_fixtures.py (regenerates tests/fixtures/quant/), scripts/hf_quant_e2e.py and
# tests/e2e/test_hf_quant_e2e.py (which skips without it). CPU only; torch from PyPI pulls its CUDA libraries
# (several GB), which is why scripts/test.sh does not run this. Versions the fixtures were made with:
# tests/fixtures/quant/versions.json. auto-gptq and autoawq pin dependency sets that no longer resolve against current
# torch/transformers, so they go in with --no-deps; gptqmodel builds from its sdist without its CUDA extensions.
set -euo pipefail
source "$(dirname "$0")/common.sh"
venv="$HOME/.cache/quern/venv-peers"
[ -x "$venv/bin/python" ] || "$QN_SYS_PY" -m venv "$venv"
pip="$venv/bin/python -m pip"
$pip install -q --upgrade pip >/dev/null
$pip install -q torch==2.15.0 numpy safetensors==0.8.0 bitsandbytes==0.50.2 transformers accelerate gguf
$pip install -q --no-deps auto-gptq==0.7.1 autoawq==0.2.9
$pip install -q --no-deps --no-build-isolation gptqmodel==7.7.0
$pip install -q pypcre logbar device-smi threadpoolctl tokenicer defuser dill pillow datasets requests torchao
"$venv/bin/python" - <<'PY'
import bitsandbytes, torch
from gptqmodel.nn_modules.qlinear.torch import TorchLinear  # noqa: F401 (the GPTQ v2 packer imports)
print("setup_venv_peers: ok, torch", torch.__version__, "bitsandbytes", bitsandbytes.__version__)
PY
