/* context.c — single-sequence evaluation over the CPU forward pass (exec/context.h). */
#include "exec/context.h"

#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "kv/kv_cache.h"
#include "model/llama_cpu.h"

struct qn_ctx {
    const qn_model *m;
    qn_ctx_params p;
    qn_cpu_kernels kern;
    qn_threadpool *tp;
    qn_kv_cache *kv;
    qn_llama_cpu *fwd;
    int32_t n_past;
    int32_t *block_table;   /* [n_blocks]: identity */
    int32_t *pos, *seq, *slot, *rows; /* [n_batch] step arrays */
};

qn_ctx_params qn_ctx_params_default(void) {
    return (qn_ctx_params){.n_ctx = 2048, .n_batch = 512, .n_threads = 2, .isa = QN_CPU_ISA_AUTO, .block_size = 16};
}

qn_status qn_ctx_create(const qn_model *m, const qn_ctx_params *p, qn_ctx **out, qn_error *err) {
    if (p->n_ctx < 1 || p->n_batch < 1 || p->n_threads < 1 || p->block_size < 1)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "context: n_ctx, n_batch, threads and block size must be >= 1");
    qn_ctx *c = calloc(1, sizeof *c);
    if (!c) return qn_error_set(err, QN_ERR_NOMEM, "context: out of memory");
    c->m = m;
    c->p = *p;
    if (c->p.n_batch > c->p.n_ctx) c->p.n_batch = c->p.n_ctx;
    qn_status st = qn_cpu_kernels_select(p->isa, &c->kern);
    if (st != QN_OK) {
        qn_ctx_destroy(c);
        return qn_error_set(err, st, "context: CPU ISA %s not available on this machine/build", qn_cpu_isa_name(p->isa));
    }
    const int32_t n_blocks = (p->n_ctx + p->block_size - 1) / p->block_size;
    const qn_model_config *mc = &m->cfg;
    if ((st = qn_threadpool_create(p->n_threads, &c->tp, err)) != QN_OK ||
        (st = qn_kv_cache_create_cpu(mc->n_layer, n_blocks, p->block_size, mc->n_head_kv, mc->head_dim, &c->kv, err)) != QN_OK ||
        (st = qn_llama_cpu_create(m, &c->kern, c->tp, c->p.n_batch, p->n_ctx, &c->fwd, err)) != QN_OK) {
        qn_ctx_destroy(c);
        return st;
    }
    const size_t nb = (size_t)c->p.n_batch;
    c->block_table = malloc(sizeof(int32_t) * (size_t)n_blocks);
    c->pos = malloc(sizeof(int32_t) * nb), c->seq = calloc(nb, sizeof(int32_t));
    c->slot = malloc(sizeof(int32_t) * nb), c->rows = malloc(sizeof(int32_t) * nb);
    if (!c->block_table || !c->pos || !c->seq || !c->slot || !c->rows) {
        qn_ctx_destroy(c);
        return qn_error_set(err, QN_ERR_NOMEM, "context: out of memory");
    }
    for (int32_t i = 0; i < n_blocks; i++) c->block_table[i] = i;
    *out = c;
    return QN_OK;
}

void qn_ctx_destroy(qn_ctx *c) {
    if (!c) return;
    qn_llama_cpu_destroy(c->fwd);
    qn_kv_cache_destroy_cpu(c->kv);
    qn_threadpool_destroy(c->tp);
    free(c->block_table), free(c->pos), free(c->seq), free(c->slot), free(c->rows);
    free(c);
}

void qn_ctx_reset(qn_ctx *c) { c->n_past = 0; }
void qn_ctx_set_tap(qn_ctx *c, qn_llama_tap_fn fn, void *user) { qn_llama_cpu_set_tap(c->fwd, fn, user); }
int32_t qn_ctx_n_past(const qn_ctx *c) { return c->n_past; }
int32_t qn_ctx_n_ctx(const qn_ctx *c) { return c->p.n_ctx; }
const char *qn_ctx_isa_name(const qn_ctx *c) { return c->kern.isa_name; }

qn_status qn_ctx_eval(qn_ctx *c, const int32_t *tokens, int32_t n, int32_t pos0, bool all_logits, float *logits,
                      qn_error *err) {
    if (pos0 != c->n_past)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "context: pos0 %d != tokens evaluated %d", pos0, c->n_past);
    if (n < 1) return qn_error_set(err, QN_ERR_INVALID_ARG, "context: no tokens");
    if ((int64_t)pos0 + n > c->p.n_ctx)
        return qn_error_set(err, QN_ERR_CONTEXT, "context: %d + %d tokens exceed the context of %d", pos0, n, c->p.n_ctx);
    const int32_t n_vocab = c->m->cfg.n_vocab;
    for (int32_t done = 0; done < n;) {
        const int32_t step = n - done < c->p.n_batch ? n - done : c->p.n_batch;
        int32_t n_out = 0;
        for (int32_t i = 0; i < step; i++) {
            c->pos[i] = pos0 + done + i;
            c->slot[i] = c->pos[i]; /* identity block table: slot == position */
            if (all_logits || done + i == n - 1) c->rows[n_out++] = i;
        }
        const qn_fwd_batch b = {.n_tokens = step, .tokens = tokens + done, .positions = c->pos, .seq_idx = c->seq,
                                .slot_mapping = c->slot, .n_seqs = 1, .block_tables = c->block_table,
                                .max_blocks_per_seq = c->kv->n_blocks, .n_out = n_out, .out_rows = c->rows};
        float *dst = logits ? logits + (all_logits ? (int64_t)done * n_vocab : 0) : NULL;
        if (!dst && n_out) return qn_error_set(err, QN_ERR_INVALID_ARG, "context: logits buffer is NULL");
        qn_status st = qn_llama_cpu_forward(c->fwd, c->kv, &b, dst, err);
        if (st != QN_OK) return st;
        done += step;
        c->n_past = pos0 + done;
    }
    return QN_OK;
}
