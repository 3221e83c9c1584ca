/* tile_reduce.cuh — the end of a split-K mma kernel whose warps each hold a partial of the same output tile (the
 * fragment-direct GEMV, gguf/kq_frag.cu): the warps' accumulators summed in warp order through shared memory, then,
 * with gridDim.y > 1, the CTAs of the split summed in blockIdx.y order through the workspace by the last CTA of the
 * tile to arrive. Deterministic at every split. CUDA C++, header-only. Also the end of lq4m_cuda.cu's mma kernel. */
#ifndef QN_TILE_REDUCE_CUH
#define QN_TILE_REDUCE_CUH

#include <stdint.h>

#include "kernels/common/device_util.cuh"

/* Values per thread of a tile of NR m16n8 accumulator sets (NR * 128 outputs) over W warps. */
template <int W, int NR>
struct qn_tile_shape {
    static constexpr int NV = NR * 128;
    static constexpr int PER = (NV + W * 32 - 1) / (W * 32);
};

/* acc [NR * 4]: this lane's accumulators (register ri = 4 set + e). red [W][NR * 4][32]: shared memory (may alias
 * memory the warps are done with: the caller syncs before). part [tiles][gridDim.y][NV] f32 and cnt [tiles]
 * (zero before and after the launch): the split's workspace, used only when gridDim.y > 1. The arrival: AR false,
 * a fence in every thread around one atomic add; AR true, qn_split_arrive's release-acquire add by one thread
 * (device_util.cuh). Kernels that read x from global memory in their loop take the fence: lq4m's such instances
 * measured their x loads moved by the release-acquire arrival (d49854c); its instances with x in shared memory take
 * AR. Returns false in a CTA that is not the tile's last: it must store nothing. Else sum[u] is output value
 * v = threadIdx.x + u W 32 (for v < NV): register v / 32 of lane v % 32, summed over the warps and the split. */
template <int W, int NR, bool AR = false>
__device__ __forceinline__ bool qn_tile_reduce(const float *acc, float (*red)[NR * 4][32], float *part,
                                               unsigned *cnt, int64_t tile, float *sum) {
    using S = qn_tile_shape<W, NR>;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __shared__ bool qn_tile_last;
#pragma unroll
    for (int ri = 0; ri < NR * 4; ri++) red[warp][ri][lane] = acc[ri];
    __syncthreads();
#pragma unroll
    for (int u = 0; u < S::PER; u++) {
        const int v = (int)threadIdx.x + u * (W * 32);
        float s = 0.f;
        if (v < S::NV)
#pragma unroll
            for (int wp = 0; wp < W; wp++) s += red[wp][v / 32][v % 32];
        sum[u] = s;
    }
    const int split = (int)gridDim.y;
    if (split <= 1) return true;
    float *mine = part + ((size_t)tile * (size_t)split + blockIdx.y) * S::NV;
#pragma unroll
    for (int u = 0; u < S::PER; u++) {
        const int v = (int)threadIdx.x + u * (W * 32);
        if (v < S::NV) mine[v] = sum[u];
    }
    if constexpr (AR) {
        if (!qn_split_arrive(&cnt[tile], (unsigned)split)) return false;
    } else {
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0) {
            const unsigned prev = atomicAdd(&cnt[tile], 1u);
            qn_tile_last = prev == (unsigned)split - 1;
            if (qn_tile_last) cnt[tile] = 0; /* every CTA of the tile has arrived: ready for the next call */
        }
        __syncthreads();
        if (!qn_tile_last) return false;
        __threadfence();
    }
    const float *all = part + (size_t)tile * (size_t)split * S::NV;
#pragma unroll
    for (int u = 0; u < S::PER; u++) {
        const int v = (int)threadIdx.x + u * (W * 32);
        float s = 0.f;
        if (v < S::NV)
            for (int k = 0; k < split; k++) s += __ldcg(all + (size_t)k * S::NV + v);
        sum[u] = s;
    }
    return true;
}

#endif /* QN_TILE_REDUCE_CUH */
