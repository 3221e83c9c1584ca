/* test_hf_loader.c — the HF directory loader (model/hf_loader.c): a one-layer Llama written here as
 * config.json + model.safetensors with every linear in GPTQ (4-bit, group 32, act-order g_idx, v1), AWQ (GEMM,
 * group 32) or bnb NF4 (blocksize 64, double quant) form with seeded random codes, next to the same model with
 * those linears dequantized exactly (F32 tensors of scale·(q − zero), unrounded as the CPU kernel uses them;
 * the bit-exact rounding to the peers' dtype is test_quant_hf_peer's). Both load through qn_model_load_hf and
 * their logits agree (NMSE ≤ 1e-9: the lutq kernel and the F32 path differ only in fp32 summation order).
 * Also: the clear errors for unsupported combinations (they name the file or tensor and the field).
 * The tokenizer comes from the default SmolLM2 GGUF (skipped when absent), so n_vocab is 49152. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "exec/context.h"
#include "kernels/common/half.h"
#include "model/hf_quant.h"
#include "model/model.h"
#include "model/safetensors.h"

#define E 64
#define FF 128
#define V 49152
#define HD 32

/* ------------------------------------------------------------------ a tiny safetensors writer */

typedef struct st_entry {
    char name[256];
    const char *dtype;
    int nd;
    int64_t shape[2];
    void *data;   /* owned */
    size_t nbytes;
} st_entry;

typedef struct st_list {
    st_entry e[64];
    int n;
} st_list;

static void *add(st_list *l, const char *name, const char *dtype, int nd, int64_t s0, int64_t s1, size_t esz) {
    st_entry *e = &l->e[l->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->dtype = dtype, e->nd = nd, e->shape[0] = s0, e->shape[1] = s1;
    e->nbytes = (size_t)s0 * (size_t)(nd > 1 ? s1 : 1) * esz;
    e->data = calloc(1, e->nbytes ? e->nbytes : 1);
    return e->data;
}

static void write_st(const char *path, st_list *l) {
    char *hdr = malloc(65536);
    size_t off = 0;
    int len = snprintf(hdr, 65536, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < l->n; i++) {
        const st_entry *e = &l->e[i];
        if (e->nd == 1)
            len += snprintf(hdr + len, 65536 - (size_t)len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}",
                            e->name, e->dtype, (long long)e->shape[0], off, off + e->nbytes);
        else
            len += snprintf(hdr + len, 65536 - (size_t)len,
                            ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}", e->name,
                            e->dtype, (long long)e->shape[0], (long long)e->shape[1], off, off + e->nbytes);
        off += e->nbytes;
    }
    len += snprintf(hdr + len, 65536 - (size_t)len, "}");
    while (len % 8) hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    const uint64_t n = (uint64_t)len;
    fwrite(&n, 8, 1, f);
    fwrite(hdr, 1, (size_t)len, f);
    for (int i = 0; i < l->n; i++) fwrite(l->e[i].data, 1, l->e[i].nbytes, f);
    fclose(f);
    free(hdr);
}

static void free_list(st_list *l) {
    for (int i = 0; i < l->n; i++) free(l->e[i].data);
    l->n = 0;
}

static void write_text(const char *path, const char *text) {
    assert_int_equal(qn_test_write_file(path, text, strlen(text)), 0);
}

static void write_config(const char *dir, const char *qcfg) {
    char path[1024], buf[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(buf, sizeof buf,
             "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":%d,"
             "\"intermediate_size\":%d,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
             "\"vocab_size\":%d,\"max_position_embeddings\":2048,\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,"
             "\"tie_word_embeddings\":true,\"bos_token_id\":1,\"eos_token_id\":2%s%s}",
             E, FF, V, qcfg ? ",\"quantization_config\":" : "", qcfg ? qcfg : "");
    write_text(path, buf);
}

static void fill_f16(qn_rng *r, uint16_t *p, size_t n, float scale, float offset) {
    for (size_t i = 0; i < n; i++) p[i] = qn_f32_to_f16(offset + scale * qn_rng_normal(r));
}

/* ------------------------------------------------------------------ the model pair */

typedef enum { Q_GPTQ, Q_AWQ, Q_NF4 } qkind;

static const struct { const char *mod; int k, n; } LIN[7] = {
    {"self_attn.q_proj", E, 2 * HD}, {"self_attn.k_proj", E, HD},   {"self_attn.v_proj", E, HD},
    {"self_attn.o_proj", 2 * HD, E}, {"mlp.gate_proj", E, FF},      {"mlp.up_proj", E, FF},
    {"mlp.down_proj", FF, E},
};

static void common_tensors(qn_rng *r, st_list *l) {
    fill_f16(r, add(l, "model.embed_tokens.weight", "F16", 2, V, E, 2), (size_t)V * E, 0.05f, 0.0f);
    fill_f16(r, add(l, "model.norm.weight", "F16", 1, E, 0, 2), E, 0.1f, 1.0f);
    fill_f16(r, add(l, "model.layers.0.input_layernorm.weight", "F16", 1, E, 0, 2), E, 0.1f, 1.0f);
    fill_f16(r, add(l, "model.layers.0.post_attention_layernorm.weight", "F16", 1, E, 0, 2), E, 0.1f, 1.0f);
}

static void quant_linear(qn_rng *r, st_list *l, qkind kind, const char *prefix, int K, int N) {
    char nm[160];
#define NM(suffix) (snprintf(nm, sizeof nm, "%s%s", prefix, suffix), nm)
    if (kind == Q_GPTQ) {
        const int G = K / 32;
        qn_rng_fill_bytes(r, add(l, NM("qweight"), "I32", 2, K / 8, N, 4), (size_t)(K / 8) * N * 4);
        qn_rng_fill_bytes(r, add(l, NM("qzeros"), "I32", 2, G, N / 8, 4), (size_t)G * (N / 8) * 4);
        uint16_t *s = add(l, NM("scales"), "F16", 2, G, N, 2);
        for (int i = 0; i < G * N; i++) s[i] = qn_f32_to_f16(qn_rng_uniform(r, 0.002f, 0.01f));
        int32_t *gi = add(l, NM("g_idx"), "I32", 1, K, 0, 4);
        for (int k = 0; k < K; k++) gi[k] = k / 32;
        for (int k = K - 1; k > 0; k--) { /* act-order: a random assignment with equal group sizes */
            const int j = (int)(qn_rng_u64(r) % (uint64_t)(k + 1));
            const int32_t t = gi[k];
            gi[k] = gi[j], gi[j] = t;
        }
    } else if (kind == Q_AWQ) {
        const int G = K / 32;
        qn_rng_fill_bytes(r, add(l, NM("qweight"), "I32", 2, K, N / 8, 4), (size_t)K * (N / 8) * 4);
        qn_rng_fill_bytes(r, add(l, NM("qzeros"), "I32", 2, G, N / 8, 4), (size_t)G * (N / 8) * 4);
        uint16_t *s = add(l, NM("scales"), "F16", 2, G, N, 2);
        for (int i = 0; i < G * N; i++) s[i] = qn_f32_to_f16(qn_rng_uniform(r, 0.002f, 0.01f));
    } else {
        const int nb = K * N / 64, nn = (nb + 255) / 256;
        qn_rng_fill_bytes(r, add(l, NM("weight"), "U8", 2, K * N / 2, 1, 1), (size_t)K * N / 2);
        qn_rng_fill_bytes(r, add(l, NM("weight.absmax"), "U8", 1, nb, 0, 1), (size_t)nb);
        float *q = add(l, NM("weight.quant_map"), "F32", 1, 16, 0, 4);
        memcpy(q, QN_BNB4_NF4_MAP, sizeof(float) * 16);
        float *na = add(l, NM("weight.nested_absmax"), "F32", 1, nn, 0, 4);
        for (int i = 0; i < nn; i++) na[i] = qn_rng_uniform(r, 0.001f, 0.004f);
        float *nq = add(l, NM("weight.nested_quant_map"), "F32", 1, 256, 0, 4);
        for (int i = 0; i < 256; i++) nq[i] = (float)(i - 128) / 128.0f;
        char js[512];
        snprintf(js, sizeof js,
                 "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [%d, %d], "
                 "\"nested_blocksize\": 256, \"nested_offset\": 0.02, \"nested_dtype\": \"float32\"}", N, K);
        memcpy(add(l, NM("weight.quant_state.bitsandbytes__nf4"), "U8", 1, (int64_t)strlen(js), 0, 1), js, strlen(js));
    }
#undef NM
}

static const char *QCFG[3] = {
    "{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":32,\"desc_act\":true,\"sym\":false,\"checkpoint_format\":\"gptq\"}",
    "{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":32,\"zero_point\":true,\"version\":\"gemm\"}",
    "{\"quant_method\":\"bitsandbytes\",\"load_in_4bit\":true,\"bnb_4bit_quant_type\":\"nf4\","
    "\"bnb_4bit_use_double_quant\":true,\"bnb_4bit_compute_dtype\":\"float16\"}",
};

/* writes dir/q (quantized) and dir/f (the same model with reference-dequantized F32 linears) */
static void make_pair(qkind kind, const char *qdir, const char *fdir) {
    qn_rng r;
    qn_rng_seed(&r, 1234 + (uint64_t)kind);
    mkdir(qdir, 0755), mkdir(fdir, 0755);
    st_list *l = calloc(1, sizeof *l);
    common_tensors(&r, l);
    for (int i = 0; i < 7; i++) {
        char p[128];
        snprintf(p, sizeof p, "model.layers.0.%s.", LIN[i].mod);
        quant_linear(&r, l, kind, p, LIN[i].k, LIN[i].n);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", qdir);
    write_st(path, l);
    write_config(qdir, QCFG[kind]);
    free_list(l);

    /* reference: bind each linear with the loader's binding and dequantize with the bit-exact reference */
    qn_st *st = NULL;
    qn_error err = {0};
    if (qn_st_open(path, &st, &err) != QN_OK) fail_msg("%s", err.msg);
    qn_hf_quant_config qc;
    if (qn_hf_quant_config_read(qdir, &qc, &err) != QN_OK) fail_msg("%s", err.msg);
    qn_rng_seed(&r, 1234 + (uint64_t)kind);
    common_tensors(&r, l); /* same seed: identical embeddings and norms */
    for (int i = 0; i < 7; i++) {
        char p[128], nm[160];
        snprintf(p, sizeof p, "model.layers.0.%s.", LIN[i].mod);
        snprintf(nm, sizeof nm, "%sweight", p);
        float *w = add(l, nm, "F32", 2, LIN[i].n, LIN[i].k, 4);
        qn_lutq_weight lw;
        void *buf = NULL;
        if (kind == Q_GPTQ) {
            qn_gptq_weight g;
            if (qn_hf_gptq_bind(st, p, &qc, LIN[i].k, LIN[i].n, &g, &err) != QN_OK) fail_msg("%s", err.msg);
            buf = malloc(qn_gptq_lutq_bytes(&g));
            assert_int_equal(qn_gptq_to_lutq(&g, buf, &lw), QN_OK);
        } else if (kind == Q_AWQ) {
            qn_awq_weight a;
            if (qn_hf_awq_bind(st, p, &qc, LIN[i].k, LIN[i].n, &a, &err) != QN_OK) fail_msg("%s", err.msg);
            buf = malloc(qn_awq_lutq_bytes(&a));
            assert_int_equal(qn_awq_to_lutq(&a, buf, &lw), QN_OK);
        } else {
            qn_bnb4_weight b;
            if (qn_hf_bnb4_bind(st, p, LIN[i].k, LIN[i].n, &b, &err) != QN_OK) fail_msg("%s", err.msg);
            buf = malloc(qn_bnb4_lutq_bytes(&b));
            assert_int_equal(qn_bnb4_to_lutq(&b, buf, &lw), QN_OK);
        }
        /* the CPU kernel computes with the unrounded scale·(lut − zero) values (lutq.h) */
        lw.round = QN_LUTQ_ROUND_NONE;
        qn_lutq_dequant_ref(&lw, w);
        free(buf);
    }
    qn_st_close(st);
    snprintf(path, sizeof path, "%s/model.safetensors", fdir);
    write_st(path, l);
    write_config(fdir, NULL);
    free_list(l);
    free(l);
}

static float *logits_of(const char *dir, const char *vocab, const int32_t *toks, int n) {
    qn_model *m = NULL;
    qn_error err = {0};
    if (qn_model_load_hf(dir, vocab, &m, &err) != QN_OK) fail_msg("%s", err.msg);
    assert_int_equal(m->cfg.rope_style, QN_ROPE_STYLE_NEOX);
    assert_true(m->output.data == m->tok_embd.data); /* tied */
    qn_ctx_params cp = qn_ctx_params_default();
    cp.n_ctx = 64, cp.n_batch = 64, cp.n_threads = 2;
    qn_ctx *ctx = NULL;
    if (qn_ctx_create(m, &cp, &ctx, &err) != QN_OK) fail_msg("%s", err.msg);
    float *lg = malloc(sizeof(float) * (size_t)n * V);
    if (qn_ctx_eval(ctx, toks, n, 0, true, lg, &err) != QN_OK) fail_msg("%s", err.msg);
    qn_ctx_destroy(ctx);
    qn_model_free(m);
    return lg;
}

/* every array and field of two lutq weights, byte for byte */
static void assert_same_lutq(const qn_lutq_weight *a, const qn_lutq_weight *b) {
    assert_true(a->k == b->k && a->n == b->n && a->code_bits == b->code_bits && a->n_groups == b->n_groups);
    assert_true(a->lut_identity == b->lut_identity && a->round == b->round);
    assert_memory_equal(a->lut, b->lut, sizeof a->lut);
    assert_memory_equal(a->gstart, b->gstart, sizeof(int32_t) * (size_t)(a->n_groups + 1));
    assert_true(!a->perm == !b->perm && !a->zero == !b->zero);
    if (a->perm) assert_memory_equal(a->perm, b->perm, sizeof(int32_t) * (size_t)a->k);
    assert_memory_equal(a->codes, b->codes, (size_t)a->n * (size_t)qn_lutq_row_bytes(a->k, a->code_bits));
    const size_t ng = sizeof(float) * (size_t)a->n * (size_t)a->n_groups;
    assert_memory_equal(a->scale, b->scale, ng);
    if (a->zero) assert_memory_equal(a->zero, b->zero, ng);
}

/* The repacks run on the load's threads: one thread and four give the same lutq bytes, and data = codes. */
static void check_threads_same(const char *dir, const char *vocab) {
    qn_model *m1 = NULL, *m4 = NULL;
    qn_error err = {0};
    if (qn_model_load_hf_threads(dir, vocab, 1, &m1, &err) != QN_OK) fail_msg("%s", err.msg);
    if (qn_model_load_hf_threads(dir, vocab, 4, &m4, &err) != QN_OK) fail_msg("%s", err.msg);
    int n_lutq = 0;
    for (int il = 0; il < m1->cfg.n_layer; il++) {
        const qn_layer_weights *a = &m1->layers[il], *b = &m4->layers[il];
        const qn_weight *wa[7] = {&a->wq, &a->wk, &a->wv, &a->wo, &a->w_gate, &a->w_up, &a->w_down};
        const qn_weight *wb[7] = {&b->wq, &b->wk, &b->wv, &b->wo, &b->w_gate, &b->w_up, &b->w_down};
        for (int i = 0; i < 7; i++) {
            assert_true(!wa[i]->lutq == !wb[i]->lutq);
            if (!wa[i]->lutq) continue;
            assert_ptr_equal(wa[i]->data, wa[i]->lutq->codes);
            assert_ptr_equal(wb[i]->data, wb[i]->lutq->codes);
            assert_same_lutq(wa[i]->lutq, wb[i]->lutq);
            n_lutq++;
        }
    }
    assert_int_equal(n_lutq, 7 * m1->cfg.n_layer);
    qn_model_free(m1);
    qn_model_free(m4);
}

static void run_pair(qkind kind, const char *tag) {
    const char *vocab = qn_test_default_model();
    if (!vocab) {
        fprintf(stderr, "default GGUF absent: skipping (tokenizer source)\n");
        skip();
    }
    char qdir[512], fdir[512];
    snprintf(fdir, sizeof fdir, "hf_%s_ref", tag);
    qn_test_tmp_path(qdir, sizeof qdir, tag);
    char tmp[512];
    qn_test_tmp_path(tmp, sizeof tmp, fdir);
    make_pair(kind, qdir, tmp);
    check_threads_same(qdir, vocab);
    const int32_t toks[9] = {1, 504, 3458, 282, 4649, 314, 7, 2000, 13};
    float *a = logits_of(qdir, vocab, toks, 9), *b = logits_of(tmp, vocab, toks, 9);
    double *bd = malloc(sizeof(double) * 9 * V);
    for (size_t i = 0; i < (size_t)9 * V; i++) bd[i] = b[i];
    qn_check_result res;
    const int ok = qn_check_close(tag, a, bd, (size_t)9 * V, 1e-4, 1e-3, 1e-9, &res);
    printf("%s: logits vs reference-dequantized F32 model: max abs %.3g, nmse %.3g\n", tag, res.max_abs_err, res.nmse);
    assert_true(ok);
    free(a), free(b), free(bd);
}

static void test_gptq_model(void **state) { (void)state; run_pair(Q_GPTQ, "gptq"); }
static void test_awq_model(void **state) { (void)state; run_pair(Q_AWQ, "awq"); }
static void test_nf4_model(void **state) { (void)state; run_pair(Q_NF4, "nf4"); }

/* ------------------------------------------------------------------ errors */

static void expect_error(const char *dir, const char *qcfg, const char *needle1, const char *needle2) {
    write_config(dir, qcfg);
    qn_model *m = NULL;
    qn_error err = {0};
    assert_int_not_equal(qn_model_load_hf(dir, "/nonexistent.gguf", &m, &err), QN_OK);
    assert_null(m);
    if (!strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2)))
        fail_msg("error '%s' lacks '%s' / '%s'", err.msg, needle1, needle2 ? needle2 : "");
}

static void test_errors(void **state) {
    (void)state;
    char dir[512];
    qn_test_tmp_path(dir, sizeof dir, "hf_err");
    mkdir(dir, 0755);
    /* a GPTQ model whose layers are written as GPTQ 4-bit */
    qn_rng r;
    qn_rng_seed(&r, 5);
    st_list *l = calloc(1, sizeof *l);
    common_tensors(&r, l);
    for (int i = 0; i < 7; i++) {
        char p[128];
        snprintf(p, sizeof p, "model.layers.0.%s.", LIN[i].mod);
        quant_linear(&r, l, Q_GPTQ, p, LIN[i].k, LIN[i].n);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_st(path, l);
    free_list(l);
    free(l);
    expect_error(dir, "{\"quant_method\":\"gptq\",\"bits\":5,\"group_size\":32}", "config.json", "'bits'");
    expect_error(dir, "{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":32,\"checkpoint_format\":\"marlin\"}",
                 "'checkpoint_format'", NULL);
    expect_error(dir, "{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":32,\"pack_dtype\":\"int16\"}", "'pack_dtype'", NULL);
    expect_error(dir, "{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":32,\"version\":\"gemv_fast\"}", "'version'", NULL);
    expect_error(dir, "{\"quant_method\":\"bitsandbytes\",\"load_in_8bit\":true}", "'load_in_8bit'", NULL);
    expect_error(dir, "{\"quant_method\":\"hqq\"}", "'quant_method'", NULL);
    /* layout mismatch: 3-bit config over 4-bit tensors names the tensor and its shape */
    expect_error(dir, "{\"quant_method\":\"gptq\",\"bits\":8,\"group_size\":32}", "model.layers.0.self_attn.q_proj.qweight",
                 "shape");
    /* no quantization config at all but qweight tensors */
    expect_error(dir, NULL, "q_proj.qweight", "quantization_config");
    /* loads up to the tokenizer: the message says how to give one */
    write_config(dir, QCFG[Q_GPTQ]);
    qn_model *m = NULL;
    qn_error err = {0};
    assert_int_equal(qn_model_load_hf(dir, NULL, &m, &err), QN_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "--vocab"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_gptq_model),
        cmocka_unit_test(test_awq_model),
        cmocka_unit_test(test_nf4_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
