/* sse.c — SSE / NDJSON framing and stream replies over evhttp (see sse.h). */
#include "host/sse.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

uint64_t qn_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* --- framing --- */

int qn_sse_frame_data(struct evbuffer *out, const char *payload, size_t len) {
    size_t i = 0;
    do { /* one "data: " line per payload line; an empty payload is one empty data line */
        const char *nl = len > i ? memchr(payload + i, '\n', len - i) : NULL;
        size_t end = nl ? (size_t)(nl - payload) : len;
        size_t line_end = end;
        if (line_end > i && payload[line_end - 1] == '\r') line_end--;
        if (evbuffer_add(out, "data: ", 6) || evbuffer_add(out, payload + i, line_end - i) ||
            evbuffer_add(out, "\n", 1))
            return -1;
        i = end + 1;
    } while (i < len);
    return evbuffer_add(out, "\n", 1) ? -1 : 0;
}

int qn_sse_frame_done(struct evbuffer *out) { return evbuffer_add(out, "data: [DONE]\n\n", 14) ? -1 : 0; }

int qn_sse_frame_comment(struct evbuffer *out) { return evbuffer_add(out, ":\n\n", 3) ? -1 : 0; }

int qn_ndjson_frame(struct evbuffer *out, const char *json, size_t len) {
    /* A raw newline inside would split the line; compact JSON never has one, but be defensive. */
    for (size_t i = 0; i < len; i++) {
        const char *nl = memchr(json + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - json) : len;
        if (evbuffer_add(out, json + i, end - i)) return -1;
        if (nl && evbuffer_add(out, " ", 1)) return -1;
        i = end;
    }
    return evbuffer_add(out, "\n", 1) ? -1 : 0;
}

/* --- stream replies --- */

void qn_conn_set_nodelay(struct evhttp_connection *evcon) {
    if (!evcon) return;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    if (!bev) return;
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0) return;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly on non-TCP */
}

int qn_conn_peer_closed(struct evhttp_connection *evcon) {
    if (!evcon) return 0;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    if (!bev) return 0;
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0) return 0;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return 1; /* orderly shutdown from the peer */
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return 1; /* reset etc. */
    return 0; /* data pending (pipelined request) or nothing yet: alive */
}

void qn_sse_start(qn_sse *s, struct evhttp_request *req, qn_stream_format format) {
    memset(s, 0, sizeof *s);
    s->req = req;
    s->format = format;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_remove_header(h, "Content-Type");
    evhttp_add_header(h, "Content-Type",
                      format == QN_STREAM_SSE ? "text/event-stream; charset=utf-8" : "application/x-ndjson");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    qn_conn_set_nodelay(evhttp_request_get_connection(req));
    evhttp_send_reply_start(req, 200, "OK");
    s->started = true;
    s->last_write_ns = qn_now_ns();
}

static void write_buf(qn_sse *s, struct evbuffer *b) {
    if (s->req && evbuffer_get_length(b)) {
        evhttp_send_reply_chunk(s->req, b); /* a no-op once the connection is gone */
        s->last_write_ns = qn_now_ns();
    }
}

void qn_sse_send(qn_sse *s, const char *payload, size_t len) {
    if (!s->req) return;
    struct evbuffer *b = evbuffer_new();
    if (!b) return;
    int rc = s->format == QN_STREAM_SSE ? qn_sse_frame_data(b, payload, len) : qn_ndjson_frame(b, payload, len);
    if (rc == 0) write_buf(s, b);
    evbuffer_free(b);
}

void qn_sse_send_done(qn_sse *s) {
    if (!s->req || s->format != QN_STREAM_SSE) return;
    struct evbuffer *b = evbuffer_new();
    if (!b) return;
    if (qn_sse_frame_done(b) == 0) write_buf(s, b);
    evbuffer_free(b);
}

void qn_sse_ping(qn_sse *s) {
    if (!s->req || s->format != QN_STREAM_SSE) return;
    struct evbuffer *b = evbuffer_new();
    if (!b) return;
    if (qn_sse_frame_comment(b) == 0) write_buf(s, b);
    evbuffer_free(b);
}

void qn_sse_end(qn_sse *s) {
    if (!s->req) return;
    evhttp_send_reply_end(s->req); /* frees the request, also when its connection is already gone */
    s->req = NULL;
}
