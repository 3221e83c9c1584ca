/* api_json.h — JSON in and out of the HTTP API (jansson).
 * Owns: request parsing into qn_api_request (with validation that names the offending param), the
 * OpenAI error envelope, and the builders of responses and stream chunks for OpenAI and Ollama shapes.
 * Does not own: transport (sse.c, server.c) or the engine (bridge.h). Pure functions, any thread. */
#ifndef QN_HOST_API_JSON_H
#define QN_HOST_API_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "host/bridge.h"

/* --- errors: {"error":{"message","type","param","code"}} --- */

typedef struct qn_api_error {
    int status;          /* HTTP status: 400, 401, 404, 413, 429, 500, 501, 503 */
    const char *type;    /* static: "invalid_request_error", "exceed_context_size_error", ... */
    char param[96];      /* offending field ("messages[0].content"), "" = null */
    char message[768];
    int32_t n_prompt_tokens; /* exceed_context_size_error only (llama-server extras), else 0 */
    int32_t n_ctx;
} qn_api_error;

#define QN_API_ERR_INVALID "invalid_request_error"
#define QN_API_ERR_CONTEXT "exceed_context_size_error"
#define QN_API_ERR_AUTH "authentication_error"
#define QN_API_ERR_NOT_FOUND "not_found_error"
#define QN_API_ERR_NOT_SUPPORTED "not_supported_error"
#define QN_API_ERR_SERVER "server_error"
#define QN_API_ERR_UNAVAILABLE "unavailable_error"
#define QN_API_ERR_RATE "rate_limit_error"

/* Fills e and returns -1 (so a parser can `return qn_api_error_set(...)`). param may be NULL. */
int qn_api_error_set(qn_api_error *e, int status, const char *type, const char *param, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
json_t *qn_api_error_json(const qn_api_error *e); /* new reference */
/* Maps an engine status (submit/tokenize failure) to HTTP status + type. */
void qn_api_error_from_status(qn_api_error *e, qn_status st, const char *msg);

/* --- requests --- */

typedef enum qn_api_kind {
    QN_API_CHAT = 0,       /* POST /v1/chat/completions */
    QN_API_COMPLETION = 1, /* POST /v1/completions */
    QN_API_OLLAMA_GENERATE = 2,
    QN_API_OLLAMA_CHAT = 3,
} qn_api_kind;

typedef struct qn_api_prompt {
    char *text;       /* NUL-terminated, or NULL when the prompt is token ids */
    size_t text_len;
    int32_t *tokens;  /* [n_tokens] when the client sent ids */
    size_t n_tokens;
} qn_api_prompt;

typedef struct qn_api_limits {
    int32_t max_n;        /* cap on n (default 16) */
    int32_t max_prompts;  /* cap on prompt list length (default 256) */
    int32_t max_logprobs; /* cap on top_logprobs / logprobs (default 20) */
    int32_t max_stop;     /* cap on stop strings (default 16) */
} qn_api_limits;
void qn_api_limits_default(qn_api_limits *l);

typedef struct qn_api_request {
    qn_api_kind kind;
    char *model;                 /* as sent, NULL when absent */
    /* chat (OpenAI, Ollama /api/chat, Ollama /api/generate unless raw) */
    qn_chat_message *messages;   /* [n_messages]; role/content owned here */
    size_t n_messages;
    bool add_generation_prompt;  /* default true */
    /* completions (OpenAI) and Ollama raw generate */
    qn_api_prompt *prompts;      /* [n_prompts] */
    size_t n_prompts;
    bool raw;                    /* Ollama: prompt is used verbatim, no template */
    /* sampling; string arrays owned here (sampling.stop etc. point into them) */
    qn_sampling_params sampling;
    bool max_tokens_set;         /* false: the host picks (16 for completions, the rest of the context otherwise) */
    char **stop_owned;           /* [sampling.n_stop] */
    int32_t *stop_ids_owned;
    qn_logit_bias *bias_owned;
    char *response_format_owned;
    int32_t n;                   /* choices per prompt, >= 1 */
    bool stream;
    bool include_usage;          /* stream_options.include_usage */
    bool continuous_usage;       /* stream_options.continuous_usage_stats (vLLM) */
    bool chat_logprobs;          /* chat: logprobs=true (then sampling.logprobs = top_logprobs) */
} qn_api_request;

/* Parse + validate. On failure returns -1 with err filled (status 400 and the param), and *out is empty. */
int qn_api_parse_request(qn_api_kind kind, const char *body, size_t len, const qn_api_limits *lim,
                         qn_api_request *out, qn_api_error *err);
void qn_api_request_free(qn_api_request *r);

typedef struct qn_api_tokenize_req {
    char *text;                 /* "content" (llama-server) or "prompt" (vLLM) */
    size_t text_len;
    qn_chat_message *messages;  /* vLLM chat form */
    size_t n_messages;
    bool add_generation_prompt; /* default true */
    bool add_special;           /* add_special / add_special_tokens; default: content->false, prompt->true, messages->false */
    bool parse_special;         /* default true */
    bool with_pieces;           /* llama-server: tokens as [{"id","piece"}] */
    bool return_token_strs;     /* vLLM: add "token_strs" */
} qn_api_tokenize_req;
int qn_api_parse_tokenize(const char *body, size_t len, qn_api_tokenize_req *out, qn_api_error *err);
void qn_api_tokenize_req_free(qn_api_tokenize_req *r);
/* {"tokens":[...]} -> ids (malloc'd). */
int qn_api_parse_detokenize(const char *body, size_t len, int32_t **tokens, size_t *n_tokens, qn_api_error *err);

/* --- response identity --- */

typedef struct qn_api_meta {
    const char *id;      /* "chatcmpl-..." / "cmpl-..." */
    const char *model;   /* served name */
    int64_t created;     /* unix seconds */
} qn_api_meta;

/* --- strings: invalid UTF-8 becomes U+FFFD, never a NULL from jansson --- */
json_t *qn_api_string(const char *s, size_t len);
/* Length of the longest prefix of s[0..len) that does not end inside a UTF-8 code point. */
size_t qn_utf8_complete_prefix(const char *s, size_t len);

const char *qn_api_finish_str(qn_finish_reason r); /* "stop" | "length" | "abort" | "error" | NULL */

json_t *qn_api_usage_json(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens);
/* vLLM stop_reason: the matched string, the token id, or null. */
json_t *qn_api_stop_reason_json(const char *stop_str, int32_t stop_token);

/* --- logprobs --- */
/* Chat: one entry of choices[].logprobs.content: {"token","logprob","bytes","top_logprobs":[...]} */
json_t *qn_api_chat_logprob_entry(const qn_token_logprob *sampled, const qn_token_logprob *top, size_t n_top);
/* Completions: {"tokens":[],"token_logprobs":[],"top_logprobs":[],"text_offset":[]} */
json_t *qn_api_completion_logprobs_new(void);
void qn_api_completion_logprobs_append(json_t *lp, const qn_token_logprob *sampled, const qn_token_logprob *top,
                                       size_t n_top, int64_t text_offset);

/* --- OpenAI stream chunks (new references). Steals logprobs and usage (may be NULL). --- */
/* role/content may be NULL (omitted from delta); finish_reason NULL -> null. usage NULL -> "usage":null. */
json_t *qn_api_chat_chunk(const qn_api_meta *m, int index, const char *role, const char *content,
                          size_t content_len, json_t *logprobs, const char *finish_reason, json_t *stop_reason,
                          json_t *usage);
json_t *qn_api_completion_chunk(const qn_api_meta *m, int index, const char *text, size_t text_len,
                                json_t *logprobs, const char *finish_reason, json_t *stop_reason, json_t *usage);
/* The include_usage chunk: "choices":[] and the usage object. */
json_t *qn_api_usage_chunk(const qn_api_meta *m, qn_api_kind kind, json_t *usage);

/* --- OpenAI full responses. Choices are built with the *_choice helpers (steal logprobs, stop_reason). --- */
json_t *qn_api_chat_choice(int index, const char *text, size_t len, json_t *logprobs, const char *finish_reason,
                           json_t *stop_reason);
json_t *qn_api_completion_choice(int index, const char *text, size_t len, json_t *logprobs,
                                 const char *finish_reason, json_t *stop_reason);
/* Steals choices (array) and usage. */
json_t *qn_api_response(const qn_api_meta *m, qn_api_kind kind, json_t *choices, json_t *usage);

/* --- Ollama (NDJSON lines and the non-stream object) --- */
typedef struct qn_api_ollama_final {
    const char *done_reason;     /* "stop" | "length" | ... */
    uint64_t total_duration_ns, load_duration_ns, prompt_eval_duration_ns, eval_duration_ns;
    int64_t prompt_eval_count, eval_count;
} qn_api_ollama_final;
/* created_at: RFC 3339 UTC. fin NULL -> "done":false. chat selects "message" vs "response". */
json_t *qn_api_ollama_chunk(const char *model, const char *created_at, bool chat, const char *text, size_t len,
                            const qn_api_ollama_final *fin);
void qn_api_rfc3339_now(char *buf, size_t cap);

/* --- serialization --- */
/* Compact dump (malloc'd, NUL-terminated); NULL on allocation failure. */
char *qn_api_dump(const json_t *j, size_t *len);

#endif /* QN_HOST_API_JSON_H */
