/* kq_frag.cu — the fragment-direct GEMV of kq_frag.h: Q4_K blocks straight from global memory into mma.sync A
 * fragments, 1..16 tokens per launch. Holds no state.
 *
 * The k order. A Q4_K block (formats.md §2.2) is d, dmin (fp16), 12 bytes of 6-bit scales/mins, then qs[128]:
 * byte 32p + l holds element 64p + l (low nibble, sub-block 2p) and 64p + 32 + l (high nibble, sub-block 2p + 1).
 * Lane (g = lane / 4, t = lane % 4) of a warp loads, per block and row (g and g + 8 of its 16-row strip), the
 * 16-byte pieces P = t and t + 4 of qs (the four lanes of a row read its 128 bytes as two runs of 64) and the
 * 16-byte header. Word i (bytes 4i..4i+3) of piece P = t + 4s holds, in nibble c, the elements
 *   E = 64 (t / 2 + 2s) + 16 (t % 2) + 32c + 4i + m,  m < 4,
 * all of one sub-block, e = 2s + c of the lane's four (j = 2 (t / 2) + 4s + c). Each (s, i, c) is one m16n8k16 tile:
 * the lane's k slots 2t, 2t + 1 take elements E (m = 0, 1) and 2t + 8, 2t + 9 take m = 2, 3, in rows g (a0, a2)
 * and g + 8 (a1, a3): both rows decode the same word of their own piece. Every lane of the tile agrees on (s, i, c)
 * and sees its own t, so the B fragment of lane (token, t) is x[token][E .. E + 3]: for i = 0..3 at fixed (s, c)
 * that is 16 contiguous halves, two 16-byte loads. A block is 16 tiles per strip and token group.
 * Decode, as kq_decode.cuh's Q4_K (the same fp16 bits): the nibble pair moved to halves (PRMT, shift for c = 1,
 * one LOP3: the half2 (1024 + q, 1024 + q')), minus 1024 (exact), times fp16(d sc) plus fp16(-dmin m) (one HFMA2).
 *
 * Work split, as lq4m_cuda.cu's mma kernel: a CTA of KF_WARPS warps takes R strips (two at 9..16 tokens, when the
 * strips pair up, so that each B fragment feeds two A fragments) and a run of 256-element blocks (split-K over
 * gridDim.y); warp w takes blocks w, w + KF_WARPS, ... of the run, D blocks in flight. The warps' tiles are summed in
 * shared memory in warp order; with a split the last CTA of the tile (arrival counter) sums the split's tiles in
 * order: deterministic. On sm_90 a PDL dependent: its first weights stream in while the kernel before finishes; x is
 * read (coherent loads) and anything written only after the wait.
 * Measured: bench/results/gpu-kq-frag-*.md. */
#include <stdint.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_util.cuh"
#include "kernels/common/tile_reduce.cuh"
#include "kernels/quant/gguf/kq_frag.h"

#define KF_WARPS 4
#define KF_THREADS (32 * KF_WARPS)
#define KF_BE 256 /* elements per block */
#define KF_BB 144 /* bytes per block */
#define KF_ROWS 16
#define KF_WS_COUNTERS QN_QUANT_WS_COUNTERS

/* One block of a strip as lane (g, t) holds it. */
struct kf_blk {
    uint4 hg, hh;     /* headers (d, dmin, scales[12]) of rows g, g + 8 */
    uint4 g0, g1;     /* qs pieces t, t + 4 of row g */
    uint4 h0, h1;     /* of row g + 8 */
};

__device__ __forceinline__ kf_blk kf_load(const uint8_t *bg, const uint8_t *bh, int t) {
    kf_blk k;
    k.hg = qn_ldg_stream128(bg);
    k.hh = qn_ldg_stream128(bh);
    k.g0 = qn_ldg_stream128(bg + 16 + 16 * t);
    k.g1 = qn_ldg_stream128(bg + 80 + 16 * t);
    k.h0 = qn_ldg_stream128(bh + 16 + 16 * t);
    k.h1 = qn_ldg_stream128(bh + 80 + 16 * t);
    return k;
}

/* A header's (fp16(d sc_j), fp16(-dmin m_j)) as half2 pairs for the lane's sub-blocks of pieces t + 4s, j = 2 (t / 2)
 * + 4s + c (c = 0, 1: low, high nibbles): get_scale_min_k4 on the bytes 2 (t / 2), 2 (t / 2) + 1 of the scale words. */
__device__ __forceinline__ void kf_scales(uint4 h, int t, int s, __half2 hs[2], __half2 hm[2]) {
    const float d = __low2float(qn_bits_h2(h.x)), dmin = __high2float(qn_bits_h2(h.x));
    const int sh = 16 * (t >> 1);
    const uint32_t y = h.y >> sh, z = h.z >> sh, w = h.w >> sh; /* scales[0..3], [4..7], [8..11] from byte 2 (t / 2) */
#pragma unroll
    for (int c = 0; c < 2; c++) {
        const int sc = s == 0 ? (int)((y >> (8 * c)) & 63) : (int)(((w >> (8 * c)) & 0xF) | ((y >> (8 * c + 2)) & 0x30));
        const int mn = s == 0 ? (int)((z >> (8 * c)) & 63) : (int)(((w >> (8 * c + 4)) & 0xF) | ((z >> (8 * c + 2)) & 0x30));
        hs[c] = __float2half2_rn(d * (float)sc);
        hm[c] = __float2half2_rn(-dmin * (float)mn);
    }
}

/* nibble pair at bits 0 and 16 -> the fp16 weights (q - 0) fp16(d sc) + fp16(-dmin m), one rounding */
__device__ __forceinline__ uint32_t kf_weight(uint32_t v, __half2 hs, __half2 hm) {
    return qn_h2_bits(__hfma2(__hsub2(qn_bits_h2(qn_nib_h2(v)), qn_bits_h2(0x64006400u)), hs, hm));
}

__device__ __forceinline__ uint32_t kf_word(uint4 v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

/* NG groups of 8 tokens (n <= 8 NG), R strips per CTA, D blocks loaded ahead per strip and warp (beside the one in
 * use). w [N][K/256] blocks; x [n][K] fp16; y [n][N] f32; with gridDim.y > 1, part [tiles][split][R NG 128] f32
 * and cnt [tiles] (tile = blockIdx.x: strips R tile .. R tile + R - 1). bps: blocks per split. */
template <int NG, int R, int D>
__global__ void __launch_bounds__(KF_THREADS)
    kq_frag_q4k_kernel(const uint8_t *__restrict__ w, int64_t N, int64_t K, const __half *__restrict__ x, int n,
                       int bps, float *__restrict__ y, float *__restrict__ part, unsigned *__restrict__ cnt) {
    constexpr int NV = qn_tile_shape<KF_WARPS, R * NG>::NV;   /* outputs of a CTA's tile */
    constexpr int PER = qn_tile_shape<KF_WARPS, R * NG>::PER; /* of them per thread */
    qn_pdl_trigger(); /* the next kernel (launched with PDL) may start streaming its own weights */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int64_t tile = blockIdx.x, row_bytes = K / KF_BE * KF_BB;
    const int nb = (int)(K / KF_BE);
    const int b0 = (int)blockIdx.y * bps, b1 = min(b0 + bps, nb);
    const uint8_t *rg[R], *rh[R]; /* rows g, g + 8 of each strip (clamped to N - 1: their outputs are not stored) */
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int64_t ra = (tile * R + r) * KF_ROWS + g, rb = ra + 8;
        rg[r] = w + (ra < N ? ra : N - 1) * row_bytes;
        rh[r] = w + (rb < N ? rb : N - 1) * row_bytes;
    }
    float acc[R][NG][4] = {};
    kf_blk buf[D][R] = {}; /* blocks b + d KF_WARPS of each strip */
    int b = b0 + warp;
#pragma unroll
    for (int d = 0; d < D; d++)
#pragma unroll
        for (int r = 0; r < R; r++)
            if (b + d * KF_WARPS < b1)
                buf[d][r] = kf_load(rg[r] + (size_t)(b + d * KF_WARPS) * KF_BB, rh[r] + (size_t)(b + d * KF_WARPS) * KF_BB, t);
    qn_pdl_wait(); /* x is the kernel before's output, and no write comes before it has completed; the weights were not */

    const __half *xr[NG]; /* token 8 ng + g's x, at this lane's element offset 64 (t / 2) + 16 (t % 2) */
    bool xv[NG];
#pragma unroll
    for (int ng = 0; ng < NG; ng++) {
        const int tok = 8 * ng + g;
        xv[ng] = tok < n;
        xr[ng] = x + (size_t)(xv[ng] ? tok : 0) * (size_t)K + 64 * (t >> 1) + 16 * (t & 1);
    }
    for (; b < b1; b += KF_WARPS) {
        kf_blk cur[R];
        const bool more = b + D * KF_WARPS < b1;
#pragma unroll
        for (int r = 0; r < R; r++) {
            cur[r] = buf[0][r];
#pragma unroll
            for (int d = 0; d + 1 < D; d++) buf[d][r] = buf[d + 1][r];
            if (more)
                buf[D - 1][r] = kf_load(rg[r] + (size_t)(b + D * KF_WARPS) * KF_BB,
                                        rh[r] + (size_t)(b + D * KF_WARPS) * KF_BB, t);
        }
#pragma unroll
        for (int s = 0; s < 2; s++) {
            __half2 sg[R][2], mg[R][2], sh[R][2], mh[R][2]; /* [strip][c] of rows g, g + 8 */
#pragma unroll
            for (int r = 0; r < R; r++) {
                kf_scales(cur[r].hg, t, s, sg[r], mg[r]);
                kf_scales(cur[r].hh, t, s, sh[r], mh[r]);
            }
            uint4 xb[NG][2][2]; /* [group][c][half]: x[tok][E0 .. E0 + 15], E0 = this lane's offset + 128 s + 32 c */
#pragma unroll
            for (int ng = 0; ng < NG; ng++)
#pragma unroll
                for (int c = 0; c < 2; c++)
#pragma unroll
                    for (int hf = 0; hf < 2; hf++)
                        xb[ng][c][hf] = xv[ng] ? qn_ldca128(xr[ng] + (size_t)b * KF_BE + 128 * s + 32 * c + 8 * hf)
                                               : make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const uint32_t vg = kf_word(s ? cur[r].g1 : cur[r].g0, i), vh = kf_word(s ? cur[r].h1 : cur[r].h0, i);
                    const uint32_t g01 = __byte_perm(vg, 0, 0x4140), g23 = __byte_perm(vg, 0, 0x4342);
                    const uint32_t h01 = __byte_perm(vh, 0, 0x4140), h23 = __byte_perm(vh, 0, 0x4342);
#pragma unroll
                    for (int c = 0; c < 2; c++) {
                        const int sft = 4 * c;
                        const uint32_t a0 = kf_weight(g01 >> sft, sg[r][c], mg[r][c]);
                        const uint32_t a1 = kf_weight(h01 >> sft, sh[r][c], mh[r][c]);
                        const uint32_t a2 = kf_weight(g23 >> sft, sg[r][c], mg[r][c]);
                        const uint32_t a3 = kf_weight(h23 >> sft, sh[r][c], mh[r][c]);
#pragma unroll
                        for (int ng = 0; ng < NG; ng++) {
                            const uint4 bx = xb[ng][c][i >> 1];
                            qn_mma_16816(acc[r][ng], a0, a1, a2, a3, (i & 1) ? bx.z : bx.x, (i & 1) ? bx.w : bx.y);
                        }
                    }
                }
        }
    }

    /* the warps' tiles, summed in warp order, then over the split (a fence in every thread, as lq4m's instance that
     * reads x from global memory in its loop) */
    __shared__ float red[KF_WARPS][R * NG * 4][32];
    float sum[PER];
    if (!qn_tile_reduce<KF_WARPS, R * NG, false>(&acc[0][0][0], red, part, cnt, tile, sum)) return;
#pragma unroll
    for (int u = 0; u < PER; u++) {
        const int v = (int)threadIdx.x + u * KF_THREADS;
        if (v >= NV) continue;
        /* c0, c1: row g, tokens 2t, 2t+1; c2, c3: row g + 8 */
        const int ri = v / 32, ln = v % 32, e = ri % 4, ng = (ri / 4) % NG, r = ri / (4 * NG);
        const int tok = 8 * ng + 2 * (ln % 4) + (e & 1);
        const int64_t row = (tile * R + r) * KF_ROWS + ln / 4 + 8 * (e >> 1);
        if (tok < n && row < N) y[(size_t)tok * (size_t)N + row] = sum[u];
    }
}

/* --- host --- */

typedef void (*kf_fn)(const uint8_t *, int64_t, int64_t, const __half *, int, int, float *, float *, unsigned *);

#ifndef QN_KQ_FRAG_DEPTH /* blocks ahead per warp at <= 8 tokens (an A/B knob, -D) */
#define QN_KQ_FRAG_DEPTH 2
#endif

/* One group: QN_KQ_FRAG_DEPTH blocks ahead; two groups on one strip: 2; on two strips: 1 (two strips' blocks already
 * in flight, and the registers of a third set would spill). */
static kf_fn kf_pick(int ng, int r) {
    return ng == 1 ? kq_frag_q4k_kernel<1, 1, QN_KQ_FRAG_DEPTH>
           : r == 1 ? kq_frag_q4k_kernel<2, 1, 2> : kq_frag_q4k_kernel<2, 2, 1>;
}

int kq_frag_ctas_per_sm(void) {
    int b = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kf_pick(2, 2), KF_THREADS, 0) != cudaSuccess) {
        (void)cudaGetLastError();
        b = 1;
    }
    return b < 1 ? 1 : b;
}

static int64_t kf_strips(int64_t N) { return (N + KF_ROWS - 1) / KF_ROWS; }
static int kf_groups(int64_t take) { return take <= 8 ? 1 : 2; }
#ifndef QN_KQ_FRAG_R2 /* two strips per CTA at 9..16 tokens where they pair up (an A/B knob, -D: 0 = always one) */
#define QN_KQ_FRAG_R2 1
#endif
static int kf_r(int64_t N, int64_t take) { return QN_KQ_FRAG_R2 && take > 8 && kf_strips(N) % 2 == 0 ? 2 : 1; }

int kq_frag_split(int n_sm, int ctas, int64_t N, int64_t K, int64_t take) {
    const int64_t nb = K / KF_BE, tiles = kf_strips(N) / kf_r(N, take), slots = (int64_t)n_sm * (ctas > 0 ? ctas : 1);
    int s = 1;
    while (s < QN_KQ_FRAG_MAX_SPLIT && tiles * s < slots && nb / (2 * s) >= 2 * KF_WARPS) s *= 2;
    return s;
}

size_t kq_frag_part_bytes(int64_t N, int64_t n, int split) {
    if (split <= 1 || n < 1) return 0;
    const int64_t take = n < QN_KQ_FRAG_MAX_TOKENS ? n : QN_KQ_FRAG_MAX_TOKENS;
    /* tiles x split x (R NG 128) floats = strips x split x NG x 128 */
    return (size_t)kf_strips(N) * (size_t)split * (size_t)kf_groups(take) * 128 * sizeof(float);
}

qn_status kq_frag_matmul(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const void *w, int64_t N, int64_t K,
                         const void *x, int64_t n, float *y, int split, int must, void *ws, size_t ws_bytes,
                         void *stream) {
    if (!qn_kq_frag_takes(fmt, ctx->sm) || K % KF_BE) return QN_ERR_UNSUPPORTED;
    const int64_t nb = K / KF_BE, strips = kf_strips(N);
    if (strips > 0x7fffffff) return QN_ERR_SHAPE;
    const cudaStream_t s = (cudaStream_t)stream;
    for (int64_t t0 = 0; t0 < n; t0 += QN_KQ_FRAG_MAX_TOKENS) {
        const int take = (int)(n - t0 < QN_KQ_FRAG_MAX_TOKENS ? n - t0 : QN_KQ_FRAG_MAX_TOKENS);
        const int ng = kf_groups(take), r = kf_r(N, take);
        const int64_t tiles = strips / r;
        int sp = split > 0 ? split : kq_frag_split(ctx->n_sm, ctx->kq_frag_ctas > 0 ? ctx->kq_frag_ctas : kq_frag_ctas_per_sm(), N, K, take);
        if (sp > nb) sp = (int)nb;
        const int bps = (int)((nb + sp - 1) / sp);
        sp = (int)((nb + bps - 1) / bps); /* no empty CTAs */
        unsigned *cnt = NULL;
        float *part = NULL;
        if (sp > 1) {
            const bool room = ws && ws_bytes >= KF_WS_COUNTERS + kq_frag_part_bytes(N, take, sp) &&
                              tiles <= (int64_t)(KF_WS_COUNTERS / sizeof(unsigned));
            if (room) {
                cnt = (unsigned *)ws;
                part = (float *)((uint8_t *)ws + KF_WS_COUNTERS);
            } else if (must) return QN_ERR_INVALID_ARG;
            else sp = 1;
        }
        const int b_per = sp > 1 ? bps : (int)nb;
        QN_CUDA_TRY(qn_launch(kf_pick(ng, r), dim3((unsigned)tiles, (unsigned)sp, 1), dim3(KF_THREADS), 0, s,
                              ctx->sm >= 90, (const uint8_t *)w, N, K, (const __half *)x + t0 * K, take, b_per,
                              y + t0 * N, part, cnt));
    }
    return QN_OK;
}
