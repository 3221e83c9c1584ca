/* forward_cuda.c — tensor-parallel CUDA forward (tp/forward_cuda.h): set-up, steps and block copies each
 * run on every rank at once through the rank pool; the first failing rank's error is returned. */
#include "tp/forward_cuda.h"

#include <stdio.h>
#include <stdlib.h>

#include "tp/comm.h"
#include "tp/model_shard.h"
#include "tp/rank_pool.h"

typedef struct cuda_rank {
    qn_tp_model_shard *shard;
    qn_tp_comm *comm;
    qn_llama_cuda *f;
    qn_status st;
    qn_error err;
} cuda_rank;

struct qn_tp_cuda {
    int n;
    cuda_rank *ranks;          /* [n] */
    qn_tp_rank_pool *pool;
    char name[400];
    /* the job every rank runs (set by the caller before qn_tp_rank_pool_run) */
    const qn_model *m;
    qn_llama_cuda_params p;
    qn_tp_unique_id id;
    const qn_fwd_batch *batch;
    float *logits;
    int32_t src, dst;
};

static void rank_init(void *ctx, int r) {
    qn_tp_cuda *tp = ctx;
    cuda_rank *k = &tp->ranks[r];
    qn_error_clear(&k->err);
    if ((k->st = qn_tp_model_shard_create(tp->m, tp->n, r, &k->shard, &k->err)) != QN_OK) return;
    /* collective: blocks until every rank has joined */
    if ((k->st = qn_tp_comm_nccl_create(&tp->id, tp->n, r, tp->p.device + r, &k->comm)) != QN_OK) {
        qn_error_set(&k->err, k->st, "tp cuda: rank %d: NCCL communicator on GPU %d failed", r, tp->p.device + r);
        return;
    }
    qn_llama_cuda_params p = tp->p;
    p.device = tp->p.device + r;
    if ((k->st = qn_llama_cuda_create(&k->shard->m, &p, &k->f, &k->err)) != QN_OK) return;
    qn_llama_cuda_set_tp(k->f, k->comm, k->shard->vocab_begin);
}

static void rank_step(void *ctx, int r) {
    qn_tp_cuda *tp = ctx;
    cuda_rank *k = &tp->ranks[r];
    qn_error_clear(&k->err);
    k->st = qn_llama_cuda_forward(k->f, tp->batch, tp->logits, &k->err);
}

static void rank_copy(void *ctx, int r) {
    qn_tp_cuda *tp = ctx;
    cuda_rank *k = &tp->ranks[r];
    qn_error_clear(&k->err);
    k->st = qn_llama_cuda_copy_block(k->f, tp->src, tp->dst, &k->err);
}

static qn_status first_error(const qn_tp_cuda *tp, qn_error *err) {
    for (int r = 0; r < tp->n; r++)
        if (tp->ranks[r].st != QN_OK) {
            if (err) *err = tp->ranks[r].err;
            return tp->ranks[r].st;
        }
    return QN_OK;
}

qn_status qn_tp_cuda_create(const qn_model *m, const qn_llama_cuda_params *p, int n_ranks, qn_tp_cuda **out,
                            qn_error *err) {
    if (!m || !p || !out || n_ranks < 1 || n_ranks > 64)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "tp cuda: bad arguments (%d ranks)", n_ranks);
    qn_status st = qn_tp_model_check(m, n_ranks, err);
    if (st != QN_OK) return st;
    qn_tp_cuda *tp = calloc(1, sizeof *tp);
    if (!tp || !(tp->ranks = calloc((size_t)n_ranks, sizeof *tp->ranks))) {
        free(tp);
        return qn_error_set(err, QN_ERR_NOMEM, "tp cuda: out of memory");
    }
    tp->n = n_ranks, tp->m = m, tp->p = *p;
    if ((st = qn_tp_nccl_get_unique_id(&tp->id)) != QN_OK) {
        qn_tp_cuda_destroy(tp);
        return qn_error_set(err, st, "tp cuda: %s", st == QN_ERR_UNSUPPORTED ? "this build has no NCCL"
                                                                             : "ncclGetUniqueId failed (no GPU?)");
    }
    if ((st = qn_tp_rank_pool_create(n_ranks, &tp->pool, err)) != QN_OK) {
        qn_tp_cuda_destroy(tp);
        return st;
    }
    qn_tp_rank_pool_run(tp->pool, rank_init, tp);
    if ((st = first_error(tp, err)) != QN_OK) {
        qn_tp_cuda_destroy(tp);
        return st;
    }
    snprintf(tp->name, sizeof tp->name, "%s x %d, NCCL", qn_llama_cuda_device_name(tp->ranks[0].f), n_ranks);
    *out = tp;
    return QN_OK;
}

static void rank_free(void *ctx, int r) {
    qn_tp_cuda *tp = ctx;
    cuda_rank *k = &tp->ranks[r];
    qn_llama_cuda_destroy(k->f);
    qn_tp_comm_destroy(k->comm);
    qn_tp_model_shard_destroy(k->shard);
    k->f = NULL, k->comm = NULL, k->shard = NULL;
}

void qn_tp_cuda_destroy(qn_tp_cuda *tp) {
    if (!tp) return;
    if (tp->pool) qn_tp_rank_pool_run(tp->pool, rank_free, tp); /* each rank frees on its own thread/device */
    else
        for (int r = 0; r < tp->n; r++) rank_free(tp, r);
    qn_tp_rank_pool_destroy(tp->pool);
    free(tp->ranks);
    free(tp);
}

qn_status qn_tp_cuda_forward(qn_tp_cuda *tp, const qn_fwd_batch *batch, float *logits, qn_error *err) {
    if (!tp || !batch) return qn_error_set(err, QN_ERR_INVALID_ARG, "tp cuda: NULL argument");
    /* every rank checks the same batch before its first collective, so a bad batch fails on all ranks */
    tp->batch = batch, tp->logits = logits;
    qn_tp_rank_pool_run(tp->pool, rank_step, tp);
    return first_error(tp, err);
}

qn_status qn_tp_cuda_copy_block(qn_tp_cuda *tp, int32_t src, int32_t dst, qn_error *err) {
    tp->src = src, tp->dst = dst;
    qn_tp_rank_pool_run(tp->pool, rank_copy, tp);
    return first_error(tp, err);
}

int qn_tp_cuda_n_ranks(const qn_tp_cuda *tp) { return tp->n; }
const char *qn_tp_cuda_name(const qn_tp_cuda *tp) { return tp->name; }
