/* test_quant_lq4m.c — LQ4M, the Marlin-style layout of 4-bit GPTQ/AWQ weights (kernels/quant/lq4m.h), on the
 * CPU. The repack decoded by the LQ4M host twin must equal, bit for bit, the LQ4 host twin of the same weight
 * (itself checked against the plain lutq dequantizer by test_quant_lutq_gpu.c) and fp16 of that dequantizer
 * (kernel column j = original column perm[j]); tolerance zero. Weights: synthetic 2/3/4-bit values, group
 * 128, per-channel and act-order g128, fp16 and bf16 scales, N = 48 (three strips) and K = 384 (three
 * chunks), plus every peer-packed fixture that fits. Row slices on strip boundaries give the whole repack's
 * bytes; a slice off them and the refused shapes (N % 16, K % 128, groups of 64, 8-bit, NF4) are errors with
 * a reason. The layout itself is pinned independently of the twin: one code word and one scale word are
 * compared with the positions lq4m.h spells out. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/lq4m.h"
#include "kernels/quant/lutq.h"
#include "kernels/quant/lutq_gpu.h"
#include "ref/ref_lutq_fixtures.h"
#include "ref/ref_lutq_synth.h"

/* Repacks w as LQ4M and checks it against LQ4 and the reference; fails on any difference. */
static void check_lq4m(const char *what, const qn_lutq_weight *w) {
    char why[256] = "";
    qn_qformat f;
    assert_int_equal(qn_lutq_gpu_format(w, &f, why, sizeof why), QN_OK);
    assert_int_equal(f, QN_QFORMAT_LQ4);
    if (!qn_lq4m_takes(w, why, sizeof why)) fail_msg("%s: LQ4M refused: %s", what, why);
    const size_t bytes = qn_lutq_gpu_bytes(w, QN_QFORMAT_LQ4M);
    assert_int_equal(bytes, (size_t)(w->n / 16) * (size_t)(w->k / 128) * QN_LQ4M_CHUNK_BYTES);
    const size_t nk = (size_t)(w->n * w->k);
    uint8_t *m = malloc(bytes + 1), *sliced = malloc(bytes), *b4 = malloc(qn_lutq_gpu_bytes(w, QN_QFORMAT_LQ4));
    uint16_t *tm = malloc(2 * nk), *t4 = malloc(2 * nk);
    float *raw = malloc(sizeof(float) * nk);
    assert_true(m && sliced && b4 && tm && t4 && raw);
    m[bytes] = 0xA5;
    assert_int_equal(qn_lutq_gpu_repack(w, QN_QFORMAT_LQ4M, m), QN_OK);
    assert_int_equal(m[bytes], 0xA5); /* exactly `bytes` written */
    /* strip-aligned row slices, as the load's threads repack them */
    const size_t row = bytes / (size_t)w->n;
    const int64_t cut[3] = {0, w->n > 16 ? 16 : w->n, w->n};
    memset(sliced, 0x5A, bytes);
    for (int i = 0; i < 2; i++)
        assert_int_equal(qn_lutq_gpu_repack_rows(w, QN_QFORMAT_LQ4M, cut[i], cut[i + 1], sliced + (size_t)cut[i] * row),
                         QN_OK);
    assert_memory_equal(sliced, m, bytes);
    assert_int_equal(qn_lutq_gpu_repack_rows(w, QN_QFORMAT_LQ4M, 8, w->n, sliced), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_lutq_gpu_repack_rows(w, QN_QFORMAT_LQ4M, 0, w->n + 16, sliced), QN_ERR_INVALID_ARG);
    if (w->n > 16) assert_int_equal(qn_lutq_gpu_repack_rows(w, QN_QFORMAT_LQ4M, 0, 24, sliced), QN_ERR_INVALID_ARG);

    qn_lutq_gpu_dequant_host(QN_QFORMAT_LQ4M, m, w->n, w->k, tm);
    assert_int_equal(qn_lutq_gpu_repack(w, QN_QFORMAT_LQ4, b4), QN_OK);
    qn_lutq_gpu_dequant_host(QN_QFORMAT_LQ4, b4, w->n, w->k, t4);
    qn_lutq_weight wn = *w;
    wn.round = QN_LUTQ_ROUND_NONE;
    qn_lutq_dequant_ref(&wn, raw);
    size_t bad = 0;
    for (int64_t r = 0; r < w->n; r++)
        for (int64_t j = 0; j < w->k; j++) {
            const int64_t kk = w->perm ? w->perm[j] : j;
            const uint16_t got = tm[r * w->k + j], lq4 = t4[r * w->k + j], want = qn_f32_to_f16(raw[r * w->k + kk]);
            if ((got != lq4 || got != want) && bad++ < 5)
                fprintf(stderr, "  %s: W[%lld][kernel col %lld]: lq4m %04x, lq4 %04x, fp16(ref) %04x\n", what,
                        (long long)r, (long long)j, got, lq4, want);
        }
    free(m), free(sliced), free(b4), free(tm), free(t4), free(raw);
    if (bad) fail_msg("%s: %zu weights differ", what, bad);
}

static void test_synthetic(void **state) {
    (void)state;
    qn_rng rng;
    qn_rng_seed(&rng, 4242);
    const int groups[] = {128, 0};
    int n = 0;
    for (int gi = 0; gi < 2; gi++)
        for (int act = 0; act < 2; act++)
            for (int vb = 2; vb <= 4; vb++)
                for (int bf = 0; bf < 2; bf++) {
                    const qn_ref_lutq_synth s = {4, vb, groups[gi], act, 0, bf ? QN_LUTQ_ROUND_BF16 : QN_LUTQ_ROUND_F16};
                    qn_lutq_weight w;
                    void *buf = qn_ref_lutq_synth_make(&s, 384, 48, &rng, &w);
                    assert_non_null(buf);
                    char what[96];
                    snprintf(what, sizeof what, "synthetic %d-bit g%d%s %s", vb, groups[gi], act ? " act" : "",
                             bf ? "bf16" : "f16");
                    check_lq4m(what, &w);
                    free(buf);
                    n++;
                }
    printf("%d synthetic weights: LQ4M bit-exact\n", n);
}

static void fixture_fn(void *user, const char *name, const qn_lutq_weight *w) {
    int *count = user;
    qn_qformat f;
    char why[256];
    if (qn_lutq_gpu_format(w, &f, why, sizeof why) != QN_OK || f != QN_QFORMAT_LQ4) return;
    if (!qn_lq4m_takes(w, why, sizeof why)) {
        printf("%s: LQ4 only (%s)\n", name, why);
        return;
    }
    check_lq4m(name, w);
    count[0]++;
}

static void test_peer_weights(void **state) {
    (void)state;
    int count = 0;
    qn_ref_lutq_fixtures_each(fixture_fn, &count);
    printf("%d peer fixtures: LQ4M bit-exact\n", count);
}

/* The positions of lq4m.h, spelled out by hand for one word: chunk (strip 1, chunk 2) of a 32 x 384 weight,
 * word (h = 1, lane = 6, i = 3): g = 1, t = 2, block p = 2h + i/2 = 3, tile j = 1, so k_m = 256 + 96 + 16 + 4 + m
 * = 372 + m; nibbles: (row 17, 372) (row 25, 372) (17, 374) (25, 374) (17, 373) (25, 373) (17, 375) (25, 375).
 * Scale word of strip row 5: d | (0x6400 + z) << 16 of row 21's group. */
static void test_layout_pinned(void **state) {
    (void)state;
    qn_rng rng;
    qn_rng_seed(&rng, 7);
    const qn_ref_lutq_synth s = {4, 4, 128, false, 0, QN_LUTQ_ROUND_F16};
    qn_lutq_weight w;
    void *buf = qn_ref_lutq_synth_make(&s, 384, 32, &rng, &w);
    assert_non_null(buf);
    uint8_t *m = malloc(qn_lutq_gpu_bytes(&w, QN_QFORMAT_LQ4M));
    assert_non_null(m);
    assert_int_equal(qn_lutq_gpu_repack(&w, QN_QFORMAT_LQ4M, m), QN_OK);
    const uint8_t *ch = m + (size_t)(1 * 3 + 2) * QN_LQ4M_CHUNK_BYTES;
    uint32_t word, sc;
    memcpy(&word, ch + 4 * ((1 * 32 + 6) * 4 + 3), 4);
    const int rows[8] = {17, 25, 17, 25, 17, 25, 17, 25}, cols[8] = {372, 372, 374, 374, 373, 373, 375, 375};
    uint32_t want = 0;
    for (int e = 0; e < 8; e++) want |= qn_lutq_code(&w, rows[e], cols[e]) << (4 * e);
    assert_int_equal(word, want);
    memcpy(&sc, ch + 1024 + 4 * 5, 4);
    const int64_t gi = 21 * w.n_groups + 2;
    assert_int_equal(sc, (uint32_t)qn_f32_to_f16(w.scale[gi]) | (0x6400u + (uint32_t)w.zero[gi]) << 16);
    free(m), free(buf);
}

static void expect_refused(const char *what, const qn_ref_lutq_synth *s, int64_t K, int64_t N) {
    qn_rng rng;
    qn_rng_seed(&rng, 11);
    qn_lutq_weight w;
    void *buf = qn_ref_lutq_synth_make(s, K, N, &rng, &w);
    assert_non_null(buf);
    char why[256] = "";
    assert_false(qn_lq4m_takes(&w, why, sizeof why));
    assert_true(why[0] != '\0');
    assert_false(qn_lq4m_takes(&w, NULL, 0));
    uint8_t out[64];
    if (N % 16 == 0) assert_int_equal(qn_lq4m_repack_rows(&w, 0, 0, out), QN_ERR_UNSUPPORTED);
    printf("%s: refused (%s)\n", what, why);
    free(buf);
}

static void test_refusals(void **state) {
    (void)state;
    const qn_ref_lutq_synth g128 = {4, 4, 128, false, 0, QN_LUTQ_ROUND_F16}, g64 = {4, 4, 64, true, 0, QN_LUTQ_ROUND_F16},
                            q8 = {8, 8, 128, false, 0, QN_LUTQ_ROUND_F16}, nf4 = {4, 4, 64, false, 1, QN_LUTQ_ROUND_F16};
    expect_refused("N = 40", &g128, 384, 40);
    expect_refused("K = 320", &g128, 320, 32);
    expect_refused("group 64", &g64, 384, 32);
    expect_refused("8-bit", &q8, 384, 32);
    expect_refused("NF4", &nf4, 384, 32);
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_LQ4M, 4096), 32 * 68);
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_LQ4M, 4160), 0);
    assert_string_equal(qn_qformat_name(QN_QFORMAT_LQ4M), "lq4m");
    assert_true(qn_lutq_gpu_is_format(QN_QFORMAT_LQ4M));
    assert_int_equal(qn_lutq_gpu_block_bytes(QN_QFORMAT_LQ4M), 0);
    assert_int_equal(qn_lutq_gpu_row_unit(QN_QFORMAT_LQ4M), 16);
    assert_int_equal(qn_lutq_decode_auto_max_tokens(QN_QFORMAT_LQ4M), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_pinned),
        cmocka_unit_test(test_synthetic),
        cmocka_unit_test(test_peer_weights),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
