/* kq_decode.cuh — per-format decoders of ggml blocks into fp16 tensor-core A fragments.
 * Owns: kq_fmt<F>, the geometry of each format as the CUDA kernels stage and walk it, and its
 * decode() from shared memory. Not: the block layouts (gguf_blocks.h, formats.md §2) or the kernels.
 *
 * The walk (kq_kernel.cuh): a warp owns 16 weight rows; per pipeline stage it covers SK = 4*LE
 * elements of each row, lane quad position q (= lane%4) taking LE of them as SUB = LE/32 sub-chunks
 * of 32 contiguous elements, starting at sub_k(q, s). decode() turns one sub-chunk of one row into
 * h[16] = 16 half2 in natural k order: run r (elements 8r..8r+7 of the sub-chunk) is h[4r..4r+3].
 * The activations are staged in the same order, so the mma k-index matches (device_util.cuh).
 *
 * Values: each code goes to fp16 as 1024 + code (the byte 0x64 above it: exact), the offset is
 * taken off exactly (HSUB2), then one HMUL2/HFMA2 with the fp16 scale. Symmetric formats round once
 * (bit-equal to fp16(ref)); affine and K-quant scales (d*sc, dmin*m) are rounded to fp16 first, so
 * those differ from fp16(ref) by a few ulp. Dequantized weights must fit fp16 (|w| < 65504), as in
 * ggml-cuda's fp16 paths; real GGUF weights do. */
#ifndef QN_KQ_DECODE_CUH
#define QN_KQ_DECODE_CUH

#include <stdint.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/common/device_util.cuh"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/qformat.h"

/* --- helpers --- */

/* half2 constant from an fp16 bit pattern, both halves */
__device__ __forceinline__ __half2 kq_h2c(uint32_t bits) { return qn_bits_h2(bits | (bits << 16)); }

/* 4 byte codes (each <= 255) -> two half2 (1024 + c0, 1024 + c1), (1024 + c2, 1024 + c3) */
__device__ __forceinline__ void kq_codes_h2(uint32_t c, __half2 &h01, __half2 &h23) {
    h01 = qn_bits_h2(__byte_perm(c, 0x64646464u, 0x4140));
    h23 = qn_bits_h2(__byte_perm(c, 0x64646464u, 0x4342));
}

/* NW little-endian words starting at a 2-byte aligned shared address. Reads NW+1 aligned words
 * (up to 2 bytes past the end: the row slots are padded for it). */
template <int NW>
__device__ __forceinline__ void kq_words_a2(const uint8_t *p, uint32_t out[NW]) {
    const uint32_t *a = reinterpret_cast<const uint32_t *>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t(3));
    const uint32_t sh = (uint32_t)(reinterpret_cast<uintptr_t>(p) & 2u) * 8u;
    uint32_t w[NW + 1];
#pragma unroll
    for (int i = 0; i <= NW; i++) w[i] = a[i];
#pragma unroll
    for (int i = 0; i < NW; i++) out[i] = __funnelshift_r(w[i], w[i + 1], sh);
}

template <int NW>
__device__ __forceinline__ void kq_words_a4(const uint8_t *p, uint32_t out[NW]) {
    const uint32_t *a = reinterpret_cast<const uint32_t *>(p);
#pragma unroll
    for (int i = 0; i < NW; i++) out[i] = a[i];
}

template <int NW>
__device__ __forceinline__ void kq_words_a16(const uint8_t *p, uint32_t out[NW]) {
    static_assert(NW % 4 == 0, "whole 16-byte vectors");
#pragma unroll
    for (int i = 0; i < NW / 4; i++) {
        const uint4 v = qn_lds128(p + 16 * i);
        out[4 * i + 0] = v.x; out[4 * i + 1] = v.y; out[4 * i + 2] = v.z; out[4 * i + 3] = v.w;
    }
}

/* two bf16 (one word, low half first) -> two fp16: bf16 -> f32 is exact, f32 -> fp16 rounds once
 * (exact for |w| in fp16's normal range). Shared by kq_fmt<BF16>::decode and the elementwise dequant. */
__device__ __forceinline__ uint32_t kq_bf16x2_to_h2(uint32_t v) {
    return qn_h2_bits(__floats2half2_rn(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u)));
}

__device__ __forceinline__ uint16_t kq_u16(const uint8_t *p) { return *reinterpret_cast<const uint16_t *>(p); }
__device__ __forceinline__ __half2 kq_f16x2(uint16_t bits) { return kq_h2c(bits); }

/* bits 0..3 of n -> bit 4 of bytes 0..3 (no carries: the partial products land on distinct bits) */
__device__ __forceinline__ uint32_t kq_spread4_bit4(uint32_t n) { return (n * 0x02040810u) & 0x10101010u; }

/* Word i (0..7) of a 32-element sub-chunk holds elements 4i..4i+3: run i/2, pairs 2(i%2), 2(i%2)+1.
 * Applies y = f(1024 + code) to both pairs. */
template <typename Fn>
__device__ __forceinline__ void kq_emit_word(uint32_t h[16], int i, uint32_t codes, Fn f) {
    __half2 a, b;
    kq_codes_h2(codes, a, b);
    h[4 * (i >> 1) + 2 * (i & 1) + 0] = qn_h2_bits(f(a));
    h[4 * (i >> 1) + 2 * (i & 1) + 1] = qn_h2_bits(f(b));
}

/* K-quant 6-bit scale/min pair j (0..7) of Q4_K/Q5_K (formats.md §2.2, get_scale_min_k4).
 * Branch-free: j differs between the lanes of a warp. */
__device__ __forceinline__ void kq_scale_min_k4(int j, const uint8_t *S, int &sc, int &mn) {
    const int A = S[j], B = S[j + 4], C = S[j & 3]; /* C = S[j-4] for j >= 4 */
    const bool lo = j < 4;
    sc = lo ? (A & 63) : ((B & 0xF) | ((C >> 6) << 4));
    mn = lo ? (B & 63) : ((B >> 4) | ((A >> 6) << 4));
}

/* --- format traits ---
 * BE/BB: block elements/bytes. LE: elements per lane per stage (SUB = LE/32 sub-chunks).
 * SK = 4*LE: elements of a row per stage. ALIGN: the smallest alignment of a block start in the
 * shared row slot (w 16-byte aligned; a slot keeps the global address mod 16). */
template <qn_qformat F>
struct kq_fmt;

template <>
struct kq_fmt<QN_QFORMAT_F16> {
    static constexpr int BE = 1, BB = 2, LE = 32, SUB = 1, SK = 4 * LE, ALIGN = 16;
    __device__ static int sub_k(int q, int s) { return 32 * q; }
    __device__ static void decode(const uint8_t *row, int q, int s, uint32_t h[16]) {
        kq_words_a16<16>(row + 64 * q, h);
    }
};

template <>
struct kq_fmt<QN_QFORMAT_BF16> {
    static constexpr int BE = 1, BB = 2, LE = 32, SUB = 1, SK = 4 * LE, ALIGN = 16;
    __device__ static int sub_k(int q, int s) { return 32 * q; }
    __device__ static void decode(const uint8_t *row, int q, int s, uint32_t h[16]) {
        kq_words_a16<16>(row + 64 * q, h);
#pragma unroll
        for (int i = 0; i < 16; i++) h[i] = kq_bf16x2_to_h2(h[i]);
    }
};

/* Legacy 32-element blocks: lane q takes blocks q and q+4 of the stage's 8. */
template <>
struct kq_fmt<QN_QFORMAT_Q4_0> {
    static constexpr int BE = 32, BB = 18, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 2;
    __device__ static int sub_k(int q, int s) { return 32 * (q + 4 * s); }
    __device__ static void decode(const uint8_t *row, int q, int s, uint32_t h[16]) {
        const uint8_t *b = row + BB * (q + 4 * s);
        const __half2 d = kq_f16x2(kq_u16(b));
        uint32_t Q[4];
        kq_words_a2<4>(b + 2, Q);
        auto f = [d](__half2 v) { return __hmul2(__hsub2(v, kq_h2c(0x6408)), d); }; /* (c - 8) d */
#pragma unroll
        for (int j = 0; j < 4; j++) {
            kq_emit_word(h, j, Q[j] & 0x0F0F0F0Fu, f);            /* elements 4j.. */
            kq_emit_word(h, 4 + j, (Q[j] >> 4) & 0x0F0F0F0Fu, f); /* elements 16+4j.. */
        }
    }
};

template <>
struct kq_fmt<QN_QFORMAT_Q4_1> {
    static constexpr int BE = 32, BB = 20, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 4;
    __device__ static int sub_k(int q, int s) { return 32 * (q + 4 * s); }
    __device__ static void decode(const uint8_t *row, int q, int s, uint32_t h[16]) {
        const uint8_t *b = row + BB * (q + 4 * s);
        uint32_t W[5];
        kq_words_a4<5>(b, W);
        const __half2 d = kq_f16x2((uint16_t)W[0]), m = kq_f16x2((uint16_t)(W[0] >> 16));
        auto f = [d, m](__half2 v) { return __hfma2(__hsub2(v, kq_h2c(0x6400)), d, m); }; /* c d + m */
#pragma unroll
        for (int j = 0; j < 4; j++) {
            kq_emit_word(h, j, W[1 + j] & 0x0F0F0F0Fu, f);
            kq_emit_word(h, 4 + j, (W[1 + j] >> 4) & 0x0F0F0F0Fu, f);
        }
    }
};

template <>
struct kq_fmt<QN_QFORMAT_Q5_0> {
    static constexpr int BE = 32, BB = 22, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 2;
    __device__ static int sub_k(int q, int s) { return 32 * (q + 4 * s); }
    __device__ static void decode(const uint8_t *row, int q, int s, uint32_t h[16]) {
        const uint8_t *b = row + BB * (q + 4 * s);
        const __half2 d = kq_f16x2(kq_u16(b));
        uint32_t W[5]; /* qh, qs[0..15] */
        kq_words_a2<5>(b + 2, W);
        const uint32_t qh = W[0];
        auto f = [d](__half2 v) { return __hmul2(__hsub2(v, kq_h2c(0x6410)), d); }; /* (c - 16) d */
#pragma unroll
        for (int j = 0; j < 4; j++) {
            kq_emit_word(h, j, (W[1 + j] & 0x0F0F0F0Fu) | kq_spread4_bit4((qh >> (4 * j)) & 0xF), f);
            kq_emit_word(h, 4 + j,
                         ((W[1 + j] >> 4) & 0x0F0F0F0Fu) | kq_spread4_bit4((qh >> (16 + 4 * j)) & 0xF), f);
        }
    }
};

template <>
struct kq_fmt<QN_QFORMAT_Q5_1> {
    static constexpr int BE = 32, BB = 24, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 8;
    __device__ static int sub_k(int q, int s) { return 32 * (q + 4 * s); }
    __device__ static void decode(const uint8_t *row, int q, int s, uint32_t h[16]) {
        const uint8_t *b = row + BB * (q + 4 * s);
        uint32_t W[6]; /* d|m, qh, qs[0..15] */
        kq_words_a4<6>(b, W);
        const __half2 d = kq_f16x2((uint16_t)W[0]), m = kq_f16x2((uint16_t)(W[0] >> 16));
        const uint32_t qh = W[1];
        auto f = [d, m](__half2 v) { return __hfma2(__hsub2(v, kq_h2c(0x6400)), d, m); };
#pragma unroll
        for (int j = 0; j < 4; j++) {
            kq_emit_word(h, j, (W[2 + j] & 0x0F0F0F0Fu) | kq_spread4_bit4((qh >> (4 * j)) & 0xF), f);
            kq_emit_word(h, 4 + j,
                         ((W[2 + j] >> 4) & 0x0F0F0F0Fu) | kq_spread4_bit4((qh >> (16 + 4 * j)) & 0xF), f);
        }
    }
};

template <>
struct kq_fmt<QN_QFORMAT_Q8_0> {
    static constexpr int BE = 32, BB = 34, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 2;
    __device__ static int sub_k(int q, int s) { return 32 * (q + 4 * s); }
    __device__ static void decode(const uint8_t *row, int q, int s, uint32_t h[16]) {
        const uint8_t *b = row + BB * (q + 4 * s);
        const __half2 d = kq_f16x2(kq_u16(b));
        uint32_t Q[8];
        kq_words_a2<8>(b + 2, Q);
        /* int8 q -> code q + 128 (flip the sign bit), then (c - 128) d */
        auto f = [d](__half2 v) { return __hmul2(__hsub2(v, kq_h2c(0x6480)), d); };
#pragma unroll
        for (int i = 0; i < 8; i++) kq_emit_word(h, i, Q[i] ^ 0x80808080u, f);
    }
};

/* Q8_0P (device-only, q8_0p.h): one super-block is Q8_0's stage (8 blocks, 272 bytes), 16-byte aligned; sub-chunk
 * (q, s) is Q8_0 block q + 4s as for Q8_0 (the same k order, so the same sums), its codes read with 16-byte loads. */
template <>
struct kq_fmt<QN_QFORMAT_Q8_0P> {
    static constexpr int BE = 256, BB = 272, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 16;
    __device__ static int sub_k(int q, int s) { return kq_fmt<QN_QFORMAT_Q8_0>::sub_k(q, s); }
    __device__ static void decode(const uint8_t *b, int q, int s, uint32_t h[16]) {
        const int j = q + 4 * s;
        const __half2 d = kq_f16x2(kq_u16(b + 2 * j));
        uint32_t Q[8];
        kq_words_a16<8>(b + 16 + 32 * j, Q);
        auto f = [d](__half2 v) { return __hmul2(__hsub2(v, kq_h2c(0x6480)), d); }; /* as Q8_0 */
#pragma unroll
        for (int i = 0; i < 8; i++) kq_emit_word(h, i, Q[i] ^ 0x80808080u, f);
    }
};

/* K-quants: 256-element super-blocks; lane q takes elements 64q..64q+63 of the stage's block,
 * sub-chunk s the 32 of them at 64q + 32s. */
template <>
struct kq_fmt<QN_QFORMAT_Q2_K> {
    static constexpr int BE = 256, BB = 84, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 4;
    __device__ static int sub_k(int q, int s) { return 64 * q + 32 * s; }
    /* e = 128h + 32j + l: code (qs[32h+l] >> 2j) & 3, sub-block 8h + 2j + (l >= 16) */
    __device__ static void decode(const uint8_t *b, int q, int s, uint32_t h[16]) {
        const int hh = q >> 1, j = 2 * (q & 1) + s;
        uint32_t W[8];
        kq_words_a4<8>(b + 16 + 32 * hh, W);
        const uint32_t dd = *reinterpret_cast<const uint32_t *>(b + 80);
        const float d = __half2float(__ushort_as_half((uint16_t)dd));
        const float dmin = __half2float(__ushort_as_half((uint16_t)(dd >> 16)));
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int sb = b[8 * hh + 2 * j + half];
            const __half2 sc = __float2half2_rn(d * (float)(sb & 15));
            const __half2 mn = __float2half2_rn(-dmin * (float)(sb >> 4));
            auto f = [sc, mn](__half2 v) { return __hfma2(__hsub2(v, kq_h2c(0x6400)), sc, mn); };
#pragma unroll
            for (int i = 4 * half; i < 4 * half + 4; i++) kq_emit_word(h, i, (W[i] >> (2 * j)) & 0x03030303u, f);
        }
    }
};

template <>
struct kq_fmt<QN_QFORMAT_Q3_K> {
    static constexpr int BE = 256, BB = 110, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 2;
    __device__ static int sub_k(int q, int s) { return 64 * q + 32 * s; }
    /* e = 128h + 32j + l: code = low2 | hbit << 2, q = code - 4; 6-bit scale - 32 */
    __device__ static void decode(const uint8_t *b, int q, int s, uint32_t h[16]) {
        const int hh = q >> 1, j = 2 * (q & 1) + s;
        uint32_t Wq[8], Wh[8];
        kq_words_a2<8>(b + 32 + 32 * hh, Wq);
        kq_words_a2<8>(b, Wh);
        const float d = __half2float(__ushort_as_half(kq_u16(b + 108)));
        const uint8_t *S = b + 96;
        const int hs = 4 * hh + j;
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int is = 8 * hh + 2 * j + half;
            const int lo4 = is < 8 ? (S[is] & 15) : (S[is - 8] >> 4);
            const int hi2 = (S[8 + (is & 3)] >> (2 * (is >> 2))) & 3;
            const __half2 sc = __float2half2_rn(d * (float)((lo4 | (hi2 << 4)) - 32));
            auto f = [sc](__half2 v) { return __hmul2(__hsub2(v, kq_h2c(0x6404)), sc); };
#pragma unroll
            for (int i = 4 * half; i < 4 * half + 4; i++)
                kq_emit_word(h, i, ((Wq[i] >> (2 * j)) & 0x03030303u) | (((Wh[i] >> hs) & 0x01010101u) << 2), f);
        }
    }
};

template <>
struct kq_fmt<QN_QFORMAT_Q4_K> {
    static constexpr int BE = 256, BB = 144, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 16;
    __device__ static int sub_k(int q, int s) { return 64 * q + 32 * s; }
    /* e = 64c + 32p + l (c = q, p = s): nibble p of qs[32c + l], scale/min pair 2c + p */
    __device__ static void decode(const uint8_t *b, int q, int s, uint32_t h[16]) {
        uint32_t W[8];
        kq_words_a16<8>(b + 16 + 32 * q, W);
        const uint32_t dd = *reinterpret_cast<const uint32_t *>(b);
        int sc, mn;
        kq_scale_min_k4(2 * q + s, b + 4, sc, mn);
        const __half2 hs = __float2half2_rn(__half2float(__ushort_as_half((uint16_t)dd)) * (float)sc);
        const __half2 hm = __float2half2_rn(-__half2float(__ushort_as_half((uint16_t)(dd >> 16))) * (float)mn);
        auto f = [hs, hm](__half2 v) { return __hfma2(__hsub2(v, kq_h2c(0x6400)), hs, hm); };
#pragma unroll
        for (int i = 0; i < 8; i++) kq_emit_word(h, i, (W[i] >> (4 * s)) & 0x0F0F0F0Fu, f);
    }
};

template <>
struct kq_fmt<QN_QFORMAT_Q5_K> {
    static constexpr int BE = 256, BB = 176, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 16;
    __device__ static int sub_k(int q, int s) { return 64 * q + 32 * s; }
    /* as Q4_K plus fifth bit (qh[l] >> (2c + p)) & 1 */
    __device__ static void decode(const uint8_t *b, int q, int s, uint32_t h[16]) {
        uint32_t Wq[8], Wh[8];
        kq_words_a16<8>(b + 48 + 32 * q, Wq);
        kq_words_a16<8>(b + 16, Wh);
        const uint32_t dd = *reinterpret_cast<const uint32_t *>(b);
        int sc, mn;
        kq_scale_min_k4(2 * q + s, b + 4, sc, mn);
        const __half2 hs = __float2half2_rn(__half2float(__ushort_as_half((uint16_t)dd)) * (float)sc);
        const __half2 hm = __float2half2_rn(-__half2float(__ushort_as_half((uint16_t)(dd >> 16))) * (float)mn);
        auto f = [hs, hm](__half2 v) { return __hfma2(__hsub2(v, kq_h2c(0x6400)), hs, hm); };
        const int hb = 2 * q + s;
#pragma unroll
        for (int i = 0; i < 8; i++)
            kq_emit_word(h, i, ((Wq[i] >> (4 * s)) & 0x0F0F0F0Fu) | (((Wh[i] >> hb) & 0x01010101u) << 4), f);
    }
};

template <>
struct kq_fmt<QN_QFORMAT_Q6_K> {
    static constexpr int BE = 256, BB = 210, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 2;
    __device__ static int sub_k(int q, int s) { return 64 * q + 32 * s; }
    /* e = 128h + 32k + l: low4 = nibble (k >= 2) of ql[64h + 32(k&1) + l],
     * high2 = (qh[32h + l] >> 2k) & 3, q = code - 32, scale scales[8h + 2k + (l >= 16)] */
    template <bool A16 = false>
    __device__ static void decode(const uint8_t *b, int q, int s, uint32_t h[16]) {
        const int hh = q >> 1, k = 2 * (q & 1) + s;
        uint32_t Wl[8], Wh[8];
        if constexpr (A16) {
            kq_words_a16<8>(b + 64 * hh + 32 * (k & 1), Wl);
            kq_words_a16<8>(b + 128 + 32 * hh, Wh);
        } else {
            kq_words_a2<8>(b + 64 * hh + 32 * (k & 1), Wl);
            kq_words_a2<8>(b + 128 + 32 * hh, Wh);
        }
        const float d = __half2float(__ushort_as_half(kq_u16(b + 208)));
        const int8_t *S = reinterpret_cast<const int8_t *>(b + 192);
        const int nsh = 4 * (k >> 1), hsh = 2 * k;
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const __half2 sc = __float2half2_rn(d * (float)S[8 * hh + 2 * k + half]);
            auto f = [sc](__half2 v) { return __hmul2(__hsub2(v, kq_h2c(0x6420)), sc); };
#pragma unroll
            for (int i = 4 * half; i < 4 * half + 4; i++)
                kq_emit_word(h, i, ((Wl[i] >> nsh) & 0x0F0F0F0Fu) | (((Wh[i] >> hsh) & 0x03030303u) << 4), f);
        }
    }
};

/* Q3_KP (device-only, q3kp.h): the Q3_K block at the start of a 112-byte slot, so 16-byte aligned; decoded as Q3_K
 * (its realigning loads work at any even address). */
template <>
struct kq_fmt<QN_QFORMAT_Q3_KP> : kq_fmt<QN_QFORMAT_Q3_K> {
    static constexpr int BB = 112, ALIGN = 16;
};

/* Q6_KP (device-only, q6kp.h): the Q6_K block at the start of a 224-byte slot, so 16-byte aligned: the same
 * decode with 16-byte shared loads (the stages keep the global address mod 16, kq_kernel.cuh, kq_dequant.cu). */
template <>
struct kq_fmt<QN_QFORMAT_Q6_KP> {
    static constexpr int BE = 256, BB = 224, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 16;
    __device__ static int sub_k(int q, int s) { return kq_fmt<QN_QFORMAT_Q6_K>::sub_k(q, s); }
    __device__ static void decode(const uint8_t *b, int q, int s, uint32_t h[16]) {
        kq_fmt<QN_QFORMAT_Q6_K>::decode<true>(b, q, s, h);
    }
};

/* the device-only GPTQ/AWQ/bnb formats (lutq_gpu.h) */
#include "kernels/quant/lutq_decode.cuh"

#endif /* QN_KQ_DECODE_CUH */
