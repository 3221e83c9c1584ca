/* lutq_cuda.cu — the GPU entry points of lutq_gpu.h: the act-order gather of the activations and the
 * matmul over GPTQ/AWQ/bnb device blocks on the gathered activations: the decode path (the int8 kernel of
 * kq_mmvq.h with lutq_mmvq.cu's traits) for few tokens, else the quant.h matmul (the kq_kernel paths serve
 * the blocks through lutq_decode.cuh). Holds no state. */
#include <stdint.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_util.cuh"
#include "kernels/quant/gguf/kq_mmvq.h"
#include "kernels/quant/lq4m.h"
#include "kernels/quant/lutq_gpu.h"
#include "kernels/quant/quant.h"

#define LQ_WS_COUNTERS QN_QUANT_WS_COUNTERS

static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* Whether the act-order q8 quantizer is launched as a PDL dependent on sm_90 (kq_mmvq.h). Measured on an
 * H200 (bench_gpu_lutq, n = 1, 8B shapes, two runs each, bench/results/gpu-actorder-2026-12-02.md): for LQ4 it
 * takes act-order from +3..8% over the plain weights to -4..+1%; for LQ8 it costs +11% (q/o) and +25% (down)
 * against +4% without. QN_LUTQ_PERM_PDL=0 turns it off for A/B runs. */
#ifndef QN_LUTQ_PERM_PDL
#define QN_LUTQ_PERM_PDL 1
#endif
static int lq_perm_pdl(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const int32_t *perm) {
    return QN_LUTQ_PERM_PDL && perm && ctx->sm >= 90 && fmt == QN_QFORMAT_LQ4;
}

/* --- gather: x_perm[t][j] = x[t][perm[j]] ---
 * One thread per 2 output columns (a 4-byte store); rows via blockIdx.y. The reads are scattered within a
 * row of x, which stays in L2 (K <= a few ten thousand fp16): the cost is about one pass over x. */
__global__ void lq_gather_kernel(const __half *__restrict__ x, /* [n][k] */
                                 const int32_t *__restrict__ perm, /* [k] */
                                 __half *__restrict__ xp,       /* [n][k] */
                                 int64_t k) {
    qn_pdl_trigger(); /* launched as a PDL dependent (qn_lutq_gather_cuda_ex): the matmul after may start */
    qn_pdl_wait();    /* x is the kernel before's output; xp may still be read by it */
    const int64_t t = blockIdx.y;
    const int64_t j = 2 * ((int64_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (j >= k) return;
    const __half *xr = x + t * k;
    __half2 v;
    v.x = xr[perm[j]];
    v.y = xr[perm[j + 1]]; /* k is even (a multiple of 32) */
    *reinterpret_cast<__half2 *>(xp + t * k + j) = v;
}

/* The same, one CTA per row of x staged in shared memory with 16-byte loads: the scattered reads then hit
 * shared memory instead of L1/L2 sectors (a 2-byte read per 32-byte sector above), so a prefill-sized x
 * costs about one read and one write of it. For rows of up to LQ_GATHER_SMEM_MAX columns, x 16-byte and
 * perm 8-byte aligned, k a multiple of 8. */
#define LQ_GATHER_SMEM_MAX 24576 /* 48 KB of fp16: the default dynamic shared memory limit */
#define LQ_GATHER_SMEM_MIN_ROWS 16
__global__ void __launch_bounds__(256) lq_gather_smem_kernel(const __half *__restrict__ x,       /* [n][k] */
                                                             const int32_t *__restrict__ perm, /* [k] */
                                                             __half *__restrict__ xp,          /* [n][k] */
                                                             int64_t k) {
    extern __shared__ uint4 lq_sx[]; /* [k / 8] */
    qn_pdl_trigger();
    qn_pdl_wait();
    const int64_t t = blockIdx.x;
    const uint4 *xr = reinterpret_cast<const uint4 *>(x + t * k);
    for (int64_t i = threadIdx.x; i < k / 8; i += blockDim.x) lq_sx[i] = xr[i];
    __syncthreads();
    const __half *sx = reinterpret_cast<const __half *>(lq_sx);
    const int2 *p2 = reinterpret_cast<const int2 *>(perm);
    __half2 *out = reinterpret_cast<__half2 *>(xp + t * k);
    for (int64_t j = threadIdx.x; j < k / 2; j += blockDim.x) {
        const int2 pj = p2[j];
        __half2 v;
        v.x = sx[pj.x];
        v.y = sx[pj.y];
        out[j] = v;
    }
}

qn_status qn_lutq_gather_cuda(const void *x, const int32_t *perm, int64_t n, int64_t k, void *x_perm, void *stream) {
    return qn_lutq_gather_cuda_ex(x, perm, n, k, x_perm, 0, stream);
}

qn_status qn_lutq_gather_cuda_ex(const void *x, const int32_t *perm, int64_t n, int64_t k, void *x_perm, int pdl,
                                 void *stream) {
    if (n < 0 || k < 0 || k % 2) return QN_ERR_SHAPE;
    if (n == 0 || k == 0) return QN_OK;
    if (!x || !perm || !x_perm || ((uintptr_t)x_perm & 3u)) return QN_ERR_INVALID_ARG;
    /* the shared-memory kernel from LQ_GATHER_SMEM_MIN_ROWS rows: below, its one CTA per row leaves the GPU idle
     * (H100, bench/results/gpu-lq4m-2026-12-06.md: one row of 14336 took the LQ4M act-order down projection from
     * +17% to +48% over the plain weights) */
    if (n >= LQ_GATHER_SMEM_MIN_ROWS && k % 8 == 0 && k <= LQ_GATHER_SMEM_MAX && n <= 0x7fffffff &&
        !((uintptr_t)x & 15u) && !((uintptr_t)perm & 7u)) {
        QN_CUDA_TRY(qn_launch(lq_gather_smem_kernel, dim3((unsigned)n), dim3(256), (size_t)k * sizeof(__half),
                              (cudaStream_t)stream, pdl != 0, (const __half *)x, perm, (__half *)x_perm, k));
        return QN_OK;
    }
    if (n > 65535) return QN_ERR_SHAPE; /* gridDim.y */
    const int threads = 256;
    const int64_t bx = (k / 2 + threads - 1) / threads;
    if (bx > 0x7fffffff) return QN_ERR_SHAPE;
    QN_CUDA_TRY(qn_launch(lq_gather_kernel, dim3((unsigned)bx, (unsigned)n, 1), dim3(threads), 0, (cudaStream_t)stream,
                          pdl != 0, (const __half *)x, perm, (__half *)x_perm, k));
    return QN_OK;
}

/* --- matmul ---
 * Workspace: [0, inner) the workspace of the path (its split-K counters first, always at offset 0): the
 * decode path's is the counters (left untouched) and, for LQ4/LQ8, the q8 activations at 64 KB (where
 * qn_quant_q8_x_in_workspace puts them, as for quant.h's int8 path); the other paths' is quant.h's. Then,
 * with a perm, the gathered x at xoff = align256(max(inner, 64 KB)): never over the counters, and the inner
 * call is told only xoff bytes, so its split-K tiles or fp16 weights stay below the gathered x. */

static size_t lq_x_offset(size_t inner) { return align256(inner > LQ_WS_COUNTERS ? inner : LQ_WS_COUNTERS); }

/* the decode path for (fmt, n) under path (AUTO resolved by qn_lutq_use_decode) */
static bool lq_decode(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, qn_quant_path path, int64_t n) {
    return path == QN_QUANT_PATH_MMVQ || (path == QN_QUANT_PATH_AUTO && qn_lutq_use_decode(fmt, ctx->sm, n));
}

static size_t lq_inner_size(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, qn_quant_path path, int64_t N, int64_t K,
                            int64_t n) {
    if (!lq_decode(ctx, fmt, path, n)) return qn_quant_matmul_workspace_size(ctx, fmt, path, N, K, n);
    if (kq_mmvq_takes_f16_x(fmt)) return 0;
    return LQ_WS_COUNTERS + align256(qn_mmvq_x_bytes(n, K));
}

/* Whether an act-order call gathers x into an fp16 copy first: not on the LQ4/LQ8 decode path, whose
 * quantizer reads x through perm itself (kq_mmvq_quantize_x_perm). */
static bool lq_gathers(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, qn_quant_path path, int64_t n) {
    return !lq_decode(ctx, fmt, path, n) || kq_mmvq_takes_f16_x(fmt);
}

static size_t lq_ws_size(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, qn_quant_path path, int64_t N, int64_t K,
                         bool act_order, int64_t n) {
    const size_t inner = lq_inner_size(ctx, fmt, path, N, K, n);
    if (!act_order || !lq_gathers(ctx, fmt, path, n)) return inner;
    return lq_x_offset(inner) + align256((size_t)n * (size_t)K * sizeof(__half));
}

size_t qn_lutq_matmul_workspace_size_path(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, int path, int64_t N, int64_t K,
                                          bool act_order, int64_t n) {
    if (qn_lq4m_is_format(fmt)) return qn_lq4m_workspace_size(ctx, fmt, path, N, K, act_order, n);
    if (!ctx || n <= 0 || N <= 0 || !qn_lutq_gpu_is_format(fmt) || qn_quant_check_shape(fmt, N, K) != QN_OK) return 0;
    return lq_ws_size(ctx, fmt, (qn_quant_path)path, N, K, act_order, n);
}

size_t qn_lutq_matmul_workspace_size(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, int64_t N, int64_t K, bool act_order,
                                     int64_t n) {
    return qn_lutq_matmul_workspace_size_path(ctx, fmt, QN_QUANT_PATH_AUTO, N, K, act_order, n);
}

static bool lq_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* The q8 activations of x (read through w->perm when set) at 64 KB into the workspace, where quant.h's MMVQ
 * path keeps them too; xq: their address. */
static qn_status lq_quantize(const qn_quant_cuda_ctx *ctx, const qn_lutq_gpu_weight *w, const void *x, int64_t n,
                             void *workspace, size_t ws_bytes, bool x_ready, void **xq, void *stream) {
    qn_quant_q8_x q8;
    if (!qn_quant_q8_x_in_workspace(workspace, ws_bytes, n, w->k, &q8)) return QN_ERR_INVALID_ARG;
    *xq = q8.qs;
    if (x_ready) return QN_OK;
    return kq_mmvq_quantize_x_perm(x, w->perm, n, w->k, q8.qs, lq_perm_pdl(ctx, w->fmt, w->perm), stream);
}

/* The decode path: LQ4/LQ8 quantize x through perm (lq_quantize), then the int8 kernel; LNF4/LFP4 take x as
 * it is (gathered by the caller when there is a perm). */
static qn_status lq_decode_matmul(const qn_quant_cuda_ctx *ctx, const qn_lutq_gpu_weight *w, const void *x, int64_t n,
                                  float *y, void *workspace, size_t ws_bytes, int split, int stage, bool x_ready,
                                  void *stream) {
    if (kq_mmvq_takes_f16_x(w->fmt))
        return kq_mmvq_matmul(w->fmt, w->blocks, w->n, w->k, x, n, y, ctx->n_sm, split, stage, ctx->sm >= 90, stream);
    void *xq = NULL;
    const qn_status st = lq_quantize(ctx, w, x, n, workspace, ws_bytes, x_ready, &xq, stream);
    if (st != QN_OK) return st;
    return kq_mmvq_matmul(w->fmt, w->blocks, w->n, w->k, xq, n, y, ctx->n_sm, split, stage, ctx->sm >= 90, stream);
}

qn_status qn_lutq_matmul_cuda_ex(const qn_quant_cuda_ctx *ctx, const qn_lutq_gpu_weight *w, const void *x, int64_t n,
                                 float *y, void *workspace, size_t ws_bytes, void *stream,
                                 const qn_quant_matmul_opts *opts) {
    if (!ctx || !w) return QN_ERR_INVALID_ARG;
    if (!qn_lutq_gpu_is_format(w->fmt)) return QN_ERR_UNSUPPORTED;
    if (qn_lq4m_is_format(w->fmt)) /* their own kernels (lq4m_cuda.cu) */
        return qn_lq4m_matmul_cuda(ctx, w->fmt, w->blocks, w->perm, w->n, w->k, x, n, y, workspace, ws_bytes, stream,
                                   opts);
    if (n < 0) return QN_ERR_SHAPE;
    const qn_quant_path path = opts ? opts->path : QN_QUANT_PATH_AUTO;
    if (path == QN_QUANT_PATH_TC) return QN_ERR_UNSUPPORTED; /* the M forms' only */
    const bool decode = lq_decode(ctx, w->fmt, path, n);
    if (!decode && (!w->perm || n == 0 || w->n == 0))
        return qn_quant_matmul_cuda_ex(ctx, w->fmt, w->blocks, w->n, w->k, x, n, y, workspace, ws_bytes, stream, opts);
    qn_status st = qn_quant_check_shape(w->fmt, w->n, w->k);
    if (st != QN_OK) return st;
    if (n == 0 || w->n == 0) return QN_OK;
    if (decode) {
        const int split = opts ? opts->split : 0;
        if (split != 0 && split != 1 && split != 2 && split != 4) return QN_ERR_INVALID_ARG;
        if (ctx->sm < 80) return QN_ERR_UNSUPPORTED;
        if (!w->blocks || !x || !y || !lq_aligned16(w->blocks) || !lq_aligned16(x)) return QN_ERR_INVALID_ARG;
    }
    const size_t need = lq_ws_size(ctx, w->fmt, path, w->n, w->k, w->perm != NULL, n);
    if (need && (!workspace || ws_bytes < need || !lq_aligned16(workspace))) return QN_ERR_INVALID_ARG;
    const void *xk = x; /* x in kernel column order, or read through perm by the decode quantizer */
    size_t inner_bytes = ws_bytes;
    if (w->perm && lq_gathers(ctx, w->fmt, path, n)) {
        inner_bytes = lq_x_offset(lq_inner_size(ctx, w->fmt, path, w->n, w->k, n));
        void *xp = (uint8_t *)workspace + inner_bytes;
        if ((st = qn_lutq_gather_cuda(x, w->perm, n, w->k, xp, stream)) != QN_OK) return st;
        xk = xp;
    }
    if (decode) /* x_ready (quant.h): with a perm, the caller's q8 are of x gathered through this same perm */
        return lq_decode_matmul(ctx, w, xk, n, y, workspace, ws_bytes, opts ? opts->split : 0,
                                opts ? opts->mmvq_stage : 0, opts && opts->x_ready, stream);
    return qn_quant_matmul_cuda_ex(ctx, w->fmt, w->blocks, w->n, w->k, xk, n, y, workspace, inner_bytes, stream, opts);
}

qn_status qn_lutq_quantize_x_cuda(const qn_quant_cuda_ctx *ctx, const qn_lutq_gpu_weight *w, const void *x, int64_t n,
                                  void *workspace, size_t ws_bytes, void *stream) {
    if (!ctx || !w || n < 1) return QN_ERR_INVALID_ARG;
    if (!lq_decode(ctx, w->fmt, QN_QUANT_PATH_AUTO, n) || kq_mmvq_takes_f16_x(w->fmt)) return QN_ERR_UNSUPPORTED;
    if (!x || !lq_aligned16(x) || w->k % 32) return QN_ERR_INVALID_ARG;
    void *xq = NULL;
    return lq_quantize(ctx, w, x, n, workspace, ws_bytes, false, &xq, stream);
}

qn_status qn_lutq_matmul_cuda(const qn_quant_cuda_ctx *ctx, const qn_lutq_gpu_weight *w, const void *x, int64_t n,
                              float *y, void *workspace, size_t ws_bytes, void *stream) {
    return qn_lutq_matmul_cuda_ex(ctx, w, x, n, y, workspace, ws_bytes, stream, NULL);
}
