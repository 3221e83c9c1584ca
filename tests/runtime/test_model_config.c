/* test_model_config.c — qn_model_config from GGUF metadata (built with qn_gguf_writer) and from HF
 * config.json files: defaults, arch rules (qwen2 -> NEOX + qkv bias, HF -> NEOX, GGUF llama ->
 * NORM), rope scaling variants, and every missing / mistyped required key named in the message.
 * Ends with the real SmolLM2 file when present. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/model_config.h"
#include "model/gguf.h"
#include "model/gguf_write.h"

/* ------------------------------------------------------------------------------------------------ */
/* GGUF                                                                                             */

enum { KV_U32, KV_F32, KV_STR };
typedef struct kvdef {
    const char *key;
    int kind;
    uint32_t u;
    float f;
    const char *s;
} kvdef;

/* A minimal llama file; prefix "llama." is replaced by the arch when building other archs. */
static const kvdef BASE[] = {
    {"general.architecture", KV_STR, 0, 0, "llama"},
    {"llama.context_length", KV_U32, 2048, 0, NULL},
    {"llama.embedding_length", KV_U32, 256, 0, NULL},
    {"llama.block_count", KV_U32, 4, 0, NULL},
    {"llama.feed_forward_length", KV_U32, 512, 0, NULL},
    {"llama.attention.head_count", KV_U32, 8, 0, NULL},
    {"llama.attention.layer_norm_rms_epsilon", KV_F32, 0, 1e-5f, NULL},
};
#define N_BASE (sizeof BASE / sizeof BASE[0])

typedef struct build {
    const char *arch;        /* default "llama" */
    const char *omit;        /* base key to leave out (in llama spelling) */
    const kvdef *extra;      /* extra keys, full spelling */
    size_t n_extra;
    const char *const *tensors; /* names of F32 [32] tensors to add */
    size_t n_tensors;
    bool no_tokens;
} build;

typedef struct built {
    void *buf;
    qn_gguf *g;
} built;

static void add_kv(qn_gguf_writer *w, const kvdef *d) {
    qn_error e = {0};
    qn_status st = QN_OK;
    if (d->kind == KV_U32) st = qn_gguf_writer_add_u32(w, d->key, d->u, &e);
    if (d->kind == KV_F32) st = qn_gguf_writer_add_f32(w, d->key, d->f, &e);
    if (d->kind == KV_STR) st = qn_gguf_writer_add_str(w, d->key, d->s, &e);
    if (st) print_error("%s\n", e.msg);
    assert_int_equal(st, QN_OK);
}

static built make(const build *b) {
    qn_gguf_writer *w;
    qn_error e = {0};
    assert_int_equal(qn_gguf_writer_create(&w, &e), QN_OK);
    const char *arch = b->arch ? b->arch : "llama";
    for (size_t i = 0; i < N_BASE; i++) {
        if (b->omit && !strcmp(b->omit, BASE[i].key)) continue;
        kvdef d = BASE[i];
        char key[128];
        if (!strncmp(d.key, "llama.", 6)) {
            snprintf(key, sizeof key, "%s.%s", arch, d.key + 6);
            d.key = key;
        }
        if (d.kind == KV_STR) d.s = arch;
        add_kv(w, &d);
    }
    for (size_t i = 0; i < b->n_extra; i++) add_kv(w, &b->extra[i]);
    if (!b->no_tokens) {
        const char *toks[10] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
        assert_int_equal(qn_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 10, &e), QN_OK);
    }
    const int64_t ne[1] = {32};
    for (size_t i = 0; i < b->n_tensors; i++)
        assert_int_equal(qn_gguf_writer_add_tensor(w, b->tensors[i], QN_QFORMAT_F32, 1, ne, NULL, &e), QN_OK);
    built r = {0};
    size_t len;
    assert_int_equal(qn_gguf_writer_write_memory(w, &r.buf, &len, &e), QN_OK);
    qn_gguf_writer_destroy(w);
    assert_int_equal(qn_gguf_open_memory(r.buf, len, "cfg.gguf", &r.g, &e), QN_OK);
    return r;
}

static void unmake(built *r) {
    qn_gguf_close(r->g);
    free(r->buf);
}

static qn_status cfg_of(const build *b, qn_model_config *c, qn_error *e) {
    built r = make(b);
    memset(e, 0, sizeof *e);
    const qn_status st = qn_model_config_from_gguf(r.g, c, e);
    unmake(&r);
    return st;
}

static void expect_cfg_fail(const build *b, qn_status want, const char *n1, const char *n2) {
    qn_model_config c;
    qn_error e;
    const qn_status st = cfg_of(b, &c, &e);
    if (st != want || !strstr(e.msg, "cfg.gguf") || (n1 && !strstr(e.msg, n1)) || (n2 && !strstr(e.msg, n2)))
        print_error("status %d (want %d): %s\n  expected '%s' and '%s'\n", st, want, e.msg, n1 ? n1 : "",
                    n2 ? n2 : "");
    assert_int_equal(st, want);
    assert_non_null(strstr(e.msg, "cfg.gguf"));
    if (n1) assert_non_null(strstr(e.msg, n1));
    if (n2) assert_non_null(strstr(e.msg, n2));
}

static void test_gguf_defaults(void **state) {
    qn_model_config c;
    qn_error e;
    const build b = {0};
    assert_int_equal(cfg_of(&b, &c, &e), QN_OK);
    assert_int_equal(c.arch, QN_ARCH_LLAMA);
    assert_int_equal(c.n_ctx_train, 2048);
    assert_int_equal(c.n_embd, 256);
    assert_int_equal(c.n_layer, 4);
    assert_int_equal(c.n_ff, 512);
    assert_int_equal(c.n_head, 8);
    assert_int_equal(c.n_head_kv, 8);  /* absent => n_head */
    assert_int_equal(c.head_dim, 32);  /* n_embd / n_head */
    assert_int_equal(c.rope_dim, 32);
    assert_int_equal(c.n_vocab, 10);   /* len(tokenizer.ggml.tokens) */
    assert_true(c.rope_theta == 10000.0f);
    assert_true(c.rms_eps == 1e-5f);
    assert_int_equal(c.rope_style, QN_ROPE_STYLE_NORM);
    assert_int_equal(c.rope_scaling.type, QN_ROPE_SCALING_NONE);
    assert_true(c.rope_scaling.factor == 1.0f);
    assert_false(c.rope_freqs_tensor);
    assert_true(c.tied_embeddings);    /* no output.weight */
    assert_false(c.qkv_bias);
    assert_int_equal(c.bos_id, -1);
    assert_int_equal(c.eos_id, -1);
    assert_string_equal(qn_arch_name(c.arch), "llama");
    assert_string_equal(qn_rope_style_name(c.rope_style), "norm");
    assert_string_equal(qn_rope_scaling_type_name(c.rope_scaling.type), "none");
}

static void test_gguf_optional_keys(void **state) {
    const kvdef extra[] = {
        {"llama.attention.head_count_kv", KV_U32, 2, 0, NULL},
        {"llama.attention.key_length", KV_U32, 64, 0, NULL},
        {"llama.attention.value_length", KV_U32, 64, 0, NULL},
        {"llama.rope.dimension_count", KV_U32, 48, 0, NULL},
        {"llama.rope.freq_base", KV_F32, 0, 500000.0f, NULL},
        {"llama.vocab_size", KV_U32, 12, 0, NULL},
        {"tokenizer.ggml.model", KV_STR, 0, 0, "llama"},
        {"tokenizer.ggml.eos_token_id", KV_U32, 7, 0, NULL},
    };
    const char *tensors[] = {"output.weight", "blk.0.attn_q.bias"};
    const build b = {.extra = extra, .n_extra = 8, .tensors = tensors, .n_tensors = 2};
    qn_model_config c;
    qn_error e;
    assert_int_equal(cfg_of(&b, &c, &e), QN_OK);
    assert_int_equal(c.n_head_kv, 2);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.rope_dim, 48);
    assert_true(c.rope_theta == 500000.0f);
    assert_int_equal(c.n_vocab, 12);
    assert_int_equal(c.bos_id, 1); /* SPM default */
    assert_int_equal(c.eos_id, 7);
    assert_false(c.tied_embeddings);
    assert_true(c.qkv_bias);
}

static void test_gguf_qwen2(void **state) {
    const build b = {.arch = "qwen2"};
    qn_model_config c;
    qn_error e;
    assert_int_equal(cfg_of(&b, &c, &e), QN_OK);
    assert_int_equal(c.arch, QN_ARCH_QWEN2);
    assert_int_equal(c.rope_style, QN_ROPE_STYLE_NEOX);
    assert_true(c.qkv_bias);
    expect_cfg_fail(&(build){.arch = "gpt2"}, QN_ERR_UNSUPPORTED, "general.architecture", "'gpt2'");
}

static void test_gguf_rope_scaling(void **state) {
    qn_model_config c;
    qn_error e;
    const kvdef yarn[] = {
        {"llama.rope.scaling.type", KV_STR, 0, 0, "yarn"},
        {"llama.rope.scaling.factor", KV_F32, 0, 4.0f, NULL},
        {"llama.rope.scaling.original_context_length", KV_U32, 32768, 0, NULL},
        {"llama.rope.scaling.yarn_beta_fast", KV_F32, 0, 16.0f, NULL},
    };
    assert_int_equal(cfg_of(&(build){.extra = yarn, .n_extra = 4}, &c, &e), QN_OK);
    assert_int_equal(c.rope_scaling.type, QN_ROPE_SCALING_YARN);
    assert_true(c.rope_scaling.factor == 4.0f);
    assert_int_equal(c.rope_scaling.orig_ctx, 32768);
    assert_true(c.rope_scaling.yarn_beta_fast == 16.0f);
    assert_true(c.rope_scaling.yarn_beta_slow == 1.0f);

    const kvdef legacy[] = {{"llama.rope.scale_linear", KV_F32, 0, 2.0f, NULL}};
    assert_int_equal(cfg_of(&(build){.extra = legacy, .n_extra = 1}, &c, &e), QN_OK);
    assert_int_equal(c.rope_scaling.type, QN_ROPE_SCALING_LINEAR);
    assert_true(c.rope_scaling.factor == 2.0f);

    const char *rf[] = {"rope_freqs.weight"};
    assert_int_equal(cfg_of(&(build){.tensors = rf, .n_tensors = 1}, &c, &e), QN_OK);
    assert_int_equal(c.rope_scaling.type, QN_ROPE_SCALING_LLAMA3);
    assert_true(c.rope_freqs_tensor);

    const kvdef longrope[] = {{"llama.rope.scaling.type", KV_STR, 0, 0, "longrope"}};
    expect_cfg_fail(&(build){.extra = longrope, .n_extra = 1}, QN_ERR_UNSUPPORTED, "llama.rope.scaling.type",
                    "longrope");
    const kvdef zero[] = {{"llama.rope.scaling.type", KV_STR, 0, 0, "linear"},
                          {"llama.rope.scaling.factor", KV_F32, 0, 0.0f, NULL}};
    expect_cfg_fail(&(build){.extra = zero, .n_extra = 2}, QN_ERR_FORMAT, "factor", NULL);
}

static void test_gguf_missing_keys(void **state) {
    for (size_t i = 0; i < N_BASE; i++) {
        const build b = {.omit = BASE[i].key};
        expect_cfg_fail(&b, QN_ERR_FORMAT, BASE[i].key, "missing");
    }
    expect_cfg_fail(&(build){.no_tokens = true}, QN_ERR_FORMAT, "llama.vocab_size", "tokenizer.ggml.tokens");
    const kvdef bad_type[] = {{"llama.block_count", KV_STR, 0, 0, "four"}};
    expect_cfg_fail(&(build){.omit = "llama.block_count", .extra = bad_type, .n_extra = 1}, QN_ERR_FORMAT,
                    "llama.block_count", "string");
    const kvdef bad_eps[] = {{"llama.attention.layer_norm_rms_epsilon", KV_STR, 0, 0, "tiny"}};
    expect_cfg_fail(&(build){.omit = "llama.attention.layer_norm_rms_epsilon", .extra = bad_eps, .n_extra = 1},
                    QN_ERR_FORMAT, "llama.attention.layer_norm_rms_epsilon", NULL);
    const kvdef kv3[] = {{"llama.attention.head_count_kv", KV_U32, 3, 0, NULL}};
    expect_cfg_fail(&(build){.extra = kv3, .n_extra = 1}, QN_ERR_FORMAT, "n_head_kv 3", NULL);
    const kvdef heads7[] = {{"llama.attention.head_count", KV_U32, 7, 0, NULL}};
    expect_cfg_fail(&(build){.omit = "llama.attention.head_count", .extra = heads7, .n_extra = 1}, QN_ERR_FORMAT,
                    "llama.attention.key_length", NULL);
    const kvdef vlen[] = {{"llama.attention.value_length", KV_U32, 16, 0, NULL}};
    expect_cfg_fail(&(build){.extra = vlen, .n_extra = 1}, QN_ERR_UNSUPPORTED, "llama.attention.value_length", NULL);
    const kvdef zero_layers[] = {{"llama.block_count", KV_U32, 0, 0, NULL}};
    expect_cfg_fail(&(build){.omit = "llama.block_count", .extra = zero_layers, .n_extra = 1}, QN_ERR_FORMAT,
                    "n_layer", NULL);
}

/* ------------------------------------------------------------------------------------------------ */
/* HF config.json                                                                                   */

static qn_status hf_cfg(const char *name, const char *json, qn_model_config *c, qn_error *e, char *path,
                        size_t cap) {
    qn_test_tmp_path(path, cap, name);
    assert_int_equal(qn_test_write_file(path, json, strlen(json)), 0);
    memset(e, 0, sizeof *e);
    return qn_model_config_from_hf(path, c, e);
}

static const char *SMOL_HF =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,\"bos_token_id\":1,\"eos_token_id\":2,"
    "\"hidden_act\":\"silu\",\"hidden_size\":576,\"intermediate_size\":1536,\"max_position_embeddings\":8192,"
    "\"model_type\":\"llama\",\"num_attention_heads\":9,\"num_hidden_layers\":30,\"num_key_value_heads\":3,"
    "\"rms_norm_eps\":1e-05,\"rope_scaling\":null,\"rope_theta\":100000,\"tie_word_embeddings\":true,"
    "\"torch_dtype\":\"bfloat16\",\"vocab_size\":49152}";

static void test_hf_llama(void **state) {
    qn_model_config c;
    qn_error e;
    char path[512];
    assert_int_equal(hf_cfg("smol.json", SMOL_HF, &c, &e, path, sizeof path), QN_OK);
    assert_int_equal(c.arch, QN_ARCH_LLAMA);
    assert_int_equal(c.n_embd, 576);
    assert_int_equal(c.n_layer, 30);
    assert_int_equal(c.n_head, 9);
    assert_int_equal(c.n_head_kv, 3);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.rope_dim, 64);
    assert_int_equal(c.n_ff, 1536);
    assert_int_equal(c.n_vocab, 49152);
    assert_int_equal(c.n_ctx_train, 8192);
    assert_true(c.rope_theta == 100000.0f);
    assert_true(c.rms_eps == 1e-5f);
    assert_true(c.tied_embeddings);
    assert_false(c.qkv_bias);
    assert_int_equal(c.rope_style, QN_ROPE_STYLE_NEOX); /* HF row order */
    assert_int_equal(c.rope_scaling.type, QN_ROPE_SCALING_NONE);
    assert_int_equal(c.bos_id, 1);
    assert_int_equal(c.eos_id, 2);
}

static void test_hf_llama31(void **state) {
    const char *json =
        "{\"architectures\":[\"LlamaForCausalLM\"],\"bos_token_id\":128000,\"eos_token_id\":[128001,128008,128009],"
        "\"hidden_size\":4096,\"intermediate_size\":14336,\"max_position_embeddings\":131072,"
        "\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_heads\":8,\"rms_norm_eps\":1e-05,"
        "\"rope_scaling\":{\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
        "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},\"rope_theta\":500000.0,"
        "\"tie_word_embeddings\":false,\"vocab_size\":128256}";
    qn_model_config c;
    qn_error e;
    char path[512];
    assert_int_equal(hf_cfg("llama31.json", json, &c, &e, path, sizeof path), QN_OK);
    assert_int_equal(c.rope_scaling.type, QN_ROPE_SCALING_LLAMA3);
    assert_true(c.rope_scaling.factor == 8.0f);
    assert_true(c.rope_scaling.low_freq_factor == 1.0f);
    assert_true(c.rope_scaling.high_freq_factor == 4.0f);
    assert_int_equal(c.rope_scaling.orig_ctx, 8192);
    assert_int_equal(c.bos_id, 128000);
    assert_int_equal(c.eos_id, 128001);
    assert_false(c.tied_embeddings);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.n_head_kv, 8);
}

static void test_hf_qwen2_mistral(void **state) {
    const char *qwen =
        "{\"architectures\":[\"Qwen2ForCausalLM\"],\"bos_token_id\":151643,\"eos_token_id\":151645,"
        "\"hidden_size\":896,\"intermediate_size\":4864,\"max_position_embeddings\":32768,\"max_window_layers\":21,"
        "\"model_type\":\"qwen2\",\"num_attention_heads\":14,\"num_hidden_layers\":24,\"num_key_value_heads\":2,"
        "\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,\"sliding_window\":32768,\"tie_word_embeddings\":true,"
        "\"use_sliding_window\":false,\"vocab_size\":151936}";
    qn_model_config c;
    qn_error e;
    char path[512];
    assert_int_equal(hf_cfg("qwen.json", qwen, &c, &e, path, sizeof path), QN_OK);
    assert_int_equal(c.arch, QN_ARCH_QWEN2);
    assert_true(c.qkv_bias);
    assert_true(c.tied_embeddings);
    assert_int_equal(c.rope_style, QN_ROPE_STYLE_NEOX);
    assert_int_equal(c.head_dim, 64);
    const char *mistral =
        "{\"architectures\":[\"MistralForCausalLM\"],\"bos_token_id\":1,\"eos_token_id\":2,\"head_dim\":null,"
        "\"hidden_size\":4096,\"intermediate_size\":14336,\"max_position_embeddings\":32768,"
        "\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_heads\":8,\"rms_norm_eps\":1e-05,"
        "\"rope_theta\":1000000.0,\"sliding_window\":null,\"vocab_size\":32768}";
    assert_int_equal(hf_cfg("mistral.json", mistral, &c, &e, path, sizeof path), QN_OK);
    assert_int_equal(c.arch, QN_ARCH_MISTRAL);
    assert_int_equal(c.head_dim, 128);
    assert_false(c.tied_embeddings); /* transformers' default for these classes */
    assert_false(c.qkv_bias);
    /* model_type alone is enough */
    assert_int_equal(hf_cfg("mt.json",
                            "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,"
                            "\"max_position_embeddings\":128,\"num_attention_heads\":4,\"num_hidden_layers\":2,"
                            "\"vocab_size\":100,\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}}",
                            &c, &e, path, sizeof path),
                     QN_OK);
    assert_int_equal(c.rope_scaling.type, QN_ROPE_SCALING_LINEAR);
    assert_true(c.rope_scaling.factor == 2.0f);
    assert_true(c.rms_eps == 1e-6f);
    assert_int_equal(c.bos_id, -1);
}

static void expect_hf_fail(const char *json, qn_status want, const char *n1) {
    qn_model_config c;
    qn_error e;
    char path[512];
    const qn_status st = hf_cfg("bad_config.json", json, &c, &e, path, sizeof path);
    if (st != want || !strstr(e.msg, "bad_config.json") || (n1 && !strstr(e.msg, n1)))
        print_error("status %d (want %d): %s\n  expected '%s'\n", st, want, e.msg, n1 ? n1 : "");
    assert_int_equal(st, want);
    assert_non_null(strstr(e.msg, "bad_config.json"));
    if (n1) assert_non_null(strstr(e.msg, n1));
}

static void test_hf_errors(void **state) {
    static const char *required[] = {"vocab_size", "max_position_embeddings", "hidden_size", "num_hidden_layers",
                                     "intermediate_size", "num_attention_heads"};
    for (size_t i = 0; i < 6; i++) {
        /* SMOL_HF with one required key renamed away */
        char json[2048], pat[64];
        snprintf(json, sizeof json, "%s", SMOL_HF);
        snprintf(pat, sizeof pat, "\"%s\"", required[i]);
        char *at = strstr(json, pat);
        assert_non_null(at);
        at[1] = 'X';
        expect_hf_fail(json, QN_ERR_FORMAT, required[i]);
    }
    expect_hf_fail("{\"architectures\":[\"GPT2LMHeadModel\"]}", QN_ERR_UNSUPPORTED, "GPT2LMHeadModel");
    expect_hf_fail("{\"hidden_size\":64}", QN_ERR_FORMAT, "architectures");
    expect_hf_fail("{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":10,\"max_position_embeddings\":10,"
                   "\"hidden_size\":\"big\"}",
                   QN_ERR_FORMAT, "hidden_size");
    expect_hf_fail("{\"architectures\":[\"LlamaForCausalLM\"],", QN_ERR_FORMAT, NULL);
    expect_hf_fail("[1]", QN_ERR_FORMAT, NULL);
    char json[2048];
    snprintf(json, sizeof json, "%.*s,\"rope_scaling\":{\"rope_type\":\"dynamic\",\"factor\":2.0}}",
             (int)strlen(SMOL_HF) - 1, SMOL_HF);
    /* SMOL_HF already has rope_scaling:null; a duplicate key is itself an error, so replace it */
    char *at = strstr(json, "\"rope_scaling\":null,");
    memmove(at, at + 20, strlen(at + 20) + 1);
    expect_hf_fail(json, QN_ERR_UNSUPPORTED, "rope_scaling");
    snprintf(json, sizeof json, "%s", SMOL_HF);
    at = strstr(json, "\"num_key_value_heads\":3");
    at[22] = '4';
    expect_hf_fail(json, QN_ERR_FORMAT, "n_head_kv 4");

    qn_model_config c;
    qn_error e = {0};
    char path[512];
    qn_test_tmp_path(path, sizeof path, "no-such-config.json");
    assert_int_equal(qn_model_config_from_hf(path, &c, &e), QN_ERR_NOT_FOUND);
    assert_non_null(strstr(e.msg, "no-such-config.json"));
}

static void test_hf_yarn(void **state) {
    char json[2048];
    snprintf(json, sizeof json, "%s", SMOL_HF);
    char *at = strstr(json, "\"rope_scaling\":null");
    const char *repl = "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0,"
                       "\"original_max_position_embeddings\":32768}";
    char tail[2048];
    snprintf(tail, sizeof tail, "%s", at + strlen("\"rope_scaling\":null"));
    snprintf(at, sizeof json - (size_t)(at - json), "%s%s", repl, tail);
    qn_model_config c;
    qn_error e;
    char path[512];
    assert_int_equal(hf_cfg("yarn.json", json, &c, &e, path, sizeof path), QN_OK);
    assert_int_equal(c.rope_scaling.type, QN_ROPE_SCALING_YARN);
    assert_true(c.rope_scaling.factor == 4.0f);
    assert_int_equal(c.rope_scaling.orig_ctx, 32768);
    assert_true(c.rope_scaling.yarn_beta_fast == 32.0f);
}

/* ------------------------------------------------------------------------------------------------ */
/* the real model                                                                                   */

static void test_real_model(void **state) {
    const char *path = qn_test_default_model();
    if (!path) skip();
    qn_gguf *g = NULL;
    qn_error e = {0};
    assert_int_equal(qn_gguf_open(path, &g, &e), QN_OK);
    qn_model_config c;
    const qn_status st = qn_model_config_from_gguf(g, &c, &e);
    if (st) print_error("%s\n", e.msg);
    assert_int_equal(st, QN_OK);
    assert_int_equal(c.arch, QN_ARCH_LLAMA);
    assert_int_equal(c.n_embd, 576);
    assert_int_equal(c.n_layer, 30);
    assert_int_equal(c.n_head, 9);
    assert_int_equal(c.n_head_kv, 3);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.rope_dim, 64);
    assert_int_equal(c.n_ff, 1536);
    assert_int_equal(c.n_vocab, 49152);
    assert_int_equal(c.n_ctx_train, 8192);
    assert_true(c.rope_theta == 100000.0f);
    assert_true(fabsf(c.rms_eps - 1e-5f) < 1e-12f);
    assert_true(c.tied_embeddings);
    assert_false(c.qkv_bias);
    assert_int_equal(c.rope_style, QN_ROPE_STYLE_NORM);
    assert_int_equal(c.rope_scaling.type, QN_ROPE_SCALING_NONE);
    assert_int_equal(c.bos_id, 1);
    assert_int_equal(c.eos_id, 2);
    qn_gguf_close(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_defaults),   cmocka_unit_test(test_gguf_optional_keys),
        cmocka_unit_test(test_gguf_qwen2),      cmocka_unit_test(test_gguf_rope_scaling),
        cmocka_unit_test(test_gguf_missing_keys), cmocka_unit_test(test_hf_llama),
        cmocka_unit_test(test_hf_llama31),      cmocka_unit_test(test_hf_qwen2_mistral),
        cmocka_unit_test(test_hf_errors),       cmocka_unit_test(test_hf_yarn),
        cmocka_unit_test(test_real_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
