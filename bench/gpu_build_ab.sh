#!/usr/bin/env bash
# gpu_build_ab.sh — one device call: builds of the tree that differ by compile-time knobs, A/B in the same run.
# QN_AB_VARIANTS: "name=-DFLAG=V -DOTHER=W;name2=..." (CUDA and C flags alike; an empty flag list = the tree as is).
# Steps, per variant unless said:
#   1. test_gpu_quant, test_gpu_quant_lutq (the kernels against the CPU references) and tests/e2e/
#      test_gpu_decode_stage.py for the first variant (direct, auto and staged weights: the same bits end to end);
#   2. `quern bench kernels --quick --n 1 --shape all` on the int8 formats (QN_AB_FMTS; empty: skipped);
#   3. Llama-3-8B-shape models (quern synth, QN_AB_MODELS types, default "Q4_K_M Q2_K", may be empty; llama-bpe vocab in
#      ~/.cache/quern/llama.cpp/models): tg128 per variant, round robin, twice; decode-path perplexity on
#      20 KB of alice29 per variant (equal bits expected where the knob keeps the arithmetic);
#   4. compute-sanitizer memcheck + racecheck (QN_AB_SANITIZERS) on test_gpu_quant (quick) of the last variant
#      (or QN_AB_SANITIZE_VARIANT),
#      while the call has time (QN_AB_SANITIZE_BEFORE_S, default 420 s; a device call is at most 600 s).
# Env: QN_AB_TESTS (the tests of step 1, default as listed there), QN_AB_TEST_VARIANTS (the variants step 1 runs
# on, default all), QN_AB_STAGE_TEST=0 (skips test_gpu_decode_stage),
# OUT (default ./gpu-ab-out; at most 8 files: log.txt, kb-<name>.md per variant), QN_TEXT (alice29.txt).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-ab-out}
TEXT=${QN_TEXT:-$HOME/.cache/quern/data/alice29.txt}
FMTS=${QN_AB_FMTS-q4_0,q4_1,q5_0,q5_1,q8_0,q2_K,q3_K,q4_K,q5_K,q6_K,lq4,lq8}
MODELS=${QN_AB_MODELS-Q4_K_M Q2_K}
mkdir -p "$OUT"
L=$OUT/log.txt
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$L"; }
NAMES=()
IFS=';' read -ra VARS <<<"${QN_AB_VARIANTS:?set QN_AB_VARIANTS}"
for v in "${VARS[@]}"; do
    name=${v%%=*} flags=${v#*=}
    NAMES+=("$name")
    QN_GPU_BUILD=build-$name QN_CUDA_FLAGS="$flags" QN_C_FLAGS="$flags" QN_GPU_CHECK_STEPS=build \
        OUT=/tmp/ab-build-$name bash bench/gpu_check.sh >/dev/null 2>&1 &
done
wait
for n in "${NAMES[@]}"; do
    [ -x "build-$n/quern" ] || { say "build $n failed"; tail -30 /tmp/ab-build-$n/build.log >>"$L"; exit 1; }
done
say "built: ${NAMES[*]}"
first=${NAMES[0]} last=${QN_AB_SANITIZE_VARIANT:-${NAMES[${#NAMES[@]}-1]}}
(for t in $MODELS; do
    m=/tmp/llama3-8b-$t.gguf
    [ -f "$m" ] || timeout 300 "build-$first/quern" synth --preset llama3-8b --type "$t" -t 16 -o "$m" -q >>"$L" 2>&1
done) &
SYN=$!
for n in "${NAMES[@]}"; do
    for t in ${QN_AB_TESTS:-test_gpu_quant test_gpu_quant_lutq test_gpu_decode_stage}; do
        [[ " ${QN_AB_TEST_VARIANTS:-${NAMES[*]}} " == *" $n "* ]] || continue
        if [ $t = test_gpu_decode_stage ]; then
            [ "$n" = "$first" ] && [ "${QN_AB_STAGE_TEST:-1}" = 1 ] || continue # ~100 s: the first variant only
            QN_QUERN_BIN="$PWD/build-$n/quern" timeout 200 python3 tests/e2e/$t.py >"/tmp/ab-$n-$t.log" 2>&1
        else
            timeout 200 "build-$n/tests/$t" >"/tmp/ab-$n-$t.log" 2>&1
        fi
        rc=$?
        say "$n $t rc=$rc $(grep -E "PASSED|FAILED|SKIPPED" "/tmp/ab-$n-$t.log" | tail -1)"
        [ $rc = 0 ] || grep -B2 -A10 -E "FAILED|differ|over tol|ERROR" "/tmp/ab-$n-$t.log" | head -40 >>"$L"
    done
    [ -n "$FMTS" ] || continue
    timeout 150 "build-$n/quern" bench kernels --quick --fmt "$FMTS" --n 1 --shape all >"$OUT/kb-$n.md" 2>/dev/null
    say "$n kernels rc=$?"
done
wait $SYN
for t in $MODELS; do
    m=/tmp/llama3-8b-$t.gguf
    say "model $t: $(ls -la "$m" 2>&1)"
    for rep in 1 2; do
        for n in "${NAMES[@]}"; do
            echo -n "$t $n rep $rep " | tee -a "$L"
            timeout 120 "build-$n/quern" bench --device cuda -m "$m" -p 0 -n 128 -r 3 -o md 2>>"$L" |
                grep tg128 | tee -a "$L"
        done
    done
    head -c 20000 "$TEXT" >/tmp/ab-a20k.txt
    for n in "${NAMES[@]}"; do
        echo -n "$t $n decode-path " | tee -a "$L"
        timeout 120 "build-$n/quern" perplexity --device cuda -m "$m" -f /tmp/ab-a20k.txt -c 128 -b 1 --chunks 1 2>&1 |
            tail -1 | tee -a "$L"
    done
done
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
for tool in ${QN_AB_SANITIZERS:-memcheck racecheck}; do
    [ -n "$CS" ] && [ $(($(date +%s) - T0)) -lt "${QN_AB_SANITIZE_BEFORE_S:-420}" ] || { say "skipped: $tool"; continue; }
    limit=$([ $tool = memcheck ] && echo 70 || echo 110)
    QN_TEST_QUICK=1 timeout "$limit" "$CS" --tool $tool --error-exitcode 9 "build-$last/tests/test_gpu_quant" \
        >"/tmp/ab-cs-$tool.log" 2>&1
    rc=$?
    say "compute-sanitizer $tool test_gpu_quant ($last) rc=$rc" \
        "$(grep -E "ERROR SUMMARY|PASSED|FAILED" "/tmp/ab-cs-$tool.log" | tail -2 | tr '\n' ' ')"
done
say done
