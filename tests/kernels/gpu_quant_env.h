/* gpu_quant_env.h — the setup of the quantized-matmul GPU tests (test_gpu_quant_lutq.c, test_gpu_quant_lq4m.c):
 * the program's stream (gpu_test.h), a cuBLAS handle and the quant.h device context over it, handed to each test
 * as its state; and their CUDA-graph replay of one call. Header-only, one environment per test program. Include
 * after gpu_test.h. */
#ifndef QN_GPU_QUANT_ENV_H
#define QN_GPU_QUANT_ENV_H

#include <cublas_v2.h>

#include "gpu_test.h"
#include "kernels/quant/lutq_gpu.h"
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

/* y [n][w->n] = the call qn_lutq_matmul_cuda(w, x, n) captured on the program's stream into a CUDA graph and
 * replayed reps times, then synchronized; the capture must succeed and the call return QN_OK. */
static void qn_gpu_quant_graph_replay(const qn_gpu_quant_env *e, const qn_lutq_gpu_weight *w, const void *x, int64_t n,
                                      float *y, void *ws, size_t ws_bytes, int reps) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal));
    const qn_status st = qn_lutq_matmul_cuda(&e->ctx, w, x, n, y, ws, ws_bytes, g_stream);
    CK(cudaStreamEndCapture(g_stream, &g));
    assert_int_equal(st, QN_OK);
    CK(cudaGraphInstantiate(&ge, g, 0));
    for (int rep = 0; rep < reps; rep++) CK(cudaGraphLaunch(ge, g_stream));
    CK(cudaStreamSynchronize(g_stream));
    cudaGraphExecDestroy(ge), cudaGraphDestroy(g);
}

#endif
