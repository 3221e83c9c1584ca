/* metrics.c — counters, histograms and Prometheus text rendering (see metrics.h).
 * Buckets are vLLM V1's (vllm/v1/metrics/loggers.py) so dashboards and SLO queries carry over. */
#include "host/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double qn_metrics_ttft_buckets[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
                                          1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
const size_t qn_metrics_n_ttft_buckets = sizeof qn_metrics_ttft_buckets / sizeof qn_metrics_ttft_buckets[0];
const double qn_metrics_itl_buckets[] = {0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,  0.3,  0.4, 0.5,
                                         0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
const size_t qn_metrics_n_itl_buckets = sizeof qn_metrics_itl_buckets / sizeof qn_metrics_itl_buckets[0];
const double qn_metrics_e2e_buckets[] = {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
                                         30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
const size_t qn_metrics_n_e2e_buckets = sizeof qn_metrics_e2e_buckets / sizeof qn_metrics_e2e_buckets[0];

#define QN_MAX_BUCKETS 64

typedef struct qn_hist {
    size_t n;                        /* finite upper bounds; +Inf is implicit */
    double le[QN_MAX_BUCKETS];       /* ascending */
    uint64_t count[QN_MAX_BUCKETS + 1]; /* per bucket, not cumulative; [n] = above the last bound */
    double sum;
    uint64_t total;
} qn_hist;

enum { QN_REASON_STOP, QN_REASON_LENGTH, QN_REASON_ABORT, QN_REASON_ERROR, QN_REASON_COUNT };
static const char *const qn_reason_names[QN_REASON_COUNT] = {"stop", "length", "abort", "error"};

struct qn_metrics {
    pthread_mutex_t mu;
    char *model_label; /* escaped for a label value */
    bool vllm_compat;
    uint64_t prompt_tokens, generation_tokens;
    uint64_t success[QN_REASON_COUNT];
    qn_hist ttft, itl, e2e, req_prompt, req_gen;
};

static void hist_init(qn_hist *h, const double *le, size_t n) {
    memset(h, 0, sizeof *h);
    h->n = n > QN_MAX_BUCKETS ? QN_MAX_BUCKETS : n;
    memcpy(h->le, le, h->n * sizeof(double));
}

static void hist_observe(qn_hist *h, double v) {
    if (!isfinite(v)) return;
    size_t i = 0;
    while (i < h->n && v > h->le[i]) i++;
    h->count[i]++;
    h->sum += v;
    h->total++;
}

/* vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... <= max. */
static size_t buckets_125(double *out, size_t cap, double max) {
    static const double mant[3] = {1, 2, 5};
    size_t n = 0;
    for (double exp = 1; n < cap; exp *= 10) {
        for (int k = 0; k < 3 && n < cap; k++) {
            double v = mant[k] * exp;
            if (v > max) return n;
            out[n++] = v;
        }
    }
    return n;
}

static char *escape_label(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(n * 2 + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' || s[i] == '"') {
            o[k++] = '\\';
            o[k++] = s[i];
        } else if (s[i] == '\n') {
            o[k++] = '\\';
            o[k++] = 'n';
        } else {
            o[k++] = s[i];
        }
    }
    o[k] = '\0';
    return o;
}

qn_status qn_metrics_create(const qn_metrics_config *cfg, qn_metrics **out, qn_error *err) {
    *out = NULL;
    qn_metrics *m = calloc(1, sizeof *m);
    if (!m) return qn_error_set(err, QN_ERR_NOMEM, "metrics: out of memory");
    m->model_label = escape_label(cfg && cfg->model_name ? cfg->model_name : "");
    if (!m->model_label || pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m->model_label);
        free(m);
        return qn_error_set(err, QN_ERR_NOMEM, "metrics: init failed");
    }
    m->vllm_compat = cfg && cfg->vllm_compat;
    hist_init(&m->ttft, qn_metrics_ttft_buckets, qn_metrics_n_ttft_buckets);
    hist_init(&m->itl, qn_metrics_itl_buckets, qn_metrics_n_itl_buckets);
    hist_init(&m->e2e, qn_metrics_e2e_buckets, qn_metrics_n_e2e_buckets);
    double b[QN_MAX_BUCKETS];
    double max_len = cfg && cfg->max_model_len > 0 ? cfg->max_model_len : (double)(1 << 20);
    size_t nb = buckets_125(b, QN_MAX_BUCKETS, max_len);
    hist_init(&m->req_prompt, b, nb);
    hist_init(&m->req_gen, b, nb);
    *out = m;
    return QN_OK;
}

void qn_metrics_destroy(qn_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m->model_label);
    free(m);
}

void qn_metrics_observe_ttft(qn_metrics *m, double seconds) {
    pthread_mutex_lock(&m->mu);
    hist_observe(&m->ttft, seconds);
    pthread_mutex_unlock(&m->mu);
}

void qn_metrics_observe_itl(qn_metrics *m, double seconds) {
    pthread_mutex_lock(&m->mu);
    hist_observe(&m->itl, seconds);
    pthread_mutex_unlock(&m->mu);
}

void qn_metrics_request_finished(qn_metrics *m, qn_finish_reason reason, int64_t prompt_tokens,
                                 int64_t generation_tokens, double e2e_seconds) {
    int r = reason == QN_FINISH_STOP     ? QN_REASON_STOP
            : reason == QN_FINISH_LENGTH ? QN_REASON_LENGTH
            : reason == QN_FINISH_ABORT  ? QN_REASON_ABORT
                                         : QN_REASON_ERROR;
    if (prompt_tokens < 0) prompt_tokens = 0;
    if (generation_tokens < 0) generation_tokens = 0;
    pthread_mutex_lock(&m->mu);
    m->success[r]++;
    m->prompt_tokens += (uint64_t)prompt_tokens;
    m->generation_tokens += (uint64_t)generation_tokens;
    hist_observe(&m->req_prompt, (double)prompt_tokens);
    hist_observe(&m->req_gen, (double)generation_tokens);
    hist_observe(&m->e2e, e2e_seconds);
    pthread_mutex_unlock(&m->mu);
}

/* --- rendering --- */

typedef struct qn_out {
    char *buf;
    size_t len, cap;
    bool oom;
} qn_out;

static void outf(qn_out *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void outf(qn_out *o, const char *fmt, ...) {
    if (o->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = true;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t ncap = (o->cap + (size_t)n + 1) * 2;
        char *nb = realloc(o->buf, ncap);
        if (!nb) {
            o->oom = true;
            return;
        }
        o->buf = nb;
        o->cap = ncap;
    }
}

/* Python/prometheus_client style: shortest round-trip, integral values keep ".0" ("1.0", "2560.0"). */
static void fmt_float(char *b, size_t cap, double v) {
    if (isinf(v)) {
        snprintf(b, cap, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (isnan(v)) {
        snprintf(b, cap, "NaN");
        return;
    }
    snprintf(b, cap, "%.15g", v);
    if (strtod(b, NULL) != v) snprintf(b, cap, "%.17g", v);
    if (!strpbrk(b, ".eEn")) {
        size_t l = strlen(b);
        if (l + 2 < cap) memcpy(b + l, ".0", 3);
    }
}

static void head(qn_out *o, const char *p, const char *name, const char *type, const char *help) {
    outf(o, "# HELP %s%s %s\n# TYPE %s%s %s\n", p, name, help, p, name, type);
}

static void sample_u(qn_out *o, const char *p, const char *name, const char *model, uint64_t v) {
    outf(o, "%s%s{model_name=\"%s\"} %llu\n", p, name, model, (unsigned long long)v);
}

static void sample_f(qn_out *o, const char *p, const char *name, const char *model, double v) {
    char f[40];
    fmt_float(f, sizeof f, v);
    outf(o, "%s%s{model_name=\"%s\"} %s\n", p, name, model, f);
}

static void render_hist(qn_out *o, const char *p, const char *name, const char *help, const char *model,
                        const qn_hist *h) {
    head(o, p, name, "histogram", help);
    uint64_t cum = 0;
    char f[40];
    for (size_t i = 0; i < h->n; i++) {
        cum += h->count[i];
        fmt_float(f, sizeof f, h->le[i]);
        outf(o, "%s%s_bucket{le=\"%s\",model_name=\"%s\"} %llu\n", p, name, f, model, (unsigned long long)cum);
    }
    cum += h->count[h->n];
    outf(o, "%s%s_bucket{le=\"+Inf\",model_name=\"%s\"} %llu\n", p, name, model, (unsigned long long)cum);
    fmt_float(f, sizeof f, h->sum);
    outf(o, "%s%s_sum{model_name=\"%s\"} %s\n", p, name, model, f);
    outf(o, "%s%s_count{model_name=\"%s\"} %llu\n", p, name, model, (unsigned long long)h->total);
}

/* One copy of every family under prefix p; `quern` adds families vLLM does not have. */
static void render_prefix(qn_out *o, const qn_metrics *m, const qn_engine_stats *st, const char *p, bool quern) {
    const char *mod = m->model_label;
    if (st) {
        head(o, p, "num_requests_running", "gauge", "Number of requests in model execution batches.");
        sample_u(o, p, "num_requests_running", mod, st->num_running > 0 ? (uint64_t)st->num_running : 0);
        head(o, p, "num_requests_waiting", "gauge", "Number of requests waiting to be processed.");
        sample_u(o, p, "num_requests_waiting", mod, st->num_waiting > 0 ? (uint64_t)st->num_waiting : 0);
        head(o, p, "kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.");
        sample_f(o, p, "kv_cache_usage_perc", mod, st->kv_usage);
        if (!quern) { /* deprecated alias that vLLM 0.9-0.10 still emits */
            head(o, p, "gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage (deprecated).");
            sample_f(o, p, "gpu_cache_usage_perc", mod, st->kv_usage);
        }
        head(o, p, "prefix_cache_queries_total", "counter", "Prefix cache queries, in terms of number of queried tokens.");
        sample_u(o, p, "prefix_cache_queries_total", mod, st->prefix_cache_queries);
        head(o, p, "prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.");
        sample_u(o, p, "prefix_cache_hits_total", mod, st->prefix_cache_hits);
        head(o, p, "num_preemptions_total", "counter", "Cumulative number of preemptions from the engine.");
        sample_u(o, p, "num_preemptions_total", mod, st->num_preemptions);
        if (quern) {
            head(o, p, "kv_blocks_free", "gauge", "Free KV-cache blocks.");
            sample_u(o, p, "kv_blocks_free", mod, st->kv_blocks_free > 0 ? (uint64_t)st->kv_blocks_free : 0);
            head(o, p, "kv_blocks_total", "gauge", "Total KV-cache blocks.");
            sample_u(o, p, "kv_blocks_total", mod, st->kv_blocks_total > 0 ? (uint64_t)st->kv_blocks_total : 0);
        }
    }
    head(o, p, "prompt_tokens_total", "counter", "Number of prefill tokens processed.");
    sample_u(o, p, "prompt_tokens_total", mod, m->prompt_tokens);
    head(o, p, "generation_tokens_total", "counter", "Number of generation tokens processed.");
    sample_u(o, p, "generation_tokens_total", mod, m->generation_tokens);
    head(o, p, "request_success_total", "counter", "Count of successfully processed requests.");
    for (int r = 0; r < QN_REASON_COUNT; r++)
        outf(o, "%srequest_success_total{finished_reason=\"%s\",model_name=\"%s\"} %llu\n", p, qn_reason_names[r], mod,
             (unsigned long long)m->success[r]);
    render_hist(o, p, "time_to_first_token_seconds", "Histogram of time to first token in seconds.", mod, &m->ttft);
    render_hist(o, p, "inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", mod, &m->itl);
    render_hist(o, p, "e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", mod, &m->e2e);
    render_hist(o, p, "request_prompt_tokens", "Number of prefill tokens processed.", mod, &m->req_prompt);
    render_hist(o, p, "request_generation_tokens", "Number of generation tokens processed.", mod, &m->req_gen);
}

char *qn_metrics_render(qn_metrics *m, const qn_engine_stats *stats, size_t *len) {
    qn_out o = {0};
    o.cap = 16384;
    o.buf = malloc(o.cap);
    if (!o.buf) return NULL;
    o.buf[0] = '\0';
    pthread_mutex_lock(&m->mu);
    render_prefix(&o, m, stats, "quern:", true);
    if (m->vllm_compat) render_prefix(&o, m, stats, "vllm:", false);
    pthread_mutex_unlock(&m->mu);
    if (o.oom) {
        free(o.buf);
        return NULL;
    }
    if (len) *len = o.len;
    return o.buf;
}
