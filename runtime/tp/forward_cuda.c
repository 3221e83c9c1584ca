/* forward_cuda.c — tensor-parallel CUDA forward (tp/forward_cuda.h): set-up, steps and block copies each
 * run on every rank of this process at once through the rank pool; the first failing rank's error is
 * returned. A group that spans processes adds the id bootstrap and a logits all-gather per step. */
#include "tp/forward_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef QN_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "tp/bootstrap.h"
#include "tp/comm.h"
#include "tp/model_shard.h"
#include "tp/rank_pool.h"

/* logits rows all-gathered at a time across processes: bounds the staging to GATHER_ROWS x padded vocab
 * slice (send) and tp_size times that (receive) per rank */
enum { GATHER_ROWS = 8 };

typedef struct cuda_rank {
    qn_tp_model_shard *shard;
    qn_tp_comm *comm;
    qn_llama_cuda *f;
    qn_status st;
    qn_error err;
    /* across processes only: logits all-gather staging (device: the one allocation outside the forward's
     * arena, like comm_nccl.c's barrier float) */
    float *send_d, *recv_d;    /* [GATHER_ROWS][vocab_pad], [tp_size][GATHER_ROWS][vocab_pad] */
    float *recv_h;             /* host copy of recv_d (local rank 0 only) */
    void *gstream;             /* cudaStream_t of the gather */
} cuda_rank;

struct qn_tp_cuda {
    int n;                     /* ranks in this process */
    int tp_size, first_rank;   /* the group; this process runs first_rank .. first_rank + n - 1 */
    int64_t vocab_pad;         /* VOCAB rule rows per rank (tp/shard.h): rank q holds [q * pad, ...) */
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

/* ---------------------------------------------------------------- across processes: logits all-gather */

#ifdef QN_HAVE_CUDA
static qn_status gather_alloc(qn_tp_cuda *tp, int i, cuda_rank *k, qn_error *err) {
    const size_t send = (size_t)GATHER_ROWS * (size_t)tp->vocab_pad;
    if (cudaSetDevice(tp->p.device + i) != cudaSuccess ||
        cudaStreamCreateWithFlags((cudaStream_t *)&k->gstream, cudaStreamNonBlocking) != cudaSuccess ||
        cudaMalloc((void **)&k->send_d, sizeof(float) * send) != cudaSuccess ||
        cudaMalloc((void **)&k->recv_d, sizeof(float) * send * (size_t)tp->tp_size) != cudaSuccess ||
        cudaMemset(k->send_d, 0, sizeof(float) * send) != cudaSuccess)
        return qn_error_set(err, QN_ERR_DEVICE_OOM, "tp cuda: rank %d: logits gather buffers", tp->first_rank + i);
    if (i == 0 && !(k->recv_h = malloc(sizeof(float) * send * (size_t)tp->tp_size)))
        return qn_error_set(err, QN_ERR_NOMEM, "tp cuda: out of memory");
    return QN_OK;
}

static void gather_free(cuda_rank *k) {
    if (k->gstream) cudaStreamSynchronize((cudaStream_t)k->gstream), cudaStreamDestroy((cudaStream_t)k->gstream);
    cudaFree(k->send_d), cudaFree(k->recv_d);
    free(k->recv_h);
}

/* Every rank of the group sends its logits columns (already in this process's host rows) and receives
 * all of them; local rank 0 writes the other processes' columns into the host rows. Collective: every
 * rank calls it with the same n_out. The columns go host -> device -> host again: simple, ~V floats a row. */
static qn_status gather_logits(qn_tp_cuda *tp, int i, int32_t n_out, float *logits, qn_error *err) {
    cuda_rank *k = &tp->ranks[i];
    const size_t V = (size_t)tp->m->cfg.n_vocab, P = (size_t)tp->vocab_pad;
    const size_t vb = (size_t)k->shard->vocab_begin, nl = (size_t)(k->shard->vocab_end - k->shard->vocab_begin);
    const cudaStream_t gs = (cudaStream_t)k->gstream;
    if (cudaSetDevice(tp->p.device + i) != cudaSuccess)
        return qn_error_set(err, QN_ERR_CUDA, "tp cuda: cudaSetDevice(%d) failed", tp->p.device + i);
    for (int32_t r0 = 0; r0 < n_out; r0 += GATHER_ROWS) {
        const size_t nr = (size_t)(n_out - r0 < GATHER_ROWS ? n_out - r0 : GATHER_ROWS);
        if (cudaMemcpy2DAsync(k->send_d, sizeof(float) * P, logits + (size_t)r0 * V + vb, sizeof(float) * V,
                              sizeof(float) * nl, nr, cudaMemcpyHostToDevice, gs) != cudaSuccess)
            return qn_error_set(err, QN_ERR_CUDA, "tp cuda: logits to the gather buffer failed");
        qn_status st = qn_tp_comm_all_gather_f32(k->comm, k->send_d, k->recv_d, nr * P, gs);
        if (st != QN_OK) return qn_error_set(err, st, "tp cuda: logits all-gather failed");
        if (cudaStreamSynchronize(gs) != cudaSuccess) return qn_error_set(err, QN_ERR_CUDA, "tp cuda: gather sync");
        if (i != 0) continue;
        if (cudaMemcpy(k->recv_h, k->recv_d, sizeof(float) * nr * P * (size_t)tp->tp_size, cudaMemcpyDeviceToHost) !=
            cudaSuccess)
            return qn_error_set(err, QN_ERR_CUDA, "tp cuda: gathered logits to the host failed");
        for (int q = 0; q < tp->tp_size; q++) {
            if (q >= tp->first_rank && q < tp->first_rank + tp->n) continue; /* this process's own columns */
            const size_t qb = (size_t)q * P, qn = qb >= V ? 0 : (V - qb < P ? V - qb : P);
            for (size_t r = 0; r < nr && qn; r++)
                memcpy(logits + ((size_t)r0 + r) * V + qb, k->recv_h + ((size_t)q * nr + r) * P, sizeof(float) * qn);
        }
    }
    return QN_OK;
}
#else
static qn_status gather_alloc(qn_tp_cuda *tp, int i, cuda_rank *k, qn_error *err) {
    (void)tp, (void)i, (void)k;
    return qn_error_set(err, QN_ERR_NO_DEVICE, "tp cuda: built without CUDA");
}
static void gather_free(cuda_rank *k) { (void)k; }
static qn_status gather_logits(qn_tp_cuda *tp, int i, int32_t n_out, float *logits, qn_error *err) {
    (void)tp, (void)i, (void)n_out, (void)logits;
    return qn_error_set(err, QN_ERR_NO_DEVICE, "tp cuda: built without CUDA");
}
#endif

/* ---------------------------------------------------------------- per rank */

static void rank_init(void *ctx, int i) {
    qn_tp_cuda *tp = ctx;
    cuda_rank *k = &tp->ranks[i];
    const int r = tp->first_rank + i, dev = tp->p.device + i; /* global rank, local GPU */
    qn_error_clear(&k->err);
    if ((k->st = qn_tp_model_shard_create(tp->m, tp->tp_size, r, &k->shard, &k->err)) != QN_OK) return;
    /* collective: blocks until every rank of every process has joined */
    if ((k->st = qn_tp_comm_nccl_create(&tp->id, tp->tp_size, r, dev, &k->comm)) != QN_OK) {
        qn_error_set(&k->err, k->st, "tp cuda: rank %d: NCCL communicator on GPU %d failed", r, dev);
        return;
    }
    qn_llama_cuda_params p = tp->p;
    p.device = dev;
    if ((k->st = qn_llama_cuda_create(&k->shard->m, &p, &k->f, &k->err)) != QN_OK) return;
    qn_llama_cuda_set_tp(k->f, k->comm, k->shard->vocab_begin);
    if (tp->n < tp->tp_size) k->st = gather_alloc(tp, i, k, &k->err);
}

static void rank_step(void *ctx, int i) {
    qn_tp_cuda *tp = ctx;
    cuda_rank *k = &tp->ranks[i];
    qn_error_clear(&k->err);
    k->st = qn_llama_cuda_forward(k->f, tp->batch, tp->logits, &k->err);
    /* every rank of the group reaches the gather (a failed forward has failed on all of them: same batch) */
    if (k->st == QN_OK && tp->n < tp->tp_size && tp->batch->n_out > 0)
        k->st = gather_logits(tp, i, tp->batch->n_out, tp->logits, &k->err);
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
    const qn_tp_cuda_placement pl = {.tp_size = n_ranks, .first_rank = 0, .n_local = n_ranks};
    return qn_tp_cuda_create_placed(m, p, &pl, out, err);
}

qn_status qn_tp_cuda_create_placed(const qn_model *m, const qn_llama_cuda_params *p, const qn_tp_cuda_placement *pl,
                                   qn_tp_cuda **out, qn_error *err) {
    if (!m || !p || !pl || !out || pl->tp_size < 1 || pl->tp_size > 64 || pl->n_local < 1 || pl->first_rank < 0 ||
        pl->first_rank + pl->n_local > pl->tp_size || (pl->n_local < pl->tp_size && !pl->master))
        return qn_error_set(err, QN_ERR_INVALID_ARG, "tp cuda: bad placement (ranks %d..%d of %d%s)",
                            pl ? pl->first_rank : 0, pl ? pl->first_rank + pl->n_local - 1 : 0, pl ? pl->tp_size : 0,
                            pl && !pl->master ? ", no master address" : "");
    const int n_ranks = pl->n_local;
    qn_status st = qn_tp_model_check(m, pl->tp_size, err);
    if (st != QN_OK) return st;
    qn_tp_cuda *tp = calloc(1, sizeof *tp);
    if (!tp || !(tp->ranks = calloc((size_t)n_ranks, sizeof *tp->ranks))) {
        free(tp);
        return qn_error_set(err, QN_ERR_NOMEM, "tp cuda: out of memory");
    }
    tp->n = n_ranks, tp->m = m, tp->p = *p;
    tp->tp_size = pl->tp_size, tp->first_rank = pl->first_rank;
    /* every process makes one (only rank 0's is used): fails fast without NCCL, before any bootstrap wait */
    if ((st = qn_tp_nccl_get_unique_id(&tp->id)) != QN_OK) {
        qn_tp_cuda_destroy(tp);
        return qn_error_set(err, st, "tp cuda: %s", st == QN_ERR_UNSUPPORTED ? "this build has no NCCL"
                                                                             : "ncclGetUniqueId failed (no GPU?)");
    }
    if (n_ranks < pl->tp_size) {
        /* rank 0's VOCAB slice is the padded size every rank's all-gather block has */
        int64_t v0 = 0, v1 = 0;
        if ((st = qn_tp_model_vocab_range(m, pl->tp_size, 0, &v0, &v1, err)) == QN_OK) tp->vocab_pad = v1 - v0;
        if (st == QN_OK)
            st = qn_tp_bootstrap_exchange_local(pl->master, pl->first_rank, n_ranks, pl->tp_size, &tp->id,
                                                pl->timeout_ms > 0 ? pl->timeout_ms : 300000, err);
        if (st != QN_OK) {
            qn_tp_cuda_destroy(tp);
            return st;
        }
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
    if (n_ranks < pl->tp_size)
        snprintf(tp->name, sizeof tp->name, "%s x %d (ranks %d..%d of %d), NCCL", qn_llama_cuda_device_name(tp->ranks[0].f),
                 n_ranks, pl->first_rank, pl->first_rank + n_ranks - 1, pl->tp_size);
    else
        snprintf(tp->name, sizeof tp->name, "%s x %d, NCCL", qn_llama_cuda_device_name(tp->ranks[0].f), n_ranks);
    *out = tp;
    return QN_OK;
}

static void rank_free(void *ctx, int r) {
    qn_tp_cuda *tp = ctx;
    cuda_rank *k = &tp->ranks[r];
    gather_free(k);
    qn_llama_cuda_destroy(k->f);
    qn_tp_comm_destroy(k->comm);
    qn_tp_model_shard_destroy(k->shard);
    k->f = NULL, k->comm = NULL, k->shard = NULL, k->send_d = k->recv_d = k->recv_h = NULL, k->gstream = NULL;
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

int qn_tp_cuda_n_ranks(const qn_tp_cuda *tp) { return tp->tp_size; }

double qn_tp_cuda_allreduce_s(const qn_tp_cuda *tp, uint64_t *n_calls) {
    return qn_llama_cuda_allreduce_s(tp->ranks[0].f, n_calls);
}
const char *qn_tp_cuda_name(const qn_tp_cuda *tp) { return tp->name; }
