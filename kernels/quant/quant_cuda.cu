/* quant_cuda.cu — the GPU entry points of quant.h: shape checks, path choice, split-K sizing,
 * launches of the kq_kernel instances (gguf/kq_*.cu) and the dequant + cuBLAS fp16 GEMM path.
 * Holds no state: everything it needs comes in through qn_quant_cuda_ctx and the arguments. */
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/quant/gguf/kq_dequant.h"
#include "kernels/quant/gguf/kq_frag.h"
#include "kernels/quant/gguf/kq_kernel.cuh"
#include "kernels/quant/gguf/kq_mmvq.h"
#include "kernels/quant/gguf/kq_tc.h"
#include "kernels/quant/lq4m.h"
#include "kernels/quant/quant.h"

qn_status qn_quant_cuda_ctx_init(qn_quant_cuda_ctx *ctx, int device, void *cublas_handle) {
    if (!ctx) return QN_ERR_INVALID_ARG;
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || device < 0 || device >= count) {
        (void)cudaGetLastError();
        return QN_ERR_NO_DEVICE;
    }
    int major = 0, minor = 0, n_sm = 0;
    QN_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    QN_CUDA_TRY(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    QN_CUDA_TRY(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, device));
    ctx->device = device;
    ctx->sm = major * 10 + minor;
    ctx->n_sm = n_sm;
    ctx->cublas = cublas_handle;
    ctx->blas_ws = NULL, ctx->blas_ws_bytes = 0;
    ctx->lq4m_ctas = qn_lq4m_ctas_per_sm(QN_QFORMAT_LQ4M);
    ctx->lnf4m_ctas = qn_lq4m_ctas_per_sm(QN_QFORMAT_LNF4M);
    const qn_qformat frag_fmt[] = {QN_QFORMAT_Q4_K, QN_QFORMAT_Q6_KP, QN_QFORMAT_Q5_K}; /* rows: qn_kq_frag_index */
    for (int f = 0; f < (int)(sizeof frag_fmt / sizeof frag_fmt[0]); f++)
        for (int ng = 1; ng <= 2; ng++)
            ctx->kq_frag_ctas[qn_kq_frag_index(frag_fmt[f])][ng - 1] =
                qn_kq_frag_takes(frag_fmt[f], ctx->sm) ? kq_frag_ctas_per_sm(frag_fmt[f], ng) : 0;
    return QN_OK;
}

qn_status qn_quant_check_shape(qn_qformat fmt, int64_t N, int64_t K) {
    if (!qn_quant_cuda_has_format(fmt)) return QN_ERR_UNSUPPORTED;
    if (N < 0 || K <= 0) return QN_ERR_SHAPE;
    const int64_t be = fmt < QN_QFORMAT_COUNT ? QN_QFORMATS[fmt].block_elems
                       : fmt == QN_QFORMAT_Q6_KP || fmt == QN_QFORMAT_Q8_0P || fmt == QN_QFORMAT_Q3_KP
                           ? 256 /* gguf/q6kp.h, q8_0p.h, q3kp.h */
                                                  : 32; /* lutq_gpu.h blocks */
    /* F16/BF16: the kernels walk rows in 32-element sub-chunks */
    if (K % (be > 32 ? be : 32) != 0) return QN_ERR_SHAPE;
    if (K > (int64_t)1 << 30 || N > (int64_t)1 << 31) return QN_ERR_SHAPE;
    return QN_OK;
}

static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* Workspace layout: [0, 64 KB) split-K arrival counters (zero between launches), then either the
 * split-K partial tiles or (DEQUANT_CUBLAS) the fp16 weights. */
#define KQ_WS_COUNTERS QN_QUANT_WS_COUNTERS

/* --- launching one kq_kernel instance --- */

/* CTAs of this instance that run at once on one SM (shared memory, registers, threads). */
static int kq_ctas_per_sm(const kq_kernel_info *ki) {
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, ki->fn, KQ_THREADS, (size_t)ki->smem) != cudaSuccess) {
        (void)cudaGetLastError();
        n = 1;
    }
    return n < 1 ? 1 : n;
}

/* Split K over S CTAs so that the grid fills the SMs' CTA slots: the smallest power of two with
 * tiles*S >= 3/4 of the slots, each CTA keeping at least one stage. Measured against fixed splits
 * in bench/results/gpu-kernels-*.md. */
static int kq_pick_split(const qn_quant_cuda_ctx *ctx, const kq_kernel_info *ki, int64_t N, int ksteps) {
    const int64_t tiles = (N + KQ_ROWS - 1) / KQ_ROWS;
    const int64_t slots = (int64_t)ctx->n_sm * kq_ctas_per_sm(ki);
    int s = 1;
    while (s < KQ_MAX_SPLIT && 4 * tiles * s < 3 * slots && ksteps >= 2 * s) s *= 2;
    return s;
}

static qn_status kq_launch(const qn_quant_cuda_ctx *ctx, const kq_kernel_info *ki, kq_args a, int split,
                           bool cluster, cudaStream_t stream) {
    if (a.part) cluster = false;
    const int64_t tiles = (a.N + KQ_ROWS - 1) / KQ_ROWS;
    if (tiles == 0) return QN_OK;
    if (tiles > 0x7fffffff) return QN_ERR_SHAPE;
    a.ksteps = (int)((a.K + ki->sk - 1) / ki->sk);
    if (split < 1) split = 1;
    if (split > a.ksteps) split = a.ksteps;
    a.ks_per_split = (a.ksteps + split - 1) / split;
    if (!cluster) split = (a.ksteps + a.ks_per_split - 1) / a.ks_per_split; /* no empty CTAs */

    QN_CUDA_TRY(cudaFuncSetAttribute(ki->fn, cudaFuncAttributeMaxDynamicSharedMemorySize, ki->smem));
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1];
    cfg.gridDim = dim3((unsigned)tiles, (unsigned)split, 1);
    cfg.blockDim = dim3(KQ_THREADS, 1, 1);
    cfg.dynamicSmemBytes = (size_t)ki->smem;
    cfg.stream = stream;
    if (cluster && split > 1) {
        if (split > 8) QN_CUDA_TRY(cudaFuncSetAttribute(ki->fn, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = 1;
        attr[0].val.clusterDim.y = (unsigned)split;
        attr[0].val.clusterDim.z = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
    }
    void *args[] = {&a};
    QN_CUDA_TRY(cudaLaunchKernelExC(&cfg, ki->fn, args));
    return QN_OK;
}

static bool is_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* The MMVQ part of the workspace layout: the q8 activations right behind the counters. */
bool qn_quant_q8_x_in_workspace(void *workspace, size_t ws_bytes, int64_t n, int64_t K, qn_quant_q8_x *out) {
    if (!workspace || !is_aligned16(workspace) || n < 1 || K < 1 || K % QN_MMVQ_QK != 0) return false;
    if (ws_bytes < KQ_WS_COUNTERS || ws_bytes - KQ_WS_COUNTERS < qn_mmvq_x_bytes(n, K)) return false;
    uint8_t *xq = (uint8_t *)workspace + KQ_WS_COUNTERS;
    out->qs = (int8_t *)xq;
    out->rec = (qn_mmvq_xrec *)(xq + qn_mmvq_x_rec_offset(n, K));
    return true;
}

/* One launch of the fused path: its instance and split. */
typedef struct kq_plan {
    kq_kernel_info ki;
    int64_t take;  /* tokens of this launch */
    int split;
    size_t part_bytes; /* split-K partial tiles at that split */
} kq_plan;

static size_t kq_part_bytes(int64_t N, int nt, int split) {
    if (split <= 1) return 0;
    const size_t tiles = (size_t)((N + KQ_ROWS - 1) / KQ_ROWS);
    return tiles * (size_t)split * (size_t)(8 * nt) * KQ_ROWS * sizeof(float);
}

/* nc tokens left: GEMV takes up to 16 per launch, MMA up to 64. */
static qn_status kq_make_plan(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, qn_quant_path path, int64_t N,
                              int64_t K, int64_t nc, int split, kq_plan *p) {
    if (nc > 64) nc = 64;
    const int nt = nc <= 8 ? 1 : nc <= 16 ? 2 : nc <= 32 ? 4 : 8;
    const bool ok = (path == QN_QUANT_PATH_GEMV || nt <= 2) ? kq_gemv_info(fmt, nt <= 2 ? nt : 2, &p->ki)
                                                             : kq_gemm_info(fmt, nt, &p->ki);
    if (!ok) return QN_ERR_UNSUPPORTED;
    p->take = nc < 8 * (int64_t)p->ki.nt ? nc : 8 * (int64_t)p->ki.nt;
    const int ksteps = (int)((K + p->ki.sk - 1) / p->ki.sk);
    QN_CUDA_TRY(cudaFuncSetAttribute(p->ki.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, p->ki.smem));
    int s = split > 0 ? split : kq_pick_split(ctx, &p->ki, N, ksteps);
    if (s > ksteps) s = ksteps < 1 ? 1 : ksteps;
    p->split = s;
    p->part_bytes = kq_part_bytes(N, p->ki.nt, s);
    return QN_OK;
}

#ifndef QN_HAVE_SM90A /* no sm_90a code in this build (CMakeLists.txt): no K-quant tensor-core GEMM */
bool qn_kq_tc_takes(int sm, qn_qformat fmt, int64_t N, int64_t K) { return false; }
qn_status qn_kq_tc_prepare_x(const void *x, int64_t n, int64_t K, void *xt, void *stream) { return QN_ERR_UNSUPPORTED; }
size_t qn_kq_tc_part_bytes(int n_sm, int64_t N, int64_t K, int64_t n) { return 0; }
int qn_kq_tc_split(int n_sm, qn_qformat fmt, int64_t N, int64_t K, int64_t n, int tile, int *cps) {
    *cps = (int)(K / 64);
    return 1;
}
qn_status qn_kq_tc_cuda(int sm, int n_sm, qn_qformat fmt, const void *w, int64_t N, int64_t K, const void *xt,
                        int64_t n, int tile, float *y, void *part, size_t part_bytes, void *stream) {
    return QN_ERR_UNSUPPORTED;
}
#endif

/* The K-quant tensor-core GEMM's workspace: after the fused kernels' counters (kept zero), the prepared x [n][K]
 * fp16, then the split-K sums. 0 where the format or device has no such GEMM. */
static size_t kq_tc_ws(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, int64_t N, int64_t K, int64_t n) {
    if (!qn_kq_tc_has_format(fmt) || ctx->sm != 90 || N % 16 || K % 256) return 0;
    return KQ_WS_COUNTERS + align256((size_t)n * (size_t)K * sizeof(__half)) +
           align256(qn_kq_tc_part_bytes(ctx->n_sm, N, K, n));
}

size_t qn_quant_matmul_workspace_size(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, qn_quant_path path,
                                      int64_t N, int64_t K, int64_t n) {
    if (!ctx || N <= 0 || K <= 0 || n <= 0 || qn_quant_check_shape(fmt, N, K) != QN_OK) return 0;
    if (path == QN_QUANT_PATH_TC) return kq_tc_ws(ctx, fmt, N, K, n);
    const bool tc = path == QN_QUANT_PATH_AUTO && qn_kq_tc_auto(fmt, N, n); /* AUTO may take either: room for both */
    if (path == QN_QUANT_PATH_AUTO) path = qn_quant_select_path(fmt, ctx->sm, n);
    if (tc && path == QN_QUANT_PATH_DEQUANT_CUBLAS) {
        const size_t a = kq_tc_ws(ctx, fmt, N, K, n), b = qn_quant_matmul_workspace_size(ctx, fmt, path, N, K, n);
        return a > b ? a : b;
    }
    if (path == QN_QUANT_PATH_DEQUANT_CUBLAS) /* F16: cuBLAS reads the weights themselves */
        return qn_quant_cublas_direct(fmt) ? 0 : KQ_WS_COUNTERS + align256((size_t)N * (size_t)K * sizeof(__half));
    if (path == QN_QUANT_PATH_MMVQ) { /* after the counters, which GEMV calls on this workspace keep; fp16 x: none */
        const bool q8 = qn_quant_mmvq_has_format(fmt) && !qn_quant_mmvq_f16_x(fmt);
        return q8 ? KQ_WS_COUNTERS + align256(qn_mmvq_x_bytes(n, K)) : 0;
    }
    if (path != QN_QUANT_PATH_GEMV && path != QN_QUANT_PATH_MMA) return 0;
    kq_plan p;
    if (kq_make_plan(ctx, fmt, path, N, K, n, 0, &p) != QN_OK) {
        (void)cudaGetLastError();
        return 0;
    }
    /* partial tiles for the worst split any launch of this call may pick (at most 16) */
    size_t worst = kq_part_bytes(N, p.ki.nt, p.split > 1 ? KQ_MAX_SPLIT : 1);
    if (path == QN_QUANT_PATH_GEMV && qn_kq_frag_takes(fmt, ctx->sm)) { /* kq_frag's parts, or the staged kernel's */
        const int64_t take = n < QN_KQ_FRAG_MAX_TOKENS ? n : QN_KQ_FRAG_MAX_TOKENS;
        const size_t f = kq_frag_split(fmt, ctx->n_sm, kq_frag_ctas(ctx, fmt, take), N, K, take) > 1
                             ? kq_frag_part_bytes(N, n, QN_KQ_FRAG_MAX_SPLIT) : 0;
        worst = f > worst ? f : worst;
    }
    return worst ? KQ_WS_COUNTERS + align256(worst) : 0;
}

/* Fused path: one launch per 64 tokens (16 on the GEMV path). Split-K partials go through the
 * workspace when it has room (or the mode asks for it), else through a cluster (sm_90). */
static qn_status kq_matmul_fused(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, qn_quant_path path,
                                 const void *w, int64_t N, int64_t K, const __half *x, int64_t n, float *y,
                                 int split, qn_quant_split_mode mode, void *ws, size_t ws_bytes,
                                 cudaStream_t stream) {
    for (int64_t t0 = 0; t0 < n;) {
        kq_plan p;
        qn_status st = kq_make_plan(ctx, fmt, path, N, K, n - t0, split, &p);
        if (st != QN_OK) return st;
        kq_args a = {};
        a.w = (const uint8_t *)w;
        a.x = x + t0 * K;
        a.y = y + t0 * N;
        a.N = N;
        a.K = K;
        a.n = p.take;
        a.row_bytes = (int64_t)qn_qformat_row_bytes(fmt, K);
        const bool ws_fits = ws && ws_bytes >= KQ_WS_COUNTERS + p.part_bytes &&
                             (N + KQ_ROWS - 1) / KQ_ROWS <= (int64_t)(KQ_WS_COUNTERS / sizeof(unsigned));
        if (p.split > 1) {
            bool use_ws = mode == QN_QUANT_SPLIT_WORKSPACE || (mode == QN_QUANT_SPLIT_AUTO && (ws_fits || ctx->sm < 90));
            if (use_ws && !ws_fits) {
                if (mode == QN_QUANT_SPLIT_WORKSPACE) return QN_ERR_INVALID_ARG;
                p.split = 1; /* sm_80 without room: no split */
                use_ws = false;
            }
            if (!use_ws && ctx->sm < 90) return QN_ERR_UNSUPPORTED;
            if (use_ws) {
                a.cnt = (unsigned *)ws;
                a.part = (float *)((uint8_t *)ws + KQ_WS_COUNTERS);
            }
        }
        st = kq_launch(ctx, &p.ki, a, p.split, true, stream);
        if (st != QN_OK) return st;
        t0 += p.take;
    }
    return QN_OK;
}

qn_status qn_quant_dequant_cuda_variant(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const void *w, int64_t N,
                                        int64_t K, void *out, void *stream, qn_quant_dequant_variant variant) {
    if (!ctx || !w || !out) return QN_ERR_INVALID_ARG;
    qn_status st = qn_quant_check_shape(fmt, N, K);
    if (st != QN_OK) return st;
    if (ctx->sm < 80) return QN_ERR_UNSUPPORTED;
    if (!is_aligned16(w) || !is_aligned16(out)) return QN_ERR_INVALID_ARG;
    if (variant == QN_QUANT_DEQUANT_FAST) return kq_dequant_fast(fmt, w, N * K, out, ctx->n_sm, stream);
    if (variant == QN_QUANT_DEQUANT_REF) return kq_dequant_ref(fmt, w, N * K, out, stream);
    if (variant != QN_QUANT_DEQUANT_STAGED) return QN_ERR_INVALID_ARG;
    kq_kernel_info ki;
    if (!kq_dequant_info(fmt, &ki)) return QN_ERR_UNSUPPORTED;
    kq_args a = {};
    a.w = (const uint8_t *)w;
    a.out = (__half *)out;
    a.N = N;
    a.K = K;
    a.row_bytes = (int64_t)qn_qformat_row_bytes(fmt, K);
    /* no reduction: split K freely until the grid covers the SMs twice */
    const int64_t tiles = (N + KQ_ROWS - 1) / KQ_ROWS;
    const int ksteps = (int)((K + ki.sk - 1) / ki.sk);
    int s = 1;
    while (tiles * s < 4LL * ctx->n_sm && s < ksteps) s *= 2;
    return kq_launch(ctx, &ki, a, s, false, (cudaStream_t)stream);
}

qn_status qn_quant_dequant_cuda(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const void *w, int64_t N,
                                int64_t K, void *out, void *stream) {
    return qn_quant_dequant_cuda_variant(ctx, fmt, w, N, K, out, stream, QN_QUANT_DEQUANT_FAST);
}

qn_status qn_quant_matmul_cuda_ex(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const void *w, int64_t N,
                                  int64_t K, const void *x, int64_t n, float *y, void *workspace,
                                  size_t ws_bytes, void *stream, const qn_quant_matmul_opts *opts) {
    if (!ctx) return QN_ERR_INVALID_ARG;
    qn_status st = qn_quant_check_shape(fmt, N, K);
    if (st != QN_OK) return st;
    if (n < 0) return QN_ERR_SHAPE;
    if (n == 0 || N == 0) return QN_OK;
    if (!w || !x || !y) return QN_ERR_INVALID_ARG;
    if (!is_aligned16(w) || !is_aligned16(x)) return QN_ERR_INVALID_ARG;
    qn_quant_path path = opts ? opts->path : QN_QUANT_PATH_AUTO;
    const int split = opts ? opts->split : 0;
    const qn_quant_split_mode mode = opts ? opts->split_mode : QN_QUANT_SPLIT_AUTO;
    if (split < 0 || split > KQ_MAX_SPLIT || (split & (split - 1)) != 0) return QN_ERR_INVALID_ARG;
    if (split > 1 && mode == QN_QUANT_SPLIT_CLUSTER && ctx->sm < 90) return QN_ERR_UNSUPPORTED;
    if (workspace && !is_aligned16(workspace)) return QN_ERR_INVALID_ARG;
    const bool automatic = path == QN_QUANT_PATH_AUTO;
    if (path == QN_QUANT_PATH_AUTO) path = qn_quant_select_path(fmt, ctx->sm, n);
    if (path == QN_QUANT_PATH_NONE || ctx->sm < 80) return QN_ERR_UNSUPPORTED;
    /* without a cuBLAS handle, AUTO keeps F16 on the fused kernels */
    if (automatic && path == QN_QUANT_PATH_DEQUANT_CUBLAS && !ctx->cublas && n <= QN_QUANT_MMA_MAX_TOKENS)
        path = n <= QN_QUANT_GEMV_MAX_TOKENS ? QN_QUANT_PATH_GEMV : QN_QUANT_PATH_MMA;
    const cudaStream_t s = (cudaStream_t)stream;
    /* Q4_K, Q5_K, Q3_KP, Q6_KP, Q8_0P on Hopper: the tensor-core GEMM (asked for, in the tile asked for, or AUTO in its
     * window where the workspace has its room) */
    const size_t tc_ws = kq_tc_ws(ctx, fmt, N, K, n);
    if (automatic && path == QN_QUANT_PATH_DEQUANT_CUBLAS && qn_kq_tc_auto(fmt, N, n) && tc_ws && workspace &&
        ws_bytes >= tc_ws && qn_kq_tc_takes(ctx->sm, fmt, N, K))
        path = QN_QUANT_PATH_TC;
    if (path == QN_QUANT_PATH_TC) {
        if (!tc_ws || !qn_kq_tc_takes(ctx->sm, fmt, N, K)) return QN_ERR_UNSUPPORTED;
        const int tile = automatic || !opts ? 0 : opts->tc_tile;
        if (!workspace || ws_bytes < tc_ws || !qn_kq_tc_tile_valid(tile)) return QN_ERR_INVALID_ARG;
        uint8_t *const xt = (uint8_t *)workspace + KQ_WS_COUNTERS;
        const size_t xb = align256((size_t)n * (size_t)K * sizeof(__half));
        st = qn_kq_tc_prepare_x(x, n, K, xt, stream);
        if (st != QN_OK) return st;
        return qn_kq_tc_cuda(ctx->sm, ctx->n_sm, fmt, w, N, K, xt, n, tile, y, xt + xb, tc_ws - KQ_WS_COUNTERS - xb,
                             stream);
    }

    if (path == QN_QUANT_PATH_MMVQ && qn_quant_mmvq_f16_x(fmt)) { /* F16/BF16: x as it is; split = warps per row */
        if (!qn_quant_mmvq_has_format(fmt)) return QN_ERR_UNSUPPORTED;
        if (split > 4) return QN_ERR_INVALID_ARG;
        return kq_mmvq_matmul(fmt, w, N, K, x, n, y, ctx->n_sm, split, opts ? opts->mmvq_stage : 0, ctx->sm >= 90,
                              stream);
    }
    if (path == QN_QUANT_PATH_MMVQ) {
        /* q8 activations after the split-K counters; split = warps per row (1, 2, 4) */
        qn_quant_q8_x q8;
        const bool fits = qn_quant_q8_x_in_workspace(workspace, ws_bytes, n, K, &q8) && split <= 4;
        if (!fits && automatic) path = QN_QUANT_PATH_GEMV; /* a runtime sized for the GEMV still works */
        else if (!qn_quant_mmvq_has_format(fmt)) return QN_ERR_UNSUPPORTED;
        else if (!fits) return QN_ERR_INVALID_ARG;
        else {
            void *xq = q8.qs; /* the buffer of kq_mmvq.h */
            if (!(opts && opts->x_ready)) st = kq_mmvq_quantize_x_perm(x, NULL, n, K, xq, ctx->sm >= 90, stream);
            if (st != QN_OK) return st;
            return kq_mmvq_matmul(fmt, w, N, K, xq, n, y, ctx->n_sm, split, opts ? opts->mmvq_stage : 0,
                                  ctx->sm >= 90, stream);
        }
    }

    /* Q4_K, Q6_KP with QN_KQ_FRAG: the fragment-direct GEMV where it wants the call (gguf/kq_frag.h); a cluster split
     * is the staged kernel's */
    if (path == QN_QUANT_PATH_GEMV && mode != QN_QUANT_SPLIT_CLUSTER && kq_frag_wants(ctx, fmt, N, K, n))
        return kq_frag_matmul(ctx, fmt, w, N, K, x, n, y, split, mode == QN_QUANT_SPLIT_WORKSPACE, workspace, ws_bytes,
                              stream);
    if (path == QN_QUANT_PATH_GEMV || path == QN_QUANT_PATH_MMA)
        return kq_matmul_fused(ctx, fmt, path, w, N, K, (const __half *)x, n, y, split, mode, workspace, ws_bytes, s);

    /* DEQUANT_CUBLAS: W -> fp16 [N][K] in the workspace, then y^T (N x n, col-major) = W . x^T,
     * i.e. cuBLAS C = op(A) B with A = W viewed col-major K x N (op T), B = x col-major K x n. */
    if (path != QN_QUANT_PATH_DEQUANT_CUBLAS) return QN_ERR_INVALID_ARG;
    if (!ctx->cublas) return QN_ERR_INVALID_ARG;
    const bool direct = qn_quant_cublas_direct(fmt);
    if (!direct && (!workspace || ws_bytes < qn_quant_matmul_workspace_size(ctx, fmt, path, N, K, n) ||
                    !is_aligned16(workspace)))
        return QN_ERR_INVALID_ARG;
    if (N > INT32_MAX || n > INT32_MAX) return QN_ERR_SHAPE;
    const void *w16 = w; /* F16: the weights are already fp16 [N][K], row stride K */
    if (!direct) {
        void *dq = (uint8_t *)workspace + KQ_WS_COUNTERS;
        st = qn_quant_dequant_cuda(ctx, fmt, w, N, K, dq, stream);
        if (st != QN_OK) return st;
        w16 = dq;
    }
    return qn_quant_gemm_f16_cuda(ctx, w16, N, K, x, n, y, stream);
}

qn_status qn_quant_gemm_f16_cuda(const qn_quant_cuda_ctx *ctx, const void *w16, int64_t N, int64_t K, const void *x,
                                 int64_t n, float *y, void *stream) {
    if (!ctx || !ctx->cublas) return QN_ERR_INVALID_ARG;
    if (N > INT32_MAX || n > INT32_MAX || K > INT32_MAX) return QN_ERR_SHAPE;
    cublasHandle_t h = (cublasHandle_t)ctx->cublas;
    const float alpha = 1.0f, beta = 0.0f;
    QN_CUBLAS_TRY(cublasSetStream(h, (cudaStream_t)stream));
    if (ctx->blas_ws) QN_CUBLAS_TRY(cublasSetWorkspace(h, ctx->blas_ws, ctx->blas_ws_bytes));
    QN_CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)n, (int)K, &alpha, w16, CUDA_R_16F,
                               (int)K, x, CUDA_R_16F, (int)K, &beta, y, CUDA_R_32F, (int)N, CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
    return QN_OK;
}

qn_status qn_quant_matmul_cuda(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const void *w, int64_t N, int64_t K,
                               const void *x, int64_t n, float *y, void *workspace, size_t ws_bytes, void *stream) {
    return qn_quant_matmul_cuda_ex(ctx, fmt, w, N, K, x, n, y, workspace, ws_bytes, stream, NULL);
}
