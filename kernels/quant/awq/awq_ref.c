/* awq_ref.c — AWQ checks, the plain reference dequantizer and the repack into the CPU layout (awq_format.h). */
#include <stdio.h>

#include "kernels/common/half.h"
#include "kernels/quant/awq/awq_format.h"

int64_t qn_awq_gemv_zeros_width(int64_t k, int32_t group_size) {
    int64_t mult;
    if (group_size >= 128)
        mult = 1;
    else if (group_size == 64)
        mult = 2;
    else if (group_size == 32)
        mult = 4;
    else
        return 0;
    const int64_t base = (k / group_size + 7) / 8;
    return (base + mult - 1) / mult * mult;
}

qn_status qn_awq_check(const qn_awq_weight *w, char *why, size_t why_cap) {
    if (w->bits != 4) {
        snprintf(why, why_cap, "bits = %d (AWQ packs 4-bit only)", w->bits);
        return QN_ERR_UNSUPPORTED;
    }
    if (w->k <= 0 || w->n <= 0 || w->group_size <= 0 || w->k % w->group_size) {
        snprintf(why, why_cap, "group_size = %d does not divide K = %lld", w->group_size, (long long)w->k);
        return QN_ERR_UNSUPPORTED;
    }
    if (w->n % 8 || w->k % 8) {
        snprintf(why, why_cap, "qweight: K=%lld / N=%lld not multiples of 8", (long long)w->k, (long long)w->n);
        return QN_ERR_UNSUPPORTED;
    }
    if (w->layout == QN_AWQ_GEMV && w->zeros_width < (w->k / w->group_size + 7) / 8) {
        snprintf(why, why_cap, "qzeros: %lld words per row, too few for %lld groups", (long long)w->zeros_width,
                 (long long)(w->k / w->group_size));
        return QN_ERR_FORMAT;
    }
    return QN_OK;
}

void qn_awq_dequant_ref(const qn_awq_weight *w, float *out) {
    for (int64_t n = 0; n < w->n; n++)
        for (int64_t k = 0; k < w->k; k++) {
            const int64_t g = k / w->group_size;
            const float v = qn_f16_to_f32(qn_awq_scale_bits(w, g, n)) *
                            (float)((int32_t)qn_awq_q(w, k, n) - (int32_t)qn_awq_zero(w, g, n));
            out[n * w->k + k] = qn_f16_to_f32(qn_f32_to_f16(v));
        }
}

size_t qn_awq_lutq_bytes(const qn_awq_weight *w) {
    return qn_lutq_bytes(w->k, w->n, w->k / w->group_size, 4, false, true);
}

qn_status qn_awq_to_lutq(const qn_awq_weight *w, void *buf, qn_lutq_weight *out) {
    const int64_t G = w->k / w->group_size;
    int32_t *gstart;
    uint8_t *codes;
    float *scale, *zero;
    qn_status st = qn_lutq_init(out, buf, w->k, w->n, G, 4, false, true, &gstart, NULL, &codes, &scale, &zero);
    if (st != QN_OK) return st;
    for (int64_t g = 0; g <= G; g++) gstart[g] = (int32_t)(g * w->group_size);
    /* codes in tiles of 32 rows: qweight is [K][N/8] words, so a tile reads 4 adjacent words per k instead
     * of one word per K-strided row walk */
    for (int64_t n0 = 0; n0 < w->n; n0 += 32) {
        const int64_t n1 = n0 + 32 < w->n ? n0 + 32 : w->n;
        for (int64_t k = 0; k < w->k; k++)
            for (int64_t n = n0; n < n1; n++) qn_lutq_set_code(codes, w->k, 4, n, k, qn_awq_q(w, k, n));
    }
    for (int64_t n = 0; n < w->n; n++) {
        for (int64_t g = 0; g < G; g++) {
            scale[n * G + g] = qn_f16_to_f32(qn_awq_scale_bits(w, g, n));
            zero[n * G + g] = (float)qn_awq_zero(w, g, n);
        }
    }
    out->round = QN_LUTQ_ROUND_F16;
    return QN_OK;
}
