/* gguf_ref.h — scalar reference dequantizers of every ggml type Quern decodes and reference
 * quantizers of the activation types (Q8_0, Q8_1, Q8_K) and of F16/BF16/F32.
 * Owns: the "_ref" functions the traits table (qformat.c) points at. Not: SIMD kernels (cpu/) or
 * the weight-type quantizers (gguf_quantize.h).
 * Row functions: src/dst lengths are n elements, n a multiple of the block size. */
#ifndef QN_GGUF_REF_H
#define QN_GGUF_REF_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- dequantizers: [n / block_elems] blocks -> [n] floats, exact fp32 formulas (formats.md §2.2) --- */
void qn_dequant_row_f32_ref(const void *src, float *dst, int64_t n);
void qn_dequant_row_f16_ref(const void *src, float *dst, int64_t n);
void qn_dequant_row_bf16_ref(const void *src, float *dst, int64_t n);
void qn_dequant_row_q4_0_ref(const void *src, float *dst, int64_t n);
void qn_dequant_row_q4_1_ref(const void *src, float *dst, int64_t n);
void qn_dequant_row_q5_0_ref(const void *src, float *dst, int64_t n);
void qn_dequant_row_q5_1_ref(const void *src, float *dst, int64_t n);
void qn_dequant_row_q8_0_ref(const void *src, float *dst, int64_t n);
void qn_dequant_row_q8_1_ref(const void *src, float *dst, int64_t n);
void qn_dequant_row_q2_k_ref(const void *src, float *dst, int64_t n);
void qn_dequant_row_q3_k_ref(const void *src, float *dst, int64_t n);
void qn_dequant_row_q4_k_ref(const void *src, float *dst, int64_t n);
void qn_dequant_row_q5_k_ref(const void *src, float *dst, int64_t n);
void qn_dequant_row_q6_k_ref(const void *src, float *dst, int64_t n);
void qn_dequant_row_q8_k_ref(const void *src, float *dst, int64_t n);

/* --- quantizers: [n] floats -> blocks (llama.cpp quantize_row_*_ref semantics) --- */
void qn_quantize_row_f32_ref(const float *src, void *dst, int64_t n);  /* copy */
void qn_quantize_row_f16_ref(const float *src, void *dst, int64_t n);  /* round to nearest even */
void qn_quantize_row_bf16_ref(const float *src, void *dst, int64_t n); /* RNE, NaN kept quiet */
/* d = amax/127, q = roundf(x * (1/d)) (half away from zero); d stored fp16. */
void qn_quantize_row_q8_0_ref(const float *src, void *dst, int64_t n);
/* as Q8_0, plus s = fp16(d * sum(q)). */
void qn_quantize_row_q8_1_ref(const float *src, void *dst, int64_t n);
/* max = the first element of largest magnitude (signed); iscale = -127/max;
 * q = min(127, round-half-even(iscale * x)); d = 1/iscale (f32); bsums = sums of 16 q. */
void qn_quantize_row_q8_k_ref(const float *src, void *dst, int64_t n);

/* roundf (half away from zero) for |x| <= 128, the range of q = x/d; NaN and out-of-range give 0
 * instead of an undefined conversion. */
static inline float qn_roundf_away(float x) {
    if (!(x >= -128.0f && x <= 128.0f)) return 0.0f;
    const float t = (float)(int32_t)x; /* truncation toward zero */
    const float f = x - t;
    return f >= 0.5f ? t + 1.0f : f <= -0.5f ? t - 1.0f : t;
}

#ifdef __cplusplus
}
#endif
#endif
