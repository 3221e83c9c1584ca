# test_quantize_hf.py — `quern quantize HF_DIR OUT gptq|awq|nf4` end to end on SmolLM2-135M (export-hf f16 of the
# default GGUF): NF4 with and without double quant, RTN (--rtn) and GPTQ 4-bit g128, RTN and AWQ 4-bit g64 (SmolLM2's
# in_features 576 is not a multiple of 128, which the AWQ GEMM layout needs) load in `quern perplexity -m OUT` and
# stay near the base (< 1.5x); GPTQ and AWQ must beat RTN at the same bits and group size (issue 3); bad inputs
# (missing config.json, unsupported bits, too-short calibration text, an AWQ group size that does not divide
# in_features) fail with a clear message and leave no output directory. Skips (77) when the model or alice29 is
# missing.
# GPTQ uses a small calibration (8 x 256 tokens of lcet10) to stay within the CPU budget, with the CLI defaults
# (act-order, static groups, damp 0.1: 23.02 vs RTN 24.14 measured, bench/results/quality-hf-quantize-2026-12-02.md;
# the old defaults, no act-order, dynamic groups, damp 0.01, measured 24.84, worse than RTN). AWQ uses 4 x 256 tokens
# and searches 5 alpha points instead of 20 for the same reason (21.60 vs RTN 23.12 measured; 21.26 with 8 x 256,
# grid 20).
# QN_TEST_LABELS: cpu slow
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


def run(*args, ok=True):
    p = subprocess.run([Q, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        sys.exit(f"FAIL: quern {' '.join(args)}: {p.stderr[-2000:]}")
    return p


def ppl(d):
    out = run("perplexity", "-m", d, "-f", EVAL, "--ctx", "512", "--chunks", "4", "-t", "2").stdout
    m = re.search(r"perplexity: ([0-9.]+)", out)
    assert m, out
    return float(m.group(1))


def main():
    if not all(os.path.exists(p) for p in (MODEL, EVAL, CALIB)):
        print("skip: model or texts missing")
        return SKIP
    with tempfile.TemporaryDirectory() as t:
        base = os.path.join(t, "base")
        run("export-hf", MODEL, base, "--dtype", "f16")
        # bad inputs
        for args, msg in (([t, os.path.join(t, "x1"), "nf4"], "config.json"),
                          ([base, os.path.join(t, "x2"), "gptq", "--bits", "5", "--rtn"], "bits"),
                          ([base, os.path.join(t, "x3"), "gptq", "--calib", os.path.join(t, "short.txt")], "too short"),
                          ([base, os.path.join(t, "x4"), "awq", "--calib", CALIB, "--group-size", "128"],
                           "group size"),
                          ([base, os.path.join(t, "x5"), "gptq", "--calib", CALIB, "--device", "bogus"],
                           "--device bogus")):
            if "short.txt" in args[-1]:
                open(args[-1], "w").write("Too short.")
            p = run("quantize", *args, ok=False)
            assert p.returncode != 0 and msg in p.stderr, (args, p.stderr)
            assert not any(n.startswith(os.path.basename(args[1])) for n in os.listdir(t)), os.listdir(t)
        res = {"base": ppl(base)}
        calib = ["--calib", CALIB, "--calib-samples", "8", "--calib-ctx", "256"]
        for name, extra in (("nf4", ["nf4"]), ("nf4dq", ["nf4", "--double-quant"]), ("rtn", ["gptq", "--rtn"]),
                            ("gptq", ["gptq", *calib]), ("rtn64", ["gptq", "--rtn", "--group-size", "64"]),
                            ("awq64", ["awq", "--group-size", "64", "--awq-grid", "5", "--calib", CALIB,
                                       "--calib-samples", "4", "--calib-ctx", "256"])):
            d = os.path.join(t, name)
            run("quantize", base, d, *extra, "-t", "2", "-q")
            res[name] = ppl(d)
        print(res)
        assert res["nf4"] < 1.5 * res["base"] and res["nf4dq"] < 1.5 * res["base"], res
        assert res["gptq"] < 1.5 * res["base"] and res["rtn"] < 1.5 * res["base"], res
        assert res["awq64"] < res["rtn64"], res
        assert res["gptq"] < res["rtn"], res
        print(f"AWQ / RTN perplexity (g64): {res['awq64'] / res['rtn64']:.4f}")
        print(f"GPTQ / RTN perplexity (g128): {res['gptq'] / res['rtn']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
