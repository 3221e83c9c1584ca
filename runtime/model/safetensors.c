/* safetensors.c — safetensors reader (contract in safetensors.h). Each shard is mmapped, its JSON
 * header parsed with jansson and checked entry by entry; the tensor table keeps copies of the names
 * and views into the mappings. A jansson object serves as the name -> index map. */
#include "model/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define QN_ST_INDEX_NAME "model.safetensors.index.json"
#define QN_ST_SINGLE_NAME "model.safetensors"

typedef struct qn_st_shard {
    char *path;
    const uint8_t *base; /* [size] image */
    uint64_t size;
    void *map;           /* our mmap, or NULL (memory image / empty file) */
} qn_st_shard;

struct qn_st {
    char *path;
    qn_st_shard *shards;     /* [n_shards] */
    int64_t n_shards;
    qn_st_tensor *tensors;   /* [n_tensors] */
    int64_t n_tensors, cap_tensors;
    json_t *index;           /* object: name -> integer index into tensors */
    json_t *meta;            /* object: __metadata__ key -> string */
};

/* Span of one tensor in its shard's byte buffer, for the overlap check. */
typedef struct qn_st_span {
    uint64_t begin, end;
    int64_t tensor;
} qn_st_span;

static const struct {
    const char *name;
    uint8_t size;
} QN_ST_DTYPES[QN_ST_DTYPE_COUNT] = {
    [QN_ST_DTYPE_F64] = {"F64", 8}, [QN_ST_DTYPE_F32] = {"F32", 4}, [QN_ST_DTYPE_F16] = {"F16", 2},
    [QN_ST_DTYPE_BF16] = {"BF16", 2}, [QN_ST_DTYPE_I64] = {"I64", 8}, [QN_ST_DTYPE_I32] = {"I32", 4},
    [QN_ST_DTYPE_I16] = {"I16", 2}, [QN_ST_DTYPE_I8] = {"I8", 1}, [QN_ST_DTYPE_U8] = {"U8", 1},
    [QN_ST_DTYPE_BOOL] = {"BOOL", 1},
};

const char *qn_st_dtype_name(qn_st_dtype d) {
    return (unsigned)d < QN_ST_DTYPE_COUNT ? QN_ST_DTYPES[d].name : "invalid";
}

size_t qn_st_dtype_size(qn_st_dtype d) { return (unsigned)d < QN_ST_DTYPE_COUNT ? QN_ST_DTYPES[d].size : 0; }

static int dtype_parse(const char *s, qn_st_dtype *out) {
    for (int d = 0; d < QN_ST_DTYPE_COUNT; d++)
        if (!strcmp(s, QN_ST_DTYPES[d].name)) {
            *out = (qn_st_dtype)d;
            return 1;
        }
    return 0;
}

static uint64_t le64(const uint8_t *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

/* ------------------------------------------------------------------------------------------------ */
/* one shard                                                                                        */

/* Parses one tensor entry of shard si; appends it to the table and its span to spans. */
static qn_status parse_entry(qn_st *st, int64_t si, const char *name, json_t *v, uint64_t data_start,
                             qn_st_span *span, qn_error *err) {
    const qn_st_shard *sh = &st->shards[si];
    const char *file = sh->path;
    if (!json_is_object(v))
        return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': entry is not an object", file, name);
    qn_st_tensor t = {.shard = sh->path};
    for (int j = 0; j < QN_ST_MAX_DIMS; j++) t.shape[j] = 1;

    json_t *jd = json_object_get(v, "dtype");
    if (!json_is_string(jd))
        return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': dtype missing or not a string", file, name);
    if (!dtype_parse(json_string_value(jd), &t.dtype))
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s': dtype '%s' is not supported", file, name,
                            json_string_value(jd));

    json_t *js = json_object_get(v, "shape");
    if (!json_is_array(js))
        return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': shape missing or not an array", file, name);
    if (json_array_size(js) > QN_ST_MAX_DIMS)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s': shape has %zu dims > %d", file, name,
                            json_array_size(js), QN_ST_MAX_DIMS);
    t.n_dims = (uint32_t)json_array_size(js);
    uint64_t nbytes = qn_st_dtype_size(t.dtype);
    for (uint32_t j = 0; j < t.n_dims; j++) {
        json_t *e = json_array_get(js, j);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': shape[%u] is not a non-negative integer", file,
                                name, j);
        t.shape[j] = json_integer_value(e);
        if (__builtin_mul_overflow(nbytes, (uint64_t)t.shape[j], &nbytes))
            return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': shape byte count overflows", file, name);
    }
    t.nbytes = nbytes;

    json_t *jo = json_object_get(v, "data_offsets");
    json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(jb) || !json_is_integer(je) ||
        json_integer_value(jb) < 0 || json_integer_value(je) < 0)
        return qn_error_set(err, QN_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets is not [begin, end] of non-negative integers", file, name);
    const uint64_t b = (uint64_t)json_integer_value(jb), e = (uint64_t)json_integer_value(je);
    const uint64_t buf_size = sh->size - data_start;
    if (b > e || e > buf_size)
        return qn_error_set(err, QN_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] outside the %llu-byte buffer", file, name,
                            (unsigned long long)b, (unsigned long long)e, (unsigned long long)buf_size);
    if (e - b != nbytes)
        return qn_error_set(err, QN_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets span %llu bytes but dtype %s x shape needs %llu", file, name,
                            (unsigned long long)(e - b), QN_ST_DTYPES[t.dtype].name, (unsigned long long)nbytes);
    t.offset = data_start + b;
    t.data = sh->base + t.offset;

    json_t *prev = json_object_get(st->index, name);
    if (prev)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': duplicate name (also in %s)", file, name,
                            st->tensors[json_integer_value(prev)].shard);
    if (st->n_tensors == st->cap_tensors) {
        const int64_t cap = st->cap_tensors ? 2 * st->cap_tensors : 64;
        qn_st_tensor *p = realloc(st->tensors, (size_t)cap * sizeof *p);
        if (!p) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", file);
        st->tensors = p;
        st->cap_tensors = cap;
    }
    if (!(t.name = strdup(name))) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", file);
    if (json_object_set_new(st->index, name, json_integer(st->n_tensors))) {
        free((char *)t.name);
        return qn_error_set(err, QN_ERR_NOMEM, "%s: tensor '%s': cannot index", file, name);
    }
    *span = (qn_st_span){b, e, st->n_tensors};
    st->tensors[st->n_tensors++] = t;
    return QN_OK;
}

static qn_status parse_metadata(qn_st *st, const char *file, json_t *m, qn_error *err) {
    if (!json_is_object(m)) return qn_error_set(err, QN_ERR_FORMAT, "%s: __metadata__ is not an object", file);
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        if (!json_is_string(v))
            return qn_error_set(err, QN_ERR_FORMAT, "%s: __metadata__ key '%s': value is not a string", file, k);
        if (!json_object_get(st->meta, k) && json_object_set(st->meta, k, v))
            return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", file);
    }
    return QN_OK;
}

static int span_cmp(const void *a, const void *b) {
    const qn_st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static qn_status check_overlap(const qn_st *st, const char *file, qn_st_span *spans, size_t n, qn_error *err) {
    qsort(spans, n, sizeof *spans, span_cmp);
    for (size_t i = 1; i < n; i++)
        if (spans[i].begin < spans[i - 1].end)
            return qn_error_set(err, QN_ERR_FORMAT,
                                "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]", file,
                                st->tensors[spans[i].tensor].name, (unsigned long long)spans[i].begin,
                                (unsigned long long)spans[i].end, st->tensors[spans[i - 1].tensor].name,
                                (unsigned long long)spans[i - 1].begin, (unsigned long long)spans[i - 1].end);
    return QN_OK;
}

static qn_status parse_shard(qn_st *st, int64_t si, qn_error *err) {
    const qn_st_shard *sh = &st->shards[si];
    const char *file = sh->path;
    if (sh->size < 8)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: header size: file of %llu bytes is shorter than 8", file,
                            (unsigned long long)sh->size);
    const uint64_t n = le64(sh->base);
    if (n > QN_ST_MAX_HEADER)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: header size %llu exceeds the limit %llu", file,
                            (unsigned long long)n, QN_ST_MAX_HEADER);
    if (n > sh->size - 8)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: header size %llu exceeds the %llu bytes after it", file,
                            (unsigned long long)n, (unsigned long long)(sh->size - 8));
    if (n < 2 || sh->base[8] != '{')
        return qn_error_set(err, QN_ERR_FORMAT, "%s: header: JSON does not start with '{'", file);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)sh->base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: header JSON: %s (line %d, column %d)", file, jerr.text, jerr.line,
                            jerr.column);
    qn_status rc = QN_OK;
    qn_st_span *spans = NULL;
    if (!json_is_object(root)) {
        rc = qn_error_set(err, QN_ERR_FORMAT, "%s: header JSON is not an object", file);
        goto done;
    }
    spans = malloc((json_object_size(root) + 1) * sizeof *spans);
    if (!spans) {
        rc = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", file);
        goto done;
    }
    size_t n_spans = 0;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (!strcmp(k, "__metadata__")) rc = parse_metadata(st, file, v, err);
        else rc = parse_entry(st, si, k, v, 8 + n, &spans[n_spans++], err);
        if (rc) goto done;
    }
    rc = check_overlap(st, file, spans, n_spans, err);
done:
    free(spans);
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */
/* files and shards                                                                                 */

static qn_status map_file(qn_st_shard *sh, qn_error *err) {
    const int fd = open(sh->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qn_error_set(err, errno == ENOENT ? QN_ERR_NOT_FOUND : QN_ERR_IO, "%s: open: %s", sh->path,
                            strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return qn_error_set(err, QN_ERR_IO, "%s: not a regular file", sh->path);
    }
    sh->size = (uint64_t)sb.st_size;
    sh->base = (const uint8_t *)"";
    if (sh->size > 0) {
        void *m = mmap(NULL, sh->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            const int e = errno;
            close(fd);
            return qn_error_set(err, QN_ERR_IO, "%s: mmap: %s", sh->path, strerror(e));
        }
        sh->map = m;
        sh->base = m;
    }
    close(fd);
    return QN_OK;
}

static qn_st *st_new(const char *path, int64_t n_shards) {
    qn_st *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->path = strdup(path);
    st->shards = calloc((size_t)n_shards, sizeof *st->shards);
    st->index = json_object();
    st->meta = json_object();
    if (!st->path || !st->shards || !st->index || !st->meta) {
        qn_st_close(st);
        return NULL;
    }
    st->n_shards = n_shards;
    return st;
}

void qn_st_close(qn_st *st) {
    if (!st) return;
    for (int64_t i = 0; i < st->n_tensors; i++) free((char *)st->tensors[i].name);
    free(st->tensors);
    for (int64_t i = 0; i < st->n_shards; i++) {
        if (st->shards[i].map) munmap(st->shards[i].map, st->shards[i].size);
        free(st->shards[i].path);
    }
    free(st->shards);
    json_decref(st->index);
    json_decref(st->meta);
    free(st->path);
    free(st);
}

qn_status qn_st_open_memory(const void *buf, size_t len, const char *label, qn_st **out, qn_error *err) {
    if (!out || (!buf && len)) return qn_error_set(err, QN_ERR_INVALID_ARG, "qn_st_open_memory: NULL argument");
    *out = NULL;
    if (!label) label = "<memory>";
    qn_st *st = st_new(label, 1);
    if (!st || !(st->shards[0].path = strdup(label))) {
        qn_st_close(st);
        return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", label);
    }
    st->shards[0].base = buf ? buf : (const void *)"";
    st->shards[0].size = len;
    const qn_status rc = parse_shard(st, 0, err);
    if (rc) {
        qn_st_close(st);
        return rc;
    }
    *out = st;
    return QN_OK;
}

static qn_status open_single(const char *path, qn_st **out, qn_error *err) {
    qn_st *st = st_new(path, 1);
    if (!st || !(st->shards[0].path = strdup(path))) {
        qn_st_close(st);
        return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", path);
    }
    qn_status rc = map_file(&st->shards[0], err);
    if (!rc) rc = parse_shard(st, 0, err);
    if (rc) {
        qn_st_close(st);
        return rc;
    }
    *out = st;
    return QN_OK;
}

/* A weight_map file name must stay inside the checkpoint directory. */
static int shard_name_ok(const char *s) { return s[0] && s[0] != '/' && !strstr(s, ".."); }

/* Checks weight_map against what the shards hold: every entry present, and in the named shard. */
static qn_status check_weight_map(const qn_st *st, const char *path, json_t *wm, const char *dir, qn_error *err) {
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v) {
        json_t *ix = json_object_get(st->index, k);
        if (!ix)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: weight_map tensor '%s': not found in shard '%s'", path, k,
                                json_string_value(v));
        const char *shard = st->tensors[json_integer_value(ix)].shard;
        const size_t dl = strlen(dir);
        if (strncmp(shard, dir, dl) || shard[dl] != '/' || strcmp(shard + dl + 1, json_string_value(v)))
            return qn_error_set(err, QN_ERR_FORMAT, "%s: weight_map tensor '%s': mapped to '%s' but found in %s",
                                path, k, json_string_value(v), shard);
    }
    return QN_OK;
}

static qn_status open_index(const char *path, qn_st **out, qn_error *err) {
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return qn_error_set(err, access(path, R_OK) ? QN_ERR_IO : QN_ERR_FORMAT, "%s: %s (line %d, column %d)", path,
                            jerr.text, jerr.line, jerr.column);
    qn_status rc = QN_OK;
    qn_st *st = NULL;
    char *dir = strdup(path);
    json_t *files = json_array(); /* unique shard names, in order of first mention */
    json_t *seen = json_object();
    if (!dir || !files || !seen) {
        rc = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else strcpy(dir, ".");
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        rc = qn_error_set(err, QN_ERR_FORMAT, "%s: key 'weight_map' missing or not an object", path);
        goto done;
    }
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v) {
        if (!json_is_string(v) || !shard_name_ok(json_string_value(v))) {
            rc = qn_error_set(err, QN_ERR_FORMAT, "%s: weight_map tensor '%s': shard is not a relative file name", path,
                              k);
            goto done;
        }
        if (!json_object_get(seen, json_string_value(v))) {
            if (json_object_set_new(seen, json_string_value(v), json_true()) || json_array_append(files, v)) {
                rc = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", path);
                goto done;
            }
        }
    }
    const int64_t n = (int64_t)json_array_size(files);
    if (n == 0) {
        rc = qn_error_set(err, QN_ERR_FORMAT, "%s: weight_map is empty", path);
        goto done;
    }
    if (!(st = st_new(path, n))) {
        rc = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int64_t i = 0; i < n && !rc; i++) {
        const char *f = json_string_value(json_array_get(files, (size_t)i));
        const size_t len = strlen(dir) + 1 + strlen(f) + 1;
        if (!(st->shards[i].path = malloc(len))) {
            rc = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        snprintf(st->shards[i].path, len, "%s/%s", dir, f);
        rc = map_file(&st->shards[i], err);
        if (!rc) rc = parse_shard(st, i, err);
    }
    if (!rc) rc = check_weight_map(st, path, wm, dir, err);
done:
    if (rc) qn_st_close(st);
    else *out = st;
    json_decref(seen);
    json_decref(files);
    json_decref(root);
    free(dir);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* In a directory: the index, else model.safetensors, else the only *.safetensors file. */
static qn_status open_dir(const char *path, qn_st **out, qn_error *err) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", path, QN_ST_INDEX_NAME);
    if (access(buf, F_OK) == 0) return open_index(buf, out, err);
    snprintf(buf, sizeof buf, "%s/%s", path, QN_ST_SINGLE_NAME);
    if (access(buf, F_OK) == 0) return open_single(buf, out, err);
    DIR *d = opendir(path);
    if (!d) return qn_error_set(err, QN_ERR_IO, "%s: opendir: %s", path, strerror(errno));
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (ends_with(e->d_name, ".safetensors") && found++ == 0) snprintf(buf, sizeof buf, "%s/%s", path, e->d_name);
    closedir(d);
    if (found != 1)
        return qn_error_set(err, QN_ERR_NOT_FOUND, "%s: no %s, no %s, and %d other .safetensors files", path,
                            QN_ST_INDEX_NAME, QN_ST_SINGLE_NAME, found);
    return open_single(buf, out, err);
}

qn_status qn_st_open(const char *path, qn_st **out, qn_error *err) {
    if (!path || !out) return qn_error_set(err, QN_ERR_INVALID_ARG, "qn_st_open: NULL argument");
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return qn_error_set(err, errno == ENOENT ? QN_ERR_NOT_FOUND : QN_ERR_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return open_dir(path, out, err);
    if (ends_with(path, ".json")) return open_index(path, out, err);
    return open_single(path, out, err);
}

/* ------------------------------------------------------------------------------------------------ */
/* queries                                                                                          */

int64_t qn_st_n_tensors(const qn_st *st) { return st->n_tensors; }

const qn_st_tensor *qn_st_tensor_at(const qn_st *st, int64_t i) {
    return (i >= 0 && i < st->n_tensors) ? &st->tensors[i] : NULL;
}

const qn_st_tensor *qn_st_find(const qn_st *st, const char *name) {
    json_t *ix = name ? json_object_get(st->index, name) : NULL;
    return ix ? &st->tensors[json_integer_value(ix)] : NULL;
}

int64_t qn_st_n_shards(const qn_st *st) { return st->n_shards; }

const char *qn_st_shard_path(const qn_st *st, int64_t i) {
    return (i >= 0 && i < st->n_shards) ? st->shards[i].path : NULL;
}

const char *qn_st_path(const qn_st *st) { return st->path; }

const char *qn_st_metadata(const qn_st *st, const char *key) {
    return key ? json_string_value(json_object_get(st->meta, key)) : NULL;
}

int64_t qn_st_n_metadata(const qn_st *st) { return (int64_t)json_object_size(st->meta); }

int qn_st_metadata_at(const qn_st *st, int64_t i, const char **key, const char **val) {
    if (i < 0) return -1;
    void *it = json_object_iter(st->meta);
    for (int64_t j = 0; it && j < i; j++) it = json_object_iter_next(st->meta, it);
    if (!it) return -1;
    *key = json_object_iter_key(it);
    *val = json_string_value(json_object_iter_value(it));
    return 0;
}
