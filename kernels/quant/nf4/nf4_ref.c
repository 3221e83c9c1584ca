/* nf4_ref.c — bitsandbytes NF4/FP4 tables, checks, the reference dequantizer and the repack into the CPU layout
 * (nf4_format.h). Products and the nested-absmax sum are separate statements: fp contraction stays off
 * (-std=c11), so nothing is fused into an FMA and the roundings match bitsandbytes' fp32 torch ops. */
#include <stdio.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/nf4/nf4_format.h"

const float QN_BNB4_NF4_MAP[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f,
    1.0f};
/* sign bit 3; the 3 low bits index [0, 0.0625, 8, 12, 4, 6, 2, 3] / 12 */
const float QN_BNB4_FP4_MAP[16] = {
    0.0f, 0.005208333333f, 0.66666667f, 1.0f, 0.33333333f, 0.5f, 0.16666667f, 0.25f,
    -0.0f, -0.005208333333f, -0.66666667f, -1.0f, -0.33333333f, -0.5f, -0.16666667f, -0.25f};

static float rdf(const void *base, int64_t i) {
    float v;
    memcpy(&v, (const uint8_t *)base + 4 * (size_t)i, 4);
    return v;
}

qn_status qn_bnb4_check(const qn_bnb4_weight *w, char *why, size_t why_cap) {
    if (w->blocksize <= 0 || w->k <= 0 || w->n <= 0) {
        snprintf(why, why_cap, "blocksize %d / shape [%lld, %lld]", w->blocksize, (long long)w->n, (long long)w->k);
        return QN_ERR_FORMAT;
    }
    if (w->n_blocks != (w->n * w->k + w->blocksize - 1) / w->blocksize) {
        snprintf(why, why_cap, "absmax: %lld blocks, expected ceil(%lld / %d)", (long long)w->n_blocks,
                 (long long)(w->n * w->k), w->blocksize);
        return QN_ERR_FORMAT;
    }
    if (w->nested && (w->nested_blocksize <= 0 || !w->nested_absmax || !w->nested_quant_map)) {
        snprintf(why, why_cap, "nested_absmax / nested_quant_map / nested_blocksize missing for double quant");
        return QN_ERR_FORMAT;
    }
    if (w->dtype != QN_LUTQ_ROUND_F16 && w->dtype != QN_LUTQ_ROUND_BF16) {
        snprintf(why, why_cap, "dtype: only float16 and bfloat16");
        return QN_ERR_UNSUPPORTED;
    }
    return QN_OK;
}

float qn_bnb4_absmax(const qn_bnb4_weight *w, int64_t b) {
    if (!w->nested) return rdf(w->absmax, b);
    const uint8_t c = ((const uint8_t *)w->absmax)[b];
    const float prod = rdf(w->nested_quant_map, c) * rdf(w->nested_absmax, b / w->nested_blocksize);
    const float sum = prod + w->nested_offset;
    return sum;
}

static uint32_t code_at(const qn_bnb4_weight *w, int64_t e) {
    const uint8_t b = w->codes[e >> 1];
    return (e & 1) ? (b & 15u) : (uint32_t)(b >> 4);
}

static float round_dtype(qn_lutq_round r, float v) {
    return r == QN_LUTQ_ROUND_BF16 ? qn_bf16_to_f32(qn_f32_to_bf16(v)) : qn_f16_to_f32(qn_f32_to_f16(v));
}

void qn_bnb4_dequant_ref(const qn_bnb4_weight *w, float *out) {
    const int64_t total = w->n * w->k;
    for (int64_t b = 0; b < w->n_blocks; b++) {
        const float a = qn_bnb4_absmax(w, b);
        const int64_t e1 = (b + 1) * w->blocksize < total ? (b + 1) * w->blocksize : total;
        for (int64_t e = b * w->blocksize; e < e1; e++) {
            const float v = rdf(w->quant_map, code_at(w, e)) * a;
            out[e] = round_dtype(w->dtype, v);
        }
    }
}

size_t qn_bnb4_lutq_bytes(const qn_bnb4_weight *w) {
    return qn_lutq_bytes(w->k, w->n, w->k / w->blocksize, 4, false, false);
}

qn_status qn_bnb4_to_lutq(const qn_bnb4_weight *w, void *buf, qn_lutq_weight *out) {
    if (w->k % w->blocksize) return QN_ERR_UNSUPPORTED;
    const int64_t G = w->k / w->blocksize;
    int32_t *gstart;
    uint8_t *codes;
    float *scale;
    qn_status st = qn_lutq_init(out, buf, w->k, w->n, G, 4, false, false, &gstart, NULL, &codes, &scale, NULL);
    if (st != QN_OK) return st;
    for (int64_t g = 0; g <= G; g++) gstart[g] = (int32_t)(g * w->blocksize);
    for (int64_t n = 0; n < w->n; n++) {
        for (int64_t k = 0; k < w->k; k++) qn_lutq_set_code(codes, w->k, 4, n, k, code_at(w, n * w->k + k));
        for (int64_t g = 0; g < G; g++) scale[n * G + g] = qn_bnb4_absmax(w, n * G + g);
    }
    for (int i = 0; i < 16; i++) out->lut[i] = rdf(w->quant_map, i);
    out->lut_identity = false;
    out->round = w->dtype;
    return QN_OK;
}
