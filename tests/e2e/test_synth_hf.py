# test_synth_hf.py — `quern synth --type gptq4|gptq8|gptq4-act|awq4|nf4|nf4-dq|fp4` (quantized Hugging Face
# directories with random codes, runtime/model/hf_synth.h) end to end on the CPU:
#   1. tiny and smollm2-135m (--layers 2) with every type: the directory holds config.json with the
#      quantization_config our loader expects and tokenizer.json, `quern run -m DIR -n 4 --device cpu` generates
#      4 tokens, `quern logits` gives finite logits, and every linear dequantized here with numpy
#      (docs/formats.md §3.3, §4.1, §5.2) has the requested std (--std 0.02; 0.05 once) within 5%;
#      gptq4-act's g_idx holds every group exactly group_size times (the last one the remainder), out of order;
#   1b. smollm2-135m, every type: `quern logits` of a 26-token prompt with each SIMD table this CPU runs (avx2,
#      avx512: on AMX-BF16 machines the first 16 tokens go through lutq_amx_cpu.c's tiles, the other 10 and the
#      decode-size calls through the fp32 kernels) against `--isa scalar`: NMSE <= 1e-5 (measured <= 4e-8: fp32
#      summation order and the vector exp; a wrong row range, tile edge or zero-point fold gives far more);
#   2. the same seed gives the same model.safetensors with 1 or 2 threads;
#   3. bad input fails with a message and leaves nothing: unknown type, AWQ group size that does not divide
#      smollm2's 576, --sym on nf4, --group-size on a GGUF type, an output directory that is not empty.
# Skips (77) without the quern binary or the default model (the tokenizer source); the std checks need numpy.
# QN_TEST_LABELS: cpu
import json
import os
import subprocess
import sys
import tempfile

from convert_util import inputs, read_safetensors

SKIP = 77
TYPES = ["gptq4", "gptq8", "gptq4-act", "awq4", "nf4", "nf4-dq", "fp4"]
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj"]
AWQ_REVERSE = [0, 4, 1, 5, 2, 6, 3, 7]


def dequant(t, pre, qc, np):
    """W [N][K] of the linear `pre` (ends with '.') as float32."""
    m = qc["quant_method"]
    if m == "gptq":
        bits = qc["bits"]
        P, mask = 32 // bits, (1 << bits) - 1
        qw = t[pre + "qweight"].view(np.uint32)
        shifts = (np.arange(P, dtype=np.uint32) * bits)[None, :, None]
        q = ((qw[:, None, :] >> shifts) & mask).reshape(-1, qw.shape[1])  # [K][N]
        qz = t[pre + "qzeros"].view(np.uint32)
        zs = (np.arange(P, dtype=np.uint32) * bits)[None, None, :]
        z = (((qz[:, :, None] >> zs) & mask).reshape(qz.shape[0], -1) + 1).astype(np.int32)  # v1: stored + 1
        g = t[pre + "g_idx"]
        s = t[pre + "scales"].astype(np.float32)
        return (s[g] * (q.astype(np.int32) - z[g])).T
    if m == "awq":
        gs = qc["group_size"]
        shifts = np.array([4 * r for r in AWQ_REVERSE], dtype=np.uint32)[None, None, :]
        qw = t[pre + "qweight"].view(np.uint32)
        q = ((qw[:, :, None] >> shifts) & 15).reshape(qw.shape[0], -1).astype(np.int32)  # [K][N]
        qz = t[pre + "qzeros"].view(np.uint32)
        z = ((qz[:, :, None] >> shifts) & 15).reshape(qz.shape[0], -1).astype(np.int32)
        s = t[pre + "scales"].astype(np.float32)
        g = np.arange(q.shape[0]) // gs
        return (s[g] * (q - z[g])).T
    st = json.loads(bytes(t[[k for k in t if k.startswith(pre + "weight.quant_state.")][0]]).decode())
    n, k = st["shape"]
    w8 = t[pre + "weight"].reshape(-1)
    codes = np.empty(w8.size * 2, dtype=np.uint8)
    codes[0::2], codes[1::2] = w8 >> 4, w8 & 15
    am = t[pre + "weight.absmax"]
    if "nested_offset" in st:
        nm = t[pre + "weight.nested_quant_map"]
        na = t[pre + "weight.nested_absmax"]
        am = nm[am] * na[np.arange(am.size) // st["nested_blocksize"]] + np.float32(st["nested_offset"])
    w = t[pre + "weight.quant_map"][codes] * am[np.arange(codes.size) // st["blocksize"]]
    return w.reshape(n, k)


ISA_PROMPT = ("The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat near the old wooden "
              "door of the house")  # 26 tokens: one 16-token tile and 10 more
ISA_MAX_NMSE = 1e-5


def isa_vs_scalar(run, quern, out, tmp, preset, ty, np, failures):
    """Step 1b: logits of ISA_PROMPT from each SIMD table this CPU runs against --isa scalar."""
    def logits(isa):
        lf = os.path.join(tmp, f"logits.{isa}.f32")
        r = subprocess.run([quern, "logits", "-m", out, "-p", ISA_PROMPT, "-t", "2", "--device", "cpu", "--isa", isa,
                            "-o", lf], capture_output=True, text=True, timeout=600)
        if r.returncode:
            if isa != "scalar" and "not available" in r.stderr:
                return None
            failures.append(f"logits --isa {isa} {preset} {ty}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
            return None
        return np.fromfile(lf, dtype=np.float32).astype(np.float64)
    ref = logits("scalar")
    if ref is None:
        return
    for isa in ("avx2", "avx512"):
        v = logits(isa)
        if v is None:
            continue
        nmse = float(((v - ref) ** 2).sum() / (ref ** 2).sum()) if v.size == ref.size else float("inf")
        print(f"{preset} {ty}: --isa {isa} vs scalar logits NMSE {nmse:.2e}")
        if not nmse <= ISA_MAX_NMSE:
            failures.append(f"{preset} {ty}: --isa {isa} logits NMSE {nmse:.3g} against scalar (max {ISA_MAX_NMSE})")


def main():
    got = inputs()
    if got is None:
        return SKIP
    quern = got[0]
    try:
        import numpy as np
    except ImportError:
        np = None
        print("numpy absent: std checks skipped")
    failures = []

    def run(args, want_ok=True, label=None):
        r = subprocess.run([quern] + args, capture_output=True, text=True, timeout=600)
        if (r.returncode == 0) != want_ok:
            failures.append(f"{label or ' '.join(args[:5])}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
        return r

    with tempfile.TemporaryDirectory() as tmp:
        # 1. every type on two presets
        for preset in ("tiny", "smollm2-135m"):
            for ty in TYPES:
                out = os.path.join(tmp, f"{preset}_{ty}")
                std = 0.05 if (preset, ty) == ("tiny", "gptq8") else 0.02
                extra = ["--group-size", "64"] if (preset, ty) == ("smollm2-135m", "awq4") else []
                if (preset, ty) == ("tiny", "gptq4"):
                    extra = ["--sym"]
                r = run(["synth", "--preset", preset, "--type", ty, "--layers", "2", "-o", out, "-t", "2", "-q",
                         "--std", str(std)] + extra, label=f"synth {preset} {ty}")
                if r.returncode:
                    continue
                cfg = json.load(open(os.path.join(out, "config.json")))
                qc = cfg.get("quantization_config", {})
                want_m = {"g": "gptq", "a": "awq", "n": "bitsandbytes", "f": "bitsandbytes"}[ty[0]]
                if qc.get("quant_method") != want_m or not os.path.exists(os.path.join(out, "tokenizer.json")):
                    failures.append(f"{preset} {ty}: quantization_config {qc} / tokenizer.json missing")
                if ty.startswith("gptq") and (qc.get("desc_act") != (ty == "gptq4-act")
                                              or qc.get("sym") != ("--sym" in extra)):
                    failures.append(f"{preset} {ty}: desc_act / sym in {qc}")
                if ty.startswith(("nf4", "fp4")) and (qc.get("bnb_4bit_quant_type") != ty[:3] or
                                                      qc.get("bnb_4bit_use_double_quant") != (ty == "nf4-dq")):
                    failures.append(f"{preset} {ty}: bnb fields in {qc}")
                r = run(["run", "-m", out, "-p", "Hello", "-n", "4", "--temp", "0", "-t", "2", "--device", "cpu"],
                        label=f"run {preset} {ty}")
                if r.returncode == 0 and "generation: 4 tokens" not in r.stderr + r.stdout:
                    failures.append(f"run {preset} {ty}: no 4-token generation line")
                lf = os.path.join(tmp, "logits.f32")
                r = run(["logits", "-m", out, "-p", "Hello world", "-t", "2", "--device", "cpu", "-o", lf],
                        label=f"logits {preset} {ty}")
                if np is None or r.returncode:
                    continue
                lg = np.fromfile(lf, dtype=np.float32)
                if lg.size == 0 or lg.size % cfg["vocab_size"] or not np.isfinite(lg).all() or lg.std() == 0:
                    failures.append(f"logits {preset} {ty}: {lg.size} values, finite {np.isfinite(lg).all()}")
                if preset == "smollm2-135m":
                    isa_vs_scalar(run, quern, out, tmp, preset, ty, np, failures)
                t = read_safetensors(os.path.join(out, "model.safetensors"), np)
                worst = 0.0
                for il in range(2):
                    for lin in LINEARS:
                        w = dequant(t, f"model.layers.{il}.{lin}.", qc, np)
                        want = (cfg["num_attention_heads"] * cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
                                if lin == "self_attn.o_proj" else cfg["intermediate_size"] if lin == "mlp.down_proj"
                                else cfg["hidden_size"])
                        if w.shape[1] != want:
                            failures.append(f"{preset} {ty} {lin}: K {w.shape[1]}, expected {want}")
                        rel = abs(float(w.std()) / std - 1)
                        worst = max(worst, rel)
                        if rel > 0.05 or abs(float(w.mean())) > 0.1 * std:
                            failures.append(f"{preset} {ty} layer {il} {lin}: std {w.std():.5f} mean {w.mean():.6f}, "
                                            f"expected std {std}")
                if ty == "gptq4-act":
                    gs = qc["group_size"]
                    for lin in LINEARS:
                        g = t[f"model.layers.0.{lin}.g_idx"]
                        cnt = np.bincount(g)
                        K = g.size
                        want_cnt = [gs] * (K // gs) + ([K % gs] if K % gs else [])
                        if cnt.tolist() != want_cnt or bool((np.diff(g) >= 0).all()):
                            failures.append(f"{preset} gptq4-act {lin}: g_idx counts {cnt.tolist()} (want "
                                            f"{want_cnt}), monotone {bool((np.diff(g) >= 0).all())}")
                    # one act order per input, as GPTQ's Hessian gives: q/k/v share g_idx, gate/up share it,
                    # the others differ from them
                    gi = {lin: t[f"model.layers.0.{lin}.g_idx"] for lin in LINEARS}
                    for x, y, same in (("self_attn.q_proj", "self_attn.k_proj", True),
                                       ("self_attn.q_proj", "self_attn.v_proj", True),
                                       ("mlp.gate_proj", "mlp.up_proj", True),
                                       ("self_attn.q_proj", "self_attn.o_proj", False),
                                       ("self_attn.q_proj", "mlp.gate_proj", False)):
                        if gi[x].shape == gi[y].shape and bool((gi[x] == gi[y]).all()) != same:
                            failures.append(f"{preset} gptq4-act: {x} and {y} g_idx {'differ' if same else 'equal'}")
                print(f"{preset} {ty}: loads, runs, logits finite; worst std error {100 * worst:.2f}%")

        # 2. threads do not change the bytes
        a, b = os.path.join(tmp, "t1"), os.path.join(tmp, "t2")
        for d, th in ((a, "1"), (b, "2")):
            run(["synth", "--preset", "tiny", "--type", "gptq4-act", "--layers", "1", "-o", d, "-t", th, "-q"])
        read = lambda d: open(os.path.join(d, "model.safetensors"), "rb").read() if os.path.isdir(d) else b""  # noqa: E731
        if not read(a) or read(a) != read(b):
            failures.append("gptq4-act: 1 vs 2 threads give different model.safetensors")

        # 3. bad input
        def expect_fail(args, needle, out):
            r = run(args, want_ok=False, label=" ".join(args[:8]))
            if needle not in r.stderr:
                failures.append(f"{' '.join(args[:8])}: stderr lacks '{needle}': {r.stderr.strip()[-200:]}")
            left = [f for f in os.listdir(tmp) if f.startswith(os.path.basename(out) + ".tmp")]
            if left or (os.path.exists(out) and os.listdir(out) != ["keep"]):
                failures.append(f"{' '.join(args[:8])}: left {left or out} behind")

        bad = os.path.join(tmp, "bad")
        expect_fail(["synth", "--preset", "tiny", "--type", "gptq5", "-o", bad], "unknown type", bad)
        expect_fail(["synth", "--preset", "smollm2-135m", "--type", "awq4", "--layers", "1", "-o", bad],
                    "multiple of the group size 128", bad)
        expect_fail(["synth", "--preset", "tiny", "--type", "nf4", "--sym", "-o", bad], "--sym", bad)
        expect_fail(["synth", "--preset", "tiny", "--type", "Q4_0", "--group-size", "64", "-o", bad],
                    "--group-size", bad)
        os.makedirs(bad)
        open(os.path.join(bad, "keep"), "w").close()
        expect_fail(["synth", "--preset", "tiny", "--type", "nf4", "-o", bad], "not an empty directory", bad)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
