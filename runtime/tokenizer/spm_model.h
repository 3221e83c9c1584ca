/* spm_model.h — SentencePiece's tokenizer.model, a serialized ModelProto (protobuf wire format), for
 * `quern convert` and `quern export-hf`. The reader takes what llama.cpp's converter takes from it: the
 * pieces {piece = 1, score = 2, type = 3} of field 1, nothing else. The writer adds the trainer_spec
 * (model_type BPE, byte_fallback, unk/bos/eos/pad ids and pieces) and normalizer_spec (identity, dummy
 * prefix, whitespace escaped, extra whitespace kept) that the sentencepiece library and transformers'
 * LlamaTokenizer need to load it as Llama-2's. Strict: a truncated, overlong or mistyped field is an
 * error naming the file and the field, never a crash. Owns the pieces it reads. */
#ifndef QN_SPM_MODEL_H
#define QN_SPM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quern.h"

/* SentencePiece's ModelProto.SentencePiece.Type; the same numbers as QN_TOKEN_TYPE_* (vocab.h). */
enum {
    QN_SPM_TYPE_NORMAL = 1,
    QN_SPM_TYPE_UNKNOWN = 2,
    QN_SPM_TYPE_CONTROL = 3,
    QN_SPM_TYPE_USER_DEFINED = 4,
    QN_SPM_TYPE_UNUSED = 5,
    QN_SPM_TYPE_BYTE = 6,
};

typedef struct qn_spm_piece {
    const char *text;  /* [len] bytes; read: NUL-terminated, owned by the qn_spm_model */
    uint32_t len;
    float score;
    int32_t type;      /* QN_SPM_TYPE_*; read: as the file says (absent: NORMAL), any int32 */
} qn_spm_piece;

typedef struct qn_spm_model {
    qn_spm_piece *pieces;  /* [n_pieces] */
    int64_t n_pieces;
    char *text;            /* read: every piece's text, NUL-terminated, back to back */
    /* write only: trainer_spec / normalizer_spec values; ids -1 = none */
    int32_t unk_id, bos_id, eos_id, pad_id;
    bool byte_fallback;    /* every <0xXX> piece is present as BYTE */
    bool add_dummy_prefix; /* SentencePiece prepends U+2581 to the text */
} qn_spm_model;

/* --- reading --- */

/* Parses buf[len] (label names it in errors). On success *m owns the pieces; on failure *m is empty. */
qn_status qn_spm_model_parse(const void *buf, size_t len, const char *label, qn_spm_model *m, qn_error *err);
qn_status qn_spm_model_read(const char *path, qn_spm_model *m, qn_error *err);
void qn_spm_model_free(qn_spm_model *m); /* of a model read or parsed; an empty one is a no-op */

/* --- writing --- */

/* Serializes m (pieces borrowed) into a malloc'ed buffer, owned by the caller. */
qn_status qn_spm_model_serialize(const qn_spm_model *m, uint8_t **buf, size_t *len, qn_error *err);

#endif
