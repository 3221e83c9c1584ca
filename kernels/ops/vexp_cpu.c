/* vexp_cpu.c — per-ISA entries of the exp-based row ops (vexp.h): the exp row of the softmax and the
 * SiLU-gate product, in the form llama.cpp's CPU backend uses on the same ISA. Compiled once per ISA. */
#include "kernels/cpu/isa.h"
#include "kernels/ops/vexp_simd.h"

/* y[i] = e^(x[i] - shift);  x, y: [n] (may alias) */
static void exp_row(int64_t n, float *y, const float *x, float shift) { qn_vexp_row_isa(n, y, x, shift); }

/* g[i] = g[i] / (1 + e^-g[i]) * u[i]: whole vectors in the ISA form, the leftover elements with libm;
 * g, u: [n] */
static void silu_mul(int64_t n, float *g, const float *u) {
#if defined(QN_SIMD_X86)
    int64_t i = 0;
#endif
#if defined(QN_SIMD_X86_512)
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i);
        const __m512 e = qn_vexp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        const __m512 s = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(s, _mm512_loadu_ps(u + i)));
    }
#elif defined(QN_SIMD_X86)
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 e = qn_vexp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        const __m256 s = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
#endif
#if defined(QN_SIMD_X86)
    qn_silu_mul_ref(g + i, u + i, n - i, QN_VEXP_LIBM, 1); /* fewer than a vector left */
#else
    qn_silu_mul_ref(g, u, n, QN_VEXP_FORM_ISA, QN_VEXP_WIDTH_ISA); /* NEON lanes by the reference; scalar: libm */
#endif
}

void QN_ISA_FN(qn_cpu_fill_vexp)(qn_cpu_kernels *k) {
    k->vexp_form = QN_VEXP_FORM_ISA;
    k->vexp_width = QN_VEXP_WIDTH_ISA;
    k->exp_row = exp_row;
    k->silu_mul = silu_mul;
}
