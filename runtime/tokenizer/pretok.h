/* pretok.h — BPE pre-tokenizers keyed by tokenizer.ggml.pre (formats.md §1.3).
 * Owns: the compiled PCRE2 patterns of one pre-tokenizer family (compiled once, UTF + UCP, JIT) and the
 * per-family flags the vocabulary needs. Splitting is thread-safe: match data is created per call.
 * Semantics: the patterns run in sequence; each one splits every current fragment into its matches and the
 * unmatched gaps between them (both kept), and a pattern never sees past its fragment's ends. */
#ifndef QN_TOK_PRETOK_H
#define QN_TOK_PRETOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quern.h"

typedef struct qn_pretok qn_pretok;

/* Per-family behaviour (llama.cpp applies the same per pre-tokenizer id). */
enum {
    QN_PRETOK_CLEAN_SPACES = 1 << 0,  /* detokenize removes " ," " ." " 's" ... (legacy GPT-2 cleanup) */
    QN_PRETOK_IGNORE_MERGES = 1 << 1, /* a pre-token that is itself a token is emitted without merging */
    QN_PRETOK_ADD_BOS = 1 << 2,       /* default for add_bos when the file does not say */
    QN_PRETOK_RAW_BYTES = 1 << 3,     /* no GPT-2 byte alphabet; spaces become U+2581 (SPM-style BPE) */
};

/* A byte range of the text handed to qn_pretok_split. */
typedef struct qn_span {
    uint32_t off;
    uint32_t len;
} qn_span;

/* --- lifecycle --- */
/* name: a tokenizer.ggml.pre value; NULL or "" means "default". QN_ERR_UNSUPPORTED for ids that need more than
 * regex splitting (or that we do not know), with the id in the message. */
qn_status qn_pretok_create(const char *name, qn_pretok **out, qn_error *err);
void qn_pretok_destroy(qn_pretok *p); /* NULL is a no-op */

/* --- queries --- */
unsigned qn_pretok_flags(const qn_pretok *p);
const char *qn_pretok_family(const qn_pretok *p); /* canonical family name, e.g. "llama3" */
/* True when name is a pre-tokenizer id qn_pretok_create accepts. */
bool qn_pretok_known(const char *name);
/* Flags of a known id without compiling anything (0 for unknown ids). */
unsigned qn_pretok_flags_of(const char *name);

/* --- splitting --- */
/* Splits text[0..len) (well-formed UTF-8; callers sanitize first) into *spans (malloc'd, caller frees), in order
 * and covering the whole text; empty spans are dropped. QN_ERR_NOMEM or QN_ERR_INTERNAL (PCRE2 failure). */
qn_status qn_pretok_split(const qn_pretok *p, const char *text, size_t len, qn_span **spans, size_t *n_spans);

#endif
