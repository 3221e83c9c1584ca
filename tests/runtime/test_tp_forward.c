/* test_tp_forward.c — the tensor-parallel CPU forward (tp/forward_cpu.h) against TP = 1: three sequences
 * in one batch over paged KV with shuffled (non-identity) block tables, a prefill then 16 greedy decode
 * steps; TP = N must pick the same tokens and give logits within tolerance at every step. Models: the
 * default SmolLM2-135M Q4_1 (9/3 heads: N = 3 runs, N = 2 and 4 are refused with the head counts named);
 * synthetic 2-layer models made in-process by qn_synth_gguf (8 heads of 128, n_embd 256, n_ff 1024) in
 * F16, Q8_0, Q4_1, Q4_K_S, Q6_K (tied embeddings, kv heads split: 8/4), a qwen2 Q4_K_S one (q/k/v biases,
 * untied, kv heads replicated at N = 4: 8/2), and the F16 one with its linears made lutq (the GPTQ/AWQ/NF4 CPU layout: 4- and
 * 8-bit codes, groups of 96 that straddle rank boundaries, act-order perms); N = 2 and 4. TP = 1 is also
 * checked bit for bit against the plain qn_llama_cpu forward. The embedding is vocab-parallel like the LM
 * head (one all-reduce per step; the shard tests check the slices, tied and untied), and copy-on-write of a block through
 * qn_tp_cpu_copy_block; the load-time K-quant repack bit for bit against no repack. Skips (77) without the default model (also the synthetic models' tokenizer).
 * QN_TEST_LABELS: cpu */
#include "harness.h"

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/threadpool.h"
#include "kv/kv_cache.h"
#include "model/llama_cpu.h"
#include "model/model.h"
#include "model/synth.h"
#include "tp/forward_cpu.h"
#include "tp/model_shard.h"
#include "tokenizer/vocab.h"

/* Tolerance of TP = N logits against TP = 1, per model family, set against the noise of any other change
 * of summation order. Column-parallel matmuls see the same quantized activations as TP = 1 and give the
 * same bits; only the row-parallel o/down dot products are summed in another order (per-rank partial sums,
 * then the all-reduce): a few f32 ulps per layer, which later layers carry and now and then turn into a
 * flipped rounding when the next activations are re-quantized to 8 bits (hence nmse that jumps between
 * ~1e-14 and ~3e-5 from one N or format to the next). Measured on this scenario (AVX2 machine):
 *   TP = N vs TP = 1:              synthetic nmse <= 3.0e-5 (q4_1, N = 4), SmolLM2 N = 3 8.3e-4;
 *   TP = 1 scalar vs AVX2 kernels: synthetic nmse up to 6.5e-5 (q8_0), SmolLM2 flips a greedy token at a
 *                                  top-2 gap of 0.13.
 * Bounds: nmse ~3-6x the TP figures, max |d| <= rel * max |ref logit|. Greedy tokens must match; a
 * divergence is accepted only at a near-tie of TP = 1's top two logits (gap < tie_gap, about the largest
 * |d| seen), and that sequence is compared no further. */
typedef struct tol {
    double nmse, rel; /* nmse bound; max |d| <= rel * max |ref| */
    float tie_gap;
} tol;
static const tol TOL_SYNTH = {2e-4, 0.05, 0.05f}, TOL_SMOLLM2 = {3e-3, 0.05, 0.25f};

/* ---------------------------------------------------------------- scenario */

enum { S = 3, STEPS = 16, BS = 4, NBLK = 48, MAXB = 8 };
static const char *const PROMPTS[S] = {"The capital of France is", "def fibonacci(n):",
                                       "Once upon a time, there was a little"};

typedef qn_status (*fwd_fn)(void *ctx, const qn_fwd_batch *b, float *logits, qn_error *err);

typedef struct run_out {
    int32_t tokens[STEPS][S];
    float *logits; /* [STEPS + 1][S][n_vocab]: prefill, then each decode step */
} run_out;

static int32_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

/* Drives fwd through the prefill and the decode steps; block tables come from a seeded shuffle. */
static void run_scenario(const qn_model *m, fwd_fn fwd, void *ctx, run_out *out) {
    const int64_t V = m->cfg.n_vocab;
    qn_rng rng;
    qn_rng_seed(&rng, 7);
    int32_t pool[NBLK], tables[S][MAXB];
    for (int i = 0; i < NBLK; i++) pool[i] = i;
    for (int i = NBLK - 1; i > 0; i--) {
        const int j = (int)(qn_rng_u64(&rng) % (uint64_t)(i + 1));
        const int32_t t = pool[i];
        pool[i] = pool[j], pool[j] = t;
    }
    for (int s = 0; s < S; s++)
        for (int b = 0; b < MAXB; b++) tables[s][b] = pool[s * MAXB + b];

    out->logits = malloc(sizeof(float) * (size_t)(STEPS + 1) * S * (size_t)V);
    assert_non_null(out->logits);
    int32_t tok[64], pos[64], seq[64], slot[64], rows[S], len[S];
    int32_t n = 0;
    for (int s = 0; s < S; s++) {
        assert_int_equal(qn_vocab_tokenize(m->vocab, PROMPTS[s], strlen(PROMPTS[s]), false, false, tok + n, 16, &len[s]),
                         QN_OK);
        assert_true(len[s] >= 2 && len[s] + STEPS <= MAXB * BS);
        for (int32_t p = 0; p < len[s]; p++, n++) pos[n] = p, seq[n] = s, slot[n] = tables[s][p / BS] * BS + p % BS;
        rows[s] = n - 1;
    }
    for (int step = 0; step <= STEPS; step++) {
        qn_fwd_batch b = {.n_tokens = n, .tokens = tok, .positions = pos, .seq_idx = seq, .slot_mapping = slot,
                          .n_seqs = S, .block_tables = &tables[0][0], .max_blocks_per_seq = MAXB, .n_out = S,
                          .out_rows = rows};
        float *lg = out->logits + (size_t)step * S * (size_t)V;
        qn_error err = {0};
        const qn_status st = fwd(ctx, &b, lg, &err);
        if (st != QN_OK) fprintf(stderr, "forward step %d: %s\n", step, err.msg);
        assert_int_equal(st, QN_OK);
        if (step == STEPS) break;
        n = 0;
        for (int s = 0; s < S; s++, n++) {
            out->tokens[step][s] = argmax(lg + (size_t)s * (size_t)V, V);
            tok[n] = out->tokens[step][s], pos[n] = len[s], seq[n] = s, rows[n] = n;
            slot[n] = tables[s][len[s] / BS] * BS + len[s] % BS;
            len[s]++;
        }
    }
}

static qn_status tp_fwd(void *ctx, const qn_fwd_batch *b, float *logits, qn_error *err) {
    return qn_tp_cpu_forward(ctx, b, logits, err);
}

typedef struct plain_ctx {
    qn_llama_cpu *f;
    qn_kv_cache *kv;
} plain_ctx;

static qn_status plain_fwd(void *ctx, const qn_fwd_batch *b, float *logits, qn_error *err) {
    plain_ctx *p = ctx;
    return qn_llama_cpu_forward(p->f, p->kv, b, logits, err);
}

static qn_cpu_kernels g_kern;

static void run_tp(const qn_model *m, int n_ranks, run_out *out, qn_tp_cpu_stats *stats) {
    qn_tp_cpu *tp = NULL;
    qn_error err = {0};
    const qn_status st = qn_tp_cpu_create(m, &g_kern, n_ranks, n_ranks == 1 ? 2 : 1, 64, MAXB * BS, BS, NBLK, &tp, &err);
    if (st != QN_OK) fprintf(stderr, "tp create (N = %d): %s\n", n_ranks, err.msg);
    assert_int_equal(st, QN_OK);
    run_scenario(m, tp_fwd, tp, out);
    if (stats) qn_tp_cpu_get_stats(tp, stats);
    qn_tp_cpu_destroy(tp);
}

static void run_plain_kern(const qn_model *m, const qn_cpu_kernels *kern, run_out *out, size_t *repacked) {
    qn_threadpool *pool = NULL;
    plain_ctx p = {0};
    qn_error err = {0};
    const qn_model_config *c = &m->cfg;
    assert_int_equal(qn_threadpool_create(2, &pool, &err), QN_OK);
    assert_int_equal(qn_kv_cache_create_cpu(c->n_layer, NBLK, BS, c->n_head_kv, c->head_dim, &p.kv, &err), QN_OK);
    assert_int_equal(qn_llama_cpu_create(m, kern, pool, 64, MAXB * BS, &p.f, &err), QN_OK);
    if (repacked) *repacked = qn_llama_cpu_repacked_bytes(p.f);
    run_scenario(m, plain_fwd, &p, out);
    qn_llama_cpu_destroy(p.f);
    qn_kv_cache_destroy_cpu(p.kv);
    qn_threadpool_destroy(pool);
}

static void run_plain(const qn_model *m, run_out *out) { run_plain_kern(m, &g_kern, out, NULL); }

static float top2_gap(const float *x, int64_t n) {
    float a = -INFINITY, b = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > a) b = a, a = x[i];
        else if (x[i] > b) b = x[i];
    return a - b;
}

/* TP = N against TP = 1 (ref): the same greedy tokens, logits within t at every (step, sequence) whose
 * inputs agree. */
static void compare_runs(const char *what, const qn_model *m, const run_out *ref, const run_out *got, tol t) {
    const int64_t V = m->cfg.n_vocab;
    float *g = malloc(sizeof(float) * (size_t)(STEPS + 1) * S * (size_t)V), *r = malloc(sizeof(float) * (size_t)(STEPS + 1) * S * (size_t)V);
    assert_true(g && r);
    size_t n = 0;
    int same = 0, ties = 0;
    double ref_max = 0;
    for (int s = 0; s < S; s++)
        for (int i = 0; i <= STEPS; i++) {
            const size_t off = ((size_t)i * S + (size_t)s) * (size_t)V;
            memcpy(g + n, got->logits + off, sizeof(float) * (size_t)V);
            memcpy(r + n, ref->logits + off, sizeof(float) * (size_t)V);
            for (int64_t v = 0; v < V; v++) ref_max = fmax(ref_max, fabs(r[n + v]));
            n += (size_t)V;
            if (i == STEPS) break;
            if (got->tokens[i][s] == ref->tokens[i][s]) {
                same++;
                continue;
            }
            const float gap = top2_gap(ref->logits + off, V);
            printf("  %s: seq %d step %d: token %d vs %d at a top-2 gap of %.4f\n", what, s, i, got->tokens[i][s],
                   ref->tokens[i][s], gap);
            assert_true(gap < t.tie_gap);
            ties++;
            break; /* the sequences differ from here on */
        }
    qn_check_result res;
    const int ok = qn_check_close_f(what, g, r, n, t.rel * ref_max, 0.0, t.nmse, &res);
    printf("  %-30s max_abs %.3g (max |ref| %.3g) nmse %.3g, tokens %d/%d equal, %d near-tie\n", what, res.max_abs_err,
           ref_max, res.nmse, same, STEPS * S, ties);
    free(g), free(r);
    assert_true(ok);
}

/* Runs TP = 1 and each N of ns; with plain, TP = 1 must equal the plain forward bit for bit. */
static void check_model(const char *name, const qn_model *m, const int *ns, int n_ns, bool plain, tol t) {
    run_out ref = {0}, got = {0};
    char what[96];
    run_tp(m, 1, &ref, NULL);
    if (plain) {
        run_plain(m, &got);
        const size_t n = (size_t)(STEPS + 1) * S * (size_t)m->cfg.n_vocab;
        assert_memory_equal(got.logits, ref.logits, n * sizeof(float));
        printf("  %-30s TP=1 == plain forward, bit for bit\n", name);
        free(got.logits);
    }
    for (int i = 0; i < n_ns; i++) {
        qn_tp_cpu_stats st;
        run_tp(m, ns[i], &got, &st);
        snprintf(what, sizeof what, "%s TP=%d", name, ns[i]);
        compare_runs(what, m, &ref, &got, t);
        assert_int_equal(st.n_steps, STEPS + 1);
        /* the vocab-parallel embedding, then o and down of every layer */
        assert_int_equal(st.n_allreduce, (uint64_t)(1 + 2 * m->cfg.n_layer) * (STEPS + 1));
        printf("  %-30s all-reduce: %llu calls, %.3f ms total (%.1f us/call), %.2f MB\n", "", (unsigned long long)st.n_allreduce,
               st.allreduce_s * 1e3, st.allreduce_s * 1e6 / (double)st.n_allreduce, (double)st.allreduce_bytes / 1e6);
        free(got.logits);
    }
    free(ref.logits);
}

static void expect_refused(const qn_model *m, int n_ranks, const char *needle) {
    qn_tp_cpu *tp = NULL;
    qn_error err = {0};
    const qn_status st = qn_tp_cpu_create(m, &g_kern, n_ranks, 1, 16, 32, BS, NBLK, &tp, &err);
    printf("  TP=%d refused: %s\n", n_ranks, err.msg);
    assert_int_equal(st, QN_ERR_SHAPE);
    assert_null(tp);
    assert_non_null(strstr(err.msg, needle));
}

/* ---------------------------------------------------------------- synthetic models */

typedef struct synth_spec {
    const char *file;
    qn_ftype ftype;
    int32_t n_head_kv;
    bool qwen2;
} synth_spec;

static char g_made[32][512]; /* synthesized files, removed at exit */
static int g_n_made;

static qn_model *load_synth(const synth_spec *sp) {
    /* k-quant friendly: every ne[0] (256, 1024) a multiple of 256, so the row-parallel o/down inputs
     * (1024 cols) split into whole 256-blocks up to N = 4; head_dim 128 != n_embd / n_head. Tied (but for
     * qwen2): the 49152-row embedding is most of the synthesis time. */
    const qn_synth_preset p = {.name = "tp-test", .arch = sp->qwen2 ? "qwen2" : "llama", .model_name = "tp test",
                               .tokenizer = "smollm2", .n_vocab = 49152, .n_ctx_train = 512, .n_embd = 256,
                               .n_layer = 2, .n_ff = 1024, .n_head = 8, .n_head_kv = sp->n_head_kv, .head_dim = 128,
                               .rms_eps = 1e-5f, .rope_theta = 10000.0f, .tied = !sp->qwen2, .qkv_bias = sp->qwen2};
    char path[512];
    qn_test_tmp_path(path, sizeof path, sp->file);
    qn_synth_params sy = {.preset = &p, .ftype = sp->ftype, .seed = 11, .std = 0.05f,
                          .vocab_path = qn_test_default_model(), .n_threads = 2};
    qn_error err = {0};
    qn_status st = QN_OK;
    if (access(path, R_OK) != 0) { /* several tests share a file */
        st = qn_synth_gguf(path, &sy, NULL, &err);
        if (st != QN_OK) fprintf(stderr, "synth %s: %s\n", sp->file, err.msg);
        assert_int_equal(st, QN_OK);
        if (g_n_made < 32) snprintf(g_made[g_n_made++], sizeof g_made[0], "%s", path);
    }
    qn_model *m = NULL;
    st = qn_model_load(path, &m, &err);
    if (st != QN_OK) fprintf(stderr, "load %s: %s\n", sp->file, err.msg);
    assert_int_equal(st, QN_OK);
    return m;
}

static void test_synth_types(void **state) {
    (void)state;
    static const synth_spec specs[] = {
        {"f16.gguf", QN_FTYPE_MOSTLY_F16, 4, false},   {"q8_0.gguf", QN_FTYPE_MOSTLY_Q8_0, 4, false},
        {"q4_1.gguf", QN_FTYPE_MOSTLY_Q4_1, 4, false}, {"q4_k_s.gguf", QN_FTYPE_MOSTLY_Q4_K_S, 4, false},
        {"q6_k.gguf", QN_FTYPE_MOSTLY_Q6_K, 4, false}, {"q4_k_s-qwen2-kv2.gguf", QN_FTYPE_MOSTLY_Q4_K_S, 2, true},
    };
    static const int ns[] = {2, 4};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        qn_model *m = load_synth(&specs[i]);
        check_model(specs[i].file, m, ns, 2, i == 0, TOL_SYNTH);
        if (i == 3) /* wo: 1024 input cols = 4 Q4_K blocks, so 8 ranks would cut blocks */
            expect_refused(m, 8, "'blk.0.attn_output.weight': row split of 1024 input cols 8 ways");
        qn_model_free(m);
    }
}

/* The load-time repack (Q2_K×8 .. Q6_K×8, Q4_0×8, Q5_0×8, Q5_1×8, Q8_0×8: llama_cpu.c): the forward with it gives
 * every logit of every step bit for bit as the same table without it (matmul_x8 cleared), on tied models (the
 * embedding is not repacked: the token lookup reads it) and untied ones (their output weight is). Q4_K_S's attn_v
 * weights are Q5_K; the Q2_K mix has Q2_K, Q3_K and Q4_K matmuls, Q3_K_M Q3_K, Q4_K and Q5_K; Q4_0, Q5_0, Q5_1 and
 * Q8_0 their own (against the scalar dot: see below; the Q5_1 and Q8_0 models untied, so that no matmul of theirs
 * stays on the AVX2 dot). Two threads, so rows split between them in whole groups. The plain run comes second: it
 * reads the file pages the repack dropped. */
static void test_repack(void **state) {
    (void)state;
    static const synth_spec specs[] = {{"q4_k_s.gguf", QN_FTYPE_MOSTLY_Q4_K_S, 4, false},
                                       {"q6_k.gguf", QN_FTYPE_MOSTLY_Q6_K, 4, false},
                                       {"q2_k.gguf", QN_FTYPE_MOSTLY_Q2_K, 4, false},
                                       {"q3_k_m.gguf", QN_FTYPE_MOSTLY_Q3_K_M, 2, false},
                                       {"q4_0.gguf", QN_FTYPE_MOSTLY_Q4_0, 4, false},
                                       {"q5_0.gguf", QN_FTYPE_MOSTLY_Q5_0, 4, false},
                                       {"q5_1-qwen2-kv2.gguf", QN_FTYPE_MOSTLY_Q5_1, 2, true},
                                       {"q8_0-qwen2-kv2.gguf", QN_FTYPE_MOSTLY_Q8_0, 2, true},
                                       {"q4_k_s-qwen2-kv2.gguf", QN_FTYPE_MOSTLY_Q4_K_S, 2, true}};
    qn_cpu_kernels plain = g_kern, scalar;
    memset(plain.matmul_x8, 0, sizeof plain.matmul_x8);
    /* Q4_0×8, Q5_0×8, Q5_1×8 and Q8_0×8 keep the scalar dot's order (the 1-row AVX2 dots sum in lanes, so they round
     * otherwise): the plain run takes the scalar dot for those formats */
    assert_int_equal(qn_cpu_kernels_select(QN_CPU_ISA_SCALAR, &scalar), QN_OK);
    static const qn_qformat scalar_order[] = {QN_QFORMAT_Q4_0, QN_QFORMAT_Q5_0, QN_QFORMAT_Q5_1, QN_QFORMAT_Q8_0};
    for (size_t i = 0; i < sizeof scalar_order / sizeof scalar_order[0]; i++) {
        const qn_qformat f = scalar_order[i];
        plain.vec_dot[f] = scalar.vec_dot[f], plain.vec_dot_x4[f] = NULL, plain.vec_dot_tile[f] = NULL;
    }
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        qn_model *m = load_synth(&specs[i]);
        run_out rp = {0}, pl = {0};
        size_t bytes_rp = 0, bytes_pl = 1;
        run_plain_kern(m, &g_kern, &rp, &bytes_rp);
        run_plain_kern(m, &plain, &pl, &bytes_pl);
        fprintf(stderr, "%s (%s): %zu bytes repacked\n", specs[i].file, g_kern.isa_name, bytes_rp);
        assert_int_equal(bytes_pl, 0);
        if (g_kern.matmul_x8[QN_QFORMAT_Q4_K]) assert_true(bytes_rp > 0);
        const size_t n = (size_t)(STEPS + 1) * S * (size_t)m->cfg.n_vocab;
        assert_memory_equal(rp.logits, pl.logits, sizeof(float) * n);
        assert_memory_equal(rp.tokens, pl.tokens, sizeof rp.tokens);
        free(rp.logits), free(pl.logits);
        qn_model_free(m);
    }
}

/* ---------------------------------------------------------------- lutq (GPTQ/AWQ/NF4 layout) */

/* A lutq copy of w: groups of 96 kernel columns (the last one shorter; boundaries fall inside rank
 * ranges), min/max zero points, optional act-order perm. Buffers are appended to keep[]. */
static qn_weight make_lutq(const qn_weight *w, int bits, bool act_order, qn_rng *rng, void **keep, int *n_keep) {
    const int64_t k = w->k, n = w->n, G = (k + 95) / 96;
    const float qmax = (float)((1 << bits) - 1);
    qn_lutq_weight *lw = malloc(sizeof *lw);
    void *buf = malloc(qn_lutq_bytes(k, n, G, bits, act_order, true));
    float *row = malloc(sizeof(float) * (size_t)k);
    assert_true(lw && buf && row);
    keep[(*n_keep)++] = lw, keep[(*n_keep)++] = buf;
    int32_t *gstart, *perm;
    uint8_t *codes;
    float *scale, *zero;
    assert_int_equal(qn_lutq_init(lw, buf, k, n, G, bits, act_order, true, &gstart, &perm, &codes, &scale, &zero), QN_OK);
    for (int64_t g = 0; g <= G; g++) gstart[g] = (int32_t)(g < G ? g * 96 : k);
    if (perm) {
        qn_rng_permutation(rng, perm, k);
    }
    for (int64_t r = 0; r < n; r++) {
        assert_int_equal(qn_weight_row_f32(w, r, row), QN_OK);
        for (int64_t g = 0; g < G; g++) {
            float lo = INFINITY, hi = -INFINITY;
            for (int64_t j = gstart[g]; j < gstart[g + 1]; j++) {
                const float v = row[perm ? perm[j] : j];
                lo = fminf(lo, v), hi = fmaxf(hi, v);
            }
            const float sc = hi > lo ? (hi - lo) / qmax : 1.0f, z = -lo / sc;
            scale[r * G + g] = sc, zero[r * G + g] = z;
            for (int64_t j = gstart[g]; j < gstart[g + 1]; j++) {
                const float q = roundf(row[perm ? perm[j] : j] / sc + z);
                qn_lutq_set_code(codes, k, bits, r, j, (uint32_t)fminf(fmaxf(q, 0.0f), qmax));
            }
        }
    }
    free(row);
    return (qn_weight){.name = NULL, .fmt = QN_QFORMAT_F32, .k = k, .n = n, .data = lw->codes, .lutq = lw};
}

static void test_lutq(void **state) {
    (void)state;
    const synth_spec sp = {"f16.gguf", QN_FTYPE_MOSTLY_F16, 4, false};
    qn_model *full = load_synth(&sp);
    qn_rng rng;
    qn_rng_seed(&rng, 3);
    void *keep[64];
    int n_keep = 0;
    qn_layer_weights *layers = calloc((size_t)full->cfg.n_layer, sizeof *layers);
    assert_non_null(layers);
    for (int il = 0; il < full->cfg.n_layer; il++) {
        const qn_layer_weights *F = &full->layers[il];
        qn_layer_weights *L = &layers[il];
        *L = *F;
        L->wq = make_lutq(&F->wq, 8, false, &rng, keep, &n_keep);
        L->wk = make_lutq(&F->wk, 4, false, &rng, keep, &n_keep);
        L->wv = make_lutq(&F->wv, 4, true, &rng, keep, &n_keep);
        L->wo = make_lutq(&F->wo, 4, il == 0, &rng, keep, &n_keep);  /* act-order row split in layer 0 */
        L->w_gate = make_lutq(&F->w_gate, 4, false, &rng, keep, &n_keep);
        L->w_up = make_lutq(&F->w_up, 8, true, &rng, keep, &n_keep);
        L->w_down = make_lutq(&F->w_down, 4, il == 1, &rng, keep, &n_keep);
    }
    qn_model m = *full; /* shallow: the lutq linears, the rest borrowed */
    m.layers = layers;
    static const int ns[] = {2, 4};
    check_model("lutq (4/8-bit, g96, perm)", &m, ns, 2, false, TOL_SYNTH);
    for (int i = 0; i < n_keep; i++) free(keep[i]);
    free(layers);
    qn_model_free(full);
}

/* ---------------------------------------------------------------- shard views */

/* The rank models hold the local counts and the slices partition the full weights. */
static void test_shard_geometry(void **state) {
    (void)state;
    const synth_spec sp = {"q4_k_s-qwen2-kv2.gguf", QN_FTYPE_MOSTLY_Q4_K_S, 2, true};
    qn_model *full = load_synth(&sp);
    qn_error err = {0};
    int64_t vocab = 0;
    for (int r = 0; r < 4; r++) {
        qn_tp_model_shard *s = NULL;
        assert_int_equal(qn_tp_model_shard_create(full, 4, r, &s, &err), QN_OK);
        assert_int_equal(s->m.cfg.n_head, 2);
        assert_int_equal(s->m.cfg.n_head_kv, 1);            /* 2 kv heads replicated over 4 ranks */
        assert_int_equal(s->heads.kv_head_begin, r / 2);
        assert_int_equal(s->m.cfg.n_ff, 256);
        const qn_layer_weights *L = &s->m.layers[0], *F = &full->layers[0];
        assert_int_equal(L->wk.n, 128);
        assert_ptr_equal(L->bk, F->bk + (r / 2) * 128);
        assert_ptr_equal(L->bq, F->bq + r * 256);
        assert_ptr_equal(L->wk.data, (const uint8_t *)F->wk.data + (size_t)(r / 2) * 128 *
                                                                     qn_qformat_row_bytes(F->wk.fmt, F->wk.k));
        assert_int_equal(L->wo.k, 256);
        assert_int_equal(L->w_down.k, 256);
        /* the copied row slice is the byte sub-range of the full row */
        const size_t rb = qn_qformat_row_bytes(F->w_down.fmt, 256), rbf = qn_qformat_row_bytes(F->w_down.fmt, 1024);
        assert_memory_equal((const uint8_t *)L->w_down.data + 5 * rb, (const uint8_t *)F->w_down.data + 5 * rbf + r * rb, rb);
        /* vocab-parallel embedding: the LM head's rows of the (untied) token_embd */
        const int64_t nv = s->vocab_end - s->vocab_begin;
        assert_int_equal(s->m.tok_embd.n, nv);
        assert_int_equal(s->m.output.n, nv);
        assert_ptr_equal(s->m.tok_embd.data, (const uint8_t *)full->tok_embd.data +
                                                 (size_t)s->vocab_begin * qn_qformat_row_bytes(full->tok_embd.fmt, full->tok_embd.k));
        assert_ptr_not_equal(s->m.tok_embd.data, s->m.output.data);
        vocab += nv;
        qn_tp_model_shard_destroy(s);
    }
    assert_int_equal(vocab, full->cfg.n_vocab);
    qn_model_free(full);
}

/* Tied embeddings: each rank's LM head and embedding are one view (the device path uploads it once), and
 * the rank embeddings partition the table; TP = 1 keeps the whole table. */
static void test_shard_tied_embd(void **state) {
    (void)state;
    const synth_spec sp = {"q8_0.gguf", QN_FTYPE_MOSTLY_Q8_0, 4, false};
    qn_model *full = load_synth(&sp);
    assert_ptr_equal(full->output.data, full->tok_embd.data);
    qn_error err = {0};
    const size_t rb = qn_qformat_row_bytes(full->tok_embd.fmt, full->tok_embd.k);
    for (int n = 1; n <= 4; n *= 2) {
        int64_t next = 0;
        for (int r = 0; r < n; r++) {
            qn_tp_model_shard *s = NULL;
            assert_int_equal(qn_tp_model_shard_create(full, n, r, &s, &err), QN_OK);
            assert_int_equal(s->vocab_begin, next);
            assert_ptr_equal(s->m.tok_embd.data, s->m.output.data);
            assert_int_equal(s->m.tok_embd.n, s->m.output.n);
            assert_ptr_equal(s->m.tok_embd.data, (const uint8_t *)full->tok_embd.data + (size_t)s->vocab_begin * rb);
            if (n == 1) assert_int_equal(s->m.tok_embd.n, full->cfg.n_vocab);
            else assert_true(s->m.tok_embd.n < full->cfg.n_vocab);
            next = s->vocab_end;
            qn_tp_model_shard_destroy(s);
        }
        assert_int_equal(next, full->cfg.n_vocab);
    }
    qn_model_free(full);
}

/* ---------------------------------------------------------------- the default model */

static void test_smollm2(void **state) {
    (void)state;
    qn_model *m = NULL;
    qn_error err = {0};
    assert_int_equal(qn_model_load(qn_test_default_model(), &m, &err), QN_OK);
    expect_refused(m, 2, "9 attention heads cannot be split 2 ways");
    expect_refused(m, 4, "9 attention heads cannot be split 4 ways");
    static const int ns[] = {3}; /* 3 q heads, 1 kv head, 512 ffn rows per rank */
    check_model("SmolLM2-135M Q4_1", m, ns, 1, true, TOL_SMOLLM2);
    qn_model_free(m);
}

/* Copy-on-write through qn_tp_cpu_copy_block: a sequence whose last block is a copy of another's
 * continues exactly like the original on every rank. */
static void test_copy_block(void **state) {
    (void)state;
    const synth_spec sp = {"q8_0.gguf", QN_FTYPE_MOSTLY_Q8_0, 4, false};
    qn_model *m = load_synth(&sp);
    const int64_t V = m->cfg.n_vocab;
    qn_tp_cpu *tp = NULL;
    qn_error err = {0};
    assert_int_equal(qn_tp_cpu_create(m, &g_kern, 2, 1, 16, 32, BS, NBLK, &tp, &err), QN_OK);
    assert_int_equal(qn_tp_cpu_kv_heads(tp), 2);
    /* seq A: 6 tokens in blocks 9, 4 */
    int32_t tok[6] = {11, 22, 33, 44, 55, 66}, pos[6] = {0, 1, 2, 3, 4, 5}, seq[6] = {0}, slot[6], row = 5;
    int32_t tabs[2][2] = {{9, 4}, {9, 17}};
    for (int i = 0; i < 6; i++) slot[i] = tabs[0][i / BS] * BS + i % BS;
    qn_fwd_batch b = {.n_tokens = 6, .tokens = tok, .positions = pos, .seq_idx = seq, .slot_mapping = slot,
                      .n_seqs = 1, .block_tables = &tabs[0][0], .max_blocks_per_seq = 2, .n_out = 1, .out_rows = &row};
    float *lg = malloc(sizeof(float) * 2 * (size_t)V);
    assert_non_null(lg);
    assert_int_equal(qn_tp_cpu_forward(tp, &b, lg, &err), QN_OK);
    /* fork: B shares block 9 and gets a copy of block 4 as block 17; both decode token 77 at position 6 */
    qn_tp_cpu_copy_block(tp, 4, 17);
    int32_t t2[2] = {77, 77}, p2[2] = {6, 6}, s2[2] = {0, 1}, sl2[2] = {4 * BS + 2, 17 * BS + 2}, r2[2] = {0, 1};
    b = (qn_fwd_batch){.n_tokens = 2, .tokens = t2, .positions = p2, .seq_idx = s2, .slot_mapping = sl2, .n_seqs = 2,
                       .block_tables = &tabs[0][0], .max_blocks_per_seq = 2, .n_out = 2, .out_rows = r2};
    assert_int_equal(qn_tp_cpu_forward(tp, &b, lg, &err), QN_OK);
    assert_true(qn_check_close_f("forked seq", lg + V, lg, (size_t)V, 1e-5, 1e-5, 1e-10, NULL));
    /* a bad batch fails on every rank, none left waiting in a collective */
    t2[0] = (int32_t)V;
    assert_int_equal(qn_tp_cpu_forward(tp, &b, lg, &err), QN_ERR_INVALID_ARG);
    t2[0] = 77;
    assert_int_equal(qn_tp_cpu_forward(tp, &b, lg, &err), QN_OK);
    free(lg);
    qn_tp_cpu_destroy(tp);
    qn_model_free(m);
}

int main(void) {
    if (!qn_test_default_model()) {
        printf("skip: default model missing (scripts/fetch_model.sh)\n");
        return 77;
    }
    if (qn_cpu_kernels_select(QN_CPU_ISA_AUTO, &g_kern) != QN_OK) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_geometry), cmocka_unit_test(test_shard_tied_embd), cmocka_unit_test(test_copy_block),
        cmocka_unit_test(test_synth_types),    cmocka_unit_test(test_repack),
        cmocka_unit_test(test_lutq),           cmocka_unit_test(test_smollm2),
    };
    const int rc = cmocka_run_group_tests(tests, NULL, NULL);
    for (int i = 0; i < g_n_made; i++) unlink(g_made[i]);
    if (g_n_made > 0) rmdir(dirname(g_made[0]));
    return rc;
}
