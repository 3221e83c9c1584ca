/* block_pool.c — KV block ids, ref counts, LRU free list and the hash-chained prefix cache.
 * The free list holds exactly the blocks with ref 0, cached or not; allocation pops its head, so
 * unhashed blocks (pushed at the head) go first and cached blocks leave in LRU order. The prefix
 * map is open addressing with linear probing and backward-shift deletion (no tombstones). */
#include "kv/block_pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qn_block_pool {
    int32_t n_blocks;
    int32_t block_size;
    bool prefix_cache;

    int32_t *ref;  /* [n_blocks] references held by sequences */
    int32_t *prev; /* [n_blocks + 1] free-list links; index n_blocks is the sentinel, */
    int32_t *next; /* [n_blocks + 1] next[sentinel] = head (evicted first), prev[sentinel] = tail */
    int32_t n_free;

    /* prefix cache (arrays NULL when disabled) */
    uint8_t *hashed;     /* [n_blocks] 1 when the block is registered in the map */
    uint64_t *hash;      /* [n_blocks] chain hash, valid when hashed */
    uint64_t *parent;    /* [n_blocks] parent chain hash, valid when hashed (collision check) */
    int32_t *tokens;     /* [n_blocks, block_size] token ids, valid when hashed (collision check) */
    uint64_t *map_key;   /* [map_mask + 1] */
    int32_t *map_val;    /* [map_mask + 1] block id, -1 = empty */
    uint32_t map_mask;
    int32_t n_cached;    /* == number of map entries == number of hashed blocks */

    int64_t prefix_queries;
    int64_t prefix_hits;
    int64_t n_evictions;
};

/* ---------------------------------------------------------------- hashing */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t qn_block_hash(uint64_t parent_hash, const int32_t *tokens, int32_t block_size) {
    uint64_t h = mix64(parent_hash ^ 0x9e3779b97f4a7c15ULL);
    for (int32_t i = 0; i < block_size; i++) h = mix64(h ^ (uint64_t)(uint32_t)tokens[i]) + 0x9e3779b97f4a7c15ULL;
    return mix64(h ^ (uint64_t)block_size);
}

/* ---------------------------------------------------------------- free list */

static void fl_remove(qn_block_pool *p, int32_t b) {
    p->next[p->prev[b]] = p->next[b];
    p->prev[p->next[b]] = p->prev[b];
    p->prev[b] = p->next[b] = -1;
    p->n_free--;
}

static void fl_insert_after(qn_block_pool *p, int32_t at, int32_t b) {
    const int32_t nx = p->next[at];
    p->prev[b] = at;
    p->next[b] = nx;
    p->next[at] = b;
    p->prev[nx] = b;
    p->n_free++;
}

static void fl_push_head(qn_block_pool *p, int32_t b) { fl_insert_after(p, p->n_blocks, b); }
static void fl_push_tail(qn_block_pool *p, int32_t b) { fl_insert_after(p, p->prev[p->n_blocks], b); }

/* ---------------------------------------------------------------- prefix map */

static uint32_t map_home(const qn_block_pool *p, uint64_t key) { return (uint32_t)(key ^ (key >> 32)) & p->map_mask; }

static int32_t map_find(const qn_block_pool *p, uint64_t key) {
    for (uint32_t i = map_home(p, key);; i = (i + 1) & p->map_mask) {
        if (p->map_val[i] < 0) return -1;
        if (p->map_key[i] == key) return p->map_val[i];
    }
}

static void map_insert(qn_block_pool *p, uint64_t key, int32_t b) {
    uint32_t i = map_home(p, key);
    while (p->map_val[i] >= 0) i = (i + 1) & p->map_mask;
    p->map_key[i] = key;
    p->map_val[i] = b;
}

static void map_remove(qn_block_pool *p, uint64_t key) {
    uint32_t i = map_home(p, key);
    while (p->map_val[i] >= 0 && p->map_key[i] != key) i = (i + 1) & p->map_mask;
    if (p->map_val[i] < 0) return;
    /* backward shift: pull later entries of the probe run into the hole unless their home lies
     * cyclically in (hole, j], where they are already reachable */
    for (uint32_t j = (i + 1) & p->map_mask; p->map_val[j] >= 0; j = (j + 1) & p->map_mask) {
        const uint32_t k = map_home(p, p->map_key[j]);
        const bool stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
        if (stays) continue;
        p->map_key[i] = p->map_key[j];
        p->map_val[i] = p->map_val[j];
        i = j;
    }
    p->map_val[i] = -1;
}

static void unhash_block(qn_block_pool *p, int32_t b) {
    map_remove(p, p->hash[b]);
    p->hashed[b] = 0;
    p->n_cached--;
}

/* Pops the head of the free list; a cached block is evicted from the map. Caller checked n_free. */
static int32_t take_free_block(qn_block_pool *p) {
    const int32_t b = p->next[p->n_blocks];
    fl_remove(p, b);
    if (p->prefix_cache && p->hashed[b]) {
        unhash_block(p, b);
        p->n_evictions++;
    }
    p->ref[b] = 1;
    return b;
}

/* ---------------------------------------------------------------- lifecycle */

qn_status qn_block_pool_create(int32_t n_blocks, int32_t block_size, bool enable_prefix_cache, qn_block_pool **out) {
    if (!out || n_blocks < 1 || block_size < 1) return QN_ERR_INVALID_ARG;
    *out = NULL;
    if ((int64_t)n_blocks * block_size > INT32_MAX) return QN_ERR_OVERFLOW;
    qn_block_pool *p = calloc(1, sizeof *p);
    if (!p) return QN_ERR_NOMEM;
    p->n_blocks = n_blocks;
    p->block_size = block_size;
    p->prefix_cache = enable_prefix_cache;
    p->ref = calloc((size_t)n_blocks, sizeof *p->ref);
    p->prev = malloc(((size_t)n_blocks + 1) * sizeof *p->prev);
    p->next = malloc(((size_t)n_blocks + 1) * sizeof *p->next);
    if (!p->ref || !p->prev || !p->next) goto err_free_pool;
    if (enable_prefix_cache) {
        uint32_t cap = 16;
        while (cap < 2u * (uint32_t)n_blocks) cap <<= 1; /* load factor <= 1/2 */
        p->map_mask = cap - 1;
        p->hashed = calloc((size_t)n_blocks, 1);
        p->hash = malloc((size_t)n_blocks * sizeof *p->hash);
        p->parent = malloc((size_t)n_blocks * sizeof *p->parent);
        p->tokens = malloc((size_t)n_blocks * (size_t)block_size * sizeof *p->tokens);
        p->map_key = malloc((size_t)cap * sizeof *p->map_key);
        p->map_val = malloc((size_t)cap * sizeof *p->map_val);
        if (!p->hashed || !p->hash || !p->parent || !p->tokens || !p->map_key || !p->map_val) goto err_free_pool;
        memset(p->map_val, 0xff, (size_t)cap * sizeof *p->map_val);
    }
    const int32_t s = n_blocks;
    p->next[s] = p->prev[s] = s;
    for (int32_t b = 0; b < n_blocks; b++) fl_push_tail(p, b); /* ids handed out in ascending order */
    *out = p;
    return QN_OK;

err_free_pool:
    qn_block_pool_destroy(p);
    return QN_ERR_NOMEM;
}

void qn_block_pool_destroy(qn_block_pool *p) {
    if (!p) return;
    free(p->ref);
    free(p->prev);
    free(p->next);
    free(p->hashed);
    free(p->hash);
    free(p->parent);
    free(p->tokens);
    free(p->map_key);
    free(p->map_val);
    free(p);
}

void qn_seq_blocks_init(qn_seq_blocks *seq) {
    memset(seq, 0, sizeof *seq);
    seq->last_hash = QN_BLOCK_HASH_ROOT;
}

void qn_seq_blocks_free(qn_seq_blocks *seq) {
    if (!seq) return;
    free(seq->ids);
    qn_seq_blocks_init(seq);
}

static qn_status seq_reserve(qn_seq_blocks *seq, int32_t n) {
    if (n <= seq->cap) return QN_OK;
    int32_t cap = seq->cap ? seq->cap : 8;
    while (cap < n) cap = cap > INT32_MAX / 2 ? n : cap * 2;
    int32_t *ids = realloc(seq->ids, (size_t)cap * sizeof *ids);
    if (!ids) return QN_ERR_NOMEM;
    seq->ids = ids;
    seq->cap = cap;
    return QN_OK;
}

/* ---------------------------------------------------------------- queries */

int32_t qn_block_pool_n_blocks(const qn_block_pool *p) { return p->n_blocks; }
int32_t qn_block_pool_block_size(const qn_block_pool *p) { return p->block_size; }
bool qn_block_pool_prefix_cache_enabled(const qn_block_pool *p) { return p->prefix_cache; }
int32_t qn_block_pool_n_free(const qn_block_pool *p) { return p->n_free; }
int32_t qn_block_pool_n_used(const qn_block_pool *p) { return p->n_blocks - p->n_free; }

int32_t qn_block_pool_ref(const qn_block_pool *p, int32_t b) {
    return (b >= 0 && b < p->n_blocks) ? p->ref[b] : -1;
}

bool qn_block_pool_is_cached(const qn_block_pool *p, int32_t b) {
    return p->prefix_cache && b >= 0 && b < p->n_blocks && p->hashed[b];
}

void qn_block_pool_get_stats(const qn_block_pool *p, qn_block_pool_stats *out) {
    out->n_blocks = p->n_blocks;
    out->n_free = p->n_free;
    out->n_used = p->n_blocks - p->n_free;
    out->n_cached = p->n_cached;
    out->prefix_queries = p->prefix_queries;
    out->prefix_hits = p->prefix_hits;
    out->n_evictions = p->n_evictions;
    out->usage = (double)out->n_used / (double)p->n_blocks;
}

int32_t qn_block_pool_blocks_for(const qn_block_pool *p, int32_t n_tokens) {
    return n_tokens <= 0 ? 0 : (int32_t)(((int64_t)n_tokens + p->block_size - 1) / p->block_size);
}

/* ---------------------------------------------------------------- prefix cache */

/* The block registered under (parent, tokens), verified against its stored content; -1 if none. */
static int32_t lookup_block(const qn_block_pool *p, uint64_t h, uint64_t parent, const int32_t *tokens) {
    const int32_t b = map_find(p, h);
    if (b < 0) return -1;
    if (p->parent[b] != parent) return -1;
    if (memcmp(p->tokens + (size_t)b * (size_t)p->block_size, tokens, (size_t)p->block_size * sizeof *tokens)) return -1;
    return b;
}

int32_t qn_block_pool_match_prefix(const qn_block_pool *p, const int32_t *tokens, int32_t n_tokens, int32_t *out_blocks) {
    if (!p->prefix_cache || n_tokens <= 1) return 0;
    const int32_t bs = p->block_size;
    const int32_t max_blocks = (n_tokens - 1) / bs; /* leave >= 1 token to compute */
    uint64_t parent = QN_BLOCK_HASH_ROOT;
    int32_t n = 0;
    for (; n < max_blocks; n++) {
        const int32_t *t = tokens + (size_t)n * (size_t)bs;
        const uint64_t h = qn_block_hash(parent, t, bs);
        const int32_t b = lookup_block(p, h, parent, t);
        if (b < 0) break;
        out_blocks[n] = b;
        parent = h;
    }
    return n * bs;
}

void qn_block_pool_count_prefix_query(qn_block_pool *p, int32_t n_query_tokens, int32_t n_hit_tokens) {
    if (!p->prefix_cache) return;
    p->prefix_queries += n_query_tokens;
    p->prefix_hits += n_hit_tokens;
}

void qn_block_pool_commit_full_blocks(qn_block_pool *p, qn_seq_blocks *seq, const int32_t *tokens, int32_t n_computed) {
    if (!p->prefix_cache) return;
    const int32_t bs = p->block_size;
    if (n_computed > seq->n_tokens) n_computed = seq->n_tokens;
    const int32_t n_full = n_computed / bs;
    for (int32_t i = seq->n_hashed; i < n_full; i++) {
        const int32_t b = seq->ids[i];
        const int32_t *t = tokens + (size_t)i * (size_t)bs;
        const uint64_t h = qn_block_hash(seq->last_hash, t, bs);
        /* A block already registered is shared with a sequence that committed it (fork, hit): same
         * content, same hash. An unregistered block whose hash is taken is a duplicate: keep the
         * older copy as the cached one. */
        if (!p->hashed[b] && map_find(p, h) < 0) {
            p->hashed[b] = 1;
            p->hash[b] = h;
            p->parent[b] = seq->last_hash;
            memcpy(p->tokens + (size_t)b * (size_t)bs, t, (size_t)bs * sizeof *t);
            map_insert(p, h, b);
            p->n_cached++;
        }
        seq->last_hash = h;
        seq->n_hashed = i + 1;
    }
}

void qn_block_pool_reset_prefix_cache(qn_block_pool *p) {
    if (!p->prefix_cache) return;
    memset(p->hashed, 0, (size_t)p->n_blocks);
    memset(p->map_val, 0xff, ((size_t)p->map_mask + 1) * sizeof *p->map_val);
    p->n_cached = 0;
}

/* ---------------------------------------------------------------- allocation */

bool qn_block_pool_can_allocate(const qn_block_pool *p, const int32_t *cached, int32_t n_cached, int32_t n_tokens_total) {
    int32_t need = qn_block_pool_blocks_for(p, n_tokens_total) - n_cached;
    if (need < 0) need = 0;
    int32_t avail = p->n_free;
    for (int32_t i = 0; i < n_cached; i++) avail -= p->ref[cached[i]] == 0;
    return need <= avail;
}

static qn_status append_fresh(qn_block_pool *p, qn_seq_blocks *seq, int32_t n_new_tokens) {
    const int32_t total = seq->n_tokens + n_new_tokens;
    const int32_t want = qn_block_pool_blocks_for(p, total);
    if (want - seq->n_blocks > p->n_free) return QN_ERR_KV_FULL;
    qn_status st = seq_reserve(seq, want);
    if (st != QN_OK) return st;
    while (seq->n_blocks < want) seq->ids[seq->n_blocks++] = take_free_block(p);
    seq->n_tokens = total;
    return QN_OK;
}

qn_status qn_block_pool_allocate(qn_block_pool *p, qn_seq_blocks *seq, const int32_t *cached, int32_t n_cached,
                                 int32_t n_tokens_total) {
    if (seq->n_blocks != 0 || n_cached < 0 || n_tokens_total < (int64_t)n_cached * p->block_size) return QN_ERR_INVALID_ARG;
    if (!qn_block_pool_can_allocate(p, cached, n_cached, n_tokens_total)) return QN_ERR_KV_FULL;
    qn_status st = seq_reserve(seq, qn_block_pool_blocks_for(p, n_tokens_total));
    if (st != QN_OK) return st;
    for (int32_t i = 0; i < n_cached; i++) {
        const int32_t b = cached[i];
        if (p->ref[b]++ == 0) fl_remove(p, b);
        seq->ids[i] = b;
    }
    seq->n_blocks = n_cached;
    seq->n_tokens = n_cached * p->block_size;
    seq->n_hashed = n_cached;
    seq->last_hash = n_cached ? p->hash[cached[n_cached - 1]] : QN_BLOCK_HASH_ROOT;
    return append_fresh(p, seq, n_tokens_total - seq->n_tokens); /* cannot fail: checked above */
}

bool qn_block_pool_needs_cow(const qn_block_pool *p, const qn_seq_blocks *seq) {
    return seq->n_blocks > 0 && seq->n_tokens % p->block_size != 0 && p->ref[seq->ids[seq->n_blocks - 1]] > 1;
}

bool qn_block_pool_can_append(const qn_block_pool *p, const qn_seq_blocks *seq, int32_t n_new_tokens) {
    if (n_new_tokens <= 0) return true;
    const int32_t need = qn_block_pool_blocks_for(p, seq->n_tokens + n_new_tokens) - seq->n_blocks +
                         (qn_block_pool_needs_cow(p, seq) ? 1 : 0);
    return need <= p->n_free;
}

qn_status qn_block_pool_append_slots(qn_block_pool *p, qn_seq_blocks *seq, int32_t n_new_tokens) {
    if (n_new_tokens < 0) return QN_ERR_INVALID_ARG;
    if (n_new_tokens == 0) return QN_OK;
    if (qn_block_pool_needs_cow(p, seq)) return QN_ERR_INVALID_ARG;
    return append_fresh(p, seq, n_new_tokens);
}

qn_status qn_block_pool_cow_last(qn_block_pool *p, qn_seq_blocks *seq, int32_t *src, int32_t *dst) {
    if (!qn_block_pool_needs_cow(p, seq)) return QN_ERR_INVALID_ARG;
    if (p->n_free == 0) return QN_ERR_KV_FULL;
    const int32_t old = seq->ids[seq->n_blocks - 1];
    const int32_t fresh = take_free_block(p);
    p->ref[old]--; /* stays >= 1: it was shared */
    seq->ids[seq->n_blocks - 1] = fresh;
    *src = old;
    *dst = fresh;
    return QN_OK;
}

qn_status qn_block_pool_fork(qn_block_pool *p, const qn_seq_blocks *parent, qn_seq_blocks *child) {
    if (child->n_blocks != 0 || child == parent) return QN_ERR_INVALID_ARG;
    qn_status st = seq_reserve(child, parent->n_blocks);
    if (st != QN_OK) return st;
    for (int32_t i = 0; i < parent->n_blocks; i++) {
        child->ids[i] = parent->ids[i];
        p->ref[parent->ids[i]]++;
    }
    child->n_blocks = parent->n_blocks;
    child->n_tokens = parent->n_tokens;
    child->n_hashed = parent->n_hashed;
    child->last_hash = parent->last_hash;
    return QN_OK;
}

void qn_block_pool_free_seq(qn_block_pool *p, qn_seq_blocks *seq) {
    for (int32_t i = seq->n_blocks - 1; i >= 0; i--) {
        const int32_t b = seq->ids[i];
        if (--p->ref[b] > 0) continue;
        if (p->prefix_cache && p->hashed[b]) fl_push_tail(p, b);
        else fl_push_head(p, b);
    }
    seq->n_blocks = 0;
    seq->n_tokens = 0;
    seq->n_hashed = 0;
    seq->last_hash = QN_BLOCK_HASH_ROOT;
}

/* ---------------------------------------------------------------- debugging */

qn_status qn_block_pool_check(const qn_block_pool *p, qn_error *err) {
    const int32_t s = p->n_blocks;
    int32_t n = 0, prev = s;
    for (int32_t b = p->next[s]; b != s; prev = b, b = p->next[b]) {
        if (b < 0 || b > s || ++n > p->n_blocks)
            return qn_error_set(err, QN_ERR_INTERNAL, "block_pool: free list corrupt at entry %d", n);
        if (p->prev[b] != prev) return qn_error_set(err, QN_ERR_INTERNAL, "block_pool: bad prev link at block %d", b);
        if (p->ref[b] != 0)
            return qn_error_set(err, QN_ERR_INTERNAL, "block_pool: block %d is free with ref %d", b, p->ref[b]);
    }
    if (n != p->n_free) return qn_error_set(err, QN_ERR_INTERNAL, "block_pool: free list has %d, n_free %d", n, p->n_free);
    int32_t n_zero = 0;
    for (int32_t b = 0; b < p->n_blocks; b++) {
        if (p->ref[b] < 0) return qn_error_set(err, QN_ERR_INTERNAL, "block_pool: block %d ref %d", b, p->ref[b]);
        n_zero += p->ref[b] == 0;
    }
    if (n_zero != p->n_free)
        return qn_error_set(err, QN_ERR_INTERNAL, "block_pool: %d blocks with ref 0, n_free %d", n_zero, p->n_free);
    if (!p->prefix_cache) return QN_OK;
    int32_t n_hashed = 0, n_map = 0;
    for (int32_t b = 0; b < p->n_blocks; b++) {
        if (!p->hashed[b]) continue;
        n_hashed++;
        if (map_find(p, p->hash[b]) != b)
            return qn_error_set(err, QN_ERR_INTERNAL, "block_pool: cached block %d not found under its hash", b);
    }
    for (uint32_t i = 0; i <= p->map_mask; i++) {
        const int32_t b = p->map_val[i];
        if (b < 0) continue;
        n_map++;
        if (b >= p->n_blocks || !p->hashed[b] || p->hash[b] != p->map_key[i])
            return qn_error_set(err, QN_ERR_INTERNAL, "block_pool: map slot %u -> block %d is stale", i, b);
    }
    if (n_hashed != p->n_cached || n_map != p->n_cached)
        return qn_error_set(err, QN_ERR_INTERNAL, "block_pool: %d hashed blocks, %d map entries, n_cached %d", n_hashed,
                            n_map, p->n_cached);
    return QN_OK;
}

/* ---------------------------------------------------------------- sizing */

size_t qn_kv_bytes_per_token(int32_t n_layer, int32_t n_kv_heads, int32_t head_dim, size_t dtype_bytes) {
    if (n_layer <= 0 || n_kv_heads <= 0 || head_dim <= 0) return 0;
    return 2 * (size_t)n_layer * (size_t)n_kv_heads * (size_t)head_dim * dtype_bytes;
}

qn_status qn_kv_capacity_compute(size_t bytes_available, size_t bytes_per_token, int32_t block_size,
                                 int32_t max_model_len, int32_t max_num_seqs, qn_kv_capacity *out, qn_error *err) {
    if (!out || bytes_per_token == 0 || block_size <= 0 || max_model_len <= 0 || max_num_seqs <= 0)
        return qn_error_set(err, QN_ERR_INVALID_ARG,
                            "kv capacity: bytes_per_token %zu, block_size %d, max_model_len %d, max_num_seqs %d must be > 0",
                            bytes_per_token, block_size, max_model_len, max_num_seqs);
    memset(out, 0, sizeof *out);
    if (bytes_per_token > SIZE_MAX / (size_t)block_size)
        return qn_error_set(err, QN_ERR_OVERFLOW, "kv capacity: %zu bytes per token x block size %d overflows",
                            bytes_per_token, block_size);
    const size_t per_block = bytes_per_token * (size_t)block_size;
    size_t n_blocks = bytes_available / per_block;
    const size_t max_blocks = (size_t)(INT32_MAX / block_size); /* slot ids are int32 */
    if (n_blocks > max_blocks) n_blocks = max_blocks;
    const int32_t per_seq = (int32_t)(((int64_t)max_model_len + block_size - 1) / block_size);

    out->n_blocks = (int32_t)n_blocks;
    out->n_tokens = (int64_t)n_blocks * block_size;
    out->bytes_per_block = per_block;
    out->bytes_used = n_blocks * per_block;
    out->blocks_per_seq_max = per_seq;
    out->max_concurrency = (double)n_blocks / (double)per_seq;
    const double fit = out->max_concurrency < (double)max_num_seqs ? out->max_concurrency : (double)max_num_seqs;
    out->max_seqs_at_max_len = (int32_t)fit;

    if ((int64_t)n_blocks < per_seq)
        return qn_error_set(err, QN_ERR_KV_FULL,
                            "KV cache too small for --max-model-len %d: %.2f GiB for KV at %zu bytes per token holds "
                            "%lld tokens (%zu blocks of %d), one sequence needs %d blocks (%lld tokens). Lower "
                            "--max-model-len to at most %lld, or give the KV cache more memory "
                            "(--gpu-memory-utilization / --kv-cache-mem)",
                            max_model_len, (double)bytes_available / (1024.0 * 1024.0 * 1024.0), bytes_per_token,
                            (long long)out->n_tokens, n_blocks, block_size, per_seq,
                            (long long)per_seq * block_size, (long long)out->n_tokens);
    return QN_OK;
}

int qn_kv_capacity_describe(const qn_kv_capacity *cap, int32_t block_size, int32_t max_model_len, char *buf,
                            size_t buf_len) {
    return snprintf(buf, buf_len,
                    "KV cache: %d blocks x %d = %lld tokens (%.2f GiB); max concurrency at %d tokens per sequence: "
                    "%.2fx",
                    cap->n_blocks, block_size, (long long)cap->n_tokens,
                    (double)cap->bytes_used / (1024.0 * 1024.0 * 1024.0), max_model_len, cap->max_concurrency);
}
