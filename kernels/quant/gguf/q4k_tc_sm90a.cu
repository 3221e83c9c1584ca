/* q4k_tc_sm90a.cu — the tensor-core GEMM of Q4_K weights for many tokens on Hopper (sm_90a: wgmma), the dequant in
 * the tile loads, the weights in their GGUF blocks (q4k_tc.h): y[n][N] f32 = x[n][K] fp16 . W^T. Built only for
 * sm_90a (CMakeLists.txt); quant_cuda.cu calls it. Holds no state. lq4m_tc_sm90a.cu is its sibling for the M forms:
 * the same CTA tile, x tiles and wgmma (kernels/common/wgmma_sm90a.cuh), another A side.
 *
 * CTA: 256 threads, two warpgroups, 128 weight rows (warp w: the 16 rows 16 (8 blockIdx.y + w) ..; lane (g, t),
 * g = lane / 4, t = lane % 4, holds rows g and g + 8 of them) by TC_BN = 128 tokens (blockIdx.x), K in steps of 64
 * columns: one Q4_K group j (a block of 256 columns is 4 steps). Per step:
 *  - B: the [128 tokens][64 columns] tile of the prepared x (q4k_tc.h's order) by the copy engine into one of
 *    TC_STAGES shared-memory stages, TC_STAGES - 1 steps ahead (as lq4m_tc_sm90a.cu).
 *  - A: each lane's 8 code bytes of rows g and g + 8 (bytes 8t .. 8t + 7 of the group's 32: 16 nibbles each),
 *    loaded TC_WD steps ahead with two 8-byte streaming loads, decoded into the A fragments of four k16 slices:
 *    slice s takes word s >> 1 of each row, its low nibbles (sub-block 2j) for s even, high (2j + 1) for s odd;
 *    ((word >> 4 (s & 1)) & 0x000F000F) | 0x64006400 is the half2 (1024 + q, 1024 + q') of slots 2t, 2t + 1 and
 *    (word >> (4 (s & 1) + 8)) of slots 2t + 8, 2t + 9; minus 1024 (exact) then one FMA with the sub-block's
 *    (S, B). The block's 16-byte head (d, dmin, the 12 scale bytes) of both rows is loaded TC_WD steps ahead too;
 *    the 6-bit scales and mins are unpacked once per block and each step's (S, B) pairs made with one PRMT
 *    ((1024 + sc) as fp16), one HSUB2 and one HMUL2 each.
 *  - four wgmma.m64n128k16 per warpgroup, one commit group per step; A double-buffered as in the sibling.
 * Epilogue and K split (gridDim.z, steps per split a multiple of 4 so that every step's group is a constant) as
 * the sibling. Strips past N/16 compute on strip 0 and store nothing; tokens past n store nothing. */
#include <stdint.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_util.cuh"
#include "kernels/common/wgmma_sm90a.cuh"
#include "kernels/quant/gguf/q4k_tc.h"

#define TC_THREADS 256
#define TC_BN TC_TILE_BN /* tokens per CTA */
#define TC_BK TC_TILE_BK /* columns per step */
#define TC_ROWS 128
#define TC_STAGES 4
#define TC_WD 8                       /* steps of code words in flight per lane (two blocks) */
#define TC_U 8                        /* steps per pass: every ring slot, stage and group a constant */
#define TC_STAGE_BYTES TC_TILE_BYTES
#define TC_SMEM (TC_STAGES * TC_STAGE_BYTES + 1024 + 64)
#define Q4K_BYTES 144 /* a block of 256 weights: d, dmin, 12 scale bytes, 128 code bytes */
#define Q4K_STEPS 4   /* steps per block */

#ifdef TC_ARCH
/* 8 code bytes a CTA reads once: not kept in L1 */
__device__ __forceinline__ uint2 q4k_ld_stream(const uint8_t *p) {
    uint2 v;
    asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
}

/* a block's scales and mins of one row, unpacked (gguf_dequant.h qn_q4_k_scale_words: one 0..63 value per byte)
 * with its d and -dmin as half2 pairs */
struct q4k_head {
    uint32_t sc_lo, sc_hi, mn_lo, mn_hi; /* sub-blocks 0..3, 4..7 */
    uint32_t d2, nm2;                    /* (d, d), (-dmin, -dmin) */
};

__device__ __forceinline__ q4k_head q4k_unpack(uint4 h) {
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    q4k_head r;
    r.sc_lo = h.y & m6;
    r.sc_hi = (h.w & m4) | ((h.y >> 6) & m2) << 4;
    r.mn_lo = h.z & m6;
    r.mn_hi = ((h.w >> 4) & m4) | ((h.z >> 6) & m2) << 4;
    r.d2 = __byte_perm(h.x, 0, 0x1010);
    r.nm2 = __byte_perm(h.x, 0, 0x3232) ^ 0x80008000u;
    return r;
}

/* the (S, B) pairs of sub-blocks 2j, 2j + 1 (j: the step's group in its block) of one row: S = fp16(d sc),
 * B = fp16(-dmin m), each pair (value of 2j, value of 2j + 1) */
template <int J>
__device__ __forceinline__ void q4k_pairs(const q4k_head &h, __half2 &s, __half2 &b) {
    constexpr uint32_t sel = (uint32_t)(0x4040 | ((J & 1) * 2) | ((J & 1) * 2 + 1) << 8);
    const uint32_t sc = J < 2 ? h.sc_lo : h.sc_hi, mn = J < 2 ? h.mn_lo : h.mn_hi;
    const __half2 k1024 = qn_bits_h2(0x64006400u);
    s = __hmul2(__hsub2(qn_bits_h2(__byte_perm(sc, 0x64, sel)), k1024), qn_bits_h2(h.d2));
    b = __hmul2(__hsub2(qn_bits_h2(__byte_perm(mn, 0x64, sel)), k1024), qn_bits_h2(h.nm2));
}

/* the four A registers of k16 slice s from row g's word wg and row g + 8's wh (nibble half HH = s & 1), with the
 * pairs of rows g (sg, bg) and g + 8 (sh, bh) */
template <int HH>
__device__ __forceinline__ void q4k_decode(uint32_t wg, uint32_t wh, __half2 sg, __half2 bg, __half2 sh, __half2 bh,
                                           uint32_t a[4]) {
    const __half2 k1024 = qn_bits_h2(0x64006400u);
    const __half2 Sg = HH ? __high2half2(sg) : __low2half2(sg), Bg = HH ? __high2half2(bg) : __low2half2(bg);
    const __half2 Sh = HH ? __high2half2(sh) : __low2half2(sh), Bh = HH ? __high2half2(bh) : __low2half2(bh);
    a[0] = qn_h2_bits(__hfma2(__hsub2(qn_bits_h2(qn_nib_h2(wg >> (4 * HH))), k1024), Sg, Bg));
    a[1] = qn_h2_bits(__hfma2(__hsub2(qn_bits_h2(qn_nib_h2(wh >> (4 * HH))), k1024), Sh, Bh));
    a[2] = qn_h2_bits(__hfma2(__hsub2(qn_bits_h2(qn_nib_h2(wg >> (4 * HH + 8))), k1024), Sg, Bg));
    a[3] = qn_h2_bits(__hfma2(__hsub2(qn_bits_h2(qn_nib_h2(wh >> (4 * HH + 8))), k1024), Sh, Bh));
}

/* A pass: TC_U steps from local step i0 (a multiple of TC_U) of the CTA's steps k0 .. k0 + L - 1 (k0 a multiple of
 * 4): rows g and g + 8 at the block of the pass's first step (pg, ph: this lane's code bytes of group 0 at
 * + 16 + 8t) */
struct q4k_pass {
    const uint8_t *pg, *ph;
    int i0;
    uint32_t par; /* mbarrier parity of stage 0 in this pass */
};

/* step i0 + R; a: this step's A registers, ao: the other buffer (read by the step before's group) */
template <int R>
__device__ __forceinline__ void q4k_step(const q4k_pass &ps, int L, int k0, int t, uint4 (&cq)[TC_WD],
                                         uint4 (&hd)[TC_WD / Q4K_STEPS][2], q4k_head &hg, q4k_head &hh,
                                         uint32_t (&a)[4][4], uint32_t (&ao)[4][4], float (&acc)[64], uint32_t dlo,
                                         uint32_t dhi, uint32_t sbase, uint32_t bars, const CUtensorMap *map,
                                         int64_t tok0) {
    constexpr int SL = R % TC_WD, J = R % Q4K_STEPS, SH = (R / Q4K_STEPS) % (TC_WD / Q4K_STEPS);
    const int i = ps.i0 + R;
    if constexpr (J == 0) { /* a new block: its heads, loaded TC_WD steps ago */
        hg = q4k_unpack(hd[SH][0]);
        hh = q4k_unpack(hd[SH][1]);
    }
    __half2 sg, bg, sh, bh;
    q4k_pairs<J>(hg, sg, bg);
    q4k_pairs<J>(hh, sh, bh);
    const uint4 c = cq[SL];
    q4k_decode<0>(c.x, c.z, sg, bg, sh, bh, a[0]);
    q4k_decode<1>(c.x, c.z, sg, bg, sh, bh, a[1]);
    q4k_decode<0>(c.y, c.w, sg, bg, sh, bh, a[2]);
    q4k_decode<1>(c.y, c.w, sg, bg, sh, bh, a[3]);
    if (i + TC_WD < L) { /* slot SL is free: the code bytes TC_WD steps on (block R / 4 + TC_WD / 4 of the pass) */
        constexpr int OFF = (R / Q4K_STEPS + TC_WD / Q4K_STEPS) * Q4K_BYTES + 16 + 32 * J;
        const uint2 vg = q4k_ld_stream(ps.pg + OFF + 8 * t), vh = q4k_ld_stream(ps.ph + OFF + 8 * t);
        cq[SL] = make_uint4(vg.x, vg.y, vh.x, vh.y);
        if constexpr (J == 0) { /* the heads of that block (this block's were unpacked above) */
            constexpr int HOFF = (R / Q4K_STEPS + TC_WD / Q4K_STEPS) * Q4K_BYTES;
            hd[SH][0] = __ldg(reinterpret_cast<const uint4 *>(ps.pg + HOFF));
            hd[SH][1] = __ldg(reinterpret_cast<const uint4 *>(ps.ph + HOFF));
        }
    }
    tc_mma_step<TC_STAGES, R>(acc, a, ao, ps.par, i, L, k0, dlo, dhi, sbase, bars, map, tok0);
}

/* steps R .. E - 1 of the pass (even steps decode into a0, odd into a1) */
template <int R, int E>
__device__ __forceinline__ void q4k_steps(const q4k_pass &ps, int L, int k0, int t, uint4 (&cq)[TC_WD],
                                          uint4 (&hd)[TC_WD / Q4K_STEPS][2], q4k_head &hg, q4k_head &hh,
                                          uint32_t (&a0)[4][4], uint32_t (&a1)[4][4], float (&acc)[64], uint32_t dlo,
                                          uint32_t dhi, uint32_t sbase, uint32_t bars, const CUtensorMap *map,
                                          int64_t tok0) {
    if constexpr (R < E) {
        if constexpr (R & 1)
            q4k_step<R>(ps, L, k0, t, cq, hd, hg, hh, a1, a0, acc, dlo, dhi, sbase, bars, map, tok0);
        else
            q4k_step<R>(ps, L, k0, t, cq, hd, hg, hh, a0, a1, acc, dlo, dhi, sbase, bars, map, tok0);
        q4k_steps<R + 1, E>(ps, L, k0, t, cq, hd, hg, hh, a0, a1, acc, dlo, dhi, sbase, bars, map, tok0);
    }
}

__device__ __forceinline__ q4k_pass q4k_pass_at(const uint8_t *rg, const uint8_t *rh, int k0, int i0) {
    const size_t off = (size_t)((k0 + i0) / Q4K_STEPS) * Q4K_BYTES;
    return q4k_pass{rg + off, rh + off, i0, (uint32_t)(i0 / TC_STAGES) & 1u};
}
#endif

__global__ void __launch_bounds__(TC_THREADS, 1)
    q4k_tc_kernel(const __grid_constant__ CUtensorMap map, /* the prepared x [n][K] fp16, boxes [TC_BN][TC_BK] */
                  const uint8_t *__restrict__ w,           /* [N][K/256] Q4_K blocks */
                  float *__restrict__ y,                   /* [n][N], or with a K split (gridDim.z > 1) part */
                  float *__restrict__ part,                /* [gridDim.z][n][N]: split z's sums, or NULL */
                  int64_t N, int64_t K, int64_t n, int cps /* steps per split, a multiple of 4 */) {
#ifdef TC_ARCH
    extern __shared__ uint8_t tc_raw[];
    const uint32_t sraw = (uint32_t)__cvta_generic_to_shared(tc_raw);
    const uint32_t sbase = (sraw + 1023u) & ~1023u;
    const uint32_t bars = sbase + TC_STAGES * TC_STAGE_BYTES;
    const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int KT = (int)(K / TC_BK), k0 = (int)blockIdx.z * cps, L = min(cps, KT - k0); /* L a multiple of 4 */
    const int64_t strip = (int64_t)blockIdx.y * 8 + warp;
    const bool sv = strip < N / 16;
    const size_t rb = (size_t)(K / 256) * Q4K_BYTES;
    const uint8_t *const rg = w + (size_t)((sv ? strip : 0) * 16 + g) * rb, *const rh = rg + 8 * rb;
    const int64_t tok0 = (int64_t)blockIdx.x * TC_BN;

    uint4 cq[TC_WD];                         /* the code bytes of steps 0 .. TC_WD - 1, then of R + TC_WD */
    uint4 hd[TC_WD / Q4K_STEPS][2];          /* the heads of the blocks of those steps (rows g, g + 8) */
    {
        const q4k_pass p0 = q4k_pass_at(rg, rh, k0, 0);
#pragma unroll
        for (int d = 0; d < TC_WD; d++) {
            cq[d] = make_uint4(0, 0, 0, 0);
            if (d < L) {
                const int off = (d / Q4K_STEPS) * Q4K_BYTES + 16 + 32 * (d % Q4K_STEPS) + 8 * t;
                const uint2 vg = q4k_ld_stream(p0.pg + off), vh = q4k_ld_stream(p0.ph + off);
                cq[d] = make_uint4(vg.x, vg.y, vh.x, vh.y);
            }
        }
#pragma unroll
        for (int b = 0; b < TC_WD / Q4K_STEPS; b++) {
            hd[b][0] = hd[b][1] = make_uint4(0, 0, 0, 0);
            if (b * Q4K_STEPS < L) {
                hd[b][0] = __ldg(reinterpret_cast<const uint4 *>(p0.pg + b * Q4K_BYTES));
                hd[b][1] = __ldg(reinterpret_cast<const uint4 *>(p0.ph + b * Q4K_BYTES));
            }
        }
    }
    tc_start<TC_STAGES>(bars, sbase, &map, k0, L, tok0);
    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; i++) acc[i] = 0.f;
    uint32_t a0[4][4], a1[4][4];
#pragma unroll
    for (int s = 0; s < 4; s++) a0[s][0] = a0[s][1] = a0[s][2] = a0[s][3] = a1[s][0] = a1[s][1] = a1[s][2] = a1[s][3] = 0;
    q4k_head hg, hh;
    const uint64_t d0 = tc_desc(sbase);
    const uint32_t dlo = (uint32_t)d0, dhi = (uint32_t)(d0 >> 32);
    int i = 0;
    for (; i + TC_U <= L; i += TC_U)
        q4k_steps<0, TC_U>(q4k_pass_at(rg, rh, k0, i), L, k0, t, cq, hd, hg, hh, a0, a1, acc, dlo, dhi, sbase, bars,
                           &map, tok0);
    if (i < L) /* one block left (L is a multiple of 4, TC_U = 8) */
        q4k_steps<0, Q4K_STEPS>(q4k_pass_at(rg, rh, k0, i), L, k0, t, cq, hd, hg, hh, a0, a1, acc, dlo, dhi, sbase,
                                bars, &map, tok0);
    tc_wait<0>();
    tc_pin(acc);
    tc_pin(a1);
    if (!sv) return;
    tc_store(acc, part ? part + (size_t)blockIdx.z * (size_t)n * (size_t)N : y, n, N, tok0, strip * 16 + g, t);
#else
    __trap(); /* built for sm_90a only (CMakeLists.txt) */
#endif
}

/* xt = x with each 64-column group in the GEMM's order (q4k_tc.h); one thread per group of one token */
__global__ void q4k_tc_prepare_kernel(const uint4 *__restrict__ x, /* [n][K] fp16: 8 uint4 per group */
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
        const int a = qn_q4k_tc_x_col(c), b = qn_q4k_tc_x_col(c + 1);
        o[c / 2] = __byte_perm(v[a / 2], v[b / 2], (a & 1 ? 0x0032 : 0x0010) | (b & 1 ? 0x7600 : 0x5400));
    }
#pragma unroll
    for (int u = 0; u < 8; u++) xt[8 * i + u] = make_uint4(o[4 * u], o[4 * u + 1], o[4 * u + 2], o[4 * u + 3]);
}

static int q4k_tc_split(int n_sm, int64_t N, int64_t K, int64_t n, int *cps) {
    const int64_t ctas = (n + TC_BN - 1) / TC_BN * ((N / 16 + 7) / 8);
    return tc_split(ctas, n_sm, K / TC_BK, Q4K_STEPS, cps);
}

size_t qn_q4k_tc_part_bytes(int n_sm, int64_t N, int64_t K, int64_t n) {
    if (N <= 0 || K <= 0 || n <= 0 || K % 256 || N % 16 || n_sm < 1) return 0;
    size_t most = 0;
    for (int64_t tiles = 1; (tiles - 1) * TC_BN < n; tiles++) { /* the most tokens with this many token tiles */
        const int64_t m = tiles * TC_BN < n ? tiles * TC_BN : n;
        int cps;
        const int split = q4k_tc_split(n_sm, N, K, m, &cps);
        if (split == 1) break; /* more tiles never split more */
        const size_t b = (size_t)split * (size_t)m * (size_t)N * sizeof(float);
        most = b > most ? b : most;
    }
    return most;
}

bool qn_q4k_tc_takes(int sm, int64_t N, int64_t K) {
    if (sm != 90 || N <= 0 || K <= 0 || N % 16 || K % 256) return false;
    if ((N / 16 + 7) / 8 > 65535 || K > ((int64_t)1 << 31)) return false;
    cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, q4k_tc_kernel) != cudaSuccess) { /* no sm_90a code for this device */
        (void)cudaGetLastError();
        return false;
    }
    return true;
}

qn_status qn_q4k_tc_prepare_x(const void *x, int64_t n, int64_t K, void *xt, void *stream) {
    if (n < 0 || K <= 0 || K % 256) return QN_ERR_SHAPE;
    if (!x || !xt || ((uintptr_t)x & 15u) || ((uintptr_t)xt & 15u)) return QN_ERR_INVALID_ARG;
    const int64_t groups = n * (K / 64);
    if (groups == 0) return QN_OK;
    if ((groups + 127) / 128 > 0x7fffffff) return QN_ERR_SHAPE;
    q4k_tc_prepare_kernel<<<(unsigned)((groups + 127) / 128), 128, 0, (cudaStream_t)stream>>>((const uint4 *)x,
                                                                                             (uint4 *)xt, groups);
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}

qn_status qn_q4k_tc_cuda(int sm, int n_sm, const void *w, int64_t N, int64_t K, const void *xt, int64_t n, float *y,
                         void *part, size_t part_bytes, void *stream) {
    if (!qn_q4k_tc_takes(sm, N, K)) return QN_ERR_UNSUPPORTED;
    if (n < 0 || n_sm < 1) return QN_ERR_SHAPE;
    if (!w || !xt || !y || ((uintptr_t)w & 15u) || ((uintptr_t)xt & 15u)) return QN_ERR_INVALID_ARG;
    if (n == 0) return QN_OK;
    int cps;
    const int split = q4k_tc_split(n_sm, N, K, n, &cps);
    if (split > 1 && (!part || ((uintptr_t)part & 15u) || part_bytes < qn_q4k_tc_part_bytes(n_sm, N, K, n)))
        return QN_ERR_INVALID_ARG;
    const int64_t bx = (n + TC_BN - 1) / TC_BN;
    if (bx > 0x7fffffff || n > 0xffffffffLL) return QN_ERR_SHAPE;
    CUtensorMap map;
    const qn_status ms = tc_x_map(&map, xt, K, n, TC_BK, TC_BN);
    if (ms != QN_OK) return ms;
    QN_CUDA_TRY(cudaFuncSetAttribute(q4k_tc_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, TC_SMEM));
    const dim3 grid((unsigned)bx, (unsigned)((N / 16 + 7) / 8), (unsigned)split);
    float *const pp = split > 1 ? (float *)part : NULL;
    q4k_tc_kernel<<<grid, TC_THREADS, TC_SMEM, (cudaStream_t)stream>>>(map, (const uint8_t *)w, y, pp, N, K, n, cps);
    QN_CUDA_TRY_LAUNCH();
    return split > 1 ? tc_reduce(pp, y, n * N, split, (cudaStream_t)stream) : QN_OK;
}
