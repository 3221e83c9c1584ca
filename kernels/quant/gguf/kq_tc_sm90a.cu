/* kq_tc_sm90a.cu — the tensor-core GEMM of GGUF weights (Q4_K, Q5_K, Q6_KP, Q8_0P) for many tokens on Hopper (sm_90a:
 * wgmma), the dequant in the tile loads, the weights in their blocks (kq_tc.h): y[n][N] f32 = x[n][K] fp16 . W^T. Built
 * only for sm_90a (CMakeLists.txt); quant_cuda.cu calls it. Holds no state. lq4m_tc_sm90a.cu is its sibling for the
 * M forms: the same CTA tile, x tiles and wgmma (kernels/common/wgmma_sm90a.cuh), another A side.
 *
 * CTA: 256 threads, two warpgroups, 128 weight rows (warp w: the 16 rows 16 (8 blockIdx.y + w) ..; lane (g, t),
 * g = lane / 4, t = lane % 4, holds rows g and g + 8 of them) by BN = 128 or 256 tokens (blockIdx.x; kq_tile: the
 * call's tile, kq_tc.h qn_kq_tc_tile_of), K in steps of 64 columns (a block of 256 columns is 4 steps). Per step:
 *  - B: the [BN tokens][64 columns] tile of the prepared x (kq_tc.h's order) by the copy engine into one of
 *    TC_STAGES shared-memory stages, TC_STAGES - 1 steps ahead (as lq4m_tc_sm90a.cu).
 *  - A: the format's A side (a_q4k for Q4_K and Q5_K, a_q6k, a_q8 below) decodes each lane's code bytes of rows g
 *    and g + 8, loaded WD steps ahead with 8-byte streaming loads, into the A fragments of four k16 slices: slice s
 *    takes word s >> 1 of the lane's 8 bytes and nibble half (Q4_K, Q5_K) or ql half (Q6_K) or Q8_0 block (Q8_0)
 *    s & 1; ((word >> sh) & 0x000F000F) | 0x64006400 is the half2 (1024 + q, 1024 + q') of slots 2t, 2t + 1 and
 *    (word >> (sh + 8)) that of slots 2t + 8, 2t + 9 (Q8_0: bytes 0, 2 and 1, 3 of the word); the scales come from
 *    the block's head, loaded ahead too.
 *  - four wgmma.m64nBNk16 per warpgroup, one commit group per step; A double-buffered as in the sibling. The wide
 *    tile decodes each weight once for 256 tokens: half the decode work per FLOP of the 128-token one.
 * Epilogue and K split (gridDim.z, steps per split a multiple of 4 so that every step's place in its block is a
 * constant) as the sibling. Strips past N/16 compute on strip 0 and store nothing; tokens past n store nothing. */
#include <stdint.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_util.cuh"
#include "kernels/common/wgmma_sm90a.cuh"
#include "kernels/quant/gguf/kq_tc.h"
#include "kernels/quant/gguf/q6kp.h"
#include "kernels/quant/gguf/q8_0p.h"

#define TC_THREADS 256
#define TC_BK TC_TILE_BK /* columns per step */
#define TC_STAGES 4
#define TC_U 8 /* steps per pass: every ring slot, stage and place in a block a constant */
#define KQ_STEPS 4 /* steps per block */
/* the CTA's tile of BN tokens (TC_TILE_BN or TC_WIDE_BN: the call's, kq_tc.h qn_kq_tc_tile_of) and the
 * steps of code bytes in flight per lane: two blocks with 128 tokens, one with 256 (each step four times the
 * tensor work of a 128-token one at 128 accumulators a thread: the registers for the ring are not there) */
template <int BN>
struct kq_tile {
    static_assert(BN == TC_TILE_BN || BN == TC_WIDE_BN, "kq_tc: a tile of 128 or 256 tokens");
    static constexpr int WD = BN == TC_TILE_BN ? 8 : 4;
    static constexpr int SMEM = TC_STAGES * tc_stage_bytes(BN) + 1024 + 64; /* + the swizzle's alignment, mbarriers */
};

/* 8 code bytes a CTA reads once: not kept in L1 */
__device__ __forceinline__ uint2 kq_ld_stream(const uint8_t *p) {
    uint2 v;
    asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
}

/* rows g and g + 8's 8 bytes at off as one uint4 (g: x, y; g + 8: z, w) */
__device__ __forceinline__ uint4 kq_ld_rows(const uint8_t *pg, const uint8_t *ph, int off) {
    const uint2 vg = kq_ld_stream(pg + off), vh = kq_ld_stream(ph + off);
    return make_uint4(vg.x, vg.y, vh.x, vh.y);
}

/* --- Q4_K (144-byte blocks: d, dmin, 12 scale bytes, qs[128]; group j of a block is step j) --- */

/* a block's scales and mins of one row, unpacked (gguf_dequant.h qn_q4_k_scale_words: one 0..63 value per byte)
 * with its d and -dmin as half2 pairs */
struct q4k_head {
    uint32_t sc_lo, sc_hi, mn_lo, mn_hi; /* sub-blocks 0..3, 4..7 */
    uint32_t d2, nm2;                    /* (d, d), (-dmin, -dmin) */
};

__device__ __forceinline__ q4k_head q4k_unpack(uint4 h) {
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    q4k_head r;
    r.sc_lo = h.y & m6;
    r.sc_hi = (h.w & m4) | ((h.y >> 6) & m2) << 4;
    r.mn_lo = h.z & m6;
    r.mn_hi = ((h.w >> 4) & m4) | ((h.z >> 6) & m2) << 4;
    r.d2 = __byte_perm(h.x, 0, 0x1010);
    r.nm2 = __byte_perm(h.x, 0, 0x3232) ^ 0x80008000u;
    return r;
}

/* the (S, B) pairs of sub-blocks 2j, 2j + 1 (j: the step's group in its block) of one row: S = fp16(d sc),
 * B = fp16(-dmin m), each pair (value of 2j, value of 2j + 1) */
template <int J>
__device__ __forceinline__ void q4k_pairs(const q4k_head &h, __half2 &s, __half2 &b) {
    constexpr uint32_t sel = (uint32_t)(0x4040 | ((J & 1) * 2) | ((J & 1) * 2 + 1) << 8);
    const uint32_t sc = J < 2 ? h.sc_lo : h.sc_hi, mn = J < 2 ? h.mn_lo : h.mn_hi;
    const __half2 k1024 = qn_bits_h2(0x64006400u);
    s = __hmul2(__hsub2(qn_bits_h2(__byte_perm(sc, 0x64, sel)), k1024), qn_bits_h2(h.d2));
    b = __hmul2(__hsub2(qn_bits_h2(__byte_perm(mn, 0x64, sel)), k1024), qn_bits_h2(h.nm2));
}

/* the half2 (1024 + q, 1024 + q') of the nibbles at bits SH, SH + 16 of w, with (Q5_K: XS >= 0) the fifth bits
 * at bits XS, XS + 16 of x (qh's bytes of the same columns) */
template <int SH, int XS>
__device__ __forceinline__ uint32_t q5k_h2(uint32_t w, uint32_t x) {
    if constexpr (XS < 0) return qn_nib_h2(w >> SH);
    else return qn_nib_h2(w >> SH) | ((x >> XS) & 0x00010001u) << 4;
}

/* the four A registers of k16 slice s from row g's word wg and row g + 8's wh (nibble half HH = s & 1), with the
 * pairs of rows g (sg, bg) and g + 8 (sh, bh); Q5_K (BIT = the step's group 2 j + HH, else -1): the fifth bits from
 * the rows' qh words xg, xh of the same bytes */
template <int HH, int BIT>
__device__ __forceinline__ void q4k_decode(uint32_t wg, uint32_t wh, uint32_t xg, uint32_t xh, __half2 sg, __half2 bg,
                                           __half2 sh, __half2 bh, uint32_t a[4]) {
    const __half2 k1024 = qn_bits_h2(0x64006400u);
    const __half2 Sg = HH ? __high2half2(sg) : __low2half2(sg), Bg = HH ? __high2half2(bg) : __low2half2(bg);
    const __half2 Sh = HH ? __high2half2(sh) : __low2half2(sh), Bh = HH ? __high2half2(bh) : __low2half2(bh);
    constexpr int X0 = BIT, X1 = BIT < 0 ? -1 : BIT + 8; /* bytes 0, 2 and bytes 1, 3 of the words */
    a[0] = qn_h2_bits(__hfma2(__hsub2(qn_bits_h2(q5k_h2<4 * HH, X0>(wg, xg)), k1024), Sg, Bg));
    a[1] = qn_h2_bits(__hfma2(__hsub2(qn_bits_h2(q5k_h2<4 * HH, X0>(wh, xh)), k1024), Sh, Bh));
    a[2] = qn_h2_bits(__hfma2(__hsub2(qn_bits_h2(q5k_h2<4 * HH + 8, X1>(wg, xg)), k1024), Sg, Bg));
    a[3] = qn_h2_bits(__hfma2(__hsub2(qn_bits_h2(q5k_h2<4 * HH + 8, X1>(wh, xh)), k1024), Sh, Bh));
}

/* Q4_K's (Q5: Q5_K's) A side of a lane: the code bytes of WD steps (8 of each row: bytes 8t.. of the group's 32 in
 * qs; WD 4 or 8), the heads (the 16 bytes before qh: d, dmin, scales) of their WD / 4 blocks, the current block's
 * unpacked; Q5_K also the lane's 8 qh bytes of each row (bytes 8t..: the fifth bits of the same columns in every
 * group, bit 2 j + nibble half) with the heads, the current block's apart. Q5_K: 176-byte blocks, d, dmin,
 * scales[12], qh[32], qs[128]. */
template <int WD, bool Q5 = false>
struct a_q4k {
    static constexpr int BYTES = Q5 ? 176 : 144, QS = Q5 ? 48 : 16; /* block, qs's offset */
    static constexpr int NH = Q5 ? WD / KQ_STEPS : 1;             /* qh slots (one unused for Q4_K) */
    uint4 cq[WD];
    uint4 hd[WD / KQ_STEPS][2];
    uint4 xq[NH]; /* Q5_K: qh bytes 8t.. of rows g (x, y) and g + 8 (z, w) */
    uint4 xc;     /* Q5_K: the current block's */
    q4k_head hg, hh;

    __device__ __forceinline__ void heads(int sl, const uint8_t *pg, const uint8_t *ph, int off, int t) {
        hd[sl][0] = __ldg(reinterpret_cast<const uint4 *>(pg + off));
        hd[sl][1] = __ldg(reinterpret_cast<const uint4 *>(ph + off));
        if constexpr (Q5) xq[sl] = kq_ld_rows(pg, ph, off + 16 + 8 * t);
    }

    /* steps 0 .. WD - 1 of L from the block at pg, ph */
    __device__ __forceinline__ void init(const uint8_t *pg, const uint8_t *ph, int L, int t) {
#pragma unroll
        for (int d = 0; d < WD; d++) {
            cq[d] = make_uint4(0, 0, 0, 0);
            if (d < L) cq[d] = kq_ld_rows(pg, ph, (d / KQ_STEPS) * BYTES + QS + 32 * (d % KQ_STEPS) + 8 * t);
        }
#pragma unroll
        for (int b = 0; b < WD / KQ_STEPS; b++) {
            hd[b][0] = hd[b][1] = make_uint4(0, 0, 0, 0);
            if constexpr (Q5) xq[b] = make_uint4(0, 0, 0, 0);
            if (b * KQ_STEPS < L) heads(b, pg, ph, b * BYTES, t);
        }
    }
    /* pass step R's A registers, then its slots refilled with step R + WD's bytes (i: its CTA step; pg, ph: the
     * pass's first block) */
    template <int R>
    __device__ __forceinline__ void step(uint32_t (&a)[4][4], const uint8_t *pg, const uint8_t *ph, int t, int i,
                                         int L) {
        constexpr int SL = R % WD, J = R % KQ_STEPS, SH = (R / KQ_STEPS) % (WD / KQ_STEPS);
        if constexpr (J == 0) { /* a new block: its heads, loaded WD steps ago */
            hg = q4k_unpack(hd[SH][0]);
            hh = q4k_unpack(hd[SH][1]);
            if constexpr (Q5) xc = xq[SH];
        }
        __half2 sg, bg, sh, bh;
        q4k_pairs<J>(hg, sg, bg);
        q4k_pairs<J>(hh, sh, bh);
        const uint4 c = cq[SL];
        constexpr int B0 = Q5 ? 2 * J : -1, B1 = Q5 ? 2 * J + 1 : -1; /* the fifth bit of each nibble half */
        q4k_decode<0, B0>(c.x, c.z, xc.x, xc.z, sg, bg, sh, bh, a[0]);
        q4k_decode<1, B1>(c.x, c.z, xc.x, xc.z, sg, bg, sh, bh, a[1]);
        q4k_decode<0, B0>(c.y, c.w, xc.y, xc.w, sg, bg, sh, bh, a[2]);
        q4k_decode<1, B1>(c.y, c.w, xc.y, xc.w, sg, bg, sh, bh, a[3]);
        if (i + WD < L) { /* slot SL is free: the bytes WD steps on (block R / 4 + WD / 4 of the pass) */
            constexpr int B = (R / KQ_STEPS + WD / KQ_STEPS) * BYTES;
            cq[SL] = kq_ld_rows(pg, ph, B + QS + 32 * J + 8 * t);
            if constexpr (J == 0) heads(SH, pg, ph, B, t); /* that block's (this block's were unpacked above) */
        }
    }
};

/* --- Q6_KP (224-byte blocks: ql[128], qh[64], int8 scales[16], d, pad; q6kp.h). Half block h (columns 128 h ..)
 * is steps 2h (ql's low nibbles: columns 0..63 of the half) and 2h + 1 (high nibbles: 64..127); a lane reads
 * ql[64 h + 8t ..] (columns l = 8t.., + 64), ql[64 h + 32 + 8t ..] (columns 32 + l, 96 + l) and qh[32 h + 8t ..]
 * (their top bits) once for both steps. Value: (q - 32) times S = fp16(d sc) of the column's 16-column scale. --- */

/* the half2 (1024 + q, 1024 + q') of the nibbles at bits 0, 16 of lo and the 2-bit pairs at bits 0, 16 of hi */
__device__ __forceinline__ uint32_t q6k_h2(uint32_t lo, uint32_t hi) {
    return qn_nib_h2(lo) | ((hi << 4) & 0x00300030u);
}

/* Q6_KP's A side of a lane: the code bytes of WD / 2 half blocks (ql low part, ql high part, qh: one uint4
 * each, rows g, g + 8; WD 4 or 8), the scales (16 int8) and d of two blocks: with WD = 8 block b + 2's are loaded
 * after block b's last step, with WD = 4 block b + 1's at its first */
template <int WD>
struct a_q6k {
    static constexpr int BYTES = QN_Q6KP_BLOCK_BYTES, NS = 2; /* head slots */
    uint4 cq[WD / 2][3];
    uint4 hs[NS][2];
    uint32_t hd[NS][2];
    uint32_t sel; /* this lane's scale bytes of a 4-byte word (t / 2, t / 2 + 2) as (1024 + 128 + sc) halves */

    __device__ __forceinline__ void half(int s, const uint8_t *pg, const uint8_t *ph, int off, int t) {
        cq[s][0] = kq_ld_rows(pg, ph, off + 8 * t);
        cq[s][1] = kq_ld_rows(pg, ph, off + 32 + 8 * t);
    }
    __device__ __forceinline__ void head(int b, const uint8_t *pg, const uint8_t *ph, int off) {
        hs[b][0] = __ldg(reinterpret_cast<const uint4 *>(pg + off + 192));
        hs[b][1] = __ldg(reinterpret_cast<const uint4 *>(ph + off + 192));
        hd[b][0] = __ldg(reinterpret_cast<const uint32_t *>(pg + off + 208));
        hd[b][1] = __ldg(reinterpret_cast<const uint32_t *>(ph + off + 208));
    }
    /* the bytes of half block hb (of the pass) into slot s: ql at 64 (hb % 2), qh at 128 + 32 (hb % 2) */
    __device__ __forceinline__ void fetch_half(int s, const uint8_t *pg, const uint8_t *ph, int hb, int t) {
        const int off = (hb / 2) * BYTES + 64 * (hb % 2);
        half(s, pg, ph, off, t);
        cq[s][2] = kq_ld_rows(pg, ph, (hb / 2) * BYTES + 128 + 32 * (hb % 2) + 8 * t);
    }
    __device__ __forceinline__ void init(const uint8_t *pg, const uint8_t *ph, int L, int t) {
        const uint32_t b = (uint32_t)(t >> 1);
        sel = b | 0x40u | (b + 2) << 8 | 0x4000u;
#pragma unroll
        for (int h = 0; h < WD / 2; h++) {
            cq[h][0] = cq[h][1] = cq[h][2] = make_uint4(0, 0, 0, 0);
            if (2 * h < L) fetch_half(h, pg, ph, h, t);
        }
#pragma unroll
        for (int b = 0; b < NS; b++) {
            hs[b][0] = hs[b][1] = make_uint4(0, 0, 0, 0);
            hd[b][0] = hd[b][1] = 0;
            if (b < WD / KQ_STEPS && b * KQ_STEPS < L) head(b, pg, ph, b * BYTES);
        }
    }
    /* this lane's (S of k = 2 nib, S of k = 2 nib + 1) of step J's columns from a row's scales sw and (d, d) */
    template <int J>
    __device__ __forceinline__ __half2 scales(const uint4 &sw, uint32_t dw) const {
        const uint32_t w = J == 0 ? sw.x : J == 1 ? sw.y : J == 2 ? sw.z : sw.w; /* scale bytes 4J .. 4J + 3 */
        const __half2 sc = __hsub2(qn_bits_h2(__byte_perm(w, 0x64, sel) ^ 0x00800080u), qn_bits_h2(0x64806480u));
        return __hmul2(sc, qn_bits_h2(__byte_perm(dw, 0, 0x1010)));
    }
    template <int R>
    __device__ __forceinline__ void step(uint32_t (&a)[4][4], const uint8_t *pg, const uint8_t *ph, int t, int i,
                                         int L) {
        constexpr int J = R % KQ_STEPS, NIB = J & 1, HS = (R / 2) % (WD / 2), SB = (R / KQ_STEPS) % NS;
        static_assert(WD == 4 || WD == 8, "a_q6k: the head slots hold two blocks");
        if constexpr (WD == 4 && J == 0) /* the next block's heads into the other slot, a block ahead */
            if (i + KQ_STEPS < L) head(SB ^ 1, pg, ph, (R / KQ_STEPS + 1) * BYTES);
        const __half2 s2g = scales<J>(hs[SB][0], hd[SB][0]), s2h = scales<J>(hs[SB][1], hd[SB][1]);
        const __half2 k1056 = qn_bits_h2(0x64206420u);
#pragma unroll
        for (int s = 0; s < 4; s++) {
            const int src = s & 1, w = s >> 1, k = 2 * NIB + src; /* ql part src, word w, 2-bit field k of qh */
            const uint4 &c = cq[HS][src], &q = cq[HS][2];
            const uint32_t lg = w ? c.y : c.x, lh = w ? c.w : c.z, qg = w ? q.y : q.x, qh = w ? q.w : q.z;
            const __half2 Sg = src ? __high2half2(s2g) : __low2half2(s2g), Sh = src ? __high2half2(s2h) : __low2half2(s2h);
            a[s][0] = qn_h2_bits(__hmul2(__hsub2(qn_bits_h2(q6k_h2(lg >> (4 * NIB), qg >> (2 * k))), k1056), Sg));
            a[s][1] = qn_h2_bits(__hmul2(__hsub2(qn_bits_h2(q6k_h2(lh >> (4 * NIB), qh >> (2 * k))), k1056), Sh));
            a[s][2] = qn_h2_bits(__hmul2(__hsub2(qn_bits_h2(q6k_h2(lg >> (4 * NIB + 8), qg >> (2 * k + 8))), k1056), Sg));
            a[s][3] = qn_h2_bits(__hmul2(__hsub2(qn_bits_h2(q6k_h2(lh >> (4 * NIB + 8), qh >> (2 * k + 8))), k1056), Sh));
        }
        /* after the half's second step its slot is free: the half WD steps on */
        if constexpr (NIB == 1)
            if (i - 1 + WD < L) fetch_half(HS, pg, ph, (R - 1 + WD) / 2, t);
        /* after the block's last step its heads' slot is free: the block WD steps on */
        if constexpr (WD == 8 && J == KQ_STEPS - 1)
            if (i - 3 + WD < L) head(SB, pg, ph, ((R - 3 + WD) / KQ_STEPS) * BYTES);
    }
};

/* --- Q8_0P (272-byte blocks: d f16[8], qs int8[8][32]; q8_0p.h). Step j of a block is its Q8_0 blocks 2j
 * (columns 0..31 of the step: slices 0, 2) and 2j + 1 (32..63: slices 1, 3); a lane reads bytes 8t.. of each
 * (the x order's columns 8t.., 32 + 8t..: kq_tc.h), slice s taking word s >> 1 of them: bytes 0, 2 the pair of slots
 * 2t, 2t + 1, bytes 1, 3 that of 2t + 8, 2t + 9. Value: fp16(d q), exact q times d rounded once (ggml's dequant
 * to fp16 gives the same bits). --- */

/* the half2 (1152 + q, 1152 + q') of the int8 at bytes P & 3 and P >> 8 & 3 of w (the bytes flipped by 0x80 to
 * q + 128 in 0..255 first) */
template <int P>
__device__ __forceinline__ uint32_t q8_h2(uint32_t w) {
    return __byte_perm(w ^ 0x80808080u, 0x64646464u, (uint32_t)(P | 0x4040));
}

/* Q8_0P's A side of a lane: the code bytes of WD steps (Q8_0 blocks 2j and 2j + 1, 8 bytes of each of rows g and
 * g + 8: two uint4; WD 2 or 4), the scales of two blocks (d[8] of rows g, g + 8), block b + 1's loaded at block
 * b's first step */
template <int WD>
struct a_q8 {
    static constexpr int BYTES = QN_Q8_0P_BLOCK_BYTES, NS = 2;
    uint4 cq[WD][2];
    uint4 hs[NS][2];

    /* the bytes of pass step r (block r / 4, step r % 4 of it) into slot sl */
    __device__ __forceinline__ void fetch(int sl, const uint8_t *pg, const uint8_t *ph, int r, int t) {
        const int off = (r / KQ_STEPS) * BYTES + 16 + 64 * (r % KQ_STEPS) + 8 * t;
        cq[sl][0] = kq_ld_rows(pg, ph, off);
        cq[sl][1] = kq_ld_rows(pg, ph, off + 32);
    }
    __device__ __forceinline__ void head(int sb, const uint8_t *pg, const uint8_t *ph, int off) {
        hs[sb][0] = __ldg(reinterpret_cast<const uint4 *>(pg + off));
        hs[sb][1] = __ldg(reinterpret_cast<const uint4 *>(ph + off));
    }
    __device__ __forceinline__ void init(const uint8_t *pg, const uint8_t *ph, int L, int t) {
#pragma unroll
        for (int d = 0; d < WD; d++) {
            cq[d][0] = cq[d][1] = make_uint4(0, 0, 0, 0);
            if (d < L) fetch(d, pg, ph, d, t);
        }
        hs[1][0] = hs[1][1] = make_uint4(0, 0, 0, 0);
        head(0, pg, ph, 0);
    }
    template <int R>
    __device__ __forceinline__ void step(uint32_t (&a)[4][4], const uint8_t *pg, const uint8_t *ph, int t, int i,
                                         int L) {
        static_assert(WD == 2 || WD == 4, "a_q8: 2 or 4 steps in flight");
        constexpr int J = R % KQ_STEPS, SL = R % WD, SB = (R / KQ_STEPS) % NS;
        if constexpr (J == 0) /* the next block's scales into the other slot, a block ahead */
            if (i + KQ_STEPS < L) head(SB ^ 1, pg, ph, (R / KQ_STEPS + 1) * BYTES);
        const uint4 &hg = hs[SB][0], &hh = hs[SB][1];
        const uint32_t wg = J == 0 ? hg.x : J == 1 ? hg.y : J == 2 ? hg.z : hg.w; /* d[2J], d[2J + 1] */
        const uint32_t wh = J == 0 ? hh.x : J == 1 ? hh.y : J == 2 ? hh.z : hh.w;
        const __half2 k1152 = qn_bits_h2(0x64806480u);
#pragma unroll
        for (int s = 0; s < 4; s++) {
            const int src = s & 1, w = s >> 1; /* Q8_0 block 2J + src, word w of the lane's 8 bytes */
            const uint4 &c = cq[SL][src];
            const uint32_t cg = w ? c.y : c.x, ch = w ? c.w : c.z;
            const __half2 Dg = qn_bits_h2(__byte_perm(wg, 0, src ? 0x3232 : 0x1010));
            const __half2 Dh = qn_bits_h2(__byte_perm(wh, 0, src ? 0x3232 : 0x1010));
            a[s][0] = qn_h2_bits(__hmul2(__hsub2(qn_bits_h2(q8_h2<0x200>(cg)), k1152), Dg));
            a[s][1] = qn_h2_bits(__hmul2(__hsub2(qn_bits_h2(q8_h2<0x200>(ch)), k1152), Dh));
            a[s][2] = qn_h2_bits(__hmul2(__hsub2(qn_bits_h2(q8_h2<0x301>(cg)), k1152), Dg));
            a[s][3] = qn_h2_bits(__hmul2(__hsub2(qn_bits_h2(q8_h2<0x301>(ch)), k1152), Dh));
        }
        if (i + WD < L) fetch(SL, pg, ph, R + WD, t); /* slot SL is free: the step WD on */
    }
};

/* --- the GEMM --- */

#ifdef TC_ARCH

/* A pass: TC_U steps from local step i0 (a multiple of TC_U) of the CTA's steps k0 .. k0 + L - 1 (k0 a multiple of
 * 4): rows g and g + 8 at the block of the pass's first step */
struct kq_pass {
    const uint8_t *pg, *ph;
    int i0;
    uint32_t par; /* mbarrier parity of stage 0 in this pass */
};

/* steps R .. E - 1 of the pass (even steps decode into a0, odd into a1) */
template <class A, int BN, int R, int E>
__device__ __forceinline__ void kq_steps(A &as, const kq_pass &ps, int L, int k0, int t, uint32_t (&a0)[4][4],
                                         uint32_t (&a1)[4][4], float (&acc)[BN / 2], uint32_t dlo, uint32_t dhi,
                                         uint32_t sbase, uint32_t bars, const CUtensorMap *map, int64_t tok0) {
    if constexpr (R < E) {
        const int i = ps.i0 + R;
        if constexpr (R & 1) {
            as.template step<R>(a1, ps.pg, ps.ph, t, i, L);
            tc_mma_step<TC_STAGES, R, BN>(acc, a1, a0, ps.par, i, L, k0, dlo, dhi, sbase, bars, map, tok0);
        } else {
            as.template step<R>(a0, ps.pg, ps.ph, t, i, L);
            tc_mma_step<TC_STAGES, R, BN>(acc, a0, a1, ps.par, i, L, k0, dlo, dhi, sbase, bars, map, tok0);
        }
        kq_steps<A, BN, R + 1, E>(as, ps, L, k0, t, a0, a1, acc, dlo, dhi, sbase, bars, map, tok0);
    }
}

template <class A>
__device__ __forceinline__ kq_pass kq_pass_at(const uint8_t *rg, const uint8_t *rh, int k0, int i0) {
    const size_t off = (size_t)((k0 + i0) / KQ_STEPS) * A::BYTES;
    return kq_pass{rg + off, rh + off, i0, (uint32_t)(i0 / TC_STAGES) & 1u};
}
#endif

/* A: the format's A side (a_q4k, a_q6k, with kq_tile<BN>::WD steps in flight); BN: tokens per CTA */
template <class A, int BN>
__global__ void __launch_bounds__(TC_THREADS, 1)
    kq_tc_kernel(const __grid_constant__ CUtensorMap map, /* the prepared x [n][K] fp16, boxes [BN][TC_BK] */
                 const uint8_t *__restrict__ w,           /* [N][K/256] blocks of A::BYTES */
                 float *__restrict__ y,                   /* [n][N], or with a K split (gridDim.z > 1) part */
                 float *__restrict__ part,                /* [gridDim.z][n][N]: split z's sums, or NULL */
                 int64_t N, int64_t K, int64_t n, int cps /* steps per split, a multiple of 4 */) {
#ifdef TC_ARCH
    extern __shared__ uint8_t tc_raw[];
    const uint32_t sraw = (uint32_t)__cvta_generic_to_shared(tc_raw);
    const uint32_t sbase = (sraw + 1023u) & ~1023u;
    const uint32_t bars = sbase + TC_STAGES * tc_stage_bytes(BN);
    const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int KT = (int)(K / TC_BK), k0 = (int)blockIdx.z * cps, L = min(cps, KT - k0); /* L a multiple of 4 */
    const int64_t strip = (int64_t)blockIdx.y * 8 + warp;
    const bool sv = strip < N / 16;
    const size_t rb = (size_t)(K / 256) * A::BYTES;
    const uint8_t *const rg = w + (size_t)((sv ? strip : 0) * 16 + g) * rb, *const rh = rg + 8 * rb;
    const int64_t tok0 = (int64_t)blockIdx.x * BN;

    A as;
    {
        const kq_pass p0 = kq_pass_at<A>(rg, rh, k0, 0);
        as.init(p0.pg, p0.ph, L, t);
    }
    tc_start<TC_STAGES, BN>(bars, sbase, &map, k0, L, tok0);
    float acc[BN / 2];
    uint32_t a0[4][4], a1[4][4], dlo, dhi;
    tc_begin(acc, a0, a1, sbase, dlo, dhi);
    int i = 0;
    for (; i + TC_U <= L; i += TC_U)
        kq_steps<A, BN, 0, TC_U>(as, kq_pass_at<A>(rg, rh, k0, i), L, k0, t, a0, a1, acc, dlo, dhi, sbase, bars, &map,
                                 tok0);
    if (i < L) /* one block left (L is a multiple of 4, TC_U = 8) */
        kq_steps<A, BN, 0, KQ_STEPS>(as, kq_pass_at<A>(rg, rh, k0, i), L, k0, t, a0, a1, acc, dlo, dhi, sbase, bars,
                                     &map, tok0);
    tc_wait<0>();
    tc_pin(acc);
    tc_pin(a1);
    if (!sv) return;
    tc_store(acc, part ? part + (size_t)blockIdx.z * (size_t)n * (size_t)N : y, n, N, tok0, strip * 16 + g, t);
#else
    __trap(); /* built for sm_90a only (CMakeLists.txt) */
#endif
}

/* xt = x with each 64-column group in the GEMM's order (kq_tc.h); one thread per group of one token */
__global__ void kq_tc_prepare_kernel(const uint4 *__restrict__ x, /* [n][K] fp16: 8 uint4 per group */
                                     uint4 *__restrict__ xt,      /* [n][K] */
                                     int64_t groups) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= groups) return;
    uint32_t v[32], o[32]; /* column pairs */
#pragma unroll
    for (int u = 0; u < 8; u++) {
        const uint4 q = __ldg(x + 8 * i + u);
        v[4 * u] = q.x, v[4 * u + 1] = q.y, v[4 * u + 2] = q.z, v[4 * u + 3] = q.w;
    }
#pragma unroll
    for (int c = 0; c < 64; c += 2) { /* output columns c, c + 1 from source columns a, b (constants) */
        const int a = qn_kq_tc_x_col(c), b = qn_kq_tc_x_col(c + 1);
        o[c / 2] = __byte_perm(v[a / 2], v[b / 2], (a & 1 ? 0x0032 : 0x0010) | (b & 1 ? 0x7600 : 0x5400));
    }
#pragma unroll
    for (int u = 0; u < 8; u++) xt[8 * i + u] = make_uint4(o[4 * u], o[4 * u + 1], o[4 * u + 2], o[4 * u + 3]);
}

int qn_kq_tc_split(int n_sm, int64_t N, int64_t K, int64_t n, int tile, int *cps) {
    return tc_split_nk(n_sm, N, K, n, KQ_STEPS, cps, qn_kq_tc_tile_of(tile, n));
}

size_t qn_kq_tc_part_bytes(int n_sm, int64_t N, int64_t K, int64_t n) {
    if (N <= 0 || K <= 0 || n <= 0 || K % 256 || N % 16 || n_sm < 1) return 0;
    /* a call may name either tile (kq_tc.h): the larger of their needs */
    const size_t nb = tc_part_bytes(n_sm, N, K, n, KQ_STEPS, TC_TILE_BN);
    const size_t wb = tc_part_bytes(n_sm, N, K, n, KQ_STEPS, TC_WIDE_BN);
    return nb > wb ? nb : wb;
}

typedef void (*kq_tc_fn)(const CUtensorMap, const uint8_t *, float *, float *, int64_t, int64_t, int64_t, int);

template <int BN>
static kq_tc_fn kq_tc_kernel_bn(qn_qformat fmt) {
    constexpr int WD = kq_tile<BN>::WD;
    return fmt == QN_QFORMAT_Q4_K    ? kq_tc_kernel<a_q4k<WD>, BN>
           : fmt == QN_QFORMAT_Q5_K  ? kq_tc_kernel<a_q4k<WD, true>, BN>
           : fmt == QN_QFORMAT_Q6_KP ? kq_tc_kernel<a_q6k<WD>, BN>
           : fmt == QN_QFORMAT_Q8_0P ? kq_tc_kernel<a_q8<WD / 2>, BN> /* two uint4 of code bytes a step */
                                     : NULL;
}

static kq_tc_fn kq_tc_kernel_of(qn_qformat fmt, int bn) {
    return bn == TC_WIDE_BN ? kq_tc_kernel_bn<TC_WIDE_BN>(fmt) : kq_tc_kernel_bn<TC_TILE_BN>(fmt);
}

bool qn_kq_tc_takes(int sm, qn_qformat fmt, int64_t N, int64_t K) {
    const kq_tc_fn fn = kq_tc_kernel_of(fmt, TC_TILE_BN);
    if (!fn || sm != 90 || N <= 0 || K <= 0 || N % 16 || K % 256) return false;
    if ((N / 16 + 7) / 8 > 65535 || K > ((int64_t)1 << 31)) return false;
    cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, fn) != cudaSuccess) { /* no sm_90a code for this device */
        (void)cudaGetLastError();
        return false;
    }
    return true;
}

qn_status qn_kq_tc_prepare_x(const void *x, int64_t n, int64_t K, void *xt, void *stream) {
    if (n < 0 || K <= 0 || K % 256) return QN_ERR_SHAPE;
    if (!x || !xt || ((uintptr_t)x & 15u) || ((uintptr_t)xt & 15u)) return QN_ERR_INVALID_ARG;
    const int64_t groups = n * (K / 64);
    if (groups == 0) return QN_OK;
    if ((groups + 127) / 128 > 0x7fffffff) return QN_ERR_SHAPE;
    kq_tc_prepare_kernel<<<(unsigned)((groups + 127) / 128), 128, 0, (cudaStream_t)stream>>>((const uint4 *)x,
                                                                                            (uint4 *)xt, groups);
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}

qn_status qn_kq_tc_cuda(int sm, int n_sm, qn_qformat fmt, const void *w, int64_t N, int64_t K, const void *xt,
                        int64_t n, int tile, float *y, void *part, size_t part_bytes, void *stream) {
    if (!qn_kq_tc_takes(sm, fmt, N, K)) return QN_ERR_UNSUPPORTED;
    if (!qn_kq_tc_tile_valid(tile)) return QN_ERR_INVALID_ARG;
    const int bn = qn_kq_tc_tile_of(tile, n);
    int split, cps;
    CUtensorMap map;
    const qn_status ps = tc_plan(n_sm, KQ_STEPS, w, N, K, xt, n, y, part, part_bytes, &split, &cps, &map, bn);
    if (ps != QN_OK || split == 0) return ps;
    const kq_tc_fn kern = kq_tc_kernel_of(fmt, bn);
    const int smem = bn == TC_WIDE_BN ? kq_tile<TC_WIDE_BN>::SMEM : kq_tile<TC_TILE_BN>::SMEM;
    QN_CUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const dim3 grid((unsigned)((n + bn - 1) / bn), (unsigned)((N / 16 + 7) / 8), (unsigned)split);
    float *const pp = split > 1 ? (float *)part : NULL;
    kern<<<grid, TC_THREADS, smem, (cudaStream_t)stream>>>(map, (const uint8_t *)w, y, pp, N, K, n, cps);
    QN_CUDA_TRY_LAUNCH();
    return split > 1 ? tc_reduce(pp, y, n * N, split, (cudaStream_t)stream) : QN_OK;
}
