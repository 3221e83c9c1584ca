#!/usr/bin/env bash
# gpu_mmvq_sweep.sh — the int8 decode kernel's launch choices on Llama-3-8B shapes, after bench/gpu_check.sh
# has built $QN_GPU_BUILD: `quern bench kernels --unroll-sweep` (unroll 1/2/4 x warps per row auto/1/2/4 at
# n = 1, 2 for the GGUF formats in $QN_SWEEP_FMT) and bench_gpu_lutq --unroll 1/2/4 (LQ4, LQ8, LNF4).
# Everything lands in $OUT (default ./gpu-sweep-out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-sweep-out}
B=${QN_GPU_BUILD:-build-gpu}
mkdir -p "$OUT"
timeout 300 "$B/quern" bench kernels --quick --unroll-sweep --n 1,2 --fmt "${QN_SWEEP_FMT:-q4_0,q8_0,q4_K,q6_K}" \
    --json "$OUT/unroll-sweep.jsonl" >"$OUT/unroll-sweep.md" 2>"$OUT/unroll-sweep.err"
echo "unroll sweep rc=$?"
for u in 1 2 4; do
    timeout 100 "$B/bench/bench_gpu_lutq" --n 1,2 --fmt lq4,lq8,lnf4 --unroll $u --json "$OUT/lutq-u$u.jsonl" \
        >/dev/null 2>"$OUT/lutq-u$u.txt"
    echo "lutq unroll $u rc=$?"
done
