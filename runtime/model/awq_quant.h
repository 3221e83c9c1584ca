/* awq_quant.h — the AWQ quantizer of one scaling group of linears (docs/formats.md §6.2, llm-awq / AutoAWQ) and the
 * AutoAWQ GEMM packing of its result (§4.1). Pure math on caller buffers, except that the error of a candidate is
 * measured on the calibration backend (model/calib_backend.h: CPU or CUDA), which is borrowed; the activations
 * enter only as their statistics (mean |x| per input channel and the Gram matrix H = (2/n)·Σ x xᵀ of model/hf_calib.h).
 *
 * Conventions: W is [n][k] row-major (nn.Linear, n = out_features); groups of gs consecutive input columns (no
 * act-order). Quantization is AutoAWQ's pseudo_quantize_tensor with zero_point: per (row, group)
 *     scale = max(max − min, 1e−5) / 15,  zero = clamp(−round(min / scale), 0, 15),
 *     q = clamp(round(w / scale) + zero, 0, 15),  w ≈ scale·(q − zero)
 * with the scale rounded to fp16 before the codes are chosen (the checkpoint stores fp16 scales, so the codes are
 * the nearest for the stored scale; AutoAWQ rounds the same scale only when packing).
 * Error of a candidate Ŵ: Σ over the group's linears of tr((W − Ŵ)·H·(W − Ŵ)ᵀ) = (2/n)·‖X Wᵀ − X Ŵᵀ‖², the output
 * MSE of the linears themselves (AutoAWQ runs the whole attention / MLP block instead; a documented deviation
 * that keeps the search a few GEMMs). */
#ifndef QN_AWQ_QUANT_H
#define QN_AWQ_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "model/calib_backend.h"
#include "quern.h"

typedef struct qn_threadpool qn_threadpool;

typedef struct qn_awq_params {
    int32_t group_size;  /* input columns per group; k % group_size == 0 (128 usual, 64, 32) */
    int32_t n_grid;      /* scale search: alpha = i / n_grid, i = 0 .. n_grid − 1 (20) */
    bool clip;           /* clipping search on every linear but q/k (AutoAWQ apply_clip) */
    int32_t clip_grid;   /* clip candidates max·(1 − i/clip_grid), i < max_shrink·clip_grid (20, 0.5) */
    float max_shrink;
    bool scalar;         /* tests: the clip search's scalar loop only; the AVX2 one (eight rows in lockstep, taken
                            where the CPU has AVX2 and F16C) gives the same bits */
} qn_awq_params;

qn_awq_params qn_awq_params_default(void); /* g128, grid 20, clip on (grid 20, max_shrink 0.5) */

/* The 4-bit asymmetric quantization of one [n][k] weight. Arrays owned by the struct (qn_awq_result_free). */
typedef struct qn_awq_result {
    int64_t k, n, n_groups;
    uint8_t *q;          /* [n][k] codes 0..15 */
    uint16_t *scales;    /* [n_groups][n] fp16 */
    uint8_t *zeros;      /* [n_groups][n] 0..15 */
} qn_awq_result;

void qn_awq_result_free(qn_awq_result *r); /* NULL-safe */

/* --- quantize / pack --- */
/* QN_ERR_INVALID_ARG when k % group_size or n % 8 (the GEMM packing) is not 0. */
qn_status qn_awq_quantize(const float *w, int64_t n, int64_t k, int32_t group_size, qn_awq_result *out,
                          qn_error *err);
/* deq[n][k] = fp16(scale · (q − zero)): what the loader decodes (kernels/quant/awq/awq_format.h). */
void qn_awq_result_dequant(const qn_awq_result *r, float *deq);
/* In place: w <- dequant(quantize(w)) (the same numbers as qn_awq_quantize + qn_awq_result_dequant). */
void qn_awq_fake_quant(float *w, int64_t n, int64_t k, int32_t group_size);
/* AutoAWQ GEMM layout (formats.md §4.1): qweight [k][n/8] and qzeros [n_groups][n/8], 8 output columns per int32
 * word, nibble i holding column 8c + ORDER[i], ORDER = [0, 2, 4, 6, 1, 3, 5, 7]. */
void qn_awq_pack_gemm(const qn_awq_result *r, int32_t *qweight, int32_t *qzeros);

/* --- activation-aware search --- */
/* One scaling group: n_lin linears w[i] ([n[i]][k]) sharing the input whose statistics are xmean [k] (mean |x_c|)
 * and h [k][k]. Tries s = xmean^alpha normalised by sqrt(max·min) (clamped >= 1e−4) for alpha = i / n_grid and
 * keeps the alpha whose fake-quantized Q(W·diag(s))·diag(s)⁻¹ has the least error; alpha = 0 is s = 1 (plain
 * round-to-nearest), so the result is never worse than RTN on the calibration statistics. s_out [k]; err_best and
 * err_rtn (may be NULL) the errors of the pick and of alpha = 0; alpha_out (may be NULL). be: the backend whose
 * H slot receives h (NULL = a one-thread CPU backend for the call); candidates are fake-quantized on the CPU. */
qn_status qn_awq_search_scale(qn_calib_backend *be, const float *const *w, const int64_t *n, int n_lin, int64_t k,
                              const float *xmean, const float *h, const qn_awq_params *p, float *s_out,
                              double *err_best, double *err_rtn, float *alpha_out, qn_error *err);
/* Clipping search on one [n][k] weight (in place): per (row, group) the clamp max|w|·(1 − i/clip_grid) whose
 * fake-quantized group has the least error d·H_g·dᵀ (H_g the group's diagonal block of h); then w is clamped.
 * i = 0 (no clamp) is a candidate. */
qn_status qn_awq_search_clip(float *w, int64_t n, int64_t k, const float *h, const qn_awq_params *p,
                             qn_threadpool *tp, qn_error *err);

#endif
