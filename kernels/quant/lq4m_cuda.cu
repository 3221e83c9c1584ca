/* lq4m_cuda.cu — the GPU entry points of lq4m.h: the tensor-core matmul over the chunks of an M form (LQ4M, LNF4M,
 * LFP4M) for few tokens (one weight, or up to three on the same x in one launch), the dequant to fp16 (+ cuBLAS for
 * many tokens), the act-order gather (lutq_gpu.h's kernel, or each CTA's own). Holds no state.
 *
 * The mma kernel (Marlin's scheme, our layout): a CTA of LQ4M_WARPS warps (tables at <= 8 tokens: QN_LQ4M_LUT_WARPS) takes
 * one 16-row strip (two at n > 8, so that each B fragment feeds two A fragments) and a run of its 128-column chunks
 * (split-K over gridDim.y); warp w takes chunks w, w + WARPS, ... of the run. Per chunk a lane makes two 16-byte
 * streaming loads of codes per strip (its A fragments of 8 tiles) and two 4-byte scale loads, prefetched two chunks
 * ahead; per 32-column block and group of 8 tokens one 16-byte load of x (its B fragments of two tiles: lq4m.h
 * maps the k slots so). A fragment register = (code pair | 0x6400) as half2 (1024 + q), minus (1024 + z), times d:
 * exact before its one rounding, the host twin's bits. The table formats look the register's code byte up in a
 * 256-entry table of half2 (map[lo], map[hi]) in shared memory, one copy per lane (entry b of lane l at word
 * 32 b + l: every lane on its own bank, 32 KB, written by each CTA while its first weights load), times the row's
 * fp16 absmax. mma.sync m16n8k16 accumulates in f32 (tokens are the n = 8 dimension: up to 16 per launch in two
 * groups). The warps' tiles are summed in shared memory in warp order; with a split, each CTA writes its tile to
 * the workspace and the last CTA of the tile (arrival counter) sums the split's tiles in order: deterministic. On
 * sm_90 it is launched as a PDL dependent (device_util.cuh): its first weights stream in while the kernel before
 * finishes; x is read, and anything written, only after the wait.
 * Measured: bench/results/gpu-lq4m-2026-12-06.md, gpu-lnf4m-2026-12-06.md. */
#include <stdint.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_util.cuh"
#include "kernels/common/tile_reduce.cuh"
#include "kernels/quant/lq4m.h"
#include "kernels/quant/lq4m_frag.cuh"
#include "kernels/quant/lutq_gpu.h"
#include "kernels/quant/quant.h"

#define LQ4M_WARPS 4 /* per CTA: LQ4M */
/* per CTA of the table formats at <= 8 tokens: their 32 KB table, written by every CTA, serves twice the warps (an
 * A/B knob). Measured on an H100 (bench/results/gpu-lnf4m-2026-12-06.md, 0c3e5e5) against 4 in the same call: LNF4M
 * n = 1 q/o 7.08 / gate/up 14.92 / down 14.99 us against 11.07 / 17.91 / 20.00 (LQ4M's times); at n = 16 (two strips
 * per CTA, 128 registers) gate/up 21.94 against 18.00, so the 16-token launches keep 4. */
#ifndef QN_LQ4M_LUT_WARPS
#define QN_LQ4M_LUT_WARPS 8
#endif
#define LQ4M_THREADS (LQ4M_WARPS * 32)
/* warps per CTA of a launch with ng token groups */
static int lq4m_warps(qn_qformat fmt, int ng) { return qn_lq4m_is_lut(fmt) && ng == 1 ? QN_LQ4M_LUT_WARPS : LQ4M_WARPS; }
#define LQ4M_WS_COUNTERS QN_QUANT_WS_COUNTERS /* split-K arrival counters first, zero between calls */
#define LQ4M_MAX_SPLIT 16
#define LQ4M_TOKENS 16 /* per launch: two groups of 8 */

static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

struct lq4m_chunk {
    uint4 q0, q1;    /* code words (h = 0, 1) */
    uint32_t sg, sh; /* scale words of rows g, g + 8 */
};

__device__ __forceinline__ lq4m_chunk lq4m_load(const uint4 *ch, int lane, int g) {
    lq4m_chunk c;
    c.q0 = lq4m_ld_stream(ch + lane);
    c.q1 = lq4m_ld_stream(ch + 32 + lane);
    const uint32_t *sc = reinterpret_cast<const uint32_t *>(ch + 64);
    c.sg = __ldg(sc + g);
    c.sh = __ldg(sc + g + 8);
    return c;
}

/* The weights of one launch: 1..LQ4M_MAX_MATS matrices on the same x (q, k, v; gate, up), their tiles numbered
 * one after another over the grid. y [n][N[i]] each. */
#define LQ4M_MAX_MATS 3
struct lq4m_mats {
    const uint4 *w[LQ4M_MAX_MATS]; /* [N[i]/16][K/128] chunks */
    float *y[LQ4M_MAX_MATS];
    int64_t N[LQ4M_MAX_MATS];
    int64_t tile0[LQ4M_MAX_MATS]; /* first tile of matrix i */
    int nm;
    uint32_t map[8]; /* table formats: the 16 fp16 table values, two per word (low half the even code) */
};

/* a[i] without a dynamic index into the parameter space (which would copy it to local memory) */
template <typename T>
__device__ __forceinline__ T lq4m_pick(const T (&a)[LQ4M_MAX_MATS], int i) {
    return i == 0 ? a[0] : i == 1 ? a[1] : a[2];
}

/* NG groups of 8 tokens (n <= 8 NG), R strips per CTA (and per warp: each B fragment serves R A fragments, which
 * halves the activation loads per weight byte at R = 2). y [n][N] f32; with gridDim.y > 1, part
 * [tiles][split][R * NG * 128] f32 and cnt [tiles] (tile = blockIdx.x, strips R tile .. R tile + R - 1).
 * G: the CTA first copies its columns of x into shared memory, lq4m_xs [n][cps * 128 + 8] fp16 (the pad keeps
 * eight tokens' rows on distinct banks), and the B fragments come from there: with perm (act-order; x in the
 * original column order) gathered through it, instead of a gather kernel before; without, staged as they are
 * (QN_LQ4M_STAGE_X_ELEMS: each chunk's x then waits on no load in the loop). L (table formats, never with G): the
 * dynamic shared memory holds the lookup table (LQ4M_LUT_BYTES, lq4m_fill_lut). D: chunks in flight per strip and warp
 * (the one in use included: D - 1 ahead). W: warps per CTA. */
template <int NG, int R, bool G, bool L, int D, int W>
__global__ void __launch_bounds__(W * 32)
    lq4m_mma_kernel(const lq4m_mats mats,
                    const __half *__restrict__ x,     /* [n][K] kernel column order (G: original order) */
                    const int32_t *__restrict__ perm, /* G: [K] original column of kernel column j */
                    int n, int64_t K, int cps, float *__restrict__ part, unsigned *__restrict__ cnt) {
    extern __shared__ uint4 lq4m_xs[];
    constexpr int NV = R * NG * 128;                          /* outputs of a CTA's tile, 4 per lane per mma tile */
    constexpr int PER = (NV + (W * 32) - 1) / (W * 32); /* of them per thread */
    qn_pdl_trigger(); /* the next kernel (launched with PDL) may start streaming its own weights */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int64_t tile = blockIdx.x; /* over all matrices: partial tiles and counters */
    int mi = 0;
#pragma unroll
    for (int i = 1; i < LQ4M_MAX_MATS; i++)
        if (i < mats.nm && tile >= mats.tile0[i]) mi = i;
    const uint4 *__restrict__ w = lq4m_pick(mats.w, mi);
    float *__restrict__ y = lq4m_pick(mats.y, mi);
    const int64_t N = lq4m_pick(mats.N, mi), strip0 = (tile - lq4m_pick(mats.tile0, mi)) * R;
    const int nch = (int)(K / QN_LQ4M_COLS);
    const int c0 = (int)blockIdx.y * cps, c1 = min(c0 + cps, nch);
    const uint4 *ws = w + (size_t)strip0 * (size_t)nch * LQ4M_U4; /* strip r at ws + r * nch * LQ4M_U4 */
    const __half *xr[NG];
    bool xv[NG];
#pragma unroll
    for (int ng = 0; ng < NG; ng++) {
        const int tok = 8 * ng + g;
        xv[ng] = tok < n;
        xr[ng] = G ? reinterpret_cast<const __half *>(lq4m_xs) + (size_t)(xv[ng] ? tok : 0) * (cps * QN_LQ4M_COLS + 8) -
                         (size_t)c0 * QN_LQ4M_COLS + 8 * t
                   : x + (size_t)(xv[ng] ? tok : 0) * (size_t)K + 8 * t;
    }
    float acc[R][NG][4];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int ng = 0; ng < NG; ng++) acc[r][ng][0] = acc[r][ng][1] = acc[r][ng][2] = acc[r][ng][3] = 0.f;

    /* chunks c, c + WARPS, ..., c + (D - 1) WARPS in flight */
    lq4m_chunk buf[D][R] = {};
    int c = c0 + warp;
#pragma unroll
    for (int d = 0; d < D; d++)
#pragma unroll
        for (int r = 0; r < R; r++)
            if (c + d * W < c1) buf[d][r] = lq4m_load(ws + ((size_t)r * nch + c + d * W) * LQ4M_U4, lane, g);
    const uint8_t *tl = reinterpret_cast<const uint8_t *>(lq4m_xs) + 4 * lane;
    if constexpr (L) {
        lq4m_fill_lut<W * 32>(lq4m_xs, mats.map, (int)threadIdx.x);
        __syncthreads();
    }
    qn_pdl_wait(); /* x is the kernel before's output, and no write comes before it has completed; the weights were not */
    if constexpr (G) { /* xs[t][j - c0 128] = x[t][perm[j]] (x[t][j] without perm) over the CTA's columns */
        __half *xs = reinterpret_cast<__half *>(lq4m_xs);
        const int j0 = c0 * QN_LQ4M_COLS, cols = (c1 - c0) * QN_LQ4M_COLS, stride = cps * QN_LQ4M_COLS + 8;
        if (!perm) /* staged: eight per thread and step, 16-byte loads */
            for (int tok = 0; tok < n; tok++)
#pragma unroll 2
                for (int q = 8 * (int)threadIdx.x; q < cols; q += 8 * (W * 32))
                    qn_stg128(xs + (size_t)tok * stride + q, qn_ldg128(x + (size_t)tok * (size_t)K + j0 + q));
#pragma unroll 2
        for (int q = 4 * (int)threadIdx.x; perm && q < cols; q += 4 * (W * 32)) { /* gathered: four per step */
            const int4 pj = __ldg(reinterpret_cast<const int4 *>(perm + j0 + q));
            for (int tok = 0; tok < n; tok++) {
                const __half *xt = x + (size_t)tok * (size_t)K;
                __half2 lo, hi;
                lo.x = xt[pj.x], lo.y = xt[pj.y], hi.x = xt[pj.z], hi.y = xt[pj.w];
                __half2 *d = reinterpret_cast<__half2 *>(xs + (size_t)tok * stride + q);
                d[0] = lo, d[1] = hi;
            }
        }
        __syncthreads();
    }
    for (; c < c1; c += W) {
        lq4m_chunk cur[R];
        const bool more = c + D * W < c1;
#pragma unroll
        for (int r = 0; r < R; r++) {
            cur[r] = buf[0][r];
#pragma unroll
            for (int d = 0; d + 1 < D; d++) buf[d][r] = buf[d + 1][r];
            if (more) buf[D - 1][r] = lq4m_load(ws + ((size_t)r * nch + c + D * W) * LQ4M_U4, lane, g);
        }
        uint4 xb[NG][4];
#pragma unroll
        for (int ng = 0; ng < NG; ng++)
#pragma unroll
            for (int p = 0; p < 4; p++)
                xb[ng][p] = !xv[ng] ? make_uint4(0, 0, 0, 0)
                            : G ? qn_lds128(xr[ng] + (size_t)c * QN_LQ4M_COLS + 32 * p)
                                : qn_ldg128(xr[ng] + (size_t)c * QN_LQ4M_COLS + 32 * p);
#pragma unroll
        for (int i = 0; i < 8; i++) /* block p = i / 2, tile j = i % 2 */
#pragma unroll
            for (int r = 0; r < R; r++) {
                const uint32_t word = i < 4 ? (i == 0 ? cur[r].q0.x : i == 1 ? cur[r].q0.y : i == 2 ? cur[r].q0.z : cur[r].q0.w)
                                            : (i == 4 ? cur[r].q1.x : i == 5 ? cur[r].q1.y : i == 6 ? cur[r].q1.z : cur[r].q1.w);
                uint32_t a[4];
                if constexpr (L) lq4m_decode_lut(word, cur[r].sg, cur[r].sh, i >= 4, tl, a);
                else lq4m_decode(word, cur[r].sg, cur[r].sh, a);
#pragma unroll
                for (int ng = 0; ng < NG; ng++) {
                    const uint4 b = xb[ng][i / 2];
                    qn_mma_16816(acc[r][ng], a[0], a[1], a[2], a[3], (i & 1) ? b.z : b.x, (i & 1) ? b.w : b.y);
                }
            }
    }

    /* the warps' tiles, summed in warp order; value v = (register ri = v / 32 = (r NG + ng) 4 + e, lane v % 32) */
    __shared__ float red_s[L ? 1 : W][R * NG * 4][32];
    float(*red)[R * NG * 4][32] = red_s;
    if constexpr (L) { /* the table's memory, once every warp is done with it (static + dynamic stays <= 48 KB) */
        static_assert(W * R * NG * 4 * 32 * sizeof(float) <= LQ4M_LUT_BYTES, "the warps' tiles fit the table");
        __syncthreads();
        red = reinterpret_cast<float(*)[R * NG * 4][32]>(lq4m_xs);
    }
    /* G: x in shared memory (gathered, or staged: n = 1 on the 8B shapes), the release-acquire arrival; else a fence
     * in every thread (the release-acquire arrival moved this instance's x loads, d49854c) */
    float sum[PER];
    static_assert(qn_tile_shape<W, R * NG>::PER == PER && qn_tile_shape<W, R * NG>::NV == NV, "tile_reduce's layout");
    if (!qn_tile_reduce<W, R * NG, G>(&acc[0][0][0], red, part, cnt, tile, sum)) return; /* not the tile's last CTA */
#pragma unroll
    for (int u = 0; u < PER; u++) {
        const int v = (int)threadIdx.x + u * (W * 32);
        if (v >= NV) continue;
        /* c0, c1: row g, tokens 2t, 2t+1; c2, c3: row g + 8 */
        const int ri = v / 32, ln = v % 32, e = ri % 4, ng = (ri / 4) % NG, r = ri / (4 * NG);
        const int tok = 8 * ng + 2 * (ln % 4) + (e & 1);
        const int64_t row = (strip0 + r) * QN_LQ4M_ROWS + ln / 4 + 8 * (e >> 1);
        if (tok < n) y[(size_t)tok * (size_t)N + row] = sum[u];
    }
}

/* lq4m_decode_lut without a table in shared memory: lane l holds map16[l % 16] in m, and the lanes exchange the
 * values (two shuffles per register; the dequant kernel's rate is not the decode's). */
__device__ __forceinline__ void lq4m_decode_shfl(uint32_t v, uint32_t sg, uint32_t sh, bool hi, uint32_t m,
                                                 uint32_t a[4]) {
    const __half2 ag = qn_bits_h2(__byte_perm(sg, 0, hi ? 0x3232 : 0x1010));
    const __half2 ah = qn_bits_h2(__byte_perm(sh, 0, hi ? 0x3232 : 0x1010));
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const uint32_t b = (v >> (8 * e)) & 0xFFu;
        const uint32_t lo = __shfl_sync(0xffffffffu, m, (int)(b & 15)), hi16 = __shfl_sync(0xffffffffu, m, (int)(b >> 4));
        a[e] = qn_h2_bits(__hmul2(qn_bits_h2(lo | hi16 << 16), (e & 1) ? ah : ag));
    }
}

/* One warp per chunk: its 16 x 128 weights as fp16, two 16-byte stores per row pair and 32-column block. L: a table
 * format (map as lq4m_mats.map). */
template <bool L>
__global__ void __launch_bounds__(256) lq4m_dequant_kernel(const uint4 *__restrict__ w, /* [N/16][K/128] chunks */
                                                           __half *__restrict__ out,    /* [N][K] */
                                                           int64_t n_chunks, int64_t K, const lq4m_mats mp) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int64_t chunk = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5);
    if (chunk >= n_chunks) return; /* whole warps: the shuffles below see all 32 lanes */
    const uint32_t m = L ? lq4m_map_at(mp.map, lane & 15) : 0;
    const int64_t nch = K / QN_LQ4M_COLS, strip = chunk / nch, c = chunk % nch;
    const lq4m_chunk ch = lq4m_load(w + (size_t)chunk * LQ4M_U4, lane, g);
    __half *rg = out + (size_t)(strip * QN_LQ4M_ROWS + g) * (size_t)K + (size_t)c * QN_LQ4M_COLS + 8 * t;
    __half *rh = rg + 8 * (size_t)K;
    const uint32_t words[8] = {ch.q0.x, ch.q0.y, ch.q0.z, ch.q0.w, ch.q1.x, ch.q1.y, ch.q1.z, ch.q1.w};
#pragma unroll
    for (int p = 0; p < 4; p++) {
        uint32_t a0[4], a1[4]; /* tiles j = 0, 1: columns 8t + 4j + (0..3) of block p */
        if constexpr (L) {
            lq4m_decode_shfl(words[2 * p], ch.sg, ch.sh, p >= 2, m, a0);
            lq4m_decode_shfl(words[2 * p + 1], ch.sg, ch.sh, p >= 2, m, a1);
        } else {
            lq4m_decode(words[2 * p], ch.sg, ch.sh, a0);
            lq4m_decode(words[2 * p + 1], ch.sg, ch.sh, a1);
        }
        qn_stg128(rg + 32 * p, make_uint4(a0[0], a0[2], a1[0], a1[2]));
        qn_stg128(rh + 32 * p, make_uint4(a0[1], a0[3], a1[1], a1[3]));
    }
}

/* --- host --- */

static bool lq4m_shape_ok(int64_t N, int64_t K) {
    return N >= 0 && K > 0 && N % QN_LQ4M_ROWS == 0 && K % QN_LQ4M_COLS == 0 && K <= ((int64_t)1 << 30) &&
           N <= ((int64_t)1 << 31);
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* CTAs of the heaviest instance (NG = 2, R = 2) of fmt resident per SM */
int qn_lq4m_ctas_per_sm(qn_qformat fmt) {
    int b = 0;
    const cudaError_t e = qn_lq4m_is_lut(fmt)
        ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, lq4m_mma_kernel<2, 2, false, true, 2, LQ4M_WARPS>,
                                                        LQ4M_THREADS, LQ4M_LUT_BYTES)
        : cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, lq4m_mma_kernel<2, 2, false, false, 2, LQ4M_WARPS>, LQ4M_THREADS, 0);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        b = 1;
    }
    return b < 1 ? 1 : b;
}

/* One call: 1..LQ4M_MAX_MATS matrices of width K on the same x. */
typedef struct lq4m_call {
    qn_qformat fmt; /* LQ4M, LNF4M, LFP4M */
    int nm;
    const void *w[LQ4M_MAX_MATS];
    int64_t N[LQ4M_MAX_MATS];
    float *y[LQ4M_MAX_MATS];
    int64_t strips; /* over all matrices */
    bool even;      /* every matrix's strips pair up */
} lq4m_call;

static lq4m_call lq4m_call_of(qn_qformat fmt, int nm, const int64_t *N) {
    lq4m_call c = {};
    c.fmt = fmt, c.nm = nm, c.even = true;
    for (int i = 0; i < nm; i++) {
        c.N[i] = N[i];
        c.strips += N[i] / QN_LQ4M_ROWS;
        c.even = c.even && (N[i] / QN_LQ4M_ROWS) % 2 == 0;
    }
    return c;
}

/* One launch: token groups, strips per CTA, K split. */
typedef struct lq4m_plan {
    int ng, r, split;
} lq4m_plan;

/* For a launch of `take` tokens (<= 16): one group up to 8 tokens, else two and two strips per CTA (when every
 * matrix's strips pair up). The K split: the smallest that gives every slot (SMs x resident CTAs of the heaviest
 * instance, counted in CTAs of the launch's warps) a strip, keeping at least two chunks per warp; a forced split as
 * given. Measured on an H100 (8B shapes, bench/results/gpu-lq4m-2026-12-06.md) at n = 1 and 16: q/o 4096x4096 best
 * at split 4, gate/up 14336x4096 at 1, down 4096x14336 at 4, as this rule picks. The table formats at <= 8 tokens
 * (CTAs of QN_LQ4M_LUT_WARPS): half the slots, so the splits of their measurement (gpu-lnf4m-2026-12-06.md, n = 1:
 * q/o 2, gate/up 1, down 2; with 4-warp slots down took split 4, 18.25 us against 14.99). Tiles past the 64 KB of
 * counters: no split. */
static lq4m_plan lq4m_make_plan(const qn_quant_cuda_ctx *ctx, const lq4m_call *c, int64_t K, int64_t take, int forced) {
    const int64_t nch = K / QN_LQ4M_COLS;
    lq4m_plan p = {take <= 8 ? 1 : 2, take > 8 && c->even ? 2 : 1, 1};
    const int64_t tiles = c->strips / p.r;
    if (forced > 0) p.split = forced;
    else {
        const int ctas = qn_lq4m_is_lut(c->fmt) ? ctx->lnf4m_ctas : ctx->lq4m_ctas;
        /* slots of this launch's CTAs: the resident count is of LQ4M_WARPS-warp CTAs */
        int64_t slots = (int64_t)ctx->n_sm * (ctas > 0 ? ctas : qn_lq4m_ctas_per_sm(c->fmt)) * LQ4M_WARPS /
                        lq4m_warps(c->fmt, p.ng);
        if (slots < ctx->n_sm) slots = ctx->n_sm;
        const int64_t warps = lq4m_warps(c->fmt, p.ng);
        while (p.split < LQ4M_MAX_SPLIT && c->strips * p.split < slots && nch / (2 * p.split) >= 2 * warps) p.split *= 2;
    }
    if (p.split > nch) p.split = (int)nch;
    const int64_t cps = (nch + p.split - 1) / p.split;
    p.split = (int)((nch + cps - 1) / cps); /* no empty CTAs */
    if (p.split > 1 && tiles > (int64_t)(LQ4M_WS_COUNTERS / sizeof(unsigned))) p.split = 1;
    return p;
}

static size_t lq4m_part_bytes(const lq4m_call *c, lq4m_plan p) {
    return p.split > 1 ? (size_t)(c->strips / p.r) * (size_t)p.split * (size_t)(p.r * p.ng * 128) * sizeof(float) : 0;
}

/* partial tiles of every launch of an n-token call: launches of 16, then the rest */
static size_t lq4m_parts_for(const qn_quant_cuda_ctx *ctx, const lq4m_call *c, int64_t K, int64_t n, int forced) {
    size_t b = lq4m_part_bytes(c, lq4m_make_plan(ctx, c, K, n < LQ4M_TOKENS ? n : LQ4M_TOKENS, forced));
    if (n > LQ4M_TOKENS && n % LQ4M_TOKENS) {
        const size_t r = lq4m_part_bytes(c, lq4m_make_plan(ctx, c, K, n % LQ4M_TOKENS, forced));
        if (r > b) b = r;
    }
    return b;
}

/* the mma kernel for (path, n): anything but DEQUANT_CUBLAS, AUTO up to QN_LQ4M_MMA_MAX_TOKENS (any n without
 * a cuBLAS handle) */
static bool lq4m_mma_path(const qn_quant_cuda_ctx *ctx, qn_quant_path path, int64_t n) {
    if (path == QN_QUANT_PATH_AUTO) return n <= QN_LQ4M_MMA_MAX_TOKENS || !ctx->cublas;
    return path != QN_QUANT_PATH_DEQUANT_CUBLAS && path != QN_QUANT_PATH_TC;
}

#ifndef QN_HAVE_SM90A /* no sm_90a code in this build (CMakeLists.txt): no tensor-core GEMM */
bool qn_lq4m_tc_takes(int sm, qn_qformat fmt, int64_t N, int64_t K) { return false; }
qn_status qn_lq4m_tc_prepare_x(const void *x, int64_t n, int64_t K, void *xt, void *stream) { return QN_ERR_UNSUPPORTED; }
size_t qn_lq4m_tc_part_bytes(int n_sm, int64_t N, int64_t K, int64_t n) { return 0; }
int qn_lq4m_tc_split(int n_sm, int64_t N, int64_t K, int64_t n, int *cps) {
    *cps = (int)(K / 64);
    return 1;
}
qn_status qn_lq4m_tc_cuda(int sm, int n_sm, qn_qformat fmt, const void *w, int64_t N, int64_t K, const void *xt, int64_t n,
                          float *y, void *part, size_t part_bytes, void *stream) {
    return QN_ERR_UNSUPPORTED;
}
#endif

/* the tensor-core GEMM for (path, n): path TC, or AUTO in its window (qn_lq4m_tc_auto; ahead of the mma kernel and
 * dequant + cuBLAS), where it takes every matrix of the call */
static bool lq4m_tc_path(const qn_quant_cuda_ctx *ctx, qn_quant_path path, const lq4m_call *c, int64_t K, int64_t n) {
    if (path != QN_QUANT_PATH_TC && (path != QN_QUANT_PATH_AUTO || !qn_lq4m_tc_auto(n))) return false;
    for (int i = 0; i < c->nm; i++)
        if (!qn_lq4m_tc_takes(ctx->sm, c->fmt, c->N[i], K)) return false;
    return true;
}

/* the tensor-core GEMM's workspace: the counters' room, the prepared x [n][K] fp16, the largest K split's sums */
static size_t lq4m_tc_size(const qn_quant_cuda_ctx *ctx, const lq4m_call *c, int64_t K, int64_t n) {
    size_t part = 0;
    for (int i = 0; i < c->nm; i++) {
        const size_t b = qn_lq4m_tc_part_bytes(ctx->n_sm, c->N[i], K, n);
        part = b > part ? b : part;
    }
    return LQ4M_WS_COUNTERS + align256((size_t)n * (size_t)K * sizeof(__half)) + align256(part);
}

/* the path's workspace: split-K counters and partial tiles, or (dequant + cuBLAS, one matrix after the other) the
 * largest matrix in fp16, or (tensor-core GEMM) the prepared x [n][K] fp16 and the split's sums; AUTO where it takes
 * the tensor-core GEMM from QN_LQ4M_TC_MIN_TOKENS on: at least the GEMM's room for min(n, QN_LQ4M_TC_MAX_TOKENS)
 * tokens, so that a size asked for the largest n serves every n below it */
static size_t lq4m_inner_size(const qn_quant_cuda_ctx *ctx, qn_quant_path path, const lq4m_call *c, int64_t K,
                              int64_t n, int split) {
    if (path == QN_QUANT_PATH_TC) return lq4m_tc_size(ctx, c, K, n);
    const int64_t nt = n < QN_LQ4M_TC_MAX_TOKENS ? n : QN_LQ4M_TC_MAX_TOKENS;
    const size_t tc = lq4m_tc_path(ctx, path, c, K, nt) ? lq4m_tc_size(ctx, c, K, nt) : 0;
    if (!lq4m_mma_path(ctx, path, n)) {
        int64_t most = 0;
        for (int i = 0; i < c->nm; i++) most = c->N[i] > most ? c->N[i] : most;
        const size_t dq = LQ4M_WS_COUNTERS + align256((size_t)most * (size_t)K * sizeof(__half));
        return dq > tc ? dq : tc;
    }
    const size_t pb = lq4m_parts_for(ctx, c, K, n, split), mma = pb ? LQ4M_WS_COUNTERS + align256(pb) : 0;
    return mma > tc ? mma : tc;
}

/* with a perm, the gathered x behind the path's workspace, never over the counters (lutq_cuda.cu's rule) */
static size_t lq4m_x_offset(size_t inner) { return align256(inner > LQ4M_WS_COUNTERS ? inner : LQ4M_WS_COUNTERS); }

/* the whole workspace: the path's, then with act-order the gathered x [n][K] */
static size_t lq4m_ws_need(size_t inner, bool act_order, int64_t n, int64_t K) {
    return act_order ? lq4m_x_offset(inner) + align256((size_t)n * (size_t)K * sizeof(__half)) : inner;
}

size_t qn_lq4m_workspace_size_group(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, int path, const int64_t *N, int n_mat,
                                    int64_t K, bool act_order, int64_t n) {
    if (!ctx || !N || n <= 0 || n_mat < 1 || n_mat > LQ4M_MAX_MATS || !qn_lq4m_is_format(fmt)) return 0;
    if (act_order && qn_lq4m_is_lut(fmt)) return 0;
    for (int i = 0; i < n_mat; i++)
        if (N[i] <= 0 || !lq4m_shape_ok(N[i], K)) return 0;
    const lq4m_call c = lq4m_call_of(fmt, n_mat, N);
    return lq4m_ws_need(lq4m_inner_size(ctx, (qn_quant_path)path, &c, K, n, 0), act_order, n, K);
}

size_t qn_lq4m_workspace_size(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, int path, int64_t N, int64_t K,
                              bool act_order, int64_t n) {
    return qn_lq4m_workspace_size_group(ctx, fmt, path, &N, 1, K, act_order, n);
}

/* the table of fmt into m.map (zeros for LQ4M) */
static void lq4m_set_map(qn_qformat fmt, lq4m_mats *m) {
    uint16_t map16[16];
    qn_lq4m_map16(fmt, map16);
    for (int i = 0; i < 8; i++) m->map[i] = (uint32_t)map16[2 * i] | (uint32_t)map16[2 * i + 1] << 16;
}

qn_status qn_lq4m_dequant_cuda(qn_qformat fmt, const void *w, int64_t N, int64_t K, void *out, void *stream) {
    if (!qn_lq4m_is_format(fmt)) return QN_ERR_UNSUPPORTED;
    if (!lq4m_shape_ok(N, K)) return QN_ERR_SHAPE;
    if (!w || !out || !aligned16(w) || !aligned16(out)) return QN_ERR_INVALID_ARG;
    const int64_t chunks = N / QN_LQ4M_ROWS * (K / QN_LQ4M_COLS);
    if (chunks == 0) return QN_OK;
    const int64_t blocks = (chunks + 7) / 8;
    if (blocks > 0x7fffffff) return QN_ERR_SHAPE;
    lq4m_mats m = {};
    lq4m_set_map(fmt, &m);
    if (qn_lq4m_is_lut(fmt))
        lq4m_dequant_kernel<true><<<(unsigned)blocks, 256, 0, (cudaStream_t)stream>>>((const uint4 *)w, (__half *)out, chunks, K, m);
    else
        lq4m_dequant_kernel<false><<<(unsigned)blocks, 256, 0, (cudaStream_t)stream>>>((const uint4 *)w, (__half *)out, chunks, K, m);
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}

/* Shared memory of a launch's act-order gather (lq4m_mma_kernel G): take tokens x the CTA's columns + pad. */
static size_t lq4m_xs_bytes(int64_t K, int64_t take, lq4m_plan p) {
    const int64_t nch = K / QN_LQ4M_COLS, cps = (nch + p.split - 1) / p.split;
    return (size_t)take * (size_t)(cps * QN_LQ4M_COLS + 8) * sizeof(__half);
}
#define LQ4M_XS_MAX ((size_t)48 * 1024) /* the default dynamic shared memory limit */

/* Activations a CTA gathers itself at most (tokens x its columns); beyond, a gather kernel (PDL) runs first. Each
 * CTA gathers its columns again (every strip of the range), scattered 2-byte reads that need x in L1, which the
 * gather buffer itself shrinks: measured on an H100 (bench/results/gpu-lq4m-2026-12-06.md) with no limit but the
 * 48 KB, act-order at n = 1 cost +32% over the plain weights on the 8B shapes and at n = 4 up to 11x (down). */
#ifndef QN_LQ4M_XS_MAX_ELEMS
#define QN_LQ4M_XS_MAX_ELEMS 2048
#endif

/* Whether every launch of an n-token call gathers x itself (else a gather kernel runs first). */
static bool lq4m_fused_gather(const qn_quant_cuda_ctx *ctx, const lq4m_call *c, int64_t K, int64_t n, int forced) {
    for (int64_t t0 = 0; t0 < n; t0 += LQ4M_TOKENS) {
        const int64_t take = n - t0 < LQ4M_TOKENS ? n - t0 : LQ4M_TOKENS;
        const lq4m_plan p = lq4m_make_plan(ctx, c, K, take, forced);
        const int64_t nch = K / QN_LQ4M_COLS, cols = (nch + p.split - 1) / p.split * QN_LQ4M_COLS;
        if (lq4m_xs_bytes(K, take, p) > LQ4M_XS_MAX || take * cols > QN_LQ4M_XS_MAX_ELEMS) return false;
    }
    return true;
}

/* Activations a CTA of a one-group launch without perm stages in shared memory at most (tokens x its columns; 0:
 * never): its chunks then read x there instead of issuing global loads in the loop, each a wait of an L2 round trip
 * (Nsight Compute put 15% of the n = 1 kernel's stall samples on the first mma after them, q/o). Measured on an H100
 * (bench/results/gpu-lq4m-tc-2026-12-06.md, r6, same call): n = 1 q/o 6.67 / gate/up 13.38 / down 13.44 us against
 * 7.12 / 15.07 / 16.01 at 0 and 7.18 / 14.12 / 14.89 for the code before it; 8B GPTQ-4 tg64 412 against 377 and 397
 * t/s. An A/B knob (-D). */
#ifndef QN_LQ4M_STAGE_X_ELEMS
#define QN_LQ4M_STAGE_X_ELEMS 4096
#endif

/* Chunks in flight per warp for launches of up to 8 tokens (one strip per CTA; 56 registers at 2, 64 at 3); the
 * larger instances keep 2. An A/B knob (-D): measured on an H100 (bench/results/gpu-lq4m-2026-12-06.md, 688dd63)
 * 3 and 4 lost to 2 (gate/up n = 1 LQ4M 15.6 and 18.6 us against 14.9; 8B GPTQ-4 tg128 376.6 against 387.7 t/s). */
#ifndef QN_LQ4M_DEPTH1
#define QN_LQ4M_DEPTH1 2
#endif

typedef void (*lq4m_fn)(const lq4m_mats, const __half *, const int32_t *, int, int64_t, int, float *, unsigned *);

/* x: kernel column order, or the original one with perm (every launch then gathers: lq4m_fused_gather). */
static qn_status lq4m_mma(const qn_quant_cuda_ctx *ctx, const lq4m_call *c, int64_t K, const __half *x,
                          const int32_t *perm, int64_t n, int forced, void *ws, size_t ws_bytes, cudaStream_t s) {
    const int64_t nch = K / QN_LQ4M_COLS;
    if (c->strips > 0x7fffffff) return QN_ERR_SHAPE;
    for (int64_t t0 = 0; t0 < n; t0 += LQ4M_TOKENS) {
        const int take = (int)(n - t0 < LQ4M_TOKENS ? n - t0 : LQ4M_TOKENS);
        const lq4m_plan p = lq4m_make_plan(ctx, c, K, take, forced);
        unsigned *cnt = NULL;
        float *part = NULL;
        if (p.split > 1) {
            if (!ws || ws_bytes < LQ4M_WS_COUNTERS + lq4m_part_bytes(c, p)) return QN_ERR_INVALID_ARG;
            cnt = (unsigned *)ws;
            part = (float *)((uint8_t *)ws + LQ4M_WS_COUNTERS);
        }
        lq4m_mats m = {};
        m.nm = c->nm;
        lq4m_set_map(c->fmt, &m);
        for (int i = 0, tile = 0; i < c->nm; i++) {
            m.w[i] = (const uint4 *)c->w[i], m.y[i] = c->y[i] + t0 * c->N[i], m.N[i] = c->N[i], m.tile0[i] = tile;
            tile += (int)(c->N[i] / QN_LQ4M_ROWS / p.r);
        }
        const int cps = (int)((nch + p.split - 1) / p.split);
        const dim3 grid((unsigned)(c->strips / p.r), (unsigned)p.split, 1);
        const bool lut = qn_lq4m_is_lut(c->fmt);
        if (lut && perm) return QN_ERR_INTERNAL; /* refused by lq4m_run */
        const size_t xcopy = lq4m_xs_bytes(K, take, p); /* x in shared memory, gathered or staged */
        const int64_t xcols = (int64_t)take * cps * QN_LQ4M_COLS;
        /* one-group launches only: staging the two-group ones (9..16 tokens) made q/o at n = 16 slower on an H100
         * (12.36 against 9.01 us, bench/results/gpu-kq-tc-2026-12-06.md) */
        const bool stage = !perm && !lut && p.ng == 1 && xcols <= QN_LQ4M_STAGE_X_ELEMS &&
                           xcopy <= LQ4M_XS_MAX; /* a knob set past the limit stages less */
        const size_t xs = perm || stage ? xcopy : lut ? LQ4M_LUT_BYTES : 0;
        if (xs > LQ4M_XS_MAX) return QN_ERR_INTERNAL; /* the caller gathers first (lq4m_fused_gather) */
        const lq4m_fn fn =
            lut    ? (p.ng == 1 ? lq4m_mma_kernel<1, 1, false, true, QN_LQ4M_DEPTH1, QN_LQ4M_LUT_WARPS>
                      : p.r == 1 ? lq4m_mma_kernel<2, 1, false, true, 2, LQ4M_WARPS>
                                 : lq4m_mma_kernel<2, 2, false, true, 2, LQ4M_WARPS>)
            : perm || stage ? (p.ng == 1 ? lq4m_mma_kernel<1, 1, true, false, QN_LQ4M_DEPTH1, LQ4M_WARPS>
                      : p.r == 1 ? lq4m_mma_kernel<2, 1, true, false, 2, LQ4M_WARPS> : lq4m_mma_kernel<2, 2, true, false, 2, LQ4M_WARPS>)
                   : (p.ng == 1 ? lq4m_mma_kernel<1, 1, false, false, QN_LQ4M_DEPTH1, LQ4M_WARPS>
                      : p.r == 1 ? lq4m_mma_kernel<2, 1, false, false, 2, LQ4M_WARPS>
                                 : lq4m_mma_kernel<2, 2, false, false, 2, LQ4M_WARPS>);
        QN_CUDA_TRY(qn_launch(fn, grid, dim3(32 * lq4m_warps(c->fmt, p.ng)), xs, s, ctx->sm >= 90, m, x + t0 * K, perm, take, K, cps,
                              part, cnt));
    }
    return QN_OK;
}

/* The call on c (weights, outputs and shapes checked by the caller). */
static qn_status lq4m_run(const qn_quant_cuda_ctx *ctx, const lq4m_call *c, int64_t K, const int32_t *perm,
                          const void *x, int64_t n, void *workspace, size_t ws_bytes, void *stream,
                          const qn_quant_matmul_opts *opts) {
    if (ctx->sm < 80) return QN_ERR_UNSUPPORTED;
    if (!x || !aligned16(x) || (workspace && !aligned16(workspace))) return QN_ERR_INVALID_ARG;
    if (perm && qn_lq4m_is_lut(c->fmt)) return QN_ERR_UNSUPPORTED; /* qn_lq4m_takes refuses such weights */
    const qn_quant_path path = opts ? opts->path : QN_QUANT_PATH_AUTO;
    const int split = opts ? opts->split : 0;
    if (split < 0 || split > LQ4M_MAX_SPLIT || (split & (split - 1)) != 0) return QN_ERR_INVALID_ARG;
    const bool tc = lq4m_tc_path(ctx, path, c, K, n), mma = !tc && lq4m_mma_path(ctx, path, n);
    if (path == QN_QUANT_PATH_TC && !tc) return QN_ERR_UNSUPPORTED;
    if (!mma && !tc && !ctx->cublas) return QN_ERR_INVALID_ARG;
    const size_t inner = lq4m_inner_size(ctx, path, c, K, n, split);
    const size_t need = lq4m_ws_need(inner, perm != NULL, n, K);
    if (need && (!workspace || ws_bytes < need)) return QN_ERR_INVALID_ARG;
    const cudaStream_t s = (cudaStream_t)stream;
    if (mma && perm && aligned16(perm) && lq4m_fused_gather(ctx, c, K, n, split))
        return lq4m_mma(ctx, c, K, (const __half *)x, perm, n, split, workspace, inner, s);
    const void *xk = x;
    if (perm) { /* once for all matrices */
        void *xp = (uint8_t *)workspace + lq4m_x_offset(inner);
        const qn_status st = qn_lutq_gather_cuda_ex(x, perm, n, K, xp, ctx->sm >= 90, stream);
        if (st != QN_OK) return st;
        xk = xp;
    }
    if (mma) return lq4m_mma(ctx, c, K, (const __half *)xk, NULL, n, split, workspace, inner, s);
    if (tc) { /* x in the GEMM's k order once, behind the counters, then the split's sums; matrix by matrix */
        void *xt = (uint8_t *)workspace + LQ4M_WS_COUNTERS;
        const size_t xb = align256((size_t)n * (size_t)K * sizeof(__half));
        void *part = (uint8_t *)xt + xb;
        const size_t part_bytes = inner - LQ4M_WS_COUNTERS - xb;
        qn_status st = qn_lq4m_tc_prepare_x(xk, n, K, xt, stream);
        for (int i = 0; i < c->nm && st == QN_OK; i++)
            st = qn_lq4m_tc_cuda(ctx->sm, ctx->n_sm, c->fmt, c->w[i], c->N[i], K, xt, n, c->y[i], part, part_bytes, stream);
        return st;
    }
    /* dequant + cuBLAS, matrix by matrix, through the workspace */
    void *w16 = (uint8_t *)workspace + LQ4M_WS_COUNTERS;
    for (int i = 0; i < c->nm; i++) {
        qn_status st = qn_lq4m_dequant_cuda(c->fmt, c->w[i], c->N[i], K, w16, stream);
        if (st == QN_OK) st = qn_quant_gemm_f16_cuda(ctx, w16, c->N[i], K, xk, n, c->y[i], stream);
        if (st != QN_OK) return st;
    }
    return QN_OK;
}

qn_status qn_lq4m_matmul_cuda(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const void *w, const int32_t *perm, int64_t N,
                              int64_t K, const void *x, int64_t n, float *y, void *workspace, size_t ws_bytes,
                              void *stream, const qn_quant_matmul_opts *opts) {
    if (!ctx) return QN_ERR_INVALID_ARG;
    if (!qn_lq4m_is_format(fmt)) return QN_ERR_UNSUPPORTED;
    if (!lq4m_shape_ok(N, K) || n < 0) return QN_ERR_SHAPE;
    if (n == 0 || N == 0) return QN_OK;
    if (!w || !y || !aligned16(w)) return QN_ERR_INVALID_ARG;
    lq4m_call c = lq4m_call_of(fmt, 1, &N);
    c.w[0] = w, c.y[0] = y;
    return lq4m_run(ctx, &c, K, perm, x, n, workspace, ws_bytes, stream, opts);
}

qn_status qn_lq4m_matmul_group_cuda(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const qn_quant_mat *mats, int n_mat,
                                    int64_t K, const int32_t *perm, const void *x, int64_t n, void *workspace,
                                    size_t ws_bytes, void *stream, const qn_quant_matmul_opts *opts) {
    if (!ctx || !mats || n_mat < 1 || n_mat > LQ4M_MAX_MATS) return QN_ERR_INVALID_ARG;
    if (!qn_lq4m_is_format(fmt)) return QN_ERR_UNSUPPORTED;
    if (n < 0) return QN_ERR_SHAPE;
    int64_t N[LQ4M_MAX_MATS];
    int nm = 0;
    lq4m_call c;
    const void *w[LQ4M_MAX_MATS];
    float *y[LQ4M_MAX_MATS];
    for (int i = 0; i < n_mat; i++) {
        if (!lq4m_shape_ok(mats[i].N, K)) return QN_ERR_SHAPE;
        if (mats[i].N == 0) continue; /* nothing to compute */
        if (!mats[i].w || !mats[i].y || !aligned16(mats[i].w)) return QN_ERR_INVALID_ARG;
        N[nm] = mats[i].N, w[nm] = mats[i].w, y[nm] = mats[i].y, nm++;
    }
    if (n == 0 || nm == 0) return QN_OK;
    c = lq4m_call_of(fmt, nm, N);
    for (int i = 0; i < nm; i++) c.w[i] = w[i], c.y[i] = y[i];
    return lq4m_run(ctx, &c, K, perm, x, n, workspace, ws_bytes, stream, opts);
}
