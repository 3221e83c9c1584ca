/* test_float_gemm.c — the F16 / BF16 / F32 panel GEMM (kernels/quant/float_gemm_cpu.c over kernels/cpu/panel_x86.h)
 * of every compiled x86 table the CPU runs, through qn_cpu_matmul_rows, against a double-precision reference on seeded
 * random weights and activations (the activations rounded to the format as the runtime does: from_float).
 * Shapes: every micro-kernel strip (1..33 tokens with the GEMM forced: 1..6 on AVX2, 1..12 on AVX-512, alone and
 * after whole strips; and 2..33 where the table's switch, float_gemm_min_tokens, sends them), 200 tokens
 * (past the 192-token block), K = 37, 300 and 1100 (column tails of 5, 44 and 76 past whole 8-column steps and
 * 128-column chunks), 300 rows (past a 256-row super-block) split in two calls at row 101 (panels cut short on both
 * sides), rows outside the range and tokens past n poisoned (NaN) and checked untouched.
 * Bound: each (token, row) is one fp32 FMA chain per 128-column chunk, the chunks added in order, over exact
 * products: |y − ref| ≤ (128 + ceil(K / 128))·2^-24·Σ|w·a| (the classical γ_n bound of that order), the measured
 * worst printed (about 1e-7 of Σ|w·a|). Where no table has the GEMM (scalar, NEON) the test checks that none claims
 * it. */
#include "harness.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/cpu/cpu_kernels.h"

static const qn_qformat FMTS[] = {QN_QFORMAT_F32, QN_QFORMAT_F16, QN_QFORMAT_BF16};

/* element i of a row of fmt -> double */
static double elem(qn_qformat fmt, const uint8_t *row, int64_t i) {
    if (fmt == QN_QFORMAT_F32) {
        float f;
        memcpy(&f, row + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, row + 2 * i, 2);
    return fmt == QN_QFORMAT_F16 ? qn_f16_to_f32(h) : qn_bf16_to_f32(h);
}

static double g_worst; /* max |y − ref| / Σ|w·a| seen */
static int g_checked;  /* GEMM calls checked */

/* one weight (rows × k) and nt tokens through every table's GEMM (force: at any token count; else where the table
 * takes it) */
static void check_shape(qn_qformat fmt, int64_t rows, int64_t k, int64_t nt, uint64_t seed, bool force) {
    const size_t wrb = qn_qformat_row_bytes(fmt, k), arb = qn_qformat_row_bytes(fmt, k);
    const int64_t ldy = rows + 3, split = rows > 101 ? 101 : rows / 2;
    uint8_t *w = malloc(wrb * (size_t)rows), *a = malloc(arb * (size_t)nt);
    float *x = malloc(sizeof(float) * (size_t)k), *y = malloc(sizeof(float) * (size_t)(ldy * (nt + 1)));
    double *ref = malloc(sizeof(double) * (size_t)(rows * nt)), *mag = malloc(sizeof(double) * (size_t)(rows * nt));
    qn_rng rng;
    qn_rng_seed(&rng, seed);
    qn_cpu_kernels scalar;
    assert_int_equal(qn_cpu_kernels_select(QN_CPU_ISA_SCALAR, &scalar), QN_OK);
    for (int64_t r = 0; r < rows; r++) {
        qn_rng_fill_normal(&rng, x, (size_t)k, 0.05f);
        scalar.from_float[fmt](x, w + (size_t)r * wrb, k);
    }
    for (int64_t t = 0; t < nt; t++) {
        qn_rng_fill_normal(&rng, x, (size_t)k, 1.0f);
        scalar.from_float[fmt](x, a + (size_t)t * arb, k);
    }
    for (int64_t t = 0; t < nt; t++)
        for (int64_t r = 0; r < rows; r++) {
            double s = 0.0, m = 0.0;
            for (int64_t i = 0; i < k; i++) {
                const double p = elem(fmt, w + (size_t)r * wrb, i) * elem(fmt, a + (size_t)t * arb, i);
                s += p, m += fabs(p);
            }
            ref[t * rows + r] = s, mag[t * rows + r] = m;
        }
    const double bound = (128.0 + (double)((k + 127) / 128)) * ldexp(1.0, -24);
    for (int isa = QN_CPU_ISA_SCALAR; isa < QN_CPU_ISA_COUNT; isa++) {
        qn_cpu_kernels kern;
        if (qn_cpu_kernels_select((qn_cpu_isa)isa, &kern) != QN_OK || !kern.float_gemm[fmt]) continue;
        assert_true(kern.float_gemm_min_tokens[fmt] >= 2 && kern.float_gemm_min_tokens[fmt] <= 16);
        if (force) kern.float_gemm_min_tokens[fmt] = 1; /* the GEMM at any token count */
        else if (nt < kern.float_gemm_min_tokens[fmt]) continue; /* the dot path: test_simd's */
        for (int64_t i = 0; i < ldy * (nt + 1); i++) y[i] = NAN;
        /* two row ranges, as two threads would split them */
        assert_int_equal(qn_cpu_matmul_rows(&kern, fmt, w, k, a, nt, y, ldy, 0, split), QN_OK);
        assert_int_equal(qn_cpu_matmul_rows(&kern, fmt, w, k, a, nt, y, ldy, split, rows), QN_OK);
        int bad = 0;
        for (int64_t t = 0; t <= nt; t++)
            for (int64_t r = 0; r < ldy; r++) {
                const float v = y[t * ldy + r];
                if (t == nt || r >= rows) { /* poison outside the output */
                    if (!isnan(v) && bad++ < 5)
                        fprintf(stderr, "  %s %s %lldx%lld nt %lld: wrote t %lld r %lld\n", kern.isa_name,
                                QN_QFORMATS[fmt].name, (long long)rows, (long long)k, (long long)nt, (long long)t,
                                (long long)r);
                    continue;
                }
                const double e = fabs((double)v - ref[t * rows + r]), m = mag[t * rows + r];
                if (m > 0 && e / m > g_worst) g_worst = e / m;
                if (!(e <= bound * m) && bad++ < 5)
                    fprintf(stderr, "  %s %s %lldx%lld nt %lld t %lld r %lld: %.9g vs %.9g (|err| %.3g, bound %.3g)\n",
                            kern.isa_name, QN_QFORMATS[fmt].name, (long long)rows, (long long)k, (long long)nt,
                            (long long)t, (long long)r, v, ref[t * rows + r], e, bound * m);
            }
        assert_int_equal(bad, 0);
        g_checked++;
    }
    free(w), free(a), free(x), free(y), free(ref), free(mag);
}

/* 1..33 tokens on the GEMM (every strip, whole strips after it or not) and 2..33 as the table switches, on a small
 * weight with a column tail */
static void test_strips(void **state) {
    (void)state;
    for (size_t f = 0; f < sizeof FMTS / sizeof FMTS[0]; f++)
        for (int64_t nt = 1; nt <= 33; nt++) {
            check_shape(FMTS[f], 37, 300, nt, 100 + (uint64_t)(f * 64 + nt), true);
            if (nt >= 2) check_shape(FMTS[f], 37, 300, nt, 200 + (uint64_t)(f * 64 + nt), false);
        }
}

/* long rows (chunk and step tails), tall weights (super-blocks), 200 tokens (two token blocks) */
static void test_blocks(void **state) {
    (void)state;
    static const int64_t SHAPES[][3] = {{300, 37, 20}, {300, 1100, 17}, {19, 1100, 200}, {300, 300, 200}};
    for (size_t f = 0; f < sizeof FMTS / sizeof FMTS[0]; f++)
        for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
            check_shape(FMTS[f], SHAPES[i][0], SHAPES[i][1], SHAPES[i][2], 900 + (uint64_t)(f * 8 + i), false);
    fprintf(stderr, "GEMM calls checked: %d, worst |y - ref| / sum|w a|: %.3g\n", g_checked, g_worst);
#if defined(__x86_64__)
    /* every x86 table this CPU runs has it (the AVX2 one on any x86-64 CPU these tests run on) */
    qn_cpu_kernels avx2;
    if (qn_cpu_kernels_select(QN_CPU_ISA_AVX2, &avx2) == QN_OK) assert_true(g_checked > 0);
#else
    assert_int_equal(g_checked, 0);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strips),
        cmocka_unit_test(test_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
