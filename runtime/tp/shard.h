/* shard.h — tensor-parallel shard rules (Megatron/vLLM): which rows and columns of each weight a rank
 * holds, and which attention / KV heads. Pure functions of shapes and format geometry: no I/O, no
 * memory, no threads. weights.c applies them when it uploads a model; tests check them per model.
 * Owns: the split rules and their error messages. Not: the byte slicing of packed data (the loader),
 * the collectives (comm.h).
 *
 * Orientation is ggml's: a weight has n_rows output features (ne[1]) of n_cols input features (ne[0]);
 * y[n_rows] = W · x[n_cols]. Quantization blocks and scale groups run along the input (cols). */
#ifndef QN_TP_SHARD_H
#define QN_TP_SHARD_H

#include <stdbool.h>
#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qn_tp_split {
    QN_TP_SPLIT_COLUMN = 0, /* column-parallel: output rows split (wq, wk, wv, gate, up); no comm after */
    QN_TP_SPLIT_ROW,        /* row-parallel: input cols split (wo, down); all-reduce of the partial sums */
    QN_TP_SPLIT_VOCAB,      /* vocab rows split into equal padded shards (token_embd, output) */
    QN_TP_SPLIT_REPLICATE,  /* every rank holds the whole tensor (norms, row-parallel biases) */
    QN_TP_SPLIT_COUNT
} qn_tp_split;

/* The geometry a split must respect. Fill with a qn_tp_geom_* helper, or by hand for a new family. */
typedef struct qn_tp_weight_geom {
    const char *name;   /* tensor name, quoted in error messages; may be NULL */
    int64_t n_rows;     /* output features (vocab for embeddings) */
    int64_t n_cols;     /* input features */
    int32_t row_align;  /* a shard holds a multiple of this many rows: 1, or 32/bits where zeros/weights
                         * pack several outputs per int32 (GPTQ qzeros, AWQ qweight/qzeros/ 8 per int32) */
    int32_t col_align;  /* a shard holds a multiple of this many cols: GGUF block_elems (32, 256);
                         * GPTQ qweight packing along input (32/bits; 32 for 3-bit); NF4 blocksize */
    int32_t group_size; /* scale group along cols (GPTQ/AWQ); 0 = none beyond col_align */
    bool act_order;     /* GPTQ desc_act: g_idx[n_cols] maps each input col to an arbitrary group */
    int32_t flat_block; /* NF4: absmax blocks run over the row-major flattened tensor; 0 = not so */
} qn_tp_weight_geom;

/* One rank's part of one weight: half-open ranges of the full tensor. */
typedef struct qn_tp_shard {
    int64_t row_begin, row_end;
    int64_t col_begin, col_end;
    /* Rows every rank allocates: == row_end-row_begin except VOCAB, where shards are padded to an
     * equal size (padding rows: zero embeddings, logits ignored) so the LM head all-gather is uniform. */
    int64_t rows_padded;
    /* Scale/zero groups (along cols) this rank keeps, [group_begin, group_end); 0..0 when group_size
     * is 0. ROW without act-order: its own groups. ROW with act-order and every other split: all. */
    int64_t group_begin, group_end;
} qn_tp_shard;

/* --- geometry of each weight family --- */
/* GGUF (and plain f32/f16/bf16 with block_elems 1): rows independent, blocks of block_elems along cols. */
qn_tp_weight_geom qn_tp_geom_gguf(const char *name, int64_t n_rows, int64_t n_cols, int32_t block_elems);
/* GPTQ, bits in {2,3,4,8}: qweight packs along input, qzeros along output; group_size -1/0 = one group. */
qn_tp_weight_geom qn_tp_geom_gptq(const char *name, int64_t n_rows, int64_t n_cols, int32_t bits,
                                  int32_t group_size, bool act_order);
/* AWQ 4-bit GEMM layout: qweight/qzeros pack 8 outputs per int32; scale groups along input. */
qn_tp_weight_geom qn_tp_geom_awq(const char *name, int64_t n_rows, int64_t n_cols, int32_t group_size);
/* bitsandbytes NF4: absmax per `blocksize` elements of the flattened tensor. With double quant the
 * loader expands the nested absmax to f32 first, so only blocksize constrains the split. */
qn_tp_weight_geom qn_tp_geom_nf4(const char *name, int64_t n_rows, int64_t n_cols, int32_t blocksize);

/* --- rules --- */
/* Rank `rank` of tp_size: its shard of g under `split`. QN_ERR_SHAPE with a message naming the tensor
 * when the shape cannot be split tp_size ways; QN_ERR_INVALID_ARG for out-of-contract arguments.
 *   COLUMN:    n_rows % (tp_size*row_align) == 0 (NF4: also each shard starts on a flat block).
 *   ROW:       n_cols % (tp_size*lcm(col_align, group_size)) == 0 so no block or group straddles two
 *              ranks. Act-order: groups are scattered over the cols by g_idx, so only col_align binds;
 *              qweight and g_idx are split by col, scales/zeros are kept whole on every rank.
 *   VOCAB:     rows_padded = ceil(n_rows / tp_size) rounded up to row_align; the last ranks may hold
 *              fewer real rows (never an error for shape).
 *   REPLICATE: the whole tensor. */
qn_status qn_tp_shard_weight(const qn_tp_weight_geom *g, qn_tp_split split, int tp_size, int rank,
                             qn_tp_shard *out, qn_error *err);

/* Attention heads of one rank. Q heads are split evenly (n_head % tp_size == 0). KV heads are split
 * when n_kv_head >= tp_size (n_kv_head % tp_size == 0), else replicated: tp_size % n_kv_head == 0,
 * each kv head lives on kv_replicas = tp_size / n_kv_head consecutive ranks and rank r holds kv head
 * r / kv_replicas, the one its q heads attend to (GQA group of n_head / n_kv_head q heads). */
typedef struct qn_tp_heads {
    int32_t head_begin, n_head_local;       /* global q heads [head_begin, head_begin + n_head_local) */
    int32_t kv_head_begin, n_kv_head_local; /* global kv heads held (1 when replicated) */
    int32_t kv_replicas;                    /* ranks holding each kv head: 1 = split, > 1 = replicated */
} qn_tp_heads;
qn_status qn_tp_split_heads(int32_t n_head, int32_t n_kv_head, int tp_size, int rank, qn_tp_heads *out,
                            qn_error *err);

const char *qn_tp_split_name(qn_tp_split s);

#ifdef __cplusplus
}
#endif
#endif /* QN_TP_SHARD_H */
