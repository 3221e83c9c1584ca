/* gguf_dequant.h — the exact fp32 dequantization formulas of docs/formats.md §2.2, one static inline
 * row function per ggml block type. Included by gguf_ref.c (the scalar references) and by
 * dequant_cpu.c (the same code compiled per ISA, left to the auto-vectoriser), so the formulas exist
 * once. Every product below is exact in fp32 and the min terms are one final add/subtract, so FMA
 * contraction or vectorisation cannot change a result bit (formats.md §2.2 "Bit-exactness"). */
#ifndef QN_GGUF_DEQUANT_H
#define QN_GGUF_DEQUANT_H

#include <stdint.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/gguf/gguf_blocks.h"

static inline uint32_t qn_gguf_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Q3_K: 16 six-bit scales packed in 12 bytes (formats.md §2.2, Q3_K) -> 4 words, byte b of word i
 * = scale of sub-block 4i+b in 0..63. Low nibbles come from bytes 0..7 (lo for is < 8, hi for
 * is >= 8), the two high bits from bytes 8..11, shifted by 2 per group of four. */
static inline void qn_q3_k_scale_words(const uint8_t *s, uint32_t out[4]) {
    const uint32_t w0 = qn_gguf_le32(s), w1 = qn_gguf_le32(s + 4), w2 = qn_gguf_le32(s + 8);
    const uint32_t m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    out[0] = (w0 & m4) | (w2 & m2) << 4;
    out[1] = (w1 & m4) | ((w2 >> 2) & m2) << 4;
    out[2] = ((w0 >> 4) & m4) | ((w2 >> 4) & m2) << 4;
    out[3] = ((w1 >> 4) & m4) | ((w2 >> 6) & m2) << 4;
}

static inline void qn_q3_k_scales(const uint8_t *s, uint8_t out[16]) {
    uint32_t a[4];
    qn_q3_k_scale_words(s, a);
    for (int i = 0; i < 4; i++)
        for (int b = 0; b < 4; b++) out[4 * i + b] = (uint8_t)(a[i] >> (8 * b));
}

/* Q4_K/Q5_K: 8 (scale, min) pairs of 6 bits packed in 12 bytes -> words {sc0..3, sc4..7, mn0..3,
 * mn4..7}, one 0..63 value per byte: b < 4 from the low 6 bits of bytes b (scale) and b+4 (min);
 * b >= 4 from the nibbles of byte b+4 plus the top 2 bits of bytes b-4 (scale) and b (min). */
static inline void qn_q4_k_scale_words(const uint8_t *s, uint32_t out[4]) {
    const uint32_t w0 = qn_gguf_le32(s), w1 = qn_gguf_le32(s + 4), w2 = qn_gguf_le32(s + 8);
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    out[0] = w0 & m6;
    out[1] = (w2 & m4) | ((w0 >> 6) & m2) << 4;
    out[2] = w1 & m6;
    out[3] = ((w2 >> 4) & m4) | ((w1 >> 6) & m2) << 4;
}

static inline void qn_q4_k_scales(const uint8_t *s, uint8_t sc[8], uint8_t mn[8]) {
    uint32_t a[4];
    qn_q4_k_scale_words(s, a);
    for (int b = 0; b < 4; b++) {
        sc[b] = (uint8_t)(a[0] >> (8 * b));
        sc[b + 4] = (uint8_t)(a[1] >> (8 * b));
        mn[b] = (uint8_t)(a[2] >> (8 * b));
        mn[b + 4] = (uint8_t)(a[3] >> (8 * b));
    }
}

/* --- legacy 32-element blocks --- */

static inline void qn_dequant_q4_0_impl(const void *src, float *dst, int64_t n) {
    const qn_block_q4_0 *x = src;
    for (int64_t ib = 0; ib < n / QN_QK4_0; ib++, dst += QN_QK4_0) {
        const float d = qn_f16_to_f32(x[ib].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)((x[ib].qs[j] & 15) - 8);
            dst[j + 16] = d * (float)((x[ib].qs[j] >> 4) - 8);
        }
    }
}

static inline void qn_dequant_q4_1_impl(const void *src, float *dst, int64_t n) {
    const qn_block_q4_1 *x = src;
    for (int64_t ib = 0; ib < n / QN_QK4_1; ib++, dst += QN_QK4_1) {
        const float d = qn_f16_to_f32(x[ib].d), m = qn_f16_to_f32(x[ib].m);
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)(x[ib].qs[j] & 15) + m;
            dst[j + 16] = d * (float)(x[ib].qs[j] >> 4) + m;
        }
    }
}

static inline void qn_dequant_q5_0_impl(const void *src, float *dst, int64_t n) {
    const qn_block_q5_0 *x = src;
    for (int64_t ib = 0; ib < n / QN_QK5_0; ib++, dst += QN_QK5_0) {
        const float d = qn_f16_to_f32(x[ib].d);
        const uint32_t qh = qn_gguf_le32(x[ib].qh);
        for (int j = 0; j < 16; j++) {
            const int q0 = (x[ib].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            const int q1 = (x[ib].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = d * (float)(q0 - 16);
            dst[j + 16] = d * (float)(q1 - 16);
        }
    }
}

static inline void qn_dequant_q5_1_impl(const void *src, float *dst, int64_t n) {
    const qn_block_q5_1 *x = src;
    for (int64_t ib = 0; ib < n / QN_QK5_1; ib++, dst += QN_QK5_1) {
        const float d = qn_f16_to_f32(x[ib].d), m = qn_f16_to_f32(x[ib].m);
        const uint32_t qh = qn_gguf_le32(x[ib].qh);
        for (int j = 0; j < 16; j++) {
            const int q0 = (x[ib].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            const int q1 = (x[ib].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = d * (float)q0 + m;
            dst[j + 16] = d * (float)q1 + m;
        }
    }
}

static inline void qn_dequant_q8_0_impl(const void *src, float *dst, int64_t n) {
    const qn_block_q8_0 *x = src;
    for (int64_t ib = 0; ib < n / QN_QK8_0; ib++, dst += QN_QK8_0) {
        const float d = qn_f16_to_f32(x[ib].d);
        for (int j = 0; j < QN_QK8_0; j++) dst[j] = d * (float)x[ib].qs[j];
    }
}

static inline void qn_dequant_q8_1_impl(const void *src, float *dst, int64_t n) {
    const qn_block_q8_1 *x = src;
    for (int64_t ib = 0; ib < n / QN_QK8_1; ib++, dst += QN_QK8_1) {
        const float d = qn_f16_to_f32(x[ib].d);
        for (int j = 0; j < QN_QK8_1; j++) dst[j] = d * (float)x[ib].qs[j];
    }
}

/* --- K-quants: 256-element super-blocks --- */

static inline void qn_dequant_q2_k_impl(const void *src, float *dst, int64_t n) {
    const qn_block_q2_k *x = src;
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const float d = qn_f16_to_f32(x[ib].d), dmin = qn_f16_to_f32(x[ib].dmin);
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++) {
                    const uint8_t sb = x[ib].scales[8 * h + 2 * j + (l >= 16)];
                    const int q = (x[ib].qs[32 * h + l] >> (2 * j)) & 3;
                    *dst++ = (d * (float)(sb & 15)) * (float)q - dmin * (float)(sb >> 4);
                }
    }
}

static inline void qn_dequant_q3_k_impl(const void *src, float *dst, int64_t n) {
    const qn_block_q3_k *x = src;
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const float d = qn_f16_to_f32(x[ib].d);
        uint8_t sc[16];
        qn_q3_k_scales(x[ib].scales, sc);
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++) {
                    const int lo = (x[ib].qs[32 * h + l] >> (2 * j)) & 3;
                    const int hb = (x[ib].hmask[l] >> (4 * h + j)) & 1;
                    const int q = lo - (hb ? 0 : 4);
                    const int s = sc[8 * h + 2 * j + (l >= 16)] - 32;
                    *dst++ = (d * (float)s) * (float)q;
                }
    }
}

static inline void qn_dequant_q4_k_impl(const void *src, float *dst, int64_t n) {
    const qn_block_q4_k *x = src;
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const float d = qn_f16_to_f32(x[ib].d), dmin = qn_f16_to_f32(x[ib].dmin);
        uint8_t sc[8], mn[8];
        qn_q4_k_scales(x[ib].scales, sc, mn);
        for (int c = 0; c < 4; c++)
            for (int p = 0; p < 2; p++) {
                const float ds = d * (float)sc[2 * c + p], dm = dmin * (float)mn[2 * c + p];
                for (int l = 0; l < 32; l++) {
                    const uint8_t b = x[ib].qs[32 * c + l];
                    const int q = p ? b >> 4 : b & 15;
                    *dst++ = ds * (float)q - dm;
                }
            }
    }
}

static inline void qn_dequant_q5_k_impl(const void *src, float *dst, int64_t n) {
    const qn_block_q5_k *x = src;
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const float d = qn_f16_to_f32(x[ib].d), dmin = qn_f16_to_f32(x[ib].dmin);
        uint8_t sc[8], mn[8];
        qn_q4_k_scales(x[ib].scales, sc, mn);
        for (int c = 0; c < 4; c++)
            for (int p = 0; p < 2; p++) {
                const float ds = d * (float)sc[2 * c + p], dm = dmin * (float)mn[2 * c + p];
                for (int l = 0; l < 32; l++) {
                    const uint8_t b = x[ib].qs[32 * c + l];
                    const int q = (p ? b >> 4 : b & 15) | ((x[ib].qh[l] >> (2 * c + p)) & 1) << 4;
                    *dst++ = ds * (float)q - dm;
                }
            }
    }
}

static inline void qn_dequant_q6_k_impl(const void *src, float *dst, int64_t n) {
    const qn_block_q6_k *x = src;
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const float d = qn_f16_to_f32(x[ib].d);
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 32; l++) {
                    const uint8_t b = x[ib].ql[64 * h + 32 * (k & 1) + l];
                    const int lo = k < 2 ? b & 15 : b >> 4;
                    const int hi = (x[ib].qh[32 * h + l] >> (2 * k)) & 3;
                    const int e = 128 * h + 32 * k + l;
                    *dst++ = (d * (float)x[ib].scales[e / 16]) * (float)((lo | hi << 4) - 32);
                }
    }
}

static inline void qn_dequant_q8_k_impl(const void *src, float *dst, int64_t n) {
    const qn_block_q8_k *x = src;
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++, dst += QN_QK_K) {
        const float d = x[ib].d;
        for (int j = 0; j < QN_QK_K; j++) dst[j] = d * (float)x[ib].qs[j];
    }
}

/* --- plain types --- */

static inline void qn_dequant_f32_impl(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static inline void qn_dequant_f16_impl(const void *src, float *dst, int64_t n) {
    const uint16_t *x = src;
    for (int64_t i = 0; i < n; i++) dst[i] = qn_f16_to_f32(x[i]);
}

static inline void qn_dequant_bf16_impl(const void *src, float *dst, int64_t n) {
    const uint16_t *x = src;
    for (int64_t i = 0; i < n; i++) dst[i] = qn_bf16_to_f32(x[i]);
}

#endif
