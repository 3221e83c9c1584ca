/* gguf_quantize.h — reference quantizers of the ggml weight types, producing the bytes llama.cpp's
 * `llama-quantize` writes when no importance matrix is given (ggml's quantize_row_*_ref family).
 * Owns: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 (gguf_quantize.c) and Q2_K Q3_K Q4_K Q5_K Q6_K (gguf_quantize_k.c).
 * Not: the activation quantizers (gguf_ref.h), threads (callers split rows).
 * With an importance matrix (*_imatrix): ggml's quantize_row_*_impl, what llama-quantize runs for a
 * tensor that has imatrix data; qw = [n] per-column importance (imatrix mean of x²), one row per call
 * (Q4_0..Q5_1 take sigma² over the whole row). Q8_0 ignores the matrix in llama.cpp too.
 * Row functions: src = [n] floats, dst = [n / block_elems] blocks, n a multiple of the block size.
 * Bit-exactness needs the same fp32 operation order as ggml and no FMA contraction (C11 mode, which
 * this project builds with, has -ffp-contract=off; ggml-base is built without FMA as well). */
#ifndef QN_GGUF_QUANTIZE_H
#define QN_GGUF_QUANTIZE_H

#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- 32-element blocks --- */
void qn_quantize_row_q4_0_ref(const float *src, void *dst, int64_t n);
void qn_quantize_row_q4_1_ref(const float *src, void *dst, int64_t n);
void qn_quantize_row_q5_0_ref(const float *src, void *dst, int64_t n);
void qn_quantize_row_q5_1_ref(const float *src, void *dst, int64_t n);
/* Q8_0 as a weight: d = amax/127, q = roundf(x * (1/d)). Differs in rare ties from the activation
 * quantizer qn_quantize_row_q8_0_ref (id = 127/amax, round half even: what ggml's CPU backend runs). */
void qn_quantize_row_q8_0_weight_ref(const float *src, void *dst, int64_t n);

/* --- 256-element super-blocks (k-quants) --- */
void qn_quantize_row_q2_k_ref(const float *src, void *dst, int64_t n);
void qn_quantize_row_q3_k_ref(const float *src, void *dst, int64_t n);
void qn_quantize_row_q4_k_ref(const float *src, void *dst, int64_t n);
void qn_quantize_row_q5_k_ref(const float *src, void *dst, int64_t n);
void qn_quantize_row_q6_k_ref(const float *src, void *dst, int64_t n);

/* --- importance-weighted (one row: n = the row length) --- */
void qn_quantize_row_q4_0_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void qn_quantize_row_q4_1_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void qn_quantize_row_q5_0_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void qn_quantize_row_q5_1_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void qn_quantize_row_q2_k_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void qn_quantize_row_q3_k_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void qn_quantize_row_q4_k_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void qn_quantize_row_q5_k_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void qn_quantize_row_q6_k_imatrix(const float *src, void *dst, int64_t n, const float *qw);

/* --- rounding helpers shared by both files (and the tests) --- */

/* Round half to even through the 1.5*2^23 trick; exact for |x| < 2^22, and for larger or
 * non-finite x it returns the same (meaningless) integer as ggml's nearest_int does. */
static inline int qn_quant_nearest_int(float x) {
    const float v = x + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* C's float -> integer truncation as x86-64 executes it (cvttss2si): NaN and values outside the
 * int32 range give INT32_MIN. ggml casts straight to int8_t/uint8_t, which goes through this
 * 32-bit conversion and keeps the low byte; the explicit form keeps our code free of UB. */
static inline int32_t qn_quant_trunc_i32(float x) {
    if (!(x > -2147483904.0f && x < 2147483648.0f)) return INT32_MIN;
    return (int32_t)x;
}

#ifdef __cplusplus
}
#endif
#endif
