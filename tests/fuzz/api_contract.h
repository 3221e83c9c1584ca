/* api_contract.h — what the HTTP API's JSON parsers (host/api_json.h) promise for any body, checked by the
 * fuzz target (fuzz_api_json.c) and by the corpus replay in test_api_json.c:
 *  - a refusal is -1 with a 4xx (500 only for "out of memory"), a type and a message, and leaves the output empty;
 *  - an accepted request holds only what the engine's bridge.h documents (sampling ranges, n within the limits,
 *    non-empty stop strings, a prompt or messages as the kind needs, prompts of text or token ids).
 * Each function returns NULL when the contract holds, else what broke. */
#ifndef QN_TESTS_FUZZ_API_CONTRACT_H
#define QN_TESTS_FUZZ_API_CONTRACT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host/api_json.h"

static inline const char *qn_api_contract_error(const qn_api_error *e) {
    if (!e->type || !e->type[0]) return "refusal without a type";
    if (!memchr(e->message, 0, sizeof e->message) || !e->message[0]) return "refusal without a message";
    if (!memchr(e->param, 0, sizeof e->param)) return "param not terminated";
    if (e->status == 500) return strcmp(e->message, "out of memory") ? "500 for a bad body" : NULL;
    if (e->status < 400 || e->status > 499) return "refusal status not 4xx";
    return NULL;
}

static inline const char *qn_api_contract_request(int rc, const qn_api_request *r, const qn_api_error *e,
                                                  const qn_api_limits *lim) {
    if (rc != 0 && rc != -1) return "parse returned neither 0 nor -1";
    if (rc < 0) {
        if (r->messages || r->n_messages || r->prompts || r->n_prompts || r->model || r->stop_owned ||
            r->stop_ids_owned || r->bias_owned || r->response_format_owned)
            return "refused request not left empty";
        return qn_api_contract_error(e);
    }
    const qn_sampling_params *s = &r->sampling;
    if (r->n < 1 || r->n > lim->max_n) return "n outside [1, max_n]";
    if (!(s->temperature >= 0.0f)) return "temperature < 0";
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f)) return "top_p outside (0, 1]";
    if (!(s->min_p >= 0.0f && s->min_p <= 1.0f)) return "min_p outside [0, 1]";
    if (!(s->repetition_penalty > 0.0f)) return "repetition_penalty <= 0";
    if (!(s->presence_penalty >= -2.0f && s->presence_penalty <= 2.0f)) return "presence_penalty outside [-2, 2]";
    if (!(s->frequency_penalty >= -2.0f && s->frequency_penalty <= 2.0f)) return "frequency_penalty outside [-2, 2]";
    if (s->max_tokens < 0 || s->min_tokens < 0) return "negative max_tokens or min_tokens";
    if (r->max_tokens_set && s->max_tokens < 1) return "max_tokens set below 1";
    if (s->logprobs < -1 || s->logprobs > lim->max_logprobs) return "logprobs outside [-1, max_logprobs]";
    if (s->n_stop > (size_t)lim->max_stop) return "more stop strings than max_stop";
    for (size_t i = 0; i < s->n_stop; i++)
        if (!s->stop[i] || !s->stop[i][0]) return "empty stop string";
    if (s->n_stop_token_ids && !s->stop_token_ids) return "stop_token_ids missing";
    for (size_t i = 0; i < s->n_stop_token_ids; i++)
        if (s->stop_token_ids[i] < 0) return "negative stop token id";
    for (size_t i = 0; i < s->n_logit_bias; i++)
        if (!s->logit_bias || !(s->logit_bias[i].bias >= -100.0f && s->logit_bias[i].bias <= 100.0f))
            return "logit bias outside [-100, 100]";
    switch (r->kind) {
    case QN_API_CHAT:
        if (r->n_messages < 1 || r->n_prompts) return "chat without messages";
        break;
    case QN_API_COMPLETION:
        if (r->n_prompts < 1 || r->n_messages) return "completion without a prompt";
        if (r->n_prompts * (size_t)r->n > (size_t)lim->max_prompts) return "len(prompt) * n over max_prompts";
        break;
    default: break; /* Ollama: an empty request loads the model */
    }
    for (size_t i = 0; i < r->n_messages; i++)
        if (!r->messages[i].role || !r->messages[i].content) return "message without role or content";
    for (size_t i = 0; i < r->n_prompts; i++) {
        const qn_api_prompt *p = &r->prompts[i];
        if (!p->text == !p->tokens) return "prompt neither text nor token ids";
        if (p->tokens && !p->n_tokens) return "empty token prompt";
        if (p->text && p->text[p->text_len]) return "prompt text not terminated at text_len";
        for (size_t j = 0; j < p->n_tokens; j++)
            if (p->tokens[j] < 0) return "negative prompt token id";
    }
    return NULL;
}

/* One input in the fuzz target's form: byte 0 picks the parser (% 6: chat, completion, Ollama generate, Ollama
 * chat, tokenize, detokenize; bit 7: the small limits of a strict server), the rest is the body, copied to a buffer
 * of its exact size (so ASan flags a read past it). The parser's return value in *rc; NULL or what broke. */
static inline const char *qn_api_contract_run(const uint8_t *in, size_t size, int *rc) {
    *rc = -1;
    if (size < 1) return NULL;
    qn_api_limits lim;
    qn_api_limits_default(&lim);
    if (in[0] & 0x80) lim = (qn_api_limits){.max_n = 2, .max_prompts = 3, .max_logprobs = 1, .max_stop = 1};
    const int which = in[0] % 6;
    const size_t len = size - 1;
    char *body = malloc(len ? len : 1);
    if (!body) return NULL;
    memcpy(body, in + 1, len);
    const char *bad = NULL;
    qn_api_error e;
    memset(&e, 0, sizeof e);
    if (which < 4) {
        qn_api_request r;
        *rc = qn_api_parse_request((qn_api_kind)which, body, len, &lim, &r, &e);
        bad = qn_api_contract_request(*rc, &r, &e, &lim);
        if (*rc == 0) qn_api_request_free(&r);
    } else if (which == 4) {
        qn_api_tokenize_req t;
        *rc = qn_api_parse_tokenize(body, len, &t, &e);
        if (*rc == 0) {
            if (!t.text == !t.n_messages) bad = "tokenize: neither text nor messages";
            qn_api_tokenize_req_free(&t);
        } else {
            bad = qn_api_contract_error(&e);
        }
    } else {
        int32_t *ids = NULL;
        size_t n = 0;
        *rc = qn_api_parse_detokenize(body, len, &ids, &n, &e);
        if (*rc == 0) {
            for (size_t i = 0; i < n; i++)
                if (ids[i] < 0) bad = "detokenize: negative id";
            free(ids);
        } else {
            bad = qn_api_contract_error(&e);
        }
    }
    free(body);
    return bad;
}

#endif /* QN_TESTS_FUZZ_API_CONTRACT_H */
