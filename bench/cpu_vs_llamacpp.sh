#!/usr/bin/env bash
# cpu_vs_llamacpp.sh [MODEL] [THREADS] — prompt (pp512) and decode (tg128) tokens/s of `quern bench`
# and llama.cpp's `llama-bench` (built from the llama-cpp-python sdist by scripts/build_llamacpp.sh)
# on the same machine, model and thread count, run alternately; writes
# bench/results/cpu-vs-llamacpp-<date>.md with the CPU, date and git commit.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
source "$here/scripts/common.sh"
model="${1:-$QN_DEFAULT_MODEL}"
threads="${2:-$(nproc)}"
reps="${REPS:-5}"
bash "$here/scripts/build_llamacpp.sh" >/dev/null
lb="$QN_CACHE/llama.cpp/build/bin/llama-bench"
qn="${QN_BUILD:-$here/build}/quern"
out="$here/bench/results/cpu-vs-llamacpp-$(date -u +%Y-%m-%d).md"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for round in 1 2; do
  "$qn" bench -m "$model" -p 512 -n 128 -r "$reps" -t "$threads" -o jsonl > "$tmp/quern$round.jsonl"
  "$lb" -m "$model" -p 512 -n 128 -r "$reps" -t "$threads" -o jsonl > "$tmp/llama$round.jsonl" 2>/dev/null
done
python3 - "$tmp" "$model" "$threads" "$out" "$(git -C "$here" rev-parse --short HEAD)" "$reps" "$(cut -d" " -f1 /proc/loadavg)" <<'PY'
import json, sys, glob, platform, datetime, statistics
tmp, model, threads, out, commit, reps, loadavg = sys.argv[1:]
def load(prefix):
    res = {}
    for f in sorted(glob.glob(f"{tmp}/{prefix}*.jsonl")):
        for line in open(f):
            line = line.strip()
            if not line: continue
            r = json.loads(line)
            test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
            res.setdefault(test, []).append(r["avg_ts"])
    return {k: statistics.median(v) for k, v in res.items()}
q, l = load("quern"), load("llama")
cpu = next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), platform.processor())
lines = [f"# CPU: quern vs llama.cpp ({datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC)", "",
         f"- machine: {cpu}, {threads} threads; commit {commit}; model `{model.split('/')[-1]}`",
         f"- each tool ran twice, alternating, {reps} repetitions per test; medians of the two runs' means; load average at the end {loadavg}", "",
         "| test | quern t/s | llama.cpp t/s | ratio | target |", "| --- | ---: | ---: | ---: | --- |"]
for test, target in (("pp512", ">= 0.8x"), ("tg128", ">= 1.0x")):
    if test in q and test in l:
        lines.append(f"| {test} | {q[test]:.2f} | {l[test]:.2f} | {q[test]/l[test]:.2f}x | {target} |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
