/* test_gguf.c — GGUF reader and writer: round trips of every value type and tensor format through
 * qn_gguf_writer, then hand-built malformed images (a small byte builder below), each asserting the
 * status and that the message names the file, the key or tensor, and the field. Ends with the real
 * SmolLM2 file when it is present. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"
#include "model/gguf_write.h"

/* ------------------------------------------------------------------------------------------------ */
/* byte builder for malformed images                                                                */

typedef struct bb {
    uint8_t *p;
    size_t len, cap;
} bb;

static void bb_put(bb *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}
static void bb_u8(bb *b, uint8_t v) { bb_put(b, &v, 1); }
static void bb_u32(bb *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_strn(bb *b, const char *s, uint64_t n) {
    bb_u64(b, n);
    bb_put(b, s, (size_t)n);
}
static void bb_str(bb *b, const char *s) { bb_strn(b, s, strlen(s)); }
static void bb_header(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
static void bb_pad(bb *b, size_t a) {
    while (b->len % a) bb_u8(b, 0);
}
/* Tensor info: name, dims, ggml type id, offset. */
static void bb_tensor(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t j = 0; j < n_dims; j++) bb_u64(b, ne[j]);
    bb_u32(b, type);
    bb_u64(b, off);
}

/* Opens b and asserts failure with status want and a message holding each non-NULL needle. */
static void expect_fail(const bb *b, qn_status want, const char *n1, const char *n2) {
    qn_gguf *g = NULL;
    qn_error e = {0};
    const qn_status st = qn_gguf_open_memory(b->p, b->len, "bad.gguf", &g, &e);
    if (st != want || !strstr(e.msg, "bad.gguf") || (n1 && !strstr(e.msg, n1)) || (n2 && !strstr(e.msg, n2)))
        print_error("status %d (want %d), message: %s\n  expected: '%s' and '%s'\n", st, want, e.msg, n1 ? n1 : "",
                    n2 ? n2 : "");
    assert_int_equal(st, want);
    assert_int_equal(e.code, want);
    assert_null(g);
    assert_non_null(strstr(e.msg, "bad.gguf"));
    if (n1) assert_non_null(strstr(e.msg, n1));
    if (n2) assert_non_null(strstr(e.msg, n2));
}

static qn_gguf *open_ok(const void *buf, size_t len) {
    qn_gguf *g = NULL;
    qn_error e = {0};
    const qn_status st = qn_gguf_open_memory(buf, len, "ok.gguf", &g, &e);
    if (st) print_error("open failed: %s\n", e.msg);
    assert_int_equal(st, QN_OK);
    assert_non_null(g);
    return g;
}

static int str_is(qn_gguf_str s, const char *lit) { return s.len == strlen(lit) && !memcmp(s.ptr, lit, s.len); }

#define W_OK(call)                                                                                      \
    do {                                                                                                \
        qn_error we_ = {0};                                                                             \
        qn_error *err = &we_;                                                                           \
        const qn_status ws_ = (call);                                                                   \
        if (ws_) print_error("%s: %s\n", #call, we_.msg);                                               \
        assert_int_equal(ws_, QN_OK);                                                                   \
        (void)err;                                                                                      \
    } while (0)

/* ------------------------------------------------------------------------------------------------ */
/* round trips                                                                                      */

static void roundtrip_values(uint32_t version) {
    qn_gguf_writer *w;
    W_OK(qn_gguf_writer_create(&w, err));
    W_OK(qn_gguf_writer_set_version(w, version, err));
    const uint8_t u8 = 200;
    const int8_t i8 = -100;
    const uint16_t u16 = 60000;
    const int16_t i16 = -30000;
    const int64_t i64 = INT64_MIN;
    const double f64 = -2.5e300;
    W_OK(qn_gguf_writer_add_scalar(w, "v.u8", QN_GGUF_TYPE_UINT8, &u8, err));
    W_OK(qn_gguf_writer_add_scalar(w, "v.i8", QN_GGUF_TYPE_INT8, &i8, err));
    W_OK(qn_gguf_writer_add_scalar(w, "v.u16", QN_GGUF_TYPE_UINT16, &u16, err));
    W_OK(qn_gguf_writer_add_scalar(w, "v.i16", QN_GGUF_TYPE_INT16, &i16, err));
    W_OK(qn_gguf_writer_add_u32(w, "v.u32", 4000000000u, err));
    W_OK(qn_gguf_writer_add_i32(w, "v.i32", -2000000000, err));
    W_OK(qn_gguf_writer_add_f32(w, "v.f32", 1.5f, err));
    W_OK(qn_gguf_writer_add_bool(w, "v.bool", true, err));
    W_OK(qn_gguf_writer_add_str(w, "v.str", "héllo", err));
    W_OK(qn_gguf_writer_add_u64(w, "v.u64", UINT64_MAX, err));
    W_OK(qn_gguf_writer_add_scalar(w, "v.i64", QN_GGUF_TYPE_INT64, &i64, err));
    W_OK(qn_gguf_writer_add_scalar(w, "v.f64", QN_GGUF_TYPE_FLOAT64, &f64, err));
    W_OK(qn_gguf_writer_add_str(w, "v.empty", "", err));
    /* one array per fixed-size element type, 5 elements of pattern bytes */
    uint8_t pat[5 * 8];
    for (size_t i = 0; i < sizeof pat; i++) pat[i] = (uint8_t)(i * 37 + 1);
    for (int t = 0; t < QN_GGUF_TYPE_COUNT; t++) {
        if (!qn_gguf_type_size((qn_gguf_type)t)) continue;
        char key[32];
        snprintf(key, sizeof key, "a.%s", qn_gguf_type_name((qn_gguf_type)t));
        uint8_t data[5 * 8];
        memcpy(data, pat, sizeof data);
        if (t == QN_GGUF_TYPE_BOOL)
            for (int j = 0; j < 5; j++) data[j] = (uint8_t)(j & 1);
        W_OK(qn_gguf_writer_add_arr(w, key, (qn_gguf_type)t, data, 5, err));
    }
    const char *strs[] = {"a", "", "longer string", "\n"};
    W_OK(qn_gguf_writer_add_arr_str(w, "a.string", strs, 4, err));
    W_OK(qn_gguf_writer_add_arr(w, "a.empty", QN_GGUF_TYPE_FLOAT32, NULL, 0, err));
    W_OK(qn_gguf_writer_add_arr_str(w, "a.empty_str", NULL, 0, err));
    void *buf;
    size_t len;
    W_OK(qn_gguf_writer_write_memory(w, &buf, &len, err));
    assert_int_equal(len, qn_gguf_writer_size(w));
    qn_gguf_writer_destroy(w);

    qn_gguf *g = open_ok(buf, len);
    assert_int_equal(qn_gguf_version(g), version);
    assert_int_equal(qn_gguf_alignment(g), 32);
    assert_int_equal(qn_gguf_n_tensors(g), 0);
    assert_int_equal(qn_gguf_n_kv(g), 13 + 11 + 3);
    assert_string_equal(qn_gguf_path(g), "ok.gguf");
    assert_int_equal(qn_gguf_file_size(g), len);

    int64_t i = qn_gguf_find_key(g, "v.u8");
    assert_true(i >= 0);
    assert_true(str_is(qn_gguf_key(g, i), "v.u8"));
    assert_int_equal(qn_gguf_kv_type(g, i), QN_GGUF_TYPE_UINT8);
    assert_int_equal(*(const uint8_t *)qn_gguf_kv_data(g, i), 200);
    uint32_t u32;
    int64_t s64;
    float f;
    bool b;
    qn_gguf_str s;
    assert_int_equal(qn_gguf_get_u32(g, "v.u8", &u32, NULL), QN_OK);
    assert_int_equal(u32, 200);
    assert_int_equal(qn_gguf_get_i64(g, "v.i8", &s64, NULL), QN_OK);
    assert_int_equal(s64, -100);
    assert_int_equal(qn_gguf_get_u32(g, "v.u16", &u32, NULL), QN_OK);
    assert_int_equal(u32, 60000);
    assert_int_equal(qn_gguf_get_i64(g, "v.i16", &s64, NULL), QN_OK);
    assert_int_equal(s64, -30000);
    assert_int_equal(qn_gguf_get_u32(g, "v.u32", &u32, NULL), QN_OK);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(qn_gguf_get_i64(g, "v.i32", &s64, NULL), QN_OK);
    assert_int_equal(s64, -2000000000);
    assert_int_equal(qn_gguf_get_f32(g, "v.f32", &f, NULL), QN_OK);
    assert_true(f == 1.5f);
    assert_int_equal(qn_gguf_get_bool(g, "v.bool", &b, NULL), QN_OK);
    assert_true(b);
    assert_int_equal(qn_gguf_get_str(g, "v.str", &s, NULL), QN_OK);
    assert_true(str_is(s, "héllo"));
    assert_true(str_is(qn_gguf_kv_str(g, qn_gguf_find_key(g, "v.str")), "héllo"));
    assert_int_equal(qn_gguf_get_str(g, "v.empty", &s, NULL), QN_OK);
    assert_int_equal(s.len, 0);
    assert_int_equal(qn_gguf_get_i64(g, "v.i64", &s64, NULL), QN_OK);
    assert_true(s64 == INT64_MIN);
    assert_int_equal(qn_gguf_get_f32(g, "v.f64", &f, NULL), QN_OK);
    assert_true(isinf(f) && f < 0); /* saturated: -2.5e300 does not fit f32 */
    uint64_t u64;
    memcpy(&u64, qn_gguf_kv_data(g, qn_gguf_find_key(g, "v.u64")), 8);
    assert_true(u64 == UINT64_MAX);

    for (int t = 0; t < QN_GGUF_TYPE_COUNT; t++) {
        if (!qn_gguf_type_size((qn_gguf_type)t)) continue;
        char key[32];
        snprintf(key, sizeof key, "a.%s", qn_gguf_type_name((qn_gguf_type)t));
        i = qn_gguf_find_key(g, key);
        assert_true(i >= 0);
        assert_int_equal(qn_gguf_kv_type(g, i), QN_GGUF_TYPE_ARRAY);
        assert_int_equal(qn_gguf_arr_type(g, i), t);
        assert_int_equal(qn_gguf_arr_n(g, i), 5);
        assert_null(qn_gguf_kv_data(g, i));
        const uint8_t *d = qn_gguf_arr_data(g, i);
        assert_non_null(d);
        if (t == QN_GGUF_TYPE_BOOL) {
            for (int j = 0; j < 5; j++) assert_int_equal(d[j], j & 1);
        } else {
            assert_memory_equal(d, pat, 5 * qn_gguf_type_size((qn_gguf_type)t));
        }
    }
    i = qn_gguf_find_key(g, "a.string");
    assert_int_equal(qn_gguf_arr_type(g, i), QN_GGUF_TYPE_STRING);
    assert_int_equal(qn_gguf_arr_n(g, i), 4);
    assert_null(qn_gguf_arr_data(g, i));
    for (int j = 0; j < 4; j++) assert_true(str_is(qn_gguf_arr_str(g, i, (uint64_t)j), strs[j]));
    assert_int_equal(qn_gguf_arr_str(g, i, 4).len, 0); /* out of range: empty */
    assert_int_equal(qn_gguf_arr_n(g, qn_gguf_find_key(g, "a.empty")), 0);
    assert_int_equal(qn_gguf_arr_n(g, qn_gguf_find_key(g, "a.empty_str")), 0);
    assert_int_equal(qn_gguf_find_key(g, "nope"), -1);
    assert_int_equal(qn_gguf_kv_type(g, 999), QN_GGUF_TYPE_COUNT);
    qn_gguf_close(g);
    free(buf);
}

static void test_roundtrip_values_v3(void **state) { roundtrip_values(3); }
static void test_roundtrip_values_v2(void **state) { roundtrip_values(2); }

static void test_roundtrip_tensors(void **state) {
    qn_rng rng;
    qn_rng_seed(&rng, 7);
    qn_gguf_writer *w;
    W_OK(qn_gguf_writer_create(&w, err));
    W_OK(qn_gguf_writer_add_u32(w, "general.alignment", 64, err));
    uint8_t *data[QN_QFORMAT_COUNT];
    int64_t ne[QN_QFORMAT_COUNT][4];
    for (int f = 0; f < QN_QFORMAT_COUNT; f++) {
        const qn_qformat_traits *tr = &QN_QFORMATS[f];
        const uint32_t nd = 1 + (uint32_t)(f % 4);
        int64_t shape[4] = {2 * tr->block_elems, 3, 2, 1};
        memcpy(ne[f], shape, sizeof shape);
        const size_t nb = qn_qformat_row_bytes((qn_qformat)f, shape[0]) * (nd > 1 ? 3 : 1) * (nd > 2 ? 2 : 1);
        data[f] = malloc(nb);
        qn_rng_fill_bytes(&rng, data[f], nb);
        char name[64];
        snprintf(name, sizeof name, "t.%s", tr->name);
        W_OK(qn_gguf_writer_add_tensor(w, name, (qn_qformat)f, nd, shape, data[f], err));
    }
    const int64_t zero[2] = {0, 5};
    W_OK(qn_gguf_writer_add_tensor(w, "t.empty", QN_QFORMAT_F32, 2, zero, NULL, err));
    void *buf;
    size_t len;
    W_OK(qn_gguf_writer_write_memory(w, &buf, &len, err));
    qn_gguf_writer_destroy(w);

    qn_gguf *g = open_ok(buf, len);
    assert_int_equal(qn_gguf_alignment(g), 64);
    assert_int_equal(qn_gguf_n_tensors(g), QN_QFORMAT_COUNT + 1);
    assert_int_equal(qn_gguf_data_start(g) % 64, 0);
    for (int f = 0; f < QN_QFORMAT_COUNT; f++) {
        char name[64];
        snprintf(name, sizeof name, "t.%s", QN_QFORMATS[f].name);
        const qn_gguf_tensor *t = qn_gguf_find_tensor(g, name);
        assert_non_null(t);
        assert_ptr_equal(t, qn_gguf_tensor_at(g, f));
        assert_true(str_is(t->name, name));
        assert_int_equal(t->fmt, f);
        const uint32_t nd = 1 + (uint32_t)(f % 4);
        assert_int_equal(t->n_dims, nd);
        for (uint32_t j = 0; j < 4; j++) assert_int_equal(t->ne[j], j < nd ? ne[f][j] : 1);
        const size_t nb = qn_qformat_row_bytes((qn_qformat)f, ne[f][0]) * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
        assert_int_equal(t->nbytes, nb);
        assert_int_equal(t->offset % 64, 0);
        assert_ptr_equal(t->data, (const uint8_t *)buf + qn_gguf_data_start(g) + t->offset);
        assert_memory_equal(t->data, data[f], nb);
        free(data[f]);
    }
    const qn_gguf_tensor *t = qn_gguf_find_tensor(g, "t.empty");
    assert_non_null(t);
    assert_int_equal(t->nbytes, 0);
    assert_null(qn_gguf_find_tensor(g, "t.nope"));
    assert_null(qn_gguf_tensor_at(g, -1));
    assert_null(qn_gguf_tensor_at(g, QN_QFORMAT_COUNT + 1));
    qn_gguf_close(g);
    free(buf);
}

static void test_file_open(void **state) {
    char path[512];
    qn_test_tmp_path(path, sizeof path, "rt.gguf");
    qn_gguf_writer *w;
    W_OK(qn_gguf_writer_create(&w, err));
    W_OK(qn_gguf_writer_add_str(w, "general.architecture", "llama", err));
    const int64_t ne[2] = {32, 2};
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = (float)i;
    W_OK(qn_gguf_writer_add_tensor(w, "w", QN_QFORMAT_F32, 2, ne, x, err));
    W_OK(qn_gguf_writer_write_file(w, path, err));
    qn_gguf_writer_destroy(w);
    qn_gguf *g = NULL;
    qn_error e = {0};
    assert_int_equal(qn_gguf_open(path, &g, &e), QN_OK);
    assert_string_equal(qn_gguf_path(g), path);
    const qn_gguf_tensor *t = qn_gguf_find_tensor(g, "w");
    assert_non_null(t);
    assert_memory_equal(t->data, x, sizeof x);
    assert_int_equal((uintptr_t)t->data % 32, 0); /* page-aligned mapping + aligned data section */
    qn_gguf_close(g);

    qn_test_tmp_path(path, sizeof path, "does-not-exist.gguf");
    assert_int_equal(qn_gguf_open(path, &g, &e), QN_ERR_NOT_FOUND);
    assert_null(g);
    assert_non_null(strstr(e.msg, "does-not-exist.gguf"));
    qn_test_tmp_path(path, sizeof path, "empty.gguf");
    assert_int_equal(qn_test_write_file(path, "", 0), 0);
    assert_int_equal(qn_gguf_open(path, &g, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "empty.gguf"));
    qn_gguf_close(NULL);
}

/* Every strict prefix of a valid image must fail cleanly (the last tensor has data at the end). */
static void test_every_truncation_fails(void **state) {
    qn_gguf_writer *w;
    W_OK(qn_gguf_writer_create(&w, err));
    W_OK(qn_gguf_writer_add_str(w, "general.architecture", "llama", err));
    const char *toks[] = {"<s>", "</s>", "hello"};
    W_OK(qn_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 3, err));
    const int32_t types[3] = {3, 3, 1};
    W_OK(qn_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", QN_GGUF_TYPE_INT32, types, 3, err));
    W_OK(qn_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true, err));
    const int64_t ne[2] = {32, 1};
    W_OK(qn_gguf_writer_add_tensor(w, "a", QN_QFORMAT_Q8_0, 2, ne, NULL, err));
    W_OK(qn_gguf_writer_add_tensor(w, "b", QN_QFORMAT_F16, 1, ne, NULL, err));
    void *buf;
    size_t len;
    W_OK(qn_gguf_writer_write_memory(w, &buf, &len, err));
    qn_gguf_writer_destroy(w);
    qn_gguf_close(open_ok(buf, len));
    for (size_t n = 0; n < len; n++) {
        /* a fresh copy of exactly n bytes, so ASan sees any read past the end */
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, buf, n);
        qn_gguf *g = NULL;
        qn_error e = {0};
        const qn_status st = qn_gguf_open_memory(cut, n, "cut.gguf", &g, &e);
        if (st != QN_ERR_FORMAT) print_error("prefix %zu of %zu: status %d: %s\n", n, len, st, e.msg);
        assert_int_equal(st, QN_ERR_FORMAT);
        assert_null(g);
        assert_non_null(strstr(e.msg, "cut.gguf"));
        free(cut);
    }
    free(buf);
}

/* ------------------------------------------------------------------------------------------------ */
/* malformed headers and metadata                                                                   */

static void test_bad_header(void **state) {
    bb b = {0};
    bb_put(&b, "GGUX", 4);
    bb_u32(&b, 3);
    bb_u64(&b, 0);
    bb_u64(&b, 0);
    expect_fail(&b, QN_ERR_FORMAT, "magic", NULL);
    const uint32_t versions[] = {1, 4, 0x03000000u, 0};
    for (size_t i = 0; i < 4; i++) {
        b.len = 0;
        bb_header(&b, versions[i], 0, 0);
        expect_fail(&b, QN_ERR_UNSUPPORTED, "version", NULL);
    }
    b.len = 0;
    bb_header(&b, 3, 0, 1000000);
    expect_fail(&b, QN_ERR_FORMAT, "metadata_kv_count", NULL);
    b.len = 0;
    bb_header(&b, 3, UINT64_MAX, 0);
    expect_fail(&b, QN_ERR_FORMAT, "tensor_count", NULL);
    b.len = 0;
    bb_put(&b, "GGUF", 4);
    bb_u32(&b, 3);
    bb_u32(&b, 0); /* truncated tensor_count */
    expect_fail(&b, QN_ERR_FORMAT, "tensor_count", NULL);
    /* a valid empty file opens */
    b.len = 0;
    bb_header(&b, 3, 0, 0);
    qn_gguf_close(open_ok(b.p, b.len));
    free(b.p);
}

/* Builds a file with one key whose record after the key name is given by fill. */
typedef void (*fill_fn)(bb *b);
static void expect_kv_fail(const char *key, fill_fn fill, qn_status want, const char *field) {
    bb b = {0};
    bb_header(&b, 3, 0, 2);
    bb_str(&b, "first.key");
    bb_u32(&b, QN_GGUF_TYPE_UINT32);
    bb_u32(&b, 7);
    bb_str(&b, key);
    fill(&b);
    char needle[128];
    snprintf(needle, sizeof needle, "key '%s'", key);
    expect_fail(&b, want, needle, field);
    free(b.p);
}

static void fill_unknown_type(bb *b) { bb_u32(b, 13); }
static void fill_long_string(bb *b) {
    bb_u32(b, QN_GGUF_TYPE_STRING);
    bb_u64(b, 1000);
    bb_put(b, "abc", 3);
}
static void fill_huge_string(bb *b) {
    bb_u32(b, QN_GGUF_TYPE_STRING);
    bb_u64(b, UINT64_MAX);
}
static void fill_nested(bb *b) {
    bb_u32(b, QN_GGUF_TYPE_ARRAY);
    bb_u32(b, QN_GGUF_TYPE_ARRAY);
    bb_u64(b, 1);
    bb_u32(b, QN_GGUF_TYPE_UINT8);
    bb_u64(b, 1);
    bb_u8(b, 0);
}
static void fill_arr_unknown(bb *b) {
    bb_u32(b, QN_GGUF_TYPE_ARRAY);
    bb_u32(b, 77);
    bb_u64(b, 0);
}
static void fill_arr_count(bb *b) {
    bb_u32(b, QN_GGUF_TYPE_ARRAY);
    bb_u32(b, QN_GGUF_TYPE_UINT64);
    bb_u64(b, UINT64_MAX / 4);
    bb_u64(b, 1);
}
static void fill_arr_str_count(bb *b) {
    bb_u32(b, QN_GGUF_TYPE_ARRAY);
    bb_u32(b, QN_GGUF_TYPE_STRING);
    bb_u64(b, 1u << 30);
    bb_str(b, "x");
}
static void fill_arr_str_trunc(bb *b) {
    bb_u32(b, QN_GGUF_TYPE_ARRAY);
    bb_u32(b, QN_GGUF_TYPE_STRING);
    bb_u64(b, 3);
    bb_str(b, "x");
    bb_str(b, "y");
    bb_u64(b, 50);
    bb_put(b, "zz", 2);
}
static void fill_bool2(bb *b) {
    bb_u32(b, QN_GGUF_TYPE_BOOL);
    bb_u8(b, 2);
}
static void fill_bool_arr(bb *b) {
    bb_u32(b, QN_GGUF_TYPE_ARRAY);
    bb_u32(b, QN_GGUF_TYPE_BOOL);
    bb_u64(b, 3);
    bb_u8(b, 1);
    bb_u8(b, 0);
    bb_u8(b, 255);
}
static void fill_trunc_scalar(bb *b) {
    bb_u32(b, QN_GGUF_TYPE_FLOAT64);
    bb_u32(b, 0);
}
static void fill_duplicate(bb *b) {
    bb_u32(b, QN_GGUF_TYPE_UINT32);
    bb_u32(b, 8);
}

static void test_bad_kv(void **state) {
    expect_kv_fail("x.type", fill_unknown_type, QN_ERR_FORMAT, "value type 13");
    expect_kv_fail("x.str", fill_long_string, QN_ERR_FORMAT, "string length 1000");
    expect_kv_fail("x.str", fill_huge_string, QN_ERR_FORMAT, "string length");
    expect_kv_fail("x.nested", fill_nested, QN_ERR_FORMAT, "nested");
    expect_kv_fail("x.arr", fill_arr_unknown, QN_ERR_FORMAT, "element type 77");
    expect_kv_fail("x.arr", fill_arr_count, QN_ERR_FORMAT, "array count");
    expect_kv_fail("x.arr", fill_arr_str_count, QN_ERR_FORMAT, "array count");
    expect_kv_fail("x.arr", fill_arr_str_trunc, QN_ERR_FORMAT, "element 2");
    expect_kv_fail("x.bool", fill_bool2, QN_ERR_FORMAT, "bool value 2");
    expect_kv_fail("x.bools", fill_bool_arr, QN_ERR_FORMAT, "element 2");
    expect_kv_fail("x.f64", fill_trunc_scalar, QN_ERR_FORMAT, "truncated f64");
    expect_kv_fail("first.key", fill_duplicate, QN_ERR_FORMAT, "duplicate");

    bb b = {0}; /* key length past the end: the key cannot be named, its index is */
    bb_header(&b, 3, 0, 1);
    bb_u64(&b, 500);
    bb_put(&b, "abcdefghijklmnop", 16);
    expect_fail(&b, QN_ERR_FORMAT, "metadata key #0", "string length 500");
    b.len = 0; /* empty key */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "");
    bb_u32(&b, QN_GGUF_TYPE_UINT8);
    bb_u8(&b, 0);
    expect_fail(&b, QN_ERR_FORMAT, "metadata key #0", "empty key");
    free(b.p);
}

static void test_bad_alignment(void **state) {
    bb b = {0};
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, QN_GGUF_TYPE_UINT64);
    bb_u64(&b, 64);
    expect_fail(&b, QN_ERR_FORMAT, "general.alignment", "expected u32");
    const uint32_t bad[] = {0, 48, 3};
    for (int i = 0; i < 3; i++) {
        b.len = 0;
        bb_header(&b, 3, 0, 1);
        bb_str(&b, "general.alignment");
        bb_u32(&b, QN_GGUF_TYPE_UINT32);
        bb_u32(&b, bad[i]);
        expect_fail(&b, QN_ERR_FORMAT, "general.alignment", "power of two");
    }
    free(b.p);
}

/* ------------------------------------------------------------------------------------------------ */
/* malformed tensor infos                                                                           */

/* One tensor info followed by padding and `data` bytes of zeros. */
static void expect_tensor_fail(const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off,
                               size_t data, qn_status want, const char *n1, const char *n2) {
    bb b = {0};
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, name, n_dims, ne, type, off);
    bb_pad(&b, 32);
    for (size_t i = 0; i < data; i++) bb_u8(&b, 0);
    expect_fail(&b, want, n1, n2);
    free(b.p);
}

static void test_bad_tensors(void **state) {
    const uint64_t ne2[2] = {32, 2};
    expect_tensor_fail("w5", 5, (const uint64_t[5]){1, 1, 1, 1, 1}, 0, 0, 32, QN_ERR_FORMAT, "tensor 'w5'", "n_dims 5");
    char long_name[65];
    memset(long_name, 'n', 64);
    long_name[64] = 0;
    expect_tensor_fail(long_name, 2, ne2, 0, 0, 256, QN_ERR_FORMAT, "tensor #0", "name length 64");
    expect_tensor_fail("", 2, ne2, 0, 0, 256, QN_ERR_FORMAT, "tensor #0", "empty name");
    expect_tensor_fail("neg", 2, (const uint64_t[2]){32, (uint64_t)-1}, 0, 0, 256, QN_ERR_FORMAT, "tensor 'neg'",
                       "ne[1]");
    expect_tensor_fail("big", 2, (const uint64_t[2]){1ull << 32, 1ull << 32}, 0, 0, 256, QN_ERR_FORMAT, "tensor 'big'",
                       "overflows int64");
    expect_tensor_fail("bytes", 1, (const uint64_t[1]){1ull << 62}, 0, 0, 256, QN_ERR_FORMAT, "tensor 'bytes'",
                       "byte size overflows");
    expect_tensor_fail("blk", 2, (const uint64_t[2]){31, 2}, 2 /* q4_0 */, 0, 256, QN_ERR_FORMAT, "tensor 'blk'",
                       "ne[0] = 31");
    expect_tensor_fail("q4_2", 2, ne2, 4 /* removed Q4_2 */, 0, 256, QN_ERR_UNSUPPORTED, "tensor 'q4_2'", "type 4");
    expect_tensor_fail("t99", 2, ne2, 99, 0, 256, QN_ERR_UNSUPPORTED, "tensor 't99'", "type 99");
    expect_tensor_fail("mis", 2, ne2, 0, 8, 512, QN_ERR_FORMAT, "tensor 'mis'", "offset 8");
    expect_tensor_fail("far", 2, ne2, 0, 0, 255, QN_ERR_FORMAT, "tensor 'far'",
                       "offset 0 + size 256 exceeds file size");
    expect_tensor_fail("far2", 2, ne2, 0, 1ull << 63, 256, QN_ERR_FORMAT, "tensor 'far2'", "exceeds file size");
    expect_tensor_fail("far3", 2, ne2, 0, UINT64_MAX - 31, 256, QN_ERR_FORMAT, "tensor 'far3'", "exceeds file size");
    /* the exact fit opens */
    bb b = {0};
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "fit", 2, ne2, 0, 0);
    bb_pad(&b, 32);
    for (int i = 0; i < 256; i++) bb_u8(&b, 0);
    qn_gguf_close(open_ok(b.p, b.len));
    /* duplicate names */
    b.len = 0;
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "dup", 2, ne2, 0, 0);
    bb_tensor(&b, "dup", 2, ne2, 0, 256);
    bb_pad(&b, 32);
    for (int i = 0; i < 512; i++) bb_u8(&b, 0);
    expect_fail(&b, QN_ERR_FORMAT, "tensor 'dup'", "duplicate");
    /* truncated inside a tensor info */
    b.len = 0;
    bb_header(&b, 3, 1, 0);
    bb_str(&b, "cut_tensor_name");
    bb_u32(&b, 2);
    bb_u64(&b, 32);
    expect_fail(&b, QN_ERR_FORMAT, "tensor 'cut_tensor_name'", "ne[1]");
    /* lenient placement: overlapping tensors and gaps are accepted */
    b.len = 0;
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "x", 2, ne2, 0, 32);
    bb_tensor(&b, "y", 2, ne2, 0, 0);
    bb_pad(&b, 32);
    for (int i = 0; i < 512; i++) bb_u8(&b, 0);
    qn_gguf_close(open_ok(b.p, b.len));
    /* a control character in a name is shown as '?' */
    b.len = 0;
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "a\nb", 2, ne2, 99, 0);
    expect_fail(&b, QN_ERR_UNSUPPORTED, "tensor 'a?b'", NULL);
    free(b.p);
}

/* ------------------------------------------------------------------------------------------------ */
/* typed getters                                                                                    */

static void test_getters(void **state) {
    qn_gguf_writer *w;
    W_OK(qn_gguf_writer_create(&w, err));
    W_OK(qn_gguf_writer_add_i32(w, "neg", -5, err));
    W_OK(qn_gguf_writer_add_u64(w, "big", 1ull << 40, err));
    W_OK(qn_gguf_writer_add_u64(w, "huge", UINT64_MAX, err));
    W_OK(qn_gguf_writer_add_str(w, "name", "x", err));
    W_OK(qn_gguf_writer_add_u32(w, "n", 3, err));
    void *buf;
    size_t len;
    W_OK(qn_gguf_writer_write_memory(w, &buf, &len, err));
    qn_gguf_writer_destroy(w);
    qn_gguf *g = open_ok(buf, len);
    qn_error e = {0};
    uint32_t u;
    int64_t i;
    float f;
    bool b;
    qn_gguf_str s;
    assert_int_equal(qn_gguf_get_u32(g, "neg", &u, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "key 'neg'"));
    assert_non_null(strstr(e.msg, "ok.gguf"));
    assert_int_equal(qn_gguf_get_i64(g, "neg", &i, &e), QN_OK);
    assert_int_equal(i, -5);
    assert_int_equal(qn_gguf_get_u32(g, "big", &u, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "key 'big'"));
    assert_int_equal(qn_gguf_get_i64(g, "big", &i, &e), QN_OK);
    assert_int_equal(i, 1ll << 40);
    assert_int_equal(qn_gguf_get_i64(g, "huge", &i, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "key 'huge'"));
    assert_int_equal(qn_gguf_get_f32(g, "n", &f, &e), QN_OK);
    assert_true(f == 3.0f);
    assert_int_equal(qn_gguf_get_f32(g, "name", &f, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "key 'name'"));
    assert_int_equal(qn_gguf_get_bool(g, "n", &b, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "expected bool"));
    assert_int_equal(qn_gguf_get_str(g, "n", &s, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "expected string"));
    assert_int_equal(qn_gguf_get_u32(g, "name", &u, &e), QN_ERR_FORMAT);
    /* absent keys leave err untouched so callers can apply defaults */
    qn_error keep = {.code = QN_OK};
    strcpy(keep.msg, "sentinel");
    assert_int_equal(qn_gguf_get_u32(g, "absent", &u, &keep), QN_ERR_NOT_FOUND);
    assert_int_equal(qn_gguf_get_f32(g, "absent", &f, &keep), QN_ERR_NOT_FOUND);
    assert_int_equal(qn_gguf_get_str(g, "absent", &s, &keep), QN_ERR_NOT_FOUND);
    assert_string_equal(keep.msg, "sentinel");
    assert_int_equal(keep.code, QN_OK);
    qn_gguf_close(g);
    free(buf);
}

static void test_writer_rejects(void **state) {
    qn_gguf_writer *w;
    qn_error e = {0};
    assert_int_equal(qn_gguf_writer_create(&w, &e), QN_OK);
    assert_int_equal(qn_gguf_writer_add_u32(w, "k", 1, &e), QN_OK);
    assert_int_equal(qn_gguf_writer_add_u32(w, "k", 2, &e), QN_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "'k'"));
    assert_int_equal(qn_gguf_writer_add_u32(w, "general.alignment", 48, &e), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_gguf_writer_add_u64(w, "general.alignment", 64, &e), QN_ERR_INVALID_ARG);
    const uint8_t two = 2;
    assert_int_equal(qn_gguf_writer_add_scalar(w, "b", QN_GGUF_TYPE_BOOL, &two, &e), QN_ERR_INVALID_ARG);
    const int64_t ne[2] = {33, 1};
    assert_int_equal(qn_gguf_writer_add_tensor(w, "q", QN_QFORMAT_Q4_0, 2, ne, NULL, &e), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_gguf_writer_add_tensor(w, "f", QN_QFORMAT_F32, 2, ne, NULL, &e), QN_OK);
    assert_int_equal(qn_gguf_writer_add_tensor(w, "f", QN_QFORMAT_F32, 2, ne, NULL, &e), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_gguf_writer_set_version(w, 1, &e), QN_ERR_INVALID_ARG);
    qn_gguf_writer_destroy(w);
    qn_gguf_writer_destroy(NULL);
}

static void test_open_args(void **state) {
    qn_gguf *g = NULL;
    qn_error e = {0};
    assert_int_equal(qn_gguf_open_memory(NULL, 10, "x", &g, &e), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_gguf_open_memory(NULL, 0, NULL, &g, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "<memory>"));
    assert_int_equal(qn_gguf_open(NULL, &g, &e), QN_ERR_INVALID_ARG);
}

/* ------------------------------------------------------------------------------------------------ */
/* the real model                                                                                   */

static void test_real_model(void **state) {
    const char *path = qn_test_default_model();
    if (!path) skip();
    qn_gguf *g = NULL;
    qn_error e = {0};
    const qn_status st = qn_gguf_open(path, &g, &e);
    if (st) print_error("%s\n", e.msg);
    assert_int_equal(st, QN_OK);
    assert_int_equal(qn_gguf_version(g), 3);
    assert_int_equal(qn_gguf_n_tensors(g), 272);
    assert_int_equal(qn_gguf_n_kv(g), 33);
    qn_gguf_str arch;
    assert_int_equal(qn_gguf_get_str(g, "general.architecture", &arch, &e), QN_OK);
    assert_true(str_is(arch, "llama"));
    const int64_t tok = qn_gguf_find_key(g, "tokenizer.ggml.tokens");
    assert_int_equal(qn_gguf_arr_type(g, tok), QN_GGUF_TYPE_STRING);
    assert_int_equal(qn_gguf_arr_n(g, tok), 49152);
    assert_int_equal(qn_gguf_arr_n(g, qn_gguf_find_key(g, "tokenizer.ggml.merges")), 48900);
    const qn_gguf_tensor *t = qn_gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->fmt, QN_QFORMAT_Q8_0);
    assert_int_equal(t->ne[0], 576);
    assert_int_equal(t->ne[1], 49152);
    assert_int_equal(t->nbytes, 30081024);
    t = qn_gguf_find_tensor(g, "blk.0.attn_k.weight");
    assert_non_null(t);
    assert_int_equal(t->fmt, QN_QFORMAT_Q4_1);
    assert_int_equal(t->ne[1], 192);
    assert_null(qn_gguf_find_tensor(g, "output.weight"));
    uint64_t total = 0;
    for (int64_t i = 0; i < qn_gguf_n_tensors(g); i++) total += qn_gguf_tensor_at(g, i)->nbytes;
    assert_true(total < qn_gguf_file_size(g));
    qn_gguf_close(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_values_v3),
        cmocka_unit_test(test_roundtrip_values_v2),
        cmocka_unit_test(test_roundtrip_tensors),
        cmocka_unit_test(test_file_open),
        cmocka_unit_test(test_every_truncation_fails),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_bad_kv),
        cmocka_unit_test(test_bad_alignment),
        cmocka_unit_test(test_bad_tensors),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_writer_rejects),
        cmocka_unit_test(test_open_args),
        cmocka_unit_test(test_real_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
