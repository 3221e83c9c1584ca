#!/usr/bin/env python3
# hf_quant_e2e.py — end-to-end check of the HF loader on the CPU: SmolLM2-135M exported from the default GGUF to
# an HF fp16 checkpoint, quantized by the peers themselves (AutoGPTQ pack, AutoAWQ GEMM pack, bitsandbytes NF4),
# run through `quern perplexity` and compared with the perplexity of the peer's own dequantized model (a torch
# fp32 forward written here). Run with the peers' venv (tests/fixtures/quant/README.md):
#   ~/.cache/quern/venv-peers/bin/python scripts/hf_quant_e2e.py --quern build-hfq/quern [--out DIR] [--chunks 4]
# Steps:
#  1. GGUF -> HF: dequantize every tensor with gguf-py, undo the llama Q/K row permutation (docs/formats.md §1.5),
#     write config.json + model.safetensors (fp16), tied embeddings as in the original.
#  2. Quantize the 7 linears of every layer (embeddings, norms stay fp16; lm_head is tied):
#     gptq: 4-bit, group 128 (the last group of K = 576 is 64 wide), sym, no act-order, checkpoint_format gptq (v1). No calibration data exists here, so
#           the scales come from AutoGPTQ's own Quantizer.find_params per group (RTN) and the weights from its
#           quantize(); the packing is AutoGPTQ's qlinear_cuda.QuantLinear.pack.
#     gptq_act: real GPTQ with act-order (desc_act, g_idx) from AutoGPTQ's GPTQ.fasterquant on calibration windows
#           of the same text that lie after the evaluated ones, 4-bit group 64 sym, packed by GPTQModel as gptq_v2.
#     awq:  4-bit, group 64 (K = 576 is no multiple of 128), GEMM, zero point: AutoAWQ's AwqQuantizer.pseudo_quantize_tensor (RTN, no
#           activation-aware scale search: there is no calibration set) + WQLinear_GEMM.from_linear.
#     nf4:  bitsandbytes functional.quantize_4bit, blocksize 64, double quant, fp16 compute dtype.
#  3. Reference: each peer's dequantizer (AutoGPTQ QuantLinear torch branch, awq dequantize_gemm,
#     bitsandbytes dequantize_4bit) -> fp16 weights -> a Llama forward in fp32 torch -> llama.cpp-style
#     perplexity (windows of --ctx tokens, second half scored), on tokens from llama.cpp's tokenizer
#     (llama_cpp in ~/.cache/quern/venv, the same GGUF vocab quern uses).
#  4. `quern perplexity -m DIR --vocab GGUF -f TEXT --chunks N`; report both and the relative difference.
import argparse
import json
import os
import re
import subprocess
import sys
import time
import types
import site

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

HOME = os.path.expanduser("~")
DEF_GGUF = os.path.join(HOME, ".cache/quern/models/SmolLM2-135M-Instruct.Q4_1.gguf")
DEF_TEXT = os.path.join(HOME, ".cache/quern/data/alice29.txt")
MAIN_PY = os.path.join(HOME, ".cache/quern/venv/bin/python")
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj"]


def stub_package(name):
    for sp in site.getsitepackages():
        path = os.path.join(sp, *name.split("."))
        if os.path.isdir(path):
            m = types.ModuleType(name)
            m.__path__ = [path]
            sys.modules[name] = m
            return
    raise ImportError(name)


# ------------------------------------------------------------------ 1. GGUF -> HF fp16


def export_hf(gguf_path, out):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    r = GGUFReader(gguf_path)
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("tokenizer.ggml.")}
    f.update({k: r.fields[k].contents() for k in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")})
    E, L, F = f["llama.embedding_length"], f["llama.block_count"], f["llama.feed_forward_length"]
    H, HKV = f["llama.attention.head_count"], f["llama.attention.head_count_kv"]
    hd = E // H
    T = {t.name: t for t in r.tensors}

    def get(name):
        t = T[name]
        a = dequantize(t.data, t.tensor_type).astype(np.float32)
        return a.reshape([int(x) for x in reversed(t.shape)])

    def unpermute(w, heads):  # GGUF row h*hd + 2i + p <- HF row h*hd + p*hd/2 + i
        K = w.shape[1]
        return w.reshape(heads, hd // 2, 2, K).transpose(0, 2, 1, 3).reshape(heads * hd, K)

    sd = {"model.embed_tokens.weight": get("token_embd.weight"), "model.norm.weight": get("output_norm.weight")}
    names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj"}
    for i in range(L):
        sd[f"model.layers.{i}.input_layernorm.weight"] = get(f"blk.{i}.attn_norm.weight")
        sd[f"model.layers.{i}.post_attention_layernorm.weight"] = get(f"blk.{i}.ffn_norm.weight")
        for g, h in names.items():
            w = get(f"blk.{i}.{g}.weight")
            if g == "attn_q":
                w = unpermute(w, H)
            elif g == "attn_k":
                w = unpermute(w, HKV)
            sd[f"model.layers.{i}.{h}.weight"] = w
    tied = "output.weight" not in T
    if not tied:
        sd["lm_head.weight"] = get("output.weight")
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": E, "intermediate_size": F,
        "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": HKV, "head_dim": hd,
        "vocab_size": int(T["token_embd.weight"].shape[1]), "max_position_embeddings": f["llama.context_length"],
        "rms_norm_eps": float(f["llama.attention.layer_norm_rms_epsilon"]), "rope_theta": float(f["llama.rope.freq_base"]),
        "tie_word_embeddings": tied, "bos_token_id": f["tokenizer.ggml.bos_token_id"],
        "eos_token_id": f["tokenizer.ggml.eos_token_id"], "hidden_act": "silu", "torch_dtype": "float16",
    }
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)).half() for k, v in sd.items()}
    os.makedirs(out, exist_ok=True)
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=1)
    return cfg, sd


# ------------------------------------------------------------------ 2. peers


def quantize_gptq(cfg, sd, out):
    for n in ["auto_gptq", "auto_gptq.nn_modules", "auto_gptq.nn_modules.qlinear", "auto_gptq.quantization"]:
        stub_package(n)
    from auto_gptq.nn_modules.qlinear.qlinear_cuda import QuantLinear
    from auto_gptq.quantization.quantizer import Quantizer, quantize

    bits, gs = 4, 128
    new, deq = {}, {}
    for name, w in sd.items():
        mod = name[: -len(".weight")]
        if not any(mod.endswith(l) for l in LINEARS):
            new[name] = w
            continue
        W = w.float()
        N, K = W.shape
        q = Quantizer()
        q.configure(bits, perchannel=True, sym=True, mse=False)
        scales, zeros, Q = [], [], torch.empty_like(W)
        for g0 in range(0, K, gs):
            q.find_params(W[:, g0:g0 + gs], weight=True)
            scales.append(q.scale)
            zeros.append(q.zero)
            Q[:, g0:g0 + gs] = quantize(W[:, g0:g0 + gs], q.scale, q.zero, q.maxq)
        lin = nn.Linear(K, N, bias=False)
        lin.weight.data = Q.half()
        ql = QuantLinear(bits, gs, K, N, False, weight_dtype=torch.float16)
        ql.pack(lin, torch.cat(scales, 1), torch.cat(zeros, 1), torch.arange(K, dtype=torch.int32) // gs)
        for t in ("qweight", "qzeros", "scales", "g_idx"):
            new[f"{mod}.{t}"] = getattr(ql, t).contiguous().clone()
        # the peer's dequantizer: QuantLinear's torch branch builds scales[g_idx] * (q - zeros) and then multiplies
        # by x; intercept that product to read the weight it built (x is never used)
        real = torch.matmul
        torch.matmul = lambda a, b: b
        try:
            wd = ql(torch.empty(K, K, dtype=torch.float16))
        finally:
            torch.matmul = real
        deq[name] = wd.t().contiguous().half()
    qc = {"quant_method": "gptq", "bits": bits, "group_size": gs, "desc_act": False, "sym": True,
          "checkpoint_format": "gptq", "damp_percent": 0.01, "static_groups": False, "true_sequential": True}
    return write(cfg, new, out, qc), deq


def quantize_gptq_act(cfg, sd, out, calib):
    """Real GPTQ (AutoGPTQ's GPTQ.fasterquant, desc_act, static_groups off) on calibration windows that the
    perplexity windows never see, layer by layer on the already-quantized prefix (inputs of all 7 linears of a
    layer from one pass, i.e. not true_sequential); packed by GPTQModel in its v2 layout (checkpoint_format
    gptq_v2); reference = GPTQModel's TorchLinear.dequantize_weight()."""
    for n in ["auto_gptq", "auto_gptq.nn_modules", "auto_gptq.nn_modules.qlinear", "auto_gptq.quantization"]:
        stub_package(n)
    from auto_gptq.quantization.gptq import GPTQ
    from gptqmodel.nn_modules.qlinear.torch import TorchLinear

    bits, gs = 4, 64
    W = dict(sd)
    new = {k: v for k, v in sd.items() if not any(k[: -len(".weight")].endswith(l) for l in LINEARS)}
    deq = {}
    xs = [W["model.embed_tokens.weight"].float()[torch.tensor(c)] for c in calib]
    for i in range(cfg["num_hidden_layers"]):
        gq = {}
        for m in LINEARS:
            w = W[f"model.layers.{i}.{m}.weight"]
            lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
            lin.weight.data = w.float().clone()
            gq[m] = GPTQ(lin)
            gq[m].quantizer.configure(bits, perchannel=True, sym=True, mse=False)
        for x in xs:
            cap = {}
            llama_layer(cfg, W, i, x, cap)
            for m in LINEARS:
                gq[m].add_batch(cap[m], None)
        for m in LINEARS:
            name = f"model.layers.{i}.{m}"
            scale, zero, g_idx = gq[m].fasterquant(blocksize=128, percdamp=0.01, group_size=gs, actorder=True)
            lin = gq[m].layer
            N, K = lin.weight.shape
            lin_h = nn.Linear(K, N, bias=False)
            lin_h.weight.data = lin.weight.data.half()
            tl = TorchLinear(bits=bits, group_size=gs, sym=True, desc_act=True, in_features=K, out_features=N, bias=False)
            tl.pack_original(lin_h, scale.float(), zero.float(), g_idx)
            tl.post_init()
            for t in ("qweight", "qzeros", "scales", "g_idx"):
                new[f"{name}.{t}"] = getattr(tl, t).contiguous().clone()
            with torch.no_grad():
                deq[name + ".weight"] = tl.dequantize_weight().t().contiguous().half()
            W[name + ".weight"] = deq[name + ".weight"]
        xs = [llama_layer(cfg, W, i, x) for x in xs]
    qc = {"quant_method": "gptq", "bits": bits, "group_size": gs, "desc_act": True, "sym": True,
          "checkpoint_format": "gptq_v2", "damp_percent": 0.01, "static_groups": False, "true_sequential": False,
          "pack_dtype": "int32"}
    return write(cfg, new, out, qc), deq


def quantize_awq(cfg, sd, out):
    for n in ["awq", "awq.modules", "awq.quantize", "awq.utils"]:
        stub_package(n)
    from awq.modules.linear.gemm import WQLinear_GEMM
    from awq.quantize.quantizer import AwqQuantizer
    from awq.utils.packing_utils import dequantize_gemm

    gs = 64  # AWQ needs K % group == 0: SmolLM2's K = 576 is not a multiple of 128
    new, deq = {}, {}
    for name, w in sd.items():
        mod = name[: -len(".weight")]
        if not any(mod.endswith(l) for l in LINEARS):
            new[name] = w
            continue
        N, K = w.shape
        qz = types.SimpleNamespace(zero_point=True, w_bit=4, group_size=gs)
        wq, scales, zeros = AwqQuantizer.pseudo_quantize_tensor(qz, w.clone())
        lin = nn.Linear(K, N, bias=False).half()
        lin.weight.data = wq
        m = WQLinear_GEMM.from_linear(lin, 4, gs, False, scales.t().contiguous(), zeros.t().contiguous())
        for t in ("qweight", "qzeros", "scales"):
            new[f"{mod}.{t}"] = getattr(m, t).contiguous().clone()
        deq[name] = dequantize_gemm(m.qweight, m.qzeros, m.scales, 4, gs).t().contiguous().half()
    qc = {"quant_method": "awq", "bits": 4, "group_size": gs, "zero_point": True, "version": "gemm",
          "modules_to_not_convert": None}
    return write(cfg, new, out, qc), deq


def quantize_nf4(cfg, sd, out):
    import bitsandbytes.functional as F

    new, deq = {}, {}
    for name, w in sd.items():
        mod = name[: -len(".weight")]
        if not any(mod.endswith(l) for l in LINEARS):
            new[name] = w
            continue
        q, st = F.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
        new[name] = q.contiguous().clone()
        for k, v in st.as_dict(packed=True).items():
            new[f"{name}.{k}"] = v.contiguous().clone()
        deq[name] = F.dequantize_4bit(q, st).contiguous()
    qc = {"quant_method": "bitsandbytes", "load_in_4bit": True, "load_in_8bit": False, "bnb_4bit_quant_type": "nf4",
          "bnb_4bit_use_double_quant": True, "bnb_4bit_compute_dtype": "float16", "bnb_4bit_quant_storage": "uint8",
          "llm_int8_skip_modules": None}
    return write(cfg, new, out, qc), deq


def write(cfg, tensors, out, qc):
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    c = dict(cfg)
    c["quantization_config"] = qc
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump(c, fh, indent=1)
    return out


# ------------------------------------------------------------------ 3. reference forward + perplexity


def tokenize(gguf_path, text_path):
    code = ("import sys, json, llama_cpp\n"
            "m = llama_cpp.Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)\n"
            "t = open(sys.argv[2], 'rb').read()\n"
            "print(json.dumps({'add_bos': m.metadata.get('tokenizer.ggml.add_bos_token', 'true') == 'true',"
            " 'bos': m.token_bos(), 'tokens': m.tokenize(t, add_bos=False, special=False)}))\n")
    res = json.loads(subprocess.check_output([MAIN_PY, "-c", code, gguf_path, text_path]))
    toks = res["tokens"]
    if res["add_bos"]:
        toks = [res["bos"]] + toks
    return toks, res["add_bos"], res["bos"]


def rope_tables(cfg, T):
    hd, theta = cfg["head_dim"], cfg["rope_theta"]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang).float(), torch.sin(ang).float()
    return torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)


def rms(cfg, v, w):
    return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + cfg["rms_norm_eps"]) * w


@torch.no_grad()
def llama_layer(cfg, W, i, x, capture=None):
    """One decoder layer in fp32 (x: [T, E]); capture: dict that receives each linear's input."""
    H, HKV, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    T = x.shape[0]
    cos, sin = rope_tables(cfg, T)
    f = lambda n: W[n].float()

    def rope(q):  # [T, heads, hd], rotate-half
        q1, q2 = q[..., : hd // 2], q[..., hd // 2:]
        return q * cos[:, None, :] + torch.cat([-q2, q1], -1) * sin[:, None, :]

    p = f"model.layers.{i}."
    h = rms(cfg, x, f(p + "input_layernorm.weight"))
    q = rope((h @ f(p + "self_attn.q_proj.weight").t()).view(T, H, hd))
    k = rope((h @ f(p + "self_attn.k_proj.weight").t()).view(T, HKV, hd))
    v = (h @ f(p + "self_attn.v_proj.weight").t()).view(T, HKV, hd)
    k = k.repeat_interleave(H // HKV, 1)
    v = v.repeat_interleave(H // HKV, 1)
    mask = torch.full((T, T), float("-inf")).triu(1)
    a = torch.einsum("thd,shd->hts", q, k) / (hd ** 0.5) + mask
    o = torch.einsum("hts,shd->thd", a.softmax(-1), v).reshape(T, H * hd)
    x = x + o @ f(p + "self_attn.o_proj.weight").t()
    h2 = rms(cfg, x, f(p + "post_attention_layernorm.weight"))
    act = torch.nn.functional.silu(h2 @ f(p + "mlp.gate_proj.weight").t()) * (h2 @ f(p + "mlp.up_proj.weight").t())
    if capture is not None:
        for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            capture[m] = h
        capture["self_attn.o_proj"], capture["mlp.gate_proj"], capture["mlp.up_proj"] = o, h2, h2
        capture["mlp.down_proj"] = act
    return x + act @ f(p + "mlp.down_proj.weight").t()


@torch.no_grad()
def llama_logits(cfg, W, tokens):
    x = W["model.embed_tokens.weight"].float()[torch.tensor(tokens)]
    for i in range(cfg["num_hidden_layers"]):
        x = llama_layer(cfg, W, i, x)
    x = rms(cfg, x, W["model.norm.weight"].float())
    head = W["lm_head.weight"] if "lm_head.weight" in W else W["model.embed_tokens.weight"]
    return x @ head.float().t()


def perplexity(cfg, W, tokens, add_bos, bos, ctx, chunks):
    n_chunk = min(len(tokens) // ctx, chunks)
    nll, count = 0.0, 0
    for c in range(n_chunk):
        w = list(tokens[c * ctx:(c + 1) * ctx])
        if add_bos:
            w[0] = bos
        lp = torch.log_softmax(llama_logits(cfg, W, w).double(), -1)
        for j in range(ctx // 2, ctx - 1):
            nll -= float(lp[j, w[j + 1]])
            count += 1
    return float(np.exp(nll / count))


def quern_ppl(quern, model_dir, gguf, text, chunks, ctx, threads):
    t0 = time.time()
    r = subprocess.run([quern, "perplexity", "--device", os.environ.get("QN_HF_E2E_DEVICE", "cpu"), "-m", model_dir, "--vocab", gguf, "-f", text, "--chunks", str(chunks),
                        "--ctx", str(ctx), "-t", str(threads)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"quern perplexity failed on {model_dir}:\n{r.stderr}")
    return float(re.findall(r"perplexity: ([0-9.]+)", r.stdout)[-1]), time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quern", required=True)
    ap.add_argument("--gguf", default=DEF_GGUF)
    ap.add_argument("--text", default=DEF_TEXT)
    ap.add_argument("--out", default="/tmp/quern-hf-e2e")
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--only", default="f16,gptq,gptq_act,awq,nf4")
    ap.add_argument("--calib", type=int, default=8, help="gptq_act: calibration windows of --ctx tokens")
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        torch.cuda.synchronize = lambda *x, **k: None
    torch.set_num_threads(a.threads)
    cfg, sd = export_hf(a.gguf, os.path.join(a.out, "f16"))
    tokens, add_bos, bos = tokenize(a.gguf, a.text)
    results = []
    for kind in a.only.split(","):
        t0 = time.time()
        if kind == "f16":
            d, deq = os.path.join(a.out, "f16"), {}
        elif kind == "gptq_act":
            n_eval = a.chunks * a.ctx  # calibration windows come after the evaluated ones
            calib = [tokens[n_eval + j * a.ctx: n_eval + (j + 1) * a.ctx] for j in range(a.calib)]
            d, deq = quantize_gptq_act(cfg, sd, os.path.join(a.out, kind), calib)
        else:
            d, deq = {"gptq": quantize_gptq, "awq": quantize_awq, "nf4": quantize_nf4}[kind](cfg, sd, os.path.join(a.out, kind))
        t_q = time.time() - t0
        W = dict(sd)
        W.update(deq)
        ref = perplexity(cfg, W, tokens, add_bos, bos, a.ctx, a.chunks)
        ours, t_run = quern_ppl(a.quern, d, a.gguf, a.text, a.chunks, a.ctx, a.threads)
        rel = (ours - ref) / ref
        results.append({"model": kind, "peer_ppl": ref, "quern_ppl": ours, "rel_diff": rel, "quantize_s": t_q,
                        "quern_s": t_run, "bytes": os.path.getsize(os.path.join(d, "model.safetensors"))})
        print(f"{kind:5s} peer-dequant torch ppl {ref:.4f}  quern ppl {ours:.4f}  diff {100 * rel:+.3f}%", flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"chunks": a.chunks, "ctx": a.ctx, "n_tokens": len(tokens), "results": results}, fh, indent=1)
    bad = [r for r in results if abs(r["rel_diff"]) > 0.001]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
