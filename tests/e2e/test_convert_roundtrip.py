# test_convert_roundtrip.py — `quern export-hf` then `quern convert` on the real SmolLM2-135M (CPU):
#   1. export-hf --dtype f16 writes config.json, generation_config.json, model.safetensors,
#      tokenizer.json, tokenizer_config.json; no lm_head (tied) and tie_word_embeddings true;
#   2. convert --outtype f16 gives back every tensor of the export bit for bit (llama.cpp's Q/K
#      permutation applied again with numpy on the exported q/k rows; norms F32), and the same tensors
#      as `quern quantize ORIGINAL F16` (the original's Q4_1 values, dequantized to F16 without the
#      HF detour): names, types, shapes and bytes;
#   3. metadata: every key of the original outside general.* is present in the round trip with the
#      same value (tokens, merges, token types, special ids, chat template, hyperparameters);
#   4. tokenizer: `quern logits` tokenizes a set of strings to the same ids with the original and the
#      round trip (plain and with special-token parsing), and the HF `tokenizers` library reading the
#      exported tokenizer.json agrees with both;
#   5. greedy `quern run -n 16` prints the same text with the round trip as with the quantize-F16
#      reference. Not against the Q4_1 original: its numbers differ (Q4_1 activations path vs F16); the
#      reference holds the same F16 weights, so identical text shows that nothing but the container
#      changed on the way through HF.
# Skips (77) without the quern binary, the default model, or numpy + gguf-py in the venv.
# QN_TEST_LABELS: cpu
import json
import os
import subprocess
import sys
import tempfile

from convert_util import inputs, permute, read_safetensors, report

SKIP = 77
OK = "export-hf -> convert round trip (tensors, metadata, tokenizer, greedy text)"

STRINGS = [
    "Hello world",
    "  leading spaces and trailing   ",
    "Numbers: 3 33 333 3333 3.14159 and 1,000,000",
    "I've been 'told he's there, 'RE you sure? We'Ve a'lL",
    "tabs\tand\nnewlines\n\n\nend",
    "Unicode: caf\u00e9 na\u00efve \u4f60\u597d\u4e16\u754c \U0001F680 (rocket) \u0915\u093e\u0928",
    "code: def f(x):\n    return x ** 2  # square",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]


def main():
    paths = inputs()
    if not paths:
        return SKIP
    quern, model = paths
    try:
        import numpy as np
        from gguf import GGUFReader
    except ImportError:
        print("skip: numpy / gguf-py not importable (run with $QN_PYTHON)")
        return SKIP
    failures = []

    def run(args, label=None):
        r = subprocess.run([quern] + args, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            failures.append(f"{label or ' '.join(args[:2])}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
        return r

    with tempfile.TemporaryDirectory() as tmp:
        hf = os.path.join(tmp, "hf")
        rt = os.path.join(tmp, "rt.gguf")
        ref = os.path.join(tmp, "ref_f16.gguf")
        run(["export-hf", model, hf, "--dtype", "f16"])
        run(["convert", hf, rt, "--outtype", "f16", "-q"])
        run(["quantize", model, ref, "F16", "-q"])
        if failures:
            return report(failures, OK)

        # 1. the HF directory
        for f in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                  "tokenizer_config.json"):
            if not os.path.exists(os.path.join(hf, f)):
                failures.append(f"export: {f} missing")
        cfg = json.load(open(os.path.join(hf, "config.json")))
        if cfg.get("architectures") != ["LlamaForCausalLM"] or cfg.get("tie_word_embeddings") is not True:
            failures.append(f"config.json: architectures/tie_word_embeddings: {cfg.get('architectures')} "
                            f"{cfg.get('tie_word_embeddings')}")
        st = read_safetensors(os.path.join(hf, "model.safetensors"), np)
        if "lm_head.weight" in st:
            failures.append("export: lm_head.weight written for a tied model")
        if any(a.dtype != np.float16 for a in st.values()):
            failures.append("export: not every tensor is F16")

        # 2. tensors
        orig, r_rt, r_ref = GGUFReader(model), GGUFReader(rt), GGUFReader(ref)
        t_rt = {t.name: t for t in r_rt.tensors}
        t_ref = {t.name: t for t in r_ref.tensors}
        if set(t_rt) != set(t_ref):
            failures.append(f"tensor names differ: only rt {sorted(set(t_rt) - set(t_ref))[:5]}, "
                            f"only ref {sorted(set(t_ref) - set(t_rt))[:5]}")
        n_heads, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        bad = []
        for name, t in t_rt.items():
            if name in t_ref:
                u = t_ref[name]
                if (t.tensor_type != u.tensor_type or list(t.shape) != list(u.shape)
                        or t.data.tobytes() != u.data.tobytes()):
                    bad.append(f"{name} vs quantize-F16: {t.tensor_type.name}{list(t.shape)} / "
                               f"{u.tensor_type.name}{list(u.shape)}")
            hf_name = gguf_to_hf(name)
            if hf_name not in st:
                bad.append(f"{name}: no {hf_name} in the export")
                continue
            w = st[hf_name]
            if ".attn_q." in name:
                w = permute(w, n_heads, n_heads)
            elif ".attn_k." in name:
                w = permute(w, n_heads, n_kv)
            want_type = "F32" if w.ndim == 1 else "F16"
            got = np.asarray(t.data)
            if t.tensor_type.name != want_type or got.astype(w.dtype if want_type == "F16" else np.float32).tobytes() \
                    != w.astype(np.float16 if want_type == "F16" else np.float32).tobytes():
                bad.append(f"{name}: {t.tensor_type.name} differs from the export's {hf_name}")
        if bad:
            failures.append(f"{len(bad)} tensors differ, first: {bad[:4]}")

        # 3. metadata
        kv_rt = fields(r_rt)
        for k, v in fields(orig).items():
            if k.startswith("general.") or k.startswith("GGUF."):
                continue
            if k not in kv_rt:
                failures.append(f"metadata: '{k}' missing in the round trip")
            elif kv_rt[k] != v:
                failures.append(f"metadata: '{k}': {str(kv_rt[k])[:80]} != original {str(v)[:80]}")
        if kv_rt.get("general.architecture") != "llama" or kv_rt.get("general.file_type") != 1:
            failures.append("metadata: general.architecture / file_type")

        # 4. tokenizer
        try:
            from tokenizers import Tokenizer
            hf_tok = Tokenizer.from_file(os.path.join(hf, "tokenizer.json"))
        except ImportError:
            hf_tok = None
            print("note: `tokenizers` not installed, HF-side tokenization not checked")
        for s in STRINGS:
            for special in (False, True):
                flags = [] if special else ["--no-special"]
                ids = []
                for m in (model, rt):
                    r = run(["logits", "-m", m, "-p", s, "-t", "2"] + flags, label=f"logits {os.path.basename(m)}")
                    ids.append(json.loads(r.stdout)["tokens"] if r.returncode == 0 else None)
                if ids[0] != ids[1]:
                    failures.append(f"tokens of {s!r} (special={special}): original {ids[0]} != round trip {ids[1]}")
                if hf_tok is not None and special and ids[0] is not None:
                    hf_ids = hf_tok.encode(s, add_special_tokens=False).ids
                    if hf_ids != ids[0]:
                        failures.append(f"tokenizers on tokenizer.json: {s!r}: {hf_ids} != quern {ids[0]}")
                    if hf_tok.decode(hf_ids, skip_special_tokens=False) != s:
                        failures.append(f"tokenizers decode of {s!r} does not give the text back")

        # 5. generation
        outs = []
        for m in (rt, ref):
            r = run(["run", "-m", m, "-p", "The capital of France is", "-n", "16", "--temp", "0", "-t", "2"],
                    label=f"run {os.path.basename(m)}")
            outs.append(r.stdout)
        if outs[0] != outs[1] or not outs[0].strip():
            failures.append(f"greedy text differs: round trip {outs[0]!r} vs quantize-F16 {outs[1]!r}")
    return report(failures, OK)


def gguf_to_hf(name):
    glob = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
            "output.weight": "lm_head.weight"}
    if name in glob:
        return glob[name]
    layer = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj"}
    _, n, mod, suffix = name.split(".")
    return f"model.layers.{n}.{layer[mod]}.{suffix}"


def fields(reader):
    out = {}
    for name, f in reader.fields.items():
        v = f.contents()
        out[name] = v
    return out


if __name__ == "__main__":
    sys.exit(main())
