/* job.c — one generation request from admission to the last byte: prompt building (chat template,
 * tokenization), context and queue checks, n engine requests per prompt through the bridge, and the
 * reply in the shape of its API (OpenAI SSE / JSON, Ollama NDJSON / JSON).
 * Disconnects: a stream's reply starts at admission, so evhttp reports a close through the connection's
 * close callback; a periodic MSG_PEEK probe covers non-stream requests (evhttp does not read while a
 * reply is pending, style.md §2.4) and streams alike. Either way the engine gets abort(id) at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "host/routes.h"
#include "host/sse.h"

typedef struct qn_job_choice {
    qn_job *job;
    qn_bridge_req *breq;     /* NULL once FINAL arrived or the request was cancelled */
    int index;               /* choice index in the response */
    size_t prompt_idx;
    int32_t n_prompt;        /* host-side prompt length (0 when the engine tokenizes) */
    bool started;            /* first token seen (counted out of n_pending) */
    bool finished;
    bool role_sent;          /* chat stream: the role delta went out */
    uint64_t t_first_ns, t_last_ns;
    int32_t n_tokens;
    char *text;              /* non-stream accumulation */
    size_t len, cap;
    json_t *logprobs;        /* chat: {"content":[...]}; completions: the 4-array object */
    int64_t text_offset;     /* completions logprobs */
    qn_finish_reason finish;
    char *stop_str;
    int32_t stop_token;
    qn_gen_usage usage;
} qn_job_choice;

struct qn_job {
    qn_job *prev, *next;           /* server's live list */
    qn_server *srv;
    struct evhttp_request *req;    /* NULL once the reply is complete or the request is gone */
    struct evhttp_connection *evcon; /* close hook + liveness probe; NULL after a close */
    qn_api_request api;
    char id[176];                  /* "chatcmpl-<rid>" / "cmpl-<rid>" */
    char model[256];
    int64_t created;
    uint64_t arrival_ns;
    bool stream;
    qn_sse sse;
    struct event *tick;
    qn_job_choice *choices;        /* [n_choices] */
    size_t n_choices, n_finished;
    size_t n_prompts;
};

/* ------------------------------------------------------------------------------------------------ */
/* helpers                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

static bool is_ollama(const qn_job *j) {
    return j->api.kind == QN_API_OLLAMA_GENERATE || j->api.kind == QN_API_OLLAMA_CHAT;
}

static double secs(uint64_t a, uint64_t b) { return b > a ? (double)(b - a) * 1e-9 : 0.0; }

static int text_append(qn_job_choice *c, const char *s, size_t n) {
    if (!n) return 0;
    if (c->len + n + 1 > c->cap) {
        size_t nc = c->cap ? c->cap : 256;
        while (nc < c->len + n + 1) nc *= 2;
        char *t = realloc(c->text, nc);
        if (!t) return -1;
        c->text = t;
        c->cap = nc;
    }
    memcpy(c->text + c->len, s, n);
    c->len += n;
    c->text[c->len] = '\0';
    return 0;
}

static qn_api_meta job_meta(const qn_job *j) {
    qn_api_meta m = {.id = j->id, .model = j->model, .created = j->created};
    return m;
}

static void send_json(qn_job *j, json_t *o) {
    size_t len = 0;
    char *s = qn_api_dump(o, &len);
    json_decref(o);
    if (s) qn_sse_send(&j->sse, s, len);
    free(s);
}

/* Usage over the whole job: prompt tokens once per prompt (from its first choice), completion summed. */
static json_t *job_usage(const qn_job *j) {
    int64_t prompt = 0, completion = 0, cached = 0;
    for (size_t i = 0; i < j->n_choices; i++) {
        const qn_job_choice *c = &j->choices[i];
        int32_t ct = c->finished ? c->usage.completion_tokens : c->n_tokens;
        completion += ct > 0 ? ct : 0;
        if (i % (j->n_choices / j->n_prompts) == 0) {
            int32_t pt = c->finished && c->usage.prompt_tokens > 0 ? c->usage.prompt_tokens : c->n_prompt;
            prompt += pt;
            cached += c->finished ? c->usage.cached_tokens : 0;
        }
    }
    return qn_api_usage_json(prompt, completion, cached);
}

/* ------------------------------------------------------------------------------------------------ */
/* lifecycle                                                                                         */
/* ------------------------------------------------------------------------------------------------ */

static void job_unlink(qn_job *j) {
    qn_server *s = j->srv;
    if (j->prev) j->prev->next = j->next;
    else if (s->jobs == j) s->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    j->prev = j->next = NULL;
}

/* Cancels every unfinished engine request (abort + detach). Counts them as aborted in the metrics. */
static void job_cancel_all(qn_job *j) {
    uint64_t now = qn_now_ns();
    for (size_t i = 0; i < j->n_choices; i++) {
        qn_job_choice *c = &j->choices[i];
        if (c->finished || !c->breq) continue;
        qn_bridge_cancel(c->breq);
        c->breq = NULL;
        if (!c->started) j->srv->n_pending--;
        c->started = true;
        c->finished = true;
        c->finish = QN_FINISH_ABORT;
        j->n_finished++;
        qn_metrics_request_finished(j->srv->metrics, QN_FINISH_ABORT, c->n_prompt, c->n_tokens, secs(j->arrival_ns, now));
    }
}

static void job_free(qn_job *j) {
    job_cancel_all(j);
    if (j->evcon) evhttp_connection_set_closecb(j->evcon, NULL, NULL);
    job_unlink(j);
    if (j->tick) event_free(j->tick);
    for (size_t i = 0; i < j->n_choices; i++) {
        free(j->choices[i].text);
        free(j->choices[i].stop_str);
        json_decref(j->choices[i].logprobs);
    }
    free(j->choices);
    qn_api_request_free(&j->api);
    free(j);
}

/* The HTTP side is done: the reply (if any) has been handed to evhttp. */
static void job_finish(qn_job *j) {
    if (j->evcon) {
        evhttp_connection_set_closecb(j->evcon, NULL, NULL);
        j->evcon = NULL;
    }
    j->req = NULL;
    job_free(j);
}

/* Ends the job with an error: an error event + [DONE] (or an NDJSON error line) when the stream has
 * started, an error reply otherwise. */
static void job_fail(qn_job *j, const qn_api_error *e) {
    job_cancel_all(j);
    if (j->stream && j->sse.started) {
        json_t *o;
        if (is_ollama(j)) {
            o = json_object();
            json_object_set_new(o, "error", qn_api_string(e->message, strlen(e->message)));
        } else {
            o = qn_api_error_json(e);
        }
        send_json(j, o);
        qn_sse_send_done(&j->sse);
        if (j->evcon) evhttp_connection_set_closecb(j->evcon, NULL, NULL);
        qn_sse_end(&j->sse);
    } else if (j->req) {
        if (j->evcon) evhttp_connection_set_closecb(j->evcon, NULL, NULL);
        qn_http h = {.srv = j->srv, .req = j->req};
        if (is_ollama(j)) qn_http_reply_ollama_error(&h, e->status, e->message);
        else qn_http_reply_error(&h, e);
    }
    job_finish(j);
}

/* The client went away: abort in the engine, release the request, never write to it again.
 * from_closecb: evhttp is freeing the connection right now. */
static void job_client_gone(qn_job *j, bool from_closecb) {
    job_cancel_all(j);
    struct evhttp_request *req = j->req;
    struct evhttp_connection *evcon = j->evcon;
    j->evcon = NULL;
    j->req = NULL;
    j->sse.req = NULL;
    if (evcon) evhttp_connection_set_closecb(evcon, NULL, NULL);
    if (req) {
        if (from_closecb) {
            /* A request evhttp detached from its dying connection is ours to free (reply_end does it);
             * one still attached is freed with the connection. */
            if (!evhttp_request_get_connection(req)) evhttp_send_reply_end(req);
        } else if (j->stream) {
            evhttp_send_reply_end(req); /* the write fails, evhttp frees connection and request */
        } else {
            evhttp_send_reply(req, 499, "Client Closed Request", NULL);
        }
    }
    job_free(j);
}

static void on_close(struct evhttp_connection *evcon, void *arg) {
    (void)evcon;
    job_client_gone(arg, true);
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    qn_job *j = arg;
    qn_server *s = j->srv;
    if (s->cfg.liveness_interval_ms > 0 && j->evcon && qn_conn_peer_closed(j->evcon)) {
        job_client_gone(j, false);
        return;
    }
    if (j->stream && j->sse.started && s->cfg.sse_ping_interval_ms > 0 &&
        qn_now_ns() - j->sse.last_write_ns >= (uint64_t)s->cfg.sse_ping_interval_ms * 1000000ull)
        qn_sse_ping(&j->sse);
}

/* ------------------------------------------------------------------------------------------------ */
/* replies                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

static json_t *running_usage(const qn_job *j, const qn_job_choice *c) {
    if (!j->api.continuous_usage) return NULL;
    int32_t pt = c->usage.prompt_tokens > 0 ? c->usage.prompt_tokens : c->n_prompt;
    int32_t ct = c->finished ? c->usage.completion_tokens : c->n_tokens;
    return qn_api_usage_json(pt, ct, c->usage.cached_tokens);
}

static void ollama_final(const qn_job *j, qn_api_ollama_final *f) {
    const qn_job_choice *c = &j->choices[0];
    uint64_t now = qn_now_ns();
    memset(f, 0, sizeof *f);
    f->done_reason = c->finish == QN_FINISH_LENGTH ? "length" : "stop";
    f->total_duration_ns = now - j->arrival_ns;
    uint64_t first = c->t_first_ns ? c->t_first_ns : now;
    uint64_t last = c->t_last_ns ? c->t_last_ns : first;
    f->prompt_eval_duration_ns = first > j->arrival_ns ? first - j->arrival_ns : 0;
    f->eval_duration_ns = last > first ? last - first : 0;
    f->prompt_eval_count = c->usage.prompt_tokens > 0 ? c->usage.prompt_tokens : c->n_prompt;
    f->eval_count = c->usage.completion_tokens;
}

/* Non-stream: every choice finished -> one response. */
static void job_reply_full(qn_job *j) {
    json_t *body;
    if (is_ollama(j)) {
        char at[48];
        qn_api_rfc3339_now(at, sizeof at);
        qn_api_ollama_final f;
        ollama_final(j, &f);
        const qn_job_choice *c = &j->choices[0];
        body = qn_api_ollama_chunk(j->model, at, j->api.kind == QN_API_OLLAMA_CHAT, c->text, c->len, &f);
    } else {
        json_t *choices = json_array();
        for (size_t i = 0; i < j->n_choices; i++) {
            qn_job_choice *c = &j->choices[i];
            json_t *lp = c->logprobs;
            c->logprobs = NULL;
            json_t *sr = qn_api_stop_reason_json(c->stop_str, c->stop_token);
            const char *fr = qn_api_finish_str(c->finish);
            json_array_append_new(choices, j->api.kind == QN_API_CHAT
                                               ? qn_api_chat_choice(c->index, c->text, c->len, lp, fr, sr)
                                               : qn_api_completion_choice(c->index, c->text, c->len, lp, fr, sr));
        }
        body = qn_api_response(&(qn_api_meta){.id = j->id, .model = j->model, .created = j->created}, j->api.kind,
                               choices, job_usage(j));
    }
    if (j->evcon) evhttp_connection_set_closecb(j->evcon, NULL, NULL);
    qn_http h = {.srv = j->srv, .req = j->req};
    qn_http_reply_json(&h, 200, body);
    job_finish(j);
}

/* Stream: every choice finished -> usage chunk, [DONE] / Ollama's done line, end. */
static void job_end_stream(qn_job *j) {
    qn_api_meta m = job_meta(j);
    if (is_ollama(j)) {
        char at[48];
        qn_api_rfc3339_now(at, sizeof at);
        qn_api_ollama_final f;
        ollama_final(j, &f);
        send_json(j, qn_api_ollama_chunk(j->model, at, j->api.kind == QN_API_OLLAMA_CHAT, "", 0, &f));
    } else {
        if (j->api.include_usage) send_json(j, qn_api_usage_chunk(&m, j->api.kind, job_usage(j)));
        qn_sse_send_done(&j->sse);
    }
    if (j->evcon) evhttp_connection_set_closecb(j->evcon, NULL, NULL);
    qn_sse_end(&j->sse);
    job_finish(j);
}

static void stream_role(qn_job *j, qn_job_choice *c) {
    if (j->api.kind != QN_API_CHAT || c->role_sent) return;
    c->role_sent = true;
    qn_api_meta m = job_meta(j);
    send_json(j, qn_api_chat_chunk(&m, c->index, "assistant", "", 0, NULL, NULL, NULL, running_usage(j, c)));
}

static void stream_delta(qn_job *j, qn_job_choice *c, const char *text, size_t len, json_t *lp,
                         const char *finish, json_t *stop_reason) {
    qn_api_meta m = job_meta(j);
    if (is_ollama(j)) {
        json_decref(lp);
        json_decref(stop_reason);
        if (!len) return;
        char at[48];
        qn_api_rfc3339_now(at, sizeof at);
        send_json(j, qn_api_ollama_chunk(j->model, at, j->api.kind == QN_API_OLLAMA_CHAT, text, len, NULL));
        return;
    }
    if (!len && !lp && !finish) return; /* nothing to say (held-back text) */
    json_t *usage = running_usage(j, c);
    if (j->api.kind == QN_API_CHAT)
        send_json(j, qn_api_chat_chunk(&m, c->index, NULL, len || !finish ? text : NULL, len, lp, finish, stop_reason, usage));
    else
        send_json(j, qn_api_completion_chunk(&m, c->index, text, len, lp, finish, stop_reason, usage));
}

/* Logprobs of one token in the API's shape; NULL when not requested. For a stream: a fresh per-chunk
 * object; otherwise appended to c->logprobs and NULL is returned. */
static json_t *token_logprobs(qn_job *j, qn_job_choice *c, const qn_gen_event *ev, size_t text_len) {
    if (!ev->has_logprobs || j->api.sampling.logprobs < 0 || is_ollama(j)) return NULL;
    if (j->api.kind == QN_API_CHAT) {
        json_t *entry = qn_api_chat_logprob_entry(&ev->sampled, ev->top, ev->n_top);
        if (j->stream) {
            json_t *o = json_object();
            json_t *a = json_array();
            json_array_append_new(a, entry);
            json_object_set_new(o, "content", a);
            return o;
        }
        if (!c->logprobs) {
            c->logprobs = json_object();
            json_object_set_new(c->logprobs, "content", json_array());
        }
        json_array_append_new(json_object_get(c->logprobs, "content"), entry);
        return NULL;
    }
    json_t *target = j->stream ? qn_api_completion_logprobs_new() : c->logprobs;
    if (!target) target = c->logprobs = qn_api_completion_logprobs_new();
    qn_api_completion_logprobs_append(target, &ev->sampled, ev->top, ev->n_top, c->text_offset);
    c->text_offset += (int64_t)text_len;
    return j->stream ? target : NULL;
}

/* ------------------------------------------------------------------------------------------------ */
/* engine events (loop thread, via the bridge)                                                       */
/* ------------------------------------------------------------------------------------------------ */

static void on_token(qn_job *j, qn_job_choice *c, const qn_gen_event *ev) {
    qn_server *s = j->srv;
    c->n_tokens++;
    if (!c->started) {
        c->started = true;
        s->n_pending--;
        c->t_first_ns = ev->t_ns;
        qn_metrics_observe_ttft(s->metrics, secs(j->arrival_ns, ev->t_ns));
    } else {
        qn_metrics_observe_itl(s->metrics, secs(c->t_last_ns, ev->t_ns));
    }
    c->t_last_ns = ev->t_ns;
    json_t *lp = token_logprobs(j, c, ev, ev->text_len);
    if (j->stream) {
        stream_role(j, c); /* after prefill: the first token exists */
        stream_delta(j, c, ev->text, ev->text_len, lp, NULL, NULL);
    } else {
        text_append(c, ev->text, ev->text_len);
    }
}

static void on_final(qn_job *j, qn_job_choice *c, const qn_gen_event *ev) {
    qn_server *s = j->srv;
    c->breq = NULL; /* the bridge frees the handle after this callback */
    if (!c->started) {
        c->started = true;
        s->n_pending--;
    }
    if (!c->t_first_ns) c->t_first_ns = ev->t_ns;
    if (!c->t_last_ns) c->t_last_ns = ev->t_ns;
    c->finished = true;
    j->n_finished++;
    c->finish = ev->finish_reason == QN_FINISH_NONE ? QN_FINISH_STOP : ev->finish_reason;
    c->usage = ev->usage;
    if (c->usage.completion_tokens <= 0) c->usage.completion_tokens = c->n_tokens;
    if (c->usage.prompt_tokens <= 0) c->usage.prompt_tokens = c->n_prompt;
    c->stop_token = ev->stop_token;
    if (ev->stop_str) c->stop_str = strdup(ev->stop_str);
    qn_metrics_request_finished(s->metrics, c->finish, c->usage.prompt_tokens, c->usage.completion_tokens,
                                secs(j->arrival_ns, ev->t_ns));

    if (c->finish == QN_FINISH_ERROR || c->finish == QN_FINISH_ABORT) {
        qn_api_error e;
        if (c->finish == QN_FINISH_ERROR)
            qn_api_error_from_status(&e, ev->error_code == QN_OK ? QN_ERR_INTERNAL : ev->error_code,
                                     ev->error_msg ? ev->error_msg : "generation failed");
        else
            qn_api_error_set(&e, 503, QN_API_ERR_UNAVAILABLE, NULL, "request aborted by the engine");
        job_fail(j, &e);
        return;
    }
    if (j->stream) {
        stream_role(j, c);
        if (is_ollama(j)) {
            stream_delta(j, c, ev->text, ev->text_len, NULL, NULL, NULL);
        } else {
            json_t *sr = qn_api_stop_reason_json(c->stop_str, c->stop_token);
            stream_delta(j, c, ev->text, ev->text_len, NULL, qn_api_finish_str(c->finish), sr);
        }
        if (j->n_finished == j->n_choices) job_end_stream(j);
    } else {
        text_append(c, ev->text, ev->text_len);
        if (j->n_finished == j->n_choices) job_reply_full(j);
    }
}

static void on_event(void *user, size_t slot, const qn_gen_event *ev) {
    qn_job *j = user;
    if (slot >= j->n_choices) return;
    qn_job_choice *c = &j->choices[slot];
    if (c->finished) return;
    if (ev->kind == QN_GEN_EVENT_TOKEN) on_token(j, c, ev);
    else if (ev->kind == QN_GEN_EVENT_FINAL) on_final(j, c, ev);
}

/* ------------------------------------------------------------------------------------------------ */
/* admission                                                                                         */
/* ------------------------------------------------------------------------------------------------ */

typedef struct qn_prompt_buf {
    int32_t *tokens; /* owned when owned == true */
    size_t n;
    bool owned;
    const char *text; /* engine-side tokenization fallback */
} qn_prompt_buf;

static void prompts_free(qn_prompt_buf *p, size_t n) {
    for (size_t i = 0; p && i < n; i++)
        if (p[i].owned) free(p[i].tokens);
    free(p);
}

/* Builds the token list of every prompt; -1 with e filled on failure. chat_text receives the templated
 * text when the engine must tokenize it (malloc'd). */
static int build_prompts(qn_server *s, qn_api_request *api, qn_prompt_buf **out, size_t *n_out, char **chat_text,
                         qn_api_error *e) {
    qn_error qe;
    qn_error_clear(&qe);
    const qn_engine_iface *eng = &s->eng;
    size_t n = api->n_messages ? 1 : api->n_prompts;
    qn_prompt_buf *p = calloc(n ? n : 1, sizeof *p);
    if (!p) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    *out = p;
    *n_out = n;
    if (api->n_messages) {
        if (!eng->apply_chat_template)
            return qn_api_error_set(e, 501, QN_API_ERR_NOT_SUPPORTED, "messages", "the engine has no chat template");
        char *text = NULL;
        size_t text_len = 0;
        qn_status st = eng->apply_chat_template(eng->ctx, api->messages, api->n_messages, api->add_generation_prompt,
                                                &text, &text_len, &qe);
        if (st != QN_OK || !text) {
            free(text);
            qn_api_error_from_status(e, st == QN_OK ? QN_ERR_INTERNAL : st, qe.msg[0] ? qe.msg : "chat template failed");
            if (e->status == 400) snprintf(e->param, sizeof e->param, "messages");
            return -1;
        }
        *chat_text = text;
        if (!eng->tokenize) {
            p[0].text = text;
            return 0;
        }
        st = eng->tokenize(eng->ctx, text, text_len, false, true, &p[0].tokens, &p[0].n, &qe);
        p[0].owned = true;
        if (st != QN_OK) {
            qn_api_error_from_status(e, st, qe.msg[0] ? qe.msg : "tokenization failed");
            return -1;
        }
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        qn_api_prompt *ap = &api->prompts[i];
        if (ap->tokens) {
            p[i].tokens = ap->tokens;
            p[i].n = ap->n_tokens;
            continue;
        }
        if (!eng->tokenize) {
            p[i].text = ap->text;
            continue;
        }
        qn_error_clear(&qe);
        qn_status st = eng->tokenize(eng->ctx, ap->text, ap->text_len, true, true, &p[i].tokens, &p[i].n, &qe);
        p[i].owned = true;
        if (st != QN_OK) {
            qn_api_error_from_status(e, st, qe.msg[0] ? qe.msg : "tokenization failed");
            return -1;
        }
    }
    return 0;
}

/* Context check and default max_tokens for one prompt of n tokens (n == 0 and text: engine-side). */
static int plan_max_tokens(qn_server *s, const qn_api_request *api, const qn_prompt_buf *p, int32_t *max_tokens,
                           qn_api_error *e) {
    const char *param = api->n_messages ? "messages" : "prompt";
    int32_t L = qn_server_max_model_len(s);
    bool known = p->text == NULL;
    if (known && p->n == 0) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "the prompt is empty");
    int64_t P = (int64_t)p->n;
    if (api->max_tokens_set) {
        *max_tokens = api->sampling.max_tokens;
    } else if (api->kind == QN_API_COMPLETION) {
        *max_tokens = 16; /* OpenAI / vLLM default for completions */
        if (known && L > 0 && P < L && P + 16 > L) *max_tokens = (int32_t)(L - P);
    } else {
        *max_tokens = known && L > 0 ? (int32_t)(L - P) : 0; /* the rest of the context */
    }
    if (!known || L <= 0) return 0;
    int64_t want = P + (api->max_tokens_set ? (int64_t)*max_tokens : 1);
    if (P >= L || want > L) {
        qn_api_error_set(e, 400, QN_API_ERR_CONTEXT, param,
                         "This model's maximum context length is %d tokens. However, you requested %lld tokens (%lld in "
                         "the %s, %lld in the completion). Please reduce the length of the %s or completion.",
                         (int)L, (long long)(api->max_tokens_set ? want : P), (long long)P, param,
                         (long long)(api->max_tokens_set ? *max_tokens : 0), param);
        e->n_prompt_tokens = (int32_t)P;
        e->n_ctx = L;
        return -1;
    }
    return 0;
}

static void reply_api_error(qn_http *h, const qn_api_request *api, const qn_api_error *e) {
    if (api->kind == QN_API_OLLAMA_GENERATE || api->kind == QN_API_OLLAMA_CHAT)
        qn_http_reply_ollama_error(h, e->status, e->message);
    else
        qn_http_reply_error(h, e);
}

void qn_job_start(qn_http *h, qn_api_request *api_in) {
    qn_server *s = h->srv;
    qn_api_error e;
    qn_prompt_buf *prompts = NULL;
    size_t n_prompts = 0;
    char *chat_text = NULL;

    qn_job *j = calloc(1, sizeof *j);
    if (!j) {
        qn_api_error_set(&e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
        reply_api_error(h, api_in, &e);
        qn_api_request_free(api_in);
        return;
    }
    j->api = *api_in;
    memset(api_in, 0, sizeof *api_in);
    j->srv = s;
    j->arrival_ns = h->arrival_ns;
    j->created = (int64_t)time(NULL);
    j->stream = j->api.stream;
    snprintf(j->model, sizeof j->model, "%s", qn_server_model_name(s));
    snprintf(j->id, sizeof j->id, "%s%s", j->api.kind == QN_API_CHAT ? "chatcmpl-" : j->api.kind == QN_API_COMPLETION ? "cmpl-" : "",
             h->request_id);

    if (build_prompts(s, &j->api, &prompts, &n_prompts, &chat_text, &e) < 0) goto fail;
    if (n_prompts == 0) {
        qn_api_error_set(&e, 400, QN_API_ERR_INVALID, "prompt", "no prompt");
        goto fail;
    }
    int32_t *max_tok = calloc(n_prompts ? n_prompts : 1, sizeof(int32_t));
    if (!max_tok) {
        qn_api_error_set(&e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n_prompts; i++) {
        if (plan_max_tokens(s, &j->api, &prompts[i], &max_tok[i], &e) < 0) {
            free(max_tok);
            goto fail;
        }
    }
    size_t n_per = (size_t)(j->api.n > 0 ? j->api.n : 1);
    size_t n_sub = n_prompts * n_per;
    if (s->cfg.max_waiting > 0 && s->n_pending + (int64_t)n_sub > s->cfg.max_waiting) {
        free(max_tok);
        qn_api_error_set(&e, 429, QN_API_ERR_RATE, NULL, "The server is busy (%lld requests waiting); retry later",
                         (long long)s->n_pending);
        goto fail;
    }
    j->choices = calloc(n_sub ? n_sub : 1, sizeof *j->choices);
    if (!j->choices) {
        free(max_tok);
        qn_api_error_set(&e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
        goto fail;
    }
    j->n_choices = n_sub;
    j->n_prompts = n_prompts;

    /* Submit every (prompt, choice); on the first failure cancel what went out and answer the error. */
    for (size_t pi = 0; pi < n_prompts; pi++) {
        for (size_t ci = 0; ci < n_per; ci++) {
            size_t k = pi * n_per + ci;
            qn_job_choice *c = &j->choices[k];
            c->job = j;
            c->index = (int)k;
            c->prompt_idx = pi;
            c->n_prompt = (int32_t)prompts[pi].n;
            c->stop_token = -1;
            char rid[200];
            if (n_sub > 1) snprintf(rid, sizeof rid, "%s-%zu", j->id[0] ? j->id : h->request_id, k);
            else snprintf(rid, sizeof rid, "%s", j->id[0] ? j->id : h->request_id);
            qn_gen_request gr;
            memset(&gr, 0, sizeof gr);
            gr.request_id = rid;
            gr.prompt_tokens = prompts[pi].text ? NULL : prompts[pi].tokens;
            gr.n_prompt_tokens = prompts[pi].text ? 0 : prompts[pi].n;
            gr.prompt_text = prompts[pi].text;
            gr.sampling = j->api.sampling;
            gr.sampling.max_tokens = max_tok[pi];
            if (gr.sampling.has_seed) gr.sampling.seed += ci; /* n branches must differ, reproducibly */
            gr.arrival_ns = j->arrival_ns;
            qn_error qe;
            qn_error_clear(&qe);
            qn_status st = qn_bridge_submit(s->bridge, &s->eng, &gr, on_event, j, k, &c->breq, &qe);
            if (st != QN_OK) {
                free(max_tok);
                job_cancel_all(j);
                qn_api_error_from_status(&e, st, qe.msg);
                goto fail;
            }
            s->n_pending++;
        }
    }
    free(max_tok);
    prompts_free(prompts, n_prompts);
    prompts = NULL;
    free(chat_text);
    chat_text = NULL;

    /* Admitted: link, watch the connection, start the stream. */
    j->req = h->req;
    j->evcon = evhttp_request_get_connection(h->req);
    j->next = s->jobs;
    if (s->jobs) s->jobs->prev = j;
    s->jobs = j;
    if (j->evcon) evhttp_connection_set_closecb(j->evcon, on_close, j);
    int tick_ms = s->cfg.liveness_interval_ms > 0 ? s->cfg.liveness_interval_ms : s->cfg.sse_ping_interval_ms;
    if (tick_ms > 0) {
        j->tick = event_new(s->base, -1, EV_PERSIST, on_tick, j);
        if (j->tick) {
            struct timeval tv = {tick_ms / 1000, (tick_ms % 1000) * 1000};
            event_add(j->tick, &tv);
        }
    }
    if (j->stream) qn_sse_start(&j->sse, j->req, is_ollama(j) ? QN_STREAM_NDJSON : QN_STREAM_SSE);
    return;

fail:
    prompts_free(prompts, n_prompts);
    free(chat_text);
    reply_api_error(h, &j->api, &e);
    job_free(j); /* req untouched: the reply above completed it */
}

/* ------------------------------------------------------------------------------------------------ */
/* server-wide                                                                                       */
/* ------------------------------------------------------------------------------------------------ */

void qn_jobs_shutdown(qn_server *s, const char *why) {
    qn_api_error e;
    qn_api_error_set(&e, 503, QN_API_ERR_UNAVAILABLE, NULL, "%s", why);
    while (s->jobs) job_fail(s->jobs, &e);
}

void qn_jobs_forget_all(qn_server *s) {
    while (s->jobs) {
        qn_job *j = s->jobs;
        j->req = NULL;
        j->sse.req = NULL;
        job_free(j); /* clears the close hook, cancels engine requests */
    }
}
