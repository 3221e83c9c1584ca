/* gguf_quantize.c — reference quantizers of the 32-element ggml types (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0),
 * matching llama-quantize byte for byte (contract in gguf_quantize.h). The symmetric types take
 * d from the signed value of largest magnitude (so the extreme lands exactly on code 0), the
 * affine types span [min, max]; codes are truncations of x/d + offset + 0.5, which is ggml's
 * rounding for these types (roundf only for Q8_0). */
#include "kernels/quant/gguf/gguf_quantize.h"

#include <float.h>
#include <math.h>

#include "kernels/common/half.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/gguf_quantize_fit.h"

/* ------------------------------------------------------------------ helpers */

/* The first element of largest magnitude, with its sign (0 for an all-zero block). */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        const float a = fabsf(x[j]);
        if (amax < a) {
            amax = a;
            max = x[j];
        }
    }
    return max;
}

static void block_min_max(const float *x, int n, float *mn, float *mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

/* Code of a symmetric type: trunc(v) as int8_t, capped at top (Q4_0: 15, Q5_0: 31). */
static uint8_t sym_code(float v, int top) {
    const int c = (int8_t)(uint8_t)qn_quant_trunc_i32(v);
    return (uint8_t)(c < top ? c : top);
}

/* Symmetric 32-element block with 2*half levels: d = max / -half, codes x/d + half, rounded by
 * truncating after adding 0.5. */
static void quantize_sym32(const float *x, int half, uint16_t *d_out, uint8_t code[32]) {
    const float max = signed_absmax(x, 32);
    const float d = max / (float)-half;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const float off = (float)half + 0.5f;
    *d_out = qn_f32_to_f16(d);
    for (int j = 0; j < 32; j++) code[j] = sym_code(x[j] * id + off, 2 * half - 1);
}

/* Affine 32-element block with `levels` codes: d = (max - min) / (levels - 1), m = min. */
static void quantize_affine32(const float *x, int levels, uint16_t *d_out, uint16_t *m_out, uint8_t code[32]) {
    float mn, mx;
    block_min_max(x, 32, &mn, &mx);
    const float d = (mx - mn) / (float)(levels - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    *d_out = qn_f32_to_f16(d);
    *m_out = qn_f32_to_f16(mn);
    for (int j = 0; j < 32; j++) {
        const float v = (x[j] - mn) * id + 0.5f;
        if (levels == 16) {
            code[j] = sym_code(v, 15); /* Q4_1 caps at 15 like Q4_0 */
        } else {
            code[j] = (uint8_t)qn_quant_trunc_i32(v); /* Q5_1: no cap, low byte kept */
        }
    }
}

/* Packs 32 codes: element j in the low nibble of byte j, element j+16 in the high nibble; the
 * fifth bits (when qh != NULL) go to bit e of a little-endian u32. */
static void pack_nibbles(const uint8_t code[32], uint8_t qs[16], uint8_t *qh) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((code[j] & 0x0f) | ((code[j + 16] & 0x0f) << 4));
        h |= (uint32_t)((code[j] >> 4) & 1) << j;
        h |= (uint32_t)((code[j + 16] >> 4) & 1) << (j + 16);
    }
    if (qh) {
        qh[0] = (uint8_t)h;
        qh[1] = (uint8_t)(h >> 8);
        qh[2] = (uint8_t)(h >> 16);
        qh[3] = (uint8_t)(h >> 24);
    }
}

/* ------------------------------------------------------------------ quantizers */

void qn_quantize_row_q4_0_ref(const float *src, void *dst, int64_t n) {
    qn_block_q4_0 *y = dst;
    uint8_t code[32];
    for (int64_t ib = 0; ib < n / QN_QK4_0; ib++, src += QN_QK4_0) {
        quantize_sym32(src, 8, &y[ib].d, code);
        /* Q4_0 packs the full code byte: codes never exceed 15, so no masking is needed */
        for (int j = 0; j < 16; j++) y[ib].qs[j] = (uint8_t)(code[j] | (code[j + 16] << 4));
    }
}

void qn_quantize_row_q4_1_ref(const float *src, void *dst, int64_t n) {
    qn_block_q4_1 *y = dst;
    uint8_t code[32];
    for (int64_t ib = 0; ib < n / QN_QK4_1; ib++, src += QN_QK4_1) {
        quantize_affine32(src, 16, &y[ib].d, &y[ib].m, code);
        for (int j = 0; j < 16; j++) y[ib].qs[j] = (uint8_t)(code[j] | (code[j + 16] << 4));
    }
}

void qn_quantize_row_q5_0_ref(const float *src, void *dst, int64_t n) {
    qn_block_q5_0 *y = dst;
    uint8_t code[32];
    for (int64_t ib = 0; ib < n / QN_QK5_0; ib++, src += QN_QK5_0) {
        quantize_sym32(src, 16, &y[ib].d, code);
        pack_nibbles(code, y[ib].qs, y[ib].qh);
    }
}

void qn_quantize_row_q5_1_ref(const float *src, void *dst, int64_t n) {
    qn_block_q5_1 *y = dst;
    uint8_t code[32];
    for (int64_t ib = 0; ib < n / QN_QK5_1; ib++, src += QN_QK5_1) {
        quantize_affine32(src, 32, &y[ib].d, &y[ib].m, code);
        pack_nibbles(code, y[ib].qs, y[ib].qh);
    }
}

void qn_quantize_row_q8_0_weight_ref(const float *src, void *dst, int64_t n) {
    qn_block_q8_0 *y = dst;
    for (int64_t ib = 0; ib < n / QN_QK8_0; ib++, src += QN_QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QN_QK8_0; j++) {
            const float a = fabsf(src[j]);
            amax = amax > a ? amax : a;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[ib].d = qn_f32_to_f16(d);
        for (int j = 0; j < QN_QK8_0; j++) y[ib].qs[j] = (int8_t)(uint8_t)qn_quant_trunc_i32(roundf(src[j] * id));
    }
}

/* ------------------------------------------------------------------ importance-weighted */

/* Per-element weights of block xb: qw * sqrt(sigma2 + x²), sigma2 = mean x² of the whole row. */
static void imatrix_weights32(const float *xb, const float *qw, float sigma2, float w[32]) {
    for (int j = 0; j < 32; j++) w[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

static float row_sigma2(const float *x, int64_t n) {
    float s = 0.0f;
    for (int64_t j = 0; j < n; j++) s += x[j] * x[j];
    return s / n;
}

/* Symmetric types: weighted fit over 2*half levels (codes = level + half). */
static void sym32_imatrix(const float *xb, const float *qw, float sigma2, int half, uint16_t *d, uint8_t code[32]) {
    float w[32];
    int8_t L[32];
    imatrix_weights32(xb, qw, sigma2, w);
    *d = qn_f32_to_f16(qn_kq_fit_sym(32, half, xb, w, L));
    for (int j = 0; j < 32; j++) code[j] = (uint8_t)L[j];
}

/* Affine types: weighted fit over levels [0, nmax], m = the fitted minimum. */
static void affine32_imatrix(const float *xb, const float *qw, float sigma2, int nmax, uint16_t *d, uint16_t *m,
                             uint8_t code[32]) {
    float w[32], neg_min;
    imatrix_weights32(xb, qw, sigma2, w);
    *d = qn_f32_to_f16(qn_kq_fit_affine(32, nmax, xb, w, code, &neg_min, -0.9f, 0.05f, 36, false));
    *m = qn_f32_to_f16(-neg_min);
}

void qn_quantize_row_q4_0_imatrix(const float *src, void *dst, int64_t n, const float *qw) {
    qn_block_q4_0 *y = dst;
    uint8_t code[32];
    const float sigma2 = row_sigma2(src, n);
    for (int64_t ib = 0; ib < n / QN_QK4_0; ib++) {
        sym32_imatrix(src + 32 * ib, qw + 32 * ib, sigma2, 8, &y[ib].d, code);
        for (int j = 0; j < 16; j++) y[ib].qs[j] = (uint8_t)(code[j] | (code[j + 16] << 4));
    }
}

void qn_quantize_row_q4_1_imatrix(const float *src, void *dst, int64_t n, const float *qw) {
    qn_block_q4_1 *y = dst;
    uint8_t code[32];
    const float sigma2 = row_sigma2(src, n);
    for (int64_t ib = 0; ib < n / QN_QK4_1; ib++) {
        affine32_imatrix(src + 32 * ib, qw + 32 * ib, sigma2, 15, &y[ib].d, &y[ib].m, code);
        for (int j = 0; j < 16; j++) y[ib].qs[j] = (uint8_t)(code[j] | (code[j + 16] << 4));
    }
}

void qn_quantize_row_q5_0_imatrix(const float *src, void *dst, int64_t n, const float *qw) {
    qn_block_q5_0 *y = dst;
    uint8_t code[32];
    const float sigma2 = row_sigma2(src, n);
    for (int64_t ib = 0; ib < n / QN_QK5_0; ib++) {
        sym32_imatrix(src + 32 * ib, qw + 32 * ib, sigma2, 16, &y[ib].d, code);
        pack_nibbles(code, y[ib].qs, y[ib].qh);
    }
}

void qn_quantize_row_q5_1_imatrix(const float *src, void *dst, int64_t n, const float *qw) {
    qn_block_q5_1 *y = dst;
    uint8_t code[32];
    const float sigma2 = row_sigma2(src, n);
    for (int64_t ib = 0; ib < n / QN_QK5_1; ib++) {
        affine32_imatrix(src + 32 * ib, qw + 32 * ib, sigma2, 31, &y[ib].d, &y[ib].m, code);
        pack_nibbles(code, y[ib].qs, y[ib].qh);
    }
}
