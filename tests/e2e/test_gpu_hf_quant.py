# test_gpu_hf_quant.py — HF GPTQ / NF4 checkpoints on the GPU (kernels/quant/lutq_gpu.h block formats, issue 5)
# against the CPU lutq path: SmolLM2-135M exported to HF f16, quantized by `quern quantize` to NF4 (plain and
# double quant), GPTQ RTN 4-bit g128 and 8-bit, and GPTQ act-order 4-bit (small calibration); `quern perplexity`
# (2 windows of 512 tokens of alice29) with --device cuda and --device cpu must agree within 0.5% (the GPU
# rounds activations to fp16, the CPU keeps f32: measured differences on GGUF are ~0.1-0.3%), and the CUDA
# load must not fall back to fp16 ("no GPU block format" in the log) for any of them.
# Skips (77) without the default model, alice29/lcet10 or a CUDA device.
# QN_TEST_LABELS: gpu slow
import os
import re
import subprocess
import sys
import tempfile

SKIP = 77
Q = os.environ.get("QN_QUERN_BIN", "build/quern")
CACHE = os.path.expanduser("~/.cache/quern")
MODEL = os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
EVAL = os.path.join(CACHE, "data", "alice29.txt")
CALIB = os.path.join(CACHE, "data", "lcet10.txt")


def run(*args):
    p = subprocess.run([Q, *args], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL: quern {' '.join(args)}: {p.stderr[-2000:]}")
    return p


def ppl(d, device):
    p = run("perplexity", "-m", d, "-f", EVAL, "--ctx", "512", "--chunks", "2", "-t", "4", "--device", device)
    m = re.search(r"perplexity: ([0-9.]+)", p.stdout)
    assert m, p.stdout
    return float(m.group(1)), p.stderr


def main():
    if not all(os.path.exists(p) for p in (MODEL, EVAL, CALIB)):
        print("skip: model or texts missing")
        return SKIP
    with tempfile.TemporaryDirectory() as t:
        base = os.path.join(t, "base")
        run("export-hf", MODEL, base, "--dtype", "f16")
        probe = subprocess.run([Q, "perplexity", "-m", base, "-f", EVAL, "--ctx", "512", "--chunks", "1",
                                "--device", "cuda"], capture_output=True, text=True)
        if probe.returncode != 0 and ("no usable GPU" in probe.stderr or "without CUDA" in probe.stderr):
            print("skip: no CUDA device")
            return SKIP
        bad = []
        for name, extra in (("nf4", ["nf4"]), ("nf4dq", ["nf4", "--double-quant"]),
                            ("rtn4", ["gptq", "--rtn"]), ("rtn8", ["gptq", "--rtn", "--bits", "8"]),
                            ("gptq4act", ["gptq", "--act-order", "--calib", CALIB, "--calib-samples", "4",
                                          "--calib-ctx", "256"])):
            d = os.path.join(t, name)
            run("quantize", base, d, *extra, "-t", "4", "-q")
            pc, _ = ppl(d, "cpu")
            pg, log = ppl(d, "cuda")
            fell_back = [l for l in log.splitlines() if "no GPU block format" in l]
            print(f"{name}: cpu {pc:.4f} cuda {pg:.4f} ratio {pg / pc:.5f}, fp16 fallbacks {len(fell_back)}")
            for l in fell_back[:3]:
                print("   ", l)
            if abs(pg / pc - 1.0) > 5e-3 or fell_back:
                bad.append(name)
        if bad:
            print(f"FAIL: {bad}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
