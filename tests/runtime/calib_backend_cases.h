/* calib_backend_cases.h — the test body of the calibration backend (model/calib_backend.h), included by
 * test_calib_backend.c (CPU, label cpu) and test_gpu_calib_backend.c (CUDA, label gpu), so both implementations
 * answer the same questions: fresh seeded inputs, a naive double-precision loop as the reference, max relative
 * error (atol + rtol·|ref|) and NMSE against thresholds, over awkward shapes (1, 3, 37 tokens; k 70 off every tile).
 * Thresholds: f32 sums of k products of N(0, 1) inputs carry ~sqrt(k)·2^-24 relative rounding per element, so
 * NMSE <= 1e-10 and |err| <= 1e-4·(sqrt(k) + |ref|) hold with three orders of margin for both the CPU's tiled order
 * and cuBLAS's; a transposed or misplaced operand gives NMSE ~ 1. The including file defines CASES_DEVICE. */
#ifndef QN_TEST_CALIB_BACKEND_CASES_H
#define QN_TEST_CALIB_BACKEND_CASES_H

#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common/half.h"
#include "model/calib_backend.h"
#include "model/gptq_quant.h"

#define CASES_NMSE 1e-10

static int cases_setup(void **state) {
    qn_calib_backend *b = NULL;
    qn_error err = {0};
    if (qn_calib_backend_create(CASES_DEVICE, NULL, &b, &err) != QN_OK) {
        fprintf(stderr, "calib backend: %s\n", err.msg);
        return -1;
    }
    printf("calib backend: %s\n", qn_calib_backend_name(b));
    *state = b;
    return 0;
}

static int cases_teardown(void **state) {
    qn_calib_backend_destroy(*state);
    return 0;
}

static float *cases_normal(qn_rng *r, int64_t n) {
    float *p = malloc(sizeof(float) * (size_t)n);
    assert_non_null(p);
    qn_rng_fill_normal(r, p, (size_t)n, 1.0f);
    return p;
}

static void cases_check(const char *what, const float *got, const double *ref, int64_t n, int64_t k) {
    qn_check_result res;
    const int ok = qn_check_close(what, got, ref, (size_t)n, 1e-4 * sqrt((double)k), 1e-4, CASES_NMSE, &res);
    printf("  %-24s max rel %.3g  nmse %.3g\n", what, res.max_rel_err, res.nmse);
    assert_true(ok);
}

/* ref[t][i] = Σ_j x[t][j]·w[i][j] in double */
static void cases_ref_matmul(const float *x, int64_t T, int64_t k, const float *w, int64_t n, double *ref) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++) {
            double a = 0;
            for (int64_t j = 0; j < k; j++) a += (double)x[t * k + j] * (double)w[i * k + j];
            ref[t * n + i] = a;
        }
}

/* y = X·wᵀ, X in slot X */
static void test_matmul(void **state) {
    qn_calib_backend *b = *state;
    static const int64_t shapes[][3] = {{1, 70, 13}, {3, 64, 8}, {37, 70, 13}, {130, 576, 192}, {64, 1536, 24}};
    qn_rng r;
    qn_rng_seed(&r, 101);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t T = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
        float *x = cases_normal(&r, T * k), *w = cases_normal(&r, n * k), *y = malloc(sizeof(float) * (size_t)(T * n));
        double *ref = malloc(sizeof(double) * (size_t)(T * n));
        cases_ref_matmul(x, T, k, w, n, ref);
        qn_error err = {0};
        assert_int_equal(qn_calib_backend_load(b, QN_CALIB_SLOT_X, x, T, k, &err), QN_OK);
        assert_int_equal(qn_calib_backend_matmul(b, QN_CALIB_SLOT_X, w, n, y, &err), QN_OK);
        char what[64];
        snprintf(what, sizeof what, "matmul %lldx%lldx%lld", (long long)T, (long long)k, (long long)n);
        cases_check(what, y, ref, T * n, k);
        free(x), free(w), free(y), free(ref);
    }
}

/* h = scale·XᵀX, both triangles */
static void test_gram(void **state) {
    qn_calib_backend *b = *state;
    static const int64_t shapes[][2] = {{1, 8}, {37, 70}, {300, 192}, {2048, 64}};
    qn_rng r;
    qn_rng_seed(&r, 202);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t T = shapes[s][0], k = shapes[s][1];
        const float scale = 2.0f / (float)T;
        float *x = cases_normal(&r, T * k), *h = malloc(sizeof(float) * (size_t)(k * k));
        double *ref = malloc(sizeof(double) * (size_t)(k * k));
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) {
                double a = 0;
                for (int64_t t = 0; t < T; t++) a += (double)x[t * k + i] * (double)x[t * k + j];
                ref[i * k + j] = (double)scale * a;
            }
        qn_error err = {0};
        assert_int_equal(qn_calib_backend_load(b, QN_CALIB_SLOT_X, x, T, k, &err), QN_OK);
        assert_int_equal(qn_calib_backend_gram(b, QN_CALIB_SLOT_X, scale, h, &err), QN_OK);
        char what[64];
        snprintf(what, sizeof what, "gram %lldx%lld", (long long)T, (long long)k);
        cases_check(what, h, ref, k * k, T);
        free(x), free(h), free(ref);
    }
}

/* e = Σ_r d_r·H·d_rᵀ with H symmetric positive semi-definite */
static void test_quad(void **state) {
    qn_calib_backend *b = *state;
    static const int64_t shapes[][2] = {{1, 16}, {13, 70}, {96, 256}};
    qn_rng r;
    qn_rng_seed(&r, 303);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t n = shapes[s][0], k = shapes[s][1], T = 2 * k;
        float *x = cases_normal(&r, T * k), *d = cases_normal(&r, n * k), *h = malloc(sizeof(float) * (size_t)(k * k));
        for (int64_t i = 0; i < k; i++) /* H = XᵀX / T, made exactly symmetric in f32 */
            for (int64_t j = 0; j <= i; j++) {
                double a = 0;
                for (int64_t t = 0; t < T; t++) a += (double)x[t * k + i] * (double)x[t * k + j];
                h[i * k + j] = h[j * k + i] = (float)(a / (double)T);
            }
        double ref = 0;
        for (int64_t rr = 0; rr < n; rr++)
            for (int64_t i = 0; i < k; i++)
                for (int64_t j = 0; j < k; j++) ref += (double)d[rr * k + i] * (double)h[i * k + j] * (double)d[rr * k + j];
        qn_error err = {0};
        double e = 0;
        assert_int_equal(qn_calib_backend_load(b, QN_CALIB_SLOT_H, h, k, k, &err), QN_OK);
        assert_int_equal(qn_calib_backend_quad(b, QN_CALIB_SLOT_H, d, n, &e, &err), QN_OK);
        const double rel = fabs(e - ref) / fabs(ref);
        printf("  quad %lldx%lld: %.9g vs %.9g, rel %.3g\n", (long long)n, (long long)k, e, ref, rel);
        assert_true(rel < 1e-5); /* f32 y = d·H (relative ~sqrt(k)·6e-8), summed in double */
        free(x), free(d), free(h);
    }
}

/* W[:, i2:] -= E·U[i1:i2, i2:] block after block (the last block leaves W alone), read back through read_cols */
static void test_gptq_update(void **state) {
    qn_calib_backend *b = *state;
    const int64_t n = 19, k = 150, B = 64;
    qn_rng r;
    qn_rng_seed(&r, 404);
    float *w = cases_normal(&r, n * k), *u = cases_normal(&r, k * k), *e = cases_normal(&r, n * B);
    float *got = malloc(sizeof(float) * (size_t)(n * k));
    double *ref = malloc(sizeof(double) * (size_t)(n * k));
    for (int64_t i = 0; i < n * k; i++) ref[i] = w[i];
    qn_error err = {0};
    assert_int_equal(qn_calib_backend_load(b, QN_CALIB_SLOT_W, w, n, k, &err), QN_OK);
    assert_int_equal(qn_calib_backend_load(b, QN_CALIB_SLOT_U, u, k, k, &err), QN_OK);
    for (int64_t i1 = 0; i1 < k; i1 += B) {
        const int64_t i2 = i1 + B < k ? i1 + B : k, cnt = i2 - i1;
        for (int64_t rr = 0; rr < n; rr++)
            for (int64_t c = 0; c < cnt; c++)
                for (int64_t j = i2; j < k; j++) ref[rr * k + j] -= (double)e[rr * cnt + c] * (double)u[(i1 + c) * k + j];
        assert_int_equal(qn_calib_backend_gptq_update(b, i1, i2, e, &err), QN_OK);
    }
    memset(w, 0, sizeof(float) * (size_t)(n * k)); /* the W slot must not depend on the source any more */
    assert_int_equal(qn_calib_backend_read_cols(b, QN_CALIB_SLOT_W, 0, k, got, &err), QN_OK);
    cases_check("gptq_update", got, ref, n * k, B);
    float *part = malloc(sizeof(float) * (size_t)(n * 7));
    assert_int_equal(qn_calib_backend_read_cols(b, QN_CALIB_SLOT_W, 70, 77, part, &err), QN_OK);
    for (int64_t rr = 0; rr < n; rr++) assert_memory_equal(part + rr * 7, got + rr * k + 70, sizeof(float) * 7);
    assert_int_equal(qn_calib_backend_read_cols(b, QN_CALIB_SLOT_W, 70, 151, part, &err), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_calib_backend_gptq_update(b, 64, 200, e, &err), QN_ERR_INVALID_ARG);
    free(w), free(u), free(e), free(got), free(ref), free(part);
}

/* GPTQ through the backend's blocked loop against the fused CPU loop: on the CPU backend the same codes, scales and
 * zeros (the update subtracts in the same order); on CUDA within float rounding: codes off by a rounding-boundary
 * flip (and what error feedback carries from it) in <= 2% of the weights, and the dequantized weights closer to the
 * CPU's than a tenth of the quantization error itself. */
static void test_gptq_blocked(void **state) {
    qn_calib_backend *b = *state;
    const int64_t n = 40, k = 192, T = 400;
    qn_rng r;
    qn_rng_seed(&r, 505);
    float *w = cases_normal(&r, n * k), *x = cases_normal(&r, T * k), *h = malloc(sizeof(float) * (size_t)(k * k));
    for (int64_t t = 0; t < T; t++) /* correlated, unequal channels, as activations are */
        for (int64_t j = 1; j < k; j++) x[t * k + j] = 0.6f * x[t * k + j - 1] + x[t * k + j] * (1.0f + (float)(j % 7));
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j <= i; j++) {
            double a = 0;
            for (int64_t t = 0; t < T; t++) a += (double)x[t * k + i] * (double)x[t * k + j];
            h[i * k + j] = h[j * k + i] = (float)(2.0 * a / (double)T);
        }
    float *d0 = malloc(sizeof(float) * (size_t)(n * k)), *d1 = malloc(sizeof(float) * (size_t)(n * k));
    static const struct { int32_t gs, block; bool act, stat; } cfg[] = {
        {64, 64, false, false}, {64, 32, true, false}, {32, 16, true, true}, {-1, 64, false, false}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        qn_gptq_params p = qn_gptq_params_default();
        p.group_size = cfg[c].gs, p.block_size = cfg[c].block, p.act_order = cfg[c].act, p.static_groups = cfg[c].stat;
        qn_gptq_result ref, got;
        qn_error err = {0};
        assert_int_equal(qn_gptq_quantize(w, n, k, h, &p, NULL, &ref, &err), QN_OK);
        assert_int_equal(qn_gptq_quantize_on(b, w, n, k, h, &p, NULL, &got, &err), QN_OK);
        qn_gptq_result_dequant(&ref, d0), qn_gptq_result_dequant(&got, d1);
        int64_t flips = 0;
        double num = 0, den = 0, qe = 0;
        for (int64_t i = 0; i < n * k; i++) {
            flips += ref.q[i] != got.q[i];
            num += ((double)d1[i] - d0[i]) * ((double)d1[i] - d0[i]), den += (double)d0[i] * d0[i];
            qe += ((double)d0[i] - w[i]) * ((double)d0[i] - w[i]);
        }
        printf("  gptq g%d B%d act %d static %d: %lld codes differ, nmse %.3g (quantization %.3g), loss %.6g / %.6g\n",
               cfg[c].gs, cfg[c].block, cfg[c].act, cfg[c].stat, (long long)flips, num / den, qe / den, got.loss, ref.loss);
        if (qn_calib_backend_device(b) == QN_CALIB_DEVICE_CPU) {
            assert_memory_equal(got.q, ref.q, (size_t)(n * k));
            assert_memory_equal(got.scales, ref.scales, sizeof(uint16_t) * (size_t)(ref.n_groups * n));
            assert_memory_equal(got.zeros, ref.zeros, sizeof(int32_t) * (size_t)(ref.n_groups * n));
            assert_memory_equal(got.g_idx, ref.g_idx, sizeof(int32_t) * (size_t)k);
            assert_true(fabs(got.loss - ref.loss) <= 1e-9 * ref.loss);
        } else {
            assert_true(flips <= n * k / 50);
            assert_true(num <= 0.1 * qe);
        }
        qn_gptq_result_free(&ref), qn_gptq_result_free(&got);
    }
    free(w), free(x), free(h), free(d0), free(d1);
}

static void test_empty_slot(void **state) {
    (void)state;
    qn_calib_backend *b = NULL; /* a fresh backend: every slot empty */
    qn_error err = {0};
    assert_int_equal(qn_calib_backend_create(CASES_DEVICE, NULL, &b, &err), QN_OK);
    float y[4], h[4];
    double e;
    assert_int_equal(qn_calib_backend_matmul(b, QN_CALIB_SLOT_X, y, 1, y, &err), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_calib_backend_gram(b, QN_CALIB_SLOT_X, 1.0f, h, &err), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_calib_backend_quad(b, QN_CALIB_SLOT_H, y, 1, &e, &err), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_calib_backend_load(b, QN_CALIB_SLOT_X, NULL, 1, 1, &err), QN_ERR_INVALID_ARG);
    qn_calib_backend_destroy(b);
}

#define CASES_LIST                                                                                         \
    cmocka_unit_test(test_matmul), cmocka_unit_test(test_gram), cmocka_unit_test(test_quad),               \
        cmocka_unit_test(test_gptq_update), cmocka_unit_test(test_gptq_blocked), cmocka_unit_test(test_empty_slot)

#endif
