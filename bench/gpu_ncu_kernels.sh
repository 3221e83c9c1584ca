#!/usr/bin/env bash
# gpu_ncu_kernels.sh — Nsight Compute sections of the int8 decode kernels of one decode step (one device call, after
# a build): why a kernel runs below copy bandwidth (issue slots, stall reasons, L1 wavefronts, DRAM throughput).
# Args: quern binary, model file. Env: QN_NCU_KERNELS (ncu --kernel-name, default regex:mq_kernel),
# QN_NCU_COUNT (launches profiled, default 8: the first layer's matmuls and more), QN_NCU_SECTIONS.
# Writes the report text to stdout. Clocks are left alone (--clock-control none; .library/device/METHOD.md).
set -uo pipefail
Q=${1:?quern binary} M=${2:?model}
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "no ncu"; exit 1; }
SECTIONS=${QN_NCU_SECTIONS:-SpeedOfLight Occupancy LaunchStats WarpStateStats SchedulerStats MemoryWorkloadAnalysis InstructionStats SourceCounters}
args=()
for s in $SECTIONS; do args+=(--section "$s"); done
# step 6 of a 16-token decode without graphs (ncu profiles kernels, not graph replays): the steady state
"$NCU" --clock-control none --profile-from-start off --kernel-name "${QN_NCU_KERNELS:-regex:mq_kernel}" \
    --launch-count "${QN_NCU_COUNT:-8}" "${args[@]}" \
    "$Q" bench --device cuda -m "$M" -p 0 -n 16 -r 1 --no-cuda-graphs --profile-steps 6:6
