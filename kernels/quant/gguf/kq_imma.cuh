/* kq_imma.cuh — the int8 tensor-core decode kernel: the int8 path (QN_QUANT_PATH_MMVQ) for 3..16 tokens
 * per launch, instantiated per (format, 8-token tiles) by kq_mmvq_k.cu (Q4_K, Q6_K) and lutq_mmvq.cu (LQ4):
 *
 *   y[t][r] = sum_k xq[t][k] * W[r][k],  t < n <= 16,  xq: the q8 activations of kq_mmvq.h
 *
 * Why: the __dp4a kernel (kq_mmvq.cuh) keeps a few rows x a few tokens of sums per lane and re-reads each
 * token's activations per row pair, so its cost grows with n (q4_K 14336x4096 on an H200: 12.1 us at n = 1,
 * 24 at n = 8 on the fp16 GEMV, 29 at n = 16, bench/results/gpu-kernels-2026-12-02.md). Here one
 * mma.sync.m16n8k32 (s8 x s8 -> s32) multiplies a 16-row x 32-element piece of weight codes by the same
 * piece of 8 tokens' codes: the weights stream once for all 16 tokens, and the integer dot of each
 * (row, token, 32-block) is the same exact int32 the __dp4a kernel forms. Scales are applied per 32-block
 * in f32 with the __dp4a kernel's formulas (mq_fmt<F>::dot).
 *
 * Fragments (PTX ISA, m16n8k32 .s8; g = lane / 4, q = lane % 4): A a0 = row g, k 4q..4q+3; a1 = row g+8,
 * same k; a2 / a3 = the same rows, k 16+4q..; B b0 = token g, k 4q..4q+3; b1 = k 16+4q..; C c0, c1 =
 * row g, tokens 2q, 2q+1; c2, c3 = row g+8. The k order inside a 32-block does not change a dot product, so
 * each format maps its codes to k as its bytes lie (im_fmt<F>::xoff says which 4 activations of the block
 * meet the lane's 4 codes of "half" hh, hh = 0 for a0/a1, 1 for a2/a3). Formats with a scale per 16
 * elements (Q6_K: K16) take two m16n8k16 products per 32-block, one per half, instead.
 *
 * Walk: a CTA owns 64 rows (4 warps of 16, clamped past N as in kq_mmvq.cuh) times KS K slices (1, 2, 4; a
 * warp per rows x slice). A slice walks its chunks (SB elements: a K-quant super-block, 4 LQ4 blocks); for
 * each, its 4 warps share the chunk's activations (codes and records of all tokens), staged in shared memory
 * with cp.async one chunk ahead, and each lane holds the words it needs of rows g and g + 8 (im_fmt<F>::load),
 * also one chunk ahead, in registers. The KS partial tiles meet in shared memory, summed in slice order
 * (deterministic). PDL as kq_mmvq.cuh: the first chunk's weights are requested before the wait.
 * A first version (16 rows per CTA, activations read per fragment from global memory) ran at 1/4 of its
 * weights' bandwidth: ncu had L1 85% busy and DRAM 13% (bench/results/gpu-imma-2026-12-03.md). */
#ifndef QN_KQ_IMMA_CUH
#define QN_KQ_IMMA_CUH

#include <stdint.h>

#include "kernels/quant/gguf/kq_mmvq.cuh" /* mq_mat, loads, mq_scale_min_k4 */

#define IM_RG 4                /* 16-row groups per CTA: its 64 rows share each staged activation chunk */
#define IM_ROWS (16 * IM_RG)
#define IM_MAX_KS 4            /* K slices per CTA */
#define IM_MAX_TILES 2         /* 8-token tiles per launch */

struct im_args {
    mq_mat m[KQ_MMVQ_MAX_MATS]; /* as mq_args: matrices of one format and K on the same activations */
    int n_mat;
    const int8_t *xq;       /* [n][K] q8 codes */
    const qn_mmvq_xrec *xr; /* [n][K/32] */
    int64_t K, row_bytes;
    int64_t x_ld;           /* elements between tokens (= K) */
    int n;                  /* tokens of this launch, 1 .. 8 * TILES */
};

/* C = A (16x32 s8) B (32x8 s8), from zero */
__device__ __forceinline__ void im_mma_k32(uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1,
                                           int c[4]) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};\n"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
}
/* C = A (16x16 s8) B (16x8 s8), from zero */
__device__ __forceinline__ void im_mma_k16(uint32_t a0, uint32_t a1, uint32_t b0, int c[4]) {
    asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%7,%7,%7};\n"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(b0), "r"(0));
}

/* A 32-bit word at a 2-byte aligned address, reading only its 4 bytes. */
__device__ __forceinline__ uint32_t im_ld32_a2(const uint8_t *p) {
    return (reinterpret_cast<uintptr_t>(p) & 2u) ? (mq_ld16(p) | (mq_ld16(p + 2) << 16)) : mq_ld32(p);
}

/* --- formats ---
 * SB: elements per chunk (K % SB == 0 for this kernel), KB = SB / 32 blocks; K16: a scale per 16 elements.
 * frag: the words one lane (quad index q) needs of one row and chunk. a(f, j, hh): the 4 codes (one s8 each,
 * in [0, 63] here) of half hh of block j that meet the activations at byte xoff(hh, q) of that block.
 * term(f, j, c0, c1, s0, s1): the block's value before the activation scale d_x, from the integer products
 * (K16: c0, c1 the halves'; else c0 the block's) and the activation half sums s0, s1 — mq_fmt<F>::dot's
 * formula. The activation block of block j of chunk s is s KB + j. */
template <qn_qformat F>
struct im_fmt;

/* Q4_K (formats.md §2.2; mq_fmt<Q4_K>): block j = 2c + p has element l at nibble p of qs[32c + l]. Lane q
 * takes qs bytes 8q..8q+7 of each 32-byte group c: half 0 = bytes 8q..8q+3 (activations 8q..8q+3),
 * half 1 = the next 4. */
template <>
struct im_fmt<QN_QFORMAT_Q4_K> {
    static constexpr int SB = 256, KB = 8, BB = 144;
    static constexpr bool K16 = false;
    struct frag { uint32_t hdr[4]; uint2 qs[4]; };
    __device__ static void load(const uint8_t *row, int64_t s, int q, frag &f) {
        const uint8_t *b = row + s * BB;
        mq_words_a16<4>(b, f.hdr);
#pragma unroll
        for (int c = 0; c < 4; c++) f.qs[c] = mq_ld64(b + 16 + 32 * c + 8 * q);
    }
    __device__ static uint32_t a(const frag &f, int j, int hh) {
        const uint2 w = f.qs[j >> 1];
        return ((hh ? w.y : w.x) >> (4 * (j & 1))) & 0x0F0F0F0Fu;
    }
    __device__ static int xoff(int hh, int q) { return 8 * q + 4 * hh; }
    __device__ static float term(const frag &f, int j, int c0, int c1, int s0, int s1) {
        int sc, mn;
        mq_scale_min_k4(f.hdr + 1, j, sc, mn);
        const float d = mq_f16(f.hdr[0]), dmin = mq_f16(f.hdr[0] >> 16);
        return (d * (float)sc) * (float)c0 - (dmin * (float)mn) * (float)(s0 + s1);
    }
};

/* Q6_K (mq_fmt<Q6_K>): block j = 4h + k has element l: low4 = nibble k >> 1 of ql[64h + 32(k & 1) + l],
 * high2 = (qh[32h + l] >> 2k) & 3, code - 32, scale scales[8h + 2k + (l >= 16)]. Half hh = elements
 * 16hh..16hh+15 (its own scale); lane q takes elements 16hh + 4q..+3. Blocks are 2-byte aligned (210 bytes). */
template <>
struct im_fmt<QN_QFORMAT_Q6_K> {
    static constexpr int SB = 256, KB = 8, BB = 210;
    static constexpr bool K16 = true;
    struct frag { uint32_t ql[8], qh[4], sc[4]; float d; }; /* ql[4h + 2(k&1) + hh], qh[2h + hh] */
    __device__ static void load(const uint8_t *row, int64_t s, int q, frag &f) {
        const uint8_t *b = row + s * BB;
#pragma unroll
        for (int i = 0; i < 8; i++) f.ql[i] = im_ld32_a2(b + 64 * (i >> 2) + 32 * ((i >> 1) & 1) + 16 * (i & 1) + 4 * q);
#pragma unroll
        for (int i = 0; i < 4; i++) f.qh[i] = im_ld32_a2(b + 128 + 32 * (i >> 1) + 16 * (i & 1) + 4 * q);
#pragma unroll
        for (int i = 0; i < 4; i++) f.sc[i] = im_ld32_a2(b + 192 + 4 * i);
        f.d = mq_f16(mq_ld16(b + 208));
    }
    __device__ static uint32_t a(const frag &f, int j, int hh) {
        const int h = j >> 2, k = j & 3;
        const uint32_t lo = (f.ql[4 * h + 2 * (k & 1) + hh] >> (4 * (k >> 1))) & 0x0F0F0F0Fu;
        const uint32_t hi = (f.qh[2 * h + hh] >> (2 * k)) & 0x03030303u;
        return lo | (hi << 4);
    }
    __device__ static int xoff(int hh, int q) { return 16 * hh + 4 * q; }
    __device__ static float term(const frag &f, int j, int c0, int c1, int s0, int s1) {
        const int h = j >> 2, k = j & 3, e = 8 * h + 2 * k; /* scale bytes e, e + 1 */
        const uint32_t sw = f.sc[e >> 2];
        const int sc0 = (int)(int8_t)(sw >> (8 * (e & 3))), sc1 = (int)(int8_t)(sw >> (8 * (e & 3) + 8));
        return f.d * (float)(sc0 * (c0 - 32 * s0) + sc1 * (c1 - 32 * s1));
    }
};

/* --- the kernel --- */

/* Shared memory of one K slice: two buffers of the activation chunk its warps are at (codes [8 TILES tokens]
 * [SB + 32 bytes: rows 8 words apart mod 32 banks], then records [8 TILES][KB]). After the loop the same
 * bytes hold the warps' partial tiles for the reduction. */
template <int SB, int TILES>
struct im_smem {
    static constexpr int XLD = SB + 32;
    static constexpr int CODES = 8 * TILES * XLD;
    static constexpr int BUF = CODES + 8 * TILES * (SB / 32) * 8;
    static constexpr size_t RED = (size_t)IM_RG * IM_MAX_KS * TILES * 4 * 32 * sizeof(float);
    static size_t bytes(int ks) {
        const size_t st = (size_t)ks * 2 * BUF;
        return st > RED ? st : RED;
    }
};

/* The activations of chunk s (codes of SB elements and KB records per token, tokens past n: the last one)
 * into buf, by the slice's 32 IM_RG threads (ts). */
template <qn_qformat F, int TILES>
__device__ __forceinline__ void im_stage(const im_args &a, uint8_t *buf, int64_t s, int ts) {
    using FT = im_fmt<F>;
    using SM = im_smem<FT::SB, TILES>;
    constexpr int CU = FT::SB / 16, RU = FT::KB / 2; /* 16-byte pieces per token */
    const int64_t recs = a.x_ld / QN_MMVQ_QK;
    const uint32_t b = (uint32_t)__cvta_generic_to_shared(buf);
    for (int i = ts; i < 8 * TILES * (CU + RU); i += 32 * IM_RG) {
        const int tk = i < 8 * TILES * CU ? i / CU : (i - 8 * TILES * CU) / RU;
        const int tok = min(tk, a.n - 1);
        if (i < 8 * TILES * CU) {
            const int u = i % CU;
            qn_cp_async16_s(b + tk * SM::XLD + 16 * u, a.xq + tok * a.x_ld + s * FT::SB + 16 * u, 16u);
        } else {
            const int u = (i - 8 * TILES * CU) % RU;
            qn_cp_async16_s(b + SM::CODES + tk * FT::KB * 8 + 16 * u, a.xr + tok * recs + s * FT::KB + 2 * u, 16u);
        }
    }
}

/* Multiplies one chunk (rows g, g + 8 in f[0], f[1]; activations in buf) into acc. */
template <qn_qformat F, int TILES>
__device__ __forceinline__ void im_chunk(const typename im_fmt<F>::frag (&f)[2], const uint8_t *buf, int g, int q,
                                         float (&acc)[TILES][4]) {
    using FT = im_fmt<F>;
    using SM = im_smem<FT::SB, TILES>;
#pragma unroll
    for (int j = 0; j < FT::KB; j++) {
        const uint32_t ag0 = FT::a(f[0], j, 0), ah0 = FT::a(f[1], j, 0), ag1 = FT::a(f[0], j, 1), ah1 = FT::a(f[1], j, 1);
#pragma unroll
        for (int t = 0; t < TILES; t++) {
            const uint8_t *xp = buf + (8 * t + g) * SM::XLD + 32 * j;
            const uint32_t b0 = *reinterpret_cast<const uint32_t *>(xp + FT::xoff(0, q));
            const uint32_t b1 = *reinterpret_cast<const uint32_t *>(xp + FT::xoff(1, q));
            qn_mmvq_xrec r[2];
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const uint2 v = *reinterpret_cast<const uint2 *>(buf + SM::CODES + ((8 * t + 2 * q + e) * FT::KB + j) * 8);
                r[e].d = __uint_as_float(v.x), r[e].s0 = (int16_t)(v.y & 0xFFFFu), r[e].s1 = (int16_t)(v.y >> 16);
            }
            int c0[4], c1[4] = {0, 0, 0, 0};
            if (FT::K16) {
                im_mma_k16(ag0, ah0, b0, c0);
                im_mma_k16(ag1, ah1, b1, c1);
            } else {
                im_mma_k32(ag0, ah0, ag1, ah1, b0, b1, c0);
            }
#pragma unroll
            for (int i = 0; i < 4; i++) { /* c[i]: row g (i < 2) or g + 8, token 2q + (i & 1) */
                const qn_mmvq_xrec &x = r[i & 1];
                acc[t][i] += x.d * FT::term(f[i >> 1], j, c0[i], c1[i], x.s0, x.s1);
            }
        }
    }
}

/* CTA: IM_RG x KS warps; warp w = rg + IM_RG ks takes rows 16 rg .. 16 rg + 15 of the CTA's 64 and K slice
 * ks (chunks [ks C / KS, (ks + 1) C / KS)). The IM_RG warps of a slice share its staged activations; all
 * warps step together (__syncthreads per chunk), a slice with fewer chunks idles through the last step. */
template <qn_qformat F, int TILES>
__global__ void __launch_bounds__(32 * IM_RG * IM_MAX_KS, 1) im_kernel(const im_args a) {
    using FT = im_fmt<F>;
    using SM = im_smem<FT::SB, TILES>;
    extern __shared__ __align__(16) uint8_t im_sm[];

    qn_pdl_trigger();
    const uint8_t *wm = a.m[0].w;
    float *ym = a.m[0].y;
    int64_t N = a.m[0].N, cta = blockIdx.x;
#pragma unroll
    for (int i = 1; i < KQ_MMVQ_MAX_MATS; i++)
        if (i < a.n_mat && (int64_t)blockIdx.x >= a.m[i].cta0) wm = a.m[i].w, ym = a.m[i].y, N = a.m[i].N, cta = blockIdx.x - a.m[i].cta0;
    const int W = (int)(blockDim.x >> 5), KS = W / IM_RG, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int rg = warp % IM_RG, ks = warp / IM_RG, g = lane >> 2, q = lane & 3, ts = rg * 32 + lane;
    const int64_t row0 = cta * IM_ROWS + 16 * rg;
    const uint8_t *rows[2] = {wm + min(row0 + g, N - 1) * a.row_bytes, wm + min(row0 + g + 8, N - 1) * a.row_bytes};
    const int64_t C = a.K / FT::SB, c0 = ks * C / KS, cnt = (ks + 1) * C / KS - c0, steps = (C + KS - 1) / KS;
    uint8_t *buf0 = im_sm + (size_t)ks * 2 * SM::BUF, *buf1 = buf0 + SM::BUF;

    float acc[TILES][4];
#pragma unroll
    for (int t = 0; t < TILES; t++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[t][i] = 0.f;

    typename FT::frag fa[2], fb[2];
    if (cnt > 0) FT::load(rows[0], c0, q, fa[0]), FT::load(rows[1], c0, q, fa[1]);
    qn_pdl_wait(); /* the activations come from the kernel before */
    if (cnt > 0) im_stage<F, TILES>(a, buf0, c0, ts);
    qn_cp_async_commit();
#pragma unroll 1
    for (int64_t st = 0; st < steps; st += 2) {
        if (st + 1 < cnt) {
            im_stage<F, TILES>(a, buf1, c0 + st + 1, ts);
            FT::load(rows[0], c0 + st + 1, q, fb[0]), FT::load(rows[1], c0 + st + 1, q, fb[1]);
        }
        qn_cp_async_commit();
        qn_cp_async_wait<1>();
        __syncthreads();
        if (st < cnt) im_chunk<F, TILES>(fa, buf0, g, q, acc);
        __syncthreads(); /* buf0 is staged again below */
        if (st + 1 >= steps) break;
        if (st + 2 < cnt) {
            im_stage<F, TILES>(a, buf0, c0 + st + 2, ts);
            FT::load(rows[0], c0 + st + 2, q, fa[0]), FT::load(rows[1], c0 + st + 2, q, fa[1]);
        }
        qn_cp_async_commit();
        qn_cp_async_wait<1>();
        __syncthreads();
        if (st + 1 < cnt) im_chunk<F, TILES>(fb, buf1, g, q, acc);
        __syncthreads();
    }
    qn_cp_async_wait<0>();

    float *red = reinterpret_cast<float *>(im_sm); /* [warp][TILES][4][32]; the staging is done */
#pragma unroll
    for (int t = 0; t < TILES; t++)
#pragma unroll
        for (int i = 0; i < 4; i++) red[((warp * TILES + t) * 4 + i) * 32 + lane] = acc[t][i];
    __syncthreads();
    for (int o = threadIdx.x; o < IM_RG * TILES * 128; o += blockDim.x) {
        const int rgo = o / (TILES * 128), t = (o >> 7) % TILES, r = o & 15, tok = (o >> 4) & 7;
        const int l = 4 * (r & 7) + (tok >> 1), i = 2 * (r >> 3) + (tok & 1);
        float sum = 0.f;
        for (int k = 0; k < KS; k++) sum += red[(((rgo + IM_RG * k) * TILES + t) * 4 + i) * 32 + l]; /* fixed order */
        const int token = 8 * t + tok;
        const int64_t row = cta * IM_ROWS + 16 * rgo + r;
        if (token < a.n && row < N) ym[(int64_t)token * N + row] = sum;
    }
}

typedef void (*im_kernel_fn)(im_args);

template <qn_qformat F>
im_kernel_fn im_instance(int tiles) {
    return tiles == 1 ? im_kernel<F, 1> : tiles == 2 ? im_kernel<F, 2> : nullptr;
}
/* Dynamic shared memory of that kernel with ks K slices. */
template <qn_qformat F>
size_t im_smem_bytes(int tiles, int ks) {
    return tiles == 1 ? im_smem<im_fmt<F>::SB, 1>::bytes(ks) : im_smem<im_fmt<F>::SB, 2>::bytes(ks);
}

/* The kernel of (fmt, 8-token tiles), or NULL, and its chunk (K must be a multiple): kq_mmvq_k.cu (K-quants),
 * lutq_mmvq.cu (LQ4). */
im_kernel_fn im_kquant_instance(qn_qformat fmt, int tiles);
im_kernel_fn im_lutq_instance(qn_qformat fmt, int tiles);
int im_kquant_chunk(qn_qformat fmt);
int im_lutq_chunk(qn_qformat fmt);
size_t im_kquant_smem(qn_qformat fmt, int tiles, int ks);
size_t im_lutq_smem(qn_qformat fmt, int tiles, int ks);

#endif /* QN_KQ_IMMA_CUH */
