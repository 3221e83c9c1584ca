/* lutq_cuda.cu — the GPU entry points of lutq_gpu.h: the act-order gather of the activations and the
 * matmul over GPTQ/AWQ/bnb device blocks, which is the quant.h matmul on the gathered activations (the
 * kq_kernel paths serve the blocks through lutq_decode.cuh). Holds no state. */
#include <stdint.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/quant/lutq_gpu.h"
#include "kernels/quant/quant.h"

#define LQ_WS_COUNTERS ((size_t)64 * 1024) /* quant.h: the first 64 KB of a workspace are split-K counters */

static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* --- gather: x_perm[t][j] = x[t][perm[j]] ---
 * One thread per 2 output columns (a 4-byte store); rows via blockIdx.y. The reads are scattered within a
 * row of x, which stays in L2 (K <= a few ten thousand fp16): the cost is about one pass over x. */
__global__ void lq_gather_kernel(const __half *__restrict__ x, /* [n][k] */
                                 const int32_t *__restrict__ perm, /* [k] */
                                 __half *__restrict__ xp,       /* [n][k] */
                                 int64_t k) {
    const int64_t t = blockIdx.y;
    const int64_t j = 2 * ((int64_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (j >= k) return;
    const __half *xr = x + t * k;
    __half2 v;
    v.x = xr[perm[j]];
    v.y = xr[perm[j + 1]]; /* k is even (a multiple of 32) */
    *reinterpret_cast<__half2 *>(xp + t * k + j) = v;
}

qn_status qn_lutq_gather_cuda(const void *x, const int32_t *perm, int64_t n, int64_t k, void *x_perm, void *stream) {
    if (n < 0 || k < 0 || k % 2) return QN_ERR_SHAPE;
    if (n == 0 || k == 0) return QN_OK;
    if (!x || !perm || !x_perm || ((uintptr_t)x_perm & 3u)) return QN_ERR_INVALID_ARG;
    if (n > 65535) return QN_ERR_SHAPE; /* gridDim.y */
    const int threads = 256;
    const int64_t bx = (k / 2 + threads - 1) / threads;
    if (bx > 0x7fffffff) return QN_ERR_SHAPE;
    lq_gather_kernel<<<dim3((unsigned)bx, (unsigned)n, 1), threads, 0, (cudaStream_t)stream>>>(
        (const __half *)x, perm, (__half *)x_perm, k);
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}

/* --- matmul ---
 * Workspace: [0, inner) the quant.h workspace of the blocks (its split-K counters first, always at offset
 * 0), then, with a perm, the gathered x at xoff = align256(max(inner, 64 KB)): never over the counters, and
 * the inner call is told only xoff bytes, so its split-K tiles or fp16 weights stay below the gathered x. */

static size_t lq_x_offset(size_t inner) { return align256(inner > LQ_WS_COUNTERS ? inner : LQ_WS_COUNTERS); }

static size_t lq_ws_size(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, qn_quant_path path, int64_t N, int64_t K,
                         bool act_order, int64_t n) {
    const size_t inner = qn_quant_matmul_workspace_size(ctx, fmt, path, N, K, n);
    if (!act_order) return inner;
    return lq_x_offset(inner) + align256((size_t)n * (size_t)K * sizeof(__half));
}

size_t qn_lutq_matmul_workspace_size(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, int64_t N, int64_t K, bool act_order,
                                     int64_t n) {
    if (!ctx || n <= 0 || !qn_lutq_gpu_is_format(fmt)) return 0;
    return lq_ws_size(ctx, fmt, QN_QUANT_PATH_AUTO, N, K, act_order, n);
}

qn_status qn_lutq_matmul_cuda_ex(const qn_quant_cuda_ctx *ctx, const qn_lutq_gpu_weight *w, const void *x, int64_t n,
                                 float *y, void *workspace, size_t ws_bytes, void *stream,
                                 const qn_quant_matmul_opts *opts) {
    if (!ctx || !w) return QN_ERR_INVALID_ARG;
    if (!qn_lutq_gpu_is_format(w->fmt)) return QN_ERR_UNSUPPORTED;
    if (n < 0) return QN_ERR_SHAPE;
    if (!w->perm || n == 0 || w->n == 0)
        return qn_quant_matmul_cuda_ex(ctx, w->fmt, w->blocks, w->n, w->k, x, n, y, workspace, ws_bytes, stream, opts);
    qn_status st = qn_quant_check_shape(w->fmt, w->n, w->k);
    if (st != QN_OK) return st;
    const qn_quant_path path = opts ? opts->path : QN_QUANT_PATH_AUTO;
    const size_t xoff = lq_x_offset(qn_quant_matmul_workspace_size(ctx, w->fmt, path, w->n, w->k, n));
    if (!workspace || ws_bytes < lq_ws_size(ctx, w->fmt, path, w->n, w->k, true, n)) return QN_ERR_INVALID_ARG;
    void *xp = (uint8_t *)workspace + xoff;
    if ((st = qn_lutq_gather_cuda(x, w->perm, n, w->k, xp, stream)) != QN_OK) return st;
    return qn_quant_matmul_cuda_ex(ctx, w->fmt, w->blocks, w->n, w->k, xp, n, y, workspace, xoff, stream, opts);
}

qn_status qn_lutq_matmul_cuda(const qn_quant_cuda_ctx *ctx, const qn_lutq_gpu_weight *w, const void *x, int64_t n,
                              float *y, void *workspace, size_t ws_bytes, void *stream) {
    return qn_lutq_matmul_cuda_ex(ctx, w, x, n, y, workspace, ws_bytes, stream, NULL);
}
