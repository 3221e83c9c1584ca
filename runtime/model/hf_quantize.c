/* hf_quantize.c — GPTQ / RTN / AWQ / NF4 quantization of a Hugging Face directory (model/hf_quantize.h). The output
 * tensors are collected in memory (the forward needs the whole model anyway), then written through the
 * safetensors writer into a temporary directory that is renamed at the end. */
#include "model/hf_quantize.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/threadpool.h"
#include "kernels/common/half.h"
#include "model/hf_quant.h"
#include "model/model.h"
#include "model/nf4_quant.h"
#include "model/safetensors.h"
#include "model/safetensors_write.h"

qn_hfq_params qn_hfq_params_default(void) {
    return (qn_hfq_params){.method = QN_HFQ_GPTQ, .gptq = qn_gptq_params_default(), .awq = qn_awq_params_default(),
                           .calib = qn_calib_params_default(), .n_threads = 1};
}

/* ------------------------------------------------------------------ output tensor table */

typedef struct out_tensor {
    char *name;
    qn_st_dtype dtype;
    uint32_t n_dims;
    int64_t shape[2];
    void *data;          /* owned, or NULL when view is used */
    const void *view;    /* a source tensor's bytes */
    uint64_t nbytes;
} out_tensor;

typedef struct hfq {
    const qn_hfq_params *p;
    qn_model *m;
    qn_threadpool *tp;
    qn_calib_backend *be; /* GPTQ / AWQ: where the dense calibration work runs (NULL for RTN / NF4) */
    qn_calib *calib;
    out_tensor *t;
    int64_t n_t, cap_t;
    double t0, layer_loss;
    float *h;            /* Hessian scratch [max k][max k] */
    /* AWQ: one layer's statistics, gathered stage by stage, used after the last stage */
    float *aw[7];        /* f32 weights q k v o gate up down ([n][k]) */
    int64_t an[7], ak[7];
    float *ah[QN_CALIB_STAGE_COUNT];   /* [k][k] (2/n)·Σ x xᵀ of the stage input */
    float *axm[QN_CALIB_STAGE_COUNT];  /* [k] mean |x_c| */
} hfq;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static qn_status add_tensor(hfq *q, const char *name, qn_st_dtype dt, uint32_t nd, int64_t d0, int64_t d1, void *data,
                            const void *view, qn_error *err) {
    if (q->n_t == q->cap_t) {
        const int64_t cap = q->cap_t ? 2 * q->cap_t : 256;
        out_tensor *t = realloc(q->t, sizeof *t * (size_t)cap);
        if (!t) goto nomem;
        q->t = t, q->cap_t = cap;
    }
    out_tensor *o = &q->t[q->n_t];
    memset(o, 0, sizeof *o);
    if (!(o->name = strdup(name))) goto nomem;
    o->dtype = dt, o->n_dims = nd, o->shape[0] = d0, o->shape[1] = d1, o->data = data, o->view = view;
    o->nbytes = qn_st_dtype_size(dt) * (uint64_t)d0 * (uint64_t)(nd > 1 ? d1 : 1);
    q->n_t++;
    return QN_OK;
nomem:
    free(data);
    return qn_error_set(err, QN_ERR_NOMEM, "quantize: out of memory");
}

static qn_status fill(void *ud, const char *name, void *dst, uint64_t nbytes, qn_error *err) {
    hfq *q = ud;
    for (int64_t i = 0; i < q->n_t; i++)
        if (!strcmp(q->t[i].name, name)) {
            memcpy(dst, q->t[i].data ? q->t[i].data : q->t[i].view, nbytes);
            return QN_OK;
        }
    return qn_error_set(err, QN_ERR_INTERNAL, "quantize: tensor '%s' vanished", name);
}

/* Is `name` one of the seven linears of a decoder layer ("model.layers.N.<mod>.weight")? */
static bool is_layer_linear(const char *name) {
    static const char *const mods[] = {".self_attn.q_proj.weight", ".self_attn.k_proj.weight", ".self_attn.v_proj.weight",
                                       ".self_attn.o_proj.weight", ".mlp.gate_proj.weight",    ".mlp.up_proj.weight",
                                       ".mlp.down_proj.weight"};
    if (strncmp(name, "model.layers.", 13)) return false;
    const char *dot = strchr(name + 13, '.');
    for (size_t i = 0; dot && i < sizeof mods / sizeof mods[0]; i++)
        if (!strcmp(dot, mods[i])) return true;
    return false;
}

/* "model.layers.N.input_layernorm.weight" or "...post_attention_layernorm.weight" (AWQ folds scales into them) */
static bool is_layer_norm(const char *name) {
    if (strncmp(name, "model.layers.", 13)) return false;
    const char *dot = strchr(name + 13, '.');
    return dot && (!strcmp(dot, ".input_layernorm.weight") || !strcmp(dot, ".post_attention_layernorm.weight"));
}

/* ------------------------------------------------------------------ GPTQ */

static qn_status emit_gptq(hfq *q, int32_t il, const qn_calib_linear *lin, const float *h, qn_error *err) {
    const qn_gptq_params *gp = &q->p->gptq;
    const int64_t k = lin->k, n = lin->n, b = gp->bits;
    const int64_t pack_k = b == 3 ? 32 : 32 / b;
    if (k % pack_k || n % pack_k || (k * b) % 32 || (n * b) % 32)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "quantize: model.layers.%d.%s: shape [%lld, %lld] cannot be packed "
                            "at %lld bits (needs multiples of %lld)", il, lin->name, (long long)n, (long long)k,
                            (long long)b, (long long)pack_k);
    qn_gptq_result r;
    /* on the CPU the fused tile loop (qn_gptq_quantize's numbers); on CUDA the blocked loop with cuBLAS updates */
    qn_calib_backend *be = q->be && qn_calib_backend_device(q->be) == QN_CALIB_DEVICE_CUDA ? q->be : NULL;
    qn_status st = qn_gptq_quantize_on(be, lin->w, n, k, h, gp, q->tp, &r, err);
    if (st != QN_OK) return st;
    q->layer_loss += r.loss;
    char pre[256], nm[300];
    snprintf(pre, sizeof pre, "model.layers.%d.%s.", il, lin->name);
    int32_t *qw = malloc(sizeof(int32_t) * (size_t)(k * b / 32 * n));
    int32_t *qz = malloc(sizeof(int32_t) * (size_t)(r.n_groups * n * b / 32));
    uint16_t *sc = malloc(sizeof(uint16_t) * (size_t)(r.n_groups * n));
    int32_t *gi = malloc(sizeof(int32_t) * (size_t)k);
    if (!qw || !qz || !sc || !gi) {
        free(qw), free(qz), free(sc), free(gi);
        qn_gptq_result_free(&r);
        return qn_error_set(err, QN_ERR_NOMEM, "quantize: out of memory");
    }
    qn_gptq_pack(&r, gp->bits, gp->v2, qw, qz);
    memcpy(sc, r.scales, sizeof(uint16_t) * (size_t)(r.n_groups * n));
    memcpy(gi, r.g_idx, sizeof(int32_t) * (size_t)k);
    qn_gptq_result_dequant(&r, lin->w); /* the next stage sees the checkpoint's weights */
    const int64_t G = r.n_groups;
    qn_gptq_result_free(&r);
    snprintf(nm, sizeof nm, "%sqweight", pre);
    if ((st = add_tensor(q, nm, QN_ST_DTYPE_I32, 2, k * b / 32, n, qw, NULL, err))) goto free_rest;
    snprintf(nm, sizeof nm, "%sqzeros", pre);
    if ((st = add_tensor(q, nm, QN_ST_DTYPE_I32, 2, G, n * b / 32, qz, NULL, err))) goto free_sc;
    snprintf(nm, sizeof nm, "%sscales", pre);
    if ((st = add_tensor(q, nm, QN_ST_DTYPE_F16, 2, G, n, sc, NULL, err))) goto free_gi;
    snprintf(nm, sizeof nm, "%sg_idx", pre);
    return add_tensor(q, nm, QN_ST_DTYPE_I32, 1, k, 0, gi, NULL, err);
free_rest:
    free(qz);
free_sc:
    free(sc);
free_gi:
    free(gi);
    return st;
}

static qn_status gptq_hook(void *ud, const qn_calib_stage_io *io, qn_error *err) {
    hfq *q = ud;
    qn_status st;
    if ((st = qn_calib_stage_hessian(q->calib, io, q->h, err))) return st;
    for (int i = 0; i < io->n_lin; i++)
        if ((st = emit_gptq(q, io->layer, &io->lin[i], q->h, err))) return st;
    return QN_OK;
}

/* ------------------------------------------------------------------ AWQ */

static const char *const LIN_MODS[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

static qn_status emit_awq(hfq *q, int32_t il, int lin, qn_error *err) {
    const int64_t n = q->an[lin], k = q->ak[lin], gs = q->p->awq.group_size, G = k / gs;
    qn_awq_result r;
    qn_status st = qn_awq_quantize(q->aw[lin], n, k, (int32_t)gs, &r, err); /* shapes were checked by the hook */
    if (st != QN_OK) return st;
    int32_t *qw = malloc(sizeof(int32_t) * (size_t)(k * n / 8)), *qz = malloc(sizeof(int32_t) * (size_t)(G * n / 8));
    uint16_t *sc = malloc(sizeof(uint16_t) * (size_t)(G * n));
    if (!qw || !qz || !sc) {
        free(qw), free(qz), free(sc);
        qn_awq_result_free(&r);
        return qn_error_set(err, QN_ERR_NOMEM, "quantize: out of memory");
    }
    qn_awq_pack_gemm(&r, qw, qz);
    memcpy(sc, r.scales, sizeof(uint16_t) * (size_t)(G * n));
    qn_awq_result_free(&r);
    char nm[300];
    snprintf(nm, sizeof nm, "model.layers.%d.%s.qweight", il, LIN_MODS[lin]);
    st = add_tensor(q, nm, QN_ST_DTYPE_I32, 2, k, n / 8, qw, NULL, err);
    snprintf(nm, sizeof nm, "model.layers.%d.%s.qzeros", il, LIN_MODS[lin]);
    st = st ? (free(qz), st) : add_tensor(q, nm, QN_ST_DTYPE_I32, 2, G, n / 8, qz, NULL, err);
    snprintf(nm, sizeof nm, "model.layers.%d.%s.scales", il, LIN_MODS[lin]);
    return st ? (free(sc), st) : add_tensor(q, nm, QN_ST_DTYPE_F16, 2, G, n, sc, NULL, err);
}

/* the norm weight divided by s, stored in the source tensor's dtype */
static qn_status emit_norm(hfq *q, const char *name, const float *w, const float *s, int64_t n, qn_error *err) {
    const qn_st_tensor *t = qn_st_find(q->m->st, name);
    const qn_st_dtype dt = t && (t->dtype == QN_ST_DTYPE_BF16 || t->dtype == QN_ST_DTYPE_F32) ? t->dtype : QN_ST_DTYPE_F16;
    void *out = malloc(qn_st_dtype_size(dt) * (size_t)n);
    if (!out) return qn_error_set(err, QN_ERR_NOMEM, "quantize: out of memory");
    for (int64_t i = 0; i < n; i++) {
        const float v = w[i] / s[i];
        if (dt == QN_ST_DTYPE_F32) ((float *)out)[i] = v;
        else ((uint16_t *)out)[i] = dt == QN_ST_DTYPE_BF16 ? qn_f32_to_bf16(v) : qn_f32_to_f16(v);
    }
    return add_tensor(q, name, dt, 1, n, 0, out, NULL, err);
}

static void scale_cols(float *w, int64_t n, int64_t k, const float *s) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < k; j++) w[r * k + j] *= s[j];
}

/* H of the scaled input x/s: H_ij / (s_i s_j) */
static void scale_h(float *h, int64_t k, const float *s) {
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++) h[i * k + j] /= s[i] * s[j];
}

/* After the last stage of layer il: search the four scaling groups on the full-precision statistics, fold, clip,
 * quantize and emit (AutoAWQ's order: every search on the original weights, then apply_scale, apply_clip, quant). */
static qn_status awq_layer(hfq *q, int32_t il, qn_error *err) {
    const qn_awq_params *p = &q->p->awq;
    const qn_layer_weights *L = &q->m->layers[il];
    const int64_t E = q->m->cfg.n_embd;
    /* scaling groups: the stage whose input they share, the first linear, how many */
    static const struct { qn_calib_stage sg; int first, count; } grp[4] = {
        {QN_CALIB_STAGE_QKV, 0, 3}, {QN_CALIB_STAGE_O, 3, 1}, {QN_CALIB_STAGE_GATE_UP, 4, 2}, {QN_CALIB_STAGE_DOWN, 6, 1}};
    float *s[4] = {0};
    qn_status st = QN_OK;
    /* v_proj -> o_proj only when o's input is v's output one to one (no GQA) and v has no bias to rescale */
    const bool fold_vo = q->an[2] == q->ak[3] && !L->bv;
    for (int g = 0; g < 4 && st == QN_OK; g++) {
        if (g == 1 && !fold_vo) continue;
        const int64_t k = q->ak[grp[g].first];
        if (!(s[g] = malloc(sizeof(float) * (size_t)k))) {
            st = qn_error_set(err, QN_ERR_NOMEM, "quantize: out of memory");
            break;
        }
        const float *ws[3];
        int64_t ns[3];
        for (int i = 0; i < grp[g].count; i++) ws[i] = q->aw[grp[g].first + i], ns[i] = q->an[grp[g].first + i];
        double e_best, e_rtn;
        float alpha;
        st = qn_awq_search_scale(q->be, ws, ns, grp[g].count, k, q->axm[grp[g].sg], q->ah[grp[g].sg], p, s[g],
                                 &e_best, &e_rtn, &alpha, err);
        q->layer_loss += e_best;
        if (q->p->awq_log)
            q->p->awq_log(q->p->progress_ud, il, LIN_MODS[grp[g].first], alpha, e_rtn, e_best);
    }
    if (st == QN_OK) { /* apply_scale */
        for (int g = 0; g < 4; g++) {
            if (!s[g]) continue;
            const int64_t k = q->ak[grp[g].first];
            for (int i = 0; i < grp[g].count; i++)
                scale_cols(q->aw[grp[g].first + i], q->an[grp[g].first + i], k, s[g]);
            scale_h(q->ah[grp[g].sg], k, s[g]);
        }
        if (s[1]) /* v rows /= s */
            for (int64_t r = 0; r < q->an[2]; r++)
                for (int64_t j = 0; j < q->ak[2]; j++) q->aw[2][r * q->ak[2] + j] /= s[1][r];
        for (int64_t r = 0; r < q->an[5]; r++) /* up rows /= s(down) */
            for (int64_t j = 0; j < q->ak[5]; j++) q->aw[5][r * q->ak[5] + j] /= s[3][r];
    }
    for (int i = 2; p->clip && i < 7 && st == QN_OK; i++) { /* apply_clip: all but q/k */
        static const qn_calib_stage sg_of[7] = {QN_CALIB_STAGE_QKV, QN_CALIB_STAGE_QKV, QN_CALIB_STAGE_QKV,
                                                QN_CALIB_STAGE_O, QN_CALIB_STAGE_GATE_UP, QN_CALIB_STAGE_GATE_UP,
                                                QN_CALIB_STAGE_DOWN};
        st = qn_awq_search_clip(q->aw[i], q->an[i], q->ak[i], q->ah[sg_of[i]], p, q->tp, err);
    }
    for (int i = 0; i < 7 && st == QN_OK; i++) st = emit_awq(q, il, i, err);
    char nm[200];
    if (st == QN_OK) {
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", il);
        st = emit_norm(q, nm, L->attn_norm, s[0], E, err);
    }
    if (st == QN_OK) {
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", il);
        st = emit_norm(q, nm, L->ffn_norm, s[2], E, err);
    }
    for (int g = 0; g < 4; g++) free(s[g]);
    return st;
}

/* At each stage: keep the inputs' statistics and the (unchanged) weights; after the last, quantize the layer.
 * The weights are left as they are, so the calibration stream stays in full precision (AutoAWQ). */
static qn_status awq_hook(void *ud, const qn_calib_stage_io *io, qn_error *err) {
    hfq *q = ud;
    qn_status st;
    if ((st = qn_calib_stage_hessian(q->calib, io, q->ah[io->stage], err))) return st;
    float *xm = q->axm[io->stage];
    double *acc = calloc((size_t)io->k, sizeof(double));
    if (!acc) return qn_error_set(err, QN_ERR_NOMEM, "quantize: out of memory");
    for (int64_t t = 0; t < io->n_tok; t++)
        for (int64_t j = 0; j < io->k; j++) acc[j] += fabs((double)io->x[t * io->k + j]);
    for (int64_t j = 0; j < io->k; j++) xm[j] = (float)(acc[j] / (double)io->n_tok);
    free(acc);
    static const int first[QN_CALIB_STAGE_COUNT] = {0, 3, 4, 6};
    for (int i = 0; i < io->n_lin; i++) {
        const int li = first[io->stage] + i;
        const qn_calib_linear *l = &io->lin[i];
        if (l->n % 8 || l->k % q->p->awq.group_size)
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "quantize: model.layers.%d.%s: shape [%lld, %lld]: the AWQ "
                                "GEMM layout needs out_features %% 8 == 0 and in_features a multiple of the group size "
                                "%d (try a --group-size that divides it)", io->layer, l->name, (long long)l->n,
                                (long long)l->k, q->p->awq.group_size);
        memcpy(q->aw[li], l->w, sizeof(float) * (size_t)(l->n * l->k));
        q->an[li] = l->n, q->ak[li] = l->k;
    }
    return io->stage == QN_CALIB_STAGE_DOWN ? awq_layer(q, io->layer, err) : QN_OK;
}

/* ------------------------------------------------------------------ NF4 */

static qn_status emit_nf4(hfq *q, const char *wname, const float *w, int64_t n, int64_t k, qn_st_dtype src_dt,
                          qn_error *err) {
    qn_nf4_result r;
    qn_status st = qn_nf4_quantize(w, n * k, q->p->double_quant, &r, err);
    if (st != QN_OK) return st;
    char nm[400];
    const int64_t nb = r.n_blocks;
    /* hand the arrays over to the table one by one (add_tensor frees on failure) */
    float *qm = malloc(sizeof(float) * 16), *nqm = r.nested ? malloc(sizeof(float) * 256) : NULL;
    if (!qm || (r.nested && !nqm)) {
        free(qm), free(nqm);
        qn_nf4_result_free(&r);
        return qn_error_set(err, QN_ERR_NOMEM, "quantize: out of memory");
    }
    memcpy(qm, QN_BNB4_NF4_MAP, sizeof(float) * 16);
    if (nqm) memcpy(nqm, r.nested_map, sizeof(float) * 256);
    char js[512];
    int len = snprintf(js, sizeof js, "{\"quant_type\": \"nf4\", \"blocksize\": %d, \"dtype\": \"%s\", \"shape\": [%lld, %lld]",
                       r.blocksize, src_dt == QN_ST_DTYPE_BF16 ? "bfloat16" : "float16", (long long)n, (long long)k);
    if (r.nested) {
        char off[40];
        for (int prec = 1; prec <= 17; prec++) { /* Python's repr: the shortest text that reads back the double */
            snprintf(off, sizeof off, "%.*g", prec, (double)r.nested_offset);
            if (strtod(off, NULL) == (double)r.nested_offset) break;
        }
        if (!strpbrk(off, ".en")) strcat(off, ".0");
        len += snprintf(js + len, sizeof js - (size_t)len,
                        ", \"nested_blocksize\": %d, \"nested_dtype\": \"float32\", \"nested_offset\": %s",
                        QN_NF4_NESTED_BLOCKSIZE, off);
    }
    len += snprintf(js + len, sizeof js - (size_t)len, "}");
    uint8_t *jsb = malloc((size_t)len);
    if (jsb) memcpy(jsb, js, (size_t)len);
    uint8_t *codes = r.codes;
    float *am = r.absmax, *nam = r.nested_absmax;
    uint8_t *amq = r.absmax_q;
    r.codes = NULL, r.absmax = NULL, r.nested_absmax = NULL, r.absmax_q = NULL;
    const int64_t n_nested = r.n_nested;
    qn_nf4_result_free(&r);
    if (amq) free(am), am = NULL;
    const size_t L = strlen(wname) - strlen("weight");
    char pre[300];
    snprintf(pre, sizeof pre, "%.*s", (int)L, wname);
    if (!jsb) {
        free(codes), free(am), free(amq), free(nam), free(qm), free(nqm);
        return qn_error_set(err, QN_ERR_NOMEM, "quantize: out of memory");
    }
    snprintf(nm, sizeof nm, "%sweight", pre);
    st = add_tensor(q, nm, QN_ST_DTYPE_U8, 2, (n * k + 1) / 2, 1, codes, NULL, err);
    snprintf(nm, sizeof nm, "%sweight.absmax", pre);
    if (amq) st = st ? (free(amq), st) : add_tensor(q, nm, QN_ST_DTYPE_U8, 1, nb, 0, amq, NULL, err);
    else st = st ? (free(am), st) : add_tensor(q, nm, QN_ST_DTYPE_F32, 1, nb, 0, am, NULL, err);
    snprintf(nm, sizeof nm, "%sweight.quant_map", pre);
    st = st ? (free(qm), st) : add_tensor(q, nm, QN_ST_DTYPE_F32, 1, 16, 0, qm, NULL, err);
    if (nam) {
        snprintf(nm, sizeof nm, "%sweight.nested_absmax", pre);
        st = st ? (free(nam), st) : add_tensor(q, nm, QN_ST_DTYPE_F32, 1, n_nested, 0, nam, NULL, err);
        snprintf(nm, sizeof nm, "%sweight.nested_quant_map", pre);
        st = st ? (free(nqm), st) : add_tensor(q, nm, QN_ST_DTYPE_F32, 1, 256, 0, nqm, NULL, err);
    }
    snprintf(nm, sizeof nm, "%sweight.quant_state.bitsandbytes__nf4", pre);
    return st ? (free(jsb), st) : add_tensor(q, nm, QN_ST_DTYPE_U8, 1, len, 0, jsb, NULL, err);
}

/* ------------------------------------------------------------------ files */

static qn_status copy_file(const char *src, const char *dst, qn_error *err) {
    FILE *in = fopen(src, "rb");
    if (!in) return QN_OK; /* optional files */
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return qn_error_set(err, QN_ERR_IO, "%s: cannot create", dst);
    }
    char buf[65536];
    size_t r;
    bool bad = false;
    while ((r = fread(buf, 1, sizeof buf, in)) > 0) bad |= fwrite(buf, 1, r, out) != r;
    bad |= ferror(in) != 0;
    fclose(in);
    bad |= fclose(out) != 0;
    return bad ? qn_error_set(err, QN_ERR_IO, "%s: write failed", dst) : QN_OK;
}

static json_t *quant_config_json(const qn_hfq_params *p) {
    if (p->method == QN_HFQ_NF4)
        return json_pack("{s:b,s:b,s:s,s:s,s:s,s:b,s:b,s:b,s:n,s:f,s:b,s:b,s:s}", "_load_in_4bit", 1, "_load_in_8bit", 0,
                         "bnb_4bit_compute_dtype", "float16", "bnb_4bit_quant_storage", "uint8",
                         "bnb_4bit_quant_type", "nf4", "bnb_4bit_use_double_quant", p->double_quant,
                         "llm_int8_enable_fp32_cpu_offload", 0, "llm_int8_has_fp16_weight", 0,
                         "llm_int8_skip_modules", "llm_int8_threshold", 6.0, "load_in_4bit", 1, "load_in_8bit", 0,
                         "quant_method", "bitsandbytes");
    if (p->method == QN_HFQ_AWQ)
        return json_pack("{s:s,s:i,s:i,s:b,s:s,s:n}", "quant_method", "awq", "bits", 4, "group_size",
                         p->awq.group_size, "zero_point", 1, "version", "gemm", "modules_to_not_convert");
    const qn_gptq_params *g = &p->gptq;
    const bool act = g->act_order && !p->rtn, stat = g->static_groups && !p->rtn; /* RTN has no Hessian order */
    return json_pack("{s:i,s:i,s:b,s:b,s:f,s:b,s:b,s:b,s:s,s:s,s:s,s:n,s:s,s:{s:[s],s:f,s:b,s:b,s:b,s:s}}", "bits",
                     g->bits, "group_size", g->group_size, "desc_act", act, "sym", g->sym, "damp_percent",
                     (double)g->damp, "static_groups", stat, "true_sequential", 1, "lm_head", 0, "quant_method", "gptq",
                     "checkpoint_format", g->v2 ? "gptq_v2" : "gptq", "pack_dtype", "int32", "model_name_or_path",
                     "model_file_base_name", "model", "meta", "quantizer", p->rtn ? "quern:rtn" : "quern:gptq",
                     "damp_percent", (double)g->damp, "static_groups", stat, "true_sequential", 1, "mse", g->mse,
                     "calibration", p->rtn ? "none" : "text");
}

static qn_status write_json(json_t *j, const char *path, qn_error *err) {
    if (!j || json_dump_file(j, path, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) != 0)
        return qn_error_set(err, QN_ERR_IO, "%s: cannot write", path);
    return QN_OK;
}

static qn_status write_configs(const char *in_dir, const char *tmp, const qn_hfq_params *p, qn_error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", in_dir);
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je);
    if (!cfg) return qn_error_set(err, QN_ERR_FORMAT, "%s: %s (line %d)", path, je.text, je.line);
    json_t *qc = quant_config_json(p);
    if (!qc) {
        json_decref(cfg);
        return qn_error_set(err, QN_ERR_NOMEM, "quantize: out of memory");
    }
    json_object_set(cfg, "quantization_config", qc);
    snprintf(path, sizeof path, "%s/config.json", tmp);
    qn_status st = write_json(cfg, path, err);
    json_decref(cfg);
    if (st == QN_OK && p->method == QN_HFQ_GPTQ) {
        snprintf(path, sizeof path, "%s/quantize_config.json", tmp);
        st = write_json(qc, path, err);
    }
    json_decref(qc);
    static const char *const files[] = {"tokenizer.json",      "tokenizer_config.json", "special_tokens_map.json",
                                        "generation_config.json", "vocab.json",         "merges.txt",
                                        "tokenizer.model",     "added_tokens.json",     "chat_template.jinja"};
    for (size_t i = 0; st == QN_OK && i < sizeof files / sizeof files[0]; i++) {
        char src[4200];
        snprintf(src, sizeof src, "%s/%s", in_dir, files[i]);
        snprintf(path, sizeof path, "%s/%s", tmp, files[i]);
        st = copy_file(src, path, err);
    }
    return st;
}

static void remove_dir(const char *dir) { /* the temporary directory holds only our flat files */
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4400];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* 1: absent, 0: an empty directory, -1: anything else */
static int out_state(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) != 0) return errno == ENOENT ? 1 : -1;
    if (!S_ISDIR(sb.st_mode)) return -1;
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n ? -1 : 0;
}

/* ------------------------------------------------------------------ driver */

static void progress(hfq *q, const char *what, int64_t i, int64_t n, bool done) {
    if (!q->p->progress) return;
    const double el = now_s() - q->t0;
    const qn_hfq_progress pr = {.what = what, .index = i, .count = n, .elapsed_s = el,
                                .eta_s = i + 1 < n ? el / (double)(i + 1) * (double)(n - i - 1) : 0,
                                .loss = q->layer_loss, .done = done,
                                .device = q->be ? qn_calib_backend_name(q->be) : "cpu"};
    q->p->progress(q->p->progress_ud, &pr);
}

static qn_status quantize_layers(hfq *q, qn_error *err) {
    qn_model *m = q->m;
    const qn_model_config *c = &m->cfg;
    qn_status st;
    const int64_t kmax = c->n_ff > c->n_embd ? (c->n_ff > (int64_t)c->n_head * c->head_dim ? c->n_ff : (int64_t)c->n_head * c->head_dim)
                                             : ((int64_t)c->n_head * c->head_dim > c->n_embd ? (int64_t)c->n_head * c->head_dim : c->n_embd);
    const bool awq = q->p->method == QN_HFQ_AWQ;
    if ((q->p->method == QN_HFQ_GPTQ && !q->p->rtn) || awq) {
        if (!q->p->calib_text)
            return qn_error_set(err, QN_ERR_INVALID_ARG, "quantize: %s needs calibration text (--calib FILE)",
                                awq ? "awq" : "gptq");
        const int64_t gs = q->p->awq.group_size, HQ = (int64_t)c->n_head * c->head_dim;
        if (awq && (c->n_embd % gs || HQ % gs || c->n_ff % gs)) /* before the calibration forward: fail fast */
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "quantize: in_features %lld / %lld / %lld: the AWQ GEMM layout "
                                "needs each a multiple of the group size %lld (try a --group-size that divides them)",
                                (long long)c->n_embd, (long long)HQ, (long long)c->n_ff, (long long)gs);
        if (!(q->h = malloc(sizeof(float) * (size_t)(kmax * kmax))))
            return qn_error_set(err, QN_ERR_NOMEM, "quantize: out of memory");
        for (int i = 0; awq && i < 7; i++)
            if (!(q->aw[i] = malloc(sizeof(float) * (size_t)(kmax * kmax)))) /* n·k <= kmax² for every linear */
                return qn_error_set(err, QN_ERR_NOMEM, "quantize: out of memory");
        for (int i = 0; awq && i < QN_CALIB_STAGE_COUNT; i++)
            if (!(q->ah[i] = malloc(sizeof(float) * (size_t)(kmax * kmax))) || !(q->axm[i] = malloc(sizeof(float) * (size_t)kmax)))
                return qn_error_set(err, QN_ERR_NOMEM, "quantize: out of memory");
        if ((st = qn_calib_backend_create(q->p->device, q->tp, &q->be, err)) ||
            (st = qn_calib_create(m, q->p->calib_text, q->p->calib_len, &q->p->calib, q->tp, q->be, &q->calib, err)))
            return st;
        progress(q, "calibration", 0, 1, false);
        for (int32_t il = 0; il < c->n_layer; il++) {
            q->layer_loss = 0;
            if ((st = qn_calib_run_layer(q->calib, il, awq ? awq_hook : gptq_hook, q, err))) return st;
            progress(q, "layer", il, c->n_layer, il + 1 == c->n_layer);
        }
        return QN_OK;
    }
    /* RTN and NF4: weights alone, layer by layer */
    float *w = malloc(sizeof(float) * (size_t)(kmax * (c->n_ff > c->n_embd ? c->n_ff : c->n_embd) * 2));
    if (!w) return qn_error_set(err, QN_ERR_NOMEM, "quantize: out of memory");
    static const char *const names[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                         "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    st = QN_OK;
    for (int32_t il = 0; il < c->n_layer && st == QN_OK; il++) {
        const qn_layer_weights *L = &m->layers[il];
        const qn_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        q->layer_loss = 0;
        for (int i = 0; i < 7 && st == QN_OK; i++) {
            for (int64_t r = 0; r < ws[i]->n && st == QN_OK; r++)
                if (qn_weight_row_f32(ws[i], r, w + r * ws[i]->k) != QN_OK)
                    st = qn_error_set(err, QN_ERR_UNSUPPORTED, "quantize: %s: input is already quantized", ws[i]->name);
            if (st != QN_OK) break;
            if (q->p->method == QN_HFQ_NF4) {
                const qn_st_tensor *t = qn_st_find(m->st, ws[i]->name);
                st = emit_nf4(q, ws[i]->name, w, ws[i]->n, ws[i]->k, t ? t->dtype : QN_ST_DTYPE_F16, err);
            } else {
                const qn_calib_linear lin = {.name = names[i], .k = ws[i]->k, .n = ws[i]->n, .w = w};
                st = emit_gptq(q, il, &lin, NULL, err);
            }
        }
        progress(q, "layer", il, c->n_layer, il + 1 == c->n_layer);
    }
    free(w);
    return st;
}

qn_status qn_hf_quantize(const char *in_dir, const char *out_dir, const qn_hfq_params *p, qn_error *err) {
    char path[4200], tmp[4096];
    snprintf(path, sizeof path, "%s/config.json", in_dir);
    if (access(path, R_OK) != 0) return qn_error_set(err, QN_ERR_NOT_FOUND, "%s: missing config.json", in_dir);
    if (p->method == QN_HFQ_GPTQ) {
        const qn_gptq_params *g = &p->gptq;
        if (g->bits != 2 && g->bits != 3 && g->bits != 4 && g->bits != 8)
            return qn_error_set(err, QN_ERR_INVALID_ARG, "quantize: --bits %d is not supported (2, 3, 4, 8)", g->bits);
        if (g->group_size == 0 || g->group_size < -1)
            return qn_error_set(err, QN_ERR_INVALID_ARG, "quantize: --group-size %d (a positive size or -1)", g->group_size);
        if (!(g->damp >= 0 && g->damp < 1))
            return qn_error_set(err, QN_ERR_INVALID_ARG, "quantize: --damp %g (0 <= damp < 1)", (double)g->damp);
    }
    if (p->method == QN_HFQ_AWQ) {
        const qn_awq_params *a = &p->awq;
        if (a->group_size <= 0 || a->group_size % 8)
            return qn_error_set(err, QN_ERR_INVALID_ARG, "quantize: --group-size %d (AWQ: a positive multiple of 8)",
                                a->group_size);
        if (a->n_grid < 1 || a->clip_grid < 1 || !(a->max_shrink >= 0 && a->max_shrink < 1))
            return qn_error_set(err, QN_ERR_INVALID_ARG, "quantize: awq grid %d / clip grid %d / max shrink %g",
                                a->n_grid, a->clip_grid, (double)a->max_shrink);
    }
    const int os = out_state(out_dir);
    if (os < 0) return qn_error_set(err, QN_ERR_INVALID_ARG, "%s: exists and is not an empty directory", out_dir);
    qn_hf_quant_config qc;
    qn_status st = qn_hf_quant_config_read(in_dir, &qc, err);
    if (st != QN_OK) return st;
    if (qc.method != QN_HF_QUANT_NONE)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: the model is already quantized (quantization_config)", in_dir);

    hfq q = {.p = p, .t0 = now_s()};
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_dir, (long)getpid());
    if ((st = qn_model_load_hf(in_dir, NULL, &q.m, err))) return st;
    if ((st = qn_threadpool_create(p->n_threads > 0 ? p->n_threads : 1, &q.tp, err))) goto done;
    if (mkdir(tmp, 0755) != 0) {
        st = qn_error_set(err, QN_ERR_IO, "%s: cannot create (%s)", tmp, strerror(errno));
        goto done;
    }
    if ((st = quantize_layers(&q, err))) goto err_rm;
    qn_calib_destroy(q.calib), q.calib = NULL;
    /* everything else as stored */
    for (int64_t i = 0; i < qn_st_n_tensors(q.m->st); i++) {
        const qn_st_tensor *t = qn_st_tensor_at(q.m->st, i);
        if (is_layer_linear(t->name) || (p->method == QN_HFQ_AWQ && is_layer_norm(t->name))) continue;
        if (t->n_dims > 2) {
            st = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s' has %u dims", in_dir, t->name, t->n_dims);
            goto err_rm;
        }
        if ((st = add_tensor(&q, t->name, t->dtype, t->n_dims, t->n_dims ? t->shape[0] : 1, t->n_dims > 1 ? t->shape[1] : 0,
                             NULL, t->data, err)))
            goto err_rm;
        q.t[q.n_t - 1].n_dims = t->n_dims;
    }
    qn_st_writer *w = NULL;
    if ((st = qn_st_writer_create(&w, err)) || (st = qn_st_writer_add_metadata(w, "format", "pt", err))) goto err_w;
    for (int64_t i = 0; i < q.n_t; i++)
        if ((st = qn_st_writer_add(w, q.t[i].name, q.t[i].dtype, q.t[i].n_dims, q.t[i].shape, err))) goto err_w;
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    if ((st = qn_st_writer_write_file(w, path, fill, &q, err))) goto err_w;
    qn_st_writer_destroy(w), w = NULL;
    if ((st = write_configs(in_dir, tmp, p, err))) goto err_rm;
    if (os == 0) rmdir(out_dir);
    if (rename(tmp, out_dir) != 0) {
        st = qn_error_set(err, QN_ERR_IO, "%s: cannot rename to %s (%s)", tmp, out_dir, strerror(errno));
        goto err_rm;
    }
    progress(&q, "write", 0, 1, true);
    goto done;
err_w:
    qn_st_writer_destroy(w);
err_rm:
    remove_dir(tmp);
done:
    qn_calib_destroy(q.calib);
    qn_calib_backend_destroy(q.be);
    for (int64_t i = 0; i < q.n_t; i++) free(q.t[i].name), free(q.t[i].data);
    free(q.t), free(q.h);
    for (int i = 0; i < 7; i++) free(q.aw[i]);
    for (int i = 0; i < QN_CALIB_STAGE_COUNT; i++) free(q.ah[i]), free(q.axm[i]);
    qn_threadpool_destroy(q.tp);
    qn_model_free(q.m);
    return st;
}
