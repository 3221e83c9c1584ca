/* q4k_tc.c — the host twin of the Q4_K tensor-core GEMM's weight values (q4k_tc.h). */
#include "kernels/quant/gguf/q4k_tc.h"

#include <math.h>

#include "kernels/common/half.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/gguf_dequant.h"

/* v rounded to fp16 bits, to nearest even, once (v in fp16's range or rounding to infinity) */
static uint16_t f64_to_f16(double v) {
    const double a = fabs(v);
    int e;
    (void)frexp(a, &e); /* a = m 2^e, m in [0.5, 1) */
    const double quantum = ldexp(1.0, (e - 1 >= -14 ? e - 1 : -14) - 10);
    const double r = nearbyint(a / quantum) * quantum; /* exact in float and fp16 (or past fp16's range) */
    return qn_f32_to_f16((float)(v < 0 ? -r : r));
}

qn_status qn_q4k_tc_dequant_host(const void *w, int64_t n, int64_t k, uint16_t *out) {
    if (n < 0 || k <= 0 || k % QN_QK_K) return QN_ERR_SHAPE;
    if (n > 0 && (!w || !out)) return QN_ERR_INVALID_ARG;
    const qn_block_q4_k *b = (const qn_block_q4_k *)w;
    for (int64_t ib = 0; ib < n * (k / QN_QK_K); ib++, out += QN_QK_K) {
        uint8_t sc[8], mn[8];
        qn_q4_k_scales(b[ib].scales, sc, mn);
        const float d = qn_f16_to_f32(b[ib].d), dmin = qn_f16_to_f32(b[ib].dmin);
        for (int j = 0; j < 8; j++) { /* sub-block j: columns 32 j .. 32 j + 31 */
            const double S = qn_f16_to_f32(qn_f32_to_f16(d * (float)sc[j]));      /* exact product, one rounding */
            const double B = qn_f16_to_f32(qn_f32_to_f16(-(dmin * (float)mn[j])));
            for (int c = 0; c < 32; c++) {
                const uint8_t byte = b[ib].qs[32 * (j / 2) + c];
                const int q = j & 1 ? byte >> 4 : byte & 15;
                out[32 * j + c] = f64_to_f16(S * q + B); /* S q + B exact in double: the FMA's one rounding */
            }
        }
    }
    return QN_OK;
}
