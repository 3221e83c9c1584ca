/* test_kq_tc_host.c — the host side of the GGUF tensor-core GEMM (kernels/quant/gguf/kq_tc.h), no GPU needed:
 * - the x order (qn_kq_tc_x_col) is a permutation of each 64-column group;
 * - the host twin's values (S = fp16(d sc), B = fp16(-dmin m), fp16(S q + B) once) against ggml's exact dequant
 *   (qn_dequant_q4_k_impl, f32) on random blocks: within 2^-11 (|d sc q| + |dmin m| + |w|) + 2^-24 (the two
 *   rounded factors and the final rounding), some weights not equal to fp16(w) (the twin is not the plain dequant),
 *   and equal to fp16(w) wherever the block's mins are zero and sc q is exact in fp16;
 * - the same for Q6_KP (fp16(S (q - 32)), S = fp16(d sc)) against qn_dequant_q6_k_impl: within
 *   2^-11 |d sc (q - 32)| 2 + 2^-24, equal to fp16(w) wherever d sc is exact in fp16 (and ggml's f32 w exact);
 * - Q5_K's (Q4_K's with the fifth bit) against qn_dequant_q5_k_impl the same way;
 * - Q3_KP's (fp16(S (q - 4)), S = fp16(d (sc - 32))) against qn_dequant_q3_k_impl the same way as Q6_KP's;
 * - Q2_K's (fp16(S q + B) as Q4_K's, 2-bit q) against qn_dequant_q2_k_impl the same way as Q4_K's;
 * - Q8_0P's (fp16(d q)) equal to fp16 of ggml's dequant (qn_dequant_q8_0_impl) at every weight, subnormals included;
 * - shape and format refusals. */
#include "harness.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/gguf_dequant.h"
#include "kernels/quant/gguf/kq_tc.h"
#include "kernels/quant/gguf/q3kp.h"
#include "kernels/quant/gguf/q6kp.h"
#include "kernels/quant/gguf/q8_0p.h"

static void test_x_order(void **state) {
    (void)state;
    int seen[64] = {0};
    for (int c = 0; c < 64; c++) {
        const int s = qn_kq_tc_x_col(c);
        assert_true(s >= 0 && s < 64);
        seen[s]++;
    }
    for (int c = 0; c < 64; c++) assert_int_equal(seen[c], 1);
    /* slice 0, lane 0: slots 0, 1 are bytes 0, 2 of the lane's first word (low nibbles); slot 8 is byte 1 */
    assert_int_equal(qn_kq_tc_x_col(0), 0);
    assert_int_equal(qn_kq_tc_x_col(1), 2);
    assert_int_equal(qn_kq_tc_x_col(8), 1);
    assert_int_equal(qn_kq_tc_x_col(16), 32); /* slice 1: the high nibbles */
    assert_int_equal(qn_kq_tc_x_col(2), 8);   /* lane 1: bytes 8.. */
}

static void test_twin(void **state) {
    (void)state;
    const int64_t rows = 24, k = 1024, nb = rows * k / QN_QK_K;
    qn_rng r;
    qn_rng_seed(&r, 4242);
    qn_block_q4_k *b = malloc(sizeof *b * (size_t)nb);
    float *ref = malloc(sizeof(float) * (size_t)(rows * k));
    uint16_t *tw = malloc(2 * (size_t)(rows * k));
    assert_true(b && ref && tw);
    qn_rng_fill_bytes(&r, b, sizeof *b * (size_t)nb);
    for (int64_t i = 0; i < nb; i++) { /* scales spread over 2^-14 .. 2^-2; every fourth block without mins */
        b[i].d = qn_f32_to_f16(ldexpf(qn_rng_uniform(&r, 1.f, 2.f), -2 - (int)(qn_rng_u64(&r) % 13)));
        b[i].dmin = i % 4 == 3 ? 0 : qn_f32_to_f16(ldexpf(qn_rng_uniform(&r, 1.f, 2.f), -2 - (int)(qn_rng_u64(&r) % 13)));
    }
    qn_dequant_q4_k_impl(b, ref, rows * k);
    assert_int_equal(qn_kq_tc_dequant_host(QN_QFORMAT_Q4_K, b, rows, k, tw), QN_OK);
    size_t differ = 0, nomin_same = 0, nomin_exact = 0;
    for (int64_t i = 0; i < rows * k; i++) {
        const qn_block_q4_k *blk = &b[i / QN_QK_K];
        const int col = (int)(i % QN_QK_K), j = col / 32;
        uint8_t sc[8], mn[8];
        qn_q4_k_scales(blk->scales, sc, mn);
        const uint8_t byte = blk->qs[32 * (j / 2) + col % 32];
        const int q = j & 1 ? byte >> 4 : byte & 15;
        const double d = qn_f16_to_f32(blk->d), dmin = qn_f16_to_f32(blk->dmin);
        const double a = fabs(d * sc[j] * q), m = fabs(dmin * mn[j]), w = ref[i];
        const double got = qn_f16_to_f32(tw[i]);
        if (!(fabs(got - w) <= ldexp(a + m + fabs(w), -11) + ldexp(1.0, -24)))
            fail_msg("weight %lld: twin %.9g, exact %.9g (d sc q %.3g, dmin m %.3g)", (long long)i, got, w, a, m);
        differ += tw[i] != qn_f32_to_f16(ref[i]);
        if (blk->dmin == 0 && d * sc[j] == qn_f16_to_f32(qn_f32_to_f16((float)(d * sc[j])))) {
            nomin_exact++;
            nomin_same += tw[i] == qn_f32_to_f16(ref[i]);
        }
    }
    assert_true(differ > 0);
    assert_true(nomin_exact > 0);
    assert_int_equal(nomin_same, nomin_exact);
    assert_int_equal(qn_kq_tc_dequant_host(QN_QFORMAT_Q4_K, b, rows, 1000, tw), QN_ERR_SHAPE);
    assert_int_equal(qn_kq_tc_dequant_host(QN_QFORMAT_Q4_K, b, -1, k, tw), QN_ERR_SHAPE);
    assert_int_equal(qn_kq_tc_dequant_host(QN_QFORMAT_Q4_K, NULL, rows, k, tw), QN_ERR_INVALID_ARG);
    free(b), free(ref), free(tw);
}

/* nb random blocks of bs bytes at b, each with a random fp16 scale (2^-17 .. 2^-3) at doff */
static void fill_blocks(qn_rng *r, void *b, size_t bs, int64_t nb, size_t doff) {
    qn_rng_fill_bytes(r, b, bs * (size_t)nb);
    for (int64_t i = 0; i < nb; i++) {
        const uint16_t d = qn_f32_to_f16(ldexpf(qn_rng_uniform(r, 1.f, 2.f), -4 - (int)(qn_rng_u64(r) % 13)));
        memcpy((uint8_t *)b + (size_t)i * bs + doff, &d, 2);
    }
}

static void test_twin_q6kp(void **state) {
    (void)state;
    const int64_t rows = 16, k = 768, nb = rows * k / QN_QK_K;
    qn_rng r;
    qn_rng_seed(&r, 4343);
    qn_block_q6_k *b = malloc(sizeof *b * (size_t)nb);
    uint8_t *bp = malloc((size_t)(nb * QN_Q6KP_BLOCK_BYTES));
    float *ref = malloc(sizeof(float) * (size_t)(rows * k));
    uint16_t *tw = malloc(2 * (size_t)(rows * k));
    assert_true(b && bp && ref && tw);
    fill_blocks(&r, b, sizeof *b, nb, offsetof(qn_block_q6_k, d));
    assert_int_equal(qn_q6kp_repack(b, bp, rows, k), QN_OK);
    qn_dequant_q6_k_impl(b, ref, rows * k);
    assert_int_equal(qn_kq_tc_dequant_host(QN_QFORMAT_Q6_KP, bp, rows, k, tw), QN_OK);
    size_t differ = 0, exact = 0, exact_same = 0;
    for (int64_t i = 0; i < rows * k; i++) {
        const qn_block_q6_k *blk = &b[i / QN_QK_K];
        const double ds = (double)qn_f16_to_f32(blk->d) * blk->scales[i % QN_QK_K / 16];
        const double w = ref[i], got = qn_f16_to_f32(tw[i]);
        if (!(fabs(got - w) <= ldexp(2 * fabs(w), -11) + ldexp(1.0, -24)))
            fail_msg("weight %lld: twin %.9g, exact %.9g (d sc %.3g)", (long long)i, got, w, ds);
        differ += tw[i] != qn_f32_to_f16(ref[i]);
        const int e = (int)(i % QN_QK_K), h = e / 128, kq = e % 128 / 32, l = e % 32;
        const uint8_t lb = blk->ql[64 * h + 32 * (kq & 1) + l];
        const double pe = ds * (((kq < 2 ? lb & 15 : lb >> 4) | ((blk->qh[32 * h + l] >> (2 * kq)) & 3) << 4) - 32);
        /* d sc exact in fp16 and ggml's f32 d sc (q - 32) exact (a 25-bit product may round twice there) */
        if (ds == qn_f16_to_f32(qn_f32_to_f16((float)ds)) && (double)w == pe) {
            exact++;
            exact_same += tw[i] == qn_f32_to_f16(ref[i]);
        }
    }
    assert_true(differ > 0);
    assert_true(exact > 0);
    assert_int_equal(exact_same, exact);
    assert_int_equal(qn_kq_tc_dequant_host(QN_QFORMAT_Q6_K, b, rows, k, tw), QN_ERR_UNSUPPORTED);
    assert_int_equal(qn_kq_tc_dequant_host(QN_QFORMAT_Q4_0, bp, rows, k, tw), QN_ERR_UNSUPPORTED);
    free(b), free(bp), free(ref), free(tw);
}

/* Q2_K: fp16(S q + B), S = fp16(d sc), B = fp16(-dmin m) of the column's 16-column sub-block (q: bits 2j.. of
 * qs[32 h + l]), against ggml's exact dequant (qn_dequant_q2_k_impl) within the Q4_K bound, equal to fp16(w) wherever
 * the block has no mins and d sc is exact in fp16, some weights not */
static void test_twin_q2k(void **state) {
    (void)state;
    const int64_t rows = 16, k = 768, nb = rows * k / QN_QK_K;
    qn_rng r;
    qn_rng_seed(&r, 4646);
    qn_block_q2_k *b = malloc(sizeof *b * (size_t)nb);
    float *ref = malloc(sizeof(float) * (size_t)(rows * k));
    uint16_t *tw = malloc(2 * (size_t)(rows * k));
    assert_true(b && ref && tw);
    fill_blocks(&r, b, sizeof *b, nb, offsetof(qn_block_q2_k, d));
    for (int64_t i = 0; i < nb; i++) /* dmin as d, every fourth block without mins */
        b[i].dmin = i % 4 == 0 ? 0 : qn_f32_to_f16(ldexpf(qn_rng_uniform(&r, 1.f, 2.f), -4 - (int)(qn_rng_u64(&r) % 13)));
    qn_dequant_q2_k_impl(b, ref, rows * k);
    assert_int_equal(qn_kq_tc_dequant_host(QN_QFORMAT_Q2_K, b, rows, k, tw), QN_OK);
    size_t differ = 0, nomin_same = 0, nomin_exact = 0;
    for (int64_t i = 0; i < rows * k; i++) {
        const qn_block_q2_k *blk = &b[i / QN_QK_K];
        const int e = (int)(i % QN_QK_K), h = e / 128, j = e % 128 / 32, l = e % 32, sb = blk->scales[e / 16];
        const int q = (blk->qs[32 * h + l] >> (2 * j)) & 3;
        const double d = qn_f16_to_f32(blk->d), dmin = qn_f16_to_f32(blk->dmin);
        const double a = fabs(d * (sb & 15) * q), m = fabs(dmin * (sb >> 4)), w = ref[i];
        const double got = qn_f16_to_f32(tw[i]);
        if (!(fabs(got - w) <= ldexp(a + m + fabs(w), -11) + ldexp(1.0, -24)))
            fail_msg("weight %lld: twin %.9g, exact %.9g (d sc q %.3g, dmin m %.3g)", (long long)i, got, w, a, m);
        differ += tw[i] != qn_f32_to_f16(ref[i]);
        if (blk->dmin == 0 && d * (sb & 15) == qn_f16_to_f32(qn_f32_to_f16((float)(d * (sb & 15))))) {
            nomin_exact++;
            nomin_same += tw[i] == qn_f32_to_f16(ref[i]);
        }
    }
    assert_true(differ > 0);
    assert_true(nomin_exact > 0);
    assert_int_equal(nomin_same, nomin_exact);
    free(b), free(ref), free(tw);
}

/* Q3_KP: fp16(S (q - 4)), S = fp16(d (sc - 32)), against ggml's exact dequant (qn_dequant_q3_k_impl) within
 * 2^-11 |w| 2 + 2^-24, equal to fp16(w) wherever d (sc - 32) is exact in fp16 (and ggml's f32 w exact), some
 * weights not */
static void test_twin_q3kp(void **state) {
    (void)state;
    const int64_t rows = 16, k = 768, nb = rows * k / QN_QK_K;
    qn_rng r;
    qn_rng_seed(&r, 4545);
    qn_block_q3_k *b = malloc(sizeof *b * (size_t)nb);
    uint8_t *bp = malloc((size_t)(nb * QN_Q3KP_BLOCK_BYTES));
    float *ref = malloc(sizeof(float) * (size_t)(rows * k));
    uint16_t *tw = malloc(2 * (size_t)(rows * k));
    assert_true(b && bp && ref && tw);
    fill_blocks(&r, b, sizeof *b, nb, offsetof(qn_block_q3_k, d));
    assert_int_equal(qn_q3kp_repack(b, bp, rows, k), QN_OK);
    qn_dequant_q3_k_impl(b, ref, rows * k);
    assert_int_equal(qn_kq_tc_dequant_host(QN_QFORMAT_Q3_KP, bp, rows, k, tw), QN_OK);
    size_t differ = 0, exact = 0, exact_same = 0, high = 0;
    for (int64_t i = 0; i < rows * k; i++) {
        const qn_block_q3_k *blk = &b[i / QN_QK_K];
        uint8_t sc[16];
        qn_q3_k_scales(blk->scales, sc);
        const int e = (int)(i % QN_QK_K), h = e / 128, j = e % 128 / 32, l = e % 32;
        const double ds = (double)qn_f16_to_f32(blk->d) * (sc[e / 16] - 32);
        const double w = ref[i], got = qn_f16_to_f32(tw[i]);
        if (!(fabs(got - w) <= ldexp(2 * fabs(w), -11) + ldexp(1.0, -24)))
            fail_msg("weight %lld: twin %.9g, exact %.9g (d (sc - 32) %.3g)", (long long)i, got, w, ds);
        differ += tw[i] != qn_f32_to_f16(ref[i]);
        const int hb = (blk->hmask[l] >> (4 * h + j)) & 1;
        high += hb;
        const double pe = ds * ((((blk->qs[32 * h + l] >> (2 * j)) & 3) | hb << 2) - 4);
        if (ds == qn_f16_to_f32(qn_f32_to_f16((float)ds)) && (double)w == pe) {
            exact++;
            exact_same += tw[i] == qn_f32_to_f16(ref[i]);
        }
    }
    assert_true(differ > 0);
    assert_true(high > 0 && high < (size_t)(rows * k));
    assert_true(exact > 0);
    assert_int_equal(exact_same, exact);
    assert_int_equal(qn_kq_tc_dequant_host(QN_QFORMAT_Q3_K, b, rows, k, tw), QN_ERR_UNSUPPORTED);
    free(b), free(bp), free(ref), free(tw);
}

/* Q5_K: the Q4_K twin with q's fifth bit from qh (bit j of qh[c] in sub-block j): within the same bound of ggml's
 * exact dequant (qn_dequant_q5_k_impl), equal to fp16(w) wherever the block has no mins and d sc is exact in fp16,
 * and some weights have the fifth bit (q >= 16) */
static void test_twin_q5k(void **state) {
    (void)state;
    const int64_t rows = 16, k = 768, nb = rows * k / QN_QK_K;
    qn_rng r;
    qn_rng_seed(&r, 4545);
    qn_block_q5_k *b = malloc(sizeof *b * (size_t)nb);
    float *ref = malloc(sizeof(float) * (size_t)(rows * k));
    uint16_t *tw = malloc(2 * (size_t)(rows * k));
    assert_true(b && ref && tw);
    qn_rng_fill_bytes(&r, b, sizeof *b * (size_t)nb);
    for (int64_t i = 0; i < nb; i++) {
        b[i].d = qn_f32_to_f16(ldexpf(qn_rng_uniform(&r, 1.f, 2.f), -3 - (int)(qn_rng_u64(&r) % 12)));
        b[i].dmin = i % 3 == 1 ? 0 : qn_f32_to_f16(ldexpf(qn_rng_uniform(&r, 1.f, 2.f), -3 - (int)(qn_rng_u64(&r) % 12)));
    }
    qn_dequant_q5_k_impl(b, ref, rows * k);
    assert_int_equal(qn_kq_tc_dequant_host(QN_QFORMAT_Q5_K, b, rows, k, tw), QN_OK);
    size_t high = 0, nomin_exact = 0, nomin_same = 0;
    for (int64_t i = 0; i < rows * k; i++) {
        const qn_block_q5_k *blk = &b[i / QN_QK_K];
        const int col = (int)(i % QN_QK_K), j = col / 32, c = col % 32;
        uint8_t sc[8], mn[8];
        qn_q4_k_scales(blk->scales, sc, mn);
        const uint8_t byte = blk->qs[32 * (j / 2) + c];
        const int q = (j & 1 ? byte >> 4 : byte & 15) | (blk->qh[c] >> j & 1) << 4;
        const double d = qn_f16_to_f32(blk->d), dmin = qn_f16_to_f32(blk->dmin);
        const double a = fabs(d * sc[j] * q), m = fabs(dmin * mn[j]), w = ref[i], got = qn_f16_to_f32(tw[i]);
        if (!(fabs(got - w) <= ldexp(a + m + fabs(w), -11) + ldexp(1.0, -24)))
            fail_msg("weight %lld: twin %.9g, exact %.9g (q %d)", (long long)i, got, w, q);
        high += q >= 16;
        if (blk->dmin == 0 && d * sc[j] == qn_f16_to_f32(qn_f32_to_f16((float)(d * sc[j])))) {
            nomin_exact++;
            nomin_same += tw[i] == qn_f32_to_f16(ref[i]);
        }
    }
    assert_true(high > 0);
    assert_true(nomin_exact > 0);
    assert_int_equal(nomin_same, nomin_exact);
    free(b), free(ref), free(tw);
}

/* Q8_0P: fp16(d q), one rounding of an exact product: ggml's fp16 dequant bit for bit, every weight (scales down
 * to fp16's subnormal products, negative ones, codes -128..127) */
static void test_twin_q8_0p(void **state) {
    (void)state;
    const int64_t rows = 16, k = 1280, nb = rows * k / 32;
    qn_rng r;
    qn_rng_seed(&r, 4444);
    qn_block_q8_0 *b = malloc(sizeof *b * (size_t)nb);
    uint8_t *bp = malloc((size_t)(rows * k / QN_Q8_0P_BLOCK_ELEMS * QN_Q8_0P_BLOCK_BYTES));
    float *ref = malloc(sizeof(float) * (size_t)(rows * k));
    uint16_t *tw = malloc(2 * (size_t)(rows * k));
    assert_true(b && bp && ref && tw);
    qn_rng_fill_bytes(&r, b, sizeof *b * (size_t)nb);
    size_t sub = 0; /* weights whose fp16 value is subnormal */
    for (int64_t i = 0; i < nb; i++) {
        const float m = ldexpf(qn_rng_uniform(&r, 1.f, 2.f), -6 - (int)(qn_rng_u64(&r) % 16));
        b[i].d = qn_f32_to_f16(i % 5 == 2 ? -m : m);
    }
    assert_int_equal(qn_q8_0p_repack(b, bp, rows, k), QN_OK);
    qn_dequant_q8_0_impl(b, ref, rows * k);
    memset(tw, 0xFF, 2 * (size_t)(rows * k));
    assert_int_equal(qn_kq_tc_dequant_host(QN_QFORMAT_Q8_0P, bp, rows, k, tw), QN_OK);
    for (int64_t i = 0; i < rows * k; i++) {
        if (tw[i] != qn_f32_to_f16(ref[i]))
            fail_msg("weight %lld: twin %#06x, ggml's fp16 %#06x (%.9g)", (long long)i, tw[i], qn_f32_to_f16(ref[i]),
                     ref[i]);
        sub += ref[i] != 0 && fabsf(ref[i]) < ldexpf(1.f, -14);
    }
    assert_true(sub > 0);
    assert_int_equal(qn_kq_tc_dequant_host(QN_QFORMAT_Q8_0, b, rows, k, tw), QN_ERR_UNSUPPORTED);
    free(b), free(bp), free(ref), free(tw);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_x_order), cmocka_unit_test(test_twin),
                                       cmocka_unit_test(test_twin_q6kp), cmocka_unit_test(test_twin_q5k),
                                       cmocka_unit_test(test_twin_q8_0p), cmocka_unit_test(test_twin_q3kp),
                                       cmocka_unit_test(test_twin_q2k)};
    return cmocka_run_group_tests_name("kq_tc_host", tests, NULL, NULL);
}
