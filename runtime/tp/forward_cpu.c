/* forward_cpu.c — tensor-parallel CPU forward (tp/forward_cpu.h): the rank threads of tp/rank_pool.h (rank 0
 * on the caller's thread) run each step; each rank's qn_llama_cpu calls back into the communicator for the
 * two all-reduces of every layer. */
#include "tp/forward_cpu.h"

#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "core/threadpool.h"
#include "kv/kv_cache.h"
#include "model/llama_cpu.h"
#include "tp/comm.h"
#include "tp/model_shard.h"
#include "tp/rank_pool.h"

typedef struct tp_rank {
    struct qn_tp_cpu *tp;
    int rank;
    qn_tp_model_shard *shard;
    qn_threadpool *pool;
    qn_kv_cache *kv;
    qn_llama_cpu *fwd;
    qn_tp_comm *comm;
    /* the last step's outcome; written by the rank's thread, read by the caller after the step joins */
    qn_status st;
    qn_error err;
    /* all-reduce accounting of this rank (only the rank's thread writes it) */
    double allreduce_s;
    uint64_t n_allreduce, allreduce_bytes;
} tp_rank;

struct qn_tp_cpu {
    int n;            /* ranks */
    int32_t kv_heads; /* per rank */
    tp_rank *ranks;   /* [n] */
    qn_tp_cpu_group *group;
    qn_tp_rank_pool *pool;
    uint64_t n_steps;
    /* the step every rank runs (set before qn_tp_rank_pool_run) */
    const qn_fwd_batch *batch;
    float *logits;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------- per rank */

static qn_status rank_allreduce(void *user, float *rows, int64_t n_tokens, int64_t n) {
    tp_rank *r = user;
    const double t0 = now_s();
    const size_t count = (size_t)n_tokens * (size_t)n;
    const qn_status st = qn_tp_comm_all_reduce_sum_f32(r->comm, rows, count, NULL);
    r->allreduce_s += now_s() - t0;
    r->n_allreduce++;
    r->allreduce_bytes += count * sizeof(float);
    return st;
}

static void rank_step(tp_rank *r, const qn_fwd_batch *b, float *logits) {
    qn_error_clear(&r->err);
    /* the rank writes only its vocab columns; the row stride stays n_vocab */
    r->st = qn_llama_cpu_forward(r->fwd, r->kv, b, logits ? logits + r->shard->vocab_begin : NULL, &r->err);
}

static void rank_step_fn(void *ctx, int rank) {
    qn_tp_cpu *tp = ctx;
    rank_step(&tp->ranks[rank], tp->batch, tp->logits);
}

static qn_status rank_init(qn_tp_cpu *tp, tp_rank *r, const qn_model *m, const qn_cpu_kernels *kern, int threads,
                           int32_t max_tokens, int32_t max_ctx, int32_t block_size, int32_t n_blocks, qn_error *err) {
    qn_status st;
    if ((st = qn_tp_model_shard_create(m, tp->n, r->rank, &r->shard, err)) != QN_OK) return st;
    const qn_model_config *c = &r->shard->m.cfg;
    if ((st = qn_threadpool_create(threads, &r->pool, err)) != QN_OK ||
        (st = qn_kv_cache_create_cpu(c->n_layer, n_blocks, block_size, c->n_head_kv, c->head_dim, &r->kv, err)) != QN_OK ||
        (st = qn_llama_cpu_create(&r->shard->m, kern, r->pool, max_tokens, max_ctx, &r->fwd, err)) != QN_OK)
        return st;
    if ((st = qn_tp_comm_cpu_create(tp->group, r->rank, &r->comm)) != QN_OK)
        return qn_error_set(err, st, "tp cpu: cannot create the communicator of rank %d", r->rank);
    /* N = 1 keeps the plain, fused residual path (bit-identical to a forward without TP) */
    if (tp->n > 1) {
        qn_llama_cpu_set_allreduce(r->fwd, rank_allreduce, r);
        qn_llama_cpu_set_embd_rows(r->fwd, r->shard->vocab_begin);
    }
    return QN_OK;
}

static void rank_free(tp_rank *r) {
    qn_tp_comm_destroy(r->comm);
    qn_llama_cpu_destroy(r->fwd);
    qn_kv_cache_destroy_cpu(r->kv);
    qn_threadpool_destroy(r->pool);
    qn_tp_model_shard_destroy(r->shard);
}

/* ---------------------------------------------------------------- lifecycle */

qn_status qn_tp_cpu_create(const qn_model *m, const qn_cpu_kernels *kern, int n_ranks, int threads_per_rank,
                           int32_t max_tokens, int32_t max_ctx, int32_t block_size, int32_t n_blocks,
                           qn_tp_cpu **out, qn_error *err) {
    if (!m || !kern || !out || n_ranks < 1 || n_ranks > 64 || threads_per_rank < 1 || block_size < 1 || n_blocks < 1)
        return qn_error_set(err, QN_ERR_INVALID_ARG,
                            "tp cpu: bad arguments (%d ranks, %d threads per rank, %d blocks of %d)", n_ranks,
                            threads_per_rank, n_blocks, block_size);
    *out = NULL;
    /* shape checks for every rank before anything large is allocated */
    qn_status st = qn_tp_model_check(m, n_ranks, err);
    if (st != QN_OK) return st;
    qn_tp_cpu *tp = calloc(1, sizeof *tp);
    if (!tp) return qn_error_set(err, QN_ERR_NOMEM, "tp cpu: out of memory");
    tp->n = n_ranks;
    if (!(tp->ranks = calloc((size_t)n_ranks, sizeof *tp->ranks))) {
        free(tp);
        return qn_error_set(err, QN_ERR_NOMEM, "tp cpu: out of memory");
    }
    if ((st = qn_tp_cpu_group_create(n_ranks, &tp->group)) != QN_OK) {
        qn_tp_cpu_destroy(tp);
        return qn_error_set(err, st, "tp cpu: cannot create the communicator group");
    }

    for (int i = 0; i < n_ranks; i++) {
        tp_rank *r = &tp->ranks[i];
        r->tp = tp, r->rank = i;
        if ((st = rank_init(tp, r, m, kern, threads_per_rank, max_tokens, max_ctx, block_size, n_blocks, err)) != QN_OK) {
            qn_tp_cpu_destroy(tp);
            return st;
        }
    }
    tp->kv_heads = tp->ranks[0].kv->n_kv_heads;
    if ((st = qn_tp_rank_pool_create(n_ranks, &tp->pool, err)) != QN_OK) {
        qn_tp_cpu_destroy(tp);
        return st;
    }
    *out = tp;
    return QN_OK;
}

void qn_tp_cpu_destroy(qn_tp_cpu *tp) {
    if (!tp) return;
    qn_tp_rank_pool_destroy(tp->pool); /* joins the rank threads */
    if (tp->ranks)
        for (int i = 0; i < tp->n; i++) rank_free(&tp->ranks[i]);
    qn_tp_cpu_group_destroy(tp->group);
    free(tp->ranks);
    free(tp);
}

/* ---------------------------------------------------------------- use */

qn_status qn_tp_cpu_forward(qn_tp_cpu *tp, const qn_fwd_batch *batch, float *logits, qn_error *err) {
    if (!tp || !batch) return qn_error_set(err, QN_ERR_INVALID_ARG, "tp cpu: NULL argument");
    if (batch->n_out > 0 && !logits) return qn_error_set(err, QN_ERR_INVALID_ARG, "tp cpu: n_out > 0 without logits");
    /* Every rank validates the same batch the same way before its first collective, so a bad batch fails
     * on all ranks and none is left waiting in an all-reduce. */
    tp->batch = batch;
    tp->logits = logits;
    qn_tp_rank_pool_run(tp->pool, rank_step_fn, tp);
    tp->n_steps++;
    for (int i = 0; i < tp->n; i++) {
        const tp_rank *r = &tp->ranks[i];
        if (r->st != QN_OK) {
            if (err) *err = r->err;
            return r->st;
        }
    }
    return QN_OK;
}

void qn_tp_cpu_copy_block(qn_tp_cpu *tp, int32_t src, int32_t dst) {
    for (int i = 0; i < tp->n; i++) qn_kv_cache_copy_block_cpu(tp->ranks[i].kv, src, dst);
}

/* ---------------------------------------------------------------- queries */

int qn_tp_cpu_n_ranks(const qn_tp_cpu *tp) { return tp->n; }
int32_t qn_tp_cpu_kv_heads(const qn_tp_cpu *tp) { return tp->kv_heads; }

uint64_t qn_tp_cpu_kv_bytes_per_block(const qn_model *m, int n_ranks, int32_t block_size) {
    qn_tp_heads h;
    if (qn_tp_split_heads(m->cfg.n_head, m->cfg.n_head_kv, n_ranks, 0, &h, NULL) != QN_OK) return 0;
    return qn_kv_cache_bytes(m->cfg.n_layer, 1, block_size, h.n_kv_head_local, m->cfg.head_dim);
}

void qn_tp_cpu_get_stats(const qn_tp_cpu *tp, qn_tp_cpu_stats *out) {
    const tp_rank *r = &tp->ranks[0];
    *out = (qn_tp_cpu_stats){.allreduce_s = r->allreduce_s, .n_allreduce = r->n_allreduce,
                             .allreduce_bytes = r->allreduce_bytes, .n_steps = tp->n_steps};
}

void qn_tp_cpu_reset_stats(qn_tp_cpu *tp) {
    for (int i = 0; i < tp->n; i++) {
        tp_rank *r = &tp->ranks[i];
        r->allreduce_s = 0, r->n_allreduce = 0, r->allreduce_bytes = 0;
    }
    tp->n_steps = 0;
}
