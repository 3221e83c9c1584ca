/* model_config.c — qn_model_config from GGUF metadata (formats.md §1.3) or an HF config.json, then
 * one shared validation pass. GGUF keys are "<general.architecture>.<suffix>"; counts may be stored
 * with any integer width. HF checkpoints keep q/k rows in HF order, hence NEOX rope for all of them. */
#include "config/model_config.h"

#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "model/gguf.h"

static const char *const QN_ARCH_NAMES[QN_ARCH_COUNT] = {
    [QN_ARCH_LLAMA] = "llama", [QN_ARCH_MISTRAL] = "mistral", [QN_ARCH_QWEN2] = "qwen2"};

const char *qn_arch_name(qn_arch a) { return (unsigned)a < QN_ARCH_COUNT ? QN_ARCH_NAMES[a] : "unknown"; }

const char *qn_rope_style_name(qn_rope_style s) { return s == QN_ROPE_STYLE_NEOX ? "neox" : "norm"; }

const char *qn_rope_scaling_type_name(qn_rope_scaling_type t) {
    switch (t) {
    case QN_ROPE_SCALING_NONE: return "none";
    case QN_ROPE_SCALING_LINEAR: return "linear";
    case QN_ROPE_SCALING_YARN: return "yarn";
    case QN_ROPE_SCALING_LLAMA3: return "llama3";
    }
    return "unknown";
}

static void config_defaults(qn_model_config *c) {
    memset(c, 0, sizeof *c);
    c->rope_theta = 10000.0f;
    c->rope_scaling.type = QN_ROPE_SCALING_NONE;
    c->rope_scaling.factor = 1.0f;
    c->rope_scaling.low_freq_factor = 1.0f;
    c->rope_scaling.high_freq_factor = 4.0f;
    c->rope_scaling.yarn_beta_fast = 32.0f;
    c->rope_scaling.yarn_beta_slow = 1.0f;
    c->bos_id = -1;
    c->eos_id = -1;
}

/* Checks what both constructors must guarantee; file names the source in messages. */
static qn_status validate(const qn_model_config *c, const char *file, qn_error *err) {
    const struct {
        const char *name;
        int32_t v;
    } pos[] = {{"n_vocab", c->n_vocab}, {"n_ctx_train", c->n_ctx_train}, {"n_embd", c->n_embd},
               {"n_layer", c->n_layer}, {"n_ff", c->n_ff},               {"n_head", c->n_head},
               {"n_head_kv", c->n_head_kv}, {"head_dim", c->head_dim}, {"rope_dim", c->rope_dim}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: %s = %d must be positive", file, pos[i].name, pos[i].v);
    if (c->n_head % c->n_head_kv)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: n_head %d is not a multiple of n_head_kv %d", file, c->n_head,
                            c->n_head_kv);
    if (c->head_dim % 2 || c->rope_dim % 2 || c->rope_dim > c->head_dim)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: rope_dim %d / head_dim %d must be even with rope_dim <= head_dim",
                            file, c->rope_dim, c->head_dim);
    if (!(c->rms_eps > 0.0f) || !isfinite(c->rms_eps))
        return qn_error_set(err, QN_ERR_FORMAT, "%s: rms_eps %g must be positive", file, (double)c->rms_eps);
    if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
        return qn_error_set(err, QN_ERR_FORMAT, "%s: rope_theta %g must be positive", file, (double)c->rope_theta);
    if (c->rope_scaling.type != QN_ROPE_SCALING_NONE && !c->rope_freqs_tensor && !(c->rope_scaling.factor > 0.0f))
        return qn_error_set(err, QN_ERR_FORMAT, "%s: rope scaling factor %g must be positive", file,
                            (double)c->rope_scaling.factor);
    return QN_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* GGUF                                                                                             */

typedef struct qn_cfg_gguf {
    const qn_gguf *g;
    const char *file;
    char prefix[64];
} qn_cfg_gguf;

/* *out = value of "<prefix>.<suffix>" as a positive-or-zero int32. Absent: def (>= 0) or, when
 * def < 0, a FORMAT error naming the key. */
static qn_status gguf_i32(const qn_cfg_gguf *s, const char *suffix, int64_t def, int32_t *out, qn_error *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", s->prefix, suffix);
    int64_t v;
    const qn_status st = qn_gguf_get_i64(s->g, key, &v, err);
    if (st == QN_ERR_NOT_FOUND) {
        if (def < 0) return qn_error_set(err, QN_ERR_FORMAT, "%s: required key '%s' is missing", s->file, key);
        *out = (int32_t)def;
        return QN_OK;
    }
    if (st) return st;
    if (v < 0 || v > INT32_MAX)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: key '%s': value %lld out of range", s->file, key, (long long)v);
    *out = (int32_t)v;
    return QN_OK;
}

/* Like gguf_i32 for floats; required when def is NAN. */
static qn_status gguf_f32(const qn_cfg_gguf *s, const char *suffix, float def, float *out, qn_error *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", s->prefix, suffix);
    const qn_status st = qn_gguf_get_f32(s->g, key, out, err);
    if (st == QN_ERR_NOT_FOUND) {
        if (isnan(def)) return qn_error_set(err, QN_ERR_FORMAT, "%s: required key '%s' is missing", s->file, key);
        *out = def;
        return QN_OK;
    }
    return st;
}

static int gstr_eq(qn_gguf_str s, const char *lit) { return s.len == strlen(lit) && !memcmp(s.ptr, lit, s.len); }

static qn_status gguf_arch(qn_cfg_gguf *s, qn_model_config *c, qn_error *err) {
    qn_gguf_str a;
    const qn_status st = qn_gguf_get_str(s->g, "general.architecture", &a, err);
    if (st == QN_ERR_NOT_FOUND)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: required key 'general.architecture' is missing", s->file);
    if (st) return st;
    int found = 0;
    for (int i = 0; i < QN_ARCH_COUNT; i++)
        if (gstr_eq(a, QN_ARCH_NAMES[i])) {
            c->arch = (qn_arch)i;
            found = 1;
        }
    if (!found)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: key 'general.architecture': '%.*s' is not supported", s->file,
                            a.len > 64 ? 64 : (int)a.len, a.ptr);
    snprintf(s->prefix, sizeof s->prefix, "%s", QN_ARCH_NAMES[c->arch]);
    c->rope_style = c->arch == QN_ARCH_QWEN2 ? QN_ROPE_STYLE_NEOX : QN_ROPE_STYLE_NORM;
    return QN_OK;
}

static qn_status gguf_rope_scaling(const qn_cfg_gguf *s, qn_model_config *c, qn_error *err) {
    qn_rope_scaling *r = &c->rope_scaling;
    char key[160];
    qn_status st;
    snprintf(key, sizeof key, "%s.rope.scaling.type", s->prefix);
    qn_gguf_str t;
    st = qn_gguf_get_str(s->g, key, &t, err);
    if (st && st != QN_ERR_NOT_FOUND) return st;
    if (st == QN_OK) {
        if (gstr_eq(t, "none")) r->type = QN_ROPE_SCALING_NONE;
        else if (gstr_eq(t, "linear")) r->type = QN_ROPE_SCALING_LINEAR;
        else if (gstr_eq(t, "yarn")) r->type = QN_ROPE_SCALING_YARN;
        else
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: key '%s': scaling type '%.*s' is not supported", s->file,
                                key, t.len > 64 ? 64 : (int)t.len, t.ptr);
        if ((st = gguf_f32(s, "rope.scaling.factor", 1.0f, &r->factor, err))) return st;
    } else {
        /* legacy key: linear scaling only */
        if ((st = gguf_f32(s, "rope.scale_linear", 1.0f, &r->factor, err))) return st;
        if (r->factor != 1.0f) r->type = QN_ROPE_SCALING_LINEAR;
    }
    if ((st = gguf_i32(s, "rope.scaling.original_context_length", 0, &r->orig_ctx, err)) ||
        (st = gguf_f32(s, "rope.scaling.yarn_beta_fast", 32.0f, &r->yarn_beta_fast, err)) ||
        (st = gguf_f32(s, "rope.scaling.yarn_beta_slow", 1.0f, &r->yarn_beta_slow, err)) ||
        (st = gguf_f32(s, "rope.scaling.attn_factor", 0.0f, &r->attn_factor, err)))
        return st;
    /* Llama-3.1 scaling is not a key: the converter bakes the factors into a tensor */
    c->rope_freqs_tensor = qn_gguf_find_tensor(s->g, "rope_freqs.weight") != NULL;
    if (c->rope_freqs_tensor && r->type == QN_ROPE_SCALING_NONE) {
        r->type = QN_ROPE_SCALING_LLAMA3;
        r->factor = 0.0f; /* unknown: the tensor holds the per-frequency result */
        r->low_freq_factor = r->high_freq_factor = 0.0f;
    }
    return QN_OK;
}

/* n_vocab: <arch>.vocab_size, else the length of tokenizer.ggml.tokens. */
static qn_status gguf_vocab(const qn_cfg_gguf *s, qn_model_config *c, qn_error *err) {
    qn_status st = gguf_i32(s, "vocab_size", 0, &c->n_vocab, err);
    if (st || c->n_vocab) return st;
    const int64_t i = qn_gguf_find_key(s->g, "tokenizer.ggml.tokens");
    if (i < 0 || qn_gguf_kv_type(s->g, i) != QN_GGUF_TYPE_ARRAY)
        return qn_error_set(err, QN_ERR_FORMAT,
                            "%s: neither '%s.vocab_size' nor the array 'tokenizer.ggml.tokens' is present", s->file,
                            s->prefix);
    const uint64_t n = qn_gguf_arr_n(s->g, i);
    if (n > INT32_MAX)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: key 'tokenizer.ggml.tokens': %llu tokens", s->file,
                            (unsigned long long)n);
    c->n_vocab = (int32_t)n;
    return QN_OK;
}

static qn_status gguf_special_ids(const qn_cfg_gguf *s, qn_model_config *c, qn_error *err) {
    uint32_t v;
    qn_gguf_str model;
    const bool spm = qn_gguf_get_str(s->g, "tokenizer.ggml.model", &model, NULL) == QN_OK && gstr_eq(model, "llama");
    qn_status st = qn_gguf_get_u32(s->g, "tokenizer.ggml.bos_token_id", &v, err);
    if (st == QN_OK) c->bos_id = v > INT32_MAX ? -1 : (int32_t)v;
    else if (st == QN_ERR_NOT_FOUND) c->bos_id = spm ? 1 : -1;
    else return st;
    st = qn_gguf_get_u32(s->g, "tokenizer.ggml.eos_token_id", &v, err);
    if (st == QN_OK) c->eos_id = v > INT32_MAX ? -1 : (int32_t)v;
    else if (st == QN_ERR_NOT_FOUND) c->eos_id = spm ? 2 : -1;
    else return st;
    return QN_OK;
}

qn_status qn_model_config_from_gguf(const qn_gguf *g, qn_model_config *out, qn_error *err) {
    if (!g || !out) return qn_error_set(err, QN_ERR_INVALID_ARG, "qn_model_config_from_gguf: NULL argument");
    qn_model_config c;
    config_defaults(&c);
    qn_cfg_gguf s = {.g = g, .file = qn_gguf_path(g)};
    qn_status st;
    if ((st = gguf_arch(&s, &c, err))) return st;
    if ((st = gguf_i32(&s, "context_length", -1, &c.n_ctx_train, err)) ||
        (st = gguf_i32(&s, "embedding_length", -1, &c.n_embd, err)) ||
        (st = gguf_i32(&s, "block_count", -1, &c.n_layer, err)) ||
        (st = gguf_i32(&s, "feed_forward_length", -1, &c.n_ff, err)) ||
        (st = gguf_i32(&s, "attention.head_count", -1, &c.n_head, err)) ||
        (st = gguf_i32(&s, "attention.head_count_kv", c.n_head, &c.n_head_kv, err)) ||
        (st = gguf_f32(&s, "attention.layer_norm_rms_epsilon", NAN, &c.rms_eps, err)) ||
        (st = gguf_f32(&s, "rope.freq_base", 10000.0f, &c.rope_theta, err)))
        return st;
    /* key_length is required only when n_head does not divide n_embd */
    const int64_t def_hd = (c.n_head > 0 && c.n_embd % c.n_head == 0) ? c.n_embd / c.n_head : -1;
    int32_t v_len;
    if ((st = gguf_i32(&s, "attention.key_length", def_hd, &c.head_dim, err)) ||
        (st = gguf_i32(&s, "attention.value_length", c.head_dim, &v_len, err)) ||
        (st = gguf_i32(&s, "rope.dimension_count", c.head_dim, &c.rope_dim, err)))
        return st;
    if (v_len != c.head_dim)
        return qn_error_set(err, QN_ERR_UNSUPPORTED,
                            "%s: key '%s.attention.value_length': %d differs from key_length %d", s.file, s.prefix,
                            v_len, c.head_dim);
    if ((st = gguf_vocab(&s, &c, err)) || (st = gguf_rope_scaling(&s, &c, err)) ||
        (st = gguf_special_ids(&s, &c, err)))
        return st;
    c.tied_embeddings = qn_gguf_find_tensor(g, "output.weight") == NULL;
    c.qkv_bias = c.arch == QN_ARCH_QWEN2 || qn_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    if ((st = validate(&c, s.file, err))) return st;
    *out = c;
    return QN_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Hugging Face config.json                                                                         */

/* *out = root[key] as int32; JSON null counts as absent. Absent: def, or an error when def < 0. */
static qn_status hf_i32(json_t *o, const char *file, const char *key, int64_t def, int32_t *out, qn_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (def < 0) return qn_error_set(err, QN_ERR_FORMAT, "%s: required key '%s' is missing", file, key);
        *out = (int32_t)def;
        return QN_OK;
    }
    if (!json_is_integer(v)) return qn_error_set(err, QN_ERR_FORMAT, "%s: key '%s' is not an integer", file, key);
    const json_int_t x = json_integer_value(v);
    if (x < 0 || x > INT32_MAX)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: key '%s': value %lld out of range", file, key, (long long)x);
    *out = (int32_t)x;
    return QN_OK;
}

static qn_status hf_f32(json_t *o, const char *file, const char *key, float def, float *out, qn_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return QN_OK;
    }
    if (!json_is_number(v)) return qn_error_set(err, QN_ERR_FORMAT, "%s: key '%s' is not a number", file, key);
    const double d = json_number_value(v); /* saturate: out-of-range double -> float is undefined */
    *out = d > FLT_MAX ? INFINITY : d < -FLT_MAX ? -INFINITY : (float)d;
    return QN_OK;
}

static qn_status hf_bool(json_t *o, const char *file, const char *key, bool def, bool *out, qn_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return QN_OK;
    }
    if (!json_is_boolean(v)) return qn_error_set(err, QN_ERR_FORMAT, "%s: key '%s' is not a boolean", file, key);
    *out = json_is_true(v);
    return QN_OK;
}

/* bos/eos: an integer, a list (first entry) or null. */
static qn_status hf_token_id(json_t *o, const char *file, const char *key, int32_t *out, qn_error *err) {
    json_t *v = json_object_get(o, key);
    if (json_is_array(v)) v = json_array_get(v, 0);
    if (!v || json_is_null(v)) return QN_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: key '%s' is not a token id", file, key);
    *out = (int32_t)json_integer_value(v);
    return QN_OK;
}

static qn_status hf_arch(json_t *root, const char *file, qn_model_config *c, qn_error *err) {
    static const struct {
        const char *cls, *model_type;
        qn_arch arch;
    } map[] = {{"LlamaForCausalLM", "llama", QN_ARCH_LLAMA},
               {"MistralForCausalLM", "mistral", QN_ARCH_MISTRAL},
               {"Qwen2ForCausalLM", "qwen2", QN_ARCH_QWEN2}};
    const char *cls = json_string_value(json_array_get(json_object_get(root, "architectures"), 0));
    const char *mt = json_string_value(json_object_get(root, "model_type"));
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if ((cls && !strcmp(cls, map[i].cls)) || (!cls && mt && !strcmp(mt, map[i].model_type))) {
            c->arch = map[i].arch;
            return QN_OK;
        }
    if (cls) return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: key 'architectures': '%s' is not supported", file, cls);
    if (mt) return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: key 'model_type': '%s' is not supported", file, mt);
    return qn_error_set(err, QN_ERR_FORMAT, "%s: required key 'architectures' (or 'model_type') is missing", file);
}

static qn_status hf_rope_scaling(json_t *root, const char *file, qn_model_config *c, qn_error *err) {
    json_t *rs = json_object_get(root, "rope_scaling");
    if (!rs || json_is_null(rs)) return QN_OK;
    if (!json_is_object(rs)) return qn_error_set(err, QN_ERR_FORMAT, "%s: key 'rope_scaling' is not an object", file);
    const char *t = json_string_value(json_object_get(rs, "rope_type"));
    if (!t) t = json_string_value(json_object_get(rs, "type"));
    if (!t) return qn_error_set(err, QN_ERR_FORMAT, "%s: key 'rope_scaling.rope_type' is missing", file);
    qn_rope_scaling *r = &c->rope_scaling;
    if (!strcmp(t, "default")) return QN_OK;
    if (!strcmp(t, "linear")) r->type = QN_ROPE_SCALING_LINEAR;
    else if (!strcmp(t, "yarn")) r->type = QN_ROPE_SCALING_YARN;
    else if (!strcmp(t, "llama3")) r->type = QN_ROPE_SCALING_LLAMA3;
    else
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: key 'rope_scaling.rope_type': '%s' is not supported", file,
                            t);
    const int64_t def_orig = r->type == QN_ROPE_SCALING_LINEAR ? 0 : -1;
    qn_status st;
    if ((st = hf_f32(rs, file, "factor", NAN, &r->factor, err)) ||
        (st = hf_i32(rs, file, "original_max_position_embeddings", def_orig, &r->orig_ctx, err)) ||
        (st = hf_f32(rs, file, "low_freq_factor", 1.0f, &r->low_freq_factor, err)) ||
        (st = hf_f32(rs, file, "high_freq_factor", 4.0f, &r->high_freq_factor, err)) ||
        (st = hf_f32(rs, file, "beta_fast", 32.0f, &r->yarn_beta_fast, err)) ||
        (st = hf_f32(rs, file, "beta_slow", 1.0f, &r->yarn_beta_slow, err)) ||
        (st = hf_f32(rs, file, "attention_factor", 0.0f, &r->attn_factor, err)))
        return st;
    if (isnan(r->factor)) return qn_error_set(err, QN_ERR_FORMAT, "%s: key 'rope_scaling.factor' is missing", file);
    if (r->type == QN_ROPE_SCALING_LLAMA3 && !(r->high_freq_factor > r->low_freq_factor))
        return qn_error_set(err, QN_ERR_FORMAT, "%s: key 'rope_scaling.high_freq_factor' must exceed low_freq_factor",
                            file);
    return QN_OK;
}

qn_status qn_model_config_from_hf(const char *path, qn_model_config *out, qn_error *err) {
    if (!path || !out) return qn_error_set(err, QN_ERR_INVALID_ARG, "qn_model_config_from_hf: NULL argument");
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        const qn_status code = access(path, F_OK) ? (errno == ENOENT ? QN_ERR_NOT_FOUND : QN_ERR_IO) : QN_ERR_FORMAT;
        return qn_error_set(err, code, "%s: %s (line %d, column %d)", path, jerr.text, jerr.line, jerr.column);
    }
    qn_model_config c;
    config_defaults(&c);
    c.rope_style = QN_ROPE_STYLE_NEOX;
    qn_status st;
    if (!json_is_object(root)) {
        st = qn_error_set(err, QN_ERR_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
    bool attn_bias = false;
    if ((st = hf_arch(root, path, &c, err)) || (st = hf_i32(root, path, "vocab_size", -1, &c.n_vocab, err)) ||
        (st = hf_i32(root, path, "max_position_embeddings", -1, &c.n_ctx_train, err)) ||
        (st = hf_i32(root, path, "hidden_size", -1, &c.n_embd, err)) ||
        (st = hf_i32(root, path, "num_hidden_layers", -1, &c.n_layer, err)) ||
        (st = hf_i32(root, path, "intermediate_size", -1, &c.n_ff, err)) ||
        (st = hf_i32(root, path, "num_attention_heads", -1, &c.n_head, err)) ||
        (st = hf_i32(root, path, "num_key_value_heads", c.n_head, &c.n_head_kv, err)) ||
        (st = hf_f32(root, path, "rms_norm_eps", 1e-6f, &c.rms_eps, err)) ||
        (st = hf_f32(root, path, "rope_theta", 10000.0f, &c.rope_theta, err)) ||
        (st = hf_bool(root, path, "tie_word_embeddings", false, &c.tied_embeddings, err)) ||
        (st = hf_bool(root, path, "attention_bias", false, &attn_bias, err)) ||
        (st = hf_token_id(root, path, "bos_token_id", &c.bos_id, err)) ||
        (st = hf_token_id(root, path, "eos_token_id", &c.eos_id, err)) ||
        (st = hf_rope_scaling(root, path, &c, err)))
        goto done;
    const int64_t def_hd = (c.n_head > 0 && c.n_embd % c.n_head == 0) ? c.n_embd / c.n_head : -1;
    if ((st = hf_i32(root, path, "head_dim", def_hd, &c.head_dim, err))) goto done;
    c.rope_dim = c.head_dim;
    c.qkv_bias = c.arch == QN_ARCH_QWEN2 || attn_bias;
    if ((st = validate(&c, path, err))) goto done;
    *out = c;
done:
    json_decref(root);
    return st;
}
