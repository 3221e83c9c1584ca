/* test_gpu_sampling.c — qn_sample_cuda (kernels/sampling/sampling_cuda.h) against the CPU sampler
 * (runtime/exec/sampling.c, penalties off). The uniform number comes from the same per-request RNG on
 * both sides: two samplers with the same params and seed, one gives u = qn_sampler_uniform() to the
 * GPU, the other runs qn_sampler_sample(); both advance their RNG once per sampled token.
 *   - greedy: lowest id among the maxima (ties), greedy rows mixed with sampled rows in one call;
 *   - every filter alone and combined, several temperatures, logits with exact ties, rows with
 *     different params in one call, vocab 49152 and 128256: the GPU token must equal the CPU token for
 *     >= 99.9% of the draws, and every disagreement must be a near tie: the draw, the top-p mass or
 *     the min-p threshold within 1e-6 (relative) of the boundary that separates the two tokens. The
 *     GPU sums in double in a tree order and the CPU left to right (~1e-16 relative apart) and the
 *     GPU's exp is correctly rounded while glibc's expf is within 0.502 ulp, so any disagreement
 *     at all is expected to be very rare;
 *   - every call runs the sort path, and the fast path too where qn_sample_cuda_path() allows it
 *     (all rows greedy or top_k <= QN_SAMPLE_CUDA_TOPK_MAX): the two must agree token for token;
 *     test_match_cpu_topk sends only such rows, so its calls cover the fast path against the CPU;
 *   - frequencies over 2^17 draws on a 12-token vocab match the (filtered) softmax within 3 sigma.
 * Exits 77 (ctest: skipped) when there is no CUDA device. QN_TEST_QUICK=1 trims the draws. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/sampling.h"
#include "gpu_test.h"
#include "kernels/sampling/sampling_cuda.h"

#define GUARD 64 /* int32 past the outputs */

static int g_quick;

/* ------------------------------------------------------------------------------------------------
 * one GPU call: logits [n_rows][V] and params [n_rows] from the host, tokens back; the output is
 * poisoned (-1) with a guard after it, and the logits must come back unchanged */

static void gpu_sample_path(const float *logits, int32_t n_rows, int32_t V, const qn_sample_row_params *prm,
                            qn_sample_path path, int32_t *out) {
    const size_t nl = (size_t)n_rows * (size_t)V;
    const size_t ws_bytes = qn_sample_cuda_workspace_size(n_rows, V);
    assert_true(ws_bytes > 0);
    float *dl = dev_upload(logits, sizeof(float) * nl);
    qn_sample_row_params *dp = dev_upload(prm, sizeof *prm * (size_t)n_rows);
    int32_t *dout = dev_poisoned(sizeof(int32_t) * (size_t)n_rows, sizeof(int32_t) * GUARD);
    void *ws = NULL;
    CK(cudaMalloc(&ws, ws_bytes));
    CK(cudaMemset(ws, 0xA5, ws_bytes)); /* no reliance on a clean workspace */
    const qn_status st = qn_sample_cuda(dl, n_rows, V, dp, path, dout, ws, ws_bytes, g_stream);
    if (st != QN_OK) fail_msg("qn_sample_cuda(%d rows, V %d, path %d): %s", n_rows, V, path, qn_status_str(st));
    float *back = malloc(sizeof(float) * nl);
    assert_non_null(back);
    dev_fetch(out, dout, sizeof(int32_t) * (size_t)n_rows, sizeof(int32_t) * GUARD, "qn_sample_cuda out");
    CK(cudaMemcpy(back, dl, sizeof(float) * nl, cudaMemcpyDeviceToHost));
    for (int32_t r = 0; r < n_rows; r++)
        if (out[r] < 0 || out[r] >= V) fail_msg("row %d: token %d out of range", r, out[r]);
    if (memcmp(back, logits, sizeof(float) * nl) != 0) fail_msg("logits modified");
    free(back);
    cudaFree(dl), cudaFree(dp), cudaFree(dout), cudaFree(ws);
}

/* The sort path always; when qn_sample_cuda_path() allows the fast path (every row greedy or a
 * small top-k), that too, and the two must give the same tokens: they select from the same sorted
 * candidates with the same code. */
static int g_n_fast; /* calls that took the fast path too */

static void gpu_sample(const float *logits, int32_t n_rows, int32_t V, const qn_sample_row_params *prm, int32_t *out) {
    gpu_sample_path(logits, n_rows, V, prm, QN_SAMPLE_PATH_SORT, out);
    if (qn_sample_cuda_path(prm, n_rows) != QN_SAMPLE_PATH_FAST) return;
    g_n_fast++;
    int32_t *fast = malloc(sizeof(int32_t) * (size_t)n_rows);
    assert_non_null(fast);
    gpu_sample_path(logits, n_rows, V, prm, QN_SAMPLE_PATH_FAST, fast);
    for (int32_t r = 0; r < n_rows; r++)
        if (fast[r] != out[r])
            fail_msg("row %d of %d (V %d, T %g, top_k %d): fast path %d, sort path %d", r, n_rows, V, prm[r].temperature,
                     prm[r].top_k, fast[r], out[r]);
    free(fast);
}

/* ------------------------------------------------------------------------------------------------
 * CPU side: a pair of samplers per request */

typedef struct cfg {
    float temperature, top_p, min_p;
    int32_t top_k;
} cfg;

typedef struct pair {
    qn_sampler for_u, cpu;
} pair;

static void pair_init(pair *p, const cfg *c, int32_t V, uint64_t seed) {
    qn_sampler_params sp = qn_sampler_params_default();
    sp.temperature = c->temperature, sp.top_k = c->top_k, sp.top_p = c->top_p, sp.min_p = c->min_p;
    sp.repetition_penalty = 1.0f, sp.presence_penalty = 0.0f, sp.frequency_penalty = 0.0f;
    sp.seed = seed;
    qn_error err;
    assert_int_equal(qn_sampler_init(&p->for_u, &sp, V, &err), QN_OK);
    assert_int_equal(qn_sampler_init(&p->cpu, &sp, V, &err), QN_OK);
}

static void pair_free(pair *p) {
    qn_sampler_free(&p->for_u);
    qn_sampler_free(&p->cpu);
}

/* GPU params of the next draw of p (u only for sampled rows: greedy draws nothing on the CPU) */
static qn_sample_row_params pair_params(pair *p, const cfg *c) {
    return (qn_sample_row_params){.temperature = c->temperature, .top_k = c->top_k, .top_p = c->top_p,
                                  .min_p = c->min_p, .u = c->temperature > 0 ? qn_sampler_uniform(&p->for_u) : 0.0};
}

static int32_t pair_cpu(pair *p, const float *logits, float *scratch) {
    memcpy(scratch, logits, sizeof(float) * (size_t)p->cpu.n_vocab);
    return qn_sampler_sample(&p->cpu, scratch, NULL, 0, NULL, NULL, 0);
}

/* ------------------------------------------------------------------------------------------------
 * near-tie check of a disagreement: the CPU algorithm again, keeping its intermediate sums */

typedef struct cand {
    int32_t id;
    float v; /* z, then p */
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return x->v != y->v ? (x->v < y->v ? 1 : -1) : (x->id > y->id) - (x->id < y->id);
}

#define NEAR 1e-6

/* 1 when tokens a and b are separated only by a boundary within NEAR of its threshold */
static int near_tie(const float *l, int32_t V, const qn_sample_row_params *q, int32_t a, int32_t b) {
    cand *c = malloc(sizeof(cand) * (size_t)V);
    assert_non_null(c);
    float mx = l[0];
    for (int32_t i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    const float inv_t = 1.0f / q->temperature;
    int32_t m = 0;
    for (int32_t i = 0; i < V; i++) {
        const float z = (l[i] - mx) * inv_t;
        if (z > -40.0f) c[m++] = (cand){i, z};
    }
    qsort(c, (size_t)m, sizeof *c, cand_cmp);
    if (q->top_k > 0 && q->top_k < m) m = q->top_k;
    double sum = 0;
    for (int32_t i = 0; i < m; i++) sum += (c[i].v = expf(c[i].v));
    int near = 0;
    int32_t keep = m;
    if (q->top_p < 1.0f) { /* a top-p cut within NEAR of top_p may move by one */
        double cum = 0;
        for (int32_t i = 0; i < m && keep == m; i++) {
            cum += c[i].v / sum;
            near |= fabs(cum - q->top_p) < NEAR;
            if (cum >= q->top_p) keep = i + 1;
        }
    }
    if (q->min_p > 0.0f) {
        const float thr = q->min_p * c[0].v;
        int32_t k = 1;
        while (k < keep && c[k].v >= thr) k++;
        if (k < keep) near |= fabs((double)c[k].v - thr) < NEAR * thr;
        if (k > 1) near |= fabs((double)c[k - 1].v - thr) < NEAR * thr;
        keep = k;
    }
    double s2 = 0;
    for (int32_t i = 0; i < keep; i++) s2 += c[i].v;
    /* the draw: some cumulative boundary between the two tokens' positions within NEAR of r */
    int32_t pa = -1, pb = -1;
    for (int32_t i = 0; i < m; i++) {
        if (c[i].id == a) pa = i;
        if (c[i].id == b) pb = i;
    }
    if (pa >= 0 && pb >= 0) {
        const int32_t lo = pa < pb ? pa : pb, hi = pa < pb ? pb : pa;
        const double r = q->u * s2;
        double acc = 0;
        for (int32_t i = 0; i < hi && i < keep; i++) {
            acc += c[i].v;
            if (i >= lo) near |= fabs(r - acc) < NEAR * s2;
        }
    }
    free(c);
    return near;
}

/* ------------------------------------------------------------------------------------------------
 * logits */

/* Normal logits of scale sigma, a few spikes above them, and (ties) every other row rounded to
 * multiples of 1/8 so that many candidates share a z exactly. */
static void make_logits(qn_rng *r, float *l, int32_t V, float sigma, int spikes, int ties) {
    for (int32_t i = 0; i < V; i++) l[i] = sigma * qn_rng_normal(r);
    for (int s = 0; s < spikes; s++) l[qn_rng_u64(r) % (uint64_t)V] = 4.0f * sigma + qn_rng_uniform(r, 0.0f, 6.0f);
    if (ties)
        for (int32_t i = 0; i < V; i++) l[i] = roundf(l[i] * 8.0f) / 8.0f;
}

/* ------------------------------------------------------------------------------------------------
 * greedy */

static void test_greedy(void **state) {
    (void)state;
    const int32_t V = 1000, R = 6;
    qn_rng r;
    qn_rng_seed(&r, 600);
    float *l = malloc(sizeof(float) * (size_t)(R * V));
    assert_non_null(l);
    make_logits(&r, l, R * V, 2.0f, 0, 0);
    float *row;
    row = l + 0 * V, row[713] = row[41] = row[999] = 50.0f; /* ties: lowest id */
    row = l + 1 * V;
    for (int32_t i = 0; i < V; i++) row[i] = -3.5f; /* all equal: id 0 */
    row = l + 2 * V, row[V - 1] = 60.0f;           /* the last id */
    row = l + 3 * V, row[0] = 60.0f, row[1] = 60.0f;
    row = l + 4 * V, row[500] = -INFINITY, row[501] = 70.0f, row[502] = 70.0f;
    /* row 5: random, plus a sampled row in between to mix the two kinds in one call */
    qn_sample_row_params prm[6];
    for (int i = 0; i < R; i++) prm[i] = (qn_sample_row_params){.temperature = 0.0f, .top_k = 0, .top_p = 1.0f};
    prm[3].top_k = 5, prm[3].top_p = 0.3f, prm[3].min_p = 0.5f; /* filters do not matter when greedy */
    prm[2].temperature = 0.8f, prm[2].u = 0.25;                 /* sampled: a 60 spike over N(0, 2) */
    int32_t out[6];
    for (int all_greedy = 0; all_greedy < 2; all_greedy++) {
        if (all_greedy) { /* every row greedy: the fast path (argmax only) as well */
            prm[2] = prm[0];
            assert_int_equal(qn_sample_cuda_path(prm, R), QN_SAMPLE_PATH_FAST);
        }
        gpu_sample(l, R, V, prm, out);
        assert_int_equal(out[0], 41);
        assert_int_equal(out[1], 0);
        assert_int_equal(out[2], V - 1);
        assert_int_equal(out[3], 0);
        assert_int_equal(out[4], 501);
        assert_int_equal(out[5], qn_argmax_f32(l + 5 * V, V));
    }
    /* one row, V = 1 and V = 2 */
    const float one[2] = {1.0f, 1.0f};
    int32_t o1;
    gpu_sample(one, 1, 1, prm, &o1);
    assert_int_equal(o1, 0);
    gpu_sample(one, 1, 2, prm, &o1);
    assert_int_equal(o1, 0);
    free(l);
}

/* ------------------------------------------------------------------------------------------------
 * against the CPU sampler */

static const cfg CFGS[] = {
    {1.0f, 1.0f, 0.0f, 0},      {0.7f, 1.0f, 0.0f, 40},     {1.0f, 0.9f, 0.0f, 0},     {1.0f, 1.0f, 0.05f, 0},
    {0.8f, 0.95f, 0.02f, 100},  {1.5f, 0.5f, 0.0f, 0},      {0.3f, 1.0f, 0.0f, 0},     {1.0f, 1.0f, 0.0f, 1},
    {2.0f, 1.0f, 0.0f, 50000},  {1.0f, 0.999f, 0.001f, 0},  {0.0f, 1.0f, 0.0f, 0},     {0.6f, 0.8f, 0.1f, 20},
    {1.2f, 1.0f, 0.0f, 2},      {0.05f, 1.0f, 0.0f, 0},     {5.0f, 0.7f, 0.0f, 0},     {1.0f, 0.2f, 0.3f, 0},
};
#define N_CFGS (int)(sizeof CFGS / sizeof CFGS[0])

/* greedy and top-k <= QN_SAMPLE_CUDA_TOPK_MAX only: calls of these take the fast path as well;
 * the top-k values include a cut inside a run of tied z (logits rounded to 1/8) */
static const cfg CFGS_TOPK[] = {
    {0.7f, 1.0f, 0.0f, 40},   {0.8f, 0.95f, 0.02f, 100}, {1.0f, 1.0f, 0.0f, 1},    {0.0f, 1.0f, 0.0f, 0},
    {0.6f, 0.8f, 0.1f, 20},   {1.2f, 1.0f, 0.0f, 2},     {1.0f, 1.0f, 0.0f, 1024}, {5.0f, 0.7f, 0.0f, 777},
    {0.05f, 1.0f, 0.0f, 50},  {2.0f, 1.0f, 0.0f, 300},
};

static void match_cpu_cfgs(int32_t V, int n_calls, int R, uint64_t seed, const cfg *cfgs, int n_cfgs) {
    qn_rng r;
    qn_rng_seed(&r, seed);
    float *l = malloc(sizeof(float) * (size_t)R * (size_t)V), *scratch = malloc(sizeof(float) * (size_t)V);
    qn_sample_row_params *prm = malloc(sizeof *prm * (size_t)R);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)R);
    pair *pairs = malloc(sizeof(pair) * (size_t)R);
    assert_true(l && scratch && prm && out && pairs);
    size_t n_draws = 0, n_diff = 0, n_unexplained = 0;
    for (int call = 0; call < n_calls; call++) {
        for (int i = 0; i < R; i++) {
            const cfg *c = &cfgs[(call + i) % n_cfgs];
            const float sigma = (i % 3 == 0) ? 1.0f : (i % 3 == 1) ? 3.0f : 6.0f;
            make_logits(&r, l + (size_t)i * V, V, sigma, i % 4, i % 2);
            pair_init(&pairs[i], c, V, seed * 1000003u + (uint64_t)(call * R + i));
            prm[i] = pair_params(&pairs[i], c);
        }
        gpu_sample(l, R, V, prm, out);
        for (int i = 0; i < R; i++) {
            const float *li = l + (size_t)i * V;
            const int32_t want = pair_cpu(&pairs[i], li, scratch);
            n_draws++;
            if (out[i] != want) {
                n_diff++;
                const int ok = prm[i].temperature > 0 && near_tie(li, V, &prm[i], want, out[i]);
                n_unexplained += !ok;
                fprintf(stderr, "  V=%d call %d row %d (T %g k %d p %g min_p %g u %.17g): gpu %d cpu %d%s\n", V, call,
                        i, prm[i].temperature, prm[i].top_k, prm[i].top_p, prm[i].min_p, prm[i].u, out[i], want,
                        ok ? " (near tie)" : "");
            }
            pair_free(&pairs[i]);
        }
    }
    fprintf(stderr, "  V=%d: %zu draws, %zu GPU != CPU (%zu not near a tie)\n", V, n_draws, n_diff, n_unexplained);
    if (n_unexplained) fail_msg("V=%d: %zu disagreements are not near ties", V, n_unexplained);
    if (n_diff * 1000 > n_draws) fail_msg("V=%d: %zu of %zu draws disagree (> 0.1%%)", V, n_diff, n_draws);
    free(l), free(scratch), free(prm), free(out), free(pairs);
}

static void match_cpu(int32_t V, int n_calls, int R, uint64_t seed) { match_cpu_cfgs(V, n_calls, R, seed, CFGS, N_CFGS); }

static void test_match_cpu_topk(void **state) {
    (void)state;
    const int n = (int)(sizeof CFGS_TOPK / sizeof CFGS_TOPK[0]);
    g_n_fast = 0;
    match_cpu_cfgs(49152, g_quick ? 2 : 8, 32, 750, CFGS_TOPK, n);
    match_cpu_cfgs(128256, g_quick ? 2 : 16, 32, 850, CFGS_TOPK, n);
    if (g_n_fast == 0) fail_msg("no call took the fast path");
}

static void test_match_cpu_49152(void **state) {
    (void)state;
    match_cpu(49152, g_quick ? 4 : 32, 64, 700);
}

static void test_match_cpu_128256(void **state) {
    (void)state;
    match_cpu(128256, g_quick ? 4 : 32, 64, 800);
}

/* R draws of p's request on one logits row (base, V <= 16) in one call, each equal to the CPU's;
 * count[t] += how often token t came out. */
static void draw_repeated(pair *p, const cfg *c, const float *base, int32_t V, int32_t R, long *count) {
    float *l = malloc(sizeof(float) * (size_t)V * (size_t)R), scratch[16];
    qn_sample_row_params *prm = malloc(sizeof *prm * (size_t)R);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)R);
    assert_true(l && prm && out && V <= 16);
    for (int32_t i = 0; i < R; i++) {
        memcpy(l + (size_t)i * V, base, sizeof(float) * (size_t)V);
        prm[i] = pair_params(p, c);
    }
    gpu_sample(l, R, V, prm, out);
    for (int32_t i = 0; i < R; i++) {
        const int32_t want = pair_cpu(p, base, scratch);
        if (out[i] != want)
            fail_msg("V=%d T %g k %d p %g min_p %g draw %d (u %.17g): gpu %d cpu %d", V, c->temperature, c->top_k,
                     c->top_p, c->min_p, i, prm[i].u, out[i], want);
        count[out[i]]++;
    }
    free(l), free(prm), free(out);
}

/* Each filter alone and combined on a small vocab: only the CPU's candidate set comes out. */
static void test_filters_small(void **state) {
    (void)state;
    /* p ~ softmax: 0.36 0.22 0.22 0.13 0.05 ... (ids 1 and 2 tie) */
    const float base[10] = {3.0f, 2.5f, 2.5f, 2.0f, 1.0f, 0.0f, -1.0f, -2.0f, -4.0f, -8.0f};
    const cfg cs[] = {
        {1.0f, 1.0f, 0.0f, 3},  /* top-k 3: ids 0, 1, 2 */
        {1.0f, 0.6f, 0.0f, 0},  /* top-p: 0.36 + 0.22 reaches 0.6 only with id 2 */
        {1.0f, 1.0f, 0.3f, 0},  /* min-p 0.3: p >= 0.3 p0 = 0.11 */
        {0.5f, 0.9f, 0.05f, 4}, /* combined, colder */
        {3.0f, 1.0f, 0.0f, 0},  /* hot: everything */
    };
    const int allowed[5] = {3, 3, 4, 3, 10}; /* ids 0..allowed-1 may appear */
    for (int k = 0; k < 5; k++) {
        pair p;
        pair_init(&p, &cs[k], 10, 900 + (uint64_t)k);
        long seen[10] = {0};
        draw_repeated(&p, &cs[k], base, 10, 1024, seen);
        for (int32_t t = 0; t < 10; t++) {
            if (t >= allowed[k] && seen[t]) fail_msg("cfg %d: filtered token %d drawn %ld times", k, t, seen[t]);
            if (t < 3 && !seen[t]) fail_msg("cfg %d: token %d never drawn", k, t);
        }
        pair_free(&p);
    }
}

/* Empirical frequencies of 2^17 draws (16 calls x 8192 rows) against the filtered softmax. */
static void test_frequencies(void **state) {
    (void)state;
    const int32_t V = 12, R = 8192, calls = g_quick ? 4 : 16;
    const float base[12] = {2.0f, 1.5f, 1.5f, 1.0f, 0.5f, 0.0f, -0.5f, -1.0f, -2.0f, -3.0f, -5.0f, -9.0f};
    const cfg cs[2] = {{1.0f, 1.0f, 0.0f, 0}, {0.7f, 1.0f, 0.0f, 5}};
    for (int k = 0; k < 2; k++) {
        const int32_t top_k = cs[k].top_k > 0 ? cs[k].top_k : V; /* base is sorted: the top k are ids < k */
        double prob[12], z = 0;
        for (int32_t t = 0; t < V; t++) z += (prob[t] = t < top_k ? exp((base[t] - base[0]) / cs[k].temperature) : 0);
        for (int32_t t = 0; t < V; t++) prob[t] /= z;
        pair p;
        pair_init(&p, &cs[k], V, 1100 + (uint64_t)k);
        long count[12] = {0};
        for (int c = 0; c < calls; c++) draw_repeated(&p, &cs[k], base, V, R, count);
        const double n = (double)calls * R;
        for (int32_t t = 0; t < V; t++) {
            const double mean = n * prob[t], sd = sqrt(n * prob[t] * (1 - prob[t]));
            fprintf(stderr, "  cfg %d token %2d: %7ld draws, expected %9.1f +- %6.1f\n", k, t, count[t], mean, sd);
            if (fabs((double)count[t] - mean) > 3 * sd + 1e-9)
                fail_msg("cfg %d token %d: %ld draws, expected %.1f +- 3 x %.1f", k, t, count[t], mean, sd);
        }
        pair_free(&p);
    }
}

static void test_args(void **state) {
    (void)state;
    assert_true(qn_sample_cuda_workspace_size(64, 128256) >= (size_t)64 * 128256 * 16);
    assert_int_equal(qn_sample_cuda_workspace_size(0, 100), 0);
    assert_int_equal(qn_sample_cuda_workspace_size(20000, 128256), 0); /* > 2^31 logits */
    float *dl = NULL;
    int32_t *dout = NULL;
    qn_sample_row_params *dp = NULL;
    void *ws = NULL;
    const size_t need = qn_sample_cuda_workspace_size(2, 1000);
    CK(cudaMalloc((void **)&dl, sizeof(float) * 2000));
    CK(cudaMalloc((void **)&dout, sizeof(int32_t) * 2));
    CK(cudaMalloc((void **)&dp, sizeof *dp * 2));
    CK(cudaMalloc(&ws, need));
    const qn_sample_path S = QN_SAMPLE_PATH_SORT;
    assert_int_equal(qn_sample_cuda(dl, 2, 1000, dp, S, dout, ws, need - 1, g_stream), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_sample_cuda(dl, 0, 1000, dp, S, dout, ws, need, g_stream), QN_OK);
    assert_int_equal(qn_sample_cuda(dl, 2, 0, dp, S, dout, ws, need, g_stream), QN_ERR_SHAPE);
    assert_int_equal(qn_sample_cuda(dl, -1, 1000, dp, S, dout, ws, need, g_stream), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_sample_cuda(dl, 2, 1000, dp, QN_SAMPLE_PATH_COUNT, dout, ws, need, g_stream),
                     QN_ERR_INVALID_ARG);
    /* the path predicate: host params */
    qn_sample_row_params hp[3] = {{.temperature = 0.0f}, {.temperature = 0.7f, .top_k = 40, .top_p = 0.9f},
                                  {.temperature = 1.0f, .top_k = QN_SAMPLE_CUDA_TOPK_MAX, .top_p = 1.0f}};
    assert_int_equal(qn_sample_cuda_path(hp, 3), QN_SAMPLE_PATH_FAST);
    hp[2].top_k = QN_SAMPLE_CUDA_TOPK_MAX + 1;
    assert_int_equal(qn_sample_cuda_path(hp, 3), QN_SAMPLE_PATH_SORT);
    hp[2].top_k = 0;
    assert_int_equal(qn_sample_cuda_path(hp, 3), QN_SAMPLE_PATH_SORT);
    hp[2].temperature = 0.0f; /* greedy: top_k does not matter */
    assert_int_equal(qn_sample_cuda_path(hp, 3), QN_SAMPLE_PATH_FAST);
    CK(cudaStreamSynchronize(g_stream));
    cudaFree(dl), cudaFree(dout), cudaFree(dp), cudaFree(ws);
}

int main(void) {
    g_quick = qn_gpu_test_quick();
    if (qn_gpu_test_skip("test_gpu_sampling")) return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args),          cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_filters_small), cmocka_unit_test(test_frequencies),
        cmocka_unit_test(test_match_cpu_topk),  cmocka_unit_test(test_match_cpu_49152),
        cmocka_unit_test(test_match_cpu_128256),
    };
    return cmocka_run_group_tests_name("gpu_sampling", tests, qn_gpu_test_setup, qn_gpu_test_teardown);
}
