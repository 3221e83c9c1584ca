/* test_tc_plan.c — the host side of the tensor-core GEMMs (the M forms' kernels/quant/lq4m_tc_sm90a.cu, the
 * K-quants' kernels/quant/gguf/kq_tc_sm90a.cu), which runs without a GPU: their K split (qn_lq4m_tc_split,
 * qn_kq_tc_split) and the workspace they ask for the split's sums (qn_lq4m_tc_part_bytes, qn_kq_tc_part_bytes), on
 * the 8B shapes and odd ones, 132 / 114 / 78 / 16 multiprocessors, n = 1..2048.
 * - the split covers K exactly once: 1 <= split <= 8, steps per split a multiple of 2 (M forms: a chunk) or 4
 *   (K-quants: a block, whose steps the kernel unrolls by their place in it), (split - 1) cps < K / 64 <= split cps;
 *   at least 16 steps per split when it splits; none where the tiles (128 rows by 128 tokens, the K-quants 128 or
 *   256: the tile a call names or the default) fill the SMs;
 * - the workspace holds the split's sums (split x n x N f32) and never shrinks as n grows (the runtime asks for it
 *   at sampled n, its largest included, and calls with any n below: llama_cuda.c's mm_ws_for);
 * - refusals: a shape the GEMM cannot take asks for nothing.
 * Built where the build has the sm_90a code (QN_HAVE_SM90A), else skipped (77). Numbers only, no CUDA calls. */
#include "harness.h"

#include <stdio.h>

#include "kernels/quant/gguf/kq_tc.h"
#include "kernels/quant/lq4m.h"

#ifdef QN_HAVE_SM90A
typedef int (*split_fn)(int n_sm, int64_t N, int64_t K, int64_t n, int *cps);
typedef size_t (*part_fn)(int n_sm, int64_t N, int64_t K, int64_t n);
typedef int (*tile_fn)(int64_t N, int64_t n); /* tokens per CTA tile of a call on n tokens of N rows */

static int tile_128(int64_t N, int64_t n) {
    (void)N, (void)n;
    return 128;
}

/* The split's and workspace's invariants over the shapes whose K is a multiple of kmod (the others are refused). */
static void check_plan(const char *name, split_fn split_of, part_fn part_of, tile_fn tile_of, int align, int64_t kmod) {
    const int64_t shapes[][2] = {{4096, 4096}, {14336, 4096}, {4096, 14336}, {1024, 4096},  {48, 384},
                                 {1040, 4224}, {256, 1024},   {128256, 4096}, {144, 1280}, {16, 256}};
    const int sms[] = {132, 114, 78, 16};
    int checked = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t mi = 0; mi < sizeof sms / sizeof sms[0]; mi++) {
            const int64_t N = shapes[si][0], K = shapes[si][1], KT = K / 64;
            if (K % kmod) {
                assert_int_equal(part_of(sms[mi], N, K, 1000), 0);
                continue;
            }
            checked++;
            size_t prev = 0;
            for (int64_t n = 1; n <= 2048; n++) {
                int cps = -1;
                const int split = split_of(sms[mi], N, K, n, &cps);
                const int64_t bn = tile_of(N, n), ctas = (n + bn - 1) / bn * ((N / 16 + 7) / 8);
                if (split < 1 || split > 8 || cps < align || cps % align || (int64_t)(split - 1) * cps >= KT ||
                    (int64_t)split * cps < KT)
                    fail_msg("%s N=%lld K=%lld sms=%d n=%lld: split %d x %d steps does not cover %lld steps once", name,
                             (long long)N, (long long)K, sms[mi], (long long)n, split, cps, (long long)KT);
                if (split > 1 && (cps < 16 || ctas >= sms[mi]))
                    fail_msg("%s N=%lld K=%lld sms=%d n=%lld: split %d (%d steps each) with %lld tiles", name,
                             (long long)N, (long long)K, sms[mi], (long long)n, split, cps, (long long)ctas);
                const size_t part = part_of(sms[mi], N, K, n);
                const size_t need = split > 1 ? (size_t)split * (size_t)n * (size_t)N * sizeof(float) : 0;
                if (part < need)
                    fail_msg("%s N=%lld K=%lld sms=%d n=%lld: workspace %zu < the split's sums %zu", name, (long long)N,
                             (long long)K, sms[mi], (long long)n, part, need);
                if (part < prev)
                    fail_msg("%s N=%lld K=%lld sms=%d: workspace shrinks from %zu to %zu at n=%lld", name,
                             (long long)N, (long long)K, sms[mi], prev, part, (long long)n);
                prev = part;
            }
        }
    assert_true(checked >= 28);
}

static void test_split_and_workspace(void **state) {
    (void)state;
    check_plan("lq4m", qn_lq4m_tc_split, qn_lq4m_tc_part_bytes, tile_128, 2, 128);
    /* the 8B shapes on an H100 (132 SMs), as measured in bench/results/gpu-lq4m-tc-2026-12-06.md */
    int cps;
    assert_int_equal(qn_lq4m_tc_split(132, 4096, 4096, 64, &cps), 4);     /* q/o: 32 tiles */
    assert_int_equal(cps, 16);
    assert_int_equal(qn_lq4m_tc_split(132, 4096, 14336, 128, &cps), 4);   /* down: 32 tiles, 56 steps each */
    assert_int_equal(cps, 56);
    assert_int_equal(qn_lq4m_tc_split(132, 14336, 4096, 64, &cps), 1);    /* gate/up: 112 tiles */
    assert_int_equal(qn_lq4m_tc_split(132, 4096, 4096, 512, &cps), 1);    /* 128 tiles */
    assert_int_equal(qn_lq4m_tc_split(132, 4096, 4096, 256, &cps), 2);    /* 64 tiles */
    assert_int_equal(qn_lq4m_tc_split(132, 48, 384, 1, &cps), 1);         /* 6 steps: too few to split */
}

/* the K-quant GEMM's split with its tile: the default (tile 0) of Q4_K (the 128-token tile below
 * QN_KQ_TC_WIDE_MIN_ROWS rows) and of Q8_0P (the wide tile on any rows), or each tile named */
static int kq_split_q4k(int n_sm, int64_t N, int64_t K, int64_t n, int *cps) {
    return qn_kq_tc_split(n_sm, QN_QFORMAT_Q4_K, N, K, n, 0, cps);
}
static int kq_split_q8(int n_sm, int64_t N, int64_t K, int64_t n, int *cps) {
    return qn_kq_tc_split(n_sm, QN_QFORMAT_Q8_0P, N, K, n, 0, cps);
}
static int kq_split_128(int n_sm, int64_t N, int64_t K, int64_t n, int *cps) {
    return qn_kq_tc_split(n_sm, QN_QFORMAT_Q4_K, N, K, n, 128, cps);
}
static int kq_split_256(int n_sm, int64_t N, int64_t K, int64_t n, int *cps) {
    return qn_kq_tc_split(n_sm, QN_QFORMAT_Q4_K, N, K, n, 256, cps);
}
static int kq_tile_q4k(int64_t N, int64_t n) { return qn_kq_tc_tile_tokens(QN_QFORMAT_Q4_K, N, n); }
static int kq_tile_q8(int64_t N, int64_t n) { return qn_kq_tc_tile_tokens(QN_QFORMAT_Q8_0P, N, n); }
static int tile_256(int64_t N, int64_t n) {
    (void)N, (void)n;
    return 256;
}

/* The K-quant GEMM: steps per split a multiple of 4 (every step's place in its 256-column block a constant); tiles
 * of 128 or 256 tokens, named by the call or the default (kq_tc.h: 128, or 256 from QN_KQ_TC_WIDE_MIN_TOKENS on where
 * that is > 0); the workspace serves either */
static void test_kq_split_and_workspace(void **state) {
    (void)state;
    check_plan("kq q4_K", kq_split_q4k, qn_kq_tc_part_bytes, kq_tile_q4k, 4, 256);
    check_plan("kq q8_0p", kq_split_q8, qn_kq_tc_part_bytes, kq_tile_q8, 4, 256);
    check_plan("kq128", kq_split_128, qn_kq_tc_part_bytes, tile_128, 4, 256);
    check_plan("kq256", kq_split_256, qn_kq_tc_part_bytes, tile_256, 4, 256);
    const qn_qformat fmts[] = {QN_QFORMAT_Q4_K,  QN_QFORMAT_Q5_K, QN_QFORMAT_Q6_KP,
                               QN_QFORMAT_Q3_KP, QN_QFORMAT_Q2_K, QN_QFORMAT_Q8_0P};
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        const qn_qformat f = fmts[i];
        const bool narrow = f == QN_QFORMAT_Q4_K || f == QN_QFORMAT_Q5_K; /* kq_tc.h's a_q4k formats */
        assert_int_equal(qn_kq_tc_narrow_below_rows(f), narrow);
        assert_int_equal(qn_kq_tc_tile_tokens(f, 14336, 1), 128);
        assert_int_equal(qn_kq_tc_tile_tokens(f, 4096, 1), 128);
#if QN_KQ_TC_WIDE_MIN_TOKENS > 0
        const int64_t wn = QN_KQ_TC_WIDE_MIN_TOKENS;
        assert_int_equal(qn_kq_tc_tile_tokens(f, 14336, wn - 1), 128);
        const int64_t at = QN_KQ_TC_WIDE_MIN_ROWS > 16 ? QN_KQ_TC_WIDE_MIN_ROWS : 16, below = at > 32 ? at - 16 : 16;
        assert_int_equal(qn_kq_tc_tile_tokens(f, at, wn), 256);
        /* below the rows: the 128-token tile for Q4_K and Q5_K at every n, the wide one for the others */
        assert_int_equal(qn_kq_tc_tile_tokens(f, below, wn), narrow && below < QN_KQ_TC_WIDE_MIN_ROWS ? 128 : 256);
        assert_int_equal(qn_kq_tc_tile_tokens(f, 4096, 512), narrow && QN_KQ_TC_WIDE_MIN_ROWS > 4096 ? 128 : 256);
        assert_int_equal(qn_kq_tc_tile_tokens(f, 14336, 512), QN_KQ_TC_WIDE_MIN_ROWS > 14336 && narrow ? 128 : 256);
#else
        assert_int_equal(qn_kq_tc_tile_tokens(f, 14336, 4096), 128); /* the default: 128 always */
        assert_int_equal(qn_kq_tc_tile_tokens(f, 4096, 4096), 128);
#endif
        assert_int_equal(qn_kq_tc_tile_of(0, f, 4096, 4096), qn_kq_tc_tile_tokens(f, 4096, 4096));
        assert_int_equal(qn_kq_tc_tile_of(0, f, 14336, 300), qn_kq_tc_tile_tokens(f, 14336, 300));
        assert_int_equal(qn_kq_tc_tile_of(256, f, 4096, 1), 256);
        assert_int_equal(qn_kq_tc_tile_of(128, f, 14336, 4096), 128);
    }
    assert_true(qn_kq_tc_tile_valid(0) && qn_kq_tc_tile_valid(128) && qn_kq_tc_tile_valid(256));
    assert_false(qn_kq_tc_tile_valid(64) || qn_kq_tc_tile_valid(512) || qn_kq_tc_tile_valid(-128));
    int cps;
    const qn_qformat q4k = QN_QFORMAT_Q4_K;
    assert_int_equal(qn_kq_tc_split(132, q4k, 144, 4096, 33, 128, &cps), 4); /* test_gpu_quant's split case: 2 tiles */
    assert_int_equal(cps, 16);
    assert_int_equal(qn_kq_tc_split(132, q4k, 144, 4096, 130, 256, &cps), 4); /* the same with the wide tile: 2 tiles */
    assert_int_equal(cps, 16);
    assert_int_equal(qn_kq_tc_split(132, q4k, 256, 1280, 200, 256, &cps), 1); /* 20 steps: too few to split */
    assert_int_equal(cps, 20);
    assert_int_equal(qn_kq_tc_split(132, q4k, 4096, 4096, 128, 128, &cps), 4); /* 32 tiles of 128 tokens */
    assert_int_equal(qn_kq_tc_split(132, q4k, 4096, 4096, 512, 128, &cps), 1); /* 128 tiles of 128 tokens */
    assert_int_equal(qn_kq_tc_split(132, q4k, 4096, 4096, 512, 256, &cps), 2); /* 64 tiles of 256 tokens */
    assert_int_equal(cps, 32);
    assert_int_equal(qn_kq_tc_split(132, q4k, 14336, 4096, 512, 256, &cps), 1); /* 224 tiles */
    /* the workspace: the wide tile's split sums at 512 tokens on q/o (2 x 512 x 4096 f32) */
    assert_true(qn_kq_tc_part_bytes(132, 4096, 4096, 512) >= (size_t)2 * 512 * 4096 * 4);
    assert_int_equal(qn_kq_tc_part_bytes(132, 40, 4096, 64), 0);   /* N % 16 */
    assert_int_equal(qn_kq_tc_part_bytes(132, 4096, 4224, 64), 0); /* K % 256 */
    assert_false(qn_kq_tc_takes(80, QN_QFORMAT_Q4_K, 4096, 4096));  /* an A100: no wgmma */
    assert_false(qn_kq_tc_takes(90, QN_QFORMAT_Q6_K, 4096, 4096));  /* unpadded Q6_K: 2-byte aligned blocks */
    assert_false(qn_kq_tc_takes(90, QN_QFORMAT_Q3_K, 4096, 4096));  /* unpadded Q3_K: the same */
    assert_false(qn_kq_tc_takes(90, QN_QFORMAT_Q4_0, 4096, 4096));
    assert_false(qn_kq_tc_takes(90, QN_QFORMAT_Q4_K, 40, 4096));
}

static void test_refusals(void **state) {
    (void)state;
    assert_int_equal(qn_lq4m_tc_part_bytes(132, 40, 4096, 64), 0);   /* N % 16 */
    assert_int_equal(qn_lq4m_tc_part_bytes(132, 4096, 4000, 64), 0); /* K % 128 */
    assert_int_equal(qn_lq4m_tc_part_bytes(132, 4096, 4096, 0), 0);
    assert_int_equal(qn_lq4m_tc_part_bytes(0, 4096, 4096, 64), 0);
    assert_false(qn_lq4m_tc_takes(80, QN_QFORMAT_LQ4M, 4096, 4096)); /* an A100: no wgmma */
    assert_false(qn_lq4m_tc_takes(90, QN_QFORMAT_LQ4, 4096, 4096));  /* not an M form */
    assert_false(qn_lq4m_tc_takes(90, QN_QFORMAT_LQ4M, 40, 4096));
}
#endif

int main(void) {
#ifdef QN_HAVE_SM90A
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_and_workspace),
        cmocka_unit_test(test_kq_split_and_workspace),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#else
    fprintf(stderr, "test_tc_plan: this build has no sm_90a code (skipped)\n");
    return 77;
#endif
}
