/* lutq_decode.cuh — kq_fmt traits of the device-only GPTQ/AWQ/bnb block formats (lutq_gpu.h), so that
 * every kq_kernel path (GEMV, MMA, dequant) serves them unchanged. Included at the end of kq_decode.cuh;
 * the walk and the h[16] contract are described there. All four are 32-element blocks taken like ggml's
 * legacy blocks: lane q decodes blocks q and q + 4 of the stage's 8.
 *
 * Rounding (the peers' fp16 dequant, bit for bit):
 *   LQ4/LQ8: (1024 + q) - (1024 + z) is exact in fp16 (|q - z| <= 255), then one HMUL2 (RN) by the fp16 scale:
 *            fp16(d * (q - z)) with the exact product rounded once. __hmul2_rn: never contracted into an FMA.
 *   LNF4/LFP4: the 16 values of the block, fp16(fp32(a * map[c])) (f32 multiply, RN conversion), are built
 *            once per sub-chunk as byte tables, and each group of 4 codes is looked up with byte
 *            permutations (8 PRMT per 4 codes, no memory table, no divergence). */
#ifndef QN_LUTQ_DECODE_CUH
#define QN_LUTQ_DECODE_CUH

#include "kernels/quant/lutq_gpu.h"

template <>
struct kq_fmt<QN_QFORMAT_LQ4> {
    static constexpr int BE = 32, BB = 20, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 4;
    __device__ static int sub_k(int q, int s) { return 32 * (q + 4 * s); }
    __device__ static void decode(const uint8_t *row, int q, int s, uint32_t h[16]) {
        const uint8_t *b = row + BB * (q + 4 * s);
        uint32_t W[5]; /* d | zb << 16, qs[0..15] */
        kq_words_a4<5>(b, W);
        const __half2 d = kq_f16x2((uint16_t)W[0]), z = kq_f16x2((uint16_t)(W[0] >> 16));
        auto f = [d, z](__half2 v) { return __hmul2_rn(__hsub2(v, z), d); }; /* (q - z) d */
#pragma unroll
        for (int j = 0; j < 4; j++) {
            kq_emit_word(h, j, W[1 + j] & 0x0F0F0F0Fu, f);            /* elements 4j.. */
            kq_emit_word(h, 4 + j, (W[1 + j] >> 4) & 0x0F0F0F0Fu, f); /* elements 16+4j.. */
        }
    }
};

template <>
struct kq_fmt<QN_QFORMAT_LQ8> {
    static constexpr int BE = 32, BB = 36, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 4;
    __device__ static int sub_k(int q, int s) { return 32 * (q + 4 * s); }
    __device__ static void decode(const uint8_t *row, int q, int s, uint32_t h[16]) {
        const uint8_t *b = row + BB * (q + 4 * s);
        uint32_t W[9]; /* d | zb << 16, qs[0..31] */
        kq_words_a4<9>(b, W);
        const __half2 d = kq_f16x2((uint16_t)W[0]), z = kq_f16x2((uint16_t)(W[0] >> 16));
        auto f = [d, z](__half2 v) { return __hmul2_rn(__hsub2(v, z), d); };
#pragma unroll
        for (int i = 0; i < 8; i++) kq_emit_word(h, i, W[1 + i], f);
    }
};

/* bitsandbytes' tables as checkpoints store them (nf4_ref.c's QN_BNB4_NF4_MAP; for FP4 lutq_gpu.c's
 * LQ_FP4_MAP, +0 at code 8), the same literals; the repack refuses any other quant_map (up to the sign of
 * zero), and the GPU test compares the decode with the host twin bit for bit */
struct kq_map_nf4 {
    __device__ static constexpr float v(int c) {
        constexpr float m[16] = {
            -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
            -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
            0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
            0.7229568362236023f, 1.0f};
        return m[c];
    }
};
struct kq_map_fp4 {
    __device__ static constexpr float v(int c) {
        constexpr float m[16] = {0.0f,  0.005208333333f,  0.66666667f,  1.0f,  0.33333333f,  0.5f,  0.16666667f,  0.25f,
                                 0.0f, -0.005208333333f, -0.66666667f, -1.0f, -0.33333333f, -0.5f, -0.16666667f, -0.25f};
        return m[c];
    }
};

/* Looks up 4 codes (nibbles 0..3 of sel, bits 16+ ignored) in the 16-entry fp16 table held as low bytes
 * L[4] and high bytes H[4] (L[i] byte j = low byte of entry 4i + j): two 8-entry permutations per byte
 * plane, then a third picks per byte by bit 3 of the code. Selector nibbles keep bit 3 clear (PRMT's
 * sign-replicate bit). Returns entries (c0, c1) and (c2, c3) as two half2 words. */
__device__ __forceinline__ void kq_lut16_4(const uint32_t L[4], const uint32_t H[4], uint32_t sel, uint32_t &h01,
                                           uint32_t &h23) {
    const uint32_t s7 = sel & 0x7777u;
    const uint32_t pick = 0x3210u | ((sel & 0x8888u) >> 1); /* byte i from the upper half when c_i >= 8 */
    const uint32_t lo = __byte_perm(__byte_perm(L[0], L[1], s7), __byte_perm(L[2], L[3], s7), pick);
    const uint32_t hi = __byte_perm(__byte_perm(H[0], H[1], s7), __byte_perm(H[2], H[3], s7), pick);
    h01 = __byte_perm(lo, hi, 0x5140u);
    h23 = __byte_perm(lo, hi, 0x7362u);
}

template <typename Map>
struct kq_fmt_bnb4 {
    static constexpr int BE = 32, BB = 20, LE = 64, SUB = 2, SK = 4 * LE, ALIGN = 4;
    __device__ static int sub_k(int q, int s) { return 32 * (q + 4 * s); }
    __device__ static void decode(const uint8_t *row, int q, int s, uint32_t h[16]) {
        const uint8_t *b = row + BB * (q + 4 * s);
        uint32_t W[5]; /* a (f32), qs[0..15] */
        kq_words_a4<5>(b, W);
        const float a = __uint_as_float(W[0]);
        uint32_t L[4], H[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t t01 = qn_h2_bits(__floats2half2_rn(__fmul_rn(a, Map::v(4 * i)), __fmul_rn(a, Map::v(4 * i + 1))));
            const uint32_t t23 = qn_h2_bits(__floats2half2_rn(__fmul_rn(a, Map::v(4 * i + 2)), __fmul_rn(a, Map::v(4 * i + 3))));
            L[i] = __byte_perm(t01, t23, 0x6420u);
            H[i] = __byte_perm(t01, t23, 0x7531u);
        }
        /* word w: elements 8w..8w+7 = run w, nibble e = element 8w + e */
#pragma unroll
        for (int w = 0; w < 4; w++) {
            kq_lut16_4(L, H, W[1 + w], h[4 * w + 0], h[4 * w + 1]);
            kq_lut16_4(L, H, W[1 + w] >> 16, h[4 * w + 2], h[4 * w + 3]);
        }
    }
};

template <>
struct kq_fmt<QN_QFORMAT_LNF4> : kq_fmt_bnb4<kq_map_nf4> {};
template <>
struct kq_fmt<QN_QFORMAT_LFP4> : kq_fmt_bnb4<kq_map_fp4> {};

#endif /* QN_LUTQ_DECODE_CUH */
