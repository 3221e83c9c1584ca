# test_cli_isa.py — `--isa` of the quern commands (CPU):
#   - scalar, and each table of this architecture that the CPU has, is accepted by name and generates; the
#     others of this architecture are refused as not available;
#   - a name that is no ISA is refused, with the list of names (`quern run` and `quern perplexity`, which both
#     parse --isa through tools/common.c);
#   - the other architecture's ISAs (neon and neon_dotprod on x86-64) are refused with "not available" at
#     start-up, exit code 1, not a crash.
# Skips (77) without the quern binary or the default model.
# QN_TEST_LABELS: cpu
import os
import platform
import subprocess
import sys

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

    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
