/* ref_lutq_fixtures.c — the peer-packed GPTQ/AWQ/bnb fixtures as lutq weights (ref_lutq_fixtures.h). */
#include "ref/ref_lutq_fixtures.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void qn_ref_lutq_fixtures_each(qn_ref_lutq_fixture_fn fn, void *user) {
    qn_st *st = open_fixture("gptq.safetensors");
    static const char *const gptq[] = {"gptq.b2.g32.asym.act.v1.", "gptq.b3.g64.sym.act.v2.", "gptq.b4.g128.sym.noact.v1.",
                                       "gptq.b4.g32.asym.act.v2.", "gptq.b8.gall.asym.noact.v1.", "gptq.b8.g32.sym.act.v1."};
    for (size_t i = 0; i < sizeof gptq / sizeof gptq[0]; i++) {
        char name[256];
        snprintf(name, sizeof name, "%sparams", gptq[i]);
        const qn_st_tensor *pt = qn_st_find(st, name);
        assert_non_null(pt);
        int32_t p[7];
        memcpy(p, pt->data, sizeof p);
        qn_hf_quant_config qc = {.method = QN_HF_QUANT_GPTQ, .bits = p[0], .group_size = p[1], .gptq_v2 = p[4]};
        qn_gptq_weight w;
        qn_error err = {0};
        if (qn_hf_gptq_bind(st, gptq[i], &qc, p[5], p[6], &w, &err) != QN_OK) fail_msg("%s", err.msg);
        void *buf = malloc(qn_gptq_lutq_bytes(&w));
        qn_lutq_weight lw;
        assert_int_equal(qn_gptq_to_lutq(&w, buf, &lw), QN_OK);
        fn(user, gptq[i], &lw);
        free(buf);
    }
    qn_st_close(st);

    st = open_fixture("awq.safetensors");
    static const char *const awq[] = {"awq.gemm.g64.", "awq.gemv.g128."};
    for (size_t i = 0; i < 2; i++) {
        qn_hf_quant_config qc = {.method = QN_HF_QUANT_AWQ, .bits = 4, .group_size = i ? 128 : 64,
                                 .awq_layout = i ? QN_AWQ_GEMV : QN_AWQ_GEMM};
        qn_awq_weight w;
        qn_error err = {0};
        if (qn_hf_awq_bind(st, awq[i], &qc, 256, 64, &w, &err) != QN_OK) fail_msg("%s", err.msg);
        void *buf = malloc(qn_awq_lutq_bytes(&w));
        qn_lutq_weight lw;
        assert_int_equal(qn_awq_to_lutq(&w, buf, &lw), QN_OK);
        fn(user, awq[i], &lw);
        free(buf);
    }
    qn_st_close(st);

    st = open_fixture("bnb.safetensors");
    static const char *const bnb[] = {"bnb.nf4.dq.bf16.", "bnb.fp4.plain.f16."};
    for (size_t i = 0; i < 2; i++) {
        qn_bnb4_weight w;
        qn_error err = {0};
        if (qn_hf_bnb4_bind(st, bnb[i], 256, 64, &w, &err) != QN_OK) fail_msg("%s", err.msg);
        void *buf = malloc(qn_bnb4_lutq_bytes(&w));
        qn_lutq_weight lw;
        assert_int_equal(qn_bnb4_to_lutq(&w, buf, &lw), QN_OK);
        fn(user, bnb[i], &lw);
        free(buf);
    }
    qn_st_close(st);
}
