/* hf_tokenizer_spm.c — SentencePiece tokenizers (GGUF tokenizer.ggml.model "llama": Llama-2, Mistral-7B)
 * <-> a Hugging Face directory (contract in hf_tokenizer.h).
 * Import follows llama.cpp's converter: tokenizer.model when present (_create_vocab_sentencepiece: pieces
 * with their scores, types unknown/control/unused/byte/normal, then added_tokens.json and
 * tokenizer_config.json's added_tokens_decoder as user-defined/control with score -1000, "[PAD<id>]"
 * with -10000 for ids no file names); else tokenizer.json (gguf-py's LlamaHfVocab: byte tokens, control
 * for transformers' special tokens, user-defined for other added tokens). One deliberate difference on
 * that second path: LlamaHfVocab writes the placeholder score -1000 for every token, which leaves
 * llama.cpp's score-ordered SentencePiece merging nothing to order by (on llama.cpp's llama-spm test
 * vectors 16 of 47 then tokenize wrong); we give each token minus the rank of the first tokenizer.json
 * merge that makes it, the order HF applies them in, and -1000 to the rest. The tokenizer.json
 * normalizer / pre-tokenizer must be one of the forms transformers writes for Llama / Mistral (legacy
 * Prepend + Replace, or Metaspace without split), else the import stops, naming the field (llama.cpp
 * does not look, and would write a GGUF that tokenizes otherwise); a form without the U+2581 prefix
 * also writes add_space_prefix = false, which llama.cpp takes only from tokenizer_config.json.
 * Metaspace's prepend_scheme "first" is read as "always": llama.cpp prefixes the text after every special
 * token, which is what HF's legacy form does too.
 * Export writes all three files as HF's Llama-2 has them: tokenizer.model (every token, so the import
 * reads back the same tokens, scores and types), tokenizer.json (merges as transformers' LlamaConverter
 * derives them from vocabulary and scores) and tokenizer_config.json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/gguf.h"
#include "model/gguf_write.h"
#include "tokenizer/hf_tok_internal.h"
#include "tokenizer/spm_model.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab.h"

#define SPM_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */

/* ------------------------------------------------------------------------------------------------ */
/* export                                                                                           */

typedef struct spm_merge {
    float score;           /* of the merged token; NaN ordered as -inf */
    uint32_t len_l, len_r; /* code points */
    int64_t tok, l, r;     /* ids */
} spm_merge;

static int merge_cmp(const void *pa, const void *pb) {
    const spm_merge *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->len_l != b->len_l) return a->len_l > b->len_l ? -1 : 1;
    if (a->len_r != b->len_r) return a->len_r > b->len_r ? -1 : 1;
    if (a->tok != b->tok) return a->tok < b->tok ? -1 : 1;
    if (a->l != b->l) return a->l < b->l ? -1 : 1;
    return (a->r > b->r) - (a->r < b->r);
}

static int64_t vocab_id(json_t *vocab, const char *s, size_t len) {
    json_t *v = json_object_getn(vocab, s, len);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

static size_t n_code_points(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i += qn_utf8_lead_len((uint8_t)s[i])) n++;
    return n;
}

/* transformers' generate_merges as LlamaConverter calls it: every split of a token into two tokens is a
 * merge; ordered by the token's score (ids 0-2 count as 0), then the longer left part, then the longer
 * right part, then token id and part ids (Python's stable sort over the vocabulary in id order). */
static qn_status spm_merges(const qn_hf_gguf_vocab *v, json_t *vocab, json_t **out, qn_error *err) {
    size_t n = 0, cap = 0;
    spm_merge *m = NULL;
    for (int64_t id = 0; id < v->n; id++) {
        const qn_gguf_str s = qn_gguf_arr_str(v->g, v->ti, (uint64_t)id);
        if (!s.len || vocab_id(vocab, s.ptr, (size_t)s.len) != id) continue; /* padding left out of the vocabulary */
        float score = id < 3 ? 0.0f : qn_hf_gguf_vocab_score(v, id);
        if (isnan(score)) score = -INFINITY;
        uint32_t cp = 0;
        for (size_t k = qn_utf8_lead_len((uint8_t)s.ptr[0]); k < s.len; k += qn_utf8_lead_len((uint8_t)s.ptr[k])) {
            cp++;
            const int64_t l = vocab_id(vocab, s.ptr, k), r = vocab_id(vocab, s.ptr + k, (size_t)s.len - k);
            if (l < 0 || r < 0) continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 4096;
                spm_merge *q = realloc(m, cap * sizeof *m);
                if (!q) {
                    free(m);
                    return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory deriving merges", v->path);
                }
                m = q;
            }
            m[n++] = (spm_merge){score, cp, (uint32_t)n_code_points(s.ptr + k, (size_t)s.len - k), id, l, r};
        }
    }
    if (n) qsort(m, n, sizeof *m, merge_cmp);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        const qn_gguf_str s = qn_gguf_arr_str(v->g, v->ti, (uint64_t)m[i].tok);
        const qn_gguf_str ls = qn_gguf_arr_str(v->g, v->ti, (uint64_t)m[i].l);
        if (json_array_append_new(arr, json_pack("[s%, s%]", ls.ptr, (size_t)ls.len, s.ptr + ls.len,
                                                 (size_t)(s.len - ls.len)))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(m);
    if (!arr) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory building merges", v->path);
    *out = arr;
    return QN_OK;
}

/* tokenizer.model: every GGUF token as a piece, the unknown token typed UNKNOWN (the sentencepiece library
 * refuses a model without one; llama.cpp's converter may have written it as control). */
static qn_status spm_model_bytes(const qn_hf_gguf_vocab *v, uint8_t **buf, size_t *len, qn_error *err) {
    qn_spm_model m = {.n_pieces = v->n, .bos_id = (int32_t)v->bos_id, .eos_id = (int32_t)v->eos_id,
                      .pad_id = (int32_t)v->pad_id, .unk_id = (int32_t)v->unk_id,
                      .add_dummy_prefix = v->add_space != 0};
    if (!(m.pieces = calloc((size_t)v->n + 1, sizeof *m.pieces)))
        return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", v->path);
    int n_bytes = 0;
    for (int64_t i = 0; i < v->n; i++) {
        const qn_gguf_str s = qn_gguf_arr_str(v->g, v->ti, (uint64_t)i);
        int32_t type = qn_hf_gguf_vocab_type(v, i);
        if (type < QN_SPM_TYPE_NORMAL || type > QN_SPM_TYPE_BYTE) type = QN_SPM_TYPE_NORMAL;
        if (m.unk_id < 0 && type == QN_SPM_TYPE_UNKNOWN) m.unk_id = (int32_t)i;
        n_bytes += type == QN_SPM_TYPE_BYTE && s.len == 6 && !memcmp(s.ptr, "<0x", 3) && s.ptr[5] == '>';
        m.pieces[i] = (qn_spm_piece){s.ptr, (uint32_t)s.len, qn_hf_gguf_vocab_score(v, i), type};
    }
    if (m.unk_id >= 0 && m.unk_id < v->n) m.pieces[m.unk_id].type = QN_SPM_TYPE_UNKNOWN;
    m.byte_fallback = n_bytes == 256;
    const qn_status st = qn_spm_model_serialize(&m, buf, len, err);
    free(m.pieces);
    return st;
}

qn_status qn_hf_spm_export(const qn_hf_gguf_vocab *v, int64_t n_ctx, const char *dir, qn_error *err) {
    const bool prefix = v->add_space != 0; /* llama.cpp's default for SentencePiece: true */
    json_t *vocab = json_object(), *added = json_array(), *decoder_added = json_object(), *merges = NULL;
    uint8_t *model = NULL;
    size_t model_len = 0;
    qn_status st = qn_hf_vocab_json(v, true, vocab, added, decoder_added, err);
    if (st == QN_OK) st = spm_merges(v, vocab, &merges, err);
    if (st == QN_OK) st = spm_model_bytes(v, &model, &model_len, err);
    if (st) goto done;

    json_t *norm = json_array(), *dec = json_array();
    if (prefix) json_array_append_new(norm, json_pack("{s:s, s:s}", "type", "Prepend", "prepend", SPM_SPACE));
    json_array_append_new(norm, json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace", "pattern", "String", " ",
                                          "content", SPM_SPACE));
    json_array_append_new(dec, json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace", "pattern", "String", SPM_SPACE,
                                         "content", " "));
    json_array_append_new(dec, json_pack("{s:s}", "type", "ByteFallback"));
    json_array_append_new(dec, json_pack("{s:s}", "type", "Fuse"));
    if (prefix)
        json_array_append_new(dec, json_pack("{s:s, s:s, s:i, s:i}", "type", "Strip", "content", " ", "start", 1,
                                             "stop", 0));
    json_t *bpe = json_pack("{s:s, s:n, s:o, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout",
                            "unk_token", v->unk ? json_string(v->unk) : json_null(), "continuing_subword_prefix",
                            "end_of_word_suffix", "fuse_unk", 1, "byte_fallback", 1, "ignore_merges", 0, "vocab",
                            vocab, "merges", merges);
    vocab = merges = NULL;
    json_t *pp = qn_hf_template_processor(v);
    /* legacy: our tokenizer.json is transformers' legacy form (a prefix after every special token, as llama.cpp) */
    const qn_hf_tok_files f = {
        .tok = json_pack("{s:s, s:n, s:n, s:o, s:{s:s, s:o}, s:n, s:o, s:{s:s, s:o}, s:o}", "version", "1.0",
                         "truncation", "padding", "added_tokens", added, "normalizer", "type", "Sequence",
                         "normalizers", norm, "pre_tokenizer", "post_processor", pp ? pp : json_null(), "decoder",
                         "type", "Sequence", "decoders", dec, "model", bpe),
        .decoder_added = decoder_added, .tokenizer_class = "LlamaTokenizer", .legacy = true, .model = model,
        .model_len = model_len};
    st = qn_hf_write_tokenizer(v, n_ctx, dir, &f, err);
    free(model);
    return st;
done:
    json_decref(vocab);
    json_decref(added);
    json_decref(decoder_added);
    json_decref(merges);
    free(model);
    return st;
}

/* ------------------------------------------------------------------------------------------------ */
/* import                                                                                           */

static bool has_model_file(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    return access(path, F_OK) == 0;
}

bool qn_hf_spm_applies(const char *dir, json_t *tok) {
    if (has_model_file(dir)) return true;
    json_t *model = json_object_get(tok, "model");
    const char *t = json_string_value(json_object_get(model, "type"));
    return t && !strcmp(t, "BPE") && json_is_true(json_object_get(model, "byte_fallback"));
}

typedef struct spm_vocab {
    const char *dir;
    char path[4096];   /* the file being read, for errors */
    int64_t n;         /* n_vocab */
    char **tokens;     /* [n] */
    float *scores;     /* [n] */
    int32_t *types;    /* [n] */
} spm_vocab;

static qn_status set_token(spm_vocab *sv, int64_t id, const char *text, size_t len, float score, int32_t type) {
    char *t = strndup(text, len);
    if (!t) return QN_ERR_NOMEM;
    free(sv->tokens[id]);
    sv->tokens[id] = t;
    sv->scores[id] = score;
    sv->types[id] = type;
    return QN_OK;
}

/* llama.cpp's type for a tokenizer.model piece: SentencePiece's IsUnknown / IsControl / IsUnused / IsByte,
 * else normal (user-defined pieces included). */
static int32_t piece_type(int32_t t) {
    return t == QN_SPM_TYPE_UNKNOWN || t == QN_SPM_TYPE_CONTROL || t == QN_SPM_TYPE_UNUSED || t == QN_SPM_TYPE_BYTE
               ? t
               : QN_TOKEN_TYPE_NORMAL;
}

/* Text with every U+2581 turned into a space (llama.cpp pre-normalizes user-defined tokens so). */
static char *unescape_spaces(const char *s) {
    char *out = malloc(strlen(s) + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = s; *p;) {
        if (!strncmp(p, SPM_SPACE, 3)) *o++ = ' ', p += 3;
        else *o++ = *p++;
    }
    *o = '\0';
    return out;
}

/* _create_vocab_sentencepiece: tokenizer.model, added_tokens.json, added_tokens_decoder */
static qn_status from_model(spm_vocab *sv, json_t *tcfg, qn_error *err) {
    qn_spm_model m;
    snprintf(sv->path, sizeof sv->path, "%s/tokenizer.model", sv->dir);
    qn_status st = qn_spm_model_read(sv->path, &m, err);
    if (st) return st;
    for (int64_t i = 0; i < m.n_pieces && i < sv->n && st == QN_OK; i++)
        st = set_token(sv, i, m.pieces[i].text, m.pieces[i].len, m.pieces[i].score, piece_type(m.pieces[i].type));
    qn_spm_model_free(&m);
    if (st) return qn_error_set(err, st, "%s: out of memory", sv->path);

    json_t *added = NULL, *v;
    const char *k;
    if ((st = qn_hf_load_json(sv->dir, "added_tokens.json", false, &added, err))) return st;
    snprintf(sv->path, sizeof sv->path, "%s/added_tokens.json", sv->dir);
    json_object_foreach(added, k, v) {
        const json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0) {
            st = qn_error_set(err, QN_ERR_FORMAT, "%s: field '%s': not a token id", sv->path, k);
            break;
        }
        if (id < sv->n && (st = set_token(sv, id, k, strlen(k), -1000.0f, QN_TOKEN_TYPE_USER_DEFINED))) break;
    }
    json_decref(added);
    if (st) return st;

    snprintf(sv->path, sizeof sv->path, "%s/tokenizer_config.json", sv->dir);
    json_t *dec = json_object_get(tcfg, "added_tokens_decoder");
    json_object_foreach(dec, k, v) {
        char *end = NULL;
        const long long id = strtoll(k, &end, 10);
        const char *content = json_string_value(json_object_get(v, "content"));
        if (!*k || *end || id < 0 || !content)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'added_tokens_decoder.%s': bad id or content", sv->path,
                                k);
        if (id >= sv->n) continue;
        if (json_is_true(json_object_get(v, "special")) || qn_hf_looks_special(content)) {
            st = set_token(sv, id, content, strlen(content), -1000.0f, QN_TOKEN_TYPE_CONTROL);
        } else {
            char *t = unescape_spaces(content);
            st = t ? set_token(sv, id, t, strlen(t), -1000.0f, QN_TOKEN_TYPE_USER_DEFINED) : QN_ERR_NOMEM;
            free(t);
        }
        if (st) return qn_error_set(err, st, "%s: out of memory", sv->path);
    }
    return QN_OK;
}

/* The prefix a tokenizer.json normalizer + pre-tokenizer pair adds: 1 (U+2581 before the text), 0, or -1
 * for a form that is not one transformers writes for a SentencePiece BPE (field names the culprit). */
static int json_prefix(json_t *tok, const char **field) {
    json_t *norm = json_object_get(tok, "normalizer"), *pre = json_object_get(tok, "pre_tokenizer");
    if (json_is_object(norm) && (!pre || json_is_null(pre))) { /* legacy: Prepend("▁")?, Replace(" ", "▁") */
        json_t *one = json_pack("[O]", norm), *list = one, *e;
        *field = "normalizer";
        const char *t = json_string_value(json_object_get(norm, "type"));
        if (t && !strcmp(t, "Sequence")) list = json_object_get(norm, "normalizers");
        const size_t n = json_array_size(list);
        int prefix = 0;
        bool ok = n == 1 || n == 2;
        size_t i;
        json_array_foreach(list, i, e) {
            const char *et = json_string_value(json_object_get(e, "type"));
            const char *with = json_string_value(json_object_get(e, "content"));
            const char *pat = json_string_value(json_object_get(json_object_get(e, "pattern"), "String"));
            const char *pp = json_string_value(json_object_get(e, "prepend"));
            if (i + 1 < n) /* only a Prepend may come before the Replace */
                ok = ok && et && !strcmp(et, "Prepend") && pp && !strcmp(pp, SPM_SPACE) && (prefix = 1);
            else
                ok = ok && et && !strcmp(et, "Replace") && pat && with && !strcmp(pat, " ") && !strcmp(with, SPM_SPACE);
        }
        json_decref(one);
        return ok ? prefix : -1;
    }
    if ((!norm || json_is_null(norm)) && json_is_object(pre)) { /* Metaspace("▁", no split) */
        *field = "pre_tokenizer";
        const char *t = json_string_value(json_object_get(pre, "type"));
        const char *rep = json_string_value(json_object_get(pre, "replacement"));
        const char *scheme = json_string_value(json_object_get(pre, "prepend_scheme"));
        json_t *aps = json_object_get(pre, "add_prefix_space");
        if (!t || strcmp(t, "Metaspace") || !rep || strcmp(rep, SPM_SPACE) ||
            !json_is_false(json_object_get(pre, "split")))
            return -1;
        if (scheme)
            return !strcmp(scheme, "never") ? 0 : !strcmp(scheme, "always") || !strcmp(scheme, "first") ? 1 : -1;
        return json_is_boolean(aps) ? json_is_true(aps) : -1;
    }
    *field = json_is_object(norm) ? "pre_tokenizer" : "normalizer";
    return -1;
}

/* transformers' all_special_tokens for a LlamaTokenizerFast: the named special tokens of
 * tokenizer_config.json (bos/eos/unk default to <s> / </s> / <unk> when not named) and
 * additional_special_tokens. Marks their ids in is_special[n]. */
static void mark_special(const spm_vocab *sv, json_t *tok, json_t *tcfg, bool *is_special) {
    static const char *const names[7] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                         "pad_token", "cls_token", "mask_token"};
    static const char *const defaults[7] = {"<s>", "</s>", "<unk>", NULL, NULL, NULL, NULL};
    const char *cls = json_string_value(json_object_get(tcfg, "tokenizer_class"));
    const bool llama = !cls || strstr(cls, "Llama");
    json_t *list = json_array(), *e;
    for (int i = 0; i < 7; i++) {
        json_t *a = json_object_get(tcfg, names[i]);
        if (json_is_object(a)) a = json_object_get(a, "content");
        if (json_is_string(a)) json_array_append(list, a);
        else if (!a && llama && defaults[i]) json_array_append_new(list, json_string(defaults[i]));
    }
    size_t i, j;
    json_array_foreach(json_object_get(tcfg, "additional_special_tokens"), i, e)
        json_array_append(list, json_is_object(e) ? json_object_get(e, "content") : e);
    json_t *added = json_object_get(tok, "added_tokens");
    json_t *vocab = json_object_get(json_object_get(tok, "model"), "vocab");
    json_array_foreach(list, i, e) {
        const char *s = json_string_value(e);
        json_t *a;
        int64_t id = -1;
        json_array_foreach(added, j, a) {
            const char *c = json_string_value(json_object_get(a, "content"));
            if (s && c && !strcmp(s, c)) id = (int64_t)json_integer_value(json_object_get(a, "id"));
        }
        if (id < 0 && s) id = vocab_id(vocab, s, strlen(s));
        if (id >= 0 && id < sv->n) is_special[id] = true;
    }
    json_decref(list);
}

static bool is_byte_token(const char *t) {
    static const char hex[] = "0123456789abcdefABCDEF";
    return strlen(t) == 6 && !strncmp(t, "<0x", 3) && strchr(hex, t[3]) && strchr(hex, t[4]) && t[5] == '>';
}

/* _set_vocab_llama_hf (gguf-py's LlamaHfVocab), with scores from the merges (see the file header).
 * *prefix: what the normalizer / pre-tokenizer adds. */
static qn_status from_json(spm_vocab *sv, json_t *tok, json_t *tcfg, int *prefix, qn_error *err) {
    snprintf(sv->path, sizeof sv->path, "%s/tokenizer.json", sv->dir);
    json_t *model = json_object_get(tok, "model"), *vocab = json_object_get(model, "vocab"), *v;
    const char *field = "normalizer";
    const char *dt = json_string_value(json_object_get(json_object_get(tok, "decoder"), "type"));
    if ((*prefix = json_prefix(tok, &field)) < 0) {
        char *text = json_dumps(json_object_get(tok, field), JSON_COMPACT);
        const qn_status st = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: field '%s': %.160s is not a SentencePiece form "
                                          "quern knows (byte_fallback BPE needs the normalizer Prepend(\"" SPM_SPACE
                                          "\") + Replace(\" \", \"" SPM_SPACE "\") or the pre_tokenizer "
                                          "Metaspace(split: false))", sv->path, field, text ? text : "null");
        free(text);
        return st;
    }
    if (!dt || strcmp(dt, "Sequence"))
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: field 'decoder.type': '%s', not the Sequence llama.cpp's "
                            "LlamaHfVocab reads", sv->path, dt ? dt : "missing");
    if (!json_is_object(vocab))
        return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'model.vocab' is not an object", sv->path);
    const int64_t n_base = (int64_t)json_object_size(vocab);
    const char *k;
    qn_status st = QN_OK;
    json_object_foreach(vocab, k, v) {
        const json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= sv->n)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'model.vocab': token '%.64s' has id %lld outside "
                                "0..%lld", sv->path, k, (long long)id, (long long)sv->n - 1);
        if ((st = set_token(sv, id, k, strlen(k), -1000.0f, QN_TOKEN_TYPE_NORMAL))) break;
    }
    bool *special = calloc((size_t)sv->n, sizeof *special), *beyond = calloc((size_t)sv->n, sizeof *beyond);
    if (st || !special || !beyond) {
        st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", sv->path);
        goto done;
    }
    json_t *added = json_object_get(tok, "added_tokens"), *a;
    size_t i;
    json_array_foreach(added, i, a) {
        const char *content;
        int64_t id;
        if ((st = qn_hf_added_token(a, i, sv->n, sv->path, &content, &id, err))) goto done;
        if ((st = set_token(sv, id, content, strlen(content), -1000.0f, QN_TOKEN_TYPE_NORMAL))) {
            st = qn_error_set(err, st, "%s: out of memory", sv->path);
            goto done;
        }
        beyond[id] = id >= n_base;
    }
    mark_special(sv, tok, tcfg, special);
    for (int64_t id = 0; id < sv->n; id++) {
        if (!sv->tokens[id]) continue;
        if (beyond[id]) sv->types[id] = special[id] ? QN_TOKEN_TYPE_CONTROL : QN_TOKEN_TYPE_USER_DEFINED;
        else if (is_byte_token(sv->tokens[id])) sv->types[id] = QN_TOKEN_TYPE_BYTE;
        else if (special[id]) sv->types[id] = QN_TOKEN_TYPE_CONTROL;
    }
    /* scores: minus the rank of the first merge whose result the token is */
    json_t *merges = json_object_get(model, "merges");
    bool *scored = special; /* reused: special marks are no longer needed */
    memset(scored, 0, (size_t)sv->n * sizeof *scored);
    json_array_foreach(merges, i, a) {
        char buf[1024];
        const char *l = json_string_value(json_array_get(a, 0)), *r = json_string_value(json_array_get(a, 1));
        const char *str = json_string_value(a), *sp = str ? strchr(str, ' ') : NULL;
        int len = -1; /* the merged token: "a b" without its space, or a + b */
        if (sp) len = snprintf(buf, sizeof buf, "%.*s%s", (int)(sp - str), str, sp + 1);
        else if (l && r && json_array_size(a) == 2) len = snprintf(buf, sizeof buf, "%s%s", l, r);
        if (len < 0 || (size_t)len >= sizeof buf) {
            st = qn_error_set(err, QN_ERR_FORMAT, "%s: field 'model.merges[%zu]': neither \"a b\" nor [a, b] (or over "
                              "1 KiB)", sv->path, i);
            goto done;
        }
        const int64_t id = vocab_id(vocab, buf, strlen(buf));
        if (id >= 0 && id < sv->n && !beyond[id] && !scored[id]) {
            scored[id] = true;
            sv->scores[id] = -(float)i;
        }
    }
done:
    free(special);
    free(beyond);
    return st;
}

qn_status qn_hf_spm_import_vocab(const char *dir, json_t *tok, json_t *tcfg, int64_t n_vocab, bool add_space_prefix,
                                 qn_gguf_writer *w, qn_error *err) {
    spm_vocab sv = {.dir = dir, .n = n_vocab};
    const bool from_file = has_model_file(dir);
    int prefix = 1;
    qn_status st = QN_OK;
    sv.tokens = calloc((size_t)n_vocab, sizeof *sv.tokens);
    sv.scores = malloc((size_t)n_vocab * sizeof *sv.scores);
    sv.types = malloc((size_t)n_vocab * sizeof *sv.types);
    if (!sv.tokens || !sv.scores || !sv.types) {
        st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory (%lld tokens)", dir, (long long)n_vocab);
        goto done;
    }
    for (int64_t i = 0; i < n_vocab && st == QN_OK; i++) { /* what no file names */
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%lld]", (long long)i);
        st = set_token(&sv, i, pad, strlen(pad), from_file ? -10000.0f : -1000.0f, QN_TOKEN_TYPE_UNUSED);
    }
    if (st) {
        st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory (%lld tokens)", dir, (long long)n_vocab);
        goto done;
    }
    if ((st = from_file ? from_model(&sv, tcfg, err) : from_json(&sv, tok, tcfg, &prefix, err))) goto done;

    if ((st = qn_hf_put_add_space_prefix(w, tcfg, add_space_prefix, err))) goto done;
    /* a tokenizer.json without the prefix: say so, or the GGUF would add one (llama.cpp does not look) */
    if (!prefix && !json_is_boolean(json_object_get(tcfg, "add_prefix_space")) &&
        (st = qn_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", false, err)))
        goto done;
    if ((st = qn_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama", err)) ||
        (st = qn_gguf_writer_add_str(w, "tokenizer.ggml.pre", "default", err)) ||
        (st = qn_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)sv.tokens,
                                         (uint64_t)n_vocab, err)) ||
        (st = qn_gguf_writer_add_arr(w, "tokenizer.ggml.scores", QN_GGUF_TYPE_FLOAT32, sv.scores, (uint64_t)n_vocab,
                                     err)))
        goto done;
    st = qn_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", QN_GGUF_TYPE_INT32, sv.types, (uint64_t)n_vocab, err);
done:
    for (int64_t i = 0; sv.tokens && i < n_vocab; i++) free(sv.tokens[i]);
    free(sv.tokens);
    free(sv.scores);
    free(sv.types);
    return st;
}
