/* calib_backend_cuda.h — the CUDA half of model/calib_backend.h (calib_backend_cuda.cu), reached only from
 * calib_backend.c and only in QN_HAVE_CUDA builds. Same contracts as the qn_calib_backend_* functions, with
 * host pointers in and out; device copies of the slots live in the qn_calib_cuda object. */
#ifndef QN_CALIB_BACKEND_CUDA_H
#define QN_CALIB_BACKEND_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "model/calib_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qn_calib_cuda qn_calib_cuda;

/* --- lifecycle --- */
/* Device count of this machine (0 when the driver is missing or reports none). */
int qn_calib_cuda_device_count(void);
/* Starts on the current device; name [cap] gets "cuda:N (device name)". */
qn_status qn_calib_cuda_create(qn_calib_cuda **out, char *name, size_t cap, qn_error *err);
void qn_calib_cuda_destroy(qn_calib_cuda *g);

/* --- operands and operations (model/calib_backend.h) --- */
qn_status qn_calib_cuda_load(qn_calib_cuda *g, qn_calib_slot s, const float *src, int64_t rows, int64_t cols,
                             qn_error *err);
qn_status qn_calib_cuda_read_cols(qn_calib_cuda *g, qn_calib_slot s, int64_t c0, int64_t c1, float *dst,
                                  qn_error *err);
qn_status qn_calib_cuda_matmul(qn_calib_cuda *g, qn_calib_slot x, const float *w, int64_t n, float *y, qn_error *err);
qn_status qn_calib_cuda_gram(qn_calib_cuda *g, qn_calib_slot x, float scale, float *h, qn_error *err);
qn_status qn_calib_cuda_quad(qn_calib_cuda *g, qn_calib_slot h, const float *d, int64_t n, double *e, qn_error *err);
qn_status qn_calib_cuda_gptq_update(qn_calib_cuda *g, int64_t i1, int64_t i2, const float *e, qn_error *err);

#ifdef __cplusplus
}
#endif

#endif
