/* hf_calib.c — the calibration forward of the post-training quantizers (model/hf_calib.h). Plain f32: the
 * linears' matmuls and the Hessian go through the calibration backend (model/calib_backend.h, CPU or CUDA);
 * norms, RoPE, SiLU and attention run on the CPU pool, attention per (window, head) as two small matmuls
 * (S = Q·Kᵀ, O = P·V) with the causal mask applied in the softmax. */
#include "model/hf_calib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "kernels/ops/ops.h"
#include "tokenizer/vocab.h"

struct qn_calib {
    const qn_model *m;
    qn_threadpool *tp;
    qn_calib_backend *be;           /* borrowed, or owned_be */
    qn_calib_backend *owned_be;     /* a CPU backend when the caller gave none */
    int nth;
    int32_t n_samples, ctx;
    int64_t n_tok;
    float *h;                       /* [n_tok][n_embd] hidden states */
    float *x, *q, *k, *v, *a, *g, *u; /* stage buffers: x/a [n_tok][max(n_embd, HQ)], q [n_tok][HQ], k/v [n_tok][HK], g/u [n_tok][n_ff] */
    float *rope;                    /* [ctx][rope_dim] cos/sin cache */
    float *scratch;                 /* [nth][scratch_per]: per-thread attention buffers */
    int64_t scratch_per;
    float *w[7];                    /* one layer's f32 weights: q k v o gate up down */
};

static void run(qn_calib *c, qn_task_fn fn, void *arg) {
    if (c->tp) qn_threadpool_run(c->tp, fn, arg);
    else fn(arg, 0, 1);
}

qn_calib_params qn_calib_params_default(void) { return (qn_calib_params){.n_samples = 64, .ctx = 512}; }
int64_t qn_calib_n_tokens(const qn_calib *c) { return c->n_tok; }
int32_t qn_calib_n_samples(const qn_calib *c) { return c->n_samples; }

void qn_calib_destroy(qn_calib *c) {
    if (!c) return;
    free(c->h), free(c->x), free(c->q), free(c->k), free(c->v), free(c->a), free(c->g), free(c->u);
    free(c->rope), free(c->scratch);
    for (int i = 0; i < 7; i++) free(c->w[i]);
    qn_calib_backend_destroy(c->owned_be);
    free(c);
}

qn_status qn_calib_create(const qn_model *m, const char *text, size_t len, const qn_calib_params *p,
                          qn_threadpool *tp, qn_calib_backend *be, qn_calib **out, qn_error *err) {
    const qn_model_config *cf = &m->cfg;
    if (!p || p->n_samples <= 0 || p->ctx <= 1)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "calibration: n_samples and ctx must be positive");
    if (cf->rope_scaling.type != QN_ROPE_SCALING_NONE && cf->rope_scaling.type != QN_ROPE_SCALING_LINEAR)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "calibration: rope scaling '%s' is not supported",
                            qn_rope_scaling_type_name(cf->rope_scaling.type));
    qn_calib *c = calloc(1, sizeof *c);
    if (!c) return qn_error_set(err, QN_ERR_NOMEM, "calibration: out of memory");
    c->m = m, c->tp = tp, c->nth = tp ? qn_threadpool_size(tp) : 1, c->ctx = p->ctx, c->be = be;
    qn_status st = QN_OK;
    if (!be && (st = qn_calib_backend_create(QN_CALIB_DEVICE_CPU, tp, &c->owned_be, err)) != QN_OK) goto fail;
    if (!be) c->be = c->owned_be;
    int32_t n_ids = 0;
    int32_t *ids = malloc(sizeof(int32_t) * (len * 3 + 2));
    if (!ids || qn_vocab_tokenize(m->vocab, text, len, false, false, ids, (int32_t)(len * 3 + 2), &n_ids) != QN_OK) {
        free(ids);
        st = qn_error_set(err, QN_ERR_NOMEM, "calibration: tokenization failed");
        goto fail;
    }
    if (n_ids < p->ctx) {
        free(ids);
        st = qn_error_set(err, QN_ERR_INVALID_ARG,
                          "calibration text too short: %d tokens, one window needs %d (lower --calib-ctx or give a "
                          "longer text)", n_ids, p->ctx);
        goto fail;
    }
    c->n_samples = n_ids / p->ctx < p->n_samples ? n_ids / p->ctx : p->n_samples;
    c->n_tok = (int64_t)c->n_samples * p->ctx;
    const int64_t E = cf->n_embd, HQ = (int64_t)cf->n_head * cf->head_dim, HK = (int64_t)cf->n_head_kv * cf->head_dim;
    const int64_t T = c->n_tok, X = HQ > E ? HQ : E;
    c->scratch_per = (int64_t)p->ctx * p->ctx + 4 * (int64_t)p->ctx * cf->head_dim;
    c->h = malloc(sizeof(float) * (size_t)(T * E));
    c->x = malloc(sizeof(float) * (size_t)(T * X));
    c->q = malloc(sizeof(float) * (size_t)(T * HQ));
    c->a = malloc(sizeof(float) * (size_t)(T * X));
    c->k = malloc(sizeof(float) * (size_t)(T * HK));
    c->v = malloc(sizeof(float) * (size_t)(T * HK));
    c->g = malloc(sizeof(float) * (size_t)(T * cf->n_ff));
    c->u = malloc(sizeof(float) * (size_t)(T * cf->n_ff));
    c->rope = malloc(sizeof(float) * (size_t)p->ctx * (size_t)cf->rope_dim);
    c->scratch = malloc(sizeof(float) * (size_t)(c->scratch_per * c->nth));
    if (!c->h || !c->x || !c->q || !c->a || !c->k || !c->v || !c->g || !c->u || !c->rope || !c->scratch) {
        free(ids);
        st = qn_error_set(err, QN_ERR_NOMEM, "calibration: out of memory (%lld tokens)", (long long)T);
        goto fail;
    }
    /* windows spread over the whole text (the first ctx tokens of equal slices) */
    const int64_t stride = n_ids / c->n_samples;
    for (int64_t s = 0; s < c->n_samples && st == QN_OK; s++)
        for (int64_t t = 0; t < p->ctx; t++)
            if (qn_weight_row_f32(&m->tok_embd, ids[s * stride + t], c->h + (s * p->ctx + t) * E) != QN_OK)
                st = qn_error_set(err, QN_ERR_FORMAT, "calibration: token %d has no embedding row", ids[s * stride + t]);
    free(ids);
    if (st != QN_OK) goto fail;
    const float fs = cf->rope_scaling.type == QN_ROPE_SCALING_LINEAR && cf->rope_scaling.factor > 0
                         ? 1.0f / cf->rope_scaling.factor : 1.0f;
    for (int32_t t = 0; t < p->ctx; t++)
        qn_rope_cache_f32(c->rope + (int64_t)t * cf->rope_dim, t, cf->rope_dim, cf->rope_theta, fs, m->rope_freqs);
    *out = c;
    return QN_OK;
fail:
    qn_calib_destroy(c);
    return st;
}

/* ------------------------------------------------------------------ Hessian */

qn_status qn_calib_stage_hessian(qn_calib *c, const qn_calib_stage_io *io, float *h, qn_error *err) {
    (void)io; /* its x is the matrix run_layer put in the X slot before the hook */
    return qn_calib_backend_gram(c->be, QN_CALIB_SLOT_X, 2.0f / (float)c->n_tok, h, err);
}

/* ------------------------------------------------------------------ the layer */

typedef struct row_job {
    qn_calib *c;
    const float *norm;
    const float *src;  /* add_fn: h += src */
    float *bias[3];
} row_job;

static void norm_fn(void *arg, int ith, int nth) { /* x = RMSNorm(h)·norm */
    row_job *j = arg;
    const int64_t E = j->c->m->cfg.n_embd;
    long long b, e;
    qn_split_range(j->c->n_tok, ith, nth, &b, &e);
    for (long long t = b; t < e; t++) qn_rmsnorm_f32(j->c->h + t * E, j->norm, j->c->x + t * E, E, j->c->m->cfg.rms_eps);
}

static void silu_fn(void *arg, int ith, int nth) {
    row_job *j = arg;
    const int64_t F = j->c->m->cfg.n_ff;
    long long b, e;
    qn_split_range(j->c->n_tok, ith, nth, &b, &e);
    for (long long t = b; t < e; t++) qn_silu_mul_f32(j->c->g + t * F, j->c->u + t * F, F);
}

static void add_fn(void *arg, int ith, int nth) { /* h += src ([n_tok][n_embd]) */
    row_job *j = arg;
    const int64_t E = j->c->m->cfg.n_embd;
    long long b, e;
    qn_split_range(j->c->n_tok * E, ith, nth, &b, &e);
    for (long long i = b; i < e; i++) j->c->h[i] += j->src[i];
}

static void rope_fn(void *arg, int ith, int nth) { /* biases, then RoPE on q and k */
    row_job *j = arg;
    qn_calib *c = j->c;
    const qn_model_config *cf = &c->m->cfg;
    const int64_t HQ = (int64_t)cf->n_head * cf->head_dim, HK = (int64_t)cf->n_head_kv * cf->head_dim;
    long long b, e;
    qn_split_range(c->n_tok, ith, nth, &b, &e);
    for (long long t = b; t < e; t++) {
        float *q = c->q + t * HQ, *k = c->k + t * HK, *v = c->v + t * HK;
        if (j->bias[0]) qn_add_f32(q, j->bias[0], HQ), qn_add_f32(k, j->bias[1], HK), qn_add_f32(v, j->bias[2], HK);
        const float *cache = c->rope + (t % c->ctx) * cf->rope_dim;
        if (cf->rope_style == QN_ROPE_STYLE_NEOX) {
            qn_rope_neox_f32(q, cache, cf->n_head, cf->head_dim, cf->rope_dim);
            qn_rope_neox_f32(k, cache, cf->n_head_kv, cf->head_dim, cf->rope_dim);
        } else {
            qn_rope_norm_f32(q, cache, cf->n_head, cf->head_dim, cf->rope_dim);
            qn_rope_norm_f32(k, cache, cf->n_head_kv, cf->head_dim, cf->rope_dim);
        }
    }
}

static void attn_fn(void *arg, int ith, int nth) { /* tasks (window, head), interleaved */
    row_job *j = arg;
    qn_calib *c = j->c;
    const qn_model_config *cf = &c->m->cfg;
    const int64_t C = c->ctx, D = cf->head_dim, HQ = (int64_t)cf->n_head * D, HK = (int64_t)cf->n_head_kv * D;
    const int64_t group = cf->n_head / cf->n_head_kv, n_tasks = (int64_t)c->n_samples * cf->n_head;
    float *s = c->scratch + ith * c->scratch_per, *qh = s + C * C, *kh = qh + C * D, *vt = kh + C * D, *oh = vt + C * D;
    const float scale = 1.0f / sqrtf((float)D);
    for (int64_t task = ith; task < n_tasks; task += nth) {
        const int64_t w = task / cf->n_head, hd = task % cf->n_head, kvh = hd / group, t0 = w * C;
        for (int64_t t = 0; t < C; t++) {
            memcpy(qh + t * D, c->q + (t0 + t) * HQ + hd * D, sizeof(float) * (size_t)D);
            memcpy(kh + t * D, c->k + (t0 + t) * HK + kvh * D, sizeof(float) * (size_t)D);
            for (int64_t d = 0; d < D; d++) vt[d * C + t] = c->v[(t0 + t) * HK + kvh * D + d];
        }
        qn_calib_gemm_f32(qh, C, D, kh, C, s); /* s[i][j] = q_i · k_j */
        for (int64_t i = 0; i < C; i++) {
            float *r = s + i * C;
            for (int64_t jj = 0; jj <= i; jj++) r[jj] *= scale;
            qn_softmax_f32(r, i + 1);
            for (int64_t jj = i + 1; jj < C; jj++) r[jj] = 0;
        }
        qn_calib_gemm_f32(s, C, C, vt, D, oh); /* o_i = Σ_j p_ij v_j */
        for (int64_t t = 0; t < C; t++) memcpy(c->a + (t0 + t) * HQ + hd * D, oh + t * D, sizeof(float) * (size_t)D);
    }
}

static const char *const LIN_NAMES[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                         "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                         "mlp.down_proj"};

static qn_status load_weight(qn_calib *c, const qn_weight *w, int idx, qn_error *err) {
    free(c->w[idx]);
    c->w[idx] = malloc(sizeof(float) * (size_t)(w->n * w->k));
    if (!c->w[idx]) return qn_error_set(err, QN_ERR_NOMEM, "calibration: out of memory");
    for (int64_t r = 0; r < w->n; r++)
        if (qn_weight_row_f32(w, r, c->w[idx] + r * w->k) != QN_OK)
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "calibration: weight '%s' is already quantized",
                                LIN_NAMES[idx]);
    return QN_OK;
}

/* x [n_tok][k] goes to the backend's X slot (one upload on CUDA), where the hook's Hessian and the stage's
 * matmuls find it; then the hook sees the stage. */
static qn_status stage(qn_calib *c, int32_t il, qn_calib_stage sg, const float *x, int64_t k, int first, int n_lin,
                       qn_calib_hook_fn hook, void *ud, qn_error *err) {
    qn_status st = qn_calib_backend_load(c->be, QN_CALIB_SLOT_X, x, c->n_tok, k, err);
    if (st != QN_OK || !hook) return st;
    const qn_layer_weights *L = &c->m->layers[il];
    const qn_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    qn_calib_linear lin[3];
    for (int i = 0; i < n_lin; i++)
        lin[i] = (qn_calib_linear){.name = LIN_NAMES[first + i], .k = ws[first + i]->k, .n = ws[first + i]->n,
                                   .w = c->w[first + i]};
    const qn_calib_stage_io io = {.layer = il, .stage = sg, .x = x, .n_tok = c->n_tok, .k = k, .lin = lin,
                                  .n_lin = n_lin};
    return hook(ud, &io, err);
}

/* y [n_tok][n] = X·wᵀ, X the stage input in the backend's X slot, w [n][k] */
static qn_status mm(qn_calib *c, const float *w, int64_t n, float *y, qn_error *err) {
    return qn_calib_backend_matmul(c->be, QN_CALIB_SLOT_X, w, n, y, err);
}

qn_status qn_calib_run_layer(qn_calib *c, int32_t il, qn_calib_hook_fn hook, void *ud, qn_error *err) {
    const qn_model_config *cf = &c->m->cfg;
    if (il < 0 || il >= cf->n_layer) return qn_error_set(err, QN_ERR_INVALID_ARG, "calibration: layer %d", il);
    const qn_layer_weights *L = &c->m->layers[il];
    const qn_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    const int64_t E = cf->n_embd, HQ = (int64_t)cf->n_head * cf->head_dim, HK = (int64_t)cf->n_head_kv * cf->head_dim,
                  F = cf->n_ff;
    qn_status st;
    for (int i = 0; i < 7; i++)
        if ((st = load_weight(c, ws[i], i, err))) return st;
    row_job rj = {.c = c, .norm = L->attn_norm, .bias = {(float *)L->bq, (float *)L->bk, (float *)L->bv}};
    run(c, norm_fn, &rj);
    if ((st = stage(c, il, QN_CALIB_STAGE_QKV, c->x, E, 0, 3, hook, ud, err))) return st;
    if ((st = mm(c, c->w[0], HQ, c->q, err)) || (st = mm(c, c->w[1], HK, c->k, err)) || (st = mm(c, c->w[2], HK, c->v, err)))
        return st;
    run(c, rope_fn, &rj);
    run(c, attn_fn, &rj);
    if ((st = stage(c, il, QN_CALIB_STAGE_O, c->a, HQ, 3, 1, hook, ud, err))) return st;
    if ((st = mm(c, c->w[3], E, c->x, err))) return st; /* x is free again (the X slot holds a) */
    rj.src = c->x;
    run(c, add_fn, &rj);
    rj.norm = L->ffn_norm;
    run(c, norm_fn, &rj);
    if ((st = stage(c, il, QN_CALIB_STAGE_GATE_UP, c->x, E, 4, 2, hook, ud, err))) return st;
    if ((st = mm(c, c->w[4], F, c->g, err)) || (st = mm(c, c->w[5], F, c->u, err))) return st;
    run(c, silu_fn, &rj);
    if ((st = stage(c, il, QN_CALIB_STAGE_DOWN, c->g, F, 6, 1, hook, ud, err))) return st;
    if ((st = mm(c, c->w[6], E, c->a, err))) return st;
    rj.src = c->a;
    run(c, add_fn, &rj);
    return QN_OK;
}
