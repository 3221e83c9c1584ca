/* kq_mmvq.cuh — the int8 decode kernel (QN_QUANT_PATH_MMVQ), instantiated per (format, NT tokens) by
 * kq_mmvq.cu (legacy formats) and kq_mmvq_k.cu (K-quants):
 *
 *   y[t][r] = sum_k xq[t][k] * W[r][k],  t < NT <= 8, r < N,  xq: q8 activations (kq_mmvq.h)
 *
 * Why: the tensor-core GEMV (kq_kernel.cuh) turns every weight into fp16 before the mma, about 2
 * instructions per weight, which bounds it near half of copy bandwidth at n = 1. Here the weight codes
 * stay integers: 4 of them meet 4 int8 activations in one __dp4a, and the scales are applied once per
 * 16/32 elements in f32, so a Q4 weight byte costs ~1 integer op.
 *
 * Walk: a CTA is 4 warps; W = warps_per_row (1, 2, 4) warps share R rows (R: mq_rows), the CTA
 * holds 4/W such groups. A "unit" is UE consecutive elements of a row that one lane decodes at once
 * (a legacy block, 1/4 or 1/2 of a K-quant super-block); lane l of warp w (of its group) takes units
 * 32w + l, 32w + l + 32W, ... so each load instruction of a warp reads consecutive units: the row
 * streams coalesced. The same unit of R rows is decoded against each token's q8 block, loaded once
 * for the R rows (the activations are small and come from L1/L2). Sums: a warp reduce-scatter
 * (shuffles), then, for W > 1, shared memory in a fixed order (deterministic).
 *
 * Alignment: a row starts 2-byte aligned only (e.g. Q4_0's 18-byte blocks), so 2-aligned fields are
 * read as aligned words plus 16-bit halves and realigned with funnel shifts (mq_span_a2); no load
 * touches a byte outside the fields the unit decodes, so nothing past the last block is read.
 *
 * Weight loads come in two variants with the same arithmetic: direct from global memory, or staged by
 * chunks through shared memory with cp.async (see "staging" below; the launcher picks, kq_mmvq.cu).
 * Activations (the kernel before's output) are read with coherent loads, never ld.global.nc (mq_xmem). */
#ifndef QN_KQ_MMVQ_CUH
#define QN_KQ_MMVQ_CUH

#include <stdint.h>

#include <cuda_fp16.h>

#include "kernels/common/device_util.cuh" /* qn_pdl_wait, qn_pdl_trigger */
#include "kernels/quant/gguf/kq_decode.cuh" /* kq_spread4_bit4 */
#include "kernels/quant/gguf/kq_mmvq.h"

#define MQ_WARPS 4 /* per CTA: small CTAs, so that many fit an SM and a short row can split over warps */
#define MQ_THREADS (32 * MQ_WARPS)
#define MQ_MAX_NT 8

/* Rows per warp group for units of ue elements and nt tokens: more rows reuse each activation load
 * (L1 traffic per weight byte grows with nt), fewer rows give more warps on a small matrix and fewer
 * registers (the 128-element units of Q2_K/Q3_K hold ~20 words per row: at most 2 rows; at nt = 1 two rows
 * instead of one measured 1.6-1.8x faster staged on three 8B shapes, equal on 1024x4096:
 * bench/results/gpu-k23-2026-12-03.md). At nt = 1 two
 * rows (one row each moved ~3.5 bytes of activations and weights through L1 per Q4_K weight byte against
 * Q8_0's ~2.2, and ran at 52% of copy bandwidth against Q8_0's 78%, bench/results/gpu-decode-step-2026-12-02.md).
 * Four rows (bench/gpu_rows_ab.sh) measured mixed per kernel and 4.8% slower end to end on the 8B Q4_K_M, where
 * Q6_K's staged instance no longer fits: bench/results/gpu-decode-auto-2026-12-03.md.
 * The launcher sizes the grid with the same function. */
#ifndef QN_MQ_ROWS_NT1
#define QN_MQ_ROWS_NT1 2 /* rows per warp group at nt = 1 for units of < 128 elements (an A/B knob: -D) */
#endif
#ifndef QN_MQ_ROWS_NT1_UE128
#define QN_MQ_ROWS_NT1_UE128 2 /* the same for the 128-element units of Q2_K/Q3_K (an A/B knob: -D) */
#endif
/* Q2_K alone at nt = 1 (an A/B knob: -D). Four rows for Q2_K and Q3_K together measured the Q2_K LM head
 * 94.3 -> 67.7 us but lost Q3_K's staged instance (two chunks per row per warp past 48 KB) and 7.6% end to end on
 * the 8B Q2_K mix (bench/results/gpu-persist-2026-12-05.md §1); Q2_K's 84-byte blocks still stage at four rows. */
#ifndef QN_MQ_ROWS_NT1_Q2K
#define QN_MQ_ROWS_NT1_Q2K QN_MQ_ROWS_NT1_UE128
#endif
__host__ __device__ constexpr int mq_rows(qn_qformat f, int ue, int nt) {
    return nt == 1 ? (f == QN_QFORMAT_Q2_K ? QN_MQ_ROWS_NT1_Q2K : ue >= 128 ? QN_MQ_ROWS_NT1_UE128 : QN_MQ_ROWS_NT1)
                   : (nt <= 3 || ue >= 128) ? 2 : 4;
}
/* CTAs per SM the kernel is built for: 4 (16 warps, <= 128 registers) keeps enough loads in flight
 * to cover HBM latency; the K-quants at nt >= 4 need up to ~250 registers (ptxas -v: several hundred
 * bytes of spills under a 128 cap), so they get 2 and carry more bytes per warp (4 rows x a unit). */
__host__ __device__ constexpr int mq_min_ctas(int ue, int nt) { return (ue == 32 || nt <= 3) ? 4 : 2; }

/* One matrix of a launch: CTAs [cta0, next matrix's cta0) compute its rows. */
struct mq_mat {
    const uint8_t *w;         /* [N][row_bytes] blocks, 16-byte aligned */
    float *y;                 /* [NT][N] */
    int64_t N;
    int64_t cta0;             /* its first CTA (0 for m[0]) */
};

struct mq_args {
    mq_mat m[KQ_MMVQ_MAX_MATS]; /* n_mat matrices of the same format and K on the same activations */
    int n_mat;
    const int8_t *xq;         /* [NT][K] q8 codes of this launch's tokens */
    const qn_mmvq_xrec *xr;   /* [NT][K/32] their scales and half sums */
    int64_t K, row_bytes;
    const __half *xh;         /* [NT][K] fp16 activations, for the formats that take x unquantized (mq_xsrc) */
    int64_t x_ld;             /* elements between tokens in xq / xh (= K); records: x_ld / 32 */
    int warps_per_row;        /* W: 1, 2 or 4 */
    int64_t n_vcta;           /* > 0: persistent staged launch (mq_persist) over n_vcta row blocks; 0: one per CTA */
};

/* --- loads: read-only path; every address is aligned to the load's width. (Cache hints on the weight loads
 * were measured on the H200 at b5aa570: L2::256B changed nothing, L1::no_allocate cost 21% of decode speed;
 * bench/results/gpu-decode-attn-small-2026-12-02.md.) --- */

/* Where load() reads a unit's weights from: global memory (read-only path), or the warp's staged copy of
 * its chunk in shared memory (the staged kernel below). Every address is aligned to the load's width. */
struct mq_gmem {
    __device__ static uint32_t ld16(const uint8_t *p) { return __ldg(reinterpret_cast<const unsigned short *>(p)); }
    __device__ static uint32_t ld32(const uint8_t *p) { return __ldg(reinterpret_cast<const unsigned *>(p)); }
    __device__ static uint2 ld64(const uint8_t *p) { return __ldg(reinterpret_cast<const uint2 *>(p)); }
    __device__ static uint4 ld128(const uint8_t *p) { return qn_ldg128(p); }
};
struct mq_smem {
    __device__ static uint32_t ld16(const uint8_t *p) { return *reinterpret_cast<const unsigned short *>(p); }
    __device__ static uint32_t ld32(const uint8_t *p) { return *reinterpret_cast<const unsigned *>(p); }
    __device__ static uint2 ld64(const uint8_t *p) { return *reinterpret_cast<const uint2 *>(p); }
    __device__ static uint4 ld128(const uint8_t *p) { return qn_lds128(p); }
};
/* The activations: written by the kernel before, which may still run when this one starts (PDL): coherent
 * loads (qn_ldca128), never the read-only path. Whole aligned vectors only (q8 blocks, records, fp16 x). */
struct mq_xmem {
    __device__ static uint2 ld64(const uint8_t *p) { return __ldca(reinterpret_cast<const uint2 *>(p)); }
    __device__ static uint4 ld128(const uint8_t *p) { return qn_ldca128(p); }
};

/* NW little-endian words of the bytes [p, p + 4 NW), p 2-byte aligned, reading only those bytes:
 * aligned, NW words; otherwise a 16-bit head, NW-1 words and a 16-bit tail, shifted into place
 * (funnelshift_rc by 32 returns the high word: the aligned case). */
template <int NW, class M = mq_gmem>
__device__ __forceinline__ void mq_span_a2(const uint8_t *p, uint32_t out[NW]) {
    const bool mis = (reinterpret_cast<uintptr_t>(p) & 2u) != 0;
    const uint8_t *a = p + (mis ? 2 : 0);
    uint32_t w[NW];
#pragma unroll
    for (int i = 0; i < NW - 1; i++) w[i] = M::ld32(a + 4 * i);
    w[NW - 1] = mis ? M::ld16(p + 4 * NW - 2) : M::ld32(p + 4 * NW - 4);
    const uint32_t head = mis ? M::ld16(p) << 16 : 0u;
    const uint32_t sh = mis ? 16u : 32u;
#pragma unroll
    for (int i = 0; i < NW; i++) out[i] = __funnelshift_rc(i == 0 ? head : w[i - 1], w[i], sh);
}

template <int NW, class M = mq_gmem>
__device__ __forceinline__ void mq_words_a4(const uint8_t *p, uint32_t out[NW]) {
#pragma unroll
    for (int i = 0; i < NW; i++) out[i] = M::ld32(p + 4 * i);
}

template <int NW, class M = mq_gmem>
__device__ __forceinline__ void mq_words_a16(const uint8_t *p, uint32_t out[NW]) {
    static_assert(NW % 4 == 0, "whole 16-byte vectors");
#pragma unroll
    for (int i = 0; i < NW / 4; i++) {
        const uint4 v = M::ld128(p + 16 * i);
        out[4 * i + 0] = v.x, out[4 * i + 1] = v.y, out[4 * i + 2] = v.z, out[4 * i + 3] = v.w;
    }
}

__device__ __forceinline__ float mq_f16(uint32_t bits) { return __half2float(__ushort_as_half((unsigned short)bits)); }
__device__ __forceinline__ int mq_byte(uint32_t w, int i) { return (int)((w >> (8 * i)) & 0xFFu); }

/* sum over 4 words of dp4a(codes, activations): elements 4*i0 .. 4*i0+15 of a q8 block */
template <typename Fn>
__device__ __forceinline__ int mq_dot4(const uint32_t X[8], int i0, Fn codes) {
    int s = 0;
#pragma unroll
    for (int i = i0; i < i0 + 4; i++) s = __dp4a((int)codes(i), (int)X[i], s);
    return s;
}

/* dp4a of unsigned weight bytes against signed activation bytes (PTX dp4a.u32.s32): the K-quant codes
 * below are masked in place, so a byte may hold a code times 2^b up to 192, outside int8. */
__device__ __forceinline__ int mq_dp4a_us(uint32_t a, uint32_t b, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

/* sum over 4 words of the codes at bit b of each byte (width of mask m >> b), against elements
 * 4*i0 .. 4*i0+15: the codes are masked where they lie (one LOP3 per word instead of a shift and a mask)
 * and the sum, a multiple of 2^b, shifted back once (an arithmetic shift of an exact multiple: exact). */
__device__ __forceinline__ int mq_dot4_field(const uint32_t q[], const uint32_t X[8], int i0, uint32_t m, int b) {
    int s = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) s = mq_dp4a_us(q[i] & m, X[i0 + i], s);
    return s >> b;
}

/* One q8 activation block for dot(): X[i] holds elements 4i..4i+3. */
struct mq_xblk {
    uint32_t X[8];
    float d;
    int s0, s1;
};

/* The integer dot of a legacy 4/5-bit block: qs words q[0..3] hold elements 4i.. (low nibbles) and
 * 16 + 4i.. (high nibbles); Q5 adds fifth bit e from bit e of qh. */
template <bool Q5>
__device__ __forceinline__ int mq_dot_legacy4(const uint32_t q[4], uint32_t qh, const uint32_t X[8]) {
    int s = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint32_t lo = q[i] & 0x0F0F0F0Fu, hi = (q[i] >> 4) & 0x0F0F0F0Fu;
        if (Q5) lo |= kq_spread4_bit4((qh >> (4 * i)) & 0xFu), hi |= kq_spread4_bit4((qh >> (16 + 4 * i)) & 0xFu);
        s = __dp4a((int)lo, (int)X[i], s);
        s = __dp4a((int)hi, (int)X[4 + i], s);
    }
    return s;
}

/* --- formats ---
 * UE: elements per unit; QB = UE / 32 q8 blocks per unit, j-th at xblock(u, j) of the row.
 * load(): the unit's weight state; dot(): its f32 contribution against q8 block j (d_x included). */
template <qn_qformat F>
struct mq_fmt;

/* Q4_0 — d @0 | qs[16] @2: element l (< 16) lo(qs[l]), 16 + l hi(qs[l]); w = d (c - 8). */
template <>
struct mq_fmt<QN_QFORMAT_Q4_0> {
    static constexpr int UE = 32, BB = 18, BE = 32;
    struct unit { uint32_t q[4]; float d; };
    __device__ static int64_t xblock(int64_t u, int j) { return u; }
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + u * BB;
        w.d = mq_f16(M::ld16(b));
        mq_span_a2<4, M>(b + 2, w.q);
    }
    __device__ static float dot(const unit &w, int j, const mq_xblk &x) {
        return w.d * x.d * (float)(mq_dot_legacy4<false>(w.q, 0u, x.X) - 8 * (x.s0 + x.s1));
    }
};

/* Q4_1 — d @0 | m @2 | qs[16] @4 (4-byte aligned); w = d c + m. */
template <>
struct mq_fmt<QN_QFORMAT_Q4_1> {
    static constexpr int UE = 32, BB = 20, BE = 32;
    struct unit { uint32_t q[4]; float d, m; };
    __device__ static int64_t xblock(int64_t u, int j) { return u; }
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + u * BB;
        const uint32_t dm = M::ld32(b);
        w.d = mq_f16(dm), w.m = mq_f16(dm >> 16);
        mq_words_a4<4, M>(b + 4, w.q);
    }
    __device__ static float dot(const unit &w, int j, const mq_xblk &x) {
        return x.d * fmaf(w.d, (float)mq_dot_legacy4<false>(w.q, 0u, x.X), w.m * (float)(x.s0 + x.s1));
    }
};

/* Q5_0 — d @0 | qh u32 @2 | qs[16] @6; fifth bit of element e = bit e of qh; w = d (c - 16). */
template <>
struct mq_fmt<QN_QFORMAT_Q5_0> {
    static constexpr int UE = 32, BB = 22, BE = 32;
    struct unit { uint32_t q[5]; float d; }; /* q[0] = qh, q[1..4] = qs */
    __device__ static int64_t xblock(int64_t u, int j) { return u; }
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + u * BB;
        w.d = mq_f16(M::ld16(b));
        mq_span_a2<5, M>(b + 2, w.q);
    }
    __device__ static float dot(const unit &w, int j, const mq_xblk &x) {
        return w.d * x.d * (float)(mq_dot_legacy4<true>(w.q + 1, w.q[0], x.X) - 16 * (x.s0 + x.s1));
    }
};

/* Q5_1 — d @0 | m @2 | qh @4 | qs[16] @8 (8-byte aligned); w = d c + m. */
template <>
struct mq_fmt<QN_QFORMAT_Q5_1> {
    static constexpr int UE = 32, BB = 24, BE = 32;
    struct unit { uint32_t q[5]; float d, m; };
    __device__ static int64_t xblock(int64_t u, int j) { return u; }
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + u * BB;
        uint32_t v[6];
#pragma unroll
        for (int i = 0; i < 3; i++) {
            const uint2 t = M::ld64(b + 8 * i);
            v[2 * i] = t.x, v[2 * i + 1] = t.y;
        }
        w.d = mq_f16(v[0]), w.m = mq_f16(v[0] >> 16);
#pragma unroll
        for (int i = 0; i < 5; i++) w.q[i] = v[1 + i];
    }
    __device__ static float dot(const unit &w, int j, const mq_xblk &x) {
        return x.d * fmaf(w.d, (float)mq_dot_legacy4<true>(w.q + 1, w.q[0], x.X), w.m * (float)(x.s0 + x.s1));
    }
};

/* Q8_0 — d @0 | qs i8[32] @2; w = d q. */
template <>
struct mq_fmt<QN_QFORMAT_Q8_0> {
    static constexpr int UE = 32, BB = 34, BE = 32;
    struct unit { uint32_t q[8]; float d; };
    __device__ static int64_t xblock(int64_t u, int j) { return u; }
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + u * BB;
        w.d = mq_f16(M::ld16(b));
        mq_span_a2<8, M>(b + 2, w.q);
    }
    __device__ static float dot(const unit &w, int j, const mq_xblk &x) {
        const int s = mq_dot4(x.X, 0, [&](int i) { return w.q[i]; }) + mq_dot4(x.X, 4, [&](int i) { return w.q[i]; });
        return w.d * x.d * (float)s;
    }
};

/* Q2_K — scales[16] @0 | qs[64] @16 | d @80 | dmin @82 (4-byte aligned). Unit h (128 elements):
 * element 128h + 32j + l has code (qs[32h + l] >> 2j) & 3, scale byte scales[8h + 2j + (l >= 16)]
 * (lo: scale, hi: min); w = d sc c - dmin mn. */
template <>
struct mq_fmt<QN_QFORMAT_Q2_K> {
    static constexpr int UE = 128, BB = 84, BE = 256;
    struct unit { uint32_t q[8], sc[2]; float d, dmin; };
    __device__ static int64_t xblock(int64_t u, int j) { return 4 * u + j; }
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + (u >> 1) * BB;
        const int h = (int)(u & 1);
        mq_words_a4<8, M>(b + 16 + 32 * h, w.q);
        mq_words_a4<2, M>(b + 8 * h, w.sc);
        const uint32_t dd = M::ld32(b + 80);
        w.d = mq_f16(dd), w.dmin = mq_f16(dd >> 16);
    }
    __device__ static float dot(const unit &w, int j, const mq_xblk &x) {
        const uint32_t m = 0x03030303u << (2 * j); /* j is a constant after unrolling */
        const int i0 = mq_dot4_field(w.q, x.X, 0, m, 2 * j), i1 = mq_dot4_field(w.q + 4, x.X, 4, m, 2 * j);
        const int b0 = mq_byte(w.sc[j >> 1], 2 * (j & 1)), b1 = mq_byte(w.sc[j >> 1], 2 * (j & 1) + 1);
        const int sc = (b0 & 15) * i0 + (b1 & 15) * i1, mn = (b0 >> 4) * x.s0 + (b1 >> 4) * x.s1;
        return x.d * (w.d * (float)sc - w.dmin * (float)mn);
    }
};

/* Q3_K — hmask[32] @0 | qs[64] @32 | scales[12] @96 | d @108 (2-byte aligned). Unit h (128 elements):
 * element 128h + 32j + l: code = ((qs[32h + l] >> 2j) & 3) | ((hmask[l] >> (4h + j)) & 1) << 2, q = code - 4;
 * 6-bit scale is = 8h + 2j + (l >= 16): lo4 = nibble h of scales[is - 8h], hi2 = (scales[8 + is%4] >> 2(is/4)) & 3;
 * w = d (scale - 32) q. load() gathers the unit's 8 scales + 32 as bytes (e = is - 8h, byte e & 3 of sc[e >> 2]);
 * dot() sums the two code fields apart (mq_dot4_field): sum code x = sum low2 x + 4 sum high x. */
template <>
struct mq_fmt<QN_QFORMAT_Q3_K> {
    static constexpr int UE = 128, BB = 110, BE = 256;
    struct unit { uint32_t hm[8], q[8], sc[2]; float d; int h; };
    __device__ static int64_t xblock(int64_t u, int j) { return 4 * u + j; }
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + (u >> 1) * BB;
        w.h = (int)(u & 1);
        mq_span_a2<8, M>(b, w.hm);
        mq_span_a2<8, M>(b + 32 + 32 * w.h, w.q);
        uint32_t s[3];
        mq_span_a2<3, M>(b + 96, s);
        w.d = mq_f16(M::ld16(b + 108));
        scales(s, w);
    }
    /* the unit's 8 scales + 32 as bytes from the 12 packed bytes s (unit h = w.h) */
    __device__ static void scales(const uint32_t s[3], unit &w) {
#pragma unroll
        for (int k = 0; k < 2; k++) /* scales e = 4k .. 4k + 3: lo4 from s[k], hi2 from s[2] at bit 2 (2h + k) */
            w.sc[k] = ((s[k] >> (4 * w.h)) & 0x0F0F0F0Fu) | (((s[2] >> (2 * (2 * w.h + k))) & 0x03030303u) << 4);
    }
    __device__ static float dot(const unit &w, int j, const mq_xblk &x) {
        const int hs = 4 * w.h + j;
        const uint32_t ml = 0x03030303u << (2 * j), mh = 0x01010101u << hs;
        const int i0 = mq_dot4_field(w.q, x.X, 0, ml, 2 * j) + 4 * mq_dot4_field(w.hm, x.X, 0, mh, hs) - 4 * x.s0;
        const int i1 =
            mq_dot4_field(w.q + 4, x.X, 4, ml, 2 * j) + 4 * mq_dot4_field(w.hm + 4, x.X, 4, mh, hs) - 4 * x.s1;
        const uint32_t sw = w.sc[j >> 1]; /* scales e = 2j, 2j + 1: bytes 2 (j & 1), 2 (j & 1) + 1 */
        const int s0 = mq_byte(sw, 2 * (j & 1)) - 32, s1 = mq_byte(sw, 2 * (j & 1) + 1) - 32;
        return w.d * x.d * (float)(s0 * i0 + s1 * i1);
    }
};

/* Q3_KP (device-only, q3kp.h) — the Q3_K block at the start of a 112-byte, 16-byte aligned slot: the same unit
 * and dot; hmask and the unit's qs are two 16-byte vectors each, the 12 scale bytes and d one 16-byte vector. */
template <>
struct mq_fmt<QN_QFORMAT_Q3_KP> : mq_fmt<QN_QFORMAT_Q3_K> {
    static constexpr int BB = 112;
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + (u >> 1) * BB;
        w.h = (int)(u & 1);
        mq_words_a16<8, M>(b, w.hm);
        mq_words_a16<8, M>(b + 32 + 32 * w.h, w.q);
        const uint4 sd = M::ld128(b + 96); /* scales[12] @96 | d @108 | pad */
        w.d = mq_f16(sd.w);
        const uint32_t s[3] = {sd.x, sd.y, sd.z};
        scales(s, w);
    }
};

/* Q4_K scale/min pair b (0..7) from the 12 packed bytes as 3 words (formats.md §2.2). */
__device__ __forceinline__ void mq_scale_min_k4(const uint32_t S[3], int b, int &sc, int &mn) {
    const int x0 = mq_byte(S[0], b & 3), x1 = mq_byte(S[1], b & 3), x2 = mq_byte(S[2], b & 3);
    sc = b < 4 ? (x0 & 63) : ((x2 & 15) | ((x0 >> 6) << 4));
    mn = b < 4 ? (x1 & 63) : ((x2 >> 4) | ((x1 >> 6) << 4));
}

/* Q4_K — d @0 | dmin @2 | scales[12] @4 | qs[128] @16 (16-byte aligned: 144 = 9 x 16). Unit c (64 elements):
 * element 64c + 32p + l has code nibble p of qs[32c + l], pair b = 2c + p; w = d sc c - dmin mn. */
template <>
struct mq_fmt<QN_QFORMAT_Q4_K> {
    static constexpr int UE = 64, BB = 144, BE = 256;
    struct unit { uint32_t q[8]; float dsc[2], dmn[2]; };
    __device__ static int64_t xblock(int64_t u, int j) { return 2 * u + j; }
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + (u >> 2) * BB;
        const int c = (int)(u & 3);
        uint32_t hdr[4];
        mq_words_a16<4, M>(b, hdr);
        mq_words_a16<8, M>(b + 16 + 32 * c, w.q);
        const float d = mq_f16(hdr[0]), dmin = mq_f16(hdr[0] >> 16);
#pragma unroll
        for (int p = 0; p < 2; p++) {
            int sc, mn;
            mq_scale_min_k4(hdr + 1, 2 * c + p, sc, mn);
            w.dsc[p] = d * (float)sc, w.dmn[p] = dmin * (float)mn;
        }
    }
    __device__ static float dot(const unit &w, int p, const mq_xblk &x) {
        const int s = mq_dot4(x.X, 0, [&](int i) { return (w.q[i] >> (4 * p)) & 0x0F0F0F0Fu; }) +
                      mq_dot4(x.X, 4, [&](int i) { return (w.q[i] >> (4 * p)) & 0x0F0F0F0Fu; });
        return x.d * (w.dsc[p] * (float)s - w.dmn[p] * (float)(x.s0 + x.s1));
    }
};

/* Q5_K — d @0 | dmin @2 | scales[12] @4 | qh[32] @16 | qs[128] @48 (176 = 11 x 16). As Q4_K plus
 * fifth bit (qh[l] >> (2c + p)) & 1. */
template <>
struct mq_fmt<QN_QFORMAT_Q5_K> {
    static constexpr int UE = 64, BB = 176, BE = 256;
    struct unit { uint32_t q[8], qh[8]; float dsc[2], dmn[2]; int c; };
    __device__ static int64_t xblock(int64_t u, int j) { return 2 * u + j; }
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + (u >> 2) * BB;
        w.c = (int)(u & 3);
        uint32_t hdr[4];
        mq_words_a16<4, M>(b, hdr);
        mq_words_a16<8, M>(b + 16, w.qh);
        mq_words_a16<8, M>(b + 48 + 32 * w.c, w.q);
        const float d = mq_f16(hdr[0]), dmin = mq_f16(hdr[0] >> 16);
#pragma unroll
        for (int p = 0; p < 2; p++) {
            int sc, mn;
            mq_scale_min_k4(hdr + 1, 2 * w.c + p, sc, mn);
            w.dsc[p] = d * (float)sc, w.dmn[p] = dmin * (float)mn;
        }
    }
    __device__ static float dot(const unit &w, int p, const mq_xblk &x) {
        const int hb = 2 * w.c + p;
        auto code = [&](int i) { return ((w.q[i] >> (4 * p)) & 0x0F0F0F0Fu) | (((w.qh[i] >> hb) & 0x01010101u) << 4); };
        const int s = mq_dot4(x.X, 0, code) + mq_dot4(x.X, 4, code);
        return x.d * (w.dsc[p] * (float)s - w.dmn[p] * (float)(x.s0 + x.s1));
    }
};

/* Q6_K — ql[128] @0 | qh[64] @128 | scales i8[16] @192 | d @208 (2-byte aligned). Unit (h, jj)
 * (64 elements): elements 128h + 32k + l for k = jj + 2p, p = 0, 1: low4 = nibble p of ql[64h + 32jj + l],
 * high2 = (qh[32h + l] >> 2k) & 3, q = code - 32, scale scales[8h + 2k + (l >= 16)]; w = d sc q. */
template <>
struct mq_fmt<QN_QFORMAT_Q6_K> {
    static constexpr int UE = 64, BB = 210, BE = 256;
    struct unit { uint32_t ql[8], qh[8], sc[2]; float d; int jj; };
    __device__ static int64_t xblock(int64_t u, int j) { return 8 * (u >> 2) + 4 * ((u >> 1) & 1) + (u & 1) + 2 * j; }
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + (u >> 2) * BB;
        const int h = (int)((u >> 1) & 1);
        w.jj = (int)(u & 1);
        mq_span_a2<8, M>(b + 64 * h + 32 * w.jj, w.ql);
        mq_span_a2<8, M>(b + 128 + 32 * h, w.qh);
        mq_span_a2<2, M>(b + 192 + 8 * h, w.sc);
        w.d = mq_f16(M::ld16(b + 208));
    }
    __device__ static float dot(const unit &w, int p, const mq_xblk &x) {
        const int k = w.jj + 2 * p;
        auto code = [&](int i) {
            return ((w.ql[i] >> (4 * p)) & 0x0F0F0F0Fu) | (((w.qh[i] >> (2 * k)) & 0x03030303u) << 4);
        };
        const int i0 = mq_dot4(x.X, 0, code) - 32 * x.s0, i1 = mq_dot4(x.X, 4, code) - 32 * x.s1;
        /* scales[8h + 2k + half]: bytes 2k, 2k+1 of the unit's 8 (k <= 3: both in word k >> 1) */
        const uint32_t sw = w.sc[k >> 1];
        const int s0 = (int)(int8_t)(sw >> (16 * (k & 1))), s1 = (int)(int8_t)(sw >> (16 * (k & 1) + 8));
        return w.d * x.d * (float)(s0 * i0 + s1 * i1);
    }
};

/* Q6_KP (device-only, q6kp.h) — the Q6_K block at the start of a 224-byte, 16-byte aligned slot: the same
 * unit and dot, loaded with two 16-byte vectors each for ql and qh, 8 bytes of scales and the 2-byte d
 * (Q6_K's 210-byte blocks take ~21 realigned 4- and 2-byte loads per unit). */
template <>
struct mq_fmt<QN_QFORMAT_Q6_KP> : mq_fmt<QN_QFORMAT_Q6_K> {
    static constexpr int BB = 224;
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + (u >> 2) * BB;
        const int h = (int)((u >> 1) & 1);
        w.jj = (int)(u & 1);
        mq_words_a16<8, M>(b + 64 * h + 32 * w.jj, w.ql);
        mq_words_a16<8, M>(b + 128 + 32 * h, w.qh);
        const uint2 sc = M::ld64(b + 192 + 8 * h);
        w.sc[0] = sc.x, w.sc[1] = sc.y;
        w.d = mq_f16(M::ld16(b + 208));
    }
};

/* Q8_0P (device-only, q8_0p.h) — d f16[8] @0 | qs i8[8][32] @16, 272 bytes: Q8_0 block j of the super-block
 * as d[j], qs[j]. Unit u is Q8_0's unit u (the same 32 elements, the same dot, the same order of sums), its
 * codes two 16-byte vectors and its scale one 2-byte load (Q8_0's 34-byte blocks: 8 realigned words). */
template <>
struct mq_fmt<QN_QFORMAT_Q8_0P> : mq_fmt<QN_QFORMAT_Q8_0> {
    static constexpr int BB = 272, BE = 256;
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + (u >> 3) * BB;
        const int j = (int)(u & 7);
        w.d = mq_f16(M::ld16(b + 2 * j));
        mq_words_a16<8, M>(b + 16 + 32 * j, w.q);
    }
};

/* --- the activation side ---
 * mq_xsrc<F>::blk is what dot() takes for one token and q8 block xb, load() fetches it. By default the q8
 * block of kq_mmvq.h; a format whose weights are no integer codes (LNF4/LFP4, lutq_mmvq.cu) specializes
 * it to the fp16 x itself. mq_occupancy<F, NT>::CTAS: the kernel's CTAs per SM (launch bounds). */
template <qn_qformat F>
struct mq_xsrc {
    using blk = mq_xblk;
    __device__ static void load(const mq_args &a, int t, int64_t xb, blk &x) {
        const uint8_t *xp = reinterpret_cast<const uint8_t *>(a.xq + t * a.x_ld + 32 * xb);
        const uint4 v0 = mq_xmem::ld128(xp), v1 = mq_xmem::ld128(xp + 16);
        x.X[0] = v0.x, x.X[1] = v0.y, x.X[2] = v0.z, x.X[3] = v0.w;
        x.X[4] = v1.x, x.X[5] = v1.y, x.X[6] = v1.z, x.X[7] = v1.w;
        const uint2 rc = mq_xmem::ld64(reinterpret_cast<const uint8_t *>(a.xr + t * (a.x_ld / QN_MMVQ_QK) + xb));
        x.d = __uint_as_float(rc.x);
        x.s0 = (int)(int16_t)(rc.y & 0xFFFFu), x.s1 = (int)(int16_t)(rc.y >> 16);
    }
};

/* The formats that take x unquantized (kq_mmvq_takes_f16_x: F16/BF16 in float_mmvq.cu, LNF4/LFP4 in
 * lutq_mmvq.cu) read a block of one token's 32 fp16 activations: h[i] = columns 2i (low half), 2i + 1. */
struct mq_xh { uint32_t h[16]; };

struct mq_xsrc_f16 {
    using blk = mq_xh;
    __device__ static void load(const mq_args &a, int t, int64_t xb, blk &x) {
        const uint8_t *p = reinterpret_cast<const uint8_t *>(a.xh + t * a.x_ld + 32 * xb); /* 64-byte aligned */
        mq_words_a16<16, mq_xmem>(p, x.h); /* the kernel before's output: coherent loads (mq_xmem) */
    }
};

template <qn_qformat F, int NT>
struct mq_occupancy {
    static constexpr int CTAS = mq_min_ctas(mq_fmt<F>::UE, NT);
};

/* --- the activations in shared memory (XS) ---
 * Read from global memory, lane l's q8 blocks lie UE bytes from lane l + 1's: each 16-byte load of a
 * warp touches 8 (UE = 32) to 32 (UE = 128) cache lines, and at nt = 1 those wavefronts of L1 outnumber
 * the weights' own (Q2_K/Q3_K: about 3 to 1 by count). With XS the CTA first copies the token's q8 codes and
 * records into shared memory, each unit's P = UE / 16 pieces of 16 bytes at slots u P + ((k + rot(u)) mod P),
 * rot(u) = (u P / 8) mod P: the 8 lanes of a quarter warp reading piece k of 8 consecutive units then
 * hit 8 different bank groups (no conflict), and so do the copy's stores. Records (8 bytes, q8 block j
 * of unit u) at [j][u]: consecutive lanes, consecutive words. The copy is 1.25 K bytes per CTA from L2 (the
 * token's x is the same for every CTA). Only for Q2_K/Q3_K (mq_xs_want) at nt = 1, and where it fits beside
 * the kernel's static shared memory (mq_xs_bytes, the launcher's choice). */
template <int P>
__device__ __forceinline__ int mq_xs_slot(int u, int k) {
    return u * P + ((k + (u * P / 8)) & (P - 1));
}
/* The unit u and its block j of q8 block b of a row, for the formats whose xblock(u, j) is QB u + j (all but
 * Q6_K; mq_xs_want takes only such formats). */
template <qn_qformat F>
__device__ __forceinline__ void mq_xunit(int b, int &u, int &j) {
    constexpr int QB = mq_fmt<F>::UE / 32;
    u = b / QB, j = b - (b / QB) * QB;
}
__host__ __device__ constexpr int64_t mq_xs_bytes(int64_t K) { return K + K / 32 * 8; } /* codes, records */
#ifndef QN_MQ_XSMEM
#define QN_MQ_XSMEM 1 /* 0: x always from global memory (an A/B knob: -D) */
#endif

/* Every thread of the CTA: the token's x (a.xq, a.xr; K = a.K) into xs (mq_xs_bytes, 16-byte aligned).
 * Ends with every copy landed (and every earlier cp.async group of this thread too); the caller syncs. */
template <qn_qformat F>
__device__ __forceinline__ void mq_xs_fill(const mq_args &a, uint8_t *xs) {
    constexpr int P = mq_fmt<F>::UE / 16, RB = 4;
    const int K = (int)a.K, U = K / mq_fmt<F>::UE, nq = K / 16, nb = K / 32;
    const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(xs));
    const uint8_t *xq = reinterpret_cast<const uint8_t *>(a.xq);
    for (int q = threadIdx.x; q < nq; q += MQ_THREADS) {
        int u, j;
        mq_xunit<F>(q >> 1, u, j);
        qn_cp_async16_s(s + 16u * (uint32_t)mq_xs_slot<P>(u, 2 * j + (q & 1)), xq + 16 * (int64_t)q, 16u);
    }
    qn_cp_async_commit();
    const uint8_t *xr = reinterpret_cast<const uint8_t *>(a.xr);
    for (int b0 = threadIdx.x; b0 < nb; b0 += RB * MQ_THREADS) { /* RB loads in flight, then the stores */
        uint2 v[RB];
#pragma unroll
        for (int i = 0; i < RB; i++)
            if (b0 + i * MQ_THREADS < nb) v[i] = mq_xmem::ld64(xr + 8 * (int64_t)(b0 + i * MQ_THREADS));
#pragma unroll
        for (int i = 0; i < RB; i++) {
            const int b = b0 + i * MQ_THREADS;
            if (b < nb) {
                int u, j;
                mq_xunit<F>(b, u, j);
                *reinterpret_cast<uint2 *>(xs + K + 8 * (j * U + u)) = v[i];
            }
        }
    }
    qn_cp_async_wait<0>();
}

/* q8 block j of unit u (U units per row) from xs, as mq_xsrc<F>::load reads it from global memory. */
template <qn_qformat F>
__device__ __forceinline__ void mq_xs_load(const uint8_t *xs, int K, int u, int j, mq_xblk &x) {
    constexpr int P = mq_fmt<F>::UE / 16;
    const uint4 v0 = qn_lds128(xs + 16 * mq_xs_slot<P>(u, 2 * j));
    const uint4 v1 = qn_lds128(xs + 16 * mq_xs_slot<P>(u, 2 * j + 1));
    x.X[0] = v0.x, x.X[1] = v0.y, x.X[2] = v0.z, x.X[3] = v0.w;
    x.X[4] = v1.x, x.X[5] = v1.y, x.X[6] = v1.z, x.X[7] = v1.w;
    const uint2 rc = *reinterpret_cast<const uint2 *>(xs + K + 8 * (j * (K / mq_fmt<F>::UE) + u));
    x.d = __uint_as_float(rc.x);
    x.s0 = (int)(int16_t)(rc.y & 0xFFFFu), x.s1 = (int)(int16_t)(rc.y >> 16);
}
/* The formats whose one-token instances take x from shared memory: Q2_K/Q3_K, measured faster on the H200
 * (their 128-element units put lanes 128 bytes of x apart). On every q8 format, per CTA and as a persistent launch
 * (one copy of x per resident CTA), XS measured slower for the others, 8B Q4_K_M decode by 23-32%; why was not
 * profiled (bench/results/gpu-k23-2026-12-03.md; that A/B's code: commit f0764b2). */
template <qn_qformat F>
__host__ __device__ constexpr bool mq_xs_want() {
    return F == QN_QFORMAT_Q2_K || F == QN_QFORMAT_Q3_K || F == QN_QFORMAT_Q3_KP; /* q8 formats (mq_xsrc's mq_xblk) */
}

/* --- the kernel --- */

/* Reduce-scatter over the warp: v[P] per lane (P a power of two <= 32) -> the warp sum of v[i] for
 * i = lane >> (5 - log2 P), in every lane. Halving steps first (P - 1 shuffles instead of 5 P): at
 * offset O a lane keeps the upper half of its C values if (lane & O), the lower half otherwise, and
 * adds its partner's copy of that half. Recursion instead of a loop, so that every index is constant
 * (a loop over steps left acc[] in local memory for P = 32). */
template <int C, int O, int P>
__device__ __forceinline__ float mq_reduce_steps(float (&v)[P], int lane) {
    if constexpr (C > 1) {
        const bool up = (lane & O) != 0;
#pragma unroll
        for (int i = 0; i < C / 2; i++) {
            const float send = up ? v[i] : v[i + C / 2];
            const float keep = up ? v[i + C / 2] : v[i];
            v[i] = keep + __shfl_xor_sync(0xffffffffu, send, O);
        }
        return mq_reduce_steps<C / 2, O / 2, P>(v, lane);
    } else {
        float r = v[0];
#pragma unroll
        for (int o = O; o > 0; o >>= 1) r += __shfl_xor_sync(0xffffffffu, r, o);
        return r;
    }
}

template <int P>
__device__ __forceinline__ float mq_warp_reduce_scatter(float (&v)[P], int lane) {
    static_assert(P >= 1 && P <= 32 && (P & (P - 1)) == 0, "P must be a power of two <= 32");
    return mq_reduce_steps<P, 16, P>(v, lane);
}

template <int N>
struct mq_pow2 {
    static constexpr int P = N <= 1 ? 1 : N <= 2 ? 2 : N <= 4 ? 4 : N <= 8 ? 8 : N <= 16 ? 16 : 32;
};

/* --- staging ---
 * A warp's units of one loop step are 32 consecutive units of its rows: a chunk of mq_chunk_bytes<F>
 * contiguous bytes per row (8 Q6_K super-blocks, 32 Q8_0 blocks, ...). Read directly, each load instruction
 * of the warp touches a dozen cache lines (lanes one unit apart, 2- or 4-byte words for the 2-byte aligned
 * formats), and Q6_K ran near 50% of copy bandwidth. Staged, Q6_K measured 8-42% faster at the 8B shapes on
 * the H200 and Q8_0 up to 43%, while Q4_K, whose loads are 16-byte vectors already, gained little or lost
 * (bench/results/gpu-staged-2026-12-03.md). Staged, the warp copies its rows' next chunk into
 * its own shared memory with 16-byte cp.async while it decodes the current one from there: the global side
 * is a plain coalesced copy, the shared side the same loads as before, one wavefront each. Needs rows of a
 * multiple of 16 bytes (then every chunk starts and ends 16-byte aligned, the last one at the row's end;
 * mq_stage_ok), and fits where two chunks per row per warp stay within 48 KB (mq_stage_fits). */
template <qn_qformat F>
__host__ __device__ constexpr int mq_chunk_bytes() {
    using FT = mq_fmt<F>;
    return 32 * FT::UE / FT::BE * FT::BB; /* 32 units; a unit is a whole block or 1/2, 1/4 of one */
}
template <qn_qformat F, int NT>
__host__ __device__ constexpr int mq_stage_bytes() {
    return MQ_WARPS * 2 * mq_rows(F, mq_fmt<F>::UE, NT) * mq_chunk_bytes<F>();
}
template <qn_qformat F, int NT>
__host__ __device__ constexpr bool mq_stage_fits() {
    return mq_stage_bytes<F, NT>() <= 48 * 1024 && mq_chunk_bytes<F>() % 16 == 0;
}
__host__ __device__ constexpr bool mq_stage_ok(int64_t row_bytes) { return row_bytes % 16 == 0; }

/* --- the kernel --- */

/* One unit of R rows against every token: acc[r * NT + t] += dot. */
template <qn_qformat F, int NT, int R, int P, bool XS>
__device__ __forceinline__ void mq_unit_dots(const mq_args &a, int64_t u, const typename mq_fmt<F>::unit (&wu)[R],
                                             float (&acc)[P], const uint8_t *xs) {
    using FT = mq_fmt<F>;
#pragma unroll
    for (int j = 0; j < FT::UE / 32; j++) {
        const int64_t xb = FT::xblock(u, j);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            typename mq_xsrc<F>::blk x;
            if constexpr (XS) mq_xs_load<F>(xs, (int)a.K, (int)u, j, x); /* NT == 1 */
            else mq_xsrc<F>::load(a, t, xb, x);
#pragma unroll
            for (int r = 0; r < R; r++) acc[r * NT + t] += FT::dot(wu[r], j, x);
        }
    }
}

extern __shared__ __align__(16) uint8_t mq_xs_dyn[]; /* XS: mq_xs_bytes(K), the launch's dynamic shared memory */

/* persistent staged launches: 0 not built, 1 auto for Q2_K/Q3_K, 2 auto for all (kq_mmvq.cu). 1 by default since the
 * H200 A/B of 2026-12-05 (bench/results/gpu-persist-2026-12-05.md: Llama-3-8B-shape Q2_K tg128 448 -> 494 alone,
 * 520 with QN_Q3K_PAD; the same perplexity; test_gpu_quant and memcheck clean) */
#ifndef QN_MQ_PERSIST
#define QN_MQ_PERSIST 1
#endif

/* This warp's rows in row block v (the CTA index of a launch with one CTA per block): the matrix, its first row
 * (mq_kernel's own selection, for the persistent loop). */
struct mq_rows_of {
    const uint8_t *w;
    float *y;
    int64_t N, row0;
};
template <int R>
__device__ __forceinline__ mq_rows_of mq_locate(const mq_args &a, int64_t v, int warp, int W) {
    mq_rows_of o = {a.m[0].w, a.m[0].y, a.m[0].N, 0};
    int64_t cta = v;
#pragma unroll
    for (int i = 1; i < KQ_MMVQ_MAX_MATS; i++) /* selects, no indexing into the parameters */
        if (i < a.n_mat && v >= a.m[i].cta0) o.w = a.m[i].w, o.y = a.m[i].y, o.N = a.m[i].N, cta = v - a.m[i].cta0;
    o.row0 = (cta * (MQ_WARPS / W) + warp / W) * R;
    return o;
}

/* The warp's sums of rows row0 .. row0 + R - 1 (acc, destroyed) to y, for W = 1. */
template <int R, int NT, int P>
__device__ __forceinline__ void mq_store_w1(float (&acc)[P], const mq_rows_of &o, int lane) {
    const float s = mq_warp_reduce_scatter<P>(acc, lane);
    const int i = lane / (32 / P);
    const int64_t row = o.row0 + i / NT;
    if (lane % (32 / P) == 0 && i < R * NT && row < o.N) o.y[(int64_t)(i % NT) * o.N + row] = s;
}

/* --- persistent staged launches (a.n_vcta > 0; W = 1) ---
 * Compiled in only with QN_MQ_PERSIST > 0 (default 1: Q2_K/Q3_K only; 2: every format, an A/B knob not yet measured
 * on Q4_K..Q8_0; H200 A/B, bench/results/gpu-persist-2026-12-05.md: 8B Q2_K mix tg128 448 -> 494 t/s; with the branch
 * in, the staged one-block-per-CTA instances take more registers, e.g. Q2_K's 93 -> 102).
 * A short row (K = 4096 is one staging chunk of Q2_K/Q3_K) gives each warp of a one-block-per-CTA launch a
 * single chunk: the copy of x (XS), the set-up and the reduction then cost about as many instructions as the
 * dots (Nsight Compute, 8B Q2_K gate+up: 854 instructions per warp for two row-units; issue 0.55 per
 * scheduler-cycle), and nothing overlaps a warp's weight loads with its arithmetic. Here a grid of the CTAs
 * that fit the GPU at once takes row blocks v = blockIdx.x, + gridDim.x, ... (< n_vcta, the one-per-CTA
 * grid), and each warp's staging runs one chunk ahead across them: the next block's first chunk streams in
 * while the last chunk of this one is decoded. Each row's units are summed in the order of the plain staged
 * kernel (W = 1): the same bits. */
template <qn_qformat F, int NT, int R, int P, bool XS>
__device__ __forceinline__ void mq_persist(const mq_args &a, uint8_t *mine, int warp, int lane) {
    using FT = mq_fmt<F>;
    constexpr int CB = mq_chunk_bytes<F>();
    const uint32_t s_mine = static_cast<uint32_t>(__cvta_generic_to_shared(mine));
    const int64_t units = a.K / FT::UE, n_chunks = (units + 31) / 32;
    /* staging side: block sv, chunk sc; compute side: block cv, chunk cc (one item behind) */
    int64_t sv = blockIdx.x, sc = 0, cv = blockIdx.x, cc = 0;
    mq_rows_of S = mq_locate<R>(a, sv, warp, 1), C = S;
    auto stage = [&](int buf) { /* the next item into buf, then one commit (also with nothing to copy) */
        if (sv < a.n_vcta && S.row0 < S.N) {
            const int64_t off = sc * CB;
            const int bytes = (int)min((int64_t)CB, a.row_bytes - off); /* a multiple of 16 */
#pragma unroll
            for (int r = 0; r < R; r++) {
                const uint8_t *src = S.w + min(S.row0 + r, S.N - 1) * a.row_bytes + off; /* rows past N: recomputed */
                for (int i = 16 * lane; i < bytes; i += 16 * 32)
                    qn_cp_async16_s(s_mine + (uint32_t)((buf * R + r) * CB + i), src + i, 16u);
            }
        }
        qn_cp_async_commit();
        if (++sc == n_chunks) {
            sc = 0, sv += gridDim.x;
            if (sv < a.n_vcta) S = mq_locate<R>(a, sv, warp, 1);
        }
    };
    stage(0);
    if constexpr (XS) { /* the first chunk streams in meanwhile */
        qn_pdl_wait();
        mq_xs_fill<F>(a, mq_xs_dyn);
        __syncthreads();
    }
    float acc[P];
#pragma unroll
    for (int i = 0; i < P; i++) acc[i] = 0.f;
    int buf = 0;
#pragma unroll 1
    while (cv < a.n_vcta) {
        __syncwarp();          /* every lane is done with the other buffer (the item before) */
        stage(buf ^ 1);        /* the next item streams in while this one is decoded */
        qn_cp_async_wait<1>(); /* this lane's copies of this item have landed */
        __syncwarp();          /* ... and every other lane's */
        const int64_t u = 32 * cc + lane;
        if (C.row0 < C.N && u < units) {
            typename FT::unit wu[R];
#pragma unroll
            for (int r = 0; r < R; r++) FT::template load<mq_smem>(mine + (buf * R + r) * CB, lane, wu[r]);
            qn_pdl_wait(); /* x is the kernel before's output; the weights were not */
            mq_unit_dots<F, NT, R, P, XS>(a, u, wu, acc, mq_xs_dyn);
        }
        if (++cc == n_chunks) { /* the block's rows are summed: store them, go on to the next block */
            qn_pdl_wait();      /* no write before the kernel before has completed */
            mq_store_w1<R, NT, P>(acc, C, lane);
#pragma unroll
            for (int i = 0; i < P; i++) acc[i] = 0.f;
            cc = 0, cv += gridDim.x;
            if (cv < a.n_vcta) C = mq_locate<R>(a, cv, warp, 1);
        }
        buf ^= 1;
    }
    qn_cp_async_wait<0>(); /* nothing left in flight */
    qn_pdl_wait();         /* a CTA with no block: none of its writes come before the kernel before completes */
}

/* ST: the staged variant (above; the launcher takes it when asked to, where mq_stage_ok and an instance
 * exists). XS: x from shared memory (above; nt = 1). All variants do the same arithmetic in the same
 * order: bit-identical outputs. */
template <qn_qformat F, int NT, bool ST, bool XS>
__global__ void __launch_bounds__(MQ_THREADS, (mq_occupancy<F, NT>::CTAS)) mq_kernel(const mq_args a) {
    using FT = mq_fmt<F>;
    constexpr int R = mq_rows(F, FT::UE, NT), P = mq_pow2<R * NT>::P, CB = mq_chunk_bytes<F>();
    static_assert(R * NT <= 32, "one warp reduce-scatter");
    static_assert(!ST || mq_stage_fits<F, NT>(), "staged instance that does not fit");
    static_assert(!XS || (NT == 1 && mq_xs_want<F>()), "x in shared memory: Q2_K/Q3_K at one token");
    __shared__ float red[MQ_WARPS][P];
    __shared__ __align__(16) uint8_t stage_buf[ST ? mq_stage_bytes<F, NT>() : 16]; /* [warp][2][R][CB] */

    qn_pdl_trigger(); /* the next kernel (launched with PDL) may start streaming its own weights */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, W = a.warps_per_row;
    if constexpr (ST && QN_MQ_PERSIST > 0) {
        if (a.n_vcta > 0) { /* W = 1 (the launcher's promise) */
            mq_persist<F, NT, R, P, XS>(a, stage_buf + warp * 2 * R * CB, warp, lane);
            return;
        }
    }
    /* this CTA's matrix (selects, no indexing into the parameters) */
    const uint8_t *wm = a.m[0].w;
    float *ym = a.m[0].y;
    int64_t N = a.m[0].N, cta = blockIdx.x;
#pragma unroll
    for (int i = 1; i < KQ_MMVQ_MAX_MATS; i++)
        if (i < a.n_mat && (int64_t)blockIdx.x >= a.m[i].cta0) wm = a.m[i].w, ym = a.m[i].y, N = a.m[i].N, cta = blockIdx.x - a.m[i].cta0;
    const int grp = warp / W, wig = warp - grp * W;
    const int64_t row0 = (cta * (MQ_WARPS / W) + grp) * R;
    const int64_t units = row0 < N ? a.K / FT::UE : 0; /* a group wholly past N does no work */

    const uint8_t *wrow[R];
#pragma unroll
    for (int r = 0; r < R; r++) wrow[r] = wm + min(row0 + r, N - 1) * a.row_bytes; /* rows past N: recomputed, not stored */

    float acc[P];
#pragma unroll
    for (int i = 0; i < P; i++) acc[i] = 0.f;

    if constexpr (ST) {
        /* chunks c = wig, wig + W, ... (units 32c .. 32c + 31); buffer c's step parity; one chunk ahead */
        uint8_t *const mine = stage_buf + warp * 2 * R * CB;
        const uint32_t s_mine = static_cast<uint32_t>(__cvta_generic_to_shared(mine));
        const int64_t n_chunks = (units + 31) / 32;
        auto stage = [&](int64_t c, int buf) { /* then one commit, also when there is nothing to copy */
            if (c < n_chunks) {
                const int64_t off = c * CB;
                const int bytes = (int)min((int64_t)CB, a.row_bytes - off); /* a multiple of 16 */
#pragma unroll
                for (int r = 0; r < R; r++)
                    for (int i = 16 * lane; i < bytes; i += 16 * 32)
                        qn_cp_async16_s(s_mine + (uint32_t)((buf * R + r) * CB + i), wrow[r] + off + i, 16u);
            }
            qn_cp_async_commit();
        };
        stage(wig, 0);
        if constexpr (XS) { /* the first chunk streams in meanwhile */
            qn_pdl_wait();
            mq_xs_fill<F>(a, mq_xs_dyn);
            __syncthreads();
        }
        int buf = 0;
#pragma unroll 1
        for (int64_t c = wig; c < n_chunks; c += W, buf ^= 1) {
            __syncwarp();             /* every lane is done with the other buffer (the step before) */
            stage(c + W, buf ^ 1);    /* the next chunk streams in while this one is decoded */
            qn_cp_async_wait<1>();    /* this lane's copies of chunk c have landed */
            __syncwarp();             /* ... and every other lane's */
            const int64_t u = 32 * c + lane;
            if (u < units) {
                typename FT::unit wu[R];
#pragma unroll
                for (int r = 0; r < R; r++) FT::template load<mq_smem>(mine + (buf * R + r) * CB, lane, wu[r]);
                qn_pdl_wait(); /* x is the kernel before's output; the weights were not */
                mq_unit_dots<F, NT, R, P, XS>(a, u, wu, acc, mq_xs_dyn);
            }
        }
        qn_cp_async_wait<0>(); /* nothing left in flight when the warp moves on */
    } else {
        if constexpr (XS) {
            const int64_t u0 = 32 * wig + lane; /* its first block on its way to L2 while x is copied */
            if (u0 < units)
#pragma unroll
                for (int r = 0; r < R; r++)
                    asm volatile("prefetch.global.L2 [%0];" ::"l"(wrow[r] + u0 * FT::UE / FT::BE * FT::BB));
            qn_pdl_wait();
            mq_xs_fill<F>(a, mq_xs_dyn);
            __syncthreads();
        }
#pragma unroll 1
        for (int64_t u = 32 * wig + lane; u < units; u += 32 * W) {
            typename FT::unit wu[R];
#pragma unroll
            for (int r = 0; r < R; r++) FT::template load<mq_gmem>(wrow[r], u, wu[r]);
            /* x is the kernel before's output (PDL): the wait precedes its loads. ptxas places the wait ahead of
             * the weight loads too (SASS), so those do not overlap the kernel before; the staged variant's
             * cp.async copies do. Later iterations find the wait satisfied. (Loading 2 or 4 units per lane
             * before computing gained nothing: bench/results/gpu-decode-step-2026-12-02.md; L1/L2 prefetches
             * before the wait cost 1-7% end to end: bench/results/gpu-fixed-cost-2026-12-03.md.) */
            qn_pdl_wait();
            mq_unit_dots<F, NT, R, P, XS>(a, u, wu, acc, mq_xs_dyn);
        }
    }

    qn_pdl_wait(); /* a warp with no units: no write before the kernel before has completed */
    /* lane holds the warp's sum of value i = lane >> (5 - log2 P); lanes lane % (32 / P) == 0 write it */
    const float s = mq_warp_reduce_scatter<P>(acc, lane);
    const int i = lane / (32 / P);
    const bool writer = lane % (32 / P) == 0 && i < R * NT;
    if (W == 1) {
        const int64_t row = row0 + i / NT;
        if (writer && row < N) ym[(int64_t)(i % NT) * N + row] = s;
        return;
    }
    if (writer) red[warp][i] = s;
    __syncthreads();
    const int per_grp = R * NT, n_out = (MQ_WARPS / W) * per_grp;
    for (int o = threadIdx.x; o < n_out; o += MQ_THREADS) {
        const int g = o / per_grp, k = o - g * per_grp;
        float sum = 0.f;
        for (int ww = 0; ww < W; ww++) sum += red[g * W + ww][k]; /* fixed order: deterministic */
        const int64_t row = (cta * (MQ_WARPS / W) + g) * R + k / NT;
        if (row < N) ym[(int64_t)(k % NT) * N + row] = sum;
    }
}

/* --- host side: the instance table of one translation unit --- */
typedef void (*mq_kernel_fn)(mq_args);

/* Static shared memory of an instance (the launcher adds XS's dynamic bytes within 48 KB). */
template <qn_qformat F, int NT, bool ST>
constexpr int mq_static_smem() {
    return MQ_WARPS * mq_pow2<mq_rows(F, mq_fmt<F>::UE, NT) * NT>::P * 4 + (ST ? mq_stage_bytes<F, NT>() : 16) + 16;
}

template <qn_qformat F, int NT, bool XS>
mq_kernel_fn mq_instance_xs(bool staged, int *smem) {
    if constexpr (mq_stage_fits<F, NT>()) {
        if (staged) {
            *smem = mq_static_smem<F, NT, true>();
            return mq_kernel<F, NT, true, XS>;
        }
    }
    if (staged) return nullptr;
    *smem = mq_static_smem<F, NT, false>();
    return mq_kernel<F, NT, false, XS>;
}
template <qn_qformat F, int NT>
mq_kernel_fn mq_instance_nt(bool staged, bool xs, int *smem) {
    if constexpr (NT == 1 && mq_xs_want<F>()) {
        if (xs) return mq_instance_xs<F, NT, true>(staged, smem);
    }
    return xs ? nullptr : mq_instance_xs<F, NT, false>(staged, smem);
}

/* The kernel of (F, nt) reading weights directly, or staged, taking x from global or shared memory (xs);
 * NULL where no such instance exists. *smem: its static shared memory, bytes. */
template <qn_qformat F>
mq_kernel_fn mq_instance(int nt, bool staged, bool xs, int *smem) {
    switch (nt) {
    case 1: return mq_instance_nt<F, 1>(staged, xs, smem);
    case 2: return mq_instance_nt<F, 2>(staged, xs, smem);
    case 3: return mq_instance_nt<F, 3>(staged, xs, smem);
    case 4: return mq_instance_nt<F, 4>(staged, xs, smem);
    case 5: return mq_instance_nt<F, 5>(staged, xs, smem);
    case 6: return mq_instance_nt<F, 6>(staged, xs, smem);
    case 7: return mq_instance_nt<F, 7>(staged, xs, smem);
    case 8: return mq_instance_nt<F, 8>(staged, xs, smem);
    default: return nullptr;
    }
}

/* Elements per unit of fmt (legacy, F16/BF16 32, Q4_K/Q5_K/Q6_K 64, Q2_K/Q3_K 128), 0 if not a decode-kernel format. */
int mq_unit_elems(qn_qformat fmt);
/* The kernel of (fmt, nt), or NULL: kq_mmvq.cu holds the legacy formats, kq_mmvq_k.cu the K-quants,
 * lutq_mmvq.cu the GPTQ/AWQ/bnb device blocks (lutq_gpu.h), float_mmvq.cu F16/BF16. */
mq_kernel_fn mq_legacy_instance(qn_qformat fmt, int nt, bool staged, bool xs, int *smem);
mq_kernel_fn mq_kquant_instance(qn_qformat fmt, int nt, bool staged, bool xs, int *smem);
mq_kernel_fn mq_lutq_instance(qn_qformat fmt, int nt, bool staged, bool xs, int *smem);
mq_kernel_fn mq_float_instance(qn_qformat fmt, int nt, bool staged, bool xs, int *smem);

#endif /* QN_KQ_MMVQ_CUH */
