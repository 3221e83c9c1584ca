/* llama_cpu.c — Llama-family forward pass on the CPU (model/llama_cpu.h).
 * Per layer: RMSNorm -> q/k/v matmuls -> (bias) RoPE -> KV write -> paged attention -> o matmul
 * + residual -> RMSNorm -> gate/up matmuls -> SiLU*up -> down matmul + residual. Activations are
 * quantized to each weight format's vec_dot_type (as llama.cpp's CPU backend does) once per
 * format per step, and every parallel region splits rows (matmuls) or tokens/heads (the rest).
 * Matmul weights the kernel table has a repacked kernel for (matmul_x8: Q2_K .. Q6_K, Q4_0, Q5_0, Q5_1, Q8_0 on x86 SIMD) are
 * copied once, at create, into that layout (8 rows interleaved, gguf/kx8.h), and their file pages are dropped
 * (qn_gguf_drop_pages): the same bytes, not twice. The K-quant outputs stay bit-identical; Q4_0, Q5_0, Q5_1 and Q8_0
 * take the scalar dot's order, where the 1-row AVX2 dots (--no-repack) sum in lanes and round otherwise. */
#include "model/llama_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention/attention.h"
#include "kernels/ops/ops.h"
#include "kernels/quant/gguf/kx8.h"
#include "model/gguf.h"

#define QN_MAX_JOBS 3

/* a layer's matmul weights, in the order of the forward's x8 table; the output weight follows the layers */
enum { W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN, W_PER_LAYER };

typedef struct qn_attn_tile_cpu {
    int32_t first, count; /* tokens [first, first + count) of the step */
    int64_t cost;
} qn_attn_tile_cpu;

struct qn_llama_cpu {
    const qn_model *m;
    const qn_cpu_kernels *kern;
    qn_threadpool *tp;
    int32_t max_tokens, max_ctx;
    float freq_scale;                   /* RoPE position scale: 1/factor for linear scaling */
    int64_t kmax;                       /* widest matmul input: max(n_embd, n_head*hd, n_ff) */
    float *x;                           /* [max_tokens][n_embd] residual stream */
    float *xn;                          /* [max_tokens][kmax] normed input / attention output */
    float *q;                           /* [max_tokens][n_head*hd] */
    float *k, *v;                       /* [max_tokens][n_head_kv*hd] */
    float *tmp;                         /* [max_tokens][n_embd] o/down projections */
    float *g, *u;                       /* [max_tokens][n_ff] */
    float *scratch;                     /* [n_threads][scratch_per_thread] attention scores and V rows */
    int64_t scratch_per_thread;         /* qn_attn_cpu_scratch_floats(GQA group, head_dim, max_ctx) */
    void *xq[QN_QFORMAT_COUNT];         /* [max_tokens][row_bytes(vdt, kmax)] per activation type used */
    int32_t *seq_nq;                    /* [max_tokens] query tokens per sequence in this step */
    qn_attn_tile_cpu *attn_tiles;       /* [max_tokens] this step's attention tiles (attn_tiles) */
    int32_t n_attn_tiles;
    int64_t attn_cost_total;            /* Σ of the tiles' costs */
    qn_llama_tap_fn tap;                /* optional debug tap */
    void *tap_user;
    qn_llama_allreduce_fn allreduce;    /* optional TP all-reduce of the o/down partial sums */
    void *allreduce_user;
    int64_t embd_begin;                 /* global vocab id of tok_embd's row 0 (vocab-parallel embedding) */
    uint8_t *x8_mem;                    /* the repacked matmul weights, one allocation (NULL: none) */
    size_t x8_bytes;
    const void **x8;                    /* [n_layer * W_PER_LAYER + 1]: a weight's repacked copy in x8_mem, or NULL */
};

void qn_llama_cpu_set_tap(qn_llama_cpu *f, qn_llama_tap_fn fn, void *user) {
    f->tap = fn;
    f->tap_user = user;
}

void qn_llama_cpu_set_allreduce(qn_llama_cpu *f, qn_llama_allreduce_fn fn, void *user) {
    f->allreduce = fn;
    f->allreduce_user = user;
}

void qn_llama_cpu_set_embd_rows(qn_llama_cpu *f, int64_t row_begin) { f->embd_begin = row_begin; }

#define TAP(name, il, rows, n, ld) \
    do { \
        if (f->tap) f->tap(f->tap_user, name, il, rows, T, n, ld); \
    } while (0)

/* ---------------------------------------------------------------- parallel tasks */

typedef struct quant_task {
    const qn_llama_cpu *f;
    const float *in;      /* [n][ld_in] */
    int64_t ld_in, k, n;
    bool need[QN_QFORMAT_COUNT];
} quant_task;

static void quantize_rows(const qn_llama_cpu *f, qn_qformat vdt, const float *src, int64_t k, int64_t t) {
    const size_t rb = qn_qformat_row_bytes(vdt, k);
    uint8_t *dst = (uint8_t *)f->xq[vdt] + rb * (size_t)t;
    if (vdt == QN_QFORMAT_F32 || !f->kern->from_float[vdt])
        memcpy(dst, src, sizeof(float) * (size_t)k);
    else
        f->kern->from_float[vdt](src, dst, k);
}

static void quant_fn(void *arg, int ith, int nth) {
    const quant_task *a = arg;
    long long b, e;
    qn_split_range(a->n, ith, nth, &b, &e);
    for (long long t = b; t < e; t++)
        for (int v = 0; v < QN_QFORMAT_COUNT; v++)
            if (a->need[v]) quantize_rows(a->f, (qn_qformat)v, a->in + t * a->ld_in, a->k, t);
}

typedef struct mm_job {
    const qn_weight *w;
    const void *x8;       /* w repacked 8 rows at a time (kern->matmul_x8), or NULL: w->data as it is */
    float *y;             /* [n_tokens][ldy] */
    int64_t ldy;
    float *resid;         /* optional [n_tokens][ldy]: resid += y for the job's rows */
} mm_job;

typedef struct mm_task {
    const qn_llama_cpu *f;
    int64_t n_tokens;
    int n_jobs;
    mm_job jobs[QN_MAX_JOBS];
} mm_task;

static void mm_fn(void *arg, int ith, int nth) {
    const mm_task *a = arg;
    int64_t total = 0;
    for (int j = 0; j < a->n_jobs; j++) total += a->jobs[j].w->n;
    /* split in units of 8 rows so each thread's range suits the row tiles and the 8-row groups */
    long long ub, ue;
    qn_split_range((total + 7) / 8, ith, nth, &ub, &ue);
    int64_t b = ub * 8, e = ue * 8 < total ? ue * 8 : total;
    int64_t base = 0;
    for (int j = 0; j < a->n_jobs && b < e; j++) {
        const mm_job *jb = &a->jobs[j];
        int64_t lo = b > base ? b - base : 0;
        int64_t hi = (e - base) < jb->w->n ? (e - base) : jb->w->n;
        if (jb->x8) /* whole groups: group g goes to the thread whose rows hold row 8g (n is a multiple of 8) */
            lo = (lo + 7) / 8 * 8, hi = (hi + 7) / 8 * 8;
        if (lo < hi) {
            const qn_qformat vdt = QN_QFORMATS[jb->w->fmt].vec_dot_type;
            if (jb->x8)
                qn_cpu_matmul_x8(a->f->kern, jb->w->fmt, jb->x8, jb->w->k, a->f->xq[vdt], a->n_tokens, jb->y, jb->ldy,
                                 lo, hi);
            else if (jb->w->lutq) /* repacked HF GPTQ/AWQ/bnb weight: takes the fp32 activations (fmt F32) */
                a->f->kern->lutq_matmul(jb->w->lutq, a->f->xq[vdt], jb->w->k, a->n_tokens, jb->y, jb->ldy, lo, hi);
            else
                qn_cpu_matmul_rows(a->f->kern, jb->w->fmt, jb->w->data, jb->w->k, a->f->xq[vdt], a->n_tokens, jb->y,
                                   jb->ldy, lo, hi);
            if (jb->resid)
                for (int64_t t = 0; t < a->n_tokens; t++)
                    for (int64_t r = lo; r < hi; r++) jb->resid[t * jb->ldy + r] += jb->y[t * jb->ldy + r];
        }
        base += jb->w->n;
    }
}

typedef struct layer_task {
    const qn_llama_cpu *f;
    const qn_layer_weights *L;
    const qn_fwd_batch *b;
    qn_kv_cache *kv;
    int il;
} layer_task;

/* bias, RoPE and KV write, split over tokens */
static void rope_kv_fn(void *arg, int ith, int nth) {
    const layer_task *a = arg;
    const qn_llama_cpu *f = a->f;
    const qn_model_config *c = &f->m->cfg;
    const int64_t HQ = (int64_t)c->n_head * c->head_dim, HK = (int64_t)c->n_head_kv * c->head_dim;
    float cache[1024];
    long long tb, te;
    qn_split_range(a->b->n_tokens, ith, nth, &tb, &te);
    for (long long t = tb; t < te; t++) {
        float *q = f->q + t * HQ, *k = f->k + t * HK, *v = f->v + t * HK;
        if (a->L->bq) qn_add_f32(q, a->L->bq, HQ);
        if (a->L->bk) qn_add_f32(k, a->L->bk, HK);
        if (a->L->bv) qn_add_f32(v, a->L->bv, HK);
        qn_rope_cache_f32(cache, a->b->positions[t], c->rope_dim, c->rope_theta, f->freq_scale, f->m->rope_freqs);
        if (c->rope_style == QN_ROPE_STYLE_NEOX) {
            qn_rope_neox_f32(q, cache, c->n_head, c->head_dim, c->rope_dim);
            qn_rope_neox_f32(k, cache, c->n_head_kv, c->head_dim, c->rope_dim);
        } else {
            qn_rope_norm_f32(q, cache, c->n_head, c->head_dim, c->rope_dim);
            qn_rope_norm_f32(k, cache, c->n_head_kv, c->head_dim, c->rope_dim);
        }
        qn_kv_write_cpu(a->kv->k[a->il], a->kv->v[a->il], a->b->slot_mapping[t], k, v, c->n_head_kv, c->head_dim);
    }
}

/* attention, split over (tile, KV head, head chunk) units: a tile is up to QN_ATTN_CPU_TILE consecutive tokens of
 * one sequence (attn_tiles), and the heads of a GQA group share its K/V rows, so a group is cut into chunks only
 * when there are too few units for the threads (one decoding sequence). Each thread takes the units whose cost (keys
 * read × heads) starts in its share of the total, so the long contexts at the end of a prompt are spread over the
 * threads. Output into xn [t][HQ]; no output depends on the split. */
static void attn_fn(void *arg, int ith, int nth) {
    const layer_task *a = arg;
    const qn_llama_cpu *f = a->f;
    const qn_model_config *c = &f->m->cfg;
    const int64_t HQ = (int64_t)c->n_head * c->head_dim;
    const int group = c->n_head / c->n_head_kv;
    const int64_t units = (int64_t)f->n_attn_tiles * c->n_head_kv;
    int chunks = units >= 4 * (int64_t)nth ? 1 : (int)((4 * (int64_t)nth + units - 1) / units);
    if (chunks > group) chunks = group;
    const int64_t total = f->attn_cost_total * c->n_head;
    const int64_t lo = total * ith / nth, hi = total * (ith + 1) / nth;
    qn_attn_cpu_args at = {
        .k_cache = a->kv->k[a->il], .v_cache = a->kv->v[a->il], .block_size = a->kv->block_size,
        .n_heads = c->n_head, .n_kv_heads = c->n_head_kv, .head_dim = c->head_dim,
        .scale = 1.0f / sqrtf((float)c->head_dim), .scratch = f->scratch + (int64_t)ith * f->scratch_per_thread,
        .softmax_lanes = f->kern->attn_softmax_lanes, .q_stride = HQ, .out_stride = f->kmax,
    };
    int64_t start = 0; /* cost before this unit */
    for (int32_t i = 0; i < f->n_attn_tiles && start < hi; i++) {
        const qn_attn_tile_cpu *tl = &f->attn_tiles[i];
        for (int kvh = 0; kvh < c->n_head_kv; kvh++)
            for (int ch = 0; ch < chunks; ch++) {
                const int h0 = kvh * group + group * ch / chunks, h1 = kvh * group + group * (ch + 1) / chunks;
                const int64_t s0 = start;
                start += tl->cost * (h1 - h0);
                if (s0 < lo || s0 >= hi) continue;
                const int64_t t = tl->first;
                at.q = f->q + t * HQ;
                at.out = f->xn + t * f->kmax;
                at.block_table = a->b->block_tables + (int64_t)a->b->seq_idx[t] * a->b->max_blocks_per_seq;
                at.n_ctx = a->b->positions[t] + 1;
                at.n_q = tl->count;
                const bool multi = f->seq_nq[a->b->seq_idx[t]] >= 2;
                at.lanes = multi ? f->kern->attn_lanes_multi : f->kern->attn_lanes_single;
                at.pairwise_tree = !multi && f->kern->attn_single_pairwise;
                f->kern->attn_paged(&at, h0, h1);
            }
    }
}

/* The step's attention tiles: runs of up to QN_ATTN_CPU_TILE tokens of one sequence at consecutive positions,
 * each costed by the keys its tokens read (plus a per-token share for the query and output rows). */
static void attn_tiles(qn_llama_cpu *f, const qn_fwd_batch *b) {
    int32_t n = 0;
    int64_t total = 0;
    for (int32_t t = 0; t < b->n_tokens; t++) {
        qn_attn_tile_cpu *cur = n > 0 ? &f->attn_tiles[n - 1] : NULL;
        const int64_t cost = (int64_t)b->positions[t] + 1 + 16;
        if (cur && cur->count < QN_ATTN_CPU_TILE && b->seq_idx[t] == b->seq_idx[t - 1] &&
            b->positions[t] == b->positions[t - 1] + 1) {
            cur->count++, cur->cost += cost;
        } else {
            f->attn_tiles[n++] = (qn_attn_tile_cpu){.first = t, .count = 1, .cost = cost};
        }
        total += cost;
    }
    f->n_attn_tiles = n;
    f->attn_cost_total = total;
}

typedef struct norm_task {
    const qn_llama_cpu *f;
    const float *w;        /* norm weight [n_embd] */
    const int32_t *rows;   /* optional: source rows of x (output norm); else identity */
    int64_t n;
    quant_task q;          /* quantization of the normed rows */
} norm_task;

static void norm_quant_fn(void *arg, int ith, int nth) {
    const norm_task *a = arg;
    const qn_llama_cpu *f = a->f;
    const int64_t E = f->m->cfg.n_embd;
    long long b, e;
    qn_split_range(a->n, ith, nth, &b, &e);
    for (long long t = b; t < e; t++) {
        const int64_t src = a->rows ? a->rows[t] : t;
        float *dst = f->xn + t * f->kmax;
        qn_rmsnorm_f32(f->x + src * E, a->w, dst, E, f->m->cfg.rms_eps);
        for (int v = 0; v < QN_QFORMAT_COUNT; v++)
            if (a->q.need[v]) quantize_rows(f, (qn_qformat)v, dst, E, t);
    }
}

static void silu_quant_fn(void *arg, int ith, int nth) {
    const quant_task *a = arg;
    const qn_llama_cpu *f = a->f;
    const int64_t F = f->m->cfg.n_ff;
    long long b, e;
    qn_split_range(a->n, ith, nth, &b, &e);
    for (long long t = b; t < e; t++) {
        f->kern->silu_mul(F, f->g + t * F, f->u + t * F);
        for (int v = 0; v < QN_QFORMAT_COUNT; v++)
            if (a->need[v]) quantize_rows(f, (qn_qformat)v, f->g + t * F, F, t);
    }
}

typedef struct embed_task {
    const qn_llama_cpu *f;
    const qn_fwd_batch *b;
} embed_task;

/* rows outside this rank's vocab slice are zero (the all-reduce fills them in) */
static void embed_fn(void *arg, int ith, int nth) {
    const embed_task *a = arg;
    const qn_weight *w = &a->f->m->tok_embd;
    const int64_t E = a->f->m->cfg.n_embd;
    long long b, e;
    qn_split_range(a->b->n_tokens, ith, nth, &b, &e);
    for (long long t = b; t < e; t++) {
        const int64_t id = (int64_t)a->b->tokens[t] - a->f->embd_begin;
        if (id >= 0 && id < w->n) qn_weight_row_f32(w, id, a->f->x + t * E);
        else memset(a->f->x + t * E, 0, sizeof(float) * (size_t)E);
    }
}

/* TP: sum the ranks' partial o/down rows, then the residual add the matmul would have fused (same
 * per-element x += y). */
static qn_status reduce_add_resid(qn_llama_cpu *f, int64_t T, int64_t E, qn_error *err) {
    qn_status st = f->allreduce(f->allreduce_user, f->tmp, T, E);
    if (st != QN_OK) return qn_error_set(err, st, "forward: tensor-parallel all-reduce failed");
    for (int64_t i = 0; i < T * E; i++) f->x[i] += f->tmp[i];
    return QN_OK;
}

/* ---------------------------------------------------------------- lifecycle */

static const qn_weight *weight_at(const qn_model *m, int64_t i) {
    if (i == (int64_t)m->cfg.n_layer * W_PER_LAYER) return &m->output;
    const qn_layer_weights *L = &m->layers[i / W_PER_LAYER];
    const qn_weight *ws[W_PER_LAYER] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return ws[i % W_PER_LAYER];
}

/* A weight the table repacks: a kernel for its format, whole 8-row groups, and not the embedding's bytes (tied
 * output: the token lookup reads those rows as they are). */
static bool x8_takes(const qn_model *m, const qn_cpu_kernels *kern, const qn_weight *w) {
    return w->data && !w->lutq && kern->matmul_x8[w->fmt] && w->n > 0 &&
           qn_kx8_check_shape(w->fmt, w->n, w->k) == QN_OK && w->data != m->tok_embd.data;
}

typedef struct x8_task {
    const qn_weight *w;
    uint8_t *dst;
    const qn_gguf *file;
} x8_task;

/* Each thread repacks its groups 1 MiB of source at a time and drops those file pages as it goes, so the peak
 * memory never holds a whole tensor twice (the LM head is 430 MB at 8B Q6_K). */
static void x8_fn(void *arg, int ith, int nth) {
    const x8_task *a = arg;
    const size_t group_bytes = qn_qformat_row_bytes(a->w->fmt, a->w->k) * QN_KX8_ROWS;
    const long long chunk = (long long)((1u << 20) / group_bytes) + 1;
    long long gb, ge;
    qn_split_range(a->w->n / QN_KX8_ROWS, ith, nth, &gb, &ge);
    for (long long g0 = gb; g0 < ge; g0 += chunk) {
        const long long g1 = g0 + chunk < ge ? g0 + chunk : ge;
        (void)qn_kx8_repack(a->w->fmt, a->w->data, a->dst, a->w->n, a->w->k, g0, g1); /* shapes: x8_takes */
        qn_gguf_drop_pages(a->file, (const uint8_t *)a->w->data + (size_t)g0 * group_bytes,
                           (size_t)(g1 - g0) * group_bytes);
    }
}

/* Repacks every weight x8_takes, one parallel region per weight, into one allocation. */
static qn_status repack_weights(qn_llama_cpu *f) {
    const qn_model *m = f->m;
    const int64_t nw = (int64_t)m->cfg.n_layer * W_PER_LAYER + 1;
    size_t total = 0;
    for (int64_t i = 0; i < nw; i++) {
        const qn_weight *w = weight_at(m, i);
        if (x8_takes(m, f->kern, w)) total += qn_qformat_row_bytes(w->fmt, w->k) * (size_t)w->n;
    }
    if (!total) return QN_OK;
    void *mem = NULL;
    if (!(f->x8 = calloc((size_t)nw, sizeof *f->x8)) || posix_memalign(&mem, 64, total) != 0) return QN_ERR_NOMEM;
    f->x8_mem = mem;
    f->x8_bytes = total;
    size_t off = 0;
    for (int64_t i = 0; i < nw; i++) {
        const qn_weight *w = weight_at(m, i);
        if (!x8_takes(m, f->kern, w)) continue;
        const size_t bytes = qn_qformat_row_bytes(w->fmt, w->k) * (size_t)w->n;
        x8_task t = {w, f->x8_mem + off, m->gguf};
        qn_threadpool_run(f->tp, x8_fn, &t);
        qn_gguf_drop_pages(m->gguf, w->data, bytes); /* the pages the threads' chunk edges cut */
        f->x8[i] = f->x8_mem + off;
        off += bytes;
    }
    return QN_OK;
}

static void need_vdt(bool *need, const qn_weight *w) {
    if (w && w->data) need[QN_QFORMATS[w->fmt].vec_dot_type] = true;
}

qn_status qn_llama_cpu_create(const qn_model *m, const qn_cpu_kernels *kern, qn_threadpool *tp,
                              int32_t max_tokens, int32_t max_ctx, qn_llama_cpu **out, qn_error *err) {
    const qn_model_config *c = &m->cfg;
    if (max_tokens < 1 || max_ctx < 1) return qn_error_set(err, QN_ERR_INVALID_ARG, "forward: max_tokens/max_ctx < 1");
    if (c->rope_dim > 1024) return qn_error_set(err, QN_ERR_UNSUPPORTED, "forward: rope_dim %d > 1024", c->rope_dim);
    if (c->rope_scaling.type == QN_ROPE_SCALING_YARN)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "forward: YaRN rope scaling is not supported yet");
    if (c->rope_scaling.type == QN_ROPE_SCALING_LLAMA3 && !m->rope_freqs)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "forward: llama3 rope scaling without rope_freqs factors");
    qn_llama_cpu *f = calloc(1, sizeof *f);
    if (!f) return qn_error_set(err, QN_ERR_NOMEM, "forward: out of memory");
    f->m = m;
    f->kern = kern;
    f->tp = tp;
    f->max_tokens = max_tokens;
    f->max_ctx = max_ctx;
    f->freq_scale = c->rope_scaling.type == QN_ROPE_SCALING_LINEAR && c->rope_scaling.factor > 0
                        ? 1.0f / c->rope_scaling.factor : 1.0f;
    const int64_t E = c->n_embd, HQ = (int64_t)c->n_head * c->head_dim, HK = (int64_t)c->n_head_kv * c->head_dim;
    const int64_t F = c->n_ff, T = max_tokens;
    f->kmax = E > HQ ? E : HQ;
    if (F > f->kmax) f->kmax = F;
    bool ok = (f->x = malloc(sizeof(float) * T * E)) && (f->xn = malloc(sizeof(float) * T * f->kmax)) &&
              (f->q = malloc(sizeof(float) * T * HQ)) && (f->k = malloc(sizeof(float) * T * HK)) &&
              (f->v = malloc(sizeof(float) * T * HK)) && (f->tmp = malloc(sizeof(float) * T * E)) &&
              (f->g = malloc(sizeof(float) * T * F)) && (f->u = malloc(sizeof(float) * T * F)) &&
              (f->scratch = malloc(sizeof(float) * (size_t)qn_threadpool_size(tp) *
                                  (size_t)(f->scratch_per_thread = qn_attn_cpu_scratch_floats(c->n_head / c->n_head_kv, c->head_dim, max_ctx)))) &&
              (f->seq_nq = calloc((size_t)T, sizeof(int32_t))) &&
              (f->attn_tiles = malloc(sizeof(qn_attn_tile_cpu) * (size_t)T));
    bool need[QN_QFORMAT_COUNT] = {0};
    need_vdt(need, &m->output);
    for (int il = 0; il < c->n_layer; il++) {
        const qn_layer_weights *L = &m->layers[il];
        need_vdt(need, &L->wq), need_vdt(need, &L->wk), need_vdt(need, &L->wv), need_vdt(need, &L->wo);
        need_vdt(need, &L->w_gate), need_vdt(need, &L->w_up), need_vdt(need, &L->w_down);
    }
    for (int v = 0; ok && v < QN_QFORMAT_COUNT; v++) {
        if (!need[v]) continue;
        if (v != QN_QFORMAT_F32 && !kern->from_float[v]) {
            qn_llama_cpu_destroy(f);
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "forward: no CPU quantizer for activation type %s",
                                QN_QFORMATS[v].name);
        }
        const int64_t blk = QN_QFORMATS[v].block_elems;
        ok = (f->xq[v] = malloc(qn_qformat_row_bytes((qn_qformat)v, (f->kmax + blk - 1) / blk * blk) * (size_t)T)) != NULL;
    }
    if (!ok) {
        qn_llama_cpu_destroy(f);
        return qn_error_set(err, QN_ERR_NOMEM, "forward: cannot allocate activations for %d tokens", max_tokens);
    }
    if (repack_weights(f) != QN_OK) {
        qn_llama_cpu_destroy(f);
        return qn_error_set(err, QN_ERR_NOMEM, "forward: cannot allocate the repacked (K-quant x8) weights");
    }
    *out = f;
    return QN_OK;
}

size_t qn_llama_cpu_repacked_bytes(const qn_llama_cpu *f) { return f ? f->x8_bytes : 0; }

void qn_llama_cpu_destroy(qn_llama_cpu *f) {
    if (!f) return;
    free(f->x), free(f->xn), free(f->q), free(f->k), free(f->v), free(f->tmp), free(f->g), free(f->u);
    free(f->scratch);
    free(f->seq_nq), free(f->attn_tiles);
    for (int v = 0; v < QN_QFORMAT_COUNT; v++) free(f->xq[v]);
    free(f->x8_mem), free(f->x8);
    free(f);
}

/* ---------------------------------------------------------------- forward */

static void set_need(bool *need, const qn_weight *a, const qn_weight *b, const qn_weight *c) {
    memset(need, 0, sizeof(bool) * QN_QFORMAT_COUNT);
    need_vdt(need, a), need_vdt(need, b), need_vdt(need, c);
}

/* a matmul job on weight i of the x8 table (weight_at), with its repacked copy when there is one */
static mm_job job(const qn_llama_cpu *f, int64_t i, float *y, int64_t ldy, float *resid) {
    return (mm_job){weight_at(f->m, i), f->x8 ? f->x8[i] : NULL, y, ldy, resid};
}

/* the batch rules shared with the CUDA path (model/forward.h), plus this cache's geometry */
static qn_status check_batch(const qn_llama_cpu *f, const qn_kv_cache *kv, const qn_fwd_batch *b, qn_error *err) {
    const qn_model_config *c = &f->m->cfg;
    if (kv->n_layer != c->n_layer || kv->n_kv_heads != c->n_head_kv || kv->head_dim != c->head_dim)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "forward: kv cache geometry does not match the model");
    const qn_fwd_limits lim = {.max_tokens = f->max_tokens, .max_seqs = f->max_tokens, .max_ctx = f->max_ctx,
                               .n_slots = (int64_t)kv->n_blocks * kv->block_size, .block_size = kv->block_size};
    return qn_fwd_batch_check(b, c, &lim, err);
}

qn_status qn_llama_cpu_forward(qn_llama_cpu *f, qn_kv_cache *kv, const qn_fwd_batch *b, float *logits,
                               qn_error *err) {
    qn_status st = check_batch(f, kv, b, err);
    if (st != QN_OK) return st;
    const qn_model *m = f->m;
    const qn_model_config *c = &m->cfg;
    const int64_t T = b->n_tokens, E = c->n_embd, HQ = (int64_t)c->n_head * c->head_dim;
    const int64_t HK = (int64_t)c->n_head_kv * c->head_dim, F = c->n_ff;

    memset(f->seq_nq, 0, sizeof(int32_t) * (size_t)b->n_seqs);
    for (int32_t t = 0; t < b->n_tokens; t++) f->seq_nq[b->seq_idx[t]]++;
    attn_tiles(f, b);

    embed_task et = {f, b};
    qn_threadpool_run(f->tp, embed_fn, &et);
    if (m->tok_embd.n < c->n_vocab) { /* vocab-parallel: each token's row comes from one rank */
        if (!f->allreduce)
            return qn_error_set(err, QN_ERR_INVALID_ARG, "forward: a vocab slice of the embedding without an all-reduce");
        if ((st = f->allreduce(f->allreduce_user, f->x, T, E)) != QN_OK)
            return qn_error_set(err, st, "forward: tensor-parallel all-reduce of the embeddings failed");
    }

    for (int il = 0; il < c->n_layer; il++) {
        const qn_layer_weights *L = &m->layers[il];
        norm_task nt = {.f = f, .w = L->attn_norm, .n = T};
        set_need(nt.q.need, &L->wq, &L->wk, &L->wv);
        qn_threadpool_run(f->tp, norm_quant_fn, &nt);
        TAP("attn_norm", il, f->xn, E, f->kmax);

        const int64_t wi = (int64_t)il * W_PER_LAYER;
        mm_task qkv = {.f = f, .n_tokens = T, .n_jobs = 3,
                       .jobs = {job(f, wi + W_Q, f->q, HQ, NULL), job(f, wi + W_K, f->k, HK, NULL),
                                job(f, wi + W_V, f->v, HK, NULL)}};
        qn_threadpool_run(f->tp, mm_fn, &qkv);

        layer_task lt = {f, L, b, kv, il};
        qn_threadpool_run(f->tp, rope_kv_fn, &lt);
        TAP("q", il, f->q, HQ, HQ);
        TAP("k", il, f->k, HK, HK);
        TAP("v", il, f->v, HK, HK);
        qn_threadpool_run(f->tp, attn_fn, &lt);
        TAP("kqv_out", il, f->xn, HQ, f->kmax);

        quant_task qa = {.f = f, .in = f->xn, .ld_in = f->kmax, .k = HQ, .n = T};
        set_need(qa.need, &L->wo, NULL, NULL);
        qn_threadpool_run(f->tp, quant_fn, &qa);
        float *resid = f->allreduce ? NULL : f->x; /* TP adds after the all-reduce */
        mm_task o = {.f = f, .n_tokens = T, .n_jobs = 1, .jobs = {job(f, wi + W_O, f->tmp, E, resid)}};
        qn_threadpool_run(f->tp, mm_fn, &o);
        if (f->allreduce && (st = reduce_add_resid(f, T, E, err)) != QN_OK) return st;
        TAP("ffn_inp", il, f->x, E, E);

        norm_task nf = {.f = f, .w = L->ffn_norm, .n = T};
        set_need(nf.q.need, &L->w_gate, &L->w_up, NULL);
        qn_threadpool_run(f->tp, norm_quant_fn, &nf);
        TAP("ffn_norm", il, f->xn, E, f->kmax);
        mm_task gu = {.f = f, .n_tokens = T, .n_jobs = 2, .jobs = {job(f, wi + W_GATE, f->g, F, NULL), job(f, wi + W_UP, f->u, F, NULL)}};
        qn_threadpool_run(f->tp, mm_fn, &gu);

        quant_task qs = {.f = f, .n = T};
        set_need(qs.need, &L->w_down, NULL, NULL);
        qn_threadpool_run(f->tp, silu_quant_fn, &qs);
        TAP("ffn_swiglu", il, f->g, F, F);
        mm_task dn = {.f = f, .n_tokens = T, .n_jobs = 1, .jobs = {job(f, wi + W_DOWN, f->tmp, E, resid)}};
        qn_threadpool_run(f->tp, mm_fn, &dn);
        if (f->allreduce && (st = reduce_add_resid(f, T, E, err)) != QN_OK) return st;
        TAP("l_out", il, f->x, E, E);
    }

    if (b->n_out > 0) {
        norm_task no = {.f = f, .w = m->output_norm, .rows = b->out_rows, .n = b->n_out};
        set_need(no.q.need, &m->output, NULL, NULL);
        qn_threadpool_run(f->tp, norm_quant_fn, &no);
        if (f->tap) f->tap(f->tap_user, "result_norm", -1, f->xn, b->n_out, E, f->kmax);
        mm_task lo = {.f = f, .n_tokens = b->n_out, .n_jobs = 1, .jobs = {job(f, (int64_t)c->n_layer * W_PER_LAYER, logits, c->n_vocab, NULL)}};
        qn_threadpool_run(f->tp, mm_fn, &lo);
    }
    return QN_OK;
}
