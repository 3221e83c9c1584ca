/* lutq_cpu.c — y = x·Wᵀ for the repacked GPTQ / AWQ / bnb layout (lutq.h), compiled once per ISA.
 * Activations stay fp32 (no activation quantization): per group segment, d = Σ lut[c]·x and, with a zero point,
 * y += scale·(d − zero·Σx), so the only roundings are fp32 sums (tolerance: |err| ≤ 2e-6·Σ|w·x|, see
 * tests/kernels/test_quant_lutq.c). Loop nest: QN_LUTQ_TB tokens (8 on x86, else 4) × a chunk of kernel columns
 * (QN_LUTQ_TB·1024 / tokens of the pass, gathered through perm for act-order, so every group is contiguous) × the
 * caller's rows; each decoded code vector feeds every token of the pass. On AMX-BF16 machines lutq_amx_cpu.c takes
 * whole 16 × 16 tiles first and hands the rest to this kernel (qn_cpu_lutq_matmul_f32). On x86 that entry sends
 * QN_LUTQ_GEMM_MIN_TOKENS tokens and more to lutq_gemm_cpu.c's panel GEMM (dequantized panels, register-blocked
 * fp32 micro-kernel) and fewer to the row kernel here (qn_cpu_lutq_rows_f32).
 * x86 (rows_x86, one body for both widths, R rows × NT tokens per call: at 1-4 tokens 2 or 4 rows at once, so that
 * enough FMA chains are in flight and the rows share each activation load): AVX-512 widens a 32-column pair of
 * 4-bit blocks (16 bytes) to 16 lanes in one vpmovzxbd and reads values with vpermps (identity tables included),
 * the activations stored once per chunk in the matching lane order; AVX2 decodes a 16-column block from one
 * 8-byte load (cvtepu8 to 8 lanes; & 15 gives columns 0..7, >> 4 columns 8..15: the lutq.h nibble layout), values
 * via cvt (identity table) or two permutevar8x32 + blend (16-entry table); 8-bit codes one vector per load
 * (+ gather for a general table). Per group the vector partial is scaled into the row accumulator (one
 * horizontal sum per row); with many accumulators (QN_QV_PRE: AVX2 at 4+ tokens, AVX-512 at 2 rows × 8 tokens)
 * the decoded values are instead scaled by the group scale before the FMAs, so no partials need registers (AVX2:
 * 8 tokens' accumulators fill 16; AVX-512: two rows share each activation load). 8B q/o, 8-32 tokens, gptq4:
 * AVX2 35 -> 44 GFLOP/s, AVX-512 without AMX 63-72 -> 76.
 * NEON decodes a 16-column block the same way from one 8-byte load (& 15 / >> 4, then widening conversions,
 * or TBL over the 16-entry table's 64 bytes), 4 lanes per vector. The scalar build runs a plain loop. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/isa.h"
#include "kernels/quant/lutq.h"
#if defined(QN_SIMD_X86)
#include "kernels/quant/lutq_x86.h"
#endif

#if defined(QN_SIMD_X86)
#define QN_LUTQ_TB 8 /* tokens per pass: each decoded code vector feeds this many */
#else
#define QN_LUTQ_TB 4
#endif
#define QN_LUTQ_CHUNK 1024
/* x86, passes of 4+ tokens: the piece of the chunk of the row QN_LUTQ_PF rows ahead is prefetched. A piece is then
 * 512 bytes (4-bit codes), too short for the hardware prefetchers once the weights no longer stay in the caches
 * between passes: 8B gate/up and down, 8-32 tokens, 1.3-2.0x (AVX2 and AVX-512); 4096x4096 (8 MB) within noise
 * (0.92-1.16x); at 1-3 tokens the pieces are long and it was slower (0.6-0.8x), so it is off there. */
#ifndef QN_LUTQ_PF
#define QN_LUTQ_PF 4
#endif
/* x86: from this many tokens on, lutq_gemm_cpu.c's panel GEMM takes the call (a compile-time knob; bench_cpu
 * --lutq-path times either path at any count). AVX2, 8B q/o gptq4, same binary: 8 tokens equal (28.5 GFLOP/s both),
 * 9-10 tokens the GEMM 1.4-1.7x, 12 1.5x, 16 1.35x. AVX-512: the same switch, its crossover not measured. */
#ifndef QN_LUTQ_GEMM_MIN_TOKENS
#define QN_LUTQ_GEMM_MIN_TOKENS 9
#endif

typedef struct lutq_seg {
    int64_t g, j0, j1; /* group, kernel columns [j0, j1) inside the chunk */
} lutq_seg;

/* the code of column j in a row's code bytes (4-bit: the nibble layout of lutq.h) */
static inline uint32_t code_at(const uint8_t *codes, int bits4, int64_t j) {
    return bits4 ? (uint32_t)(codes[qn_lutq_nib_byte(j)] >> qn_lutq_nib_shift(j)) & 15u : codes[j];
}

#if !defined(QN_SIMD_X86) && !defined(QN_SIMD_NEON)
/* d[t] = Σ_{j in [j0, j1)} lut[code j]·x_t[j − j0] for t < nt; codes: the row's code bytes. */
static void seg_dot_scalar(const qn_lutq_weight *w, const uint8_t *codes, int64_t j0, int64_t j1,
                           const float *const *xr, int nt, float *d) {
    float acc[QN_LUTQ_TB] = {0};
    for (int64_t j = j0; j < j1; j++) {
        const uint32_t c = code_at(codes, w->code_bits == 4, j);
        const float v = w->lut[c];
        for (int t = 0; t < nt; t++) acc[t] += v * xr[t][j - j0];
    }
    for (int t = 0; t < nt; t++) d[t] = acc[t];
}
#endif

#if defined(QN_SIMD_X86) || defined(QN_SIMD_NEON)
/* hs[t] += Σ lut[code j]·x_t[j] over columns [j, j1) one by one: a segment's tail after its vector blocks */
static inline void cols_scalar(const float *lut, const uint8_t *codes, int bits4, int64_t j, int64_t j1, int64_t c0,
                               const float *const *xc, int nt, float *hs) {
    for (; j < j1; j++) {
        const float v = lut[code_at(codes, bits4, j)];
        for (int t = 0; t < nt; t++) hs[t] += v * xc[t][j - c0];
    }
}

/* the segment's scalar part into sacc: sg·(hs − zero·Σx), zero = 0 without a zero point (gsum unused then) */
static inline void seg_scalar_terms(float *sacc, const float *hs, float sg, float zero,
                                    const float (*gsum)[QN_LUTQ_CHUNK], int s, int nt) {
    for (int t = 0; t < nt; t++) sacc[t] += sg * (zero != 0.0f ? hs[t] - zero * gsum[t][s] : hs[t]);
}
#endif

#if defined(QN_SIMD_X86)
/* x86: one row-group kernel for both widths. A step covers 2·LV_W columns (AVX-512: a 32-column pair of 4-bit
 * blocks, 16 bytes widened to 16 lanes by one vpmovzxbd, & 15 giving columns 0..7 and 16..23, >> 4 columns 8..15
 * and 24..31, the activations stored once per chunk in that lane order, "pair order"; AVX2: one 16-column block
 * from one 8-byte load, & 15 columns 0..7, >> 4 columns 8..15, natural order) or 2·LV_W 8-bit codes. */
#if defined(QN_SIMD_X86_512)
#define QN_QV_PB 4 /* R·NT up to which each (row, token) keeps two FMA chains (registers allow it) */
#define QN_QV_PRE(R, NT) ((R) * (NT) >= 16) /* values scaled by the group scale before the FMAs (no partials) */
#define qv_sum _mm512_reduce_add_ps
typedef struct qv_lut {
    __m512 v; /* the first 16 values (a 16-entry table; identity tables too: lut[c] = c) */
} qv_lut;
QN_INLINE qv_lut qv_lut_load(const float *lut) { return (qv_lut){_mm512_loadu_ps(lut)}; }
/* 4-bit codes of columns [j, j + 32) -> the values at pair-order positions 0..15 (va) and 16..31 (vb) */
QN_INLINE void qv_dec4(const uint8_t *codes, int64_t j, const qv_lut *k, lv *va, lv *vb) {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes + (j >> 4) * 8)));
    *va = _mm512_permutexvar_ps(b, k->v); /* vpermps reads the index's low 4 bits */
    *vb = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), k->v);
}
/* 8-bit codes of columns [j, j + 16) -> values (identity: a conversion; else a gather) */
QN_INLINE lv qv_dec8(const uint8_t *codes, int64_t j, int ident, const float *lut) {
    const __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes + j)));
    return ident ? _mm512_cvtepi32_ps(c) : _mm512_i32gather_ps(c, lut, 4);
}

/* xp[j] for one token over [0, n) columns of a chunk (n a multiple of 32, the chunk start 32-aligned): pair order */
static void pair_order(const float *x, int64_t n, float *xp) {
    for (int64_t j = 0; j + 32 <= n; j += 32) {
        memcpy(xp + j, x + j, 8 * sizeof(float));
        memcpy(xp + j + 8, x + j + 16, 8 * sizeof(float));
        memcpy(xp + j + 16, x + j + 8, 8 * sizeof(float));
        memcpy(xp + j + 24, x + j + 24, 8 * sizeof(float));
    }
}
#else
#define QN_QV_PB 2
#define QN_QV_PRE(R, NT) ((NT) >= 4) /* 16 registers: 4..8 tokens' accumulators and partials would not fit */
QN_INLINE float qv_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
typedef lq256_lut qv_lut; /* lutq_x86.h */
QN_INLINE qv_lut qv_lut_load(const float *lut) { return lq256_lut_load(lut, 0); }
/* 4-bit codes of the 16-column block at j -> columns 0..7 (va) and 8..15 (vb) */
QN_INLINE void qv_dec4(const uint8_t *codes, int64_t j, const qv_lut *k, lv *va, lv *vb) {
    lq256_dec4(codes + (j >> 4) * 8, k, va, vb);
}
/* 8-bit codes of columns [j, j + 8) -> values (identity: a conversion; else a gather) */
QN_INLINE lv qv_dec8(const uint8_t *codes, int64_t j, int ident, const float *lut) {
    return lq256_dec8(codes + j, ident, lut);
}
#endif
#define QN_QV_STEP (2 * LV_W)

/* acc[t] += va·xv[t][o .. o + W) + vb·xv[t][o + W .. o + 2W) for t < nt: a step of prescaled values (QN_QV_PRE) */
QN_INLINE void fma_step_pre(lv va, lv vb, const float *const *xv, int64_t o, const int nt, lv *acc) {
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) {
        acc[t] = lv_fma(va, lv_loadu(xv[t] + o), acc[t]);
        acc[t] = lv_fma(vb, lv_loadu(xv[t] + o + LV_W), acc[t]);
    }
}

/* R weight rows against NT tokens over the chunk's segments. R·NT is what keeps the FMA units busy at one or two
 * tokens, where one row alone waits on its chains' latency; the rows share every activation load. Per segment:
 * the 4-bit head up to the next step and the tail after the last one go through cols_scalar; the steps (x4: the
 * activations in the lane order of qv_dec4) or 8-bit runs (natural xc) through the vector loop; its partial is
 * folded into the row accumulator with the group scale (one horizontal sum per row at the end), or, where
 * QN_QV_PRE(R, NT), the values are scaled first and the FMAs go straight into the accumulator. */
static inline __attribute__((always_inline)) void rows_x86(
    const qn_lutq_weight *w, const uint8_t *const *codes, const lutq_seg *seg, int n_seg, int64_t c0,
    const float *const *xc, const float *const *x4, const float (*gsum)[QN_LUTQ_CHUNK], const int R, const int NT,
    const float *const *sc, const float *const *zr, float (*out)[QN_LUTQ_TB]) {
    const int bits4 = w->code_bits == 4, ident = w->lut_identity;
    const int PRE = QN_QV_PRE(R, NT); /* a constant of each instance */
    const float *lut = w->lut;
    qv_lut k = qv_lut_load(lut);
#if !defined(QN_SIMD_X86_512)
    k.ident = ident;
#endif
    lv acc[4][QN_LUTQ_TB];
    float sacc[4][QN_LUTQ_TB] = {{0}};
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) acc[r][t] = lv_zero();
    for (int s = 0; s < n_seg; s++) {
        const int64_t j1 = seg[s].j1, g = seg[s].g;
        int64_t j = seg[s].j0, jv;
        float hs[4][QN_LUTQ_TB]; /* the scalar columns' sums, where the segment has any (scal) */
        int scal = 0;
        lv pa[4][QN_LUTQ_TB], pb[4][QN_LUTQ_TB];
        lv vsr[4]; /* PRE: the rows' group scales */
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) vsr[r] = lv_set1(PRE ? sc[r][g] : 0.0f);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) pa[r][t] = pb[r][t] = lv_zero();
        if (bits4) {
            const int64_t next = (j + QN_QV_STEP - 1) & ~(int64_t)(QN_QV_STEP - 1), jb = next < j1 ? next : j1;
            if (jb > j) {
                scal = 1;
                memset(hs, 0, sizeof hs);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) cols_scalar(lut, codes[r], 1, j, jb, c0, xc, NT, hs[r]);
            }
            for (jv = jb; jv + QN_QV_STEP <= j1; jv += QN_QV_STEP)
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) {
                    lv va, vb;
                    qv_dec4(codes[r], jv, &k, &va, &vb);
                    if (PRE) {
                        fma_step_pre(lv_mul(va, vsr[r]), lv_mul(vb, vsr[r]), x4, jv - c0, NT, acc[r]);
                        continue;
                    }
#pragma GCC unroll 8
                    for (int t = 0; t < NT; t++) {
                        pa[r][t] = lv_fma(va, lv_loadu(x4[t] + (jv - c0)), pa[r][t]);
                        if (R * NT <= QN_QV_PB) /* else R·NT chains are enough, and the registers are not */
                            pb[r][t] = lv_fma(vb, lv_loadu(x4[t] + (jv - c0) + LV_W), pb[r][t]);
                        else
                            pa[r][t] = lv_fma(vb, lv_loadu(x4[t] + (jv - c0) + LV_W), pa[r][t]);
                    }
                }
        } else {
            for (jv = j; jv + QN_QV_STEP <= j1; jv += QN_QV_STEP)
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) {
                    const lv va = qv_dec8(codes[r], jv, ident, lut), vb = qv_dec8(codes[r], jv + LV_W, ident, lut);
                    if (PRE) {
                        fma_step_pre(lv_mul(va, vsr[r]), lv_mul(vb, vsr[r]), xc, jv - c0, NT, acc[r]);
                        continue;
                    }
#pragma GCC unroll 8
                    for (int t = 0; t < NT; t++) {
                        pa[r][t] = lv_fma(va, lv_loadu(xc[t] + (jv - c0)), pa[r][t]);
                        pb[r][t] = lv_fma(vb, lv_loadu(xc[t] + (jv - c0) + LV_W), pb[r][t]);
                    }
                }
            if (jv + LV_W <= j1) {
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) {
                    const lv va = qv_dec8(codes[r], jv, ident, lut);
                    if (PRE) {
                        const lv vq = lv_mul(va, vsr[r]);
#pragma GCC unroll 8
                        for (int t = 0; t < NT; t++) acc[r][t] = lv_fma(vq, lv_loadu(xc[t] + (jv - c0)), acc[r][t]);
                        continue;
                    }
#pragma GCC unroll 8
                    for (int t = 0; t < NT; t++) pa[r][t] = lv_fma(va, lv_loadu(xc[t] + (jv - c0)), pa[r][t]);
                }
                jv += LV_W;
            }
        }
        if (jv < j1) {
            if (!scal) memset(hs, 0, sizeof hs);
            scal = 1;
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) cols_scalar(lut, codes[r], bits4, jv, j1, c0, xc, NT, hs[r]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const float sg = sc[r][g];
            const lv vs = lv_set1(sg);
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++)
                if (!PRE) acc[r][t] = lv_fma(lv_add(pa[r][t], pb[r][t]), vs, acc[r][t]);
            if (scal) seg_scalar_terms(sacc[r], hs[r], sg, zr[r] ? zr[r][g] : 0.0f, gsum, s, NT);
            else if (zr[r]) /* seg_scalar_terms with hs = 0 */
#pragma GCC unroll 8
                for (int t = 0; t < NT; t++) sacc[r][t] -= sg * (zr[r][g] * gsum[t][s]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) out[r][t] = qv_sum(acc[r][t]) + sacc[r][t];
}

#define QN_LUTQ_X86_ROWS(R, NT)                                                                                     \
    static void rows_x86_##R##_##NT(const qn_lutq_weight *w, const uint8_t *const *codes, const lutq_seg *seg,     \
                                    int n_seg, int64_t c0, const float *const *xc, const float *const *x4,         \
                                    const float (*gsum)[QN_LUTQ_CHUNK], const float *const *sc,                   \
                                    const float *const *zr, float (*out)[QN_LUTQ_TB]) {                           \
        rows_x86(w, codes, seg, n_seg, c0, xc, x4, gsum, R, NT, sc, zr, out);                                      \
    }
QN_LUTQ_X86_ROWS(4, 1)
QN_LUTQ_X86_ROWS(1, 1)
QN_LUTQ_X86_ROWS(1, 3)
QN_LUTQ_X86_ROWS(1, 4)
#if defined(QN_SIMD_X86_512)
QN_LUTQ_X86_ROWS(4, 2)
QN_LUTQ_X86_ROWS(2, 3)
QN_LUTQ_X86_ROWS(2, 4)
QN_LUTQ_X86_ROWS(1, 2)
QN_LUTQ_X86_ROWS(1, 5)
QN_LUTQ_X86_ROWS(1, 6)
QN_LUTQ_X86_ROWS(1, 7)
QN_LUTQ_X86_ROWS(1, 8)
QN_LUTQ_X86_ROWS(2, 8)
#else
QN_LUTQ_X86_ROWS(2, 2)
QN_LUTQ_X86_ROWS(1, 2)
QN_LUTQ_X86_ROWS(2, 4)
QN_LUTQ_X86_ROWS(1, 5)
QN_LUTQ_X86_ROWS(1, 6)
QN_LUTQ_X86_ROWS(1, 7)
QN_LUTQ_X86_ROWS(1, 8)
#endif
#undef QN_LUTQ_X86_ROWS

typedef void (*rows_x86_fn)(const qn_lutq_weight *, const uint8_t *const *, const lutq_seg *, int, int64_t,
                            const float *const *, const float *const *, const float (*)[QN_LUTQ_CHUNK],
                            const float *const *, const float *const *, float (*)[QN_LUTQ_TB]);
/* [nt - 1]: the multi-row kernel (and its row count) for nt tokens, and the one-row kernel */
static const struct { int rows; rows_x86_fn multi, one; } ROWS_X86[QN_LUTQ_TB] = {
#if defined(QN_SIMD_X86_512)
    {4, rows_x86_4_1, rows_x86_1_1}, {4, rows_x86_4_2, rows_x86_1_2}, {2, rows_x86_2_3, rows_x86_1_3},
    {2, rows_x86_2_4, rows_x86_1_4}, {1, rows_x86_1_5, rows_x86_1_5}, {1, rows_x86_1_6, rows_x86_1_6},
    {1, rows_x86_1_7, rows_x86_1_7}, {2, rows_x86_2_8, rows_x86_1_8},
#else
    {4, rows_x86_4_1, rows_x86_1_1}, {2, rows_x86_2_2, rows_x86_1_2}, {1, rows_x86_1_3, rows_x86_1_3},
    {2, rows_x86_2_4, rows_x86_1_4}, {1, rows_x86_1_5, rows_x86_1_5}, {1, rows_x86_1_6, rows_x86_1_6},
    {1, rows_x86_1_7, rows_x86_1_7}, {1, rows_x86_1_8, rows_x86_1_8},
#endif
};
#endif


#if defined(QN_SIMD_NEON)
/* 16 codes -> their values under the identity table, 4 columns per vector (exact widening conversions) */
QN_INLINE void codes_to_f32(uint8x16_t c, float32x4_t v[4]) {
    const uint16x8_t c0 = vmovl_u8(vget_low_u8(c)), c1 = vmovl_u8(vget_high_u8(c));
    v[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(c0)));
    v[1] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(c0)));
    v[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(c1)));
    v[3] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(c1)));
}

/* 4-bit codes of one 16-column block (8 bytes at p) -> 16 values in 4 vectors of 4 columns. Identity tables
 * convert the codes; a 16-entry table is read with TBL over its 64 bytes: the byte index of column c is
 * 4·code + (byte of the float), built by replicating each 4·code over its 4 byte lanes. */
QN_INLINE void dec16_nib(const uint8_t *p, int ident, const uint8x16x4_t *lutb, float32x4_t v[4]) {
    const uint8x8_t b = vld1_u8(p);
    const uint8x16_t c = vcombine_u8(vand_u8(b, vdup_n_u8(15)), vshr_n_u8(b, 4)); /* columns 0..15 */
    if (ident) {
        codes_to_f32(c, v);
        return;
    }
    static const uint8_t rep[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
    static const uint8_t byte[16] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
    const uint8x16_t c4 = vshlq_n_u8(c, 2), r = vld1q_u8(rep), by = vld1q_u8(byte);
    for (int q = 0; q < 4; q++) {
        const uint8x16_t idx = vaddq_u8(vqtbl1q_u8(c4, vaddq_u8(r, vdupq_n_u8((uint8_t)(4 * q)))), by);
        v[q] = vreinterpretq_f32_u8(vqtbl4q_u8(*lutb, idx));
    }
}

/* 8-bit codes of 16 columns -> 16 values (identity: conversion; else the table, element by element). */
QN_INLINE void dec16_byte(const uint8_t *p, int ident, const float *lut, float32x4_t v[4]) {
    if (ident) {
        codes_to_f32(vld1q_u8(p), v);
        return;
    }
    float t[16];
    for (int i = 0; i < 16; i++) t[i] = lut[p[i]];
    for (int q = 0; q < 4; q++) v[q] = vld1q_f32(t + 4 * q);
}

/* One weight row against nt tokens over the chunk's segments, as row_x86: per segment a vector partial
 * Σ lut·x (16-column blocks, two partial chains per token), folded into a 4-lane row accumulator with the
 * group scale; odd heads and tails and the zero-point term go to a scalar accumulator. */
static void row_neon(const qn_lutq_weight *w, const uint8_t *codes, const lutq_seg *seg, int n_seg, int64_t c0,
                     const float *const *xc, const float (*gsum)[QN_LUTQ_CHUNK], int nt, const float *sc,
                     const float *zr, float *out) {
    const int bits4 = w->code_bits == 4, ident = w->lut_identity;
    const float *lut = w->lut;
    const uint8x16x4_t lutb = {{vld1q_u8((const uint8_t *)lut), vld1q_u8((const uint8_t *)lut + 16),
                                vld1q_u8((const uint8_t *)lut + 32), vld1q_u8((const uint8_t *)lut + 48)}};
    float32x4_t acc[QN_LUTQ_TB];
    float sacc[QN_LUTQ_TB] = {0};
    for (int t = 0; t < QN_LUTQ_TB; t++) acc[t] = vdupq_n_f32(0.0f);
    for (int s = 0; s < n_seg; s++) {
        const int64_t j1 = seg[s].j1;
        int64_t j = seg[s].j0;
        float hs[QN_LUTQ_TB] = {0};
        float32x4_t pa[QN_LUTQ_TB], pb[QN_LUTQ_TB];
        for (int t = 0; t < QN_LUTQ_TB; t++) pa[t] = pb[t] = vdupq_n_f32(0.0f);
        /* scalar up to the next 16-column block (4-bit codes come in blocks of 16) */
        if (bits4) {
            const int64_t next16 = (j + 15) & ~(int64_t)15, jb = next16 < j1 ? next16 : j1;
            cols_scalar(lut, codes, 1, j, jb, c0, xc, nt, hs);
            j = jb;
        }
        for (; j + 16 <= j1; j += 16) {
            float32x4_t v[4];
            if (bits4) dec16_nib(codes + (j >> 4) * 8, ident, &lutb, v);
            else dec16_byte(codes + j, ident, lut, v);
            for (int t = 0; t < nt; t++) {
                const float *x = xc[t] + (j - c0);
                pa[t] = vfmaq_f32(pa[t], v[0], vld1q_f32(x));
                pb[t] = vfmaq_f32(pb[t], v[1], vld1q_f32(x + 4));
                pa[t] = vfmaq_f32(pa[t], v[2], vld1q_f32(x + 8));
                pb[t] = vfmaq_f32(pb[t], v[3], vld1q_f32(x + 12));
            }
        }
        cols_scalar(lut, codes, bits4, j, j1, c0, xc, nt, hs);
        const float sg = sc[seg[s].g];
        for (int t = 0; t < nt; t++) acc[t] = vfmaq_n_f32(acc[t], vaddq_f32(pa[t], pb[t]), sg);
        seg_scalar_terms(sacc, hs, sg, zr ? zr[seg[s].g] : 0.0f, gsum, s, nt);
    }
    for (int t = 0; t < nt; t++) out[t] = vaddvq_f32(acc[t]) + sacc[t];
}
#endif

void QN_ISA_FN(qn_cpu_lutq_rows_f32)(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens,
                                     float *y, int64_t ldy, int64_t row_begin, int64_t row_end) {
    float xs[QN_LUTQ_TB * QN_LUTQ_CHUNK]; /* act-order: the chunk's gathered activations, token t at t·cw */
    float gsum[QN_LUTQ_TB][QN_LUTQ_CHUNK];
    lutq_seg seg[QN_LUTQ_CHUNK];
#if defined(QN_SIMD_X86_512)
    float xps[QN_LUTQ_TB * QN_LUTQ_CHUNK]; /* 4-bit: the chunk's activations in pair order (qv_dec4's), at t·cw */
#endif
#if defined(QN_SIMD_X86)
    const float *x4[QN_LUTQ_TB]; /* the 4-bit steps' activations: pair order (AVX-512) or xc (AVX2) */
#endif
    const int64_t K = w->k, G = w->n_groups, row_bytes = qn_lutq_row_bytes(w->k, w->code_bits);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += QN_LUTQ_TB) {
        const int nt = (int)(n_tokens - t0 < QN_LUTQ_TB ? n_tokens - t0 : QN_LUTQ_TB);
        /* chunk width: the same activation footprint (QN_LUTQ_TB·QN_LUTQ_CHUNK floats) at any nt, so a pass of few
         * tokens reads longer pieces of each row (a row's piece of a 1024-column chunk, 512 bytes at 4 bits, is too
         * short for the hardware prefetchers: 8B down projection, 1 token, AVX-512: 4.7 -> 2.5 ms at 8192 columns) */
        const int64_t cw = ((int64_t)QN_LUTQ_TB * QN_LUTQ_CHUNK / nt) & ~(int64_t)31;
        int64_t g = 0;
        for (int64_t c0 = 0, c1; c0 < K; c0 = c1) {
            while (g < G && w->gstart[g + 1] <= c0) g++;
            c1 = c0 + cw < K ? c0 + cw : K;
            if (g + QN_LUTQ_CHUNK < G && w->gstart[g + QN_LUTQ_CHUNK] < c1) /* at most QN_LUTQ_CHUNK segments: */
                c1 = w->gstart[g + QN_LUTQ_CHUNK] & ~(int32_t)31;       /* > c0 + 992 (group g holds c0) */
            const float *xc[QN_LUTQ_TB]; /* x of token t at kernel column c0 */
            for (int t = 0; t < nt; t++) {
                const float *xt = x + (t0 + t) * ldx;
                if (w->perm) {
                    float *xst = xs + t * cw;
                    for (int64_t j = c0; j < c1; j++) xst[j - c0] = xt[w->perm[j]];
                    xc[t] = xst;
                } else
                    xc[t] = xt + c0;
#if defined(QN_SIMD_X86_512)
                if (w->code_bits == 4) pair_order(xc[t], (c1 - c0) & ~(int64_t)31, xps + t * cw);
                x4[t] = xps + t * cw;
#elif defined(QN_SIMD_X86)
                x4[t] = xc[t];
#endif
            }
            int n_seg = 0;
            for (int64_t gg = g; gg < G && w->gstart[gg] < c1; gg++) {
                const int64_t a = w->gstart[gg] > c0 ? w->gstart[gg] : c0;
                const int64_t b = w->gstart[gg + 1] < c1 ? w->gstart[gg + 1] : c1;
                if (b > a) seg[n_seg++] = (lutq_seg){gg, a, b};
            }
            if (w->zero)
                for (int t = 0; t < nt; t++)
                    for (int s = 0; s < n_seg; s++) {
                        float sum = 0.0f;
                        for (int64_t j = seg[s].j0; j < seg[s].j1; j++) sum += xc[t][j - c0];
                        gsum[t][s] = sum;
                    }
#if defined(QN_SIMD_X86)
            const int64_t pf0 = qn_lutq_row_bytes(c0, w->code_bits) & ~(int64_t)63;
            const int64_t pf1 = nt >= 4 ? qn_lutq_row_bytes(c1, w->code_bits) : 0; /* short pieces only */
            for (int64_t r = row_begin; r < row_end;) {
                const int R = r + ROWS_X86[nt - 1].rows <= row_end ? ROWS_X86[nt - 1].rows : 1;
                const rows_x86_fn fn = R > 1 ? ROWS_X86[nt - 1].multi : ROWS_X86[nt - 1].one;
                const uint8_t *codes[4];
                const float *sc[4], *zr[4];
                float acc[4][QN_LUTQ_TB];
                for (int64_t i = r + QN_LUTQ_PF; i < r + QN_LUTQ_PF + R && i < row_end; i++) /* a later row's piece */
                    for (int64_t o = pf0; o < pf1; o += 64)
                        _mm_prefetch((const char *)(w->codes + i * row_bytes + o), _MM_HINT_T0);
                for (int i = 0; i < R; i++) {
                    codes[i] = w->codes + (r + i) * row_bytes;
                    sc[i] = w->scale + (r + i) * G, zr[i] = w->zero ? w->zero + (r + i) * G : NULL;
                }
                fn(w, codes, seg, n_seg, c0, xc, x4, (const float(*)[QN_LUTQ_CHUNK])gsum, sc, zr, acc);
                for (int i = 0; i < R; i++, r++)
                    for (int t = 0; t < nt; t++) {
                        float *yp = y + (t0 + t) * ldy + r;
                        *yp = c0 == 0 ? acc[i][t] : *yp + acc[i][t];
                    }
            }
#else
            for (int64_t r = row_begin; r < row_end; r++) {
                const uint8_t *codes = w->codes + r * row_bytes;
                const float *sc = w->scale + r * G, *zr = w->zero ? w->zero + r * G : NULL;
                float acc[QN_LUTQ_TB] = {0};
#if defined(QN_SIMD_NEON)
                row_neon(w, codes, seg, n_seg, c0, xc, (const float(*)[QN_LUTQ_CHUNK])gsum, nt, sc, zr, acc);
#else
                for (int s = 0; s < n_seg; s++) {
                    const float *xr[QN_LUTQ_TB];
                    for (int t = 0; t < nt; t++) xr[t] = xc[t] + (seg[s].j0 - c0);
                    float d[QN_LUTQ_TB];
                    seg_dot_scalar(w, codes, seg[s].j0, seg[s].j1, xr, nt, d);
                    const float sg = sc[seg[s].g];
                    if (zr) {
                        const float z = zr[seg[s].g];
                        for (int t = 0; t < nt; t++) acc[t] += sg * (d[t] - z * gsum[t][s]);
                    } else
                        for (int t = 0; t < nt; t++) acc[t] += sg * d[t];
                }
#endif
                for (int t = 0; t < nt; t++) {
                    float *yp = y + (t0 + t) * ldy + r;
                    *yp = c0 == 0 ? acc[t] : *yp + acc[t];
                }
            }
#endif
        }
    }
}

/* the table's kernel: x86 from QN_LUTQ_GEMM_MIN_TOKENS tokens on lutq_gemm_cpu.c's panel GEMM, else the row kernel */
void QN_ISA_FN(qn_cpu_lutq_matmul_f32)(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens,
                                       float *y, int64_t ldy, int64_t row_begin, int64_t row_end) {
#if defined(QN_SIMD_X86)
    if (n_tokens >= QN_LUTQ_GEMM_MIN_TOKENS) {
        /* act-order: the block's activations gathered once, in kernel order, for every row of the call */
        const int64_t tb = n_tokens < QN_PANEL_TOKEN_BLOCK ? n_tokens : QN_PANEL_TOKEN_BLOCK;
        float *xp = w->perm ? malloc(sizeof(float) * (size_t)(tb * w->k)) : NULL;
        if (!w->perm || xp) {
            QN_ISA_FN(qn_cpu_lutq_gemm_f32)(w, x, ldx, n_tokens, y, ldy, row_begin, row_end, xp);
            free(xp);
            return;
        } /* no memory for it: the row kernel, which gathers per chunk */
    }
#endif
    QN_ISA_FN(qn_cpu_lutq_rows_f32)(w, x, ldx, n_tokens, y, ldy, row_begin, row_end);
}

void QN_ISA_FN(qn_cpu_fill_lutq)(qn_cpu_kernels *k) { k->lutq_matmul = QN_ISA_FN(qn_cpu_lutq_matmul_f32); }
