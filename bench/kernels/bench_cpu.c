/* bench_cpu.c — CPU GEMV/GEMM microbench of qn_cpu_matmul_rows, single thread, per ISA × weight type
 * × shape (SmolLM2-135M and Llama-3-8B projections) × n_tokens (1 = decode, 32 = prefill chunk).
 * Prints µs per call, GB/s of weight bytes streamed and GFLOP/s (2·rows·k·n_tokens); the best of
 * repeated hot calls (weights stay in DRAM for the large shapes, L2 for SmolLM2's). Where the table has a
 * repacked kernel (matmul_x8: Q2_K .. Q6_K, Q4_0, Q8_0 on x86 SIMD) a second row, type "q4_Kx8" etc., times
 * qn_cpu_matmul_x8 on the same weights repacked as the CPU forward does at load.
 * Self-contained (no bench.h). Usage: bench_cpu [--isa NAME] [--type NAME] [--shape ROWSxK]
 * [--tokens N] [--min-ms MS]. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/common/half.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/kx8.h"

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

int main(int argc, char **argv) {
    const char *want_isa = NULL, *want_type = NULL, *want_shape = NULL;
    int64_t want_tokens = 0;
    double min_s = 0.3;
    bool x8_only = false;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--isa")) want_isa = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--type")) want_type = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--shape")) want_shape = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--tokens")) want_tokens = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--min-ms")) min_s = atof(argv[++i]) * 1e-3;
        else if (!strcmp(argv[i], "--x8-only")) x8_only = true;
        else {
            fprintf(stderr, "usage: %s [--isa scalar|avx2|avx512|neon] [--type q4_K] [--shape 4096x4096] "
                            "[--tokens N] [--min-ms MS] [--x8-only]\n"
                            "  --shape: a row of the table, or any ROWSxK (ROWS a multiple of 8 for the x8 rows)\n"
                            "  --x8-only: only the load-time repack's rows\n", argv[0]);
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
    }
    return 0;
}
