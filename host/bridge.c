/* bridge.c — engine thread -> loop thread event queue.
 * The engine calls sink_on_event on its thread: the event is deep-copied into one allocation, appended
 * to a mutex-protected list, and the loop is woken with event_active() (once per batch). The loop-side
 * callback swaps the list out and delivers each event to its request's owner.
 * The queue lives in a reference-counted core (1 ref for the bridge + 1 per live handle), so an engine
 * that outlives the server only touches memory that is still ours. */
#include "host/bridge.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

typedef struct qn_bridge_node {
    struct qn_bridge_node *next;
    qn_bridge_req *r;
    qn_gen_event ev; /* pointers aim into this node's allocation */
} qn_bridge_node;

struct qn_bridge {             /* the core; also the handle the server holds */
    pthread_mutex_t mu;
    int refs;                  /* 1 while open + 1 per live qn_bridge_req; freed at 0 (under mu) */
    bool closed;               /* set by qn_bridge_destroy; events are then dropped */
    struct event *wake;        /* user event on the loop's base; NULL once closed */
    bool wake_pending;         /* event_active() already called for the current batch */
    qn_bridge_node *head, *tail;
    size_t n_live;             /* loop-side count of handles (informational) */
};

struct qn_bridge_req {
    qn_bridge *core;
    const qn_engine_iface *eng;
    uint64_t id;
    qn_bridge_event_fn fn; /* NULL once detached */
    void *user;
    size_t slot;
    bool aborted;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* --- node copy: one malloc per event --- */

static size_t str_need(const char *s, size_t len) { return s ? len + 1 : 0; }

static char *str_put(char **cursor, const char *s, size_t len) {
    if (!s) return NULL;
    char *dst = *cursor;
    if (len) memcpy(dst, s, len);
    dst[len] = '\0';
    *cursor += len + 1;
    return dst;
}

static qn_bridge_node *node_copy(const qn_gen_event *ev) {
    size_t n_top = ev->kind == QN_GEN_EVENT_TOKEN ? ev->n_top : 0;
    if (!ev->top) n_top = 0;
    size_t need = sizeof(qn_bridge_node) + n_top * sizeof(qn_token_logprob);
    need += str_need(ev->text ? ev->text : "", ev->text ? ev->text_len : 0);
    need += str_need(ev->sampled.piece, ev->sampled.piece_len);
    for (size_t i = 0; i < n_top; i++) need += str_need(ev->top[i].piece, ev->top[i].piece_len);
    need += ev->stop_str ? strlen(ev->stop_str) + 1 : 0;
    need += ev->error_msg ? strlen(ev->error_msg) + 1 : 0;

    qn_bridge_node *n = malloc(need);
    if (!n) return NULL;
    n->next = NULL;
    n->r = NULL;
    n->ev = *ev;
    qn_token_logprob *top = (qn_token_logprob *)(n + 1);
    char *cur = (char *)(top + n_top);
    n->ev.text = str_put(&cur, ev->text ? ev->text : "", ev->text ? ev->text_len : 0);
    n->ev.text_len = ev->text ? ev->text_len : 0;
    n->ev.sampled.piece = str_put(&cur, ev->sampled.piece, ev->sampled.piece_len);
    if (!n->ev.sampled.piece) n->ev.sampled.piece_len = 0;
    for (size_t i = 0; i < n_top; i++) {
        top[i] = ev->top[i];
        top[i].piece = str_put(&cur, ev->top[i].piece, ev->top[i].piece_len);
        if (!top[i].piece) top[i].piece_len = 0;
    }
    n->ev.top = n_top ? top : NULL;
    n->ev.n_top = n_top;
    n->ev.stop_str = ev->stop_str ? str_put(&cur, ev->stop_str, strlen(ev->stop_str)) : NULL;
    n->ev.error_msg = ev->error_msg ? str_put(&cur, ev->error_msg, strlen(ev->error_msg)) : NULL;
    if (!n->ev.t_ns) n->ev.t_ns = now_ns();
    return n;
}

/* Drops one reference; frees the core when it was the last. Called with mu held; unlocks. */
static void core_unref_unlock(qn_bridge *b) {
    int refs = --b->refs;
    pthread_mutex_unlock(&b->mu);
    if (refs == 0) {
        pthread_mutex_destroy(&b->mu);
        free(b);
    }
}

/* --- engine thread --- */

static void sink_on_event(void *ctx, const qn_gen_event *ev) {
    qn_bridge_req *r = ctx;
    qn_bridge *b = r->core;
    bool final = ev->kind == QN_GEN_EVENT_FINAL;
    qn_bridge_node *n = node_copy(ev);

    pthread_mutex_lock(&b->mu);
    if (b->closed) { /* the loop is gone: drop, and release the handle at FINAL */
        free(n);
        if (final) {
            free(r);
            core_unref_unlock(b);
            return;
        }
        pthread_mutex_unlock(&b->mu);
        return;
    }
    if (!n) {
        /* Out of memory: a token is lost; a FINAL must not be, so deliver a stub from a static node. */
        if (!final) {
            pthread_mutex_unlock(&b->mu);
            return;
        }
        static const char oom[] = "out of host memory in the bridge";
        n = malloc(sizeof *n);
        if (!n) { /* nothing left to do but leak the handle; the request never completes on the loop */
            pthread_mutex_unlock(&b->mu);
            return;
        }
        memset(n, 0, sizeof *n);
        n->ev.kind = QN_GEN_EVENT_FINAL;
        n->ev.text = "";
        n->ev.finish_reason = QN_FINISH_ERROR;
        n->ev.error_code = QN_ERR_NOMEM;
        n->ev.error_msg = oom;
        n->ev.stop_token = -1;
        n->ev.t_ns = now_ns();
    }
    n->r = r;
    if (b->tail) b->tail->next = n;
    else b->head = n;
    b->tail = n;
    if (!b->wake_pending) {
        b->wake_pending = true;
        event_active(b->wake, EV_READ, 0); /* lock order: b->mu, then the base lock */
    }
    pthread_mutex_unlock(&b->mu);
}

/* --- loop thread --- */

static void free_final_handle(qn_bridge *b, qn_bridge_req *r) {
    free(r);
    pthread_mutex_lock(&b->mu);
    b->n_live--;
    core_unref_unlock(b); /* never the last ref here: the bridge itself holds one while open */
}

static void wake_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    qn_bridge *b = arg;
    pthread_mutex_lock(&b->mu);
    qn_bridge_node *n = b->head;
    b->head = b->tail = NULL;
    b->wake_pending = false;
    pthread_mutex_unlock(&b->mu);

    while (n) {
        qn_bridge_node *next = n->next;
        qn_bridge_req *r = n->r;
        bool final = n->ev.kind == QN_GEN_EVENT_FINAL;
        if (r->fn) r->fn(r->user, r->slot, &n->ev);
        if (final) free_final_handle(b, r);
        free(n);
        n = next;
    }
}

qn_status qn_bridge_create(struct event_base *base, qn_bridge **out, qn_error *err) {
    *out = NULL;
    qn_bridge *b = calloc(1, sizeof *b);
    if (!b) return qn_error_set(err, QN_ERR_NOMEM, "bridge: out of memory");
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b);
        return qn_error_set(err, QN_ERR_INTERNAL, "bridge: pthread_mutex_init failed");
    }
    b->wake = event_new(base, -1, 0, wake_cb, b);
    if (!b->wake) {
        pthread_mutex_destroy(&b->mu);
        free(b);
        return qn_error_set(err, QN_ERR_NOMEM, "bridge: event_new failed");
    }
    b->refs = 1;
    *out = b;
    return QN_OK;
}

void qn_bridge_destroy(qn_bridge *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->closed = true;
    qn_bridge_node *n = b->head;
    b->head = b->tail = NULL;
    event_free(b->wake); /* under mu: the engine thread checks closed before touching it */
    b->wake = NULL;
    while (n) { /* queued FINALs release their handles now */
        qn_bridge_node *next = n->next;
        if (n->ev.kind == QN_GEN_EVENT_FINAL) {
            free(n->r);
            b->refs--;
        }
        free(n);
        n = next;
    }
    core_unref_unlock(b);
}

qn_status qn_bridge_submit(qn_bridge *b, const qn_engine_iface *eng, const qn_gen_request *req,
                           qn_bridge_event_fn fn, void *user, size_t slot, qn_bridge_req **out, qn_error *err) {
    *out = NULL;
    if (!eng || !eng->submit) return qn_error_set(err, QN_ERR_UNSUPPORTED, "engine has no submit");
    qn_bridge_req *r = calloc(1, sizeof *r);
    if (!r) return qn_error_set(err, QN_ERR_NOMEM, "bridge: out of memory");
    r->core = b;
    r->eng = eng;
    r->fn = fn;
    r->user = user;
    r->slot = slot;
    pthread_mutex_lock(&b->mu);
    b->refs++;
    b->n_live++;
    pthread_mutex_unlock(&b->mu);

    qn_stream_sink sink = {.ctx = r, .on_event = sink_on_event};
    qn_status st = eng->submit(eng->ctx, req, &sink, &r->id, err);
    if (st != QN_OK) {
        free(r);
        pthread_mutex_lock(&b->mu);
        b->n_live--;
        core_unref_unlock(b);
        if (err && err->code == QN_OK) qn_error_set(err, st, "%s", qn_status_str(st));
        return st;
    }
    *out = r;
    return QN_OK;
}

void qn_bridge_detach(qn_bridge_req *r) {
    if (r) r->fn = NULL;
}

void qn_bridge_cancel(qn_bridge_req *r) {
    if (!r) return;
    if (!r->aborted && r->eng->abort) {
        r->aborted = true;
        r->eng->abort(r->eng->ctx, r->id);
    }
    r->fn = NULL;
}

uint64_t qn_bridge_req_id(const qn_bridge_req *r) { return r ? r->id : 0; }

size_t qn_bridge_n_live(const qn_bridge *b) { return b ? b->n_live : 0; }
