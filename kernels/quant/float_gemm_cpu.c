/* float_gemm_cpu.c — F16, BF16 and F32 weights times many tokens on x86 (prefill, perplexity, batches):
 * kernels/cpu/panel_x86.h's panel GEMM, the weight converted to fp32 a panel at a time (F16C vcvtph2ps; BF16 a 16-bit
 * shift), the activations (vec_dot_type rows: F16 / BF16 / F32, as the dot path takes them) converted once per token
 * block into the scratch (exact: every fp16 and bf16 value is an fp32 value). Compiled once per ISA; only the AVX2
 * and AVX-512 objects have a body. qn_cpu_matmul_rows hands it the call from float_gemm_min_tokens[fmt] tokens on.
 *
 * Why: the dot path (float_cpu.c, 1 row × 1 token) reads every weight row once per token and every FMA takes two
 * loads: 17-29 GFLOP/s on an AVX2 Zen at 64 tokens (F32, BF16, F16), whatever the token count.
 *
 * Roundings: products of fp32 values of the fp16 / bf16 inputs are exact, so both paths round in the sums only: here
 * panel_x86.h's (a chain of fp32 FMAs per 128-column chunk, the chunks added in order), within
 * tests/kernels/test_float_gemm.c's tolerance of the double reference. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/isa.h"

#if defined(QN_SIMD_X86)
#include "kernels/cpu/panel_x86.h"

/* From these many tokens on the GEMM takes the call. bench_cpu --float-path dot|gemm, AVX2 Zen, 8B q/o, two rounds
 * (GFLOP/s dot -> GEMM): F16 12 tokens 30.4/23.7 -> 30.3/30.9, 16 27.6/27.5 -> 39.6/36.3, 9 30.3/30.0 -> 25.5/28.5;
 * BF16 4 15/15 -> 14/14, 6 17/17 -> 20/21; F32 6 14.5/13.6 -> 15.4/12.9, 8 15/15 -> 19/19 (the dot kernels
 * convert F16 with one vcvtph2ps per 8 products, BF16 with a shift, and read F32 at twice the bytes). */
#ifndef QN_FLOAT_GEMM_MIN_TOKENS_F16
#define QN_FLOAT_GEMM_MIN_TOKENS_F16 16
#endif
#ifndef QN_FLOAT_GEMM_MIN_TOKENS_BF16
#define QN_FLOAT_GEMM_MIN_TOKENS_BF16 6
#endif
#ifndef QN_FLOAT_GEMM_MIN_TOKENS_F32
#define QN_FLOAT_GEMM_MIN_TOKENS_F32 8
#endif

typedef struct fg_ctx {
    const uint8_t *w; /* row r at w + r·ws */
    size_t ws;
    const uint8_t *a; /* token t at a + t·as */
    size_t as;
    int64_t k;
} fg_ctx;

/* 8 elements of type FMT at p -> fp32 */
#define FG_LOAD8(FMT, p)                                                                                               \
    ((FMT) == QN_QFORMAT_F32   ? _mm256_loadu_ps((const float *)(p))                                                  \
     : (FMT) == QN_QFORMAT_F16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))                               \
                               : _mm256_castsi256_ps(_mm256_slli_epi32(                                               \
                                     _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16)))

/* one element of type fmt at p -> fp32 */
QN_INLINE float fg_load1(qn_qformat fmt, const uint8_t *p) {
    uint16_t h;
    float f;
    if (fmt == QN_QFORMAT_F32) return memcpy(&f, p, 4), f;
    memcpy(&h, p, 2);
    return fmt == QN_QFORMAT_F16 ? qn_cpu_h2f(h) : qn_bf16_to_f32(h);
}

/* px_src.fill: P[kk][i] = W[r0 + i][c0 + kk]; 8 rows × 8 columns converted and transposed at a time (rows past nr
 * zero, columns past kc zero) */
QN_INLINE void fg_fill(qn_qformat fmt, const void *ctx, int64_t r0, int nr, int64_t c0, int kc, float (*P)[PX_NR]) {
    const fg_ctx *c = ctx;
    const size_t es = fmt == QN_QFORMAT_F32 ? 4 : 2;
    for (int i8 = 0; i8 < PX_NR; i8 += 8)
        for (int kk = 0; kk < kc; kk += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) {
                const uint8_t *p = c->w + (size_t)(r0 + i8 + i) * c->ws + (size_t)(c0 + kk) * es;
                if (i8 + i >= nr) r[i] = _mm256_setzero_ps();
                else if (kk + 8 <= kc) r[i] = FG_LOAD8(fmt, p);
                else { /* the row's last columns */
                    _Alignas(32) float t[8] = {0};
                    for (int j = 0; j < kc - kk; j++) t[j] = fg_load1(fmt, p + (size_t)j * es);
                    r[i] = _mm256_load_ps(t);
                }
            }
            px_tr8x8(r);
            for (int i = 0; i < 8; i++) _mm256_store_ps(P[kk + i] + i8, r[i]);
        }
}

/* px_src.prefetch: each row's piece of the panel */
QN_INLINE void fg_prefetch(qn_qformat fmt, const void *ctx, int64_t r0, int nr, int64_t c0, int kc) {
    const fg_ctx *c = ctx;
    const size_t es = fmt == QN_QFORMAT_F32 ? 4 : 2;
    const size_t b0 = (size_t)c0 * es & ~(size_t)63, b1 = (size_t)(c0 + kc) * es;
    for (int64_t i = r0; i < r0 + nr; i++)
        for (size_t o = b0; o < b1; o += 64) _mm_prefetch((const char *)(c->w + (size_t)i * c->ws + o), _MM_HINT_T0);
}

/* px_src.block_x: tokens [t0, t0 + tb) in fp32 (F32 activations as they are; F16 / BF16 converted into scratch) */
QN_INLINE const float *fg_block_x(qn_qformat fmt, const void *ctx, int64_t t0, int64_t tb, float *xs, int64_t *ld) {
    const fg_ctx *c = ctx;
    if (fmt == QN_QFORMAT_F32 && c->as % sizeof(float) == 0)
        return *ld = (int64_t)(c->as / sizeof(float)), (const float *)(c->a + (size_t)t0 * c->as);
    for (int64_t t = 0; t < tb; t++) {
        const uint8_t *src = c->a + (size_t)(t0 + t) * c->as;
        float *d = xs + t * c->k;
        int64_t j = 0;
        for (; j + 8 <= c->k; j += 8) _mm256_storeu_ps(d + j, FG_LOAD8(fmt, src + (size_t)j * (fmt == QN_QFORMAT_F32 ? 4 : 2)));
        for (; j < c->k; j++) d[j] = fg_load1(fmt, src + (size_t)j * (fmt == QN_QFORMAT_F32 ? 4 : 2));
    }
    return *ld = c->k, xs;
}

/* one instance of the callbacks and the entry per format (the format a constant in each) */
#define FG_FORMAT(name, FMT)                                                                                          \
    static void fill_##name(const void *ctx, int64_t r0, int nr, int64_t c0, int kc, float (*P)[PX_NR]) {            \
        fg_fill(FMT, ctx, r0, nr, c0, kc, P);                                                                         \
    }                                                                                                                  \
    static void prefetch_##name(const void *ctx, int64_t r0, int nr, int64_t c0, int kc) {                            \
        fg_prefetch(FMT, ctx, r0, nr, c0, kc);                                                                        \
    }                                                                                                                  \
    static const float *block_x_##name(const void *ctx, int64_t t0, int64_t tb, float *xs, int64_t *ld) {            \
        return fg_block_x(FMT, ctx, t0, tb, xs, ld);                                                                  \
    }                                                                                                                  \
    static qn_status gemm_##name(int64_t k, const void *w, size_t ws, const void *a, size_t as, int64_t n_tok,         \
                                 float *y, int64_t ldy, int64_t row_begin, int64_t row_end) {                         \
        const fg_ctx c = {w, ws, a, as, k};                                                                           \
        const px_src s = {&c, k, fill_##name, prefetch_##name, block_x_##name};                                       \
        const int64_t tb = n_tok < PX_TB ? n_tok : PX_TB;                                                             \
        float *xs = NULL;                                                                                             \
        if ((FMT) != QN_QFORMAT_F32 || as % sizeof(float))                                                            \
            if (!(xs = malloc(sizeof(float) * (size_t)(tb * k)))) return QN_ERR_NOMEM;                               \
        px_gemm(&s, n_tok, y, ldy, row_begin, row_end, xs);                                                           \
        free(xs);                                                                                                     \
        return QN_OK;                                                                                                 \
    }
FG_FORMAT(f32, QN_QFORMAT_F32)
FG_FORMAT(f16, QN_QFORMAT_F16)
FG_FORMAT(bf16, QN_QFORMAT_BF16)
#undef FG_FORMAT
#endif

void QN_ISA_FN(qn_cpu_fill_float_gemm)(qn_cpu_kernels *k) {
#if defined(QN_SIMD_X86)
    k->float_gemm[QN_QFORMAT_F32] = gemm_f32;
    k->float_gemm[QN_QFORMAT_F16] = gemm_f16;
    k->float_gemm[QN_QFORMAT_BF16] = gemm_bf16;
    k->float_gemm_min_tokens[QN_QFORMAT_F32] = QN_FLOAT_GEMM_MIN_TOKENS_F32;
    k->float_gemm_min_tokens[QN_QFORMAT_F16] = QN_FLOAT_GEMM_MIN_TOKENS_F16;
    k->float_gemm_min_tokens[QN_QFORMAT_BF16] = QN_FLOAT_GEMM_MIN_TOKENS_BF16;
#else
    (void)k;
#endif
}
