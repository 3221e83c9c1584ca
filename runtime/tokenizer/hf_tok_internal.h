/* hf_tok_internal.h — what hf_tokenizer.c (the module, byte-level BPE) and hf_tokenizer_spm.c
 * (SentencePiece) share: file helpers, the GGUF tokenizer keys as a view, the tokenizer.json pieces
 * both write, and gguf-py's SpecialVocab. Not part of the public API. */
#ifndef QN_HF_TOK_INTERNAL_H
#define QN_HF_TOK_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quern.h"

typedef struct qn_gguf qn_gguf;
typedef struct qn_gguf_writer qn_gguf_writer;

/* --- files --- */

/* dir/name written as dir/name.tmp, then renamed */
qn_status qn_hf_write_file(const char *dir, const char *name, const void *data, size_t len, qn_error *err);
qn_status qn_hf_dump_json(json_t *j, const char *dir, const char *name, qn_error *err);
/* Loads dir/name; *out NULL (and QN_OK) when absent and optional. */
qn_status qn_hf_load_json(const char *dir, const char *name, bool required, json_t **out, qn_error *err);

/* --- export: the GGUF's tokenizer keys --- */

typedef struct qn_hf_gguf_vocab {
    const qn_gguf *g;        /* borrowed */
    const char *path;
    int64_t ti;              /* key index of tokenizer.ggml.tokens */
    int64_t n;               /* tokens */
    const uint8_t *types;    /* [n] int32 (tokenizer.ggml.token_type), NULL: all NORMAL */
    const uint8_t *scores;   /* [n] f32 (tokenizer.ggml.scores), NULL: all 0 */
    char *bos, *eos, *unk, *pad; /* token texts (owned), NULL when absent */
    int64_t bos_id, eos_id, unk_id, pad_id; /* -1 when absent */
    int add_bos, add_eos, add_sep; /* tokenizer.ggml.add_{bos,eos,sep}_token; -1 absent */
    int add_space;                 /* tokenizer.ggml.add_space_prefix; -1 absent */
} qn_hf_gguf_vocab;

qn_status qn_hf_gguf_vocab_open(const qn_gguf *g, qn_hf_gguf_vocab *v, qn_error *err);
void qn_hf_gguf_vocab_close(qn_hf_gguf_vocab *v);
int32_t qn_hf_gguf_vocab_type(const qn_hf_gguf_vocab *v, int64_t id);
float qn_hf_gguf_vocab_score(const qn_hf_gguf_vocab *v, int64_t id);

/* Fills vocab {text: id} (without the "[PAD<id>]" UNUSED padding converters invent), added (tokenizer.json
 * added_tokens: control, user-defined and unknown tokens) and decoder_added (tokenizer_config.json
 * added_tokens_decoder). spm: decoder_added holds only the tokens llama.cpp's SentencePiece reader takes
 * back unchanged from it (hf_tokenizer_spm.c); otherwise every added token. */
qn_status qn_hf_vocab_json(const qn_hf_gguf_vocab *v, bool spm, json_t *vocab, json_t *added,
                           json_t *decoder_added, qn_error *err);

/* A TemplateProcessing adding bos / eos as the GGUF says (and, between a pair, add_sep as it says); NULL when
 * it adds neither. */
json_t *qn_hf_template_processor(const qn_hf_gguf_vocab *v);

/* What an export writes besides the GGUF's own keys. */
typedef struct qn_hf_tok_files {
    json_t *tok;                 /* tokenizer.json (NULL: out of memory) */
    json_t *decoder_added;       /* tokenizer_config.json's added_tokens_decoder */
    const char *tokenizer_class; /* tokenizer_config.json's */
    bool clean;                  /* clean_up_tokenization_spaces */
    bool legacy;                 /* write "legacy": true (transformers' Llama tokenizers) */
    const uint8_t *model;        /* tokenizer.model bytes [model_len], or NULL */
    size_t model_len;
} qn_hf_tok_files;

/* Writes dir/tokenizer.model (when f->model), dir/tokenizer.json and dir/tokenizer_config.json (from v's keys
 * and f); takes over f->tok and f->decoder_added whatever happens. */
qn_status qn_hf_write_tokenizer(const qn_hf_gguf_vocab *v, int64_t n_ctx, const char *dir, const qn_hf_tok_files *f,
                                qn_error *err);

/* --- import --- */

/* llama.cpp's does_token_look_special: added tokens some models forget to mark special */
bool qn_hf_looks_special(const char *t);

/* tokenizer.json's added_tokens[i] (a): its content and id, checked against n_vocab (errors name path). */
qn_status qn_hf_added_token(json_t *a, size_t i, int64_t n_vocab, const char *path, const char **content,
                            int64_t *id, qn_error *err);

/* tokenizer.ggml.add_space_prefix from tokenizer_config.json's add_prefix_space, when want (llama.cpp
 * writes it for the llama architecture) and the file has it. */
qn_status qn_hf_put_add_space_prefix(qn_gguf_writer *w, json_t *tcfg, bool want, qn_error *err);

/* --- SentencePiece (hf_tokenizer_spm.c) --- */

/* tokenizer.model, tokenizer.json (BPE with byte_fallback) and tokenizer_config.json in dir. */
qn_status qn_hf_spm_export(const qn_hf_gguf_vocab *v, int64_t n_ctx, const char *dir, qn_error *err);

/* Whether the import goes the SentencePiece way: dir has tokenizer.model, or tok (may be NULL) is a BPE
 * model with byte_fallback. */
bool qn_hf_spm_applies(const char *dir, json_t *tok);

/* The vocabulary keys (add_space_prefix, model, pre, tokens, scores, token_type) as llama.cpp's
 * _set_vocab_sentencepiece (tokenizer.model) or _set_vocab_llama_hf (tokenizer.json) write them. */
qn_status qn_hf_spm_import_vocab(const char *dir, json_t *tok, json_t *tcfg, int64_t n_vocab, bool add_space_prefix,
                                 qn_gguf_writer *w, qn_error *err);

#endif
