/* test_gpu_calib_backend.c — the CUDA calibration backend (model/calib_backend_cuda.cu, cuBLAS) with the same body
 * as the CPU test (calib_backend_cases.h): double-precision loops as references, GPTQ's blocked loop against the
 * fused CPU loop within float rounding. Built only with CUDA (label gpu); skips (77) without a device. */
#include <cuda_runtime_api.h>

#define CASES_DEVICE QN_CALIB_DEVICE_CUDA
#include "calib_backend_cases.h"

int main(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
        printf("skip: no CUDA device\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {CASES_LIST};
    return cmocka_run_group_tests_name("calib_backend_cuda", tests, cases_setup, cases_teardown);
}
