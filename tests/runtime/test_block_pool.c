/* test_block_pool.c — kv/block_pool: allocation all-or-nothing, slot mapping, hash-chained prefix
 * matching (full blocks only, never the whole input), LRU eviction of ref-0 cached blocks,
 * copy-on-write after fork, KV capacity sizing, and a seeded random walk checked against a
 * reference ref-count model after every operation. No GPU. QN_TEST_LABELS: cpu */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/block_pool.h"

#define CHECK_POOL(p)                                                                                                  \
    do {                                                                                                               \
        qn_error e_;                                                                                                   \
        qn_error_clear(&e_);                                                                                           \
        if (qn_block_pool_check((p), &e_) != QN_OK) fail_msg("%s", e_.msg);                                          \
    } while (0)

static qn_block_pool *make_pool(int32_t n_blocks, int32_t bs, bool prefix) {
    qn_block_pool *p = NULL;
    assert_int_equal(qn_block_pool_create(n_blocks, bs, prefix, &p), QN_OK);
    assert_non_null(p);
    return p;
}

static void fill_tokens(int32_t *t, int32_t n, int32_t base) {
    for (int32_t i = 0; i < n; i++) t[i] = base + i;
}

/* A fresh sequence of n tokens: match the cache, allocate, "compute" everything, commit. */
static int32_t admit_and_commit(qn_block_pool *p, qn_seq_blocks *s, const int32_t *tok, int32_t n) {
    int32_t cached[256];
    const int32_t hit = qn_block_pool_match_prefix(p, tok, n, cached);
    const int32_t bs = qn_block_pool_block_size(p);
    assert_true(qn_block_pool_can_allocate(p, cached, hit / bs, n));
    assert_int_equal(qn_block_pool_allocate(p, s, cached, hit / bs, n), QN_OK);
    qn_block_pool_commit_full_blocks(p, s, tok, n);
    return hit;
}

/* --------------------------------------------------------------------------------------------- */

static void test_create_args(void **state) {
    (void)state;
    qn_block_pool *p = NULL;
    assert_int_equal(qn_block_pool_create(0, 16, true, &p), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_block_pool_create(8, 0, true, &p), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_block_pool_create(INT32_MAX / 8, 16, false, &p), QN_ERR_OVERFLOW);
    qn_block_pool_destroy(NULL);
    p = make_pool(10, 16, true);
    assert_int_equal(qn_block_pool_n_blocks(p), 10);
    assert_int_equal(qn_block_pool_n_free(p), 10);
    assert_int_equal(qn_block_pool_n_used(p), 0);
    assert_int_equal(qn_block_pool_blocks_for(p, 0), 0);
    assert_int_equal(qn_block_pool_blocks_for(p, 1), 1);
    assert_int_equal(qn_block_pool_blocks_for(p, 16), 1);
    assert_int_equal(qn_block_pool_blocks_for(p, 17), 2);
    CHECK_POOL(p);
    qn_block_pool_destroy(p);
}

static void test_append_all_or_nothing(void **state) {
    (void)state;
    qn_block_pool *p = make_pool(4, 16, false);
    qn_seq_blocks a, b;
    qn_seq_blocks_init(&a);
    qn_seq_blocks_init(&b);

    assert_true(qn_block_pool_can_allocate(p, NULL, 0, 40));
    assert_int_equal(qn_block_pool_allocate(p, &a, NULL, 0, 40), QN_OK); /* 3 blocks */
    assert_int_equal(a.n_blocks, 3);
    assert_int_equal(a.n_tokens, 40);
    assert_int_equal(qn_block_pool_n_free(p), 1);
    /* growing inside the last block takes nothing */
    assert_true(qn_block_pool_can_append(p, &a, 8));
    assert_int_equal(qn_block_pool_append_slots(p, &a, 8), QN_OK);
    assert_int_equal(a.n_blocks, 3);
    assert_int_equal(qn_block_pool_n_free(p), 1);
    /* one more token needs block 4 */
    assert_int_equal(qn_block_pool_append_slots(p, &a, 1), QN_OK);
    assert_int_equal(a.n_blocks, 4);
    assert_int_equal(qn_block_pool_n_free(p), 0);
    /* full: refused with no change */
    assert_false(qn_block_pool_can_append(p, &a, 16));
    assert_int_equal(qn_block_pool_append_slots(p, &a, 16), QN_ERR_KV_FULL);
    assert_int_equal(a.n_blocks, 4);
    assert_int_equal(a.n_tokens, 49);
    assert_false(qn_block_pool_can_allocate(p, NULL, 0, 1));
    assert_int_equal(qn_block_pool_allocate(p, &b, NULL, 0, 1), QN_ERR_KV_FULL);
    assert_int_equal(b.n_blocks, 0);
    CHECK_POOL(p);

    /* distinct ids, slot mapping */
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++) assert_int_not_equal(a.ids[i], a.ids[j]);
    for (int32_t pos = 0; pos < a.n_tokens; pos++)
        assert_int_equal(qn_seq_blocks_slot(&a, 16, pos), a.ids[pos / 16] * 16 + pos % 16);

    qn_block_pool_free_seq(p, &a);
    assert_int_equal(a.n_blocks, 0);
    assert_int_equal(a.n_tokens, 0);
    assert_int_equal(qn_block_pool_n_free(p), 4);
    CHECK_POOL(p);
    qn_seq_blocks_free(&a);
    qn_seq_blocks_free(&b);
    qn_block_pool_destroy(p);
}

static void test_prefix_match(void **state) {
    (void)state;
    const int32_t bs = 16;
    qn_block_pool *p = make_pool(32, bs, true);
    int32_t tok[128], other[128], cached[16];
    fill_tokens(tok, 128, 1000);

    qn_seq_blocks a, b, c, d;
    qn_seq_blocks_init(&a);
    qn_seq_blocks_init(&b);
    qn_seq_blocks_init(&c);
    qn_seq_blocks_init(&d);

    /* nothing cached yet */
    assert_int_equal(qn_block_pool_match_prefix(p, tok, 50, cached), 0);
    assert_int_equal(admit_and_commit(p, &a, tok, 50), 0); /* 3 full blocks + 2 tokens */
    assert_int_equal(a.n_hashed, 3);
    assert_int_equal(qn_block_pool_is_cached(p, a.ids[0]), true);
    assert_int_equal(qn_block_pool_is_cached(p, a.ids[2]), true);
    assert_int_equal(qn_block_pool_is_cached(p, a.ids[3]), false); /* partial */
    CHECK_POOL(p);

    /* same 3-block prefix, different suffix: 48 cached tokens, the same block ids */
    memcpy(other, tok, sizeof tok);
    for (int i = 48; i < 128; i++) other[i] = 7;
    assert_int_equal(qn_block_pool_match_prefix(p, other, 60, cached), 48);
    assert_memory_equal(cached, a.ids, 3 * sizeof(int32_t));
    assert_int_equal(admit_and_commit(p, &b, other, 60), 48);
    assert_memory_equal(b.ids, a.ids, 3 * sizeof(int32_t));
    assert_int_not_equal(b.ids[3], a.ids[3]);
    assert_int_equal(qn_block_pool_ref(p, a.ids[0]), 2);
    assert_int_equal(qn_block_pool_ref(p, a.ids[3]), 1);
    CHECK_POOL(p);

    /* diverging inside block 1: only block 0 matches */
    memcpy(other, tok, sizeof tok);
    other[20] = -5;
    assert_int_equal(qn_block_pool_match_prefix(p, other, 60, cached), 16);
    assert_int_equal(cached[0], a.ids[0]);
    /* diverging at token 0: nothing */
    other[0] = -5;
    assert_int_equal(qn_block_pool_match_prefix(p, other, 60, cached), 0);

    /* never the whole input: exactly 3 full blocks match 2, 49 tokens match 3 */
    assert_int_equal(qn_block_pool_match_prefix(p, tok, 48, cached), 32);
    assert_int_equal(qn_block_pool_match_prefix(p, tok, 49, cached), 48);
    assert_int_equal(qn_block_pool_match_prefix(p, tok, 16, cached), 0);
    assert_int_equal(qn_block_pool_match_prefix(p, tok, 1, cached), 0);

    /* chained: block 1's tokens after a different block 0 do not match */
    memcpy(other, tok, sizeof tok);
    for (int i = 0; i < 16; i++) other[i] = 5;
    assert_int_equal(qn_block_pool_match_prefix(p, other, 60, cached), 0);

    /* a second copy of the same content stays unregistered; the first keeps serving */
    qn_block_pool *q = p;
    assert_int_equal(qn_block_pool_allocate(q, &c, NULL, 0, 40), QN_OK);
    qn_block_pool_commit_full_blocks(q, &c, tok, 40);
    assert_int_equal(c.n_hashed, 2);
    assert_false(qn_block_pool_is_cached(q, c.ids[0]));
    assert_int_equal(qn_block_pool_match_prefix(q, tok, 40, cached), 32);
    assert_int_equal(cached[0], a.ids[0]);
    /* its chain still continues: blocks it commits later are registered under the right parent */
    assert_int_equal(qn_block_pool_append_slots(q, &c, 60), QN_OK); /* 100 tokens */
    qn_block_pool_commit_full_blocks(q, &c, tok, 100);
    assert_int_equal(c.n_hashed, 6);
    assert_true(qn_block_pool_is_cached(q, c.ids[3]));
    assert_int_equal(qn_block_pool_match_prefix(q, tok, 128, cached), 96);
    assert_int_equal(cached[2], a.ids[2]);
    assert_int_equal(cached[3], c.ids[3]);
    CHECK_POOL(q);

    /* ref-0 cached blocks stay reusable after the sequences are gone */
    qn_block_pool_free_seq(p, &a);
    qn_block_pool_free_seq(p, &b);
    qn_block_pool_free_seq(p, &c);
    assert_int_equal(qn_block_pool_n_free(p), 32);
    CHECK_POOL(p);
    assert_int_equal(qn_block_pool_match_prefix(p, tok, 128, cached), 96);
    /* the matched blocks are free: they must not count as free when admitting with them */
    assert_int_equal(admit_and_commit(p, &d, tok, 128), 96);
    assert_int_equal(qn_block_pool_n_free(p), 32 - 8);
    CHECK_POOL(p);
    qn_block_pool_free_seq(p, &d);

    qn_block_pool_stats st;
    qn_block_pool_count_prefix_query(p, 100, 48);
    qn_block_pool_get_stats(p, &st);
    assert_int_equal(st.prefix_queries, 100);
    assert_int_equal(st.prefix_hits, 48);
    assert_int_equal(st.n_used, 0);
    assert_true(st.n_cached >= 7);

    qn_block_pool_reset_prefix_cache(p);
    assert_int_equal(qn_block_pool_match_prefix(p, tok, 128, cached), 0);
    CHECK_POOL(p);

    qn_seq_blocks_free(&a);
    qn_seq_blocks_free(&b);
    qn_seq_blocks_free(&c);
    qn_seq_blocks_free(&d);
    qn_block_pool_destroy(p);
}

static void test_prefix_disabled(void **state) {
    (void)state;
    qn_block_pool *p = make_pool(8, 4, false);
    int32_t tok[32], cached[8];
    fill_tokens(tok, 32, 1);
    qn_seq_blocks a;
    qn_seq_blocks_init(&a);
    assert_int_equal(admit_and_commit(p, &a, tok, 20), 0);
    qn_block_pool_free_seq(p, &a);
    assert_int_equal(qn_block_pool_match_prefix(p, tok, 20, cached), 0);
    assert_false(qn_block_pool_is_cached(p, 0));
    CHECK_POOL(p);
    qn_seq_blocks_free(&a);
    qn_block_pool_destroy(p);
}

/* Pool of 8 blocks of 4: a finished 13-token sequence leaves 3 cached blocks. New data takes the
 * never-cached blocks first, then evicts cached ones, the chain's tail before its head. */
static void test_eviction_lru(void **state) {
    (void)state;
    const int32_t bs = 4;
    qn_block_pool *p = make_pool(8, bs, true);
    int32_t t1[32], t2[32], cached[8];
    fill_tokens(t1, 32, 100);
    fill_tokens(t2, 32, 900);
    qn_seq_blocks a, b, c;
    qn_seq_blocks_init(&a);
    qn_seq_blocks_init(&b);
    qn_seq_blocks_init(&c);

    admit_and_commit(p, &a, t1, 13); /* blocks 0..3, 3 cached */
    const int32_t a0 = a.ids[0], a1 = a.ids[1], a2 = a.ids[2], a3 = a.ids[3];
    qn_block_pool_free_seq(p, &a);
    assert_int_equal(qn_block_pool_n_free(p), 8);
    assert_int_equal(qn_block_pool_match_prefix(p, t1, 13, cached), 12);

    /* 5 blocks: the 4 never-used ones and a3 (uncached) go first; no eviction */
    assert_int_equal(qn_block_pool_allocate(p, &b, NULL, 0, 20), QN_OK);
    for (int i = 0; i < 5; i++) assert_true(b.ids[i] != a0 && b.ids[i] != a1 && b.ids[i] != a2);
    assert_int_equal(qn_block_pool_match_prefix(p, t1, 13, cached), 12);
    qn_block_pool_stats st;
    qn_block_pool_get_stats(p, &st);
    assert_int_equal(st.n_evictions, 0);
    (void)a3;

    /* one more block evicts the chain's tail (a2) first */
    assert_int_equal(qn_block_pool_append_slots(p, &b, 4), QN_OK);
    assert_int_equal(b.ids[5], a2);
    assert_int_equal(qn_block_pool_match_prefix(p, t1, 13, cached), 8);
    qn_block_pool_get_stats(p, &st);
    assert_int_equal(st.n_evictions, 1);
    CHECK_POOL(p);

    /* the pool is full of b plus the cached a0, a1: a sequence reusing them needs no new block */
    assert_int_equal(qn_block_pool_n_free(p), 2);
    assert_int_equal(qn_block_pool_match_prefix(p, t1, 9, cached), 8);
    assert_true(qn_block_pool_can_allocate(p, cached, 2, 8));
    /* ...but 9 tokens need a third block, and the two free ones are the cached ones themselves */
    assert_false(qn_block_pool_can_allocate(p, cached, 2, 9));
    assert_int_equal(qn_block_pool_allocate(p, &c, cached, 2, 9), QN_ERR_KV_FULL);
    assert_int_equal(c.n_blocks, 0);
    CHECK_POOL(p);

    /* filling the pool evicts everything */
    assert_int_equal(qn_block_pool_append_slots(p, &b, 8), QN_OK);
    assert_int_equal(qn_block_pool_n_free(p), 0);
    assert_int_equal(qn_block_pool_match_prefix(p, t1, 13, cached), 0);
    qn_block_pool_get_stats(p, &st);
    assert_int_equal(st.n_cached, 0);
    qn_block_pool_free_seq(p, &b);
    assert_int_equal(qn_block_pool_n_free(p), 8);
    CHECK_POOL(p);

    qn_seq_blocks_free(&a);
    qn_seq_blocks_free(&b);
    qn_seq_blocks_free(&c);
    qn_block_pool_destroy(p);
}

/* LRU across sequences: the sequence freed first is evicted first. */
static void test_eviction_order_across_seqs(void **state) {
    (void)state;
    const int32_t bs = 4;
    qn_block_pool *p = make_pool(4, bs, true);
    int32_t t1[16], t2[16], cached[4];
    fill_tokens(t1, 16, 10);
    fill_tokens(t2, 16, 50);
    qn_seq_blocks a, b, c;
    qn_seq_blocks_init(&a);
    qn_seq_blocks_init(&b);
    qn_seq_blocks_init(&c);
    admit_and_commit(p, &a, t1, 8);
    admit_and_commit(p, &b, t2, 8);
    qn_block_pool_free_seq(p, &a); /* older */
    qn_block_pool_free_seq(p, &b);
    assert_int_equal(qn_block_pool_allocate(p, &c, NULL, 0, 8), QN_OK); /* evicts a's two blocks */
    assert_int_equal(qn_block_pool_match_prefix(p, t1, 9, cached), 0);
    assert_int_equal(qn_block_pool_match_prefix(p, t2, 9, cached), 8);
    CHECK_POOL(p);
    qn_block_pool_free_seq(p, &c);
    qn_seq_blocks_free(&a);
    qn_seq_blocks_free(&b);
    qn_seq_blocks_free(&c);
    qn_block_pool_destroy(p);
}

static void test_fork_cow(void **state) {
    (void)state;
    const int32_t bs = 16;
    qn_block_pool *p = make_pool(6, bs, true);
    int32_t tok[64];
    fill_tokens(tok, 64, 3);
    qn_seq_blocks par, ch;
    qn_seq_blocks_init(&par);
    qn_seq_blocks_init(&ch);
    admit_and_commit(p, &par, tok, 20); /* 2 blocks, last partial */
    assert_int_equal(qn_block_pool_fork(p, &par, &ch), QN_OK);
    assert_int_equal(ch.n_blocks, 2);
    assert_int_equal(ch.n_tokens, 20);
    assert_int_equal(ch.n_hashed, 1);
    assert_int_equal(qn_block_pool_ref(p, par.ids[0]), 2);
    assert_int_equal(qn_block_pool_ref(p, par.ids[1]), 2);
    assert_int_equal(qn_block_pool_n_free(p), 4);
    assert_int_equal(qn_block_pool_fork(p, &par, &ch), QN_ERR_INVALID_ARG); /* child not empty */
    CHECK_POOL(p);

    /* writing position 20 lands in the shared partial block: copy on write */
    assert_true(qn_block_pool_needs_cow(p, &par));
    assert_int_equal(qn_block_pool_append_slots(p, &par, 1), QN_ERR_INVALID_ARG);
    int32_t src = -1, dst = -1;
    const int32_t shared = par.ids[1];
    assert_int_equal(qn_block_pool_cow_last(p, &par, &src, &dst), QN_OK);
    assert_int_equal(src, shared);
    assert_int_not_equal(dst, shared);
    assert_int_equal(par.ids[1], dst);
    assert_int_equal(ch.ids[1], shared);
    assert_int_equal(qn_block_pool_ref(p, shared), 1);
    assert_int_equal(qn_block_pool_ref(p, dst), 1);
    assert_int_equal(qn_block_pool_ref(p, par.ids[0]), 2); /* full block stays shared */
    assert_int_equal(qn_block_pool_append_slots(p, &par, 1), QN_OK);
    /* the child is now the only holder: no copy */
    assert_false(qn_block_pool_needs_cow(p, &ch));
    assert_int_equal(qn_block_pool_cow_last(p, &ch, &src, &dst), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_block_pool_append_slots(p, &ch, 1), QN_OK);
    CHECK_POOL(p);
    qn_block_pool_free_seq(p, &par);
    qn_block_pool_free_seq(p, &ch);
    assert_int_equal(qn_block_pool_n_free(p), 6);

    /* a block-aligned fork needs no copy: the next token opens a new block */
    qn_seq_blocks x, y;
    qn_seq_blocks_init(&x);
    qn_seq_blocks_init(&y);
    admit_and_commit(p, &x, tok, 32);
    assert_int_equal(qn_block_pool_fork(p, &x, &y), QN_OK);
    assert_false(qn_block_pool_needs_cow(p, &x));
    assert_true(qn_block_pool_can_append(p, &x, 1));
    assert_int_equal(qn_block_pool_append_slots(p, &x, 1), QN_OK);
    assert_int_equal(qn_block_pool_append_slots(p, &y, 1), QN_OK);
    assert_int_not_equal(x.ids[2], y.ids[2]);
    CHECK_POOL(p);

    /* can_append counts the copy block: with no free block a CoW append is refused */
    qn_block_pool_free_seq(p, &x);
    qn_block_pool_free_seq(p, &y);
    qn_seq_blocks z, w;
    qn_seq_blocks_init(&z);
    qn_seq_blocks_init(&w);
    assert_int_equal(qn_block_pool_allocate(p, &z, NULL, 0, 5 * bs + 5), QN_OK); /* 6 blocks, last partial */
    assert_int_equal(qn_block_pool_fork(p, &z, &w), QN_OK);
    assert_int_equal(qn_block_pool_n_free(p), 0);
    assert_false(qn_block_pool_can_append(p, &z, 1));
    assert_int_equal(qn_block_pool_cow_last(p, &z, &src, &dst), QN_ERR_KV_FULL);
    assert_int_equal(qn_block_pool_ref(p, z.ids[0]), 2);
    CHECK_POOL(p);
    qn_block_pool_free_seq(p, &z);
    qn_block_pool_free_seq(p, &w);
    assert_int_equal(qn_block_pool_n_free(p), 6);
    CHECK_POOL(p);
    qn_seq_blocks_free(&par);
    qn_seq_blocks_free(&ch);
    qn_seq_blocks_free(&x);
    qn_seq_blocks_free(&y);
    qn_seq_blocks_free(&z);
    qn_seq_blocks_free(&w);
    qn_block_pool_destroy(p);
}

static void test_kv_capacity(void **state) {
    (void)state;
    /* Llama-3-8B-like: 32 layers, 8 kv heads, head 128, fp16 -> 128 KiB per token */
    const size_t bpt = qn_kv_bytes_per_token(32, 8, 128, 2);
    assert_int_equal(bpt, 131072);
    qn_kv_capacity cap;
    qn_error err;
    qn_error_clear(&err);
    const size_t gib = (size_t)1 << 30;
    assert_int_equal(qn_kv_capacity_compute(10 * gib, bpt, 16, 8192, 256, &cap, &err), QN_OK);
    assert_int_equal(cap.n_blocks, 5120); /* 10 GiB / (16 * 128 KiB) */
    assert_int_equal(cap.n_tokens, 81920);
    assert_int_equal(cap.blocks_per_seq_max, 512);
    assert_true(cap.max_concurrency > 9.99 && cap.max_concurrency < 10.01);
    assert_int_equal(cap.max_seqs_at_max_len, 10);
    assert_int_equal(cap.bytes_used, 10 * gib);
    char line[256];
    qn_kv_capacity_describe(&cap, 16, 8192, line, sizeof line);
    assert_non_null(strstr(line, "5120 blocks"));
    assert_non_null(strstr(line, "81920 tokens"));
    assert_non_null(strstr(line, "10.00x"));

    /* max_num_seqs caps the concurrency reported as sequences */
    assert_int_equal(qn_kv_capacity_compute(10 * gib, bpt, 16, 1024, 4, &cap, &err), QN_OK);
    assert_int_equal(cap.max_seqs_at_max_len, 4);

    /* does not fit once: refuse with the numbers */
    assert_int_equal(qn_kv_capacity_compute(gib, bpt, 16, 32768, 256, &cap, &err), QN_ERR_KV_FULL);
    assert_int_equal(err.code, QN_ERR_KV_FULL);
    assert_non_null(strstr(err.msg, "32768"));
    assert_non_null(strstr(err.msg, "8192 tokens")); /* 1 GiB / 128 KiB */
    assert_non_null(strstr(err.msg, "at most 8192"));
    /* exactly one sequence fits */
    assert_int_equal(qn_kv_capacity_compute(gib, bpt, 16, 8192, 256, &cap, &err), QN_OK);
    assert_int_equal(cap.max_seqs_at_max_len, 1);
    assert_int_equal(qn_kv_capacity_compute(gib, 0, 16, 8192, 256, &cap, &err), QN_ERR_INVALID_ARG);
}

/* Random walk over many sequences: allocate (with prefix hits), append (with CoW), fork, commit,
 * free; after every operation the pool's ref counts equal the occurrences in all tables. */
#define RW_SEQS 12
static void test_random_walk(void **state) {
    (void)state;
    const int32_t bs = 4, n_blocks = 48;
    int64_t n_hits = 0, n_cows = 0, n_full = 0;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        qn_rng rng;
        qn_rng_seed(&rng, seed);
        qn_block_pool *p = make_pool(n_blocks, bs, seed % 3 != 0);
        qn_seq_blocks seq[RW_SEQS];
        int32_t tok[RW_SEQS][256];
        int32_t refs[64];
        int32_t cached[64];
        for (int i = 0; i < RW_SEQS; i++) qn_seq_blocks_init(&seq[i]);
        for (int step = 0; step < 4000; step++) {
            const int i = (int)(qn_rng_u64(&rng) % RW_SEQS);
            const int op = (int)(qn_rng_u64(&rng) % 10);
            qn_seq_blocks *s = &seq[i];
            if (s->n_blocks == 0) {
                /* new sequence from one of 3 templates so prefixes repeat */
                const int32_t n = 1 + (int32_t)(qn_rng_u64(&rng) % 60);
                const int32_t tmpl = (int32_t)(qn_rng_u64(&rng) % 3);
                const int32_t cut = (int32_t)(qn_rng_u64(&rng) % 64);
                for (int32_t k = 0; k < 256; k++) tok[i][k] = k < cut ? tmpl * 1000 + k : (int32_t)(qn_rng_u64(&rng) % 5);
                const int32_t hit = qn_block_pool_match_prefix(p, tok[i], n, cached);
                assert_true(hit % bs == 0 && hit < n);
                n_hits += hit > 0;
                for (int32_t b = 0; b < hit / bs; b++) assert_true(qn_block_pool_is_cached(p, cached[b]));
                const bool can = qn_block_pool_can_allocate(p, cached, hit / bs, n);
                const int32_t before = qn_block_pool_n_free(p);
                const qn_status st = qn_block_pool_allocate(p, s, cached, hit / bs, n);
                if (can) {
                    assert_int_equal(st, QN_OK);
                    assert_memory_equal(s->ids, cached, (size_t)(hit / bs) * sizeof(int32_t));
                    qn_block_pool_commit_full_blocks(p, s, tok[i], n);
                } else {
                    n_full++;
                    assert_int_equal(st, QN_ERR_KV_FULL);
                    assert_int_equal(s->n_blocks, 0);
                    assert_int_equal(qn_block_pool_n_free(p), before);
                }
            } else if (op < 5) {
                const int32_t n = 1 + (int32_t)(qn_rng_u64(&rng) % 9);
                if (s->n_tokens + n > 256) {
                    qn_block_pool_free_seq(p, s);
                } else {
                    const bool can = qn_block_pool_can_append(p, s, n);
                    const int32_t before = qn_block_pool_n_free(p), nb = s->n_blocks;
                    qn_status st = QN_OK;
                    if (can && qn_block_pool_needs_cow(p, s)) {
                        int32_t src, dst;
                        assert_int_equal(qn_block_pool_cow_last(p, s, &src, &dst), QN_OK);
                        assert_int_not_equal(src, dst);
                        n_cows++;
                    }
                    st = can ? qn_block_pool_append_slots(p, s, n) : QN_ERR_KV_FULL;
                    if (can) {
                        assert_int_equal(st, QN_OK);
                        qn_block_pool_commit_full_blocks(p, s, tok[i], s->n_tokens);
                    } else {
                        assert_int_equal(s->n_blocks, nb);
                        assert_int_equal(qn_block_pool_n_free(p), before);
                    }
                }
            } else if (op < 7) {
                /* fork into an empty slot, copying the tokens */
                for (int j = 0; j < RW_SEQS; j++) {
                    if (seq[j].n_blocks != 0 || j == i) continue;
                    assert_int_equal(qn_block_pool_fork(p, s, &seq[j]), QN_OK);
                    memcpy(tok[j], tok[i], sizeof tok[i]);
                    break;
                }
            } else {
                qn_block_pool_free_seq(p, s);
            }
            /* reference model */
            memset(refs, 0, sizeof refs);
            for (int j = 0; j < RW_SEQS; j++) {
                assert_int_equal(seq[j].n_blocks, qn_block_pool_blocks_for(p, seq[j].n_tokens));
                for (int32_t b = 0; b < seq[j].n_blocks; b++) refs[seq[j].ids[b]]++;
            }
            int32_t n_zero = 0;
            for (int32_t b = 0; b < n_blocks; b++) {
                assert_int_equal(refs[b], qn_block_pool_ref(p, b));
                n_zero += refs[b] == 0;
            }
            assert_int_equal(n_zero, qn_block_pool_n_free(p));
            CHECK_POOL(p);
        }
        for (int i = 0; i < RW_SEQS; i++) {
            qn_block_pool_free_seq(p, &seq[i]);
            qn_seq_blocks_free(&seq[i]);
        }
        assert_int_equal(qn_block_pool_n_free(p), n_blocks);
        CHECK_POOL(p);
        qn_block_pool_destroy(p);
    }
    /* the walk must have exercised every path */
    assert_true(n_hits > 100);
    assert_true(n_cows > 100);
    assert_true(n_full > 100);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_args),
        cmocka_unit_test(test_append_all_or_nothing),
        cmocka_unit_test(test_prefix_match),
        cmocka_unit_test(test_prefix_disabled),
        cmocka_unit_test(test_eviction_lru),
        cmocka_unit_test(test_eviction_order_across_seqs),
        cmocka_unit_test(test_fork_cow),
        cmocka_unit_test(test_kv_capacity),
        cmocka_unit_test(test_random_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
