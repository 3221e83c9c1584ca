/* lutq_mmvq.cu — the decode path of the GPTQ/AWQ/bnb device blocks (lutq_gpu.h) on the int8 decode kernel
 * (kq_mmvq.cuh): its mq_fmt traits for LQ4/LQ8/LNF4/LFP4 and their instances, nt = 1..8.
 *
 *   LQ4, LQ8:   integer codes, so x goes through the q8 quantizer (kq_mmvq.h) and a block gives
 *               d_w d_x (sum_j q_j x8_j - z sum_j x8_j): the integer part exact (__dp4a), the scales in f32.
 *               The weights used are d (q - z) unrounded, not the fp16 dequant fp16(d (q - z)).
 *   LNF4, LFP4: the values are a table of 16 floats, which int8 would change; x stays fp16 (mq_xsrc below),
 *               each code is looked up in the table rounded to fp16 (byte permutations, kq_lut16_4), 16
 *               HFMA2 per block and token sum the 32 products in fp16 (16 terms per half), then the block
 *               sum goes to f32 and meets the f32 absmax once: y = sum_b a_b (f32(s_even) + f32(s_odd)).
 *               Rounding: table 2^-11 relative, products and the 16-term fp16 sums (worst case
 *               ~16 * 2^-11 of sum |map x| of the block, typical ~2^-11); a block sum over 65504 overflows
 *               (|x| > ~4000 on all 16 columns of a half: no real activation comes near).
 * Layouts (lutq_gpu.h): LQ4 d @0 | zb @2 | qs[16] @4 (Q4_1's nibble order), LQ8 d @0 | zb @2 | qs[32] @4,
 * LNF4/LFP4 a f32 @0 | qs[16] @4 (word w = columns 8w..8w+7, nibble e = column 8w + e); all 4-byte
 * aligned (20 or 36-byte blocks from a 16-byte aligned base), read as words. */
#include <stdint.h>

#include <cuda_fp16.h>

#include "kernels/quant/gguf/kq_mmvq.cuh"
#include "kernels/quant/lutq_gpu.h"

/* (1024 + z) stored as fp16 bits: z = that value - 1024, exact for any code offset the repack writes */
__device__ __forceinline__ int mq_lq_zero(uint32_t zb) { return (int)(mq_f16(zb) - 1024.0f); }

template <>
struct mq_fmt<QN_QFORMAT_LQ4> {
    static constexpr int UE = 32, BB = 20, BE = 32;
    struct unit { uint32_t q[4]; float d; int z; };
    __device__ static int64_t xblock(int64_t u, int j) { return u; }
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + u * BB;
        const uint32_t dz = M::ld32(b);
        w.d = mq_f16(dz), w.z = mq_lq_zero(dz >> 16);
        mq_words_a4<4, M>(b + 4, w.q);
    }
    __device__ static float dot(const unit &w, int j, const mq_xblk &x) {
        return w.d * x.d * (float)(mq_dot_legacy4<false>(w.q, 0u, x.X) - w.z * (x.s0 + x.s1));
    }
};

/* Codes 0..255 meet the signed q8 as q - 128 (byte xor 0x80, a signed byte for __dp4a), so
 * sum q x = sum (q - 128) x + 128 sum x. */
template <>
struct mq_fmt<QN_QFORMAT_LQ8> {
    static constexpr int UE = 32, BB = 36, BE = 32;
    struct unit { uint32_t q[8]; float d; int z; };
    __device__ static int64_t xblock(int64_t u, int j) { return u; }
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + u * BB;
        const uint32_t dz = M::ld32(b);
        w.d = mq_f16(dz), w.z = mq_lq_zero(dz >> 16);
        mq_words_a4<8, M>(b + 4, w.q);
    }
    __device__ static float dot(const unit &w, int j, const mq_xblk &x) {
        auto code = [&](int i) { return w.q[i] ^ 0x80808080u; };
        const int s = mq_dot4(x.X, 0, code) + mq_dot4(x.X, 4, code);
        return w.d * x.d * (float)(s + (128 - w.z) * (x.s0 + x.s1));
    }
};

/* --- LNF4 / LFP4: fp16 x and a 16-entry fp16 table --- */

/* fp16 bits of v, round to nearest even, at compile time (v 0 or in fp16's normal range, as the table
 * entries are: |v| >= 0.0052). Exact in double: v has 24 significant bits. Zero gives +0. */
__host__ __device__ constexpr uint32_t mq_f16_bits(float v) {
    if (v == 0.0f) return 0u;
    const uint32_t sign = v < 0.0f ? 0x8000u : 0u;
    double m = v < 0.0f ? -(double)v : (double)v;
    int e = 0;
    while (m >= 2.0) m /= 2.0, e++;
    while (m < 1.0) m *= 2.0, e--;
    const double f = (m - 1.0) * 1024.0;
    uint32_t q = (uint32_t)f;
    const double r = f - (double)q;
    if (r > 0.5 || (r == 0.5 && (q & 1u))) q++;
    return sign | (((uint32_t)(e + 15) << 10) + q); /* q == 1024 carries into the exponent */
}

/* The table as kq_lut16_4 takes it: L[i] byte j = low byte of entry 4i + j, H the high bytes. */
struct mq_lut16 { uint32_t L[4], H[4]; };
template <typename Map>
__device__ constexpr mq_lut16 mq_bnb4_table() {
    mq_lut16 t{};
    for (int c = 0; c < 16; c++) {
        const uint32_t b = mq_f16_bits(Map::v(c));
        t.L[c / 4] |= (b & 0xFFu) << (8 * (c % 4));
        t.H[c / 4] |= (b >> 8) << (8 * (c % 4));
    }
    return t;
}

template <>
struct mq_xsrc<QN_QFORMAT_LNF4> : mq_xsrc_f16 {};
template <>
struct mq_xsrc<QN_QFORMAT_LFP4> : mq_xsrc_f16 {};

/* The decoded unit (16 words per row) is kept across the tokens: at nt >= 4 (4 rows) that is ~150
 * registers, so 2 CTAs per SM as the K-quants; 4 below. */
template <int NT>
struct mq_occupancy<QN_QFORMAT_LNF4, NT> {
    static constexpr int CTAS = NT <= 3 ? 4 : 2;
};
template <int NT>
struct mq_occupancy<QN_QFORMAT_LFP4, NT> {
    static constexpr int CTAS = NT <= 3 ? 4 : 2;
};

template <typename Map>
struct mq_fmt_bnb4 {
    static constexpr int UE = 32, BB = 20, BE = 32;
    struct unit { uint32_t h[16]; float a; }; /* h[i]: fp16 table values of columns 2i, 2i + 1 */
    __device__ static int64_t xblock(int64_t u, int j) { return u; }
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        constexpr mq_lut16 T = mq_bnb4_table<Map>();
        const uint32_t L[4] = {T.L[0], T.L[1], T.L[2], T.L[3]}, H[4] = {T.H[0], T.H[1], T.H[2], T.H[3]};
        uint32_t W[5];
        mq_words_a4<5, M>(row + u * BB, W);
        w.a = __uint_as_float(W[0]);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            kq_lut16_4(L, H, W[1 + i], w.h[4 * i + 0], w.h[4 * i + 1]);       /* columns 8i .. 8i+3 */
            kq_lut16_4(L, H, W[1 + i] >> 16, w.h[4 * i + 2], w.h[4 * i + 3]); /* columns 8i+4 .. 8i+7 */
        }
    }
    __device__ static float dot(const unit &w, int j, const mq_xh &x) {
        __half2 s = __hmul2(*reinterpret_cast<const __half2 *>(&w.h[0]), *reinterpret_cast<const __half2 *>(&x.h[0]));
#pragma unroll
        for (int i = 1; i < 16; i++)
            s = __hfma2(*reinterpret_cast<const __half2 *>(&w.h[i]), *reinterpret_cast<const __half2 *>(&x.h[i]), s);
        const float2 f = __half22float2(s);
        return w.a * (f.x + f.y);
    }
};
template <>
struct mq_fmt<QN_QFORMAT_LNF4> : mq_fmt_bnb4<kq_map_nf4> {};
template <>
struct mq_fmt<QN_QFORMAT_LFP4> : mq_fmt_bnb4<kq_map_fp4> {};

mq_kernel_fn mq_lutq_instance(qn_qformat fmt, int nt, bool staged, bool xs, int *smem) {
    switch (fmt) {
    case QN_QFORMAT_LQ4: return mq_instance<QN_QFORMAT_LQ4>(nt, staged, xs, smem);
    case QN_QFORMAT_LQ8: return mq_instance<QN_QFORMAT_LQ8>(nt, staged, xs, smem);
    case QN_QFORMAT_LNF4: return mq_instance<QN_QFORMAT_LNF4>(nt, staged, xs, smem);
    case QN_QFORMAT_LFP4: return mq_instance<QN_QFORMAT_LFP4>(nt, staged, xs, smem);
    default: return nullptr;
    }
}
