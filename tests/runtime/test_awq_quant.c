/* test_awq_quant.c — the AWQ quantizer (model/awq_quant.h): quantization against formats.md §4.1's formulas written
 * here, the GEMM packing round trip through the loader's reader and repack (kernels/quant/awq/awq_format.h,
 * qn_awq_to_lutq), and the scale / clip searches on synthetic activations with a few salient channels (the pick
 * is never worse than round-to-nearest, and clearly better when salient channels exist). */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/awq/awq_format.h"
#include "model/awq_quant.h"

/* formats.md §4.1: scale = max(max − min, 1e−5)/15 (stored fp16), zero = clamp(−round(min/scale), 0, 15) */
static void ref_group(const float *w, int64_t gs, float *scale, int *zero) {
    float mn = w[0], mx = w[0];
    for (int64_t i = 1; i < gs; i++) mn = fminf(mn, w[i]), mx = fmaxf(mx, w[i]);
    *scale = qn_f16_to_f32(qn_f32_to_f16(fmaxf(mx - mn, 1e-5f) / 15.0f));
    const int z = (int)-nearbyintf(mn / *scale);
    *zero = z < 0 ? 0 : z > 15 ? 15 : z;
}

static void test_quantize_pack_roundtrip(void **state) {
    (void)state;
    static const int gss[] = {32, 64, 128};
    for (size_t t = 0; t < sizeof gss / sizeof gss[0]; t++) {
        const int64_t n = 48, k = 256, gs = gss[t], G = k / gs;
        qn_rng r;
        qn_rng_seed(&r, 7 + (uint64_t)gs);
        float *w = malloc(sizeof(float) * (size_t)(n * k)), *deq = malloc(sizeof(float) * (size_t)(n * k)),
              *ref = malloc(sizeof(float) * (size_t)(n * k)), *lut = malloc(sizeof(float) * (size_t)(n * k));
        qn_rng_fill_normal(&r, w, (size_t)(n * k), 0.05f);
        for (int64_t j = 0; j < k; j++) w[5 * k + j] = 0.01f + 0.001f * (float)(j % 3); /* all positive: zero 0 */
        qn_error err = {0};
        qn_awq_result q;
        assert_int_equal(qn_awq_quantize(w, n, k, (int32_t)gs, &q, &err), QN_OK);
        for (int64_t i = 0; i < n; i++)
            for (int64_t g = 0; g < G; g++) {
                float s;
                int z;
                ref_group(w + i * k + g * gs, gs, &s, &z);
                assert_int_equal(q.scales[g * n + i], qn_f32_to_f16(s));
                assert_int_equal(q.zeros[g * n + i], z);
                for (int64_t j = g * gs; j < (g + 1) * gs; j++) {
                    const int c = (int)nearbyintf(w[i * k + j] / s) + z;
                    assert_int_equal(q.q[i * k + j], c < 0 ? 0 : c > 15 ? 15 : c);
                }
            }
        qn_awq_result_dequant(&q, deq);
        /* pack, then read back as the loader does */
        int32_t *qw = malloc(sizeof(int32_t) * (size_t)(k * n / 8)), *qz = malloc(sizeof(int32_t) * (size_t)(G * n / 8));
        qn_awq_pack_gemm(&q, qw, qz);
        const qn_awq_weight aw = {.layout = QN_AWQ_GEMM, .bits = 4, .group_size = (int32_t)gs, .k = k, .n = n,
                                  .zeros_width = n / 8, .qweight = qw, .qzeros = qz, .scales = q.scales};
        char why[256];
        assert_int_equal(qn_awq_check(&aw, why, sizeof why), QN_OK);
        qn_awq_dequant_ref(&aw, ref);
        assert_memory_equal(ref, deq, sizeof(float) * (size_t)(n * k));
        void *buf = malloc(qn_awq_lutq_bytes(&aw));
        qn_lutq_weight lw;
        assert_int_equal(qn_awq_to_lutq(&aw, buf, &lw), QN_OK);
        qn_lutq_dequant_ref(&lw, lut);
        assert_memory_equal(lut, deq, sizeof(float) * (size_t)(n * k));
        /* fake quant gives the same numbers */
        qn_awq_fake_quant(w, n, k, (int32_t)gs);
        assert_memory_equal(w, deq, sizeof(float) * (size_t)(n * k));
        /* word layout spelled out for one word: nibble i holds column ORDER[i] */
        static const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
        for (int i = 0; i < 8; i++) assert_int_equal(((uint32_t)qw[0] >> (4 * i)) & 15u, q.q[order[i] * k + 0]);
        free(buf), free(qw), free(qz), free(w), free(deq), free(ref), free(lut);
        qn_awq_result_free(&q);
    }
    qn_error err = {0};
    qn_awq_result q;
    float w[12 * 64] = {0};
    assert_int_equal(qn_awq_quantize(w, 12, 64, 64, &q, &err), QN_ERR_INVALID_ARG); /* n % 8 */
    assert_int_equal(qn_awq_quantize(w, 8, 96, 64, &q, &err), QN_ERR_INVALID_ARG);  /* k % gs */
}

/* X [T][k] with 4 salient channels 20x larger; H = (2/T) XᵀX, xmean = mean |x| */
static void make_acts(qn_rng *r, int64_t T, int64_t k, float *x, float *h, float *xm) {
    qn_rng_fill_normal(r, x, (size_t)(T * k), 1.0f);
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 3; c < k; c += k / 4) x[t * k + c] *= 20.0f;
    for (int64_t i = 0; i < k; i++) {
        double m = 0;
        for (int64_t t = 0; t < T; t++) m += fabs(x[t * k + i]);
        xm[i] = (float)(m / (double)T);
        for (int64_t j = 0; j < k; j++) {
            double s = 0;
            for (int64_t t = 0; t < T; t++) s += (double)x[t * k + i] * x[t * k + j];
            h[i * k + j] = (float)(2.0 * s / (double)T);
        }
    }
}

static double out_err(const float *w, const float *wq, int64_t n, int64_t k, const float *h) {
    double e = 0;
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++)
                e += (double)(w[r * k + i] - wq[r * k + i]) * h[i * k + j] * (double)(w[r * k + j] - wq[r * k + j]);
    return e;
}

static void test_search(void **state) {
    (void)state;
    const int64_t T = 512, k = 128, n1 = 32, n2 = 16;
    qn_rng r;
    qn_rng_seed(&r, 3);
    float *x = malloc(sizeof(float) * (size_t)(T * k)), *h = malloc(sizeof(float) * (size_t)(k * k)),
          *xm = malloc(sizeof(float) * (size_t)k), *w1 = malloc(sizeof(float) * (size_t)(n1 * k)),
          *w2 = malloc(sizeof(float) * (size_t)(n2 * k)), *s = malloc(sizeof(float) * (size_t)k),
          *wq = malloc(sizeof(float) * (size_t)(n1 * k));
    make_acts(&r, T, k, x, h, xm);
    qn_rng_fill_normal(&r, w1, (size_t)(n1 * k), 0.05f);
    qn_rng_fill_normal(&r, w2, (size_t)(n2 * k), 0.05f);
    qn_awq_params p = qn_awq_params_default();
    p.group_size = 64;
    const float *ws[2] = {w1, w2};
    const int64_t ns[2] = {n1, n2};
    double e_best, e_rtn;
    float alpha;
    qn_error err = {0};
    assert_int_equal(qn_awq_search_scale(NULL, ws, ns, 2, k, xm, h, &p, s, &e_best, &e_rtn, &alpha, &err), QN_OK);
    /* the errors the search reports are the ones of Q(W·s)/s, recomputed here in double */
    double e_rtn_ref = 0, e_best_ref = 0;
    for (int l = 0; l < 2; l++) {
        memcpy(wq, ws[l], sizeof(float) * (size_t)(ns[l] * k));
        qn_awq_fake_quant(wq, ns[l], k, p.group_size);
        e_rtn_ref += out_err(ws[l], wq, ns[l], k, h);
        for (int64_t i = 0; i < ns[l] * k; i++) wq[i] = ws[l][i] * s[i % k];
        qn_awq_fake_quant(wq, ns[l], k, p.group_size);
        for (int64_t i = 0; i < ns[l] * k; i++) wq[i] /= s[i % k];
        e_best_ref += out_err(ws[l], wq, ns[l], k, h);
    }
    printf("  scale search: alpha %.2f, error %.4g vs rtn %.4g (x%.3f)\n", (double)alpha, e_best, e_rtn, e_best / e_rtn);
    assert_true(fabs(e_rtn - e_rtn_ref) <= 1e-3 * e_rtn_ref);
    assert_true(fabs(e_best - e_best_ref) <= 1e-3 * e_best_ref);
    assert_true(alpha > 0 && e_best < 0.8 * e_rtn); /* salient channels: scaling must pay off */
    /* normalised: sqrt(max·min) = 1 */
    float smax = 0, smin = INFINITY;
    for (int64_t j = 0; j < k; j++) smax = fmaxf(smax, s[j]), smin = fminf(smin, s[j]);
    assert_true(fabsf(smax * smin - 1.0f) < 1e-3f);

    /* clip: never worse than no clip on the H metric, group by group */
    memcpy(wq, w1, sizeof(float) * (size_t)(n1 * k));
    float *wc = malloc(sizeof(float) * (size_t)(n1 * k)), *wcq = malloc(sizeof(float) * (size_t)(n1 * k));
    memcpy(wc, w1, sizeof(float) * (size_t)(n1 * k));
    assert_int_equal(qn_awq_search_clip(wc, n1, k, h, &p, NULL, &err), QN_OK);
    memcpy(wcq, wc, sizeof(float) * (size_t)(n1 * k));
    qn_awq_fake_quant(wcq, n1, k, p.group_size);
    qn_awq_fake_quant(wq, n1, k, p.group_size);
    const double e_noclip = out_err(w1, wq, n1, k, h), e_clip = out_err(w1, wcq, n1, k, h);
    printf("  clip search: error %.4g vs %.4g without\n", e_clip, e_noclip);
    assert_true(e_clip <= e_noclip * (1 + 1e-6));
    /* the scalar loop gives the same clipped weights; 29 rows: three blocks of eight in lockstep and five alone */
    float *wcs = malloc(sizeof(float) * (size_t)(n1 * k));
    memcpy(wc, w1, sizeof(float) * (size_t)(n1 * k)), memcpy(wcs, w1, sizeof(float) * (size_t)(n1 * k));
    assert_int_equal(qn_awq_search_clip(wc, 29, k, h, &p, NULL, &err), QN_OK);
    qn_awq_params ps = p;
    ps.scalar = true;
    assert_int_equal(qn_awq_search_clip(wcs, 29, k, h, &ps, NULL, &err), QN_OK);
    assert_memory_equal(wc, wcs, sizeof(float) * (size_t)(n1 * k));
    assert_memory_not_equal(wc, w1, sizeof(float) * (size_t)(29 * k)); /* some group was clipped */
    free(wcs);
    free(wc), free(wcq), free(x), free(h), free(xm), free(w1), free(w2), free(s), free(wq);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_pack_roundtrip),
        cmocka_unit_test(test_search),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
