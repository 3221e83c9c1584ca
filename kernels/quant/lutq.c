/* lutq.c — buffer layout and scalar references of the repacked GPTQ/AWQ/bnb layout (lutq.h). */
#include "kernels/quant/lutq.h"

#include <string.h>

#include "kernels/common/half.h"

#define QN_LUTQ_ALIGN 64

static size_t align_up(size_t x) { return (x + QN_LUTQ_ALIGN - 1) & ~(size_t)(QN_LUTQ_ALIGN - 1); }

size_t qn_lutq_bytes(int64_t k, int64_t n, int64_t n_groups, int32_t code_bits, bool has_perm, bool has_zero) {
    size_t b = align_up(sizeof(int32_t) * (size_t)(n_groups + 1));
    if (has_perm) b += align_up(sizeof(int32_t) * (size_t)k);
    b += align_up((size_t)n * (size_t)qn_lutq_row_bytes(k, code_bits));
    b += align_up(sizeof(float) * (size_t)n * (size_t)n_groups) * (has_zero ? 2 : 1);
    return b + QN_LUTQ_ALIGN; /* slack to align an unaligned buffer start */
}

qn_status qn_lutq_init(qn_lutq_weight *w, void *buf, int64_t k, int64_t n, int64_t n_groups, int32_t code_bits,
                       bool has_perm, bool has_zero, int32_t **gstart, int32_t **perm, uint8_t **codes,
                       float **scale, float **zero) {
    if (!w || !buf || k <= 0 || n <= 0 || n_groups <= 0 || n_groups > k || (code_bits != 4 && code_bits != 8))
        return QN_ERR_INVALID_ARG;
    memset(w, 0, sizeof *w);
    uint8_t *p = (uint8_t *)(((uintptr_t)buf + QN_LUTQ_ALIGN - 1) & ~(uintptr_t)(QN_LUTQ_ALIGN - 1));
    int32_t *gs = (int32_t *)p;
    p += align_up(sizeof(int32_t) * (size_t)(n_groups + 1));
    int32_t *pm = NULL;
    if (has_perm) {
        pm = (int32_t *)p;
        p += align_up(sizeof(int32_t) * (size_t)k);
    }
    uint8_t *cd = p;
    const size_t code_bytes = (size_t)n * (size_t)qn_lutq_row_bytes(k, code_bits);
    memset(cd, 0, code_bytes);
    p += align_up(code_bytes);
    float *sc = (float *)p;
    p += align_up(sizeof(float) * (size_t)n * (size_t)n_groups);
    float *zr = has_zero ? (float *)p : NULL;
    w->k = k, w->n = n, w->code_bits = code_bits, w->n_groups = n_groups;
    w->gstart = gs, w->perm = pm, w->codes = cd, w->scale = sc, w->zero = zr;
    for (int i = 0; i < 256; i++) w->lut[i] = (float)i;
    w->lut_identity = true;
    if (gstart) *gstart = gs;
    if (perm) *perm = pm;
    if (codes) *codes = cd;
    if (scale) *scale = sc;
    if (zero) *zero = zr;
    return QN_OK;
}

static float round_to(qn_lutq_round r, float v) {
    switch (r) {
    case QN_LUTQ_ROUND_F16:
        return qn_f16_to_f32(qn_f32_to_f16(v));
    case QN_LUTQ_ROUND_BF16:
        return qn_bf16_to_f32(qn_f32_to_bf16(v));
    default:
        return v;
    }
}

void qn_lutq_dequant_ref(const qn_lutq_weight *w, float *out) {
    for (int64_t r = 0; r < w->n; r++)
        for (int64_t g = 0; g < w->n_groups; g++) {
            const float s = w->scale[r * w->n_groups + g];
            for (int64_t j = w->gstart[g]; j < w->gstart[g + 1]; j++) {
                const float q = w->lut[qn_lutq_code(w, r, j)];
                /* no zero point: the peers multiply the table value itself (keeps the sign of -0) */
                const float v = w->zero ? s * (q - w->zero[r * w->n_groups + g]) : q * s;
                out[r * w->k + (w->perm ? w->perm[j] : j)] = round_to(w->round, v);
            }
        }
}

void qn_lutq_matmul_ref(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, double *y,
                        int64_t ldy) {
    for (int64_t t = 0; t < n_tokens; t++)
        for (int64_t r = 0; r < w->n; r++) {
            double acc = 0.0;
            for (int64_t g = 0; g < w->n_groups; g++) {
                const double s = w->scale[r * w->n_groups + g], z = w->zero ? w->zero[r * w->n_groups + g] : 0.0;
                for (int64_t j = w->gstart[g]; j < w->gstart[g + 1]; j++)
                    acc += s * ((double)w->lut[qn_lutq_code(w, r, j)] - z) * (double)x[t * ldx + (w->perm ? w->perm[j] : j)];
            }
            y[t * ldy + r] = acc;
        }
}
