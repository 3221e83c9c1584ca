#!/usr/bin/env bash
# gpu_frag_ab.sh — one device call for the fragment-direct GEMV (kernels/quant/gguf/kq_frag.h): builds the tree with
# it on all its formats (-DQN_KQ_FRAG=7: Q4_K, Q6_KP, Q5_K; C and CUDA; quern and the GGUF GPU tests only) in
# build-gpu-f1 and, in parallel, without it (-DQN_KQ_FRAG=0: the staged GEMV for every format) in build-gpu-f0; runs,
# on the first, test_gpu_quant's tests named in QN_FRAG_TESTS one by one; then `quern bench kernels`
# (QN_FRAG_KERNELS) on both builds, build-gpu-f1 first and again last; then compute-sanitizer
# memcheck/racecheck/synccheck on the quick Q4_K, Q5_K and Q6_KP tests (QN_FRAG_SANITIZE=0: not). Everything lands in
# $OUT (logs, the bench tables and JSON lines). Carry .gpudeps. QN_COMMIT names the commit in the JSON.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-frag-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
QN_GPU_BUILD=build-gpu-f1 QN_BUILD_TARGETS="quern test_gpu_quant" QN_CUDA_FLAGS="-DQN_KQ_FRAG=7" \
    QN_C_FLAGS="-DQN_KQ_FRAG=7" QN_GPU_CHECK_STEPS=build OUT=$OUT/check-f1 bench/gpu_check.sh >/dev/null 2>&1 &
QN_GPU_BUILD=build-gpu-f0 QN_BUILD_TARGETS=quern QN_CUDA_FLAGS="-DQN_KQ_FRAG=0" QN_C_FLAGS="-DQN_KQ_FRAG=0" \
    QN_GPU_CHECK_STEPS=build OUT=$OUT/check bench/gpu_check.sh >/dev/null 2>&1 &
wait
grep -h "build: rc" "$OUT"/check*/check.log
for f in ${QN_FRAG_TESTS:-test_matmul_Q4_K test_matmul_Q5_K test_matmul_Q6_KP test_q6kp_same_bits test_kq_frag_policy}; do
    QN_TEST_FILTER=$f timeout 120 build-gpu-f1/tests/test_gpu_quant >"$OUT/test-$f.txt" 2>&1
    echo "$f rc=$?"
    grep -E "PASSED|FAILED|over tolerance|differs" "$OUT/test-$f.txt" | head -4
done
KA=${QN_FRAG_KERNELS:---fmt q4_k,q5_k,q6_kp --n 1,2,4,8,16 --shape 4096x4096,14336x4096,4096x14336}
for b in build-gpu-f1 build-gpu-f0 build-gpu-f1; do
    i=$((${i:-0} + 1))
    # shellcheck disable=SC2086
    timeout 120 "$b/quern" bench kernels $KA --json "$OUT/kernels-$i-$(basename "$b").jsonl" \
        >"$OUT/kernels-$i-$(basename "$b").md" 2>"$OUT/kernels-$i.err"
    echo "kernels $i $b rc=$?"
done
grep -E "^\| q" "$OUT"/kernels-*.md | sed "s|$OUT/||" | head -60
# compute-sanitizer on the fragment kernel's tests (quick cases; QN_FRAG_SANITIZE=0 skips it)
if [ "${QN_FRAG_SANITIZE:-1}" != 0 ]; then
    for tool in memcheck racecheck synccheck; do
        for f in test_matmul_Q4_K test_matmul_Q5_K test_matmul_Q6_KP; do
            QN_TEST_QUICK=1 QN_TEST_FILTER=$f timeout 150 compute-sanitizer --tool $tool --error-exitcode 99 \
                build-gpu-f1/tests/test_gpu_quant >"$OUT/san-$tool-$f.txt" 2>&1
            echo "sanitizer $tool $f rc=$?"
            grep -E "ERROR SUMMARY|RACECHECK SUMMARY|FAILED" "$OUT/san-$tool-$f.txt" | head -2
        done
    done
fi
