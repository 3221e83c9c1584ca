/* routes_openai.c — OpenAI-compatible routes: POST /v1/chat/completions, POST /v1/completions,
 * GET /v1/models and GET /v1/models/{id}. Parsing lives in api_json.c, the request lifecycle in job.c. */
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "host/routes.h"

static void generate(qn_http *h, qn_api_kind kind) {
    qn_server *s = h->srv;
    qn_api_error e;
    qn_api_request api;
    if (qn_api_parse_request(kind, h->body, h->body_len, &s->limits, &api, &e) < 0) {
        qn_http_reply_error(h, &e);
        return;
    }
    if (!qn_server_check_model(s, api.model, &e)) {
        qn_api_request_free(&api);
        qn_http_reply_error(h, &e);
        return;
    }
    if (!qn_server_is_ready(s)) {
        qn_api_request_free(&api);
        qn_api_error_set(&e, 503, QN_API_ERR_UNAVAILABLE, NULL, "Loading model");
        qn_http_reply_error(h, &e);
        return;
    }
    qn_job_start(h, &api);
}

void qn_route_chat(qn_http *h) { generate(h, QN_API_CHAT); }

void qn_route_completions(qn_http *h) { generate(h, QN_API_COMPLETION); }

static json_t *model_card(const qn_server *s) {
    const char *name = qn_server_model_name(s);
    json_t *m = json_object();
    json_object_set_new(m, "id", qn_api_string(name, strlen(name)));
    json_object_set_new(m, "object", json_string("model"));
    json_object_set_new(m, "created", json_integer(s->created));
    json_object_set_new(m, "owned_by", json_string("quern"));
    json_object_set_new(m, "root", qn_api_string(name, strlen(name)));
    json_object_set_new(m, "parent", json_null());
    int32_t L = qn_server_max_model_len(s);
    if (L > 0) json_object_set_new(m, "max_model_len", json_integer(L));
    return m;
}

void qn_route_models(qn_http *h) {
    json_t *data = json_array();
    json_array_append_new(data, model_card(h->srv));
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("list"));
    json_object_set_new(o, "data", data);
    qn_http_reply_json(h, 200, o);
}

void qn_route_model_get(qn_http *h) {
    const char *want = h->path + strlen("/v1/models/");
    char *dec = evhttp_uridecode(want, 0, NULL);
    const char *name = qn_server_model_name(h->srv);
    bool match = dec && !strcmp(dec, name);
    if (match) {
        qn_http_reply_json(h, 200, model_card(h->srv));
    } else {
        qn_api_error e;
        qn_api_error_set(&e, 404, QN_API_ERR_NOT_FOUND, "model", "The model '%s' does not exist.", dec ? dec : want);
        qn_http_reply_error(h, &e);
    }
    free(dec);
}
