/* lq4m_frag.cuh — what both M-form kernel files read a chunk with (lq4m.h's layout): the streaming 16-byte code
 * load, the decode of one code word into the four f16x2 registers of a tensor-core A fragment (mma.sync m16n8k16
 * and wgmma's register A of one warp have the same fragment), and for the table formats the per-lane lookup table
 * in shared memory. CUDA C++ only, header-only, no state. */
#ifndef QN_LQ4M_FRAG_CUH
#define QN_LQ4M_FRAG_CUH

#include <stdint.h>

#include <cuda_fp16.h>

#include "kernels/common/device_util.cuh"
#include "kernels/quant/lq4m.h"

#define LQ4M_U4 (QN_LQ4M_CHUNK_BYTES / 16) /* 68 uint4 per chunk: 64 of codes, 4 of scales */

/* 16 code bytes that a kernel reads once per CTA (qn_ldg_stream128: not kept in L1, in program order with the PDL
 * wait: the mma kernel requests its first chunks before it). */
__device__ __forceinline__ uint4 lq4m_ld_stream(const uint4 *p) { return qn_ldg_stream128(p); }

/* One LQ4M code word to the four A-fragment registers, with row g's scale word sg and row g+8's sh
 * (d | (0x6400 + z) << 16): (q | 0x6400) as half2 (1024 + q), minus (1024 + z), exact, times d (one rounding). */
__device__ __forceinline__ void lq4m_decode(uint32_t v, uint32_t sg, uint32_t sh, uint32_t a[4]) {
    const __half2 zg = qn_bits_h2(__byte_perm(sg, 0, 0x3232)), dg = qn_bits_h2(__byte_perm(sg, 0, 0x1010));
    const __half2 zh = qn_bits_h2(__byte_perm(sh, 0, 0x3232)), dh = qn_bits_h2(__byte_perm(sh, 0, 0x1010));
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const __half2 q = qn_bits_h2(qn_nib_h2(v >> (4 * e))); /* (1024 + q, 1024 + q') */
        a[e] = qn_h2_bits(__hmul2(__hsub2(q, (e & 1) ? zh : zg), (e & 1) ? dh : dg));
    }
}

/* lq4m_decode for a table format (LNF4M, LFP4M): register e's code byte looked up in tl (the lane's column of the table, entry b at
 * byte 128 b: one PRMT and one IMAD per lookup), times the absmax of rows g, g+8 in the chunk's half hi (columns
 * 64..127). */
__device__ __forceinline__ void lq4m_decode_lut(uint32_t v, uint32_t sg, uint32_t sh, bool hi,
                                                const uint8_t *__restrict__ tl, uint32_t a[4]) {
    const __half2 ag = qn_bits_h2(__byte_perm(sg, 0, hi ? 0x3232 : 0x1010));
    const __half2 ah = qn_bits_h2(__byte_perm(sh, 0, hi ? 0x3232 : 0x1010));
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const uint32_t b = __byte_perm(v, 0, 0x4440 + e); /* byte e */
        a[e] = qn_h2_bits(__hmul2(qn_bits_h2(*reinterpret_cast<const uint32_t *>(tl + (b << 7))), (e & 1) ? ah : ag));
    }
}

/* map16[i] of the 16 fp16 table values, two per word, without a dynamic index into the parameters */
__device__ __forceinline__ uint32_t lq4m_map_at(const uint32_t (&map)[8], int i) {
    uint32_t v = 0;
#pragma unroll
    for (int j = 0; j < 16; j++)
        if (i == j) v = (map[j / 2] >> (16 * (j & 1))) & 0xFFFFu;
    return v;
}

/* The table of a table format: word 32 b + l = half2 (map16[b & 15], map16[b >> 4]) for every lane l, written by
 * T threads (16-byte stores: uint4 q holds entry q / 8). */
#define LQ4M_LUT_BYTES (256 * 32 * 4)
template <int T>
__device__ __forceinline__ void lq4m_fill_lut(uint4 *tab, const uint32_t (&map)[8], int tid) {
    const uint32_t lo = lq4m_map_at(map, (tid >> 3) & 15); /* entry b of uint4 tid + T it: b & 15 = (tid / 8) % 16 */
#pragma unroll
    for (int it = 0; it < LQ4M_LUT_BYTES / 16 / T; it++) {
        const int b = (tid + T * it) >> 3;
        const uint32_t v = lo | lq4m_map_at(map, b >> 4) << 16;
        tab[tid + T * it] = make_uint4(v, v, v, v);
    }
}

#endif /* QN_LQ4M_FRAG_CUH */
