/* kv_cache.c — host KV storage for the CPU path (kv/kv_cache.h). */
#include "kv/kv_cache.h"

#include <stdlib.h>
#include <string.h>

uint64_t qn_kv_cache_bytes(int32_t n_layer, int32_t n_blocks, int32_t block_size, int32_t n_kv_heads,
                           int32_t head_dim) {
    return 2ull * (uint64_t)n_layer * (uint64_t)n_blocks * (uint64_t)block_size * (uint64_t)n_kv_heads *
           (uint64_t)head_dim * sizeof(uint16_t);
}

qn_status qn_kv_cache_create_cpu(int32_t n_layer, int32_t n_blocks, int32_t block_size, int32_t n_kv_heads,
                                 int32_t head_dim, qn_kv_cache **out, qn_error *err) {
    if (n_layer <= 0 || n_blocks <= 0 || block_size <= 0 || n_kv_heads <= 0 || head_dim <= 0)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "kv cache: bad geometry");
    qn_kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return qn_error_set(err, QN_ERR_NOMEM, "kv cache: out of memory");
    *kv = (qn_kv_cache){n_layer, n_blocks, block_size, n_kv_heads, head_dim, NULL, NULL};
    kv->k = calloc((size_t)n_layer, sizeof(uint16_t *));
    kv->v = calloc((size_t)n_layer, sizeof(uint16_t *));
    const size_t per = (size_t)n_blocks * block_size * n_kv_heads * head_dim * sizeof(uint16_t);
    if (!kv->k || !kv->v) goto err_free;
    for (int32_t l = 0; l < n_layer; l++) {
        kv->k[l] = malloc(per);
        kv->v[l] = malloc(per);
        if (!kv->k[l] || !kv->v[l]) goto err_free;
    }
    *out = kv;
    return QN_OK;
err_free:
    qn_kv_cache_destroy_cpu(kv);
    return qn_error_set(err, QN_ERR_NOMEM, "kv cache: cannot allocate %d blocks (%llu bytes)", n_blocks,
                        (unsigned long long)qn_kv_cache_bytes(n_layer, n_blocks, block_size, n_kv_heads, head_dim));
}

void qn_kv_cache_destroy_cpu(qn_kv_cache *kv) {
    if (!kv) return;
    for (int32_t l = 0; l < kv->n_layer; l++) {
        if (kv->k) free(kv->k[l]);
        if (kv->v) free(kv->v[l]);
    }
    free(kv->k);
    free(kv->v);
    free(kv);
}

void qn_kv_cache_copy_block_cpu(qn_kv_cache *kv, int32_t src, int32_t dst) {
    const size_t blk = (size_t)kv->block_size * kv->n_kv_heads * kv->head_dim;
    for (int32_t l = 0; l < kv->n_layer; l++) {
        memcpy(kv->k[l] + (size_t)dst * blk, kv->k[l] + (size_t)src * blk, blk * sizeof(uint16_t));
        memcpy(kv->v[l] + (size_t)dst * blk, kv->v[l] + (size_t)src * blk, blk * sizeof(uint16_t));
    }
}
