/* test_quant_lq4m.c — the M forms (kernels/quant/lq4m.h) on the CPU: LQ4M, the Marlin-style layout of 4-bit
 * GPTQ/AWQ weights, and LNF4M / LFP4M, the same chunks for bitsandbytes NF4 / FP4 codes.
 * LQ4M: the repack decoded by the host twin must equal, bit for bit, the LQ4 host twin of the same weight (itself
 * checked against the plain lutq dequantizer by test_quant_lutq_gpu.c) and fp16 of that dequantizer (kernel
 * column j = original column perm[j]); tolerance zero.
 * LNF4M / LFP4M: the twin must equal, bit for bit, fp16(fp16(map[q]) * fp16(absmax)) computed here from the lutq
 * weight itself (code, group; map the device table, whose FP4 zero is +0), and lie within 2^-9 relative (+ 2^-24
 * absolute, fp16's subnormal step) of the LNF4 / LFP4 twin, which is fp16 of the plain dequantizer: three roundings
 * of 2^-11 against one.
 * Weights: synthetic 2/3/4-bit values, group 128, per-channel and act-order g128, fp16 and bf16 scales; NF4 and FP4
 * at blocksize 64, 128 and per-channel; N = 48 (three strips) and K = 384 (three chunks); plus every peer-packed
 * fixture that fits. Row slices on strip boundaries give the whole repack's bytes; a slice off them and the
 * refused weights (N % 16, K % 128, groups of 64 or 32, 8-bit, a table for LQ4M or codes for LNF4M, a table with
 * a perm, a subnormal absmax) are errors with a reason. The layouts themselves are pinned independently of the
 * twin: one code word and one scale word each are compared with the positions lq4m.h spells out. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/lq4m.h"
#include "kernels/quant/lutq.h"
#include "kernels/quant/lutq_gpu.h"
#include "ref/ref_lutq_fixtures.h"
#include "ref/ref_lutq_synth.h"

/* the group of kernel column j */
static int64_t group_of(const qn_lutq_weight *w, int64_t j) {
    int64_t g = 0;
    while (g + 1 < w->n_groups && w->gstart[g + 1] <= j) g++;
    return g;
}

/* Repacks w in its M form and checks it against its block format's twin and the reference (LQ4M: bit-exact;
 * tables: bit-exact with the fp16 product, within 2^-9 of the reference); fails on any difference. */
static void check_lq4m(const char *what, const qn_lutq_weight *w) {
    char why[256] = "";
    qn_qformat f;
    assert_int_equal(qn_lutq_gpu_format(w, &f, why, sizeof why), QN_OK);
    const qn_qformat mf = qn_lq4m_form_of(f);
    assert_true(qn_lq4m_is_format(mf));
    const bool lut = qn_lq4m_is_lut(mf);
    if (!qn_lq4m_takes(w, mf, why, sizeof why)) fail_msg("%s: %s refused: %s", what, qn_qformat_name(mf), why);
    const size_t bytes = qn_lutq_gpu_bytes(w, mf);
    assert_int_equal(bytes, (size_t)(w->n / 16) * (size_t)(w->k / 128) * QN_LQ4M_CHUNK_BYTES);
    const size_t nk = (size_t)(w->n * w->k);
    uint8_t *m = malloc(bytes + 1), *sliced = malloc(bytes), *b4 = malloc(qn_lutq_gpu_bytes(w, f));
    uint16_t *tm = malloc(2 * nk), *t4 = malloc(2 * nk);
    float *raw = malloc(sizeof(float) * nk);
    assert_true(m && sliced && b4 && tm && t4 && raw);
    m[bytes] = 0xA5;
    assert_int_equal(qn_lutq_gpu_repack(w, mf, m), QN_OK);
    assert_int_equal(m[bytes], 0xA5); /* exactly `bytes` written */
    /* strip-aligned row slices, as the load's threads repack them */
    const size_t row = bytes / (size_t)w->n;
    const int64_t cut[3] = {0, w->n > 16 ? 16 : w->n, w->n};
    memset(sliced, 0x5A, bytes);
    for (int i = 0; i < 2; i++)
        assert_int_equal(qn_lutq_gpu_repack_rows(w, mf, cut[i], cut[i + 1], sliced + (size_t)cut[i] * row),
                         QN_OK);
    assert_memory_equal(sliced, m, bytes);
    assert_int_equal(qn_lutq_gpu_repack_rows(w, mf, 8, w->n, sliced), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_lutq_gpu_repack_rows(w, mf, 0, w->n + 16, sliced), QN_ERR_INVALID_ARG);
    if (w->n > 16) assert_int_equal(qn_lutq_gpu_repack_rows(w, mf, 0, 24, sliced), QN_ERR_INVALID_ARG);

    qn_lutq_gpu_dequant_host(mf, m, w->n, w->k, tm);
    assert_int_equal(qn_lutq_gpu_repack(w, f, b4), QN_OK);
    qn_lutq_gpu_dequant_host(f, b4, w->n, w->k, t4);
    qn_lutq_weight wn = *w;
    wn.round = QN_LUTQ_ROUND_NONE;
    qn_lutq_dequant_ref(&wn, raw);
    size_t bad = 0;
    double worst = 0.0;
    for (int64_t r = 0; r < w->n; r++)
        for (int64_t j = 0; j < w->k; j++) {
            const int64_t kk = w->perm ? w->perm[j] : j;
            const uint16_t got = tm[r * w->k + j], blk = t4[r * w->k + j], ref16 = qn_f32_to_f16(raw[r * w->k + kk]);
            bool ok;
            uint16_t want = ref16;
            if (lut) { /* the device's product, from the weight itself */
                const float mq = qn_f16_to_f32(qn_f32_to_f16(qn_lutq_gpu_map(mf)[qn_lutq_code(w, r, j)]));
                const float a = qn_f16_to_f32(qn_f32_to_f16(w->scale[r * w->n_groups + group_of(w, j)]));
                want = qn_f32_to_f16(mq * a);
                const double d = fabs((double)qn_f16_to_f32(got) - (double)qn_f16_to_f32(blk));
                const double lim = 0x1p-9 * fabs((double)qn_f16_to_f32(blk)) + 0x1p-24;
                /* the device tables may hold +0 where the checkpoint's has -0 (lutq_gpu.h) */
                ok = got == want && (blk == ref16 || ((blk | ref16) & 0x7FFF) == 0) && d <= lim;
                if (d / lim > worst) worst = d / lim;
            } else {
                ok = got == want && blk == want;
            }
            if (!ok && bad++ < 5)
                fprintf(stderr, "  %s: W[%lld][kernel col %lld]: %s %04x (want %04x), %s %04x, fp16(ref) %04x\n", what,
                        (long long)r, (long long)j, qn_qformat_name(mf), got, want, qn_qformat_name(f), blk, ref16);
        }
    if (lut) printf("%s: %s against %s: worst |d| / (2^-9 |w| + 2^-24) = %.3f\n", what, qn_qformat_name(mf),
                    qn_qformat_name(f), worst);
    free(m), free(sliced), free(b4), free(tm), free(t4), free(raw);
    if (bad) fail_msg("%s: %zu weights differ", what, bad);
}

static void test_synthetic(void **state) {
    (void)state;
    qn_rng rng;
    qn_rng_seed(&rng, 4242);
    const int groups[] = {128, 0};
    int n = 0;
    for (int table = 1; table <= 2; table++) /* NF4, FP4 */
        for (int gi = 0; gi < 3; gi++) {
            const int bs[] = {64, 128, 0};
            const qn_ref_lutq_synth s = {4, 4, bs[gi], false, table, gi == 1 ? QN_LUTQ_ROUND_BF16 : QN_LUTQ_ROUND_F16};
            qn_lutq_weight w;
            void *buf = qn_ref_lutq_synth_make(&s, 384, 48, &rng, &w);
            assert_non_null(buf);
            char what[96];
            snprintf(what, sizeof what, "synthetic %s blocksize %d", table == 1 ? "NF4" : "FP4", bs[gi]);
            check_lq4m(what, &w);
            free(buf);
            n++;
        }
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
    printf("%d synthetic weights: LQ4M bit-exact, LNF4M / LFP4M bit-exact with the fp16 product\n", n);
}

static void fixture_fn(void *user, const char *name, const qn_lutq_weight *w) {
    int *count = user;
    qn_qformat f;
    char why[256];
    if (qn_lutq_gpu_format(w, &f, why, sizeof why) != QN_OK || !qn_lq4m_is_format(qn_lq4m_form_of(f))) return;
    if (!qn_lq4m_takes(w, qn_lq4m_form_of(f), why, sizeof why)) {
        printf("%s: %s only (%s)\n", name, qn_qformat_name(f), why);
        return;
    }
    check_lq4m(name, w);
    count[0]++;
}

static void test_peer_weights(void **state) {
    (void)state;
    int count = 0;
    qn_ref_lutq_fixtures_each(fixture_fn, &count);
    printf("%d peer fixtures in an M form\n", count);
}

/* One pinned word: the weight s (K x N, seed) repacked to fmt; code word `word` (u32 index in the chunk) of chunk
 * `chunk` must hold the codes of (rows[e], cols[e]) at nibble e; returns scale word `srow` of that chunk and the
 * weight (w, its buffer in *buf: the caller frees it). */
static uint32_t pinned_word(const qn_ref_lutq_synth *s, int64_t K, int64_t N, uint64_t seed, qn_qformat fmt, int chunk,
                            int word, const int rows[8], const int cols[8], int srow, qn_lutq_weight *w, void **buf) {
    qn_rng rng;
    qn_rng_seed(&rng, seed);
    *buf = qn_ref_lutq_synth_make(s, K, N, &rng, w);
    assert_non_null(*buf);
    uint8_t *m = malloc(qn_lutq_gpu_bytes(w, fmt));
    assert_non_null(m);
    assert_int_equal(qn_lutq_gpu_repack(w, fmt, m), QN_OK);
    const uint8_t *ch = m + (size_t)chunk * QN_LQ4M_CHUNK_BYTES;
    uint32_t got, sc, want = 0;
    memcpy(&got, ch + 4 * word, 4);
    for (int e = 0; e < 8; e++) want |= qn_lutq_code(w, rows[e], cols[e]) << (4 * e);
    assert_int_equal(got, want);
    memcpy(&sc, ch + 1024 + 4 * srow, 4);
    free(m);
    return sc;
}

/* The positions of lq4m.h, spelled out by hand for one word: chunk (strip 1, chunk 2) of a 32 x 384 weight,
 * word (h = 1, lane = 6, i = 3): g = 1, t = 2, block p = 2h + i/2 = 3, tile j = 1, so k_m = 256 + 96 + 16 + 4 + m
 * = 372 + m; nibbles: (row 17, 372) (row 25, 372) (17, 374) (25, 374) (17, 373) (25, 373) (17, 375) (25, 375).
 * Scale word of strip row 5: d | (0x6400 + z) << 16 of row 21's group. */
static void test_layout_pinned(void **state) {
    (void)state;
    const qn_ref_lutq_synth s = {4, 4, 128, false, 0, QN_LUTQ_ROUND_F16};
    const int rows[8] = {17, 25, 17, 25, 17, 25, 17, 25}, cols[8] = {372, 372, 374, 374, 373, 373, 375, 375};
    qn_lutq_weight w;
    void *buf;
    const uint32_t sc = pinned_word(&s, 384, 32, 7, QN_QFORMAT_LQ4M, 1 * 3 + 2, (1 * 32 + 6) * 4 + 3, rows, cols, 5, &w,
                                    &buf);
    const int64_t gi = 21 * w.n_groups + 2;
    assert_int_equal(sc, (uint32_t)qn_f32_to_f16(w.scale[gi]) | (0x6400u + (uint32_t)w.zero[gi]) << 16);
    free(buf);
}

/* The same for LNF4M: word (h = 0, lane = 13, i = 1) of chunk (strip 0, chunk 1) of a 16 x 256 NF4 weight
 * (blocksize 64): g = 3, t = 1, block p = 0, tile j = 1, k_m = 128 + 8 + 4 + m = 140 + m; byte e holds register e:
 * nibbles (row 3, 140) (3, 141) (11, 140) (11, 141) (3, 142) (3, 143) (11, 142) (11, 143). Scale word of strip row
 * 9: fp16 absmax of row 9's columns 128..191 (block 2) | of 192..255 (block 3) << 16. */
static void test_layout_pinned_lut(void **state) {
    (void)state;
    const qn_ref_lutq_synth s = {4, 4, 64, false, 1, QN_LUTQ_ROUND_F16};
    const int rows[8] = {3, 3, 11, 11, 3, 3, 11, 11}, cols[8] = {140, 141, 140, 141, 142, 143, 142, 143};
    qn_lutq_weight w;
    void *buf;
    const uint32_t sc = pinned_word(&s, 256, 16, 8, QN_QFORMAT_LNF4M, 1, (0 * 32 + 13) * 4 + 1, rows, cols, 9, &w, &buf);
    assert_int_equal(w.n_groups, 4);
    assert_int_equal(sc, (uint32_t)qn_f32_to_f16(w.scale[9 * 4 + 2]) | (uint32_t)qn_f32_to_f16(w.scale[9 * 4 + 3]) << 16);
    free(buf);
}

static void expect_refused(const char *what, const qn_ref_lutq_synth *s, int64_t K, int64_t N) {
    qn_rng rng;
    qn_rng_seed(&rng, 11);
    qn_lutq_weight w;
    void *buf = qn_ref_lutq_synth_make(s, K, N, &rng, &w);
    assert_non_null(buf);
    /* the M form of its blocks, or LQ4M for a weight with none */
    qn_qformat f = QN_QFORMAT_LQ4M;
    char why[256] = "";
    if (qn_lutq_gpu_format(&w, &f, why, sizeof why) == QN_OK && qn_lq4m_is_format(qn_lq4m_form_of(f)))
        f = qn_lq4m_form_of(f);
    else
        f = QN_QFORMAT_LQ4M;
    why[0] = '\0';
    assert_false(qn_lq4m_takes(&w, f, why, sizeof why));
    assert_true(why[0] != '\0');
    assert_false(qn_lq4m_takes(&w, f, NULL, 0));
    uint8_t out[64];
    if (N % 16 == 0) assert_int_equal(qn_lq4m_repack_rows(&w, f, 0, 0, out), QN_ERR_UNSUPPORTED);
    printf("%s: %s refused (%s)\n", what, qn_qformat_name(f), why);
    free(buf);
}

/* A weight offered the wrong M form, or a table weight with one absmax under fp16's normal range. */
static void expect_refused_as(const char *what, const qn_ref_lutq_synth *s, qn_qformat f, float absmax0) {
    qn_rng rng;
    qn_rng_seed(&rng, 12);
    qn_lutq_weight w;
    void *buf = qn_ref_lutq_synth_make(s, 384, 32, &rng, &w);
    assert_non_null(buf);
    if (absmax0 != 0.0f) ((float *)w.scale)[5] = absmax0; /* the synth buffer is ours */
    char why[256] = "";
    assert_false(qn_lq4m_takes(&w, f, why, sizeof why));
    assert_true(why[0] != '\0');
    uint8_t out[64];
    assert_int_equal(qn_lq4m_repack_rows(&w, f, 0, 0, out), QN_ERR_UNSUPPORTED);
    printf("%s: %s refused (%s)\n", what, qn_qformat_name(f), why);
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
    const qn_ref_lutq_synth nf4_32 = {4, 4, 32, false, 1, QN_LUTQ_ROUND_F16},
                            nf4_act = {4, 4, 64, true, 1, QN_LUTQ_ROUND_F16}, fp4 = {4, 4, 64, false, 2, QN_LUTQ_ROUND_F16};
    expect_refused("NF4 N = 40", &nf4, 384, 40);
    expect_refused("NF4 K = 320", &nf4, 320, 32);
    expect_refused("NF4 blocksize 32", &nf4_32, 384, 32);
    expect_refused("NF4 with a perm", &nf4_act, 384, 32);
    expect_refused_as("NF4 as LQ4M", &nf4, QN_QFORMAT_LQ4M, 0.0f);
    expect_refused_as("NF4 as LFP4M", &nf4, QN_QFORMAT_LFP4M, 0.0f);
    expect_refused_as("GPTQ-4 as LNF4M", &g128, QN_QFORMAT_LNF4M, 0.0f);
    expect_refused_as("LQ4 as an M form", &g128, QN_QFORMAT_LQ4, 0.0f);
    expect_refused_as("NF4 absmax 1e-6", &nf4, QN_QFORMAT_LNF4M, 1e-6f);
    expect_refused_as("FP4 absmax -3e-5", &fp4, QN_QFORMAT_LFP4M, -3e-5f);
    const qn_qformat ms[3] = {QN_QFORMAT_LQ4M, QN_QFORMAT_LNF4M, QN_QFORMAT_LFP4M};
    const char *names[3] = {"lq4m", "lnf4m", "lfp4m"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(qn_qformat_row_bytes(ms[i], 4096), 32 * 68);
        assert_int_equal(qn_qformat_row_bytes(ms[i], 4160), 0);
        assert_string_equal(qn_qformat_name(ms[i]), names[i]);
        assert_true(qn_lutq_gpu_is_format(ms[i]));
        assert_true(qn_lq4m_is_format(ms[i]));
        assert_int_equal(qn_lq4m_is_lut(ms[i]), i > 0);
        assert_int_equal(qn_lutq_gpu_block_bytes(ms[i]), 0);
        assert_int_equal(qn_lutq_gpu_row_unit(ms[i]), 16);
        assert_int_equal(qn_lutq_decode_auto_max_tokens(ms[i]), 0);
    }
    assert_int_equal(qn_lq4m_form_of(QN_QFORMAT_LQ4), QN_QFORMAT_LQ4M);
    assert_int_equal(qn_lq4m_form_of(QN_QFORMAT_LNF4), QN_QFORMAT_LNF4M);
    assert_int_equal(qn_lq4m_form_of(QN_QFORMAT_LFP4), QN_QFORMAT_LFP4M);
    assert_int_equal(qn_lq4m_form_of(QN_QFORMAT_LQ8), QN_QFORMAT_LQ8);
    assert_false(qn_lq4m_is_format(QN_QFORMAT_LNF4));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_pinned),
        cmocka_unit_test(test_layout_pinned_lut),
        cmocka_unit_test(test_synthetic),
        cmocka_unit_test(test_peer_weights),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
