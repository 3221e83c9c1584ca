/* attention_decode.cu — paged_attention_decode: attention for a step whose tiles are all single
 * decode tokens (attention_cuda.h QN_ATTN_PATH_DECODE), on CUDA cores.
 *
 * Code size matters here: K and V rows of a chunk are staged per warp with cp.async (one round trip for
 * both), the loops stay rolled and no per-head branch surrounds a shuffle, so the kernel is 30 KB of sm_90
 * code instead of the first version's 61 KB of straight-line code with collective fallback paths. That
 * version cost 365 tok/s on the 8B Q4_K_M decode against this one's 412 (H200, CUDA graphs,
 * bench/results/gpu-decode-attn-small-2026-12-02.md): the instruction-cache lead of
 * gpu-decode-launches-2026-12-02.md, measured.
 *
 * Why a second kernel: at decode a (token, kv head) has only G <= 8 query rows, so the tensor-core
 * kernel's 64-row mma tiles are mostly padding, and its 87 KB of double-buffered K/V staging
 * (which forces the largest shared-memory carveout between two matmuls that want L1) buys nothing.
 * Here a warp's 32 K and V rows go to its own shared-memory rows (cp.async, zero-filled past the keys) and
 * the dot products are f32.
 *
 * One CTA = (token, kv head, split), 4 warps; the split's keys [k_begin, k_end) (attn_split_keys,
 * the same cut as the tensor-core kernel) are taken 32 at a time, chunk c by warp c % 4:
 *   S    lane i owns key c0 + i: reads its staged K row (16-byte shared loads), dots it with the GM query
 *        rows (f32, pre-scaled by scale * log2 e, rows >= G zero; in shared memory, broadcast reads);
 *   max  per head a warp max over the chunk; the warp's running (m, l, O) are rescaled (exp2);
 *   P.V  lane (kg, ch) = (lane / (D/8), lane % (D/8)) takes dims [8 ch, 8 ch + 8) of keys kg,
 *        kg + KG, ... of the chunk (KG = 32 / (D/8) key groups), P and V from shared memory;
 *   end  key groups are summed with shuffles, the 4 warps' (m, l, O) merged through shared memory
 *        in a fixed order; out (fp16) when the split holds every key, else (O, m, l) to the
 *        workspace for paged_attention_combine.
 * Nothing is rounded to 16 bits on the way: Q, S, P and O stay f32 (K and V are the cache's
 * fp16/bf16, the output fp16), so this path is closer to the reference than the tensor-core one. */
#include <math.h>
#include <stdint.h>

#include "kernels/attention/attn_common.cuh"
#include "kernels/common/cuda_check.h"

#define DEC_WARPS 4
#define DEC_THREADS (DEC_WARPS * 32)

/* Dynamic shared memory: per warp the K and V rows of its current chunk, rows padded by 8 halves
 * (272 bytes at D = 128: the 8 lanes of one 16-byte load phase hit distinct bank groups). */
template <int D>
struct dec_smem {
    static constexpr int LDR = D + 8;
    static constexpr size_t BYTES = (size_t)DEC_WARPS * 2 * 32 * LDR * 2;
};

template <int D, typename KV, int GM>
__global__ void __launch_bounds__(DEC_THREADS) paged_attention_decode(const attn_params p) {
    constexpr int NC = D / 8;    /* 16-byte chunks of a row */
    constexpr int KG = 32 / NC;  /* key groups of a warp in P.V */
    constexpr int KPL = 32 / KG; /* keys of a chunk per lane in P.V */
    constexpr int LDR = dec_smem<D>::LDR;
    static_assert(NC * KG == 32, "D / 8 must divide 32");
    extern __shared__ __align__(16) uint16_t dec_kv[];    /* [DEC_WARPS][K, V][32][LDR] */
    __shared__ __align__(16) float q_s[GM * D];           /* [G][D] Q * scale * log2 e */
    __shared__ float p_s[DEC_WARPS][GM][32];              /* this chunk's probabilities */
    __shared__ int32_t slot_s[DEC_WARPS][32];             /* this chunk's cache slots, -1 past the keys */
    __shared__ __align__(16) float o_s[DEC_WARPS][GM][D]; /* per-warp unnormalised O */
    __shared__ float2 ml_s[DEC_WARPS][GM];                /* per-warp (m, l) */

    qn_pdl_trigger();
    const int G = p.group;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int kvh = blockIdx.y, split = blockIdx.z;
    /* prologue on the step inputs (copied before the first kernel of the step): under PDL it runs
     * while the kernel before (RoPE + KV write) finishes */
    const int token = p.a.tiles[blockIdx.x].first;
    const attn_split sp = attn_split_keys(p.a.positions[token] + 1, p.n_splits, split);
    const size_t row0 = (size_t)token * p.a.n_heads + (size_t)kvh * G; /* output rows row0 .. row0 + G - 1 */
    const int32_t *bt = p.a.block_tables + (size_t)p.a.seq_idx[token] * p.a.max_blocks_per_seq;
    const int bs = p.a.block_size;
    int32_t slot = -1; /* this lane's key of the warp's first chunk */
    {
        const int j = sp.k_begin + warp * 32 + lane;
        if (j < sp.k_end) slot = __ldg(bt + j / bs) * bs + j % bs;
    }
    qn_pdl_wait(); /* q and this token's K/V row come from the kernel before */
    if (sp.k_begin >= sp.k_end) {
        if (tid < G) p.ws_ml[(size_t)split * p.a.n_tokens * p.a.n_heads + row0 + tid] = ATTN_ML_EMPTY;
        return;
    }
    /* rows g >= G are zero: the per-head loops below run all GM rows without a branch (a warp shuffle
     * under a branch the compiler cannot prove uniform costs a collective fallback path), and only
     * rows < G are stored */
    for (int i = tid; i < GM * D / 4; i += DEC_THREADS) {
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (i < G * D / 4) {
            const float4 x = reinterpret_cast<const float4 *>(p.a.q + row0 * D)[i];
            v = make_float4(x.x * p.qscale, x.y * p.qscale, x.z * p.qscale, x.w * p.qscale);
        }
        reinterpret_cast<float4 *>(q_s)[i] = v;
    }
    const size_t slot_halves = (size_t)p.a.n_kv_heads * D;
    const uint16_t *kc = (const uint16_t *)p.a.k_cache + (size_t)kvh * D;
    const uint16_t *vc = (const uint16_t *)p.a.v_cache + (size_t)kvh * D;
    const uint16_t *ks = dec_kv + (size_t)warp * 2 * 32 * LDR, *vs = ks + 32 * LDR;
    const uint32_t ks_a = (uint32_t)__cvta_generic_to_shared(ks), vs_a = (uint32_t)__cvta_generic_to_shared(vs);
    const int kg = lane / NC, ch = lane % NC;
    __syncthreads();

    float m[GM], l[GM], o[GM][8];
#pragma unroll
    for (int g = 0; g < GM; g++) {
        m[g] = -INFINITY, l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++) o[g][e] = 0.0f;
    }

    for (int c0 = sp.k_begin + warp * 32; c0 < sp.k_end; c0 += DEC_WARPS * 32) {
        const int j = c0 + lane;
        const bool ok = j < sp.k_end;
        if (c0 != sp.k_begin + warp * 32) slot = ok ? __ldg(bt + j / bs) * bs + j % bs : -1; /* first: prologue */
        slot_s[warp][lane] = slot;
        __syncwarp();
        /* the chunk's K and V rows into this warp's staging rows, all in flight at once (rows past the
         * keys zero-filled, never read from global) */
#pragma unroll 4
        for (int i = lane; i < 32 * NC; i += 32) {
            const int r = i / NC, c = i % NC;
            const int32_t sl = slot_s[warp][r];
            const size_t off = sl >= 0 ? (size_t)sl * slot_halves + (size_t)c * 8 : 0;
            const uint32_t so = (uint32_t)((r * LDR + c * 8) * 2);
            qn_cp_async16_s(ks_a + so, kc + off, sl >= 0 ? 16u : 0u);
            qn_cp_async16_s(vs_a + so, vc + off, sl >= 0 ? 16u : 0u);
        }
        qn_cp_async_commit();
        qn_cp_async_wait<0>();
        __syncwarp();

        /* S: this lane's key against the G query rows (f32) */
        float s[GM];
#pragma unroll
        for (int g = 0; g < GM; g++) s[g] = 0.0f;
#pragma unroll 2
        for (int c = 0; c < NC; c++) {
            float kf[8];
            KV::unpack8(qn_lds128(ks + lane * LDR + c * 8), kf);
#pragma unroll
            for (int g = 0; g < GM; g++) {
                const float4 qa = *reinterpret_cast<const float4 *>(q_s + g * D + c * 8);
                const float4 qb = *reinterpret_cast<const float4 *>(q_s + g * D + c * 8 + 4);
                float a = s[g];
                a = fmaf(qa.x, kf[0], a), a = fmaf(qa.y, kf[1], a), a = fmaf(qa.z, kf[2], a), a = fmaf(qa.w, kf[3], a);
                a = fmaf(qb.x, kf[4], a), a = fmaf(qb.y, kf[5], a), a = fmaf(qb.z, kf[6], a), a = fmaf(qb.w, kf[7], a);
                s[g] = a;
            }
        }
        /* online softmax: lane 0's key is always valid, so the chunk max is finite */
#pragma unroll
        for (int g = 0; g < GM; g++) {
            const float sv = ok ? s[g] : -INFINITY;
            const float mn = fmaxf(m[g], qn_warp_max(sv));
            const float alpha = exp2f(m[g] - mn); /* 0 on the first chunk (m = -inf) */
            const float pv = exp2f(sv - mn);
            m[g] = mn;
            l[g] = fmaf(l[g], alpha, pv); /* this lane's share; summed over the warp at the end */
#pragma unroll
            for (int e = 0; e < 8; e++) o[g][e] *= alpha;
            p_s[warp][g][lane] = pv;
        }
        __syncwarp();
        /* O += P V over this lane's keys and dims (keys past the end have p = 0 and zero rows) */
#pragma unroll 2
        for (int i = 0; i < KPL; i++) {
            const int jj = kg + i * KG;
            float vf[8];
            KV::unpack8(qn_lds128(vs + jj * LDR + ch * 8), vf);
#pragma unroll
            for (int g = 0; g < GM; g++) {
                const float pg = p_s[warp][g][jj];
#pragma unroll
                for (int e = 0; e < 8; e++) o[g][e] = fmaf(pg, vf[e], o[g][e]);
            }
        }
        __syncwarp(); /* p_s, slot_s and the staging rows are rewritten by the next chunk */
    }

    /* this warp's state: l over lanes, O over key groups (lanes ch, ch + NC, ...) */
#pragma unroll
    for (int g = 0; g < GM; g++) {
        l[g] = qn_warp_sum(l[g]);
#pragma unroll
        for (int off = NC; off < 32; off <<= 1)
#pragma unroll
            for (int e = 0; e < 8; e++) o[g][e] += __shfl_xor_sync(0xffffffffu, o[g][e], off);
        if (lane < NC) {
            float *dst = &o_s[warp][g][ch * 8];
            reinterpret_cast<float4 *>(dst)[0] = make_float4(o[g][0], o[g][1], o[g][2], o[g][3]);
            reinterpret_cast<float4 *>(dst)[1] = make_float4(o[g][4], o[g][5], o[g][6], o[g][7]);
        }
        if (lane == 0) ml_s[warp][g] = make_float2(m[g], l[g]);
    }
    __syncthreads();

    /* merge the warps in order (a warp without keys has m = -inf) and store */
    for (int i = tid; i < G * D; i += DEC_THREADS) {
        const int g = i / D, d = i % D;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, ml_s[w][g].x);
        float L = 0.0f, O = 0.0f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) {
            const float2 ml = ml_s[w][g];
            if (ml.x == -INFINITY) continue;
            const float sc = exp2f(ml.x - M);
            L = fmaf(ml.y, sc, L);
            O = fmaf(o_s[w][g][d], sc, O);
        }
        attn_store<D>(p, sp.all, split, row0 + (size_t)g, d, M, L, O);
    }
}

template <int D, typename KV>
static qn_status dec_launch_d(const attn_params &p, cudaStream_t stream) {
    const dim3 grid((unsigned)p.a.n_tiles, (unsigned)p.a.n_kv_heads, (unsigned)p.n_splits);
    auto kern = p.group <= 4 ? paged_attention_decode<D, KV, 4> : paged_attention_decode<D, KV, 8>;
    const size_t smem = dec_smem<D>::BYTES;
    if (smem > 48 * 1024) QN_CUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    QN_CUDA_TRY(qn_launch(kern, grid, dim3(DEC_THREADS), smem, stream, p.a.pdl != 0, p));
    return QN_OK;
}

template <typename KV>
static qn_status dec_launch(const attn_params &p, cudaStream_t stream) {
    switch (p.a.head_dim) {
    case 64: return dec_launch_d<64, KV>(p, stream);
    case 128: return dec_launch_d<128, KV>(p, stream);
    default: return QN_ERR_UNSUPPORTED;
    }
}

qn_status attn_decode_launch(const attn_params &p, bool bf16, cudaStream_t stream) {
    if (p.group < 1 || p.group > 8) return QN_ERR_UNSUPPORTED;
    return bf16 ? dec_launch<kv_bf16>(p, stream) : dec_launch<kv_f16>(p, stream);
}
