/* test_gpu_engine.c — the serving engine on the CUDA backend: tokens sampled on the device (only ids
 * cross PCIe) against the same engine sampling the copied logits on the host (exec/sampling.c).
 * Exit 77 (skipped) without a GPU or without the default model.
 *
 *  1. one request at a time (so both engines run the same step shapes and get bit-identical logits):
 *     greedy, temperature, top-k, top-p, min-p and their mix, each seeded, 48 tokens. The device draw
 *     uses the request's own uniform number, so the tokens must be identical; asserted: every
 *     sequence identical except at most one (a near-tie in float rounding between the two samplers),
 *     and the device engine sampled on the device in every step, the host engine in none.
 *  2. rows the device cannot sample (repetition penalty, logprobs, logit_bias) go to the host: the
 *     device engine's device-sampled step count does not grow, and the tokens equal the host engine's.
 *  3. 32 concurrent seeded requests on the device engine: every request finishes with its 32 tokens
 *     and most steps carry several rows (multi-row device sampling). */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "exec/engine.h"
#include "model/model.h"
#include "tokenizer/vocab.h"

#define MAX_TOK 64

typedef struct gen_out {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int32_t tokens[MAX_TOK];
    int n_tokens;
    qn_finish finish;
} gen_out;

static qn_model *g_model;
static qn_engine *g_dev, *g_host;

static void on_event(void *user, const qn_event *ev) {
    gen_out *o = user;
    pthread_mutex_lock(&o->mu);
    if (ev->kind == QN_EVENT_TOKEN) {
        if (ev->token >= 0 && o->n_tokens < MAX_TOK) o->tokens[o->n_tokens++] = ev->token;
    } else {
        o->finish = ev->finish;
        o->done = true;
        pthread_cond_signal(&o->cv);
    }
    pthread_mutex_unlock(&o->mu);
}

static qn_gen_params params(float temp, int32_t top_k, float top_p, float min_p, uint64_t seed, int32_t n) {
    qn_gen_params p;
    memset(&p, 0, sizeof p);
    p.sampling = qn_sampler_params_default();
    p.sampling.temperature = temp, p.sampling.top_k = top_k, p.sampling.top_p = top_p, p.sampling.min_p = min_p;
    p.sampling.seed = seed;
    p.max_tokens = n;
    p.ignore_eos = true;
    p.n_logprobs = -1;
    return p;
}

static void submit(qn_engine *e, const char *prompt, const qn_gen_params *p, gen_out *o) {
    memset(o, 0, sizeof *o);
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    int32_t toks[256], n = 0;
    assert_int_equal(qn_vocab_tokenize(g_model->vocab, prompt, strlen(prompt), true, true, toks, 256, &n), QN_OK);
    uint64_t id = 0;
    qn_error err = {0};
    if (qn_engine_submit(e, toks, n, p, on_event, o, &id, &err) != QN_OK) fail_msg("submit: %s", err.msg);
}

static void wait_done(gen_out *o) {
    pthread_mutex_lock(&o->mu);
    while (!o->done) pthread_cond_wait(&o->cv, &o->mu);
    pthread_mutex_unlock(&o->mu);
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
}

static void generate(qn_engine *e, const char *prompt, const qn_gen_params *p, gen_out *o) {
    submit(e, prompt, p, o);
    wait_done(o);
}

static int64_t device_steps(qn_engine *e) {
    qn_engine_snapshot s;
    qn_engine_get_stats(e, &s);
    return s.n_device_sampled_steps;
}

static int common_prefix(const gen_out *a, const gen_out *b) {
    int i = 0;
    while (i < a->n_tokens && i < b->n_tokens && a->tokens[i] == b->tokens[i]) i++;
    return i;
}

static const char *const k_prompts[] = {
    "The quick brown fox", "Once upon a time, in a small village,", "The capital of France is",
    "def fibonacci(n):", "In 1969, the first humans", "My favourite recipe for soup is",
};

static void test_device_vs_host(void **state) {
    (void)state;
    const struct { float t; int32_t k; float p, mp; } cfg[] = {
        {0.0f, 0, 1.0f, 0.0f},   {0.8f, 0, 1.0f, 0.0f},  {1.0f, 40, 1.0f, 0.0f},
        {0.9f, 0, 0.9f, 0.0f},   {1.2f, 0, 1.0f, 0.05f}, {0.7f, 50, 0.95f, 0.02f},
    };
    const int n_cfg = (int)(sizeof cfg / sizeof cfg[0]), n_prompt = (int)(sizeof k_prompts / sizeof k_prompts[0]);
    int n_same = 0, n_runs = 0;
    const int64_t d0 = device_steps(g_dev), h0 = device_steps(g_host);
    for (int c = 0; c < n_cfg; c++)
        for (int pi = 0; pi < n_prompt; pi += 2) {
            const qn_gen_params p = params(cfg[c].t, cfg[c].k, cfg[c].p, cfg[c].mp, 1000 + 17 * c + pi, 48);
            gen_out a, b;
            generate(g_dev, k_prompts[pi], &p, &a);
            generate(g_host, k_prompts[pi], &p, &b);
            assert_int_equal(a.n_tokens, 48);
            assert_int_equal(b.n_tokens, 48);
            const int cp = common_prefix(&a, &b);
            n_same += cp == 48;
            n_runs++;
            if (cp != 48)
                printf("device vs host: temp %.2f top_k %d top_p %.2f min_p %.2f prompt %d: first difference at token %d\n",
                       cfg[c].t, cfg[c].k, cfg[c].p, cfg[c].mp, pi, cp);
        }
    const int64_t d_steps = device_steps(g_dev) - d0, h_steps = device_steps(g_host) - h0;
    printf("device vs host sampling: %d of %d sequences identical; %lld device-sampled steps (host engine: %lld)\n",
           n_same, n_runs, (long long)d_steps, (long long)h_steps);
    assert_true(n_same >= n_runs - 1);
    assert_true(d_steps >= (int64_t)n_runs * 48); /* every token of every run: 1 prefill + 47 decode steps */
    assert_int_equal(h_steps, 0);
}

static void test_host_only_rows(void **state) {
    (void)state;
    qn_gen_params p = params(0.8f, 0, 1.0f, 0.0f, 7, 24);
    p.sampling.repetition_penalty = 1.3f;
    const qn_token_bias bias = {.token = 42, .bias = -5.0f};
    for (int variant = 0; variant < 3; variant++) {
        qn_gen_params q = p;
        if (variant == 1) q.sampling.repetition_penalty = 1.0f, q.n_logprobs = 2;
        if (variant == 2) q.sampling.repetition_penalty = 1.0f, q.logit_bias = &bias, q.n_logit_bias = 1;
        const int64_t d0 = device_steps(g_dev);
        gen_out a, b;
        generate(g_dev, k_prompts[1], &q, &a);
        generate(g_host, k_prompts[1], &q, &b);
        printf("host-only variant %d: common prefix %d of %d\n", variant, common_prefix(&a, &b), a.n_tokens);
        assert_int_equal(device_steps(g_dev), d0);
        assert_int_equal(common_prefix(&a, &b), 24);
    }
}

static void test_concurrent(void **state) {
    (void)state;
    enum { N = 32 };
    gen_out *o = calloc(N, sizeof *o);
    assert_non_null(o);
    qn_engine_snapshot s0, s1;
    qn_engine_get_stats(g_dev, &s0);
    for (int i = 0; i < N; i++) {
        const qn_gen_params p = params(i % 3 ? 0.9f : 0.0f, i % 2 ? 40 : 0, i % 5 ? 1.0f : 0.9f, 0.0f, 50 + i, 32);
        submit(g_dev, k_prompts[i % 6], &p, &o[i]);
    }
    for (int i = 0; i < N; i++) {
        wait_done(&o[i]);
        assert_int_equal(o[i].n_tokens, 32);
        assert_int_equal(o[i].finish, QN_FINISHED_LENGTH);
    }
    qn_engine_get_stats(g_dev, &s1);
    const int64_t steps = s1.n_forward_steps - s0.n_forward_steps, dsteps = s1.n_device_sampled_steps - s0.n_device_sampled_steps;
    const int64_t toks = s1.n_generation_tokens - s0.n_generation_tokens;
    printf("concurrent: %d requests, %lld steps (%lld sampled on the device), %.1f sampled rows per step\n", N,
           (long long)steps, (long long)dsteps, (double)toks / (double)(steps > 0 ? steps : 1));
    assert_int_equal(dsteps, steps);
    assert_true(toks >= 4 * steps); /* rows of many requests per step, not one at a time */
    free(o);
}

static qn_engine *make_engine(bool host_sampling) {
    qn_engine_config c = qn_engine_config_default();
    c.device = QN_DEVICE_CUDA;
    c.max_model_len = 512;
    c.max_num_seqs = 64;
    c.kv_cache_bytes = 256 << 20;
    c.host_sampling = host_sampling;
    qn_engine *e = NULL;
    qn_error err = {0};
    if (qn_engine_create(g_model, &c, &e, &err) != QN_OK) {
        fprintf(stderr, "engine: %s\n", err.msg);
        return NULL;
    }
    return e;
}

int main(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
        printf("skip: no CUDA device\n");
        return 77;
    }
    const char *path = qn_test_default_model();
    qn_error err = {0};
    if (!path || qn_model_load(path, &g_model, &err) != QN_OK) {
        printf("skip: default model missing\n");
        return 77;
    }
    g_dev = make_engine(false);
    g_host = make_engine(true);
    if (!g_dev || !g_host) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_vs_host),
        cmocka_unit_test(test_host_only_rows),
        cmocka_unit_test(test_concurrent),
    };
    const int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qn_engine_destroy(g_dev);
    qn_engine_destroy(g_host);
    qn_model_free(g_model);
    return rc;
}
