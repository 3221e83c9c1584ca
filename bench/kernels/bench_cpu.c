/* bench_cpu.c — CPU GEMV/GEMM microbench of qn_cpu_matmul_rows, single thread, per ISA × weight type
 * × shape (SmolLM2-135M and Llama-3-8B projections) × n_tokens (1 = decode, 32 = prefill chunk).
 * Prints µs per call, GB/s of weight bytes streamed and GFLOP/s (2·rows·k·n_tokens); the best of
 * repeated hot calls (weights stay in DRAM for the large shapes, L2 for SmolLM2's). Where the table has a
 * repacked kernel (matmul_x8: Q2_K .. Q6_K, Q4_0, Q8_0 on x86 SIMD) a second row, type "q4_Kx8" etc., times
 * qn_cpu_matmul_x8 on the same weights repacked as the CPU forward does at load.
 * The repacked GPTQ/AWQ/bnb layout (lutq.h) has rows of its own, types gptq4 (sym, g128), gptq4a (act-order:
 * activations gathered through a random perm), awq4 (zero points, g128), nf4 (16-entry table, blocks of 64)
 * and gptq8; GB/s there counts codes + scales (+ zeros).
 * Self-contained (no bench.h). Usage: bench_cpu [--isa NAME] [--type NAME] [--shape ROWSxK]
 * [--tokens N] [--min-ms MS] [--no-amx] [--lutq-path rows|gemm] (--no-amx: the AVX-512 table's lutq rows on its fp32
 * kernel, as on an AVX-512 CPU without AMX-BF16, Zen 4 say; --lutq-path: x86, that kernel's row path or panel GEMM at
 * every token count, the A/B of its QN_LUTQ_GEMM_MIN_TOKENS switch) [--float-path dot|gemm] (F16 / BF16 / F32 on the dot
 * kernels or, x86, the panel GEMM at every token count). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/common/half.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/kx8.h"
#include "kernels/quant/lutq.h"

#if defined(__x86_64__)
/* the x86 tables' fp32 lutq kernels (kernels/cpu/isa.h): the table's (the AVX-512 table puts lutq_amx_cpu.c's in front
 * where AMX-BF16 is usable), and its two paths by name, lutq_cpu.c's row kernel and lutq_gemm_cpu.c's panel GEMM */
#define QN_BENCH_LUTQ_FNS(isa)                                                                                          \
    void qn_cpu_lutq_matmul_f32_##isa(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, float *y, \
                                      int64_t ldy, int64_t row_begin, int64_t row_end);                               \
    void qn_cpu_lutq_rows_f32_##isa(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, float *y,   \
                                    int64_t ldy, int64_t row_begin, int64_t row_end);                                 \
    void qn_cpu_lutq_gemm_f32_##isa(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, float *y,   \
                                    int64_t ldy, int64_t row_begin, int64_t row_end, float *xp);                      \
    /* the GEMM at any token count, with its act-order scratch per call as lutq_cpu.c's entry gives it */              \
    static void lutq_gemm_##isa(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, float *y,      \
                                int64_t ldy, int64_t row_begin, int64_t row_end) {                                    \
        const int64_t tb = n_tokens < QN_PANEL_TOKEN_BLOCK ? n_tokens : QN_PANEL_TOKEN_BLOCK;                 \
        float *xp = w->perm ? malloc(sizeof(float) * (size_t)(tb * w->k)) : NULL;                                      \
        if (w->perm && !xp) abort();                                                                                   \
        qn_cpu_lutq_gemm_f32_##isa(w, x, ldx, n_tokens, y, ldy, row_begin, row_end, xp);                               \
        free(xp);                                                                                                      \
    }
QN_BENCH_LUTQ_FNS(avx2)
QN_BENCH_LUTQ_FNS(avx512)
#undef QN_BENCH_LUTQ_FNS
#endif

typedef struct bench_shape { const char *model, *name; int64_t rows, k; } bench_shape;

static const bench_shape SHAPES[] = {
    {"smollm2", "q/o 576x576", 576, 576},      {"smollm2", "gate/up 1536x576", 1536, 576},
    {"smollm2", "down 576x1536", 576, 1536},   {"llama3-8b", "q/o 4096x4096", 4096, 4096},
    {"llama3-8b", "gate/up 14336x4096", 14336, 4096}, {"llama3-8b", "down 4096x14336", 4096, 14336},
    {"llama3-8b", "output 128256x4096", 128256, 4096},
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t g_rng = 0x243F6A8885A308D3ull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

/* Random weights whose scale fields are sane fp16/f32 values (no denormals or NaNs on the fp path). */
static void fill_weights(qn_qformat f, uint8_t *w, size_t bytes, int64_t n_elems) {
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)rnd();
    const qn_qformat_traits *t = &QN_QFORMATS[f];
    const uint16_t h = qn_f32_to_f16(0.01f);
    size_t off_d = 0, n_h = 1;
    switch (f) {
    case QN_QFORMAT_F32:
        for (int64_t i = 0; i < n_elems; i++) ((float *)(void *)w)[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
        return;
    case QN_QFORMAT_F16: case QN_QFORMAT_BF16:
        for (int64_t i = 0; i < n_elems; i++) {
            const float v = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
            ((uint16_t *)(void *)w)[i] = f == QN_QFORMAT_F16 ? qn_f32_to_f16(v) : qn_f32_to_bf16(v);
        }
        return;
    case QN_QFORMAT_Q4_1: case QN_QFORMAT_Q5_1: case QN_QFORMAT_Q4_K: case QN_QFORMAT_Q5_K: n_h = 2; break;
    case QN_QFORMAT_Q2_K: off_d = offsetof(qn_block_q2_k, d), n_h = 2; break;
    case QN_QFORMAT_Q3_K: off_d = offsetof(qn_block_q3_k, d); break;
    case QN_QFORMAT_Q6_K: off_d = offsetof(qn_block_q6_k, d); break;
    default: break;
    }
    for (size_t b = 0; b < bytes / (size_t)t->block_bytes; b++)
        for (size_t j = 0; j < n_h; j++) memcpy(w + b * (size_t)t->block_bytes + off_d + 2 * j, &h, 2);
}

typedef struct lutq_kind { const char *name; int bits, group; bool perm, zero, table; } lutq_kind;
static const lutq_kind LUTQ_KINDS[] = {
    {"gptq4", 4, 128, false, false, false}, {"gptq4a", 4, 128, true, false, false}, {"awq4", 4, 128, false, true, false},
    {"nf4", 4, 64, false, false, true},     {"gptq8", 8, 128, false, false, false},
};

/* Random weights of kind lk at rows x k in buf (qn_lutq_bytes long); NULL when k is not a multiple of its group. */
static qn_lutq_weight *lutq_make(const lutq_kind *lk, int64_t rows, int64_t k, qn_lutq_weight *w, void **buf) {
    const int64_t G = k / lk->group;
    if (k % lk->group) return NULL;
    *buf = malloc(qn_lutq_bytes(k, rows, G, lk->bits, lk->perm, lk->zero));
    int32_t *gstart, *perm;
    uint8_t *codes;
    float *scale, *zero;
    if (!*buf || qn_lutq_init(w, *buf, k, rows, G, lk->bits, lk->perm, lk->zero, &gstart, &perm, &codes, &scale, &zero))
        return NULL;
    for (int64_t g = 0; g <= G; g++) gstart[g] = (int32_t)(g * lk->group);
    if (lk->perm) { /* a random permutation (Fisher-Yates) */
        for (int64_t j = 0; j < k; j++) perm[j] = (int32_t)j;
        for (int64_t j = k - 1; j > 0; j--) {
            const int64_t i = (int64_t)(rnd() % (uint32_t)(j + 1));
            const int32_t t = perm[j];
            perm[j] = perm[i], perm[i] = t;
        }
    }
    const size_t cb = (size_t)rows * (size_t)qn_lutq_row_bytes(k, lk->bits);
    for (size_t i = 0; i < cb; i++) codes[i] = (uint8_t)rnd();
    for (int64_t i = 0; i < rows * G; i++) {
        scale[i] = 0.001f + (float)(rnd() % 1000) * 2e-5f;
        if (zero) zero[i] = (float)(rnd() % (lk->bits == 8 ? 256u : 16u));
    }
    if (lk->table) {
        w->lut_identity = false;
        for (int i = 0; i < 16; i++) w->lut[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
    }
    return w;
}

/* Times kern.lutq_matmul for every lutq kind (or want_type) on sh at nt tokens; one table row each. */
static void bench_lutq(const qn_cpu_kernels *kern, const bench_shape *sh, const char *want_type, int64_t nt,
                       double min_s) {
    for (size_t li = 0; li < sizeof LUTQ_KINDS / sizeof LUTQ_KINDS[0]; li++) {
        const lutq_kind *lk = &LUTQ_KINDS[li];
        if (!kern->lutq_matmul || (want_type && strcmp(want_type, lk->name))) continue;
        qn_lutq_weight w;
        void *buf = NULL;
        if (!lutq_make(lk, sh->rows, sh->k, &w, &buf)) {
            free(buf);
            continue;
        }
        float *x = malloc(sizeof(float) * (size_t)(sh->k * nt)), *y = malloc(sizeof(float) * (size_t)(sh->rows * nt));
        for (int64_t i = 0; i < sh->k * nt; i++) x[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
        double best = 1e30, spent = 0.0;
        for (int reps = 0; reps < 2 || (spent < min_s && reps < 1000); reps++) {
            const double t0 = now_s();
            kern->lutq_matmul(&w, x, sh->k, nt, y, sh->rows, 0, sh->rows);
            const double dt = now_s() - t0;
            best = dt < best ? dt : best;
            spent += dt;
        }
        const double bytes = (double)sh->rows * ((double)qn_lutq_row_bytes(sh->k, lk->bits) +
                                                 4.0 * (double)w.n_groups * (lk->zero ? 2.0 : 1.0));
        printf("%-7s %-7s %-10s %-20s %5lld %11.1f %9.2f %9.2f\n", kern->isa_name, lk->name, sh->model, sh->name,
               (long long)nt, best * 1e6, bytes / best * 1e-9, 2.0 * (double)sh->rows * (double)sh->k * (double)nt / best * 1e-9);
        fflush(stdout);
        free(x), free(y), free(buf);
    }
}

int main(int argc, char **argv) {
    const char *want_isa = NULL, *want_type = NULL, *want_shape = NULL;
    int64_t want_tokens = 0;
    double min_s = 0.3;
    bool x8_only = false, no_amx = false;
    const char *lutq_path = NULL; /* x86: "rows" or "gemm", that path of the lutq kernel at any token count */
    const char *float_path = NULL; /* "dot" or "gemm": that path of F16 / BF16 / F32 at any token count */
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--isa")) want_isa = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--type")) want_type = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--shape")) want_shape = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--tokens")) want_tokens = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--min-ms")) min_s = atof(argv[++i]) * 1e-3;
        else if (!strcmp(argv[i], "--x8-only")) x8_only = true;
        else if (!strcmp(argv[i], "--no-amx")) no_amx = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--lutq-path") &&
                 (!strcmp(argv[i + 1], "rows") || !strcmp(argv[i + 1], "gemm")))
            lutq_path = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--float-path") &&
                 (!strcmp(argv[i + 1], "dot") || !strcmp(argv[i + 1], "gemm")))
            float_path = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--isa scalar|avx2|avx512|neon] [--type q4_K|gptq4|gptq4a|awq4|nf4|gptq8] [--shape 4096x4096] "
                            "[--tokens N] [--min-ms MS] [--x8-only] [--no-amx] [--lutq-path rows|gemm] [--float-path dot|gemm]\n"
                            "  --shape: a row of the table, or any ROWSxK (ROWS a multiple of 8 for the x8 rows)\n"
                            "  --x8-only: only the load-time repack's rows\n"
                            "  --no-amx: the AVX-512 lutq rows without AMX-BF16 (its fp32 kernel)\n"
                            "  --lutq-path: x86, the lutq rows on that path of the fp32 kernel at every token count (row kernel\n"
                            "    or panel GEMM; the table switches at QN_LUTQ_GEMM_MIN_TOKENS)\n"
                            "  --float-path: f16, bf16, f32 on the dot kernels or (x86) the panel GEMM at every token count (the\n"
                            "    table switches at its float_gemm_min_tokens)\n", argv[0]);
            return 2;
        }
    }
    bench_shape shapes[sizeof SHAPES / sizeof SHAPES[0] + 1];
    size_t n_shapes = sizeof SHAPES / sizeof SHAPES[0];
    memcpy(shapes, SHAPES, sizeof SHAPES);
    bool in_table = !want_shape;
    for (size_t s = 0; s < n_shapes && !in_table; s++) {
        char dims[32];
        snprintf(dims, sizeof dims, "%lldx%lld", (long long)SHAPES[s].rows, (long long)SHAPES[s].k);
        in_table = !strcmp(want_shape, dims);
    }
    if (!in_table) { /* a shape of the user's own */
        long long r = 0, k = 0;
        char end = 0;
        if (sscanf(want_shape, "%lldx%lld%c", &r, &k, &end) != 2 || r <= 0 || k <= 0) {
            fprintf(stderr, "--shape %s: want ROWSxK, e.g. 4096x1024\n", want_shape);
            return 2;
        }
        shapes[n_shapes++] = (bench_shape){"custom", want_shape, r, k};
    }
    printf("%-7s %-7s %-10s %-20s %5s %11s %9s %9s\n", "isa", "type", "model", "shape (rows x k)", "ntok", "us/call",
           "GB/s", "GFLOP/s");
    for (int isa = QN_CPU_ISA_SCALAR; isa < QN_CPU_ISA_COUNT; isa++) {
        if (want_isa && strcmp(want_isa, qn_cpu_isa_name((qn_cpu_isa)isa))) continue;
        qn_cpu_kernels kern;
        if (qn_cpu_kernels_select((qn_cpu_isa)isa, &kern) != QN_OK) continue;
#if defined(__x86_64__)
        if (no_amx && isa == QN_CPU_ISA_AVX512) kern.lutq_matmul = qn_cpu_lutq_matmul_f32_avx512;
        const bool rows = lutq_path && !strcmp(lutq_path, "rows");
        if (lutq_path && isa == QN_CPU_ISA_AVX2) kern.lutq_matmul = rows ? qn_cpu_lutq_rows_f32_avx2 : lutq_gemm_avx2;
        if (lutq_path && isa == QN_CPU_ISA_AVX512)
            kern.lutq_matmul = rows ? qn_cpu_lutq_rows_f32_avx512 : lutq_gemm_avx512;
#endif
        if (float_path && !strcmp(float_path, "dot")) memset(kern.float_gemm, 0, sizeof kern.float_gemm);
        if (float_path && !strcmp(float_path, "gemm"))
            for (int f = 0; f < QN_QFORMAT_COUNT; f++) kern.float_gemm_min_tokens[f] = 1;
        for (int f = 0; f < QN_QFORMAT_COUNT; f++) {
            if (!kern.vec_dot[f] || (want_type && strcmp(want_type, QN_QFORMATS[f].name))) continue;
            const qn_qformat af = QN_QFORMATS[f].vec_dot_type;
            for (size_t s = 0; s < n_shapes; s++) {
                const bench_shape *sh = &shapes[s];
                char dims[32];
                snprintf(dims, sizeof dims, "%lldx%lld", (long long)sh->rows, (long long)sh->k);
                if (want_shape && strcmp(want_shape, dims)) continue;
                const size_t wrb = qn_qformat_row_bytes((qn_qformat)f, sh->k), arb = qn_qformat_row_bytes(af, sh->k);
                if (!wrb) continue; /* k not a multiple of the block (K-quants at k = 576) */
                uint8_t *w = malloc(wrb * (size_t)sh->rows);
                fill_weights((qn_qformat)f, w, wrb * (size_t)sh->rows, sh->rows * sh->k);
                uint8_t *w8 = NULL; /* the CPU forward's load-time repack (kx8.h) where the table has its kernel */
                if (kern.matmul_x8[f] && qn_kx8_check_shape((qn_qformat)f, sh->rows, sh->k) == QN_OK &&
                    (w8 = malloc(wrb * (size_t)sh->rows)) &&
                    qn_kx8_repack((qn_qformat)f, w, w8, sh->rows, sh->k, 0, sh->rows / 8) != QN_OK) {
                    free(w8);
                    w8 = NULL;
                }
                const int64_t ntoks[] = {1, 32};
                for (int ti = 0; ti < 2; ti++) {
                    const int64_t nt = want_tokens ? want_tokens : ntoks[ti];
                    if (want_tokens && ti) break;
                    float *x = malloc(sizeof(float) * (size_t)sh->k), *y = malloc(sizeof(float) * (size_t)(sh->rows * nt));
                    uint8_t *xq = malloc(arb * (size_t)nt);
                    for (int64_t t = 0; t < nt; t++) {
                        for (int64_t i = 0; i < sh->k; i++) x[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
                        kern.from_float[af](x, xq + (size_t)t * arb, sh->k);
                    }
                    for (int x8 = 0; x8 < 2; x8++) { /* the plain rows, then the load-time repack where there is one */
                        if (x8 && !w8) break;
                        if (!x8 && x8_only && w8) continue;
                        double best = 1e30, spent = 0.0;
                        int reps = 0;
                        while (reps < 2 || (spent < min_s && reps < 1000)) {
                            const double t0 = now_s();
                            const qn_qformat wf = (qn_qformat)f;
                            if (x8 ? qn_cpu_matmul_x8(&kern, wf, w8, sh->k, xq, nt, y, sh->rows, 0, sh->rows)
                                   : qn_cpu_matmul_rows(&kern, wf, w, sh->k, xq, nt, y, sh->rows, 0, sh->rows)) {
                                fprintf(stderr, "matmul failed\n");
                                return 1;
                            }
                            const double dt = now_s() - t0;
                            best = dt < best ? dt : best;
                            spent += dt;
                            reps++;
                        }
                        const double gb = (double)(wrb * (size_t)sh->rows) / best * 1e-9;
                        const double gflop = 2.0 * (double)sh->rows * (double)sh->k * (double)nt / best * 1e-9;
                        char tname[16];
                        snprintf(tname, sizeof tname, "%s%s", QN_QFORMATS[f].name, x8 ? "x8" : "");
                        printf("%-7s %-7s %-10s %-20s %5lld %11.1f %9.2f %9.2f\n", kern.isa_name, tname, sh->model,
                               sh->name, (long long)nt, best * 1e6, gb, gflop);
                        fflush(stdout);
                    }
                    free(x), free(y), free(xq);
                }
                free(w), free(w8);
            }
        }
        for (size_t s = 0; s < n_shapes && !x8_only; s++) { /* the repacked GPTQ/AWQ/bnb layout */
            char dims[32];
            snprintf(dims, sizeof dims, "%lldx%lld", (long long)shapes[s].rows, (long long)shapes[s].k);
            if (want_shape && strcmp(want_shape, dims)) continue;
            const int64_t ntoks[] = {1, 32};
            for (int ti = 0; ti < 2 && !(want_tokens && ti); ti++)
                bench_lutq(&kern, &shapes[s], want_type, want_tokens ? want_tokens : ntoks[ti], min_s);
        }
    }
    return 0;
}
