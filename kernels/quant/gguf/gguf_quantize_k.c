/* gguf_quantize_k.c — reference quantizers of the k-quant types (Q2_K Q3_K Q4_K Q5_K Q6_K),
 * matching llama-quantize byte for byte when no importance matrix is given (gguf_quantize.h).
 * Each super-block is quantized in two passes: every sub-block first gets its own scale (and min)
 * from a small search, those are then quantized against one fp16 super-scale, and finally the
 * elements are re-coded against the quantized sub-block scales. The searches follow ggml's exactly
 * (same candidates, same order, same fp32 arithmetic, same tie rules), which is what makes the
 * bytes identical; comments give the idea, not the ggml names. With an importance matrix
 * (the *_imatrix functions) the sub-block fits are weighted by it and the sub-block scales come
 * from a weighted search over positive levels (fit_pos) instead of max-scaling. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/gguf_quantize.h"
#include "kernels/quant/gguf/gguf_quantize_fit.h"

/* Below this magnitude a sub-block counts as all zero (ggml's GROUP_MAX_EPS). */
#define QN_KQ_ZERO_EPS 1e-15f

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ------------------------------------------------------------------ sub-block searches */

/* Affine fit x ≈ scale*L + min with L in [0, nmax] and min <= 0, minimising the weighted error
 * (|e| when use_mad, else e²). Starts from the min/max fit, then tries nstep+1 inverse scales
 * (rmin + rdelta*is + nmax)/(max - min), each followed by a weighted least-squares solve for
 * (scale, min); a candidate replaces the best only when strictly better, and later candidates
 * use the updated min. Writes codes to L (n <= 32), -min to *neg_min; returns the scale. */
float qn_kq_fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min, float rmin,
                        float rdelta, int nstep, bool use_mad) {
    uint8_t cand[32];
    float mn = x[0], mx = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (mn > 0) mn = 0;
    if (mx == mn) {
        memset(L, 0, (size_t)n);
        *neg_min = -mn;
        return 0.0f;
    }
    float iscale = (float)nmax / (mx - mn);
    float scale = 1.0f / iscale;
    float best_err = 0.0f;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(qn_quant_nearest_int(iscale * (x[i] - mn)), 0, nmax);
        float e = scale * L[i] + mn - x[i];
        e = use_mad ? fabsf(e) : e * e;
        best_err += w[i] * e;
    }
    if (nstep < 1) {
        *neg_min = -mn;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (mx - mn);
        float s_l = 0.0f, s_l2 = 0.0f, s_xl = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = clampi(qn_quant_nearest_int(iscale * (x[i] - mn)), 0, nmax);
            cand[i] = (uint8_t)l;
            s_l += w[i] * l;
            s_l2 += w[i] * l * l;
            s_xl += w[i] * l * x[i];
        }
        const float det = sum_w * s_l2 - s_l * s_l;
        if (!(det > 0)) continue;
        float c_scale = (sum_w * s_xl - sum_x * s_l) / det;
        float c_min = (s_l2 * sum_x - s_l * s_xl) / det;
        if (c_min > 0) { /* min must stay <= 0: refit the scale alone */
            c_min = 0;
            c_scale = s_xl / s_l2;
        }
        float err = 0.0f;
        for (int i = 0; i < n; i++) {
            float e = c_scale * cand[i] + c_min - x[i];
            e = use_mad ? fabsf(e) : e * e;
            err += w[i] * e;
        }
        if (err < best_err) {
            memcpy(L, cand, (size_t)n);
            best_err = err;
            scale = c_scale;
            mn = c_min;
        }
    }
    *neg_min = -mn;
    return scale;
}

/* Codes of x for inverse scale iscale, clamped to [-nmax, nmax-1]. */
static inline int sym_level(float iscale, float x, int nmax) {
    return clampi(qn_quant_nearest_int(iscale * x), -nmax, nmax - 1);
}

/* Symmetric fit (Q6_K; Q3_K/Q4_0/Q5_0 with an importance matrix): L in [0, 2*nmax) stores level +
 * nmax; weights w (NULL: x²). The extreme value maps to -nmax first, then 18 nearby inverse scales
 * -(nmax + 0.1*is)/max are tried and the one maximising (Σwxl)²/Σwl² wins (strictly). Returns the
 * least-squares scale of the winner. */
float qn_kq_fit_sym(int n, int nmax, const float *x, const float *w_in, int8_t *L) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++) {
        const float a = fabsf(x[i]);
        if (a > amax) {
            amax = a;
            max = x[i];
        }
    }
    if (amax < QN_KQ_ZERO_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)(-nmax) / max;
    float s_xl = 0.0f, s_l2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = sym_level(iscale, x[i], nmax);
        L[i] = (int8_t)(l + nmax);
        const float w = w_in ? w_in[i] : x[i] * x[i];
        s_xl += w * x[i] * l;
        s_l2 += w * l * l;
    }
    float scale = s_l2 != 0.0f ? s_xl / s_l2 : 0.0f;
    float best = scale * s_xl;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        s_xl = s_l2 = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = sym_level(iscale, x[i], nmax);
            const float w = w_in ? w_in[i] : x[i] * x[i];
            s_xl += w * x[i] * l;
            s_l2 += w * l * l;
        }
        if (s_l2 > 0 && s_xl * s_xl > best * s_l2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + sym_level(iscale, x[i], nmax));
            scale = s_xl / s_l2;
            best = scale * s_xl;
        }
    }
    return scale;
}

/* Symmetric fit for Q3_K: start from max -> -nmax, then up to 5 sweeps of coordinate descent,
 * moving one code at a time to its best level when that raises (Σwxl)²/Σwl² (weights x²).
 * L receives level + nmax. Returns Σwxl/Σwl². */
static float fit_sym_q3(int n, int nmax, const float *x, int8_t *L) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++) {
        const float a = fabsf(x[i]);
        if (a > amax) {
            amax = a;
            max = x[i];
        }
    }
    if (amax < QN_KQ_ZERO_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = (float)(-nmax) / max;
    float s_xl = 0.0f, s_l2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = sym_level(iscale, x[i], nmax);
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        s_xl += w * x[i] * l;
        s_l2 += w * l * l;
    }
    for (int sweep = 0; sweep < 5; sweep++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float xl = s_xl - w * x[i] * L[i];
            if (!(xl > 0)) continue;
            float l2 = s_l2 - w * L[i] * L[i];
            const int nl = clampi(qn_quant_nearest_int(x[i] * l2 / xl), -nmax, nmax - 1);
            if (nl == L[i]) continue;
            xl += w * x[i] * nl;
            l2 += w * nl * nl;
            if (l2 > 0 && xl * xl * s_l2 > s_xl * s_xl * l2) {
                L[i] = (int8_t)nl;
                s_xl = xl;
                s_l2 = l2;
                changed++;
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return s_l2 > 0.0f ? s_xl / s_l2 : 0.0f;
}

/* ------------------------------------------------------------------ packing helpers */

/* Four 2-bit code planes: byte 32*h + l holds codes 128h + l + 32k in bits 2k..2k+1. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < QN_QK_K; h += 128)
        for (int l = 0; l < 32; l++)
            qs[h / 4 + l] = (uint8_t)(L[h + l] | (L[h + l + 32] << 2) | (L[h + l + 64] << 4) | (L[h + l + 96] << 6));
}

/* The 12-byte 6-bit (scale, min) packing shared by Q4_K and Q5_K (formats.md §2.2). */
static void pack_scale_min_k4(const uint8_t sc[8], const uint8_t mn[8], uint8_t s[12]) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = sc[j];
            s[j + 4] = mn[j];
        } else {
            s[j + 4] = (uint8_t)((sc[j] & 0x0f) | ((mn[j] & 0x0f) << 4));
            s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            s[j] |= (uint8_t)((mn[j] >> 4) << 6);
        }
    }
}

static void unpack_scale_min_k4(int j, const uint8_t s[12], uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4));
        *mn = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* Positive fit of the sub-block scales (or mins) x[n] >= 0 on levels [0, nmax] with importance
 * weights w, used with an importance matrix: max -> nmax first, then 8 nearby inverse scales
 * (nmax + 0.1*is)/max by weighted squared error (strictly better wins), then up to 5 sweeps of
 * coordinate descent on (Σwxl)²/Σwl². Levels are stored as bytes (a negative level wraps, as in
 * ggml) and the sums use the unwrapped values where ggml does. Returns Σwxl/Σwl². */
static float fit_pos(int n, int nmax, const float *x, uint8_t *L, const float *w) {
    float max = 0.0f;
    for (int i = 0; i < n; i++) max = max > x[i] ? max : x[i];
    if (max < QN_KQ_ZERO_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)qn_quant_nearest_int(iscale * x[i]);
    float scale = 1 / iscale, best = 0.0f;
    for (int i = 0; i < n; i++) {
        const float e = x[i] - scale * L[i];
        best += w[i] * e * e;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0) continue;
        const float isc = (0.1f * is + nmax) / max, sc = 1 / isc;
        float err = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = qn_quant_nearest_int(isc * x[i]);
            l = l < nmax ? l : nmax;
            const float e = x[i] - sc * l;
            err += w[i] * e * e;
        }
        if (err < best) {
            best = err;
            iscale = isc;
        }
    }
    float s_xl = 0.0f, s_l2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = qn_quant_nearest_int(iscale * x[i]);
        l = l < nmax ? l : nmax;
        L[i] = (uint8_t)l;
        s_xl += w[i] * x[i] * l;
        s_l2 += w[i] * l * l;
    }
    for (int sweep = 0; sweep < 5; sweep++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float xl = s_xl - w[i] * x[i] * L[i];
            float l2 = s_l2 - w[i] * L[i] * L[i];
            if (!(xl > 0 && l2 > 0)) continue;
            int nl = qn_quant_nearest_int(x[i] * l2 / xl);
            nl = nl < nmax ? nl : nmax;
            if (nl == L[i]) continue;
            xl += w[i] * x[i] * nl;
            l2 += w[i] * nl * nl;
            if (xl * xl * s_l2 > s_xl * s_xl * l2) {
                L[i] = (uint8_t)nl;
                s_xl = xl;
                s_l2 = l2;
                changed++;
            }
        }
        if (!changed) break;
    }
    return s_l2 > 0.0f ? s_xl / s_l2 : 0.0f;
}

/* Importance weights of one sub-block: qw * sqrt(sigma2 + x²); returns their sum. */
static float imatrix_weights(int n, const float *x, const float *qw, float sigma2, float *w) {
    float sum = 0.0f;
    for (int l = 0; l < n; l++) w[l] = qw[l] * sqrtf(sigma2 + x[l] * x[l]);
    for (int l = 0; l < n; l++) sum += w[l];
    return sum;
}

static float sum_sq(const float *x, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += x[i] * x[i];
    return s;
}

/* ------------------------------------------------------------------ Q2_K */

/* Re-codes every sub-block against its quantized scale and min (sub-blocks whose scale is 0 keep
 * their codes), then packs the codes. */
static void q2_k_finish(const float *src, qn_block_q2_k *b, uint8_t L[QN_QK_K]) {
    const float d_all = qn_f16_to_f32(b->d), m_all = qn_f16_to_f32(b->dmin);
    for (int j = 0; j < 16; j++) {
        const float d = d_all * (b->scales[j] & 0x0f);
        if (d == 0.0f) continue;
        const float dm = m_all * (b->scales[j] >> 4);
        for (int l = 0; l < 16; l++)
            L[16 * j + l] = (uint8_t)clampi(qn_quant_nearest_int((src[16 * j + l] + dm) / d), 0, 3);
    }
    pack_2bit(L, b->qs);
}

void qn_quantize_row_q2_k_ref(const float *src, void *dst, int64_t n) {
    qn_block_q2_k *y = dst;
    uint8_t L[QN_QK_K];
    float w[16], scales[16], mins[16];
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++, src += QN_QK_K) {
        qn_block_q2_k *b = &y[ib];
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 16; j++) {
            const float *x = src + 16 * j;
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[l]);
            scales[j] = qn_kq_fit_affine(16, 3, x, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        /* 4-bit sub-block scales and mins against fp16 super-scales d = max/15 */
        if (max_scale > 0) {
            const float iscale = 15.0f / max_scale;
            for (int j = 0; j < 16; j++) b->scales[j] = (uint8_t)qn_quant_nearest_int(iscale * scales[j]);
            b->d = qn_f32_to_f16(max_scale / 15.0f);
        } else {
            memset(b->scales, 0, sizeof b->scales);
            b->d = qn_f32_to_f16(0.0f);
        }
        if (max_min > 0) {
            const float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; j++) b->scales[j] |= (uint8_t)((unsigned)qn_quant_nearest_int(iscale * mins[j]) << 4);
            b->dmin = qn_f32_to_f16(max_min / 15.0f);
        } else {
            b->dmin = qn_f32_to_f16(0.0f);
        }
        q2_k_finish(src, b, L);
    }
}

void qn_quantize_row_q2_k_imatrix(const float *src, void *dst, int64_t n, const float *qw) {
    qn_block_q2_k *y = dst;
    uint8_t L[QN_QK_K], Ls[16], Lm[16];
    float w[16], sw[16], scales[16], mins[16];
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++, src += QN_QK_K, qw += QN_QK_K) {
        qn_block_q2_k *b = &y[ib];
        const float sigma2 = sum_sq(src, QN_QK_K) / QN_QK_K;
        for (int j = 0; j < 16; j++) {
            sw[j] = imatrix_weights(16, src + 16 * j, qw + 16 * j, sigma2, w);
            scales[j] = qn_kq_fit_affine(16, 3, src + 16 * j, w, L + 16 * j, &mins[j], -0.9f, 0.05f, 36, false);
        }
        b->d = qn_f32_to_f16(fit_pos(16, 15, scales, Ls, sw));
        b->dmin = qn_f32_to_f16(fit_pos(16, 15, mins, Lm, sw));
        for (int j = 0; j < 16; j++) b->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
        q2_k_finish(src, b, L);
    }
}

/* ------------------------------------------------------------------ Q3_K */

/* 6-bit scale of sub-block j (0..63, stored biased by 32) from the 12-byte packing. */
static int q3k_scale6(const uint8_t s[12], int j) {
    const int lo = j < 8 ? (s[j] & 0x0f) : (s[j - 8] >> 4);
    return lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
}

/* Stores the biased 6-bit scale l (0..63) of sub-block j; scales must start zeroed. */
static void q3k_put_scale6(uint8_t s[12], int j, int l) {
    if (j < 8) s[j] = (uint8_t)(l & 0x0f);
    else s[j - 8] |= (uint8_t)((l & 0x0f) << 4);
    s[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
}

/* Re-codes against the quantized sub-block scales, then splits each code into the hmask bit and
 * the two low bits. */
static void q3_k_finish(const float *src, qn_block_q3_k *b, int8_t L[QN_QK_K]) {
    const float d_all = qn_f16_to_f32(b->d);
    for (int j = 0; j < 16; j++) {
        const int8_t sc = (int8_t)(q3k_scale6(b->scales, j) - 32);
        const float d = d_all * sc;
        if (d == 0.0f) continue;
        for (int l = 0; l < 16; l++)
            L[16 * j + l] = (int8_t)(clampi(qn_quant_nearest_int(src[16 * j + l] / d), -4, 3) + 4);
    }
    /* high bit of code e goes to hmask[e % 32], bit e / 32; the low two bits to qs */
    memset(b->hmask, 0, sizeof b->hmask);
    uint8_t low[QN_QK_K];
    for (int e = 0; e < QN_QK_K; e++) {
        int l = L[e];
        if (l > 3) {
            b->hmask[e % 32] |= (uint8_t)(1u << (e / 32));
            l -= 4;
        }
        low[e] = (uint8_t)l;
    }
    pack_2bit(low, b->qs);
}

void qn_quantize_row_q3_k_ref(const float *src, void *dst, int64_t n) {
    qn_block_q3_k *y = dst;
    int8_t L[QN_QK_K];
    float scales[16];
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++, src += QN_QK_K) {
        qn_block_q3_k *b = &y[ib];
        float max_scale = 0.0f, amax = 0.0f;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_sym_q3(16, 4, src + 16 * j, L + 16 * j);
            const float a = fabsf(scales[j]);
            if (a > amax) {
                amax = a;
                max_scale = scales[j];
            }
        }
        memset(b->scales, 0, sizeof b->scales);
        if (max_scale != 0.0f) {
            /* signed 6-bit scales: the largest maps to -32, d = 1/iscale */
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; j++) {
                const int8_t raw = (int8_t)qn_quant_nearest_int(iscale * scales[j]);
                q3k_put_scale6(b->scales, j, clampi(raw, -32, 31) + 32);
            }
            b->d = qn_f32_to_f16(1.0f / iscale);
        } else {
            b->d = qn_f32_to_f16(0.0f);
        }
        q3_k_finish(src, b, L);
    }
}

void qn_quantize_row_q3_k_imatrix(const float *src, void *dst, int64_t n, const float *qw) {
    qn_block_q3_k *y = dst;
    int8_t L[QN_QK_K], Ls[16];
    float w[16], sw[16], scales[16];
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++, src += QN_QK_K, qw += QN_QK_K) {
        qn_block_q3_k *b = &y[ib];
        const float sigma2 = 2 * sum_sq(src, QN_QK_K) / QN_QK_K;
        for (int j = 0; j < 16; j++) {
            sw[j] = imatrix_weights(16, src + 16 * j, qw + 16 * j, sigma2, w);
            scales[j] = qn_kq_fit_sym(16, 4, src + 16 * j, w, L + 16 * j);
        }
        /* the sub-block scales get a weighted symmetric fit of their own (levels stored + 32) */
        memset(b->scales, 0, sizeof b->scales);
        const float d_block = qn_kq_fit_sym(16, 32, scales, sw, Ls);
        for (int j = 0; j < 16; j++) q3k_put_scale6(b->scales, j, Ls[j]);
        b->d = qn_f32_to_f16(d_block);
        q3_k_finish(src, b, L);
    }
}

/* ------------------------------------------------------------------ Q4_K and Q5_K */

/* Packs the 6-bit scales/mins and fp16 d/dmin, then re-derives the codes from the quantized values. */
static void k_affine_finish(const float *x, int nmax, const uint8_t sc[8], const uint8_t mn[8], float d_block,
                            float m_block, uint16_t *d_out, uint16_t *dmin_out, uint8_t s12[12], uint8_t L[QN_QK_K]) {
    pack_scale_min_k4(sc, mn, s12);
    *d_out = qn_f32_to_f16(d_block);
    *dmin_out = qn_f32_to_f16(m_block);
    const float d_all = qn_f16_to_f32(*d_out), m_all = qn_f16_to_f32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        unpack_scale_min_k4(j, s12, &s, &m);
        const float d = d_all * s;
        if (d == 0.0f) continue;
        const float dm = m_all * m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clampi(qn_quant_nearest_int((x[32 * j + l] + dm) / d), 0, nmax);
    }
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): per 32-element sub-block an affine fit weighted by
 * rms(x) + |x|, then 6-bit scales/mins against fp16 d = max/63, dmin = maxmin/63. With qw (an
 * importance matrix) the fit is weighted by qw*sqrt(sigma2 + x²) and the 6-bit scales/mins come
 * from fit_pos (capped at 63 only when cap63: ggml's Q4_K does not cap). Returns codes in L[256]. */
static void quantize_k_affine(const float *x, const float *qw, int nmax, float rmin, int nstep, bool cap63,
                              uint16_t *d_out, uint16_t *dmin_out, uint8_t s12[12], uint8_t L[QN_QK_K]) {
    float w[32], sw[8], scales[8], mins[8];
    uint8_t sc[8], mn[8];
    if (qw) {
        const float sigma2 = 2 * sum_sq(x, QN_QK_K) / QN_QK_K;
        for (int j = 0; j < 8; j++) {
            sw[j] = imatrix_weights(32, x + 32 * j, qw + 32 * j, sigma2, w);
            scales[j] = qn_kq_fit_affine(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], -0.9f, 0.05f, 36, false);
        }
        const float d_block = fit_pos(8, 63, scales, sc, sw), m_block = fit_pos(8, 63, mins, mn, sw);
        for (int j = 0; cap63 && j < 8; j++) {
            sc[j] = sc[j] < 63 ? sc[j] : 63;
            mn[j] = mn[j] < 63 ? mn[j] : 63;
        }
        k_affine_finish(x, nmax, sc, mn, d_block, m_block, d_out, dmin_out, s12, L);
        return;
    }
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xs[l]);
        scales[j] = qn_kq_fit_affine(32, nmax, xs, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < 8; j++) {
        const uint8_t ls = (uint8_t)qn_quant_nearest_int(inv_scale * scales[j]);
        const uint8_t lm = (uint8_t)qn_quant_nearest_int(inv_min * mins[j]);
        sc[j] = ls < 63 ? ls : 63;
        mn[j] = lm < 63 ? lm : 63;
    }
    k_affine_finish(x, nmax, sc, mn, max_scale / 63.0f, max_min / 63.0f, d_out, dmin_out, s12, L);
}

static void q4_k_row(const float *src, void *dst, int64_t n, const float *qw) {
    qn_block_q4_k *y = dst;
    uint8_t L[QN_QK_K];
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++, src += QN_QK_K) {
        qn_block_q4_k *b = &y[ib];
        memset(b->scales, 0, sizeof b->scales);
        quantize_k_affine(src, qw ? qw + ib * QN_QK_K : NULL, 15, -1.0f, 20, false, &b->d, &b->dmin, b->scales, L);
        /* 64-element chunks: first 32 in the low nibbles, next 32 in the high nibbles */
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) b->qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + l + 32] << 4));
    }
}

static void q5_k_row(const float *src, void *dst, int64_t n, const float *qw) {
    qn_block_q5_k *y = dst;
    uint8_t L[QN_QK_K];
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++, src += QN_QK_K) {
        qn_block_q5_k *b = &y[ib];
        memset(b->scales, 0, sizeof b->scales);
        quantize_k_affine(src, qw ? qw + ib * QN_QK_K : NULL, 31, -0.5f, 15, true, &b->d, &b->dmin, b->scales, L);
        memset(b->qh, 0, sizeof b->qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * c + l], hi = L[64 * c + l + 32];
                if (lo > 15) {
                    lo -= 16;
                    b->qh[l] |= (uint8_t)(1u << (2 * c));
                }
                if (hi > 15) {
                    hi -= 16;
                    b->qh[l] |= (uint8_t)(2u << (2 * c));
                }
                b->qs[32 * c + l] = (uint8_t)(lo | (hi << 4));
            }
    }
}

void qn_quantize_row_q4_k_ref(const float *src, void *dst, int64_t n) { q4_k_row(src, dst, n, NULL); }
void qn_quantize_row_q4_k_imatrix(const float *src, void *dst, int64_t n, const float *qw) { q4_k_row(src, dst, n, qw); }
void qn_quantize_row_q5_k_ref(const float *src, void *dst, int64_t n) { q5_k_row(src, dst, n, NULL); }
void qn_quantize_row_q5_k_imatrix(const float *src, void *dst, int64_t n, const float *qw) { q5_k_row(src, dst, n, qw); }

/* ------------------------------------------------------------------ Q6_K */

/* qw (an importance matrix row, or NULL) replaces the x² weights of the sub-block fits; the rest
 * is the same with or without it. */
static void q6_k_row(const float *src, void *dst, int64_t n, const float *qw) {
    qn_block_q6_k *y = dst;
    int8_t L[QN_QK_K];
    float scales[16];
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++, src += QN_QK_K, qw = qw ? qw + QN_QK_K : NULL) {
        qn_block_q6_k *b = &y[ib];
        float max_scale = 0.0f, max_abs = 0.0f;
        for (int j = 0; j < 16; j++) {
            scales[j] = qn_kq_fit_sym(16, 32, src + 16 * j, qw ? qw + 16 * j : NULL, L + 16 * j);
            const float a = fabsf(scales[j]);
            if (a > max_abs) {
                max_abs = a;
                max_scale = scales[j];
            }
        }
        if (max_abs < QN_KQ_ZERO_EPS) {
            memset(b, 0, sizeof *b);
            continue;
        }
        /* signed 8-bit sub-block scales: the largest maps to -128 (capped at 127 on the other side) */
        const float iscale = -128.0f / max_scale;
        b->d = qn_f32_to_f16(1.0f / iscale);
        for (int j = 0; j < 16; j++) {
            const int s = qn_quant_nearest_int(iscale * scales[j]);
            b->scales[j] = (int8_t)(s < 127 ? s : 127);
        }
        const float d_all = qn_f16_to_f32(b->d);
        for (int j = 0; j < 16; j++) {
            const float d = d_all * b->scales[j];
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(clampi(qn_quant_nearest_int(src[16 * j + l] / d), -32, 31) + 32);
        }
        /* 128-element halves: low nibbles of codes l, l+32 (+64, +96 in the high nibbles) in ql,
         * the top two bits of all four in qh */
        for (int h = 0; h < 2; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = (uint8_t)Lh[l], q2 = (uint8_t)Lh[l + 32];
                const uint8_t q3 = (uint8_t)Lh[l + 64], q4 = (uint8_t)Lh[l + 96];
                ql[l] = (uint8_t)((q1 & 0x0f) | ((q3 & 0x0f) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0x0f) | ((q4 & 0x0f) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

void qn_quantize_row_q6_k_ref(const float *src, void *dst, int64_t n) { q6_k_row(src, dst, n, NULL); }
void qn_quantize_row_q6_k_imatrix(const float *src, void *dst, int64_t n, const float *qw) { q6_k_row(src, dst, n, qw); }
