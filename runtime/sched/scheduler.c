/* scheduler.c — FCFS continuous batching with a token budget, chunked prefill mixed with decodes,
 * prefix-cache admission and preemption by recompute (sched/scheduler.h). The waiting queue is a
 * ring buffer (preempted requests go to its front); the running list is an array in admission order,
 * so "last admitted" is its last element. */
#include "sched/scheduler.h"

#include <stdlib.h>
#include <string.h>

struct qn_sched {
    qn_sched_config cfg;
    qn_block_pool *pool; /* borrowed */

    qn_request **waiting; /* ring [wait_cap]: waiting[(wait_head + i) % wait_cap], i < n_waiting */
    int32_t wait_cap, wait_head, n_waiting;

    qn_request **running; /* [max_num_seqs] admission order */
    int32_t n_running;

    bool pending; /* a step was emitted and awaits its update */
    qn_sched_output out;
    int32_t entries_cap, copies_cap, preempted_cap, failed_cap;
    qn_sched_update_result upd;
    int32_t finished_cap;

    int32_t *match_buf; /* [match_cap] prefix-match block ids */
    int32_t match_cap;

    uint64_t next_arrival;
    qn_sched_stats stats;
};

/* ---------------------------------------------------------------- small helpers */

static qn_status grow(void **arr, int32_t *cap, int32_t need, size_t elem) {
    if (need <= *cap) return QN_OK;
    int32_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *p = realloc(*arr, (size_t)c * elem);
    if (!p) return QN_ERR_NOMEM;
    *arr = p;
    *cap = c;
    return QN_OK;
}

#define GROW(arr, cap, need) grow((void **)&(arr), &(cap), (need), sizeof *(arr))

static qn_request *wait_at(const qn_sched *s, int32_t i) { return s->waiting[(s->wait_head + i) % s->wait_cap]; }

static qn_status wait_reserve(qn_sched *s, int32_t need) {
    if (need <= s->wait_cap) return QN_OK;
    int32_t cap = s->wait_cap ? s->wait_cap : 64;
    while (cap < need) cap *= 2;
    qn_request **q = malloc((size_t)cap * sizeof *q);
    if (!q) return QN_ERR_NOMEM;
    for (int32_t i = 0; i < s->n_waiting; i++) q[i] = wait_at(s, i);
    free(s->waiting);
    s->waiting = q;
    s->wait_cap = cap;
    s->wait_head = 0;
    return QN_OK;
}

static void wait_push_back(qn_sched *s, qn_request *r) {
    s->waiting[(s->wait_head + s->n_waiting) % s->wait_cap] = r;
    s->n_waiting++;
}

static void wait_push_front(qn_sched *s, qn_request *r) {
    s->wait_head = (s->wait_head + s->wait_cap - 1) % s->wait_cap;
    s->waiting[s->wait_head] = r;
    s->n_waiting++;
}

static void wait_pop_front(qn_sched *s) {
    s->wait_head = (s->wait_head + 1) % s->wait_cap;
    s->n_waiting--;
}

static void wait_remove_at(qn_sched *s, int32_t i) {
    for (; i + 1 < s->n_waiting; i++) s->waiting[(s->wait_head + i) % s->wait_cap] = wait_at(s, i + 1);
    s->n_waiting--;
}

static void running_remove_at(qn_sched *s, int32_t i) {
    memmove(s->running + i, s->running + i + 1, (size_t)(s->n_running - i - 1) * sizeof *s->running);
    s->n_running--;
}

static void finish(qn_sched *s, qn_request *r, qn_req_state state, qn_status error) {
    qn_block_pool_free_seq(s->pool, &r->blocks);
    r->state = state;
    r->error = error;
    r->n_computed = 0;
}

/* ---------------------------------------------------------------- lifecycle */

qn_sched_config qn_sched_config_default(void) {
    qn_sched_config c = {
        .max_num_batched_tokens = 2048,
        .max_num_seqs = 256,
        .max_model_len = 4096,
        .block_size = 16,
        .enable_chunked_prefill = true,
        .long_prefill_threshold = 0,
    };
    return c;
}

qn_status qn_sched_create(const qn_sched_config *cfg, qn_block_pool *pool, qn_sched **out, qn_error *err) {
    if (!cfg || !pool || !out) return qn_error_set(err, QN_ERR_INVALID_ARG, "sched: NULL config, pool or out");
    *out = NULL;
    if (cfg->max_num_batched_tokens < 1 || cfg->max_num_seqs < 1 || cfg->max_model_len < 1 || cfg->block_size < 1 ||
        cfg->long_prefill_threshold < 0)
        return qn_error_set(err, QN_ERR_INVALID_ARG,
                            "sched: max_num_batched_tokens %d, max_num_seqs %d, max_model_len %d, block_size %d must "
                            "be >= 1 (long_prefill_threshold %d >= 0)",
                            cfg->max_num_batched_tokens, cfg->max_num_seqs, cfg->max_model_len, cfg->block_size,
                            cfg->long_prefill_threshold);
    if (cfg->block_size != qn_block_pool_block_size(pool))
        return qn_error_set(err, QN_ERR_INVALID_ARG, "sched: block_size %d differs from the pool's %d", cfg->block_size,
                            qn_block_pool_block_size(pool));
    if (!cfg->enable_chunked_prefill && cfg->max_num_batched_tokens < cfg->max_model_len)
        return qn_error_set(err, QN_ERR_INVALID_ARG,
                            "sched: without chunked prefill --max-num-batched-tokens (%d) must be >= --max-model-len "
                            "(%d), or a long prompt could never be scheduled",
                            cfg->max_num_batched_tokens, cfg->max_model_len);
    qn_sched *s = calloc(1, sizeof *s);
    if (!s) return qn_error_set(err, QN_ERR_NOMEM, "sched: out of memory");
    s->cfg = *cfg;
    s->pool = pool;
    s->running = malloc((size_t)cfg->max_num_seqs * sizeof *s->running);
    if (!s->running || wait_reserve(s, 64) != QN_OK) {
        qn_sched_destroy(s);
        return qn_error_set(err, QN_ERR_NOMEM, "sched: out of memory");
    }
    *out = s;
    return QN_OK;
}

void qn_sched_destroy(qn_sched *s) {
    if (!s) return;
    for (int32_t i = 0; i < s->n_running; i++) qn_block_pool_free_seq(s->pool, &s->running[i]->blocks);
    free(s->waiting);
    free(s->running);
    free(s->out.entries);
    free(s->out.copies);
    free(s->out.preempted);
    free(s->out.failed);
    free(s->upd.finished);
    free(s->match_buf);
    free(s);
}

/* ---------------------------------------------------------------- requests */

qn_status qn_sched_add(qn_sched *s, qn_request *r, qn_error *err) {
    if (!r || r->state != QN_REQ_WAITING || r->n_computed != 0 || r->blocks.n_blocks != 0)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "sched: request must be fresh (waiting, nothing computed)");
    if (r->n_tokens > s->cfg.max_model_len)
        return qn_error_set(err, QN_ERR_CONTEXT, "request %llu: %d prompt tokens exceed max_model_len %d",
                            (unsigned long long)r->id, r->n_tokens, s->cfg.max_model_len);
    if (qn_block_pool_blocks_for(s->pool, r->n_tokens) > qn_block_pool_n_blocks(s->pool))
        return qn_error_set(err, QN_ERR_KV_FULL, "request %llu: %d prompt tokens exceed the whole KV cache (%d tokens)",
                            (unsigned long long)r->id, r->n_tokens,
                            qn_block_pool_n_blocks(s->pool) * qn_block_pool_block_size(s->pool));
    if (wait_reserve(s, s->n_waiting + 1) != QN_OK) return qn_error_set(err, QN_ERR_NOMEM, "sched: out of memory");
    r->arrival_seq = s->next_arrival++;
    wait_push_back(s, r);
    return QN_OK;
}

qn_status qn_sched_abort(qn_sched *s, uint64_t id, qn_request **out) {
    if (out) *out = NULL;
    qn_request *r = NULL;
    for (int32_t i = 0; i < s->n_running && !r; i++) {
        if (s->running[i]->id != id) continue;
        r = s->running[i];
        running_remove_at(s, i);
    }
    for (int32_t i = 0; i < s->n_waiting && !r; i++) {
        if (wait_at(s, i)->id != id) continue;
        r = wait_at(s, i);
        wait_remove_at(s, i);
    }
    if (!r) return QN_ERR_NOT_FOUND;
    if (s->pending)
        for (int32_t i = 0; i < s->out.n_entries; i++)
            if (s->out.entries[i].req == r) s->out.entries[i].cancelled = true;
    finish(s, r, QN_REQ_FINISHED_ABORTED, QN_ERR_ABORTED);
    if (out) *out = r;
    return QN_OK;
}

qn_status qn_sched_fork(qn_sched *s, qn_request *parent, qn_request *child) {
    if (s->pending || !parent || !child || parent->state != QN_REQ_RUNNING || child->state != QN_REQ_WAITING ||
        child->blocks.n_blocks != 0 || child->n_tokens != parent->n_tokens || parent->n_computed != parent->n_tokens - 1 ||
        memcmp(child->tokens, parent->tokens, (size_t)parent->n_computed * sizeof *parent->tokens) != 0)
        return QN_ERR_INVALID_ARG;
    if (s->n_running == s->cfg.max_num_seqs) return QN_ERR_BUSY;
    qn_status st = qn_block_pool_fork(s->pool, &parent->blocks, &child->blocks);
    if (st != QN_OK) return st;
    child->n_computed = parent->n_computed;
    child->n_prompt = parent->n_prompt;
    child->n_cached_prompt = parent->n_cached_prompt;
    child->admitted_once = true;
    child->arrival_seq = s->next_arrival++;
    child->state = QN_REQ_RUNNING;
    s->running[s->n_running++] = child;
    return QN_OK;
}

/* ---------------------------------------------------------------- step */

static qn_status emit(qn_sched *s, qn_request *r, int32_t n) {
    qn_sched_output *o = &s->out;
    qn_status st = GROW(o->entries, s->entries_cap, o->n_entries + 1);
    if (st != QN_OK) return st;
    qn_sched_entry *e = &o->entries[o->n_entries++];
    e->req = r;
    e->start = r->n_computed;
    e->n_tokens = n;
    e->needs_sample = r->n_computed + n == r->n_tokens;
    e->is_prefill = !(e->start >= r->n_prompt && n == 1);
    e->cancelled = false;
    e->block_table = r->blocks.ids;
    e->n_blocks = r->blocks.n_blocks;
    o->n_tokens += n;
    if (e->is_prefill) o->n_prefill_tokens += n;
    else o->n_decode_tokens += n;
    return QN_OK;
}

static qn_status fail_request(qn_sched *s, qn_request *r) {
    qn_status st = GROW(s->out.failed, s->failed_cap, s->out.n_failed + 1);
    if (st != QN_OK) return st;
    finish(s, r, QN_REQ_FINISHED_ERROR, QN_ERR_KV_FULL);
    s->out.failed[s->out.n_failed++] = r;
    return QN_OK;
}

/* Preempts the last-admitted running request: frees its KV, recompute later from its whole token
 * list (prompt + generated so far). */
static qn_status preempt_last(qn_sched *s) {
    qn_status st = GROW(s->out.preempted, s->preempted_cap, s->out.n_preempted + 1);
    if (st != QN_OK) return st;
    qn_request *v = s->running[--s->n_running];
    qn_block_pool_free_seq(s->pool, &v->blocks);
    v->n_computed = 0;
    v->state = QN_REQ_PREEMPTED;
    v->n_preemptions++;
    wait_push_front(s, v);
    s->out.preempted[s->out.n_preempted++] = v;
    s->stats.n_preemptions++;
    return QN_OK;
}

static int32_t chunk_size(const qn_sched *s, int32_t remaining, int32_t budget) {
    int32_t n = remaining < budget ? remaining : budget;
    if (s->cfg.long_prefill_threshold > 0 && n > s->cfg.long_prefill_threshold) n = s->cfg.long_prefill_threshold;
    return n;
}

static qn_status schedule_running(qn_sched *s, int32_t *budget) {
    const int32_t pool_blocks = qn_block_pool_n_blocks(s->pool);
    int32_t i = 0;
    while (i < s->n_running && *budget > 0) {
        qn_request *r = s->running[i];
        const int32_t n = chunk_size(s, r->n_tokens - r->n_computed, *budget);
        if (qn_block_pool_blocks_for(s->pool, r->n_computed + n) > pool_blocks) {
            /* cannot fit even alone: preempting others would only loop */
            running_remove_at(s, i);
            qn_status st = fail_request(s, r);
            if (st != QN_OK) return st;
            continue;
        }
        bool self_preempted = false;
        while (!qn_block_pool_can_append(s->pool, &r->blocks, n)) {
            /* vacating the victim's slots first lets the wait queue grow without failing */
            qn_status st = wait_reserve(s, s->n_waiting + 1);
            if (st != QN_OK) return st;
            const bool is_self = s->running[s->n_running - 1] == r;
            st = preempt_last(s);
            if (st != QN_OK) return st;
            if (is_self) {
                self_preempted = true;
                break;
            }
        }
        if (self_preempted) break; /* r was last: nothing after it remains */
        qn_status st = GROW(s->out.copies, s->copies_cap, s->out.n_copies + 1);
        if (st != QN_OK) return st;
        if (qn_block_pool_needs_cow(s->pool, &r->blocks)) {
            qn_block_copy *c = &s->out.copies[s->out.n_copies++];
            st = qn_block_pool_cow_last(s->pool, &r->blocks, &c->src, &c->dst);
            if (st != QN_OK) return QN_ERR_INTERNAL; /* can_append counted the copy */
        }
        st = qn_block_pool_append_slots(s->pool, &r->blocks, n);
        if (st != QN_OK) return st == QN_ERR_KV_FULL ? QN_ERR_INTERNAL : st;
        st = emit(s, r, n);
        if (st != QN_OK) return st;
        *budget -= n;
        i++;
    }
    return QN_OK;
}

static qn_status schedule_waiting(qn_sched *s, int32_t *budget) {
    const int32_t bs = s->cfg.block_size;
    const int32_t pool_blocks = qn_block_pool_n_blocks(s->pool);
    while (s->n_waiting > 0 && *budget > 0 && s->n_running < s->cfg.max_num_seqs) {
        qn_request *r = wait_at(s, 0);
        if (qn_block_pool_blocks_for(s->pool, r->n_tokens) > pool_blocks) {
            wait_pop_front(s);
            qn_status st = fail_request(s, r);
            if (st != QN_OK) return st;
            continue;
        }
        qn_status st = GROW(s->match_buf, s->match_cap, r->n_tokens / bs + 1);
        if (st != QN_OK) return st;
        const int32_t n_hit = qn_block_pool_match_prefix(s->pool, r->tokens, r->n_tokens, s->match_buf);
        const int32_t remaining = r->n_tokens - n_hit;
        if (!s->cfg.enable_chunked_prefill && remaining > *budget) break; /* FCFS: the head waits */
        const int32_t n = chunk_size(s, remaining, *budget);
        if (!qn_block_pool_can_allocate(s->pool, s->match_buf, n_hit / bs, n_hit + n)) break;
        st = qn_block_pool_allocate(s->pool, &r->blocks, s->match_buf, n_hit / bs, n_hit + n);
        if (st != QN_OK) return st;
        qn_block_pool_count_prefix_query(s->pool, r->n_tokens, n_hit);
        if (!r->admitted_once) {
            r->admitted_once = true;
            r->n_cached_prompt = n_hit;
        }
        wait_pop_front(s);
        r->n_computed = n_hit;
        r->state = QN_REQ_RUNNING;
        s->running[s->n_running++] = r;
        st = emit(s, r, n);
        if (st != QN_OK) return st;
        *budget -= n;
    }
    return QN_OK;
}

qn_status qn_sched_step(qn_sched *s, const qn_sched_output **out) {
    if (s->pending) return QN_ERR_INVALID_ARG;
    qn_sched_output *o = &s->out;
    o->n_entries = o->n_tokens = o->n_prefill_tokens = o->n_decode_tokens = 0;
    o->n_copies = o->n_preempted = o->n_failed = 0;
    s->upd.n_finished = 0;

    int32_t budget = s->cfg.max_num_batched_tokens;
    qn_status st = schedule_running(s, &budget);
    if (st == QN_OK && o->n_preempted == 0) st = schedule_waiting(s, &budget);
    /* entries' block_table pointers are final: a request is emitted after its only allocation of
     * the step, and preemption victims are never requests already emitted */
    s->pending = true; /* even on error: the entries emitted hold blocks that update releases */
    s->stats.n_steps++;
    s->stats.n_prompt_tokens += o->n_prefill_tokens;
    s->stats.n_decode_tokens += o->n_decode_tokens;
    if (out) *out = o;
    return st;
}

qn_status qn_sched_update_after_step(qn_sched *s, const int32_t *sampled, const qn_finish_reason *finish_in,
                                     const qn_sched_update_result **out) {
    if (!s->pending) return QN_ERR_INVALID_ARG;
    if (!sampled)
        for (int32_t i = 0; i < s->out.n_entries; i++)
            if (s->out.entries[i].needs_sample && !s->out.entries[i].cancelled) return QN_ERR_INVALID_ARG;
    s->pending = false;
    s->upd.n_finished = 0;
    qn_status st = GROW(s->upd.finished, s->finished_cap, s->out.n_entries);
    if (st != QN_OK) return st;
    bool any_finished = false;
    for (int32_t i = 0; i < s->out.n_entries; i++) {
        const qn_sched_entry *e = &s->out.entries[i];
        if (e->cancelled) continue;
        qn_request *r = e->req;
        r->n_computed += e->n_tokens;
        qn_block_pool_commit_full_blocks(s->pool, &r->blocks, r->tokens, r->n_computed);
        if (!e->needs_sample) continue;
        qn_req_state end = QN_REQ_RUNNING;
        qn_status err = QN_OK;
        if (qn_request_append_token(r, sampled[i]) != QN_OK) {
            end = QN_REQ_FINISHED_ERROR;
            err = QN_ERR_NOMEM;
        } else if (finish_in && finish_in[i] == QN_FINISH_STOP) {
            end = QN_REQ_FINISHED_STOPPED;
        } else if ((finish_in && finish_in[i] == QN_FINISH_LENGTH) ||
                   (r->max_tokens > 0 && qn_request_n_generated(r) >= r->max_tokens) ||
                   r->n_tokens >= s->cfg.max_model_len) {
            end = QN_REQ_FINISHED_LENGTH;
        }
        if (end == QN_REQ_RUNNING) continue;
        finish(s, r, end, err);
        s->upd.finished[s->upd.n_finished++] = r;
        any_finished = true;
    }
    if (any_finished) {
        int32_t k = 0;
        for (int32_t i = 0; i < s->n_running; i++)
            if (s->running[i]->state == QN_REQ_RUNNING) s->running[k++] = s->running[i];
        s->n_running = k;
    }
    if (out) *out = &s->upd;
    return QN_OK;
}

/* ---------------------------------------------------------------- queries */

int32_t qn_sched_n_running(const qn_sched *s) { return s->n_running; }
int32_t qn_sched_n_waiting(const qn_sched *s) { return s->n_waiting; }
bool qn_sched_has_work(const qn_sched *s) { return s->n_running + s->n_waiting > 0; }
qn_request *qn_sched_running_at(const qn_sched *s, int32_t i) { return i >= 0 && i < s->n_running ? s->running[i] : NULL; }
qn_request *qn_sched_waiting_at(const qn_sched *s, int32_t i) { return i >= 0 && i < s->n_waiting ? wait_at(s, i) : NULL; }
const qn_sched_config *qn_sched_get_config(const qn_sched *s) { return &s->cfg; }
qn_block_pool *qn_sched_pool(const qn_sched *s) { return s->pool; }

void qn_sched_get_stats(const qn_sched *s, qn_sched_stats *out) {
    *out = s->stats;
    out->n_running = s->n_running;
    out->n_waiting = s->n_waiting;
}

/* ---------------------------------------------------------------- debugging */

qn_status qn_sched_check(const qn_sched *s, qn_error *err) {
    qn_status st = qn_block_pool_check(s->pool, err);
    if (st != QN_OK) return st;
    const int32_t n_blocks = qn_block_pool_n_blocks(s->pool);
    int32_t *refs = calloc((size_t)n_blocks, sizeof *refs);
    if (!refs) return qn_error_set(err, QN_ERR_NOMEM, "sched_check: out of memory");
    st = QN_OK;
    if (s->n_running > s->cfg.max_num_seqs)
        st = qn_error_set(err, QN_ERR_INTERNAL, "sched: %d running > max_num_seqs %d", s->n_running, s->cfg.max_num_seqs);
    for (int32_t i = 0; i < s->n_running && st == QN_OK; i++) {
        const qn_request *r = s->running[i];
        int32_t expect = r->n_computed;
        if (s->pending)
            for (int32_t j = 0; j < s->out.n_entries; j++)
                if (s->out.entries[j].req == r && !s->out.entries[j].cancelled) expect += s->out.entries[j].n_tokens;
        /* between steps a running request always has something left to compute */
        if (r->state != QN_REQ_RUNNING || r->blocks.n_tokens != expect ||
            r->blocks.n_blocks != qn_block_pool_blocks_for(s->pool, expect) || (!s->pending && r->n_computed >= r->n_tokens)) {
            st = qn_error_set(err, QN_ERR_INTERNAL,
                              "sched: running request %llu state %s covers %d tokens in %d blocks, expected %d "
                              "(computed %d of %d)",
                              (unsigned long long)r->id, qn_req_state_str(r->state), r->blocks.n_tokens,
                              r->blocks.n_blocks, expect, r->n_computed, r->n_tokens);
            break;
        }
        for (int32_t b = 0; b < r->blocks.n_blocks; b++) {
            const int32_t id = r->blocks.ids[b];
            if (id < 0 || id >= n_blocks) {
                st = qn_error_set(err, QN_ERR_INTERNAL, "sched: request %llu holds bad block %d",
                                  (unsigned long long)r->id, id);
                break;
            }
            refs[id]++;
        }
    }
    for (int32_t i = 0; i < s->n_waiting && st == QN_OK; i++) {
        const qn_request *r = wait_at(s, i);
        if (r->blocks.n_blocks != 0 || r->n_computed != 0 ||
            (r->state != QN_REQ_WAITING && r->state != QN_REQ_PREEMPTED))
            st = qn_error_set(err, QN_ERR_INTERNAL, "sched: waiting request %llu (%s) holds %d blocks, computed %d",
                              (unsigned long long)r->id, qn_req_state_str(r->state), r->blocks.n_blocks, r->n_computed);
    }
    for (int32_t b = 0; b < n_blocks && st == QN_OK; b++)
        if (refs[b] != qn_block_pool_ref(s->pool, b))
            st = qn_error_set(err, QN_ERR_INTERNAL, "sched: block %d has ref %d but %d holders", b,
                              qn_block_pool_ref(s->pool, b), refs[b]);
    free(refs);
    return st;
}
