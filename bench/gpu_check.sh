#!/usr/bin/env bash
# gpu_check.sh — everything the GPU kernels need checked on a GPU machine, in one call:
#   build     cmake -G Ninja (CUDA, QN_CUDA_ARCHS=90 by default) + the gpu tests and benchmarks
#   test      ctest -L gpu
#   sanitize  compute-sanitizer memcheck + racecheck (+ synccheck) on the gpu test binaries
#             (QN_TEST_QUICK=1: fewer cases, every path)
#   sass      resource usage and SASS opcode counts of the quant kernels (cuobjdump)
#   bench     bench_gpu_quant (JSON lines + summary table)
# Logs and JSON go to $OUT (default ./gpu-check-out), at most 8 files. A missing build dependency
# (pcre2, jansson, libevent, cmocka) is taken from .gpudeps/root when present (a copy of the Debian
# 12 packages, see docs in bench/results/gpu-kernels-*.md); the binaries find it by RPATH.
# Env: QN_COMMIT (commit id for the JSON), QN_GPU_CHECK_STEPS (default "build test sanitize sass
# bench"), QN_BENCH_ARGS (extra bench_gpu_quant flags), QN_CUDA_ARCHS (default 90),
# QN_GPU_BUILD (build dir, default build-gpu), QN_BUILD_TARGETS (build only these), QN_CMAKE_ARGS (extra cmake flags, e.g. an A/B variant;
# QN_CUDA_FLAGS / QN_C_FLAGS: CMAKE_CUDA_FLAGS / CMAKE_C_FLAGS, spaces kept, e.g. "-DA=1 -DB=2"),
# QN_STEP_TIMEOUT (seconds per step, default 400), QN_SANITIZE_TESTS (test binaries to sanitize, default
# every test_gpu_*), QN_SANITIZE_TOOLS (default "memcheck racecheck synccheck").
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# `bench/gpu_check.sh --make-deps` (here, on the Debian 12 dev machine, before a device call): copies
# the installed build dependencies into .gpudeps/root (about 7 MB, git-ignored via .git/info/exclude;
# pass it in the device call's carry list), with .pc files made relocatable.
if [ "${1:-}" = "--make-deps" ]; then
    pkgs="libcmocka-dev libcmocka0 libevent-dev libevent-2.1-7 libevent-core-2.1-7 libevent-extra-2.1-7
          libevent-pthreads-2.1-7 libevent-openssl-2.1-7 libjansson-dev libjansson4 libpcre2-dev libpcre2-8-0
          libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 pkgconf-bin libpkgconf3 pkgconf"
    rm -rf .gpudeps/root && mkdir -p .gpudeps/root
    for p in $pkgs; do
        dpkg -L "$p" 2>/dev/null | while read -r f; do
            case "$f" in */share/doc/* | */share/man/* | */share/lintian/*) continue ;; esac
            if [ -f "$f" ] || [ -L "$f" ]; then mkdir -p ".gpudeps/root$(dirname "$f")" && cp -a "$f" ".gpudeps/root$f"; fi
        done
    done
    pc=.gpudeps/root/usr/lib/x86_64-linux-gnu/pkgconfig
    sed -i 's|^prefix=/usr$|prefix=${pcfiledir}/../../..|' "$pc"/*.pc
    sed -i 's|/usr/include|${pcfiledir}/../../../include|; s|/usr/lib/x86_64-linux-gnu|${pcfiledir}/..|' "$pc"/cmocka.pc
    grep -qx '/.gpudeps/' .git/info/exclude 2>/dev/null || echo '/.gpudeps/' >>.git/info/exclude
    du -sh .gpudeps
    exit 0
fi
OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT"
BUILD=${QN_GPU_BUILD:-build-gpu}
STEPS=" ${QN_GPU_CHECK_STEPS:-build test sanitize sass bench} "
TMO=${QN_STEP_TIMEOUT:-400}
LOG=$OUT/check.log
declare -A RESULT
t_start=$(date +%s)

say() { echo "[gpu_check $(($(date +%s) - t_start))s] $*" | tee -a "$LOG"; }
want() { [[ "$STEPS" == *" $1 "* ]]; }
run_step() { # name logfile cmd...
    local name=$1 log=$2
    shift 2
    say "$name: $*"
    timeout "$TMO" "$@" >>"$log" 2>&1
    local rc=$?
    RESULT[$name]=$rc
    say "$name: rc=$rc"
    return $rc
}

{
    echo "commit: ${QN_COMMIT:-unknown}"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit \
        --format=csv 2>&1
    nvcc --version 2>&1 | tail -2
    cmake --version 2>&1 | head -1
} >>"$LOG"

CMAKE_EXTRA=()
if ! pkg-config --exists libpcre2-8 jansson libevent libevent_pthreads cmocka 2>/dev/null; then
    if [ -d "$ROOT/.gpudeps/root" ]; then
        D=$ROOT/.gpudeps/root
        WRAP=$ROOT/$BUILD.pkgconf
        printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/usr/lib/x86_64-linux-gnu PKG_CONFIG_LIBDIR=%s/usr/lib/x86_64-linux-gnu/pkgconfig exec %s/usr/bin/pkgconf "$@"\n' \
            "$D" "$D" "$D" >"$WRAP"
        chmod +x "$WRAP"
        CMAKE_EXTRA+=("-DPKG_CONFIG_EXECUTABLE=$WRAP")
        say "deps: using .gpudeps bundle"
    else
        say "deps: pkg-config packages missing and no .gpudeps bundle"
    fi
fi

if want build; then
    run_step configure "$OUT/build.log" cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DQN_CUDA_ARCHS="${QN_CUDA_ARCHS:-90}" "${CMAKE_EXTRA[@]}" ${QN_CMAKE_ARGS:-} \
        ${QN_CUDA_FLAGS:+"-DCMAKE_CUDA_FLAGS=$QN_CUDA_FLAGS"} ${QN_C_FLAGS:+"-DCMAKE_C_FLAGS=$QN_C_FLAGS"}
    targets=$(ninja -C "$BUILD" -t targets all 2>/dev/null | grep -oE '^(test_gpu_[a-z0-9_]+|bench_gpu_[a-z0-9_]+):' |
        tr -d ':' | sort -u | tr '\n' ' ')
    targets="$targets quern"
    [ -n "${QN_BUILD_TARGETS:-}" ] && targets=$QN_BUILD_TARGETS # a twin build of only what an A/B runs
    say "build targets: $targets"
    # shellcheck disable=SC2086
    run_step build "$OUT/build.log" ninja -C "$BUILD" $targets
fi

if want test; then
    run_step ctest "$OUT/ctest.log" ctest --test-dir "$BUILD" -L gpu --output-on-failure --timeout "$TMO"
fi

if want sanitize; then
    for t in "$BUILD"/tests/test_gpu_*; do
        [ -x "$t" ] || continue
        if [ -n "${QN_SANITIZE_TESTS:-}" ] && [[ " $QN_SANITIZE_TESTS " != *" $(basename "$t") "* ]]; then continue; fi
        for tool in ${QN_SANITIZE_TOOLS:-memcheck racecheck synccheck}; do
            echo "=== $tool $(basename "$t")" >>"$OUT/sanitizer.log"
            QN_TEST_QUICK=1 run_step "$tool:$(basename "$t")" "$OUT/sanitizer.log" \
                compute-sanitizer --tool "$tool" --error-exitcode 99 "$t"
        done
    done
fi

if want sass; then
    lib=$BUILD/libqn_kernels.a
    {
        echo "=== resource usage"
        cuobjdump --dump-resource-usage "$lib" 2>&1 | grep -E "Function|REG|STACK|SHARED" | head -200
        echo "=== SASS opcode counts, q4_K gemv NT=1 (kq_kernel<11,1>)"
        cuobjdump --dump-sass --function '_Z9kq_kernelIL10qn_qformat11ELi1EEv7kq_args' "$lib" 2>/dev/null |
            grep -oE '^\s+/\*[0-9a-f]{4}\*/\s+[A-Z][A-Z0-9_.]+' | awk '{print $2}' | sed 's/\..*//' | sort | uniq -c |
            sort -rn | head -40
    } >"$OUT/sass.txt" 2>&1
    RESULT[sass]=0
fi

if want bench; then
    # shellcheck disable=SC2086
    QN_COMMIT=${QN_COMMIT:-unknown} run_step bench "$OUT/bench.log" \
        "$BUILD/bench/bench_gpu_quant" --json "$OUT/bench_gpu_quant.jsonl" ${QN_BENCH_ARGS:-}
    ninja -C "$BUILD" bench_allreduce >>"$OUT/bench.log" 2>&1 && run_step allreduce "$OUT/bench.log" "$BUILD/bench/bench_allreduce" --nccl
    tail -60 "$OUT/bench.log"
fi

say "summary:"
for k in "${!RESULT[@]}"; do echo "  $k rc=${RESULT[$k]}"; done | sort | tee -a "$LOG"
grep -E "^\[  (FAILED|PASSED)|FAILED|ERROR SUMMARY|Errors|tests passed|tests failed" "$OUT/ctest.log" "$OUT/sanitizer.log" \
    2>/dev/null | head -40
fail=0
for k in "${!RESULT[@]}"; do [ "${RESULT[$k]}" = 0 ] || fail=1; done
exit $fail
