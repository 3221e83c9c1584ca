# test_quantize_llamacpp.py — `quern quantize` against llama.cpp's own `llama-quantize` (built from
# the llama-cpp-python sdist by scripts/build_llamacpp.sh), no importance matrix:
#   1. the default model (SmolLM2-135M Q4_1: 576 columns, so most tensors take the ne[0] fallbacks;
#      tied embeddings) requantized to Q8_0 and Q4_K_M (llama-quantize --allow-requantize);
#   2. `quern synth --preset tiny` (16 layers, 256-wide, GQA 4, untied: every k-quant recipe without
#      fallbacks) written as F32, then quantized to Q2_K, Q3_K_M and Q4_K_M, which together use all five
#      k-quant formats (Q5_K: Q3_K_M's first attn_v / ffn_down layers) and the layer-dependent rules;
# each output tensor (name, type, shape, offset, bytes) must be identical, and so must the whole file;
#   3. `quern synth --type Q4_K_M` gives the tensors of quantizing its own F32 output (same floats);
#   4. `quern run -n 4` and `quern perplexity --chunks 2` work on our Q4_K_M file.
# Skips (77) when llama-quantize or the default model is missing.
# QN_TEST_LABELS: cpu peer slow
import os
import subprocess
import sys
import tempfile
import time

from convert_util import gguf_read

SKIP = 77


def tensors(path):
    return gguf_read(path)[1]


def compare(label, ours, ref, failures):
    a, b = tensors(ours), tensors(ref)
    if a.keys() != b.keys():
        failures.append(f"{label}: tensor names differ: {sorted(set(a) ^ set(b))[:5]}")
        return
    bad = [n for n in a if a[n] != b[n]]
    same_file = open(ours, "rb").read() == open(ref, "rb").read()
    types = {}
    for n in a:
        types[a[n][0]] = types.get(a[n][0], 0) + 1
    print(f"{label}: {len(a)} tensors, {len(bad)} differ; whole file {'identical' if same_file else 'DIFFERS'}; "
          f"types {dict(sorted(types.items()))}")
    for n in bad[:5]:
        ta, tb = a[n], b[n]
        why = "type" if ta[0] != tb[0] else "shape" if ta[1] != tb[1] else "offset" if ta[2] != tb[2] else "bytes"
        failures.append(f"{label}: {n}: {why} differs (ours type {ta[0]}, llama.cpp {tb[0]})")
    if not bad and not same_file:
        failures.append(f"{label}: tensors equal but the files differ (metadata or layout)")


def run(cmd, failures, label, timeout=600):
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        failures.append(f"{label}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    return r, time.time() - t


def main():
    cache = os.environ.get("QN_CACHE", os.path.expanduser("~/.cache/quern"))
    lq = os.path.join(cache, "llama.cpp", "build", "bin", "llama-quantize")
    model = os.environ.get("QN_MODEL", os.path.join(cache, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    quern = os.environ.get("QN_QUERN_BIN")
    text = os.path.join(cache, "data", "alice29.txt")
    if not quern or not os.access(lq, os.X_OK) or not os.path.exists(model):
        print(f"skip: need QN_QUERN_BIN, {lq} (scripts/build_llamacpp.sh) and {model}")
        return SKIP
    threads = "2"
    failures = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        def p(name):
            return os.path.join(tmp, name)

        # 1. the real model, requantized
        for ftype in ("Q8_0", "Q4_K_M"):
            ours, ref = p(f"ours_{ftype}.gguf"), p(f"ref_{ftype}.gguf")
            _, dt_ours = run([quern, "quantize", "-q", model, ours, ftype, "-t", threads], failures, f"quern {ftype}")
            _, dt_ref = run([lq, "--allow-requantize", model, ref, ftype, threads], failures, f"llama-quantize {ftype}")
            print(f"smollm2 {ftype}: quern {dt_ours:.1f} s, llama-quantize {dt_ref:.1f} s")
            if os.path.exists(ours) and os.path.exists(ref):
                compare(f"smollm2 {ftype}", ours, ref, failures)

        # 2. k-quant recipes without fallbacks, from F32
        tiny = p("tiny_f32.gguf")
        run([quern, "synth", "--preset", "tiny", "--type", "F32", "-o", tiny, "-q", "-t", threads], failures,
            "synth tiny F32")
        for ftype in ("Q2_K", "Q3_K_M", "Q4_K_M"):
            ours, ref = p(f"tiny_ours_{ftype}.gguf"), p(f"tiny_ref_{ftype}.gguf")
            _, dt_ours = run([quern, "quantize", "-q", tiny, ours, ftype, "-t", threads], failures,
                             f"quern tiny {ftype}")
            _, dt_ref = run([lq, tiny, ref, ftype, threads], failures, f"llama-quantize tiny {ftype}")
            print(f"tiny {ftype}: quern {dt_ours:.1f} s, llama-quantize {dt_ref:.1f} s")
            if os.path.exists(ours) and os.path.exists(ref):
                compare(f"tiny {ftype}", ours, ref, failures)
                if ftype == "Q4_K_M":
                    # 3. direct synthesis = quantizing the F32 synthesis
                    direct = p("tiny_direct.gguf")
                    run([quern, "synth", "--preset", "tiny", "--type", ftype, "-o", direct, "-q", "-t", threads],
                        failures, "synth tiny Q4_K_M")
                    a, b = tensors(direct), tensors(ours)
                    if a != b:
                        failures.append("synth --type Q4_K_M differs from quantize(synth F32)")
                    else:
                        print("synth tiny Q4_K_M: tensors equal quantize(synth F32, Q4_K_M)")

        # 4. our output runs
        ours = p("ours_Q4_K_M.gguf")
        if os.path.exists(ours):
            r, _ = run([quern, "run", "-m", ours, "-p", "The capital of France is", "-n", "4", "--temp", "0",
                        "-t", threads], failures, "quern run")
            if r.returncode == 0:
                print(f"quern run: {r.stdout.strip()!r}")
            if os.path.exists(text):
                r, _ = run([quern, "perplexity", "-m", ours, "-f", text, "--ctx", "128", "--chunks", "2",
                            "-t", threads], failures, "quern perplexity")
                if r.returncode == 0:
                    last = [ln for ln in (r.stdout + r.stderr).splitlines() if "perplexity" in ln.lower()]
                    print(f"quern perplexity: {last[-1] if last else '?'}")
    print(f"total {time.time() - t0:.1f} s")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
