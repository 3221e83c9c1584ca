/* ref_lutq_synth.c — random lutq weights for the GPU block-format tests (ref_lutq_synth.h). */
#include "ref/ref_lutq_synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/nf4/nf4_format.h"

void *qn_ref_lutq_synth_make(const qn_ref_lutq_synth *s, int64_t K, int64_t N, qn_rng *rng, qn_lutq_weight *w) {
    const int64_t gs = s->group ? s->group : K, G = (K + gs - 1) / gs;
    void *buf = malloc(qn_lutq_bytes(K, N, G, s->code_bits, s->act, s->table == 0));
    if (!buf) return NULL;
    int32_t *gstart, *perm;
    uint8_t *codes;
    float *scale, *zero;
    if (qn_lutq_init(w, buf, K, N, G, s->code_bits, s->act, s->table == 0, &gstart, &perm, &codes, &scale, &zero) !=
        QN_OK) {
        free(buf);
        return NULL;
    }
    for (int64_t g = 0; g <= G; g++) gstart[g] = (int32_t)(g * gs < K ? g * gs : K);
    if (s->act) {
        qn_rng_permutation(rng, perm, K);
    }
    const uint32_t vmax = (1u << s->value_bits) - 1;
    for (int64_t r = 0; r < N; r++)
        for (int64_t j = 0; j < K; j++)
            qn_lutq_set_code(codes, K, s->code_bits, r, j, (uint32_t)(qn_rng_u64(rng) % (vmax + 1)));
    for (int64_t i = 0; i < N * G; i++) {
        float v = qn_rng_uniform(rng, 1e-4f, 0.05f) * ((qn_rng_u64(rng) & 3) ? 1.0f : -1.0f);
        if (s->table == 0) {
            /* checkpoint scales are fp16 or bf16 values (bf16 ones in fp16's normal range are exact in fp16) */
            v = s->round == QN_LUTQ_ROUND_BF16 ? qn_bf16_to_f32(qn_f32_to_bf16(v)) : qn_f16_to_f32(qn_f32_to_f16(v));
            zero[i] = (float)(qn_rng_u64(rng) % (vmax + 1));
        } else {
            v = fabsf(v) * 40.0f; /* absmax: any positive f32 */
        }
        scale[i] = v;
    }
    if (s->table) {
        memcpy(w->lut, s->table == 1 ? QN_BNB4_NF4_MAP : QN_BNB4_FP4_MAP, 16 * sizeof(float));
        w->lut_identity = false;
    }
    w->round = s->round;
    return buf;
}
