/* test_quant_hf_peer.c — our GPTQ / AWQ / bitsandbytes NF4/FP4 reference dequantizers are BIT-EXACT with the
 * peers' own dequantizers on layers the peers packed themselves (tests/fixtures/quant/, made by
 * tests/fixtures/make_quant_fixtures.py with AutoGPTQ, GPTQModel, AutoAWQ and bitsandbytes), for every variant;
 * and the load-time repack into the CPU layout (lutq.h: act-order sort, AWQ de-interleave, bnb nibble swap and
 * nested absmax) dequantizes to exactly the same weights. Tensors are bound through the loader's own
 * model/hf_quant.c, so shape/dtype checks and the quant_state JSON parser are exercised too. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/lutq.h"
#include "model/hf_quant.h"
#include "model/safetensors.h"

static qn_st *open_fixture(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/quant/%s", qn_test_source_dir(), name);
    qn_st *st = NULL;
    qn_error err = {0};
    if (qn_st_open(path, &st, &err) != QN_OK) fail_msg("%s", err.msg);
    return st;
}

/* peer reference [n][k] in F16 or BF16 -> floats */
static float *load_ref(const qn_st *st, const char *prefix, int64_t n, int64_t k) {
    char name[256];
    snprintf(name, sizeof name, "%sref", prefix);
    const qn_st_tensor *t = qn_st_find(st, name);
    assert_non_null(t);
    assert_true(t->dtype == QN_ST_DTYPE_F16 || t->dtype == QN_ST_DTYPE_BF16);
    assert_int_equal(t->nbytes, (uint64_t)(n * k * 2));
    float *out = malloc(sizeof(float) * (size_t)(n * k));
    for (int64_t i = 0; i < n * k; i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
        out[i] = t->dtype == QN_ST_DTYPE_F16 ? qn_f16_to_f32(h) : qn_bf16_to_f32(h);
    }
    return out;
}

/* bit-exact comparison of two float arrays; prints the first mismatches */
static int64_t count_diff(const char *what, const float *got, const float *ref, int64_t n, int64_t k) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n * k; i++)
        if (qn_f32_as_u32(got[i]) != qn_f32_as_u32(ref[i])) {
            if (bad < 5)
                fprintf(stderr, "%s: W[%lld][%lld] = %.9g (0x%08x), peer %.9g (0x%08x)\n", what, (long long)(i / k),
                        (long long)(i % k), got[i], qn_f32_as_u32(got[i]), ref[i], qn_f32_as_u32(ref[i]));
            bad++;
        }
    return bad;
}

static void check_lutq(const char *what, const qn_lutq_weight *lw, const float *ref, int64_t *fails) {
    float *got = malloc(sizeof(float) * (size_t)(lw->n * lw->k));
    qn_lutq_dequant_ref(lw, got);
    char w2[300];
    snprintf(w2, sizeof w2, "%s (repacked)", what);
    if (count_diff(w2, got, ref, lw->n, lw->k)) (*fails)++;
    free(got);
}

static void test_gptq_peer(void **state) {
    (void)state;
    qn_st *st = open_fixture("gptq.safetensors");
    int n_var = 0, n_act = 0;
    int64_t fails = 0;
    for (int64_t i = 0; i < qn_st_n_tensors(st); i++) {
        const qn_st_tensor *t = qn_st_tensor_at(st, i);
        const size_t L = strlen(t->name);
        if (L < 7 || strcmp(t->name + L - 7, ".params")) continue;
        char prefix[256];
        snprintf(prefix, sizeof prefix, "%.*s", (int)(L - 6), t->name);
        int32_t p[7];
        memcpy(p, t->data, sizeof p);
        qn_hf_quant_config qc = {.method = QN_HF_QUANT_GPTQ, .bits = p[0], .group_size = p[1], .sym = p[2],
                                 .desc_act = p[3], .gptq_v2 = p[4]};
        const int64_t K = p[5], N = p[6];
        qn_gptq_weight w;
        qn_error err = {0};
        if (qn_hf_gptq_bind(st, prefix, &qc, K, N, &w, &err) != QN_OK) fail_msg("%s", err.msg);
        float *ref = load_ref(st, prefix, N, K), *got = malloc(sizeof(float) * (size_t)(N * K));
        qn_gptq_dequant_ref(&w, got);
        const int64_t bad = count_diff(prefix, got, ref, N, K);
        if (bad) fails++;
        void *buf = malloc(qn_gptq_lutq_bytes(&w));
        qn_lutq_weight lw;
        assert_int_equal(qn_gptq_to_lutq(&w, buf, &lw), QN_OK);
        if (p[3] && p[1] > 0 && p[1] < K) {
            assert_non_null(lw.perm); /* act-order with real groups: the repack sorted K */
            n_act++;
        }
        check_lutq(prefix, &lw, ref, &fails);
        printf("%-32s %s\n", prefix, bad ? "MISMATCH" : "bit-exact");
        free(buf), free(ref), free(got);
        n_var++;
    }
    qn_st_close(st);
    printf("gptq: %d variants, %d with a real act-order permutation, %lld failing\n", n_var, n_act, (long long)fails);
    assert_int_equal(n_var, 128);
    assert_true(n_act > 0);
    assert_int_equal(fails, 0);
}

static void test_awq_peer(void **state) {
    (void)state;
    qn_st *st = open_fixture("awq.safetensors");
    int n_var = 0;
    int64_t fails = 0;
    for (int64_t i = 0; i < qn_st_n_tensors(st); i++) {
        const qn_st_tensor *t = qn_st_tensor_at(st, i);
        const size_t L = strlen(t->name);
        if (L < 7 || strcmp(t->name + L - 7, ".params")) continue;
        char prefix[256];
        snprintf(prefix, sizeof prefix, "%.*s", (int)(L - 6), t->name);
        int32_t p[5];
        memcpy(p, t->data, sizeof p);
        qn_hf_quant_config qc = {.method = QN_HF_QUANT_AWQ, .bits = p[0], .group_size = p[1],
                                 .awq_layout = p[2] ? QN_AWQ_GEMV : QN_AWQ_GEMM};
        const int64_t K = p[3], N = p[4];
        qn_awq_weight w;
        qn_error err = {0};
        if (qn_hf_awq_bind(st, prefix, &qc, K, N, &w, &err) != QN_OK) fail_msg("%s", err.msg);
        float *ref = load_ref(st, prefix, N, K), *got = malloc(sizeof(float) * (size_t)(N * K));
        qn_awq_dequant_ref(&w, got);
        const int64_t bad = count_diff(prefix, got, ref, N, K);
        if (bad) fails++;
        void *buf = malloc(qn_awq_lutq_bytes(&w));
        qn_lutq_weight lw;
        assert_int_equal(qn_awq_to_lutq(&w, buf, &lw), QN_OK);
        check_lutq(prefix, &lw, ref, &fails);
        printf("%-32s %s\n", prefix, bad ? "MISMATCH" : "bit-exact");
        free(buf), free(ref), free(got);
        n_var++;
    }
    qn_st_close(st);
    assert_int_equal(n_var, 4);
    assert_int_equal(fails, 0);
}

static void test_bnb_peer(void **state) {
    (void)state;
    qn_st *st = open_fixture("bnb.safetensors");
    int n_var = 0;
    int64_t fails = 0;
    static const char *const types[] = {"nf4", "fp4"}, *const dq[] = {"plain", "dq"}, *const dts[] = {"f16", "bf16"};
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            for (int c = 0; c < 2; c++) {
                char prefix[128];
                snprintf(prefix, sizeof prefix, "bnb.%s.%s.%s.", types[a], dq[b], dts[c]);
                const int64_t K = 256, N = 64;
                qn_bnb4_weight w;
                qn_error err = {0};
                if (qn_hf_bnb4_bind(st, prefix, K, N, &w, &err) != QN_OK) fail_msg("%s", err.msg);
                assert_int_equal(w.type, a ? QN_BNB4_FP4 : QN_BNB4_NF4);
                assert_int_equal(w.nested, b);
                assert_int_equal(w.blocksize, 64);
                /* the checkpoint's quant_map is bitsandbytes' table */
                for (int i = 0; i < 16; i++) {
                    float v;
                    memcpy(&v, (const uint8_t *)w.quant_map + 4 * i, 4);
                    assert_true(v == (a ? QN_BNB4_FP4_MAP[i] : QN_BNB4_NF4_MAP[i]) ||
                                fabsf(v - (a ? QN_BNB4_FP4_MAP[i] : QN_BNB4_NF4_MAP[i])) < 1e-7f);
                }
                float *ref = load_ref(st, prefix, N, K), *got = malloc(sizeof(float) * (size_t)(N * K));
                qn_bnb4_dequant_ref(&w, got);
                const int64_t bad = count_diff(prefix, got, ref, N, K);
                if (bad) fails++;
                void *buf = malloc(qn_bnb4_lutq_bytes(&w));
                qn_lutq_weight lw;
                assert_int_equal(qn_bnb4_to_lutq(&w, buf, &lw), QN_OK);
                check_lutq(prefix, &lw, ref, &fails);
                printf("%-32s %s\n", prefix, bad ? "MISMATCH" : "bit-exact");
                free(buf), free(ref), free(got);
                n_var++;
            }
    qn_st_close(st);
    assert_int_equal(n_var, 8);
    assert_int_equal(fails, 0);
}

/* unsupported combinations name the tensor and the field */
static void test_bind_errors(void **state) {
    (void)state;
    qn_st *st = open_fixture("gptq.safetensors");
    qn_hf_quant_config qc = {.method = QN_HF_QUANT_GPTQ, .bits = 4, .group_size = 128};
    qn_gptq_weight w;
    qn_error err = {0};
    /* wrong K: qweight shape does not match */
    assert_int_equal(qn_hf_gptq_bind(st, "gptq.b4.g128.sym.noact.v1.", &qc, 512, 32, &w, &err), QN_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "gptq.b4.g128.sym.noact.v1.qweight"));
    assert_non_null(strstr(err.msg, "shape"));
    assert_int_equal(qn_hf_gptq_bind(st, "nope.", &qc, 256, 32, &w, &err), QN_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "nope.qweight"));
    qn_st_close(st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gptq_peer),
        cmocka_unit_test(test_awq_peer),
        cmocka_unit_test(test_bnb_peer),
        cmocka_unit_test(test_bind_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
