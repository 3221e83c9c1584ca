/* server.c — evhttp setup and the request dispatcher: bind, limits, timeouts, allowed methods, the route
 * table (behind one evhttp_set_gencb so unknown paths get a JSON 404), auth (constant-time), CORS,
 * X-Request-Id, the body limit (our JSON 413) and the reply helpers every route uses. */
#include "host/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

#include "core/log.h"
#include "host/routes.h"
#include "host/sse.h"

/* ------------------------------------------------------------------------------------------------ */
/* config                                                                                            */
/* ------------------------------------------------------------------------------------------------ */

void qn_server_config_default(qn_server_config *c) {
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8000;
    c->max_body_bytes = 32u << 20;
    c->idle_timeout_s = 75;
    c->retry_after_s = 1;
    c->sse_ping_interval_ms = 15000;
    c->liveness_interval_ms = 500;
    c->max_n = 16;
    c->max_logprobs = 20;
    c->enable_ollama = true;
}

static char *dup_str(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

/* ------------------------------------------------------------------------------------------------ */
/* queries                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

const char *qn_server_model_name(const qn_server *s) {
    if (s->model_owned) return s->model_owned;
    const char *n = s->eng.model_name ? s->eng.model_name(s->eng.ctx) : NULL;
    return n && n[0] ? n : "quern";
}

int32_t qn_server_max_model_len(const qn_server *s) {
    return s->eng.max_model_len ? s->eng.max_model_len(s->eng.ctx) : 0;
}

bool qn_server_is_ready(const qn_server *s) {
    return atomic_load(&s->ready) && !atomic_load(&s->stop_requested);
}

bool qn_server_check_model(const qn_server *s, const char *model, qn_api_error *e) {
    if (!s->cfg.strict_model_name || !model) return true;
    if (!strcmp(model, qn_server_model_name(s))) return true;
    qn_api_error_set(e, 404, QN_API_ERR_NOT_FOUND, "model", "The model '%s' does not exist.", model);
    return false;
}

uint16_t qn_server_port(const qn_server *s) { return s ? s->port : 0; }

void qn_server_set_ready(qn_server *s, bool ready) {
    if (s) atomic_store(&s->ready, ready ? 1 : 0);
}

/* ------------------------------------------------------------------------------------------------ */
/* reply helpers                                                                                     */
/* ------------------------------------------------------------------------------------------------ */

static const char *reason_phrase(int status) {
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return status < 400 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
    }
}

void qn_http_reply_text(qn_http *h, int status, const char *content_type, const char *data, size_t len) {
    struct evkeyvalq *oh = evhttp_request_get_output_headers(h->req);
    evhttp_remove_header(oh, "Content-Type");
    evhttp_add_header(oh, "Content-Type", content_type);
    struct evbuffer *b = evbuffer_new();
    if (evhttp_request_get_command(h->req) == EVHTTP_REQ_HEAD) {
        /* evhttp would write the body after a HEAD reply too, breaking keep-alive framing */
        char cl[24];
        snprintf(cl, sizeof cl, "%zu", len);
        evhttp_remove_header(oh, "Content-Length");
        evhttp_add_header(oh, "Content-Length", cl);
    } else if (b && len) {
        evbuffer_add(b, data, len);
    }
    evhttp_send_reply(h->req, status, reason_phrase(status), b);
    if (b) evbuffer_free(b);
}

void qn_http_reply_json(qn_http *h, int status, json_t *body) {
    size_t len = 0;
    char *s = qn_api_dump(body, &len);
    json_decref(body);
    if (!s) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":500}}";
        qn_http_reply_text(h, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    qn_http_reply_text(h, status, "application/json", s, len);
    free(s);
}

void qn_http_add_retry_after(qn_server *s, struct evhttp_request *req) {
    char v[16];
    snprintf(v, sizeof v, "%d", s->cfg.retry_after_s > 0 ? s->cfg.retry_after_s : 1);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", v);
}

void qn_http_reply_error(qn_http *h, const qn_api_error *e) {
    if (e->status == 429 || e->status == 503) qn_http_add_retry_after(h->srv, h->req);
    if (e->status == 401) evhttp_add_header(evhttp_request_get_output_headers(h->req), "WWW-Authenticate", "Bearer");
    qn_http_reply_json(h, e->status ? e->status : 500, qn_api_error_json(e));
}

void qn_http_reply_ollama_error(qn_http *h, int status, const char *msg) {
    if (status == 429 || status == 503) qn_http_add_retry_after(h->srv, h->req);
    json_t *o = json_object();
    json_object_set_new(o, "error", qn_api_string(msg, strlen(msg)));
    qn_http_reply_json(h, status, o);
}

/* ------------------------------------------------------------------------------------------------ */
/* request ids, auth, CORS                                                                           */
/* ------------------------------------------------------------------------------------------------ */

static bool request_id_ok(const char *v) {
    size_t n = strlen(v);
    if (n == 0 || n > 128) return false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                  c == '.' || c == ':' || c == '+' || c == '=' || c == '@' || c == '/';
        if (!ok) return false;
    }
    return true;
}

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void make_request_id(qn_server *s, char *out, size_t cap) {
    snprintf(out, cap, "%016llx%016llx", (unsigned long long)rng_next(&s->rng), (unsigned long long)rng_next(&s->rng));
}

/* Compares the presented key with a configured key in time that depends only on the configured key's
 * length, not on where the first difference is. */
static bool key_equal(const char *given, size_t given_len, const char *key) {
    size_t kl = strlen(key);
    unsigned char d = (unsigned char)(given_len != kl);
    for (size_t i = 0; i < kl; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        d |= (unsigned char)(g ^ (unsigned char)key[i]);
    }
    return d == 0;
}

static bool auth_ok(const qn_server *s, struct evhttp_request *req) {
    if (s->cfg.n_api_keys == 0) return true;
    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    const char *given = NULL;
    const char *a = evhttp_find_header(ih, "Authorization");
    if (a && !strncasecmp(a, "Bearer ", 7)) {
        given = a + 7;
        while (*given == ' ') given++;
    } else {
        given = evhttp_find_header(ih, "x-api-key");
    }
    if (!given) return false;
    size_t gl = strlen(given);
    while (gl && (given[gl - 1] == ' ' || given[gl - 1] == '\t')) gl--;
    bool ok = false;
    for (size_t i = 0; i < s->cfg.n_api_keys; i++) ok |= key_equal(given, gl, s->cfg.api_keys[i]); /* no early exit */
    return ok;
}

/* The Access-Control-Allow-Origin value for this request, or NULL for none. */
static const char *cors_origin(const qn_server *s, struct evhttp_request *req) {
    const char *policy = s->cfg.cors_origins;
    if (!policy) return s->cfg.n_api_keys ? NULL : "*";
    if (!strcmp(policy, "*")) return "*";
    const char *origin = evhttp_find_header(evhttp_request_get_input_headers(req), "Origin");
    if (!origin) return NULL;
    size_t ol = strlen(origin);
    for (const char *p = policy; *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *end = p;
        while (*end && *end != ',') end++;
        size_t n = (size_t)(end - p);
        while (n && p[n - 1] == ' ') n--;
        if (n && n == ol && !strncmp(p, origin, n)) return origin;
        p = end;
    }
    return NULL;
}

static bool header_token_list_ok(const char *v) {
    if (strlen(v) > 512) return false;
    for (const char *p = v; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                  c == ',' || c == ' ';
        if (!ok) return false;
    }
    return true;
}

static void add_cors(const qn_server *s, struct evhttp_request *req, bool preflight) {
    const char *origin = cors_origin(s, req);
    if (!origin) return;
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    evhttp_add_header(oh, "Access-Control-Allow-Origin", origin);
    if (strcmp(origin, "*")) evhttp_add_header(oh, "Vary", "Origin");
    evhttp_add_header(oh, "Access-Control-Expose-Headers", "X-Request-Id");
    if (!preflight) return;
    evhttp_add_header(oh, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    const char *rh = evhttp_find_header(evhttp_request_get_input_headers(req), "Access-Control-Request-Headers");
    evhttp_add_header(oh, "Access-Control-Allow-Headers",
                      rh && header_token_list_ok(rh) ? rh : "Authorization, Content-Type, X-Request-Id, X-Api-Key");
    evhttp_add_header(oh, "Access-Control-Max-Age", "600");
}

/* ------------------------------------------------------------------------------------------------ */
/* dispatch                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

enum { QN_M_GET = 1, QN_M_POST = 2 };
enum { QN_AUTH_NONE = 0, QN_AUTH_KEY = 1, QN_AUTH_METRICS = 2, QN_OLLAMA = 4, QN_PREFIX = 8 };

typedef struct qn_route {
    const char *path;
    int methods;
    int flags;
    void (*fn)(qn_http *h);
} qn_route;

static const qn_route qn_routes[] = {
    {"/v1/chat/completions", QN_M_POST, QN_AUTH_KEY, qn_route_chat},
    {"/v1/completions", QN_M_POST, QN_AUTH_KEY, qn_route_completions},
    {"/v1/models", QN_M_GET, QN_AUTH_KEY, qn_route_models},
    {"/v1/models/", QN_M_GET, QN_AUTH_KEY | QN_PREFIX, qn_route_model_get},
    {"/health", QN_M_GET, QN_AUTH_NONE, qn_route_health},
    {"/v1/health", QN_M_GET, QN_AUTH_NONE, qn_route_health},
    {"/metrics", QN_M_GET, QN_AUTH_METRICS, qn_route_metrics},
    {"/tokenize", QN_M_POST, QN_AUTH_KEY, qn_route_tokenize},
    {"/detokenize", QN_M_POST, QN_AUTH_KEY, qn_route_detokenize},
    {"/v1/tokenize", QN_M_POST, QN_AUTH_KEY, qn_route_tokenize},
    {"/v1/detokenize", QN_M_POST, QN_AUTH_KEY, qn_route_detokenize},
    {"/version", QN_M_GET, QN_AUTH_NONE, qn_route_version},
    {"/api/generate", QN_M_POST, QN_AUTH_KEY | QN_OLLAMA, qn_route_ollama_generate},
    {"/api/chat", QN_M_POST, QN_AUTH_KEY | QN_OLLAMA, qn_route_ollama_chat},
    {"/api/tags", QN_M_GET, QN_AUTH_KEY | QN_OLLAMA, qn_route_ollama_tags},
    {"/api/version", QN_M_GET, QN_AUTH_NONE | QN_OLLAMA, qn_route_ollama_version},
};

static const qn_route *find_route(const qn_server *s, const char *path) {
    size_t n = sizeof qn_routes / sizeof qn_routes[0];
    for (size_t i = 0; i < n; i++) {
        const qn_route *r = &qn_routes[i];
        if ((r->flags & QN_OLLAMA) && !s->cfg.enable_ollama) continue;
        if (r->flags & QN_PREFIX) {
            size_t pl = strlen(r->path);
            if (!strncmp(path, r->path, pl) && path[pl]) return r;
        } else if (!strcmp(path, r->path)) {
            return r;
        }
    }
    return NULL;
}

static bool route_needs_auth(const qn_server *s, const qn_route *r) {
    if (!r) return true; /* unknown paths: 401 before 404, so routes cannot be probed without a key */
    if (r->flags & QN_AUTH_KEY) return true;
    if (r->flags & QN_AUTH_METRICS) return s->cfg.metrics_require_auth;
    return false;
}

static void on_request(struct evhttp_request *req, void *arg) {
    qn_server *s = arg;
    qn_http h;
    memset(&h, 0, sizeof h);
    h.srv = s;
    h.req = req;
    h.arrival_ns = qn_now_ns();

    /* Path without query; "/v1/models/" and "/v1/models" are the same route. */
    char path[512];
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *p = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!p || !*p) p = "/";
    snprintf(path, sizeof path, "%s", p);
    size_t pl = strlen(path);
    if (pl > 1 && path[pl - 1] == '/') path[pl - 1] = '\0';
    const char *rp = path;
    size_t xl = s->cfg.api_prefix ? strlen(s->cfg.api_prefix) : 0;
    if (xl && !strncmp(path, s->cfg.api_prefix, xl) && (path[xl] == '/' || path[xl] == '\0'))
        rp = path[xl] ? path + xl : "/"; /* unprefixed paths keep working too */
    h.path = rp;

    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    const char *rid = evhttp_find_header(ih, "X-Request-Id");
    if (rid && request_id_ok(rid)) snprintf(h.request_id, sizeof h.request_id, "%s", rid);
    else make_request_id(s, h.request_id, sizeof h.request_id);
    evhttp_add_header(oh, "X-Request-Id", h.request_id);

    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd == EVHTTP_REQ_OPTIONS) { /* CORS preflight: never authenticated */
        add_cors(s, req, true);
        evhttp_add_header(oh, "Allow", "GET, POST, OPTIONS");
        qn_http_reply_text(&h, 204, "text/plain; charset=utf-8", NULL, 0);
        return;
    }
    add_cors(s, req, false);

    const qn_route *r = find_route(s, h.path);
    qn_api_error e;
    if (route_needs_auth(s, r) && !auth_ok(s, req)) {
        qn_api_error_set(&e, 401, QN_API_ERR_AUTH, NULL, "Unauthorized: missing or invalid API key");
        qn_http_reply_error(&h, &e);
        return;
    }
    if (!r) {
        qn_api_error_set(&e, 404, QN_API_ERR_NOT_FOUND, NULL, "Not found: %s", h.path);
        qn_http_reply_error(&h, &e);
        return;
    }
    int m = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD ? QN_M_GET : cmd == EVHTTP_REQ_POST ? QN_M_POST : 0;
    if (!(r->methods & m)) {
        evhttp_add_header(oh, "Allow", r->methods & QN_M_POST ? "POST, OPTIONS" : "GET, HEAD, OPTIONS");
        qn_api_error_set(&e, 405, QN_API_ERR_INVALID, NULL, "Method not allowed for %s", h.path);
        qn_http_reply_error(&h, &e);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(in);
    if (blen > s->cfg.max_body_bytes) {
        evhttp_add_header(oh, "Connection", "close");
        qn_api_error_set(&e, 413, QN_API_ERR_INVALID, NULL, "Request body of %zu bytes exceeds the limit of %zu bytes",
                         blen, s->cfg.max_body_bytes);
        qn_http_reply_error(&h, &e);
        return;
    }
    h.body = blen ? (const char *)evbuffer_pullup(in, -1) : NULL;
    h.body_len = h.body ? blen : 0;
    r->fn(&h);
}

/* ------------------------------------------------------------------------------------------------ */
/* lifecycle                                                                                         */
/* ------------------------------------------------------------------------------------------------ */

static void stop_cb(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    qn_server *s = arg;
    if (fd >= 0) {
        char buf[64];
        while (read(fd, buf, sizeof buf) > 0) {
        }
    }
    if (s->stopping) return;
    s->stopping = true;
    if (s->sock) {
        evhttp_del_accept_socket(s->http, s->sock);
        s->sock = NULL;
    }
    qn_jobs_shutdown(s, "server is shutting down");
    struct timeval tv = {0, 100000}; /* let the last error events flush */
    event_base_loopexit(s->base, &tv);
}

static void free_owned(qn_server *s) {
    free(s->host_owned);
    free(s->model_owned);
    free(s->cors_owned);
    free(s->prefix_owned);
    for (size_t i = 0; s->keys_owned && i < s->cfg.n_api_keys; i++) free(s->keys_owned[i]);
    free(s->keys_owned);
}

static qn_status copy_config(qn_server *s, const qn_server_config *cfg, qn_error *err) {
    s->cfg = *cfg;
    s->host_owned = dup_str(cfg->host ? cfg->host : "127.0.0.1");
    if (cfg->api_prefix && cfg->api_prefix[0] && strcmp(cfg->api_prefix, "/")) {
        s->prefix_owned = dup_str(cfg->api_prefix);
        if (!s->prefix_owned) return qn_error_set(err, QN_ERR_NOMEM, "server: out of memory");
        size_t n = strlen(s->prefix_owned);
        if (n > 1 && s->prefix_owned[n - 1] == '/') s->prefix_owned[n - 1] = '\0';
    }
    s->cfg.api_prefix = s->prefix_owned;
    s->model_owned = cfg->served_model_name && cfg->served_model_name[0] ? dup_str(cfg->served_model_name) : NULL;
    s->cors_owned = cfg->cors_origins ? dup_str(cfg->cors_origins) : NULL;
    s->cfg.host = s->host_owned;
    s->cfg.served_model_name = s->model_owned;
    s->cfg.cors_origins = s->cors_owned;
    size_t nk = 0;
    if (cfg->n_api_keys) {
        s->keys_owned = calloc(cfg->n_api_keys, sizeof(char *));
        if (!s->keys_owned) return qn_error_set(err, QN_ERR_NOMEM, "server: out of memory");
        for (size_t i = 0; i < cfg->n_api_keys; i++) {
            if (!cfg->api_keys[i] || !cfg->api_keys[i][0]) continue; /* an empty key would match nothing useful */
            s->keys_owned[nk] = dup_str(cfg->api_keys[i]);
            if (!s->keys_owned[nk]) return qn_error_set(err, QN_ERR_NOMEM, "server: out of memory");
            nk++;
        }
    }
    s->cfg.n_api_keys = nk;
    s->cfg.api_keys = (const char *const *)s->keys_owned;
    if (!s->host_owned) return qn_error_set(err, QN_ERR_NOMEM, "server: out of memory");
    if (s->cfg.max_body_bytes == 0) s->cfg.max_body_bytes = 32u << 20;
    if (s->cfg.max_body_hard_bytes == 0) {
        size_t a = s->cfg.max_body_bytes * 4, b = s->cfg.max_body_bytes + (64u << 20);
        s->cfg.max_body_hard_bytes = a > b ? a : b;
    }
    if (s->cfg.max_body_hard_bytes < s->cfg.max_body_bytes) s->cfg.max_body_hard_bytes = s->cfg.max_body_bytes;
    if (s->cfg.idle_timeout_s <= 0) s->cfg.idle_timeout_s = 75;
    if (s->cfg.retry_after_s <= 0) s->cfg.retry_after_s = 1;
    if (s->cfg.sse_ping_interval_ms < 0) s->cfg.sse_ping_interval_ms = 0;
    if (s->cfg.liveness_interval_ms < 0) s->cfg.liveness_interval_ms = 0;
    qn_api_limits_default(&s->limits);
    if (s->cfg.max_n > 0) s->limits.max_n = s->cfg.max_n;
    if (s->cfg.max_logprobs > 0) s->limits.max_logprobs = s->cfg.max_logprobs;
    return QN_OK;
}

static void ignore_sigpipe(void) {
    struct sigaction cur;
    if (sigaction(SIGPIPE, NULL, &cur) == 0 && cur.sa_handler == SIG_DFL) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGPIPE, &sa, NULL);
    }
}

qn_status qn_server_create(const qn_server_config *cfg, const qn_engine_iface *engine, qn_server **out,
                           qn_error *err) {
    *out = NULL;
    if (!cfg || !engine || !engine->submit || !engine->abort)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "server: config and an engine with submit/abort are required");
    qn_server *s = calloc(1, sizeof *s);
    if (!s) return qn_error_set(err, QN_ERR_NOMEM, "server: out of memory");
    qn_status st = copy_config(s, cfg, err);
    if (st != QN_OK) goto err_free_owned;
    s->eng = *engine;
    s->created = (int64_t)time(NULL);
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s->rng = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)s;
    }
    ignore_sigpipe();

    if (evthread_use_pthreads() != 0) {
        st = qn_error_set(err, QN_ERR_INTERNAL, "server: evthread_use_pthreads failed");
        goto err_free_owned;
    }
    s->base = event_base_new();
    if (!s->base) {
        st = qn_error_set(err, QN_ERR_INTERNAL, "server: event_base_new failed");
        goto err_free_owned;
    }
    st = qn_bridge_create(s->base, &s->bridge, err);
    if (st != QN_OK) goto err_free_base;
    qn_metrics_config mc = {.model_name = qn_server_model_name(s),
                            .vllm_compat = s->cfg.metrics_vllm_compat,
                            .max_model_len = qn_server_max_model_len(s)};
    st = qn_metrics_create(&mc, &s->metrics, err);
    if (st != QN_OK) goto err_free_bridge;
    /* qn_server_stop writes one byte here: write() is async-signal-safe, event_active() is not. */
    if (pipe2(s->stop_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        st = qn_error_set(err, QN_ERR_IO, "server: pipe2 failed");
        goto err_free_metrics;
    }
    s->stop_ev = event_new(s->base, s->stop_pipe[0], EV_READ | EV_PERSIST, stop_cb, s);
    if (!s->stop_ev || event_add(s->stop_ev, NULL) != 0) {
        st = qn_error_set(err, QN_ERR_NOMEM, "server: event_new failed");
        goto err_close_pipe;
    }
    s->http = evhttp_new(s->base);
    if (!s->http) {
        st = qn_error_set(err, QN_ERR_NOMEM, "server: evhttp_new failed");
        goto err_close_pipe;
    }
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(s->http, (ev_ssize_t)s->cfg.max_body_hard_bytes);
    evhttp_set_max_headers_size(s->http, 64 * 1024);
    evhttp_set_timeout(s->http, s->cfg.idle_timeout_s);
    evhttp_set_default_content_type(s->http, "application/json");
    evhttp_set_gencb(s->http, on_request, s);

    s->sock = evhttp_bind_socket_with_handle(s->http, s->cfg.host, s->cfg.port);
    if (!s->sock) {
        st = qn_error_set(err, QN_ERR_IO, "server: cannot bind %s:%u", s->cfg.host, (unsigned)s->cfg.port);
        goto err_free_http;
    }
    {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        evutil_socket_t fd = evhttp_bound_socket_get_fd(s->sock);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
            if (ss.ss_family == AF_INET) s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
            else if (ss.ss_family == AF_INET6) s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    *out = s;
    return QN_OK;

err_free_http:
    evhttp_free(s->http);
err_close_pipe:
    if (s->stop_ev) event_free(s->stop_ev);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
err_free_metrics:
    qn_metrics_destroy(s->metrics);
err_free_bridge:
    qn_bridge_destroy(s->bridge);
err_free_base:
    event_base_free(s->base);
err_free_owned:
    free_owned(s);
    free(s);
    return st;
}

qn_status qn_server_run(qn_server *s) {
    if (!s) return QN_ERR_INVALID_ARG;
    int rc = event_base_dispatch(s->base);
    if (!s->stopping) stop_cb(-1, 0, s); /* loop ended on its own: still fail the in-flight jobs */
    return rc < 0 ? QN_ERR_INTERNAL : QN_OK;
}

void qn_server_stop(qn_server *s) {
    if (!s) return;
    atomic_store(&s->stop_requested, 1);
    ssize_t w = write(s->stop_pipe[1], "x", 1); /* EAGAIN: a wake-up is already pending */
    (void)w;
}

void qn_server_destroy(qn_server *s) {
    if (!s) return;
    qn_jobs_forget_all(s);
    evhttp_free(s->http); /* frees connections and the requests still on them */
    event_free(s->stop_ev);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    qn_bridge_destroy(s->bridge);
    event_base_free(s->base);
    qn_metrics_destroy(s->metrics);
    free_owned(s);
    free(s);
}
