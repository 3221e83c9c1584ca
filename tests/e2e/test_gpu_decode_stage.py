# test_gpu_decode_stage.py — the int8 decode matmuls read their weights directly (--mmvq-direct), staged through
# shared memory (--mmvq-staged) or as the default picks (staged for Q2_K/Q3_K/Q6_K/Q8_0, kq_mmvq.cu): the three must
# give the very same bits end to end, on Llama-3-8B shapes where the engine chains its kernels with programmatic
# dependent launch (PDL). The unit tests compare the two kernels one launch at a time and could not see what this test
# was written for: the staged kernel read the activations through ld.global.nc, and as a PDL dependent it got stale
# lines that an earlier kernel had read on the same SM; greedy decoding turned to token 0 and the perplexity to nan
# (bench/results/gpu-staged-2026-12-03.md). Models: `quern synth --preset llama3-8b --layers 2` as Q4_K_M (Q4_K and
# Q6_K weights, a Q6_K LM head), Q8_0 and Q2_K (Q2_K/Q3_K/Q4_K weights; the x of the one-token launches from shared
# memory in every mode, kq_mmvq.cuh). Asserted per model: the greedy continuation (16 decode steps) and the prompt
# logits identical across the three modes, and the decode-path perplexity (batch 1: 127 decode steps) identical and
# finite. Skips (77) without a CUDA device or alice29.
# QN_TEST_LABELS: gpu slow
import glob
import math
import os
import subprocess
import sys
import tempfile

SKIP = 77
Q = os.environ.get("QN_QUERN_BIN", "build/quern")
CACHE = os.path.expanduser("~/.cache/quern")
TEXT = os.path.join(CACHE, "data", "alice29.txt")
MODES = {"direct": ["--mmvq-direct"], "auto": [], "staged": ["--mmvq-staged"]}
TOKENS = "128000,791,6864,315,9822,374,12366,13"


def run(*args):
    p = subprocess.run([Q, *args], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL: quern {' '.join(args)}: {p.stderr[-1500:]}")
    return p.stdout


def main():
    if not os.path.exists(TEXT):
        print("skip: alice29 missing")
        return SKIP
    if not glob.glob("/dev/nvidia[0-9]*"):  # no driver device node: no GPU (before minutes of synth on a CPU box)
        print("skip: no CUDA device")
        return SKIP
    failures = []
    with tempfile.TemporaryDirectory() as t:
        text = os.path.join(t, "a20k.txt")
        with open(TEXT, "rb") as f, open(text, "wb") as g:
            g.write(f.read(20000))
        for typ in ("Q4_K_M", "Q8_0", "Q2_K"):
            m = os.path.join(t, f"l2-{typ}.gguf")
            run("synth", "--preset", "llama3-8b", "--type", typ, "--layers", "2", "-o", m, "-q")
            probe = subprocess.run([Q, "logits", "--device", "cuda", "-m", m, "--tokens", "128000"],
                                   capture_output=True, text=True)
            if probe.returncode != 0 and ("no usable GPU" in probe.stderr or "without CUDA" in probe.stderr):
                print("skip: no usable CUDA device")
                return SKIP
            res = {}
            for mode, flags in MODES.items():
                out = os.path.join(t, f"logits-{typ}-{mode}.f32")
                js = run("logits", "--device", "cuda", "-m", m, "--tokens", TOKENS, "--greedy", "16", "-o", out, *flags)
                ppl = run("perplexity", "--device", "cuda", "-m", m, "-f", text, "-c", "128", "-b", "1", "--chunks",
                          "1", *flags).strip().splitlines()[-1]
                with open(out, "rb") as f:
                    res[mode] = (js.strip(), f.read(), ppl)
                print(f"{typ} {mode}: {js.strip()} {ppl}")
            for mode in ("auto", "staged"):
                for i, what in enumerate(("greedy continuation", "prompt logits", "decode-path perplexity")):
                    if res[mode][i] != res["direct"][i]:
                        failures.append(f"{typ}: {what} of --{mode} differs from direct")
            v = float(res["direct"][2].split(":")[1])
            if not math.isfinite(v):
                failures.append(f"{typ}: decode-path perplexity {v} is not finite")
    for f in failures:
        print("FAIL:", f)
    print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
