/* test_quantize.c — the pieces of `quern quantize` / `quern synth` that need no peer:
 *   - file type names; llama.cpp's tensor order;
 *   - the type mixes against the tables of docs/formats.md §2.3 (Llama-3-8B shapes: 32 layers,
 *     GQA 4, untied) and the ne[0] fallbacks on SmolLM2 shapes (576 columns, tied);
 *   - the streaming GGUF writer: same bytes as the one-shot writer, copy_kv of every value type,
 *     no file (and no OUT.tmp) after an abort or an incomplete stream;
 *   - qn_quantize_gguf on small hand-made models: output = per-row reference quantizer, progress
 *     reports, and bad input (unsupported architecture, missing tensor, wrong shape, NaN weights,
 *     output = input) failing with a message naming file and tensor and leaving no output behind.
 * The byte-exact comparison with llama-quantize is tests/e2e/test_quantize_llamacpp.py. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/gguf.h"
#include "model/gguf_write.h"
#include "model/quantize.h"

static bool exists(const char *path) { return access(path, F_OK) == 0; }

/* out: a temp path; tmp (room for out + ".tmp"): the name the writer streams to. */
static void tmp_pair(char *out, char *tmp, size_t cap, const char *name) {
    qn_test_tmp_path(out, cap - 4, name);
    const size_t n = strlen(out);
    memcpy(tmp, out, n);
    memcpy(tmp + n, ".tmp", 5);
}

/* ------------------------------------------------------------------------------------------------ */
/* names and order                                                                                  */

static void test_ftype_names(void **state) {
    (void)state;
    qn_ftype t;
    assert_int_equal(qn_ftype_parse("Q4_K_M", &t), QN_OK);
    assert_int_equal(t, QN_FTYPE_MOSTLY_Q4_K_M);
    assert_int_equal(t, 15); /* llama_ftype value written to general.file_type */
    assert_int_equal(qn_ftype_parse("q3_k_s", &t), QN_OK);
    assert_int_equal(t, 11);
    assert_int_equal(qn_ftype_parse("bf16", &t), QN_OK);
    assert_int_equal(t, 32);
    assert_int_equal(qn_ftype_parse("Q8_0", &t), QN_OK);
    assert_int_equal(t, 7);
    assert_int_equal(qn_ftype_parse("Q4_K", &t), QN_ERR_NOT_FOUND); /* only the recipes are file types */
    assert_int_equal(qn_ftype_parse("IQ2_XS", &t), QN_ERR_NOT_FOUND);
    assert_string_equal(qn_ftype_name(QN_FTYPE_MOSTLY_Q5_K_S), "Q5_K_S");
    assert_int_equal(qn_ftype_base_format(QN_FTYPE_MOSTLY_Q3_K_L), QN_QFORMAT_Q3_K);
    assert_int_equal(qn_ftype_base_format(QN_FTYPE_MOSTLY_F16), QN_QFORMAT_F16);
}

static void test_order(void **state) {
    (void)state;
    static const char *const sorted[] = {"output.weight", "output_norm.weight", "token_embd.weight",
                                         "blk.0.attn_k.weight", "blk.0.ffn_up.weight", "blk.2.attn_q.weight",
                                         "blk.10.attn_k.weight"};
    for (size_t i = 0; i + 1 < sizeof sorted / sizeof sorted[0]; i++) {
        assert_true(qn_quant_order_cmp(sorted[i], sorted[i + 1]) < 0);
        assert_true(qn_quant_order_cmp(sorted[i + 1], sorted[i]) > 0);
    }
    assert_int_equal(qn_quant_order_cmp("blk.3.x", "blk.3.x"), 0);
}

/* ------------------------------------------------------------------------------------------------ */
/* mixes                                                                                            */

/* formats.md §2.3: more(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2 */
static bool more(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

typedef struct llama8b_case {
    qn_ftype ft;
    qn_qformat base, out, attn_out;
} llama8b_case;

/* Runs one file type over Llama-3-8B's tensors in llama.cpp's order and checks each layer. */
static void check_llama8b(qn_ftype ft, qn_qformat embd, qn_qformat out, qn_qformat qkgu, qn_qformat attn_out,
                          qn_qformat (*attn_v)(int), qn_qformat (*ffn_down)(int)) {
    const int L = 32;
    qn_quant_mix m;
    qn_quant_mix_init(&m, ft, L, 32, 8, 0, false, false, L);
    const int64_t e_v[4] = {4096, 128256, 1, 1}, e_n[4] = {4096, 1, 1, 1};
    bool fb = true;
    assert_int_equal(qn_quant_mix_choose(&m, "output.weight", e_v, QN_QFORMAT_F16, &fb), out);
    assert_false(fb);
    assert_int_equal(qn_quant_mix_choose(&m, "output_norm.weight", e_n, QN_QFORMAT_F32, NULL), QN_QFORMAT_F32);
    assert_int_equal(qn_quant_mix_choose(&m, "token_embd.weight", e_v, QN_QFORMAT_F16, NULL), embd);
    for (int i = 0; i < L; i++) {
        char nm[64];
        const int64_t e_q[4] = {4096, 4096, 1, 1}, e_kv[4] = {4096, 1024, 1, 1}, e_up[4] = {4096, 14336, 1, 1},
                      e_dn[4] = {14336, 4096, 1, 1};
#define CHOOSE(suffix, ne) (snprintf(nm, sizeof nm, "blk.%d." suffix, i), qn_quant_mix_choose(&m, nm, ne, QN_QFORMAT_F16, NULL))
        assert_int_equal(CHOOSE("attn_k.weight", e_kv), qkgu);
        assert_int_equal(CHOOSE("attn_norm.weight", e_n), QN_QFORMAT_F16); /* 1-D: kept as stored */
        assert_int_equal(CHOOSE("attn_output.weight", e_q), attn_out);
        assert_int_equal(CHOOSE("attn_q.weight", e_q), qkgu);
        if (CHOOSE("attn_v.weight", e_kv) != attn_v(i)) fail_msg("%s: layer %d attn_v", qn_ftype_name(ft), i);
        if (CHOOSE("ffn_down.weight", e_dn) != ffn_down(i)) fail_msg("%s: layer %d ffn_down", qn_ftype_name(ft), i);
        assert_int_equal(CHOOSE("ffn_gate.weight", e_up), qkgu);
        assert_int_equal(CHOOSE("ffn_up.weight", e_up), qkgu);
#undef CHOOSE
    }
    assert_int_equal(m.n_fallback, 0);
}

static qn_qformat q4km_v(int i) { return more(i, 32) ? QN_QFORMAT_Q6_K : QN_QFORMAT_Q4_K; }
static qn_qformat q5km_v(int i) { return more(i, 32) ? QN_QFORMAT_Q6_K : QN_QFORMAT_Q5_K; }
static qn_qformat q3km_v(int i) { return i < 2 ? QN_QFORMAT_Q5_K : QN_QFORMAT_Q4_K; }
static qn_qformat q3km_down(int i) { return i < 32 / 16 ? QN_QFORMAT_Q5_K : QN_QFORMAT_Q4_K; }
static qn_qformat q4ks_v(int i) { return i < 4 ? QN_QFORMAT_Q5_K : QN_QFORMAT_Q4_K; }
static qn_qformat q4ks_down(int i) { return i < 32 / 8 ? QN_QFORMAT_Q5_K : QN_QFORMAT_Q4_K; }
static qn_qformat q2k_v(int i) { (void)i; return QN_QFORMAT_Q4_K; } /* GQA 4 */
static qn_qformat q2k_down(int i) { (void)i; return QN_QFORMAT_Q3_K; }
static qn_qformat q3kl_v(int i) { (void)i; return QN_QFORMAT_Q5_K; }
static qn_qformat q3ks_any(int i) { (void)i; return QN_QFORMAT_Q3_K; }
static qn_qformat q6k_any(int i) { (void)i; return QN_QFORMAT_Q6_K; }
static qn_qformat q40_any(int i) { (void)i; return QN_QFORMAT_Q4_0; }
static qn_qformat q80_any(int i) { (void)i; return QN_QFORMAT_Q8_0; }
static qn_qformat f16_any(int i) { (void)i; return QN_QFORMAT_F16; }

static void test_mix_llama3_8b(void **state) {
    (void)state;
    const qn_qformat Q3 = QN_QFORMAT_Q3_K, Q4 = QN_QFORMAT_Q4_K, Q5 = QN_QFORMAT_Q5_K, Q6 = QN_QFORMAT_Q6_K;
    check_llama8b(QN_FTYPE_MOSTLY_Q4_K_M, Q4, Q6, Q4, Q4, q4km_v, q4km_v);
    check_llama8b(QN_FTYPE_MOSTLY_Q5_K_M, Q5, Q6, Q5, Q5, q5km_v, q5km_v);
    check_llama8b(QN_FTYPE_MOSTLY_Q3_K_M, Q3, Q6, Q3, Q4, q3km_v, q3km_down);
    check_llama8b(QN_FTYPE_MOSTLY_Q3_K_L, Q3, Q6, Q3, Q5, q3kl_v, q3kl_v);
    check_llama8b(QN_FTYPE_MOSTLY_Q3_K_S, Q3, Q6, Q3, Q3, q3ks_any, q3ks_any);
    check_llama8b(QN_FTYPE_MOSTLY_Q4_K_S, Q4, Q6, Q4, Q4, q4ks_v, q4ks_down);
    check_llama8b(QN_FTYPE_MOSTLY_Q2_K, QN_QFORMAT_Q2_K, Q6, QN_QFORMAT_Q2_K, Q3, q2k_v, q2k_down);
    check_llama8b(QN_FTYPE_MOSTLY_Q6_K, Q6, Q6, Q6, Q6, q6k_any, q6k_any);
    /* legacy types: the output goes to Q6_K, Q8_0 stays Q8_0 */
    check_llama8b(QN_FTYPE_MOSTLY_Q4_0, QN_QFORMAT_Q4_0, Q6, QN_QFORMAT_Q4_0, QN_QFORMAT_Q4_0, q40_any, q40_any);
    check_llama8b(QN_FTYPE_MOSTLY_Q8_0, QN_QFORMAT_Q8_0, QN_QFORMAT_Q8_0, QN_QFORMAT_Q8_0, QN_QFORMAT_Q8_0, q80_any,
                  q80_any);
    /* float file types: every matrix in that type, no recipe */
    check_llama8b(QN_FTYPE_MOSTLY_F16, QN_QFORMAT_F16, QN_QFORMAT_F16, QN_QFORMAT_F16, QN_QFORMAT_F16, f16_any,
                  f16_any);
}

/* SmolLM2: 576 columns are not a multiple of 256, embeddings tied. */
static void test_mix_fallbacks(void **state) {
    (void)state;
    qn_quant_mix m;
    qn_quant_mix_init(&m, QN_FTYPE_MOSTLY_Q4_K_M, 30, 9, 3, 0, false, true, 30);
    const int64_t e_emb[4] = {576, 49152, 1, 1}, e_q[4] = {576, 576, 1, 1}, e_v[4] = {576, 192, 1, 1},
                  e_dn[4] = {1536, 576, 1, 1};
    bool fb = false;
    /* tied: token_embd takes the output rule, 576 % 256 -> Q8_0 (without counting as a fallback) */
    assert_int_equal(qn_quant_mix_choose(&m, "token_embd.weight", e_emb, QN_QFORMAT_Q8_0, &fb), QN_QFORMAT_Q8_0);
    assert_false(fb);
    assert_int_equal(qn_quant_mix_choose(&m, "blk.0.attn_q.weight", e_q, QN_QFORMAT_Q4_1, &fb), QN_QFORMAT_Q5_0);
    assert_true(fb);
    /* layer 0 is in the first eighth: Q6_K -> Q8_0 */
    assert_int_equal(qn_quant_mix_choose(&m, "blk.0.attn_v.weight", e_v, QN_QFORMAT_Q4_1, &fb), QN_QFORMAT_Q8_0);
    assert_true(fb);
    /* ffn_down's 1536 columns take k-quants */
    assert_int_equal(qn_quant_mix_choose(&m, "blk.0.ffn_down.weight", e_dn, QN_QFORMAT_Q4_1, &fb), QN_QFORMAT_Q6_K);
    assert_false(fb);
    assert_int_equal(m.n_fallback, 2);
    /* Q5_K -> Q5_1, Q2_K/Q3_K -> Q4_0; 20 columns fit no block: F16 */
    qn_quant_mix_init(&m, QN_FTYPE_MOSTLY_Q5_K_S, 30, 9, 3, 0, false, true, 30);
    assert_int_equal(qn_quant_mix_choose(&m, "blk.0.attn_q.weight", e_q, QN_QFORMAT_F32, NULL), QN_QFORMAT_Q5_1);
    qn_quant_mix_init(&m, QN_FTYPE_MOSTLY_Q3_K_S, 30, 9, 3, 0, false, true, 30);
    assert_int_equal(qn_quant_mix_choose(&m, "blk.0.attn_q.weight", e_q, QN_QFORMAT_F32, NULL), QN_QFORMAT_Q4_0);
    const int64_t e_odd[4] = {20, 8, 1, 1};
    assert_int_equal(qn_quant_mix_choose(&m, "blk.0.ffn_up.weight", e_odd, QN_QFORMAT_F32, &fb), QN_QFORMAT_F16);
    assert_true(fb);
    qn_quant_mix_init(&m, QN_FTYPE_MOSTLY_Q4_0, 30, 9, 3, 0, false, true, 30);
    assert_int_equal(qn_quant_mix_choose(&m, "blk.0.ffn_up.weight", e_odd, QN_QFORMAT_F32, &fb), QN_QFORMAT_F16);
    /* 70B: Q4_K attn_v becomes Q5_K */
    qn_quant_mix_init(&m, QN_FTYPE_MOSTLY_Q4_K_S, 80, 64, 8, 0, true, false, 80);
    const int64_t e_v70[4] = {8192, 1024, 1, 1};
    for (int i = 0; i < 80; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", i);
        assert_int_equal(qn_quant_mix_choose(&m, nm, e_v70, QN_QFORMAT_F16, NULL), QN_QFORMAT_Q5_K);
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* streaming writer                                                                                 */

/* A writer with one of each value kind and three tensors (one empty). */
static qn_gguf_writer *sample_writer(float *a, uint8_t *b) {
    qn_gguf_writer *w = NULL;
    assert_int_equal(qn_gguf_writer_create(&w, NULL), QN_OK);
    assert_int_equal(qn_gguf_writer_add_str(w, "general.architecture", "llama", NULL), QN_OK);
    assert_int_equal(qn_gguf_writer_add_u32(w, "k.u32", 7, NULL), QN_OK);
    assert_int_equal(qn_gguf_writer_add_f32(w, "k.f32", 1.5f, NULL), QN_OK);
    assert_int_equal(qn_gguf_writer_add_bool(w, "k.bool", true, NULL), QN_OK);
    const int32_t arr[3] = {1, -2, 3};
    assert_int_equal(qn_gguf_writer_add_arr(w, "k.arr", QN_GGUF_TYPE_INT32, arr, 3, NULL), QN_OK);
    const char *strs[2] = {"x", "yz"};
    assert_int_equal(qn_gguf_writer_add_arr_str(w, "k.strs", strs, 2, NULL), QN_OK);
    for (int i = 0; i < 96; i++) a[i] = (float)i * 0.25f - 3.0f;
    for (int i = 0; i < 34 * 2; i++) b[i] = (uint8_t)(i * 7);
    const int64_t ne_a[2] = {32, 3}, ne_b[2] = {32, 2}, ne_z[2] = {32, 0};
    assert_int_equal(qn_gguf_writer_add_tensor(w, "a", QN_QFORMAT_F32, 2, ne_a, a, NULL), QN_OK);
    assert_int_equal(qn_gguf_writer_add_tensor(w, "z", QN_QFORMAT_F32, 2, ne_z, NULL, NULL), QN_OK);
    assert_int_equal(qn_gguf_writer_add_tensor(w, "b", QN_QFORMAT_Q8_0, 2, ne_b, b, NULL), QN_OK);
    return w;
}

static void test_stream_matches_memory(void **state) {
    (void)state;
    float a[96];
    uint8_t b[68];
    qn_gguf_writer *w = sample_writer(a, b);
    void *mem = NULL;
    size_t len = 0;
    assert_int_equal(qn_gguf_writer_write_memory(w, &mem, &len, NULL), QN_OK);
    char path[512], tmp[512];
    tmp_pair(path, tmp, sizeof path, "stream.gguf");
    assert_int_equal(qn_gguf_writer_stream_begin(w, path, NULL), QN_OK);
    assert_true(exists(tmp));
    assert_false(exists(path));
    /* odd piece sizes that cross tensor boundaries */
    assert_int_equal(qn_gguf_writer_stream_put(w, a, 100, NULL), QN_OK);
    assert_int_equal(qn_gguf_writer_stream_tensor(w), 0);
    uint8_t both[384 + 68];
    memcpy(both, a, 384);
    memcpy(both + 384, b, 68);
    assert_int_equal(qn_gguf_writer_stream_put(w, both + 100, 300, NULL), QN_OK);
    assert_int_equal(qn_gguf_writer_stream_tensor(w), 2); /* the empty tensor is stepped over */
    assert_int_equal(qn_gguf_writer_stream_put(w, both + 400, sizeof both - 400, NULL), QN_OK);
    assert_int_equal(qn_gguf_writer_stream_end(w, NULL), QN_OK);
    assert_false(exists(tmp));
    size_t flen = 0;
    char *file = qn_test_read_file(path, &flen);
    assert_non_null(file);
    assert_int_equal(flen, len);
    assert_memory_equal(file, mem, len);
    /* no further metadata once a stream has begun (and after it ended the writer is reusable) */
    free(file);
    free(mem);
    qn_gguf_writer_destroy(w);
}

static void test_stream_incomplete(void **state) {
    (void)state;
    float a[96];
    uint8_t b[68];
    char path[512], tmp[512];
    tmp_pair(path, tmp, sizeof path, "incomplete.gguf");
    /* ended too early: error naming the tensor, nothing left */
    qn_gguf_writer *w = sample_writer(a, b);
    assert_int_equal(qn_gguf_writer_stream_begin(w, path, NULL), QN_OK);
    assert_int_equal(qn_gguf_writer_add_u32(w, "late", 1, NULL), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_gguf_writer_stream_put(w, a, 384, NULL), QN_OK);
    qn_error err = {0};
    assert_int_equal(qn_gguf_writer_stream_end(w, &err), QN_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "'b'"));
    assert_false(exists(tmp));
    assert_false(exists(path));
    qn_gguf_writer_destroy(w);
    /* too much data */
    w = sample_writer(a, b);
    assert_int_equal(qn_gguf_writer_stream_begin(w, path, NULL), QN_OK);
    uint8_t big[600] = {0};
    assert_int_equal(qn_gguf_writer_stream_put(w, big, sizeof big, &err), QN_ERR_INVALID_ARG);
    assert_false(exists(tmp));
    qn_gguf_writer_destroy(w);
    /* destroyed mid-stream */
    w = sample_writer(a, b);
    assert_int_equal(qn_gguf_writer_stream_begin(w, path, NULL), QN_OK);
    assert_int_equal(qn_gguf_writer_stream_put(w, a, 10, NULL), QN_OK);
    qn_gguf_writer_destroy(w);
    assert_false(exists(tmp));
    assert_false(exists(path));
    /* unwritable directory */
    w = sample_writer(a, b);
    assert_int_equal(qn_gguf_writer_stream_begin(w, "/nonexistent-dir/x.gguf", &err), QN_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/x.gguf.tmp"));
    qn_gguf_writer_destroy(w);
}

static void test_copy_kv(void **state) {
    (void)state;
    float a[96];
    uint8_t b[68];
    qn_gguf_writer *w = sample_writer(a, b);
    void *mem = NULL;
    size_t len = 0;
    assert_int_equal(qn_gguf_writer_write_memory(w, &mem, &len, NULL), QN_OK);
    qn_gguf *g = NULL;
    assert_int_equal(qn_gguf_open_memory(mem, len, "sample", &g, NULL), QN_OK);
    qn_gguf_writer *w2 = NULL;
    assert_int_equal(qn_gguf_writer_create(&w2, NULL), QN_OK);
    for (int64_t i = 0; i < qn_gguf_n_kv(g); i++) assert_int_equal(qn_gguf_writer_copy_kv(w2, g, i, NULL, NULL), QN_OK);
    assert_int_equal(qn_gguf_writer_copy_kv(w2, g, 1, "renamed.u32", NULL), QN_OK);
    assert_int_equal(qn_gguf_writer_copy_kv(w2, g, 1, NULL, NULL), QN_ERR_INVALID_ARG); /* duplicate key */
    for (int64_t i = 0; i < qn_gguf_n_tensors(g); i++) {
        const qn_gguf_tensor *t = qn_gguf_tensor_at(g, i);
        char nm[8];
        snprintf(nm, sizeof nm, "%.*s", (int)t->name.len, t->name.ptr);
        assert_int_equal(qn_gguf_writer_add_tensor(w2, nm, t->fmt, t->n_dims, t->ne, t->data, NULL), QN_OK);
    }
    void *mem2 = NULL;
    size_t len2 = 0;
    assert_int_equal(qn_gguf_writer_write_memory(w2, &mem2, &len2, NULL), QN_OK);
    qn_gguf *g2 = NULL;
    assert_int_equal(qn_gguf_open_memory(mem2, len2, "copy", &g2, NULL), QN_OK);
    assert_int_equal(qn_gguf_n_kv(g2), qn_gguf_n_kv(g) + 1);
    uint32_t v = 0;
    assert_int_equal(qn_gguf_get_u32(g2, "renamed.u32", &v, NULL), QN_OK);
    assert_int_equal(v, 7);
    const int64_t si = qn_gguf_find_key(g2, "k.strs");
    assert_int_equal(qn_gguf_arr_n(g2, si), 2);
    assert_int_equal(qn_gguf_arr_str(g2, si, 1).len, 2);
    /* everything but the extra record is byte-identical */
    assert_int_equal(len2 > len, 1);
    qn_gguf_close(g2);
    qn_gguf_close(g);
    qn_gguf_writer_destroy(w2);
    qn_gguf_writer_destroy(w);
    free(mem2);
    free(mem);
}

/* ------------------------------------------------------------------------------------------------ */
/* qn_quantize_gguf on hand-made models                                                             */

enum { E = 64, F = 128, NH = 2, NKV = 1, HD = 32, NL = 2, NV = 40 };

typedef struct toy_opts {
    const char *arch;
    const char *drop;     /* tensor left out */
    const char *reshape;  /* tensor given ne[1] + 1 rows */
    bool nan;             /* a NaN in blk.1.ffn_up */
} toy_opts;

static float *g_toy_data[64];
static int g_toy_n;

/* Writes a 2-layer llama with E-wide F32 weights (deterministic values) to path. */
static void write_toy(const char *path, const toy_opts *o) {
    qn_gguf_writer *w = NULL;
    assert_int_equal(qn_gguf_writer_create(&w, NULL), QN_OK);
    const char *arch = o->arch ? o->arch : "llama";
    char key[96];
    assert_int_equal(qn_gguf_writer_add_str(w, "general.architecture", arch, NULL), QN_OK);
#define KU(s, v) snprintf(key, sizeof key, "%s." s, arch), assert_int_equal(qn_gguf_writer_add_u32(w, key, v, NULL), QN_OK)
    KU("context_length", 256);
    KU("embedding_length", E);
    KU("block_count", NL);
    KU("feed_forward_length", F);
    KU("attention.head_count", NH);
    KU("attention.head_count_kv", NKV);
    KU("vocab_size", NV);
#undef KU
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    assert_int_equal(qn_gguf_writer_add_f32(w, key, 1e-5f, NULL), QN_OK);
    qn_rng rng;
    qn_rng_seed(&rng, 77);
    typedef struct toy_tensor {
        const char *name;
        int64_t ne0, ne1; /* ne1 0: a vector */
    } toy_tensor;
    toy_tensor ts[4 + 9 * NL];
    int n = 0;
    ts[n++] = (toy_tensor){"token_embd.weight", E, NV};
    ts[n++] = (toy_tensor){"output_norm.weight", E, 0};
    ts[n++] = (toy_tensor){"output.weight", E, NV};
    static char names[NL][9][48];
    static const char *const sfx[9] = {"attn_norm.weight", "attn_q.weight",  "attn_k.weight",
                                       "attn_v.weight",    "attn_output.weight", "ffn_norm.weight",
                                       "ffn_gate.weight",  "ffn_up.weight",  "ffn_down.weight"};
    const int64_t shp[9][2] = {{E, 0}, {E, NH * HD}, {E, NKV * HD}, {E, NKV * HD}, {NH * HD, E},
                               {E, 0}, {E, F},       {E, F},        {F, E}};
    for (int l = 0; l < NL; l++)
        for (int j = 0; j < 9; j++) {
            snprintf(names[l][j], sizeof names[l][j], "blk.%d.%s", l, sfx[j]);
            ts[n++] = (toy_tensor){names[l][j], shp[j][0], shp[j][1]};
        }
    g_toy_n = 0;
    for (int i = 0; i < n; i++) {
        if (o->drop && !strcmp(ts[i].name, o->drop)) continue;
        int64_t ne[2] = {ts[i].ne0, ts[i].ne1 ? ts[i].ne1 : 1};
        if (o->reshape && !strcmp(ts[i].name, o->reshape)) ne[1]++;
        const size_t cnt = (size_t)(ne[0] * ne[1]);
        float *d = malloc(cnt * sizeof(float));
        if (ts[i].ne1 == 0) for (size_t k = 0; k < cnt; k++) d[k] = 1.0f + 0.01f * (float)k;
        else qn_rng_fill_normal(&rng, d, cnt, 0.05f);
        if (o->nan && !strcmp(ts[i].name, "blk.1.ffn_up.weight")) d[3 * E + 5] = NAN;
        g_toy_data[g_toy_n++] = d;
        assert_int_equal(qn_gguf_writer_add_tensor(w, ts[i].name, QN_QFORMAT_F32, ts[i].ne1 ? 2 : 1, ne, d, NULL),
                         QN_OK);
    }
    assert_int_equal(qn_gguf_writer_write_file(w, path, NULL), QN_OK);
    qn_gguf_writer_destroy(w);
    for (int i = 0; i < g_toy_n; i++) free(g_toy_data[i]);
}

typedef struct progress_log {
    int starts, ends, requant;
    int64_t last_index;
} progress_log;

static void log_progress(void *ud, const qn_quantize_progress *p) {
    progress_log *l = ud;
    if (p->done) l->ends++, l->last_index = p->index;
    else if (p->rows_done == 0) l->starts++;
    if (p->requantized) l->requant++;
}

static void test_quantize_toy(void **state) {
    (void)state;
    char in[512], out[512], tmp[512];
    qn_test_tmp_path(in, sizeof in, "toy_f32.gguf");
    tmp_pair(out, tmp, sizeof out, "toy_q4_0.gguf");
    const toy_opts o = {0};
    write_toy(in, &o);
    progress_log log = {0};
    qn_quantize_params p = qn_quantize_params_default();
    p.ftype = QN_FTYPE_MOSTLY_Q4_0;
    p.n_threads = 2;
    p.progress = log_progress;
    p.progress_ud = &log;
    qn_quantize_stats stats;
    qn_error err = {0};
    assert_int_equal(qn_quantize_gguf(in, out, &p, &stats, &err), QN_OK);
    assert_true(exists(out));
    assert_false(exists(tmp));
    assert_int_equal(stats.n_tensors, 3 + 9 * NL);
    assert_int_equal(stats.n_copied, 1 + 2 * NL); /* the norms */
    assert_int_equal(log.starts, stats.n_tensors);
    assert_int_equal(log.ends, stats.n_tensors);
    assert_int_equal(log.requant, 0);

    qn_gguf *gi = NULL, *go = NULL;
    assert_int_equal(qn_gguf_open(in, &gi, NULL), QN_OK);
    assert_int_equal(qn_gguf_open(out, &go, NULL), QN_OK);
    uint32_t ft = 0;
    assert_int_equal(qn_gguf_get_u32(go, "general.file_type", &ft, NULL), QN_OK);
    assert_int_equal(ft, QN_FTYPE_MOSTLY_Q4_0);
    /* llama.cpp's order: non-layer tensors first, by name */
    const qn_gguf_tensor *t0 = qn_gguf_tensor_at(go, 0);
    assert_true(t0->name.len == 13 && !memcmp(t0->name.ptr, "output.weight", 13));
    /* every tensor = the reference quantizer applied to the input rows */
    for (int64_t i = 0; i < qn_gguf_n_tensors(go); i++) {
        const qn_gguf_tensor *to = qn_gguf_tensor_at(go, i);
        char nm[64];
        snprintf(nm, sizeof nm, "%.*s", (int)to->name.len, to->name.ptr);
        const qn_gguf_tensor *ti = qn_gguf_find_tensor(gi, nm);
        assert_non_null(ti);
        const qn_qformat want = ti->n_dims == 1 ? QN_QFORMAT_F32 : !strcmp(nm, "output.weight") ? QN_QFORMAT_Q8_0
                                                                                               : QN_QFORMAT_Q4_0;
        /* output: Q6_K by the recipe, 64 % 256 -> Q8_0 */
        if (to->fmt != want) fail_msg("%s: %s, expected %s", nm, QN_QFORMATS[to->fmt].name, QN_QFORMATS[want].name);
        const int64_t cnt = ti->ne[0] * ti->ne[1];
        uint8_t *ref = malloc(qn_qformat_row_bytes(want, cnt));
        QN_QFORMATS[want].quantize_weight(ti->data, ref, cnt);
        assert_int_equal(to->nbytes, qn_qformat_row_bytes(want, cnt));
        assert_memory_equal(to->data, ref, (size_t)to->nbytes);
        free(ref);
    }
    qn_gguf_close(go);
    qn_gguf_close(gi);

    /* requantizing the Q4_0 file to Q8_0: allowed, reported */
    char out2[512];
    qn_test_tmp_path(out2, sizeof out2, "toy_q8_0.gguf");
    memset(&log, 0, sizeof log);
    p.ftype = QN_FTYPE_MOSTLY_Q8_0;
    assert_int_equal(qn_quantize_gguf(out, out2, &p, &stats, &err), QN_OK);
    assert_int_equal(stats.n_requantized, 1 + 7 * NL); /* all matrices but the output (Q8_0 already) */
    assert_int_equal(stats.requant_from, QN_QFORMAT_Q4_0);
    assert_true(log.requant > 0);
}

/* Runs a failing quantization and checks the status, the message and that no file is left. */
static void expect_quantize_fail(const toy_opts *o, const char *tag, qn_status want, const char *needle) {
    char in[512], out[512], tmp[512], nm[64];
    snprintf(nm, sizeof nm, "bad_%s.gguf", tag);
    qn_test_tmp_path(in, sizeof in, nm);
    snprintf(nm, sizeof nm, "bad_%s_out.gguf", tag);
    tmp_pair(out, tmp, sizeof out, nm);
    write_toy(in, o);
    qn_quantize_params p = qn_quantize_params_default();
    p.ftype = QN_FTYPE_MOSTLY_Q4_K_M;
    qn_error err = {0};
    const qn_status st = qn_quantize_gguf(in, out, &p, NULL, &err);
    if (st != want || !strstr(err.msg, needle) || !strstr(err.msg, in))
        fail_msg("%s: status %d (want %d), message '%s' lacks '%s' or the file name", tag, st, want, err.msg, needle);
    assert_false(exists(out));
    assert_false(exists(tmp));
}

static void test_quantize_bad_input(void **state) {
    (void)state;
    expect_quantize_fail(&(toy_opts){.arch = "gpt2"}, "arch", QN_ERR_UNSUPPORTED, "gpt2");
    expect_quantize_fail(&(toy_opts){.drop = "blk.1.ffn_up.weight"}, "missing", QN_ERR_FORMAT,
                         "blk.1.ffn_up.weight");
    expect_quantize_fail(&(toy_opts){.reshape = "blk.0.attn_k.weight"}, "shape", QN_ERR_FORMAT,
                         "blk.0.attn_k.weight");
    expect_quantize_fail(&(toy_opts){.nan = true}, "nan", QN_ERR_FORMAT, "blk.1.ffn_up.weight");
    /* output = input, and a missing input */
    char in[512];
    qn_test_tmp_path(in, sizeof in, "bad_arch.gguf");
    qn_quantize_params p = qn_quantize_params_default();
    qn_error err = {0};
    assert_int_equal(qn_quantize_gguf(in, in, &p, NULL, &err), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_quantize_gguf("/nonexistent.gguf", "/tmp/x.gguf", &p, NULL, &err), QN_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "/nonexistent.gguf"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ftype_names),      cmocka_unit_test(test_order),
        cmocka_unit_test(test_mix_llama3_8b),    cmocka_unit_test(test_mix_fallbacks),
        cmocka_unit_test(test_stream_matches_memory), cmocka_unit_test(test_stream_incomplete),
        cmocka_unit_test(test_copy_kv),          cmocka_unit_test(test_quantize_toy),
        cmocka_unit_test(test_quantize_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
