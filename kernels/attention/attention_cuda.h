/* attention_cuda.h — the CUDA attention of the forward pass over a paged KV cache (CPU twins in
 * attention.h). Owns no memory; every pointer is device memory, all work is on `stream`.
 *
 * KV layout, per layer (as on the CPU path): k_cache, v_cache: [n_blocks * block_size][n_kv_heads]
 * [head_dim] fp16 or bf16 bits; position p of a sequence lives in slot
 * block_table[p / block_size] * block_size + p % block_size.  GQA: query head h reads kv head
 * h / (n_heads / n_kv_heads).
 *
 * Query tiles: the tokens of one step are grouped on the host into tiles of consecutive tokens of
 * one sequence (at most QN_ATTN_TILE_MAX_TOKENS each, positions increasing by one). A decode token
 * is a tile of one; a prefill chunk is cut into tiles. One CTA serves one (tile, kv head, split):
 * all group query heads of the tile's tokens against one K/V tile stream in shared memory
 * (flash-style online softmax, causal: token at position p sees keys [0, p]), so chunked prefill
 * reads the earlier blocks of its sequence like any other key.
 * Split-K: the key range of a tile is cut into n_splits parts computed IN THE KERNEL from the
 * actual positions (so a CUDA graph captured once stays valid as contexts grow); partial results
 * (m, l, o) go to the workspace and a second kernel combines them (deterministic order). */
#ifndef QN_ATTENTION_CUDA_H
#define QN_ATTENTION_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Warps of a tensor-core attention CTA (paged_attention_fwd), 16 query rows each; a query tile holds
 * 4 tokens per warp (G = 4: one CTA's rows). 8 (tiles of 32 tokens, two CTAs per SM) against 4 (tiles of
 * 16) measured 1.39x on prefill attention (H200, bench_gpu_attention, 4 x 512 tokens); -DQN_ATTN_WARPS=4
 * builds the other for an A/B. */
#ifndef QN_ATTN_WARPS
#define QN_ATTN_WARPS 8
#endif
#define QN_ATTN_TILE_MAX_TOKENS (4 * QN_ATTN_WARPS)

typedef enum qn_kv_dtype { QN_KV_F16 = 0, QN_KV_BF16 = 1 } qn_kv_dtype;

typedef struct qn_attn_tile {
    int32_t first;   /* first token row of the tile */
    int32_t count;   /* tokens, 1..QN_ATTN_TILE_MAX_TOKENS, all of one sequence, consecutive positions */
} qn_attn_tile;

/* Fills tiles[] from a step's seq_idx/positions (host arrays); returns the tile count (<= n_tokens). */
int32_t qn_attn_make_tiles(const int32_t *seq_idx, /* [n_tokens] */ const int32_t *positions, /* [n_tokens] */
                           int32_t n_tokens, qn_attn_tile *tiles /* [n_tokens] */);

/* Reorders tiles[] (host) so that the single-token tiles come first, each part keeping its order;
 * returns how many there are (qn_attn_cuda_args.n_single). A mixed step (decodes beside a prefill
 * chunk) then gives its decode tokens to the decode kernel and only the prefill tiles to the
 * tensor-core kernel. */
int32_t qn_attn_singles_first(qn_attn_tile *tiles, /* [n_tiles] */ int32_t n_tiles);

typedef struct qn_rope_cuda_params {
    int32_t rope_dim;            /* rotated dims per head (even, <= head_dim) */
    int32_t neox;                /* 0: pairs (2i, 2i+1); 1: pairs (i, i + rope_dim/2) */
    float theta_base;
    float freq_scale;            /* 1/factor for linear scaling, else 1 */
    const float *freq_factors;   /* [rope_dim/2] llama3 factors, device memory, or NULL */
    int32_t pdl;                 /* launch with programmatic dependent launch (sm_90+): the angles are
                                  * computed while the kernel before still runs */
} qn_rope_cuda_params;

/* Per token t: q/k/v += bias (each bias may be NULL), RoPE on q and k at positions[t], q written
 * back in place (f32), k and v written into the caches at slot_mapping[t] (fp16/bf16, RNE);
 * slot_mapping[t] < 0 (a padding token) stores nothing. Angles in double (see attention_cuda.cu
 * for how they differ from the CPU path's f32 recurrence). QN_ERR_SHAPE for an odd rope_dim or
 * rope_dim > min(head_dim, 256). */
qn_status qn_rope_kv_write_cuda(float *q,                  /* [n_tokens][n_heads][head_dim] */
                                const float *k,            /* [n_tokens][n_kv_heads][head_dim] */
                                const float *v,            /* [n_tokens][n_kv_heads][head_dim] */
                                const float *bq, const float *bk, const float *bv, /* [rows] or NULL */
                                const int32_t *positions,  /* [n_tokens] */
                                const int32_t *slot_mapping, /* [n_tokens] */
                                int32_t n_tokens, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim,
                                const qn_rope_cuda_params *rope, qn_kv_dtype kv_dtype,
                                void *k_cache, void *v_cache, /* [n_slots][n_kv_heads][head_dim] */
                                void *stream);

/* Which kernel serves a launch. AUTO: DECODE when qn_attn_cuda_takes_decode(), SPLIT when
 * qn_attn_cuda_takes_split(), else TENSOR_CORE.
 * TENSOR_CORE (paged_attention_fwd): any tiles; mma.sync on shared-memory K/V tiles.
 * DECODE (paged_attention_decode): every tile one token (n_tiles == n_tokens, any count), head_dim 64 or
 *   128, group <= 8; each warp stages its 32 K/V rows in shared memory (cp.async) for CUDA-core f32 dot
 *   products, Q and P kept in f32. Forcing it where it does not apply is QN_ERR_UNSUPPORTED. Both cut the
 *   keys into the same splits (same workspace, same combine). */
/* SPLIT (a mixed step, n_single tiles first, 0 < n_single < n_tiles, decode kernel shape): tiles[0,
 *   n_single) to the decode kernel and the rest to the tensor-core kernel, two launches with the same
 *   split count; AUTO takes it for every such step (qn_attn_cuda_takes_split). */
typedef enum qn_attn_path {
    QN_ATTN_PATH_AUTO = 0,
    QN_ATTN_PATH_TENSOR_CORE = 1,
    QN_ATTN_PATH_DECODE = 2,
    QN_ATTN_PATH_SPLIT = 3
} qn_attn_path;

/* Whether the decode kernel can serve this launch shape (forced DECODE), and whether AUTO gives it
 * to it (host C, no CUDA call). */
int qn_attn_cuda_decode_fits(int32_t n_tokens, int32_t n_tiles, int32_t n_heads, int32_t n_kv_heads,
                             int32_t head_dim);
int qn_attn_cuda_takes_decode(int32_t n_tokens, int32_t n_tiles, int32_t n_heads, int32_t n_kv_heads,
                              int32_t head_dim);
int qn_attn_cuda_takes_split(int32_t n_single, int32_t n_tiles, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim);

typedef struct qn_attn_cuda_args {
    const float *q;              /* [n_tokens][n_heads][head_dim] f32, RoPE applied */
    const void *k_cache;         /* [n_slots][n_kv_heads][head_dim] */
    const void *v_cache;
    qn_kv_dtype kv_dtype;
    const int32_t *positions;    /* [n_tokens] */
    const int32_t *seq_idx;      /* [n_tokens] */
    const int32_t *block_tables; /* [n_seqs][max_blocks_per_seq] */
    int32_t max_blocks_per_seq;
    const qn_attn_tile *tiles;   /* [n_tiles] (device copy of qn_attn_make_tiles) */
    int32_t n_tiles;
    int32_t n_single;            /* tiles[0, n_single) hold one token each (qn_attn_singles_first); 0: unknown */
    int32_t n_tokens, n_heads, n_kv_heads, head_dim, block_size;
    int32_t max_ctx;             /* upper bound of positions + 1 this launch may see: sizes n_splits */
    int32_t n_splits;            /* 0: qn_attn_cuda_splits(); else forced (tests), <= QN_ATTN_MAX_SPLITS */
    qn_attn_path path;           /* AUTO in the forward pass; tests force each kernel */
    int32_t pdl;                 /* programmatic dependent launch (sm_90+): the decode kernel reads the step
                                  * arrays and block table while the kernel before still runs */
    float scale;                 /* usually 1/sqrt(head_dim) */
    uint16_t *out;               /* [n_tokens][n_heads][head_dim] fp16: the o-projection input */
    void *workspace;             /* qn_attn_cuda_workspace_size() bytes, 16-byte aligned */
    size_t ws_bytes;
} qn_attn_cuda_args;

#define QN_ATTN_MAX_SPLITS 32

/* Splits the kernel uses for a launch shape (deterministic in its arguments; n_sm: multiprocessors). A
 * SPLIT launch uses the count of all its tiles for both kernels (counting the tensor-core tiles alone was
 * measured slower: 301 against 279 us for 256 decodes beside a 458-token chunk, H200). */
int32_t qn_attn_cuda_splits(int32_t n_tiles, int32_t n_kv_heads, int32_t max_ctx, int32_t n_sm);
/* Workspace bytes for n_splits partial results of n_tokens x n_heads rows; 0 when n_splits <= 1
 * (one split writes `out` directly and needs no workspace). */
size_t qn_attn_cuda_workspace_size(int32_t n_tokens, int32_t n_heads, int32_t head_dim, int32_t n_splits);

/* QN_ERR_UNSUPPORTED for head_dim not in {64, 80, 96, 128, 256} (compiled variants);
 * QN_ERR_INVALID_ARG for a short or unaligned workspace. The tiles must cover tokens
 * [0, n_tokens) (qn_attn_make_tiles does), with every key position < pos + 1 of a tile already
 * written to the cache; the device tiles are not validated. */
qn_status qn_attn_paged_cuda(const qn_attn_cuda_args *a, int n_sm, void *stream);

/* Copies block src to block dst of one layer's caches (copy-on-write of a shared prefix block). */
qn_status qn_kv_copy_block_cuda(void *k_cache, void *v_cache, int32_t src, int32_t dst, int32_t block_size,
                                int32_t n_kv_heads, int32_t head_dim, void *stream);

#ifdef __cplusplus
}
#endif
#endif /* QN_ATTENTION_CUDA_H */
