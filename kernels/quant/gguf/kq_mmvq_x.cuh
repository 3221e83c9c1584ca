/* kq_mmvq_x.cuh — the device side of the q8 activation layout of kq_mmvq.h: one 32-element block
 * quantized by the warp lanes that hold it. Used by the quantizer (kq_mmvq.cu) and by the ops that write
 * the q8 activations along with their fp16 output (kernels/ops/ops_cuda.cu), so that all of them write
 * the bits of qn_mmvq_quantize_x_ref. Header-only, CUDA C++; owns no state. */
#ifndef QN_KQ_MMVQ_X_CUH
#define QN_KQ_MMVQ_X_CUH

#include <stdint.h>

#include <cuda_runtime.h>

#include "kernels/quant/gguf/kq_mmvq.h"

/* V values per lane (1, 4 or 8): the L = 32 / V lanes of an aligned group of L lanes hold one block, group
 * lane j its elements V j .. V j + V - 1. v: the values as f32 (the fp16 numbers of the tensor, so that the
 * codes are those of the fp16 activations). Every lane of the warp calls it (full-mask shuffles); in: this
 * lane's block is part of the tensor (the same for the whole group); then its codes go to qs[0..V) (V-byte
 * aligned) and the group's first lane writes the block's record to *rec (8-byte aligned).
 * amax and the half sums are exact in any order (max, integer adds); the rounding is spelled out (IEEE
 * division, product without FMA, half to even) because the build uses --use_fast_math and the host twin
 * must match bit for bit. */
template <int V>
__device__ __forceinline__ void kq_mmvq_x_store(const float (&v)[V], bool in, int8_t *qs, qn_mmvq_xrec *rec) {
    static_assert(V == 1 || V == 4 || V == 8, "1, 4 or 8 values per lane");
    constexpr int L = QN_MMVQ_QK / V;
    float amax = 0.f;
#pragma unroll
    for (int k = 0; k < V; k++) amax = fmaxf(amax, fabsf(v[k]));
#pragma unroll
    for (int o = 1; o < L; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float d = __fdiv_rn(amax, 127.0f);
    const float inv = amax > 0.f ? __fdiv_rn(127.0f, amax) : 0.f;
    int s = 0;
    uint32_t packed[2] = {0u, 0u};
#pragma unroll
    for (int k = 0; k < V; k++) {
        const int q = __float2int_rn(__fmul_rn(v[k], inv));
        s += q;
        packed[k >> 2] |= ((uint32_t)q & 0xFFu) << (8 * (k & 3));
    }
    /* group lanes j < L/2 hold elements 0..15, the others 16..31 */
#pragma unroll
    for (int o = 1; o < L / 2; o <<= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    const int s_hi = __shfl_down_sync(0xffffffffu, s, L / 2); /* the group's first lane gets 16..31 */
    if (!in) return;
    if (V == 8) *reinterpret_cast<uint2 *>(qs) = make_uint2(packed[0], packed[1]);
    else if (V == 4) *reinterpret_cast<uint32_t *>(qs) = packed[0];
    else *reinterpret_cast<uint8_t *>(qs) = (uint8_t)packed[0];
    if ((threadIdx.x & 31) % L == 0) {
        qn_mmvq_xrec r;
        r.d = d;
        r.s0 = (int16_t)s, r.s1 = (int16_t)s_hi;
        *rec = r;
    }
}

#endif /* QN_KQ_MMVQ_X_CUH */
