#!/usr/bin/env python3
"""ncu_sass_hot.py CSV [MIN] — the hot instructions of an Nsight Compute source page.

CSV is `ncu --import R.ncu-rep --page source --print-source sass --csv` (bench/gpu_round.sh phase d writes it as
ncu-*-sass.csv). Prints every instruction with at least MIN stall samples (default: 1% of all), its index, its
samples and its stall reasons, then the samples per reason over the whole kernel.
"""
import csv
import sys


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1], newline="") as f:
        rows = list(csv.reader(f))
    name = rows[0][1] if rows and len(rows[0]) > 1 else "?"
    head, data = rows[1], [r for r in rows[2:] if len(r) == len(rows[1])]
    src, smp = head.index("Source"), head.index("Warp Stall Sampling (All Samples)")
    reasons = [(i, c[len("stall_"):]) for i, c in enumerate(head) if c.startswith("stall_") and "Not Issued" not in c]
    total = sum(float(r[smp] or 0) for r in data)
    least = float(argv[2]) if len(argv) > 2 else max(1.0, 0.01 * total)
    print(f"# {name}\n# instructions with >= {least:g} stall samples (of {total:g})")
    by_reason = {}
    for k, r in enumerate(data):
        why = {c: float(r[i] or 0) for i, c in reasons}
        for c, v in why.items():
            by_reason[c] = by_reason.get(c, 0.0) + v
        s = float(r[smp] or 0)
        if s >= least:
            top = " ".join(f"{c}={v:g}" for c, v in sorted(why.items(), key=lambda x: -x[1]) if v > 0)
            print(f"{k:5d} {s:6g}  {r[src].strip()[:60]:60s} {top}")
    print("# per reason: " + " ".join(f"{c}={v:g}" for c, v in sorted(by_reason.items(), key=lambda x: -x[1]) if v > 0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
