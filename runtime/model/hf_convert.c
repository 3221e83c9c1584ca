/* hf_convert.c — Hugging Face directory -> GGUF (contract in hf_convert.h). Follows llama.cpp's
 * convert_hf_to_gguf.py (conversion/base.py, conversion/llama.py, conversion/qwen.py): tensors in
 * its order (shards by file name, names sorted in each), 1-D tensors and *_norm.weight in F32, 2-D
 * weights in the out type, Q8_0 falling back to F16 for rows that are not a multiple of 32; keys
 * general.*, <arch>.* (TextModel.set_gguf_parameters + LlamaModel's vocab_size and
 * rope.dimension_count) and tokenizer.* (tokenizer/hf_tokenizer.h). Values go through f32 and the
 * reference quantizers (QN_QFORMATS[].quantize_weight), so an F16/BF16 checkpoint written to its own
 * type keeps its bits. */
#include "model/hf_convert.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/model_config.h"
#include "core/threadpool.h"
#include "kernels/common/half.h"
#include "kernels/quant/qformat.h"
#include "model/arch.h"
#include "model/gguf_write.h"
#include "model/hf_names.h"
#include "model/safetensors.h"
#include "tokenizer/hf_tokenizer.h"

typedef struct conv_tensor {
    const qn_st_tensor *t;      /* the HF tensor */
    char name[64];              /* GGUF name */
    int64_t n_heads;            /* > 0: rows (elements of a bias) permuted with this many heads */
    qn_qformat fmt;             /* output type */
    uint32_t n_dims;
    int64_t ne[4];              /* GGUF order */
    const qn_st_tensor *lora_a; /* [r][in] or NULL */
    const qn_st_tensor *lora_b; /* [out][r] */
    double lora_scale;
} conv_tensor;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* element i of a F32/F16/BF16 tensor (data may be unaligned) */
static float st_at(const qn_st_tensor *t, int64_t i) {
    const uint8_t *p = (const uint8_t *)t->data;
    if (t->dtype == QN_ST_DTYPE_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return t->dtype == QN_ST_DTYPE_F16 ? qn_f16_to_f32(h) : qn_bf16_to_f32(h);
}

static bool float_dtype(qn_st_dtype d) { return d == QN_ST_DTYPE_F32 || d == QN_ST_DTYPE_F16 || d == QN_ST_DTYPE_BF16; }

/* Row `row` of the GGUF tensor: the permuted HF row, plus the LoRA update (accumulated in double). */
static void conv_row(void *ud, int64_t row, float *out) {
    const conv_tensor *c = ud;
    const int64_t k = c->ne[0];
    if (c->n_dims == 1) {
        for (int64_t j = 0; j < k; j++) out[j] = st_at(c->t, c->n_heads ? qn_hf_perm_src_row(j, k, c->n_heads, true) : j);
        return;
    }
    const int64_t src = c->n_heads ? qn_hf_perm_src_row(row, c->ne[1], c->n_heads, true) : row;
    if (!c->lora_a) {
        for (int64_t j = 0; j < k; j++) out[j] = st_at(c->t, src * k + j);
        return;
    }
    const int64_t r = c->lora_a->shape[0];
    for (int64_t j = 0; j < k; j++) {
        double acc = 0.0;
        for (int64_t q = 0; q < r; q++) acc += (double)st_at(c->lora_b, src * r + q) * (double)st_at(c->lora_a, q * k + j);
        out[j] = (float)((double)st_at(c->t, src * k + j) + c->lora_scale * acc);
    }
}

static int conv_cmp(const void *a, const void *b) {
    const conv_tensor *x = a, *y = b;
    const int s = strcmp(base_name(x->t->shard), base_name(y->t->shard));
    return s ? s : strcmp(x->t->name, y->t->name);
}

/* ------------------------------------------------------------------------------------------------ */
/* LoRA                                                                                             */

typedef struct lora {
    qn_st *st;
    double scale;
    char path[4096];     /* adapter_model.safetensors */
    int64_t n_used;
} lora;

/* "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" -> module
 * "model.layers.0.self_attn.q_proj", which 'A' or 'B'; false for other names. */
static bool lora_split(const char *name, char *module, size_t cap, char *which) {
    const char *pre = "base_model.model.";
    if (strncmp(name, pre, strlen(pre))) return false;
    name += strlen(pre);
    const char *m = strstr(name, ".lora_A.");
    if (!m) m = strstr(name, ".lora_B.");
    if (!m) return false;
    const char *rest = m + 8;
    if (strcmp(rest, "weight") && strcmp(rest, "default.weight")) return false;
    snprintf(module, cap, "%.*s", (int)(m - name), name);
    *which = m[6];
    return true;
}

static qn_status lora_open(const char *dir, lora *L, qn_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je);
    if (!cfg)
        return qn_error_set(err, access(path, F_OK) ? QN_ERR_NOT_FOUND : QN_ERR_FORMAT, "%s: %s", path, je.text);
    qn_status st = QN_OK;
    json_t *r = json_object_get(cfg, "r"), *alpha = json_object_get(cfg, "lora_alpha");
    const char *bad = NULL;
    if (!json_is_integer(r) || json_integer_value(r) <= 0) bad = "r";
    else if (!json_is_number(alpha)) bad = "lora_alpha";
    if (bad) {
        st = qn_error_set(err, QN_ERR_FORMAT, "%s: field '%s' is missing or not a positive number", path, bad);
        goto done;
    }
    if (json_is_true(json_object_get(cfg, "fan_in_fan_out")) || json_object_size(json_object_get(cfg, "rank_pattern")) ||
        json_object_size(json_object_get(cfg, "alpha_pattern")) || json_is_true(json_object_get(cfg, "use_dora"))) {
        st = qn_error_set(err, QN_ERR_UNSUPPORTED,
                          "%s: fields 'fan_in_fan_out' / 'rank_pattern' / 'alpha_pattern' / 'use_dora' are not supported",
                          path);
        goto done;
    }
    const double rr = (double)json_integer_value(r);
    L->scale = json_number_value(alpha) / (json_is_true(json_object_get(cfg, "use_rslora")) ? sqrt(rr) : rr);
    snprintf(L->path, sizeof L->path, "%s/adapter_model.safetensors", dir);
    if (access(L->path, F_OK)) {
        st = qn_error_set(err, QN_ERR_NOT_FOUND, "%s: not found (only safetensors adapters are read)", L->path);
        goto done;
    }
    st = qn_st_open(L->path, &L->st, err);
done:
    json_decref(cfg);
    return st;
}

/* Finds the adapter of every weight; every adapter tensor must land on a weight of the model. */
static qn_status lora_bind(lora *L, conv_tensor *list, int64_t n, qn_error *err) {
    for (int64_t i = 0; i < qn_st_n_tensors(L->st); i++) {
        const qn_st_tensor *t = qn_st_tensor_at(L->st, i);
        char module[256], which, wname[300];
        if (!lora_split(t->name, module, sizeof module, &which))
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s' is not a LoRA A/B matrix (modules_to_save, "
                                "biases and embeddings are not merged)", L->path, t->name);
        snprintf(wname, sizeof wname, "%s.weight", module);
        conv_tensor *c = NULL;
        for (int64_t j = 0; j < n && !c; j++)
            if (!strcmp(list[j].t->name, wname)) c = &list[j];
        if (!c || c->n_dims != 2)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': the model has no 2-D weight '%s'", L->path,
                                t->name, wname);
        if (!float_dtype(t->dtype) || t->n_dims != 2)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': field dtype/shape: need a 2-D F32/F16/BF16 matrix",
                                L->path, t->name);
        if (which == 'A') c->lora_a = t;
        else c->lora_b = t;
    }
    for (int64_t j = 0; j < n; j++) {
        conv_tensor *c = &list[j];
        if (!c->lora_a && !c->lora_b) continue;
        if (!c->lora_a || !c->lora_b)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: module of '%s': lora_%s is missing", L->path, c->t->name,
                                c->lora_a ? "B" : "A");
        const int64_t out = c->t->shape[0], in = c->t->shape[1];
        if (c->lora_a->shape[1] != in || c->lora_b->shape[0] != out || c->lora_b->shape[1] != c->lora_a->shape[0])
            return qn_error_set(err, QN_ERR_FORMAT,
                                "%s: tensor '%s': field shape: lora_A [%lld, %lld] and lora_B [%lld, %lld] do not fit "
                                "the weight [%lld, %lld]", L->path, c->lora_a->name, (long long)c->lora_a->shape[0],
                                (long long)c->lora_a->shape[1], (long long)c->lora_b->shape[0],
                                (long long)c->lora_b->shape[1], (long long)out, (long long)in);
        c->lora_scale = L->scale;
        L->n_used++;
    }
    return QN_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* metadata                                                                                         */

/* gguf-py's size_label: "135M", "7.2B" (at least two significant digits) */
static void size_label(uint64_t n, char *buf, size_t cap) {
    double s;
    const char *suf;
    if (n > 1e12) s = (double)n * 1e-12, suf = "T";
    else if (n > 1e9) s = (double)n * 1e-9, suf = "B";
    else if (n > 1e6) s = (double)n * 1e-6, suf = "M";
    else s = (double)n * 1e-3, suf = "K";
    char r[32];
    snprintf(r, sizeof r, "%.0f", nearbyint(s));
    const int digits = r[0] == '0' ? 0 : (int)strlen(r);
    const int fix = digits < 2 ? 2 - digits : 0;
    snprintf(buf, cap, "%.*f%s", fix, s, suf);
}

static qn_status put_meta(qn_gguf_writer *w, const char *arch, const qn_model_config *c, json_t *hf,
                          const char *name, uint64_t n_params, qn_ftype ftype, qn_error *err) {
    char key[128], label[32];
    qn_status st;
    size_label(n_params, label, sizeof label);
    if ((st = qn_gguf_writer_add_str(w, "general.architecture", arch, err)) ||
        (st = qn_gguf_writer_add_str(w, "general.type", "model", err)) ||
        (st = qn_gguf_writer_add_str(w, "general.name", name, err)) ||
        (st = qn_gguf_writer_add_str(w, "general.size_label", label, err)))
        return st;
#define U32(suffix, v)                                                                      \
    do {                                                                                    \
        snprintf(key, sizeof key, "%s." suffix, arch);                                      \
        if ((st = qn_gguf_writer_add_u32(w, key, (uint32_t)(v), err))) return st;           \
    } while (0)
#define F32(suffix, v)                                                                      \
    do {                                                                                    \
        snprintf(key, sizeof key, "%s." suffix, arch);                                      \
        if ((st = qn_gguf_writer_add_f32(w, key, (v), err))) return st;                     \
    } while (0)
    U32("block_count", c->n_layer);
    U32("context_length", c->n_ctx_train);
    U32("embedding_length", c->n_embd);
    U32("feed_forward_length", c->n_ff);
    U32("attention.head_count", c->n_head);
    U32("attention.head_count_kv", c->n_head_kv);
    const qn_rope_scaling *r = &c->rope_scaling;
    if (r->type == QN_ROPE_SCALING_LINEAR || r->type == QN_ROPE_SCALING_YARN) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
        if ((st = qn_gguf_writer_add_str(w, key, r->type == QN_ROPE_SCALING_LINEAR ? "linear" : "yarn", err))) return st;
        F32("rope.scaling.factor", r->factor);
        if (r->type == QN_ROPE_SCALING_YARN) {
            json_t *rs = json_object_get(hf, "rope_scaling");
            U32("rope.scaling.original_context_length", r->orig_ctx);
            if (json_is_number(json_object_get(rs, "attention_factor"))) F32("rope.scaling.yarn_attn_factor", r->attn_factor);
            if (json_is_number(json_object_get(rs, "beta_fast"))) F32("rope.scaling.yarn_beta_fast", r->yarn_beta_fast);
            if (json_is_number(json_object_get(rs, "beta_slow"))) F32("rope.scaling.yarn_beta_slow", r->yarn_beta_slow);
        }
    }
    /* llama.cpp reads config.json through transformers' AutoConfig, whose defaults fill rope_theta and
     * rms_norm_eps always and head_dim for Llama (transformers 4.57: not Mistral, not Qwen2) */
    F32("rope.freq_base", c->rope_theta);
    F32("attention.layer_norm_rms_epsilon", c->rms_eps);
    if (c->arch == QN_ARCH_LLAMA || json_is_integer(json_object_get(hf, "head_dim"))) {
        U32("attention.key_length", c->head_dim);
        U32("attention.value_length", c->head_dim);
    }
    if ((st = qn_gguf_writer_add_u32(w, "general.file_type", (uint32_t)ftype, err))) return st;
    if (strcmp(arch, "llama") == 0) { /* LlamaModel.set_gguf_parameters */
        U32("vocab_size", c->n_vocab);
        U32("rope.dimension_count", c->head_dim);
    }
#undef U32
#undef F32
    return qn_gguf_writer_add_u32(w, "general.quantization_version", 2, err);
}

/* ------------------------------------------------------------------------------------------------ */
/* the whole conversion                                                                             */

/* Fills list[0..*n) from the checkpoint, checked against the config's tensor table. */
static qn_status plan_tensors(const qn_st *st, const qn_model_config *c, const char *dir, bool permute,
                              qn_ftype outtype, conv_tensor *list, int64_t *n, qn_error *err) {
    const int64_t cap = qn_arch_tensor_max(c);
    qn_arch_tensor *want = malloc(sizeof *want * (size_t)cap);
    if (!want) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", dir);
    int64_t n_want = 0, k = 0;
    qn_status s = qn_arch_tensor_list(c, want, cap, &n_want, err);
    const qn_qformat base = qn_ftype_base_format(outtype);
    for (int64_t i = 0; s == QN_OK && i < qn_st_n_tensors(st); i++) {
        const qn_st_tensor *t = qn_st_tensor_at(st, i);
        const size_t L = strlen(t->name);
        if (L > 20 && !strcmp(t->name + L - 20, ".rotary_emb.inv_freq")) continue; /* llama.cpp drops these */
        conv_tensor *e = &list[k];
        memset(e, 0, sizeof *e);
        qn_hf_perm perm;
        if (!qn_hf_to_gguf_name(t->name, e->name, sizeof e->name, &perm)) {
            s = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s' is not a tensor of a %s model", t->shard, t->name,
                             qn_arch_name(c->arch));
            break;
        }
        const qn_arch_tensor *a = NULL;
        for (int64_t j = 0; j < n_want && !a; j++)
            if (!strcmp(want[j].name, e->name)) a = &want[j];
        if (!a) {
            s = qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': the config (attention_bias, layers) has no '%s'",
                             t->shard, t->name, e->name);
            break;
        }
        if (!float_dtype(t->dtype)) {
            s = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s': field dtype %s (F32, F16, BF16)", t->shard,
                             t->name, qn_st_dtype_name(t->dtype));
            break;
        }
        const int64_t s0 = t->n_dims == 2 ? t->shape[1] : t->shape[0], s1 = t->n_dims == 2 ? t->shape[0] : 1;
        if (t->n_dims != a->n_dims || s0 != a->ne[0] || s1 != a->ne[1]) {
            s = qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': field shape [%lld%s%lld] (%dD), the config needs "
                             "[%lld, %lld] (%uD; PyTorch order, reversed)", t->shard, t->name,
                             (long long)t->shape[0], t->n_dims > 1 ? ", " : " ",
                             (long long)(t->n_dims > 1 ? t->shape[1] : 0), (int)t->n_dims, (long long)a->ne[1],
                             (long long)a->ne[0], a->n_dims);
            break;
        }
        e->t = t;
        e->n_dims = t->n_dims;
        e->ne[0] = s0, e->ne[1] = s1, e->ne[2] = e->ne[3] = 1;
        e->n_heads = !permute ? 0 : perm == QN_HF_PERM_Q ? c->n_head : perm == QN_HF_PERM_K ? c->n_head_kv : 0;
        const size_t nl = strlen(e->name);
        if (e->n_dims <= 1 || (nl > 12 && !strcmp(e->name + nl - 12, "_norm.weight"))) e->fmt = QN_QFORMAT_F32;
        else if (base == QN_QFORMAT_Q8_0 && e->ne[0] % QN_QFORMATS[QN_QFORMAT_Q8_0].block_elems) e->fmt = QN_QFORMAT_F16;
        else e->fmt = base;
        k++;
    }
    for (int64_t j = 0; s == QN_OK && j < n_want; j++) {
        bool found = false;
        for (int64_t i = 0; i < k && !found; i++) found = !strcmp(list[i].name, want[j].name);
        if (!found && want[j].required)
            s = qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s' (GGUF '%s') is missing", dir,
                             want[j].role == QN_TENSOR_ROLE_EMBED ? "model.embed_tokens.weight" : want[j].name,
                             want[j].name);
    }
    free(want);
    if (s == QN_OK) qsort(list, (size_t)k, sizeof *list, conv_cmp);
    *n = k;
    return s;
}

/* general.name: the last part of config.json's _name_or_path, else the directory's name. */
static void model_name(json_t *hf, const char *dir, char *buf, size_t cap) {
    const char *np = json_string_value(json_object_get(hf, "_name_or_path"));
    if (np && *np) {
        snprintf(buf, cap, "%s", np);
        return;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    size_t L = strlen(tmp);
    while (L > 1 && tmp[L - 1] == '/') tmp[--L] = 0;
    snprintf(buf, cap, "%s", base_name(tmp));
}

qn_status qn_hf_convert(const char *dir, const char *out_path, const qn_hf_convert_params *p,
                        qn_hf_convert_stats *stats, qn_error *err) {
    if (!dir || !out_path || !p) return qn_error_set(err, QN_ERR_INVALID_ARG, "convert: NULL argument");
    if (p->outtype != QN_FTYPE_ALL_F32 && p->outtype != QN_FTYPE_MOSTLY_F16 && p->outtype != QN_FTYPE_MOSTLY_BF16 &&
        p->outtype != QN_FTYPE_MOSTLY_Q8_0)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "convert: --outtype must be f32, f16, bf16 or q8_0");
    const double t0 = now_s();
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    qn_model_config c;
    qn_status st;
    if ((st = qn_model_config_from_hf(path, &c, err))) return st;
    if (c.rope_scaling.type == QN_ROPE_SCALING_LLAMA3)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: field 'rope_scaling.rope_type': llama3 (rope_freqs tensor) "
                            "is not converted yet", path);
    json_t *hf = json_load_file(path, 0, NULL);
    qn_st *sf = NULL;
    lora L = {0};
    conv_tensor *list = NULL;
    qn_gguf_writer *w = NULL;
    qn_threadpool *tp = NULL;
    if ((st = qn_st_open(dir, &sf, err))) goto done;
    const int64_t cap = qn_st_n_tensors(sf);
    if (!(list = calloc((size_t)(cap ? cap : 1), sizeof *list))) {
        st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    const bool permute = c.arch != QN_ARCH_QWEN2; /* llama.cpp's LlamaModel.undo_permute */
    const char *arch = c.arch == QN_ARCH_QWEN2 ? "qwen2" : "llama"; /* Mistral is written as llama */
    int64_t n = 0;
    if ((st = plan_tensors(sf, &c, dir, permute, p->outtype, list, &n, err))) goto done;
    if (p->lora_dir && ((st = lora_open(p->lora_dir, &L, err)) || (st = lora_bind(&L, list, n, err)))) goto done;
    uint64_t n_params = 0;
    for (int64_t i = 0; i < n; i++) n_params += (uint64_t)(list[i].ne[0] * list[i].ne[1]);

    char name[512];
    model_name(hf, dir, name, sizeof name);
    if ((st = qn_gguf_writer_create(&w, err)) ||
        (st = put_meta(w, arch, &c, hf, name, n_params, p->outtype, err)) ||
        (st = qn_hf_tokenizer_import(dir, c.n_vocab, c.arch != QN_ARCH_QWEN2, w, err)))
        goto done;
    for (int64_t i = 0; i < n; i++)
        if ((st = qn_gguf_writer_add_tensor(w, list[i].name, list[i].fmt, list[i].n_dims, list[i].ne, NULL, err)))
            goto done;
    if ((st = qn_threadpool_create(p->n_threads > 0 ? p->n_threads : 1, &tp, err))) goto done;
    if ((st = qn_gguf_writer_stream_begin(w, out_path, err))) goto done;
    uint64_t bytes = 0;
    for (int64_t i = 0; i < n; i++) {
        conv_tensor *e = &list[i];
        const uint64_t ob = qn_qformat_row_bytes(e->fmt, e->ne[0]) * (uint64_t)e->ne[1];
        qn_quantize_progress pr = {.index = i, .count = n, .name = e->name, .from = QN_QFORMAT_F32, .to = e->fmt,
                                   .rows = e->ne[1], .n_per_row = e->ne[0], .bytes_in = e->t->nbytes,
                                   .bytes_out = ob, .eta_s = -1};
        pr.elapsed_s = now_s() - t0;
        if (p->progress) p->progress(p->progress_ud, &pr);
        int64_t bad_row = -1;
        st = qn_quantize_tensor_to_stream(tp, w, e->fmt, e->ne[0], e->ne[1], conv_row, e, NULL, NULL, &bad_row, err);
        if (st) {
            if (st == QN_ERR_FORMAT)
                st = qn_error_set(err, st, "%s: tensor '%s': row %lld holds NaN or Inf", e->t->shard, e->t->name,
                                  (long long)bad_row);
            else if (st != QN_ERR_IO)
                st = qn_error_set(err, st, "convert: tensor '%s': cannot encode", e->t->name);
            goto done;
        }
        bytes += ob;
        pr.done = true;
        pr.rows_done = e->ne[1];
        pr.elapsed_s = now_s() - t0;
        if (p->progress) p->progress(p->progress_ud, &pr);
    }
    if ((st = qn_gguf_writer_stream_end(w, err))) goto done;
    if (stats) {
        stats->n_tensors = n;
        stats->n_lora_merged = L.n_used;
        stats->bytes_out = bytes;
        stats->seconds = now_s() - t0;
    }
done:
    qn_threadpool_destroy(tp);
    qn_gguf_writer_destroy(w); /* removes OUT.tmp unless the stream ended */
    qn_st_close(L.st);
    qn_st_close(sf);
    free(list);
    json_decref(hf);
    return st;
}
