/* float_mmvq.cu — F16 and BF16 weights on the decode kernel (kq_mmvq.cuh): mq_fmt traits and instances, nt = 1..8.
 *
 *   y[t][r] = sum_k x[t][k] * W[r][k],  x fp16 as the engine holds it (mq_xsrc_f16: no q8 rounding), W fp16 or bf16.
 *
 * Why: at a few tokens a matmul on F16/BF16 weights only streams them. cuBLAS's GEMV is one launch per matrix
 * (q, k and v: three, the small ones less than a wave), and the tensor-core GEMV (kq_kernel.cuh) turns every
 * weight through an mma fragment. Here a lane reads a 32-element unit (64 bytes: four 16-byte loads) of R rows,
 * converts each pair to f32 and meets the token's fp16 activations in f32 FMAs; the kernel's walk, staging,
 * grouped launches (q/k/v, gate/up in one grid) and PDL come with it.
 * Arithmetic: every product of an fp16 or bf16 weight and an fp16 activation is exact in f32; the sums are f32
 * (two chains per unit, then the kernel's per-lane and warp sums), as cuBLAS's GEMV with f32 compute. */
#include <stdint.h>

#include <cuda_fp16.h>

#include "kernels/quant/gguf/kq_mmvq.cuh"

/* The weights' pairs to f32: fp16 (BF = false) or bf16 (BF = true), low half = the even column. */
template <bool BF>
__device__ __forceinline__ float2 mq_pair_f32(uint32_t v) {
    if constexpr (BF) return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xFFFF0000u));
    else return __half22float2(*reinterpret_cast<const __half2 *>(&v));
}

template <bool BF>
struct mq_fmt_float {
    static constexpr int UE = 32, BB = 64, BE = 32; /* a "block" is 32 elements of the row, 64 bytes */
    struct unit { uint32_t h[16]; };                  /* h[i]: columns 2i, 2i + 1 */
    __device__ static int64_t xblock(int64_t u, int j) { return u; }
    template <class M>
    __device__ static void load(const uint8_t *row, int64_t u, unit &w) {
        const uint8_t *b = row + u * BB; /* rows of 2K bytes, K a multiple of 32: 64-byte aligned units */
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint4 v = M::ld128(b + 16 * i);
            w.h[4 * i] = v.x, w.h[4 * i + 1] = v.y, w.h[4 * i + 2] = v.z, w.h[4 * i + 3] = v.w;
        }
    }
    __device__ static float dot(const unit &w, int j, const mq_xh &x) {
        float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const float2 a = mq_pair_f32<BF>(w.h[i]), b = mq_pair_f32<false>(x.h[i]);
            s0 = fmaf(a.x, b.x, s0);
            s1 = fmaf(a.y, b.y, s1);
        }
        return s0 + s1;
    }
};

template <>
struct mq_fmt<QN_QFORMAT_F16> : mq_fmt_float<false> {};
template <>
struct mq_fmt<QN_QFORMAT_BF16> : mq_fmt_float<true> {};
template <>
struct mq_xsrc<QN_QFORMAT_F16> : mq_xsrc_f16 {};
template <>
struct mq_xsrc<QN_QFORMAT_BF16> : mq_xsrc_f16 {};

/* 16 words of weights per row kept across the tokens, as LNF4's: 2 CTAs per SM from 4 tokens (4 rows) on. */
template <int NT>
struct mq_occupancy<QN_QFORMAT_F16, NT> {
    static constexpr int CTAS = NT <= 3 ? 4 : 2;
};
template <int NT>
struct mq_occupancy<QN_QFORMAT_BF16, NT> {
    static constexpr int CTAS = NT <= 3 ? 4 : 2;
};

mq_kernel_fn mq_float_instance(qn_qformat fmt, int nt, bool staged, bool xs, int *smem) {
    switch (fmt) {
    case QN_QFORMAT_F16: return mq_instance<QN_QFORMAT_F16>(nt, staged, xs, smem);
    case QN_QFORMAT_BF16: return mq_instance<QN_QFORMAT_BF16>(nt, staged, xs, smem);
    default: return nullptr;
    }
}
