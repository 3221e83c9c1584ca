/* vexp_simd.h — the vector exp forms of vexp.h for the *_cpu.c files (after kernels/cpu/isa.h):
 *   QN_VEXP_FORM_ISA      the form this ISA object computes (what llama.cpp built for the same ISA uses);
 *   QN_VEXP_WIDTH_ISA     floats per ggml vector on this ISA (decides which elements of a SiLU row use libm);
 *   qn_vexp_row_isa(...)  y[i] = e^(x[i] - shift) for i < n in that form, every element (masked or
 *                         reference tail, so the result does not depend on n's alignment).
 * Lane results equal qn_vexp_ref(x - shift, QN_VEXP_FORM_ISA) bit for bit (tests/kernels/test_vexp.c). */
#ifndef QN_VEXP_SIMD_H
#define QN_VEXP_SIMD_H

#include <math.h>

#include "kernels/ops/vexp.h"

#if defined(QN_SIMD_X86_512)
#define QN_VEXP_FORM_ISA QN_VEXP_SCALEF
#define QN_VEXP_WIDTH_ISA 16
#elif defined(QN_SIMD_X86)
#define QN_VEXP_FORM_ISA QN_VEXP_FMA
#define QN_VEXP_WIDTH_ISA 8
#elif defined(QN_SIMD_NEON)
#define QN_VEXP_FORM_ISA QN_VEXP_FMA /* lanes by the reference (fmaf is one instruction on aarch64) */
#define QN_VEXP_WIDTH_ISA 4
#else
#define QN_VEXP_FORM_ISA QN_VEXP_LIBM
#define QN_VEXP_WIDTH_ISA 1
#endif

#if defined(QN_SIMD_X86_512)
/* SCALEF form, 16 lanes. */
QN_INLINE __m512 qn_vexp16(__m512 x) {
    const __m512 shifter = _mm512_set1_ps(QN_VEXP_SHIFTER);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(QN_VEXP_LOG2E), shifter);
    const __m512 n = _mm512_sub_ps(z, shifter);
    const __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(QN_VEXP_LN2_LO),
                                      _mm512_fnmadd_ps(n, _mm512_set1_ps(QN_VEXP_LN2_HI), x));
    const __m512 r2 = _mm512_mul_ps(r, r);
    const __m512 hi = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(QN_VEXP_C5), r, _mm512_set1_ps(QN_VEXP_C4)), r2,
                                      _mm512_fmadd_ps(_mm512_set1_ps(QN_VEXP_C3), r, _mm512_set1_ps(QN_VEXP_C2)));
    const __m512 p = _mm512_fmadd_ps(hi, r2, _mm512_fmadd_ps(_mm512_set1_ps(QN_VEXP_C1), r, _mm512_set1_ps(1.0f)));
    const __m512 y = _mm512_scalef_ps(p, n);
    const __mmask16 far = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192.0f), _CMP_GT_OQ);
    if (!far) return y;
    const __mmask16 neg = _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ);
    return _mm512_mask_blend_ps(far, y, _mm512_mask_blend_ps(neg, _mm512_set1_ps(INFINITY), _mm512_setzero_ps()));
}
#endif

#if defined(QN_SIMD_X86)
/* FMA form, 8 lanes. */
QN_INLINE __m256 qn_vexp8(__m256 x) {
    const __m256 shifter = _mm256_set1_ps(QN_VEXP_SHIFTER);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(QN_VEXP_LOG2E), shifter);
    const __m256 n = _mm256_sub_ps(z, shifter);
    const __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(QN_VEXP_LN2_LO),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(QN_VEXP_LN2_HI), x));
    const __m256 r2 = _mm256_mul_ps(r, r);
    const __m256 hi = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(QN_VEXP_C5), r, _mm256_set1_ps(QN_VEXP_C4)), r2,
                                      _mm256_fmadd_ps(_mm256_set1_ps(QN_VEXP_C3), r, _mm256_set1_ps(QN_VEXP_C2)));
    const __m256 q = _mm256_fmadd_ps(hi, r2, _mm256_mul_ps(_mm256_set1_ps(QN_VEXP_C1), r));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1.0f))));
    const __m256 an = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
    const __m256 far = _mm256_cmp_ps(an, _mm256_set1_ps(126.0f), _CMP_GT_OQ);
    const __m256 near_y = _mm256_fmadd_ps(q, k, k);
    if (!_mm256_movemask_ps(far)) return near_y;
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32((int)0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256 far_y = _mm256_mul_ps(_mm256_fmadd_ps(s2, q, s2), s1);
    const __m256 huge = _mm256_cmp_ps(an, _mm256_set1_ps(192.0f), _CMP_GT_OQ);
    return _mm256_blendv_ps(_mm256_blendv_ps(near_y, far_y, far), _mm256_mul_ps(s1, s1), huge);
}
#endif

QN_INLINE void qn_vexp_row_isa(int64_t n, float *y, const float *x, float shift) {
#if defined(QN_SIMD_X86_512)
    const __m512 s = _mm512_set1_ps(shift);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, qn_vexp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, qn_vexp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
    }
#elif defined(QN_SIMD_X86)
    const __m256 s = _mm256_set1_ps(shift);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, qn_vexp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s)));
    for (; i < n; i++) y[i] = qn_vexp_ref(x[i] - shift, QN_VEXP_FORM_ISA);
#else
    for (int64_t i = 0; i < n; i++) y[i] = qn_vexp_ref(x[i] - shift, QN_VEXP_FORM_ISA);
#endif
}

#endif
