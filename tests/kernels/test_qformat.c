/* test_qformat.c — traits table sanity: block sizes equal the struct sizes, ggml ids map both ways,
 * names parse case-insensitively, row sizes, vec_dot_type as in llama.cpp's CPU backend. */
/* QN_TEST_LABELS: cpu neon (scripts/test_neon.sh runs the neon label under qemu-aarch64) */
#include "harness.h"

#include <string.h>

#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/gguf_quantize.h"
#include "kernels/quant/gguf/gguf_ref.h"
#include "kernels/quant/gguf/q3kp.h"
#include "kernels/quant/gguf/q6kp.h"
#include "kernels/quant/gguf/q8_0p.h"
#include "kernels/quant/qformat.h"

static void test_block_sizes(void **state) {
    (void)state;
    const struct { qn_qformat f; size_t bytes; int elems; } want[] = {
        {QN_QFORMAT_F32, 4, 1}, {QN_QFORMAT_F16, 2, 1}, {QN_QFORMAT_BF16, 2, 1},
        {QN_QFORMAT_Q4_0, sizeof(qn_block_q4_0), 32}, {QN_QFORMAT_Q4_1, sizeof(qn_block_q4_1), 32},
        {QN_QFORMAT_Q5_0, sizeof(qn_block_q5_0), 32}, {QN_QFORMAT_Q5_1, sizeof(qn_block_q5_1), 32},
        {QN_QFORMAT_Q8_0, sizeof(qn_block_q8_0), 32}, {QN_QFORMAT_Q8_1, sizeof(qn_block_q8_1), 32},
        {QN_QFORMAT_Q2_K, sizeof(qn_block_q2_k), 256}, {QN_QFORMAT_Q3_K, sizeof(qn_block_q3_k), 256},
        {QN_QFORMAT_Q4_K, sizeof(qn_block_q4_k), 256}, {QN_QFORMAT_Q5_K, sizeof(qn_block_q5_k), 256},
        {QN_QFORMAT_Q6_K, sizeof(qn_block_q6_k), 256}, {QN_QFORMAT_Q8_K, sizeof(qn_block_q8_k), 256},
    };
    assert_int_equal(sizeof want / sizeof want[0], QN_QFORMAT_COUNT);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const qn_qformat_traits *t = &QN_QFORMATS[want[i].f];
        assert_non_null(t->name);
        assert_int_equal(t->block_bytes, want[i].bytes);
        assert_int_equal(t->block_elems, want[i].elems);
        assert_int_equal(t->is_quantized, want[i].elems > 1);
        assert_non_null(t->dequant_ref);
    }
}

static void test_ggml_ids(void **state) {
    (void)state;
    /* formats.md §2.1 */
    const struct { uint32_t id; qn_qformat f; } map[] = {
        {0, QN_QFORMAT_F32}, {1, QN_QFORMAT_F16}, {30, QN_QFORMAT_BF16}, {2, QN_QFORMAT_Q4_0},
        {3, QN_QFORMAT_Q4_1}, {6, QN_QFORMAT_Q5_0}, {7, QN_QFORMAT_Q5_1}, {8, QN_QFORMAT_Q8_0},
        {9, QN_QFORMAT_Q8_1}, {10, QN_QFORMAT_Q2_K}, {11, QN_QFORMAT_Q3_K}, {12, QN_QFORMAT_Q4_K},
        {13, QN_QFORMAT_Q5_K}, {14, QN_QFORMAT_Q6_K}, {15, QN_QFORMAT_Q8_K},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        qn_qformat f = QN_QFORMAT_COUNT;
        assert_int_equal(qn_qformat_from_ggml(map[i].id, &f), QN_OK);
        assert_int_equal(f, map[i].f);
        assert_int_equal(QN_QFORMATS[f].ggml_type, map[i].id);
    }
    const uint32_t unsupported[] = {4, 5, 16, 20, 23, 24, 28, 31, 34, 39, 1000};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        qn_qformat f = QN_QFORMAT_COUNT;
        assert_int_equal(qn_qformat_from_ggml(unsupported[i], &f), QN_ERR_UNSUPPORTED);
        assert_int_equal(f, QN_QFORMAT_COUNT);
    }
}

static void test_names(void **state) {
    (void)state;
    for (int f = 0; f < QN_QFORMAT_COUNT; f++) {
        qn_qformat g = QN_QFORMAT_COUNT;
        assert_int_equal(qn_qformat_parse(qn_qformat_name((qn_qformat)f), &g), QN_OK);
        assert_int_equal(g, f);
    }
    qn_qformat g;
    assert_int_equal(qn_qformat_parse("Q4_K", &g), QN_OK);
    assert_int_equal(g, QN_QFORMAT_Q4_K);
    assert_int_equal(qn_qformat_parse("q4_k", &g), QN_OK);
    assert_int_equal(g, QN_QFORMAT_Q4_K);
    assert_int_equal(qn_qformat_parse("BF16", &g), QN_OK);
    assert_int_equal(g, QN_QFORMAT_BF16);
    assert_int_equal(qn_qformat_parse("q4", &g), QN_ERR_NOT_FOUND);
    assert_int_equal(qn_qformat_parse("q4_0x", &g), QN_ERR_NOT_FOUND);
    assert_int_equal(qn_qformat_parse("", &g), QN_ERR_NOT_FOUND);
    assert_int_equal(qn_qformat_parse(NULL, &g), QN_ERR_INVALID_ARG);
    assert_string_equal(qn_qformat_name(QN_QFORMAT_Q6_K), "q6_K");
    assert_string_equal(qn_qformat_name(QN_QFORMAT_COUNT), "?");
}

static void test_row_bytes(void **state) {
    (void)state;
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_Q4_K, 4096), 16 * 144);
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_Q4_0, 576), 18 * 18);
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_Q4_K, 576), 0); /* not a multiple of 256 */
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_F16, 7), 14);
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_F32, 0), 0);
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_F32, -1), 0);
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_COUNT, 32), 0);
}

static void test_vec_dot_types(void **state) {
    (void)state;
    const qn_qformat want[QN_QFORMAT_COUNT] = {
        [QN_QFORMAT_F32] = QN_QFORMAT_F32,   [QN_QFORMAT_F16] = QN_QFORMAT_F16,   [QN_QFORMAT_BF16] = QN_QFORMAT_BF16,
        [QN_QFORMAT_Q4_0] = QN_QFORMAT_Q8_0, [QN_QFORMAT_Q4_1] = QN_QFORMAT_Q8_1, [QN_QFORMAT_Q5_0] = QN_QFORMAT_Q8_0,
        [QN_QFORMAT_Q5_1] = QN_QFORMAT_Q8_1, [QN_QFORMAT_Q8_0] = QN_QFORMAT_Q8_0, [QN_QFORMAT_Q8_1] = QN_QFORMAT_Q8_1,
        [QN_QFORMAT_Q2_K] = QN_QFORMAT_Q8_K, [QN_QFORMAT_Q3_K] = QN_QFORMAT_Q8_K, [QN_QFORMAT_Q4_K] = QN_QFORMAT_Q8_K,
        [QN_QFORMAT_Q5_K] = QN_QFORMAT_Q8_K, [QN_QFORMAT_Q6_K] = QN_QFORMAT_Q8_K, [QN_QFORMAT_Q8_K] = QN_QFORMAT_Q8_K,
    };
    for (int f = 0; f < QN_QFORMAT_COUNT; f++) {
        assert_int_equal(QN_QFORMATS[f].vec_dot_type, want[f]);
        /* every activation type has a reference quantizer */
        assert_non_null(QN_QFORMATS[want[f]].quantize_ref);
    }
}

/* The device repacks' shared checks: the reference rows are not all zero, and bad shapes or NULL buffers are
 * refused (576 = SmolLM2's width, not a multiple of 256). */
typedef qn_status (*repack_fn)(const void *src, void *dst, int64_t rows, int64_t k);
static void check_values_and_args(const float *want, int n, repack_fn repack, const void *src, void *dst, int rows,
                                  int k) {
    float amax = 0;
    for (int i = 0; i < n; i++) amax = want[i] > amax ? want[i] : -want[i] > amax ? -want[i] : amax;
    assert_true(amax > 1.0f);
    assert_int_equal(repack(src, dst, rows, 576), QN_ERR_SHAPE);
    assert_int_equal(repack(src, dst, rows, 0), QN_ERR_SHAPE);
    assert_int_equal(repack(src, dst, -1, k), QN_ERR_SHAPE);
    assert_int_equal(repack(NULL, dst, rows, k), QN_ERR_INVALID_ARG);
    assert_int_equal(repack(NULL, NULL, 0, k), QN_OK);
}

/* A padded device-only K-quant (Q3_KP, Q6_KP): each bb-byte block of the base format lands at the start of a
 * slot-byte slot, the pad zeroed (the buffer is poisoned first), nothing past the last slot written, and the
 * values read back are the base format's, bit for bit. Real blocks: random rows through llama.cpp's quantizer. */
typedef void (*quant_fn)(const float *src, void *dst, int64_t n);
typedef void (*deq_fn)(const void *src, float *dst, int64_t n);
static void check_kpad(qn_qformat dev, const char *name, size_t bb, size_t slot, quant_fn quant, deq_fn deq_base,
                       deq_fn deq_dev, repack_fn repack, uint64_t seed) {
    enum { ROWS = 3, K = 3 * 256, NB = ROWS * K / 256, GUARD = 32 };
    assert_int_equal(qn_qformat_row_bytes(dev, K), 3 * slot);
    assert_int_equal(qn_qformat_row_bytes(dev, 576), 0);
    assert_string_equal(qn_qformat_name(dev), name);
    qn_qformat g;
    assert_int_equal(qn_qformat_parse(name, &g), QN_ERR_NOT_FOUND); /* never in a file or on a command line */

    qn_rng r;
    qn_rng_seed(&r, seed);
    static float x[ROWS * K], want[ROWS * K], got[ROWS * K];
    static uint8_t base[NB * 256], pad[NB * 256 + GUARD];
    qn_rng_fill_normal(&r, x, ROWS * K, 1.0f);
    for (int i = 0; i < ROWS; i++) quant(x + i * K, base + i * 3 * bb, K);
    memset(pad, 0xAA, sizeof pad);
    assert_int_equal(repack(base, pad, ROWS, K), QN_OK);
    for (int b = 0; b < NB; b++) {
        assert_memory_equal(pad + slot * b, base + bb * b, bb);
        for (size_t i = bb; i < slot; i++) assert_int_equal(pad[slot * b + i], 0);
    }
    for (int i = 0; i < GUARD; i++) assert_int_equal(pad[NB * slot + i], 0xAA);
    for (int i = 0; i < ROWS; i++) {
        deq_base(base + i * 3 * bb, want + i * K, K);
        deq_dev(pad + i * 3 * slot, got + i * K, K);
    }
    assert_memory_equal(got, want, sizeof want);
    check_values_and_args(want, ROWS * K, repack, base, pad, ROWS, K);
}

static void test_q6kp(void **state) {
    (void)state;
    check_kpad(QN_QFORMAT_Q6_KP, "q6_Kp", 210, 224, qn_quantize_row_q6_k_ref, qn_dequant_row_q6_k_ref,
               qn_dequant_row_q6kp_ref, qn_q6kp_repack, 606);
}

static void test_q3kp(void **state) {
    (void)state;
    check_kpad(QN_QFORMAT_Q3_KP, "q3_Kp", 110, 112, qn_quantize_row_q3_k_ref, qn_dequant_row_q3_k_ref,
               qn_dequant_row_q3kp_ref, qn_q3kp_repack, 303);
}

/* Q8_0P (device-only): Q8_0 block j of each group of eight has its scale at 2j and its codes at 16 + 32j of a
 * 272-byte block (the buffer is poisoned first: every byte written), nothing past the last block written, and the
 * values read back are Q8_0's, bit for bit. Real blocks: random rows through llama.cpp's Q8_0 quantizer. */
static void test_q8_0p(void **state) {
    (void)state;
    enum { ROWS = 3, K = 2 * 256, NB = ROWS * K / 256, GUARD = 32 };
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_Q8_0P, K), 2 * 272);
    assert_int_equal(qn_qformat_row_bytes(QN_QFORMAT_Q8_0P, 576), 0); /* SmolLM2's 576 stays Q8_0 */
    assert_string_equal(qn_qformat_name(QN_QFORMAT_Q8_0P), "q8_0p");
    qn_qformat g;
    assert_int_equal(qn_qformat_parse("q8_0p", &g), QN_ERR_NOT_FOUND); /* never in a file or on a command line */

    qn_rng r;
    qn_rng_seed(&r, 808);
    static float x[ROWS * K], want[ROWS * K], got[ROWS * K];
    static uint8_t q8[NB * 8 * 34], grp[NB * 272 + GUARD];
    qn_rng_fill_normal(&r, x, ROWS * K, 1.0f);
    for (int i = 0; i < ROWS; i++) qn_quantize_row_q8_0_ref(x + i * K, q8 + i * (K / 32) * 34, K);
    memset(grp, 0xAA, sizeof grp);
    assert_int_equal(qn_q8_0p_repack(q8, grp, ROWS, K), QN_OK);
    for (int b = 0; b < NB; b++)
        for (int j = 0; j < 8; j++) {
            const uint8_t *blk = q8 + 34 * (8 * b + j);
            assert_memory_equal(grp + 272 * b + 2 * j, blk, 2);
            assert_memory_equal(grp + 272 * b + 16 + 32 * j, blk + 2, 32);
        }
    for (int i = 0; i < GUARD; i++) assert_int_equal(grp[NB * 272 + i], 0xAA);
    for (int i = 0; i < ROWS; i++) {
        qn_dequant_row_q8_0_ref(q8 + i * (K / 32) * 34, want + i * K, K);
        qn_dequant_row_q8_0p_ref(grp + i * 2 * 272, got + i * K, K);
    }
    assert_memory_equal(got, want, sizeof want);
    check_values_and_args(want, ROWS * K, qn_q8_0p_repack, q8, grp, ROWS, K);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_sizes), cmocka_unit_test(test_ggml_ids), cmocka_unit_test(test_names),
        cmocka_unit_test(test_row_bytes),   cmocka_unit_test(test_vec_dot_types), cmocka_unit_test(test_q6kp), cmocka_unit_test(test_q3kp),
        cmocka_unit_test(test_q8_0p),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
