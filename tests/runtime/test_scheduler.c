/* test_scheduler.c — sched/scheduler with sched/batch and kv/block_pool, driven by scripted scenarios
 * and a seeded stress run. A fake device stands in for the forward pass: the KV "content" of a slot
 * is a fingerprint of the whole prefix ending at that position, written through slot_mapping and
 * read back through the block tables for every position of every scheduled sequence, so prefix
 * hits, copy-on-write, preemption and block reuse are checked end to end; the "sampled" token is a
 * function of the sequence's fingerprint, so recomputation must reproduce the same tokens.
 * QN_TEST_LABELS: cpu */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/block_pool.h"
#include "sched/batch.h"
#include "sched/scheduler.h"

#define VOCAB 1000

/* ---------------------------------------------------------------- test driver */

typedef struct treq {
    qn_request *r;
    uint64_t *fp; /* [fp_cap] fingerprint of tokens[0..p] */
    int32_t n_fp, fp_cap;
    bool reported; /* the scheduler reported it finished (update, failed, abort) */
} treq;

typedef struct drv {
    qn_sched_config cfg;
    qn_block_pool *pool;
    qn_sched *s;
    int32_t bs, n_blocks;
    uint64_t *kv; /* [n_blocks * bs] fake KV content per slot; 0 = never written */
    qn_batch batch;
    int32_t *sampled;           /* [n_entries] */
    qn_finish_reason *finish;   /* [n_entries] */
    int32_t sampled_cap;
    const qn_sched_output *out;
    treq **reqs;
    int32_t n_reqs, reqs_cap;
    uint64_t next_id;
    int64_t n_steps, n_preempted, n_copies, n_hit_tokens;
} drv;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t fp_at(treq *t, int32_t pos) {
    assert_true(pos < t->r->n_tokens);
    if (pos >= t->fp_cap) {
        t->fp_cap = (pos + 1) * 2;
        t->fp = realloc(t->fp, (size_t)t->fp_cap * sizeof *t->fp);
        assert_non_null(t->fp);
    }
    while (t->n_fp <= pos) {
        const uint64_t prev = t->n_fp ? t->fp[t->n_fp - 1] : 0x1234567ULL;
        t->fp[t->n_fp] = mix64(prev ^ (((uint64_t)(uint32_t)t->r->tokens[t->n_fp] + 1) * 0x9e3779b97f4a7c15ULL)) | 1;
        t->n_fp++;
    }
    return t->fp[pos];
}

static treq *treq_of(const qn_request *r) { return (treq *)r->user; }

static void drv_init_cfg(drv *d, qn_sched_config cfg, int32_t n_blocks, bool prefix) {
    memset(d, 0, sizeof *d);
    d->cfg = cfg;
    d->bs = cfg.block_size;
    d->n_blocks = n_blocks;
    assert_int_equal(qn_block_pool_create(n_blocks, cfg.block_size, prefix, &d->pool), QN_OK);
    qn_error err;
    qn_error_clear(&err);
    if (qn_sched_create(&cfg, d->pool, &d->s, &err) != QN_OK) fail_msg("sched_create: %s", err.msg);
    d->kv = calloc((size_t)n_blocks * (size_t)cfg.block_size, sizeof *d->kv);
    assert_non_null(d->kv);
    qn_batch_init(&d->batch);
    d->next_id = 1;
}

static qn_sched_config mk_cfg(int32_t budget, int32_t max_seqs, int32_t max_len, int32_t bs) {
    qn_sched_config c = qn_sched_config_default();
    c.max_num_batched_tokens = budget;
    c.max_num_seqs = max_seqs;
    c.max_model_len = max_len;
    c.block_size = bs;
    return c;
}

static void drv_fini(drv *d) {
    for (int32_t i = 0; i < d->n_reqs; i++) {
        assert_true(d->reqs[i]->reported);
        qn_request_destroy(d->reqs[i]->r);
        free(d->reqs[i]->fp);
        free(d->reqs[i]);
    }
    free(d->reqs);
    qn_sched_destroy(d->s);
    qn_block_pool_destroy(d->pool);
    qn_batch_free(&d->batch);
    free(d->kv);
    free(d->sampled);
    free(d->finish);
}

static treq *drv_new_req(drv *d, const int32_t *prompt, int32_t n, int32_t max_tokens) {
    treq *t = calloc(1, sizeof *t);
    assert_non_null(t);
    qn_request_params p = {.id = d->next_id++, .prompt = prompt, .n_prompt = n, .max_tokens = max_tokens, .user = t};
    assert_int_equal(qn_request_create(&p, &t->r), QN_OK);
    if (d->n_reqs == d->reqs_cap) {
        d->reqs_cap = d->reqs_cap ? d->reqs_cap * 2 : 64;
        d->reqs = realloc(d->reqs, (size_t)d->reqs_cap * sizeof *d->reqs);
        assert_non_null(d->reqs);
    }
    d->reqs[d->n_reqs++] = t;
    return t;
}

static treq *drv_add(drv *d, const int32_t *prompt, int32_t n, int32_t max_tokens) {
    treq *t = drv_new_req(d, prompt, n, max_tokens);
    qn_error err;
    qn_error_clear(&err);
    if (qn_sched_add(d->s, t->r, &err) != QN_OK) fail_msg("sched_add: %s", err.msg);
    return t;
}

static void drv_check(drv *d) {
    qn_error err;
    qn_error_clear(&err);
    if (qn_sched_check(d->s, &err) != QN_OK) fail_msg("after step %lld: %s", (long long)d->n_steps, err.msg);
}

static void mark_reported(treq *t) {
    assert_false(t->reported);
    assert_true(qn_request_is_finished(t->r));
    assert_int_equal(t->r->blocks.n_blocks, 0);
    t->reported = true;
}

/* The forward pass on the fake device: CoW copies, KV writes through slot_mapping, then attention
 * reads of every position through the block tables, then one "sampled" token per logits row. */
static void fake_forward(drv *d, const qn_sched_output *o) {
    qn_batch *b = &d->batch;
    assert_int_equal(qn_batch_build(b, o, d->bs, 0), QN_OK);
    const int32_t bs = d->bs;
    for (int32_t i = 0; i < b->n_copies; i++)
        memcpy(d->kv + (size_t)b->copy_dst[i] * bs, d->kv + (size_t)b->copy_src[i] * bs, (size_t)bs * sizeof *d->kv);
    for (int32_t t = 0; t < b->n_tokens; t++) {
        const qn_sched_entry *e = &o->entries[b->seq_entry[b->seq_idx[t]]];
        treq *tr = treq_of(e->req);
        assert_int_equal(b->token_ids[t], e->req->tokens[b->positions[t]]);
        assert_true(b->slot_mapping[t] >= 0 && b->slot_mapping[t] < d->n_blocks * bs);
        d->kv[b->slot_mapping[t]] = fp_at(tr, b->positions[t]);
    }
    for (int32_t s = 0; s < b->n_seqs; s++) {
        const qn_sched_entry *e = &o->entries[b->seq_entry[s]];
        treq *tr = treq_of(e->req);
        const int32_t *row = b->block_tables + (size_t)s * b->max_blocks_per_seq;
        for (int32_t p = 0; p < b->context_lens[s]; p++) {
            const int32_t slot = row[p / bs] * bs + p % bs;
            if (d->kv[slot] != fp_at(tr, p))
                fail_msg("step %lld: request %llu reads wrong KV at position %d (block %d)", (long long)d->n_steps,
                         (unsigned long long)e->req->id, p, row[p / bs]);
        }
    }
    for (int32_t k = 0; k < b->n_logits; k++) {
        const int32_t ei = b->logits_entry[k];
        const qn_sched_entry *e = &o->entries[ei];
        assert_true(e->needs_sample);
        assert_int_equal(b->positions[b->logits_rows[k]], e->req->n_tokens - 1);
        d->sampled[ei] = (int32_t)(fp_at(treq_of(e->req), e->req->n_tokens - 1) % VOCAB);
    }
}

static const qn_sched_output *drv_step(drv *d) {
    const qn_sched_output *o = NULL;
    assert_int_equal(qn_sched_step(d->s, &o), QN_OK);
    d->out = o;
    d->n_steps++;
    /* the decisions respect the limits */
    assert_true(o->n_tokens <= d->cfg.max_num_batched_tokens);
    assert_true(qn_sched_n_running(d->s) <= d->cfg.max_num_seqs);
    int32_t sum = 0, pre = 0, dec = 0;
    for (int32_t i = 0; i < o->n_entries; i++) {
        const qn_sched_entry *e = &o->entries[i];
        const qn_request *r = e->req;
        assert_int_equal(r->state, QN_REQ_RUNNING);
        assert_int_equal(e->start, r->n_computed);
        assert_true(e->n_tokens >= 1 && e->start + e->n_tokens <= r->n_tokens);
        assert_int_equal(e->needs_sample, e->start + e->n_tokens == r->n_tokens);
        assert_int_equal(r->blocks.n_tokens, e->start + e->n_tokens);
        assert_ptr_equal(e->block_table, r->blocks.ids);
        if (!d->cfg.enable_chunked_prefill) assert_true(e->needs_sample);
        if (d->cfg.long_prefill_threshold > 0) assert_true(e->n_tokens <= d->cfg.long_prefill_threshold);
        for (int32_t j = 0; j < i; j++) assert_ptr_not_equal(o->entries[j].req, r);
        sum += e->n_tokens;
        if (e->is_prefill) pre += e->n_tokens;
        else dec += e->n_tokens;
    }
    assert_int_equal(sum, o->n_tokens);
    assert_int_equal(pre, o->n_prefill_tokens);
    assert_int_equal(dec, o->n_decode_tokens);
    for (int32_t i = 0; i < o->n_preempted; i++) {
        assert_int_equal(o->preempted[i]->state, QN_REQ_PREEMPTED);
        assert_int_equal(o->preempted[i]->blocks.n_blocks, 0);
    }
    for (int32_t i = 0; i < o->n_failed; i++) {
        qn_request *r = o->failed[i];
        assert_int_equal(r->state, QN_REQ_FINISHED_ERROR);
        assert_int_equal(r->error, QN_ERR_KV_FULL);
        /* only a request that cannot fit even alone */
        assert_true(qn_block_pool_blocks_for(d->pool, r->n_tokens) > d->n_blocks);
        mark_reported(treq_of(r));
    }
    d->n_preempted += o->n_preempted;
    d->n_copies += o->n_copies;
    drv_check(d);
    if (o->n_entries > d->sampled_cap) {
        d->sampled_cap = o->n_entries * 2;
        d->sampled = realloc(d->sampled, (size_t)d->sampled_cap * sizeof *d->sampled);
        d->finish = realloc(d->finish, (size_t)d->sampled_cap * sizeof *d->finish);
        assert_non_null(d->sampled);
        assert_non_null(d->finish);
    }
    for (int32_t i = 0; i < o->n_entries; i++) {
        d->sampled[i] = -1;
        d->finish[i] = QN_FINISH_NONE;
    }
    fake_forward(d, o);
    return o;
}

/* fin: caller-side finish decisions by entry index (NULL: none). */
static const qn_sched_update_result *drv_update(drv *d, const qn_finish_reason *fin) {
    const qn_sched_update_result *res = NULL;
    assert_int_equal(qn_sched_update_after_step(d->s, d->sampled, fin ? fin : d->finish, &res), QN_OK);
    for (int32_t i = 0; i < res->n_finished; i++) mark_reported(treq_of(res->finished[i]));
    drv_check(d);
    return res;
}

static void drv_run(drv *d, int32_t max_steps) {
    for (int32_t i = 0; i < max_steps && qn_sched_has_work(d->s); i++) {
        drv_step(d);
        drv_update(d, NULL);
    }
    assert_false(qn_sched_has_work(d->s));
    assert_int_equal(qn_block_pool_n_free(d->pool), d->n_blocks); /* no block leaked */
}

static void seq_tokens(int32_t *t, int32_t n, int32_t base) {
    for (int32_t i = 0; i < n; i++) t[i] = (base + i * 7) % VOCAB;
}

#define ENTRY(o, i) (&(o)->entries[(i)])

/* ---------------------------------------------------------------- scripted scenarios */

static void test_config_validation(void **state) {
    (void)state;
    qn_block_pool *pool = NULL;
    qn_sched *s = NULL;
    qn_error err;
    assert_int_equal(qn_block_pool_create(16, 16, true, &pool), QN_OK);
    qn_sched_config c = mk_cfg(64, 4, 128, 16);
    c.enable_chunked_prefill = false;
    assert_int_equal(qn_sched_create(&c, pool, &s, &err), QN_ERR_INVALID_ARG); /* budget < max_model_len */
    c = mk_cfg(64, 4, 128, 8);
    assert_int_equal(qn_sched_create(&c, pool, &s, &err), QN_ERR_INVALID_ARG); /* block size mismatch */
    c = mk_cfg(0, 4, 128, 16);
    assert_int_equal(qn_sched_create(&c, pool, &s, &err), QN_ERR_INVALID_ARG);
    c = mk_cfg(64, 4, 128, 16);
    assert_int_equal(qn_sched_create(&c, pool, &s, &err), QN_OK);
    /* update before step, step twice */
    assert_int_equal(qn_sched_update_after_step(s, NULL, NULL, NULL), QN_ERR_INVALID_ARG);
    const qn_sched_output *o;
    assert_int_equal(qn_sched_step(s, &o), QN_OK);
    assert_int_equal(o->n_entries, 0);
    assert_int_equal(qn_sched_step(s, &o), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_sched_update_after_step(s, NULL, NULL, NULL), QN_OK);
    /* too long for max_model_len; larger than the whole pool */
    int32_t tok[300];
    seq_tokens(tok, 300, 1);
    qn_request *r = NULL;
    qn_request_params p = {.id = 1, .prompt = tok, .n_prompt = 129};
    assert_int_equal(qn_request_create(&p, &r), QN_OK);
    assert_int_equal(qn_sched_add(s, r, &err), QN_ERR_CONTEXT);
    qn_request_destroy(r);
    qn_sched_destroy(s);
    qn_block_pool_destroy(pool);

    assert_int_equal(qn_block_pool_create(4, 16, true, &pool), QN_OK);
    c = mk_cfg(64, 4, 128, 16);
    assert_int_equal(qn_sched_create(&c, pool, &s, &err), QN_OK);
    p.n_prompt = 65;
    assert_int_equal(qn_request_create(&p, &r), QN_OK);
    qn_error_clear(&err);
    assert_int_equal(qn_sched_add(s, r, &err), QN_ERR_KV_FULL);
    assert_non_null(strstr(err.msg, "64 tokens"));
    assert_int_equal(qn_sched_n_waiting(s), 0);
    qn_request_destroy(r);
    assert_int_equal(qn_sched_abort(s, 1, NULL), QN_ERR_NOT_FOUND);
    qn_sched_destroy(s);
    qn_block_pool_destroy(pool);
}

static void test_admission_max_num_seqs(void **state) {
    (void)state;
    drv d;
    drv_init_cfg(&d, mk_cfg(100, 2, 64, 4), 64, true);
    int32_t t[3][10];
    for (int i = 0; i < 3; i++) seq_tokens(t[i], 10, 100 * (i + 1));
    treq *a = drv_add(&d, t[0], 10, 5), *b = drv_add(&d, t[1], 10, 5), *c = drv_add(&d, t[2], 10, 5);

    const qn_sched_output *o = drv_step(&d);
    assert_int_equal(o->n_entries, 2);
    assert_ptr_equal(ENTRY(o, 0)->req, a->r);
    assert_ptr_equal(ENTRY(o, 1)->req, b->r);
    assert_int_equal(ENTRY(o, 0)->n_tokens, 10);
    assert_true(ENTRY(o, 0)->needs_sample && ENTRY(o, 0)->is_prefill);
    assert_int_equal(o->n_tokens, 20);
    assert_int_equal(qn_sched_n_waiting(d.s), 1);
    assert_int_equal(c->r->state, QN_REQ_WAITING);
    drv_update(&d, NULL);
    assert_int_equal(a->r->n_tokens, 11);
    assert_int_equal(a->r->n_computed, 10);

    o = drv_step(&d); /* two decodes; C still waits for a seat */
    assert_int_equal(o->n_entries, 2);
    assert_int_equal(ENTRY(o, 0)->start, 10);
    assert_int_equal(ENTRY(o, 0)->n_tokens, 1);
    assert_false(ENTRY(o, 0)->is_prefill);
    assert_int_equal(o->n_decode_tokens, 2);
    qn_finish_reason fin[2] = {QN_FINISH_STOP, QN_FINISH_NONE};
    const qn_sched_update_result *res = drv_update(&d, fin);
    assert_int_equal(res->n_finished, 1);
    assert_ptr_equal(res->finished[0], a->r);
    assert_int_equal(a->r->state, QN_REQ_FINISHED_STOPPED);
    assert_int_equal(a->r->n_tokens, 12);

    o = drv_step(&d); /* A's seat goes to C */
    assert_int_equal(o->n_entries, 2);
    assert_ptr_equal(ENTRY(o, 0)->req, b->r);
    assert_ptr_equal(ENTRY(o, 1)->req, c->r);
    assert_int_equal(ENTRY(o, 1)->n_tokens, 10);
    drv_update(&d, NULL);
    drv_run(&d, 100);
    assert_int_equal(b->r->state, QN_REQ_FINISHED_LENGTH);
    assert_int_equal(qn_request_n_generated(b->r), 5);
    assert_int_equal(qn_request_n_generated(c->r), 5);
    drv_fini(&d);
}

static void test_admission_budget(void **state) {
    (void)state;
    int32_t t[3][10];
    for (int i = 0; i < 3; i++) seq_tokens(t[i], 10, 50 * (i + 1));
    {
        /* chunked: the second prompt takes what is left of the budget */
        drv d;
        drv_init_cfg(&d, mk_cfg(16, 8, 64, 4), 64, true);
        treq *a = drv_add(&d, t[0], 10, 3), *b = drv_add(&d, t[1], 10, 3);
        const qn_sched_output *o = drv_step(&d);
        assert_int_equal(o->n_entries, 2);
        assert_int_equal(ENTRY(o, 0)->n_tokens, 10);
        assert_int_equal(ENTRY(o, 1)->n_tokens, 6);
        assert_false(ENTRY(o, 1)->needs_sample);
        assert_int_equal(o->n_tokens, 16);
        drv_update(&d, NULL);
        assert_int_equal(b->r->n_computed, 6);
        assert_int_equal(b->r->n_tokens, 10);
        o = drv_step(&d);
        assert_ptr_equal(ENTRY(o, 0)->req, a->r);
        assert_int_equal(ENTRY(o, 0)->n_tokens, 1);
        assert_int_equal(ENTRY(o, 1)->start, 6);
        assert_int_equal(ENTRY(o, 1)->n_tokens, 4);
        assert_true(ENTRY(o, 1)->needs_sample);
        drv_update(&d, NULL);
        drv_run(&d, 100);
        drv_fini(&d);
    }
    {
        /* not chunked: a prompt waits until it fits the budget whole */
        drv d;
        qn_sched_config c = mk_cfg(16, 8, 16, 4);
        c.enable_chunked_prefill = false;
        drv_init_cfg(&d, c, 64, true);
        treq *a = drv_add(&d, t[0], 10, 3), *b = drv_add(&d, t[1], 10, 3), *cc = drv_add(&d, t[2], 10, 3);
        const qn_sched_output *o = drv_step(&d);
        assert_int_equal(o->n_entries, 1);
        assert_ptr_equal(ENTRY(o, 0)->req, a->r);
        drv_update(&d, NULL);
        o = drv_step(&d);
        assert_int_equal(o->n_entries, 2);
        assert_int_equal(ENTRY(o, 0)->n_tokens, 1);
        assert_ptr_equal(ENTRY(o, 1)->req, b->r);
        assert_int_equal(ENTRY(o, 1)->n_tokens, 10);
        assert_int_equal(cc->r->state, QN_REQ_WAITING); /* 5 left, needs 10 */
        drv_update(&d, NULL);
        o = drv_step(&d);
        assert_int_equal(o->n_entries, 3);
        assert_int_equal(o->n_tokens, 12);
        drv_update(&d, NULL);
        drv_run(&d, 100);
        drv_fini(&d);
    }
}

/* A 1000-token prompt with budget 256 arrives while two requests decode: each step carries both
 * decodes plus a 254-token chunk until the prompt is done, then three decodes. */
static void test_chunked_prefill_interleaved(void **state) {
    (void)state;
    drv d;
    drv_init_cfg(&d, mk_cfg(256, 8, 2048, 16), 200, true);
    int32_t tb[8], tc[8], ta[1000];
    seq_tokens(tb, 8, 1);
    seq_tokens(tc, 8, 2);
    seq_tokens(ta, 1000, 3);
    treq *b = drv_add(&d, tb, 8, 100), *c = drv_add(&d, tc, 8, 100);
    const qn_sched_output *o = drv_step(&d);
    assert_int_equal(o->n_tokens, 16);
    drv_update(&d, NULL);
    treq *a = drv_add(&d, ta, 1000, 3);

    const int32_t starts[4] = {0, 254, 508, 762}, sizes[4] = {254, 254, 254, 238};
    for (int k = 0; k < 4; k++) {
        o = drv_step(&d);
        assert_int_equal(o->n_entries, 3);
        assert_ptr_equal(ENTRY(o, 0)->req, b->r);
        assert_ptr_equal(ENTRY(o, 1)->req, c->r);
        assert_ptr_equal(ENTRY(o, 2)->req, a->r);
        assert_int_equal(ENTRY(o, 0)->n_tokens, 1);
        assert_int_equal(ENTRY(o, 1)->n_tokens, 1);
        assert_true(ENTRY(o, 0)->needs_sample && ENTRY(o, 1)->needs_sample);
        assert_int_equal(ENTRY(o, 2)->start, starts[k]);
        assert_int_equal(ENTRY(o, 2)->n_tokens, sizes[k]);
        assert_true(ENTRY(o, 2)->is_prefill);
        assert_int_equal(ENTRY(o, 2)->needs_sample, k == 3);
        assert_int_equal(o->n_decode_tokens, 2);
        assert_int_equal(o->n_prefill_tokens, sizes[k]);
        assert_int_equal(o->n_tokens, k < 3 ? 256 : 240);
        assert_int_equal(ENTRY(o, 2)->n_blocks, (starts[k] + sizes[k] + 15) / 16);
        /* batch: 3 sequences, logits for the decodes (+ A when its prefill completes) */
        assert_int_equal(d.batch.n_seqs, 3);
        assert_int_equal(d.batch.n_logits, k == 3 ? 3 : 2);
        assert_int_equal(d.batch.cu_seqlens_q[3], o->n_tokens);
        drv_update(&d, NULL);
        assert_int_equal(a->r->n_computed, starts[k] + sizes[k]);
    }
    assert_int_equal(a->r->n_tokens, 1001);
    o = drv_step(&d);
    assert_int_equal(o->n_entries, 3);
    assert_int_equal(ENTRY(o, 2)->start, 1000);
    assert_int_equal(ENTRY(o, 2)->n_tokens, 1);
    assert_false(ENTRY(o, 2)->is_prefill);
    assert_int_equal(o->n_tokens, 3);
    drv_update(&d, NULL);
    drv_run(&d, 1000);
    assert_int_equal(qn_request_n_generated(a->r), 3);
    drv_fini(&d);
}

static void test_long_prefill_threshold(void **state) {
    (void)state;
    drv d;
    qn_sched_config c = mk_cfg(256, 8, 1024, 16);
    c.long_prefill_threshold = 100;
    drv_init_cfg(&d, c, 200, true);
    int32_t ta[300], tb[300];
    seq_tokens(ta, 300, 5);
    seq_tokens(tb, 300, 6);
    drv_add(&d, ta, 300, 2);
    drv_add(&d, tb, 300, 2);
    const qn_sched_output *o = drv_step(&d);
    assert_int_equal(o->n_entries, 2);
    assert_int_equal(ENTRY(o, 0)->n_tokens, 100);
    assert_int_equal(ENTRY(o, 1)->n_tokens, 100);
    drv_update(&d, NULL);
    drv_run(&d, 100);
    drv_fini(&d);
}

/* Runs one request to completion in a fresh driver and returns its tokens (malloc'd). */
static int32_t *solo_run(const int32_t *prompt, int32_t n, int32_t max_tokens, bool prefix, int32_t *n_out) {
    drv d;
    drv_init_cfg(&d, mk_cfg(512, 8, 256, 16), 64, prefix);
    treq *t = drv_add(&d, prompt, n, max_tokens);
    drv_run(&d, 1000);
    *n_out = t->r->n_tokens;
    int32_t *copy = malloc((size_t)t->r->n_tokens * sizeof *copy);
    memcpy(copy, t->r->tokens, (size_t)t->r->n_tokens * sizeof *copy);
    drv_fini(&d);
    return copy;
}

static void test_prefix_cache_hits(void **state) {
    (void)state;
    drv d;
    drv_init_cfg(&d, mk_cfg(512, 8, 256, 16), 64, true);
    int32_t base[64], p2[58], p3[40];
    seq_tokens(base, 64, 11);
    treq *r1 = drv_add(&d, base, 50, 1); /* 3 full blocks + 2 */
    const qn_sched_output *o = drv_step(&d);
    int32_t ids1[4];
    memcpy(ids1, ENTRY(o, 0)->block_table, sizeof ids1);
    drv_update(&d, NULL);
    assert_int_equal(r1->r->state, QN_REQ_FINISHED_LENGTH);
    assert_int_equal(r1->r->n_cached_prompt, 0);
    assert_int_equal(qn_block_pool_n_free(d.pool), 64);

    /* same 3-block prefix, different suffix: 48 cached tokens in the same blocks */
    memcpy(p2, base, 48 * sizeof(int32_t));
    for (int i = 48; i < 58; i++) p2[i] = 999 - i;
    treq *r2 = drv_add(&d, p2, 58, 8);
    o = drv_step(&d);
    assert_int_equal(o->n_entries, 1);
    assert_int_equal(ENTRY(o, 0)->start, 48);
    assert_int_equal(ENTRY(o, 0)->n_tokens, 10);
    assert_memory_equal(ENTRY(o, 0)->block_table, ids1, 3 * sizeof(int32_t));
    assert_int_equal(r2->r->n_cached_prompt, 48);
    drv_update(&d, NULL);

    /* diverging inside block 1: one block cached; while r2 runs, its blocks are shared */
    memcpy(p3, base, 20 * sizeof(int32_t));
    for (int i = 20; i < 40; i++) p3[i] = 3;
    treq *r3 = drv_add(&d, p3, 40, 2);
    o = drv_step(&d);
    assert_int_equal(o->n_entries, 2);
    assert_ptr_equal(ENTRY(o, 1)->req, r3->r);
    assert_int_equal(ENTRY(o, 1)->start, 16);
    assert_int_equal(ENTRY(o, 1)->block_table[0], ids1[0]);
    assert_int_equal(qn_block_pool_ref(d.pool, ids1[0]), 2);
    drv_update(&d, NULL);

    /* exactly 3 full blocks: the last one is recomputed (its logits are needed) */
    treq *r4 = drv_add(&d, base, 48, 1);
    o = drv_step(&d);
    assert_ptr_equal(ENTRY(o, o->n_entries - 1)->req, r4->r);
    assert_int_equal(ENTRY(o, o->n_entries - 1)->start, 32);
    drv_update(&d, NULL);
    drv_run(&d, 100);

    qn_block_pool_stats st;
    qn_block_pool_get_stats(d.pool, &st);
    assert_int_equal(st.prefix_queries, 50 + 58 + 40 + 48);
    assert_int_equal(st.prefix_hits, 48 + 16 + 32);

    /* cache hit vs miss: the same tokens come out (the fake device checked every KV read too) */
    int32_t n_miss = 0, n_nocache = 0;
    int32_t *miss = solo_run(p2, 58, 8, true, &n_miss);
    int32_t *nocache = solo_run(p2, 58, 8, false, &n_nocache);
    assert_int_equal(n_miss, r2->r->n_tokens);
    assert_int_equal(n_nocache, r2->r->n_tokens);
    assert_memory_equal(miss, r2->r->tokens, (size_t)n_miss * sizeof(int32_t));
    assert_memory_equal(nocache, r2->r->tokens, (size_t)n_miss * sizeof(int32_t));
    free(miss);
    free(nocache);
    drv_fini(&d);
}

/* Pool of 8 blocks of 4: ref-0 cached blocks are evicted (chain tail first) when new data needs
 * room, and a later request hits only what survived. */
static void test_prefix_eviction(void **state) {
    (void)state;
    drv d;
    drv_init_cfg(&d, mk_cfg(64, 4, 32, 4), 8, true);
    int32_t t1[13], t2[24];
    seq_tokens(t1, 13, 21);
    seq_tokens(t2, 24, 500);
    drv_add(&d, t1, 13, 1);
    drv_run(&d, 10);
    treq *r2 = drv_add(&d, t2, 24, 1); /* 6 blocks: 5 never-cached + evicts one cached */
    drv_run(&d, 10);
    assert_int_equal(r2->r->n_cached_prompt, 0);
    qn_block_pool_stats st;
    qn_block_pool_get_stats(d.pool, &st);
    assert_int_equal(st.n_evictions, 1);
    treq *r3 = drv_add(&d, t1, 13, 1);
    drv_run(&d, 10);
    assert_int_equal(r3->r->n_cached_prompt, 8);
    drv_fini(&d);
}

static void test_fork_cow(void **state) {
    (void)state;
    drv d;
    drv_init_cfg(&d, mk_cfg(128, 4, 64, 16), 16, true);
    int32_t tok[20];
    seq_tokens(tok, 20, 77);
    treq *par = drv_add(&d, tok, 20, 6);
    drv_step(&d);
    drv_update(&d, NULL);
    assert_int_equal(par->r->n_tokens, 21);

    /* n = 2: a second sample of the same logits */
    treq *ch = drv_new_req(&d, tok, 20, 6);
    assert_int_equal(qn_request_append_token(ch->r, (par->r->tokens[20] + 1) % VOCAB), QN_OK);
    assert_int_equal(qn_sched_fork(d.s, par->r, ch->r), QN_OK);
    assert_int_equal(ch->r->state, QN_REQ_RUNNING);
    assert_int_equal(ch->r->n_computed, 20);
    const int32_t shared0 = par->r->blocks.ids[0], shared1 = par->r->blocks.ids[1];
    assert_int_equal(qn_block_pool_ref(d.pool, shared0), 2);
    assert_int_equal(qn_block_pool_ref(d.pool, shared1), 2);
    assert_int_equal(qn_block_pool_n_used(d.pool), 2);
    drv_check(&d);

    const qn_sched_output *o = drv_step(&d);
    assert_int_equal(o->n_entries, 2);
    assert_int_equal(o->n_copies, 1); /* the parent writes first and copies; the child then owns the original */
    assert_int_equal(o->copies[0].src, shared1);
    assert_int_equal(ENTRY(o, 0)->block_table[1], o->copies[0].dst);
    assert_int_equal(ENTRY(o, 1)->block_table[1], shared1);
    assert_int_equal(ENTRY(o, 0)->block_table[0], shared0);
    assert_int_equal(ENTRY(o, 1)->block_table[0], shared0);
    assert_int_equal(d.batch.n_copies, 1);
    drv_update(&d, NULL);
    drv_run(&d, 100);
    assert_int_not_equal(par->r->tokens[20], ch->r->tokens[20]);
    assert_int_equal(qn_request_n_generated(ch->r), 6);
    assert_true(d.n_copies == 1);
    drv_fini(&d);

    /* forking into a full running list is refused */
    drv_init_cfg(&d, mk_cfg(128, 1, 64, 16), 16, true);
    par = drv_add(&d, tok, 20, 2);
    drv_step(&d);
    drv_update(&d, NULL);
    ch = drv_new_req(&d, tok, 20, 2);
    assert_int_equal(qn_request_append_token(ch->r, 5), QN_OK);
    assert_int_equal(qn_sched_fork(d.s, par->r, ch->r), QN_ERR_BUSY);
    ch->r->state = QN_REQ_FINISHED_ABORTED; /* never entered the scheduler */
    ch->reported = true;
    drv_run(&d, 10);
    drv_fini(&d);
}

/* Two requests outgrow a 10-block pool: the last admitted is preempted, recomputed later, and both
 * end with the same tokens as with a pool large enough for both. */
static void run_preempt_case(bool prefix, int32_t n_blocks, int32_t n_req, const int32_t *lens, int32_t max_tokens,
                             int32_t **tokens_out, int64_t *preemptions) {
    drv d;
    drv_init_cfg(&d, mk_cfg(64, 8, 64, 4), n_blocks, prefix);
    int32_t tok[64];
    treq *t[8];
    for (int32_t i = 0; i < n_req; i++) {
        seq_tokens(tok, lens[i], 1000 + 37 * i);
        t[i] = drv_add(&d, tok, lens[i], max_tokens);
    }
    bool checked_first = false;
    for (int step = 0; step < 2000 && qn_sched_has_work(d.s); step++) {
        const int32_t n_run = qn_sched_n_running(d.s);
        qn_request *last = n_run ? qn_sched_running_at(d.s, n_run - 1) : NULL;
        const qn_sched_output *o = drv_step(&d);
        if (o->n_preempted > 0 && !checked_first) {
            /* the first victim is the last-admitted running request; it waits at the front */
            assert_ptr_equal(o->preempted[0], last);
            assert_ptr_equal(qn_sched_waiting_at(d.s, 0), o->preempted[o->n_preempted - 1]);
            assert_int_equal(o->preempted[0]->n_computed, 0);
            assert_int_equal(o->preempted[0]->n_preemptions, 1);
            checked_first = true;
        }
        drv_update(&d, NULL);
    }
    assert_false(qn_sched_has_work(d.s));
    assert_int_equal(qn_block_pool_n_free(d.pool), n_blocks);
    for (int32_t i = 0; i < n_req; i++) {
        assert_int_equal(t[i]->r->state, QN_REQ_FINISHED_LENGTH); /* never aborted for lack of KV */
        assert_int_equal(qn_request_n_generated(t[i]->r), max_tokens);
        tokens_out[i] = malloc((size_t)t[i]->r->n_tokens * sizeof(int32_t));
        memcpy(tokens_out[i], t[i]->r->tokens, (size_t)t[i]->r->n_tokens * sizeof(int32_t));
    }
    qn_sched_stats ss;
    qn_sched_get_stats(d.s, &ss);
    assert_int_equal(ss.n_preemptions, d.n_preempted);
    *preemptions = ss.n_preemptions;
    drv_fini(&d);
}

static void test_preemption_resume(void **state) {
    (void)state;
    const int32_t lens2[2] = {10, 10};
    const int32_t lens4[4] = {7, 13, 5, 9};
    for (int prefix = 0; prefix < 2; prefix++) {
        int32_t *small[4], *big[4];
        int64_t n_small = 0, n_big = 0;
        run_preempt_case(prefix, 10, 2, lens2, 20, small, &n_small);
        run_preempt_case(prefix, 64, 2, lens2, 20, big, &n_big);
        assert_true(n_small > 0);
        assert_int_equal(n_big, 0);
        for (int i = 0; i < 2; i++) {
            assert_memory_equal(small[i], big[i], 30 * sizeof(int32_t));
            free(small[i]);
            free(big[i]);
        }
        run_preempt_case(prefix, 12, 4, lens4, 25, small, &n_small);
        run_preempt_case(prefix, 64, 4, lens4, 25, big, &n_big);
        assert_true(n_small > 0);
        for (int i = 0; i < 4; i++) {
            assert_memory_equal(small[i], big[i], (size_t)(lens4[i] + 25) * sizeof(int32_t));
            free(small[i]);
            free(big[i]);
        }
    }
}

static void test_abort(void **state) {
    (void)state;
    drv d;
    drv_init_cfg(&d, mk_cfg(256, 2, 2048, 16), 128, true);
    int32_t ta[16], tb[16], tc[1000], td[16];
    seq_tokens(ta, 16, 1);
    seq_tokens(tb, 16, 2);
    seq_tokens(tc, 1000, 3);
    seq_tokens(td, 16, 4);
    treq *a = drv_add(&d, ta, 10, 100);
    drv_step(&d);
    drv_update(&d, NULL);
    treq *c = drv_add(&d, tc, 1000, 5);
    treq *b = drv_add(&d, tb, 10, 100);

    /* while waiting */
    qn_request *got = NULL;
    assert_int_equal(b->r->state, QN_REQ_WAITING);
    assert_int_equal(qn_sched_abort(d.s, b->r->id, &got), QN_OK);
    assert_ptr_equal(got, b->r);
    assert_int_equal(b->r->state, QN_REQ_FINISHED_ABORTED);
    mark_reported(b);
    assert_int_equal(qn_sched_n_waiting(d.s), 1);
    assert_ptr_equal(qn_sched_waiting_at(d.s, 0), c->r);
    assert_int_equal(qn_sched_abort(d.s, b->r->id, NULL), QN_ERR_NOT_FOUND);

    /* mid-prefill */
    drv_step(&d);
    drv_update(&d, NULL);
    assert_int_equal(c->r->n_computed, 255);
    assert_true(c->r->blocks.n_blocks == 16);
    const int32_t used_a = a->r->blocks.n_blocks;
    assert_int_equal(qn_sched_abort(d.s, c->r->id, NULL), QN_OK);
    mark_reported(c);
    assert_int_equal(qn_block_pool_n_used(d.pool), used_a);
    drv_check(&d);

    /* decoding */
    drv_step(&d);
    drv_update(&d, NULL);
    assert_int_equal(qn_sched_abort(d.s, a->r->id, NULL), QN_OK);
    mark_reported(a);
    assert_int_equal(qn_block_pool_n_free(d.pool), 128);

    /* between a step and its update: the entry is cancelled, its KV freed at once */
    treq *dd = drv_add(&d, td, 16, 4);
    treq *e = drv_add(&d, ta, 16, 4);
    const qn_sched_output *o = drv_step(&d);
    assert_int_equal(o->n_entries, 2);
    assert_int_equal(qn_sched_abort(d.s, dd->r->id, NULL), QN_OK);
    mark_reported(dd);
    assert_true(ENTRY(o, 0)->cancelled);
    assert_false(ENTRY(o, 1)->cancelled);
    drv_check(&d);
    qn_batch bb;
    qn_batch_init(&bb);
    assert_int_equal(qn_batch_build(&bb, o, 16, 0), QN_OK);
    assert_int_equal(bb.n_seqs, 1);
    assert_int_equal(bb.seq_entry[0], 1);
    qn_batch_free(&bb);
    drv_update(&d, NULL);
    assert_int_equal(dd->r->n_tokens, 16); /* nothing appended */
    assert_int_equal(e->r->n_tokens, 17);
    drv_run(&d, 100);
    drv_fini(&d);
}

/* A request that grows past the whole pool is finished with an error; nothing else is. */
static void test_cannot_fit_alone(void **state) {
    (void)state;
    drv d;
    drv_init_cfg(&d, mk_cfg(64, 4, 64, 4), 4, true);
    int32_t tok[16];
    seq_tokens(tok, 16, 9);
    treq *t = drv_add(&d, tok, 10, 30);
    int32_t n_failed = 0;
    for (int i = 0; i < 100 && qn_sched_has_work(d.s); i++) {
        const qn_sched_output *o = drv_step(&d);
        n_failed += o->n_failed;
        drv_update(&d, NULL);
    }
    assert_int_equal(n_failed, 1);
    assert_int_equal(t->r->state, QN_REQ_FINISHED_ERROR);
    assert_int_equal(t->r->error, QN_ERR_KV_FULL);
    assert_int_equal(t->r->n_tokens, 17); /* 16 tokens fit; computing the 17th would need a 5th block */
    assert_int_equal(qn_block_pool_n_free(d.pool), 4);
    drv_fini(&d);
}

static void test_max_model_len(void **state) {
    (void)state;
    drv d;
    drv_init_cfg(&d, mk_cfg(64, 4, 12, 4), 16, true);
    int32_t tok[12];
    seq_tokens(tok, 12, 4);
    treq *a = drv_add(&d, tok, 8, 0);
    treq *b = drv_add(&d, tok, 12, 0); /* a full-length prompt still yields one token */
    drv_run(&d, 100);
    assert_int_equal(a->r->state, QN_REQ_FINISHED_LENGTH);
    assert_int_equal(a->r->n_tokens, 12);
    assert_int_equal(b->r->state, QN_REQ_FINISHED_LENGTH);
    assert_int_equal(b->r->n_tokens, 13);
    drv_fini(&d);
}

/* ---------------------------------------------------------------- randomized stress */

typedef struct stress_cfg {
    int32_t budget, max_seqs, max_len, bs, n_blocks, threshold;
    bool chunked, prefix;
} stress_cfg;

static void stress_one(const stress_cfg *sc, uint64_t seed) {
    qn_rng rng;
    qn_rng_seed(&rng, seed);
    qn_sched_config c = mk_cfg(sc->budget, sc->max_seqs, sc->max_len, sc->bs);
    c.enable_chunked_prefill = sc->chunked;
    c.long_prefill_threshold = sc->threshold;
    drv d;
    drv_init_cfg(&d, c, sc->n_blocks, sc->prefix);
    int32_t templates[4][256];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 256; j++) templates[i][j] = (int32_t)(qn_rng_u64(&rng) % VOCAB);
    int32_t prompt[256];
    int64_t n_aborts = 0, n_forks = 0, n_stops = 0;
    const int arrival_steps = 1500;
    for (int step = 0; step < 20000; step++) {
        if (step >= arrival_steps && !qn_sched_has_work(d.s)) break;
        /* arrivals */
        if (step < arrival_steps && qn_rng_u64(&rng) % 3 == 0) {
            const int32_t n = 1 + (int32_t)(qn_rng_u64(&rng) % (uint64_t)(sc->max_len * 3 / 4));
            const int tm = (int)(qn_rng_u64(&rng) % 4);
            const int32_t cut = (int32_t)(qn_rng_u64(&rng) % (uint64_t)(n + 1));
            for (int32_t i = 0; i < n; i++) prompt[i] = i < cut ? templates[tm][i] : (int32_t)(qn_rng_u64(&rng) % VOCAB);
            const int32_t max_tokens = (int32_t)(qn_rng_u64(&rng) % 40);
            treq *t = drv_new_req(&d, prompt, n, max_tokens);
            const qn_status st = qn_sched_add(d.s, t->r, NULL);
            if (st != QN_OK) {
                assert_int_equal(st, QN_ERR_KV_FULL);
                assert_true(qn_block_pool_blocks_for(d.pool, n) > sc->n_blocks);
                t->r->state = QN_REQ_FINISHED_ERROR;
                t->reported = true;
            }
        }
        /* random abort of a live request, before the step */
        if (qn_rng_u64(&rng) % 50 == 0 && d.n_reqs > 0) {
            treq *t = d.reqs[qn_rng_u64(&rng) % (uint64_t)d.n_reqs];
            if (!t->reported) {
                assert_int_equal(qn_sched_abort(d.s, t->r->id, NULL), QN_OK);
                mark_reported(t);
                n_aborts++;
            }
        }
        const qn_sched_output *o = drv_step(&d);
        /* random abort between the step and its update */
        if (o->n_entries > 0 && qn_rng_u64(&rng) % 40 == 0) {
            treq *t = treq_of(o->entries[qn_rng_u64(&rng) % (uint64_t)o->n_entries].req);
            if (!t->reported) {
                assert_int_equal(qn_sched_abort(d.s, t->r->id, NULL), QN_OK);
                mark_reported(t);
                n_aborts++;
                drv_check(&d);
            }
        }
        for (int32_t i = 0; i < o->n_entries; i++)
            if (o->entries[i].needs_sample && qn_rng_u64(&rng) % 30 == 0) {
                d.finish[i] = QN_FINISH_STOP;
                n_stops++;
            }
        drv_update(&d, NULL);
        /* random fork (n > 1) of a decoding request */
        if (qn_rng_u64(&rng) % 25 == 0 && qn_sched_n_running(d.s) > 0) {
            qn_request *p = qn_sched_running_at(d.s, (int32_t)(qn_rng_u64(&rng) % (uint64_t)qn_sched_n_running(d.s)));
            if (p->n_computed == p->n_tokens - 1 && p->n_tokens > p->n_prompt) {
                treq *t = drv_new_req(&d, p->tokens, p->n_tokens - 1, p->max_tokens);
                assert_int_equal(qn_request_append_token(t->r, (p->tokens[p->n_tokens - 1] + 1) % VOCAB), QN_OK);
                t->r->n_prompt = p->n_prompt;
                const qn_status st = qn_sched_fork(d.s, p, t->r);
                if (st == QN_OK) {
                    n_forks++;
                } else {
                    assert_int_equal(st, QN_ERR_BUSY);
                    t->r->state = QN_REQ_FINISHED_ABORTED;
                    t->reported = true;
                }
                drv_check(&d);
            }
        }
    }
    assert_false(qn_sched_has_work(d.s));
    for (int32_t i = 0; i < d.n_reqs; i++) assert_true(d.reqs[i]->reported);
    assert_int_equal(qn_block_pool_n_free(d.pool), sc->n_blocks); /* no leak */
    drv_check(&d);
    qn_block_pool_stats ps;
    qn_block_pool_get_stats(d.pool, &ps);
    printf("  stress seed %llu budget %d seqs %d bs %d blocks %d chunked %d prefix %d thr %d: %d requests, %lld steps, "
           "%lld preemptions, %lld copies, %lld aborts, %lld forks, %lld stops, hits %lld/%lld\n",
           (unsigned long long)seed, sc->budget, sc->max_seqs, sc->bs, sc->n_blocks, sc->chunked, sc->prefix,
           sc->threshold, d.n_reqs, (long long)d.n_steps, (long long)d.n_preempted, (long long)d.n_copies,
           (long long)n_aborts, (long long)n_forks, (long long)n_stops, (long long)ps.prefix_hits,
           (long long)ps.prefix_queries);
    if (sc->n_blocks * sc->bs < 2 * sc->max_len) assert_true(d.n_preempted > 0);
    assert_true(n_aborts > 0);
    drv_fini(&d);
}

static void test_stress(void **state) {
    (void)state;
    const stress_cfg cfgs[] = {
        {.budget = 64, .max_seqs = 8, .max_len = 128, .bs = 4, .n_blocks = 48, .chunked = true, .prefix = true},
        {.budget = 32, .max_seqs = 16, .max_len = 128, .bs = 8, .n_blocks = 40, .chunked = true, .prefix = true},
        {.budget = 256, .max_seqs = 4, .max_len = 128, .bs = 16, .n_blocks = 12, .chunked = true, .prefix = false},
        {.budget = 128, .max_seqs = 8, .max_len = 128, .bs = 4, .n_blocks = 40, .chunked = false, .prefix = true},
        {.budget = 96, .max_seqs = 8, .max_len = 128, .bs = 1, .n_blocks = 200, .chunked = true, .prefix = true,
         .threshold = 24},
        {.budget = 8, .max_seqs = 3, .max_len = 96, .bs = 4, .n_blocks = 20, .chunked = true, .prefix = true},
        /* pool smaller than max_model_len: some requests cannot fit even alone */
        {.budget = 64, .max_seqs = 8, .max_len = 128, .bs = 4, .n_blocks = 24, .chunked = true, .prefix = true},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
        for (uint64_t seed = 1; seed <= 3; seed++) stress_one(&cfgs[i], seed * 1000 + i);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_admission_max_num_seqs),
        cmocka_unit_test(test_admission_budget),
        cmocka_unit_test(test_chunked_prefill_interleaved),
        cmocka_unit_test(test_long_prefill_threshold),
        cmocka_unit_test(test_prefix_cache_hits),
        cmocka_unit_test(test_prefix_eviction),
        cmocka_unit_test(test_fork_cow),
        cmocka_unit_test(test_preemption_resume),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_cannot_fit_alone),
        cmocka_unit_test(test_max_model_len),
        cmocka_unit_test(test_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
