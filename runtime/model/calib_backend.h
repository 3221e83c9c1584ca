/* calib_backend.h — the dense f32 work of the post-training quantizers behind one interface with two
 * implementations: the calibration forward's matmuls, GPTQ's Hessian H = (2/n)·XᵀX and lazy-batch update
 * W[:, i2:] -= Err·U[i1:i2, i2:], and AWQ's error of a candidate Σ_r d_r·H·d_rᵀ.
 *   CPU  (calib_backend.c): a register-tiled f32 GEMM split over the thread pool; the numbers the CPU tests pin.
 *   CUDA (calib_backend_cuda.cu, QN_HAVE_CUDA builds): cuBLAS SGEMM / SSYRK in full f32 (no TF32), sums of
 *        products in double where the CPU sums in double.
 * Everything else stays on the CPU whatever the device (norms, RoPE, attention, SiLU, the Cholesky of H, the
 * per-column GPTQ quantization, AWQ's fake quantization and clip search): docs/formats.md §6.3.
 *
 * Operands used by several calls sit in slots: qn_calib_backend_load puts a host matrix in a slot once (CUDA: one
 * upload; CPU: X, H and U borrow the host pointer until the slot is loaded again, so the caller keeps those bytes
 * unchanged; W, which gptq_update changes, is copied). Matrices are row-major, as everywhere in Quern.
 * Owns: the slots' device copies, the device scratch, the cuBLAS handle (CUDA); the W copy and a scratch (CPU).
 * Borrows: the thread pool (CPU), for the object's lifetime. One thread uses a backend at a time. */
#ifndef QN_CALIB_BACKEND_H
#define QN_CALIB_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "quern.h"

typedef struct qn_threadpool qn_threadpool;
typedef struct qn_calib_backend qn_calib_backend;

typedef enum qn_calib_device {
    QN_CALIB_DEVICE_AUTO = 0, /* CUDA when built with it and a device is present, else CPU */
    QN_CALIB_DEVICE_CPU,
    QN_CALIB_DEVICE_CUDA,
} qn_calib_device;

typedef enum qn_calib_slot {
    QN_CALIB_SLOT_X = 0, /* a stage's input activations [n_tok][k] */
    QN_CALIB_SLOT_H,     /* a symmetric [k][k] Gram matrix (AWQ's error metric) */
    QN_CALIB_SLOT_W,     /* GPTQ's working weight [n][k], updated in place by gptq_update */
    QN_CALIB_SLOT_U,     /* GPTQ's upper Cholesky factor of H⁻¹ [k][k] */
    QN_CALIB_SLOT_COUNT
} qn_calib_slot;

/* --- lifecycle --- */
/* QN_ERR_NO_DEVICE for QN_CALIB_DEVICE_CUDA in a build without CUDA or on a machine without a device (the
 * message says which); QN_ERR_CUDA when cuBLAS cannot start. tp: NULL = one thread (CPU work). */
qn_status qn_calib_backend_create(qn_calib_device dev, qn_threadpool *tp, qn_calib_backend **out, qn_error *err);
void qn_calib_backend_destroy(qn_calib_backend *b); /* NULL is a no-op */

/* --- queries --- */
qn_calib_device qn_calib_backend_device(const qn_calib_backend *b); /* CPU or CUDA, never AUTO */
/* "cpu (4 threads)" or "cuda:0 (NVIDIA H100 80GB HBM3)"; valid for the backend's lifetime */
const char *qn_calib_backend_name(const qn_calib_backend *b);
/* "auto" / "cpu" / "cuda" <-> enum; false for anything else */
bool qn_calib_device_parse(const char *s, qn_calib_device *out);

/* --- operands --- */
/* Slot s <- src [rows][cols] (see the header note on borrowing). */
qn_status qn_calib_backend_load(qn_calib_backend *b, qn_calib_slot s, const float *src, int64_t rows, int64_t cols,
                                qn_error *err);
/* dst [rows][c1 − c0] <- columns [c0, c1) of slot s. */
qn_status qn_calib_backend_read_cols(qn_calib_backend *b, qn_calib_slot s, int64_t c0, int64_t c1, float *dst,
                                     qn_error *err);

/* --- operations --- */
/* y[t][r] = Σ_j X[t][j]·w[r][j]: X the matrix in slot x ([n_tok][k]), w [n][k] (host, used once: not kept),
 * y [n_tok][n] (host). */
qn_status qn_calib_backend_matmul(qn_calib_backend *b, qn_calib_slot x, const float *w, int64_t n, float *y,
                                  qn_error *err);
/* h[i][j] = scale·Σ_t X[t][i]·X[t][j], X the matrix in slot x ([n_tok][k]); h [k][k] (host), both triangles. */
qn_status qn_calib_backend_gram(qn_calib_backend *b, qn_calib_slot x, float scale, float *h, qn_error *err);
/* *e = Σ_r Σ_ij d[r][i]·H[i][j]·d[r][j], H the symmetric matrix in slot h ([k][k]), d [n][k] (host); the f32
 * products y = d·H summed as d·y in double. */
qn_status qn_calib_backend_quad(qn_calib_backend *b, qn_calib_slot h, const float *d, int64_t n, double *e,
                                qn_error *err);
/* GPTQ's lazy-batch update: W[:, i2:k] -= E·U[i1:i2, i2:k] on slots W ([n][k]) and U ([k][k]); e [n][i2 − i1]
 * (host) the block's scaled errors. Per element the products are subtracted one column of E at a time on the
 * CPU (the order of gptq_quant.c's fused loop, so both give the same bits); cuBLAS sums them in its own order. */
qn_status qn_calib_backend_gptq_update(qn_calib_backend *b, int64_t i1, int64_t i2, const float *e, qn_error *err);

/* --- the CPU GEMM, for callers that run it on their own thread (the calibration's per-head attention) --- */
/* y[t][r] = Σ_j x[t][j]·w[r][j] for x [n_tok][k], w [n][k], y [n_tok][n]: one thread, the CPU backend's numbers. */
void qn_calib_gemm_f32(const float *x, int64_t n_tok, int64_t k, const float *w, int64_t n, float *y);
/* The same GEMM on a named instruction set (tests): AVX2 and AVX-512VL give the same bits (8-lane accumulators,
 * only the tile's register blocking differs); the scalar loop sums in its own order. False when this CPU lacks it. */
typedef enum qn_calib_isa { QN_CALIB_ISA_SCALAR, QN_CALIB_ISA_AVX2, QN_CALIB_ISA_AVX512VL } qn_calib_isa;
bool qn_calib_isa_supported(qn_calib_isa isa);
bool qn_calib_gemm_f32_isa(qn_calib_isa isa, const float *x, int64_t n_tok, int64_t k, const float *w, int64_t n,
                           float *y);

#endif
