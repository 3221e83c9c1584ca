/* routes.h — internal to host/: the server state shared by server.c, job.c and the routes_*.c files,
 * the per-request context handed to a route, the reply helpers and the generation-job entry points.
 * Not installed, not for tools/: the public surface is server.h and bridge.h. Loop thread only
 * (except the atomics in qn_server). */
#ifndef QN_HOST_ROUTES_H
#define QN_HOST_ROUTES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "host/api_json.h"
#include "host/bridge.h"
#include "host/metrics.h"
#include "host/server.h"

struct event;
struct event_base;
struct evhttp;
struct evhttp_request;
struct evhttp_bound_socket;
typedef struct qn_job qn_job;

struct qn_server {
    qn_server_config cfg;        /* strings below are owned copies; cfg's pointers aim at them */
    char *host_owned, *model_owned, *cors_owned, *prefix_owned;
    char **keys_owned;           /* [cfg.n_api_keys] */
    qn_engine_iface eng;         /* copy; eng.ctx outlives the server */
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    int stop_pipe[2];            /* qn_server_stop writes a byte (async-signal-safe) */
    struct event *stop_ev;       /* reads stop_pipe[0] on the loop */
    qn_bridge *bridge;
    qn_metrics *metrics;
    qn_api_limits limits;
    atomic_int ready;            /* any thread */
    atomic_int stop_requested;   /* any thread */
    bool stopping;               /* loop thread: set in the stop callback */
    uint16_t port;
    int64_t created;             /* unix seconds at create ("created" in /v1/models) */
    uint64_t rng;                /* request-id generator state */
    qn_job *jobs;                /* live generation jobs (intrusive list) */
    int64_t n_pending;           /* engine requests admitted and not yet producing tokens (429 check) */
};

/* One HTTP request as a route sees it (stack-allocated by the dispatcher; copy what must outlive it). */
typedef struct qn_http {
    qn_server *srv;
    struct evhttp_request *req;
    const char *path;           /* path without the query string */
    char request_id[136];       /* X-Request-Id (validated) or a generated 32-hex id; always echoed */
    uint64_t arrival_ns;        /* CLOCK_MONOTONIC when the request reached the handler */
    const char *body;           /* [body_len] pulled-up request body (not NUL-terminated) */
    size_t body_len;
} qn_http;

/* --- reply helpers (server.c). Each sends exactly one complete reply. --- */
void qn_http_reply_json(qn_http *h, int status, json_t *body); /* steals body */
void qn_http_reply_error(qn_http *h, const qn_api_error *e);  /* OpenAI envelope (+ Retry-After on 429/503) */
void qn_http_reply_text(qn_http *h, int status, const char *content_type, const char *data, size_t len);
void qn_http_reply_ollama_error(qn_http *h, int status, const char *msg); /* {"error":"..."} */
void qn_http_add_retry_after(qn_server *s, struct evhttp_request *req);

/* --- server queries --- */
const char *qn_server_model_name(const qn_server *s);
int32_t qn_server_max_model_len(const qn_server *s); /* <= 0 unknown */
bool qn_server_is_ready(const qn_server *s);
/* false (and e filled with 404) when strict_model_name is on and model names another model. */
bool qn_server_check_model(const qn_server *s, const char *model, qn_api_error *e);

/* --- routes --- */
void qn_route_chat(qn_http *h);             /* routes_openai.c */
void qn_route_completions(qn_http *h);
void qn_route_models(qn_http *h);
void qn_route_model_get(qn_http *h);        /* GET /v1/models/{id} */
void qn_route_health(qn_http *h);           /* routes_admin.c */
void qn_route_metrics(qn_http *h);
void qn_route_tokenize(qn_http *h);
void qn_route_detokenize(qn_http *h);
void qn_route_version(qn_http *h);
void qn_route_ollama_generate(qn_http *h);  /* routes_ollama.c */
void qn_route_ollama_chat(qn_http *h);
void qn_route_ollama_tags(qn_http *h);
void qn_route_ollama_version(qn_http *h);

/* --- generation jobs (job.c) --- */
/* Takes ownership of *api (zeroed on return). Builds the prompts (chat template, tokenization), checks the
 * context and the queue, submits n requests per prompt and replies: a stream starts at admission; a
 * non-stream reply is sent when every choice is finished. Every failure is answered here. */
void qn_job_start(qn_http *h, qn_api_request *api);
/* Stop path: every live job is cancelled in the engine and its client gets an error. */
void qn_jobs_shutdown(qn_server *s, const char *why);
/* Destroy path: forget every job without touching evhttp requests (evhttp_free releases them). */
void qn_jobs_forget_all(qn_server *s);

#endif /* QN_HOST_ROUTES_H */
