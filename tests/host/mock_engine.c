/* mock_engine.c — implementation of mock_engine.h (included by the server tests, not built alone). */
#include "mock_engine.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct mock_req {
    struct mock_req *next;
    uint64_t id;
    qn_stream_sink sink;
    int32_t n_prompt;
    int32_t max_tokens;
    int32_t produced;
    bool aborted;
    bool stop3, error, utf8;
    uint64_t due_ns;
} mock_req;

struct mock_engine {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* signalled on abort (for waiters) */
    bool quit;
    mock_req *reqs;
    uint64_t next_id;
    int prefill_ms, token_ms;
    int32_t max_model_len;
    bool busy;
    uint64_t aborted[1024];
    size_t n_aborted;
    size_t n_submitted;
    size_t n_live;
    int32_t last_max_tokens;
    uint64_t last_seed;
};

static uint64_t mk_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void mk_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* --- tokenizer: bytes <-> ids --- */

static qn_status mk_tokenize(void *ctx, const char *text, size_t len, bool add_special, bool parse_special,
                             int32_t **tokens, size_t *n_tokens, qn_error *err) {
    (void)ctx;
    (void)parse_special;
    (void)err;
    int32_t *t = malloc((len + 2) * sizeof(int32_t));
    if (!t) return QN_ERR_NOMEM;
    size_t n = 0;
    if (add_special) t[n++] = 1;
    for (size_t i = 0; i < len; i++) t[n++] = (int32_t)(unsigned char)text[i] + 3;
    *tokens = t;
    *n_tokens = n;
    return QN_OK;
}

static size_t mk_piece(int32_t tok, char *buf, size_t cap) {
    if (tok >= 3 && tok < 259) {
        buf[0] = (char)(tok - 3);
        return 1;
    }
    if (tok >= 1000 && tok < 2000) return (size_t)snprintf(buf, cap, "t%d ", tok - 1000);
    if (tok == 2000) {
        memcpy(buf, "\xc3\xa9", 2);
        return 2;
    }
    return 0;
}

static qn_status mk_detokenize(void *ctx, const int32_t *tokens, size_t n, bool skip_special, char **text, size_t *len,
                               qn_error *err) {
    (void)ctx;
    (void)skip_special;
    (void)err;
    char *o = malloc(n * 16 + 1);
    if (!o) return QN_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += mk_piece(tokens[i], o + k, 16);
    o[k] = '\0';
    *text = o;
    *len = k;
    return QN_OK;
}

/* "<|role|>\ncontent\n" per message; content is content_len bytes (U+0000 kept), as the real engine's template. */
static qn_status mk_template(void *ctx, const qn_chat_message *msgs, size_t n, bool add_gen, char **text,
                             size_t *text_len, qn_error *err) {
    (void)ctx;
    size_t need = 32;
    for (size_t i = 0; i < n; i++) {
        size_t cl = msgs[i].content_len ? msgs[i].content_len : strlen(msgs[i].content);
        need += strlen(msgs[i].role) + cl + 8;
    }
    char *o = malloc(need);
    if (!o) return qn_error_set(err, QN_ERR_NOMEM, "oom");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t cl = msgs[i].content_len ? msgs[i].content_len : strlen(msgs[i].content);
        k += (size_t)sprintf(o + k, "<|%s|>\n", msgs[i].role);
        memcpy(o + k, msgs[i].content, cl);
        k += cl;
        o[k++] = '\n';
    }
    if (add_gen) k += (size_t)sprintf(o + k, "<|assistant|>\n");
    o[k] = '\0';
    *text = o;
    *text_len = k;
    return QN_OK;
}

static int32_t mk_max_model_len(void *ctx) { return ((mock_engine *)ctx)->max_model_len; }
static const char *mk_model_name(void *ctx) {
    (void)ctx;
    return "mock-model";
}

static void mk_stats(void *ctx, qn_engine_stats *out) {
    mock_engine *m = ctx;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&m->mu);
    for (mock_req *r = m->reqs; r; r = r->next) {
        if (r->produced > 0) out->num_running++;
        else out->num_waiting++;
    }
    pthread_mutex_unlock(&m->mu);
    out->kv_blocks_total = 100;
    out->kv_blocks_free = 100 - (out->num_running + out->num_waiting);
    out->kv_usage = (double)(out->num_running + out->num_waiting) / 100.0;
    out->prefix_cache_queries = 10;
    out->prefix_cache_hits = 4;
    out->num_preemptions = 0;
}

/* --- submit / abort (loop thread) --- */

static bool has_marker(const int32_t *t, size_t n, const char *marker) {
    size_t ml = strlen(marker);
    for (size_t i = 0; i + ml <= n; i++) {
        size_t k = 0;
        while (k < ml && t[i + k] == (int32_t)(unsigned char)marker[k] + 3) k++;
        if (k == ml) return true;
    }
    return false;
}

static qn_status mk_submit(void *ctx, const qn_gen_request *req, const qn_stream_sink *sink, uint64_t *id,
                           qn_error *err) {
    mock_engine *m = ctx;
    int32_t *owned = NULL;
    const int32_t *toks = req->prompt_tokens;
    size_t n = req->n_prompt_tokens;
    if (!toks) {
        if (!req->prompt_text) return qn_error_set(err, QN_ERR_INVALID_ARG, "no prompt");
        mk_tokenize(ctx, req->prompt_text, strlen(req->prompt_text), true, true, &owned, &n, err);
        toks = owned;
    }
    pthread_mutex_lock(&m->mu);
    if (m->busy) {
        pthread_mutex_unlock(&m->mu);
        free(owned);
        return qn_error_set(err, QN_ERR_BUSY, "mock engine is busy");
    }
    mock_req *r = calloc(1, sizeof *r);
    r->id = ++m->next_id;
    r->sink = *sink;
    r->n_prompt = (int32_t)n;
    r->max_tokens = req->sampling.max_tokens > 0 ? req->sampling.max_tokens : m->max_model_len - (int32_t)n;
    r->stop3 = has_marker(toks, n, "[[stop3]]");
    r->error = has_marker(toks, n, "[[error]]");
    r->utf8 = has_marker(toks, n, "[[utf8]]");
    r->due_ns = mk_now_ns() + (uint64_t)m->prefill_ms * 1000000ull;
    r->next = m->reqs;
    m->reqs = r;
    m->n_submitted++;
    m->n_live++;
    m->last_max_tokens = req->sampling.max_tokens;
    m->last_seed = req->sampling.seed;
    *id = r->id;
    pthread_mutex_unlock(&m->mu);
    free(owned);
    return QN_OK;
}

static void mk_abort(void *ctx, uint64_t id) {
    mock_engine *m = ctx;
    pthread_mutex_lock(&m->mu);
    for (mock_req *r = m->reqs; r; r = r->next)
        if (r->id == id) r->aborted = true;
    if (m->n_aborted < sizeof m->aborted / sizeof m->aborted[0]) m->aborted[m->n_aborted++] = id;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

/* --- engine thread --- */

static void emit_final(mock_req *r, qn_finish_reason why, const char *stop_str, const char *msg) {
    qn_gen_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = QN_GEN_EVENT_FINAL;
    ev.text = "";
    ev.finish_reason = why;
    ev.stop_str = stop_str;
    ev.stop_token = -1;
    ev.usage.prompt_tokens = r->n_prompt;
    ev.usage.completion_tokens = r->produced;
    ev.usage.cached_tokens = r->n_prompt / 2;
    ev.error_code = why == QN_FINISH_ERROR ? QN_ERR_INTERNAL : QN_OK;
    ev.error_msg = msg;
    r->sink.on_event(r->sink.ctx, &ev);
}

static void emit_token(mock_req *r) {
    char buf[32];
    int32_t tok = r->utf8 ? 2000 : 1000 + r->produced;
    size_t n = mk_piece(tok, buf, sizeof buf);
    qn_token_logprob top[2] = {{tok, -0.25f, buf, n}, {7, -1.5f, "\xc3", 1}}; /* a partial code point piece */
    qn_gen_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = QN_GEN_EVENT_TOKEN;
    ev.token = tok;
    ev.text = buf;
    ev.text_len = n;
    ev.has_logprobs = true;
    ev.sampled = top[0];
    ev.top = top;
    ev.n_top = 2;
    r->produced++;
    r->sink.on_event(r->sink.ctx, &ev);
}

/* Advances one request; returns true when it finished (and must be unlinked). */
static bool step_req(mock_engine *m, mock_req *r, uint64_t now) {
    if (r->aborted) {
        emit_final(r, QN_FINISH_ABORT, NULL, NULL);
        return true;
    }
    if (now < r->due_ns) return false;
    if (r->error && r->produced >= 2) {
        emit_final(r, QN_FINISH_ERROR, NULL, "mock engine failure");
        return true;
    }
    if (r->stop3 && r->produced >= 3) {
        emit_final(r, QN_FINISH_STOP, "END", NULL);
        return true;
    }
    if (r->produced >= r->max_tokens) {
        emit_final(r, QN_FINISH_LENGTH, NULL, NULL);
        return true;
    }
    emit_token(r);
    r->due_ns = now + (uint64_t)m->token_ms * 1000000ull;
    return false;
}

static void *mk_thread(void *arg) {
    mock_engine *m = arg;
    for (;;) {
        pthread_mutex_lock(&m->mu);
        if (m->quit) {
            pthread_mutex_unlock(&m->mu);
            break;
        }
        uint64_t now = mk_now_ns();
        mock_req **pp = &m->reqs;
        while (*pp) { /* the sink is called under mu: the bridge never calls back into the engine */
            mock_req *r = *pp;
            if (step_req(m, r, now)) {
                *pp = r->next;
                m->n_live--;
                free(r);
            } else {
                pp = &r->next;
            }
        }
        pthread_mutex_unlock(&m->mu);
        mk_sleep_ms(1);
    }
    return NULL;
}

mock_engine *mock_engine_create(const mock_engine_config *cfg) {
    mock_engine *m = calloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    m->prefill_ms = cfg->prefill_ms;
    m->token_ms = cfg->token_ms;
    m->max_model_len = cfg->max_model_len;
    pthread_create(&m->th, NULL, mk_thread, m);
    return m;
}

void mock_engine_destroy(mock_engine *m) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->quit = true;
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->th, NULL);
    while (m->reqs) { /* FINAL for every request still running (the server may be gone: the bridge drops it) */
        mock_req *r = m->reqs;
        m->reqs = r->next;
        emit_final(r, QN_FINISH_ABORT, NULL, NULL);
        free(r);
    }
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void mock_engine_iface(mock_engine *m, qn_engine_iface *out) {
    memset(out, 0, sizeof *out);
    out->ctx = m;
    out->submit = mk_submit;
    out->abort = mk_abort;
    out->tokenize = mk_tokenize;
    out->detokenize = mk_detokenize;
    out->apply_chat_template = mk_template;
    out->max_model_len = mk_max_model_len;
    out->model_name = mk_model_name;
    out->stats = mk_stats;
}

void mock_engine_set_delays(mock_engine *m, int prefill_ms, int token_ms) {
    pthread_mutex_lock(&m->mu);
    m->prefill_ms = prefill_ms;
    m->token_ms = token_ms;
    pthread_mutex_unlock(&m->mu);
}

void mock_engine_set_busy(mock_engine *m, bool busy) {
    pthread_mutex_lock(&m->mu);
    m->busy = busy;
    pthread_mutex_unlock(&m->mu);
}

#define MK_GET(type, expr)                                                                                            \
    do {                                                                                                               \
        pthread_mutex_lock(&m->mu);                                                                                    \
        type v_ = (expr);                                                                                              \
        pthread_mutex_unlock(&m->mu);                                                                                  \
        return v_;                                                                                                     \
    } while (0)

uint64_t mock_engine_last_id(mock_engine *m) { MK_GET(uint64_t, m->next_id); }
size_t mock_engine_n_submitted(mock_engine *m) { MK_GET(size_t, m->n_submitted); }
size_t mock_engine_n_aborted(mock_engine *m) { MK_GET(size_t, m->n_aborted); }
size_t mock_engine_n_live(mock_engine *m) { MK_GET(size_t, m->n_live); }
int32_t mock_engine_last_max_tokens(mock_engine *m) { MK_GET(int32_t, m->last_max_tokens); }
uint64_t mock_engine_last_seed(mock_engine *m) { MK_GET(uint64_t, m->last_seed); }

static bool was_aborted_locked(mock_engine *m, uint64_t id) {
    for (size_t i = 0; i < m->n_aborted; i++)
        if (m->aborted[i] == id) return true;
    return false;
}

bool mock_engine_was_aborted(mock_engine *m, uint64_t id) { MK_GET(bool, was_aborted_locked(m, id)); }

bool mock_engine_wait_abort(mock_engine *m, uint64_t id, int timeout_ms) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&m->mu);
    bool ok = was_aborted_locked(m, id);
    while (!ok) {
        if (pthread_cond_timedwait(&m->cv, &m->mu, &dl) != 0) {
            ok = was_aborted_locked(m, id);
            break;
        }
        ok = was_aborted_locked(m, id);
    }
    pthread_mutex_unlock(&m->mu);
    return ok;
}
