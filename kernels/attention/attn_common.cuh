/* attn_common.cuh — what the two attention kernels share (attention_cuda.cu: paged_attention_fwd,
 * the tensor-core kernel for any tile; attention_decode.cu: paged_attention_decode, the CUDA-core
 * kernel for steps of decode tokens only): launch parameters, the fp16/bf16 traits, the split-K key
 * ranges and the (m, l) marker of an empty split that paged_attention_combine reads. */
#ifndef QN_ATTN_COMMON_CUH
#define QN_ATTN_COMMON_CUH

#include <math.h>
#include <stdint.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/attention/attention_cuda.h"
#include "kernels/common/device_util.cuh"

#define ATTN_WARPS QN_ATTN_WARPS            /* attention_cuda.h */
#define ATTN_THREADS (ATTN_WARPS * 32)
#define ATTN_ROWS (ATTN_WARPS * 16)        /* query rows (token x group head) per CTA: 16 mma rows a warp */
#define ATTN_KT 64       /* keys per shared-memory KV tile */
#define ATTN_LOG2E 1.4426950408889634f
/* (m, l) an empty split leaves for the combine: l < 0 never comes out of a real softmax sum */
#define ATTN_ML_EMPTY make_float2(INFINITY, -1.0f)
__device__ __forceinline__ bool attn_ml_is_empty(float m, float l) { return m == INFINITY && l == -1.0f; }

/* ------------------------------------------------------------------------------------------------
 * fp16 / bf16 traits: packing two floats into an mma operand register, and the mma itself */

struct kv_f16 {
    __device__ static __forceinline__ void unpack8(uint4 r, float f[8]) {
        const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 x = __half22float2(qn_bits_h2(w[i]));
            f[2 * i] = x.x, f[2 * i + 1] = x.y;
        }
    }
    __device__ static __forceinline__ uint32_t pack(float lo, float hi) {
        return qn_h2_bits(__floats2half2_rn(lo, hi));
    }
    __device__ static __forceinline__ uint16_t one(float x) { return __half_as_ushort(__float2half_rn(x)); }
    __device__ static __forceinline__ void mma(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                               uint32_t b0, uint32_t b1) {
        qn_mma_16816(c, a0, a1, a2, a3, b0, b1);
    }
};

struct kv_bf16 {
    __device__ static __forceinline__ void unpack8(uint4 r, float f[8]) { /* bf16 = the high half of an f32 */
        const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
        for (int i = 0; i < 4; i++) f[2 * i] = __uint_as_float(w[i] << 16), f[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
    }
    __device__ static __forceinline__ uint32_t pack(float lo, float hi) {
        __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&h);
    }
    __device__ static __forceinline__ uint16_t one(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
    __device__ static __forceinline__ void mma(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                               uint32_t b0, uint32_t b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    }
};

struct attn_params {
    qn_attn_cuda_args a;         /* the caller's arguments, by value (pointers are device memory) */
    int group, n_chunks, n_splits;
    float qscale;                /* scale * log2(e): scores live in the exp2 domain */
    float *ws_o;                 /* [n_splits][n_tokens][n_heads][D] unnormalised O */
    float2 *ws_ml;               /* [n_splits][n_tokens][n_heads] (m, l) */
};

/* The keys of one split of a query tile whose last key is n_keys - 1: KV tiles of ATTN_KT keys,
 * n_splits equal runs of them (the last ones may be empty). Non-empty splits are a prefix: split 0
 * always has keys. Both kernels cut alike, so the combine sees the same splits from either. */
struct attn_split {
    int k_begin, k_end; /* keys [k_begin, k_end); empty when k_begin >= k_end */
    bool all;           /* this split holds every key: the CTA writes the output itself */
};
__device__ __forceinline__ attn_split attn_split_keys(int n_keys, int n_splits, int split) {
    const int n_kt = (n_keys + ATTN_KT - 1) / ATTN_KT;
    const int per = (n_kt + n_splits - 1) / n_splits;
    const int kt_begin = min(n_kt, split * per), kt_end = min(n_kt, kt_begin + per);
    attn_split s;
    s.k_begin = kt_begin * ATTN_KT;
    s.k_end = kt_begin < kt_end ? min(kt_end * ATTN_KT, n_keys) : s.k_begin;
    s.all = kt_begin == 0 && kt_end == n_kt;
    return s;
}

/* Stores element d of output row orow from its merged (M, L, O): fp16 O / L to out when the split
 * holds every key, else the unnormalised O (and, once per row, (M, L)) to the split's workspace rows. */
template <int D>
__device__ __forceinline__ void attn_store(const attn_params &p, bool all, int split, size_t orow, int d, float M,
                                           float L, float O) {
    if (all) {
        p.a.out[orow * D + d] = __half_as_ushort(__float2half_rn(L > 0.0f ? O / L : 0.0f));
    } else {
        const size_t prow = (size_t)split * p.a.n_tokens * p.a.n_heads + orow;
        p.ws_o[prow * D + d] = O;
        if (d == 0) p.ws_ml[prow] = make_float2(M, L);
    }
}

/* Launchers (attention_decode.cu): the decode kernel for head_dim D and group G (qn_attn_cuda_takes_decode). */
qn_status attn_decode_launch(const attn_params &p, bool bf16, cudaStream_t stream);

#endif /* QN_ATTN_COMMON_CUH */
