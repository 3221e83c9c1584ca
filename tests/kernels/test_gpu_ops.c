/* test_gpu_ops.c — the GPU ops of kernels/ops/ops_cuda.h against CPU references:
 *   embed:        bit-exact against QN_QFORMATS[fmt].dequant_ref of each gathered row (the formulas
 *                 are exact fp32, formats.md §2.2), every format, repeated and unsorted token ids;
 *   rmsnorm, add_rmsnorm, silu_mul: fp16 output against fp16(double-precision reference): at most 1 fp16
 *                 ulp apart (the f32 computation is within ~1e-6 relative of the exact value, so the
 *                 result rounds to fp16(ref) or, next to a rounding boundary, to its neighbour; any
 *                 1-ulp neighbour is within 1.5 ulp of ref), and NMSE <= 1e-6 (fp16 rounding alone
 *                 gives ~1e-7); the residual add bit-exact against the f32 add;
 *   f32_to_f16:   bit-exact against half.h's qn_f32_to_f16 (round to nearest even), NaN only as NaN;
 *   q8 outputs of rmsnorm (plain and with a row gather), add_rmsnorm and silu_mul, written into a matmul
 *                 workspace where qn_quant_q8_x_in_workspace puts them: fp16 output (and the residual)
 *                 bit-identical to the op without q8, codes and records bit-identical to
 *                 qn_mmvq_quantize_x_ref of that fp16 output (what the int8 matmul's quantizer writes, so
 *                 x_ready gives the same result), nothing else of the workspace written; K = 4096, 14336,
 *                 576, 1536 x rows 1..5, both norm variants (vectorized, strided), a zero block per row.
 * Shapes n = 576, 1000, 4097, 14336 (and the format's block multiples for embed) x rows 1..37.
 * Outputs are poisoned (0xFF bytes: NaN) before every call and a guard region after them must survive;
 * the norms must also give the same bits for a row alone and inside a batch (fixed reduction order).
 * Exits 77 (ctest: skipped) when there is no CUDA device. QN_TEST_QUICK=1 trims the cases. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test.h"
#include "kernels/common/half.h"
#include "kernels/ops/ops_cuda.h"
#include "kernels/quant/gguf/kq_mmvq.h"
#include "kernels/quant/qformat.h"
#include "kernels/quant/quant.h"

#define GUARD 256 /* elements past every output */

static int g_quick;

/* ------------------------------------------------------------------------------------------------
 * fp16 checks */

/* fp16 bit pattern -> position on the number line (adjacent finite values differ by 1) */
static int32_t f16_ord(uint16_t h) { return (h & 0x8000) ? -(int32_t)(h & 0x7fff) : (int32_t)h; }

/* fp16(v): v rounded once to nearest even (v / ulp is exact: ulp is a power of two) */
static uint16_t f16_of_double(double v) {
    if (!isfinite(v)) return qn_f32_to_f16((float)v);
    const double a = fabs(v);
    int e;
    frexp(a, &e); /* a in [2^(e-1), 2^e) */
    const double ulp = a < 0x1p-14 ? 0x1p-24 : ldexp(1.0, e - 11);
    const double q = nearbyint(v / ulp) * ulp;
    if (fabs(q) > 65504.0) return v < 0 ? 0xfc00 : 0x7c00;
    return qn_f32_to_f16((float)q); /* exact: q is an fp16 value */
}

typedef struct f16_stats {
    size_t n, n_off1, n_bad;
    double num, den;
} f16_stats;

/* got: fp16 outputs, ref: double references. Element bad when NaN or > 1 ulp from fp16(ref). */
static void f16_check(f16_stats *s, const uint16_t *got, const double *ref, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++) {
        const uint16_t want = f16_of_double(ref[i]);
        const float g = qn_f16_to_f32(got[i]);
        const int32_t d = abs(f16_ord(got[i]) - f16_ord(want));
        if (isnan(g) || d > 1) {
            if (s->n_bad++ < 5)
                fprintf(stderr, "  %s: [%zu] got %.9g (0x%04x) ref %.9g fp16(ref) 0x%04x\n", what, i, g, got[i], ref[i],
                        want);
        } else {
            s->n_off1 += d == 1;
        }
        s->num += ((double)g - ref[i]) * ((double)g - ref[i]);
        s->den += ref[i] * ref[i];
    }
    s->n += n;
}

static void f16_report(const f16_stats *s, const char *what) {
    const double nmse = s->den > 0 ? s->num / s->den : s->num;
    fprintf(stderr, "  %s: %zu outputs, %zu one ulp off fp16(ref), nmse %.3g\n", what, s->n, s->n_off1, nmse);
    if (s->n_bad) fail_msg("%s: %zu outputs more than 1 fp16 ulp from the reference", what, s->n_bad);
    if (!(nmse <= 1e-6)) fail_msg("%s: nmse %.3g > 1e-6", what, nmse);
}

/* ------------------------------------------------------------------------------------------------
 * embed */

static const qn_qformat EMBED_FORMATS[] = {
    QN_QFORMAT_F32,  QN_QFORMAT_F16,  QN_QFORMAT_BF16, QN_QFORMAT_Q4_0, QN_QFORMAT_Q4_1,
    QN_QFORMAT_Q5_0, QN_QFORMAT_Q5_1, QN_QFORMAT_Q8_0, QN_QFORMAT_Q2_K, QN_QFORMAT_Q3_K,
    QN_QFORMAT_Q4_K, QN_QFORMAT_Q5_K, QN_QFORMAT_Q6_K,
};
#define N_EMBED_FORMATS (int)(sizeof EMBED_FORMATS / sizeof EMBED_FORMATS[0])

/* One table of n_vocab rows (reference quantizer on normal data, a few rows scaled to stress the
 * scales), n token ids gathered: ids repeat, are unsorted and include the first and last row. */
static void embed_case(qn_qformat fmt, int64_t n_embd, int32_t n_vocab, int32_t n, uint64_t seed) {
    const qn_qformat_traits *t = &QN_QFORMATS[fmt];
    qn_rng r;
    qn_rng_seed(&r, seed);
    const size_t rb = qn_qformat_row_bytes(fmt, n_embd);
    uint8_t *table = malloc(rb * (size_t)n_vocab);
    float *src = malloc(sizeof(float) * (size_t)n_embd);
    float *ref = malloc(sizeof(float) * (size_t)(n * n_embd));
    float *got = malloc(sizeof(float) * (size_t)(n * n_embd));
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)n);
    assert_true(table && src && ref && got && tok);
    for (int32_t v = 0; v < n_vocab; v++) {
        const float scale = (v % 7 == 3) ? 40.0f : (v % 7 == 5) ? 1e-3f : 1.0f;
        qn_rng_fill_normal(&r, src, (size_t)n_embd, scale);
        t->quantize_ref(src, table + rb * (size_t)v, n_embd);
    }
    for (int32_t i = 0; i < n; i++) {
        const uint64_t x = qn_rng_u64(&r);
        if (i < 2) tok[i] = i == 0 ? n_vocab - 1 : 0;
        else tok[i] = (x & 3) == 0 && i > 2 ? tok[i - 2] : (int32_t)(x % (uint64_t)n_vocab);
    }
    for (int32_t i = 0; i < n; i++) t->dequant_ref(table + rb * (size_t)tok[i], ref + (int64_t)i * n_embd, n_embd);

    void *dt = dev_upload(table, rb * (size_t)n_vocab);
    int32_t *dtok = dev_upload(tok, sizeof(int32_t) * (size_t)n);
    const size_t out_bytes = sizeof(float) * (size_t)(n * n_embd);
    float *dout = dev_poisoned(out_bytes, GUARD * sizeof(float));
    char what[96];
    snprintf(what, sizeof what, "embed %s n_embd=%lld n=%d", t->name, (long long)n_embd, n);
    const qn_status st = qn_embed_cuda(fmt, dt, n_embd, dtok, n, dout, g_stream);
    qn_status st2;
    if (st != QN_OK) fail_msg("%s: %s", what, qn_status_str(st));
    dev_fetch(got, dout, out_bytes, GUARD * sizeof(float), what);
    size_t bad = 0;
    for (int64_t i = 0; i < (int64_t)n * n_embd; i++)
        if (qn_f32_as_u32(got[i]) != qn_f32_as_u32(ref[i]) && bad++ < 5)
            fprintf(stderr, "  %s: token %lld (id %d) elem %lld got %.9g (0x%08x) ref %.9g (0x%08x)\n", what,
                    (long long)(i / n_embd), tok[i / n_embd], (long long)(i % n_embd), got[i], qn_f32_as_u32(got[i]),
                    ref[i], qn_f32_as_u32(ref[i]));
    if (bad) fail_msg("%s: %zu values differ from dequant_ref", what, bad);
    /* vocab-parallel: the middle third of the rows as a table of its own; other ids give zero rows */
    const int32_t v0 = n_vocab / 3, nv = n_vocab / 3;
    CK(cudaMemset(dout, 0xff, out_bytes));
    st2 = qn_embed_rows_cuda(fmt, (const uint8_t *)dt + rb * (size_t)v0, n_embd, v0, nv, dtok, n, dout, g_stream);
    if (st2 != QN_OK) fail_msg("%s rows [%d, %d): %s", what, v0, v0 + nv, qn_status_str(st2));
    dev_fetch(got, dout, out_bytes, GUARD * sizeof(float), what);
    for (int64_t i = 0; i < (int64_t)n * n_embd; i++) {
        const int32_t id = tok[i / n_embd];
        const float want = id >= v0 && id < v0 + nv ? ref[i] : 0.0f;
        if (qn_f32_as_u32(got[i]) != qn_f32_as_u32(want) && bad++ < 5)
            fprintf(stderr, "  %s rows [%d, %d): id %d elem %lld got %.9g want %.9g\n", what, v0, v0 + nv, id,
                    (long long)(i % n_embd), got[i], want);
    }
    if (bad) fail_msg("%s: %zu values differ from the row-range reference", what, bad);
    cudaFree(dt), cudaFree(dtok), cudaFree(dout);
    free(table), free(src), free(ref), free(got), free(tok);
}

static void test_embed(void **state) {
    (void)state;
    for (int f = 0; f < N_EMBED_FORMATS; f++) {
        const qn_qformat fmt = EMBED_FORMATS[f];
        const int64_t be = QN_QFORMATS[fmt].block_elems;
        /* plain types: odd widths; blocks: 1 block, 576 = 18 x 32 / 3 x 256 - 192, a large one */
        const int64_t plain[] = {1, 576, 1000, 4097}, legacy[] = {32, 576, 4128}, kq[] = {256, 768, 4352};
        const int64_t *ne = be == 1 ? plain : be == 32 ? legacy : kq;
        const int n_ne = be == 1 ? 4 : 3;
        const int32_t ns[] = {1, 5, 37};
        for (int i = 0; i < n_ne; i++)
            for (int j = 0; j < 3; j++) {
                if (g_quick && j == 1) continue;
                embed_case(fmt, ne[i], 97, ns[j], 1000u + 31u * (uint64_t)f + 7u * (uint64_t)i + (uint64_t)j);
            }
    }
    fprintf(stderr, "  embed: %d formats bit-exact against dequant_ref\n", N_EMBED_FORMATS);
}

static void test_embed_args(void **state) {
    (void)state;
    float *dout = dev_poisoned(sizeof(float) * 256, 0);
    int32_t *dtok = dev_upload((int32_t[]){0}, sizeof(int32_t));
    void *dt = dev_poisoned(1024, 0);
    assert_int_equal(qn_embed_cuda(QN_QFORMAT_Q8_1, dt, 32, dtok, 1, dout, g_stream), QN_ERR_UNSUPPORTED);
    assert_int_equal(qn_embed_cuda(QN_QFORMAT_Q8_K, dt, 256, dtok, 1, dout, g_stream), QN_ERR_UNSUPPORTED);
    assert_int_equal(qn_embed_cuda(QN_QFORMAT_Q4_0, dt, 48, dtok, 1, dout, g_stream), QN_ERR_SHAPE);
    assert_int_equal(qn_embed_cuda(QN_QFORMAT_Q4_K, dt, 32, dtok, 1, dout, g_stream), QN_ERR_SHAPE);
    assert_int_equal(qn_embed_cuda(QN_QFORMAT_F16, dt, 0, dtok, 1, dout, g_stream), QN_ERR_SHAPE);
    assert_int_equal(qn_embed_cuda(QN_QFORMAT_F16, dt, 16, dtok, -1, dout, g_stream), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_embed_cuda(QN_QFORMAT_F16, dt, 16, dtok, 0, dout, g_stream), QN_OK);
    CK(cudaStreamSynchronize(g_stream));
    cudaFree(dout), cudaFree(dtok), cudaFree(dt);
}

/* ------------------------------------------------------------------------------------------------
 * RMSNorm, plain and with a row gather */

/* One case of a row op: n columns, n_rows rows, inputs from seed; adds its outputs to s. */
typedef void (*row_case_fn)(int64_t n, int32_t n_rows, uint64_t seed, f16_stats *s);

/* Every n of 576, 1000, 4097, 14336 x rows 1, 3, 7, 37 (quick: 1 and 37), then the verdict. */
static void sweep_rows(row_case_fn fn, uint64_t seed, const char *what) {
    static const int64_t ns[] = {576, 1000, 4097, 14336};
    static const int32_t rows[] = {1, 3, 7, 37};
    f16_stats s = {0};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            if (g_quick && (j == 1 || j == 2)) continue;
            fn(ns[i], rows[j], seed + 10u * (uint64_t)i + (uint64_t)j, &s);
        }
    f16_report(&s, what);
}

/* out[t] = x[src(t)] / sqrt(mean(x[src(t)]^2) + eps) * w, in double */
static void rmsnorm_ref(const float *x, const int32_t *rows, int32_t n_rows, int64_t n, const float *w, float eps,
                        double *ref) {
    for (int32_t t = 0; t < n_rows; t++) {
        const float *xr = x + (int64_t)(rows ? rows[t] : t) * n;
        double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        const double scale = 1.0 / sqrt(ss / (double)n + (double)eps);
        for (int64_t i = 0; i < n; i++) ref[(int64_t)t * n + i] = (double)xr[i] * scale * (double)w[i];
    }
}

/* Row t's input scale varies (1e-3 .. 30) so that the normalisation matters. */
static void fill_rows(qn_rng *r, float *x, int32_t n_rows, int64_t n) {
    for (int32_t t = 0; t < n_rows; t++)
        qn_rng_fill_normal(r, x + (int64_t)t * n, (size_t)n, t % 3 == 0 ? 30.0f : t % 3 == 1 ? 1.0f : 1e-3f);
}

static void norm_case(int64_t n, int32_t n_rows, int gather, uint64_t seed, f16_stats *s) {
    qn_rng r;
    qn_rng_seed(&r, seed);
    const int32_t n_src = gather ? 41 : n_rows;
    float *x = malloc(sizeof(float) * (size_t)(n_src * n));
    float *w = malloc(sizeof(float) * (size_t)n);
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)n_rows);
    double *ref = malloc(sizeof(double) * (size_t)(n_rows * n));
    uint16_t *got = malloc(2 * (size_t)(n_rows * n)), *one = malloc(2 * (size_t)n);
    assert_true(x && w && rows && ref && got && one);
    fill_rows(&r, x, n_src, n);
    for (int64_t i = 0; i < n; i++) w[i] = 1.0f + 0.25f * qn_rng_normal(&r);
    for (int32_t t = 0; t < n_rows; t++) rows[t] = (t % 4 == 3) ? rows[t - 1] : (int32_t)((t * 17 + 5) % n_src);
    const float eps = 1e-5f;
    rmsnorm_ref(x, gather ? rows : NULL, n_rows, n, w, eps, ref);

    float *dx = dev_upload(x, sizeof(float) * (size_t)(n_src * n));
    float *dw = dev_upload(w, sizeof(float) * (size_t)n);
    int32_t *drows = dev_upload(rows, sizeof(int32_t) * (size_t)n_rows);
    const size_t ob = 2 * (size_t)(n_rows * n);
    uint16_t *dout = dev_poisoned(ob, 2 * GUARD);
    char what[96];
    snprintf(what, sizeof what, "rmsnorm n=%lld rows=%d%s", (long long)n, n_rows, gather ? " gather" : "");
    qn_status st = qn_rmsnorm_cuda(dx, gather ? drows : NULL, n_rows, n, dw, eps, dout, NULL, g_stream);
    if (st != QN_OK) fail_msg("%s: %s", what, qn_status_str(st));
    dev_fetch(got, dout, ob, 2 * GUARD, what);
    f16_check(s, got, ref, (size_t)(n_rows * n), what);

    /* the last row alone gives the same bits as inside the batch */
    const int32_t last = n_rows - 1;
    CK(cudaMemset(dout, 0xFF, ob + 2 * GUARD));
    st = qn_rmsnorm_cuda(gather ? dx : dx + (int64_t)last * n, gather ? drows + last : NULL, 1, n, dw, eps, dout,
                         NULL, g_stream);
    assert_int_equal(st, QN_OK);
    dev_fetch(one, dout, 2 * (size_t)n, 2 * GUARD, what);
    if (memcmp(one, got + (int64_t)last * n, 2 * (size_t)n) != 0)
        fail_msg("%s: row alone differs from the batch", what);

    cudaFree(dx), cudaFree(dw), cudaFree(drows), cudaFree(dout);
    free(x), free(w), free(rows), free(ref), free(got), free(one);
}

static void norm_plain(int64_t n, int32_t n_rows, uint64_t seed, f16_stats *s) { norm_case(n, n_rows, 0, seed, s); }
static void norm_gather(int64_t n, int32_t n_rows, uint64_t seed, f16_stats *s) { norm_case(n, n_rows, 1, seed, s); }

static void test_rmsnorm(void **state) {
    (void)state;
    sweep_rows(norm_plain, 200, "rmsnorm");
    sweep_rows(norm_gather, 300, "rmsnorm gather");
}

/* ------------------------------------------------------------------------------------------------
 * residual add + RMSNorm */

static void add_norm_case(int64_t n, int32_t n_rows, int with_norm, uint64_t seed, f16_stats *s) {
    qn_rng r;
    qn_rng_seed(&r, seed);
    const size_t nn = (size_t)(n_rows * n);
    float *x = malloc(sizeof(float) * nn), *y = malloc(sizeof(float) * nn), *sum = calloc(nn, sizeof(float));
    float *xgot = malloc(sizeof(float) * nn), *w = malloc(sizeof(float) * (size_t)n);
    double *ref = malloc(sizeof(double) * nn);
    uint16_t *got = malloc(2 * nn), *poison = malloc(2 * nn);
    assert_true(x && y && sum && xgot && w && ref && got && poison);
    fill_rows(&r, x, n_rows, n);
    qn_rng_fill_normal(&r, y, nn, 2.0f);
    for (int64_t i = 0; i < n; i++) w[i] = 1.0f + 0.25f * qn_rng_normal(&r);
    for (size_t i = 0; i < nn; i++) sum[i] = x[i] + y[i]; /* f32 add, rounded once (no contraction in C11) */
    const float eps = 1e-6f;
    rmsnorm_ref(sum, NULL, n_rows, n, w, eps, ref);

    float *dx = dev_upload(x, sizeof(float) * nn), *dy = dev_upload(y, sizeof(float) * nn);
    float *dw = dev_upload(w, sizeof(float) * (size_t)n);
    uint16_t *dout = dev_poisoned(2 * nn, 2 * GUARD);
    char what[96];
    snprintf(what, sizeof what, "add_rmsnorm n=%lld rows=%d%s", (long long)n, n_rows, with_norm ? "" : " add only");
    const qn_status st =
        qn_add_rmsnorm_cuda(dx, dy, n_rows, n, with_norm ? dw : NULL, eps, with_norm ? dout : NULL, NULL, g_stream);
    if (st != QN_OK) fail_msg("%s: %s", what, qn_status_str(st));
    dev_fetch(got, dout, 2 * nn, 2 * GUARD, what);
    CK(cudaMemcpy(xgot, dx, sizeof(float) * nn, cudaMemcpyDeviceToHost));
    if (memcmp(xgot, sum, sizeof(float) * nn) != 0) fail_msg("%s: x + y differs from the f32 add", what);
    if (with_norm) {
        f16_check(s, got, ref, nn, what);
    } else { /* out untouched */
        memset(poison, 0xFF, 2 * nn);
        if (memcmp(got, poison, 2 * nn) != 0) fail_msg("%s: wrote out", what);
    }
    cudaFree(dx), cudaFree(dy), cudaFree(dw), cudaFree(dout);
    free(x), free(y), free(sum), free(xgot), free(w), free(ref), free(got), free(poison);
}

static void add_norm_fused(int64_t n, int32_t n_rows, uint64_t seed, f16_stats *s) {
    add_norm_case(n, n_rows, 1, seed, s);
}

static void test_add_rmsnorm(void **state) {
    (void)state;
    sweep_rows(add_norm_fused, 400, "add_rmsnorm");
    f16_stats s = {0};
    add_norm_case(4097, 5, 0, 499, &s); /* w == NULL: the add alone */
}

/* ------------------------------------------------------------------------------------------------
 * SiLU * mul */

static void silu_case(int64_t n, int32_t n_rows, uint64_t seed, f16_stats *s) {
    qn_rng r;
    qn_rng_seed(&r, seed);
    const size_t nn = (size_t)(n_rows * n);
    float *g = malloc(sizeof(float) * nn), *u = malloc(sizeof(float) * nn);
    double *ref = malloc(sizeof(double) * nn);
    uint16_t *got = malloc(2 * nn);
    assert_true(g && u && ref && got);
    for (size_t i = 0; i < nn; i++) {
        g[i] = qn_rng_uniform(&r, -20.0f, 20.0f);
        u[i] = 3.0f * qn_rng_normal(&r);
    }
    /* the tails: e^-g overflows f32 past g < -88.7, the fast division gives up past -87.3 */
    const float special[] = {0.0f, -0.0f, -87.0f, -88.0f, -89.0f, -100.0f, 88.0f, 100.0f, 1e-30f, -1e-30f, 0.5f, -0.5f};
    for (size_t i = 0; i < sizeof special / sizeof special[0] && i < nn; i++) g[(i * 7919) % nn] = special[i];
    for (size_t i = 0; i < nn; i++) ref[i] = (double)g[i] / (1.0 + exp(-(double)g[i])) * (double)u[i];

    float *dg = dev_upload(g, sizeof(float) * nn), *du = dev_upload(u, sizeof(float) * nn);
    uint16_t *dout = dev_poisoned(2 * nn, 2 * GUARD);
    char what[96];
    snprintf(what, sizeof what, "silu_mul n=%lld rows=%d", (long long)n, n_rows);
    const qn_status st = qn_silu_mul_cuda(dg, du, n_rows, n, dout, NULL, g_stream);
    if (st != QN_OK) fail_msg("%s: %s", what, qn_status_str(st));
    dev_fetch(got, dout, 2 * nn, 2 * GUARD, what);
    f16_check(s, got, ref, nn, what);
    cudaFree(dg), cudaFree(du), cudaFree(dout);
    free(g), free(u), free(ref), free(got);
}

static void test_silu_mul(void **state) {
    (void)state;
    sweep_rows(silu_case, 500, "silu_mul");
}

/* ------------------------------------------------------------------------------------------------
 * f32 -> fp16 */

static void test_f32_to_f16(void **state) {
    (void)state;
    qn_rng r;
    qn_rng_seed(&r, 600);
    const int64_t n = g_quick ? 100003 : 1000003;
    float *x = malloc(sizeof(float) * (size_t)n);
    uint16_t *got = malloc(2 * (size_t)n);
    assert_true(x && got);
    for (int64_t i = 0; i < n; i++) {
        switch (i % 8) {
        case 0: x[i] = qn_rng_normal(&r); break;
        case 1: x[i] = 1e-6f * qn_rng_normal(&r); break;   /* fp16 subnormals */
        case 2: x[i] = 1e-9f * qn_rng_normal(&r); break;   /* underflow to 0 */
        case 3: x[i] = 7e4f * qn_rng_normal(&r); break;    /* overflow to inf */
        case 4: { /* exact ties between two finite fp16 values (12 bits: exact in f32), either parity */
            const uint16_t h = (uint16_t)(qn_rng_u64(&r) % 0x7bff);
            const double mid = 0.5 * ((double)qn_f16_to_f32(h) + (double)qn_f16_to_f32((uint16_t)(h + 1)));
            x[i] = (float)((i & 8) ? -mid : mid);
            break;
        }
        case 5: x[i] = qn_u32_as_f32((uint32_t)qn_rng_u64(&r) & 0x807fffffu); break; /* f32 subnormals */
        case 6: x[i] = 100.0f * qn_rng_normal(&r); break;
        default: {
            const float sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, 65504.0f, 65519.99f, 65520.0f, -65520.0f, NAN};
            x[i] = sp[(i / 8) % 9];
        }
        }
    }
    float *dx = dev_upload(x, sizeof(float) * (size_t)n);
    uint16_t *dout = dev_poisoned(2 * (size_t)n, 2 * GUARD);
    assert_int_equal(qn_f32_to_f16_cuda(dx, n, dout, g_stream), QN_OK);
    dev_fetch(got, dout, 2 * (size_t)n, 2 * GUARD, "f32_to_f16");
    size_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint16_t want = qn_f32_to_f16(x[i]);
        const int ok = isnan(x[i]) ? isnan(qn_f16_to_f32(got[i])) : got[i] == want;
        if (!ok && bad++ < 5)
            fprintf(stderr, "  f32_to_f16: x %.9g (0x%08x) got 0x%04x want 0x%04x\n", x[i], qn_f32_as_u32(x[i]),
                    got[i], want);
    }
    if (bad) fail_msg("f32_to_f16: %zu of %lld differ", bad, (long long)n);
    assert_int_equal(qn_f32_to_f16_cuda(dx, 0, dout, g_stream), QN_OK);
    cudaFree(dx), cudaFree(dout);
    free(x), free(got);
}

static void test_row_op_args(void **state) {
    (void)state;
    float *d = dev_poisoned(4096, 0);
    uint16_t *o = dev_poisoned(4096, 0);
    assert_int_equal(qn_rmsnorm_cuda(d, NULL, 0, 16, d, 1e-5f, o, NULL, g_stream), QN_OK);
    assert_int_equal(qn_rmsnorm_cuda(d, NULL, 1, 0, d, 1e-5f, o, NULL, g_stream), QN_ERR_SHAPE);
    assert_int_equal(qn_rmsnorm_cuda(d, NULL, -1, 16, d, 1e-5f, o, NULL, g_stream), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_add_rmsnorm_cuda(d, d, 1, 0, d, 1e-5f, o, NULL, g_stream), QN_ERR_SHAPE);
    assert_int_equal(qn_add_rmsnorm_cuda(d, d, 0, 16, d, 1e-5f, o, NULL, g_stream), QN_OK);
    assert_int_equal(qn_silu_mul_cuda(d, d, 1, 0, o, NULL, g_stream), QN_ERR_SHAPE);
    assert_int_equal(qn_silu_mul_cuda(d, d, 0, 16, o, NULL, g_stream), QN_OK);
    assert_int_equal(qn_f32_to_f16_cuda(d, -1, o, g_stream), QN_ERR_INVALID_ARG);
    /* q8: a width of whole 32-blocks, both pointers, and a norm to quantize */
    uint8_t *b = dev_poisoned(4096, 0);
    const qn_quant_q8_x q8 = {(int8_t *)b, (struct qn_mmvq_xrec *)(b + 2048)};
    const qn_quant_q8_x no_qs = {NULL, (struct qn_mmvq_xrec *)(b + 2048)};
    const qn_quant_q8_x odd = {(int8_t *)(b + 4), (struct qn_mmvq_xrec *)(b + 2048)};
    assert_int_equal(qn_rmsnorm_cuda(d, NULL, 1, 48, d, 1e-5f, o, &q8, g_stream), QN_ERR_SHAPE);
    assert_int_equal(qn_rmsnorm_cuda(d, NULL, 1, 32, d, 1e-5f, o, &no_qs, g_stream), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_rmsnorm_cuda(d, NULL, 1, 32, d, 1e-5f, o, &odd, g_stream), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_rmsnorm_cuda(d, NULL, 0, 48, d, 1e-5f, o, &q8, g_stream), QN_OK);
    assert_int_equal(qn_add_rmsnorm_cuda(d, d, 1, 32, NULL, 1e-5f, NULL, &q8, g_stream), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_add_rmsnorm_cuda(d, d, 1, 48, d, 1e-5f, o, &q8, g_stream), QN_ERR_SHAPE);
    assert_int_equal(qn_silu_mul_cuda(d, d, 1, 48, o, &q8, g_stream), QN_ERR_SHAPE);
    assert_int_equal(qn_silu_mul_cuda(d, d, 1, 32, o, &no_qs, g_stream), QN_ERR_INVALID_ARG);
    CK(cudaStreamSynchronize(g_stream));
    cudaFree(d), cudaFree(o), cudaFree(b);
}

/* ------------------------------------------------------------------------------------------------
 * q8 outputs: the int8 matmul's activations, written by the op that writes its fp16 input */

static void test_q8_in_workspace(void **state) {
    (void)state;
    const size_t ctr = 64 * 1024; /* quant.h: the split-K counters come first */
    uint8_t *ws = (uint8_t *)(uintptr_t)0x10000; /* never dereferenced: no CUDA calls */
    const size_t need = ctr + qn_mmvq_x_bytes(3, 576);
    qn_quant_q8_x q8 = {NULL, NULL};
    assert_true(qn_quant_q8_x_in_workspace(ws, need, 3, 576, &q8));
    assert_ptr_equal(q8.qs, ws + ctr);
    assert_ptr_equal((uint8_t *)q8.rec, ws + ctr + qn_mmvq_x_rec_offset(3, 576));
    assert_int_equal(qn_mmvq_x_rec_offset(3, 576) % 256, 0);
    assert_false(qn_quant_q8_x_in_workspace(ws, need - 1, 3, 576, &q8));
    assert_false(qn_quant_q8_x_in_workspace(ws, 100, 3, 576, &q8));
    assert_false(qn_quant_q8_x_in_workspace(NULL, need, 3, 576, &q8));
    assert_false(qn_quant_q8_x_in_workspace(ws + 8, need, 3, 576, &q8));
    assert_false(qn_quant_q8_x_in_workspace(ws, need, 3, 560, &q8));
    assert_false(qn_quant_q8_x_in_workspace(ws, need, 0, 576, &q8));
}

typedef enum q8_op { Q8_RMSNORM, Q8_RMSNORM_GATHER, Q8_ADD_RMSNORM, Q8_SILU_MUL } q8_op;
static const char *const Q8_OP_NAMES[] = {"rmsnorm", "rmsnorm gather", "add_rmsnorm", "silu_mul"};

/* The inputs of one case on the host. a: x (norms) or g [n_src][K]; b: y or u [n_rows][K]; w [K]. */
typedef struct q8_host {
    q8_op op;
    int64_t K;
    int32_t n_rows, n_src;
    int strided;   /* norms: x (and y) one float off 16-byte alignment: k_rmsnorm instead of k_rmsnorm_v4 */
    float *a, *b, *w;
    int32_t *rows; /* [n_rows] rows of a (Q8_RMSNORM_GATHER) */
} q8_host;

/* n floats on the device, starting one float into the allocation when off; *base: what to free */
static float *q8_upload(const float *p, size_t n, int off, void **base) {
    float *d = NULL;
    CK(cudaMalloc((void **)&d, sizeof(float) * (n + 1)));
    CK(cudaMemcpy(d + (off ? 1 : 0), p, sizeof(float) * n, cudaMemcpyHostToDevice));
    *base = d;
    return d + (off ? 1 : 0);
}

/* One run of the op on fresh device copies of h's inputs, with q8 (or NULL): its fp16 output to out and,
 * for add_rmsnorm, the residual x after it to x_after. */
static void q8_run(const q8_host *h, const qn_quant_q8_x *q8, uint16_t *out, float *x_after, const char *what) {
    const size_t na = (size_t)h->n_src * (size_t)h->K, nb = (size_t)h->n_rows * (size_t)h->K;
    void *ba, *bb;
    float *da = q8_upload(h->a, na, h->strided, &ba), *db = q8_upload(h->b, nb, h->strided, &bb);
    float *dw = dev_upload(h->w, sizeof(float) * (size_t)h->K);
    int32_t *drows = dev_upload(h->rows, sizeof(int32_t) * (size_t)h->n_rows);
    uint16_t *dout = dev_poisoned(2 * nb, 2 * GUARD);
    const float eps = 1e-5f;
    qn_status st = QN_ERR_INTERNAL;
    switch (h->op) {
    case Q8_RMSNORM: st = qn_rmsnorm_cuda(da, NULL, h->n_rows, h->K, dw, eps, dout, q8, g_stream); break;
    case Q8_RMSNORM_GATHER: st = qn_rmsnorm_cuda(da, drows, h->n_rows, h->K, dw, eps, dout, q8, g_stream); break;
    case Q8_ADD_RMSNORM: st = qn_add_rmsnorm_cuda(da, db, h->n_rows, h->K, dw, eps, dout, q8, g_stream); break;
    case Q8_SILU_MUL: st = qn_silu_mul_cuda(da, db, h->n_rows, h->K, dout, q8, g_stream); break;
    }
    if (st != QN_OK) fail_msg("%s%s: %s", what, q8 ? "" : " (without q8)", qn_status_str(st));
    dev_fetch(out, dout, 2 * nb, 2 * GUARD, what);
    if (x_after) CK(cudaMemcpy(x_after, da, sizeof(float) * na, cudaMemcpyDeviceToHost));
    cudaFree(ba), cudaFree(bb), cudaFree(dw), cudaFree(drows), cudaFree(dout);
}

/* Bytes [from, to) of buf all still 0xFF; else fails, naming the first. */
static void q8_untouched(const uint8_t *buf, size_t from, size_t to, const char *part, const char *what) {
    for (size_t i = from; i < to; i++)
        if (buf[i] != 0xFF) fail_msg("%s: %s written at byte %zu", what, part, i);
}

static void q8_case(q8_op op, int64_t K, int32_t n_rows, int strided, uint64_t seed) {
    qn_rng r;
    qn_rng_seed(&r, seed);
    q8_host h = {.op = op, .K = K, .n_rows = n_rows, .n_src = op == Q8_RMSNORM_GATHER ? n_rows + 3 : n_rows,
                 .strided = strided};
    const size_t na = (size_t)h.n_src * (size_t)K, nb = (size_t)n_rows * (size_t)K;
    h.a = malloc(sizeof(float) * na), h.b = malloc(sizeof(float) * nb), h.w = malloc(sizeof(float) * (size_t)K);
    h.rows = malloc(sizeof(int32_t) * (size_t)n_rows);
    uint16_t *want = malloc(2 * nb), *got = malloc(2 * nb);
    float *x_want = malloc(sizeof(float) * na), *x_got = malloc(sizeof(float) * na);
    int8_t *qs_want = malloc(nb);
    qn_mmvq_xrec *rec_want = malloc(sizeof(qn_mmvq_xrec) * (nb / QN_MMVQ_QK));
    assert_true(h.a && h.b && h.w && h.rows && want && got && x_want && x_got && qs_want && rec_want);
    if (op == Q8_SILU_MUL) {
        for (size_t i = 0; i < na; i++) h.a[i] = qn_rng_uniform(&r, -20.0f, 20.0f);
        for (size_t i = 0; i < nb; i++) h.b[i] = 3.0f * qn_rng_normal(&r);
    } else {
        fill_rows(&r, h.a, h.n_src, K);
        qn_rng_fill_normal(&r, h.b, nb, 2.0f);
    }
    for (int64_t i = 0; i < K; i++) h.w[i] = 1.0f + 0.25f * qn_rng_normal(&r);
    for (int32_t t = 0; t < n_rows; t++) h.rows[t] = t % 3 == 2 ? h.rows[t - 1] : (int32_t)((5 * t + 3) % h.n_src);
    /* one all-zero output block per row (d = 0, all codes 0), at a row-dependent place */
    for (int32_t t = 0; t < h.n_src; t++) {
        const int64_t b0 = (int64_t)t * K + (t * 7 % (K / QN_MMVQ_QK)) * QN_MMVQ_QK;
        for (int i = 0; i < QN_MMVQ_QK; i++) {
            if (op == Q8_ADD_RMSNORM && t < n_rows) h.a[b0 + i] = -h.b[b0 + i]; /* x + y = 0 exactly */
            else h.a[b0 + i] = 0.0f;
        }
    }
    char what[96];
    snprintf(what, sizeof what, "%s q8 K=%lld rows=%d%s", Q8_OP_NAMES[op], (long long)K, n_rows,
             strided ? " strided" : "");

    q8_run(&h, NULL, want, op == Q8_ADD_RMSNORM ? x_want : NULL, what);
    qn_mmvq_quantize_x_ref(want, n_rows, K, qs_want, rec_want);

    /* a workspace as the matmul's, poisoned: counters, codes, padding, records */
    const size_t ws_bytes = 64 * 1024 + qn_mmvq_x_bytes(n_rows, K);
    uint8_t *ws = dev_poisoned(ws_bytes, GUARD), *ws_h = malloc(ws_bytes);
    assert_non_null(ws_h);
    qn_quant_q8_x q8;
    assert_true(qn_quant_q8_x_in_workspace(ws, ws_bytes, n_rows, K, &q8));
    q8_run(&h, &q8, got, op == Q8_ADD_RMSNORM ? x_got : NULL, what);
    dev_fetch(ws_h, ws, ws_bytes, GUARD, what);

    if (memcmp(got, want, 2 * nb) != 0) fail_msg("%s: fp16 output differs from the op without q8", what);
    if (op == Q8_ADD_RMSNORM && memcmp(x_got, x_want, sizeof(float) * na) != 0)
        fail_msg("%s: residual differs from the op without q8", what);
    const size_t qs_at = (size_t)((uint8_t *)q8.qs - ws), rec_at = (size_t)((uint8_t *)q8.rec - ws);
    const qn_mmvq_xrec *rec_got = (const qn_mmvq_xrec *)(ws_h + rec_at);
    size_t bad = 0;
    for (size_t b = 0; b < nb / QN_MMVQ_QK; b++) {
        const int8_t *qg = (const int8_t *)ws_h + qs_at + b * QN_MMVQ_QK, *qw = qs_want + b * QN_MMVQ_QK;
        const qn_mmvq_xrec *rg = &rec_got[b], *rw = &rec_want[b];
        if (memcmp(qg, qw, QN_MMVQ_QK) == 0 && memcmp(rg, rw, sizeof *rg) == 0) continue;
        if (bad++ < 5) {
            int e = 0;
            while (e < QN_MMVQ_QK - 1 && qg[e] == qw[e]) e++;
            fprintf(stderr, "  %s: block %zu (row %zu): d %.9g/%.9g s0 %d/%d s1 %d/%d, code %d: %d/%d (got/want)\n",
                    what, b, b / (size_t)(K / QN_MMVQ_QK), rg->d, rw->d, rg->s0, rw->s0, rg->s1, rw->s1, e, qg[e],
                    qw[e]);
        }
    }
    if (bad) fail_msg("%s: %zu blocks differ from qn_mmvq_quantize_x_ref of the fp16 output", what, bad);
    q8_untouched(ws_h, 0, qs_at, "split-K counters", what);
    q8_untouched(ws_h, qs_at + nb, rec_at, "padding behind the codes", what);
    cudaFree(ws);
    free(ws_h), free(h.a), free(h.b), free(h.w), free(h.rows), free(want), free(got), free(x_want), free(x_got);
    free(qs_want), free(rec_want);
}

static void test_q8_outputs(void **state) {
    (void)state;
    static const int64_t Ks[] = {4096, 14336, 576, 1536};
    int n_cases = 0;
    for (int op = Q8_RMSNORM; op <= Q8_SILU_MUL; op++)
        for (int strided = 0; strided <= (op == Q8_SILU_MUL ? 0 : 1); strided++)
            for (int k = 0; k < 4; k++)
                for (int32_t n_rows = 1; n_rows <= 5; n_rows++) {
                    if (g_quick && n_rows != 1 && n_rows != 5) continue;
                    q8_case((q8_op)op, Ks[k], n_rows, strided, 700u + 1000u * (uint64_t)op + 100u * (uint64_t)strided +
                                                                   10u * (uint64_t)k + (uint64_t)n_rows);
                    n_cases++;
                }
    fprintf(stderr, "  q8 outputs: %d cases bit-identical to the op + qn_mmvq_quantize_x_ref\n", n_cases);
}

int main(void) {
    g_quick = qn_gpu_test_quick();
    if (qn_gpu_test_skip("test_gpu_ops")) return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embed_args), cmocka_unit_test(test_embed),       cmocka_unit_test(test_row_op_args),
        cmocka_unit_test(test_rmsnorm),    cmocka_unit_test(test_add_rmsnorm), cmocka_unit_test(test_silu_mul),
        cmocka_unit_test(test_f32_to_f16), cmocka_unit_test(test_q8_in_workspace), cmocka_unit_test(test_q8_outputs),
    };
    return cmocka_run_group_tests_name("gpu_ops", tests, qn_gpu_test_setup, qn_gpu_test_teardown);
}
