/* lutq_gemm_cpu.c — the many-token path of the repacked GPTQ / AWQ / bnb layout (lutq.h) on x86: y = x·Wᵀ through
 * kernels/cpu/panel_x86.h's panel GEMM, the weight dequantized a panel at a time. Compiled once per ISA; only the
 * AVX2 and AVX-512 objects have a body, and lutq_cpu.c calls it from QN_LUTQ_GEMM_MIN_TOKENS tokens on (prefill,
 * perplexity, batches).
 *
 * Why: lutq_cpu.c's row kernel decodes a code vector once per pass of at most 8 tokens and feeds every FMA one
 * activation load, so it is bound by loads at about a third of the FMA peak (19-32 GFLOP/s on an AVX2 Zen); here a
 * panel of 16 × 128 weights (32 rows on AVX-512) is dequantized once per block of up to 192 tokens and the
 * micro-kernel keeps 6 × 16 sums in registers (AVX-512 12 × 32).
 *
 * The panel fill: codes decoded row by row with lutq_x86.h, scaled per group segment, then 8×8 transposes; the
 * prefetch: the codes of the next panel. Act-order: each token block's activations gathered through perm into the
 * caller's scratch once, in kernel order, one token's row at a time (in cache while gathered; per chunk and row
 * super-block, the same gathers missed: gptq4a 8B down, 512 tokens, AVX2: 38-41 GFLOP/s against 49-53 now).
 *
 * Roundings: each weight is scale·(lut[c] − zero), one fp32 product, as qn_lutq_dequant_ref computes it without the
 * peers' fp16 rounding; the sums are panel_x86.h's. Within tests/kernels/test_quant_lutq.c's tolerance (2e-6 of
 * Σ|w·x| at the table's magnitudes). */
#include <string.h>

#include "kernels/cpu/isa.h"
#include "kernels/quant/lutq.h"

#if defined(QN_SIMD_X86)
#include "kernels/quant/lutq_x86.h"
#include "kernels/cpu/panel_x86.h"

typedef struct lg_ctx {
    const qn_lutq_weight *w;
    const float *x; /* [n_tokens][ldx], the checkpoint's column order */
    int64_t ldx;
} lg_ctx;

/* px_src.fill: P[kk][i] = W[r0 + i][c0 + kk] (kernel-column order) for i < nr, kk < kc; rows nr..PX_NR zero;
 * columns kc..kcp (kcp: kc rounded up to 8) hold values the micro-kernel never reads */
static void lg_fill(const void *ctx, int64_t r0, int nr, int64_t c0, int kc, float (*P)[PX_NR] /* [PX_KC][PX_NR] */) {
    const qn_lutq_weight *w = ((const lg_ctx *)ctx)->w;
    _Alignas(64) float Q[PX_NR][PX_KC]; /* the panel row-major */
    int64_t glo = 0, ghi = w->n_groups - 1; /* g: the group that holds column c0 (gstart[g] <= c0 < gstart[g + 1]) */
    while (glo < ghi) {
        const int64_t mid = (glo + ghi + 1) / 2;
        if (w->gstart[mid] <= c0) glo = mid;
        else ghi = mid - 1;
    }
    const int64_t g = glo;
    const int bits4 = w->code_bits == 4, ident = w->lut_identity, kcp = (kc + 7) & ~7;
    const int64_t G = w->n_groups, row_bytes = qn_lutq_row_bytes(w->k, w->code_bits), c1 = c0 + kc;
    const float *lut = w->lut;
    const lq256_lut k = lq256_lut_load(lut, ident);
    for (int i = 0; i < nr; i++) {
        const uint8_t *codes = w->codes + (r0 + i) * row_bytes;
        float *q = Q[i];
        int kk = 0;
        if (bits4) /* whole 16-column blocks: rows are padded to them (kc ≤ PX_KC, a multiple of 16) */
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
    for (int i = nr; i < PX_NR; i++) memset(Q[i], 0, sizeof(float) * (size_t)kcp);
    for (int i8 = 0; i8 < PX_NR; i8 += 8)
        for (int kk = 0; kk < kcp; kk += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(Q[i8 + i] + kk);
            px_tr8x8(r);
            for (int i = 0; i < 8; i++) _mm256_store_ps(P[kk + i] + i8, r[i]);
        }
}

/* px_src.prefetch: the panel's codes (a row's piece of a chunk is one or two cache lines) */
static void lg_prefetch(const void *ctx, int64_t r0, int nr, int64_t c0, int kc) {
    const qn_lutq_weight *w = ((const lg_ctx *)ctx)->w;
    const int64_t row_bytes = qn_lutq_row_bytes(w->k, w->code_bits);
    const int64_t b0 = qn_lutq_row_bytes(c0, w->code_bits) & ~(int64_t)63, b1 = qn_lutq_row_bytes(c0 + kc, w->code_bits);
    for (int64_t i = r0; i < r0 + nr; i++)
        for (int64_t o = b0; o < b1; o += 64) _mm_prefetch((const char *)(w->codes + i * row_bytes + o), _MM_HINT_T0);
}

/* px_src.block_x: the activations as they are, or (act-order) gathered into kernel order */
static const float *lg_block_x(const void *ctx, int64_t t0, int64_t tb, float *xp, int64_t *ld) {
    const lg_ctx *c = ctx;
    const float *xb = c->x + t0 * c->ldx;
    if (!c->w->perm) return *ld = c->ldx, xb;
    const int64_t K = c->w->k;
    for (int64_t t = 0; t < tb; t++) {
        const float *xr = xb + t * c->ldx;
        float *d = xp + t * K;
        for (int64_t j = 0; j < K; j++) d[j] = xr[c->w->perm[j]];
    }
    return *ld = K, xp;
}

void QN_ISA_FN(qn_cpu_lutq_gemm_f32)(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, float *y,
                                     int64_t ldy, int64_t row_begin, int64_t row_end, float *xp /* [≤ PX_TB][K] */) {
    const lg_ctx c = {w, x, ldx};
    const px_src s = {&c, w->k, lg_fill, lg_prefetch, lg_block_x};
    px_gemm(&s, n_tokens, y, ldy, row_begin, row_end, xp);
}
#endif
