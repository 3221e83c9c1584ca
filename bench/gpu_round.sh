#!/usr/bin/env bash
# gpu_round.sh PHASE — one device call of a three-call GPU round (the default model travels in three parts,
# one per call, each call carrying its part and .gpudeps; the machine must stay warm between calls):
#   a   stash part a (+ alice29.txt, lcet10.txt); build + ctest -L gpu (bench/gpu_check.sh "build test"; the
#       script tests there need the venv, absent on the GPU machine: "Not Run")
#       (QN_A_TWIN "name:-DFLAG=V": also a twin build of bench_gpu_lutq, in parallel, for phase b)
#   b   stash part b; with QN_B_LUTQ_AB "fmts:ns" only bench_gpu_lutq on the build, a's twin and the build again; else
#       `quern bench kernels --quick` (through bench/gpu_kernels_vs_ggml.sh, beside ggml's MUL_MAT,
#       when llama.cpp's test-backend-ops is already built on the machine), bench_gpu_lutq
#   c   gather the parts; bench/gpu_e2e.sh (QN_E2E_STEPS, default "model forward run ppl bench"), then
#       test_gpu_engine and the GPU HF-quant e2e test (tests/e2e/test_gpu_hf_quant.py, system python3)
#   p   peers, no model parts: build (bench/gpu_check.sh "build") while bench/gpu_llamacpp.sh unpacks (or builds)
#       llama.cpp; then `quern bench kernels` beside ggml-cuda's MUL_MAT for every type (bench/gpu_kernels_vs_ggml.sh)
#       and bench_gpu_lutq (1..512 tokens). Carry .gpudeps and .gpullama.
#   s   (after p, same machine) the 8B-shape synthetic models (QN_SYNTH_TYPES) through `quern bench` and llama-bench
#       (bench/gpu_e2e.sh "synth"). Carry .gpudeps and .gpumodel/v (the llama-bpe vocabulary).
#   f1  F16/BF16 on the decode kernel (float_mmvq.cu): build it and a twin with the old policy
#       (-DQN_QUANT_MMVQ_FLOAT_MAX_TOKENS=0: cuBLAS / the GEMV) in build-gpu-f0, test_gpu_quant (+ compute-sanitizer
#       memcheck, quick), test_gpu_quant_lutq, `quern bench kernels` on f16/bf16 at n <= 16 (every path), unpack
#       llama.cpp. Carry .gpudeps and .gpullama/llama-bin.tar.xz.
#   f2  (after f1, same machine) 8B F16: quern bench new / old / new / llama-bench, and a 2-layer F16 model's
#       one-token logits (the decode kernel, LM head included) on the GPU against the CPU. Carry .gpudeps and
#       .gpumodel/v.
#   m1  the M forms (kernels/quant/lq4m.h): build, test_quant_lq4m, test_gpu_quant_lq4m (+ compute-sanitizer memcheck
#       and racecheck, quick), test_gpu_quant_lutq, test_gpu_quant (QN_M1_TESTS); bench_gpu_lutq (QN_M1_FMT, default
#       lq4 / lq4m / f16) at 1..512 tokens (QN_M1_N) and the K split forced to 1..16 at n = 1, 16 (QN_M1_SPLITS, "" for none;
#       format QN_M1_SPLIT_FMT, default lq4m). Carry .gpudeps.
#   m2  (after m1, same machine, else it builds) the lq4m GPU tests and kernel bench again (QN_M2_FMT), 8B-shape models
#       (QN_M2_TYPES, default GPTQ-4 g128 plain and act-order) through `quern bench` against a twin build
#       (QN_M2_TWIN, default -DQN_LUTQ_LQ4M=0: LQ4 kept; build-gpu-l0), and a 2-layer one's (QN_M2_LOGITS, default
#       gptq4-act) logits GPU against CPU. Carry .gpudeps and .gpumodel/v.
#   d   an A/B of lq4m compile-time knobs: the build and twins (QN_D_TWINS "name:-DFLAG=V ...", default the prefetch
#       depth QN_LQ4M_DEPTH1 at 2 and 4, "none" the build alone; bench_gpu_lutq and quern only) in parallel; test_gpu_quant_lq4m (+ the
#       compute-sanitizer tools in QN_D_SANITIZE, quick; and on test_gpu_quant's tests QN_D_SANITIZE_GGUF names);
#       bench_gpu_lutq (QN_D_FMT at QN_D_N tokens) per build, the default twice; 8B-shape models (QN_D_TYPES,
#       default gptq4 nf4) through `quern bench` on the build and the first twin (or those in QN_D_BENCH_TWINS;
#       QN_D_BENCH_ARGS, default "-p 512 -n 128 -r 3"; "none": no `quern bench`, the models for QN_D_SERVE only).
#       QN_D_CTEST=1: ctest -L gpu on the build first (QN_D_CTEST="-R REGEX": those tests of it; "none": no GPU
#       test, not even test_gpu_quant_lq4m); QN_D_SANITIZE, QN_D_FMT and QN_D_KERNELS "none": that step left out;
#       QN_D_SANITIZE "TOOL ...": compute-sanitizer on test_gpu_quant_lq4m (QN_D_SANITIZE_LQ4M=0: not) and on
#       test_gpu_quant's tests matching QN_D_SANITIZE_GGUF;
#       QN_D_NCU "fmt:n ...": Nsight Compute sections and per-instruction stall samples of the first launch of lq4m's
#       kernel at n tokens (the mma kernel at n <= 32, else the tensor-core GEMM) in bench_gpu_lutq, on the build
#       and the twins named in QN_D_NCU_TWINS (QN_D_NCU_KQ "fmt:n:NxK[:twin] ...": the K-quant GEMM in `quern bench
#       kernels --quick`, on the build or the twin named); QN_D_TWIN_TEST=1 (or "name ..."): the first twin (those named) also
#       builds and runs test_gpu_quant_lq4m; QN_D_KERNELS "ARGS": `quern bench kernels ARGS` per build (or on the
#       twins named in QN_D_KERNEL_BUILDS only, "." the build itself); QN_D_SERVE "TYPE ...": `quern serve` of
#       those QN_D_TYPES models and `quern bench serve` at each QN_D_SERVE_CONC ("256"; a list runs each)
#       concurrent 512-in / 128-out requests (2x as many prompts, or QN_D_SERVE_PROMPTS) on the build and the bench twins (or the twins
#       named in QN_D_SERVE_TWINS); QN_D_SYNTH_LAYERS=L: those models with L layers (an A/B in less device time).
#       Every build's sm_90a SASS goes through test_wgmma_sass.
#       A flag twin may set several flags, comma-separated ("name:-DA=1,-DB=2"). A twin "name:@DIR" is the tree
#       with the files under DIR (same paths) laid over it, built in /tmp/src-name: an A/B of two versions of a
#       source in one call. Carry .gpudeps and .gpumodel/v.
#   p, s, f1, f2, m1, m2 and d pack their logs into $OUT/round-PHASE.tgz (the device returns at most 8 files).
# Everything lands in $OUT. QN_COMMIT names the commit in the builds and JSON.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-round-out}
mkdir -p "$OUT"
PARTS=$HOME/.cache/quern/parts
B=${QN_GPU_BUILD:-build-gpu}
mkdir -p "$PARTS"
stash() { for f in .gpumodel/*/*; do [ -f "$f" ] && cp "$f" "$PARTS/"; done; }
# logits_gpu_cpu MODEL W TOKEN...: one token's logits on the GPU and the CPU, compared (NMSE, top-1) into W/logits.log
logits_gpu_cpu() {
    local g=$1 w=$2
    shift 2
    for tok in "$@"; do
        for dev in cuda cpu; do
            timeout 120 "$B/quern" logits -m "$g" --tokens $tok --device $dev -t 16 -o "$w/logits-$tok-$dev.f32" \
                >>"$w/logits.log" 2>&1
        done
        python3 - "$w/logits-$tok-cuda.f32" "$w/logits-$tok-cpu.f32" <<'PY' | tee -a "$w/logits.log"
import struct, sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
x, y = (struct.unpack("<%df" % (len(v) // 4), v) for v in (a, b))
num = sum((u - v) ** 2 for u, v in zip(x, y)); den = sum(v * v for v in y)
top = lambda z: max(range(len(z)), key=z.__getitem__)
print("%s: %d logits, nmse %.3g, top-1 gpu %d cpu %d, max |d| %.3g" % (sys.argv[1].split("/")[-1], len(x), num / den,
      top(x), top(y), max(abs(u - v) for u, v in zip(x, y))))
PY
    done
}
case "${1:-}" in
a)
    stash
    if [ -n "${QN_A_TWIN:-}" ]; then # "name:-DFLAG=V": a twin of bench_gpu_lutq for phase b's A/B, built alongside
        QN_GPU_BUILD=build-gpu-${QN_A_TWIN%%:*} QN_BUILD_TARGETS="bench_gpu_lutq" QN_CUDA_FLAGS="${QN_A_TWIN#*:}" \
            QN_GPU_CHECK_STEPS="build" OUT=$OUT/check-twin bench/gpu_check.sh >/dev/null 2>&1 &
    fi
    QN_GPU_CHECK_STEPS="build test" OUT=$OUT bench/gpu_check.sh >/dev/null 2>&1
    wait
    tail -8 "$OUT/check.log"
    grep -h "build: rc" "$OUT"/check-twin/check.log 2>/dev/null
    grep -E "Test +#|tests passed" "$OUT/ctest.log"
    ;;
b)
    stash
    if [ -n "${QN_B_LUTQ_AB:-}" ]; then # "fmt,...:n,...": bench_gpu_lutq on the build, phase a's twin, the build again
        for b in "$B" build-gpu-${QN_A_TWIN%%:*} "$B"; do
            echo "== $b" >>"$OUT/bench_lutq_ab.txt"
            timeout 60 "$b/bench/bench_gpu_lutq" --fmt "${QN_B_LUTQ_AB%%:*}" --n "${QN_B_LUTQ_AB#*:}" \
                >>"$OUT/bench_lutq_ab.txt" 2>&1
        done
        grep -E "^(==|l[a-z0-9]+|f16) " "$OUT/bench_lutq_ab.txt"
        exit 0
    fi
    if [ -x /tmp/llama.cpp/build-cuda/bin/test-backend-ops ]; then # quern bench kernels --quick beside ggml's MUL_MAT
        QN_QUERN_TIMEOUT=120 QN_GGML_TIMEOUT=100 OUT=$OUT timeout 240 bench/gpu_kernels_vs_ggml.sh >"$OUT/vs_ggml.log" 2>&1
        echo "vs ggml rc=$?"
    else
        timeout 150 "$B/quern" bench kernels --quick --json "$OUT/bench_kernels.jsonl" >"$OUT/bench_kernels.md" 2>"$OUT/bench_kernels.err"
        echo "bench kernels rc=$?"
    fi
    timeout 120 "$B/bench/bench_gpu_lutq" --json "$OUT/bench_lutq.jsonl" >"$OUT/bench_lutq.txt" 2>&1
    echo "bench lutq rc=$?"
    ;;
c)
    stash
    mkdir -p .gpumodel/a
    for f in "$PARTS"/*; do # every stashed file this call did not carry
        ls .gpumodel/*/"$(basename "$f")" >/dev/null 2>&1 || cp "$f" .gpumodel/a/
    done
    QN_E2E_STEPS=${QN_E2E_STEPS:-model forward run ppl bench} OUT=$OUT bench/gpu_e2e.sh >"$OUT/e2e.out" 2>&1
    timeout 120 "$B/tests/test_gpu_engine" >"$OUT/engine.txt" 2>&1
    echo "test_gpu_engine rc=$?"
    cp .gpumodel/a/lcet10.txt "$HOME/.cache/quern/data/" 2>/dev/null
    QN_QUERN_BIN=$B/quern timeout ${QN_HFQ_TIMEOUT:-200} python3 tests/e2e/test_gpu_hf_quant.py >"$OUT/gpu_hf_quant.txt" 2>&1
    echo "test_gpu_hf_quant rc=$?"
    ;;
p)
    W=/tmp/round-p && rm -rf "$W" && mkdir -p "$W"
    bash bench/gpu_llamacpp.sh >"$W/llama.log" 2>&1 &
    lp=$!
    QN_GPU_CHECK_STEPS="build" OUT=$W/check bench/gpu_check.sh >/dev/null 2>&1
    wait $lp
    tail -3 "$W/check/check.log" "$W/llama.log"
    QN_QUERN_TIMEOUT=${QN_QUERN_TIMEOUT:-200} QN_GGML_TIMEOUT=${QN_GGML_TIMEOUT:-200} OUT=$W/vs \
        timeout "${QN_VS_TIMEOUT:-400}" bench/gpu_kernels_vs_ggml.sh >"$W/vs.log" 2>&1
    echo "vs ggml rc=$?"
    timeout 80 "$B/bench/bench_gpu_lutq" --n 1,2,4,8,16,512 --json "$W/bench_lutq.jsonl" >"$W/bench_lutq.txt" 2>&1
    echo "bench lutq rc=$?"
    cat "$W/vs/kernels_vs_ggml.md" 2>/dev/null | head -150
    tar -C "$W" -czf "$OUT/round-p.tgz" .
    ;;
s)
    W=/tmp/round-s && rm -rf "$W" && mkdir -p "$W"
    QN_E2E_STEPS="synth" QN_SYNTH_TYPES=${QN_SYNTH_TYPES:-Q4_K_M Q8_0 F16} OUT=$W bench/gpu_e2e.sh >"$W/e2e.out" 2>&1
    echo "e2e rc=$?"
    grep -E "^\| |tokens/s|rc=" "$W/e2e.log" | head -60
    tar -C "$W" -czf "$OUT/round-s.tgz" .
    ;;
f1)
    W=/tmp/round-f1 && rm -rf "$W" && mkdir -p "$W"
    bash bench/gpu_llamacpp.sh >"$W/llama.log" 2>&1 &
    QN_GPU_CHECK_STEPS="build" OUT=$W/check bench/gpu_check.sh >/dev/null 2>&1
    F0="-DQN_QUANT_MMVQ_FLOAT_MAX_TOKENS=0"
    QN_GPU_BUILD=build-gpu-f0 QN_C_FLAGS="$F0" QN_CUDA_FLAGS="$F0" QN_GPU_CHECK_STEPS="build" OUT=$W/check-f0 \
        bench/gpu_check.sh >/dev/null 2>&1
    wait
    grep -h "build: rc" "$W/check/check.log" "$W/check-f0/check.log"
    timeout 120 "$B/tests/test_gpu_quant" >"$W/test_gpu_quant.txt" 2>&1
    echo "test_gpu_quant rc=$?"
    timeout 60 "$B/tests/test_gpu_quant_lutq" >"$W/test_gpu_quant_lutq.txt" 2>&1
    echo "test_gpu_quant_lutq rc=$?"
    grep -E "FAILED|PASSED|tests? run|over tolerance" "$W"/test_gpu_quant*.txt | head -20
    timeout 150 "$B/quern" bench kernels --fmt f16,bf16 --n 1,2,4,8,16 --json "$W/kernels_f.jsonl" \
        >"$W/kernels_f.md" 2>"$W/kernels_f.err"
    echo "bench kernels rc=$?"
    grep -E "n=(1|2|4|8|16) " "$W/kernels_f.err" | head -80
    QN_TEST_QUICK=1 timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 "$B/tests/test_gpu_quant" \
        >"$W/memcheck.txt" 2>&1
    echo "memcheck test_gpu_quant (quick) rc=$?"
    tail -3 "$W/memcheck.txt"
    tar -C "$W" -czf "$OUT/round-f1.tgz" .
    ;;
f2)
    W=/tmp/round-f2 && rm -rf "$W" && mkdir -p "$W"
    V=$HOME/.cache/quern/llama.cpp/models && mkdir -p "$V" && cp .gpumodel/v/ggml-vocab-llama-bpe.gguf "$V/"
    LB=${QN_LLAMA_DIR:-/tmp/llama.cpp}/build-cuda/bin/llama-bench
    f=/tmp/llama3-8b-F16.gguf
    [ -f "$f" ] || "$B/quern" synth --preset llama3-8b --type F16 -t 16 -o "$f" -q >"$W/synth.log" 2>&1
    for b in "$B" build-gpu-f0 "$B" build-gpu-f0; do
        echo "== $b" >>"$W/bench.md"
        timeout 150 "$b/quern" bench --device cuda -m "$f" -p 512 -n 128 -r 3 -o md >>"$W/bench.md" 2>>"$W/bench.err"
    done
    [ -x "$LB" ] && { echo "== llama-bench" >>"$W/bench.md"; timeout 150 "$LB" -m "$f" -ngl 99 -p 512 -n 128 -r 3 -o md >>"$W/bench.md" 2>&1; }
    cat "$W/bench.md"
    g=/tmp/llama3-8b-F16-2l.gguf
    "$B/quern" synth --preset llama3-8b --type F16 --layers 2 -t 16 -o "$g" -q >>"$W/synth.log" 2>&1
    logits_gpu_cpu "$g" "$W" 1000 51234 128000
    rm -f "$g" "$W"/*.f32
    tar -C "$W" -czf "$OUT/round-f2.tgz" .
    ;;
m1)
    W=/tmp/round-m1 && rm -rf "$W" && mkdir -p "$W"
    QN_GPU_CHECK_STEPS="build" OUT=$W/check bench/gpu_check.sh >/dev/null 2>&1
    grep -h "build: rc" "$W/check/check.log"
    ninja -C "$B" test_quant_lq4m >>"$W/check/build.log" 2>&1
    for t in ${QN_M1_TESTS:-test_quant_lq4m test_gpu_quant_lq4m test_gpu_quant_lutq test_gpu_quant}; do
        timeout 150 "$B/tests/$t" >"$W/$t.txt" 2>&1
        echo "$t rc=$?"
    done
    grep -hE "FAILED|PASSED|over tolerance|differ|status" "$W"/test_*.txt | head -20
    for tool in memcheck racecheck; do
        # racecheck also reports cuBLAS's nvjet kernels (TMA/mbarrier hazards of their own): read its list by kernel
        QN_TEST_QUICK=1 timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 "$B/tests/test_gpu_quant_lq4m" \
            >"$W/$tool.txt" 2>&1
        echo "$tool test_gpu_quant_lq4m (quick) rc=$?"
        tail -2 "$W/$tool.txt"
        grep -E "Race reported|Internal|illegal" "$W/$tool.txt" | grep -v nvjet | head -5
    done
    cuobjdump -sass "$B/bench/bench_gpu_lutq" 2>/dev/null | awk '/Function : .*lq4m/{f=1} /Function : /&&!/lq4m/{f=0} f' >"$W/lq4m.sass"
    timeout 150 "$B/bench/bench_gpu_lutq" --fmt ${QN_M1_FMT:-lq4,lq4-act,lq4m,lq4m-act,f16} --n ${QN_M1_N:-1,2,4,8,16,32,48,64,512} \
        --json "$W/bench_lutq.jsonl" >"$W/bench_lutq.txt" 2>&1
    echo "bench lutq rc=$?"
    cat "$W/bench_lutq.txt"
    for s in ${QN_M1_SPLITS-1 2 4 8 16}; do
        timeout 60 "$B/bench/bench_gpu_lutq" --fmt ${QN_M1_SPLIT_FMT:-lq4m} --n 1,16 --split $s --json "$W/split$s.jsonl" >"$W/split$s.txt" 2>&1
        echo "split $s rc=$?"
        grep -E "^${QN_M1_SPLIT_FMT:-lq4m} " "$W/split$s.txt"
    done
    tar -C "$W" -czf "$OUT/round-m1.tgz" .
    ;;
m2)
    W=/tmp/round-m2 && rm -rf "$W" && mkdir -p "$W"
    V=$HOME/.cache/quern/llama.cpp/models && mkdir -p "$V" && cp .gpumodel/v/ggml-vocab-llama-bpe.gguf "$V/"
    if [ -f "$B/build.ninja" ]; then # m1's build on this machine: bring it up to date
        ninja -C "$B" >"$W/rebuild.log" 2>&1 || echo "rebuild failed"
    else
        QN_GPU_CHECK_STEPS="build" OUT=$W/check bench/gpu_check.sh >/dev/null 2>&1
    fi
    for t in test_gpu_quant_lq4m test_gpu_quant_lutq; do
        timeout 100 "$B/tests/$t" >"$W/$t.txt" 2>&1
        echo "$t rc=$?"
    done
    timeout 60 "$B/bench/bench_gpu_lutq" --fmt ${QN_M2_FMT:-lq4m,lq4m-act} --n 1,2,16 >"$W/bench_lutq.txt" 2>&1
    grep -E "^l" "$W/bench_lutq.txt"
    L0=${QN_M2_TWIN:--DQN_LUTQ_LQ4M=0}
    QN_GPU_BUILD=build-gpu-l0 QN_C_FLAGS="$L0" QN_GPU_CHECK_STEPS="build" OUT=$W/check-l0 bench/gpu_check.sh >/dev/null 2>&1 &
    for ty in ${QN_M2_TYPES:-gptq4 gptq4-act}; do
        [ -d /tmp/l8b-$ty ] || "$B/quern" synth --preset llama3-8b --type $ty -t 16 -o /tmp/l8b-$ty -q >>"$W/synth.log" 2>&1
    done
    LT=${QN_M2_LOGITS:-gptq4-act}
    "$B/quern" synth --preset llama3-8b --type $LT --layers 2 -t 16 -o /tmp/l8b2-$LT -q >>"$W/synth.log" 2>&1
    wait
    grep -h "build: rc" "$W/check-l0/check.log"
    for ty in ${QN_M2_TYPES:-gptq4 gptq4-act}; do
        for b in "$B" build-gpu-l0; do
            echo "== $ty $b" >>"$W/bench.md"
            timeout 200 "$b/quern" bench --device cuda -m /tmp/l8b-$ty -p 512 -n 128 -r 3 -o md >>"$W/bench.md" 2>>"$W/bench.err"
        done
    done
    cat "$W/bench.md"
    g=/tmp/l8b2-$LT
    logits_gpu_cpu "$g" "$W" 1000 51234
    grep -i "lq4\|format\|device" "$W/logits.log" | head -8
    rm -f "$W"/*.f32
    tar -C "$W" -czf "$OUT/round-m2.tgz" .
    ;;
d)
    W=/tmp/round-d && rm -rf "$W" && mkdir -p "$W"
    trap 'tar -C "$W" -czf "$OUT/round-d.tgz" .' EXIT # also when a timeout ends the call
    V=$HOME/.cache/quern/llama.cpp/models && mkdir -p "$V" && cp .gpumodel/v/ggml-vocab-llama-bpe.gguf "$V/"
    QN_GPU_CHECK_STEPS="build" OUT=$W/check bench/gpu_check.sh >/dev/null 2>&1 &
    TW=${QN_D_TWINS:-d2:-DQN_LQ4M_DEPTH1=2 d4:-DQN_LQ4M_DEPTH1=4}
    [ "$TW" = none ] && TW= # the build alone (the shortest call)
    t1=${TW%% *}
    for t in $TW; do
        tn=${t%%:*} tf=${t#*:} tt="bench_gpu_lutq quern"
        tf=${tf//,/ } # "name:-DA=1,-DB=2": several flags
        case " ${QN_D_TWIN_TEST:-} " in # "1": the first twin; else the twins named
        *" $tn "*) tt="$tt test_gpu_quant_lq4m" ;;
        " 1 ") [ "$t" = "$t1" ] && tt="$tt test_gpu_quant_lq4m" ;;
        esac
        if [ "${tf#@}" != "$tf" ]; then # "name:@DIR": the tree with DIR's files laid over it (an A/B of sources)
            S=/tmp/src-$tn && rm -rf "$S" && mkdir -p "$S"
            tar -C . --exclude='./build*' --exclude=./.git -cf - . | tar -C "$S" -xf - && cp -r "${tf#@}"/. "$S"/
            rm -rf "build-gpu-$tn" && ln -s "$S/build-gpu" "build-gpu-$tn"
            (cd "$S" && QN_BUILD_TARGETS="$tt" QN_GPU_CHECK_STEPS="build" OUT=$W/check-$tn bench/gpu_check.sh) \
                >/dev/null 2>&1 &
        else
            QN_GPU_BUILD=build-gpu-$tn QN_BUILD_TARGETS="$tt" QN_CUDA_FLAGS="$tf" \
                QN_GPU_CHECK_STEPS="build" OUT=$W/check-$tn bench/gpu_check.sh >/dev/null 2>&1 &
        fi
    done
    wait
    grep -h "build: rc" "$W"/check*/check.log
    for b in "$B" $(for t in $TW; do echo build-gpu-${t%%:*}; done); do # each build's wgmma SASS (CPU-side check)
        QN_BUILD_DIR=$b python3 tests/kernels/test_wgmma_sass.py >"$W/wgmma-sass-$(basename "$b").txt" 2>&1
        echo "wgmma SASS $(basename "$b") rc=$?"
    done
    TY=${QN_D_TYPES:-gptq4 nf4}
    for ty in $TY; do
        [ -d /tmp/l8b-$ty ] || nice "$B/quern" synth --preset llama3-8b --type $ty \
            ${QN_D_SYNTH_LAYERS:+--layers $QN_D_SYNTH_LAYERS} -t 16 -o /tmp/l8b-$ty -q >>"$W/synth.log" 2>&1 &
    done
    [ "${QN_D_SANITIZE:-}" = none ] && QN_D_SANITIZE= # "none" leaves a step out (each call's device time counts)
    [ "${QN_D_KERNELS:-}" = none ] && QN_D_KERNELS=
    if [ "${QN_D_CTEST:-}" = none ]; then # no GPU test at all
        :
    elif [ -n "${QN_D_CTEST:-}" ]; then # the whole GPU suite (the synth models are made meanwhile, niced)
        timeout 240 ctest --test-dir "$B" -L gpu ${QN_D_CTEST#1} --output-on-failure --timeout 200 >"$W/ctest.log" 2>&1
        echo "ctest -L gpu rc=$?"
        grep -E "tests passed|tests failed|\*\*\*Failed|Not Run|Timeout" "$W/ctest.log" | head -12
    else
        timeout 100 "$B/tests/test_gpu_quant_lq4m" >"$W/test_gpu_quant_lq4m.txt" 2>&1
        echo "test_gpu_quant_lq4m rc=$?"
    fi
    for tn in $(for t in $TW; do echo ${t%%:*}; done); do # the twins' own test_gpu_quant_lq4m (flags move paths)
        [ -x "build-gpu-$tn/tests/test_gpu_quant_lq4m" ] || continue
        timeout 100 "build-gpu-$tn/tests/test_gpu_quant_lq4m" >"$W/test_gpu_quant_lq4m-$tn.txt" 2>&1
        echo "test_gpu_quant_lq4m ($tn) rc=$?"
    done
    for tool in ${QN_D_SANITIZE:-}; do
        if [ "${QN_D_SANITIZE_LQ4M:-1}" = 1 ]; then # 0: only the GGUF tests below
            QN_TEST_QUICK=1 timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 \
                "$B/tests/test_gpu_quant_lq4m" >"$W/$tool.txt" 2>&1
            echo "$tool test_gpu_quant_lq4m (quick) rc=$?"
            grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$W/$tool.txt"
            grep -E "Race reported|Internal|illegal" "$W/$tool.txt" | grep -v nvjet | head -5
        fi
        [ -n "${QN_D_SANITIZE_GGUF:-}" ] || continue # "PATTERN": test_gpu_quant's tests of that name too
        QN_TEST_QUICK=1 QN_TEST_FILTER="$QN_D_SANITIZE_GGUF" timeout 150 compute-sanitizer --tool $tool \
            --error-exitcode 9 "$B/tests/test_gpu_quant" >"$W/$tool-gguf.txt" 2>&1
        echo "$tool test_gpu_quant $QN_D_SANITIZE_GGUF (quick) rc=$?"
        grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" "$W/$tool-gguf.txt" | head -4
        grep -E "Race reported|Internal|illegal" "$W/$tool-gguf.txt" | grep -v nvjet | head -5
    done
    wait
    for b in "$B" $(for t in $TW; do echo build-gpu-${t%%:*}; done) "$B"; do
        [ "${QN_D_FMT:-}" = none ] && break # no bench_gpu_lutq
        echo "== $b" >>"$W/bench_lutq.txt"
        timeout 80 "$b/bench/bench_gpu_lutq" --fmt ${QN_D_FMT:-lq4m,lnf4m} --n ${QN_D_N:-1,2,4,8} >>"$W/bench_lutq.txt" 2>&1
    done
    [ -f "$W/bench_lutq.txt" ] && grep -E "^(==|l[a-z0-9]+) " "$W/bench_lutq.txt"
    if [ -n "${QN_D_KERNELS:-}" ]; then # `quern bench kernels ARGS` (the GGUF paths) per build
        KB="$B $(for t in $TW; do echo build-gpu-${t%%:*}; done)"
        [ -n "${QN_D_KERNEL_BUILDS:-}" ] && KB=$(for t in $QN_D_KERNEL_BUILDS; do # "." is the build itself
            [ "$t" = . ] && echo "$B" || echo build-gpu-$t
        done)
        for b in $KB; do
            echo "== $b" | tee -a "$W/kernels.md" >>"$W/kernels.err"
            timeout 120 "$b/quern" bench kernels $QN_D_KERNELS >>"$W/kernels.md" 2>>"$W/kernels.err"
        done
        grep -E "^==|^\| [a-zA-Z0-9_]+ \|" "$W/kernels.md" | head -80
    fi
    for nc in ${QN_D_NCU:-}; do # "fmt:n ...": Nsight Compute on the first launch (q/o) of lq4m's kernel at n tokens, per build
        NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
        nn=${nc#*:} kn=lq4m_tc_kernel
        [ "$nn" -le 32 ] && kn=lq4m_mma_kernel # the mma kernel below the GEMM's window
        for b in "$B" $(for t in ${QN_D_NCU_TWINS:-}; do echo build-gpu-$t; done); do
            nb=$(basename "$b")-${nc/:/-}
            timeout 150 "$NCU" --clock-control none --kernel-name regex:$kn --launch-count 1 \
                --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
                --section InstructionStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
                --section SourceCounters -o "$W/ncu-$nb" "$b/bench/bench_gpu_lutq" --fmt "${nc%%:*}" \
                --n "$nn" >"$W/ncu-$nb.log" 2>&1
            echo "ncu $nb rc=$?"
            "$NCU" --import "$W/ncu-$nb.ncu-rep" --print-details all >"$W/ncu-$nb.txt" 2>&1
            "$NCU" --import "$W/ncu-$nb.ncu-rep" --page source --print-source sass --csv >"$W/ncu-$nb-sass.csv" 2>&1
            grep -E "Duration|DRAM Throughput|Memory Throughput|Warp Cycles Per Issued|Issue Slots Busy|Stall|Tensor|Executed Ipc|Achieved Occ|Waves Per SM|Registers Per" "$W/ncu-$nb.txt" | head -30
        done
    done
    for nc in ${QN_D_NCU_KQ:-}; do # "fmt:n:NxK ...": Nsight Compute, first K-quant GEMM of `quern bench kernels`
        NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
        IFS=: read -r kf kn ks kt <<<"$nc"
        kb=$B
        nb=kq-$kf-$kn-$ks
        [ -n "$kt" ] && { kb=build-gpu-$kt; nb=$nb-$kt; }
        timeout 150 "$NCU" --clock-control none --kernel-name regex:kq_tc_kernel --launch-count 1 \
            --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
            --section InstructionStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
            --section SourceCounters -o "$W/ncu-$nb" "$kb/quern" bench kernels --quick --fmt "$kf" --n "$kn" \
            --shape "$ks" >"$W/ncu-$nb.log" 2>&1
        echo "ncu $nb rc=$?"
        "$NCU" --import "$W/ncu-$nb.ncu-rep" --print-details all >"$W/ncu-$nb.txt" 2>&1
        "$NCU" --import "$W/ncu-$nb.ncu-rep" --page source --print-source sass --csv >"$W/ncu-$nb-sass.csv" 2>&1
        grep -E "Duration|DRAM Throughput|Warp Cycles Per Issued|Issue Slots Busy|Stall|Tensor|Executed Ipc|Registers Per" \
            "$W/ncu-$nb.txt" | head -30
    done
    for ty in $TY; do
        [ "${QN_D_BENCH_ARGS:-}" = none ] && break # the models for QN_D_SERVE only
        for b in "$B" $(for tn in ${QN_D_BENCH_TWINS:-${t1%%:*}}; do echo build-gpu-$tn; done); do
            echo "== $ty $b" >>"$W/bench.md"
            timeout 100 "$b/quern" bench --device cuda -m /tmp/l8b-$ty ${QN_D_BENCH_ARGS:--p 512 -n 128 -r 3} -o md \
                >>"$W/bench.md" 2>>"$W/bench.err"
        done
    done
    [ -f "$W/bench.md" ] && grep -E "^==|tg[0-9]|pp[0-9]" "$W/bench.md"
    for ty in ${QN_D_SERVE:-}; do # the serving issue's workload (512 in / 128 out) on the build and the bench twins
        for c in ${QN_D_SERVE_CONC:-256}; do
        for b in "$B" $(for tn in ${QN_D_SERVE_TWINS:-${QN_D_BENCH_TWINS:-${t1%%:*}}}; do echo build-gpu-$tn; done); do
            nb=$(basename "$b")
            f=$ty-$nb-c$c # this run's files
            "$b/quern" serve /tmp/l8b-$ty --device cuda --port 8765 --max-model-len 2048 >"$W/serve-$f.log" 2>&1 &
            sp=$!
            for _ in $(seq 300); do curl -sf localhost:8765/health >/dev/null 2>&1 && break; sleep 0.2; done
            timeout 200 "$b/quern" bench serve --port 8765 --random-input-len 512 --random-output-len 128 \
                --num-prompts ${QN_D_SERVE_PROMPTS:-$((c * 2))} --max-concurrency $c --save-result --result-dir "$W" \
                --label "serve-$f" >"$W/serve-bench-$f.txt" 2>&1
            echo "serve $ty $nb c$c rc=$?"
            kill $sp; wait $sp 2>/dev/null
            grep -E "Output token throughput|Mean TTFT|Median TTFT|P99 TTFT|Mean TPOT|Successful|Failed" \
                "$W/serve-bench-$f.txt"
            grep "engine:" "$W/serve-$f.log" | tail -1
        done
        done
    done
    ;;
*)
    echo "usage: bench/gpu_round.sh a|b|c|p|s|f1|f2|m1|m2|d" >&2
    exit 2
    ;;
esac
exit 0
