/* forward_cuda.h — the Llama forward pass tensor-parallel over N GPUs of one host: rank r drives GPU
 * base_device + r from its own thread (tp/rank_pool.h) with a qn_llama_cuda over its shard of the model
 * (tp/model_shard.h: column-parallel q/k/v/gate/up, row-parallel o/down, vocab-parallel LM head, kv heads
 * split or replicated) and its own KV cache of its kv heads; NCCL all-reduces the o and down partial sums
 * of every layer on each rank's stream (captured into the decode graphs) and each rank copies its logits
 * columns to the host. Same step contract as qn_llama_cuda_forward.
 * Owns: the shards, the per-GPU forwards, the NCCL communicators and the rank threads. Borrows the model.
 * Block ids are shared across ranks (one block table for all). N = 1 runs the same NCCL path on one GPU. */
#ifndef QN_TP_FORWARD_CUDA_H
#define QN_TP_FORWARD_CUDA_H

#include <stdint.h>

#include "model/forward.h"
#include "model/llama_cuda.h"
#include "model/model.h"

typedef struct qn_tp_cuda qn_tp_cuda;

/* Where this process's ranks sit in a group that may span processes and hosts (`--tp-master host:port
 * --tp-rank R --tp-local L`, docs/tensor_parallel.md §4). This process runs global ranks first_rank ..
 * first_rank + n_local - 1 on GPUs p->device + 0 .. n_local - 1; the process holding rank 0 creates the
 * NCCL id and serves it on master (tp/bootstrap.h), the others fetch it. Every process must run the same
 * steps: after each step the ranks all-gather their logits columns so that every process holds the full
 * [n_out][n_vocab] rows (and samples the same tokens from the same seed). */
typedef struct qn_tp_cuda_placement {
    int tp_size;          /* ranks in the whole group */
    int first_rank;       /* this process's first global rank */
    int n_local;          /* ranks (GPUs) in this process; tp_size: one process holds the group */
    const char *master;   /* "host:port"; required when n_local < tp_size */
    int timeout_ms;       /* bootstrap deadline (the other processes may start later) */
} qn_tp_cuda_placement;

/* --- lifecycle --- */
/* p: as for one GPU (p->device is the first GPU: rank r uses p->device + r). QN_ERR_SHAPE (naming the
 * tensor or head count) when the model cannot be split n_ranks ways, QN_ERR_NO_DEVICE when fewer than
 * n_ranks GPUs are visible, QN_ERR_UNSUPPORTED without NCCL. */
qn_status qn_tp_cuda_create(const qn_model *m, const qn_llama_cuda_params *p, int n_ranks, qn_tp_cuda **out,
                            qn_error *err);
/* The same over a placement (n_ranks = pl->tp_size for the shape checks; QN_ERR_INVALID_ARG when the
 * placement is inconsistent, QN_ERR_IO / QN_ERR_INVALID_ARG from the bootstrap). */
qn_status qn_tp_cuda_create_placed(const qn_model *m, const qn_llama_cuda_params *p, const qn_tp_cuda_placement *pl,
                                   qn_tp_cuda **out, qn_error *err);
void qn_tp_cuda_destroy(qn_tp_cuda *tp); /* NULL is a no-op */

/* --- use --- */
/* logits: host [n_out][n_vocab]; each rank writes its vocab columns. */
qn_status qn_tp_cuda_forward(qn_tp_cuda *tp, const qn_fwd_batch *batch, float *logits, qn_error *err);
qn_status qn_tp_cuda_copy_block(qn_tp_cuda *tp, int32_t src, int32_t dst, qn_error *err);
int qn_tp_cuda_n_ranks(const qn_tp_cuda *tp); /* the whole group's */
/* Seconds rank 0 of this process spent in its all-reduces (cudaEvent pairs around each one on the step
 * stream, graph replays included; a rank's wait for slower ranks counts), and the calls, since create. */
double qn_tp_cuda_allreduce_s(const qn_tp_cuda *tp, uint64_t *n_calls);
/* "NVIDIA H200 (sm_90, 132 SMs) x 2, NCCL" */
const char *qn_tp_cuda_name(const qn_tp_cuda *tp);

#endif
