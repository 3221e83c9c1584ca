/* test_engine_gen.c — the serving engine's per-request generation options on the real default model
 * (skipped when it is absent): logit_bias, min_tokens (EOS and stop_token_ids masked), stop strings with and
 * without include_stop_str_in_output (and ignored before min_tokens), render_special, and the UTF-8 tail
 * flushed as U+FFFD at the end. Also qn_ctx_eval_from, the context call that perplexity uses (logits of the
 * scored rows only).
 * Logit biases of +100 make the outcome independent of the model's numerics. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/context.h"
#include "exec/engine.h"
#include "harness.h"
#include "model/model.h"
#include "tokenizer/vocab.h"

typedef struct gen_out {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    char text[4096];
    size_t len;
    int32_t tokens[256];
    int n_tokens;
    qn_finish finish;
    char stop_reason[64];
    int32_t stop_token, n_completion;
} gen_out;

static qn_model *g_model;
static qn_engine *g_eng;

static void on_event(void *user, const qn_event *ev) {
    gen_out *o = user;
    pthread_mutex_lock(&o->mu);
    if (ev->kind == QN_EVENT_TOKEN) {
        if (o->len + ev->text_len < sizeof o->text) {
            memcpy(o->text + o->len, ev->text, ev->text_len);
            o->len += ev->text_len;
            o->text[o->len] = '\0';
        }
        if (ev->token >= 0 && o->n_tokens < 256) o->tokens[o->n_tokens++] = ev->token;
    } else {
        o->finish = ev->finish;
        snprintf(o->stop_reason, sizeof o->stop_reason, "%s", ev->stop_reason ? ev->stop_reason : "");
        o->stop_token = ev->stop_token;
        o->n_completion = ev->n_completion_tokens;
        o->done = true;
        pthread_cond_signal(&o->cv);
    }
    pthread_mutex_unlock(&o->mu);
}

static qn_gen_params greedy(int32_t max_tokens) {
    qn_gen_params p;
    memset(&p, 0, sizeof p);
    p.sampling = qn_sampler_params_default();
    p.sampling.temperature = 0;
    p.max_tokens = max_tokens;
    p.n_logprobs = -1;
    return p;
}

/* Runs prompt text with p to the end into o. */
static void generate(const char *prompt, const qn_gen_params *p, gen_out *o) {
    memset(o, 0, sizeof *o);
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    int32_t toks[256], n = 0;
    assert_int_equal(qn_vocab_tokenize(g_model->vocab, prompt, strlen(prompt), true, true, toks, 256, &n), QN_OK);
    uint64_t id = 0;
    qn_error err = {0};
    assert_int_equal(qn_engine_submit(g_eng, toks, n, p, on_event, o, &id, &err), QN_OK);
    pthread_mutex_lock(&o->mu);
    while (!o->done) pthread_cond_wait(&o->cv, &o->mu);
    pthread_mutex_unlock(&o->mu);
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
}

static int32_t token_of(const char *text) {
    int32_t t[8], n = 0;
    assert_int_equal(qn_vocab_tokenize(g_model->vocab, text, strlen(text), false, true, t, 8, &n), QN_OK);
    assert_int_equal(n, 1);
    return t[0];
}

static void test_logit_bias(void **state) {
    (void)state;
    const int32_t x = token_of(" banana");
    qn_gen_params p = greedy(3);
    p.ignore_eos = true;
    qn_token_bias b = {x, 100.0f};
    p.logit_bias = &b;
    p.n_logit_bias = 1;
    gen_out o;
    generate("The capital of France is", &p, &o);
    assert_int_equal(o.finish, QN_FINISHED_LENGTH);
    assert_int_equal(o.n_tokens, 3);
    for (int i = 0; i < 3; i++) assert_int_equal(o.tokens[i], x);
    assert_string_equal(o.text, " banana banana banana");
}

static void test_min_tokens(void **state) {
    (void)state;
    const int32_t eos = qn_vocab_eos(g_model->vocab);
    assert_true(eos >= 0 && qn_vocab_is_eog(g_model->vocab, eos));
    qn_gen_params p = greedy(8);
    qn_token_bias b = {eos, 100.0f};
    p.logit_bias = &b;
    p.n_logit_bias = 1;
    gen_out o;
    generate("Hello", &p, &o);
    assert_int_equal(o.finish, QN_FINISHED_STOP);
    assert_int_equal(o.n_completion, 1); /* EOS at once */
    p.min_tokens = 3;
    generate("Hello", &p, &o);
    assert_int_equal(o.finish, QN_FINISHED_STOP);
    assert_int_equal(o.n_completion, 4); /* three masked steps, then EOS */
    assert_int_equal(o.n_tokens, 3);
    for (int i = 0; i < 3; i++) assert_int_not_equal(o.tokens[i], eos);

    /* stop_token_ids are masked the same way */
    const int32_t x = token_of(" banana");
    qn_gen_params q = greedy(8);
    qn_token_bias bx = {x, 100.0f};
    q.logit_bias = &bx;
    q.n_logit_bias = 1;
    q.stop_token_ids = &x;
    q.n_stop_token_ids = 1;
    q.min_tokens = 2;
    generate("Hello", &q, &o);
    assert_int_equal(o.finish, QN_FINISHED_STOP);
    assert_int_equal(o.stop_token, x);
    assert_int_equal(o.n_completion, 3);
    for (int i = 0; i < o.n_tokens; i++) assert_int_not_equal(o.tokens[i], x);
}

static void test_stop_strings(void **state) {
    (void)state;
    const int32_t x = token_of(" banana");
    qn_gen_params p = greedy(6);
    p.ignore_eos = true;
    qn_token_bias b = {x, 100.0f};
    p.logit_bias = &b;
    p.n_logit_bias = 1;
    const char *stop[] = {"na ban"};
    p.stop = stop;
    p.n_stop = 1;
    gen_out o;
    generate("Fruit:", &p, &o);
    assert_int_equal(o.finish, QN_FINISHED_STOP);
    assert_string_equal(o.stop_reason, "na ban");
    assert_string_equal(o.text, " bana");
    p.include_stop_str_in_output = true;
    generate("Fruit:", &p, &o);
    assert_int_equal(o.finish, QN_FINISHED_STOP);
    assert_string_equal(o.text, " banana ban");

    /* before min_tokens no stop string is looked for */
    const char *stop2[] = {"banana"};
    p.stop = stop2;
    p.include_stop_str_in_output = false;
    generate("Fruit:", &p, &o);
    assert_string_equal(o.text, " ");
    assert_int_equal(o.n_completion, 1);
    p.min_tokens = 2;
    generate("Fruit:", &p, &o);
    assert_int_equal(o.finish, QN_FINISHED_STOP);
    assert_string_equal(o.stop_reason, "banana");
    assert_string_equal(o.text, " banana ");
    assert_int_equal(o.n_completion, 2);
}

static void test_render_special(void **state) {
    (void)state;
    const int32_t im = token_of("<|im_start|>");
    qn_gen_params p = greedy(1);
    p.ignore_eos = true;
    qn_token_bias b = {im, 100.0f};
    p.logit_bias = &b;
    p.n_logit_bias = 1;
    gen_out o;
    generate("Hi", &p, &o);
    assert_int_equal(o.tokens[0], im);
    assert_string_equal(o.text, "");
    p.render_special = true;
    generate("Hi", &p, &o);
    assert_string_equal(o.text, "<|im_start|>");
}

static void test_utf8_tail_flush(void **state) {
    (void)state;
    /* a token that is a lone UTF-8 lead byte: held back by the detokenizer, U+FFFD at the end */
    int32_t lead = -1;
    for (int32_t t = 0; t < qn_vocab_n_tokens(g_model->vocab) && lead < 0; t++) {
        char piece[16];
        int32_t n = 0;
        if (qn_vocab_token_to_piece(g_model->vocab, t, piece, sizeof piece, &n, false) == QN_OK && n == 1 &&
            (unsigned char)piece[0] == 0xC3)
            lead = t;
    }
    if (lead < 0) skip();
    qn_gen_params p = greedy(1);
    p.ignore_eos = true;
    qn_token_bias b = {lead, 100.0f};
    p.logit_bias = &b;
    p.n_logit_bias = 1;
    gen_out o;
    generate("Caf", &p, &o);
    assert_int_equal(o.finish, QN_FINISHED_LENGTH);
    assert_string_equal(o.text, "\xEF\xBF\xBD");
}

static void test_bad_params(void **state) {
    (void)state;
    int32_t prompt[2] = {1, 2};
    uint64_t id;
    qn_error err = {0};
    qn_gen_params p = greedy(2);
    qn_token_bias b = {1 << 30, 1.0f};
    p.logit_bias = &b;
    p.n_logit_bias = 1;
    assert_int_equal(qn_engine_submit(g_eng, prompt, 2, &p, on_event, NULL, &id, &err), QN_ERR_INVALID_ARG);
    p = greedy(2);
    p.min_tokens = -1;
    assert_int_equal(qn_engine_submit(g_eng, prompt, 2, &p, on_event, NULL, &id, &err), QN_ERR_INVALID_ARG);
    p = greedy(2);
    const int32_t bad = -5;
    p.stop_token_ids = &bad;
    p.n_stop_token_ids = 1;
    assert_int_equal(qn_engine_submit(g_eng, prompt, 2, &p, on_event, NULL, &id, &err), QN_ERR_INVALID_ARG);
}

/* qn_ctx_eval_from: rows [from, n) are qn_ctx_eval's all-logits rows bit for bit, in one step and across steps
 * (n_batch 4: from at the start, inside the second step, in the last step); the rows before keep their poison; a from
 * outside [0, n) is refused. */
static void test_ctx_eval_from(void **state) {
    (void)state;
    enum { N = 11 };
    const int32_t toks[N] = {1, 504, 3458, 282, 4649, 314, 7, 2000, 13, 42, 99};
    const size_t V = (size_t)g_model->cfg.n_vocab;
    float *all = malloc(sizeof(float) * N * V), *part = malloc(sizeof(float) * N * V);
    assert_true(all && part);
    for (int nb = 0; nb < 2; nb++) {
        qn_ctx_params cp = qn_ctx_params_default();
        cp.n_ctx = 32, cp.n_batch = nb ? 4 : 32, cp.n_threads = 2;
        qn_ctx *ctx = NULL;
        qn_error err = {0};
        assert_int_equal(qn_ctx_create(g_model, &cp, &ctx, &err), QN_OK);
        assert_int_equal(qn_ctx_eval(ctx, toks, N, 0, true, all, &err), QN_OK);
        for (int from = 0; from < N; from += 5) {
            memset(part, 0xFF, sizeof(float) * N * V);
            qn_ctx_reset(ctx);
            assert_int_equal(qn_ctx_eval_from(ctx, toks, N, 0, from, part, &err), QN_OK);
            assert_int_equal(qn_ctx_n_past(ctx), N);
            assert_memory_equal(part + from * V, all + from * V, sizeof(float) * (N - from) * V);
            const uint8_t *b = (const uint8_t *)part;
            for (size_t i = 0; i < sizeof(float) * from * V; i++)
                if (b[i] != 0xFF) fail_msg("n_batch %d from %d: row %zu written", cp.n_batch, from, i / (4 * V));
        }
        qn_ctx_reset(ctx);
        assert_int_equal(qn_ctx_eval_from(ctx, toks, N, 0, N, part, &err), QN_ERR_INVALID_ARG);
        assert_int_equal(qn_ctx_eval_from(ctx, toks, N, 0, -1, part, &err), QN_ERR_INVALID_ARG);
        qn_ctx_destroy(ctx);
    }
    free(all), free(part);
}

static int setup(void **state) {
    (void)state;
    const char *path = qn_test_default_model();
    if (!path) return 0;
    qn_error err = {0};
    if (qn_model_load(path, &g_model, &err) != QN_OK) return -1;
    qn_engine_config c = qn_engine_config_default();
    c.max_model_len = 256;
    c.max_num_seqs = 4;
    c.kv_cache_bytes = 16 << 20;
    return qn_engine_create(g_model, &c, &g_eng, &err) == QN_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    qn_engine_destroy(g_eng);
    qn_model_free(g_model);
    return 0;
}

int main(void) {
    if (!qn_test_default_model()) {
        printf("skip: default model missing (scripts/fetch_model.sh)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logit_bias),     cmocka_unit_test(test_min_tokens),
        cmocka_unit_test(test_stop_strings),   cmocka_unit_test(test_render_special),
        cmocka_unit_test(test_utf8_tail_flush), cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_ctx_eval_from),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
