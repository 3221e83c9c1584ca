/* test_sampling.c — the CPU sampler (exec/sampling.c) against a plain twin written here: candidates
 * within 40 (tempered) of the max, a comparison sort on (-value, id), top-k, softmax, top-p, min-p and
 * a draw with the same RNG. The sampler sorts with a radix sort; the twin with qsort.
 *  1. 3000 draws on random logits, many of them tied (values on a coarse grid), over vocabularies of
 *     7 .. 50000 and every combination of temperature / top-k / top-p / min-p: identical tokens, and the
 *     RNG left in the same state (one draw per tempered sample).
 *  2. greedy: the lowest id among the maxima, and no RNG draw.
 *  3. frequencies at temperature 1 over a vocabulary of 5 follow the softmax (each within 5 sigma of
 *     20000 draws).
 *  4. penalties: a repetition penalty of 10 on every token but one makes that token the greedy choice;
 *     presence/frequency penalties subtract count * frequency + presence once per distinct token. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/sampling.h"

typedef struct twin_cand {
    int32_t id;
    float v;
} twin_cand;

static int twin_cmp(const void *a, const void *b) {
    const twin_cand *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? 1 : -1;
    return x->id - y->id;
}

/* The reference: the documented order, with qsort. rng: a sampler of the same seed used only for its draws. */
static int32_t twin_sample(const qn_sampler_params *p, const float *logits, int32_t n, qn_sampler *rng) {
    if (p->temperature <= 0.0f) return qn_argmax_f32(logits, n);
    twin_cand *c = malloc(sizeof *c * (size_t)n);
    float mx = logits[0];
    for (int32_t i = 1; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        const float z = (logits[i] - mx) * (1.0f / p->temperature);
        if (z > -40.0f) c[m++] = (twin_cand){i, z};
    }
    qsort(c, (size_t)m, sizeof *c, twin_cmp);
    if (p->top_k > 0 && p->top_k < m) m = p->top_k;
    double sum = 0;
    for (int32_t i = 0; i < m; i++) c[i].v = expf(c[i].v), sum += c[i].v;
    if (p->top_p < 1.0f) {
        double cum = 0;
        for (int32_t i = 0; i < m; i++)
            if ((cum += c[i].v / sum) >= p->top_p) {
                m = i + 1;
                break;
            }
    }
    if (p->min_p > 0.0f) {
        int32_t keep = 1;
        while (keep < m && c[keep].v >= p->min_p * c[0].v) keep++;
        m = keep;
    }
    sum = 0;
    for (int32_t i = 0; i < m; i++) sum += c[i].v;
    const double r = qn_sampler_uniform(rng) * sum;
    double acc = 0;
    int32_t out = c[m - 1].id;
    for (int32_t i = 0; i < m; i++)
        if (r < (acc += c[i].v)) {
            out = c[i].id;
            break;
        }
    free(c);
    return out;
}

static void init_pair(qn_sampler *a, qn_sampler *b, const qn_sampler_params *p, int32_t n) {
    qn_error err = {0};
    assert_int_equal(qn_sampler_init(a, p, n, &err), QN_OK);
    assert_int_equal(qn_sampler_init(b, p, n, &err), QN_OK);
}

static void test_matches_twin(void **state) {
    (void)state;
    qn_rng g;
    qn_rng_seed(&g, 20261202);
    const int32_t vocabs[] = {7, 300, 4099, 50000};
    const float temps[] = {0.3f, 1.0f, 2.5f};
    const int32_t top_ks[] = {0, 1, 40};
    const float top_ps[] = {1.0f, 0.9f, 0.5f};
    const float min_ps[] = {0.0f, 0.05f};
    int n_draws = 0;
    for (int vi = 0; vi < 4; vi++) {
        const int32_t n = vocabs[vi];
        float *logits = malloc(sizeof(float) * (size_t)n), *work = malloc(sizeof(float) * (size_t)n);
        for (int ti = 0; ti < 3; ti++)
            for (int ki = 0; ki < 3; ki++)
                for (int pi = 0; pi < 3; pi++)
                    for (int mi = 0; mi < 2; mi++) {
                        qn_sampler_params p = qn_sampler_params_default();
                        p.temperature = temps[ti], p.top_k = top_ks[ki], p.top_p = top_ps[pi], p.min_p = min_ps[mi];
                        p.seed = qn_rng_u64(&g);
                        qn_sampler s, twin;
                        init_pair(&s, &twin, &p, n);
                        for (int d = 0; d < (n > 10000 ? 8 : 15); d++) {
                            /* coarse grid: many exact ties; a wide spread: some candidates below -40 */
                            const float spread = d % 3 == 0 ? 60.0f : 8.0f;
                            for (int32_t i = 0; i < n; i++)
                                logits[i] = roundf(qn_rng_uniform(&g, -spread, spread) * 4.0f) / 4.0f;
                            memcpy(work, logits, sizeof(float) * (size_t)n);
                            const int32_t got = qn_sampler_sample(&s, work, NULL, 0, NULL, NULL, 0);
                            const int32_t want = twin_sample(&p, logits, n, &twin);
                            if (got != want)
                                fail_msg("n %d temp %g top_k %d top_p %g min_p %g draw %d: sampler %d, twin %d", n,
                                         (double)p.temperature, p.top_k, (double)p.top_p, (double)p.min_p, d, got, want);
                            n_draws++;
                        }
                        assert_true(qn_sampler_uniform(&s) == qn_sampler_uniform(&twin)); /* same number of draws */
                        qn_sampler_free(&s), qn_sampler_free(&twin);
                    }
        free(logits), free(work);
    }
    printf("sampler vs twin: %d draws identical\n", n_draws);
}

static void test_greedy(void **state) {
    (void)state;
    qn_sampler_params p = qn_sampler_params_default();
    p.temperature = 0;
    qn_sampler s, twin;
    init_pair(&s, &twin, &p, 6);
    float l[6] = {1, 3, -2, 3, 0, 3};
    assert_int_equal(qn_sampler_sample(&s, l, NULL, 0, NULL, NULL, 0), 1);
    assert_true(qn_sampler_uniform(&s) == qn_sampler_uniform(&twin)); /* greedy draws nothing */
    qn_sampler_free(&s), qn_sampler_free(&twin);
}

static void test_frequencies(void **state) {
    (void)state;
    qn_sampler_params p = qn_sampler_params_default();
    p.temperature = 1.0f, p.seed = 99;
    qn_sampler s;
    qn_error err = {0};
    assert_int_equal(qn_sampler_init(&s, &p, 5, &err), QN_OK);
    const float base[5] = {0.0f, 1.0f, -1.0f, 0.5f, 2.0f};
    double z = 0, prob[5];
    for (int i = 0; i < 5; i++) z += exp(base[i]);
    for (int i = 0; i < 5; i++) prob[i] = exp(base[i]) / z;
    enum { N = 20000 };
    int hist[5] = {0};
    for (int d = 0; d < N; d++) {
        float l[5];
        memcpy(l, base, sizeof l);
        hist[qn_sampler_sample(&s, l, NULL, 0, NULL, NULL, 0)]++;
    }
    for (int i = 0; i < 5; i++) {
        const double sigma = sqrt(N * prob[i] * (1 - prob[i]));
        printf("token %d: %d draws, expected %.0f (sigma %.0f)\n", i, hist[i], N * prob[i], sigma);
        assert_true(fabs(hist[i] - N * prob[i]) <= 5 * sigma);
    }
    qn_sampler_free(&s);
}

static void test_penalties(void **state) {
    (void)state;
    qn_sampler_params p = qn_sampler_params_default();
    p.temperature = 0, p.repetition_penalty = 10.0f, p.penalty_last_n = -1;
    qn_sampler s;
    qn_error err = {0};
    assert_int_equal(qn_sampler_init(&s, &p, 4, &err), QN_OK);
    float l[4] = {5.0f, 4.0f, 1.0f, 0.9f};
    const int32_t hist[] = {0, 1, 2, 0};
    assert_int_equal(qn_sampler_sample(&s, l, hist, 4, NULL, NULL, 0), 3); /* 0.5, 0.4, 0.1 vs 0.9 */
    qn_sampler_free(&s);
    p.repetition_penalty = 1.0f, p.presence_penalty = 1.0f, p.frequency_penalty = 1.5f;
    assert_int_equal(qn_sampler_init(&s, &p, 4, &err), QN_OK);
    float m[4] = {5.0f, 4.0f, 1.0f, 0.9f};
    assert_int_equal(qn_sampler_sample(&s, m, hist, 4, NULL, NULL, 0), 1);
    assert_true(m[0] == 5.0f - 2 * 1.5f - 1.0f && m[1] == 4.0f - 1.5f - 1.0f && m[3] == 0.9f); /* 1, 1.5 */
    qn_sampler_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_twin),
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_frequencies),
        cmocka_unit_test(test_penalties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
