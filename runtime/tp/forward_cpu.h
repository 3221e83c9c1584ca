/* forward_cpu.h — the Llama forward pass run tensor-parallel on the CPU: N ranks, each a qn_llama_cpu over
 * its shard of the model (tp/model_shard.h) with its own thread pool and its own KV cache of its kv heads,
 * joined by the in-process communicator (tp/comm.h) that sums the vocab-parallel embedding rows once per
 * step and the o and down partial outputs of every layer. Same step contract as qn_llama_cpu_forward: a qn_fwd_batch in, logits [n_out][n_vocab] out.
 * Owns: the rank shards, forwards, thread pools, KV caches, communicators and the N-1 rank threads (rank 0
 * runs on the caller's thread). Borrows the model and the kernel table (both must outlive it).
 * Block ids are shared: one block table addresses the same block in every rank's cache, so the caller's
 * block pool and scheduler do not change. One step at a time, from one thread. */
#ifndef QN_TP_FORWARD_CPU_H
#define QN_TP_FORWARD_CPU_H

#include <stdint.h>

#include "kernels/cpu/cpu_kernels.h"
#include "model/forward.h"
#include "model/model.h"

typedef struct qn_tp_cpu qn_tp_cpu;

/* All-reduce cost as rank 0 sees it (its wait for slower ranks included), since create or the last reset. */
typedef struct qn_tp_cpu_stats {
    double allreduce_s;      /* seconds inside the embedding and o/down all-reduces */
    uint64_t n_allreduce;    /* calls: 1 + 2 per layer per step when n_ranks > 1 */
    uint64_t allreduce_bytes;/* f32 payload per rank, summed over calls */
    uint64_t n_steps;        /* forward steps run */
} qn_tp_cpu_stats;

/* --- lifecycle --- */
/* n_ranks >= 1 (1 runs the plain forward: bit-identical to qn_llama_cpu_forward); threads_per_rank >= 1 is
 * the size of each rank's pool (on a 2-core machine: 1 for N >= 2). max_tokens / max_ctx as for
 * qn_llama_cpu_create; each rank allocates a KV cache of n_blocks blocks of block_size tokens holding
 * its qn_tp_cpu_kv_heads(tp) kv heads. QN_ERR_SHAPE naming the tensor or head count when the model cannot
 * be split n_ranks ways. */
qn_status qn_tp_cpu_create(const qn_model *m, const qn_cpu_kernels *kern, int n_ranks, int threads_per_rank,
                           int32_t max_tokens, int32_t max_ctx, int32_t block_size, int32_t n_blocks,
                           qn_tp_cpu **out, qn_error *err);
void qn_tp_cpu_destroy(qn_tp_cpu *tp); /* NULL is a no-op */

/* --- use --- */
/* One step on every rank: K/V written into each rank's cache at batch->slot_mapping, logits of
 * batch->out_rows into logits [n_out][n_vocab] (each rank writes its vocab columns). Errors are the first
 * failing rank's. */
qn_status qn_tp_cpu_forward(qn_tp_cpu *tp, const qn_fwd_batch *batch, float *logits, qn_error *err);
/* Copy-on-write of KV block src to dst, in every layer of every rank's cache. */
void qn_tp_cpu_copy_block(qn_tp_cpu *tp, int32_t src, int32_t dst);

/* --- queries --- */
int qn_tp_cpu_n_ranks(const qn_tp_cpu *tp);
int32_t qn_tp_cpu_kv_heads(const qn_tp_cpu *tp);   /* kv heads in each rank's cache */
/* Host bytes of one rank's KV cache per block (K and V, all layers): size n_blocks by this when a byte
 * budget is per rank. */
uint64_t qn_tp_cpu_kv_bytes_per_block(const qn_model *m, int n_ranks, int32_t block_size);
void qn_tp_cpu_get_stats(const qn_tp_cpu *tp, qn_tp_cpu_stats *out);
void qn_tp_cpu_reset_stats(qn_tp_cpu *tp);

#endif
