/* rank_pool.h — the threads of a tensor-parallel group in one process: rank 0 runs on the caller's thread,
 * ranks 1..N-1 on their own threads, and qn_tp_rank_pool_run(fn, ctx) runs fn(ctx, r) on every rank and
 * returns when all have finished. Collective set-up (an NCCL communicator joins only when every rank calls
 * it at once) and each forward step go through it.
 * Owns: the N-1 threads and the hand-off state. Borrows ctx for the duration of a run. */
#ifndef QN_TP_RANK_POOL_H
#define QN_TP_RANK_POOL_H

#include "quern.h"

typedef void (*qn_tp_rank_fn)(void *ctx, int rank);
typedef struct qn_tp_rank_pool qn_tp_rank_pool;

/* --- lifecycle --- */
qn_status qn_tp_rank_pool_create(int n_ranks, qn_tp_rank_pool **out, qn_error *err);
void qn_tp_rank_pool_destroy(qn_tp_rank_pool *p); /* NULL is a no-op; joins the threads */

/* fn(ctx, r) for r = 0..n-1 concurrently (r = 0 on the caller's thread); returns when all are done. */
void qn_tp_rank_pool_run(qn_tp_rank_pool *p, qn_tp_rank_fn fn, void *ctx);
int qn_tp_rank_pool_size(const qn_tp_rank_pool *p);

#endif
