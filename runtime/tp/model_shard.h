/* model_shard.h — one tensor-parallel rank's view of a loaded model: the weights of rank r of N cut by
 * the rules of tp/shard.h, as a qn_model whose config holds the rank's local head and FFN counts, so the
 * ordinary forward pass (model/llama_cpu.h) runs the rank unchanged.
 *   column-parallel (views): wq, wk, wv, ffn_gate, ffn_up and the q/k/v biases, by head / n_ff rows;
 *     kv heads replicated when n_head_kv < N (rank r keeps the kv head its q heads attend to);
 *   row-parallel (copied): attn_output, ffn_down, input cols of every row re-strided into an owned buffer
 *     (a GGUF row slice is a byte sub-range of each row; lutq weights are re-carved, groups cut at the edge
 *     keep their scale and zero, act-order perm follows its columns);
 *   vocab-parallel LM head (view): output rows [vocab_begin, vocab_end); logits land in those columns;
 *   vocab-parallel embedding (view): token_embd rows [vocab_begin, vocab_end), the LM head's range, so a
 *     tied model's output and tok_embd stay the same view (one device copy per rank); the forward gives
 *     other tokens zero rows and one all-reduce makes the full embeddings (llama_cpu.h, llama_cuda.h);
 *   replicated: norms, rope_freqs, vocab, chat template.
 * Owns: the layer array, the copied row-parallel weights, lutq headers. Borrows everything else from the
 * full model, which must outlive the shard. */
#ifndef QN_TP_MODEL_SHARD_H
#define QN_TP_MODEL_SHARD_H

#include <stdint.h>

#include "model/model.h"
#include "tp/shard.h"

typedef struct qn_tp_model_shard {
    /* The rank's model. cfg: n_head, n_head_kv and n_ff are the local counts; n_embd, n_vocab and the
     * rest are the full model's. Never pass it to qn_model_free (qn_tp_model_shard_destroy frees it). */
    qn_model m;
    int tp_size, rank;
    qn_tp_heads heads;                 /* global q / kv heads of this rank */
    int64_t ff_begin, ff_end;          /* global n_ff rows of gate/up (= input cols of down) */
    int64_t vocab_begin, vocab_end;    /* global LM-head and embedding rows = logits columns this rank writes */
    void **owned;                      /* [n_owned] buffers freed with the shard */
    int n_owned;
} qn_tp_model_shard;

/* --- lifecycle --- */
/* Rank `rank` of tp_size. QN_ERR_SHAPE naming the tensor (or the head counts) and the numbers when the
 * model cannot be split tp_size ways; tp_size 1 gives views of every weight (nothing copied). */
qn_status qn_tp_model_shard_create(const qn_model *full, int tp_size, int rank, qn_tp_model_shard **out,
                                   qn_error *err);
void qn_tp_model_shard_destroy(qn_tp_model_shard *s); /* NULL is a no-op */

/* --- queries --- */
/* QN_OK when every rank of tp_size can be built (the shape checks of create, nothing allocated). */
qn_status qn_tp_model_check(const qn_model *full, int tp_size, qn_error *err);
/* The vocab rows [begin, end) rank `rank` of tp_size holds (LM head and embedding), without building it. */
qn_status qn_tp_model_vocab_range(const qn_model *full, int tp_size, int rank, int64_t *begin, int64_t *end,
                                  qn_error *err);

#endif
