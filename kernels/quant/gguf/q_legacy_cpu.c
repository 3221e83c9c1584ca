/* q_legacy_cpu.c — Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 weight rows against Q8_0/Q8_1 activation rows, and the
 * Q8_0/Q8_1 activation quantizers; compiled once per ISA. The dot products are integer sums per
 * 32-element block scaled by d_w·d_a in fp32, as llama.cpp does them:
 *   q4_0·q8_0 = Σ_b d_w d_a Σ (q_w−8) q_a          q4_1·q8_1 = Σ_b d_w d_a Σ q_w q_a + m_w s_a
 * The integer part is exact everywhere; the SIMD paths accumulate the per-lane products in 8 fp32
 * lanes (AVX2) or 4 (NEON), so they differ from the scalar path by fp32 rounding only. The x4 variants run the same
 * per-token instruction sequence as the 1-token ones, and the Q4_1 register tile (rows × 4 tokens)
 * the same per-output arithmetic, so their results are bit-identical. The Q4_0×8 / Q5_0×8 / Q5_1×8 / Q8_0×8 tiles
 * over the load-time repack (kx8.h) follow the scalar path's order instead, bit for bit. */
#include <stddef.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/isa.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/gguf_dequant.h"
#include "kernels/quant/gguf/gguf_ref.h"
#include "kernels/quant/gguf/kx8.h"

/* ------------------------------------------------------------------ scalar (every ISA) */

static void dot_q4_0_scalar(int64_t n, float *out, const void *wv, const void *av) {
    const qn_block_q4_0 *w = wv;
    const qn_block_q8_0 *a = av;
    float sum = 0.0f;
    for (int64_t ib = 0; ib < n / QN_QK4_0; ib++) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += ((w[ib].qs[j] & 15) - 8) * a[ib].qs[j] + ((w[ib].qs[j] >> 4) - 8) * a[ib].qs[j + 16];
        sum += (float)s * (qn_cpu_h2f(w[ib].d) * qn_cpu_h2f(a[ib].d));
    }
    *out = sum;
}

static void dot_q4_1_scalar(int64_t n, float *out, const void *wv, const void *av) {
    const qn_block_q4_1 *w = wv;
    const qn_block_q8_1 *a = av;
    float sum = 0.0f, summ = 0.0f;
    for (int64_t ib = 0; ib < n / QN_QK4_1; ib++) {
        int s = 0;
        for (int j = 0; j < 16; j++) s += (w[ib].qs[j] & 15) * a[ib].qs[j] + (w[ib].qs[j] >> 4) * a[ib].qs[j + 16];
        sum += (float)s * (qn_cpu_h2f(w[ib].d) * qn_cpu_h2f(a[ib].d));
        summ += qn_cpu_h2f(w[ib].m) * qn_cpu_h2f(a[ib].s);
    }
    *out = sum + summ;
}

static void dot_q5_0_scalar(int64_t n, float *out, const void *wv, const void *av) {
    const qn_block_q5_0 *w = wv;
    const qn_block_q8_0 *a = av;
    float sum = 0.0f;
    for (int64_t ib = 0; ib < n / QN_QK5_0; ib++) {
        const uint32_t qh = qn_gguf_le32(w[ib].qh);
        int s = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = ((w[ib].qs[j] & 15) | (int)((qh >> j) & 1) << 4) - 16;
            const int q1 = ((w[ib].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - 16;
            s += q0 * a[ib].qs[j] + q1 * a[ib].qs[j + 16];
        }
        sum += (float)s * (qn_cpu_h2f(w[ib].d) * qn_cpu_h2f(a[ib].d));
    }
    *out = sum;
}

static void dot_q5_1_scalar(int64_t n, float *out, const void *wv, const void *av) {
    const qn_block_q5_1 *w = wv;
    const qn_block_q8_1 *a = av;
    float sum = 0.0f, summ = 0.0f;
    for (int64_t ib = 0; ib < n / QN_QK5_1; ib++) {
        const uint32_t qh = qn_gguf_le32(w[ib].qh);
        int s = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = (w[ib].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            const int q1 = (w[ib].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            s += q0 * a[ib].qs[j] + q1 * a[ib].qs[j + 16];
        }
        sum += (float)s * (qn_cpu_h2f(w[ib].d) * qn_cpu_h2f(a[ib].d));
        summ += qn_cpu_h2f(w[ib].m) * qn_cpu_h2f(a[ib].s);
    }
    *out = sum + summ;
}

static void dot_q8_0_scalar(int64_t n, float *out, const void *wv, const void *av) {
    const qn_block_q8_0 *w = wv;
    const qn_block_q8_0 *a = av;
    float sum = 0.0f;
    for (int64_t ib = 0; ib < n / QN_QK8_0; ib++) {
        int s = 0;
        for (int j = 0; j < QN_QK8_0; j++) s += w[ib].qs[j] * a[ib].qs[j];
        sum += (float)s * (qn_cpu_h2f(w[ib].d) * qn_cpu_h2f(a[ib].d));
    }
    *out = sum;
}

/* ------------------------------------------------------------------ x86: AVX2 (AVX-512 reuses it) */
#if defined(QN_SIMD_X86)

QN_INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 16 bytes of nibbles -> 32 bytes 0..15 in element order (low nibbles 0..15, then high 16..31). */
QN_INLINE __m256i nibbles32(const uint8_t *p) {
    const __m128i b = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0f));
}

/* 32 bits of qh -> 32 bytes, 0xff where bit e is set. Byte e takes source byte e/8 and tests bit e%8. */
QN_INLINE __m256i bits32(const uint8_t *qh) {
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qn_gguf_le32(qh)), pick);
    return _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
}

/* Σ of 4 adjacent products u8·s8 per i32 lane (the i16 pair sums cannot saturate: |q_a| <= 127). */
QN_INLINE __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* Weight decoders: block ib -> 32 signed (S) or unsigned (U) bytes in element order. */
QN_INLINE __m256i dec_q4_0(const void *w, int64_t ib) {
    return _mm256_sub_epi8(nibbles32(((const qn_block_q4_0 *)w)[ib].qs), _mm256_set1_epi8(8));
}
QN_INLINE __m256i dec_q5_0(const void *w, int64_t ib) {
    const qn_block_q5_0 *b = (const qn_block_q5_0 *)w + ib;
    /* q - 16 = nibble with 0xf0 or'd in where the fifth bit is clear (two's complement) */
    return _mm256_or_si256(nibbles32(b->qs), _mm256_andnot_si256(bits32(b->qh), _mm256_set1_epi8((char)0xf0)));
}
QN_INLINE __m256i dec_q8_0(const void *w, int64_t ib) {
    return _mm256_loadu_si256((const __m256i *)((const qn_block_q8_0 *)w)[ib].qs);
}
QN_INLINE __m256i dec_q4_1(const void *w, int64_t ib) { return nibbles32(((const qn_block_q4_1 *)w)[ib].qs); }
QN_INLINE __m256i dec_q5_1(const void *w, int64_t ib) {
    const qn_block_q5_1 *b = (const qn_block_q5_1 *)w + ib;
    return _mm256_or_si256(nibbles32(b->qs), _mm256_and_si256(bits32(b->qh), _mm256_set1_epi8(0x10)));
}

/* 4 fp16 values at p, p + stride, ... -> 4 floats (the scales of 4 consecutive blocks). */
QN_INLINE __m128 load4_f16(const uint8_t *p, size_t stride) {
    uint16_t h[4];
    for (int i = 0; i < 4; i++) memcpy(&h[i], p + (size_t)i * stride, 2);
    return _mm_cvtph_ps(_mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], 0, 0, 0, 0));
}

/* Weight rows (block stride WB, d @0 and, with HAS_MIN, m @2) · Q8_0 rows (HAS_MIN = 0, symmetric
 * weights, signed codes) or Q8_1 rows (HAS_MIN = 1, unsigned codes, min term m_w·s_a), nt tokens.
 * Blocks go in groups of 4 so that the d_w·d_a products (and m_w·s_a) are one 4-lane multiply
 * instead of 4 scalar conversions + multiplies + broadcasts; that is ~a quarter of the per-block
 * instruction count, which is what bounds this loop (decode is compute-bound at ~15 ops/block).
 * The last nb % 4 blocks take the one-block path. x1 and x4 run the same per-token sequence. */
#define QN_DEF_DOT_LEGACY_AVX2(name, DEC, WB, HAS_MIN)                                                   \
    QN_INLINE void name##_nt(int64_t n, float *out, const void *w, const uint8_t *a0, size_t as, int nt) { \
        const size_t ab = HAS_MIN ? sizeof(qn_block_q8_1) : sizeof(qn_block_q8_0);                      \
        const size_t qoff = HAS_MIN ? offsetof(qn_block_q8_1, qs) : offsetof(qn_block_q8_0, qs);        \
        const uint8_t *wb = w;                                                                          \
        const int64_t nb = n / 32;                                                                      \
        __m256 acc[4];                                                                                  \
        float summ[4];                                                                                  \
        for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps(), summ[t] = 0.0f; \
        int64_t ib = 0;                                                                                 \
        for (; ib + 4 <= nb; ib += 4) {                                                                 \
            const __m128 dw = load4_f16(wb + (size_t)ib * (WB), WB);                                    \
            __m128 sc[4];                                                                               \
            for (int t = 0; t < nt; t++) {                                                              \
                const uint8_t *ap = a0 + (size_t)t * as + (size_t)ib * ab;                              \
                sc[t] = _mm_mul_ps(dw, load4_f16(ap, ab));                                              \
                if (HAS_MIN) { /* m_w·s_a summed block by block with one rounding each, as llama.cpp */ \
                    float mw[4], sa[4];                                                                 \
                    _mm_storeu_ps(mw, load4_f16(wb + (size_t)ib * (WB) + 2, WB));                       \
                    _mm_storeu_ps(sa, load4_f16(ap + 2, ab));                                           \
                    for (int j = 0; j < 4; j++) summ[t] = fmaf(mw[j], sa[j], summ[t]);                  \
                }                                                                                       \
            }                                                                                           \
            for (int j = 0; j < 4; j++) {                                                               \
                const __m256i qw = DEC(w, ib + j);                                                      \
                const __m256i uw = HAS_MIN ? qw : _mm256_sign_epi8(qw, qw);                             \
                const __m256i lane = _mm256_set1_epi32(j);                                              \
                for (int t = 0; t < nt; t++) {                                                          \
                    const uint8_t *ap = a0 + (size_t)t * as + (size_t)(ib + j) * ab;                    \
                    __m256i qa = _mm256_loadu_si256((const __m256i *)(ap + qoff));                      \
                    if (!HAS_MIN) qa = _mm256_sign_epi8(qa, qw);                                        \
                    const __m256 d = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(sc[t]), lane);     \
                    acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8s8(uw, qa)), acc[t]);          \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
        for (; ib < nb; ib++) {                                                                         \
            uint16_t dm[2];                                                                             \
            memcpy(dm, wb + (size_t)ib * (WB), 4);                                                      \
            const float dw = qn_cpu_h2f(dm[0]);                                                         \
            const __m256i qw = DEC(w, ib);                                                              \
            const __m256i uw = HAS_MIN ? qw : _mm256_sign_epi8(qw, qw);                                 \
            for (int t = 0; t < nt; t++) {                                                              \
                const uint8_t *ap = a0 + (size_t)t * as + (size_t)ib * ab;                              \
                uint16_t ds[2];                                                                         \
                memcpy(ds, ap, 4);                                                                      \
                __m256i qa = _mm256_loadu_si256((const __m256i *)(ap + qoff));                          \
                if (!HAS_MIN) qa = _mm256_sign_epi8(qa, qw);                                            \
                const __m256 p = _mm256_cvtepi32_ps(dot_u8s8(uw, qa));                                  \
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * qn_cpu_h2f(ds[0])), p, acc[t]);            \
                if (HAS_MIN) summ[t] = fmaf(qn_cpu_h2f(dm[1]), qn_cpu_h2f(ds[1]), summ[t]);             \
            }                                                                                           \
        }                                                                                               \
        for (int t = 0; t < nt; t++)                                                                    \
            out[t] = HAS_MIN ? hsum256(acc[t]) + summ[t] : hsum256(acc[t]);                             \
    }                                                                                                   \
    static void name(int64_t n, float *out, const void *w, const void *a) { name##_nt(n, out, w, a, 0, 1); } \
    static void name##_x4(int64_t n, float *out, const void *w, const void *a, size_t as) {             \
        name##_nt(n, out, w, a, as, 4);                                                                 \
    }

QN_DEF_DOT_LEGACY_AVX2(dot_q4_0_avx2, dec_q4_0, sizeof(qn_block_q4_0), 0)
QN_DEF_DOT_LEGACY_AVX2(dot_q5_0_avx2, dec_q5_0, sizeof(qn_block_q5_0), 0)
QN_DEF_DOT_LEGACY_AVX2(dot_q8_0_avx2, dec_q8_0, sizeof(qn_block_q8_0), 0)
QN_DEF_DOT_LEGACY_AVX2(dot_q4_1_avx2, dec_q4_1, sizeof(qn_block_q4_1), 1)
QN_DEF_DOT_LEGACY_AVX2(dot_q5_1_avx2, dec_q5_1, sizeof(qn_block_q5_1), 1)

/* -------------------------------------------------------- x86: Q4_0×8, Q5_0×8, Q5_1×8, Q8_0×8 register tiles
 * 8 weight rows (the lanes) × 1-4 tokens over the load-time repacked groups (kx8.h): per 4-element step one maddubs of
 * the 8 rows' codes (one 32-byte load) with the token's 4 activations broadcast. Each block's integer Σ q_w·q_a is exact
 * and each row's sum takes sum += (float)s · (d_w·d_a) block after block (Q5_1 also summ += m_w·s_a, and sum + summ at
 * the end), the scalar dot's operations in its order: every output is bit-identical to dot_q*_scalar (the 1-row AVX2
 * dots sum in lanes and differ from it by rounding).
 * Q4_0: the codes unsigned (0..15), 8 steps summed in i16 (8·2·15·127 = 30480), the −8 taken back as 8·Σ q_a of the
 * block (lx8_tok_table, once per 4 tokens for all the call's groups). Q5_0 / Q5_1: the codes with their fifth bit
 * (0..31; kx8.h's H row: one shift and one AND per 32 bytes), 4 steps in i16 (4·2·31·127 = 31496); Q5_0 takes back
 * 16·Σ q_a. Q8_0: signed codes, |w|·sign(a, w) as Q8_0's dot does, in i32. */
/* The 4 tokens' per-block data a tile reads instead of deriving it per group: the correction 8·Σ q_a (Q4_0) or
 * 16·Σ q_a (Q5_0), d_a, and Q5_1's s_a (its Q8_1 block's d·Σ q_a). */
typedef struct lx8_tok {
    int32_t corr[4];
    float da[4], sa[4];
} lx8_tok;

/* the activation block ib of token row a: Q8_1 for Q5_1 (qs at byte 4), else Q8_0 (qs at byte 2) */
QN_INLINE const int8_t *lx8_act_qs(qn_qformat fmt, const uint8_t *a, int64_t ib) {
    return fmt == QN_QFORMAT_Q5_1 ? ((const qn_block_q8_1 *)(const void *)a + ib)->qs
                                  : ((const qn_block_q8_0 *)(const void *)a + ib)->qs;
}

/* i16 lanes: the 8 rows' codes of qs dword j (lo: elements 4j..4j+3, hi: 16 + 4j..) against token row aq's */
QN_INLINE __m256i lx8_codes_dot(__m256i lo, __m256i hi, const int8_t *aq, int j) {
    int32_t a0, a1;
    memcpy(&a0, aq + 4 * j, 4);
    memcpy(&a1, aq + 16 + 4 * j, 4);
    return _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_set1_epi32(a0)), _mm256_maddubs_epi16(hi, _mm256_set1_epi32(a1)));
}

QN_INLINE void lx8_block(qn_qformat fmt, const uint8_t *g, const uint8_t *a, size_t as, int64_t ib, const int nt,
                         const lx8_tok *tb, __m256 sum[4], __m256 summ[4]) {
    const __m256i ones16 = _mm256_set1_epi16(1);
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
    const int8_t *aq[4];
    for (int t = 0; t < nt; t++) aq[t] = lx8_act_qs(fmt, a + (size_t)t * as, ib);
    __m256i is[4];
    if (fmt != QN_QFORMAT_Q8_0) { /* Q4_0, Q5_0, Q5_1: dword j holds elements 4j..4j+3 (low nibbles), 16 + 4j.. (high) */
        const bool q5 = fmt != QN_QFORMAT_Q4_0;
        const int qs = q5 ? QN_Q5X8_QS_BYTE(fmt) : QN_LX8_QS_BYTE;
        const __m256i m15 = _mm256_set1_epi8(15), m16 = _mm256_set1_epi8(16);
        const __m256i h = q5 ? _mm256_loadu_si256((const __m256i *)(g + QN_Q5X8_H_BYTE(fmt))) : m16; /* Q4_0: unused */
        __m256i acc[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(g + qs + 32 * j));
            __m256i lo = _mm256_and_si256(v, m15), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m15);
            if (q5) { /* each code's fifth bit from H (kx8.h) */
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(h, 4 - j), m16));
                hi = _mm256_or_si256(hi, _mm256_and_si256(j ? _mm256_srli_epi16(h, j) : h, m16));
            }
            const int first = q5 ? j % 2 == 0 : j == 0, last = q5 ? j % 2 == 1 : j == 3; /* one i16 run */
            for (int t = 0; t < nt; t++) {
                const __m256i p = lx8_codes_dot(lo, hi, aq[t], j);
                acc[t] = first ? p : _mm256_add_epi16(acc[t], p);
                __asm__("" : "+x"(acc[t])); /* summed as it goes: no spilled products */
            }
            if (last)
                for (int t = 0; t < nt; t++) {
                    const __m256i s32 = _mm256_madd_epi16(acc[t], ones16);
                    is[t] = q5 && j == 3 ? _mm256_add_epi32(is[t], s32) : s32; /* Q5_x: two runs */
                }
        }
        if (fmt != QN_QFORMAT_Q5_1)
            for (int t = 0; t < nt; t++) is[t] = _mm256_sub_epi32(is[t], _mm256_set1_epi32(tb->corr[t]));
    } else { /* Q8_0 */
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(g + QN_LX8_QS_BYTE + 32 * j));
            const __m256i u = _mm256_sign_epi8(v, v);
            for (int t = 0; t < nt; t++) {
                int32_t a4;
                memcpy(&a4, aq[t] + 4 * j, 4);
                const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_sign_epi8(_mm256_set1_epi32(a4), v)), ones16);
                is[t] = j ? _mm256_add_epi32(is[t], p) : p;
            }
        }
    }
    for (int t = 0; t < nt; t++)
        sum[t] = _mm256_add_ps(sum[t], _mm256_mul_ps(_mm256_cvtepi32_ps(is[t]), _mm256_mul_ps(dw, _mm256_set1_ps(tb->da[t]))));
    if (fmt == QN_QFORMAT_Q5_1) {
        const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + QN_Q51X8_M_BYTE)));
        for (int t = 0; t < nt; t++) summ[t] = _mm256_add_ps(summ[t], _mm256_mul_ps(mw, _mm256_set1_ps(tb->sa[t])));
    }
}

/* tb[ib] for the nt tokens at a (stride as) and blocks ib < nb: d_a, Q5_1's s_a, and for Q4_0 / Q5_0 the correction
 * (4 tokens reduced at once) */
QN_INLINE void lx8_tok_table(qn_qformat fmt, const uint8_t *a, size_t as, int nt, int64_t nb, lx8_tok *tb) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    const bool corr = fmt == QN_QFORMAT_Q4_0 || fmt == QN_QFORMAT_Q5_0;
    for (int64_t ib = 0; ib < nb; ib++) {
        __m256i s8[4];
        for (int t = 0; t < 4; t++) {
            s8[t] = _mm256_setzero_si256(), tb[ib].da[t] = 0.0f, tb[ib].sa[t] = 0.0f;
            if (t >= nt) continue;
            const uint8_t *at = a + (size_t)t * as;
            if (corr)
                s8[t] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)lx8_act_qs(fmt, at, ib))), ones16);
            if (fmt == QN_QFORMAT_Q5_1) {
                const qn_block_q8_1 *yb = (const qn_block_q8_1 *)(const void *)at + ib;
                tb[ib].da[t] = qn_cpu_h2f(yb->d), tb[ib].sa[t] = qn_cpu_h2f(yb->s);
            } else {
                tb[ib].da[t] = qn_cpu_h2f(((const qn_block_q8_0 *)(const void *)at + ib)->d);
            }
        }
        __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s8[0], s8[1]), _mm256_hadd_epi32(s8[2], s8[3]));
        h = _mm256_add_epi32(h, _mm256_permute2x128_si256(h, h, 1));
        _mm_storeu_si128((__m128i *)tb[ib].corr, _mm_slli_epi32(_mm256_castsi256_si128(h), fmt == QN_QFORMAT_Q5_0 ? 4 : 3));
    }
}

/* 8 rows (group block row w) × nt tokens (nt: a compile-time constant 1..4) over all n / 32 blocks */
QN_INLINE void lx8_tile(qn_qformat fmt, int64_t n, const uint8_t *w, const uint8_t *a, size_t as, const int nt,
                        const lx8_tok *tb, bool carry, float *y, int64_t ldy) {
    __m256 sum[4], summ[4]; /* carry: the sums so far are in y (an earlier slice of the row; never Q5_1: kx8.h) */
    for (int t = 0; t < nt; t++) sum[t] = carry ? _mm256_loadu_ps(y + t * ldy) : _mm256_setzero_ps(), summ[t] = _mm256_setzero_ps();
    const size_t gb = qn_kx8_block_bytes(fmt);
    for (int64_t ib = 0; ib < n / 32; ib++) {
        if (ib % 4 == 0) /* 4 group blocks ahead, as kq_cpu.c's tile (a prefetch past the end never faults) */
            for (size_t i = 0; i < 4 * gb; i += 64) _mm_prefetch((const char *)((uintptr_t)w + (size_t)(ib + 4) * gb + i), _MM_HINT_T0);
        lx8_block(fmt, w + (size_t)ib * gb, a, as, ib, nt, tb + ib, sum, summ);
    }
    for (int t = 0; t < nt; t++)
        _mm256_storeu_ps(y + t * ldy, fmt == QN_QFORMAT_Q5_1 ? _mm256_add_ps(sum[t], summ[t]) : sum[t]);
}

/* matmul_x8 (cpu_kernels.h) of fmt: 4 tokens at a time (then the 1..3 left), their block table made once for every
 * group of the call (qn_cpu_matmul_x8 gives these formats several groups per call); k up to QN_LX8_MAX_BLOCKS blocks
 * (the table on the stack), longer rows in slices with the sums carried in y (the same fp32 sequence). */
QN_INLINE void lx8_matmul(qn_qformat fmt, int64_t n, const void *w8, int64_t n_groups, const void *a, size_t as,
                          int64_t n_tok, float *y, int64_t ldy) {
    const int64_t nb = n / 32;
    const size_t gbytes = (size_t)nb * qn_kx8_block_bytes(fmt);
    const size_t ab = fmt == QN_QFORMAT_Q5_1 ? sizeof(qn_block_q8_1) : sizeof(qn_block_q8_0);
    lx8_tok tb[QN_LX8_MAX_BLOCKS];
    for (int64_t t = 0; t < n_tok; t += 4) {
        const int nt = n_tok - t < 4 ? (int)(n_tok - t) : 4;
        for (int64_t b0 = 0; b0 < nb; b0 += QN_LX8_MAX_BLOCKS) { /* one slice unless k > 32768 */
            const int64_t sb = nb - b0 < QN_LX8_MAX_BLOCKS ? nb - b0 : QN_LX8_MAX_BLOCKS;
            const uint8_t *at = (const uint8_t *)a + (size_t)t * as + (size_t)b0 * ab;
            lx8_tok_table(fmt, at, as, nt, sb, tb);
            for (int64_t g = 0; g < n_groups; g++) {
                const uint8_t *w = (const uint8_t *)w8 + (size_t)g * gbytes + (size_t)b0 * qn_kx8_block_bytes(fmt);
                float *yg = y + t * ldy + g * QN_KX8_ROWS;
                switch (nt) {
                case 4: lx8_tile(fmt, 32 * sb, w, at, as, 4, tb, b0 > 0, yg, ldy); break;
                case 3: lx8_tile(fmt, 32 * sb, w, at, as, 3, tb, b0 > 0, yg, ldy); break;
                case 2: lx8_tile(fmt, 32 * sb, w, at, as, 2, tb, b0 > 0, yg, ldy); break;
                default: lx8_tile(fmt, 32 * sb, w, at, as, 1, tb, b0 > 0, yg, ldy); break;
                }
            }
        }
    }
}
#define QN_DEF_LX8_MATMUL(name, FMT)                                                                                 \
    static void name(int64_t n, const void *w8, int64_t n_groups, const void *a, size_t as, int64_t n_tok, float *y, \
                     int64_t ldy) {                                                                                  \
        lx8_matmul(FMT, n, w8, n_groups, a, as, n_tok, y, ldy);                                                      \
    }
QN_DEF_LX8_MATMUL(matmul_q4_0x8_avx2, QN_QFORMAT_Q4_0)
QN_DEF_LX8_MATMUL(matmul_q5_0x8_avx2, QN_QFORMAT_Q5_0)
QN_DEF_LX8_MATMUL(matmul_q5_1x8_avx2, QN_QFORMAT_Q5_1)
QN_DEF_LX8_MATMUL(matmul_q8_0x8_avx2, QN_QFORMAT_Q8_0)

/* ------------------------------------------------------------------ x86: Q4_1 register tile
 * R weight rows × 4 tokens at a time (vec_dot_tile): each decoded weight block serves 4 tokens and
 * each activation block R rows, so the block's cost falls to the integer dot, its conversion and
 * the scaled accumulate. Every output keeps vec_dot's own 8-lane accumulator in a ymm and sees the
 * same sequence (acc = fma(d_w·d_a, (float)Σ_4 q_w q_a, acc) block by block, then hsum256, then +
 * the fma chain Σ m_w·s_a), so the results are bit-identical. The d_w·d_a products and the m_w·s_a
 * chains run in a pass of their own over QN_TILE_CHUNK blocks (one vector op for all R rows of a
 * token), and the main loop broadcasts its scale from that buffer. One output per ymm measured
 * faster on Zen 4 than two outputs per zmm (whose per-pair scale broadcast is a shuffle). */
#define QN_TILE_MAX_BLOCKS 1024 /* k <= 32768: the R rows' (d, m) sit on the stack (32 KiB) */
#define QN_TILE_CHUNK 32        /* blocks per pass of the scale products */
#define QN_TILE_TS_FLOATS 8192  /* the tokens' (d, s) as floats, 32 KiB: >= 4 tokens for any k allowed */

/* Rows [r0, r1) × n_tok tokens through the 1-row × 4-token kernel (the tiles' leftovers). */
static void q4_1_rows_x4(int64_t n, const uint8_t *w, size_t ws, int64_t r0, int64_t r1, const uint8_t *a, size_t as,
                         int64_t n_tok, float *y, int64_t ldy) {
    for (int64_t r = r0; r < r1; r++)
        for (int64_t t = 0; t < n_tok; t += 4) {
            float o[4];
            const int nt = n_tok - t < 4 ? (int)(n_tok - t) : 4;
            dot_q4_1_avx2_nt(n, o, w + (size_t)r * ws, a + (size_t)t * as, as, nt);
            for (int j = 0; j < nt; j++) y[(t + j) * ldy + r] = o[j];
        }
}

/* R rows × 4 tokens over all nb blocks. dm: [nb][d | m][row] fp16 of the R rows (lanes >= R unused);
 * ts: [nb] d0 s0 d1 s1 d2 s2 d3 s3 of the 4 tokens as floats. */
#define QN_DEF_Q4_1_TILE(name, ATTR, DOT8, R)                                                            \
    ATTR static void name##_rx4(int64_t nb, const uint8_t *w, size_t ws, const uint16_t (*dm)[2][8],      \
                                const float (*ts)[8], const uint8_t *a, size_t as, float *y, int64_t ldy) { \
        const size_t wbb = sizeof(qn_block_q4_1), abb = sizeof(qn_block_q8_1);                          \
        __m256 acc[R][4];                                                                                \
        __m256 summ[4];                /* [token], lane = row */                                         \
        float dd[QN_TILE_CHUNK][4][8]; /* d_w·d_a [block][token][row] */                                \
        for (int t = 0; t < 4; t++) {                                                                    \
            summ[t] = _mm256_setzero_ps();                                                               \
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_setzero_ps();                                 \
        }                                                                                                \
        for (int64_t c0 = 0; c0 < nb; c0 += QN_TILE_CHUNK) {                                             \
            const int64_t c1 = c0 + QN_TILE_CHUNK < nb ? c0 + QN_TILE_CHUNK : nb;                        \
            for (int64_t ib = c0; ib < c1; ib++) {                                                       \
                const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dm[ib][0]));          \
                const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dm[ib][1]));          \
                for (int t = 0; t < 4; t++) {                                                            \
                    _mm256_storeu_ps(dd[ib - c0][t], _mm256_mul_ps(dw, _mm256_broadcast_ss(&ts[ib][2 * t]))); \
                    summ[t] = _mm256_fmadd_ps(mw, _mm256_broadcast_ss(&ts[ib][2 * t + 1]), summ[t]);     \
                }                                                                                        \
            }                                                                                            \
            for (int64_t ib = c0; ib < c1; ib++) {                                                       \
                __m256i qw[R];                                                                           \
                for (int r = 0; r < R; r++) qw[r] = nibbles32(w + (size_t)r * ws + (size_t)ib * wbb + 4); \
                for (int t = 0; t < 4; t++) {                                                            \
                    const __m256i qa = _mm256_loadu_si256((const __m256i *)(a + (size_t)t * as + (size_t)ib * abb + 4)); \
                    for (int r = 0; r < R; r++)                                                          \
                        acc[r][t] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dd[ib - c0][t][r]),             \
                                                    _mm256_cvtepi32_ps(DOT8(qw[r], qa)), acc[r][t]);     \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
        for (int t = 0; t < 4; t++) {                                                                    \
            float sm[8];                                                                                 \
            _mm256_storeu_ps(sm, summ[t]);                                                               \
            for (int r = 0; r < R; r++) y[t * ldy + r] = hsum256(acc[r][t]) + sm[r];                     \
        }                                                                                                \
    }                                                                                                    \
    ATTR static void name(int64_t n, const void *w, size_t ws, int64_t n_rows, const void *a, size_t as,  \
                          int64_t n_tok, float *y, int64_t ldy) {                                        \
        const int64_t nb = n / 32;                                                                       \
        const uint8_t *wb = w, *ab = a;                                                                  \
        if (nb > QN_TILE_MAX_BLOCKS) {                                                                   \
            q4_1_rows_x4(n, wb, ws, 0, n_rows, ab, as, n_tok, y, ldy);                                   \
            return;                                                                                      \
        }                                                                                                \
        /* tokens in runs whose (d, s) fit the buffer; rows in tiles of R, the rest 1 row × 4 tokens */  \
        const int64_t run = QN_TILE_TS_FLOATS / (8 * nb) * 4;                                            \
        for (int64_t t0 = 0; t0 < n_tok; t0 += run) {                                                    \
            const int64_t nt = n_tok - t0 < run ? n_tok - t0 : run, nt4 = nt & ~(int64_t)3;              \
            float ts[QN_TILE_TS_FLOATS / 8][8]; /* [token group][block] */                               \
            for (int64_t g = 0; g < nt4 / 4; g++)                                                        \
                for (int64_t ib = 0; ib < nb; ib++) {                                                    \
                    uint32_t h[4];                                                                       \
                    for (int t = 0; t < 4; t++)                                                          \
                        memcpy(&h[t], ab + (size_t)(t0 + 4 * g + t) * as + (size_t)ib * sizeof(qn_block_q8_1), 4); \
                    _mm256_storeu_ps(ts[g * nb + ib], _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)));  \
                }                                                                                        \
            int64_t r = 0;                                                                               \
            for (; r + R <= n_rows; r += R) {                                                            \
                uint16_t dm[QN_TILE_MAX_BLOCKS][2][8];                                                   \
                for (int64_t ib = 0; ib < nb; ib++)                                                      \
                    for (int i = 0; i < 8; i++) {                                                        \
                        const qn_block_q4_1 *b = (const qn_block_q4_1 *)(const void *)(wb + (size_t)(r + i) * ws) + ib; \
                        dm[ib][0][i] = i < R ? b->d : 0, dm[ib][1][i] = i < R ? b->m : 0;                \
                    }                                                                                    \
                for (int64_t t = 0; t < nt4; t += 4)                                                     \
                    name##_rx4(nb, wb + (size_t)r * ws, ws, (const uint16_t(*)[2][8])dm,                 \
                               (const float(*)[8])ts[t / 4 * nb], ab + (size_t)(t0 + t) * as, as,        \
                               y + (t0 + t) * ldy + r, ldy);                                             \
            }                                                                                            \
            q4_1_rows_x4(n, wb, ws, r, n_rows, ab + (size_t)t0 * as, as, nt4, y + t0 * ldy, ldy);        \
            q4_1_rows_x4(n, wb, ws, 0, n_rows, ab + (size_t)(t0 + nt4) * as, as, nt - nt4, y + (t0 + nt4) * ldy, ldy); \
        }                                                                                                \
    }

#if defined(QN_SIMD_X86_512)
/* 32 vector registers: 4 rows × 4 tokens = 16 accumulators + 4 weight blocks (measured: 5 rows is
 * 3% faster alone but leaves rows over from the runtime's 4-row split, 6 spills). VNNI's vpdpbusd
 * gives the same exact i32 sums as maddubs + madd in one instruction. */
#define QN_DOT8_VNNI(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#define QN_Q4_1_TILE_ROWS 4
QN_DEF_Q4_1_TILE(dot_q4_1_tile_avx512, , dot_u8s8, QN_Q4_1_TILE_ROWS)
QN_DEF_Q4_1_TILE(dot_q4_1_tile_vnni, __attribute__((target("avx512vnni"))), QN_DOT8_VNNI, QN_Q4_1_TILE_ROWS)
#else
/* 16 vector registers: 2 rows × 4 tokens = 8 accumulators. */
#define QN_Q4_1_TILE_ROWS 2
QN_DEF_Q4_1_TILE(dot_q4_1_tile_avx2, , dot_u8s8, QN_Q4_1_TILE_ROWS)
#endif

/* One 32-float block -> 32 int8 (d = amax/127, q = round-half-even(x*127/amax)) and Σq; bit-identical
 * to the ref, which follows llama.cpp's x86 SIMD quantizer. */
QN_INLINE float quant_block32(const float *x, int8_t *qs, int *sum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[i]));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h);
    const float d = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    __m256i q[4];
    for (int i = 0; i < 4; i++)
        q[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (sum) {
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        *sum = _mm_cvtsi128_si32(s4);
    }
    /* packs work per 128-bit lane: dwords come out as q0a q1a q2a q3a q0b q1b q2b q3b */
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256((__m256i *)qs, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return d;
}

static void quantize_q8_0_avx2(const float *x, void *dst, int64_t n) {
    qn_block_q8_0 *y = dst;
    for (int64_t ib = 0; ib < n / QN_QK8_0; ib++) y[ib].d = qn_f32_to_f16(quant_block32(x + 32 * ib, y[ib].qs, NULL));
}

static void quantize_q8_1_avx2(const float *x, void *dst, int64_t n) {
    qn_block_q8_1 *y = dst;
    for (int64_t ib = 0; ib < n / QN_QK8_1; ib++) {
        int sum;
        const float d = quant_block32(x + 32 * ib, y[ib].qs, &sum);
        y[ib].d = qn_f32_to_f16(d);
        y[ib].s = qn_f32_to_f16((float)sum * d);
    }
}

#endif /* QN_SIMD_X86 */

/* ------------------------------------------------------------------ arm64 NEON */
#if defined(QN_SIMD_NEON)

/* 16 bits of qh (element e <- bit e) -> 16 bytes, 0xff where the bit is set. */
QN_INLINE uint8x16_t bits16(uint32_t bits) {
    static const uint8_t pat[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t b = vcombine_u8(vdup_n_u8((uint8_t)bits), vdup_n_u8((uint8_t)(bits >> 8)));
    return vtstq_u8(b, vld1q_u8(pat));
}

/* Weight decoders: one block -> elements 0..15 (*lo) and 16..31 (*hi) as signed bytes. */
QN_INLINE void dec_q4_0_neon(const qn_block_q4_0 *b, int8x16_t *lo, int8x16_t *hi) {
    const uint8x16_t q = vld1q_u8(b->qs);
    *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(15))), vdupq_n_s8(8));
    *hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), vdupq_n_s8(8));
}
QN_INLINE void dec_q4_1_neon(const qn_block_q4_1 *b, int8x16_t *lo, int8x16_t *hi) {
    const uint8x16_t q = vld1q_u8(b->qs);
    *lo = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(15)));
    *hi = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
}
/* q − 16 = nibble with 0xf0 or'd in where the fifth bit is clear (two's complement) */
QN_INLINE void dec_q5_0_neon(const qn_block_q5_0 *b, int8x16_t *lo, int8x16_t *hi) {
    const uint8x16_t q = vld1q_u8(b->qs), f0 = vdupq_n_u8(0xf0);
    const uint32_t qh = qn_gguf_le32(b->qh);
    *lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, vdupq_n_u8(15)), vbicq_u8(f0, bits16(qh))));
    *hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), vbicq_u8(f0, bits16(qh >> 16))));
}
QN_INLINE void dec_q5_1_neon(const qn_block_q5_1 *b, int8x16_t *lo, int8x16_t *hi) {
    const uint8x16_t q = vld1q_u8(b->qs), b4 = vdupq_n_u8(0x10);
    const uint32_t qh = qn_gguf_le32(b->qh);
    *lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, vdupq_n_u8(15)), vandq_u8(bits16(qh), b4)));
    *hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), vandq_u8(bits16(qh >> 16), b4)));
}
QN_INLINE void dec_q8_0_neon(const qn_block_q8_0 *b, int8x16_t *lo, int8x16_t *hi) {
    *lo = vld1q_s8(b->qs);
    *hi = vld1q_s8(b->qs + 16);
}

#define QN_NO_MIN(w, a) 0.0f
#define QN_MIN_TERM(w, a) (qn_cpu_h2f((w)->m) * qn_cpu_h2f((a)->s))

/* Weight rows of block type WT · activation rows of type AT (Q8_0 or Q8_1), nt tokens: per block the exact
 * integer dot, scaled by d_w·d_a into 4 fp32 lanes; formats with a min add m_w·s_a block by block. The
 * weights are decoded once per block for all nt tokens; x1 and x4 run the same per-token sequence. */
#define QN_DEF_DOT_LEGACY_NEON(name, WT, AT, DEC, MIN, HAS_MIN)                                           \
    QN_INLINE void name##_nt(int64_t n, float *out, const void *wv, const uint8_t *a0, size_t as, int nt) { \
        const WT *w = wv;                                                                                 \
        float32x4_t acc[4];                                                                               \
        float summ[4];                                                                                    \
        for (int t = 0; t < nt; t++) acc[t] = vdupq_n_f32(0.0f), summ[t] = 0.0f;                          \
        for (int64_t ib = 0; ib < n / 32; ib++) {                                                         \
            int8x16_t lo, hi;                                                                             \
            DEC(&w[ib], &lo, &hi);                                                                        \
            const float dw = qn_cpu_h2f(w[ib].d);                                                         \
            for (int t = 0; t < nt; t++) {                                                                \
                const AT *a = (const AT *)(a0 + (size_t)t * as) + ib;                                     \
                const int32x4_t s = qn_neon_dot_s8x16(qn_neon_dot_s8x16(vdupq_n_s32(0), lo, vld1q_s8(a->qs)), \
                                                      hi, vld1q_s8(a->qs + 16));                          \
                acc[t] = vmlaq_n_f32(acc[t], vcvtq_f32_s32(s), dw * qn_cpu_h2f(a->d));                    \
                summ[t] += MIN(&w[ib], a);                                                                \
            }                                                                                             \
        }                                                                                                 \
        for (int t = 0; t < nt; t++) out[t] = HAS_MIN ? vaddvq_f32(acc[t]) + summ[t] : vaddvq_f32(acc[t]); \
    }                                                                                                     \
    static void name(int64_t n, float *out, const void *w, const void *a) { name##_nt(n, out, w, a, 0, 1); } \
    static void name##_x4(int64_t n, float *out, const void *w, const void *a, size_t as) {               \
        name##_nt(n, out, w, a, as, 4);                                                                   \
    }

QN_DEF_DOT_LEGACY_NEON(dot_q4_0_neon, qn_block_q4_0, qn_block_q8_0, dec_q4_0_neon, QN_NO_MIN, 0)
QN_DEF_DOT_LEGACY_NEON(dot_q5_0_neon, qn_block_q5_0, qn_block_q8_0, dec_q5_0_neon, QN_NO_MIN, 0)
QN_DEF_DOT_LEGACY_NEON(dot_q8_0_neon, qn_block_q8_0, qn_block_q8_0, dec_q8_0_neon, QN_NO_MIN, 0)
QN_DEF_DOT_LEGACY_NEON(dot_q4_1_neon, qn_block_q4_1, qn_block_q8_1, dec_q4_1_neon, QN_MIN_TERM, 1)
QN_DEF_DOT_LEGACY_NEON(dot_q5_1_neon, qn_block_q5_1, qn_block_q8_1, dec_q5_1_neon, QN_MIN_TERM, 1)

/* Q8_0 (with_sum = 0) and Q8_1 (with_sum = 1) quantizers, bit-identical to the _ref ones: amax with
 * vmaxnm (NaN skipped, as fmaxf), id = 127/amax, q = round-half-even(x·id) (FCVTNS). */
QN_INLINE void quantize_q8_neon(const float *x, uint8_t *dst, int64_t n, int with_sum) {
    const size_t bs = with_sum ? sizeof(qn_block_q8_1) : sizeof(qn_block_q8_0);
    const size_t qoff = with_sum ? offsetof(qn_block_q8_1, qs) : offsetof(qn_block_q8_0, qs);
    for (int64_t ib = 0; ib < n / 32; ib++, x += 32, dst += bs) {
        float32x4_t v[8];
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int i = 0; i < 8; i++) m = vmaxnmq_f32(m, vabsq_f32(v[i] = vld1q_f32(x + 4 * i)));
        const float amax = vmaxnmvq_f32(m);
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int32x4_t q[8];
        for (int i = 0; i < 8; i++) q[i] = vcvtnq_s32_f32(vmulq_n_f32(v[i], id));
        for (int h = 0; h < 2; h++) {
            const int16x8_t p0 = vcombine_s16(vqmovn_s32(q[4 * h]), vqmovn_s32(q[4 * h + 1]));
            const int16x8_t p1 = vcombine_s16(vqmovn_s32(q[4 * h + 2]), vqmovn_s32(q[4 * h + 3]));
            vst1q_s8((int8_t *)(dst + qoff) + 16 * h, vcombine_s8(vqmovn_s16(p0), vqmovn_s16(p1)));
        }
        const uint16_t dh = qn_f32_to_f16(d);
        memcpy(dst, &dh, 2);
        if (with_sum) {
            int32x4_t s = vdupq_n_s32(0);
            for (int i = 0; i < 8; i++) s = vaddq_s32(s, q[i]);
            const uint16_t sh = qn_f32_to_f16((float)vaddvq_s32(s) * d);
            memcpy(dst + offsetof(qn_block_q8_1, s), &sh, 2);
        }
    }
}
static void quantize_q8_0_neon(const float *x, void *dst, int64_t n) { quantize_q8_neon(x, dst, n, 0); }
static void quantize_q8_1_neon(const float *x, void *dst, int64_t n) { quantize_q8_neon(x, dst, n, 1); }

#endif /* QN_SIMD_NEON */

/* ------------------------------------------------------------------ table */

void QN_ISA_FN(qn_cpu_fill_legacy)(qn_cpu_kernels *k) {
    k->vec_dot[QN_QFORMAT_Q4_0] = dot_q4_0_scalar;
    k->vec_dot[QN_QFORMAT_Q4_1] = dot_q4_1_scalar;
    k->vec_dot[QN_QFORMAT_Q5_0] = dot_q5_0_scalar;
    k->vec_dot[QN_QFORMAT_Q5_1] = dot_q5_1_scalar;
    k->vec_dot[QN_QFORMAT_Q8_0] = dot_q8_0_scalar;
    k->from_float[QN_QFORMAT_Q8_0] = qn_quantize_row_q8_0_ref;
    k->from_float[QN_QFORMAT_Q8_1] = qn_quantize_row_q8_1_ref;
#if defined(QN_SIMD_X86)
    k->vec_dot[QN_QFORMAT_Q4_0] = dot_q4_0_avx2;
    k->vec_dot[QN_QFORMAT_Q4_1] = dot_q4_1_avx2;
    k->vec_dot[QN_QFORMAT_Q5_0] = dot_q5_0_avx2;
    k->vec_dot[QN_QFORMAT_Q5_1] = dot_q5_1_avx2;
    k->vec_dot[QN_QFORMAT_Q8_0] = dot_q8_0_avx2;
    k->vec_dot_x4[QN_QFORMAT_Q4_0] = dot_q4_0_avx2_x4;
    k->vec_dot_x4[QN_QFORMAT_Q4_1] = dot_q4_1_avx2_x4;
    k->vec_dot_x4[QN_QFORMAT_Q5_0] = dot_q5_0_avx2_x4;
    k->vec_dot_x4[QN_QFORMAT_Q5_1] = dot_q5_1_avx2_x4;
    k->vec_dot_x4[QN_QFORMAT_Q8_0] = dot_q8_0_avx2_x4;
    k->from_float[QN_QFORMAT_Q8_0] = quantize_q8_0_avx2;
    k->from_float[QN_QFORMAT_Q8_1] = quantize_q8_1_avx2;
    k->matmul_x8[QN_QFORMAT_Q4_0] = matmul_q4_0x8_avx2;
    k->matmul_x8[QN_QFORMAT_Q5_0] = matmul_q5_0x8_avx2;
    k->matmul_x8[QN_QFORMAT_Q5_1] = matmul_q5_1x8_avx2;
    k->matmul_x8[QN_QFORMAT_Q8_0] = matmul_q8_0x8_avx2;
#if defined(QN_SIMD_X86_512)
    __builtin_cpu_init();
    k->vec_dot_tile[QN_QFORMAT_Q4_1] = __builtin_cpu_supports("avx512vnni") ? dot_q4_1_tile_vnni : dot_q4_1_tile_avx512;
#else
    k->vec_dot_tile[QN_QFORMAT_Q4_1] = dot_q4_1_tile_avx2;
#endif
    k->vec_dot_tile_rows[QN_QFORMAT_Q4_1] = QN_Q4_1_TILE_ROWS;
#elif defined(QN_SIMD_NEON)
    k->vec_dot[QN_QFORMAT_Q4_0] = dot_q4_0_neon;
    k->vec_dot[QN_QFORMAT_Q4_1] = dot_q4_1_neon;
    k->vec_dot[QN_QFORMAT_Q5_0] = dot_q5_0_neon;
    k->vec_dot[QN_QFORMAT_Q5_1] = dot_q5_1_neon;
    k->vec_dot[QN_QFORMAT_Q8_0] = dot_q8_0_neon;
    k->vec_dot_x4[QN_QFORMAT_Q4_0] = dot_q4_0_neon_x4;
    k->vec_dot_x4[QN_QFORMAT_Q4_1] = dot_q4_1_neon_x4;
    k->vec_dot_x4[QN_QFORMAT_Q5_0] = dot_q5_0_neon_x4;
    k->vec_dot_x4[QN_QFORMAT_Q5_1] = dot_q5_1_neon_x4;
    k->vec_dot_x4[QN_QFORMAT_Q8_0] = dot_q8_0_neon_x4;
    k->from_float[QN_QFORMAT_Q8_0] = quantize_q8_0_neon;
    k->from_float[QN_QFORMAT_Q8_1] = quantize_q8_1_neon;
#endif
}
