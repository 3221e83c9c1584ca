#!/usr/bin/env python3
"""trace_summary.py CSV [--top N] — where the GPU time of a whole run went, from the CSV that
bench/trace/cupti_trace.c writes (QN_TRACE_CSV=file: start_ns,end_ns,graph_id,node_id,name; every kernel,
inside CUDA graphs or not). Prints markdown: the run's span, the time at least one kernel was running (busy),
the idle gaps between kernels (host-bound time: how many over 20 us and 1 ms, and their sum), and the kernel
time summed per kernel name (demangled by c++filt when present, template arguments kept, parameters dropped).
Kernels that overlap (PDL, concurrent streams) each count their own duration, so the kernel sum can exceed
busy."""
import argparse
import collections
import csv
import re
import shutil
import subprocess


def demangle(names):
    if not shutil.which("c++filt"):
        return {n: n for n in names}
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.split("\n")
    return {n: re.sub(r"\(.*$", "", d)[:110] for n, d in zip(names, out)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    recs = []
    with open(a.csv, newline="") as fh:
        for r in csv.DictReader(fh):
            recs.append((int(r["start_ns"]), int(r["end_ns"]), r["name"]))
    if not recs:
        print("trace_summary: no records")
        return
    recs.sort()
    span = recs[-1][1] - recs[0][0]
    busy, gaps = 0, []
    pairs = collections.defaultdict(lambda: [0, 0])  # (kernel before, kernel after) of gaps over 1 ms
    cur_s, cur_e, cur_n = recs[0][0], recs[0][1], recs[0][2]
    for s, e, n in recs[1:]:
        if s > cur_e:
            busy += cur_e - cur_s
            gaps.append(s - cur_e)
            if s - cur_e > 1_000_000:
                pairs[(cur_n, n)][0] += 1
                pairs[(cur_n, n)][1] += s - cur_e
            cur_s, cur_e, cur_n = s, e, n
        elif e > cur_e:
            cur_e, cur_n = e, n
    busy += cur_e - cur_s
    tot = collections.defaultdict(lambda: [0, 0])
    for s, e, n in recs:
        tot[n][0] += 1
        tot[n][1] += e - s
    names = demangle(list(tot) + [x for pr in pairs for x in pr])
    merged = collections.defaultdict(lambda: [0, 0])
    for n, (c, t) in tot.items():
        merged[names[n]][0] += c
        merged[names[n]][1] += t
    ksum = sum(t for _, t in merged.values())
    g20 = [g for g in gaps if g > 20_000]
    g1m = [g for g in gaps if g > 1_000_000]
    print(f"records {len(recs)}, span {span / 1e6:.1f} ms, busy {busy / 1e6:.1f} ms ({100 * busy / span:.1f}%), "
          f"kernel sum {ksum / 1e6:.1f} ms")
    print(f"idle gaps: {len(gaps)} totalling {sum(gaps) / 1e6:.1f} ms; {len(g20)} over 20 us "
          f"({sum(g20) / 1e6:.1f} ms), {len(g1m)} over 1 ms ({sum(g1m) / 1e6:.1f} ms)")
    if pairs:
        print()
        print("| gaps over 1 ms: kernel before | kernel after | gaps | ms |")
        print("|---|---|---|---|")
        for (b, f), (c, t) in sorted(pairs.items(), key=lambda kv: -kv[1][1])[:8]:
            print(f"| {names[b][:60]} | {names[f][:60]} | {c} | {t / 1e6:.1f} |")
    print()
    print("| kernel | launches | total ms | mean us | share of kernel sum |")
    print("|---|---|---|---|---|")
    for n, (c, t) in sorted(merged.items(), key=lambda kv: -kv[1][1])[: a.top]:
        print(f"| {n} | {c} | {t / 1e6:.2f} | {t / c / 1e3:.1f} | {100 * t / ksum:.1f}% |")


if __name__ == "__main__":
    main()
