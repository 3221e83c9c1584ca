/* engine.c — the engine thread and its step loop (exec/engine.h), over any exec/backend.h backend:
 * host sampling from copied logits, or device sampling where the backend has it and the rows allow. */
#include "exec/engine.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "kv/block_pool.h"
#include "kv/kv_cache.h"
#include "model/llama_cuda.h"
#include "model/model.h"
#include "sched/batch.h"
#include "sched/scheduler.h"
#include "tokenizer/vocab.h"

/* Per-request engine state, hung off qn_request.user. */
typedef struct eng_req {
    qn_request *req;
    qn_gen_params p;
    char **stop;                /* [n_stop] owned copies */
    int32_t *stop_ids;          /* [n_stop_token_ids] */
    qn_token_bias *bias;        /* [p.n_logit_bias] owned copy */
    qn_sampler smp;
    qn_detok dt;
    char *held;                 /* text held back: might be the start of a stop string */
    size_t n_held, cap_held;
    qn_event_fn fn;
    void *user;
    double t_arrival, t_first;
    int32_t n_emitted;          /* generated tokens reported */
    bool finished;              /* FINISH delivered */
    struct eng_req *next;       /* submission queue link */
} eng_req;

typedef struct abort_item {
    uint64_t id;
    struct abort_item *next;
} abort_item;

struct qn_engine {
    const qn_model *m;
    qn_engine_config cfg;
    qn_backend *be;
    qn_block_pool *pool;
    qn_sched *sched;
    qn_batch batch;
    float *logits;              /* [max_num_seqs][n_vocab] */
    qn_sample_row_params *sparams; /* [max entries] device-sampling params of a step's out rows */
    int32_t *row_tok;           /* [max entries] tokens sampled on the device, by out row */
    int32_t *sampled;           /* [max entries] */
    qn_finish_reason *finish;   /* [max entries] */
    qn_token_prob *top;         /* [20] */
    int32_t *eog_ids;           /* [n_eog] end-of-generation ids (min_tokens masks them) */
    int32_t n_eog;
    char kv_summary[256];

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    eng_req *sub_head, *sub_tail;   /* submissions not yet seen by the engine thread */
    abort_item *aborts;
    int32_t n_pending;              /* submitted, not yet finished (for max_waiting) */
    uint64_t next_id;
    bool stop;
    qn_engine_snapshot stats;          /* snapshot, under mu */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

qn_engine_config qn_engine_config_default(void) {
    return (qn_engine_config){.n_threads = 2, .isa = QN_CPU_ISA_AUTO, .device = QN_DEVICE_AUTO, .gpu_memory_utilization = 0.9f, .tp_size = 1, .max_model_len = 0, .max_num_seqs = 256,
                              .max_num_batched_tokens = 0, .block_size = 16, .kv_cache_bytes = 0,
                              .enable_prefix_cache = true, .max_waiting = 1024, .cuda_graphs = true,
                              .capture_graphs_at_start = true,
                              .profile_begin = 1, .profile_end = 0};
}

size_t qn_engine_kv_bytes_per_token(const qn_model *m) {
    return 2ull * (size_t)m->cfg.n_layer * (size_t)m->cfg.n_head_kv * (size_t)m->cfg.head_dim * sizeof(uint16_t);
}

/* ---------------------------------------------------------------- events */

static void eng_req_free(eng_req *r) {
    if (!r) return;
    for (int32_t i = 0; i < r->p.n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->stop_ids);
    free(r->bias);
    free(r->held);
    qn_sampler_free(&r->smp);
    if (r->req) qn_request_destroy(r->req);
    free(r);
}

static bool held_append(eng_req *r, const char *s, size_t n) {
    if (r->n_held + n + 1 > r->cap_held) {
        size_t cap = (r->n_held + n + 1) * 2;
        char *h = realloc(r->held, cap);
        if (!h) return false;
        r->held = h;
        r->cap_held = cap;
    }
    memcpy(r->held + r->n_held, s, n);
    r->n_held += n;
    r->held[r->n_held] = 0;
    return true;
}

static void emit_finish(qn_engine *e, eng_req *r, qn_finish fin, const char *stop_reason, int32_t stop_token,
                        qn_status error, const char *msg) {
    if (r->finished) return;
    r->finished = true;
    if (fin != QN_FINISHED_ABORT && !stop_reason) { /* an incomplete UTF-8 tail becomes U+FFFD */
        char tail[8];
        int32_t n_tail = 0;
        if (qn_detok_flush(&r->dt, tail, (int32_t)sizeof tail, &n_tail) == QN_OK && n_tail > 0)
            held_append(r, tail, (size_t)n_tail);
    }
    /* whatever text is still held (a stop-string prefix that never completed) goes out first */
    if (r->n_held && fin != QN_FINISHED_ABORT && !stop_reason) {
        qn_event tk = {.kind = QN_EVENT_TOKEN, .id = r->req->id, .token = -1, .text = r->held, .text_len = r->n_held,
                       .t_arrival = r->t_arrival, .t_first_token = r->t_first, .t_now = now_s()};
        r->fn(r->user, &tk);
        r->n_held = 0;
    }
    qn_event ev = {.kind = QN_EVENT_FINISH, .id = r->req->id, .finish = fin, .stop_reason = stop_reason,
                   .stop_token = stop_token, .n_prompt_tokens = r->req->n_prompt,
                   .n_completion_tokens = r->n_emitted, .n_cached_tokens = r->req->n_cached_prompt,
                   .error = error, .error_msg = msg, .t_arrival = r->t_arrival, .t_first_token = r->t_first,
                   .t_now = now_s()};
    r->fn(r->user, &ev);
    pthread_mutex_lock(&e->mu);
    e->n_pending--;
    pthread_mutex_unlock(&e->mu);
}

/* Handles one sampled token: stop tokens, text with stop strings held back, TOKEN event.
 * Returns the finish reason for the scheduler. */
static qn_finish_reason on_token(qn_engine *e, eng_req *r, int32_t tok, float lp, const qn_token_prob *top,
                                 int32_t n_top) {
    const qn_vocab *v = e->m->vocab;
    if (r->t_first == 0) r->t_first = now_s();
    bool stop_tok = !r->p.ignore_eos && qn_vocab_is_eog(v, tok);
    for (int32_t i = 0; i < r->p.n_stop_token_ids && !stop_tok; i++) stop_tok = r->stop_ids[i] == tok;
    r->n_emitted++;
    if (stop_tok) {
        emit_finish(e, r, QN_FINISHED_STOP, NULL, tok, QN_OK, NULL);
        return QN_FINISH_STOP;
    }
    char piece[512];
    int32_t n_piece = 0;
    qn_detok_feed(&r->dt, tok, piece, (int32_t)sizeof piece, &n_piece);
    held_append(r, piece, (size_t)n_piece);
    /* a complete stop string ends the request; text before it is emitted, the string is not. As in vLLM, stop
     * strings are not looked for before min_tokens tokens exist. */
    size_t emit = r->n_held;
    const char *matched = NULL;
    const int32_t n_stop = r->n_emitted >= r->p.min_tokens ? r->p.n_stop : 0;
    for (int32_t i = 0; i < n_stop; i++) {
        const char *hit = strstr(r->held, r->stop[i]);
        if (hit && (size_t)(hit - r->held) < emit) {
            emit = (size_t)(hit - r->held);
            matched = r->stop[i];
        }
    }
    if (!matched) { /* hold back the longest suffix that could start a stop string */
        for (int32_t i = 0; i < n_stop; i++) {
            const size_t sl = strlen(r->stop[i]);
            for (size_t k = sl - 1 < r->n_held ? sl - 1 : r->n_held; k >= 1; k--)
                if (!memcmp(r->held + r->n_held - k, r->stop[i], k)) {
                    if (r->n_held - k < emit) emit = r->n_held - k;
                    break;
                }
        }
    }
    if (matched && r->p.include_stop_str_in_output) emit += strlen(matched);
    qn_event ev = {.kind = QN_EVENT_TOKEN, .id = r->req->id, .token = tok, .text = r->held, .text_len = emit,
                   .logprob = lp, .top = top, .n_top = n_top, .t_arrival = r->t_arrival, .t_first_token = r->t_first,
                   .t_now = now_s()};
    r->fn(r->user, &ev);
    memmove(r->held, r->held + emit, r->n_held - emit);
    r->n_held -= emit;
    if (matched) {
        r->n_held = 0;
        emit_finish(e, r, QN_FINISHED_STOP, matched, -1, QN_OK, NULL);
        return QN_FINISH_STOP;
    }
    if (r->p.max_tokens > 0 && r->n_emitted >= r->p.max_tokens) {
        emit_finish(e, r, QN_FINISHED_LENGTH, NULL, -1, QN_OK, NULL);
        return QN_FINISH_LENGTH;
    }
    return QN_FINISH_NONE;
}

/* ---------------------------------------------------------------- step */

/* logit_bias, then min_tokens: end-of-generation and stop tokens cannot be drawn yet. */
static void apply_logit_mods(const qn_engine *e, const eng_req *r, float *logits) {
    for (int32_t i = 0; i < r->p.n_logit_bias; i++) logits[r->bias[i].token] += r->bias[i].bias;
    if (r->n_emitted >= r->p.min_tokens) return;
    if (!r->p.ignore_eos)
        for (int32_t i = 0; i < e->n_eog; i++) logits[e->eog_ids[i]] = -INFINITY;
    for (int32_t i = 0; i < r->p.n_stop_token_ids; i++) logits[r->stop_ids[i]] = -INFINITY;
}

/* Copies the pool and scheduler figures into the stats; loop_s: engine-thread seconds spent draining new
 * requests and aborts since the last call (added to stats.loop_s). */
static void update_stats(qn_engine *e, double loop_s) {
    qn_block_pool_stats ps;
    qn_sched_stats ss;
    qn_block_pool_get_stats(e->pool, &ps);
    qn_sched_get_stats(e->sched, &ss);
    pthread_mutex_lock(&e->mu);
    e->stats.n_running = ss.n_running;
    e->stats.n_waiting = ss.n_waiting;
    e->stats.n_blocks_total = ps.n_blocks;
    e->stats.n_blocks_free = ps.n_free;
    e->stats.kv_usage = ps.usage;
    e->stats.prefix_queries = ps.prefix_queries;
    e->stats.prefix_hits = ps.prefix_hits;
    e->stats.n_preemptions = ss.n_preemptions;
    e->stats.n_prompt_tokens = ss.n_prompt_tokens;
    e->stats.n_steps = ss.n_steps;
    e->stats.loop_s += loop_s;
    pthread_mutex_unlock(&e->mu);
}

static void drain_queues(qn_engine *e) {
    pthread_mutex_lock(&e->mu);
    eng_req *subs = e->sub_head;
    abort_item *ab = e->aborts;
    e->sub_head = e->sub_tail = NULL;
    e->aborts = NULL;
    pthread_mutex_unlock(&e->mu);
    for (eng_req *r = subs, *next; r; r = next) {
        next = r->next;
        qn_error err = {0};
        qn_status st = qn_sched_add(e->sched, r->req, &err);
        if (st != QN_OK) {
            emit_finish(e, r, QN_FINISHED_ERROR, NULL, -1, st, err.msg);
            eng_req_free(r);
        }
    }
    for (abort_item *a = ab, *next; a; a = next) {
        next = a->next;
        qn_request *req = NULL;
        if (qn_sched_abort(e->sched, a->id, &req) == QN_OK && req) {
            eng_req *r = req->user;
            emit_finish(e, r, QN_FINISHED_ABORT, NULL, -1, QN_ERR_ABORTED, "aborted");
            eng_req_free(r);
        }
        free(a);
    }
}

/* Whether request r's next token can be drawn by the device sampler: nothing the host path would do to
 * the logits first (penalties, logit_bias, the min_tokens mask) and no logprobs to report. */
static bool params_device_samplable(const qn_gen_params *p, int32_t n_emitted) {
    const qn_sampler_params *sp = &p->sampling;
    if (p->n_logprobs >= 0 || p->n_logit_bias > 0) return false;
    if (sp->repetition_penalty != 1.0f || sp->presence_penalty != 0.0f || sp->frequency_penalty != 0.0f) return false;
    return n_emitted >= p->min_tokens || (p->ignore_eos && p->n_stop_token_ids == 0);
}

static bool device_samplable(const eng_req *r) { return params_device_samplable(&r->p, r->n_emitted); }

bool qn_engine_samples_on_device(const qn_engine *e, const qn_gen_params *p) {
    return !e->cfg.host_sampling && qn_backend_samples_on_device(e->be) && params_device_samplable(p, p->min_tokens);
}

/* Fills e->sparams for the step's out rows when every live row is device-samplable. Draws each sampled
 * row's uniform from its request's RNG exactly when qn_sampler_sample would (temperature > 0), so a
 * seeded request gets the same draws on either path. Cancelled rows are sampled greedily and ignored. */
static bool fill_device_params(qn_engine *e, const qn_sched_output *out, const qn_batch *b) {
    if (e->cfg.host_sampling || !qn_backend_samples_on_device(e->be) || b->n_logits < 1) return false;
    for (int32_t li = 0; li < b->n_logits; li++) {
        const qn_sched_entry *en = &out->entries[b->logits_entry[li]];
        if (!en->cancelled && !device_samplable(en->req->user)) return false;
    }
    for (int32_t li = 0; li < b->n_logits; li++) {
        const qn_sched_entry *en = &out->entries[b->logits_entry[li]];
        qn_sample_row_params *sp = &e->sparams[li];
        *sp = (qn_sample_row_params){0};
        if (en->cancelled) continue;
        eng_req *r = en->req->user;
        const qn_sampler_params *p = &r->p.sampling;
        sp->temperature = p->temperature, sp->top_k = p->top_k, sp->top_p = p->top_p, sp->min_p = p->min_p;
        if (p->temperature > 0.0f) sp->u = qn_sampler_uniform(&r->smp);
    }
    return true;
}

static qn_status engine_step(qn_engine *e) {
    const qn_sched_output *out = NULL;
    qn_error err = {0};
    const double t0 = now_s();
    qn_status st = qn_sched_step(e->sched, &out);
    if (st != QN_OK) return st;
    for (int32_t i = 0; i < out->n_failed; i++) {
        eng_req *r = out->failed[i]->user;
        emit_finish(e, r, QN_FINISHED_ERROR, NULL, -1, QN_ERR_KV_FULL, "request cannot fit in the KV cache");
        eng_req_free(r);
    }
    if (out->n_entries == 0) return qn_sched_update_after_step(e->sched, NULL, NULL, NULL);
    for (int32_t i = 0; i < out->n_copies; i++)
        if ((st = qn_backend_copy_block(e->be, out->copies[i].src, out->copies[i].dst, &err)) != QN_OK) {
            fprintf(stderr, "quern: engine: %s\n", err.msg);
            return st;
        }
    if ((st = qn_batch_build(&e->batch, out, e->cfg.block_size, 0)) != QN_OK) return st;
    const qn_batch *b = &e->batch;
    const bool on_device = fill_device_params(e, out, b);
    const double t1 = now_s();
    if (b->n_tokens > 0) {
        const qn_fwd_batch fb = {.n_tokens = b->n_tokens, .tokens = b->token_ids, .positions = b->positions,
                                 .seq_idx = b->seq_idx, .slot_mapping = b->slot_mapping, .n_seqs = b->n_seqs,
                                 .block_tables = b->block_tables, .max_blocks_per_seq = b->max_blocks_per_seq,
                                 .n_out = b->n_logits, .out_rows = b->logits_rows};
        st = on_device ? qn_backend_forward_sample(e->be, &fb, e->sparams, e->row_tok, &err)
                       : qn_backend_forward(e->be, &fb, e->logits, &err);
        if (st != QN_OK) {
            fprintf(stderr, "quern: engine: forward failed: %s\n", err.msg);
            return st;
        }
    }
    const double t2 = now_s();
    const int32_t n_vocab = e->m->cfg.n_vocab;
    for (int32_t i = 0; i < out->n_entries; i++) e->finish[i] = QN_FINISH_NONE, e->sampled[i] = 0;
    for (int32_t li = 0; li < b->n_logits; li++) {
        const int32_t ei = b->logits_entry[li];
        const qn_sched_entry *en = &out->entries[ei];
        if (en->cancelled) continue;
        eng_req *r = en->req->user;
        float lp = 0;
        const int32_t n_top = r->p.n_logprobs > 20 ? 20 : r->p.n_logprobs;
        int32_t tok;
        if (on_device) {
            tok = e->row_tok[li];
        } else {
            float *lg = e->logits + (int64_t)li * n_vocab;
            apply_logit_mods(e, r, lg);
            tok = qn_sampler_sample(&r->smp, lg, en->req->tokens, en->req->n_tokens,
                                    r->p.n_logprobs >= 0 ? &lp : NULL, n_top > 0 ? e->top : NULL, n_top);
        }
        e->sampled[ei] = tok;
        e->finish[ei] = on_token(e, r, tok, lp, e->top, n_top > 0 ? n_top : 0);
    }
    const qn_sched_update_result *res = NULL;
    if ((st = qn_sched_update_after_step(e->sched, e->sampled, e->finish, &res)) != QN_OK) return st;
    for (int32_t i = 0; i < res->n_finished; i++) {
        eng_req *r = res->finished[i]->user;
        if (!r->finished) /* finished by the scheduler itself: max_model_len */
            emit_finish(e, r, QN_FINISHED_LENGTH, NULL, -1, QN_OK, NULL);
        eng_req_free(r);
    }
    const double t3 = now_s();
    qn_cuda_host_times ht;
    qn_backend_cuda_host_times(e->be, &ht);
    pthread_mutex_lock(&e->mu);
    e->stats.cuda = ht;
    e->stats.n_generation_tokens += b->n_logits;
    e->stats.sched_s += t1 - t0, e->stats.forward_s += t2 - t1, e->stats.sample_s += t3 - t2;
    e->stats.n_forward_steps += b->n_tokens > 0;
    e->stats.n_device_sampled_steps += on_device;
    e->stats.n_step_tokens += b->n_tokens;
    pthread_mutex_unlock(&e->mu);
    return QN_OK;
}

static void *engine_main(void *arg) {
    qn_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stop && !e->sub_head && !e->aborts && !qn_sched_has_work(e->sched)) pthread_cond_wait(&e->cv, &e->mu);
        const bool stop = e->stop;
        pthread_mutex_unlock(&e->mu);
        if (stop) break;
        const double t0 = now_s();
        drain_queues(e);
        const double t_drain = now_s() - t0;
        if (qn_sched_has_work(e->sched)) {
            qn_status st = engine_step(e);
            if (st != QN_OK) fprintf(stderr, "quern: engine: step failed: %s\n", qn_status_str(st));
        }
        update_stats(e, t_drain);
    }
    return NULL;
}

/* ---------------------------------------------------------------- lifecycle */

qn_status qn_engine_create(const qn_model *m, const qn_engine_config *cfg, qn_engine **out, qn_error *err) {
    const qn_model_config *mc = &m->cfg;
    qn_engine *e = calloc(1, sizeof *e);
    if (!e) return qn_error_set(err, QN_ERR_NOMEM, "engine: out of memory");
    e->m = m;
    e->cfg = *cfg;
    qn_engine_config *c = &e->cfg;
    if (c->max_model_len <= 0) c->max_model_len = mc->n_ctx_train > 0 && mc->n_ctx_train < 4096 ? mc->n_ctx_train : 4096;
    const bool auto_budget = c->max_num_batched_tokens == 0; /* vLLM's rule (llama_cuda.h) on a GPU, 2048 on the CPU */
    if (auto_budget)
        c->max_num_batched_tokens = c->device == QN_DEVICE_CPU ? 2048 : qn_llama_cuda_default_batch_tokens(c->cuda_device);
    if (c->max_num_seqs < 1 || c->max_num_batched_tokens < 1 || c->block_size < 1 || c->n_threads < 1) {
        free(e);
        return qn_error_set(err, QN_ERR_INVALID_ARG, "engine: max-num-seqs, max-num-batched-tokens, block-size, threads must be >= 1");
    }
    const size_t per_token = qn_engine_kv_bytes_per_token(m);
    size_t bytes = c->kv_cache_bytes > 0 ? (size_t)c->kv_cache_bytes
                                         : per_token * (size_t)c->max_model_len * (size_t)(c->max_num_seqs / 8 > 1 ? c->max_num_seqs / 8 : 1);
    qn_backend_params bp = qn_backend_params_default();
    bp.device = c->device, bp.cuda_device = c->cuda_device, bp.n_threads = c->n_threads, bp.isa = c->isa, bp.no_repack = c->no_repack;
    bp.max_tokens = c->max_num_batched_tokens, bp.max_seqs = c->max_num_seqs, bp.max_ctx = c->max_model_len;
    bp.block_size = c->block_size;
    bp.tp_size = c->tp_size > 0 ? c->tp_size : 1;
    bp.cuda_graphs = c->cuda_graphs, bp.profile_begin = c->profile_begin, bp.profile_end = c->profile_end;
    bp.mmvq_stage = c->mmvq_stage;
    bp.tp_nccl = c->tp_nccl;
    bp.tp_master = c->tp_master, bp.tp_first_rank = c->tp_first_rank, bp.tp_local = c->tp_local;
    qn_status st = QN_OK;
    if (c->kv_cache_bytes <= 0 && c->device != QN_DEVICE_CPU && bp.tp_size == 1) {
        uint64_t gpu_kv = 0;
        st = qn_llama_cuda_kv_budget(m, bp.cuda_device, bp.max_tokens, bp.max_seqs, bp.max_ctx, bp.block_size,
                                     c->gpu_memory_utilization > 0 ? c->gpu_memory_utilization : 0.9f, &gpu_kv, err);
        if (st == QN_OK) bytes = gpu_kv;
        else if ((st == QN_ERR_NO_DEVICE || st == QN_ERR_UNSUPPORTED) && c->device == QN_DEVICE_AUTO) {
            qn_error_clear(err), bp.device = QN_DEVICE_CPU; /* no GPU, or the GPU path does not take this model */
            if (auto_budget) c->max_num_batched_tokens = bp.max_tokens = 2048; /* the CPU's default, not the GPU's */
        }
        else {
            free(e);
            return st;
        }
    }
    qn_kv_capacity cap;
    st = qn_kv_capacity_compute(bytes, per_token, c->block_size, c->max_model_len, c->max_num_seqs, &cap, err);
    if (st != QN_OK) {
        free(e);
        return st;
    }
    qn_kv_capacity_describe(&cap, c->block_size, c->max_model_len, e->kv_summary, sizeof e->kv_summary);
    qn_sched_config sc = qn_sched_config_default();
    sc.max_num_batched_tokens = c->max_num_batched_tokens;
    sc.max_num_seqs = c->max_num_seqs;
    sc.max_model_len = c->max_model_len;
    sc.block_size = c->block_size;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    qn_batch_init(&e->batch);
    const size_t n_entries = (size_t)c->max_num_seqs + 8;
    bp.n_blocks = cap.n_blocks;
    if ((st = qn_backend_create(m, &bp, &e->be, err)) != QN_OK) goto err_free;
    if (c->cuda_graphs && c->capture_graphs_at_start && !c->host_sampling && qn_backend_samples_on_device(e->be)) {
        const double t0 = now_s();
        int32_t n_graphs = 0;
        if ((st = qn_backend_capture_decode_graphs(e->be, c->max_num_seqs, &n_graphs, err)) != QN_OK) goto err_free;
        if (n_graphs > 0)
            QN_LOGI("engine: captured %d decode graphs (up to %d sequences) in %.2f s", n_graphs, c->max_num_seqs,
                    now_s() - t0);
    }
    if ((st = qn_block_pool_create(cap.n_blocks, c->block_size, c->enable_prefix_cache, &e->pool)) != QN_OK) {
        qn_error_set(err, st, "engine: cannot create the block pool");
        goto err_free;
    }
    if ((st = qn_sched_create(&sc, e->pool, &e->sched, err)) != QN_OK) goto err_free;
    e->logits = malloc(sizeof(float) * (size_t)mc->n_vocab * n_entries);
    e->sampled = calloc(n_entries, sizeof(int32_t));
    e->sparams = calloc(n_entries, sizeof(qn_sample_row_params));
    e->row_tok = calloc(n_entries, sizeof(int32_t));
    e->finish = calloc(n_entries, sizeof(qn_finish_reason));
    e->top = calloc(20, sizeof(qn_token_prob));
    e->eog_ids = malloc(sizeof(int32_t) * 64);
    for (int32_t t = 0; e->eog_ids && t < mc->n_vocab && e->n_eog < 64; t++)
        if (qn_vocab_is_eog(m->vocab, t)) e->eog_ids[e->n_eog++] = t;
    if (!e->logits || !e->sampled || !e->sparams || !e->row_tok || !e->finish || !e->top || !e->eog_ids) {
        st = qn_error_set(err, QN_ERR_NOMEM, "engine: out of memory for logits");
        goto err_free;
    }
    e->next_id = 1;
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        st = qn_error_set(err, QN_ERR_INTERNAL, "engine: cannot start the engine thread");
        goto err_free;
    }
    update_stats(e, 0);
    *out = e;
    return QN_OK;
err_free:
    qn_sched_destroy(e->sched);
    qn_block_pool_destroy(e->pool);
    qn_backend_destroy(e->be);
    qn_batch_free(&e->batch);
    free(e->logits), free(e->sampled), free(e->sparams), free(e->row_tok), free(e->finish), free(e->top), free(e->eog_ids);
    free(e);
    return st;
}

void qn_engine_destroy(qn_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    drain_queues(e); /* submissions queued after the last step are added, then aborted below */
    for (;;) {
        qn_request *req = qn_sched_running_at(e->sched, 0);
        if (!req) req = qn_sched_waiting_at(e->sched, 0);
        if (!req) break;
        qn_request *got = NULL;
        if (qn_sched_abort(e->sched, req->id, &got) != QN_OK || !got) break;
        eng_req *r = got->user;
        emit_finish(e, r, QN_FINISHED_ABORT, NULL, -1, QN_ERR_ABORTED, "engine shutting down");
        eng_req_free(r);
    }
    qn_sched_destroy(e->sched);
    qn_block_pool_destroy(e->pool);
    qn_backend_destroy(e->be);
    qn_batch_free(&e->batch);
    free(e->logits), free(e->sampled), free(e->sparams), free(e->row_tok), free(e->finish), free(e->top), free(e->eog_ids);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

/* ---------------------------------------------------------------- requests */

qn_status qn_engine_submit(qn_engine *e, const int32_t *prompt, int32_t n_prompt, const qn_gen_params *p,
                           qn_event_fn fn, void *user, uint64_t *id, qn_error *err) {
    const int32_t max_len = e->cfg.max_model_len;
    if (n_prompt < 1) return qn_error_set(err, QN_ERR_INVALID_ARG, "prompt: empty");
    for (int32_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= e->m->cfg.n_vocab)
            return qn_error_set(err, QN_ERR_INVALID_ARG, "prompt: token id %d out of range [0, %d)", prompt[i], e->m->cfg.n_vocab);
    if ((int64_t)n_prompt + (p->max_tokens > 0 ? p->max_tokens : 0) > max_len)
        return qn_error_set(err, QN_ERR_CONTEXT,
                            "This model's maximum context length is %d tokens. However, you requested %d tokens "
                            "(%d in the messages, %d in the completion).",
                            max_len, n_prompt + (p->max_tokens > 0 ? p->max_tokens : 0), n_prompt,
                            p->max_tokens > 0 ? p->max_tokens : 0);
    if (p->n_logprobs > 20) return qn_error_set(err, QN_ERR_INVALID_ARG, "logprobs: %d > 20", p->n_logprobs);
    if (p->min_tokens < 0) return qn_error_set(err, QN_ERR_INVALID_ARG, "min_tokens: %d < 0", p->min_tokens);
    for (int32_t i = 0; i < p->n_stop_token_ids; i++)
        if (p->stop_token_ids[i] < 0 || p->stop_token_ids[i] >= e->m->cfg.n_vocab)
            return qn_error_set(err, QN_ERR_INVALID_ARG, "stop_token_ids: token id %d out of range [0, %d)",
                                p->stop_token_ids[i], e->m->cfg.n_vocab);
    for (int32_t i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias[i].token < 0 || p->logit_bias[i].token >= e->m->cfg.n_vocab || !isfinite(p->logit_bias[i].bias))
            return qn_error_set(err, QN_ERR_INVALID_ARG, "logit_bias: token id %d out of range [0, %d) or bias not finite",
                                p->logit_bias[i].token, e->m->cfg.n_vocab);
    eng_req *r = calloc(1, sizeof *r);
    if (!r) return qn_error_set(err, QN_ERR_NOMEM, "out of memory");
    r->p = *p;
    r->fn = fn;
    r->user = user;
    r->t_arrival = now_s();
    qn_status st = qn_sampler_init(&r->smp, &p->sampling, e->m->cfg.n_vocab, err);
    if (st != QN_OK) {
        free(r);
        return st;
    }
    if (p->n_stop > 0) {
        r->stop = calloc((size_t)p->n_stop, sizeof(char *));
        for (int32_t i = 0; r->stop && i < p->n_stop; i++) {
            if (!p->stop[i] || !p->stop[i][0]) {
                r->p.n_stop = i;
                eng_req_free(r);
                return qn_error_set(err, QN_ERR_INVALID_ARG, "stop: empty stop string");
            }
            r->stop[i] = strdup(p->stop[i]);
            if (!r->stop[i]) {
                r->p.n_stop = i;
                eng_req_free(r);
                return qn_error_set(err, QN_ERR_NOMEM, "out of memory");
            }
        }
    }
    if (p->n_stop_token_ids > 0) {
        r->stop_ids = malloc(sizeof(int32_t) * (size_t)p->n_stop_token_ids);
        if (r->stop_ids) memcpy(r->stop_ids, p->stop_token_ids, sizeof(int32_t) * (size_t)p->n_stop_token_ids);
    }
    if (p->n_logit_bias > 0) {
        r->bias = malloc(sizeof(qn_token_bias) * (size_t)p->n_logit_bias);
        if (r->bias) memcpy(r->bias, p->logit_bias, sizeof(qn_token_bias) * (size_t)p->n_logit_bias);
    }
    if ((p->n_stop > 0 && !r->stop) || (p->n_stop_token_ids > 0 && !r->stop_ids) || (p->n_logit_bias > 0 && !r->bias)) {
        if (!r->stop) r->p.n_stop = 0;
        eng_req_free(r);
        return qn_error_set(err, QN_ERR_NOMEM, "out of memory");
    }
    qn_detok_init(&r->dt, e->m->vocab, p->render_special);
    pthread_mutex_lock(&e->mu);
    if (e->n_pending - e->stats.n_running >= e->cfg.max_waiting) {
        pthread_mutex_unlock(&e->mu);
        eng_req_free(r);
        return qn_error_set(err, QN_ERR_BUSY, "the server is busy: %d requests are waiting", e->cfg.max_waiting);
    }
    const uint64_t rid = e->next_id++;
    pthread_mutex_unlock(&e->mu);
    qn_request_params rp = {.id = rid, .prompt = prompt, .n_prompt = n_prompt,
                            .max_tokens = p->max_tokens > 0 ? p->max_tokens : 0, .arrival_time = r->t_arrival,
                            .sampling = &r->p.sampling, .user = r};
    if ((st = qn_request_create(&rp, &r->req)) != QN_OK) {
        eng_req_free(r);
        return qn_error_set(err, st, "cannot create the request");
    }
    pthread_mutex_lock(&e->mu);
    if (e->sub_tail)
        e->sub_tail->next = r;
    else
        e->sub_head = r;
    e->sub_tail = r;
    e->n_pending++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    *id = rid;
    return QN_OK;
}

void qn_engine_abort(qn_engine *e, uint64_t id) {
    abort_item *a = malloc(sizeof *a);
    if (!a) return;
    a->id = id;
    pthread_mutex_lock(&e->mu);
    a->next = e->aborts;
    e->aborts = a;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void qn_engine_get_stats(qn_engine *e, qn_engine_snapshot *out) {
    pthread_mutex_lock(&e->mu);
    *out = e->stats;
    pthread_mutex_unlock(&e->mu);
}

int32_t qn_engine_max_model_len(const qn_engine *e) { return e->cfg.max_model_len; }
int32_t qn_engine_max_batched_tokens(const qn_engine *e) { return e->cfg.max_num_batched_tokens; }
const qn_model *qn_engine_model(const qn_engine *e) { return e->m; }
const char *qn_engine_kv_summary(const qn_engine *e) { return e->kv_summary; }
qn_device_kind qn_engine_device(const qn_engine *e) { return qn_backend_kind(e->be); }
double qn_engine_allreduce_s(const qn_engine *e, uint64_t *n_calls) { return qn_backend_allreduce_s(e->be, n_calls); }
const char *qn_engine_isa_name(const qn_engine *e) { return qn_backend_isa_name(e->be); }
const char *qn_engine_backend_name(const qn_engine *e) { return qn_backend_name(e->be); }
