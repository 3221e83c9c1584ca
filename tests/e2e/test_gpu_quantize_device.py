# test_gpu_quantize_device.py — `quern quantize ... --device cuda` against `--device cpu` (issue 3: calibration and
# quantization use the GPU when present; model/calib_backend.h). SmolLM2-135M exported to HF f16 (the fixture of
# test_quantize_hf.py), quantized on both devices with GPTQ 4-bit g128 without and with act-order (8 x 256 tokens of
# lcet10) and AWQ 4-bit g64 (SmolLM2's in_features 576 is not a multiple of 128, which the AWQ GEMM layout needs;
# 8 x 256 tokens, grid 10). Asserts, per configuration:
#   - the CUDA run says it ran on cuda:N and the CPU run on cpu (the quantize log line);
#   - the dequantized weights agree (numpy unpacking of the written checkpoints, docs/formats.md §3.2 / §4.1):
#       GPTQ: against a control made on the CPU alone: the same quantization of the base with ONE f16 weight (layer 0's
#             input-norm weight 0) moved by one ulp. GPTQ is chaotic in rounding-level changes: a flipped code is fed
#             back along its row and the calibration of every later layer sees the changed outputs. Measured on
#             SmolLM2 (bench/results/gpu-decode-grouped-2026-12-02.md): the control's NMSE(ctl vs cpu) /
#             NMSE(cpu vs base) has mean 0.82, max 1.27, and its perplexity is 2.8% off — the same spread as
#             the first GPU run's (mean 0.82, max 1.26, 0.95%). Asserted: the CUDA run's ratio mean and max within
#             1.5x the control's, perplexity within max(0.5%, 1.5x the control's deviation), and layer 0's q_proj
#             (the same inputs on both devices, H differs by summation order only) <= 1% of its codes changed
#             (0.02% measured; a transposed operand or a wrong slot changes most of them).
#       AWQ: >= 90% of the linears with NMSE(cuda vs cpu) <= 1e-4 of their energy: the scale search picks one alpha
#             from a grid, and only a near-tie between two alphas (errors equal to ~1e-6) may pick differently.
#   - perplexity (alice29, 4 windows of 512, `quern perplexity --device cpu`, the quality tests' measure) of the
#     CUDA-quantized model within 0.5% of the CPU-quantized one (GPTQ: or the control's bound above).
# Wall times of both runs are printed for the record, not asserted. Skips (77) without the model, the texts,
# numpy / safetensors in QN_PYTHON, or a CUDA device (the probe is `quern quantize --device cuda`).
# QN_TEST_LABELS: gpu slow
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

SKIP = 77
Q = os.environ.get("QN_QUERN_BIN", "build/quern")
CACHE = os.path.expanduser("~/.cache/quern")
MODEL = os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
EVAL = os.path.join(CACHE, "data", "alice29.txt")
CALIB = os.path.join(CACHE, "data", "lcet10.txt")
THREADS = str(min(16, os.cpu_count() or 1))
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj")
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)

try:
    import numpy as np
    from safetensors.numpy import load_file, save_file
except ImportError:
    np = None


def run(*args):
    p = subprocess.run([Q, *args], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL: quern {' '.join(args)}: {p.stderr[-2000:]}")
    return p


def ppl(d):
    p = run("perplexity", "-m", d, "-f", EVAL, "--ctx", "512", "--chunks", "4", "-t", THREADS, "--device", "cpu")
    m = re.search(r"perplexity: ([0-9.]+)", p.stdout)
    assert m, p.stdout
    return float(m.group(1))


def unpack_bits(words, bits, axis):
    """int32 words -> 4-bit codes, LSB first, along axis (GPTQ §3.2)."""
    w = words.astype(np.uint32)
    parts = [(w >> (bits * i)) & ((1 << bits) - 1) for i in range(32 // bits)]
    return np.stack(parts, axis=axis + 1).reshape(
        *[s * (32 // bits) if a == axis else s for a, s in enumerate(w.shape)]).astype(np.int32)


def gptq_dequant(t, pre):
    """[n][k] f32 from qweight [k/8][n], qzeros [G][n/8] (v1: zero - 1), scales [G][n] f16, g_idx [k]."""
    q = unpack_bits(t[pre + "qweight"], 4, 0)              # [k][n]
    z = unpack_bits(t[pre + "qzeros"], 4, 1) + 1           # [G][n]
    s = t[pre + "scales"].astype(np.float32)               # [G][n]
    g = t[pre + "g_idx"]                                    # [k]
    return (s[g] * (q - z[g]).astype(np.float32)).T, q.T


def awq_dequant(t, pre, gs):
    """[n][k] f32 from qweight [k][n/8] and qzeros [G][n/8] (nibble i = column 8c + ORDER[i]), scales [G][n]."""
    def unpack(words):
        w = words.astype(np.uint32)
        out = np.zeros((w.shape[0], w.shape[1] * 8), np.int32)
        for i, o in enumerate(AWQ_ORDER):
            out[:, o::8] = (w >> (4 * i)) & 15
        return out
    q, z, s = unpack(t[pre + "qweight"]), unpack(t[pre + "qzeros"]), t[pre + "scales"].astype(np.float32)
    g = np.arange(q.shape[0]) // gs
    return (s[g] * (q - z[g]).astype(np.float32)).T, q.T


def nmse(a, b):
    return float(np.sum((a - b) ** 2) / np.sum(b ** 2))


def quantize(base, out, args, device):
    t0 = time.time()
    p = run("quantize", base, out, *args, "--device", device, "-t", THREADS, "-v")
    return time.time() - t0, p.stderr


def main():
    if not all(os.path.exists(p) for p in (MODEL, EVAL, CALIB)):
        print("skip: model or texts missing")
        return SKIP
    if np is None:
        print("skip: numpy / safetensors missing in QN_PYTHON")
        return SKIP
    calib = ["--calib", CALIB, "--calib-samples", "8", "--calib-ctx", "256"]
    configs = (("gptq4", "gptq", ["gptq", "--no-act-order", *calib]),
               ("gptq4act", "gptq", ["gptq", "--act-order", *calib]),
               ("awq4g64", "awq", ["awq", "--group-size", "64", "--awq-grid", "10", *calib]))
    with tempfile.TemporaryDirectory() as t:
        base = os.path.join(t, "base")
        run("export-hf", MODEL, base, "--dtype", "f16")
        probe = subprocess.run([Q, "quantize", base, os.path.join(t, "probe"), "gptq", "--device", "cuda", "--calib",
                                CALIB, "--calib-samples", "1", "--calib-ctx", "16", "-q"], capture_output=True, text=True)
        if probe.returncode != 0 and ("no CUDA device" in probe.stderr or "without CUDA" in probe.stderr):
            print("skip: no CUDA device (or a build without CUDA)")
            return SKIP
        assert probe.returncode == 0, probe.stderr
        base_w = load_file(os.path.join(base, "model.safetensors"))
        ctl_base = os.path.join(t, "base_ulp") # the control's base: one f16 weight one ulp away
        shutil.copytree(base, ctl_base)
        tw = dict(base_w)
        k = "model.layers.0.input_layernorm.weight"
        a = tw[k].copy()
        a.view(np.uint16)[0] ^= 1
        tw[k] = a
        save_file(tw, os.path.join(ctl_base, "model.safetensors"), metadata={"format": "pt"})
        bad = []
        for name, method, args in configs:
            dc, dg = os.path.join(t, name + "_cpu"), os.path.join(t, name + "_cuda")
            tc, logc = quantize(base, dc, args, "cpu")
            tg, logg = quantize(base, dg, args, "cuda")
            print(f"{name}: quantize wall cpu {tc:.1f} s, cuda {tg:.1f} s (x{tc / tg:.2f})")
            if not re.search(r"calibration and quantization on cuda:\d", logg) or not re.search(r" on cuda:\d", logg):
                bad.append(f"{name}: the cuda run does not say it ran on cuda")
            if "calibration and quantization on cpu" not in logc:
                bad.append(f"{name}: the cpu run does not say it ran on cpu")
            wc, wg = load_file(os.path.join(dc, "model.safetensors")), load_file(os.path.join(dg, "model.safetensors"))
            n_layer = 1 + max(int(k.split(".")[2]) for k in wc if k.startswith("model.layers."))
            ratios, cratios, close, flips0 = [], [], 0, None
            if method == "gptq":
                dk = os.path.join(t, name + "_ctl")
                quantize(ctl_base, dk, args, "cpu")
                wk = load_file(os.path.join(dk, "model.safetensors"))
            for il in range(n_layer):
                for lin in LINEARS:
                    pre = f"model.layers.{il}.{lin}."
                    if method == "gptq":
                        (dqc, qc), (dqg, qg), (dqk, _) = gptq_dequant(wc, pre), gptq_dequant(wg, pre), gptq_dequant(wk, pre)
                        ref = base_w[pre + "weight"].astype(np.float32)
                        ratios.append(nmse(dqg, dqc) / nmse(dqc, ref))
                        cratios.append(nmse(dqk, dqc) / nmse(dqc, ref))
                        if il == 0 and lin == "self_attn.q_proj":
                            flips0 = float(np.mean(qc != qg))
                    else:
                        (dqc, _), (dqg, _) = awq_dequant(wc, pre, 64), awq_dequant(wg, pre, 64)
                        e = nmse(dqg, dqc)
                        ratios.append(e)
                        close += e <= 1e-4
            mean = lambda v: sum(v) / len(v)
            if method == "gptq":
                print(f"  gptq: NMSE(cuda vs cpu) / NMSE(cpu vs base): max {max(ratios):.3g}, mean {mean(ratios):.3g}; "
                      f"control (cpu, 1 ulp): max {max(cratios):.3g}, mean {mean(cratios):.3g}; "
                      f"layer 0 q_proj codes changed {100 * flips0:.2f}%")
                if max(ratios) > 1.5 * max(cratios) or mean(ratios) > 1.5 * mean(cratios) or flips0 > 0.01:
                    bad.append(f"{name}: weights disagree beyond the control (ratio max {max(ratios):.3g}, mean "
                               f"{mean(ratios):.3g}; control {max(cratios):.3g}, {mean(cratios):.3g}; layer-0 flips {flips0:.4f})")
            else:
                al = lambda log: re.findall(r"awq: layer (\d+) (\S+)\s+alpha ([0-9.]+)", log)
                ac, ag = al(logc), al(logg)
                same = sum(a == b for a, b in zip(ac, ag))
                print(f"  awq: {close}/{len(ratios)} linears with NMSE <= 1e-4 (max {max(ratios):.3g}); "
                      f"alpha picks equal {same}/{len(ac)}")
                if close < 0.9 * len(ratios):
                    bad.append(f"{name}: weights disagree ({close}/{len(ratios)} close)")
            pc, pg = ppl(dc), ppl(dg)
            tol = 5e-3
            if method == "gptq":
                pk = ppl(dk)
                tol = max(tol, 1.5 * abs(pk / pc - 1.0))
                print(f"  control perplexity {pk:.4f} (ratio {pk / pc:.5f})")
            print(f"  perplexity: cpu-quantized {pc:.4f}, cuda-quantized {pg:.4f}, ratio {pg / pc:.5f} (bound {tol:.4f})")
            if abs(pg / pc - 1.0) > tol:
                bad.append(f"{name}: perplexity {pg:.4f} vs {pc:.4f} (bound {tol:.4f})")
        if bad:
            print("FAIL:\n  " + "\n  ".join(bad))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
