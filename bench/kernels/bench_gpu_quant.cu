/* bench_gpu_quant.cu — GGUF GPU matmul benchmark (kernels/quant/quant.h) beside cuBLAS fp16.
 * Every GPU format x Llama-3-8B projection shapes (N x K = 4096x4096, 1024x4096, 14336x4096,
 * 4096x14336, and the 128256x4096 LM head) x n = 1 .. 4096 tokens; each point on the path
 * qn_quant_select_path picks and, for the crossover, on the other candidate path; at n <= 16 the int8
 * MMVQ path and the tensor-core GEMV side by side (the summary compares them at n = 1). Times are CUDA-graph replays of back-to-back calls
 * over rotating weight copies (> 3x L2, so weights come from HBM), median of 15; GB/s counts the
 * minimum bytes (weights + x + y once), % is of the device-to-device copy bandwidth measured in the
 * same run. One JSON line per point (--json FILE, default stdout), a summary table at the end.
 * First, the dequant of the DEQUANT_CUBLAS path alone (qn_quant_dequant_cuda_variant, fast and the
 * previous staged kernel), per format x shape: GB/s of weights read + fp16 written, % of copy bandwidth,
 * outputs rotating too so that the writes reach HBM ("bench":"gpu_dequant"; --dequant-only stops there).
 * Usage: bench_gpu_quant [--fmt q4_K,...] [--n 1,16,...] [--shape 4096x4096,...] [--json FILE]
 *                        [--split-sweep] [--split-mode auto|workspace|cluster] [--quick] [--dequant-only] */
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
#include "kernels/quant/qformat.h"
#include "kernels/quant/quant.h"

#define CK(call)                                                                                  \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess) {                                                                  \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

static const qn_qformat FORMATS[] = {
    QN_QFORMAT_F16,  QN_QFORMAT_BF16, QN_QFORMAT_Q4_0, QN_QFORMAT_Q4_1, QN_QFORMAT_Q5_0, QN_QFORMAT_Q5_1,
    QN_QFORMAT_Q8_0, QN_QFORMAT_Q2_K, QN_QFORMAT_Q3_K, QN_QFORMAT_Q4_K, QN_QFORMAT_Q5_K, QN_QFORMAT_Q6_K,
};
struct shape { int64_t N, K; const char *name; };
static const shape SHAPES[] = {
    {4096, 4096, "q/o"}, {1024, 4096, "k/v"}, {14336, 4096, "gate/up"}, {4096, 14336, "down"},
    {128256, 4096, "lm_head"},
};
static const int64_t NS[] = {1, 2, 4, 8, 16, 32, 64, 128, 512, 4096};

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
    const size_t bb = (size_t)QN_QFORMATS[f].block_bytes;
    size_t off[2] = {0, 0};
    int n = 1;
    if (f == QN_QFORMAT_Q4_0) off[0] = offsetof(qn_block_q4_0, d);
    if (f == QN_QFORMAT_Q4_1) off[0] = offsetof(qn_block_q4_1, d), off[1] = offsetof(qn_block_q4_1, m), n = 2;
    if (f == QN_QFORMAT_Q5_0) off[0] = offsetof(qn_block_q5_0, d);
    if (f == QN_QFORMAT_Q5_1) off[0] = offsetof(qn_block_q5_1, d), off[1] = offsetof(qn_block_q5_1, m), n = 2;
    if (f == QN_QFORMAT_Q8_0) off[0] = offsetof(qn_block_q8_0, d);
    if (f == QN_QFORMAT_Q2_K) off[0] = offsetof(qn_block_q2_k, d), off[1] = offsetof(qn_block_q2_k, dmin), n = 2;
    if (f == QN_QFORMAT_Q3_K) off[0] = offsetof(qn_block_q3_k, d);
    if (f == QN_QFORMAT_Q4_K) off[0] = offsetof(qn_block_q4_k, d), off[1] = offsetof(qn_block_q4_k, dmin), n = 2;
    if (f == QN_QFORMAT_Q5_K) off[0] = offsetof(qn_block_q5_k, d), off[1] = offsetof(qn_block_q5_k, dmin), n = 2;
    if (f == QN_QFORMAT_Q6_K) off[0] = offsetof(qn_block_q6_k, d);
    for (size_t b = 0; b + bb <= bytes; b += bb)
        for (int i = 0; i < n; i++) {
            const uint16_t s = rnd_scale();
            memcpy(w + b + off[i], &s, 2);
        }
}

/* Rotating device copies of one random weight of `bytes` (qn_bench_rotations many, at most 256): w[0..rot). */
static int upload_rotations(const qn_bench_env *env, qn_qformat f, size_t bytes, void **w) {
    int rot = qn_bench_rotations(env, bytes);
    if (rot > 256) rot = 256;
    uint8_t *h = (uint8_t *)malloc(bytes);
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
    qn_qformat fmt;    /* F32 = cuBLAS fp16 baseline */
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

/* ops per graph: >= the rotation (L2-cold) and about 2 ms of work, 4..400 */
static int ops_for(int rot, double est_us) {
    int ops = (int)(2000.0 / (est_us > 1 ? est_us : 1));
    if (ops < 4) ops = 4;
    if (ops > 400) ops = 400;
    if (ops < rot) ops = rot;
    return ops;
}

static double estimate_us(op_ctx *c, qn_bench_op_fn fn, void *stream) {
    qn_bench_stats s;
    if (qn_bench_time_ops(fn, c, stream, c->rot < 4 ? 4 : c->rot, 1, 1, &s) != 0) return -1;
    return s.median_us;
}

static int time_op(op_ctx *c, qn_bench_op_fn fn, void *stream, qn_bench_stats *s) {
    const double est = estimate_us(c, fn, stream);
    if (est < 0) return -1;
    return qn_bench_time_ops(fn, c, stream, ops_for(c->rot, est), 2, 15, s);
}

static const char *path_name(qn_quant_path p) {
    return p == QN_QUANT_PATH_GEMV ? "gemv" : p == QN_QUANT_PATH_MMA ? "mma"
           : p == QN_QUANT_PATH_DEQUANT_CUBLAS ? "dequant_cublas" : p == QN_QUANT_PATH_MMVQ ? "mmvq" : "?";
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

struct summary_row { const char *fmt; int64_t N, K; double us1, pct1, us16, cub1, gemv1, gemv_pct1; qn_quant_path p1; };

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
        snprintf(sname, sizeof sname, "%lldx%lld", (long long)sh.N, (long long)sh.K);
        if (!in_list(shape_list, sname)) continue;
        const size_t ob = (size_t)(sh.N * sh.K) * 2;
        int rot_out = qn_bench_rotations(env, ob);
        if (rot_out > 256) rot_out = 256;
        void *out[256];
        for (int r = 0; r < rot_out; r++) CK(cudaMalloc(&out[r], ob));
        for (qn_qformat f : FORMATS) {
            if (!in_list(fmt_list, QN_QFORMATS[f].name)) continue;
            const size_t wb = (size_t)sh.N * qn_qformat_row_bytes(f, sh.K);
            void *w[256];
            const int rot = upload_rotations(env, f, wb, w);
            double us[2] = {-1, -1}, gbs[2] = {0, 0};
            for (int vi = 0; vi < 2; vi++) {
                dq_ctx c = {qc, f, w, out, rot, rot_out, sh.N, sh.K, vs[vi]};
                const int rmax = rot > rot_out ? rot : rot_out;
                qn_bench_stats s, e;
                if (qn_bench_time_ops(op_dequant, &c, st, rmax < 4 ? 4 : rmax, 1, 1, &e) != 0 ||
                    qn_bench_time_ops(op_dequant, &c, st, ops_for(rmax, e.median_us), 2, 15, &s) != 0) {
                    fprintf(stderr, "  dequant %s %s %s: failed\n", dequant_name(vs[vi]), QN_QFORMATS[f].name, sname);
                    continue;
                }
                us[vi] = s.median_us;
                gbs[vi] = ((double)wb + (double)ob) / s.median_us * 1e-3;
                fprintf(js, "{\"bench\":\"gpu_dequant\",\"fmt\":\"%s\",\"N\":%lld,\"K\":%lld,\"variant\":\"%s\","
                            "\"weight_bytes\":%zu,\"out_bytes\":%zu,\"rot\":%d,\"rot_out\":%d,\"us\":%.3f,"
                            "\"us_min\":%.3f,\"us_max\":%.3f,\"gbs\":%.1f,\"write_gbs\":%.1f,\"pct_copy\":%.1f,",
                        QN_QFORMATS[f].name, (long long)sh.N, (long long)sh.K, dequant_name(vs[vi]), wb, ob, rot,
                        rot_out, s.median_us, s.min_us, s.max_us, gbs[vi], (double)ob / s.median_us * 1e-3,
                        100.0 * gbs[vi] / env->copy_gbs);
                qn_bench_json_env(js, env);
                fprintf(js, "}\n");
                fflush(js);
            }
            fprintf(stderr, "%-6s %-12s %10.2f %8.0f %6.1f%% %10.2f %8.0f %6.2fx\n", QN_QFORMATS[f].name, sname, us[0],
                    gbs[0], 100.0 * gbs[0] / env->copy_gbs, us[1], gbs[1], us[0] > 0 && us[1] > 0 ? us[1] / us[0] : 0.0);
            for (int r = 0; r < rot; r++) cudaFree(w[r]);
        }
        for (int r = 0; r < rot_out; r++) cudaFree(out[r]);
    }
}

int main(int argc, char **argv) {
    const char *fmt_list = NULL, *n_list = NULL, *shape_list = NULL, *json_path = NULL;
    bool sweep = false, quick = false, dequant_only = false;
    qn_quant_split_mode split_mode = QN_QUANT_SPLIT_AUTO;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--fmt") && i + 1 < argc) fmt_list = argv[++i];
        else if (!strcmp(argv[i], "--n") && i + 1 < argc) n_list = argv[++i];
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) shape_list = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--split-sweep")) sweep = true;
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--dequant-only")) dequant_only = true;
        else if (!strcmp(argv[i], "--split-mode") && i + 1 < argc) {
            ++i;
            split_mode = !strcmp(argv[i], "cluster") ? QN_QUANT_SPLIT_CLUSTER
                         : !strcmp(argv[i], "workspace") ? QN_QUANT_SPLIT_WORKSPACE : QN_QUANT_SPLIT_AUTO;
        }
        else {
            fprintf(stderr, "usage: %s [--fmt LIST] [--n LIST] [--shape NxK,...] [--json FILE] [--split-sweep] [--quick] [--dequant-only]\n",
                    argv[0]);
            return 2;
        }
    }
    if (quick && !n_list) n_list = "1,16,64,512";
    FILE *js = json_path ? fopen(json_path, "w") : stdout;
    if (!js) return 1;

    qn_bench_env env;
    if (qn_bench_env_init(&env, 0) != 0) {
        fprintf(stderr, "bench_gpu_quant: no usable CUDA device\n");
        return 77;
    }
    fprintf(stderr, "%s sm_%d %d SMs L2 %.0f MB, clocks sm %d/%d MHz mem %d MHz, copy %.0f GB/s, graph floor %.2f us, commit %s\n",
            env.gpu, env.sm, env.n_sm, env.l2_bytes / 1048576.0, env.sm_clock_mhz, env.sm_clock_max_mhz,
            env.mem_clock_mhz, env.copy_gbs, env.launch_floor_us, env.commit);
    fprintf(js, "{\"bench\":\"gpu_quant_env\",");
    qn_bench_json_env(js, &env);
    fprintf(js, "}\n");

    cublasHandle_t blas;
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) return 1;
    qn_quant_cuda_ctx qc;
    if (qn_quant_cuda_ctx_init(&qc, 0, blas) != QN_OK) return 1;
    cudaStream_t st;
    CK(cudaStreamCreate(&st));

    bench_dequant(&env, &qc, st, js, fmt_list, shape_list);
    if (dequant_only) {
        if (js != stdout) fclose(js);
        cublasDestroy(blas);
        cudaStreamDestroy(st);
        return 0;
    }

    /* shared activations/outputs/workspace, sized for the largest point */
    int64_t nmax = 1, kmax = 0, Nmax = 0, NKmax = 0;
    for (size_t i = 0; i < sizeof NS / sizeof NS[0]; i++) {
        char b[16];
        snprintf(b, sizeof b, "%lld", (long long)NS[i]);
        if (in_list(n_list, b) && NS[i] > nmax) nmax = NS[i];
    }
    for (const shape &s : SHAPES)
        kmax = s.K > kmax ? s.K : kmax, Nmax = s.N > Nmax ? s.N : Nmax, NKmax = s.N * s.K > NKmax ? s.N * s.K : NKmax;
    void *dx, *ws;
    float *dy;
    /* workspace: the dequant+cuBLAS path's fp16 weights (the largest), or the q8 activations */
    const size_t x_bytes = (size_t)(nmax * kmax) * 2, ws_bytes = (size_t)NKmax * 2 + (size_t)(nmax * kmax) * 2 + (1 << 20);
    CK(cudaMalloc(&dx, x_bytes));
    CK(cudaMalloc((void **)&dy, (size_t)(nmax * Nmax) * 4));
    CK(cudaMalloc(&ws, ws_bytes));
    CK(cudaMemset(ws, 0, ws_bytes)); /* split-K counters start at zero (quant.h) */
    {
        uint16_t *hx = (uint16_t *)malloc(x_bytes);
        for (size_t i = 0; i < x_bytes / 2; i++) hx[i] = qn_f32_to_f16(rnd_normalish());
        CK(cudaMemcpy(dx, hx, x_bytes, cudaMemcpyHostToDevice));
        free(hx);
    }

    summary_row rows[64];
    int n_rows = 0;
    for (const shape &sh : SHAPES) {
        char sname[32];
        snprintf(sname, sizeof sname, "%lldx%lld", (long long)sh.N, (long long)sh.K);
        if (!in_list(shape_list, sname)) continue;

        /* cuBLAS fp16 baseline: fp16 W [N][K], rotating copies, per n */
        const size_t f16_bytes = (size_t)(sh.N * sh.K) * 2;
        void *w16[256];
        const int rot16 = upload_rotations(&env, QN_QFORMAT_F16, f16_bytes, w16);
        double cub_us[sizeof NS / sizeof NS[0]];
        for (size_t ni = 0; ni < sizeof NS / sizeof NS[0]; ni++) {
            char b[16];
            snprintf(b, sizeof b, "%lld", (long long)NS[ni]);
            cub_us[ni] = -1;
            if (!in_list(n_list, b)) continue;
            op_ctx c = {&qc, blas, QN_QFORMAT_F16, w16, rot16, sh.N, sh.K, NS[ni], dx, dy, NULL, 0, {}};
            qn_bench_stats s;
            if (time_op(&c, op_cublas, st, &s) == 0) cub_us[ni] = s.median_us;
            const double bytes = (double)f16_bytes + NS[ni] * sh.K * 2.0 + NS[ni] * sh.N * 4.0;
            fprintf(js, "{\"bench\":\"gpu_quant\",\"fmt\":\"cublas_f16\",\"N\":%lld,\"K\":%lld,\"n\":%lld,\"path\":\"cublas\","
                        "\"us\":%.3f,\"us_min\":%.3f,\"us_max\":%.3f,\"gbs\":%.1f,\"pct_copy\":%.1f,\"tflops\":%.2f,",
                    (long long)sh.N, (long long)sh.K, (long long)NS[ni], s.median_us, s.min_us, s.max_us,
                    bytes / s.median_us * 1e-3, 100.0 * bytes / s.median_us * 1e-3 / env.copy_gbs,
                    2.0 * sh.N * sh.K * NS[ni] / s.median_us * 1e-6);
            qn_bench_json_env(js, &env);
            fprintf(js, "}\n");
        }
        for (int r = 0; r < rot16; r++) cudaFree(w16[r]);

        for (qn_qformat f : FORMATS) {
            if (!in_list(fmt_list, QN_QFORMATS[f].name)) continue;
            const size_t wb = (size_t)sh.N * qn_qformat_row_bytes(f, sh.K);
            void *w[256];
            const int rot = upload_rotations(&env, f, wb, w);
            summary_row row = {QN_QFORMATS[f].name, sh.N, sh.K, -1, -1, -1, -1, -1, -1, QN_QUANT_PATH_NONE};
            for (size_t ni = 0; ni < sizeof NS / sizeof NS[0]; ni++) {
                const int64_t n = NS[ni];
                char b[16];
                snprintf(b, sizeof b, "%lld", (long long)n);
                if (!in_list(n_list, b)) continue;
                const qn_quant_path chosen = qn_quant_select_path(f, qc.sm, n);
                qn_quant_path paths[4];
                int np = 0;
                paths[np++] = chosen;
                /* decode: the int8 path beside the tensor-core GEMV */
                if (n <= 16 && chosen != QN_QUANT_PATH_GEMV) paths[np++] = QN_QUANT_PATH_GEMV;
                if (n <= 16 && chosen != QN_QUANT_PATH_MMVQ && qn_quant_mmvq_has_format(f)) paths[np++] = QN_QUANT_PATH_MMVQ;
                /* the crossover candidates beside the chosen path */
                if (n >= 32 && n <= 512 && chosen != QN_QUANT_PATH_MMA) paths[np++] = QN_QUANT_PATH_MMA;
                if (n >= 32 && chosen != QN_QUANT_PATH_DEQUANT_CUBLAS) paths[np++] = QN_QUANT_PATH_DEQUANT_CUBLAS;
                int splits[8] = {0};
                int n_split = 1;
                if (sweep && n <= 16) n_split = 6, splits[1] = 1, splits[2] = 2, splits[3] = 4, splits[4] = 8, splits[5] = 16;
                for (int pi = 0; pi < np; pi++)
                    for (int si = 0; si < (pi == 0 ? n_split : 1); si++) {
                        if (paths[pi] == QN_QUANT_PATH_MMVQ && splits[si] > 4) continue; /* warps per row: 1, 2, 4 */
                        op_ctx c = {&qc, blas, f, w, rot, sh.N, sh.K, n, dx, dy, ws, ws_bytes, {paths[pi], splits[si], split_mode}};
                        qn_bench_stats s;
                        if (time_op(&c, op_quant, st, &s) != 0) {
                            fprintf(stderr, "  %s %s n=%lld %s split %d: failed\n", QN_QFORMATS[f].name, sname,
                                    (long long)n, path_name(paths[pi]), splits[si]);
                            continue;
                        }
                        const double bytes = (double)wb + n * sh.K * 2.0 + n * sh.N * 4.0;
                        const double gbs = bytes / s.median_us * 1e-3;
                        fprintf(js, "{\"bench\":\"gpu_quant\",\"fmt\":\"%s\",\"N\":%lld,\"K\":%lld,\"n\":%lld,\"path\":\"%s\","
                                    "\"chosen\":%s,\"split\":%d,\"weight_bytes\":%zu,\"rot\":%d,\"us\":%.3f,\"us_min\":%.3f,"
                                    "\"us_max\":%.3f,\"gbs\":%.1f,\"pct_copy\":%.1f,\"tflops\":%.2f,\"cublas_us\":%.3f,"
                                    "\"vs_cublas\":%.3f,",
                                QN_QFORMATS[f].name, (long long)sh.N, (long long)sh.K, (long long)n, path_name(paths[pi]),
                                pi == 0 && splits[si] == 0 ? "true" : "false", splits[si], wb, rot, s.median_us, s.min_us,
                                s.max_us, gbs, 100.0 * gbs / env.copy_gbs, 2.0 * sh.N * sh.K * n / s.median_us * 1e-6,
                                cub_us[ni], cub_us[ni] > 0 ? cub_us[ni] / s.median_us : 0.0);
                        qn_bench_json_env(js, &env);
                        fprintf(js, "}\n");
                        fflush(js);
                        if (pi == 0 && splits[si] == 0) {
                            if (n == 1) row.us1 = s.median_us, row.pct1 = 100.0 * gbs / env.copy_gbs, row.cub1 = cub_us[ni];
                            if (n == 1) row.p1 = paths[pi];
                            if (n == 16) row.us16 = s.median_us;
                        }
                        if (n == 1 && paths[pi] == QN_QUANT_PATH_GEMV && splits[si] == 0)
                            row.gemv1 = s.median_us, row.gemv_pct1 = 100.0 * gbs / env.copy_gbs;
                        if (n <= 16 && splits[si] == 0)
                            fprintf(stderr, "  %-5s %-12s n=%-3lld %-5s %9.2f us %7.0f GB/s %5.1f%% of copy\n",
                                    QN_QFORMATS[f].name, sname, (long long)n, path_name(paths[pi]), s.median_us, gbs,
                                    100.0 * gbs / env.copy_gbs);
                        if (sweep && n <= 16)
                            fprintf(stderr, "  sweep %s %s n=%lld split %2d: %8.2f us %5.1f%%\n", QN_QFORMATS[f].name, sname,
                                    (long long)n, splits[si], s.median_us, 100.0 * gbs / env.copy_gbs);
                    }
            }
            for (int r = 0; r < rot; r++) cudaFree(w[r]);
            if (n_rows < 64) rows[n_rows++] = row;
        }
    }

    printf("\n%-6s %-12s %-5s %9s %8s %9s %8s %7s %9s %8s %10s\n", "fmt", "NxK", "n=1", "us", "%copy", "gemv us",
           "%copy", "gain", "n=16 us", "16/1", "cuBLAS n=1");
    for (int i = 0; i < n_rows; i++) {
        const summary_row &r = rows[i];
        char sn[32];
        snprintf(sn, sizeof sn, "%lldx%lld", (long long)r.N, (long long)r.K);
        printf("%-6s %-12s %-5s %9.2f %7.1f%% %9.2f %7.1f%% %6.2fx %9.2f %8.2f %10.2f\n", r.fmt, sn, path_name(r.p1),
               r.us1, r.pct1, r.gemv1, r.gemv_pct1, r.us1 > 0 && r.gemv1 > 0 ? r.gemv1 / r.us1 : 0.0, r.us16,
               r.us1 > 0 && r.us16 > 0 ? r.us16 / r.us1 : 0.0, r.cub1);
    }
    printf("copy bandwidth %.0f GB/s (read+write), graph launch floor %.2f us, %s, commit %s\n", env.copy_gbs,
           env.launch_floor_us, env.gpu, env.commit);
    if (js != stdout) fclose(js);
    cublasDestroy(blas);
    cudaStreamDestroy(st);
    return 0;
}
