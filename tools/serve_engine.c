/* serve_engine.c — qn_engine_iface over qn_engine for `quern serve` (serve_engine.h).
 * Threads: submit/abort/tokenize/... run on the server's loop thread; the per-request event callback runs
 * on the engine thread and only translates and forwards (the bridge copies and queues). */
#include "serve_engine.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tokenizer/chat_template.h"
#include "tokenizer/vocab.h"

struct qn_serve_engine {
    char *model_name;
    _Atomic(qn_engine *) eng;         /* NULL until attached */
    _Atomic(const qn_model *) model;
    uint64_t seed_state;              /* loop thread only: seeds for requests that sent none */
};

/* One submitted request, owned by the engine callback from a successful submit until FINISH. */
typedef struct serve_req {
    qn_stream_sink sink;
    const qn_vocab *vocab;
    bool logprobs;
    bool ignore_eos;
    int32_t *stop_ids;                /* [n_stop_ids] to tell stop_token_ids from EOS in FINAL */
    int32_t n_stop_ids;
    int32_t max_tokens;               /* > 0: the max_tokens-th token is folded into FINAL (see below) */
    int32_t n_tokens;                 /* TOKEN events seen */
    char *tail;                       /* text the engine flushed just before FINISH: goes out with FINAL */
    size_t n_tail, cap_tail;
    char *pieces;                     /* logprob piece scratch */
    size_t cap_pieces;
} serve_req;

/* ---------------------------------------------------------------- helpers */

static qn_engine *get_engine(const qn_serve_engine *se) { return atomic_load(&((qn_serve_engine *)se)->eng); }
static const qn_model *get_model(const qn_serve_engine *se) { return atomic_load(&((qn_serve_engine *)se)->model); }

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t now_ns_from_s(double t) { return t > 0 ? (uint64_t)(t * 1e9) : 0; }

void qn_serve_default_model_name(const char *path, char *buf, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base && base[1] ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".gguf")) n -= 5;
    snprintf(buf, cap, "%.*s", (int)n, base);
}

static void serve_req_free(serve_req *r) {
    if (!r) return;
    free(r->stop_ids);
    free(r->tail);
    free(r->pieces);
    free(r);
}

/* Appends token id's raw bytes (control tokens rendered) to the piece scratch; returns the offset or -1. */
static long piece_append(serve_req *r, size_t *used, int32_t id) {
    for (int attempt = 0; attempt < 2; attempt++) {
        int32_t n = 0;
        size_t room = r->cap_pieces - *used;
        qn_status st = qn_vocab_token_to_piece(r->vocab, id, r->pieces ? r->pieces + *used : NULL,
                                               (int32_t)(room > 0x7fffffff ? 0x7fffffff : room), &n, true);
        if (st == QN_OK) {
            long off = (long)*used;
            *used += (size_t)n;
            return off;
        }
        if (n <= 0 || attempt) return -1;
        size_t cap = (r->cap_pieces + (size_t)n) * 2 + 256;
        char *p = realloc(r->pieces, cap);
        if (!p) return -1;
        r->pieces = p;
        r->cap_pieces = cap;
    }
    return -1;
}

/* ---------------------------------------------------------------- engine thread */

static bool tail_append(serve_req *r, const char *s, size_t n) {
    if (r->n_tail + n + 1 > r->cap_tail) {
        size_t cap = (r->n_tail + n + 1) * 2;
        char *t = realloc(r->tail, cap);
        if (!t) return false;
        r->tail = t;
        r->cap_tail = cap;
    }
    memcpy(r->tail + r->n_tail, s, n);
    r->n_tail += n;
    return true;
}

static void on_engine_event(void *user, const qn_event *ev) {
    serve_req *r = user;
    if (ev->kind == QN_EVENT_TOKEN && ev->token >= 0 && ++r->n_tokens == r->max_tokens) {
        /* The max_tokens-th token is the last: FINISH follows in this same engine call, so its text goes out
         * with FINAL and the stream's last chunk carries both text and finish_reason (as vLLM's does); a
         * separate empty finish chunk would add a ~0 s gap to every client's inter-token latency. */
        tail_append(r, ev->text, ev->text_len);
        return;
    }
    if (ev->kind == QN_EVENT_TOKEN && ev->token < 0) {
        /* held-back text released at the end: it belongs to FINAL (bridge.h: FINAL flushes what is left) */
        tail_append(r, ev->text, ev->text_len);
        return;
    }
    qn_gen_event g;
    memset(&g, 0, sizeof g);
    g.t_ns = now_ns_from_s(ev->t_now);
    if (ev->kind == QN_EVENT_TOKEN) {
        g.kind = QN_GEN_EVENT_TOKEN;
        g.text = ev->text;
        g.text_len = ev->text_len;
        g.token = ev->token;
        g.stop_token = -1;
        qn_token_logprob top[20];
        if (r->logprobs) {
            const int32_t n_top = ev->n_top > 20 ? 20 : (ev->n_top > 0 ? ev->n_top : 0);
            long off[21];
            size_t len[21], used = 0;
            for (int32_t i = 0; i <= n_top; i++) {
                const int32_t id = i == 0 ? ev->token : ev->top[i - 1].id;
                size_t before = used;
                off[i] = piece_append(r, &used, id);
                len[i] = off[i] >= 0 ? used - before : 0;
            }
            g.has_logprobs = true;
            g.sampled = (qn_token_logprob){.token = ev->token, .logprob = ev->logprob,
                                           .piece = off[0] >= 0 ? r->pieces + off[0] : "", .piece_len = len[0]};
            for (int32_t i = 0; i < n_top; i++)
                top[i] = (qn_token_logprob){.token = ev->top[i].id, .logprob = ev->top[i].logprob,
                                            .piece = off[i + 1] >= 0 ? r->pieces + off[i + 1] : "",
                                            .piece_len = len[i + 1]};
            g.top = n_top ? top : NULL;
            g.n_top = (size_t)n_top;
        }
        r->sink.on_event(r->sink.ctx, &g);
        return;
    }
    g.kind = QN_GEN_EVENT_FINAL;
    g.text = r->tail ? r->tail : "";
    g.text_len = r->n_tail;
    switch (ev->finish) {
    case QN_FINISHED_STOP: g.finish_reason = QN_FINISH_STOP; break;
    case QN_FINISHED_LENGTH: g.finish_reason = QN_FINISH_LENGTH; break;
    case QN_FINISHED_ABORT: g.finish_reason = QN_FINISH_ABORT; break;
    default: g.finish_reason = QN_FINISH_ERROR; break;
    }
    g.stop_str = ev->stop_reason;
    /* vLLM: stop_reason is null for EOS, the id for a stop_token_ids entry */
    g.stop_token = -1;
    if (ev->finish == QN_FINISHED_STOP && ev->stop_token >= 0 &&
        (r->ignore_eos || !qn_vocab_is_eog(r->vocab, ev->stop_token)))
        for (int32_t i = 0; i < r->n_stop_ids; i++)
            if (r->stop_ids[i] == ev->stop_token) g.stop_token = ev->stop_token;
    g.usage = (qn_gen_usage){.prompt_tokens = ev->n_prompt_tokens, .completion_tokens = ev->n_completion_tokens,
                             .cached_tokens = ev->n_cached_tokens};
    if (g.finish_reason == QN_FINISH_ERROR) {
        g.error_code = ev->error != QN_OK ? ev->error : QN_ERR_INTERNAL;
        g.error_msg = ev->error_msg ? ev->error_msg : qn_status_str(g.error_code);
    }
    r->sink.on_event(r->sink.ctx, &g);
    serve_req_free(r); /* nothing follows FINISH */
}

/* ---------------------------------------------------------------- vtable (loop thread) */

static qn_status tokenize_impl(const qn_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                               int32_t **tokens, size_t *n_tokens, qn_error *err) {
    if (len > (size_t)(0x7fffffff / 3 - 2)) return qn_error_set(err, QN_ERR_INVALID_ARG, "prompt: too long");
    const int32_t cap = (int32_t)(3 * len + 2); /* vocab.h's bound */
    int32_t *t = malloc(sizeof(int32_t) * (size_t)cap);
    if (!t) return qn_error_set(err, QN_ERR_NOMEM, "tokenize: out of memory");
    int32_t n = 0;
    qn_status st = qn_vocab_tokenize(v, text, len, add_special, parse_special, t, cap, &n);
    if (st != QN_OK) {
        free(t);
        return qn_error_set(err, st, "tokenize: %s", qn_status_str(st));
    }
    *tokens = t;
    *n_tokens = (size_t)n;
    return QN_OK;
}

static qn_status se_submit(void *ctx, const qn_gen_request *req, const qn_stream_sink *sink, uint64_t *id,
                           qn_error *err) {
    qn_serve_engine *se = ctx;
    qn_engine *eng = get_engine(se);
    const qn_model *m = get_model(se);
    if (!eng || !m) return qn_error_set(err, QN_ERR_NO_DEVICE, "the model is still loading");
    const qn_sampling_params *s = &req->sampling;
    if (s->response_format)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "response_format (structured output) is not supported yet");
    if (s->n_stop > 0x7fffffff || s->n_stop_token_ids > 0x7fffffff || s->n_logit_bias > 0x7fffffff)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "too many stop strings, stop tokens or logit biases");

    int32_t *owned = NULL;
    const int32_t *prompt = req->prompt_tokens;
    size_t n_prompt = req->n_prompt_tokens;
    if (!prompt) {
        if (!req->prompt_text) return qn_error_set(err, QN_ERR_INVALID_ARG, "prompt: missing");
        qn_status st = tokenize_impl(m->vocab, req->prompt_text, strlen(req->prompt_text), true, true, &owned,
                                     &n_prompt, err);
        if (st != QN_OK) return st;
        prompt = owned;
    }
    if (n_prompt > 0x7fffffff) {
        free(owned);
        return qn_error_set(err, QN_ERR_CONTEXT, "prompt: %zu tokens", n_prompt);
    }

    qn_gen_params p;
    memset(&p, 0, sizeof p);
    p.sampling = qn_sampler_params_default();
    p.sampling.temperature = s->temperature;
    p.sampling.top_k = s->top_k;
    p.sampling.top_p = s->top_p;
    p.sampling.min_p = s->min_p;
    p.sampling.repetition_penalty = s->repetition_penalty;
    p.sampling.presence_penalty = s->presence_penalty;
    p.sampling.frequency_penalty = s->frequency_penalty;
    p.sampling.seed = s->has_seed ? s->seed : splitmix64(&se->seed_state);
    p.max_tokens = s->max_tokens;
    p.min_tokens = s->min_tokens;
    p.ignore_eos = s->ignore_eos;
    p.stop = s->stop;
    p.n_stop = (int32_t)s->n_stop;
    p.stop_token_ids = s->stop_token_ids;
    p.n_stop_token_ids = (int32_t)s->n_stop_token_ids;
    p.n_logprobs = s->logprobs < 0 ? -1 : s->logprobs;
    p.include_stop_str_in_output = s->include_stop_str_in_output;
    p.render_special = !s->skip_special_tokens;
    qn_token_bias *bias = NULL;
    if (s->n_logit_bias) {
        bias = malloc(sizeof *bias * s->n_logit_bias);
        if (!bias) {
            free(owned);
            return qn_error_set(err, QN_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < s->n_logit_bias; i++)
            bias[i] = (qn_token_bias){.token = s->logit_bias[i].token, .bias = s->logit_bias[i].bias};
        p.logit_bias = bias;
        p.n_logit_bias = (int32_t)s->n_logit_bias;
    }

    serve_req *r = calloc(1, sizeof *r);
    if (r && s->n_stop_token_ids) {
        r->stop_ids = malloc(sizeof(int32_t) * s->n_stop_token_ids);
        if (r->stop_ids) memcpy(r->stop_ids, s->stop_token_ids, sizeof(int32_t) * s->n_stop_token_ids);
    }
    if (!r || (s->n_stop_token_ids && !r->stop_ids)) {
        serve_req_free(r);
        free(bias);
        free(owned);
        return qn_error_set(err, QN_ERR_NOMEM, "out of memory");
    }
    r->sink = *sink;
    r->vocab = m->vocab;
    r->logprobs = p.n_logprobs >= 0;
    r->ignore_eos = s->ignore_eos;
    r->n_stop_ids = (int32_t)s->n_stop_token_ids;
    /* folding needs no logprobs (FINAL has none) and a first TOKEN to mark the end of prefill */
    r->max_tokens = !r->logprobs && s->max_tokens >= 2 ? s->max_tokens : 0;

    qn_status st = qn_engine_submit(eng, prompt, (int32_t)n_prompt, &p, on_engine_event, r, id, err);
    free(bias);  /* the engine copied what it keeps */
    free(owned);
    if (st != QN_OK) serve_req_free(r); /* no event will ever come */
    /* on success r belongs to the engine callback now: not touched again here */
    return st;
}

static void se_abort(void *ctx, uint64_t id) {
    qn_engine *eng = get_engine(ctx);
    if (eng) qn_engine_abort(eng, id);
}

static qn_status se_tokenize(void *ctx, const char *text, size_t len, bool add_special, bool parse_special,
                             int32_t **tokens, size_t *n_tokens, qn_error *err) {
    const qn_model *m = get_model(ctx);
    if (!m) return qn_error_set(err, QN_ERR_NO_DEVICE, "the model is still loading");
    return tokenize_impl(m->vocab, text, len, add_special, parse_special, tokens, n_tokens, err);
}

static qn_status se_detokenize(void *ctx, const int32_t *tokens, size_t n_tokens, bool skip_special, char **text,
                               size_t *len, qn_error *err) {
    const qn_model *m = get_model(ctx);
    if (!m) return qn_error_set(err, QN_ERR_NO_DEVICE, "the model is still loading");
    const int32_t n_vocab = qn_vocab_n_tokens(m->vocab);
    if (n_tokens > 0x7fffffff) return qn_error_set(err, QN_ERR_INVALID_ARG, "tokens: too many");
    for (size_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return qn_error_set(err, QN_ERR_INVALID_ARG, "tokens: id %d out of range [0, %d)", tokens[i], n_vocab);
    int32_t cap = 256, n = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        char *buf = malloc((size_t)cap + 1);
        if (!buf) return qn_error_set(err, QN_ERR_NOMEM, "detokenize: out of memory");
        qn_status st = qn_vocab_detokenize(m->vocab, tokens, (int32_t)n_tokens, buf, cap, &n, false, !skip_special);
        if (st == QN_OK) {
            buf[n] = '\0';
            *text = buf;
            *len = (size_t)n;
            return QN_OK;
        }
        free(buf);
        if (n <= cap) return qn_error_set(err, st, "detokenize: %s", qn_status_str(st));
        cap = n;
    }
    return qn_error_set(err, QN_ERR_INTERNAL, "detokenize: size changed between calls");
}

static qn_status se_apply_chat_template(void *ctx, const qn_chat_message *msgs, size_t n_msgs,
                                        bool add_generation_prompt, char **text, size_t *text_len, qn_error *err) {
    const qn_model *m = get_model(ctx);
    if (!m) return qn_error_set(err, QN_ERR_NO_DEVICE, "the model is still loading");
    if (!m->chat) return qn_error_set(err, QN_ERR_UNSUPPORTED, "the model has no chat template");
    qn_chat_msg *cm = malloc(sizeof *cm * (n_msgs ? n_msgs : 1));
    if (!cm) return qn_error_set(err, QN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n_msgs; i++)
        cm[i] = (qn_chat_msg){.role = msgs[i].role, .content = msgs[i].content, .content_len = msgs[i].content_len};
    char *buf = NULL;
    size_t len = 0;
    qn_status st = qn_chat_template_render_n(m->chat, cm, n_msgs, add_generation_prompt, NULL, &buf, &len);
    free(cm);
    if (st != QN_OK) return qn_error_set(err, st == QN_ERR_NOMEM ? st : QN_ERR_INVALID_ARG, "chat template: %s", qn_status_str(st));
    *text = buf;
    *text_len = len; /* a content may hold U+0000 */
    return QN_OK;
}

static int32_t se_max_model_len(void *ctx) {
    qn_engine *eng = get_engine(ctx);
    return eng ? qn_engine_max_model_len(eng) : 0;
}

static const char *se_model_name(void *ctx) { return ((qn_serve_engine *)ctx)->model_name; }

static void se_stats(void *ctx, qn_engine_stats *out) {
    memset(out, 0, sizeof *out);
    qn_engine *eng = get_engine(ctx);
    if (!eng) return;
    qn_engine_snapshot s;
    qn_engine_get_stats(eng, &s);
    out->num_running = s.n_running;
    out->num_waiting = s.n_waiting;
    out->kv_usage = s.kv_usage;
    out->kv_blocks_free = s.n_blocks_free;
    out->kv_blocks_total = s.n_blocks_total;
    out->prefix_cache_queries = s.prefix_queries > 0 ? (uint64_t)s.prefix_queries : 0;
    out->prefix_cache_hits = s.prefix_hits > 0 ? (uint64_t)s.prefix_hits : 0;
    out->num_preemptions = s.n_preemptions > 0 ? (uint64_t)s.n_preemptions : 0;
}

/* ---------------------------------------------------------------- lifecycle */

qn_serve_engine *qn_serve_engine_create(const char *model_name) {
    qn_serve_engine *se = calloc(1, sizeof *se);
    if (!se) return NULL;
    se->model_name = strdup(model_name ? model_name : "quern");
    if (!se->model_name) {
        free(se);
        return NULL;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    se->seed_state = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 24) ^ ((uint64_t)getpid() << 44);
    atomic_init(&se->eng, NULL);
    atomic_init(&se->model, NULL);
    return se;
}

void qn_serve_engine_attach(qn_serve_engine *se, const qn_model *m, qn_engine *e) {
    atomic_store(&se->model, m);
    atomic_store(&se->eng, e);
}

void qn_serve_engine_destroy(qn_serve_engine *se) {
    if (!se) return;
    qn_engine *e = atomic_exchange(&se->eng, NULL);
    if (e) { /* where the engine thread's time went: the first thing to read when serving is slow */
        qn_engine_snapshot s;
        qn_engine_get_stats(e, &s);
        if (s.n_forward_steps > 0)
            fprintf(stderr,
                    "quern serve: engine: %lld forward steps, %.1f tokens/step, %lld sampled on the device; "
                    "schedule %.2f s, forward %.2f s, host sampling + output %.2f s, between steps %.2f s\n",
                    (long long)s.n_forward_steps, (double)s.n_step_tokens / (double)s.n_forward_steps,
                    (long long)s.n_device_sampled_steps, s.sched_s, s.forward_s, s.sample_s, s.loop_s);
        if (s.cuda.n_steps > 0) /* the forward time on the GPU path: host staging + launches vs waiting */
            fprintf(stderr,
                    "quern serve: cuda: %lld steps (%lld as graphs, %lld graph captures in %.2f s): "
                    "stage %.2f s, launch %.2f s, waiting on the GPU %.2f s (graph steps: %.2f, %.2f, %.2f s)\n",
                    (long long)s.cuda.n_steps, (long long)s.cuda.n_graph_steps, (long long)s.cuda.n_captures,
                    s.cuda.capture_s, s.cuda.stage_s, s.cuda.launch_s, s.cuda.wait_s, s.cuda.graph_stage_s,
                    s.cuda.graph_launch_s, s.cuda.graph_wait_s);
    }
    qn_engine_destroy(e);
    free(se->model_name);
    free(se);
}

void qn_serve_engine_iface(qn_serve_engine *se, qn_engine_iface *out) {
    *out = (qn_engine_iface){.ctx = se,
                             .submit = se_submit,
                             .abort = se_abort,
                             .tokenize = se_tokenize,
                             .detokenize = se_detokenize,
                             .apply_chat_template = se_apply_chat_template,
                             .max_model_len = se_max_model_len,
                             .model_name = se_model_name,
                             .stats = se_stats};
}
