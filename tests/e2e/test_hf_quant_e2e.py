#!/usr/bin/env python3
# test_hf_quant_e2e.py — a short run of scripts/hf_quant_e2e.py: SmolLM2-135M exported to HF and quantized to NF4
# by bitsandbytes; `quern perplexity` (one 512-token window) must match the perplexity of bitsandbytes' own
# dequantized model within 0.1%. Needs the peers' venv (tests/fixtures/quant/README.md) and the default model;
# skips (77) without them. The full table (f16, GPTQ, GPTQ act-order v2, AWQ, NF4; 4 windows) is
# bench/results/quality-hf-quant-cpu.md.
# QN_TEST_LABELS: cpu peer slow
import os
import subprocess
import sys
import tempfile

home = os.path.expanduser("~")
py = os.path.join(home, ".cache/quern/venv-peers/bin/python")
gguf = os.path.join(home, ".cache/quern/models/SmolLM2-135M-Instruct.Q4_1.gguf")
text = os.path.join(home, ".cache/quern/data/alice29.txt")
quern = os.environ.get("QN_QUERN_BIN")
src = os.environ.get("QN_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))
for need in (py, gguf, text, quern or ""):
    if not need or not os.path.exists(need):
        print(f"skip: {need or 'QN_QUERN_BIN'} absent")
        sys.exit(77)
with tempfile.TemporaryDirectory() as out:
    rc = subprocess.call([py, os.path.join(src, "scripts/hf_quant_e2e.py"), "--quern", quern, "--only", "nf4",
                          "--chunks", "1", "--out", out, "--threads", "2"])
sys.exit(rc)
