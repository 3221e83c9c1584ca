/* test_vexp.c — the exp forms of kernels/ops/vexp.h and the table entries built on them:
 *   exp_row   every compiled ISA's table equals qn_vexp_ref(x - shift, table's form) bit for bit, on
 *             seeded random inputs over the whole range (overflow, underflow into subnormals and to 0),
 *             specials (±0, ±inf, NaN, the 126 / 192 scale thresholds) and lengths off the vector width;
 *   forms     SCALEF and FMA within 2.5 ulp (1.45 + 0.5 claimed, plus the rounding of p before the scale)
 *             of the double e^x where the result is normal, exact 0 / inf
 *             beyond the limits, and not the same function as libm or as each other (so a table that
 *             silently fell back to libm, or used the other ISA's form, fails the bit comparison above);
 *   silu_mul  each table equals qn_silu_mul_ref(form, width) bit for bit (vector body in the form, the
 *             leftover elements in libm), and silu·u is within 4 ulp-ish of the double reference.
 * Which form each ISA uses is the peer's choice (llama.cpp's ggml CPU backend): AVX-512 SCALEF, AVX2 and
 * NEON FMA, scalar libm. Agreement with the peer itself is test_llamacpp_parity's job. */
/* QN_TEST_LABELS: cpu neon (scripts/test_neon.sh runs the neon label under qemu-aarch64) */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ops/vexp.h"

static qn_cpu_kernels g_tabs[QN_CPU_ISA_COUNT];
static int g_ntabs;

static int setup(void **state) {
    (void)state;
    g_ntabs = 0;
    for (int isa = QN_CPU_ISA_SCALAR; isa < QN_CPU_ISA_COUNT; isa++)
        if (qn_cpu_kernels_select((qn_cpu_isa)isa, &g_tabs[g_ntabs]) == QN_OK) g_ntabs++;
    return g_ntabs > 0 ? 0 : -1;
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Same bits, or both NaN. */
static int same(float a, float b) { return (isnan(a) && isnan(b)) || bits(a) == bits(b); }

/* n inputs: mostly uniform over [-110, 95] (beyond both limits), some near 0 and the specials. */
static void fill_inputs(float *x, int64_t n, uint64_t seed) {
    static const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 88.7f, 88.72f, 89.0f, -87.3f, -87.4f,
                                     -103.9f, -104.0f, -120.0f, 126.0f * 0.6931472f, -126.0f * 0.6931472f,
                                     127.5f * 0.6931472f, -127.5f * 0.6931472f, 192.5f * 0.6931472f,
                                     -192.5f * 0.6931472f, 1e-30f, -1e-30f, 1e30f, -1e30f};
    const int ns = (int)(sizeof specials / sizeof specials[0]);
    qn_rng r;
    qn_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) {
        const uint64_t pick = qn_rng_u64(&r) % 16;
        x[i] = pick == 0 ? specials[qn_rng_u64(&r) % (uint64_t)ns]
               : pick < 4 ? qn_rng_uniform(&r, -1.0f, 1.0f)
                          : qn_rng_uniform(&r, -110.0f, 95.0f);
    }
}

static void test_exp_row_bits(void **state) {
    (void)state;
    const int64_t lens[] = {1, 7, 15, 16, 17, 33, 1000003};
    for (int t = 0; t < g_ntabs; t++) {
        const qn_cpu_kernels *k = &g_tabs[t];
        assert_non_null(k->exp_row);
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t n = lens[li];
            float *x = malloc((size_t)n * 4), *y = malloc((size_t)(n + 1) * 4);
            assert_true(x && y);
            fill_inputs(x, n, 1000 + (uint64_t)li);
            const float shift = li % 2 ? 0.0f : 3.25f;
            for (int64_t i = 0; i <= n; i++) y[i] = NAN; /* poison, plus one past the end */
            k->exp_row(n, y, x, shift);
            int64_t bad = 0;
            for (int64_t i = 0; i < n; i++) {
                const float want = qn_vexp_ref(x[i] - shift, k->vexp_form);
                if (!same(y[i], want) && bad++ < 5)
                    fprintf(stderr, "%s exp_row n=%lld [%lld] x=%a: %a, reference %a\n", k->isa_name, (long long)n,
                            (long long)i, x[i], y[i], want);
            }
            assert_true(isnan(y[n]) && bits(y[n]) == bits(NAN)); /* nothing written past n */
            assert_int_equal(bad, 0);
            /* in place, as the attention calls it */
            memcpy(y, x, (size_t)n * 4);
            k->exp_row(n, y, y, shift);
            for (int64_t i = 0; i < n; i++) assert_true(same(y[i], qn_vexp_ref(x[i] - shift, k->vexp_form)));
            free(x), free(y);
        }
        fprintf(stderr, "%s: exp_row form %d, bit-identical to the reference\n", k->isa_name, (int)k->vexp_form);
    }
}

static double ulp_of(double v) { return ldexp(1.0, ilogb((float)v) - 23); }

static void test_forms_accuracy(void **state) {
    (void)state;
    const int64_t n = 2000000;
    float *x = malloc((size_t)n * 4);
    assert_non_null(x);
    fill_inputs(x, n, 77);
    const qn_vexp_form forms[] = {QN_VEXP_SCALEF, QN_VEXP_FMA};
    int64_t diff_libm[2] = {0, 0}, diff_other = 0;
    for (int f = 0; f < 2; f++) {
        double worst = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const float v = x[i], got = qn_vexp_ref(v, forms[f]);
            if (isnan(v)) {
                assert_true(isnan(got));
                continue;
            }
            const double want = exp((double)v);
            if (v > 88.73f) assert_true(isinf(got) && got > 0);
            else if (v < -104.0f) assert_true(got == 0.0f);
            else if (want >= 0x1p-126 && want <= 0x1.fffffep127) {
                const double e = fabs((double)got - want) / ulp_of(want);
                if (e > worst) worst = e;
                if (e > 2.5) fail_msg("form %d: e^%a = %a, double %a (%.2f ulp)", (int)forms[f], v, got, want, e);
            } else if (want < 0x1p-126) {
                assert_true(fabs((double)got - want) <= 0x1p-149 * 2); /* subnormal: absolute */
            }
            if (!same(got, expf(v))) diff_libm[f]++;
            if (f == 0 && !same(got, qn_vexp_ref(v, QN_VEXP_FMA))) diff_other++;
        }
        fprintf(stderr, "form %d: worst %.3f ulp over %lld inputs; differs from libm expf on %lld\n", (int)forms[f],
                worst, (long long)n, (long long)diff_libm[f]);
    }
    fprintf(stderr, "SCALEF and FMA differ on %lld inputs\n", (long long)diff_other);
    assert_true(diff_libm[0] > 1000 && diff_libm[1] > 1000 && diff_other > 1000);
    free(x);
}

static void test_silu_mul(void **state) {
    (void)state;
    const int64_t lens[] = {1, 5, 16, 23, 1536, 1539};
    for (int t = 0; t < g_ntabs; t++) {
        const qn_cpu_kernels *k = &g_tabs[t];
        assert_non_null(k->silu_mul);
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t n = lens[li];
            float *g = malloc((size_t)n * 4), *u = malloc((size_t)n * 4), *want = malloc((size_t)n * 4);
            double *ref = malloc((size_t)n * 8);
            assert_true(g && u && want && ref);
            qn_rng r;
            qn_rng_seed(&r, 500 + (uint64_t)li);
            for (int64_t i = 0; i < n; i++) g[i] = 4.0f * qn_rng_normal(&r), u[i] = qn_rng_normal(&r);
            if (n > 3) g[0] = -120.0f, g[1] = 95.0f; /* e^-x overflows / underflows */
            memcpy(want, g, (size_t)n * 4);
            for (int64_t i = 0; i < n; i++) ref[i] = (double)g[i] / (1.0 + exp(-(double)g[i])) * (double)u[i];
            qn_silu_mul_ref(want, u, n, k->vexp_form, k->vexp_width);
            k->silu_mul(n, g, u);
            for (int64_t i = 0; i < n; i++)
                if (!same(g[i], want[i])) fail_msg("%s silu_mul n=%lld [%lld]: %a, reference %a", k->isa_name,
                                                   (long long)n, (long long)i, g[i], want[i]);
            qn_check_result cr;
            assert_true(qn_check_close("silu_mul vs double", g, ref, (size_t)n, 1e-30, 6e-7, 1e-12, &cr));
            free(g), free(u), free(want), free(ref);
        }
        fprintf(stderr, "%s: silu_mul (form %d, width %d) bit-identical to the reference\n", k->isa_name,
                (int)k->vexp_form, k->vexp_width);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp_row_bits),
        cmocka_unit_test(test_forms_accuracy),
        cmocka_unit_test(test_silu_mul),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
