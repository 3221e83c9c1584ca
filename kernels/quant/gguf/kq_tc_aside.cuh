/* kq_tc_aside.cuh — the A sides of the GGUF tensor-core GEMM (kq_tc_sm90a.cu): per format, how a lane loads its
 * code bytes and block heads ahead and decodes them into the A fragments of a step's four k16 slices (a_q4k for
 * Q4_K and Q5_K, a_q6k for Q6_KP, a_q3k for Q3_KP, a_q2k for Q2_K, a_q8 for Q8_0P; WD steps in flight). Included by
 * kq_tc_sm90a.cu, where KQ_FN is __device__ __forceinline__ and the kq_* primitives below are the CUDA intrinsics;
 * and by its host twin (tests/kernels/test_kq_tc_aside.cu, KQ_ASIDE_HOST defined), which supplies host kq_*
 * primitives (kq_h2, kq_ldg, kq_perm, kq_hmul2, kq_hsub2, kq_hfma2, kq_low2, kq_high2, kq_bits_h2, kq_h2_bits,
 * kq_nib_h2, kq_host_ld8, kq_host_ld4) and runs the same code on the CPU. */
#ifndef QN_KQ_TC_ASIDE_CUH
#define QN_KQ_TC_ASIDE_CUH

#include <stdint.h>

#ifndef KQ_ASIDE_HOST
#include <cuda_fp16.h>

#include "kernels/common/device_util.cuh"

#define KQ_FN __device__ __forceinline__
typedef __half2 kq_h2;
KQ_FN uint4 kq_ldg(const uint4 *p) { return __ldg(p); }
KQ_FN uint32_t kq_ldg(const uint32_t *p) { return __ldg(p); }
KQ_FN uint32_t kq_perm(uint32_t a, uint32_t b, uint32_t s) { return __byte_perm(a, b, s); }
KQ_FN kq_h2 kq_hmul2(kq_h2 a, kq_h2 b) { return __hmul2(a, b); }
KQ_FN kq_h2 kq_hsub2(kq_h2 a, kq_h2 b) { return __hsub2(a, b); }
KQ_FN kq_h2 kq_hfma2(kq_h2 a, kq_h2 b, kq_h2 c) { return __hfma2(a, b, c); }
KQ_FN kq_h2 kq_low2(kq_h2 a) { return __low2half2(a); }
KQ_FN kq_h2 kq_high2(kq_h2 a) { return __high2half2(a); }
KQ_FN kq_h2 kq_bits_h2(uint32_t u) { return qn_bits_h2(u); }
KQ_FN uint32_t kq_h2_bits(kq_h2 h) { return qn_h2_bits(h); }
KQ_FN uint32_t kq_nib_h2(uint32_t v) { return qn_nib_h2(v); }
#endif

#include "kernels/quant/gguf/q3kp.h"
#include "kernels/quant/gguf/q6kp.h"
#include "kernels/quant/gguf/q8_0p.h"

#define KQ_STEPS 4 /* steps of 64 columns per 256-column block */

/* 8 code bytes a CTA reads once: not kept in L1 */
KQ_FN uint2 kq_ld_stream(const uint8_t *p) {
#ifdef KQ_ASIDE_HOST
    return kq_host_ld8(p);
#else
    uint2 v;
    asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
#endif
}

/* rows g and g + 8's 8 bytes at off as one uint4 (g: x, y; g + 8: z, w) */
KQ_FN uint4 kq_ld_rows(const uint8_t *pg, const uint8_t *ph, int off) {
    const uint2 vg = kq_ld_stream(pg + off), vh = kq_ld_stream(ph + off);
    return make_uint4(vg.x, vg.y, vh.x, vh.y);
}

/* 4 code bytes at a 4-byte aligned address (Q2_K's 84-byte blocks), read once: not kept in L1 */
KQ_FN uint32_t kq_ld_stream4(const uint8_t *p) {
#ifdef KQ_ASIDE_HOST
    return kq_host_ld4(p);
#else
    uint32_t v;
    asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];\n" : "=r"(v) : "l"(p));
    return v;
#endif
}

/* kq_ld_rows at a 4-byte aligned offset: two 4-byte loads a row */
KQ_FN uint4 kq_ld_rows4(const uint8_t *pg, const uint8_t *ph, int off) {
    return make_uint4(kq_ld_stream4(pg + off), kq_ld_stream4(pg + off + 4), kq_ld_stream4(ph + off),
                      kq_ld_stream4(ph + off + 4));
}

/* --- Q4_K (144-byte blocks: d, dmin, 12 scale bytes, qs[128]; group j of a block is step j) --- */

/* a block's scales and mins of one row, unpacked (gguf_dequant.h qn_q4_k_scale_words: one 0..63 value per byte)
 * with its d and -dmin as half2 pairs */
struct q4k_head {
    uint32_t sc_lo, sc_hi, mn_lo, mn_hi; /* sub-blocks 0..3, 4..7 */
    uint32_t d2, nm2;                    /* (d, d), (-dmin, -dmin) */
};

KQ_FN q4k_head q4k_unpack(uint4 h) {
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    q4k_head r;
    r.sc_lo = h.y & m6;
    r.sc_hi = (h.w & m4) | ((h.y >> 6) & m2) << 4;
    r.mn_lo = h.z & m6;
    r.mn_hi = ((h.w >> 4) & m4) | ((h.z >> 6) & m2) << 4;
    r.d2 = kq_perm(h.x, 0, 0x1010);
    r.nm2 = kq_perm(h.x, 0, 0x3232) ^ 0x80008000u;
    return r;
}

/* the (S, B) pairs of sub-blocks 2j, 2j + 1 (j: the step's group in its block) of one row: S = fp16(d sc),
 * B = fp16(-dmin m), each pair (value of 2j, value of 2j + 1) */
template <int J>
KQ_FN void q4k_pairs(const q4k_head &h, kq_h2 &s, kq_h2 &b) {
    constexpr uint32_t sel = (uint32_t)(0x4040 | ((J & 1) * 2) | ((J & 1) * 2 + 1) << 8);
    const uint32_t sc = J < 2 ? h.sc_lo : h.sc_hi, mn = J < 2 ? h.mn_lo : h.mn_hi;
    const kq_h2 k1024 = kq_bits_h2(0x64006400u);
    s = kq_hmul2(kq_hsub2(kq_bits_h2(kq_perm(sc, 0x64, sel)), k1024), kq_bits_h2(h.d2));
    b = kq_hmul2(kq_hsub2(kq_bits_h2(kq_perm(mn, 0x64, sel)), k1024), kq_bits_h2(h.nm2));
}

/* the half2 (1024 + q, 1024 + q') of the nibbles at bits SH, SH + 16 of w, with (Q5_K: XS >= 0) the fifth bits
 * at bits XS, XS + 16 of x (qh's bytes of the same columns) */
template <int SH, int XS>
KQ_FN uint32_t q5k_h2(uint32_t w, uint32_t x) {
    if constexpr (XS < 0) return kq_nib_h2(w >> SH);
    else return kq_nib_h2(w >> SH) | ((x >> XS) & 0x00010001u) << 4;
}

/* the four A registers of k16 slice s from row g's word wg and row g + 8's wh (nibble half HH = s & 1), with the
 * pairs of rows g (sg, bg) and g + 8 (sh, bh); Q5_K (BIT = the step's group 2 j + HH, else -1): the fifth bits from
 * the rows' qh words xg, xh of the same bytes */
template <int HH, int BIT>
KQ_FN void q4k_decode(uint32_t wg, uint32_t wh, uint32_t xg, uint32_t xh, kq_h2 sg, kq_h2 bg,
                                           kq_h2 sh, kq_h2 bh, uint32_t a[4]) {
    const kq_h2 k1024 = kq_bits_h2(0x64006400u);
    const kq_h2 Sg = HH ? kq_high2(sg) : kq_low2(sg), Bg = HH ? kq_high2(bg) : kq_low2(bg);
    const kq_h2 Sh = HH ? kq_high2(sh) : kq_low2(sh), Bh = HH ? kq_high2(bh) : kq_low2(bh);
    constexpr int X0 = BIT, X1 = BIT < 0 ? -1 : BIT + 8; /* bytes 0, 2 and bytes 1, 3 of the words */
    a[0] = kq_h2_bits(kq_hfma2(kq_hsub2(kq_bits_h2(q5k_h2<4 * HH, X0>(wg, xg)), k1024), Sg, Bg));
    a[1] = kq_h2_bits(kq_hfma2(kq_hsub2(kq_bits_h2(q5k_h2<4 * HH, X0>(wh, xh)), k1024), Sh, Bh));
    a[2] = kq_h2_bits(kq_hfma2(kq_hsub2(kq_bits_h2(q5k_h2<4 * HH + 8, X1>(wg, xg)), k1024), Sg, Bg));
    a[3] = kq_h2_bits(kq_hfma2(kq_hsub2(kq_bits_h2(q5k_h2<4 * HH + 8, X1>(wh, xh)), k1024), Sh, Bh));
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

    KQ_FN void heads(int sl, const uint8_t *pg, const uint8_t *ph, int off, int t) {
        hd[sl][0] = kq_ldg(reinterpret_cast<const uint4 *>(pg + off));
        hd[sl][1] = kq_ldg(reinterpret_cast<const uint4 *>(ph + off));
        if constexpr (Q5) xq[sl] = kq_ld_rows(pg, ph, off + 16 + 8 * t);
    }

    /* steps 0 .. WD - 1 of L from the block at pg, ph */
    KQ_FN void init(const uint8_t *pg, const uint8_t *ph, int L, int t) {
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
    KQ_FN void step(uint32_t (&a)[4][4], const uint8_t *pg, const uint8_t *ph, int t, int i, int L) {
        constexpr int SL = R % WD, J = R % KQ_STEPS, SH = (R / KQ_STEPS) % (WD / KQ_STEPS);
        if constexpr (J == 0) { /* a new block: its heads, loaded WD steps ago */
            hg = q4k_unpack(hd[SH][0]);
            hh = q4k_unpack(hd[SH][1]);
            if constexpr (Q5) xc = xq[SH];
        }
        kq_h2 sg, bg, sh, bh;
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
KQ_FN uint32_t q6k_h2(uint32_t lo, uint32_t hi) {
    return kq_nib_h2(lo) | ((hi << 4) & 0x00300030u);
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

    KQ_FN void half(int s, const uint8_t *pg, const uint8_t *ph, int off, int t) {
        cq[s][0] = kq_ld_rows(pg, ph, off + 8 * t);
        cq[s][1] = kq_ld_rows(pg, ph, off + 32 + 8 * t);
    }
    KQ_FN void head(int b, const uint8_t *pg, const uint8_t *ph, int off) {
        hs[b][0] = kq_ldg(reinterpret_cast<const uint4 *>(pg + off + 192));
        hs[b][1] = kq_ldg(reinterpret_cast<const uint4 *>(ph + off + 192));
        hd[b][0] = kq_ldg(reinterpret_cast<const uint32_t *>(pg + off + 208));
        hd[b][1] = kq_ldg(reinterpret_cast<const uint32_t *>(ph + off + 208));
    }
    /* the bytes of half block hb (of the pass) into slot s: ql at 64 (hb % 2), qh at 128 + 32 (hb % 2) */
    KQ_FN void fetch_half(int s, const uint8_t *pg, const uint8_t *ph, int hb, int t) {
        const int off = (hb / 2) * BYTES + 64 * (hb % 2);
        half(s, pg, ph, off, t);
        cq[s][2] = kq_ld_rows(pg, ph, (hb / 2) * BYTES + 128 + 32 * (hb % 2) + 8 * t);
    }
    KQ_FN void init(const uint8_t *pg, const uint8_t *ph, int L, int t) {
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
    KQ_FN kq_h2 scales(const uint4 &sw, uint32_t dw) const {
        const uint32_t w = J == 0 ? sw.x : J == 1 ? sw.y : J == 2 ? sw.z : sw.w; /* scale bytes 4J .. 4J + 3 */
        const kq_h2 sc = kq_hsub2(kq_bits_h2(kq_perm(w, 0x64, sel) ^ 0x00800080u), kq_bits_h2(0x64806480u));
        return kq_hmul2(sc, kq_bits_h2(kq_perm(dw, 0, 0x1010)));
    }
    template <int R>
    KQ_FN void step(uint32_t (&a)[4][4], const uint8_t *pg, const uint8_t *ph, int t, int i, int L) {
        constexpr int J = R % KQ_STEPS, NIB = J & 1, HS = (R / 2) % (WD / 2), SB = (R / KQ_STEPS) % NS;
        static_assert(WD == 4 || WD == 8, "a_q6k: the head slots hold two blocks");
        if constexpr (WD == 4 && J == 0) /* the next block's heads into the other slot, a block ahead */
            if (i + KQ_STEPS < L) head(SB ^ 1, pg, ph, (R / KQ_STEPS + 1) * BYTES);
        const kq_h2 s2g = scales<J>(hs[SB][0], hd[SB][0]), s2h = scales<J>(hs[SB][1], hd[SB][1]);
        const kq_h2 k1056 = kq_bits_h2(0x64206420u);
#pragma unroll
        for (int s = 0; s < 4; s++) {
            const int src = s & 1, w = s >> 1, k = 2 * NIB + src; /* ql part src, word w, 2-bit field k of qh */
            const uint4 &c = cq[HS][src], &q = cq[HS][2];
            const uint32_t lg = w ? c.y : c.x, lh = w ? c.w : c.z, qg = w ? q.y : q.x, qh = w ? q.w : q.z;
            const kq_h2 Sg = src ? kq_high2(s2g) : kq_low2(s2g), Sh = src ? kq_high2(s2h) : kq_low2(s2h);
            a[s][0] = kq_h2_bits(kq_hmul2(kq_hsub2(kq_bits_h2(q6k_h2(lg >> (4 * NIB), qg >> (2 * k))), k1056), Sg));
            a[s][1] = kq_h2_bits(kq_hmul2(kq_hsub2(kq_bits_h2(q6k_h2(lh >> (4 * NIB), qh >> (2 * k))), k1056), Sh));
            a[s][2] =
                kq_h2_bits(kq_hmul2(kq_hsub2(kq_bits_h2(q6k_h2(lg >> (4 * NIB + 8), qg >> (2 * k + 8))), k1056), Sg));
            a[s][3] =
                kq_h2_bits(kq_hmul2(kq_hsub2(kq_bits_h2(q6k_h2(lh >> (4 * NIB + 8), qh >> (2 * k + 8))), k1056), Sh));
        }
        /* after the half's second step its slot is free: the half WD steps on */
        if constexpr (NIB == 1)
            if (i - 1 + WD < L) fetch_half(HS, pg, ph, (R - 1 + WD) / 2, t);
        /* after the block's last step its heads' slot is free: the block WD steps on */
        if constexpr (WD == 8 && J == KQ_STEPS - 1)
            if (i - 3 + WD < L) head(SB, pg, ph, ((R - 3 + WD) / KQ_STEPS) * BYTES);
    }
};

/* --- Q3_KP (112-byte blocks: hmask[32], qs[64], scales[12], d, pad; q3kp.h). Half block n (columns 128 n ..) is
 * steps 2n (groups j = 0, 1: bits 0-1 and 2-3 of qs[32 n ..], columns 0..31 and 32..63 of the half) and 2n + 1
 * (j = 2, 3: bits 4-5, 6-7); a lane reads qs[32 n + 8t ..] (columns l = 8t.. of each group) once for both steps, and
 * hmask[8t ..] (bit 4 n + j: the third bit of column l of group j) once per block, with the head (scales and d).
 * Value: (q - 4) times S = fp16(d (sc - 32)) of the column's 16-column scale (ggml: q = the two bits, minus 4 where
 * the hmask bit is clear). --- */

/* the half2 (1024 + q, 1024 + q') of the 2-bit fields at bits sh, sh + 16 of w with bits hb, hb + 16 of x as their
 * bit 2 */
KQ_FN uint32_t q3k_h2(uint32_t w, uint32_t x, int sh, int hb) {
    return ((w >> sh) & 0x00030003u) | ((x >> hb) & 0x00010001u) << 2 | 0x64006400u;
}

/* The schedule of the A sides that read a half block's code bytes once for both of its steps and keep two blocks'
 * data (a_q3k, a_q2k): WD / 2 half slots, refilled after a half's second step with the half WD steps on, and two
 * block slots, block b + 1's data loaded at block b's first step (WD = 4) or block b + 2's after block b's last
 * (WD = 8). A provides BYTES, clear(), fetch_half(slot, pg, ph, half of the pass, t) and block(slot, pg, ph, offset
 * in the pass, t). (a_q6k keeps the same schedule written out: its SASS is the one the H100 ran.) */
template <int WD>
struct kq_halves {
    static_assert(WD == 4 || WD == 8, "kq_halves: the block slots hold two blocks");
    template <int R>
    static constexpr int half_slot = (R / 2) % (WD / 2);
    template <int R>
    static constexpr int block_slot = (R / KQ_STEPS) % 2;
    /* steps 0 .. WD - 1 of L from the block at pg, ph */
    template <class A>
    static KQ_FN void init(A &a, const uint8_t *pg, const uint8_t *ph, int L, int t) {
        a.clear();
#pragma unroll
        for (int h = 0; h < WD / 2; h++)
            if (2 * h < L) a.fetch_half(h, pg, ph, h, t);
#pragma unroll
        for (int b = 0; b < WD / KQ_STEPS; b++)
            if (b * KQ_STEPS < L) a.block(b, pg, ph, b * A::BYTES, t);
    }
    /* before pass step R (CTA step i): WD = 4, a block's first step: the next block's data into the other slot */
    template <int R, class A>
    static KQ_FN void ahead(A &a, const uint8_t *pg, const uint8_t *ph, int t, int i, int L) {
        if constexpr (WD == 4 && R % KQ_STEPS == 0)
            if (i + KQ_STEPS < L) a.block(block_slot<R> ^ 1, pg, ph, (R / KQ_STEPS + 1) * A::BYTES, t);
    }
    /* after pass step R: the slots it freed refilled WD steps on */
    template <int R, class A>
    static KQ_FN void refill(A &a, const uint8_t *pg, const uint8_t *ph, int t, int i, int L) {
        if constexpr (R % 2 == 1)
            if (i - 1 + WD < L) a.fetch_half(half_slot<R>, pg, ph, (R - 1 + WD) / 2, t);
        if constexpr (WD == 8 && R % KQ_STEPS == KQ_STEPS - 1)
            if (i - 3 + WD < L) a.block(block_slot<R>, pg, ph, ((R - 3 + WD) / KQ_STEPS) * A::BYTES, t);
    }
};

/* Q3_KP's A side of a lane: the qs bytes of WD / 2 half blocks (one uint4: rows g, g + 8; WD 4 or 8) and, of two
 * blocks, the hmask bytes 8t.. (one uint4) and the heads (scales and d, 16 bytes a row), on kq_halves' schedule */
template <int WD>
struct a_q3k {
    static constexpr int BYTES = QN_Q3KP_BLOCK_BYTES;
    uint4 cq[WD / 2];
    uint4 hm[2];
    uint4 hs[2][2];
    uint32_t sel; /* this lane's scale bytes of a 4-byte word (t / 2, t / 2 + 2) as (1024 + sc) halves */

    KQ_FN void clear() {
#pragma unroll
        for (int h = 0; h < WD / 2; h++) cq[h] = make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int b = 0; b < 2; b++) hm[b] = hs[b][0] = hs[b][1] = make_uint4(0, 0, 0, 0);
    }
    /* block data of the block at off: hmask bytes 8t.. of both rows, the heads (bytes 96..111: scales, d, pad) */
    KQ_FN void block(int b, const uint8_t *pg, const uint8_t *ph, int off, int t) {
        hm[b] = kq_ld_rows(pg, ph, off + 8 * t);
        hs[b][0] = kq_ldg(reinterpret_cast<const uint4 *>(pg + off + 96));
        hs[b][1] = kq_ldg(reinterpret_cast<const uint4 *>(ph + off + 96));
    }
    /* the qs bytes of half block hb (of the pass) into slot s */
    KQ_FN void fetch_half(int s, const uint8_t *pg, const uint8_t *ph, int hb, int t) {
        cq[s] = kq_ld_rows(pg, ph, (hb / 2) * BYTES + 32 + 32 * (hb % 2) + 8 * t);
    }
    KQ_FN void init(const uint8_t *pg, const uint8_t *ph, int L, int t) {
        const uint32_t b = (uint32_t)(t >> 1);
        sel = b | 0x40u | (b + 2) << 8 | 0x4000u;
        kq_halves<WD>::init(*this, pg, ph, L, t);
    }
    /* this lane's (S of group 2 (J & 1), S of group 2 (J & 1) + 1) of step J's columns from a row's head: scale word J
     * (sub-blocks 4J .. 4J + 3, 0..63, gguf_dequant.h qn_q3_k_scale_words) and d */
    template <int J>
    KQ_FN kq_h2 scales(const uint4 &hw) const {
        constexpr uint32_t m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
        const uint32_t w = J == 0   ? (hw.x & m4) | (hw.z & m2) << 4
                           : J == 1 ? (hw.y & m4) | ((hw.z >> 2) & m2) << 4
                           : J == 2 ? ((hw.x >> 4) & m4) | ((hw.z >> 4) & m2) << 4
                                    : ((hw.y >> 4) & m4) | ((hw.z >> 6) & m2) << 4;
        const kq_h2 sc = kq_hsub2(kq_bits_h2(kq_perm(w, 0x64, sel)), kq_bits_h2(0x64206420u)); /* sc - 32 */
        return kq_hmul2(sc, kq_bits_h2(kq_perm(hw.w, 0, 0x1010)));
    }
    template <int R>
    KQ_FN void step(uint32_t (&a)[4][4], const uint8_t *pg, const uint8_t *ph, int t, int i, int L) {
        constexpr int J = R % KQ_STEPS, N = J >> 1, HS = kq_halves<WD>::template half_slot<R>,
                      SB = kq_halves<WD>::template block_slot<R>;
        kq_halves<WD>::template ahead<R>(*this, pg, ph, t, i, L);
        const kq_h2 s2g = scales<J>(hs[SB][0]), s2h = scales<J>(hs[SB][1]);
        const kq_h2 k1028 = kq_bits_h2(0x64046404u);
        const uint4 &c = cq[HS], &x = hm[SB];
#pragma unroll
        for (int s = 0; s < 4; s++) {
            const int src = s & 1, w = s >> 1, j = 2 * (J & 1) + src; /* group j, word w of the lane's 8 bytes */
            const uint32_t lg = w ? c.y : c.x, lh = w ? c.w : c.z, xg = w ? x.y : x.x, xh = w ? x.w : x.z;
            const kq_h2 Sg = src ? kq_high2(s2g) : kq_low2(s2g), Sh = src ? kq_high2(s2h) : kq_low2(s2h);
            const int sh = 2 * j, hb = 4 * N + j;
            a[s][0] = kq_h2_bits(kq_hmul2(kq_hsub2(kq_bits_h2(q3k_h2(lg, xg, sh, hb)), k1028), Sg));
            a[s][1] = kq_h2_bits(kq_hmul2(kq_hsub2(kq_bits_h2(q3k_h2(lh, xh, sh, hb)), k1028), Sh));
            a[s][2] = kq_h2_bits(kq_hmul2(kq_hsub2(kq_bits_h2(q3k_h2(lg, xg, sh + 8, hb + 8)), k1028), Sg));
            a[s][3] = kq_h2_bits(kq_hmul2(kq_hsub2(kq_bits_h2(q3k_h2(lh, xh, sh + 8, hb + 8)), k1028), Sh));
        }
        kq_halves<WD>::template refill<R>(*this, pg, ph, t, i, L);
    }
};

/* --- Q2_K (84-byte blocks: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin; 4-byte aligned, so
 * 4-byte loads). Half block n is steps 2n (groups j = 0, 1: bits 0-1 and 2-3 of qs[32 n ..]) and 2n + 1 (j = 2, 3),
 * as Q3_K's without the third bit; a lane reads qs[32 n + 8t ..] once for both steps and a block's scales and
 * (d, dmin) with its data. Value: fp16(S q + B), S = fp16(d sc), B = fp16(-dmin m) of the column's 16-column
 * sub-block (one f16x2 FMA on exact q, as Q4_K). --- */

/* Q2_K's A side of a lane: the qs bytes of WD / 2 half blocks (one uint4: rows g, g + 8; WD 4 or 8) and, of two
 * blocks, the scales (16 bytes a row) and (d, dmin), on kq_halves' schedule */
template <int WD>
struct a_q2k {
    static constexpr int BYTES = 84; /* gguf_blocks.h qn_block_q2_k */
    uint4 cq[WD / 2];
    uint4 hs[2][2];
    uint32_t hd[2][2];
    uint32_t sel; /* this lane's scale bytes of a 4-byte word (t / 2, t / 2 + 2) as (1024 + v) halves */

    KQ_FN void clear() {
#pragma unroll
        for (int h = 0; h < WD / 2; h++) cq[h] = make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int b = 0; b < 2; b++) {
            hs[b][0] = hs[b][1] = make_uint4(0, 0, 0, 0);
            hd[b][0] = hd[b][1] = 0;
        }
    }
    KQ_FN void block(int b, const uint8_t *pg, const uint8_t *ph, int off, int t) {
        const uint32_t *g = reinterpret_cast<const uint32_t *>(pg + off);
        const uint32_t *h = reinterpret_cast<const uint32_t *>(ph + off);
        hs[b][0] = make_uint4(kq_ldg(g), kq_ldg(g + 1), kq_ldg(g + 2), kq_ldg(g + 3));
        hs[b][1] = make_uint4(kq_ldg(h), kq_ldg(h + 1), kq_ldg(h + 2), kq_ldg(h + 3));
        hd[b][0] = kq_ldg(g + 20); /* bytes 80..83: d, dmin */
        hd[b][1] = kq_ldg(h + 20);
    }
    /* the qs bytes of half block hb (of the pass) into slot s */
    KQ_FN void fetch_half(int s, const uint8_t *pg, const uint8_t *ph, int hb, int t) {
        cq[s] = kq_ld_rows4(pg, ph, (hb / 2) * BYTES + 16 + 32 * (hb % 2) + 8 * t);
    }
    KQ_FN void init(const uint8_t *pg, const uint8_t *ph, int L, int t) {
        const uint32_t b = (uint32_t)(t >> 1);
        sel = b | 0x40u | (b + 2) << 8 | 0x4000u;
        kq_halves<WD>::init(*this, pg, ph, L, t);
    }
    /* this lane's (S, B) pairs (groups 2 (J & 1) and 2 (J & 1) + 1) of step J's columns from a row's scale word J
     * (sub-blocks 4J .. 4J + 3) and (d, dmin) */
    template <int J>
    KQ_FN void pairs(const uint4 &sw, uint32_t dw, kq_h2 &S, kq_h2 &B) const {
        const uint32_t w = J == 0 ? sw.x : J == 1 ? sw.y : J == 2 ? sw.z : sw.w;
        const kq_h2 k1024 = kq_bits_h2(0x64006400u);
        S = kq_hmul2(kq_hsub2(kq_bits_h2(kq_perm(w & 0x0f0f0f0fu, 0x64, sel)), k1024),
                     kq_bits_h2(kq_perm(dw, 0, 0x1010))); /* (d, d) */
        B = kq_hmul2(kq_hsub2(kq_bits_h2(kq_perm((w >> 4) & 0x0f0f0f0fu, 0x64, sel)), k1024),
                     kq_bits_h2(kq_perm(dw, 0, 0x3232) ^ 0x80008000u)); /* (-dmin, -dmin) */
    }
    template <int R>
    KQ_FN void step(uint32_t (&a)[4][4], const uint8_t *pg, const uint8_t *ph, int t, int i, int L) {
        constexpr int J = R % KQ_STEPS, HS = kq_halves<WD>::template half_slot<R>,
                      SB = kq_halves<WD>::template block_slot<R>;
        kq_halves<WD>::template ahead<R>(*this, pg, ph, t, i, L);
        kq_h2 s2g, b2g, s2h, b2h;
        pairs<J>(hs[SB][0], hd[SB][0], s2g, b2g);
        pairs<J>(hs[SB][1], hd[SB][1], s2h, b2h);
        const kq_h2 k1024 = kq_bits_h2(0x64006400u);
        const uint4 &c = cq[HS];
#pragma unroll
        for (int s = 0; s < 4; s++) {
            const int src = s & 1, w = s >> 1, sh = 4 * (J & 1) + 2 * src; /* group 2 (J & 1) + src: bits sh.. */
            const uint32_t lg = w ? c.y : c.x, lh = w ? c.w : c.z;
            const kq_h2 Sg = src ? kq_high2(s2g) : kq_low2(s2g), Bg = src ? kq_high2(b2g) : kq_low2(b2g);
            const kq_h2 Sh = src ? kq_high2(s2h) : kq_low2(s2h), Bh = src ? kq_high2(b2h) : kq_low2(b2h);
            const uint32_t m = 0x00030003u, o = 0x64006400u;
            a[s][0] = kq_h2_bits(kq_hfma2(kq_hsub2(kq_bits_h2(((lg >> sh) & m) | o), k1024), Sg, Bg));
            a[s][1] = kq_h2_bits(kq_hfma2(kq_hsub2(kq_bits_h2(((lh >> sh) & m) | o), k1024), Sh, Bh));
            a[s][2] = kq_h2_bits(kq_hfma2(kq_hsub2(kq_bits_h2(((lg >> (sh + 8)) & m) | o), k1024), Sg, Bg));
            a[s][3] = kq_h2_bits(kq_hfma2(kq_hsub2(kq_bits_h2(((lh >> (sh + 8)) & m) | o), k1024), Sh, Bh));
        }
        kq_halves<WD>::template refill<R>(*this, pg, ph, t, i, L);
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
KQ_FN uint32_t q8_h2(uint32_t w) {
    return kq_perm(w ^ 0x80808080u, 0x64646464u, (uint32_t)(P | 0x4040));
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
    KQ_FN void fetch(int sl, const uint8_t *pg, const uint8_t *ph, int r, int t) {
        const int off = (r / KQ_STEPS) * BYTES + 16 + 64 * (r % KQ_STEPS) + 8 * t;
        cq[sl][0] = kq_ld_rows(pg, ph, off);
        cq[sl][1] = kq_ld_rows(pg, ph, off + 32);
    }
    KQ_FN void head(int sb, const uint8_t *pg, const uint8_t *ph, int off) {
        hs[sb][0] = kq_ldg(reinterpret_cast<const uint4 *>(pg + off));
        hs[sb][1] = kq_ldg(reinterpret_cast<const uint4 *>(ph + off));
    }
    KQ_FN void init(const uint8_t *pg, const uint8_t *ph, int L, int t) {
#pragma unroll
        for (int d = 0; d < WD; d++) {
            cq[d][0] = cq[d][1] = make_uint4(0, 0, 0, 0);
            if (d < L) fetch(d, pg, ph, d, t);
        }
        hs[1][0] = hs[1][1] = make_uint4(0, 0, 0, 0);
        head(0, pg, ph, 0);
    }
    template <int R>
    KQ_FN void step(uint32_t (&a)[4][4], const uint8_t *pg, const uint8_t *ph, int t, int i, int L) {
        static_assert(WD == 2 || WD == 4, "a_q8: 2 or 4 steps in flight");
        constexpr int J = R % KQ_STEPS, SL = R % WD, SB = (R / KQ_STEPS) % NS;
        if constexpr (J == 0) /* the next block's scales into the other slot, a block ahead */
            if (i + KQ_STEPS < L) head(SB ^ 1, pg, ph, (R / KQ_STEPS + 1) * BYTES);
        const uint4 &hg = hs[SB][0], &hh = hs[SB][1];
        const uint32_t wg = J == 0 ? hg.x : J == 1 ? hg.y : J == 2 ? hg.z : hg.w; /* d[2J], d[2J + 1] */
        const uint32_t wh = J == 0 ? hh.x : J == 1 ? hh.y : J == 2 ? hh.z : hh.w;
        const kq_h2 k1152 = kq_bits_h2(0x64806480u);
#pragma unroll
        for (int s = 0; s < 4; s++) {
            const int src = s & 1, w = s >> 1; /* Q8_0 block 2J + src, word w of the lane's 8 bytes */
            const uint4 &c = cq[SL][src];
            const uint32_t cg = w ? c.y : c.x, ch = w ? c.w : c.z;
            const kq_h2 Dg = kq_bits_h2(kq_perm(wg, 0, src ? 0x3232 : 0x1010));
            const kq_h2 Dh = kq_bits_h2(kq_perm(wh, 0, src ? 0x3232 : 0x1010));
            a[s][0] = kq_h2_bits(kq_hmul2(kq_hsub2(kq_bits_h2(q8_h2<0x200>(cg)), k1152), Dg));
            a[s][1] = kq_h2_bits(kq_hmul2(kq_hsub2(kq_bits_h2(q8_h2<0x200>(ch)), k1152), Dh));
            a[s][2] = kq_h2_bits(kq_hmul2(kq_hsub2(kq_bits_h2(q8_h2<0x301>(cg)), k1152), Dg));
            a[s][3] = kq_h2_bits(kq_hmul2(kq_hsub2(kq_bits_h2(q8_h2<0x301>(ch)), k1152), Dh));
        }
        if (i + WD < L) fetch(SL, pg, ph, R + WD, t); /* slot SL is free: the step WD on */
    }
};

#endif /* QN_KQ_TC_ASIDE_CUH */
