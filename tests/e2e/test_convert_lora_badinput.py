# test_convert_lora_badinput.py — `quern convert --lora` and convert's handling of bad input (CPU):
#   1. LoRA: a PEFT adapter synthesized here (adapter_config.json r=4, lora_alpha=8; safetensors written by
#      hand with numpy) on q_proj / k_proj of layer 0 and down_proj of layer 3 of SmolLM2-135M exported to
#      HF f32; `convert --outtype f32 --lora` must give W + (alpha/r)·B@A (numpy, float64, then float32),
#      with llama.cpp's Q/K permutation applied after the merge, and leave the other weights untouched;
#      use_rslora switches the scale to alpha/sqrt(r);
#   2. bad input: missing config.json, truncated model.safetensors, an unknown architecture, a missing
#      tokenizer.json, an adapter without 'r', an adapter naming a module the model lacks -> non-zero exit,
#      a message naming the file and the field, and neither OUT.gguf nor OUT.gguf.tmp left behind.
# Skips (77) without the quern binary, the default model, or numpy + gguf-py.
# QN_TEST_LABELS: cpu
import json
import os
import subprocess
import sys
import tempfile

from convert_util import inputs, permute, read_safetensors, write_safetensors

SKIP = 77


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

    def run(args):
        return subprocess.run([quern] + args, capture_output=True, text=True, timeout=600)

    with tempfile.TemporaryDirectory() as tmp:
        hf = os.path.join(tmp, "hf")
        r = run(["export-hf", model, hf, "--dtype", "f32"])
        if r.returncode != 0:
            print("FAIL: export-hf:", r.stderr[-400:])
            return 1
        cfg = json.load(open(os.path.join(hf, "config.json")))
        n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        base = read_safetensors(os.path.join(hf, "model.safetensors"), np)

        # 1. LoRA
        rng = np.random.default_rng(7)
        rank, alpha = 4, 8
        mods = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.3.mlp.down_proj"]
        adapter = {}
        for m in mods:
            out_f, in_f = base[m + ".weight"].shape
            adapter[f"base_model.model.{m}.lora_A.weight"] = (rng.standard_normal((rank, in_f)) * 0.05).astype(np.float32)
            adapter[f"base_model.model.{m}.lora_B.weight"] = (rng.standard_normal((out_f, rank)) * 0.05).astype(np.float16)
        for rslora in (False, True):
            ad = os.path.join(tmp, f"adapter_{int(rslora)}")
            os.makedirs(ad)
            json.dump({"peft_type": "LORA", "r": rank, "lora_alpha": alpha, "use_rslora": rslora,
                       "target_modules": ["q_proj", "k_proj", "down_proj"], "fan_in_fan_out": False,
                       "base_model_name_or_path": hf}, open(os.path.join(ad, "adapter_config.json"), "w"))
            write_safetensors(os.path.join(ad, "adapter_model.safetensors"), adapter, np)
            out = os.path.join(tmp, f"lora_{int(rslora)}.gguf")
            r = run(["convert", hf, out, "--outtype", "f32", "--lora", ad, "-q"])
            if r.returncode != 0:
                failures.append(f"convert --lora (rslora={rslora}): {r.stderr[-400:]}")
                continue
            scale = alpha / (np.sqrt(rank) if rslora else rank)
            got = {t.name: np.asarray(t.data) for t in GGUFReader(out).tensors}
            for m in mods:
                w = base[m + ".weight"].astype(np.float64)
                a = adapter[f"base_model.model.{m}.lora_A.weight"].astype(np.float64)
                b = adapter[f"base_model.model.{m}.lora_B.weight"].astype(np.float64)
                want = (w + scale * (b @ a)).astype(np.float32)
                gname = gguf_name(m)
                if "q_proj" in m:
                    want = permute(want, n_head, n_head)
                elif "k_proj" in m:
                    want = permute(want, n_head, n_kv)
                g = got[gname].reshape(want.shape)
                err = np.max(np.abs(g - want) / (np.abs(want) + 1e-6))
                if not np.allclose(g, want, rtol=2e-7, atol=1e-9):
                    failures.append(f"lora (rslora={rslora}) {gname}: max rel err {err:.3g}")
            untouched = base["model.layers.1.self_attn.q_proj.weight"]
            if not np.array_equal(got["blk.1.attn_q.weight"].reshape(untouched.shape), permute(untouched, n_head, n_head)):
                failures.append("lora: blk.1.attn_q.weight changed though the adapter does not name it")
            if "LoRA merged into 3 weights" not in r.stderr:
                failures.append(f"lora: summary line: {r.stderr.strip()[-200:]}")

        # 2. bad input
        def variant(name, drop=(), edit=None, truncate=None):
            d = os.path.join(tmp, name)
            os.makedirs(d)
            for f in os.listdir(hf):
                if f in drop:
                    continue
                if f == truncate:
                    with open(os.path.join(hf, f), "rb") as src, open(os.path.join(d, f), "wb") as dst:
                        dst.write(src.read(os.path.getsize(os.path.join(hf, f)) // 2))
                elif edit and f in edit:
                    with open(os.path.join(d, f), "w") as dst:
                        dst.write(edit[f])
                else:
                    os.symlink(os.path.join(hf, f), os.path.join(d, f))
            return d

        bad_arch = dict(cfg, architectures=["GPT2LMHeadModel"], model_type="gpt2")
        cases = [
            ("no_config", variant("no_config", drop=("config.json",)), None, ["config.json"]),
            ("truncated", variant("truncated", truncate="model.safetensors"), None, ["model.safetensors"]),
            ("arch", variant("arch", edit={"config.json": json.dumps(bad_arch)}), None,
             ["config.json", "architectures", "GPT2LMHeadModel"]),
            ("no_tokenizer", variant("no_tokenizer", drop=("tokenizer.json",)), None, ["tokenizer.json"]),
        ]
        ad_bad = os.path.join(tmp, "adapter_bad")
        os.makedirs(ad_bad)
        json.dump({"lora_alpha": 8}, open(os.path.join(ad_bad, "adapter_config.json"), "w"))
        cases.append(("adapter_no_r", hf, ad_bad, ["adapter_config.json", "'r'"]))
        ad_mod = os.path.join(tmp, "adapter_module")
        os.makedirs(ad_mod)
        json.dump({"r": 2, "lora_alpha": 4}, open(os.path.join(ad_mod, "adapter_config.json"), "w"))
        write_safetensors(os.path.join(ad_mod, "adapter_model.safetensors"), {
            "base_model.model.model.layers.99.self_attn.q_proj.lora_A.weight": np.zeros((2, 576), np.float32),
            "base_model.model.model.layers.99.self_attn.q_proj.lora_B.weight": np.zeros((576, 2), np.float32)}, np)
        cases.append(("adapter_module", hf, ad_mod, ["adapter_model.safetensors", "layers.99"]))
        for label, d, ad, want in cases:
            out = os.path.join(tmp, f"bad_{label}.gguf")
            args = ["convert", d, out, "-q"] + (["--lora", ad] if ad else [])
            r = run(args)
            msg = r.stderr.strip()
            if r.returncode == 0:
                failures.append(f"bad input {label}: exit 0")
            missing = [w for w in want if w not in msg]
            if missing:
                failures.append(f"bad input {label}: message lacks {missing}: {msg[-300:]}")
            if os.path.exists(out) or os.path.exists(out + ".tmp"):
                failures.append(f"bad input {label}: output file left behind")
            print(f"{label}: {msg[-200:]}")
        r = run(["export-hf", os.path.join(tmp, "missing.gguf"), os.path.join(tmp, "x")])
        if r.returncode == 0 or "missing.gguf" not in r.stderr:
            failures.append(f"export-hf on a missing file: exit {r.returncode}: {r.stderr[-200:]}")
    for f in failures:
        print("FAIL:", f)
    if failures:
        return 1
    print("ok: convert --lora merges W + (alpha/r) B@A; bad input fails cleanly")
    return 0


def gguf_name(module):
    parts = module.split(".")
    m = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "mlp.down_proj": "ffn_down"}[".".join(parts[3:])]
    return f"blk.{parts[2]}.{m}.weight"




if __name__ == "__main__":
    sys.exit(main())
