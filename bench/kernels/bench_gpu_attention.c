/* bench_gpu_attention.c — the paged attention of one layer at Llama-3-8B shape (32 q heads, 8 kv heads,
 * head_dim 128, fp16 KV in blocks of 16) for the step shapes the engine runs, through each kernel path
 * that can serve the shape (attention_cuda.h): decode-only steps (tensor-core vs decode kernel), serving's
 * mixed steps (a prefill chunk beside 256 decodes: tensor-core alone vs the split), and prefill.
 *   bench_gpu_attention [--json FILE] [--samples N] [--case SUBSTRING]   (only the cases whose name contains it)
 * Per case: median µs per launch (CUDA-graph replays, bench.h), the KV bytes the step must read once
 * (every sequence's context, K and V) per second, and the useful attention FLOP/s (causal: a token at
 * position p against p + 1 keys, 4 * head_dim FLOP per key and head). KV contents are a constant
 * fp16 pattern and q is random: the timing does not depend on the values. Block tables are shuffled
 * so that a sequence's blocks are scattered as in a long-running server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "bench.h"
#include "kernels/attention/attention_cuda.h"

#define NH 32
#define NKV 8
#define HD 128
#define BS 16

typedef struct bcase {
    const char *name;
    int n_dec;             /* decode sequences: one token each at a context in [dec_lo, dec_hi] */
    int dec_lo, dec_hi;
    int n_pre, pre_start, pre_len; /* prefill sequences: pre_len tokens each from position pre_start */
} bcase;

typedef struct bprob {
    int n_tokens, n_seqs, n_tiles, n_single, max_blocks, max_ctx;
    double kv_bytes, flops;
    void *q, *k, *v, *pos, *seq, *bt, *tiles, *out, *ws;
    size_t ws_bytes;
    qn_attn_cuda_args a;
    int n_sm;
} bprob;

static unsigned long long g_rng = 0x9e3779b97f4a7c15ull;
static unsigned rnd(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (unsigned)(g_rng >> 11);
}

static int dev_put(void **d, const void *h, size_t n) {
    if (cudaMalloc(d, n ? n : 16) != cudaSuccess) return -1;
    return h && n && cudaMemcpy(*d, h, n, cudaMemcpyHostToDevice) != cudaSuccess ? -1 : 0;
}

static int build(const bcase *c, int n_sm, bprob *p) {
    memset(p, 0, sizeof *p);
    p->n_sm = n_sm;
    p->n_seqs = c->n_dec + c->n_pre;
    int *ctx = malloc(sizeof(int) * (size_t)p->n_seqs); /* keys after the step */
    int n_blocks = 0;
    for (int s = 0; s < p->n_seqs; s++) {
        ctx[s] = s < c->n_dec ? c->dec_lo + (int)(rnd() % (unsigned)(c->dec_hi - c->dec_lo + 1)) : c->pre_start + c->pre_len;
        const int nb = (ctx[s] + BS - 1) / BS;
        n_blocks += nb;
        if (nb > p->max_blocks) p->max_blocks = nb;
        if (ctx[s] > p->max_ctx) p->max_ctx = ctx[s];
        p->kv_bytes += (double)ctx[s] * NKV * HD * 2 * 2;
    }
    p->n_tokens = c->n_dec + c->n_pre * c->pre_len;
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)n_blocks), *bt = calloc((size_t)p->n_seqs * p->max_blocks, 4);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        const int j = (int)(rnd() % (unsigned)(i + 1));
        const int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int used = 0;
    for (int s = 0; s < p->n_seqs; s++)
        for (int b = 0; b < (ctx[s] + BS - 1) / BS; b++) bt[s * p->max_blocks + b] = perm[used++];
    /* tokens: the prefill chunks first (as the scheduler puts a running prefill), then the decodes */
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)p->n_tokens), *pos = malloc(sizeof(int32_t) * (size_t)p->n_tokens);
    int t = 0;
    for (int s = c->n_dec; s < p->n_seqs; s++)
        for (int i = 0; i < c->pre_len; i++) seq[t] = s, pos[t] = c->pre_start + i, t++;
    for (int s = 0; s < c->n_dec; s++) seq[t] = s, pos[t] = ctx[s] - 1, t++;
    for (int i = 0; i < p->n_tokens; i++) p->flops += (double)(pos[i] + 1) * NH * HD * 4;
    qn_attn_tile *tiles = malloc(sizeof(qn_attn_tile) * (size_t)p->n_tokens);
    p->n_tiles = qn_attn_make_tiles(seq, pos, p->n_tokens, tiles);
    p->n_single = qn_attn_singles_first(tiles, p->n_tiles);
    const size_t qn = (size_t)p->n_tokens * NH * HD;
    float *q = malloc(sizeof(float) * qn);
    for (size_t i = 0; i < qn; i++) q[i] = ((float)(rnd() % 2001) - 1000.0f) / 1000.0f;
    const size_t kv_n = (size_t)n_blocks * BS * NKV * HD * 2;
    int rc = dev_put(&p->q, q, sizeof(float) * qn) || dev_put(&p->k, NULL, kv_n) || dev_put(&p->v, NULL, kv_n) ||
             dev_put(&p->pos, pos, 4 * (size_t)p->n_tokens) || dev_put(&p->seq, seq, 4 * (size_t)p->n_tokens) ||
             dev_put(&p->bt, bt, 4 * (size_t)p->n_seqs * p->max_blocks) ||
             dev_put(&p->tiles, tiles, sizeof(qn_attn_tile) * (size_t)p->n_tiles) || dev_put(&p->out, NULL, 2 * qn);
    if (!rc) rc = cudaMemset(p->k, 0x2e, kv_n) != cudaSuccess || cudaMemset(p->v, 0x31, kv_n) != cudaSuccess;
    free(ctx), free(perm), free(bt), free(seq), free(pos), free(tiles), free(q);
    return rc;
}

static void drop(bprob *p) {
    void *d[] = {p->q, p->k, p->v, p->pos, p->seq, p->bt, p->tiles, p->out, p->ws};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) cudaFree(d[i]);
}

static int op(void *ctx, int i, void *stream) {
    (void)i;
    bprob *p = ctx;
    return qn_attn_paged_cuda(&p->a, p->n_sm, stream) == QN_OK ? 0 : -1;
}

static const char *path_name(qn_attn_path pa) {
    return pa == QN_ATTN_PATH_DECODE ? "decode" : pa == QN_ATTN_PATH_TENSOR_CORE ? "tensor-core"
                                               : pa == QN_ATTN_PATH_SPLIT    ? "split" : "auto";
}

static int run(const bcase *c, bprob *p, qn_attn_path path, int samples, const qn_bench_env *e, FILE *json) {
    const int n_splits = qn_attn_cuda_splits(p->n_tiles, NKV, p->max_ctx, p->n_sm);
    const size_t ws = qn_attn_cuda_workspace_size(p->n_tokens, NH, HD, n_splits);
    if (ws > p->ws_bytes) {
        cudaFree(p->ws);
        p->ws = NULL;
        if (cudaMalloc(&p->ws, ws) != cudaSuccess) return -1;
        p->ws_bytes = ws;
    }
    qn_attn_cuda_args *a = &p->a;
    memset(a, 0, sizeof *a);
    a->q = p->q, a->k_cache = p->k, a->v_cache = p->v, a->kv_dtype = QN_KV_F16, a->positions = p->pos;
    a->seq_idx = p->seq, a->block_tables = p->bt, a->max_blocks_per_seq = p->max_blocks, a->tiles = p->tiles;
    a->n_tiles = p->n_tiles, a->n_single = p->n_single, a->n_tokens = p->n_tokens, a->n_heads = NH;
    a->n_kv_heads = NKV, a->head_dim = HD, a->block_size = BS, a->max_ctx = p->max_ctx, a->path = path;
    a->pdl = e->sm >= 90, a->scale = 0.0883883f, a->out = p->out, a->workspace = p->ws, a->ws_bytes = p->ws_bytes;
    cudaStream_t s;
    if (cudaStreamCreate(&s) != cudaSuccess) return -1;
    if (qn_attn_paged_cuda(a, p->n_sm, s) != QN_OK || cudaStreamSynchronize(s) != cudaSuccess) {
        fprintf(stderr, "bench_gpu_attention: %s / %s refused or failed\n", c->name, path_name(path));
        cudaStreamDestroy(s);
        return 0; /* a path that does not take the shape: skipped */
    }
    qn_bench_stats st;
    const int rc = qn_bench_time_ops(op, p, s, 8, 3, samples, &st);
    cudaStreamDestroy(s);
    if (rc) return -1;
    const double us = st.median_us, gbs = p->kv_bytes / us / 1e3, tfs = p->flops / us / 1e6;
    printf("| %s | %s | %d | %d (%d single) | %d | %.1f | %.0f | %.1f |\n", c->name, path_name(path), p->n_tokens,
           p->n_tiles, p->n_single, n_splits, us, gbs, tfs);
    if (json) {
        fprintf(json, "{");
        qn_bench_json_env(json, e);
        fprintf(json, ",\"bench\":\"attention\",\"case\":\"%s\",\"path\":\"%s\",\"tokens\":%d,\"tiles\":%d,\"single\":%d,"
                      "\"splits\":%d,\"us\":%.3f,\"min_us\":%.3f,\"kv_gbs\":%.1f,\"tflops\":%.2f}\n",
                c->name, path_name(path), p->n_tokens, p->n_tiles, p->n_single, n_splits, us, st.min_us, gbs, tfs);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *json_path = NULL, *only = NULL;
    int samples = 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--samples") && i + 1 < argc) samples = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--case") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: bench_gpu_attention [--json FILE] [--samples N] [--case SUBSTRING]\n");
            return 2;
        }
    }
    qn_bench_env e;
    if (qn_bench_env_init(&e, 0) != 0) {
        fprintf(stderr, "bench_gpu_attention: no CUDA device\n");
        return 1;
    }
    FILE *json = json_path ? fopen(json_path, "w") : NULL;
    printf("%s (sm_%d, %d SMs), commit %s, copy %.0f GB/s; Llama-3-8B attention, one layer\n\n", e.gpu, e.sm, e.n_sm,
           e.commit, e.copy_gbs);
    printf("| case | path | tokens | tiles | splits | µs | KV GB/s | TFLOP/s |\n|---|---|---|---|---|---|---|---|\n");
    static const bcase cases[] = {
        {"decode 16 @512-640", 16, 512, 640, 0, 0, 0},
        {"decode 64 @512-640", 64, 512, 640, 0, 0, 0},
        {"decode 256 @512-640", 256, 512, 640, 0, 0, 0},
        {"decode 256 @1-128", 256, 1, 128, 0, 0, 0},
        {"mix 256 dec + 458 prefill", 256, 512, 640, 1, 0, 458},
        {"mix 256 dec + 1792 prefill", 256, 512, 640, 1, 0, 1792},
        {"mix 64 dec + 448@512 chunk", 64, 512, 640, 1, 512, 448},
        {"prefill 1 x 512", 0, 0, 0, 1, 0, 512},
        {"prefill 4 x 512", 0, 0, 0, 4, 0, 512},
        {"prefill 1 x 2048", 0, 0, 0, 1, 0, 2048},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bcase *c = &cases[i];
        if (only && !strstr(c->name, only)) continue;
        bprob p;
        if (build(c, e.n_sm, &p) != 0) {
            fprintf(stderr, "bench_gpu_attention: %s: setup failed\n", c->name);
            failed++;
            drop(&p);
            continue;
        }
        const int all_single = p.n_single == p.n_tiles;
        failed += run(c, &p, QN_ATTN_PATH_AUTO, samples, &e, json) != 0;
        failed += run(c, &p, QN_ATTN_PATH_TENSOR_CORE, samples, &e, json) != 0;
        if (all_single) failed += run(c, &p, QN_ATTN_PATH_DECODE, samples, &e, json) != 0;
        else if (p.n_single > 0) failed += run(c, &p, QN_ATTN_PATH_SPLIT, samples, &e, json) != 0;
        drop(&p);
    }
    if (json) fclose(json);
    return failed ? 1 : 0;
}
