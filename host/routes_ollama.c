/* routes_ollama.c — a thin Ollama adapter over the same jobs: POST /api/generate, POST /api/chat
 * (NDJSON streaming by default, the last line "done":true with counts and durations in ns), GET /api/tags,
 * GET /api/version. Errors use Ollama's {"error":"..."} shape. */
#include <stdlib.h>
#include <string.h>

#include "host/routes.h"

/* An empty generate/chat request only "loads the model" in Ollama: answer done at once. */
static bool is_load_request(const qn_api_request *r) {
    if (r->kind == QN_API_OLLAMA_CHAT) return r->n_messages == 0;
    if (r->raw) return r->n_prompts == 1 && r->prompts[0].text_len == 0;
    return r->n_messages == 1 && !strcmp(r->messages[0].role, "user") && r->messages[0].content[0] == '\0';
}

static void generate(qn_http *h, qn_api_kind kind) {
    qn_server *s = h->srv;
    qn_api_error e;
    qn_api_request api;
    if (qn_api_parse_request(kind, h->body, h->body_len, &s->limits, &api, &e) < 0) {
        qn_http_reply_ollama_error(h, e.status, e.message);
        return;
    }
    if (!qn_server_check_model(s, api.model, &e)) {
        qn_api_request_free(&api);
        qn_http_reply_ollama_error(h, 404, e.message);
        return;
    }
    if (!qn_server_is_ready(s)) {
        qn_api_request_free(&api);
        qn_http_reply_ollama_error(h, 503, "model is loading");
        return;
    }
    if (is_load_request(&api)) {
        char at[48];
        qn_api_rfc3339_now(at, sizeof at);
        qn_api_ollama_final f;
        memset(&f, 0, sizeof f);
        f.done_reason = "load";
        json_t *o = qn_api_ollama_chunk(qn_server_model_name(s), at, kind == QN_API_OLLAMA_CHAT, "", 0, &f);
        qn_api_request_free(&api);
        qn_http_reply_json(h, 200, o);
        return;
    }
    qn_job_start(h, &api);
}

void qn_route_ollama_generate(qn_http *h) { generate(h, QN_API_OLLAMA_GENERATE); }

void qn_route_ollama_chat(qn_http *h) { generate(h, QN_API_OLLAMA_CHAT); }

void qn_route_ollama_tags(qn_http *h) {
    const char *name = qn_server_model_name(h->srv);
    char at[48];
    qn_api_rfc3339_now(at, sizeof at);
    json_t *details = json_pack("{s:s,s:s,s:[s],s:s,s:s}", "format", "gguf", "family", "quern", "families", "quern",
                                "parameter_size", "", "quantization_level", "");
    json_t *m = json_object();
    json_object_set_new(m, "name", qn_api_string(name, strlen(name)));
    json_object_set_new(m, "model", qn_api_string(name, strlen(name)));
    json_object_set_new(m, "modified_at", json_string(at));
    json_object_set_new(m, "size", json_integer(0));
    json_object_set_new(m, "digest", json_string(""));
    json_object_set_new(m, "details", details ? details : json_object());
    json_t *models = json_array();
    json_array_append_new(models, m);
    json_t *o = json_object();
    json_object_set_new(o, "models", models);
    qn_http_reply_json(h, 200, o);
}

void qn_route_ollama_version(qn_http *h) {
    /* Ollama clients compare this against their minimum supported version. */
    qn_http_reply_json(h, 200, json_pack("{s:s}", "version", "0.6.0"));
}
