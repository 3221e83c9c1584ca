/* kx8_x86.h — the x86 (AVX2, also in the AVX-512 objects) unpacking of the ×8 group blocks (kx8.h) shared by the
 * 8-row register tiles (kq_cpu.c) and the AVX-512 VNNI / AMX prefill paths (kq_x512_cpu.c): pshufb masks that
 * spread one byte of each row's dword, the rows' fp16 headers, and each format's scales and codes step by step. Also
 * the 8-row tiles' matmul_x8 entry points, which the prefill paths call for 4 tokens or fewer. Included only by
 * per-ISA *_cpu.c files (static inline functions; QN_ISA_FN names). */
#ifndef QN_KX8_X86_H
#define QN_KX8_X86_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu/isa.h"
#include "kernels/quant/gguf/kx8.h"

#if defined(QN_SIMD_X86)

/* pshufb mask putting byte b0 of each dword into its i16 lane 0 and byte b1 into lane 1 (zero-extended) */
QN_INLINE __m256i dword_bytes_mask(int b0, int b1) {
    const __m256i offs = _mm256_setr_epi8(0, 0, 0, 0, 4, 0, 4, 0, 8, 0, 8, 0, 12, 0, 12, 0,  //
                                          0, 0, 0, 0, 4, 0, 4, 0, 8, 0, 8, 0, 12, 0, 12, 0);
    return _mm256_add_epi8(_mm256_set1_epi32((int)((uint32_t)b0 | 0x80u << 8 | (uint32_t)b1 << 16 | 0x80u << 24)), offs);
}

/* pshufb mask putting byte b0 of each dword into the HIGH byte of its i16 lane 0 and b1 into lane 1's (low bytes
 * zero): an arithmetic >> 8 then sign-extends the two bytes to i16 */
QN_INLINE __m256i dword_bytes_mask_hi(int b0, int b1) {
    const __m256i offs = _mm256_setr_epi8(0, 0, 0, 0, 0, 4, 0, 4, 0, 8, 0, 8, 0, 12, 0, 12,  //
                                          0, 0, 0, 0, 0, 4, 0, 4, 0, 8, 0, 8, 0, 12, 0, 12);
    return _mm256_add_epi8(_mm256_set1_epi32((int)(0x80u | (uint32_t)b0 << 8 | 0x80u << 16 | (uint32_t)b1 << 24)), offs);
}

/* The 8 rows' fp16 of block ib at byte offset off (0: d, 2: dmin) of the block header in hdr lanes -> 8 floats */
QN_INLINE __m256 lanes_f16(__m256i hdr, int off) {
    const __m256i pick = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,  //
                                          0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i h = _mm256_shuffle_epi8(off ? _mm256_srli_epi32(hdr, 16) : hdr, pick);
    return _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(h, 0x08)));
}


/* Q4_K / Q5_K group block gv: the scale and min words (dword lanes: gv[0] = d | dmin << 16, gv[1..3] = the three
 * scale words of qn_q4_k_scale_words, unpacked lane by lane to sc0..3, sc4..7 and mn0..3, mn4..7, one 6-bit value
 * per byte) and the fp32 d, dmin */
QN_INLINE void q45kx8_head(const __m256i *gv, __m256i scw[2], __m256i mnw[2], __m256 *dw, __m256 *dminw) {
    const __m256i m6 = _mm256_set1_epi8(0x3f), m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x03);
    const __m256i w0 = _mm256_loadu_si256(gv + 1), w1 = _mm256_loadu_si256(gv + 2), w2 = _mm256_loadu_si256(gv + 3);
    scw[0] = _mm256_and_si256(w0, m6);
    scw[1] = _mm256_or_si256(_mm256_and_si256(w2, m4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w0, 6), m2), 4));
    mnw[0] = _mm256_and_si256(w1, m6);
    mnw[1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(w2, 4), m4),
                             _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w1, 6), m2), 4));
    const __m256i hdr = _mm256_loadu_si256(gv);
    *dw = lanes_f16(hdr, 0), *dminw = lanes_f16(hdr, 2);
}

/* the rows' scale of sub-block b in both i16 of each dword; the mins' pair p (mn_2p, mn_2p+1) */
QN_INLINE __m256i q45kx8_sc(const __m256i scw[2], int b) {
    return _mm256_shuffle_epi8(scw[b / 4], dword_bytes_mask(b % 4, b % 4));
}
QN_INLINE __m256i q45kx8_mnp(const __m256i mnw[2], int p) {
    return _mm256_shuffle_epi8(mnw[p / 2], dword_bytes_mask(2 * (p % 2), 2 * (p % 2) + 1));
}

/* The rows' codes of sub-block b, step s (elements 32b + 4s .. +3): chunk c = b / 2, low nibbles (even b), then high;
 * Q5_K adds qh bit b as bit 4 (qh bytes 4s..4s+3; within each byte: the shifts move no bit 4 across) */
QN_INLINE __m256i q45kx8_codes(bool q5, const __m256i *gv, int b, int s) {
    const __m256i v = _mm256_loadu_si256(gv + (q5 ? 12 : 4) + 8 * (b / 2) + s); /* qs from dword row 12 (Q5_K) / 4 */
    const __m256i q = _mm256_and_si256(b % 2 ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(15));
    if (!q5) return q;
    const __m256i h = _mm256_loadu_si256(gv + 4 + s);
    return _mm256_or_si256(q, _mm256_and_si256(b < 4 ? _mm256_slli_epi16(h, 4 - b) : b > 4 ? _mm256_srli_epi16(h, b - 4) : h,
                                               _mm256_set1_epi8(16)));
}


/* Q6_K×8: the rows' scale b sign-extended into both i16 of each dword (byte b % 4 to the high bytes, >> 8); the
 * scales' pair p (sc_2p, sc_2p+1) */
QN_INLINE __m256i q6kx8_sc(const __m256i *gv, int b) {
    return _mm256_srai_epi16(
        _mm256_shuffle_epi8(_mm256_loadu_si256(gv + QN_Q6KX8_SC_DWORD + b / 4), dword_bytes_mask_hi(b % 4, b % 4)), 8);
}
QN_INLINE __m256i q6kx8_scp(const __m256i *gv, int p) {
    return _mm256_srai_epi16(
        _mm256_shuffle_epi8(_mm256_loadu_si256(gv + QN_Q6KX8_SC_DWORD + p / 2), dword_bytes_mask_hi(2 * (p % 2), 2 * (p % 2) + 1)), 8);
}

/* The rows' codes of sub-block b = 8h + 2k + half, step s (elements 16b + 4s .. +3, as dot_q6_k_scalar walks them):
 * streams 0..2 give q_0..q_2 with one AND, q_3 gathers its 2-bit pieces (bits 6, 7) from the three */
QN_INLINE __m256i q6kx8_codes(const __m256i *gv, int b, int s) {
    const int h = b / 8, k = (b / 2) % 4, l = 16 * (b % 2) + 4 * s;
    const __m256i *st = gv + 24 * h + l / 4; /* stream c at st[8c] */
    if (k < 3) return _mm256_and_si256(_mm256_loadu_si256(st + 8 * k), _mm256_set1_epi8(63));
    const __m256i q = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256(st), 6), _mm256_set1_epi8(3)),
                                      _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256(st + 8), 4), _mm256_set1_epi8(12)));
    return _mm256_or_si256(q, _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256(st + 16), 2), _mm256_set1_epi8(48)));
}


/* Q3_K×8: code c_i (i < 8, a constant; kx8.h's re-encoding) of the 8 rows' 4 elements whose stream e dwords are st[8e]
 * (elements 32i + 16·half + 4s .. +3 for st = gv + 4·half + s): one AND, a shift and an AND, or for c6, c7 two pieces */
QN_INLINE __m256i q3kx8_code(const __m256i *st, const int i) {
    if (i < 6) {
        const __m256i e = _mm256_loadu_si256(st + 8 * (i / 2));
        return _mm256_and_si256(i % 2 ? _mm256_srli_epi16(e, 3) : e, _mm256_set1_epi8(7));
    } /* c6: bits 6, 7 of e0 and bit 6 of e2; c7: bits 6, 7 of e1 and bit 7 of e2 */
    return _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256(st + 8 * (i - 6)), 6), _mm256_set1_epi8(3)),
                           _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256(st + 16), i - 2), _mm256_set1_epi8(4)));
}

/* Q3_K×8 group block gv: the scales − 32 as i8 (byte b of word i: sub-block 4i + b), unpacked lane by lane as
 * qn_q3_k_scale_words does */
QN_INLINE void q3kx8_scales(const __m256i *gv, __m256i scw[4]) {
    const __m256i k4 = _mm256_set1_epi8(0x0f), k2 = _mm256_set1_epi8(0x03), c32 = _mm256_set1_epi8(32);
    const __m256i w0 = _mm256_loadu_si256(gv + QN_Q3KX8_SC_DWORD), w1 = _mm256_loadu_si256(gv + QN_Q3KX8_SC_DWORD + 1),
                  w2 = _mm256_loadu_si256(gv + QN_Q3KX8_SC_DWORD + 2);
    scw[0] = _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(w0, k4), _mm256_slli_epi32(_mm256_and_si256(w2, k2), 4)), c32);
    scw[1] = _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(w1, k4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w2, 2), k2), 4)), c32);
    scw[2] = _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(w0, 4), k4),
                                             _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w2, 4), k2), 4)), c32);
    scw[3] = _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(w1, 4), k4),
                                             _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w2, 6), k2), 4)), c32);
}

/* The 8-row tiles' matmul_x8 (cpu_kernels.h qn_matmul_x8_fn) of Q2_K .. Q6_K (kq_cpu.c) */
#define QN_KX8_MATMUL_DECL(name)                                                                                    \
    void QN_ISA_FN(name)(int64_t n, const void *w8, int64_t n_groups, const void *a, size_t as, int64_t n_tok,       \
                         float *y, int64_t ldy)
QN_KX8_MATMUL_DECL(qn_kx8_matmul_q2k);
QN_KX8_MATMUL_DECL(qn_kx8_matmul_q3k);
QN_KX8_MATMUL_DECL(qn_kx8_matmul_q4k);
QN_KX8_MATMUL_DECL(qn_kx8_matmul_q5k);
QN_KX8_MATMUL_DECL(qn_kx8_matmul_q6k);

#endif /* QN_SIMD_X86 */
#endif
