/* attn_tiles.c — host-side launch planning of the CUDA paged attention (attention_cuda.h): query
 * tiles from a step's token list, the split-K count and the workspace size. Plain C with no CUDA
 * dependency, so CPU-only builds and the planning tests have it too. */
#include "kernels/attention/attention_cuda.h"

int32_t qn_attn_make_tiles(const int32_t *seq_idx, const int32_t *positions, int32_t n_tokens,
                           qn_attn_tile *tiles) {
    int32_t n = 0;
    for (int32_t t = 0; t < n_tokens; t++) {
        qn_attn_tile *cur = n > 0 ? &tiles[n - 1] : NULL;
        if (cur && cur->count < QN_ATTN_TILE_MAX_TOKENS && seq_idx[t] == seq_idx[t - 1] &&
            positions[t] == positions[t - 1] + 1) {
            cur->count++;
        } else {
            tiles[n].first = t;
            tiles[n].count = 1;
            n++;
        }
    }
    return n;
}

int32_t qn_attn_singles_first(qn_attn_tile *tiles, int32_t n_tiles) {
    int32_t n_single = 0;
    for (int32_t i = 0; i < n_tiles; i++) n_single += tiles[i].count == 1;
    if (n_single == 0 || n_single == n_tiles) return n_single;
    /* stable partition through a rotation per run of multi-token tiles: O(n) moves in total would need
     * a buffer; steps have at most a few prefill chunks, so rotating each single into place is cheap */
    int32_t w = 0;
    for (int32_t i = 0; i < n_tiles; i++) {
        if (tiles[i].count != 1) continue;
        const qn_attn_tile t = tiles[i];
        for (int32_t j = i; j > w; j--) tiles[j] = tiles[j - 1];
        tiles[w++] = t;
    }
    return n_single;
}

/* Aim for two CTAs per multiprocessor (one runs while the other waits on memory), but never cut
 * a split below QN_ATTN_MIN_SPLIT_KEYS keys: below that the combine pass and the per-CTA Q load
 * cost more than the parallelism brings. */
#define QN_ATTN_CTAS_PER_SM 2
#define QN_ATTN_MIN_SPLIT_KEYS 256

int32_t qn_attn_cuda_splits(int32_t n_tiles, int32_t n_kv_heads, int32_t max_ctx, int32_t n_sm) {
    if (n_tiles <= 0 || n_kv_heads <= 0 || n_sm <= 0) return 1;
    const int64_t ctas = (int64_t)n_tiles * n_kv_heads;
    const int64_t target = (int64_t)QN_ATTN_CTAS_PER_SM * n_sm;
    if (ctas >= target) return 1;
    int64_t s = (target + ctas - 1) / ctas;
    const int64_t by_keys = max_ctx / QN_ATTN_MIN_SPLIT_KEYS;
    if (s > by_keys) s = by_keys;
    if (s > QN_ATTN_MAX_SPLITS) s = QN_ATTN_MAX_SPLITS;
    return s < 1 ? 1 : (int32_t)s;
}

#define QN_ATTN_DECODE_MAX_GROUP 8
/* Steps of single tokens go to the decode kernel at every count: measured side by side on an H200
 * (bench_gpu_attention, Llama-3-8B shape, contexts 512-640; bench/results/gpu-serve-attn-2026-12-02.md) it
 * takes 20.5 / 59.8 / 207 us at 16 / 64 / 256 tokens against the tensor-core kernel's 21.8 / 65.4 / 237,
 * and 50 against 71 us at 256 tokens of contexts 1-128. */
int qn_attn_cuda_decode_fits(int32_t n_tokens, int32_t n_tiles, int32_t n_heads, int32_t n_kv_heads,
                             int32_t head_dim) {
    if (n_tokens <= 0 || n_tiles != n_tokens || n_kv_heads <= 0 || n_heads % n_kv_heads != 0) return 0;
    return (head_dim == 64 || head_dim == 128) && n_heads / n_kv_heads <= QN_ATTN_DECODE_MAX_GROUP;
}

int qn_attn_cuda_takes_decode(int32_t n_tokens, int32_t n_tiles, int32_t n_heads, int32_t n_kv_heads,
                              int32_t head_dim) {
    return qn_attn_cuda_decode_fits(n_tokens, n_tiles, n_heads, n_kv_heads, head_dim);
}

int qn_attn_cuda_takes_split(int32_t n_single, int32_t n_tiles, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim) {
    return n_single > 0 && n_single < n_tiles &&
           qn_attn_cuda_decode_fits(n_single, n_single, n_heads, n_kv_heads, head_dim);
}

size_t qn_attn_cuda_workspace_size(int32_t n_tokens, int32_t n_heads, int32_t head_dim, int32_t n_splits) {
    if (n_splits <= 1 || n_tokens <= 0 || n_heads <= 0 || head_dim <= 0) return 0;
    const size_t rows = (size_t)n_splits * (size_t)n_tokens * (size_t)n_heads;
    /* [n_splits][n_tokens][n_heads][head_dim] f32 partial O, then [same rows] (m, l) float pairs;
     * head_dim is a multiple of 16, so the (m, l) part starts 16-byte aligned */
    return rows * (size_t)head_dim * sizeof(float) + rows * 2 * sizeof(float);
}
