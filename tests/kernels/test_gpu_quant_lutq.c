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
 * equal a host gather.
 *
 * The decode path (QN_QUANT_PATH_MMVQ explicitly, and AUTO for n <= 8; lutq_mmvq.cu) has its own references,
 * over the kernel column order (x gathered through perm on the host):
 *   LQ4/LQ8: the same q8 activations (qn_mmvq_quantize_x_ref, bit-exact twin of the device quantizer) times
 *     the unrounded weights d (q - z) from the blocks, in double: y = sum_b d_w d_x sum_j (q_j - z) x8_j. The
 *     integer part is exact on the device, each block term rounds twice in f32 (d_w d_x, then times the
 *     integer) and the f32 sum of nb = K/32 terms adds at most (nb - 1) 2^-24 sum |term|:
 *     |y - ref| <= (nb + 8) 2^-24 sum_b |term_b|, NMSE <= 1e-10 (expected ~1e-14).
 *   LNF4/LFP4: the fp16-rounded weights of the twin times the fp16 x, in double (the reference above). The
 *     device uses fp16(map) (2^-11 relative) times a instead of fp16(a map) (2^-11) and sums 16 products
 *     per fp16 accumulator (HFMA2, worst case 16 2^-11 of sum |map x|, typical ~2^-11), then f32:
 *     |y - ref| <= 2^-6 sum_k |W x| (worst case ~0.009), NMSE <= 1e-5 (expected ~3e-7; one wrong table
 *     entry or nibble order gives 1e-3 or more).
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
#include "kernels/quant/gguf/kq_mmvq.h"
#include "kernels/quant/lutq_gpu.h"
#include "kernels/quant/quant.h"
#include "ref/ref_lutq_synth.h"

#define GUARD 64

typedef qn_gpu_quant_env env;

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
    double *yq8, *yq8abs;     /* [nmax][N] LQ4/LQ8 decode-path reference (q8 x), else NULL */
    qn_lutq_gpu_weight dw;    /* device description */
    void *dx;
    float *dy;                /* [nmax][N] + GUARD */
    void *dws;
    size_t ws_bytes;
} problem;

/* The LQ4/LQ8 decode-path reference: x gathered into kernel order, quantized by the host twin of the
 * device quantizer, times the block codes and scales (lutq_gpu.h layouts), blocks in double. */
static void q8_reference(problem *p) {
    const int64_t N = p->N, K = p->K, n = p->nmax, nb = K / 32;
    const bool lq8 = p->fmt == QN_QFORMAT_LQ8;
    const size_t bb = qn_lutq_gpu_block_bytes(p->fmt);
    uint16_t *xk = malloc(2 * (size_t)(n * K));
    int8_t *qs = malloc((size_t)(n * K));
    qn_mmvq_xrec *rec = malloc(sizeof(qn_mmvq_xrec) * (size_t)(n * nb));
    p->yq8 = malloc(sizeof(double) * (size_t)(n * N));
    p->yq8abs = malloc(sizeof(double) * (size_t)(n * N));
    assert_true(xk && qs && rec && p->yq8 && p->yq8abs);
    for (int64_t t = 0; t < n; t++)
        for (int64_t j = 0; j < K; j++) xk[t * K + j] = p->x[t * K + (p->w.perm ? p->w.perm[j] : j)];
    qn_mmvq_quantize_x_ref(xk, n, K, qs, rec);
    for (int64_t r = 0; r < N; r++)
        for (int64_t t = 0; t < n; t++) {
            double sum = 0, sa = 0;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = p->blocks + (size_t)(r * nb + b) * bb;
                uint16_t d, zb;
                memcpy(&d, blk, 2), memcpy(&zb, blk + 2, 2);
                const int z = (int)qn_f16_to_f32(zb) - 1024;
                long dot = 0;
                for (int i = 0; i < 32; i++) {
                    const int q = lq8 ? blk[4 + i] : i < 16 ? blk[4 + i] & 15 : blk[4 + i - 16] >> 4;
                    dot += (long)(q - z) * qs[t * K + 32 * b + i];
                }
                const double term = (double)qn_f16_to_f32(d) * (double)rec[t * nb + b].d * (double)dot;
                sum += term, sa += fabs(term);
            }
            p->yq8[t * N + r] = sum, p->yq8abs[t * N + r] = sa;
        }
    free(xk), free(qs), free(rec);
}

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
    if (p->fmt == QN_QFORMAT_LQ4 || p->fmt == QN_QFORMAT_LQ8) q8_reference(p);
    p->dw = (qn_lutq_gpu_weight){p->fmt, N, K, dev_upload(p->blocks, wb),
                                 p->w.perm ? dev_upload(p->w.perm, sizeof(int32_t) * (size_t)K) : NULL};
    p->dx = dev_upload(p->x, 2 * (size_t)(nmax * K));
    CK(cudaMalloc((void **)&p->dy, sizeof(float) * (size_t)(nmax * N + GUARD)));
    /* room for every explicit path: the dequant + cuBLAS workspace, then the gathered x */
    p->ws_bytes = qn_lutq_matmul_workspace_size(&e->ctx, p->fmt, N, K, p->w.perm != NULL, nmax);
    const size_t cub = qn_quant_matmul_workspace_size(&e->ctx, p->fmt, QN_QUANT_PATH_DEQUANT_CUBLAS, N, K, nmax);
    const size_t gem = qn_quant_matmul_workspace_size(&e->ctx, p->fmt, QN_QUANT_PATH_GEMV, N, K, 16);
    const size_t mma = qn_quant_matmul_workspace_size(&e->ctx, p->fmt, QN_QUANT_PATH_MMA, N, K, 64);
    const size_t dec = qn_lutq_matmul_workspace_size_path(&e->ctx, p->fmt, QN_QUANT_PATH_MMVQ, N, K, p->w.perm != NULL,
                                                         nmax);
    size_t most = cub > gem ? cub : gem;
    most = most > mma ? most : mma;
    most = most > dec ? most : dec;
    most = (most > 65536 ? most : 65536) + 2 * (size_t)(nmax * K) + 1024;
    if (most > p->ws_bytes) p->ws_bytes = most;
    CK(cudaMalloc(&p->dws, p->ws_bytes));
    CK(cudaMemset(p->dws, 0, p->ws_bytes));
}

static void problem_free(problem *p) {
    free(p->wbuf), free(p->blocks), free(p->x), free(p->yref), free(p->yabs), free(p->yq8), free(p->yq8abs);
    cudaFree((void *)p->dw.blocks), cudaFree((void *)p->dw.perm), cudaFree(p->dx), cudaFree(p->dy), cudaFree(p->dws);
}

static const char *path_name(qn_quant_path p) {
    return p == QN_QUANT_PATH_GEMV ? "gemv" : p == QN_QUANT_PATH_MMA ? "mma"
           : p == QN_QUANT_PATH_DEQUANT_CUBLAS ? "dequant+cublas" : p == QN_QUANT_PATH_MMVQ ? "decode" : "auto";
}

/* Runs one case, checks it (below) and returns the outputs [n][N] (caller frees). stage: the decode
 * kernel's weight loads (quant.h: -1 direct, 0 auto, 1 staged where it can). */
static float *run_case_stage(env *e, problem *p, int64_t n, qn_quant_path path, int split, qn_quant_split_mode mode,
                             int stage) {
    const size_t ny = (size_t)(n * p->N);
    float *y = malloc(sizeof(float) * (ny + GUARD));
    assert_non_null(y);
    CK(cudaMemset(p->dy, 0xFF, sizeof(float) * (size_t)(p->nmax * p->N + GUARD)));
    const qn_quant_matmul_opts o = {path, split, mode, false, stage, 0};
    const qn_status st = qn_lutq_matmul_cuda_ex(&e->ctx, &p->dw, p->dx, n, p->dy, p->dws, p->ws_bytes, g_stream, &o);
    char what[200];
    snprintf(what, sizeof what, "%s n=%lld %s split=%d%s%s", p->name, (long long)n, path_name(path), split,
             mode == QN_QUANT_SPLIT_CLUSTER ? " cluster" : mode == QN_QUANT_SPLIT_WORKSPACE ? " workspace" : "",
             stage > 0 ? " staged" : "");
    if (st != QN_OK) fail_msg("%s: status %s", what, qn_status_str(st));
    dev_fetch(y, p->dy, sizeof(float) * ny, 0, what);
    CK(cudaMemcpy(y + ny, p->dy + ny, sizeof(float) * GUARD, cudaMemcpyDeviceToHost));
    /* which reference and tolerance (header comment): tensor-core paths, or the decode path */
    const bool decode = path == QN_QUANT_PATH_MMVQ || (path == QN_QUANT_PATH_AUTO && qn_lutq_use_decode(p->fmt, e->ctx.sm, n));
    const double *ref = decode && p->yq8 ? p->yq8 : p->yref, *rabs = decode && p->yq8 ? p->yq8abs : p->yabs;
    const double rel = !decode ? ldexp(1, -13) : p->yq8 ? ldexp((double)(p->K / 32 + 8), -24) : ldexp(1, -6);
    const double nmse_max = decode && !p->yq8 ? 1e-5 : 1e-10;
    size_t bad = 0, guard_hit = 0;
    double num = 0, den = 0, worst = 0;
    for (size_t i = 0; i < ny; i++) {
        const double d = fabs((double)y[i] - ref[i]), tol = rel * rabs[i] + 1e-30;
        if (!(d <= tol) && bad++ < 5)
            fprintf(stderr, "  %s: y[t=%zu][r=%zu] got %.9g ref %.9g |d| %.3g tol %.3g\n", what, i / (size_t)p->N,
                    i % (size_t)p->N, y[i], ref[i], d, tol);
        if (d / tol > worst) worst = d / tol;
        num += d * d, den += ref[i] * ref[i];
    }
    for (size_t i = ny; i < ny + GUARD; i++) {
        uint32_t u;
        memcpy(&u, &y[i], 4);
        guard_hit += u != 0xFFFFFFFFu;
    }
    const double nmse = den > 0 ? num / den : num;
    if (bad || !(nmse <= nmse_max) || guard_hit)
        fail_msg("%s: %zu/%zu over tolerance, nmse %.3g (limit %.0e), worst |d|/tol %.3g, %zu guard words written",
                 what, bad, ny, nmse, nmse_max, worst, guard_hit);
    return y;
}

static void run_case(env *e, problem *p, int64_t n, qn_quant_path path, int split, qn_quant_split_mode mode) {
    free(run_case_stage(e, p, n, path, split, mode, 0));
}

/* The decode path with direct and staged weight loads (where kq_mmvq_stages; the default picks per format): both checked,
 * and bit-identical to each other. */
static void run_decode_case(env *e, problem *p, int64_t n, int split) {
    float *staged = run_case_stage(e, p, n, QN_QUANT_PATH_MMVQ, split, QN_QUANT_SPLIT_AUTO, 1);
    float *direct = run_case_stage(e, p, n, QN_QUANT_PATH_MMVQ, split, QN_QUANT_SPLIT_AUTO, -1);
    if (memcmp(staged, direct, sizeof(float) * (size_t)(n * p->N)))
        fail_msg("%s n=%lld split=%d: staged and direct weight loads differ", p->name, (long long)n, split);
    free(staged), free(direct);
}

static void check_counters_zero(problem *p) {
    dev_check_zero(p->dws, 65536, p->name);
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

/* The decode path: n = 1, 2, 3, 5, 8 explicitly and under AUTO, every warps-per-row split at n = 3, and
 * n = 17 in three launches (8 + 8 + 1) when the problem has the tokens. */
static void run_decode_cases(env *e, problem *p) {
    const int64_t ns[] = {1, 2, 3, 5, 8};
    for (int i = 0; i < 5; i++) {
        if (ns[i] > p->nmax) continue;
        run_decode_case(e, p, ns[i], 0);
        if (ns[i] == 1 || ns[i] == 8) run_case(e, p, ns[i], QN_QUANT_PATH_AUTO, 0, QN_QUANT_SPLIT_AUTO);
    }
    for (int w = 1; w <= 4; w *= 2) run_decode_case(e, p, 3, w);
    if (p->nmax >= 17) run_decode_case(e, p, 17, 0);
}

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
                run_decode_cases(e, &p);
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
    run_case(e, &p, 1, QN_QUANT_PATH_GEMV, 0, QN_QUANT_SPLIT_AUTO);
    run_case(e, &p, 1, QN_QUANT_PATH_AUTO, 0, QN_QUANT_SPLIT_AUTO);
    run_case(e, &p, 16, QN_QUANT_PATH_AUTO, 0, QN_QUANT_SPLIT_AUTO);
    run_case(e, &p, 64, QN_QUANT_PATH_AUTO, 0, QN_QUANT_SPLIT_AUTO);
    check_counters_zero(&p);
    check_dequant(e, &p);
    problem_free(&p);
}

/* The decode path at a real width and an odd N, every format, with and without act-order: K = 4096 + 32
 * (rows of 129 blocks: not 16-byte multiples, read directly) and K = 4096 + 128 (132 blocks: staged, the last
 * chunk of each row partial). */
static void test_decode_large(void **state) {
    env *e = *state;
    const size_t cases[] = {0, 1, 5, 7, 8}; /* LQ4 act, LQ4, LQ8 act, LNF4, LFP4 */
    const int64_t Ks[] = {4128, 4224};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int ki = 0; ki < 2; ki++) {
            if (qn_gpu_test_quick() && c > 1) break;
            problem p;
            problem_init(&p, e, &CASES[cases[c]], 1027, Ks[ki], 8, 400 + 2 * c + (uint64_t)ki);
            assert_int_equal(kq_mmvq_stages(p.fmt, Ks[ki], 1), ki == 1);
            run_decode_cases(e, &p);
            check_counters_zero(&p);
            problem_free(&p);
        }
}

/* The decode call (gather, quantize, int8 kernel; or the fp16 table kernel) captured in a CUDA graph and
 * replayed: no allocation or host synchronization inside; the replay gives the bits of the direct call. */
static void test_decode_graph(void **state) {
    env *e = *state;
    const size_t cases[] = {0, 7}; /* LQ4 act-order, LNF4 */
    for (size_t c = 0; c < 2; c++) {
        problem p;
        problem_init(&p, e, &CASES[cases[c]], 118, 1056, 5, 90 + c);
        const int64_t n = qn_lutq_decode_auto_max_tokens(p.fmt) < 5 ? qn_lutq_decode_auto_max_tokens(p.fmt) : 5;
        const size_t ny = (size_t)(n * p.N);
        float *y0 = malloc(4 * ny), *y1 = malloc(4 * ny);
        assert_true(y0 && y1);
        assert_true(qn_lutq_use_decode(p.fmt, e->ctx.sm, n));
        assert_int_equal(qn_lutq_matmul_cuda(&e->ctx, &p.dw, p.dx, n, p.dy, p.dws, p.ws_bytes, g_stream), QN_OK);
        CK(cudaStreamSynchronize(g_stream));
        CK(cudaMemcpy(y0, p.dy, 4 * ny, cudaMemcpyDeviceToHost));
        CK(cudaMemset(p.dy, 0xFF, 4 * ny));
        qn_gpu_quant_graph_replay(e, &p.dw, p.dx, n, p.dy, p.dws, p.ws_bytes, 1);
        CK(cudaMemcpy(y1, p.dy, 4 * ny, cudaMemcpyDeviceToHost));
        assert_memory_equal(y0, y1, 4 * ny);
        size_t finite = 0;
        for (size_t i = 0; i < ny; i++) finite += isfinite(y0[i]) != 0;
        assert_int_equal(finite, ny);
        free(y0), free(y1);
        problem_free(&p);
    }
}

/* Act-order weights of one input share their perm (GPTQ's q, k, v and gate, up): x is quantized through it
 * once (qn_lutq_quantize_x_cuda) and both the grouped launch and a single call with x_ready read those q8.
 * Each output must be bit-identical to that weight's own call (which quantizes itself; run_case checks
 * those against the reference); a q8 written without the perm would change every block. */
static void test_decode_shared_perm(void **state) {
    env *e = *state;
    problem a, b;
    problem_init(&a, e, &CASES[0], 96, 1056, 8, 61); /* LQ4 g128 act-order */
    problem_init(&b, e, &CASES[0], 40, 1056, 8, 62);
    qn_lutq_gpu_weight bw = b.dw;
    bw.perm = a.dw.perm; /* b's blocks read through a's perm: another weight, the same test */
    const int64_t ns[] = {1, 3, 8};
    for (int i = 0; i < 3; i++) {
        const int64_t n = ns[i];
        const size_t na = (size_t)(n * a.N), nb = (size_t)(n * b.N);
        float *ya = malloc(4 * na), *yb = malloc(4 * nb), *ga = malloc(4 * na), *gb = malloc(4 * nb);
        assert_true(ya && yb && ga && gb);
        const qn_quant_matmul_opts one = {QN_QUANT_PATH_AUTO, 1, QN_QUANT_SPLIT_AUTO, false, 0, 0};
        const qn_quant_matmul_opts ready = {QN_QUANT_PATH_AUTO, 1, QN_QUANT_SPLIT_AUTO, true, 0, 0};
        assert_int_equal(qn_lutq_matmul_cuda_ex(&e->ctx, &a.dw, a.dx, n, a.dy, a.dws, a.ws_bytes, g_stream, &one), QN_OK);
        assert_int_equal(qn_lutq_matmul_cuda_ex(&e->ctx, &bw, a.dx, n, b.dy, a.dws, a.ws_bytes, g_stream, &one), QN_OK);
        dev_fetch(ya, a.dy, 4 * na, 0, "single a");
        dev_fetch(yb, b.dy, 4 * nb, 0, "single b");
        /* grouped, on q8 written through the perm */
        CK(cudaMemset(a.dy, 0xFF, 4 * na));
        CK(cudaMemset(b.dy, 0xFF, 4 * nb));
        CK(cudaMemset((uint8_t *)a.dws + 65536, 0xFF, a.ws_bytes - 65536)); /* no stale q8 */
        assert_int_equal(qn_lutq_quantize_x_cuda(&e->ctx, &a.dw, a.dx, n, a.dws, a.ws_bytes, g_stream), QN_OK);
        const qn_quant_mat mats[2] = {{a.dw.blocks, a.N, a.dy}, {b.dw.blocks, b.N, b.dy}};
        assert_int_equal(qn_quant_matmul_group_cuda(&e->ctx, a.fmt, mats, 2, a.K, a.dx, n, a.dws, a.ws_bytes, g_stream,
                                                    &ready), QN_OK);
        dev_fetch(ga, a.dy, 4 * na, 0, "group a");
        dev_fetch(gb, b.dy, 4 * nb, 0, "group b");
        if (memcmp(ya, ga, 4 * na) || memcmp(yb, gb, 4 * nb))
            fail_msg("shared perm n=%lld: the grouped outputs differ from the single calls", (long long)n);
        /* a single call with x_ready on those q8 */
        CK(cudaMemset(b.dy, 0xFF, 4 * nb));
        assert_int_equal(qn_lutq_matmul_cuda_ex(&e->ctx, &bw, a.dx, n, b.dy, a.dws, a.ws_bytes, g_stream, &ready), QN_OK);
        dev_fetch(gb, b.dy, 4 * nb, 0, "x_ready b");
        if (memcmp(yb, gb, 4 * nb)) fail_msg("shared perm n=%lld: x_ready differs from the single call", (long long)n);
        free(ya), free(yb), free(ga), free(gb);
    }
    /* past the decode limit there are no q8 to write; an LNF4 weight takes fp16 x */
    assert_int_equal(qn_lutq_quantize_x_cuda(&e->ctx, &a.dw, a.dx, 9, a.dws, a.ws_bytes, g_stream), QN_ERR_UNSUPPORTED);
    const qn_lutq_gpu_weight wf = {QN_QFORMAT_LNF4, 64, 1056, a.dw.blocks, NULL};
    assert_int_equal(qn_lutq_quantize_x_cuda(&e->ctx, &wf, a.dx, 1, a.dws, a.ws_bytes, g_stream), QN_ERR_UNSUPPORTED);
    assert_int_equal(qn_lutq_quantize_x_cuda(&e->ctx, &a.dw, a.dx, 1, a.dws, 65536, g_stream), QN_ERR_INVALID_ARG);
    check_counters_zero(&a);
    problem_free(&a), problem_free(&b);
}

/* x_perm = x gathered through a random perm on the device, against the host; n rows of k. */
static void check_gather(int64_t n, int64_t k, uint64_t seed) {
    qn_rng rng;
    qn_rng_seed(&rng, seed);
    uint16_t *x = malloc(2 * (size_t)(n * k)), *got = malloc(2 * (size_t)(n * k));
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)k);
    assert_true(x && got && perm);
    qn_rng_fill_bytes(&rng, x, 2 * (size_t)(n * k));
    qn_rng_permutation(&rng, perm, k);
    void *dx = dev_upload(x, 2 * (size_t)(n * k)), *dp = dev_upload(perm, sizeof(int32_t) * (size_t)k);
    void *dxp = dev_poisoned(2 * (size_t)(n * k), 256);
    assert_int_equal(qn_lutq_gather_cuda(dx, dp, n, k, dxp, g_stream), QN_OK);
    dev_fetch(got, dxp, 2 * (size_t)(n * k), 256, "gather");
    for (int64_t t = 0; t < n; t++)
        for (int64_t j = 0; j < k; j++)
            if (got[t * k + j] != x[t * k + perm[j]])
                fail_msg("gather n=%lld k=%lld [%lld][%lld]", (long long)n, (long long)k, (long long)t, (long long)j);
    cudaFree(dx), cudaFree(dp), cudaFree(dxp);
    free(x), free(got), free(perm);
}

/* The gather alone against a host gather (the shared-memory kernel: 16 rows or more of k a multiple of 8 up to
 * 24576; the plain one: fewer rows, other even k, longer rows), and the workspace check of the act-order path. */
static void test_gather(void **state) {
    env *e = *state;
    check_gather(7, 1056, 5);
    check_gather(3, 14336, 6);
    check_gather(16, 1056, 9);
    check_gather(17, 14336, 10);
    check_gather(5, 1058, 7);
    check_gather(2, 24578, 8);
    const int64_t n = 7, k = 1056; /* the refusals below launch nothing: any device buffers serve */
    void *dx = dev_poisoned(2 * (size_t)(n * k), 0), *dp = dev_poisoned(sizeof(int32_t) * (size_t)k, 0);
    void *dxp = dev_poisoned(2 * (size_t)(n * k), 256);
    /* a workspace one byte short of the act-order need is refused before any launch: the tensor-core GEMV
     * gathers x into the workspace; the decode path quantizes through perm and needs no more than without */
    const qn_lutq_gpu_weight w = {QN_QFORMAT_LQ4, 64, k, dx /* any 16-aligned device pointer */, dp};
    const qn_quant_matmul_opts gemv = {QN_QUANT_PATH_GEMV, 0, QN_QUANT_SPLIT_AUTO, false, 0, 0};
    const size_t need = qn_lutq_matmul_workspace_size_path(&e->ctx, QN_QFORMAT_LQ4, QN_QUANT_PATH_GEMV, 64, k, true, n);
    assert_true(need >= 65536 + 2 * (size_t)(n * k));
    assert_int_equal(qn_lutq_matmul_cuda_ex(&e->ctx, &w, dx, n, (float *)dxp, dxp, need - 1, g_stream, &gemv),
                     QN_ERR_INVALID_ARG);
    assert_int_equal(qn_lutq_matmul_cuda(&e->ctx, &w, dx, n, (float *)dxp, NULL, 0, g_stream), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_lutq_matmul_workspace_size(&e->ctx, QN_QFORMAT_LQ4, 64, k, true, n),
                     qn_lutq_matmul_workspace_size(&e->ctx, QN_QFORMAT_LQ4, 64, k, false, n));
    /* the decode path without act-order: LQ4 needs the q8 buffer behind the counters, LNF4 nothing */
    const qn_lutq_gpu_weight w4 = {QN_QFORMAT_LQ4, 64, k, dx, NULL}, wf = {QN_QFORMAT_LNF4, 64, k, dx, NULL};
    const size_t need4 = qn_lutq_matmul_workspace_size(&e->ctx, QN_QFORMAT_LQ4, 64, k, false, n);
    assert_true(need4 >= 65536 + qn_mmvq_x_bytes(n, k));
    assert_int_equal(qn_lutq_matmul_cuda(&e->ctx, &w4, dx, n, (float *)dxp, dxp, need4 - 1, g_stream), QN_ERR_INVALID_ARG);
    assert_int_equal(qn_lutq_matmul_workspace_size_path(&e->ctx, QN_QFORMAT_LNF4, QN_QUANT_PATH_MMVQ, 64, k, false, n), 0);
    const qn_quant_matmul_opts bad_split = {QN_QUANT_PATH_MMVQ, 8, QN_QUANT_SPLIT_AUTO, false, 0, 0};
    assert_int_equal(qn_lutq_matmul_cuda_ex(&e->ctx, &wf, dx, n, (float *)dxp, NULL, 0, g_stream, &bad_split),
                     QN_ERR_INVALID_ARG);
    assert_int_equal(qn_lutq_matmul_cuda(&e->ctx, &wf, (const uint8_t *)dx + 2, n, (float *)dxp, NULL, 0, g_stream),
                     QN_ERR_INVALID_ARG); /* x not 16-byte aligned */
    cudaFree(dx), cudaFree(dp), cudaFree(dxp);
}

int main(void) {
    if (qn_gpu_test_skip("test_gpu_quant_lutq")) return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gather),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_decode_large),
        cmocka_unit_test(test_decode_graph),
        cmocka_unit_test(test_decode_shared_perm),
    };
    return cmocka_run_group_tests(tests, qn_gpu_quant_setup, qn_gpu_quant_teardown);
}
