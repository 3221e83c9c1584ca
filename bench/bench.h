/* bench.h — the kernel-benchmark harness (style.md §3.12): device facts and the measured copy
 * bandwidth the numbers are judged against, CUDA-graph + cudaEvent timing (warm-up, median of N),
 * L2-cold inputs by rotating buffers, and the environment fields of every JSON line.
 * Owns no device memory of its callers. Compiled into every bench executable; the CUDA parts exist
 * only when QN_HAVE_CUDA is set (bench_cpu builds without them). */
#ifndef QN_BENCH_H
#define QN_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qn_bench_env {
    char gpu[128];        /* device name */
    char commit[48];      /* QN_COMMIT or git rev-parse --short HEAD */
    char date[32];        /* UTC, ISO 8601 */
    int sm;               /* major*10 + minor */
    int n_sm;
    size_t l2_bytes;
    size_t mem_bytes;
    int sm_clock_mhz;     /* nvidia-smi, read at start (0 if unavailable) */
    int sm_clock_max_mhz;
    int mem_clock_mhz;
    double copy_gbs;      /* device-to-device copy, bytes read + written per second / 1e9 */
    double launch_floor_us; /* an empty kernel, back to back in a graph */
} qn_bench_env;

/* Wall-clock seconds (CLOCK_MONOTONIC). */
double qn_bench_now_s(void);
/* Median of v[0..n) (sorts v). */
double qn_bench_median(double *v, int n);

/* Prints the environment as JSON members (no braces): "gpu":...,"commit":...,... */
void qn_bench_json_env(FILE *f, const qn_bench_env *e);

#ifdef QN_HAVE_CUDA
/* Reads device 0's facts, clocks, commit and date; measures copy bandwidth (copy_bytes per
 * direction, 0 = 1 GiB) and the graph launch floor. Returns 0 on success. */
int qn_bench_env_init(qn_bench_env *e, size_t copy_bytes);

typedef struct qn_bench_stats {
    double median_us, min_us, max_us; /* per op */
    int samples, ops_per_sample;
} qn_bench_stats;

/* Enqueues op number `i` on stream (a cudaStream_t); returns 0 on success. Op i should read its
 * own rotating input (i % R) so that the inputs do not sit in L2 between uses. */
typedef int (*qn_bench_op_fn)(void *ctx, int i, void *stream);

/* Captures ops 0..ops_per_sample-1 into one CUDA graph, replays it `warmup` times, then times
 * `samples` replays with cudaEvents; per-op time = replay time / ops_per_sample. Returns 0 on
 * success. (Graph replays: back-to-back launches without host gaps, as a decode step runs.) */
int qn_bench_time_ops(qn_bench_op_fn fn, void *ctx, void *stream, int ops_per_sample, int warmup, int samples,
                      qn_bench_stats *out);

/* Number of rotating copies of a `bytes` input so that each copy is evicted from L2 before its
 * next use: total >= 3x L2, at least 1. */
int qn_bench_rotations(const qn_bench_env *e, size_t bytes);
#endif

#ifdef __cplusplus
}
#endif
#endif /* QN_BENCH_H */
