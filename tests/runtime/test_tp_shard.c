/* test_tp_shard.c — tp/shard: split rules on real model shapes (Llama-3-8B, SmolLM2-135M, Qwen2.5-7B)
 * for tp = 1, 2, 4, 8 and every weight family (GGUF Q4_0/Q4_K, GPTQ with and without act-order, AWQ,
 * NF4): shards tile the tensor exactly on block/group boundaries, the heads of a rank attend to the
 * kv heads it holds, and refused shapes fail with QN_ERR_SHAPE and a message naming the tensor.
 * QN_TEST_LABELS: cpu */
#include "harness.h"

#include <stdio.h>
#include <string.h>

#include "tp/shard.h"

typedef struct model_shape {
    const char *name;
    int64_t n_embd, n_ff, n_vocab;
    int32_t n_head, n_kv_head, head_dim;
} model_shape;

static const model_shape LLAMA3_8B = {"Llama-3-8B", 4096, 14336, 128256, 32, 8, 128};
static const model_shape SMOLLM2 = {"SmolLM2-135M", 576, 1536, 49152, 9, 3, 64};
static const model_shape QWEN25_7B = {"Qwen2.5-7B", 3584, 18944, 152064, 28, 4, 128};

typedef enum fam { FAM_F16, FAM_Q4_0, FAM_Q4_K, FAM_GPTQ, FAM_GPTQ_ACT, FAM_AWQ, FAM_NF4, FAM_COUNT } fam;
static const char *const FAM_NAMES[FAM_COUNT] = {"f16", "q4_0", "q4_K", "gptq4-g128", "gptq4-g128-act",
                                                 "awq-g128", "nf4-64"};

static qn_tp_weight_geom geom(fam f, const char *name, int64_t rows, int64_t cols) {
    switch (f) {
    case FAM_F16: return qn_tp_geom_gguf(name, rows, cols, 1);
    case FAM_Q4_0: return qn_tp_geom_gguf(name, rows, cols, 32);
    case FAM_Q4_K: return qn_tp_geom_gguf(name, rows, cols, 256);
    case FAM_GPTQ: return qn_tp_geom_gptq(name, rows, cols, 4, 128, false);
    case FAM_GPTQ_ACT: return qn_tp_geom_gptq(name, rows, cols, 4, 128, true);
    case FAM_AWQ: return qn_tp_geom_awq(name, rows, cols, 128);
    case FAM_NF4: return qn_tp_geom_nf4(name, rows, cols, 64);
    default: break;
    }
    return qn_tp_geom_gguf(name, rows, cols, 1);
}

/* Shards of all ranks: disjoint, contiguous, covering, aligned; returns the first error otherwise. */
static qn_status shard_all(const qn_tp_weight_geom *g, qn_tp_split split, int tp, qn_error *err) {
    int64_t next_row = 0, next_col = 0, next_group = 0, padded = -1;
    for (int r = 0; r < tp; r++) {
        qn_tp_shard s;
        const qn_status st = qn_tp_shard_weight(g, split, tp, r, &s, err);
        if (st != QN_OK) {
            assert_int_equal(r, 0); /* a shape is refused on every rank alike */
            return st;
        }
        const int64_t nr = s.row_end - s.row_begin, nc = s.col_end - s.col_begin;
        switch (split) {
        case QN_TP_SPLIT_COLUMN:
            assert_int_equal(s.row_begin, next_row);
            assert_int_equal(nr % g->row_align, 0);
            assert_int_equal(nc, g->n_cols);
            if (g->flat_block) assert_int_equal((s.row_begin * g->n_cols) % g->flat_block, 0);
            next_row = s.row_end;
            break;
        case QN_TP_SPLIT_ROW:
            assert_int_equal(s.col_begin, next_col);
            assert_int_equal(nc % g->col_align, 0);
            assert_int_equal(nr, g->n_rows);
            if (g->group_size && !g->act_order) { /* own groups, whole */
                assert_int_equal(s.group_begin, next_group);
                assert_int_equal(s.group_begin * g->group_size, s.col_begin);
                assert_int_equal(s.group_end * g->group_size, s.col_end);
                next_group = s.group_end;
            } else if (g->group_size) { /* act-order: every group on every rank */
                assert_int_equal(s.group_begin, 0);
                assert_int_equal(s.group_end, g->n_cols / g->group_size);
            }
            next_col = s.col_end;
            break;
        case QN_TP_SPLIT_VOCAB:
            assert_int_equal(s.row_begin, next_row);
            if (padded < 0) padded = s.rows_padded;
            assert_int_equal(s.rows_padded, padded); /* uniform all-gather */
            assert_true(nr <= s.rows_padded);
            assert_int_equal(s.rows_padded % g->row_align, 0);
            next_row = s.row_end;
            break;
        default:
            assert_int_equal(nr, g->n_rows);
            assert_int_equal(nc, g->n_cols);
        }
    }
    if (split == QN_TP_SPLIT_COLUMN || split == QN_TP_SPLIT_VOCAB) assert_int_equal(next_row, g->n_rows);
    if (split == QN_TP_SPLIT_ROW) assert_int_equal(next_col, g->n_cols);
    if (split == QN_TP_SPLIT_ROW && g->group_size && !g->act_order)
        assert_int_equal(next_group, g->n_cols / g->group_size);
    return QN_OK;
}

/* Heads of every rank: q heads tile [0, n_head); each q head's kv head (GQA) is one this rank holds. */
static qn_status heads_all(const model_shape *m, int tp, qn_error *err) {
    const int32_t group = m->n_head / m->n_kv_head;
    int32_t next = 0;
    for (int r = 0; r < tp; r++) {
        qn_tp_heads h;
        const qn_status st = qn_tp_split_heads(m->n_head, m->n_kv_head, tp, r, &h, err);
        if (st != QN_OK) return st;
        assert_int_equal(h.head_begin, next);
        next += h.n_head_local;
        for (int32_t q = h.head_begin; q < h.head_begin + h.n_head_local; q++) {
            assert_true(q / group >= h.kv_head_begin);
            assert_true(q / group < h.kv_head_begin + h.n_kv_head_local);
        }
        assert_int_equal(h.n_kv_head_local * tp, m->n_kv_head * h.kv_replicas);
    }
    assert_int_equal(next, m->n_head);
    return QN_OK;
}

/* Heads, then every weight of one layer (+ embeddings) of model m under family f and tp. */
static qn_status shard_model(const model_shape *m, fam f, int tp, qn_error *err) {
    const int64_t q = (int64_t)m->n_head * m->head_dim;
    struct { const char *name; int64_t rows, cols; qn_tp_split split; } t[] = {
        {"blk.0.attn_q.weight", q, m->n_embd, QN_TP_SPLIT_COLUMN},
        {"blk.0.attn_output.weight", m->n_embd, q, QN_TP_SPLIT_ROW},
        {"blk.0.ffn_gate.weight", m->n_ff, m->n_embd, QN_TP_SPLIT_COLUMN},
        {"blk.0.ffn_up.weight", m->n_ff, m->n_embd, QN_TP_SPLIT_COLUMN},
        {"blk.0.ffn_down.weight", m->n_embd, m->n_ff, QN_TP_SPLIT_ROW},
        {"blk.0.attn_norm.weight", 1, m->n_embd, QN_TP_SPLIT_REPLICATE},
        {"token_embd.weight", m->n_vocab, m->n_embd, QN_TP_SPLIT_VOCAB},
        {"output.weight", m->n_vocab, m->n_embd, QN_TP_SPLIT_VOCAB},
    };
    qn_tp_heads h; /* heads first: they are the first constraint a model meets */
    qn_status st = qn_tp_split_heads(m->n_head, m->n_kv_head, tp, 0, &h, err);
    if (st != QN_OK) return st;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        const fam ff = t[i].split == QN_TP_SPLIT_REPLICATE ? FAM_F16 : f;
        const qn_tp_weight_geom g = geom(ff, t[i].name, t[i].rows, t[i].cols);
        st = shard_all(&g, t[i].split, tp, err);
        if (st != QN_OK) return st;
    }
    /* K/V: split by kv head when n_kv >= tp; replicated heads are sliced per rank by kv_head_begin */
    if (h.kv_replicas == 1) {
        const qn_tp_weight_geom g = geom(f, "blk.0.attn_k.weight", (int64_t)m->n_kv_head * m->head_dim, m->n_embd);
        st = shard_all(&g, QN_TP_SPLIT_COLUMN, tp, err);
    }
    return st;
}

static void expect_ok(const model_shape *m, fam f, int tp) {
    qn_error err;
    qn_error_clear(&err);
    if (shard_model(m, f, tp, &err) != QN_OK) fail_msg("%s %s tp=%d: %s", m->name, FAM_NAMES[f], tp, err.msg);
}

static void expect_refused(const model_shape *m, fam f, int tp, const char *needle) {
    qn_error err;
    qn_error_clear(&err);
    const qn_status st = shard_model(m, f, tp, &err);
    if (st != QN_ERR_SHAPE) fail_msg("%s %s tp=%d: expected QN_ERR_SHAPE, got %d", m->name, FAM_NAMES[f], tp, st);
    if (!strstr(err.msg, needle)) fail_msg("%s tp=%d: message '%s' lacks '%s'", m->name, tp, err.msg, needle);
    printf("  refused as expected: %s %s tp=%d: %s\n", m->name, FAM_NAMES[f], tp, err.msg);
}

static void expect_heads(const model_shape *m, int tp, qn_status want, int32_t kv_local, int32_t replicas,
                         const char *needle) {
    qn_error err;
    qn_error_clear(&err);
    const qn_status st = heads_all(m, tp, &err);
    if (st != want) fail_msg("%s tp=%d heads: status %d, want %d (%s)", m->name, tp, st, want, err.msg);
    if (st != QN_OK) {
        assert_non_null(strstr(err.msg, needle));
        printf("  heads refused as expected: %s tp=%d: %s\n", m->name, tp, err.msg);
        return;
    }
    qn_tp_heads h;
    assert_int_equal(qn_tp_split_heads(m->n_head, m->n_kv_head, tp, tp - 1, &h, NULL), QN_OK);
    assert_int_equal(h.n_head_local, m->n_head / tp);
    assert_int_equal(h.n_kv_head_local, kv_local);
    assert_int_equal(h.kv_replicas, replicas);
}

/* ---------------------------------------------------------------- models */

static void test_llama3_8b(void **state) {
    (void)state;
    const int tps[] = {1, 2, 4, 8};
    const int32_t kv_local[] = {8, 4, 2, 1};
    for (int i = 0; i < 4; i++) {
        expect_heads(&LLAMA3_8B, tps[i], QN_OK, kv_local[i], 1, NULL);
        for (int f = 0; f < FAM_COUNT; f++) expect_ok(&LLAMA3_8B, (fam)f, tps[i]);
    }
    /* beyond 8 kv heads: replicated, rank r holds kv head r/2 */
    expect_heads(&LLAMA3_8B, 16, QN_OK, 1, 2, NULL);
    qn_tp_heads h;
    assert_int_equal(qn_tp_split_heads(32, 8, 16, 5, &h, NULL), QN_OK);
    assert_int_equal(h.kv_head_begin, 2);
    assert_int_equal(h.head_begin, 10);
    /* vocab 128256 splits evenly 8 ways: 16032 rows each */
    qn_tp_weight_geom g = qn_tp_geom_gguf("output.weight", 128256, 4096, 256);
    qn_tp_shard s;
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_VOCAB, 8, 7, &s, NULL), QN_OK);
    assert_int_equal(s.row_begin, 7 * 16032);
    assert_int_equal(s.rows_padded, 16032);
}

static void test_smollm2(void **state) {
    (void)state;
    /* 9 heads / 3 kv heads: tp must divide 9 -> 1, 3, 9 work; 2, 4, 8 are refused */
    expect_heads(&SMOLLM2, 1, QN_OK, 3, 1, NULL);
    /* 576 cols are neither Q4_K blocks nor groups of 128: such files do not exist, skip those */
    expect_ok(&SMOLLM2, FAM_F16, 1);
    expect_ok(&SMOLLM2, FAM_Q4_0, 1);
    expect_ok(&SMOLLM2, FAM_NF4, 1);
    const int bad[] = {2, 4, 8};
    for (int i = 0; i < 3; i++) {
        expect_heads(&SMOLLM2, bad[i], QN_ERR_SHAPE, 0, 0, "9 attention heads cannot be split");
        expect_refused(&SMOLLM2, FAM_Q4_0, bad[i], "9 attention heads cannot be split");
    }
    expect_heads(&SMOLLM2, 3, QN_OK, 1, 1, NULL);
    expect_ok(&SMOLLM2, FAM_Q4_0, 3);
    expect_ok(&SMOLLM2, FAM_F16, 3);
    expect_ok(&SMOLLM2, FAM_NF4, 3);
    expect_heads(&SMOLLM2, 9, QN_OK, 1, 3, NULL); /* each kv head on 3 ranks */
    /* Q4_K: 576 input cols are not whole 256-blocks even at tp=1 (a format error, not a TP one) */
    qn_error err;
    qn_error_clear(&err);
    qn_tp_weight_geom g = qn_tp_geom_gguf("blk.0.attn_output.weight", 576, 576, 256);
    assert_int_equal(shard_all(&g, QN_TP_SPLIT_ROW, 1, &err), QN_ERR_SHAPE);
    /* GPTQ g64: 576 / 3 = 192 cols = 3 whole groups -> ok at tp=3; at tp=2 with g=96 (6 groups of 96,
     * 288 cols per rank = 3 groups) ok, with g=192 (3 groups) refused; act-order g=192 allowed */
    g = qn_tp_geom_gptq("blk.0.attn_output.weight", 576, 576, 4, 64, false);
    assert_int_equal(shard_all(&g, QN_TP_SPLIT_ROW, 3, NULL), QN_OK);
    g = qn_tp_geom_gptq("blk.0.attn_output.weight", 576, 576, 4, 96, false);
    assert_int_equal(shard_all(&g, QN_TP_SPLIT_ROW, 2, NULL), QN_OK);
    g = qn_tp_geom_gptq("blk.0.attn_output.weight", 576, 576, 4, 192, false);
    qn_error_clear(&err);
    assert_int_equal(shard_all(&g, QN_TP_SPLIT_ROW, 2, &err), QN_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "scale groups of 192"));
    printf("  refused as expected: %s\n", err.msg);
    g.act_order = true;
    assert_int_equal(shard_all(&g, QN_TP_SPLIT_ROW, 2, NULL), QN_OK);
}

static void test_qwen25_7b(void **state) {
    (void)state;
    /* 28 heads / 4 kv heads: tp 1, 2, 4 work (kv 4, 2, 1 per rank); 8 is refused (28 % 8) */
    expect_heads(&QWEN25_7B, 1, QN_OK, 4, 1, NULL);
    expect_heads(&QWEN25_7B, 2, QN_OK, 2, 1, NULL);
    expect_heads(&QWEN25_7B, 4, QN_OK, 1, 1, NULL);
    expect_heads(&QWEN25_7B, 8, QN_ERR_SHAPE, 0, 0, "28 attention heads cannot be split 8 ways");
    expect_heads(&QWEN25_7B, 7, QN_ERR_SHAPE, 0, 0, "4 kv heads cannot be replicated over 7 ranks");
    for (int f = 0; f < FAM_COUNT; f++) {
        expect_ok(&QWEN25_7B, (fam)f, 1);
        expect_ok(&QWEN25_7B, (fam)f, 2);
    }
    /* tp=4: Q4_K refused (3584 input cols of attn_output = 3.5 x (4 x 256)); Q4_0, GPTQ, AWQ, NF4 fine */
    expect_refused(&QWEN25_7B, FAM_Q4_K, 4, "'blk.0.attn_output.weight': row split of 3584 input cols 4 ways");
    expect_ok(&QWEN25_7B, FAM_Q4_0, 4);
    expect_ok(&QWEN25_7B, FAM_GPTQ, 4);
    expect_ok(&QWEN25_7B, FAM_GPTQ_ACT, 4);
    expect_ok(&QWEN25_7B, FAM_AWQ, 4);
    expect_ok(&QWEN25_7B, FAM_NF4, 4);
    /* tp=8 refused by the heads; the down projection alone shows the group rule: 18944 = 148 groups,
     * not 8 x whole groups -> refused; with act-order only the pack (8) binds -> allowed */
    qn_tp_weight_geom g = qn_tp_geom_gptq("blk.0.ffn_down.weight", 3584, 18944, 4, 128, false);
    qn_error err;
    qn_error_clear(&err);
    assert_int_equal(shard_all(&g, QN_TP_SPLIT_ROW, 8, &err), QN_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "blk.0.ffn_down.weight"));
    printf("  refused as expected: %s\n", err.msg);
    g.act_order = true;
    assert_int_equal(shard_all(&g, QN_TP_SPLIT_ROW, 8, NULL), QN_OK);
    /* vocab 152064 / 8 = 19008 */
    g = qn_tp_geom_gguf("output.weight", 152064, 3584, 32);
    assert_int_equal(shard_all(&g, QN_TP_SPLIT_VOCAB, 8, NULL), QN_OK);
}

/* ---------------------------------------------------------------- rules in isolation */

static void test_vocab_padding(void **state) {
    (void)state;
    /* Llama-2 style 32001 vocab: ceil(32001/4) = 8001 rows per shard, last shard 7998 real rows */
    qn_tp_weight_geom g = qn_tp_geom_gguf("token_embd.weight", 32001, 4096, 32);
    qn_tp_shard s;
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_VOCAB, 4, 3, &s, NULL), QN_OK);
    assert_int_equal(s.rows_padded, 8001);
    assert_int_equal(s.row_begin, 24003);
    assert_int_equal(s.row_end, 32001);
    /* packed-output formats round the shard to their pack: GPTQ 4-bit -> 8008 */
    g = qn_tp_geom_gptq("lm_head.weight", 32001, 4096, 4, 128, false);
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_VOCAB, 4, 3, &s, NULL), QN_OK);
    assert_int_equal(s.rows_padded, 8008);
    assert_int_equal(s.row_begin, 24024);
    assert_int_equal(s.row_end, 32001);
    assert_int_equal(shard_all(&g, QN_TP_SPLIT_VOCAB, 4, NULL), QN_OK);
    /* tiny vocab over many ranks: trailing ranks hold only padding */
    g = qn_tp_geom_gguf("tiny", 5, 8, 1);
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_VOCAB, 8, 7, &s, NULL), QN_OK);
    assert_int_equal(s.row_end - s.row_begin, 0);
    assert_int_equal(s.rows_padded, 1);
}

static void test_rules(void **state) {
    (void)state;
    qn_error err;
    qn_tp_shard s;
    /* COLUMN of GPTQ: qzeros pack 8 outputs per int32, so 8 x tp rows are the unit */
    qn_tp_weight_geom g = qn_tp_geom_gptq("w", 40, 128, 4, 128, false);
    qn_error_clear(&err);
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_COLUMN, 2, 0, &s, &err), QN_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "'w': column split of 40 output rows 2 ways"));
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_COLUMN, 5, 4, &s, NULL), QN_OK);
    assert_int_equal(s.row_begin, 32);
    /* GPTQ 3-bit: 32-value packs along input */
    g = qn_tp_geom_gptq("w3", 64, 96, 3, 0, false);
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_ROW, 3, 1, &s, NULL), QN_OK);
    assert_int_equal(s.col_begin, 32);
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_ROW, 2, 0, &s, NULL), QN_ERR_SHAPE);
    /* NF4: blocks over the flattened tensor; 100 cols straddle blocks -> no row split, column ok when
     * each shard starts on a block: 16 rows x 100 cols / 2 = 800 elements = 12.5 blocks -> refused */
    g = qn_tp_geom_nf4("nf", 16, 100, 64);
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_ROW, 1, 0, &s, NULL), QN_ERR_SHAPE);
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_COLUMN, 2, 0, &s, NULL), QN_ERR_SHAPE);
    g = qn_tp_geom_nf4("nf", 32, 100, 64);
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_COLUMN, 2, 1, &s, NULL), QN_OK);
    assert_int_equal(s.row_begin, 16);
    /* malformed group geometry and arguments */
    g = qn_tp_geom_awq("a", 64, 100, 128);
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_ROW, 1, 0, &s, NULL), QN_ERR_SHAPE);
    g = qn_tp_geom_gguf("x", 8, 8, 1);
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_ROW, 2, 2, &s, NULL), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_ROW, 0, 0, &s, NULL), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_tp_shard_weight(NULL, QN_TP_SPLIT_ROW, 1, 0, &s, NULL), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_tp_shard_weight(&g, QN_TP_SPLIT_COUNT, 1, 0, &s, NULL), QN_ERR_INVALID_ARG);
    /* tp = 1 is the identity for every split */
    for (int k = 0; k < QN_TP_SPLIT_COUNT; k++) {
        g = qn_tp_geom_gguf("id", 7, 64, 32);
        assert_int_equal(qn_tp_shard_weight(&g, (qn_tp_split)k, 1, 0, &s, NULL), QN_OK);
        assert_int_equal(s.row_begin, 0);
        assert_int_equal(s.row_end, 7);
        assert_int_equal(s.col_end, 64);
        assert_int_equal(s.rows_padded, 7);
    }
    assert_string_equal(qn_tp_split_name(QN_TP_SPLIT_ROW), "row");
    /* heads: MHA (n_kv == n_head) and MQA (1 kv head) */
    qn_tp_heads h;
    assert_int_equal(qn_tp_split_heads(16, 16, 4, 3, &h, NULL), QN_OK);
    assert_int_equal(h.kv_head_begin, 12);
    assert_int_equal(h.n_kv_head_local, 4);
    assert_int_equal(qn_tp_split_heads(16, 1, 4, 3, &h, NULL), QN_OK);
    assert_int_equal(h.kv_head_begin, 0);
    assert_int_equal(h.kv_replicas, 4);
    assert_int_equal(qn_tp_split_heads(12, 6, 4, 0, &h, NULL), QN_ERR_SHAPE); /* 6 kv heads over 4 */
    assert_int_equal(qn_tp_split_heads(8, 16, 2, 0, &h, NULL), QN_ERR_INVALID_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama3_8b),
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_qwen25_7b),
        cmocka_unit_test(test_vocab_padding),
        cmocka_unit_test(test_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
