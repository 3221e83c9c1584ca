/* lutq_x86.h — 256-bit code decoding of the repacked GPTQ / AWQ / bnb layout (lutq.h), shared by lutq_cpu.c's AVX2
 * kernel and lutq_gemm_cpu.c's panel fill (AVX2 and AVX-512 objects: both are built with -mavx2 -mfma). For the
 * *_cpu.c files of x86 ISAs only (after isa.h). */
#ifndef QN_LUTQ_X86_H
#define QN_LUTQ_X86_H

#if !defined(QN_SIMD_X86)
#error "lutq_x86.h is for the x86 ISA objects"
#endif

typedef struct lq256_lut {
    __m256 lo, hi; /* a 16-entry table's values 0..7, 8..15 */
    int ident;     /* lut[c] == c: codes are converted, not looked up */
} lq256_lut;

QN_INLINE lq256_lut lq256_lut_load(const float *lut, int ident) {
    return (lq256_lut){_mm256_loadu_ps(lut), _mm256_loadu_ps(lut + 8), ident};
}

/* 8 4-bit codes (one per i32 lane) -> values: identity tables convert, others two permutevar8x32 and a blend
 * (c < 8: the low half) */
QN_INLINE __m256 lq256_lut16(__m256i ci, const lq256_lut *k) {
    if (k->ident) return _mm256_cvtepi32_ps(ci);
    const __m256 lo = _mm256_permutevar8x32_ps(k->lo, ci), hi = _mm256_permutevar8x32_ps(k->hi, ci);
    return _mm256_blendv_ps(hi, lo, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(8), ci)));
}

/* the 4-bit 16-column block at blk (8 bytes) -> columns 0..7 (va) and 8..15 (vb): & 15 and >> 4 of each byte */
QN_INLINE void lq256_dec4(const uint8_t *blk, const lq256_lut *k, __m256 *va, __m256 *vb) {
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)blk));
    *va = lq256_lut16(_mm256_and_si256(b, _mm256_set1_epi32(15)), k);
    *vb = lq256_lut16(_mm256_srli_epi32(b, 4), k);
}

/* 8 8-bit codes at p -> values (identity: a conversion; else a gather from the 256-entry table) */
QN_INLINE __m256 lq256_dec8(const uint8_t *p, int ident, const float *lut) {
    const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    return ident ? _mm256_cvtepi32_ps(c) : _mm256_i32gather_ps(lut, c, 4);
}

#endif
