/* calib_backend_cuda.cu — the CUDA half of the calibration backend (model/calib_backend.h, _cuda.h): cuBLAS in
 * full f32 plus two small kernels (a symmetric fill and a double-accumulated dot). Host pointers in and out,
 * synchronous copies on one stream: the quantizer waits for every result anyway, and each operand crosses the
 * bus once per layer (slots) or once per use (weights, AWQ candidates, GPTQ error blocks).
 *
 * cuBLAS is column-major. A row-major [r][c] matrix with row stride ld is, read column-major, the [c]×[r] matrix
 * Mᵀ with leading dimension ld; every call below is written on those transposed views, with the reasoning
 * beside it. Device memory grows on demand (cudaMalloc outside any step loop: this is an offline tool). */
#include "model/calib_backend_cuda.h"

#include <stdio.h>
#include <stdlib.h>

#include <nvtx3/nvToolsExt.h>

#include "kernels/common/cuda_check.h"

#define QN_CALIB_DOT_BLOCKS 256 /* partial sums; their total is taken on the host in a fixed order (deterministic) */
#define QN_CALIB_DOT_THREADS 256

typedef struct dev_buf {
    float *p;
    int64_t cap; /* floats */
} dev_buf;

typedef struct dev_slot {
    dev_buf b;
    int64_t rows, cols; /* 0 = empty */
} dev_slot;

struct qn_calib_cuda {
    int device;
    cublasHandle_t blas;
    cudaStream_t stream;
    dev_slot slot[QN_CALIB_SLOT_COUNT];
    dev_buf a, c;       /* per-call operands: matmul w / y, quad d / y, gptq_update E */
    double *partial;    /* [QN_CALIB_DOT_BLOCKS] device */
};

/* ------------------------------------------------------------------ kernels */

/* m [k][k]: copy the lower triangle of the column-major result (row-major upper) into the other half */
__global__ void qn_calib_symm_fill(float *m, int64_t k) {
    const int64_t i = (int64_t)blockIdx.y * blockDim.y + threadIdx.y, j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < k && j < k && j < i) m[i * k + j] = m[j * k + i];
}

/* partial[block] = Σ over a grid-stride share of i of (double)a[i]·(double)b[i]: the CPU sums these in double too */
__global__ void qn_calib_dot_f64(const float *a, const float *b, int64_t n, double *partial) {
    __shared__ double sh[QN_CALIB_DOT_THREADS];
    double s = 0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        s += (double)a[i] * (double)b[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int w = QN_CALIB_DOT_THREADS / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

/* ------------------------------------------------------------------ lifecycle */

extern "C" int qn_calib_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver: not an error for AUTO, just no device */
        return 0;
    }
    return n;
}

static qn_status start(qn_calib_cuda *g, char *name, size_t cap) {
    QN_CUDA_TRY(cudaGetDevice(&g->device));
    cudaDeviceProp prop;
    QN_CUDA_TRY(cudaGetDeviceProperties(&prop, g->device));
    snprintf(name, cap, "cuda:%d (%s)", g->device, prop.name);
    QN_CUDA_TRY(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking));
    QN_CUBLAS_TRY(cublasCreate(&g->blas));
    QN_CUBLAS_TRY(cublasSetStream(g->blas, g->stream));
    /* full f32: TF32 (10-bit mantissa) would move the Hessian by ~1e-3 relative, far more than the CPU's f32 */
    QN_CUBLAS_TRY(cublasSetMathMode(g->blas, CUBLAS_PEDANTIC_MATH));
    QN_CUDA_TRY(cudaMalloc((void **)&g->partial, sizeof(double) * QN_CALIB_DOT_BLOCKS));
    return QN_OK;
}

extern "C" qn_status qn_calib_cuda_create(qn_calib_cuda **out, char *name, size_t cap, qn_error *err) {
    qn_calib_cuda *g = (qn_calib_cuda *)calloc(1, sizeof *g);
    if (!g) return qn_error_set(err, QN_ERR_NOMEM, "calibration backend: out of memory");
    const qn_status st = start(g, name, cap);
    if (st != QN_OK) {
        qn_calib_cuda_destroy(g);
        return qn_error_set(err, st, "calibration backend: CUDA / cuBLAS did not start (see the log above)");
    }
    *out = g;
    return QN_OK;
}

extern "C" void qn_calib_cuda_destroy(qn_calib_cuda *g) {
    if (!g) return;
    for (int s = 0; s < QN_CALIB_SLOT_COUNT; s++) cudaFree(g->slot[s].b.p);
    cudaFree(g->a.p), cudaFree(g->c.p), cudaFree(g->partial);
    if (g->blas) cublasDestroy(g->blas);
    if (g->stream) cudaStreamDestroy(g->stream);
    free(g);
}

static qn_status grow(dev_buf *b, int64_t n) {
    if (n <= b->cap) return QN_OK;
    cudaFree(b->p), b->p = NULL, b->cap = 0;
    QN_CUDA_TRY(cudaMalloc((void **)&b->p, sizeof(float) * (size_t)n));
    b->cap = n;
    return QN_OK;
}

static qn_status up(qn_calib_cuda *g, float *dst, const float *src, int64_t n) {
    QN_CUDA_TRY(cudaMemcpyAsync(dst, src, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice, g->stream));
    return QN_OK;
}

static qn_status down_sync(qn_calib_cuda *g, void *dst, const void *src, size_t bytes) {
    QN_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g->stream));
    QN_CUDA_TRY(cudaStreamSynchronize(g->stream));
    return QN_OK;
}

static qn_status fail(qn_error *err, qn_status st, const char *op) {
    return qn_error_set(err, st == QN_OK ? QN_ERR_CUDA : st, "calibration backend (cuda): %s failed (see the log above)",
                        op);
}

static qn_status empty(qn_error *err, const char *op, int s) {
    return qn_error_set(err, QN_ERR_INVALID_ARG, "calibration backend: %s on an empty slot %d", op, s);
}

/* ------------------------------------------------------------------ slots */

extern "C" qn_status qn_calib_cuda_load(qn_calib_cuda *g, qn_calib_slot s, const float *src, int64_t rows,
                                        int64_t cols, qn_error *err) {
    dev_slot *sl = &g->slot[s];
    qn_status st;
    if ((st = grow(&sl->b, rows * cols)) || (st = up(g, sl->b.p, src, rows * cols))) return fail(err, st, "load");
    sl->rows = rows, sl->cols = cols;
    return QN_OK;
}

static qn_status read_cols(qn_calib_cuda *g, const dev_slot *sl, int64_t c0, int64_t c1, float *dst) {
    /* row-major [rows][cols] -> dst [rows][c1 - c0]: a 2-D copy, one strip of (c1 - c0) floats per row */
    QN_CUDA_TRY(cudaMemcpy2DAsync(dst, sizeof(float) * (size_t)(c1 - c0), sl->b.p + c0, sizeof(float) * (size_t)sl->cols,
                                  sizeof(float) * (size_t)(c1 - c0), (size_t)sl->rows, cudaMemcpyDeviceToHost, g->stream));
    QN_CUDA_TRY(cudaStreamSynchronize(g->stream));
    return QN_OK;
}

extern "C" qn_status qn_calib_cuda_read_cols(qn_calib_cuda *g, qn_calib_slot s, int64_t c0, int64_t c1, float *dst,
                                             qn_error *err) {
    const dev_slot *sl = &g->slot[s];
    if (!sl->rows || c0 < 0 || c1 > sl->cols || c0 >= c1)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "calibration backend: columns [%lld, %lld) of slot %d",
                            (long long)c0, (long long)c1, (int)s);
    const qn_status st = read_cols(g, sl, c0, c1, dst);
    return st ? fail(err, st, "read_cols") : QN_OK;
}

/* ------------------------------------------------------------------ operations */

static qn_status matmul(qn_calib_cuda *g, const dev_slot *x, const float *w, int64_t n, float *y) {
    const int64_t T = x->rows, k = x->cols;
    qn_status st;
    if ((st = grow(&g->a, n * k)) || (st = grow(&g->c, T * n)) || (st = up(g, g->a.p, w, n * k))) return st;
    /* Row-major Y [T][n] = X [T][k] · Wᵀ. Column-major views: X is Xc = Xᵀ (k×T, ld k), W is Wc = Wᵀ (k×n, ld k),
     * Y is Yc = Yᵀ (n×T, ld n). Yᵀ = W·Xᵀ = Wcᵀ·Xc: opA = T on Wc, opB = N on Xc, m = n, n = T, k = k. */
    const float one = 1.0f, zero = 0.0f;
    QN_CUBLAS_TRY(cublasSgemm(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)T, (int)k, &one, g->a.p, (int)k, x->b.p,
                              (int)k, &zero, g->c.p, (int)n));
    return down_sync(g, y, g->c.p, sizeof(float) * (size_t)(T * n));
}

extern "C" qn_status qn_calib_cuda_matmul(qn_calib_cuda *g, qn_calib_slot x, const float *w, int64_t n, float *y,
                                          qn_error *err) {
    if (!g->slot[x].rows) return empty(err, "matmul", (int)x);
    nvtxRangePushA("calib.matmul");
    const qn_status st = matmul(g, &g->slot[x], w, n, y);
    nvtxRangePop();
    return st ? fail(err, st, "matmul") : QN_OK;
}

static qn_status gram(qn_calib_cuda *g, const dev_slot *x, float scale, float *h) {
    const int64_t T = x->rows, k = x->cols;
    qn_status st;
    if ((st = grow(&g->c, k * k))) return st;
    /* Row-major X [T][k] is Xc = Xᵀ (k×T, ld k) column-major, so H = XᵀX = Xc·Xcᵀ: SYRK with trans = N, n = k,
     * k = T. SYRK writes one triangle: CUBLAS_FILL_MODE_LOWER of the column-major C, i.e. elements (i, j) with
     * i >= j in column-major = row-major h[j][i], the upper row-major triangle; symm_fill copies it down. */
    const float zero = 0.0f;
    QN_CUBLAS_TRY(cublasSsyrk(g->blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, (int)k, (int)T, &scale, x->b.p, (int)k,
                              &zero, g->c.p, (int)k));
    const dim3 blk(32, 8), grd((unsigned)((k + 31) / 32), (unsigned)((k + 7) / 8));
    qn_calib_symm_fill<<<grd, blk, 0, g->stream>>>(g->c.p, k);
    QN_CUDA_TRY_LAUNCH();
    return down_sync(g, h, g->c.p, sizeof(float) * (size_t)(k * k));
}

extern "C" qn_status qn_calib_cuda_gram(qn_calib_cuda *g, qn_calib_slot x, float scale, float *h, qn_error *err) {
    if (!g->slot[x].rows) return empty(err, "gram", (int)x);
    nvtxRangePushA("calib.gram");
    const qn_status st = gram(g, &g->slot[x], scale, h);
    nvtxRangePop();
    return st ? fail(err, st, "gram") : QN_OK;
}

static qn_status quad(qn_calib_cuda *g, const dev_slot *h, const float *d, int64_t n, double *e) {
    const int64_t k = h->cols;
    qn_status st;
    if ((st = grow(&g->a, n * k)) || (st = grow(&g->c, n * k)) || (st = up(g, g->a.p, d, n * k))) return st;
    /* Row-major Y [n][k] = D [n][k] · H [k][k]. Column-major: D is Dc = Dᵀ (k×n, ld k), H is Hᵀ = H (symmetric),
     * Y is Yc = Yᵀ = (D·H)ᵀ = H·Dᵀ = H·Dc (k×n, ld k): opA = opB = N, m = k, n = n, k = k. */
    const float one = 1.0f, zero = 0.0f;
    QN_CUBLAS_TRY(cublasSgemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)k, (int)n, (int)k, &one, h->b.p, (int)k, g->a.p,
                              (int)k, &zero, g->c.p, (int)k));
    qn_calib_dot_f64<<<QN_CALIB_DOT_BLOCKS, QN_CALIB_DOT_THREADS, 0, g->stream>>>(g->a.p, g->c.p, n * k, g->partial);
    QN_CUDA_TRY_LAUNCH();
    double part[QN_CALIB_DOT_BLOCKS];
    if ((st = down_sync(g, part, g->partial, sizeof part))) return st;
    double s = 0;
    for (int i = 0; i < QN_CALIB_DOT_BLOCKS; i++) s += part[i];
    *e = s;
    return QN_OK;
}

extern "C" qn_status qn_calib_cuda_quad(qn_calib_cuda *g, qn_calib_slot h, const float *d, int64_t n, double *e,
                                        qn_error *err) {
    if (!g->slot[h].rows) return empty(err, "quad", (int)h);
    nvtxRangePushA("calib.quad");
    const qn_status st = quad(g, &g->slot[h], d, n, e);
    nvtxRangePop();
    return st ? fail(err, st, "quad") : QN_OK;
}

static qn_status gptq_update(qn_calib_cuda *g, int64_t i1, int64_t i2, const float *e) {
    const dev_slot *w = &g->slot[QN_CALIB_SLOT_W], *u = &g->slot[QN_CALIB_SLOT_U];
    const int64_t n = w->rows, k = w->cols, cnt = i2 - i1;
    qn_status st;
    if ((st = grow(&g->a, n * cnt)) || (st = up(g, g->a.p, e, n * cnt))) return st;
    /* Row-major C = W[:, i2:k] ([n][k − i2], ld k) -= E [n][cnt] (ld cnt) · Ub = U[i1:i2, i2:k] ([cnt][k − i2],
     * ld k). Column-major views: C is Cᵀ ((k − i2)×n, ld k, at W + i2), Ub is Ubᵀ ((k − i2)×cnt, ld k, at
     * U + i1·k + i2), E is Eᵀ (cnt×n, ld cnt). Cᵀ -= (E·Ub)ᵀ = Ubᵀ·Eᵀ: opA = opB = N, m = k − i2, n = n,
     * k = cnt, alpha = −1, beta = 1. */
    const float minus_one = -1.0f, one = 1.0f;
    QN_CUBLAS_TRY(cublasSgemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)(k - i2), (int)n, (int)cnt, &minus_one,
                              u->b.p + i1 * k + i2, (int)k, g->a.p, (int)cnt, &one, w->b.p + i2, (int)k));
    /* the next read_cols synchronizes; E's buffer may be reused only after this GEMM: wait here */
    QN_CUDA_TRY(cudaStreamSynchronize(g->stream));
    return QN_OK;
}

extern "C" qn_status qn_calib_cuda_gptq_update(qn_calib_cuda *g, int64_t i1, int64_t i2, const float *e,
                                               qn_error *err) {
    const dev_slot *w = &g->slot[QN_CALIB_SLOT_W], *u = &g->slot[QN_CALIB_SLOT_U];
    if (!w->rows || !u->rows) return empty(err, "gptq_update", !w->rows ? QN_CALIB_SLOT_W : QN_CALIB_SLOT_U);
    if (u->cols != w->cols || i1 < 0 || i1 >= i2 || i2 > w->cols)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "calibration backend: gptq_update [%lld, %lld) of k %lld",
                            (long long)i1, (long long)i2, (long long)w->cols);
    if (i2 == w->cols) return QN_OK; /* nothing right of the last block */
    nvtxRangePushA("calib.gptq_update");
    const qn_status st = gptq_update(g, i1, i2, e);
    nvtxRangePop();
    return st ? fail(err, st, "gptq_update") : QN_OK;
}
