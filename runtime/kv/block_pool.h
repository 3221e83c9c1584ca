/* block_pool.h — the KV block pool: which fixed-size KV blocks exist, who references them, and which
 * full blocks hold a known token prefix (prefix cache).
 * Owns: block ids, ref counts, the free list (LRU order), prefix hashes and the hash -> block map.
 * Does not own: device memory or its layout (kv/kv_cache.h), nor any policy about who gets blocks
 * (sched/scheduler.h). No threads, no GPU: testable on its own (tests/runtime/test_block_pool.c).
 *
 * Functions come in predicate/mutation pairs: a mutation whose predicate is false returns
 * QN_ERR_KV_FULL and changes nothing. */
#ifndef QN_KV_BLOCK_POOL_H
#define QN_KV_BLOCK_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parent hash of a sequence's first block. Hash of a full block = qn_block_hash(parent hash, its
 * block_size token ids), so equal hashes mean equal whole prefixes (checked against the stored
 * token ids and parent hash too, so a 64-bit collision can never serve wrong KV). */
#define QN_BLOCK_HASH_ROOT 0x51a3e7c0ffee1234ULL

typedef struct qn_block_pool qn_block_pool;

/* One sequence's block table. Initialise with qn_seq_blocks_init (all zero is also valid);
 * the pool fills it. Invariants between pool calls:
 *   n_blocks == ceil(n_tokens / block_size); ids[i] is referenced once by this sequence;
 *   n_hashed <= n_tokens / block_size; last_hash is the chain hash of block n_hashed-1. */
typedef struct qn_seq_blocks {
    int32_t *ids;       /* [cap] block ids, first n_blocks valid (the block table) */
    int32_t n_blocks;   /* blocks held */
    int32_t cap;        /* allocated length of ids; kept across free_seq for reuse */
    int32_t n_tokens;   /* token slots covered (positions 0..n_tokens-1 have a slot) */
    int32_t n_hashed;   /* leading full blocks already registered in (or matched from) the cache */
    uint64_t last_hash; /* chain hash of block n_hashed-1, QN_BLOCK_HASH_ROOT when n_hashed == 0 */
} qn_seq_blocks;

/* A block copy the device side must perform (all layers, K and V) before this step's KV writes. */
typedef struct qn_block_copy {
    int32_t src;
    int32_t dst;
} qn_block_copy;

typedef struct qn_block_pool_stats {
    int32_t n_blocks;         /* total */
    int32_t n_free;           /* ref 0, including evictable cached blocks */
    int32_t n_used;           /* ref > 0 */
    int32_t n_cached;         /* blocks with a registered prefix hash (used or free) */
    int64_t prefix_queries;   /* tokens looked up at admission (vllm:prefix_cache_queries) */
    int64_t prefix_hits;      /* of which served from the cache (vllm:prefix_cache_hits) */
    int64_t n_evictions;      /* cached blocks recycled for new data */
    double usage;             /* n_used / n_blocks (vllm:kv_cache_usage_perc) */
} qn_block_pool_stats;

/* --- lifecycle --- */
/* n_blocks >= 1, block_size >= 1, n_blocks * block_size must fit int32 (slot ids are int32). */
qn_status qn_block_pool_create(int32_t n_blocks, int32_t block_size, bool enable_prefix_cache,
                               qn_block_pool **out);
void qn_block_pool_destroy(qn_block_pool *pool); /* NULL is a no-op */

void qn_seq_blocks_init(qn_seq_blocks *seq);
/* Releases the ids array only; the sequence must hold no blocks (qn_block_pool_free_seq first). */
void qn_seq_blocks_free(qn_seq_blocks *seq);

/* --- queries --- */
int32_t qn_block_pool_n_blocks(const qn_block_pool *pool);
int32_t qn_block_pool_block_size(const qn_block_pool *pool);
bool qn_block_pool_prefix_cache_enabled(const qn_block_pool *pool);
int32_t qn_block_pool_n_free(const qn_block_pool *pool);
int32_t qn_block_pool_n_used(const qn_block_pool *pool);
int32_t qn_block_pool_ref(const qn_block_pool *pool, int32_t block_id);
bool qn_block_pool_is_cached(const qn_block_pool *pool, int32_t block_id);
void qn_block_pool_get_stats(const qn_block_pool *pool, qn_block_pool_stats *out);
/* Blocks needed to hold n_tokens tokens: ceil(n_tokens / block_size). */
int32_t qn_block_pool_blocks_for(const qn_block_pool *pool, int32_t n_tokens);

/* Chain hash of one full block. */
uint64_t qn_block_hash(uint64_t parent_hash, const int32_t *tokens /* [block_size] */, int32_t block_size);

/* Slot of token position pos: block_table[pos / block_size] * block_size + pos % block_size. */
static inline int32_t qn_seq_blocks_slot(const qn_seq_blocks *seq, int32_t block_size, int32_t pos) {
    return seq->ids[pos / block_size] * block_size + pos % block_size;
}

/* --- prefix cache --- */
/* Longest cached prefix of tokens[0..n_tokens): writes its block ids to out_blocks
 * [at most (n_tokens-1)/block_size] and returns the number of cached tokens (a multiple of
 * block_size). Full blocks only, and never the whole input: at least one token is left to compute,
 * since its logits are needed. Takes no references and changes nothing (not even the counters):
 * pass the result to qn_block_pool_can_allocate/allocate in the same step. 0 when disabled. */
int32_t qn_block_pool_match_prefix(const qn_block_pool *pool, const int32_t *tokens, int32_t n_tokens,
                                   int32_t *out_blocks);
/* Adds to the prefix-cache counters, in tokens (the scheduler calls it once per admission,
 * re-admissions after preemption included, as vLLM counts them). */
void qn_block_pool_count_prefix_query(qn_block_pool *pool, int32_t n_query_tokens, int32_t n_hit_tokens);
/* Registers the hashes of the full blocks of seq among positions [0, n_computed) that are not yet
 * registered (n_computed: tokens whose KV is written; tokens: the sequence's token ids, at least
 * n_computed of them). A block whose hash is already mapped to another block stays unregistered
 * (the older copy serves future hits). No-op when the cache is disabled. */
void qn_block_pool_commit_full_blocks(qn_block_pool *pool, qn_seq_blocks *seq, const int32_t *tokens,
                                      int32_t n_computed);
/* Forgets every prefix hash (POST /reset_prefix_cache). Sequences keep their blocks. */
void qn_block_pool_reset_prefix_cache(qn_block_pool *pool);

/* --- allocation: predicate / mutation pairs --- */
/* Can an empty sequence take the n_cached matched blocks and hold n_tokens_total tokens in all?
 * Matched blocks with ref 0 sit in the free list, so they do not count as free here. */
bool qn_block_pool_can_allocate(const qn_block_pool *pool, const int32_t *cached_blocks, int32_t n_cached,
                                int32_t n_tokens_total);
/* seq must hold no blocks. Takes a reference on each cached block (in order), then appends fresh
 * blocks up to n_tokens_total (>= n_cached * block_size). QN_ERR_KV_FULL and no change if
 * qn_block_pool_can_allocate is false. */
qn_status qn_block_pool_allocate(qn_block_pool *pool, qn_seq_blocks *seq, const int32_t *cached_blocks,
                                 int32_t n_cached, int32_t n_tokens_total);

/* Does the next write into seq (position seq->n_tokens) land in a shared (ref > 1) last block? */
bool qn_block_pool_needs_cow(const qn_block_pool *pool, const qn_seq_blocks *seq);
/* Can seq grow by n_new_tokens, counting the copy-on-write block if qn_block_pool_needs_cow? */
bool qn_block_pool_can_append(const qn_block_pool *pool, const qn_seq_blocks *seq, int32_t n_new_tokens);
/* Grows seq by n_new_tokens, taking fresh blocks (evicting the least recently used cached ones).
 * QN_ERR_KV_FULL and no change when short of blocks; QN_ERR_INVALID_ARG if a copy-on-write is
 * pending (call qn_block_pool_cow_last first). */
qn_status qn_block_pool_append_slots(qn_block_pool *pool, qn_seq_blocks *seq, int32_t n_new_tokens);
/* Copy-on-write of the shared last block: replaces it in seq with a fresh block and reports the
 * copy (*src -> *dst) the device must perform. QN_ERR_INVALID_ARG if !needs_cow,
 * QN_ERR_KV_FULL (no change) if no block is free. */
qn_status qn_block_pool_cow_last(qn_block_pool *pool, qn_seq_blocks *seq, int32_t *src, int32_t *dst);

/* child (empty) shares every block of parent (ref++ each) and copies its counters. */
qn_status qn_block_pool_fork(qn_block_pool *pool, const qn_seq_blocks *parent, qn_seq_blocks *child);
/* Drops seq's references; blocks reaching ref 0 return to the free list: unhashed ones at the head
 * (reused first), cached ones at the tail, last block first (a chain's tail is evicted before its
 * head). seq becomes empty (its ids array is kept). */
void qn_block_pool_free_seq(qn_block_pool *pool, qn_seq_blocks *seq);

/* --- debugging --- */
/* Checks the pool's own invariants: free list == blocks with ref 0 (no block both free and
 * referenced), counts, hash map <-> block hashes. QN_ERR_INTERNAL with a message on failure. */
qn_status qn_block_pool_check(const qn_block_pool *pool, qn_error *err);

/* --- sizing --- */
/* Bytes of K and V for one token across all layers: 2 * n_layer * n_kv_heads * head_dim * dtype_bytes. */
size_t qn_kv_bytes_per_token(int32_t n_layer, int32_t n_kv_heads, int32_t head_dim, size_t dtype_bytes);

typedef struct qn_kv_capacity {
    int32_t n_blocks;           /* blocks that fit in the bytes given */
    int64_t n_tokens;           /* n_blocks * block_size */
    size_t bytes_per_block;     /* block_size * bytes_per_token */
    size_t bytes_used;          /* n_blocks * bytes_per_block */
    int32_t blocks_per_seq_max; /* ceil(max_model_len / block_size) */
    double max_concurrency;     /* n_blocks / blocks_per_seq_max: sequences at max_model_len at once */
    int32_t max_seqs_at_max_len; /* min(floor(max_concurrency), max_num_seqs) */
} qn_kv_capacity;

/* Sizes the pool from bytes_available (after weights and activations). QN_ERR_KV_FULL with the
 * numbers in err when not even one sequence of max_model_len tokens fits (refuse to start, no OOM);
 * QN_ERR_INVALID_ARG for non-positive sizes. */
qn_status qn_kv_capacity_compute(size_t bytes_available, size_t bytes_per_token, int32_t block_size,
                                 int32_t max_model_len, int32_t max_num_seqs, qn_kv_capacity *out,
                                 qn_error *err);
/* One start-up line: "KV cache: 1234 blocks x 16 = 19744 tokens (2.41 GiB); max concurrency at 4096
 * tokens: 4.82x". Returns what snprintf returns. */
int qn_kv_capacity_describe(const qn_kv_capacity *cap, int32_t block_size, int32_t max_model_len,
                            char *buf, size_t buf_len);

#ifdef __cplusplus
}
#endif
#endif /* QN_KV_BLOCK_POOL_H */
