/* test_gpu_quant_lutq.c — GPTQ/AWQ/bnb weights on the GPU (kernels/quant/lutq_gpu.h): the lutq repack in
 * its device block format (LQ4, LQ8, LNF4, LFP4) through every path (GEMV n = 1, 3, 16 and 33 in three
 * launches; MMA n = 33, 64, 100; dequant + cuBLAS n = 5, 100; GEMV split-K through the workspace and, on
 * sm_90, a cluster), with and without act-order, against a double-precision reference.
 *
 * Reference: W = qn_lutq_dequant_ref with round = F16 (the device's rounding; for fp16 peers the peer's
 * own dequant), y[t][r] = sum_k W[r][k] x[t][k] in double over the original column order, so act-order
 * checks the gather through perm. The device weights equal W exactly (the host twin test, cpu label, and
 * the dequant check below), x is fp16, so every product is exact in f32 and only the f32 sums round:
 *   |y - ref| <= 2^-13 sum_k |W x| per output (the worst-case f32 sum bound K 2^-24 for K <= 2048;
 *   typical ~sqrt(K) 2^-24), NMSE <= 1e-10 per case (expected ~1e-14). A code off by one, a wrong nibble,
 *   scale, zero or permutation moves the NMSE of its case to 1e-6 or more. Outputs are poisoned (NaN) with a
 * guard behind them; split-K counters must be back at zero. The dequant (FAST, REF, STAGED variants) must
 * equal the host twin qn_lutq_gpu_dequant_host bit for bit (kernel column order). The gather kernel must
 * equal a host gather. Exits 77 (skipped) without a GPU. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "gpu_test.h"
#include "kernels/common/half.h"
#include "kernels/quant/lutq_gpu.h"
#include "kernels/quant/quant.h"
#include "ref/ref_lutq_synth.h"

#define GUARD 64

typedef struct env {
    qn_quant_cuda_ctx ctx;
    cublasHandle_t blas;
} env;

static int setup(void **state) {
    static env e;
    if (qn_gpu_test_setup(state) != 0) return -1;
    if (cublasCreate(&e.blas) != CUBLAS_STATUS_SUCCESS) return -1;
    if (qn_quant_cuda_ctx_init(&e.ctx, 0, e.blas) != QN_OK) return -1;
    *state = &e;
    return 0;
}

static int teardown(void **state) {
    env *e = *state;
    cublasDestroy(e->blas);
    return qn_gpu_test_teardown(state);
}

/* One weight on the device plus activations for up to nmax tokens and the reference. */
typedef struct problem {
    char name[96];
    qn_lutq_weight w;
    void *wbuf;
    qn_qformat fmt;
    int64_t N, K, nmax;
    uint8_t *blocks;          /* host blocks */
    uint16_t *x;              /* [nmax][K] fp16, original column order */
    double *yref, *yabs;      /* [nmax][N] */
    qn_lutq_gpu_weight dw;    /* device description */
    void *dx;
    float *dy;                /* [nmax][N] + GUARD */
    void *dws;
    size_t ws_bytes;
} problem;

static void problem_init(problem *p, env *e, const qn_ref_lutq_synth *s, int64_t N, int64_t K, int64_t nmax,
                         uint64_t seed) {
    memset(p, 0, sizeof *p);
    qn_rng rng;
    qn_rng_seed(&rng, seed);
    p->wbuf = qn_ref_lutq_synth_make(s, K, N, &rng, &p->w);
    assert_non_null(p->wbuf);
    char why[256];
    if (qn_lutq_gpu_format(&p->w, &p->fmt, why, sizeof why) != QN_OK) fail_msg("refused: %s", why);
    snprintf(p->name, sizeof p->name, "%s %d-bit g%d%s N=%lld K=%lld", qn_qformat_name(p->fmt), s->value_bits, s->group,
             s->act ? " act" : "", (long long)N, (long long)K);
    p->N = N, p->K = K, p->nmax = nmax;
    const size_t wb = qn_lutq_gpu_bytes(&p->w, p->fmt);
    p->blocks = malloc(wb);
    p->x = malloc(2 * (size_t)(nmax * K));
    p->yref = malloc(sizeof(double) * (size_t)(nmax * N));
    p->yabs = malloc(sizeof(double) * (size_t)(nmax * N));
    float *W = malloc(sizeof(float) * (size_t)(N * K));
    assert_true(p->blocks && p->x && p->yref && p->yabs && W);
    assert_int_equal(qn_lutq_gpu_repack(&p->w, p->fmt, p->blocks), QN_OK);
    qn_lutq_weight wf = p->w;
    wf.round = QN_LUTQ_ROUND_F16;
    qn_lutq_dequant_ref(&wf, W);
    for (int64_t i = 0; i < nmax * K; i++) p->x[i] = qn_f32_to_f16(qn_rng_normal(&rng));
    for (int64_t t = 0; t < nmax; t++)
        for (int64_t r = 0; r < N; r++) {
            double sum = 0, sa = 0;
            for (int64_t k = 0; k < K; k++) {
                const double v = (double)W[r * K + k] * (double)qn_f16_to_f32(p->x[t * K + k]);
                sum += v, sa += fabs(v);
            }
            p->yref[t * N + r] = sum, p->yabs[t * N + r] = sa;
        }
    free(W);
    p->dw = (qn_lutq_gpu_weight){p->fmt, N, K, dev_upload(p->blocks, wb),
                                 p->w.perm ? dev_upload(p->w.perm, sizeof(int32_t) * (size_t)K) : NULL};
    p->dx = dev_upload(p->x, 2 * (size_t)(nmax * K));
    CK(cudaMalloc((void **)&p->dy, sizeof(float) * (size_t)(nmax * N + GUARD)));
    /* room for every explicit path: the dequant + cuBLAS workspace, then the gathered x */
    p->ws_bytes = qn_lutq_matmul_workspace_size(&e->ctx, p->fmt, N, K, p->w.perm != NULL, nmax);
    const size_t cub = qn_quant_matmul_workspace_size(&e->ctx, p->fmt, QN_QUANT_PATH_DEQUANT_CUBLAS, N, K, nmax);
    const size_t gem = qn_quant_matmul_workspace_size(&e->ctx, p->fmt, QN_QUANT_PATH_GEMV, N, K, 16);
    const size_t mma = qn_quant_matmul_workspace_size(&e->ctx, p->fmt, QN_QUANT_PATH_MMA, N, K, 64);
    size_t most = cub > gem ? cub : gem;
    most = most > mma ? most : mma;
    most = (most > 65536 ? most : 65536) + 2 * (size_t)(nmax * K) + 1024;
    if (most > p->ws_bytes) p->ws_bytes = most;
    CK(cudaMalloc(&p->dws, p->ws_bytes));
    CK(cudaMemset(p->dws, 0, p->ws_bytes));
}

static void problem_free(problem *p) {
    free(p->wbuf), free(p->blocks), free(p->x), free(p->yref), free(p->yabs);
    cudaFree((void *)p->dw.blocks), cudaFree((void *)p->dw.perm), cudaFree(p->dx), cudaFree(p->dy), cudaFree(p->dws);
}

static const char *path_name(qn_quant_path p) {
    return p == QN_QUANT_PATH_GEMV ? "gemv" : p == QN_QUANT_PATH_MMA ? "mma"
           : p == QN_QUANT_PATH_DEQUANT_CUBLAS ? "dequant+cublas" : "auto";
}

static void run_case(env *e, problem *p, int64_t n, qn_quant_path path, int split, qn_quant_split_mode mode) {
    const size_t ny = (size_t)(n * p->N);
    float *y = malloc(sizeof(float) * (ny + GUARD));
    assert_non_null(y);
    CK(cudaMemset(p->dy, 0xFF, sizeof(float) * (size_t)(p->nmax * p->N + GUARD)));
    const qn_quant_matmul_opts o = {path, split, mode};
    const qn_status st = qn_lutq_matmul_cuda_ex(&e->ctx, &p->dw, p->dx, n, p->dy, p->dws, p->ws_bytes, g_stream, &o);
    char what[200];
    snprintf(what, sizeof what, "%s n=%lld %s split=%d%s", p->name, (long long)n, path_name(path), split,
             mode == QN_QUANT_SPLIT_CLUSTER ? " cluster" : mode == QN_QUANT_SPLIT_WORKSPACE ? " workspace" : "");
    if (st != QN_OK) fail_msg("%s: status %s", what, qn_status_str(st));
    dev_fetch(y, p->dy, sizeof(float) * ny, 0, what);
    CK(cudaMemcpy(y + ny, p->dy + ny, sizeof(float) * GUARD, cudaMemcpyDeviceToHost));
    size_t bad = 0, guard_hit = 0;
    double num = 0, den = 0, worst = 0;
    for (size_t i = 0; i < ny; i++) {
        const double d = fabs((double)y[i] - p->yref[i]), tol = ldexp(p->yabs[i], -13) + 1e-30;
        if (!(d <= tol) && bad++ < 5)
            fprintf(stderr, "  %s: y[t=%zu][r=%zu] got %.9g ref %.9g |d| %.3g tol %.3g\n", what, i / (size_t)p->N,
                    i % (size_t)p->N, y[i], p->yref[i], d, tol);
        if (d / tol > worst) worst = d / tol;
        num += d * d, den += p->yref[i] * p->yref[i];
    }
    for (size_t i = ny; i < ny + GUARD; i++) {
        uint32_t u;
        memcpy(&u, &y[i], 4);
        guard_hit += u != 0xFFFFFFFFu;
    }
    const double nmse = den > 0 ? num / den : num;
    if (bad || !(nmse <= 1e-10) || guard_hit)
        fail_msg("%s: %zu/%zu over tolerance, nmse %.3g (limit 1e-10), worst |d|/tol %.3g, %zu guard words written",
                 what, bad, ny, nmse, worst, guard_hit);
    free(y);
}

static void check_counters_zero(problem *p) {
    uint32_t *c = malloc(65536);
    assert_non_null(c);
    CK(cudaMemcpy(c, p->dws, 65536, cudaMemcpyDeviceToHost));
    size_t nz = 0;
    for (size_t i = 0; i < 65536 / 4; i++) nz += c[i] != 0;
    free(c);
    if (nz) fail_msg("%s: %zu split-K counters left non-zero", p->name, nz);
}

/* Dequant: every variant equals the host twin bit for bit (kernel column order). */
static void check_dequant(env *e, problem *p) {
    const size_t ob = 2 * (size_t)(p->N * p->K);
    uint16_t *twin = malloc(ob), *got = malloc(ob);
    assert_true(twin && got);
    qn_lutq_gpu_dequant_host(p->fmt, p->blocks, p->N, p->K, twin);
    const qn_quant_dequant_variant vs[] = {QN_QUANT_DEQUANT_FAST, QN_QUANT_DEQUANT_REF, QN_QUANT_DEQUANT_STAGED};
    const char *vname[] = {"fast", "ref", "staged"};
    for (int v = 0; v < 3; v++) {
        void *dout = dev_poisoned(ob, 256);
        assert_int_equal(qn_quant_dequant_cuda_variant(&e->ctx, p->fmt, p->dw.blocks, p->N, p->K, dout, g_stream, vs[v]),
                         QN_OK);
        dev_fetch(got, dout, ob, 256, "dequant");
        cudaFree(dout);
        size_t bad = 0;
        for (size_t i = 0; i < ob / 2; i++)
            if (got[i] != twin[i] && bad++ < 5)
                fprintf(stderr, "  dequant %s %s [%zu][%zu]: %04x, twin %04x\n", vname[v], p->name, i / (size_t)p->K,
                        i % (size_t)p->K, got[i], twin[i]);
        if (bad) fail_msg("dequant %s %s: %zu weights differ from the host twin", vname[v], p->name, bad);
    }
    free(twin), free(got);
}

/* The cases: GPTQ 2/3/4/8-bit (sym/asym are the same blocks with another z), group 32/64/128/per-channel,
 * act-order, AWQ (= LQ4 g128 without act-order), NF4 and FP4 with bnb's blocksize 64. */
static const qn_ref_lutq_synth CASES[] = {
    {4, 4, 128, true, 0, QN_LUTQ_ROUND_F16}, {4, 4, 128, false, 0, QN_LUTQ_ROUND_F16},
    {4, 3, 64, true, 0, QN_LUTQ_ROUND_F16},  {4, 2, 32, true, 0, QN_LUTQ_ROUND_F16},
    {4, 4, 0, false, 0, QN_LUTQ_ROUND_F16},  {8, 8, 32, true, 0, QN_LUTQ_ROUND_F16},
    {8, 8, 0, false, 0, QN_LUTQ_ROUND_BF16}, {4, 4, 64, false, 1, QN_LUTQ_ROUND_F16},
    {4, 4, 64, false, 2, QN_LUTQ_ROUND_F16},
};

static void test_matmul(void **state) {
    env *e = *state;
    const int quick = qn_gpu_test_quick();
    const int64_t Ns[] = {3, 118}, Ks[] = {224, 1056}; /* K: < one 256 stage; 4 stages + 32 */
    for (size_t ci = 0; ci < sizeof CASES / sizeof CASES[0]; ci++)
        for (int ni = 0; ni < 2; ni++)
            for (int ki = 0; ki < 2; ki++) {
                if (quick && ni != ki) continue;
                problem p;
                problem_init(&p, e, &CASES[ci], Ns[ni], Ks[ki], 100, 1000 + 17 * ci + 3 * (uint64_t)ni + (uint64_t)ki);
                const int64_t gemv[] = {1, 3, 16, 33}, mma[] = {33, 64, 100};
                for (int i = 0; i < 4; i++) run_case(e, &p, gemv[i], QN_QUANT_PATH_GEMV, 0, QN_QUANT_SPLIT_AUTO);
                for (int i = 0; i < 3; i++) run_case(e, &p, mma[i], QN_QUANT_PATH_MMA, 0, QN_QUANT_SPLIT_AUTO);
                run_case(e, &p, 5, QN_QUANT_PATH_DEQUANT_CUBLAS, 0, QN_QUANT_SPLIT_AUTO);
                run_case(e, &p, 100, QN_QUANT_PATH_DEQUANT_CUBLAS, 0, QN_QUANT_SPLIT_AUTO);
                run_case(e, &p, 100, QN_QUANT_PATH_AUTO, 0, QN_QUANT_SPLIT_AUTO);
                if (ki == 1) { /* 5 stages: split-K */
                    run_case(e, &p, 3, QN_QUANT_PATH_GEMV, 4, QN_QUANT_SPLIT_WORKSPACE);
                    run_case(e, &p, 33, QN_QUANT_PATH_MMA, 2, QN_QUANT_SPLIT_WORKSPACE);
                    if (e->ctx.sm >= 90) run_case(e, &p, 16, QN_QUANT_PATH_GEMV, 4, QN_QUANT_SPLIT_CLUSTER);
                }
                check_counters_zero(&p);
                if (ni == 1) check_dequant(e, &p);
                problem_free(&p);
            }
    /* a partial 33rd row tile at a real projection width */
    problem p;
    problem_init(&p, e, &CASES[0], 4100, 1024, 64, 77);
    run_case(e, &p, 1, QN_QUANT_PATH_AUTO, 0, QN_QUANT_SPLIT_AUTO);
    run_case(e, &p, 16, QN_QUANT_PATH_AUTO, 0, QN_QUANT_SPLIT_AUTO);
    run_case(e, &p, 64, QN_QUANT_PATH_AUTO, 0, QN_QUANT_SPLIT_AUTO);
    check_counters_zero(&p);
    check_dequant(e, &p);
    problem_free(&p);
}

/* The gather alone against a host gather, and the workspace check of the act-order path. */
static void test_gather(void **state) {
    env *e = *state;
    qn_rng rng;
    qn_rng_seed(&rng, 5);
    const int64_t n = 7, k = 1056;
    uint16_t *x = malloc(2 * (size_t)(n * k)), *got = malloc(2 * (size_t)(n * k));
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)k);
    assert_true(x && got && perm);
    qn_rng_fill_bytes(&rng, x, 2 * (size_t)(n * k));
    for (int64_t j = 0; j < k; j++) perm[j] = (int32_t)j;
    for (int64_t j = k - 1; j > 0; j--) {
        const int64_t i = (int64_t)(qn_rng_u64(&rng) % (uint64_t)(j + 1));
        const int32_t t = perm[j];
        perm[j] = perm[i], perm[i] = t;
    }
    void *dx = dev_upload(x, 2 * (size_t)(n * k)), *dp = dev_upload(perm, sizeof(int32_t) * (size_t)k);
    void *dxp = dev_poisoned(2 * (size_t)(n * k), 256);
    assert_int_equal(qn_lutq_gather_cuda(dx, dp, n, k, dxp, g_stream), QN_OK);
    dev_fetch(got, dxp, 2 * (size_t)(n * k), 256, "gather");
    for (int64_t t = 0; t < n; t++)
        for (int64_t j = 0; j < k; j++)
            if (got[t * k + j] != x[t * k + perm[j]]) fail_msg("gather [%lld][%lld]", (long long)t, (long long)j);
    /* a workspace one byte short of the act-order need is refused before any launch */
    const qn_lutq_gpu_weight w = {QN_QFORMAT_LQ4, 64, k, dx /* any 16-aligned device pointer */, dp};
    const size_t need = qn_lutq_matmul_workspace_size(&e->ctx, QN_QFORMAT_LQ4, 64, k, true, n);
    assert_true(need >= 65536 + 2 * (size_t)(n * k));
    assert_int_equal(qn_lutq_matmul_cuda(&e->ctx, &w, dx, n, (float *)dxp, dxp, need - 1, g_stream), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_lutq_matmul_cuda(&e->ctx, &w, dx, n, (float *)dxp, NULL, 0, g_stream), QN_ERR_INVALID_ARG);
    cudaFree(dx), cudaFree(dp), cudaFree(dxp);
    free(x), free(got), free(perm);
}

int main(void) {
    if (qn_gpu_test_skip("test_gpu_quant_lutq")) return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gather),
        cmocka_unit_test(test_matmul),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
