/* batch.h — flattens one step's decisions (qn_sched_output) into the host arrays the forward pass
 * reads: token ids, positions, KV slot mapping, query offsets, context lengths, block tables and
 * the rows whose logits are sampled. Owns: those arrays (grown as needed, reused across steps).
 * Does not own: device copies of them (kv/kv_cache and exec/ upload), the requests or the pool.
 * Rows are in entry order, each entry's tokens contiguous; cancelled entries are skipped. */
#ifndef QN_SCHED_BATCH_H
#define QN_SCHED_BATCH_H

#include <stdint.h>

#include "quern.h"
#include "sched/scheduler.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Block-table entries past a sequence's ceil(context_len / block_size) blocks. Never a valid id, so
 * a kernel that reads past context_lens faults in testing instead of reading another sequence. */
#define QN_BATCH_BLOCK_PAD (-1)

typedef struct qn_batch {
    int32_t n_tokens;           /* token rows this step (sum of query lengths) */
    int32_t n_seqs;             /* sequences this step */
    int32_t n_logits;           /* rows whose logits are sampled */
    int32_t n_copies;           /* copy-on-write block copies, before any KV write */
    int32_t max_blocks_per_seq; /* row stride of block_tables */
    int32_t max_query_len;      /* max over seqs of cu_seqlens_q[i+1] - cu_seqlens_q[i] */
    int32_t max_context_len;    /* max over seqs of context_lens[i] */
    int32_t block_size;

    int32_t *token_ids;    /* [n_tokens] token id of each row */
    int32_t *positions;    /* [n_tokens] its position in its sequence (RoPE, causal mask) */
    int32_t *seq_idx;      /* [n_tokens] its sequence, 0..n_seqs-1 */
    int32_t *slot_mapping; /* [n_tokens] KV slot to write: block_table[pos / bs] * bs + pos % bs */
    int32_t *cu_seqlens_q; /* [n_seqs + 1] first row of sequence i; cu_seqlens_q[n_seqs] == n_tokens */
    int32_t *context_lens; /* [n_seqs] tokens in KV once this step's rows are written (start + query len) */
    int32_t *block_tables; /* [n_seqs, max_blocks_per_seq] row-major block ids, QN_BATCH_BLOCK_PAD after
                              ceil(context_lens[i] / bs) */
    int32_t *seq_entry;    /* [n_seqs] index of sequence i in qn_sched_output.entries */
    int32_t *logits_rows;  /* [n_logits] rows to compute logits for, ascending: the last row of each
                              sequence whose entry needs_sample (decode or completed prefill) */
    int32_t *logits_entry; /* [n_logits] entry index of each logits row: where to put the sampled token
                              for qn_sched_update_after_step */
    int32_t *copy_src;     /* [n_copies] source block of each copy */
    int32_t *copy_dst;     /* [n_copies] destination block */

    int32_t tok_cap, seq_cap, table_cap, copy_cap; /* allocated lengths (internal) */
} qn_batch;

/* --- lifecycle --- */
void qn_batch_init(qn_batch *b);
void qn_batch_free(qn_batch *b);

/* --- build --- */
/* Fills b from out. max_blocks_per_seq: block_tables row stride, or 0 for the step's largest table
 * (a fixed stride, ceil(max_model_len / bs), keeps CUDA-graph shapes stable). QN_ERR_SHAPE if a
 * table is longer than a non-zero max_blocks_per_seq. */
qn_status qn_batch_build(qn_batch *b, const qn_sched_output *out, int32_t block_size, int32_t max_blocks_per_seq);

#ifdef __cplusplus
}
#endif
#endif /* QN_SCHED_BATCH_H */
