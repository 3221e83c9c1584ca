/* gptq_quant.c — GPTQ / round-to-nearest quantization of one linear and its packing (model/gptq_quant.h).
 * H⁻¹'s upper Cholesky factor comes from one Cholesky and one triangular inverse: with J the reversal,
 * J·H·J = M·Mᵀ (M lower) gives H = R·Rᵀ for the upper R = J·M·J, so H⁻¹ = (R⁻¹)ᵀ·R⁻¹ and U = R⁻¹ = J·M⁻¹·J —
 * half the work of AutoGPTQ's cholesky → cholesky_inverse → cholesky(upper), the same U. Rows of W are
 * independent in GPTQ (the scales are per row), so the pool splits row tiles; a tile of rows shares each
 * row of U it streams. */
#include "model/gptq_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "kernels/common/half.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define QN_GPTQ_TILE_ROWS 16 /* rows sharing one pass over U: 16 rows × B floats of error stay in L1 */
#define QN_GPTQ_MSE_GRID 100.0f /* shrink steps of 1/100 ... */
#define QN_GPTQ_MSE_MAXSHRINK 0.8f /* ... down to p = 0.21 (AutoGPTQ's defaults) */

qn_gptq_params qn_gptq_params_default(void) {
    return (qn_gptq_params){.bits = 4, .group_size = 128, .sym = false, .act_order = false,
                            .static_groups = false, .v2 = false, .mse = false, .damp = 0.01f, .block_size = 128};
}

void qn_gptq_result_free(qn_gptq_result *r) {
    if (!r) return;
    free(r->q), free(r->scales), free(r->zeros), free(r->g_idx);
    memset(r, 0, sizeof *r);
}

static void run(qn_threadpool *tp, qn_task_fn fn, void *arg) {
    if (tp) qn_threadpool_run(tp, fn, arg);
    else fn(arg, 0, 1);
}

static bool have_avx2(void) { /* the loops below are target("avx2") and use no FMA */
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx2");
#else
    return false;
#endif
}

static double dotd(const double *a, const double *b, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) s0 += a[i] * b[i], s1 += a[i + 1] * b[i + 1], s2 += a[i + 2] * b[i + 2], s3 += a[i + 3] * b[i + 3];
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

/* ------------------------------------------------------------------ H⁻¹ = UᵀU */

typedef struct chol_job {
    double *a;
    int64_t k, j;
    bool avx2; /* the four-row dot products (same bits) */
} chol_job;

#if defined(__x86_64__)
/* dotd of four rows a0..a3 with one b, out[r] = dotd(ar, b, n) bit for bit: a row's four partial sums s0..s3 are
 * the four lanes of one vector (multiply, then add: -std=c11 keeps GCC from contracting dotd to FMA either), the
 * tail goes to s0, then (s0 + s1) + (s2 + s3). Four rows give four independent add chains where dotd has two. */
__attribute__((target("avx2"))) static void dotd4_avx2(const double *a0, const double *a1, const double *a2,
                                                        const double *a3, const double *b, int64_t n, double out[4]) {
    __m256d s[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    const double *a[4] = {a0, a1, a2, a3};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256d bv = _mm256_loadu_pd(b + i);
        s[0] = _mm256_add_pd(s[0], _mm256_mul_pd(_mm256_loadu_pd(a0 + i), bv));
        s[1] = _mm256_add_pd(s[1], _mm256_mul_pd(_mm256_loadu_pd(a1 + i), bv));
        s[2] = _mm256_add_pd(s[2], _mm256_mul_pd(_mm256_loadu_pd(a2 + i), bv));
        s[3] = _mm256_add_pd(s[3], _mm256_mul_pd(_mm256_loadu_pd(a3 + i), bv));
    }
    for (int r = 0; r < 4; r++) {
        double l[4];
        _mm256_storeu_pd(l, s[r]);
        for (int64_t t = i; t < n; t++) l[0] += a[r][t] * b[t];
        out[r] = (l[0] + l[1]) + (l[2] + l[3]);
    }
}
#endif

static void chol_col_fn(void *arg, int ith, int nth) { /* L[i][j] for i in (j, k) */
    chol_job *c = arg;
    const int64_t k = c->k, j = c->j;
    const double *lj = c->a + j * k;
    long long b, e;
    qn_split_range(k - j - 1, ith, nth, &b, &e);
    int64_t i = j + 1 + b;
#if defined(__x86_64__)
    if (c->avx2)
        for (; i + 4 <= j + 1 + e; i += 4) {
            double d[4];
            dotd4_avx2(c->a + i * k, c->a + (i + 1) * k, c->a + (i + 2) * k, c->a + (i + 3) * k, lj, j, d);
            for (int r = 0; r < 4; r++) c->a[(i + r) * k + j] = (c->a[(i + r) * k + j] - d[r]) / lj[j];
        }
#endif
    for (; i < j + 1 + e; i++) {
        double *li = c->a + i * k;
        li[j] = (li[j] - dotd(li, lj, j)) / lj[j];
    }
}

static void trinv_col(const double *m, int64_t k, double *xt, int64_t j) { /* column j of M⁻¹, into xt[j] */
    double *x = xt + j * k;
    x[j] = 1.0 / m[j * k + j];
    for (int64_t i = j + 1; i < k; i++) x[i] = -dotd(m + i * k + j, x + j, i - j) / m[i * k + i];
}

#if defined(__x86_64__)
/* Columns j0..j0+3 of M⁻¹ at once, bit for bit trinv_col's: lane c of every vector is column j0 + c. Column c's
 * dot product at row i runs over p < n_c = i − j0 − c, m[i][j0 + c + p]·x_c[j0 + c + p]; dotd puts p into partial
 * sum p mod 4 while p < n_c rounded down to 4 and the rest into s0. y [k][4]: y[p][c] = x_c[j0 + c + p], so
 * one step p is one load of m[i][j0 + p ..] and one of y[p]; the ragged ends go lane by lane. */
__attribute__((target("avx2"))) static void trinv_cols4_avx2(const double *m, int64_t k, double *xt, int64_t j0,
                                                              double *y) {
    for (int c = 0; c < 4; c++) { /* the rows before all four columns are under way: trinv_col's loop */
        double *x = xt + (j0 + c) * k;
        x[j0 + c] = 1.0 / m[(j0 + c) * k + j0 + c];
        for (int64_t i = j0 + c + 1; i < j0 + 4; i++)
            x[i] = -dotd(m + i * k + j0 + c, x + j0 + c, i - j0 - c) / m[i * k + i];
        for (int64_t i = j0 + c; i < j0 + 4; i++) y[(i - j0 - c) * 4 + c] = x[i];
    }
    for (int64_t i = j0 + 4; i < k; i++) {
        const double *mi = m + i * k + j0;
        const int64_t n3 = i - j0 - 3, f3 = n3 & ~(int64_t)3; /* lane 3 is the shortest */
        __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
        int64_t p = 0;
        for (; p < f3; p += 4) {
            a0 = _mm256_add_pd(a0, _mm256_mul_pd(_mm256_loadu_pd(mi + p), _mm256_loadu_pd(y + p * 4)));
            a1 = _mm256_add_pd(a1, _mm256_mul_pd(_mm256_loadu_pd(mi + p + 1), _mm256_loadu_pd(y + p * 4 + 4)));
            a2 = _mm256_add_pd(a2, _mm256_mul_pd(_mm256_loadu_pd(mi + p + 2), _mm256_loadu_pd(y + p * 4 + 8)));
            a3 = _mm256_add_pd(a3, _mm256_mul_pd(_mm256_loadu_pd(mi + p + 3), _mm256_loadu_pd(y + p * 4 + 12)));
        }
        double sum[4][4];
        _mm256_storeu_pd(sum[0], a0), _mm256_storeu_pd(sum[1], a1), _mm256_storeu_pd(sum[2], a2);
        _mm256_storeu_pd(sum[3], a3);
        for (int c = 0; c < 4; c++) {
            const int64_t n = i - j0 - c, f = n & ~(int64_t)3;
            for (int64_t pp = p; pp < n; pp++)
                sum[pp < f ? pp & 3 : 0][c] += mi[c + pp] * y[pp * 4 + c];
            const double d = (sum[0][c] + sum[1][c]) + (sum[2][c] + sum[3][c]);
            const double xi = -d / m[i * k + i];
            xt[(j0 + c) * k + i] = xi;
            y[n * 4 + c] = xi;
        }
    }
}
#endif

static void trinv_fn(void *arg, int ith, int nth) { /* xt[j][i] = (M⁻¹)[i][j], blocks of 4 columns interleaved */
    chol_job *c = arg;
    const int64_t k = c->k;
    const double *m = c->a;
    double *xt = c->a + k * k;
    double *y = NULL;
#if defined(__x86_64__)
    if (c->avx2) y = malloc(sizeof(double) * (size_t)k * 4);
#endif
    for (int64_t j0 = 4 * (int64_t)ith; j0 < k; j0 += 4 * (int64_t)nth) {
#if defined(__x86_64__)
        if (y && j0 + 4 <= k) {
            trinv_cols4_avx2(m, k, xt, j0, y);
            continue;
        }
#endif
        for (int64_t j = j0; j < j0 + 4 && j < k; j++) trinv_col(m, k, xt, j);
    }
    free(y);
}

qn_status qn_gptq_hinv_upper(double *h, int64_t k, double *u, qn_threadpool *tp) {
    return qn_gptq_hinv_upper_isa(h, k, u, tp, false);
}

qn_status qn_gptq_hinv_upper_isa(double *h, int64_t k, double *u, qn_threadpool *tp, bool scalar) {
    /* a = [M | (M⁻¹)ᵀ]: a <- J·H·J factored in place (lower), then its inverse; u <- J·M⁻¹·J */
    double *a = malloc(sizeof(double) * (size_t)k * (size_t)k * 2);
    if (!a) return QN_ERR_NOMEM;
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++) a[i * k + j] = h[(k - 1 - i) * k + (k - 1 - j)];
    chol_job c = {.a = a, .k = k, .avx2 = !scalar && have_avx2()};
    for (int64_t j = 0; j < k; j++) {
        double *lj = a + j * k;
        const double s = lj[j] - dotd(lj, lj, j);
        if (!(s > 0)) {
            free(a);
            return QN_ERR_FORMAT;
        }
        lj[j] = sqrt(s);
        c.j = j;
        if ((k - j) * j > 16384) run(tp, chol_col_fn, &c); /* small columns are not worth a fork-join */
        else chol_col_fn(&c, 0, 1);
    }
    run(tp, trinv_fn, &c);
    const double *xt = a + k * k;
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++) u[i * k + j] = j >= i ? xt[(k - 1 - j) * k + (k - 1 - i)] : 0.0;
    memcpy(h, a, sizeof(double) * (size_t)k * (size_t)k);
    free(a);
    return QN_OK;
}

/* ------------------------------------------------------------------ quantizer (AutoGPTQ quantizer.py) */

static float f16_round(float x) { return qn_f16_to_f32(qn_f32_to_f16(x)); }

/* scale/zero of the range [xmin, xmax] (xmin <= 0 <= xmax), the scale rounded to the fp16 it is stored as */
static void fit_range(float xmin, float xmax, int32_t bits, bool sym, bool v2, float *scale, int32_t *zero) {
    const int32_t maxq = (1 << bits) - 1;
    if (sym) {
        xmax = -xmin > xmax ? -xmin : xmax;
        if (xmin < 0) xmin = -xmax;
    }
    if (xmin == 0 && xmax == 0) xmin = -1, xmax = 1;
    float s = (xmax - xmin) / (float)maxq;
    int32_t z;
    if (sym) {
        z = (maxq + 1) / 2;
    } else {
        z = (int32_t)nearbyintf(-xmin / s);
        if (!v2 && z == 0) { /* v1 stores zero − 1: keep zero >= 1 (header) */
            z = 1;
            s = xmax / (float)(maxq - 1);
        }
    }
    s = f16_round(s);
    if (s == 0) s = qn_f16_to_f32(1); /* fp16 underflow: the smallest subnormal */
    *scale = s, *zero = z;
}

static inline int32_t quant1(float x, float s, int32_t z, int32_t maxq) {
    float q = nearbyintf(x / s) + (float)z;
    q = q < 0 ? 0 : q > (float)maxq ? (float)maxq : q;
    return (int32_t)q;
}

/* Σ |Q(x) − x|^2.4 over the group (AutoGPTQ's quantizer norm): the fp16 rounding of Q(x) left out, as there */
static double grid_err(const float *x, int64_t len, float s, int32_t z, int32_t maxq) {
    double e = 0;
    for (int64_t i = 0; i < len; i++) {
        const float d = fabsf(s * (float)(quant1(x[i], s, z, maxq) - z) - x[i]);
        e += (double)powf(d, 2.4f);
    }
    return e;
}

/* min-max fit, or with mse the shrink p·[xmin, xmax], p = 1, 0.99, ..., 0.21, of lowest grid_err (AutoGPTQ
 * quantizer.find_params with mse=True: grid 100, maxshrink 0.8, norm 2.4) */
static void find_params(const float *x, int64_t len, const qn_gptq_params *p, float *scale, int32_t *zero) {
    float xmin = 0, xmax = 0;
    for (int64_t i = 0; i < len; i++) {
        xmin = x[i] < xmin ? x[i] : xmin;
        xmax = x[i] > xmax ? x[i] : xmax;
    }
    fit_range(xmin, xmax, p->bits, p->sym, p->v2, scale, zero);
    if (!p->mse) return;
    const int32_t maxq = (1 << p->bits) - 1;
    double best = grid_err(x, len, *scale, *zero, maxq);
    for (int i = 1; i < (int)(QN_GPTQ_MSE_MAXSHRINK * QN_GPTQ_MSE_GRID); i++) {
        const float sh = 1.0f - (float)i / QN_GPTQ_MSE_GRID;
        float s;
        int32_t z;
        fit_range(sh * xmin, sh * xmax, p->bits, p->sym, p->v2, &s, &z);
        const double e = grid_err(x, len, s, z, maxq);
        if (e < best) best = e, *scale = s, *zero = z;
    }
}

typedef struct gptq_job {
    const qn_gptq_params *p;
    int64_t n, k, gs;
    float *w;           /* [n][k] permuted, updated in place */
    const float *u;     /* [k][k] or NULL (RTN) */
    uint8_t *qp;        /* [n][k] codes, permuted order */
    float *scale;       /* [n_groups][n] (fp16 values) */
    int32_t *zero;      /* [n_groups][n] */
    double *loss;       /* [nth] */
    bool static_groups; /* scale/zero fitted before the loop on the original columns; group = perm[col] / gs */
    const int64_t *perm;/* [k] permuted column -> original column */
    bool avx2;          /* the lazy-batch update two rows at a time (same bits) */
} gptq_job;

/* Quantizes columns [i1, i2) of row r with GPTQ's in-block error feedback. wo: the row at column i1 as the earlier
 * blocks left it (find_params reads it up to one group ahead); b1 [B] scratch; er [i2 − i1] out: the scaled
 * errors (w − q) / U_ii that the lazy-batch update spreads right of the block; *loss += Σ e². */
static void quant_row_block(const gptq_job *g, int64_t r, int64_t i1, int64_t i2, const float *wo, float *b1,
                            float *er, double *loss) {
    const qn_gptq_params *p = g->p;
    const int64_t n = g->n, k = g->k, gs = g->gs, cnt = i2 - i1;
    const int32_t maxq = (1 << p->bits) - 1;
    memcpy(b1, wo, sizeof(float) * (size_t)cnt);
    float s = 0;
    int32_t z = 0;
    for (int64_t i = 0; i < cnt; i++) {
        const int64_t col = i1 + i, grp = g->static_groups ? g->perm[col] / gs : col / gs;
        /* fitted on the outer row: earlier blocks' updates, not this block's */
        if (!g->static_groups && col % gs == 0) {
            find_params(wo + i, col + gs < k ? gs : k - col, p, &g->scale[grp * n + r], &g->zero[grp * n + r]);
        }
        s = g->scale[grp * n + r], z = g->zero[grp * n + r];
        const int32_t q = quant1(b1[i], s, z, maxq);
        g->qp[r * k + col] = (uint8_t)q;
        if (!g->u) continue;
        const float deq = s * (float)(q - z);
        const float *urow = g->u + col * k;
        const float d = urow[col], e = (b1[i] - deq) / d;
        *loss += (double)e * e;
        for (int64_t j = i + 1; j < cnt; j++) b1[j] -= e * urow[i1 + j];
        er[i] = e;
    }
}

#if defined(__x86_64__)
/* The lazy-batch update of two rows, w_r[j] -= e_r[c]·u[c][j] for c = 0..cnt−1 in order, j < len, each a multiply
 * then a subtract as in the scalar loop (same bits): 32 columns of both rows stay in registers through all cnt
 * rows of U (ldu apart), which the scalar loop streams through memory once per c. */
__attribute__((target("avx2"))) static void upd_pair_avx2(float *w0, float *w1, const float *e0, const float *e1,
                                                           const float *u, int64_t ldu, int64_t cnt, int64_t len) {
    int64_t j = 0;
    for (; j + 32 <= len; j += 32) {
        __m256 a[4], b[4];
        for (int v = 0; v < 4; v++) a[v] = _mm256_loadu_ps(w0 + j + 8 * v), b[v] = _mm256_loadu_ps(w1 + j + 8 * v);
        for (int64_t c = 0; c < cnt; c++) {
            const __m256 x0 = _mm256_set1_ps(e0[c]), x1 = _mm256_set1_ps(e1[c]);
            const float *uc = u + c * ldu + j;
            for (int v = 0; v < 4; v++) {
                const __m256 uv = _mm256_loadu_ps(uc + 8 * v);
                a[v] = _mm256_sub_ps(a[v], _mm256_mul_ps(x0, uv));
                b[v] = _mm256_sub_ps(b[v], _mm256_mul_ps(x1, uv));
            }
        }
        for (int v = 0; v < 4; v++) _mm256_storeu_ps(w0 + j + 8 * v, a[v]), _mm256_storeu_ps(w1 + j + 8 * v, b[v]);
    }
    for (; j + 8 <= len; j += 8) {
        __m256 a = _mm256_loadu_ps(w0 + j), b = _mm256_loadu_ps(w1 + j);
        for (int64_t c = 0; c < cnt; c++) {
            const __m256 uv = _mm256_loadu_ps(u + c * ldu + j);
            a = _mm256_sub_ps(a, _mm256_mul_ps(_mm256_set1_ps(e0[c]), uv));
            b = _mm256_sub_ps(b, _mm256_mul_ps(_mm256_set1_ps(e1[c]), uv));
        }
        _mm256_storeu_ps(w0 + j, a), _mm256_storeu_ps(w1 + j, b);
    }
    for (; j < len; j++)
        for (int64_t c = 0; c < cnt; c++) w0[j] -= e0[c] * u[c * ldu + j], w1[j] -= e1[c] * u[c * ldu + j];
}
#endif

/* The CPU path: tiles of rows, each tile through every block, the lazy-batch update fused per tile. */
static void gptq_rows_fn(void *arg, int ith, int nth) {
    gptq_job *g = arg;
    const int64_t n = g->n, k = g->k, B = g->p->block_size;
    const int64_t n_tiles = (n + QN_GPTQ_TILE_ROWS - 1) / QN_GPTQ_TILE_ROWS;
    long long tb, te;
    qn_split_range(n_tiles, ith, nth, &tb, &te);
    float *w1 = malloc(sizeof(float) * (size_t)B * QN_GPTQ_TILE_ROWS * 2);
    float *errs = w1 + B * QN_GPTQ_TILE_ROWS;
    double loss = 0;
    for (int64_t t = tb; w1 && t < te; t++) {
        const int64_t r0 = t * QN_GPTQ_TILE_ROWS, r1 = r0 + QN_GPTQ_TILE_ROWS < n ? r0 + QN_GPTQ_TILE_ROWS : n;
        for (int64_t i1 = 0; i1 < k; i1 += B) {
            const int64_t i2 = i1 + B < k ? i1 + B : k, cnt = i2 - i1;
            for (int64_t r = r0; r < r1; r++)
                quant_row_block(g, r, i1, i2, g->w + r * k + i1, w1 + (r - r0) * B, errs + (r - r0) * B, &loss);
            if (!g->u || i2 == k) continue;
            int64_t r = r0; /* W[:, i2:] -= Err · U[i1:i2, i2:] */
#if defined(__x86_64__)
            if (g->avx2)
                for (; r + 2 <= r1; r += 2)
                    upd_pair_avx2(g->w + r * k + i2, g->w + (r + 1) * k + i2, errs + (r - r0) * B,
                                  errs + (r + 1 - r0) * B, g->u + i1 * k + i2, k, cnt, k - i2);
#endif
            for (int64_t c = 0; c < cnt; c++) {
                const float *urow = g->u + (i1 + c) * k + i2;
                for (int64_t rr = r; rr < r1; rr++) {
                    const float e = errs[(rr - r0) * B + c];
                    float *w = g->w + rr * k + i2;
                    for (int64_t j = 0; j < k - i2; j++) w[j] -= e * urow[j];
                }
            }
        }
    }
    g->loss[ith] = w1 ? loss : NAN;
    free(w1);
}

/* ------------------------------------------------------------------ GPTQ on a calibration backend */

typedef struct blk_job {
    const gptq_job *g;
    int64_t i1, i2, span; /* block [i1, i2); wb holds columns [i1, i1 + span) */
    const float *wb;      /* [n][span] */
    float *b1, *er;       /* [n][B], [n][i2 − i1] */
    double *row_loss;     /* [n] */
} blk_job;

static void blk_rows_fn(void *arg, int ith, int nth) {
    blk_job *j = arg;
    const int64_t B = j->g->p->block_size;
    long long rb, re;
    qn_split_range(j->g->n, ith, nth, &rb, &re);
    for (int64_t r = rb; r < re; r++)
        quant_row_block(j->g, r, j->i1, j->i2, j->wb + r * j->span, j->b1 + r * B, j->er + r * (j->i2 - j->i1),
                        &j->row_loss[r]);
}

/* Block by block over all rows: W and U live on the backend; per block the columns [i1, hi) come back (hi
 * reaches one group past a group start for find_params), the rows are quantized on the CPU pool, and the
 * backend applies W[:, i2:] -= Err·U[i1:i2, i2:], the O(n·k²) part of GPTQ. */
static qn_status gptq_blocks(qn_calib_backend *be, gptq_job *g, qn_threadpool *tp, qn_error *err) {
    const int64_t n = g->n, k = g->k, B = g->p->block_size, gs = g->gs;
    const int64_t span_max = B + gs < k ? B + gs : k;
    qn_status st;
    if ((st = qn_calib_backend_load(be, QN_CALIB_SLOT_W, g->w, n, k, err)) ||
        (st = qn_calib_backend_load(be, QN_CALIB_SLOT_U, g->u, k, k, err)))
        return st;
    float *wb = malloc(sizeof(float) * (size_t)(n * span_max)), *b1 = malloc(sizeof(float) * (size_t)(n * B));
    float *er = malloc(sizeof(float) * (size_t)(n * B));
    double *row_loss = calloc((size_t)n, sizeof(double));
    if (!wb || !b1 || !er || !row_loss) {
        st = qn_error_set(err, QN_ERR_NOMEM, "gptq: out of memory (k %lld, n %lld)", (long long)k, (long long)n);
        goto done;
    }
    for (int64_t i1 = 0; i1 < k; i1 += B) {
        const int64_t i2 = i1 + B < k ? i1 + B : k;
        int64_t hi = i2;
        for (int64_t c = i1; !g->static_groups && c < i2; c++)
            if (c % gs == 0 && (c + gs < k ? c + gs : k) > hi) hi = c + gs < k ? c + gs : k;
        if ((st = qn_calib_backend_read_cols(be, QN_CALIB_SLOT_W, i1, hi, wb, err))) goto done;
        blk_job j = {.g = g, .i1 = i1, .i2 = i2, .span = hi - i1, .wb = wb, .b1 = b1, .er = er, .row_loss = row_loss};
        run(tp, blk_rows_fn, &j);
        if (i2 < k && (st = qn_calib_backend_gptq_update(be, i1, i2, er, err))) goto done;
    }
    g->loss[0] = 0;
    for (int64_t r = 0; r < n; r++) g->loss[0] += row_loss[r];
done:
    free(wb), free(b1), free(er), free(row_loss);
    return st;
}

typedef struct diag_key {
    double key;
    int64_t idx;
} diag_key;
static int cmp_desc(const void *a, const void *b) { /* by descending key, ties by index (a stable sort) */
    const diag_key *x = a, *y = b;
    return x->key > y->key ? -1 : x->key < y->key ? 1 : (x->idx > y->idx) - (x->idx < y->idx);
}

/* AutoGPTQ static_groups: every group's scale/zero fitted before GPTQ runs, on the original weights (dead columns
 * zeroed) in the original column order, so the grid is RTN's and g_idx stays k / gs under act-order.
 * scale/zero: [n_groups][n]. */
static qn_status fit_static_groups(const float *w, int64_t n, int64_t k, int64_t gs, const double *diag,
                                   const qn_gptq_params *p, float *scale, int32_t *zero, qn_error *err) {
    float *row = malloc(sizeof(float) * (size_t)k);
    if (!row) return qn_error_set(err, QN_ERR_NOMEM, "gptq: out of memory");
    for (int64_t r = 0; r < n; r++) {
        for (int64_t j = 0; j < k; j++) row[j] = diag[j] == 0 ? 0.0f : w[r * k + j];
        for (int64_t g0 = 0; g0 < k; g0 += gs)
            find_params(row + g0, g0 + gs < k ? gs : k - g0, p, &scale[(g0 / gs) * n + r], &zero[(g0 / gs) * n + r]);
    }
    free(row);
    return QN_OK;
}

qn_status qn_gptq_quantize(const float *w, int64_t n, int64_t k, const float *h, const qn_gptq_params *p,
                           qn_threadpool *tp, qn_gptq_result *out, qn_error *err) {
    return qn_gptq_quantize_on(NULL, w, n, k, h, p, tp, out, err);
}

qn_status qn_gptq_quantize_on(qn_calib_backend *be, const float *w, int64_t n, int64_t k, const float *h,
                              const qn_gptq_params *p, qn_threadpool *tp, qn_gptq_result *out, qn_error *err) {
    memset(out, 0, sizeof *out);
    if (!w || n <= 0 || k <= 0 || !p || (p->bits != 2 && p->bits != 3 && p->bits != 4 && p->bits != 8) ||
        (p->group_size <= 0 && p->group_size != -1) || p->block_size <= 0 || !(p->damp >= 0))
        return qn_error_set(err, QN_ERR_INVALID_ARG, "gptq: bad parameters (bits %d, group_size %d)", p ? p->bits : 0,
                            p ? p->group_size : 0);
    const int64_t gs = p->group_size > 0 ? p->group_size : k, G = (k + gs - 1) / gs;
    const int nth = tp ? qn_threadpool_size(tp) : 1;
    qn_status st = QN_OK;
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)k);
    float *wp = malloc(sizeof(float) * (size_t)(n * k));
    float *uf = h ? malloc(sizeof(float) * (size_t)(k * k)) : NULL;
    double *hd = h ? malloc(sizeof(double) * (size_t)(k * k)) : NULL, *ud = h ? malloc(sizeof(double) * (size_t)(k * k)) : NULL;
    double *diag = malloc(sizeof(double) * (size_t)k), *loss = calloc((size_t)nth, sizeof(double));
    uint8_t *qp = malloc((size_t)(n * k));
    float *scale = malloc(sizeof(float) * (size_t)(G * n));
    out->q = malloc((size_t)(n * k));
    out->scales = malloc(sizeof(uint16_t) * (size_t)(G * n));
    out->zeros = malloc(sizeof(int32_t) * (size_t)(G * n));
    out->g_idx = malloc(sizeof(int32_t) * (size_t)k);
    if (!perm || !wp || (h && (!uf || !hd || !ud)) || !diag || !loss || !qp || !scale || !out->q || !out->scales ||
        !out->zeros || !out->g_idx) {
        st = qn_error_set(err, QN_ERR_NOMEM, "gptq: out of memory (k %lld, n %lld)", (long long)k, (long long)n);
        goto done;
    }
    out->k = k, out->n = n, out->n_groups = G;
    for (int64_t i = 0; i < k; i++) perm[i] = i, diag[i] = h ? h[i * k + i] : 1.0;
    if (h && p->act_order) {
        diag_key *dk = malloc(sizeof *dk * (size_t)k);
        if (!dk) {
            st = qn_error_set(err, QN_ERR_NOMEM, "gptq: out of memory");
            goto done;
        }
        for (int64_t i = 0; i < k; i++) dk[i] = (diag_key){diag[i] == 0 ? 1.0 : diag[i], i}; /* dead: H_ii = 1 */
        qsort(dk, (size_t)k, sizeof *dk, cmp_desc);
        for (int64_t i = 0; i < k; i++) perm[i] = dk[i].idx;
        free(dk);
    }
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < k; j++) wp[r * k + j] = diag[perm[j]] == 0 ? 0.0f : w[r * k + perm[j]]; /* dead */
    if (h) {
        double mean = 0;
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) hd[i * k + j] = h[perm[i] * k + perm[j]];
        for (int64_t i = 0; i < k; i++) {
            if (hd[i * k + i] == 0) hd[i * k + i] = 1;
            mean += hd[i * k + i];
        }
        mean /= (double)k;
        for (int64_t i = 0; i < k; i++) hd[i * k + i] += (double)p->damp * mean;
        if ((st = qn_gptq_hinv_upper_isa(hd, k, ud, tp, p->scalar)) != QN_OK) {
            st = qn_error_set(err, st == QN_ERR_NOMEM ? st : QN_ERR_FORMAT,
                              "gptq: the damped Hessian (k %lld) is not positive definite; raise --damp", (long long)k);
            goto done;
        }
        for (int64_t i = 0; i < k * k; i++) uf[i] = (float)ud[i];
    }
    const bool stat = h && p->static_groups;
    if (stat && (st = fit_static_groups(w, n, k, gs, diag, p, scale, out->zeros, err)) != QN_OK) goto done;
    gptq_job job = {.p = p, .n = n, .k = k, .gs = gs, .w = wp, .u = uf, .qp = qp, .scale = scale, .zero = out->zeros,
                    .loss = loss, .static_groups = stat, .perm = perm, .avx2 = !p->scalar && have_avx2()};
    if (be && h) {
        if ((st = gptq_blocks(be, &job, tp, err)) != QN_OK) goto done;
    } else {
        run(tp, gptq_rows_fn, &job);
    }
    for (int i = 0; i < nth; i++) {
        if (isnan(loss[i])) {
            st = qn_error_set(err, QN_ERR_NOMEM, "gptq: out of memory");
            goto done;
        }
        out->loss += loss[i];
    }
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < k; j++) out->q[r * k + perm[j]] = qp[r * k + j];
    for (int64_t j = 0; j < k; j++) out->g_idx[perm[j]] = (int32_t)((stat ? perm[j] : j) / gs);
    for (int64_t i = 0; i < G * n; i++) out->scales[i] = qn_f32_to_f16(scale[i]);
done:
    free(perm), free(wp), free(uf), free(hd), free(ud), free(diag), free(loss), free(qp), free(scale);
    if (st != QN_OK) qn_gptq_result_free(out);
    return st;
}

void qn_gptq_result_dequant(const qn_gptq_result *r, float *deq) {
    for (int64_t i = 0; i < r->n; i++)
        for (int64_t j = 0; j < r->k; j++) {
            const int64_t g = r->g_idx[j];
            const float s = qn_f16_to_f32(r->scales[g * r->n + i]);
            deq[i * r->k + j] = f16_round(s * (float)((int32_t)r->q[i * r->k + j] - r->zeros[g * r->n + i]));
        }
}

/* ------------------------------------------------------------------ packing */

void qn_gptq_pack_put(uint32_t *base, int64_t stride, int32_t bits, int64_t t, uint32_t v) {
    const int64_t pos = (int64_t)bits * t, wd = pos >> 5;
    const int off = (int)(pos & 31);
    base[wd * stride] |= v << off;
    if (off + bits > 32) base[(wd + 1) * stride] |= v >> (32 - off);
}

void qn_gptq_pack(const qn_gptq_result *r, int32_t bits, bool v2, int32_t *qweight, int32_t *qzeros) {
    const int64_t n = r->n, k = r->k, words = n * bits / 32;
    const uint32_t mask = (1u << bits) - 1u;
    memset(qweight, 0, sizeof(int32_t) * (size_t)(k * bits / 32 * n));
    memset(qzeros, 0, sizeof(int32_t) * (size_t)(r->n_groups * words));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) qn_gptq_pack_put((uint32_t *)qweight + i, n, bits, j, r->q[i * k + j] & mask);
    for (int64_t g = 0; g < r->n_groups; g++)
        for (int64_t i = 0; i < n; i++) {
            const int32_t z = r->zeros[g * n + i] - (v2 ? 0 : 1);
            qn_gptq_pack_put((uint32_t *)qzeros + g * words, 1, bits, i, (uint32_t)z & mask);
        }
}
