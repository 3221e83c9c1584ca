/* gptq_quant.h — the GPTQ quantizer of one linear (docs/formats.md §6.1, AutoGPTQ's fasterquant) and the
 * AutoGPTQ/GPTQModel packing of its result (§3.2, §3.3). Pure math on caller buffers: the Hessian comes from
 * the calibration forward (model/hf_calib.h), the packed tensors go to the checkpoint writer
 * (model/hf_quantize.h). Owns nothing beyond one call's scratch; threads come from the caller's pool.
 *
 * Conventions: W is [n][k] row-major (PyTorch nn.Linear, n = out_features). Group g of the (possibly
 * act-order-permuted) column order covers columns [g·gs, (g+1)·gs) of that order, or with static_groups columns
 * [g·gs, (g+1)·gs) of the original order whatever the processing order; g_idx maps an ORIGINAL column to its
 * group. Scales are rounded to fp16 when fitted, so the error feedback sees the stored scale.
 * A v1 ("gptq") checkpoint stores zero − 1 and readers add 1 without wrapping (hf_quant.c, qlinear_cuda), so
 * a v1 asymmetric zero is kept >= 1: a group whose min-max zero would be 0 takes zero 1 and the scale
 * max / (maxq − 1) instead. v2 ("gptq_v2") stores the zero itself and has no such limit. */
#ifndef QN_GPTQ_QUANT_H
#define QN_GPTQ_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "model/calib_backend.h"
#include "quern.h"

typedef struct qn_threadpool qn_threadpool;

typedef struct qn_gptq_params {
    int32_t bits;        /* 2, 3, 4 or 8 */
    int32_t group_size;  /* > 0, or -1 = one group over all of K */
    bool sym;            /* zero = 2^(bits-1), scale = 2·max|w| / maxq */
    bool act_order;      /* desc_act: columns by descending diag(H) */
    bool static_groups;  /* groups of the original order, fitted on the original W before GPTQ (RTN's grid) */
    bool v2;             /* zeros stored as gptq_v2 (no zero >= 1 limit) */
    bool mse;            /* group range shrunk to the lowest Σ|Q(w) − w|^2.4 (AutoGPTQ mse=True), else min-max */
    float damp;          /* percdamp: λ = damp · mean(diag H) (AutoGPTQ 0.01) */
    int32_t block_size;  /* lazy-batch block B (128) */
    bool scalar;         /* tests: the scalar loops only; the AVX2 ones (taken where the CPU has AVX2) give the
                            same bits */
} qn_gptq_params;

qn_gptq_params qn_gptq_params_default(void); /* 4 bits, g128, asym, no act-order, v1, damp 0.01, B 128 */

/* The result of quantizing one [n][k] weight. Arrays are owned by the struct (qn_gptq_result_free). */
typedef struct qn_gptq_result {
    int64_t k, n, n_groups;
    uint8_t *q;          /* [n][k] codes in the ORIGINAL column order */
    uint16_t *scales;    /* [n_groups][n] fp16 */
    int32_t *zeros;      /* [n_groups][n] integer zero points (the true zero, 0..2^bits-1) */
    int32_t *g_idx;      /* [k] group of each original column */
    double loss;         /* Σ (w − q)² / U_ii² (AutoGPTQ's logged loss; 0 for RTN) */
} qn_gptq_result;

void qn_gptq_result_free(qn_gptq_result *r); /* frees the arrays; NULL-safe */

/* --- quantize --- */
/* w: [n][k] f32 weight (not modified). h: [k][k] Hessian (2/n)·Σ x xᵀ, f32, or NULL for round-to-nearest
 * (no error feedback, identity order). k must be a multiple of 32 for bits 3 (packing) and of group_size when
 * group_size > 0 is used with act-order off is not required (last group may be partial). tp: NULL = one thread.
 * QN_ERR_INVALID_ARG for bad params, QN_ERR_FORMAT when H is not positive definite after dampening. */
qn_status qn_gptq_quantize(const float *w, int64_t n, int64_t k, const float *h, const qn_gptq_params *p,
                           qn_threadpool *tp, qn_gptq_result *out, qn_error *err);
/* The same on a calibration backend (model/calib_backend.h): W and U go to it once, the blocks' lazy-batch updates
 * W[:, i2:] -= Err·U[i1:i2, i2:] run there and each block's columns come back for the per-column quantization on
 * the CPU pool; H⁻¹'s Cholesky stays on the CPU. be NULL, or h NULL (RTN), = qn_gptq_quantize's fused CPU loop.
 * On the CPU backend the codes, scales and zeros are bit-identical to qn_gptq_quantize's (the loss is summed in
 * another order); on CUDA, cuBLAS's summation order moves the updated weights by float rounding. */
qn_status qn_gptq_quantize_on(qn_calib_backend *be, const float *w, int64_t n, int64_t k, const float *h,
                              const qn_gptq_params *p, qn_threadpool *tp, qn_gptq_result *out, qn_error *err);
/* deq[n][k] = fp16(scale · (q − zero)) as the checkpoint decodes it (the weight the next layer sees). */
void qn_gptq_result_dequant(const qn_gptq_result *r, float *deq);

/* U with H⁻¹ = UᵀU, U upper (row-major [k][k], double); h is overwritten by the Cholesky work.
 * QN_ERR_FORMAT when not positive definite. Exposed for the tests. */
qn_status qn_gptq_hinv_upper(double *h, int64_t k, double *u, qn_threadpool *tp);
/* The same with the AVX2 loops off (scalar true) or on where the CPU has them: the same bits either way (tests). */
qn_status qn_gptq_hinv_upper_isa(double *h, int64_t k, double *u, qn_threadpool *tp, bool scalar);

/* --- packing (formats.md §3.2: LSB-first bit strings of int32 words, 3-bit runs across words) --- */
/* qweight: [k·bits/32][n] int32; qzeros: [n_groups][n·bits/32] int32 (v1: zero − 1, v2: zero). k and n
 * multiples of 32 (of 32/bits for 2/4/8 bits). */
void qn_gptq_pack(const qn_gptq_result *r, int32_t bits, bool v2, int32_t *qweight, int32_t *qzeros);
/* Stores value v (< 2^bits) as element t of a packed run: word i of the run at base[i·stride]. */
void qn_gptq_pack_put(uint32_t *base, int64_t stride, int32_t bits, int64_t t, uint32_t v);

#endif
