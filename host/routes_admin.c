/* routes_admin.c — GET /health (/v1/health), GET /metrics, POST /tokenize, POST /detokenize, GET /version.
 * /health is public and answers 503 until the engine is ready (readiness, not liveness). /tokenize accepts
 * both the llama-server shape ({"content", add_special, parse_special, with_pieces}) and vLLM's
 * ({"prompt"|"messages", add_special_tokens, return_token_strs}) and returns the union
 * ({"tokens", "count", "max_model_len"}). */
#include <stdlib.h>
#include <string.h>

#include "host/routes.h"

void qn_route_health(qn_http *h) {
    if (!qn_server_is_ready(h->srv)) {
        qn_api_error e;
        qn_api_error_set(&e, 503, QN_API_ERR_UNAVAILABLE, NULL,
                         h->srv->stopping || atomic_load(&h->srv->stop_requested) ? "Shutting down" : "Loading model");
        qn_http_reply_error(h, &e);
        return;
    }
    qn_http_reply_json(h, 200, json_pack("{s:s}", "status", "ok"));
}

void qn_route_version(qn_http *h) { qn_http_reply_json(h, 200, json_pack("{s:s}", "version", "0.1.0")); }

void qn_route_metrics(qn_http *h) {
    qn_server *s = h->srv;
    qn_engine_stats st;
    memset(&st, 0, sizeof st);
    bool have = s->eng.stats != NULL && qn_server_is_ready(s); /* engine gauges once it is up */
    if (have) s->eng.stats(s->eng.ctx, &st);
    size_t len = 0;
    char *text = qn_metrics_render(s->metrics, have ? &st : NULL, &len);
    if (!text) {
        qn_api_error e;
        qn_api_error_set(&e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
        qn_http_reply_error(h, &e);
        return;
    }
    qn_http_reply_text(h, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static void not_supported(qn_http *h, const char *what) {
    qn_api_error e;
    qn_api_error_set(&e, 501, QN_API_ERR_NOT_SUPPORTED, NULL, "the engine does not support %s", what);
    qn_http_reply_error(h, &e);
}

/* A token's text alone: a string when it is valid UTF-8, else its bytes (llama-server's with_pieces). */
static json_t *piece_json(qn_server *s, int32_t tok, bool bytes_if_partial) {
    char *txt = NULL;
    size_t len = 0;
    qn_error qe;
    qn_error_clear(&qe);
    if (s->eng.detokenize(s->eng.ctx, &tok, 1, false, &txt, &len, &qe) != QN_OK || !txt) {
        free(txt);
        return json_string("");
    }
    json_t *j = NULL;
    if (bytes_if_partial && qn_utf8_complete_prefix(txt, len) != len) {
        j = json_array();
        for (size_t i = 0; i < len; i++) json_array_append_new(j, json_integer((unsigned char)txt[i]));
    } else {
        j = qn_api_string(txt, len);
    }
    free(txt);
    return j;
}

/* Tokenizer calls need a loaded model: 503 until ready. */
static bool need_ready(qn_http *h) {
    if (qn_server_is_ready(h->srv)) return true;
    qn_api_error e;
    qn_api_error_set(&e, 503, QN_API_ERR_UNAVAILABLE, NULL, "Loading model");
    qn_http_reply_error(h, &e);
    return false;
}

void qn_route_tokenize(qn_http *h) {
    qn_server *s = h->srv;
    qn_api_error e;
    qn_api_tokenize_req t;
    if (!need_ready(h)) return;
    if (qn_api_parse_tokenize(h->body, h->body_len, &t, &e) < 0) {
        qn_http_reply_error(h, &e);
        return;
    }
    if (!s->eng.tokenize) {
        qn_api_tokenize_req_free(&t);
        not_supported(h, "tokenization");
        return;
    }
    char *templated = NULL;
    const char *text = t.text;
    size_t text_len = t.text_len;
    qn_error qe;
    qn_error_clear(&qe);
    if (t.messages) {
        if (!s->eng.apply_chat_template) {
            qn_api_tokenize_req_free(&t);
            not_supported(h, "chat templates");
            return;
        }
        qn_status st = s->eng.apply_chat_template(s->eng.ctx, t.messages, t.n_messages, t.add_generation_prompt,
                                                  &templated, &text_len, &qe);
        if (st != QN_OK || !templated) {
            free(templated);
            qn_api_tokenize_req_free(&t);
            qn_api_error_from_status(&e, st == QN_OK ? QN_ERR_INTERNAL : st, qe.msg);
            qn_http_reply_error(h, &e);
            return;
        }
        text = templated;
    }
    int32_t *toks = NULL;
    size_t n = 0;
    qn_status st = s->eng.tokenize(s->eng.ctx, text, text_len, t.add_special, t.parse_special, &toks, &n, &qe);
    free(templated);
    if (st != QN_OK) {
        free(toks);
        qn_api_tokenize_req_free(&t);
        qn_api_error_from_status(&e, st, qe.msg);
        qn_http_reply_error(h, &e);
        return;
    }
    bool pieces_ok = s->eng.detokenize != NULL;
    json_t *arr = json_array();
    json_t *strs = t.return_token_strs && pieces_ok ? json_array() : NULL;
    for (size_t i = 0; i < n; i++) {
        if (t.with_pieces && pieces_ok) {
            json_t *o = json_object();
            json_object_set_new(o, "id", json_integer(toks[i]));
            json_object_set_new(o, "piece", piece_json(s, toks[i], true));
            json_array_append_new(arr, o);
        } else {
            json_array_append_new(arr, json_integer(toks[i]));
        }
        if (strs) json_array_append_new(strs, piece_json(s, toks[i], false));
    }
    json_t *o = json_object();
    json_object_set_new(o, "tokens", arr);
    json_object_set_new(o, "count", json_integer((json_int_t)n));
    int32_t L = qn_server_max_model_len(s);
    json_object_set_new(o, "max_model_len", L > 0 ? json_integer(L) : json_null());
    if (strs) json_object_set_new(o, "token_strs", strs);
    free(toks);
    qn_api_tokenize_req_free(&t);
    qn_http_reply_json(h, 200, o);
}

void qn_route_detokenize(qn_http *h) {
    qn_server *s = h->srv;
    qn_api_error e;
    int32_t *toks = NULL;
    size_t n = 0;
    if (!need_ready(h)) return;
    if (qn_api_parse_detokenize(h->body, h->body_len, &toks, &n, &e) < 0) {
        qn_http_reply_error(h, &e);
        return;
    }
    if (!s->eng.detokenize) {
        free(toks);
        not_supported(h, "detokenization");
        return;
    }
    char *txt = NULL;
    size_t len = 0;
    qn_error qe;
    qn_error_clear(&qe);
    qn_status st = s->eng.detokenize(s->eng.ctx, toks, n, false, &txt, &len, &qe);
    free(toks);
    if (st != QN_OK) {
        free(txt);
        qn_api_error_from_status(&e, st, qe.msg);
        qn_http_reply_error(h, &e);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "content", qn_api_string(txt, txt ? len : 0)); /* llama-server */
    json_object_set_new(o, "prompt", qn_api_string(txt, txt ? len : 0));  /* vLLM */
    free(txt);
    qn_http_reply_json(h, 200, o);
}
