/* shard.c — the tensor-parallel split rules of shard.h: even splits on block, pack and group
 * boundaries, padded vocab shards, and the Q/KV head assignment (KV replicated when n_kv < tp). */
#include "tp/shard.h"

#include <stddef.h>

static const char *const QN_TP_SPLIT_NAMES[QN_TP_SPLIT_COUNT] = {
    [QN_TP_SPLIT_COLUMN] = "column",
    [QN_TP_SPLIT_ROW] = "row",
    [QN_TP_SPLIT_VOCAB] = "vocab",
    [QN_TP_SPLIT_REPLICATE] = "replicate",
};

const char *qn_tp_split_name(qn_tp_split s) {
    return (s >= 0 && s < QN_TP_SPLIT_COUNT) ? QN_TP_SPLIT_NAMES[s] : "?";
}

/* ---------------------------------------------------------------- geometry per family */

qn_tp_weight_geom qn_tp_geom_gguf(const char *name, int64_t n_rows, int64_t n_cols, int32_t block_elems) {
    return (qn_tp_weight_geom){.name = name, .n_rows = n_rows, .n_cols = n_cols, .row_align = 1,
                               .col_align = block_elems > 0 ? block_elems : 1};
}

qn_tp_weight_geom qn_tp_geom_gptq(const char *name, int64_t n_rows, int64_t n_cols, int32_t bits,
                                  int32_t group_size, bool act_order) {
    /* 2/4/8-bit pack 32/bits values per int32; 3-bit packs 32 values into 3 int32 words. qweight
     * packs along input ([n_cols/pack, n_rows]), qzeros along output ([n_groups, n_rows/pack]). */
    const int32_t pack = (bits == 3) ? 32 : (bits > 0 && bits <= 32 ? 32 / bits : 1);
    return (qn_tp_weight_geom){.name = name, .n_rows = n_rows, .n_cols = n_cols, .row_align = pack,
                               .col_align = pack, .group_size = group_size > 0 ? group_size : 0,
                               .act_order = act_order};
}

qn_tp_weight_geom qn_tp_geom_awq(const char *name, int64_t n_rows, int64_t n_cols, int32_t group_size) {
    /* GEMM layout: qweight [n_cols, n_rows/8], qzeros [n_groups, n_rows/8], scales [n_groups, n_rows] */
    return (qn_tp_weight_geom){.name = name, .n_rows = n_rows, .n_cols = n_cols, .row_align = 8,
                               .col_align = 1, .group_size = group_size > 0 ? group_size : 0};
}

qn_tp_weight_geom qn_tp_geom_nf4(const char *name, int64_t n_rows, int64_t n_cols, int32_t blocksize) {
    const int32_t bs = blocksize > 0 ? blocksize : 64;
    /* 2 codes per byte: a shard must also start on a whole byte, which any even blocksize gives */
    return (qn_tp_weight_geom){.name = name, .n_rows = n_rows, .n_cols = n_cols, .row_align = 1,
                               .col_align = bs, .flat_block = bs};
}

/* ---------------------------------------------------------------- rules */

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        const int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int64_t lcm64(int64_t a, int64_t b) { return a / gcd64(a, b) * b; }

#define TNAME(g) ((g)->name ? (g)->name : "(unnamed)")

qn_status qn_tp_shard_weight(const qn_tp_weight_geom *g, qn_tp_split split, int tp_size, int rank,
                             qn_tp_shard *out, qn_error *err) {
    if (!g || !out || tp_size < 1 || rank < 0 || rank >= tp_size || split < 0 || split >= QN_TP_SPLIT_COUNT)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "tp shard: bad arguments (tp_size %d, rank %d)", tp_size,
                            rank);
    if (g->n_rows <= 0 || g->n_cols <= 0 || g->row_align < 1 || g->col_align < 1 || g->group_size < 0 ||
        g->flat_block < 0)
        return qn_error_set(err, QN_ERR_INVALID_ARG,
                            "tp shard: tensor '%s': bad geometry (%lld x %lld, row_align %d, col_align %d, "
                            "group %d)",
                            TNAME(g), (long long)g->n_rows, (long long)g->n_cols, g->row_align, g->col_align,
                            g->group_size);
    if (g->group_size > 0 && g->n_cols % g->group_size != 0)
        return qn_error_set(err, QN_ERR_SHAPE, "tp shard: tensor '%s': %lld input cols are not whole groups of %d",
                            TNAME(g), (long long)g->n_cols, g->group_size);

    const int64_t n_groups = g->group_size > 0 ? g->n_cols / g->group_size : 0;
    const int64_t tp = tp_size, r = rank;
    *out = (qn_tp_shard){.row_begin = 0, .row_end = g->n_rows, .col_begin = 0, .col_end = g->n_cols,
                         .rows_padded = g->n_rows, .group_begin = 0, .group_end = n_groups};

    switch (split) {
    case QN_TP_SPLIT_REPLICATE:
        return QN_OK;

    case QN_TP_SPLIT_COLUMN: {
        const int64_t unit = tp * g->row_align;
        if (g->n_rows % unit != 0)
            return qn_error_set(err, QN_ERR_SHAPE,
                                "tp shard: tensor '%s': column split of %lld output rows %d ways needs a "
                                "multiple of %d x %d rows",
                                TNAME(g), (long long)g->n_rows, tp_size, tp_size, g->row_align);
        const int64_t rows = g->n_rows / tp;
        if (g->flat_block > 0 && (rows * g->n_cols) % g->flat_block != 0)
            return qn_error_set(err, QN_ERR_SHAPE,
                                "tp shard: tensor '%s': column split %d ways cuts a %d-element absmax block "
                                "(%lld rows x %lld cols per rank)",
                                TNAME(g), tp_size, g->flat_block, (long long)rows, (long long)g->n_cols);
        out->row_begin = r * rows;
        out->row_end = (r + 1) * rows;
        out->rows_padded = rows;
        return QN_OK;
    }

    case QN_TP_SPLIT_ROW: {
        /* act-order: g_idx scatters each group over the whole input, so a col range holds pieces of
         * many groups; every rank keeps all scales/zeros and indexes them through its g_idx slice. */
        const int64_t unit_cols = (g->group_size > 0 && !g->act_order) ? lcm64(g->col_align, g->group_size)
                                                                       : g->col_align;
        if (g->flat_block > 0 && g->n_cols % g->flat_block != 0)
            return qn_error_set(err, QN_ERR_SHAPE,
                                "tp shard: tensor '%s': row split needs absmax blocks inside rows, but %lld "
                                "input cols are not a multiple of %d",
                                TNAME(g), (long long)g->n_cols, g->flat_block);
        if (g->n_cols % (tp * unit_cols) != 0) {
            const char *what = (g->group_size > 0 && !g->act_order && unit_cols == g->group_size)
                                   ? "scale groups of"
                                   : "quant blocks of";
            return qn_error_set(err, QN_ERR_SHAPE,
                                "tp shard: tensor '%s': row split of %lld input cols %d ways needs a multiple "
                                "of %d x %lld cols (%s %lld must not straddle ranks)",
                                TNAME(g), (long long)g->n_cols, tp_size, tp_size, (long long)unit_cols, what,
                                (long long)unit_cols);
        }
        const int64_t cols = g->n_cols / tp;
        out->col_begin = r * cols;
        out->col_end = (r + 1) * cols;
        if (g->group_size > 0 && !g->act_order) {
            out->group_begin = out->col_begin / g->group_size;
            out->group_end = out->col_end / g->group_size;
        }
        return QN_OK;
    }

    case QN_TP_SPLIT_VOCAB: {
        int64_t rows = (g->n_rows + tp - 1) / tp;
        rows = (rows + g->row_align - 1) / g->row_align * g->row_align;
        if (g->flat_block > 0 && (rows * g->n_cols) % g->flat_block != 0)
            return qn_error_set(err, QN_ERR_SHAPE,
                                "tp shard: tensor '%s': vocab split %d ways cuts a %d-element absmax block",
                                TNAME(g), tp_size, g->flat_block);
        const int64_t b = r * rows < g->n_rows ? r * rows : g->n_rows;
        const int64_t e = b + rows < g->n_rows ? b + rows : g->n_rows;
        out->row_begin = b;
        out->row_end = e;
        out->rows_padded = rows;
        return QN_OK;
    }

    default:
        break;
    }
    return qn_error_set(err, QN_ERR_INVALID_ARG, "tp shard: unknown split %d", (int)split);
}

qn_status qn_tp_split_heads(int32_t n_head, int32_t n_kv_head, int tp_size, int rank, qn_tp_heads *out,
                            qn_error *err) {
    if (!out || tp_size < 1 || rank < 0 || rank >= tp_size || n_head < 1 || n_kv_head < 1 ||
        n_kv_head > n_head)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "tp heads: bad arguments (%d heads, %d kv heads, tp %d, rank %d)",
                            n_head, n_kv_head, tp_size, rank);
    if (n_head % n_kv_head != 0)
        return qn_error_set(err, QN_ERR_SHAPE, "tp heads: %d attention heads are not a multiple of %d kv heads",
                            n_head, n_kv_head);
    if (n_head % tp_size != 0)
        return qn_error_set(err, QN_ERR_SHAPE,
                            "tp heads: %d attention heads cannot be split %d ways (tp_size must divide the "
                            "head count)",
                            n_head, tp_size);
    const int32_t hpr = n_head / tp_size;
    out->head_begin = rank * hpr;
    out->n_head_local = hpr;
    if (n_kv_head >= tp_size) {
        if (n_kv_head % tp_size != 0)
            return qn_error_set(err, QN_ERR_SHAPE,
                                "tp heads: %d kv heads cannot be split %d ways (tp_size must divide the kv "
                                "head count, or be a multiple of it)",
                                n_kv_head, tp_size);
        out->n_kv_head_local = n_kv_head / tp_size;
        out->kv_head_begin = rank * out->n_kv_head_local;
        out->kv_replicas = 1;
    } else {
        if (tp_size % n_kv_head != 0)
            return qn_error_set(err, QN_ERR_SHAPE,
                                "tp heads: %d kv heads cannot be replicated over %d ranks (tp_size must be a "
                                "multiple of the kv head count when larger)",
                                n_kv_head, tp_size);
        out->kv_replicas = tp_size / n_kv_head;
        out->n_kv_head_local = 1;
        out->kv_head_begin = rank / out->kv_replicas;
    }
    return QN_OK;
}
