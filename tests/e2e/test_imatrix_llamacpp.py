# test_imatrix_llamacpp.py — `quern imatrix` and `quern quantize --imatrix` against llama.cpp's own
# llama-imatrix and llama-quantize (scripts/build_llamacpp.sh):
#   1. the default model (SmolLM2-135M Q4_1) on 2 chunks of alice29 at ctx 512: our imatrix GGUF has the
#      same metadata and tensor names, identical counts, and sums within REL_L2_TOL (relative L2 per tensor;
#      the CPU forwards agree on the top-1 token but are not bit-identical). llama-imatrix runs with
#      -b 512: its default batch (2048) packs 4 chunks into one batch and drops sub-16-token ubatch
#      pieces from the sums (1530 instead of 1536 tokens counted over 3 chunks);
#   2. an F16 copy of it quantized with llama-imatrix's matrix by both tools to Q4_0 Q4_K_M Q5_K_M Q6_K
#      Q2_K Q3_K_M (576 columns: mostly the 32-element fallbacks, ffn_down in k-quants), and with our
#      matrix as a legacy .dat file to Q4_K_M: whole files identical;
#   3. `quern synth --preset tiny` (256-wide: every k-quant recipe) with our imatrix, same six types:
#      whole files identical.
# Skips (77) when llama-imatrix / llama-quantize or the default model is missing.
# QN_TEST_LABELS: cpu peer slow
import math
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_quantize_llamacpp import SKIP, run, tensors  # noqa: E402

REL_L2_TOL = 0.03     # observed on this model: max 8.6e-3 (ffn_down), median 5e-4
TYPES = ("Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q2_K", "Q3_K_M")


def floats(raw):
    return struct.unpack_from(f"<{len(raw) // 4}f", raw)


def compare_imatrix(ours, ref, failures):
    a, b = tensors(ours), tensors(ref)
    if a.keys() != b.keys():
        failures.append(f"imatrix: tensor names differ: {sorted(set(a) ^ set(b))[:5]}")
        return
    # metadata and tensor infos: identical bytes up to the data section
    ha, hb = open(ours, "rb").read(), open(ref, "rb").read()
    data_start = len(ha) - sum(len(v[3]) for v in a.values())
    if ha[:data_start] != hb[:data_start]:
        failures.append("imatrix: metadata or tensor infos differ")
    rels = []
    for name in a:
        x, y = floats(a[name][3]), floats(b[name][3])
        if name.endswith(".counts"):
            if x != y:
                failures.append(f"imatrix: {name}: {x} vs llama.cpp {y}")
            continue
        den = math.sqrt(sum(q * q for q in y))
        rels.append((math.sqrt(sum((p - q) ** 2 for p, q in zip(x, y))) / den if den else 0.0, name))
    rels.sort()
    worst = rels[-1]
    print(f"imatrix: {len(rels)} entries, relative L2 median {rels[len(rels) // 2][0]:.2e}, "
          f"max {worst[0]:.2e} ({worst[1]})")
    if worst[0] > REL_L2_TOL:
        failures.append(f"imatrix: {worst[1]}: relative L2 {worst[0]:.3e} > {REL_L2_TOL}")


def same_file(label, ours, ref, failures):
    if not (os.path.exists(ours) and os.path.exists(ref)):
        return
    same = open(ours, "rb").read() == open(ref, "rb").read()
    print(f"{label}: {'identical' if same else 'DIFFERS'}")
    if not same:
        a, b = tensors(ours), tensors(ref)
        bad = [n for n in a if n not in b or a[n] != b[n]]
        failures.append(f"{label}: file differs ({len(bad)} tensors differ, first {bad[:3]})")


def main():
    cache = os.environ.get("QN_CACHE", os.path.expanduser("~/.cache/quern"))
    bin_dir = os.path.join(cache, "llama.cpp", "build", "bin")
    li, lq = os.path.join(bin_dir, "llama-imatrix"), os.path.join(bin_dir, "llama-quantize")
    model = os.environ.get("QN_MODEL", os.path.join(cache, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    quern = os.environ.get("QN_QUERN_BIN")
    text = os.path.join(cache, "data", "alice29.txt")
    if not quern or not os.access(li, os.X_OK) or not os.access(lq, os.X_OK) or not os.path.exists(model):
        print(f"skip: need QN_QUERN_BIN, {li} and {lq} (scripts/build_llamacpp.sh) and {model}")
        return SKIP
    threads = "2"
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        def p(name):
            return os.path.join(tmp, name)

        # 1. the imatrix itself (the same dataset string in both files: the path as given)
        ours_im, ref_im = p("ours.imatrix.gguf"), p("ref.imatrix.gguf")
        run([quern, "imatrix", "-m", model, "-f", text, "--ctx", "512", "--chunks", "2", "-t", threads,
             "-o", ours_im], failures, "quern imatrix")
        run([li, "-m", model, "-f", text, "-c", "512", "-b", "512", "--chunks", "2", "-t", threads,
             "-o", ref_im, "--no-ppl"], failures, "llama-imatrix")
        if os.path.exists(ours_im) and os.path.exists(ref_im):
            compare_imatrix(ours_im, ref_im, failures)

        # 2. quantizing the real model with the same matrix
        f16 = p("smol_f16.gguf")
        run([quern, "quantize", "-q", model, f16, "F16", "-t", threads], failures, "quern F16")
        for ftype in TYPES:
            ours, ref = p(f"ours_{ftype}.gguf"), p(f"ref_{ftype}.gguf")
            run([quern, "quantize", "-q", "--imatrix", ref_im, f16, ours, ftype, "-t", threads], failures,
                f"quern {ftype}")
            run([lq, "--imatrix", ref_im, f16, ref, ftype, threads], failures, f"llama-quantize {ftype}")
            same_file(f"smollm2 {ftype} --imatrix", ours, ref, failures)
        dat = p("ours.imatrix.dat")
        run([quern, "imatrix", "-m", model, "-f", text, "--chunks", "2", "-t", threads, "-o", dat,
             "--output-format", "dat"], failures, "quern imatrix dat")
        ours, ref = p("ours_dat.gguf"), p("ref_dat.gguf")
        run([quern, "quantize", "-q", "--imatrix", dat, f16, ours, "Q4_K_M", "-t", threads], failures, "quern dat")
        run([lq, "--imatrix", dat, f16, ref, "Q4_K_M", threads], failures, "llama-quantize dat")
        same_file("smollm2 Q4_K_M --imatrix .dat", ours, ref, failures)

        # 3. every k-quant recipe without fallbacks
        tiny, tiny_im = p("tiny_f32.gguf"), p("tiny.imatrix.gguf")
        run([quern, "synth", "--preset", "tiny", "--type", "F32", "-o", tiny, "-q", "-t", threads], failures,
            "quern synth")
        run([quern, "imatrix", "-m", tiny, "-f", text, "--ctx", "128", "--chunks", "4", "-t", threads,
             "-o", tiny_im], failures, "quern imatrix tiny")
        for ftype in TYPES:
            ours, ref = p(f"tiny_ours_{ftype}.gguf"), p(f"tiny_ref_{ftype}.gguf")
            run([quern, "quantize", "-q", "--imatrix", tiny_im, tiny, ours, ftype, "-t", threads], failures,
                f"quern tiny {ftype}")
            run([lq, "--imatrix", tiny_im, tiny, ref, ftype, threads], failures, f"llama-quantize tiny {ftype}")
            same_file(f"tiny {ftype} --imatrix", ours, ref, failures)

    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
