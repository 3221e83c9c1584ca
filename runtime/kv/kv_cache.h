/* kv_cache.h — KV storage and layout (host memory on the CPU path; device memory on the CUDA path).
 * Owns the K and V arrays of every layer; does not own block ids (kv/block_pool.h does).
 * Layout per layer: [n_blocks * block_size][n_kv_heads][head_dim] fp16. */
#ifndef QN_KV_CACHE_H
#define QN_KV_CACHE_H

#include <stdint.h>

#include "quern.h"

typedef struct qn_kv_cache {
    int32_t n_layer, n_blocks, block_size, n_kv_heads, head_dim;
    uint16_t **k;   /* [n_layer] -> [n_blocks * block_size][n_kv_heads][head_dim] fp16 */
    uint16_t **v;   /* same */
} qn_kv_cache;

/* Bytes the cache of n_blocks needs (both K and V, all layers). */
uint64_t qn_kv_cache_bytes(int32_t n_layer, int32_t n_blocks, int32_t block_size, int32_t n_kv_heads,
                           int32_t head_dim);
/* --- lifecycle (host memory) --- */
qn_status qn_kv_cache_create_cpu(int32_t n_layer, int32_t n_blocks, int32_t block_size, int32_t n_kv_heads,
                                 int32_t head_dim, qn_kv_cache **out, qn_error *err);
void qn_kv_cache_destroy_cpu(qn_kv_cache *kv); /* NULL is a no-op */
/* Copies block src to block dst in every layer (copy-on-write). */
void qn_kv_cache_copy_block_cpu(qn_kv_cache *kv, int32_t src, int32_t dst);

#endif
