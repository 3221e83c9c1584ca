/* bridge.h — the engine interface host/ talks to (qn_engine_iface, a C vtable) and the bridge that carries
 * token events from the engine thread to the libevent loop thread.
 * Owns: the event queue and one handle per submitted request (qn_bridge_req). Not the engine, not any
 * evhttp object: the loop thread owns those and sees events only from qn_bridge's drain callback.
 * Threads: the engine calls qn_stream_sink.on_event on its own thread(s); the bridge copies the event,
 * queues it and wakes the loop with event_active() on a user event. Everything else runs on the loop. */
#ifndef QN_HOST_BRIDGE_H
#define QN_HOST_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

/* ======================================================================================================
 * The engine interface. All pointers passed INTO the engine are borrowed for the duration of the call
 * (the engine copies what it keeps). Outputs marked "malloc'd" are released by the host with free().
 * ====================================================================================================== */

typedef struct qn_logit_bias {
    int32_t token;
    float bias; /* added to the logit, [-100, 100] */
} qn_logit_bias;

typedef struct qn_sampling_params {
    float temperature;        /* >= 0; 0 = greedy (argmax) */
    float top_p;              /* (0, 1]; 1 = off */
    int32_t top_k;            /* <= 0 = off */
    float min_p;              /* [0, 1]; 0 = off */
    float repetition_penalty; /* > 0; 1 = off */
    float presence_penalty;   /* [-2, 2]; 0 = off */
    float frequency_penalty;  /* [-2, 2]; 0 = off */
    bool has_seed;            /* false: the engine picks a seed */
    uint64_t seed;            /* per-request RNG stream; host gives choice i of n the seed + i */
    int32_t max_tokens;       /* >= 1; the host guarantees n_prompt + max_tokens <= max_model_len when it knows
                               * both; 0 = "until the context is full" (the host could not compute it) */
    int32_t min_tokens;       /* >= 0: EOS and stop tokens are masked before this many tokens */
    bool ignore_eos;          /* keep generating past EOS (fixed-length benchmarks) */
    bool skip_special_tokens; /* leave special tokens out of the text deltas (default true) */
    bool include_stop_str_in_output;
    const char *const *stop;         /* [n_stop] non-empty UTF-8 stop strings; the matched one is cut from text */
    size_t n_stop;
    const int32_t *stop_token_ids;   /* [n_stop_token_ids] extra tokens that end the sequence like EOS */
    size_t n_stop_token_ids;
    const qn_logit_bias *logit_bias; /* [n_logit_bias] */
    size_t n_logit_bias;
    int32_t logprobs;                /* -1 = none; k >= 0: logprob of the sampled token + top-k alternatives */
    const char *response_format;     /* JSON text of response_format unless it is {"type":"text"}; else NULL.
                                      * An engine without structured output returns QN_ERR_UNSUPPORTED. */
} qn_sampling_params;

typedef struct qn_gen_request {
    const char *request_id;       /* printable ASCII, e.g. "chatcmpl-<x-request-id>-1"; for logs and traces */
    const int32_t *prompt_tokens; /* [n_prompt_tokens] when the host tokenized (the normal case) */
    size_t n_prompt_tokens;
    const char *prompt_text;      /* used only when prompt_tokens == NULL: the engine tokenizes it
                                   * (add_special = true, parse_special = true) and checks the context */
    qn_sampling_params sampling;
    uint64_t arrival_ns;          /* CLOCK_MONOTONIC at HTTP arrival (TTFT is measured from here) */
} qn_gen_request;

typedef enum qn_finish_reason {
    QN_FINISH_NONE = 0,
    QN_FINISH_STOP = 1,   /* EOS, a stop token or a stop string */
    QN_FINISH_LENGTH = 2, /* max_tokens or the end of the context */
    QN_FINISH_ABORT = 3,  /* abort() was called, or the engine is shutting down */
    QN_FINISH_ERROR = 4,  /* the engine failed this request; error_code/error_msg say why */
} qn_finish_reason;

typedef enum qn_gen_event_kind {
    QN_GEN_EVENT_TOKEN = 1, /* one sampled token */
    QN_GEN_EVENT_FINAL = 2, /* the request is finished; exactly once, always last */
} qn_gen_event_kind;

typedef struct qn_token_logprob {
    int32_t token;
    float logprob;
    const char *piece; /* [piece_len] raw bytes of this token alone; may be part of a code point */
    size_t piece_len;
} qn_token_logprob;

typedef struct qn_gen_usage {
    int32_t prompt_tokens;     /* tokens in the prompt */
    int32_t completion_tokens; /* tokens generated */
    int32_t cached_tokens;     /* prompt tokens served from the prefix cache */
} qn_gen_usage;

typedef struct qn_gen_event {
    qn_gen_event_kind kind;
    uint64_t t_ns; /* CLOCK_MONOTONIC when produced; 0 = the bridge stamps it on arrival. The first TOKEN
                    * event marks the end of prefill: its time is the first-token time. */
    /* TOKEN and FINAL: text released by the detokenizer since the previous event. Always whole UTF-8
     * code points; a partial code point or a possible stop-string prefix is held back and released with
     * a later event (FINAL flushes what is left). May be empty. */
    const char *text;
    size_t text_len;
    /* TOKEN only */
    int32_t token;
    bool has_logprobs;                 /* true when the request asked for logprobs */
    qn_token_logprob sampled;          /* the sampled token's id, logprob and piece */
    const qn_token_logprob *top;       /* [n_top] best alternatives, best first */
    size_t n_top;
    /* FINAL only */
    qn_finish_reason finish_reason;
    const char *stop_str;              /* the stop string that matched (STOP), else NULL */
    int32_t stop_token;                /* STOP on a stop_token_ids entry: that id; else -1 (EOS and stop
                                        * strings report -1, so stop_reason is null for EOS as in vLLM) */
    qn_gen_usage usage;
    qn_status error_code;              /* ERROR: what failed */
    const char *error_msg;             /* ERROR: human message, else NULL */
} qn_gen_event;

/* Where the engine delivers a request's events. The engine copies the struct at submit. Contract:
 *  - on_event is called on the engine's thread, never concurrently for the same request;
 *  - ev and everything it points to are borrowed for the call only;
 *  - after a successful submit, exactly one FINAL is delivered, last; nothing after it (ctx may be freed);
 *  - after a failed submit, on_event is never called. */
typedef struct qn_stream_sink {
    void *ctx;
    void (*on_event)(void *ctx, const qn_gen_event *ev);
} qn_stream_sink;

typedef struct qn_chat_message {
    const char *role;    /* "system", "developer", "user", "assistant", "tool", ...; NUL-terminated */
    const char *content; /* UTF-8 text; content-part arrays are already joined; NUL-terminated at content_len */
    size_t content_len;  /* bytes of content; may hold U+0000 ("\u0000" in the request JSON); 0 = strlen(content) */
} qn_chat_message;

typedef struct qn_engine_stats {
    int32_t num_running;           /* sequences in the running batch */
    int32_t num_waiting;           /* sequences queued (incl. preempted) */
    double kv_usage;               /* used KV blocks / total, 0..1 */
    int64_t kv_blocks_free;
    int64_t kv_blocks_total;
    uint64_t prefix_cache_queries; /* cumulative, in tokens */
    uint64_t prefix_cache_hits;    /* cumulative, in tokens */
    uint64_t num_preemptions;      /* cumulative */
} qn_engine_stats;

/* The vtable. All calls except on_event come from the loop thread while the engine thread runs, so the
 * engine makes them thread-safe. Optional members may be NULL (the host then answers 501 / skips the
 * check); submit and abort are required. */
typedef struct qn_engine_iface {
    void *ctx;
    /* Queue a request. *id is written before any event can be observed. Returns QN_OK, or:
     * QN_ERR_BUSY (-> 429), QN_ERR_CONTEXT (-> 400 exceed_context_size_error), QN_ERR_INVALID_ARG (-> 400),
     * QN_ERR_UNSUPPORTED (-> 400 not_supported_error), anything else (-> 500/503). err may carry a message. */
    qn_status (*submit)(void *ctx, const qn_gen_request *req, const qn_stream_sink *sink, uint64_t *id,
                        qn_error *err);
    /* Cancel a request; idempotent; unknown or finished ids are ignored. The engine frees its KV blocks
     * within one engine step and still delivers FINAL (ABORT) unless FINAL was already delivered. */
    void (*abort)(void *ctx, uint64_t id);
    /* text -> tokens (malloc'd *tokens, *n_tokens). */
    qn_status (*tokenize)(void *ctx, const char *text, size_t len, bool add_special, bool parse_special,
                          int32_t **tokens, size_t *n_tokens, qn_error *err);
    /* tokens -> UTF-8 text (malloc'd, NUL-terminated; *len excludes the NUL). */
    qn_status (*detokenize)(void *ctx, const int32_t *tokens, size_t n_tokens, bool skip_special, char **text,
                            size_t *len, qn_error *err);
    /* messages -> prompt text with the model's chat template (malloc'd, NUL-terminated; *text_len excludes the
     * NUL and counts any U+0000 the message contents carry). */
    qn_status (*apply_chat_template)(void *ctx, const qn_chat_message *msgs, size_t n_msgs,
                                     bool add_generation_prompt, char **text, size_t *text_len, qn_error *err);
    int32_t (*max_model_len)(void *ctx);  /* per-sequence context; <= 0 = unknown (no host-side check) */
    const char *(*model_name)(void *ctx); /* default served name; the string lives as long as the engine */
    void (*stats)(void *ctx, qn_engine_stats *out);
} qn_engine_iface;

/* ======================================================================================================
 * The bridge (loop-thread side).
 * ====================================================================================================== */

typedef struct qn_bridge qn_bridge;
typedef struct qn_bridge_req qn_bridge_req;

/* Delivers one event on the loop thread; ev is borrowed for the call. After a FINAL the handle is freed
 * by the bridge: the owner drops its qn_bridge_req pointer in this callback. */
typedef void (*qn_bridge_event_fn)(void *user, size_t slot, const qn_gen_event *ev);

/* --- lifecycle (loop thread; base must have been created after evthread_use_pthreads()) --- */
qn_status qn_bridge_create(struct event_base *base, qn_bridge **out, qn_error *err);
/* Closes the bridge. Requests still running in the engine keep a reference to the shared queue core:
 * their later events are dropped and their handles freed on the engine thread when FINAL arrives, so
 * the engine may outlive the server. Destroy before freeing base. NULL is a no-op. */
void qn_bridge_destroy(qn_bridge *b);

/* --- per request (loop thread) --- */
/* Submits req through eng and returns a handle; fn(user, slot, ev) receives its events. On failure no
 * handle exists and no event is ever delivered. eng must outlive the handle. */
qn_status qn_bridge_submit(qn_bridge *b, const qn_engine_iface *eng, const qn_gen_request *req,
                           qn_bridge_event_fn fn, void *user, size_t slot, qn_bridge_req **out, qn_error *err);
/* Stops delivery to fn: later events (FINAL included) are dropped; the handle is freed when FINAL
 * arrives. The caller forgets r. */
void qn_bridge_detach(qn_bridge_req *r);
/* Asks the engine to abort (once) and detaches. The caller forgets r. */
void qn_bridge_cancel(qn_bridge_req *r);
uint64_t qn_bridge_req_id(const qn_bridge_req *r);

/* --- queries --- */
size_t qn_bridge_n_live(const qn_bridge *b); /* handles not yet finished (loop thread) */

#ifdef __cplusplus
}
#endif
#endif /* QN_HOST_BRIDGE_H */
