/* safetensors_write.c — safetensors writer (contract in safetensors_write.h). */
#include "model/safetensors_write.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_wtensor {
    char *name;
    qn_st_dtype dtype;
    uint32_t n_dims;
    int64_t shape[QN_ST_MAX_DIMS];
    uint64_t nbytes;
} st_wtensor;

struct qn_st_writer {
    st_wtensor *t; /* [n] */
    int64_t n, cap;
    json_t *meta;  /* string -> string */
};

qn_status qn_st_writer_create(qn_st_writer **out, qn_error *err) {
    qn_st_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->meta = json_object())) {
        free(w);
        return qn_error_set(err, QN_ERR_NOMEM, "safetensors writer: out of memory");
    }
    *out = w;
    return QN_OK;
}

void qn_st_writer_destroy(qn_st_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    json_decref(w->meta);
    free(w);
}

qn_status qn_st_writer_add_metadata(qn_st_writer *w, const char *key, const char *val, qn_error *err) {
    json_t *s = json_string(val);
    if (!s || json_object_set_new(w->meta, key, s))
        return qn_error_set(err, QN_ERR_INVALID_ARG, "safetensors writer: metadata '%s': not valid UTF-8", key);
    return QN_OK;
}

qn_status qn_st_writer_add(qn_st_writer *w, const char *name, qn_st_dtype dtype, uint32_t n_dims,
                           const int64_t *shape, qn_error *err) {
    if (!name || !*name || (unsigned)dtype >= QN_ST_DTYPE_COUNT || n_dims > QN_ST_MAX_DIMS || !strcmp(name, "__metadata__"))
        return qn_error_set(err, QN_ERR_INVALID_ARG, "safetensors writer: tensor '%s': bad name, dtype or rank",
                            name ? name : "(null)");
    for (int64_t i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return qn_error_set(err, QN_ERR_INVALID_ARG, "safetensors writer: tensor '%s' added twice", name);
    if (w->n == w->cap) {
        const int64_t cap = w->cap ? 2 * w->cap : 64;
        st_wtensor *t = realloc(w->t, sizeof *t * (size_t)cap);
        if (!t) return qn_error_set(err, QN_ERR_NOMEM, "safetensors writer: out of memory");
        w->t = t;
        w->cap = cap;
    }
    st_wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (shape[d] < 0) return qn_error_set(err, QN_ERR_INVALID_ARG, "safetensors writer: tensor '%s': shape < 0", name);
        t->shape[d] = shape[d];
        n *= (uint64_t)shape[d];
    }
    if (!(t->name = strdup(name))) return qn_error_set(err, QN_ERR_NOMEM, "safetensors writer: out of memory");
    t->dtype = dtype;
    t->n_dims = n_dims;
    t->nbytes = n * qn_st_dtype_size(dtype);
    w->n++;
    return QN_OK;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp((*(const st_wtensor *const *)a)->name, (*(const st_wtensor *const *)b)->name);
}

/* The header JSON for the tensors in `order`, data offsets assigned in that order. */
static char *header_json(const qn_st_writer *w, st_wtensor *const *order, size_t *len) {
    json_t *root = json_object();
    if (!root) return NULL;
    if (json_object_size(w->meta)) json_object_set(root, "__metadata__", w->meta);
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n; i++) {
        const st_wtensor *t = order[i];
        json_t *shape = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", qn_st_dtype_name(t->dtype), "shape", shape,
                              "data_offsets", (json_int_t)off, (json_int_t)(off + t->nbytes));
        if (!e || json_object_set_new(root, t->name, e)) {
            json_decref(root);
            return NULL;
        }
        off += t->nbytes;
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    if (s) *len = strlen(s);
    return s;
}

qn_status qn_st_writer_write_file(const qn_st_writer *w, const char *path, qn_st_fill_fn fill, void *ud,
                                  qn_error *err) {
    qn_status st = QN_OK;
    st_wtensor **order = malloc(sizeof *order * (size_t)(w->n ? w->n : 1));
    char *tmp = malloc(strlen(path) + 5);
    char *hdr = NULL;
    void *buf = NULL;
    FILE *f = NULL;
    if (!order || !tmp) {
        st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    sprintf(tmp, "%s.tmp", path);
    uint64_t max_bytes = 1;
    for (int64_t i = 0; i < w->n; i++) {
        order[i] = &w->t[i];
        if (w->t[i].nbytes > max_bytes) max_bytes = w->t[i].nbytes;
    }
    qsort(order, (size_t)w->n, sizeof *order, name_cmp);
    size_t hlen = 0;
    if (!(hdr = header_json(w, order, &hlen)) || !(buf = malloc((size_t)max_bytes))) {
        st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    const size_t padded = (hlen + 7) / 8 * 8;
    uint8_t n8[8];
    for (int b = 0; b < 8; b++) n8[b] = (uint8_t)((uint64_t)padded >> (8 * b));
    if (!(f = fopen(tmp, "wb"))) {
        st = qn_error_set(err, QN_ERR_IO, "%s: open for writing: %s", tmp, strerror(errno));
        goto done;
    }
    int ok = fwrite(n8, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen;
    for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    for (int64_t i = 0; ok && i < w->n; i++) {
        if ((st = fill(ud, order[i]->name, buf, order[i]->nbytes, err))) goto done;
        ok = fwrite(buf, 1, (size_t)order[i]->nbytes, f) == order[i]->nbytes;
    }
    const int e = errno;
    if (fclose(f) != 0 || !ok) {
        f = NULL;
        st = qn_error_set(err, QN_ERR_IO, "%s: write: %s", tmp, strerror(e ? e : errno));
        goto done;
    }
    f = NULL;
    if (rename(tmp, path) != 0) st = qn_error_set(err, QN_ERR_IO, "%s: rename to %s: %s", tmp, path, strerror(errno));
done:
    if (f) fclose(f);
    if (st != QN_OK && tmp) remove(tmp);
    free(buf);
    free(hdr);
    free(tmp);
    free(order);
    return st;
}
