/* lq4m_tc_sm90a.cu — the tensor-core GEMM of the M forms (LQ4M, LNF4M, LFP4M) for many tokens on Hopper (sm_90a:
 * wgmma), the dequant in the tile loads: y[n][N] f32 = x[n][K] fp16 . W^T with W the chunks (lq4m.h), no fp16 copy
 * of W. Built only for sm_90a (CMakeLists.txt: its own object library; wgmma has no sm_90 form); lq4m_cuda.cu calls
 * it for path TC and, under AUTO, in qn_lq4m_tc_auto's window (33..1024 tokens). Holds no state.
 *
 * x first goes through qn_lq4m_tc_prepare_x: within each 32-column block its 16 32-bit words W (column pairs) are
 * reordered W0 W4 W8 W12 W1 W5 W9 W13 | W2 W6 W10 W14 W3 W7 W11 W15, so that the k slots of each 16-column slice
 * are those of LQ4M's A fragments (lq4m.h: slot 2t + m of slice (p, j) is column 32p + 8t + 4j + m, slot 2t + 8 + m
 * column 32p + 8t + 4j + 2 + m): slice j of the block is the 32 bytes at 32 j. One pass over x (shared by the
 * matrices of a grouped call), after which x tiles move by the copy engine.
 *
 * CTA: 256 threads, two warpgroups, a tile of 128 weight rows (warp w: strip 8 blockIdx.y + w, the 16 rows of its
 * A fragments) by TC_BN = 128 tokens (blockIdx.x), K in steps of 64 columns (half a chunk). Per step:
 *  - B: the [128 tokens][64 columns] tile of the prepared x, brought by the copy engine (a 2-D tensor map with the
 *    128-byte swizzle: 16-byte unit u of row r at unit u ^ (r % 8), K-major as wgmma reads it) into one of
 *    TC_STAGES = QN_LQ4M_TC_STAGES shared-memory stages, TC_STAGES - 1 steps ahead, completing on the stage's
 *    mbarrier; tokens past n arrive as zeros.
 *  - A: each warp decodes its code word of the step (one 16-byte streaming load per lane, TC_WD = QN_LQ4M_TC_WD
 *    steps ahead, and the chunk's two scale words, once per chunk) into the A fragments of four k16 slices (the
 *    loop runs passes of TC_U steps, so that every ring slot, stage, mbarrier and descriptor offset is a
 *    constant and a slot's registers are reloaded in place): LQ4M as lq4m_decode
 *    gives them, the table formats through the per-lane table of lq4m_frag.cuh (in shared memory, filled by each
 *    CTA) times the step's absmax; the host twin's fp16 values, bit for bit. The fragments are double-buffered: a
 *    step's registers are rewritten only after the wgmma group that read them has completed (wgmma reads A
 *    registers asynchronously).
 *  - four wgmma.m64n128k16 (f32 accumulators, 64 per thread) per warpgroup, one commit group per step; the group
 *    of the step before is waited for before the CTA barrier, after which thread 0 refills that step's stage.
 * Epilogue: the accumulators straight to y (rows g, g + 8 of the warp's strip; tokens 8 i + 2 t, + 1).
 * Where the tiles leave SMs idle (qn_lq4m_tc_split), K is split over gridDim.z: each split's sums go to the
 * workspace and a second kernel adds them in split order (deterministic).
 * Strips past N/16 compute on strip 0's weights and store nothing; tokens past n store nothing. */
#include <stdint.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_util.cuh"
#include "kernels/common/wgmma_sm90a.cuh"
#include "kernels/quant/lq4m.h"
#include "kernels/quant/lq4m_frag.cuh"

#define TC_THREADS 256
#define TC_BN TC_TILE_BN                   /* tokens per CTA */
#define TC_BK TC_TILE_BK                   /* columns per step */
/* x tiles in shared memory (TC_STAGES - 1 in flight), and steps of code words in flight per lane (the one in use
 * included): A/B knobs (-D) */
#ifndef QN_LQ4M_TC_STAGES
#define QN_LQ4M_TC_STAGES 4
#endif
#ifndef QN_LQ4M_TC_CTAS
#define QN_LQ4M_TC_CTAS 1 /* CTAs per SM (launch bounds; the K split counts CTA slots): 2 needs <= 128 registers */
#endif
#ifndef QN_LQ4M_TC_WD
#if QN_LQ4M_TC_CTAS > 1
#define QN_LQ4M_TC_WD 2 /* 128 registers */
#else
#define QN_LQ4M_TC_WD 8 /* 4-8% faster than 4 at n = 512 on an H100 once the ring kept its slots (352b282) */
#endif
#endif
#ifndef QN_LQ4M_TC_NODEC
#define QN_LQ4M_TC_NODEC 0 /* 1: a timing probe without the decode (wrong results; A/B builds only) */
#endif
#define TC_STAGES QN_LQ4M_TC_STAGES
#define TC_WD QN_LQ4M_TC_WD
#if TC_WD < 2 || TC_WD % 2
#error "QN_LQ4M_TC_WD: an even number of steps (a chunk is two steps; the A fragments alternate between two buffers)"
#endif
#if TC_WD % TC_STAGES && TC_STAGES % TC_WD
#error "QN_LQ4M_TC_WD and QN_LQ4M_TC_STAGES: one a multiple of the other (a pass covers both rings)"
#endif
#define TC_U (TC_WD > TC_STAGES ? TC_WD : TC_STAGES) /* steps per pass */
#define TC_STAGE_BYTES TC_TILE_BYTES       /* 16 KB: 128 rows of 128 bytes */
#define TC_SMEM (TC_STAGES * TC_STAGE_BYTES + 1024 + 64) /* + the swizzle's 1024-byte alignment, the mbarriers */
#define TC_SMEM_LUT (TC_SMEM + LQ4M_LUT_BYTES)          /* + the table formats' lookup table (lq4m_frag.cuh) */

/* the 16 fp16 values of a table format, two per word (lq4m_map_at) */
struct tc_map {
    uint32_t v[8];
};

struct tc_scale {
    uint32_t sg, sh; /* scale words of rows g, g + 8 */
};

#ifdef TC_ARCH
/* A pass: TC_U steps from local step i0 (a multiple of TC_U), whose chunks start at wp (the lane's code words at
 * wl = wp + lane, its scale words at ws = the chunk's + g); step i0 + R keeps its code word in ring slot R % TC_WD,
 * its chunk's scale words in slot (R % TC_WD) / 2 and its x tile in stage R % TC_STAGES: all fixed registers and
 * compile-time offsets (a ring shifted by copies made each copy wait for the load it copied). */
struct tc_pass {
    const uint4 *wl;    /* wp + lane */
    const uint32_t *ws; /* (const uint32_t *)(wp + 64) + g */
    int i0;             /* local step of R = 0 */
    uint32_t ph;        /* mbarrier parity of stage 0 in this pass */
};

/* Step i0 + R of L (the CTA's steps k0 .. k0 + L - 1; k0 and i0 are even, so R odd is a chunk's columns 64..127)
 * with the A registers a (the other buffer, ao, was read by the group of the step before). */
template <bool LUT, int R>
__device__ __forceinline__ void tc_step(const tc_pass &ps, int L, int k0, uint4 (&cq)[TC_WD], tc_scale (&cs)[TC_WD / 2],
                                        const uint8_t *tl, uint32_t (&a)[4][4], uint32_t (&ao)[4][4], float (&acc)[64],
                                        uint32_t dlo, uint32_t dhi, uint32_t sbase, uint32_t bars,
                                        const CUtensorMap *map, int64_t tok0) {
    constexpr int SL = R % TC_WD, SC = SL / 2;
    constexpr bool HI = R & 1;
    const int i = ps.i0 + R;
    const uint4 c = cq[SL];
    const tc_scale sc = cs[SC];
#if QN_LQ4M_TC_NODEC /* a timing probe (wrong results): the code words as the fragments, no decode */
    for (int s = 0; s < 4; s++) {
        const uint32_t v = s == 0 ? c.x : s == 1 ? c.y : s == 2 ? c.z : c.w;
        a[s][0] = a[s][1] = a[s][2] = a[s][3] = v ^ sc.sg;
    }
    if (false) {
#else
    if constexpr (LUT) { /* HI: the chunk's columns 64..127 (its absmax is the high half) */
#endif
        lq4m_decode_lut(c.x, sc.sg, sc.sh, HI, tl, a[0]);
        lq4m_decode_lut(c.y, sc.sg, sc.sh, HI, tl, a[1]);
        lq4m_decode_lut(c.z, sc.sg, sc.sh, HI, tl, a[2]);
        lq4m_decode_lut(c.w, sc.sg, sc.sh, HI, tl, a[3]);
    } else {
        lq4m_decode(c.x, sc.sg, sc.sh, a[0]); /* the weights do not wait for x */
        lq4m_decode(c.y, sc.sg, sc.sh, a[1]);
        lq4m_decode(c.z, sc.sg, sc.sh, a[2]);
        lq4m_decode(c.w, sc.sg, sc.sh, a[3]);
    }
    if (i + TC_WD < L) { /* slot SL is free: the code word TC_WD steps on (chunk R / 2 + TC_WD / 2 of the pass) */
        constexpr int CH = (R / 2 + TC_WD / 2) * LQ4M_U4;
        cq[SL] = lq4m_ld_stream(ps.wl + CH + (HI ? 32 : 0));
        if constexpr (HI) { /* the chunk's scale words, once both of its steps have read the slot */
            cs[SC].sg = __ldg(ps.ws + CH * 4);
            cs[SC].sh = __ldg(ps.ws + CH * 4 + 8);
        }
    }
    tc_mma_step<TC_STAGES, R>(acc, a, ao, ps.ph, i, L, k0, dlo, dhi, sbase, bars, map, tok0);
}

/* steps R .. E - 1 of the pass (even steps decode into a0, odd into a1) */
template <bool LUT, int R, int E>
__device__ __forceinline__ void tc_steps(const tc_pass &ps, int L, int k0, uint4 (&cq)[TC_WD],
                                         tc_scale (&cs)[TC_WD / 2], const uint8_t *tl, uint32_t (&a0)[4][4],
                                         uint32_t (&a1)[4][4], float (&acc)[64], uint32_t dlo, uint32_t dhi,
                                         uint32_t sbase, uint32_t bars, const CUtensorMap *map, int64_t tok0) {
    if constexpr (R < E) {
        if constexpr (R & 1)
            tc_step<LUT, R>(ps, L, k0, cq, cs, tl, a1, a0, acc, dlo, dhi, sbase, bars, map, tok0);
        else
            tc_step<LUT, R>(ps, L, k0, cq, cs, tl, a0, a1, acc, dlo, dhi, sbase, bars, map, tok0);
        tc_steps<LUT, R + 1, E>(ps, L, k0, cq, cs, tl, a0, a1, acc, dlo, dhi, sbase, bars, map, tok0);
    }
}

/* the last rem < TC_U steps of a CTA (rem even), from step R of the pass on */
template <bool LUT, int R>
__device__ __forceinline__ void tc_tail(const tc_pass &ps, int rem, int L, int k0, uint4 (&cq)[TC_WD],
                                        tc_scale (&cs)[TC_WD / 2], const uint8_t *tl, uint32_t (&a0)[4][4],
                                        uint32_t (&a1)[4][4], float (&acc)[64], uint32_t dlo, uint32_t dhi,
                                        uint32_t sbase, uint32_t bars, const CUtensorMap *map, int64_t tok0) {
    if constexpr (R + 2 <= TC_U) {
        if (R < rem) {
            tc_steps<LUT, R, R + 2>(ps, L, k0, cq, cs, tl, a0, a1, acc, dlo, dhi, sbase, bars, map, tok0);
            tc_tail<LUT, R + 2>(ps, rem, L, k0, cq, cs, tl, a0, a1, acc, dlo, dhi, sbase, bars, map, tok0);
        }
    }
}

__device__ __forceinline__ tc_pass tc_pass_at(const uint4 *wst, int k0, int i0, int lane, int g) {
    const uint4 *wp = wst + (size_t)((k0 + i0) >> 1) * LQ4M_U4;
    return tc_pass{wp + lane, reinterpret_cast<const uint32_t *>(wp + 64) + g, i0, (uint32_t)(i0 / TC_STAGES) & 1u};
}
#endif

/* LUT: a table format (LNF4M, LFP4M; tab its values), else LQ4M */
template <bool LUT>
__global__ void __launch_bounds__(TC_THREADS, QN_LQ4M_TC_CTAS)
    lq4m_tc_kernel(const __grid_constant__ CUtensorMap map, /* the prepared x [n][K] fp16, boxes [TC_BN][TC_BK] */
                   const tc_map tab,
                   const uint4 *__restrict__ w,            /* [N/16][K/128] LQ4M chunks */
                   float *__restrict__ y,                  /* [n][N], or with a K split (gridDim.z > 1) part */
                   float *__restrict__ part,               /* [gridDim.z][n][N]: split z's sums, or NULL */
                   int64_t N, int64_t K, int64_t n, int cps /* steps per split, even */) {
#ifdef TC_ARCH
    extern __shared__ uint8_t tc_raw[];
    const uint32_t sraw = (uint32_t)__cvta_generic_to_shared(tc_raw);
    const uint32_t sbase = (sraw + 1023u) & ~1023u;
    const uint32_t bars = sbase + TC_STAGES * TC_STAGE_BYTES; /* TC_STAGES mbarriers, 8 bytes each */
    const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int KT = (int)(K / TC_BK), k0 = (int)blockIdx.z * cps, L = min(cps, KT - k0); /* L even */
    const int64_t strip = (int64_t)blockIdx.y * 8 + warp;
    const bool sv = strip < N / QN_LQ4M_ROWS;
    const uint4 *const wst = w + (size_t)(sv ? strip : 0) * (size_t)(K / QN_LQ4M_COLS) * LQ4M_U4;
    const int64_t tok0 = (int64_t)blockIdx.x * TC_BN;

    uint4 cq[TC_WD]; /* the code words of steps 0 .. TC_WD - 1, then of a pass's R + TC_WD */
    tc_scale cs[TC_WD / 2];
    {
        const tc_pass p0 = tc_pass_at(wst, k0, 0, lane, g);
#pragma unroll
        for (int d = 0; d < TC_WD; d++) {
            cq[d] = make_uint4(0, 0, 0, 0);
            if (d < L) cq[d] = lq4m_ld_stream(p0.wl + (d / 2) * LQ4M_U4 + (d & 1) * 32);
        }
#pragma unroll
        for (int d = 0; d < TC_WD / 2; d++) {
            cs[d] = tc_scale{0, 0};
            if (2 * d < L) cs[d] = tc_scale{__ldg(p0.ws + d * LQ4M_U4 * 4), __ldg(p0.ws + d * LQ4M_U4 * 4 + 8)};
        }
    }
    uint8_t *const lut = tc_raw + (sbase - sraw) + TC_STAGES * TC_STAGE_BYTES + 64; /* LUT: the table */
    if constexpr (LUT) lq4m_fill_lut<TC_THREADS>(reinterpret_cast<uint4 *>(lut), tab.v, tid);
    const uint8_t *const tl = lut + 4 * lane;
    tc_start<TC_STAGES>(bars, sbase, &map, k0, L, tok0);
    float acc[64];
    uint32_t a0[4][4], a1[4][4], dlo, dhi;
    tc_begin(acc, a0, a1, sbase, dlo, dhi);
    int i = 0;
    for (; i + TC_U <= L; i += TC_U) /* passes of TC_U steps: every slot and stage index a constant */
        tc_steps<LUT, 0, TC_U>(tc_pass_at(wst, k0, i, lane, g), L, k0, cq, cs, tl, a0, a1, acc, dlo, dhi, sbase, bars,
                               &map, tok0);
    tc_tail<LUT, 0>(tc_pass_at(wst, k0, i, lane, g), L - i, L, k0, cq, cs, tl, a0, a1, acc, dlo, dhi, sbase, bars,
                    &map, tok0); /* L is even */
    tc_wait<0>();
    tc_pin(acc);
    tc_pin(a1);
    if (!sv) return;
    const int64_t r0 = strip * QN_LQ4M_ROWS + g;
    tc_store(acc, part ? part + (size_t)blockIdx.z * (size_t)n * (size_t)N : y, n, N, tok0, r0, t);
#else
    __trap(); /* built for sm_90a only (CMakeLists.txt) */
#endif
}

/* xt = x with each 32-column block's words reordered (the file comment); one thread per block */
__global__ void lq4m_tc_prepare_kernel(const uint4 *__restrict__ x, /* [n][K] fp16, 2 uint4 per 16 columns */
                                       uint4 *__restrict__ xt,      /* [n][K] */
                                       int64_t blocks) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= blocks) return;
    const uint4 v0 = __ldg(x + 4 * i), v1 = __ldg(x + 4 * i + 1), v2 = __ldg(x + 4 * i + 2), v3 = __ldg(x + 4 * i + 3);
    xt[4 * i + 0] = make_uint4(v0.x, v1.x, v2.x, v3.x);
    xt[4 * i + 1] = make_uint4(v0.y, v1.y, v2.y, v3.y);
    xt[4 * i + 2] = make_uint4(v0.z, v1.z, v2.z, v3.z);
    xt[4 * i + 3] = make_uint4(v0.w, v1.w, v2.w, v3.w);
}

/* The K split of an N x K call on n tokens: none where the tiles fill the SMs' CTA slots (QN_LQ4M_TC_CTAS each),
 * else as many as the idle slots allow (at most 8, at least 16 steps of 64 columns per split). Steps per split
 * (even): *cps. */
int qn_lq4m_tc_split(int n_sm, int64_t N, int64_t K, int64_t n, int *cps) {
    return tc_split_nk((int64_t)n_sm * QN_LQ4M_TC_CTAS, N, K, n, 2, cps);
}

size_t qn_lq4m_tc_part_bytes(int n_sm, int64_t N, int64_t K, int64_t n) {
    if (N <= 0 || K <= 0 || n <= 0 || K % QN_LQ4M_COLS || N % QN_LQ4M_ROWS || n_sm < 1) return 0;
    return tc_part_bytes((int64_t)n_sm * QN_LQ4M_TC_CTAS, N, K, n, 2);
}

bool qn_lq4m_tc_takes(int sm, qn_qformat fmt, int64_t N, int64_t K) {
    if (sm != 90 || !qn_lq4m_is_format(fmt) || N <= 0 || K <= 0 || N % QN_LQ4M_ROWS || K % QN_LQ4M_COLS) return false;
    if ((N / QN_LQ4M_ROWS + 7) / 8 > 65535 || K > ((int64_t)1 << 31)) return false;
    cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, lq4m_tc_kernel<false>) != cudaSuccess) { /* no sm_90a code for this device */
        (void)cudaGetLastError();
        return false;
    }
    return true;
}

qn_status qn_lq4m_tc_prepare_x(const void *x, int64_t n, int64_t K, void *xt, void *stream) {
    if (n < 0 || K <= 0 || K % QN_LQ4M_COLS) return QN_ERR_SHAPE;
    if (!x || !xt || ((uintptr_t)x & 15u) || ((uintptr_t)xt & 15u)) return QN_ERR_INVALID_ARG;
    const int64_t blocks = n * (K / 32);
    if (blocks == 0) return QN_OK;
    if ((blocks + 255) / 256 > 0x7fffffff) return QN_ERR_SHAPE;
    lq4m_tc_prepare_kernel<<<(unsigned)((blocks + 255) / 256), 256, 0, (cudaStream_t)stream>>>((const uint4 *)x, (uint4 *)xt,
                                                                                             blocks);
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}

qn_status qn_lq4m_tc_cuda(int sm, int n_sm, qn_qformat fmt, const void *w, int64_t N, int64_t K, const void *xt, int64_t n,
                          float *y, void *part, size_t part_bytes, void *stream) {
    if (!qn_lq4m_tc_takes(sm, fmt, N, K)) return QN_ERR_UNSUPPORTED;
    int split, cps;
    CUtensorMap map;
    const qn_status ps = tc_plan((int64_t)n_sm * QN_LQ4M_TC_CTAS, 2, w, N, K, xt, n, y, part, part_bytes, &split, &cps,
                                 &map);
    if (ps != QN_OK || split == 0) return ps;
    const bool lut = qn_lq4m_is_lut(fmt);
    tc_map tab = {};
    if (lut) {
        uint16_t map16[16];
        qn_lq4m_map16(fmt, map16);
        for (int i = 0; i < 8; i++) tab.v[i] = (uint32_t)map16[2 * i] | (uint32_t)map16[2 * i + 1] << 16;
    }
    void (*kern)(const CUtensorMap, const tc_map, const uint4 *, float *, float *, int64_t, int64_t, int64_t, int) =
        lut ? lq4m_tc_kernel<true> : lq4m_tc_kernel<false>;
    const int smem = lut ? TC_SMEM_LUT : TC_SMEM;
    QN_CUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const dim3 grid((unsigned)((n + TC_BN - 1) / TC_BN), (unsigned)((N / QN_LQ4M_ROWS + 7) / 8), (unsigned)split);
    float *const pp = split > 1 ? (float *)part : NULL;
    kern<<<grid, TC_THREADS, smem, (cudaStream_t)stream>>>(map, tab, (const uint4 *)w, y, pp, N, K, n, cps);
    QN_CUDA_TRY_LAUNCH();
    return split > 1 ? tc_reduce(pp, y, n * N, split, (cudaStream_t)stream) : QN_OK;
}
