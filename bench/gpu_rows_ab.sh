#!/usr/bin/env bash
# gpu_rows_ab.sh — one device call: the int8 decode kernel (kq_mmvq.cuh) with R rows per warp group at one
# token (QN_MQ_ROWS_NT1, default 2), for each R of QN_AB_ROWS (default "2 3 4"), each its own build:
# bench/gpu_build_ab.sh with one variant per R, on the 8B Q4_K_M and the six int8 formats of the first run.
# (Until f0764b2 this script held its own copy of those steps: bench/results/raw/gpu-rows-ab-2026-12-03-c36c1f3.)
# Env: OUT, QN_AB_ROWS, QN_TEXT (as bench/gpu_build_ab.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
V=
for r in ${QN_AB_ROWS:-2 3 4}; do V="${V:+$V;}r$r=-DQN_MQ_ROWS_NT1=$r"; done
QN_AB_VARIANTS="$V" QN_AB_MODELS=${QN_AB_MODELS:-Q4_K_M} QN_AB_FMTS=${QN_AB_FMTS:-q4_0,q4_1,q8_0,q4_K,q5_K,q6_K} \
    OUT=${OUT:-$PWD/gpu-rows-out} exec bash bench/gpu_build_ab.sh
