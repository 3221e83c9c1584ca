/* gpu_quant_env.h — the setup of the quantized-matmul GPU tests (test_gpu_quant_lutq.c, test_gpu_quant_lq4m.c):
 * the program's stream (gpu_test.h), a cuBLAS handle and the quant.h device context over it, handed to each test
 * as its state. Header-only, one environment per test program. Include after gpu_test.h. */
#ifndef QN_GPU_QUANT_ENV_H
#define QN_GPU_QUANT_ENV_H

#include <cublas_v2.h>

#include "gpu_test.h"
#include "kernels/quant/quant.h"

typedef struct qn_gpu_quant_env {
    qn_quant_cuda_ctx ctx;
    cublasHandle_t blas;
} qn_gpu_quant_env;

static int qn_gpu_quant_setup(void **state) {
    static qn_gpu_quant_env e;
    if (qn_gpu_test_setup(state) != 0) return -1;
    if (cublasCreate(&e.blas) != CUBLAS_STATUS_SUCCESS) return -1;
    if (qn_quant_cuda_ctx_init(&e.ctx, 0, e.blas) != QN_OK) return -1;
    *state = &e;
    return 0;
}

static int qn_gpu_quant_teardown(void **state) {
    qn_gpu_quant_env *e = *state;
    cublasDestroy(e->blas);
    return qn_gpu_test_teardown(state);
}

#endif
