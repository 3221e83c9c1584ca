#!/usr/bin/env python3
"""profile_summary.py NCU_CSV [--steps N] — sums Nsight Compute's per-kernel gpu__time_duration over a
captured range (ncu --csv --metrics gpu__time_duration.sum) by kernel name and grid, per step.
Prints a markdown table: kernel, launches per step, µs per step, share; then the total."""
import argparse
import csv
import collections
import re

SCALE = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3, "second": 1e6}


def short(name):
    name = re.sub(r"\(.*$", "", name)  # drop the parameter list
    return name[:90]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--steps", type=int, default=1)
    a = ap.parse_args()
    rows = []
    smem = {}  # kernel -> shared-memory configuration sizes seen (launch__shared_mem_config_size)
    with open(a.csv, newline="") as fh:
        lines = [l for l in fh if l.startswith('"')]
    for r in csv.DictReader(lines):
        if r.get("Metric Name") == "launch__shared_mem_config_size":
            smem.setdefault(short(r["Kernel Name"]), set()).add(r["Metric Value"] + " " + r["Metric Unit"])
            continue
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        us = float(r["Metric Value"].replace(",", "")) * SCALE.get(r["Metric Unit"], 1.0)
        rows.append((short(r["Kernel Name"]), r.get("Grid Size", ""), us))
    if not rows:
        print("profile_summary: no kernel rows in", a.csv)
        return
    agg = collections.OrderedDict()
    for k, g, us in rows:
        e = agg.setdefault((k, g), [0, 0.0])
        e[0] += 1
        e[1] += us
    total = sum(us for _, _, us in rows)
    print(f"| kernel | grid | launches/step | µs/step | share |\n|---|---|---|---|---|")
    for (k, g), (n, us) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        print(f"| {k} | {g} | {n / a.steps:g} | {us / a.steps:.1f} | {100 * us / total:.1f}% |")
    print(f"\nkernels/step {len(rows) / a.steps:g}, kernel time/step {total / a.steps:.1f} µs")
    for k, v in sorted(smem.items()):
        print(f"shared-memory config: {k}: {', '.join(sorted(v))}")


if __name__ == "__main__":
    main()
