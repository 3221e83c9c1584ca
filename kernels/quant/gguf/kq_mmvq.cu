/* kq_mmvq.cu — the int8 decode path (kq_mmvq.h): the activation quantizer, the legacy-format
 * instances of mq_kernel (kq_mmvq.cuh; the K-quants are in kq_mmvq_k.cu so that the two compile in
 * parallel) and the launcher. Graph-capturable: no allocation, no host synchronization. */
#include <stdint.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/quant/gguf/kq_mmvq.cuh"
#include "kernels/quant/gguf/kq_mmvq_x.cuh"
#include "kernels/quant/lutq_gpu.h"
#include "kernels/quant/quant.h" /* qn_quant_mmvq_f16_x */

/* --- the activation quantizer ---
 * 4 threads per 32-element block, 8 elements (one 16-byte load) each; the block's quantization is
 * kq_mmvq_x_store (kq_mmvq_x.cuh), shared with the ops that write q8 activations themselves. */
__global__ void __launch_bounds__(256) mq_quantize_kernel(const __half *__restrict__ x, int64_t n8,
                                                           int8_t *__restrict__ qs, qn_mmvq_xrec *__restrict__ rec) {
    qn_pdl_trigger(); /* the matmul after it (PDL) starts loading weights meanwhile */
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; /* 8-element chunk */
    const bool ok = i < n8; /* n8 % 4 == 0: a quad is all in or all out, but all lanes shuffle */
    qn_pdl_wait();          /* launched as a dependent (pdl): x is the kernel before's output */
    float v[8];
    if (ok) {
        const uint4 raw = qn_ldca128(x + 8 * i); /* the kernel before's output: not .nc (PDL) */
        const uint32_t wv[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&wv[k]));
            v[2 * k] = f.x, v[2 * k + 1] = f.y;
        }
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = 0.f;
    }
    kq_mmvq_x_store<8>(v, ok, qs + 8 * i, rec + (i >> 2));
}

/* The same through an act-order permutation: chunk i covers kernel columns j0 .. j0 + 7 of token t
 * (8 i = t K + j0) and reads x[t][perm[j0 + e]]; the row of x stays in L1/L2, so the scattered 2-byte reads
 * cost about what the 16-byte load costs above. perm does not depend on the kernel before, so it is read
 * before the PDL wait: launched as a dependent (sm_90), that load overlaps the earlier kernel's tail. */
__global__ void __launch_bounds__(256) mq_quantize_perm_kernel(const __half *__restrict__ x,     /* [n][K] */
                                                                const int32_t *__restrict__ perm, /* [K] */
                                                                int64_t K, int64_t n8,
                                                                int8_t *__restrict__ qs, qn_mmvq_xrec *__restrict__ rec) {
    qn_pdl_trigger();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const bool ok = i < n8;
    const int64_t t = ok ? 8 * i / K : 0, j0 = ok ? 8 * i - t * K : 0;
    int4 p0 = make_int4(0, 0, 0, 0), p1 = p0;
    if (ok) {
        p0 = __ldg(reinterpret_cast<const int4 *>(perm + j0));
        p1 = __ldg(reinterpret_cast<const int4 *>(perm + j0 + 4));
    }
    qn_pdl_wait(); /* x is the earlier kernel's output */
    float v[8];
    if (ok) {
        const int pj[8] = {p0.x, p0.y, p0.z, p0.w, p1.x, p1.y, p1.z, p1.w};
        const __half *xr = x + t * K;
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = __half2float(__ldca(xr + pj[k])); /* not .nc (PDL) */
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = 0.f;
    }
    kq_mmvq_x_store<8>(v, ok, qs + 8 * i, rec + (i >> 2));
}

qn_status kq_mmvq_quantize_x_perm(const void *x, const int32_t *perm, int64_t n, int64_t K, void *xq, int pdl,
                                  void *stream) {
    const int64_t n8 = n * K / 8;
    if (n8 <= 0) return QN_OK;
    if (perm && ((uintptr_t)perm & 15u)) return QN_ERR_INVALID_ARG;
    const int64_t grid = (n8 + 255) / 256;
    if (grid > 0x7fffffff) return QN_ERR_SHAPE;
    int8_t *qs = (int8_t *)xq;
    qn_mmvq_xrec *rec = (qn_mmvq_xrec *)((uint8_t *)xq + qn_mmvq_x_rec_offset(n, K));
    if (perm)
        QN_CUDA_TRY(qn_launch(mq_quantize_perm_kernel, dim3((unsigned)grid), dim3(256), 0, (cudaStream_t)stream,
                              pdl != 0, (const __half *)x, perm, K, n8, qs, rec));
    else
        QN_CUDA_TRY(qn_launch(mq_quantize_kernel, dim3((unsigned)grid), dim3(256), 0, (cudaStream_t)stream, pdl != 0,
                              (const __half *)x, n8, qs, rec));
    return QN_OK;
}

qn_status kq_mmvq_quantize_x(const void *x, int64_t n, int64_t K, void *xq, void *stream) {
    return kq_mmvq_quantize_x_perm(x, NULL, n, K, xq, 0, stream);
}

/* --- instances and launcher --- */

int mq_unit_elems(qn_qformat fmt) {
#define MQ_CASE(F) \
    if (fmt == QN_QFORMAT_##F) return mq_fmt<QN_QFORMAT_##F>::UE;
    MQ_CASE(Q4_0) MQ_CASE(Q4_1) MQ_CASE(Q5_0) MQ_CASE(Q5_1) MQ_CASE(Q8_0) MQ_CASE(Q8_0P)
    MQ_CASE(Q2_K) MQ_CASE(Q3_K) MQ_CASE(Q3_KP) MQ_CASE(Q4_K) MQ_CASE(Q5_K) MQ_CASE(Q6_K) MQ_CASE(Q6_KP)
#undef MQ_CASE
    if (fmt == QN_QFORMAT_F16 || fmt == QN_QFORMAT_BF16) return 32; /* float_mmvq.cu */
    return qn_lutq_gpu_is_format(fmt) ? QN_LUTQ_GPU_BLOCK : 0; /* lutq_mmvq.cu */
}

int kq_mmvq_takes_f16_x(qn_qformat fmt) { return qn_quant_mmvq_f16_x(fmt); }

int kq_mmvq_has_format(qn_qformat fmt) { return mq_unit_elems(fmt) != 0; }

mq_kernel_fn mq_legacy_instance(qn_qformat fmt, int nt, bool staged, bool xs, int *smem) {
    switch (fmt) {
    case QN_QFORMAT_Q4_0: return mq_instance<QN_QFORMAT_Q4_0>(nt, staged, xs, smem);
    case QN_QFORMAT_Q4_1: return mq_instance<QN_QFORMAT_Q4_1>(nt, staged, xs, smem);
    case QN_QFORMAT_Q5_0: return mq_instance<QN_QFORMAT_Q5_0>(nt, staged, xs, smem);
    case QN_QFORMAT_Q5_1: return mq_instance<QN_QFORMAT_Q5_1>(nt, staged, xs, smem);
    case QN_QFORMAT_Q8_0: return mq_instance<QN_QFORMAT_Q8_0>(nt, staged, xs, smem);
    case QN_QFORMAT_Q8_0P: return mq_instance<QN_QFORMAT_Q8_0P>(nt, staged, xs, smem);
    default: return nullptr;
    }
}

/* Warps per row when the caller leaves it open: split each row's K over more warps of the CTA until the
 * grid has about `target` warps per SM, keeping >= 2 units per lane before a split. Small matrices
 * (1024x4096 at n = 1) split, large ones do not. From the H200 sweep of warps per row at n = 1, 2
 * (bench/results/gpu-decode-step-2026-12-02.md): there, counting rows, target 16 (4096-row matrices run
 * unsplit: 6-10% faster for Q4_0/Q4_K), except Q6_K (32: 4096x14336 is 11% slower unsplit); n > 2 (not
 * swept) keeps the first rule, warp groups against 32. Target 32 at nt <= 2 (4096x14336 split over two warps)
 * measured slower end to end under CUDA graphs and PDL: 8B Q4_K_M tg128 -1.1%, Q8_0 -6%
 * (bench/results/gpu-fixed-cost-2026-12-03.md). */
#ifndef QN_MQ_TARGET_Q6KP /* Q6_KP at nt <= 2: as Q4_K, whose loads it shares; 32 measured -0.9% end to end on the */
#define QN_MQ_TARGET_Q6KP 16 /* 8B Q4_K_M (bench/results/gpu-q6kp-2026-12-04.md; an A/B knob: -D) */
#endif
static int mq_pick_warps_per_row(qn_qformat fmt, int nt, int64_t groups, int R, int64_t units, int n_sm) {
    const int64_t target = nt > 2 || fmt == QN_QFORMAT_Q6_K ? 32 : fmt == QN_QFORMAT_Q6_KP ? QN_MQ_TARGET_Q6KP : 16;
    const int64_t count = nt > 2 ? groups : groups * R;
    int W = 1;
    while (W < MQ_WARPS && count * W < target * n_sm && units >= 64 * W) W *= 2;
    return W;
}

static mq_kernel_fn mq_pick_instance(qn_qformat fmt, int nt, bool staged, bool xs, int *smem) {
    mq_kernel_fn fn = mq_legacy_instance(fmt, nt, staged, xs, smem);
    if (!fn) fn = mq_kquant_instance(fmt, nt, staged, xs, smem);
    if (!fn) fn = mq_lutq_instance(fmt, nt, staged, xs, smem);
    if (!fn) fn = mq_float_instance(fmt, nt, staged, xs, smem);
    return fn;
}

/* stage == 0 (auto): staged for Q6_K and Q8_0 at nt <= 2, the cases measured faster on the H200 at the 8B
 * shapes, n = 1, 2 (Q6_K 8-42% faster; Q8_0 from 1% slower to 43% faster), and for Q2_K/Q3_K (at n = 1, their
 * only AUTO use: staged 0.99-1.58x as fast as direct with two rows, bench/results/gpu-k23-2026-12-03.md);
 * direct for the rest, where staging measured mixed (Q4_K: 18% slower on 14336x4096) or was not measured
 * (nt > 2): bench/results/gpu-staged-2026-12-03.md.
 * Q4_K, Q5_K, Q6_KP at nt <= 2, whose loads are 16-byte vectors, are staged where the launch's weights are at most
 * QN_MQ_STAGE_SMALL_BYTES (an 8B 1024x4096 projection: the copies issued before the PDL wait overlap the kernel
 * before, PDL chain q6_Kp 3.20 -> 1.81 us, q4_K 2.71 -> 1.81, q5_K 3.10 -> 1.95) or its rows at least QN_MQ_STAGE_LONG_K
 * long (the 8B down projection, 4096x14336: q4_K 11.62 -> 10.75 us, q6_Kp 15.89 -> 14.88, q5_K 13.59 -> 12.61;
 * Q5_K not measured end to end); directly elsewhere (14336x4096, the LM head: unchanged or slower staged). End to end, 8B Q4_K_M tg128: 500.6/499.3 -> 509.6/513.1 t/s with both
 * rules, 502.2/505.3 with the first alone (bench/results/gpu-q6kp-2026-12-04.md). 0 turns a rule off (A/B: -D). */
#ifndef QN_MQ_STAGE_SMALL_BYTES
#define QN_MQ_STAGE_SMALL_BYTES (8 << 20)
#endif
#ifndef QN_MQ_STAGE_LONG_K
#define QN_MQ_STAGE_LONG_K 8192
#endif
/* Q8_0P (16-byte loads like Q4_K) takes the two rules, with a larger small-launch bound: 32 MiB stages the 8B
 * attention launches (q+k+v 25.5 MiB, o 17 MiB; 4096x4096 6.28 -> 5.61 us in a PDL chain) and measured 0.8% faster
 * end to end on the 8B Q8_0 than 8 MiB (383.1/382.2 against 380.1/379.0 t/s; 20 MiB, o alone: 376.2/378.4). Staged
 * at nt <= 2 always, as Q8_0: 1.3% slower (14336x4096 15.51 -> 17.33 us). bench/results/gpu-q8_0p-2026-12-04.md;
 * an A/B knob: -D. */
#ifndef QN_MQ_STAGE_Q80P_BYTES
#define QN_MQ_STAGE_Q80P_BYTES (32 << 20)
#endif
/* The same two rules for the GPTQ/AWQ blocks LQ4/LQ8 measured 5.5% slower end to end (8B gptq4 tg128 442.0/441.9
 * against 466.5/468.4 t/s, same call, bench/results/gpu-q6kp-2026-12-04.md §5): they stay direct. */
static bool mq_stage_auto(qn_qformat fmt, int nt, int64_t K, int64_t bytes) {
    if (fmt == QN_QFORMAT_Q8_0P && nt <= 2 && bytes <= QN_MQ_STAGE_Q80P_BYTES) return true;
    if ((fmt == QN_QFORMAT_Q4_K || fmt == QN_QFORMAT_Q5_K || fmt == QN_QFORMAT_Q6_KP || fmt == QN_QFORMAT_Q8_0P) && nt <= 2 &&
        ((QN_MQ_STAGE_SMALL_BYTES > 0 && bytes <= QN_MQ_STAGE_SMALL_BYTES) || (QN_MQ_STAGE_LONG_K > 0 && K >= QN_MQ_STAGE_LONG_K)))
        return true;
    return (fmt == QN_QFORMAT_Q6_K || fmt == QN_QFORMAT_Q8_0 || fmt == QN_QFORMAT_Q2_K || fmt == QN_QFORMAT_Q3_K ||
            fmt == QN_QFORMAT_Q3_KP) && nt <= 2; /* Q3_KP: as Q3_K */
}

/* Persistent staged launches (kq_mmvq.cuh, mq_persist, built with QN_MQ_PERSIST > 0) in auto (stage == 0), for a
 * staged launch with one warp per row: QN_MQ_PERSIST 1 takes them for Q2_K/Q3_K, 2 for every format. */
int kq_mmvq_persists(void) { return QN_MQ_PERSIST > 0; }

static bool mq_persist_auto(qn_qformat fmt) {
    return QN_MQ_PERSIST == 2 ||
           (QN_MQ_PERSIST == 1 && (fmt == QN_QFORMAT_Q2_K || fmt == QN_QFORMAT_Q3_K || fmt == QN_QFORMAT_Q3_KP));
}

int kq_mmvq_stages(qn_qformat fmt, int64_t K, int nt) {
    const int ue = mq_unit_elems(fmt);
    if (!ue || K <= 0 || K % ue != 0 || nt < 1 || nt > MQ_MAX_NT) return 0;
    int smem = 0;
    return mq_stage_ok((int64_t)qn_qformat_row_bytes(fmt, K)) &&
           mq_pick_instance(fmt, nt, true, false, &smem) != nullptr;
}

qn_status kq_mmvq_matmul_group(qn_qformat fmt, const kq_mmvq_mat *mats, int n_mat, int64_t K, const void *xq,
                               int64_t n, int n_sm, int warps_per_row, int stage, int pdl, void *stream) {
    const int ue = mq_unit_elems(fmt);
    if (!ue) return QN_ERR_UNSUPPORTED;
    if (K % ue != 0 || K % QN_MMVQ_QK != 0) return QN_ERR_SHAPE;
    if (warps_per_row != 0 && warps_per_row != 1 && warps_per_row != 2 && warps_per_row != 4) return QN_ERR_INVALID_ARG;
    if (!mats || n_mat < 1 || n_mat > KQ_MMVQ_MAX_MATS) return QN_ERR_INVALID_ARG;
    int64_t N_all = 0;
    for (int i = 0; i < n_mat; i++) {
        if (mats[i].N < 0) return QN_ERR_SHAPE;
        N_all += mats[i].N;
    }
    if (n <= 0 || N_all == 0) return QN_OK;
    const bool f16x = kq_mmvq_takes_f16_x(fmt) != 0;
    const int8_t *qs = (const int8_t *)xq;
    const qn_mmvq_xrec *rec = (const qn_mmvq_xrec *)((const uint8_t *)xq + qn_mmvq_x_rec_offset(n, K));
    for (int64_t t0 = 0; t0 < n; t0 += MQ_MAX_NT) {
        const int nt = (int)(n - t0 < MQ_MAX_NT ? n - t0 : MQ_MAX_NT);
        const int R = mq_rows(fmt, ue, nt);
        const int W = warps_per_row ? warps_per_row
                                    : mq_pick_warps_per_row(fmt, nt, (N_all + R - 1) / R, R, K / ue, n_sm);
        const bool staged = (stage > 0 || (stage == 0 && mq_stage_auto(fmt, nt, K, N_all * (int64_t)qn_qformat_row_bytes(fmt, K)))) &&
                            kq_mmvq_stages(fmt, K, nt);
        int smem = 0;
        mq_kernel_fn fn = nullptr;
        size_t dyn = 0;
        if (QN_MQ_XSMEM && nt == 1) { /* x from shared memory where an instance exists and it fits in 48 KB */
            fn = mq_pick_instance(fmt, nt, staged, true, &smem);
            dyn = (size_t)mq_xs_bytes(K);
            if (fn && (size_t)smem + dyn > 48 * 1024) fn = nullptr;
        }
        if (!fn) fn = mq_pick_instance(fmt, nt, staged, false, &smem), dyn = 0;
        if (!fn) return QN_ERR_UNSUPPORTED;
        const int64_t per_cta = MQ_WARPS / W;
        mq_args a = {};
        int64_t grid = 0;
        a.n_mat = 0;
        for (int i = 0; i < n_mat; i++) {
            if (mats[i].N == 0) continue; /* nothing to compute: no CTAs */
            mq_mat &m = a.m[a.n_mat++];
            m.w = (const uint8_t *)mats[i].w;
            m.y = mats[i].y + t0 * mats[i].N;
            m.N = mats[i].N;
            m.cta0 = grid;
            grid += ((mats[i].N + R - 1) / R + per_cta - 1) / per_cta;
        }
        if (grid > 0x7fffffff) return QN_ERR_SHAPE;
        a.xq = f16x ? nullptr : qs + t0 * K;
        a.xr = f16x ? nullptr : rec + t0 * (K / QN_MMVQ_QK);
        a.xh = f16x ? (const __half *)xq + t0 * K : nullptr;
        a.K = K;
        a.row_bytes = (int64_t)qn_qformat_row_bytes(fmt, K);
        a.x_ld = K;
        a.warps_per_row = W;
        if (QN_MQ_PERSIST > 0 && staged && W == 1 && (stage == 2 || (stage == 0 && mq_persist_auto(fmt)))) {
            int per_sm = 0; /* persistent: the CTAs that fit the GPU at once, each taking row blocks in turn */
            QN_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, MQ_THREADS, dyn));
            const int64_t fit = (int64_t)(per_sm > 0 ? per_sm : 1) * (n_sm > 0 ? n_sm : 1);
            a.n_vcta = grid;
            if (grid > fit) grid = fit;
        }
        QN_CUDA_TRY(qn_launch(fn, dim3((unsigned)grid), dim3(MQ_THREADS), dyn, (cudaStream_t)stream, pdl != 0, a));
    }
    return QN_OK;
}

qn_status kq_mmvq_matmul(qn_qformat fmt, const void *w, int64_t N, int64_t K, const void *xq, int64_t n, float *y,
                         int n_sm, int warps_per_row, int stage, int pdl, void *stream) {
    if (N < 0) return QN_ERR_SHAPE;
    const kq_mmvq_mat m = {w, N, y};
    return kq_mmvq_matmul_group(fmt, &m, 1, K, xq, n, n_sm, warps_per_row, stage, pdl, stream);
}
