/* test_quant_lutq_gpu.c — the GPU block formats of GPTQ/AWQ/bnb weights (kernels/quant/lutq_gpu.h), on the
 * CPU: the repack of a lutq weight into LQ4/LQ8/LNF4/LFP4 blocks, decoded by the host twin of the device
 * decode, must give exactly (bit for bit, fp16) the plain lutq dequantizer's values, column j of the
 * blocks being original column perm[j]:
 *   twin[r][j] == fp16(qn_lutq_dequant_ref(w with round NONE)[r][perm[j]])       always, and
 *   twin[r][j] == qn_lutq_dequant_ref(w)[r][perm[j]]                             when the peer's dtype is fp16
 * (tolerance zero: both are one fp16 rounding of the same exact product; bf16 peers differ from fp16 by
 * design, lutq_gpu.h; with a table, +0 and -0 count as equal: QN_BNB4_FP4_MAP has -0 where checkpoints
 * and the device table have +0). Weights: the peer-packed fixtures (GPTQ 2/3/4/8-bit, sym/asym, v1/v2, group
 * 32/64/128/-1, act-order; AWQ GEMM/GEMV; NF4 with double quant, FP4 plain) and synthetic ones over
 * group sizes 32/64/128/per-channel, random act-order permutations, 2/3-bit ranges, fp16 and bf16 scales,
 * negative scales, NF4/FP4 with random f32 absmax. Refusals: groups off the 32-column grid, K % 32,
 * custom tables, fractional zeros, scales not exact in fp16, fp16 overflow. Row slices of the repack
 * (qn_lutq_gpu_repack_rows) put together give the whole repack's bytes. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/lutq.h"
#include "kernels/quant/lutq_gpu.h"
#include "kernels/quant/nf4/nf4_format.h"
#include "ref/ref_lutq_fixtures.h"
#include "ref/ref_lutq_synth.h"

/* Repacks w, decodes with the twin, compares with the reference; fails the test on any difference.
 * Returns the format chosen. */
static qn_qformat check_weight(const char *what, const qn_lutq_weight *w) {
    char why[256] = "";
    qn_qformat fmt = QN_QFORMAT_COUNT;
    const qn_status st = qn_lutq_gpu_format(w, &fmt, why, sizeof why);
    if (st != QN_OK) fail_msg("%s: refused: %s", what, why);
    const size_t bytes = qn_lutq_gpu_bytes(w, fmt);
    assert_int_equal(bytes, (size_t)w->n * (size_t)(w->k / 32) * qn_lutq_gpu_block_bytes(fmt));
    uint8_t *blocks = malloc(bytes + 1);
    uint16_t *twin = malloc(2 * (size_t)(w->n * w->k));
    float *ref = malloc(sizeof(float) * (size_t)(w->n * w->k)), *raw = malloc(sizeof(float) * (size_t)(w->n * w->k));
    assert_true(blocks && twin && ref && raw);
    blocks[bytes] = 0xA5; /* the repack writes exactly `bytes` */
    assert_int_equal(qn_lutq_gpu_repack(w, fmt, blocks), QN_OK);
    assert_int_equal(blocks[bytes], 0xA5);
    { /* row slices (the load repacks a weight's rows on several threads): the same bytes */
        uint8_t *sliced = malloc(bytes + 1);
        assert_non_null(sliced);
        const size_t row = bytes / (size_t)w->n;
        const int64_t cut[4] = {0, w->n / 3, w->n / 3 + (w->n > 1), w->n};
        for (int i = 0; i < 3; i++)
            assert_int_equal(qn_lutq_gpu_repack_rows(w, fmt, cut[i], cut[i + 1], sliced + (size_t)cut[i] * row), QN_OK);
        assert_memory_equal(sliced, blocks, bytes);
        assert_int_equal(qn_lutq_gpu_repack_rows(w, fmt, 1, 0, sliced), QN_ERR_INVALID_ARG);
        assert_int_equal(qn_lutq_gpu_repack_rows(w, fmt, 0, w->n + 1, sliced), QN_ERR_INVALID_ARG);
        free(sliced);
    }
    qn_lutq_gpu_dequant_host(fmt, blocks, w->n, w->k, twin);
    qn_lutq_dequant_ref(w, ref);
    qn_lutq_weight wn = *w;
    wn.round = QN_LUTQ_ROUND_NONE;
    qn_lutq_dequant_ref(&wn, raw);
    size_t bad = 0;
    for (int64_t r = 0; r < w->n; r++)
        for (int64_t j = 0; j < w->k; j++) {
            const int64_t kk = w->perm ? w->perm[j] : j, i = r * w->k + kk;
            const uint16_t got = twin[r * w->k + j], want = qn_f32_to_f16(raw[i]);
            /* bits, except that a zero's sign may differ where the table's zero entry does (lutq_gpu.h) */
            const bool zeros = (got & 0x7fff) == 0 && (want & 0x7fff) == 0 && !w->lut_identity;
            const bool ok = zeros || (got == want && (w->round != QN_LUTQ_ROUND_F16 ||
                                                      qn_f32_as_u32(qn_f16_to_f32(got)) == qn_f32_as_u32(ref[i])));
            if (!ok && bad++ < 5)
                fprintf(stderr, "  %s (%s): W[%lld][%lld] (kernel col %lld): twin %04x, fp16(ref) %04x, ref %.9g\n",
                        what, qn_qformat_name(fmt), (long long)r, (long long)kk, (long long)j, got, want, ref[i]);
        }
    free(blocks), free(twin), free(ref), free(raw);
    if (bad) fail_msg("%s: %zu weights differ from the lutq reference", what, bad);
    return fmt;
}

/* ------------------------------------------------------------------------------------------------
 * peer fixtures */

/* true when every group of w starts on the 32-column grid (and K is on it): what the GPU form needs */
static bool groups_aligned(const qn_lutq_weight *w) {
    if (w->k % 32) return false;
    for (int64_t g = 0; g < w->n_groups; g++)
        if (w->gstart[g] % 32) return false;
    return true;
}

static void check_or_refused(const char *what, const qn_lutq_weight *w, qn_qformat want) {
    if (!groups_aligned(w)) {
        char why[256];
        qn_qformat f;
        assert_int_equal(qn_lutq_gpu_format(w, &f, why, sizeof why), QN_ERR_UNSUPPORTED);
        printf("%s: refused as expected (%s)\n", what, why);
        return;
    }
    assert_int_equal(check_weight(what, w), want);
}

static void check_fixture(void *user, const char *name, const qn_lutq_weight *w) {
    (void)user;
    const qn_qformat want = w->lut_identity ? (w->code_bits == 8 ? QN_QFORMAT_LQ8 : QN_QFORMAT_LQ4)
                            : strstr(name, "fp4") ? QN_QFORMAT_LFP4 : QN_QFORMAT_LNF4;
    check_or_refused(name, w, want);
}

static void test_peer_weights(void **state) {
    (void)state;
    qn_ref_lutq_fixtures_each(check_fixture, NULL);
}

/* ------------------------------------------------------------------------------------------------
 * synthetic weights */

static void test_synthetic(void **state) {
    (void)state;
    qn_rng rng;
    qn_rng_seed(&rng, 2024);
    const int groups[] = {32, 64, 128, 0};
    const int64_t K = 384, N = 7; /* 384 = 3 x 128: per-channel spans 12 blocks */
    int n_cases = 0;
    for (int gi = 0; gi < 4; gi++)
        for (int act = 0; act < 2; act++) {
            const qn_ref_lutq_synth cases[] = {
                {4, 2, groups[gi], act, 0, QN_LUTQ_ROUND_F16}, {4, 3, groups[gi], act, 0, QN_LUTQ_ROUND_F16},
                {4, 4, groups[gi], act, 0, QN_LUTQ_ROUND_F16}, {4, 4, groups[gi], act, 0, QN_LUTQ_ROUND_BF16},
                {8, 8, groups[gi], act, 0, QN_LUTQ_ROUND_F16}, {8, 8, groups[gi], act, 0, QN_LUTQ_ROUND_BF16},
                {4, 4, groups[gi], act, 1, QN_LUTQ_ROUND_F16}, {4, 4, groups[gi], act, 1, QN_LUTQ_ROUND_BF16},
                {4, 4, groups[gi], act, 2, QN_LUTQ_ROUND_F16},
            };
            for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
                const qn_ref_lutq_synth *s = &cases[ci];
                if (s->table && act) continue; /* bnb has no act-order */
                qn_lutq_weight w;
                void *buf = qn_ref_lutq_synth_make(s, K, N, &rng, &w);
                assert_non_null(buf);
                char what[128];
                snprintf(what, sizeof what, "synthetic %d-bit values%s g%d%s %s", s->value_bits,
                         s->table == 1 ? " nf4" : s->table == 2 ? " fp4" : "", s->group, act ? " act" : "",
                         s->round == QN_LUTQ_ROUND_BF16 ? "bf16" : "f16");
                const qn_qformat want = s->table == 1 ? QN_QFORMAT_LNF4 : s->table == 2 ? QN_QFORMAT_LFP4
                                        : s->code_bits == 8 ? QN_QFORMAT_LQ8 : QN_QFORMAT_LQ4;
                assert_int_equal(check_weight(what, &w), want);
                free(buf);
                n_cases++;
            }
        }
    printf("%d synthetic weights bit-exact\n", n_cases);
}

/* Every refusal is QN_ERR_UNSUPPORTED with a reason; the runtime then keeps an fp16 copy. */
static void expect_refused(const char *what, const qn_lutq_weight *w) {
    char why[256] = "";
    qn_qformat f;
    assert_int_equal(qn_lutq_gpu_format(w, &f, why, sizeof why), QN_ERR_UNSUPPORTED);
    assert_true(why[0] != '\0');
    printf("%s: refused (%s)\n", what, why);
}

static void test_refusals(void **state) {
    (void)state;
    qn_rng rng;
    qn_rng_seed(&rng, 99);
    const qn_ref_lutq_synth base = {4, 4, 32, false, 0, QN_LUTQ_ROUND_F16};
    qn_lutq_weight w;
    void *buf;

    qn_ref_lutq_synth s = base;
    s.group = 48; /* groups at 48, 96: off the grid (an irregular act-order g_idx looks like this after sorting) */
    buf = qn_ref_lutq_synth_make(&s, 384, 3, &rng, &w);
    expect_refused("group 48", &w);
    free(buf);

    buf = qn_ref_lutq_synth_make(&base, 48, 3, &rng, &w);
    expect_refused("K = 48", &w);
    free(buf);

    buf = qn_ref_lutq_synth_make(&base, 64, 3, &rng, &w);
    ((float *)w.zero)[1] = 2.5f;
    expect_refused("fractional zero", &w);
    ((float *)w.zero)[1] = 16.0f;
    expect_refused("zero past the codes", &w);
    ((float *)w.zero)[1] = 3.0f;
    ((float *)w.scale)[2] = 1.0f + 1.0f / 4096.0f; /* needs 13 mantissa bits */
    expect_refused("scale not exact in fp16", &w);
    ((float *)w.scale)[2] = 8192.0f; /* 8192 * 15 > 65504 */
    ((float *)w.zero)[2] = 0.0f;
    expect_refused("fp16 overflow", &w);
    free(buf);

    s = base;
    s.table = 1;
    buf = qn_ref_lutq_synth_make(&s, 64, 3, &rng, &w);
    w.lut[5] += 1e-3f;
    expect_refused("custom quant_map", &w);
    free(buf);

    /* the repack checks its format argument */
    buf = qn_ref_lutq_synth_make(&base, 64, 3, &rng, &w);
    uint8_t out[3 * 2 * 36];
    assert_int_equal(qn_lutq_gpu_repack(&w, QN_QFORMAT_Q4_0, out), QN_ERR_INVALID_ARG);
    free(buf);
}

static void test_format_table(void **state) {
    (void)state;
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_LQ4, 4096), 128 * 20);
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_LQ8, 4096), 128 * 36);
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_LNF4, 4096), 128 * 20);
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_LFP4, 64), 2 * 20);
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_LQ4, 48), 0);
    assert_string_equal(qn_qformat_name(QN_QFORMAT_LNF4), "lnf4");
    assert_string_equal(qn_qformat_name(QN_QFORMAT_LQ8), "lq8");
    assert_true((int)QN_QFORMAT_LQ4 >= (int)QN_QFORMAT_COUNT); /* outside the CPU traits table */
    qn_qformat f;
    assert_int_equal(qn_qformat_parse("lq4", &f), QN_ERR_NOT_FOUND); /* never a file's or a user's format */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_table),
        cmocka_unit_test(test_peer_weights),
        cmocka_unit_test(test_synthetic),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
