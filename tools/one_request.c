/* one_request.c — one request at a time through the serving engine (one_request.h). */
#include "one_request.h"

#include <pthread.h>
#include <string.h>

qn_engine *qn_one_engine_create(const char *cmd, const qn_model *m, const qn_one_engine_opts *o,
                                const qn_tool_device_opts *dev) {
    qn_engine_config ec = qn_engine_config_default();
    if (qn_tool_apply_device_engine(cmd, dev, &ec) != 0) return NULL;
    ec.n_threads = o->n_threads, ec.isa = o->isa, ec.no_repack = o->no_repack;
    ec.max_model_len = o->n_ctx;
    ec.max_num_seqs = 1;
    ec.max_num_batched_tokens = o->n_batch < o->n_ctx ? o->n_batch : o->n_ctx;
    ec.enable_prefix_cache = o->prefix_cache;
    /* one sequence of n_ctx tokens, rounded up to whole blocks */
    const int64_t blocks = ((int64_t)o->n_ctx + ec.block_size - 1) / ec.block_size;
    ec.kv_cache_bytes = (int64_t)qn_engine_kv_bytes_per_token(m) * blocks * ec.block_size;
    qn_engine *e = NULL;
    qn_error err = {0};
    if (qn_engine_create(m, &ec, &e, &err) != QN_OK) {
        fprintf(stderr, "quern %s: %s\n", cmd, err.msg);
        return NULL;
    }
    return e;
}

typedef struct one_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    FILE *text_out, *ids_out;
    qn_one_result *res;
    double t_last;
} one_state;

static void on_event(void *user, const qn_event *ev) {
    one_state *s = user;
    if (ev->kind == QN_EVENT_TOKEN) { /* the engine thread; nothing else touches res until FINISH */
        if (s->text_out && ev->text_len) {
            fwrite(ev->text, 1, ev->text_len, s->text_out);
            fflush(s->text_out);
        }
        if (s->ids_out && ev->token >= 0) fprintf(s->ids_out, "%d ", ev->token);
        s->t_last = ev->t_now;
        return;
    }
    pthread_mutex_lock(&s->mu);
    qn_one_result *r = s->res;
    r->n_tokens = ev->n_completion_tokens;
    r->finish = ev->finish;
    r->error = ev->error;
    snprintf(r->error_msg, sizeof r->error_msg, "%s", ev->error_msg ? ev->error_msg : "");
    if (ev->t_first_token > 0) {
        r->t_prefill = ev->t_first_token - ev->t_arrival;
        r->t_decode = (s->t_last > ev->t_first_token ? s->t_last : ev->t_first_token) - ev->t_first_token;
    }
    s->done = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

qn_status qn_one_generate(qn_engine *e, const int32_t *prompt, int32_t n, const qn_gen_params *p, FILE *text_out,
                          FILE *ids_out, qn_one_result *res) {
    memset(res, 0, sizeof *res);
    one_state s = {.text_out = text_out, .ids_out = ids_out, .res = res};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    uint64_t id = 0;
    qn_error err = {0};
    qn_status st = qn_engine_submit(e, prompt, n, p, on_event, &s, &id, &err);
    if (st == QN_OK) {
        pthread_mutex_lock(&s.mu);
        while (!s.done) pthread_cond_wait(&s.cv, &s.mu);
        pthread_mutex_unlock(&s.mu);
        st = res->finish == QN_FINISHED_ERROR ? (res->error != QN_OK ? res->error : QN_ERR_INTERNAL) : QN_OK;
    } else {
        res->error = st;
        snprintf(res->error_msg, sizeof res->error_msg, "%s", err.msg);
    }
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    return st;
}
