#!/usr/bin/env bash
# gpu_rows_ab.sh — one device call: the int8 decode kernel (kq_mmvq.cuh) with R rows per warp group at one
# token (QN_MQ_ROWS_NT1, default 2), for each R of QN_AB_ROWS (default "2 3 4"), each its own build:
#   1. test_gpu_quant + test_gpu_quant_lutq per build (the kernel against the CPU references at every R);
#   2. `quern bench kernels --quick --n 1` on the int8 formats, per build;
#   3. Llama-3-8B-shape Q4_K_M (quern synth; the llama-bpe vocab in ~/.cache/quern/llama.cpp/models):
#      tg128 per build, round robin, twice; decode-path perplexity on 20 KB of alice29 per build;
#   4. compute-sanitizer memcheck + racecheck on test_gpu_quant (quick) of the first build, 100 s each, when
#      steps 1-3 took less than QN_AB_SANITIZE_BEFORE_S (330 s; a device call is at most 600 s).
# Env: OUT (default ./gpu-rows-out; at most 8 files), QN_AB_ROWS, QN_TEXT (alice29.txt path).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-rows-out}
ROWS=${QN_AB_ROWS:-2 3 4}
TEXT=${QN_TEXT:-$HOME/.cache/quern/data/alice29.txt}
mkdir -p "$OUT"
L=$OUT/log.txt
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$L"; }
bdir() { echo "build-r$1"; }
for r in $ROWS; do
    QN_GPU_BUILD=$(bdir "$r") QN_CUDA_FLAGS="-DQN_MQ_ROWS_NT1=$r" QN_GPU_CHECK_STEPS=build OUT=/tmp/rows-build-$r \
        bash bench/gpu_check.sh >/dev/null 2>&1 &
done
wait
for r in $ROWS; do
    [ -x "$(bdir "$r")/quern" ] || { say "build R=$r failed"; tail -30 /tmp/rows-build-$r/build.log >>"$L"; exit 1; }
done
say "built: $ROWS"
M=/tmp/llama3-8b-Q4_K_M.gguf
first=${ROWS%% *}
[ -f $M ] || timeout 300 "$(bdir "$first")/quern" synth --preset llama3-8b --type Q4_K_M -t 16 -o $M -q >>"$L" 2>&1 &
for r in $ROWS; do
    B=$(bdir "$r")
    for t in test_gpu_quant test_gpu_quant_lutq; do
        timeout 200 "$B/tests/$t" >"/tmp/rows-$r-$t.log" 2>&1
        rc=$?
        say "R=$r $t rc=$rc $(grep -E "PASSED|FAILED" "/tmp/rows-$r-$t.log" | tail -1)"
        [ $rc = 0 ] || grep -B2 -A10 -E "FAILED|differ|over tol" "/tmp/rows-$r-$t.log" | head -40 >>"$L"
    done
    timeout 150 "$B/quern" bench kernels --quick --fmt q4_0,q4_1,q8_0,q4_K,q5_K,q6_K --n 1 \
        --json "$OUT/kb-r$r.jsonl" >/dev/null 2>&1
    say "R=$r kernels rc=$?"
done
wait
say "model ready: $(ls -la $M 2>&1)"
for rep in 1 2; do
    for r in $ROWS; do
        echo -n "R=$r rep $rep " | tee -a "$L"
        timeout 120 "$(bdir "$r")/quern" bench --device cuda -m $M -p 0 -n 128 -r 3 -o md 2>>"$L" | grep tg128 | tee -a "$L"
    done
done
head -c 20000 "$TEXT" >/tmp/rows-a20k.txt
for r in $ROWS; do
    echo -n "R=$r decode-path " | tee -a "$L"
    timeout 120 "$(bdir "$r")/quern" perplexity --device cuda -m $M -f /tmp/rows-a20k.txt -c 128 -b 1 --chunks 1 2>&1 |
        tail -1 | tee -a "$L"
done
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -n "$CS" ] && [ $(($(date +%s) - T0)) -lt "${QN_AB_SANITIZE_BEFORE_S:-330}" ]; then
    for tool in memcheck racecheck; do
        QN_TEST_QUICK=1 timeout 100 "$CS" --tool $tool --error-exitcode 9 "$(bdir "$first")/tests/test_gpu_quant" \
            >"/tmp/rows-cs-$tool.log" 2>&1
        say "compute-sanitizer $tool test_gpu_quant (R=$first) rc=$? $(grep -E "ERROR SUMMARY" "/tmp/rows-cs-$tool.log" | tail -1)"
    done
fi
say done
