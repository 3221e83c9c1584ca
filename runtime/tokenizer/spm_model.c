/* spm_model.c — tokenizer.model <-> qn_spm_model (contract in spm_model.h). Only the protobuf wire format
 * itself: a field is a varint key (number << 3 | wire type) then a varint (0), 8 bytes (1), a varint
 * length and that many bytes (2) or 4 bytes (5), all little-endian. Fields the reader does not use are
 * skipped, but their framing is still checked. Field numbers are those of sentencepiece_model.proto. */
#include "tokenizer/spm_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PB_VARINT = 0, PB_FIXED64 = 1, PB_LEN = 2, PB_FIXED32 = 5 };

/* ModelProto */
enum { PB_MODEL_PIECES = 1, PB_MODEL_TRAINER_SPEC = 2, PB_MODEL_NORMALIZER_SPEC = 3 };
/* ModelProto.SentencePiece */
enum { PB_PIECE_PIECE = 1, PB_PIECE_SCORE = 2, PB_PIECE_TYPE = 3 };
/* TrainerSpec */
enum {
    PB_TRAINER_MODEL_TYPE = 3, PB_TRAINER_VOCAB_SIZE = 4, PB_TRAINER_BYTE_FALLBACK = 35, PB_TRAINER_UNK_ID = 40,
    PB_TRAINER_BOS_ID = 41, PB_TRAINER_EOS_ID = 42, PB_TRAINER_PAD_ID = 43, PB_TRAINER_UNK_PIECE = 45,
    PB_TRAINER_BOS_PIECE = 46, PB_TRAINER_EOS_PIECE = 47, PB_TRAINER_PAD_PIECE = 48,
};
enum { PB_TRAINER_MODEL_BPE = 2 };
/* NormalizerSpec */
enum { PB_NORM_NAME = 1, PB_NORM_ADD_DUMMY_PREFIX = 3, PB_NORM_REMOVE_EXTRA_WS = 4, PB_NORM_ESCAPE_WS = 5 };

/* ------------------------------------------------------------------------------------------------ */
/* reading                                                                                          */

typedef struct pb_field {
    uint32_t num;
    int wire;
    uint64_t v;              /* PB_VARINT, PB_FIXED64, PB_FIXED32 */
    const uint8_t *data;     /* PB_LEN: [len] bytes */
    size_t len;
} pb_field;

/* 0 ok, 1 truncated, 2 longer than 10 bytes or past 64 bits */
static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) {
        if (*p >= end) return 1;
        const uint8_t b = *(*p)++;
        if (i == 9 && b > 1) return 2;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return 2;
}

static uint64_t load_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Reads the field at *p into f; NULL, or what is wrong with it. */
static const char *pb_next(const uint8_t **p, const uint8_t *end, pb_field *f) {
    static const char *const varint_err[3] = {NULL, "truncated varint", "overlong varint (over 10 bytes / 64 bits)"};
    uint64_t key, n;
    int r = pb_varint(p, end, &key);
    if (r) return r == 1 ? "truncated field key" : "overlong field key";
    if (key >> 3 == 0 || key >> 3 > 0x1fffffff) return "field number 0 or above 2^29 - 1";
    f->num = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    f->data = NULL;
    f->len = 0;
    switch (f->wire) {
    case PB_VARINT:
        return varint_err[pb_varint(p, end, &f->v)];
    case PB_FIXED64:
    case PB_FIXED32: {
        const int size = f->wire == PB_FIXED64 ? 8 : 4;
        if (end - *p < size) return f->wire == PB_FIXED64 ? "truncated fixed64" : "truncated fixed32";
        f->v = load_le(*p, size);
        *p += size;
        return NULL;
    }
    case PB_LEN:
        if ((r = pb_varint(p, end, &n))) return r == 1 ? "truncated length" : "overlong length varint";
        if (n > (uint64_t)(end - *p)) return "length runs past the end of its message";
        f->data = *p;
        f->len = (size_t)n;
        *p += n;
        return NULL;
    case 3:
    case 4:
        return "group (wire type 3/4), which sentencepiece_model.proto does not use";
    default:
        return "invalid wire type 6/7";
    }
}

static const char *const WIRE_NAME[6] = {"varint", "fixed64", "length-delimited", "start-group", "end-group",
                                         "fixed32"};

/* One SentencePiece message into pc; text copied to *text (NUL-terminated). */
static qn_status parse_piece(const uint8_t *p, const uint8_t *end, const char *label, int64_t i, qn_spm_piece *pc,
                             char **text, qn_error *err) {
    static const char *const names[4] = {"", "piece", "score", "type"};
    static const int wires[4] = {0, PB_LEN, PB_FIXED32, PB_VARINT};
    const uint8_t *txt = NULL;
    size_t txt_len = 0;
    const uint8_t *const start = p;
    *pc = (qn_spm_piece){.score = 0.0f, .type = QN_SPM_TYPE_NORMAL};
    while (p < end) {
        pb_field f;
        const size_t at = (size_t)(p - start);
        const char *bad = pb_next(&p, end, &f);
        if (bad)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'pieces[%lld]', byte %zu of it: %s", label,
                                (long long)i, at, bad);
        if (f.num > 3) continue;
        if (f.wire != wires[f.num])
            return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'pieces[%lld].%s': wire type %s, expected %s", label,
                                (long long)i, names[f.num], WIRE_NAME[f.wire], WIRE_NAME[wires[f.num]]);
        if (f.num == PB_PIECE_PIECE) {
            txt = f.data;
            txt_len = f.len;
        } else if (f.num == PB_PIECE_SCORE) {
            const uint32_t bits = (uint32_t)f.v;
            memcpy(&pc->score, &bits, 4);
        } else {
            pc->type = (int32_t)(uint32_t)f.v; /* an int32 enum is sign-extended to 64 bits on the wire */
        }
    }
    if (!txt_len)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'pieces[%lld].piece' is missing or empty", label,
                            (long long)i);
    if (memchr(txt, 0, txt_len) || txt_len > UINT32_MAX)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'pieces[%lld].piece' holds a NUL byte or is too long",
                            label, (long long)i);
    memcpy(*text, txt, txt_len);
    (*text)[txt_len] = '\0';
    pc->text = *text;
    pc->len = (uint32_t)txt_len;
    *text += txt_len + 1;
    return QN_OK;
}

qn_status qn_spm_model_parse(const void *buf, size_t len, const char *label, qn_spm_model *m, qn_error *err) {
    memset(m, 0, sizeof *m);
    const uint8_t *const start = buf, *const end = start + len, *p = start;
    int64_t n = 0;
    while (p < end) { /* pass 1: frame every top-level field, count the pieces */
        pb_field f;
        const size_t at = (size_t)(p - start);
        const char *bad = pb_next(&p, end, &f);
        if (bad) return qn_error_set(err, QN_ERR_FORMAT, "%s: top-level field at byte %zu: %s", label, at, bad);
        if (f.num == PB_MODEL_PIECES && f.wire != PB_LEN)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'pieces' at byte %zu: wire type %s, expected "
                                "length-delimited", label, at, WIRE_NAME[f.wire]);
        n += f.num == PB_MODEL_PIECES;
    }
    if (n == 0) return qn_error_set(err, QN_ERR_FORMAT, "%s: field 'pieces': none (not a SentencePiece model?)", label);
    m->pieces = calloc((size_t)n, sizeof *m->pieces);
    m->text = malloc(len + 1); /* each piece's text plus its NUL fits in its own field's bytes */
    if (!m->pieces || !m->text) {
        qn_spm_model_free(m);
        return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory (%lld pieces)", label, (long long)n);
    }
    char *text = m->text;
    for (p = start; p < end;) {
        pb_field f;
        pb_next(&p, end, &f); /* checked in pass 1 */
        if (f.num != PB_MODEL_PIECES) continue;
        const qn_status st =
            parse_piece(f.data, f.data + f.len, label, m->n_pieces, &m->pieces[m->n_pieces], &text, err);
        if (st != QN_OK) {
            qn_spm_model_free(m);
            return st;
        }
        m->n_pieces++;
    }
    m->unk_id = m->bos_id = m->eos_id = m->pad_id = -1;
    return QN_OK;
}

qn_status qn_spm_model_read(const char *path, qn_spm_model *m, qn_error *err) {
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f) return qn_error_set(err, errno == ENOENT ? QN_ERR_NOT_FOUND : QN_ERR_IO, "%s: %s", path, strerror(errno));
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || size > (1L << 30) || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return qn_error_set(err, QN_ERR_FORMAT, "%s: unreadable, or larger than 1 GiB", path);
    }
    uint8_t *buf = malloc((size_t)size + 1);
    const bool ok = buf && fread(buf, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    qn_status st = ok ? qn_spm_model_parse(buf, (size_t)size, path, m, err)
                      : qn_error_set(err, buf ? QN_ERR_IO : QN_ERR_NOMEM, "%s: cannot read %ld bytes", path, size);
    free(buf);
    return st;
}

void qn_spm_model_free(qn_spm_model *m) {
    free(m->pieces);
    free(m->text);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------------------------------------ */
/* writing                                                                                          */

typedef struct pb_buf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} pb_buf;

static void put_bytes(pb_buf *b, const void *data, size_t len) {
    if (b->oom) return;
    if (b->n + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (len) memcpy(b->p + b->n, data, len);
    b->n += len;
}

static void put_varint(pb_buf *b, uint64_t v) {
    uint8_t tmp[10];
    int n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put_bytes(b, tmp, (size_t)n);
}

static void put_key(pb_buf *b, uint32_t num, int wire) { put_varint(b, (uint64_t)num << 3 | (uint64_t)wire); }

static void put_len(pb_buf *b, uint32_t num, const void *data, size_t len) {
    put_key(b, num, PB_LEN);
    put_varint(b, len);
    put_bytes(b, data, len);
}

static void put_int(pb_buf *b, uint32_t num, int64_t v) { /* int32 / enum / bool: negatives take 10 bytes */
    put_key(b, num, PB_VARINT);
    put_varint(b, (uint64_t)v);
}

static void put_float(pb_buf *b, uint32_t num, float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    const uint8_t le[4] = {(uint8_t)bits, (uint8_t)(bits >> 8), (uint8_t)(bits >> 16), (uint8_t)(bits >> 24)};
    put_key(b, num, PB_FIXED32);
    put_bytes(b, le, 4);
}

/* trainer_spec id and piece of a special token; -1 and the proto default piece when absent */
static void put_special(pb_buf *b, const qn_spm_model *m, int32_t id, uint32_t id_field, uint32_t piece_field) {
    put_int(b, id_field, id >= 0 && id < m->n_pieces ? id : -1);
    if (id >= 0 && id < m->n_pieces) put_len(b, piece_field, m->pieces[id].text, m->pieces[id].len);
}

qn_status qn_spm_model_serialize(const qn_spm_model *m, uint8_t **buf, size_t *len, qn_error *err) {
    pb_buf out = {0}, sub = {0};
    for (int64_t i = 0; i < m->n_pieces; i++) {
        const qn_spm_piece *pc = &m->pieces[i];
        sub.n = 0;
        put_len(&sub, PB_PIECE_PIECE, pc->text, pc->len);
        put_float(&sub, PB_PIECE_SCORE, pc->score);
        if (pc->type != QN_SPM_TYPE_NORMAL) put_int(&sub, PB_PIECE_TYPE, pc->type);
        put_len(&out, PB_MODEL_PIECES, sub.p, sub.n);
    }
    sub.n = 0;
    put_int(&sub, PB_TRAINER_MODEL_TYPE, PB_TRAINER_MODEL_BPE);
    put_int(&sub, PB_TRAINER_VOCAB_SIZE, m->n_pieces);
    put_int(&sub, PB_TRAINER_BYTE_FALLBACK, m->byte_fallback);
    put_special(&sub, m, m->unk_id, PB_TRAINER_UNK_ID, PB_TRAINER_UNK_PIECE);
    put_special(&sub, m, m->bos_id, PB_TRAINER_BOS_ID, PB_TRAINER_BOS_PIECE);
    put_special(&sub, m, m->eos_id, PB_TRAINER_EOS_ID, PB_TRAINER_EOS_PIECE);
    put_special(&sub, m, m->pad_id, PB_TRAINER_PAD_ID, PB_TRAINER_PAD_PIECE);
    put_len(&out, PB_MODEL_TRAINER_SPEC, sub.p, sub.n);
    sub.n = 0;
    put_len(&sub, PB_NORM_NAME, "identity", 8);
    put_int(&sub, PB_NORM_ADD_DUMMY_PREFIX, m->add_dummy_prefix);
    put_int(&sub, PB_NORM_REMOVE_EXTRA_WS, 0);
    put_int(&sub, PB_NORM_ESCAPE_WS, 1);
    put_len(&out, PB_MODEL_NORMALIZER_SPEC, sub.p, sub.n);
    const bool oom = out.oom || sub.oom;
    free(sub.p);
    if (oom) {
        free(out.p);
        return qn_error_set(err, QN_ERR_NOMEM, "tokenizer.model: out of memory (%lld pieces)", (long long)m->n_pieces);
    }
    *buf = out.p;
    *len = out.n;
    return QN_OK;
}
