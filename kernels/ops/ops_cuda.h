/* ops_cuda.h — the element-wise and row ops of the forward pass on the GPU (CPU twins in ops.h).
 * Owns no memory; every pointer is device memory, all work on `stream`; status out (launch errors).
 * Activations: the residual stream and matmul outputs are f32; what feeds a matmul is fp16 (the
 * contract of kernels/quant/quant.h). Sums of squares and reductions in f32 with a fixed order
 * (deterministic run to run).
 * q8 (the ops that feed a matmul): NULL, or where to write the int8 activations of out as well, the int8
 * matmul path's (qn_quant_q8_x: qs [n_rows][n], rec [n_rows][n/32], row t of each for out[t]; n a multiple
 * of 32, else QN_ERR_SHAPE; both 8-byte aligned). They are the bits the path's own quantizer makes of out
 * (qn_mmvq_quantize_x_ref of the fp16 output), so with q8 = qn_quant_q8_x_in_workspace() of the next
 * matmul's workspace that matmul may pass x_ready and skip its quantizer launch.
 * PDL: on sm_90+ the norms, add and silu_mul are programmatic dependent launches (device_util.cuh): they
 * start while the kernel before finishes and wait for it before touching x/y/g/u, and they let the kernel
 * after them start early. */
#ifndef QN_OPS_CUDA_H
#define QN_OPS_CUDA_H

#include <stdint.h>

#include "kernels/quant/qformat.h"
#include "kernels/quant/quant.h" /* qn_quant_q8_x */
#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[t][:] = row tokens[t] of table, dequantized to f32. table: [n_rows][row_bytes(fmt, n_embd)],
 * fmt F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K (exactly gguf-py's dequant, in f32).
 * QN_ERR_UNSUPPORTED for other formats. Token ids are not checked here (the runtime checks them). */
qn_status qn_embed_cuda(qn_qformat fmt, const void *table, int64_t n_embd,
                        const int32_t *tokens, /* [n] */ int32_t n, float *out /* [n][n_embd] */, void *stream);
/* Vocab-parallel embedding (tensor parallel): table holds the rows of global ids [row_begin, row_begin +
 * n_rows); out[t] = that row for tokens[t] inside the range, zeros otherwise (the ranks' all-reduce then
 * gives every row exactly). qn_embed_cuda is row_begin 0, n_rows unbounded. */
qn_status qn_embed_rows_cuda(qn_qformat fmt, const void *table, int64_t n_embd, int64_t row_begin, int64_t n_rows,
                             const int32_t *tokens, /* [n] */ int32_t n, float *out /* [n][n_embd] */, void *stream);

/* out[t] = fp16(x[src(t)] / sqrt(mean(x[src(t)]^2) + eps) * w); src(t) = rows ? rows[t] : t. */
qn_status qn_rmsnorm_cuda(const float *x, /* [*][n] */ const int32_t *rows, /* [n_rows] or NULL */
                          int32_t n_rows, int64_t n, const float *w, /* [n] */ float eps,
                          uint16_t *out /* [n_rows][n] fp16 */, const qn_quant_q8_x *q8 /* or NULL */, void *stream);

/* Residual add then norm: x[t] += y[t]; out[t] = fp16(rmsnorm(x[t]) * w). w == NULL: add only (out and q8
 * unused; q8 must be NULL). */
qn_status qn_add_rmsnorm_cuda(float *x, /* [n_rows][n] */ const float *y, /* [n_rows][n] */ int32_t n_rows,
                              int64_t n, const float *w, float eps, uint16_t *out /* [n_rows][n] fp16 */,
                              const qn_quant_q8_x *q8 /* or NULL */, void *stream);

/* out[t][i] = fp16(silu(g[t][i]) * u[t][i]) */
qn_status qn_silu_mul_cuda(const float *g, const float *u, /* [n_rows][n] */ int32_t n_rows, int64_t n,
                           uint16_t *out /* [n_rows][n] fp16 */, const qn_quant_q8_x *q8 /* or NULL */, void *stream);

/* out[i] = fp16(x[i]) */
qn_status qn_f32_to_f16_cuda(const float *x, int64_t n, uint16_t *out, void *stream);

#ifdef __cplusplus
}
#endif
#endif /* QN_OPS_CUDA_H */
