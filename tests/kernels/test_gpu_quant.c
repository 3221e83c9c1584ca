/* test_gpu_quant.c — GGUF GPU matmul/dequant (kernels/quant/quant.h) against a double-precision CPU
 * reference: QN_QFORMATS[fmt].dequant_ref (exact fp32, formats.md §2.2), then double dot products.
 * Every format x odd shapes (N = 1, 3, 17, 118, 4100; K a multiple of the block but not of the
 * 256/128-element stage) x n = 1..100 over every path (gemv, fused mma, dequant + cuBLAS) and every
 * split-K cluster size. Outputs are poisoned (NaN) before each call, a guard past y must survive.
 * The dequant variants must write the same bits as their simpler twin, and the fused paths must see
 * the same fp16 weights as the dequant (one-hot activations read them out).
 * The path predicates run without a GPU; the GPU cases exit 77 (ctest: skipped) when there is none.
 * QN_TEST_QUICK=1 trims the cases (for compute-sanitizer runs).
 *
 * Tolerance: weights reach the tensor cores as fp16 (unit roundoff u = 2^-11), rounded once for
 * symmetric formats and up to three times (scale, min, value) for affine/K formats, so per output
 *   |got - ref| <= 8u * sum_k |w_k x_k| + 8u * max_k |w_k| * sqrt(sum_k x_k^2)
 * (the second term covers d*q - m cancellation), and NMSE <= 1e-5 per case of >= 64 outputs
 * (expected ~1e-7; a handful of outputs can be near zero by cancellation).
 *
 * The int8 path (MMVQ, n <= 8 under AUTO) rounds x to q8 blocks (kq_mmvq.h); its quantizer must write
 * the bits of its host twin qn_mmvq_quantize_x_ref, ties included. Its matmul is checked twice:
 *   - against the double dot product of the exact weights with the SAME q8 activations (d*q, from the
 *     host twin): integer block dots are exact, only ~4 f32 roundings per block term and the f32 sums
 *     remain, so |got - ref8| <= 2^-16 (sum_k |w_k xq_k| + max_k |w_k| * sum_k |xq_k|) (the second
 *     term covers the d*i + m*S cancellation of affine/K formats) and NMSE <= 1e-10 (expected ~1e-14);
 *   - against the fp16 reference above, with the bound of the activation rounding added:
 *     |x - d q| <= 0.50004 d per element (half a step, plus the f32 rounding of 127/amax and amax/127),
 *     so |got - ref| <= tol + 0.501 sum_k |w_k| d_block(k), NMSE <= 1e-3 (expected ~3e-5 for normal x).
 * F16/BF16 on the same kernel (float_mmvq.cu) take x in fp16 unrounded: every product is exact in f32 and the sums
 * are f32 chains a few dozen deep, so against the exact reference |got - ref| <= 2^-16 sum_k |w_k x_k| (~30 f32
 * roundings deep at K = 4100: 2^-19) and NMSE <= 1e-10. */
#include "harness.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "kernels/common/half.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/kq_frag.h"
#include "kernels/quant/gguf/kq_mmvq.h"
#include "kernels/quant/gguf/q3kp.h"
#include "kernels/quant/gguf/kq_tc.h"
#include "kernels/quant/gguf/q6kp.h"
#include "kernels/quant/gguf/q8_0p.h"
#include "kernels/quant/qformat.h"
#include "kernels/quant/quant.h"

#define U16 (1.0 / 2048.0) /* fp16 unit roundoff */

static int g_quick;

/* Q3_KP, Q6_KP, Q8_0P (gguf/q3kp.h, q6kp.h, q8_0p.h) are device-only, outside QN_QFORMATS: their block size and
 * reference dequantizer. */
static int fmt_block_elems(qn_qformat f) {
    return f == QN_QFORMAT_Q3_KP || f == QN_QFORMAT_Q6_KP || f == QN_QFORMAT_Q8_0P ? 256 : QN_QFORMATS[f].block_elems;
}
static qn_dequant_row_fn fmt_dequant_ref(qn_qformat f) {
    return f == QN_QFORMAT_Q6_KP   ? qn_dequant_row_q6kp_ref
           : f == QN_QFORMAT_Q3_KP ? qn_dequant_row_q3kp_ref
           : f == QN_QFORMAT_Q8_0P ? qn_dequant_row_q8_0p_ref
                                   : QN_QFORMATS[f].dequant_ref;
}

/* ------------------------------------------------------------------------------------------------
 * path predicates: no GPU needed */

static const qn_qformat GPU_FORMATS[] = {
    QN_QFORMAT_F16,  QN_QFORMAT_BF16, QN_QFORMAT_Q4_0, QN_QFORMAT_Q4_1, QN_QFORMAT_Q5_0, QN_QFORMAT_Q5_1,
    QN_QFORMAT_Q8_0, QN_QFORMAT_Q2_K, QN_QFORMAT_Q3_K, QN_QFORMAT_Q4_K, QN_QFORMAT_Q5_K, QN_QFORMAT_Q6_K,
    QN_QFORMAT_Q3_KP, QN_QFORMAT_Q6_KP, QN_QFORMAT_Q8_0P,
};
#define N_GPU_FORMATS (int)(sizeof GPU_FORMATS / sizeof GPU_FORMATS[0])

static void test_select_path(void **state) {
    (void)state;
    for (int f = 0; f < QN_QFORMAT_COUNT; f++) {
        bool listed = false;
        for (int i = 0; i < N_GPU_FORMATS; i++) listed |= GPU_FORMATS[i] == (qn_qformat)f;
        assert_int_equal(qn_quant_cuda_has_format((qn_qformat)f), listed);
    }
    assert_true(qn_quant_cuda_has_format(QN_QFORMAT_Q6_KP)); /* device-only, past QN_QFORMAT_COUNT */
    assert_true(qn_quant_cuda_has_format(QN_QFORMAT_Q8_0P));
    for (int i = 0; i < N_GPU_FORMATS; i++) {
        const qn_qformat f = GPU_FORMATS[i];
        const bool int8 = f != QN_QFORMAT_F16 && f != QN_QFORMAT_BF16; /* the q8 formats; F16/BF16 take fp16 x */
        assert_true(qn_quant_mmvq_has_format(f));
        assert_int_equal(qn_quant_mmvq_f16_x(f), !int8);
        for (int64_t n = 1; n <= QN_QUANT_GEMV_MAX_TOKENS; n++) {
            assert_true(qn_quant_use_gemv(f, 90, n));
            assert_true(qn_quant_use_gemv(f, 80, n));
            assert_false(qn_quant_use_mma(f, 90, n));
            const bool mmvq = n <= qn_quant_mmvq_auto_max_tokens(f);
            assert_int_equal(qn_quant_use_mmvq(f, 90, n), mmvq);
            assert_int_equal(qn_quant_select_path(f, 90, n), mmvq                        ? QN_QUANT_PATH_MMVQ
                                                             : qn_quant_cublas_direct(f) ? QN_QUANT_PATH_DEQUANT_CUBLAS
                                                                                         : QN_QUANT_PATH_GEMV);
            assert_int_equal(qn_quant_takes_q8_x(f, 90, n), mmvq && int8); /* fp16 x: no quantizer, no x_ready */
        }
        assert_false(qn_quant_use_mmvq(f, 90, 0));
        /* the measured choices (quant.h): the decode kernel at n = 1 for every format; Q2_K/Q3_K only there */
        assert_true(qn_quant_use_mmvq(f, 90, 1));
        if (f == QN_QFORMAT_Q2_K || f == QN_QFORMAT_Q3_K) assert_false(qn_quant_use_mmvq(f, 90, 2));
        assert_false(qn_quant_use_mmvq(f, 75, 1));
        assert_false(qn_quant_use_mmvq(f, 90, QN_QUANT_MMVQ_MAX_TOKENS + 1));
        assert_false(qn_quant_use_gemv(f, 75, 1)); /* no cp.async / m16n8k16 */
        assert_false(qn_quant_use_gemv(f, 90, 0));
        assert_false(qn_quant_use_gemv(f, 90, 17));
        assert_true(qn_quant_use_mma(f, 90, 17));
        assert_true(qn_quant_use_mma(f, 90, QN_QUANT_MMA_MAX_TOKENS));
        assert_int_equal(qn_quant_select_path(f, 90, QN_QUANT_MMA_MAX_TOKENS),
                         qn_quant_cublas_direct(f) ? QN_QUANT_PATH_DEQUANT_CUBLAS : QN_QUANT_PATH_MMA);
        assert_int_equal(qn_quant_select_path(f, 90, 128), QN_QUANT_PATH_DEQUANT_CUBLAS); /* measured: quant.h */
        assert_false(qn_quant_use_mma(f, 90, QN_QUANT_MMA_MAX_TOKENS + 1));
        assert_int_equal(qn_quant_select_path(f, 90, 4096), QN_QUANT_PATH_DEQUANT_CUBLAS);
        assert_int_equal(qn_quant_select_path(f, 70, 1), QN_QUANT_PATH_NONE);
        /* every n gets exactly one path (F16: cuBLAS on the weights past the decode kernel's n) */
        for (int64_t n = 1; n < 5000; n += 37) {
            const qn_quant_path sp = qn_quant_select_path(f, 90, n);
            if (qn_quant_use_mmvq(f, 90, n)) assert_int_equal(sp, QN_QUANT_PATH_MMVQ);
            else if (qn_quant_cublas_direct(f)) assert_int_equal(sp, QN_QUANT_PATH_DEQUANT_CUBLAS);
            else
                assert_int_equal((int)qn_quant_use_gemv(f, 90, n) + (int)qn_quant_use_mma(f, 90, n) +
                                     (int)(sp == QN_QUANT_PATH_DEQUANT_CUBLAS),
                                 1);
        }
        assert_int_equal(qn_quant_cublas_direct(f), f == QN_QFORMAT_F16);
    }
    const qn_qformat none[] = {QN_QFORMAT_F32, QN_QFORMAT_Q8_1, QN_QFORMAT_Q8_K};
    for (int i = 0; i < 3; i++) {
        assert_false(qn_quant_use_gemv(none[i], 90, 1));
        assert_false(qn_quant_use_mmvq(none[i], 90, 1));
        assert_int_equal(qn_quant_select_path(none[i], 90, 1), QN_QUANT_PATH_NONE);
    }
}

static void test_check_shape(void **state) {
    (void)state;
    assert_int_equal(qn_quant_check_shape(QN_QFORMAT_Q4_0, 3, 32 * 7), QN_OK);
    assert_int_equal(qn_quant_check_shape(QN_QFORMAT_Q4_0, 3, 48), QN_ERR_SHAPE);
    assert_int_equal(qn_quant_check_shape(QN_QFORMAT_Q4_K, 3, 256 * 3), QN_OK);
    assert_int_equal(qn_quant_check_shape(QN_QFORMAT_Q4_K, 3, 32 * 7), QN_ERR_SHAPE);
    assert_int_equal(qn_quant_check_shape(QN_QFORMAT_Q6_KP, 3, 256 * 3), QN_OK);
    assert_int_equal(qn_quant_check_shape(QN_QFORMAT_Q6_KP, 3, 32 * 7), QN_ERR_SHAPE);
    assert_int_equal(qn_quant_check_shape(QN_QFORMAT_Q8_0P, 3, 256 * 3), QN_OK);
    assert_int_equal(qn_quant_check_shape(QN_QFORMAT_Q8_0P, 3, 32 * 7), QN_ERR_SHAPE); /* Q8_0 takes it: 256 needed */
    assert_int_equal(qn_quant_check_shape(QN_QFORMAT_F16, 3, 32 * 7), QN_OK);
    assert_int_equal(qn_quant_check_shape(QN_QFORMAT_F16, 3, 40), QN_ERR_SHAPE);
    assert_int_equal(qn_quant_check_shape(QN_QFORMAT_Q8_1, 3, 32), QN_ERR_UNSUPPORTED);
    assert_int_equal(qn_quant_check_shape(QN_QFORMAT_F32, 3, 32), QN_ERR_UNSUPPORTED);
    const qn_quant_cuda_ctx ctx = {.device = 0, .sm = 90, .n_sm = 132};
    assert_int_equal(qn_quant_matmul_workspace_size(&ctx, QN_QFORMAT_Q8_1, QN_QUANT_PATH_AUTO, 4096, 4096, 1), 0);
    assert_true(qn_quant_matmul_workspace_size(&ctx, QN_QFORMAT_Q4_K, QN_QUANT_PATH_AUTO, 4096, 4096, 4096) >=
                (size_t)4096 * 4096 * 2);
    /* MMVQ: 64 KB of split-K counters, then n*K int8 codes and n*K/32 8-byte records */
    for (int64_t n = 1; n <= 8; n++)
        assert_true(qn_quant_matmul_workspace_size(&ctx, QN_QFORMAT_Q4_0, QN_QUANT_PATH_AUTO, 4096, 14336, n) >=
                    65536 + (size_t)n * 14336 + (size_t)n * 14336 / 32 * 8);
    assert_int_equal(qn_quant_matmul_workspace_size(&ctx, QN_QFORMAT_F16, QN_QUANT_PATH_MMVQ, 64, 64, 1), 0);
    assert_int_equal(qn_mmvq_x_bytes(3, 96), 512 + 3 * 3 * 8); /* 288 codes, padded to a multiple of 256 */
}

/* ------------------------------------------------------------------------------------------------
 * GPU cases */

#define CK(call)                                                                                  \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess) fail_msg("%s: %s", #call, cudaGetErrorString(e_));                 \
    } while (0)

typedef struct gpu_env {
    qn_quant_cuda_ctx ctx;
    cublasHandle_t blas;
    cudaStream_t stream;
} gpu_env;

static int gpu_setup(void **state) {
    gpu_env *e = calloc(1, sizeof *e);
    if (!e) return -1;
    if (cudaSetDevice(0) != cudaSuccess || cudaStreamCreate(&e->stream) != cudaSuccess) return -1;
    if (cublasCreate(&e->blas) != CUBLAS_STATUS_SUCCESS) return -1;
    if (qn_quant_cuda_ctx_init(&e->ctx, 0, e->blas) != QN_OK) return -1;
    fprintf(stderr, "test_gpu_quant: device sm_%d, %d SMs%s\n", e->ctx.sm, e->ctx.n_sm, g_quick ? ", quick" : "");
    *state = e;
    return 0;
}

static int gpu_teardown(void **state) {
    gpu_env *e = *state;
    if (e) {
        cublasDestroy(e->blas);
        cudaStreamDestroy(e->stream);
        free(e);
    }
    return 0;
}

/* finite, realistic fp16 scale: +-2^[-10, -5] with a random mantissa */
static uint16_t rand_scale(qn_rng *r) {
    const float mag = exp2f(qn_rng_uniform(r, -10.0f, -5.0f));
    return qn_f32_to_f16((qn_rng_u64(r) & 1) ? -mag : mag);
}

/* Random blocks: random bytes everywhere, then every fp16 scale field set by rand_scale. */
static void make_weights(qn_qformat fmt, int64_t N, int64_t K, qn_rng *r, uint8_t *w) {
    /* device-only formats: the file blocks the same rng state gives, repacked */
    if (fmt == QN_QFORMAT_Q3_KP || fmt == QN_QFORMAT_Q6_KP || fmt == QN_QFORMAT_Q8_0P) {
        const qn_qformat base = fmt == QN_QFORMAT_Q6_KP ? QN_QFORMAT_Q6_K : fmt == QN_QFORMAT_Q3_KP ? QN_QFORMAT_Q3_K
                                                                                                   : QN_QFORMAT_Q8_0;
        uint8_t *b = malloc((size_t)N * qn_qformat_row_bytes(base, K) + 1);
        assert_non_null(b);
        make_weights(base, N, K, r, b);
        assert_int_equal(fmt == QN_QFORMAT_Q6_KP   ? qn_q6kp_repack(b, w, N, K)
                         : fmt == QN_QFORMAT_Q3_KP ? qn_q3kp_repack(b, w, N, K)
                                                   : qn_q8_0p_repack(b, w, N, K), QN_OK);
        free(b);
        return;
    }
    const qn_qformat_traits *t = &QN_QFORMATS[fmt];
    const size_t bytes = (size_t)N * qn_qformat_row_bytes(fmt, K);
    const size_t nb = bytes / (size_t)t->block_bytes;
    if (fmt == QN_QFORMAT_F16 || fmt == QN_QFORMAT_BF16) {
        uint16_t *h = (uint16_t *)w;
        for (size_t i = 0; i < nb; i++) {
            const float v = 0.5f * qn_rng_normal(r);
            h[i] = fmt == QN_QFORMAT_F16 ? qn_f32_to_f16(v) : qn_f32_to_bf16(v);
        }
        return;
    }
    qn_rng_fill_bytes(r, w, bytes);
    size_t off[2] = {0, 0};
    int n_off = 1;
    switch (fmt) { /* offsets of the fp16 scale fields (gguf_blocks.h) */
    case QN_QFORMAT_Q4_0: off[0] = offsetof(qn_block_q4_0, d); break;
    case QN_QFORMAT_Q4_1: off[0] = offsetof(qn_block_q4_1, d); off[1] = offsetof(qn_block_q4_1, m); n_off = 2; break;
    case QN_QFORMAT_Q5_0: off[0] = offsetof(qn_block_q5_0, d); break;
    case QN_QFORMAT_Q5_1: off[0] = offsetof(qn_block_q5_1, d); off[1] = offsetof(qn_block_q5_1, m); n_off = 2; break;
    case QN_QFORMAT_Q8_0: off[0] = offsetof(qn_block_q8_0, d); break;
    case QN_QFORMAT_Q2_K: off[0] = offsetof(qn_block_q2_k, d); off[1] = offsetof(qn_block_q2_k, dmin); n_off = 2; break;
    case QN_QFORMAT_Q3_K: off[0] = offsetof(qn_block_q3_k, d); break;
    case QN_QFORMAT_Q4_K: off[0] = offsetof(qn_block_q4_k, d); off[1] = offsetof(qn_block_q4_k, dmin); n_off = 2; break;
    case QN_QFORMAT_Q5_K: off[0] = offsetof(qn_block_q5_k, d); off[1] = offsetof(qn_block_q5_k, dmin); n_off = 2; break;
    case QN_QFORMAT_Q6_K: off[0] = offsetof(qn_block_q6_k, d); break;
    default: fail_msg("no GPU format %d", (int)fmt);
    }
    for (size_t b = 0; b < nb; b++)
        for (int i = 0; i < n_off; i++) {
            const uint16_t s = rand_scale(r);
            memcpy(w + b * (size_t)t->block_bytes + off[i], &s, 2);
        }
}

/* One (format, N, K) problem: weights, activations for up to NMAX tokens, reference and bounds. */
typedef struct problem {
    qn_qformat fmt;
    int64_t N, K, nmax;
    size_t w_bytes;
    uint8_t *w;       /* host blocks */
    float *wref;      /* [N][K] dequant_ref */
    uint16_t *x;      /* [nmax][K] fp16 */
    double *yref;     /* [nmax][N] */
    double *tol;      /* [nmax][N] */
    double *yq8;      /* [nmax][N] the exact weights . the q8 activations (MMVQ reference) */
    double *tolq8;    /* [nmax][N] */
    double *tolx8;    /* [nmax][N] MMVQ against yref: tol + the activation rounding bound */
    double *tolf;     /* [nmax][N] MMVQ on fp16 x (F16/BF16) against yref: 2^-16 sum |w x| (exact products, f32 sums) */
    void *dw, *dx;    /* device copies */
    float *dy;        /* [nmax][N] + guard */
    void *dws;        /* workspace for DEQUANT_CUBLAS */
    size_t ws_bytes;
} problem;

#define GUARD 64

/* The MMVQ references of a problem whose wref and x are set: the host twin's q8 activations, then the
 * double dot products with the exact weights (yq8, tolq8) and the bound against yref (tolx8). */
static void problem_init_q8(problem *p) {
    const int64_t N = p->N, K = p->K, nb = K / QN_MMVQ_QK;
    int8_t *q = malloc((size_t)(p->nmax * K));
    qn_mmvq_xrec *rec = malloc(sizeof(qn_mmvq_xrec) * (size_t)(p->nmax * nb));
    double *xd = malloc(sizeof(double) * (size_t)K), *dk = malloc(sizeof(double) * (size_t)K);
    assert_true(q && rec && xd && dk);
    qn_mmvq_quantize_x_ref(p->x, p->nmax, K, q, rec);
    for (int64_t t = 0; t < p->nmax; t++) {
        double xa = 0;
        for (int64_t k = 0; k < K; k++) {
            dk[k] = rec[t * nb + k / QN_MMVQ_QK].d;
            xd[k] = dk[k] * (double)q[t * K + k]; /* exact: f32 d times an int8 */
            xa += fabs(xd[k]);
        }
        for (int64_t i = 0; i < N; i++) {
            const float *wr = p->wref + i * K;
            double s = 0, sa = 0, wmax = 0, qerr = 0;
            for (int64_t k = 0; k < K; k++) {
                s += (double)wr[k] * xd[k];
                sa += fabs((double)wr[k] * xd[k]);
                wmax = fmax(wmax, fabs(wr[k]));
                qerr += fabs(wr[k]) * dk[k];
            }
            p->yq8[t * N + i] = s;
            p->tolq8[t * N + i] = ldexp(sa + wmax * xa, -16) + 1e-30;
            p->tolx8[t * N + i] = p->tol[t * N + i] + 0.501 * qerr;
        }
    }
    free(q), free(rec), free(xd), free(dk);
}

static void problem_init(problem *p, gpu_env *e, qn_qformat fmt, int64_t N, int64_t K, int64_t nmax, uint64_t seed) {
    memset(p, 0, sizeof *p);
    p->fmt = fmt, p->N = N, p->K = K, p->nmax = nmax;
    qn_rng r;
    qn_rng_seed(&r, seed);
    p->w_bytes = (size_t)N * qn_qformat_row_bytes(fmt, K);
    p->w = malloc(p->w_bytes + 1);
    p->wref = malloc(sizeof(float) * (size_t)(N * K));
    p->x = malloc(2 * (size_t)(nmax * K));
    p->yref = malloc(sizeof(double) * (size_t)(nmax * N));
    p->tol = malloc(sizeof(double) * (size_t)(nmax * N));
    p->yq8 = malloc(sizeof(double) * (size_t)(nmax * N));
    p->tolq8 = malloc(sizeof(double) * (size_t)(nmax * N));
    p->tolx8 = malloc(sizeof(double) * (size_t)(nmax * N));
    p->tolf = malloc(sizeof(double) * (size_t)(nmax * N));
    assert_true(p->w && p->wref && p->x && p->yref && p->tol && p->yq8 && p->tolq8 && p->tolx8 && p->tolf);
    make_weights(fmt, N, K, &r, p->w);
    const size_t rb = qn_qformat_row_bytes(fmt, K);
    for (int64_t i = 0; i < N; i++) fmt_dequant_ref(fmt)(p->w + (size_t)i * rb, p->wref + i * K, K);
    for (int64_t i = 0; i < nmax * K; i++) p->x[i] = qn_f32_to_f16(qn_rng_normal(&r));

    double *xd = malloc(sizeof(double) * (size_t)K);
    assert_non_null(xd);
    for (int64_t t = 0; t < nmax; t++) {
        double x2 = 0;
        for (int64_t k = 0; k < K; k++) {
            xd[k] = qn_f16_to_f32(p->x[t * K + k]);
            x2 += xd[k] * xd[k];
        }
        for (int64_t i = 0; i < N; i++) {
            const float *wr = p->wref + i * K;
            double s = 0, sa = 0, wmax = 0;
            for (int64_t k = 0; k < K; k++) {
                const double v = (double)wr[k] * xd[k];
                s += v;
                sa += fabs(v);
                if (fabs(wr[k]) > wmax) wmax = fabs(wr[k]);
            }
            p->yref[t * N + i] = s;
            p->tol[t * N + i] = 8 * U16 * sa + 8 * U16 * wmax * sqrt(x2) + 1e-30;
            p->tolf[t * N + i] = ldexp(sa, -16) + 1e-30;
        }
    }
    free(xd);
    problem_init_q8(p);

    CK(cudaMalloc(&p->dw, p->w_bytes ? p->w_bytes : 16));
    CK(cudaMalloc(&p->dx, 2 * (size_t)(nmax * K)));
    CK(cudaMalloc((void **)&p->dy, sizeof(float) * (size_t)(nmax * N + GUARD)));
    CK(cudaMemcpy(p->dw, p->w, p->w_bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(p->dx, p->x, 2 * (size_t)(nmax * K), cudaMemcpyHostToDevice));
    /* one workspace for every path: the largest of the dequant+cuBLAS, split-K and q8 activation needs */
    p->ws_bytes = qn_quant_matmul_workspace_size(&e->ctx, fmt, QN_QUANT_PATH_DEQUANT_CUBLAS, N, K, nmax);
    const size_t ws_mma = qn_quant_matmul_workspace_size(&e->ctx, fmt, QN_QUANT_PATH_MMA, N, K, 64);
    const size_t ws_gemv = qn_quant_matmul_workspace_size(&e->ctx, fmt, QN_QUANT_PATH_GEMV, N, K, 16);
    if (ws_mma > p->ws_bytes) p->ws_bytes = ws_mma;
    if (ws_gemv > p->ws_bytes) p->ws_bytes = ws_gemv;
    const size_t ws_mmvq = qn_quant_matmul_workspace_size(&e->ctx, fmt, QN_QUANT_PATH_MMVQ, N, K, nmax);
    if (ws_mmvq > p->ws_bytes) p->ws_bytes = ws_mmvq;
    const size_t ws_tc = qn_quant_matmul_workspace_size(&e->ctx, fmt, QN_QUANT_PATH_TC, N, K, nmax); /* kq_tc.h */
    if (ws_tc > p->ws_bytes) p->ws_bytes = ws_tc;
    if (p->ws_bytes < 65536) p->ws_bytes = 65536; /* the counters check reads 64 KB (F16 may need none) */
    CK(cudaMalloc(&p->dws, p->ws_bytes));
    CK(cudaMemset(p->dws, 0, p->ws_bytes)); /* the split-K counters start at zero */
}

/* The split-K counters (first 64 KB of the workspace) must be back at zero after every call. */
static void check_counters_zero(problem *p) {
    uint32_t *c = malloc(65536);
    assert_non_null(c);
    CK(cudaMemcpy(c, p->dws, 65536, cudaMemcpyDeviceToHost));
    size_t nz = 0;
    for (size_t i = 0; i < 65536 / 4; i++) nz += c[i] != 0;
    free(c);
    if (nz) fail_msg("%s: %zu split-K counters left non-zero", qn_qformat_name(p->fmt), nz);
}

static void problem_free(problem *p) {
    free(p->w), free(p->wref), free(p->x), free(p->yref), free(p->tol);
    free(p->yq8), free(p->tolq8), free(p->tolx8), free(p->tolf);
    cudaFree(p->dw), cudaFree(p->dx), cudaFree(p->dy), cudaFree(p->dws);
}

static const char *path_name(qn_quant_path p) {
    return p == QN_QUANT_PATH_GEMV ? "gemv" : p == QN_QUANT_PATH_MMA ? "mma"
           : p == QN_QUANT_PATH_DEQUANT_CUBLAS ? "dequant+cublas" : p == QN_QUANT_PATH_MMVQ ? "mmvq"
           : p == QN_QUANT_PATH_TC ? "tc" : "auto";
}

/* Checks y [n][N] against ref within tol (per output) and nmse_max; 1 (after saying why) on failure. */
static int check_outputs(const char *what, const char *ref_name, const float *y, size_t ny, const double *ref,
                         const double *tol, double nmse_max) {
    size_t bad = 0;
    double num = 0, den = 0, worst = 0;
    for (size_t i = 0; i < ny; i++) {
        const double d = fabs((double)y[i] - ref[i]);
        if (!(d <= tol[i])) {
            if (bad++ < 5)
                fprintf(stderr, "  %s vs %s: y[%zu] got %.9g ref %.9g |d| %.3g tol %.3g\n", what, ref_name, i, y[i],
                        ref[i], d, tol[i]);
        }
        if (d / tol[i] > worst || d != d) worst = d / tol[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    const double nmse = den > 0 ? num / den : num;
    if (bad || (ny >= 64 && !(nmse <= nmse_max))) {
        fprintf(stderr, "  %s vs %s: %zu/%zu over tolerance, nmse %.3g (limit %.0e), worst |d|/tol %.3g\n", what,
                ref_name, bad, ny, nmse, nmse_max, worst);
        return 1;
    }
    return 0;
}

/* Runs y = x[:n] . W^T through `path` with `split` (TC on GGUF weights: in CTA tiles of `tile` tokens, 0 = the
 * default), checks against the reference: the fp16 one, and for MMVQ (asked for, or what AUTO picks) the q8 one
 * first. */
static float *run_case_tile(gpu_env *e, problem *p, int64_t n, qn_quant_path path, int split, qn_quant_split_mode mode,
                            int stage, int tile) {
    const size_t ny = (size_t)(n * p->N);
    float *y = malloc(sizeof(float) * (ny + GUARD));
    assert_non_null(y);
    CK(cudaMemset(p->dy, 0xFF, sizeof(float) * (size_t)(p->nmax * p->N + GUARD))); /* NaN poison */
    /* the q8 activations poisoned too (codes 127, scales 3.4e38): the quantizer rewrites them; a matmul that
     * read them before its PDL wait would see the poison, not the previous case's identical bits. (The stale
     * reads found on the H200 came through L1 from an earlier kernel of the engine's chain, which one launch
     * here does not build: test_gpu_decode_stage checks that end to end.) */
    qn_quant_q8_x q8;
    if (qn_quant_q8_x_in_workspace(p->dws, p->ws_bytes, n, p->K, &q8) &&
        (uint8_t *)q8.qs + qn_mmvq_x_bytes(n, p->K) <= (uint8_t *)p->dws + p->ws_bytes)
        CK(cudaMemsetAsync(q8.qs, 0x7F, qn_mmvq_x_bytes(n, p->K), e->stream));
    const qn_quant_matmul_opts o = {path, split, mode, false, stage, tile};
    const qn_status st = qn_quant_matmul_cuda_ex(&e->ctx, p->fmt, p->dw, p->N, p->K, p->dx, n, p->dy, p->dws,
                                                 p->ws_bytes, e->stream, &o);
    const qn_quant_path ran = path == QN_QUANT_PATH_AUTO ? qn_quant_select_path(p->fmt, e->ctx.sm, n) : path;
    char what[176];
    snprintf(what, sizeof what, "%s N=%lld K=%lld n=%lld %s%s%s split=%d tile=%d%s%s", qn_qformat_name(p->fmt),
             (long long)p->N, (long long)p->K, (long long)n, path_name(path), path == ran ? "" : "->",
             path == ran ? "" : path_name(ran), split, tile,
             mode == QN_QUANT_SPLIT_CLUSTER ? " cluster" : mode == QN_QUANT_SPLIT_WORKSPACE ? " workspace" : "",
             ran == QN_QUANT_PATH_MMVQ && stage > 0 && kq_mmvq_stages(p->fmt, p->K, n < 8 ? (int)n : 8) ? " staged" : "");
    if (st != QN_OK) fail_msg("%s: status %s", what, qn_status_str(st));
    CK(cudaStreamSynchronize(e->stream));
    CK(cudaGetLastError());
    CK(cudaMemcpy(y, p->dy, sizeof(float) * (ny + GUARD), cudaMemcpyDeviceToHost));

    int failed = 0;
    if (ran == QN_QUANT_PATH_MMVQ && qn_quant_mmvq_f16_x(p->fmt)) {
        failed |= check_outputs(what, "ref (fp16 x)", y, ny, p->yref, p->tolf, 1e-10);
    } else if (ran == QN_QUANT_PATH_MMVQ) {
        failed |= check_outputs(what, "q8 ref", y, ny, p->yq8, p->tolq8, 1e-10);
        failed |= check_outputs(what, "fp16 ref", y, ny, p->yref, p->tolx8, 1e-3);
    } else {
        failed |= check_outputs(what, "ref", y, ny, p->yref, p->tol, 1e-5);
    }
    size_t guard_hit = 0;
    for (size_t i = ny; i < ny + GUARD; i++) {
        uint32_t u;
        memcpy(&u, &y[i], 4);
        guard_hit += u != 0xFFFFFFFFu;
    }
    if (failed || guard_hit) fail_msg("%s: over tolerance (above) or %zu guard words written", what, guard_hit);
    return y;
}

static float *run_case_full(gpu_env *e, problem *p, int64_t n, qn_quant_path path, int split, qn_quant_split_mode mode,
                            int stage) {
    return run_case_tile(e, p, n, path, split, mode, stage, 0);
}

static void run_case_mode(gpu_env *e, problem *p, int64_t n, qn_quant_path path, int split, qn_quant_split_mode mode) {
    free(run_case_full(e, p, n, path, split, mode, 0));
}

static void run_case(gpu_env *e, problem *p, int64_t n, qn_quant_path path, int split) {
    run_case_mode(e, p, n, path, split, QN_QUANT_SPLIT_AUTO);
}

/* The int8 path with its weights read directly, staged through shared memory (where kq_mmvq_stages) and
 * staged in a persistent launch (where one warp takes a row): each against the references, and all
 * bit-identical (same arithmetic, same order). */
static void run_mmvq_case(gpu_env *e, problem *p, int64_t n, int split) {
    float *direct = run_case_full(e, p, n, QN_QUANT_PATH_MMVQ, split, QN_QUANT_SPLIT_AUTO, -1);
    for (int stage = 1; stage <= 2; stage++) {
        float *staged = run_case_full(e, p, n, QN_QUANT_PATH_MMVQ, split, QN_QUANT_SPLIT_AUTO, stage);
        if (memcmp(staged, direct, sizeof(float) * (size_t)(n * p->N)))
            fail_msg("%s N=%lld K=%lld n=%lld split=%d: %s and direct weight loads differ", qn_qformat_name(p->fmt),
                     (long long)p->N, (long long)p->K, (long long)n, split, stage == 1 ? "staged" : "persistent staged");
        free(staged);
    }
    free(direct);
}

static const int64_t NS_GEMV[] = {1, 2, 3, 8, 16};
static const int64_t NS_MMA[] = {17, 33, 64};
static const int64_t NS_MMVQ[] = {1, 2, 3, 4, 5, 8};

/* The int8 path on one problem: every instance (n = 1..8 per launch), more tokens than one launch, and
 * the warps-per-row choices (split = 1, 2, 4; 0 = the launcher's). F16/BF16 on fp16 x. */
static void run_mmvq(gpu_env *e, problem *p, bool all_splits) {
    if (!qn_quant_mmvq_has_format(p->fmt)) return;
    for (size_t i = 0; i < sizeof NS_MMVQ / sizeof NS_MMVQ[0]; i++) {
        if (NS_MMVQ[i] > p->nmax) continue;
        run_mmvq_case(e, p, NS_MMVQ[i], 0);
        for (int s = 1; all_splits && s <= 4; s *= 2) run_mmvq_case(e, p, NS_MMVQ[i], s);
    }
    if (p->nmax >= 33) run_mmvq_case(e, p, 33, 0); /* 8 + 8 + 8 + 8 + 1 */
    if (p->nmax >= 14) run_mmvq_case(e, p, 14, 2); /* 8 + 6 */
}

static void small_k(qn_qformat f, int64_t *ka, int64_t *kb) {
    const int be = fmt_block_elems(f);
    if (be == 256) *ka = 256 * 3, *kb = 256 * 5; /* not a multiple of a 2-stage split, 5 stages */
    else *ka = 32 * 7, *kb = 32 * 33;            /* 224: < one 256 stage; 1056: 4 stages + 32 */
}

static void run_format(void **state, qn_qformat fmt) {
    gpu_env *e = *state;
    int64_t ka, kb;
    small_k(fmt, &ka, &kb);
    problem p;
    uint64_t seed = 1000 + (uint64_t)fmt * 7919;

    if (g_quick) {
        problem_init(&p, e, fmt, 3, ka, 100, seed++);
        run_case(e, &p, 1, QN_QUANT_PATH_AUTO, 0);
        run_case(e, &p, 16, QN_QUANT_PATH_AUTO, 0);
        run_case(e, &p, 100, QN_QUANT_PATH_MMA, 0);
        run_case(e, &p, 100, QN_QUANT_PATH_DEQUANT_CUBLAS, 0);
        problem_free(&p);
        problem_init(&p, e, fmt, 118, kb, 33, seed++);
        run_case(e, &p, 3, QN_QUANT_PATH_AUTO, 0);
        run_case(e, &p, 3, QN_QUANT_PATH_GEMV, 0);
        run_case(e, &p, 16, QN_QUANT_PATH_GEMV, 0); /* QN_KQ_FRAG: Q4_K's kq_frag on two strips a CTA */
        run_case(e, &p, 33, QN_QUANT_PATH_AUTO, 0);
        run_mmvq(e, &p, false);
        for (int s = 2; s <= 16; s *= 4) {
            run_case_mode(e, &p, 3, QN_QUANT_PATH_GEMV, s, QN_QUANT_SPLIT_WORKSPACE);
            if (e->ctx.sm >= 90) run_case_mode(e, &p, 3, QN_QUANT_PATH_GEMV, s, QN_QUANT_SPLIT_CLUSTER);
        }
        check_counters_zero(&p);
        problem_free(&p);
        return;
    }

    const int64_t Ns[] = {1, 3, 17, 118};
    const int64_t Ks[] = {ka, kb};
    for (int ni = 0; ni < 4; ni++)
        for (int ki = 0; ki < 2; ki++) {
            problem_init(&p, e, fmt, Ns[ni], Ks[ki], 100, seed++);
            for (size_t i = 0; i < sizeof NS_GEMV / sizeof NS_GEMV[0]; i++) {
                run_case(e, &p, NS_GEMV[i], QN_QUANT_PATH_AUTO, 0); /* MMVQ for n <= 8 (int8 formats) */
                run_case(e, &p, NS_GEMV[i], QN_QUANT_PATH_GEMV, 0);
            }
            run_mmvq(e, &p, ni == 3); /* every warps-per-row choice on N = 118 */
            for (size_t i = 0; i < sizeof NS_MMA / sizeof NS_MMA[0]; i++)
                run_case(e, &p, NS_MMA[i], QN_QUANT_PATH_AUTO, 0);
            run_case(e, &p, 100, QN_QUANT_PATH_AUTO, 0);            /* dequant + cuBLAS */
            run_case(e, &p, 100, QN_QUANT_PATH_MMA, 0);             /* 64 + 36 tokens */
            run_case(e, &p, 33, QN_QUANT_PATH_GEMV, 0);             /* 16 + 16 + 1 */
            run_case(e, &p, 5, QN_QUANT_PATH_DEQUANT_CUBLAS, 0);
            problem_free(&p);
        }
    /* split-K: every cluster size, including ones the K range caps (5 stages: 5 CTAs, uneven rows) */
    problem_init(&p, e, fmt, 118, kb, 33, seed++);
    for (int s = 1; s <= 16; s *= 2)
        for (int m = QN_QUANT_SPLIT_WORKSPACE; m <= QN_QUANT_SPLIT_CLUSTER; m++) {
            if (m == QN_QUANT_SPLIT_CLUSTER && e->ctx.sm < 90) continue;
            run_case_mode(e, &p, 3, QN_QUANT_PATH_GEMV, s, (qn_quant_split_mode)m);
            run_case_mode(e, &p, 16, QN_QUANT_PATH_GEMV, s, (qn_quant_split_mode)m);
            run_case_mode(e, &p, 33, QN_QUANT_PATH_MMA, s, (qn_quant_split_mode)m);
        }
    check_counters_zero(&p);
    problem_free(&p);
    /* a partial 33rd row tile, full grid */
    problem_init(&p, e, fmt, 4100, ka, 64, seed++);
    run_case(e, &p, 1, QN_QUANT_PATH_AUTO, 0);
    run_case(e, &p, 8, QN_QUANT_PATH_AUTO, 0);
    run_case(e, &p, 1, QN_QUANT_PATH_GEMV, 0);
    run_case(e, &p, 16, QN_QUANT_PATH_AUTO, 0);
    run_case(e, &p, 64, QN_QUANT_PATH_AUTO, 0);
    check_counters_zero(&p);
    problem_free(&p);
    /* a long row: every warps-per-row choice loops over units (14336 / 32 = 448 per row); rows of a
     * multiple of 16 bytes for every int8 format, so the staged kernel runs (Q3_K: 3.5 chunks per row) */
    problem_init(&p, e, fmt, 37, 14336, 8, seed++);
    if (qn_quant_mmvq_has_format(fmt)) assert_true(kq_mmvq_stages(fmt, 14336, 1));
    run_mmvq(e, &p, true);
    run_case(e, &p, 2, QN_QUANT_PATH_GEMV, 0);
    check_counters_zero(&p);
    problem_free(&p);
    /* staged rows that end in a partial chunk for the legacy formats and Q4_K/Q5_K (1280 = 40 legacy units,
     * 20 K-quant units); Q2_K/Q3_K/Q6_K read directly (5 blocks of 84, 110, 210 bytes: rows not 16-aligned) */
    problem_init(&p, e, fmt, 118, 1280, 8, seed++);
    if (qn_quant_mmvq_has_format(fmt))
        assert_int_equal(kq_mmvq_stages(fmt, 1280, 1),
                         fmt != QN_QFORMAT_Q6_K && fmt != QN_QFORMAT_Q3_K && fmt != QN_QFORMAT_Q2_K);
    run_mmvq(e, &p, true);
    problem_free(&p);
}

#define FORMAT_TEST(F) \
    static void test_matmul_##F(void **state) { run_format(state, QN_QFORMAT_##F); }
FORMAT_TEST(F16)
FORMAT_TEST(BF16)
FORMAT_TEST(Q4_0)
FORMAT_TEST(Q4_1)
FORMAT_TEST(Q5_0)
FORMAT_TEST(Q5_1)
FORMAT_TEST(Q8_0)
FORMAT_TEST(Q2_K)
FORMAT_TEST(Q3_K)
FORMAT_TEST(Q4_K)
FORMAT_TEST(Q5_K)
FORMAT_TEST(Q6_K)
FORMAT_TEST(Q6_KP)
FORMAT_TEST(Q3_KP)
FORMAT_TEST(Q8_0P)

/* The fused kernels see the very weights the dequant writes: with one-hot activations (token t = e_{c+t})
 * the mma and gemv paths return y[t][r] = W[r][c+t] exactly (1 * w plus zeros, f32 accumulation), so
 * their fp16 weights can be read out and compared with the dequant's w16 [N][K], column block by column
 * block (64 tokens on the mma path, 16 on the gemv path). Values compare as floats (+0 == -0).
 * Returns the number of weights that differ. */
static size_t check_fused_weights(gpu_env *e, problem *p, const uint16_t *w16) {
    const int64_t N = p->N, K = p->K;
    uint16_t *onehot = calloc((size_t)(64 * K), 2);
    float *y = malloc(sizeof(float) * (size_t)(64 * N));
    void *dx1;
    assert_true(onehot && y && p->nmax >= 64);
    CK(cudaMalloc(&dx1, 2 * (size_t)(64 * K)));
    size_t bad = 0;
    for (int pi = 0; pi < 2; pi++) {
        const qn_quant_path path = pi == 0 ? QN_QUANT_PATH_MMA : QN_QUANT_PATH_GEMV;
        const int64_t nt = pi == 0 ? 64 : 16;
        for (int64_t c = 0; c < K; c += nt) {
            const int64_t n = K - c < nt ? K - c : nt;
            memset(onehot, 0, 2 * (size_t)(n * K));
            for (int64_t t = 0; t < n; t++) onehot[t * K + c + t] = 0x3C00; /* fp16 1.0 */
            CK(cudaMemcpy(dx1, onehot, 2 * (size_t)(n * K), cudaMemcpyHostToDevice));
            const qn_quant_matmul_opts o = {path, 0, QN_QUANT_SPLIT_AUTO, false, 0, 0};
            assert_int_equal(qn_quant_matmul_cuda_ex(&e->ctx, p->fmt, p->dw, N, K, dx1, n, p->dy, p->dws, p->ws_bytes,
                                                     e->stream, &o),
                             QN_OK);
            CK(cudaStreamSynchronize(e->stream));
            CK(cudaMemcpy(y, p->dy, sizeof(float) * (size_t)(n * N), cudaMemcpyDeviceToHost));
            for (int64_t t = 0; t < n; t++)
                for (int64_t i = 0; i < N; i++) {
                    const float got = y[t * N + i], want = qn_f16_to_f32(w16[i * K + c + t]);
                    if (!(got == want) && bad++ < 5)
                        fprintf(stderr, "  %s %s W[%lld][%lld]: fused %.9g, dequant %.9g\n", qn_qformat_name(p->fmt),
                                path_name(path), (long long)i, (long long)(c + t), got, want);
                }
        }
    }
    cudaFree(dx1);
    free(y), free(onehot);
    return bad;
}

/* Dequant to fp16 vs fp16(ref): |got - ref| <= 4u (|ref| + max |ref| of its block); symmetric
 * formats round once, so they must match fp16(ref) to the bit except where ties differ. Then the
 * fused paths must see exactly the dequant's weights (check_fused_weights). */
static void test_dequant(void **state) {
    gpu_env *e = *state;
    for (int fi = 0; fi < N_GPU_FORMATS; fi++) {
        const qn_qformat fmt = GPU_FORMATS[fi];
        int64_t ka, kb;
        small_k(fmt, &ka, &kb);
        const int64_t N = g_quick ? 17 : 131, K = kb;
        problem p;
        problem_init(&p, e, fmt, N, K, 64, 77 + (uint64_t)fi);
        uint16_t *dout, *out = malloc(2 * (size_t)(N * K));
        assert_non_null(out);
        CK(cudaMalloc((void **)&dout, 2 * (size_t)(N * K)));
        CK(cudaMemset(dout, 0xFF, 2 * (size_t)(N * K)));
        assert_int_equal(qn_quant_dequant_cuda(&e->ctx, fmt, p.dw, N, K, dout, e->stream), QN_OK);
        CK(cudaStreamSynchronize(e->stream));
        CK(cudaMemcpy(out, dout, 2 * (size_t)(N * K), cudaMemcpyDeviceToHost));
        const int be = fmt_block_elems(fmt);
        size_t bad = 0;
        for (int64_t i = 0; i < N * K; i += be) {
            double bmax = 0;
            for (int j = 0; j < be; j++) bmax = fmax(bmax, fabs(p.wref[i + j]));
            for (int j = 0; j < be; j++) {
                const double ref = p.wref[i + j], got = qn_f16_to_f32(out[i + j]);
                const double tol = 4 * U16 * (fabs(ref) + (be > 1 ? bmax : 0)) + 1e-7;
                if (!(fabs(got - ref) <= tol) && bad++ < 5)
                    fprintf(stderr, "  dequant %s [%lld][%lld]: got %.8g ref %.8g\n", qn_qformat_name(fmt),
                            (long long)((i + j) / K), (long long)((i + j) % K), got, ref);
            }
        }
        const size_t bad_fused = check_fused_weights(e, &p, out);
        cudaFree(dout);
        free(out);
        problem_free(&p);
        if (bad) fail_msg("dequant %s: %zu bad elements", qn_qformat_name(fmt), bad);
        if (bad_fused) fail_msg("%s: %zu weights differ between the fused paths and the dequant", qn_qformat_name(fmt),
                                bad_fused);
    }
}

/* Copies `bytes` of device memory to a new host buffer. */
static uint16_t *fetch(const void *d, size_t bytes) {
    uint16_t *h = malloc(bytes ? bytes : 1);
    assert_non_null(h);
    CK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
    return h;
}

/* The dequant variants write the same bits: FAST (what qn_quant_dequant_cuda runs) and STAGED (the
 * previous path) against REF, the simpler twin, on random blocks. Shapes: tiles of 2048 weights cut
 * short (N*K/32 not a multiple of 64, weight bytes not a multiple of 16: the copy of the buffer's last
 * partial word) and, unless quick, one large enough for warps of the persistent grid to take more
 * than one tile (4100 x 4096 > 132 SMs x 4 CTAs x 8 warps x 2048 weights). Outputs are poisoned
 * (0xFFFF, a NaN no finite weight decodes to) and a guard past them must survive. */
static void test_dequant_variants(void **state) {
    gpu_env *e = *state;
    const qn_quant_dequant_variant vs[] = {QN_QUANT_DEQUANT_REF, QN_QUANT_DEQUANT_FAST, QN_QUANT_DEQUANT_STAGED};
    const char *vname[] = {"ref", "fast", "staged"};
    for (int fi = 0; fi < N_GPU_FORMATS; fi++) {
        const qn_qformat fmt = GPU_FORMATS[fi];
        int64_t ka, kb;
        small_k(fmt, &ka, &kb);
        const int64_t shapes[][2] = {{1, ka}, {3, kb}, {17, ka}, {131, kb}, {4100, 4096}};
        const int n_shapes = g_quick ? 4 : 5;
        for (int si = 0; si < n_shapes; si++) {
            const int64_t N = shapes[si][0], K = shapes[si][1];
            const size_t wb = (size_t)N * qn_qformat_row_bytes(fmt, K), ob = 2 * (size_t)(N * K), gb = 256;
            qn_rng r;
            qn_rng_seed(&r, 4242 + 31 * (uint64_t)fi + (uint64_t)si);
            uint8_t *w = malloc(wb);
            assert_non_null(w);
            make_weights(fmt, N, K, &r, w);
            void *dw;
            uint16_t *dout[3], *out[3];
            CK(cudaMalloc(&dw, wb)); /* exact size: memcheck sees any read past the last block */
            CK(cudaMemcpy(dw, w, wb, cudaMemcpyHostToDevice));
            for (int v = 0; v < 3; v++) {
                CK(cudaMalloc((void **)&dout[v], ob + gb));
                CK(cudaMemset(dout[v], 0xFF, ob + gb));
                const qn_status st = qn_quant_dequant_cuda_variant(&e->ctx, fmt, dw, N, K, dout[v], e->stream, vs[v]);
                if (st != QN_OK) fail_msg("dequant %s %s N=%lld K=%lld: status %s", vname[v], qn_qformat_name(fmt),
                                          (long long)N, (long long)K, qn_status_str(st));
            }
            CK(cudaStreamSynchronize(e->stream));
            CK(cudaGetLastError());
            for (int v = 0; v < 3; v++) out[v] = fetch(dout[v], ob + gb);
            for (int v = 0; v < 3; v++) {
                size_t bad = 0, guard_hit = 0;
                for (size_t i = 0; i < ob / 2; i++)
                    if (out[v][i] != out[0][i] || out[v][i] == 0xFFFFu) {
                        if (bad++ < 5)
                            fprintf(stderr, "  dequant %s %s N=%lld K=%lld [%zu][%zu]: %04x, ref %04x\n", vname[v],
                                    qn_qformat_name(fmt), (long long)N, (long long)K, i / (size_t)K, i % (size_t)K,
                                    out[v][i], out[0][i]);
                    }
                for (size_t i = ob / 2; i < (ob + gb) / 2; i++) guard_hit += out[v][i] != 0xFFFFu;
                if (bad || guard_hit)
                    fail_msg("dequant %s %s N=%lld K=%lld: %zu elements differ from ref (or unwritten), %zu guard "
                             "words written", vname[v], qn_qformat_name(fmt), (long long)N, (long long)K, bad,
                             guard_hit);
            }
            for (int v = 0; v < 3; v++) free(out[v]), cudaFree(dout[v]);
            cudaFree(dw);
            free(w);
        }
    }
}

/* The q8 activation quantizer writes the bits of its host twin (kq_mmvq.h): normal x, an all-zero
 * block (d = 0), fp16 subnormals, and a block with amax 127 (inv = 1 exactly) holding +-k.5 ties,
 * which half-to-even rounds down or up (2.5 -> 2, 3.5 -> 4); the buffer is poisoned first. Then the
 * act-order form (kq_mmvq_quantize_x_perm) against the twin of x gathered on the host through a random
 * permutation: a wrong index moves codes between blocks and changes their scales. */
static void test_mmvq_quantize(void **state) {
    gpu_env *e = *state;
    const int64_t shapes[][2] = {{1, 32}, {3, 224}, {8, 4096}, {5, 14336}};
    for (int si = 0; si < 8; si++) {
        const bool permuted = si >= 4;
        const int64_t n = shapes[si % 4][0], K = shapes[si % 4][1];
        const size_t xb = 2 * (size_t)(n * K), qb = qn_mmvq_x_bytes(n, K);
        qn_rng r;
        qn_rng_seed(&r, 99 + (uint64_t)si);
        uint16_t *x = malloc(xb);
        uint8_t *want = malloc(qb), *got = malloc(qb);
        assert_true(x && want && got);
        for (int64_t i = 0; i < n * K; i++) x[i] = qn_f32_to_f16(3.0f * qn_rng_normal(&r));
        if (K >= 224) {
            for (int i = 0; i < 32; i++) x[32 + i] = 0;                                /* block 1: zeros */
            for (int i = 0; i < 32; i++) x[64 + i] = (uint16_t)(i + 1) | (i & 1 ? 0x8000u : 0u); /* subnormals */
            for (int i = 0; i < 32; i++) {                                            /* block 3: ties */
                const float v = i == 0 ? 127.0f : (float)(i % 8) + 0.5f;
                x[96 + i] = qn_f32_to_f16(i & 2 ? -v : v);
            }
        }
        memset(want, 0xFF, qb); /* the padding between qs and rec stays as poisoned on both sides */
        int32_t *perm = NULL;
        uint16_t *xg = x;
        if (permuted) { /* a random permutation, and x gathered through it on the host */
            perm = malloc(sizeof(int32_t) * (size_t)K);
            xg = malloc(xb);
            assert_true(perm && xg);
            qn_rng_permutation(&r, perm, K);
            for (int64_t t = 0; t < n; t++)
                for (int64_t j = 0; j < K; j++) xg[t * K + j] = x[t * K + perm[j]];
        }
        qn_mmvq_quantize_x_ref(xg, n, K, (int8_t *)want, (qn_mmvq_xrec *)(want + qn_mmvq_x_rec_offset(n, K)));
        if (K >= 224 && !permuted) { /* the twin itself: ties to even, zero block */
            const int8_t *q3 = (const int8_t *)want + 96;
            assert_int_equal(q3[1], 2);  /* 1.5 -> 2 */
            assert_int_equal(q3[2], -2); /* -2.5 -> -2 */
            assert_int_equal(q3[3], -4); /* -3.5 -> -4 */
            assert_int_equal(q3[4], 4);  /* 4.5 -> 4 */
            const qn_mmvq_xrec *r1 = (const qn_mmvq_xrec *)(want + qn_mmvq_x_rec_offset(n, K)) + 1;
            assert_true(r1->d == 0.0f && r1->s0 == 0 && r1->s1 == 0);
        }
        void *dx, *dq;
        CK(cudaMalloc(&dx, xb));
        CK(cudaMalloc(&dq, qb + 64));
        CK(cudaMemcpy(dx, x, xb, cudaMemcpyHostToDevice));
        CK(cudaMemset(dq, 0xFF, qb + 64)); /* poison + a guard behind */
        int32_t *dp = NULL;
        if (permuted) {
            CK(cudaMalloc((void **)&dp, sizeof(int32_t) * (size_t)K));
            CK(cudaMemcpy(dp, perm, sizeof(int32_t) * (size_t)K, cudaMemcpyHostToDevice));
            assert_int_equal(kq_mmvq_quantize_x_perm(dx, dp + 1, n, K, dq, 0, e->stream), QN_ERR_INVALID_ARG);
            /* as a PDL dependent (sm_90) every other case: the same bits */
            assert_int_equal(kq_mmvq_quantize_x_perm(dx, dp, n, K, dq, si % 2 && e->ctx.sm >= 90, e->stream), QN_OK);
        } else {
            assert_int_equal(kq_mmvq_quantize_x(dx, n, K, dq, e->stream), QN_OK);
        }
        CK(cudaStreamSynchronize(e->stream));
        CK(cudaGetLastError());
        uint8_t guard[64];
        CK(cudaMemcpy(got, dq, qb, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(guard, (uint8_t *)dq + qb, 64, cudaMemcpyDeviceToHost));
        size_t bad = 0;
        for (int i = 0; i < 64; i++) bad += guard[i] != 0xFF;
        for (size_t i = 0; i < qb; i++)
            if (got[i] != want[i] && bad++ < 5)
                fprintf(stderr, "  mmvq quantize n=%lld K=%lld byte %zu: got %02x want %02x\n", (long long)n,
                        (long long)K, i, got[i], want[i]);
        cudaFree(dx), cudaFree(dq), cudaFree(dp);
        if (xg != x) free(xg);
        free(x), free(want), free(got), free(perm);
        if (bad) fail_msg("mmvq quantize%s n=%lld K=%lld: %zu bytes differ from the host twin",
                          permuted ? " (perm)" : "", (long long)n, (long long)K, bad);
    }
}

/* The MMVQ call (quantize + matmul) is captured in a CUDA graph and replayed: no allocation, no host
 * synchronization inside; the replay gives the very bits of the direct call. */
static void test_mmvq_graph(void **state) {
    gpu_env *e = *state;
    problem p;
    problem_init(&p, e, QN_QFORMAT_Q4_K, 118, 1280, 8, 31);
    const size_t ny = 8 * 118;
    float *y0 = malloc(4 * ny), *y1 = malloc(4 * ny);
    assert_true(y0 && y1);
    assert_int_equal(qn_quant_matmul_cuda(&e->ctx, p.fmt, p.dw, p.N, p.K, p.dx, 8, p.dy, p.dws, p.ws_bytes, e->stream),
                     QN_OK);
    CK(cudaStreamSynchronize(e->stream));
    CK(cudaMemcpy(y0, p.dy, 4 * ny, cudaMemcpyDeviceToHost));
    CK(cudaMemset(p.dy, 0xFF, 4 * ny));
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(e->stream, cudaStreamCaptureModeThreadLocal));
    const qn_status st = qn_quant_matmul_cuda(&e->ctx, p.fmt, p.dw, p.N, p.K, p.dx, 8, p.dy, p.dws, p.ws_bytes,
                                              e->stream);
    CK(cudaStreamEndCapture(e->stream, &g));
    assert_int_equal(st, QN_OK);
    CK(cudaGraphInstantiate(&ge, g, 0));
    CK(cudaGraphLaunch(ge, e->stream));
    CK(cudaStreamSynchronize(e->stream));
    CK(cudaMemcpy(y1, p.dy, 4 * ny, cudaMemcpyDeviceToHost));
    assert_memory_equal(y0, y1, 4 * ny);
    size_t finite = 0;
    for (size_t i = 0; i < ny; i++) finite += isfinite(y0[i]) != 0;
    assert_int_equal(finite, ny);
    cudaGraphExecDestroy(ge), cudaGraphDestroy(g);
    free(y0), free(y1);
    problem_free(&p);
}

/* x_ready (quant.h): a second MMVQ call on the same x reuses the first call's q8 activations and gives the
 * very bits of a call that quantizes x itself; and it really skips the quantization: after a call on
 * another x, x_ready gives that other x's result (so the test would see a flag that did nothing). */
static void test_mmvq_x_ready(void **state) {
    gpu_env *e = *state;
    problem a, b; /* same K and n, different formats, weights and x */
    problem_init(&a, e, QN_QFORMAT_Q4_K, 118, 1280, 3, 41);
    problem_init(&b, e, QN_QFORMAT_Q8_0, 70, 1280, 3, 43);
    const int64_t n = 3;
    const size_t ny = (size_t)(n * b.N);
    float *want = malloc(4 * ny), *got = malloc(4 * ny), *other = malloc(4 * ny);
    assert_true(want && got && other);
    const qn_quant_matmul_opts q = {QN_QUANT_PATH_MMVQ, 0, QN_QUANT_SPLIT_AUTO, false, 0, 0},
                               r = {QN_QUANT_PATH_MMVQ, 0, QN_QUANT_SPLIT_AUTO, true, 0, 0};
#define MM(P, X, O) \
    assert_int_equal(qn_quant_matmul_cuda_ex(&e->ctx, P.fmt, P.dw, P.N, P.K, X, n, P.dy, a.dws, a.ws_bytes, e->stream, &O), QN_OK)
    MM(b, a.dx, q); /* b's weights on a's x, quantized by the call */
    CK(cudaMemcpy(want, b.dy, 4 * ny, cudaMemcpyDeviceToHost));
    MM(b, b.dx, q); /* b's weights on b's x */
    CK(cudaMemcpy(other, b.dy, 4 * ny, cudaMemcpyDeviceToHost));
    MM(a, a.dx, q); /* leaves a.dx's q8 in the workspace */
    CK(cudaMemset(b.dy, 0xFF, 4 * ny));
    MM(b, a.dx, r);
    CK(cudaMemcpy(got, b.dy, 4 * ny, cudaMemcpyDeviceToHost));
    assert_memory_equal(got, want, 4 * ny);
    MM(a, b.dx, q); /* now b.dx's q8 is in the workspace: x_ready on a.dx must read it */
    MM(b, a.dx, r);
    CK(cudaMemcpy(got, b.dy, 4 * ny, cudaMemcpyDeviceToHost));
    assert_memory_equal(got, other, 4 * ny);
    assert_true(memcmp(want, other, 4 * ny) != 0);
#undef MM
    free(want), free(got), free(other);
    problem_free(&a), problem_free(&b);
}

/* qn_quant_matmul_group_cuda: three matrices of one format on the same x in one launch give, per matrix, the
 * very bits of its single MMVQ call at the same warps per row (1, 2, 4), for every n <= 8 that AUTO sends
 * to the int8 path for the format (others refused with QN_ERR_UNSUPPORTED: the caller then goes one by one),
 * with an empty matrix in the middle and the outputs poisoned before. */
static void test_mmvq_group(void **state) {
    gpu_env *e = *state;
    const qn_qformat fmts[] = {QN_QFORMAT_Q4_K, QN_QFORMAT_Q6_K, QN_QFORMAT_Q4_0, QN_QFORMAT_Q6_KP, QN_QFORMAT_Q8_0P,
                               QN_QFORMAT_F16, QN_QFORMAT_BF16}; /* F16/BF16: fp16 x, no quantizer */
    for (size_t fi = 0; fi < sizeof fmts / sizeof fmts[0]; fi++) {
        problem p[3]; /* x of p[0] for all three */
        const int64_t Ns[3] = {118, 37, 64};
        for (int i = 0; i < 3; i++) problem_init(&p[i], e, fmts[fi], Ns[i], 1280, 8, 70 + 3 * fi + (uint64_t)i);
        float *want = malloc(4 * 8 * 118), *got = malloc(4 * 8 * 118);
        float *dy_empty = NULL;
        assert_true(want && got);
        const int64_t ns[] = {1, 2, 3, 4, 8};
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            const int64_t n = ns[ni];
            if (!qn_quant_use_mmvq(fmts[fi], e->ctx.sm, n)) {
                const qn_quant_mat one[1] = {{p[0].dw, p[0].N, p[0].dy}};
                assert_int_equal(qn_quant_matmul_group_cuda(&e->ctx, fmts[fi], one, 1, 1280, p[0].dx, n, p[0].dws,
                                                            p[0].ws_bytes, e->stream, NULL), QN_ERR_UNSUPPORTED);
                continue;
            }
            for (int split = 1; split <= 4; split *= 2) {
                const qn_quant_matmul_opts so = {QN_QUANT_PATH_MMVQ, split, QN_QUANT_SPLIT_AUTO, false, -1, 0},
                                           go = {QN_QUANT_PATH_AUTO, split, QN_QUANT_SPLIT_AUTO, false, -1, 0},
                                           gso = {QN_QUANT_PATH_AUTO, split, QN_QUANT_SPLIT_AUTO, false, 1, 0};
                const qn_quant_mat mats[3] = {{p[0].dw, p[0].N, p[0].dy}, {p[1].dw, 0, dy_empty}, {p[2].dw, p[2].N, p[2].dy}};
                for (int i = 0; i < 3; i++) CK(cudaMemset(p[i].dy, 0xFF, 4 * (size_t)(n * p[i].N)));
                assert_int_equal(qn_quant_matmul_group_cuda(&e->ctx, fmts[fi], mats, 3, 1280, p[0].dx, n, p[0].dws,
                                                            p[0].ws_bytes, e->stream, &go), QN_OK);
                CK(cudaStreamSynchronize(e->stream));
                for (int i = 0; i < 3; i += 2) {
                    const size_t ny = (size_t)(n * p[i].N);
                    CK(cudaMemcpy(got, p[i].dy, 4 * ny, cudaMemcpyDeviceToHost));
                    /* the staged group launch: the same bits (where kq_mmvq_stages; else it is the direct one) */
                    CK(cudaMemset(p[i].dy, 0xFF, 4 * ny));
                    assert_int_equal(qn_quant_matmul_group_cuda(&e->ctx, fmts[fi], mats, 3, 1280, p[0].dx, n, p[0].dws,
                                                                p[0].ws_bytes, e->stream, &gso), QN_OK);
                    CK(cudaMemcpy(want, p[i].dy, 4 * ny, cudaMemcpyDeviceToHost));
                    if (memcmp(got, want, 4 * ny) != 0)
                        fail_msg("%s group n=%lld split %d matrix %d: staged differs from direct", qn_qformat_name(fmts[fi]),
                                 (long long)n, split, i);
                    assert_int_equal(qn_quant_matmul_cuda_ex(&e->ctx, fmts[fi], p[i].dw, p[i].N, 1280, p[0].dx, n,
                                                             p[i].dy, p[0].dws, p[0].ws_bytes, e->stream, &so), QN_OK);
                    CK(cudaMemcpy(want, p[i].dy, 4 * ny, cudaMemcpyDeviceToHost));
                    size_t finite = 0;
                    for (size_t k = 0; k < ny; k++) finite += isfinite(want[k]) != 0;
                    assert_int_equal(finite, ny);
                    if (memcmp(got, want, 4 * ny) != 0)
                        fail_msg("%s group n=%lld split %d matrix %d: differs from its single call",
                                 qn_qformat_name(fmts[fi]), (long long)n, split, i);
                }
                /* all three, split from the total rows: the second matrix's rows come out too */
                const qn_quant_mat all[3] = {{p[0].dw, p[0].N, p[0].dy}, {p[1].dw, p[1].N, p[1].dy}, {p[2].dw, p[2].N, p[2].dy}};
                CK(cudaMemset(p[1].dy, 0xFF, 4 * (size_t)(n * p[1].N)));
                assert_int_equal(qn_quant_matmul_group_cuda(&e->ctx, fmts[fi], all, 3, 1280, p[0].dx, n, p[0].dws,
                                                            p[0].ws_bytes, e->stream, NULL), QN_OK);
                CK(cudaMemcpy(got, p[1].dy, 4 * (size_t)(n * p[1].N), cudaMemcpyDeviceToHost));
                for (int64_t k = 0; k < n * p[1].N; k++) assert_true(isfinite(got[k]));
            }
        }
        /* not the decode kernel: n past its AUTO limit, F16 weights past theirs (cuBLAS) */
        const qn_quant_mat one[1] = {{p[0].dw, p[0].N, p[0].dy}};
        assert_int_equal(qn_quant_matmul_group_cuda(&e->ctx, fmts[fi], one, 1, 1280, p[0].dx, 200, p[0].dws,
                                                    p[0].ws_bytes, e->stream, NULL), QN_ERR_UNSUPPORTED);
        assert_int_equal(qn_quant_matmul_group_cuda(&e->ctx, QN_QFORMAT_F16, one, 1, 1280, p[0].dx,
                                                    QN_QUANT_MMVQ_FLOAT_MAX_TOKENS + 1, p[0].dws, p[0].ws_bytes,
                                                    e->stream, NULL), QN_ERR_UNSUPPORTED);
        assert_int_equal(qn_quant_matmul_group_cuda(&e->ctx, fmts[fi], one, 4, 1280, p[0].dx, 1, p[0].dws,
                                                    p[0].ws_bytes, e->stream, NULL), QN_ERR_INVALID_ARG);
        free(want), free(got);
        for (int i = 0; i < 3; i++) problem_free(&p[i]);
    }
}

/* The int8 path at Llama-3-8B decode shapes (the launcher picks W = 1 or 2 and a grid of ~1000 CTAs, where
 * the small problems above run a few CTAs): staged and direct each against the references and bit-identical,
 * three times over (a race shows as a run that differs). Q6_K 4096x14336 is an 8B Q4_K_M down projection. */
static void test_mmvq_engine_shapes(void **state) {
    gpu_env *e = *state;
    const struct { qn_qformat fmt; int64_t N, K; } cs[] = {
        {QN_QFORMAT_Q6_K, 4096, 14336}, {QN_QFORMAT_Q6_K, 1024, 4096}, {QN_QFORMAT_Q6_KP, 4096, 14336},
        {QN_QFORMAT_Q6_KP, 1024, 4096}, {QN_QFORMAT_Q8_0P, 4096, 14336}, {QN_QFORMAT_Q8_0P, 1024, 4096},
        {QN_QFORMAT_Q4_K, 14336, 4096},
        {QN_QFORMAT_Q4_K, 4096, 14336}, {QN_QFORMAT_Q8_0, 4096, 4096}, {QN_QFORMAT_Q2_K, 14336, 4096}};
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        problem p;
        problem_init(&p, e, cs[ci].fmt, cs[ci].N, cs[ci].K, 2, 4242 + ci);
        assert_true(kq_mmvq_stages(cs[ci].fmt, cs[ci].K, 1) && kq_mmvq_stages(cs[ci].fmt, cs[ci].K, 2));
        for (int rep = 0; rep < 3; rep++)
            for (int64_t n = 1; n <= 2; n++) run_mmvq_case(e, &p, n, 0);
        problem_free(&p);
    }
}

/* Persistent staged launches (kq_mmvq.h stage 2, one warp per row) where each CTA takes many row blocks: the
 * launcher is told the GPU has 1 or 3 SMs, so a grid of a few CTAs walks every block, the staging running one
 * chunk ahead across them (K = 6144: a partial last chunk for Q2_K/Q3_K, 3 to 6 chunks for the others; N odd: a
 * last block with rows past N). Against the q8 reference, bit-identical to the direct launch, nothing written
 * past y; and a grouped launch (two matrices and an empty one between) against the single calls. */
static void test_mmvq_persist(void **state) {
    gpu_env *e = *state;
    if (!kq_mmvq_persists()) { /* an A/B build knob (kq_mmvq.cuh): stage 2 is stage 1 here, run_mmvq_case covers it */
        fprintf(stderr, "test_mmvq_persist: built without QN_MQ_PERSIST, skipped\n");
        skip();
    }
    const qn_qformat fmts[] = {QN_QFORMAT_Q4_0, QN_QFORMAT_Q4_1, QN_QFORMAT_Q5_0, QN_QFORMAT_Q5_1, QN_QFORMAT_Q8_0,
                               QN_QFORMAT_Q8_0P, QN_QFORMAT_Q2_K, QN_QFORMAT_Q3_K, QN_QFORMAT_Q4_K, QN_QFORMAT_Q5_K,
                               QN_QFORMAT_Q6_K, QN_QFORMAT_Q6_KP, QN_QFORMAT_Q3_KP};
    const int64_t K = 6144, N = 77, N2 = 40, ns[] = {1, 2, 3, 5};
    for (size_t fi = 0; fi < sizeof fmts / sizeof fmts[0]; fi++) {
        problem p, p2;
        problem_init(&p, e, fmts[fi], N, K, 5, 9100 + fi);
        problem_init(&p2, e, fmts[fi], N2, K, 5, 9200 + fi);
        void *dq = NULL;
        CK(cudaMalloc(&dq, qn_mmvq_x_bytes(5, K)));
        float *want = malloc(sizeof(float) * (size_t)(5 * N + GUARD)), *got = malloc(sizeof(float) * (size_t)(5 * N + GUARD));
        assert_true(want && got);
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            const int64_t n = ns[ni];
            if (!kq_mmvq_stages(fmts[fi], K, (int)n)) continue; /* Q6_K at nt >= 4: no staged instance */
            const size_t ny = (size_t)(n * N), ny2 = (size_t)(n * N2);
            assert_int_equal(kq_mmvq_quantize_x(p.dx, n, K, dq, e->stream), QN_OK);
            CK(cudaMemset(p.dy, 0xFF, sizeof(float) * (ny + GUARD)));
            assert_int_equal(kq_mmvq_matmul(fmts[fi], p.dw, N, K, dq, n, p.dy, e->ctx.n_sm, 1, -1, 0, e->stream), QN_OK);
            CK(cudaMemcpy(want, p.dy, sizeof(float) * ny, cudaMemcpyDeviceToHost));
            for (int n_sm = 1; n_sm <= 3; n_sm += 2) {
                char what[128];
                snprintf(what, sizeof what, "%s N=%lld K=%lld n=%lld persistent on %d SMs", qn_qformat_name(fmts[fi]),
                         (long long)N, (long long)K, (long long)n, n_sm);
                CK(cudaMemset(p.dy, 0xFF, sizeof(float) * (ny + GUARD))); /* NaN poison and the guard */
                assert_int_equal(kq_mmvq_matmul(fmts[fi], p.dw, N, K, dq, n, p.dy, n_sm, 1, 2, 0, e->stream), QN_OK);
                CK(cudaStreamSynchronize(e->stream));
                CK(cudaGetLastError());
                CK(cudaMemcpy(got, p.dy, sizeof(float) * (ny + GUARD), cudaMemcpyDeviceToHost));
                size_t guard_hit = 0;
                for (size_t i = ny; i < ny + GUARD; i++) {
                    uint32_t u;
                    memcpy(&u, &got[i], 4);
                    guard_hit += u != 0xFFFFFFFFu;
                }
                if (check_outputs(what, "q8 ref", got, ny, p.yq8, p.tolq8, 1e-10) || guard_hit)
                    fail_msg("%s: over tolerance (above) or %zu guard words written", what, guard_hit);
                if (memcmp(got, want, sizeof(float) * ny)) fail_msg("%s: differs from the direct launch", what);
                /* grouped: p's rows, an empty matrix, p2's rows (p2's weights on p's activations) */
                float *y2 = NULL;
                CK(cudaMalloc((void **)&y2, sizeof(float) * ny2));
                const kq_mmvq_mat mats[3] = {{p.dw, N, p.dy}, {p2.dw, 0, NULL}, {p2.dw, N2, y2}};
                CK(cudaMemset(p.dy, 0xFF, sizeof(float) * ny));
                CK(cudaMemset(y2, 0xFF, sizeof(float) * ny2));
                assert_int_equal(kq_mmvq_matmul_group(fmts[fi], mats, 3, K, dq, n, n_sm, 1, 2, 0, e->stream), QN_OK);
                CK(cudaMemcpy(got, p.dy, sizeof(float) * ny, cudaMemcpyDeviceToHost));
                if (memcmp(got, want, sizeof(float) * ny)) fail_msg("%s group: matrix 0 differs from its single call", what);
                float *g2 = malloc(sizeof(float) * ny2), *w2 = malloc(sizeof(float) * ny2);
                assert_true(g2 && w2);
                CK(cudaMemcpy(g2, y2, sizeof(float) * ny2, cudaMemcpyDeviceToHost));
                assert_int_equal(kq_mmvq_matmul(fmts[fi], p2.dw, N2, K, dq, n, y2, e->ctx.n_sm, 1, -1, 0, e->stream), QN_OK);
                CK(cudaMemcpy(w2, y2, sizeof(float) * ny2, cudaMemcpyDeviceToHost));
                size_t finite = 0;
                for (size_t i = 0; i < ny2; i++) finite += isfinite(w2[i]) != 0;
                assert_int_equal(finite, ny2);
                if (memcmp(g2, w2, sizeof(float) * ny2)) fail_msg("%s group: matrix 2 differs from its single call", what);
                free(g2), free(w2);
                cudaFree(y2);
            }
        }
        free(want), free(got);
        cudaFree(dq);
        problem_free(&p), problem_free(&p2);
    }
}

/* Q6_KP (Q8_0P) holds the Q6_K (Q8_0) values and the kernels decode them with the same arithmetic in the same
 * order, so every path gives the very bits of the Q6_K (Q8_0) call on the same blocks (problem_init makes the same
 * blocks and x for both from one seed): the int8 path at n = 1..8 with each warps-per-row choice, direct and
 * staged, the tensor-core GEMV and MMA paths and dequant + cuBLAS. An odd N, K with a partial staging chunk, an 8B
 * shape. Where kq_frag_wants the call, Q6_KP's GEMV path is the fragment-direct kernel (gguf/kq_frag.h: another
 * summation order, checked against the reference by run_case and bit-identical on a second run here); there the
 * staged GEMV both formats share is compared in split mode CLUSTER (sm_90; on sm_80 a cluster split does not exist,
 * and that comparison is left out). */
static void same_bits(gpu_env *e, qn_qformat base, qn_qformat dev) {
    const int64_t shapes[][2] = {{118, 1280}, {37, 14336}, {1024, 4096}};
    for (int si = 0; si < (g_quick ? 2 : 3); si++) {
        problem a, b;
        problem_init(&a, e, base, shapes[si][0], shapes[si][1], 100, 5150 + (uint64_t)si);
        problem_init(&b, e, dev, shapes[si][0], shapes[si][1], 100, 5150 + (uint64_t)si);
        assert_memory_equal(a.wref, b.wref, sizeof(float) * (size_t)(a.N * a.K));
        assert_memory_equal(a.x, b.x, 2 * (size_t)(a.nmax * a.K));
        struct { int64_t n; qn_quant_path path; int split, stage; } cs[] = {
            {1, QN_QUANT_PATH_MMVQ, 0, -1}, {1, QN_QUANT_PATH_MMVQ, 1, -1}, {1, QN_QUANT_PATH_MMVQ, 2, 1},
            {2, QN_QUANT_PATH_MMVQ, 4, -1}, {5, QN_QUANT_PATH_MMVQ, 0, -1},  {8, QN_QUANT_PATH_MMVQ, 2, 1},
            {3, QN_QUANT_PATH_GEMV, 0, 0},  {16, QN_QUANT_PATH_GEMV, 0, 0},  {33, QN_QUANT_PATH_MMA, 0, 0},
            {100, QN_QUANT_PATH_DEQUANT_CUBLAS, 0, 0}, {1, QN_QUANT_PATH_AUTO, 0, 0}};
        for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
            qn_quant_split_mode mode = QN_QUANT_SPLIT_AUTO;
            if (cs[ci].path == QN_QUANT_PATH_GEMV && kq_frag_wants(&e->ctx, dev, b.N, b.K, cs[ci].n)) {
                float *y1 = run_case_full(e, &b, cs[ci].n, cs[ci].path, cs[ci].split, mode, cs[ci].stage);
                float *y2 = run_case_full(e, &b, cs[ci].n, cs[ci].path, cs[ci].split, mode, cs[ci].stage);
                if (memcmp(y1, y2, sizeof(float) * (size_t)(cs[ci].n * b.N)) != 0)
                    fail_msg("%s N=%lld K=%lld n=%lld: the fragment-direct GEMV differs on a second run",
                             qn_qformat_name(dev), (long long)b.N, (long long)b.K, (long long)cs[ci].n);
                free(y1), free(y2);
                if (e->ctx.sm < 90) continue;
                mode = QN_QUANT_SPLIT_CLUSTER; /* the staged GEMV, on both formats */
            }
            float *ya = run_case_full(e, &a, cs[ci].n, cs[ci].path, cs[ci].split, mode, cs[ci].stage);
            float *yb = run_case_full(e, &b, cs[ci].n, cs[ci].path, cs[ci].split, mode, cs[ci].stage);
            if (memcmp(ya, yb, sizeof(float) * (size_t)(cs[ci].n * a.N)) != 0)
                fail_msg("%s N=%lld K=%lld n=%lld %s split=%d stage=%d: differs from %s", qn_qformat_name(dev),
                         (long long)a.N, (long long)a.K, (long long)cs[ci].n, path_name(cs[ci].path), cs[ci].split,
                         cs[ci].stage, qn_qformat_name(base));
            free(ya), free(yb);
        }
        problem_free(&a), problem_free(&b);
    }
}
static void test_q6kp_same_bits(void **state) { same_bits(*state, QN_QFORMAT_Q6_K, QN_QFORMAT_Q6_KP); }
static void test_q3kp_same_bits(void **state) { same_bits(*state, QN_QFORMAT_Q3_K, QN_QFORMAT_Q3_KP); }
static void test_q8_0p_same_bits(void **state) { same_bits(*state, QN_QFORMAT_Q8_0, QN_QFORMAT_Q8_0P); }

/* The fragment-direct GEMV's choices (gguf/kq_frag.h) on this device: its K split fills the resident CTA slots in one
 * wave at most (none once the tiles fill them; a one-strip matrix takes the largest split its blocks allow), Q4_K
 * and Q5_K take every GEMV call, Q6_KP only those whose tiles fit one wave (a format QN_KQ_FRAG leaves out, none);
 * and a Q6_KP matrix past that (the staged GEMV there) is right at 8 and 16 tokens. */
static void test_kq_frag_policy(void **state) {
    gpu_env *e = *state;
    const qn_qformat fs[] = {QN_QFORMAT_Q4_K, QN_QFORMAT_Q6_KP, QN_QFORMAT_Q5_K};
    for (int fi = 0; fi < 3; fi++) {
        const qn_qformat f = fs[fi];
        if (!qn_kq_frag_takes(f, e->ctx.sm)) {
            assert_int_equal(kq_frag_wants(&e->ctx, f, 4096, 4096, 8), 0);
            continue;
        }
        for (int64_t take = 1; take <= 16; take += 15) {
            const int ctas = kq_frag_ctas(&e->ctx, f, take);
            const int64_t slots = (int64_t)e->ctx.n_sm * ctas;
            assert_true(slots >= e->ctx.n_sm);
            assert_int_equal(kq_frag_split(f, e->ctx.n_sm, ctas, 32 * slots, 4096, take), 1);
            int want = 1; /* one strip, 64 blocks: the largest power of two <= slots, <= 16, a block a warp at least */
            while (2 * want <= 16 && 2 * want <= slots && 64 / (2 * want) >= 4) want *= 2;
            assert_int_equal(kq_frag_split(f, e->ctx.n_sm, ctas, 16, 64 * 256, take), want);
            assert_int_equal(kq_frag_wants(&e->ctx, f, 16, 4096, take), 1);
            assert_int_equal(kq_frag_wants(&e->ctx, f, 16 * slots, 4096, take), 1);
            assert_int_equal(kq_frag_wants(&e->ctx, f, 16 * slots + 16, 4096, take), f != QN_QFORMAT_Q6_KP);
            assert_int_equal(kq_frag_wants(&e->ctx, f, 16, 4096 + 32, take), 0); /* K not a multiple of 256 */
        }
    }
    if (!qn_kq_frag_takes(QN_QFORMAT_Q6_KP, e->ctx.sm)) return;
    const int64_t slots = (int64_t)e->ctx.n_sm * kq_frag_ctas(&e->ctx, QN_QFORMAT_Q6_KP, 1), N = 16 * slots + 21;
    assert_int_equal(kq_frag_wants(&e->ctx, QN_QFORMAT_Q6_KP, N, 512, 8), 0);
    problem p;
    problem_init(&p, e, QN_QFORMAT_Q6_KP, N, 512, 16, 6061);
    run_case(e, &p, 8, QN_QUANT_PATH_GEMV, 0);
    run_case(e, &p, 16, QN_QUANT_PATH_GEMV, 0);
    check_counters_zero(&p);
    problem_free(&p);
}

/* The GGUF tensor-core GEMM (gguf/kq_tc.h: Q2_K, Q3_KP, Q4_K, Q5_K, Q6_KP, Q8_0P; Hopper builds with sm_90a code,
 * else skipped): its x order against the host permutation bit for bit; then per case, on NaN-poisoned outputs with
 * guards, against the exact weights (run_case: the fp16 reference and tolerance of every path), against its host
 * twin's values within the f32 accumulation bound, and bit-identical on a second run (the K split sums in a fixed
 * order), on each tile (128 and 256 tokens, named); the default tile (tile 0) and AUTO give the same bits as the
 * tile they take. Shapes: a K split of 4 with one row CTA (N = 144: strips past N/16 idle), five blocks (two passes
 * and a one-block tail), token tiles cut short, and AUTO in its window (4096 rows). */
static void test_kq_tc(void **state) {
    gpu_env *e = *state;
    if (!qn_kq_tc_takes(e->ctx.sm, QN_QFORMAT_Q4_K, 16, 256)) {
        assert_int_equal(qn_quant_matmul_workspace_size(&e->ctx, QN_QFORMAT_Q4_0, QN_QUANT_PATH_TC, 64, 256, 64), 0);
        skip();
    }
    { /* the prepared x: column c of each 64-column group from column qn_kq_tc_x_col(c) */
        const int64_t n = 3, K = 512;
        uint16_t *x = malloc(2 * (size_t)(n * K)), *xt = malloc(2 * (size_t)(n * K));
        void *dx, *dxt;
        assert_true(x && xt);
        for (int64_t i = 0; i < n * K; i++) x[i] = (uint16_t)(i * 2654435761u >> 7);
        CK(cudaMalloc(&dx, 2 * (size_t)(n * K)));
        CK(cudaMalloc(&dxt, 2 * (size_t)(n * K)));
        CK(cudaMemcpy(dx, x, 2 * (size_t)(n * K), cudaMemcpyHostToDevice));
        CK(cudaMemset(dxt, 0xFF, 2 * (size_t)(n * K)));
        assert_int_equal(qn_kq_tc_prepare_x(dx, n, K, dxt, e->stream), QN_OK);
        CK(cudaStreamSynchronize(e->stream));
        CK(cudaMemcpy(xt, dxt, 2 * (size_t)(n * K), cudaMemcpyDeviceToHost));
        for (int64_t i = 0; i < n * K; i++)
            if (xt[i] != x[i / 64 * 64 + qn_kq_tc_x_col((int)(i % 64))])
                fail_msg("kq_tc prepare: column %lld of token %lld", (long long)(i % K), (long long)(i / K));
        cudaFree(dx), cudaFree(dxt), free(x), free(xt);
    }
    /* the last two: AUTO's rows (qn_kq_tc_auto), below and at QN_KQ_TC_WIDE_MIN_ROWS (Q4_K's and Q5_K's default
     * tile: kq_tc.h) */
    const struct { int64_t N, K, nmax; int64_t ns[3]; } cs[] = {
        {144, 4096, 130, {33, 130, 1}}, {256, 1280, 300, {1, 200, 300}}, {512, 2048, 257, {257, 64, 128}},
        {4096, 512, 160, {64, 160, 33}}, {8192, 256, 160, {160, 130, 33}}};
    const qn_qformat fmts[] = {QN_QFORMAT_Q4_K,  QN_QFORMAT_Q5_K, QN_QFORMAT_Q6_KP,
                               QN_QFORMAT_Q3_KP, QN_QFORMAT_Q2_K, QN_QFORMAT_Q8_0P};
    const size_t nf = sizeof fmts / sizeof fmts[0];
    int autos = 0; /* AUTO cases run (each format's last two shapes) */
    for (size_t ci = 0; ci < nf * (sizeof cs / sizeof cs[0]); ci++) {
        const qn_qformat f = fmts[ci % nf];
        problem p;
        problem_init(&p, e, f, cs[ci / nf].N, cs[ci / nf].K, cs[ci / nf].nmax, 7100 + ci);
        const int64_t N = p.N, K = p.K;
        /* the twin's reference: its weights, exact products, the f32 accumulation bound */
        uint16_t *tw = malloc(2 * (size_t)(N * K));
        double *yt = malloc(sizeof(double) * (size_t)(p.nmax * N)), *tt = malloc(sizeof(double) * (size_t)(p.nmax * N));
        assert_true(tw && yt && tt);
        assert_int_equal(qn_kq_tc_dequant_host(f, p.w, N, K, tw), QN_OK);
        size_t differ = 0;
        for (int64_t i = 0; i < N * K; i++) differ += qn_f16_to_f32(tw[i]) != qn_f16_to_f32(qn_f32_to_f16(p.wref[i]));
        for (int64_t t = 0; t < p.nmax; t++)
            for (int64_t i = 0; i < N; i++) {
                double sum = 0, sa = 0;
                for (int64_t k = 0; k < K; k++) {
                    const double v = (double)qn_f16_to_f32(tw[i * K + k]) * qn_f16_to_f32(p.x[t * K + k]);
                    sum += v, sa += fabs(v);
                }
                yt[t * N + i] = sum, tt[t * N + i] = ldexp(sa, -16) + 1e-30;
            }
        for (int j = 0; j < 3; j++) {
            const int64_t n = cs[ci / nf].ns[j];
            float *yd = NULL; /* the default tile's output */
            for (int tile = 128; tile <= 256; tile *= 2) { /* each tile named */
                float *y = run_case_tile(e, &p, n, QN_QUANT_PATH_TC, 0, QN_QUANT_SPLIT_AUTO, 0, tile);
                char what[112];
                snprintf(what, sizeof what, "%s tc N=%lld K=%lld n=%lld tile=%d", qn_qformat_name(f), (long long)N,
                         (long long)K, (long long)n, tile);
                if (check_outputs(what, "host twin", y, (size_t)(n * N), yt, tt, 1e-10))
                    fail_msg("%s: against the twin", what);
                if (!g_quick || tile == qn_kq_tc_tile_tokens(f, N, n)) { /* quick (compute-sanitizer): the default's */
                    float *y2 = run_case_tile(e, &p, n, QN_QUANT_PATH_TC, 0, QN_QUANT_SPLIT_AUTO, 0, tile);
                    if (memcmp(y, y2, sizeof(float) * (size_t)(n * N))) fail_msg("%s: two runs differ", what);
                    free(y2);
                }
                if (tile == qn_kq_tc_tile_tokens(f, N, n)) yd = y;
                else free(y);
            }
            assert_non_null(yd);
            char what[96];
            snprintf(what, sizeof what, "%s tc N=%lld K=%lld n=%lld", qn_qformat_name(f), (long long)N, (long long)K,
                     (long long)n);
            /* tile 0 is the default tile: the same bits */
            float *y2 = run_case_full(e, &p, n, QN_QUANT_PATH_TC, 0, QN_QUANT_SPLIT_AUTO, 0);
            if (memcmp(yd, y2, sizeof(float) * (size_t)(n * N))) fail_msg("%s: tile 0 is not the default tile", what);
            free(y2);
            if (qn_kq_tc_auto(f, N, n)) { /* AUTO takes it in its window (the workspace has room): the same bits */
                autos++;
                y2 = run_case_full(e, &p, n, QN_QUANT_PATH_AUTO, 0, QN_QUANT_SPLIT_AUTO, 0);
                if (memcmp(yd, y2, sizeof(float) * (size_t)(n * N))) fail_msg("%s: AUTO differs from TC", what);
                free(y2);
            }
            free(yd);
        }
        /* the K-quants' twin is not ggml's dequant (S and B rounded first): some weights differ, by little
         * (run_case); Q8_0's is, bit for bit */
        if (f == QN_QFORMAT_Q8_0P) assert_int_equal(differ, 0);
        else assert_true(differ > 0);
        check_counters_zero(&p);
        free(tw), free(yt), free(tt);
        problem_free(&p);
    }
    /* AUTO's window and formats as built (kq_tc.h): n = 64, 160 and 33 on the 4096 rows, 160, 130 and 33 on the 8192,
     * all six formats by default, Q4_K and Q6_KP only where built with QN_KQ_TC_AUTO_ALL_FORMATS=0 */
    assert_int_equal(autos, QN_KQ_TC_AUTO_ALL_FORMATS ? 36 : 12);
}

/* Argument checks: they must fail cleanly, without launching. */
static void test_bad_args(void **state) {
    gpu_env *e = *state;
    problem p;
    problem_init(&p, e, QN_QFORMAT_Q4_0, 3, 64, 2, 5);
    const qn_quant_matmul_opts cub = {QN_QUANT_PATH_DEQUANT_CUBLAS, 0, QN_QUANT_SPLIT_AUTO, false, 0, 0},
                               odd = {QN_QUANT_PATH_GEMV, 3, QN_QUANT_SPLIT_AUTO, false, 0, 0};
    assert_int_equal(qn_quant_matmul_cuda(&e->ctx, QN_QFORMAT_Q4_0, (uint8_t *)p.dw + 2, 3, 64, p.dx, 1, p.dy, NULL,
                                          0, e->stream),
                     QN_ERR_INVALID_ARG);
    assert_int_equal(qn_quant_matmul_cuda(&e->ctx, QN_QFORMAT_Q4_0, p.dw, 3, 48, p.dx, 1, p.dy, NULL, 0, e->stream),
                     QN_ERR_SHAPE);
    assert_int_equal(qn_quant_matmul_cuda(&e->ctx, QN_QFORMAT_Q8_1, p.dw, 3, 64, p.dx, 1, p.dy, NULL, 0, e->stream),
                     QN_ERR_UNSUPPORTED);
    assert_int_equal(qn_quant_matmul_cuda_ex(&e->ctx, QN_QFORMAT_Q4_0, p.dw, 3, 64, p.dx, 1, p.dy, NULL, 0,
                                             e->stream, &cub),
                     QN_ERR_INVALID_ARG);
    assert_int_equal(qn_quant_matmul_cuda_ex(&e->ctx, QN_QFORMAT_Q4_0, p.dw, 3, 64, p.dx, 1, p.dy, NULL, 0,
                                             e->stream, &odd),
                     QN_ERR_INVALID_ARG);
    assert_int_equal(qn_quant_matmul_cuda(&e->ctx, QN_QFORMAT_Q4_0, p.dw, 3, 64, p.dx, 0, p.dy, NULL, 0, e->stream),
                     QN_OK);
    /* TC: no such GEMM for Q4_0; Q4_K's needs N % 16 == 0 (else refused) and its workspace */
    const qn_quant_matmul_opts tc = {QN_QUANT_PATH_TC, 0, QN_QUANT_SPLIT_AUTO, false, 0, 0};
    assert_int_equal(qn_quant_matmul_cuda_ex(&e->ctx, QN_QFORMAT_Q4_0, p.dw, 3, 64, p.dx, 1, p.dy, p.dws, p.ws_bytes,
                                             e->stream, &tc),
                     QN_ERR_UNSUPPORTED);
    {
        problem k;
        problem_init(&k, e, QN_QFORMAT_Q4_K, 16, 256, 2, 6);
        assert_int_equal(qn_quant_matmul_cuda_ex(&e->ctx, QN_QFORMAT_Q4_K, k.dw, 8, 256, k.dx, 2, k.dy, k.dws,
                                                 k.ws_bytes, e->stream, &tc),
                         QN_ERR_UNSUPPORTED);
        assert_int_equal(qn_quant_matmul_cuda_ex(&e->ctx, QN_QFORMAT_Q4_K, k.dw, 16, 256, k.dx, 2, k.dy, NULL, 0,
                                                 e->stream, &tc),
                         qn_kq_tc_takes(e->ctx.sm, QN_QFORMAT_Q4_K, 16, 256) ? QN_ERR_INVALID_ARG : QN_ERR_UNSUPPORTED);
        /* a tile other than 0, 128 or 256 */
        const qn_quant_matmul_opts tc64 = {QN_QUANT_PATH_TC, 0, QN_QUANT_SPLIT_AUTO, false, 0, 64};
        assert_int_equal(qn_quant_matmul_cuda_ex(&e->ctx, QN_QFORMAT_Q4_K, k.dw, 16, 256, k.dx, 2, k.dy, k.dws,
                                                 k.ws_bytes, e->stream, &tc64),
                         qn_kq_tc_takes(e->ctx.sm, QN_QFORMAT_Q4_K, 16, 256) ? QN_ERR_INVALID_ARG : QN_ERR_UNSUPPORTED);
        problem_free(&k);
    }
    /* MMVQ: asked for without room for the q8 activations, or with 8 warps per row (F16 too): refused;
     * under AUTO without room it falls back to the GEMV */
    const qn_quant_matmul_opts mq = {QN_QUANT_PATH_MMVQ, 0, QN_QUANT_SPLIT_AUTO, false, 0, 0},
                               mq8 = {QN_QUANT_PATH_MMVQ, 8, QN_QUANT_SPLIT_AUTO, false, 0, 0};
    assert_int_equal(qn_quant_matmul_cuda_ex(&e->ctx, QN_QFORMAT_Q4_0, p.dw, 3, 64, p.dx, 1, p.dy, NULL, 0,
                                             e->stream, &mq),
                     QN_ERR_INVALID_ARG);
    assert_int_equal(qn_quant_matmul_cuda_ex(&e->ctx, QN_QFORMAT_Q4_0, p.dw, 3, 64, p.dx, 1, p.dy, p.dws, p.ws_bytes,
                                             e->stream, &mq8),
                     QN_ERR_INVALID_ARG);
    assert_int_equal(qn_quant_matmul_cuda_ex(&e->ctx, QN_QFORMAT_F16, p.dw, 3, 64, p.dx, 1, p.dy, p.dws, p.ws_bytes,
                                             e->stream, &mq8),
                     QN_ERR_INVALID_ARG);
    assert_int_equal(qn_quant_matmul_cuda(&e->ctx, QN_QFORMAT_Q4_0, p.dw, 3, 64, p.dx, 1, p.dy, NULL, 0, e->stream),
                     QN_OK);
    CK(cudaStreamSynchronize(e->stream));
    problem_free(&p);
}

int main(void) {
    g_quick = getenv("QN_TEST_QUICK") && atoi(getenv("QN_TEST_QUICK")) > 0;
    if (getenv("QN_TEST_FILTER")) cmocka_set_test_filter(getenv("QN_TEST_FILTER")); /* e.g. under a sanitizer */
    const struct CMUnitTest cpu_tests[] = {
        cmocka_unit_test(test_select_path),
        cmocka_unit_test(test_check_shape),
    };
    const int cpu_failed = cmocka_run_group_tests_name("gpu_quant_predicates", cpu_tests, NULL, NULL);
    if (cpu_failed) return cpu_failed;

    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        fprintf(stderr, "test_gpu_quant: no CUDA device, GPU cases skipped\n");
        return 77;
    }
    const struct CMUnitTest gpu_tests[] = {
        cmocka_unit_test(test_bad_args),   cmocka_unit_test(test_dequant), cmocka_unit_test(test_kq_tc),
        cmocka_unit_test(test_dequant_variants),
        cmocka_unit_test(test_mmvq_quantize), cmocka_unit_test(test_mmvq_graph),
        cmocka_unit_test(test_mmvq_x_ready), cmocka_unit_test(test_mmvq_group),
        cmocka_unit_test(test_mmvq_engine_shapes), cmocka_unit_test(test_mmvq_persist),
        cmocka_unit_test(test_matmul_F16), cmocka_unit_test(test_matmul_BF16),
        cmocka_unit_test(test_matmul_Q4_0), cmocka_unit_test(test_matmul_Q4_1),
        cmocka_unit_test(test_matmul_Q5_0), cmocka_unit_test(test_matmul_Q5_1),
        cmocka_unit_test(test_matmul_Q8_0), cmocka_unit_test(test_matmul_Q2_K),
        cmocka_unit_test(test_matmul_Q3_K), cmocka_unit_test(test_matmul_Q4_K),
        cmocka_unit_test(test_matmul_Q5_K), cmocka_unit_test(test_matmul_Q6_K),
        cmocka_unit_test(test_matmul_Q6_KP), cmocka_unit_test(test_q6kp_same_bits),
        cmocka_unit_test(test_kq_frag_policy),
        cmocka_unit_test(test_matmul_Q3_KP), cmocka_unit_test(test_q3kp_same_bits),
        cmocka_unit_test(test_matmul_Q8_0P), cmocka_unit_test(test_q8_0p_same_bits),
    };
    return cmocka_run_group_tests_name("gpu_quant", gpu_tests, gpu_setup, gpu_teardown);
}
