#!/usr/bin/env bash
# cupti_trace.sh CMD [ARGS...] — runs CMD with bench/trace/cupti_trace.c injected (CUDA_INJECTION64_PATH):
# kernel-by-kernel timings of every CUDA graph replay, from CUPTI activity records, printed to stderr at exit
# (see the .c file). Builds the library first (into $QN_TRACE_LIB, default /tmp/qn_cupti_trace.so) against
# CUPTI found in $CUPTI_ROOT, the CUDA toolkit (extras/CUPTI) or the nvidia-cuda-cupti pip wheel of python3.
# Example: bench/trace/cupti_trace.sh build-gpu/quern bench --device cuda -m M.gguf -p 0 -n 64 -r 1
set -euo pipefail
cd "$(dirname "$0")/../.."
LIB=${QN_TRACE_LIB:-/tmp/qn_cupti_trace.so}
roots=("${CUPTI_ROOT:-}" /usr/local/cuda/extras/CUPTI)
py=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null || true)
[ -n "$py" ] && for d in "$py"/nvidia/cu13 "$py"/nvidia/cuda_cupti; do roots+=("$d"); done
inc="" lib=""
for r in "${roots[@]}"; do
    [ -n "$r" ] && [ -f "$r/include/cupti_activity.h" ] || continue
    inc=$r/include
    for l in "$r"/lib64 "$r"/lib; do ls "$l"/libcupti.so* >/dev/null 2>&1 && lib=$l && break; done
    [ -n "$lib" ] && break
done
if [ -z "$inc" ] || [ -z "$lib" ]; then
    echo "cupti_trace: no CUPTI (headers + libcupti.so) in: ${roots[*]}" >&2
    exit 1
fi
so=$(ls "$lib"/libcupti.so* | head -1)
if [ ! -f "$LIB" ] || [ bench/trace/cupti_trace.c -nt "$LIB" ]; then
    cc -std=c11 -O2 -Wall -Wextra -shared -fPIC -I"$inc" -I/usr/local/cuda/include bench/trace/cupti_trace.c \
        -o "$LIB" "$so" -Wl,-rpath,"$lib"
fi
CUDA_INJECTION64_PATH=$LIB LD_LIBRARY_PATH=$lib:${LD_LIBRARY_PATH:-} exec "$@"
