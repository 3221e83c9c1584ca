/* vocab.c — qn_vocab construction (string table, merge map, llama.cpp's special-token fix-ups, piece cache),
 * special-token partitioning, the tokenize driver for both model types, and detokenization. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/utf8.h"

#define SPM_SPACE "\xE2\x96\x81" /* U+2581, SentencePiece's visible space */

// ---------------------------------------------------------------------------------------------------------------
// Small containers
// ---------------------------------------------------------------------------------------------------------------

bool qn_ids_push(qn_ids *a, int32_t x) {
    if (a->n == a->cap) {
        const size_t cap = a->cap ? a->cap * 2 : 256;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return false;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}

typedef struct bytes {
    char *p;
    size_t n, cap;
} bytes;

static bool bytes_put(bytes *b, const void *s, size_t n) {
    if (n == 0) return true;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return true;
}

// ---------------------------------------------------------------------------------------------------------------
// String table: arena + open-addressing map
// ---------------------------------------------------------------------------------------------------------------

static uint64_t str_hash(const char *s, size_t n) {
    uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a, then a final avalanche for the low bits */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001B3ull;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return h;
}

int32_t qn_vocab_lookup(const qn_vocab *v, const char *s, size_t n) {
    for (uint32_t i = (uint32_t)str_hash(s, n) & v->map_mask;; i = (i + 1) & v->map_mask) {
        const int32_t id = v->map[i];
        if (id < 0) return -1;
        if (v->str_len[id] == n && memcmp(v->arena + v->str_off[id], s, n) == 0) return id;
    }
}

static bool map_rehash(qn_vocab *v, uint32_t cap) {
    int32_t *m = malloc((size_t)cap * sizeof *m);
    if (!m) return false;
    memset(m, 0xFF, (size_t)cap * sizeof *m);
    const uint32_t mask = cap - 1;
    for (uint32_t j = 0; j <= (v->map ? v->map_mask : 0) && v->map; j++) {
        const int32_t id = v->map[j];
        if (id < 0) continue;
        uint32_t i = (uint32_t)str_hash(qn_vocab_str(v, id), v->str_len[id]) & mask;
        while (m[i] >= 0) i = (i + 1) & mask;
        m[i] = id;
    }
    free(v->map);
    v->map = m;
    v->map_mask = mask;
    return true;
}

/* Adds s[0..n) as string id v->n_strs (or, with replace, re-points an existing entry to it: llama.cpp keeps the
 * last of duplicate token texts). Returns the id, -1 on NOMEM. */
static int32_t str_add(qn_vocab *v, const char *s, size_t n) {
    if ((size_t)(v->n_strs + 1) * 2 > (size_t)v->map_mask + 1 && !map_rehash(v, (v->map_mask + 1) * 2)) return -1;
    if (v->n_strs == v->cap_strs) {
        const int32_t cap = v->cap_strs * 2;
        uint32_t *o = realloc(v->str_off, (size_t)cap * sizeof *o);
        if (!o) return -1;
        v->str_off = o;
        uint32_t *l = realloc(v->str_len, (size_t)cap * sizeof *l);
        if (!l) return -1;
        v->str_len = l;
        v->cap_strs = cap;
    }
    if (v->arena_len + n + 1 > v->arena_cap) {
        size_t cap = v->arena_cap ? v->arena_cap : 4096;
        while (cap < v->arena_len + n + 1) cap *= 2;
        if (cap > UINT32_MAX) return -1;
        char *a = realloc(v->arena, cap);
        if (!a) return -1;
        v->arena = a;
        v->arena_cap = cap;
    }
    const int32_t id = v->n_strs++;
    v->str_off[id] = (uint32_t)v->arena_len;
    v->str_len[id] = (uint32_t)n;
    memcpy(v->arena + v->arena_len, s, n);
    v->arena[v->arena_len + n] = '\0';
    v->arena_len += n + 1;
    uint32_t i = (uint32_t)str_hash(s, n) & v->map_mask;
    for (;; i = (i + 1) & v->map_mask) {
        const int32_t o = v->map[i];
        if (o < 0) break;
        if (v->str_len[o] == n && memcmp(v->arena + v->str_off[o], s, n) == 0) break; /* duplicate: last wins */
    }
    v->map[i] = id;
    return id;
}

static int32_t str_get_or_add(qn_vocab *v, const char *s, size_t n) {
    const int32_t id = qn_vocab_lookup(v, s, n);
    return id >= 0 ? id : str_add(v, s, n);
}

static bool pair_insert(qn_vocab *v, int32_t l, int32_t r, int32_t rank, int32_t merged) {
    const uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    for (uint32_t i = (uint32_t)h & v->pair_mask;; i = (i + 1) & v->pair_mask) {
        if (v->pair_key[i] == key) return true; /* duplicate merge: the first (lowest rank) wins */
        if (v->pair_key[i] == 0) {
            v->pair_key[i] = key;
            v->pair_rank[i] = rank;
            v->pair_merged[i] = merged;
            v->n_pairs++;
            return true;
        }
    }
}

static uint32_t pow2_at_least(size_t n) {
    uint32_t c = 16;
    while (c < n) c *= 2;
    return c;
}

// ---------------------------------------------------------------------------------------------------------------
// Construction
// ---------------------------------------------------------------------------------------------------------------

static uint8_t attr_from_type(int32_t t) {
    switch ((qn_token_type)t) {
    case QN_TOKEN_TYPE_NORMAL: return QN_TOKATTR_NORMAL;
    case QN_TOKEN_TYPE_UNKNOWN: return QN_TOKATTR_UNKNOWN;
    case QN_TOKEN_TYPE_CONTROL: return QN_TOKATTR_CONTROL;
    case QN_TOKEN_TYPE_USER_DEFINED: return QN_TOKATTR_USER_DEFINED;
    case QN_TOKEN_TYPE_UNUSED: return QN_TOKATTR_UNUSED;
    case QN_TOKEN_TYPE_BYTE: return QN_TOKATTR_BYTE;
    case QN_TOKEN_TYPE_UNDEFINED: break;
    }
    return 0;
}

static int32_t find_text(const qn_vocab *v, const char *s) {
    const int32_t id = qn_vocab_lookup(v, s, strlen(s));
    return id < v->n_tokens ? id : -1;
}

/* Texts that end a turn in some model family; llama.cpp marks them control + end-of-generation. */
static const char *const EOT_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
    "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "<end_of_utterance>", NULL};
static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "[e~[", NULL};

/* llama.cpp's special-token fix-ups: find eot/eom by text, mark end-of-generation tokens (and make them control),
 * drop "<|end|>" when harmony's "<|return|>"/"<|call|>" exist and "</s>" where it is a normal token. */
static void fixup_specials(qn_vocab *v) {
    if (v->eot < 0)
        for (int k = 0; EOT_TEXTS[k] && v->eot < 0; k++) v->eot = find_text(v, EOT_TEXTS[k]);
    if (v->eom < 0) v->eom = find_text(v, "<|eom_id|>");
    if (v->eot >= 0) v->attr[v->eot] |= QN_TOKATTR_CONTROL;
    if (v->eom >= 0) v->attr[v->eom] |= QN_TOKATTR_CONTROL;

    for (int k = 0; EOG_TEXTS[k]; k++) {
        const int32_t id = find_text(v, EOG_TEXTS[k]);
        if (id >= 0) v->attr[id] |= QN_TOKATTR_EOG | QN_TOKATTR_CONTROL;
    }
    /* gpt-oss: these structure tokens are always rendered */
    static const char *const RENDERED[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};
    for (int k = 0; RENDERED[k]; k++) {
        const int32_t id = find_text(v, RENDERED[k]);
        if (id >= 0) v->attr[id] = QN_TOKATTR_USER_DEFINED;
    }
    const int32_t ids[3] = {v->eos, v->eot, v->eom};
    for (int k = 0; k < 3; k++)
        if (ids[k] >= 0) v->attr[ids[k]] |= QN_TOKATTR_EOG;

    const int32_t end = find_text(v, "<|end|>");
    const bool has_return = find_text(v, "<|return|>") >= 0;
    const bool has_call = find_text(v, "<|call|>") >= 0 || find_text(v, "<|calls|>") >= 0;
    const bool has_flush = find_text(v, "<|flush|>") >= 0;
    if (end >= 0 && ((has_return && has_call) || (has_call && has_flush))) v->attr[end] = QN_TOKATTR_USER_DEFINED;
    const int32_t s = find_text(v, "</s>");
    if (s >= 0 && (find_text(v, "<|tool_response>") >= 0 || find_text(v, "<|plamo:eos|>") >= 0))
        v->attr[s] = QN_TOKATTR_NORMAL;
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const qn_vocab *v = ctx;
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (v->str_len[x] != v->str_len[y]) return v->str_len[x] > v->str_len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Decoded bytes of token id with special = true (llama.cpp's token_to_piece cache). */
static bool build_piece(const qn_vocab *v, int32_t id, bytes *out) {
    const char *t = qn_vocab_str(v, id);
    const size_t n = v->str_len[id];
    const uint8_t a = v->attr[id];
    if (a & (QN_TOKATTR_UNKNOWN | QN_TOKATTR_CONTROL | QN_TOKATTR_USER_DEFINED)) return bytes_put(out, t, n);
    if (a & QN_TOKATTR_NORMAL) {
        if (v->type == QN_VOCAB_TYPE_LLAMA || (v->pre_flags & QN_PRETOK_RAW_BYTES)) {
            for (size_t i = 0; i < n;) {
                if (n - i >= 3 && memcmp(t + i, SPM_SPACE, 3) == 0) {
                    if (!bytes_put(out, " ", 1)) return false;
                    i += 3;
                } else {
                    if (!bytes_put(out, t + i, 1)) return false;
                    i++;
                }
            }
            return true;
        }
        for (size_t i = 0; i < n;) { /* gpt2: map the byte alphabet back */
            uint32_t cp;
            size_t k = qn_utf8_decode(t + i, n - i, &cp);
            if (k == 0) k = 1, cp = 0xFFFFFFFF;
            const int b = cp == 0xFFFFFFFF ? -1 : qn_gpt2_cp_to_byte(cp);
            if (b >= 0) {
                const char c = (char)b;
                if (!bytes_put(out, &c, 1)) return false;
            } else if (!bytes_put(out, t + i, k)) { /* outside the alphabet: keep as is */
                return false;
            }
            i += k;
        }
        return true;
    }
    if (a & QN_TOKATTR_BYTE) {
        if (n == 6 && memcmp(t, "<0x", 3) == 0 && t[5] == '>' && hexval(t[3]) >= 0 && hexval(t[4]) >= 0) {
            const char c = (char)(hexval(t[3]) * 16 + hexval(t[4]));
            return bytes_put(out, &c, 1);
        }
        return bytes_put(out, t, n);
    }
    return true; /* unused / undefined: nothing */
}

static qn_status check_id(int32_t id, int32_t n, const char *what, qn_error *err) {
    if (id >= -1 && id < n) return QN_OK;
    return qn_error_set(err, QN_ERR_INVALID_ARG, "vocab: %s id %d out of range [0, %d)", what, id, n);
}

qn_status qn_vocab_create(const qn_vocab_params *p, qn_vocab **out, qn_error *err) {
    *out = NULL;
    if (p->type != QN_VOCAB_TYPE_GPT2 && p->type != QN_VOCAB_TYPE_LLAMA && p->type != QN_VOCAB_TYPE_GEMMA4)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "vocab: unknown model type %d", (int)p->type);
    if (p->n_tokens <= 0 || !p->tokens)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "vocab: no tokens (n_tokens = %d)", p->n_tokens);
    const bool bpe = p->type != QN_VOCAB_TYPE_LLAMA;
    if (bpe && (p->n_merges < 0 || (p->n_merges > 0 && !p->merges)))
        return qn_error_set(err, QN_ERR_INVALID_ARG, "vocab: BPE model without merges");
    qn_status st;
    const struct { int32_t id; const char *what; } ids[] = {{p->bos, "bos"}, {p->eos, "eos"}, {p->eot, "eot"},
                                                             {p->eom, "eom"}, {p->unk, "unk"}, {p->pad, "pad"}};
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++)
        if ((st = check_id(ids[k].id, p->n_tokens, ids[k].what, err)) != QN_OK) return st;

    qn_vocab *v = calloc(1, sizeof *v);
    if (!v) return qn_error_set(err, QN_ERR_NOMEM, "vocab: out of memory");
    v->type = p->type;
    v->n_tokens = p->n_tokens;
    v->bos = p->bos, v->eos = p->eos, v->eot = p->eot, v->eom = p->eom, v->unk = p->unk, v->pad = p->pad;
    v->add_bos = p->add_bos, v->add_eos = p->add_eos, v->add_space_prefix = p->add_space_prefix;

    if (bpe) {
        const char *pre = p->type == QN_VOCAB_TYPE_GEMMA4 ? "gemma4" : p->pre;
        if ((st = qn_pretok_create(pre, &v->pretok, err)) != QN_OK) goto fail;
        v->pre_flags = qn_pretok_flags(v->pretok);
    }

    st = QN_ERR_NOMEM;
    v->cap_strs = p->n_tokens + 64;
    v->str_off = malloc((size_t)v->cap_strs * sizeof *v->str_off);
    v->str_len = malloc((size_t)v->cap_strs * sizeof *v->str_len);
    v->scores = calloc((size_t)p->n_tokens, sizeof *v->scores);
    v->attr = malloc((size_t)p->n_tokens);
    if (!v->str_off || !v->str_len || !v->scores || !v->attr || !map_rehash(v, pow2_at_least(2 * (size_t)p->n_tokens)))
        goto nomem;

    for (int32_t i = 0; i < p->n_tokens; i++) {
        const char *t = p->tokens[i];
        size_t n = p->token_lens ? p->token_lens[i] : (t ? strlen(t) : 0);
        char empty[32];
        if (!t || n == 0) { /* llama.cpp renames empty tokens so that every id stays addressable */
            n = (size_t)snprintf(empty, sizeof empty, "[EMPTY_%d]", i);
            t = empty;
        }
        if (str_add(v, t, n) != i) goto nomem;
        v->scores[i] = p->scores ? p->scores[i] : 0.0f;
        v->attr[i] = p->token_types ? attr_from_type(p->token_types[i]) : QN_TOKATTR_NORMAL;
    }

    if (bpe && p->n_merges > 0) {
        v->pair_mask = pow2_at_least(2 * (size_t)p->n_merges) - 1;
        v->pair_key = calloc((size_t)v->pair_mask + 1, sizeof *v->pair_key);
        v->pair_rank = malloc(((size_t)v->pair_mask + 1) * sizeof *v->pair_rank);
        v->pair_merged = malloc(((size_t)v->pair_mask + 1) * sizeof *v->pair_merged);
        if (!v->pair_key || !v->pair_rank || !v->pair_merged) goto nomem;
        bytes cat = {0};
        for (int32_t i = 0; i < p->n_merges; i++) {
            const char *m = p->merges[i];
            const size_t n = p->merge_lens ? p->merge_lens[i] : (m ? strlen(m) : 0);
            const char *sp = n > 1 ? memchr(m + 1, ' ', n - 1) : NULL; /* first space after the first byte */
            if (!sp) continue;                                        /* llama.cpp inserts an empty pair */
            const size_t nl = (size_t)(sp - m), nr = n - nl - 1;
            cat.n = 0;
            if (!bytes_put(&cat, m, nl) || !bytes_put(&cat, sp + 1, nr)) {
                free(cat.p);
                goto nomem;
            }
            const int32_t l = str_get_or_add(v, m, nl);
            const int32_t r = l < 0 ? -1 : str_get_or_add(v, sp + 1, nr);
            const int32_t lr = r < 0 ? -1 : str_get_or_add(v, cat.p, cat.n);
            if (lr < 0 || !pair_insert(v, l, r, i, lr)) {
                free(cat.p);
                goto nomem;
            }
        }
        free(cat.p);
    }

    fixup_specials(v);

    v->specials = malloc((size_t)p->n_tokens * sizeof *v->specials);
    if (!v->specials) goto nomem;
    for (int32_t i = 0; i < p->n_tokens; i++)
        if (v->attr[i] & (QN_TOKATTR_CONTROL | QN_TOKATTR_USER_DEFINED | QN_TOKATTR_UNKNOWN))
            v->specials[v->n_specials++] = i;
    qsort_r(v->specials, (size_t)v->n_specials, sizeof *v->specials, cmp_special, v);

    for (int b = 0; b < 256; b++) {
        char hex[7];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int32_t id = find_text(v, hex);
        if (id < 0) {
            const char c = (char)b;
            id = qn_vocab_lookup(v, &c, 1);
            if (id >= v->n_tokens) id = -1;
        }
        v->byte_tok[b] = id;
        char enc[4];
        v->byte_enc_len[b] = (uint8_t)qn_utf8_encode(qn_gpt2_byte_to_cp((uint8_t)b), enc);
        memcpy(v->byte_enc[b], enc, v->byte_enc_len[b]);
    }

    {
        bytes pieces = {0};
        v->piece_off = malloc((size_t)p->n_tokens * sizeof *v->piece_off);
        v->piece_len = malloc((size_t)p->n_tokens * sizeof *v->piece_len);
        if (!v->piece_off || !v->piece_len) goto nomem;
        for (int32_t i = 0; i < p->n_tokens; i++) {
            v->piece_off[i] = (uint32_t)pieces.n;
            if (!build_piece(v, i, &pieces)) {
                free(pieces.p);
                goto nomem;
            }
            v->piece_len[i] = (uint32_t)(pieces.n - v->piece_off[i]);
        }
        v->pieces = pieces.p;
    }
    *out = v;
    return QN_OK;

nomem:
    qn_error_set(err, QN_ERR_NOMEM, "vocab: out of memory (%d tokens, %d merges)", p->n_tokens, p->n_merges);
fail:
    qn_vocab_destroy(v);
    return st;
}

void qn_vocab_destroy(qn_vocab *v) {
    if (!v) return;
    qn_pretok_destroy(v->pretok);
    free(v->arena);
    free(v->str_off);
    free(v->str_len);
    free(v->scores);
    free(v->attr);
    free(v->map);
    free(v->pair_key);
    free(v->pair_rank);
    free(v->pair_merged);
    free(v->pieces);
    free(v->piece_off);
    free(v->piece_len);
    free(v->specials);
    free(v);
}

// ---------------------------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------------------------

int32_t qn_vocab_n_tokens(const qn_vocab *v) { return v->n_tokens; }
qn_vocab_type qn_vocab_get_type(const qn_vocab *v) { return v->type; }
int32_t qn_vocab_bos(const qn_vocab *v) { return v->bos; }
int32_t qn_vocab_eos(const qn_vocab *v) { return v->eos; }
int32_t qn_vocab_eot(const qn_vocab *v) { return v->eot; }
int32_t qn_vocab_eom(const qn_vocab *v) { return v->eom; }
int32_t qn_vocab_unk(const qn_vocab *v) { return v->unk; }
int32_t qn_vocab_pad(const qn_vocab *v) { return v->pad; }
bool qn_vocab_add_bos(const qn_vocab *v) { return v->add_bos; }
bool qn_vocab_add_eos(const qn_vocab *v) { return v->add_eos; }

bool qn_vocab_is_eog(const qn_vocab *v, int32_t id) {
    return id >= 0 && id < v->n_tokens && (v->attr[id] & QN_TOKATTR_EOG);
}

const char *qn_vocab_token_text(const qn_vocab *v, int32_t id) {
    return id >= 0 && id < v->n_tokens ? qn_vocab_str(v, id) : NULL;
}

qn_token_type qn_vocab_token_type(const qn_vocab *v, int32_t id) {
    if (id < 0 || id >= v->n_tokens) return QN_TOKEN_TYPE_UNDEFINED;
    const uint8_t a = v->attr[id];
    if (a & QN_TOKATTR_CONTROL) return QN_TOKEN_TYPE_CONTROL;
    if (a & QN_TOKATTR_USER_DEFINED) return QN_TOKEN_TYPE_USER_DEFINED;
    if (a & QN_TOKATTR_UNKNOWN) return QN_TOKEN_TYPE_UNKNOWN;
    if (a & QN_TOKATTR_BYTE) return QN_TOKEN_TYPE_BYTE;
    if (a & QN_TOKATTR_UNUSED) return QN_TOKEN_TYPE_UNUSED;
    if (a & QN_TOKATTR_NORMAL) return QN_TOKEN_TYPE_NORMAL;
    return QN_TOKEN_TYPE_UNDEFINED;
}

int32_t qn_vocab_find(const qn_vocab *v, const char *s, size_t n) {
    const int32_t id = qn_vocab_lookup(v, s, n);
    return id < v->n_tokens ? id : -1;
}

bool qn_vocab_clean_spaces(const qn_vocab *v) { return (v->pre_flags & QN_PRETOK_CLEAN_SPACES) != 0; }

const char *qn_vocab_pre_family(const qn_vocab *v) { return v->pretok ? qn_pretok_family(v->pretok) : "spm"; }

// ---------------------------------------------------------------------------------------------------------------
// Special-token partitioning
// ---------------------------------------------------------------------------------------------------------------

typedef struct frag {
    int32_t tok;       /* >= 0: a special token; -1: raw text */
    uint32_t off, len; /* raw text range */
} frag;

typedef struct frag_vec {
    frag *v;
    size_t n, cap;
} frag_vec;

static bool frag_push(frag_vec *f, frag x) {
    if (f->n == f->cap) {
        const size_t cap = f->cap ? f->cap * 2 : 16;
        frag *v = realloc(f->v, cap * sizeof *v);
        if (!v) return false;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = x;
    return true;
}

/* True when every adjacent byte pair of s occurs somewhere in the text (pairs: 65536-bit set). */
static bool pairs_present(const uint64_t *pairs, const uint8_t *s, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) {
        const unsigned k = (unsigned)s[i] << 8 | s[i + 1];
        if (!(pairs[k >> 6] >> (k & 63) & 1)) return false;
    }
    return true;
}

/* Splits the text at special tokens as llama.cpp's tokenizer_st_partition: tokens in order of decreasing length,
 * each cutting every remaining raw fragment at its leftmost non-overlapping occurrences. Control and unknown
 * tokens only count when parse_special; user-defined tokens always do. */
static qn_status partition(const qn_vocab *v, const char *text, size_t len, bool parse_special, frag_vec *out) {
    out->n = 0;
    if (len == 0) return QN_OK;
    if (!frag_push(out, (frag){-1, 0, (uint32_t)len})) return QN_ERR_NOMEM;
    if (v->n_specials == 0) return QN_OK;

    uint64_t *pairs = calloc(1024, sizeof *pairs);
    uint8_t present[256] = {0};
    if (!pairs) return QN_ERR_NOMEM;
    for (size_t i = 0; i < len; i++) {
        present[(uint8_t)text[i]] = 1;
        if (i + 1 < len) {
            const unsigned k = (unsigned)(uint8_t)text[i] << 8 | (uint8_t)text[i + 1];
            pairs[k >> 6] |= 1ull << (k & 63);
        }
    }
    frag_vec next = {0};
    qn_status st = QN_OK;
    for (int32_t k = 0; k < v->n_specials && st == QN_OK; k++) {
        const int32_t id = v->specials[k];
        if (!parse_special && (v->attr[id] & (QN_TOKATTR_CONTROL | QN_TOKATTR_UNKNOWN))) continue;
        const uint8_t *s = (const uint8_t *)qn_vocab_str(v, id);
        const size_t n = v->str_len[id];
        if (n > len || !present[s[0]] || !pairs_present(pairs, s, n)) continue;
        next.n = 0;
        bool hit = false;
        for (size_t f = 0; f < out->n && st == QN_OK; f++) {
            frag x = out->v[f];
            if (x.tok >= 0 || x.len < n) {
                if (!frag_push(&next, x)) st = QN_ERR_NOMEM;
                continue;
            }
            size_t pos = x.off;
            const size_t end = (size_t)x.off + x.len;
            while (pos < end) {
                const char *m = memmem(text + pos, end - pos, s, n);
                if (!m) break;
                const size_t at = (size_t)(m - text);
                hit = true;
                if ((at > pos && !frag_push(&next, (frag){-1, (uint32_t)pos, (uint32_t)(at - pos)})) ||
                    !frag_push(&next, (frag){id, 0, 0})) {
                    st = QN_ERR_NOMEM;
                    break;
                }
                pos = at + n;
            }
            if (st == QN_OK && pos < end && !frag_push(&next, (frag){-1, (uint32_t)pos, (uint32_t)(end - pos)}))
                st = QN_ERR_NOMEM;
        }
        if (hit) {
            frag_vec t = *out;
            *out = next;
            next = t;
        }
    }
    free(next.v);
    free(pairs);
    return st;
}

// ---------------------------------------------------------------------------------------------------------------
// Tokenize
// ---------------------------------------------------------------------------------------------------------------

/* Copy of s[0..n) with every ill-formed UTF-8 sequence replaced by U+FFFD (the BPE pre-tokenizer needs valid
 * UTF-8; llama.cpp replaces invalid bytes the same way before splitting). */
static bool sanitize_utf8(const char *s, size_t n, bytes *out) {
    out->n = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        const size_t k = (uint8_t)s[i] < 0x80 ? 1 : qn_utf8_decode(s + i, n - i, &cp);
        if (k) {
            if (!bytes_put(out, s + i, k)) return false;
            i += k;
        } else {
            if (!bytes_put(out, "\xEF\xBF\xBD", 3)) return false;
            i += qn_utf8_bad_len(s + i, n - i);
        }
    }
    return true;
}

static bool put_escaped(bytes *b, const char *s, size_t n) { /* ' ' -> U+2581 */
    size_t i = 0;
    while (i < n) {
        const char *sp = memchr(s + i, ' ', n - i);
        const size_t j = sp ? (size_t)(sp - s) : n;
        if (!bytes_put(b, s + i, j - i)) return false;
        if (sp && !bytes_put(b, SPM_SPACE, 3)) return false;
        i = sp ? j + 1 : n;
    }
    return true;
}

static bool all_newlines(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != '\n') return false;
    return n > 0;
}

typedef struct tok_work {
    bytes text;  /* sanitized / escaped fragment */
    bytes word;  /* byte-encoded pre-token */
    qn_merge_work merge;
} tok_work;

static qn_status tokenize_bpe_fragment(const qn_vocab *v, const char *s, size_t n, tok_work *w, qn_ids *out) {
    const bool raw = (v->pre_flags & QN_PRETOK_RAW_BYTES) != 0;
    w->text.n = 0;
    if (raw) {
        bytes tmp = {0};
        if (!sanitize_utf8(s, n, &tmp) || !put_escaped(&w->text, tmp.p, tmp.n)) {
            free(tmp.p);
            return QN_ERR_NOMEM;
        }
        free(tmp.p);
    } else if (!qn_utf8_valid(s, n)) {
        if (!sanitize_utf8(s, n, &w->text)) return QN_ERR_NOMEM;
    } else if (!bytes_put(&w->text, s, n)) {
        return QN_ERR_NOMEM;
    }
    const char *t = w->text.p ? w->text.p : "";
    qn_span *spans;
    size_t n_spans;
    qn_status st = qn_pretok_split(v->pretok, t, w->text.n, &spans, &n_spans);
    if (st != QN_OK) return st;
    for (size_t i = 0; i < n_spans && st == QN_OK; i++) {
        const char *word = t + spans[i].off;
        size_t wn = spans[i].len;
        if (!raw) { /* GPT-2 byte alphabet */
            w->word.n = 0;
            for (size_t j = 0; j < wn; j++) {
                const uint8_t b = (uint8_t)word[j];
                if (!bytes_put(&w->word, v->byte_enc[b], v->byte_enc_len[b])) {
                    st = QN_ERR_NOMEM;
                    break;
                }
            }
            if (st != QN_OK) break;
            word = w->word.p;
            wn = w->word.n;
        }
        if ((v->pre_flags & QN_PRETOK_IGNORE_MERGES) || (raw && all_newlines(word, wn))) {
            const int32_t id = qn_vocab_lookup(v, word, wn);
            if (id >= 0 && id < v->n_tokens) {
                if (!qn_ids_push(out, id)) st = QN_ERR_NOMEM;
                continue;
            }
        }
        st = qn_bpe_word(v, word, wn, &w->merge, out);
    }
    free(spans);
    return st;
}

qn_status qn_vocab_tokenize(const qn_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                            int32_t *out, int32_t cap, int32_t *n_out) {
    *n_out = 0;
    if ((len > 0 && !text) || cap < 0 || len > UINT32_MAX) return QN_ERR_INVALID_ARG;
    frag_vec frags = {0};
    qn_ids ids = {0};
    tok_work w = {0};
    qn_status st = partition(v, text, len, parse_special, &frags);
    if (st != QN_OK) goto done;

    if (add_special && v->add_bos && v->bos >= 0 && !qn_ids_push(&ids, v->bos)) {
        st = QN_ERR_NOMEM;
        goto done;
    }
    bool prev_special = true; /* SPM: a space prefix at the start and after each special token */
    for (size_t f = 0; f < frags.n && st == QN_OK; f++) {
        const frag x = frags.v[f];
        if (x.tok >= 0) {
            if (!qn_ids_push(&ids, x.tok)) st = QN_ERR_NOMEM;
            prev_special = true;
            continue;
        }
        if (v->type == QN_VOCAB_TYPE_LLAMA) {
            w.text.n = 0;
            if ((v->add_space_prefix && prev_special && !bytes_put(&w.text, SPM_SPACE, 3)) ||
                !put_escaped(&w.text, text + x.off, x.len)) {
                st = QN_ERR_NOMEM;
                break;
            }
            st = qn_spm_text(v, w.text.p, w.text.n, &w.merge, &ids);
        } else {
            st = tokenize_bpe_fragment(v, text + x.off, x.len, &w, &ids);
        }
        prev_special = false;
    }
    if (st == QN_OK && add_special && v->add_eos && v->eos >= 0 && !qn_ids_push(&ids, v->eos)) st = QN_ERR_NOMEM;
    if (st != QN_OK) goto done;

    if (ids.n > INT32_MAX) {
        st = QN_ERR_OVERFLOW;
        goto done;
    }
    *n_out = (int32_t)ids.n;
    if (ids.n > (size_t)cap) {
        st = QN_ERR_INVALID_ARG;
        goto done;
    }
    if (ids.n) memcpy(out, ids.v, ids.n * sizeof *out);

done:
    free(frags.v);
    free(ids.v);
    free(w.text.p);
    free(w.word.p);
    qn_merge_work_free(&w.merge);
    return st;
}

// ---------------------------------------------------------------------------------------------------------------
// Detokenize
// ---------------------------------------------------------------------------------------------------------------

qn_status qn_vocab_token_to_piece(const qn_vocab *v, int32_t id, char *buf, int32_t cap, int32_t *n, bool special) {
    *n = 0;
    if (id < 0 || id >= v->n_tokens || cap < 0) return QN_ERR_INVALID_ARG;
    if (!special && (v->attr[id] & (QN_TOKATTR_UNKNOWN | QN_TOKATTR_CONTROL))) return QN_OK;
    const uint32_t len = v->piece_len[id];
    *n = (int32_t)len;
    if (len > (uint32_t)cap) return QN_ERR_INVALID_ARG;
    memcpy(buf, v->pieces + v->piece_off[id], len);
    return QN_OK;
}

/* llama.cpp's legacy clean-up of decoded text (tokenizers' clean_up_tokenization_spaces). */
static size_t clean_spaces(char *t, size_t total) {
    if (total == 0) return 0;
    size_t o = 1; /* " ?", " !", " .", " ," lose the space */
    for (size_t i = 1; i < total; i++) {
        const char x = t[i];
        if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) o--;
        t[o++] = x;
    }
    total = o;
    o = 1; /* " ' " -> "'" */
    for (size_t i = 1; i < total; i++) {
        const char x = t[i];
        if (x == '\'' && i + 1 < total && t[i - 1] == ' ' && t[i + 1] == ' ') {
            o--;
            t[++i] = '\0';
        }
        t[o++] = x;
    }
    total = o;
    o = 1; /* " 's", " 'm", " 're", " 've" lose the space */
    for (size_t i = 1; i < total; i++) {
        const char x = t[i];
        if (t[i - 1] == ' ' && x == '\'' && i + 1 < total) {
            const char x1 = t[i + 1];
            if (x1 == 's' || x1 == 'm') {
                o--;
            } else if (x1 != 't' && x1 != 'd' && i + 2 < total) {
                const char x2 = t[i + 2];
                if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) o--;
            }
        }
        t[o++] = x;
    }
    return o;
}

qn_status qn_vocab_detokenize(const qn_vocab *v, const int32_t *ids, int32_t n_ids, char *buf, int32_t cap,
                              int32_t *n_out, bool remove_special, bool unparse_special) {
    *n_out = 0;
    if (n_ids < 0 || cap < 0 || (n_ids > 0 && !ids)) return QN_ERR_INVALID_ARG;
    bool remove_space = v->add_space_prefix;
    if (remove_special && v->add_bos && n_ids > 0 && ids[0] == v->bos) {
        remove_space = false;
        ids++;
        n_ids--;
    }
    if (remove_special && v->add_eos && n_ids > 0 && ids[n_ids - 1] == v->eos) n_ids--;
    bytes t = {0};
    for (int32_t i = 0; i < n_ids; i++) {
        const int32_t id = ids[i];
        if (id < 0 || id >= v->n_tokens) {
            free(t.p);
            return QN_ERR_INVALID_ARG;
        }
        const bool hidden = !unparse_special && (v->attr[id] & (QN_TOKATTR_UNKNOWN | QN_TOKATTR_CONTROL));
        const char *p = v->pieces + v->piece_off[id];
        size_t n = hidden ? 0 : v->piece_len[id];
        if (remove_space && n > 0 && p[0] == ' ') p++, n--;
        remove_space = false;
        if (n && !bytes_put(&t, p, n)) {
            free(t.p);
            return QN_ERR_NOMEM;
        }
    }
    size_t total = t.n;
    if (v->pre_flags & QN_PRETOK_CLEAN_SPACES) total = clean_spaces(t.p, total);
    if (total > INT32_MAX) {
        free(t.p);
        return QN_ERR_OVERFLOW;
    }
    *n_out = (int32_t)total;
    if (total > (size_t)cap) {
        free(t.p);
        return QN_ERR_INVALID_ARG;
    }
    if (total) memcpy(buf, t.p, total);
    free(t.p);
    return QN_OK;
}
