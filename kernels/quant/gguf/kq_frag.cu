/* kq_frag.cu — the fragment-direct GEMV of kq_frag.h: Q4_K (Q6_KP, Q5_K: their kf_fmt below) blocks straight from
 * global memory into mma.sync A fragments, 1..16 tokens per launch. Holds no state.
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
 * First run on an H100 2026-12-07 (bench/results/gpu-kq-frag-2026-12-07.md); bench/gpu_frag_ab.sh tests and
 * measures it. */
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
#define KF_ROWS 16
#define KF_WS_COUNTERS QN_QUANT_WS_COUNTERS

__device__ __forceinline__ uint32_t kf_word(uint4 v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

/* 4 bytes read once per CTA: as qn_ldg_stream128 */
__device__ __forceinline__ uint32_t qn_ldg_stream32(const void *p) {
    uint32_t v;
    asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];\n" : "=r"(v) : "l"(p));
    return v;
}

/* --- formats: what lane (g, t) loads of one row's block, its scales for pieces t + 4s, the A-fragment registers
 * of word i, nibble class c (lo: elements m = 0, 1, for k slots 2t, 2t + 1; hi: m = 2, 3, for 2t + 8, 2t + 9), and
 * where the 16 elements of (s, c) start in the block (xoff: the B fragments' x). --- */
template <qn_qformat F>
struct kf_fmt;

/* Q4_K (144 bytes: d, dmin, scales[12], qs[128]); element E = 64 (t / 2 + 2s) + 16 (t % 2) + 32c + 4i + m, sub-block
 * j = 2 (t / 2) + 4s + c. */
template <>
struct kf_fmt<QN_QFORMAT_Q4_K> {
    static constexpr int BB = 144;
    static constexpr bool R2 = true; /* two strips per CTA fit the registers (248) */
    struct row {
        uint4 h;      /* d, dmin, scales[12] */
        uint4 p0, p1; /* qs pieces t, t + 4 */
    };
    struct scl {
        __half2 s[2], m[2]; /* [c]: fp16(d sc_j), fp16(-dmin m_j) */
    };
    __device__ static row load(const uint8_t *b, int t) {
        return row{qn_ldg_stream128(b), qn_ldg_stream128(b + 16 + 16 * t), qn_ldg_stream128(b + 80 + 16 * t)};
    }
    __device__ static int xoff(int t, int s, int c) { return 64 * (t >> 1) + 16 * (t & 1) + 128 * s + 32 * c; }
    __device__ static scl scales(const row &r, int t, int s) { return header_scales(r.h, t, s); }
    /* get_scale_min_k4 (j = 2 (t / 2) + 4s + c) on the bytes 2 (t / 2), 2 (t / 2) + 1 of the scale words of the
     * 16-byte header h (d, dmin, scales[12]: Q4_K's and Q5_K's) */
    __device__ static scl header_scales(uint4 h, int t, int s) {
        const float d = __low2float(qn_bits_h2(h.x)), dmin = __high2float(qn_bits_h2(h.x));
        const int sh = 16 * (t >> 1);
        const uint32_t y = h.y >> sh, z = h.z >> sh, w = h.w >> sh; /* scales[0..3], [4..7], [8..11] */
        scl k;
#pragma unroll
        for (int c = 0; c < 2; c++) {
            const int hi2 = 8 * c + 2; /* j >= 4: bits 6, 7 of scales[j - 4], scales[j] to bits 4, 5 */
            const int sc = s == 0 ? (int)((y >> (8 * c)) & 63) : (int)(((w >> (8 * c)) & 0xF) | ((y >> hi2) & 0x30));
            const int mn =
                s == 0 ? (int)((z >> (8 * c)) & 63) : (int)(((w >> (8 * c + 4)) & 0xF) | ((z >> hi2) & 0x30));
            k.s[c] = __float2half2_rn(d * (float)sc);
            k.m[c] = __float2half2_rn(-dmin * (float)mn);
        }
        return k;
    }
    /* the nibble pairs (PRMT, shift, one LOP3: (1024 + q, 1024 + q')), minus 1024 (exact), one HFMA2 */
    __device__ static void decode(const row &r, const scl &k, int t, int s, int i, int c, uint32_t &lo, uint32_t &hi) {
        const uint32_t v = kf_word(s ? r.p1 : r.p0, i);
        const __half2 m1024 = qn_bits_h2(0x64006400u);
        const __half2 q01 = qn_bits_h2(qn_nib_h2(__byte_perm(v, 0, 0x4140) >> (4 * c)));
        const __half2 q23 = qn_bits_h2(qn_nib_h2(__byte_perm(v, 0, 0x4342) >> (4 * c)));
        lo = qn_h2_bits(__hfma2(__hsub2(q01, m1024), k.s[c], k.m[c]));
        hi = qn_h2_bits(__hfma2(__hsub2(q23, m1024), k.s[c], k.m[c]));
    }
};

/* Q5_K (176 bytes: d, dmin, scales[12], qh[32], qs[128]): Q4_K's elements, pieces and scales, and the fifth bit of
 * element 64p + 32c + l (p = t / 2 + 2s, l = 16 (t % 2) + 4i + m) is bit 2p + c of qh[l]: the lane loads the qh
 * half t % 2, whose word i holds l = 16 (t % 2) + 4i + m in byte m. Decode as kq_decode.cuh's Q5_K: the code
 * nibble | bit << 4 as (1024 + q), minus 1024, one HFMA2 with Q4_K's fp16(d sc), fp16(-dmin m). */
template <>
struct kf_fmt<QN_QFORMAT_Q5_K> {
    using Q4 = kf_fmt<QN_QFORMAT_Q4_K>;
    static constexpr int BB = 176;
    static constexpr bool R2 = false; /* 16 registers a row and block: two strips would spill */
    struct row {
        uint4 h;      /* d, dmin, scales[12] */
        uint4 q;      /* qh[16 (t % 2) .. 16 (t % 2) + 15] */
        uint4 p0, p1; /* qs pieces t, t + 4 */
    };
    using scl = Q4::scl;
    __device__ static row load(const uint8_t *b, int t) {
        return row{qn_ldg_stream128(b), qn_ldg_stream128(b + 16 + 16 * (t & 1)), qn_ldg_stream128(b + 48 + 16 * t),
                   qn_ldg_stream128(b + 112 + 16 * t)};
    }
    __device__ static int xoff(int t, int s, int c) { return Q4::xoff(t, s, c); }
    __device__ static scl scales(const row &r, int t, int s) { return Q4::header_scales(r.h, t, s); }
    __device__ static void decode(const row &r, const scl &k, int t, int s, int i, int c, uint32_t &lo, uint32_t &hi) {
        const uint32_t v = kf_word(s ? r.p1 : r.p0, i), u = kf_word(r.q, i);
        const int hb = 2 * ((t >> 1) + 2 * s) + c;
        const uint32_t q = ((v >> (4 * c)) & 0x0F0F0F0Fu) | (((u >> hb) & 0x01010101u) << 4);
        const __half2 m1024 = qn_bits_h2(0x64006400u);
        lo = qn_h2_bits(__hfma2(__hsub2(qn_bits_h2(__byte_perm(q, 0, 0x4140) | 0x64006400u), m1024), k.s[c], k.m[c]));
        hi = qn_h2_bits(__hfma2(__hsub2(qn_bits_h2(__byte_perm(q, 0, 0x4342) | 0x64006400u), m1024), k.s[c], k.m[c]));
    }
};

/* Q6_KP (q6kp.h: the Q6_K block, ql[128] | qh[64] | scales i8[16] | d, in 224 bytes); ql piece P = t + 4s is half s,
 * ql bytes 16t + j; with k = t / 2 + 2c: element E = 128s + 32k + 16 (t % 2) + 4i + m, low bits nibble c, high bits
 * (qh[32s + 16 (t % 2) + j] >> 2k) & 3, scale scales[8s + 2k + t % 2] = scales[8s + 4c + t]. */
template <>
struct kf_fmt<QN_QFORMAT_Q6_KP> {
    static constexpr int BB = 224;
    static constexpr bool R2 = false; /* 21 registers per row and block: two strips would spill */
    struct row {
        uint4 l0, l1; /* ql pieces t, t + 4 */
        uint4 q0, q1; /* the qh bytes of halves 0, 1 for this lane's ql bytes */
        uint4 sc;     /* scales[16] */
        uint32_t d;   /* d (low half) */
    };
    struct scl {
        __half2 s[2]; /* [c]: fp16(d scales[8s + 4c + t]) */
    };
    __device__ static row load(const uint8_t *b, int t) {
        return row{qn_ldg_stream128(b + 16 * t), qn_ldg_stream128(b + 64 + 16 * t),
                   qn_ldg_stream128(b + 128 + 16 * (t & 1)), qn_ldg_stream128(b + 160 + 16 * (t & 1)),
                   qn_ldg_stream128(b + 192), qn_ldg_stream32(b + 208)};
    }
    __device__ static int xoff(int t, int s, int c) { return 128 * s + 64 * c + 32 * (t >> 1) + 16 * (t & 1); }
    __device__ static scl scales(const row &r, int t, int s) {
        const float d = __low2float(qn_bits_h2(r.d));
        scl k;
#pragma unroll
        for (int c = 0; c < 2; c++) {
            const int8_t sc = (int8_t)(kf_word(r.sc, 2 * s + c) >> (8 * t));
            k.s[c] = __float2half2_rn(d * (float)sc);
        }
        return k;
    }
    /* the 6-bit codes (nibble | 2 high bits << 4) as pairs (1024 + q), minus 1056 (exact: q - 32), one HMUL2 */
    __device__ static void decode(const row &r, const scl &k, int t, int s, int i, int c, uint32_t &lo, uint32_t &hi) {
        const uint32_t v = kf_word(s ? r.l1 : r.l0, i), u = kf_word(s ? r.q1 : r.q0, i);
        const int kk = (t >> 1) + 2 * c;
        const uint32_t q = ((v >> (4 * c)) & 0x0F0F0F0Fu) | (((u >> (2 * kk)) & 0x03030303u) << 4);
        const __half2 m1056 = qn_bits_h2(0x64206420u);
        lo = qn_h2_bits(__hmul2(__hsub2(qn_bits_h2(__byte_perm(q, 0, 0x4140) | 0x64006400u), m1056), k.s[c]));
        hi = qn_h2_bits(__hmul2(__hsub2(qn_bits_h2(__byte_perm(q, 0, 0x4342) | 0x64006400u), m1056), k.s[c]));
    }
};

/* Format F, NG groups of 8 tokens (n <= 8 NG), R strips per CTA, D blocks loaded ahead per strip and warp (beside
 * the one in use). w [N][K/256] blocks; x [n][K] fp16; y [n][N] f32; with gridDim.y > 1, part [tiles][split][R NG 128]
 * f32 and cnt [tiles] (tile = blockIdx.x: strips R tile .. R tile + R - 1). bps: blocks per split. */
template <qn_qformat F, int NG, int R, int D>
__global__ void __launch_bounds__(KF_THREADS)
    kq_frag_kernel(const uint8_t *__restrict__ w, int64_t N, int64_t K, const __half *__restrict__ x, int n, int bps,
                   float *__restrict__ y, float *__restrict__ part, unsigned *__restrict__ cnt) {
    using FT = kf_fmt<F>;
    using row_t = typename FT::row;
    using scl_t = typename FT::scl;
    constexpr int NV = qn_tile_shape<KF_WARPS, R * NG>::NV;   /* outputs of a CTA's tile */
    constexpr int PER = qn_tile_shape<KF_WARPS, R * NG>::PER; /* of them per thread */
    qn_pdl_trigger(); /* the next kernel (launched with PDL) may start streaming its own weights */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int64_t tile = blockIdx.x, row_bytes = K / KF_BE * FT::BB;
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
    row_t bg[D][R] = {}, bh[D][R] = {}; /* blocks b + d KF_WARPS of each strip, rows g and g + 8 */
    int b = b0 + warp;
#pragma unroll
    for (int d = 0; d < D; d++)
#pragma unroll
        for (int r = 0; r < R; r++)
            if (b + d * KF_WARPS < b1) {
                bg[d][r] = FT::load(rg[r] + (size_t)(b + d * KF_WARPS) * FT::BB, t);
                bh[d][r] = FT::load(rh[r] + (size_t)(b + d * KF_WARPS) * FT::BB, t);
            }
    qn_pdl_wait(); /* x is the kernel before's output, and nothing is written before it has completed; weights may be */

    const __half *xr[NG]; /* token 8 ng + g's x */
    bool xv[NG];
#pragma unroll
    for (int ng = 0; ng < NG; ng++) {
        const int tok = 8 * ng + g;
        xv[ng] = tok < n;
        xr[ng] = x + (size_t)(xv[ng] ? tok : 0) * (size_t)K;
    }
    for (; b < b1; b += KF_WARPS) {
        row_t cg[R], ch[R];
        const bool more = b + D * KF_WARPS < b1;
#pragma unroll
        for (int r = 0; r < R; r++) {
            cg[r] = bg[0][r], ch[r] = bh[0][r];
#pragma unroll
            for (int d = 0; d + 1 < D; d++) bg[d][r] = bg[d + 1][r], bh[d][r] = bh[d + 1][r];
            if (more) {
                bg[D - 1][r] = FT::load(rg[r] + (size_t)(b + D * KF_WARPS) * FT::BB, t);
                bh[D - 1][r] = FT::load(rh[r] + (size_t)(b + D * KF_WARPS) * FT::BB, t);
            }
        }
#pragma unroll
        for (int s = 0; s < 2; s++) {
            scl_t kg[R], kh[R]; /* scales of pieces t + 4s, rows g and g + 8 */
#pragma unroll
            for (int r = 0; r < R; r++) kg[r] = FT::scales(cg[r], t, s), kh[r] = FT::scales(ch[r], t, s);
            uint4 xb[NG][2][2]; /* [group][c][half]: x[tok][E0 .. E0 + 15], E0 = b 256 + xoff(t, s, c) */
#pragma unroll
            for (int ng = 0; ng < NG; ng++)
#pragma unroll
                for (int c = 0; c < 2; c++)
#pragma unroll
                    for (int hf = 0; hf < 2; hf++)
                        xb[ng][c][hf] = xv[ng] ? qn_ldca128(xr[ng] + (size_t)b * KF_BE + FT::xoff(t, s, c) + 8 * hf)
                                               : make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int c = 0; c < 2; c++) {
                        uint32_t a0, a1, a2, a3; /* rows g, g + 8 at k slots 2t, 2t + 1 (a0, a1) and 2t + 8, 2t + 9 */
                        FT::decode(cg[r], kg[r], t, s, i, c, a0, a2);
                        FT::decode(ch[r], kh[r], t, s, i, c, a1, a3);
#pragma unroll
                        for (int ng = 0; ng < NG; ng++) {
                            const uint4 bx = xb[ng][c][i >> 1];
                            qn_mma_16816(acc[r][ng], a0, a1, a2, a3, (i & 1) ? bx.z : bx.x, (i & 1) ? bx.w : bx.y);
                        }
                    }
        }
    }

    /* the warps' tiles, summed in warp order, then over the split */
    __shared__ float red[KF_WARPS][R * NG * 4][32];
    float sum[PER];
    if (!qn_tile_reduce<KF_WARPS, R * NG>(&acc[0][0][0], red, part, cnt, tile, sum)) return;
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

#ifndef QN_KQ_FRAG_DEPTH /* Q4_K: blocks ahead per warp at <= 8 tokens (an A/B knob, -D) */
#define QN_KQ_FRAG_DEPTH 2
#endif

/* Q6_KP: blocks ahead per warp at <= 8 tokens (an A/B knob, -D; 2 is what the H100 measured with the one-wave
 * split, bench/results/gpu-kq-frag-2026-12-07.md: 1 was measured only with the earlier split rule) */
#ifndef QN_KQ_FRAG_DEPTH6
#define QN_KQ_FRAG_DEPTH6 2
#endif

/* Q4_K, one group: QN_KQ_FRAG_DEPTH blocks ahead; two groups on one strip: 2; on two strips: 1 (two strips' blocks
 * already in flight, and the registers of a third set would spill). Q6_KP (21 registers a row and block): one
 * strip, QN_KQ_FRAG_DEPTH6 blocks ahead with one group, 1 with two. */
static kf_fn kf_pick(qn_qformat fmt, int ng, int r) {
    if (fmt == QN_QFORMAT_Q6_KP)
        return ng == 1 ? kq_frag_kernel<QN_QFORMAT_Q6_KP, 1, 1, QN_KQ_FRAG_DEPTH6>
                       : kq_frag_kernel<QN_QFORMAT_Q6_KP, 2, 1, 1>;
    if (fmt == QN_QFORMAT_Q5_K)
        return ng == 1 ? kq_frag_kernel<QN_QFORMAT_Q5_K, 1, 1, QN_KQ_FRAG_DEPTH>
                       : kq_frag_kernel<QN_QFORMAT_Q5_K, 2, 1, 2>;
    return ng == 1 ? kq_frag_kernel<QN_QFORMAT_Q4_K, 1, 1, QN_KQ_FRAG_DEPTH>
           : r == 1 ? kq_frag_kernel<QN_QFORMAT_Q4_K, 2, 1, 2> : kq_frag_kernel<QN_QFORMAT_Q4_K, 2, 2, 1>;
}

static bool kf_r2(qn_qformat fmt) {
    return fmt == QN_QFORMAT_Q6_KP ? kf_fmt<QN_QFORMAT_Q6_KP>::R2
           : fmt == QN_QFORMAT_Q5_K ? kf_fmt<QN_QFORMAT_Q5_K>::R2
                                    : kf_fmt<QN_QFORMAT_Q4_K>::R2;
}

/* the fewest resident CTAs of fmt's instances for ng groups (the register counts decide which is heaviest) */
int kq_frag_ctas_per_sm(qn_qformat fmt, int ng) {
    int most = 0x7fffffff;
    for (int r = 1; r <= (ng == 2 && kf_r2(fmt) ? 2 : 1); r++) {
        int b = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kf_pick(fmt, ng, r), KF_THREADS, 0) != cudaSuccess) {
            (void)cudaGetLastError();
            b = 1;
        }
        most = b < most ? b : most;
    }
    return most < 1 ? 1 : most;
}

static int64_t kf_strips(int64_t N) { return (N + KF_ROWS - 1) / KF_ROWS; }
static int kf_groups(int64_t take) { return take <= 8 ? 1 : 2; }
#ifndef QN_KQ_FRAG_R2 /* two strips per CTA at 9..16 tokens where they pair up (an A/B knob, -D: 0 = always one) */
#define QN_KQ_FRAG_R2 1
#endif
static int kf_r(qn_qformat fmt, int64_t N, int64_t take) {
    return QN_KQ_FRAG_R2 && kf_r2(fmt) && take > 8 && kf_strips(N) % 2 == 0 ? 2 : 1;
}

static int64_t kf_slots(int n_sm, int ctas) { return (int64_t)n_sm * (ctas > 0 ? ctas : 1); }

int kq_frag_split(qn_qformat fmt, int n_sm, int ctas, int64_t N, int64_t K, int64_t take) {
    const int64_t nb = K / KF_BE, tiles = kf_strips(N) / kf_r(fmt, N, take), slots = kf_slots(n_sm, ctas);
    int s = 1;
    while (2 * s <= QN_KQ_FRAG_MAX_SPLIT && tiles * 2 * s <= slots && nb / (2 * s) >= KF_WARPS) s *= 2;
    return s;
}

int kq_frag_wants(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, int64_t N, int64_t K, int64_t n) {
    if (!qn_kq_frag_takes(fmt, ctx->sm) || K % KF_BE || n < 1) return 0;
    if (fmt != QN_QFORMAT_Q6_KP) return 1;
    const int64_t take = n < QN_KQ_FRAG_MAX_TOKENS ? n : QN_KQ_FRAG_MAX_TOKENS;
    return kf_strips(N) / kf_r(fmt, N, take) <= kf_slots(ctx->n_sm, kq_frag_ctas(ctx, fmt, take));
}

size_t kq_frag_part_bytes(int64_t N, int64_t n, int split) {
    if (split <= 1 || n < 1) return 0;
    const int64_t take = n < QN_KQ_FRAG_MAX_TOKENS ? n : QN_KQ_FRAG_MAX_TOKENS;
    /* tiles x split x (R NG 128) floats = strips x split x NG x 128 */
    return (size_t)kf_strips(N) * (size_t)split * (size_t)kf_groups(take) * 128 * sizeof(float);
}

int kq_frag_ctas(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, int64_t take) {
    const int ng = kf_groups(take);
    const int i = qn_kq_frag_index(fmt), c = i >= 0 ? ctx->kq_frag_ctas[i][ng - 1] : 0;
    return c > 0 ? c : kq_frag_ctas_per_sm(fmt, ng);
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
        const int ng = kf_groups(take), r = kf_r(fmt, N, take);
        const int64_t tiles = strips / r;
        int sp = split > 0 ? split : kq_frag_split(fmt, ctx->n_sm, kq_frag_ctas(ctx, fmt, take), N, K, take);
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
        QN_CUDA_TRY(qn_launch(kf_pick(fmt, ng, r), dim3((unsigned)tiles, (unsigned)sp, 1), dim3(KF_THREADS), 0, s,
                              ctx->sm >= 90, (const uint8_t *)w, N, K, (const __half *)x + t0 * K, take, b_per,
                              y + t0 * N, part, cnt));
    }
    return QN_OK;
}
