/* ref_quant_gguf.c — see ref_quant_gguf.h. */
#include "ref_quant_gguf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/gguf/gguf_blocks.h"

static uint16_t rand_f16(qn_rng *rng, int wide) {
    if (wide) {
        uint16_t h = (uint16_t)(qn_rng_u64(rng) >> 48);
        if ((h & 0x7c00u) == 0x7c00u) h ^= 0x4000u; /* inf/nan exponent -> finite */
        return h;
    }
    const float mag = ldexpf(qn_rng_uniform(rng, 1.0f, 2.0f), -4 - (int)(qn_rng_u64(rng) % 7));
    return qn_f32_to_f16((qn_rng_u64(rng) & 1) ? -mag : mag);
}

void qn_ref_gguf_random_blocks(qn_rng *rng, qn_qformat fmt, void *dst, int64_t n_elems, int wide) {
    const qn_qformat_traits *t = &QN_QFORMATS[fmt];
    const int64_t nb = n_elems / t->block_elems;
    qn_rng_fill_bytes(rng, dst, (size_t)nb * (size_t)t->block_bytes);
    uint8_t *p = dst;
    for (int64_t i = 0; i < nb; i++, p += t->block_bytes) {
        uint16_t h[2] = {rand_f16(rng, wide), rand_f16(rng, wide)};
        switch (fmt) {
        case QN_QFORMAT_F32: {
            float v = qn_rng_normal(rng);
            if (wide) {
                uint32_t u = (uint32_t)qn_rng_u64(rng);
                if ((u & 0x7f800000u) == 0x7f800000u) u ^= 0x40000000u;
                memcpy(&v, &u, 4);
            }
            memcpy(p, &v, 4);
            break;
        }
        case QN_QFORMAT_F16:
            memcpy(p, wide ? &h[0] : &(uint16_t){qn_f32_to_f16(qn_rng_normal(rng))}, 2);
            break;
        case QN_QFORMAT_BF16: {
            uint16_t b = qn_f32_to_bf16(qn_rng_normal(rng));
            if (wide) {
                b = (uint16_t)(qn_rng_u64(rng) >> 48);
                if ((b & 0x7f80u) == 0x7f80u) b ^= 0x4000u;
            }
            memcpy(p, &b, 2);
            break;
        }
        case QN_QFORMAT_Q4_0: case QN_QFORMAT_Q5_0: case QN_QFORMAT_Q8_0:
            memcpy(p, h, 2); /* d @0 */
            break;
        case QN_QFORMAT_Q4_1: case QN_QFORMAT_Q5_1: case QN_QFORMAT_Q8_1: case QN_QFORMAT_Q4_K:
        case QN_QFORMAT_Q5_K:
            memcpy(p, h, 4); /* d @0, m/s/dmin @2 */
            break;
        case QN_QFORMAT_Q2_K:
            memcpy(p + offsetof(qn_block_q2_k, d), h, 4);
            break;
        case QN_QFORMAT_Q3_K:
            memcpy(p + offsetof(qn_block_q3_k, d), h, 2);
            break;
        case QN_QFORMAT_Q6_K:
            memcpy(p + offsetof(qn_block_q6_k, d), h, 2);
            break;
        case QN_QFORMAT_Q8_K: {
            const float d = wide ? qn_f16_to_f32(h[0]) : qn_rng_uniform(rng, 1e-3f, 1e-1f);
            memcpy(p, &d, 4);
            break;
        }
        default:
            break;
        }
    }
}

double qn_ref_gguf_dot(qn_qformat wfmt, const void *w, qn_qformat afmt, const void *a, int64_t n,
                       double *abs_sum) {
    float *wf = malloc((size_t)n * sizeof(float)), *af = malloc((size_t)n * sizeof(float));
    QN_QFORMATS[wfmt].dequant_ref(w, wf, n);
    QN_QFORMATS[afmt].dequant_ref(a, af, n);
    double s = 0.0, as = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double p = (double)wf[i] * (double)af[i];
        s += p;
        as += fabs(p);
    }
    free(wf);
    free(af);
    if (abs_sum) *abs_sum = as;
    return s;
}

double qn_ref_gguf_s_bound(qn_qformat wfmt, const void *w, const void *a, int64_t n) {
    if (wfmt != QN_QFORMAT_Q4_1 && wfmt != QN_QFORMAT_Q5_1) return 0.0;
    const qn_block_q8_1 *y = a;
    double bound = 0.0;
    for (int64_t ib = 0; ib < n / 32; ib++) {
        const uint16_t mh = wfmt == QN_QFORMAT_Q4_1 ? ((const qn_block_q4_1 *)w)[ib].m : ((const qn_block_q5_1 *)w)[ib].m;
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += y[ib].qs[j];
        const double exact = (double)qn_f16_to_f32(y[ib].d) * sum;
        bound += fabs((double)qn_f16_to_f32(mh)) * fabs((double)qn_f16_to_f32(y[ib].s) - exact);
    }
    return bound;
}
