/* llama_cuda.c — the Llama-family forward pass on one CUDA GPU (model/llama_cuda.h). */
#include "model/llama_cuda.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef QN_HAVE_CUDA

qn_llama_cuda_params qn_llama_cuda_params_default(void) {
    return (qn_llama_cuda_params){.max_tokens = 512, .max_seqs = 1, .max_ctx = 2048, .n_blocks = 128,
                                  .block_size = 16, .cuda_graphs = true, .profile_begin = 1, .profile_end = 0};
}
qn_status qn_llama_cuda_plan(const qn_model *m, const qn_llama_cuda_params *p, uint64_t *bytes, qn_error *err) {
    (void)m, (void)p, (void)bytes;
    return qn_error_set(err, QN_ERR_NO_DEVICE, "cuda: this quern was built without CUDA (no nvcc at configure time)");
}
qn_status qn_llama_cuda_kv_budget(const qn_model *m, int device, int32_t max_tokens, int32_t max_seqs, int32_t max_ctx,
                                  int32_t block_size, float utilization, uint64_t *kv_bytes, qn_error *err) {
    (void)device, (void)max_tokens, (void)max_seqs, (void)max_ctx, (void)block_size, (void)utilization, (void)kv_bytes;
    return qn_llama_cuda_plan(m, NULL, NULL, err);
}
qn_status qn_llama_cuda_create(const qn_model *m, const qn_llama_cuda_params *p, qn_llama_cuda **out, qn_error *err) {
    (void)out;
    return qn_llama_cuda_plan(m, p, NULL, err);
}
void qn_llama_cuda_destroy(qn_llama_cuda *f) { (void)f; }
int32_t qn_llama_cuda_default_batch_tokens(int device) { return (void)device, 2048; }
const char *qn_llama_cuda_device_name(const qn_llama_cuda *f) { return (void)f, "none"; }
void qn_llama_cuda_set_tap(qn_llama_cuda *f, qn_llama_tap_fn fn, void *user) { (void)f, (void)fn, (void)user; }
void qn_llama_cuda_set_tp(qn_llama_cuda *f, qn_tp_comm *comm, int64_t vocab_begin) { (void)f, (void)comm, (void)vocab_begin; }
double qn_llama_cuda_allreduce_s(const qn_llama_cuda *f, uint64_t *n_calls) {
    (void)f;
    if (n_calls) *n_calls = 0;
    return 0;
}
void qn_llama_cuda_host_times(const qn_llama_cuda *f, qn_cuda_host_times *out) { (void)f, *out = (qn_cuda_host_times){0}; }
qn_status qn_llama_cuda_capture_decode_graphs(qn_llama_cuda *f, int32_t max_tokens, int32_t *n_captured,
                                              qn_error *err) {
    (void)f, (void)max_tokens, (void)err;
    *n_captured = 0;
    return QN_OK;
}
qn_status qn_llama_cuda_forward(qn_llama_cuda *f, const qn_fwd_batch *b, float *logits, qn_error *err) {
    (void)f, (void)b, (void)logits;
    return qn_error_set(err, QN_ERR_NO_DEVICE, "cuda: built without CUDA");
}
qn_status qn_llama_cuda_forward_sample(qn_llama_cuda *f, const qn_fwd_batch *b, const qn_sample_row_params *p,
                                       int32_t *tokens, qn_error *err) {
    (void)f, (void)b, (void)p, (void)tokens;
    return qn_error_set(err, QN_ERR_NO_DEVICE, "cuda: built without CUDA");
}
qn_status qn_llama_cuda_copy_block(qn_llama_cuda *f, int32_t src, int32_t dst, qn_error *err) {
    (void)f, (void)src, (void)dst;
    return qn_error_set(err, QN_ERR_NO_DEVICE, "cuda: built without CUDA");
}

#else /* QN_HAVE_CUDA */

#include <cublas_v2.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>
#include <nvtx3/nvToolsExt.h>

#include <stdatomic.h>

#include "core/log.h"
#include "core/threadpool.h"
#include "kernels/attention/attention_cuda.h"
#include "kernels/common/half.h"
#include "kernels/ops/ops_cuda.h"
#include "kernels/quant/gguf/q3kp.h"
#include "kernels/quant/gguf/q6kp.h"
#include "kernels/quant/gguf/q8_0p.h"
#include "kernels/quant/lq4m.h"
#include "kernels/quant/lutq_gpu.h"
#include "kernels/quant/quant.h"
#include "tp/comm.h"

#define ALIGN 256

/* CUDA runtime call: on failure set err (call, message, line) and return QN_ERR_CUDA. */
#define CK(call)                                                                                          \
    do {                                                                                                  \
        const cudaError_t e_ = (call);                                                                    \
        if (e_ != cudaSuccess)                                                                            \
            return qn_error_set(err, QN_ERR_CUDA, "cuda: %s failed: %s (%s:%d)", #call, cudaGetErrorString(e_), \
                                __FILE__, __LINE__);                                                      \
    } while (0)
/* Kernel entry point returning qn_status. */
#define KS(call)                                                                                          \
    do {                                                                                                  \
        const qn_status s_ = (call);                                                                      \
        if (s_ != QN_OK)                                                                                  \
            return qn_error_set(err, s_, "cuda forward: %s: %s (%s:%d)", #call, qn_status_str(s_), __FILE__, __LINE__); \
    } while (0)

typedef struct dev_weight {
    qn_qformat fmt;        /* format on the device (the file's, a lutq_gpu.h block format for HF GPTQ/AWQ/bnb
                            * weights, or F16 when dequantized at load) */
    int64_t n, k;          /* rows, elements per row */
    void *d;               /* [n][row_bytes(fmt, k)] device */
    bool act;              /* lutq_gpu formats: act-order, x is gathered through perm before the matmul */
    int32_t *perm;         /* [k] device when act (right behind the blocks, or the previous weight's when the
                            * two are equal: q, k, v and gate, up of a GPTQ checkpoint share their g_idx, so
                            * their matmuls share one quantization of x), else NULL */
} dev_weight;

typedef struct dev_layer {
    float *attn_norm, *ffn_norm;   /* [n_embd] */
    float *bq, *bk, *bv;           /* [rows] or NULL */
    dev_weight wq, wk, wv, wo, gate, up, down;
} dev_layer;

/* Offsets (in int32 units) of the step arrays in the staging buffers; capacities fixed at create,
 * so a graph captured for a shape always copies the same bytes. */
typedef struct step_layout {
    size_t tokens, pos, seq, slot, rows, tiles, bt, end; /* bt: [max_seqs][max_blocks] */
} step_layout;

typedef struct graph_entry {
    cudaGraphExec_t exec;
    bool tried;            /* capture attempted (failed captures are not retried) */
} graph_entry;

struct qn_llama_cuda {
    qn_model_config cfg;
    qn_llama_cuda_params p;
    char name[320];
    int32_t max_blocks;            /* per sequence: ceil(max_ctx / block_size) */
    qn_quant_cuda_ctx qctx;
    cudaStream_t stream;
    cublasHandle_t cublas;
    /* weights (one allocation) */
    void *wmem;
    uint64_t wbytes;
    dev_weight tok_embd, output;
    float *output_norm, *rope_freqs;
    dev_layer *layers;
    /* KV: [n_layer] -> [n_blocks * block_size][n_kv_heads][head_dim] fp16 */
    void *kvmem;
    uint16_t **k, **v;
    /* activations (one allocation) */
    void *amem;
    int64_t kmax;
    float *x, *y, *q, *kk, *vv, *g, *u, *logits;
    uint16_t *xh;                  /* [max_tokens][kmax] fp16 matmul input */
    int32_t *step_d;               /* step arrays (layout) */
    qn_sample_row_params *sparams_d;
    int32_t *sampled_d;
    void *mm_ws, *attn_ws, *smp_ws;
    size_t mm_ws_bytes, attn_ws_bytes, smp_ws_bytes;
    const uint16_t *q8_x;          /* the x whose int8 activations the last mm left in mm_ws (NULL: none) */
    int64_t q8_n, q8_k;            /* its tokens and width */
    const int32_t *q8_perm;        /* the act-order perm they were gathered through (NULL: none) */
    /* pinned host staging */
    int32_t *step_h;
    qn_sample_row_params *sparams_h;
    int32_t *sampled_h;
    float *logits_h;               /* [max_seqs][n_vocab]: graph replays copy logits here */
    step_layout lay;
    int32_t n_attn_tiles;          /* of the step being enqueued */
    int32_t n_attn_single;         /* its single-token tiles, first (qn_attn_singles_first) */
    int32_t run_T, run_seqs, run_out; /* the staged step's tokens, sequences, out rows (decode_bucket padding) */
    qn_cuda_host_times ht;         /* host time by phase (qn_llama_cuda_host_times) */
    double t_entry;                /* when the step being run entered forward (host_now_s) */
    /* graphs of pure-decode steps, [1 + QN_SAMPLE_PATH_COUNT][max_seqs + 1]: logits, then sampling
     * by path (a graph holds the sampling path it was captured with) */
    graph_entry *graphs[1 + QN_SAMPLE_PATH_COUNT];
    qn_sample_path smp_path;       /* of the sampling step being run */
    bool graphs_on;
    int mmvq_stage;             /* opts.mmvq_stage of every matmul (quant.h): p.mmvq_stage */
    int64_t step;
    qn_llama_tap_fn tap;
    void *tap_user;
    float *tap_buf;                /* host [max_tokens][kmax] */
    qn_tp_comm *comm;              /* tensor parallel: o/down partial sums (NULL: off) */
    int64_t vocab_begin;           /* first global vocab id of this rank's LM-head rows */
    cudaEvent_t *ar_ev;            /* [2 * ar_per_step] start/stop of each all-reduce of a step */
    int ar_per_step, ar_i;         /* all-reduces per step; the next one's index while enqueueing */
    double ar_s;                   /* seconds inside all-reduces, summed over steps */
    uint64_t ar_calls;
};

qn_llama_cuda_params qn_llama_cuda_params_default(void) {
    return (qn_llama_cuda_params){.device = 0, .max_tokens = 512, .max_seqs = 1, .max_ctx = 2048, .n_blocks = 128,
                                  .block_size = 16, .cuda_graphs = true, .profile_begin = 1, .profile_end = 0};
}

const char *qn_llama_cuda_device_name(const qn_llama_cuda *f) { return f->name; }

void qn_llama_cuda_set_tap(qn_llama_cuda *f, qn_llama_tap_fn fn, void *user) {
    f->tap = fn;
    f->tap_user = user;
}

void qn_llama_cuda_set_tp(qn_llama_cuda *f, qn_tp_comm *comm, int64_t vocab_begin) {
    f->comm = comm;
    f->vocab_begin = vocab_begin;
    /* events for the all-reduce timing: embedding (vocab-parallel) + o and down of every layer */
    const int n = 2 * f->cfg.n_layer + (f->tok_embd.n < f->cfg.n_vocab);
    if (!comm || f->ar_ev || cudaSetDevice(f->qctx.device) != cudaSuccess || !(f->ar_ev = calloc(2 * (size_t)n, sizeof *f->ar_ev)))
        return;
    for (int i = 0; i < 2 * n; i++)
        if (cudaEventCreate(&f->ar_ev[i]) != cudaSuccess) { /* timing is optional: go without */
            for (int j = 0; j < i; j++) cudaEventDestroy(f->ar_ev[j]);
            free(f->ar_ev), f->ar_ev = NULL;
            return;
        }
    f->ar_per_step = n;
}

double qn_llama_cuda_allreduce_s(const qn_llama_cuda *f, uint64_t *n_calls) {
    if (n_calls) *n_calls = f->ar_calls;
    return f->ar_s;
}

void qn_llama_cuda_host_times(const qn_llama_cuda *f, qn_cuda_host_times *out) { *out = f->ht; }

static double host_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The step's all-reduce on its stream, between an event pair (external records: graph captures keep them,
 * so replays are timed too); comm.c puts the enqueue in the NVTX range "tp.allreduce". */
static qn_status tp_allreduce(qn_llama_cuda *f, float *buf, size_t n, qn_error *err) {
    const bool timed = f->ar_ev && f->ar_i < f->ar_per_step;
    /* cudaEventRecordExternal is only valid while the stream is being captured (measured on an H200:
     * "operation cannot be performed in the present state" outside a capture) */
    enum cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    CK(cudaStreamIsCapturing(f->stream, &cap));
    const unsigned flags = cap == cudaStreamCaptureStatusActive ? cudaEventRecordExternal : cudaEventRecordDefault;
    if (timed) CK(cudaEventRecordWithFlags(f->ar_ev[2 * f->ar_i], f->stream, flags));
    const qn_status st = qn_tp_comm_all_reduce_sum_f32(f->comm, buf, n, f->stream);
    if (st != QN_OK) return qn_error_set(err, st, "cuda forward: tensor-parallel all-reduce failed");
    if (timed) CK(cudaEventRecordWithFlags(f->ar_ev[2 * f->ar_i + 1], f->stream, flags));
    f->ar_i++;
    return QN_OK;
}

/* After a step's stream sync: add the step's all-reduce times. */
static void tp_time_collect(qn_llama_cuda *f) {
    if (!f->ar_ev) return;
    for (int i = 0; i < f->ar_per_step; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, f->ar_ev[2 * i], f->ar_ev[2 * i + 1]) == cudaSuccess) f->ar_s += 1e-3 * ms;
    }
    f->ar_calls += (uint64_t)f->ar_per_step;
}

static void tp_time_free(qn_llama_cuda *f) {
    if (!f->ar_ev) return;
    for (int i = 0; i < 2 * f->ar_per_step; i++) cudaEventDestroy(f->ar_ev[i]);
    free(f->ar_ev);
}

/* the LM head holds only a slice of the vocabulary (tensor parallel) */
static bool vocab_split(const qn_llama_cuda *f) { return f->output.n < f->cfg.n_vocab; }

/* Logits rows [n_out][rows of this rank] on the device -> their columns of host rows [n_out][n_vocab]. */
static qn_status logits_to_host(qn_llama_cuda *f, float *dst, int32_t n_out, qn_error *err) {
    const size_t V = (size_t)f->cfg.n_vocab, nl = (size_t)f->output.n;
    if (nl == V)
        CK(cudaMemcpyAsync(dst, f->logits, sizeof(float) * (size_t)n_out * V, cudaMemcpyDeviceToHost, f->stream));
    else
        CK(cudaMemcpy2DAsync(dst + f->vocab_begin, sizeof(float) * V, f->logits, sizeof(float) * nl, sizeof(float) * nl,
                             (size_t)n_out, cudaMemcpyDeviceToHost, f->stream));
    return QN_OK;
}

static size_t align_up(size_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

/* Token rows into x [T][n_embd]. Tensor parallel: the embedding holds this rank's vocab rows (the LM head's,
 * tp/model_shard.h), other tokens get zero rows, and one all-reduce on the step's stream sums the ranks'
 * rows into the full embeddings (exact: one rank is non-zero per row). */
static qn_status embed_tokens(qn_llama_cuda *f, const int32_t *tokens_d, int32_t T, qn_error *err) {
    const dev_weight *w = &f->tok_embd;
    const int64_t E = f->cfg.n_embd;
    if (w->n == f->cfg.n_vocab) {
        KS(qn_embed_cuda(w->fmt, w->d, E, tokens_d, T, f->x, f->stream));
        return QN_OK;
    }
    if (!f->comm) return qn_error_set(err, QN_ERR_INTERNAL, "cuda forward: a vocab slice of the embedding without TP");
    KS(qn_embed_rows_cuda(w->fmt, w->d, E, f->vocab_begin, w->n, tokens_d, T, f->x, f->stream));
    return tp_allreduce(f, f->x, (size_t)T * (size_t)E, err);
}

/* ---------------------------------------------------------------- weight placement */

/* The format a weight takes on the device: as stored when a GPU kernel takes (fmt, K); HF GPTQ/AWQ/bnb
 * repacks (lutq) in their lutq_gpu.h block format when it takes them; otherwise dequantized once to fp16
 * (F32 tensors, types without a GPU kernel, lutq weights the block formats refuse, e.g. irregular g_idx). */
static qn_qformat dev_format_stored(const qn_weight *w) {
    if (w->lutq) {
        char why[256];
        qn_qformat f;
        if (qn_lutq_gpu_format(w->lutq, &f, why, sizeof why) == QN_OK && qn_quant_check_shape(f, w->n, w->k) == QN_OK)
            return f;
        return QN_QFORMAT_F16;
    }
    if (qn_quant_check_shape(w->fmt, w->n, w->k) == QN_OK) return w->fmt;
    return QN_QFORMAT_F16;
}

/* Q6_K matmul weights go to the device padded to Q6_KP (gguf/q6kp.h: 16-byte aligned blocks for the int8
 * decode kernel's vector loads, +6.7% bytes); 0 keeps them Q6_K (an A/B knob: -D). */
#ifndef QN_Q6K_PAD
#define QN_Q6K_PAD 1
#endif

/* 1 (the default since the H200 A/B of 2026-12-05: Llama-3-8B-shape Q2_K mix tg128 448 -> 461 alone, 494 -> 520
 * with QN_MQ_PERSIST; bench/results/gpu-persist-2026-12-05.md): Q3_K matmul weights go to the device padded to
 * Q3_KP (gguf/q3kp.h: 16-byte aligned blocks, +1.8% bytes); 0 keeps them Q3_K (an A/B knob: -D). */
#ifndef QN_Q3K_PAD
#define QN_Q3K_PAD 1
#endif

/* Q8_0 matmul weights with K a multiple of 256 go to the device regrouped as Q8_0P (gguf/q8_0p.h: 16-byte aligned
 * super-blocks of 8 Q8_0 blocks, the same bytes); 0 keeps them Q8_0 (an A/B knob: -D). */
#ifndef QN_Q80_GROUP
#define QN_Q80_GROUP 1
#endif

/* Which 4-bit GPTQ/AWQ weights go to the device as LQ4M (lq4m.h: the mma decode kernel, 4.25 bits per weight)
 * instead of LQ4 (5.0 bits, the int8 decode kernel) where they fit: 0 none, 1 those without act-order, 2 all (an
 * A/B knob: -D). Measured on an H100 (bench/results/gpu-lq4m-2026-12-06.md, Llama-3-8B-shape GPTQ-4 g128 through
 * `quern bench`): plain weights tg128 392.2 t/s against LQ4's 386.0 (+1.6%), pp512 +0.8%; act-order tg128 355.4
 * against 378.6 (-6.1%: LQ4's decode quantizes x through perm in the launch it needs anyway, LQ4M gathers x in
 * one of its own), pp512 +4.4%. 2 trades that decode speed for 15% less weight memory. */
#ifndef QN_LUTQ_LQ4M
#define QN_LUTQ_LQ4M 1
#endif
/* Whether bitsandbytes NF4 / FP4 weights go to the device as LNF4M / LFP4M (lq4m.h: the same mma kernel with a
 * table lookup, 4.25 bits per weight) instead of LNF4 / LFP4 (5.0 bits, the fp16 table GEMV) where they fit: 1 yes,
 * 0 no (an A/B knob: -D). */
#ifndef QN_LUTQ_LNF4M
#define QN_LUTQ_LNF4M 1
#endif

/* The format a matmul weight takes on the device: dev_format_stored, LQ4 as LQ4M where it fits (QN_LUTQ_LQ4M),
 * LNF4 / LFP4 as LNF4M / LFP4M (QN_LUTQ_LNF4M), Q3_K, Q6_K padded to Q3_KP, Q6_KP, Q8_0 regrouped to
 * Q8_0P where its K allows. */
static qn_qformat dev_format(const qn_weight *w) {
    const qn_qformat f = dev_format_stored(w);
    if (f == QN_QFORMAT_LQ4 && (QN_LUTQ_LQ4M >= 2 || (QN_LUTQ_LQ4M == 1 && !w->lutq->perm)) &&
        qn_lq4m_takes(w->lutq, QN_QFORMAT_LQ4M, NULL, 0))
        return QN_QFORMAT_LQ4M;
    if ((f == QN_QFORMAT_LNF4 || f == QN_QFORMAT_LFP4) && QN_LUTQ_LNF4M &&
        qn_lq4m_takes(w->lutq, qn_lq4m_form_of(f), NULL, 0))
        return qn_lq4m_form_of(f);
    if (QN_Q6K_PAD && f == QN_QFORMAT_Q6_K) return QN_QFORMAT_Q6_KP;
    if (QN_Q3K_PAD && f == QN_QFORMAT_Q3_K) return QN_QFORMAT_Q3_KP;
    if (QN_Q80_GROUP && f == QN_QFORMAT_Q8_0 && qn_quant_check_shape(QN_QFORMAT_Q8_0P, w->n, w->k) == QN_OK)
        return QN_QFORMAT_Q8_0P;
    return f;
}

/* The device weight of w before upload: format, shape, whether it carries an act-order perm. */
static dev_weight dev_weight_of(const qn_weight *w) {
    const qn_qformat f = dev_format(w);
    return (dev_weight){f, w->n, w->k, NULL, qn_lutq_gpu_is_format(f) && w->lutq->perm, NULL};
}

/* The embedding table's device format: what qn_embed_cuda takes, else fp16. */
static qn_qformat embed_format(const qn_weight *w) {
    if (w->lutq) return QN_QFORMAT_F16;
    if (w->fmt == QN_QFORMAT_F32 || qn_quant_cuda_has_format(w->fmt)) return w->fmt;
    return QN_QFORMAT_F16;
}

/* tied embeddings: one device copy serves both (a tensor-parallel shard slices both to the same vocab rows,
 * so its two views still match; weights_bytes then counts 1/N of the table per rank). A tied Q6_K or Q8_0 table
 * stays as it is (not padded or regrouped: the embedding lookup reads the file's blocks). */
static bool output_shares_embd(const qn_model *m) {
    return m->output.data == m->tok_embd.data && m->output.n == m->tok_embd.n &&
           embed_format(&m->tok_embd) == dev_format_stored(&m->output);
}

/* The output projection's device weight before upload: the embedding's format when the two share a copy. */
static dev_weight output_weight_of(const qn_model *m) {
    dev_weight d = dev_weight_of(&m->output);
    if (output_shares_embd(m)) d.fmt = embed_format(&m->tok_embd);
    return d;
}

static uint64_t weight_dev_bytes(const qn_weight *w, qn_qformat fmt) {
    const bool perm = qn_lutq_gpu_is_format(fmt) && w->lutq->perm;
    return align_up(qn_qformat_row_bytes(fmt, w->k) * (size_t)w->n) + (perm ? align_up(sizeof(int32_t) * (size_t)w->k) : 0);
}

static uint64_t weights_bytes(const qn_model *m) {
    const qn_model_config *c = &m->cfg;
    uint64_t b = weight_dev_bytes(&m->tok_embd, embed_format(&m->tok_embd));
    if (!output_shares_embd(m)) b += weight_dev_bytes(&m->output, dev_format(&m->output));
    b += align_up(sizeof(float) * (size_t)c->n_embd) + align_up(sizeof(float) * (size_t)c->rope_dim);
    for (int il = 0; il < c->n_layer; il++) {
        const qn_layer_weights *L = &m->layers[il];
        const qn_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) b += weight_dev_bytes(ws[i], dev_format(ws[i]));
        b += 2 * align_up(sizeof(float) * (size_t)c->n_embd);
        if (L->bq) b += align_up(sizeof(float) * (size_t)L->wq.n);
        if (L->bk) b += align_up(sizeof(float) * (size_t)L->wk.n);
        if (L->bv) b += align_up(sizeof(float) * (size_t)L->wv.n);
    }
    return b;
}

/* Dequantizes w to fp16 rows (host) for a weight without a GPU kernel. */
static qn_status to_f16_host(const qn_weight *w, uint16_t *out, qn_error *err) {
    const size_t nk = (size_t)w->n * (size_t)w->k;
    float *tmp = malloc(sizeof(float) * (w->lutq ? nk : (size_t)w->k));
    if (!tmp) return qn_error_set(err, QN_ERR_NOMEM, "cuda load: out of host memory converting %s", w->name);
    if (w->lutq) {
        qn_lutq_dequant_ref(w->lutq, tmp);
        for (size_t i = 0; i < nk; i++) out[i] = qn_f32_to_f16(tmp[i]);
    } else {
        for (int64_t r = 0; r < w->n; r++) {
            qn_weight_row_f32(w, r, tmp);
            for (int64_t i = 0; i < w->k; i++) out[(size_t)r * w->k + i] = qn_f32_to_f16(tmp[i]);
        }
    }
    free(tmp);
    return QN_OK;
}

/* ---------------------------------------------------------------- lutq upload: parallel host repack */

/* The host side of the lutq uploads. Each weight is repacked by row ranges on all of tp's threads into one
 * of two staging buffers, then copied on f->stream while the next weight is repacked into the other: at
 * most two weights are staged (2 x the largest one), never a second host copy of the model. Buffers are
 * pinned when cudaMallocHost gives them (the copy then runs asynchronously), else plain malloc (the copy
 * returns once staged by the driver). */
typedef struct lutq_stager {
    qn_threadpool *tp;     /* NULL: the repack runs on the caller */
    void *buf[2];          /* [cap] each */
    bool pinned[2];
    size_t cap;            /* the largest lutq weight's device bytes */
    cudaEvent_t done[2];   /* recorded after the copy out of buf[i] */
    bool busy[2];          /* done[i] was recorded and not yet waited on */
    const char *name[2];   /* the weight being copied out of buf[i], for the error */
    int cur;               /* the buffer the next weight takes */
    const int32_t *prev_perm_h; /* [prev_k] the last uploaded act-order perm (host), NULL before any */
    int32_t *prev_perm_d;       /* [prev_k] its device copy */
    int64_t prev_k;
} lutq_stager;

typedef struct rows_job {
    const qn_lutq_weight *w;
    qn_qformat fmt;
    uint8_t *out;          /* [n][row bytes] */
    size_t row_bytes;
    atomic_int st;         /* the first failing range's status, else QN_OK */
} rows_job;

static void repack_rows_fn(void *arg, int ith, int nth) {
    rows_job *j = arg;
    const int64_t unit = qn_lutq_gpu_row_unit(j->fmt); /* LQ4M: whole 16-row strips */
    long long r0, r1;
    qn_split_range((j->w->n + unit - 1) / unit, ith, nth, &r0, &r1);
    r0 *= unit, r1 = r1 * unit < j->w->n ? r1 * unit : j->w->n;
    if (r0 >= r1) return;
    const qn_status st = qn_lutq_gpu_repack_rows(j->w, j->fmt, r0, r1, j->out + (size_t)r0 * j->row_bytes);
    int ok = QN_OK;
    if (st != QN_OK) atomic_compare_exchange_strong(&j->st, &ok, (int)st);
}

/* Waits for the copy out of buf[i]; its failure is that weight's copy error. */
static qn_status stager_wait(lutq_stager *S, int i, qn_error *err) {
    if (!S->busy[i]) return QN_OK;
    S->busy[i] = false;
    if (cudaEventSynchronize(S->done[i]) != cudaSuccess)
        return qn_error_set(err, QN_ERR_CUDA, "cuda load: copying %s failed", S->name[i]);
    return QN_OK;
}

/* Waits for both copies, then frees everything (also after an error). */
static qn_status stager_finish(lutq_stager *S, qn_error *err) {
    qn_status st = QN_OK;
    for (int i = 0; i < 2; i++) {
        const qn_status s = stager_wait(S, i, st == QN_OK ? err : NULL);
        if (st == QN_OK) st = s;
        if (S->done[i]) cudaEventDestroy(S->done[i]);
        if (S->pinned[i]) cudaFreeHost(S->buf[i]);
        else free(S->buf[i]);
    }
    qn_threadpool_destroy(S->tp);
    memset(S, 0, sizeof *S);
    return st;
}

static size_t lutq_upload_bytes(const qn_weight *w) {
    const qn_qformat f = dev_format(w);
    return qn_lutq_gpu_is_format(f) ? qn_lutq_gpu_bytes(w->lutq, f) : 0;
}

/* Sizes the buffers for the largest lutq weight that takes a block format; none: nothing is made. */
static qn_status stager_init(lutq_stager *S, const qn_model *m, int n_threads, qn_error *err) {
    memset(S, 0, sizeof *S);
    size_t cap = 0;
    if (!output_shares_embd(m)) cap = lutq_upload_bytes(&m->output);
    for (int il = 0; il < m->cfg.n_layer; il++) {
        const qn_layer_weights *L = &m->layers[il];
        const qn_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) {
            const size_t b = lutq_upload_bytes(ws[i]);
            if (b > cap) cap = b;
        }
    }
    if (!cap) return QN_OK;
    S->cap = cap;
    for (int i = 0; i < 2; i++) {
        if (cudaMallocHost(&S->buf[i], cap) == cudaSuccess) {
            S->pinned[i] = true;
        } else {
            cudaGetLastError(); /* not sticky: clear it and stage in pageable memory */
            S->buf[i] = malloc(cap);
        }
        if (!S->buf[i]) {
            stager_finish(S, NULL);
            return qn_error_set(err, QN_ERR_NOMEM, "cuda load: out of host memory staging %zu bytes", cap);
        }
        if (cudaEventCreateWithFlags(&S->done[i], cudaEventDisableTiming) != cudaSuccess) {
            stager_finish(S, NULL);
            return qn_error_set(err, QN_ERR_CUDA, "cuda load: cannot create an event");
        }
    }
    if (n_threads <= 0) {
        const long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
    }
    if (n_threads > 1 && qn_threadpool_create(n_threads, &S->tp, NULL) != QN_OK) S->tp = NULL; /* caller alone */
    return QN_OK;
}

/* A lutq weight in its lutq_gpu.h block format: repacked on the host (rows over S's threads), blocks copied
 * on f->stream, then the act-order perm. */
static qn_status upload_lutq_gpu(qn_llama_cuda *f, lutq_stager *S, const qn_weight *w, uint64_t *off, dev_weight *out,
                                 qn_error *err) {
    const size_t bytes = qn_lutq_gpu_bytes(w->lutq, out->fmt);
    const int i = S->cur;
    qn_status st;
    if (bytes > S->cap)
        return qn_error_set(err, QN_ERR_INTERNAL, "cuda load: %s: %zu bytes over the staging plan %zu", w->name, bytes,
                            S->cap);
    if ((st = stager_wait(S, i, err)) != QN_OK) return st;
    rows_job j = {.w = w->lutq, .fmt = out->fmt, .out = S->buf[i], .row_bytes = qn_qformat_row_bytes(out->fmt, w->k)};
    atomic_init(&j.st, QN_OK);
    if (S->tp) qn_threadpool_run(S->tp, repack_rows_fn, &j);
    else repack_rows_fn(&j, 0, 1);
    if ((st = (qn_status)atomic_load(&j.st)) != QN_OK)
        return qn_error_set(err, st, "cuda load: %s: repack to %s failed", w->name, qn_qformat_name(out->fmt));
    if (cudaMemcpyAsync(out->d, S->buf[i], bytes, cudaMemcpyHostToDevice, f->stream) != cudaSuccess ||
        cudaEventRecord(S->done[i], f->stream) != cudaSuccess)
        return qn_error_set(err, QN_ERR_CUDA, "cuda load: copying %s failed", w->name);
    S->busy[i] = true, S->name[i] = w->name, S->cur = i ^ 1;
    if (!out->act) return QN_OK;
    const int32_t *ph = w->lutq->perm;
    const size_t pb = sizeof(int32_t) * (size_t)w->k;
    if (S->prev_perm_h && S->prev_k == w->k && memcmp(S->prev_perm_h, ph, pb) == 0) {
        out->perm = S->prev_perm_d; /* its own slot (planned) stays unused */
    } else {
        out->perm = (int32_t *)((uint8_t *)f->wmem + *off);
        CK(cudaMemcpy(out->perm, ph, pb, cudaMemcpyHostToDevice));
        S->prev_perm_h = ph, S->prev_perm_d = out->perm, S->prev_k = w->k;
    }
    *off += align_up(pb);
    return QN_OK;
}

static qn_status upload_weight(qn_llama_cuda *f, lutq_stager *S, const qn_weight *w, qn_qformat fmt, uint64_t *off,
                               dev_weight *out, qn_error *err) {
    const size_t bytes = qn_qformat_row_bytes(fmt, w->k) * (size_t)w->n;
    *out = (dev_weight){fmt, w->n, w->k, (uint8_t *)f->wmem + *off, false, NULL};
    *off += align_up(bytes);
    if (qn_lutq_gpu_is_format(fmt)) {
        out->act = w->lutq->perm != NULL;
        return upload_lutq_gpu(f, S, w, off, out, err);
    }
    if (w->lutq) { /* say why the block formats refused it */
        char why[256] = "";
        qn_qformat lf;
        if (qn_lutq_gpu_format(w->lutq, &lf, why, sizeof why) != QN_OK)
            QN_LOGW("cuda load: %s: no GPU block format (%s), dequantized to F16", w->name, why);
    }
    if (fmt == w->fmt && !w->lutq) {
        CK(cudaMemcpy(out->d, w->data, bytes, cudaMemcpyHostToDevice));
        return QN_OK;
    }
    if ((fmt == QN_QFORMAT_Q6_KP && w->fmt == QN_QFORMAT_Q6_K && !w->lutq) ||
        (fmt == QN_QFORMAT_Q3_KP && w->fmt == QN_QFORMAT_Q3_K && !w->lutq) ||
        (fmt == QN_QFORMAT_Q8_0P && w->fmt == QN_QFORMAT_Q8_0 && !w->lutq)) {
        uint8_t *h = malloc(bytes);
        const char *to = qn_qformat_name(fmt);
        if (!h) return qn_error_set(err, QN_ERR_NOMEM, "cuda load: out of host memory repacking %s to %s", w->name, to);
        qn_status st = fmt == QN_QFORMAT_Q6_KP   ? qn_q6kp_repack(w->data, h, w->n, w->k)
                       : fmt == QN_QFORMAT_Q3_KP ? qn_q3kp_repack(w->data, h, w->n, w->k)
                                                 : qn_q8_0p_repack(w->data, h, w->n, w->k);
        if (st != QN_OK) st = qn_error_set(err, st, "cuda load: %s: k = %lld cannot be repacked to %s", w->name, (long long)w->k, to);
        else if (cudaMemcpy(out->d, h, bytes, cudaMemcpyHostToDevice) != cudaSuccess)
            st = qn_error_set(err, QN_ERR_CUDA, "cuda load: copying %s failed", w->name);
        free(h);
        return st;
    }
    if (fmt != QN_QFORMAT_F16) return qn_error_set(err, QN_ERR_INTERNAL, "cuda load: %s: bad conversion", w->name);
    uint16_t *h = malloc(bytes);
    if (!h) return qn_error_set(err, QN_ERR_NOMEM, "cuda load: out of host memory converting %s", w->name);
    qn_status st = to_f16_host(w, h, err);
    if (st == QN_OK && cudaMemcpy(out->d, h, bytes, cudaMemcpyHostToDevice) != cudaSuccess)
        st = qn_error_set(err, QN_ERR_CUDA, "cuda load: copying %s failed", w->name);
    free(h);
    if (st == QN_OK)
        QN_LOGD("cuda load: %s: %s has no GPU kernel for K=%lld, dequantized to F16", w->name,
                QN_QFORMATS[w->fmt].name, (long long)w->k);
    return st;
}

static qn_status upload_vec(qn_llama_cuda *f, const float *v, int64_t n, uint64_t *off, float **out, qn_error *err) {
    if (!v) {
        *out = NULL;
        return QN_OK;
    }
    *out = (float *)((uint8_t *)f->wmem + *off);
    *off += align_up(sizeof(float) * (size_t)n);
    CK(cudaMemcpy(*out, v, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice));
    return QN_OK;
}

static qn_status upload_weights(qn_llama_cuda *f, lutq_stager *S, const qn_model *m, qn_error *err) {
    const qn_model_config *c = &m->cfg;
    uint64_t off = 0;
    qn_status st;
    if ((st = upload_weight(f, S, &m->tok_embd, embed_format(&m->tok_embd), &off, &f->tok_embd, err)) != QN_OK)
        return st;
    if (output_shares_embd(m))
        f->output = f->tok_embd;
    else if ((st = upload_weight(f, S, &m->output, dev_format(&m->output), &off, &f->output, err)) != QN_OK)
        return st;
    if ((st = upload_vec(f, m->output_norm, c->n_embd, &off, &f->output_norm, err)) != QN_OK) return st;
    if ((st = upload_vec(f, m->rope_freqs, c->rope_dim / 2, &off, &f->rope_freqs, err)) != QN_OK) return st;
    for (int il = 0; il < c->n_layer; il++) {
        const qn_layer_weights *L = &m->layers[il];
        dev_layer *D = &f->layers[il];
        const qn_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        dev_weight *ds[7] = {&D->wq, &D->wk, &D->wv, &D->wo, &D->gate, &D->up, &D->down};
        for (int i = 0; i < 7; i++)
            if ((st = upload_weight(f, S, ws[i], dev_format(ws[i]), &off, ds[i], err)) != QN_OK) return st;
        if ((st = upload_vec(f, L->attn_norm, c->n_embd, &off, &D->attn_norm, err)) != QN_OK ||
            (st = upload_vec(f, L->ffn_norm, c->n_embd, &off, &D->ffn_norm, err)) != QN_OK ||
            (st = upload_vec(f, L->bq, L->wq.n, &off, &D->bq, err)) != QN_OK ||
            (st = upload_vec(f, L->bk, L->wk.n, &off, &D->bk, err)) != QN_OK ||
            (st = upload_vec(f, L->bv, L->wv.n, &off, &D->bv, err)) != QN_OK)
            return st;
    }
    if (off > f->wbytes) return qn_error_set(err, QN_ERR_INTERNAL, "cuda load: weight plan %llu < used %llu",
                                             (unsigned long long)f->wbytes, (unsigned long long)off);
    return QN_OK;
}

/* Every weight to f->wmem; the lutq copies still in flight are waited for before returning. */
static qn_status upload_model(qn_llama_cuda *f, const qn_model *m, int load_threads, qn_error *err) {
    lutq_stager S;
    qn_status st = stager_init(&S, m, load_threads, err);
    if (st != QN_OK) return st;
    st = upload_weights(f, &S, m, err);
    const qn_status fin = stager_finish(&S, st == QN_OK ? err : NULL);
    return st != QN_OK ? st : fin;
}

/* ---------------------------------------------------------------- sizing */

typedef struct act_plan {
    size_t x, y, q, k, v, g, u, logits, xh, step, sparams, sampled, mm_ws, attn_ws, smp_ws, blas_ws, total;
    step_layout lay;
} act_plan;

static size_t mm_ws_at(const qn_quant_cuda_ctx *q, const dev_weight *w, int64_t n) {
    if (qn_lutq_gpu_is_format(w->fmt)) return qn_lutq_matmul_workspace_size(q, w->fmt, w->n, w->k, w->act, n);
    return qn_quant_matmul_workspace_size(q, w->fmt, QN_QUANT_PATH_AUTO, w->n, w->k, n);
}

static size_t mm_ws_for(const qn_quant_cuda_ctx *q, const dev_weight *w, int64_t n_max) {
    size_t best = 0;
    for (int64_t n = 1; n <= n_max; n = n < QN_QUANT_GEMV_MAX_TOKENS ? n + 1 : n * 2) {
        const size_t b = mm_ws_at(q, w, n);
        if (b > best) best = b;
    }
    const size_t b = mm_ws_at(q, w, n_max);
    return b > best ? b : best;
}

/* The grouped LQ4M call on ws (q, k, v; gate, up: mm_group) needs the split-K tiles of all of them at once. 0 when
 * they are not all LQ4M of one width and act-order. */
static size_t mm_group_ws_for(const qn_quant_cuda_ctx *q, const dev_weight *const *ws, int nw, int64_t n_max) {
    int64_t N[QN_QUANT_MAX_GROUP];
    for (int i = 0; i < nw; i++) {
        if (!qn_lq4m_is_format(ws[i]->fmt) || ws[i]->fmt != ws[0]->fmt || ws[i]->k != ws[0]->k ||
            ws[i]->act != ws[0]->act)
            return 0;
        N[i] = ws[i]->n;
    }
    size_t best = 0;
    for (int64_t n = 1; n <= n_max; n = n < QN_QUANT_GEMV_MAX_TOKENS ? n + 1 : n * 2) {
        const size_t b = qn_lq4m_workspace_size_group(q, ws[0]->fmt, QN_QUANT_PATH_AUTO, N, nw, ws[0]->k, ws[0]->act, n);
        if (b > best) best = b;
    }
    const size_t b = qn_lq4m_workspace_size_group(q, ws[0]->fmt, QN_QUANT_PATH_AUTO, N, nw, ws[0]->k, ws[0]->act, n_max);
    return b > best ? b : best;
}

static void plan_activations(const qn_llama_cuda *f, const qn_quant_cuda_ctx *q, act_plan *a) {
    const qn_model_config *c = &f->cfg;
    const int64_t T = f->p.max_tokens, S = f->p.max_seqs, E = c->n_embd;
    const int64_t HQ = (int64_t)c->n_head * c->head_dim, HK = (int64_t)c->n_head_kv * c->head_dim, F = c->n_ff;
    memset(a, 0, sizeof *a);
    step_layout *l = &a->lay;
    l->tokens = 0, l->pos = (size_t)T, l->seq = 2 * (size_t)T, l->slot = 3 * (size_t)T, l->rows = 4 * (size_t)T;
    l->tiles = 5 * (size_t)T, l->bt = 7 * (size_t)T, l->end = l->bt + (size_t)S * (size_t)f->max_blocks;
    a->x = align_up(sizeof(float) * T * E), a->y = a->x;
    a->q = align_up(sizeof(float) * T * HQ), a->k = a->v = align_up(sizeof(float) * T * HK);
    a->g = a->u = align_up(sizeof(float) * T * F);
    a->logits = align_up(sizeof(float) * T * c->n_vocab);
    a->xh = align_up(sizeof(uint16_t) * T * f->kmax);
    a->step = align_up(sizeof(int32_t) * l->end);
    a->sparams = align_up(sizeof(qn_sample_row_params) * T);
    a->sampled = align_up(sizeof(int32_t) * T);
    size_t mm = 0;
    for (int il = 0; il < c->n_layer; il++) {
        const dev_layer *D = &f->layers[il];
        const dev_weight *ws[7] = {&D->wq, &D->wk, &D->wv, &D->wo, &D->gate, &D->up, &D->down};
        for (int i = 0; i < 7; i++) {
            const size_t b = mm_ws_for(q, ws[i], T);
            if (b > mm) mm = b;
        }
        const size_t bq = mm_group_ws_for(q, ws, 3, T), bg = mm_group_ws_for(q, ws + 4, 2, T); /* q, k, v; gate, up */
        if (bq > mm) mm = bq;
        if (bg > mm) mm = bg;
    }
    const size_t bo = mm_ws_for(q, &f->output, T);
    a->mm_ws = align_up(bo > mm ? bo : mm);
    size_t at = 0;
    for (int32_t tiles = 1; tiles <= T; tiles++) {
        int64_t toks = (int64_t)tiles * QN_ATTN_TILE_MAX_TOKENS;
        if (toks > T) toks = T;
        const int32_t sp = qn_attn_cuda_splits(tiles, c->n_head_kv, f->p.max_ctx, q->n_sm);
        const size_t b = qn_attn_cuda_workspace_size((int32_t)toks, c->n_head, c->head_dim, sp);
        if (b > at) at = b;
    }
    a->attn_ws = align_up(at ? at : 16);
    a->smp_ws = align_up(qn_sample_cuda_workspace_size((int32_t)T, c->n_vocab));
    a->blas_ws = QN_QUANT_BLAS_WS_BYTES; /* cuBLAS's, so that graphs captured before any eager step match (quant.h) */
    a->total = a->x + a->y + a->q + a->k + a->v + a->g + a->u + a->logits + a->xh + a->step + a->sparams + a->sampled +
               a->mm_ws + a->attn_ws + a->smp_ws + a->blas_ws;
}

static qn_status check_params(const qn_model *m, const qn_llama_cuda_params *p, qn_error *err) {
    const qn_model_config *c = &m->cfg;
    if (p->max_tokens < 1 || p->max_seqs < 1 || p->max_ctx < 1 || p->n_blocks < 1 || p->block_size < 1)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "cuda: max_tokens, max_seqs, max_ctx, n_blocks, block_size must be >= 1");
    if (c->rope_scaling.type == QN_ROPE_SCALING_YARN)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "cuda: YaRN rope scaling is not supported yet");
    if (c->rope_scaling.type == QN_ROPE_SCALING_LLAMA3 && !m->rope_freqs)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "cuda: llama3 rope scaling without rope_freqs factors");
    const int hd = c->head_dim;
    if (hd != 64 && hd != 80 && hd != 96 && hd != 128 && hd != 256)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "cuda: head_dim %d has no attention kernel (64, 80, 96, 128, 256)", hd);
    const qn_weight *ws[3] = {&m->tok_embd, &m->output, &m->layers[0].wq};
    for (int i = 0; i < 3; i++)
        if (dev_format(ws[i]) == QN_QFORMAT_F16 && ws[i]->k % 32)
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "cuda: %s: K = %lld is not a multiple of 32", ws[i]->name,
                                (long long)ws[i]->k);
    return QN_OK;
}

static qn_status open_device(int device, struct cudaDeviceProp *prop, qn_error *err) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        return qn_error_set(err, QN_ERR_NO_DEVICE, "cuda: no usable GPU (%s); use --device cpu",
                            e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA devices");
    if (device < 0 || device >= n)
        return qn_error_set(err, QN_ERR_NO_DEVICE, "cuda: device %d does not exist (%d present)", device, n);
    CK(cudaSetDevice(device));
    CK(cudaGetDeviceProperties(prop, device));
    if (prop->major < 8)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "cuda: %s is sm_%d%d; quern's kernels need sm_80 or newer (A100, H100)",
                            prop->name, prop->major, prop->minor);
    return QN_OK;
}

static void set_dims(qn_llama_cuda *f, const qn_model *m, const qn_llama_cuda_params *p) {
    const qn_model_config *c = &m->cfg;
    f->cfg = *c;
    f->p = *p;
    if (f->p.max_seqs > f->p.max_tokens) f->p.max_seqs = f->p.max_tokens;
    f->max_blocks = (p->max_ctx + p->block_size - 1) / p->block_size;
    const int64_t E = c->n_embd, HQ = (int64_t)c->n_head * c->head_dim, F = c->n_ff;
    f->kmax = E > HQ ? E : HQ;
    if (F > f->kmax) f->kmax = F;
}

qn_status qn_llama_cuda_plan(const qn_model *m, const qn_llama_cuda_params *p, uint64_t *bytes, qn_error *err) {
    struct cudaDeviceProp prop; /* no GPU first (QN_ERR_NO_DEVICE), then what this model needs */
    qn_status st = open_device(p->device, &prop, err);
    if (st != QN_OK || (st = check_params(m, p, err)) != QN_OK) return st;
    qn_llama_cuda f = {0};
    set_dims(&f, m, p);
    f.layers = calloc((size_t)m->cfg.n_layer, sizeof(dev_layer));
    if (!f.layers) return qn_error_set(err, QN_ERR_NOMEM, "cuda: out of memory");
    /* formats and shapes only: plan_activations reads fmt/n/k of the device weights */
    for (int il = 0; il < m->cfg.n_layer; il++) {
        const qn_layer_weights *L = &m->layers[il];
        dev_layer *D = &f.layers[il];
        const qn_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        dev_weight *ds[7] = {&D->wq, &D->wk, &D->wv, &D->wo, &D->gate, &D->up, &D->down};
        for (int i = 0; i < 7; i++) *ds[i] = dev_weight_of(ws[i]);
    }
    f.output = output_weight_of(m);
    qn_quant_cuda_ctx q = {.device = p->device, .sm = prop.major * 10 + prop.minor, .n_sm = prop.multiProcessorCount};
    act_plan a;
    plan_activations(&f, &q, &a);
    free(f.layers);
    *bytes = weights_bytes(m) + a.total +
             qn_kv_cache_bytes(m->cfg.n_layer, p->n_blocks, p->block_size, m->cfg.n_head_kv, m->cfg.head_dim);
    return QN_OK;
}

qn_status qn_llama_cuda_kv_budget(const qn_model *m, int device, int32_t max_tokens, int32_t max_seqs, int32_t max_ctx,
                                  int32_t block_size, float utilization, uint64_t *kv_bytes, qn_error *err) {
    qn_llama_cuda_params p = qn_llama_cuda_params_default();
    p.device = device, p.max_tokens = max_tokens, p.max_seqs = max_seqs, p.max_ctx = max_ctx;
    p.block_size = block_size, p.n_blocks = 1;
    uint64_t base = 0;
    qn_status st = qn_llama_cuda_plan(m, &p, &base, err);
    if (st != QN_OK) return st;
    const qn_model_config *c = &m->cfg;
    base -= qn_kv_cache_bytes(c->n_layer, 1, block_size, c->n_head_kv, c->head_dim);
    size_t free_b = 0, total_b = 0;
    CK(cudaMemGetInfo(&free_b, &total_b));
    const double budget = (double)utilization * (double)total_b - (double)(total_b - free_b) - (double)base;
    const uint64_t one_seq = qn_kv_cache_bytes(c->n_layer, (max_ctx + block_size - 1) / block_size, block_size,
                                               c->n_head_kv, c->head_dim);
    if (budget < (double)one_seq)
        return qn_error_set(err, QN_ERR_DEVICE_OOM,
                            "cuda: out of GPU memory: weights + activations need %.1f MiB, %.1f of %.1f MiB are free, "
                            "so %.0f%% of the GPU leaves %.1f MiB for the KV cache; one sequence of %d tokens needs %.1f MiB "
                            "(lower --max-model-len / --max-num-batched-tokens, or raise --gpu-memory-utilization)",
                            base / 1048576.0, free_b / 1048576.0, total_b / 1048576.0, utilization * 100.0,
                            budget / 1048576.0, max_ctx, one_seq / 1048576.0);
    *kv_bytes = (uint64_t)budget;
    return QN_OK;
}

int32_t qn_llama_cuda_default_batch_tokens(int device) {
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
        (void)cudaGetLastError();
        return 2048;
    }
    char name[sizeof prop.name + 1];
    size_t i = 0;
    for (; i < sizeof prop.name && prop.name[i]; i++) name[i] = (char)tolower((unsigned char)prop.name[i]);
    name[i] = 0;
    return prop.totalGlobalMem >= (70ull << 30) && !strstr(name, "a100") ? 8192 : 2048;
}

/* ---------------------------------------------------------------- lifecycle */

static qn_status alloc_all(qn_llama_cuda *f, const qn_model *m, qn_error *err) {
    const qn_model_config *c = &m->cfg;
    act_plan a;
    plan_activations(f, &f->qctx, &a);
    f->lay = a.lay;
    const uint64_t kvb = qn_kv_cache_bytes(c->n_layer, f->p.n_blocks, f->p.block_size, c->n_head_kv, c->head_dim);
    const uint64_t need = f->wbytes + kvb + a.total;
    size_t free_b = 0, total_b = 0;
    CK(cudaMemGetInfo(&free_b, &total_b));
    if (need + (256ull << 20) > free_b)
        return qn_error_set(err, QN_ERR_DEVICE_OOM,
                            "cuda: out of GPU memory: the model needs %.1f MiB (weights %.1f, KV cache %.1f for %d blocks, "
                            "activations %.1f) + 256 MiB reserve, %.1f MiB of %.1f are free; lower --ctx-size / --batch-size",
                            need / 1048576.0, f->wbytes / 1048576.0, kvb / 1048576.0, f->p.n_blocks, a.total / 1048576.0,
                            free_b / 1048576.0, total_b / 1048576.0);
    CK(cudaMalloc(&f->wmem, f->wbytes));
    CK(cudaMalloc(&f->kvmem, kvb));
    CK(cudaMalloc(&f->amem, a.total));
    uint8_t *p = f->amem;
#define TAKE(field, type, sz) (f->field = (type)p, p += (sz))
    TAKE(x, float *, a.x), TAKE(y, float *, a.y), TAKE(q, float *, a.q), TAKE(kk, float *, a.k);
    TAKE(vv, float *, a.v), TAKE(g, float *, a.g), TAKE(u, float *, a.u), TAKE(logits, float *, a.logits);
    TAKE(xh, uint16_t *, a.xh), TAKE(step_d, int32_t *, a.step), TAKE(sparams_d, qn_sample_row_params *, a.sparams);
    TAKE(sampled_d, int32_t *, a.sampled), TAKE(mm_ws, void *, a.mm_ws), TAKE(attn_ws, void *, a.attn_ws);
    TAKE(smp_ws, void *, a.smp_ws), TAKE(qctx.blas_ws, void *, a.blas_ws);
#undef TAKE
    f->qctx.blas_ws_bytes = a.blas_ws;
    f->mm_ws_bytes = a.mm_ws, f->attn_ws_bytes = a.attn_ws, f->smp_ws_bytes = a.smp_ws;
    CK(cudaMemset(f->mm_ws, 0, a.mm_ws)); /* split-K counters start at zero (quant.h) */
    CK(cudaMemset(f->kvmem, 0, kvb));
    f->k = calloc((size_t)c->n_layer, sizeof(uint16_t *));
    f->v = calloc((size_t)c->n_layer, sizeof(uint16_t *));
    if (!f->k || !f->v) return qn_error_set(err, QN_ERR_NOMEM, "cuda: out of memory");
    const size_t per = (size_t)f->p.n_blocks * f->p.block_size * c->n_head_kv * c->head_dim;
    for (int il = 0; il < c->n_layer; il++) {
        f->k[il] = (uint16_t *)f->kvmem + (2 * (size_t)il) * per;
        f->v[il] = (uint16_t *)f->kvmem + (2 * (size_t)il + 1) * per;
    }
    CK(cudaMallocHost((void **)&f->step_h, sizeof(int32_t) * f->lay.end));
    CK(cudaMallocHost((void **)&f->sparams_h, sizeof(qn_sample_row_params) * (size_t)f->p.max_tokens));
    CK(cudaMallocHost((void **)&f->sampled_h, sizeof(int32_t) * (size_t)f->p.max_tokens));
    CK(cudaMallocHost((void **)&f->logits_h, sizeof(float) * (size_t)f->p.max_seqs * (size_t)c->n_vocab));
    memset(f->step_h, 0, sizeof(int32_t) * f->lay.end);
    for (int i = 0; i < 1 + QN_SAMPLE_PATH_COUNT; i++)
        if (!(f->graphs[i] = calloc((size_t)f->p.max_seqs + 1, sizeof(graph_entry))))
            return qn_error_set(err, QN_ERR_NOMEM, "cuda: out of memory");
    return QN_OK;
}

qn_status qn_llama_cuda_create(const qn_model *m, const qn_llama_cuda_params *p, qn_llama_cuda **out, qn_error *err) {
    struct cudaDeviceProp prop; /* no GPU first (QN_ERR_NO_DEVICE), then what this model needs */
    qn_status st = open_device(p->device, &prop, err);
    if (st != QN_OK || (st = check_params(m, p, err)) != QN_OK) return st;
    qn_llama_cuda *f = calloc(1, sizeof *f);
    if (!f || !(f->layers = calloc((size_t)m->cfg.n_layer, sizeof(dev_layer)))) {
        free(f);
        return qn_error_set(err, QN_ERR_NOMEM, "cuda: out of memory");
    }
    set_dims(f, m, p);
    f->graphs_on = p->cuda_graphs;
    f->mmvq_stage = p->mmvq_stage;
    snprintf(f->name, sizeof f->name, "%s (sm_%d%d, %d SMs)", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    f->wbytes = weights_bytes(m);
    if (cublasCreate(&f->cublas) != CUBLAS_STATUS_SUCCESS) {
        st = qn_error_set(err, QN_ERR_CUDA, "cuda: cublasCreate failed");
        goto fail;
    }
    if ((st = qn_quant_cuda_ctx_init(&f->qctx, p->device, f->cublas)) != QN_OK) {
        qn_error_set(err, st, "cuda: reading device %d properties failed", p->device);
        goto fail;
    }
    if (cudaStreamCreateWithFlags(&f->stream, cudaStreamNonBlocking) != cudaSuccess) {
        st = qn_error_set(err, QN_ERR_CUDA, "cuda: cannot create a stream");
        goto fail;
    }
    /* plan_activations needs the device formats: set them before allocating */
    for (int il = 0; il < m->cfg.n_layer; il++) {
        const qn_layer_weights *L = &m->layers[il];
        dev_layer *D = &f->layers[il];
        const qn_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        dev_weight *ds[7] = {&D->wq, &D->wk, &D->wv, &D->wo, &D->gate, &D->up, &D->down};
        for (int i = 0; i < 7; i++) *ds[i] = dev_weight_of(ws[i]);
    }
    f->output = output_weight_of(m);
    if ((st = alloc_all(f, m, err)) != QN_OK || (st = upload_model(f, m, p->load_threads, err)) != QN_OK) goto fail;
    if (!(f->tap_buf = malloc(sizeof(float) * (size_t)f->p.max_tokens * (size_t)f->kmax))) {
        st = qn_error_set(err, QN_ERR_NOMEM, "cuda: out of memory");
        goto fail;
    }
    QN_LOGI("cuda: %s: weights %.1f MiB, KV %d blocks x %d", f->name, f->wbytes / 1048576.0, p->n_blocks, p->block_size);
    *out = f;
    return QN_OK;
fail:
    qn_llama_cuda_destroy(f);
    return st;
}

void qn_llama_cuda_destroy(qn_llama_cuda *f) {
    if (!f) return;
    for (int i = 0; i < 1 + QN_SAMPLE_PATH_COUNT; i++) {
        if (!f->graphs[i]) continue;
        for (int32_t t = 0; t <= f->p.max_seqs; t++)
            if (f->graphs[i][t].exec) cudaGraphExecDestroy(f->graphs[i][t].exec);
        free(f->graphs[i]);
    }
    if (f->stream) cudaStreamSynchronize(f->stream);
    tp_time_free(f);
    cudaFree(f->wmem), cudaFree(f->kvmem), cudaFree(f->amem);
    cudaFreeHost(f->step_h), cudaFreeHost(f->sparams_h), cudaFreeHost(f->sampled_h), cudaFreeHost(f->logits_h);
    if (f->stream) cudaStreamDestroy(f->stream);
    if (f->cublas) cublasDestroy(f->cublas);
    free(f->k), free(f->v), free(f->layers), free(f->tap_buf);
    free(f);
}

qn_status qn_llama_cuda_copy_block(qn_llama_cuda *f, int32_t src, int32_t dst, qn_error *err) {
    if (src < 0 || dst < 0 || src >= f->p.n_blocks || dst >= f->p.n_blocks)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "cuda: copy block %d -> %d out of range", src, dst);
    CK(cudaSetDevice(f->qctx.device));
    for (int il = 0; il < f->cfg.n_layer; il++)
        KS(qn_kv_copy_block_cuda(f->k[il], f->v[il], src, dst, f->p.block_size, f->cfg.n_head_kv, f->cfg.head_dim,
                                 f->stream));
    return QN_OK;
}

/* ---------------------------------------------------------------- the step */

/* Taps copy device rows to the host as f32 (fp16 rows converted). */
static qn_status tap_rows(qn_llama_cuda *f, const char *name, int il, const void *rows, bool half, int64_t n_tok,
                          int64_t n, int64_t ld, qn_error *err) {
    if (!f->tap) return QN_OK;
    const size_t esz = half ? 2 : 4;
    CK(cudaStreamSynchronize(f->stream));
    CK(cudaMemcpy(f->tap_buf, rows, esz * (size_t)n_tok * (size_t)ld, cudaMemcpyDeviceToHost));
    if (half) { /* widen in place, back to front */
        const uint16_t *h = (const uint16_t *)f->tap_buf;
        for (int64_t i = n_tok * ld - 1; i >= 0; i--) f->tap_buf[i] = qn_f16_to_f32(h[i]);
    }
    f->tap(f->tap_user, name, il, f->tap_buf, n_tok, n, ld);
    return QN_OK;
}

#define TRY(call)                                                                                         \
    do {                                                                                                  \
        const qn_status s2_ = (call);                                                                     \
        if (s2_ != QN_OK) return s2_;                                                                     \
    } while (0)

/* Whether the matmul of w on n tokens writes int8 activations of its x into mm_ws (quant.h x_ready). */
static bool mm_takes_q8(const qn_llama_cuda *f, const dev_weight *w, int64_t n) {
    if (qn_lutq_gpu_is_format(w->fmt)) /* act-order too: x is quantized through perm (f->q8_perm) */
        return (w->fmt == QN_QFORMAT_LQ4 || w->fmt == QN_QFORMAT_LQ8) && qn_lutq_use_decode(w->fmt, f->qctx.sm, n);
    return qn_quant_takes_q8_x(w->fmt, f->qctx.sm, n);
}

/* y[n][w->n] = x[n][w->k] . W^T. same_x: the int8 activations of x may be in the workspace already, left
 * by the previous mm on x, unchanged since (q, k, v on one normed x; gate, up), or by the kernel that wrote x
 * (q8_written): when this call takes int8 activations and f->q8_* say they are x's, it reuses them instead
 * of quantizing x again (one launch less). */
static qn_status mm_x(qn_llama_cuda *f, const dev_weight *w, const uint16_t *x, int64_t n, float *y, bool same_x,
                      qn_error *err) {
    const bool q8 = mm_takes_q8(f, w, n);
    qn_quant_matmul_opts o = {.path = QN_QUANT_PATH_AUTO, .mmvq_stage = f->mmvq_stage};
    o.x_ready = same_x && q8 && f->q8_x == x && f->q8_n == n && f->q8_k == w->k && f->q8_perm == w->perm;
    if (qn_lutq_gpu_is_format(w->fmt)) {
        const qn_lutq_gpu_weight lw = {w->fmt, w->n, w->k, w->d, w->perm};
        KS(qn_lutq_matmul_cuda_ex(&f->qctx, &lw, x, n, y, f->mm_ws, f->mm_ws_bytes, f->stream, &o));
    } else {
        KS(qn_quant_matmul_cuda_ex(&f->qctx, w->fmt, w->d, w->n, w->k, x, n, y, f->mm_ws, f->mm_ws_bytes, f->stream,
                                   &o));
    }
    f->q8_x = q8 ? x : NULL, f->q8_n = n, f->q8_k = w->k, f->q8_perm = w->perm;
    return QN_OK;
}

static qn_status mm(qn_llama_cuda *f, const dev_weight *w, const uint16_t *x, int64_t n, float *y, qn_error *err) {
    return mm_x(f, w, x, n, y, false, err);
}

/* ys[i][n][ws[i]->n] = x . W_i^T for the nw weights on the same x (q, k, v; gate, up): a run of weights of one
 * format and width goes as one grouped launch of the int8 kernel when it takes one (quant.h
 * qn_quant_matmul_group_cuda: the small matrices share the large one's waves), everything else one by one as
 * mm_x. same_x: as mm_x, for the first weight; the later ones see x's q8 from the first. */
static qn_status mm_group(qn_llama_cuda *f, const dev_weight *const *ws, int nw, const uint16_t *x, int64_t n,
                          float *const *ys, bool same_x, qn_error *err) {
    for (int i = 0; i < nw;) {
        int j = i + 1;
        while (j < nw && j - i < QN_QUANT_MAX_GROUP && ws[j]->fmt == ws[i]->fmt && ws[j]->k == ws[i]->k &&
               ws[j]->perm == ws[i]->perm)
            j++;
        const bool q8 = mm_takes_q8(f, ws[i], n);
        if (j - i > 1 && qn_lq4m_is_format(ws[i]->fmt)) { /* one launch (x gathered once with a perm), lq4m.h */
            qn_quant_mat mats[QN_QUANT_MAX_GROUP];
            for (int t = i; t < j; t++) mats[t - i] = (qn_quant_mat){ws[t]->d, ws[t]->n, ys[t]};
            const qn_quant_matmul_opts o = {.path = QN_QUANT_PATH_AUTO};
            KS(qn_lq4m_matmul_group_cuda(&f->qctx, ws[i]->fmt, mats, j - i, ws[i]->k, ws[i]->perm, x, n, f->mm_ws, f->mm_ws_bytes,
                                         f->stream, &o));
            f->q8_x = NULL; /* no int8 activations written */
            i = j;
            continue;
        }
        if (j - i > 1 && (!ws[i]->perm || q8)) {
            qn_quant_mat mats[QN_QUANT_MAX_GROUP];
            for (int t = i; t < j; t++) mats[t - i] = (qn_quant_mat){ws[t]->d, ws[t]->n, ys[t]};
            qn_quant_matmul_opts o = {.path = QN_QUANT_PATH_AUTO, .mmvq_stage = f->mmvq_stage};
            o.x_ready = (same_x || i > 0) && q8 && f->q8_x == x && f->q8_n == n && f->q8_k == ws[i]->k &&
                        f->q8_perm == ws[i]->perm;
            qn_status st = QN_OK;
            if (ws[i]->perm && !o.x_ready) { /* the grouped kernel's own quantizer knows no perm */
                const qn_lutq_gpu_weight lw = {ws[i]->fmt, ws[i]->n, ws[i]->k, ws[i]->d, ws[i]->perm};
                st = qn_lutq_quantize_x_cuda(&f->qctx, &lw, x, n, f->mm_ws, f->mm_ws_bytes, f->stream);
                o.x_ready = st == QN_OK;
            }
            if (st == QN_OK)
                st = qn_quant_matmul_group_cuda(&f->qctx, ws[i]->fmt, mats, j - i, ws[i]->k, x, n, f->mm_ws,
                                                f->mm_ws_bytes, f->stream, &o);
            if (st == QN_OK) {
                f->q8_x = q8 ? x : NULL, f->q8_n = n, f->q8_k = ws[i]->k, f->q8_perm = ws[i]->perm;
                i = j;
                continue;
            }
            if (st != QN_ERR_UNSUPPORTED) KS(st);
        }
        TRY(mm_x(f, ws[i], x, n, ys[i], same_x || i > 0, err));
        i++;
    }
    return QN_OK;
}

/* The int8 activations that the kernel writing x (a norm or silu_mul, n rows of K) should write along with
 * it for the matmul of w right after (ops_cuda.h q8), or NULL: that matmul does not take them (n past the
 * int8 path, F16/BF16 weights, act-order or LNF4/LFP4 blocks, a width other than w's) or the workspace
 * cannot hold them. Saves the quantizer launch of the matmul (one per norm and silu_mul at decode). */
static const qn_quant_q8_x *q8_for(const qn_llama_cuda *f, const dev_weight *w, int64_t n, int64_t K,
                                   qn_quant_q8_x *buf) {
    if (w->k != K || w->perm || !mm_takes_q8(f, w, n) ||
        !qn_quant_q8_x_in_workspace(f->mm_ws, f->mm_ws_bytes, n, K, buf))
        return NULL;
    return buf;
}

/* After the kernel that wrote x with q8 (q8_for) was enqueued: the matmul on x with same_x takes them
 * (x_ready). Called after every such kernel, also without q8, so that no earlier x's q8 is taken for x. */
static void q8_written(qn_llama_cuda *f, const qn_quant_q8_x *q8, const uint16_t *x, int64_t n, int64_t K) {
    f->q8_x = q8 ? x : NULL, f->q8_n = n, f->q8_k = K, f->q8_perm = NULL;
}


/* Enqueues one step on the stream. The staging buffers hold the step arrays; n_out rows wanted;
 * sample: GPU sampling into sampled_h, else logits (to logits_dst when non-NULL, else logits_h). */
static qn_status enqueue_step(qn_llama_cuda *f, int32_t T, int32_t n_seqs, int32_t n_out, bool sample,
                              float *logits_dst, qn_error *err) {
    const qn_model_config *c = &f->cfg;
    const int64_t E = c->n_embd, HQ = (int64_t)c->n_head * c->head_dim, F = c->n_ff, V = c->n_vocab;
    const step_layout *l = &f->lay;
    int32_t *sd = f->step_d;
    const size_t n_copy = l->bt + (size_t)n_seqs * (size_t)f->max_blocks;
    CK(cudaMemcpyAsync(sd, f->step_h, sizeof(int32_t) * n_copy, cudaMemcpyHostToDevice, f->stream));
    const qn_rope_cuda_params rope = {
        .rope_dim = c->rope_dim, .neox = c->rope_style == QN_ROPE_STYLE_NEOX, .theta_base = c->rope_theta,
        .freq_scale = c->rope_scaling.type == QN_ROPE_SCALING_LINEAR && c->rope_scaling.factor > 0
                          ? 1.0f / c->rope_scaling.factor : 1.0f,
        .freq_factors = f->rope_freqs, .pdl = f->qctx.sm >= 90};

    nvtxRangePushA("model.forward");
    f->ar_i = 0;
    TRY(embed_tokens(f, sd + l->tokens, T, err));
    char lname[32];
    qn_quant_q8_x q8b; /* the norms and silu_mul write the q8 activations of their output (q8_for) */
    const qn_quant_q8_x *q8;
    for (int il = 0; il < c->n_layer; il++) {
        const dev_layer *D = &f->layers[il];
        snprintf(lname, sizeof lname, "layer.%d", il);
        nvtxRangePushA(lname);
        nvtxRangePushA("attn");
        q8 = q8_for(f, &D->wq, T, E, &q8b);
        if (il == 0 || f->tap) {
            if (il > 0) {
                KS(qn_add_rmsnorm_cuda(f->x, f->y, T, E, NULL, c->rms_eps, NULL, NULL, f->stream));
                TRY(tap_rows(f, "l_out", il - 1, f->x, false, T, E, E, err));
            }
            KS(qn_rmsnorm_cuda(f->x, NULL, T, E, D->attn_norm, c->rms_eps, f->xh, q8, f->stream));
        } else { /* previous layer's down-projection residual, fused with this layer's norm */
            KS(qn_add_rmsnorm_cuda(f->x, f->y, T, E, D->attn_norm, c->rms_eps, f->xh, q8, f->stream));
        }
        q8_written(f, q8, f->xh, T, E);
        TRY(tap_rows(f, "attn_norm", il, f->xh, true, T, E, E, err));
        {
            const dev_weight *const qkv[3] = {&D->wq, &D->wk, &D->wv};
            float *const qkv_y[3] = {f->q, f->kk, f->vv};
            TRY(mm_group(f, qkv, 3, f->xh, T, qkv_y, q8 != NULL, err));
        }
        KS(qn_rope_kv_write_cuda(f->q, f->kk, f->vv, D->bq, D->bk, D->bv, sd + l->pos, sd + l->slot, T, c->n_head,
                                 c->n_head_kv, c->head_dim, &rope, QN_KV_F16, f->k[il], f->v[il], f->stream));
        TRY(tap_rows(f, "q", il, f->q, false, T, HQ, HQ, err));
        const qn_attn_cuda_args at = {
            .q = f->q, .k_cache = f->k[il], .v_cache = f->v[il], .kv_dtype = QN_KV_F16, .positions = sd + l->pos,
            .seq_idx = sd + l->seq, .block_tables = sd + l->bt, .max_blocks_per_seq = f->max_blocks,
            .tiles = (const qn_attn_tile *)(sd + l->tiles), .n_tiles = f->n_attn_tiles, .n_single = f->n_attn_single, .n_tokens = T,
            .n_heads = c->n_head, .n_kv_heads = c->n_head_kv, .head_dim = c->head_dim, .block_size = f->p.block_size,
            .max_ctx = f->p.max_ctx, .n_splits = 0, .scale = 1.0f / sqrtf((float)c->head_dim), .out = f->xh,
            .workspace = f->attn_ws, .ws_bytes = f->attn_ws_bytes, .pdl = f->qctx.sm >= 90};
        KS(qn_attn_paged_cuda(&at, f->qctx.n_sm, f->stream));
        TRY(tap_rows(f, "kqv_out", il, f->xh, true, T, HQ, HQ, err));
        TRY(mm(f, &D->wo, f->xh, T, f->y, err));
        if (f->comm) TRY(tp_allreduce(f, f->y, (size_t)T * (size_t)E, err));
        nvtxRangePop();
        nvtxRangePushA("mlp");
        q8 = q8_for(f, &D->gate, T, E, &q8b);
        KS(qn_add_rmsnorm_cuda(f->x, f->y, T, E, D->ffn_norm, c->rms_eps, f->xh, q8, f->stream));
        q8_written(f, q8, f->xh, T, E);
        TRY(tap_rows(f, "ffn_inp", il, f->x, false, T, E, E, err));
        {
            const dev_weight *const gu[2] = {&D->gate, &D->up};
            float *const gu_y[2] = {f->g, f->u};
            TRY(mm_group(f, gu, 2, f->xh, T, gu_y, q8 != NULL, err));
        }
        q8 = q8_for(f, &D->down, T, F, &q8b);
        KS(qn_silu_mul_cuda(f->g, f->u, T, F, f->xh, q8, f->stream));
        q8_written(f, q8, f->xh, T, F);
        TRY(mm_x(f, &D->down, f->xh, T, f->y, q8 != NULL, err));
        if (f->comm) TRY(tp_allreduce(f, f->y, (size_t)T * (size_t)E, err));
        nvtxRangePop();
        nvtxRangePop();
    }
    KS(qn_add_rmsnorm_cuda(f->x, f->y, T, E, NULL, c->rms_eps, NULL, NULL, f->stream));
    TRY(tap_rows(f, "l_out", c->n_layer - 1, f->x, false, T, E, E, err));
    if (n_out > 0) { /* the n_out rows wanted, gathered: the LM head (and its q8) sees n_out rows */
        q8 = q8_for(f, &f->output, n_out, E, &q8b);
        KS(qn_rmsnorm_cuda(f->x, sd + l->rows, n_out, E, f->output_norm, c->rms_eps, f->xh, q8, f->stream));
        q8_written(f, q8, f->xh, n_out, E);
        TRY(mm_x(f, &f->output, f->xh, n_out, f->logits, q8 != NULL, err));
        if (sample) {
            nvtxRangePushA("sample");
            CK(cudaMemcpyAsync(f->sparams_d, f->sparams_h, sizeof(qn_sample_row_params) * (size_t)n_out,
                               cudaMemcpyHostToDevice, f->stream));
            KS(qn_sample_cuda(f->logits, n_out, (int32_t)V, f->sparams_d, f->smp_path, f->sampled_d, f->smp_ws,
                              f->smp_ws_bytes, f->stream));
            CK(cudaMemcpyAsync(f->sampled_h, f->sampled_d, sizeof(int32_t) * (size_t)n_out, cudaMemcpyDeviceToHost,
                               f->stream));
            nvtxRangePop();
        } else {
            TRY(logits_to_host(f, logits_dst ? logits_dst : f->logits_h, n_out, err));
        }
    }
    nvtxRangePop();
    return QN_OK;
}

/* The token count a pure-decode step is padded up to when it runs as a CUDA graph: 1, 2, 4, then multiples
 * of 8 (the capture sizes vLLM uses). A server's decode steps come in every count from 1 to max_seqs as
 * requests start and finish, and each new count captured and instantiated its own graph: ~26 ms of host time
 * with the GPU idle, measured on an H200 (bench/results/gpu-serve-2026-12-02.md; 18 captures in a 512-request
 * run with the padding). Padding rows are token 0 at position 0 of sequence 0 with no KV slot (nothing
 * stored), sampled greedily, never returned. */
static int32_t decode_bucket(int32_t T) { return T <= 2 ? T : T <= 4 ? 4 : (T + 7) / 8 * 8; }

/* Staged rows [t0, t1) become padding rows (above) and the step a pure-decode one of t1 tokens. */
static void pad_decode_rows(qn_llama_cuda *f, int32_t t0, int32_t t1) {
    const step_layout *l = &f->lay;
    int32_t *h = f->step_h;
    qn_attn_tile *tiles = (qn_attn_tile *)(h + l->tiles);
    for (int32_t t = t0; t < t1; t++) {
        h[l->tokens + t] = 0, h[l->pos + t] = 0, h[l->seq + t] = 0, h[l->slot + t] = -1, h[l->rows + t] = t;
        tiles[t] = (qn_attn_tile){t, 1};
    }
    f->n_attn_tiles = f->n_attn_single = t1;
    f->run_T = f->run_seqs = f->run_out = t1;
}

/* Fills the staging arrays from the batch; returns whether it is a pure-decode step (graph-able). Sets
 * run_T / run_seqs / run_out: the batch's, or for a decode step that will replay a graph, padded to
 * decode_bucket (the graph of a count copies that many block-table rows). */
static bool stage_batch(qn_llama_cuda *f, const qn_fwd_batch *b) {
    const step_layout *l = &f->lay;
    int32_t *h = f->step_h;
    const size_t T = (size_t)b->n_tokens;
    memcpy(h + l->tokens, b->tokens, sizeof(int32_t) * T);
    memcpy(h + l->pos, b->positions, sizeof(int32_t) * T);
    memcpy(h + l->seq, b->seq_idx, sizeof(int32_t) * T);
    memcpy(h + l->slot, b->slot_mapping, sizeof(int32_t) * T);
    memcpy(h + l->rows, b->out_rows, sizeof(int32_t) * (size_t)b->n_out);
    f->n_attn_tiles = qn_attn_make_tiles(b->seq_idx, b->positions, b->n_tokens, (qn_attn_tile *)(h + l->tiles));
    f->n_attn_single = qn_attn_singles_first((qn_attn_tile *)(h + l->tiles), f->n_attn_tiles);
    /* block tables re-strided to the fixed capacity; only the entries the step reads */
    for (int32_t s = 0; s < b->n_seqs; s++) {
        int32_t *dst = h + l->bt + (size_t)s * f->max_blocks;
        const int32_t n = b->max_blocks_per_seq < f->max_blocks ? b->max_blocks_per_seq : f->max_blocks;
        memcpy(dst, b->block_tables + (size_t)s * b->max_blocks_per_seq, sizeof(int32_t) * (size_t)n);
        for (int32_t i = n; i < f->max_blocks; i++) dst[i] = 0;
    }
    bool decode = f->n_attn_tiles == b->n_tokens && b->n_out == b->n_tokens && b->n_seqs == b->n_tokens;
    for (int32_t i = 0; decode && i < b->n_out; i++) decode = b->out_rows[i] == i;
    f->run_T = b->n_tokens, f->run_seqs = b->n_seqs, f->run_out = b->n_out;
    const int32_t Tp = decode_bucket(b->n_tokens);
    if (decode && f->graphs_on && !f->tap && Tp > b->n_tokens && Tp <= f->p.max_seqs && Tp <= f->p.max_tokens)
        pad_decode_rows(f, b->n_tokens, Tp);
    return decode;
}

static qn_status check(qn_llama_cuda *f, const qn_fwd_batch *b, qn_error *err) {
    const qn_fwd_limits lim = {.max_tokens = f->p.max_tokens, .max_seqs = f->p.max_seqs, .max_ctx = f->p.max_ctx,
                               .n_slots = (int64_t)f->p.n_blocks * f->p.block_size, .block_size = f->p.block_size};
    return qn_fwd_batch_check(b, &f->cfg, &lim, err);
}

/* Captures and instantiates ge, the graph of the staged decode step (run_T tokens; sampling on
 * f->smp_path when sample). A capture that fails turns graphs off (steps then run kernel by kernel) and
 * is not an error; QN_ERR_CUDA only when the stream cannot even begin one. */
static qn_status capture_graph(qn_llama_cuda *f, graph_entry *ge, bool sample, qn_error *err) {
    const double tc = host_now_s();
    const int32_t T = f->run_T;
    ge->tried = true;
    cudaGraph_t g = NULL;
    qn_error cap_err = {0};
    CK(cudaStreamBeginCapture(f->stream, cudaStreamCaptureModeThreadLocal));
    const qn_status st = enqueue_step(f, T, f->run_seqs, f->run_out, sample, NULL, &cap_err);
    const cudaError_t ce = cudaStreamEndCapture(f->stream, &g);
    if (st == QN_OK && ce == cudaSuccess && cudaGraphInstantiate(&ge->exec, g, 0) == cudaSuccess) {
        /* the exec's device side now, not on its first launch mid-serving */
        if (cudaGraphUpload(ge->exec, f->stream) != cudaSuccess || cudaStreamSynchronize(f->stream) != cudaSuccess)
            (void)cudaGetLastError(); /* the first launch uploads it then */
        QN_LOGD("cuda: captured the decode graph for %d tokens", T);
    } else {
        QN_LOGW("cuda: graph capture for %d tokens failed (%s); running without graphs",
                T, st != QN_OK ? cap_err.msg : cudaGetErrorString(ce));
        ge->exec = NULL;
        f->graphs_on = false;
        (void)cudaGetLastError();
    }
    if (g) cudaGraphDestroy(g);
    f->ht.capture_s += host_now_s() - tc, f->ht.n_captures++;
    return QN_OK;
}

qn_status qn_llama_cuda_capture_decode_graphs(qn_llama_cuda *f, int32_t max_tokens, int32_t *n_captured,
                                              qn_error *err) {
    *n_captured = 0;
    if (!f->graphs_on || f->tap || vocab_split(f)) return QN_OK;
    CK(cudaSetDevice(f->qctx.device));
    int32_t lim = max_tokens < f->p.max_seqs ? max_tokens : f->p.max_seqs;
    if (lim > f->p.max_tokens) lim = f->p.max_tokens;
    for (int32_t T = 1; T <= lim && f->graphs_on; T = decode_bucket(T + 1)) {
        /* a decode step of T padding rows (no KV slot: nothing stored), block tables of zeros, greedy */
        pad_decode_rows(f, 0, T);
        memset(f->step_h + f->lay.bt, 0, sizeof(int32_t) * (size_t)T * (size_t)f->max_blocks);
        memset(f->sparams_h, 0, sizeof(qn_sample_row_params) * (size_t)T);
        for (int path = 0; path < QN_SAMPLE_PATH_COUNT && f->graphs_on; path++) {
            graph_entry *ge = &f->graphs[1 + path][T];
            if (ge->exec || ge->tried) continue;
            f->smp_path = (qn_sample_path)path;
            /* one eager run first, as vLLM warms up before each capture: libraries that set themselves up on
             * a shape's first call (cuBLAS's heuristics) then do so outside the capture; graphs captured cold
             * ran 8B F16 decode 3% slower (H200) */
            TRY(enqueue_step(f, T, T, T, true, NULL, err));
            CK(cudaStreamSynchronize(f->stream));
            TRY(capture_graph(f, ge, true, err));
            *n_captured += ge->exec != NULL;
        }
    }
    return QN_OK;
}

/* Runs a staged step: replays (capturing on first use) the graph of a pure-decode shape, else
 * enqueues directly; then waits for the stream. */
static qn_status run_step(qn_llama_cuda *f, const qn_fwd_batch *b, bool decode, bool sample, float *logits_dst,
                          qn_error *err) {
    const double t0 = f->t_entry;
    CK(cudaSetDevice(f->qctx.device)); /* the calling thread may not be the one that created f (engine thread) */
    if (f->step == f->p.profile_begin && f->p.profile_begin <= f->p.profile_end) cudaProfilerStart();
    const int32_t T = f->run_T;
    graph_entry *ge = decode && f->graphs_on && !f->tap && T <= f->p.max_seqs ? &f->graphs[sample ? 1 + f->smp_path : 0][T] : NULL;
    if (ge && !ge->exec && !ge->tried) TRY(capture_graph(f, ge, sample, err));
    const double tl = host_now_s(); /* staging (and any capture) done: the launches start */
    double t1;
    if (ge && ge->exec) {
        nvtxRangePushA("model.forward.graph");
        CK(cudaGraphLaunch(ge->exec, f->stream));
        nvtxRangePop();
        t1 = host_now_s();
        f->ht.n_graph_steps++;
        CK(cudaStreamSynchronize(f->stream));
        if (!sample && logits_dst) { /* this rank's columns only (all of them without tensor parallel) */
            const size_t V = (size_t)f->cfg.n_vocab, vb = (size_t)f->vocab_begin, nl = (size_t)f->output.n;
            for (int32_t r = 0; r < b->n_out; r++)
                memcpy(logits_dst + r * V + vb, f->logits_h + r * V + vb, sizeof(float) * nl);
        }
    } else {
        TRY(enqueue_step(f, T, f->run_seqs, f->run_out, sample, logits_dst, err));
        t1 = host_now_s();
        CK(cudaStreamSynchronize(f->stream));
    }
    const double t2 = host_now_s();
    f->ht.stage_s += tl - t0, f->ht.launch_s += t1 - tl, f->ht.wait_s += t2 - t1, f->ht.n_steps++;
    if (ge && ge->exec) f->ht.graph_stage_s += tl - t0, f->ht.graph_launch_s += t1 - tl, f->ht.graph_wait_s += t2 - t1;
    CK(cudaGetLastError());
    tp_time_collect(f);
    if (f->step == f->p.profile_end && f->p.profile_begin <= f->p.profile_end) cudaProfilerStop();
    f->step++;
    return QN_OK;
}

qn_status qn_llama_cuda_forward(qn_llama_cuda *f, const qn_fwd_batch *b, float *logits, qn_error *err) {
    f->t_entry = host_now_s();
    TRY(check(f, b, err));
    if (b->n_out > 0 && !logits) return qn_error_set(err, QN_ERR_INVALID_ARG, "cuda forward: logits buffer is NULL");
    const bool decode = stage_batch(f, b);
    return run_step(f, b, decode, false, logits, err);
}

qn_status qn_llama_cuda_forward_sample(qn_llama_cuda *f, const qn_fwd_batch *b, const qn_sample_row_params *params,
                                       int32_t *tokens, qn_error *err) {
    f->t_entry = host_now_s();
    TRY(check(f, b, err));
    if (b->n_out < 1) return qn_error_set(err, QN_ERR_INVALID_ARG, "cuda forward: sampling needs out rows");
    if (vocab_split(f))
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "cuda forward: tensor parallel splits the vocabulary; sample on the host");
    const bool decode = stage_batch(f, b);
    memcpy(f->sparams_h, params, sizeof(qn_sample_row_params) * (size_t)b->n_out);
    for (int32_t r = b->n_out; r < f->run_out; r++) f->sparams_h[r] = (qn_sample_row_params){0}; /* padding: greedy */
    f->smp_path = qn_sample_cuda_path(params, b->n_out);
    TRY(run_step(f, b, decode, true, NULL, err));
    memcpy(tokens, f->sampled_h, sizeof(int32_t) * (size_t)b->n_out);
    return QN_OK;
}

#endif /* QN_HAVE_CUDA */
