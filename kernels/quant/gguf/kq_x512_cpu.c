/* kq_x512_cpu.c — AVX-512 prefill paths for the repacked K-quants (Q2_K .. Q6_K ×8 groups, kx8.h), chosen at table
 * fill where the CPU has them: a 16-row × 8-token AVX512_VNNI tile and AMX-INT8 tiles of 16 tokens. Both decode two
 * groups per k-slice once for all the tokens of a call and reach the scalar path's integers and fp32 finish, so every
 * output is bit-identical to vec_dot (kq_cpu.c). Compiled once per ISA (the *_cpu.c glob); only the AVX-512 object
 * fills anything. Owns: the decoded layouts kx16d_block and amx_sb, the tiles, qn_cpu_fill_kquant_x512. Not: the
 * ×8 layouts (kx8.h), their unpacking (kx8_x86.h), the 8-row tiles for 4 tokens or fewer (kq_cpu.c).
 * Results: bench/results/cpu-vnni-kquant-2026-12-05.md. */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/isa.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/kx8.h"
#include "kernels/quant/gguf/kx8_x86.h"

/* ------------------------------------------------------------------ x86: AVX-512 VNNI prefill tile (Q2_K .. Q6_K)
 * Where the CPU has AVX512_VNNI (asked at run time: the AVX-512 objects are built without -mavx512vnni and these
 * functions carry the target attribute), matmul_x8 with more than 4 tokens decodes two groups (16 rows) at a time, a
 * k-slice of super-blocks at a time, into kx16d_block (each 4-element step's codes of the 16 rows as one 64-byte
 * vector, the scales as i32) and runs 16 rows × up to 8 tokens over the slice. Per step: one load, and per token one
 * vpdpbusd (u8 codes × the token's 4 s8 activations, broadcast by the instruction from memory) summed straight into
 * i32, so there is no i16 limit; each sub-block's sum is scaled by one vpmulld. The mins (Q2_K, Q4_K, Q5_K) and the
 * −32 / −4 of Q6_K's / Q3_K's unsigned codes come from the Q8_K bsums by vpdpwssd. The integers and the fp32 finish
 * are the 8-row tiles' (q2kx8_block .. q6kx8_block), so every output stays bit-identical to vec_dot. An odd last group
 * runs in the low 8 lanes. (bench/results/cpu-vnni-kquant-2026-12-05.md) */
#if defined(QN_SIMD_X86_512)
#define QN_VNNI __attribute__((target("avx512vnni")))

typedef struct kx16d_block {
    __m256i q[64][2];  /* step p: the u8 codes of elements 4p..4p+3 of group 0's 8 rows, then group 1's (one zmm) */
    __m256i sc[16][2]; /* sub-block b's scale (i32 per row): Q4_K, Q5_K b < 8 (32 elements); Q2_K, Q3_K, Q6_K b < 16
                        * (16 elements; Q3_K: the scale − 32) */
    __m256i cp[8][2];  /* i16 pair j per row, the coefficients of Q8_K bsums 2j, 2j + 1: Q4_K, Q5_K (mn_j, mn_j) (the
                        * mins of the 32-element sub-blocks); Q2_K (mn_2j, mn_2j+1); Q3_K, Q6_K (sc_2j, sc_2j+1) */
    __m256 d[2], dmin[2];
} kx16d_block;

/* super-blocks per k-slice: 4 decoded (23 KiB) and 8 tokens' 4 Q8_K blocks (9 KiB) stay in L1 */
#define QN_KX16D_SLICE 4

/* group block g of fmt (Q2_K .. Q6_K: a compile-time constant) -> half h (the 8 rows' lanes) of x. Step p = 32h' + 8j +
 * 4·half + s of Q2_K / Q3_K is step s of q2kx8_part / q3kx8_part's sub-block 8h' + 2j + half. */
QN_INLINE void kx16d_decode(qn_qformat fmt, const uint8_t *g, kx16d_block *x, int h) {
    const __m256i *gv = (const __m256i *)g;
    if (fmt == QN_QFORMAT_Q2_K) {
        const __m256i hdr = _mm256_loadu_si256(gv + QN_Q2KX8_D_DWORD);
        x->d[h] = lanes_f16(hdr, 0), x->dmin[h] = lanes_f16(hdr, 2);
        for (int b = 0; b < 16; b++) /* scale | min << 4 in byte b % 4 of dword row b / 4 */
            x->sc[b][h] = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_loadu_si256(gv + b / 4), dword_bytes_mask(b % 4, b % 4)),
                                           _mm256_set1_epi32(15));
        for (int p = 0; p < 8; p++)
            x->cp[p][h] = _mm256_srli_epi16(_mm256_shuffle_epi8(_mm256_loadu_si256(gv + p / 2), dword_bytes_mask(2 * (p % 2), 2 * (p % 2) + 1)), 4);
        for (int p = 0; p < 64; p++) {
            const int hh = p / 32, j = (p / 8) % 4, hs = p % 8; /* hs = 4·half + s */
            const __m256i v = _mm256_loadu_si256(gv + 4 + 8 * hh + hs);
            x->q[p][h] = _mm256_and_si256(_mm256_srli_epi16(v, 2 * j), _mm256_set1_epi8(3));
        }
        return;
    }
    if (fmt == QN_QFORMAT_Q3_K) {
        __m256i scw[4];
        q3kx8_scales(gv, scw);
        x->d[h] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + QN_Q3KX8_D_BYTE)));
        x->dmin[h] = _mm256_setzero_ps();
        for (int b = 0; b < 16; b++)
            x->sc[b][h] = _mm256_srai_epi32(_mm256_shuffle_epi8(scw[b / 4], dword_bytes_mask_hi(b % 4, b % 4)), 24);
        for (int p = 0; p < 8; p++)
            x->cp[p][h] = _mm256_srai_epi16(_mm256_shuffle_epi8(scw[p / 2], dword_bytes_mask_hi(2 * (p % 2), 2 * (p % 2) + 1)), 8);
        for (int p = 0; p < 64; p++) x->q[p][h] = q3kx8_code(gv + p % 8, p / 8); /* c_i, i = 4h' + j; p % 8 = 4·half + s */
        return;
    }
    if (fmt == QN_QFORMAT_Q6_K) {
        x->d[h] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + QN_Q6KX8_D_BYTE)));
        x->dmin[h] = _mm256_setzero_ps();
        for (int b = 0; b < 16; b++) {
            x->sc[b][h] = _mm256_srai_epi32(q6kx8_sc(gv, b), 16);
            for (int s = 0; s < 4; s++) x->q[4 * b + s][h] = q6kx8_codes(gv, b, s);
        }
        for (int p = 0; p < 8; p++) x->cp[p][h] = q6kx8_scp(gv, p);
        return;
    }
    __m256i scw[2], mnw[2];
    q45kx8_head(gv, scw, mnw, &x->d[h], &x->dmin[h]);
    for (int b = 0; b < 8; b++) {
        x->sc[b][h] = _mm256_srli_epi32(q45kx8_sc(scw, b), 16);
        x->cp[b][h] = _mm256_shuffle_epi8(mnw[b / 4], dword_bytes_mask(b % 4, b % 4));
        for (int s = 0; s < 8; s++) x->q[8 * b + s][h] = q45kx8_codes(fmt == QN_QFORMAT_Q5_K, gv, b, s);
    }
}

/* acc += the dword dot products of the u8 codes q and the s8 activations a4[0..3] (broadcast by the instruction: GCC
 * keeps a separate vpbroadcastd otherwise, one more instruction per 64 MACs) */
QN_VNNI QN_INLINE __m512i dpbusd_bcst(__m512i acc, __m512i q, const int8_t *a4) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(q), "m"(*(const int32_t *)(const void *)a4));
    return acc;
}

/* y[t·ldy + r] (r < 16 lanes, the low 8 only when !both; t < nt, a compile-time constant 1..8) += row r's kq_term of
 * super-blocks ib0 .. ib0 + nb − 1, block after block, from the decoded x[0..nb) (carry: y holds the earlier k-slices'
 * sums, else they start at 0). a: token 0's Q8_K row (token t at + t·as). The fp32 sums live in y between super-blocks
 * (a load and a store per block and token): in registers they pushed the integer sums onto the stack. */
QN_VNNI QN_INLINE void kx16d_tile(qn_qformat fmt, const kx16d_block *x, int64_t nb, int64_t ib0, const uint8_t *a,
                                  size_t as, const int nt, bool carry, bool both, float *y, int64_t ldy) {
    const int sub = fmt == QN_QFORMAT_Q4_K || fmt == QN_QFORMAT_Q5_K ? 8 : 4; /* steps per sub-block */
    const __mmask16 m = both ? 0xffff : 0x00ff;
    for (int64_t i = 0; i < nb; i++) {
        const qn_block_q8_k *yb[8];
        for (int t = 0; t < nt; t++) yb[t] = (const qn_block_q8_k *)(a + (size_t)t * as) + ib0 + i;
        __m512i isum[8], acc[8];
        for (int t = 0; t < nt; t++) isum[t] = _mm512_setzero_si512();
#pragma GCC unroll 64
        for (int p = 0; p < 64; p++) {
            const __m512i q = _mm512_load_si512(&x[i].q[p][0]);
            for (int t = 0; t < nt; t++) acc[t] = dpbusd_bcst(p % sub ? acc[t] : _mm512_setzero_si512(), q, yb[t]->qs + 4 * p);
            if (p % sub == sub - 1) {
                const __m512i sc = _mm512_load_si512(&x[i].sc[p / sub][0]);
                for (int t = 0; t < nt; t++) isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(acc[t], sc));
            }
        }
        const __m512 dw = _mm512_load_ps((const float *)&x[i].d[0]), dminw = _mm512_load_ps((const float *)&x[i].dmin[0]);
        for (int t = 0; t < nt; t++) {
            __m512i c = _mm512_setzero_si512(); /* Σ_j cp_j · (bsum_2j, bsum_2j+1) */
            for (int j = 0; j < 8; j++) {
                int32_t bp;
                memcpy(&bp, &yb[t]->bsums[2 * j], 4);
                c = _mm512_dpwssd_epi32(c, _mm512_load_si512(&x[i].cp[j][0]), _mm512_set1_epi32(bp));
            }
            const __m512 da = _mm512_set1_ps(yb[t]->d);
            __m512 term;
            if (fmt == QN_QFORMAT_Q6_K || fmt == QN_QFORMAT_Q3_K) { /* the −32 / −4 of the unsigned codes */
                const __m512i is = _mm512_sub_epi32(isum[t], _mm512_slli_epi32(c, fmt == QN_QFORMAT_Q6_K ? 5 : 2));
                term = _mm512_mul_ps(_mm512_mul_ps(da, dw), _mm512_cvtepi32_ps(is));
            } else {
                term = _mm512_sub_ps(_mm512_mul_ps(_mm512_mul_ps(da, dw), _mm512_cvtepi32_ps(isum[t])),
                                     _mm512_mul_ps(_mm512_mul_ps(da, dminw), _mm512_cvtepi32_ps(c)));
            }
            const __m512 s0 = carry || i > 0 ? _mm512_maskz_loadu_ps(m, y + t * ldy) : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(y + t * ldy, m, _mm512_add_ps(s0, term));
        }
    }
}

/* every token over one decoded slice: 8 at a time, then the 1..7 left */
QN_VNNI QN_INLINE void kx16d_tokens(qn_qformat fmt, const kx16d_block *x, int64_t nb, int64_t ib0, const uint8_t *a,
                                    size_t as, int64_t n_tok, bool carry, bool both, float *y, int64_t ldy) {
    int64_t t = 0;
    for (; t + 8 <= n_tok; t += 8) kx16d_tile(fmt, x, nb, ib0, a + (size_t)t * as, as, 8, carry, both, y + t * ldy, ldy);
    a += (size_t)t * as, y += t * ldy;
    switch (n_tok - t) {
    case 7: kx16d_tile(fmt, x, nb, ib0, a, as, 7, carry, both, y, ldy); break;
    case 6: kx16d_tile(fmt, x, nb, ib0, a, as, 6, carry, both, y, ldy); break;
    case 5: kx16d_tile(fmt, x, nb, ib0, a, as, 5, carry, both, y, ldy); break;
    case 4: kx16d_tile(fmt, x, nb, ib0, a, as, 4, carry, both, y, ldy); break;
    case 3: kx16d_tile(fmt, x, nb, ib0, a, as, 3, carry, both, y, ldy); break;
    case 2: kx16d_tile(fmt, x, nb, ib0, a, as, 2, carry, both, y, ldy); break;
    case 1: kx16d_tile(fmt, x, nb, ib0, a, as, 1, carry, both, y, ldy); break;
    default: break;
    }
}

/* matmul_x8 of FMT through the decoded 16-row tile (more than 4 tokens; else the 8-row tiles, fallback) */
#define QN_DEF_KX16D_MATMUL(name, FMT, fallback)                                                                    \
    QN_VNNI static void name(int64_t n, const void *w8, int64_t n_groups, const void *a, size_t as, int64_t n_tok,  \
                             float *y, int64_t ldy) {                                                               \
        if (n_tok <= 4) {                                                                                           \
            fallback(n, w8, n_groups, a, as, n_tok, y, ldy);                                                        \
            return;                                                                                                 \
        }                                                                                                           \
        _Alignas(64) kx16d_block buf[QN_KX16D_SLICE];                                                               \
        const int64_t nblk = n / QN_QK_K;                                                                           \
        const size_t gb = qn_kx8_block_bytes(FMT), rb = (size_t)nblk * gb;                                          \
        for (int64_t g = 0; g < n_groups; g += 2) {                                                                 \
            const bool both = n_groups - g >= 2; /* else the last group, alone in the low lanes (decoded twice) */  \
            const uint8_t *w0 = (const uint8_t *)w8 + (size_t)g * rb, *w1 = both ? w0 + rb : w0;                    \
            for (int64_t ib0 = 0; ib0 < nblk; ib0 += QN_KX16D_SLICE) {                                              \
                const int64_t nb = nblk - ib0 < QN_KX16D_SLICE ? nblk - ib0 : QN_KX16D_SLICE;                       \
                for (int64_t i = 0; i < nb; i++) {                                                                  \
                    kx16d_decode(FMT, w0 + (size_t)(ib0 + i) * gb, &buf[i], 0);                                     \
                    kx16d_decode(FMT, w1 + (size_t)(ib0 + i) * gb, &buf[i], 1);                                     \
                }                                                                                                   \
                kx16d_tokens(FMT, buf, nb, ib0, a, as, n_tok, ib0 > 0, both, y + g * QN_KX8_ROWS, ldy);             \
            }                                                                                                       \
        }                                                                                                           \
    }
QN_DEF_KX16D_MATMUL(matmul_q2kx16d_vnni, QN_QFORMAT_Q2_K, QN_ISA_FN(qn_kx8_matmul_q2k))
QN_DEF_KX16D_MATMUL(matmul_q3kx16d_vnni, QN_QFORMAT_Q3_K, QN_ISA_FN(qn_kx8_matmul_q3k))
QN_DEF_KX16D_MATMUL(matmul_q4kx16d_vnni, QN_QFORMAT_Q4_K, QN_ISA_FN(qn_kx8_matmul_q4k))
QN_DEF_KX16D_MATMUL(matmul_q5kx16d_vnni, QN_QFORMAT_Q5_K, QN_ISA_FN(qn_kx8_matmul_q5k))
QN_DEF_KX16D_MATMUL(matmul_q6kx16d_vnni, QN_QFORMAT_Q6_K, QN_ISA_FN(qn_kx8_matmul_q6k))

/* ------------------------------------------------------------------ x86: AMX-INT8 prefill (Q2_K .. Q6_K)
 * Where the CPU has AMX-INT8 and the kernel grants this process the tile data (arch_prctl, at table fill), whole tiles
 * of 16 tokens go through the tile unit. The weights of a group pair are decoded per k-slice into byte planes whose
 * 64-byte rows are tile B rows as they are (row p = step p: 4 K of each of the 16 weight rows, kx16d_block's order):
 * the sub-block scale is folded into the codes, w' = sc·q (Q2_K 0..45, Q4_K, Q5_K 0..1953), sc·(q − 32) (Q6_K,
 * −4096..3937) or s·(c − 4) (Q3_K), split into a low byte (u8) and a high byte (w' >> 8; none for Q2_K), so
 * isum = Σ lo·a + 256·Σ hi·a is the scalar path's integer with no per-sub-block step at all; Q2_K / Q4_K / Q5_K add a
 * plane of each element's sub-block min (u8) for summs. The activations are tile A straight from the Q8_K rows (16
 * tokens at stride as, 64 K bytes each: s8), so C[token][row] = Σ a·w' (tdpbsud: s8 × u8; tdpbssd for a signed high
 * byte) lands in y's order. Per super-block the C tiles are stored and finished in fp32 as the other tiles (the same
 * integers, the same fp32 steps: bit-identical to vec_dot). Tokens past the last whole 16 and an odd last group take
 * the VNNI tile. */
#define QN_AMX __attribute__((target("amx-tile,amx-int8,avx512vnni")))
#define QN_AMX_SLICE 4 /* super-blocks per decoded slice: 3 planes × 4 KiB each */

typedef struct amx_cfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

/* planes of one super-block for 16 rows: [plane][step p][16 rows × 4 bytes]; plane 0: low bytes of w', 1: high bytes,
 * 2: the mins (Q4_K, Q5_K) */
typedef struct amx_sb {
    _Alignas(64) uint8_t pl[3][64][64];
} amx_sb;

/* kx16d_block -> the super-block's planes */
/* the formats whose codes carry an offset folded into w' (Q6_K: q − 32, Q3_K: c − 4; kx16d_block's codes are
 * unsigned), and those with mins (plane 2) */
#define QN_AMX_OFFSET(fmt) ((fmt) == QN_QFORMAT_Q6_K ? 32 : (fmt) == QN_QFORMAT_Q3_K ? 4 : 0)
#define QN_AMX_MINS(fmt) ((fmt) == QN_QFORMAT_Q2_K || (fmt) == QN_QFORMAT_Q4_K || (fmt) == QN_QFORMAT_Q5_K)

QN_AMX QN_INLINE void amx_planes(qn_qformat fmt, const kx16d_block *x, amx_sb *o) {
    const int sub = fmt == QN_QFORMAT_Q4_K || fmt == QN_QFORMAT_Q5_K ? 8 : 4;
    const __m512i m8 = _mm512_set1_epi16(0x00ff);
    for (int b = 0; b < 64 / sub; b++) {
        const __m512i sc32 = _mm512_load_si512(&x->sc[b][0]);
        const __m512i sc16 = _mm512_or_si512(_mm512_and_si512(sc32, _mm512_set1_epi32(0xffff)), _mm512_slli_epi32(sc32, 16));
        __m512i mn = _mm512_setzero_si512();
        if (QN_AMX_MINS(fmt)) { /* sub-block b's min in all 4 bytes: Q2_K's cp holds (mn_2j, mn_2j+1), Q4_K / Q5_K's (mn_b, mn_b) */
            const __m512i cp = _mm512_load_si512(&x->cp[fmt == QN_QFORMAT_Q2_K ? b / 2 : b][0]);
            const __m512i m = fmt == QN_QFORMAT_Q2_K && b % 2 ? _mm512_srli_epi32(cp, 16) : cp;
            mn = _mm512_mullo_epi32(_mm512_and_si512(m, _mm512_set1_epi32(0xff)), _mm512_set1_epi32(0x01010101));
        }
        for (int s = 0; s < sub; s++) {
            const int p = sub * b + s;
            const __m512i q = _mm512_load_si512(&x->q[p][0]);
            __m512i ev = _mm512_and_si512(q, m8), od = _mm512_srli_epi16(q, 8); /* bytes 0, 2 and 1, 3 as i16 */
            if (QN_AMX_OFFSET(fmt)) {
                const __m512i off = _mm512_set1_epi16(QN_AMX_OFFSET(fmt));
                ev = _mm512_sub_epi16(ev, off), od = _mm512_sub_epi16(od, off);
            }
            const __m512i pe = _mm512_mullo_epi16(ev, sc16), po = _mm512_mullo_epi16(od, sc16);
            _mm512_store_si512(o->pl[0][p], _mm512_or_si512(_mm512_and_si512(pe, m8), _mm512_slli_epi16(po, 8)));
            _mm512_store_si512(o->pl[1][p], _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(pe, 8), m8),
                                                            _mm512_andnot_si512(m8, po)));
            if (QN_AMX_MINS(fmt)) _mm512_store_si512(o->pl[2][p], mn);
        }
    }
}

/* y rows 0..15 of tokens t < 16 (y: token 0, row 0) += kq_term of super-blocks ib0 .. ib0 + nb − 1 from the planes
 * sb[0..nb) and the decoded headers x[0..nb); carry: y holds the earlier k-slices' sums. Tiles: 0, 1, 2 the C of
 * planes 0, 1, 2; 3 A; 4, 5, 6 B. */
QN_AMX QN_INLINE void amx_tile16(qn_qformat fmt, const amx_sb *sb, const kx16d_block *x, int64_t nb, int64_t ib0,
                                 const uint8_t *a, size_t as, bool carry, float *y, int64_t ldy) {
    _Alignas(64) int32_t c[3][16][16];
    __m512 sum[16]; /* token t's 16 rows */
    for (int t = 0; t < 16; t++) sum[t] = carry ? _mm512_loadu_ps(y + t * ldy) : _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const qn_block_q8_k *y0 = (const qn_block_q8_k *)a + ib0 + i;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        for (int kc = 0; kc < 4; kc++) {
            _tile_loadd(3, y0->qs + 64 * kc, as);
            _tile_loadd(4, sb[i].pl[0][16 * kc], 64);
            _tile_dpbsud(0, 3, 4);
            if (fmt != QN_QFORMAT_Q2_K) { /* Q2_K's w' <= 15·3: no high byte */
                _tile_loadd(5, sb[i].pl[1][16 * kc], 64);
                if (QN_AMX_OFFSET(fmt)) _tile_dpbssd(1, 3, 5); /* a signed high byte */
                else _tile_dpbsud(1, 3, 5);
            }
            if (QN_AMX_MINS(fmt)) {
                _tile_loadd(6, sb[i].pl[2][16 * kc], 64);
                _tile_dpbsud(2, 3, 6);
            }
        }
        _tile_stored(0, c[0], 64);
        _tile_stored(1, c[1], 64);
        if (QN_AMX_MINS(fmt)) _tile_stored(2, c[2], 64);
        const __m512 dw = _mm512_load_ps((const float *)&x[i].d[0]), dminw = _mm512_load_ps((const float *)&x[i].dmin[0]);
        for (int t = 0; t < 16; t++) {
            const float dat = ((const qn_block_q8_k *)(a + (size_t)t * as) + ib0 + i)->d;
            const __m512 da = _mm512_set1_ps(dat);
            const __m512i is = _mm512_add_epi32(_mm512_load_si512(c[0][t]), _mm512_slli_epi32(_mm512_load_si512(c[1][t]), 8));
            __m512 term = _mm512_mul_ps(_mm512_mul_ps(da, dw), _mm512_cvtepi32_ps(is));
            if (QN_AMX_MINS(fmt))
                term = _mm512_sub_ps(term, _mm512_mul_ps(_mm512_mul_ps(da, dminw), _mm512_cvtepi32_ps(_mm512_load_si512(c[2][t]))));
            sum[t] = _mm512_add_ps(sum[t], term);
        }
    }
    for (int t = 0; t < 16; t++) _mm512_storeu_ps(y + t * ldy, sum[t]);
}

/* matmul_x8 of FMT: group pairs × whole 16-token tiles on AMX, the rest through the VNNI tile (vnni) */
#define QN_DEF_AMX_MATMUL(name, FMT, vnni)                                                                          \
    QN_AMX static void name(int64_t n, const void *w8, int64_t n_groups, const void *a, size_t as, int64_t n_tok,   \
                            float *y, int64_t ldy) {                                                                \
        const int64_t n16 = n_tok / 16 * 16, gp = n_groups / 2 * 2;                                                 \
        if (n16 == 0 || gp == 0) {                                                                                  \
            vnni(n, w8, n_groups, a, as, n_tok, y, ldy);                                                            \
            return;                                                                                                 \
        }                                                                                                           \
        amx_cfg cfg;                                                                                                \
        memset(&cfg, 0, sizeof cfg);                                                                                \
        cfg.palette = 1;                                                                                            \
        for (int r = 0; r < 7; r++) cfg.rows[r] = 16, cfg.colsb[r] = 64;                                            \
        _tile_loadconfig(&cfg);                                                                                     \
        _Alignas(64) kx16d_block buf[QN_AMX_SLICE];                                                                 \
        _Alignas(64) amx_sb pl[QN_AMX_SLICE];                                                                       \
        const int64_t nblk = n / QN_QK_K;                                                                           \
        const size_t gb = qn_kx8_block_bytes(FMT), rb = (size_t)nblk * gb;                                          \
        for (int64_t g = 0; g < gp; g += 2) {                                                                       \
            const uint8_t *w0 = (const uint8_t *)w8 + (size_t)g * rb;                                               \
            for (int64_t ib0 = 0; ib0 < nblk; ib0 += QN_AMX_SLICE) {                                                \
                const int64_t nb = nblk - ib0 < QN_AMX_SLICE ? nblk - ib0 : QN_AMX_SLICE;                           \
                for (int64_t i = 0; i < nb; i++) {                                                                  \
                    kx16d_decode(FMT, w0 + (size_t)(ib0 + i) * gb, &buf[i], 0);                              \
                    kx16d_decode(FMT, w0 + rb + (size_t)(ib0 + i) * gb, &buf[i], 1);                         \
                    amx_planes(FMT, &buf[i], &pl[i]);                                                               \
                }                                                                                                   \
                for (int64_t t = 0; t < n16; t += 16)                                                               \
                    amx_tile16(FMT, pl, buf, nb, ib0, (const uint8_t *)a + (size_t)t * as, as, ib0 > 0,             \
                               y + t * ldy + g * QN_KX8_ROWS, ldy);                                                 \
            }                                                                                                       \
        }                                                                                                           \
        _tile_release();                                                                                            \
        if (n_tok > n16) /* the last 1..15 tokens, every group */                                                   \
            vnni(n, w8, n_groups, (const uint8_t *)a + (size_t)n16 * as, as, n_tok - n16, y + n16 * ldy, ldy);      \
        if (n_groups > gp) /* an odd last group, the whole tokens */                                                \
            vnni(n, (const uint8_t *)w8 + (size_t)gp * rb, 1, a, as, n16, y + gp * QN_KX8_ROWS, ldy);               \
    }
QN_DEF_AMX_MATMUL(matmul_q2kx16_amx, QN_QFORMAT_Q2_K, matmul_q2kx16d_vnni)
QN_DEF_AMX_MATMUL(matmul_q3kx16_amx, QN_QFORMAT_Q3_K, matmul_q3kx16d_vnni)
QN_DEF_AMX_MATMUL(matmul_q4kx16_amx, QN_QFORMAT_Q4_K, matmul_q4kx16d_vnni)
QN_DEF_AMX_MATMUL(matmul_q5kx16_amx, QN_QFORMAT_Q5_K, matmul_q5kx16d_vnni)
QN_DEF_AMX_MATMUL(matmul_q6kx16_amx, QN_QFORMAT_Q6_K, matmul_q6kx16d_vnni)

#endif /* QN_SIMD_X86_512 */

void QN_ISA_FN(qn_cpu_fill_kquant_x512)(qn_cpu_kernels *k) {
#if defined(QN_SIMD_X86_512)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512vnni")) {
        k->matmul_x8[QN_QFORMAT_Q2_K] = matmul_q2kx16d_vnni;
        k->matmul_x8[QN_QFORMAT_Q3_K] = matmul_q3kx16d_vnni;
        k->matmul_x8[QN_QFORMAT_Q4_K] = matmul_q4kx16d_vnni;
        k->matmul_x8[QN_QFORMAT_Q5_K] = matmul_q5kx16d_vnni;
        k->matmul_x8[QN_QFORMAT_Q6_K] = matmul_q6kx16d_vnni;
        for (int f = QN_QFORMAT_Q2_K; f <= QN_QFORMAT_Q6_K; f++) /* >= 8 passes of 8 tokens per decoded slice */
            k->matmul_x8_min_chunk[f] = 64;
        if (qn_cpu_amx_int8_usable()) { /* 16 tiles of 16 tokens per decoded slice */
            k->matmul_x8[QN_QFORMAT_Q2_K] = matmul_q2kx16_amx;
            k->matmul_x8[QN_QFORMAT_Q3_K] = matmul_q3kx16_amx;
            k->matmul_x8[QN_QFORMAT_Q4_K] = matmul_q4kx16_amx;
            k->matmul_x8[QN_QFORMAT_Q5_K] = matmul_q5kx16_amx;
            k->matmul_x8[QN_QFORMAT_Q6_K] = matmul_q6kx16_amx;
            for (int f = QN_QFORMAT_Q2_K; f <= QN_QFORMAT_Q6_K; f++) k->matmul_x8_min_chunk[f] = 256;
        }
    }
#else
    (void)k;
#endif
}
