/* kq_kernel.cuh — the one pipelined kernel behind the GGUF GPU paths (kq_gemv.cu, kq_gemm.cu,
 * kq_dequant.cu), instantiated per (format, NT). Owns: the CTA tiling, the shared-memory stage ring, the
 * tensor-core inner loop, the two split-K reductions and the host-side launch description.
 *
 *   NT > 0 (matmul):  y[t][r] = sum_k x[t][k] * W[r][k] for t < n <= 8*NT, r < N
 *   NT = 0 (dequant): out[r][k] = fp16(W[r][k])
 *
 * Tiling: a CTA is 8 warps and 128 rows (16 per warp: the mma M dimension, so each dequantized
 * weight feeds 8*NT tokens through the tensor cores and is decoded once). blockIdx.y splits K over
 * gridDim.y = S CTAs, whose partial tiles are summed in a fixed order (deterministic) either
 *   - serially through a global workspace: each CTA stores its tile, the last to arrive (a counter per
 *     row tile, left at zero again) sums them; no CTA waits for another; or
 *   - through distributed shared memory of a thread-block cluster (sm_90; no workspace, but every
 *     CTA waits at two cluster barriers).
 * Per stage (KQ_STEPS warp steps of SK elements per row) the CTA copies the 16-aligned byte superset of
 * each row's elements, so any block alignment works: on sm_90 one TMA bulk copy per row completing on
 * the stage's mbarrier (measured: 84% of copy bandwidth on F16 vs 64% with per-thread 16-byte cp.async,
 * whose per-row requests cost one shared-memory wavefront per cache line), on sm_80 16-byte cp.async;
 * and, for NT > 0, the activations with cp.async, already in fragment order. NS stages are in flight;
 * one __syncthreads per stage guards buffer reuse. Bench history and variants (steps, warps, shared
 * memory per CTA): bench/results/gpu-kernels-*.md. */
#ifndef QN_KQ_KERNEL_CUH
#define QN_KQ_KERNEL_CUH

#include <stdint.h>

#include <cooperative_groups.h>
#include <cuda_fp16.h>

#include "kernels/common/device_util.cuh"
#include "kernels/quant/gguf/kq_decode.cuh"

#ifndef KQ_WARPS
#define KQ_WARPS 8    /* per CTA; each warp owns 16 rows (the mma M dimension) */
#endif
#define KQ_ROWS (16 * KQ_WARPS)
#define KQ_THREADS (32 * KQ_WARPS)
#ifndef KQ_SMEM_TARGET /* per CTA: three CTAs fit an H100 SM's 228 KB (two on A100's 164 KB) */
#define KQ_SMEM_TARGET (72 * 1024)
#endif
#ifndef KQ_STEPS /* warp steps (SK elements of each row) per pipeline stage: longer contiguous row */
#define KQ_STEPS 2 /* segments per copy and fewer barriers per byte */
#endif
#define KQ_MAX_SPLIT 16

struct kq_args {
    const uint8_t *w;  /* [N][row_bytes] ggml blocks, 16-byte aligned */
    const __half *x;   /* [n][K] fp16, 16-byte aligned (matmul) */
    float *y;          /* [n][N] f32 (matmul) */
    __half *out;       /* [N][K] fp16, 16-byte aligned (dequant) */
    int64_t N, K, n, row_bytes;
    int ksteps;        /* ceil(K / SK) */
    int ks_per_split;  /* stages per blockIdx.y */
    float *part;       /* split-K partial tiles [tiles][S][8*NT][KQ_ROWS], or NULL: cluster reduction */
    unsigned *cnt;     /* [tiles] arrival counters, zero before and after every launch */
};

template <qn_qformat F, int NT>
struct kq_cfg {
    using FT = kq_fmt<F>;
    static constexpr int STEPS = NT >= 4 ? 1 : KQ_STEPS;     /* wide token tiles: x fills the stage */
    static constexpr int SKS = STEPS * FT::SK;               /* elements of a row per stage */
    static constexpr int STEPB = FT::SK / FT::BE * FT::BB;   /* bytes of a row per warp step */
    static constexpr int SB = STEPS * STEPB;              /* bytes of a row per full stage */
    static constexpr int RSW0 = (SB + 14 + 4 + 15) / 16;     /* + start offset <= 14, + 2-byte over-read */
    static constexpr int RSW = RSW0 | 1;                     /* odd: row slots 16 mod 32 bytes apart */
    static constexpr int RS = 16 * RSW;
    static constexpr int W_BYTES = KQ_ROWS * RS;
    static constexpr int X_BYTES = STEPS * FT::SUB * 4 * NT * 32 * 16; /* [steps][SUB][4 runs][NT][32 lanes] x 16 B */
    static constexpr int STAGE = W_BYTES + X_BYTES;
    static constexpr int NS0 = KQ_SMEM_TARGET / STAGE;
    static constexpr int NS = NS0 < 2 ? 2 : NS0 > 6 ? 6 : NS0;
    static constexpr int RED_LD = 8 * NT + 4;               /* floats per row of the reduction tile */
    static constexpr int RED_BYTES = KQ_ROWS * RED_LD * 4;
    static constexpr int SMEM = NS * STAGE > RED_BYTES ? NS * STAGE : RED_BYTES;
    static constexpr int MIN_BLOCKS = (NT >= 4 ? 256 : 512) / KQ_THREADS; /* <= 128 registers (NT <= 2) */
    static_assert(SMEM <= 227 * 1024, "shared memory per CTA over the sm_90 limit");
};

template <qn_qformat F, int NT>
__global__ void __launch_bounds__(KQ_THREADS, kq_cfg<F, NT>::MIN_BLOCKS) kq_kernel(const kq_args a) {
    using FT = kq_fmt<F>;
    using C = kq_cfg<F, NT>;
    extern __shared__ __align__(16) uint8_t smem[];

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
    const int64_t row0 = (int64_t)blockIdx.x * KQ_ROWS;
    const int ks0 = blockIdx.y * a.ks_per_split;
    const int nk = max(0, min(a.ksteps - ks0, a.ks_per_split));
    const int64_t ra = row0 + warp * 16 + g, rb = ra + 8; /* this lane's two rows (compute) */
    const int offa = (int)((ra * a.row_bytes) & 15), offb = (int)((rb * a.row_bytes) & 15);

    /* Two accumulator sets for NT <= 2 (even/odd runs): halves the dependent mma chain. */
    constexpr int NA = NT > 0 ? NT : 1, NACC = NT > 0 && NT <= 2 ? 2 : 1;
    float acc[NACC][NA][4];
#pragma unroll
    for (int u = 0; u < NACC; u++)
#pragma unroll
        for (int t = 0; t < NA; t++) acc[u][t][0] = acc[u][t][1] = acc[u][t][2] = acc[u][t][3] = 0.f;

    /* Loader assignment, fixed for the whole kernel: warp w copies rows 16w..16w+15 (the rows it
     * decodes), lane l row 16w + (l & 15); lanes l and l+16 take the even and odd 16-byte words of
     * the global address (so each pair reads whole 32-byte sectors). Words past
     * the row's valid bytes are not copied (full stages never decode them; rows past N are never
     * stored); a short last stage zeroes them. */
    constexpr int WPL = (C::RSW + 1) / 2;
    const int lr = warp * 16 + (lane & 15), wpar = lane >> 4;
    const int64_t lrow = row0 + lr;
    const bool lrow_ok = lrow < a.N;
    const int64_t lrow_off = lrow_ok ? lrow * a.row_bytes : 0;
    /* The buffer's last bytes (when N*row_bytes is not a multiple of 16) are copied by hand, so that
     * nothing past the last block is read. */
    const int64_t total = a.N * a.row_bytes, cut = total & ~(int64_t)15;
    const bool lrow_last = lrow == a.N - 1 && cut != total;
    const uint32_t sbase = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    const uint32_t lslot = sbase + lr * C::RS; /* this lane's row slot */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    /* sm_90: each row's bytes of a stage come in one bulk copy (TMA), issued by the row's even lane,
     * counted on the stage's mbarrier (one arrival per row); x and partial words stay on cp.async. */
    __shared__ __align__(8) uint64_t bars[C::NS];
    const uint32_t bar0 = static_cast<uint32_t>(__cvta_generic_to_shared(bars));
    if (tid == 0)
        for (int b = 0; b < C::NS; b++) qn_mbar_init(bar0 + 8 * b, KQ_ROWS);
    __syncthreads();
#endif
    /* x loader: slots tid + 256 j of [SUB][4 runs][NT][32 lanes] */
    constexpr int XSLOTS = C::STEPS * FT::SUB * 4 * NA * 32, XPT = (XSLOTS + KQ_THREADS - 1) / KQ_THREADS;

    auto load_stage = [&](int buf, int ks) {
        const int64_t k0 = (int64_t)ks * C::SKS;
        const int kvalid = (int)min((int64_t)C::SKS, a.K - k0);
        const int64_t gs = lrow_off + (int64_t)ks * C::SB;
        const int64_t base = gs & ~(int64_t)15;
        int vend = lrow_ok ? (int)(gs - base) + kvalid / FT::BE * FT::BB : 0; /* valid bytes from base */
        const int wp = wpar ^ (int)((base >> 4) & 1); /* this lane's slot word parity in this stage */
        const uint32_t dst = lslot + buf * C::STAGE + 16 * wp;
        int zfrom = 0; /* first slot word a short stage zeroes */
        if (lrow_last && base + vend > cut) {
            const int wt = (int)(cut - base); /* a multiple of 16 */
            if (((wt >> 4) & 1) == wp) {
                const uint16_t *s16 = reinterpret_cast<const uint16_t *>(a.w + cut);
                uint16_t *d16 = reinterpret_cast<uint16_t *>(smem + (lslot - sbase) + buf * C::STAGE + wt);
                for (int h = 0; h < 8; h++) d16[h] = h < (int)(total - cut) / 2 ? s16[h] : (uint16_t)0;
            }
            vend = wt;
            zfrom = (wt >> 4) + 1;
        }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        if (wpar == 0) {
            /* whole 16-byte words (a full stage may over-read the word holding the row's end: the bytes
             * belong to the next row and are never decoded); a short stage ends on its last whole word
             * and the partial word goes through cp.async with zero fill */
            const bool short_stage = kvalid < C::SKS;
            const int nb = short_stage || lrow_last ? (vend & ~15) : ((vend + 15) & ~15);
            qn_fence_proxy_async();
            qn_mbar_arrive_tx(bar0 + 8 * buf, (uint32_t)nb);
            if (nb > 0) qn_bulk_g2s(lslot + buf * C::STAGE, a.w + base, (uint32_t)nb, bar0 + 8 * buf);
            if ((short_stage || lrow_last) && (vend & 15))
                qn_cp_async16_s(lslot + buf * C::STAGE + (vend & ~15), a.w + base + (vend & ~15), (uint32_t)(vend & 15));
        }
        (void)dst;
#else
        /* whole words by predicate, then the one partial word (zero-filled past the valid bytes) */
        const int nfull = vend >> 4;
        const uint8_t *src = a.w + base + 16 * wp;
#pragma unroll
        for (int i = 0; i < WPL; i++)
            if (wp + 2 * i < C::RSW) qn_cp_async16_if(dst + 32 * i, src + 32 * i, wp + 2 * i < nfull);
        if ((vend & 15) && (nfull & 1) == wp)
            qn_cp_async16_s(dst + 16 * (nfull - wp), a.w + base + 16 * nfull, (uint32_t)(vend & 15));
#endif
        if (kvalid < C::SKS) {
            /* the last stage of a short K: zero the rest of the slot, so that the sub-chunks past K
             * decode to 0 (stale bytes could decode to Inf/NaN, and NaN * 0 = NaN) */
            const int wz = max(zfrom, (vend + 15) >> 4); /* first word with no valid byte */
#pragma unroll 1
            for (int wd = wp; wd < C::RSW; wd += 2)
                if (wd >= wz) *reinterpret_cast<uint4 *>(smem + (lslot - sbase) + buf * C::STAGE + 16 * wd) = make_uint4(0, 0, 0, 0);
        }
        if (NT > 0) {
            const uint32_t xs = sbase + buf * C::STAGE + C::W_BYTES;
#pragma unroll
            for (int j = 0; j < XPT; j++) {
                const int slot = tid + KQ_THREADS * j;
                if (XSLOTS % KQ_THREADS != 0 && slot >= XSLOTS) break;
                const int hi = (tid >> 5) + (KQ_THREADS / 32) * j; /* slot >> 5 */
                const int t = hi % NA, sr = hi / NA;
                const int64_t tok = 8 * t + (lane >> 2);
                const int ss = sr >> 2; /* step * SUB + s */
                const int64_t k = k0 + (ss / FT::SUB) * FT::SK + FT::sub_k(lane & 3, ss % FT::SUB) + 8 * (sr & 3);
                const bool ok = tok < a.n && k < a.K;
                qn_cp_async16_s(xs + 16 * slot, ok ? (const void *)(a.x + tok * a.K + k) : (const void *)a.x,
                                ok ? 16u : 0u);
            }
        }
    };

    auto compute_stage = [&](int buf, int ks) {
        const uint8_t *ws = smem + buf * C::STAGE;
        const int so = (int)(((int64_t)ks * C::SB) & 15);
        const uint8_t *pa = ws + (warp * 16 + g) * C::RS + ((offa + so) & 15);
        const uint8_t *pb = ws + (warp * 16 + g + 8) * C::RS + ((offb + so) & 15);
#pragma unroll 1
        for (int st = 0; st < C::STEPS; st++)
#pragma unroll
        for (int s = 0; s < FT::SUB; s++) {
            uint32_t ha[16], hb[16];
            FT::decode(pa + st * C::STEPB, q, s, ha);
            FT::decode(pb + st * C::STEPB, q, s, hb);
            if (NT > 0) {
                const uint8_t *xs = ws + C::W_BYTES;
#pragma unroll
                for (int r = 0; r < 4; r++) {
#pragma unroll
                    for (int t = 0; t < NA; t++) {
                        const uint4 bx = qn_lds128(xs + 16 * ((((st * FT::SUB + s) * 4 + r) * NA + t) * 32 + lane));
                        float *c = acc[r % NACC][t];
                        qn_mma_16816(c, ha[4 * r], hb[4 * r], ha[4 * r + 1], hb[4 * r + 1], bx.x, bx.y);
                        qn_mma_16816(c, ha[4 * r + 2], hb[4 * r + 2], ha[4 * r + 3], hb[4 * r + 3], bx.z, bx.w);
                    }
                }
            } else {
                const int64_t kk = (int64_t)ks * C::SKS + st * FT::SK + FT::sub_k(q, s);
                if (kk < a.K) {
#pragma unroll
                    for (int r = 0; r < 4; r++) {
                        if (ra < a.N)
                            qn_stg128(a.out + ra * a.K + kk + 8 * r,
                                      make_uint4(ha[4 * r], ha[4 * r + 1], ha[4 * r + 2], ha[4 * r + 3]));
                        if (rb < a.N)
                            qn_stg128(a.out + rb * a.K + kk + 8 * r,
                                      make_uint4(hb[4 * r], hb[4 * r + 1], hb[4 * r + 2], hb[4 * r + 3]));
                    }
                }
            }
        }
    };

    /* --- the stage ring: NS-1 stages ahead; a barrier before each refill of the oldest buffer --- */
#pragma unroll 1
    for (int s = 0; s < C::NS - 1; s++) {
        if (s < nk) load_stage(s, ks0 + s);
        qn_cp_async_commit();
    }
#pragma unroll 1
    for (int i = 0; i < nk; i++) {
        qn_cp_async_wait<C::NS - 2>();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        qn_mbar_wait(bar0 + 8 * (i % C::NS), (uint32_t)((i / C::NS) & 1));
#endif
        __syncthreads();
        const int nx = i + C::NS - 1;
        if (nx < nk) load_stage(nx % C::NS, ks0 + nx);
        qn_cp_async_commit();
        compute_stage(i % C::NS, ks0 + i);
    }
    qn_cp_async_wait<0>();
    if (NT == 0) return;
    if (NACC == 2) {
#pragma unroll
        for (int t = 0; t < NA; t++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[0][t][e] += acc[NACC - 1][t][e];
    }

    /* --- epilogue: c0,c1 -> (row g, tokens 2q, 2q+1), c2,c3 -> (row g+8, ...) of each token tile --- */
    if (gridDim.y == 1) {
#pragma unroll
        for (int t = 0; t < (NT > 0 ? NT : 1); t++) {
            const int64_t t0 = 8 * t + 2 * q;
            if (ra < a.N) {
                if (t0 < a.n) a.y[t0 * a.N + ra] = acc[0][t][0];
                if (t0 + 1 < a.n) a.y[(t0 + 1) * a.N + ra] = acc[0][t][1];
            }
            if (rb < a.N) {
                if (t0 < a.n) a.y[t0 * a.N + rb] = acc[0][t][2];
                if (t0 + 1 < a.n) a.y[(t0 + 1) * a.N + rb] = acc[0][t][3];
            }
        }
        return;
    }
    if (a.part) {
        /* serial split-K: store this CTA's tile, then the last CTA of the row tile sums all S */
        const int S = gridDim.y;
        const int lrc = warp * 16 + g;
        float *tile = a.part + (int64_t)blockIdx.x * S * (8 * NA * KQ_ROWS);
        float *mine = tile + (int64_t)blockIdx.y * (8 * NA * KQ_ROWS);
#pragma unroll
        for (int t = 0; t < NA; t++) {
            const int t0 = 8 * t + 2 * q;
            mine[t0 * KQ_ROWS + lrc] = acc[0][t][0];
            mine[(t0 + 1) * KQ_ROWS + lrc] = acc[0][t][1];
            mine[t0 * KQ_ROWS + lrc + 8] = acc[0][t][2];
            mine[(t0 + 1) * KQ_ROWS + lrc + 8] = acc[0][t][3];
        }
        __threadfence(); /* this thread's part of the tile is visible device-wide... */
        __syncthreads(); /* ...for every thread, before thread 0 moves the counter */
        const int last = __syncthreads_or(tid == 0 && atomicAdd(&a.cnt[blockIdx.x], 1u) == (unsigned)(S - 1));
        if (!last) return;
        __threadfence();
        const int ntok = (int)min(a.n, (int64_t)(8 * NA));
        for (int idx = tid; idx < ntok * KQ_ROWS; idx += KQ_THREADS) {
            const int t = idx / KQ_ROWS, r = idx - t * KQ_ROWS;
            float sum = 0.f;
            for (int j = 0; j < S; j++) sum += __ldcg(tile + (int64_t)j * (8 * NA * KQ_ROWS) + t * KQ_ROWS + r);
            if (row0 + r < a.N) a.y[t * a.N + row0 + r] = sum;
        }
        if (tid == 0) a.cnt[blockIdx.x] = 0u; /* ready for the next launch */
        return;
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    {
        namespace cg = cooperative_groups;
        __syncthreads(); /* every warp is done reading the stage buffers */
        float *red = reinterpret_cast<float *>(smem);
        const int lrc = warp * 16 + g;
#pragma unroll
        for (int t = 0; t < (NT > 0 ? NT : 1); t++) {
            red[lrc * C::RED_LD + 8 * t + 2 * q] = acc[0][t][0];
            red[lrc * C::RED_LD + 8 * t + 2 * q + 1] = acc[0][t][1];
            red[(lrc + 8) * C::RED_LD + 8 * t + 2 * q] = acc[0][t][2];
            red[(lrc + 8) * C::RED_LD + 8 * t + 2 * q + 1] = acc[0][t][3];
        }
        cg::cluster_group cl = cg::this_cluster();
        cl.sync(); /* partial tiles of all S CTAs written */
        const int S = (int)cl.num_blocks(), rank = (int)cl.block_rank();
        const int rows_per = (KQ_ROWS + S - 1) / S;
        const int ntok = (int)min(a.n, (int64_t)(8 * NT));
        for (int idx = tid; idx < rows_per * ntok; idx += KQ_THREADS) {
            const int lr2 = rank * rows_per + idx % rows_per, t = idx / rows_per;
            if (lr2 >= KQ_ROWS) continue;
            float sum = 0.f;
            for (int j = 0; j < S; j++) sum += cl.map_shared_rank(red, j)[lr2 * C::RED_LD + t];
            const int64_t row = row0 + lr2;
            if (row < a.N) a.y[t * a.N + row] = sum;
        }
        cl.sync(); /* keep this CTA's shared memory alive until every rank has read it */
    }
#else
    __trap(); /* split-K needs clusters (sm_90); the launcher never asks for it below */
#endif
}

/* --- host side: what a launcher needs to know about one instance --- */
struct kq_kernel_info {
    const void *fn;  /* kq_kernel<F, NT> */
    int nt;          /* token tiles of 8 (0: dequant) */
    int smem;        /* dynamic shared memory bytes */
    int sk;          /* elements of a row per stage */
    int min_blocks;  /* CTAs per SM the kernel is built for */
};

template <qn_qformat F, int NT>
kq_kernel_info kq_info() {
    using C = kq_cfg<F, NT>;
    return kq_kernel_info{(const void *)kq_kernel<F, NT>, NT, C::SMEM, C::SKS, C::MIN_BLOCKS};
}

/* Instance tables, one per translation unit so that the instances compile in parallel.
 * Each returns false (and leaves *out alone) for a format or NT it does not hold. */
bool kq_gemv_info(qn_qformat fmt, int nt, kq_kernel_info *out);    /* kq_gemv.cu: nt 1, 2 */
bool kq_gemm_info(qn_qformat fmt, int nt, kq_kernel_info *out);    /* kq_gemm.cu: nt 4, 8 */
bool kq_dequant_info(qn_qformat fmt, kq_kernel_info *out);         /* kq_dequant.cu: nt 0 */

/* The formats with GPU kernels, for the instance tables (the last seven: device-only, q3kp.h, q6kp.h, q8_0p.h,
 * lutq_gpu.h). */
#define KQ_FOR_EACH_FORMAT(X) \
    X(F16) X(BF16) X(Q4_0) X(Q4_1) X(Q5_0) X(Q5_1) X(Q8_0) X(Q2_K) X(Q3_K) X(Q4_K) X(Q5_K) X(Q6_K) \
    X(Q3_KP) X(Q6_KP) X(Q8_0P) X(LQ4) X(LQ8) X(LNF4) X(LFP4)

#endif /* QN_KQ_KERNEL_CUH */
