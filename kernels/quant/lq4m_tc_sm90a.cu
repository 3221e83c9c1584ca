/* lq4m_tc_sm90a.cu — the tensor-core GEMM of LQ4M weights for many tokens on Hopper (sm_90a: wgmma), the dequant
 * in the tile loads: y[n][N] f32 = x[n][K] fp16 . W^T with W the LQ4M chunks (lq4m.h), no fp16 copy of W. Built
 * only for sm_90a (CMakeLists.txt: its own object library; wgmma has no sm_90 form); lq4m_cuda.cu calls it for
 * path TC and, under AUTO, where qn_lq4m_tc_takes says. Holds no state.
 *
 * CTA: 256 threads, two warpgroups, a tile of 128 weight rows (warp w: strip 8 blockIdx.y + w, the 16 rows of its
 * A fragments) by LQ4M_TC_BN = 128 tokens (blockIdx.x), K in steps of 64 columns (half a chunk). Per step:
 *  - A: each warp decodes its code word of the step (one 16-byte streaming load per lane, three steps ahead, and
 *    the chunk's two scale words) into the A fragments of four k16 slices, registers as lq4m_decode gives them:
 *    the same fp16 values as the host twin and the dequant kernel, bit for bit.
 *  - B: x's [128 tokens][64 columns] in shared memory, K-major with the 128-byte swizzle (16-byte unit u of row r
 *    at unit u ^ (r % 8)), three stages; each thread loads one token's 32 columns (4 x 16 bytes, one step ahead,
 *    in registers) and stores them with the k slots in LQ4M's order: slot 2t + m of slice (p, j) is column
 *    32 p + 8 t + 4 j + m, slot 2t + 8 + m column 32 p + 8 t + 4 j + 2 + m (lq4m.h), so slice j of a 32-column
 *    block is the 32-bit words (W[2j], W[4+2j], W[8+2j], W[12+2j], W[2j+1], ...) of the 16 words W of the block:
 *    a 4 x 4 transpose of the four loads' words, no arithmetic.
 *  - four wgmma.m64n128k16 (f32 accumulators, 64 per thread) per warpgroup, one commit group per step; the group
 *    of the step before is waited for before the CTA barrier, so a stage is rewritten only after both warpgroups'
 *    reads of it have completed, and one group is always queued behind the running one.
 * Epilogue: the accumulators straight to y (row g, g + 8 of the warp's strip; tokens 8 i + 2 t, + 1).
 * Strips past N/16 compute on strip 0's weights and store nothing; tokens past n read zeros and store nothing. */
#include <stdint.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_util.cuh"
#include "kernels/quant/lq4m.h"
#include "kernels/quant/lq4m_frag.cuh"

#define TC_THREADS 256
#define TC_BM 128                           /* weight rows per CTA: 8 warps x 16 */
#define TC_BN 128                           /* tokens per CTA */
#define TC_BK 64                            /* columns per step */
#define TC_STAGES 3                         /* x tiles in shared memory */
#define TC_STAGE_BYTES (TC_BN * TC_BK * 2)  /* 16 KB: 128 rows of 128 bytes */
#define TC_SMEM (TC_STAGES * TC_STAGE_BYTES + 1024) /* + the 1024-byte alignment of the swizzle */

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
/* keeps the compiler from moving accumulator accesses across the asynchronous wgmma (its operands in registers) */
__device__ __forceinline__ void tc_pin(float (&d)[64]) {
#pragma unroll
    for (int i = 0; i < 64; i++) asm volatile("" : "+f"(d[i])::"memory");
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
#endif

struct tc_code {
    uint4 q;         /* the lane's code word of the step */
    uint32_t sg, sh; /* scale words of rows g, g + 8 */
};

__global__ void __launch_bounds__(TC_THREADS, 1)
    lq4m_tc_kernel(const uint4 *__restrict__ w,   /* [N/16][K/128] LQ4M chunks */
                   const __half *__restrict__ x,  /* [n][K] kernel column order */
                   float *__restrict__ y,         /* [n][N] */
                   int64_t N, int64_t K, int64_t n) {
#ifdef TC_ARCH
    extern __shared__ uint8_t tc_raw[];
    const uint32_t sraw = (uint32_t)__cvta_generic_to_shared(tc_raw);
    const uint32_t sbase = (sraw + 1023u) & ~1023u;
    uint8_t *const gbase = tc_raw + (sbase - sraw);
    const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int64_t nch = K / QN_LQ4M_COLS;
    const int KT = (int)(K / TC_BK);
    const int64_t strip = (int64_t)blockIdx.y * 8 + warp;
    const bool sv = strip < N / QN_LQ4M_ROWS;
    const uint4 *const wst = w + (size_t)(sv ? strip : 0) * (size_t)nch * LQ4M_U4;
    const int64_t tok0 = (int64_t)blockIdx.x * TC_BN;

    /* x: this thread's token row xr and 32-column block xp of each step */
    const int xr = tid & (TC_BN - 1), xp = tid >> 7;
    const bool xv = tok0 + xr < n;
    const uint4 *const xg = reinterpret_cast<const uint4 *>(x + (size_t)(xv ? tok0 + xr : 0) * (size_t)K) + 4 * xp;
    uint4 xs[4];
    auto xload = [&](int kt) {
#pragma unroll
        for (int i = 0; i < 4; i++) xs[i] = xv ? __ldg(xg + (size_t)kt * (TC_BK / 8) + i) : make_uint4(0, 0, 0, 0);
    };
    auto xstore = [&](int stage) {
        uint8_t *row = gbase + stage * TC_STAGE_BYTES + xr * 128;
        const int sw = xr & 7, u0 = 4 * xp; /* slices 2 xp (j = 0) and 2 xp + 1 (j = 1), two units each */
        *reinterpret_cast<uint4 *>(row + (((u0 + 0) ^ sw) << 4)) = make_uint4(xs[0].x, xs[1].x, xs[2].x, xs[3].x);
        *reinterpret_cast<uint4 *>(row + (((u0 + 1) ^ sw) << 4)) = make_uint4(xs[0].y, xs[1].y, xs[2].y, xs[3].y);
        *reinterpret_cast<uint4 *>(row + (((u0 + 2) ^ sw) << 4)) = make_uint4(xs[0].z, xs[1].z, xs[2].z, xs[3].z);
        *reinterpret_cast<uint4 *>(row + (((u0 + 3) ^ sw) << 4)) = make_uint4(xs[0].w, xs[1].w, xs[2].w, xs[3].w);
    };
    auto wload = [&](int kt) {
        tc_code c = {};
        if (kt < KT) {
            const uint4 *ch = wst + (size_t)(kt >> 1) * LQ4M_U4;
            c.q = lq4m_ld_stream(ch + (kt & 1) * 32 + lane);
            const uint32_t *sc = reinterpret_cast<const uint32_t *>(ch + 64);
            c.sg = __ldg(sc + g);
            c.sh = __ldg(sc + g + 8);
        }
        return c;
    };

    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; i++) acc[i] = 0.f;
    tc_code c0 = wload(0), c1 = wload(1), c2 = wload(2);
    xload(0);
    xstore(0);
    if (KT > 1) xload(1);
    qn_fence_proxy_async();
    __syncthreads();
    for (int kt = 0; kt < KT; kt++) {
        uint32_t a[4][4];
        lq4m_decode(c0.q.x, c0.sg, c0.sh, a[0]);
        lq4m_decode(c0.q.y, c0.sg, c0.sh, a[1]);
        lq4m_decode(c0.q.z, c0.sg, c0.sh, a[2]);
        lq4m_decode(c0.q.w, c0.sg, c0.sh, a[3]);
        c0 = c1, c1 = c2, c2 = wload(kt + 3);
        if (kt + 1 < KT) xstore((kt + 1) % TC_STAGES); /* its stage's last reader, step kt - 2, has completed */
        if (kt + 2 < KT) xload(kt + 2);
        const uint32_t sb = sbase + (uint32_t)((kt % TC_STAGES) * TC_STAGE_BYTES);
        tc_fence();
        tc_pin(acc);
#pragma unroll
        for (int s = 0; s < 4; s++) tc_wgmma(acc, a[s], tc_desc(sb + 32u * (uint32_t)s));
        tc_commit();
        tc_pin(acc);
        qn_fence_proxy_async(); /* the x stores above, before the wgmma of step kt + 1 reads them */
        tc_wait<1>();           /* step kt - 1's group: done before anyone passes the barrier */
        __syncthreads();
    }
    tc_wait<0>();
    tc_pin(acc);
    if (!sv) return;
    const int64_t r0 = strip * QN_LQ4M_ROWS + g;
#pragma unroll
    for (int i = 0; i < 64; i++) {
        const int64_t tok = tok0 + 8 * (i >> 2) + 2 * t + (i & 1);
        if (tok < n) y[(size_t)tok * (size_t)N + (size_t)(r0 + 8 * ((i >> 1) & 1))] = acc[i];
    }
#else
    __trap(); /* built for sm_90a only (CMakeLists.txt) */
#endif
}

bool qn_lq4m_tc_takes(int sm, qn_qformat fmt, int64_t N, int64_t K) {
    if (sm != 90 || fmt != QN_QFORMAT_LQ4M || N <= 0 || K <= 0 || N % QN_LQ4M_ROWS || K % QN_LQ4M_COLS) return false;
    if ((N / QN_LQ4M_ROWS + 7) / 8 > 65535) return false;
    cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, lq4m_tc_kernel) != cudaSuccess) { /* no sm_90a code for this device */
        (void)cudaGetLastError();
        return false;
    }
    return true;
}

qn_status qn_lq4m_tc_cuda(int sm, qn_qformat fmt, const void *w, int64_t N, int64_t K, const void *x, int64_t n, float *y,
                          void *stream) {
    if (!qn_lq4m_tc_takes(sm, fmt, N, K)) return QN_ERR_UNSUPPORTED;
    if (n < 0) return QN_ERR_SHAPE;
    if (!w || !x || !y || ((uintptr_t)w & 15u) || ((uintptr_t)x & 15u)) return QN_ERR_INVALID_ARG;
    if (n == 0) return QN_OK;
    const int64_t bx = (n + TC_BN - 1) / TC_BN;
    if (bx > 0x7fffffff) return QN_ERR_SHAPE;
    QN_CUDA_TRY(cudaFuncSetAttribute(lq4m_tc_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, TC_SMEM));
    const dim3 grid((unsigned)bx, (unsigned)((N / QN_LQ4M_ROWS + 7) / 8), 1);
    lq4m_tc_kernel<<<grid, TC_THREADS, TC_SMEM, (cudaStream_t)stream>>>((const uint4 *)w, (const __half *)x, y, N, K, n);
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}
