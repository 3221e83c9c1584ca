/* tok_internal.h — the qn_vocab layout and the helpers shared by vocab.c, bpe.c, spm.c, detok.c and
 * vocab_gguf.c. Not part of the public API. */
#ifndef QN_TOK_INTERNAL_H
#define QN_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/pretok.h"
#include "tokenizer/vocab.h"

/* Token attributes after llama.cpp's fix-ups (a token can be e.g. NORMAL | CONTROL). */
enum {
    QN_TOKATTR_UNKNOWN = 1 << 0,
    QN_TOKATTR_UNUSED = 1 << 1,
    QN_TOKATTR_NORMAL = 1 << 2,
    QN_TOKATTR_CONTROL = 1 << 3,
    QN_TOKATTR_USER_DEFINED = 1 << 4,
    QN_TOKATTR_BYTE = 1 << 5,
    QN_TOKATTR_EOG = 1 << 6, /* ours: ends generation */
};

struct qn_vocab {
    qn_vocab_type type;
    int32_t n_tokens;     /* real tokens: ids [0, n_tokens) */
    int32_t n_strs;       /* n_tokens + strings only named by merges (ids >= n_tokens, never emitted) */
    int32_t cap_strs;
    char *arena;          /* every string, NUL-terminated, back to back */
    size_t arena_len, arena_cap;
    uint32_t *str_off;    /* [n_strs] offset into arena */
    uint32_t *str_len;    /* [n_strs] byte length */
    float *scores;        /* [n_tokens] */
    uint8_t *attr;        /* [n_tokens] QN_TOKATTR_* */

    int32_t *map;         /* [map_mask + 1] open addressing: string -> id, -1 = empty slot */
    uint32_t map_mask;

    uint64_t *pair_key;   /* [pair_mask + 1] ((left << 32) | right) + 1; 0 = empty slot */
    int32_t *pair_rank;   /* [pair_mask + 1] merge rank (index in tokenizer.ggml.merges) */
    int32_t *pair_merged; /* [pair_mask + 1] string id of left + right */
    uint32_t pair_mask;
    int32_t n_pairs;

    char *pieces;         /* decoded bytes of every token (special = true), back to back */
    uint32_t *piece_off;  /* [n_tokens] */
    uint32_t *piece_len;  /* [n_tokens] */

    int32_t *specials;    /* control / user-defined / unknown ids, longest text first (ties: lower id first) */
    int32_t n_specials;

    int32_t byte_tok[256];      /* SPM / raw-byte BPE: <0xXX> token (else the 1-byte token) per byte, -1 */
    char byte_enc[256][2];      /* gpt2: UTF-8 of each byte's alphabet code point (1 or 2 bytes) */
    uint8_t byte_enc_len[256];

    int32_t bos, eos, eot, eom, unk, pad;
    bool add_bos, add_eos, add_space_prefix;
    unsigned pre_flags;   /* QN_PRETOK_* (0 for SPM) */
    qn_pretok *pretok;    /* NULL for SPM */
};

/* --- string table --- */
/* Id of the string s[0..n) (real or merge-only), or -1. */
int32_t qn_vocab_lookup(const qn_vocab *v, const char *s, size_t n);
static inline const char *qn_vocab_str(const qn_vocab *v, int32_t id) { return v->arena + v->str_off[id]; }

/* --- growable id list --- */
typedef struct qn_ids {
    int32_t *v;
    size_t n, cap;
} qn_ids;
bool qn_ids_push(qn_ids *a, int32_t x);

/* --- the two merge algorithms --- */
/* Scratch reused across the words of one tokenize call. */
typedef struct qn_merge_work {
    void *sym;
    size_t sym_cap;
    void *heap;
    size_t heap_cap;
} qn_merge_work;
void qn_merge_work_free(qn_merge_work *w);

/* BPE on one pre-token w[0..n) (already in the vocab's alphabet): lowest merge rank first, leftmost on ties. */
qn_status qn_bpe_word(const qn_vocab *v, const char *w, size_t n, qn_merge_work *wk, qn_ids *out);
/* SentencePiece BPE on s[0..n) (spaces already U+2581): highest-scoring adjacent pair that is a token first,
 * leftmost on ties; leftover symbols fall back to byte tokens. */
qn_status qn_spm_text(const qn_vocab *v, const char *s, size_t n, qn_merge_work *wk, qn_ids *out);


/* Defines heap_push/heap_pop for a binary heap of T in an array, ordered by BEFORE(const T *, const T *):
 * the element that comes first pops first. Used by the BPE (merge rank) and SPM (score) merge loops. */
#define QN_TOK_DEF_HEAP(T, BEFORE)                                        \
    static void heap_push(T *h, size_t *n, T c) {                         \
        size_t i = (*n)++;                                                \
        while (i > 0) {                                                   \
            const size_t p = (i - 1) / 2;                                 \
            if (!BEFORE(&c, &h[p])) break;                                \
            h[i] = h[p];                                                  \
            i = p;                                                        \
        }                                                                 \
        h[i] = c;                                                         \
    }                                                                     \
    static T heap_pop(T *h, size_t *n) {                                  \
        const T top = h[0];                                               \
        const T last = h[--(*n)];                                         \
        size_t i = 0;                                                     \
        for (;;) {                                                        \
            size_t c = 2 * i + 1;                                         \
            if (c >= *n) break;                                           \
            if (c + 1 < *n && BEFORE(&h[c + 1], &h[c])) c++;              \
            if (!BEFORE(&h[c], &last)) break;                             \
            h[i] = h[c];                                                  \
            i = c;                                                        \
        }                                                                 \
        if (*n > 0) h[i] = last;                                          \
        return top;                                                       \
    }

#endif
