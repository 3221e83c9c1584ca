/* gguf_ref.c — scalar reference dequantizers (every type) and activation quantizers (Q8_0, Q8_1,
 * Q8_K, F16, BF16, F32). The dequant formulas live once in gguf_dequant.h; this file gives them
 * their "_ref" names. These are the definitions the SIMD kernels and the GPU kernels are tested
 * against, so they favour the obvious over the fast. */
#include "kernels/quant/gguf/gguf_ref.h"

#include <math.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/gguf_dequant.h"

/* ------------------------------------------------------------------ dequantizers */

#define QN_DEF_DEQUANT_REF(t) \
    void qn_dequant_row_##t##_ref(const void *src, float *dst, int64_t n) { qn_dequant_##t##_impl(src, dst, n); }

QN_DEF_DEQUANT_REF(f32)
QN_DEF_DEQUANT_REF(f16)
QN_DEF_DEQUANT_REF(bf16)
QN_DEF_DEQUANT_REF(q4_0)
QN_DEF_DEQUANT_REF(q4_1)
QN_DEF_DEQUANT_REF(q5_0)
QN_DEF_DEQUANT_REF(q5_1)
QN_DEF_DEQUANT_REF(q8_0)
QN_DEF_DEQUANT_REF(q8_1)
QN_DEF_DEQUANT_REF(q2_k)
QN_DEF_DEQUANT_REF(q3_k)
QN_DEF_DEQUANT_REF(q4_k)
QN_DEF_DEQUANT_REF(q5_k)
QN_DEF_DEQUANT_REF(q6_k)
QN_DEF_DEQUANT_REF(q8_k)

/* ------------------------------------------------------------------ quantizers */

void qn_quantize_row_f32_ref(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }

void qn_quantize_row_f16_ref(const float *src, void *dst, int64_t n) {
    uint16_t *y = dst;
    for (int64_t i = 0; i < n; i++) y[i] = qn_f32_to_f16(src[i]);
}

void qn_quantize_row_bf16_ref(const float *src, void *dst, int64_t n) {
    uint16_t *y = dst;
    for (int64_t i = 0; i < n; i++) y[i] = qn_f32_to_bf16(src[i]);
}

/* Round half to even for |x| < 2^22: adding 1.5*2^23 leaves the rounded integer in the mantissa. */
static inline int qn_round_even_i(float x) {
    const float v = x + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

void qn_quantize_row_q8_0_ref(const float *src, void *dst, int64_t n) {
    qn_block_q8_0 *y = dst;
    for (int64_t ib = 0; ib < n / QN_QK8_0; ib++, src += QN_QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QN_QK8_0; j++) amax = fmaxf(amax, fabsf(src[j]));
        /* llama.cpp's x86 SIMD quantizer (what its CPU backend runs): id = 127/amax, round half to even */
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[ib].d = qn_f32_to_f16(d);
        for (int j = 0; j < QN_QK8_0; j++) y[ib].qs[j] = (int8_t)qn_round_even_i(src[j] * id);
    }
}

void qn_quantize_row_q8_1_ref(const float *src, void *dst, int64_t n) {
    qn_block_q8_1 *y = dst;
    for (int64_t ib = 0; ib < n / QN_QK8_1; ib++, src += QN_QK8_1) {
        float amax = 0.0f;
        for (int j = 0; j < QN_QK8_1; j++) amax = fmaxf(amax, fabsf(src[j]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f; /* as Q8_0 above */
        int sum = 0;
        for (int j = 0; j < QN_QK8_1; j++) {
            y[ib].qs[j] = (int8_t)qn_round_even_i(src[j] * id);
            sum += y[ib].qs[j];
        }
        y[ib].d = qn_f32_to_f16(d);
        y[ib].s = qn_f32_to_f16((float)sum * d);
    }
}


void qn_quantize_row_q8_k_ref(const float *src, void *dst, int64_t n) {
    qn_block_q8_k *y = dst;
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++, src += QN_QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QN_QK_K; j++) {
            const float ax = fabsf(src[j]);
            if (ax > amax) {
                amax = ax;
                max = src[j];
            }
        }
        if (amax == 0.0f) {
            memset(&y[ib], 0, sizeof y[ib]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QN_QK_K; j++) {
            const int v = qn_round_even_i(iscale * src[j]);
            y[ib].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int g = 0; g < QN_QK_K / 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += y[ib].qs[16 * g + j];
            y[ib].bsums[g] = (int16_t)s;
        }
        y[ib].d = 1.0f / iscale;
    }
}
