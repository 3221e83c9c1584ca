/* cuda_check.h — the one wrapper for CUDA runtime and cuBLAS status codes (style.md §3.4).
 * QN_CUDA_TRY(call) / QN_CUBLAS_TRY(call): on failure, log the statement, function, file and line to
 * stderr and `return QN_ERR_CUDA` from the enclosing function (which must return qn_status).
 * The _GOTO forms set a qn_status variable and jump to a cleanup label instead (style.md §3.5).
 * Both come from one generator, QN_CUDA_TRY_GEN (ggml's CUDA_CHECK_GEN). kernels/ cannot reach
 * runtime/core/log.h (dependency direction, style.md §2.1), so the report goes straight to stderr.
 * Include only from CUDA-enabled code: it pulls in cuda_runtime_api.h and cublas_v2.h. */
#ifndef QN_CUDA_CHECK_H
#define QN_CUDA_CHECK_H

#include <stdio.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "quern.h"

static inline void qn_cuda_report(const char *stmt, const char *func, const char *file, int line,
                                  const char *what) {
    fprintf(stderr, "quern: CUDA error: %s\n  in %s (%s:%d)\n  %s\n", what, func, file, line, stmt);
}

/* type: the status type; ok: its success value; str: status -> const char * */
#define QN_CUDA_TRY_GEN(call, type, ok, str)                                                     \
    do {                                                                                          \
        const type qn_e_ = (call);                                                                \
        if (qn_e_ != (ok)) {                                                                      \
            qn_cuda_report(#call, __func__, __FILE__, __LINE__, str(qn_e_));                      \
            return QN_ERR_CUDA;                                                                   \
        }                                                                                         \
    } while (0)

#define QN_CUDA_TRY_GEN_GOTO(call, type, ok, str, st, label)                                     \
    do {                                                                                          \
        const type qn_e_ = (call);                                                                \
        if (qn_e_ != (ok)) {                                                                      \
            qn_cuda_report(#call, __func__, __FILE__, __LINE__, str(qn_e_));                      \
            (st) = QN_ERR_CUDA;                                                                   \
            goto label;                                                                           \
        }                                                                                         \
    } while (0)

#define QN_CUDA_TRY(call) QN_CUDA_TRY_GEN(call, cudaError_t, cudaSuccess, cudaGetErrorString)
#define QN_CUBLAS_TRY(call) \
    QN_CUDA_TRY_GEN(call, cublasStatus_t, CUBLAS_STATUS_SUCCESS, cublasGetStatusString)
#define QN_CUDA_TRY_GOTO(call, st, label) \
    QN_CUDA_TRY_GEN_GOTO(call, cudaError_t, cudaSuccess, cudaGetErrorString, st, label)
#define QN_CUBLAS_TRY_GOTO(call, st, label) \
    QN_CUDA_TRY_GEN_GOTO(call, cublasStatus_t, CUBLAS_STATUS_SUCCESS, cublasGetStatusString, st, label)

/* After a <<<>>> launch: reports launch-configuration errors (bad smem size, grid, cluster). */
#define QN_CUDA_TRY_LAUNCH() QN_CUDA_TRY(cudaGetLastError())

#endif /* QN_CUDA_CHECK_H */
