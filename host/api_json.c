/* api_json.c — request parsing/validation and response/chunk builders for the OpenAI and Ollama shapes.
 * Validation follows vLLM's rules (400 invalid_request_error with the offending param); unknown fields
 * are ignored. Every string that leaves through jansson passes qn_api_string first, so invalid UTF-8 from
 * anywhere becomes U+FFFD instead of a NULL json_t. */
#include "host/api_json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* ------------------------------------------------------------------------------------------------ */
/* errors                                                                                            */
/* ------------------------------------------------------------------------------------------------ */

int qn_api_error_set(qn_api_error *e, int status, const char *type, const char *param, const char *fmt, ...) {
    if (!e) return -1;
    memset(e, 0, sizeof *e);
    e->status = status;
    e->type = type;
    if (param) snprintf(e->param, sizeof e->param, "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

json_t *qn_api_error_json(const qn_api_error *e) {
    json_t *in = json_object();
    json_object_set_new(in, "message", qn_api_string(e->message, strlen(e->message)));
    json_object_set_new(in, "type", json_string(e->type ? e->type : QN_API_ERR_SERVER));
    json_object_set_new(in, "param", e->param[0] ? qn_api_string(e->param, strlen(e->param)) : json_null());
    json_object_set_new(in, "code", json_integer(e->status));
    if (e->n_ctx > 0) {
        json_object_set_new(in, "n_prompt_tokens", json_integer(e->n_prompt_tokens));
        json_object_set_new(in, "n_ctx", json_integer(e->n_ctx));
    }
    json_t *out = json_object();
    json_object_set_new(out, "error", in);
    return out;
}

void qn_api_error_from_status(qn_api_error *e, qn_status st, const char *msg) {
    const char *m = (msg && msg[0]) ? msg : qn_status_str(st);
    switch (st) {
    case QN_ERR_BUSY: qn_api_error_set(e, 429, QN_API_ERR_RATE, NULL, "%s", m); break;
    case QN_ERR_CONTEXT: qn_api_error_set(e, 400, QN_API_ERR_CONTEXT, NULL, "%s", m); break;
    case QN_ERR_INVALID_ARG:
    case QN_ERR_SHAPE:
    case QN_ERR_OVERFLOW: qn_api_error_set(e, 400, QN_API_ERR_INVALID, NULL, "%s", m); break;
    case QN_ERR_UNSUPPORTED: qn_api_error_set(e, 400, QN_API_ERR_NOT_SUPPORTED, NULL, "%s", m); break;
    case QN_ERR_NOT_FOUND: qn_api_error_set(e, 404, QN_API_ERR_NOT_FOUND, NULL, "%s", m); break;
    case QN_ERR_ABORTED:
    case QN_ERR_NO_DEVICE: qn_api_error_set(e, 503, QN_API_ERR_UNAVAILABLE, NULL, "%s", m); break;
    case QN_ERR_KV_FULL:
    case QN_ERR_DEVICE_OOM: qn_api_error_set(e, 503, QN_API_ERR_UNAVAILABLE, NULL, "%s", m); break;
    default: qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "%s", m); break;
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* UTF-8                                                                                             */
/* ------------------------------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is invalid or truncated. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned cp, min;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

json_t *qn_api_string(const char *s, size_t len) {
    if (!s) return json_string("");
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t k = utf8_seq(u + i, len - i);
        if (!k) break;
        i += k;
    }
    if (i == len) return json_stringn_nocheck(s, len);
    /* Slow path: copy with U+FFFD (EF BF BD) for each invalid byte. */
    char *buf = malloc(len * 3 + 1);
    if (!buf) return json_string("");
    size_t o = 0;
    i = 0;
    while (i < len) {
        size_t k = utf8_seq(u + i, len - i);
        if (k) {
            memcpy(buf + o, s + i, k);
            o += k;
            i += k;
        } else {
            buf[o++] = (char)0xEF;
            buf[o++] = (char)0xBF;
            buf[o++] = (char)0xBD;
            i++;
        }
    }
    json_t *j = json_stringn_nocheck(buf, o);
    free(buf);
    return j;
}

size_t qn_utf8_complete_prefix(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    /* Look back at most 3 bytes for a lead byte whose sequence is cut short. */
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        unsigned c = u[len - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation: keep looking */
        size_t need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
        return back < need ? len - back : len;
    }
    return len;
}

/* ------------------------------------------------------------------------------------------------ */
/* field readers: return 0 absent/null (dst untouched), 1 read, -1 error (err filled)                */
/* ------------------------------------------------------------------------------------------------ */

static int rd_num(json_t *o, const char *key, const char *param, double lo, double hi, double *dst,
                  qn_api_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' must be a number", param);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' must be in [%g, %g], got %g", param, lo, hi, d);
    *dst = d;
    return 1;
}

static int rd_float(json_t *o, const char *key, const char *param, double lo, double hi, float *dst,
                    qn_api_error *e) {
    double d = 0.0;
    int r = rd_num(o, key, param, lo, hi, &d, e);
    if (r == 1) *dst = (float)d;
    return r;
}

/* Integers; an integral real (2.0) is accepted as well. */
static int rd_int_value(json_t *v, const char *param, int64_t lo, int64_t hi, int64_t *dst, qn_api_error *e) {
    int64_t x;
    if (json_is_integer(v)) {
        x = (int64_t)json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != floor(d) || d < -9.2e18 || d > 9.2e18)
            return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' must be an integer", param);
        x = (int64_t)d;
    } else {
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' must be an integer", param);
    }
    if (x < lo || x > hi)
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' must be in [%lld, %lld], got %lld", param,
                                (long long)lo, (long long)hi, (long long)x);
    *dst = x;
    return 1;
}

static int rd_int(json_t *o, const char *key, const char *param, int64_t lo, int64_t hi, int64_t *dst,
                  qn_api_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    return rd_int_value(v, param, lo, hi, dst, e);
}

static int rd_bool(json_t *o, const char *key, const char *param, bool *dst, qn_api_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' must be a boolean", param);
    *dst = json_is_true(v);
    return 1;
}

/* True when a JSON string holds U+0000. Bodies are parsed with JSON_ALLOW_NUL because prompt and message texts may
 * carry it (vLLM's random dataset decodes random token ids, byte 0x00 among them); fields we keep as C strings
 * (model, role, stop, ...) reject it instead of being cut short at the NUL. */
static bool has_nul(json_t *s) { return memchr(json_string_value(s), '\0', json_string_length(s)) != NULL; }

static int nul_error(qn_api_error *e, const char *param) {
    return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' must not contain U+0000", param);
}

/* String (copied into *dst, NUL-terminated, freeing a previous value). len != NULL: the text may hold U+0000 and
 * *len gets its length; len == NULL: U+0000 is rejected. */
static int rd_str_n(json_t *o, const char *key, const char *param, char **dst, size_t *len, qn_api_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' must be a string", param);
    if (!len && has_nul(v)) return nul_error(e, param);
    char *s = malloc(json_string_length(v) + 1);
    if (!s) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    memcpy(s, json_string_value(v), json_string_length(v) + 1);
    free(*dst);
    *dst = s;
    if (len) *len = json_string_length(v);
    return 1;
}

static int rd_str(json_t *o, const char *key, const char *param, char **dst, qn_api_error *e) {
    return rd_str_n(o, key, param, dst, NULL, e);
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* ------------------------------------------------------------------------------------------------ */
/* requests                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

void qn_api_limits_default(qn_api_limits *l) {
    l->max_n = 16;
    l->max_prompts = 256;
    l->max_logprobs = 20;
    l->max_stop = 16;
}

static void sampling_defaults(qn_sampling_params *s) {
    memset(s, 0, sizeof *s);
    s->temperature = 1.0f;
    s->top_p = 1.0f;
    s->top_k = 0;
    s->min_p = 0.0f;
    s->repetition_penalty = 1.0f;
    s->max_tokens = 0; /* chosen by the host after tokenization unless max_tokens_set */
    s->skip_special_tokens = true;
    s->logprobs = -1;
}

void qn_api_request_free(qn_api_request *r) {
    if (!r) return;
    free(r->model);
    for (size_t i = 0; i < r->n_messages; i++) {
        free((char *)r->messages[i].role);
        free((char *)r->messages[i].content);
    }
    free(r->messages);
    for (size_t i = 0; i < r->n_prompts; i++) {
        free(r->prompts[i].text);
        free(r->prompts[i].tokens);
    }
    free(r->prompts);
    for (size_t i = 0; i < r->sampling.n_stop; i++) free(r->stop_owned[i]);
    free(r->stop_owned);
    free(r->stop_ids_owned);
    free(r->bias_owned);
    free(r->response_format_owned);
    memset(r, 0, sizeof *r);
}

/* stop: str | [str] | null */
static int rd_stop(json_t *o, const char *key, const char *param, const qn_api_limits *lim, qn_api_request *r,
                   qn_api_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    size_t n = json_is_string(v) ? 1 : json_is_array(v) ? json_array_size(v) : (size_t)-1;
    if (n == (size_t)-1)
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' must be a string or a list of strings", param);
    if (n > (size_t)lim->max_stop)
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' has more than %d entries", param, lim->max_stop);
    r->stop_owned = calloc(n ? n : 1, sizeof(char *));
    if (!r->stop_owned) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_string(v) ? v : json_array_get(v, i);
        if (!json_is_string(s)) {
            r->sampling.n_stop = k;
            return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s[%zu]' must be a string", param, i);
        }
        if (json_string_length(s) == 0) continue; /* an empty stop string would end every request */
        if (has_nul(s)) {
            r->sampling.n_stop = k;
            char pp[48];
            if (json_is_string(v))
                snprintf(pp, sizeof pp, "%s", param);
            else
                snprintf(pp, sizeof pp, "%s[%zu]", param, i);
            return nul_error(e, pp);
        }
        r->stop_owned[k] = dup_n(json_string_value(s), json_string_length(s));
        if (!r->stop_owned[k]) {
            r->sampling.n_stop = k;
            return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
        }
        k++;
    }
    r->sampling.n_stop = k;
    r->sampling.stop = (const char *const *)r->stop_owned;
    return 1;
}

static int rd_stop_ids(json_t *o, qn_api_request *r, qn_api_error *e) {
    json_t *v = json_object_get(o, "stop_token_ids");
    if (!v || json_is_null(v)) return 0;
    if (!json_is_array(v))
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "stop_token_ids", "'stop_token_ids' must be a list of integers");
    size_t n = json_array_size(v);
    if (n > 1024) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "stop_token_ids", "too many stop_token_ids");
    r->stop_ids_owned = malloc((n ? n : 1) * sizeof(int32_t));
    if (!r->stop_ids_owned) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        int64_t x;
        if (rd_int_value(json_array_get(v, i), "stop_token_ids", 0, INT32_MAX, &x, e) < 0) return -1;
        r->stop_ids_owned[i] = (int32_t)x;
    }
    r->sampling.stop_token_ids = r->stop_ids_owned;
    r->sampling.n_stop_token_ids = n;
    return 1;
}

static int rd_logit_bias(json_t *o, qn_api_request *r, qn_api_error *e) {
    json_t *v = json_object_get(o, "logit_bias");
    if (!v || json_is_null(v)) return 0;
    if (!json_is_object(v))
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "logit_bias", "'logit_bias' must be an object of token id -> bias");
    size_t n = json_object_size(v);
    if (n > 4096) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "logit_bias", "too many logit_bias entries");
    r->bias_owned = malloc((n ? n : 1) * sizeof(qn_logit_bias));
    if (!r->bias_owned) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    const char *k;
    json_t *b;
    size_t i = 0;
    json_object_foreach(v, k, b) {
        char *end = NULL;
        long id = strtol(k, &end, 10);
        if (!k[0] || *end || id < 0 || id > INT32_MAX)
            return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "logit_bias", "'logit_bias' key '%s' is not a token id", k);
        if (!json_is_number(b))
            return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "logit_bias", "'logit_bias' values must be numbers");
        double d = json_number_value(b);
        if (d < -100 || d > 100)
            return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "logit_bias", "'logit_bias' values must be in [-100, 100]");
        r->bias_owned[i].token = (int32_t)id;
        r->bias_owned[i].bias = (float)d;
        i++;
    }
    r->sampling.logit_bias = r->bias_owned;
    r->sampling.n_logit_bias = i;
    return 1;
}

static int rd_response_format(json_t *o, qn_api_request *r, qn_api_error *e) {
    json_t *v = json_object_get(o, "response_format");
    if (!v || json_is_null(v)) return 0;
    if (!json_is_object(v))
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "response_format", "'response_format' must be an object");
    json_t *t = json_object_get(v, "type");
    if (!json_is_string(t))
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "response_format.type", "'response_format.type' must be a string");
    const char *ts = json_string_value(t);
    if (!strcmp(ts, "text")) return 1;
    if (strcmp(ts, "json_object") && strcmp(ts, "json_schema"))
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "response_format.type",
                                "'response_format.type' must be one of text, json_object, json_schema");
    r->response_format_owned = json_dumps(v, JSON_COMPACT);
    if (!r->response_format_owned) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    r->sampling.response_format = r->response_format_owned;
    return 1;
}

/* Sampling fields shared by chat and completions (OpenAI + vLLM extras). */
static int rd_sampling_openai(json_t *o, const qn_api_limits *lim, qn_api_request *r, qn_api_error *e) {
    qn_sampling_params *s = &r->sampling;
    int64_t x;
    if (rd_float(o, "temperature", "temperature", 0.0, 100.0, &s->temperature, e) < 0) return -1;
    if (rd_float(o, "top_p", "top_p", 0.0, 1.0, &s->top_p, e) < 0) return -1;
    if (json_is_number(json_object_get(o, "top_p")) && s->top_p <= 0.0f)
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "top_p", "'top_p' must be in (0, 1]");
    int rk = rd_int(o, "top_k", "top_k", -1, INT32_MAX, &x, e);
    if (rk < 0) return -1;
    if (rk == 1) s->top_k = x <= 0 ? 0 : (int32_t)x;
    if (rd_float(o, "min_p", "min_p", 0.0, 1.0, &s->min_p, e) < 0) return -1;
    if (rd_float(o, "repetition_penalty", "repetition_penalty", 1e-6, 100.0, &s->repetition_penalty, e) < 0) return -1;
    if (rd_float(o, "presence_penalty", "presence_penalty", -2.0, 2.0, &s->presence_penalty, e) < 0) return -1;
    if (rd_float(o, "frequency_penalty", "frequency_penalty", -2.0, 2.0, &s->frequency_penalty, e) < 0) return -1;
    int rs = rd_int(o, "seed", "seed", INT64_MIN, INT64_MAX, &x, e);
    if (rs < 0) return -1;
    if (rs == 1) {
        s->has_seed = true;
        s->seed = (uint64_t)x;
    }
    /* max_completion_tokens wins over the deprecated max_tokens when both are present (OpenAI). */
    int rm = rd_int(o, "max_completion_tokens", "max_completion_tokens", 1, INT32_MAX, &x, e);
    if (rm < 0) return -1;
    if (rm == 0) {
        rm = rd_int(o, "max_tokens", "max_tokens", 1, INT32_MAX, &x, e);
        if (rm < 0) return -1;
    }
    if (rm == 1) {
        s->max_tokens = (int32_t)x;
        r->max_tokens_set = true;
    }
    int rmin = rd_int(o, "min_tokens", "min_tokens", 0, INT32_MAX, &x, e);
    if (rmin < 0) return -1;
    if (rmin == 1) s->min_tokens = (int32_t)x;
    if (r->max_tokens_set && s->min_tokens > s->max_tokens)
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "min_tokens", "'min_tokens' must be <= max_tokens");
    if (rd_bool(o, "ignore_eos", "ignore_eos", &s->ignore_eos, e) < 0) return -1;
    if (rd_bool(o, "skip_special_tokens", "skip_special_tokens", &s->skip_special_tokens, e) < 0) return -1;
    if (rd_bool(o, "include_stop_str_in_output", "include_stop_str_in_output", &s->include_stop_str_in_output, e) < 0)
        return -1;
    if (rd_stop(o, "stop", "stop", lim, r, e) < 0) return -1;
    if (rd_stop_ids(o, r, e) < 0) return -1;
    if (rd_logit_bias(o, r, e) < 0) return -1;
    if (rd_response_format(o, r, e) < 0) return -1;
    int rn = rd_int(o, "n", "n", 1, lim->max_n, &x, e);
    if (rn < 0) return -1;
    if (rn == 1) r->n = (int32_t)x;
    int64_t best_of;
    int rb = rd_int(o, "best_of", "best_of", 1, INT32_MAX, &best_of, e);
    if (rb < 0) return -1;
    if (rb == 1 && best_of > r->n)
        return qn_api_error_set(e, 400, QN_API_ERR_NOT_SUPPORTED, "best_of", "'best_of' > n is not supported");
    if (rd_bool(o, "stream", "stream", &r->stream, e) < 0) return -1;
    json_t *so = json_object_get(o, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "stream_options", "'stream_options' must be an object");
        if (rd_bool(so, "include_usage", "stream_options.include_usage", &r->include_usage, e) < 0) return -1;
        if (rd_bool(so, "continuous_usage_stats", "stream_options.continuous_usage_stats", &r->continuous_usage, e) < 0)
            return -1;
    }
    return 0;
}

/* content: str | [{"type":"text","text":...}] | null -> malloc'd text ("" for null) of *out_len bytes (U+0000
 * allowed). */
static int rd_content(json_t *c, size_t mi, char **out, size_t *out_len, qn_api_error *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", mi);
    *out_len = 0;
    if (!c || json_is_null(c)) {
        *out = dup_n("", 0);
        return *out ? 0 : qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    }
    if (json_is_string(c)) {
        *out = dup_n(json_string_value(c), json_string_length(c));
        *out_len = json_string_length(c);
        return *out ? 0 : qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    }
    if (!json_is_array(c))
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' must be a string or a list of content parts", param);
    size_t total = 1;
    for (size_t j = 0; j < json_array_size(c); j++) {
        json_t *p = json_array_get(c, j);
        char pp[96];
        snprintf(pp, sizeof pp, "%s[%zu]", param, j);
        if (json_is_string(p)) { /* lenient: a bare string part */
            total += json_string_length(p) + 1;
            continue;
        }
        if (!json_is_object(p)) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, pp, "'%s' must be an object", pp);
        json_t *t = json_object_get(p, "type");
        if (!json_is_string(t)) {
            snprintf(pp + strlen(pp), sizeof pp - strlen(pp), ".type");
            return qn_api_error_set(e, 400, QN_API_ERR_INVALID, pp, "'%s' must be a string", pp);
        }
        if (strcmp(json_string_value(t), "text") && strcmp(json_string_value(t), "input_text")) {
            snprintf(pp + strlen(pp), sizeof pp - strlen(pp), ".type");
            return qn_api_error_set(e, 400, QN_API_ERR_NOT_SUPPORTED, pp, "content part type '%s' is not supported",
                                    json_string_value(t));
        }
        json_t *tx = json_object_get(p, "text");
        if (!json_is_string(tx)) {
            snprintf(pp + strlen(pp), sizeof pp - strlen(pp), ".text");
            return qn_api_error_set(e, 400, QN_API_ERR_INVALID, pp, "'%s' must be a string", pp);
        }
        total += json_string_length(tx) + 1;
    }
    char *buf = malloc(total);
    if (!buf) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    size_t o = 0;
    for (size_t j = 0; j < json_array_size(c); j++) {
        json_t *p = json_array_get(c, j);
        json_t *tx = json_is_string(p) ? p : json_object_get(p, "text");
        if (o) buf[o++] = '\n'; /* parts are joined with newlines (vLLM) */
        memcpy(buf + o, json_string_value(tx), json_string_length(tx));
        o += json_string_length(tx);
    }
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return 0;
}

/* ollama: an empty or absent list is allowed (Ollama's "load the model" request). */
static int rd_messages(json_t *o, bool ollama, qn_api_request *r, qn_api_error *e) {
    json_t *m = json_object_get(o, "messages");
    if ((!m || json_is_null(m)) && ollama) return 0;
    if (!m || json_is_null(m)) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "messages", "'messages' is required");
    if (!json_is_array(m)) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "messages", "'messages' must be a list");
    size_t n = json_array_size(m);
    if (n == 0 && ollama) return 0;
    if (n == 0) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "messages", "'messages' must not be empty");
    if (n > 100000) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "messages", "too many messages");
    r->messages = calloc(n, sizeof *r->messages);
    if (!r->messages) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(m, i);
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(msg)) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' must be an object", param);
        json_t *role = json_object_get(msg, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!json_is_string(role)) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' must be a string", param);
        if (has_nul(role)) return nul_error(e, param);
        if (ollama) {
            json_t *im = json_object_get(msg, "images");
            if (json_is_array(im) && json_array_size(im) > 0) {
                snprintf(param, sizeof param, "messages[%zu].images", i);
                return qn_api_error_set(e, 400, QN_API_ERR_NOT_SUPPORTED, param, "images are not supported");
            }
        }
        char *content = NULL;
        size_t content_len = 0;
        if (rd_content(json_object_get(msg, "content"), i, &content, &content_len, e) < 0) return -1;
        r->messages[i].content = content;
        r->messages[i].content_len = content_len;
        r->messages[i].role = dup_n(json_string_value(role), json_string_length(role));
        r->n_messages = i + 1;
        if (!r->messages[i].role) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    }
    return 0;
}

/* Token ids in a prompt: [int] with 0 <= id <= INT32_MAX. */
static int rd_token_list(json_t *a, const char *param, qn_api_prompt *p, qn_api_error *e) {
    size_t n = json_array_size(a);
    if (n == 0) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' must not be empty", param);
    p->tokens = malloc(n * sizeof(int32_t));
    if (!p->tokens) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    p->n_tokens = n;
    for (size_t i = 0; i < n; i++) {
        int64_t x;
        if (rd_int_value(json_array_get(a, i), param, 0, INT32_MAX, &x, e) < 0) return -1;
        p->tokens[i] = (int32_t)x;
    }
    return 0;
}

/* prompt: str | [str] | [int] | [[int]] */
static int rd_prompt(json_t *o, const qn_api_limits *lim, qn_api_request *r, qn_api_error *e) {
    json_t *v = json_object_get(o, "prompt");
    if (!v || json_is_null(v)) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "prompt", "'prompt' is required");
    if (json_is_string(v)) {
        r->prompts = calloc(1, sizeof *r->prompts);
        if (!r->prompts) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
        r->n_prompts = 1;
        r->prompts[0].text = dup_n(json_string_value(v), json_string_length(v));
        r->prompts[0].text_len = json_string_length(v);
        return r->prompts[0].text ? 0 : qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    }
    if (!json_is_array(v))
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "prompt",
                                "'prompt' must be a string, a list of strings, a list of token ids or a list of lists of token ids");
    size_t n = json_array_size(v);
    if (n == 0) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "prompt", "'prompt' must not be empty");
    json_t *first = json_array_get(v, 0);
    if (json_is_number(first)) { /* one prompt of token ids */
        r->prompts = calloc(1, sizeof *r->prompts);
        if (!r->prompts) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
        r->n_prompts = 1;
        return rd_token_list(v, "prompt", &r->prompts[0], e);
    }
    if (n > (size_t)lim->max_prompts)
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "prompt", "'prompt' has more than %d entries", lim->max_prompts);
    r->prompts = calloc(n, sizeof *r->prompts);
    if (!r->prompts) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    r->n_prompts = n;
    bool strings = json_is_string(first);
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(v, i);
        char param[48];
        snprintf(param, sizeof param, "prompt[%zu]", i);
        if (strings && json_is_string(p)) {
            r->prompts[i].text = dup_n(json_string_value(p), json_string_length(p));
            r->prompts[i].text_len = json_string_length(p);
            if (!r->prompts[i].text) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
        } else if (!strings && json_is_array(p)) {
            if (rd_token_list(p, param, &r->prompts[i], e) < 0) return -1;
        } else {
            return qn_api_error_set(e, 400, QN_API_ERR_INVALID, param, "'%s' must be a %s (no mixed prompt lists)", param,
                                    strings ? "string" : "list of token ids");
        }
    }
    return 0;
}

static int parse_chat(json_t *o, const qn_api_limits *lim, qn_api_request *r, qn_api_error *e) {
    if (rd_messages(o, false, r, e) < 0) return -1;
    if (rd_sampling_openai(o, lim, r, e) < 0) return -1;
    if (rd_bool(o, "add_generation_prompt", "add_generation_prompt", &r->add_generation_prompt, e) < 0) return -1;
    if (rd_bool(o, "logprobs", "logprobs", &r->chat_logprobs, e) < 0) return -1;
    int64_t k = 0;
    int rk = rd_int(o, "top_logprobs", "top_logprobs", 0, lim->max_logprobs, &k, e);
    if (rk < 0) return -1;
    if (rk == 1 && k > 0 && !r->chat_logprobs)
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "top_logprobs", "'top_logprobs' requires 'logprobs' to be true");
    r->sampling.logprobs = r->chat_logprobs ? (int32_t)k : -1;
    return 0;
}

static int parse_completion(json_t *o, const qn_api_limits *lim, qn_api_request *r, qn_api_error *e) {
    if (rd_prompt(o, lim, r, e) < 0) return -1;
    if (rd_sampling_openai(o, lim, r, e) < 0) return -1;
    json_t *lp = json_object_get(o, "logprobs");
    if (json_is_boolean(lp)) {
        r->sampling.logprobs = json_is_true(lp) ? 0 : -1;
    } else {
        int64_t k;
        int rk = rd_int(o, "logprobs", "logprobs", 0, lim->max_logprobs, &k, e);
        if (rk < 0) return -1;
        if (rk == 1) r->sampling.logprobs = (int32_t)k;
    }
    bool echo = false;
    if (rd_bool(o, "echo", "echo", &echo, e) < 0) return -1;
    if (echo) return qn_api_error_set(e, 400, QN_API_ERR_NOT_SUPPORTED, "echo", "'echo' is not supported");
    json_t *suffix = json_object_get(o, "suffix");
    if (json_is_string(suffix) && json_string_length(suffix) > 0)
        return qn_api_error_set(e, 400, QN_API_ERR_NOT_SUPPORTED, "suffix", "'suffix' is not supported");
    if (r->n_prompts * (size_t)r->n > (size_t)lim->max_prompts)
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "n", "len(prompt) * n must be <= %d", lim->max_prompts);
    return 0;
}

/* Ollama "format": "json" or a JSON schema object -> response_format. */
static int rd_ollama_format(json_t *o, qn_api_request *r, qn_api_error *e) {
    json_t *f = json_object_get(o, "format");
    if (!f || json_is_null(f) || (json_is_string(f) && json_string_length(f) == 0)) return 0;
    json_t *rf = NULL;
    if (json_is_string(f) && !strcmp(json_string_value(f), "json")) {
        rf = json_pack("{s:s}", "type", "json_object");
    } else if (json_is_object(f)) {
        rf = json_pack("{s:s,s:{s:s,s:O}}", "type", "json_schema", "json_schema", "name", "ollama", "schema", f);
    } else {
        return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "format", "'format' must be \"json\" or a JSON schema object");
    }
    r->response_format_owned = rf ? json_dumps(rf, JSON_COMPACT) : NULL;
    json_decref(rf);
    if (!r->response_format_owned) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    r->sampling.response_format = r->response_format_owned;
    return 1;
}

static int rd_ollama_options(json_t *o, const qn_api_limits *lim, qn_api_request *r, qn_api_error *e) {
    json_t *op = json_object_get(o, "options");
    if (!op || json_is_null(op)) return 0;
    if (!json_is_object(op)) return qn_api_error_set(e, 400, QN_API_ERR_INVALID, "options", "'options' must be an object");
    qn_sampling_params *s = &r->sampling;
    int64_t x;
    if (rd_float(op, "temperature", "options.temperature", 0.0, 100.0, &s->temperature, e) < 0) return -1;
    if (rd_float(op, "top_p", "options.top_p", 0.0, 1.0, &s->top_p, e) < 0) return -1;
    if (s->top_p <= 0.0f) s->top_p = 1.0f;
    int rk = rd_int(op, "top_k", "options.top_k", INT32_MIN, INT32_MAX, &x, e);
    if (rk < 0) return -1;
    if (rk == 1) s->top_k = x <= 0 ? 0 : (int32_t)x;
    if (rd_float(op, "min_p", "options.min_p", 0.0, 1.0, &s->min_p, e) < 0) return -1;
    if (rd_float(op, "repeat_penalty", "options.repeat_penalty", 1e-6, 100.0, &s->repetition_penalty, e) < 0) return -1;
    if (rd_float(op, "presence_penalty", "options.presence_penalty", -2.0, 2.0, &s->presence_penalty, e) < 0) return -1;
    if (rd_float(op, "frequency_penalty", "options.frequency_penalty", -2.0, 2.0, &s->frequency_penalty, e) < 0) return -1;
    int rs = rd_int(op, "seed", "options.seed", INT64_MIN, INT64_MAX, &x, e);
    if (rs < 0) return -1;
    if (rs == 1) {
        s->has_seed = true;
        s->seed = (uint64_t)x;
    }
    int rm = rd_int(op, "num_predict", "options.num_predict", INT32_MIN, INT32_MAX, &x, e);
    if (rm < 0) return -1;
    if (rm == 1 && x > 0) { /* -1 = unlimited, -2 = fill the context: both mean "the rest of the context" */
        s->max_tokens = (int32_t)x;
        r->max_tokens_set = true;
    }
    if (rd_stop(op, "stop", "options.stop", lim, r, e) < 0) return -1;
    return 0;
}

static int parse_ollama(json_t *o, bool chat, const qn_api_limits *lim, qn_api_request *r, qn_api_error *e) {
    r->stream = true; /* Ollama streams unless told otherwise */
    if (rd_bool(o, "stream", "stream", &r->stream, e) < 0) return -1;
    if (rd_ollama_options(o, lim, r, e) < 0) return -1;
    if (rd_ollama_format(o, r, e) < 0) return -1;
    if (chat) return rd_messages(o, true, r, e);

    json_t *im = json_object_get(o, "images");
    if (json_is_array(im) && json_array_size(im) > 0)
        return qn_api_error_set(e, 400, QN_API_ERR_NOT_SUPPORTED, "images", "images are not supported");
    char *prompt = NULL, *system = NULL;
    size_t prompt_len = 0, system_len = 0;
    if (rd_str_n(o, "prompt", "prompt", &prompt, &prompt_len, e) < 0) return -1;
    if (rd_str_n(o, "system", "system", &system, &system_len, e) < 0) {
        free(prompt);
        return -1;
    }
    if (rd_bool(o, "raw", "raw", &r->raw, e) < 0) {
        free(prompt);
        free(system);
        return -1;
    }
    if (!prompt) prompt = dup_n("", 0);
    if (!prompt) {
        free(system);
        return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    }
    if (r->raw) { /* verbatim prompt */
        free(system);
        r->prompts = calloc(1, sizeof *r->prompts);
        if (!r->prompts) {
            free(prompt);
            return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
        }
        r->n_prompts = 1;
        r->prompts[0].text = prompt;
        r->prompts[0].text_len = prompt_len;
        return 0;
    }
    r->messages = calloc(2, sizeof *r->messages);
    if (!r->messages) {
        free(prompt);
        free(system);
        return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    }
    size_t k = 0;
    if (system && system_len > 0) {
        r->messages[k].role = dup_n("system", 6);
        r->messages[k].content_len = system_len;
        r->messages[k++].content = system;
    } else {
        free(system);
    }
    r->messages[k].role = dup_n("user", 4);
    r->messages[k].content_len = prompt_len;
    r->messages[k++].content = prompt;
    r->n_messages = k;
    for (size_t i = 0; i < k; i++)
        if (!r->messages[i].role) return qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
    return 0;
}

static json_t *load_object(const char *body, size_t len, qn_api_error *e) {
    if (!body || len == 0) {
        qn_api_error_set(e, 400, QN_API_ERR_INVALID, NULL, "request body is empty; expected a JSON object");
        return NULL;
    }
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_ALLOW_NUL, &je); /* "\u0000" in a prompt is valid JSON (has_nul) */
    if (!o) {
        qn_api_error_set(e, 400, QN_API_ERR_INVALID, NULL, "invalid JSON at line %d column %d: %s", je.line, je.column,
                         je.text);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        qn_api_error_set(e, 400, QN_API_ERR_INVALID, NULL, "request body must be a JSON object");
        return NULL;
    }
    return o;
}

int qn_api_parse_request(qn_api_kind kind, const char *body, size_t len, const qn_api_limits *lim,
                         qn_api_request *out, qn_api_error *err) {
    qn_api_limits dl;
    if (!lim) {
        qn_api_limits_default(&dl);
        lim = &dl;
    }
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->n = 1;
    out->add_generation_prompt = true;
    sampling_defaults(&out->sampling);
    json_t *o = load_object(body, len, err);
    if (!o) return -1;
    int rc = rd_str(o, "model", "model", &out->model, err);
    if (rc >= 0) {
        switch (kind) {
        case QN_API_CHAT: rc = parse_chat(o, lim, out, err); break;
        case QN_API_COMPLETION: rc = parse_completion(o, lim, out, err); break;
        case QN_API_OLLAMA_GENERATE: rc = parse_ollama(o, false, lim, out, err); break;
        case QN_API_OLLAMA_CHAT: rc = parse_ollama(o, true, lim, out, err); break;
        default: rc = qn_api_error_set(err, 500, QN_API_ERR_SERVER, NULL, "unknown request kind"); break;
        }
    }
    json_decref(o);
    if (rc < 0) {
        qn_api_request_free(out);
        out->kind = kind;
        return -1;
    }
    return 0;
}

/* --- tokenize / detokenize --- */

void qn_api_tokenize_req_free(qn_api_tokenize_req *r) {
    if (!r) return;
    free(r->text);
    for (size_t i = 0; i < r->n_messages; i++) {
        free((char *)r->messages[i].role);
        free((char *)r->messages[i].content);
    }
    free(r->messages);
    memset(r, 0, sizeof *r);
}

int qn_api_parse_tokenize(const char *body, size_t len, qn_api_tokenize_req *out, qn_api_error *e) {
    memset(out, 0, sizeof *out);
    out->parse_special = true;
    out->add_generation_prompt = true;
    json_t *o = load_object(body, len, e);
    if (!o) return -1;
    int rc = 0;
    bool from_content = false;
    if (json_object_get(o, "messages")) {
        qn_api_request tmp;
        memset(&tmp, 0, sizeof tmp);
        rc = rd_messages(o, false, &tmp, e);
        out->messages = tmp.messages;
        out->n_messages = tmp.n_messages;
        if (rc >= 0) rc = rd_bool(o, "add_generation_prompt", "add_generation_prompt", &out->add_generation_prompt, e);
    } else {
        const char *key = json_object_get(o, "content") ? "content" : "prompt";
        from_content = !strcmp(key, "content");
        json_t *v = json_object_get(o, key);
        if (!v || json_is_null(v)) {
            rc = qn_api_error_set(e, 400, QN_API_ERR_INVALID, "content", "'content' (or 'prompt' / 'messages') is required");
        } else if (!json_is_string(v)) {
            rc = qn_api_error_set(e, 400, QN_API_ERR_INVALID, key, "'%s' must be a string", key);
        } else {
            out->text = dup_n(json_string_value(v), json_string_length(v));
            out->text_len = json_string_length(v);
            if (!out->text) rc = qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
        }
        out->add_special = !from_content; /* llama-server: false; vLLM completions: true */
    }
    if (rc >= 0) rc = rd_bool(o, "add_special", "add_special", &out->add_special, e);
    if (rc >= 0) rc = rd_bool(o, "add_special_tokens", "add_special_tokens", &out->add_special, e);
    if (rc >= 0) rc = rd_bool(o, "parse_special", "parse_special", &out->parse_special, e);
    if (rc >= 0) rc = rd_bool(o, "with_pieces", "with_pieces", &out->with_pieces, e);
    if (rc >= 0) rc = rd_bool(o, "return_token_strs", "return_token_strs", &out->return_token_strs, e);
    json_decref(o);
    if (rc < 0) {
        qn_api_tokenize_req_free(out);
        return -1;
    }
    return 0;
}

int qn_api_parse_detokenize(const char *body, size_t len, int32_t **tokens, size_t *n_tokens, qn_api_error *e) {
    *tokens = NULL;
    *n_tokens = 0;
    json_t *o = load_object(body, len, e);
    if (!o) return -1;
    json_t *v = json_object_get(o, "tokens");
    int rc = 0;
    if (!json_is_array(v)) {
        rc = qn_api_error_set(e, 400, QN_API_ERR_INVALID, "tokens", "'tokens' must be a list of token ids");
    } else {
        size_t n = json_array_size(v);
        int32_t *t = malloc((n ? n : 1) * sizeof(int32_t));
        if (!t) rc = qn_api_error_set(e, 500, QN_API_ERR_SERVER, NULL, "out of memory");
        for (size_t i = 0; rc >= 0 && i < n; i++) {
            int64_t x;
            if (rd_int_value(json_array_get(v, i), "tokens", 0, INT32_MAX, &x, e) < 0) rc = -1;
            else t[i] = (int32_t)x;
        }
        if (rc < 0) {
            free(t);
        } else {
            *tokens = t;
            *n_tokens = n;
        }
    }
    json_decref(o);
    return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* builders                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

const char *qn_api_finish_str(qn_finish_reason r) {
    switch (r) {
    case QN_FINISH_STOP: return "stop";
    case QN_FINISH_LENGTH: return "length";
    case QN_FINISH_ABORT: return "abort";
    case QN_FINISH_ERROR: return "error";
    case QN_FINISH_NONE: break;
    }
    return NULL;
}

json_t *qn_api_usage_json(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens) {
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(prompt_tokens));
    json_object_set_new(u, "completion_tokens", json_integer(completion_tokens));
    json_object_set_new(u, "total_tokens", json_integer(prompt_tokens + completion_tokens));
    json_t *d = json_object();
    json_object_set_new(d, "cached_tokens", json_integer(cached_tokens));
    json_object_set_new(u, "prompt_tokens_details", d);
    return u;
}

json_t *qn_api_stop_reason_json(const char *stop_str, int32_t stop_token) {
    if (stop_str) return qn_api_string(stop_str, strlen(stop_str));
    if (stop_token >= 0) return json_integer(stop_token);
    return json_null();
}

static json_t *bytes_array(const char *p, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)p[i]));
    return a;
}

static json_t *logprob_obj(const qn_token_logprob *t) {
    json_t *o = json_object();
    json_object_set_new(o, "token", qn_api_string(t->piece, t->piece_len));
    json_object_set_new(o, "logprob", json_real(isfinite(t->logprob) ? t->logprob : -9999.0));
    json_object_set_new(o, "bytes", bytes_array(t->piece, t->piece_len));
    return o;
}

json_t *qn_api_chat_logprob_entry(const qn_token_logprob *sampled, const qn_token_logprob *top, size_t n_top) {
    json_t *o = logprob_obj(sampled);
    json_t *tops = json_array();
    for (size_t i = 0; i < n_top; i++) json_array_append_new(tops, logprob_obj(&top[i]));
    json_object_set_new(o, "top_logprobs", tops);
    return o;
}

json_t *qn_api_completion_logprobs_new(void) {
    json_t *o = json_object();
    json_object_set_new(o, "tokens", json_array());
    json_object_set_new(o, "token_logprobs", json_array());
    json_object_set_new(o, "top_logprobs", json_array());
    json_object_set_new(o, "text_offset", json_array());
    return o;
}

void qn_api_completion_logprobs_append(json_t *lp, const qn_token_logprob *sampled, const qn_token_logprob *top,
                                       size_t n_top, int64_t text_offset) {
    json_array_append_new(json_object_get(lp, "tokens"), qn_api_string(sampled->piece, sampled->piece_len));
    json_array_append_new(json_object_get(lp, "token_logprobs"),
                          json_real(isfinite(sampled->logprob) ? sampled->logprob : -9999.0));
    json_t *t = json_object();
    for (size_t i = 0; i < n_top; i++) {
        json_t *k = qn_api_string(top[i].piece, top[i].piece_len);
        json_object_set_new(t, json_string_value(k), json_real(isfinite(top[i].logprob) ? top[i].logprob : -9999.0));
        json_decref(k);
    }
    json_array_append_new(json_object_get(lp, "top_logprobs"), t);
    json_array_append_new(json_object_get(lp, "text_offset"), json_integer(text_offset));
}

static json_t *chunk_head(const qn_api_meta *m, const char *object) {
    json_t *c = json_object();
    json_object_set_new(c, "id", qn_api_string(m->id, strlen(m->id)));
    json_object_set_new(c, "object", json_string(object));
    json_object_set_new(c, "created", json_integer(m->created));
    json_object_set_new(c, "model", qn_api_string(m->model, strlen(m->model)));
    return c;
}

static json_t *opt_finish(const char *finish_reason) {
    return finish_reason ? json_string(finish_reason) : json_null();
}

json_t *qn_api_chat_chunk(const qn_api_meta *m, int index, const char *role, const char *content,
                          size_t content_len, json_t *logprobs, const char *finish_reason, json_t *stop_reason,
                          json_t *usage) {
    json_t *c = chunk_head(m, "chat.completion.chunk");
    json_t *delta = json_object();
    if (role) json_object_set_new(delta, "role", json_string(role));
    if (content) json_object_set_new(delta, "content", qn_api_string(content, content_len));
    json_t *ch = json_object();
    json_object_set_new(ch, "index", json_integer(index));
    json_object_set_new(ch, "delta", delta);
    json_object_set_new(ch, "logprobs", logprobs ? logprobs : json_null());
    json_object_set_new(ch, "finish_reason", opt_finish(finish_reason));
    if (finish_reason) json_object_set_new(ch, "stop_reason", stop_reason ? stop_reason : json_null());
    else json_decref(stop_reason);
    json_t *choices = json_array();
    json_array_append_new(choices, ch);
    json_object_set_new(c, "choices", choices);
    json_object_set_new(c, "usage", usage ? usage : json_null());
    return c;
}

json_t *qn_api_completion_chunk(const qn_api_meta *m, int index, const char *text, size_t text_len,
                                json_t *logprobs, const char *finish_reason, json_t *stop_reason, json_t *usage) {
    json_t *c = chunk_head(m, "text_completion");
    json_t *ch = json_object();
    json_object_set_new(ch, "index", json_integer(index));
    json_object_set_new(ch, "text", qn_api_string(text ? text : "", text ? text_len : 0));
    json_object_set_new(ch, "logprobs", logprobs ? logprobs : json_null());
    json_object_set_new(ch, "finish_reason", opt_finish(finish_reason));
    if (finish_reason) json_object_set_new(ch, "stop_reason", stop_reason ? stop_reason : json_null());
    else json_decref(stop_reason);
    json_t *choices = json_array();
    json_array_append_new(choices, ch);
    json_object_set_new(c, "choices", choices);
    json_object_set_new(c, "usage", usage ? usage : json_null());
    return c;
}

json_t *qn_api_usage_chunk(const qn_api_meta *m, qn_api_kind kind, json_t *usage) {
    json_t *c = chunk_head(m, kind == QN_API_CHAT ? "chat.completion.chunk" : "text_completion");
    json_object_set_new(c, "choices", json_array());
    json_object_set_new(c, "usage", usage ? usage : json_null());
    return c;
}

json_t *qn_api_chat_choice(int index, const char *text, size_t len, json_t *logprobs, const char *finish_reason,
                           json_t *stop_reason) {
    json_t *ch = json_object();
    json_object_set_new(ch, "index", json_integer(index));
    json_t *msg = json_object();
    json_object_set_new(msg, "role", json_string("assistant"));
    json_object_set_new(msg, "content", qn_api_string(text ? text : "", text ? len : 0));
    json_object_set_new(ch, "message", msg);
    json_object_set_new(ch, "logprobs", logprobs ? logprobs : json_null());
    json_object_set_new(ch, "finish_reason", json_string(finish_reason ? finish_reason : "stop"));
    json_object_set_new(ch, "stop_reason", stop_reason ? stop_reason : json_null());
    return ch;
}

json_t *qn_api_completion_choice(int index, const char *text, size_t len, json_t *logprobs,
                                 const char *finish_reason, json_t *stop_reason) {
    json_t *ch = json_object();
    json_object_set_new(ch, "index", json_integer(index));
    json_object_set_new(ch, "text", qn_api_string(text ? text : "", text ? len : 0));
    json_object_set_new(ch, "logprobs", logprobs ? logprobs : json_null());
    json_object_set_new(ch, "finish_reason", json_string(finish_reason ? finish_reason : "stop"));
    json_object_set_new(ch, "stop_reason", stop_reason ? stop_reason : json_null());
    return ch;
}

json_t *qn_api_response(const qn_api_meta *m, qn_api_kind kind, json_t *choices, json_t *usage) {
    json_t *c = chunk_head(m, kind == QN_API_CHAT ? "chat.completion" : "text_completion");
    json_object_set_new(c, "choices", choices ? choices : json_array());
    json_object_set_new(c, "usage", usage ? usage : json_null());
    return c;
}

void qn_api_rfc3339_now(char *buf, size_t cap) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    time_t t = tv.tv_sec;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%06ldZ", base, (long)tv.tv_usec);
}

json_t *qn_api_ollama_chunk(const char *model, const char *created_at, bool chat, const char *text, size_t len,
                            const qn_api_ollama_final *fin) {
    json_t *c = json_object();
    json_object_set_new(c, "model", qn_api_string(model, strlen(model)));
    json_object_set_new(c, "created_at", json_string(created_at));
    if (chat) {
        json_t *msg = json_object();
        json_object_set_new(msg, "role", json_string("assistant"));
        json_object_set_new(msg, "content", qn_api_string(text ? text : "", text ? len : 0));
        json_object_set_new(c, "message", msg);
    } else {
        json_object_set_new(c, "response", qn_api_string(text ? text : "", text ? len : 0));
    }
    json_object_set_new(c, "done", json_boolean(fin != NULL));
    if (fin) {
        json_object_set_new(c, "done_reason", json_string(fin->done_reason ? fin->done_reason : "stop"));
        json_object_set_new(c, "total_duration", json_integer((json_int_t)fin->total_duration_ns));
        json_object_set_new(c, "load_duration", json_integer((json_int_t)fin->load_duration_ns));
        json_object_set_new(c, "prompt_eval_count", json_integer(fin->prompt_eval_count));
        json_object_set_new(c, "prompt_eval_duration", json_integer((json_int_t)fin->prompt_eval_duration_ns));
        json_object_set_new(c, "eval_count", json_integer(fin->eval_count));
        json_object_set_new(c, "eval_duration", json_integer((json_int_t)fin->eval_duration_ns));
    }
    return c;
}

char *qn_api_dump(const json_t *j, size_t *len) {
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    if (len) *len = s ? strlen(s) : 0;
    return s;
}
