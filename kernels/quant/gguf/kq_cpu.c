/* kq_cpu.c — K-quant weight rows (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) against Q8_K activation rows, and
 * the Q8_K activation quantizer; compiled once per ISA. Per 256-element super-block the dot product
 * is an exact integer pair (isum = Σ_sub scale·Σ q_w q_a, summs = Σ_sub min·bsum_a), finished in fp32
 * by kq_term() exactly as in the scalar code, so the SIMD paths (which reach the same integers via
 * the Q8_K bsums) are bit-identical to the scalar path, and the x4 variants to the 1-token ones. Paths: scalar;
 * AVX2 (also in the AVX-512 objects) with register tiles of 8 rows × 1-4 tokens over the load-time repacked
 * Q2_K×8 .. Q6_K×8 groups (kx8.h, unpacked by kx8_x86.h; Q4_K also from plain rows), which the AVX-512 VNNI / AMX
 * prefill paths (kq_x512_cpu.c) fall back to for 4 tokens or fewer; NEON (SDOT in the neon_dotprod objects). */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kernels/cpu/isa.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/gguf_dequant.h"
#include "kernels/quant/gguf/gguf_ref.h"
#include "kernels/quant/gguf/kx8.h"
#include "kernels/quant/gguf/kx8_x86.h"


/* The fp32 finish shared by every path: d·isum − dmin·summs with d = d_a·d_w (f32 · f16). */
QN_INLINE float kq_term(float da, uint16_t dw, uint16_t dminw, int isum, int summs) {
    const float d = da * qn_cpu_h2f(dw), dmin = da * qn_cpu_h2f(dminw);
    return d * (float)isum - dmin * (float)summs;
}
QN_INLINE float kq_term_sym(float da, uint16_t dw, int isum) { return (da * qn_cpu_h2f(dw)) * (float)isum; }

/* ------------------------------------------------------------------ scalar (every ISA) */

static void dot_q2_k_scalar(int64_t n, float *out, const void *wv, const void *av) {
    const qn_block_q2_k *w = wv;
    const qn_block_q8_k *a = av;
    float sum = 0.0f;
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const qn_block_q2_k *x = &w[ib];
        const qn_block_q8_k *y = &a[ib];
        int summs = 0, isum = 0;
        for (int j = 0; j < 16; j++) summs += (x->scales[j] >> 4) * y->bsums[j];
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 4; j++)
                for (int half = 0; half < 2; half++) {
                    int s = 0;
                    for (int l = 16 * half; l < 16 * half + 16; l++)
                        s += ((x->qs[32 * h + l] >> (2 * j)) & 3) * y->qs[128 * h + 32 * j + l];
                    isum += (x->scales[8 * h + 2 * j + half] & 15) * s;
                }
        sum += kq_term(y->d, x->d, x->dmin, isum, summs);
    }
    *out = sum;
}

static void dot_q3_k_scalar(int64_t n, float *out, const void *wv, const void *av) {
    const qn_block_q3_k *w = wv;
    const qn_block_q8_k *a = av;
    float sum = 0.0f;
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const qn_block_q3_k *x = &w[ib];
        const qn_block_q8_k *y = &a[ib];
        uint8_t sc[16];
        qn_q3_k_scales(x->scales, sc);
        int isum = 0;
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 4; j++)
                for (int half = 0; half < 2; half++) {
                    int s = 0;
                    for (int l = 16 * half; l < 16 * half + 16; l++) {
                        const int lo = (x->qs[32 * h + l] >> (2 * j)) & 3;
                        const int q = lo - (((x->hmask[l] >> (4 * h + j)) & 1) ? 0 : 4);
                        s += q * y->qs[128 * h + 32 * j + l];
                    }
                    isum += (sc[8 * h + 2 * j + half] - 32) * s;
                }
        sum += kq_term_sym(y->d, x->d, isum);
    }
    *out = sum;
}

static void dot_q4_k_scalar(int64_t n, float *out, const void *wv, const void *av) {
    const qn_block_q4_k *w = wv;
    const qn_block_q8_k *a = av;
    float sum = 0.0f;
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const qn_block_q4_k *x = &w[ib];
        const qn_block_q8_k *y = &a[ib];
        uint8_t sc[8], mn[8];
        qn_q4_k_scales(x->scales, sc, mn);
        int isum = 0, summs = 0;
        for (int c = 0; c < 4; c++)
            for (int p = 0; p < 2; p++) {
                int s = 0;
                for (int l = 0; l < 32; l++) {
                    const int q = p ? x->qs[32 * c + l] >> 4 : x->qs[32 * c + l] & 15;
                    s += q * y->qs[64 * c + 32 * p + l];
                }
                const int b = 2 * c + p;
                isum += sc[b] * s;
                summs += mn[b] * (y->bsums[2 * b] + y->bsums[2 * b + 1]);
            }
        sum += kq_term(y->d, x->d, x->dmin, isum, summs);
    }
    *out = sum;
}

static void dot_q5_k_scalar(int64_t n, float *out, const void *wv, const void *av) {
    const qn_block_q5_k *w = wv;
    const qn_block_q8_k *a = av;
    float sum = 0.0f;
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const qn_block_q5_k *x = &w[ib];
        const qn_block_q8_k *y = &a[ib];
        uint8_t sc[8], mn[8];
        qn_q4_k_scales(x->scales, sc, mn);
        int isum = 0, summs = 0;
        for (int c = 0; c < 4; c++)
            for (int p = 0; p < 2; p++) {
                const int b = 2 * c + p;
                int s = 0;
                for (int l = 0; l < 32; l++) {
                    const int lo = p ? x->qs[32 * c + l] >> 4 : x->qs[32 * c + l] & 15;
                    s += (lo | ((x->qh[l] >> b) & 1) << 4) * y->qs[64 * c + 32 * p + l];
                }
                isum += sc[b] * s;
                summs += mn[b] * (y->bsums[2 * b] + y->bsums[2 * b + 1]);
            }
        sum += kq_term(y->d, x->d, x->dmin, isum, summs);
    }
    *out = sum;
}

static void dot_q6_k_scalar(int64_t n, float *out, const void *wv, const void *av) {
    const qn_block_q6_k *w = wv;
    const qn_block_q8_k *a = av;
    float sum = 0.0f;
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const qn_block_q6_k *x = &w[ib];
        const qn_block_q8_k *y = &a[ib];
        int isum = 0;
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++)
                for (int half = 0; half < 2; half++) {
                    int s = 0;
                    for (int l = 16 * half; l < 16 * half + 16; l++) {
                        const uint8_t b = x->ql[64 * h + 32 * (k & 1) + l];
                        const int lo = k < 2 ? b & 15 : b >> 4;
                        const int hi = (x->qh[32 * h + l] >> (2 * k)) & 3;
                        s += ((lo | hi << 4) - 32) * y->qs[128 * h + 32 * k + l];
                    }
                    isum += x->scales[8 * h + 2 * k + half] * s;
                }
        sum += kq_term_sym(y->d, x->d, isum);
    }
    *out = sum;
}

/* 1-token and 4-token entry points over one nt-token body (nt = 1 or 4, a compile-time constant). */
#define QN_DEF_KQ_WRAPPERS(name, CALL)                                                               \
    static void name(int64_t n, float *out, const void *w, const void *a) {                          \
        const uint8_t *a0 = a;                                                                       \
        const size_t as = 0;                                                                         \
        const int nt = 1;                                                                            \
        CALL;                                                                                        \
    }                                                                                                \
    static void name##_x4(int64_t n, float *out, const void *w, const void *a, size_t as) {          \
        const uint8_t *a0 = a;                                                                       \
        const int nt = 4;                                                                            \
        CALL;                                                                                        \
    }

/* ------------------------------------------------------------------ x86: AVX2 (AVX-512 reuses it) */
#if defined(QN_SIMD_X86)

QN_INLINE int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Shuffle mask picking i16 element 2k of a 128-bit lane into the whole low lane and element 2k+1
 * into the whole high lane: the scales of sub-blocks (2k, 2k+1) for a 32-element chunk whose two
 * 16-element halves sit in the two lanes of a maddubs result. Advance k by adding 4 to each byte. */
QN_INLINE __m256i pair_mask0(void) {
    return _mm256_set_m128i(_mm_set1_epi16(0x0302), _mm_set1_epi16(0x0100));
}

/* u8 codes · s8 activations, pairs summed to i16 (no saturation: |q_a| <= 127, q_w <= 63), then
 * multiplied by the i16 scales and summed in pairs to i32. */
QN_INLINE __m256i dot_scaled(__m256i qw, const int8_t *qa, __m256i scale16) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(qw, _mm256_loadu_si256((const __m256i *)qa)), scale16);
}

#define QN_Y(t, ib) ((const qn_block_q8_k *)(a0 + (size_t)(t) * as) + (ib))

/* Horizontal sums of 4 vectors at once: lane t = Σ of v[t]'s 8 i32 lanes (exact integers). */
QN_INLINE __m128i hsum4_i32(const __m256i v[4]) {
    const __m256i c = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
}

/* The running sums of nt (1 or 4) tokens: s += the block's kq_term (smv != NULL) or kq_term_sym, block after
 * block, token by token bit-identical to the scalar path. isv[t] / smv[t] hold token t's isum / summs spread over
 * 8 i32 lanes. With 4 tokens the horizontal sums and the fp32 finish run once for all 4, one token per lane,
 * each lane doing kq_term's operations in its order (no FMA contraction: ISO C, -ffp-contract=off). */
typedef struct kq_sums {
    __m128 v4;  /* nt = 4 */
    float s1;   /* nt = 1 */
} kq_sums;

QN_INLINE void kq_add(kq_sums *S, const __m256i *isv, const __m256i *smv, uint16_t dw, uint16_t dminw,
                      const uint8_t *a0, size_t as, int64_t ib, int nt) {
    if (nt == 4) {
        const __m128 da = _mm_setr_ps(QN_Y(0, ib)->d, QN_Y(1, ib)->d, QN_Y(2, ib)->d, QN_Y(3, ib)->d);
        __m128 term = _mm_mul_ps(_mm_mul_ps(da, _mm_set1_ps(qn_cpu_h2f(dw))), _mm_cvtepi32_ps(hsum4_i32(isv)));
        if (smv) {
            const __m128 dmin = _mm_mul_ps(da, _mm_set1_ps(qn_cpu_h2f(dminw)));
            term = _mm_sub_ps(term, _mm_mul_ps(dmin, _mm_cvtepi32_ps(hsum4_i32(smv))));
        }
        S->v4 = _mm_add_ps(S->v4, term);
    } else {
        const float da = QN_Y(0, ib)->d;
        S->s1 += smv ? kq_term(da, dw, dminw, hsum_i32(isv[0]), hsum_i32(smv[0])) : kq_term_sym(da, dw, hsum_i32(isv[0]));
    }
}

QN_INLINE void kq_store(const kq_sums *S, float *out, int nt) {
    if (nt == 4) _mm_storeu_ps(out, S->v4);
    else out[0] = S->s1;
}

QN_INLINE void dot_q2_k_nt(int64_t n, float *out, const void *wv, const uint8_t *a0, size_t as, int nt) {
    const qn_block_q2_k *w = wv;
    kq_sums S = {_mm_setzero_ps(), 0.0f};
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const qn_block_q2_k *x = &w[ib];
        const __m128i s8 = _mm_loadu_si128((const __m128i *)x->scales);
        const __m128i sc8 = _mm_and_si128(s8, _mm_set1_epi8(15));
        const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), _mm_set1_epi8(15)));
        const __m256i scl[2] = {_mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc8)),
                                _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_srli_si128(sc8, 8)))};
        __m256i acc[4];
        for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
            __m256i mask = pair_mask0();
            for (int j = 0; j < 4; j++) {
                const __m256i qj = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
                const __m256i sv = _mm256_shuffle_epi8(scl[h], mask);
                mask = _mm256_add_epi8(mask, _mm256_set1_epi8(4));
                for (int t = 0; t < nt; t++)
                    acc[t] = _mm256_add_epi32(acc[t], dot_scaled(qj, QN_Y(t, ib)->qs + 128 * h + 32 * j, sv));
            }
        }
        __m256i sm[4];
        for (int t = 0; t < nt; t++)
            sm[t] = _mm256_madd_epi16(mn16, _mm256_loadu_si256((const __m256i *)QN_Y(t, ib)->bsums));
        kq_add(&S, acc, sm, x->d, x->dmin, a0, as, ib, nt);
    }
    kq_store(&S, out, nt);
}

/* Q3_K as q = u − 4 with u = low2 + 4·hbit in 0..7, so Σ s·q·a = Σ s·u·a − 4·Σ s·bsum. */
QN_INLINE void dot_q3_k_nt(int64_t n, float *out, const void *wv, const uint8_t *a0, size_t as, int nt) {
    const qn_block_q3_k *w = wv;
    kq_sums S = {_mm_setzero_ps(), 0.0f};
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const qn_block_q3_k *x = &w[ib];
        uint32_t sw[4];
        qn_q3_k_scale_words(x->scales, sw);
        const __m128i sc8 = _mm_sub_epi8(_mm_setr_epi32((int)sw[0], (int)sw[1], (int)sw[2], (int)sw[3]),
                                         _mm_set1_epi8(32));
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        const __m256i scl[2] = {_mm256_broadcastsi128_si256(_mm256_castsi256_si128(sc16)),
                                _mm256_broadcastsi128_si256(_mm256_extracti128_si256(sc16, 1))};
        /* hbit of (h, j) is bit m = 4h+j of hmask[l]: after m right shifts of the i16 lanes it is bit 0
         * of each byte (bits 8..15 of a lane never reach bit 0 of its low byte within 8 steps) */
        __m256i hm = _mm256_loadu_si256((const __m256i *)x->hmask);
        __m256i acc[4];
        for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
            __m256i mask = pair_mask0();
            for (int j = 0; j < 4; j++) {
                const __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3),
                                                  _mm256_and_si256(_mm256_slli_epi16(hm, 2), m4));
                hm = _mm256_srli_epi16(hm, 1);
                const __m256i sv = _mm256_shuffle_epi8(scl[h], mask);
                mask = _mm256_add_epi8(mask, _mm256_set1_epi8(4));
                for (int t = 0; t < nt; t++)
                    acc[t] = _mm256_add_epi32(acc[t], dot_scaled(u, QN_Y(t, ib)->qs + 128 * h + 32 * j, sv));
            }
        }
        for (int t = 0; t < nt; t++) {
            const __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)QN_Y(t, ib)->bsums));
            acc[t] = _mm256_sub_epi32(acc[t], _mm256_slli_epi32(corr, 2));
        }
        kq_add(&S, acc, NULL, x->d, 0, a0, as, ib, nt);
    }
    kq_store(&S, out, nt);
}

/* Q4_K (has_qh = 0) and Q5_K (has_qh = 1): 4 chunks of 64 = two 32-element sub-blocks each. */
QN_INLINE void dot_q45_k_nt(int64_t n, float *out, const void *wv, const uint8_t *a0, size_t as, int nt,
                            int has_qh) {
    const size_t bb = has_qh ? sizeof(qn_block_q5_k) : sizeof(qn_block_q4_k);
    kq_sums S = {_mm_setzero_ps(), 0.0f};
    const __m256i m15 = _mm256_set1_epi8(15), b4 = _mm256_set1_epi8(0x10);
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const uint8_t *x = (const uint8_t *)wv + (size_t)ib * bb;
        const qn_block_q4_k *x4 = (const qn_block_q4_k *)x;
        const uint8_t *qs = has_qh ? ((const qn_block_q5_k *)x)->qs : x4->qs;
        uint32_t sw[4];
        qn_q4_k_scale_words(x4->scales, sw);
        const __m128i smv = _mm_setr_epi32((int)sw[0], (int)sw[1], (int)sw[2], (int)sw[3]); /* sc0..7 mn0..7 */
        const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(smv));
        const __m256i mnp = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(smv, smv)); /* mn0 mn0 mn1 mn1 ... */
        __m256i hb = has_qh ? _mm256_loadu_si256((const __m256i *)((const qn_block_q5_k *)x)->qh)
                            : _mm256_setzero_si256();
        __m256i mask = _mm256_set1_epi16(0x0100);
        __m256i acc[4];
        for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(q, m15), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m15);
            if (has_qh) { /* bit 2c of qh[l] -> bit 4 of lo, bit 2c+1 -> bit 4 of hi */
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(hb, 4), b4));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(hb, 3), b4));
                hb = _mm256_srli_epi16(hb, 2);
            }
            const __m256i s_lo = _mm256_shuffle_epi8(sc16, mask);
            mask = _mm256_add_epi8(mask, _mm256_set1_epi8(2));
            const __m256i s_hi = _mm256_shuffle_epi8(sc16, mask);
            mask = _mm256_add_epi8(mask, _mm256_set1_epi8(2));
            for (int t = 0; t < nt; t++) {
                const int8_t *ya = QN_Y(t, ib)->qs + 64 * c;
                acc[t] = _mm256_add_epi32(acc[t], _mm256_add_epi32(dot_scaled(lo, ya, s_lo), dot_scaled(hi, ya + 32, s_hi)));
            }
        }
        __m256i sm[4];
        for (int t = 0; t < nt; t++)
            sm[t] = _mm256_madd_epi16(mnp, _mm256_loadu_si256((const __m256i *)QN_Y(t, ib)->bsums));
        kq_add(&S, acc, sm, x4->d, x4->dmin, a0, as, ib, nt);
    }
    kq_store(&S, out, nt);
}

/* Q6_K as q = u − 32 with u in 0..63: Σ s·q·a = Σ s·u·a − 32·Σ s·bsum. */
QN_INLINE void dot_q6_k_nt(int64_t n, float *out, const void *wv, const uint8_t *a0, size_t as, int nt) {
    const qn_block_q6_k *w = wv;
    kq_sums S = {_mm_setzero_ps(), 0.0f};
    const __m256i m15 = _mm256_set1_epi8(15), m48 = _mm256_set1_epi8(0x30);
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const qn_block_q6_k *x = &w[ib];
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
        const __m256i scl[2] = {_mm256_broadcastsi128_si256(_mm256_castsi256_si128(sc16)),
                                _mm256_broadcastsi128_si256(_mm256_extracti128_si256(sc16, 1))};
        __m256i acc[4];
        for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
            /* k = 0..3: low nibble of l0, l1, high nibble of l0, l1; qh bits 2k..2k+1 -> bits 4..5 */
            const __m256i u[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, m15), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m48)),
                _mm256_or_si256(_mm256_and_si256(l1, m15), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m48)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m15), _mm256_and_si256(qh, m48)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m15),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m48)),
            };
            __m256i mask = pair_mask0();
            for (int k = 0; k < 4; k++) {
                const __m256i sv = _mm256_shuffle_epi8(scl[h], mask);
                mask = _mm256_add_epi8(mask, _mm256_set1_epi8(4));
                for (int t = 0; t < nt; t++)
                    acc[t] = _mm256_add_epi32(acc[t], dot_scaled(u[k], QN_Y(t, ib)->qs + 128 * h + 32 * k, sv));
            }
        }
        for (int t = 0; t < nt; t++) {
            const __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)QN_Y(t, ib)->bsums));
            acc[t] = _mm256_sub_epi32(acc[t], _mm256_slli_epi32(corr, 5));
        }
        kq_add(&S, acc, NULL, x->d, 0, a0, as, ib, nt);
    }
    kq_store(&S, out, nt);
}

#undef QN_Y

QN_DEF_KQ_WRAPPERS(dot_q2_k_avx2, dot_q2_k_nt(n, out, w, a0, as, nt))
QN_DEF_KQ_WRAPPERS(dot_q3_k_avx2, dot_q3_k_nt(n, out, w, a0, as, nt))
QN_DEF_KQ_WRAPPERS(dot_q4_k_avx2, dot_q45_k_nt(n, out, w, a0, as, nt, 0))
QN_DEF_KQ_WRAPPERS(dot_q5_k_avx2, dot_q45_k_nt(n, out, w, a0, as, nt, 1))
QN_DEF_KQ_WRAPPERS(dot_q6_k_avx2, dot_q6_k_nt(n, out, w, a0, as, nt))

/* ------------------------------------------------------------------ x86: Q2_K .. Q6_K register tiles
 * Q4_K: 8 weight rows × up to 4 tokens at a time, the 8 rows in the 8 lanes, over Q4_K×8 group blocks (kx8.h: the
 * rows' super-blocks dword-interleaved, so dword lane r is row r's): per 4-element step one maddubs of 8 rows' 4
 * codes (one 32-byte load) with the token's 4 activations broadcast; a 32-element sub-block accumulates in i16 (8
 * steps of at most 2·15·127: |Σ| <= 30480) and is scaled once per row (madd with the rows' scales). The block's
 * finish runs in lanes, one row per lane, with kq_term's operations in its order, and the rows' sums add block
 * after block: every output is bit-identical to vec_dot's (the same integers isum and summs, the same fp32 steps).
 * No horizontal sums: that, and the scales shared by the tokens, is what the tile saves over 1 row × 4 tokens.
 * Weights repacked at load (matmul_x8) are read as they are; plain rows (vec_dot_tile) are interleaved block by
 * block into a stack buffer first (an 8×8 dword transpose per 32 code bytes), which costs ~30% at 4 tokens.
 * Q5_K: the same tile over Q5_K×8 groups (q45kx8_block adds the fifth bit); Q6_K over Q6_K×8 groups
 * (q6kx8_block); Q2_K and Q3_K over theirs (q2kx8_block, q3kx8_block: 16-element sub-blocks, one plane of 2-bit
 * codes per shift). None of these has a plain-row form. With more than 4 tokens, Q5_K's groups are decoded a k-slice
 * at a time for all the passes (kx8d_block). */
#define QN_Q4K_TILE_ROWS QN_KX8_ROWS

/* out[s] = dword s (bytes 4s..4s+3) of the 8 rows p + r·ws, r = lane (an 8×8 dword transpose) */
QN_INLINE void rows_to_lanes8(const uint8_t *p, size_t ws, __m256i out[8]) {
    __m256i r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_si256((const __m256i *)(p + (size_t)i * ws));
    for (int i = 0; i < 8; i += 2) { /* t[i]: rows i, i+1 dwords 0,1 | 4,5; t[i+1]: 2,3 | 6,7 */
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) { /* u[i + s]: rows i..i+3, dword s | s + 4 */
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int s = 0; s < 4; s++) {
        out[s] = _mm256_permute2x128_si256(u[s], u[s + 4], 0x20);
        out[s + 4] = _mm256_permute2x128_si256(u[s], u[s + 4], 0x31);
    }
}

/* Super-block ib of the 8 plain rows x + r·ws -> one Q4_K×8 group block g (kx8.h), with the AVX2 transposes. */
QN_INLINE void q4k_rows_to_x8(const uint8_t *x, size_t ws, uint8_t *g) {
    __m256i R[4], t[4];
    for (int i = 0; i < 4; i++) /* headers: 4×8 dword transpose of the rows' first 16 bytes */
        R[i] = _mm256_setr_m128i(_mm_loadu_si128((const __m128i *)(x + (size_t)i * ws)),
                                 _mm_loadu_si128((const __m128i *)(x + (size_t)(i + 4) * ws)));
    t[0] = _mm256_unpacklo_epi32(R[0], R[1]), t[1] = _mm256_unpackhi_epi32(R[0], R[1]);
    t[2] = _mm256_unpacklo_epi32(R[2], R[3]), t[3] = _mm256_unpackhi_epi32(R[2], R[3]);
    _mm256_storeu_si256((__m256i *)g, _mm256_unpacklo_epi64(t[0], t[2]));
    _mm256_storeu_si256((__m256i *)(g + 32), _mm256_unpackhi_epi64(t[0], t[2]));
    _mm256_storeu_si256((__m256i *)(g + 64), _mm256_unpacklo_epi64(t[1], t[3]));
    _mm256_storeu_si256((__m256i *)(g + 96), _mm256_unpackhi_epi64(t[1], t[3]));
    for (int c = 0; c < 4; c++) {
        __m256i v[8];
        rows_to_lanes8(x + offsetof(qn_block_q4_k, qs) + 32 * c, ws, v);
        for (int s = 0; s < 8; s++) _mm256_storeu_si256((__m256i *)(g + 128 + 256 * c + 32 * s), v[s]);
    }
}

/* isum[t] += madd(acc[t], sc), summed as it goes: GCC would otherwise keep the madds of the unrolled sub-blocks
 * and add them later, spilled (Q6_K×8: 1500 stack accesses, 122 -> 136 GFLOP/s with the barrier) */
#define KX8_SUB_SCALE(isum, acc, sc, nt)                                                                              \
    for (int t = 0; t < (nt); t++) {                                                                                 \
        (isum)[t] = _mm256_add_epi32((isum)[t], _mm256_madd_epi16((acc)[t], (sc)));                                   \
        __asm__("" : "+x"((isum)[t]));                                                                               \
    }

/* Σ_b c_b·bsum_b of token block yb, in the 8 lanes: cp[p] holds the pair (c_2p, c_2p+1) as i16 in each dword lane */
QN_INLINE __m256i bsum_pairs(const __m256i cp[8], const qn_block_q8_k *yb) {
    __m256i s = _mm256_setzero_si256();
    for (int p = 0; p < 8; p++) {
        int32_t bp;
        memcpy(&bp, &yb->bsums[2 * p], 4);
        s = _mm256_add_epi32(s, _mm256_madd_epi16(cp[p], _mm256_set1_epi32(bp)));
    }
    return s;
}

/* A Q5_K×8 group block decoded once for all the 4-token passes over a k-slice (kx8_tile_tokens, more than 4 tokens):
 * the rows' codes step by step (q[p]: elements 4p..4p+3 of the 8 rows, 0..31), the sub-blocks' scales as the madd
 * operands, the mins' pairs and the fp32 d, dmin. The tile then reads each step with one load, its unpacking (4-5
 * operations per step) done once instead of once per 4 tokens: 4096x4096 at 32 tokens 131 -> 165 GFLOP/s. (Q6_K
 * gained nothing so: its 2-step i16 madds, not the unpacking, bound it.) */
typedef struct kx8d_block {
    __m256i q[64];
    __m256i sc[8];
    __m256i mnp[4];
    __m256 d, dmin;
} kx8d_block;

/* sum[t] lane r += row r's kq_term of super-block ib for token t < nt (nt: a compile-time constant 1..4); the group
 * block of fmt Q4_K or Q5_K (a compile-time constant) is g (kx8.h), or x decoded (dec, Q5_K), a: token 0's Q8_K row
 * (token t at + t·as). Q5_K's codes reach 31, so the i16 sums take 4 steps (2·31·127·4 = 31496) between the scale
 * madds instead of 8. */
QN_INLINE void q45kx8_block(qn_qformat fmt, const uint8_t *g, const kx8d_block *x, const bool dec, const uint8_t *a,
                            size_t as, int64_t ib, const int nt, __m256 sum[4]) {
    const bool q5 = fmt == QN_QFORMAT_Q5_K;
    const __m256i *gv = (const __m256i *)g;
    __m256i scw[2], mnw[2];
    __m256 dw, dminw;
    if (dec) dw = x->d, dminw = x->dmin;
    else q45kx8_head(gv, scw, mnw, &dw, &dminw);
    const int8_t *aq[4];
    for (int t = 0; t < nt; t++) aq[t] = ((const qn_block_q8_k *)(a + (size_t)t * as) + ib)->qs;
    __m256i isum[4];
    for (int t = 0; t < nt; t++) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int b = 0; b < 8; b++) {
        const __m256i sc = dec ? x->sc[b] : q45kx8_sc(scw, b);
        __m256i acc[4];
        for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_si256();
        for (int s = 0; s < 8; s++) {
            const __m256i q = dec ? x->q[8 * b + s] : q45kx8_codes(q5, gv, b, s);
            for (int t = 0; t < nt; t++) {
                int32_t a4;
                memcpy(&a4, aq[t] + 32 * b + 4 * s, 4);
                acc[t] = _mm256_add_epi16(acc[t], _mm256_maddubs_epi16(q, _mm256_set1_epi32(a4)));
                __asm__("" : "+x"(acc[t])); /* keep the sum in a register: GCC would otherwise keep every
                                             * product of the unrolled steps and add them later, spilled */
            }
            if (q5 && s == 3) {
                KX8_SUB_SCALE(isum, acc, sc, nt)
                for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_si256();
            }
        }
        KX8_SUB_SCALE(isum, acc, sc, nt)
    }
    /* summs = Σ_b mn_b·(bsums[2b] + bsums[2b + 1]), as pairs of sub-blocks: madd of (mn_2p, mn_2p+1) */
    __m256i mnp[4];
    for (int p = 0; p < 4; p++) mnp[p] = dec ? x->mnp[p] : q45kx8_mnp(mnw, p);
    for (int t = 0; t < nt; t++) {
        const qn_block_q8_k *yb = (const qn_block_q8_k *)(a + (size_t)t * as) + ib;
        const __m256i bs = _mm256_loadu_si256((const __m256i *)yb->bsums);
        const __m256i bp = _mm256_hadd_epi16(bs, bs); /* B0..B3 | B4..B7, twice per lane */
        __m256i sm = _mm256_setzero_si256();
        static const int32_t lane_of_pair[4] = {0, 1, 4, 5};
        for (int p = 0; p < 4; p++)
            sm = _mm256_add_epi32(sm, _mm256_madd_epi16(mnp[p], _mm256_permutevar8x32_epi32(bp, _mm256_set1_epi32(lane_of_pair[p]))));
        const __m256 da = _mm256_set1_ps(yb->d);
        const __m256 term = _mm256_sub_ps(_mm256_mul_ps(_mm256_mul_ps(da, dw), _mm256_cvtepi32_ps(isum[t])),
                                          _mm256_mul_ps(_mm256_mul_ps(da, dminw), _mm256_cvtepi32_ps(sm)));
        sum[t] = _mm256_add_ps(sum[t], term);
    }
}

/* Q6_K×8 (kx8.h): sum[t] lane r += row r's kq_term_sym of super-block ib for token t < nt. The 6-bit codes are
 * taken unsigned (0..63); the −32 comes back through the Q8_K bsums: isum = Σ_b sc_b·Σ q·a − 32·Σ_b sc_b·bsum_b, the
 * scalar path's integer. A sub-block (16 elements) is 4 steps; 2 steps fit i16 (2·2·63·127 = 32004), so the scale
 * is applied (madd) every 2 steps. */
QN_INLINE void q6kx8_block(const uint8_t *g, const uint8_t *a, size_t as, int64_t ib, const int nt, __m256 sum[4]) {
    const __m256i *gv = (const __m256i *)g;
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + QN_Q6KX8_D_BYTE)));
    const int8_t *aq[4];
    for (int t = 0; t < nt; t++) aq[t] = ((const qn_block_q8_k *)(a + (size_t)t * as) + ib)->qs;
    __m256i isum[4];
    for (int t = 0; t < nt; t++) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 16
    for (int b = 0; b < 16; b++) {
        const __m256i sc = q6kx8_sc(gv, b);
        __m256i acc[4];
#pragma GCC unroll 4
        for (int s = 0; s < 4; s++) {
            const __m256i q = q6kx8_codes(gv, b, s);
            for (int t = 0; t < nt; t++) {
                int32_t a4;
                memcpy(&a4, aq[t] + 16 * b + 4 * s, 4);
                const __m256i p = _mm256_maddubs_epi16(q, _mm256_set1_epi32(a4));
                acc[t] = s % 2 ? _mm256_add_epi16(acc[t], p) : p;
            }
            if (s % 2) KX8_SUB_SCALE(isum, acc, sc, nt)
        }
    }
    /* Σ_b sc_b·bsum_b as pairs of sub-blocks: madd of (sc_2p, sc_2p+1) with (bsum_2p, bsum_2p+1) broadcast */
    __m256i scp[8];
    for (int p = 0; p < 8; p++) scp[p] = q6kx8_scp(gv, p);
    for (int t = 0; t < nt; t++) {
        const qn_block_q8_k *yb = (const qn_block_q8_k *)(a + (size_t)t * as) + ib;
        const __m256i is = _mm256_sub_epi32(isum[t], _mm256_slli_epi32(bsum_pairs(scp, yb), 5));
        sum[t] = _mm256_add_ps(sum[t], _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(yb->d), dw), _mm256_cvtepi32_ps(is)));
    }
}

/* Q5_K×8 group block g -> x */
QN_INLINE void q5kx8_decode(const uint8_t *g, kx8d_block *x) {
    const __m256i *gv = (const __m256i *)g;
    __m256i scw[2], mnw[2];
    q45kx8_head(gv, scw, mnw, &x->d, &x->dmin);
    for (int b = 0; b < 8; b++) {
        x->sc[b] = q45kx8_sc(scw, b);
        for (int s = 0; s < 8; s++) x->q[8 * b + s] = q45kx8_codes(true, gv, b, s);
    }
    for (int p = 0; p < 4; p++) x->mnp[p] = q45kx8_mnp(mnw, p);
}

/* The i16 sum over one 16-element sub-block (4 steps) of token t: acc[t] = Σ_s maddubs(q_s, a_t[off + 4s .. +3]). */
#define KX8_SUB_ACC(acc, q, aq, nt, off)                                                                             \
    for (int t = 0; t < (nt); t++) {                                                                                 \
        int32_t a4_;                                                                                                 \
        memcpy(&a4_, (aq)[t] + (off), 4);                                                                            \
        const __m256i p_ = _mm256_maddubs_epi16((q), _mm256_set1_epi32(a4_));                                        \
        (acc)[t] = s ? _mm256_add_epi16((acc)[t], p_) : p_;                                                          \
        __asm__("" : "+x"((acc)[t])); /* summed as it goes (as in q45kx8_block): no spilled products */              \
    }

/* Q2_K×8, the sub-blocks 8h + 2j + half (j < 4) of one h (a constant at each call) and one half: the four qs steps
 * 32h + 16·half + 4s hold plane j's elements of all four; isum[t] += scale_b·Σ codes·a_t. A sub-block is summed in i16
 * (4·2·3·128 = 3072) and scaled by one madd. */
QN_INLINE void q2kx8_part(const __m256i *gv, const int8_t *const aq[4], const int nt, const int h, int half,
                          __m256i isum[4]) {
    const __m256i m3 = _mm256_set1_epi8(3), m15 = _mm256_set1_epi16(15);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const int b = 8 * h + 2 * j + half; /* byte b % 4 = 2 (j % 2) + half of scale dword 2h + j / 2 */
        const __m256i sc = _mm256_and_si256(
            _mm256_shuffle_epi8(_mm256_loadu_si256(gv + b / 4), dword_bytes_mask(b % 4, b % 4)), m15);
        __m256i acc[4];
#pragma GCC unroll 4
        for (int s = 0; s < 4; s++) {
            const __m256i v = _mm256_loadu_si256(gv + 4 + 8 * h + 4 * half + s); /* an L1 hit after j = 0 */
            const __m256i q = _mm256_and_si256(j ? _mm256_srli_epi16(v, 2 * j) : v, m3);
            KX8_SUB_ACC(acc, q, aq, nt, 128 * h + 32 * j + 16 * half + 4 * s)
        }
        KX8_SUB_SCALE(isum, acc, sc, nt)
    }
}

/* Q2_K×8 (kx8.h): sum[t] lane r += row r's kq_term of super-block ib for token t < nt (the integers are exact, so the
 * sub-blocks' order is free; the fp32 finish is the scalar's). The mins' sum is Σ_b min_b·bsum_b. */
QN_INLINE void q2kx8_block(const uint8_t *g, const uint8_t *a, size_t as, int64_t ib, const int nt, __m256 sum[4]) {
    const __m256i *gv = (const __m256i *)g;
    const __m256i hdr = _mm256_loadu_si256(gv + QN_Q2KX8_D_DWORD);
    const __m256 dw = lanes_f16(hdr, 0), dminw = lanes_f16(hdr, 2);
    const int8_t *aq[4];
    for (int t = 0; t < nt; t++) aq[t] = ((const qn_block_q8_k *)(a + (size_t)t * as) + ib)->qs;
    __m256i isum[4];
    for (int t = 0; t < nt; t++) isum[t] = _mm256_setzero_si256();
    for (int half = 0; half < 2; half++) {
        q2kx8_part(gv, aq, nt, 0, half, isum);
        q2kx8_part(gv, aq, nt, 1, half, isum);
    }
    __m256i mnp[8]; /* the mins (high nibbles) of sub-blocks 2p, 2p + 1 */
    for (int p = 0; p < 8; p++)
        mnp[p] = _mm256_srli_epi16(_mm256_shuffle_epi8(_mm256_loadu_si256(gv + p / 2), dword_bytes_mask(2 * (p % 2), 2 * (p % 2) + 1)), 4);
    for (int t = 0; t < nt; t++) {
        const qn_block_q8_k *yb = (const qn_block_q8_k *)(a + (size_t)t * as) + ib;
        const __m256 da = _mm256_set1_ps(yb->d);
        const __m256 term = _mm256_sub_ps(_mm256_mul_ps(_mm256_mul_ps(da, dw), _mm256_cvtepi32_ps(isum[t])),
                                          _mm256_mul_ps(_mm256_mul_ps(da, dminw), _mm256_cvtepi32_ps(bsum_pairs(mnp, yb))));
        sum[t] = _mm256_add_ps(sum[t], term);
    }
}

/* Q3_K×8, the sub-blocks 8h + 2j + half of one h (a constant at each call) and one half, as q2kx8_part; the code
 * c_i (i = 4h + j, 0..7: kx8.h's re-encoding) is one AND, a shift and an AND, or for c6, c7 two pieces; i16 sums
 * reach 4·2·7·128 = 7168. scw: the scales − 32 as i8 (byte b of word i: sub-block 4i + b). */
QN_INLINE void q3kx8_part(const __m256i *gv, const __m256i scw[4], const int8_t *const aq[4], const int nt, const int h,
                          int half, __m256i isum[4]) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const int b = 8 * h + 2 * j + half, i = 4 * h + j;
        const __m256i sc = _mm256_srai_epi16(_mm256_shuffle_epi8(scw[b / 4], dword_bytes_mask_hi(b % 4, b % 4)), 8);
        __m256i acc[4];
#pragma GCC unroll 4
        for (int s = 0; s < 4; s++) {
            const __m256i q = q3kx8_code(gv + 4 * half + s, i);
            KX8_SUB_ACC(acc, q, aq, nt, 128 * h + 32 * j + 16 * half + 4 * s)
        }
        KX8_SUB_SCALE(isum, acc, sc, nt)
    }
}

/* Q3_K×8 (kx8.h): sum[t] lane r += row r's kq_term_sym of super-block ib for token t < nt. The scalar's code
 * lo − 4·(1 − hbit) is the re-encoded code − 4, which comes back through the bsums: isum = Σ_b s_b·Σ q'·a − 4·Σ_b s_b·bsum_b
 * with s_b = scale_b − 32, the scalar path's integer. The packed scales are unpacked lane by lane as
 * qn_q3_k_scale_words does. */
QN_INLINE void q3kx8_block(const uint8_t *g, const uint8_t *a, size_t as, int64_t ib, const int nt, __m256 sum[4]) {
    const __m256i *gv = (const __m256i *)g;
    __m256i scw[4];
    q3kx8_scales(gv, scw);
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + QN_Q3KX8_D_BYTE)));
    const int8_t *aq[4];
    for (int t = 0; t < nt; t++) aq[t] = ((const qn_block_q8_k *)(a + (size_t)t * as) + ib)->qs;
    __m256i isum[4];
    for (int t = 0; t < nt; t++) isum[t] = _mm256_setzero_si256();
    for (int half = 0; half < 2; half++) {
        q3kx8_part(gv, scw, aq, nt, 0, half, isum);
        q3kx8_part(gv, scw, aq, nt, 1, half, isum);
    }
    __m256i scp[8]; /* (s_2p, s_2p+1) */
    for (int p = 0; p < 8; p++)
        scp[p] = _mm256_srai_epi16(_mm256_shuffle_epi8(scw[p / 2], dword_bytes_mask_hi(2 * (p % 2), 2 * (p % 2) + 1)), 8);
    for (int t = 0; t < nt; t++) {
        const qn_block_q8_k *yb = (const qn_block_q8_k *)(a + (size_t)t * as) + ib;
        const __m256i is = _mm256_sub_epi32(isum[t], _mm256_slli_epi32(bsum_pairs(scp, yb), 2));
        sum[t] = _mm256_add_ps(sum[t], _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(yb->d), dw), _mm256_cvtepi32_ps(is)));
    }
}

/* Rows r0..r0+7 × tokens t0..t0+nt-1 (w: row 0 of the tile; a: token 0) of fmt (Q2_K .. Q6_K; a
 * compile-time constant, like nt). plain (Q4_K only): w holds 8 plain rows of stride ws; else w is the rows' ×8 group. */
QN_INLINE void kx8_tile(qn_qformat fmt, int64_t n, const uint8_t *w, size_t ws, bool plain, const uint8_t *a, size_t as,
                        const int nt, float *y, int64_t ldy) {
    __m256 sum[4];
    for (int t = 0; t < nt; t++) sum[t] = _mm256_setzero_ps();
    _Alignas(32) uint8_t buf[QN_Q4KX8_BLOCK_BYTES];
    const size_t gb = qn_kx8_block_bytes(fmt);
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        if (!plain) /* the group block 4 ahead (may lie past the weights: a prefetch never faults). Without it the
                     * hardware prefetchers leave the 1-token tile starved: Q6_K x8 1-token reads went 10.5 -> 15.2 GB/s
                     * (128256x4096) and 12.4 -> 21 GB/s (4096x14336), bench_cpu, 1 thread */
            for (size_t i = 0; i < gb; i += 64)
                _mm_prefetch((const char *)((uintptr_t)w + (size_t)(ib + 4) * gb + i), _MM_HINT_T0);
        if (fmt == QN_QFORMAT_Q6_K) {
            q6kx8_block(w + (size_t)ib * gb, a, as, ib, nt, sum);
            continue;
        }
        if (fmt == QN_QFORMAT_Q2_K) {
            q2kx8_block(w + (size_t)ib * gb, a, as, ib, nt, sum);
            continue;
        }
        if (fmt == QN_QFORMAT_Q3_K) {
            q3kx8_block(w + (size_t)ib * gb, a, as, ib, nt, sum);
            continue;
        }
        if (plain) q4k_rows_to_x8(w + (size_t)ib * sizeof(qn_block_q4_k), ws, buf);
        q45kx8_block(fmt, plain ? buf : w + (size_t)ib * gb, NULL, false, a, as, ib, nt, sum);
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + t * ldy, sum[t]);
}

/* 8 rows × nt tokens (a compile-time constant 1..4) over the decoded Q5_K blocks x[0..nb) of super-blocks ib0..
 * (carry: the sums so far are in y, an earlier k-slice of the rows: the same fp32 sequence) */
QN_INLINE void q5kx8d_tile(const kx8d_block *x, int64_t nb, int64_t ib0, const uint8_t *a, size_t as, const int nt,
                           bool carry, float *y, int64_t ldy) {
    __m256 sum[4];
    for (int t = 0; t < nt; t++) sum[t] = carry ? _mm256_loadu_ps(y + t * ldy) : _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) q45kx8_block(QN_QFORMAT_Q5_K, NULL, x + i, true, a, as, ib0 + i, nt, sum);
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + t * ldy, sum[t]);
}

/* super-blocks per k-slice of the decoded path: 4 decoded blocks (10 KiB) and 4 tokens' 4 Q8_K blocks (4.6 KiB) stay
 * in L1 across the passes (2, 8 and 16 were no faster) */
#define QN_KX8D_SLICE 4

/* 8 rows × every token: 4 at a time, then the 1..3 left. Q5_K groups with more than 4 tokens are decoded a k-slice at
 * a time (kx8d_block) and every pass runs over the slice. */
QN_INLINE void kx8_tile_tokens(qn_qformat fmt, int64_t n, const uint8_t *w, size_t ws, bool plain, const uint8_t *a,
                               size_t as, int64_t n_tok, float *y, int64_t ldy) {
    if (!plain && n_tok > 4 && fmt == QN_QFORMAT_Q5_K) {
        kx8d_block x[QN_KX8D_SLICE];
        const size_t gb = qn_kx8_block_bytes(fmt);
        for (int64_t ib0 = 0; ib0 < n / QN_QK_K; ib0 += QN_KX8D_SLICE) {
            const int64_t nb = n / QN_QK_K - ib0 < QN_KX8D_SLICE ? n / QN_QK_K - ib0 : QN_KX8D_SLICE;
            for (int64_t i = 0; i < nb; i++) q5kx8_decode(w + (size_t)(ib0 + i) * gb, &x[i]);
            int64_t t = 0;
            for (; t + 4 <= n_tok; t += 4) q5kx8d_tile(x, nb, ib0, a + (size_t)t * as, as, 4, ib0 > 0, y + t * ldy, ldy);
            switch (n_tok - t) {
            case 3: q5kx8d_tile(x, nb, ib0, a + (size_t)t * as, as, 3, ib0 > 0, y + t * ldy, ldy); break;
            case 2: q5kx8d_tile(x, nb, ib0, a + (size_t)t * as, as, 2, ib0 > 0, y + t * ldy, ldy); break;
            case 1: q5kx8d_tile(x, nb, ib0, a + (size_t)t * as, as, 1, ib0 > 0, y + t * ldy, ldy); break;
            default: break;
            }
        }
        return;
    }
    int64_t t = 0;
    for (; t + 4 <= n_tok; t += 4) kx8_tile(fmt, n, w, ws, plain, a + (size_t)t * as, as, 4, y + t * ldy, ldy);
    switch (n_tok - t) {
    case 3: kx8_tile(fmt, n, w, ws, plain, a + (size_t)t * as, as, 3, y + t * ldy, ldy); break;
    case 2: kx8_tile(fmt, n, w, ws, plain, a + (size_t)t * as, as, 2, y + t * ldy, ldy); break;
    case 1: kx8_tile(fmt, n, w, ws, plain, a + (size_t)t * as, as, 1, y + t * ldy, ldy); break;
    default: break;
    }
}

static void dot_q4_k_tile_avx2(int64_t n, const void *wv, size_t ws, int64_t n_rows, const void *av, size_t as,
                               int64_t n_tok, float *y, int64_t ldy) {
    const uint8_t *w = wv, *a = av;
    const int64_t rt = n_rows / QN_Q4K_TILE_ROWS * QN_Q4K_TILE_ROWS, tt = n_tok / 4 * 4;
    for (int64_t r = 0; r < rt; r += QN_Q4K_TILE_ROWS) /* whole 4-token steps here; the 1..3 left below */
        kx8_tile_tokens(QN_QFORMAT_Q4_K, n, w + (size_t)r * ws, ws, true, a, as, tt, y + r, ldy);
    for (int64_t r = 0; r < rt; r++)
        for (int64_t t = tt; t < n_tok; t++) dot_q4_k_avx2(n, &y[t * ldy + r], w + (size_t)r * ws, a + (size_t)t * as);
    for (int64_t i = rt; i < n_rows; i++) { /* leftover rows: 1 row × 4 tokens, then single tokens */
        int64_t t = 0;
        for (; t + 4 <= n_tok; t += 4) {
            float o[4];
            dot_q4_k_avx2_x4(n, o, w + (size_t)i * ws, a + (size_t)t * as, as);
            for (int j = 0; j < 4; j++) y[(t + j) * ldy + i] = o[j];
        }
        for (; t < n_tok; t++) dot_q4_k_avx2(n, &y[t * ldy + i], w + (size_t)i * ws, a + (size_t)t * as);
    }
}

/* matmul_x8 (cpu_kernels.h) of fmt: every group, 8 rows × every token. The weights are the repacked groups. */
#define QN_DEF_KX8_MATMUL(name, FMT)                                                                                \
    void QN_ISA_FN(name)(int64_t n, const void *w8, int64_t n_groups, const void *a, size_t as, int64_t n_tok,       \
                         float *y, int64_t ldy) {                                                                    \
        const size_t gb = (size_t)(n / QN_QK_K) * qn_kx8_block_bytes(FMT);                                           \
        for (int64_t g = 0; g < n_groups; g++)                                                                       \
            kx8_tile_tokens(FMT, n, (const uint8_t *)w8 + (size_t)g * gb, 0, false, a, as, n_tok,                    \
                            y + g * QN_KX8_ROWS, ldy);                                                               \
    }
QN_DEF_KX8_MATMUL(qn_kx8_matmul_q2k, QN_QFORMAT_Q2_K)
QN_DEF_KX8_MATMUL(qn_kx8_matmul_q3k, QN_QFORMAT_Q3_K)
QN_DEF_KX8_MATMUL(qn_kx8_matmul_q4k, QN_QFORMAT_Q4_K)
QN_DEF_KX8_MATMUL(qn_kx8_matmul_q5k, QN_QFORMAT_Q5_K)
QN_DEF_KX8_MATMUL(qn_kx8_matmul_q6k, QN_QFORMAT_Q6_K)


/* Q8_K quantizer, bit-identical to qn_quantize_row_q8_k_ref: the signed max is the FIRST element of
 * largest magnitude, q = min(127, round-half-even(iscale·x)), d = 1/iscale. */
static void quantize_q8_k_avx2(const float *x, void *dst, int64_t n) {
    qn_block_q8_k *y = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const float *xb = x + (size_t)ib * QN_QK_K;
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < QN_QK_K; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + i)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h);
        if (amax == 0.0f) {
            memset(&y[ib], 0, sizeof y[ib]);
            continue;
        }
        int imax = 0;
        for (int i = 0; i < QN_QK_K; i += 8) {
            const __m256 ax = _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + i));
            const int bits = _mm256_movemask_ps(_mm256_cmp_ps(ax, _mm256_set1_ps(amax), _CMP_EQ_OQ));
            if (bits) {
                imax = i + __builtin_ctz((unsigned)bits);
                break;
            }
        }
        const float iscale = -127.0f / xb[imax];
        const __m256 vs = _mm256_set1_ps(iscale);
        const __m256i c127 = _mm256_set1_epi32(127);
        for (int g = 0; g < QN_QK_K / 16; g++) {
            __m256i q[2];
            for (int i = 0; i < 2; i++) {
                const __m256 v = _mm256_mul_ps(vs, _mm256_loadu_ps(xb + 16 * g + 8 * i));
                q[i] = _mm256_min_epi32(
                    _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)), c127);
            }
            y[ib].bsums[g] = (int16_t)hsum_i32(_mm256_add_epi32(q[0], q[1]));
            const __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xd8);
            _mm_storeu_si128((__m128i *)(y[ib].qs + 16 * g),
                             _mm_packs_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)));
        }
        y[ib].d = 1.0f / iscale;
    }
}

#endif /* QN_SIMD_X86 */

/* ------------------------------------------------------------------ arm64 NEON */
#if defined(QN_SIMD_NEON)

#define QN_Y(t, ib) ((const qn_block_q8_k *)(a0 + (size_t)(t) * as) + (ib))

/* acc + scale·Σ w·a over one 16-element sub-block (w: s8 codes, a: its 16 Q8_K activations). Exact integers:
 * the lanes sum to the scalar path's s·scale in any order. */
QN_INLINE int32x4_t sub16(int32x4_t acc, int8x16_t w, const int8_t *a, int32_t scale) {
    return vmlaq_n_s32(acc, qn_neon_dot_s8x16(vdupq_n_s32(0), w, vld1q_s8(a)), scale);
}

/* acc + scale·Σ w·a over one 32-element sub-block held as two 16-lane halves */
QN_INLINE int32x4_t sub32(int32x4_t acc, int8x16_t w0, int8x16_t w1, const int8_t *a, int32_t scale) {
    const int32x4_t s = qn_neon_dot_s8x16(qn_neon_dot_s8x16(vdupq_n_s32(0), w0, vld1q_s8(a)), w1, vld1q_s8(a + 16));
    return vmlaq_n_s32(acc, s, scale);
}

/* Σ_{j<16} m[j]·bsums[j] for u8 weights m (widened to i16) and the Q8_K bsums */
QN_INLINE int dot_bsums(uint8x16_t m, const int16_t *bsums) {
    const int16x8_t m0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(m)));
    const int16x8_t m1 = vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(m)));
    const int16x8_t b0 = vld1q_s16(bsums), b1 = vld1q_s16(bsums + 8);
    int32x4_t s = vmull_s16(vget_low_s16(m0), vget_low_s16(b0));
    s = vmlal_s16(s, vget_high_s16(m0), vget_high_s16(b0));
    s = vmlal_s16(s, vget_low_s16(m1), vget_low_s16(b1));
    s = vmlal_s16(s, vget_high_s16(m1), vget_high_s16(b1));
    return vaddvq_s32(s);
}

QN_INLINE int8x16_t s8(uint8x16_t v) { return vreinterpretq_s8_u8(v); }

QN_INLINE void dot_q2_k_nt_neon(int64_t n, float *out, const void *wv, const uint8_t *a0, size_t as, int nt) {
    const qn_block_q2_k *w = wv;
    float sum[4] = {0};
    const uint8x16_t m3 = vdupq_n_u8(3);
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const qn_block_q2_k *x = &w[ib];
        const uint8x16_t mn = vshrq_n_u8(vld1q_u8(x->scales), 4);
        int32x4_t acc[4];
        for (int t = 0; t < nt; t++) acc[t] = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            uint8x16_t q0 = vld1q_u8(x->qs + 32 * h), q1 = vld1q_u8(x->qs + 32 * h + 16);
            for (int j = 0; j < 4; j++) {
                const int8x16_t w0 = s8(vandq_u8(q0, m3)), w1 = s8(vandq_u8(q1, m3));
                q0 = vshrq_n_u8(q0, 2);
                q1 = vshrq_n_u8(q1, 2);
                const int32_t s0 = x->scales[8 * h + 2 * j] & 15, s1 = x->scales[8 * h + 2 * j + 1] & 15;
                for (int t = 0; t < nt; t++) {
                    const int8_t *ya = QN_Y(t, ib)->qs + 128 * h + 32 * j;
                    acc[t] = sub16(sub16(acc[t], w0, ya, s0), w1, ya + 16, s1);
                }
            }
        }
        for (int t = 0; t < nt; t++) {
            const qn_block_q8_k *y = QN_Y(t, ib);
            sum[t] += kq_term(y->d, x->d, x->dmin, vaddvq_s32(acc[t]), dot_bsums(mn, y->bsums));
        }
    }
    for (int t = 0; t < nt; t++) out[t] = sum[t];
}

QN_INLINE void dot_q3_k_nt_neon(int64_t n, float *out, const void *wv, const uint8_t *a0, size_t as, int nt) {
    const qn_block_q3_k *w = wv;
    float sum[4] = {0};
    const uint8x16_t m3 = vdupq_n_u8(3), m4 = vdupq_n_u8(4);
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const qn_block_q3_k *x = &w[ib];
        uint8_t sc[16];
        qn_q3_k_scales(x->scales, sc);
        const uint8x16_t hm0 = vld1q_u8(x->hmask), hm1 = vld1q_u8(x->hmask + 16);
        int32x4_t acc[4];
        for (int t = 0; t < nt; t++) acc[t] = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            uint8x16_t q0 = vld1q_u8(x->qs + 32 * h), q1 = vld1q_u8(x->qs + 32 * h + 16);
            for (int j = 0; j < 4; j++) {
                /* q = low2 − 4 when the high bit is clear: (low2 | 4·hbit) − 4 */
                const uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << (4 * h + j)));
                const int8x16_t w0 = vsubq_s8(s8(vorrq_u8(vandq_u8(q0, m3), vandq_u8(vtstq_u8(hm0, bit), m4))), s8(m4));
                const int8x16_t w1 = vsubq_s8(s8(vorrq_u8(vandq_u8(q1, m3), vandq_u8(vtstq_u8(hm1, bit), m4))), s8(m4));
                q0 = vshrq_n_u8(q0, 2);
                q1 = vshrq_n_u8(q1, 2);
                const int32_t s0 = sc[8 * h + 2 * j] - 32, s1 = sc[8 * h + 2 * j + 1] - 32;
                for (int t = 0; t < nt; t++) {
                    const int8_t *ya = QN_Y(t, ib)->qs + 128 * h + 32 * j;
                    acc[t] = sub16(sub16(acc[t], w0, ya, s0), w1, ya + 16, s1);
                }
            }
        }
        for (int t = 0; t < nt; t++) sum[t] += kq_term_sym(QN_Y(t, ib)->d, x->d, vaddvq_s32(acc[t]));
    }
    for (int t = 0; t < nt; t++) out[t] = sum[t];
}

/* Q4_K (has_qh = 0) and Q5_K (has_qh = 1): 4 chunks of 64 = two 32-element sub-blocks each. */
QN_INLINE void dot_q45_k_nt_neon(int64_t n, float *out, const void *wv, const uint8_t *a0, size_t as, int nt,
                                 int has_qh) {
    const size_t bb = has_qh ? sizeof(qn_block_q5_k) : sizeof(qn_block_q4_k);
    float sum[4] = {0};
    const uint8x16_t m15 = vdupq_n_u8(15), b4 = vdupq_n_u8(16);
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const uint8_t *x = (const uint8_t *)wv + (size_t)ib * bb;
        const qn_block_q4_k *x4 = (const qn_block_q4_k *)x;
        const uint8_t *qs = has_qh ? ((const qn_block_q5_k *)x)->qs : x4->qs;
        const uint8_t *qh = has_qh ? ((const qn_block_q5_k *)x)->qh : NULL;
        uint8_t sc[8], mn[8];
        qn_q4_k_scales(x4->scales, sc, mn);
        const uint8x8x2_t mz = vzip_u8(vld1_u8(mn), vld1_u8(mn)); /* mn0 mn0 mn1 mn1 ... per bsum */
        const uint8x16_t mnp = vcombine_u8(mz.val[0], mz.val[1]);
        const uint8x16_t qh0 = has_qh ? vld1q_u8(qh) : vdupq_n_u8(0), qh1 = has_qh ? vld1q_u8(qh + 16) : vdupq_n_u8(0);
        int32x4_t acc[4];
        for (int t = 0; t < nt; t++) acc[t] = vdupq_n_s32(0);
        for (int c = 0; c < 4; c++) {
            const uint8x16_t q0 = vld1q_u8(qs + 32 * c), q1 = vld1q_u8(qs + 32 * c + 16);
            uint8x16_t lo0 = vandq_u8(q0, m15), lo1 = vandq_u8(q1, m15);
            uint8x16_t hi0 = vshrq_n_u8(q0, 4), hi1 = vshrq_n_u8(q1, 4);
            if (has_qh) { /* bit 2c of qh[l] -> bit 4 of lo, bit 2c+1 -> bit 4 of hi */
                const uint8x16_t bl = vdupq_n_u8((uint8_t)(1u << (2 * c))), bh = vdupq_n_u8((uint8_t)(2u << (2 * c)));
                lo0 = vorrq_u8(lo0, vandq_u8(vtstq_u8(qh0, bl), b4));
                lo1 = vorrq_u8(lo1, vandq_u8(vtstq_u8(qh1, bl), b4));
                hi0 = vorrq_u8(hi0, vandq_u8(vtstq_u8(qh0, bh), b4));
                hi1 = vorrq_u8(hi1, vandq_u8(vtstq_u8(qh1, bh), b4));
            }
            for (int t = 0; t < nt; t++) {
                const int8_t *ya = QN_Y(t, ib)->qs + 64 * c;
                acc[t] = sub32(acc[t], s8(lo0), s8(lo1), ya, sc[2 * c]);
                acc[t] = sub32(acc[t], s8(hi0), s8(hi1), ya + 32, sc[2 * c + 1]);
            }
        }
        for (int t = 0; t < nt; t++) {
            const qn_block_q8_k *y = QN_Y(t, ib);
            sum[t] += kq_term(y->d, x4->d, x4->dmin, vaddvq_s32(acc[t]), dot_bsums(mnp, y->bsums));
        }
    }
    for (int t = 0; t < nt; t++) out[t] = sum[t];
}

QN_INLINE void dot_q6_k_nt_neon(int64_t n, float *out, const void *wv, const uint8_t *a0, size_t as, int nt) {
    const qn_block_q6_k *w = wv;
    float sum[4] = {0};
    const uint8x16_t m15 = vdupq_n_u8(15), m48 = vdupq_n_u8(0x30), m32 = vdupq_n_u8(32);
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const qn_block_q6_k *x = &w[ib];
        int32x4_t acc[4];
        for (int t = 0; t < nt; t++) acc[t] = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x->ql + 64 * h;
            /* half b of the 32 elements of (h, k): ql byte 32(k&1) + 16b + i, qh byte 16b + i */
            for (int b = 0; b < 2; b++) {
                const uint8x16_t l0 = vld1q_u8(ql + 16 * b), l1 = vld1q_u8(ql + 32 + 16 * b);
                const uint8x16_t qh = vld1q_u8(x->qh + 32 * h + 16 * b);
                /* k = 0..3: low nibble of l0, l1, high nibble of l0, l1; qh bits 2k..2k+1 -> bits 4..5; q = u − 32 */
                const uint8x16_t u[4] = {
                    vorrq_u8(vandq_u8(l0, m15), vandq_u8(vshlq_n_u8(qh, 4), m48)),
                    vorrq_u8(vandq_u8(l1, m15), vandq_u8(vshlq_n_u8(qh, 2), m48)),
                    vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(qh, m48)),
                    vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(qh, 2), m48)),
                };
                for (int k = 0; k < 4; k++) {
                    const int8x16_t q = vsubq_s8(s8(u[k]), s8(m32));
                    const int32_t sc = x->scales[8 * h + 2 * k + b];
                    for (int t = 0; t < nt; t++)
                        acc[t] = sub16(acc[t], q, QN_Y(t, ib)->qs + 128 * h + 32 * k + 16 * b, sc);
                }
            }
        }
        for (int t = 0; t < nt; t++) sum[t] += kq_term_sym(QN_Y(t, ib)->d, x->d, vaddvq_s32(acc[t]));
    }
    for (int t = 0; t < nt; t++) out[t] = sum[t];
}

#undef QN_Y

QN_DEF_KQ_WRAPPERS(dot_q2_k_neon, dot_q2_k_nt_neon(n, out, w, a0, as, nt))
QN_DEF_KQ_WRAPPERS(dot_q3_k_neon, dot_q3_k_nt_neon(n, out, w, a0, as, nt))
QN_DEF_KQ_WRAPPERS(dot_q4_k_neon, dot_q45_k_nt_neon(n, out, w, a0, as, nt, 0))
QN_DEF_KQ_WRAPPERS(dot_q5_k_neon, dot_q45_k_nt_neon(n, out, w, a0, as, nt, 1))
QN_DEF_KQ_WRAPPERS(dot_q6_k_neon, dot_q6_k_nt_neon(n, out, w, a0, as, nt))

/* Q8_K quantizer, bit-identical to qn_quantize_row_q8_k_ref: the signed max is the FIRST element of
 * largest magnitude (vmaxnm skips NaN as the reference's comparison does), q = min(127,
 * round-half-even(iscale·x)) (FCVTNS), d = 1/iscale. */
static void quantize_q8_k_neon(const float *x, void *dst, int64_t n) {
    qn_block_q8_k *y = dst;
    for (int64_t ib = 0; ib < n / QN_QK_K; ib++) {
        const float *xb = x + (size_t)ib * QN_QK_K;
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int i = 0; i < QN_QK_K; i += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(xb + i)));
        const float amax = vmaxnmvq_f32(m);
        if (amax == 0.0f) {
            memset(&y[ib], 0, sizeof y[ib]);
            continue;
        }
        int imax = 0;
        while (fabsf(xb[imax]) != amax) imax++;
        const float iscale = -127.0f / xb[imax];
        const int32x4_t c127 = vdupq_n_s32(127);
        for (int g = 0; g < QN_QK_K / 16; g++) {
            int32x4_t q[4];
            for (int i = 0; i < 4; i++)
                q[i] = vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(xb + 16 * g + 4 * i), iscale)), c127);
            y[ib].bsums[g] = (int16_t)vaddvq_s32(vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3])));
            const int16x8_t p0 = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
            const int16x8_t p1 = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
            vst1q_s8(y[ib].qs + 16 * g, vcombine_s8(vqmovn_s16(p0), vqmovn_s16(p1)));
        }
        y[ib].d = 1.0f / iscale;
    }
}

#endif /* QN_SIMD_NEON */

/* ------------------------------------------------------------------ table */

void QN_ISA_FN(qn_cpu_fill_kquant)(qn_cpu_kernels *k) {
    k->vec_dot[QN_QFORMAT_Q2_K] = dot_q2_k_scalar;
    k->vec_dot[QN_QFORMAT_Q3_K] = dot_q3_k_scalar;
    k->vec_dot[QN_QFORMAT_Q4_K] = dot_q4_k_scalar;
    k->vec_dot[QN_QFORMAT_Q5_K] = dot_q5_k_scalar;
    k->vec_dot[QN_QFORMAT_Q6_K] = dot_q6_k_scalar;
    k->from_float[QN_QFORMAT_Q8_K] = qn_quantize_row_q8_k_ref;
#if defined(QN_SIMD_X86)
    k->vec_dot[QN_QFORMAT_Q2_K] = dot_q2_k_avx2;
    k->vec_dot[QN_QFORMAT_Q3_K] = dot_q3_k_avx2;
    k->vec_dot[QN_QFORMAT_Q4_K] = dot_q4_k_avx2;
    k->vec_dot[QN_QFORMAT_Q5_K] = dot_q5_k_avx2;
    k->vec_dot[QN_QFORMAT_Q6_K] = dot_q6_k_avx2;
    k->vec_dot_x4[QN_QFORMAT_Q2_K] = dot_q2_k_avx2_x4;
    k->vec_dot_x4[QN_QFORMAT_Q3_K] = dot_q3_k_avx2_x4;
    k->vec_dot_x4[QN_QFORMAT_Q4_K] = dot_q4_k_avx2_x4;
    k->vec_dot_x4[QN_QFORMAT_Q5_K] = dot_q5_k_avx2_x4;
    k->vec_dot_x4[QN_QFORMAT_Q6_K] = dot_q6_k_avx2_x4;
    k->vec_dot_tile[QN_QFORMAT_Q4_K] = dot_q4_k_tile_avx2;
    k->vec_dot_tile_rows[QN_QFORMAT_Q4_K] = QN_Q4K_TILE_ROWS;
    k->matmul_x8[QN_QFORMAT_Q2_K] = QN_ISA_FN(qn_kx8_matmul_q2k);
    k->matmul_x8[QN_QFORMAT_Q3_K] = QN_ISA_FN(qn_kx8_matmul_q3k);
    k->matmul_x8[QN_QFORMAT_Q4_K] = QN_ISA_FN(qn_kx8_matmul_q4k);
    k->matmul_x8[QN_QFORMAT_Q5_K] = QN_ISA_FN(qn_kx8_matmul_q5k);
    k->matmul_x8[QN_QFORMAT_Q6_K] = QN_ISA_FN(qn_kx8_matmul_q6k);
    k->from_float[QN_QFORMAT_Q8_K] = quantize_q8_k_avx2;
#elif defined(QN_SIMD_NEON)
    k->vec_dot[QN_QFORMAT_Q2_K] = dot_q2_k_neon;
    k->vec_dot[QN_QFORMAT_Q3_K] = dot_q3_k_neon;
    k->vec_dot[QN_QFORMAT_Q4_K] = dot_q4_k_neon;
    k->vec_dot[QN_QFORMAT_Q5_K] = dot_q5_k_neon;
    k->vec_dot[QN_QFORMAT_Q6_K] = dot_q6_k_neon;
    k->vec_dot_x4[QN_QFORMAT_Q2_K] = dot_q2_k_neon_x4;
    k->vec_dot_x4[QN_QFORMAT_Q3_K] = dot_q3_k_neon_x4;
    k->vec_dot_x4[QN_QFORMAT_Q4_K] = dot_q4_k_neon_x4;
    k->vec_dot_x4[QN_QFORMAT_Q5_K] = dot_q5_k_neon_x4;
    k->vec_dot_x4[QN_QFORMAT_Q6_K] = dot_q6_k_neon_x4;
    k->from_float[QN_QFORMAT_Q8_K] = quantize_q8_k_neon;
#endif
}
