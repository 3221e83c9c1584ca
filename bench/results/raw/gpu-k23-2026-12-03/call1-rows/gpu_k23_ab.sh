#!/usr/bin/env bash
# (Archived as run in the first device call of 2026-12-03 afternoon, on 5068d6e plus the working tree of then: the
# knob QN_QUANT_MMVQ_K23_AUTO_MAX existed only for that call; k23.patch beside this file is the change under test.
# Later A/Bs of builds: bench/gpu_build_ab.sh.)
# gpu_k23_ab.sh — one device call: the Q2_K/Q3_K int8 decode kernels (kq_mmvq.cuh) before and after a change,
# each its own build, A/B in the same run:
#   base  the tree with QN_AB_BASE_PATCH reverted (default .gpuab/k23.patch: the change under test), AUTO as
#         committed (Q2_K/Q3_K decode on the tensor-core GEMV);
#   r1    the tree, one row per warp group at one token (QN_MQ_ROWS_NT1_UE128=1), AUTO taking the int8 path
#         for Q2_K/Q3_K at n <= 2 (QN_QUANT_MMVQ_K23_AUTO_MAX=2);
#   r2    the same with two rows (QN_MQ_ROWS_NT1_UE128=2).
# Steps: 1. test_gpu_quant per build (every instance against the CPU references, staged = direct bits);
#        2. `quern bench kernels --fmt q2_K,q3_K --n 1,2,4` per build (while the call has time), int8 path direct and staged, each beside
#           the GEMV;
#        3. Llama-3-8B-shape Q2_K mix (quern synth; llama-bpe vocab in ~/.cache/quern/llama.cpp/models): tg128 per
#           build, round robin, twice; decode-path perplexity on 20 KB of alice29 per build;
#        4. compute-sanitizer memcheck + racecheck on test_gpu_quant (quick) of r1 if time is left.
# Env: OUT (default ./gpu-k23-out), QN_TEXT (alice29.txt), QN_AB_BASE_PATCH.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-k23-out}
TEXT=${QN_TEXT:-$HOME/.cache/quern/data/alice29.txt}
PATCH=${QN_AB_BASE_PATCH:-$PWD/.gpuab/k23.patch}
mkdir -p "$OUT"
L=$OUT/log.txt
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$L"; }
ROOT=$PWD
BASE_SRC=/tmp/k23-base-src
rm -rf "$BASE_SRC" && mkdir -p "$BASE_SRC"
tar --exclude='./build*' --exclude='./.gpu*' --exclude=./.git -cf - . | tar -xf - -C "$BASE_SRC"
(cd "$BASE_SRC" && patch -R -p1 -s <"$PATCH") || { say "base patch does not revert"; exit 1; }
ln -s "$ROOT/.gpudeps" "$BASE_SRC/.gpudeps"
rm -rf build-base && ln -s "$BASE_SRC/build-base" build-base
K23="-DQN_QUANT_MMVQ_K23_AUTO_MAX=2"
(cd "$BASE_SRC" && QN_GPU_BUILD=build-base QN_GPU_CHECK_STEPS=build OUT=/tmp/k23-build-base \
    bash bench/gpu_check.sh >/dev/null 2>&1) &
for r in 1 2; do
    QN_GPU_BUILD=build-r$r QN_CUDA_FLAGS="-DQN_MQ_ROWS_NT1_UE128=$r $K23" QN_C_FLAGS="$K23" QN_GPU_CHECK_STEPS=build \
        OUT=/tmp/k23-build-r$r bash bench/gpu_check.sh >/dev/null 2>&1 &
done
M=/tmp/llama3-8b-Q2_K.gguf
wait
B="base r1 r2"
for b in $B; do
    [ -x "build-$b/quern" ] || { say "build $b failed"; tail -30 /tmp/k23-build-$b/build.log >>"$L"; exit 1; }
done
say "built: $B"
[ -f $M ] || timeout 300 build-r1/quern synth --preset llama3-8b --type Q2_K -t 16 -o $M -q >>"$L" 2>&1 &
SYN=$!
for b in $B; do
    timeout 200 "build-$b/tests/test_gpu_quant" >"/tmp/k23-$b-tq.log" 2>&1
    rc=$?
    say "$b test_gpu_quant rc=$rc $(grep -E "PASSED|FAILED" "/tmp/k23-$b-tq.log" | tail -1)"
    [ $rc = 0 ] || grep -B2 -A10 -E "FAILED|differ|over tol|ERROR" "/tmp/k23-$b-tq.log" | head -40 >>"$L"
done
for bs in r1:staged base:staged r1:direct base:direct r2:staged r2:direct; do
    b=${bs%%:*} st=${bs##*:}
    [ $(($(date +%s) - T0)) -lt 330 ] || { say "skipped: kernels $b $st (time)"; continue; }
    timeout 120 "build-$b/quern" bench kernels --fmt q2_K,q3_K --n 1,2,4 --mmvq-$st \
        --json "$OUT/kb-$b-$st.jsonl" >"/tmp/k23-kb-$b-$st.md" 2>/dev/null
    say "$b kernels $st rc=$?"
    { echo "### $b $st"; cat "/tmp/k23-kb-$b-$st.md"; } >>"$OUT/kb-all.md"
done
wait $SYN
say "model: $(ls -la $M 2>&1)"
for rep in 1 2; do
    for b in $B; do
        echo -n "$b rep $rep " | tee -a "$L"
        timeout 120 "build-$b/quern" bench --device cuda -m $M -p 512 -n 128 -r 3 -o md 2>>"$L" | grep -E "tg128|pp512" |
            tr '\n' ' ' | tee -a "$L"
        echo | tee -a "$L"
    done
done
head -c 20000 "$TEXT" >/tmp/k23-a20k.txt
for b in $B; do
    echo -n "$b decode-path " | tee -a "$L"
    timeout 120 "build-$b/quern" perplexity --device cuda -m $M -f /tmp/k23-a20k.txt -c 128 -b 1 --chunks 1 2>&1 |
        tail -1 | tee -a "$L"
done
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -n "$CS" ] && [ $(($(date +%s) - T0)) -lt "${QN_AB_SANITIZE_BEFORE_S:-420}" ]; then
    for tool in memcheck racecheck; do
        QN_TEST_QUICK=1 timeout 80 "$CS" --tool $tool --error-exitcode 9 build-r1/tests/test_gpu_quant \
            >"/tmp/k23-cs-$tool.log" 2>&1
        say "compute-sanitizer $tool test_gpu_quant (r1) rc=$? $(grep -E "ERROR SUMMARY" "/tmp/k23-cs-$tool.log" | tail -1)"
    done
fi
say done
