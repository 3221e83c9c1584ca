/* test_gpu_forward.c — the CUDA forward pass (model/llama_cuda.c through exec/backend.h and
 * exec/context.h) against the CPU forward pass, which is itself matched with llama.cpp's CPU backend
 * (tests/e2e/test_llamacpp_parity.py). Exit 77 (skipped) without a GPU.
 *
 * Two CPU references. The CPU path quantizes activations to each weight type's vec_dot_type (Q8_1
 * for Q4_1 weights, as llama.cpp's CPU backend does); the GPU path feeds fp16 activations to the
 * tensor cores. So (a) GPU vs CPU on the same Q4_1 file differ by the CPU's 8-bit activation rounding
 * (measured on an H200: NMSE ~8e-4, perplexity within 0.3%), while (b) the GPU on the Q4_1 file vs the
 * CPU on an F16 copy of the same weights (`quern quantize` to F16 is exact up to one fp16 rounding
 * of d*q+m; the CPU then uses fp16 activations like the GPU) isolates the GPU's own arithmetic, and
 * (c) F16 copy on both sides compares the two forward passes on identical weights and activation
 * precision. The tight bounds are on (b) and (c).
 *
 *  1. real model (default SmolLM2-135M Q4_1; skipped when absent): 4 windows of 512 tokens of
 *     alice29.txt (scripts/fetch_testdata.sh; fails naming it when absent), all logits, GPU prefill in chunks of 128
 *     (chunked prefill reads the earlier blocks) vs CPU in one step. Reported for (a), (b), (c):
 *     top-1 agreement (all positions, and where the reference's top-1/top-2 margin exceeds 0.02
 *     logits: a nearer tie flips with any change of summation order), per-row relative error
 *     max|g - c| / max|c|, NMSE, perplexity of both.
 *     Asserted: (b) and (c) top-1 >= 99.9% of margin > 0.02 positions, NMSE <= 1e-4 (b), 1e-5 (c);
 *     (a) NMSE <= 2e-3 and perplexities within 0.5%.
 *  2. greedy: 8 prompts x 48 tokens, GPU sampling on the device (temperature 0) vs CPU argmax: the F16
 *     copy on both (asserted: >= 7 of 8 identical); the Q4_1 file, whose GPU decode steps take the int8
 *     path (reported), and its decode-step logits teacher-forced along the CPU's continuation (asserted
 *     like (a): NMSE <= 2e-3, top-1 >= 95% where the margin exceeds 0.02).
 *  3. paged batches through qn_backend (F16 copy both sides): 3 sequences, shuffled block tables, a
 *     prefill step, a mixed step (decode + a second prefill chunk), 8 decode steps (the CUDA graph
 *     path): NMSE <= 1e-5, top-1 equal wherever the margin exceeds 0.02.
 *  4. graphs: 24 decode steps with CUDA graphs on and off give bit-identical logits.
 *  5. synthetic models (quern synth, seeded random weights; real shapes): tiny (GQA 4, head_dim 64)
 *     in F16, Q8_0, Q4_0, Q5_1, Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K; llama3-8b truncated to 2 layers
 *     in Q4_K_M (head_dim 128, vocab 128256): 64-token prompt, GPU vs CPU on the same file: NMSE
 *     <= 3e-3 (the CPU's 8-bit activations, as in (a); F16 files: <= 1e-5). Then 4 decode steps (the
 *     int8 path for the legacy formats and Q4_K..Q6_K, its activations written by the norms and silu_mul,
 *     in a CUDA graph): NMSE <= 6e-3, twice the prompt's bound since both sides now round activations to
 *     8 bits, independently (a first bound from that argument, not yet measured; F16 files: <= 1e-5).
 *  6. tensor parallel over NCCL (tp/forward_cuda.c): the NCCL path with one rank (--tp-nccl) gives logits
 *     bit-identical to the plain CUDA forward (a one-rank all-reduce is a copy); with >= 2 GPUs, the tiny
 *     synthetic model (4 heads, 1 kv head) at TP = 2 (and 4 with 4 GPUs) vs TP = 1: NMSE <= 1e-6 (F16
 *     weights: only the o/down summation order changes).
 * QN_TEST_QUICK=1 runs 4 and 3 only (for compute-sanitizer). */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "exec/backend.h"
#include "exec/context.h"
#include "exec/sampling.h"
#include "model/model.h"
#include "model/quantize.h"
#include "model/synth.h"
#include "tokenizer/vocab.h"

static qn_model *g_model;      /* the default model (Q4_1) */
static qn_model *g_f16;        /* the same weights requantized to F16 */
static const char *g_model_path;
static char g_f16_path[256];

static bool have_gpu(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

static qn_ctx *make_ctx(const qn_model *m, qn_device_kind dev, int32_t n_ctx, int32_t n_batch, bool graphs) {
    qn_ctx_params p = qn_ctx_params_default();
    p.n_ctx = n_ctx, p.n_batch = n_batch, p.device = dev, p.cuda_graphs = graphs;
    p.n_threads = (int32_t)sysconf(_SC_NPROCESSORS_ONLN);
    if (p.n_threads > 16) p.n_threads = 16;
    qn_ctx *c = NULL;
    qn_error err = {0};
    if (qn_ctx_create(m, &p, &c, &err) != QN_OK) fprintf(stderr, "ctx (%s): %s\n", dev == QN_DEVICE_CPU ? "cpu" : "cuda", err.msg);
    return c;
}

typedef struct cmp_stats {
    int64_t rows, top1, top1_margin_rows, top1_margin_ok;
    double rel_sum, rel_max, se, ref_sq;
    double nll_gpu, nll_cpu;
    int64_t n_nll;
} cmp_stats;

static int32_t argmax2(const float *x, int32_t n, float *margin) {
    int32_t b = 0, s = -1;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b]) s = b, b = i;
        else if (s < 0 || x[i] > x[s]) s = i;
    *margin = s >= 0 ? x[b] - x[s] : INFINITY;
    return b;
}

static double logsumexp(const float *x, int32_t n) {
    float mx = x[0];
    for (int32_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int32_t i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

/* rows of gpu vs cpu logits; next: the following token of each row for perplexity (or NULL) */
static void compare_rows(cmp_stats *st, const float *gpu, const float *cpu, int64_t n_rows, int32_t V, const int32_t *next) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *g = gpu + r * V, *c = cpu + r * V;
        float mg, mc;
        const int32_t ag = argmax2(g, V, &mg), ac = argmax2(c, V, &mc);
        st->rows++;
        st->top1 += ag == ac;
        if (mc > 0.02f) st->top1_margin_rows++, st->top1_margin_ok += ag == ac;
        double dmax = 0, cmax = 0;
        for (int32_t i = 0; i < V; i++) {
            const double d = (double)g[i] - c[i];
            dmax = fabs(d) > dmax ? fabs(d) : dmax;
            cmax = fabs(c[i]) > cmax ? fabs(c[i]) : cmax;
            st->se += d * d;
            st->ref_sq += (double)c[i] * c[i];
        }
        const double rel = dmax / (cmax > 0 ? cmax : 1);
        st->rel_sum += rel;
        st->rel_max = rel > st->rel_max ? rel : st->rel_max;
        if (next) {
            st->nll_gpu += logsumexp(g, V) - g[next[r]];
            st->nll_cpu += logsumexp(c, V) - c[next[r]];
            st->n_nll++;
        }
    }
}

static void report(const char *what, const cmp_stats *s) {
    printf("%s: %lld rows, top-1 %.4f%% (%lld/%lld), margin>0.02: %.4f%% (%lld/%lld), rel err mean %.3e max %.3e, "
           "NMSE %.3e",
           what, (long long)s->rows, 100.0 * s->top1 / s->rows, (long long)s->top1, (long long)s->rows,
           s->top1_margin_rows ? 100.0 * s->top1_margin_ok / s->top1_margin_rows : 100.0, (long long)s->top1_margin_ok,
           (long long)s->top1_margin_rows, s->rel_sum / s->rows, s->rel_max, s->se / s->ref_sq);
    if (s->n_nll)
        printf(", ppl gpu %.4f cpu %.4f (%+.3f%%)", exp(s->nll_gpu / s->n_nll), exp(s->nll_cpu / s->n_nll),
               100.0 * (exp((s->nll_gpu - s->nll_cpu) / s->n_nll) - 1.0));
    printf("\n");
    fflush(stdout);
}


/* ------------------------------------------------------------------------------------------------ 1 */

/* Tokens of alice29.txt (scripts/fetch_testdata.sh). The bounds below were set on that text; a repeated
 * paragraph, the old fallback, is far more predictable and gave (a) NMSE 3.6e-3 (6026bd1): the test needs
 * the real text and says so instead. */
static int32_t *text_tokens(const qn_model *m, int32_t want, int32_t *n_out) {
    char path[1024];
    snprintf(path, sizeof path, "%s/.cache/quern/data/alice29.txt", getenv("HOME") ? getenv("HOME") : "");
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("%s is missing: run scripts/fetch_testdata.sh (the GPU scripts copy it to the device)", path);
    fseek(fp, 0, SEEK_END);
    const size_t len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *text = malloc(len + 1);
    assert_non_null(text);
    const bool ok = len > 0 && fread(text, 1, len, fp) == len;
    fclose(fp);
    if (!ok) fail_msg("%s: cannot read it", path);
    text[len] = 0;
    const int32_t cap = (int32_t)len + 16;
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)cap), n = 0;
    assert_int_equal(qn_vocab_tokenize(m->vocab, text, len, true, false, toks, cap, &n), QN_OK);
    free(text);
    *n_out = n < want ? n : want;
    return toks;
}

/* all-logit windows of toks through a (GPU) and b (CPU) models */
static void compare_windows(const char *what, qn_model *mg, qn_model *mc, const int32_t *toks, int32_t n_tok, cmp_stats *st) {
    const int32_t W = 512, NW = 4, V = g_model->cfg.n_vocab;
    qn_ctx *cpu = make_ctx(mc, QN_DEVICE_CPU, W, W, true);
    qn_ctx *gpu = make_ctx(mg, QN_DEVICE_CUDA, W, 128, true);
    assert_non_null(cpu);
    assert_non_null(gpu);
    float *lc = malloc(sizeof(float) * (size_t)W * V), *lg = malloc(sizeof(float) * (size_t)W * V);
    qn_error err = {0};
    for (int32_t w = 0; (w + 1) * W + 1 <= n_tok && w < NW; w++) {
        qn_ctx_reset(cpu), qn_ctx_reset(gpu);
        for (size_t i = 0; i < (size_t)W * V; i++) lg[i] = NAN; /* poison */
        assert_int_equal(qn_ctx_eval(cpu, toks + w * W, W, 0, true, lc, &err), QN_OK);
        if (qn_ctx_eval(gpu, toks + w * W, W, 0, true, lg, &err) != QN_OK) fail_msg("gpu eval: %s", err.msg);
        compare_rows(st, lg, lc, W, V, toks + w * W + 1);
    }
    report(what, st);
    free(lc), free(lg);
    qn_ctx_destroy(cpu), qn_ctx_destroy(gpu);
}

static void test_real_model_logits(void **state) {
    (void)state;
    if (!g_model) skip();
    int32_t n_tok = 0;
    int32_t *toks = text_tokens(g_model, 512 * 4 + 1, &n_tok);
    assert_true(n_tok >= 512 + 1);
    cmp_stats a = {0}, b = {0}, c = {0};
    compare_windows("(a) gpu q4_1 vs cpu q4_1", g_model, g_model, toks, n_tok, &a);
    compare_windows("(b) gpu q4_1 vs cpu f16 copy", g_model, g_f16, toks, n_tok, &b);
    compare_windows("(c) gpu f16 copy vs cpu f16 copy", g_f16, g_f16, toks, n_tok, &c);
    free(toks);
    assert_true(b.top1_margin_ok >= 0.999 * b.top1_margin_rows);
    assert_true(c.top1_margin_ok >= 0.999 * c.top1_margin_rows);
    assert_true(b.se / b.ref_sq <= 1e-4);
    assert_true(c.se / c.ref_sq <= 1e-5);
    assert_true(a.se / a.ref_sq <= 2e-3);
    assert_true(fabs(exp((a.nll_gpu - a.nll_cpu) / a.n_nll) - 1.0) <= 5e-3);
}

/* ------------------------------------------------------------------------------------------------ 2 */

/* Greedy continuation of toks[0..n) on ctx for NG tokens (GPU contexts sample on the device). */
static void greedy_run(qn_ctx *c, const int32_t *toks, int32_t n, int NG, int32_t V, float *logits, int32_t *out) {
    qn_error err = {0};
    if (qn_ctx_samples_on_device(c)) {
        const qn_sample_row_params sp = {.temperature = 0.0f, .top_p = 1.0f};
        if (qn_ctx_eval_prompt_sample(c, toks, n, &sp, &out[0], &err) != QN_OK) fail_msg("gpu: %s", err.msg);
        for (int g = 1; g < NG; g++)
            if (qn_ctx_eval_sample(c, out[g - 1], n + g - 1, &sp, &out[g], &err) != QN_OK) fail_msg("gpu: %s", err.msg);
        return;
    }
    assert_int_equal(qn_ctx_eval(c, toks, n, 0, false, logits, &err), QN_OK);
    for (int g = 0; g < NG; g++) {
        out[g] = qn_argmax_f32(logits, V);
        if (g + 1 < NG) assert_int_equal(qn_ctx_eval(c, &out[g], 1, n + g, false, logits, &err), QN_OK);
    }
}

static int common_prefix(const int32_t *a, const int32_t *b, int n) {
    int i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Decode-step logits of ctx c, teacher-forced along `path` (the prompt, then path tokens one at a time),
 * into out[NG][V]. */
static void forced_decode(qn_ctx *c, const int32_t *toks, int32_t n, const int32_t *path, int NG, int32_t V, float *out) {
    qn_error err = {0};
    if (qn_ctx_eval(c, toks, n, 0, false, out, &err) != QN_OK) fail_msg("forced decode: %s", err.msg);
    for (int g = 1; g < NG; g++)
        if (qn_ctx_eval(c, &path[g - 1], 1, n + g - 1, false, out + (size_t)g * V, &err) != QN_OK)
            fail_msg("forced decode: %s", err.msg);
}

/* 2. The GPU's decode steps on the Q4_1 file run the int8 path (MMVQ: activations quantized to q8, as the
 * CPU's Q8_1 vec_dot does from f32 and llama.cpp's CUDA MMVQ does), so greedy continuations of the Q4_1 file
 * drift from either CPU reference at near-ties; they are reported. Asserted: on the F16 copy (fp16 paths on
 * both sides) >= 7 of 8 continuations identical; on the Q4_1 file, the decode-step logits teacher-forced along
 * the CPU's Q4_1 continuation agree with the CPU's within the bounds of (a): NMSE <= 2e-3, top-1 >= 95% where
 * the margin exceeds 0.02. */
static void test_greedy(void **state) {
    (void)state;
    if (!g_model) skip();
    static const char *prompts[] = {
        "The capital of France is", "Once upon a time, in a small village,", "def fibonacci(n):",
        "The three primary colors are", "Water boils at a temperature of", "In 1969, the first humans",
        "A haiku about autumn:\n", "The most important rule of programming is",
    };
    enum { NP = 8, NG = 48 };
    const int32_t V = g_model->cfg.n_vocab;
    int same_f16 = 0, pre_f16 = 0, same_qf = 0, pre_qf = 0, same_qq = 0, pre_qq = 0;
    float *logits = malloc(sizeof(float) * (size_t)V);
    float *lc = malloc(sizeof(float) * (size_t)NG * V), *lg = malloc(sizeof(float) * (size_t)NG * V);
    cmp_stats st = {0};
    for (int p = 0; p < NP; p++) {
        int32_t toks[256], n = 0, cpu_f16[NG], cpu_q[NG], gpu_f16[NG], gpu_q[NG];
        assert_int_equal(qn_vocab_tokenize(g_model->vocab, prompts[p], strlen(prompts[p]), true, false, toks, 128, &n), QN_OK);
        qn_ctx *c_f16 = make_ctx(g_f16, QN_DEVICE_CPU, 256, 256, true), *c_q = make_ctx(g_model, QN_DEVICE_CPU, 256, 256, true);
        qn_ctx *g_f = make_ctx(g_f16, QN_DEVICE_CUDA, 256, 256, true), *g_q = make_ctx(g_model, QN_DEVICE_CUDA, 256, 256, true);
        greedy_run(c_f16, toks, n, NG, V, logits, cpu_f16);
        greedy_run(c_q, toks, n, NG, V, logits, cpu_q);
        greedy_run(g_f, toks, n, NG, V, logits, gpu_f16);
        greedy_run(g_q, toks, n, NG, V, logits, gpu_q);
        const int a = common_prefix(cpu_f16, gpu_f16, NG), b = common_prefix(cpu_f16, gpu_q, NG),
                  c = common_prefix(cpu_q, gpu_q, NG);
        same_f16 += a == NG, same_qf += b == NG, same_qq += c == NG;
        pre_f16 += a, pre_qf += b, pre_qq += c;
        printf("greedy prompt %d: f16 copy gpu vs cpu %d/%d; q4_1 gpu vs cpu f16 copy %d/%d, vs cpu q4_1 %d/%d\n", p, a, NG,
               b, NG, c, NG);
        qn_ctx_reset(c_q), qn_ctx_reset(g_q);
        forced_decode(c_q, toks, n, cpu_q, NG, V, lc);
        forced_decode(g_q, toks, n, cpu_q, NG, V, lg);
        compare_rows(&st, lg, lc, NG, V, NULL);
        qn_ctx_destroy(c_f16), qn_ctx_destroy(c_q), qn_ctx_destroy(g_f), qn_ctx_destroy(g_q);
    }
    printf("greedy: f16 copy gpu vs cpu %d/%d identical (mean common prefix %.1f of %d); q4_1 gpu vs cpu f16 copy "
           "%d/%d (%.1f), vs cpu q4_1 %d/%d (%.1f)\n",
           same_f16, NP, (double)pre_f16 / NP, NG, same_qf, NP, (double)pre_qf / NP, same_qq, NP, (double)pre_qq / NP);
    report("q4_1 decode steps (gpu int8 path) vs cpu q4_1, teacher-forced", &st);
    free(logits), free(lc), free(lg);
    assert_true(same_f16 >= 7);
    assert_true(st.se / st.ref_sq <= 2e-3);
    assert_true(st.top1_margin_ok >= 0.95 * st.top1_margin_rows);
}

/* ------------------------------------------------------------------------------------------------ 3 */

typedef struct seq_state {
    int32_t n_done;          /* tokens in the cache */
    int32_t table[64];       /* block ids */
    int32_t toks[512];
} seq_state;

static qn_backend *make_backend(const qn_model *m, qn_device_kind dev, bool graphs) {
    qn_backend_params p = qn_backend_params_default();
    p.device = dev, p.max_tokens = 128, p.max_seqs = 4, p.max_ctx = 1024, p.n_blocks = 256, p.block_size = 16;
    p.cuda_graphs = graphs, p.n_threads = 4;
    qn_backend *b = NULL;
    qn_error err = {0};
    if (qn_backend_create(m, &p, &b, &err) != QN_OK) fprintf(stderr, "backend: %s\n", err.msg);
    return b;
}

/* The arrays of one step's batch (step_batch). */
typedef struct step_arrays {
    int32_t tokens[128], pos[128], seq[128], slot[128], rows[8], bt[4 * 64];
} step_arrays;

/* One step: for each sequence s, n_new[s] tokens (0 = not in the step) after its n_done; logits for each
 * sequence's last token. The batch points into a. */
static qn_fwd_batch step_batch(const seq_state *seqs, int n_seqs, const int32_t *n_new, step_arrays *a) {
    int32_t T = 0, S = 0, n_out = 0;
    for (int s = 0; s < n_seqs; s++) {
        if (!n_new[s]) continue;
        for (int i = 0; i < n_new[s]; i++) {
            const int32_t p = seqs[s].n_done + i;
            a->tokens[T] = seqs[s].toks[p], a->pos[T] = p, a->seq[T] = S;
            a->slot[T] = seqs[s].table[p / 16] * 16 + p % 16;
            T++;
        }
        memcpy(a->bt + S * 64, seqs[s].table, sizeof seqs[s].table);
        a->rows[n_out++] = T - 1;
        S++;
    }
    return (qn_fwd_batch){.n_tokens = T, .tokens = a->tokens, .positions = a->pos, .seq_idx = a->seq,
                          .slot_mapping = a->slot, .n_seqs = S, .block_tables = a->bt, .max_blocks_per_seq = 64,
                          .n_out = n_out, .out_rows = a->rows};
}

/* One step (step_batch) on both backends; compares the logits. */
static void paged_step(qn_backend *cpu, qn_backend *gpu, seq_state *seqs, int n_seqs, const int32_t *n_new, int32_t V,
                       cmp_stats *st) {
    step_arrays a;
    const qn_fwd_batch b = step_batch(seqs, n_seqs, n_new, &a);
    const int32_t n_out = b.n_out;
    float *lc = malloc(sizeof(float) * (size_t)n_out * V), *lg = malloc(sizeof(float) * (size_t)n_out * V);
    qn_error err = {0};
    assert_int_equal(qn_backend_forward(cpu, &b, lc, &err), QN_OK);
    if (qn_backend_forward(gpu, &b, lg, &err) != QN_OK) fail_msg("gpu step: %s", err.msg);
    compare_rows(st, lg, lc, n_out, V, NULL);
    for (int s = 0; s < n_seqs; s++) seqs[s].n_done += n_new[s];
    free(lc), free(lg);
}

static void test_paged_batches(void **state) {
    (void)state;
    if (!g_model) skip();
    const int32_t V = g_model->cfg.n_vocab;
    qn_backend *cpu = make_backend(g_f16, QN_DEVICE_CPU, true), *gpu = make_backend(g_f16, QN_DEVICE_CUDA, true);
    assert_non_null(cpu);
    assert_non_null(gpu);
    /* shuffled, disjoint block ids */
    int32_t ids[256];
    for (int i = 0; i < 256; i++) ids[i] = i;
    qn_rng r;
    qn_rng_seed(&r, 7);
    for (int i = 255; i > 0; i--) {
        const int j = (int)(qn_rng_u64(&r) % (uint64_t)(i + 1));
        const int32_t t = ids[i];
        ids[i] = ids[j], ids[j] = t;
    }
    seq_state *seqs = calloc(3, sizeof *seqs);
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < 64; i++) seqs[s].table[i] = ids[s * 64 + i];
        for (int i = 0; i < 512; i++) seqs[s].toks[i] = (int32_t)(qn_rng_u64(&r) % 40000) + 100;
    }
    cmp_stats st = {0};
    const int32_t s1[3] = {37, 20, 5}, s2[3] = {1, 19, 1}, sd[3] = {1, 1, 1};
    paged_step(cpu, gpu, seqs, 3, s1, V, &st);
    paged_step(cpu, gpu, seqs, 3, s2, V, &st);
    for (int k = 0; k < 8; k++) paged_step(cpu, gpu, seqs, 3, sd, V, &st); /* pure decode: graph path */
    report("paged batches (f16 copy)", &st);
    assert_true(st.se / st.ref_sq <= 1e-5);
    assert_int_equal(st.top1_margin_ok, st.top1_margin_rows);
    free(seqs);
    qn_backend_destroy(cpu), qn_backend_destroy(gpu);
}

/* Decode steps of 3 sequences replay the graph of 4 (llama_cuda.c decode_bucket: a padding row at position 0
 * of sequence 0 with no KV slot): the 3 real rows' logits equal those of the same steps launched kernel by
 * kernel without padding, bit for bit (the int8 decode path computes every token row alone), and the padding
 * stores nothing: the prefill and 2-sequence steps after the padded ones still agree. */
static void test_graph_padding(void **state) {
    (void)state;
    if (!g_model) skip();
    const int32_t V = g_model->cfg.n_vocab;
    qn_backend *ga = make_backend(g_model, QN_DEVICE_CUDA, true), *gb = make_backend(g_model, QN_DEVICE_CUDA, false);
    assert_non_null(ga);
    assert_non_null(gb);
    seq_state *seqs = calloc(3, sizeof *seqs);
    qn_rng r;
    qn_rng_seed(&r, 21);
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < 64; i++) seqs[s].table[i] = 80 * s + i + 1; /* block 0 unused */
        for (int i = 0; i < 512; i++) seqs[s].toks[i] = (int32_t)(qn_rng_u64(&r) % 40000) + 100;
    }
    const int32_t pre[3] = {20, 7, 13}, d3[3] = {1, 1, 1}, d2[3] = {1, 0, 1}, late[3] = {0, 9, 0};
    int steps = 0, differing = 0;
    const int32_t *plan[] = {pre, d3, d3, d3, d3, d3, d3, late, d3, d3, d2, d2, d2};
    for (size_t k = 0; k < sizeof plan / sizeof plan[0]; k++) {
        step_arrays a;
        const qn_fwd_batch b = step_batch(seqs, 3, plan[k], &a);
        const int32_t n_out = b.n_out;
        float *la = malloc(sizeof(float) * (size_t)n_out * V), *lb = malloc(sizeof(float) * (size_t)n_out * V);
        qn_error err = {0};
        if (qn_backend_forward(ga, &b, la, &err) != QN_OK) fail_msg("graph step %zu: %s", k, err.msg);
        if (qn_backend_forward(gb, &b, lb, &err) != QN_OK) fail_msg("plain step %zu: %s", k, err.msg);
        differing += memcmp(la, lb, sizeof(float) * (size_t)n_out * V) != 0;
        steps++;
        for (int s = 0; s < 3; s++) seqs[s].n_done += plan[k][s];
        free(la), free(lb);
    }
    printf("graph padding: %d of %d steps differ between the padded graphs and plain launches\n", differing, steps);
    assert_int_equal(differing, 0);
    free(seqs);
    qn_backend_destroy(ga), qn_backend_destroy(gb);
}

/* Decode graphs captured at start (qn_backend_capture_decode_graphs, as the engine does): every padded size
 * up to 4 sequences, both sampling paths, and no capture after that while decode steps of 3 and 2 sequences
 * sample greedily (FAST path) and with top-p (SORT path); the tokens equal those of plain launches. */
static void test_graph_precapture(void **state) {
    (void)state;
    if (!g_model) skip();
    qn_backend *ga = make_backend(g_model, QN_DEVICE_CUDA, true), *gb = make_backend(g_model, QN_DEVICE_CUDA, false);
    assert_non_null(ga);
    assert_non_null(gb);
    qn_error err = {0};
    int32_t n_graphs = -1;
    assert_int_equal(qn_backend_capture_decode_graphs(ga, 4, &n_graphs, &err), QN_OK);
    assert_int_equal(n_graphs, 3 * QN_SAMPLE_PATH_COUNT); /* 1, 2, 4 tokens */
    int32_t n_none = -1;
    assert_int_equal(qn_backend_capture_decode_graphs(gb, 4, &n_none, &err), QN_OK); /* graphs off: none */
    assert_int_equal(n_none, 0);
    qn_cuda_host_times h0;
    qn_backend_cuda_host_times(ga, &h0);
    assert_int_equal(h0.n_captures, n_graphs);
    seq_state *seqs = calloc(3, sizeof *seqs);
    qn_rng r;
    qn_rng_seed(&r, 23);
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < 64; i++) seqs[s].table[i] = 80 * s + i + 1;
        for (int i = 0; i < 512; i++) seqs[s].toks[i] = (int32_t)(qn_rng_u64(&r) % 40000) + 100;
    }
    const int32_t pre[3] = {11, 30, 5}, d3[3] = {1, 1, 1}, d2[3] = {0, 1, 1};
    const int32_t *plan[] = {pre, d3, d3, d3, d3, d2, d2, d2, d2};
    int differing = 0;
    for (size_t k = 0; k < sizeof plan / sizeof plan[0]; k++) {
        step_arrays a;
        const qn_fwd_batch b = step_batch(seqs, 3, plan[k], &a);
        qn_sample_row_params sp[3];
        for (int i = 0; i < b.n_out; i++)
            sp[i] = k % 2 ? (qn_sample_row_params){.temperature = 0.0f, .top_p = 1.0f}
                          : (qn_sample_row_params){.temperature = 0.8f, .top_p = 0.9f, .u = 0.37 + 0.1 * i};
        int32_t ta[3] = {-1, -1, -1}, tb[3] = {-2, -2, -2};
        if (qn_backend_forward_sample(ga, &b, sp, ta, &err) != QN_OK) fail_msg("pre-captured step %zu: %s", k, err.msg);
        if (qn_backend_forward_sample(gb, &b, sp, tb, &err) != QN_OK) fail_msg("plain step %zu: %s", k, err.msg);
        differing += memcmp(ta, tb, sizeof(int32_t) * (size_t)b.n_out) != 0;
        for (int s = 0; s < 3; s++) seqs[s].n_done += plan[k][s];
    }
    qn_cuda_host_times h1;
    qn_backend_cuda_host_times(ga, &h1);
    printf("graph pre-capture: %d graphs; %lld of %lld steps replayed, %lld captures after; %d of %zu steps' tokens "
           "differ from plain launches\n", n_graphs, (long long)h1.n_graph_steps, (long long)h1.n_steps,
           (long long)(h1.n_captures - h0.n_captures), differing, sizeof plan / sizeof plan[0]);
    assert_int_equal(h1.n_captures, h0.n_captures);
    assert_int_equal(h1.n_graph_steps, 8);
    assert_int_equal(differing, 0);
    free(seqs);
    qn_backend_destroy(ga), qn_backend_destroy(gb);
}

/* ------------------------------------------------------------------------------------------------ 4 */

static void test_graphs_bit_identical(void **state) {
    (void)state;
    if (!g_model) skip();
    const int32_t V = g_model->cfg.n_vocab, NP = 20, ND = 24;
    qn_ctx *a = make_ctx(g_model, QN_DEVICE_CUDA, 256, 64, true), *b = make_ctx(g_model, QN_DEVICE_CUDA, 256, 64, false);
    assert_non_null(a);
    assert_non_null(b);
    int32_t toks[64];
    for (int i = 0; i < NP + ND; i++) toks[i] = 200 + 37 * i;
    float *la = malloc(sizeof(float) * V), *lb = malloc(sizeof(float) * V);
    qn_error err = {0};
    assert_int_equal(qn_ctx_eval(a, toks, NP, 0, false, la, &err), QN_OK);
    assert_int_equal(qn_ctx_eval(b, toks, NP, 0, false, lb, &err), QN_OK);
    int differing = 0;
    for (int i = 0; i < ND; i++) {
        for (int32_t v = 0; v < V; v++) la[v] = lb[v] = NAN;
        if (qn_ctx_eval(a, &toks[NP + i], 1, NP + i, false, la, &err) != QN_OK) fail_msg("graph step: %s", err.msg);
        assert_int_equal(qn_ctx_eval(b, &toks[NP + i], 1, NP + i, false, lb, &err), QN_OK);
        differing += memcmp(la, lb, sizeof(float) * V) != 0;
    }
    printf("graphs: %d of %d decode steps differ from the kernel-by-kernel launch\n", differing, ND);
    assert_int_equal(differing, 0);
    free(la), free(lb);
    qn_ctx_destroy(a), qn_ctx_destroy(b);
}

/* ------------------------------------------------------------------------------------------------ 5 */

static void synth_case(const char *preset, const char *type, int n_layer) {
    qn_ftype ft;
    assert_int_equal(qn_ftype_parse(type, &ft), QN_OK);
    char path[256];
    snprintf(path, sizeof path, "/tmp/qn_gpu_fwd_%s_%s_%d.gguf", preset, type, (int)getpid());
    qn_synth_params sp = {.preset = qn_synth_preset_find(preset), .ftype = ft, .seed = 11, .n_layer = n_layer,
                          .vocab_path = g_model_path, .n_threads = 16};
    qn_error err = {0};
    if (qn_synth_gguf(path, &sp, NULL, &err) != QN_OK) fail_msg("synth %s %s: %s", preset, type, err.msg);
    qn_model *m = NULL;
    assert_int_equal(qn_model_load(path, &m, &err), QN_OK);
    const int32_t V = m->cfg.n_vocab, N = 64;
    int32_t toks[64];
    for (int i = 0; i < N; i++) toks[i] = (int32_t)((i * 7919 + 13) % 40000) + 50;
    qn_ctx *cpu = make_ctx(m, QN_DEVICE_CPU, 128, 128, true), *gpu = make_ctx(m, QN_DEVICE_CUDA, 128, 128, true);
    assert_non_null(cpu);
    assert_non_null(gpu);
    float *lc = malloc(sizeof(float) * (size_t)N * V), *lg = malloc(sizeof(float) * (size_t)N * V);
    assert_int_equal(qn_ctx_eval(cpu, toks, N, 0, true, lc, &err), QN_OK);
    if (qn_ctx_eval(gpu, toks, N, 0, true, lg, &err) != QN_OK) fail_msg("gpu %s %s: %s", preset, type, err.msg);
    cmp_stats st = {0}, sd = {0};
    compare_rows(&st, lg, lc, N, V, NULL);
    char what[96];
    snprintf(what, sizeof what, "synth %s %s (%d layers)", preset, type, m->cfg.n_layer);
    report(what, &st);
    for (int d = 0; d < 4; d++) { /* decode steps: n = 1 */
        const int32_t tok = (int32_t)((d * 104729 + 17) % 40000) + 50;
        assert_int_equal(qn_ctx_eval(cpu, &tok, 1, N + d, false, lc, &err), QN_OK);
        if (qn_ctx_eval(gpu, &tok, 1, N + d, false, lg, &err) != QN_OK) fail_msg("gpu %s %s decode: %s", preset, type, err.msg);
        compare_rows(&sd, lg, lc, 1, V, NULL);
    }
    snprintf(what, sizeof what, "synth %s %s (%d layers), 4 decode steps", preset, type, m->cfg.n_layer);
    report(what, &sd);
    assert_true(st.se / st.ref_sq <= (ft == QN_FTYPE_MOSTLY_F16 ? 1e-5 : 3e-3));
    assert_true(sd.se / sd.ref_sq <= (ft == QN_FTYPE_MOSTLY_F16 ? 1e-5 : 6e-3));
    free(lc), free(lg);
    qn_ctx_destroy(cpu), qn_ctx_destroy(gpu);
    qn_model_free(m);
    unlink(path);
}

static void test_synth_types(void **state) {
    (void)state;
    if (!g_model) skip();
    static const char *types[] = {"F16", "Q8_0", "Q4_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) synth_case("tiny", types[i], 4);
    synth_case("llama3-8b", "Q4_K_M", 2);
}

/* ------------------------------------------------------------------------------------------------ 6 */

static void tp_logits(const qn_model *m, int tp, bool nccl, const int32_t *toks, int32_t n, float *out) {
    qn_ctx_params p = qn_ctx_params_default();
    p.n_ctx = 128, p.n_batch = 128, p.device = QN_DEVICE_CUDA, p.tp_size = tp, p.tp_nccl = nccl;
    qn_ctx *c = NULL;
    qn_error err = {0};
    if (qn_ctx_create(m, &p, &c, &err) != QN_OK) fail_msg("tp %d%s: %s", tp, nccl ? " (nccl)" : "", err.msg);
    printf("tp %d: %s\n", tp, qn_ctx_backend_name(c));
    if (qn_ctx_eval(c, toks, n, 0, true, out, &err) != QN_OK) fail_msg("tp %d eval: %s", tp, err.msg);
    qn_ctx_destroy(c);
}

static void test_tensor_parallel(void **state) {
    (void)state;
    if (!g_model) skip();
    const int32_t N = 48, V = g_model->cfg.n_vocab;
    int32_t toks[48];
    for (int i = 0; i < N; i++) toks[i] = (int32_t)((i * 7919 + 13) % 40000) + 50;
    float *a = malloc(sizeof(float) * (size_t)N * V), *b = malloc(sizeof(float) * (size_t)N * V);
    tp_logits(g_f16, 1, false, toks, N, a);
    tp_logits(g_f16, 1, true, toks, N, b);
    const bool same = memcmp(a, b, sizeof(float) * (size_t)N * V) == 0;
    printf("tp: NCCL path with one rank %s the plain forward\n", same ? "is bit-identical to" : "DIFFERS from");
    assert_true(same);
    int n_gpu = 0;
    cudaGetDeviceCount(&n_gpu);
    if (n_gpu >= 2) {
        char path[256];
        snprintf(path, sizeof path, "/tmp/qn_gpu_fwd_tp_%d.gguf", (int)getpid());
        qn_ftype ft;
        assert_int_equal(qn_ftype_parse("F16", &ft), QN_OK);
        qn_synth_params sp = {.preset = qn_synth_preset_find("tiny"), .ftype = ft, .seed = 5, .n_layer = 4,
                              .vocab_path = g_model_path, .n_threads = 16};
        qn_error err = {0};
        qn_model *m = NULL;
        if (qn_synth_gguf(path, &sp, NULL, &err) != QN_OK || qn_model_load(path, &m, &err) != QN_OK) fail_msg("%s", err.msg);
        const int32_t Vt = m->cfg.n_vocab;
        float *r1 = malloc(sizeof(float) * (size_t)N * Vt), *rn = malloc(sizeof(float) * (size_t)N * Vt);
        tp_logits(m, 1, false, toks, N, r1);
        for (int tp = 2; tp <= 4 && tp <= n_gpu; tp *= 2) {
            for (size_t i = 0; i < (size_t)N * Vt; i++) rn[i] = NAN;
            tp_logits(m, tp, false, toks, N, rn);
            cmp_stats st = {0};
            compare_rows(&st, rn, r1, N, Vt, NULL);
            char what[64];
            snprintf(what, sizeof what, "tp %d vs 1 (tiny F16, %d GPUs)", tp, n_gpu);
            report(what, &st);
            assert_true(st.se / st.ref_sq <= 1e-6);
        }
        free(r1), free(rn);
        qn_model_free(m);
        unlink(path);
    } else {
        printf("tp: one GPU: TP >= 2 not run\n");
    }
    free(a), free(b);
}

int main(void) {
    if (!have_gpu()) {
        printf("skip: no CUDA device\n");
        return 77;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/.cache/quern/models/SmolLM2-135M-Instruct.Q4_1.gguf", getenv("HOME") ? getenv("HOME") : "");
    g_model_path = getenv("QUERN_MODEL") ? getenv("QUERN_MODEL") : path;
    qn_error err = {0};
    if (qn_model_load(g_model_path, &g_model, &err) != QN_OK) {
        printf("skip: %s\n", err.msg);
        return 77;
    }
    snprintf(g_f16_path, sizeof g_f16_path, "/tmp/qn_gpu_fwd_f16_%d.gguf", (int)getpid());
    const qn_quantize_params qp = {.ftype = QN_FTYPE_MOSTLY_F16, .n_threads = 16};
    if (qn_quantize_gguf(g_model_path, g_f16_path, &qp, NULL, &err) != QN_OK || qn_model_load(g_f16_path, &g_f16, &err) != QN_OK) {
        fprintf(stderr, "f16 copy: %s\n", err.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_graphs_bit_identical), cmocka_unit_test(test_paged_batches),
        cmocka_unit_test(test_graph_padding),         cmocka_unit_test(test_graph_precapture),
        cmocka_unit_test(test_real_model_logits),    cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_synth_types),          cmocka_unit_test(test_tensor_parallel),
    };
    /* QN_TEST_QUICK=1 (compute-sanitizer runs): the two small cases */
    const char *quick = getenv("QN_TEST_QUICK");
    const int rc = quick && *quick == '1' ? _cmocka_run_group_tests("quick", tests, 3, NULL, NULL)
                                          : cmocka_run_group_tests(tests, NULL, NULL);
    qn_model_free(g_model);
    qn_model_free(g_f16);
    unlink(g_f16_path);
    return rc;
}
