#!/usr/bin/env bash
# gpu_e2e.sh — the end-to-end GPU checks, after bench/gpu_check.sh has built $QN_GPU_BUILD (default
# build-gpu) on the same machine: the CUDA forward pass against the CPU one (test_gpu_forward), `quern
# run`, `quern perplexity` and `quern bench` on the GPU, and Llama-3-8B-shape synthetic models.
# The default model does not fit one device call's carry limit: it travels split in parts (split -b),
# .gpumodel/a/smol.part.aa (+ alice29.txt), .gpumodel/b/smol.part.ab, ... (git-ignored), one per call,
# gathered into .gpumodel/ on the machine by the calls and joined here in suffix order.
# With llama.cpp built by bench/gpu_llamacpp.sh ($QN_LLAMA_DIR/build-cuda/bin), the bench and synth steps run
# llama-bench (-ngl 99, same -p/-n) on the same model files right after quern bench (same machine, same run).
# Env: QN_E2E_STEPS (default "model forward run ppl bench synth serve"; add pplcpu for the CPU perplexity), QN_SYNTH_TYPES (default "Q4_K_M Q8_0 F16"),
# QN_SERVE_CONC (max-concurrency values of the serve benchmark, default "16"; 2c prompts, at least 64),
# QN_SERVE_TYPES (synth types that are also served, default "Q4_K_M"), QN_SYNTH_KEEP=1 (leave the 8B files in
# /tmp for a later call on the same machine).
# Logs go to $OUT (default ./gpu-e2e-out).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-e2e-out}
mkdir -p "$OUT"
BUILD=${QN_GPU_BUILD:-build-gpu}
Q=$ROOT/$BUILD/quern
STEPS=" ${QN_E2E_STEPS:-model forward run ppl bench synth serve} "
LOG=$OUT/e2e.log
MODELS=$HOME/.cache/quern/models
DATA=$HOME/.cache/quern/data
SMOL=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
LB=${QN_LLAMA_DIR:-/tmp/llama.cpp}/build-cuda/bin/llama-bench
t0=$(date +%s)
say() { echo "[gpu_e2e $(($(date +%s) - t0))s] $*" | tee -a "$LOG"; }
want() { [[ "$STEPS" == *" $1 "* ]]; }
declare -A RESULT
step() { # name timeout cmd...
    local name=$1 tmo=$2
    shift 2
    say "$name: $*"
    timeout "$tmo" "$@" >>"$LOG" 2>&1
    RESULT[$name]=$?
    say "$name: rc=${RESULT[$name]}"
}

if want model; then
    mkdir -p "$MODELS" "$DATA"
    parts=$(ls .gpumodel/*/smol.part.* 2>/dev/null | awk -F/ '{print $NF, $0}' | sort | cut -d' ' -f2)
    if [ -n "$parts" ] && [ -f .gpumodel/a/alice29.txt ]; then
        cat $parts >"$SMOL"
        cp .gpumodel/a/alice29.txt "$DATA/"
        echo "b179c952  $(sha256sum "$SMOL" | cut -c1-8)" | tee -a "$LOG"
    else
        say "model: parts missing; real-model steps will skip"
    fi
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem --format=csv >>"$LOG" 2>&1

if want forward; then
    step test_gpu_forward 500 "$ROOT/$BUILD/tests/test_gpu_forward"
fi
if want run && [ -f "$SMOL" ]; then
    P="Write a short poem about the sea."
    step run_cuda 120 "$Q" run --device cuda -p "$P" --chat -n 64 --temp 0
    step run_cpu 120 "$Q" run --device cpu -t 16 -p "$P" --chat -n 64 --temp 0
    step run_cuda_sampled 120 "$Q" run --device cuda -p "$P" --chat -n 128 --temp 0.7 --seed 42
    step run_cuda_penalty 120 "$Q" run --device cuda -p "$P" --chat -n 128 --temp 0.7 --seed 42 --repeat-penalty 1.1
fi
if want ppl && [ -f "$SMOL" ]; then
    step ppl_cuda 300 "$Q" perplexity --device cuda -f "$DATA/alice29.txt" --ctx 512
    want pplcpu && step ppl_cpu 300 "$Q" perplexity --device cpu -t 16 -f "$DATA/alice29.txt" --ctx 512
fi
if want bench && [ -f "$SMOL" ]; then
    step bench_smol 300 "$Q" bench --device cuda -p 512 -n 128 -r 5 -o md
    step bench_smol_nograph 300 "$Q" bench --device cuda -p 0 -n 128 -r 3 --no-cuda-graphs -o md
    [ -x "$LB" ] && step llama_bench_smol 300 "$LB" -m "$SMOL" -ngl 99 -p 512 -n 128 -r 5 -o md
fi
# the 8B models take the preset's llama-bpe vocabulary when .gpumodel/v carries it (no SmolLM2 parts needed),
# else SmolLM2's padded to 128256; a model file already in /tmp (an earlier call on the same machine) is reused
V=$HOME/.cache/quern/llama.cpp/models
if [ -f .gpumodel/v/ggml-vocab-llama-bpe.gguf ]; then mkdir -p "$V" && cp .gpumodel/v/ggml-vocab-llama-bpe.gguf "$V/"; fi
VOCAB=()
[ -f "$V/ggml-vocab-llama-bpe.gguf" ] || VOCAB=(--vocab "$SMOL")
if want synth && { [ -f "$SMOL" ] || [ ${#VOCAB[@]} = 0 ]; }; then
    for ty in ${QN_SYNTH_TYPES:-Q4_K_M Q8_0 F16}; do
        f=/tmp/llama3-8b-$ty.gguf
        [ -f "$f" ] || step "synth_$ty" 300 "$Q" synth --preset llama3-8b --type "$ty" "${VOCAB[@]}" -t 16 -o "$f" -q
        [ -f "$f" ] && step "bench_8b_$ty" 300 "$Q" bench --device cuda -m "$f" -p 512 -n 128 -r 3 -o md
        [ -f "$f" ] && [ -x "$LB" ] && step "llama_bench_8b_$ty" 300 "$LB" -m "$f" -ngl 99 -p 512 -n 128 -r 3 -o md
        if [ -f "$f" ] && [[ " ${QN_SERVE_TYPES:-Q4_K_M} " == *" $ty "* ]] && want serve; then
            # the serving engine on the GPU: continuous batching, 16 concurrent streams of 512 in / 128 out
            "$Q" serve "$f" --device cuda --port 8765 --max-model-len 2048 >>"$OUT/serve.log" 2>&1 &
            sp=$!
            for _ in $(seq 300); do curl -sf localhost:8765/health >/dev/null 2>&1 && break; sleep 0.2; done
            for c in ${QN_SERVE_CONC:-16}; do
                np=$((c * 2 > 64 ? c * 2 : 64))
                step "serve_bench_8b_${ty}_c$c" 300 "$Q" bench serve --port 8765 --random-input-len 512 --random-output-len 128 \
                    --num-prompts $np --max-concurrency $c --save-result --result-dir "$OUT" --label "quern-cuda-8b-$ty-c$c"
            done
            kill $sp; wait $sp 2>/dev/null
            grep "engine:" "$OUT/serve.log" | tail -1 | tee -a "$LOG"
        fi
        [ "${QN_SYNTH_KEEP:-0}" = 1 ] || rm -f "$f"
    done
fi
say "summary:"
for k in "${!RESULT[@]}"; do echo "  $k rc=${RESULT[$k]}"; done | sort | tee -a "$LOG"
grep -E "^\| |^\|  |top-1|greedy|graphs:|synth .* rows|paged|ppl|perplexity|Final|tokens/s|PASSED|FAILED" "$LOG" | head -80
