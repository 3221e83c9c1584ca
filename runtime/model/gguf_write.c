/* gguf_write.c — GGUF writer (contract in gguf_write.h). Metadata records are serialized as they
 * are added; tensor infos get their offsets at write time. The image is produced by one routine
 * that either copies into a buffer or streams to a FILE. */
#include "model/gguf_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QN_GGUF_MAGIC_BYTES "GGUF"

typedef struct qn_gguf_buf {
    uint8_t *p;
    size_t len, cap;
} qn_gguf_buf;

typedef struct qn_gguf_wtensor {
    char *name;
    qn_qformat fmt;
    uint32_t n_dims;
    int64_t ne[4];
    uint64_t nbytes;
    const void *data; /* borrowed; NULL = zeros */
} qn_gguf_wtensor;

/* An open stream (qn_gguf_writer_stream_*): data goes to tmp_path, renamed to path at the end. */
typedef struct qn_gguf_wstream {
    FILE *f;                  /* NULL when no stream is open */
    char *path, *tmp_path;
    uint64_t tensor;          /* tensor the next data byte belongs to */
    uint64_t done;            /* bytes of that tensor already written */
} qn_gguf_wstream;

struct qn_gguf_writer {
    uint32_t version;
    uint32_t alignment;
    qn_gguf_buf kv;           /* serialized metadata records */
    char **keys;              /* [n_kv] owned copies, for the uniqueness check */
    uint64_t n_kv;
    qn_gguf_wtensor *tensors; /* [n_tensors] */
    uint64_t n_tensors, cap_tensors;
    qn_gguf_wstream stream;
};

/* ------------------------------------------------------------------------------------------------ */
/* byte buffer                                                                                      */

static int buf_put(qn_gguf_buf *b, const void *p, size_t n) {
    if (n > SIZE_MAX - b->len) return -1;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static int buf_u32(qn_gguf_buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return buf_put(b, x, 4);
}

static int buf_u64(qn_gguf_buf *b, uint64_t v) { return buf_u32(b, (uint32_t)v) || buf_u32(b, (uint32_t)(v >> 32)); }

static int buf_str(qn_gguf_buf *b, const char *s) {
    const size_t n = strlen(s);
    return buf_u64(b, n) || buf_put(b, s, n);
}

static int buf_strn(qn_gguf_buf *b, const char *s, uint64_t n) { return buf_u64(b, n) || buf_put(b, s, (size_t)n); }

/* ------------------------------------------------------------------------------------------------ */
/* lifecycle                                                                                        */

qn_status qn_gguf_writer_create(qn_gguf_writer **out, qn_error *err) {
    qn_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return qn_error_set(err, QN_ERR_NOMEM, "gguf writer: cannot allocate");
    w->version = 3;
    w->alignment = 32;
    *out = w;
    return QN_OK;
}

void qn_gguf_writer_destroy(qn_gguf_writer *w) {
    if (!w) return;
    qn_gguf_writer_stream_abort(w);
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (uint64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->kv.p);
    free(w);
}

qn_status qn_gguf_writer_set_version(qn_gguf_writer *w, uint32_t version, qn_error *err) {
    if (version != 2 && version != 3)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: version %u (need 2 or 3)", version);
    w->version = version;
    return QN_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* metadata                                                                                         */

/* Checks the key and records it; the caller then appends the serialized key + value to w->kv. */
static qn_status begin_kv(qn_gguf_writer *w, const char *key, qn_error *err) {
    if (!key || !key[0]) return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: empty key");
    if (w->stream.f)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: key '%s': added after stream_begin", key);
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key))
            return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: key '%s': duplicate", key);
    char **keys = realloc(w->keys, (w->n_kv + 1) * sizeof *keys);
    if (!keys) return qn_error_set(err, QN_ERR_NOMEM, "gguf writer: key '%s': out of memory", key);
    w->keys = keys;
    if (!(keys[w->n_kv] = strdup(key))) return qn_error_set(err, QN_ERR_NOMEM, "gguf writer: out of memory");
    w->n_kv++;
    return QN_OK;
}

static qn_status nomem(const char *key, qn_error *err) {
    return qn_error_set(err, QN_ERR_NOMEM, "gguf writer: key '%s': out of memory", key);
}

static int fixed_type(qn_gguf_type t) { return qn_gguf_type_size(t) > 0; }

qn_status qn_gguf_writer_add_scalar(qn_gguf_writer *w, const char *key, qn_gguf_type type, const void *val,
                                    qn_error *err) {
    if (!fixed_type(type) || !val)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: key '%s': bad scalar type %d", key ? key : "",
                            (int)type);
    if (type == QN_GGUF_TYPE_BOOL && *(const uint8_t *)val > 1)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: key '%s': bool must be 0 or 1", key);
    uint32_t align = 0;
    if (key && !strcmp(key, "general.alignment")) {
        if (type != QN_GGUF_TYPE_UINT32)
            return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: general.alignment must be u32");
        memcpy(&align, val, 4);
        if (!align || (align & (align - 1)))
            return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: general.alignment %u is not a power of two",
                                align);
    }
    qn_status st = begin_kv(w, key, err);
    if (st) return st;
    if (buf_str(&w->kv, key) || buf_u32(&w->kv, (uint32_t)type) || buf_put(&w->kv, val, qn_gguf_type_size(type)))
        return nomem(key, err);
    if (align) w->alignment = align;
    return QN_OK;
}

qn_status qn_gguf_writer_add_u32(qn_gguf_writer *w, const char *key, uint32_t v, qn_error *err) {
    return qn_gguf_writer_add_scalar(w, key, QN_GGUF_TYPE_UINT32, &v, err);
}
qn_status qn_gguf_writer_add_i32(qn_gguf_writer *w, const char *key, int32_t v, qn_error *err) {
    return qn_gguf_writer_add_scalar(w, key, QN_GGUF_TYPE_INT32, &v, err);
}
qn_status qn_gguf_writer_add_u64(qn_gguf_writer *w, const char *key, uint64_t v, qn_error *err) {
    return qn_gguf_writer_add_scalar(w, key, QN_GGUF_TYPE_UINT64, &v, err);
}
qn_status qn_gguf_writer_add_f32(qn_gguf_writer *w, const char *key, float v, qn_error *err) {
    return qn_gguf_writer_add_scalar(w, key, QN_GGUF_TYPE_FLOAT32, &v, err);
}
qn_status qn_gguf_writer_add_bool(qn_gguf_writer *w, const char *key, bool v, qn_error *err) {
    const uint8_t b = v ? 1 : 0;
    return qn_gguf_writer_add_scalar(w, key, QN_GGUF_TYPE_BOOL, &b, err);
}

qn_status qn_gguf_writer_add_str(qn_gguf_writer *w, const char *key, const char *s, qn_error *err) {
    if (!s) return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: key '%s': NULL string", key ? key : "");
    qn_status st = begin_kv(w, key, err);
    if (st) return st;
    if (buf_str(&w->kv, key) || buf_u32(&w->kv, QN_GGUF_TYPE_STRING) || buf_str(&w->kv, s)) return nomem(key, err);
    return QN_OK;
}

qn_status qn_gguf_writer_add_arr(qn_gguf_writer *w, const char *key, qn_gguf_type elem, const void *data,
                                 uint64_t n, qn_error *err) {
    const size_t esz = qn_gguf_type_size(elem);
    if (!esz || (n && !data) || n > SIZE_MAX / esz)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: key '%s': bad array (type %d, n %llu)",
                            key ? key : "", (int)elem, (unsigned long long)n);
    if (elem == QN_GGUF_TYPE_BOOL)
        for (uint64_t j = 0; j < n; j++)
            if (((const uint8_t *)data)[j] > 1)
                return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: key '%s': bool must be 0 or 1", key);
    qn_status st = begin_kv(w, key, err);
    if (st) return st;
    if (buf_str(&w->kv, key) || buf_u32(&w->kv, QN_GGUF_TYPE_ARRAY) || buf_u32(&w->kv, (uint32_t)elem) ||
        buf_u64(&w->kv, n) || buf_put(&w->kv, data, (size_t)n * esz))
        return nomem(key, err);
    return QN_OK;
}

qn_status qn_gguf_writer_add_arr_str(qn_gguf_writer *w, const char *key, const char *const *strs, uint64_t n,
                                     qn_error *err) {
    if (n && !strs) return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: key '%s': NULL array", key ? key : "");
    for (uint64_t j = 0; j < n; j++)
        if (!strs[j])
            return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: key '%s': NULL string %llu", key ? key : "",
                                (unsigned long long)j);
    qn_status st = begin_kv(w, key, err);
    if (st) return st;
    if (buf_str(&w->kv, key) || buf_u32(&w->kv, QN_GGUF_TYPE_ARRAY) || buf_u32(&w->kv, QN_GGUF_TYPE_STRING) ||
        buf_u64(&w->kv, n))
        return nomem(key, err);
    for (uint64_t j = 0; j < n; j++)
        if (buf_str(&w->kv, strs[j])) return nomem(key, err);
    return QN_OK;
}

qn_status qn_gguf_writer_copy_kv(qn_gguf_writer *w, const qn_gguf *g, int64_t i, const char *key, qn_error *err) {
    if (!g || i < 0 || i >= qn_gguf_n_kv(g))
        return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: copy_kv: record %lld out of range", (long long)i);
    char own[256];
    if (!key) {
        const qn_gguf_str k = qn_gguf_key(g, i);
        if (k.len >= sizeof own)
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "gguf writer: copy_kv: key of %llu bytes",
                                (unsigned long long)k.len);
        memcpy(own, k.ptr, (size_t)k.len);
        own[k.len] = 0;
        key = own;
    }
    const qn_gguf_type type = qn_gguf_kv_type(g, i);
    if (fixed_type(type)) return qn_gguf_writer_add_scalar(w, key, type, qn_gguf_kv_data(g, i), err);
    qn_status st = begin_kv(w, key, err);
    if (st) return st;
    if (buf_str(&w->kv, key) || buf_u32(&w->kv, (uint32_t)type)) return nomem(key, err);
    if (type == QN_GGUF_TYPE_STRING) {
        const qn_gguf_str v = qn_gguf_kv_str(g, i);
        return buf_strn(&w->kv, v.ptr, v.len) ? nomem(key, err) : QN_OK;
    }
    const qn_gguf_type elem = qn_gguf_arr_type(g, i);
    const uint64_t n = qn_gguf_arr_n(g, i);
    if (buf_u32(&w->kv, (uint32_t)elem) || buf_u64(&w->kv, n)) return nomem(key, err);
    if (elem == QN_GGUF_TYPE_STRING) {
        for (uint64_t j = 0; j < n; j++) {
            const qn_gguf_str v = qn_gguf_arr_str(g, i, j);
            if (buf_strn(&w->kv, v.ptr, v.len)) return nomem(key, err);
        }
        return QN_OK;
    }
    return buf_put(&w->kv, qn_gguf_arr_data(g, i), (size_t)n * qn_gguf_type_size(elem)) ? nomem(key, err) : QN_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* tensors                                                                                          */

qn_status qn_gguf_writer_add_tensor(qn_gguf_writer *w, const char *name, qn_qformat fmt, uint32_t n_dims,
                                    const int64_t *ne, const void *data, qn_error *err) {
    if (!name || !name[0] || strlen(name) >= 64)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: tensor '%s': name must be 1..63 bytes",
                            name ? name : "");
    if (w->stream.f)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: tensor '%s': added after stream_begin", name);
    if ((unsigned)fmt >= QN_QFORMAT_COUNT || n_dims < 1 || n_dims > 4 || !ne)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: tensor '%s': bad format or n_dims %u", name, n_dims);
    for (uint64_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name))
            return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: tensor '%s': duplicate", name);
    qn_gguf_wtensor t = {.fmt = fmt, .n_dims = n_dims, .ne = {1, 1, 1, 1}, .data = data};
    for (uint32_t j = 0; j < n_dims; j++) {
        if (ne[j] < 0) return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: tensor '%s': ne[%u] < 0", name, j);
        t.ne[j] = ne[j];
    }
    const qn_qformat_traits *tr = &QN_QFORMATS[fmt];
    if (t.ne[0] % tr->block_elems)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: tensor '%s': ne[0] %lld not a multiple of %d",
                            name, (long long)t.ne[0], tr->block_elems);
    uint64_t nb = (uint64_t)(t.ne[0] / tr->block_elems);
    if (__builtin_mul_overflow(nb, (uint64_t)tr->block_bytes, &nb) ||
        __builtin_mul_overflow(nb, (uint64_t)t.ne[1], &nb) || __builtin_mul_overflow(nb, (uint64_t)t.ne[2], &nb) ||
        __builtin_mul_overflow(nb, (uint64_t)t.ne[3], &nb))
        return qn_error_set(err, QN_ERR_OVERFLOW, "gguf writer: tensor '%s': size overflows", name);
    t.nbytes = nb;
    if (w->n_tensors == w->cap_tensors) {
        const uint64_t cap = w->cap_tensors ? 2 * w->cap_tensors : 16;
        qn_gguf_wtensor *p = realloc(w->tensors, cap * sizeof *p);
        if (!p) return qn_error_set(err, QN_ERR_NOMEM, "gguf writer: tensor '%s': out of memory", name);
        w->tensors = p;
        w->cap_tensors = cap;
    }
    if (!(t.name = strdup(name))) return qn_error_set(err, QN_ERR_NOMEM, "gguf writer: out of memory");
    w->tensors[w->n_tensors++] = t;
    return QN_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* output                                                                                           */

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Serializes header, metadata and tensor infos (no padding). */
static int build_head(const qn_gguf_writer *w, qn_gguf_buf *h) {
    if (buf_put(h, QN_GGUF_MAGIC_BYTES, 4) || buf_u32(h, w->version) || buf_u64(h, w->n_tensors) ||
        buf_u64(h, w->n_kv) || buf_put(h, w->kv.p, w->kv.len))
        return -1;
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const qn_gguf_wtensor *t = &w->tensors[i];
        if (buf_str(h, t->name) || buf_u32(h, t->n_dims)) return -1;
        for (uint32_t j = 0; j < t->n_dims; j++)
            if (buf_u64(h, (uint64_t)t->ne[j])) return -1;
        if (buf_u32(h, QN_QFORMATS[t->fmt].ggml_type) || buf_u64(h, off)) return -1;
        off += align_up(t->nbytes, w->alignment);
    }
    return 0;
}

static uint64_t head_size(const qn_gguf_writer *w) {
    uint64_t n = 4 + 4 + 8 + 8 + w->kv.len;
    for (uint64_t i = 0; i < w->n_tensors; i++)
        n += 8 + strlen(w->tensors[i].name) + 4 + 8 * (uint64_t)w->tensors[i].n_dims + 4 + 8;
    return n;
}

uint64_t qn_gguf_writer_size(const qn_gguf_writer *w) {
    uint64_t n = head_size(w);
    if (!w->n_tensors) return n;
    n = align_up(n, w->alignment);
    for (uint64_t i = 0; i < w->n_tensors; i++) n += align_up(w->tensors[i].nbytes, w->alignment);
    return n;
}

/* Output sink: copies into a pre-sized buffer (mem) or streams to a FILE. */
typedef struct qn_gguf_sink {
    uint8_t *mem;
    FILE *f;
    uint64_t pos;
} qn_gguf_sink;

/* Appends n bytes from p, or n zero bytes when p is NULL. Returns -1 on a write error. */
static int sink_put(qn_gguf_sink *s, const void *p, uint64_t n) {
    static const uint8_t zeros[4096];
    const uint8_t *b = p;
    while (n) {
        const size_t c = b ? (size_t)n : (size_t)(n < sizeof zeros ? n : sizeof zeros);
        const void *src = b ? (const void *)b : (const void *)zeros;
        if (s->mem) memcpy(s->mem + s->pos, src, c);
        else if (fwrite(src, 1, c, s->f) != c) return -1;
        s->pos += c;
        n -= c;
        if (b) b += c;
    }
    return 0;
}

static qn_status emit(const qn_gguf_writer *w, qn_gguf_sink *s, const char *what, qn_error *err) {
    qn_gguf_buf h = {0};
    if (build_head(w, &h)) {
        free(h.p);
        return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", what);
    }
    int bad = sink_put(s, h.p, h.len);
    free(h.p);
    if (w->n_tensors && !bad) bad = sink_put(s, NULL, align_up(s->pos, w->alignment) - s->pos);
    for (uint64_t i = 0; i < w->n_tensors && !bad; i++) {
        const qn_gguf_wtensor *t = &w->tensors[i];
        bad = sink_put(s, t->data, t->nbytes) || sink_put(s, NULL, align_up(t->nbytes, w->alignment) - t->nbytes);
    }
    return bad ? qn_error_set(err, QN_ERR_IO, "%s: write: %s", what, strerror(errno)) : QN_OK;
}

qn_status qn_gguf_writer_write_memory(const qn_gguf_writer *w, void **buf, size_t *len, qn_error *err) {
    const uint64_t n = qn_gguf_writer_size(w);
    if (n > SIZE_MAX) return qn_error_set(err, QN_ERR_OVERFLOW, "gguf writer: image too large");
    uint8_t *mem = malloc(n ? (size_t)n : 1);
    if (!mem) return qn_error_set(err, QN_ERR_NOMEM, "gguf writer: cannot allocate %llu bytes", (unsigned long long)n);
    qn_gguf_sink sink = {.mem = mem};
    const qn_status st = emit(w, &sink, "gguf writer", err);
    if (st) {
        free(mem);
        return st;
    }
    *buf = mem;
    *len = (size_t)n;
    return QN_OK;
}

qn_status qn_gguf_writer_write_file(const qn_gguf_writer *w, const char *path, qn_error *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return qn_error_set(err, QN_ERR_IO, "%s: open for writing: %s", path, strerror(errno));
    qn_gguf_sink sink = {.f = f};
    qn_status st = emit(w, &sink, path, err);
    if (fclose(f) != 0 && st == QN_OK) st = qn_error_set(err, QN_ERR_IO, "%s: close: %s", path, strerror(errno));
    return st;
}

/* ------------------------------------------------------------------------------------------------ */
/* streaming output                                                                                 */

void qn_gguf_writer_stream_abort(qn_gguf_writer *w) {
    qn_gguf_wstream *s = w ? &w->stream : NULL;
    if (!s) return;
    if (s->f) {
        fclose(s->f);
        remove(s->tmp_path);
    }
    free(s->path);
    free(s->tmp_path);
    memset(s, 0, sizeof *s);
}

/* Fails the stream: removes the temp file, then reports. */
static qn_status stream_fail(qn_gguf_writer *w, qn_status code, const char *what, qn_error *err) {
    const int e = errno;
    char path[1024];
    snprintf(path, sizeof path, "%s", w->stream.tmp_path ? w->stream.tmp_path : "?");
    qn_gguf_writer_stream_abort(w);
    return qn_error_set(err, code, "%s: %s%s%s", path, what, e && code == QN_ERR_IO ? ": " : "",
                        e && code == QN_ERR_IO ? strerror(e) : "");
}

qn_status qn_gguf_writer_stream_begin(qn_gguf_writer *w, const char *path, qn_error *err) {
    qn_gguf_wstream *s = &w->stream;
    if (s->f) return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: a stream is already open (%s)", s->path);
    const size_t n = strlen(path);
    s->path = strdup(path);
    s->tmp_path = malloc(n + 5);
    if (!s->path || !s->tmp_path) {
        qn_gguf_writer_stream_abort(w);
        return qn_error_set(err, QN_ERR_NOMEM, "gguf writer: out of memory");
    }
    memcpy(s->tmp_path, path, n);
    memcpy(s->tmp_path + n, ".tmp", 5);
    errno = 0;
    s->f = fopen(s->tmp_path, "wb");
    if (!s->f) {
        const int e = errno;
        qn_error_set(err, QN_ERR_IO, "%s: open for writing: %s", s->tmp_path, strerror(e));
        qn_gguf_writer_stream_abort(w);
        return QN_ERR_IO;
    }
    qn_gguf_buf h = {0};
    if (build_head(w, &h)) {
        free(h.p);
        return stream_fail(w, QN_ERR_NOMEM, "out of memory", err);
    }
    qn_gguf_sink sink = {.f = s->f};
    int bad = sink_put(&sink, h.p, h.len);
    free(h.p);
    if (w->n_tensors && !bad) bad = sink_put(&sink, NULL, align_up(sink.pos, w->alignment) - sink.pos);
    if (bad) return stream_fail(w, QN_ERR_IO, "write", err);
    s->tensor = 0;
    s->done = 0;
    return QN_OK;
}

qn_status qn_gguf_writer_stream_put(qn_gguf_writer *w, const void *data, uint64_t n, qn_error *err) {
    qn_gguf_wstream *s = &w->stream;
    if (!s->f) return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: stream_put without stream_begin");
    const uint8_t *p = data;
    qn_gguf_sink sink = {.f = s->f};
    while (n) {
        if (s->tensor >= w->n_tensors) return stream_fail(w, QN_ERR_INVALID_ARG, "more data than the tensors hold", err);
        const qn_gguf_wtensor *t = &w->tensors[s->tensor];
        const uint64_t take = n < t->nbytes - s->done ? n : t->nbytes - s->done;
        errno = 0;
        if (sink_put(&sink, p, take)) return stream_fail(w, QN_ERR_IO, "write", err);
        p += take;
        n -= take;
        s->done += take;
        if (s->done == t->nbytes) {
            if (sink_put(&sink, NULL, align_up(t->nbytes, w->alignment) - t->nbytes))
                return stream_fail(w, QN_ERR_IO, "write", err);
            s->tensor++;
            s->done = 0;
        }
    }
    /* zero-sized tensors take no data: step over them so stream_tensor() stays exact */
    while (s->tensor < w->n_tensors && w->tensors[s->tensor].nbytes == 0) s->tensor++;
    return QN_OK;
}

qn_status qn_gguf_writer_stream_end(qn_gguf_writer *w, qn_error *err) {
    qn_gguf_wstream *s = &w->stream;
    if (!s->f) return qn_error_set(err, QN_ERR_INVALID_ARG, "gguf writer: stream_end without stream_begin");
    qn_status st = qn_gguf_writer_stream_put(w, NULL, 0, err); /* skips trailing empty tensors */
    if (st) return st;
    if (s->tensor < w->n_tensors) {
        char what[160];
        snprintf(what, sizeof what, "stream ended in tensor '%s' (%llu of %llu bytes)", w->tensors[s->tensor].name,
                 (unsigned long long)s->done, (unsigned long long)w->tensors[s->tensor].nbytes);
        errno = 0;
        return stream_fail(w, QN_ERR_INVALID_ARG, what, err);
    }
    errno = 0;
    FILE *f = s->f;
    s->f = NULL;
    if (fflush(f) != 0 || fclose(f) != 0) {
        const int e = errno;
        remove(s->tmp_path);
        st = qn_error_set(err, QN_ERR_IO, "%s: close: %s", s->tmp_path, strerror(e));
    } else if (rename(s->tmp_path, s->path) != 0) {
        const int e = errno;
        remove(s->tmp_path);
        st = qn_error_set(err, QN_ERR_IO, "%s: rename to %s: %s", s->tmp_path, s->path, strerror(e));
    }
    qn_gguf_writer_stream_abort(w); /* frees the names; the file is already closed */
    return st;
}

uint64_t qn_gguf_writer_stream_tensor(const qn_gguf_writer *w) { return w->stream.tensor; }
