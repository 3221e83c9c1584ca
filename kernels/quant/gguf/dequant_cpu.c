/* dequant_cpu.c — the per-ISA dequantizers of the kernel table: the reference formulas of
 * gguf_dequant.h compiled with this ISA's flags (the auto-vectoriser does the rest), plus an F16C
 * path for F16 rows. Results are bit-identical to the _ref functions (formats.md §2.2: every product
 * is exact, and no fp-contract is in effect under -std=c11). */
#include "kernels/cpu/isa.h"
#include "kernels/quant/gguf/gguf_dequant.h"

#define QN_DEF_DEQUANT_ISA(t) \
    static void dequant_##t(const void *src, float *dst, int64_t n) { qn_dequant_##t##_impl(src, dst, n); }

QN_DEF_DEQUANT_ISA(f32)
QN_DEF_DEQUANT_ISA(bf16)
QN_DEF_DEQUANT_ISA(q4_0)
QN_DEF_DEQUANT_ISA(q4_1)
QN_DEF_DEQUANT_ISA(q5_0)
QN_DEF_DEQUANT_ISA(q5_1)
QN_DEF_DEQUANT_ISA(q8_0)
QN_DEF_DEQUANT_ISA(q8_1)
QN_DEF_DEQUANT_ISA(q2_k)
QN_DEF_DEQUANT_ISA(q3_k)
QN_DEF_DEQUANT_ISA(q4_k)
QN_DEF_DEQUANT_ISA(q5_k)
QN_DEF_DEQUANT_ISA(q6_k)
QN_DEF_DEQUANT_ISA(q8_k)

static void dequant_f16(const void *src, float *dst, int64_t n) {
    const uint16_t *x = src;
    int64_t i = 0;
#if defined(QN_SIMD_X86)
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
#endif
    for (; i < n; i++) dst[i] = qn_cpu_h2f(x[i]);
}

void QN_ISA_FN(qn_cpu_fill_dequant)(qn_cpu_kernels *k) {
    k->dequant[QN_QFORMAT_F32] = dequant_f32;
    k->dequant[QN_QFORMAT_F16] = dequant_f16;
    k->dequant[QN_QFORMAT_BF16] = dequant_bf16;
    k->dequant[QN_QFORMAT_Q4_0] = dequant_q4_0;
    k->dequant[QN_QFORMAT_Q4_1] = dequant_q4_1;
    k->dequant[QN_QFORMAT_Q5_0] = dequant_q5_0;
    k->dequant[QN_QFORMAT_Q5_1] = dequant_q5_1;
    k->dequant[QN_QFORMAT_Q8_0] = dequant_q8_0;
    k->dequant[QN_QFORMAT_Q8_1] = dequant_q8_1;
    k->dequant[QN_QFORMAT_Q2_K] = dequant_q2_k;
    k->dequant[QN_QFORMAT_Q3_K] = dequant_q3_k;
    k->dequant[QN_QFORMAT_Q4_K] = dequant_q4_k;
    k->dequant[QN_QFORMAT_Q5_K] = dequant_q5_k;
    k->dequant[QN_QFORMAT_Q6_K] = dequant_q6_k;
    k->dequant[QN_QFORMAT_Q8_K] = dequant_q8_k;
}
