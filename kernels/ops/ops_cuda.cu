/* ops_cuda.cu — the GPU row and element-wise ops of ops_cuda.h: embedding gather + dequant, RMSNorm
 * (plain, with a row gather, fused with the residual add), SiLU*mul and f32 -> fp16; the norms and
 * SiLU*mul optionally also write their output as the int8 matmul's q8 activations. Holds no state.
 * The norms run one CTA per row and reduce in a fixed order (warp butterflies, then the warp partials in
 * warp order, with a variant and block size that depend on n and the pointers' alignment only), so a
 * row's result does not change from run to run or with the batch it is in. */
#include <stdint.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_util.cuh"
#include "kernels/ops/ops_cuda.h"
#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/kq_decode.cuh"
#include "kernels/quant/gguf/kq_mmvq_x.cuh"

/* ------------------------------------------------------------------------------------------------
 * embedding: one CTA per token, one element per thread and step.
 * Values are the fp32 formulas of formats.md §2.2 in the reference's operation order (gguf_dequant.h),
 * spelled with __fmul_rn/__fadd_rn/__fsub_rn so that --use_fast_math cannot contract them into FMAs
 * (every product is exact anyway: at most 11 + 7 + 6 significant bits, formats.md §2.2). Every result is
 * 0 or a multiple of an fp16 value >= 2^-24 times an integer, so it is never an f32 subnormal and the
 * flush-to-zero of fast math cannot touch it: the output is bit-equal to QN_QFORMATS[fmt].dequant_ref. */

#define EMBED_THREADS 256

__device__ __forceinline__ float emb_h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }

template <qn_qformat F>
struct emb_fmt;

template <>
struct emb_fmt<QN_QFORMAT_F32> {
    static constexpr int BE = 1, BB = 4;
    __device__ static float at(const uint8_t *b, int) { return *reinterpret_cast<const float *>(b); }
};
template <>
struct emb_fmt<QN_QFORMAT_F16> {
    static constexpr int BE = 1, BB = 2;
    __device__ static float at(const uint8_t *b, int) { return emb_h2f(*reinterpret_cast<const uint16_t *>(b)); }
};
template <>
struct emb_fmt<QN_QFORMAT_BF16> {
    static constexpr int BE = 1, BB = 2;
    __device__ static float at(const uint8_t *b, int) {
        return __uint_as_float((uint32_t)*reinterpret_cast<const uint16_t *>(b) << 16); /* a bit move */
    }
};

/* legacy blocks: element j < 16 in the low nibble of qs[j], j >= 16 in the high nibble of qs[j-16] */
__device__ __forceinline__ int emb_nibble(const uint8_t *qs, int j) { return j < 16 ? qs[j] & 15 : qs[j - 16] >> 4; }
/* Q5_0/Q5_1: the nibble plus bit j of the little-endian u32 qh as bit 4 */
template <class B>
__device__ __forceinline__ int emb_q5(const B *x, int j) {
    return emb_nibble(x->qs, j) | ((x->qh[j >> 3] >> (j & 7)) & 1) << 4;
}

template <>
struct emb_fmt<QN_QFORMAT_Q4_0> {
    static constexpr int BE = QN_QK4_0, BB = sizeof(qn_block_q4_0);
    __device__ static float at(const uint8_t *p, int j) {
        const qn_block_q4_0 *x = reinterpret_cast<const qn_block_q4_0 *>(p);
        return __fmul_rn(emb_h2f(x->d), (float)(emb_nibble(x->qs, j) - 8));
    }
};
template <>
struct emb_fmt<QN_QFORMAT_Q4_1> {
    static constexpr int BE = QN_QK4_1, BB = sizeof(qn_block_q4_1);
    __device__ static float at(const uint8_t *p, int j) {
        const qn_block_q4_1 *x = reinterpret_cast<const qn_block_q4_1 *>(p);
        return __fadd_rn(__fmul_rn(emb_h2f(x->d), (float)emb_nibble(x->qs, j)), emb_h2f(x->m));
    }
};
template <>
struct emb_fmt<QN_QFORMAT_Q5_0> {
    static constexpr int BE = QN_QK5_0, BB = sizeof(qn_block_q5_0);
    __device__ static float at(const uint8_t *p, int j) {
        const qn_block_q5_0 *x = reinterpret_cast<const qn_block_q5_0 *>(p);
        return __fmul_rn(emb_h2f(x->d), (float)(emb_q5(x, j) - 16));
    }
};
template <>
struct emb_fmt<QN_QFORMAT_Q5_1> {
    static constexpr int BE = QN_QK5_1, BB = sizeof(qn_block_q5_1);
    __device__ static float at(const uint8_t *p, int j) {
        const qn_block_q5_1 *x = reinterpret_cast<const qn_block_q5_1 *>(p);
        return __fadd_rn(__fmul_rn(emb_h2f(x->d), (float)emb_q5(x, j)), emb_h2f(x->m));
    }
};
template <>
struct emb_fmt<QN_QFORMAT_Q8_0> {
    static constexpr int BE = QN_QK8_0, BB = sizeof(qn_block_q8_0);
    __device__ static float at(const uint8_t *p, int j) {
        const qn_block_q8_0 *x = reinterpret_cast<const qn_block_q8_0 *>(p);
        return __fmul_rn(emb_h2f(x->d), (float)x->qs[j]);
    }
};

/* Q2_K/Q4_K/Q5_K: (d * sc) * q - dmin * mn (d, dmin: fp16 bits) */
__device__ __forceinline__ float emb_k_affine(uint16_t d, int sc, int q, uint16_t dmin, int mn) {
    return __fsub_rn(__fmul_rn(__fmul_rn(emb_h2f(d), (float)sc), (float)q), __fmul_rn(emb_h2f(dmin), (float)mn));
}

/* K-quants, e = 0..255. Q2_K/Q3_K/Q6_K: e = 128h + 32j + l, sub-block 8h + 2j + (l >= 16) = e / 16.
 * Q4_K/Q5_K: e = 64c + 32p + l, (scale, min) pair 2c + p = e / 32. */
template <>
struct emb_fmt<QN_QFORMAT_Q2_K> {
    static constexpr int BE = QN_QK_K, BB = sizeof(qn_block_q2_k);
    __device__ static float at(const uint8_t *p, int e) {
        const qn_block_q2_k *x = reinterpret_cast<const qn_block_q2_k *>(p);
        const int h = e >> 7, j = (e >> 5) & 3, l = e & 31;
        const int sb = x->scales[e >> 4];
        const int q = (x->qs[32 * h + l] >> (2 * j)) & 3;
        return emb_k_affine(x->d, sb & 15, q, x->dmin, sb >> 4);
    }
};
template <>
struct emb_fmt<QN_QFORMAT_Q3_K> {
    static constexpr int BE = QN_QK_K, BB = sizeof(qn_block_q3_k);
    __device__ static float at(const uint8_t *p, int e) {
        const qn_block_q3_k *x = reinterpret_cast<const qn_block_q3_k *>(p);
        const int h = e >> 7, j = (e >> 5) & 3, l = e & 31, is = e >> 4;
        const int lo = (x->qs[32 * h + l] >> (2 * j)) & 3;
        const int q = lo - (((x->hmask[l] >> (4 * h + j)) & 1) ? 0 : 4);
        /* 6-bit scale is (formats.md §2.2): low nibble from byte is (is < 8) or is-8 (high nibble),
         * the two high bits from byte 8 + is%4 at bit 2*(is/4) */
        const int lo4 = is < 8 ? (x->scales[is] & 15) : (x->scales[is - 8] >> 4);
        const int hi2 = (x->scales[8 + (is & 3)] >> (2 * (is >> 2))) & 3;
        const int s = (lo4 | hi2 << 4) - 32;
        return __fmul_rn(__fmul_rn(emb_h2f(x->d), (float)s), (float)q);
    }
};
/* Q4_K/Q5_K: the (scale, min) pair e / 32 (x: qn_block_q4_k or _q5_k) */
template <class B>
__device__ __forceinline__ float emb_k45(const B *x, int e, int q) {
    int sc, mn;
    kq_scale_min_k4(e >> 5, x->scales, sc, mn);
    return emb_k_affine(x->d, sc, q, x->dmin, mn);
}
/* the nibble of element e = 64c + 32p + l: nibble p of qs[32c + l] */
__device__ __forceinline__ int emb_k_nibble(const uint8_t *qs, int e) {
    const uint8_t b = qs[32 * (e >> 6) + (e & 31)];
    return (e >> 5) & 1 ? b >> 4 : b & 15;
}
template <>
struct emb_fmt<QN_QFORMAT_Q4_K> {
    static constexpr int BE = QN_QK_K, BB = sizeof(qn_block_q4_k);
    __device__ static float at(const uint8_t *p, int e) {
        const qn_block_q4_k *x = reinterpret_cast<const qn_block_q4_k *>(p);
        return emb_k45(x, e, emb_k_nibble(x->qs, e));
    }
};
template <>
struct emb_fmt<QN_QFORMAT_Q5_K> {
    static constexpr int BE = QN_QK_K, BB = sizeof(qn_block_q5_k);
    __device__ static float at(const uint8_t *p, int e) {
        const qn_block_q5_k *x = reinterpret_cast<const qn_block_q5_k *>(p);
        return emb_k45(x, e, emb_k_nibble(x->qs, e) | ((x->qh[e & 31] >> (e >> 5)) & 1) << 4);
    }
};
template <>
struct emb_fmt<QN_QFORMAT_Q6_K> {
    static constexpr int BE = QN_QK_K, BB = sizeof(qn_block_q6_k);
    __device__ static float at(const uint8_t *p, int e) {
        const qn_block_q6_k *x = reinterpret_cast<const qn_block_q6_k *>(p);
        const int h = e >> 7, k = (e >> 5) & 3, l = e & 31;
        const uint8_t b = x->ql[64 * h + 32 * (k & 1) + l];
        const int lo = k < 2 ? b & 15 : b >> 4;
        const int hi = (x->qh[32 * h + l] >> (2 * k)) & 3;
        return __fmul_rn(__fmul_rn(emb_h2f(x->d), (float)x->scales[e >> 4]), (float)((lo | hi << 4) - 32));
    }
};

template <qn_qformat F>
__global__ void __launch_bounds__(EMBED_THREADS)
    k_embed(const uint8_t *__restrict__ table, int64_t row_bytes, int64_t n_embd, int64_t row_begin, int64_t n_rows,
            const int32_t *__restrict__ tokens, float *__restrict__ out) {
    using FT = emb_fmt<F>;
    const int64_t t = blockIdx.x;
    const int64_t id = (int64_t)tokens[t] - row_begin; /* the same for the whole block: no divergence */
    float *o = out + t * n_embd;
    if (id < 0 || id >= n_rows) { /* another rank's vocab slice (tensor parallel) */
        for (int64_t e = threadIdx.x; e < n_embd; e += EMBED_THREADS) o[e] = 0.0f;
        return;
    }
    const uint8_t *row = table + id * row_bytes;
    for (int64_t e = threadIdx.x; e < n_embd; e += EMBED_THREADS)
        o[e] = FT::at(row + (e / FT::BE) * FT::BB, (int)(e % FT::BE));
}

#define EMB_FOR_EACH_FORMAT(X) \
    X(F32) X(F16) X(BF16) X(Q4_0) X(Q4_1) X(Q5_0) X(Q5_1) X(Q8_0) X(Q2_K) X(Q3_K) X(Q4_K) X(Q5_K) X(Q6_K)

qn_status qn_embed_cuda(qn_qformat fmt, const void *table, int64_t n_embd, const int32_t *tokens, int32_t n,
                        float *out, void *stream) {
    return qn_embed_rows_cuda(fmt, table, n_embd, 0, INT64_MAX, tokens, n, out, stream);
}

qn_status qn_embed_rows_cuda(qn_qformat fmt, const void *table, int64_t n_embd, int64_t row_begin, int64_t n_rows,
                             const int32_t *tokens, int32_t n, float *out, void *stream) {
    void (*fn)(const uint8_t *, int64_t, int64_t, int64_t, int64_t, const int32_t *, float *) = NULL;
#define EMB_CASE(F) \
    if (fmt == QN_QFORMAT_##F) fn = k_embed<QN_QFORMAT_##F>;
    EMB_FOR_EACH_FORMAT(EMB_CASE)
#undef EMB_CASE
    if (!fn) return QN_ERR_UNSUPPORTED;
    if (n < 0) return QN_ERR_INVALID_ARG;
    if (n_embd <= 0 || n_embd % QN_QFORMATS[fmt].block_elems != 0) return QN_ERR_SHAPE;
    if (n == 0) return QN_OK;
    if (!table || !tokens || !out || row_begin < 0 || n_rows < 0) return QN_ERR_INVALID_ARG;
    const int64_t row_bytes = (int64_t)qn_qformat_row_bytes(fmt, n_embd);
    fn<<<(unsigned)n, EMBED_THREADS, 0, (cudaStream_t)stream>>>((const uint8_t *)table, row_bytes, n_embd, row_begin,
                                                                 n_rows, tokens, out);
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}

/* ------------------------------------------------------------------------------------------------
 * RMSNorm: one CTA per row, two variants, both with a reduction order that depends on n alone (the
 * variant and the block size are functions of n and of the pointers' alignment, never of n_rows or
 * the row index), so a row gives the same bits alone or in a batch and in or out of a CUDA graph.
 * The per-thread sum is fmaf in the thread's element order, then warp butterflies, then the warp
 * partials in warp order.
 * scale = rsqrtf(ss / n + eps): rsqrtf is the hardware approximation (2 ulp), ~1e-7 relative, far
 * below the fp16 output's 2^-11; the output is fp16(round-to-nearest-even((x * scale) * w)), the
 * CPU twin's (ops_ref.c) order.
 *
 * k_rmsnorm_v4 (n % 4 == 0, n <= 4 * 4 * 1024, 16-byte aligned x/y/w, 8-byte aligned out): the row
 * stays in registers, NORM_V4 float4 per thread, all loads issued before the first use (w's before the
 * PDL wait), so a 4096-wide decode row costs one memory round trip (x and y in flight together), one block
 * reduction and one round of 8-byte stores: ~2-3 us instead of the strided loop's ~10 (which
 * waited on each strided load, re-read x after the reduction and stored 2 bytes per thread).
 * k_rmsnorm: the strided loop for every other shape.
 * Q8 (q8 given): each 32-element block of the output row is also quantized from its fp16 values, by the
 * lanes that just wrote them (kq_mmvq_x_store): in k_rmsnorm a warp's iteration covers one block (32
 * consecutive elements, blockDim and n multiples of 32), in k_rmsnorm_v4 8 lanes' float4s do. The kernel
 * then lets the int8 matmul after it (PDL) start: it waits for this kernel's completion before reading. */

#define NORM_V4 4 /* float4 per thread in k_rmsnorm_v4: 16 floats of x in registers */

/* threads per row of k_rmsnorm: a function of n only */
static int norm_threads(int64_t n) { return n >= 8192 ? 1024 : n >= 2048 ? 512 : 256; }

/* threads per row of k_rmsnorm_v4: enough for NORM_V4 float4 each, a multiple of 32, >= 64 */
static int norm_v4_threads(int64_t n) {
    const int64_t per = qn_ceil_div<int64_t>(n / 4, NORM_V4);
    const int64_t t = qn_ceil_div<int64_t>(per, 32) * 32;
    return t < 64 ? 64 : (int)t;
}

static bool norm_use_v4(int64_t n, const void *x, const void *y, const void *w, const void *out) {
    const uintptr_t a16 = (uintptr_t)x | (uintptr_t)y | (uintptr_t)w;
    return n % 4 == 0 && n / 4 <= (int64_t)NORM_V4 * 1024 && (a16 & 15u) == 0 && ((uintptr_t)out & 7u) == 0;
}

/* Sum over the CTA in a fixed order; every thread gets the result. red: >= 32 floats of shared. */
__device__ __forceinline__ float norm_block_sum(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = qn_warp_sum(v);
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < n_warps ? red[lane] : 0.0f;
    return qn_warp_sum(v);
}

/* ADD: x[t] += y[t] first (x written back). rows: gather source rows (not with ADD). Q8: q8 as well. */
template <bool ADD, bool Q8>
__global__ void __launch_bounds__(1024)
    k_rmsnorm(float *x, const float *__restrict__ y, const int32_t *__restrict__ rows, int64_t n,
              const float *__restrict__ w, float eps, __half *__restrict__ out, qn_quant_q8_x q8) {
    __shared__ float red[32];
    qn_pdl_trigger();
    const int64_t t = blockIdx.x;
    const int64_t src = rows ? (int64_t)rows[t] : t; /* rows: a step input, not the kernel before's output */
    float *xr = x + src * n;
    qn_pdl_wait(); /* x and y come from the kernels before */
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i];
        if (ADD) {
            v = __fadd_rn(v, __ldca(y + t * n + i)); /* the kernel before's output: not .nc (PDL) */
            xr[i] = v; /* read back below by this same thread */
        }
        ss = __fmaf_rn(v, v, ss);
    }
    ss = norm_block_sum(ss, red);
    const float scale = rsqrtf(__fadd_rn(__fdiv_rn(ss, (float)n), eps));
    __half *o = out + t * n;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) { /* the same trip count across a warp under Q8 */
        const __half h = __float2half_rn(__fmul_rn(__fmul_rn(xr[i], scale), w[i]));
        o[i] = h;
        if (Q8) {
            const float v[1] = {__half2float(h)};
            kq_mmvq_x_store<1>(v, true, q8.qs + t * n + i, q8.rec + (t * n + i) / QN_MMVQ_QK);
        }
    }
}

/* Thread j holds float4 number k * blockDim + j of the row (k < NORM_V4): each load instruction of
 * a warp covers 512 contiguous bytes. */
template <bool ADD, bool Q8>
__global__ void __launch_bounds__(1024)
    k_rmsnorm_v4(float *x, const float *__restrict__ y, const int32_t *__restrict__ rows, int64_t n,
                 const float *__restrict__ w, float eps, __half *__restrict__ out, qn_quant_q8_x q8) {
    __shared__ float red[32];
    qn_pdl_trigger();
    const int64_t t = blockIdx.x;
    const int64_t src = rows ? (int64_t)rows[t] : t; /* rows: a step input, not the kernel before's output */
    const int n4 = (int)(n / 4);
    float4 *xr = reinterpret_cast<float4 *>(x + src * n);
    const float4 *yr = ADD ? reinterpret_cast<const float4 *>(y + t * n) : NULL;
    const float4 *wr = reinterpret_cast<const float4 *>(w);
    float4 g[NORM_V4]; /* the norm weights do not depend on the kernel before, so they are loaded first in the
                        * source; ptxas still schedules the wait ahead of these loads (SASS, device_util.cuh), so
                        * what they gain is issue before the block reduction, not overlap with that kernel */
#pragma unroll
    for (int k = 0; k < NORM_V4; k++) {
        const int i = k * (int)blockDim.x + (int)threadIdx.x;
        g[k] = i < n4 ? wr[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    qn_pdl_wait(); /* x and y come from the kernels before */
    float4 v[NORM_V4];
#pragma unroll
    for (int k = 0; k < NORM_V4; k++) {
        const int i = k * (int)blockDim.x + (int)threadIdx.x;
        v[k] = i < n4 ? xr[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    if (ADD) {
#pragma unroll
        for (int k = 0; k < NORM_V4; k++) {
            const int i = k * (int)blockDim.x + (int)threadIdx.x;
            if (i < n4) {
                const float4 b = __ldca(yr + i); /* the kernel before's output: not .nc (PDL) */
                v[k] = make_float4(__fadd_rn(v[k].x, b.x), __fadd_rn(v[k].y, b.y), __fadd_rn(v[k].z, b.z),
                                   __fadd_rn(v[k].w, b.w));
                xr[i] = v[k];
            }
        }
    }
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < NORM_V4; k++) { /* padding lanes hold zeros: adding 0*0 changes nothing */
        ss = __fmaf_rn(v[k].x, v[k].x, ss);
        ss = __fmaf_rn(v[k].y, v[k].y, ss);
        ss = __fmaf_rn(v[k].z, v[k].z, ss);
        ss = __fmaf_rn(v[k].w, v[k].w, ss);
    }
    ss = norm_block_sum(ss, red);
    const float scale = rsqrtf(__fadd_rn(__fdiv_rn(ss, (float)n), eps));
    uint2 *o = reinterpret_cast<uint2 *>(out + t * n);
#pragma unroll
    for (int k = 0; k < NORM_V4; k++) {
        const int i = k * (int)blockDim.x + (int)threadIdx.x;
        __half2 lo = __float2half2_rn(0.0f), hi = lo;
        if (i < n4) {
            lo = __floats2half2_rn(__fmul_rn(__fmul_rn(v[k].x, scale), g[k].x), __fmul_rn(__fmul_rn(v[k].y, scale), g[k].y));
            hi = __floats2half2_rn(__fmul_rn(__fmul_rn(v[k].z, scale), g[k].z), __fmul_rn(__fmul_rn(v[k].w, scale), g[k].w));
            o[i] = make_uint2(qn_h2_bits(lo), qn_h2_bits(hi));
        }
        if (Q8) { /* n % 32 == 0: the 8 lanes of a block (8 float4) are all in or all out */
            const float2 a = __half22float2(lo), b = __half22float2(hi);
            const float q[4] = {a.x, a.y, b.x, b.y};
            kq_mmvq_x_store<4>(q, i < n4, q8.qs + t * n + 4 * i, q8.rec + t * (n / QN_MMVQ_QK) + i / 8);
        }
    }
}

/* The norms, silu_mul and add launch with programmatic dependent launch on sm_90+ (device_util.cuh):
 * they read their step inputs and weights pointers, then wait for the kernel before, and let the
 * kernel after them start early. Asked of the current device per call (host only, at graph capture
 * or per eager step). */
static bool ops_pdl(void) {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
        return false;
    return major >= 9;
}

/* One launch of either variant (norm_use_v4 picks, from n and the alignment only). */
template <bool ADD, bool Q8>
static void norm_launch_q8(float *x, const float *y, const int32_t *rows, int32_t n_rows, int64_t n, const float *w,
                           float eps, uint16_t *out, qn_quant_q8_x q8, cudaStream_t st) {
    __half *o = reinterpret_cast<__half *>(out);
    const bool pdl = ops_pdl();
    if (norm_use_v4(n, x, ADD ? y : NULL, w, out))
        (void)qn_launch(k_rmsnorm_v4<ADD, Q8>, dim3((unsigned)n_rows), dim3(norm_v4_threads(n)), 0, st, pdl, x, y, rows,
                        n, w, eps, o, q8);
    else
        (void)qn_launch(k_rmsnorm<ADD, Q8>, dim3((unsigned)n_rows), dim3(norm_threads(n)), 0, st, pdl, x, y, rows, n, w,
                        eps, o, q8);
}

template <bool ADD>
static void norm_launch(float *x, const float *y, const int32_t *rows, int32_t n_rows, int64_t n, const float *w,
                        float eps, uint16_t *out, const qn_quant_q8_x *q8, cudaStream_t st) {
    if (q8) norm_launch_q8<ADD, true>(x, y, rows, n_rows, n, w, eps, out, *q8, st);
    else norm_launch_q8<ADD, false>(x, y, rows, n_rows, n, w, eps, out, qn_quant_q8_x{}, st);
}

/* q8 (ops_cuda.h): the width and the pointers the q8 stores need */
static qn_status q8_check(const qn_quant_q8_x *q8, int64_t n) {
    if (!q8) return QN_OK;
    if (n % QN_MMVQ_QK != 0) return QN_ERR_SHAPE;
    if (!q8->qs || !q8->rec || ((uintptr_t)q8->qs & 7u) || ((uintptr_t)q8->rec & 7u)) return QN_ERR_INVALID_ARG;
    return QN_OK;
}

/* flat element-wise kernels: a grid-stride loop over [0, total) */
#define EW_THREADS 256
static unsigned ew_blocks(int64_t total) {
    const int64_t b = qn_ceil_div<int64_t>(total, EW_THREADS);
    return (unsigned)(b < 65536 ? b : 65536);
}
#define EW_LOOP(i, total) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (total); i += (int64_t)gridDim.x * blockDim.x)

__global__ void k_add(float *__restrict__ x, const float *__restrict__ y, int64_t total) {
    qn_pdl_trigger();
    qn_pdl_wait();
    EW_LOOP(i, total) x[i] = __fadd_rn(x[i], __ldca(y + i)); /* y: the kernel before's (PDL: not .nc) */
}

qn_status qn_rmsnorm_cuda(const float *x, const int32_t *rows, int32_t n_rows, int64_t n, const float *w, float eps,
                          uint16_t *out, const qn_quant_q8_x *q8, void *stream) {
    if (n_rows < 0) return QN_ERR_INVALID_ARG;
    if (n <= 0 || n > INT32_MAX) return QN_ERR_SHAPE;
    if (n_rows == 0) return QN_OK;
    if (!x || !w || !out) return QN_ERR_INVALID_ARG;
    const qn_status q8st = q8_check(q8, n);
    if (q8st != QN_OK) return q8st;
    norm_launch<false>(const_cast<float *>(x), NULL, rows, n_rows, n, w, eps, out, q8, (cudaStream_t)stream);
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}

qn_status qn_add_rmsnorm_cuda(float *x, const float *y, int32_t n_rows, int64_t n, const float *w, float eps,
                              uint16_t *out, const qn_quant_q8_x *q8, void *stream) {
    if (n_rows < 0) return QN_ERR_INVALID_ARG;
    if (n <= 0 || n > INT32_MAX) return QN_ERR_SHAPE;
    if (n_rows == 0) return QN_OK;
    if (!x || !y || (w && !out) || (!w && q8)) return QN_ERR_INVALID_ARG;
    const qn_status q8st = q8_check(q8, n);
    if (q8st != QN_OK) return q8st;
    const cudaStream_t st = (cudaStream_t)stream;
    if (!w) {
        const int64_t total = (int64_t)n_rows * n;
        (void)qn_launch(k_add, dim3(ew_blocks(total)), dim3(EW_THREADS), 0, st, ops_pdl(), x, y, total);
    } else {
        norm_launch<true>(x, y, NULL, n_rows, n, w, eps, out, q8, st);
    }
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}

/* ------------------------------------------------------------------------------------------------
 * SiLU * mul and f32 -> fp16 (round to nearest even).
 * silu(g) = g / (1 + e^-g) with the fast-math intrinsics written out (they are what --use_fast_math
 * makes of expf and '/' anyway): __expf is within 2 + 1.2|g| ulp (~1e-5 relative at |g| = 88), and
 * __fdividef within 2 ulp; it returns 0 once 1 + e^-g > 2^126 (g < -87.3), where the exact value
 * (|g| e^g < 1e-36) is 0 in fp16 as well. So the fp16 output is within 1 ulp of fp16(exact). */

/* Q8: q8 as well; a warp's iteration covers one 32-element block (blockDim, total and n multiples of 32,
 * so blocks never straddle rows and the flat index is the q8 layout's), PDL as in the norms. */
template <bool Q8>
__global__ void k_silu_mul(const float *__restrict__ g, const float *__restrict__ u, int64_t total,
                           __half *__restrict__ out, qn_quant_q8_x q8) {
    qn_pdl_trigger();
    qn_pdl_wait();
    EW_LOOP(i, total) {
        const float x = __ldca(g + i); /* g, u: the kernels before wrote them (PDL: coherent loads, not .nc) */
        const __half h = __float2half_rn(__fmul_rn(__fdividef(x, __fadd_rn(1.0f, __expf(-x))), __ldca(u + i)));
        out[i] = h;
        if (Q8) {
            const float v[1] = {__half2float(h)};
            kq_mmvq_x_store<1>(v, true, q8.qs + i, q8.rec + i / QN_MMVQ_QK);
        }
    }
}

__global__ void k_f32_to_f16(const float *__restrict__ x, int64_t total, __half *__restrict__ out) {
    EW_LOOP(i, total) out[i] = __float2half_rn(x[i]);
}

qn_status qn_silu_mul_cuda(const float *g, const float *u, int32_t n_rows, int64_t n, uint16_t *out,
                           const qn_quant_q8_x *q8, void *stream) {
    if (n_rows < 0) return QN_ERR_INVALID_ARG;
    if (n <= 0) return QN_ERR_SHAPE;
    if (n_rows == 0) return QN_OK;
    if (!g || !u || !out) return QN_ERR_INVALID_ARG;
    const qn_status q8st = q8_check(q8, n);
    if (q8st != QN_OK) return q8st;
    const int64_t total = (int64_t)n_rows * n;
    const unsigned grid = ew_blocks(total);
    const cudaStream_t st = (cudaStream_t)stream;
    __half *o = reinterpret_cast<__half *>(out);
    const bool pdl = ops_pdl();
    if (q8) (void)qn_launch(k_silu_mul<true>, dim3(grid), dim3(EW_THREADS), 0, st, pdl, g, u, total, o, *q8);
    else (void)qn_launch(k_silu_mul<false>, dim3(grid), dim3(EW_THREADS), 0, st, pdl, g, u, total, o, qn_quant_q8_x{});
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}

qn_status qn_f32_to_f16_cuda(const float *x, int64_t n, uint16_t *out, void *stream) {
    if (n < 0) return QN_ERR_INVALID_ARG;
    if (n == 0) return QN_OK;
    if (!x || !out) return QN_ERR_INVALID_ARG;
    k_f32_to_f16<<<ew_blocks(n), EW_THREADS, 0, (cudaStream_t)stream>>>(x, n, reinterpret_cast<__half *>(out));
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}
