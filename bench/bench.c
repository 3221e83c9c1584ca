/* bench.c — implementation of bench.h. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef QN_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

double qn_bench_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double qn_bench_median(double *v, int n) {
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
    fputc('"', f);
}

void qn_bench_json_env(FILE *f, const qn_bench_env *e) {
    fputs("\"gpu\":", f);
    json_str(f, e->gpu);
    fputs(",\"commit\":", f);
    json_str(f, e->commit);
    fputs(",\"date\":", f);
    json_str(f, e->date);
    fprintf(f, ",\"sm\":%d,\"n_sm\":%d,\"l2_mb\":%.1f,\"sm_clock_mhz\":%d,\"sm_clock_max_mhz\":%d,\"mem_clock_mhz\":%d",
            e->sm, e->n_sm, (double)e->l2_bytes / 1048576.0, e->sm_clock_mhz, e->sm_clock_max_mhz, e->mem_clock_mhz);
    fprintf(f, ",\"copy_gbs\":%.1f,\"launch_floor_us\":%.2f", e->copy_gbs, e->launch_floor_us);
}

#ifdef QN_HAVE_CUDA

static int read_cmd_line(const char *cmd, char *buf, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    buf[0] = 0;
    const char *r = fgets(buf, (int)cap, p);
    pclose(p);
    if (!r) return -1;
    buf[strcspn(buf, "\r\n")] = 0;
    return buf[0] ? 0 : -1;
}

/* The graph floor: a 4-byte memset node, about the cheapest op a graph replays (C cannot hold a
 * kernel; an empty kernel is within a few hundred ns of it). */
static int op_memset(void *ctx, int i, void *stream) {
    (void)i;
    return cudaMemsetAsync(ctx, 0, 4, (cudaStream_t)stream) == cudaSuccess ? 0 : -1;
}

int qn_bench_env_init(qn_bench_env *e, size_t copy_bytes) {
    memset(e, 0, sizeof *e);
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return -1;
    snprintf(e->gpu, sizeof e->gpu, "%.127s", prop.name); /* gpu[128] */
    e->sm = prop.major * 10 + prop.minor;
    e->n_sm = prop.multiProcessorCount;
    e->l2_bytes = (size_t)prop.l2CacheSize;
    e->mem_bytes = prop.totalGlobalMem;

    const char *c = getenv("QN_COMMIT");
    if (c && *c) snprintf(e->commit, sizeof e->commit, "%s", c);
    else if (read_cmd_line("git rev-parse --short HEAD 2>/dev/null", e->commit, sizeof e->commit) != 0)
        snprintf(e->commit, sizeof e->commit, "unknown");
    const time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(e->date, sizeof e->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char line[256];
    if (read_cmd_line("nvidia-smi --query-gpu=clocks.sm,clocks.max.sm,clocks.mem --format=csv,noheader,nounits "
                      "-i 0 2>/dev/null",
                      line, sizeof line) == 0)
        sscanf(line, "%d, %d, %d", &e->sm_clock_mhz, &e->sm_clock_max_mhz, &e->mem_clock_mhz);

    /* copy bandwidth: median of 10 large device-to-device copies, read + write bytes */
    if (!copy_bytes) copy_bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    cudaStream_t st;
    cudaEvent_t e0, e1;
    if (cudaMalloc(&a, copy_bytes) != cudaSuccess || cudaMalloc(&b, copy_bytes) != cudaSuccess) return -1;
    if (cudaStreamCreate(&st) != cudaSuccess) return -1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    cudaMemsetAsync(a, 1, copy_bytes, st);
    double t[10];
    for (int i = -2; i < 10; i++) {
        cudaEventRecord(e0, st);
        cudaMemcpyAsync(b, a, copy_bytes, cudaMemcpyDeviceToDevice, st);
        cudaEventRecord(e1, st);
        if (cudaEventSynchronize(e1) != cudaSuccess) return -1;
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (i >= 0) t[i] = ms;
    }
    e->copy_gbs = 2.0 * (double)copy_bytes / (qn_bench_median(t, 10) * 1e-3) / 1e9;
    cudaFree(a);
    cudaFree(b);

    void *scratch = NULL;
    cudaMalloc(&scratch, 256);
    qn_bench_stats s;
    if (qn_bench_time_ops(op_memset, scratch, st, 50, 2, 9, &s) == 0) e->launch_floor_us = s.median_us;
    cudaFree(scratch);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaStreamDestroy(st);
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}

int qn_bench_time_ops(qn_bench_op_fn fn, void *ctx, void *stream, int ops_per_sample, int warmup, int samples,
                      qn_bench_stats *out) {
    cudaStream_t st = (cudaStream_t)stream;
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double *t = malloc(sizeof(double) * (size_t)(samples > 0 ? samples : 1));
    int rc = -1;
    if (!t || samples < 1 || ops_per_sample < 1) goto done;
    if (cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed) != cudaSuccess) goto done;
    int op_rc = 0;
    for (int i = 0; i < ops_per_sample && op_rc == 0; i++) op_rc = fn(ctx, i, stream);
    if (cudaStreamEndCapture(st, &g) != cudaSuccess || op_rc != 0) goto done;
    if (cudaGraphInstantiate(&ge, g, 0) != cudaSuccess) goto done;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    for (int i = 0; i < warmup; i++) cudaGraphLaunch(ge, st);
    if (cudaStreamSynchronize(st) != cudaSuccess) goto done;
    for (int i = 0; i < samples; i++) {
        cudaEventRecord(e0, st);
        cudaGraphLaunch(ge, st);
        cudaEventRecord(e1, st);
        if (cudaEventSynchronize(e1) != cudaSuccess) goto done;
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        t[i] = 1e3 * ms / ops_per_sample;
    }
    out->samples = samples;
    out->ops_per_sample = ops_per_sample;
    out->median_us = qn_bench_median(t, samples); /* sorts t */
    out->min_us = t[0];
    out->max_us = t[samples - 1];
    rc = cudaGetLastError() == cudaSuccess ? 0 : -1;
done:
    if (rc != 0) (void)cudaGetLastError();
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    free(t);
    return rc;
}

int qn_bench_rotations(const qn_bench_env *e, size_t bytes) {
    if (!bytes) return 1;
    const size_t want = 3 * (e->l2_bytes ? e->l2_bytes : (size_t)64 << 20);
    size_t r = (want + bytes - 1) / bytes;
    if (r < 1) r = 1;
    if (r > 256) r = 256;
    return (int)r;
}
#endif /* QN_HAVE_CUDA */
