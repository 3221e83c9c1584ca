/* test_gpu_quant_lq4m.c — the M forms (kernels/quant/lq4m.h: LQ4M, LNF4M, LFP4M) on the GPU: the tensor-core mma
 * kernel (n = 1..48 under AUTO, in launches of up to 16 tokens; any n on an explicit path; every K split 1..16),
 * dequant + cuBLAS (n = 49, 100, and an explicit small n) and, on Hopper, the wgmma GEMM (path TC, and AUTO from 33
 * tokens, which then takes n = 33..100 above), LQ4M with and without act-order, against a double-precision
 * reference.
 *
 * Reference: W = qn_lutq_dequant_ref with round = F16 (LQ4M: = its host twin, test_quant_lq4m.c), or for the table
 * formats fp16(fp16(map[q]) * fp16(absmax)) from the weight itself (= their host twin, test_quant_lq4m.c), y[t][r] =
 * sum_k W[r][k] x[t][k] in double over the original column order (act-order checks the gather). The device
 * weights equal W exactly (checked below: the dequant kernel against the host twin, bit for bit), x is fp16,
 * so every product is exact and only the f32 sums round (mma accumulation, the warps' and the split's tiles):
 *   |y - ref| <= 2^-13 sum_k |W x| per output, NMSE <= 1e-10 per case (expected ~1e-14); one code, nibble
 *   position, scale, zero or permutation wrong moves the NMSE of its case to 1e-6 or more.
 * Grouped calls (two or three weights on one x in one launch) check each output against its own reference.
 * Act-order runs both ways of gathering x: in each CTA (its columns into shared memory) and, where that does not
 * fit (16 tokens of 4224 columns unsplit), a gather kernel first.
 * Outputs are poisoned (NaN) with a guard behind them; tokens past n must stay untouched; split-K counters
 * must be back at zero; a repeat of a call gives the same bits (the split's tiles sum in a fixed order); a
 * CUDA-graph capture replays the direct call's bits. Bad arguments are refused before any launch.
 * Exits 77 (skipped) without a GPU. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "gpu_test.h"
#include "gpu_quant_env.h"
#include "kernels/common/half.h"
#include "kernels/quant/lq4m.h"
#include "kernels/quant/lutq_gpu.h"
#include "kernels/quant/quant.h"
#include "ref/ref_lutq_synth.h"

#define GUARD 64

typedef qn_gpu_quant_env env;

typedef struct problem {
    char name[96];
    qn_lutq_weight w;
    void *wbuf;
    int64_t N, K, nmax;
    qn_qformat fmt;        /* the weight's M form */
    uint8_t *chunks;       /* host chunks in fmt */
    uint16_t *x;           /* [nmax][K] fp16, original column order */
    double *yref, *yabs;   /* [nmax][N] */
    qn_lutq_gpu_weight dw; /* device description */
    void *dx;
    float *dy; /* [nmax][N] + GUARD */
    void *dws;
    size_t ws_bytes;
} problem;

/* p->yref, p->yabs for the activations x [nmax][K] (original column order) */
static void problem_ref(problem *p, const uint16_t *x) {
    const int64_t N = p->N, K = p->K;
    float *W = malloc(sizeof(float) * (size_t)(N * K));
    assert_non_null(W);
    qn_lutq_weight wf = p->w;
    wf.round = QN_LUTQ_ROUND_F16;
    qn_lutq_dequant_ref(&wf, W);
    if (qn_lq4m_is_lut(p->fmt)) /* the device's product (no perm with a table) */
        for (int64_t r = 0; r < N; r++) {
            int64_t g = 0;
            for (int64_t k = 0; k < K; k++) {
                while (g + 1 < wf.n_groups && wf.gstart[g + 1] <= k) g++;
                const float mq = qn_f16_to_f32(qn_f32_to_f16(qn_lutq_gpu_map(p->fmt)[qn_lutq_code(&wf, r, k)]));
                W[r * K + k] = qn_f16_to_f32(qn_f32_to_f16(mq * qn_f16_to_f32(qn_f32_to_f16(wf.scale[r * wf.n_groups + g]))));
            }
        }
    for (int64_t t = 0; t < p->nmax; t++)
        for (int64_t r = 0; r < N; r++) {
            double sum = 0, sa = 0;
            for (int64_t k = 0; k < K; k++) {
                const double v = (double)W[r * K + k] * (double)qn_f16_to_f32(x[t * K + k]);
                sum += v, sa += fabs(v);
            }
            p->yref[t * N + r] = sum, p->yabs[t * N + r] = sa;
        }
    free(W);
}

static void problem_init(problem *p, env *e, const qn_ref_lutq_synth *s, int64_t N, int64_t K, int64_t nmax,
                         uint64_t seed) {
    memset(p, 0, sizeof *p);
    qn_rng rng;
    qn_rng_seed(&rng, seed);
    p->wbuf = qn_ref_lutq_synth_make(s, K, N, &rng, &p->w);
    assert_non_null(p->wbuf);
    char why[256];
    qn_qformat bf;
    assert_int_equal(qn_lutq_gpu_format(&p->w, &bf, why, sizeof why), QN_OK);
    p->fmt = qn_lq4m_form_of(bf);
    if (!qn_lq4m_takes(&p->w, p->fmt, why, sizeof why)) fail_msg("refused: %s", why);
    snprintf(p->name, sizeof p->name, "%s %d-bit g%d%s N=%lld K=%lld", qn_qformat_name(p->fmt), s->value_bits, s->group,
             s->act ? " act" : "", (long long)N, (long long)K);
    p->N = N, p->K = K, p->nmax = nmax;
    const size_t wb = qn_lutq_gpu_bytes(&p->w, p->fmt);
    p->chunks = malloc(wb);
    p->x = malloc(2 * (size_t)(nmax * K));
    p->yref = malloc(sizeof(double) * (size_t)(nmax * N));
    p->yabs = malloc(sizeof(double) * (size_t)(nmax * N));
    float *W = malloc(sizeof(float) * (size_t)(N * K));
    assert_true(p->chunks && p->x && p->yref && p->yabs && W);
    assert_int_equal(qn_lutq_gpu_repack(&p->w, p->fmt, p->chunks), QN_OK);
    for (int64_t i = 0; i < nmax * K; i++) p->x[i] = qn_f32_to_f16(qn_rng_normal(&rng));
    free(W);
    problem_ref(p, p->x);
    p->dw = (qn_lutq_gpu_weight){p->fmt, N, K, dev_upload(p->chunks, wb),
                                 p->w.perm ? dev_upload(p->w.perm, sizeof(int32_t) * (size_t)K) : NULL};
    p->dx = dev_upload(p->x, 2 * (size_t)(nmax * K));
    CK(cudaMalloc((void **)&p->dy, sizeof(float) * (size_t)(nmax * N + GUARD)));
    /* room for every path and split: the largest partial tiles (split 16, two token groups) or fp16 weights,
     * then the gathered x */
    const bool act = p->w.perm != NULL;
    size_t most = qn_lutq_matmul_workspace_size(&e->ctx, p->fmt, N, K, act, nmax);
    const size_t cub = qn_lq4m_workspace_size(&e->ctx, p->fmt, QN_QUANT_PATH_DEQUANT_CUBLAS, N, K, act, nmax);
    const size_t parts = 65536 + (size_t)(N / 16) * 16 * 256 * 4 + 256 + 2 * (size_t)(nmax * K) + 256;
    const size_t tcb = qn_lq4m_workspace_size(&e->ctx, p->fmt, QN_QUANT_PATH_TC, N, K, act, nmax);
    most = most > cub ? most : cub;
    most = most > tcb ? most : tcb;
    p->ws_bytes = most > parts ? most : parts;
    CK(cudaMalloc(&p->dws, p->ws_bytes));
    CK(cudaMemset(p->dws, 0, p->ws_bytes));
}

static void problem_free(problem *p) {
    free(p->wbuf), free(p->chunks), free(p->x), free(p->yref), free(p->yabs);
    cudaFree((void *)p->dw.blocks), cudaFree((void *)p->dw.perm), cudaFree(p->dx), cudaFree(p->dy), cudaFree(p->dws);
}

static const char *path_name(qn_quant_path p) {
    return p == QN_QUANT_PATH_MMVQ ? "mma(decode)" : p == QN_QUANT_PATH_GEMV ? "mma(gemv)"
           : p == QN_QUANT_PATH_DEQUANT_CUBLAS ? "dequant+cublas" : p == QN_QUANT_PATH_TC ? "tc" : "auto";
}

/* y [n][p->N] (host) against p's reference: |d| <= 2^-13 sum|Wx| each, NMSE <= 1e-10; fails naming what */
static void check_y(const problem *p, const float *y, int64_t n, const char *what) {
    const size_t ny = (size_t)(n * p->N);
    size_t bad = 0;
    double num = 0, den = 0, worst = 0;
    const double rel = ldexp(1, -13);
    for (size_t i = 0; i < ny; i++) {
        const double d = fabs((double)y[i] - p->yref[i]), tol = rel * p->yabs[i] + 1e-30;
        if (!(d <= tol) && bad++ < 5)
            fprintf(stderr, "  %s: y[t=%zu][r=%zu] got %.9g ref %.9g |d| %.3g tol %.3g\n", what, i / (size_t)p->N,
                    i % (size_t)p->N, y[i], p->yref[i], d, tol);
        if (d / tol > worst) worst = d / tol;
        num += d * d, den += p->yref[i] * p->yref[i];
    }
    const double nmse = den > 0 ? num / den : num;
    if (bad || !(nmse <= 1e-10))
        fail_msg("%s: %zu/%zu over tolerance, nmse %.3g (limit 1e-10), worst |d|/tol %.3g", what, bad, ny, nmse, worst);
}

/* Runs one case, checks it and returns the outputs [n][N] (caller frees). */
static float *run_case(env *e, problem *p, int64_t n, qn_quant_path path, int split) {
    const size_t ny = (size_t)(n * p->N), nall = (size_t)(p->nmax * p->N);
    float *y = malloc(sizeof(float) * (nall + GUARD));
    assert_non_null(y);
    CK(cudaMemset(p->dy, 0xFF, sizeof(float) * (nall + GUARD)));
    const qn_quant_matmul_opts o = {path, split, QN_QUANT_SPLIT_AUTO, false, 0, 0};
    const qn_status st = qn_lutq_matmul_cuda_ex(&e->ctx, &p->dw, p->dx, n, p->dy, p->dws, p->ws_bytes, g_stream, &o);
    char what[200];
    snprintf(what, sizeof what, "%s n=%lld %s split=%d", p->name, (long long)n, path_name(path), split);
    if (st != QN_OK) fail_msg("%s: status %s", what, qn_status_str(st));
    dev_fetch(y, p->dy, sizeof(float) * (nall + GUARD), 0, what);
    check_y(p, y, n, what);
    size_t untouched = 0;
    for (size_t i = ny; i < nall + GUARD; i++) { /* later tokens' rows and the guard: still poison */
        uint32_t u;
        memcpy(&u, &y[i], 4);
        untouched += u == 0xFFFFFFFFu;
    }
    if (untouched != nall + GUARD - ny) fail_msg("%s: %zu words past n written", what, nall + GUARD - ny - untouched);
    return y;
}

/* y [n][p->N] (device) against p's reference (check_y) */
static void check_outputs(problem *p, const float *dy, int64_t n, const char *what) {
    float *y = malloc(sizeof(float) * (size_t)(n * p->N));
    assert_non_null(y);
    dev_fetch(y, dy, sizeof(float) * (size_t)(n * p->N), 0, what);
    check_y(p, y, n, what);
    free(y);
}

static void check_counters_zero(problem *p) {
    dev_check_zero(p->dws, 65536, p->name);
}

/* The dequant kernel equals the host twin bit for bit (kernel column order). */
static void check_dequant(problem *p) {
    const size_t ob = 2 * (size_t)(p->N * p->K);
    uint16_t *twin = malloc(ob), *got = malloc(ob);
    assert_true(twin && got);
    qn_lutq_gpu_dequant_host(p->fmt, p->chunks, p->N, p->K, twin);
    void *dout = dev_poisoned(ob, 256);
    assert_int_equal(qn_lq4m_dequant_cuda(p->fmt, p->dw.blocks, p->N, p->K, dout, g_stream), QN_OK);
    dev_fetch(got, dout, ob, 256, "lq4m dequant");
    cudaFree(dout);
    size_t bad = 0;
    for (size_t i = 0; i < ob / 2; i++)
        if (got[i] != twin[i] && bad++ < 5)
            fprintf(stderr, "  dequant %s [%zu][%zu]: %04x, twin %04x\n", p->name, i / (size_t)p->K, i % (size_t)p->K,
                    got[i], twin[i]);
    free(twin), free(got);
    if (bad) fail_msg("dequant %s: %zu weights differ from the host twin", p->name, bad);
}

/* 4-bit g128 act-order (GPTQ), g128 plain (AWQ / GPTQ), 3-bit per-channel, 2-bit g128 act-order; NF4 blocksize
 * 64 (LNF4M), FP4 blocksize 128 (LFP4M) */
static const qn_ref_lutq_synth CASES[] = {
    {4, 4, 128, true, 0, QN_LUTQ_ROUND_F16},
    {4, 4, 128, false, 0, QN_LUTQ_ROUND_F16},
    {4, 3, 0, false, 0, QN_LUTQ_ROUND_F16},
    {4, 2, 128, true, 0, QN_LUTQ_ROUND_BF16},
    {4, 4, 64, false, 1, QN_LUTQ_ROUND_F16},
    {4, 4, 128, false, 2, QN_LUTQ_ROUND_BF16},
};
#define CASE_NF4 4

static void test_matmul(void **state) {
    env *e = *state;
    const int64_t Ns[] = {48, 1040}, Ks[] = {384, 4224}; /* 3 strips x 3 chunks; 65 strips x 33 chunks */
    for (size_t ci = 0; ci < sizeof CASES / sizeof CASES[0]; ci++)
        for (int si = 0; si < 2; si++) {
            if (qn_gpu_test_quick() && ci > 1 && ci != CASE_NF4) continue;
            problem p;
            problem_init(&p, e, &CASES[ci], Ns[si], Ks[si], 100, 500 + 7 * ci + (uint64_t)si);
            const int64_t ns[] = {1, 2, 3, 8, 9, 16, 17, 33, 48, 49, 100};
            for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) free(run_case(e, &p, ns[i], QN_QUANT_PATH_AUTO, 0));
            free(run_case(e, &p, 5, QN_QUANT_PATH_MMVQ, 0));
            free(run_case(e, &p, 70, QN_QUANT_PATH_GEMV, 0));
            free(run_case(e, &p, 5, QN_QUANT_PATH_DEQUANT_CUBLAS, 0));
            /* act-order at K = 4224 unsplit: 16 tokens' columns overflow the CTA's gather buffer, a gather kernel
             * runs first (elsewhere each CTA gathers its columns itself) */
            free(run_case(e, &p, 16, QN_QUANT_PATH_MMVQ, 1));
            for (int s = 1; s <= 16; s *= 2) {
                float *a = run_case(e, &p, s == 1 ? 1 : s == 2 ? 7 : 16, QN_QUANT_PATH_MMVQ, s);
                float *b = run_case(e, &p, s == 1 ? 1 : s == 2 ? 7 : 16, QN_QUANT_PATH_MMVQ, s);
                if (memcmp(a, b, sizeof(float) * (size_t)(p.N * (s == 1 ? 1 : s == 2 ? 7 : 16))))
                    fail_msg("%s split=%d: a repeat gave other bits", p.name, s);
                free(a), free(b);
            }
            check_counters_zero(&p);
            check_dequant(&p);
            problem_free(&p);
        }
}

/* The tensor-core GEMM (path TC; lq4m_tc_sm90a.cu) where the device and build have it: 4-bit plain and act-order
 * (gathered first), 3-bit per-channel, NF4 (LNF4M) and FP4 (LFP4M), on partial tiles of rows (3 and 65 strips of 8
 * per CTA) and of tokens (1, 7, 129, 300 of 128 per CTA), K of 3 to 33 chunks, with and without a K split (K = 4224
 * at up to 27 tiles: split 4); a repeat gives the same bits, a graph replay the direct call's; AUTO takes it from
 * QN_LQ4M_TC_MIN_TOKENS (n = 100 in test_matmul). Elsewhere TC is refused (QN_ERR_UNSUPPORTED). */
static void test_tc(void **state) {
    env *e = *state;
    const int cases[] = {1, 0, 2, CASE_NF4, CASE_NF4 + 1};
    const int64_t Ns[] = {48, 1040, 256}, Ks[] = {384, 4224, 1024};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int si = 0; si < 3; si++) {
            if (qn_gpu_test_quick() && si == 1 && ci > 0) continue;
            problem p;
            problem_init(&p, e, &CASES[cases[ci]], Ns[si], Ks[si], 300, 900 + 7 * (uint64_t)ci + (uint64_t)si);
            const bool takes = qn_lq4m_tc_takes(e->ctx.sm, p.fmt, p.N, p.K);
            if (!takes) {
                const qn_quant_matmul_opts o = {QN_QUANT_PATH_TC, 0, QN_QUANT_SPLIT_AUTO, false, 0, 0};
                assert_int_equal(qn_lutq_matmul_cuda_ex(&e->ctx, &p.dw, p.dx, 200, p.dy, p.dws, p.ws_bytes, g_stream, &o),
                                 QN_ERR_UNSUPPORTED);
                fprintf(stderr, "  %s: no tensor-core GEMM on sm_%d with this build (refused, as it should)\n", p.name,
                        e->ctx.sm);
                problem_free(&p);
                continue;
            }
            const int64_t ns[] = {1, 7, 128, 129, 300};
            for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) free(run_case(e, &p, ns[i], QN_QUANT_PATH_TC, 0));
            float *a = run_case(e, &p, 300, QN_QUANT_PATH_TC, 0), *b = run_case(e, &p, 300, QN_QUANT_PATH_TC, 0);
            if (memcmp(a, b, sizeof(float) * (size_t)(300 * p.N))) fail_msg("%s tc: a repeat gave other bits", p.name);
            CK(cudaMemset(p.dy, 0xFF, sizeof(float) * (size_t)(300 * p.N)));
            qn_gpu_quant_graph_replay(e, &p.dw, p.dx, 300, p.dy, p.dws, p.ws_bytes, 2); /* AUTO at 300: TC */
            dev_fetch(b, p.dy, sizeof(float) * (size_t)(300 * p.N), 0, "tc graph");
            if (memcmp(a, b, sizeof(float) * (size_t)(300 * p.N))) fail_msg("%s tc: the graph replay gave other bits", p.name);
            free(a), free(b);
            problem_free(&p);
        }
}

/* A decode call (gather + mma with a split; the table kernel with a split) captured in a CUDA graph and replayed:
 * the direct call's bits. */
static void test_graph(void **state) {
    env *e = *state;
    for (int ci = 0; ci <= CASE_NF4; ci += CASE_NF4) {
        problem p;
        problem_init(&p, e, &CASES[ci], 1040, 4224, 4, 91 + (uint64_t)ci);
        const int64_t n = 3;
        const size_t ny = (size_t)(n * p.N);
        float *y0 = run_case(e, &p, n, QN_QUANT_PATH_AUTO, 0), *y1 = malloc(4 * ny);
        assert_non_null(y1);
        CK(cudaMemset(p.dy, 0xFF, 4 * ny));
        qn_gpu_quant_graph_replay(e, &p.dw, p.dx, n, p.dy, p.dws, p.ws_bytes, 2);
        CK(cudaMemcpy(y1, p.dy, 4 * ny, cudaMemcpyDeviceToHost));
        assert_memory_equal(y0, y1, 4 * ny);
        check_counters_zero(&p);
        free(y0), free(y1);
        problem_free(&p);
    }
}

/* Grouped calls (q, k, v; gate, up): three or two weights of one width on one x (a's, through a's perm with
 * act-order: the others' blocks read through it are other weights, their references follow) in one launch per 16
 * tokens; strips 4 + 2 + 3 (odd: one strip per CTA) and 4 + 2 (pairs at n > 8); n = 1, 5, 16, 20 (two launches),
 * 60 (dequant + cuBLAS matrix by matrix). Each output against its reference; the guard past each stays poison. */
static void test_group(void **state) {
    env *e = *state;
    for (int kind = 0; kind < 3; kind++) /* plain, act-order, NF4 */
        for (int nm = 2; nm <= 3; nm++) {
            const int act = kind == 1;
            problem p[3];
            const int64_t Ns[3] = {64, 32, 48};
            for (int i = 0; i < nm; i++)
                problem_init(&p[i], e, &CASES[kind == 2 ? CASE_NF4 : act ? 0 : 1], Ns[i], 1024, 60,
                             700 + 10 * (uint64_t)kind + (uint64_t)i);
            const qn_qformat fmt = p[0].fmt;
            for (int i = 1; i < nm; i++) { /* a's x and perm */
                if (act) p[i].w.perm = p[0].w.perm;
                problem_ref(&p[i], p[0].x);
            }
            int64_t N[3];
            for (int i = 0; i < nm; i++) N[i] = p[i].N;
            const int64_t ns[] = {1, 5, 16, 20, 60};
            size_t wsb = 0;
            for (int k = 0; k < 5; k++) {
                const size_t b = qn_lq4m_workspace_size_group(&e->ctx, fmt, QN_QUANT_PATH_AUTO, N, nm, 1024, act, ns[k]);
                wsb = b > wsb ? b : wsb;
            }
            /* dequant + cuBLAS at n = 60: the largest matrix in fp16; act-order: the gathered x */
            assert_true(wsb >= 65536 + (size_t)64 * 1024 * 2 + (act ? (size_t)60 * 1024 * 2 : 0));
            void *dws;
            CK(cudaMalloc(&dws, wsb));
            CK(cudaMemset(dws, 0, wsb));
            for (int k = 0; k < 5; k++) {
                qn_quant_mat mats[3];
                for (int i = 0; i < nm; i++) {
                    CK(cudaMemset(p[i].dy, 0xFF, sizeof(float) * (size_t)(p[i].nmax * p[i].N + GUARD)));
                    mats[i] = (qn_quant_mat){p[i].dw.blocks, p[i].N, p[i].dy};
                }
                const size_t need = qn_lq4m_workspace_size_group(&e->ctx, fmt, QN_QUANT_PATH_AUTO, N, nm, 1024, act, ns[k]);
                const int32_t *perm = act ? p[0].dw.perm : NULL;
                if (need)
                    assert_int_equal(qn_lq4m_matmul_group_cuda(&e->ctx, fmt, mats, nm, 1024, perm, p[0].dx, ns[k], dws, need - 1,
                                                               g_stream, NULL),
                                     QN_ERR_INVALID_ARG);
                assert_int_equal(
                    qn_lq4m_matmul_group_cuda(&e->ctx, fmt, mats, nm, 1024, perm, p[0].dx, ns[k], dws, need, g_stream, NULL),
                    QN_OK);
                for (int i = 0; i < nm; i++) {
                    char what[160];
                    snprintf(what, sizeof what, "%s group of %d%s: matrix %d (N=%lld) n=%lld", qn_qformat_name(fmt), nm,
                             act ? " act" : "", i, (long long)p[i].N, (long long)ns[k]);
                    check_outputs(&p[i], p[i].dy, ns[k], what);
                    uint32_t guard[GUARD];
                    CK(cudaMemcpy(guard, p[i].dy + ns[k] * p[i].N, sizeof guard, cudaMemcpyDeviceToHost));
                    for (int g = 0; g < GUARD; g++)
                        if (guard[g] != 0xFFFFFFFFu) fail_msg("%s: wrote past its outputs", what);
                }
            }
            dev_check_zero(dws, 65536, "group");
            cudaFree(dws);
            for (int i = 0; i < nm; i++) problem_free(&p[i]);
        }
}

/* Refusals before any launch. */
static void test_bad_args(void **state) {
    env *e = *state;
    problem p;
    problem_init(&p, e, &CASES[0], 48, 384, 4, 13);
    const qn_quant_matmul_opts split3 = {QN_QUANT_PATH_MMVQ, 3, QN_QUANT_SPLIT_AUTO, false, 0, 0};
    assert_int_equal(qn_lutq_matmul_cuda_ex(&e->ctx, &p.dw, p.dx, 1, p.dy, p.dws, p.ws_bytes, g_stream, &split3),
                     QN_ERR_INVALID_ARG);
    const size_t need = qn_lutq_matmul_workspace_size(&e->ctx, QN_QFORMAT_LQ4M, 48, 384, true, 4);
    assert_true(need >= 65536 + 2 * 4 * 384); /* act-order: the gathered x behind the counters */
    assert_int_equal(qn_lutq_matmul_cuda(&e->ctx, &p.dw, p.dx, 4, p.dy, p.dws, need - 1, g_stream), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_lutq_matmul_cuda(&e->ctx, &p.dw, (const uint8_t *)p.dx + 2, 1, p.dy, p.dws, p.ws_bytes,
                                         g_stream),
                     QN_ERR_INVALID_ARG);
    qn_lutq_gpu_weight odd = p.dw;
    odd.n = 40;
    assert_int_equal(qn_lutq_matmul_cuda(&e->ctx, &odd, p.dx, 1, p.dy, p.dws, p.ws_bytes, g_stream), QN_ERR_SHAPE);
    odd = p.dw, odd.k = 320;
    assert_int_equal(qn_lutq_matmul_cuda(&e->ctx, &odd, p.dx, 1, p.dy, p.dws, p.ws_bytes, g_stream), QN_ERR_SHAPE);
    assert_int_equal(qn_lutq_matmul_cuda(&e->ctx, &p.dw, p.dx, -1, p.dy, p.dws, p.ws_bytes, g_stream), QN_ERR_SHAPE);
    assert_int_equal(qn_lutq_matmul_workspace_size(&e->ctx, QN_QFORMAT_LQ4M, 40, 384, false, 1), 0);
    assert_int_equal(qn_lq4m_dequant_cuda(QN_QFORMAT_LQ4M, p.dw.blocks, 48, 320, p.dws, g_stream), QN_ERR_SHAPE);
    assert_int_equal(qn_lq4m_dequant_cuda(QN_QFORMAT_LQ4, p.dw.blocks, 48, 384, p.dws, g_stream), QN_ERR_UNSUPPORTED);
    assert_int_equal(qn_lq4m_matmul_cuda(&e->ctx, QN_QFORMAT_LNF4, p.dw.blocks, NULL, 48, 384, p.dx, 1, p.dy, p.dws,
                                         p.ws_bytes, g_stream, NULL),
                     QN_ERR_UNSUPPORTED);
    /* a table format takes no perm (qn_lq4m_takes refuses such weights): no workspace for it, and refused */
    assert_int_equal(qn_lutq_matmul_workspace_size(&e->ctx, QN_QFORMAT_LNF4M, 48, 384, true, 1), 0);
    assert_int_equal(qn_lq4m_matmul_cuda(&e->ctx, QN_QFORMAT_LNF4M, p.dw.blocks, p.dw.perm, 48, 384, p.dx, 1, p.dy,
                                         p.dws, p.ws_bytes, g_stream, NULL),
                     QN_ERR_UNSUPPORTED);
    /* path TC is the M forms' only: LQ4 blocks refuse it before any launch */
    qn_lutq_gpu_weight lq4 = p.dw;
    lq4.fmt = QN_QFORMAT_LQ4;
    const qn_quant_matmul_opts tc = {QN_QUANT_PATH_TC, 0, QN_QUANT_SPLIT_AUTO, false, 0, 0};
    assert_int_equal(qn_lutq_matmul_cuda_ex(&e->ctx, &lq4, p.dx, 4, p.dy, p.dws, p.ws_bytes, g_stream, &tc),
                     QN_ERR_UNSUPPORTED);
    /* not taken by the int8 decode kernels: no q8 of x to write, no grouped launch */
    assert_int_equal(qn_lutq_quantize_x_cuda(&e->ctx, &p.dw, p.dx, 1, p.dws, p.ws_bytes, g_stream), QN_ERR_UNSUPPORTED);
    const qn_quant_mat mats[1] = {{p.dw.blocks, 48, p.dy}};
    assert_int_equal(qn_quant_matmul_group_cuda(&e->ctx, QN_QFORMAT_LQ4M, mats, 1, 384, p.dx, 1, p.dws, p.ws_bytes,
                                                g_stream, NULL),
                     QN_ERR_UNSUPPORTED);
    CK(cudaStreamSynchronize(g_stream));
    problem_free(&p);
}

int main(void) {
    if (qn_gpu_test_skip("test_gpu_quant_lq4m")) return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_graph),
        cmocka_unit_test(test_group),
        cmocka_unit_test(test_tc),
    };
    return cmocka_run_group_tests(tests, qn_gpu_quant_setup, qn_gpu_quant_teardown);
}
