#!/usr/bin/env python3
# test_quantize_hf_peer.py — our quantizer's files read by the peers' own dequantizers: `quern quantize` writes
# GPTQ (RTN, g128, v1), AWQ (g64, a short search) and NF4 (double quant) directories of SmolLM2-135M; every linear
# is decoded on the CPU by AutoGPTQ's QuantLinear torch branch / AutoAWQ's dequantize_gemm / bitsandbytes'
# dequantize_4bit, everything else (embeddings, AWQ's folded norms) is read as stored, and the fp32 torch forward of
# scripts/hf_quant_e2e.py must give the perplexity that `quern perplexity` gives on the same directory within 0.1%
# (one 512-token window). Skips (77) without the peers' venv, the model or the texts.
# QN_TEST_LABELS: cpu peer slow
import json
import os
import subprocess
import sys
import tempfile

HOME = os.path.expanduser("~")
PY = os.path.join(HOME, ".cache/quern/venv-peers/bin/python")
GGUF = os.path.join(HOME, ".cache/quern/models/SmolLM2-135M-Instruct.Q4_1.gguf")
TEXT = os.path.join(HOME, ".cache/quern/data/alice29.txt")
CALIB = os.path.join(HOME, ".cache/quern/data/lcet10.txt")
SRC = os.environ.get("QN_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))


def peer_weights(d):
    """The directory's tensors with every quantized linear replaced by the peer's fp16 decoding."""
    import torch
    from safetensors.torch import load_file

    import hf_quant_e2e as e

    cfg = json.load(open(os.path.join(d, "config.json")))
    qc = cfg["quantization_config"]
    sd = load_file(os.path.join(d, "model.safetensors"))
    W, n_dec = {}, 0
    nf4_tag = ".quant_state.bitsandbytes__nf4"  # on "P.weight": the bnb tensors are P.weight and P.weight.*
    mods = sorted({k[: -len(nf4_tag)] if k.endswith(nf4_tag) else k.rsplit(".", 1)[0]
                   for k in sd if k.endswith((".qweight", nf4_tag))})
    if qc["quant_method"] == "gptq":
        for n in ["auto_gptq", "auto_gptq.nn_modules", "auto_gptq.nn_modules.qlinear"]:
            e.stub_package(n)
        from auto_gptq.nn_modules.qlinear.qlinear_cuda import QuantLinear
    elif qc["quant_method"] == "awq":
        for n in ["awq", "awq.utils"]:
            e.stub_package(n)
        from awq.utils.packing_utils import dequantize_gemm
    else:
        import bitsandbytes.functional as F
    for m in mods:
        if qc["quant_method"] == "gptq":
            K, N = sd[m + ".g_idx"].shape[0], sd[m + ".scales"].shape[1]
            ql = QuantLinear(qc["bits"], qc["group_size"], K, N, False, weight_dtype=torch.float16)
            for t in ("qweight", "qzeros", "scales", "g_idx"):
                setattr(ql, t, sd.pop(f"{m}.{t}"))
            real = torch.matmul  # the torch branch builds scales[g_idx]·(q − zeros), then multiplies: intercept
            torch.matmul = lambda a, b: b
            try:
                W[m + ".weight"] = ql(torch.empty(K, K, dtype=torch.float16)).t().contiguous().half()
            finally:
                torch.matmul = real
        elif qc["quant_method"] == "awq":
            q, z, s = (sd.pop(f"{m}.{t}") for t in ("qweight", "qzeros", "scales"))
            W[m + ".weight"] = dequantize_gemm(q, z, s, 4, qc["group_size"]).t().contiguous().half()
        else:
            st = {k[len(m) + 1:]: sd.pop(k) for k in list(sd) if k.startswith(m + ".")}
            qs = F.QuantState.from_dict(st, device=torch.device("cpu"))
            W[m] = F.dequantize_4bit(sd.pop(m), qs).contiguous()
        n_dec += 1
    W.update(sd)
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    return cfg, W, n_dec


def child(quern):
    sys.path.insert(0, os.path.join(SRC, "scripts"))
    import torch

    import hf_quant_e2e as e

    torch.set_num_threads(2)
    tokens, add_bos, bos = e.tokenize(GGUF, TEXT)
    bad = []
    with tempfile.TemporaryDirectory() as t:
        base = os.path.join(t, "base")
        subprocess.check_call([quern, "export-hf", GGUF, base, "--dtype", "f16"], stdout=subprocess.DEVNULL)
        short = ["--calib", CALIB, "--calib-samples", "1", "--calib-ctx", "256", "--awq-grid", "2"]
        for name, args in (("gptq-rtn", ["gptq", "--rtn"]), ("awq", ["awq", "--group-size", "64", *short]),
                           ("nf4dq", ["nf4", "--double-quant"])):
            d = os.path.join(t, name)
            subprocess.check_call([quern, "quantize", base, d, *args, "-t", "2", "-q"])
            cfg, W, n_dec = peer_weights(d)
            ref = e.perplexity(cfg, W, tokens, add_bos, bos, 512, 1)
            ours, _ = e.quern_ppl(quern, d, GGUF, TEXT, 1, 512, 2)
            rel = (ours - ref) / ref
            print(f"{name:8s} {n_dec} linears decoded by the peer: torch ppl {ref:.4f}  quern ppl {ours:.4f}  "
                  f"diff {100 * rel:+.3f}%", flush=True)
            if n_dec != 7 * cfg["num_hidden_layers"] or abs(rel) > 0.001:
                bad.append(name)
    return 1 if bad else 0


def main():
    quern = os.environ.get("QN_QUERN_BIN")
    for need in (PY, GGUF, TEXT, CALIB, quern or ""):
        if not need or not os.path.exists(need):
            print(f"skip: {need or 'QN_QUERN_BIN'} absent")
            return 77
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(os.path.abspath(quern))
    return subprocess.call([PY, os.path.abspath(__file__), "--child"])


if __name__ == "__main__":
    sys.exit(main())
