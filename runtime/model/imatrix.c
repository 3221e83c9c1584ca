/* imatrix.c — importance matrices: llama.cpp's GGUF and legacy .dat files, the weights
 * llama-quantize derives from them, and the collecting tap (contract in imatrix.h). */
#include "model/imatrix.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"
#include "model/gguf_write.h"

/* ------------------------------------------------------------------------------------------------ */
/* entries                                                                                          */

qn_status qn_imatrix_create(qn_imatrix **out, qn_error *err) {
    *out = calloc(1, sizeof **out);
    return *out ? QN_OK : qn_error_set(err, QN_ERR_NOMEM, "imatrix: out of memory");
}

void qn_imatrix_free(qn_imatrix *m) {
    if (!m) return;
    for (int32_t i = 0; i < m->n; i++) free(m->e[i].name), free(m->e[i].sums), free(m->e[i].counts);
    for (int32_t i = 0; i < m->n_datasets; i++) free(m->datasets[i]);
    free(m->e);
    free(m->datasets);
    free(m);
}

qn_status qn_imatrix_add_dataset(qn_imatrix *m, const char *path, qn_error *err) {
    char **d = realloc(m->datasets, sizeof(char *) * (size_t)(m->n_datasets + 1));
    if (!d) return qn_error_set(err, QN_ERR_NOMEM, "imatrix: out of memory");
    m->datasets = d;
    if (!(d[m->n_datasets] = strdup(path))) return qn_error_set(err, QN_ERR_NOMEM, "imatrix: out of memory");
    m->n_datasets++;
    return QN_OK;
}

/* Appends an entry with n_mat matrices of n_per_mat zeroed sums and zero counts. */
static qn_imatrix_entry *add_entry(qn_imatrix *m, const char *name, size_t name_len, int64_t n_per_mat,
                                   int32_t n_mat) {
    if (m->n == m->cap) {
        const int32_t cap = m->cap ? 2 * m->cap : 64;
        qn_imatrix_entry *e = realloc(m->e, sizeof *e * (size_t)cap);
        if (!e) return NULL;
        m->e = e;
        m->cap = cap;
    }
    qn_imatrix_entry *e = &m->e[m->n];
    *e = (qn_imatrix_entry){.n_per_mat = n_per_mat, .n_mat = n_mat};
    e->name = strndup(name, name_len);
    e->sums = calloc((size_t)(n_per_mat * n_mat), sizeof(float));
    e->counts = calloc((size_t)n_mat, sizeof(int64_t));
    if (!e->name || !e->sums || !e->counts) {
        free(e->name), free(e->sums), free(e->counts);
        return NULL;
    }
    m->n++;
    return e;
}

qn_imatrix_entry *qn_imatrix_find(qn_imatrix *m, const char *name, int64_t n_per_mat, bool create) {
    for (int32_t i = 0; i < m->n; i++)
        if (!strcmp(m->e[i].name, name)) return &m->e[i];
    return create ? add_entry(m, name, strlen(name), n_per_mat, 1) : NULL;
}

float *qn_imatrix_weights(const qn_imatrix *m, const qn_imatrix_entry *e) {
    const int64_t n = e->n_per_mat;
    float *w = malloc(sizeof(float) * (size_t)(n * e->n_mat));
    if (!w) return NULL;
    for (int32_t k = 0; k < e->n_mat; k++) {
        const float *s = e->sums + k * n;
        float *o = w + k * n;
        if (m->is_legacy) { /* (Σx²/count)*ncall: back to the mean */
            const int64_t ncall = e->counts[0];
            for (int64_t i = 0; i < n; i++) o[i] = ncall > 0 ? s[i] / (float)ncall : s[i];
        } else {
            const float count = (float)e->counts[k];
            for (int64_t i = 0; i < n; i++) o[i] = count > 0.0f ? s[i] / count : 1.0f;
        }
    }
    return w;
}

/* ------------------------------------------------------------------------------------------------ */
/* files                                                                                            */

static bool has_suffix(qn_gguf_str s, const char *suf, size_t *stem) {
    const size_t n = strlen(suf);
    if (s.len <= n || memcmp(s.ptr + s.len - n, suf, n)) return false;
    *stem = (size_t)s.len - n;
    return true;
}

static qn_status load_gguf(qn_gguf *g, qn_imatrix *m, qn_error *err) {
    const char *path = qn_gguf_path(g);
    const int64_t kd = qn_gguf_find_key(g, "imatrix.datasets");
    if (kd >= 0 && qn_gguf_kv_type(g, kd) == QN_GGUF_TYPE_ARRAY && qn_gguf_arr_type(g, kd) == QN_GGUF_TYPE_STRING)
        for (uint64_t j = 0; j < qn_gguf_arr_n(g, kd); j++) {
            const qn_gguf_str s = qn_gguf_arr_str(g, kd, j);
            char *d = strndup(s.ptr, (size_t)s.len);
            qn_status st = d ? qn_imatrix_add_dataset(m, d, err) : qn_error_set(err, QN_ERR_NOMEM, "imatrix: out of memory");
            free(d);
            if (st) return st;
        }
    uint32_t v = 0;
    const bool has_count = qn_gguf_get_u32(g, "imatrix.chunk_count", &v, NULL) == QN_OK;
    m->chunk_count = has_count ? (int32_t)v : 0;
    const bool has_size = qn_gguf_get_u32(g, "imatrix.chunk_size", &v, NULL) == QN_OK;
    m->chunk_size = has_size ? (int32_t)v : 0;
    m->has_metadata = kd >= 0 && has_count && has_size;
    /* pair every "<w>.in_sum2" with its "<w>.counts" */
    for (int64_t i = 0; i < qn_gguf_n_tensors(g); i++) {
        const qn_gguf_tensor *t = qn_gguf_tensor_at(g, i);
        size_t stem;
        if (!has_suffix(t->name, ".in_sum2", &stem)) continue;
        char cname[512];
        if (stem + 8 > sizeof cname) return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor name too long", path);
        memcpy(cname, t->name.ptr, stem);
        strcpy(cname + stem, ".counts");
        const qn_gguf_tensor *c = qn_gguf_find_tensor(g, cname);
        if (!c) return qn_error_set(err, QN_ERR_FORMAT, "%s: %.*s has no .counts", path, (int)stem, t->name.ptr);
        const int64_t nval = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        const int64_t nc = c->ne[0] * c->ne[1] * c->ne[2] * c->ne[3];
        if (t->fmt != QN_QFORMAT_F32 || c->fmt != QN_QFORMAT_F32 || nc < 1 || nval % nc)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: %.*s: sums and counts must be F32 of matching sizes", path,
                                (int)stem, t->name.ptr);
        qn_imatrix_entry *e = add_entry(m, t->name.ptr, stem, nval / nc, (int32_t)nc);
        if (!e) return qn_error_set(err, QN_ERR_NOMEM, "imatrix: out of memory");
        memcpy(e->sums, t->data, sizeof(float) * (size_t)nval);
        for (int64_t j = 0; j < nc; j++) {
            float f;
            memcpy(&f, (const char *)c->data + 4 * j, 4);
            e->counts[j] = lroundf(f);
        }
    }
    if (m->n == 0) return qn_error_set(err, QN_ERR_FORMAT, "%s: no imatrix data (no *.in_sum2 tensors)", path);
    return QN_OK;
}

static bool read_i32(FILE *f, int32_t *v) { return fread(v, 4, 1, f) == 1; }

static qn_status load_dat(const char *path, qn_imatrix *m, qn_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return qn_error_set(err, QN_ERR_NOT_FOUND, "%s: cannot open", path);
    qn_status st = QN_OK;
    int32_t n_entries = 0;
    char *name = NULL;
    if (!read_i32(f, &n_entries) || n_entries < 1 || n_entries > (1 << 20)) {
        st = qn_error_set(err, QN_ERR_FORMAT, "%s: neither GGUF nor a legacy imatrix file", path);
        goto done;
    }
    for (int32_t i = 0; i < n_entries; i++) {
        int32_t len = 0, ncall = 0, nval = 0;
        if (!read_i32(f, &len) || len < 1 || len > 4096 || !(name = malloc((size_t)len)) ||
            fread(name, 1, (size_t)len, f) != (size_t)len || !read_i32(f, &ncall) || !read_i32(f, &nval) ||
            nval < 1) {
            st = qn_error_set(err, QN_ERR_FORMAT, "%s: entry %d is truncated or malformed", path, i);
            goto done;
        }
        qn_imatrix_entry *e = add_entry(m, name, (size_t)len, nval, 1);
        free(name);
        name = NULL;
        if (!e) {
            st = qn_error_set(err, QN_ERR_NOMEM, "imatrix: out of memory");
            goto done;
        }
        if (fread(e->sums, sizeof(float), (size_t)nval, f) != (size_t)nval) {
            st = qn_error_set(err, QN_ERR_FORMAT, "%s: entry %d is truncated", path, i);
            goto done;
        }
        e->counts[0] = ncall;
    }
    int32_t chunks = 0, len = 0;
    if (read_i32(f, &chunks)) { /* optional trailer: chunk count, dataset */
        m->chunk_count = chunks;
        if (read_i32(f, &len) && len > 0 && len < (1 << 16) && (name = calloc(1, (size_t)len + 1)) &&
            fread(name, 1, (size_t)len, f) == (size_t)len)
            st = qn_imatrix_add_dataset(m, name, err);
    }
    m->is_legacy = true;
done:
    free(name);
    fclose(f);
    return st;
}

qn_status qn_imatrix_load(const char *path, qn_imatrix **out, qn_error *err) {
    *out = NULL;
    qn_imatrix *m;
    qn_status st = qn_imatrix_create(&m, err);
    if (st) return st;
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    if (!f) {
        qn_imatrix_free(m);
        return qn_error_set(err, QN_ERR_NOT_FOUND, "%s: cannot open", path);
    }
    const bool is_gguf = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    fclose(f);
    if (is_gguf) {
        qn_gguf *g = NULL;
        if (!(st = qn_gguf_open(path, &g, err))) st = load_gguf(g, m, err);
        qn_gguf_close(g);
    } else {
        st = load_dat(path, m, err);
    }
    if (st) {
        qn_imatrix_free(m);
        return st;
    }
    *out = m;
    return QN_OK;
}

static int cmp_entry_ptr(const void *a, const void *b) {
    return strcmp((*(const qn_imatrix_entry *const *)a)->name, (*(const qn_imatrix_entry *const *)b)->name);
}

/* The entries sorted by name (llama-imatrix's deterministic order); caller frees the array. */
static const qn_imatrix_entry **sorted_entries(const qn_imatrix *m) {
    const qn_imatrix_entry **s = malloc(sizeof *s * (size_t)(m->n ? m->n : 1));
    if (!s) return NULL;
    for (int32_t i = 0; i < m->n; i++) s[i] = &m->e[i];
    qsort(s, (size_t)m->n, sizeof *s, cmp_entry_ptr);
    return s;
}

static qn_status finish_tmp(FILE *f, const char *tmp, const char *path, qn_error *err) {
    const bool ok = !ferror(f);
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0) {
        remove(tmp);
        return qn_error_set(err, QN_ERR_IO, "%s: write failed", path);
    }
    return QN_OK;
}

qn_status qn_imatrix_save_gguf(const qn_imatrix *m, const char *path, qn_error *err) {
    qn_gguf_writer *w = NULL;
    const qn_imatrix_entry **s = sorted_entries(m);
    float **counts = calloc((size_t)(m->n ? m->n : 1), sizeof(float *));
    char name[600];
    qn_status st = s && counts ? QN_OK : qn_error_set(err, QN_ERR_NOMEM, "imatrix: out of memory");
    if (!st) st = qn_gguf_writer_create(&w, err);
    if (!st) st = qn_gguf_writer_add_str(w, "general.type", "imatrix", err);
    if (!st) st = qn_gguf_writer_add_arr_str(w, "imatrix.datasets", (const char *const *)m->datasets,
                                             (uint64_t)m->n_datasets, err);
    if (!st) st = qn_gguf_writer_add_u32(w, "imatrix.chunk_count", (uint32_t)m->chunk_count, err);
    if (!st) st = qn_gguf_writer_add_u32(w, "imatrix.chunk_size", (uint32_t)m->chunk_size, err);
    for (int32_t i = 0; !st && i < m->n; i++) {
        const qn_imatrix_entry *e = s[i];
        if (!(counts[i] = malloc(sizeof(float) * (size_t)e->n_mat))) {
            st = qn_error_set(err, QN_ERR_NOMEM, "imatrix: out of memory");
            break;
        }
        for (int32_t k = 0; k < e->n_mat; k++) counts[i][k] = (float)e->counts[k];
        const int64_t ne_s[2] = {e->n_per_mat, e->n_mat}, ne_c[2] = {1, e->n_mat};
        const uint32_t nd = e->n_mat > 1 ? 2 : 1; /* ggml_n_dims: trailing 1s dropped */
        snprintf(name, sizeof name, "%s.in_sum2", e->name);
        st = qn_gguf_writer_add_tensor(w, name, QN_QFORMAT_F32, nd, ne_s, e->sums, err);
        snprintf(name, sizeof name, "%s.counts", e->name);
        if (!st) st = qn_gguf_writer_add_tensor(w, name, QN_QFORMAT_F32, nd, ne_c, counts[i], err);
    }
    if (!st) st = qn_gguf_writer_write_file(w, path, err);
    qn_gguf_writer_destroy(w);
    for (int32_t i = 0; counts && i < m->n; i++) free(counts[i]);
    free(counts);
    free(s);
    return st;
}

qn_status qn_imatrix_save_dat(const qn_imatrix *m, const char *path, qn_error *err) {
    const qn_imatrix_entry **s = sorted_entries(m);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = s ? fopen(tmp, "wb") : NULL;
    if (!f) {
        free(s);
        return s ? qn_error_set(err, QN_ERR_IO, "%s: cannot create", tmp) : qn_error_set(err, QN_ERR_NOMEM, "imatrix: out of memory");
    }
    const int32_t chunk = m->chunk_size > 0 ? m->chunk_size : 1;
    int32_t n_store = 0;
    for (int32_t i = 0; i < m->n; i++) {
        bool any = false;
        for (int32_t k = 0; k < s[i]->n_mat; k++) any |= s[i]->counts[k] != 0;
        if (any) s[n_store++] = s[i]; /* entries without data are left out, as llama-imatrix does */
    }
    fwrite(&n_store, 4, 1, f);
    for (int32_t i = 0; i < n_store; i++) {
        const qn_imatrix_entry *e = s[i];
        const int32_t len = (int32_t)strlen(e->name), nval = (int32_t)(e->n_per_mat * e->n_mat);
        int64_t cmax = 0;
        for (int32_t k = 0; k < e->n_mat; k++) cmax = e->counts[k] > cmax ? e->counts[k] : cmax;
        const int32_t ncall = (int32_t)((cmax + chunk - 1) / chunk);
        fwrite(&len, 4, 1, f), fwrite(e->name, 1, (size_t)len, f), fwrite(&ncall, 4, 1, f), fwrite(&nval, 4, 1, f);
        for (int32_t j = 0; j < nval; j++) {
            float count = (float)e->counts[j / e->n_per_mat], value = e->sums[j];
            if (count == 0.0f) value = count = 1.0f; /* partial data */
            const float v = (value / count) * (float)ncall;
            fwrite(&v, 4, 1, f);
        }
    }
    fwrite(&m->chunk_count, 4, 1, f);
    const char *ds = m->n_datasets ? m->datasets[m->n_datasets - 1] : "";
    const int32_t dl = (int32_t)strlen(ds);
    fwrite(&dl, 4, 1, f), fwrite(ds, 1, (size_t)dl, f);
    free(s);
    return finish_tmp(f, tmp, path, err);
}

/* ------------------------------------------------------------------------------------------------ */
/* collecting                                                                                       */

/* Adds Σx² of rows[n_tokens][n] (stride ld) to entry `name`, token by token in fp32. */
static qn_imatrix_entry *accumulate(qn_imatrix_collector *c, const char *name, const float *rows, int64_t n_tokens,
                                    int64_t n, int64_t ld) {
    qn_imatrix_entry *e = qn_imatrix_find(c->m, name, n, true);
    if (!e || e->n_per_mat != n) {
        c->st = e ? QN_ERR_FORMAT : QN_ERR_NOMEM;
        return NULL;
    }
    for (int64_t t = 0; t < n_tokens; t++) {
        const float *x = rows + t * ld;
        for (int64_t j = 0; j < n; j++) e->sums[j] += x[j] * x[j];
    }
    e->counts[0] += n_tokens;
    return e;
}

/* Weights sharing one input get the same sums: computed once, copied to the others. */
static void copy_entry(qn_imatrix_collector *c, const qn_imatrix_entry *src, const char *name) {
    if (!src) return;
    const int64_t n = src->n_per_mat;
    const ptrdiff_t src_i = src - c->m->e; /* (find may move the array) */
    qn_imatrix_entry *e = qn_imatrix_find(c->m, name, n, true);
    if (!e || e->n_per_mat != n) {
        c->st = e ? QN_ERR_FORMAT : QN_ERR_NOMEM;
        return;
    }
    src = &c->m->e[src_i];
    memcpy(e->sums, src->sums, sizeof(float) * (size_t)n);
    e->counts[0] = src->counts[0];
}

void qn_imatrix_tap(void *user, const char *name, int layer, const float *rows, int64_t n_tokens, int64_t n,
                    int64_t ld) {
    qn_imatrix_collector *c = user;
    char w[96], w2[96];
    static const struct {
        const char *tap;
        const char *first;     /* weight whose entry accumulates */
        const char *more[2];   /* weights with the same input */
    } MAP[] = {
        {"attn_norm", "attn_q", {"attn_k", "attn_v"}},
        {"kqv_out", "attn_output", {NULL, NULL}},
        {"ffn_norm", "ffn_gate", {"ffn_up", NULL}},
        {"ffn_swiglu", "ffn_down", {NULL, NULL}},
    };
    if (c->st || n_tokens < 16) return; /* llama-imatrix skips matmuls of fewer than 16 rows */
    if (!strcmp(name, "result_norm")) {
        if (c->process_output && c->has_output) accumulate(c, "output.weight", rows, n_tokens, n, ld);
        return;
    }
    for (size_t i = 0; i < sizeof MAP / sizeof MAP[0]; i++) {
        if (strcmp(name, MAP[i].tap)) continue;
        snprintf(w, sizeof w, "blk.%d.%s.weight", layer, MAP[i].first);
        const qn_imatrix_entry *e = accumulate(c, w, rows, n_tokens, n, ld);
        for (int k = 0; k < 2 && MAP[i].more[k]; k++) {
            snprintf(w2, sizeof w2, "blk.%d.%s.weight", layer, MAP[i].more[k]);
            copy_entry(c, e, w2);
            e = qn_imatrix_find(c->m, w, n, false);
        }
        return;
    }
}
