/* gguf.c — GGUF v2/v3 reader (docs/formats.md §1), contract in gguf.h.
 * The image is a read-only mmap (qn_gguf_open) or the caller's buffer (qn_gguf_open_memory). Parsing
 * builds tables of views into the image; every read goes through qn_gguf_rd, which never reads past
 * the end, so any byte sequence yields either a valid object or QN_ERR_FORMAT/QN_ERR_UNSUPPORTED. */
#include "model/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define QN_GGUF_MAGIC 0x46554747u /* "GGUF" read as a LE u32 */
#define QN_GGUF_DEFAULT_ALIGNMENT 32u
#define QN_GGUF_MAX_DIMS 4u
#define QN_GGUF_MAX_NAME 64u      /* ggml GGML_MAX_NAME: names must be shorter */
#define QN_GGUF_MAX_KEY 65535u
#define QN_GGUF_MIN_KV_BYTES 13u  /* key length u64 + type u32 + 1 value byte */
#define QN_GGUF_MIN_TI_BYTES 24u  /* name length u64 + n_dims u32 + type u32 + offset u64 */

/* One metadata record; all pointers are views into the image except strs. */
typedef struct qn_gguf_kv {
    qn_gguf_str key;
    qn_gguf_type type;
    qn_gguf_type arr_type; /* element type when type == ARRAY, else QN_GGUF_TYPE_COUNT */
    uint64_t arr_n;        /* element count when type == ARRAY, else 0 */
    const uint8_t *val;    /* scalar bytes, string bytes, or first array element */
    uint64_t str_len;      /* type == STRING only */
    qn_gguf_str *strs;     /* [arr_n], owned; string arrays only */
} qn_gguf_kv;

/* Open-addressing name index: slots hold (entry index + 1), 0 = empty; cap is a power of two >= 2n. */
typedef struct qn_gguf_index {
    uint32_t *slots;
    uint64_t cap;
} qn_gguf_index;

struct qn_gguf {
    char *label;           /* path, or the caller's label for memory images */
    const uint8_t *base;   /* [size] image */
    uint64_t size;
    void *map;             /* our mmap, or NULL for memory images / empty files */
    uint32_t version;
    uint32_t alignment;    /* power of two */
    uint64_t data_start;   /* absolute offset of the tensor data section */
    int64_t n_kv;
    qn_gguf_kv *kv;        /* [n_kv] */
    int64_t n_tensors;
    qn_gguf_tensor *tensors; /* [n_tensors] */
    qn_gguf_index kv_index;
    qn_gguf_index t_index;
};

/* ------------------------------------------------------------------------------------------------ */
/* bounds-checked reader                                                                            */

typedef struct qn_gguf_rd {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos; /* invariant: pos <= size */
} qn_gguf_rd;

static uint64_t rd_left(const qn_gguf_rd *r) { return r->size - r->pos; }

static const uint8_t *rd_take(qn_gguf_rd *r, uint64_t n) {
    if (n > rd_left(r)) return NULL;
    const uint8_t *b = r->p + r->pos;
    r->pos += n;
    return b;
}

static uint32_t le32(const uint8_t *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t le64(const uint8_t *b) { return (uint64_t)le32(b) | (uint64_t)le32(b + 4) << 32; }

static int rd_u32(qn_gguf_rd *r, uint32_t *v) {
    const uint8_t *b = rd_take(r, 4);
    if (b) *v = le32(b);
    return b != NULL;
}

static int rd_u64(qn_gguf_rd *r, uint64_t *v) {
    const uint8_t *b = rd_take(r, 8);
    if (b) *v = le64(b);
    return b != NULL;
}

/* ------------------------------------------------------------------------------------------------ */
/* names, errors, index                                                                             */

static const char *const QN_GGUF_TYPE_NAMES[QN_GGUF_TYPE_COUNT] = {
    [QN_GGUF_TYPE_UINT8] = "u8",     [QN_GGUF_TYPE_INT8] = "i8",     [QN_GGUF_TYPE_UINT16] = "u16",
    [QN_GGUF_TYPE_INT16] = "i16",    [QN_GGUF_TYPE_UINT32] = "u32",  [QN_GGUF_TYPE_INT32] = "i32",
    [QN_GGUF_TYPE_FLOAT32] = "f32",  [QN_GGUF_TYPE_BOOL] = "bool",   [QN_GGUF_TYPE_STRING] = "string",
    [QN_GGUF_TYPE_ARRAY] = "array",  [QN_GGUF_TYPE_UINT64] = "u64",  [QN_GGUF_TYPE_INT64] = "i64",
    [QN_GGUF_TYPE_FLOAT64] = "f64",
};

/* Byte size of a fixed-size value type; 0 for STRING, ARRAY and unknown ids. */
static const uint8_t QN_GGUF_TYPE_SIZES[QN_GGUF_TYPE_COUNT] = {
    [QN_GGUF_TYPE_UINT8] = 1,  [QN_GGUF_TYPE_INT8] = 1,   [QN_GGUF_TYPE_UINT16] = 2, [QN_GGUF_TYPE_INT16] = 2,
    [QN_GGUF_TYPE_UINT32] = 4, [QN_GGUF_TYPE_INT32] = 4,  [QN_GGUF_TYPE_FLOAT32] = 4, [QN_GGUF_TYPE_BOOL] = 1,
    [QN_GGUF_TYPE_UINT64] = 8, [QN_GGUF_TYPE_INT64] = 8,  [QN_GGUF_TYPE_FLOAT64] = 8,
};

const char *qn_gguf_type_name(qn_gguf_type t) {
    return (unsigned)t < QN_GGUF_TYPE_COUNT ? QN_GGUF_TYPE_NAMES[t] : "invalid";
}

size_t qn_gguf_type_size(qn_gguf_type t) {
    return (unsigned)t < QN_GGUF_TYPE_COUNT ? QN_GGUF_TYPE_SIZES[t] : 0;
}

/* Copies a name into buf for messages: non-printable bytes become '?', long names end in "...". */
static const char *pname(qn_gguf_str s, char *buf, size_t cap) {
    size_t n = 0;
    const size_t lim = cap - 4;
    for (uint64_t i = 0; i < s.len && n < lim; i++) {
        const unsigned char c = (unsigned char)s.ptr[i];
        buf[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (s.len > lim) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* Sets err to "<label>: <message>" and returns code. */
static qn_status fail(const qn_gguf *g, qn_error *err, qn_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static qn_status fail(const qn_gguf *g, qn_error *err, qn_status code, const char *fmt, ...) {
    char msg[448];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qn_error_set(err, code, "%s: %s", g->label, msg);
}

static uint64_t hash_bytes(const char *p, uint64_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h;
}

static int str_eq(qn_gguf_str a, const char *p, uint64_t n) { return a.len == n && !memcmp(a.ptr, p, n); }

static qn_status index_init(qn_gguf_index *ix, int64_t n) {
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n) cap *= 2;
    ix->slots = calloc(cap, sizeof *ix->slots);
    ix->cap = cap;
    return ix->slots ? QN_OK : QN_ERR_NOMEM;
}

/* names(i) gives the name of entry i. Returns the entry index holding (p, n), or -1. */
typedef qn_gguf_str (*qn_gguf_name_fn)(const qn_gguf *g, uint32_t i);

static int64_t index_find(const qn_gguf *g, const qn_gguf_index *ix, qn_gguf_name_fn name, const char *p,
                          uint64_t n) {
    if (!ix->slots) return -1;
    for (uint64_t h = hash_bytes(p, n) & (ix->cap - 1);; h = (h + 1) & (ix->cap - 1)) {
        const uint32_t s = ix->slots[h];
        if (!s) return -1;
        if (str_eq(name(g, s - 1), p, n)) return s - 1;
    }
}

/* Inserts entry i; returns the index of an existing entry with the same name, or -1 if inserted. */
static int64_t index_insert(const qn_gguf *g, qn_gguf_index *ix, qn_gguf_name_fn name, uint32_t i) {
    const qn_gguf_str k = name(g, i);
    for (uint64_t h = hash_bytes(k.ptr, k.len) & (ix->cap - 1);; h = (h + 1) & (ix->cap - 1)) {
        const uint32_t s = ix->slots[h];
        if (!s) {
            ix->slots[h] = i + 1;
            return -1;
        }
        if (str_eq(name(g, s - 1), k.ptr, k.len)) return s - 1;
    }
}

static qn_gguf_str kv_name(const qn_gguf *g, uint32_t i) { return g->kv[i].key; }
static qn_gguf_str tensor_name(const qn_gguf *g, uint32_t i) { return g->tensors[i].name; }

/* ------------------------------------------------------------------------------------------------ */
/* metadata                                                                                         */

/* Reads a string (u64 length + bytes). what names the field for messages. */
static qn_status read_str(const qn_gguf *g, qn_gguf_rd *r, qn_gguf_str *s, const char *what, qn_error *err) {
    uint64_t len;
    const uint64_t at = r->pos;
    if (!rd_u64(r, &len))
        return fail(g, err, QN_ERR_FORMAT, "%s: truncated string length at byte %llu", what,
                    (unsigned long long)at);
    const uint8_t *b = rd_take(r, len);
    if (!b)
        return fail(g, err, QN_ERR_FORMAT, "%s: string length %llu at byte %llu exceeds the %llu bytes left",
                    what, (unsigned long long)len, (unsigned long long)at, (unsigned long long)rd_left(r));
    s->ptr = (const char *)b;
    s->len = len;
    return QN_OK;
}

static qn_status check_bools(const qn_gguf *g, const uint8_t *b, uint64_t n, const char *what, qn_error *err) {
    for (uint64_t j = 0; j < n; j++)
        if (b[j] > 1)
            return fail(g, err, QN_ERR_FORMAT, "%s: bool value %u at element %llu is not 0 or 1", what, b[j],
                        (unsigned long long)j);
    return QN_OK;
}

static qn_status read_array(const qn_gguf *g, qn_gguf_rd *r, qn_gguf_kv *kv, const char *what, qn_error *err) {
    uint32_t et;
    uint64_t n;
    if (!rd_u32(r, &et)) return fail(g, err, QN_ERR_FORMAT, "%s: truncated array element type", what);
    if (!rd_u64(r, &n)) return fail(g, err, QN_ERR_FORMAT, "%s: truncated array count", what);
    if (et == QN_GGUF_TYPE_ARRAY) return fail(g, err, QN_ERR_FORMAT, "%s: nested arrays are not supported", what);
    if (et >= QN_GGUF_TYPE_COUNT) return fail(g, err, QN_ERR_FORMAT, "%s: unknown array element type %u", what, et);
    kv->arr_type = (qn_gguf_type)et;
    kv->arr_n = n;
    if (et != QN_GGUF_TYPE_STRING) {
        const uint64_t esz = QN_GGUF_TYPE_SIZES[et];
        if (n > rd_left(r) / esz)
            return fail(g, err, QN_ERR_FORMAT, "%s: array count %llu of %s exceeds the %llu bytes left", what,
                        (unsigned long long)n, QN_GGUF_TYPE_NAMES[et], (unsigned long long)rd_left(r));
        kv->val = rd_take(r, n * esz);
        return et == QN_GGUF_TYPE_BOOL ? check_bools(g, kv->val, n, what, err) : QN_OK;
    }
    if (n > rd_left(r) / 8) /* every string costs at least its 8-byte length */
        return fail(g, err, QN_ERR_FORMAT, "%s: array count %llu of string exceeds the %llu bytes left", what,
                    (unsigned long long)n, (unsigned long long)rd_left(r));
    kv->val = r->p + r->pos;
    if (n == 0) return QN_OK;
    kv->strs = malloc(n * sizeof *kv->strs);
    if (!kv->strs) return fail(g, err, QN_ERR_NOMEM, "%s: cannot allocate %llu strings", what, (unsigned long long)n);
    for (uint64_t j = 0; j < n; j++) {
        uint64_t len = 0;
        const uint64_t at = r->pos;
        const uint8_t *b = rd_u64(r, &len) ? rd_take(r, len) : NULL;
        if (!b)
            return fail(g, err, QN_ERR_FORMAT,
                        "%s: element %llu: string length %llu at byte %llu exceeds the %llu bytes left", what,
                        (unsigned long long)j, (unsigned long long)len, (unsigned long long)at,
                        (unsigned long long)(g->size - at));
        kv->strs[j] = (qn_gguf_str){(const char *)b, len};
    }
    return QN_OK;
}

static qn_status read_kv(qn_gguf *g, qn_gguf_rd *r, int64_t i, qn_error *err) {
    qn_gguf_kv *kv = &g->kv[i];
    char what[160], nb[96];
    kv->arr_type = QN_GGUF_TYPE_COUNT;
    snprintf(what, sizeof what, "metadata key #%lld", (long long)i);
    qn_status st = read_str(g, r, &kv->key, what, err);
    if (st) return st;
    if (kv->key.len == 0) return fail(g, err, QN_ERR_FORMAT, "%s: empty key", what);
    if (kv->key.len > QN_GGUF_MAX_KEY)
        return fail(g, err, QN_ERR_FORMAT, "%s: key length %llu > %u", what, (unsigned long long)kv->key.len,
                    QN_GGUF_MAX_KEY);
    snprintf(what, sizeof what, "key '%s'", pname(kv->key, nb, sizeof nb));
    uint32_t t;
    if (!rd_u32(r, &t)) return fail(g, err, QN_ERR_FORMAT, "%s: truncated value type", what);
    if (t >= QN_GGUF_TYPE_COUNT) return fail(g, err, QN_ERR_FORMAT, "%s: unknown value type %u", what, t);
    kv->type = (qn_gguf_type)t;
    if (t == QN_GGUF_TYPE_STRING) {
        qn_gguf_str s;
        if ((st = read_str(g, r, &s, what, err))) return st;
        kv->val = (const uint8_t *)s.ptr;
        kv->str_len = s.len;
    } else if (t == QN_GGUF_TYPE_ARRAY) {
        if ((st = read_array(g, r, kv, what, err))) return st;
    } else {
        kv->val = rd_take(r, QN_GGUF_TYPE_SIZES[t]);
        if (!kv->val) return fail(g, err, QN_ERR_FORMAT, "%s: truncated %s value", what, QN_GGUF_TYPE_NAMES[t]);
        if (t == QN_GGUF_TYPE_BOOL && (st = check_bools(g, kv->val, 1, what, err))) return st;
    }
    if (index_insert(g, &g->kv_index, kv_name, (uint32_t)i) >= 0)
        return fail(g, err, QN_ERR_FORMAT, "%s: duplicate key", what);
    return QN_OK;
}

static qn_status read_alignment(qn_gguf *g, qn_error *err) {
    g->alignment = QN_GGUF_DEFAULT_ALIGNMENT;
    const int64_t i = qn_gguf_find_key(g, "general.alignment");
    if (i < 0) return QN_OK;
    const qn_gguf_kv *kv = &g->kv[i];
    if (kv->type != QN_GGUF_TYPE_UINT32)
        return fail(g, err, QN_ERR_FORMAT, "key 'general.alignment': type %s, expected u32",
                    qn_gguf_type_name(kv->type));
    const uint32_t a = le32(kv->val);
    if (a == 0 || (a & (a - 1)))
        return fail(g, err, QN_ERR_FORMAT, "key 'general.alignment': value %u is not a power of two", a);
    g->alignment = a;
    return QN_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* tensor infos                                                                                     */

static qn_status read_tensor_info(qn_gguf *g, qn_gguf_rd *r, int64_t i, qn_error *err) {
    qn_gguf_tensor *t = &g->tensors[i];
    char what[160], nb[96];
    snprintf(what, sizeof what, "tensor #%lld", (long long)i);
    qn_status st = read_str(g, r, &t->name, what, err);
    if (st) return st;
    if (t->name.len == 0) return fail(g, err, QN_ERR_FORMAT, "%s: empty name", what);
    if (t->name.len >= QN_GGUF_MAX_NAME)
        return fail(g, err, QN_ERR_FORMAT, "%s '%s': name length %llu >= %u", what, pname(t->name, nb, sizeof nb),
                    (unsigned long long)t->name.len, QN_GGUF_MAX_NAME);
    snprintf(what, sizeof what, "tensor '%s'", pname(t->name, nb, sizeof nb));
    if (!rd_u32(r, &t->n_dims)) return fail(g, err, QN_ERR_FORMAT, "%s: truncated n_dims", what);
    if (t->n_dims > QN_GGUF_MAX_DIMS)
        return fail(g, err, QN_ERR_FORMAT, "%s: n_dims %u > %u", what, t->n_dims, QN_GGUF_MAX_DIMS);
    for (uint32_t j = 0; j < QN_GGUF_MAX_DIMS; j++) t->ne[j] = 1;
    for (uint32_t j = 0; j < t->n_dims; j++) {
        uint64_t v;
        if (!rd_u64(r, &v)) return fail(g, err, QN_ERR_FORMAT, "%s: truncated ne[%u]", what, j);
        if (v > (uint64_t)INT64_MAX)
            return fail(g, err, QN_ERR_FORMAT, "%s: ne[%u] = %llu is negative as int64", what, j,
                        (unsigned long long)v);
        t->ne[j] = (int64_t)v;
    }
    uint32_t type;
    if (!rd_u32(r, &type)) return fail(g, err, QN_ERR_FORMAT, "%s: truncated type", what);
    if (!rd_u64(r, &t->offset)) return fail(g, err, QN_ERR_FORMAT, "%s: truncated offset", what);
    if (qn_qformat_from_ggml(type, &t->fmt) != QN_OK)
        return fail(g, err, QN_ERR_UNSUPPORTED, "%s: unsupported ggml type %u", what, type);

    /* element count must fit int64 (ggml's check), then bytes must fit uint64 */
    uint64_t nelem = 1;
    for (uint32_t j = 0; j < QN_GGUF_MAX_DIMS; j++)
        if (__builtin_mul_overflow(nelem, (uint64_t)t->ne[j], &nelem) || nelem > (uint64_t)INT64_MAX)
            return fail(g, err, QN_ERR_FORMAT, "%s: element count of ne [%lld, %lld, %lld, %lld] overflows int64",
                        what, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3]);
    const qn_qformat_traits *tr = &QN_QFORMATS[t->fmt];
    if (tr->block_elems <= 0 || t->ne[0] % tr->block_elems)
        return fail(g, err, QN_ERR_FORMAT, "%s: ne[0] = %lld is not a multiple of the %s block size %d", what,
                    (long long)t->ne[0], tr->name, tr->block_elems);
    uint64_t nbytes = (uint64_t)(t->ne[0] / tr->block_elems);
    if (__builtin_mul_overflow(nbytes, (uint64_t)tr->block_bytes, &nbytes) ||
        __builtin_mul_overflow(nbytes, (uint64_t)t->ne[1], &nbytes) ||
        __builtin_mul_overflow(nbytes, (uint64_t)t->ne[2], &nbytes) ||
        __builtin_mul_overflow(nbytes, (uint64_t)t->ne[3], &nbytes))
        return fail(g, err, QN_ERR_FORMAT, "%s: byte size overflows uint64", what);
    t->nbytes = nbytes;
    if (t->offset % g->alignment)
        return fail(g, err, QN_ERR_FORMAT, "%s: offset %llu is not a multiple of the alignment %u", what,
                    (unsigned long long)t->offset, g->alignment);
    if (index_insert(g, &g->t_index, tensor_name, (uint32_t)i) >= 0)
        return fail(g, err, QN_ERR_FORMAT, "%s: duplicate tensor name", what);
    return QN_OK;
}

/* Lenient placement check: each tensor only has to lie inside the file (ggml also requires packing). */
static qn_status place_tensors(qn_gguf *g, qn_error *err) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        qn_gguf_tensor *t = &g->tensors[i];
        char nb[96];
        uint64_t end;
        if (__builtin_add_overflow(g->data_start, t->offset, &end) ||
            __builtin_add_overflow(end, t->nbytes, &end) || end > g->size)
            return fail(g, err, QN_ERR_FORMAT,
                        "tensor '%s': offset %llu + size %llu exceeds file size %llu (data section at %llu)",
                        pname(t->name, nb, sizeof nb), (unsigned long long)t->offset,
                        (unsigned long long)t->nbytes, (unsigned long long)g->size,
                        (unsigned long long)g->data_start);
        t->data = g->base + g->data_start + t->offset;
    }
    return QN_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* lifecycle                                                                                        */

static qn_status parse(qn_gguf *g, qn_error *err) {
    qn_gguf_rd r = {.p = g->base, .size = g->size, .pos = 0};
    uint32_t magic, version;
    uint64_t n_tensors, n_kv;
    if (!rd_u32(&r, &magic) || magic != QN_GGUF_MAGIC)
        return fail(g, err, QN_ERR_FORMAT, "magic: not a GGUF file (expected 'GGUF' at byte 0)");
    if (!rd_u32(&r, &version)) return fail(g, err, QN_ERR_FORMAT, "version: truncated header");
    if ((version & 0xFFFFu) == 0)
        return fail(g, err, QN_ERR_UNSUPPORTED, "version: 0x%08x looks byte-swapped (big-endian files unsupported)",
                    version);
    if (version == 1) return fail(g, err, QN_ERR_UNSUPPORTED, "version: GGUF v1 is not supported (need v2 or v3)");
    if (version > 3) return fail(g, err, QN_ERR_UNSUPPORTED, "version: GGUF v%u is newer than v3", version);
    g->version = version;
    if (!rd_u64(&r, &n_tensors)) return fail(g, err, QN_ERR_FORMAT, "tensor_count: truncated header");
    if (!rd_u64(&r, &n_kv)) return fail(g, err, QN_ERR_FORMAT, "metadata_kv_count: truncated header");
    if (n_kv > rd_left(&r) / QN_GGUF_MIN_KV_BYTES || n_kv > INT32_MAX)
        return fail(g, err, QN_ERR_FORMAT, "metadata_kv_count: %llu records cannot fit in the %llu bytes left",
                    (unsigned long long)n_kv, (unsigned long long)rd_left(&r));
    if (n_tensors > rd_left(&r) / QN_GGUF_MIN_TI_BYTES || n_tensors > INT32_MAX)
        return fail(g, err, QN_ERR_FORMAT, "tensor_count: %llu records cannot fit in the %llu bytes left",
                    (unsigned long long)n_tensors, (unsigned long long)rd_left(&r));

    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors || index_init(&g->kv_index, (int64_t)n_kv) ||
        index_init(&g->t_index, (int64_t)n_tensors))
        return fail(g, err, QN_ERR_NOMEM, "cannot allocate tables");
    qn_status st;
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int64_t)i + 1; /* so close() frees what this record allocated */
        if ((st = read_kv(g, &r, (int64_t)i, err))) return st;
    }
    g->n_kv = (int64_t)n_kv;
    if ((st = read_alignment(g, err))) return st;
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = (int64_t)i + 1;
        if ((st = read_tensor_info(g, &r, (int64_t)i, err))) return st;
    }
    g->n_tensors = (int64_t)n_tensors;
    /* r.pos <= size < 2^63 and alignment <= 2^31, so this cannot overflow */
    g->data_start = n_tensors ? (r.pos + g->alignment - 1) / g->alignment * g->alignment : r.pos;
    return place_tensors(g, err);
}

static qn_status open_image(const void *base, uint64_t size, void *map, const char *label, qn_gguf **out,
                            qn_error *err) {
    qn_gguf *g = calloc(1, sizeof *g);
    char *lab = strdup(label);
    if (!g || !lab) {
        free(g);
        free(lab);
        if (map) munmap(map, size);
        return qn_error_set(err, QN_ERR_NOMEM, "%s: cannot allocate reader", label);
    }
    g->label = lab;
    g->base = base;
    g->size = size;
    g->map = map;
    const qn_status st = parse(g, err);
    if (st) {
        qn_gguf_close(g);
        return st;
    }
    *out = g;
    return QN_OK;
}

qn_status qn_gguf_open_memory(const void *buf, size_t len, const char *label, qn_gguf **out, qn_error *err) {
    if (!out || (!buf && len)) return qn_error_set(err, QN_ERR_INVALID_ARG, "qn_gguf_open_memory: NULL argument");
    *out = NULL;
    return open_image(buf ? buf : "", len, NULL, label ? label : "<memory>", out, err);
}

qn_status qn_gguf_open(const char *path, qn_gguf **out, qn_error *err) {
    if (!path || !out) return qn_error_set(err, QN_ERR_INVALID_ARG, "qn_gguf_open: NULL argument");
    *out = NULL;
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return qn_error_set(err, errno == ENOENT ? QN_ERR_NOT_FOUND : QN_ERR_IO, "%s: open: %s", path,
                                    strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return qn_error_set(err, QN_ERR_IO, "%s: not a regular file", path);
    }
    void *map = NULL;
    const uint64_t size = (uint64_t)sb.st_size;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            const int e = errno;
            close(fd);
            return qn_error_set(err, QN_ERR_IO, "%s: mmap of %llu bytes: %s", path, (unsigned long long)size,
                                strerror(e));
        }
    }
    close(fd); /* the mapping keeps the file referenced */
    return open_image(map ? map : "", size, map, path, out, err);
}

void qn_gguf_drop_pages(const qn_gguf *g, const void *p, size_t n) {
    if (!g || !g->map || !p) return;
    const uintptr_t map = (uintptr_t)g->map, lo = (uintptr_t)p, page = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (lo < map || n > g->size || lo - map > g->size - n) return;
    const uintptr_t b = (lo + page - 1) / page * page, e = (lo + n) / page * page;
    if (e > b) (void)madvise((void *)b, e - b, MADV_DONTNEED); /* advice only: a failure changes nothing */
}

void qn_gguf_close(qn_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) free(g->kv[i].strs);
    free(g->kv);
    free(g->tensors);
    free(g->kv_index.slots);
    free(g->t_index.slots);
    if (g->map) munmap(g->map, g->size);
    free(g->label);
    free(g);
}

/* ------------------------------------------------------------------------------------------------ */
/* queries                                                                                          */

const char *qn_gguf_path(const qn_gguf *g) { return g->label; }
uint32_t qn_gguf_version(const qn_gguf *g) { return g->version; }
uint32_t qn_gguf_alignment(const qn_gguf *g) { return g->alignment; }
uint64_t qn_gguf_file_size(const qn_gguf *g) { return g->size; }
uint64_t qn_gguf_data_start(const qn_gguf *g) { return g->data_start; }

int64_t qn_gguf_n_kv(const qn_gguf *g) { return g->n_kv; }

int64_t qn_gguf_find_key(const qn_gguf *g, const char *key) {
    return key ? index_find(g, &g->kv_index, kv_name, key, strlen(key)) : -1;
}

static const qn_gguf_kv *kv_at(const qn_gguf *g, int64_t i) { return (i >= 0 && i < g->n_kv) ? &g->kv[i] : NULL; }

qn_gguf_str qn_gguf_key(const qn_gguf *g, int64_t i) {
    const qn_gguf_kv *kv = kv_at(g, i);
    return kv ? kv->key : (qn_gguf_str){"", 0};
}

qn_gguf_type qn_gguf_kv_type(const qn_gguf *g, int64_t i) {
    const qn_gguf_kv *kv = kv_at(g, i);
    return kv ? kv->type : QN_GGUF_TYPE_COUNT;
}

const void *qn_gguf_kv_data(const qn_gguf *g, int64_t i) {
    const qn_gguf_kv *kv = kv_at(g, i);
    return (kv && kv->type != QN_GGUF_TYPE_STRING && kv->type != QN_GGUF_TYPE_ARRAY) ? kv->val : NULL;
}

qn_gguf_str qn_gguf_kv_str(const qn_gguf *g, int64_t i) {
    const qn_gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != QN_GGUF_TYPE_STRING) return (qn_gguf_str){"", 0};
    return (qn_gguf_str){(const char *)kv->val, kv->str_len};
}

qn_gguf_type qn_gguf_arr_type(const qn_gguf *g, int64_t i) {
    const qn_gguf_kv *kv = kv_at(g, i);
    return kv ? kv->arr_type : QN_GGUF_TYPE_COUNT;
}

uint64_t qn_gguf_arr_n(const qn_gguf *g, int64_t i) {
    const qn_gguf_kv *kv = kv_at(g, i);
    return kv ? kv->arr_n : 0;
}

const void *qn_gguf_arr_data(const qn_gguf *g, int64_t i) {
    const qn_gguf_kv *kv = kv_at(g, i);
    return (kv && kv->type == QN_GGUF_TYPE_ARRAY && kv->arr_type != QN_GGUF_TYPE_STRING) ? kv->val : NULL;
}

qn_gguf_str qn_gguf_arr_str(const qn_gguf *g, int64_t i, uint64_t j) {
    const qn_gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->arr_type != QN_GGUF_TYPE_STRING || j >= kv->arr_n) return (qn_gguf_str){"", 0};
    return kv->strs[j];
}

/* --- typed getters --- */

/* Reads any integer kv as (negative?, magnitude). Returns 0 if kv is not an integer type. */
static int kv_int(const qn_gguf_kv *kv, int *neg, uint64_t *mag) {
    const uint8_t *b = kv->val;
    int64_t s;
    *neg = 0;
    switch (kv->type) {
    case QN_GGUF_TYPE_UINT8: *mag = b[0]; return 1;
    case QN_GGUF_TYPE_UINT16: *mag = (uint64_t)b[0] | (uint64_t)b[1] << 8; return 1;
    case QN_GGUF_TYPE_UINT32: *mag = le32(b); return 1;
    case QN_GGUF_TYPE_UINT64: *mag = le64(b); return 1;
    case QN_GGUF_TYPE_INT8: s = (int8_t)b[0]; break;
    case QN_GGUF_TYPE_INT16: s = (int16_t)(uint16_t)((unsigned)b[0] | (unsigned)b[1] << 8); break;
    case QN_GGUF_TYPE_INT32: s = (int32_t)le32(b); break;
    case QN_GGUF_TYPE_INT64: s = (int64_t)le64(b); break;
    default: return 0;
    }
    *neg = s < 0;
    *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return 1;
}

/* Finds key for a typed getter: NULL with *st = NOT_FOUND (err untouched) or INVALID_ARG. */
static const qn_gguf_kv *getter_kv(const qn_gguf *g, const char *key, const void *out, qn_status *st,
                                   qn_error *err) {
    if (!g || !key || !out) {
        *st = qn_error_set(err, QN_ERR_INVALID_ARG, "qn_gguf_get: NULL argument");
        return NULL;
    }
    const int64_t i = qn_gguf_find_key(g, key);
    *st = QN_ERR_NOT_FOUND;
    return i < 0 ? NULL : &g->kv[i];
}

static qn_status wrong_type(const qn_gguf *g, const char *key, const qn_gguf_kv *kv, const char *want,
                            qn_error *err) {
    return fail(g, err, QN_ERR_FORMAT, "key '%s': type %s, expected %s", key, qn_gguf_type_name(kv->type), want);
}

qn_status qn_gguf_get_u32(const qn_gguf *g, const char *key, uint32_t *out, qn_error *err) {
    qn_status st;
    const qn_gguf_kv *kv = getter_kv(g, key, out, &st, err);
    if (!kv) return st;
    int neg;
    uint64_t mag;
    if (!kv_int(kv, &neg, &mag)) return wrong_type(g, key, kv, "an integer", err);
    if (neg || mag > UINT32_MAX)
        return fail(g, err, QN_ERR_FORMAT, "key '%s': value %s%llu does not fit u32", key, neg ? "-" : "",
                    (unsigned long long)mag);
    *out = (uint32_t)mag;
    return QN_OK;
}

qn_status qn_gguf_get_i64(const qn_gguf *g, const char *key, int64_t *out, qn_error *err) {
    qn_status st;
    const qn_gguf_kv *kv = getter_kv(g, key, out, &st, err);
    if (!kv) return st;
    int neg;
    uint64_t mag;
    if (!kv_int(kv, &neg, &mag)) return wrong_type(g, key, kv, "an integer", err);
    if (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > (uint64_t)INT64_MAX)
        return fail(g, err, QN_ERR_FORMAT, "key '%s': value %s%llu does not fit i64", key, neg ? "-" : "",
                    (unsigned long long)mag);
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return QN_OK;
}

qn_status qn_gguf_get_f32(const qn_gguf *g, const char *key, float *out, qn_error *err) {
    qn_status st;
    const qn_gguf_kv *kv = getter_kv(g, key, out, &st, err);
    if (!kv) return st;
    if (kv->type == QN_GGUF_TYPE_FLOAT32) {
        memcpy(out, kv->val, 4); /* files are LE, and so are the hosts we build for */
        return QN_OK;
    }
    if (kv->type == QN_GGUF_TYPE_FLOAT64) {
        double d;
        memcpy(&d, kv->val, 8);
        /* out-of-range double -> float is undefined in C: saturate to +-inf as IEEE rounding would */
        *out = d > FLT_MAX ? INFINITY : d < -FLT_MAX ? -INFINITY : (float)d;
        return QN_OK;
    }
    int neg;
    uint64_t mag;
    if (!kv_int(kv, &neg, &mag)) return wrong_type(g, key, kv, "f32 or f64", err);
    *out = neg ? -(float)mag : (float)mag;
    return QN_OK;
}

qn_status qn_gguf_get_bool(const qn_gguf *g, const char *key, bool *out, qn_error *err) {
    qn_status st;
    const qn_gguf_kv *kv = getter_kv(g, key, out, &st, err);
    if (!kv) return st;
    if (kv->type != QN_GGUF_TYPE_BOOL) return wrong_type(g, key, kv, "bool", err);
    *out = kv->val[0] != 0;
    return QN_OK;
}

qn_status qn_gguf_get_str(const qn_gguf *g, const char *key, qn_gguf_str *out, qn_error *err) {
    qn_status st;
    const qn_gguf_kv *kv = getter_kv(g, key, out, &st, err);
    if (!kv) return st;
    if (kv->type != QN_GGUF_TYPE_STRING) return wrong_type(g, key, kv, "string", err);
    out->ptr = (const char *)kv->val;
    out->len = kv->str_len;
    return QN_OK;
}

/* --- tensors --- */

int64_t qn_gguf_n_tensors(const qn_gguf *g) { return g->n_tensors; }

const qn_gguf_tensor *qn_gguf_tensor_at(const qn_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_tensors) ? &g->tensors[i] : NULL;
}

const qn_gguf_tensor *qn_gguf_find_tensor(const qn_gguf *g, const char *name) {
    if (!name) return NULL;
    const int64_t i = index_find(g, &g->t_index, tensor_name, name, strlen(name));
    return i < 0 ? NULL : &g->tensors[i];
}
