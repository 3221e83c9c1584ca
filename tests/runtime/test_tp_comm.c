/* test_tp_comm.c — tp/comm CPU communicator with 2 and 4 rank threads: all-reduce equals the serial
 * rank-order sum bit for bit on every rank (pieces crossed), all-gather, broadcast, barrier, 1000
 * back-to-back iterations without deadlock, mismatched sizes refused on every rank; and the TP
 * decomposition itself: y = W2·silu(W1·x) with W1 column-parallel and W2 row-parallel + one
 * all-reduce equals the unsharded MLP. Failures inside rank threads are counted, asserted on the
 * main thread (cmocka cannot fail from another thread). QN_TEST_LABELS: cpu */
#include "harness.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tp/comm.h"
#include "tp/shard.h"

/* ---------------------------------------------------------------- rank threads */

typedef void (*rank_fn)(qn_tp_comm *c, void *ctx, atomic_int *fails);

typedef struct rank_arg {
    qn_tp_comm *c;
    void *ctx;
    rank_fn fn;
    atomic_int *fails;
} rank_arg;

static void *rank_main(void *p) {
    rank_arg *a = p;
    a->fn(a->c, a->ctx, a->fails);
    return NULL;
}

#define RCHECK(fails, cond)                                                                   \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "rank check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);    \
            atomic_fetch_add((fails), 1);                                                     \
        }                                                                                     \
    } while (0)

/* Runs fn on size threads, one communicator each; returns the failure count. */
static int run_ranks(int size, rank_fn fn, void *ctx) {
    qn_tp_cpu_group *g = NULL;
    assert_int_equal(qn_tp_cpu_group_create(size, &g), QN_OK);
    pthread_t th[16];
    rank_arg args[16];
    atomic_int fails = 0;
    for (int r = 0; r < size; r++) {
        args[r] = (rank_arg){.ctx = ctx, .fn = fn, .fails = &fails};
        assert_int_equal(qn_tp_comm_cpu_create(g, r, &args[r].c), QN_OK);
        assert_int_equal(qn_tp_comm_rank(args[r].c), r);
        assert_int_equal(qn_tp_comm_size(args[r].c), size);
    }
    qn_tp_cpu_group_destroy(g); /* comms keep the group alive */
    for (int r = 0; r < size; r++) assert_int_equal(pthread_create(&th[r], NULL, rank_main, &args[r]), 0);
    for (int r = 0; r < size; r++) pthread_join(th[r], NULL);
    for (int r = 0; r < size; r++) qn_tp_comm_destroy(args[r].c);
    return atomic_load(&fails);
}

static void rank_input(float *x, size_t n, int rank, uint64_t seed) {
    qn_rng rng;
    qn_rng_seed(&rng, seed * 1000003u + (uint64_t)rank);
    qn_rng_fill_normal(&rng, x, n, 1.0f);
}

/* ---------------------------------------------------------------- all-reduce */

typedef struct ar_ctx {
    size_t n;
    uint64_t seed;
} ar_ctx;

static void ar_rank(qn_tp_comm *c, void *p, atomic_int *fails) {
    const ar_ctx *a = p;
    const int size = qn_tp_comm_size(c);
    float *buf = malloc(a->n * sizeof(float)), *ref = malloc(a->n * sizeof(float)),
          *tmp = malloc(a->n * sizeof(float));
    rank_input(buf, a->n, qn_tp_comm_rank(c), a->seed);
    /* the serial sum in rank order: ref = x0; ref += x1; ... */
    rank_input(ref, a->n, 0, a->seed);
    for (int k = 1; k < size; k++) {
        rank_input(tmp, a->n, k, a->seed);
        for (size_t i = 0; i < a->n; i++) ref[i] += tmp[i];
    }
    RCHECK(fails, qn_tp_comm_all_reduce_sum_f32(c, buf, a->n, NULL) == QN_OK);
    RCHECK(fails, memcmp(buf, ref, a->n * sizeof(float)) == 0);
    free(buf), free(ref), free(tmp);
}

static void test_all_reduce_bit_exact(void **state) {
    (void)state;
    /* 1 and 7: fewer elements than ranks; 1048589: crosses the 4 MiB scratch piece */
    const size_t sizes[] = {1, 7, 1000, 4096, ((size_t)1 << 20) + 13};
    const int ranks[] = {1, 2, 4};
    for (int ri = 0; ri < 3; ri++)
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            ar_ctx a = {.n = sizes[si], .seed = 17 + si};
            assert_int_equal(run_ranks(ranks[ri], ar_rank, &a), 0);
        }
}

/* ---------------------------------------------------------------- all-gather, broadcast */

static void ag_rank(qn_tp_comm *c, void *p, atomic_int *fails) {
    const size_t n = *(const size_t *)p;
    const int r = qn_tp_comm_rank(c), size = qn_tp_comm_size(c);
    float *send = malloc(n * sizeof(float)), *recv = malloc(n * (size_t)size * sizeof(float));
    float *inplace = malloc(n * (size_t)size * sizeof(float)), *want = malloc(n * sizeof(float));
    rank_input(send, n, r, 99);
    RCHECK(fails, qn_tp_comm_all_gather_f32(c, send, recv, n, NULL) == QN_OK);
    for (int k = 0; k < size; k++) {
        rank_input(want, n, k, 99);
        RCHECK(fails, memcmp(recv + (size_t)k * n, want, n * sizeof(float)) == 0);
    }
    /* in place: the send buffer is this rank's slot of recv (NCCL allows the same) */
    memcpy(inplace + (size_t)r * n, send, n * sizeof(float));
    RCHECK(fails, qn_tp_comm_all_gather_f32(c, inplace + (size_t)r * n, inplace, n, NULL) == QN_OK);
    RCHECK(fails, memcmp(inplace, recv, n * (size_t)size * sizeof(float)) == 0);
    free(send), free(recv), free(inplace), free(want);
}

static void test_all_gather(void **state) {
    (void)state;
    const size_t sizes[] = {1, 33, 50000};
    for (int size = 1; size <= 4; size *= 2)
        for (int i = 0; i < 3; i++) assert_int_equal(run_ranks(size, ag_rank, (void *)&sizes[i]), 0);
}

static void bc_rank(qn_tp_comm *c, void *p, atomic_int *fails) {
    (void)p;
    const int r = qn_tp_comm_rank(c), size = qn_tp_comm_size(c);
    for (int root = 0; root < size; root++) {
        unsigned char buf[1031];
        for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(r == root ? (i * 7 + (size_t)root) : 0xEE);
        RCHECK(fails, qn_tp_comm_broadcast(c, buf, sizeof buf, root, NULL) == QN_OK);
        for (size_t i = 0; i < sizeof buf; i++) RCHECK(fails, buf[i] == (unsigned char)(i * 7 + (size_t)root));
    }
    unsigned char b = 0;
    RCHECK(fails, qn_tp_comm_broadcast(c, &b, 1, size, NULL) == QN_ERR_INVALID_ARG); /* root out of range */
}

static void test_broadcast(void **state) {
    (void)state;
    for (int size = 1; size <= 4; size *= 2) assert_int_equal(run_ranks(size, bc_rank, NULL), 0);
}

/* ---------------------------------------------------------------- barrier, repetition, misuse */

typedef struct bar_ctx {
    atomic_int arrived;
} bar_ctx;

static void bar_rank(qn_tp_comm *c, void *p, atomic_int *fails) {
    bar_ctx *b = p;
    const int size = qn_tp_comm_size(c);
    for (int phase = 1; phase <= 50; phase++) {
        if (qn_tp_comm_rank(c) == phase % size) usleep(200); /* a late rank each phase */
        atomic_fetch_add(&b->arrived, 1);
        RCHECK(fails, qn_tp_comm_barrier(c) == QN_OK);
        /* nobody passes until all have arrived in this phase; none arrives in the next before a 2nd barrier */
        RCHECK(fails, atomic_load(&b->arrived) == phase * size);
        RCHECK(fails, qn_tp_comm_barrier(c) == QN_OK);
    }
}

static void test_barrier(void **state) {
    (void)state;
    for (int size = 2; size <= 4; size *= 2) {
        bar_ctx b = {0};
        assert_int_equal(run_ranks(size, bar_rank, &b), 0);
    }
}

static void rep_rank(qn_tp_comm *c, void *p, atomic_int *fails) {
    (void)p;
    const int r = qn_tp_comm_rank(c), size = qn_tp_comm_size(c);
    float v[64], g[64 * 4];
    for (int it = 0; it < 1000; it++) {
        for (int i = 0; i < 64; i++) v[i] = (float)(r + it + i);
        RCHECK(fails, qn_tp_comm_all_reduce_sum_f32(c, v, 64, NULL) == QN_OK);
        /* small integers: exact in any order */
        RCHECK(fails, v[5] == (float)(size * (it + 5) + size * (size - 1) / 2));
        float mine = (float)(r * 1000 + it);
        RCHECK(fails, qn_tp_comm_all_gather_f32(c, &mine, g, 1, NULL) == QN_OK);
        RCHECK(fails, g[size - 1] == (float)((size - 1) * 1000 + it));
        if (it % 10 == 0) RCHECK(fails, qn_tp_comm_barrier(c) == QN_OK);
    }
}

static void test_repeated_1000(void **state) {
    (void)state;
    alarm(120); /* a deadlock fails the test instead of hanging ctest */
    assert_int_equal(run_ranks(2, rep_rank, NULL), 0);
    assert_int_equal(run_ranks(4, rep_rank, NULL), 0);
    alarm(0);
}

static void mismatch_rank(qn_tp_comm *c, void *p, atomic_int *fails) {
    (void)p;
    float v[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    const size_t n = qn_tp_comm_rank(c) == 1 ? 7 : 8;
    RCHECK(fails, qn_tp_comm_all_reduce_sum_f32(c, v, n, NULL) == QN_ERR_INVALID_ARG);
    RCHECK(fails, v[0] == 1.0f); /* untouched */
    RCHECK(fails, qn_tp_comm_all_reduce_sum_f32(c, v, 8, NULL) == QN_OK); /* the group still works */
    RCHECK(fails, v[7] == (float)qn_tp_comm_size(c));
}

static void test_misuse(void **state) {
    (void)state;
    assert_int_equal(run_ranks(2, mismatch_rank, NULL), 0);
    assert_int_equal(run_ranks(4, mismatch_rank, NULL), 0);

    qn_tp_cpu_group *g = NULL;
    qn_tp_comm *c0 = NULL, *dup = NULL;
    assert_int_equal(qn_tp_cpu_group_create(0, &g), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_tp_cpu_group_create(2, &g), QN_OK);
    assert_int_equal(qn_tp_comm_cpu_create(g, 2, &c0), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_tp_comm_cpu_create(g, 0, &c0), QN_OK);
    assert_int_equal(qn_tp_comm_cpu_create(g, 0, &dup), QN_ERR_INVALID_ARG); /* rank already taken */
    assert_null(dup);
    assert_string_equal(qn_tp_comm_name(c0), "cpu");
    assert_int_equal(qn_tp_comm_all_reduce_sum_f32(c0, NULL, 4, NULL), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_tp_comm_all_reduce_sum_f32(c0, NULL, 0, NULL), QN_OK);
    qn_tp_comm_destroy(c0); /* before the group: fine */
    qn_tp_cpu_group_destroy(g);
    qn_tp_comm_destroy(NULL);
    qn_tp_cpu_group_destroy(NULL);
#if !(defined(QN_HAVE_NCCL) && defined(QN_HAVE_CUDA))
    qn_tp_unique_id id;
    assert_int_equal(qn_tp_nccl_get_unique_id(&id), QN_ERR_UNSUPPORTED);
#endif
}

/* ---------------------------------------------------------------- the TP decomposition of an MLP */

/* y[D] = W2[D,F] · silu(W1[F,D] · x[D]) for T tokens. W1 column-parallel (rank r: rows [f0,f1)),
 * W2 row-parallel (rank r: cols [f0,f1)); each rank's y is a partial sum, one all-reduce completes it. */
enum { MLP_D = 96, MLP_F = 512, MLP_T = 3 };

typedef struct mlp_ctx {
    const float *w1, *w2, *x; /* [F,D], [D,F], [T,D] */
    float *y_rank;            /* [size][T,D] result of each rank */
} mlp_ctx;

static float silu(float v) { return v / (1.0f + expf(-v)); }

static void mlp_rank(qn_tp_comm *c, void *p, atomic_int *fails) {
    const mlp_ctx *m = p;
    const int r = qn_tp_comm_rank(c), size = qn_tp_comm_size(c);
    qn_tp_shard s1, s2;
    const qn_tp_weight_geom g1 = qn_tp_geom_gguf("mlp.w1", MLP_F, MLP_D, 32);
    const qn_tp_weight_geom g2 = qn_tp_geom_gguf("mlp.w2", MLP_D, MLP_F, 32);
    RCHECK(fails, qn_tp_shard_weight(&g1, QN_TP_SPLIT_COLUMN, size, r, &s1, NULL) == QN_OK);
    RCHECK(fails, qn_tp_shard_weight(&g2, QN_TP_SPLIT_ROW, size, r, &s2, NULL) == QN_OK);
    RCHECK(fails, s1.row_begin == s2.col_begin && s1.row_end == s2.col_end); /* the hidden slice matches */
    float *y = m->y_rank + (size_t)r * MLP_T * MLP_D;
    float h[MLP_F];
    for (int t = 0; t < MLP_T; t++) {
        const float *x = m->x + (size_t)t * MLP_D;
        for (int64_t j = s1.row_begin; j < s1.row_end; j++) { /* local hidden slice only */
            float acc = 0.0f;
            for (int k = 0; k < MLP_D; k++) acc += m->w1[j * MLP_D + k] * x[k];
            h[j] = silu(acc);
        }
        for (int i = 0; i < MLP_D; i++) {
            float acc = 0.0f;
            for (int64_t j = s2.col_begin; j < s2.col_end; j++) acc += m->w2[(size_t)i * MLP_F + j] * h[j];
            y[t * MLP_D + i] = acc;
        }
    }
    RCHECK(fails, qn_tp_comm_all_reduce_sum_f32(c, y, MLP_T * MLP_D, NULL) == QN_OK);
}

static void test_mlp_tp_matches_unsharded(void **state) {
    (void)state;
    float *w1 = malloc(sizeof(float) * MLP_F * MLP_D), *w2 = malloc(sizeof(float) * MLP_D * MLP_F);
    float x[MLP_T * MLP_D], y1[MLP_T * MLP_D];
    double ref[MLP_T * MLP_D];
    qn_rng rng;
    qn_rng_seed(&rng, 2024);
    qn_rng_fill_normal(&rng, w1, MLP_F * MLP_D, 1.0f / sqrtf(MLP_D));
    qn_rng_fill_normal(&rng, w2, MLP_D * MLP_F, 1.0f / sqrtf(MLP_F));
    qn_rng_fill_normal(&rng, x, MLP_T * MLP_D, 1.0f);
    /* double-precision reference of the unsharded MLP */
    for (int t = 0; t < MLP_T; t++) {
        double h[MLP_F];
        for (int j = 0; j < MLP_F; j++) {
            double acc = 0;
            for (int k = 0; k < MLP_D; k++) acc += (double)w1[j * MLP_D + k] * x[t * MLP_D + k];
            h[j] = acc / (1.0 + exp(-acc));
        }
        for (int i = 0; i < MLP_D; i++) {
            double acc = 0;
            for (int j = 0; j < MLP_F; j++) acc += (double)w2[i * MLP_F + j] * h[j];
            ref[t * MLP_D + i] = acc;
        }
    }
    /* Tolerance: fp32 dot products of length 512 in a different association order; the rounding error
     * bound is ~ F * 2^-24 * sum|w2*h| ~ 3e-5 * O(1), observed ~1e-6. atol 1e-5 + rtol 1e-4. */
    const double atol = 1e-5, rtol = 1e-4, max_nmse = 1e-10;
    float *y_rank = malloc(sizeof(float) * 4 * MLP_T * MLP_D);
    mlp_ctx m = {.w1 = w1, .w2 = w2, .x = x, .y_rank = y_rank};
    assert_int_equal(run_ranks(1, mlp_rank, &m), 0); /* tp=1: the unsharded fp32 MLP */
    memcpy(y1, y_rank, sizeof y1);
    qn_check_result res;
    assert_true(qn_check_close("mlp tp=1", y1, ref, MLP_T * MLP_D, atol, rtol, max_nmse, &res));
    printf("  tp=1: max abs err %.3g, nmse %.3g vs double\n", res.max_abs_err, res.nmse);
    for (int size = 2; size <= 4; size *= 2) {
        assert_int_equal(run_ranks(size, mlp_rank, &m), 0);
        for (int r = 1; r < size; r++) /* every rank holds the very same bits */
            assert_memory_equal(y_rank, y_rank + (size_t)r * MLP_T * MLP_D, sizeof(float) * MLP_T * MLP_D);
        char what[32];
        snprintf(what, sizeof what, "mlp tp=%d", size);
        assert_true(qn_check_close(what, y_rank, ref, MLP_T * MLP_D, atol, rtol, max_nmse, &res));
        double max_vs_tp1 = 0;
        for (int i = 0; i < MLP_T * MLP_D; i++) max_vs_tp1 = fmax(max_vs_tp1, fabs((double)y_rank[i] - y1[i]));
        assert_true(max_vs_tp1 <= 2 * atol);
        printf("  tp=%d: max abs err %.3g (vs tp=1 fp32: %.3g), nmse %.3g vs double\n", size, res.max_abs_err,
               max_vs_tp1, res.nmse);
    }
    free(w1), free(w2), free(y_rank);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_reduce_bit_exact),
        cmocka_unit_test(test_all_gather),
        cmocka_unit_test(test_broadcast),
        cmocka_unit_test(test_barrier),
        cmocka_unit_test(test_repeated_1000),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_mlp_tp_matches_unsharded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
