/* sse.h — server-sent events (and Ollama NDJSON) over evhttp chunked replies.
 * Owns: the byte framing (`data: <json>\n\n`, `data: [DONE]\n\n`, ":" comment pings, NDJSON lines),
 * starting a stream reply (status + headers at admission, TCP_NODELAY), writing one event per chunk,
 * and the connection helpers a stream needs: the close hook and a MSG_PEEK liveness probe.
 * Does not own: the request (job.c) or any JSON building (api_json.c). Loop thread only, except the
 * framing functions, which are pure. */
#ifndef QN_HOST_SSE_H
#define QN_HOST_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct evhttp_request;
struct evhttp_connection;

/* --- framing (pure; append to out; return 0, or -1 on allocation failure) --- */
/* One event: every line of payload gets its own "data: " prefix (compact JSON has none), then "\n\n". */
int qn_sse_frame_data(struct evbuffer *out, const char *payload, size_t len);
int qn_sse_frame_done(struct evbuffer *out);    /* "data: [DONE]\n\n" */
int qn_sse_frame_comment(struct evbuffer *out); /* ":\n\n" (skipped by SSE parsers; keeps proxies alive) */
int qn_ndjson_frame(struct evbuffer *out, const char *json, size_t len); /* json + "\n" */

typedef enum qn_stream_format {
    QN_STREAM_SSE = 0,    /* text/event-stream */
    QN_STREAM_NDJSON = 1, /* application/x-ndjson (Ollama) */
} qn_stream_format;

/* --- a stream reply --- */
typedef struct qn_sse {
    struct evhttp_request *req; /* borrowed; NULL once ended */
    qn_stream_format format;
    bool started;
    uint64_t last_write_ns;     /* CLOCK_MONOTONIC of the last chunk (for pings) */
} qn_sse;

/* Sends status 200 and the stream headers (Content-Type, Cache-Control: no-cache, X-Accel-Buffering: no)
 * now, so the client sees the stream start at admission and evhttp starts watching for a close; sets
 * TCP_NODELAY. Extra headers (CORS, X-Request-Id) must already be on the request's output headers. */
void qn_sse_start(qn_sse *s, struct evhttp_request *req, qn_stream_format format);
/* One event: SSE "data:" event or one NDJSON line. */
void qn_sse_send(qn_sse *s, const char *payload, size_t len);
void qn_sse_send_done(qn_sse *s); /* SSE: data: [DONE]; NDJSON: nothing */
void qn_sse_ping(qn_sse *s);      /* SSE: ":" comment; NDJSON: nothing (no comment syntax) */
/* Ends the reply (evhttp_send_reply_end): exactly once per started stream; s->req is NULL afterwards. */
void qn_sse_end(qn_sse *s);

/* --- connection helpers --- */
/* Returns 1 when the peer has closed (recv MSG_PEEK returns 0 or a hard error), 0 otherwise (incl. no
 * connection information). Non-blocking; never consumes bytes. */
int qn_conn_peer_closed(struct evhttp_connection *evcon);
void qn_conn_set_nodelay(struct evhttp_connection *evcon);

uint64_t qn_now_ns(void); /* CLOCK_MONOTONIC */

#endif /* QN_HOST_SSE_H */
