# test_convert_llamacpp_peer.py — `quern convert` against llama.cpp's own convert_hf_to_gguf.py on the same
# HF directories (CPU):
#   * SmolLM2-135M exported with `quern export-hf` (f16 and bf16), converted by both to f16 / bf16 / q8_0;
#   * a 2-layer Qwen2ForCausalLM and a 2-layer MistralForCausalLM made from that export (config edited,
#     random q/k/v biases for Qwen2), converted to f16;
#   * SentencePiece: a 1-layer `quern synth --preset tiny` with llama.cpp's llama-spm vocabulary, exported,
#     cut to Llama-2's 32000 tokens (llama.cpp's converter forces add_bos off for a 49152-token llama, a
#     Granite rule we do not copy), converted to f16 from tokenizer.model (_set_vocab_sentencepiece) and,
#     with tokenizer.model removed, from tokenizer.json (_set_vocab_llama_hf).
# The two GGUF files must hold the same metadata (every key, in the same order, same type and value) and the
# same tensors (names, order, types, shapes, bytes). Deliberate differences: tokenizer.ggml.scores from
# tokenizer.json alone, where llama.cpp writes the placeholder -1000 for every token (checked) and we minus the
# rank of the merge making the token (hf_tokenizer_spm.c; test_convert_spm.py shows ours tokenize right).
# See hf_convert.c for what is not converted at all (llama3 rope factors).
# llama.cpp's converter needs torch; where it is not installed, tests/fixtures/torch_stub stands in for the
# few tensor operations of its eager path (--no-lazy). It also needs transformers, sentencepiece (imported
# first) and gguf-py (scripts/setup_venv.sh installs them).
# Skips (77) without the quern binary, the default model, $QN_CACHE/llama.cpp/convert_hf_to_gguf.py or the
# Python packages.
# QN_TEST_LABELS: cpu
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

from convert_util import gguf_read, inputs, read_safetensors, vocab_file, write_safetensors

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    paths = inputs()
    if not paths:
        return SKIP
    quern, model = paths
    llamacpp = os.path.join(os.environ.get("QN_CACHE", os.path.expanduser("~/.cache/quern")), "llama.cpp")
    script = os.path.join(llamacpp, "convert_hf_to_gguf.py")
    if not os.path.exists(script):
        print("skip: llama.cpp's convert_hf_to_gguf.py missing (scripts/build_llamacpp.sh)")
        return SKIP
    try:
        import numpy as np
        import transformers  # noqa: F401  (the converter's AutoConfig / AutoTokenizer)
        import sentencepiece  # noqa: F401
    except ImportError as e:
        print(f"skip: {e.name} not importable (scripts/setup_venv.sh installs it)")
        return SKIP
    env = dict(os.environ)
    try:
        import torch  # noqa: F401
    except ImportError:
        env["PYTHONPATH"] = os.path.join(os.path.dirname(HERE), "fixtures", "torch_stub") + os.pathsep + \
            env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.path.join(llamacpp, "gguf-py") + os.pathsep + env.get("PYTHONPATH", "")
    failures = []

    def quern_run(args):
        r = subprocess.run([quern] + args, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            failures.append(f"quern {' '.join(args[:2])}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
        return r.returncode == 0

    def peer_run(hf, out, outtype):
        r = subprocess.run([sys.executable, script, hf, "--outtype", outtype, "--no-lazy", "--outfile", out],
                           capture_output=True, text=True, timeout=600, cwd=llamacpp, env=env)
        if r.returncode != 0:
            failures.append(f"convert_hf_to_gguf.py {os.path.basename(hf)} {outtype}: {r.stderr.strip()[-600:]}")
        return r.returncode == 0

    def compare(label, ours, theirs, deliberate=()):
        (ma, ta), (mb, tb) = gguf_read(ours), gguf_read(theirs)
        ka = [m for m in ma if m[0] not in deliberate]
        kb = [m for m in mb if m[0] not in deliberate]
        ok = ka == kb
        if not ok:
            da, db = dict((k, (t, v)) for k, t, v in ka), dict((k, (t, v)) for k, t, v in kb)
            diff = [k for k in da if k in db and da[k] != db[k]]
            failures.append(f"{label}: metadata differs: only ours {sorted(set(da) - set(db))}, only llama.cpp "
                            f"{sorted(set(db) - set(da))}, values {diff[:6]}, order same "
                            f"{[k for k, _, _ in ka if k in db] == [k for k, _, _ in kb if k in da]}")
        ta = [(n, t[0], t[1], t[3]) for n, t in ta.items()]
        tb = [(n, t[0], t[1], t[3]) for n, t in tb.items()]
        if ta != tb:
            ok = False
            nb = {x[0]: x for x in tb}
            bad = [f"{x[0]} {x[1]}{x[2]} vs {nb[x[0]][1]}{nb[x[0]][2]}" if x[0] in nb else f"{x[0]} (only ours)"
                   for x in ta if nb.get(x[0]) != x]
            failures.append(f"{label}: tensors differ: order same {[x[0] for x in ta] == [x[0] for x in tb]}, "
                            f"{len(ta)} vs {len(tb)}, {len(bad)} differ, first {bad[:4]}")
        if ok:
            print(f"{label}: {len(ka)} keys{' (less ' + ', '.join(deliberate) + ')' if deliberate else ''} and "
                  f"{len(ta)} tensors identical")
        return dict((k, v) for k, _, v in mb)

    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for dtype, outtypes in (("f16", ("f16", "q8_0")), ("bf16", ("bf16",))):
            hf = os.path.join(tmp, f"smollm2-{dtype}")
            if quern_run(["export-hf", model, hf, "--dtype", dtype]):
                runs += [(hf, t) for t in outtypes]
        src = os.path.join(tmp, "smollm2-f16")
        if os.path.exists(os.path.join(src, "model.safetensors")):
            for arch in ("Qwen2ForCausalLM", "MistralForCausalLM"):
                runs.append((two_layer_variant(src, os.path.join(tmp, arch), arch, np), "f16"))
        spm, spm_tiny = os.path.join(tmp, "TinySPM"), os.path.join(tmp, "tiny-spm.gguf")
        if vocab_file("llama-spm") and quern_run(["synth", "--preset", "tiny", "--layers", "1", "--type", "F16",
                                                  "--vocab", vocab_file("llama-spm"), "-o", spm_tiny, "-q"]) \
                and quern_run(["export-hf", spm_tiny, spm]):
            spm_variant(spm, 32000, np)
            runs.append((spm, "f16"))
            spm_json = os.path.join(tmp, "TinySPM-json")
            shutil.copytree(spm, spm_json)
            os.remove(os.path.join(spm_json, "tokenizer.model"))
            runs.append((spm_json, "f16"))
        elif not vocab_file("llama-spm"):
            print("note: ggml-vocab-llama-spm.gguf missing, SentencePiece not compared")
        for hf, outtype in runs:
            label = f"{os.path.basename(hf)} -> {outtype}"
            ours, theirs = os.path.join(tmp, "ours.gguf"), os.path.join(tmp, "theirs.gguf")
            json_only = os.path.basename(hf) == "TinySPM-json"
            if quern_run(["convert", hf, ours, "--outtype", outtype, "-q"]) and peer_run(hf, theirs, outtype):
                peer = compare(label, ours, theirs, ("tokenizer.ggml.scores",) if json_only else ())
                scores = peer.get("tokenizer.ggml.scores", (0, b""))[1]
                if json_only and set(struct.unpack(f"<{len(scores) // 4}f", scores)) != {-1000.0}:
                    failures.append(f"{label}: llama.cpp's scores are no longer all -1000: revisit hf_tokenizer_spm.c")
            for f in (ours, theirs):
                if os.path.exists(f):
                    os.remove(f)
    for f in failures:
        print("FAIL:", f)
    if failures:
        return 1
    print("ok: quern convert == llama.cpp convert_hf_to_gguf.py (metadata and tensors)")
    return 0


def spm_variant(hf, n_vocab, np):
    """hf cut to its first n_vocab tokens (config.json, embeddings, lm_head) and named TinySPM (llama.cpp's
    converter writes _name_or_path title-cased)."""
    cfg = json.load(open(os.path.join(hf, "config.json")))
    cfg.update(vocab_size=n_vocab, _name_or_path="TinySPM")
    json.dump(cfg, open(os.path.join(hf, "config.json"), "w"), indent=2)
    path = os.path.join(hf, "model.safetensors")
    tensors = {k: np.array(v[:n_vocab] if k in ("model.embed_tokens.weight", "lm_head.weight") else v)
               for k, v in read_safetensors(path, np).items()}
    write_safetensors(path, tensors, np, metadata={"format": "pt"})


def two_layer_variant(src, dst, arch, np):
    """The first two layers of src as arch (Qwen2 gets seeded q/k/v biases), tokenizer files copied."""
    os.makedirs(dst)
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg.update(architectures=[arch], num_hidden_layers=2, model_type="qwen2" if "Qwen2" in arch else "mistral")
    cfg.pop("mlp_bias", None)
    if "Qwen2" in arch:
        cfg.pop("attention_bias", None)
        cfg.pop("head_dim", None)
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        with open(os.path.join(src, f), "rb") as a, open(os.path.join(dst, f), "wb") as b:
            b.write(a.read())
    tensors = {k: v for k, v in read_safetensors(os.path.join(src, "model.safetensors"), np).items()
               if not (k.startswith("model.layers.") and int(k.split(".")[2]) >= 2)}
    if "Qwen2" in arch:
        rng = np.random.default_rng(3)
        for layer in range(2):
            for proj in ("q_proj", "k_proj", "v_proj"):
                rows = tensors[f"model.layers.{layer}.self_attn.{proj}.weight"].shape[0]
                tensors[f"model.layers.{layer}.self_attn.{proj}.bias"] = \
                    (rng.standard_normal(rows) * 0.1).astype(np.float16)
    write_safetensors(os.path.join(dst, "model.safetensors"), tensors, np, metadata={"format": "pt"})
    return dst


if __name__ == "__main__":
    sys.exit(main())
