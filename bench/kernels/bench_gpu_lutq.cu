/* bench_gpu_lutq.cu — GPTQ/AWQ/bnb device block formats (kernels/quant/lutq_gpu.h) on the GPU beside cuBLAS
 * fp16: LQ4 (GPTQ-4/AWQ), LQ4M (the same values in lq4m.h's layout, its own mma kernel), LQ8 (GPTQ-8), LNF4, LFP4,
 * LNF4M, LFP4M (NF4 / FP4 in lq4m.h's chunks, the same mma kernel with a table lookup),
 * LQ4/LQ4M/LQ8 also with act-order (x quantized through perm on the decode path, gathered first on the others), on
 * Llama-3-8B shapes (N x K = 4096x4096, 14336x4096, 4096x14336) at n = 1, 2, 4, 8, 16, 512 tokens. For
 * n <= 16 both decode paths run side by side, by explicit opts: "decode" (QN_QUANT_PATH_MMVQ: int8 for
 * LQ4/LQ8, the fp16 table GEMV for LNF4/LFP4; lutq_mmvq.cu) and "gemv" (tensor cores); "auto" marks
 * which one qn_lutq_matmul_cuda picks. n = 512: the AUTO path (dequant + cuBLAS; for the M forms also the
 * tensor-core GEMM, path TC, where it takes them: both side by side past the mma kernel's tokens). Times are
 * CUDA-graph replays of back-to-back calls over rotating weight copies (> 3x L2), median of 15, as bench_gpu_quant;
 * GB/s counts weight blocks (+ perm) + x + y once, % is of the device-to-device copy bandwidth of the same run. One
 * JSON line per point ("bench":"gpu_lutq"), a table on stderr.
 * The M forms run one path per n up to QN_LQ4M_MMA_MAX_TOKENS (AUTO: the mma kernel, or the tensor-core GEMM in
 * qn_lq4m_tc_auto's window), the GEMM and dequant + cuBLAS side by side beyond;
 * --split S forces their K split (A/B runs of lq4m_make_plan).
 * Activations are random (uniform in [-1, 1), fp16). Other n from 1, 2, 4, 8, 16, 32, 48, 64, 128, 256, 512, 1024,
 * 4096 by --n.
 * Usage: bench_gpu_lutq [--fmt lq4,lq4-act,...] [--n 1,2,4,8,16,512] [--split S] [--json FILE] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "bench.h"
#include "kernels/common/half.h"
#include "kernels/quant/lq4m.h"
#include "kernels/quant/lutq_gpu.h"
#include "kernels/quant/quant.h"

#define CK(call)                                                                                  \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess) {                                                                  \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

struct variant { const char *name; qn_qformat fmt; bool act; };
static const variant VARIANTS[] = {
    {"lq4", QN_QFORMAT_LQ4, false}, {"lq4-act", QN_QFORMAT_LQ4, true}, {"lq4m", QN_QFORMAT_LQ4M, false},
    {"lq4m-act", QN_QFORMAT_LQ4M, true}, {"lq8", QN_QFORMAT_LQ8, false},
    {"lq8-act", QN_QFORMAT_LQ8, true}, {"lnf4", QN_QFORMAT_LNF4, false}, {"lfp4", QN_QFORMAT_LFP4, false},
    {"lnf4m", QN_QFORMAT_LNF4M, false}, {"lfp4m", QN_QFORMAT_LFP4M, false},
    {"f16", QN_QFORMAT_F16, false}, /* the cuBLAS fp16 baseline */
};
struct shape { int64_t N, K; const char *name; };
static const shape SHAPES[] = {{4096, 4096, "q/o"}, {14336, 4096, "gate/up"}, {4096, 14336, "down"}};
static const int64_t NS[] = {1, 2, 4, 8, 16, 32, 48, 64, 128, 256, 512, 1024, 4096}; /* without --n: 1, 2, 4, 8, 16, 512 */

static uint64_t g_s = 0x2545F4914F6CDD1Dull;
static inline uint64_t rnd() {
    g_s ^= g_s << 13, g_s ^= g_s >> 7, g_s ^= g_s << 17;
    return g_s;
}
static float rnd_unit() { return (float)((rnd() >> 40) * (1.0 / 16777216.0)); }

/* random blocks: random codes, realistic scales (fp16 d in 2^[-10,-5], z in range; f32 absmax in [0.01, 0.1]) */
static void make_blocks(qn_qformat f, size_t bytes, uint8_t *w) {
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)rnd();
    if (f == QN_QFORMAT_F16) {
        uint16_t *h = (uint16_t *)w;
        for (size_t i = 0; i < bytes / 2; i++) h[i] = qn_f32_to_f16(0.05f * (rnd_unit() - 0.5f));
        return;
    }
    if (qn_lq4m_is_format(f)) { /* per chunk: 1024 code bytes, then 16 scale words d | (0x6400 + z) << 16 (LQ4M)
                                   * or two fp16 absmax (tables) */
        const bool lut = qn_lq4m_is_lut(f);
        for (size_t c = 0; c + QN_LQ4M_CHUNK_BYTES <= bytes; c += QN_LQ4M_CHUNK_BYTES)
            for (int r = 0; r < 16; r++) {
                const uint32_t d = qn_f32_to_f16(exp2f(-10.0f + 5.0f * rnd_unit()));
                const uint32_t sc = lut ? (uint32_t)qn_f32_to_f16(0.01f + 0.09f * rnd_unit()) |
                                              (uint32_t)qn_f32_to_f16(0.01f + 0.09f * rnd_unit()) << 16
                                        : d | (0x6400u + rnd() % 16) << 16;
                memcpy(w + c + 1024 + 4 * r, &sc, 4);
            }
        return;
    }
    const size_t bb = qn_lutq_gpu_block_bytes(f);
    for (size_t b = 0; b + bb <= bytes; b += bb) {
        if (f == QN_QFORMAT_LQ4 || f == QN_QFORMAT_LQ8) {
            const uint16_t d = qn_f32_to_f16(exp2f(-10.0f + 5.0f * rnd_unit()));
            const uint16_t zb = (uint16_t)(0x6400 + rnd() % (f == QN_QFORMAT_LQ8 ? 256 : 16));
            memcpy(w + b, &d, 2);
            memcpy(w + b + 2, &zb, 2);
        } else {
            const float a = 0.01f + 0.09f * rnd_unit();
            memcpy(w + b, &a, 4);
        }
    }
}

struct op_ctx {
    const qn_quant_cuda_ctx *qc;
    cublasHandle_t blas;
    qn_lutq_gpu_weight w[256]; /* rotating copies (blocks; perm shared) */
    int rot;
    int64_t n;
    qn_quant_path path; /* AUTO, GEMV or MMVQ (the decode path) */
    int split;          /* opts.split (--split; 0 auto) */
    int stage;          /* the decode kernel's weight loads (quant.h opts.mmvq_stage): 0 auto, 1 --mmvq-staged, -1 --mmvq-direct */
    const void *x;
    float *y;
    void *ws;
    size_t ws_bytes;
};

static int op_lutq(void *vctx, int i, void *stream) {
    op_ctx *c = (op_ctx *)vctx;
    const qn_quant_matmul_opts o = {c->path, c->split, QN_QUANT_SPLIT_AUTO, false, c->stage, 0};
    return qn_lutq_matmul_cuda_ex(c->qc, &c->w[i % c->rot], c->x, c->n, c->y, c->ws, c->ws_bytes, stream, &o) == QN_OK
               ? 0 : -1;
}

static int op_cublas(void *vctx, int i, void *stream) {
    op_ctx *c = (op_ctx *)vctx;
    const qn_lutq_gpu_weight *w = &c->w[i % c->rot];
    const float one = 1.f, zero = 0.f;
    if (cublasSetStream(c->blas, (cudaStream_t)stream) != CUBLAS_STATUS_SUCCESS) return -1;
    return cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w->n, (int)c->n, (int)w->k, &one, w->blocks, CUDA_R_16F,
                        (int)w->k, c->x, CUDA_R_16F, (int)w->k, &zero, c->y, CUDA_R_32F, (int)w->n, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS ? 0 : -1;
}

static bool in_list(const char *list, const char *item) {
    if (!list) return true;
    const size_t n = strlen(item);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, item, n)) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

static bool n_in_list(const char *list, int64_t n) {
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)n);
    return in_list(list, b);
}

int main(int argc, char **argv) {
    const char *fmt_list = NULL, *n_list = NULL, *json_path = NULL;
    int stage = 0, split = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--fmt") && i + 1 < argc) fmt_list = argv[++i];
        else if (!strcmp(argv[i], "--n") && i + 1 < argc) n_list = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--split") && i + 1 < argc) split = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mmvq-staged")) stage = 1;
        else if (!strcmp(argv[i], "--mmvq-direct")) stage = -1;
        else {
            fprintf(stderr, "usage: %s [--fmt lq4,lq4-act,lq8,lq8-act,lnf4,lfp4,f16] [--n 1,2,4,8,16,512] [--split S] [--json FILE]\n"
                            "          [--mmvq-staged|--mmvq-direct]  (decode path: weights all staged through shared memory, or all read directly; A/B runs)\n", argv[0]);
            return 2;
        }
    }
    FILE *js = json_path ? fopen(json_path, "w") : stdout;
    if (!js) return 1;
    qn_bench_env env;
    if (qn_bench_env_init(&env, 0) != 0) {
        fprintf(stderr, "bench_gpu_lutq: no usable CUDA device\n");
        return 77;
    }
    fprintf(stderr, "%s sm_%d %d SMs, copy %.0f GB/s, commit %s\n", env.gpu, env.sm, env.n_sm, env.copy_gbs, env.commit);
    fprintf(js, "{\"bench\":\"gpu_lutq_env\",");
    qn_bench_json_env(js, &env);
    fprintf(js, "}\n");
    cublasHandle_t blas;
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) return 1;
    qn_quant_cuda_ctx qc;
    if (qn_quant_cuda_ctx_init(&qc, 0, blas) != QN_OK) return 1;
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    fprintf(stderr, "%-8s %-8s %5s %-7s %10s %8s %7s\n", "format", "shape", "n", "path", "us", "GB/s", "%copy");

    for (const shape &sh : SHAPES)
        for (const variant &v : VARIANTS) {
            if (!in_list(fmt_list, v.name)) continue;
            const size_t wb = v.fmt == QN_QFORMAT_F16 ? 2 * (size_t)(sh.N * sh.K) : (size_t)sh.N * qn_qformat_row_bytes(v.fmt, sh.K);
            op_ctx *c = (op_ctx *)calloc(1, sizeof(op_ctx));
            c->qc = &qc, c->blas = blas, c->stage = stage, c->split = split;
            c->rot = qn_bench_rotations(&env, wb);
            if (c->rot > 256) c->rot = 256;
            uint8_t *h = (uint8_t *)malloc(wb);
            make_blocks(v.fmt, wb, h);
            int32_t *perm = NULL, *dperm = NULL;
            if (v.act) {
                perm = (int32_t *)malloc(sizeof(int32_t) * (size_t)sh.K);
                for (int64_t j = 0; j < sh.K; j++) perm[j] = (int32_t)j;
                for (int64_t j = sh.K - 1; j > 0; j--) {
                    const int64_t i = (int64_t)(rnd() % (uint64_t)(j + 1));
                    const int32_t t = perm[j];
                    perm[j] = perm[i], perm[i] = t;
                }
                CK(cudaMalloc((void **)&dperm, sizeof(int32_t) * (size_t)sh.K));
                CK(cudaMemcpy(dperm, perm, sizeof(int32_t) * (size_t)sh.K, cudaMemcpyHostToDevice));
            }
            for (int r = 0; r < c->rot; r++) {
                void *d;
                CK(cudaMalloc(&d, wb));
                CK(cudaMemcpy(d, h, wb, cudaMemcpyHostToDevice));
                c->w[r] = qn_lutq_gpu_weight{v.fmt, sh.N, sh.K, d, dperm};
            }
            free(h), free(perm);
            int64_t nmax = 1; /* the largest n of this run */
            for (int64_t n : NS)
                if (n_in_list(n_list ? n_list : "1,2,4,8,16,512", n)) nmax = n;
            void *x;
            CK(cudaMalloc(&x, 2 * (size_t)(nmax * sh.K)));
            { /* random activations (uniform in [-1, 1), fp16): the tensor cores' power, so the clocks, depend on the data */
                const size_t nx = (size_t)(nmax * sh.K);
                uint16_t *hx = (uint16_t *)malloc(2 * nx);
                for (size_t i = 0; i < nx; i++) hx[i] = qn_f32_to_f16(2.f * rnd_unit() - 1.f);
                CK(cudaMemcpy(x, hx, 2 * nx, cudaMemcpyHostToDevice));
                free(hx);
            }
            CK(cudaMalloc((void **)&c->y, sizeof(float) * (size_t)(nmax * sh.N)));
            c->x = x;
            for (int64_t n : NS) {
                if (!n_in_list(n_list ? n_list : "1,2,4,8,16,512", n)) continue;
                c->n = n;
                const bool lutq = v.fmt != QN_QFORMAT_F16;
                const bool m4 = qn_lq4m_is_format(v.fmt);
                const bool both = lutq && !m4 && n <= QN_QUANT_GEMV_MAX_TOKENS; /* decode and gemv side by side */
                /* the M forms past the mma kernel: the tensor-core GEMM beside dequant + cuBLAS where it takes them */
                const bool tc = m4 && n > QN_LQ4M_MMA_MAX_TOKENS && qn_lq4m_tc_takes(qc.sm, v.fmt, sh.N, sh.K);
                const bool tc_auto = m4 && qn_lq4m_tc_auto(n) && qn_lq4m_tc_takes(qc.sm, v.fmt, sh.N, sh.K);
                const qn_quant_path auto_path =
                    m4 ? (tc_auto ? QN_QUANT_PATH_TC
                          : n <= QN_LQ4M_MMA_MAX_TOKENS ? QN_QUANT_PATH_MMA : QN_QUANT_PATH_DEQUANT_CUBLAS)
                       : qn_lutq_use_decode(v.fmt, qc.sm, n) ? QN_QUANT_PATH_MMVQ
                                                             : qn_quant_select_path(v.fmt, qc.sm, n);
                const qn_quant_path paths[2] = {both ? QN_QUANT_PATH_MMVQ : tc ? QN_QUANT_PATH_TC : QN_QUANT_PATH_AUTO,
                                                tc ? QN_QUANT_PATH_DEQUANT_CUBLAS : QN_QUANT_PATH_GEMV};
                for (int pi = 0; pi < (both || tc ? 2 : 1); pi++) {
                    c->path = paths[pi];
                    c->ws_bytes = lutq ? qn_lutq_matmul_workspace_size_path(&qc, v.fmt, c->path, sh.N, sh.K, v.act, n) : 0;
                    if (m4 && split > 0) /* a forced split's partial tiles (at most 256 floats per strip and split) */
                        c->ws_bytes += 65536 + (size_t)(sh.N / 16) * (size_t)split * 256 * sizeof(float);
                    c->ws = NULL;
                    if (c->ws_bytes) {
                        CK(cudaMalloc(&c->ws, c->ws_bytes));
                        CK(cudaMemset(c->ws, 0, c->ws_bytes));
                    }
                    const qn_quant_path path = c->path == QN_QUANT_PATH_AUTO ? auto_path : c->path;
                    const char *pname = !lutq ? "cublas" : path == QN_QUANT_PATH_MMVQ ? "decode"
                                        : path == QN_QUANT_PATH_GEMV ? "gemv" : path == QN_QUANT_PATH_MMA ? "mma"
                                        : path == QN_QUANT_PATH_TC ? "tc" : "dq+blas";
                    char label[16];
                    snprintf(label, sizeof label, "%s%s", pname, lutq && path == auto_path && (both || tc) ? "*" : "");
                    qn_bench_op_fn fn = lutq ? op_lutq : op_cublas;
                    qn_bench_stats s0, s;
                    const int ok = qn_bench_time_ops(fn, c, st, c->rot < 4 ? 4 : c->rot, 1, 1, &s0) == 0 &&
                                   qn_bench_time_ops(fn, c, st, c->rot < 8 ? 8 : c->rot, 2, 15, &s) == 0;
                    if (!ok) {
                        fprintf(stderr, "  %s %s n=%lld %s: failed\n", v.name, sh.name, (long long)n, pname);
                        (void)cudaGetLastError();
                    } else {
                        const double bytes = (double)wb + (v.act ? 4.0 * (double)sh.K : 0) + 2.0 * (double)(n * sh.K) +
                                             4.0 * (double)(n * sh.N);
                        const double gbs = bytes / (s.median_us * 1e3);
                        fprintf(stderr, "%-8s %-8s %5lld %-7s %10.2f %8.0f %6.1f%%\n", v.name, sh.name, (long long)n,
                                label, s.median_us, gbs, 100.0 * gbs / env.copy_gbs);
                        fprintf(js, "{\"bench\":\"gpu_lutq\",\"fmt\":\"%s\",\"N\":%lld,\"K\":%lld,\"n\":%lld,\"path\":%d,"
                                    "\"path_name\":\"%s\",\"auto\":%s,\"us\":%.3f,\"gbs\":%.1f,\"pct_copy\":%.1f,"
                                    "\"bytes\":%.0f,\"commit\":\"%s\"}\n",
                                v.name, (long long)sh.N, (long long)sh.K, (long long)n, (int)path, pname,
                                path == auto_path ? "true" : "false", s.median_us, gbs, 100.0 * gbs / env.copy_gbs,
                                bytes, env.commit);
                    }
                    cudaFree(c->ws);
                }
            }
            for (int r = 0; r < c->rot; r++) cudaFree((void *)c->w[r].blocks);
            cudaFree(dperm), cudaFree(x), cudaFree(c->y);
            free(c);
        }
    if (js != stdout) fclose(js);
    cublasDestroy(blas);
    cudaStreamDestroy(st);
    return 0;
}
