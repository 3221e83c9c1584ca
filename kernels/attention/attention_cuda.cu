/* attention_cuda.cu — the CUDA attention of attention_cuda.h: rope_kv_write (bias + RoPE + KV-cache
 * store), paged_attention_fwd (flash-style paged attention on fp16/bf16 tensor cores, split-K) with
 * paged_attention_combine, and the KV block copy. Launch planning (tiles, splits, workspace) is host
 * C in attn_tiles.c. Steps of decode tokens only go to paged_attention_decode (attention_decode.cu)
 * unless the caller forces this kernel, and a mixed step's single-token tiles too (SPLIT: two launches,
 * one combine); what both share is in attn_common.cuh.
 *
 * paged_attention_fwd, one CTA = (query tile, row chunk, kv head, split), ATTN_WARPS warps (8; 4 for an A/B):
 *   rows   r = t * G + g (token t of the tile, group head g), at most ATTN_ROWS = 16 per warp per CTA
 *          (more rows, e.g. G = 8 x 16 tokens, take a second row chunk);
 *   warps  wr x wk = ATTN_WARPS: wr warps of 16 rows each, wk warps splitting each KV tile's keys
 *          (a short tile, e.g. G = 1, has few rows, so warps split the keys instead of idling);
 *   loop   over KV tiles of KT = 64 keys of the split's range: cp.async gather of K and V rows
 *          through the block table into shared memory (double buffered where it fits), then
 *          S = Q K^T and O += P V with mma.m16n8k16 (f32 accumulate), online softmax in f32 in
 *          the exp2 domain (scale * log2 e folded into Q);
 *   end    the wk partial states of a row are merged through shared memory; a CTA whose split
 *          holds every key of the tile (one split, or a context shorter than one split's range)
 *          writes fp16 out, otherwise (O unnormalised, m, l) to the workspace for
 *          paged_attention_combine; an empty split writes only an "empty" (m, l) marker.
 * Q and P are rounded to the KV dtype for the tensor cores (fp16: 2^-11, bf16: 2^-8 relative);
 * everything else is f32. Every reduction has a fixed order, so results are deterministic. */
#include <math.h>
#include <stdint.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/attention/attention_cuda.h"
#include "kernels/common/cuda_check.h"
#include "kernels/common/device_util.cuh"
#include "kernels/attention/attn_common.cuh"

/* Four 8x8 b16 matrices, transposed: lane l gets (row 2(l%4), col l/4) and (row 2(l%4)+1, col l/4)
 * of each; lanes 8i..8i+7 give the row addresses of matrix i. On V stored [key][d] this yields the
 * mma B fragment (k = key, n = d) directly. */
__device__ __forceinline__ void ldsm_x4_trans(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2,
                                              uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

/* ------------------------------------------------------------------------------------------------
 * rope_kv_write */

#define ROPE_THREADS 256
#define ROPE_MAX_PAIRS 128 /* rope_dim <= 256 */

/* Grid (token, group of ROPE heads): the "heads" of a token are its n_heads q heads, then its
 * n_kv_heads k heads, then its n_kv_heads v heads; a CTA takes heads_per_cta of them, so that its
 * heads_per_cta * per_head work units fill the 256 threads (Llama-3-8B: 4 heads x 64 units, 12 CTAs
 * per token). Unit j of a head: j < half rotates pair j, else passes dim rope_dim + (j - half)
 * through (v heads: copies dims j and, for j < half, j + per_head). One thread per unit, no serial
 * loop over heads: a decode token is ~2 us (one load round trip after the angles) where one CTA per
 * token looping over 48 heads took ~17 us.
 * The angles are computed in double (theta = pos * freq_scale * base^(-2i/rope_dim) / ff[i], sincos
 * in double, rounded to f32 once) into a shared table by the first `half` threads of each CTA that
 * has a q or k head (a few duplicates per token, in parallel); the rotation is f32 with the CPU's
 * formula (ops_ref.c qn_rope_norm_f32 / qn_rope_neox_f32). The CPU builds theta by repeated f32
 * multiplication and takes cosf of an f32 angle, so it differs from this kernel by its own angle
 * error: about 2i * 2^-24 relative in theta_i plus half an f32 ulp of the angle (~1.2e-4 rad at
 * positions near 3000). */
__global__ void __launch_bounds__(ROPE_THREADS)
rope_kv_write(float *__restrict__ q, const float *__restrict__ k, const float *__restrict__ v,
              const float *__restrict__ bq, const float *__restrict__ bk, const float *__restrict__ bv,
              const int32_t *__restrict__ positions, const int32_t *__restrict__ slot_mapping, int n_heads,
              int n_kv_heads, int head_dim, int rope_dim, int neox, double theta_exp, double freq_scale,
              const float *__restrict__ freq_factors, int bf16, int heads_per_cta, uint16_t *__restrict__ k_cache,
              uint16_t *__restrict__ v_cache) {
    __shared__ float2 cs[ROPE_MAX_PAIRS]; /* (cos, sin) of pair i */
    qn_pdl_trigger();
    const int t = blockIdx.x;
    const int half = rope_dim / 2, per_head = head_dim - half;
    const int h0 = blockIdx.y * heads_per_cta;
    const int h_end = min(h0 + heads_per_cta, n_heads + 2 * n_kv_heads);
    const long long slot = slot_mapping[t];
    if (h0 < n_heads + n_kv_heads) { /* a q or k head here: the angle table (uniform branch) */
        const double pos = (double)positions[t];
        for (int i = threadIdx.x; i < half; i += blockDim.x) {
            double theta = pos * freq_scale * exp((double)i * theta_exp);
            if (freq_factors) theta /= (double)freq_factors[i];
            double s, c;
            sincos(theta, &s, &c);
            cs[i] = make_float2((float)c, (float)s);
        }
        __syncthreads();
    }
    qn_pdl_wait(); /* positions and slots are step inputs; q, k, v come from the kernels before (read with
                    * __ldca below: a PDL dependent must not read them through .nc, device_util.cuh) */

    for (int u = threadIdx.x; u < (h_end - h0) * per_head; u += blockDim.x) {
        const int hh = h0 + u / per_head, j = u % per_head;
        if (hh >= n_heads && slot < 0) break; /* a padding token stores no k or v; hh grows with u */
        if (hh >= n_heads + n_kv_heads) { /* v: bias, convert, store */
            const int h = hh - n_heads - n_kv_heads;
            const size_t src = ((size_t)t * n_kv_heads + h) * head_dim;
            const size_t dst = ((size_t)slot * n_kv_heads + h) * head_dim;
            for (int d = j; d < head_dim; d += per_head) {
                const float x = __ldca(v + src + d) + (bv ? bv[(size_t)h * head_dim + d] : 0.0f);
                v_cache[dst + d] = bf16 ? kv_bf16::one(x) : kv_f16::one(x);
            }
            continue;
        }
        const bool is_q = hh < n_heads;
        const int h = is_q ? hh : hh - n_heads;
        const float *src = is_q ? q + ((size_t)t * n_heads + h) * head_dim : k + ((size_t)t * n_kv_heads + h) * head_dim;
        const float *bias = is_q ? (bq ? bq + (size_t)h * head_dim : NULL) : (bk ? bk + (size_t)h * head_dim : NULL);
        float y0, y1 = 0.0f;
        int i0, i1 = -1;
        if (j < half) {
            i0 = neox ? j : 2 * j;
            i1 = neox ? j + half : 2 * j + 1;
            float x0 = __ldca(src + i0), x1 = __ldca(src + i1);
            if (bias) {
                x0 += bias[i0];
                x1 += bias[i1];
            }
            const float2 c = cs[j];
            y0 = fmaf(x0, c.x, -(x1 * c.y));
            y1 = fmaf(x0, c.y, x1 * c.x);
        } else {
            i0 = rope_dim + (j - half);
            y0 = __ldca(src + i0) + (bias ? bias[i0] : 0.0f);
        }
        if (is_q) {
            float *qd = q + ((size_t)t * n_heads + h) * head_dim;
            qd[i0] = y0;
            if (i1 >= 0) qd[i1] = y1;
        } else {
            uint16_t *kd = k_cache + ((size_t)slot * n_kv_heads + h) * head_dim;
            kd[i0] = bf16 ? kv_bf16::one(y0) : kv_f16::one(y0);
            if (i1 >= 0) kd[i1] = bf16 ? kv_bf16::one(y1) : kv_f16::one(y1);
        }
    }
}

extern "C" qn_status qn_rope_kv_write_cuda(float *q, const float *k, const float *v, const float *bq,
                                           const float *bk, const float *bv, const int32_t *positions,
                                           const int32_t *slot_mapping, int32_t n_tokens, int32_t n_heads,
                                           int32_t n_kv_heads, int32_t head_dim, const qn_rope_cuda_params *rope,
                                           qn_kv_dtype kv_dtype, void *k_cache, void *v_cache, void *stream) {
    if (n_tokens < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || !rope) return QN_ERR_INVALID_ARG;
    if (rope->rope_dim < 0 || rope->rope_dim > head_dim || (rope->rope_dim & 1) ||
        rope->rope_dim > 2 * ROPE_MAX_PAIRS)
        return QN_ERR_SHAPE;
    if (kv_dtype != QN_KV_F16 && kv_dtype != QN_KV_BF16) return QN_ERR_UNSUPPORTED;
    if (n_tokens == 0) return QN_OK;
    /* the CPU's exponent, -2/rope_dim, is an f32; base^e = exp(e * ln base) in double */
    const float e = rope->rope_dim > 0 ? -2.0f / (float)rope->rope_dim : 0.0f;
    const double theta_exp = (double)e * log((double)rope->theta_base);
    const int per_head = head_dim - rope->rope_dim / 2;
    const int heads = n_heads + 2 * n_kv_heads;
    const int heads_per_cta = per_head >= ROPE_THREADS ? 1 : ROPE_THREADS / per_head;
    const int groups = (heads + heads_per_cta - 1) / heads_per_cta;
    if (groups > 65535) return QN_ERR_SHAPE;
    const dim3 grid((unsigned)n_tokens, (unsigned)groups);
    QN_CUDA_TRY(qn_launch(rope_kv_write, grid, dim3(ROPE_THREADS), 0, (cudaStream_t)stream, rope->pdl != 0, q, k, v, bq,
                          bk, bv, positions, slot_mapping, (int)n_heads, (int)n_kv_heads, (int)head_dim,
                          (int)rope->rope_dim, (int)rope->neox, theta_exp, (double)rope->freq_scale, rope->freq_factors,
                          (int)(kv_dtype == QN_KV_BF16), heads_per_cta, (uint16_t *)k_cache, (uint16_t *)v_cache));
    return QN_OK;
}

/* ------------------------------------------------------------------------------------------------
 * paged_attention_fwd */



/* Shared memory (halves; rows padded by 8 halves = 16 bytes so that the 8 rows of one ldmatrix
 * phase or of one fragment load fall on distinct bank groups for every supported D). */
template <int D>
struct attn_smem {
    static constexpr int LD = D + 8;
    static constexpr int STAGES = D <= 128 ? 2 : 1; /* D = 256 double buffered would not fit sm_80 */
    static constexpr int Q_HALVES = ATTN_ROWS * LD;
    static constexpr int KV_HALVES = ATTN_KT * LD;
    static constexpr size_t MAIN = (size_t)(Q_HALVES + 2 * STAGES * KV_HALVES) * 2;
    static constexpr size_t EPI = (size_t)ATTN_WARPS * 16 * D * 4 + (size_t)ATTN_WARPS * 16 * 8; /* per-warp O + (m, l) */
    static constexpr size_t BYTES = MAIN > EPI ? MAIN : EPI;
};

/* Gathers keys [j0, j0 + KT) of one kv head into the stage's K and V tiles; keys >= n_keys are
 * zero-filled (never read from global: the block table may not cover them). */
template <int D>
__device__ __forceinline__ void attn_load_kv(const attn_params &p, const int32_t *bt, int kvh, int j0, int n_keys,
                                             uint32_t ks, uint32_t vs) {
    constexpr int CH = D / 8; /* 16-byte chunks per row */
    constexpr int LD = attn_smem<D>::LD;
    constexpr int NC = (ATTN_KT * CH + ATTN_THREADS - 1) / ATTN_THREADS; /* chunks per thread */
    /* Two phases: every block-table read first, then the copies. The copies are asm volatile with a
     * memory clobber, so a table read between two of them cannot be hoisted: one loop would wait a
     * global-memory latency per chunk (NC of them per tile). */
    int32_t slot[NC]; /* -1: past the keys, zero-filled */
#pragma unroll
    for (int i = 0; i < NC; i++) {
        const int c = threadIdx.x + i * ATTN_THREADS;
        const int j = j0 + c / CH;
        slot[i] = -1;
        if (c < ATTN_KT * CH && j < n_keys) slot[i] = __ldg(bt + j / p.a.block_size) * p.a.block_size + j % p.a.block_size;
    }
#pragma unroll
    for (int i = 0; i < NC; i++) {
        const int c = threadIdx.x + i * ATTN_THREADS;
        if (c >= ATTN_KT * CH) break;
        const int key = c / CH, part = c % CH;
        const bool ok = slot[i] >= 0;
        const size_t o = ok ? ((size_t)slot[i] * p.a.n_kv_heads + kvh) * D + part * 8 : 0;
        const uint32_t so = (uint32_t)((key * LD + part * 8) * 2);
        qn_cp_async16_s(ks + so, (const uint16_t *)p.a.k_cache + o, ok ? 16u : 0u);
        qn_cp_async16_s(vs + so, (const uint16_t *)p.a.v_cache + o, ok ? 16u : 0u);
    }
}

/* The main loop and epilogue for one CTA with WK warps per row block (ATTN_WARPS / WK row blocks). */
template <int D, typename KV, int WK>
__device__ __forceinline__ void attn_cta(const attn_params &p, uint16_t *smem, int first, int pos0, int kvh,
                                         int row0, int rows, int n_keys, int kt_begin, int kt_end, bool direct) {
    constexpr int WR = ATTN_WARPS / WK;
    constexpr int KW = ATTN_KT / WK; /* keys of a KV tile per warp: 16, 32 or 64 */
    constexpr int NB = KW / 8;       /* S n-blocks */
    constexpr int DN = D / 8;        /* O n-blocks */
    constexpr int LD = attn_smem<D>::LD;
    constexpr int STAGES = attn_smem<D>::STAGES;
    static_assert(KW % 16 == 0, "P.V takes keys 16 at a time");

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, q4 = lane & 3;
    const int rb = warp % WR, kp = warp / WR;
    uint16_t *q_s = smem;
    uint16_t *kv_s = smem + attn_smem<D>::Q_HALVES; /* [STAGES][K, V][KT][LD] */
    const uint32_t kv_sa = (uint32_t)__cvta_generic_to_shared(kv_s);
    const int32_t *bt = p.a.block_tables + (size_t)p.a.seq_idx[first] * p.a.max_blocks_per_seq;

    /* the first tile's loads go out before the Q conversion so that they overlap it */
    if (kt_begin < kt_end) attn_load_kv<D>(p, bt, kvh, kt_begin * ATTN_KT, n_keys, kv_sa, kv_sa + ATTN_KT * LD * 2);
    qn_cp_async_commit();

    /* Q rows -> KV dtype, pre-scaled; rows past `rows` are zero */
    for (int i = tid; i < ATTN_ROWS * (D / 2); i += ATTN_THREADS) {
        const int r = i / (D / 2), d = (i % (D / 2)) * 2;
        uint32_t v = 0;
        if (r < rows) {
            const int R = row0 + r;
            const int token = first + R / p.group, h = kvh * p.group + R % p.group;
            const float2 x = *reinterpret_cast<const float2 *>(p.a.q + ((size_t)token * p.a.n_heads + h) * D + d);
            v = KV::pack(x.x * p.qscale, x.y * p.qscale);
        }
        *reinterpret_cast<uint32_t *>(q_s + r * LD + d) = v;
    }

    /* this thread's two rows: their positions (-1 = padding row: every key masked) */
    int rpos[2];
    for (int hh = 0; hh < 2; hh++) {
        const int r = rb * 16 + g + hh * 8;
        rpos[hh] = r < rows ? pos0 + (row0 + r) / p.group : -1;
    }

    float o[DN][4];
#pragma unroll
    for (int i = 0; i < DN; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    const uint32_t *qrow0 = reinterpret_cast<const uint32_t *>(q_s + (rb * 16 + g) * LD);
    const uint32_t *qrow1 = reinterpret_cast<const uint32_t *>(q_s + (rb * 16 + g + 8) * LD);

    for (int it = kt_begin; it < kt_end; it++) {
        const int stage = STAGES == 2 ? (it - kt_begin) & 1 : 0;
        if (STAGES == 2) {
            if (it + 1 < kt_end) {
                const uint32_t ns = kv_sa + (uint32_t)(((stage ^ 1) * 2 * ATTN_KT * LD) * 2);
                attn_load_kv<D>(p, bt, kvh, (it + 1) * ATTN_KT, n_keys, ns, ns + ATTN_KT * LD * 2);
            }
            qn_cp_async_commit();
            qn_cp_async_wait<1>();
        } else {
            if (it > kt_begin) {
                attn_load_kv<D>(p, bt, kvh, it * ATTN_KT, n_keys, kv_sa, kv_sa + ATTN_KT * LD * 2);
                qn_cp_async_commit();
            }
            qn_cp_async_wait<0>();
        }
        __syncthreads();
        const uint16_t *k_s = kv_s + stage * 2 * ATTN_KT * LD;
        const uint32_t v_sa = kv_sa + (uint32_t)((stage * 2 * ATTN_KT * LD + ATTN_KT * LD) * 2);

        /* S = Q K^T over this warp's KW keys */
        float s[NB][4];
#pragma unroll
        for (int nb = 0; nb < NB; nb++) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            const uint32_t a0 = qrow0[kk * 8 + q4], a1 = qrow1[kk * 8 + q4];
            const uint32_t a2 = qrow0[kk * 8 + 4 + q4], a3 = qrow1[kk * 8 + 4 + q4];
#pragma unroll
            for (int nb = 0; nb < NB; nb++) {
                const uint32_t *krow = reinterpret_cast<const uint32_t *>(k_s + (kp * KW + nb * 8 + g) * LD);
                KV::mma(s[nb], a0, a1, a2, a3, krow[kk * 8 + q4], krow[kk * 8 + 4 + q4]);
            }
        }

        /* causal mask, online softmax (exp2 domain) */
        const int key0 = it * ATTN_KT + kp * KW + 2 * q4;
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int j = key0 + nb * 8 + (e & 1);
                if (j > rpos[e >> 1]) s[nb][e] = -INFINITY;
                mx[e >> 1] = fmaxf(mx[e >> 1], s[nb][e]);
            }
        }
        float mu[2];
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            mx[hh] = fmaxf(mx[hh], __shfl_xor_sync(0xffffffffu, mx[hh], 1));
            mx[hh] = fmaxf(mx[hh], __shfl_xor_sync(0xffffffffu, mx[hh], 2));
            const float mn = fmaxf(m[hh], mx[hh]);
            mu[hh] = mn == -INFINITY ? 0.0f : mn; /* a fully masked row so far: keep p = 0, no NaN */
            const float alpha = exp2f(m[hh] - mu[hh]);
            m[hh] = mn;
            l[hh] *= alpha;
#pragma unroll
            for (int dn = 0; dn < DN; dn++) {
                o[dn][2 * hh] *= alpha;
                o[dn][2 * hh + 1] *= alpha;
            }
        }
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                s[nb][e] = exp2f(s[nb][e] - mu[e >> 1]);
                l[e >> 1] += s[nb][e];
            }
        }

        /* O += P V: the S accumulators of two n-blocks are the A fragment of one k16 step */
        const int lrow = kp * KW + ((lane >> 3) & 1) * 8 + (lane & 7);
        const uint32_t v_lane = v_sa + (uint32_t)((lrow * LD + (lane >> 4) * 8) * 2);
#pragma unroll
        for (int kb = 0; kb < KW / 16; kb++) {
            const uint32_t a0 = KV::pack(s[2 * kb][0], s[2 * kb][1]);
            const uint32_t a1 = KV::pack(s[2 * kb][2], s[2 * kb][3]);
            const uint32_t a2 = KV::pack(s[2 * kb + 1][0], s[2 * kb + 1][1]);
            const uint32_t a3 = KV::pack(s[2 * kb + 1][2], s[2 * kb + 1][3]);
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t b0, b1, b2, b3;
                ldsm_x4_trans(v_lane + (uint32_t)((kb * 16 * LD + dp * 16) * 2), b0, b1, b2, b3);
                KV::mma(o[2 * dp], a0, a1, a2, a3, b0, b1);
                KV::mma(o[2 * dp + 1], a0, a1, a2, a3, b2, b3);
            }
        }
        __syncthreads(); /* this stage is refilled two iterations on (one with a single stage) */
    }
    qn_cp_async_wait<0>();

    /* row sums were per lane: add the quad */
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        l[hh] += __shfl_xor_sync(0xffffffffu, l[hh], 1);
        l[hh] += __shfl_xor_sync(0xffffffffu, l[hh], 2);
    }
    __syncthreads(); /* Q and KV tiles are dead: reuse the memory for the per-warp partials */
    float *o_s = reinterpret_cast<float *>(smem);                 /* [ATTN_WARPS][16][D] */
    float2 *ml_s = reinterpret_cast<float2 *>(o_s + ATTN_WARPS * 16 * D); /* [ATTN_WARPS][16] */
#pragma unroll
    for (int dn = 0; dn < DN; dn++) {
        *reinterpret_cast<float2 *>(o_s + (warp * 16 + g) * D + dn * 8 + 2 * q4) = make_float2(o[dn][0], o[dn][1]);
        *reinterpret_cast<float2 *>(o_s + (warp * 16 + g + 8) * D + dn * 8 + 2 * q4) = make_float2(o[dn][2], o[dn][3]);
    }
    if (q4 == 0) {
        ml_s[warp * 16 + g] = make_float2(m[0], l[0]);
        ml_s[warp * 16 + g + 8] = make_float2(m[1], l[1]);
    }
    __syncthreads();

    /* merge the WK key parts of each row (fixed order), then store */
    const int split = blockIdx.z;
    for (int i = tid; i < rows * D; i += ATTN_THREADS) {
        const int r = i / D, d = i % D;
        const int rbl = r / 16, rr = r % 16;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < WK; w++) M = fmaxf(M, ml_s[(rbl + w * WR) * 16 + rr].x);
        float L = 0.0f, O = 0.0f;
        if (M != -INFINITY) {
#pragma unroll
            for (int w = 0; w < WK; w++) {
                const int wi = rbl + w * WR;
                const float2 ml = ml_s[wi * 16 + rr];
                if (ml.x == -INFINITY) continue;
                const float sc = exp2f(ml.x - M);
                L += ml.y * sc;
                O += o_s[(wi * 16 + rr) * D + d] * sc;
            }
        }
        const int R = row0 + r;
        const size_t orow = (size_t)(first + R / p.group) * p.a.n_heads + (size_t)(kvh * p.group + R % p.group);
        attn_store<D>(p, direct, split, orow, d, M, L, O);
    }
}

/* CTAs per SM the register allocation must allow. 8-warp CTAs at head_dim <= 128 are held to 128 registers
 * (no spills: 0 bytes of local memory at D = 128) so that two fit an SM: measured on an H200 against the
 * same kernel at 173 registers and one CTA per SM, prefill attention took 143 against 196 us (4 x 512
 * tokens, Llama-3-8B shape) and 57 against 75 us (1 x 512; bench/results/gpu-serve-attn-2026-12-02.md). */
#define ATTN_MIN_CTAS(D) ((ATTN_WARPS == 8 && (D) <= 128) ? 2 : 1)

template <int D, typename KV>
__global__ void __launch_bounds__(ATTN_THREADS, ATTN_MIN_CTAS(D)) paged_attention_fwd(const attn_params p) {
    extern __shared__ __align__(16) uint16_t attn_smem_buf[];
    qn_pdl_trigger();
    qn_pdl_wait();
    const int tile_i = blockIdx.x / p.n_chunks, chunk = blockIdx.x % p.n_chunks;
    const int kvh = blockIdx.y, split = blockIdx.z;
    const qn_attn_tile tile = p.a.tiles[tile_i];
    const int rows_total = p.group * tile.count;
    const int row0 = chunk * ATTN_ROWS;
    if (row0 >= rows_total) return; /* a short tile needs fewer row chunks than the launch has */
    const int rows = min(ATTN_ROWS, rows_total - row0);
    const int pos0 = p.a.positions[tile.first];
    /* the split's key range, from the real positions (a captured graph stays valid as contexts grow) */
    const int n_keys = pos0 + tile.count;
    const attn_split sp = attn_split_keys(n_keys, p.n_splits, split);
    const int kt_begin = sp.k_begin / ATTN_KT, kt_end = (sp.k_end + ATTN_KT - 1) / ATTN_KT;
    /* Non-empty splits are a prefix (split 0 always has keys). An empty split only marks its rows
     * ATTN_ML_EMPTY for the combine and leaves: with a capacity-sized split count and a short
     * context (decode at ctx 20 of 4096: 15 of 16 splits) most CTAs are empty. When split 0 holds
     * every key it writes the fp16 output itself and the combine leaves those rows alone. */
    if (kt_begin >= kt_end) {
        for (int r = threadIdx.x; r < rows; r += ATTN_THREADS) {
            const int R = row0 + r;
            const size_t orow = (size_t)(tile.first + R / p.group) * p.a.n_heads + (size_t)(kvh * p.group + R % p.group);
            p.ws_ml[(size_t)split * p.a.n_tokens * p.a.n_heads + orow] = ATTN_ML_EMPTY;
        }
        return;
    }
    const bool direct = sp.all; /* this split holds every key of the tile */
    if (rows <= 16 * ATTN_WARPS / 4)
        attn_cta<D, KV, 4>(p, attn_smem_buf, tile.first, pos0, kvh, row0, rows, n_keys, kt_begin, kt_end, direct);
    else if (rows <= 16 * ATTN_WARPS / 2)
        attn_cta<D, KV, 2>(p, attn_smem_buf, tile.first, pos0, kvh, row0, rows, n_keys, kt_begin, kt_end, direct);
    else
        attn_cta<D, KV, 1>(p, attn_smem_buf, tile.first, pos0, kvh, row0, rows, n_keys, kt_begin, kt_end, direct);
}

/* One warp per (token, head) row: out = sum_s O_s 2^(m_s - M) / sum_s l_s 2^(m_s - M). Lane s holds
 * split s's (m, l) (n_splits <= 32), M and L are warp butterflies (fixed order), O is summed over
 * the splits in order. Splits with l <= 0 (empty, or every key masked for this row) are skipped, so
 * their O is never read. Split 1 empty means split 0 held every key and already wrote the row. */
__global__ void __launch_bounds__(128)
paged_attention_combine(const float *__restrict__ ws_o, const float2 *__restrict__ ws_ml, int n_rows, int head_dim,
                        int n_splits, uint16_t *__restrict__ out) {
    qn_pdl_trigger();
    qn_pdl_wait();
    const int row = blockIdx.x * 4 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= n_rows) return;
    const float2 ml = lane < n_splits ? __ldca(ws_ml + (size_t)lane * n_rows + row) : ATTN_ML_EMPTY;
    if (attn_ml_is_empty(__shfl_sync(0xffffffffu, ml.x, 1), __shfl_sync(0xffffffffu, ml.y, 1))) return;
    const bool live = ml.y > 0.0f;
    float M = live ? ml.x : -INFINITY;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    const float w = live ? exp2f(ml.x - M) : 0.0f; /* this lane's split weight */
    const float L = qn_warp_sum(live ? ml.y * w : 0.0f);
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    /* every lane runs every iteration (the shuffles need the whole warp); lanes past head_dim
     * (head_dim 64/80/96) only take part in the shuffles */
    for (int d0 = 0; d0 < head_dim; d0 += 128) {
        const int d = d0 + lane * 4;
        const bool mine = d < head_dim;
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int s = 0; s < n_splits; s++) {
            const float ws = __shfl_sync(0xffffffffu, w, s);
            if (!(ws > 0.0f) || !mine) continue; /* ws is warp-uniform */
            const float4 x = __ldca(reinterpret_cast<const float4 *>(ws_o + ((size_t)s * n_rows + row) * head_dim + d));
            acc.x += ws * x.x;
            acc.y += ws * x.y;
            acc.z += ws * x.z;
            acc.w += ws * x.w;
        }
        if (!mine) continue;
        __half2 h01 = __floats2half2_rn(acc.x * inv, acc.y * inv);
        __half2 h23 = __floats2half2_rn(acc.z * inv, acc.w * inv);
        uint2 st = make_uint2(qn_h2_bits(h01), qn_h2_bits(h23));
        *reinterpret_cast<uint2 *>(out + (size_t)row * head_dim + d) = st;
    }
}

template <int D, typename KV>
static qn_status attn_launch(const attn_params &p, int n_tiles, cudaStream_t stream) {
    const size_t smem = attn_smem<D>::BYTES;
    auto kern = paged_attention_fwd<D, KV>;
    if (smem > 48 * 1024) QN_CUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    const dim3 grid((unsigned)(n_tiles * p.n_chunks), (unsigned)p.a.n_kv_heads, (unsigned)p.n_splits);
    QN_CUDA_TRY(qn_launch(kern, grid, dim3(ATTN_THREADS), smem, stream, p.a.pdl != 0, p));
    return QN_OK;
}

template <typename KV>
static qn_status attn_dispatch_d(const attn_params &p, int head_dim, int n_tiles, cudaStream_t stream) {
    switch (head_dim) {
    case 64: return attn_launch<64, KV>(p, n_tiles, stream);
    case 80: return attn_launch<80, KV>(p, n_tiles, stream);
    case 96: return attn_launch<96, KV>(p, n_tiles, stream);
    case 128: return attn_launch<128, KV>(p, n_tiles, stream);
    case 256: return attn_launch<256, KV>(p, n_tiles, stream);
    default: return QN_ERR_UNSUPPORTED;
    }
}

extern "C" qn_status qn_attn_paged_cuda(const qn_attn_cuda_args *a, int n_sm, void *stream) {
    if (!a) return QN_ERR_INVALID_ARG;
    const int D = a->head_dim;
    if (D != 64 && D != 80 && D != 96 && D != 128 && D != 256) return QN_ERR_UNSUPPORTED;
    if (a->kv_dtype != QN_KV_F16 && a->kv_dtype != QN_KV_BF16) return QN_ERR_UNSUPPORTED;
    if (a->n_tokens < 0 || a->n_tiles < 0 || a->n_heads <= 0 || a->n_kv_heads <= 0 || a->block_size <= 0 ||
        a->n_heads % a->n_kv_heads != 0 || a->n_splits < 0 || a->n_splits > QN_ATTN_MAX_SPLITS ||
        a->n_kv_heads > 65535 || a->max_blocks_per_seq <= 0)
        return QN_ERR_INVALID_ARG;
    if (a->path != QN_ATTN_PATH_AUTO && a->path != QN_ATTN_PATH_TENSOR_CORE && a->path != QN_ATTN_PATH_DECODE &&
        a->path != QN_ATTN_PATH_SPLIT)
        return QN_ERR_INVALID_ARG;
    if (a->n_single < 0 || a->n_single > a->n_tiles) return QN_ERR_INVALID_ARG;
    if (a->n_tokens == 0 || a->n_tiles == 0) return QN_OK;
    const int decode = qn_attn_cuda_takes_decode(a->n_tokens, a->n_tiles, a->n_heads, a->n_kv_heads, D);
    const int split = qn_attn_cuda_takes_split(a->n_single, a->n_tiles, a->n_heads, a->n_kv_heads, D);
    if (a->path == QN_ATTN_PATH_DECODE &&
        !qn_attn_cuda_decode_fits(a->n_tokens, a->n_tiles, a->n_heads, a->n_kv_heads, D))
        return QN_ERR_UNSUPPORTED;
    if (a->path == QN_ATTN_PATH_SPLIT && !split) return QN_ERR_UNSUPPORTED;
    const bool take_split = a->path == QN_ATTN_PATH_SPLIT || (a->path == QN_ATTN_PATH_AUTO && !decode && split);
    const int n_splits = a->n_splits > 0 ? a->n_splits : qn_attn_cuda_splits(a->n_tiles, a->n_kv_heads, a->max_ctx, n_sm);
    const size_t ws = qn_attn_cuda_workspace_size(a->n_tokens, a->n_heads, D, n_splits);
    if (ws > 0 && (!a->workspace || a->ws_bytes < ws || ((uintptr_t)a->workspace & 15u))) return QN_ERR_INVALID_ARG;

    attn_params p;
    p.a = *a;
    p.group = a->n_heads / a->n_kv_heads;
    /* row chunks cover the largest tile this launch can hold (a graph's token count is fixed) */
    const int max_count = a->n_tokens < QN_ATTN_TILE_MAX_TOKENS ? a->n_tokens : QN_ATTN_TILE_MAX_TOKENS;
    p.n_chunks = (p.group * max_count + ATTN_ROWS - 1) / ATTN_ROWS;
    p.n_splits = n_splits;
    p.qscale = a->scale * ATTN_LOG2E;
    const size_t rows = (size_t)a->n_tokens * a->n_heads;
    p.ws_o = ws > 0 ? (float *)a->workspace : NULL;
    p.ws_ml = ws > 0 ? (float2 *)((float *)a->workspace + (size_t)n_splits * rows * D) : NULL;
    if ((int64_t)a->n_tiles * p.n_chunks > INT32_MAX) return QN_ERR_SHAPE;

    cudaStream_t st = (cudaStream_t)stream;
    const bool bf16 = a->kv_dtype == QN_KV_BF16;
    qn_status s;
    if (a->path == QN_ATTN_PATH_DECODE || (a->path == QN_ATTN_PATH_AUTO && decode)) {
        s = attn_decode_launch(p, bf16, st);
    } else if (take_split) {
        /* the single-token tiles to the decode kernel, the rest to the tensor-core kernel; both cut keys
         * into the same n_splits, so one combine below serves every row */
        attn_params pd = p, pt = p;
        pd.a.n_tiles = a->n_single;
        pt.a.tiles = a->tiles + a->n_single, pt.a.n_tiles = a->n_tiles - a->n_single;
        s = attn_decode_launch(pd, bf16, st);
        if (s == QN_OK)
            s = bf16 ? attn_dispatch_d<kv_bf16>(pt, D, pt.a.n_tiles, st) : attn_dispatch_d<kv_f16>(pt, D, pt.a.n_tiles, st);
    } else
        s = bf16 ? attn_dispatch_d<kv_bf16>(p, D, a->n_tiles, st) : attn_dispatch_d<kv_f16>(p, D, a->n_tiles, st);
    if (s != QN_OK || n_splits == 1) return s;
    QN_CUDA_TRY(qn_launch(paged_attention_combine, dim3((unsigned)((rows + 3) / 4)), dim3(128), 0, st, a->pdl != 0,
                          (const float *)p.ws_o, (const float2 *)p.ws_ml, (int)rows, (int)D, (int)n_splits, a->out));
    return QN_OK;
}

/* ------------------------------------------------------------------------------------------------
 * KV block copy */

extern "C" qn_status qn_kv_copy_block_cuda(void *k_cache, void *v_cache, int32_t src, int32_t dst, int32_t block_size,
                                           int32_t n_kv_heads, int32_t head_dim, void *stream) {
    if (src < 0 || dst < 0 || block_size <= 0 || n_kv_heads <= 0 || head_dim <= 0) return QN_ERR_INVALID_ARG;
    if (src == dst) return QN_OK;
    const size_t bytes = (size_t)block_size * n_kv_heads * head_dim * sizeof(uint16_t);
    cudaStream_t st = (cudaStream_t)stream;
    QN_CUDA_TRY(cudaMemcpyAsync((char *)k_cache + (size_t)dst * bytes, (const char *)k_cache + (size_t)src * bytes, bytes,
                                cudaMemcpyDeviceToDevice, st));
    QN_CUDA_TRY(cudaMemcpyAsync((char *)v_cache + (size_t)dst * bytes, (const char *)v_cache + (size_t)src * bytes, bytes,
                                cudaMemcpyDeviceToDevice, st));
    return QN_OK;
}
