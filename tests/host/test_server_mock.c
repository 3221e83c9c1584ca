/* test_server_mock.c — the real qn_server on 127.0.0.1 (ephemeral port, loop in its own thread) against
 * the mock engine, exercised with raw sockets: OpenAI chat/completions (stream and not), Ollama NDJSON,
 * auth, CORS, request ids, limits (400/404/405/413/429), /health readiness, /metrics, tokenize, and
 * disconnects (the engine must see abort(id) within a bounded time). Every wait has a deadline.
 * QN_TEST_LABELS: cpu */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "host/server.h"
#include "mock_engine.c"

/* ------------------------------------------------------------------------------------------------ */
/* fixture                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

typedef struct fx {
    mock_engine *eng;
    qn_server *srv;
    pthread_t th;
    uint16_t port;
} fx;

static void *run_thread(void *arg) {
    qn_server_run(arg);
    return NULL;
}

static void fx_start(fx *f, qn_server_config *cfg, const mock_engine_config *mc, bool ready) {
    memset(f, 0, sizeof *f);
    mock_engine_config dm = {.prefill_ms = 5, .token_ms = 2, .max_model_len = 256};
    f->eng = mock_engine_create(mc ? mc : &dm);
    qn_engine_iface ifc;
    mock_engine_iface(f->eng, &ifc);
    cfg->host = "127.0.0.1";
    cfg->port = 0;
    qn_error err;
    qn_error_clear(&err);
    qn_status st = qn_server_create(cfg, &ifc, &f->srv, &err);
    if (st != QN_OK) fail_msg("qn_server_create: %s", err.msg);
    f->port = qn_server_port(f->srv);
    assert_true(f->port > 0);
    if (ready) qn_server_set_ready(f->srv, true);
    assert_int_equal(pthread_create(&f->th, NULL, run_thread, f->srv), 0);
}

static void fx_stop(fx *f) {
    qn_server_stop(f->srv);
    pthread_join(f->th, NULL);
    qn_server_destroy(f->srv);
    mock_engine_destroy(f->eng); /* after the server: late FINALs must be dropped safely */
}

static void cfg_default(qn_server_config *c) {
    qn_server_config_default(c);
    c->liveness_interval_ms = 100;
}

/* ------------------------------------------------------------------------------------------------ */
/* a small HTTP/1.1 client (Connection: close, read to EOF)                                          */
/* ------------------------------------------------------------------------------------------------ */

typedef struct resp {
    int status;
    char head[8192]; /* status line + headers */
    char *body;      /* de-chunked, NUL-terminated */
    size_t body_len;
} resp;

static uint64_t ms_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

static int tcp_connect(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return; /* the server may close early (413) */
        p += k;
        n -= (size_t)k;
    }
}

static int send_request(uint16_t port, const char *method, const char *path, const char *extra_headers,
                        const char *body, size_t body_len) {
    int fd = tcp_connect(port);
    char head[4096];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, extra_headers ? extra_headers : "",
                     body ? "Content-Type: application/json\r\n" : "", body ? body_len : 0);
    send_all(fd, head, (size_t)n);
    if (body && body_len) send_all(fd, body, body_len);
    return fd;
}

/* Reads until EOF or the deadline; returns bytes read (malloc'd, NUL-terminated). */
static char *read_all(int fd, int timeout_ms, size_t *len) {
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    uint64_t deadline = ms_now() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = ms_now();
        if (now >= deadline) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r <= 0) break;
        if (n + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        n += (size_t)k;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void parse_response(char *raw, size_t n, resp *r) {
    memset(r, 0, sizeof *r);
    char *sep = strstr(raw, "\r\n\r\n");
    assert_non_null(sep);
    size_t hl = (size_t)(sep - raw);
    assert_true(hl < sizeof r->head);
    memcpy(r->head, raw, hl);
    r->head[hl] = '\0';
    assert_int_equal(sscanf(raw, "HTTP/1.%*d %d", &r->status), 1);
    char *b = sep + 4;
    size_t bl = n - (size_t)(b - raw);
    r->body = malloc(bl + 1);
    if (strcasestr(r->head, "Transfer-Encoding: chunked")) {
        size_t o = 0;
        char *p = b, *end = b + bl;
        while (p < end) {
            unsigned long sz = strtoul(p, NULL, 16);
            char *crlf = strstr(p, "\r\n");
            if (!crlf) break;
            p = crlf + 2;
            if (sz == 0) break;
            if ((size_t)(end - p) < sz) sz = (unsigned long)(end - p);
            memcpy(r->body + o, p, sz);
            o += sz;
            p += sz + 2;
        }
        r->body_len = o;
    } else {
        memcpy(r->body, b, bl);
        r->body_len = bl;
    }
    r->body[r->body_len] = '\0';
}

static void http(uint16_t port, const char *method, const char *path, const char *headers, const char *body,
                 resp *r) {
    int fd = send_request(port, method, path, headers, body, body ? strlen(body) : 0);
    size_t n;
    char *raw = read_all(fd, 10000, &n);
    close(fd);
    parse_response(raw, n, r);
    free(raw);
}

static void resp_free(resp *r) { free(r->body); }

/* Header value (case-insensitive name) into buf; NULL when absent. */
static const char *hdr(const resp *r, const char *name, char *buf, size_t cap) {
    size_t nl = strlen(name);
    const char *p = strstr(r->head, "\r\n");
    while (p) {
        p += 2;
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            const char *e = strstr(v, "\r\n");
            size_t l = e ? (size_t)(e - v) : strlen(v);
            if (l >= cap) l = cap - 1;
            memcpy(buf, v, l);
            buf[l] = '\0';
            return buf;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

static json_t *body_json(const resp *r) {
    json_error_t je;
    json_t *j = json_loadb(r->body, r->body_len, 0, &je);
    if (!j) fail_msg("body is not JSON (%s): %.300s", je.text, r->body);
    return j;
}

static void expect_error(const resp *r, int status, const char *type, const char *param) {
    char b[256];
    if (r->status != status) fail_msg("status %d, want %d: %.300s", r->status, status, r->body);
    assert_non_null(hdr(r, "Content-Type", b, sizeof b));
    assert_non_null(strstr(b, "application/json"));
    json_t *j = body_json(r);
    json_t *e = json_object_get(j, "error");
    assert_true(json_is_object(e));
    assert_true(json_is_string(json_object_get(e, "message")));
    assert_string_equal(json_string_value(json_object_get(e, "type")), type);
    assert_int_equal(json_integer_value(json_object_get(e, "code")), status);
    if (param) assert_string_equal(json_string_value(json_object_get(e, "param")), param);
    json_decref(j);
}

/* SSE: the payloads of "data:" events, in order (malloc'd strings), and how many ":" comments came. */
typedef struct sse_events {
    char *data[512];
    size_t n;
    size_t n_comments;
} sse_events;

static void sse_parse(const char *body, sse_events *ev) {
    memset(ev, 0, sizeof *ev);
    const char *p = body;
    while (*p) {
        const char *end = strstr(p, "\n\n");
        assert_non_null(end); /* every event is terminated by a blank line */
        if (p[0] == ':') {
            ev->n_comments++;
        } else {
            assert_true(!strncmp(p, "data: ", 6));
            assert_true(ev->n < 512);
            ev->data[ev->n++] = strndup(p + 6, (size_t)(end - p - 6));
        }
        p = end + 2;
    }
}

static void sse_free(sse_events *ev) {
    for (size_t i = 0; i < ev->n; i++) free(ev->data[i]);
}

/* Reads into buf until needle appears (or the deadline); returns bytes read. */
static size_t read_until(int fd, char *buf, size_t cap, const char *needle, int timeout_ms) {
    size_t n = 0;
    buf[0] = '\0';
    uint64_t deadline = ms_now() + (uint64_t)timeout_ms;
    while (!strstr(buf, needle) && n + 1 < cap) {
        uint64_t now = ms_now();
        if (now >= deadline) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - now)) <= 0) break;
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k <= 0) break;
        n += (size_t)k;
        buf[n] = '\0';
    }
    return n;
}

static const char *CHAT5 = "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":5}";

/* ------------------------------------------------------------------------------------------------ */
/* tests                                                                                             */
/* ------------------------------------------------------------------------------------------------ */

static void test_health_readiness(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    fx_start(&f, &c, NULL, false);
    resp r;
    http(f.port, "GET", "/health", NULL, NULL, &r);
    expect_error(&r, 503, "unavailable_error", NULL);
    resp_free(&r);
    http(f.port, "POST", "/v1/chat/completions", NULL, CHAT5, &r);
    expect_error(&r, 503, "unavailable_error", NULL);
    char b[64];
    assert_non_null(hdr(&r, "Retry-After", b, sizeof b));
    resp_free(&r);
    http(f.port, "POST", "/tokenize", NULL, "{\"content\":\"a\"}", &r);
    expect_error(&r, 503, "unavailable_error", NULL);
    resp_free(&r);
    http(f.port, "GET", "/metrics", NULL, NULL, &r); /* host metrics only while loading */
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, "num_requests_running"));
    resp_free(&r);
    qn_server_set_ready(f.srv, true);
    http(f.port, "GET", "/health", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    resp_free(&r);
    http(f.port, "GET", "/v1/health", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    fx_stop(&f);
}

static void test_models_and_version(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    c.served_model_name = "served/name";
    fx_start(&f, &c, NULL, true);
    resp r;
    http(f.port, "GET", "/v1/models", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "list");
    json_t *m = json_array_get(json_object_get(j, "data"), 0);
    assert_string_equal(json_string_value(json_object_get(m, "id")), "served/name");
    assert_string_equal(json_string_value(json_object_get(m, "object")), "model");
    assert_int_equal(json_integer_value(json_object_get(m, "max_model_len")), 256);
    json_decref(j);
    resp_free(&r);
    http(f.port, "GET", "/v1/models/served%2Fname", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(f.port, "GET", "/v1/models/other", NULL, NULL, &r);
    expect_error(&r, 404, "not_found_error", "model");
    resp_free(&r);
    http(f.port, "GET", "/api/version", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    fx_stop(&f);
}

static void test_chat_nonstream(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    fx_start(&f, &c, NULL, true);
    resp r;
    http(f.port, "POST", "/v1/chat/completions", NULL, CHAT5, &r);
    assert_int_equal(r.status, 200);
    char b[256];
    assert_non_null(strstr(hdr(&r, "Content-Type", b, sizeof b), "application/json"));
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    assert_true(!strncmp(json_string_value(json_object_get(j, "id")), "chatcmpl-", 9));
    assert_string_equal(json_string_value(json_object_get(j, "model")), "mock-model");
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    json_t *msg = json_object_get(ch, "message");
    assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(msg, "content")), "t0 t1 t2 t3 t4 ");
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "length");
    json_t *u = json_object_get(j, "usage");
    /* "<|user|>\nhi\n<|assistant|>\n" = 26 bytes, no BOS for chat */
    assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 26);
    assert_int_equal(json_integer_value(json_object_get(u, "completion_tokens")), 5);
    assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 31);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens")), 13);
    json_decref(j);
    resp_free(&r);

    /* default max_tokens for chat = the rest of the context; stop string + content parts */
    http(f.port, "POST", "/v1/chat/completions", NULL,
         "{\"messages\":[{\"role\":\"system\",\"content\":null},{\"role\":\"user\",\"content\":[{\"type\":\"text\","
         "\"text\":\"[[stop3]]\"}]}],\"seed\":7,\"unknown_field\":{\"a\":1}}",
         &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    ch = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "stop");
    assert_string_equal(json_string_value(json_object_get(ch, "stop_reason")), "END");
    assert_string_equal(json_string_value(json_object_get(json_object_get(ch, "message"), "content")), "t0 t1 t2 ");
    json_decref(j);
    resp_free(&r);
    /* "<|system|>\n\n<|user|>\n[[stop3]]\n<|assistant|>\n" = 45 tokens -> 256 - 45 */
    assert_int_equal(mock_engine_last_max_tokens(f.eng), 256 - 45);
    assert_int_equal((int)mock_engine_last_seed(f.eng), 7);

    /* logprobs */
    http(f.port, "POST", "/v1/chat/completions", NULL,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"max_completion_tokens\":2,\"logprobs\":true,"
         "\"top_logprobs\":2}",
         &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    ch = json_array_get(json_object_get(j, "choices"), 0);
    json_t *lpc = json_object_get(json_object_get(ch, "logprobs"), "content");
    assert_int_equal(json_array_size(lpc), 2);
    json_t *e0 = json_array_get(lpc, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "token")), "t0 ");
    assert_int_equal(json_array_size(json_object_get(e0, "top_logprobs")), 2);
    /* the partial code point piece becomes U+FFFD in "token" but keeps its byte in "bytes" */
    json_t *t1 = json_array_get(json_object_get(e0, "top_logprobs"), 1);
    assert_string_equal(json_string_value(json_object_get(t1, "token")), "\xef\xbf\xbd");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(t1, "bytes"), 0)), 0xc3);
    json_decref(j);
    resp_free(&r);
    fx_stop(&f);
}

static void check_stream_headers(const resp *r) {
    char b[256];
    assert_int_equal(r->status, 200);
    assert_non_null(hdr(r, "Content-Type", b, sizeof b));
    assert_non_null(strstr(b, "text/event-stream"));
    assert_string_equal(hdr(r, "Cache-Control", b, sizeof b), "no-cache");
    assert_string_equal(hdr(r, "X-Accel-Buffering", b, sizeof b), "no");
}

static void test_chat_stream(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    c.sse_ping_interval_ms = 100;
    mock_engine_config mc = {.prefill_ms = 450, .token_ms = 2, .max_model_len = 256};
    fx_start(&f, &c, &mc, true);
    resp r;
    http(f.port, "POST", "/v1/chat/completions", NULL,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":4,\"stream\":true,"
         "\"stream_options\":{\"include_usage\":true}}",
         &r);
    check_stream_headers(&r);
    /* pings went out while the request was in "prefill", before any data event */
    assert_true(r.body[0] == ':');
    sse_events ev;
    sse_parse(r.body, &ev);
    assert_true(ev.n_comments >= 2);
    assert_true(ev.n >= 3);
    assert_string_equal(ev.data[ev.n - 1], "[DONE]");
    char text[256] = "";
    bool saw_role = false, saw_finish = false, saw_usage = false;
    for (size_t i = 0; i + 1 < ev.n; i++) {
        json_t *j = json_loads(ev.data[i], 0, NULL);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion.chunk");
        assert_true(json_object_get(j, "usage") != NULL);
        json_t *choices = json_object_get(j, "choices");
        if (json_array_size(choices) == 0) { /* the usage chunk: last before [DONE] */
            assert_int_equal(i, ev.n - 2);
            json_t *u = json_object_get(j, "usage");
            assert_int_equal(json_integer_value(json_object_get(u, "completion_tokens")), 4);
            assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 26);
            saw_usage = true;
        } else {
            assert_true(json_is_null(json_object_get(j, "usage")));
            json_t *ch = json_array_get(choices, 0);
            json_t *d = json_object_get(ch, "delta");
            if (i == 0) { /* role first */
                assert_string_equal(json_string_value(json_object_get(d, "role")), "assistant");
                saw_role = true;
            } else {
                assert_null(json_object_get(d, "role"));
            }
            if (json_is_string(json_object_get(d, "content"))) strcat(text, json_string_value(json_object_get(d, "content")));
            json_t *fr = json_object_get(ch, "finish_reason");
            if (json_is_string(fr)) {
                assert_string_equal(json_string_value(fr), "length");
                saw_finish = true;
            }
        }
        json_decref(j);
    }
    assert_true(saw_role && saw_finish && saw_usage);
    assert_string_equal(text, "t0 t1 t2 t3 ");
    sse_free(&ev);
    resp_free(&r);

    /* without include_usage: no usage chunk; n = 2 interleaves indexes 0 and 1 */
    mock_engine_set_delays(f.eng, 1, 1);
    http(f.port, "POST", "/v1/chat/completions", NULL,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":3,\"stream\":true,\"n\":2}", &r);
    check_stream_headers(&r);
    sse_parse(r.body, &ev);
    int finishes[2] = {0, 0}, roles[2] = {0, 0};
    for (size_t i = 0; i + 1 < ev.n; i++) {
        json_t *j = json_loads(ev.data[i], 0, NULL);
        json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
        assert_non_null(ch);
        int idx = (int)json_integer_value(json_object_get(ch, "index"));
        assert_true(idx == 0 || idx == 1);
        if (json_object_get(json_object_get(ch, "delta"), "role")) roles[idx]++;
        if (json_is_string(json_object_get(ch, "finish_reason"))) finishes[idx]++;
        json_decref(j);
    }
    assert_int_equal(roles[0], 1);
    assert_int_equal(roles[1], 1);
    assert_int_equal(finishes[0], 1);
    assert_int_equal(finishes[1], 1);
    assert_string_equal(ev.data[ev.n - 1], "[DONE]");
    sse_free(&ev);
    resp_free(&r);
    fx_stop(&f);
}

static void test_completions(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    fx_start(&f, &c, NULL, true);
    resp r;
    /* list of strings x n = 2: four choices, index = prompt * n + choice */
    http(f.port, "POST", "/v1/completions", NULL, "{\"prompt\":[\"ab\",\"cde\"],\"n\":2,\"max_tokens\":2,\"seed\":1}", &r);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "text_completion");
    assert_true(!strncmp(json_string_value(json_object_get(j, "id")), "cmpl-", 5));
    json_t *chs = json_object_get(j, "choices");
    assert_int_equal(json_array_size(chs), 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *ch = json_array_get(chs, i);
        assert_int_equal(json_integer_value(json_object_get(ch, "index")), (json_int_t)i);
        assert_string_equal(json_string_value(json_object_get(ch, "text")), "t0 t1 ");
    }
    /* prompt tokens: (BOS + 2) + (BOS + 3) counted once per prompt; 4 x 2 completion tokens */
    json_t *u = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 7);
    assert_int_equal(json_integer_value(json_object_get(u, "completion_tokens")), 8);
    json_decref(j);
    resp_free(&r);

    /* token-id prompt, default max_tokens = 16 */
    http(f.port, "POST", "/v1/completions", NULL, "{\"prompt\":[5,6,7]}", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(mock_engine_last_max_tokens(f.eng), 16);
    resp_free(&r);

    /* list of token lists, streamed with logprobs */
    http(f.port, "POST", "/v1/completions", NULL,
         "{\"prompt\":[[5,6],[7]],\"max_tokens\":2,\"stream\":true,\"logprobs\":1,"
         "\"stream_options\":{\"include_usage\":true}}",
         &r);
    check_stream_headers(&r);
    sse_events ev;
    sse_parse(r.body, &ev);
    assert_string_equal(ev.data[ev.n - 1], "[DONE]");
    size_t n_text = 0;
    for (size_t i = 0; i + 1 < ev.n; i++) {
        json_t *cj = json_loads(ev.data[i], 0, NULL);
        assert_non_null(cj);
        assert_string_equal(json_string_value(json_object_get(cj, "object")), "text_completion");
        json_t *ch = json_array_get(json_object_get(cj, "choices"), 0);
        if (ch && json_string_length(json_object_get(ch, "text")) > 0) {
            n_text++;
            json_t *lp = json_object_get(ch, "logprobs");
            assert_int_equal(json_array_size(json_object_get(lp, "tokens")), 1);
            assert_int_equal(json_array_size(json_object_get(lp, "top_logprobs")), 1);
        }
        json_decref(cj);
    }
    assert_int_equal(n_text, 4);
    sse_free(&ev);
    resp_free(&r);

    /* prompt given as text but too long together with max_tokens */
    http(f.port, "POST", "/v1/completions", NULL, "{\"prompt\":\"abc\",\"max_tokens\":300}", &r);
    expect_error(&r, 400, "exceed_context_size_error", "prompt");
    j = body_json(&r);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "error"), "n_ctx")), 256);
    json_decref(j);
    resp_free(&r);
    fx_stop(&f);
}

/* "\u0000" in a prompt or message (vLLM's random dataset sends it): 200 with every byte tokenized (the mock
 * tokenizer maps byte b to b + 3), through the chat template too; the vLLM client fails a run on any 400. */
static void test_nul_in_prompts(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    fx_start(&f, &c, NULL, true);
    resp r;
    http(f.port, "POST", "/v1/completions", NULL,
         "{\"prompt\":\"a\\u0000b\",\"max_tokens\":2,\"stream\":true,\"stream_options\":{\"include_usage\":true}}", &r);
    check_stream_headers(&r);
    sse_events ev;
    sse_parse(r.body, &ev);
    assert_true(ev.n >= 2);
    assert_string_equal(ev.data[ev.n - 1], "[DONE]");
    json_t *u = json_loads(ev.data[ev.n - 2], 0, NULL);
    assert_non_null(u);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(u, "usage"), "prompt_tokens")), 4); /* BOS+3 */
    json_decref(u);
    sse_free(&ev);
    resp_free(&r);
    /* chat: "<|user|>\na\0b\n<|assistant|>\n" = 27 bytes ("hi" gives 26 in test_tokenize) */
    http(f.port, "POST", "/v1/chat/completions", NULL,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}],\"max_tokens\":2}", &r);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")), 27);
    json_decref(j);
    resp_free(&r);
    http(f.port, "POST", "/tokenize", NULL, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 27);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "tokens"), 10)), 0 + 3);
    json_decref(j);
    resp_free(&r);
    http(f.port, "POST", "/v1/chat/completions", NULL,
         "{\"messages\":[{\"role\":\"us\\u0000er\",\"content\":\"x\"}]}", &r);
    expect_error(&r, 400, "invalid_request_error", "messages[0].role");
    resp_free(&r);
    fx_stop(&f);
}

static void test_request_errors(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    c.max_body_bytes = 4096;
    fx_start(&f, &c, NULL, true);
    resp r;
    http(f.port, "POST", "/v1/chat/completions", NULL, "{not json", &r);
    expect_error(&r, 400, "invalid_request_error", NULL);
    resp_free(&r);
    http(f.port, "POST", "/v1/chat/completions", NULL, "[1,2]", &r);
    expect_error(&r, 400, "invalid_request_error", NULL);
    resp_free(&r);
    http(f.port, "POST", "/v1/chat/completions", NULL, "", &r);
    expect_error(&r, 400, "invalid_request_error", NULL);
    resp_free(&r);
    http(f.port, "POST", "/v1/chat/completions", NULL,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":\"hot\"}", &r);
    expect_error(&r, 400, "invalid_request_error", "temperature");
    resp_free(&r);
    http(f.port, "POST", "/v1/chat/completions", NULL, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", &r);
    expect_error(&r, 400, "invalid_request_error", "messages[0].content");
    resp_free(&r);
    http(f.port, "POST", "/v1/chat/completions", NULL,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":250}", &r);
    expect_error(&r, 400, "exceed_context_size_error", "messages");
    resp_free(&r);
    http(f.port, "GET", "/v1/nope", NULL, NULL, &r);
    expect_error(&r, 404, "not_found_error", NULL);
    resp_free(&r);
    http(f.port, "GET", "/v1/chat/completions", NULL, NULL, &r);
    expect_error(&r, 405, "invalid_request_error", NULL);
    resp_free(&r);
    /* over our limit (and under evhttp's hard cap): our JSON 413, then the connection closes */
    size_t big = 20000;
    char *body = malloc(big + 64);
    int k = sprintf(body, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    memset(body + k, 'a', big);
    strcpy(body + k + big, "\"}]}");
    http(f.port, "POST", "/v1/chat/completions", NULL, body, &r);
    expect_error(&r, 413, "invalid_request_error", NULL);
    char b[64];
    assert_string_equal(hdr(&r, "Connection", b, sizeof b), "close");
    resp_free(&r);
    free(body);
    /* the engine refuses (queue full on its side) -> 429 */
    mock_engine_set_busy(f.eng, true);
    http(f.port, "POST", "/v1/chat/completions", NULL, CHAT5, &r);
    expect_error(&r, 429, "rate_limit_error", NULL);
    assert_non_null(hdr(&r, "Retry-After", b, sizeof b));
    resp_free(&r);
    mock_engine_set_busy(f.eng, false);
    /* still alive */
    http(f.port, "POST", "/v1/chat/completions", NULL, CHAT5, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    fx_stop(&f);
}

static void test_queue_full_429(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    c.max_waiting = 1;
    c.retry_after_s = 3;
    mock_engine_config mc = {.prefill_ms = 800, .token_ms = 1, .max_model_len = 256};
    fx_start(&f, &c, &mc, true);
    /* first request parks in "prefill" */
    int fd = send_request(f.port, "POST", "/v1/chat/completions", NULL, CHAT5, strlen(CHAT5));
    uint64_t t0 = ms_now();
    while (mock_engine_n_submitted(f.eng) < 1 && ms_now() - t0 < 3000) mk_sleep_ms(2);
    assert_int_equal(mock_engine_n_submitted(f.eng), 1);
    resp r;
    http(f.port, "POST", "/v1/chat/completions", NULL, CHAT5, &r);
    expect_error(&r, 429, "rate_limit_error", NULL);
    char b[64];
    assert_string_equal(hdr(&r, "Retry-After", b, sizeof b), "3");
    resp_free(&r);
    size_t n;
    char *raw = read_all(fd, 10000, &n);
    close(fd);
    parse_response(raw, n, &r);
    free(raw);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* the slot is free again */
    http(f.port, "POST", "/v1/chat/completions", NULL, CHAT5, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    fx_stop(&f);
}

static void test_auth_and_cors(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    const char *keys[] = {"sekret-key"};
    c.api_keys = keys;
    c.n_api_keys = 1;
    c.cors_origins = "https://a.example, https://app.example";
    fx_start(&f, &c, NULL, true);
    resp r;
    char b[256];
    http(f.port, "GET", "/v1/models", NULL, NULL, &r);
    expect_error(&r, 401, "authentication_error", NULL);
    resp_free(&r);
    http(f.port, "GET", "/v1/models", "Authorization: Bearer sekret-kez\r\n", NULL, &r);
    expect_error(&r, 401, "authentication_error", NULL);
    resp_free(&r);
    http(f.port, "GET", "/v1/models", "Authorization: Bearer sekret-key-longer\r\n", NULL, &r);
    expect_error(&r, 401, "authentication_error", NULL);
    resp_free(&r);
    http(f.port, "GET", "/v1/models", "Authorization: Bearer sekret-key\r\n", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(f.port, "GET", "/v1/models", "x-api-key: sekret-key\r\n", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(f.port, "POST", "/tokenize", NULL, "{\"content\":\"a\"}", &r);
    expect_error(&r, 401, "authentication_error", NULL);
    resp_free(&r);
    http(f.port, "GET", "/v1/unknown", NULL, NULL, &r); /* 401 before 404 */
    expect_error(&r, 401, "authentication_error", NULL);
    resp_free(&r);
    /* public */
    http(f.port, "GET", "/health", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(f.port, "GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* preflight: never authenticated; the listed origin is reflected */
    http(f.port, "OPTIONS", "/v1/chat/completions",
         "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n"
         "Access-Control-Request-Headers: authorization, content-type\r\n",
         NULL, &r);
    assert_int_equal(r.status, 204);
    assert_string_equal(hdr(&r, "Access-Control-Allow-Origin", b, sizeof b), "https://app.example");
    assert_non_null(strstr(hdr(&r, "Access-Control-Allow-Methods", b, sizeof b), "POST"));
    assert_string_equal(hdr(&r, "Access-Control-Allow-Headers", b, sizeof b), "authorization, content-type");
    assert_non_null(hdr(&r, "Content-Type", b, sizeof b));
    resp_free(&r);
    http(f.port, "OPTIONS", "/v1/chat/completions", "Origin: https://evil.example\r\n", NULL, &r);
    assert_int_equal(r.status, 204);
    assert_null(hdr(&r, "Access-Control-Allow-Origin", b, sizeof b));
    resp_free(&r);
    fx_stop(&f);

    /* no key and no policy: permissive "*" on ordinary replies */
    cfg_default(&c);
    fx_start(&f, &c, NULL, true);
    http(f.port, "GET", "/v1/models", "Origin: https://x.example\r\n", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Access-Control-Allow-Origin", b, sizeof b), "*");
    resp_free(&r);
    fx_stop(&f);
}

static void test_request_id(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    fx_start(&f, &c, NULL, true);
    resp r;
    char b[256];
    http(f.port, "POST", "/v1/chat/completions", "X-Request-Id: bench-42\r\n", CHAT5, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "X-Request-Id", b, sizeof b), "bench-42");
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "chatcmpl-bench-42");
    json_decref(j);
    resp_free(&r);
    http(f.port, "GET", "/nope", "X-Request-Id: bad id with spaces\r\n", NULL, &r); /* replaced, still echoed */
    assert_int_equal(r.status, 404);
    assert_non_null(hdr(&r, "X-Request-Id", b, sizeof b));
    assert_int_equal(strlen(b), 32);
    resp_free(&r);
    fx_stop(&f);
}

static void test_metrics_endpoint(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    c.metrics_vllm_compat = true;
    fx_start(&f, &c, NULL, true);
    resp r;
    http(f.port, "POST", "/v1/chat/completions", NULL, CHAT5, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(f.port, "GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    char b[256];
    assert_non_null(strstr(hdr(&r, "Content-Type", b, sizeof b), "text/plain"));
    const char *want[] = {
        "vllm:num_requests_running{model_name=\"mock-model\"} 0",
        "vllm:num_requests_waiting{model_name=\"mock-model\"} 0",
        "vllm:kv_cache_usage_perc{model_name=\"mock-model\"}",
        "vllm:prefix_cache_queries_total{model_name=\"mock-model\"} 10",
        "vllm:prefix_cache_hits_total{model_name=\"mock-model\"} 4",
        "vllm:num_preemptions_total{model_name=\"mock-model\"} 0",
        "vllm:request_success_total{finished_reason=\"length\",model_name=\"mock-model\"} 1",
        "vllm:generation_tokens_total{model_name=\"mock-model\"} 5",
        "vllm:prompt_tokens_total{model_name=\"mock-model\"} 26",
        "vllm:time_to_first_token_seconds_count{model_name=\"mock-model\"} 1",
        "vllm:inter_token_latency_seconds_count{model_name=\"mock-model\"} 4",
        "vllm:e2e_request_latency_seconds_count{model_name=\"mock-model\"} 1",
        "quern:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"mock-model\"} 1",
        "quern:kv_blocks_total{model_name=\"mock-model\"} 100",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(r.body, want[i])) fail_msg("missing in /metrics: %s", want[i]);
    resp_free(&r);
    fx_stop(&f);
}

static void test_ollama(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    fx_start(&f, &c, NULL, true);
    resp r;
    char b[256];
    /* generate: streams NDJSON by default */
    http(f.port, "POST", "/api/generate", NULL, "{\"model\":\"m\",\"prompt\":\"hi\",\"options\":{\"num_predict\":3}}", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(hdr(&r, "Content-Type", b, sizeof b), "application/x-ndjson"));
    char *save = NULL;
    char text[128] = "";
    int lines = 0;
    bool done = false;
    for (char *line = strtok_r(r.body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        lines++;
        assert_false(done); /* nothing after done */
        strcat(text, json_string_value(json_object_get(j, "response")));
        assert_true(json_is_string(json_object_get(j, "created_at")));
        if (json_is_true(json_object_get(j, "done"))) {
            done = true;
            assert_string_equal(json_string_value(json_object_get(j, "done_reason")), "length");
            assert_int_equal(json_integer_value(json_object_get(j, "eval_count")), 3);
            assert_true(json_integer_value(json_object_get(j, "prompt_eval_count")) > 0);
            assert_true(json_integer_value(json_object_get(j, "total_duration")) > 0);
        }
        json_decref(j);
    }
    assert_true(done);
    assert_int_equal(lines, 4);
    assert_string_equal(text, "t0 t1 t2 ");
    resp_free(&r);
    /* chat, not streamed */
    http(f.port, "POST", "/api/chat", NULL,
         "{\"model\":\"m\",\"stream\":false,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"options\":{\"num_predict\":2,\"temperature\":0}}",
         &r);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "message"), "content")), "t0 t1 ");
    assert_true(json_is_true(json_object_get(j, "done")));
    json_decref(j);
    resp_free(&r);
    /* load request, tags, errors in Ollama's shape */
    http(f.port, "POST", "/api/generate", NULL, "{\"model\":\"m\"}", &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "done_reason")), "load");
    json_decref(j);
    resp_free(&r);
    http(f.port, "GET", "/api/tags", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "models"), 0), "name")),
                        "mock-model");
    json_decref(j);
    resp_free(&r);
    http(f.port, "POST", "/api/chat", NULL, "{\"messages\":\"nope\"}", &r);
    assert_int_equal(r.status, 400);
    j = body_json(&r);
    assert_true(json_is_string(json_object_get(j, "error")));
    json_decref(j);
    resp_free(&r);
    fx_stop(&f);
}

static void test_tokenize(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    fx_start(&f, &c, NULL, true);
    resp r;
    /* llama-server shape: add_special defaults to false */
    http(f.port, "POST", "/tokenize", NULL, "{\"content\":\"ab\"}", &r);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    json_t *t = json_object_get(j, "tokens");
    assert_int_equal(json_array_size(t), 2);
    assert_int_equal(json_integer_value(json_array_get(t, 0)), 'a' + 3);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "max_model_len")), 256);
    json_decref(j);
    resp_free(&r);
    /* vLLM shape: add_special_tokens defaults to true; token_strs */
    http(f.port, "POST", "/tokenize", NULL, "{\"model\":\"m\",\"prompt\":\"ab\",\"return_token_strs\":true}", &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_int_equal(json_array_size(json_object_get(j, "tokens")), 3);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "token_strs"), 1)), "a");
    json_decref(j);
    resp_free(&r);
    http(f.port, "POST", "/tokenize", NULL, "{\"content\":\"a\",\"with_pieces\":true}", &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    json_t *p0 = json_array_get(json_object_get(j, "tokens"), 0);
    assert_int_equal(json_integer_value(json_object_get(p0, "id")), 'a' + 3);
    assert_string_equal(json_string_value(json_object_get(p0, "piece")), "a");
    json_decref(j);
    resp_free(&r);
    http(f.port, "POST", "/tokenize", NULL, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 26);
    json_decref(j);
    resp_free(&r);
    http(f.port, "POST", "/detokenize", NULL, "{\"tokens\":[100,1001]}", &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "content")), "at1 ");
    assert_string_equal(json_string_value(json_object_get(j, "prompt")), "at1 ");
    json_decref(j);
    resp_free(&r);
    http(f.port, "POST", "/detokenize", NULL, "{\"tokens\":[-1]}", &r);
    expect_error(&r, 400, "invalid_request_error", "tokens");
    resp_free(&r);
    fx_stop(&f);
}

static void test_stream_error_after_headers(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    fx_start(&f, &c, NULL, true);
    resp r;
    http(f.port, "POST", "/v1/chat/completions", NULL,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"[[error]]\"}],\"stream\":true}", &r);
    check_stream_headers(&r);
    sse_events ev;
    sse_parse(r.body, &ev);
    assert_true(ev.n >= 2);
    assert_string_equal(ev.data[ev.n - 1], "[DONE]");
    json_t *j = json_loads(ev.data[ev.n - 2], 0, NULL);
    json_t *e = json_object_get(j, "error");
    assert_true(json_is_object(e));
    assert_string_equal(json_string_value(json_object_get(e, "message")), "mock engine failure");
    json_decref(j);
    sse_free(&ev);
    resp_free(&r);
    http(f.port, "POST", "/v1/chat/completions", NULL,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"[[error]]\"}]}", &r);
    expect_error(&r, 500, "server_error", NULL);
    resp_free(&r);
    fx_stop(&f);
}

/* A client that closes mid-stream: the engine must get abort(id) quickly. */
static void test_disconnect_stream(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    mock_engine_config mc = {.prefill_ms = 5, .token_ms = 20, .max_model_len = 4096};
    fx_start(&f, &c, &mc, true);
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2000,\"stream\":true}";
    int fd = send_request(f.port, "POST", "/v1/chat/completions", NULL, body, strlen(body));
    /* read until a content chunk has arrived */
    char buf[8192];
    size_t n = 0;
    uint64_t t0 = ms_now();
    while (!strstr(buf, "t1 ") && ms_now() - t0 < 5000 && n + 1 < sizeof buf) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t k = recv(fd, buf + n, sizeof buf - n - 1, 0);
        if (k <= 0) break;
        n += (size_t)k;
        buf[n] = '\0';
    }
    assert_non_null(strstr(buf, "t1 "));
    uint64_t id = mock_engine_last_id(f.eng);
    assert_true(id > 0);
    assert_false(mock_engine_was_aborted(f.eng, id));
    uint64_t t_close = ms_now();
    close(fd);
    assert_true(mock_engine_wait_abort(f.eng, id, 2000));
    uint64_t dt = ms_now() - t_close;
    printf("  stream disconnect -> abort in %llu ms\n", (unsigned long long)dt);
    /* the engine finishes it and the server keeps serving */
    t0 = ms_now();
    while (mock_engine_n_live(f.eng) > 0 && ms_now() - t0 < 2000) mk_sleep_ms(5);
    assert_int_equal(mock_engine_n_live(f.eng), 0);
    resp r;
    http(f.port, "POST", "/v1/chat/completions", NULL, CHAT5, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(f.port, "GET", "/metrics", NULL, NULL, &r);
    assert_non_null(strstr(r.body, "quern:request_success_total{finished_reason=\"abort\",model_name=\"mock-model\"} 1"));
    resp_free(&r);
    /* a stream still in prefill (only headers sent) when the client leaves */
    mock_engine_set_delays(f.eng, 5000, 20);
    fd = send_request(f.port, "POST", "/v1/chat/completions", NULL, body, strlen(body));
    memset(buf, 0, sizeof buf);
    read_until(fd, buf, sizeof buf, "\r\n\r\n", 5000);
    assert_non_null(strstr(buf, "text/event-stream"));
    assert_null(strstr(buf, "data:")); /* no role chunk before the first token */
    id = mock_engine_last_id(f.eng);
    close(fd);
    assert_true(mock_engine_wait_abort(f.eng, id, 2000));
    fx_stop(&f);
}

/* Non-streaming: evhttp does not read while the reply is pending, the MSG_PEEK probe must notice. */
static void test_disconnect_nonstream(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    mock_engine_config mc = {.prefill_ms = 5, .token_ms = 20, .max_model_len = 4096};
    fx_start(&f, &c, &mc, true);
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2000}";
    int fd = send_request(f.port, "POST", "/v1/chat/completions", NULL, body, strlen(body));
    uint64_t t0 = ms_now();
    while (mock_engine_n_submitted(f.eng) < 1 && ms_now() - t0 < 3000) mk_sleep_ms(2);
    uint64_t id = mock_engine_last_id(f.eng);
    assert_true(id > 0);
    mk_sleep_ms(100);
    close(fd);
    assert_true(mock_engine_wait_abort(f.eng, id, 2000));
    /* also while still queued (long prefill) */
    mock_engine_set_delays(f.eng, 5000, 20);
    fd = send_request(f.port, "POST", "/v1/chat/completions", NULL, body, strlen(body));
    t0 = ms_now();
    while (mock_engine_n_submitted(f.eng) < 2 && ms_now() - t0 < 3000) mk_sleep_ms(2);
    id = mock_engine_last_id(f.eng);
    close(fd);
    assert_true(mock_engine_wait_abort(f.eng, id, 2000));
    fx_stop(&f);
}

/* A stream longer than the idle timeout must not be cut by evhttp's read timeout. */
static void test_long_stream_vs_idle_timeout(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    c.idle_timeout_s = 1;
    mock_engine_config mc = {.prefill_ms = 5, .token_ms = 100, .max_model_len = 4096};
    fx_start(&f, &c, &mc, true);
    resp r;
    http(f.port, "POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"max_tokens\":25,\"stream\":true}", &r);
    check_stream_headers(&r);
    sse_events ev;
    sse_parse(r.body, &ev);
    assert_true(ev.n >= 2);
    assert_string_equal(ev.data[ev.n - 1], "[DONE]");
    assert_non_null(strstr(r.body, "t24 "));
    sse_free(&ev);
    resp_free(&r);
    /* non-stream too */
    http(f.port, "POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"max_tokens\":15}", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* ...while an idle connection is closed after the timeout */
    int fd = tcp_connect(f.port);
    uint64_t t0 = ms_now();
    size_t n;
    free(read_all(fd, 5000, &n));
    close(fd);
    assert_int_equal(n, 0);
    assert_true(ms_now() - t0 < 4000);
    fx_stop(&f);
}

static void test_garbage_never_crashes(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    fx_start(&f, &c, NULL, true);
    const char *paths[] = {"/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize", "/api/generate",
                           "/api/chat"};
    const char *bodies[] = {
        "null", "true", "\"str\"", "{}", "{\"messages\":null}", "{\"messages\":[null]}", "{\"messages\":[{}]}",
        "{\"messages\":[{\"role\":1}]}", "{\"prompt\":[]}", "{\"prompt\":[[]]}", "{\"prompt\":[1,\"a\"]}",
        "{\"prompt\":[[1],\"a\"]}", "{\"prompt\":[-5]}", "{\"prompt\":[1e300]}", "{\"prompt\":\"a\",\"n\":1000}",
        "{\"prompt\":\"a\",\"stop\":[1]}", "{\"prompt\":\"a\",\"logit_bias\":{\"x\":1}}",
        "{\"prompt\":\"a\",\"max_tokens\":-1}", "{\"prompt\":\"a\",\"top_p\":0}", "{\"prompt\":\"a\",\"echo\":true}",
        "{\"prompt\":\"a\",\"response_format\":{\"type\":\"xml\"}}", "{\"tokens\":\"a\"}", "{\"content\":5}",
        "{\"options\":[]}", "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
        "{\"prompt\":\"\\ud800\"}", "{\"a\":", "\xff\xfe\xfd"};
    char deep[4096];
    memset(deep, '[', 3000);
    deep[3000] = '\0';
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
        for (size_t b = 0; b <= sizeof bodies / sizeof bodies[0]; b++) {
            const char *body = b < sizeof bodies / sizeof bodies[0] ? bodies[b] : deep;
            resp r;
            http(f.port, "POST", paths[p], NULL, body, &r);
            /* never a 5xx; the OpenAI routes reject every one of these; a few are valid elsewhere
             * ("{}" is Ollama's load request, {"prompt":"a",...} is a vLLM /tokenize request) */
            bool v1 = !strncmp(paths[p], "/v1/", 4);
            if (r.status >= 500 || (v1 && r.status < 400) || (!v1 && r.status != 200 && r.status < 400))
                fail_msg("%s %s -> %d %.200s", paths[p], body, r.status, r.body);
            resp_free(&r);
        }
    }
    /* random bytes as the whole request */
    qn_rng rng;
    qn_rng_seed(&rng, 1234);
    for (int i = 0; i < 20; i++) {
        int fd = tcp_connect(f.port);
        char junk[600];
        qn_rng_fill_bytes(&rng, junk, sizeof junk);
        memcpy(junk + sizeof junk - 4, "\r\n\r\n", 4); /* end the "headers" so the parser answers */
        send_all(fd, junk, sizeof junk);
        size_t n;
        free(read_all(fd, 300, &n));
        close(fd);
    }
    resp r;
    http(f.port, "GET", "/health", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    fx_stop(&f);
}

typedef struct stop_arg {
    qn_server *srv;
    int delay_ms;
} stop_arg;

static void *stop_later(void *arg) {
    stop_arg *a = arg;
    mk_sleep_ms(a->delay_ms);
    qn_server_stop(a->srv);
    return NULL;
}

/* qn_server_stop while a stream is running: the client gets an error event and [DONE], run returns. */
static void test_stop_with_inflight_stream(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    mock_engine_config mc = {.prefill_ms = 5, .token_ms = 20, .max_model_len = 4096};
    fx_start(&f, &c, &mc, true);
    stop_arg a = {f.srv, 300};
    pthread_t th;
    pthread_create(&th, NULL, stop_later, &a);
    resp r;
    http(f.port, "POST", "/v1/chat/completions", NULL,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":1000,\"stream\":true}", &r);
    pthread_join(th, NULL);
    check_stream_headers(&r);
    sse_events ev;
    sse_parse(r.body, &ev);
    assert_true(ev.n >= 2);
    assert_string_equal(ev.data[ev.n - 1], "[DONE]");
    assert_non_null(strstr(ev.data[ev.n - 2], "\"error\""));
    sse_free(&ev);
    resp_free(&r);
    pthread_join(f.th, NULL);
    uint64_t id = mock_engine_last_id(f.eng);
    assert_true(mock_engine_wait_abort(f.eng, id, 2000));
    qn_server_destroy(f.srv);
    mock_engine_destroy(f.eng);
}

static void send_keepalive(int fd, const char *method, const char *path, const char *body) {
    char head[1024];
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", method, path,
                     body ? strlen(body) : 0);
    send_all(fd, head, (size_t)n);
    if (body) send_all(fd, body, strlen(body));
}

/* Several requests on one persistent connection (the close hook must follow each job, never a freed one),
 * behind an api prefix, HEAD, then the client leaves. */
static void test_keepalive_and_prefix(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    c.api_prefix = "/llm/";
    fx_start(&f, &c, NULL, true);
    int fd = tcp_connect(f.port);
    static char buf[65536];
    send_keepalive(fd, "GET", "/llm/v1/models", NULL);
    read_until(fd, buf, sizeof buf, "mock-model", 5000);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    send_keepalive(fd, "POST", "/llm/v1/chat/completions",
                   "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":3,\"stream\":true}");
    read_until(fd, buf, sizeof buf, "\r\n0\r\n\r\n", 5000);
    assert_non_null(strstr(buf, "text/event-stream"));
    assert_non_null(strstr(buf, "data: [DONE]"));
    send_keepalive(fd, "POST", "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":2}");
    read_until(fd, buf, sizeof buf, "\"usage\"", 5000);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    assert_non_null(strstr(buf, "t0 t1 "));
    send_keepalive(fd, "HEAD", "/llm/health", NULL);
    size_t n = read_until(fd, buf, sizeof buf, "\r\n\r\n", 5000);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    /* a stream on the same connection, then the client vanishes mid-way */
    mock_engine_set_delays(f.eng, 5, 20);
    send_keepalive(fd, "POST", "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":200,\"stream\":true}");
    n = read_until(fd, buf, sizeof buf, "t2 ", 5000);
    if (!strstr(buf, "t2 ")) fail_msg("no stream on the reused connection: %zu bytes: %.400s", n, buf);
    uint64_t id = mock_engine_last_id(f.eng);
    close(fd);
    assert_true(mock_engine_wait_abort(f.eng, id, 2000));
    resp r;
    http(f.port, "HEAD", "/health", NULL, NULL, &r); /* no body after HEAD */
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    resp_free(&r);
    http(f.port, "GET", "/llm", NULL, NULL, &r); /* the bare prefix is "/" */
    expect_error(&r, 404, "not_found_error", NULL);
    resp_free(&r);
    fx_stop(&f);
}

static qn_server *g_sig_srv;
static void on_sigusr1(int sig) {
    (void)sig;
    qn_server_stop(g_sig_srv); /* async-signal-safe by contract */
}

static void test_stop_from_signal_and_bind_conflict(void **state) {
    (void)state;
    fx f;
    qn_server_config c;
    cfg_default(&c);
    fx_start(&f, &c, NULL, true);
    /* a second server on the same port fails cleanly */
    qn_server_config c2;
    cfg_default(&c2);
    c2.host = "127.0.0.1";
    c2.port = f.port;
    qn_engine_iface ifc;
    mock_engine_iface(f.eng, &ifc);
    qn_server *s2 = NULL;
    qn_error err;
    qn_error_clear(&err);
    assert_int_equal(qn_server_create(&c2, &ifc, &s2, &err), QN_ERR_IO);
    assert_null(s2);
    assert_non_null(strstr(err.msg, "bind"));
    /* stop through a signal handler */
    g_sig_srv = f.srv;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, &old);
    raise(SIGUSR1);
    pthread_join(f.th, NULL); /* returns because of the signal */
    sigaction(SIGUSR1, &old, NULL);
    qn_server_destroy(f.srv);
    mock_engine_destroy(f.eng);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_readiness),
        cmocka_unit_test(test_models_and_version),
        cmocka_unit_test(test_chat_nonstream),
        cmocka_unit_test(test_chat_stream),
        cmocka_unit_test(test_completions),
        cmocka_unit_test(test_nul_in_prompts),
        cmocka_unit_test(test_request_errors),
        cmocka_unit_test(test_queue_full_429),
        cmocka_unit_test(test_auth_and_cors),
        cmocka_unit_test(test_request_id),
        cmocka_unit_test(test_metrics_endpoint),
        cmocka_unit_test(test_ollama),
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_stream_error_after_headers),
        cmocka_unit_test(test_disconnect_stream),
        cmocka_unit_test(test_disconnect_nonstream),
        cmocka_unit_test(test_long_stream_vs_idle_timeout),
        cmocka_unit_test(test_garbage_never_crashes),
        cmocka_unit_test(test_stop_with_inflight_stream),
        cmocka_unit_test(test_keepalive_and_prefix),
        cmocka_unit_test(test_stop_from_signal_and_bind_conflict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
