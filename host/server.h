/* server.h — the HTTP server behind `quern serve` (libevent evhttp + jansson).
 * Owns: the event loop, the listening socket, routing, auth, CORS, request ids, limits and every evhttp
 * object (all on the loop thread, i.e. the thread inside qn_server_run). Talks to the engine only through
 * the qn_engine_iface given at create (bridge.h).
 * Routes: OpenAI /v1/chat/completions /v1/completions /v1/models; /health /v1/health /metrics
 * /tokenize /detokenize (+ /v1/ aliases); Ollama /api/generate /api/chat /api/tags /api/version.
 * Thread-safety: qn_server_stop and qn_server_set_ready may be called from any thread; everything else
 * from the thread that owns the server. SIGPIPE: create sets it to SIG_IGN if it is at SIG_DFL (a write
 * to a closed socket must not kill the process).
 *
 * Wiring (tools/serve.c):
 *   qn_server_config cfg; qn_server_config_default(&cfg); cfg.port = ...; cfg.api_keys = ...;
 *   qn_engine_iface eng = {.ctx = engine, .submit = ..., .abort = ..., ...};  // adapter over quern.h
 *   qn_server *srv; qn_server_create(&cfg, &eng, &srv, &err);   // binds now: fail fast on a busy port
 *   load the model / start the engine thread, then qn_server_set_ready(srv, true);
 *   SIGINT/SIGTERM handler: qn_server_stop(srv);
 *   qn_server_run(srv);                                          // blocks until stopped
 *   stop the engine and qn_server_destroy(srv), in either order. */
#ifndef QN_HOST_SERVER_H
#define QN_HOST_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host/bridge.h"
#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qn_server qn_server;

typedef struct qn_server_config {
    const char *host;                /* bind address; default "127.0.0.1" */
    uint16_t port;                   /* default 8000; 0 = ephemeral (see qn_server_port) */
    const char *served_model_name;   /* NULL: engine->model_name(), else "quern" */
    const char *const *api_keys;     /* [n_api_keys]; Bearer (or x-api-key) required when n_api_keys > 0 */
    size_t n_api_keys;
    bool metrics_require_auth;       /* default false: /metrics is public like /health */
    const char *cors_origins;        /* NULL: "*" when no API key, CORS off with a key; "*" or a comma list */
    size_t max_body_bytes;           /* larger bodies get our 413 JSON; default 32 MiB */
    size_t max_body_hard_bytes;      /* evhttp's own cap (its HTML 413, before our handler); 0 = auto
                                      * (max(4 * max_body_bytes, max_body_bytes + 64 MiB)) */
    int idle_timeout_s;              /* keep-alive idle / header+body read timeout; default 75 s (keep it
                                      * above the proxy's upstream keepalive_timeout) */
    int max_waiting;                 /* 0 = unlimited; else 429 when admitted-but-not-started engine
                                      * requests would exceed it */
    int retry_after_s;               /* Retry-After on 429/503; default 1 */
    int sse_ping_interval_ms;        /* ":" comment when a stream was silent this long; default 15000; 0 = off */
    int liveness_interval_ms;        /* MSG_PEEK disconnect probe period; default 500; 0 = off */
    int32_t max_n;                   /* cap on n; default 16 */
    int32_t max_logprobs;            /* cap on top_logprobs; default 20 */
    bool metrics_vllm_compat;        /* also expose vllm:* metric names */
    bool strict_model_name;          /* 404 when "model" names something else (default: accept any) */
    bool enable_ollama;              /* the Ollama /api routes; default true */
    const char *api_prefix;          /* e.g. "/llm" behind a path-routing proxy: "/llm/v1/models" is served
                                      * as "/v1/models" (unprefixed paths keep working); NULL = none */
} qn_server_config;

/* Fills the defaults documented above. */
void qn_server_config_default(qn_server_config *cfg);

/* --- lifecycle --- */
/* Binds and sets up routes; the engine interface is copied (its ctx must outlive the server). The server
 * starts "not ready": /health answers 503 and generation routes 503 until qn_server_set_ready(s, true).
 * Calls evthread_use_pthreads() before creating its event base. */
qn_status qn_server_create(const qn_server_config *cfg, const qn_engine_iface *engine, qn_server **out,
                           qn_error *err);
/* Runs the loop on the calling thread until qn_server_stop; returns QN_OK after a clean stop. */
qn_status qn_server_run(qn_server *s);
/* Any thread, and async-signal-safe (a SIGINT/SIGTERM handler may call it): asks the loop to stop.
 * In-flight requests are aborted in the engine and their clients get an error (stream: an error event +
 * [DONE]; otherwise 503). Safe before run (run then returns at once). */
void qn_server_stop(qn_server *s);
/* After run has returned (or was never called). Requests the engine still runs may keep delivering
 * events afterwards: they are dropped safely (bridge.h). NULL is a no-op. */
void qn_server_destroy(qn_server *s);

/* --- state --- */
void qn_server_set_ready(qn_server *s, bool ready); /* any thread */
uint16_t qn_server_port(const qn_server *s);        /* the bound port (useful with port 0) */

#ifdef __cplusplus
}
#endif
#endif /* QN_HOST_SERVER_H */
