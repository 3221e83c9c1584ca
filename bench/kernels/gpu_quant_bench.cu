/* gpu_quant_bench.cu — the GPU matmul benchmark (kernels/quant/quant.h) beside cuBLAS fp16, behind
 * qn_bench_kernels_main (gpu_quant_bench.h): `quern bench kernels` and the bench_gpu_quant executable.
 * Every format the GPU kernels take (qn_quant_cuda_has_format: GGUF F16 ... Q6_K and the device-only
 * lq4/lq8/lnf4/lfp4) x the Llama-3-8B projection shapes (N x K = 4096x4096, 1024x4096, 14336x4096,
 * 4096x14336; --shape all adds the 128256x4096 LM head) x n = 1, 2, 4, 8, 16, 32, 64, 128, 512, 4096
 * tokens. Each point runs on the path qn_quant_select_path picks (AUTO) and, unless --quick, on the other
 * candidates: at n <= 16 the int8 MMVQ path and the tensor-core GEMV side by side, at n = 32..512 MMA, from 32 on
 * dequant + cuBLAS and, for the formats it takes (Q2_K, Q3_KP, Q4_K, Q5_K, Q6_KP, Q8_0P on sm_90a), the GGUF
 * tensor-core GEMM on each of its tiles (128 and 256 tokens; AUTO takes the default tile in qn_kq_tc_auto's window
 * only; a stderr line per tile, "tile" in the JSON). Every row: µs, GB/s (weights + x + y once), TFLOP/s (2 N K n), % of the
 * device-to-device copy bandwidth measured in the same run, and cuBLAS fp16 on the same shape and n.
 * Times are CUDA-graph replays of back-to-back calls over rotating weight copies (together >= 3x L2, and
 * every graph holds a whole number of rotations, so no copy is met again before the others have passed
 * through L2: weights come from HBM); median of up to 15 replays (fewer when a replay is long, 3..7 under
 * --quick). Output: a markdown table on stdout (AUTO rows with cuBLAS beside, then an n = 1 summary),
 * progress on stderr, one JSON line per point with --json FILE ("-" = stdout).
 * First (unless --quick), the dequant of the DEQUANT_CUBLAS path alone (qn_quant_dequant_cuda_variant, fast
 * and the previous staged kernel), per format x shape: GB/s of weights read + fp16 written, % of copy
 * bandwidth, outputs rotating too ("bench":"gpu_dequant"; --dequant-only stops there). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "bench.h"
#include "kernels/common/half.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/kq_tc.h"
#include "kernels/quant/gguf/kq_mmvq.h"
#include "kernels/quant/lutq_gpu.h"
#include "kernels/quant/qformat.h"
#include "kernels/quant/quant.h"
#include "bench/kernels/gpu_quant_bench.h"

#define CK(call)                                                                                  \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess) {                                                                  \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

/* candidates; those qn_quant_cuda_has_format refuses are skipped */
static const qn_qformat FORMATS[] = {
    QN_QFORMAT_F16,  QN_QFORMAT_BF16, QN_QFORMAT_Q4_0, QN_QFORMAT_Q4_1, QN_QFORMAT_Q5_0, QN_QFORMAT_Q5_1,
    QN_QFORMAT_Q8_0, QN_QFORMAT_Q2_K, QN_QFORMAT_Q3_K, QN_QFORMAT_Q4_K, QN_QFORMAT_Q5_K, QN_QFORMAT_Q6_K,
    QN_QFORMAT_Q3_KP, /* device-only: Q3_K padded to 112-byte blocks at upload (gguf/q3kp.h) */
    QN_QFORMAT_Q6_KP, /* device-only: Q6_K padded to 224-byte blocks at upload (gguf/q6kp.h) */
    QN_QFORMAT_Q8_0P, /* device-only: Q8_0 regrouped in 272-byte super-blocks at upload (gguf/q8_0p.h) */
    QN_QFORMAT_LQ4,  QN_QFORMAT_LQ8,  QN_QFORMAT_LNF4, QN_QFORMAT_LFP4,
};
struct shape { int64_t N, K; const char *name; bool extra; /* extra: only with --shape all or by name */ };
static const shape SHAPES[] = {
    {4096, 4096, "q/o", false}, {1024, 4096, "k/v", false}, {14336, 4096, "gate/up", false},
    {4096, 14336, "down", false}, {128256, 4096, "lm_head", true},
};
/* the token counts it can time; without --n, those of DEFAULT_NS */
static const int64_t NS[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
#define DEFAULT_NS "1,2,4,8,16,32,64,128,512,4096"
#define N_NS ((int)(sizeof NS / sizeof NS[0]))

/* --- random weights on the host (random bytes, realistic finite fp16 scales) --- */
static uint64_t g_s = 0x9E3779B97F4A7C15ull;
static inline uint64_t rnd() {
    g_s ^= g_s << 13, g_s ^= g_s >> 7, g_s ^= g_s << 17;
    return g_s;
}
static float rnd_unit() { return (float)((rnd() >> 40) * (1.0 / 16777216.0)); }
static uint16_t rnd_scale() {
    const float m = exp2f(-10.0f + 5.0f * rnd_unit());
    return qn_f32_to_f16((rnd() & 1) ? -m : m);
}
static float rnd_normalish() { return (rnd_unit() + rnd_unit() + rnd_unit() - 1.5f) * 2.0f; }

static const char *fmt_name(qn_qformat f) { return qn_qformat_name(f); }

static void make_weights(qn_qformat f, size_t bytes, uint8_t *w) {
    if (f == QN_QFORMAT_F16 || f == QN_QFORMAT_BF16) {
        uint16_t *h = (uint16_t *)w;
        for (size_t i = 0; i < bytes / 2; i++) {
            const float v = 0.05f * rnd_normalish();
            h[i] = f == QN_QFORMAT_F16 ? qn_f32_to_f16(v) : qn_f32_to_bf16(v);
        }
        return;
    }
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        const uint64_t r = rnd();
        memcpy(w + i, &r, 8);
    }
    const int be = f < QN_QFORMAT_COUNT ? QN_QFORMATS[f].block_elems
                   : f == QN_QFORMAT_Q3_KP || f == QN_QFORMAT_Q6_KP || f == QN_QFORMAT_Q8_0P ? 256 /* q3kp.h, q6kp.h, q8_0p.h */
                                                                    : 32; /* lutq_gpu.h blocks: 32 */
    const size_t bb = qn_qformat_row_bytes(f, be);
    if (f == QN_QFORMAT_LQ4 || f == QN_QFORMAT_LQ8 || f == QN_QFORMAT_LNF4 || f == QN_QFORMAT_LFP4) {
        for (size_t b = 0; b + bb <= bytes; b += bb) {
            if (f == QN_QFORMAT_LNF4 || f == QN_QFORMAT_LFP4) {
                const float a = 0.01f + 0.1f * rnd_unit(); /* f32 absmax */
                memcpy(w + b + offsetof(qn_block_lnf4, a), &a, 4);
                continue;
            }
            const uint16_t d = rnd_scale(), zb = (uint16_t)(0x6400 + rnd() % (f == QN_QFORMAT_LQ8 ? 256 : 16));
            memcpy(w + b + offsetof(qn_block_lq4, d), &d, 2);
            memcpy(w + b + offsetof(qn_block_lq4, zb), &zb, 2);
        }
        return;
    }
    size_t off[8] = {0};
    int n = 1;
    if (f == QN_QFORMAT_Q4_0) off[0] = offsetof(qn_block_q4_0, d);
    if (f == QN_QFORMAT_Q4_1) off[0] = offsetof(qn_block_q4_1, d), off[1] = offsetof(qn_block_q4_1, m), n = 2;
    if (f == QN_QFORMAT_Q5_0) off[0] = offsetof(qn_block_q5_0, d);
    if (f == QN_QFORMAT_Q5_1) off[0] = offsetof(qn_block_q5_1, d), off[1] = offsetof(qn_block_q5_1, m), n = 2;
    if (f == QN_QFORMAT_Q8_0) off[0] = offsetof(qn_block_q8_0, d);
    if (f == QN_QFORMAT_Q2_K) off[0] = offsetof(qn_block_q2_k, d), off[1] = offsetof(qn_block_q2_k, dmin), n = 2;
    if (f == QN_QFORMAT_Q3_K || f == QN_QFORMAT_Q3_KP) off[0] = offsetof(qn_block_q3_k, d);
    if (f == QN_QFORMAT_Q4_K) off[0] = offsetof(qn_block_q4_k, d), off[1] = offsetof(qn_block_q4_k, dmin), n = 2;
    if (f == QN_QFORMAT_Q5_K) off[0] = offsetof(qn_block_q5_k, d), off[1] = offsetof(qn_block_q5_k, dmin), n = 2;
    if (f == QN_QFORMAT_Q6_K || f == QN_QFORMAT_Q6_KP) off[0] = offsetof(qn_block_q6_k, d);
    if (f == QN_QFORMAT_Q8_0P) /* d f16[8] @0 (q8_0p.h) */
        for (n = 0; n < 8; n++) off[n] = 2 * (size_t)n;
    for (size_t b = 0; b + bb <= bytes; b += bb) {
        for (int i = 0; i < n; i++) {
            const uint16_t s = rnd_scale();
            memcpy(w + b + off[i], &s, 2);
        }
        if (f == QN_QFORMAT_Q6_KP) memset(w + b + sizeof(qn_block_q6_k), 0, bb - sizeof(qn_block_q6_k)); /* the pad */
        if (f == QN_QFORMAT_Q3_KP) memset(w + b + sizeof(qn_block_q3_k), 0, bb - sizeof(qn_block_q3_k));
    }
}

/* Rotating device copies of one random weight of `bytes` (qn_bench_rotations many, at most 256): w[0..rot). */
static int upload_rotations(const qn_bench_env *env, qn_qformat f, size_t bytes, void **w) {
    int rot = qn_bench_rotations(env, bytes);
    if (rot > 256) rot = 256;
    uint8_t *h = (uint8_t *)malloc(bytes);
    if (!h) {
        fprintf(stderr, "bench kernels: out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    make_weights(f, bytes, h);
    for (int r = 0; r < rot; r++) {
        CK(cudaMalloc(&w[r], bytes));
        CK(cudaMemcpy(w[r], h, bytes, cudaMemcpyHostToDevice));
    }
    free(h);
    return rot;
}

/* --- one timed operation --- */
struct op_ctx {
    const qn_quant_cuda_ctx *qc;
    cublasHandle_t blas;
    qn_qformat fmt;    /* F16 with op_cublas: the cuBLAS fp16 baseline */
    void **w;          /* rotating weight copies */
    int rot;
    int64_t N, K, n;
    const void *x;
    float *y;
    void *ws;
    size_t ws_bytes;
    qn_quant_matmul_opts opts;
};

static int op_quant(void *vctx, int i, void *stream) {
    op_ctx *c = (op_ctx *)vctx;
    return qn_quant_matmul_cuda_ex(c->qc, c->fmt, c->w[i % c->rot], c->N, c->K, c->x, c->n, c->y, c->ws,
                                   c->ws_bytes, stream, &c->opts) == QN_OK ? 0 : -1;
}

/* The int8 decode kernel alone (kq_mmvq_matmul), on activations quantized once beforehand: what a decode step
 * launches, where the norm or SiLU before the matmul writes the q8 activations itself. pdl: each launch a
 * programmatic dependent of the one before (the decode step's CUDA graphs launch every kernel so). */
struct mk_ctx {
    const qn_quant_cuda_ctx *qc;
    qn_qformat fmt;
    void **w;
    int rot;
    int64_t N, K, n;
    const void *xq; /* q8 activations, or fp16 x for kq_mmvq_takes_f16_x formats */
    float *y;
    int stage, pdl;
};

static int op_mmvq_kernel(void *vctx, int i, void *stream) {
    mk_ctx *c = (mk_ctx *)vctx;
    return kq_mmvq_matmul(c->fmt, c->w[i % c->rot], c->N, c->K, c->xq, c->n, c->y, c->qc->n_sm, 0, c->stage,
                          c->pdl, stream) == QN_OK ? 0 : -1;
}

/* one dequant: weight copy i % rot into output copy i % rot_out */
struct dq_ctx {
    const qn_quant_cuda_ctx *qc;
    qn_qformat fmt;
    void **w, **out;
    int rot, rot_out;
    int64_t N, K;
    qn_quant_dequant_variant variant;
};

static int op_dequant(void *vctx, int i, void *stream) {
    dq_ctx *c = (dq_ctx *)vctx;
    return qn_quant_dequant_cuda_variant(c->qc, c->fmt, c->w[i % c->rot], c->N, c->K, c->out[i % c->rot_out],
                                         stream, c->variant) == QN_OK ? 0 : -1;
}

static int op_cublas(void *vctx, int i, void *stream) {
    op_ctx *c = (op_ctx *)vctx;
    const float one = 1.f, zero = 0.f;
    if (cublasSetStream(c->blas, (cudaStream_t)stream) != CUBLAS_STATUS_SUCCESS) return -1;
    return cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)c->N, (int)c->n, (int)c->K, &one, c->w[i % c->rot],
                        CUDA_R_16F, (int)c->K, c->x, CUDA_R_16F, (int)c->K, &zero, c->y, CUDA_R_32F, (int)c->N,
                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS ? 0 : -1;
}

/* Ops per graph: about 2 ms of work (4..400), at least one rotation, and a whole number of rotations:
 * op i reads copy i % rot, so the next replay's op 0 meets copy 0 again only after all the others (with a
 * remainder, op 0 would follow a read of the same copy and find it in L2). */
static int ops_for(int rot, double est_us) {
    int ops = (int)(2000.0 / (est_us > 1 ? est_us : 1));
    if (ops < 4) ops = 4;
    if (ops > 400) ops = 400;
    return (ops + rot - 1) / rot * rot;
}

/* Replays to time: up to 15 (7 with --quick), fewer when one replay is long (a budget of ~0.4 s per
 * point, 0.15 s quick), at least 3. */
static void replays_for(double replay_us, bool quick, int *warmup, int *samples) {
    const double budget_us = quick ? 150e3 : 400e3;
    const int most = quick ? 7 : 15;
    int s = replay_us > 0 ? (int)(budget_us / replay_us) : most;
    *samples = s < 3 ? 3 : s > most ? most : s;
    *warmup = replay_us > 10e3 ? 1 : 2;
}

/* Times fn over ctx (rot rotating weights, rot_out outputs or 1): a one-replay estimate, then the plan. */
static int time_rotating(qn_bench_op_fn fn, void *ctx, int rot, cudaStream_t st, bool quick, qn_bench_stats *s) {
    qn_bench_stats e;
    const int ops0 = (4 + rot - 1) / rot * rot;
    if (qn_bench_time_ops(fn, ctx, st, ops0, 1, 1, &e) != 0) return -1;
    const int ops = ops_for(rot, e.median_us);
    int warmup, samples;
    replays_for(e.median_us * ops, quick, &warmup, &samples);
    return qn_bench_time_ops(fn, ctx, st, ops, warmup, samples, s);
}

static const char *path_name(qn_quant_path p) {
    return p == QN_QUANT_PATH_GEMV ? "gemv" : p == QN_QUANT_PATH_MMA ? "mma"
           : p == QN_QUANT_PATH_DEQUANT_CUBLAS ? "dequant_cublas" : p == QN_QUANT_PATH_MMVQ ? "mmvq"
           : p == QN_QUANT_PATH_TC ? "tc" : "?";
}

static bool in_list(const char *list, const char *item) {
    if (!list) return true;
    char buf[512];
    snprintf(buf, sizeof buf, ",%s,", list);
    char key[64];
    snprintf(key, sizeof key, ",%s,", item);
    for (char *p = buf; *p; p++) *p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    for (char *p = key; *p; p++) *p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    return strstr(buf, key) != NULL;
}

static bool n_wanted(const char *n_list, int64_t n) {
    char b[24];
    snprintf(b, sizeof b, "%lld", (long long)n);
    return in_list(n_list, b);
}

/* default: the four Llama-3-8B projections; "all" adds the extras; else by NxK name */
static bool shape_wanted(const char *shape_list, const shape &sh, char *sname, size_t cap) {
    snprintf(sname, cap, "%lldx%lld", (long long)sh.N, (long long)sh.K);
    if (!shape_list) return !sh.extra;
    return in_list(shape_list, "all") || in_list(shape_list, sname);
}

static bool fmt_wanted(const char *fmt_list, qn_qformat f) {
    return qn_quant_cuda_has_format(f) && in_list(fmt_list, fmt_name(f));
}

struct summary_row {
    const char *fmt;
    int64_t N, K;
    double us1, pct1, us16, cub1, gemv1, gemv_pct1;
    double kern1, kern_pct1, kpdl1, kpdl_pct1; /* the int8 kernel alone at n = 1: plain launches, PDL chain */
    qn_quant_path p1;
};

static const char *dequant_name(qn_quant_dequant_variant v) {
    return v == QN_QUANT_DEQUANT_FAST ? "fast" : v == QN_QUANT_DEQUANT_STAGED ? "staged" : "ref";
}

/* The dequant alone, fast and staged, every selected format x shape; a table on stderr. */
static void bench_dequant(const qn_bench_env *env, const qn_quant_cuda_ctx *qc, cudaStream_t st, FILE *js,
                          const char *fmt_list, const char *shape_list) {
    const qn_quant_dequant_variant vs[] = {QN_QUANT_DEQUANT_FAST, QN_QUANT_DEQUANT_STAGED};
    fprintf(stderr, "\ndequant to fp16 (GB/s = weights read + fp16 written)\n%-6s %-12s %10s %8s %7s %10s %8s %7s\n",
            "fmt", "NxK", "fast us", "GB/s", "%copy", "staged us", "GB/s", "gain");
    for (const shape &sh : SHAPES) {
        char sname[32];
        if (!shape_wanted(shape_list, sh, sname, sizeof sname)) continue;
        const size_t ob = (size_t)(sh.N * sh.K) * 2;
        int rot_out = qn_bench_rotations(env, ob);
        if (rot_out > 256) rot_out = 256;
        void *out[256];
        for (int r = 0; r < rot_out; r++) CK(cudaMalloc(&out[r], ob));
        for (qn_qformat f : FORMATS) {
            if (!fmt_wanted(fmt_list, f)) continue;
            const size_t wb = (size_t)sh.N * qn_qformat_row_bytes(f, sh.K);
            void *w[256];
            const int rot = upload_rotations(env, f, wb, w);
            double us[2] = {-1, -1}, gbs[2] = {0, 0};
            for (int vi = 0; vi < 2; vi++) {
                dq_ctx c = {qc, f, w, out, rot, rot_out, sh.N, sh.K, vs[vi]};
                /* weights (the larger count: they are no bigger than the fp16 output) set the rotation */
                qn_bench_stats s;
                if (time_rotating(op_dequant, &c, rot > rot_out ? rot : rot_out, st, false, &s) != 0) {
                    fprintf(stderr, "  dequant %s %s %s: failed\n", dequant_name(vs[vi]), fmt_name(f), sname);
                    continue;
                }
                us[vi] = s.median_us;
                gbs[vi] = ((double)wb + (double)ob) / s.median_us * 1e-3;
                if (!js) continue;
                fprintf(js, "{\"bench\":\"gpu_dequant\",\"fmt\":\"%s\",\"N\":%lld,\"K\":%lld,\"variant\":\"%s\","
                            "\"weight_bytes\":%zu,\"out_bytes\":%zu,\"rot\":%d,\"rot_out\":%d,\"us\":%.3f,"
                            "\"us_min\":%.3f,\"us_max\":%.3f,\"gbs\":%.1f,\"write_gbs\":%.1f,\"pct_copy\":%.1f,",
                        fmt_name(f), (long long)sh.N, (long long)sh.K, dequant_name(vs[vi]), wb, ob, rot, rot_out,
                        s.median_us, s.min_us, s.max_us, gbs[vi], (double)ob / s.median_us * 1e-3,
                        100.0 * gbs[vi] / env->copy_gbs);
                qn_bench_json_env(js, env);
                fprintf(js, "}\n");
                fflush(js);
            }
            fprintf(stderr, "%-6s %-12s %10.2f %8.0f %6.1f%% %10.2f %8.0f %6.2fx\n", fmt_name(f), sname, us[0],
                    gbs[0], 100.0 * gbs[0] / env->copy_gbs, us[1], gbs[1], us[0] > 0 && us[1] > 0 ? us[1] / us[0] : 0.0);
            for (int r = 0; r < rot; r++) cudaFree(w[r]);
        }
        for (int r = 0; r < rot_out; r++) cudaFree(out[r]);
    }
}

/* One measured point: the numbers every row and JSON line carry. */
struct point {
    double us, us_min, us_max, gbs, pct, tflops;
};

static point make_point(const qn_bench_env *env, const qn_bench_stats &s, double bytes, const shape &sh, int64_t n) {
    point p;
    p.us = s.median_us, p.us_min = s.min_us, p.us_max = s.max_us;
    p.gbs = bytes / s.median_us * 1e-3;
    p.pct = 100.0 * p.gbs / env->copy_gbs;
    p.tflops = 2.0 * (double)sh.N * (double)sh.K * (double)n / s.median_us * 1e-6;
    return p;
}

/* one markdown row on stdout: our AUTO path (or cuBLAS itself) with cuBLAS fp16 of the same shape and n */
static void print_row(const char *fmt, const char *sname, int64_t n, const char *path, const point &p,
                      const point *cub) {
    printf("| %s | %s | %lld | %s | %.2f | %.0f | %.2f | %.1f%% |", fmt, sname, (long long)n, path, p.us, p.gbs,
           p.tflops, p.pct);
    if (cub && cub->us > 0)
        printf(" %.2f | %.2f | %.2fx |\n", cub->us, cub->tflops, cub->us / p.us);
    else
        printf(" — | — | — |\n");
    fflush(stdout);
}

static void usage(FILE *f, const char *prog) {
    fprintf(f,
            "usage: %s [--fmt LIST] [--n LIST] [--shape NxK,...|all] [--json FILE|-] [--quick] [--dequant-only]\n"
            "          [--split-sweep] [--split-mode auto|workspace|cluster] [--mmvq-staged|--mmvq-direct]\n"
            "  GPU matmul kernels (every format the GPU takes) x Llama-3-8B shapes x n, beside cuBLAS fp16:\n"
            "  us, GB/s, TFLOP/s, %% of measured copy bandwidth; weights rotate through > 3x L2.\n"
            "  --fmt     formats, e.g. q4_K,q8_0,lq4 (default: all with a GPU kernel)\n"
            "  --n       token counts of " "1,2,4,8,16,32,64,128,256,512,1024,2048,4096 (default " DEFAULT_NS ")\n"
            "  --shape   4096x4096,1024x4096,14336x4096,4096x14336 (default); 'all' adds 128256x4096 (LM head)\n"
            "  --json    one JSON line per point to FILE ('-' = stdout)\n"
            "  --quick   the AUTO path and cuBLAS only, no dequant table, fewer replays (about a minute on an H200)\n"
            "  --mmvq-staged  the int8 path stages all weights it can through shared memory (kq_mmvq.h; A/B runs)\n"
            "  --mmvq-direct  the int8 path reads all weights directly (default: staged where measured faster)\n",
            prog);
}

extern "C" int qn_bench_kernels_main(int argc, char **argv) {
    const char *prog = argc > 0 && strcmp(argv[0], "kernels") ? argv[0] : "quern bench kernels";
    const char *fmt_list = NULL, *n_list = NULL, *shape_list = NULL, *json_path = NULL;
    bool sweep = false, quick = false, dequant_only = false;
    int mmvq_stage = 0;
    qn_quant_split_mode split_mode = QN_QUANT_SPLIT_AUTO;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--fmt") && i + 1 < argc) fmt_list = argv[++i];
        else if (!strcmp(argv[i], "--n") && i + 1 < argc) n_list = argv[++i];
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) shape_list = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--split-sweep")) sweep = true;
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--dequant-only")) dequant_only = true;
        else if (!strcmp(argv[i], "--mmvq-staged")) mmvq_stage = 1;
        else if (!strcmp(argv[i], "--mmvq-direct")) mmvq_stage = -1;
        else if (!strcmp(argv[i], "--split-mode") && i + 1 < argc &&
                 (!strcmp(argv[i + 1], "auto") || !strcmp(argv[i + 1], "workspace") || !strcmp(argv[i + 1], "cluster"))) {
            ++i;
            split_mode = !strcmp(argv[i], "cluster") ? QN_QUANT_SPLIT_CLUSTER
                         : !strcmp(argv[i], "workspace") ? QN_QUANT_SPLIT_WORKSPACE : QN_QUANT_SPLIT_AUTO;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout, prog);
            return 0;
        } else {
            fprintf(stderr, "%s: unknown or incomplete argument '%s'\n", prog, argv[i]);
            usage(stderr, prog);
            return 2;
        }
    }
    if (!n_list) n_list = DEFAULT_NS;

    int n_dev = 0;
    const cudaError_t de = cudaGetDeviceCount(&n_dev);
    if (de != cudaSuccess || n_dev < 1) {
        fprintf(stderr, "%s: no usable CUDA device (%s)\n", prog,
                de != cudaSuccess ? cudaGetErrorString(de) : "no device found");
        return QN_BENCH_KERNELS_NO_DEVICE;
    }
    FILE *js = !json_path ? NULL : !strcmp(json_path, "-") ? stdout : fopen(json_path, "w");
    if (json_path && !js) {
        fprintf(stderr, "%s: cannot write %s\n", prog, json_path);
        return 1;
    }

    qn_bench_env env;
    if (qn_bench_env_init(&env, 0) != 0) {
        fprintf(stderr, "%s: CUDA device 0 is not usable (%s)\n", prog, cudaGetErrorString(cudaGetLastError()));
        if (js && js != stdout) fclose(js);
        return QN_BENCH_KERNELS_NO_DEVICE;
    }
    fprintf(stderr, "%s sm_%d %d SMs L2 %.0f MB, clocks sm %d/%d MHz mem %d MHz, copy %.0f GB/s, graph floor %.2f us, commit %s\n",
            env.gpu, env.sm, env.n_sm, env.l2_bytes / 1048576.0, env.sm_clock_mhz, env.sm_clock_max_mhz,
            env.mem_clock_mhz, env.copy_gbs, env.launch_floor_us, env.commit);
    if (js) {
        fprintf(js, "{\"bench\":\"gpu_quant_env\",");
        qn_bench_json_env(js, &env);
        fprintf(js, "}\n");
    }

    cublasHandle_t blas;
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) return 1;
    qn_quant_cuda_ctx qc;
    if (qn_quant_cuda_ctx_init(&qc, 0, blas) != QN_OK) return 1;
    if (qc.sm < 80) {
        fprintf(stderr, "%s: %s is sm_%d; the quant kernels need sm_80 or newer\n", prog, env.gpu, qc.sm);
        cublasDestroy(blas);
        return 1;
    }
    cudaStream_t st;
    CK(cudaStreamCreate(&st));

    if (!quick) bench_dequant(&env, &qc, st, js, fmt_list, shape_list);
    if (dequant_only) {
        if (js && js != stdout) fclose(js);
        cublasDestroy(blas);
        cudaStreamDestroy(st);
        return 0;
    }

    /* shared activations/outputs/workspace, sized for the largest point */
    int64_t nmax = 1, kmax = 0, Nmax = 0, NKmax = 0;
    for (int i = 0; i < N_NS; i++)
        if (n_wanted(n_list, NS[i]) && NS[i] > nmax) nmax = NS[i];
    for (const shape &s : SHAPES)
        kmax = s.K > kmax ? s.K : kmax, Nmax = s.N > Nmax ? s.N : Nmax, NKmax = s.N * s.K > NKmax ? s.N * s.K : NKmax;
    void *dx, *ws;
    float *dy;
    /* workspace: the dequant+cuBLAS path's fp16 weights (the largest), or the q8 activations */
    const size_t x_bytes = (size_t)(nmax * kmax) * 2, ws_bytes = (size_t)NKmax * 2 + (size_t)(nmax * kmax) * 2 + (1 << 20);
    CK(cudaMalloc(&dx, x_bytes));
    CK(cudaMalloc((void **)&dy, (size_t)(nmax * Nmax) * 4));
    CK(cudaMalloc(&ws, ws_bytes));
    void *xq; /* q8 activations of up to 8 tokens for the int8 kernel alone */
    CK(cudaMalloc(&xq, qn_mmvq_x_bytes(8, kmax)));
    CK(cudaMemset(ws, 0, ws_bytes)); /* split-K counters start at zero (quant.h) */
    {
        uint16_t *hx = (uint16_t *)malloc(x_bytes);
        if (!hx) return 1;
        for (size_t i = 0; i < x_bytes / 2; i++) hx[i] = qn_f32_to_f16(rnd_normalish());
        CK(cudaMemcpy(dx, hx, x_bytes, cudaMemcpyHostToDevice));
        free(hx);
    }

    printf("\nGPU matmul, AUTO path vs cuBLAS fp16 (%s, copy %.0f GB/s, L2 %.0f MB, weights rotated over >= 3x L2)\n\n",
           env.gpu, env.copy_gbs, env.l2_bytes / 1048576.0);
    printf("| type | NxK | n | path | µs | GB/s | TFLOP/s | %% copy | cuBLAS fp16 µs | cuBLAS TFLOP/s | vs cuBLAS |\n");
    printf("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
    summary_row rows[128];
    int n_rows = 0;
    for (const shape &sh : SHAPES) {
        char sname[32];
        if (!shape_wanted(shape_list, sh, sname, sizeof sname)) continue;

        /* cuBLAS fp16 baseline: fp16 W [N][K], rotating copies, per n */
        const size_t f16_bytes = (size_t)(sh.N * sh.K) * 2;
        void *w16[256];
        const int rot16 = upload_rotations(&env, QN_QFORMAT_F16, f16_bytes, w16);
        point cub[N_NS];
        for (int ni = 0; ni < N_NS; ni++) {
            cub[ni].us = -1;
            if (!n_wanted(n_list, NS[ni])) continue;
            op_ctx c = {&qc, blas, QN_QFORMAT_F16, w16, rot16, sh.N, sh.K, NS[ni], dx, dy, NULL, 0, {}};
            qn_bench_stats s;
            if (time_rotating(op_cublas, &c, rot16, st, quick, &s) != 0) {
                fprintf(stderr, "  cuBLAS fp16 %s n=%lld: failed\n", sname, (long long)NS[ni]);
                continue;
            }
            const double bytes = (double)f16_bytes + NS[ni] * sh.K * 2.0 + NS[ni] * sh.N * 4.0;
            cub[ni] = make_point(&env, s, bytes, sh, NS[ni]);
            print_row("cuBLAS fp16", sname, NS[ni], "cublas", cub[ni], NULL);
            if (!js) continue;
            fprintf(js, "{\"bench\":\"gpu_quant\",\"fmt\":\"cublas_f16\",\"N\":%lld,\"K\":%lld,\"n\":%lld,\"path\":\"cublas\","
                        "\"rot\":%d,\"us\":%.3f,\"us_min\":%.3f,\"us_max\":%.3f,\"gbs\":%.1f,\"pct_copy\":%.1f,\"tflops\":%.2f,",
                    (long long)sh.N, (long long)sh.K, (long long)NS[ni], rot16, cub[ni].us, cub[ni].us_min, cub[ni].us_max,
                    cub[ni].gbs, cub[ni].pct, cub[ni].tflops);
            qn_bench_json_env(js, &env);
            fprintf(js, "}\n");
        }
        for (int r = 0; r < rot16; r++) cudaFree(w16[r]);

        for (qn_qformat f : FORMATS) {
            if (!fmt_wanted(fmt_list, f)) continue;
            const size_t wb = (size_t)sh.N * qn_qformat_row_bytes(f, sh.K);
            if (qn_quant_check_shape(f, sh.N, sh.K) != QN_OK || wb == 0) continue;
            void *w[256];
            const int rot = upload_rotations(&env, f, wb, w);
            summary_row row = {fmt_name(f), sh.N, sh.K, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, QN_QUANT_PATH_NONE};
            for (int ni = 0; ni < N_NS; ni++) {
                const int64_t n = NS[ni];
                if (!n_wanted(n_list, n)) continue;
                /* AUTO: what quant_cuda.cu runs (the K-quant tensor-core GEMM in its window: the workspace has room) */
                const qn_quant_path chosen = qn_kq_tc_auto(f, sh.N, n) && qn_kq_tc_takes(qc.sm, f, sh.N, sh.K)
                                                 ? QN_QUANT_PATH_TC
                                                 : qn_quant_select_path(f, qc.sm, n);
                qn_quant_path paths[6];
                int tiles[6] = {0}; /* TC on GGUF weights: the CTA tile named (0: the default) */
                int np = 0;
                paths[np++] = chosen;
                if (!quick) {
                    /* decode: the int8 path beside the tensor-core GEMV */
                    if (n <= 16 && chosen != QN_QUANT_PATH_GEMV) paths[np++] = QN_QUANT_PATH_GEMV;
                    if (n <= 16 && chosen != QN_QUANT_PATH_MMVQ && qn_quant_mmvq_has_format(f)) paths[np++] = QN_QUANT_PATH_MMVQ;
                    /* the crossover candidates beside the chosen path */
                    if (n >= 32 && n <= 512 && chosen != QN_QUANT_PATH_MMA) paths[np++] = QN_QUANT_PATH_MMA;
                    if (n >= 32 && chosen != QN_QUANT_PATH_DEQUANT_CUBLAS) paths[np++] = QN_QUANT_PATH_DEQUANT_CUBLAS;
                    /* the K-quant tensor-core GEMM past AUTO's window too, each of its tiles named (kq_tc.h) */
                    if (n >= 32 && qn_kq_tc_takes(qc.sm, f, sh.N, sh.K))
                        for (int tile = 128; tile <= 256; tile *= 2)
                            if (chosen != QN_QUANT_PATH_TC || tile != qn_kq_tc_tile_tokens(f, sh.N, n))
                                tiles[np] = tile, paths[np++] = QN_QUANT_PATH_TC;
                }
                int splits[8] = {0};
                int n_split = 1;
                if (sweep && n <= 16) n_split = 6, splits[1] = 1, splits[2] = 2, splits[3] = 4, splits[4] = 8, splits[5] = 16;
                for (int pi = 0; pi < np; pi++)
                    for (int si = 0; si < (pi == 0 || paths[pi] == QN_QUANT_PATH_GEMV ? n_split : 1); si++) {
                        if (paths[pi] == QN_QUANT_PATH_MMVQ && splits[si] > 4) continue; /* warps per row: 1, 2, 4 */
                        op_ctx c = {&qc, blas, f, w, rot, sh.N, sh.K, n, dx, dy, ws, ws_bytes, {paths[pi], splits[si], split_mode, false, mmvq_stage, tiles[pi]}};
                        qn_bench_stats s;
                        /* TC on GGUF weights: the tile it ran (named, or the default) */
                        const int tile = paths[pi] == QN_QUANT_PATH_TC && qn_kq_tc_has_format(f)
                                             ? qn_kq_tc_tile_of(tiles[pi], f, sh.N, n) : 0;
                        if (time_rotating(op_quant, &c, rot, st, quick, &s) != 0) {
                            fprintf(stderr, "  %s %s n=%lld %s split %d tile %d: failed\n", fmt_name(f), sname,
                                    (long long)n, path_name(paths[pi]), splits[si], tile);
                            continue;
                        }
                        const bool is_auto = pi == 0 && splits[si] == 0;
                        const point p = make_point(&env, s, (double)wb + n * sh.K * 2.0 + n * sh.N * 4.0, sh, n);
                        if (is_auto) print_row(fmt_name(f), sname, n, path_name(paths[pi]), p, &cub[ni]);
                        if (js) {
                            fprintf(js, "{\"bench\":\"gpu_quant\",\"fmt\":\"%s\",\"N\":%lld,\"K\":%lld,\"n\":%lld,\"path\":\"%s\","
                                        "\"chosen\":%s,\"split\":%d,\"tile\":%d,\"weight_bytes\":%zu,\"rot\":%d,\"us\":%.3f,\"us_min\":%.3f,"
                                        "\"us_max\":%.3f,\"gbs\":%.1f,\"pct_copy\":%.1f,\"tflops\":%.2f,\"cublas_us\":%.3f,"
                                        "\"vs_cublas\":%.3f,\"mmvq_stage\":\"%s\",",
                                    fmt_name(f), (long long)sh.N, (long long)sh.K, (long long)n, path_name(paths[pi]),
                                    is_auto ? "true" : "false", splits[si], tile, wb, rot, p.us, p.us_min, p.us_max, p.gbs,
                                    p.pct, p.tflops, cub[ni].us, cub[ni].us > 0 ? cub[ni].us / p.us : 0.0,
                                    mmvq_stage > 0 ? "staged" : mmvq_stage < 0 ? "direct" : "auto");
                            qn_bench_json_env(js, &env);
                            fprintf(js, "}\n");
                            fflush(js);
                        }
                        if (tile && !quick) /* the GEMM's tiles side by side, past AUTO's window too */
                            fprintf(stderr, "  %-5s %-12s n=%-4lld tc%d%s %9.2f us %7.1f TFLOP/s %5.2fx cuBLAS fp16\n",
                                    fmt_name(f), sname, (long long)n, tile, is_auto ? " (AUTO)" : "", p.us, p.tflops,
                                    cub[ni].us > 0 ? cub[ni].us / p.us : 0.0);
                        if (is_auto) {
                            if (n == 1) row.us1 = p.us, row.pct1 = p.pct, row.cub1 = cub[ni].us, row.p1 = paths[pi];
                            if (n == 16) row.us16 = p.us;
                        }
                        if (n == 1 && paths[pi] == QN_QUANT_PATH_GEMV && splits[si] == 0) row.gemv1 = p.us, row.gemv_pct1 = p.pct;
                        if (n <= 16 && splits[si] == 0 && !quick)
                            fprintf(stderr, "  %-5s %-12s n=%-3lld %-5s %9.2f us %7.0f GB/s %5.1f%% of copy\n", fmt_name(f),
                                    sname, (long long)n, path_name(paths[pi]), p.us, p.gbs, p.pct);
                        if (sweep && n <= 16)
                            fprintf(stderr, "  sweep %s %s n=%lld %s split %2d: %8.2f us %5.1f%%\n", fmt_name(f), sname,
                                    (long long)n, path_name(paths[pi]), splits[si], p.us, p.pct);
                    }
                if (chosen == QN_QUANT_PATH_MMVQ && n <= 8 && kq_mmvq_has_format(f)) {
                    /* the kernel alone, x quantized once (fp16 x itself for the formats that take it) */
                    const void *xin = dx;
                    if (!kq_mmvq_takes_f16_x(f)) {
                        if (kq_mmvq_quantize_x(dx, n, sh.K, xq, st) != QN_OK) {
                            fprintf(stderr, "  %s %s n=%lld: q8 quantizer failed\n", fmt_name(f), sname, (long long)n);
                            continue;
                        }
                        CK(cudaStreamSynchronize(st));
                        xin = xq;
                    }
                    for (int pdl = 0; pdl < (qc.sm >= 90 ? 2 : 1); pdl++) { /* PDL: sm_90 */
                        mk_ctx c = {&qc, f, w, rot, sh.N, sh.K, n, xin, dy, mmvq_stage, pdl};
                        qn_bench_stats s;
                        if (time_rotating(op_mmvq_kernel, &c, rot, st, quick, &s) != 0) {
                            fprintf(stderr, "  %s %s n=%lld mmvq kernel pdl %d: failed\n", fmt_name(f), sname,
                                    (long long)n, pdl);
                            continue;
                        }
                        const point p = make_point(&env, s, (double)wb + n * sh.K * 2.0 + n * sh.N * 4.0, sh, n);
                        if (n == 1) {
                            if (pdl) row.kpdl1 = p.us, row.kpdl_pct1 = p.pct;
                            else row.kern1 = p.us, row.kern_pct1 = p.pct;
                        }
                        if (js) {
                            fprintf(js, "{\"bench\":\"gpu_quant\",\"fmt\":\"%s\",\"N\":%lld,\"K\":%lld,\"n\":%lld,"
                                        "\"path\":\"%s\",\"chosen\":false,\"weight_bytes\":%zu,\"rot\":%d,\"us\":%.3f,"
                                        "\"us_min\":%.3f,\"us_max\":%.3f,\"gbs\":%.1f,\"pct_copy\":%.1f,\"tflops\":%.2f,",
                                    fmt_name(f), (long long)sh.N, (long long)sh.K, (long long)n,
                                    pdl ? "mmvq_kernel_pdl" : "mmvq_kernel", wb, rot, p.us, p.us_min, p.us_max, p.gbs,
                                    p.pct, p.tflops);
                            qn_bench_json_env(js, &env);
                            fprintf(js, "}\n");
                            fflush(js);
                        }
                    }
                }
            }
            for (int r = 0; r < rot; r++) cudaFree(w[r]);
            if (n_rows < 128) rows[n_rows++] = row;
        }
    }

    if (n_wanted(n_list, 1)) {
        printf("\nn = 1 (AUTO path; gemv: the tensor-core GEMV; kernel: the int8 kernel alone on q8 x quantized once, plain "
               "launches and a PDL chain)\n\n%-6s %-12s %-5s %9s %8s %9s %8s %7s %9s %8s %10s %9s %8s %9s %8s\n", "fmt",
               "NxK", "path", "us", "%copy", "gemv us", "%copy", "gain", "n=16 us", "16/1", "cuBLAS n=1", "kernel us",
               "%copy", "pdl us", "%copy");
        for (int i = 0; i < n_rows; i++) {
            const summary_row &r = rows[i];
            char sn[32];
            snprintf(sn, sizeof sn, "%lldx%lld", (long long)r.N, (long long)r.K);
            printf("%-6s %-12s %-5s %9.2f %7.1f%% %9.2f %7.1f%% %6.2fx %9.2f %8.2f %10.2f %9.2f %7.1f%% %9.2f %7.1f%%\n",
                   r.fmt, sn, path_name(r.p1), r.us1, r.pct1, r.gemv1, r.gemv_pct1,
                   r.us1 > 0 && r.gemv1 > 0 ? r.gemv1 / r.us1 : 0.0, r.us16, r.us1 > 0 && r.us16 > 0 ? r.us16 / r.us1 : 0.0,
                   r.cub1, r.kern1, r.kern_pct1, r.kpdl1, r.kpdl_pct1);
        }
    }
    printf("copy bandwidth %.0f GB/s (read+write), graph launch floor %.2f us, %s, commit %s\n", env.copy_gbs,
           env.launch_floor_us, env.gpu, env.commit);
    if (js && js != stdout) fclose(js);
    cudaFree(dx);
    cudaFree(dy);
    cudaFree(ws);
    cudaFree(xq);
    cublasDestroy(blas);
    cudaStreamDestroy(st);
    return 0;
}
