/* context.c — single-sequence evaluation over a CPU or CUDA backend (exec/context.h). */
#include "exec/context.h"

#include <stdlib.h>
#include <string.h>

struct qn_ctx {
    const qn_model *m;
    qn_ctx_params p;
    qn_backend *be;
    int32_t n_blocks;
    int32_t n_past;
    int32_t *block_table;   /* [n_blocks]: identity */
    int32_t *pos, *seq, *slot, *rows; /* [n_batch] step arrays */
};

qn_ctx_params qn_ctx_params_default(void) {
    return (qn_ctx_params){.n_ctx = 2048, .n_batch = 512, .n_threads = 2, .isa = QN_CPU_ISA_AUTO, .block_size = 16,
                           .device = QN_DEVICE_AUTO, .cuda_device = 0, .cuda_graphs = true, .profile_begin = 1,
                           .profile_end = 0, .tp_size = 1};
}

qn_status qn_ctx_create(const qn_model *m, const qn_ctx_params *p, qn_ctx **out, qn_error *err) {
    if (p->n_ctx < 1 || p->n_batch < 1 || p->n_threads < 1 || p->block_size < 1)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "context: n_ctx, n_batch, threads and block size must be >= 1");
    qn_ctx *c = calloc(1, sizeof *c);
    if (!c) return qn_error_set(err, QN_ERR_NOMEM, "context: out of memory");
    c->m = m;
    c->p = *p;
    if (c->p.n_batch > c->p.n_ctx) c->p.n_batch = c->p.n_ctx;
    c->n_blocks = (p->n_ctx + p->block_size - 1) / p->block_size;
    qn_backend_params bp = qn_backend_params_default();
    bp.device = p->device, bp.cuda_device = p->cuda_device, bp.n_threads = p->n_threads, bp.isa = p->isa, bp.no_repack = p->no_repack;
    bp.max_tokens = c->p.n_batch, bp.max_seqs = 1, bp.max_ctx = p->n_ctx;
    bp.n_blocks = c->n_blocks, bp.block_size = p->block_size, bp.cuda_graphs = p->cuda_graphs;
    bp.mmvq_stage = p->mmvq_stage;
    bp.profile_begin = p->profile_begin, bp.profile_end = p->profile_end;
    bp.tp_size = p->tp_size > 0 ? p->tp_size : 1;
    bp.tp_nccl = p->tp_nccl;
    bp.tp_master = p->tp_master, bp.tp_first_rank = p->tp_first_rank, bp.tp_local = p->tp_local;
    qn_status st = qn_backend_create(m, &bp, &c->be, err);
    if (st != QN_OK) {
        qn_ctx_destroy(c);
        return st;
    }
    const size_t nb = (size_t)c->p.n_batch;
    c->block_table = malloc(sizeof(int32_t) * (size_t)c->n_blocks);
    c->pos = malloc(sizeof(int32_t) * nb), c->seq = calloc(nb, sizeof(int32_t));
    c->slot = malloc(sizeof(int32_t) * nb), c->rows = malloc(sizeof(int32_t) * nb);
    if (!c->block_table || !c->pos || !c->seq || !c->slot || !c->rows) {
        qn_ctx_destroy(c);
        return qn_error_set(err, QN_ERR_NOMEM, "context: out of memory");
    }
    for (int32_t i = 0; i < c->n_blocks; i++) c->block_table[i] = i;
    *out = c;
    return QN_OK;
}

void qn_ctx_destroy(qn_ctx *c) {
    if (!c) return;
    qn_backend_destroy(c->be);
    free(c->block_table), free(c->pos), free(c->seq), free(c->slot), free(c->rows);
    free(c);
}

void qn_ctx_reset(qn_ctx *c) { c->n_past = 0; }
void qn_ctx_set_tap(qn_ctx *c, qn_llama_tap_fn fn, void *user) { qn_backend_set_tap(c->be, fn, user); }
int32_t qn_ctx_n_past(const qn_ctx *c) { return c->n_past; }
int32_t qn_ctx_n_ctx(const qn_ctx *c) { return c->p.n_ctx; }
const char *qn_ctx_isa_name(const qn_ctx *c) { return qn_backend_isa_name(c->be); }
const char *qn_ctx_backend_name(const qn_ctx *c) { return qn_backend_name(c->be); }
qn_device_kind qn_ctx_device(const qn_ctx *c) { return qn_backend_kind(c->be); }
bool qn_ctx_samples_on_device(const qn_ctx *c) { return qn_backend_samples_on_device(c->be); }

static qn_status check_eval(const qn_ctx *c, int32_t n, int32_t pos0, qn_error *err) {
    if (pos0 != c->n_past)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "context: pos0 %d != tokens evaluated %d", pos0, c->n_past);
    if (n < 1) return qn_error_set(err, QN_ERR_INVALID_ARG, "context: no tokens");
    if ((int64_t)pos0 + n > c->p.n_ctx)
        return qn_error_set(err, QN_ERR_CONTEXT, "context: %d + %d tokens exceed the context of %d", pos0, n, c->p.n_ctx);
    return QN_OK;
}

/* Step arrays for tokens [done, done + step) of a call starting at pos0; returns n_out. */
/* rows_from: the step's rows from it on get logits (>= step: none but the last one of the last step) */
static int32_t build_step(qn_ctx *c, const int32_t *tokens, int32_t step, int32_t pos0, int32_t rows_from, bool last,
                          qn_fwd_batch *b) {
    int32_t n_out = 0;
    for (int32_t i = 0; i < step; i++) {
        c->pos[i] = pos0 + i;
        c->slot[i] = c->pos[i]; /* identity block table: slot == position */
        if (i >= rows_from || (last && i == step - 1)) c->rows[n_out++] = i;
    }
    *b = (qn_fwd_batch){.n_tokens = step, .tokens = tokens, .positions = c->pos, .seq_idx = c->seq,
                        .slot_mapping = c->slot, .n_seqs = 1, .block_tables = c->block_table,
                        .max_blocks_per_seq = c->n_blocks, .n_out = n_out, .out_rows = c->rows};
    return n_out;
}

/* out_from < 0: the last row's logits only, into logits[0]; else rows [out_from, n) into logits[row]. */
static qn_status eval_rows(qn_ctx *c, const int32_t *tokens, int32_t n, int32_t pos0, int32_t out_from, float *logits,
                           qn_error *err) {
    qn_status st = check_eval(c, n, pos0, err);
    if (st != QN_OK) return st;
    const int32_t n_vocab = c->m->cfg.n_vocab;
    for (int32_t done = 0; done < n;) {
        const int32_t step = n - done < c->p.n_batch ? n - done : c->p.n_batch;
        /* the step's first row with logits, in [0, step] (step: none but the call's last row) */
        const int32_t from = out_from < 0 || out_from - done >= step ? step : out_from > done ? out_from - done : 0;
        qn_fwd_batch b;
        const int32_t n_out = build_step(c, tokens + done, step, pos0 + done, from, done + step == n, &b);
        float *dst = logits ? logits + (out_from >= 0 ? (int64_t)(done + from) * n_vocab : 0) : NULL;
        if (!dst && n_out) return qn_error_set(err, QN_ERR_INVALID_ARG, "context: logits buffer is NULL");
        if ((st = qn_backend_forward(c->be, &b, dst, err)) != QN_OK) return st;
        done += step;
        c->n_past = pos0 + done;
    }
    return QN_OK;
}

qn_status qn_ctx_eval(qn_ctx *c, const int32_t *tokens, int32_t n, int32_t pos0, bool all_logits, float *logits,
                      qn_error *err) {
    return eval_rows(c, tokens, n, pos0, all_logits ? 0 : -1, logits, err);
}

qn_status qn_ctx_eval_from(qn_ctx *c, const int32_t *tokens, int32_t n, int32_t pos0, int32_t out_from, float *logits,
                           qn_error *err) {
    if (out_from < 0 || out_from >= n)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "context: logits from row %d of %d", out_from, n);
    return eval_rows(c, tokens, n, pos0, out_from, logits, err);
}

qn_status qn_ctx_eval_prompt_sample(qn_ctx *c, const int32_t *tokens, int32_t n, const qn_sample_row_params *p,
                                    int32_t *out, qn_error *err) {
    qn_status st = check_eval(c, n, c->n_past, err);
    if (st != QN_OK) return st;
    const int32_t pos0 = c->n_past;
    for (int32_t done = 0; done < n;) {
        const int32_t step = n - done < c->p.n_batch ? n - done : c->p.n_batch;
        const bool last = done + step == n;
        qn_fwd_batch b;
        build_step(c, tokens + done, step, pos0 + done, step, last, &b);
        st = last ? qn_backend_forward_sample(c->be, &b, p, out, err) : qn_backend_forward(c->be, &b, NULL, err);
        if (st != QN_OK) return st;
        done += step;
        c->n_past = pos0 + done;
    }
    return QN_OK;
}

qn_status qn_ctx_eval_sample(qn_ctx *c, int32_t token, int32_t pos0, const qn_sample_row_params *p, int32_t *out,
                             qn_error *err) {
    if (pos0 != c->n_past)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "context: pos0 %d != tokens evaluated %d", pos0, c->n_past);
    return qn_ctx_eval_prompt_sample(c, &token, 1, p, out, err);
}
