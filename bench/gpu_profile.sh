#!/usr/bin/env bash
# gpu_profile.sh — where a decode step and a prefill step spend their GPU time: Nsight Systems over
# forward steps chosen with --profile-steps (cudaProfilerApi capture range), kernel and NVTX summaries.
# Model: Llama-3-8B shapes, Q4_K_M, first QN_PROF_LAYERS (default 4) layers (per-layer kernels and the
# LM head are those of the full model). Needs $QN_GPU_BUILD (default build-gpu) built, and the default
# model as the tokenizer source. Writes $OUT/prof_{decode,prefill}.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-prof-out}
mkdir -p "$OUT"
Q=$PWD/${QN_GPU_BUILD:-build-gpu}/quern
SMOL=$HOME/.cache/quern/models/SmolLM2-135M-Instruct.Q4_1.gguf
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
[ -n "$NSYS" ] || { echo "gpu_profile: no nsys"; exit 1; }
for ty in ${QN_PROF_TYPES:-Q4_K_M}; do
    M=/tmp/prof-llama3-8b-$ty.gguf
    [ -f "$M" ] || "$Q" synth --preset llama3-8b --type "$ty" --layers "${QN_PROF_LAYERS:-4}" --vocab "$SMOL" -t 16 -o "$M" -q
    # decode: steps 10..19 of a 32-token generation, kernel by kernel (graphs hide the per-kernel view)
    "$NSYS" profile -t cuda,nvtx --capture-range=cudaProfilerApi --capture-range-end=stop -f true -o /tmp/prof_dec \
        "$Q" run -m "$M" --device cuda --no-cuda-graphs --profile-steps 10:19 -p "Hello there" -n 32 --temp 0 >/dev/null 2>&1
    "$NSYS" stats -q -r cuda_gpu_kern_sum,nvtx_sum -f column /tmp/prof_dec.nsys-rep >"$OUT/prof_decode_$ty.txt" 2>&1
    # prefill: step 1 = the first timed 512-token prompt (step 0 is the warm-up)
    "$NSYS" profile -t cuda,nvtx --capture-range=cudaProfilerApi --capture-range-end=stop -f true -o /tmp/prof_pre \
        "$Q" bench -m "$M" --device cuda -p 512 -n 0 -r 2 --profile-steps 1:1 -o md >/dev/null 2>&1
    "$NSYS" stats -q -r cuda_gpu_kern_sum,nvtx_sum -f column /tmp/prof_pre.nsys-rep >"$OUT/prof_prefill_$ty.txt" 2>&1
    head -40 "$OUT/prof_decode_$ty.txt"
    head -30 "$OUT/prof_prefill_$ty.txt"
done
