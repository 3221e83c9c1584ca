/* test_metrics.c — Prometheus text exposition: every line parses (HELP/TYPE comments, samples with
 * valid names, labels and values), histograms have ascending _bucket{le} with +Inf == _count plus _sum,
 * counts land in the right buckets, the vllm: names appear only with the compat switch, concurrent
 * updates are not lost.
 * QN_TEST_LABELS: cpu */
#include "harness.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/metrics.h"

typedef struct sample {
    char name[128];
    char labels[256];
    double value;
} sample;

typedef struct exposition {
    sample s[1024];
    size_t n;
    char typed[128][128]; /* names declared by # TYPE */
    char types[128][256];
    size_t n_typed;
} exposition;

static bool name_ok(const char *n) {
    if (!(isalpha((unsigned char)n[0]) || n[0] == '_' || n[0] == ':')) return false;
    for (const char *p = n; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == ':')) return false;
    return true;
}

/* Parses the whole text; fails the test on any malformed line. */
static void parse_expo(const char *text, exposition *x) {
    memset(x, 0, sizeof *x);
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        char line[512];
        size_t len = (size_t)(nl - p);
        assert_true(len < sizeof line);
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl + 1;
        if (line[0] == '#') {
            char kind[8], name[128], rest[256];
            assert_int_equal(sscanf(line, "# %7s %127s %255[^\n]", kind, name, rest), 3);
            assert_true(!strcmp(kind, "HELP") || !strcmp(kind, "TYPE"));
            assert_true(name_ok(name));
            if (!strcmp(kind, "TYPE")) {
                assert_true(!strcmp(rest, "counter") || !strcmp(rest, "gauge") || !strcmp(rest, "histogram"));
                assert_true(x->n_typed < 128);
                snprintf(x->typed[x->n_typed], sizeof x->typed[0], "%s", name);
                snprintf(x->types[x->n_typed], sizeof x->types[0], "%s", rest);
                x->n_typed++;
            }
            continue;
        }
        assert_true(len > 0);
        sample *s = &x->s[x->n++];
        const char *brace = strchr(line, '{');
        const char *sp = strchr(line, ' ');
        assert_non_null(sp);
        const char *name_end = brace && brace < sp ? brace : sp;
        memcpy(s->name, line, (size_t)(name_end - line));
        s->name[name_end - line] = '\0';
        assert_true(name_ok(s->name));
        if (brace && brace < sp) {
            const char *close = strchr(brace, '}');
            assert_non_null(close);
            memcpy(s->labels, brace + 1, (size_t)(close - brace - 1));
            s->labels[close - brace - 1] = '\0';
            /* label pairs: name="value",... */
            const char *q = s->labels;
            while (*q) {
                const char *eq = strchr(q, '=');
                assert_non_null(eq);
                assert_true(eq[1] == '"');
                const char *endq = eq + 2;
                while (*endq && *endq != '"') endq += (*endq == '\\') ? 2 : 1;
                assert_true(*endq == '"');
                q = endq + 1;
                if (*q == ',') q++;
            }
            sp = close + 1;
            assert_true(*sp == ' ');
        }
        const char *v = sp + 1;
        char *end;
        s->value = !strcmp(v, "+Inf") ? INFINITY : strtod(v, &end);
        if (strcmp(v, "+Inf")) assert_true(*end == '\0' && end != v);
    }
}

static const sample *find(const exposition *x, const char *name, const char *label_sub) {
    for (size_t i = 0; i < x->n; i++)
        if (!strcmp(x->s[i].name, name) && (!label_sub || strstr(x->s[i].labels, label_sub))) return &x->s[i];
    return NULL;
}

static __attribute__((noinline)) bool has_label(const sample *s, const char *sub) {
    return s && strstr(s->labels, sub) != NULL;
}

static double le_of(const sample *s) {
    const char *p = strstr(s->labels, "le=\"");
    assert_non_null(p);
    p += 4;
    return !strncmp(p, "+Inf", 4) ? INFINITY : strtod(p, NULL);
}

/* Every histogram family: buckets ascending and cumulative, +Inf == _count, _sum present; every sample
 * belongs to a TYPE-declared family. */
static void check_families(const exposition *x) {
    for (size_t t = 0; t < x->n_typed; t++) {
        const char *fam = x->typed[t];
        if (strcmp(x->types[t], "histogram")) {
            assert_non_null(find(x, fam, NULL));
            continue;
        }
        char bucket[160], sum[160], count[160];
        snprintf(bucket, sizeof bucket, "%s_bucket", fam);
        snprintf(sum, sizeof sum, "%s_sum", fam);
        snprintf(count, sizeof count, "%s_count", fam);
        double prev_le = -INFINITY, prev_v = 0;
        size_t nb = 0;
        bool saw_inf = false;
        for (size_t i = 0; i < x->n; i++) {
            if (strcmp(x->s[i].name, bucket)) continue;
            double le = le_of(&x->s[i]);
            assert_true(le > prev_le);
            assert_true(x->s[i].value >= prev_v);
            prev_le = le;
            prev_v = x->s[i].value;
            nb++;
            if (isinf(le)) saw_inf = true;
        }
        assert_true(nb >= 2);
        assert_true(saw_inf);
        const sample *c = find(x, count, NULL);
        assert_non_null(c);
        assert_non_null(find(x, sum, NULL));
        assert_true(c->value == prev_v);
    }
    for (size_t i = 0; i < x->n; i++) {
        bool declared = false;
        for (size_t t = 0; t < x->n_typed && !declared; t++) {
            size_t fl = strlen(x->typed[t]);
            if (!strncmp(x->s[i].name, x->typed[t], fl) &&
                (x->s[i].name[fl] == '\0' || !strcmp(x->s[i].name + fl, "_bucket") ||
                 !strcmp(x->s[i].name + fl, "_sum") || !strcmp(x->s[i].name + fl, "_count")))
                declared = true;
        }
        if (!declared) fail_msg("sample %s has no TYPE line", x->s[i].name);
    }
}

static void test_render_parses(void **state) {
    (void)state;
    qn_metrics *m;
    qn_metrics_config cfg = {.model_name = "my \"model\"\\x", .vllm_compat = true, .max_model_len = 4096};
    assert_int_equal(qn_metrics_create(&cfg, &m, NULL), QN_OK);
    qn_metrics_observe_ttft(m, 0.003);  /* -> le 0.005 */
    qn_metrics_observe_ttft(m, 5000.0); /* -> +Inf only */
    qn_metrics_observe_itl(m, 0.01);    /* boundary: le is inclusive */
    qn_metrics_request_finished(m, QN_FINISH_STOP, 100, 20, 1.2);
    qn_metrics_request_finished(m, QN_FINISH_LENGTH, 10, 5, 0.1);
    qn_metrics_request_finished(m, QN_FINISH_ABORT, 7, 0, 0.2);
    qn_engine_stats st = {.num_running = 3, .num_waiting = 2, .kv_usage = 0.25, .kv_blocks_free = 75,
                          .kv_blocks_total = 100, .prefix_cache_queries = 1000, .prefix_cache_hits = 600,
                          .num_preemptions = 4};
    size_t len;
    char *text = qn_metrics_render(m, &st, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    exposition *x = malloc(sizeof *x);
    parse_expo(text, x);
    check_families(x);

    const char *lab = "model_name=\"my \\\"model\\\"\\\\x\"";
    const sample *s = find(x, "vllm:num_requests_running", NULL);
    if (!s) fail_msg("vllm:num_requests_running missing");
    assert_true(has_label(s, lab));
    assert_true(s->value == 3);
    assert_true(find(x, "vllm:num_requests_waiting", NULL)->value == 2);
    assert_true(find(x, "vllm:kv_cache_usage_perc", NULL)->value == 0.25);
    assert_true(find(x, "vllm:gpu_cache_usage_perc", NULL)->value == 0.25);
    assert_true(find(x, "vllm:prefix_cache_queries_total", NULL)->value == 1000);
    assert_true(find(x, "vllm:prefix_cache_hits_total", NULL)->value == 600);
    assert_true(find(x, "vllm:num_preemptions_total", NULL)->value == 4);
    assert_true(find(x, "vllm:prompt_tokens_total", NULL)->value == 117);
    assert_true(find(x, "vllm:generation_tokens_total", NULL)->value == 25);
    assert_true(find(x, "vllm:request_success_total", "finished_reason=\"stop\"")->value == 1);
    assert_true(find(x, "vllm:request_success_total", "finished_reason=\"length\"")->value == 1);
    assert_true(find(x, "vllm:request_success_total", "finished_reason=\"abort\"")->value == 1);
    assert_true(find(x, "quern:kv_blocks_free", NULL)->value == 75);
    assert_null(find(x, "vllm:kv_blocks_free", NULL));
    assert_null(find(x, "quern:gpu_cache_usage_perc", NULL));

    /* bucket placement and le formatting ("0.005", "1.0", "+Inf") */
    assert_true(find(x, "vllm:time_to_first_token_seconds_bucket", "le=\"0.001\"")->value == 0);
    assert_true(find(x, "vllm:time_to_first_token_seconds_bucket", "le=\"0.005\"")->value == 1);
    assert_true(find(x, "vllm:time_to_first_token_seconds_bucket", "le=\"2560.0\"")->value == 1);
    assert_true(find(x, "vllm:time_to_first_token_seconds_bucket", "le=\"+Inf\"")->value == 2);
    assert_true(find(x, "vllm:time_to_first_token_seconds_count", NULL)->value == 2);
    assert_true(fabs(find(x, "vllm:time_to_first_token_seconds_sum", NULL)->value - 5000.003) < 1e-9);
    assert_true(find(x, "vllm:inter_token_latency_seconds_bucket", "le=\"0.01\"")->value == 1);
    assert_true(find(x, "vllm:e2e_request_latency_seconds_bucket", "le=\"0.3\"")->value == 2);
    assert_true(find(x, "vllm:e2e_request_latency_seconds_bucket", "le=\"1.5\"")->value == 3);
    assert_non_null(find(x, "vllm:e2e_request_latency_seconds_bucket", "le=\"7680.0\""));
    /* 1-2-5 token buckets up to max_model_len */
    assert_true(find(x, "vllm:request_prompt_tokens_bucket", "le=\"10.0\"")->value == 2);
    assert_true(find(x, "vllm:request_prompt_tokens_bucket", "le=\"100.0\"")->value == 3);
    assert_non_null(find(x, "vllm:request_prompt_tokens_bucket", "le=\"2000.0\""));
    assert_null(find(x, "vllm:request_prompt_tokens_bucket", "le=\"5000.0\""));

    /* counters are declared with their _total name (prometheus_client's text format) */
    assert_non_null(strstr(text, "# TYPE vllm:num_preemptions_total counter\n"));
    assert_non_null(strstr(text, "# TYPE quern:time_to_first_token_seconds histogram\n"));
    free(x);
    free(text);

    /* the quern: and vllm: copies agree */
    text = qn_metrics_render(m, &st, &len);
    const char *q = strstr(text, "quern:e2e_request_latency_seconds_count");
    const char *v = strstr(text, "vllm:e2e_request_latency_seconds_count");
    assert_non_null(q);
    assert_non_null(v);
    assert_true(strtod(strstr(q, "} ") + 2, NULL) == strtod(strstr(v, "} ") + 2, NULL));
    assert_true(strtod(strstr(q, "} ") + 2, NULL) == 3);
    free(text);
    qn_metrics_destroy(m);
}

static void test_no_compat_no_stats(void **state) {
    (void)state;
    qn_metrics *m;
    qn_metrics_config cfg = {.model_name = "m", .vllm_compat = false, .max_model_len = 0};
    assert_int_equal(qn_metrics_create(&cfg, &m, NULL), QN_OK);
    char *text = qn_metrics_render(m, NULL, NULL);
    assert_non_null(text);
    assert_null(strstr(text, "vllm:"));
    assert_null(strstr(text, "num_requests_running")); /* engine gauges need stats */
    exposition *x = malloc(sizeof *x);
    parse_expo(text, x);
    check_families(x);
    assert_true(find(x, "quern:request_success_total", "finished_reason=\"error\"")->value == 0);
    assert_true(find(x, "quern:time_to_first_token_seconds_count", NULL)->value == 0);
    free(x);
    free(text);
    qn_metrics_destroy(m);
    qn_metrics_destroy(NULL);
}

typedef struct hammer_arg {
    qn_metrics *m;
    int n;
} hammer_arg;

static void *hammer(void *arg) {
    hammer_arg *a = arg;
    for (int i = 0; i < a->n; i++) {
        qn_metrics_observe_itl(a->m, 0.02);
        qn_metrics_request_finished(a->m, QN_FINISH_STOP, 1, 1, 0.5);
    }
    return NULL;
}

static void test_thread_safe_updates(void **state) {
    (void)state;
    qn_metrics *m;
    qn_metrics_config cfg = {.model_name = "m"};
    assert_int_equal(qn_metrics_create(&cfg, &m, NULL), QN_OK);
    pthread_t th[4];
    hammer_arg a = {m, 5000};
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, hammer, &a);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    char *text = qn_metrics_render(m, NULL, NULL);
    exposition *x = malloc(sizeof *x);
    parse_expo(text, x);
    assert_true(find(x, "quern:inter_token_latency_seconds_count", NULL)->value == 20000);
    assert_true(find(x, "quern:request_success_total", "finished_reason=\"stop\"")->value == 20000);
    assert_true(find(x, "quern:generation_tokens_total", NULL)->value == 20000);
    free(x);
    free(text);
    qn_metrics_destroy(m);
}

static void test_bucket_tables(void **state) {
    (void)state;
    assert_int_equal(qn_metrics_n_ttft_buckets, 22);
    assert_true(qn_metrics_ttft_buckets[0] == 0.001 && qn_metrics_ttft_buckets[21] == 2560.0);
    assert_int_equal(qn_metrics_n_itl_buckets, 19);
    assert_true(qn_metrics_itl_buckets[0] == 0.01 && qn_metrics_itl_buckets[18] == 80.0);
    assert_int_equal(qn_metrics_n_e2e_buckets, 21);
    assert_true(qn_metrics_e2e_buckets[0] == 0.3 && qn_metrics_e2e_buckets[20] == 7680.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_parses),
        cmocka_unit_test(test_no_compat_no_stats),
        cmocka_unit_test(test_thread_safe_updates),
        cmocka_unit_test(test_bucket_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
