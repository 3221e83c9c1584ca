/* wgmma_sm90a.cuh — what the Hopper tensor-core GEMMs (*_sm90a.cu: the M forms' lq4m_tc_sm90a.cu, the K-quants'
 * gguf/kq_tc_sm90a.cu) share: wgmma m64n128k16 and m64n256k16 with A in registers and B a 128-byte-swizzled K-major
 * shared tile, its fences and commit groups, the 2-D TMA box load, the split-K sum kernel and the tensor map of an
 * fp16 [n][K] x in boxes of [128 or 256 tokens][64 columns]. Header-only, no state; include from sm_90a-only files. */
#ifndef QN_WGMMA_SM90A_CUH
#define QN_WGMMA_SM90A_CUH

#include <stdint.h>

#include <cuda.h> /* CUtensorMap (the driver's entry point is fetched through the runtime: no libcuda link) */
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_util.cuh"
#include "quern.h"

/* The tile every such GEMM uses: TC_TILE_BN tokens by TC_TILE_BK columns of x per step, one stage of
 * TC_TILE_BYTES in shared memory (128 rows of 128 bytes, the 128-byte swizzle). The pieces below take the tile's
 * tokens BN as a parameter (128 by default; 256: the wide tile, wgmma m64n256k16, a stage of tc_stage_bytes(256)). */
#define TC_TILE_BN 128
#define TC_TILE_BK 64
#define TC_TILE_BYTES (TC_TILE_BN * TC_TILE_BK * 2)
#define TC_WIDE_BN 256
/* one stage's bytes: BN tokens of 128 bytes */
#define tc_stage_bytes(BN) ((BN) * TC_TILE_BK * 2)

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TC_ARCH 1
#endif

/* The shared-memory matrix descriptor of a K-major B tile with the 128-byte swizzle: start address (bits 0-13,
 * in 16-byte units), leading offset unused (1), stride 1024 bytes between 8-row groups (bits 32-45), swizzle
 * mode 1 (bits 62-63). A k16 slice s of the 64-column tile starts 32 s bytes in. */
__device__ __forceinline__ uint64_t tc_desc(uint32_t saddr) {
    return (uint64_t)((saddr & 0x3FFFFu) >> 4) | (uint64_t)1 << 16 | (uint64_t)(1024 >> 4) << 32 | (uint64_t)1 << 62;
}

#ifdef TC_ARCH
__device__ __forceinline__ void tc_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void tc_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void tc_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
/* keeps the compiler from moving accesses of these registers across the asynchronous wgmma that reads them */
template <int M>
__device__ __forceinline__ void tc_pin(float (&d)[M]) {
#pragma unroll
    for (int i = 0; i < M; i++) asm volatile("" : "+f"(d[i])::"memory");
}
__device__ __forceinline__ void tc_pin(uint32_t (&a)[4][4]) {
#pragma unroll
    for (int s = 0; s < 4; s++)
#pragma unroll
        for (int i = 0; i < 4; i++) asm volatile("" : "+r"(a[s][i])::"memory");
}
/* d[64 x 128] (this warpgroup's accumulators) += A (registers a, rows of the four warps) . B (descriptor) */
__device__ __forceinline__ void tc_wgmma(float (&d)[64], const uint32_t (&a)[4], uint64_t desc) {
    asm volatile("{\n"
                 ".reg .pred p;\n"
                 "setp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
                 "{"
                 "%0, %1, %2, %3, %4, %5, %6, %7, "
                 "%8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, "
                 "%24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, "
                 "%40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, "
                 "%56, %57, %58, %59, %60, %61, %62, %63 "
                 "}, {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n"
                 "}\n"
                 :
                 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                 "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                 "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                 "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                 "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                 "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                 "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}

/* the same with 256 tokens: d[64 x 256] (128 accumulators a thread) */
__device__ __forceinline__ void tc_wgmma(float (&d)[128], const uint32_t (&a)[4], uint64_t desc) {
    asm volatile("{\n"
                 ".reg .pred p;\n"
                 "setp.ne.b32 p, %133, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 "
                 "{"
                 "%0, %1, %2, %3, %4, %5, %6, %7, "
                 "%8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, "
                 "%24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, "
                 "%40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, "
                 "%56, %57, %58, %59, %60, %61, %62, %63, "
                 "%64, %65, %66, %67, %68, %69, %70, %71, "
                 "%72, %73, %74, %75, %76, %77, %78, %79, "
                 "%80, %81, %82, %83, %84, %85, %86, %87, "
                 "%88, %89, %90, %91, %92, %93, %94, %95, "
                 "%96, %97, %98, %99, %100, %101, %102, %103, "
                 "%104, %105, %106, %107, %108, %109, %110, %111, "
                 "%112, %113, %114, %115, %116, %117, %118, %119, "
                 "%120, %121, %122, %123, %124, %125, %126, %127 "
                 "}, {%128, %129, %130, %131}, %132, p, 1, 1, 0;\n"
                 "}\n"
                 :
                 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                 "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                 "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                 "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                 "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                 "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                 "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
                 "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
                 "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
                 "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
                 "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
                 "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
                 "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
                 "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
                 "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}

/* the [TC_BN rows from row][TC_BK columns from col] box of the tensor map into shared memory at sdst, on bar */
__device__ __forceinline__ void tc_tma(uint32_t sdst, const CUtensorMap *map, int col, int row, uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n"
                 ::"r"(sdst), "l"(reinterpret_cast<uint64_t>(map)), "r"(col), "r"(row), "r"(bar)
                 : "memory");
}
/* Thread 0 sets up the STAGES mbarriers at bars (8 bytes each), the CTA waits for it, and thread 0 sends the x
 * tiles of the first STAGES - 1 of the L steps from step k0 to the stages at sbase (BN tokens from tok0). */
template <int STAGES, int BN = TC_TILE_BN>
__device__ __forceinline__ void tc_start(uint32_t bars, uint32_t sbase, const CUtensorMap *map, int k0, int L,
                                         int64_t tok0) {
    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) qn_mbar_init(bars + 8u * (uint32_t)s, 1);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    if (threadIdx.x == 0)
        for (int s = 0; s < STAGES - 1 && s < L; s++) {
            qn_mbar_arrive_tx(bars + 8u * (uint32_t)s, tc_stage_bytes(BN));
            tc_tma(sbase + (uint32_t)(s * tc_stage_bytes(BN)), map, (k0 + s) * TC_TILE_BK, (int)tok0,
                   bars + 8u * (uint32_t)s);
        }
}

/* A CTA's zeroed accumulators and A buffers, and the two halves of the B descriptor of the stages at sbase */
template <int M>
__device__ __forceinline__ void tc_begin(float (&acc)[M], uint32_t (&a0)[4][4], uint32_t (&a1)[4][4], uint32_t sbase,
                                         uint32_t &dlo, uint32_t &dhi) {
#pragma unroll
    for (int i = 0; i < M; i++) acc[i] = 0.f;
#pragma unroll
    for (int s = 0; s < 4; s++) a0[s][0] = a0[s][1] = a0[s][2] = a0[s][3] = a1[s][0] = a1[s][1] = a1[s][2] = a1[s][3] = 0;
    const uint64_t d0 = tc_desc(sbase);
    dlo = (uint32_t)d0, dhi = (uint32_t)(d0 >> 32);
}

/* The tensor-core half of step i (pass-local R) of L: wait for its x tile (stage R % STAGES, parity par of the
 * pass's first use of stage 0), four wgmma on the A registers a (k16 slices) into acc, one commit group; then
 * wait for the step before's group (its A registers ao and its stage are free), and once both warpgroups are
 * past it thread 0 refills that stage with the tile STAGES - 1 steps on. */
template <int STAGES, int R, int BN = TC_TILE_BN>
__device__ __forceinline__ void tc_mma_step(float (&acc)[BN / 2], uint32_t (&a)[4][4], uint32_t (&ao)[4][4], uint32_t par,
                                            int i, int L, int k0, uint32_t dlo, uint32_t dhi, uint32_t sbase,
                                            uint32_t bars, const CUtensorMap *map, int64_t tok0) {
    constexpr int ST = R % STAGES, SF = (R + STAGES - 1) % STAGES;
    qn_mbar_wait(bars + 8u * ST, par ^ (uint32_t)((R / STAGES) & 1));
    tc_fence();
    tc_pin(acc);
    tc_pin(a);
#pragma unroll
    for (int s = 0; s < 4; s++) /* the descriptor of stage ST's k16 slice s (no carry out of the address field) */
        tc_wgmma(acc, a[s], (uint64_t)dhi << 32 | (dlo + (uint32_t)((ST * tc_stage_bytes(BN) + 32 * s) >> 4)));
    tc_commit();
    tc_pin(acc);
    tc_wait<1>(); /* the step before's group: its A registers (ao) and its stage are free */
    tc_pin(ao);
    __syncthreads(); /* both warpgroups past it: the step before's stage may be refilled */
    const int kf = i + STAGES - 1;
    if (threadIdx.x == 0 && kf < L) {
        qn_mbar_arrive_tx(bars + 8u * SF, tc_stage_bytes(BN));
        tc_tma(sbase + (uint32_t)(SF * tc_stage_bytes(BN)), map, (k0 + kf) * TC_TILE_BK, (int)tok0, bars + 8u * SF);
    }
}

/* A warp's accumulators to dst [n][N]: rows r0 (= its strip's first row + g) and r0 + 8, tokens tok0 + 8 (i / 4)
 * + 2 t + (i & 1); tokens past n store nothing. */
template <int M>
__device__ __forceinline__ void tc_store(const float (&acc)[M], float *dst, int64_t n, int64_t N, int64_t tok0,
                                         int64_t r0, int t) {
#pragma unroll
    for (int i = 0; i < M; i++) {
        const int64_t tok = tok0 + 8 * (i >> 2) + 2 * t + (i & 1);
        if (tok < n) dst[(size_t)tok * (size_t)N + (size_t)(r0 + 8 * ((i >> 1) & 1))] = acc[i];
    }
}
#endif


/* y = the split's sums in split order (deterministic) */
static __global__ void tc_reduce_kernel(const float *__restrict__ part, /* [split][total] */
                                      float *__restrict__ y,          /* [total] */
                                      int64_t total, int split) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    float s = __ldcs(part + i);
    for (int z = 1; z < split; z++) s += __ldcs(part + (size_t)z * (size_t)total + i);
    y[i] = s;
}

/* The tensor map of x [n][K] fp16 (row stride K, 16-byte aligned) in boxes of [box_rows tokens][box_cols columns]
 * with the 128-byte swizzle (box_cols = 64: one 128-byte row per token), tokens past n read as zeros.
 * QN_ERR_UNSUPPORTED without the driver's encoder, QN_ERR_INVALID_ARG where it refuses the map. */
static inline qn_status tc_x_map(CUtensorMap *map, const void *x, int64_t K, int64_t n, int box_cols, int box_rows) {
    void *fn = NULL;
    cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess || !fn) {
        (void)cudaGetLastError();
        return QN_ERR_UNSUPPORTED;
    }
    const cuuint64_t dims[2] = {(cuuint64_t)K, (cuuint64_t)n}, strides[1] = {(cuuint64_t)K * 2};
    const cuuint32_t box[2] = {(cuuint32_t)box_cols, (cuuint32_t)box_rows}, es[2] = {1, 1};
    const CUresult r = ((PFN_cuTensorMapEncodeTiled_v12000)fn)(
        map, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, const_cast<void *>(x), dims, strides, box, es,
        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? QN_OK : QN_ERR_INVALID_ARG;
}

/* The K split of a GEMM of ctas CTAs over kt steps where slots CTAs fit the GPU at once: none where they fill the
 * slots, else as many as the idle slots allow (at most 8, at least 16 steps per split); steps per split (a
 * multiple of align) in *cps. Returns the number of splits. */
static inline int tc_split(int64_t ctas, int64_t slots, int64_t kt, int align, int *cps) {
    int64_t s = ctas >= slots ? 1 : slots / ctas;
    if (s > 8) s = 8;
    while (s > 1 && kt / s < 16) s--;
    int64_t c = (kt + s - 1) / s;
    c = (c + align - 1) / align * align;
    *cps = (int)c;
    return (int)((kt + c - 1) / c);
}

/* tc_split of an N x K GEMM on n tokens in CTAs of 128 rows (8 strips of 16) by bn tokens */
static inline int tc_split_nk(int64_t slots, int64_t N, int64_t K, int64_t n, int align, int *cps,
                              int bn = TC_TILE_BN) {
    const int64_t ctas = (n + bn - 1) / bn * ((N / 16 + 7) / 8);
    return tc_split(ctas, slots, K / TC_TILE_BK, align, cps);
}

/* The split's sums (f32) of any call of at most n tokens in tiles of bn: a size that grows with n, as callers
 * sizing a workspace for their largest n expect (the split itself does not) */
static inline size_t tc_part_bytes(int64_t slots, int64_t N, int64_t K, int64_t n, int align, int bn = TC_TILE_BN) {
    size_t most = 0;
    for (int64_t tiles = 1; (tiles - 1) * bn < n; tiles++) { /* the most tokens with this many token tiles */
        const int64_t m = tiles * bn < n ? tiles * bn : n;
        int cps;
        const int split = tc_split_nk(slots, N, K, m, align, &cps, bn);
        if (split == 1) break; /* more tiles never split more */
        const size_t b = (size_t)split * (size_t)m * (size_t)N * sizeof(float);
        most = b > most ? b : most;
    }
    return most;
}

/* A launch's checks and plan in tiles of bn tokens: QN_OK with the split (*split, *cps: tc_split_nk) and the map
 * of xt, or the status to return (n == 0: QN_OK with *split = 0, nothing to launch). */
static inline qn_status tc_plan(int64_t slots, int align, const void *w, int64_t N, int64_t K, const void *xt,
                                int64_t n, const float *y, const void *part, size_t part_bytes, int *split, int *cps,
                                CUtensorMap *map, int bn = TC_TILE_BN) {
    *split = 0;
    if (n < 0 || slots < 1) return QN_ERR_SHAPE;
    if (!w || !xt || !y || ((uintptr_t)w & 15u) || ((uintptr_t)xt & 15u)) return QN_ERR_INVALID_ARG;
    if (n == 0) return QN_OK;
    const int s = tc_split_nk(slots, N, K, n, align, cps, bn);
    if (s > 1 && (!part || ((uintptr_t)part & 15u) || part_bytes < tc_part_bytes(slots, N, K, n, align, bn)))
        return QN_ERR_INVALID_ARG;
    if ((n + bn - 1) / bn > 0x7fffffff || n > 0xffffffffLL) return QN_ERR_SHAPE;
    const qn_status ms = tc_x_map(map, xt, K, n, TC_TILE_BK, bn);
    if (ms == QN_OK) *split = s;
    return ms;
}

/* y[i] = the sum over the split's parts in split order, after the GEMM (same stream) */
static inline qn_status tc_reduce(const float *part, float *y, int64_t total, int split, cudaStream_t stream) {
    if ((total + 255) / 256 > 0x7fffffff) return QN_ERR_SHAPE;
    tc_reduce_kernel<<<(unsigned)((total + 255) / 256), 256, 0, stream>>>(part, y, total, split);
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}

#endif /* QN_WGMMA_SM90A_CUH */
