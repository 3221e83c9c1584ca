/* kq_tc_sm90a.cu — the tensor-core GEMM of GGUF weights (Q2_K, Q3_KP, Q4_K, Q5_K, Q6_KP, Q8_0P) for many tokens on
 * Hopper (sm_90a: wgmma), the dequant in the tile loads, the weights in their blocks (kq_tc.h): y[n][N] f32 =
 * x[n][K] fp16 . W^T. Built only for sm_90a (CMakeLists.txt); quant_cuda.cu calls it. Holds no state. lq4m_tc_sm90a.cu is its
 * sibling for the M forms: the same CTA tile, x tiles and wgmma (kernels/common/wgmma_sm90a.cuh), another A side.
 *
 * CTA: 256 threads, two warpgroups, 128 weight rows (warp w: the 16 rows 16 (8 blockIdx.y + w) ..; lane (g, t),
 * g = lane / 4, t = lane % 4, holds rows g and g + 8 of them) by BN = 128 or 256 tokens (blockIdx.x; kq_tile: the
 * call's tile, kq_tc.h qn_kq_tc_tile_of), K in steps of 64 columns (a block of 256 columns is 4 steps). Per step:
 *  - B: the [BN tokens][64 columns] tile of the prepared x (kq_tc.h's order) by the copy engine into one of
 *    TC_STAGES shared-memory stages, TC_STAGES - 1 steps ahead (as lq4m_tc_sm90a.cu).
 *  - A: the format's A side (a_q4k for Q4_K and Q5_K, a_q6k, a_q3k, a_q2k, a_q8: kq_tc_aside.cuh) decodes each lane's
 *    code bytes of rows g and g + 8, loaded WD steps ahead with 8-byte streaming loads, into the A fragments of four
 *    k16 slices: slice s takes word s >> 1 of the lane's 8 bytes and nibble half (Q4_K, Q5_K) or ql half (Q6_K) or
 *    2-bit group (Q2_K, Q3_K) or Q8_0 block (Q8_0) s & 1; ((word >> sh) & 0x000F000F) | 0x64006400 is the half2
 *    (1024 + q, 1024 + q') of slots 2t, 2t + 1 and (word >> (sh + 8)) that of slots 2t + 8, 2t + 9 (Q8_0: bytes 0,
 *    2 and 1, 3 of the word); the scales come from the block's head, loaded ahead too.
 *  - four wgmma.m64nBNk16 per warpgroup, one commit group per step; A double-buffered as in the sibling. The wide
 *    tile decodes each weight once for 256 tokens: half the decode work per FLOP of the 128-token one.
 * Epilogue and K split (gridDim.z, steps per split a multiple of 4 so that every step's place in its block is a
 * constant) as the sibling. Strips past N/16 compute on strip 0 and store nothing; tokens past n store nothing. */
#include <stdint.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_util.cuh"
#include "kernels/common/wgmma_sm90a.cuh"
#include "kernels/quant/gguf/kq_tc.h"
#include "kernels/quant/gguf/kq_tc_aside.cuh"
#include "kernels/quant/gguf/q6kp.h"
#include "kernels/quant/gguf/q8_0p.h"

#define TC_THREADS 256
#define TC_BK TC_TILE_BK /* columns per step */
#define TC_STAGES 4
#define TC_U 8 /* steps per pass: every ring slot, stage and place in a block a constant */

/* the CTA's tile of BN tokens (TC_TILE_BN or TC_WIDE_BN: the call's, kq_tc.h qn_kq_tc_tile_of) and the
 * steps of code bytes in flight per lane: two blocks with 128 tokens, one with 256 (each step four times the
 * tensor work of a 128-token one at 128 accumulators a thread: the registers for the ring are not there) */
template <int BN>
struct kq_tile {
    static_assert(BN == TC_TILE_BN || BN == TC_WIDE_BN, "kq_tc: a tile of 128 or 256 tokens");
    static constexpr int WD = BN == TC_TILE_BN ? 8 : 4;
    static constexpr int SMEM = TC_STAGES * tc_stage_bytes(BN) + 1024 + 64; /* + the swizzle's alignment, mbarriers */
};

/* --- the GEMM --- */

#ifdef TC_ARCH

/* A pass: TC_U steps from local step i0 (a multiple of TC_U) of the CTA's steps k0 .. k0 + L - 1 (k0 a multiple of
 * 4): rows g and g + 8 at the block of the pass's first step */
struct kq_pass {
    const uint8_t *pg, *ph;
    int i0;
    uint32_t par; /* mbarrier parity of stage 0 in this pass */
};

/* steps R .. E - 1 of the pass (even steps decode into a0, odd into a1) */
template <class A, int BN, int R, int E>
__device__ __forceinline__ void kq_steps(A &as, const kq_pass &ps, int L, int k0, int t, uint32_t (&a0)[4][4],
                                         uint32_t (&a1)[4][4], float (&acc)[BN / 2], uint32_t dlo, uint32_t dhi,
                                         uint32_t sbase, uint32_t bars, const CUtensorMap *map, int64_t tok0) {
    if constexpr (R < E) {
        const int i = ps.i0 + R;
        if constexpr (R & 1) {
            as.template step<R>(a1, ps.pg, ps.ph, t, i, L);
            tc_mma_step<TC_STAGES, R, BN>(acc, a1, a0, ps.par, i, L, k0, dlo, dhi, sbase, bars, map, tok0);
        } else {
            as.template step<R>(a0, ps.pg, ps.ph, t, i, L);
            tc_mma_step<TC_STAGES, R, BN>(acc, a0, a1, ps.par, i, L, k0, dlo, dhi, sbase, bars, map, tok0);
        }
        kq_steps<A, BN, R + 1, E>(as, ps, L, k0, t, a0, a1, acc, dlo, dhi, sbase, bars, map, tok0);
    }
}

template <class A>
__device__ __forceinline__ kq_pass kq_pass_at(const uint8_t *rg, const uint8_t *rh, int k0, int i0) {
    const size_t off = (size_t)((k0 + i0) / KQ_STEPS) * A::BYTES;
    return kq_pass{rg + off, rh + off, i0, (uint32_t)(i0 / TC_STAGES) & 1u};
}
#endif

/* A: the format's A side (a_q4k, a_q6k, with kq_tile<BN>::WD steps in flight); BN: tokens per CTA */
template <class A, int BN>
__global__ void __launch_bounds__(TC_THREADS, 1)
    kq_tc_kernel(const __grid_constant__ CUtensorMap map, /* the prepared x [n][K] fp16, boxes [BN][TC_BK] */
                 const uint8_t *__restrict__ w,           /* [N][K/256] blocks of A::BYTES */
                 float *__restrict__ y,                   /* [n][N], or with a K split (gridDim.z > 1) part */
                 float *__restrict__ part,                /* [gridDim.z][n][N]: split z's sums, or NULL */
                 int64_t N, int64_t K, int64_t n, int cps /* steps per split, a multiple of 4 */) {
#ifdef TC_ARCH
    extern __shared__ uint8_t tc_raw[];
    const uint32_t sraw = (uint32_t)__cvta_generic_to_shared(tc_raw);
    const uint32_t sbase = (sraw + 1023u) & ~1023u;
    const uint32_t bars = sbase + TC_STAGES * tc_stage_bytes(BN);
    const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int KT = (int)(K / TC_BK), k0 = (int)blockIdx.z * cps, L = min(cps, KT - k0); /* L a multiple of 4 */
    const int64_t strip = (int64_t)blockIdx.y * 8 + warp;
    const bool sv = strip < N / 16;
    const size_t rb = (size_t)(K / 256) * A::BYTES;
    const uint8_t *const rg = w + (size_t)((sv ? strip : 0) * 16 + g) * rb, *const rh = rg + 8 * rb;
    const int64_t tok0 = (int64_t)blockIdx.x * BN;

    A as;
    {
        const kq_pass p0 = kq_pass_at<A>(rg, rh, k0, 0);
        as.init(p0.pg, p0.ph, L, t);
    }
    tc_start<TC_STAGES, BN>(bars, sbase, &map, k0, L, tok0);
    float acc[BN / 2];
    uint32_t a0[4][4], a1[4][4], dlo, dhi;
    tc_begin(acc, a0, a1, sbase, dlo, dhi);
    int i = 0;
    for (; i + TC_U <= L; i += TC_U)
        kq_steps<A, BN, 0, TC_U>(as, kq_pass_at<A>(rg, rh, k0, i), L, k0, t, a0, a1, acc, dlo, dhi, sbase, bars, &map,
                                 tok0);
    if (i < L) /* one block left (L is a multiple of 4, TC_U = 8) */
        kq_steps<A, BN, 0, KQ_STEPS>(as, kq_pass_at<A>(rg, rh, k0, i), L, k0, t, a0, a1, acc, dlo, dhi, sbase, bars,
                                     &map, tok0);
    tc_wait<0>();
    tc_pin(acc);
    tc_pin(a1);
    if (!sv) return;
    tc_store(acc, part ? part + (size_t)blockIdx.z * (size_t)n * (size_t)N : y, n, N, tok0, strip * 16 + g, t);
#else
    __trap(); /* built for sm_90a only (CMakeLists.txt) */
#endif
}

/* xt = x with each 64-column group in the GEMM's order (kq_tc.h); one thread per group of one token */
__global__ void kq_tc_prepare_kernel(const uint4 *__restrict__ x, /* [n][K] fp16: 8 uint4 per group */
                                     uint4 *__restrict__ xt,      /* [n][K] */
                                     int64_t groups) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= groups) return;
    uint32_t v[32], o[32]; /* column pairs */
#pragma unroll
    for (int u = 0; u < 8; u++) {
        const uint4 q = __ldg(x + 8 * i + u);
        v[4 * u] = q.x, v[4 * u + 1] = q.y, v[4 * u + 2] = q.z, v[4 * u + 3] = q.w;
    }
#pragma unroll
    for (int c = 0; c < 64; c += 2) { /* output columns c, c + 1 from source columns a, b (constants) */
        const int a = qn_kq_tc_x_col(c), b = qn_kq_tc_x_col(c + 1);
        o[c / 2] = __byte_perm(v[a / 2], v[b / 2], (a & 1 ? 0x0032 : 0x0010) | (b & 1 ? 0x7600 : 0x5400));
    }
#pragma unroll
    for (int u = 0; u < 8; u++) xt[8 * i + u] = make_uint4(o[4 * u], o[4 * u + 1], o[4 * u + 2], o[4 * u + 3]);
}

int qn_kq_tc_split(int n_sm, qn_qformat fmt, int64_t N, int64_t K, int64_t n, int tile, int *cps) {
    return tc_split_nk(n_sm, N, K, n, KQ_STEPS, cps, qn_kq_tc_tile_of(tile, fmt, N, n));
}

size_t qn_kq_tc_part_bytes(int n_sm, int64_t N, int64_t K, int64_t n) {
    if (N <= 0 || K <= 0 || n <= 0 || K % 256 || N % 16 || n_sm < 1) return 0;
    /* a call may name either tile (kq_tc.h): the larger of their needs */
    const size_t nb = tc_part_bytes(n_sm, N, K, n, KQ_STEPS, TC_TILE_BN);
    const size_t wb = tc_part_bytes(n_sm, N, K, n, KQ_STEPS, TC_WIDE_BN);
    return nb > wb ? nb : wb;
}

typedef void (*kq_tc_fn)(const CUtensorMap, const uint8_t *, float *, float *, int64_t, int64_t, int64_t, int);

template <int BN>
static kq_tc_fn kq_tc_kernel_bn(qn_qformat fmt) {
    constexpr int WD = kq_tile<BN>::WD;
    return fmt == QN_QFORMAT_Q4_K    ? kq_tc_kernel<a_q4k<WD>, BN>
           : fmt == QN_QFORMAT_Q5_K  ? kq_tc_kernel<a_q4k<WD, true>, BN>
           : fmt == QN_QFORMAT_Q6_KP ? kq_tc_kernel<a_q6k<WD>, BN>
           : fmt == QN_QFORMAT_Q3_KP ? kq_tc_kernel<a_q3k<WD>, BN>
           : fmt == QN_QFORMAT_Q2_K  ? kq_tc_kernel<a_q2k<WD>, BN>
           : fmt == QN_QFORMAT_Q8_0P ? kq_tc_kernel<a_q8<WD / 2>, BN> /* two uint4 of code bytes a step */
                                     : NULL;
}

static kq_tc_fn kq_tc_kernel_of(qn_qformat fmt, int bn) {
    return bn == TC_WIDE_BN ? kq_tc_kernel_bn<TC_WIDE_BN>(fmt) : kq_tc_kernel_bn<TC_TILE_BN>(fmt);
}

bool qn_kq_tc_takes(int sm, qn_qformat fmt, int64_t N, int64_t K) {
    const kq_tc_fn fn = kq_tc_kernel_of(fmt, TC_TILE_BN);
    if (!fn || sm != 90 || N <= 0 || K <= 0 || N % 16 || K % 256) return false;
    if ((N / 16 + 7) / 8 > 65535 || K > ((int64_t)1 << 31)) return false;
    cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, fn) != cudaSuccess) { /* no sm_90a code for this device */
        (void)cudaGetLastError();
        return false;
    }
    return true;
}

qn_status qn_kq_tc_prepare_x(const void *x, int64_t n, int64_t K, void *xt, void *stream) {
    if (n < 0 || K <= 0 || K % 256) return QN_ERR_SHAPE;
    if (!x || !xt || ((uintptr_t)x & 15u) || ((uintptr_t)xt & 15u)) return QN_ERR_INVALID_ARG;
    const int64_t groups = n * (K / 64);
    if (groups == 0) return QN_OK;
    if ((groups + 127) / 128 > 0x7fffffff) return QN_ERR_SHAPE;
    kq_tc_prepare_kernel<<<(unsigned)((groups + 127) / 128), 128, 0, (cudaStream_t)stream>>>((const uint4 *)x,
                                                                                            (uint4 *)xt, groups);
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}

qn_status qn_kq_tc_cuda(int sm, int n_sm, qn_qformat fmt, const void *w, int64_t N, int64_t K, const void *xt,
                        int64_t n, int tile, float *y, void *part, size_t part_bytes, void *stream) {
    if (!qn_kq_tc_takes(sm, fmt, N, K)) return QN_ERR_UNSUPPORTED;
    if (!qn_kq_tc_tile_valid(tile)) return QN_ERR_INVALID_ARG;
    const int bn = qn_kq_tc_tile_of(tile, fmt, N, n);
    int split, cps;
    CUtensorMap map;
    const qn_status ps = tc_plan(n_sm, KQ_STEPS, w, N, K, xt, n, y, part, part_bytes, &split, &cps, &map, bn);
    if (ps != QN_OK || split == 0) return ps;
    const kq_tc_fn kern = kq_tc_kernel_of(fmt, bn);
    const int smem = bn == TC_WIDE_BN ? kq_tile<TC_WIDE_BN>::SMEM : kq_tile<TC_TILE_BN>::SMEM;
    QN_CUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const dim3 grid((unsigned)((n + bn - 1) / bn), (unsigned)((N / 16 + 7) / 8), (unsigned)split);
    float *const pp = split > 1 ? (float *)part : NULL;
    kern<<<grid, TC_THREADS, smem, (cudaStream_t)stream>>>(map, (const uint8_t *)w, y, pp, N, K, n, cps);
    QN_CUDA_TRY_LAUNCH();
    return split > 1 ? tc_reduce(pp, y, n * N, split, (cudaStream_t)stream) : QN_OK;
}
