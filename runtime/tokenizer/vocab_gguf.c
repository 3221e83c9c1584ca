/* vocab_gguf.c — qn_vocab_from_gguf: the tokenizer.* keys of formats.md §1.3 turned into qn_vocab_params, with
 * llama.cpp's per-model defaults. Token and merge strings are borrowed from the mapping for the duration of
 * qn_vocab_create, which copies them. */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "model/gguf.h"
#include "tokenizer/pretok.h"
#include "tokenizer/vocab.h"

static bool str_eq(qn_gguf_str s, const char *lit) { return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0; }

/* A string-array key as pointer + length arrays (views into the mapping). */
static qn_status get_str_array(const qn_gguf *g, const char *key, bool required, const char ***strs,
                               uint32_t **lens, int32_t *n, qn_error *err) {
    *strs = NULL;
    *lens = NULL;
    *n = 0;
    const int64_t k = qn_gguf_find_key(g, key);
    if (k < 0)
        return required ? qn_error_set(err, QN_ERR_FORMAT, "%s: missing key %s", qn_gguf_path(g), key) : QN_OK;
    if (qn_gguf_kv_type(g, k) != QN_GGUF_TYPE_ARRAY || qn_gguf_arr_type(g, k) != QN_GGUF_TYPE_STRING)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: %s is not an array of strings", qn_gguf_path(g), key);
    const uint64_t cnt = qn_gguf_arr_n(g, k);
    if (cnt > INT32_MAX) return qn_error_set(err, QN_ERR_FORMAT, "%s: %s has too many entries", qn_gguf_path(g), key);
    *strs = malloc((cnt ? cnt : 1) * sizeof **strs);
    *lens = malloc((cnt ? cnt : 1) * sizeof **lens);
    if (!*strs || !*lens) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory reading %s", qn_gguf_path(g), key);
    for (uint64_t i = 0; i < cnt; i++) {
        const qn_gguf_str s = qn_gguf_arr_str(g, k, i);
        if (s.len > UINT32_MAX)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: %s[%llu] too long", qn_gguf_path(g), key,
                                (unsigned long long)i);
        (*strs)[i] = s.ptr;
        (*lens)[i] = (uint32_t)s.len;
    }
    *n = (int32_t)cnt;
    return QN_OK;
}

/* A numeric array key copied out as int32 or float (elements may be unaligned in the mapping). */
static qn_status get_num_array(const qn_gguf *g, const char *key, int32_t n_tokens, bool as_float, void **out,
                               qn_error *err) {
    *out = NULL;
    const int64_t k = qn_gguf_find_key(g, key);
    if (k < 0) return QN_OK;
    const qn_gguf_type t = qn_gguf_kv_type(g, k) == QN_GGUF_TYPE_ARRAY ? qn_gguf_arr_type(g, k) : QN_GGUF_TYPE_COUNT;
    if (t != QN_GGUF_TYPE_INT32 && t != QN_GGUF_TYPE_FLOAT32 && t != QN_GGUF_TYPE_UINT32)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: %s is not an i32/f32 array", qn_gguf_path(g), key);
    if (qn_gguf_arr_n(g, k) < (uint64_t)n_tokens)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: %s has %llu entries for %d tokens", qn_gguf_path(g), key,
                            (unsigned long long)qn_gguf_arr_n(g, k), n_tokens);
    const unsigned char *src = qn_gguf_arr_data(g, k);
    void *dst = malloc((size_t)n_tokens * 4 + 4);
    if (!dst) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory reading %s", qn_gguf_path(g), key);
    for (int32_t i = 0; i < n_tokens; i++) {
        uint32_t raw;
        memcpy(&raw, src + (size_t)i * 4, 4);
        if (as_float) {
            float f;
            if (t == QN_GGUF_TYPE_FLOAT32) memcpy(&f, &raw, 4);
            else f = t == QN_GGUF_TYPE_INT32 ? (float)(int32_t)raw : (float)raw;
            ((float *)dst)[i] = f;
        } else {
            int32_t x;
            if (t == QN_GGUF_TYPE_FLOAT32) {
                float f;
                memcpy(&f, &raw, 4);
                x = (int32_t)f;
            } else {
                x = (int32_t)raw;
            }
            ((int32_t *)dst)[i] = x;
        }
    }
    *out = dst;
    return QN_OK;
}

/* Special id key: absent -> keep the default; present but out of range -> keep the default (llama.cpp warns). */
static qn_status get_id(const qn_gguf *g, const char *key, int32_t n_tokens, int32_t *id, qn_error *err) {
    if (*id >= n_tokens) *id = -1;
    uint32_t v;
    const qn_status st = qn_gguf_get_u32(g, key, &v, err);
    if (st == QN_ERR_NOT_FOUND) return QN_OK;
    if (st != QN_OK) return st;
    if (v < (uint32_t)n_tokens) *id = (int32_t)v;
    else QN_LOGW("%s: %s = %u out of vocab range, using %d", qn_gguf_path(g), key, v, *id);
    return QN_OK;
}

static qn_status get_flag(const qn_gguf *g, const char *key, bool *flag, qn_error *err) {
    bool b;
    const qn_status st = qn_gguf_get_bool(g, key, &b, err);
    if (st == QN_ERR_NOT_FOUND) return QN_OK;
    if (st == QN_OK) *flag = b;
    return st;
}

qn_status qn_vocab_from_gguf(const qn_gguf *g, qn_vocab **out, qn_error *err) {
    *out = NULL;
    const char *path = qn_gguf_path(g);
    qn_gguf_str model = {0}, pre_s = {0};
    qn_status st = qn_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (st == QN_ERR_NOT_FOUND) return qn_error_set(err, QN_ERR_FORMAT, "%s: missing key tokenizer.ggml.model", path);
    if (st != QN_OK) return st;
    st = qn_gguf_get_str(g, "tokenizer.ggml.pre", &pre_s, err);
    if (st != QN_OK && st != QN_ERR_NOT_FOUND) return st;

    qn_vocab_params p = {.bos = -1, .eos = -1, .eot = -1, .eom = -1, .unk = -1, .pad = -1};
    char pre[128] = "";
    if (pre_s.len >= sizeof pre)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre too long", path);
    memcpy(pre, pre_s.ptr ? pre_s.ptr : "", pre_s.len);
    pre[pre_s.len] = '\0';

    if (str_eq(model, "llama")) {
        p.type = QN_VOCAB_TYPE_LLAMA;
        p.bos = 1, p.eos = 2, p.unk = 0;
        p.add_bos = true;
        p.add_space_prefix = true;
    } else if (str_eq(model, "gpt2")) {
        p.type = QN_VOCAB_TYPE_GPT2;
        if (!pre[0]) {
            QN_LOGW("%s: tokenizer.ggml.pre missing, using the 'default' pre-tokenizer (quality may suffer)", path);
            strcpy(pre, "default");
        }
        if (!qn_pretok_known(pre))
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre '%s' is not supported", path, pre);
        p.add_bos = (qn_pretok_flags_of(pre) & QN_PRETOK_ADD_BOS) != 0;
    } else if (str_eq(model, "gemma4")) {
        p.type = QN_VOCAB_TYPE_GEMMA4;
    } else {
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model '%.*s' is not supported "
                            "(only gpt2 = byte-level BPE, llama = SentencePiece, gemma4)", path,
                            (int)(model.len > 64 ? 64 : model.len), model.ptr ? model.ptr : "");
    }
    p.pre = pre;

    const char **tokens = NULL, **merges = NULL;
    uint32_t *token_lens = NULL, *merge_lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    if ((st = get_str_array(g, "tokenizer.ggml.tokens", true, &tokens, &token_lens, &p.n_tokens, err)) != QN_OK)
        goto done;
    if (p.n_tokens == 0) {
        st = qn_error_set(err, QN_ERR_FORMAT, "%s: tokenizer.ggml.tokens is empty", path);
        goto done;
    }
    if (p.type != QN_VOCAB_TYPE_LLAMA &&
        (st = get_str_array(g, "tokenizer.ggml.merges", true, &merges, &merge_lens, &p.n_merges, err)) != QN_OK)
        goto done;
    if ((st = get_num_array(g, "tokenizer.ggml.scores", p.n_tokens, true, (void **)&scores, err)) != QN_OK) goto done;
    if ((st = get_num_array(g, "tokenizer.ggml.token_type", p.n_tokens, false, (void **)&types, err)) != QN_OK)
        goto done;
    p.tokens = tokens;
    p.token_lens = token_lens;
    p.merges = merges;
    p.merge_lens = merge_lens;
    p.scores = scores;
    p.token_types = types;

    const struct { const char *key; int32_t *id; } ids[] = {
        {"tokenizer.ggml.bos_token_id", &p.bos},     {"tokenizer.ggml.eos_token_id", &p.eos},
        {"tokenizer.ggml.eot_token_id", &p.eot},     {"tokenizer.ggml.eom_token_id", &p.eom},
        {"tokenizer.ggml.unknown_token_id", &p.unk}, {"tokenizer.ggml.padding_token_id", &p.pad},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if ((st = get_id(g, ids[i].key, p.n_tokens, ids[i].id, err)) != QN_OK) goto done;
    if ((st = get_flag(g, "tokenizer.ggml.add_space_prefix", &p.add_space_prefix, err)) != QN_OK ||
        (st = get_flag(g, "tokenizer.ggml.add_bos_token", &p.add_bos, err)) != QN_OK ||
        (st = get_flag(g, "tokenizer.ggml.add_eos_token", &p.add_eos, err)) != QN_OK)
        goto done;
    if (p.type == QN_VOCAB_TYPE_GEMMA4) p.add_bos = true; /* llama.cpp forces it for Gemma 4 */
    if (p.add_bos && p.bos < 0) p.add_bos = false;
    if (p.add_eos && p.eos < 0) p.add_eos = false;

    st = qn_vocab_create(&p, out, err);
done:
    free(tokens);
    free(token_lens);
    free(merges);
    free(merge_lens);
    free(scores);
    free(types);
    return st;
}
