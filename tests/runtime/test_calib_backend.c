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

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_device_parse), CASES_LIST};
    return cmocka_run_group_tests_name("calib_backend_cpu", tests, cases_setup, cases_teardown);
}
