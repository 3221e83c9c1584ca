/* lutq_gemm_cpu.c — the many-token path of the repacked GPTQ / AWQ / bnb layout (lutq.h) on x86: y = x·Wᵀ as a
 * register-blocked fp32 GEMM over dequantized weight panels, on kernels/cpu/panel_x86.h's micro-kernel and transposes
 * (its geometry: PX_NR rows × PX_KC columns per panel, PX_MR tokens per strip, PX_TB per block, PX_RS rows per
 * super-block). Compiled once per ISA; only the AVX2 and AVX-512 objects have a body, and lutq_cpu.c calls it from
 * QN_LUTQ_GEMM_MIN_TOKENS tokens on (prefill, perplexity, batches).
 *
 * Why: lutq_cpu.c's row kernel decodes a code vector once per pass of at most 8 tokens and feeds every FMA one
 * activation load, so it is bound by loads at about a third of the FMA peak (19-32 GFLOP/s on an AVX2 Zen).
 *
 * Loop nest: blocks of PX_TB tokens (act-order: the block's activations first gathered through perm into the caller's
 * scratch, in kernel order, one token's row at a time: per chunk and super-block the same gathers missed, gptq4a 8B
 * down at 512 tokens 38-41 GFLOP/s against 49-53) × super-blocks of PX_RS rows × chunks of PX_KC kernel columns (the
 * chunk's first group found once) × panels of PX_NR rows (the next panel's codes prefetched; the panel filled: codes
 * decoded row by row with lutq_x86.h, scaled per group segment, then 8×8 transposes) × strips of PX_MR tokens (the
 * micro-kernel, written into y at the first chunk and added at the later ones). It is px_gemm's nest written out:
 * through px_gemm's callbacks (the group found per panel) gptq4 8B down at 64 tokens ran at 0.8-0.85x in alternating
 * pairs on the AVX2 VM, cause not found; nf4 did not slow down.
 *
 * Roundings: each weight is scale·(lut[c] − zero), one fp32 product, as qn_lutq_dequant_ref computes it without the
 * peers' fp16 rounding; each (token, row) sums its chunk's columns in one fp32 chain, and the chunks' sums are added
 * into y in order. Within tests/kernels/test_quant_lutq.c's tolerance (2e-6 of Σ|w·x| at the table's magnitudes). */
#include <string.h>

#include "kernels/cpu/isa.h"
#include "kernels/quant/lutq.h"

#if defined(QN_SIMD_X86)
#include "kernels/quant/lutq_x86.h"

#include "kernels/cpu/panel_x86.h"

/* P[kk][i] = W[r0 + i][c0 + kk] (kernel-column order) for i < nr, kk < kc; rows nr..PX_NR zero; columns kc..kcp
 * (kcp: kc rounded up to 8) hold values the micro-kernel never reads. g: the first group that holds column c0.
 * Q: scratch, the panel row-major. */
static void fill_panel(const qn_lutq_weight *w, int64_t r0, int nr, int64_t c0, int kc, int64_t g,
                       float (*Q)[PX_KC] /* [PX_NR][PX_KC] */, float (*P)[PX_NR] /* [PX_KC][PX_NR] */) {
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

void QN_ISA_FN(qn_cpu_lutq_gemm_f32)(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, float *y,
                                     int64_t ldy, int64_t row_begin, int64_t row_end, float *xp /* [≤ PX_TB][K] */) {
    _Alignas(64) float P[PX_KC][PX_NR];
    _Alignas(64) float Q[PX_NR][PX_KC];
    const int64_t K = w->k, G = w->n_groups, row_bytes = qn_lutq_row_bytes(w->k, w->code_bits);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += PX_TB) {
        const int64_t tb = n_tokens - t0 < PX_TB ? n_tokens - t0 : PX_TB;
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
        for (int64_t rs = row_begin; rs < row_end; rs += PX_RS) {
            const int64_t re = rs + PX_RS < row_end ? rs + PX_RS : row_end;
            int64_t g = 0;
            for (int64_t c0 = 0; c0 < K; c0 += PX_KC) {
                const int kc = (int)(K - c0 < PX_KC ? K - c0 : PX_KC);
                while (g < G && w->gstart[g + 1] <= c0) g++;
                const float *xc = xb + c0; /* token t's column c0 + kk at xc[t·ld + kk] */
                for (int64_t r0 = rs; r0 < re; r0 += PX_NR) {
                    const int nr = (int)(re - r0 < PX_NR ? re - r0 : PX_NR);
                    /* the next panel's codes (the super-block's first at the next chunk after its last), while this
                     * one computes: a row's piece of a chunk is one or two cache lines, rows apart, which the
                     * hardware prefetchers do not follow (without: 78% of the fill's samples on the code loads, the
                     * fill 35% of the time; 8B q/o, 64 tokens, AVX2) */
                    const int64_t pr = r0 + PX_NR < re ? r0 + PX_NR : rs, pc = r0 + PX_NR < re ? c0 : c0 + PX_KC;
                    const int64_t pb0 = qn_lutq_row_bytes(pc, w->code_bits) & ~(int64_t)63;
                    const int64_t pb1 = qn_lutq_row_bytes(pc + PX_KC < K ? pc + PX_KC : K, w->code_bits);
                    for (int64_t i = pr; i < pr + PX_NR && i < re; i++)
                        for (int64_t o = pb0; o < pb1; o += 64)
                            _mm_prefetch((const char *)(w->codes + i * row_bytes + o), _MM_HINT_T0);
                    fill_panel(w, r0, nr, c0, kc, g, Q, P);
                    for (int64_t m0 = 0; m0 < tb; m0 += PX_MR) {
                        const int M = (int)(tb - m0 < PX_MR ? tb - m0 : PX_MR);
                        PX_MICROS[M - 1]((const float(*)[PX_NR])P, kc, xc + m0 * ld, ld, y + (t0 + m0) * ldy + r0, ldy,
                                     nr, c0 > 0);
                    }
                }
            }
        }
    }
}
#endif
