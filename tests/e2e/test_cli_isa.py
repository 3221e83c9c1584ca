# test_cli_isa.py — `--isa` of the quern commands (CPU):
#   - scalar, and each table of this architecture that the CPU has, is accepted by name and generates; the
#     others of this architecture are refused as not available;
#   - a name that is no ISA is refused, with the list of names (`quern run` and `quern perplexity`, which both
#     parse --isa through tools/common.c);
#   - the other architecture's ISAs (neon and neon_dotprod on x86-64) are refused with "not available" at
#     start-up, exit code 1, not a crash;
#   - `--no-repack` (the load-time 8-row repack off): on a synthetic 2-layer `tiny` Q4_K_M (256 wide: every matmul
#     weight Q4_K or Q6_K) `quern perplexity` prints the same per-chunk figures (4 decimals) with and without it and
#     `quern run` the same greedy ids (the repacked K-quant kernels are bit-identical to the AVX2 dots); on a 2-layer
#     SmolLM2-shape Q4_K_M (576 wide: its 576-column weights fall back to Q5_0 / Q5_1, whose repacked tiles take the
#     scalar dot's order while --no-repack sums in AVX2 lanes) every chunk agrees within 1e-3 relative; bench
#     accepts it.
# Skips (77) without the quern binary or the default model.
# QN_TEST_LABELS: cpu
import os
import platform
import subprocess
import sys
import tempfile

SKIP = 77
NAMES = ("auto", "scalar", "avx2", "avx512", "neon", "neon_dotprod")


def main():
    quern = os.environ.get("QN_QUERN_BIN", "")
    model = os.path.expanduser("~/.cache/quern/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    if not quern or not os.access(quern, os.X_OK) or not os.path.exists(model):
        print("skip: quern binary or default model missing")
        return SKIP
    failures = []

    def run(args):
        return subprocess.run([quern] + args, capture_output=True, text=True, timeout=300)

    def check(cond, what):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures.append(what)

    # a name that is no ISA: refused, the message names the value and lists the valid ones
    for cmd in (["run", "-p", "hi", "-n", "1"], ["perplexity", "-f", model]):
        r = run(cmd + ["-m", model, "--device", "cpu", "--isa", "bogus"])
        check(r.returncode != 0 and "unknown ISA 'bogus'" in r.stderr and all(n in r.stderr for n in NAMES),
              f"{cmd[0]} --isa bogus refused with the names (rc {r.returncode}: {r.stderr.strip()[:160]})")

    # the other architecture's ISAs: refused as not available, exit code 1, no signal
    foreign = ("neon", "neon_dotprod") if platform.machine() in ("x86_64", "AMD64") else ("avx2", "avx512")
    for isa in foreign:
        r = run(["run", "-m", model, "--device", "cpu", "--isa", isa, "-p", "hi", "-n", "1"])
        check(r.returncode == 1 and "not available" in r.stderr,
              f"run --isa {isa} on {platform.machine()}: not available (rc {r.returncode}: {r.stderr.strip()[:160]})")

    # scalar always runs; this architecture's ISAs run where the CPU has them, else are refused as not available
    native = ("avx2", "avx512") if foreign[0] == "neon" else ("neon", "neon_dotprod")
    ran = 0
    for isa in ("scalar",) + native:
        r = run(["run", "-m", model, "--device", "cpu", "--isa", isa, "-p", "The capital of France is", "-n", "4",
                 "--temp", "0", "-t", "1"])
        if isa != "scalar" and r.returncode == 1 and "not available" in r.stderr:
            print(f"info {isa}: not on this CPU")
            continue
        check(r.returncode == 0 and r.stdout.strip() != "", f"run --isa {isa} generates (rc {r.returncode})")
        ran += 1
    print(f"{ran} kernel table(s) ran")

    # --no-repack: same greedy ids; accepted by the commands that load a model on the CPU
    def chunks(x):
        return [f.split(",perplexity")[0] for f in (x.stdout + x.stderr).splitlines() if f.startswith("[1]")]

    def values(figs):
        return [float(v.split("]")[1]) for f in figs for v in f.split(",") if "]" in v]

    with tempfile.TemporaryDirectory() as tmp:
        kq, smol = os.path.join(tmp, "tiny-q4_k_m.gguf"), os.path.join(tmp, "smol-q4_k_m.gguf")
        for preset, path in (("tiny", kq), ("smollm2-135m", smol)):
            r = run(["synth", "--preset", preset, "--type", "Q4_K_M", "--layers", "2", "-o", path, "-t", "2"])
            check(r.returncode == 0 and os.path.exists(path),
                  f"synth {preset} Q4_K_M (rc {r.returncode}: {r.stderr.strip()[-160:]})")
        ppl = ["perplexity", "--device", "cpu", "-f", os.path.abspath(__file__), "--chunks", "4", "-c", "64", "-t", "2"]
        if os.path.exists(kq):
            gen = ["run", "-m", kq, "--device", "cpu", "-p", "The capital of France is", "-n", "12", "--temp", "0",
                   "--ignore-eos", "--token-ids", "-t", "2"]
            a, b = run(gen), run(gen + ["--no-repack"])
            ids = [[ln for ln in x.stderr.splitlines() if ln.split() and all(w.isdigit() for w in ln.split())]
                   for x in (a, b)]
            check(a.returncode == 0 and b.returncode == 0 and a.stdout == b.stdout and ids[0] == ids[1] and ids[0],
                  f"run: the same ids with and without --no-repack (rc {a.returncode}/{b.returncode}: {ids[0][:1]})")
            a, b = run(ppl + ["-m", kq]), run(ppl + ["-m", kq, "--no-repack"])
            figs = [chunks(x) for x in (a, b)]
            check(a.returncode == 0 and b.returncode == 0 and figs[0] and figs[0] == figs[1],
                  f"perplexity: the same chunks with and without --no-repack ({figs[0][:1]} / {figs[1][:1]})")
            r = run(["bench", "-m", kq, "--device", "cpu", "-p", "16", "-n", "2", "-r", "1", "--no-repack"])
            check(r.returncode == 0 and "pp16" in r.stdout, f"bench --no-repack (rc {r.returncode})")
        if os.path.exists(smol):
            a, b = run(ppl + ["-m", smol]), run(ppl + ["-m", smol, "--no-repack"])
            va, vb = values(chunks(a)), values(chunks(b))
            close = len(va) == 4 and len(va) == len(vb) and all(abs(x - y) <= 1e-3 * abs(y) for x, y in zip(va, vb))
            check(a.returncode == 0 and b.returncode == 0 and close,
                  f"perplexity (Q5_0/Q5_1 fallbacks): chunks within 1e-3 with and without --no-repack ({va} / {vb})")

    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
