/* test_hf_tokenizer.c — the SentencePiece side of hf_tokenizer.h on small hand-made inputs: tokenizer.model
 * (spm_model.h) written and read back, and refused with an error naming file and field when truncated at any
 * byte, overlong, mistyped or randomly corrupted (never a crash); tokenizer.json with byte_fallback imported in
 * the transformers forms (legacy Prepend + Replace, Metaspace) with llama.cpp's types and scores derived from the
 * merges, and refused for normalizers / pre-tokenizers / decoders it does not know; tokenizer.model +
 * added_tokens_decoder as llama.cpp's _create_vocab_sentencepiece reads them. The llama-spm round trip against
 * llama.cpp's test vectors is in test_tokenizer.c.
 * QN_TEST_LABELS: cpu */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/spm_model.h"
#include "tokenizer/vocab.h"

// ---------------------------------------------------------------------------------------------------------------
// tokenizer.model
// ---------------------------------------------------------------------------------------------------------------

/* <unk> <s> </s> <0x41> ▁a b ▁ab <user> */
static const qn_spm_piece PIECES[] = {
    {"<unk>", 5, 0.0f, QN_SPM_TYPE_UNKNOWN},      {"<s>", 3, 0.0f, QN_SPM_TYPE_CONTROL},
    {"</s>", 4, 0.0f, QN_SPM_TYPE_CONTROL},       {"<0x41>", 6, 0.0f, QN_SPM_TYPE_BYTE},
    {"\xe2\x96\x81" "a", 4, -1.0f, QN_SPM_TYPE_NORMAL}, {"b", 1, -2.5f, QN_SPM_TYPE_NORMAL},
    {"\xe2\x96\x81" "ab", 5, -3.0f, QN_SPM_TYPE_NORMAL}, {"<user>", 6, 0.0f, QN_SPM_TYPE_USER_DEFINED},
};
#define N_PIECES ((int64_t)(sizeof PIECES / sizeof PIECES[0]))

static uint8_t *serialize(size_t *len) {
    qn_spm_model m = {.pieces = (qn_spm_piece *)PIECES, .n_pieces = N_PIECES, .unk_id = 0, .bos_id = 1, .eos_id = 2,
                      .pad_id = -1, .add_dummy_prefix = true};
    uint8_t *buf = NULL;
    qn_error err = {0};
    assert_int_equal(qn_spm_model_serialize(&m, &buf, len, &err), QN_OK);
    return buf;
}

static void test_model_roundtrip(void **state) {
    (void)state;
    size_t len;
    uint8_t *buf = serialize(&len);
    qn_spm_model m;
    qn_error err = {0};
    assert_int_equal(qn_spm_model_parse(buf, len, "mem", &m, &err), QN_OK);
    assert_int_equal(m.n_pieces, N_PIECES);
    for (int64_t i = 0; i < N_PIECES; i++) {
        assert_int_equal(m.pieces[i].len, PIECES[i].len);
        assert_memory_equal(m.pieces[i].text, PIECES[i].text, PIECES[i].len);
        assert_int_equal(m.pieces[i].text[m.pieces[i].len], '\0');
        assert_true(m.pieces[i].score == PIECES[i].score);
        assert_int_equal(m.pieces[i].type, PIECES[i].type);
    }
    qn_spm_model_free(&m);
    qn_spm_model_free(&m); /* an emptied model frees again harmlessly */
    free(buf);
}

static void expect_error(const uint8_t *buf, size_t len, const char *want) {
    qn_spm_model m;
    qn_error err = {0};
    const qn_status st = qn_spm_model_parse(buf, len, "x/tokenizer.model", &m, &err);
    if (st == QN_OK || !strstr(err.msg, want) || !strstr(err.msg, "x/tokenizer.model"))
        fprintf(stderr, "want an error with '%s', got %s: %s\n", want, qn_status_str(st), err.msg);
    assert_int_equal(st, QN_ERR_FORMAT);
    assert_non_null(strstr(err.msg, want));
    assert_non_null(strstr(err.msg, "x/tokenizer.model"));
    assert_null(m.pieces);
}

/* Every prefix of a file either parses as the whole top-level fields before the cut or fails naming the file and
 * the byte where the cut field starts (an empty prefix: no pieces). */
static void test_model_truncated(void **state) {
    (void)state;
    size_t len;
    uint8_t *buf = serialize(&len);
    size_t starts[64], n_fields = 0;
    for (size_t off = 0; off < len; n_fields++) { /* one-byte keys, then a varint length */
        assert_true(n_fields < 64);
        starts[n_fields] = off++;
        size_t body = 0;
        for (int shift = 0;; shift += 7) {
            body |= (size_t)(buf[off] & 0x7f) << shift;
            if (!(buf[off++] & 0x80)) break;
        }
        off += body;
    }
    int n_ok = 0;
    for (size_t cut = 0; cut < len; cut++) {
        qn_spm_model m;
        qn_error err = {0};
        const qn_status st = qn_spm_model_parse(buf, cut, "x/tokenizer.model", &m, &err);
        size_t f = 0;
        while (f + 1 < n_fields && starts[f + 1] <= cut) f++;
        if (st == QN_OK) {
            n_ok++;
            assert_true(cut == starts[f] && f >= 1);
            assert_int_equal(m.n_pieces, f < N_PIECES ? (int64_t)f : N_PIECES);
        } else {
            char want[64];
            snprintf(want, sizeof want, cut ? "top-level field at byte %zu: " : "'pieces': none", starts[f]);
            if (!strstr(err.msg, want)) fprintf(stderr, "cut %zu: want '%s' in '%s'\n", cut, want, err.msg);
            assert_int_equal(st, QN_ERR_FORMAT);
            assert_non_null(strstr(err.msg, want));
            assert_non_null(strstr(err.msg, "x/tokenizer.model"));
        }
        qn_spm_model_free(&m);
    }
    fprintf(stderr, "%zu prefixes: %d end on a field boundary and parse, the rest fail\n", len, n_ok);
    assert_int_equal(n_ok, (int)n_fields - 1);
    free(buf);
}

static void test_model_malformed(void **state) {
    (void)state;
    /* a piece length as an 11-byte varint */
    const uint8_t overlong[] = {0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
    expect_error(overlong, sizeof overlong, "overlong");
    /* a 10-byte varint past 64 bits */
    const uint8_t past64[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    expect_error(past64, sizeof past64, "overlong");
    /* length beyond the end */
    const uint8_t past_end[] = {0x0a, 0x10, 0x0a, 0x01, 'a'};
    expect_error(past_end, sizeof past_end, "runs past the end");
    /* score (field 2) as a varint */
    const uint8_t score_varint[] = {0x0a, 0x05, 0x0a, 0x01, 'a', 0x10, 0x01};
    expect_error(score_varint, sizeof score_varint, "'pieces[0].score': wire type varint");
    /* a piece with no text */
    const uint8_t no_text[] = {0x0a, 0x05, 0x15, 0x00, 0x00, 0x80, 0x3f};
    expect_error(no_text, sizeof no_text, "'pieces[0].piece' is missing or empty");
    /* a NUL inside the text */
    const uint8_t nul[] = {0x0a, 0x04, 0x0a, 0x02, 'a', 0x00};
    expect_error(nul, sizeof nul, "'pieces[0].piece' holds a NUL");
    /* a truncated fixed32 inside a piece */
    const uint8_t short_score[] = {0x0a, 0x05, 0x0a, 0x01, 'a', 0x15, 0x00};
    expect_error(short_score, sizeof short_score, "'pieces[0]', byte 3 of it: truncated fixed32");
    /* pieces (field 1) as a varint, a group, wire type 7, field number 0 */
    const uint8_t pieces_varint[] = {0x08, 0x01};
    expect_error(pieces_varint, sizeof pieces_varint, "'pieces' at byte 0: wire type varint");
    const uint8_t group[] = {0x13, 0x14};
    expect_error(group, sizeof group, "group");
    const uint8_t wire7[] = {0x0f};
    expect_error(wire7, sizeof wire7, "invalid wire type");
    const uint8_t field0[] = {0x02, 0x00};
    expect_error(field0, sizeof field0, "field number 0");
    /* no pieces at all; an empty file */
    const uint8_t only_spec[] = {0x12, 0x02, 0x18, 0x02};
    expect_error(only_spec, sizeof only_spec, "'pieces': none");
    expect_error((const uint8_t *)"", 0, "'pieces': none");
    /* unknown fields of every wire type are skipped */
    const uint8_t extra[] = {0x0a, 0x12, 0x0a, 0x01, 'a', 0x20, 0x05, 0x29, 1, 2, 3, 4, 5, 6, 7, 8, 0x18, 0x06,
                             0x22, 0x00};
    qn_spm_model m;
    qn_error err = {0};
    assert_int_equal(qn_spm_model_parse(extra, sizeof extra, "mem", &m, &err), QN_OK);
    assert_int_equal(m.n_pieces, 1);
    assert_int_equal(m.pieces[0].type, QN_SPM_TYPE_BYTE);
    qn_spm_model_free(&m);
    /* a missing file */
    assert_int_equal(qn_spm_model_read("/nonexistent/tokenizer.model", &m, &err), QN_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/tokenizer.model"));
}

/* Random corruptions of a valid file: parse or a clear error, never a crash. */
static void test_model_fuzz(void **state) {
    (void)state;
    size_t len;
    uint8_t *buf = serialize(&len);
    uint8_t *mut = malloc(len);
    qn_rng rng;
    qn_rng_seed(&rng, 7);
    int n_err = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(mut, buf, len);
        const int n_flips = 1 + (int)(qn_rng_u64(&rng) % 4);
        for (int k = 0; k < n_flips; k++) mut[qn_rng_u64(&rng) % len] = (uint8_t)qn_rng_u64(&rng);
        const size_t cut = len - (size_t)(qn_rng_u64(&rng) % 3);
        qn_spm_model m;
        qn_error err = {0};
        const qn_status st = qn_spm_model_parse(mut, cut, "fuzz", &m, &err);
        if (st != QN_OK) {
            n_err++;
            assert_int_equal(st, QN_ERR_FORMAT);
            assert_non_null(strstr(err.msg, "fuzz: "));
        } else {
            for (int64_t i = 0; i < m.n_pieces; i++) assert_int_equal(strlen(m.pieces[i].text), m.pieces[i].len);
        }
        qn_spm_model_free(&m);
    }
    fprintf(stderr, "20000 corruptions: %d refused\n", n_err);
    free(mut);
    free(buf);
}

// ---------------------------------------------------------------------------------------------------------------
// import from small directories
// ---------------------------------------------------------------------------------------------------------------

static void put_file(const char *dir, const char *name, const char *text) {
    char path[1300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(qn_test_write_file(path, text, strlen(text)), 0);
}

static void drop_file(const char *dir, const char *name) {
    char path[1300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    remove(path);
}

static void fresh_dir(char *dir, size_t cap, const char *name) {
    qn_test_tmp_path(dir, cap, name);
    mkdir(dir, 0777);
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                                        "added_tokens.json", "config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) drop_file(dir, files[i]);
}

/* Imports dir (llama architecture); on success an in-memory GGUF (*image to free after closing), else NULL with
 * *st and err set. */
static qn_gguf *try_import(const char *dir, int64_t n_vocab, void **image, qn_status *st, qn_error *err) {
    qn_gguf_writer *w = NULL;
    qn_gguf *g = NULL;
    size_t len = 0;
    assert_int_equal(qn_gguf_writer_create(&w, err), QN_OK);
    *st = qn_hf_tokenizer_import(dir, n_vocab, true, w, err);
    if (*st == QN_OK) {
        assert_int_equal(qn_gguf_writer_write_memory(w, image, &len, err), QN_OK);
        assert_int_equal(qn_gguf_open_memory(*image, len, dir, &g, err), QN_OK);
    }
    qn_gguf_writer_destroy(w);
    return g;
}

static qn_gguf *import_ok(const char *dir, int64_t n_vocab, void **image) {
    qn_status st;
    qn_error err = {0};
    qn_gguf *g = try_import(dir, n_vocab, image, &st, &err);
    if (st != QN_OK) fprintf(stderr, "import %s: %s\n", dir, err.msg);
    assert_int_equal(st, QN_OK);
    return g;
}

static void expect_import_error(const char *dir, qn_status want, const char *file, const char *field) {
    void *img = NULL;
    qn_status st;
    qn_error err = {0};
    qn_gguf *g = try_import(dir, 8, &img, &st, &err);
    fprintf(stderr, "expected error: %s\n", err.msg);
    assert_null(g);
    assert_int_equal(st, want);
    assert_non_null(strstr(err.msg, file));
    assert_non_null(strstr(err.msg, field));
}

static int32_t arr_i32(const qn_gguf *g, const char *key, int64_t i) {
    int32_t v;
    memcpy(&v, (const char *)qn_gguf_arr_data(g, qn_gguf_find_key(g, key)) + 4 * i, 4);
    return v;
}

static float arr_f32(const qn_gguf *g, const char *key, int64_t i) {
    float v;
    memcpy(&v, (const char *)qn_gguf_arr_data(g, qn_gguf_find_key(g, key)) + 4 * i, 4);
    return v;
}

static bool tok_is(const qn_gguf *g, int64_t i, const char *s) {
    const qn_gguf_str t = qn_gguf_arr_str(g, qn_gguf_find_key(g, "tokenizer.ggml.tokens"), (uint64_t)i);
    return t.len == strlen(s) && !memcmp(t.ptr, s, t.len);
}

/* ids: <unk>=0 <s>=1 </s>=2 <0x41>=3 ▁=4 a=5 ▁a=6 b=7; merges "▁ a", "a b"... (<0x41> is the only byte token) */
#define SP "\xe2\x96\x81"
#define VOCAB "{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"<0x41>\":3,\"" SP "\":4,\"a\":5,\"" SP "a\":6,\"b\":7}"
#define ADDED                                                                                                          \
    "[{\"id\":0,\"content\":\"<unk>\",\"special\":true},{\"id\":1,\"content\":\"<s>\",\"special\":true},"          \
    "{\"id\":2,\"content\":\"</s>\",\"special\":true}]"
#define METASPACE "{\"type\":\"Metaspace\",\"replacement\":\"" SP "\","
#define DECODER "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"}]}"
#define LEGACY_NORM                                                                                                    \
    "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"" SP "\"},"                        \
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"" SP "\"}]}"

#define MERGES "[\"b a\",[\"" SP "\",\"a\"]]"

static void put_tokenizer_json_m(const char *dir, const char *normalizer, const char *pre, const char *decoder,
                                 const char *merges) {
    char *s = NULL;
    assert_true(asprintf(&s,
                         "{\"added_tokens\":" ADDED ",\"normalizer\":%s,\"pre_tokenizer\":%s,\"decoder\":%s,"
                         "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":"
                         "\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}]},"
                         "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":" VOCAB ","
                         "\"merges\":%s}}",
                         normalizer, pre, decoder, merges) > 0);
    put_file(dir, "tokenizer.json", s);
    free(s);
}

static void put_tokenizer_json(const char *dir, const char *normalizer, const char *pre, const char *decoder) {
    put_tokenizer_json_m(dir, normalizer, pre, decoder, MERGES);
}

static void test_import_json_forms(void **state) {
    (void)state;
    char dir[1200];
    fresh_dir(dir, sizeof dir, "spm-json");
    put_file(dir, "tokenizer_config.json", "{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"unk_token\":\"<unk>\"}");
    static const struct {
        const char *norm, *pre;
        int add_space; /* expected tokenizer.ggml.add_space_prefix, -1 absent */
    } forms[] = {
        {LEGACY_NORM, "null", -1},
        {"{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"" SP "\"}", "null", 0},
        {"null", METASPACE "\"prepend_scheme\":\"first\",\"split\":false}", -1},
        {"null", METASPACE "\"prepend_scheme\":\"never\",\"split\":false}", 0},
        {"null", METASPACE "\"add_prefix_space\":true,\"split\":false}", -1},
    };
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        put_tokenizer_json(dir, forms[f].norm, forms[f].pre, DECODER);
        void *img = NULL;
        qn_gguf *g = import_ok(dir, 9, &img);
        qn_gguf_str model;
        assert_int_equal(qn_gguf_get_str(g, "tokenizer.ggml.model", &model, NULL), QN_OK);
        assert_true(model.len == 5 && !memcmp(model.ptr, "llama", 5));
        bool b;
        const qn_status st = qn_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b, NULL);
        assert_int_equal(forms[f].add_space < 0 ? QN_ERR_NOT_FOUND : QN_OK, st);
        if (st == QN_OK) assert_int_equal(b, forms[f].add_space);
        /* LlamaHfVocab's types: specials control (unk included), <0xXX> byte, the rest normal; [PAD8] for id 8 */
        static const int32_t want_types[9] = {3, 3, 3, 6, 1, 1, 1, 1, 5};
        for (int i = 0; i < 9; i++) assert_int_equal(arr_i32(g, "tokenizer.ggml.token_type", i), want_types[i]);
        assert_true(tok_is(g, 6, SP "a") && tok_is(g, 8, "[PAD8]"));
        /* scores: minus the rank of the first merge making the token ("b a" is no token), -1000 elsewhere */
        assert_true(arr_f32(g, "tokenizer.ggml.scores", 6) == -1.0f);
        assert_true(arr_f32(g, "tokenizer.ggml.scores", 5) == -1000.0f);
        uint32_t bos;
        assert_int_equal(qn_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &bos, NULL), QN_OK);
        assert_int_equal(bos, 1);
        qn_gguf_close(g);
        free(img);
    }
    /* what llama.cpp's converter would write into a GGUF that tokenizes differently: refused, naming the field */
    put_tokenizer_json(dir, "{\"type\":\"NFKC\"}", "null", DECODER);
    expect_import_error(dir, QN_ERR_UNSUPPORTED, "spm-json/tokenizer.json", "field 'normalizer': {\"type\":\"NFKC\"}");
    put_tokenizer_json(dir,
                       "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Replace\",\"pattern\":{\"String\":"
                       "\" \"},\"content\":\"" SP "\"},{\"type\":\"Prepend\",\"prepend\":\"" SP "\"}]}",
                       "null", DECODER);
    expect_import_error(dir, QN_ERR_UNSUPPORTED, "tokenizer.json", "field 'normalizer'");
    put_tokenizer_json(dir, "null", METASPACE "\"prepend_scheme\":\"first\"}", DECODER); /* split defaults to true */
    expect_import_error(dir, QN_ERR_UNSUPPORTED, "tokenizer.json", "field 'pre_tokenizer'");
    put_tokenizer_json(dir, LEGACY_NORM, METASPACE "\"split\":false}", DECODER); /* both */
    expect_import_error(dir, QN_ERR_UNSUPPORTED, "tokenizer.json", "field 'pre_tokenizer'");
    put_tokenizer_json(dir, LEGACY_NORM, "null", "{\"type\":\"ByteLevel\"}");
    expect_import_error(dir, QN_ERR_UNSUPPORTED, "tokenizer.json", "field 'decoder.type': 'ByteLevel'");
    put_tokenizer_json_m(dir, LEGACY_NORM, "null", DECODER, "[\"b a\", 3]");
    expect_import_error(dir, QN_ERR_FORMAT, "tokenizer.json", "field 'model.merges[1]'");
    put_file(dir, "tokenizer.json", "{\"model\":{\"type\":\"Unigram\",\"byte_fallback\":true,\"vocab\":[]}}");
    expect_import_error(dir, QN_ERR_UNSUPPORTED, "tokenizer.json", "field 'model.type': Unigram");
    drop_file(dir, "tokenizer.json");
    drop_file(dir, "tokenizer_config.json");
    rmdir(dir);
}

static void test_import_model_file(void **state) {
    (void)state;
    char dir[1200], path[1300];
    fresh_dir(dir, sizeof dir, "spm-model");
    size_t len;
    uint8_t *buf = serialize(&len);
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    assert_int_equal(qn_test_write_file(path, buf, len), 0);
    /* added_tokens.json and added_tokens_decoder as llama.cpp reads them (<far> is beyond the vocabulary) */
    put_file(dir, "added_tokens.json", "{\"<extra>\": 8, \"<far>\": 40}");
    put_file(dir, "tokenizer_config.json",
             "{\"add_prefix_space\": false, \"added_tokens_decoder\": {"
             "\"1\": {\"content\": \"<s>\", \"special\": true}, "
             "\"7\": {\"content\": \"x" SP "y\", \"special\": false}, \"5\": {\"content\": \"<|im|>\"}, "
             "\"9\": {\"content\": \"<z>\", \"special\": true}}}");
    void *img = NULL;
    qn_gguf *g = import_ok(dir, 10, &img); /* no tokenizer.json needed */
    static const int32_t want_types[10] = {2, 3, 3, 6, 1, 3, 1, 4, 4, 3}; /* <user> piece: normal, as llama.cpp */
    static const float want_scores[10] = {0, -1000, 0, 0, -1, -1000, -3, -1000, -1000, -1000};
    for (int i = 0; i < 10; i++) {
        assert_int_equal(arr_i32(g, "tokenizer.ggml.token_type", i), want_types[i]);
        assert_true(arr_f32(g, "tokenizer.ggml.scores", i) == want_scores[i]);
    }
    assert_true(tok_is(g, 7, "x y") && tok_is(g, 8, "<extra>") && tok_is(g, 9, "<z>") && tok_is(g, 5, "<|im|>"));
    bool b = true;
    assert_int_equal(qn_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b, NULL), QN_OK);
    assert_false(b);
    qn_gguf_close(g);
    free(img);
    /* beyond the pieces: [PAD<id>] at -10000; pieces beyond n_vocab are dropped */
    drop_file(dir, "added_tokens.json");
    drop_file(dir, "tokenizer_config.json");
    g = import_ok(dir, 12, &img);
    assert_true(tok_is(g, 11, "[PAD11]") && arr_f32(g, "tokenizer.ggml.scores", 11) == -10000.0f);
    assert_int_equal(arr_i32(g, "tokenizer.ggml.token_type", 11), QN_TOKEN_TYPE_UNUSED);
    qn_gguf_close(g);
    free(img);
    g = import_ok(dir, 4, &img);
    assert_int_equal(qn_gguf_arr_n(g, qn_gguf_find_key(g, "tokenizer.ggml.tokens")), 4);
    qn_gguf_close(g);
    free(img);
    /* a corrupt tokenizer.model wins over a good tokenizer.json, and its error names it */
    put_tokenizer_json(dir, LEGACY_NORM, "null", DECODER);
    assert_int_equal(qn_test_write_file(path, buf, len - 3), 0);
    expect_import_error(dir, QN_ERR_FORMAT, "spm-model/tokenizer.model", ": top-level field at byte");
    put_file(dir, "tokenizer_config.json", "{\"added_tokens_decoder\": {\"x1\": {\"content\": \"<s>\"}}}");
    assert_int_equal(qn_test_write_file(path, buf, len), 0);
    expect_import_error(dir, QN_ERR_FORMAT, "tokenizer_config.json", "field 'added_tokens_decoder.x1'");
    free(buf);
    drop_file(dir, "tokenizer.model");
    drop_file(dir, "tokenizer.json");
    drop_file(dir, "tokenizer_config.json");
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_roundtrip),   cmocka_unit_test(test_model_truncated),
        cmocka_unit_test(test_model_malformed),   cmocka_unit_test(test_model_fuzz),
        cmocka_unit_test(test_import_json_forms), cmocka_unit_test(test_import_model_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
