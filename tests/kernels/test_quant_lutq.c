/* test_quant_lutq.c — the CPU matmul over repacked GPTQ/AWQ/bnb weights (lutq_cpu.c), every compiled ISA,
 * against a double-precision reference (qn_lutq_matmul_ref) on seeded random activations. Weights: the
 * peer-packed fixtures (GPTQ 2/3/4/8-bit incl. act-order, AWQ GEMM/GEMV, NF4/FP4 double quant) and synthetic
 * layouts with awkward geometry (K = 2598 spanning 3 chunks, odd group sizes so segments start on odd columns,
 * a random permutation, 4- and 8-bit codes, identity and 16/256-entry tables, with and without zero points).
 * Tolerance: |y − ref| ≤ 2e-6·Σ_k scale·(|lut[c]| + |zero|)·|x[k]| + 1e-12 — fp32 sums over ≤ 1024-column chunks
 * with per-group partial sums (measured max printed at the end, ~1e-7). */
/* QN_TEST_LABELS: cpu neon (scripts/test_neon.sh runs the neon label under qemu-aarch64) */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/quant/lutq.h"
#include "ref/ref_lutq_fixtures.h"

/* every row-group kernel of each ISA, tails of 4 and 8 (x86: 12 and 17 on lutq_gemm_cpu.c's panel GEMM) */
static const int64_t TOKENS[] = {1, 2, 3, 4, 5, 8, 12, 17};

/* Σ_k scale·(|lut[c]| + |zero|)·|x[t][k]|: the magnitude the kernel's fp32 sums actually carry (with a zero
 * point the kernel forms Σ lut·x and zero·Σx separately, so cancellation there is real) */
static void abs_ref(const qn_lutq_weight *w, const float *x, int64_t T, double *out) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = 0; r < w->n; r++) {
            double a = 0.0;
            for (int64_t g = 0; g < w->n_groups; g++)
                for (int64_t j = w->gstart[g]; j < w->gstart[g + 1]; j++) {
                    const double wv = (double)w->scale[r * w->n_groups + g] *
                                      (fabs((double)w->lut[qn_lutq_code(w, r, j)]) + (w->zero ? fabs((double)w->zero[r * w->n_groups + g]) : 0.0));
                    a += fabs(wv * x[t * w->k + (w->perm ? w->perm[j] : j)]);
                }
            out[t * w->n + r] = a;
        }
}

static double max_rel_seen;

static void check_isas_tokens(const char *what, const qn_lutq_weight *w, const int64_t *tokens, size_t n_tokens) {
    qn_rng rng;
    qn_rng_seed(&rng, 0x5eed + (uint64_t)w->k * 31 + (uint64_t)w->n);
    for (size_t ti = 0; ti < n_tokens; ti++) {
        const int64_t T = tokens[ti];
        float *x = malloc(sizeof(float) * (size_t)(T * w->k)), *y = malloc(sizeof(float) * (size_t)(T * w->n));
        double *ref = malloc(sizeof(double) * (size_t)(T * w->n)), *aref = malloc(sizeof(double) * (size_t)(T * w->n));
        qn_rng_fill_normal(&rng, x, (size_t)(T * w->k), 1.0f);
        qn_lutq_matmul_ref(w, x, w->k, T, ref, w->n);
        abs_ref(w, x, T, aref);
        for (int isa = QN_CPU_ISA_SCALAR; isa < QN_CPU_ISA_COUNT; isa++) {
            qn_cpu_kernels kern;
            if (qn_cpu_kernels_select((qn_cpu_isa)isa, &kern) != QN_OK) continue;
            assert_non_null(kern.lutq_matmul);
            for (int64_t i = 0; i < T * w->n; i++) y[i] = NAN;
            /* two row ranges, as two threads would split them */
            const int64_t mid = w->n / 3;
            kern.lutq_matmul(w, x, w->k, T, y, w->n, 0, mid);
            kern.lutq_matmul(w, x, w->k, T, y, w->n, mid, w->n);
            int bad = 0;
            for (int64_t i = 0; i < T * w->n; i++) {
                const double err = fabs((double)y[i] - ref[i]), tol = 2e-6 * aref[i] + 1e-12;
                if (aref[i] > 0 && err / aref[i] > max_rel_seen) max_rel_seen = err / aref[i];
                if (!(err <= tol)) {
                    if (bad < 5)
                        fprintf(stderr, "%s isa %s T=%lld: y[%lld][%lld] = %.9g, ref %.9g (tol %.3g)\n", what,
                                kern.isa_name, (long long)T, (long long)(i / w->n), (long long)(i % w->n), y[i],
                                ref[i], tol);
                    bad++;
                }
            }
            if (bad) fail_msg("%s: %d mismatches on %s", what, bad, kern.isa_name);
        }
        free(x), free(y), free(ref), free(aref);
    }
}

static void check_all_isas(const char *what, const qn_lutq_weight *w) {
    check_isas_tokens(what, w, TOKENS, sizeof TOKENS / sizeof TOKENS[0]);
}

static void check_fixture(void *user, const char *name, const qn_lutq_weight *w) {
    (void)user;
    check_all_isas(name, w);
}

static void test_peer_weights(void **state) {
    (void)state;
    qn_ref_lutq_fixtures_each(check_fixture, NULL);
}

/* Random weights (codes, scales in [0.001, 0.02], zero points, a random perm) over groups of sizes[0..G); the caller
 * frees the returned buffer. */
static void *random_weight(qn_rng *rng, int64_t K, int64_t N, int64_t G, const int64_t *sizes, int bits, bool has_zero,
                           bool has_perm, qn_lutq_weight *w) {
    void *buf = malloc(qn_lutq_bytes(K, N, G, bits, has_perm, has_zero));
    int32_t *gstart, *perm;
    uint8_t *codes;
    float *scale, *zero;
    assert_int_equal(qn_lutq_init(w, buf, K, N, G, bits, has_perm, has_zero, &gstart, &perm, &codes, &scale, &zero),
                     QN_OK);
    gstart[0] = 0;
    for (int64_t g = 0; g < G; g++) gstart[g + 1] = gstart[g] + (int32_t)sizes[g];
    assert_int_equal(gstart[G], K);
    if (has_perm) qn_rng_permutation(rng, perm, K);
    for (int64_t r = 0; r < N; r++)
        for (int64_t j = 0; j < K; j++)
            qn_lutq_set_code(codes, K, bits, r, j, (uint32_t)(qn_rng_u64(rng) & (bits == 8 ? 255 : 15)));
    for (int64_t i = 0; i < N * G; i++) {
        scale[i] = qn_rng_uniform(rng, 0.001f, 0.02f);
        if (has_zero) zero[i] = (float)(qn_rng_u64(rng) % (bits == 8 ? 256 : 16));
    }
    return buf;
}

static void test_synthetic_geometry(void **state) {
    (void)state;
    qn_rng rng;
    qn_rng_seed(&rng, 77);
    const int64_t K = 2598, N = 37;
    for (int variant = 0; variant < 16; variant++) {
        const int bits = variant & 1 ? 8 : 4;
        const bool has_zero = variant & 2, has_perm = variant & 4, tiny = variant & 8;
        /* odd group sizes 1..97 (segments start on odd columns, groups cross the chunks); tiny: 5, then 1199 of
         * 1, then 33..97, so a chunk would hold more segments than it may (the kernel cuts it short at a multiple
         * of 32 columns, here 1024 of gstart[1024] = 1028) and long groups follow the cut */
        int64_t G = 0, sizes[4096];
        for (int64_t left = K; left > 0; G++) {
            int64_t s = 1 + (int64_t)(qn_rng_u64(&rng) % 97);
            if (tiny) s = G == 0 ? 5 : G < 1200 ? 1 : 33 + (int64_t)(qn_rng_u64(&rng) % 65);
            if (G == 3) s = 1;
            sizes[G] = s < left ? s : left;
            left -= sizes[G];
        }
        qn_lutq_weight w;
        void *buf = random_weight(&rng, K, N, G, sizes, bits, has_zero, has_perm, &w);
        if (variant & 2 ? false : true) { /* no zero point: a general table (NF4-like, or 256 random values) */
            w.lut_identity = false;
            for (int i = 0; i < 256; i++) w.lut[i] = qn_rng_uniform(&rng, -1.0f, 1.0f);
        }
        char what[64];
        snprintf(what, sizeof what, "synthetic %d-bit%s%s%s", bits, has_zero ? " zero" : " table", has_perm ? " perm" : "",
                 tiny ? " tiny groups" : "");
        check_all_isas(what, &w);
        free(buf);
    }
    printf("max |y - ref| / sum s(|lut|+|z|)|x| seen: %.3g\n", max_rel_seen);
}

/* Shapes the AMX-BF16 tiles take (lutq_amx_cpu.c, on CPUs that have them; elsewhere the fp32 kernels again):
 * groups on multiples of 32 columns, one across a 512-column chunk edge, 16-row blocks plus 5 rows, whole 16-token
 * tiles plus leftovers, 1-8 tiles per pass and a second pass; identity tables (GPTQ/AWQ) and general ones (bnb),
 * with and without zero points and act-order, 4- and 8-bit. On x86 the same token counts (and 200, two of its
 * token blocks) run lutq_gemm_cpu.c's panel GEMM (16 tokens and more): rows cut short of its panels, chunk tails. */
static void test_tile_geometry(void **state) {
    (void)state;
    static const int64_t T_TILES[] = {16, 17, 33, 80, 144}, T_LONG[] = {200};
    static const int64_t SIZES[] = {64, 32, 96, 128, 352, 96, 32, 160, 128, 448}; /* 352: columns 352..704 */
    const int64_t K = 1536, N = 37, G = (int64_t)(sizeof SIZES / sizeof SIZES[0]);
    qn_rng rng;
    qn_rng_seed(&rng, 78);
    for (int variant = 0; variant < 16; variant++) {
        const int bits = variant & 1 ? 8 : 4;
        const bool has_zero = variant & 2, has_perm = variant & 4, table = variant & 8;
        qn_lutq_weight w;
        void *buf = random_weight(&rng, K, N, G, SIZES, bits, has_zero, has_perm, &w);
        if (table) { /* a general table: NF4-like for 4-bit codes (the tiles take it), 256 values for 8-bit (they do not) */
            w.lut_identity = false;
            for (int i = 0; i < 256; i++) w.lut[i] = qn_rng_uniform(&rng, -1.0f, 1.0f);
        }
        char what[64];
        snprintf(what, sizeof what, "tiles %d-bit%s%s%s", bits, has_zero ? " zero" : "", has_perm ? " perm" : "",
                 table ? " table" : "");
        check_isas_tokens(what, &w, T_TILES, sizeof T_TILES / sizeof T_TILES[0]);
        if (variant == 2 || variant == 13) /* past lutq_gemm_cpu.c's 192-token block: 4-bit zero, 8-bit perm table */
            check_isas_tokens(what, &w, T_LONG, 1);
        free(buf);
    }
    printf("max |y - ref| / sum s(|lut|+|z|)|x| seen: %.3g\n", max_rel_seen);
}

/* Every token strip of lutq_gemm_cpu.c's micro-kernel (x86: 1..6 tokens on AVX2, 1..12 on AVX-512, after whole
 * strips) and the switch from the row kernel (9 tokens): 8..33 tokens on a small weight with odd groups, a perm, zero
 * points and a general table, 4- and 8-bit (K = 300: a 44-column chunk tail); then 1600 rows, past its row
 * super-blocks. */
static void test_gemm_strips(void **state) {
    (void)state;
    static const int64_t SIZES[] = {7, 64, 33, 100, 96};
    const int64_t K = 300, N = 37, G = (int64_t)(sizeof SIZES / sizeof SIZES[0]);
    int64_t tokens[26];
    for (int i = 0; i < 26; i++) tokens[i] = 8 + i;
    qn_rng rng;
    qn_rng_seed(&rng, 79);
    for (int bits = 4; bits <= 8; bits += 4) {
        qn_lutq_weight w;
        void *buf = random_weight(&rng, K, N, G, SIZES, bits, true, true, &w);
        w.lut_identity = false;
        for (int i = 0; i < 256; i++) w.lut[i] = qn_rng_uniform(&rng, -1.0f, 1.0f);
        check_isas_tokens(bits == 4 ? "strips 4-bit" : "strips 8-bit", &w, tokens, 26);
        free(buf);
    }
    /* 1600 rows: the second call's 1067 rows take more than one of its row super-blocks (256 rows) */
    static const int64_t T_TALL[] = {9, 23};
    for (int perm = 0; perm < 2; perm++) {
        qn_lutq_weight w;
        void *buf = random_weight(&rng, K, 1600, G, SIZES, 4, perm, perm, &w);
        check_isas_tokens(perm ? "tall 4-bit zero perm" : "tall 4-bit", &w, T_TALL, 2);
        free(buf);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peer_weights),
        cmocka_unit_test(test_synthetic_geometry),
        cmocka_unit_test(test_tile_geometry),
        cmocka_unit_test(test_gemm_strips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
