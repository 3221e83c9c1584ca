/* test_simd.c — every compiled (and CPU-supported) ISA's kernel table against the scalar table and
 * against a double-precision reference (tests/ref/ref_quant_gguf.c), on seeded random inputs:
 *   dequant     bit-exact with the _ref dequantizers (formats.md §2.2: every product is exact);
 *   from_float  bit-exact with the _ref quantizers (Q8_0/Q8_1 roundf, Q8_K round-half-even, F16/BF16 RNE),
 *               including rounding ties, all-zero blocks and ± ties for Q8_K's signed max; and the
 *               quantization error against the exact inputs within the format's bound (check_quant_error);
 *   vec_dot     vs double Σ dequant(w)·dequant(a): |got − ref| <= TOL_REF·Σ|w·a| + s_bound, where
 *               s_bound is the exact effect of Q8_1's fp16 s (ref_quant_gguf.h);
 *               vs the scalar ISA: K-quants bit-exact (same integers, same fp32 finish), legacy and
 *               float types |Δ| <= TOL_ISA·Σ|w·a| (8-lane vs sequential fp32 accumulation);
 *   vec_dot_x4  bit-exact with vec_dot per token;
 *   matmul_rows bit-exact with vec_dot, n_tokens 1/3/17, odd row ranges, untouched rows stay NaN (the dot path:
 *               the float formats' x86 panel GEMM from 9 tokens is test_float_gemm.c's);
 *   vec_dot_tile bit-exact with vec_dot over more blocks than one scale pass, more tokens than one
 *               run of the token-scale buffer, leftover rows and tokens, and k past the tile's limit;
 *   matmul_x8   (the load-time repack, Q2_K×8 .. Q6_K×8, Q4_0×8, Q5_0×8, Q5_1×8, Q8_0×8) the repack's inverse gives the rows back; qn_cpu_matmul_x8 bit-exact
 *               with the scalar vec_dot on the plain rows for 1..5, 7, 10..12, 14 and 113 tokens (every token tail
 *               of the 4- and 8-token tiles), 1 and 37 blocks per row, sub-ranges of 1, 2 and 3 row groups (the
 *               VNNI and AMX tiles' group pairs and odd group; AMX: 113 = 7 tiles of 16 + 1 token through the VNNI
 *               tile), untouched rows stay NaN; every x86 SIMD table has it;
 *   attn_paged  the 16-keys-at-a-time path (AVX-512, KV blocks of 16) bit-exact with the general one
 *               (KV blocks of 24 slots), multi- and single-token lane counts, awkward n_ctx;
 *               n_q tokens at once (AVX2: tiles of tokens × GQA heads) bit-exact with attn_paged_tokens, one
 *               token at a time, for 2-9 tokens (partial tiles), GQA groups 1/3/4/9, head_dim 64/128/72,
 *               outputs between the tokens' rows left NaN; and both within 2e-3 of a double-precision
 *               softmax(q·K)·V of the fp16 inputs (probabilities and q are rounded to fp16 on the way).
 * Measured errors (in fp32 ulps of Σ|w·a|) are printed per ISA and format. */
/* QN_TEST_LABELS: cpu neon (scripts/test_neon.sh runs the neon label under qemu-aarch64) */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/kx8.h"
#include "ref/ref_quant_gguf.h"

#define EPS32 1.1920928955078125e-07
/* Both bounds are in fp32 ulps of Σ|w·a| (the L1 mass of the products). The worst case of an fp32
 * sum of n terms is ~n·eps, but the sums here are blocked (8/16 lanes, per-block integers), and
 * every ISA measured <= 0.7 ulps on this test's inputs (x86-64, AVX-512 machine, gcc 12): 8 ulps
 * keeps a 10x margin while still catching any wrong term (one wrong code moves the sum by >> 8). */
#define TOL_REF (8 * EPS32)
#define TOL_ISA (8 * EPS32)

static const qn_qformat WFMTS[] = {QN_QFORMAT_F32,  QN_QFORMAT_F16,  QN_QFORMAT_BF16, QN_QFORMAT_Q4_0, QN_QFORMAT_Q4_1,
                                   QN_QFORMAT_Q5_0, QN_QFORMAT_Q5_1, QN_QFORMAT_Q8_0, QN_QFORMAT_Q2_K, QN_QFORMAT_Q3_K,
                                   QN_QFORMAT_Q4_K, QN_QFORMAT_Q5_K, QN_QFORMAT_Q6_K};
static const qn_qformat AFMTS[] = {QN_QFORMAT_F32, QN_QFORMAT_F16, QN_QFORMAT_BF16,
                                   QN_QFORMAT_Q8_0, QN_QFORMAT_Q8_1, QN_QFORMAT_Q8_K};
#define N_WFMTS (int)(sizeof WFMTS / sizeof WFMTS[0])
#define N_AFMTS (int)(sizeof AFMTS / sizeof AFMTS[0])

static int is_kquant(qn_qformat f) { return QN_QFORMATS[f].block_elems == 256; }

/* The tables this machine can run; [0] is always scalar. */
static qn_cpu_kernels g_tabs[QN_CPU_ISA_COUNT];
static int g_ntabs;

static int setup(void **state) {
    (void)state;
    g_ntabs = 0;
    for (int isa = QN_CPU_ISA_SCALAR; isa < QN_CPU_ISA_COUNT; isa++) {
        const qn_status s = qn_cpu_kernels_select((qn_cpu_isa)isa, &g_tabs[g_ntabs]);
        if (s == QN_OK) g_ntabs++;
        else fprintf(stderr, "isa %s: not available here (%d), skipped\n", qn_cpu_isa_name((qn_cpu_isa)isa), s);
    }
    return g_ntabs > 0 && g_tabs[0].isa == QN_CPU_ISA_SCALAR ? 0 : -1;
}

static void *poisoned(size_t bytes) {
    void *p = malloc(bytes);
    memset(p, 0xff, bytes); /* all-ones: a NaN in every float lane */
    return p;
}

/* Activations with awkward content: per-32-block magnitude changes, an all-zero block, a block of
 * exact rounding ties (amax 127 -> d = 1 for Q8_0, iscale = 1 for Q8_K), and ± ties of the max. */
static void fill_activations(qn_rng *rng, float *x, int64_t n) {
    qn_rng_fill_normal(rng, x, (size_t)n, 1.0f);
    for (int64_t b = 0; b < n / 32; b++) {
        const float s = ldexpf(1.0f, (int)(qn_rng_u64(rng) % 9) - 4);
        for (int j = 0; j < 32; j++) x[32 * b + j] *= s;
    }
    if (n >= 64) memset(x + 32, 0, 32 * sizeof(float));
    if (n >= 256 + 32) {
        float *t = x + 256;
        for (int j = 0; j < 32; j++) t[j] = (float)(j - 16) + 0.5f;
        t[3] = -127.0f;
        t[9] = 127.0f; /* same magnitude, later: Q8_K must keep the first (negative) one */
    }
}

static void test_select(void **state) {
    (void)state;
    qn_cpu_kernels k;
    assert_int_equal(qn_cpu_kernels_select(QN_CPU_ISA_AUTO, &k), QN_OK);
    assert_int_equal(k.isa, qn_cpu_isa_detect());
    assert_int_equal(g_tabs[g_ntabs - 1].isa, k.isa); /* AUTO = the best one available */
    assert_int_equal(qn_cpu_kernels_select(QN_CPU_ISA_COUNT, &k), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_cpu_kernels_select(QN_CPU_ISA_SCALAR, NULL), QN_ERR_INVALID_ARG);
#if defined(__x86_64__)
    assert_int_equal(qn_cpu_kernels_select(QN_CPU_ISA_NEON, &k), QN_ERR_UNSUPPORTED);
    assert_int_equal(qn_cpu_kernels_select(QN_CPU_ISA_NEON_DOTPROD, &k), QN_ERR_UNSUPPORTED);
#else
    assert_int_equal(qn_cpu_kernels_select(QN_CPU_ISA_AVX2, &k), QN_ERR_UNSUPPORTED);
    assert_int_equal(qn_cpu_kernels_select(QN_CPU_ISA_AVX512, &k), QN_ERR_UNSUPPORTED);
#endif
    for (int i = 0; i < g_ntabs; i++) {
        fprintf(stderr, "table %s\n", g_tabs[i].isa_name);
        for (int f = 0; f < N_WFMTS; f++) assert_non_null(g_tabs[i].vec_dot[WFMTS[f]]);
        for (int f = 0; f < N_AFMTS; f++) assert_non_null(g_tabs[i].from_float[AFMTS[f]]);
        for (int f = 0; f < QN_QFORMAT_COUNT; f++) assert_non_null(g_tabs[i].dequant[f]);
    }
}

static void test_dequant(void **state) {
    (void)state;
    qn_rng rng;
    for (int i = 0; i < g_ntabs; i++)
        for (int f = 0; f < QN_QFORMAT_COUNT; f++) {
            qn_rng_seed(&rng, 1000 + (uint64_t)f);
            const int64_t n = QN_QFORMATS[f].block_elems == 1 ? 1001 : QN_QFORMATS[f].block_elems * 13;
            void *src = malloc(qn_qformat_row_bytes((qn_qformat)f, n));
            qn_ref_gguf_random_blocks(&rng, (qn_qformat)f, src, n, 1);
            float *ref = malloc((size_t)n * 4), *got = poisoned((size_t)n * 4);
            QN_QFORMATS[f].dequant_ref(src, ref, n);
            g_tabs[i].dequant[f](src, got, n);
            if (memcmp(ref, got, (size_t)n * 4))
                fail_msg("dequant %s/%s differs from the reference", g_tabs[i].isa_name, QN_QFORMATS[f].name);
            free(src), free(ref), free(got);
        }
}

/* The quantizer against the exact values (double): per element |dequant(q) - x| within the rounding
 * the format allows. Q8_0/Q8_1: 0.5*d plus 127*|fp16(d) - d| (the stored scale is rounded after the
 * codes are chosen); Q8_K: 0.5*|d| (f32 d); F16: 2^-11 relative + 2^-25 (subnormals); BF16: 2^-8
 * relative; plus 1e-6 of the block's amax for the fp32 product x*(1/d). */
static void check_quant_error(qn_qformat af, const float *x, const void *q, int64_t n) {
    float *dq = malloc((size_t)n * 4);
    QN_QFORMATS[af].dequant_ref(q, dq, n);
    const int be = QN_QFORMATS[af].block_elems;
    for (int64_t b0 = 0; b0 < n; b0 += be) {
        double amax = 0.0;
        for (int j = 0; j < be; j++) amax = fmax(amax, fabs((double)x[b0 + j]));
        double bound = 0.0;
        if (af == QN_QFORMAT_Q8_0 || af == QN_QFORMAT_Q8_1) {
            const float d32 = (float)amax / 127.0f;
            bound = 0.5 * d32 + 127.0 * fabs((double)qn_f16_to_f32(qn_f32_to_f16(d32)) - d32) + 1e-6 * amax;
        } else if (af == QN_QFORMAT_Q8_K) {
            bound = 0.5 * fabs((double)((const qn_block_q8_k *)q)[b0 / 256].d) + 1e-6 * amax;
        }
        for (int j = 0; j < be; j++) {
            const double xe = x[b0 + j], err = fabs((double)dq[b0 + j] - xe);
            const double lim = af == QN_QFORMAT_F32    ? 0.0
                               : af == QN_QFORMAT_F16  ? ldexp(fabs(xe), -11) + ldexp(1.0, -25)
                               : af == QN_QFORMAT_BF16 ? ldexp(fabs(xe), -8)
                                                       : bound;
            if (err > lim)
                fail_msg("%s quantization error %.3g > %.3g at %lld (x %.9g)", QN_QFORMATS[af].name, err, lim,
                         (long long)(b0 + j), xe);
        }
    }
    free(dq);
}

static void test_from_float(void **state) {
    (void)state;
    qn_rng rng;
    for (int i = 0; i < g_ntabs; i++)
        for (int f = 0; f < N_AFMTS; f++) {
            const qn_qformat af = AFMTS[f];
            for (int rep = 0; rep < 8; rep++) {
                qn_rng_seed(&rng, 2000 + 17 * (uint64_t)f + (uint64_t)rep);
                const int64_t n = QN_QFORMATS[af].block_elems == 1 ? 1001 + rep : 256 * (rep + 2);
                float *x = malloc((size_t)n * 4);
                fill_activations(&rng, x, n);
                const size_t bytes = qn_qformat_row_bytes(af, n);
                void *ref = poisoned(bytes), *got = poisoned(bytes);
                QN_QFORMATS[af].quantize_ref(x, ref, n);
                g_tabs[i].from_float[af](x, got, n);
                if (memcmp(ref, got, bytes))
                    fail_msg("from_float %s/%s (n %lld) differs from the reference", g_tabs[i].isa_name,
                             QN_QFORMATS[af].name, (long long)n);
                if (i == 0) check_quant_error(af, x, ref, n);
                free(x), free(ref), free(got);
            }
        }
}

/* Sizes per format: one block, a few, many (and float lengths off every vector width). */
static int dot_sizes(qn_qformat f, int64_t out[5]) {
    const int be = QN_QFORMATS[f].block_elems;
    if (be == 1) {
        const int64_t s[5] = {1, 7, 37, 300, 4099};
        memcpy(out, s, sizeof s);
        return 5;
    }
    out[0] = be, out[1] = be * 3, out[2] = be * (be == 32 ? 37 : 11);
    return 3;
}

static void test_vec_dot(void **state) {
    (void)state;
    enum { N_ROWS = 5 };
    qn_rng rng;
    int failures = 0;
    fprintf(stderr, "%-7s %-5s %12s %12s\n", "isa", "fmt", "ref_ulps", "isa_ulps");
    for (int i = 0; i < g_ntabs; i++)
        for (int f = 0; f < N_WFMTS; f++) {
            const qn_qformat wf = WFMTS[f], af = QN_QFORMATS[wf].vec_dot_type;
            double worst_ref = 0.0, worst_isa = 0.0;
            int64_t sizes[5];
            const int nsz = dot_sizes(wf, sizes);
            for (int si = 0; si < nsz; si++) {
                const int64_t k = sizes[si];
                qn_rng_seed(&rng, 3000 + 131 * (uint64_t)f + (uint64_t)si);
                const size_t wrb = qn_qformat_row_bytes(wf, k), arb = qn_qformat_row_bytes(af, k);
                uint8_t *w = malloc(wrb * N_ROWS), *a = malloc(arb * 4);
                float *x = malloc((size_t)k * 4);
                qn_ref_gguf_random_blocks(&rng, wf, w, k * N_ROWS, 0);
                for (int t = 0; t < 4; t++) { /* same activation bytes for every ISA: the ref quantizer */
                    fill_activations(&rng, x, k);
                    QN_QFORMATS[af].quantize_ref(x, a + (size_t)t * arb, k);
                }
                for (int r = 0; r < N_ROWS; r++) {
                    const uint8_t *wr = w + (size_t)r * wrb;
                    float got = NAN, sc = NAN;
                    g_tabs[i].vec_dot[wf](k, &got, wr, a);
                    g_tabs[0].vec_dot[wf](k, &sc, wr, a);
                    double abs_sum;
                    const double ref = qn_ref_gguf_dot(wf, wr, af, a, k, &abs_sum);
                    const double sb = qn_ref_gguf_s_bound(wf, wr, a, k);
                    const double scale = abs_sum > 0 ? abs_sum : 1e-30;
                    const double e_ref = fmax(fabs((double)got - ref) - sb, 0.0) / scale;
                    const double e_isa = fabs((double)got - (double)sc) / scale;
                    worst_ref = fmax(worst_ref, e_ref);
                    worst_isa = fmax(worst_isa, e_isa);
                    const int exact_needed = is_kquant(wf);
                    if (isnan(got) || e_ref > TOL_REF || (exact_needed ? got != sc : e_isa > TOL_ISA)) {
                        fprintf(stderr, "  %s/%s k %lld row %d: got %.9g scalar %.9g ref %.9g (Σ|wa| %.3g, s_bound %.3g)\n",
                                g_tabs[i].isa_name, QN_QFORMATS[wf].name, (long long)k, r, got, sc, ref, abs_sum, sb);
                        failures++;
                    }
                    if (g_tabs[i].vec_dot_x4[wf]) {
                        float o4[4] = {NAN, NAN, NAN, NAN};
                        g_tabs[i].vec_dot_x4[wf](k, o4, wr, a, arb);
                        for (int t = 0; t < 4; t++) {
                            float o1 = NAN;
                            g_tabs[i].vec_dot[wf](k, &o1, wr, a + (size_t)t * arb);
                            if (memcmp(&o1, &o4[t], 4)) {
                                fprintf(stderr, "  %s/%s x4 token %d: %.9g vs vec_dot %.9g\n", g_tabs[i].isa_name,
                                        QN_QFORMATS[wf].name, t, o4[t], o1);
                                failures++;
                            }
                        }
                    }
                }
                free(w), free(a), free(x);
            }
            fprintf(stderr, "%-7s %-5s %12.2f %12.2f%s\n", g_tabs[i].isa_name, QN_QFORMATS[wf].name, worst_ref / EPS32,
                    worst_isa / EPS32, g_tabs[i].vec_dot_x4[wf] ? "  (x4 checked)" : "");
        }
    assert_int_equal(failures, 0);
}

static void test_matmul_rows(void **state) {
    (void)state;
    enum { N_ROWS = 23, LDY = N_ROWS + 3 };
    const int64_t toks[] = {1, 3, 17};
    const int64_t ranges[][2] = {{0, N_ROWS}, {5, 18}, {7, 8}, {22, 23}};
    qn_rng rng;
    int failures = 0;
    for (int i = 0; i < g_ntabs; i++)
        for (int f = 0; f < N_WFMTS; f++) {
            /* the dot path of every format at every token count: the float formats' panel GEMM (x86, from
             * float_gemm_min_tokens tokens) sums in another order and has its own test, test_float_gemm.c */
            qn_cpu_kernels tab = g_tabs[i];
            memset(tab.float_gemm, 0, sizeof tab.float_gemm);
            const qn_qformat wf = WFMTS[f], af = QN_QFORMATS[wf].vec_dot_type;
            const int be = QN_QFORMATS[wf].block_elems;
            const int64_t k = be == 1 ? 37 : be * 3;
            const size_t wrb = qn_qformat_row_bytes(wf, k), arb = qn_qformat_row_bytes(af, k);
            qn_rng_seed(&rng, 4000 + (uint64_t)f);
            uint8_t *w = malloc(wrb * N_ROWS), *a = malloc(arb * 17);
            float *x = malloc((size_t)k * 4), *y = malloc(sizeof(float) * LDY * 17);
            qn_ref_gguf_random_blocks(&rng, wf, w, k * N_ROWS, 0);
            for (int t = 0; t < 17; t++) {
                fill_activations(&rng, x, k);
                g_tabs[i].from_float[af](x, a + (size_t)t * arb, k);
            }
            for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++)
                for (size_t ri = 0; ri < sizeof ranges / sizeof ranges[0]; ri++) {
                    const int64_t nt = toks[ti], r0 = ranges[ri][0], r1 = ranges[ri][1];
                    for (int j = 0; j < LDY * 17; j++) y[j] = NAN;
                    assert_int_equal(qn_cpu_matmul_rows(&tab, wf, w, k, a, nt, y, LDY, r0, r1), QN_OK);
                    for (int64_t t = 0; t < 17; t++)
                        for (int64_t r = 0; r < LDY; r++) {
                            const float v = y[t * LDY + r];
                            if (t < nt && r >= r0 && r < r1) {
                                float want = NAN;
                                g_tabs[i].vec_dot[wf](k, &want, w + (size_t)r * wrb, a + (size_t)t * arb);
                                if (memcmp(&v, &want, 4) && failures++ < 5)
                                    fprintf(stderr, "  matmul %s/%s t %lld r %lld: %.9g vs %.9g\n", g_tabs[i].isa_name,
                                            QN_QFORMATS[wf].name, (long long)t, (long long)r, v, want);
                            } else if (!isnan(v) && failures++ < 5) {
                                fprintf(stderr, "  matmul %s/%s wrote outside its range (t %lld r %lld)\n",
                                        g_tabs[i].isa_name, QN_QFORMATS[wf].name, (long long)t, (long long)r);
                            }
                        }
                }
            free(w), free(a), free(x), free(y);
        }
    assert_int_equal(failures, 0);

    /* contract errors */
    const qn_cpu_kernels *kt = &g_tabs[g_ntabs - 1];
    float y1[4];
    uint8_t wbuf[2 * sizeof(float) * 64] = {0}, abuf[sizeof(float) * 64] = {0};
    assert_int_equal(qn_cpu_matmul_rows(kt, QN_QFORMAT_Q8_K, wbuf, 256, abuf, 1, y1, 4, 0, 1), QN_ERR_UNSUPPORTED);
    assert_int_equal(qn_cpu_matmul_rows(kt, QN_QFORMAT_Q4_0, wbuf, 33, abuf, 1, y1, 4, 0, 1), QN_ERR_SHAPE);
    assert_int_equal(qn_cpu_matmul_rows(kt, QN_QFORMAT_F32, wbuf, 8, abuf, 1, y1, 4, 2, 1), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_cpu_matmul_rows(kt, QN_QFORMAT_F32, wbuf, 8, abuf, 2, y1, 1, 0, 2), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_cpu_matmul_rows(NULL, QN_QFORMAT_F32, wbuf, 8, abuf, 1, y1, 4, 0, 1), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_cpu_matmul_rows(kt, QN_QFORMAT_F32, wbuf, 8, abuf, 0, y1, 4, 0, 1), QN_OK);
}

static void test_matmul_tile(void **state) {
    (void)state;
    const int64_t kb[] = {37, 1025}; /* blocks per row: > QN_TILE_CHUNK; > QN_TILE_MAX_BLOCKS (Q4_1's fallback) */
    const int64_t toks[] = {4, 113}; /* 113 > one run of token scales at k = 32·37, and 113 % 4 = 1 */
    enum { N_ROWS = 13, LDY = 16 };   /* 13 rows: whole register tiles (2, 4 or 8 rows) and leftover rows */
    qn_rng rng;
    int failures = 0, tested = 0;
    for (int i = 0; i < g_ntabs; i++)
        for (int f = 0; f < N_WFMTS; f++) {
            const qn_qformat wf = WFMTS[f], af = QN_QFORMATS[wf].vec_dot_type;
            if (!g_tabs[i].vec_dot_tile[wf]) continue;
            for (size_t ki = 0; ki < sizeof kb / sizeof kb[0]; ki++) {
                const int64_t k = kb[ki] * QN_QFORMATS[wf].block_elems, nt = toks[ki == 0 ? 1 : 0];
                const size_t wrb = qn_qformat_row_bytes(wf, k), arb = qn_qformat_row_bytes(af, k);
                qn_rng_seed(&rng, 5000 + 17 * (uint64_t)f + ki);
                uint8_t *w = malloc(wrb * N_ROWS), *a = malloc(arb * (size_t)nt);
                float *x = malloc((size_t)k * 4), *y = malloc(sizeof(float) * LDY * (size_t)nt);
                qn_ref_gguf_random_blocks(&rng, wf, w, k * N_ROWS, 0);
                for (int64_t t = 0; t < nt; t++) {
                    fill_activations(&rng, x, k);
                    QN_QFORMATS[af].quantize_ref(x, a + (size_t)t * arb, k);
                }
                for (int64_t ti = 0; ti < (ki == 0 ? 2 : 1); ti++) {
                    const int64_t n_tok = ki == 0 ? toks[ti] : nt;
                    for (int j = 0; j < LDY * nt; j++) y[j] = NAN;
                    g_tabs[i].vec_dot_tile[wf](k, w, wrb, N_ROWS, a, arb, n_tok, y, LDY);
                    tested++;
                    for (int64_t t = 0; t < nt; t++)
                        for (int64_t r = 0; r < LDY; r++) {
                            const float v = y[t * LDY + r];
                            float want = NAN;
                            if (t < n_tok && r < N_ROWS) g_tabs[i].vec_dot[wf](k, &want, w + (size_t)r * wrb, a + (size_t)t * arb);
                            if (memcmp(&v, &want, 4) && !(isnan(v) && isnan(want)) && failures++ < 5)
                                fprintf(stderr, "  tile %s/%s k %lld t %lld r %lld: %.9g vs vec_dot %.9g\n",
                                        g_tabs[i].isa_name, QN_QFORMATS[wf].name, (long long)k, (long long)t,
                                        (long long)r, v, want);
                        }
                }
                free(w), free(a), free(x), free(y);
            }
        }
    fprintf(stderr, "tile calls checked: %d\n", tested);
    assert_int_equal(failures, 0);
}

static void test_matmul_x8(void **state) {
    (void)state;
    enum { N_ROWS = 24, LDY = 27, MAX_TOK = 113 };
    /* blocks per row; 1030 (the 32-element formats only, up to 7 tokens) crosses the legacy tiles' 1024-block table
     * slice (Q5_1: refused, kx8.h) */
    const int64_t kb[] = {1, 37, 1030};
    /* 10..14: the AVX-512 VNNI K-quant tile's 8 tokens and every remainder (5, 7 and 113 = 64 + 6·8 + 1 the others) */
    const int64_t toks[] = {1, 2, 3, 4, 5, 7, 10, 11, 12, 14, MAX_TOK};
    const int64_t ranges[][2] = {{0, N_ROWS}, {8, 16}, {16, 24}, {8, 24}}; /* 3, 1, 1 and 2 groups */
    const qn_qformat fmts[] = {QN_QFORMAT_Q2_K, QN_QFORMAT_Q3_K, QN_QFORMAT_Q4_K, QN_QFORMAT_Q5_K, QN_QFORMAT_Q6_K,
                               QN_QFORMAT_Q4_0, QN_QFORMAT_Q5_0, QN_QFORMAT_Q5_1, QN_QFORMAT_Q8_0};
    qn_rng rng;
    int failures = 0, tested = 0, x86_simd = 0;
    for (size_t fi = 0; fi < sizeof fmts / sizeof fmts[0]; fi++)
    for (size_t ki = 0; ki < sizeof kb / sizeof kb[0]; ki++) {
        const qn_qformat wf = fmts[fi];
        const qn_qformat af = QN_QFORMATS[wf].vec_dot_type; /* Q8_K, Q8_1 for Q5_1, else Q8_0 */
        const int64_t be = QN_QFORMATS[wf].block_elems, k = kb[ki] * be;
        if (kb[ki] > 37 && be != 32) continue;
        if (wf == QN_QFORMAT_Q5_1 && kb[ki] > QN_LX8_MAX_BLOCKS) {
            uint8_t one[8 * sizeof(qn_block_q5_1)] = {0};
            assert_int_equal(qn_kx8_check_shape(wf, 8, k), QN_ERR_SHAPE);
            assert_int_equal(qn_kx8_repack(wf, one, one, 8, k, 0, 1), QN_ERR_SHAPE);
            continue;
        }
        const size_t wrb = qn_qformat_row_bytes(wf, k), arb = qn_qformat_row_bytes(af, k);
        qn_rng_seed(&rng, 7000 + 10 * fi + ki);
        uint8_t *w = malloc(wrb * N_ROWS), *w8 = malloc(wrb * N_ROWS), *row = malloc(wrb), *a = malloc(arb * MAX_TOK);
        float *x = malloc((size_t)k * 4), *y = malloc(sizeof(float) * LDY * MAX_TOK);
        qn_ref_gguf_random_blocks(&rng, wf, w, k * N_ROWS, 0);
        /* the i16 sums' worst case: row 3's codes and scales all at their maximum (every byte but the fp16 d/dmin
         * 0xff; Q8_0's codes -128), token 0's activations all +127 */
        for (int64_t b = 0; b < kb[ki]; b++) {
            uint8_t *blk = w + 3 * wrb + (size_t)b * (wrb / (size_t)kb[ki]);
            if (wf == QN_QFORMAT_Q4_0 || wf == QN_QFORMAT_Q8_0) memset(blk + 2, wf == QN_QFORMAT_Q4_0 ? 0xff : 0x80, wrb / (size_t)kb[ki] - 2);
            else if (wf == QN_QFORMAT_Q5_0) memset(blk + 2, 0xff, wrb / (size_t)kb[ki] - 2); /* qh and qs: codes 31 */
            else if (wf == QN_QFORMAT_Q6_K) memset(blk, 0xff, offsetof(qn_block_q6_k, d));
            else if (wf == QN_QFORMAT_Q2_K) memset(blk, 0xff, offsetof(qn_block_q2_k, d));
            else if (wf == QN_QFORMAT_Q3_K) memset(blk, 0xff, offsetof(qn_block_q3_k, d));
            else memset(blk + 4, 0xff, wrb / (size_t)kb[ki] - 4);
        }
        for (int64_t t = 0; t < MAX_TOK; t++) {
            fill_activations(&rng, x, k);
            if (t == 0)
                for (int64_t j = 0; j < k; j++) x[j] = 1.0f;
            QN_QFORMATS[af].quantize_ref(x, a + (size_t)t * arb, k);
        }
        memset(w8, 0xa5, wrb * N_ROWS);
        assert_int_equal(qn_kx8_repack(wf, w, w8, N_ROWS, k, 1, 3), QN_OK); /* two calls: disjoint group ranges */
        assert_int_equal(qn_kx8_repack(wf, w, w8, N_ROWS, k, 0, 1), QN_OK);
        for (int64_t r = 0; r < N_ROWS; r++) {
            memset(row, 0, wrb);
            assert_int_equal(qn_kx8_unpack_row(wf, w8, row, N_ROWS, k, r), QN_OK);
            assert_memory_equal(row, w + (size_t)r * wrb, wrb);
        }
        for (int i = 0; i < g_ntabs; i++) {
            const bool simd = g_tabs[i].isa == QN_CPU_ISA_AVX2 || g_tabs[i].isa == QN_CPU_ISA_AVX512;
            x86_simd += simd;
            if (simd) assert_non_null(g_tabs[i].matmul_x8[wf]); /* every format here on AVX2 / AVX-512 */
            if (!g_tabs[i].matmul_x8[wf]) {
                assert_int_equal(qn_cpu_matmul_x8(&g_tabs[i], wf, w8, k, a, 1, y, LDY, 0, 8), QN_ERR_UNSUPPORTED);
                continue;
            }
            for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++)
                for (size_t ri = 0; ri < sizeof ranges / sizeof ranges[0]; ri++) {
                    const int64_t nt = toks[ti], r0 = ranges[ri][0], r1 = ranges[ri][1];
                    if (kb[ki] > 37 && nt > 7) continue;
                    for (int j = 0; j < LDY * MAX_TOK; j++) y[j] = NAN;
                    assert_int_equal(qn_cpu_matmul_x8(&g_tabs[i], wf, w8, k, a, nt, y, LDY, r0, r1), QN_OK);
                    tested++;
                    for (int64_t t = 0; t < MAX_TOK; t++)
                        for (int64_t r = 0; r < LDY; r++) {
                            const float v = y[t * LDY + r];
                            float want = NAN;
                            if (t < nt && r >= r0 && r < r1)
                                g_tabs[0].vec_dot[wf](k, &want, w + (size_t)r * wrb, a + (size_t)t * arb);
                            if (memcmp(&v, &want, 4) && !(isnan(v) && isnan(want)) && failures++ < 5)
                                fprintf(stderr, "  x8 %s/%s k %lld n_tok %lld t %lld r %lld: %.9g vs scalar %.9g\n",
                                        g_tabs[i].isa_name, QN_QFORMATS[wf].name, (long long)k, (long long)nt, (long long)t, (long long)r, v,
                                        want);
                        }
                }
        }
        free(w), free(w8), free(row), free(a), free(x), free(y);
    }
    fprintf(stderr, "x8 matmul calls checked: %d\n", tested);
    assert_int_equal(failures, 0);
    if (x86_simd) assert_true(tested > 0);

    /* contract errors */
    const qn_cpu_kernels *kt = &g_tabs[g_ntabs - 1];
    const qn_qformat wf = QN_QFORMAT_Q4_K;
    uint8_t wbuf[8 * 144] = {0}, abuf[292] = {0};
    float y1[8];
    assert_int_equal(qn_kx8_repack(wf, wbuf, wbuf, 7, 256, 0, 0), QN_ERR_SHAPE);   /* rows not a multiple of 8 */
    assert_int_equal(qn_kx8_repack(wf, wbuf, wbuf, 8, 255, 0, 1), QN_ERR_SHAPE);   /* k not a multiple of 256 */
    assert_int_equal(qn_kx8_repack(wf, wbuf, wbuf, 8, 256, 0, 2), QN_ERR_SHAPE);   /* past the last group */
    assert_int_equal(qn_kx8_repack(wf, NULL, wbuf, 8, 256, 0, 1), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_kx8_repack(QN_QFORMAT_Q4_1, wbuf, wbuf, 8, 256, 0, 1), QN_ERR_UNSUPPORTED);
    assert_int_equal(qn_kx8_unpack_row(wf, wbuf, abuf, 8, 256, 8), QN_ERR_SHAPE);
    if (kt->matmul_x8[wf]) {
        assert_int_equal(qn_cpu_matmul_x8(kt, wf, wbuf, 256, abuf, 1, y1, 8, 0, 4), QN_ERR_INVALID_ARG);
        assert_int_equal(qn_cpu_matmul_x8(kt, wf, wbuf, 256, abuf, 2, y1, 4, 0, 8), QN_ERR_INVALID_ARG);
        assert_int_equal(qn_cpu_matmul_x8(kt, wf, wbuf, 256, abuf, 0, y1, 8, 0, 8), QN_OK);
    }
}

/* dst[i] = fp16 of a standard normal, i < n (tmp: n floats of room) */
static void fill_f16(qn_rng *rng, uint16_t *dst, float *tmp, size_t n) {
    qn_rng_fill_normal(rng, tmp, n, 1.0f);
    for (size_t j = 0; j < n; j++) dst[j] = qn_f32_to_f16(tmp[j]);
}

/* One query token over a paged fp16 KV cache whose blocks are handed out in a scrambled order. */
static void run_attention(const qn_cpu_kernels *kt, const float *q, const uint16_t *k_rows, const uint16_t *v_rows,
                          int n_ctx, int n_heads, int n_kv, int hd, int bs, int lanes, bool pw, float *out) {
    const int n_blocks = (n_ctx + bs - 1) / bs;
    const int64_t row = (int64_t)n_kv * hd;
    int32_t *table = malloc(sizeof(int32_t) * (size_t)n_blocks);
    uint16_t *kc = malloc(sizeof(uint16_t) * (size_t)(n_blocks * bs * row)), *vc = malloc(sizeof(uint16_t) * (size_t)(n_blocks * bs * row));
    float *scratch = malloc(sizeof(float) * (size_t)qn_attn_cpu_scratch_floats(n_heads / n_kv, hd, n_ctx));
    for (int b = 0; b < n_blocks; b++) table[b] = (int32_t)((b * 7 + 3) % n_blocks);
    if (n_blocks > 1 && (n_blocks % 7) == 0) /* keep the map a permutation */
        for (int b = 0; b < n_blocks; b++) table[b] = n_blocks - 1 - b;
    for (int j = 0; j < n_ctx; j++) {
        const int64_t slot = (int64_t)table[j / bs] * bs + j % bs;
        memcpy(kc + slot * row, k_rows + (int64_t)j * row, sizeof(uint16_t) * (size_t)row);
        memcpy(vc + slot * row, v_rows + (int64_t)j * row, sizeof(uint16_t) * (size_t)row);
    }
    const qn_attn_cpu_args a = {.q = q, .k_cache = kc, .v_cache = vc, .block_table = table, .n_ctx = n_ctx,
                                .block_size = bs, .n_heads = n_heads, .n_kv_heads = n_kv, .head_dim = hd,
                                .scale = 1.0f / sqrtf((float)hd), .out = out, .scratch = scratch, .lanes = lanes,
                                .softmax_lanes = kt->attn_softmax_lanes, .pairwise_tree = pw};
    const int group = n_heads / n_kv;
    for (int kvh = 0; kvh < n_kv; kvh++) kt->attn_paged(&a, kvh * group, (kvh + 1) * group);
    free(table), free(kc), free(vc), free(scratch);
}

static void test_attention_paths(void **state) {
    (void)state;
    const int ctxs[] = {1, 5, 16, 17, 54, 97, 300};
    const int shapes[][3] = {{9, 3, 64}, {8, 1, 128}, {4, 4, 64}}; /* n_heads, n_kv_heads, head_dim */
    qn_rng rng;
    int failures = 0;
    for (int i = 0; i < g_ntabs; i++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (size_t ci = 0; ci < sizeof ctxs / sizeof ctxs[0]; ci++)
                for (int multi = 0; multi < 2; multi++) {
                    const int nh = shapes[si][0], nkv = shapes[si][1], hd = shapes[si][2], n_ctx = ctxs[ci];
                    const int lanes = multi ? g_tabs[i].attn_lanes_multi : g_tabs[i].attn_lanes_single;
                    const bool pw = !multi && g_tabs[i].attn_single_pairwise;
                    const size_t nrow = (size_t)n_ctx * (size_t)nkv * (size_t)hd;
                    qn_rng_seed(&rng, 6000 + 101 * si + 7 * ci + (uint64_t)multi);
                    float *q = malloc(sizeof(float) * (size_t)(nh * hd)), *tmp = malloc(sizeof(float) * nrow);
                    float *o16 = malloc(sizeof(float) * (size_t)(nh * hd)), *o24 = malloc(sizeof(float) * (size_t)(nh * hd));
                    uint16_t *kr = malloc(sizeof(uint16_t) * nrow), *vr = malloc(sizeof(uint16_t) * nrow);
                    qn_rng_fill_normal(&rng, q, (size_t)(nh * hd), 2.0f);
                    fill_f16(&rng, kr, tmp, nrow), fill_f16(&rng, vr, tmp, nrow);
                    run_attention(&g_tabs[i], q, kr, vr, n_ctx, nh, nkv, hd, 16, lanes, pw, o16);
                    run_attention(&g_tabs[i], q, kr, vr, n_ctx, nh, nkv, hd, 24, lanes, pw, o24);
                    for (int j = 0; j < nh * hd; j++)
                        if ((memcmp(&o16[j], &o24[j], 4) || isnan(o16[j])) && failures++ < 5)
                            fprintf(stderr, "  attn %s heads %d/%d hd %d n_ctx %d lanes %d [%d]: %.9g vs %.9g\n",
                                    g_tabs[i].isa_name, nh, nkv, hd, n_ctx, lanes, j, o16[j], o24[j]);
                    free(q), free(tmp), free(o16), free(o24), free(kr), free(vr);
                }
    assert_int_equal(failures, 0);
}

/* n_q query tokens at positions n_ctx-1 .. n_ctx+n_q-2 of one sequence (blocks of 16 slots, scrambled),
 * through fn; out: [n_q][out_stride], the gaps between rows untouched. */
static void run_attention_tokens(const qn_cpu_kernels *kt, qn_attn_paged_fn fn, const float *q, const uint16_t *k_rows,
                                 const uint16_t *v_rows, int n_ctx, int n_q, int n_heads, int n_kv, int hd, int lanes,
                                 bool pw, float *out, int64_t out_stride) {
    const int bs = 16, n_keys = n_ctx + n_q - 1, n_blocks = (n_keys + bs - 1) / bs, group = n_heads / n_kv;
    const int64_t row = (int64_t)n_kv * hd;
    int32_t *table = malloc(sizeof(int32_t) * (size_t)n_blocks);
    uint16_t *kc = malloc(sizeof(uint16_t) * (size_t)(n_blocks * bs * row)), *vc = malloc(sizeof(uint16_t) * (size_t)(n_blocks * bs * row));
    float *scratch = malloc(sizeof(float) * (size_t)qn_attn_cpu_scratch_floats(group, hd, n_keys));
    for (int b = 0; b < n_blocks; b++) table[b] = n_blocks - 1 - b;
    for (int j = 0; j < n_keys; j++) {
        const int64_t slot = (int64_t)table[j / bs] * bs + j % bs;
        memcpy(kc + slot * row, k_rows + (int64_t)j * row, sizeof(uint16_t) * (size_t)row);
        memcpy(vc + slot * row, v_rows + (int64_t)j * row, sizeof(uint16_t) * (size_t)row);
    }
    const qn_attn_cpu_args a = {.q = q, .k_cache = kc, .v_cache = vc, .block_table = table, .n_ctx = n_ctx, .n_q = n_q,
                                .q_stride = (int64_t)n_heads * hd, .out_stride = out_stride, .block_size = bs,
                                .n_heads = n_heads, .n_kv_heads = n_kv, .head_dim = hd, .scale = 1.0f / sqrtf((float)hd),
                                .out = out, .scratch = scratch, .lanes = lanes,
                                .softmax_lanes = kt->attn_softmax_lanes, .pairwise_tree = pw};
    for (int kvh = 0; kvh < n_kv; kvh++) fn(&a, kvh * group, (kvh + 1) * group);
    free(table), free(kc), free(vc), free(scratch);
}

/* max |got - ref| / max |ref| of one token's heads against softmax(q·K^T·scale)·V in double, with q and the
 * probabilities rounded to fp16 as the kernels do */
static double attention_ref_err(const float *q, const uint16_t *kr, const uint16_t *vr, int n_keys, int n_heads,
                                int n_kv, int hd, const float *got) {
    const int group = n_heads / n_kv;
    double *p = malloc(sizeof(double) * (size_t)n_keys), err = 0.0, mag = 0.0;
    for (int h = 0; h < n_heads; h++) {
        const int kvh = h / group;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < n_keys; j++) {
            double s = 0.0;
            for (int d = 0; d < hd; d++)
                s += (double)qn_f16_to_f32(qn_f32_to_f16(q[h * hd + d])) *
                     qn_f16_to_f32(kr[((int64_t)j * n_kv + kvh) * hd + d]);
            p[j] = s / sqrt((double)hd);
            if (p[j] > mx) mx = p[j];
        }
        for (int j = 0; j < n_keys; j++) sum += p[j] = exp(p[j] - mx);
        for (int j = 0; j < n_keys; j++) p[j] = qn_f16_to_f32(qn_f32_to_f16((float)(p[j] / sum)));
        for (int d = 0; d < hd; d++) {
            double o = 0.0;
            for (int j = 0; j < n_keys; j++) o += p[j] * qn_f16_to_f32(vr[((int64_t)j * n_kv + kvh) * hd + d]);
            if (fabs(o - got[h * hd + d]) > err || isnan(got[h * hd + d])) err = isnan(got[h * hd + d]) ? INFINITY : fabs(o - got[h * hd + d]);
            if (fabs(o) > mag) mag = fabs(o);
        }
    }
    free(p);
    return err / mag;
}

static void test_attention_tiles(void **state) {
    (void)state;
    const int ctxs[] = {1, 5, 16, 17, 54, 97, 300};
    const int nqs[] = {1, 2, 3, 4, 5, 9};
    const int shapes[][3] = {{9, 3, 64}, {32, 8, 128}, {4, 4, 64}, {9, 1, 72}}; /* n_heads, n_kv_heads, head_dim */
    qn_rng rng;
    int failures = 0, checked = 0;
    double worst = 0.0;
    for (int i = 0; i < g_ntabs; i++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (size_t ci = 0; ci < sizeof ctxs / sizeof ctxs[0]; ci++)
                for (size_t ni = 0; ni < 4 * sizeof nqs / sizeof nqs[0]; ni++) {
                    /* variant 0: the multi-token lanes; 1: the single-token ones (decode: n_q 1; more tokens with
                     * them too); 2, 3: lanes 16 and 64 with either tree, which no table uses yet (1 and 3 tokens) */
                    const int var = (int)(ni / (sizeof nqs / sizeof nqs[0]));
                    const int nh = shapes[si][0], nkv = shapes[si][1], hd = shapes[si][2], n_ctx = ctxs[ci];
                    const int n_q = nqs[ni % (sizeof nqs / sizeof nqs[0])];
                    const int lanes = var == 0 ? g_tabs[i].attn_lanes_multi : var == 1 ? g_tabs[i].attn_lanes_single
                                                                                      : var == 2 ? 16 : 64;
                    const bool pw = var == 1 ? g_tabs[i].attn_single_pairwise : var == 3;
                    if (hd == 128 && n_ctx > 100 && n_q > 2) continue; /* the big shape: fewer long cases */
                    if (var >= 2 && n_q != 1 && n_q != 3) continue;
                    const int n_keys = n_ctx + n_q - 1;
                    const int64_t HQ = (int64_t)nh * hd, ostride = HQ + 5; /* a gap after each token's row */
                    const size_t nrow = (size_t)n_keys * (size_t)nkv * (size_t)hd, nout = (size_t)(n_q * ostride);
                    qn_rng_seed(&rng, 7000 + 331 * si + 17 * ci + ni);
                    float *q = malloc(sizeof(float) * (size_t)(n_q * HQ)), *tmp = malloc(sizeof(float) * nrow);
                    float *o_tile = malloc(sizeof(float) * nout), *o_tok = malloc(sizeof(float) * nout);
                    uint16_t *kr = malloc(sizeof(uint16_t) * nrow), *vr = malloc(sizeof(uint16_t) * nrow);
                    qn_rng_fill_normal(&rng, q, (size_t)(n_q * HQ), 2.0f);
                    fill_f16(&rng, kr, tmp, nrow), fill_f16(&rng, vr, tmp, nrow);
                    for (size_t j = 0; j < nout; j++) o_tile[j] = o_tok[j] = NAN;
                    run_attention_tokens(&g_tabs[i], g_tabs[i].attn_paged, q, kr, vr, n_ctx, n_q, nh, nkv, hd, lanes, pw, o_tile, ostride);
                    run_attention_tokens(&g_tabs[i], g_tabs[i].attn_paged_tokens, q, kr, vr, n_ctx, n_q, nh, nkv, hd, lanes, pw, o_tok, ostride);
                    for (int t = 0; t < n_q; t++) {
                        for (int64_t j = 0; j < ostride; j++) {
                            const float x = o_tile[t * ostride + j], y = o_tok[t * ostride + j];
                            const bool gap = j >= HQ;
                            if ((gap ? !isnan(x) || !isnan(y) : (memcmp(&x, &y, 4) || isnan(x))) && failures++ < 5)
                                fprintf(stderr, "  attn tile %s lanes %d%s heads %d/%d hd %d n_ctx %d n_q %d t %d [%lld]: %.9g vs %.9g\n",
                                        g_tabs[i].isa_name, lanes, pw ? " pairwise" : "", nh, nkv, hd, n_ctx, n_q, t,
                                        (long long)j, x, y);
                        }
                        if (t == 0 || t == n_q - 1) { /* the first and last token against double */
                            const double e = attention_ref_err(q + t * HQ, kr, vr, n_ctx + t, nh, nkv, hd, o_tile + t * ostride);
                            checked++;
                            if (e > worst) worst = e;
                            if (!(e <= 2e-3) && failures++ < 5)
                                fprintf(stderr, "  attn tile %s heads %d/%d hd %d n_ctx %d n_q %d t %d: rel err %.3g\n",
                                        g_tabs[i].isa_name, nh, nkv, hd, n_ctx, n_q, t, e);
                        }
                    }
                    free(q), free(tmp), free(o_tile), free(o_tok), free(kr), free(vr);
                }
    printf("  attention tiles: %d token outputs against double, worst rel err %.3g\n", checked, worst);
    assert_true(checked > 0);
    assert_int_equal(failures, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select),  cmocka_unit_test(test_dequant),     cmocka_unit_test(test_from_float),
        cmocka_unit_test(test_vec_dot), cmocka_unit_test(test_matmul_rows), cmocka_unit_test(test_matmul_tile),
        cmocka_unit_test(test_matmul_x8),
        cmocka_unit_test(test_attention_paths), cmocka_unit_test(test_attention_tiles),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
