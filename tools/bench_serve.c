/* bench_serve.c — `quern bench serve`: a serving load generator in the manner of `vllm bench serve`
 * (serving-api.md §3.3), against any OpenAI-compatible /v1/completions endpoint (quern serve, vLLM,
 * llama-server). One libevent loop drives every request: SSE streaming with ignore_eos and include_usage,
 * Poisson (gamma with --burstiness) or instant arrivals, a --max-concurrency cap. Measures vLLM's way:
 * TTFT = send -> first chunk with choices; ITL = gaps between such chunks; TPOT = (E2EL - TTFT) / (out - 1)
 * with out = usage.completion_tokens; percentiles with linear interpolation (numpy's default). Prints the
 * vLLM summary block and writes the vLLM result JSON (--save-result). Prompts: random token ids
 * (--random-input-len, --random-range-ratio, --random-prefix-len) or ShareGPT conversations whose lengths
 * come from the server's /tokenize. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "args.h"
#include "commands.h"
#include "common.h"

#ifndef QN_BUILD_COMMIT
#define QN_BUILD_COMMIT "unknown"
#endif

typedef struct bs_opts {
    const char *base_url, *host, *endpoint, *model, *dataset, *dataset_path, *request_rate, *api_key;
    const char *percentile_metrics, *metric_percentiles, *result_dir, *result_filename, *label, *token_range;
    const char *backend; /* accepted for vLLM command lines; always the OpenAI completions protocol */
    int port, num_prompts, input_len, output_len, prefix_len, max_concurrency, sharegpt_output_len, warmups;
    int timeout_s;
    int64_t seed;
    float range_ratio, burstiness, temperature;
    bool save_result, no_ignore_eos, ignore_eos, help, disable_tqdm;
} bs_opts;

/* One benchmark request and what was measured for it. */
typedef struct bs_req {
    struct bs_run *run;
    int idx;
    int32_t *ids;           /* [n_in] random prompt */
    char *text;             /* or the ShareGPT prompt */
    int n_in, n_out;        /* input tokens, requested output tokens */
    struct evhttp_connection *evcon;
    char *buf;              /* unparsed SSE bytes */
    size_t n_buf, cap_buf;
    double t_send, t_last, ttft, latency;
    double *itl;            /* [n_itl] */
    int n_itl, cap_itl;
    double *tok_t;          /* chunk arrival times (peak throughput) */
    int n_tok_t, cap_tok_t;
    int n_chunks, usage_out; /* content chunks; usage.completion_tokens (-1 = none) */
    bool done, ok, saw_done;
    char err[256];
} bs_req;

typedef struct bs_run {
    const bs_opts *o;
    struct event_base *base;
    char host[256];
    int port;
    char prefix[256];       /* path prefix from --base-url */
    char model[256];
    bs_req *reqs;
    int n_reqs;
    double *arrival;        /* [n_reqs] offsets from the start, seconds */
    int next, in_flight, n_done, max_in_flight;
    double t0;
    struct event *timer;
    bool warmup;
} bs_run;

/* ---------------------------------------------------------------- small helpers */

static double now_s(void) { return qn_tool_now_s(); }

static uint64_t rng_u64(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unit(uint64_t *s) { return (double)(rng_u64(s) >> 11) * (1.0 / 9007199254740992.0); }
static double rng_normal(uint64_t *s) {
    double u1 = rng_unit(s), u2 = rng_unit(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
/* Gamma(shape k, scale 1) by Marsaglia-Tsang (k < 1 boosted). */
static double rng_gamma(uint64_t *s, double k) {
    if (k < 1.0) return rng_gamma(s, k + 1.0) * pow(rng_unit(s) + 1e-300, 1.0 / k);
    const double d = k - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = rng_normal(s), v = 1.0 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        const double u = rng_unit(s);
        if (log(u + 1e-300) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
    }
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* numpy.percentile(linear) of sorted v[n] */
static double percentile(const double *v, int n, double p) {
    if (n <= 0) return 0;
    const double pos = p / 100.0 * (n - 1);
    const int lo = (int)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

typedef struct bs_stats {
    double mean, median, std;
    double pct[16];
} bs_stats;

static void stats_of(double *v, int n, const double *ps, int n_ps, bs_stats *out) {
    memset(out, 0, sizeof *out);
    if (n <= 0) return;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += v[i];
    out->mean = sum / n;
    double var = 0;
    for (int i = 0; i < n; i++) var += (v[i] - out->mean) * (v[i] - out->mean);
    out->std = sqrt(var / n);
    out->median = percentile(v, n, 50);
    for (int i = 0; i < n_ps && i < 16; i++) out->pct[i] = percentile(v, n, ps[i]);
}

static bool push_d(double **v, int *n, int *cap, double x) {
    if (*n >= *cap) {
        int c = *cap ? *cap * 2 : 64;
        double *nv = realloc(*v, sizeof(double) * (size_t)c);
        if (!nv) return false;
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = x;
    return true;
}

/* ---------------------------------------------------------------- one synchronous request (setup) */

typedef struct bs_sync {
    int status;
    char *body;
    size_t len;
    bool done;
} bs_sync;

static void sync_done(struct evhttp_request *req, void *arg) {
    bs_sync *s = arg;
    s->done = true;
    if (!req) return;
    s->status = evhttp_request_get_response_code(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    s->len = evbuffer_get_length(in);
    s->body = malloc(s->len + 1);
    if (s->body) {
        evbuffer_remove(in, s->body, s->len);
        s->body[s->len] = '\0';
    }
}

static void add_headers(bs_run *r, struct evhttp_request *req, bool json_body) {
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", r->host);
    if (json_body) evhttp_add_header(h, "Content-Type", "application/json");
    if (r->o->api_key) {
        char a[600];
        snprintf(a, sizeof a, "Bearer %s", r->o->api_key);
        evhttp_add_header(h, "Authorization", a);
    }
}

/* Runs one request to completion on the loop; returns the status (0 = no response). body malloc'd. */
static int sync_request(bs_run *r, enum evhttp_cmd_type cmd, const char *path, const char *body, char **out) {
    bs_sync s = {0};
    struct evhttp_connection *c = evhttp_connection_base_new(r->base, NULL, r->host, (unsigned short)r->port);
    if (!c) return 0;
    evhttp_connection_set_timeout(c, r->o->timeout_s);
    struct evhttp_request *req = evhttp_request_new(sync_done, &s);
    add_headers(r, req, body != NULL);
    if (body) evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    char full[512];
    snprintf(full, sizeof full, "%s%s", r->prefix, path);
    if (evhttp_make_request(c, req, cmd, full) != 0) {
        evhttp_connection_free(c);
        return 0;
    }
    while (!s.done) event_base_loop(r->base, EVLOOP_ONCE);
    evhttp_connection_free(c);
    if (out) *out = s.body;
    else free(s.body);
    return s.status;
}

/* ---------------------------------------------------------------- streaming requests */

static void dispatch(bs_run *r);

static void free_conn_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    evhttp_connection_free(arg);
}

/* Parses the complete SSE events in q->buf. */
static void parse_events(bs_req *q, double t) {
    size_t start = 0;
    for (;;) {
        char *end = NULL;
        for (size_t i = start; i + 1 < q->n_buf; i++)
            if (q->buf[i] == '\n' && q->buf[i + 1] == '\n') {
                end = q->buf + i;
                break;
            }
        if (!end) break;
        char *ev = q->buf + start;
        const size_t len = (size_t)(end - ev);
        start = (size_t)(end - q->buf) + 2;
        if (len < 6 || strncmp(ev, "data: ", 6)) continue; /* ':' pings and other fields */
        if (len == 12 && !strncmp(ev + 6, "[DONE]", 6)) {
            q->saw_done = true;
            continue;
        }
        json_error_t je;
        json_t *o = json_loadb(ev + 6, len - 6, 0, &je);
        if (!o) continue;
        json_t *err = json_object_get(o, "error");
        if (err && !json_is_null(err)) {
            json_t *m = json_object_get(err, "message");
            snprintf(q->err, sizeof q->err, "error event: %s", json_is_string(m) ? json_string_value(m) : "?");
        }
        json_t *ch = json_object_get(o, "choices");
        if (json_is_array(ch) && json_array_size(ch) > 0) {
            if (q->n_chunks == 0) q->ttft = t - q->t_send;
            else push_d(&q->itl, &q->n_itl, &q->cap_itl, t - q->t_last);
            q->t_last = t;
            q->n_chunks++;
            push_d(&q->tok_t, &q->n_tok_t, &q->cap_tok_t, t);
        }
        json_t *u = json_object_get(o, "usage");
        if (json_is_object(u)) {
            json_t *ct = json_object_get(u, "completion_tokens");
            if (json_is_integer(ct)) q->usage_out = (int)json_integer_value(ct);
        }
        json_decref(o);
    }
    memmove(q->buf, q->buf + start, q->n_buf - start);
    q->n_buf -= start;
}

static void take_input(bs_req *q, struct evhttp_request *req, double t) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    const size_t n = evbuffer_get_length(in);
    if (!n) return;
    if (q->n_buf + n + 1 > q->cap_buf) {
        size_t c = (q->n_buf + n + 1) * 2;
        char *b = realloc(q->buf, c);
        if (!b) {
            evbuffer_drain(in, n);
            return;
        }
        q->buf = b;
        q->cap_buf = c;
    }
    evbuffer_remove(in, q->buf + q->n_buf, n);
    q->n_buf += n;
    parse_events(q, t);
}

static void on_chunk(struct evhttp_request *req, void *arg) {
    bs_req *q = arg;
    if (evhttp_request_get_response_code(req) == 200) take_input(q, req, now_s());
}

static void on_done(struct evhttp_request *req, void *arg) {
    bs_req *q = arg;
    bs_run *r = q->run;
    const double t = now_s();
    const int code = req ? evhttp_request_get_response_code(req) : 0;
    if (req && code == 200) take_input(q, req, t);
    q->latency = t - q->t_send;
    q->done = true;
    if (code != 200) {
        char body[200] = "";
        if (req) {
            struct evbuffer *in = evhttp_request_get_input_buffer(req);
            size_t n = evbuffer_get_length(in);
            if (n > sizeof body - 1) n = sizeof body - 1;
            evbuffer_remove(in, body, n);
            body[n] = '\0';
        }
        if (code) snprintf(q->err, sizeof q->err, "HTTP %d: %s", code, body);
        else snprintf(q->err, sizeof q->err, "connection failed or timed out");
    } else if (!q->err[0] && q->n_chunks == 0) {
        snprintf(q->err, sizeof q->err, "no tokens streamed");
    } else if (!q->err[0] && !q->saw_done) {
        snprintf(q->err, sizeof q->err, "stream ended without [DONE]");
    }
    q->ok = code == 200 && !q->err[0];
    if (q->usage_out < 0) q->usage_out = q->n_chunks; /* no usage chunk: count chunks */
    struct timeval zero = {0, 0};
    event_base_once(r->base, -1, EV_TIMEOUT, free_conn_cb, q->evcon, &zero);
    q->evcon = NULL;
    r->in_flight--;
    r->n_done++;
    if (r->n_done == r->n_reqs) event_base_loopbreak(r->base);
    else dispatch(r);
}

static char *request_body(const bs_run *r, const bs_req *q) {
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(r->model));
    if (q->ids) {
        json_t *a = json_array();
        for (int i = 0; i < q->n_in; i++) json_array_append_new(a, json_integer(q->ids[i]));
        json_object_set_new(o, "prompt", a);
    } else {
        json_object_set_new(o, "prompt", json_string(q->text));
    }
    json_object_set_new(o, "max_tokens", json_integer(q->n_out));
    json_object_set_new(o, "temperature", json_real(r->o->temperature));
    json_object_set_new(o, "repetition_penalty", json_real(1.0));
    json_object_set_new(o, "ignore_eos", json_boolean(!r->o->no_ignore_eos));
    json_object_set_new(o, "stream", json_true());
    json_object_set_new(o, "stream_options", json_pack("{s:b}", "include_usage", 1));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static bool send_req(bs_run *r, bs_req *q) {
    q->run = r;
    q->usage_out = -1;
    q->evcon = evhttp_connection_base_new(r->base, NULL, r->host, (unsigned short)r->port);
    if (!q->evcon) return false;
    evhttp_connection_set_timeout(q->evcon, r->o->timeout_s);
    struct evhttp_request *req = evhttp_request_new(on_done, q);
    evhttp_request_set_chunked_cb(req, on_chunk);
    add_headers(r, req, true);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Accept", "text/event-stream");
    char *body = request_body(r, q);
    if (!body) {
        evhttp_request_free(req);
        return false;
    }
    evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    free(body);
    char path[512];
    snprintf(path, sizeof path, "%s%s", r->prefix, r->o->endpoint);
    r->in_flight++;
    if (r->in_flight > r->max_in_flight) r->max_in_flight = r->in_flight;
    q->t_send = now_s();
    if (evhttp_make_request(q->evcon, req, EVHTTP_REQ_POST, path) != 0) { /* req freed by libevent */
        r->in_flight--;
        return false;
    }
    return true;
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    dispatch(arg);
}

/* Sends every request whose arrival time has come while the concurrency cap allows; re-arms the timer. */
static void dispatch(bs_run *r) {
    const int cap = r->o->max_concurrency > 0 ? r->o->max_concurrency : 1 << 30;
    while (r->next < r->n_reqs && r->in_flight < cap) {
        const double due = r->t0 + r->arrival[r->next];
        const double t = now_s();
        if (due > t) {
            double dt = due - t;
            struct timeval tv = {(long)dt, (long)((dt - floor(dt)) * 1e6)};
            evtimer_add(r->timer, &tv);
            return;
        }
        bs_req *q = &r->reqs[r->next++];
        if (!send_req(r, q)) {
            q->done = true;
            snprintf(q->err, sizeof q->err, "cannot send");
            q->usage_out = 0;
            r->n_done++;
            if (r->n_done == r->n_reqs) event_base_loopbreak(r->base);
        }
    }
}

/* ---------------------------------------------------------------- datasets */

static int make_random(bs_run *r, uint64_t *rng) {
    const bs_opts *o = r->o;
    int lo = 1000, hi = 10000;
    if (o->token_range && (sscanf(o->token_range, "%d:%d", &lo, &hi) != 2 || lo < 0 || hi <= lo)) {
        fprintf(stderr, "quern bench serve: --random-token-range: want LO:HI with 0 <= LO < HI\n");
        return -1;
    }
    int32_t *prefix = NULL;
    if (o->prefix_len > 0) {
        prefix = malloc(sizeof(int32_t) * (size_t)o->prefix_len);
        if (!prefix) return -1;
        for (int i = 0; i < o->prefix_len; i++) prefix[i] = lo + (int32_t)(rng_u64(rng) % (uint64_t)(hi - lo));
    }
    const double rr = o->range_ratio;
    const int in_lo = (int)floor(o->input_len * (1 - rr)), in_hi = (int)ceil(o->input_len * (1 + rr));
    const int out_lo = (int)floor(o->output_len * (1 - rr)), out_hi = (int)ceil(o->output_len * (1 + rr));
    for (int i = 0; i < r->n_reqs; i++) {
        bs_req *q = &r->reqs[i];
        q->idx = i;
        const int n = in_lo + (int)(rng_u64(rng) % (uint64_t)(in_hi - in_lo + 1));
        q->n_out = out_lo + (int)(rng_u64(rng) % (uint64_t)(out_hi - out_lo + 1));
        if (q->n_out < 1) q->n_out = 1;
        q->n_in = o->prefix_len + (n > 1 ? n : 1);
        q->ids = malloc(sizeof(int32_t) * (size_t)q->n_in);
        if (!q->ids) {
            free(prefix);
            return -1;
        }
        for (int k = 0; k < o->prefix_len; k++) q->ids[k] = prefix[k];
        for (int k = o->prefix_len; k < q->n_in; k++) q->ids[k] = lo + (int32_t)(rng_u64(rng) % (uint64_t)(hi - lo));
    }
    free(prefix);
    return 0;
}

/* Token count of text via the server's /tokenize; -1 on failure. */
static int server_count(bs_run *r, const char *text, bool add_special) {
    json_t *o = json_pack("{s:s,s:b}", "prompt", text, "add_special_tokens", add_special);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char *resp = NULL;
    int st = body ? sync_request(r, EVHTTP_REQ_POST, "/tokenize", body, &resp) : 0;
    free(body);
    int n = -1;
    if (st == 200 && resp) {
        json_t *j = json_loads(resp, 0, NULL);
        json_t *c = json_object_get(j, "count");
        if (json_is_integer(c)) n = (int)json_integer_value(c);
        else if (json_is_array(json_object_get(j, "tokens"))) n = (int)json_array_size(json_object_get(j, "tokens"));
        json_decref(j);
    }
    free(resp);
    return n;
}

/* ShareGPT: [{"conversations":[{"from":"human","value":...},{"from":"gpt","value":...}]}, ...], shuffled with the
 * seed; vLLM's filter (prompt or output < 4 tokens, prompt > 1024, prompt + output > 2048 are skipped). */
static int make_sharegpt(bs_run *r, uint64_t *rng) {
    const bs_opts *o = r->o;
    json_error_t je;
    json_t *root = json_load_file(o->dataset_path, 0, &je);
    if (!json_is_array(root)) {
        fprintf(stderr, "quern bench serve: %s: %s\n", o->dataset_path, root ? "not a JSON array" : je.text);
        json_decref(root);
        return -1;
    }
    const size_t n = json_array_size(root);
    size_t *order = malloc(sizeof(size_t) * (n ? n : 1));
    if (!order) {
        json_decref(root);
        return -1;
    }
    for (size_t i = 0; i < n; i++) order[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_u64(rng) % i), t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    int got = 0;
    for (size_t k = 0; k < n && got < r->n_reqs; k++) {
        json_t *conv = json_object_get(json_array_get(root, order[k]), "conversations");
        if (!json_is_array(conv) || json_array_size(conv) < 2) continue;
        const char *p = json_string_value(json_object_get(json_array_get(conv, 0), "value"));
        const char *c = json_string_value(json_object_get(json_array_get(conv, 1), "value"));
        if (!p || !c) continue;
        const int n_in = server_count(r, p, true);
        const int n_out = o->sharegpt_output_len > 0 ? o->sharegpt_output_len : server_count(r, c, false);
        if (n_in < 0 || n_out < 0) {
            fprintf(stderr, "quern bench serve: /tokenize failed on the server\n");
            free(order);
            json_decref(root);
            return -1;
        }
        if (n_in < 4 || n_out < 4 || n_in > 1024 || n_in + n_out > 2048) continue;
        bs_req *q = &r->reqs[got];
        q->idx = got;
        q->text = strdup(p);
        q->n_in = n_in;
        q->n_out = n_out;
        if (!q->text) break;
        got++;
    }
    free(order);
    json_decref(root);
    if (got < r->n_reqs) {
        fprintf(stderr, "quern bench serve: only %d usable conversations in %s (asked %d)\n", got, o->dataset_path,
                r->n_reqs);
        if (got == 0) return -1;
        r->n_reqs = got;
    }
    return 0;
}

/* ---------------------------------------------------------------- report */

typedef struct bs_metric {
    const char *key;   /* ttft | tpot | itl | e2el */
    const char *title; /* section header */
    const char *abbr;  /* TTFT ... */
    double *v;
    int n;
    bs_stats s;
} bs_metric;

static int parse_percentiles(const char *s, double *out, int cap) {
    int n = 0;
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", s);
    for (char *save = NULL, *t = strtok_r(tmp, ",", &save); t && n < cap; t = strtok_r(NULL, ",", &save)) {
        char *end = NULL;
        double p = strtod(t, &end);
        if (end == t || *end || p < 0 || p > 100) return -1;
        out[n++] = p;
    }
    return n;
}

static void fmt_pct(double p, char *buf, size_t cap) {
    if (p == floor(p)) snprintf(buf, cap, "%d", (int)p);
    else snprintf(buf, cap, "%g", p);
}

static void line_i(const char *k, long long v) { printf("%-40s %-10lld\n", k, v); }
static void line_f(const char *k, double v) { printf("%-40s %-10.2f\n", k, v); }
static void banner(const char *title, char c) {
    const int n = 50, len = (int)strlen(title), left = (n - len) / 2, right = n - len - left;
    for (int i = 0; i < left; i++) putchar(c);
    fputs(title, stdout);
    for (int i = 0; i < right; i++) putchar(c);
    putchar('\n');
}

static json_t *json_dlist(const double *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

static int report(bs_run *r, double duration) {
    const bs_opts *o = r->o;
    double ps[16];
    const int n_ps = parse_percentiles(o->metric_percentiles, ps, 16);
    if (n_ps < 0) {
        fprintf(stderr, "quern bench serve: --metric-percentiles: want a comma list of numbers in [0, 100]\n");
        return 1;
    }
    int completed = 0, failed = 0;
    long long total_in = 0, total_out = 0;
    bs_metric ms[4] = {{.key = "ttft", .title = "Time to First Token", .abbr = "TTFT"},
                       {.key = "tpot", .title = "Time per Output Token (excl. 1st token)", .abbr = "TPOT"},
                       {.key = "itl", .title = "Inter-token Latency", .abbr = "ITL"},
                       {.key = "e2el", .title = "End-to-end Latency", .abbr = "E2EL"}};
    int caps[4] = {0};
    double *all_t = NULL;
    int n_all_t = 0, cap_all_t = 0;
    for (int i = 0; i < r->n_reqs; i++) {
        bs_req *q = &r->reqs[i];
        if (!q->ok) {
            failed++;
            continue;
        }
        completed++;
        total_in += q->n_in;
        total_out += q->usage_out;
        push_d(&ms[0].v, &ms[0].n, &caps[0], q->ttft * 1e3);
        if (q->usage_out > 1) push_d(&ms[1].v, &ms[1].n, &caps[1], (q->latency - q->ttft) / (q->usage_out - 1) * 1e3);
        for (int k = 0; k < q->n_itl; k++) push_d(&ms[2].v, &ms[2].n, &caps[2], q->itl[k] * 1e3);
        push_d(&ms[3].v, &ms[3].n, &caps[3], q->latency * 1e3);
        for (int k = 0; k < q->n_tok_t; k++) push_d(&all_t, &n_all_t, &cap_all_t, q->tok_t[k] - r->t0);
    }
    /* peak output tokens/s: streamed chunks per 1-second bucket since the start (vLLM's approximation) */
    double peak = 0;
    if (n_all_t) {
        const int nb = (int)ceil(duration) + 1;
        int *b = calloc((size_t)nb, sizeof(int));
        for (int i = 0; b && i < n_all_t; i++) {
            int k = (int)floor(all_t[i]);
            if (k >= 0 && k < nb && ++b[k] > peak) peak = b[k];
        }
        free(b);
    }
    free(all_t);
    for (int m = 0; m < 4; m++) stats_of(ms[m].v, ms[m].n, ps, n_ps, &ms[m].s);

    banner(" Serving Benchmark Result ", '=');
    line_i("Successful requests:", completed);
    line_i("Failed requests:", failed);
    if (o->max_concurrency > 0) line_i("Maximum request concurrency:", o->max_concurrency);
    line_f("Benchmark duration (s):", duration);
    line_i("Total input tokens:", total_in);
    line_i("Total generated tokens:", total_out);
    line_f("Request throughput (req/s):", completed / duration);
    line_f("Output token throughput (tok/s):", total_out / duration);
    line_f("Peak output token throughput (tok/s):", peak);
    line_f("Peak concurrent requests:", r->max_in_flight);
    line_f("Total token throughput (tok/s):", (total_in + total_out) / duration);
    for (int m = 0; m < 4; m++) {
        if (!strstr(o->percentile_metrics, ms[m].key)) continue;
        banner(ms[m].title, '-');
        char k[64];
        snprintf(k, sizeof k, "Mean %s (ms):", ms[m].abbr);
        line_f(k, ms[m].s.mean);
        snprintf(k, sizeof k, "Median %s (ms):", ms[m].abbr);
        line_f(k, ms[m].s.median);
        for (int i = 0; i < n_ps; i++) {
            char p[16];
            fmt_pct(ps[i], p, sizeof p);
            snprintf(k, sizeof k, "P%s %s (ms):", p, ms[m].abbr);
            line_f(k, ms[m].s.pct[i]);
        }
    }
    banner("", '=');
    for (int i = 0, shown = 0; i < r->n_reqs && shown < 3; i++)
        if (!r->reqs[i].ok) {
            fprintf(stderr, "quern bench serve: request %d failed: %s\n", i, r->reqs[i].err);
            shown++;
        }

    int rc = completed > 0 ? 0 : 1;
    if (o->save_result) {
        char date[32];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(date, sizeof date, "%Y%m%d-%H%M%S", &tm);
        json_t *j = json_object();
        json_object_set_new(j, "date", json_string(date));
        json_object_set_new(j, "endpoint_type", json_string("openai"));
        json_object_set_new(j, "backend", json_string("openai"));
        json_object_set_new(j, "label", o->label ? json_string(o->label) : json_null());
        json_object_set_new(j, "model_id", json_string(r->model));
        json_object_set_new(j, "tokenizer_id", json_string(r->model));
        json_object_set_new(j, "dataset_name", json_string(o->dataset));
        json_object_set_new(j, "num_prompts", json_integer(r->n_reqs));
        json_object_set_new(j, "random_input_len", json_integer(o->input_len));
        json_object_set_new(j, "random_output_len", json_integer(o->output_len));
        json_object_set_new(j, "random_range_ratio", json_real(o->range_ratio));
        const bool inf = !strcmp(o->request_rate, "inf");
        json_object_set_new(j, "request_rate", inf ? json_string("inf") : json_real(atof(o->request_rate)));
        json_object_set_new(j, "burstiness", json_real(o->burstiness));
        json_object_set_new(j, "max_concurrency", o->max_concurrency > 0 ? json_integer(o->max_concurrency) : json_null());
        json_object_set_new(j, "duration", json_real(duration));
        json_object_set_new(j, "completed", json_integer(completed));
        json_object_set_new(j, "failed", json_integer(failed));
        json_object_set_new(j, "total_input_tokens", json_integer(total_in));
        json_object_set_new(j, "total_output_tokens", json_integer(total_out));
        json_object_set_new(j, "request_throughput", json_real(completed / duration));
        json_object_set_new(j, "request_goodput", json_null());
        json_object_set_new(j, "output_throughput", json_real(total_out / duration));
        json_object_set_new(j, "total_token_throughput", json_real((total_in + total_out) / duration));
        json_object_set_new(j, "max_output_tokens_per_s", json_real(peak));
        json_object_set_new(j, "max_concurrent_requests", json_integer(r->max_in_flight));
        json_t *in_l = json_array(), *out_l = json_array(), *ttfts = json_array(), *itls = json_array(),
               *errs = json_array();
        for (int i = 0; i < r->n_reqs; i++) {
            const bs_req *q = &r->reqs[i];
            json_array_append_new(in_l, json_integer(q->n_in));
            json_array_append_new(out_l, json_integer(q->ok ? q->usage_out : 0));
            json_array_append_new(ttfts, json_real(q->ok ? q->ttft : 0));
            json_array_append_new(itls, q->ok ? json_dlist(q->itl, q->n_itl) : json_array());
            json_array_append_new(errs, json_string(q->err));
        }
        json_object_set_new(j, "input_lens", in_l);
        json_object_set_new(j, "output_lens", out_l);
        json_object_set_new(j, "ttfts", ttfts);
        json_object_set_new(j, "itls", itls);
        json_object_set_new(j, "errors", errs);
        for (int m = 0; m < 4; m++) {
            if (!strstr(o->percentile_metrics, ms[m].key)) continue;
            char k[64];
            snprintf(k, sizeof k, "mean_%s_ms", ms[m].key);
            json_object_set_new(j, k, json_real(ms[m].s.mean));
            snprintf(k, sizeof k, "median_%s_ms", ms[m].key);
            json_object_set_new(j, k, json_real(ms[m].s.median));
            snprintf(k, sizeof k, "std_%s_ms", ms[m].key);
            json_object_set_new(j, k, json_real(ms[m].s.std));
            for (int i = 0; i < n_ps; i++) {
                char p[16];
                fmt_pct(ps[i], p, sizeof p);
                snprintf(k, sizeof k, "p%s_%s_ms", p, ms[m].key);
                json_object_set_new(j, k, json_real(ms[m].s.pct[i]));
            }
        }
        struct utsname un;
        json_t *env = json_object();
        json_object_set_new(env, "client", json_string("quern bench serve"));
        json_object_set_new(env, "build_commit", json_string(QN_BUILD_COMMIT));
        if (uname(&un) == 0) {
            json_object_set_new(env, "host", json_string(un.nodename));
            json_object_set_new(env, "machine", json_string(un.machine));
            json_object_set_new(env, "kernel", json_string(un.release));
        }
        json_object_set_new(env, "base_url", json_string(o->base_url ? o->base_url : ""));
        json_object_set_new(env, "endpoint", json_string(o->endpoint));
        json_object_set_new(j, "quern", env);

        char name[512], path[1024];
        if (o->result_filename) {
            snprintf(name, sizeof name, "%s", o->result_filename);
        } else {
            char mc[32] = "";
            if (o->max_concurrency > 0) snprintf(mc, sizeof mc, "-concurrency%d", o->max_concurrency);
            const char *base_model = strrchr(r->model, '/') ? strrchr(r->model, '/') + 1 : r->model;
            snprintf(name, sizeof name, "openai-%sqps%s-%s-%s.json", o->request_rate, mc, base_model, date);
        }
        if (o->result_dir) snprintf(path, sizeof path, "%s/%s", o->result_dir, name);
        else snprintf(path, sizeof path, "%s", name);
        if (json_dump_file(j, path, JSON_INDENT(2)) != 0) {
            fprintf(stderr, "quern bench serve: cannot write %s\n", path);
            rc = 1;
        } else {
            printf("Result saved to %s\n", path);
        }
        json_decref(j);
    }
    for (int m = 0; m < 4; m++) free(ms[m].v);
    return rc;
}

/* ---------------------------------------------------------------- main */

static int parse_base_url(bs_run *r) {
    const bs_opts *o = r->o;
    if (!o->base_url) {
        snprintf(r->host, sizeof r->host, "%s", o->host);
        r->port = o->port;
        return 0;
    }
    struct evhttp_uri *u = evhttp_uri_parse(o->base_url);
    if (!u || !evhttp_uri_get_host(u) || (evhttp_uri_get_scheme(u) && strcmp(evhttp_uri_get_scheme(u), "http"))) {
        fprintf(stderr, "quern bench serve: --base-url: want http://HOST[:PORT][/prefix] (got '%s')\n", o->base_url);
        if (u) evhttp_uri_free(u);
        return -1;
    }
    snprintf(r->host, sizeof r->host, "%s", evhttp_uri_get_host(u));
    r->port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
    const char *p = evhttp_uri_get_path(u);
    snprintf(r->prefix, sizeof r->prefix, "%s", p ? p : "");
    size_t n = strlen(r->prefix);
    while (n && r->prefix[n - 1] == '/') r->prefix[--n] = '\0';
    evhttp_uri_free(u);
    return 0;
}

static int fetch_model(bs_run *r) {
    if (r->o->model) {
        snprintf(r->model, sizeof r->model, "%s", r->o->model);
        return 0;
    }
    char *body = NULL;
    int st = sync_request(r, EVHTTP_REQ_GET, "/v1/models", NULL, &body);
    json_t *j = st == 200 && body ? json_loads(body, 0, NULL) : NULL;
    const char *id = json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "id"));
    if (id) snprintf(r->model, sizeof r->model, "%s", id);
    json_decref(j);
    free(body);
    if (!id) {
        fprintf(stderr, "quern bench serve: GET %s:%d%s/v1/models failed (status %d); is the server up? (--model)\n",
                r->host, r->port, r->prefix, st);
        return -1;
    }
    return 0;
}

static void req_free(bs_req *q) {
    free(q->ids);
    free(q->text);
    free(q->buf);
    free(q->itl);
    free(q->tok_t);
}

static void reset_req(bs_req *q) {
    free(q->buf);
    free(q->itl);
    free(q->tok_t);
    int32_t *ids = q->ids;
    char *text = q->text;
    const int n_in = q->n_in, n_out = q->n_out, idx = q->idx;
    memset(q, 0, sizeof *q);
    q->ids = ids, q->text = text, q->n_in = n_in, q->n_out = n_out, q->idx = idx;
}

int qn_cmd_bench_serve(int argc, char **argv) {
    bs_opts o;
    memset(&o, 0, sizeof o);
    o.host = "127.0.0.1";
    o.port = 8000;
    o.endpoint = "/v1/completions";
    o.dataset = "random";
    o.request_rate = "inf";
    o.percentile_metrics = "ttft,tpot,itl";
    o.metric_percentiles = "99";
    o.num_prompts = 1000;
    o.input_len = 1024;
    o.output_len = 128;
    o.burstiness = 1.0f;
    o.warmups = 1;
    o.timeout_s = 600;
    const qn_arg table[] = {
        {"base-url", NULL, 0, QN_ARG_STR, &o.base_url, "server URL, e.g. http://127.0.0.1:8000 (else --host/--port)"},
        {"host", NULL, 0, QN_ARG_STR, &o.host, "server host (127.0.0.1)"},
        {"port", NULL, 0, QN_ARG_INT, &o.port, "server port (8000)"},
        {"endpoint", NULL, 0, QN_ARG_STR, &o.endpoint, "completions endpoint (/v1/completions)"},
        {"model", NULL, 0, QN_ARG_STR, &o.model, "model name to send (default: the first of GET /v1/models)"},
        {"api-key", NULL, 0, QN_ARG_STR, &o.api_key, "Bearer key"},
        {"backend", NULL, 0, QN_ARG_STR, &o.backend, NULL},
        {"dataset-name", NULL, 0, QN_ARG_STR, &o.dataset, "random | sharegpt (random)"},
        {"dataset-path", NULL, 0, QN_ARG_STR, &o.dataset_path, "ShareGPT JSON file (with --dataset-name sharegpt)"},
        {"sharegpt-output-len", NULL, 0, QN_ARG_INT, &o.sharegpt_output_len, "fixed output length for ShareGPT"},
        {"random-input-len", NULL, 0, QN_ARG_INT, &o.input_len, "input tokens per request (1024)"},
        {"random-output-len", NULL, 0, QN_ARG_INT, &o.output_len, "output tokens per request (128)"},
        {"random-range-ratio", NULL, 0, QN_ARG_FLOAT, &o.range_ratio, "lengths uniform in [len*(1-r), len*(1+r)] (0)"},
        {"random-prefix-len", NULL, 0, QN_ARG_INT, &o.prefix_len, "shared random prefix tokens (0)"},
        {"random-token-range", NULL, 0, QN_ARG_STR, &o.token_range, "prompt token ids drawn from LO:HI (1000:10000)"},
        {"num-prompts", NULL, 0, QN_ARG_INT, &o.num_prompts, "requests (1000)"},
        {"request-rate", NULL, 0, QN_ARG_STR, &o.request_rate, "inf or requests/s (Poisson arrivals) (inf)"},
        {"burstiness", NULL, 0, QN_ARG_FLOAT, &o.burstiness, "gamma shape of the arrival gaps; 1 = Poisson (1)"},
        {"max-concurrency", NULL, 0, QN_ARG_INT, &o.max_concurrency, "requests in flight at most (unlimited)"},
        {"temperature", NULL, 0, QN_ARG_FLOAT, &o.temperature, "sampling temperature (0)"},
        {"ignore-eos", NULL, 0, QN_ARG_BOOL, &o.ignore_eos, "send ignore_eos (the default)"},
        {"no-ignore-eos", NULL, 0, QN_ARG_BOOL, &o.no_ignore_eos, "let requests stop at EOS"},
        {"seed", NULL, 0, QN_ARG_I64, &o.seed, "RNG seed for prompts and arrivals (0)"},
        {"num-warmups", NULL, 0, QN_ARG_INT, &o.warmups, "untimed requests before the run (1)"},
        {"percentile-metrics", NULL, 0, QN_ARG_STR, &o.percentile_metrics, "of ttft,tpot,itl,e2el (ttft,tpot,itl)"},
        {"metric-percentiles", NULL, 0, QN_ARG_STR, &o.metric_percentiles, "comma list, e.g. 50,90,99 (99)"},
        {"save-result", NULL, 0, QN_ARG_BOOL, &o.save_result, "write the result JSON"},
        {"result-dir", NULL, 0, QN_ARG_STR, &o.result_dir, "directory for the result JSON (.)"},
        {"result-filename", NULL, 0, QN_ARG_STR, &o.result_filename, "result file name (vLLM's pattern)"},
        {"label", NULL, 0, QN_ARG_STR, &o.label, "label stored in the result"},
        {"request-timeout", NULL, 0, QN_ARG_INT, &o.timeout_s, "seconds without progress before a request fails (600)"},
        {"disable-tqdm", NULL, 0, QN_ARG_BOOL, &o.disable_tqdm, NULL},
        {"help", NULL, 'h', QN_ARG_BOOL, &o.help, "this help"},
    };
    const int nt = (int)(sizeof table / sizeof table[0]);
    if (!qn_args_parse("bench serve", argc, argv, table, nt, NULL, 0, &(int){0})) return 1;
    if (o.help) {
        qn_args_usage("bench serve", "[--base-url URL] [--random-input-len N] [--random-output-len N] [--num-prompts N] "
                                     "[--request-rate inf|R] [--max-concurrency C] [--save-result]", table, nt);
        return 0;
    }
    const bool inf = !strcmp(o.request_rate, "inf");
    const double rate = inf ? 0 : atof(o.request_rate);
    if ((!inf && !(rate > 0)) || o.num_prompts < 1 || o.input_len < 1 || o.output_len < 1 || o.prefix_len < 0 ||
        !(o.range_ratio >= 0 && o.range_ratio < 1) || !(o.burstiness > 0) || o.max_concurrency < 0 || o.warmups < 0 ||
        o.timeout_s < 1) {
        fprintf(stderr, "quern bench serve: invalid arguments (rate > 0 or inf, lengths >= 1, 0 <= range-ratio < 1, "
                        "burstiness > 0)\n");
        return 1;
    }
    if (strcmp(o.dataset, "random") && !(strcmp(o.dataset, "sharegpt") == 0 && o.dataset_path)) {
        fprintf(stderr, "quern bench serve: --dataset-name random, or sharegpt with --dataset-path\n");
        return 1;
    }

    bs_run r;
    memset(&r, 0, sizeof r);
    r.o = &o;
    if (parse_base_url(&r) != 0) return 1;
    r.base = event_base_new();
    if (!r.base) return 1;
    int rc = 1;
    r.n_reqs = o.num_prompts;
    r.reqs = calloc((size_t)r.n_reqs, sizeof *r.reqs);
    r.arrival = calloc((size_t)r.n_reqs, sizeof *r.arrival);
    r.timer = evtimer_new(r.base, on_timer, &r);
    uint64_t rng = (uint64_t)o.seed ^ 0x51ED2701ull;
    if (!r.reqs || !r.arrival || !r.timer) goto done;
    if (fetch_model(&r) != 0) goto done;
    if (!strcmp(o.dataset, "random") ? make_random(&r, &rng) != 0 : make_sharegpt(&r, &rng) != 0) goto done;

    printf("quern bench serve: %s:%d%s%s, model %s, %d prompts (%s), request rate %s, burstiness %g, "
           "max concurrency %s\n", r.host, r.port, r.prefix, o.endpoint, r.model, r.n_reqs, o.dataset, o.request_rate,
           (double)o.burstiness, o.max_concurrency > 0 ? "capped" : "unlimited");
    if (o.max_concurrency > 0) printf("Maximum request concurrency: %d\n", o.max_concurrency);

    /* warm-up: the first prompt, untimed */
    for (int w = 0; w < o.warmups; w++) {
        bs_req wq = r.reqs[0];
        wq.buf = NULL, wq.itl = NULL, wq.tok_t = NULL, wq.n_buf = wq.cap_buf = 0;
        wq.n_itl = wq.cap_itl = wq.n_tok_t = wq.cap_tok_t = wq.n_chunks = 0;
        wq.err[0] = '\0';
        bs_run wr = r;
        wr.reqs = &wq;
        wr.n_reqs = 1;
        wr.arrival = &(double){0};
        wr.timer = NULL;
        wr.next = 1;
        wr.t0 = now_s();
        if (!send_req(&wr, &wq)) {
            fprintf(stderr, "quern bench serve: warm-up request could not be sent\n");
            goto done;
        }
        event_base_dispatch(r.base);
        free(wq.buf), free(wq.itl), free(wq.tok_t);
        if (!wq.ok) {
            fprintf(stderr, "quern bench serve: warm-up request failed: %s\n", wq.err);
            goto done;
        }
    }

    /* arrival schedule */
    double t = 0;
    for (int i = 0; i < r.n_reqs; i++) {
        r.arrival[i] = t;
        if (!inf) t += rng_gamma(&rng, o.burstiness) / (rate * o.burstiness);
    }
    for (int i = 0; i < r.n_reqs; i++) reset_req(&r.reqs[i]);
    printf("Starting main benchmark run...\n");
    fflush(stdout);
    r.t0 = now_s();
    dispatch(&r);
    if (r.n_done < r.n_reqs) event_base_dispatch(r.base);
    const double duration = now_s() - r.t0;
    rc = report(&r, duration);
done:
    /* connections of finished requests are freed by zero-delay once-events the loop has not run yet */
    for (int i = 0; i < 4; i++) event_base_loop(r.base, EVLOOP_NONBLOCK);
    for (int i = 0; r.reqs && i < r.n_reqs; i++) {
        if (r.reqs[i].evcon) evhttp_connection_free(r.reqs[i].evcon);
        req_free(&r.reqs[i]);
    }
    free(r.reqs);
    free(r.arrival);
    if (r.timer) event_free(r.timer);
    event_base_free(r.base);
    return rc;
}
