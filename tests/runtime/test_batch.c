/* test_batch.c — sched/batch: flattening hand-written scheduler decisions into the forward-pass
 * arrays (ids, positions, slot_mapping, cu_seqlens_q, context_lens, padded block tables, logits rows,
 * copies), fixed strides, cancelled entries and buffer reuse. No GPU. QN_TEST_LABELS: cpu */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#include "sched/batch.h"

static qn_request *mk_req(uint64_t id, int32_t n_tokens, int32_t n_prompt, int32_t base) {
    int32_t *t = malloc((size_t)n_tokens * sizeof *t);
    for (int32_t i = 0; i < n_tokens; i++) t[i] = base + i;
    qn_request_params p = {.id = id, .prompt = t, .n_prompt = n_tokens};
    qn_request *r = NULL;
    assert_int_equal(qn_request_create(&p, &r), QN_OK);
    r->n_prompt = n_prompt;
    r->state = QN_REQ_RUNNING;
    free(t);
    return r;
}

static qn_sched_entry mk_entry(qn_request *r, int32_t start, int32_t n, const int32_t *table, int32_t n_blocks) {
    qn_sched_entry e = {.req = r, .start = start, .n_tokens = n, .block_table = table, .n_blocks = n_blocks};
    e.needs_sample = start + n == r->n_tokens;
    e.is_prefill = !(start >= r->n_prompt && n == 1);
    return e;
}

/* decode + prefill chunk + admission after a prefix hit, block size 16 */
static void test_mixed_step(void **state) {
    (void)state;
    qn_request *a = mk_req(1, 21, 12, 100); /* decoding: 20 computed, token 20 to compute */
    qn_request *b = mk_req(2, 40, 40, 200); /* prefill chunk 16..31 of 40 */
    qn_request *c = mk_req(3, 35, 35, 300); /* 32 cached, 3 to compute */
    const int32_t ta[] = {7, 3}, tb[] = {1, 9}, tc[] = {2, 4, 5};
    qn_sched_entry ent[3] = {mk_entry(a, 20, 1, ta, 2), mk_entry(b, 16, 16, tb, 2), mk_entry(c, 32, 3, tc, 3)};
    qn_block_copy cp[1] = {{.src = 11, .dst = 3}};
    qn_sched_output o = {.entries = ent, .n_entries = 3, .n_tokens = 20, .copies = cp, .n_copies = 1};

    qn_batch bt;
    qn_batch_init(&bt);
    assert_int_equal(qn_batch_build(&bt, &o, 16, 0), QN_OK);
    assert_int_equal(bt.n_tokens, 20);
    assert_int_equal(bt.n_seqs, 3);
    assert_int_equal(bt.block_size, 16);
    assert_int_equal(bt.max_blocks_per_seq, 3);
    assert_int_equal(bt.max_query_len, 16);
    assert_int_equal(bt.max_context_len, 35);

    const int32_t cu[] = {0, 1, 17, 20}, ctx[] = {21, 32, 35};
    assert_memory_equal(bt.cu_seqlens_q, cu, sizeof cu);
    assert_memory_equal(bt.context_lens, ctx, sizeof ctx);
    const int32_t tables[] = {7, 3, QN_BATCH_BLOCK_PAD, 1, 9, QN_BATCH_BLOCK_PAD, 2, 4, 5};
    assert_memory_equal(bt.block_tables, tables, sizeof tables);

    /* row 0: A's token 20 at block 3, offset 4 */
    assert_int_equal(bt.token_ids[0], 120);
    assert_int_equal(bt.positions[0], 20);
    assert_int_equal(bt.slot_mapping[0], 3 * 16 + 4);
    assert_int_equal(bt.seq_idx[0], 0);
    /* rows 1..16: B's positions 16..31, all in block 9 */
    for (int32_t k = 0; k < 16; k++) {
        assert_int_equal(bt.token_ids[1 + k], 216 + k);
        assert_int_equal(bt.positions[1 + k], 16 + k);
        assert_int_equal(bt.slot_mapping[1 + k], 9 * 16 + k);
        assert_int_equal(bt.seq_idx[1 + k], 1);
    }
    /* rows 17..19: C's positions 32..34 in its third block */
    for (int32_t k = 0; k < 3; k++) {
        assert_int_equal(bt.positions[17 + k], 32 + k);
        assert_int_equal(bt.slot_mapping[17 + k], 5 * 16 + k);
        assert_int_equal(bt.seq_idx[17 + k], 2);
    }
    /* logits: A (decode) and C (prefill completes); not B's partial chunk */
    assert_int_equal(bt.n_logits, 2);
    assert_int_equal(bt.logits_rows[0], 0);
    assert_int_equal(bt.logits_entry[0], 0);
    assert_int_equal(bt.logits_rows[1], 19);
    assert_int_equal(bt.logits_entry[1], 2);
    assert_int_equal(bt.n_copies, 1);
    assert_int_equal(bt.copy_src[0], 11);
    assert_int_equal(bt.copy_dst[0], 3);

    /* fixed stride: padded to 8; too small a stride is a shape error */
    assert_int_equal(qn_batch_build(&bt, &o, 16, 8), QN_OK);
    assert_int_equal(bt.max_blocks_per_seq, 8);
    assert_int_equal(bt.block_tables[8 * 2 + 2], 5);
    assert_int_equal(bt.block_tables[8 * 2 + 3], QN_BATCH_BLOCK_PAD);
    assert_int_equal(bt.block_tables[8 * 0 + 7], QN_BATCH_BLOCK_PAD);
    assert_int_equal(qn_batch_build(&bt, &o, 16, 2), QN_ERR_SHAPE);

    /* a cancelled entry disappears; the others keep their entry index */
    ent[1].cancelled = true;
    assert_int_equal(qn_batch_build(&bt, &o, 16, 0), QN_OK);
    assert_int_equal(bt.n_seqs, 2);
    assert_int_equal(bt.n_tokens, 4);
    assert_int_equal(bt.seq_entry[0], 0);
    assert_int_equal(bt.seq_entry[1], 2);
    assert_int_equal(bt.cu_seqlens_q[2], 4);
    assert_int_equal(bt.logits_rows[1], 3);
    assert_int_equal(bt.logits_entry[1], 2);
    ent[1].cancelled = false;

    /* a table that does not cover the step is a caller bug */
    ent[2].n_blocks = 2;
    assert_int_equal(qn_batch_build(&bt, &o, 16, 0), QN_ERR_INVALID_ARG);

    qn_batch_free(&bt);
    qn_batch_free(&bt); /* idempotent */
    qn_request_destroy(a);
    qn_request_destroy(b);
    qn_request_destroy(c);
}

static void test_empty_and_growth(void **state) {
    (void)state;
    qn_batch bt;
    qn_batch_init(&bt);
    qn_sched_output o = {0};
    assert_int_equal(qn_batch_build(&bt, &o, 16, 0), QN_OK);
    assert_int_equal(bt.n_tokens, 0);
    assert_int_equal(bt.n_seqs, 0);
    assert_int_equal(bt.n_logits, 0);
    assert_int_equal(bt.cu_seqlens_q[0], 0);

    /* 300 sequences x 50 tokens, block size 4: buffers grow, slots stay consistent */
    enum { N = 300, L = 50, BS = 4, NB = (L + BS - 1) / BS };
    qn_request *reqs[N];
    int32_t *tables = malloc(sizeof(int32_t) * N * NB);
    qn_sched_entry *ent = malloc(sizeof *ent * N);
    for (int i = 0; i < N; i++) {
        reqs[i] = mk_req((uint64_t)i, L, L, i * 1000);
        for (int k = 0; k < NB; k++) tables[i * NB + k] = i * NB + (NB - 1 - k); /* reversed ids */
        ent[i] = mk_entry(reqs[i], 0, L, tables + i * NB, NB);
    }
    o.entries = ent;
    o.n_entries = N;
    assert_int_equal(qn_batch_build(&bt, &o, BS, 0), QN_OK);
    assert_int_equal(bt.n_tokens, N * L);
    assert_int_equal(bt.n_logits, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(bt.cu_seqlens_q[i], i * L);
        assert_int_equal(bt.logits_rows[i], i * L + L - 1);
        for (int p = 0; p < L; p++) {
            const int32_t row = i * L + p;
            assert_int_equal(bt.slot_mapping[row], tables[i * NB + p / BS] * BS + p % BS);
            assert_int_equal(bt.token_ids[row], i * 1000 + p);
        }
    }
    for (int i = 0; i < N; i++) qn_request_destroy(reqs[i]);
    free(tables);
    free(ent);
    qn_batch_free(&bt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed_step),
        cmocka_unit_test(test_empty_and_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
