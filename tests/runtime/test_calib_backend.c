/* test_calib_backend.c — the CPU calibration backend (model/calib_backend.h) against double-precision loops, and
 * GPTQ's blocked backend loop against the fused CPU loop (bit-identical); the body is calib_backend_cases.h,
 * which test_gpu_calib_backend.c runs on CUDA. Also: device names parse, and a CPU-only build refuses CUDA. */
#define CASES_DEVICE QN_CALIB_DEVICE_CPU
#include "calib_backend_cases.h"

static void test_device_parse(void **state) {
    (void)state;
    qn_calib_device d;
    assert_true(qn_calib_device_parse("auto", &d) && d == QN_CALIB_DEVICE_AUTO);
    assert_true(qn_calib_device_parse("cpu", &d) && d == QN_CALIB_DEVICE_CPU);
    assert_true(qn_calib_device_parse("cuda", &d) && d == QN_CALIB_DEVICE_CUDA);
    assert_false(qn_calib_device_parse("gpu", &d));
#ifndef QN_HAVE_CUDA
    qn_calib_backend *b = NULL;
    qn_error err = {0};
    assert_int_equal(qn_calib_backend_create(QN_CALIB_DEVICE_CUDA, NULL, &b, &err), QN_ERR_NO_DEVICE);
    assert_non_null(strstr(err.msg, "without CUDA"));
    assert_int_equal(qn_calib_backend_create(QN_CALIB_DEVICE_AUTO, NULL, &b, &err), QN_OK);
    assert_int_equal(qn_calib_backend_device(b), QN_CALIB_DEVICE_CPU);
    qn_calib_backend_destroy(b);
#endif
}

/* The CPU GEMM's SIMD variants: AVX2 and AVX-512VL (where this CPU has them) give the same bits and match a double
 * reference; the scalar loop matches it too. Shapes cover whole 4x4 tiles, ragged rows/tokens and k tails. */
static void test_gemm_isa(void **state) {
    (void)state;
    static const int64_t shapes[][3] = {{64, 576, 192}, {37, 70, 13}, {130, 1536, 26}, {5, 8, 4}};
    qn_rng r;
    qn_rng_seed(&r, 303);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t T = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
        float *x = cases_normal(&r, T * k), *w = cases_normal(&r, n * k);
        float *y[3];
        double *ref = malloc(sizeof(double) * (size_t)(T * n));
        cases_ref_matmul(x, T, k, w, n, ref);
        for (int isa = 0; isa < 3; isa++) {
            y[isa] = malloc(sizeof(float) * (size_t)(T * n));
            for (int64_t i = 0; i < T * n; i++) y[isa][i] = NAN; /* poison */
            if (!qn_calib_gemm_f32_isa((qn_calib_isa)isa, x, T, k, w, n, y[isa])) {
                printf("  gemm isa %d: not on this CPU\n", isa);
                free(y[isa]), y[isa] = NULL;
                continue;
            }
            char what[64];
            snprintf(what, sizeof what, "gemm isa %d %lldx%lldx%lld", isa, (long long)T, (long long)k, (long long)n);
            cases_check(what, y[isa], ref, T * n, k);
        }
        assert_non_null(y[QN_CALIB_ISA_SCALAR]);
        if (y[QN_CALIB_ISA_AVX2] && y[QN_CALIB_ISA_AVX512VL])
            assert_memory_equal(y[QN_CALIB_ISA_AVX2], y[QN_CALIB_ISA_AVX512VL], sizeof(float) * (size_t)(T * n));
        for (int isa = 0; isa < 3; isa++) free(y[isa]);
        free(x), free(w), free(ref);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_device_parse), cmocka_unit_test(test_gemm_isa),
                                       CASES_LIST};
    return cmocka_run_group_tests_name("calib_backend_cpu", tests, cases_setup, cases_teardown);
}
