/* kq_tc.c — the host twin of the K-quant tensor-core GEMM's weight values (kq_tc.h). */
#include "kernels/quant/gguf/kq_tc.h"

#include <math.h>

#include "kernels/common/half.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/gguf_dequant.h"
#include "kernels/quant/gguf/q3kp.h"
#include "kernels/quant/gguf/q6kp.h"
#include "kernels/quant/gguf/q8_0p.h"

/* v rounded to fp16 bits, to nearest even, once (v in fp16's range or rounding to infinity) */
static uint16_t f64_to_f16(double v) {
    const double a = fabs(v);
    int e;
    (void)frexp(a, &e); /* a = m 2^e, m in [0.5, 1) */
    const double quantum = ldexp(1.0, (e - 1 >= -14 ? e - 1 : -14) - 10);
    const double r = nearbyint(a / quantum) * quantum; /* exact in float and fp16 (or past fp16's range) */
    return qn_f32_to_f16((float)(signbit(v) ? -r : r)); /* -0 stays -0, as the GPU's f16 arithmetic gives it */
}

/* Q4_K (qh NULL) and Q5_K (qh: the block's qh[32], bit j of byte c q's bit 4 in sub-block j): d, dmin, the packed
 * scales and qs of one block */
static void q4k_block(uint16_t dh, uint16_t dminh, const uint8_t *scales, const uint8_t *qh, const uint8_t *qs,
                      uint16_t *out) {
    uint8_t sc[8], mn[8];
    qn_q4_k_scales(scales, sc, mn);
    const float d = qn_f16_to_f32(dh), dmin = qn_f16_to_f32(dminh);
    for (int j = 0; j < 8; j++) { /* sub-block j: columns 32 j .. 32 j + 31 */
        const double S = qn_f16_to_f32(qn_f32_to_f16(d * (float)sc[j]));      /* exact product, one rounding */
        const double B = qn_f16_to_f32(qn_f32_to_f16(-(dmin * (float)mn[j])));
        for (int c = 0; c < 32; c++) {
            const uint8_t byte = qs[32 * (j / 2) + c];
            const int q = (j & 1 ? byte >> 4 : byte & 15) | (qh ? (qh[c] >> j & 1) << 4 : 0);
            out[32 * j + c] = f64_to_f16(S * q + B); /* S q + B exact in double: the FMA's one rounding */
        }
    }
}

/* Q6_KP: the Q6_K block in the first 210 of 224 bytes (q6kp.h) */
static void q6kp_rows(const uint8_t *b, int64_t nb, uint16_t *out) {
    for (int64_t ib = 0; ib < nb; ib++, out += QN_QK_K, b += QN_Q6KP_BLOCK_BYTES) {
        const qn_block_q6_k *x = (const qn_block_q6_k *)b;
        const float d = qn_f16_to_f32(x->d);
        for (int e = 0; e < QN_QK_K; e++) { /* column e = 128 h + 32 k + l */
            const int h = e / 128, k = e % 128 / 32, l = e % 32;
            const uint8_t lb = x->ql[64 * h + 32 * (k & 1) + l];
            const int q = ((k < 2 ? lb & 15 : lb >> 4) | ((x->qh[32 * h + l] >> (2 * k)) & 3) << 4) - 32;
            const double S = qn_f16_to_f32(qn_f32_to_f16(d * (float)x->scales[e / 16]));
            out[e] = f64_to_f16(S * q);
        }
    }
}

/* Q2_K (gguf_blocks.h): column e = 128 h + 32 j + l of a block is bits 2j.. of qs[32 h + l], sub-block e / 16 */
static void q2k_rows(const qn_block_q2_k *x, int64_t nb, uint16_t *out) {
    for (int64_t ib = 0; ib < nb; ib++, out += QN_QK_K, x++) {
        const float d = qn_f16_to_f32(x->d), dmin = qn_f16_to_f32(x->dmin);
        for (int e = 0; e < QN_QK_K; e++) {
            const int h = e / 128, j = e % 128 / 32, l = e % 32, sb = x->scales[e / 16];
            const double S = qn_f16_to_f32(qn_f32_to_f16(d * (float)(sb & 15))); /* exact products, one rounding */
            const double B = qn_f16_to_f32(qn_f32_to_f16(-(dmin * (float)(sb >> 4))));
            out[e] = f64_to_f16(S * ((x->qs[32 * h + l] >> (2 * j)) & 3) + B); /* exact in double: the FMA's rounding */
        }
    }
}

/* Q3_KP: the Q3_K block in the first 110 of 112 bytes (q3kp.h) */
static void q3kp_rows(const uint8_t *b, int64_t nb, uint16_t *out) {
    for (int64_t ib = 0; ib < nb; ib++, out += QN_QK_K, b += QN_Q3KP_BLOCK_BYTES) {
        const qn_block_q3_k *x = (const qn_block_q3_k *)b;
        const float d = qn_f16_to_f32(x->d);
        uint8_t sc[16];
        qn_q3_k_scales(x->scales, sc);
        for (int e = 0; e < QN_QK_K; e++) { /* column e = 128 h + 32 j + l */
            const int h = e / 128, j = e % 128 / 32, l = e % 32;
            const int q = ((x->qs[32 * h + l] >> (2 * j)) & 3) | ((x->hmask[l] >> (4 * h + j)) & 1) << 2;
            const double S = qn_f16_to_f32(qn_f32_to_f16(d * (float)(sc[e / 16] - 32))); /* exact, one rounding */
            out[e] = f64_to_f16(S * (q - 4));
        }
    }
}

/* Q8_0P: d[8] then qs[8][32] (q8_0p.h) */
static void q8_0p_rows(const uint8_t *b, int64_t nb, uint16_t *out) {
    for (int64_t ib = 0; ib < nb; ib++, out += QN_Q8_0P_BLOCK_ELEMS, b += QN_Q8_0P_BLOCK_BYTES)
        for (int e = 0; e < QN_Q8_0P_BLOCK_ELEMS; e++) {
            const uint16_t dh = (uint16_t)(b[2 * (e / 32)] | b[2 * (e / 32) + 1] << 8);
            out[e] = f64_to_f16((double)qn_f16_to_f32(dh) * (int8_t)b[16 + e]); /* exact product, one rounding */
        }
}

static void q45k_rows(qn_qformat fmt, const void *w, int64_t nb, uint16_t *out) {
    for (int64_t ib = 0; ib < nb; ib++, out += QN_QK_K)
        if (fmt == QN_QFORMAT_Q4_K) {
            const qn_block_q4_k *b = (const qn_block_q4_k *)w + ib;
            q4k_block(b->d, b->dmin, b->scales, NULL, b->qs, out);
        } else {
            const qn_block_q5_k *b = (const qn_block_q5_k *)w + ib;
            q4k_block(b->d, b->dmin, b->scales, b->qh, b->qs, out);
        }
}

qn_status qn_kq_tc_dequant_host(qn_qformat fmt, const void *w, int64_t n, int64_t k, uint16_t *out) {
    if (!qn_kq_tc_has_format(fmt)) return QN_ERR_UNSUPPORTED;
    if (n < 0 || k <= 0 || k % QN_QK_K) return QN_ERR_SHAPE;
    if (n > 0 && (!w || !out)) return QN_ERR_INVALID_ARG;
    if (fmt == QN_QFORMAT_Q4_K || fmt == QN_QFORMAT_Q5_K) q45k_rows(fmt, w, n * (k / QN_QK_K), out);
    else if (fmt == QN_QFORMAT_Q6_KP) q6kp_rows((const uint8_t *)w, n * (k / QN_QK_K), out);
    else if (fmt == QN_QFORMAT_Q3_KP) q3kp_rows((const uint8_t *)w, n * (k / QN_QK_K), out);
    else if (fmt == QN_QFORMAT_Q2_K) q2k_rows((const qn_block_q2_k *)w, n * (k / QN_QK_K), out);
    else q8_0p_rows((const uint8_t *)w, n * (k / QN_QK_K), out);
    return QN_OK;
}
