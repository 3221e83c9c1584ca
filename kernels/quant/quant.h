/* quant.h — the one header runtime/ sees for quantized matmuls on the GPU.
 * Owns: the GPU entry points for GGUF weight formats (matmul, dequant-to-fp16), their path
 * selection predicates and workspace sizing. Not: formats and CPU references (qformat.h), CPU
 * kernels (cpu_kernels.h), device memory (runtime/core/arena), cuBLAS handle lifetime.
 *
 * Contract of qn_quant_matmul_cuda (all pointers device memory, all work on `stream`):
 *   w  [N][K]  ggml blocks of fmt, rows back to back (row stride qn_qformat_row_bytes(fmt, K)),
 *              16-byte aligned; nothing past the last block is read.
 *   x  [n][K]  fp16 activations, row-major, 16-byte aligned. (fp16: it is what the tensor cores
 *              take; the runtime's norms/activations write fp16 for the next matmul.)
 *   y  [n][N]  f32 outputs, overwritten (no accumulate), f32 accumulation throughout.
 *   K: a multiple of 32 (F16, BF16, Q4_0..Q8_0) or 256 (K-quants); N, n >= 0.
 * Weights go through fp16 on every path but MMVQ (tensor cores / cuBLAS fp16): |w| must fit fp16, as
 * in ggml-cuda; real GGUF weights do. MMVQ (the decode default) instead rounds x to int8 per 32.
 * This header needs no CUDA headers: stream and cuBLAS handle are passed as void *. It is
 * declared in every build; the definitions exist only when QN_HAVE_CUDA is set. */
#ifndef QN_QUANT_H
#define QN_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/quant/qformat.h"
#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- path selection (ggml's should_use_mmvq, as named predicates) --- */

typedef enum qn_quant_path {
    QN_QUANT_PATH_NONE = -1,          /* no GPU kernel for this format/device */
    QN_QUANT_PATH_AUTO = 0,           /* qn_quant_select_path() */
    QN_QUANT_PATH_GEMV,               /* fused dequant + tensor-core "gemv", n <= 16 (with the build knob
                                       * QN_KQ_FRAG, Q4_K and Q6_KP take the fragment-direct kernel, gguf/kq_frag.h,
                                       * but in split mode CLUSTER) */
    QN_QUANT_PATH_MMA,                /* the same kernel with 4-8 token tiles, n in chunks of 64 */
    QN_QUANT_PATH_DEQUANT_CUBLAS,     /* dequant to an fp16 workspace + cuBLAS fp16 GEMM */
    QN_QUANT_PATH_MMVQ,               /* the decode kernel, n in launches of <= 8 (kq_mmvq.cuh): int8 activations
                                       * (q8, in the workspace) x weight codes by __dp4a; F16/BF16 (and LNF4/LFP4)
                                       * take x in fp16 as it is (qn_quant_mmvq_f16_x) */
    QN_QUANT_PATH_TC,                 /* tensor-core GEMM with the dequant in its tile loads, many tokens (the M
                                       * forms LQ4M / LNF4M / LFP4M on sm_90a: lq4m.h's qn_lq4m_tc_cuda; Q4_K, Q5_K,
                                       * Q3_KP, Q6_KP, Q8_0P on sm_90a: gguf/kq_tc.h, which AUTO takes in qn_kq_tc_auto's
                                       * window where the workspace has its room); QN_ERR_UNSUPPORTED elsewhere */
} qn_quant_path;

/* n <= 16: weights stream once at memory bandwidth for all tokens (bench/results/gpu-kernels-*.md). */
#define QN_QUANT_GEMV_MAX_TOKENS 16
/* 16 < n <= this: the fused mma kernel; beyond, dequant to fp16 + cuBLAS. Measured on an H200 with the fast
 * dequant (bench/results/gpu-kernels-2026-12-02.md, `quern bench kernels`): at n = 32 the mma kernel wins on
 * the 8B projections (q4_K 14336x4096: 44 us against ~68 us of dequant + cuBLAS) and loses on 1024x4096
 * (14.3 against ~11.4); at n = 64 it loses on 4096x4096 (31.7 against ~22.9) and is even on 14336x4096; at
 * n = 128 it loses everywhere (q4_K 14336x4096: 130 us against ~70). Was 128, tuned against the old staged
 * dequant. */
#define QN_QUANT_MMA_MAX_TOKENS 32

/* F16 weights need no dequant: cuBLAS reads them directly (DEQUANT_CUBLAS without the dequant) at every n past
 * the decode kernel's (QN_QUANT_MMVQ_FLOAT_MAX_TOKENS). Measured on an H200 (same file): cuBLAS fp16 30.9 us
 * against the GEMV's 37.5 at n = 1, 31.6 against 47.6 at n = 16 (14336x4096), and 0.20x / 0.64x for the mma /
 * dequant paths at n = 128 / 512. */
static inline bool qn_quant_cublas_direct(qn_qformat fmt) { return fmt == QN_QFORMAT_F16; }

/* Formats with GPU kernels: F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, Q3_KP, Q6_KP, Q8_0P, LQ4/LQ8/LNF4/LFP4. */
static inline bool qn_quant_cuda_has_format(qn_qformat fmt) {
    return fmt == QN_QFORMAT_F16 || fmt == QN_QFORMAT_BF16 || fmt == QN_QFORMAT_Q4_0 ||
           fmt == QN_QFORMAT_Q4_1 || fmt == QN_QFORMAT_Q5_0 || fmt == QN_QFORMAT_Q5_1 ||
           fmt == QN_QFORMAT_Q8_0 || fmt == QN_QFORMAT_Q2_K || fmt == QN_QFORMAT_Q3_K ||
           fmt == QN_QFORMAT_Q4_K || fmt == QN_QFORMAT_Q5_K || fmt == QN_QFORMAT_Q6_K ||
           fmt == QN_QFORMAT_Q3_KP || fmt == QN_QFORMAT_Q6_KP || /* device-only padded Q3_K, Q6_K (gguf/q3kp.h, q6kp.h) */
           fmt == QN_QFORMAT_Q8_0P || /* device-only Q8_0 super-blocks (gguf/q8_0p.h): K a multiple of 256 */
           /* device-only GPTQ/AWQ/bnb blocks (lutq_gpu.h): K a multiple of 32 */
           fmt == QN_QFORMAT_LQ4 || fmt == QN_QFORMAT_LQ8 || fmt == QN_QFORMAT_LNF4 || fmt == QN_QFORMAT_LFP4;
}

/* sm: compute capability as major*10 + minor (90 = H100). The kernels need sm_80 (cp.async,
 * mma.sync m16n8k16); split-K across CTAs needs sm_90 clusters. */
static inline bool qn_quant_use_gemv(qn_qformat fmt, int sm, int64_t n_tokens) {
    return qn_quant_cuda_has_format(fmt) && sm >= 80 && n_tokens >= 1 && n_tokens <= QN_QUANT_GEMV_MAX_TOKENS;
}

static inline bool qn_quant_use_mma(qn_qformat fmt, int sm, int64_t n_tokens) {
    return qn_quant_cuda_has_format(fmt) && sm >= 80 && n_tokens > QN_QUANT_GEMV_MAX_TOKENS &&
           n_tokens <= QN_QUANT_MMA_MAX_TOKENS;
}

/* The most tokens one int8 (MMVQ) launch takes; larger n runs as several launches when asked for. */
#ifndef QN_QUANT_MMVQ_MAX_TOKENS
#define QN_QUANT_MMVQ_MAX_TOKENS 8
#endif

/* Formats the decode kernel (MMVQ) takes: the integer codes against q8 activations, and F16/BF16 (float_mmvq.cu). */
static inline bool qn_quant_mmvq_has_format(qn_qformat fmt) {
    return fmt == QN_QFORMAT_Q4_0 || fmt == QN_QFORMAT_Q4_1 || fmt == QN_QFORMAT_Q5_0 || fmt == QN_QFORMAT_Q5_1 ||
           fmt == QN_QFORMAT_Q8_0 || fmt == QN_QFORMAT_Q2_K || fmt == QN_QFORMAT_Q3_K || fmt == QN_QFORMAT_Q4_K ||
           fmt == QN_QFORMAT_Q5_K || fmt == QN_QFORMAT_Q6_K || fmt == QN_QFORMAT_Q6_KP ||
           fmt == QN_QFORMAT_Q8_0P || fmt == QN_QFORMAT_Q3_KP || fmt == QN_QFORMAT_F16 || fmt == QN_QFORMAT_BF16;
}

/* The decode-kernel formats whose weights are no integer codes: x goes in as fp16, no q8 rounding, no quantizer
 * launch (F16/BF16 here; LNF4/LFP4, lutq_gpu.h). */
static inline bool qn_quant_mmvq_f16_x(qn_qformat fmt) {
    return fmt == QN_QFORMAT_F16 || fmt == QN_QFORMAT_BF16 || fmt == QN_QFORMAT_LNF4 || fmt == QN_QFORMAT_LFP4;
}

/* F16/BF16 on the decode kernel up to this many tokens under AUTO (beyond: cuBLAS for F16, the GEMV for BF16).
 * Measured on an H100 (bench/results/gpu-f16-mmvq-2026-12-06.md): at n = 1, 2 against cuBLAS 1.12-1.17x on
 * 4096x4096, 1.6x on 1024x4096, 0.96-1.04x on the MLP shapes, and 8B F16 tg128 +8.6% (the grouped q/k/v, gate/up
 * launches); at n = 4 cuBLAS is faster on every shape but 1024x4096. An A/B knob (-D). */
#ifndef QN_QUANT_MMVQ_FLOAT_MAX_TOKENS
#define QN_QUANT_MMVQ_FLOAT_MAX_TOKENS 2
#endif

/* The activations are rounded to int8 per 32 (relative error ~1/254 of the block's max |x|), as in
 * ggml-cuda's mmvq; the GEMV keeps them fp16. */
/* n <= this under AUTO: the int8 path instead of the tensor-core GEMV. Measured on an H200
 * (bench/results/gpu-decode-2026-12-02.md, Llama-3-8B shapes): MMVQ wins by 1.3-1.6x at n = 1 for the legacy
 * formats and Q4_K/Q5_K/Q6_K, still wins at n = 8 (legacy) / 4 (Q4_K, Q5_K) / 2 (Q6_K). Q2_K/Q3_K: with two
 * rows per warp and staged weights at n = 1 (kq_mmvq.cuh), 1.26-1.76x the GEMV; at n = 2 the GEMV is faster
 * (bench/results/gpu-k23-2026-12-03.md). */
static inline int qn_quant_mmvq_auto_max_tokens(qn_qformat fmt) {
    switch (fmt) {
    case QN_QFORMAT_Q4_0: case QN_QFORMAT_Q4_1: case QN_QFORMAT_Q5_0: case QN_QFORMAT_Q5_1: case QN_QFORMAT_Q8_0:
    case QN_QFORMAT_Q8_0P: /* as Q8_0, not measured apart */
        return 8;
    case QN_QFORMAT_Q4_K: case QN_QFORMAT_Q5_K: return 4;
    case QN_QFORMAT_Q6_K: case QN_QFORMAT_Q6_KP: return 2; /* Q6_KP: as Q6_K, not measured apart */
    case QN_QFORMAT_Q2_K: case QN_QFORMAT_Q3_K: case QN_QFORMAT_Q3_KP: return 1; /* Q3_KP: as Q3_K */
    case QN_QFORMAT_F16: case QN_QFORMAT_BF16: return QN_QUANT_MMVQ_FLOAT_MAX_TOKENS;
    default: return 0;
    }
}

static inline bool qn_quant_use_mmvq(qn_qformat fmt, int sm, int64_t n_tokens) {
    return qn_quant_mmvq_has_format(fmt) && sm >= 80 && n_tokens >= 1 && n_tokens <= qn_quant_mmvq_auto_max_tokens(fmt);
}

static inline qn_quant_path qn_quant_select_path(qn_qformat fmt, int sm, int64_t n_tokens) {
    if (!qn_quant_cuda_has_format(fmt) || sm < 80) return QN_QUANT_PATH_NONE;
    if (qn_quant_use_mmvq(fmt, sm, n_tokens)) return QN_QUANT_PATH_MMVQ;
    if (qn_quant_cublas_direct(fmt) && n_tokens >= 1) return QN_QUANT_PATH_DEQUANT_CUBLAS;
    if (qn_quant_use_gemv(fmt, sm, n_tokens)) return QN_QUANT_PATH_GEMV;
    if (qn_quant_use_mma(fmt, sm, n_tokens)) return QN_QUANT_PATH_MMA;
    return n_tokens < 1 ? QN_QUANT_PATH_GEMV : QN_QUANT_PATH_DEQUANT_CUBLAS;
}

/* --- device context: read once per device, passed to every call (no hidden globals) --- */

typedef struct qn_quant_cuda_ctx {
    int device;   /* CUDA ordinal */
    int sm;       /* major*10 + minor */
    int n_sm;     /* multiprocessors: sizes the split-K grid */
    void *cublas; /* cublasHandle_t, borrowed; only the DEQUANT_CUBLAS path uses it (may be NULL).
                   * Its stream is set to the call's stream. */
    void *blas_ws;        /* device memory cuBLAS works in (cublasSetWorkspace after each cublasSetStream,
                           * which resets it), or NULL (ctx_init): cuBLAS's own pool. That pool grows on a
                           * stream's first eager call and cannot grow inside a graph capture, so a call
                           * first met while capturing gets the algorithms that need no workspace (measured
                           * on an H200: 8B F16 decode graphs captured before any eager step, 4.7% slower) */
    size_t blas_ws_bytes; /* QN_QUANT_BLAS_WS_BYTES */
    int lq4m_ctas;        /* CTAs of the LQ4M mma kernel resident per SM (lq4m.h; sizes its K split), 0 = ask CUDA per call */
    int lnf4m_ctas;       /* the same for its table-lookup instance (LNF4M, LFP4M) */
    int kq_frag_ctas[3][2]; /* CTAs of the fragment-direct GEMV (gguf/kq_frag.h) resident per SM: [Q4_K, Q6_KP, Q5_K]
                             * (qn_kq_frag_index) [one group of 8 tokens, two]; 0 = ask CUDA per call */
} qn_quant_cuda_ctx;
/* cuBLAS's recommended workspace on Hopper (32 MiB; 4 MiB suffices before it). */
#define QN_QUANT_BLAS_WS_BYTES ((size_t)32 << 20)

/* Reads device properties. QN_ERR_NO_DEVICE when the ordinal does not exist. */
qn_status qn_quant_cuda_ctx_init(qn_quant_cuda_ctx *ctx, int device, void *cublas_handle);

/* QN_OK if the kernels take (fmt, K); QN_ERR_UNSUPPORTED / QN_ERR_SHAPE otherwise. No CUDA calls. */
qn_status qn_quant_check_shape(qn_qformat fmt, int64_t N, int64_t K);

/* --- entry points --- */

/* How the CTAs of a split K sum their partial tiles (both deterministic). */
typedef enum qn_quant_split_mode {
    QN_QUANT_SPLIT_AUTO = 0,      /* WORKSPACE when the workspace has room, else CLUSTER (sm_90) or no split */
    QN_QUANT_SPLIT_WORKSPACE,     /* partial tiles in the workspace, the last CTA of a row tile sums */
    QN_QUANT_SPLIT_CLUSTER,       /* a thread-block cluster sums through distributed shared memory */
} qn_quant_split_mode;

typedef struct qn_quant_matmul_opts {
    qn_quant_path path;             /* AUTO: qn_quant_select_path(fmt, ctx->sm, n) */
    int split;                      /* K split over CTAs: 0 = auto, else 1, 2, 4, 8 or 16
                                     * (MMVQ: warps of a CTA per row, 0 = auto, 1, 2 or 4) */
    qn_quant_split_mode split_mode;
    bool x_ready;                   /* MMVQ only: the workspace already holds the q8 activations of this very x
                                     * (same x, n, K), written after x was last written and with no other use of
                                     * the workspace in between, on this stream, either by the previous MMVQ call
                                     * with the same workspace (q, k, v or gate, up on one normed x) or by the
                                     * kernel that wrote x, at qn_quant_q8_x_in_workspace() (ops_cuda.h: the
                                     * norms and silu_mul write the quantizer's exact bits): the call skips the
                                     * quantization. Caller's promise; qn_quant_takes_q8_x() says which calls
                                     * write and read them. */
    int mmvq_stage;                 /* MMVQ only: 0 = auto (stage the weights through shared memory where that
                                     * measured faster: kq_mmvq.h), 1 = stage them wherever the kernel can
                                     * (kq_mmvq_stages), 2 = the same, persistent where one warp takes a row
                                     * (in a build where kq_mmvq_persists),
                                     * -1 = read them directly; bit-identical outputs */
    int tc_tile;                    /* path TC on GGUF weights only (gguf/kq_tc.h): the CTA tile's tokens, 128 or
                                     * 256; 0 = qn_kq_tc_tile_tokens(fmt, N, n), as AUTO takes */
} qn_quant_matmul_opts;

/* Whether a call on (fmt, n) under AUTO runs the int8 path on q8 activations that it writes to the
 * workspace (so that a next call on the same x may pass x_ready). */
static inline bool qn_quant_takes_q8_x(qn_qformat fmt, int sm, int64_t n_tokens) {
    return qn_quant_select_path(fmt, sm, n_tokens) == QN_QUANT_PATH_MMVQ && !qn_quant_mmvq_f16_x(fmt);
}

/* The q8 activations of n tokens of width K, as the int8 path keeps them (layout and rounding:
 * gguf/kq_mmvq.h, which defines qn_mmvq_xrec). */
struct qn_mmvq_xrec;
typedef struct qn_quant_q8_x {
    int8_t *qs;                /* [n][K] codes */
    struct qn_mmvq_xrec *rec;  /* [n][K/32] scales and half sums */
} qn_quant_q8_x;

/* Where every call on n tokens of width K that takes the int8 path reads (and, without x_ready, first
 * writes) the q8 activations of its x in `workspace`: qn_quant_matmul_cuda_ex on the MMVQ path and
 * qn_lutq_matmul_cuda_ex on the LQ4/LQ8 decode path (lutq_gpu.h) use the same place, right behind the
 * split-K counters. A kernel that writes x may write them there as well (ops_cuda.h); the first call on x
 * then passes x_ready. false (out untouched) when the workspace (ws_bytes) cannot hold them (such a call
 * does not take the int8 path under AUTO, or fails), is NULL or not 16-byte aligned, n < 1, or K is not a
 * positive multiple of 32. No CUDA calls. */
bool qn_quant_q8_x_in_workspace(void *workspace, size_t ws_bytes, int64_t n, int64_t K, qn_quant_q8_x *out);

/* The split-K arrival counters at the start of every matmul workspace (this header's, lutq_gpu.h's, lq4m.h's). */
#define QN_QUANT_WS_COUNTERS ((size_t)64 * 1024)

/* Workspace bytes the call needs at its best: GEMV/MMA: split-K counters + partial tiles (0 when it
 * would not split); DEQUANT_CUBLAS: counters + N*K fp16; MMVQ: counters + the q8 activations
 * (qn_mmvq_x_bytes: ~1.25 n*K; under AUTO a short workspace falls back to GEMV). path: as in opts.
 * The workspace (device memory, 16-byte aligned) must be zero-filled once after allocation: its
 * first 64 KB hold split-K counters that every call leaves at zero. One workspace per stream: two
 * calls in flight must not share one. A smaller workspace is fine for GEMV/MMA (cluster split or
 * none); DEQUANT_CUBLAS fails with QN_ERR_INVALID_ARG without room. */
size_t qn_quant_matmul_workspace_size(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, qn_quant_path path,
                                      int64_t N, int64_t K, int64_t n);

/* y[n][N] = x[n][K] . W[N][K]^T (contract above). workspace: device memory of ws_bytes >=
 * qn_quant_matmul_workspace_size(); QN_ERR_INVALID_ARG if short. stream: cudaStream_t. */
qn_status qn_quant_matmul_cuda(const qn_quant_cuda_ctx *ctx, qn_qformat fmt,
                               const void *w, /* [N][K] blocks */ int64_t N, int64_t K,
                               const void *x, /* [n][K] fp16 */ int64_t n,
                               float *y,      /* [n][N] f32 */
                               void *workspace, size_t ws_bytes, void *stream);

qn_status qn_quant_matmul_cuda_ex(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const void *w, int64_t N,
                                  int64_t K, const void *x, int64_t n, float *y, void *workspace,
                                  size_t ws_bytes, void *stream, const qn_quant_matmul_opts *opts);

/* One matrix of a grouped matmul: w [N][qn_qformat_row_bytes(fmt, K)] blocks (16-byte aligned), y [n][N] f32. */
typedef struct qn_quant_mat {
    const void *w;
    int64_t N;
    float *y;
} qn_quant_mat;
#define QN_QUANT_MAX_GROUP 3

/* The matmuls of 1..QN_QUANT_MAX_GROUP weights of one format and width K on the same x [n][K] fp16 (q, k and v
 * of one normed x; gate and up) as one launch of the int8 decode kernel: their CTAs share one grid, so the
 * small matrices fill the waves of the large one instead of running as short launches of their own. Taken
 * only where every single call would run the int8 kernel under AUTO: GGUF formats on the MMVQ path, LQ4/LQ8/
 * LNF4/LFP4 blocks on their decode path (lutq_gpu.h; act-order weights sharing one perm only with x_ready,
 * their q8 written by qn_lutq_quantize_x_cuda, as this call's own quantizer reads x unpermuted);
 * QN_ERR_UNSUPPORTED otherwise, and for
 * a workspace that cannot hold the q8 activations (qn_quant_q8_x_in_workspace): the caller then makes the
 * calls one by one. opts: NULL or path AUTO; split (warps per row) 0 = from the total rows; x_ready as in
 * qn_quant_matmul_cuda_ex. Each y equals that matrix's qn_quant_matmul_cuda_ex at the same split bit for bit.
 * Graph-capturable. */
qn_status qn_quant_matmul_group_cuda(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const qn_quant_mat *mats, int n_mat,
                                     int64_t K, const void *x, int64_t n, void *workspace, size_t ws_bytes,
                                     void *stream, const qn_quant_matmul_opts *opts);

/* out[N][K] fp16 (16-byte aligned) = the same fp16 weights the matmul paths use, bit for bit.
 * Runs QN_QUANT_DEQUANT_FAST. */
/* y^T (N x n, col-major) = W . x^T by cuBLAS fp16 with f32 accumulation and output, on stream: w16 [N][K] fp16,
 * x [n][K] fp16, y [n][N] f32 (device). The GEMM of the DEQUANT_CUBLAS paths; ctx->cublas must be set. */
qn_status qn_quant_gemm_f16_cuda(const qn_quant_cuda_ctx *ctx, const void *w16, int64_t N, int64_t K, const void *x,
                                 int64_t n, float *y, void *stream);

qn_status qn_quant_dequant_cuda(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const void *w, int64_t N,
                                int64_t K, void *out /* [N][K] fp16 */, void *stream);

/* --- dequant variants: for tests and bench/ (the runtime calls qn_quant_dequant_cuda) --- */

typedef enum qn_quant_dequant_variant {
    QN_QUANT_DEQUANT_FAST = 0, /* a warp per 2048 weights, staged, row-order 16-byte stores */
    QN_QUANT_DEQUANT_REF,      /* its simpler twin: a thread per 32 weights; the test reference */
    QN_QUANT_DEQUANT_STAGED,   /* the previous path (the matmul kernel with no tokens); to be deleted
                                * once the H200 bench confirms FAST */
} qn_quant_dequant_variant;

/* As qn_quant_dequant_cuda, through `variant`; all three write the same bits. */
qn_status qn_quant_dequant_cuda_variant(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const void *w, int64_t N,
                                        int64_t K, void *out /* [N][K] fp16 */, void *stream,
                                        qn_quant_dequant_variant variant);

#ifdef __cplusplus
}
#endif
#endif /* QN_QUANT_H */
