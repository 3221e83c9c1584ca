/* forward.c — batch validation shared by the CPU and CUDA forward passes (model/forward.h). */
#include "model/forward.h"

qn_status qn_fwd_batch_check(const qn_fwd_batch *b, const qn_model_config *c, const qn_fwd_limits *lim,
                             qn_error *err) {
    if (b->n_tokens < 1 || b->n_tokens > lim->max_tokens)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "forward: n_tokens %d not in [1, %d]", b->n_tokens, lim->max_tokens);
    if (b->n_seqs < 1 || b->n_seqs > lim->max_seqs)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "forward: n_seqs %d not in [1, %d]", b->n_seqs, lim->max_seqs);
    if (b->n_out < 0 || b->n_out > b->n_tokens)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "forward: n_out %d not in [0, %d]", b->n_out, b->n_tokens);
    for (int32_t t = 0; t < b->n_tokens; t++) {
        if (b->tokens[t] < 0 || b->tokens[t] >= c->n_vocab)
            return qn_error_set(err, QN_ERR_INVALID_ARG, "forward: token id %d out of range [0, %d)", b->tokens[t], c->n_vocab);
        if (b->positions[t] < 0 || b->positions[t] >= lim->max_ctx)
            return qn_error_set(err, QN_ERR_CONTEXT, "forward: position %d outside context %d", b->positions[t], lim->max_ctx);
        if (b->slot_mapping[t] < 0 || b->slot_mapping[t] >= lim->n_slots || b->seq_idx[t] < 0 || b->seq_idx[t] >= b->n_seqs)
            return qn_error_set(err, QN_ERR_INVALID_ARG, "forward: token %d: bad slot or sequence index", t);
        if (b->positions[t] / lim->block_size >= b->max_blocks_per_seq)
            return qn_error_set(err, QN_ERR_INVALID_ARG, "forward: token %d: position beyond block table", t);
        /* the last token of a sequence (tokens of one sequence are contiguous, positions ascending)
         * reads blocks 0 .. pos / block_size of its table: each must be a real block */
        if (t + 1 < b->n_tokens && b->seq_idx[t + 1] == b->seq_idx[t]) continue;
        const int32_t *bt = b->block_tables + (int64_t)b->seq_idx[t] * b->max_blocks_per_seq;
        for (int32_t i = 0; i <= b->positions[t] / lim->block_size; i++)
            if (bt[i] < 0 || (int64_t)bt[i] * lim->block_size >= lim->n_slots)
                return qn_error_set(err, QN_ERR_INVALID_ARG, "forward: sequence %d: block table entry %d = %d out of range",
                                    b->seq_idx[t], i, bt[i]);
    }
    for (int32_t i = 0; i < b->n_out; i++)
        if (b->out_rows[i] < 0 || b->out_rows[i] >= b->n_tokens || (i > 0 && b->out_rows[i] <= b->out_rows[i - 1]))
            return qn_error_set(err, QN_ERR_INVALID_ARG, "forward: out row %d out of range or not ascending", b->out_rows[i]);
    return QN_OK;
}
