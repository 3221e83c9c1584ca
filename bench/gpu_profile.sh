#!/usr/bin/env bash
# gpu_profile.sh — where a decode step's time goes, on a Llama-3-8B-shape synthetic model (one device call):
# builds $QN_GPU_BUILD (bench/gpu_check.sh build), writes the model with `quern synth` (tokenizer from
# .gpumodel/v/ggml-vocab-llama-bpe.gguf when carried, else SmolLM2's padded), runs `quern bench` tg with and
# without CUDA graphs, then times every kernel of two decode steps under Nsight Compute
# (--clock-control none --cache-control none, one metric: gpu__time_duration.sum) and sums them per kernel
# name (bench/profile_summary.py); with QN_PROFILE_TRACE=1 also the in-graph kernel timings of a CUDA-graph
# decode run from CUPTI activity records (bench/trace/cupti_trace.sh). Nsight Compute, not Systems: nsys makes no report on these machines
# (.library/device/KINDS.md); ncu serialises the kernels, so the sum is kernel time without overlap. Env: QN_PROFILE_TYPES (synth types, default "Q4_K_M"), QN_PROFILE_NGEN (64).
# Logs to $OUT (default ./gpu-profile-out).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-profile-out}
mkdir -p "$OUT"
B=${QN_GPU_BUILD:-build-gpu}
Q=$ROOT/$B/quern
LOG=$OUT/profile.log
t0=$(date +%s)
say() { echo "[gpu_profile $(($(date +%s) - t0))s] $*" | tee -a "$LOG"; }
if [ ! -x "$Q" ] || [ "${QN_PROFILE_BUILD:-1}" = 1 ]; then
    QN_GPU_CHECK_STEPS="build" OUT=$OUT bench/gpu_check.sh >/dev/null 2>&1
    tail -3 "$OUT/check.log" | tee -a "$LOG"
fi
V=$HOME/.cache/quern/llama.cpp/models
mkdir -p "$V"
[ -f .gpumodel/v/ggml-vocab-llama-bpe.gguf ] && cp .gpumodel/v/ggml-vocab-llama-bpe.gguf "$V/"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
for ty in ${QN_PROFILE_TYPES:-Q4_K_M}; do
    f=/tmp/llama3-8b-$ty.gguf
    [ -f "$f" ] || { say "synth $ty"; timeout 300 "$Q" synth --preset llama3-8b --type "$ty" -t 16 -o "$f" -q >>"$LOG" 2>&1; }
    say "bench $ty"
    timeout 200 "$Q" bench --device cuda -m "$f" -p 512 -n "${QN_PROFILE_NGEN:-64}" -r 3 -o md 2>>"$LOG" | tee -a "$LOG"
    timeout 200 "$Q" bench --device cuda -m "$f" -p 0 -n "${QN_PROFILE_NGEN:-64}" -r 3 -o md --no-cuda-graphs 2>>"$LOG" | tee -a "$LOG"
    if [ -n "$NCU" ]; then
        say "ncu $ty ($NCU)"
        timeout 300 "$NCU" --clock-control none --cache-control none --profile-from-start off --metrics gpu__time_duration.sum,launch__shared_mem_config_size --csv \
            --log-file "$OUT/ncu-$ty.log" "$Q" bench --device cuda -m "$f" -p 0 -n 16 -r 1 --no-cuda-graphs \
            --profile-steps 6:7 >"$OUT/ncu-$ty.csv" 2>>"$LOG"
        say "ncu rc=$?"
        python3 bench/profile_summary.py "$OUT/ncu-$ty.log" --steps 2 | tee -a "$LOG"
    fi
    if [ "${QN_PROFILE_TRACE:-0}" = 1 ]; then # in-graph kernel timings from CUPTI activity records
        say "cupti trace $ty"
        timeout 200 bench/trace/cupti_trace.sh "$Q" bench --device cuda -m "$f" -p 0 -n 64 -r 1 -o md >>"$LOG" 2>&1
        say "cupti trace rc=$?"
    fi
done
for ty in ${QN_PROFILE_HF_TYPES:-}; do # GPTQ / AWQ / NF4 directories at 8B shapes: end-to-end decode
    d=/tmp/llama3-8b-$ty
    say "synth $ty"
    timeout 200 "$Q" synth --preset llama3-8b --type "$ty" -t 16 -o "$d" -q >>"$LOG" 2>&1
    say "bench $ty"
    timeout 300 "$Q" bench --device cuda -m "$d" -p 512 -n "${QN_PROFILE_NGEN:-64}" -r 3 -o md 2>>"$LOG" | tee -a "$LOG"
    rm -rf "$d"
done
say done
