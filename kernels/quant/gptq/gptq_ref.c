/* gptq_ref.c — GPTQ checks, the plain reference dequantizer and the act-order repack into the CPU layout
 * (gptq_format.h, lutq.h). */
#include <stdio.h>

#include "kernels/common/half.h"
#include "kernels/quant/gptq/gptq_format.h"

qn_status qn_gptq_check(const qn_gptq_weight *w, char *why, size_t why_cap) {
    if (w->bits != 2 && w->bits != 3 && w->bits != 4 && w->bits != 8) {
        snprintf(why, why_cap, "bits = %d (supported: 2, 3, 4, 8)", w->bits);
        return QN_ERR_UNSUPPORTED;
    }
    if (w->k <= 0 || w->n <= 0 || w->group_size <= 0) {
        snprintf(why, why_cap, "shape K=%lld N=%lld group_size=%d", (long long)w->k, (long long)w->n, w->group_size);
        return QN_ERR_FORMAT;
    }
    if ((w->k * w->bits) % 32 || (w->bits == 3 && w->k % 32)) {
        snprintf(why, why_cap, "qweight: K=%lld is not a multiple of the %d-bit packing", (long long)w->k, w->bits);
        return QN_ERR_UNSUPPORTED;
    }
    if ((w->n * w->bits) % 32 || (w->bits == 3 && w->n % 32)) {
        snprintf(why, why_cap, "qzeros: N=%lld is not a multiple of the %d-bit packing", (long long)w->n, w->bits);
        return QN_ERR_UNSUPPORTED;
    }
    if (w->n_groups != (w->k + w->group_size - 1) / w->group_size && !w->g_idx) {
        snprintf(why, why_cap, "scales: %lld groups, expected ceil(%lld / %d)", (long long)w->n_groups,
                 (long long)w->k, w->group_size);
        return QN_ERR_FORMAT;
    }
    if (w->g_idx)
        for (int64_t k = 0; k < w->k; k++) {
            const int32_t g = (int32_t)qn_gptq_rd32(w->g_idx, k);
            if (g < 0 || g >= w->n_groups) {
                snprintf(why, why_cap, "g_idx[%lld] = %d outside [0, %lld)", (long long)k, g, (long long)w->n_groups);
                return QN_ERR_FORMAT;
            }
        }
    return QN_OK;
}

static float scale_of(const qn_gptq_weight *w, int64_t g, int64_t n) {
    const uint16_t h = qn_gptq_rd16(w->scales, g * w->n + n);
    return w->scales_bf16 ? qn_bf16_to_f32(h) : qn_f16_to_f32(h);
}

void qn_gptq_dequant_ref(const qn_gptq_weight *w, float *out) {
    for (int64_t k = 0; k < w->k; k++) {
        const int32_t g = qn_gptq_group(w, k);
        for (int64_t n = 0; n < w->n; n++) {
            /* q − Z is a small exact integer, s·(q − Z) is exact in fp32: one rounding, to the scales' dtype */
            const float v = scale_of(w, g, n) * (float)((int32_t)qn_gptq_q(w, k, n) - qn_gptq_zero(w, g, n));
            out[n * w->k + k] = w->scales_bf16 ? qn_bf16_to_f32(qn_f32_to_bf16(v)) : qn_f16_to_f32(qn_f32_to_f16(v));
        }
    }
}

bool qn_gptq_gidx_is_trivial(const qn_gptq_weight *w) {
    if (!w->g_idx) return true;
    for (int64_t k = 0; k < w->k; k++)
        if ((int64_t)qn_gptq_rd32(w->g_idx, k) != k / w->group_size) return false;
    return true;
}

size_t qn_gptq_lutq_bytes(const qn_gptq_weight *w) {
    return qn_lutq_bytes(w->k, w->n, w->n_groups, w->bits <= 4 ? 4 : 8, !qn_gptq_gidx_is_trivial(w), true);
}

qn_status qn_gptq_to_lutq(const qn_gptq_weight *w, void *buf, qn_lutq_weight *out) {
    const bool act = !qn_gptq_gidx_is_trivial(w);
    int32_t *gstart, *perm;
    uint8_t *codes;
    float *scale, *zero;
    qn_status st = qn_lutq_init(out, buf, w->k, w->n, w->n_groups, w->bits <= 4 ? 4 : 8, act, true, &gstart, &perm,
                                &codes, &scale, &zero);
    if (st != QN_OK) return st;
    /* counting sort of the columns by group (stable: original order inside a group) */
    for (int64_t g = 0; g <= w->n_groups; g++) gstart[g] = 0;
    for (int64_t k = 0; k < w->k; k++) gstart[qn_gptq_group(w, k) + 1]++;
    for (int64_t g = 0; g < w->n_groups; g++) gstart[g + 1] += gstart[g];
    if (act) /* O(K·G) once at load; kernels/ allocates nothing */
        for (int64_t g = 0, j = 0; g < w->n_groups; g++)
            for (int64_t k = 0; k < w->k; k++)
                if (qn_gptq_group(w, k) == g) perm[j++] = (int32_t)k;
    /* in tiles of 64 rows: qweight is [K·b/32][N], so a tile reads 64 adjacent words per k while writing
     * 64 rows' codes (the whole-N sweep per column touched one cache line per row, several times slower) */
    for (int64_t n0 = 0; n0 < w->n; n0 += 64) {
        const int64_t n1 = n0 + 64 < w->n ? n0 + 64 : w->n;
        for (int64_t j = 0; j < w->k; j++) {
            const int64_t k = act ? perm[j] : j;
            for (int64_t n = n0; n < n1; n++) qn_lutq_set_code(codes, w->k, out->code_bits, n, j, qn_gptq_q(w, k, n));
        }
    }
    for (int64_t n = 0; n < w->n; n++)
        for (int64_t g = 0; g < w->n_groups; g++) {
            scale[n * w->n_groups + g] = scale_of(w, g, n);
            zero[n * w->n_groups + g] = (float)qn_gptq_zero(w, g, n);
        }
    out->round = w->scales_bf16 ? QN_LUTQ_ROUND_BF16 : QN_LUTQ_ROUND_F16;
    return QN_OK;
}
