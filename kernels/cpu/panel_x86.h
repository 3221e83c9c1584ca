/* panel_x86.h — the fp32 core of the x86 panel GEMMs: y[t][r] = Σ_k W[r][k]·x[t][k], the weight turned into fp32
 * panels by the caller's fill, the activations of a token block given in fp32 by the caller's block_x (px_gemm:
 * kernels/quant/float_gemm_cpu.c, F16 / BF16 / F32; kernels/quant/lutq_gemm_cpu.c, GPTQ / AWQ / bnb, takes the
 * geometry, micro-kernel and transposes and writes the same loop nest out, see there). For the *_cpu.c files of the
 * x86 ISAs only, after isa.h (its lv_* vector of the object's width).
 *
 * A panel of PX_NR rows × PX_KC columns is filled once per block of up to PX_TB tokens into P[PX_KC][PX_NR]
 * (column-major: each column's PX_NR rows in two vectors), and the micro-kernel keeps PX_MR tokens × PX_NR rows of
 * sums in registers: per column, 2 vector loads of P and PX_MR broadcasts of x feed 2·PX_MR FMAs (AVX2 6 tokens × 16
 * rows: 12 FMAs for 8 loads, 15 of 16 registers; AVX-512 12 × 32: 24 FMAs for 14 loads, 27 of 32).
 *
 * Loop nest: blocks of PX_TB tokens (block_x: x itself, or the block converted / gathered into the caller's scratch)
 * × super-blocks of PX_RS rows × chunks of PX_KC columns × panels of PX_NR rows (the next panel's weights prefetched,
 * then this one filled) × strips of PX_MR tokens (the micro-kernel, written into y at the first chunk and added at
 * the later ones). A panel is filled ceil(tokens / PX_TB) times in all.
 *
 * Roundings: each (token, row) sums a chunk's columns in one fp32 FMA chain, and the chunks' sums are added into y
 * in order: the result does not depend on the row range, the token count or the strip. */
#ifndef QN_PANEL_X86_H
#define QN_PANEL_X86_H

#if !defined(QN_SIMD_X86)
#error "panel_x86.h is for the x86 ISA objects"
#endif

#define PX_KC 128 /* columns per chunk: a multiple of 16, so every chunk starts on a lutq 4-bit block */
#define PX_TB QN_PANEL_TOKEN_BLOCK /* tokens per block (192): the panel's reuse */
/* rows per super-block: its sums (PX_TB·PX_RS floats, 192 KB) stay in L2 across the chunks (8B gate/up gptq4, 64-512
 * tokens, AVX2: all the rows of the call at once, 14336, 29-36 GFLOP/s; 256 rows 49-59) */
#define PX_RS 256
#if defined(QN_SIMD_X86_512)
#define PX_MR 12
#else
#define PX_MR 6
#endif
#define PX_NR (2 * LV_W) /* rows per panel: two vectors */

typedef struct px_src {
    const void *ctx; /* the weight and activations, as the callbacks read them */
    int64_t k;       /* columns */
    /* P[kk][i] = W[r0 + i][c0 + kk] for i < nr, kk < kc; P[kk][i] = 0 for nr <= i < PX_NR */
    void (*fill)(const void *ctx, int64_t r0, int nr, int64_t c0, int kc, float (*P)[PX_NR]);
    /* the weights fill will read for that panel, into cache (they are rows apart: the hardware prefetchers do not
     * follow them) */
    void (*prefetch)(const void *ctx, int64_t r0, int nr, int64_t c0, int kc);
    /* tokens [t0, t0 + tb) in fp32, column j of token t at [t·ld + j]: x itself or converted into scratch */
    const float *(*block_x)(const void *ctx, int64_t t0, int64_t tb, float *scratch /* [tb][k] */, int64_t *ld);
} px_src;

/* r[i] <- column i of the 8×8 block whose rows are r[0..8) */
QN_INLINE void px_tr8x8(__m256 r[8]) {
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

/* y[m·ldy + i] (=, or += where add) Σ_{kk < kc} P[kk][i]·x[m·ldx + kk] for m < M tokens, i < nr rows */
QN_INLINE void px_micro(const float (*P)[PX_NR], int kc, const float *x, int64_t ldx, const int M, float *y, int64_t ldy,
                        int nr, int add) {
    lv acc[PX_MR][2];
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
        if (nr == PX_NR) {
            for (int v = 0; v < 2; v++) lv_storeu(yr + v * LV_W, add ? lv_add(acc[m][v], lv_loadu(yr + v * LV_W)) : acc[m][v]);
        } else { /* a panel cut short by the row range */
            _Alignas(64) float t[PX_NR];
            lv_store(t, acc[m][0]), lv_store(t + LV_W, acc[m][1]);
            for (int i = 0; i < nr; i++) yr[i] = add ? yr[i] + t[i] : t[i];
        }
    }
}

#define PX_MICRO(M)                                                                                                  \
    static void px_micro_##M(const float (*P)[PX_NR], int kc, const float *x, int64_t ldx, float *y, int64_t ldy,    \
                             int nr, int add) {                                                                      \
        px_micro(P, kc, x, ldx, M, y, ldy, nr, add);                                                                 \
    }
PX_MICRO(1)
PX_MICRO(2)
PX_MICRO(3)
PX_MICRO(4)
PX_MICRO(5)
PX_MICRO(6)
#if PX_MR > 6
PX_MICRO(7)
PX_MICRO(8)
PX_MICRO(9)
PX_MICRO(10)
PX_MICRO(11)
PX_MICRO(12)
#endif
#undef PX_MICRO

typedef void (*px_micro_fn)(const float (*)[PX_NR], int, const float *, int64_t, float *, int64_t, int, int);
static const px_micro_fn PX_MICROS[PX_MR] = { /* [M - 1] */
    px_micro_1, px_micro_2, px_micro_3, px_micro_4, px_micro_5, px_micro_6,
#if PX_MR > 6
    px_micro_7, px_micro_8, px_micro_9, px_micro_10, px_micro_11, px_micro_12,
#endif
};

/* y[t·ldy + r] = Σ_k W[r][k]·x[t][k] for r in [row_begin, row_end), t < n_tokens; y: [n_tokens][ldy]. scratch: what
 * s->block_x needs ([min(n_tokens, PX_TB)][s->k] floats, or NULL where it returns x itself). */
__attribute__((unused)) static void px_gemm(const px_src *s, int64_t n_tokens, float *y, int64_t ldy, int64_t row_begin, int64_t row_end,
                    float *scratch) {
    _Alignas(64) float P[PX_KC][PX_NR];
    const int64_t K = s->k;
    for (int64_t t0 = 0; t0 < n_tokens; t0 += PX_TB) {
        const int64_t tb = n_tokens - t0 < PX_TB ? n_tokens - t0 : PX_TB;
        int64_t ld;
        const float *xb = s->block_x(s->ctx, t0, tb, scratch, &ld); /* token t's column j at xb[t·ld + j] */
        for (int64_t rs = row_begin; rs < row_end; rs += PX_RS) {
            const int64_t re = rs + PX_RS < row_end ? rs + PX_RS : row_end;
            for (int64_t c0 = 0; c0 < K; c0 += PX_KC) {
                const int kc = (int)(K - c0 < PX_KC ? K - c0 : PX_KC);
                for (int64_t r0 = rs; r0 < re; r0 += PX_NR) {
                    const int nr = (int)(re - r0 < PX_NR ? re - r0 : PX_NR);
                    /* the next panel (the super-block's first at the next chunk after its last), while this one
                     * computes (lutq, without: 78% of the fill's samples on the code loads, the fill 35% of the
                     * time; 8B q/o, 64 tokens, AVX2) */
                    const int64_t pr = r0 + PX_NR < re ? r0 + PX_NR : rs, pc = r0 + PX_NR < re ? c0 : c0 + PX_KC;
                    if (pc < K)
                        s->prefetch(s->ctx, pr, (int)(re - pr < PX_NR ? re - pr : PX_NR), pc,
                                    (int)(K - pc < PX_KC ? K - pc : PX_KC));
                    s->fill(s->ctx, r0, nr, c0, kc, P);
                    for (int64_t m0 = 0; m0 < tb; m0 += PX_MR) {
                        const int M = (int)(tb - m0 < PX_MR ? tb - m0 : PX_MR);
                        PX_MICROS[M - 1]((const float(*)[PX_NR])P, kc, xb + m0 * ld + c0, ld, y + (t0 + m0) * ldy + r0,
                                         ldy, nr, c0 > 0);
                    }
                }
            }
        }
    }
}

#endif
