/* nf4_quant.c — bitsandbytes NF4 blockwise quantization and double quant (model/nf4_quant.h). Follows the
 * reference (default) backend: scaled = clamp(x · (1 / absmax), −1, 1), code = argmin |scaled − map|. */
#include "model/nf4_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant/nf4/nf4_format.h"

void qn_nf4_result_free(qn_nf4_result *r) {
    if (!r) return;
    free(r->codes), free(r->absmax), free(r->absmax_q), free(r->nested_absmax);
    memset(r, 0, sizeof *r);
}

uint8_t qn_nf4_nearest(float x) {
    uint8_t best = 0;
    float bd = fabsf(x - QN_BNB4_NF4_MAP[0]);
    for (int c = 1; c < 16; c++) {
        const float d = fabsf(x - QN_BNB4_NF4_MAP[c]);
        if (d < bd) bd = d, best = (uint8_t)c;
    }
    return best;
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* torch.linspace(start, end, steps, dtype=float32) on the CPU: the first half counts up from start, the second
 * half down from end, in float. */
static float linspace_at(float start, float end, int64_t steps, int64_t i) {
    const float step = (end - start) / (float)(steps - 1);
    return i < steps / 2 ? start + step * (float)i : end - step * (float)(steps - i - 1);
}

void qn_nf4_dynamic_map(float map[256]) {
    int n = 0;
    for (int i = 0; i < 7; i++) { /* max_exponent_bits 7, signed: 2^i + 1 boundaries per exponent */
        const int64_t items = ((int64_t)1 << i) + 1;
        const float scale = (float)pow(10.0, -6 + i);
        for (int64_t j = 0; j + 1 < items; j++) {
            const float m = (linspace_at(0.1f, 1.0f, items, j) + linspace_at(0.1f, 1.0f, items, j + 1)) / 2.0f;
            map[n++] = scale * m;
            map[n++] = -(scale * m);
        }
    }
    map[n++] = 0.0f;
    map[n++] = 1.0f;
    while (n < 256) map[n++] = 0.0f;
    qsort(map, 256, sizeof(float), cmp_float);
}

qn_status qn_nf4_quantize(const float *w, int64_t numel, bool double_quant, qn_nf4_result *out, qn_error *err) {
    memset(out, 0, sizeof *out);
    if (!w || numel <= 0) return qn_error_set(err, QN_ERR_INVALID_ARG, "nf4: empty weight");
    const int64_t bs = QN_NF4_BLOCKSIZE, nb = (numel + bs - 1) / bs;
    out->numel = numel, out->blocksize = (int32_t)bs, out->n_blocks = nb;
    out->codes = calloc((size_t)(numel + 1) / 2, 1);
    out->absmax = malloc(sizeof(float) * (size_t)nb);
    if (!out->codes || !out->absmax) goto nomem;
    for (int64_t b = 0; b < nb; b++) {
        const int64_t e0 = b * bs, e1 = e0 + bs < numel ? e0 + bs : numel;
        float am = 0;
        for (int64_t e = e0; e < e1; e++) am = fabsf(w[e]) > am ? fabsf(w[e]) : am;
        out->absmax[b] = am;
        const float inv = 1.0f / am;
        for (int64_t e = e0; e < e1; e++) {
            float s = w[e] * inv;
            s = s < -1 ? -1 : s > 1 ? 1 : s;
            const uint8_t c = am > 0 ? qn_nf4_nearest(s) : 7; /* an all-zero block: code 0.0 */
            out->codes[e >> 1] |= (e & 1) ? c : (uint8_t)(c << 4);
        }
    }
    if (!double_quant) return QN_OK;
    out->nested = true;
    out->n_nested = (nb + QN_NF4_NESTED_BLOCKSIZE - 1) / QN_NF4_NESTED_BLOCKSIZE;
    out->absmax_q = malloc((size_t)nb);
    out->nested_absmax = malloc(sizeof(float) * (size_t)out->n_nested);
    if (!out->absmax_q || !out->nested_absmax) goto nomem;
    qn_nf4_dynamic_map(out->nested_map);
    double sum = 0;
    for (int64_t b = 0; b < nb; b++) sum += out->absmax[b];
    const float off = (float)(sum / (double)nb);
    out->nested_offset = off;
    for (int64_t g = 0; g < out->n_nested; g++) {
        const int64_t b0 = g * QN_NF4_NESTED_BLOCKSIZE, b1 = b0 + QN_NF4_NESTED_BLOCKSIZE < nb ? b0 + QN_NF4_NESTED_BLOCKSIZE : nb;
        float am = 0;
        for (int64_t b = b0; b < b1; b++) am = fabsf(out->absmax[b] - off) > am ? fabsf(out->absmax[b] - off) : am;
        out->nested_absmax[g] = am;
        const float inv = 1.0f / am;
        for (int64_t b = b0; b < b1; b++) {
            float s = am > 0 ? (out->absmax[b] - off) * inv : 0.0f;
            s = s < -1 ? -1 : s > 1 ? 1 : s;
            int best = 0;
            float bd = fabsf(s - out->nested_map[0]);
            for (int c = 1; c < 256; c++) {
                const float d = fabsf(s - out->nested_map[c]);
                if (d < bd) bd = d, best = c;
            }
            out->absmax_q[b] = (uint8_t)best;
        }
    }
    return QN_OK;
nomem:
    qn_nf4_result_free(out);
    return qn_error_set(err, QN_ERR_NOMEM, "nf4: out of memory (%lld elements)", (long long)numel);
}
