/* test_safetensors.c — safetensors reader: every dtype and __metadata__ round trip from in-memory
 * images, each malformed-header case with its status and the tensor/field named in the message,
 * and single / directory / sharded (index.json weight_map) checkpoints written to a temp dir. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/safetensors.h"

/* 8-byte LE header size + JSON right-padded with spaces to a multiple of 8 + data. */
static uint8_t *st_image(const char *json, const void *data, size_t dlen, size_t *len) {
    const size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    uint8_t *b = malloc(8 + padded + dlen + 1);
    assert_non_null(b);
    const uint64_t hs = padded;
    memcpy(b, &hs, 8);
    memcpy(b + 8, json, n);
    memset(b + 8 + n, ' ', padded - n);
    if (dlen) memcpy(b + 8 + padded, data, dlen);
    *len = 8 + padded + dlen;
    return b;
}

static void expect_fail_buf(const uint8_t *b, size_t len, qn_status want, const char *n1, const char *n2) {
    qn_st *st = NULL;
    qn_error e = {0};
    const qn_status rc = qn_st_open_memory(b, len, "bad.safetensors", &st, &e);
    if (rc != want || !strstr(e.msg, "bad.safetensors") || (n1 && !strstr(e.msg, n1)) || (n2 && !strstr(e.msg, n2)))
        print_error("status %d (want %d): %s\n  expected '%s' and '%s'\n", rc, want, e.msg, n1 ? n1 : "",
                    n2 ? n2 : "");
    assert_int_equal(rc, want);
    assert_null(st);
    assert_non_null(strstr(e.msg, "bad.safetensors"));
    if (n1) assert_non_null(strstr(e.msg, n1));
    if (n2) assert_non_null(strstr(e.msg, n2));
}

/* A header whose buffer is dlen zero bytes. */
static void expect_fail(const char *json, size_t dlen, qn_status want, const char *n1, const char *n2) {
    uint8_t *zeros = calloc(1, dlen + 1);
    size_t len;
    uint8_t *b = st_image(json, zeros, dlen, &len);
    expect_fail_buf(b, len, want, n1, n2);
    free(b);
    free(zeros);
}

static const char *ALL_DTYPES =
    "{\"__metadata__\":{\"format\":\"pt\",\"x\":\"y\"},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
    "\"c\":{\"dtype\":\"BF16\",\"shape\":[1,1,2],\"data_offsets\":[32,36]},"
    "\"d\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[36,40]},"
    "\"e\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[40,48]},"
    "\"f\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[48,51]},"
    "\"g\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[51,52]},"
    "\"h\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[52,54]},"
    "\"i\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[54,56]},"
    "\"j\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[56,64]},"
    "\"k\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[64,64]}}";

static void test_all_dtypes(void **state) {
    uint8_t data[64];
    for (int i = 0; i < 64; i++) data[i] = (uint8_t)(i * 7 + 3);
    size_t len;
    uint8_t *b = st_image(ALL_DTYPES, data, sizeof data, &len);
    qn_st *st = NULL;
    qn_error e = {0};
    const qn_status rc = qn_st_open_memory(b, len, "ok.safetensors", &st, &e);
    if (rc) print_error("%s\n", e.msg);
    assert_int_equal(rc, QN_OK);
    assert_int_equal(qn_st_n_tensors(st), 11);
    assert_int_equal(qn_st_n_shards(st), 1);
    assert_string_equal(qn_st_path(st), "ok.safetensors");
    static const struct {
        const char *name;
        qn_st_dtype dt;
        uint32_t n_dims;
        int64_t shape[3];
        uint64_t begin, end;
    } want[] = {
        {"a", QN_ST_DTYPE_F32, 2, {2, 3, 1}, 0, 24},   {"b", QN_ST_DTYPE_F16, 1, {4, 1, 1}, 24, 32},
        {"c", QN_ST_DTYPE_BF16, 3, {1, 1, 2}, 32, 36}, {"d", QN_ST_DTYPE_I32, 1, {1, 1, 1}, 36, 40},
        {"e", QN_ST_DTYPE_I64, 1, {1, 1, 1}, 40, 48},  {"f", QN_ST_DTYPE_U8, 1, {3, 1, 1}, 48, 51},
        {"g", QN_ST_DTYPE_I8, 1, {1, 1, 1}, 51, 52},   {"h", QN_ST_DTYPE_BOOL, 1, {2, 1, 1}, 52, 54},
        {"i", QN_ST_DTYPE_I16, 1, {1, 1, 1}, 54, 56},  {"j", QN_ST_DTYPE_F64, 0, {1, 1, 1}, 56, 64},
        {"k", QN_ST_DTYPE_F32, 2, {0, 3, 1}, 64, 64},
    };
    const size_t data_start = len - sizeof data;
    for (int64_t i = 0; i < 11; i++) {
        const qn_st_tensor *t = qn_st_tensor_at(st, i);
        assert_non_null(t);
        assert_string_equal(t->name, want[i].name); /* file order */
        assert_ptr_equal(qn_st_find(st, want[i].name), t);
        assert_int_equal(t->dtype, want[i].dt);
        assert_int_equal(t->n_dims, want[i].n_dims);
        for (int j = 0; j < 3; j++) assert_int_equal(t->shape[j], want[i].shape[j]);
        assert_int_equal(t->nbytes, want[i].end - want[i].begin);
        assert_int_equal(t->offset, data_start + want[i].begin);
        assert_ptr_equal(t->data, b + data_start + want[i].begin);
        assert_string_equal(t->shard, "ok.safetensors");
    }
    assert_null(qn_st_find(st, "zz"));
    assert_null(qn_st_tensor_at(st, 11));
    assert_string_equal(qn_st_metadata(st, "format"), "pt");
    assert_null(qn_st_metadata(st, "nope"));
    assert_int_equal(qn_st_n_metadata(st), 2);
    const char *k, *v;
    assert_int_equal(qn_st_metadata_at(st, 1, &k, &v), 0);
    assert_string_equal(k, "x");
    assert_string_equal(v, "y");
    assert_int_equal(qn_st_metadata_at(st, 2, &k, &v), -1);
    assert_string_equal(qn_st_dtype_name(QN_ST_DTYPE_BF16), "BF16");
    assert_int_equal(qn_st_dtype_size(QN_ST_DTYPE_I64), 8);
    qn_st_close(st);
    qn_st_close(NULL);
    free(b);
}

static void test_bad_header_size(void **state) {
    uint8_t b[64] = {0};
    expect_fail_buf(b, 5, QN_ERR_FORMAT, "header size", NULL);
    const uint64_t big = 100000001;
    memcpy(b, &big, 8);
    expect_fail_buf(b, sizeof b, QN_ERR_FORMAT, "header size 100000001", "limit");
    const uint64_t past = 57;
    memcpy(b, &past, 8);
    expect_fail_buf(b, sizeof b, QN_ERR_FORMAT, "header size 57", NULL);
    const uint64_t ok = 8;
    memcpy(b, &ok, 8);
    memcpy(b + 8, "[1,2,3] ", 8);
    expect_fail_buf(b, 16, QN_ERR_FORMAT, "'{'", NULL);
    memcpy(b + 8, "{\"a\":  ", 8);
    expect_fail_buf(b, 16, QN_ERR_FORMAT, "header JSON", NULL);
    const uint64_t zero = 0;
    memcpy(b, &zero, 8);
    expect_fail_buf(b, 8, QN_ERR_FORMAT, "'{'", NULL);
    /* an empty header object and no data is a valid, empty file */
    size_t len;
    uint8_t *img = st_image("{}", NULL, 0, &len);
    qn_st *st = NULL;
    assert_int_equal(qn_st_open_memory(img, len, "e", &st, NULL), QN_OK);
    assert_int_equal(qn_st_n_tensors(st), 0);
    qn_st_close(st);
    free(img);
}

static void test_bad_entries(void **state) {
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                16, QN_ERR_FORMAT, "duplicate", "w");
    expect_fail("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, QN_ERR_UNSUPPORTED,
                "tensor 'w'", "F8_E4M3");
    expect_fail("{\"w\":{\"shape\":[2],\"data_offsets\":[0,2]}}", 2, QN_ERR_FORMAT, "tensor 'w'", "dtype");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, QN_ERR_FORMAT, "tensor 'w'",
                "shape");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8, QN_ERR_FORMAT,
                "tensor 'w'", "shape[1]");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                QN_ERR_UNSUPPORTED, "tensor 'w'", "9 dims");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
                QN_ERR_FORMAT, "tensor 'w'", "overflows");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, QN_ERR_FORMAT, "tensor 'w'", "data_offsets");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, QN_ERR_FORMAT, "tensor 'w'",
                "data_offsets [8, 0]");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, QN_ERR_FORMAT, "tensor 'w'",
                "outside the 8-byte buffer");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, QN_ERR_FORMAT, "tensor 'w'",
                "needs 12");
    expect_fail("{\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                12, QN_ERR_FORMAT, "tensor 'w'", "overlap tensor 'v'");
    expect_fail("{\"w\":[1,2]}", 0, QN_ERR_FORMAT, "tensor 'w'", "not an object");
    expect_fail("{\"__metadata__\":{\"format\":1}}", 0, QN_ERR_FORMAT, "__metadata__", "'format'");
    expect_fail("{\"__metadata__\":[]}", 0, QN_ERR_FORMAT, "__metadata__", NULL);
}

/* --- files on disk --- */

static void write_image(const char *path, const char *json, size_t dlen) {
    uint8_t *zeros = calloc(1, dlen + 1);
    size_t len;
    uint8_t *b = st_image(json, zeros, dlen, &len);
    assert_int_equal(qn_test_write_file(path, b, len), 0);
    free(b);
    free(zeros);
}

static void write_text(const char *path, const char *s) { assert_int_equal(qn_test_write_file(path, s, strlen(s)), 0); }

static void mkdir_tmp(char *buf, size_t cap, const char *name) {
    qn_test_tmp_path(buf, cap, name);
    mkdir(buf, 0755);
}

static const char *SHARD1 = "{\"__metadata__\":{\"format\":\"pt\"},"
                            "\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
static const char *SHARD2 = "{\"c\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,6]}}";
static const char *INDEX_OK = "{\"metadata\":{\"total_size\":18},\"weight_map\":{"
                              "\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\","
                              "\"c\":\"model-00002-of-00002.safetensors\"}}";

static qn_status open_path(const char *path, qn_st **st, qn_error *e) {
    *st = NULL;
    memset(e, 0, sizeof *e);
    return qn_st_open(path, st, e);
}

static void test_single_and_dir(void **state) {
    char dir[512], path[600];
    mkdir_tmp(dir, sizeof dir, "single");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_image(path, SHARD1, 12);
    qn_st *st;
    qn_error e;
    assert_int_equal(open_path(path, &st, &e), QN_OK);
    assert_int_equal(qn_st_n_tensors(st), 2);
    assert_string_equal(qn_st_find(st, "a")->shard, path);
    qn_st_close(st);
    assert_int_equal(open_path(dir, &st, &e), QN_OK); /* directory -> model.safetensors */
    assert_int_equal(qn_st_n_tensors(st), 2);
    assert_string_equal(qn_st_metadata(st, "format"), "pt");
    qn_st_close(st);

    mkdir_tmp(dir, sizeof dir, "oddname");
    snprintf(path, sizeof path, "%s/gptq_model-4bit-128g.safetensors", dir);
    write_image(path, SHARD2, 6);
    assert_int_equal(open_path(dir, &st, &e), QN_OK); /* the only .safetensors file */
    assert_non_null(qn_st_find(st, "c"));
    qn_st_close(st);

    mkdir_tmp(dir, sizeof dir, "nothing");
    assert_int_equal(open_path(dir, &st, &e), QN_ERR_NOT_FOUND);
    assert_non_null(strstr(e.msg, "nothing"));
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    assert_int_equal(open_path(path, &st, &e), QN_ERR_NOT_FOUND);
    assert_null(st);
}

/* Makes dir/name with the two shards and the given index. */
static void make_sharded(char *dir, size_t cap, const char *name, const char *index, const char *shard2) {
    char path[700];
    mkdir_tmp(dir, cap, name);
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    write_image(path, SHARD1, 12);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    write_image(path, shard2, 6);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    write_text(path, index);
}

static void test_sharded(void **state) {
    char dir[512], path[700];
    make_sharded(dir, sizeof dir, "sharded", INDEX_OK, SHARD2);
    qn_st *st;
    qn_error e;
    assert_int_equal(open_path(dir, &st, &e), QN_OK);
    assert_int_equal(qn_st_n_shards(st), 2);
    assert_int_equal(qn_st_n_tensors(st), 3);
    const qn_st_tensor *c = qn_st_find(st, "c");
    assert_non_null(c);
    assert_int_equal(c->dtype, QN_ST_DTYPE_BF16);
    assert_non_null(strstr(c->shard, "model-00002-of-00002.safetensors"));
    assert_non_null(strstr(qn_st_find(st, "a")->shard, "model-00001-of-00002.safetensors"));
    assert_string_equal(qn_st_metadata(st, "format"), "pt");
    qn_st_close(st);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    assert_int_equal(open_path(path, &st, &e), QN_OK); /* the index itself */
    assert_int_equal(qn_st_n_tensors(st), 3);
    qn_st_close(st);

    /* the same name in two shards */
    make_sharded(dir, sizeof dir, "dup", INDEX_OK,
                 "{\"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]},"
                 "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}");
    assert_int_equal(open_path(dir, &st, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "tensor 'a'"));
    assert_non_null(strstr(e.msg, "duplicate"));
    /* weight_map names a tensor no shard has */
    make_sharded(
        dir, sizeof dir, "missing_tensor",
        "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\",\"z\":\"model-00002-of-00002.safetensors\"}}",
        SHARD2);
    assert_int_equal(open_path(dir, &st, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "tensor 'z'"));
    /* weight_map names the wrong shard */
    make_sharded(
        dir, sizeof dir, "wrong_shard",
        "{\"weight_map\":{\"a\":\"model-00002-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\"}}",
        SHARD2);
    assert_int_equal(open_path(dir, &st, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "tensor 'a'"));
    assert_non_null(strstr(e.msg, "mapped to"));
    /* escaping the directory */
    make_sharded(dir, sizeof dir, "escape", "{\"weight_map\":{\"a\":\"../x.safetensors\"}}", SHARD2);
    assert_int_equal(open_path(dir, &st, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "tensor 'a'"));
    /* a shard file that is not there */
    make_sharded(dir, sizeof dir, "gone", "{\"weight_map\":{\"a\":\"model-00009-of-00009.safetensors\"}}", SHARD2);
    assert_int_equal(open_path(dir, &st, &e), QN_ERR_NOT_FOUND);
    assert_non_null(strstr(e.msg, "model-00009-of-00009.safetensors"));
    /* no weight_map, or not JSON */
    make_sharded(dir, sizeof dir, "no_map", "{\"metadata\":{}}", SHARD2);
    assert_int_equal(open_path(dir, &st, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "weight_map"));
    make_sharded(dir, sizeof dir, "bad_json", "{\"weight_map\":", SHARD2);
    assert_int_equal(open_path(dir, &st, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "model.safetensors.index.json"));
    /* a broken shard is reported with its own path */
    make_sharded(dir, sizeof dir, "bad_shard", INDEX_OK,
                 "{\"c\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,60]}}");
    assert_int_equal(open_path(dir, &st, &e), QN_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "model-00002-of-00002.safetensors"));
    assert_non_null(strstr(e.msg, "tensor 'c'"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_dtypes),     cmocka_unit_test(test_bad_header_size),
        cmocka_unit_test(test_bad_entries),    cmocka_unit_test(test_single_and_dir),
        cmocka_unit_test(test_sharded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
