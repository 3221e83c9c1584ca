/* vocab.h — tokenizer vocabularies: byte-level BPE (tokenizer.ggml.model "gpt2"), SentencePiece BPE with scores
 * and byte fallback ("llama") and SPM-style BPE on raw UTF-8 ("gemma4").
 * Owns: token texts, scores, types, the string -> id and merge-pair -> rank maps, the pre-tokenizer, the decoded
 * piece of every token and the special-token table. Built from plain arrays (qn_vocab_params) or from GGUF
 * metadata (formats.md §1.3); immutable after creation, so every query and qn_vocab_tokenize may run on many
 * threads at once. Does not own: chat templates (chat_template.h), sampling, stop strings.
 * Behaviour follows llama.cpp's llama-vocab.cpp (the reference its test vectors were made for). */
#ifndef QN_TOK_VOCAB_H
#define QN_TOK_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qn_vocab qn_vocab;
typedef struct qn_gguf qn_gguf;

typedef enum qn_vocab_type {
    QN_VOCAB_TYPE_GPT2 = 1,   /* byte-level BPE: merges + pre-tokenizer regexes + GPT-2 byte alphabet */
    QN_VOCAB_TYPE_LLAMA = 2,  /* SentencePiece BPE: scores, U+2581 for spaces, <0xXX> byte fallback */
    QN_VOCAB_TYPE_GEMMA4 = 3, /* BPE merges on raw UTF-8, U+2581 for spaces, <0xXX> byte fallback */
} qn_vocab_type;

/* tokenizer.ggml.token_type values */
typedef enum qn_token_type {
    QN_TOKEN_TYPE_UNDEFINED = 0,
    QN_TOKEN_TYPE_NORMAL = 1,
    QN_TOKEN_TYPE_UNKNOWN = 2,
    QN_TOKEN_TYPE_CONTROL = 3,
    QN_TOKEN_TYPE_USER_DEFINED = 4,
    QN_TOKEN_TYPE_UNUSED = 5,
    QN_TOKEN_TYPE_BYTE = 6,
} qn_token_type;

/* Everything a vocabulary is made of, as plain arrays (borrowed: copied by qn_vocab_create). */
typedef struct qn_vocab_params {
    qn_vocab_type type;
    const char *pre;                 /* tokenizer.ggml.pre (gpt2 only); NULL or "" = "default" */
    int32_t n_tokens;
    const char *const *tokens;       /* [n_tokens] token text (gpt2: in the byte alphabet) */
    const uint32_t *token_lens;      /* [n_tokens] byte lengths, or NULL when the texts are NUL-terminated */
    const float *scores;             /* [n_tokens] SPM scores, or NULL (all 0) */
    const int32_t *token_types;      /* [n_tokens] qn_token_type, or NULL (all normal) */
    int32_t n_merges;
    const char *const *merges;       /* [n_merges] "left right", rank = index (gpt2, gemma4) */
    const uint32_t *merge_lens;      /* [n_merges] byte lengths, or NULL when NUL-terminated */
    int32_t bos, eos, eot, eom, unk, pad; /* special ids, -1 = absent; eot/eom are also found by text when -1 */
    bool add_bos, add_eos;           /* what tokenize adds when add_special is true */
    bool add_space_prefix;           /* SPM: a space before the text and after every special token */
} qn_vocab_params;

/* --- lifecycle --- */
/* QN_ERR_INVALID_ARG for inconsistent params (ids out of range, missing merges), QN_ERR_UNSUPPORTED for an
 * unknown pre-tokenizer, QN_ERR_NOMEM. */
qn_status qn_vocab_create(const qn_vocab_params *p, qn_vocab **out, qn_error *err);
/* Reads the tokenizer.* keys of formats.md §1.3 with llama.cpp's defaults (SPM: bos 1, eos 2, unk 0, add_bos and
 * add_space_prefix on; BPE: add_bos per pre-tokenizer). QN_ERR_UNSUPPORTED names the model type for bert, t5,
 * rwkv, plamo2, no_vocab...; QN_ERR_FORMAT for missing or mistyped keys. The vocab does not reference g. */
qn_status qn_vocab_from_gguf(const qn_gguf *g, qn_vocab **out, qn_error *err);
void qn_vocab_destroy(qn_vocab *v); /* NULL is a no-op */

/* --- queries --- */
int32_t qn_vocab_n_tokens(const qn_vocab *v);
qn_vocab_type qn_vocab_get_type(const qn_vocab *v);
int32_t qn_vocab_bos(const qn_vocab *v); /* -1 when absent */
int32_t qn_vocab_eos(const qn_vocab *v);
int32_t qn_vocab_eot(const qn_vocab *v);
int32_t qn_vocab_eom(const qn_vocab *v);
int32_t qn_vocab_unk(const qn_vocab *v);
int32_t qn_vocab_pad(const qn_vocab *v);
bool qn_vocab_add_bos(const qn_vocab *v);
bool qn_vocab_add_eos(const qn_vocab *v);
/* End of generation: eos, eot, eom and control tokens such as <|im_end|>, <|eot_id|>, <|end_of_text|>,
 * <end_of_turn>, <|endoftext|> when the vocabulary has them. False for ids out of range. */
bool qn_vocab_is_eog(const qn_vocab *v, int32_t id);
/* Stored token text (NUL-terminated, valid while v lives), or NULL for ids out of range. */
const char *qn_vocab_token_text(const qn_vocab *v, int32_t id);
qn_token_type qn_vocab_token_type(const qn_vocab *v, int32_t id); /* after llama.cpp's fix-ups */
/* Id of the token whose text is exactly s[0..n), or -1. */
int32_t qn_vocab_find(const qn_vocab *v, const char *s, size_t n);
/* True when detokenization applies llama.cpp's legacy clean-up (" ," -> ",", " 's" -> "'s", ...); set per
 * pre-tokenizer id, never for SPM. */
bool qn_vocab_clean_spaces(const qn_vocab *v);
/* Pre-tokenizer family in use ("llama3", "gpt2", ...), or "spm". */
const char *qn_vocab_pre_family(const qn_vocab *v);

/* --- text -> tokens --- */
/* Tokenizes text[0..len) into out[0..cap). add_special: prepend bos / append eos as add_bos / add_eos say.
 * parse_special: control tokens written in the text (e.g. "<|im_start|>") become their ids; user-defined tokens
 * are always matched. Returns QN_ERR_INVALID_ARG with the needed count in *n_out when cap is too small (out may
 * be NULL with cap 0 to ask for the count), QN_ERR_NOMEM, or QN_OK with the count in *n_out. The count never
 * exceeds 3 * len + 2 (an ill-formed byte becomes U+FFFD, which may take three byte tokens). */
qn_status qn_vocab_tokenize(const qn_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                            int32_t *out, int32_t cap, int32_t *n_out);

/* --- tokens -> text --- */
/* The bytes of one token (not NUL-terminated; possibly a partial UTF-8 sequence): gpt2 maps the byte alphabet
 * back, SPM turns U+2581 into spaces and <0xXX> into the byte. Control and unknown tokens give their text when
 * special is true and nothing otherwise. QN_ERR_INVALID_ARG for a bad id, or with the needed count in *n when
 * cap is too small. */
qn_status qn_vocab_token_to_piece(const qn_vocab *v, int32_t id, char *buf, int32_t cap, int32_t *n, bool special);
/* Whole-sequence detokenization as llama.cpp's llama_detokenize: concatenated pieces, the SPM leading space
 * removed, and the legacy " ," / " 's" clean-up for pre-tokenizers that ask for it. remove_special drops a leading
 * bos / trailing eos that add_special would have added; unparse_special renders control tokens. Result is not
 * NUL-terminated; QN_ERR_INVALID_ARG with the needed count in *n_out when cap is too small. */
qn_status qn_vocab_detokenize(const qn_vocab *v, const int32_t *ids, int32_t n_ids, char *buf, int32_t cap,
                              int32_t *n_out, bool remove_special, bool unparse_special);

/* --- streaming detokenizer --- */
/* Turns a token stream into text that never ends inside a UTF-8 code point: bytes of an incomplete sequence are
 * held back until the sequence completes; an ill-formed sequence is emitted as U+FFFD once it is proven invalid
 * (its maximal prefix per Unicode §3.9), and a still-incomplete tail becomes U+FFFD at flush. In-place struct
 * (init/flush), no allocation; one per output stream. */
typedef struct qn_detok {
    const qn_vocab *vocab; /* borrowed */
    bool special;          /* render control tokens as their text */
    uint8_t n_pend;        /* bytes held in pend (0..3) */
    uint8_t need;          /* total length of the held sequence (2..4), 0 when nothing is held */
    uint8_t pend[4];
} qn_detok;

void qn_detok_init(qn_detok *d, const qn_vocab *v, bool special);
/* Appends the text token id completes to out[0..cap) and sets *n_out. Worst case needs 3 * (piece + 4) bytes.
 * QN_ERR_INVALID_ARG (state untouched) for a bad id or, with the needed count in *n_out, when cap is too small. */
qn_status qn_detok_feed(qn_detok *d, int32_t id, char *out, int32_t cap, int32_t *n_out);
/* Same for raw bytes (also what qn_detok_feed does with a token's piece). */
qn_status qn_detok_feed_bytes(qn_detok *d, const char *bytes, size_t len, char *out, int32_t cap, int32_t *n_out);
/* Emits U+FFFD for a held incomplete sequence (needs at most 3 bytes) and resets the state. */
qn_status qn_detok_flush(qn_detok *d, char *out, int32_t cap, int32_t *n_out);

#ifdef __cplusplus
}
#endif
#endif
