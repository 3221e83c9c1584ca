/* hf_tokenizer.c — GGUF tokenizer keys <-> tokenizer.json / tokenizer_config.json (contract in
 * hf_tokenizer.h): byte-level BPE, what both tokenizer kinds share (hf_tok_internal.h), and the choice
 * between this and SentencePiece (hf_tokenizer_spm.c). The pre-tokenizer is recognised by its
 * structure: every family of the table has one canonical tokenizer.json form, compared as a signature
 * that keeps what changes the split (pre-tokenizer types, regexes, Digits/ByteLevel flags) and drops
 * what does not (trim_offsets). llama.cpp instead tokenizes a fixed text with transformers and looks the
 * hash of the ids up in a table of known models; the structure is what decides tokenization, so for the
 * files it knows both give the same id, and where one structure has several ids (starcoder / smollm:
 * same regexes, different detokenizer clean-up) clean_up_tokenization_spaces picks. */
#include "tokenizer/hf_tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"
#include "model/gguf_write.h"
#include "tokenizer/hf_tok_internal.h"
#include "tokenizer/pretok.h"
#include "tokenizer/vocab.h"

/* ------------------------------------------------------------------------------------------------ */
/* pre-tokenizer families                                                                           */

#define BL_REGEX "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}"
#define BL_PLAIN "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}"
#define SPLIT(re) "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"" re "\"},\"behavior\":\"Isolated\",\"invert\":false}"
#define RE_CONTR "(?i:'s|'t|'re|'ve|'m|'ll|'d)"

typedef struct pre_family {
    const char *family;     /* qn_pretok_family() of the GGUF id */
    const char *id;         /* tokenizer.ggml.pre written on import */
    const char *id_clean;   /* ... when clean_up_tokenization_spaces is true (NULL: same as id) */
    const char *json;       /* the tokenizer.json pre_tokenizer */
} pre_family;

static const pre_family QN_PRE_FAMILIES[] = {
    {"gpt2", "gpt2", NULL, BL_REGEX},
    {"starcoder", "smollm", "starcoder",
     "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true}," BL_REGEX "]}"},
    {"llama3", "llama-bpe", NULL,
     "{\"type\":\"Sequence\",\"pretokenizers\":[" SPLIT(RE_CONTR "|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
                                                        "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!"
                                                        "\\\\S)|\\\\s+") "," BL_PLAIN "]}"},
    {"qwen2", "qwen2", NULL,
     "{\"type\":\"Sequence\",\"pretokenizers\":[" SPLIT(RE_CONTR "|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "
                                                        "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!"
                                                        "\\\\S)|\\\\s+") "," BL_PLAIN "]}"},
};
#define QN_N_PRE_FAMILIES ((int)(sizeof QN_PRE_FAMILIES / sizeof QN_PRE_FAMILIES[0]))

/* Appends the signature of one pre-tokenizer node to buf; -1 for a node we do not know. */
static int pre_sig(json_t *n, char *buf, size_t cap) {
    const char *t = json_string_value(json_object_get(n, "type"));
    size_t len = strlen(buf);
    if (!t) return -1;
    if (!strcmp(t, "Sequence")) {
        json_t *a = json_object_get(n, "pretokenizers"), *e;
        size_t i;
        if (!json_is_array(a)) return -1;
        json_array_foreach(a, i, e) if (pre_sig(e, buf, cap)) return -1;
        return 0;
    }
    if (!strcmp(t, "ByteLevel"))
        snprintf(buf + len, cap - len, "ByteLevel(%d,%d);", json_is_true(json_object_get(n, "add_prefix_space")),
                 !json_is_false(json_object_get(n, "use_regex")));
    else if (!strcmp(t, "Digits"))
        snprintf(buf + len, cap - len, "Digits(%d);", json_is_true(json_object_get(n, "individual_digits")));
    else if (!strcmp(t, "Split")) {
        json_t *p = json_object_get(n, "pattern");
        const char *re = json_string_value(json_object_get(p, "Regex"));
        const char *s = json_string_value(json_object_get(p, "String"));
        const char *beh = json_string_value(json_object_get(n, "behavior"));
        snprintf(buf + len, cap - len, "Split(%s:%s,%s,%d);", re ? "re" : "str", re ? re : s ? s : "?",
                 beh ? beh : "?", json_is_true(json_object_get(n, "invert")));
    } else
        return -1;
    return 0;
}

static const pre_family *pre_family_of_json(json_t *pre) {
    char want[4096] = "", have[4096];
    if (!pre || pre_sig(pre, want, sizeof want)) return NULL;
    for (int i = 0; i < QN_N_PRE_FAMILIES; i++) {
        json_t *j = json_loads(QN_PRE_FAMILIES[i].json, 0, NULL);
        have[0] = 0;
        const int ok = j && !pre_sig(j, have, sizeof have) && !strcmp(have, want);
        json_decref(j);
        if (ok) return &QN_PRE_FAMILIES[i];
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------------ */
/* small helpers                                                                                    */

qn_status qn_hf_write_file(const char *dir, const char *name, const void *data, size_t len, qn_error *err) {
    char path[4096], tmp[4100];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(data, 1, len, f) == len;
    if (f && fclose(f) != 0) ok = false;
    if (!ok) {
        remove(tmp);
        return qn_error_set(err, QN_ERR_IO, "%s: cannot write", tmp);
    }
    if (rename(tmp, path) != 0) {
        remove(tmp);
        return qn_error_set(err, QN_ERR_IO, "%s: rename: %s", tmp, strerror(errno));
    }
    return QN_OK;
}

qn_status qn_hf_dump_json(json_t *j, const char *dir, const char *name, qn_error *err) {
    char *text = json_dumps(j, JSON_INDENT(2));
    if (!text) return qn_error_set(err, QN_ERR_NOMEM, "%s/%s: out of memory", dir, name);
    const qn_status st = qn_hf_write_file(dir, name, text, strlen(text), err);
    free(text);
    return st;
}

qn_status qn_hf_load_json(const char *dir, const char *name, bool required, json_t **out, qn_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (!required && errno == ENOENT) return QN_OK;
        return qn_error_set(err, errno == ENOENT ? QN_ERR_NOT_FOUND : QN_ERR_IO, "%s: %s", path, strerror(errno));
    }
    json_error_t je;
    json_t *j = json_loadf(f, 0, &je);
    fclose(f);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return qn_error_set(err, QN_ERR_FORMAT, "%s: %s (line %d, column %d)", path,
                            j ? "not a JSON object" : je.text, je.line, je.column);
    }
    *out = j;
    return QN_OK;
}

static json_t *gstr_json(qn_gguf_str s) { return json_stringn(s.ptr, (size_t)s.len); }

/* ------------------------------------------------------------------------------------------------ */
/* export: the GGUF side                                                                            */

/* Token text of id as a C string (NULL when out of range or holding a NUL), owned by the caller. */
static char *token_cstr(const qn_hf_gguf_vocab *v, int64_t id) {
    if (id < 0 || id >= v->n) return NULL;
    const qn_gguf_str s = qn_gguf_arr_str(v->g, v->ti, (uint64_t)id);
    if (memchr(s.ptr, 0, (size_t)s.len)) return NULL;
    return strndup(s.ptr, (size_t)s.len);
}

static int64_t gguf_id(const qn_gguf *g, const char *key) {
    uint32_t v;
    return qn_gguf_get_u32(g, key, &v, NULL) == QN_OK ? (int64_t)v : -1;
}

static int gguf_bool(const qn_gguf *g, const char *key) { /* -1 absent */
    bool b;
    return qn_gguf_get_bool(g, key, &b, NULL) == QN_OK ? (int)b : -1;
}

/* A per-token array key of 32-bit values (NULL when absent; an error when it has another shape). */
static qn_status token_array(const qn_hf_gguf_vocab *v, const char *key, const uint8_t **out, qn_error *err) {
    const int64_t k = qn_gguf_find_key(v->g, key);
    *out = NULL;
    if (k < 0) return QN_OK;
    if (qn_gguf_kv_type(v->g, k) != QN_GGUF_TYPE_ARRAY || qn_gguf_arr_n(v->g, k) != (uint64_t)v->n ||
        qn_gguf_type_size(qn_gguf_arr_type(v->g, k)) != 4)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: key '%s': not %lld 32-bit values", v->path, key, (long long)v->n);
    if (!strcmp(key, "tokenizer.ggml.scores") && qn_gguf_arr_type(v->g, k) != QN_GGUF_TYPE_FLOAT32)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: key '%s': not f32", v->path, key);
    *out = qn_gguf_arr_data(v->g, k);
    return QN_OK;
}

qn_status qn_hf_gguf_vocab_open(const qn_gguf *g, qn_hf_gguf_vocab *v, qn_error *err) {
    *v = (qn_hf_gguf_vocab){.g = g, .path = qn_gguf_path(g)};
    v->ti = qn_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (v->ti < 0 || qn_gguf_kv_type(g, v->ti) != QN_GGUF_TYPE_ARRAY ||
        qn_gguf_arr_type(g, v->ti) != QN_GGUF_TYPE_STRING)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: key 'tokenizer.ggml.tokens' is missing or not strings", v->path);
    v->n = (int64_t)qn_gguf_arr_n(g, v->ti);
    qn_status st;
    if ((st = token_array(v, "tokenizer.ggml.token_type", &v->types, err)) ||
        (st = token_array(v, "tokenizer.ggml.scores", &v->scores, err)))
        return st;
    v->bos_id = gguf_id(g, "tokenizer.ggml.bos_token_id");
    v->eos_id = gguf_id(g, "tokenizer.ggml.eos_token_id");
    v->unk_id = gguf_id(g, "tokenizer.ggml.unknown_token_id");
    v->pad_id = gguf_id(g, "tokenizer.ggml.padding_token_id");
    v->bos = token_cstr(v, v->bos_id);
    v->eos = token_cstr(v, v->eos_id);
    v->unk = token_cstr(v, v->unk_id);
    v->pad = token_cstr(v, v->pad_id);
    v->add_bos = gguf_bool(g, "tokenizer.ggml.add_bos_token");
    v->add_eos = gguf_bool(g, "tokenizer.ggml.add_eos_token");
    v->add_space = gguf_bool(g, "tokenizer.ggml.add_space_prefix");
    v->add_sep = gguf_bool(g, "tokenizer.ggml.add_sep_token");
    return QN_OK;
}

void qn_hf_gguf_vocab_close(qn_hf_gguf_vocab *v) {
    free(v->bos);
    free(v->eos);
    free(v->unk);
    free(v->pad);
    v->bos = v->eos = v->unk = v->pad = NULL;
}

int32_t qn_hf_gguf_vocab_type(const qn_hf_gguf_vocab *v, int64_t id) {
    int32_t t = QN_TOKEN_TYPE_NORMAL;
    if (v->types) memcpy(&t, v->types + 4 * id, 4);
    return t;
}

float qn_hf_gguf_vocab_score(const qn_hf_gguf_vocab *v, int64_t id) {
    float f = 0.0f;
    if (v->scores) memcpy(&f, v->scores + 4 * id, 4);
    return f;
}

/* ------------------------------------------------------------------------------------------------ */
/* export: tokenizer.json and tokenizer_config.json pieces                                          */

static json_t *added_token(int64_t id, json_t *content, bool special) {
    return json_pack("{s:I, s:o, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)id, "content", content, "single_word",
                     0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", special);
}

/* Whether llama.cpp's _create_vocab_sentencepiece, reading this token from added_tokens_decoder, gives it
 * back as it is: it makes such tokens control (special, or looking special) or user-defined with U+2581
 * turned into spaces, all with score -1000. */
static bool spm_decoder_roundtrips(const qn_hf_gguf_vocab *v, int64_t id, int32_t type, qn_gguf_str s) {
    if (qn_hf_gguf_vocab_score(v, id) != -1000.0f) return false;
    if (type == QN_TOKEN_TYPE_CONTROL) return true;
    if (type != QN_TOKEN_TYPE_USER_DEFINED || memmem(s.ptr, (size_t)s.len, "\xe2\x96\x81", 3)) return false;
    char *t = strndup(s.ptr, (size_t)s.len);
    const bool ok = t && !qn_hf_looks_special(t);
    free(t);
    return ok;
}

qn_status qn_hf_vocab_json(const qn_hf_gguf_vocab *v, bool spm, json_t *vocab, json_t *added,
                           json_t *decoder_added, qn_error *err) {
    for (int64_t i = 0; i < v->n; i++) {
        const qn_gguf_str s = qn_gguf_arr_str(v->g, v->ti, (uint64_t)i);
        const int32_t type = qn_hf_gguf_vocab_type(v, i);
        char padname[32];
        snprintf(padname, sizeof padname, "[PAD%lld]", (long long)i);
        /* padding the converter invented: leave the id out, vocab_size keeps the count */
        if (type == QN_TOKEN_TYPE_UNUSED && s.len == strlen(padname) && !memcmp(s.ptr, padname, s.len)) continue;
        json_t *js = gstr_json(s);
        if (!js)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: key 'tokenizer.ggml.tokens': token %lld is not valid UTF-8",
                                v->path, (long long)i);
        char *key = strndup(s.ptr, (size_t)s.len);
        if (!key || memchr(s.ptr, 0, (size_t)s.len) || json_object_get(vocab, key)) {
            json_decref(js);
            free(key);
            return qn_error_set(err, QN_ERR_FORMAT, "%s: key 'tokenizer.ggml.tokens': token %lld ('%.*s') is a "
                                "duplicate or holds a NUL", v->path, (long long)i, (int)(s.len > 32 ? 32 : s.len),
                                s.ptr);
        }
        json_object_set_new(vocab, key, json_integer(i));
        free(key);
        if (type == QN_TOKEN_TYPE_CONTROL || type == QN_TOKEN_TYPE_USER_DEFINED || type == QN_TOKEN_TYPE_UNKNOWN) {
            const bool special = type != QN_TOKEN_TYPE_USER_DEFINED;
            json_array_append_new(added, added_token(i, json_copy(js), special));
            if (!spm || spm_decoder_roundtrips(v, i, type, s)) {
                char idbuf[24];
                snprintf(idbuf, sizeof idbuf, "%lld", (long long)i);
                json_object_set_new(decoder_added, idbuf,
                                    json_pack("{s:o, s:b, s:b, s:b, s:b, s:b}", "content", json_copy(js), "lstrip", 0,
                                              "normalized", 0, "rstrip", 0, "single_word", 0, "special", special));
            }
        }
        json_decref(js);
    }
    return QN_OK;
}

json_t *qn_hf_template_processor(const qn_hf_gguf_vocab *v) {
    const bool add_bos = v->add_bos == 1 && v->bos, add_eos = v->add_eos == 1 && v->eos;
    if (!add_bos && !add_eos) return NULL;
    json_t *single = json_array(), *pair = json_array(), *specials = json_object();
    if (add_bos) {
        json_array_append_new(single, json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", v->bos, "type_id", 0));
        json_array_append_new(pair, json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", v->bos, "type_id", 0));
        json_object_set_new(specials, v->bos, json_pack("{s:s, s:[I], s:[s]}", "id", v->bos, "ids",
                                                        (json_int_t)v->bos_id, "tokens", v->bos));
    }
    json_array_append_new(single, json_pack("{s:{s:s, s:i}}", "Sequence", "id", "A", "type_id", 0));
    json_array_append_new(pair, json_pack("{s:{s:s, s:i}}", "Sequence", "id", "A", "type_id", 0));
    if (add_eos) {
        json_array_append_new(single, json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", v->eos, "type_id", 0));
        if (v->add_sep >= 0)
            json_array_append_new(pair, json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", v->eos, "type_id", 0));
        json_object_set_new(specials, v->eos, json_pack("{s:s, s:[I], s:[s]}", "id", v->eos, "ids",
                                                        (json_int_t)v->eos_id, "tokens", v->eos));
    }
    /* transformers puts bos (and eos) between A and B, which gguf-py's SpecialVocab reads as add_sep = false:
     * only when the GGUF has that key, so that it comes back as it was */
    if (add_bos && v->add_sep >= 0)
        json_array_append_new(pair, json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", v->bos, "type_id", 1));
    json_array_append_new(pair, json_pack("{s:{s:s, s:i}}", "Sequence", "id", "B", "type_id", 1));
    if (add_eos) json_array_append_new(pair, json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", v->eos, "type_id", 1));
    return json_pack("{s:s, s:o, s:o, s:o}", "type", "TemplateProcessing", "single", single, "pair", pair,
                     "special_tokens", specials);
}

/* tokenizer_config.json (steals decoder_added); NULL and err set on a bad chat template. */
static json_t *tokenizer_config(const qn_hf_gguf_vocab *v, int64_t n_ctx, const qn_hf_tok_files *f, qn_error *err) {
    json_t *cfg = json_object(), *decoder_added = f->decoder_added;
    if (!cfg || !decoder_added) {
        json_decref(cfg);
        json_decref(decoder_added);
        qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory building tokenizer_config.json", v->path);
        return NULL;
    }
    if (v->add_bos >= 0) json_object_set_new(cfg, "add_bos_token", json_boolean(v->add_bos));
    if (v->add_eos >= 0) json_object_set_new(cfg, "add_eos_token", json_boolean(v->add_eos));
    if (v->add_space >= 0) json_object_set_new(cfg, "add_prefix_space", json_boolean(v->add_space));
    json_object_set_new(cfg, "added_tokens_decoder", decoder_added);
    if (v->bos) json_object_set_new(cfg, "bos_token", json_string(v->bos));
    qn_gguf_str tmpl;
    if (qn_gguf_get_str(v->g, "tokenizer.chat_template", &tmpl, NULL) == QN_OK) {
        json_t *t = gstr_json(tmpl);
        if (!t) {
            json_decref(cfg);
            qn_error_set(err, QN_ERR_FORMAT, "%s: key 'tokenizer.chat_template' is not valid UTF-8", v->path);
            return NULL;
        }
        json_object_set_new(cfg, "chat_template", t);
    }
    json_object_set_new(cfg, "clean_up_tokenization_spaces", json_boolean(f->clean));
    if (v->eos) json_object_set_new(cfg, "eos_token", json_string(v->eos));
    if (f->legacy) json_object_set_new(cfg, "legacy", json_true());
    if (n_ctx > 0) json_object_set_new(cfg, "model_max_length", json_integer(n_ctx));
    if (v->pad) json_object_set_new(cfg, "pad_token", json_string(v->pad));
    json_object_set_new(cfg, "tokenizer_class", json_string(f->tokenizer_class));
    if (v->unk) json_object_set_new(cfg, "unk_token", json_string(v->unk));
    return cfg;
}

qn_status qn_hf_write_tokenizer(const qn_hf_gguf_vocab *v, int64_t n_ctx, const char *dir, const qn_hf_tok_files *f,
                                qn_error *err) {
    json_t *cfg = tokenizer_config(v, n_ctx, f, err);
    qn_status st = cfg ? QN_OK : err ? err->code : QN_ERR_FORMAT;
    if (!f->tok) st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory building tokenizer.json", dir);
    if (st == QN_OK && f->model) st = qn_hf_write_file(dir, "tokenizer.model", f->model, f->model_len, err);
    if (st == QN_OK) st = qn_hf_dump_json(f->tok, dir, "tokenizer.json", err);
    if (st == QN_OK) st = qn_hf_dump_json(cfg, dir, "tokenizer_config.json", err);
    json_decref(f->tok);
    json_decref(cfg);
    return st;
}

/* ------------------------------------------------------------------------------------------------ */
/* export: byte-level BPE                                                                           */

static qn_status export_bpe(const qn_hf_gguf_vocab *v, int64_t n_ctx, const char *dir, qn_error *err) {
    const qn_gguf *g = v->g;
    const char *gp = v->path;
    qn_gguf_str pre = {0};
    char pre_name[128] = "default";
    if (qn_gguf_get_str(g, "tokenizer.ggml.pre", &pre, NULL) == QN_OK)
        snprintf(pre_name, sizeof pre_name, "%.*s", (int)(pre.len > 100 ? 100 : pre.len), pre.ptr);
    qn_pretok *pt = NULL;
    if (qn_pretok_create(pre_name, &pt, err) != QN_OK) return err ? err->code : QN_ERR_UNSUPPORTED;
    const char *family = qn_pretok_family(pt);
    const bool clean = (qn_pretok_flags(pt) & QN_PRETOK_CLEAN_SPACES) != 0;
    const pre_family *pf = NULL;
    for (int i = 0; i < QN_N_PRE_FAMILIES; i++)
        if (!strcmp(QN_PRE_FAMILIES[i].family, family)) pf = &QN_PRE_FAMILIES[i];
    qn_pretok_destroy(pt);
    if (!pf)
        return qn_error_set(err, QN_ERR_UNSUPPORTED,
                            "%s: key 'tokenizer.ggml.pre': '%s' (family %s) has no tokenizer.json form here yet", gp,
                            pre_name, family);
    const int64_t mi = qn_gguf_find_key(g, "tokenizer.ggml.merges");
    if (mi < 0 || qn_gguf_kv_type(g, mi) != QN_GGUF_TYPE_ARRAY || qn_gguf_arr_type(g, mi) != QN_GGUF_TYPE_STRING)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: key 'tokenizer.ggml.merges' is missing or not strings", gp);

    json_t *vocab = json_object(), *added = json_array(), *merges = json_array(), *decoder_added = json_object();
    qn_status st = qn_hf_vocab_json(v, false, vocab, added, decoder_added, err);
    const int64_t n_merges = (int64_t)qn_gguf_arr_n(g, mi);
    for (int64_t i = 0; i < n_merges && st == QN_OK; i++) {
        const qn_gguf_str s = qn_gguf_arr_str(g, mi, (uint64_t)i);
        const char *sp = memchr(s.ptr, ' ', (size_t)s.len);
        json_t *a = sp ? json_stringn(s.ptr, (size_t)(sp - s.ptr)) : NULL;
        json_t *b = sp ? json_stringn(sp + 1, (size_t)(s.len - (uint64_t)(sp - s.ptr) - 1)) : NULL;
        if (!a || !b) {
            json_decref(a);
            json_decref(b);
            st = qn_error_set(err, QN_ERR_FORMAT, "%s: key 'tokenizer.ggml.merges': entry %lld is not 'left right'", gp,
                              (long long)i);
            break;
        }
        json_array_append_new(merges, json_pack("[o, o]", a, b));
    }
    if (st) goto done;

    json_t *bpe = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout", "unk_token",
                            "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                            "ignore_merges", !strcmp(pf->family, "llama3"), "vocab", vocab, "merges", merges);
    /* the post-processor: ByteLevel alone, or ByteLevel + a template adding bos/eos as the file says */
    json_t *pp = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0,
                           "use_regex", 1);
    json_t *tp = qn_hf_template_processor(v);
    if (tp) pp = json_pack("{s:s, s:[o, o]}", "type", "Sequence", "processors", pp, tp);
    const qn_hf_tok_files f = {
        .tok = json_pack("{s:s, s:n, s:n, s:o, s:n, s:o, s:o, s:o, s:o}", "version", "1.0", "truncation", "padding",
                         "added_tokens", added, "normalizer", "pre_tokenizer", json_loads(pf->json, 0, NULL),
                         "post_processor", pp, "decoder",
                         json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets",
                                   1, "use_regex", 1),
                         "model", bpe),
        .decoder_added = decoder_added, .tokenizer_class = "GPT2Tokenizer", .clean = clean};
    return qn_hf_write_tokenizer(v, n_ctx, dir, &f, err);
done:
    json_decref(vocab);
    json_decref(added);
    json_decref(merges);
    json_decref(decoder_added);
    return st;
}

qn_status qn_hf_tokenizer_export(const qn_gguf *g, int64_t n_ctx, const char *dir, qn_error *err) {
    const char *gp = qn_gguf_path(g);
    qn_gguf_str model = {0};
    if (qn_gguf_get_str(g, "tokenizer.ggml.model", &model, NULL) != QN_OK)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: key 'tokenizer.ggml.model' is missing", gp);
    const bool bpe = model.len == 4 && !memcmp(model.ptr, "gpt2", 4);
    const bool spm = model.len == 5 && !memcmp(model.ptr, "llama", 5);
    if (!bpe && !spm)
        return qn_error_set(err, QN_ERR_UNSUPPORTED,
                            "%s: key 'tokenizer.ggml.model': '%.*s': only byte-level BPE ('gpt2') and SentencePiece "
                            "('llama') export to tokenizer.json", gp, (int)(model.len > 32 ? 32 : model.len),
                            model.ptr);
    qn_hf_gguf_vocab v;
    qn_status st = qn_hf_gguf_vocab_open(g, &v, err);
    if (st == QN_OK) st = spm ? qn_hf_spm_export(&v, n_ctx, dir, err) : export_bpe(&v, n_ctx, dir, err);
    qn_hf_gguf_vocab_close(&v);
    return st;
}

/* ------------------------------------------------------------------------------------------------ */
/* import                                                                                           */

qn_status qn_hf_added_token(json_t *a, size_t i, int64_t n_vocab, const char *path, const char **content,
                            int64_t *id, qn_error *err) {
    json_t *jid = json_object_get(a, "id");
    *content = json_string_value(json_object_get(a, "content"));
    *id = json_integer_value(jid);
    if (!*content || !json_is_integer(jid) || *id < 0 || *id >= n_vocab)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'added_tokens[%zu]': bad content or id", path, i);
    return QN_OK;
}

bool qn_hf_looks_special(const char *t) {
    const size_t n = strlen(t);
    if (!strcmp(t, "<pad>") || !strcmp(t, "<mask>") || !strcmp(t, "<2mass>") || !strcmp(t, "[@BOS@]")) return true;
    if (n >= 4 && !strncmp(t, "<|", 2) && !strcmp(t + n - 2, "|>")) return true;
    if (n >= 8 && !strncmp(t, "<\xef\xbd\x9c", 4) && !strcmp(t + n - 4, "\xef\xbd\x9c>")) return true;
    return n >= 8 && !strncmp(t, "<unused", 7) && t[n - 1] == '>';
}

/* The special ids and add_* flags of gguf-py's SpecialVocab, in the order it writes them. */
typedef struct special_state {
    const char *types[7];   /* bos eos unk sep pad cls mask */
    int64_t id[7];          /* -1 unset */
    int order[7], n_order;  /* types in the order their ids were set */
    int add[3];             /* add_bos, add_eos, add_sep: -1 unset */
    int add_order[3], n_add;
    bool sep_is_eos;        /* the pair template separates with eos and tokenizer_config.json names no sep */
} special_state;

static const char *const QN_ADD_KEYS[3] = {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
                                           "tokenizer.ggml.add_sep_token"};

static const char *const QN_SPECIAL_KEYS[7] = {
    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.cls_token_id",
    "tokenizer.ggml.mask_token_id"};

static void special_set(special_state *s, int typ, json_t *v, int64_t n_vocab) {
    if (!json_is_integer(v) || s->id[typ] >= 0) return;
    const json_int_t id = json_integer_value(v);
    if (id < 0 || id >= n_vocab) return;
    s->id[typ] = id;
    s->order[s->n_order++] = typ;
}

static void add_set(special_state *s, int which, bool v, bool override) {
    if (s->add[which] >= 0 && !override) return;
    if (s->add[which] < 0) s->add_order[s->n_add++] = which;
    s->add[which] = v;
}

static const char *special_content(json_t *e) {
    if (json_is_string(e)) return json_string_value(e);
    return json_string_value(json_object_get(e, "content"));
}

static const char *tmpl_special(json_t *pair, size_t i) {
    return json_string_value(json_object_get(json_object_get(json_array_get(pair, i), "SpecialToken"), "id"));
}

static const char *tmpl_sequence(json_t *pair, size_t i) {
    return json_string_value(json_object_get(json_object_get(json_array_get(pair, i), "Sequence"), "id"));
}

static bool str_in(const char *x, const char *a, const char *b) {
    return x && ((a && !strcmp(x, a)) || (b && !strcmp(x, b)));
}

/* SpecialVocab on the "pair" template: what stands between A and B (once the single template's leading /
 * trailing tokens are taken off) decides add_sep — a sep or eos token there, or second there. */
static void read_pair_template(json_t *pair, const char *first, const char *last, json_t *tcfg, special_state *s) {
    size_t lo = 0, hi = json_array_size(pair);
    const char *sep = special_content(json_object_get(tcfg, "sep_token"));
    const char *eos = special_content(json_object_get(tcfg, "eos_token"));
    if (first && str_in(tmpl_special(pair, 0), first, NULL)) lo = 1;
    if (last && hi > lo && str_in(tmpl_special(pair, hi - 1), last, NULL)) hi--;
    const char *a = hi > lo ? tmpl_sequence(pair, lo) : NULL, *b = hi > lo ? tmpl_sequence(pair, hi - 1) : NULL;
    if (!a || !b || strcmp(a, "A") || strcmp(b, "B") || hi - lo < 3) return;
    bool add_sep = !last && str_in(tmpl_special(pair, lo + 1), sep, eos);
    if (hi - lo == 4 && str_in(tmpl_special(pair, lo + 2), sep, eos)) add_sep = true;
    add_set(s, 2, add_sep, true);
    s->sep_is_eos = add_sep && !sep && tcfg;
}

/* Crude TemplateProcessing reading, as SpecialVocab: a leading / trailing special token in the
 * "single" template means add_bos / add_eos; the "pair" template gives add_sep. */
static void read_post_processor(json_t *pp, json_t *tcfg, special_state *s) {
    json_t *procs = json_object_get(pp, "processors"), *one = json_array();
    if (!json_is_array(procs)) {
        json_array_append(one, pp);
        procs = one;
    }
    size_t i;
    json_t *p;
    json_array_foreach(procs, i, p) {
        const char *t = json_string_value(json_object_get(p, "type"));
        if (!t) continue;
        if (!strcmp(t, "ByteLevel")) {
            add_set(s, 0, false, false);
            add_set(s, 1, false, false);
        } else if (!strcmp(t, "TemplateProcessing")) {
            json_t *single = json_object_get(p, "single");
            const char *first = NULL, *last = NULL;
            if (json_array_size(single) > 1) {
                first = tmpl_special(single, 0);
                last = tmpl_special(single, json_array_size(single) - 1);
                const char *bos = special_content(json_object_get(tcfg, "bos_token"));
                const char *eos = special_content(json_object_get(tcfg, "eos_token"));
                if (first) add_set(s, 0, bos ? !strcmp(first, bos) : true, true);
                if (last) add_set(s, 1, eos ? !strcmp(last, eos) : true, true);
            }
            read_pair_template(json_object_get(p, "pair"), first, last, tcfg, s);
        }
    }
    json_decref(one);
}

typedef struct import_ctx {
    const char *dir;
    char tok_path[4096];
    int64_t n_vocab;
    char **tokens;      /* [n_vocab] */
    int32_t *types;     /* [n_vocab] */
    char **merges;      /* [n_merges] */
    int64_t n_merges;
} import_ctx;

static qn_status read_vocab(import_ctx *c, json_t *tok, qn_error *err) {
    json_t *model = json_object_get(tok, "model");
    const char *mt = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(model) || !mt)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'model.type' is missing", c->tok_path);
    if (strcmp(mt, "BPE"))
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: field 'model.type': %s tokenizers are not supported (BPE "
                            "only: byte-level, or SentencePiece-style with byte_fallback)", c->tok_path, mt);
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'model.vocab' is not an object", c->tok_path);
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) {
        const json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= c->n_vocab)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'model.vocab': token '%s' has id %lld outside 0..%lld",
                                c->tok_path, k, (long long)id, (long long)c->n_vocab - 1);
        if (!c->tokens[id] && !(c->tokens[id] = strdup(k))) return qn_error_set(err, QN_ERR_NOMEM, "out of memory");
        c->types[id] = QN_TOKEN_TYPE_NORMAL;
    }
    json_t *added = json_object_get(tok, "added_tokens"), *a;
    size_t i;
    json_array_foreach(added, i, a) {
        const char *content;
        int64_t id;
        const qn_status st = qn_hf_added_token(a, i, c->n_vocab, c->tok_path, &content, &id, err);
        if (st) return st;
        free(c->tokens[id]);
        if (!(c->tokens[id] = strdup(content))) return qn_error_set(err, QN_ERR_NOMEM, "out of memory");
        c->types[id] = json_is_true(json_object_get(a, "special")) || qn_hf_looks_special(content) ? QN_TOKEN_TYPE_CONTROL
                                                                                               : QN_TOKEN_TYPE_USER_DEFINED;
    }
    for (int64_t id = 0; id < c->n_vocab; id++) {
        if (c->tokens[id]) continue;
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%lld]", (long long)id);
        if (!(c->tokens[id] = strdup(buf))) return qn_error_set(err, QN_ERR_NOMEM, "out of memory");
        c->types[id] = QN_TOKEN_TYPE_UNUSED;
    }
    json_t *m = json_object_get(model, "merges");
    if (!json_is_array(m)) return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'model.merges' is missing", c->tok_path);
    c->n_merges = (int64_t)json_array_size(m);
    if (!(c->merges = calloc((size_t)c->n_merges + 1, sizeof *c->merges)))
        return qn_error_set(err, QN_ERR_NOMEM, "out of memory");
    json_array_foreach(m, i, a) {
        if (json_is_string(a)) {
            c->merges[i] = strdup(json_string_value(a));
        } else if (json_is_array(a) && json_array_size(a) == 2 && json_is_string(json_array_get(a, 0)) &&
                   json_is_string(json_array_get(a, 1))) {
            /* pairs (tokenizers >= 0.20): a space inside a part is written as U+0120, as gguf-py does */
            const char *p[2] = {json_string_value(json_array_get(a, 0)), json_string_value(json_array_get(a, 1))};
            size_t len = 2;
            for (int h = 0; h < 2; h++)
                for (const char *q = p[h]; *q; q++) len += *q == ' ' ? 2 : 1;
            char *out = malloc(len), *o = out;
            for (int h = 0; out && h < 2; h++) {
                for (const char *q = p[h]; *q; q++) {
                    if (*q == ' ') *o++ = (char)0xc4, *o++ = (char)0xa0;
                    else *o++ = *q;
                }
                *o++ = h ? '\0' : ' ';
            }
            c->merges[i] = out;
        } else {
            return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'model.merges[%zu]': neither \"a b\" nor [a, b]",
                                c->tok_path, i);
        }
        if (!c->merges[i]) return qn_error_set(err, QN_ERR_NOMEM, "out of memory");
    }
    return QN_OK;
}

qn_status qn_hf_put_add_space_prefix(qn_gguf_writer *w, json_t *tcfg, bool want, qn_error *err) {
    json_t *a = json_object_get(tcfg, "add_prefix_space");
    if (!want || !json_is_boolean(a)) return QN_OK;
    return qn_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", json_is_true(a), err);
}

/* The vocabulary keys of a byte-level BPE: llama.cpp's _set_vocab_gpt2. */
static qn_status import_bpe_vocab(const char *dir, json_t *tok, json_t *tcfg, int64_t n_vocab, bool add_space_prefix,
                                  qn_gguf_writer *w, qn_error *err) {
    import_ctx c = {.dir = dir, .n_vocab = n_vocab};
    snprintf(c.tok_path, sizeof c.tok_path, "%s/tokenizer.json", dir);
    qn_status st;
    if (n_vocab <= 0 || !(c.tokens = calloc((size_t)n_vocab, sizeof *c.tokens)) ||
        !(c.types = calloc((size_t)n_vocab, sizeof *c.types))) {
        st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory (%lld tokens)", c.tok_path, (long long)n_vocab);
        goto done;
    }
    if ((st = read_vocab(&c, tok, err))) goto done;

    const pre_family *pf = pre_family_of_json(json_object_get(tok, "pre_tokenizer"));
    if (!pf) {
        char sig[1024] = "";
        pre_sig(json_object_get(tok, "pre_tokenizer"), sig, sizeof sig);
        st = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: field 'pre_tokenizer': not a known family (%.400s)",
                          c.tok_path, sig[0] ? sig : "missing or unknown node type");
        goto done;
    }
    const bool clean = json_is_true(json_object_get(tcfg, "clean_up_tokenization_spaces"));
    const char *pre = clean && pf->id_clean ? pf->id_clean : pf->id;
    if ((st = qn_hf_put_add_space_prefix(w, tcfg, add_space_prefix, err)) ||
        (st = qn_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2", err)) ||
        (st = qn_gguf_writer_add_str(w, "tokenizer.ggml.pre", pre, err)) ||
        (st = qn_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)c.tokens, (uint64_t)n_vocab,
                                         err)) ||
        (st = qn_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", QN_GGUF_TYPE_INT32, c.types, (uint64_t)n_vocab,
                                     err)))
        goto done;
    if (c.n_merges)
        st = qn_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", (const char *const *)c.merges, (uint64_t)c.n_merges,
                                        err);
done:
    for (int64_t i = 0; c.tokens && i < n_vocab; i++) free(c.tokens[i]);
    for (int64_t i = 0; c.merges && i < c.n_merges; i++) free(c.merges[i]);
    free(c.tokens);
    free(c.types);
    free(c.merges);
    return st;
}

/* gguf-py's SpecialVocab (load_merges aside): special ids, add_bos/add_eos, the chat template. tok may be
 * NULL (a tokenizer.model without tokenizer.json): then only config.json names special ids. */
static qn_status import_specials(const char *dir, json_t *tok, json_t *tcfg, json_t *mcfg, int64_t n_vocab,
                                 qn_gguf_writer *w, qn_error *err) {
    qn_status st = QN_OK;
    special_state s = {.types = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"}, .add = {-1, -1, -1}};
    for (int i = 0; i < 7; i++) s.id[i] = -1;
    json_t *pp = json_object_get(tok, "post_processor");
    if (json_is_object(pp)) read_post_processor(pp, tcfg, &s);
    json_t *added = json_object_get(tok, "added_tokens");
    for (int typ = 0; tcfg && typ < 7; typ++) {
        char key[32];
        const int add_slot = typ < 2 ? typ : typ == 3 ? 2 : -1; /* bos, eos, sep */
        if (add_slot >= 0) {
            snprintf(key, sizeof key, "add_%s_token", s.types[typ]);
            json_t *a = json_object_get(tcfg, key);
            if (json_is_boolean(a)) add_set(&s, add_slot, json_is_true(a), false);
        }
        snprintf(key, sizeof key, "%s_token", s.types[typ]);
        const char *content = special_content(json_object_get(tcfg, key));
        if (typ == 3 && !content && s.sep_is_eos) content = special_content(json_object_get(tcfg, "eos_token"));
        size_t i;
        json_t *a;
        json_array_foreach(added, i, a) {
            const char *c = json_string_value(json_object_get(a, "content"));
            if (content && c && !strcmp(content, c)) {
                special_set(&s, typ, json_object_get(a, "id"), n_vocab);
                break;
            }
        }
    }
    for (int typ = 0; mcfg && typ < 7; typ++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token_id", s.types[typ]);
        special_set(&s, typ, json_object_get(mcfg, key), n_vocab);
    }
    for (int i = 0; i < s.n_order && st == QN_OK; i++)
        st = qn_gguf_writer_add_u32(w, QN_SPECIAL_KEYS[s.order[i]], (uint32_t)s.id[s.order[i]], err);
    for (int i = 0; i < s.n_add && st == QN_OK; i++)
        st = qn_gguf_writer_add_bool(w, QN_ADD_KEYS[s.add_order[i]], s.add[s.add_order[i]] == 1, err);
    if (st) return st;
    json_t *tmpl = json_object_get(tcfg, "chat_template");
    if (json_is_string(tmpl)) {
        st = qn_gguf_writer_add_str(w, "tokenizer.chat_template", json_string_value(tmpl), err);
    } else if (!tmpl && tcfg) { /* newer transformers save it beside: chat_template.jinja */
        char path[4096];
        snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
        FILE *f = fopen(path, "rb");
        char *text = NULL;
        size_t len = 0;
        if (f) {
            FILE *m = open_memstream(&text, &len);
            int ch;
            while (m && (ch = fgetc(f)) != EOF) fputc(ch, m);
            if (m) fclose(m);
            fclose(f);
            if (!text || strlen(text) != len)
                st = qn_error_set(err, QN_ERR_FORMAT, "%s: unreadable or holds a NUL byte", path);
            else
                st = qn_gguf_writer_add_str(w, "tokenizer.chat_template", text, err);
            free(text);
        }
    } else if (tmpl && !json_is_null(tmpl)) {
        st = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s/tokenizer_config.json: field 'chat_template': only a string "
                          "template is supported", dir);
    }
    return st;
}

qn_status qn_hf_tokenizer_import(const char *dir, int64_t n_vocab, bool add_space_prefix, qn_gguf_writer *w,
                                 qn_error *err) {
    json_t *tok = NULL, *tcfg = NULL, *mcfg = NULL;
    const bool spm_file = qn_hf_spm_applies(dir, NULL); /* tokenizer.model: tokenizer.json becomes optional */
    qn_status st;
    if ((st = qn_hf_load_json(dir, "tokenizer.json", !spm_file, &tok, err)) ||
        (st = qn_hf_load_json(dir, "tokenizer_config.json", false, &tcfg, err)) ||
        (st = qn_hf_load_json(dir, "config.json", false, &mcfg, err)))
        goto done;
    if (n_vocab <= 0) {
        st = qn_error_set(err, QN_ERR_INVALID_ARG, "%s: vocabulary size %lld", dir, (long long)n_vocab);
        goto done;
    }
    st = spm_file || qn_hf_spm_applies(dir, tok)
             ? qn_hf_spm_import_vocab(dir, tok, tcfg, n_vocab, add_space_prefix, w, err)
             : import_bpe_vocab(dir, tok, tcfg, n_vocab, add_space_prefix, w, err);
    if (st == QN_OK) st = import_specials(dir, tok, tcfg, mcfg, n_vocab, w, err);
done:
    json_decref(tok);
    json_decref(tcfg);
    json_decref(mcfg);
    return st;
}
