/* kq_dequant.cu — GGUF weights to fp16, out[N][K], for the large-batch path (dequant into a
 * workspace, then a cuBLAS fp16 GEMM; the workspace holds one weight at a time, so this runs for
 * every weight of every prefill step and must stream at write bandwidth). Three variants, one value
 * decode (kq_fmt<F>::decode, kq_decode.cuh), so that every path sees the same fp16 weights, bit for bit:
 *   fast    what qn_quant_dequant_cuda runs (below);
 *   ref     its simpler twin, the test reference: a thread per 32 weights, no staging;
 *   staged  the previous path, kq_kernel with NT = 0 (kq_kernel.cuh, launched by quant_cuda.cu), kept
 *           side by side until the H200 bench confirms fast (style.md §3.14), then to be deleted.
 * Why a kernel of its own: kq_kernel is built around the mma row tiles (16 rows per warp); with NT = 0
 * each of its 16-byte stores lands on 16 rows at once (half-used sectors, 32 per instruction) and K is
 * split until the grid fills, leaving about one pipeline stage per CTA: 654 GB/s on an H200 for Q4_K,
 * 765 for Q6_K (ncu, 512-token prefill, Llama-3-8B shapes), where the bytes written allow ~4 TB/s. */
#include <stdint.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_util.cuh"
#include "kernels/quant/gguf/kq_decode.cuh"
#include "kernels/quant/gguf/kq_dequant.h"
#include "kernels/quant/gguf/kq_kernel.cuh"

/* --- staged: the old instances (kq_kernel<F, 0>) --- */

bool kq_dequant_info(qn_qformat fmt, kq_kernel_info *out) {
#define KQ_CASE(F)                                   \
    if (fmt == QN_QFORMAT_##F) {                     \
        *out = kq_info<QN_QFORMAT_##F, 0>();         \
        return true;                                 \
    }
    KQ_FOR_EACH_FORMAT(KQ_CASE)
#undef KQ_CASE
    return false;
}

/* --- the walk shared by fast and ref ---
 * K is a multiple of the block, so [N][K] blocks are one flat run of blocks and out one flat run of
 * fp16: rows do not matter. The unit of work is 32 consecutive weights, one decode() call: a legacy
 * block, 1/8 of a K-quant super-block (decode's q, s = j/2, j%2 give elements 32j..32j+31), or 64
 * bytes of F16/BF16. */
template <qn_qformat F>
struct kqd_unit {
    using FT = kq_fmt<F>;
    static constexpr int PER_BLOCK = FT::BE >= 32 ? FT::BE / 32 : 1; /* units per block */
    static constexpr int BLOCK_BYTES = FT::BE >= 32 ? FT::BB : 64;   /* bytes one decode() reads from */
    /* unit j of the block at b -> 32 fp16 in order, as 16 half2 */
    __device__ static void decode(const uint8_t *b, int j, uint32_t h[16]) { FT::decode(b, j >> 1, j & 1, h); }
};
/* Q8_0P: its sub-chunk (q, s) is Q8_0 block q + 4s (kq_decode.cuh), so elements 32j.. are (j % 4, j / 4). */
template <>
__device__ void kqd_unit<QN_QFORMAT_Q8_0P>::decode(const uint8_t *b, int j, uint32_t h[16]) {
    kq_fmt<QN_QFORMAT_Q8_0P>::decode(b, j & 3, j >> 2, h);
}

/* --- fast ---
 * A warp takes a tile of 64 units (2048 weights, 4 KB of fp16) at a time, over a persistent grid.
 *   in:  the tile's bytes come with 16-byte cp.async, 512 contiguous bytes per warp instruction, into one
 *        of two per-warp slots: the next tile is in flight while this one decodes (64 legacy blocks or
 *        8 K-quant super-blocks of even size: every tile is whole 16-byte words, so all start aligned).
 *   out: each lane decodes one unit (64 contiguous bytes) into a per-warp output slot, then the warp
 *        stores the slot row-order: 512 contiguous bytes per instruction, whole sectors (the stores are
 *        what bounds this kernel: 2 bytes written per weight against ~0.56 read for Q4_K).
 * Decoding from shared memory reuses decode() exactly as kq_kernel does (its over-read of up to 4 bytes
 * past a block, kq_words_a2, stays inside the slot's 16-byte pad). */
#define KQD_WARPS 8
#define KQD_THREADS (32 * KQD_WARPS)
#define KQD_UNITS 64                  /* units per warp tile: two per lane */
#define KQD_OUT_SLOT (32 * 64)        /* half a tile of fp16 (32 units x 64 bytes) */
#define KQD_MIN_BLOCKS 4              /* <= 64 registers: 32 warps per SM keep enough loads in flight */

template <qn_qformat F>
struct kqd_cfg {
    using U = kqd_unit<F>;
    static constexpr int TILE_BYTES = KQD_UNITS / U::PER_BLOCK * U::BLOCK_BYTES;
    static_assert(kq_fmt<F>::BE >= 32 && TILE_BYTES % 16 == 0, "quantized formats, whole 16-byte words per tile");
    static constexpr int TILE_WORDS = TILE_BYTES / 16;
    static constexpr int IN_SLOT = TILE_BYTES + 16;              /* + the decode over-read */
    static constexpr int WARP_SMEM = 2 * IN_SLOT + KQD_OUT_SLOT;
    static constexpr int SMEM = KQD_WARPS * WARP_SMEM;          /* Q8_0, the largest: 51.5 KB */
};

/* Byte offset of 16-byte part p (0..3) of unit u (0..31) in the output slot. Rotating the parts by
 * u/2 keeps both accesses free of bank conflicts (8 lanes per 128-bit phase, 8 distinct 16-byte bank
 * groups): the per-unit writes (lane = u, fixed p) and the row-order reads (lane -> u = m/4, p = m%4). */
__device__ __forceinline__ int kqd_swz(int u, int p) { return 64 * u + 16 * ((p + (u >> 1)) & 3); }

template <qn_qformat F>
__global__ void __launch_bounds__(KQD_THREADS, KQD_MIN_BLOCKS)
    kqd_fast_kernel(const uint8_t *__restrict__ w, /* [w_bytes] blocks, 16-byte aligned */
                    __half *__restrict__ out,      /* [32 * n_units] fp16, 16-byte aligned */
                    int64_t n_units, int64_t w_bytes) {
    using C = kqd_cfg<F>;
    using U = kqd_unit<F>;
    extern __shared__ __align__(16) uint8_t smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    uint8_t *slot = smem + warp * C::WARP_SMEM; /* in[0], in[1], out */
    uint8_t *oslot = slot + 2 * C::IN_SLOT;
    const uint32_t sin = static_cast<uint32_t>(__cvta_generic_to_shared(slot));
    const int64_t n_tiles = (n_units + KQD_UNITS - 1) / KQD_UNITS;
    const int64_t step = (int64_t)gridDim.x * KQD_WARPS;

    /* The buffer's last word may be partial: it is copied byte by byte with plain loads, zero-filled,
     * so nothing past the last block is read (compute-sanitizer counts a cp.async with a short source
     * size as a 16-byte read past the allocation: seen on the H200 at 287d110). */
    auto stage = [&](int buf, int64_t tile) {
        const int64_t base = tile * C::TILE_BYTES;
#pragma unroll
        for (int j = 0; j < (C::TILE_WORDS + 31) / 32; j++) {
            const int i = lane + 32 * j;
            const int64_t left = w_bytes - (base + 16 * i);
            if (!(C::TILE_WORDS % 32 == 0 || i < C::TILE_WORDS) || left <= 0) continue;
            if (left >= 16) {
                qn_cp_async16_s(sin + buf * C::IN_SLOT + 16 * i, w + base + 16 * i, 16u);
            } else {
                uint8_t *d = slot + buf * C::IN_SLOT + 16 * i;
                for (int b = 0; b < 16; b++) d[b] = b < left ? w[base + 16 * i + b] : (uint8_t)0;
            }
        }
    };

    int64_t t = (int64_t)blockIdx.x * KQD_WARPS + warp;
    if (t < n_tiles) stage(0, t);
    qn_cp_async_commit();
#pragma unroll 1
    for (int it = 0; t < n_tiles; it++, t += step) {
        if (t + step < n_tiles) stage((it + 1) & 1, t + step);
        qn_cp_async_commit();
        qn_cp_async_wait<1>(); /* this lane's copies of tile t are done... */
        __syncwarp();          /* ...and every lane's are visible */
        const uint8_t *in = slot + (it & 1) * C::IN_SLOT;
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int64_t u0 = t * KQD_UNITS + 32 * hf; /* first unit of this half tile */
            const int u = 32 * hf + lane;               /* this lane's unit within the tile */
            if (u0 + lane < n_units) {
                uint32_t h[16];
                U::decode(in + (u / U::PER_BLOCK) * U::BLOCK_BYTES, u % U::PER_BLOCK, h);
#pragma unroll
                for (int p = 0; p < 4; p++)
                    *reinterpret_cast<uint4 *>(oslot + kqd_swz(lane, p)) =
                        make_uint4(h[4 * p], h[4 * p + 1], h[4 * p + 2], h[4 * p + 3]);
            }
            __syncwarp();
            __half *dst = out + u0 * 32;
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const int m = lane + 32 * r; /* 16-byte word m of the half tile */
                if (u0 + (m >> 2) < n_units) qn_stg128(dst + 8 * m, qn_lds128(oslot + kqd_swz(m >> 2, m & 3)));
            }
            __syncwarp(); /* the output slot is refilled by the next half; at the end of a tile, the
                           * input slot just read is the one the next iteration stages into */
        }
    }
    qn_cp_async_wait<0>();
}

/* F16/BF16: weight i of out comes from weight i of w, so there is nothing to stage: 16 bytes in,
 * 16 bytes out, KQD_VEC vectors per thread in flight. F16 is a copy; BF16 converts each word as
 * kq_fmt<BF16>::decode does. */
#define KQD_VEC 4

template <qn_qformat F>
__global__ void __launch_bounds__(KQD_THREADS)
    kqd_plain_kernel(const uint4 *__restrict__ w, /* [n_vec] 8 weights each */
                     uint4 *__restrict__ out,     /* [n_vec] 8 fp16 each */
                     int64_t n_vec) {
    static_assert(F == QN_QFORMAT_F16 || F == QN_QFORMAT_BF16, "elementwise formats");
    const int64_t stride = (int64_t)gridDim.x * KQD_THREADS;
#pragma unroll 1
    for (int64_t i0 = (int64_t)blockIdx.x * KQD_THREADS + threadIdx.x; i0 < n_vec; i0 += KQD_VEC * stride) {
        uint4 v[KQD_VEC];
#pragma unroll
        for (int j = 0; j < KQD_VEC; j++)
            if (i0 + j * stride < n_vec) v[j] = qn_ldg128(w + i0 + j * stride);
#pragma unroll
        for (int j = 0; j < KQD_VEC; j++) {
            if (i0 + j * stride >= n_vec) continue;
            if (F == QN_QFORMAT_BF16) {
                v[j].x = kq_bf16x2_to_h2(v[j].x), v[j].y = kq_bf16x2_to_h2(v[j].y);
                v[j].z = kq_bf16x2_to_h2(v[j].z), v[j].w = kq_bf16x2_to_h2(v[j].w);
            }
            qn_stg128(out + i0 + j * stride, v[j]);
        }
    }
}

/* CTAs of fn that run at once on one SM (at least 1). */
static int kqd_ctas_per_sm(const void *fn, int smem) {
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, fn, KQD_THREADS, (size_t)smem) != cudaSuccess) {
        (void)cudaGetLastError();
        n = 1;
    }
    return n < 1 ? 1 : n;
}

/* Persistent grid: the CTAs needed for `work` items of `per_cta` each, at most one full wave. */
static unsigned kqd_grid(const void *fn, int smem, int64_t work, int64_t per_cta, int n_sm) {
    const int64_t need = (work + per_cta - 1) / per_cta, wave = (int64_t)(n_sm > 0 ? n_sm : 1) * kqd_ctas_per_sm(fn, smem);
    return (unsigned)(need < wave ? need : wave);
}

template <qn_qformat F>
static qn_status kqd_launch_fast(const void *w, int64_t n_weights, void *out, int n_sm, cudaStream_t stream) {
    if (n_weights <= 0) return QN_OK;
    if constexpr (F == QN_QFORMAT_F16 || F == QN_QFORMAT_BF16) {
        const int64_t n_vec = n_weights / 8;
        const void *fn = (const void *)kqd_plain_kernel<F>;
        const unsigned grid = kqd_grid(fn, 0, n_vec, (int64_t)KQD_THREADS * KQD_VEC, n_sm);
        kqd_plain_kernel<F><<<grid, KQD_THREADS, 0, stream>>>((const uint4 *)w, (uint4 *)out, n_vec);
    } else {
        using C = kqd_cfg<F>;
        using U = kqd_unit<F>;
        const int64_t n_units = n_weights / 32;
        const int64_t w_bytes = n_units / U::PER_BLOCK * U::BLOCK_BYTES;
        const void *fn = (const void *)kqd_fast_kernel<F>;
        QN_CUDA_TRY(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM));
        const unsigned grid = kqd_grid(fn, C::SMEM, n_units, (int64_t)KQD_UNITS * KQD_WARPS, n_sm);
        kqd_fast_kernel<F><<<grid, KQD_THREADS, C::SMEM, stream>>>((const uint8_t *)w, (__half *)out, n_units, w_bytes);
    }
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}

/* --- ref: the simpler twin ---
 * A thread per unit: the unit's block is copied 2 bytes at a time (blocks are 2-byte aligned) into a
 * zero-padded local buffer and decoded from there, then written as 4 x 16 bytes. No shared memory, no
 * tiling, no alignment beyond the format's own, nothing past a block read. */
template <qn_qformat F>
__global__ void kqd_ref_kernel(const uint8_t *w, __half *out, int64_t n_units) {
    using U = kqd_unit<F>;
    const int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (u >= n_units) return;
    const uint16_t *src = reinterpret_cast<const uint16_t *>(w + (u / U::PER_BLOCK) * U::BLOCK_BYTES);
    uint4 buf[(U::BLOCK_BYTES + 4 + 15) / 16]; /* + the decode over-read */
    uint16_t *b16 = reinterpret_cast<uint16_t *>(buf);
    for (int i = 0; i < (int)(sizeof buf / 2); i++) b16[i] = i < U::BLOCK_BYTES / 2 ? src[i] : (uint16_t)0;
    uint32_t h[16];
    U::decode(reinterpret_cast<const uint8_t *>(buf), (int)(u % U::PER_BLOCK), h);
    uint4 *o = reinterpret_cast<uint4 *>(out + u * 32);
    for (int p = 0; p < 4; p++) o[p] = make_uint4(h[4 * p], h[4 * p + 1], h[4 * p + 2], h[4 * p + 3]);
}

template <qn_qformat F>
static qn_status kqd_launch_ref(const void *w, int64_t n_weights, void *out, cudaStream_t stream) {
    const int64_t n_units = n_weights / 32, grid = (n_units + 255) / 256;
    if (grid == 0) return QN_OK;
    if (grid > 0x7fffffff) return QN_ERR_SHAPE;
    kqd_ref_kernel<F><<<(unsigned)grid, 256, 0, stream>>>((const uint8_t *)w, (__half *)out, n_units);
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}

/* --- dispatch --- */

qn_status kq_dequant_fast(qn_qformat fmt, const void *w, int64_t n_weights, void *out, int n_sm, void *stream) {
#define KQ_CASE(F) \
    if (fmt == QN_QFORMAT_##F) return kqd_launch_fast<QN_QFORMAT_##F>(w, n_weights, out, n_sm, (cudaStream_t)stream);
    KQ_FOR_EACH_FORMAT(KQ_CASE)
#undef KQ_CASE
    return QN_ERR_UNSUPPORTED;
}

qn_status kq_dequant_ref(qn_qformat fmt, const void *w, int64_t n_weights, void *out, void *stream) {
#define KQ_CASE(F) \
    if (fmt == QN_QFORMAT_##F) return kqd_launch_ref<QN_QFORMAT_##F>(w, n_weights, out, (cudaStream_t)stream);
    KQ_FOR_EACH_FORMAT(KQ_CASE)
#undef KQ_CASE
    return QN_ERR_UNSUPPORTED;
}
