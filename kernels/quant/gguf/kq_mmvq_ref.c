/* kq_mmvq_ref.c — host twin of the int8 decode path's activation quantizer (kq_mmvq.h): the same
 * f32 operations in the same order as the kernel (kq_mmvq.cu), so both write the same bits. */
#include <math.h>

#include "kernels/common/half.h"
#include "kernels/quant/gguf/kq_mmvq.h"

void qn_mmvq_quantize_x_ref(const uint16_t *x, int64_t n, int64_t K, int8_t *qs, qn_mmvq_xrec *rec) {
    const int64_t nb = n * (K / QN_MMVQ_QK); /* K % 32 == 0: blocks never straddle tokens */
    for (int64_t b = 0; b < nb; b++) {
        const uint16_t *xb = x + b * QN_MMVQ_QK;
        float amax = 0.0f;
        for (int i = 0; i < QN_MMVQ_QK; i++) amax = fmaxf(amax, fabsf(qn_f16_to_f32(xb[i])));
        const float d = amax / 127.0f;
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int s[2] = {0, 0};
        for (int i = 0; i < QN_MMVQ_QK; i++) {
            const float p = qn_f16_to_f32(xb[i]) * inv; /* a lone product: nothing to contract */
            const int q = (int)rintf(p);                 /* default rounding mode: half to even */
            qs[b * QN_MMVQ_QK + i] = (int8_t)q;
            s[i >= 16] += q;
        }
        rec[b].d = d;
        rec[b].s0 = (int16_t)s[0];
        rec[b].s1 = (int16_t)s[1];
    }
}
