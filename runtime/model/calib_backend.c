/* calib_backend.c — the calibration backend (model/calib_backend.h): device choice, slots, and the CPU
 * implementation of every operation; the CUDA calls go to calib_backend_cuda.cu. The CPU GEMM, the Gram matrix
 * and the quadratic form are the code hf_calib.c and awq_quant.c ran before the backend existed, moved here
 * unchanged, so a CPU run gives the same bits as before. */
#include "model/calib_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "model/calib_backend_cuda.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

typedef struct cpu_slot {
    const float *p; /* borrowed (X, H, U) or the owned copy w_copy (W) */
    int64_t rows, cols;
} cpu_slot;

struct qn_calib_backend {
    qn_calib_device dev;
    qn_threadpool *tp;
    char name[160];
    cpu_slot slot[QN_CALIB_SLOT_COUNT];
    float *w_copy;    /* [rows][cols] of slot W (CPU) */
    int64_t w_cap;    /* floats */
    float *scratch;   /* CPU: y of quad [n][k], the transpose of gram [k][n_tok] */
    int64_t scratch_cap;
    qn_calib_cuda *cuda; /* CUDA only */
};

bool qn_calib_device_parse(const char *s, qn_calib_device *out) {
    if (!strcmp(s, "auto")) *out = QN_CALIB_DEVICE_AUTO;
    else if (!strcmp(s, "cpu")) *out = QN_CALIB_DEVICE_CPU;
    else if (!strcmp(s, "cuda")) *out = QN_CALIB_DEVICE_CUDA;
    else return false;
    return true;
}

qn_calib_device qn_calib_backend_device(const qn_calib_backend *b) { return b->dev; }
const char *qn_calib_backend_name(const qn_calib_backend *b) { return b->name; }

static int cuda_devices(void) {
#ifdef QN_HAVE_CUDA
    return qn_calib_cuda_device_count();
#else
    return 0;
#endif
}

qn_status qn_calib_backend_create(qn_calib_device dev, qn_threadpool *tp, qn_calib_backend **out, qn_error *err) {
    if (dev == QN_CALIB_DEVICE_AUTO) dev = cuda_devices() > 0 ? QN_CALIB_DEVICE_CUDA : QN_CALIB_DEVICE_CPU;
#ifndef QN_HAVE_CUDA
    if (dev == QN_CALIB_DEVICE_CUDA)
        return qn_error_set(err, QN_ERR_NO_DEVICE, "--device cuda: this quern was built without CUDA (no nvcc at "
                                                   "configure time, or QN_CPU_ONLY)");
#else
    if (dev == QN_CALIB_DEVICE_CUDA && cuda_devices() < 1)
        return qn_error_set(err, QN_ERR_NO_DEVICE, "--device cuda: no CUDA device is present");
#endif
    qn_calib_backend *b = calloc(1, sizeof *b);
    if (!b) return qn_error_set(err, QN_ERR_NOMEM, "calibration backend: out of memory");
    b->dev = dev, b->tp = tp;
    if (dev == QN_CALIB_DEVICE_CPU) {
        snprintf(b->name, sizeof b->name, "cpu (%d thread%s)", tp ? qn_threadpool_size(tp) : 1,
                 tp && qn_threadpool_size(tp) > 1 ? "s" : "");
    }
#ifdef QN_HAVE_CUDA
    qn_status st;
    if (dev == QN_CALIB_DEVICE_CUDA && (st = qn_calib_cuda_create(&b->cuda, b->name, sizeof b->name, err)) != QN_OK) {
        free(b);
        return st;
    }
#endif
    *out = b;
    return QN_OK;
}

void qn_calib_backend_destroy(qn_calib_backend *b) {
    if (!b) return;
#ifdef QN_HAVE_CUDA
    qn_calib_cuda_destroy(b->cuda);
#endif
    free(b->w_copy), free(b->scratch);
    free(b);
}

/* CUDA dispatch: in a CPU-only build b->dev is never CUDA (create refuses it), so the calls compile away */
#ifdef QN_HAVE_CUDA
#define ON_CUDA(b, call) \
    if ((b)->dev == QN_CALIB_DEVICE_CUDA) return (call)
#else
#define ON_CUDA(b, call) (void)0
#endif

static float *scratch(qn_calib_backend *b, int64_t n, qn_error *err) {
    if (n > b->scratch_cap) {
        free(b->scratch);
        if (!(b->scratch = malloc(sizeof(float) * (size_t)n))) {
            b->scratch_cap = 0;
            qn_error_set(err, QN_ERR_NOMEM, "calibration backend: out of memory (%lld floats)", (long long)n);
            return NULL;
        }
        b->scratch_cap = n;
    }
    return b->scratch;
}

static void run(qn_calib_backend *b, qn_task_fn fn, void *arg) {
    if (b->tp) qn_threadpool_run(b->tp, fn, arg);
    else fn(arg, 0, 1);
}

/* ------------------------------------------------------------------ slots */

qn_status qn_calib_backend_load(qn_calib_backend *b, qn_calib_slot s, const float *src, int64_t rows, int64_t cols,
                                qn_error *err) {
    if (s < 0 || s >= QN_CALIB_SLOT_COUNT || rows <= 0 || cols <= 0 || !src)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "calibration backend: load slot %d [%lld][%lld]", (int)s,
                            (long long)rows, (long long)cols);
    ON_CUDA(b, qn_calib_cuda_load(b->cuda, s, src, rows, cols, err));
    if (s == QN_CALIB_SLOT_W) {
        if (rows * cols > b->w_cap) {
            free(b->w_copy);
            if (!(b->w_copy = malloc(sizeof(float) * (size_t)(rows * cols)))) {
                b->w_cap = 0;
                return qn_error_set(err, QN_ERR_NOMEM, "calibration backend: out of memory");
            }
            b->w_cap = rows * cols;
        }
        memcpy(b->w_copy, src, sizeof(float) * (size_t)(rows * cols));
        src = b->w_copy;
    }
    b->slot[s] = (cpu_slot){.p = src, .rows = rows, .cols = cols};
    return QN_OK;
}

qn_status qn_calib_backend_read_cols(qn_calib_backend *b, qn_calib_slot s, int64_t c0, int64_t c1, float *dst,
                                     qn_error *err) {
    ON_CUDA(b, qn_calib_cuda_read_cols(b->cuda, s, c0, c1, dst, err));
    const cpu_slot *sl = &b->slot[s];
    if (!sl->p || c0 < 0 || c1 > sl->cols || c0 >= c1)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "calibration backend: columns [%lld, %lld) of slot %d",
                            (long long)c0, (long long)c1, (int)s);
    for (int64_t r = 0; r < sl->rows; r++)
        memcpy(dst + r * (c1 - c0), sl->p + r * sl->cols + c0, sizeof(float) * (size_t)(c1 - c0));
    return QN_OK;
}

/* ------------------------------------------------------------------ CPU GEMM */

/* y[t][r] += Σ_{j<k} x[t][j]·w[r][j] for t in [t0, t1), r in [r0, r1): the project's F32 matmul is a plain dot
 * product per (row, token) (it serves decode), far too slow for 10^4-token calibration batches, so this is a
 * small register-tiled GEMM: 4 tokens × 4 rows of 8-wide accumulators, K in slices that keep a 64-token strip of
 * x in L2. Not bit-compatible with the engine's matmul (it need not be: calibration only). */
#define QN_CALIB_KC 512
#define QN_CALIB_TC 64

static void gemm_ref(const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t k, int64_t t0, int64_t t1,
                     int64_t r0, int64_t r1, float *y, int64_t ldy) {
    for (int64_t t = t0; t < t1; t++)
        for (int64_t r = r0; r < r1; r++) {
            float s = 0;
            for (int64_t j = 0; j < k; j++) s += x[t * ldx + j] * w[r * ldw + j];
            y[t * ldy + r] += s;
        }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static inline float hsum8(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* One 4-token x 4-row tile of y += x·wᵀ over k: every (token, row) element is an 8-lane FMA accumulator over j,
 * reduced by hsum8, then the scalar tail; TT tokens at a time so the accumulators, the 4 w vectors and an x vector
 * stay in registers (TT = 2 with AVX2's 16 ymm registers, TT = 4 with AVX-512VL's 32). An element's arithmetic
 * does not depend on TT, so both give the same bits. */
#define QN_GEMM_TILE(TT)                                                                                           \
    for (int a0 = 0; a0 < 4; a0 += (TT)) {                                                                         \
        __m256 acc[TT][4];                                                                                         \
        for (int a = 0; a < (TT); a++)                                                                             \
            for (int b = 0; b < 4; b++) acc[a][b] = _mm256_setzero_ps();                                           \
        const float *xa = x + (t + a0) * ldx, *w0 = w + r * ldw;                                                   \
        for (int64_t j = 0; j < k8; j += 8) {                                                                      \
            const __m256 wv0 = _mm256_loadu_ps(w0 + j), wv1 = _mm256_loadu_ps(w0 + ldw + j);                      \
            const __m256 wv2 = _mm256_loadu_ps(w0 + 2 * ldw + j), wv3 = _mm256_loadu_ps(w0 + 3 * ldw + j);        \
            _Pragma("GCC unroll 4") for (int a = 0; a < (TT); a++) {                                               \
                const __m256 xv = _mm256_loadu_ps(xa + a * ldx + j);                                               \
                acc[a][0] = _mm256_fmadd_ps(xv, wv0, acc[a][0]);                                                   \
                acc[a][1] = _mm256_fmadd_ps(xv, wv1, acc[a][1]);                                                   \
                acc[a][2] = _mm256_fmadd_ps(xv, wv2, acc[a][2]);                                                   \
                acc[a][3] = _mm256_fmadd_ps(xv, wv3, acc[a][3]);                                                   \
            }                                                                                                      \
        }                                                                                                          \
        for (int a = 0; a < (TT); a++)                                                                             \
            for (int b = 0; b < 4; b++) {                                                                          \
                float s = hsum8(acc[a][b]);                                                                        \
                for (int64_t j = k8; j < k; j++) s += x[(t + a0 + a) * ldx + j] * w[(r + b) * ldw + j];           \
                y[(t + a0 + a) * ldy + r + b] += s;                                                                \
            }                                                                                                      \
    }

#define QN_GEMM_BODY(TT)                                                                                           \
    const int64_t k8 = k & ~(int64_t)7;                                                                            \
    int64_t t = t0;                                                                                                \
    for (; t + 4 <= t1; t += 4) {                                                                                  \
        int64_t r = r0;                                                                                            \
        for (; r + 4 <= r1; r += 4) { QN_GEMM_TILE(TT) }                                                           \
        if (r < r1) gemm_ref(x, ldx, w, ldw, k, t, t + 4, r, r1, y, ldy);                                          \
    }                                                                                                              \
    if (t < t1) gemm_ref(x, ldx, w, ldw, k, t, t1, r0, r1, y, ldy);

/* The scalar tail s += x·w stays a separate multiply and add: -std=c11 (CMakeLists.txt) turns GCC's FMA
 * contraction off. */
__attribute__((target("avx2,fma"))) static void
gemm_avx2(const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t k, int64_t t0, int64_t t1, int64_t r0,
          int64_t r1, float *y, int64_t ldy) {
    QN_GEMM_BODY(2)
}

__attribute__((target("avx2,fma,avx512f,avx512vl"))) static void
gemm_avx512vl(const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t k, int64_t t0, int64_t t1, int64_t r0,
              int64_t r1, float *y, int64_t ldy) {
    QN_GEMM_BODY(4)
}
#endif

typedef struct mm_job {
    const float *x, *w;
    int64_t n_tok, k, n;
    float *y;
    qn_calib_isa isa;
} mm_job;

/* Rows of w split in whole quads, so every (t, r) element sees the same tiles whatever the thread count. */
static void mm_fn(void *arg, int ith, int nth) {
    mm_job *j = arg;
    long long rb, re;
    qn_split_range(j->n / 4, ith, nth, &rb, &re); /* whole row quads per thread; the last takes the rest */
    rb *= 4, re *= 4;
    if (ith == nth - 1) re = j->n;
    for (int64_t t = 0; t < j->n_tok; t++)
        for (int64_t r = rb; r < re; r++) j->y[t * j->n + r] = 0;
    for (int64_t k0 = 0; k0 < j->k; k0 += QN_CALIB_KC) {
        const int64_t kc = k0 + QN_CALIB_KC < j->k ? QN_CALIB_KC : j->k - k0;
        for (int64_t t0 = 0; t0 < j->n_tok; t0 += QN_CALIB_TC) {
            const int64_t t1 = t0 + QN_CALIB_TC < j->n_tok ? t0 + QN_CALIB_TC : j->n_tok;
#if defined(__x86_64__)
            if (j->isa == QN_CALIB_ISA_AVX512VL) {
                gemm_avx512vl(j->x + k0, j->k, j->w + k0, j->k, kc, t0, t1, rb, re, j->y, j->n);
                continue;
            }
            if (j->isa == QN_CALIB_ISA_AVX2) {
                gemm_avx2(j->x + k0, j->k, j->w + k0, j->k, kc, t0, t1, rb, re, j->y, j->n);
                continue;
            }
#endif
            gemm_ref(j->x + k0, j->k, j->w + k0, j->k, kc, t0, t1, rb, re, j->y, j->n);
        }
    }
}

bool qn_calib_isa_supported(qn_calib_isa isa) {
#if defined(__x86_64__)
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == QN_CALIB_ISA_AVX2) return avx2;
    if (isa == QN_CALIB_ISA_AVX512VL)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
#endif
    return isa == QN_CALIB_ISA_SCALAR;
}

static qn_calib_isa best_isa(void) {
    return qn_calib_isa_supported(QN_CALIB_ISA_AVX512VL) ? QN_CALIB_ISA_AVX512VL
           : qn_calib_isa_supported(QN_CALIB_ISA_AVX2)   ? QN_CALIB_ISA_AVX2
                                                           : QN_CALIB_ISA_SCALAR;
}

bool qn_calib_gemm_f32_isa(qn_calib_isa isa, const float *x, int64_t n_tok, int64_t k, const float *w, int64_t n,
                           float *y) {
    if (!qn_calib_isa_supported(isa)) return false;
    mm_job j = {.x = x, .w = w, .n_tok = n_tok, .k = k, .n = n, .y = y, .isa = isa};
    mm_fn(&j, 0, 1);
    return true;
}

void qn_calib_gemm_f32(const float *x, int64_t n_tok, int64_t k, const float *w, int64_t n, float *y) {
    qn_calib_gemm_f32_isa(best_isa(), x, n_tok, k, w, n, y);
}

static void cpu_matmul(qn_calib_backend *b, const float *x, int64_t n_tok, int64_t k, const float *w, int64_t n,
                       float *y) {
    mm_job j = {.x = x, .w = w, .n_tok = n_tok, .k = k, .n = n, .y = y, .isa = best_isa()};
    run(b, mm_fn, &j);
}

/* ------------------------------------------------------------------ operations */

static qn_status need(const qn_calib_backend *b, qn_calib_slot s, const char *op, qn_error *err) {
    if (s < 0 || s >= QN_CALIB_SLOT_COUNT || !b->slot[s].p)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "calibration backend: %s on an empty slot %d", op, (int)s);
    return QN_OK;
}

qn_status qn_calib_backend_matmul(qn_calib_backend *b, qn_calib_slot x, const float *w, int64_t n, float *y,
                                  qn_error *err) {
    ON_CUDA(b, qn_calib_cuda_matmul(b->cuda, x, w, n, y, err));
    qn_status st = need(b, x, "matmul", err);
    if (st != QN_OK) return st;
    cpu_matmul(b, b->slot[x].p, b->slot[x].rows, b->slot[x].cols, w, n, y);
    return QN_OK;
}

qn_status qn_calib_backend_gram(qn_calib_backend *b, qn_calib_slot x, float scale, float *h, qn_error *err) {
    ON_CUDA(b, qn_calib_cuda_gram(b->cuda, x, scale, h, err));
    qn_status st = need(b, x, "gram", err);
    if (st != QN_OK) return st;
    const float *xs = b->slot[x].p;
    const int64_t n_tok = b->slot[x].rows, k = b->slot[x].cols;
    /* xt [k][n_tok]: H = xt·xtᵀ is a matmul of xt with itself (rows of xt as both weights and tokens) */
    float *xt = scratch(b, k * n_tok, err);
    if (!xt) return QN_ERR_NOMEM;
    for (int64_t t0 = 0; t0 < n_tok; t0 += 64) /* transpose in 64-token strips */
        for (int64_t j = 0; j < k; j++)
            for (int64_t t = t0; t < t0 + 64 && t < n_tok; t++) xt[j * n_tok + t] = xs[t * k + j];
    cpu_matmul(b, xt, k, n_tok, xt, k, h);
    for (int64_t i = 0; i < k * k; i++) h[i] *= scale;
    return QN_OK;
}

qn_status qn_calib_backend_quad(qn_calib_backend *b, qn_calib_slot h, const float *d, int64_t n, double *e,
                                qn_error *err) {
    ON_CUDA(b, qn_calib_cuda_quad(b->cuda, h, d, n, e, err));
    qn_status st = need(b, h, "quad", err);
    if (st != QN_OK) return st;
    const int64_t k = b->slot[h].cols;
    float *y = scratch(b, n * k, err);
    if (!y) return QN_ERR_NOMEM;
    cpu_matmul(b, d, n, k, b->slot[h].p, k, y); /* y = d·Hᵀ = d·H: H is symmetric */
    double s = 0;
    for (int64_t i = 0; i < n * k; i++) s += (double)d[i] * (double)y[i];
    *e = s;
    return QN_OK;
}

typedef struct upd_job {
    float *w;       /* [n][k] */
    const float *u; /* [k][k] */
    const float *e; /* [n][cnt] */
    int64_t n, k, i1, i2;
} upd_job;

static void upd_fn(void *arg, int ith, int nth) { /* rows split over the pool; per row gptq_quant.c's order */
    upd_job *j = arg;
    const int64_t cnt = j->i2 - j->i1;
    long long rb, re;
    qn_split_range(j->n, ith, nth, &rb, &re);
    for (int64_t r = rb; r < re; r++)
        for (int64_t c = 0; c < cnt; c++) {
            const float e = j->e[r * cnt + c], *urow = j->u + (j->i1 + c) * j->k + j->i2;
            float *w = j->w + r * j->k + j->i2;
            for (int64_t x = 0; x < j->k - j->i2; x++) w[x] -= e * urow[x];
        }
}

qn_status qn_calib_backend_gptq_update(qn_calib_backend *b, int64_t i1, int64_t i2, const float *e, qn_error *err) {
    ON_CUDA(b, qn_calib_cuda_gptq_update(b->cuda, i1, i2, e, err));
    qn_status st;
    if ((st = need(b, QN_CALIB_SLOT_W, "gptq_update", err)) || (st = need(b, QN_CALIB_SLOT_U, "gptq_update", err)))
        return st;
    const int64_t k = b->slot[QN_CALIB_SLOT_W].cols;
    if (b->slot[QN_CALIB_SLOT_U].cols != k || i1 < 0 || i1 >= i2 || i2 > k)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "calibration backend: gptq_update [%lld, %lld) of k %lld",
                            (long long)i1, (long long)i2, (long long)k);
    upd_job j = {.w = b->w_copy, .u = b->slot[QN_CALIB_SLOT_U].p, .e = e, .n = b->slot[QN_CALIB_SLOT_W].rows,
                 .k = k, .i1 = i1, .i2 = i2};
    run(b, upd_fn, &j);
    return QN_OK;
}
