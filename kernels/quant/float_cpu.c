/* float_cpu.c — F32·F32, F16·F16 and BF16·BF16 dot products and the F32 -> F16/BF16/F32 activation
 * converters, compiled once per ISA. fp16×fp16 and bf16×bf16 products are exact in fp32, so the only
 * rounding is in the sums: the scalar path sums in double, the SIMD paths (AVX2, AVX-512, NEON) in 4
 * independent fp32 vectors (ILP for the FMA latency) reduced at the end; n need not be a multiple of anything. */
#include <string.h>

#include "kernels/cpu/isa.h"
#include "kernels/quant/gguf/gguf_ref.h"

/* ------------------------------------------------------------------ scalar (every ISA) */

static void dot_f32_scalar(int64_t n, float *out, const void *wv, const void *av) {
    const float *w = wv, *a = av;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)w[i] * (double)a[i];
    *out = (float)s;
}

static void dot_f16_scalar(int64_t n, float *out, const void *wv, const void *av) {
    const uint16_t *w = wv, *a = av;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)(qn_cpu_h2f(w[i]) * qn_cpu_h2f(a[i]));
    *out = (float)s;
}

static void dot_bf16_scalar(int64_t n, float *out, const void *wv, const void *av) {
    const uint16_t *w = wv, *a = av;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)(qn_bf16_to_f32(w[i]) * qn_bf16_to_f32(a[i]));
    *out = (float)s;
}

/* One body for the three element types and every SIMD ISA: 4 accumulators of QN_VW lanes (qn_vf, QN_VFMA(a, b, c)
 * = a·b + c, ... defined per ISA below, before use), then a scalar tail. */
#define QN_DEF_DOT_FLOAT(name, T, LOAD, TO_F32)                                              \
    static void name(int64_t n, float *out, const void *wv, const void *av) {              \
        const T *w = wv, *a = av;                                                          \
        qn_vf acc0 = QN_VZERO(), acc1 = QN_VZERO(), acc2 = QN_VZERO(), acc3 = QN_VZERO(); \
        int64_t i = 0;                                                                     \
        for (; i + 4 * QN_VW <= n; i += 4 * QN_VW) {                                       \
            acc0 = QN_VFMA(LOAD(w + i), LOAD(a + i), acc0);                                \
            acc1 = QN_VFMA(LOAD(w + i + QN_VW), LOAD(a + i + QN_VW), acc1);                \
            acc2 = QN_VFMA(LOAD(w + i + 2 * QN_VW), LOAD(a + i + 2 * QN_VW), acc2);        \
            acc3 = QN_VFMA(LOAD(w + i + 3 * QN_VW), LOAD(a + i + 3 * QN_VW), acc3);        \
        }                                                                                  \
        for (; i + QN_VW <= n; i += QN_VW) acc0 = QN_VFMA(LOAD(w + i), LOAD(a + i), acc0); \
        float s = QN_VHSUM(QN_VADD(QN_VADD(acc0, acc1), QN_VADD(acc2, acc3)));             \
        for (; i < n; i++) s += TO_F32(w[i]) * TO_F32(a[i]);                               \
        *out = s;                                                                          \
    }

#define QN_ID_F32(x) (x)

/* ------------------------------------------------------------------ x86: AVX2 and AVX-512 */
#if defined(QN_SIMD_X86)

#if defined(QN_SIMD_X86_512)
#define QN_VW 16
typedef __m512 qn_vf;
#define QN_VZERO() _mm512_setzero_ps()
#define QN_VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define QN_VADD(a, b) _mm512_add_ps(a, b)
#define QN_VHSUM(v) _mm512_reduce_add_ps(v)
#define QN_VLOAD_F32(p) _mm512_loadu_ps(p)
#define QN_VLOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define QN_VLOAD_BF16(p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#else
QN_INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define QN_VW 8
typedef __m256 qn_vf;
#define QN_VZERO() _mm256_setzero_ps()
#define QN_VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define QN_VADD(a, b) _mm256_add_ps(a, b)
#define QN_VHSUM(v) hsum256(v)
#define QN_VLOAD_F32(p) _mm256_loadu_ps(p)
#define QN_VLOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define QN_VLOAD_BF16(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#endif

QN_DEF_DOT_FLOAT(dot_f32_x86, float, QN_VLOAD_F32, QN_ID_F32)
QN_DEF_DOT_FLOAT(dot_f16_x86, uint16_t, QN_VLOAD_F16, qn_cpu_h2f)
QN_DEF_DOT_FLOAT(dot_bf16_x86, uint16_t, QN_VLOAD_BF16, qn_bf16_to_f32)

/* F32 -> F16 with the F16C unit: round to nearest even, as half.h (NaN payloads may differ). */
static void from_float_f16_x86(const float *x, void *dst, int64_t n) {
    uint16_t *y = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = qn_f32_to_f16(x[i]);
}

/* F32 -> BF16, round to nearest even on the bit pattern; NaN -> quiet NaN (same as half.h). */
static void from_float_bf16_x86(const float *x, void *dst, int64_t n) {
    uint16_t *y = dst;
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff), quiet = _mm256_set1_epi32(0x40);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        for (int h = 0; h < 2; h++) {
            const __m256 v = _mm256_loadu_ps(x + i + 8 * h);
            const __m256i u = _mm256_castps_si256(v);
            const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
            const __m256i rn = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16);
            const __m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
            const __m256i isnan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            r[h] = _mm256_blendv_epi8(rn, qn, isnan);
        }
        /* packus works per 128-bit lane: fix the qword order afterwards */
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
        _mm256_storeu_si256((__m256i *)(y + i), p);
    }
    for (; i < n; i++) y[i] = qn_f32_to_bf16(x[i]);
}

#endif /* QN_SIMD_X86 */

/* ------------------------------------------------------------------ arm64 NEON */
#if defined(QN_SIMD_NEON)

#define QN_VW 4
typedef float32x4_t qn_vf;
#define QN_VZERO() vdupq_n_f32(0.0f)
#define QN_VFMA(a, b, c) vfmaq_f32(c, a, b)
#define QN_VADD(a, b) vaddq_f32(a, b)
#define QN_VHSUM(v) vaddvq_f32(v)
#define QN_VLOAD_F32(p) vld1q_f32(p)
#define QN_VLOAD_F16(p) vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)))
#define QN_VLOAD_BF16(p) vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16))

QN_DEF_DOT_FLOAT(dot_f32_neon, float, QN_VLOAD_F32, QN_ID_F32)
QN_DEF_DOT_FLOAT(dot_f16_neon, uint16_t, QN_VLOAD_F16, qn_cpu_h2f)
QN_DEF_DOT_FLOAT(dot_bf16_neon, uint16_t, QN_VLOAD_BF16, qn_bf16_to_f32)

/* F32 -> F16 (FCVTN: round to nearest even under the default FPCR, as half.h; NaN payloads may differ). */
static void from_float_f16_neon(const float *x, void *dst, int64_t n) {
    uint16_t *y = dst;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) y[i] = qn_f32_to_f16(x[i]);
}

/* F32 -> BF16, round to nearest even on the bit pattern; NaN -> quiet NaN (same as half.h). */
static void from_float_bf16_neon(const float *x, void *dst, int64_t n) {
    uint16_t *y = dst;
    const uint32x4_t one = vdupq_n_u32(1), bias = vdupq_n_u32(0x7fff), quiet = vdupq_n_u32(0x40);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        const uint32x4_t u = vreinterpretq_u32_f32(v);
        const uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), one);
        const uint32x4_t rn = vshrq_n_u32(vaddq_u32(u, vaddq_u32(bias, lsb)), 16);
        const uint32x4_t qn = vorrq_u32(vshrq_n_u32(u, 16), quiet);
        const uint32x4_t isnum = vceqq_f32(v, v);
        vst1_u16(y + i, vmovn_u32(vbslq_u32(isnum, rn, qn)));
    }
    for (; i < n; i++) y[i] = qn_f32_to_bf16(x[i]);
}

#endif /* QN_SIMD_NEON */

/* ------------------------------------------------------------------ table */

void QN_ISA_FN(qn_cpu_fill_float)(qn_cpu_kernels *k) {
    k->vec_dot[QN_QFORMAT_F32] = dot_f32_scalar;
    k->vec_dot[QN_QFORMAT_F16] = dot_f16_scalar;
    k->vec_dot[QN_QFORMAT_BF16] = dot_bf16_scalar;
    k->from_float[QN_QFORMAT_F32] = qn_quantize_row_f32_ref;
    k->from_float[QN_QFORMAT_F16] = qn_quantize_row_f16_ref;
    k->from_float[QN_QFORMAT_BF16] = qn_quantize_row_bf16_ref;
#if defined(QN_SIMD_X86)
    k->vec_dot[QN_QFORMAT_F32] = dot_f32_x86;
    k->vec_dot[QN_QFORMAT_F16] = dot_f16_x86;
    k->vec_dot[QN_QFORMAT_BF16] = dot_bf16_x86;
    k->from_float[QN_QFORMAT_F16] = from_float_f16_x86;
    k->from_float[QN_QFORMAT_BF16] = from_float_bf16_x86;
#elif defined(QN_SIMD_NEON)
    k->vec_dot[QN_QFORMAT_F32] = dot_f32_neon;
    k->vec_dot[QN_QFORMAT_F16] = dot_f16_neon;
    k->vec_dot[QN_QFORMAT_BF16] = dot_bf16_neon;
    k->from_float[QN_QFORMAT_F16] = from_float_f16_neon;
    k->from_float[QN_QFORMAT_BF16] = from_float_bf16_neon;
#endif
}
