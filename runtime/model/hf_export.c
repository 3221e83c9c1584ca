/* hf_export.c — GGUF -> Hugging Face directory (contract in hf_export.h). Values go GGUF block ->
 * f32 (the reference dequantizer) -> the output dtype with round-to-nearest-even, so an F16 or BF16
 * GGUF exported to the same dtype keeps its bits. */
#include "model/hf_export.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/model_config.h"
#include "kernels/common/half.h"
#include "kernels/quant/qformat.h"
#include "model/arch.h"
#include "model/gguf.h"
#include "model/hf_names.h"
#include "model/safetensors_write.h"
#include "tokenizer/hf_tokenizer.h"

#define QN_HF_TRANSFORMERS_VERSION "4.57.6" /* the version llama.cpp's converter pins */

static const char *const QN_EXPORT_FILES[] = {"config.json",    "generation_config.json", "model.safetensors",
                                              "tokenizer.json", "tokenizer_config.json",  "tokenizer.model"};

/* The double whose shortest decimal form gives back f: config.json reads 1e-05, not 9.99999975e-06. */
static json_t *json_f32(float f) {
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if ((float)strtod(buf, NULL) == f) break;
    }
    return json_real(strtod(buf, NULL));
}

static qn_status dump_json(json_t *j, const char *dir, const char *name, qn_error *err) {
    char path[4096], tmp[4100];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!j) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", path);
    const int bad = json_dump_file(j, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) != 0 || rename(tmp, path) != 0;
    json_decref(j);
    if (bad) {
        remove(tmp);
        return qn_error_set(err, QN_ERR_IO, "%s: cannot write", path);
    }
    return QN_OK;
}

static json_t *gguf_json_str(const qn_gguf *g, const char *key) {
    qn_gguf_str s;
    if (qn_gguf_get_str(g, key, &s, NULL) != QN_OK) return NULL;
    return json_stringn(s.ptr, (size_t)s.len);
}

static void set_id(json_t *o, const char *key, const qn_gguf *g, const char *gkey) {
    uint32_t v;
    if (qn_gguf_get_u32(g, gkey, &v, NULL) == QN_OK) json_object_set_new(o, key, json_integer(v));
}

static json_t *config_json(const qn_gguf *g, const qn_model_config *c, qn_st_dtype dtype) {
    static const char *const cls[QN_ARCH_COUNT] = {[QN_ARCH_LLAMA] = "LlamaForCausalLM",
                                                   [QN_ARCH_MISTRAL] = "MistralForCausalLM",
                                                   [QN_ARCH_QWEN2] = "Qwen2ForCausalLM"};
    json_t *o = json_object();
    json_t *name = gguf_json_str(g, "general.name");
    if (name) json_object_set_new(o, "_name_or_path", name);
    json_object_set_new(o, "architectures", json_pack("[s]", cls[c->arch]));
    if (c->arch != QN_ARCH_QWEN2) json_object_set_new(o, "attention_bias", json_boolean(c->qkv_bias));
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    set_id(o, "bos_token_id", g, "tokenizer.ggml.bos_token_id");
    set_id(o, "eos_token_id", g, "tokenizer.ggml.eos_token_id");
    /* head_dim only where the file has key_length, so that convert gives back the same keys */
    char key[96];
    snprintf(key, sizeof key, "%s.attention.key_length", qn_arch_name(c->arch));
    if (qn_gguf_find_key(g, key) >= 0 || c->head_dim * c->n_head != c->n_embd)
        json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "hidden_size", json_integer(c->n_embd));
    json_object_set_new(o, "initializer_range", json_real(0.02));
    json_object_set_new(o, "intermediate_size", json_integer(c->n_ff));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->n_ctx_train));
    if (c->arch == QN_ARCH_LLAMA) json_object_set_new(o, "mlp_bias", json_false());
    json_object_set_new(o, "model_type", json_string(qn_arch_name(c->arch)));
    json_object_set_new(o, "num_attention_heads", json_integer(c->n_head));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layer));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_head_kv));
    set_id(o, "pad_token_id", g, "tokenizer.ggml.padding_token_id");
    json_object_set_new(o, "rms_norm_eps", json_f32(c->rms_eps));
    const qn_rope_scaling *r = &c->rope_scaling;
    if (r->type == QN_ROPE_SCALING_LINEAR) {
        json_object_set_new(o, "rope_scaling", json_pack("{s:s, s:o}", "rope_type", "linear", "factor", json_f32(r->factor)));
    } else if (r->type == QN_ROPE_SCALING_YARN) {
        json_t *y = json_pack("{s:s, s:o, s:i, s:o, s:o}", "rope_type", "yarn", "factor", json_f32(r->factor),
                              "original_max_position_embeddings", r->orig_ctx, "beta_fast", json_f32(r->yarn_beta_fast),
                              "beta_slow", json_f32(r->yarn_beta_slow));
        if (r->attn_factor > 0) json_object_set_new(y, "attention_factor", json_f32(r->attn_factor));
        json_object_set_new(o, "rope_scaling", y);
    } else {
        json_object_set_new(o, "rope_scaling", json_null());
    }
    json_object_set_new(o, "rope_theta", json_f32(c->rope_theta));
    if (c->arch != QN_ARCH_LLAMA) json_object_set_new(o, "sliding_window", json_null());
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tied_embeddings));
    json_object_set_new(o, "torch_dtype", json_string(dtype == QN_ST_DTYPE_F16    ? "float16"
                                                      : dtype == QN_ST_DTYPE_BF16 ? "bfloat16"
                                                                                  : "float32"));
    json_object_set_new(o, "transformers_version", json_string(QN_HF_TRANSFORMERS_VERSION));
    json_object_set_new(o, "use_cache", json_true());
    if (c->arch == QN_ARCH_QWEN2) json_object_set_new(o, "use_sliding_window", json_false());
    json_object_set_new(o, "vocab_size", json_integer(c->n_vocab));
    return o;
}

static json_t *generation_config_json(const qn_gguf *g) {
    json_t *o = json_object();
    json_object_set_new(o, "_from_model_config", json_true());
    set_id(o, "bos_token_id", g, "tokenizer.ggml.bos_token_id");
    set_id(o, "eos_token_id", g, "tokenizer.ggml.eos_token_id");
    set_id(o, "pad_token_id", g, "tokenizer.ggml.padding_token_id");
    json_object_set_new(o, "transformers_version", json_string(QN_HF_TRANSFORMERS_VERSION));
    return o;
}

/* ------------------------------------------------------------------------------------------------ */
/* tensors                                                                                          */

typedef struct export_tensor {
    char hf[128];
    const qn_gguf_tensor *t;
    int64_t n_heads;     /* > 0: rows permuted back with this many heads */
} export_tensor;

typedef struct export_ctx {
    const char *path;
    export_tensor *list;
    int64_t n;
    qn_st_dtype dtype;
    float *row;          /* [max ne0] */
} export_ctx;

static qn_status fill_tensor(void *ud, const char *name, void *dst, uint64_t nbytes, qn_error *err) {
    export_ctx *x = ud;
    const export_tensor *e = NULL;
    for (int64_t i = 0; i < x->n && !e; i++)
        if (!strcmp(x->list[i].hf, name)) e = &x->list[i];
    if (!e) return qn_error_set(err, QN_ERR_INTERNAL, "export: tensor '%s' not in the list", name);
    const qn_gguf_tensor *t = e->t;
    const int64_t ne0 = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
    const size_t rb = qn_qformat_row_bytes(t->fmt, ne0), osz = qn_st_dtype_size(x->dtype);
    if ((uint64_t)(ne0 * rows) * osz != nbytes)
        return qn_error_set(err, QN_ERR_INTERNAL, "export: tensor '%s': size mismatch", name);
    const bool vec = t->n_dims == 1; /* a permuted bias: its elements are the "rows" */
    if (vec && e->n_heads > 0) {
        QN_QFORMATS[t->fmt].dequant_ref(t->data, x->row, ne0);
        for (int64_t j = 0; j < ne0; j++) {
            const float v = x->row[qn_hf_perm_src_row(j, ne0, e->n_heads, false)];
            uint8_t *o = (uint8_t *)dst + (size_t)j * osz;
            if (x->dtype == QN_ST_DTYPE_F32) memcpy(o, &v, 4);
            else {
                const uint16_t h = x->dtype == QN_ST_DTYPE_F16 ? qn_f32_to_f16(v) : qn_f32_to_bf16(v);
                memcpy(o, &h, 2);
            }
        }
        return QN_OK;
    }
    for (int64_t r = 0; r < rows; r++) {
        const int64_t src = e->n_heads > 0 ? qn_hf_perm_src_row(r, rows, e->n_heads, false) : r;
        QN_QFORMATS[t->fmt].dequant_ref((const uint8_t *)t->data + (size_t)src * rb, x->row, ne0);
        uint8_t *o = (uint8_t *)dst + (size_t)(r * ne0) * osz;
        if (x->dtype == QN_ST_DTYPE_F32) {
            memcpy(o, x->row, (size_t)ne0 * 4);
        } else {
            uint16_t *h = (uint16_t *)(void *)o; /* dst is malloc'd: aligned */
            for (int64_t j = 0; j < ne0; j++)
                h[j] = x->dtype == QN_ST_DTYPE_F16 ? qn_f32_to_f16(x->row[j]) : qn_f32_to_bf16(x->row[j]);
        }
    }
    return QN_OK;
}

static qn_status write_weights(const qn_gguf *g, const qn_model_config *c, const char *dir, qn_st_dtype dtype,
                               qn_error *err) {
    const char *gp = qn_gguf_path(g);
    const int64_t n = qn_gguf_n_tensors(g);
    export_ctx x = {.path = gp, .dtype = dtype};
    qn_st_writer *w = NULL;
    int64_t max_ne0 = 1;
    qn_status st = QN_OK;
    if (!(x.list = calloc((size_t)(n ? n : 1), sizeof *x.list)))
        return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", gp);
    if ((st = qn_st_writer_create(&w, err))) goto done;
    const bool permuted = c->rope_style == QN_ROPE_STYLE_NORM; /* llama / mistral files */
    for (int64_t i = 0; i < n; i++) {
        const qn_gguf_tensor *t = qn_gguf_tensor_at(g, i);
        char gname[128];
        snprintf(gname, sizeof gname, "%.*s", (int)(t->name.len > 120 ? 120 : t->name.len), t->name.ptr);
        qn_hf_perm perm;
        export_tensor *e = &x.list[x.n];
        if (!qn_gguf_to_hf_name(gname, e->hf, sizeof e->hf, &perm)) {
            st = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s' has no Hugging Face name here", gp, gname);
            goto done;
        }
        if (QN_QFORMATS[t->fmt].dequant_ref == NULL) {
            st = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s': type %s cannot be dequantized", gp, gname,
                              QN_QFORMATS[t->fmt].name);
            goto done;
        }
        e->t = t;
        e->n_heads = !permuted ? 0 : perm == QN_HF_PERM_Q ? c->n_head : perm == QN_HF_PERM_K ? c->n_head_kv : 0;
        if (e->n_heads > 0 && (t->n_dims == 1 ? t->ne[0] : t->ne[1]) % (2 * e->n_heads)) {
            st = qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': rows not a multiple of 2 x %lld heads", gp, gname,
                              (long long)e->n_heads);
            goto done;
        }
        int64_t shape[4];
        for (uint32_t d = 0; d < t->n_dims; d++) shape[d] = t->ne[t->n_dims - 1 - d]; /* PyTorch order */
        if ((st = qn_st_writer_add(w, e->hf, dtype, t->n_dims, shape, err))) goto done;
        if (t->ne[0] > max_ne0) max_ne0 = t->ne[0];
        x.n++;
    }
    if (!(x.row = malloc(sizeof(float) * (size_t)max_ne0))) {
        st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", gp);
        goto done;
    }
    if ((st = qn_st_writer_add_metadata(w, "format", "pt", err))) goto done;
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st = qn_st_writer_write_file(w, path, fill_tensor, &x, err);
done:
    qn_st_writer_destroy(w);
    free(x.row);
    free(x.list);
    return st;
}

qn_status qn_hf_export_meta(const qn_gguf *g, const qn_model_config *c, qn_st_dtype dtype, const char *quant_config,
                            bool tokenizer, const char *out_dir, qn_error *err) {
    json_t *cfg = config_json(g, c, dtype);
    if (quant_config) {
        json_error_t je;
        json_t *q = json_loads(quant_config, 0, &je);
        if (!q || !json_is_object(q)) {
            json_decref(q);
            json_decref(cfg);
            return qn_error_set(err, QN_ERR_INVALID_ARG, "export-hf: quantization_config is not a JSON object: %s",
                                je.text);
        }
        json_object_set_new(cfg, "quantization_config", q);
    }
    qn_status st;
    if (tokenizer && (st = qn_hf_tokenizer_export(g, c->n_ctx_train, out_dir, err))) {
        json_decref(cfg);
        return st;
    }
    if ((st = dump_json(cfg, out_dir, "config.json", err))) return st;
    return dump_json(generation_config_json(g), out_dir, "generation_config.json", err);
}

qn_status qn_hf_export(const char *gguf_path, const char *out_dir, qn_st_dtype dtype, qn_error *err) {
    if (dtype != QN_ST_DTYPE_F16 && dtype != QN_ST_DTYPE_BF16 && dtype != QN_ST_DTYPE_F32)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "export-hf: dtype must be f16, bf16 or f32");
    qn_gguf *g = NULL;
    qn_model_config c;
    qn_status st;
    if ((st = qn_gguf_open(gguf_path, &g, err))) return st;
    if ((st = qn_model_config_from_gguf(g, &c, err)) || (st = qn_arch_check_tensors(g, &c, err))) goto done;
    if (c.rope_freqs_tensor) {
        st = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor 'rope_freqs.weight': llama3 rope factors cannot be "
                          "turned back into config.json's rope_scaling", gguf_path);
        goto done;
    }
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
        st = qn_error_set(err, QN_ERR_IO, "%s: mkdir: %s", out_dir, strerror(errno));
        goto done;
    }
    if ((st = qn_hf_export_meta(g, &c, dtype, NULL, true, out_dir, err)) ||
        (st = write_weights(g, &c, out_dir, dtype, err)))
        goto done;
done:
    if (st != QN_OK)
        for (size_t i = 0; i < sizeof QN_EXPORT_FILES / sizeof QN_EXPORT_FILES[0]; i++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", out_dir, QN_EXPORT_FILES[i]);
            remove(p);
        }
    qn_gguf_close(g);
    return st;
}
