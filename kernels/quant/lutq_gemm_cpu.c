/* lutq_gemm_cpu.c — the many-token path of the repacked GPTQ / AWQ / bnb layout (lutq.h) on x86: y = x·Wᵀ as a
 * register-blocked fp32 GEMM over dequantized weight panels. Compiled once per ISA; only the AVX2 and AVX-512 objects
 * have a body, and lutq_cpu.c calls it from QN_LUTQ_GEMM_MIN_TOKENS tokens on (prefill, perplexity, batches).
 *
 * Why: lutq_cpu.c's row kernel decodes a code vector once per pass of at most 8 tokens and feeds every FMA one
 * activation load, so it is bound by loads at about a third of the FMA peak (19-32 GFLOP/s on an AVX2 Zen). Here a panel
 * of LG_NR rows × LG_KC kernel columns is dequantized once per block of up to LG_TB tokens into P[LG_KC][LG_NR]
 * (column-major: each column's LG_NR rows in two vectors), and the micro-kernel keeps LG_MR tokens × LG_NR rows of
 * sums in registers: per column, 2 vector loads of P and LG_MR broadcasts of x feed 2·LG_MR FMAs (AVX2 6 tokens × 16
 * rows: 12 FMAs for 8 loads, 15 of 16 registers; AVX-512 12 × 32: 24 FMAs for 14 loads, 27 of 32).
 *
 * Loop nest: blocks of LG_TB tokens (act-order: the block's activations first gathered through perm into the caller's
 * scratch, in kernel order) × super-blocks of LG_RS rows × chunks of LG_KC kernel columns × panels of LG_NR rows (the
 * panel filled:
 * codes decoded row by row with lutq_x86.h, scaled per group segment, then 8×8 transposes; the next panel's codes
 * prefetched) × strips of LG_MR tokens (the micro-kernel, written into y at the first chunk and added at the later
 * ones). A panel's weights are dequantized ceil(tokens / LG_TB) times in all.
 *
 * Roundings: each weight is scale·(lut[c] − zero), one fp32 product, as qn_lutq_dequant_ref computes it without the
 * peers' fp16 rounding; each (token, row) sums its chunk's columns in one fp32 chain, and the chunks' sums are added
 * into y in order. Within tests/kernels/test_quant_lutq.c's tolerance (2e-6 of Σ|w·x| at the table's magnitudes). */
#include <string.h>

#include "kernels/cpu/isa.h"
#include "kernels/quant/lutq.h"

#if defined(QN_SIMD_X86)
#include "kernels/quant/lutq_x86.h"

#define LG_KC 128 /* kernel columns per chunk: a multiple of 16, so every chunk starts on a 4-bit block */
#define LG_TB QN_LUTQ_GEMM_TOKEN_BLOCK /* tokens per block (192): the panel's reuse */
/* rows per super-block: its sums (LG_TB·LG_RS floats, 192 KB) stay in L2 across the chunks (8B gate/up, 64-512
 * tokens, AVX2: all the rows of the call at once, 14336, 29-36 GFLOP/s; 256 rows 49-59) */
#define LG_RS 256
#if defined(QN_SIMD_X86_512)
#define LG_MR 12
#else
#define LG_MR 6
#endif
#define LG_NR (2 * LV_W) /* rows per panel: two vectors */

/* r[i] <- column i of the 8×8 block whose rows are r[0..8) */
QN_INLINE void tr8x8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20), r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20), r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31), r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31), r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* P[kk][i] = W[r0 + i][c0 + kk] (kernel-column order) for i < nr, kk < kc; rows nr..LG_NR zero; columns kc..kcp
 * (kcp: kc rounded up to 8) hold values the micro-kernel never reads. g: the first group that holds column c0.
 * Q: scratch, the panel row-major. */
static void fill_panel(const qn_lutq_weight *w, int64_t r0, int nr, int64_t c0, int kc, int64_t g,
                       float (*Q)[LG_KC] /* [LG_NR][LG_KC] */, float (*P)[LG_NR] /* [LG_KC][LG_NR] */) {
    const int bits4 = w->code_bits == 4, ident = w->lut_identity, kcp = (kc + 7) & ~7;
    const int64_t G = w->n_groups, row_bytes = qn_lutq_row_bytes(w->k, w->code_bits), c1 = c0 + kc;
    const float *lut = w->lut;
    const lq256_lut k = lq256_lut_load(lut, ident);
    for (int i = 0; i < nr; i++) {
        const uint8_t *codes = w->codes + (r0 + i) * row_bytes;
        float *q = Q[i];
        int kk = 0;
        if (bits4) /* whole 16-column blocks: rows are padded to them (kc ≤ LG_KC, a multiple of 16) */
            for (; kk < kc; kk += 16) {
                __m256 va, vb;
                lq256_dec4(codes + ((c0 + kk) >> 4) * 8, &k, &va, &vb);
                _mm256_storeu_ps(q + kk, va), _mm256_storeu_ps(q + kk + 8, vb);
            }
        else {
            for (; kk + 8 <= kc; kk += 8) _mm256_storeu_ps(q + kk, lq256_dec8(codes + c0 + kk, ident, lut));
            for (; kk < kc; kk++) q[kk] = lut[codes[c0 + kk]];
            for (; kk < kcp; kk++) q[kk] = 0.0f;
        }
        const float *sc = w->scale + (r0 + i) * G, *zr = w->zero ? w->zero + (r0 + i) * G : NULL;
        for (int64_t gg = g; gg < G && w->gstart[gg] < c1; gg++) { /* the group's segment of the chunk */
            const int a = (int)((w->gstart[gg] > c0 ? w->gstart[gg] : c0) - c0);
            const int b = (int)((w->gstart[gg + 1] < c1 ? w->gstart[gg + 1] : c1) - c0);
            const float s = sc[gg], z = zr ? zr[gg] : 0.0f;
            const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(z);
            int j = a;
            for (; j + 8 <= b; j += 8) _mm256_storeu_ps(q + j, _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(q + j), vz), vs));
            for (; j < b; j++) q[j] = (q[j] - z) * s;
        }
    }
    for (int i = nr; i < LG_NR; i++) memset(Q[i], 0, sizeof(float) * (size_t)kcp);
    for (int i8 = 0; i8 < LG_NR; i8 += 8)
        for (int kk = 0; kk < kcp; kk += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(Q[i8 + i] + kk);
            tr8x8(r);
            for (int i = 0; i < 8; i++) _mm256_store_ps(P[kk + i] + i8, r[i]);
        }
}

/* y[m·ldy + i] (=, or += where add) Σ_{kk < kc} P[kk][i]·x[m·ldx + kk] for m < M tokens, i < nr rows */
QN_INLINE void micro(const float (*P)[LG_NR], int kc, const float *x, int64_t ldx, const int M, float *y, int64_t ldy,
                     int nr, int add) {
    lv acc[LG_MR][2];
#pragma GCC unroll 12
    for (int m = 0; m < M; m++) acc[m][0] = acc[m][1] = lv_zero();
    for (int kk = 0; kk < kc; kk++) {
        const lv p0 = lv_load(P[kk]), p1 = lv_load(P[kk] + LV_W);
#pragma GCC unroll 12
        for (int m = 0; m < M; m++) {
            const lv xb = lv_set1(x[m * ldx + kk]);
            acc[m][0] = lv_fma(p0, xb, acc[m][0]);
            acc[m][1] = lv_fma(p1, xb, acc[m][1]);
        }
    }
#pragma GCC unroll 12
    for (int m = 0; m < M; m++) {
        float *yr = y + m * ldy;
        if (nr == LG_NR) {
            for (int v = 0; v < 2; v++) lv_storeu(yr + v * LV_W, add ? lv_add(acc[m][v], lv_loadu(yr + v * LV_W)) : acc[m][v]);
        } else { /* a panel cut short by the row range */
            _Alignas(64) float t[LG_NR];
            lv_store(t, acc[m][0]), lv_store(t + LV_W, acc[m][1]);
            for (int i = 0; i < nr; i++) yr[i] = add ? yr[i] + t[i] : t[i];
        }
    }
}

#define LG_MICRO(M)                                                                                                  \
    static void micro_##M(const float (*P)[LG_NR], int kc, const float *x, int64_t ldx, float *y, int64_t ldy, int nr, \
                          int add) {                                                                                 \
        micro(P, kc, x, ldx, M, y, ldy, nr, add);                                                                    \
    }
LG_MICRO(1)
LG_MICRO(2)
LG_MICRO(3)
LG_MICRO(4)
LG_MICRO(5)
LG_MICRO(6)
#if LG_MR > 6
LG_MICRO(7)
LG_MICRO(8)
LG_MICRO(9)
LG_MICRO(10)
LG_MICRO(11)
LG_MICRO(12)
#endif
#undef LG_MICRO

typedef void (*micro_fn)(const float (*)[LG_NR], int, const float *, int64_t, float *, int64_t, int, int);
static const micro_fn MICRO[LG_MR] = { /* [M - 1] */
    micro_1, micro_2, micro_3, micro_4, micro_5, micro_6,
#if LG_MR > 6
    micro_7, micro_8, micro_9, micro_10, micro_11, micro_12,
#endif
};

void QN_ISA_FN(qn_cpu_lutq_gemm_f32)(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, float *y,
                                     int64_t ldy, int64_t row_begin, int64_t row_end, float *xp /* [≤ LG_TB][K] */) {
    _Alignas(64) float P[LG_KC][LG_NR];
    _Alignas(64) float Q[LG_NR][LG_KC];
    const int64_t K = w->k, G = w->n_groups, row_bytes = qn_lutq_row_bytes(w->k, w->code_bits);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += LG_TB) {
        const int64_t tb = n_tokens - t0 < LG_TB ? n_tokens - t0 : LG_TB;
        const float *xb = x + t0 * ldx; /* the block's token t, kernel column j at xb[t·ld + j] */
        int64_t ld = ldx;
        if (w->perm) { /* one token's row at a time, in cache while gathered (per chunk and super-block, the same
                        * gathers missed: gptq4a 8B down, 512 tokens, AVX2: 45-47 GFLOP/s against gptq4's 53-59) */
            for (int64_t t = 0; t < tb; t++) {
                const float *xr = xb + t * ldx;
                float *d = xp + t * K;
                for (int64_t j = 0; j < K; j++) d[j] = xr[w->perm[j]];
            }
            xb = xp, ld = K;
        }
        for (int64_t rs = row_begin; rs < row_end; rs += LG_RS) {
            const int64_t re = rs + LG_RS < row_end ? rs + LG_RS : row_end;
            int64_t g = 0;
            for (int64_t c0 = 0; c0 < K; c0 += LG_KC) {
                const int kc = (int)(K - c0 < LG_KC ? K - c0 : LG_KC);
                while (g < G && w->gstart[g + 1] <= c0) g++;
                const float *xc = xb + c0; /* token t's column c0 + kk at xc[t·ld + kk] */
                for (int64_t r0 = rs; r0 < re; r0 += LG_NR) {
                    const int nr = (int)(re - r0 < LG_NR ? re - r0 : LG_NR);
                    /* the next panel's codes (the super-block's first at the next chunk after its last), while this
                     * one computes: a row's piece of a chunk is one or two cache lines, rows apart, which the
                     * hardware prefetchers do not follow (without: 78% of the fill's samples on the code loads, the
                     * fill 35% of the time; 8B q/o, 64 tokens, AVX2) */
                    const int64_t pr = r0 + LG_NR < re ? r0 + LG_NR : rs, pc = r0 + LG_NR < re ? c0 : c0 + LG_KC;
                    const int64_t pb0 = qn_lutq_row_bytes(pc, w->code_bits) & ~(int64_t)63;
                    const int64_t pb1 = qn_lutq_row_bytes(pc + LG_KC < K ? pc + LG_KC : K, w->code_bits);
                    for (int64_t i = pr; i < pr + LG_NR && i < re; i++)
                        for (int64_t o = pb0; o < pb1; o += 64)
                            _mm_prefetch((const char *)(w->codes + i * row_bytes + o), _MM_HINT_T0);
                    fill_panel(w, r0, nr, c0, kc, g, Q, P);
                    for (int64_t m0 = 0; m0 < tb; m0 += LG_MR) {
                        const int M = (int)(tb - m0 < LG_MR ? tb - m0 : LG_MR);
                        MICRO[M - 1]((const float(*)[LG_NR])P, kc, xc + m0 * ld, ld, y + (t0 + m0) * ldy + r0, ldy,
                                     nr, c0 > 0);
                    }
                }
            }
        }
    }
}
#endif
