/* forward.h — the input of one forward step, shared by the CPU and CUDA paths.
 * A step runs n_tokens tokens from n_seqs sequences (prefill chunks and decodes mixed). Tokens of
 * one sequence are contiguous and in position order. The KV cache is paged: the token at position
 * p of sequence s is stored in slot slot_mapping[t] and read back through block_tables.
 * All arrays are host memory owned by the caller (runtime/sched/batch.c builds them). */
#ifndef QN_FORWARD_H
#define QN_FORWARD_H

#include <stdint.h>

#include "config/model_config.h"
#include "quern.h"

typedef struct qn_fwd_batch {
    int32_t n_tokens;
    const int32_t *tokens;        /* [n_tokens] token ids */
    const int32_t *positions;     /* [n_tokens] position of each token in its sequence */
    const int32_t *seq_idx;       /* [n_tokens] index of the token's sequence in [0, n_seqs) */
    const int32_t *slot_mapping;  /* [n_tokens] KV slot to write (block * block_size + offset) */
    int32_t n_seqs;
    const int32_t *block_tables;  /* [n_seqs][max_blocks_per_seq] block ids (padding unused) */
    int32_t max_blocks_per_seq;
    int32_t n_out;
    const int32_t *out_rows;      /* [n_out] token rows whose logits are wanted, ascending */
} qn_fwd_batch;

/* Limits a backend checks a batch against before touching memory. */
typedef struct qn_fwd_limits {
    int32_t max_tokens;    /* tokens per step */
    int32_t max_seqs;      /* sequences per step */
    int32_t max_ctx;       /* positions per sequence */
    int64_t n_slots;       /* KV slots (n_blocks * block_size) */
    int32_t block_size;
} qn_fwd_limits;

/* QN_ERR_INVALID_ARG / QN_ERR_CONTEXT with the offending token and value named. */
qn_status qn_fwd_batch_check(const qn_fwd_batch *b, const qn_model_config *c, const qn_fwd_limits *lim,
                             qn_error *err);

#endif
