#!/usr/bin/env bash
# gpu_staged_ab.sh — one device call that checks and measures the int8 decode kernel's weight loads (kq_mmvq.cuh
# "staging"): --mmvq-direct (all direct), the default (auto: Q6_K/Q8_0/Q2_K/Q3_K staged) and --mmvq-staged (all staged), in
# one build (bench/gpu_check.sh's):
#   1. test_gpu_quant, test_gpu_quant_lutq (every int8-path case both ways, staged == direct bit for bit) and
#      test_gpu_decode_stage (the three modes give the same bits end to end on 8B shapes, PDL on);
#   2. `quern bench kernels --quick` on the int8 formats at n = 1, 2, 4, 8, direct then staged;
#      bench_gpu_lutq (LQ4, LQ8, LNF4) the same;
#   3. Llama-3-8B-shape Q4_K_M (quern synth; needs the llama-bpe vocab in ~/.cache/quern/llama.cpp/models):
#      tg128 alternating direct / auto, twice; decode-path perplexity on 20 KB of alice29 both ways (bits).
# Env: OUT (default ./gpu-staged-out, at most 8 files), QN_GPU_BUILD (build-gpu), QN_TEXT (alice29.txt path).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-staged-out}
B=${QN_GPU_BUILD:-build-gpu}
TEXT=${QN_TEXT:-$HOME/.cache/quern/data/alice29.txt}
mkdir -p "$OUT"
L=$OUT/log.txt
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$L"; }
QN_GPU_BUILD=$B QN_GPU_CHECK_STEPS=build OUT=/tmp/gpu-staged-build bash bench/gpu_check.sh >/dev/null 2>&1 ||
    { say "build failed"; tail -40 /tmp/gpu-staged-build/build.log >>"$L"; exit 1; }
say "built $B"
for t in test_gpu_quant test_gpu_quant_lutq; do
    timeout 200 "$B/tests/$t" >"/tmp/gpu-staged-$t.log" 2>&1
    rc=$?
    say "$t rc=$rc"
    grep -E "PASSED|FAILED" "/tmp/gpu-staged-$t.log" | tail -4 >>"$L"
    [ $rc = 0 ] || grep -B2 -A10 -E "FAILED|differ|over tol" "/tmp/gpu-staged-$t.log" | head -60 >>"$L"
done
# run directly: the device has no venv (ctest's QN_PYTHON); the test needs only the standard library
QN_QUERN_BIN="$(cd "$B" && pwd)/quern" timeout 200 python3 tests/e2e/test_gpu_decode_stage.py >/tmp/gpu-staged-e2e.log 2>&1
say "test_gpu_decode_stage rc=$?"
grep -E "Q4_K_M|Q8_0|FAIL|passed|skip" /tmp/gpu-staged-e2e.log | cut -c1-200 >>"$L"
M=/tmp/llama3-8b-Q4_K_M.gguf
[ -f $M ] || timeout 300 "$B/quern" synth --preset llama3-8b --type Q4_K_M -t 16 -o $M -q >>"$L" 2>&1 &
F=q4_0,q8_0,q3_K,q4_K,q5_K,q6_K
timeout 150 "$B/quern" bench kernels --quick --fmt $F --n 1,2,4,8 --mmvq-direct --json "$OUT/kb-direct.jsonl" >"$OUT/kb-direct.md" 2>/dev/null
say "kernels direct rc=$?"
timeout 150 "$B/quern" bench kernels --quick --fmt $F --n 1,2,4,8 --mmvq-staged --json "$OUT/kb-staged.jsonl" \
    >"$OUT/kb-staged.md" 2>/dev/null
say "kernels staged rc=$?"
for m in --mmvq-direct --mmvq-staged; do
    timeout 100 "$B/bench/bench_gpu_lutq" --fmt lq4,lq8,lnf4 --n 1,8 $m 2>&1 >/dev/null | sed "s/^/lutq $m /" >>"$OUT/lutq.txt"
done
say "lutq done"
wait
for r in 1 2; do
    for m in --mmvq-direct ""; do
        say "tg128 ${m:-auto} rep $r"
        timeout 120 "$B/quern" bench --device cuda -m $M -p 0 -n 128 -r 3 -o md $m 2>>"$L" | grep tg128 | tee -a "$L"
    done
done
head -c 20000 "$TEXT" >/tmp/gpu-staged-a20k.txt
for m in --mmvq-direct ""; do
    say "decode-path perplexity ${m:-auto}"
    timeout 120 "$B/quern" perplexity --device cuda -m $M -f /tmp/gpu-staged-a20k.txt -c 128 -b 1 --chunks 1 $m 2>&1 |
        tail -1 | tee -a "$L"
done
say done
