/* sampling_cuda.cu — qn_sample_cuda: the CPU sampler's algorithm (runtime/exec/sampling.c,
 * qn_sampler_sample without penalties) on the GPU, row by row:
 *   greedy (T <= 0): lowest id among the maxima;
 *   else z = (logit - max) * (1/T) in f32, candidates z > -40, sorted by z descending then id
 *   ascending, top-k cut, p = exp(z), top-p cut (first index whose cumulative normalised mass
 *   reaches top_p is kept), min-p cut (p >= min_p * p0), draw r = u * sum(kept p): first i with
 *   r < p0 + .. + pi, else the last kept.
 * Three launches: k_prep (max, greedy result, sort keys), one CUB device-wide radix sort of all rows
 * (the row index is the key's top field, so rows come out contiguous and in order), k_select.
 * Owns nothing; scratch is the caller's workspace. */
#include <stdint.h>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device_util.cuh"
#include "kernels/sampling/sampling_cuda.h"

/* Sort key of logit i of row r (ascending order = the CPU sampler's candidate order):
 *   [ row : rb bits | zb : 31 bits | id : ib bits ]
 * zb = bits of |z| for a candidate (z is in (-40, 0], so |z| orders as -z and |z| < 40 keeps zb below
 * SMP_ZB_OUT), SMP_ZB_OUT for logits outside the candidate range (they sort after every candidate of
 * the row). The id field breaks ties by id ascending, as the CPU comparator does, so the sort needs no
 * stability and all keys of a row are distinct. */
#define SMP_ZB_OUT 0x7fffffffu
#define SMP_PREP_THREADS 1024
#define SMP_SEL_THREADS 512
#define SMP_SEL_ITEMS 8 /* consecutive candidates per thread in a scan tile */
#define SMP_TILE (SMP_SEL_THREADS * SMP_SEL_ITEMS)

static int smp_bits(uint32_t v) { /* bits needed for values 0..v */
    int b = 0;
    while (v >> b) b++;
    return b;
}

/* p = exp(z) rounded to f32 once: the CPU sampler calls glibc expf (< 0.502 ulp); exp in double then
 * one rounding is the correctly rounded value except within 2^-29 of a tie, so both sides almost
 * always hold the same bits. f32 expf would turn into __expf under --use_fast_math (up to ~50 ulp
 * at |z| = 40); double math is not affected by fast math. */
__device__ __forceinline__ float smp_exp(float z) { return (float)exp((double)z); }

__device__ __forceinline__ float smp_key_z(uint64_t key, int ib) { /* z of a candidate key */
    return -__uint_as_float((uint32_t)(key >> ib) & SMP_ZB_OUT);
}

/* ------------------------------------------------------------------------------------------------
 * k_prep: one CTA per row. Greedy pick (written to out[r] for T <= 0 rows, to amax[r] for all rows)
 * and the row's sort keys. z is computed exactly as the CPU does: (l - mx) rounded, times 1/T
 * (an IEEE division in f32) rounded, no FMA. */

struct smp_best {
    float v;
    int32_t i;
};
__device__ __forceinline__ smp_best smp_better(smp_best a, smp_best b) {
    return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
}

__global__ void __launch_bounds__(SMP_PREP_THREADS)
    k_prep(const float *__restrict__ logits, int32_t V, const qn_sample_row_params *__restrict__ params, int ib,
           int rb_shift, uint64_t *__restrict__ keys, int32_t *__restrict__ amax, int32_t *__restrict__ out) {
    __shared__ smp_best red[32];
    __shared__ smp_best best_s;
    const int64_t r = blockIdx.x;
    const float *l = logits + r * V;
    smp_best b = {-INFINITY, INT32_MAX};
    for (int32_t i = threadIdx.x; i < V; i += blockDim.x) b = smp_better(b, smp_best{l[i], i});
    /* lowest id among the maxima: a total order, so any reduction order gives the same pair */
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        smp_best c;
        c.v = __shfl_xor_sync(0xffffffffu, b.v, o);
        c.i = __shfl_xor_sync(0xffffffffu, b.i, o);
        b = smp_better(b, c);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) red[warp] = b;
    __syncthreads();
    if (threadIdx.x == 0) {
        smp_best a = red[0];
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) a = smp_better(a, red[w]);
        if (a.i == INT32_MAX) a.i = 0; /* every logit NaN: the CPU's qn_argmax_f32 gives 0 too */
        best_s = a;
        amax[r] = a.i;
        if (!(params[r].temperature > 0.0f)) out[r] = a.i;
    }
    __syncthreads();
    const float T = params[r].temperature;
    const float mx = l[best_s.i];
    const float inv_t = T > 0.0f ? __fdiv_rn(1.0f, T) : 0.0f;
    const uint64_t base = (uint64_t)r << rb_shift;
    uint64_t *k = keys + r * V;
    for (int32_t i = threadIdx.x; i < V; i += blockDim.x) {
        const float z = __fmul_rn(__fsub_rn(l[i], mx), inv_t);
        const uint32_t zb = z > -40.0f ? (__float_as_uint(z) & SMP_ZB_OUT) : SMP_ZB_OUT;
        k[i] = base | (uint64_t)zb << ib | (uint64_t)i;
    }
}

/* ------------------------------------------------------------------------------------------------
 * k_select: one CTA per sampled row, over the row's sorted keys. Sums and prefix sums are in double
 * like the CPU's, but in a fixed tree order instead of left to right: they differ from the CPU's by
 * ~1e-16 relative, so only a draw or a top-p threshold within that of a boundary can go the other
 * way. */

using smp_scan = cub::BlockScan<double, SMP_SEL_THREADS>;
using smp_sum = cub::BlockReduce<double, SMP_SEL_THREADS>;

struct smp_shared {
    union {
        smp_scan::TempStorage scan;
        smp_sum::TempStorage sum;
    } cub;
    int found;
    double total;
};

/* First i in [lo, hi) with pred(i), or hi; every thread gets it. */
template <class Pred>
__device__ int smp_first(int lo, int hi, Pred pred, smp_shared &sh) {
    if (threadIdx.x == 0) sh.found = hi;
    __syncthreads();
    for (int i = lo + threadIdx.x; i < hi; i += blockDim.x)
        if (pred(i)) {
            atomicMin(&sh.found, i);
            break;
        }
    __syncthreads();
    const int f = sh.found;
    __syncthreads();
    return f;
}

/* sum of val(i) over [0, n) in double; every thread gets it */
template <class Val>
__device__ double smp_total(int n, Val val, smp_shared &sh) {
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += val(i);
    s = smp_sum(sh.cub.sum).Sum(s);
    if (threadIdx.x == 0) sh.total = s;
    __syncthreads();
    s = sh.total;
    __syncthreads();
    return s;
}

/* First i in [0, n) whose inclusive prefix sum acc_i = val(0) + .. + val(i) (double) satisfies
 * hit(acc_i), or -1. Tiles of SMP_TILE: each thread sums its SMP_SEL_ITEMS consecutive values, a
 * block scan gives its offset, then it walks its items. */
template <class Val, class Hit>
__device__ int smp_scan_first(int n, Val val, Hit hit, smp_shared &sh) {
    double carry = 0.0;
    for (int base = 0; base < n; base += SMP_TILE) {
        const int i0 = base + (int)threadIdx.x * SMP_SEL_ITEMS;
        double v[SMP_SEL_ITEMS], part = 0.0;
#pragma unroll
        for (int k = 0; k < SMP_SEL_ITEMS; k++) {
            v[k] = i0 + k < n ? val(i0 + k) : 0.0;
            part += v[k];
        }
        double excl, agg;
        smp_scan(sh.cub.scan).ExclusiveSum(part, excl, agg);
        if (threadIdx.x == 0) sh.found = INT32_MAX;
        __syncthreads();
        double acc = carry + excl;
#pragma unroll
        for (int k = 0; k < SMP_SEL_ITEMS; k++) {
            acc += v[k];
            if (i0 + k < n && hit(acc)) {
                atomicMin(&sh.found, i0 + k);
                break;
            }
        }
        __syncthreads();
        const int f = sh.found;
        __syncthreads(); /* sh.found and the scan storage are reused by the next tile */
        if (f != INT32_MAX) return f;
        carry += agg;
    }
    return -1;
}

__global__ void __launch_bounds__(SMP_SEL_THREADS)
    k_select(const uint64_t *__restrict__ sorted, float *__restrict__ probs, int32_t V, int ib,
             const qn_sample_row_params *__restrict__ params, const int32_t *__restrict__ amax,
             int32_t *__restrict__ out) {
    __shared__ smp_shared sh;
    const int64_t r = blockIdx.x;
    const qn_sample_row_params prm = params[r];
    if (!(prm.temperature > 0.0f)) return; /* greedy: k_prep wrote out[r] */
    const uint64_t *key = sorted + r * V;
    float *p = probs + r * V;
    const uint64_t id_mask = ((uint64_t)1 << ib) - 1;

    /* candidates (z > -40) come first in the sorted row */
    int m = smp_first(0, V, [&](int i) { return ((uint32_t)(key[i] >> ib) & SMP_ZB_OUT) == SMP_ZB_OUT; }, sh);
    if (m == 0) { /* no candidate (NaN/inf logits): the greedy pick */
        if (threadIdx.x == 0) out[r] = amax[r];
        return;
    }
    if (prm.top_k > 0 && prm.top_k < m) m = prm.top_k;

    for (int i = threadIdx.x; i < m; i += blockDim.x) p[i] = smp_exp(smp_key_z(key[i], ib));
    __syncthreads();
    const double sum = smp_total(m, [&](int i) { return (double)p[i]; }, sh);

    int keep = m;
    if (prm.top_p < 1.0f) {
        const double top_p = prm.top_p;
        const int f = smp_scan_first(m, [&](int i) { return (double)p[i] / sum; },
                                     [&](double cum) { return cum >= top_p; }, sh);
        if (f >= 0) keep = f + 1;
    }
    if (prm.min_p > 0.0f) {
        const float thr = __fmul_rn(prm.min_p, p[0]);
        keep = smp_first(1, keep, [&](int i) { return !(p[i] >= thr); }, sh);
    }
    const double sum2 = keep == m ? sum : smp_total(keep, [&](int i) { return (double)p[i]; }, sh);
    const double rr = prm.u * sum2;
    int c = smp_scan_first(keep, [&](int i) { return (double)p[i]; }, [&](double acc) { return rr < acc; }, sh);
    if (c < 0) c = keep - 1;
    if (threadIdx.x == 0) out[r] = (int32_t)(key[c] & id_mask);
}

/* ------------------------------------------------------------------------------------------------
 * host side */

typedef struct smp_layout {
    int ib, rb, end_bit;
    size_t keys_bytes;  /* one key buffer */
    size_t off_b, off_amax, off_temp, temp_bytes, total;
} smp_layout;

static size_t smp_align(size_t b) { return (b + 255) & ~(size_t)255; }

/* QN_ERR_SHAPE when the keys do not fit 64 bits or the item count an int */
static qn_status smp_plan(int32_t n_rows, int32_t V, cudaStream_t stream, smp_layout *L) {
    if (n_rows <= 0 || V <= 0 || (int64_t)n_rows * V > INT32_MAX) return QN_ERR_SHAPE;
    L->ib = smp_bits((uint32_t)(V - 1));
    L->rb = smp_bits((uint32_t)(n_rows - 1));
    L->end_bit = L->rb + 31 + L->ib;
    if (L->end_bit > 64) return QN_ERR_SHAPE;
    const int n = n_rows * V;
    L->keys_bytes = smp_align(sizeof(uint64_t) * (size_t)n);
    cub::DoubleBuffer<uint64_t> db(NULL, NULL);
    L->temp_bytes = 0;
    QN_CUDA_TRY(cub::DeviceRadixSort::SortKeys(NULL, L->temp_bytes, db, n, 0, L->end_bit, stream));
    L->off_b = L->keys_bytes;
    L->off_amax = L->off_b + L->keys_bytes;
    L->off_temp = L->off_amax + smp_align(sizeof(int32_t) * (size_t)n_rows);
    L->total = L->off_temp + smp_align(L->temp_bytes) + 256; /* + 256: the base is aligned up */
    return QN_OK;
}

size_t qn_sample_cuda_workspace_size(int32_t n_rows, int32_t n_vocab) {
    smp_layout L;
    if (smp_plan(n_rows, n_vocab, 0, &L) != QN_OK) {
        (void)cudaGetLastError();
        return 0;
    }
    return L.total;
}

qn_status qn_sample_cuda(const float *logits, int32_t n_rows, int32_t n_vocab, const qn_sample_row_params *params,
                         int32_t *out, void *workspace, size_t ws_bytes, void *stream) {
    if (n_rows < 0) return QN_ERR_INVALID_ARG;
    if (n_rows == 0) return QN_OK;
    if (n_vocab <= 0) return QN_ERR_SHAPE;
    if (!logits || !params || !out || !workspace) return QN_ERR_INVALID_ARG;
    const cudaStream_t st = (cudaStream_t)stream;
    smp_layout L;
    const qn_status s = smp_plan(n_rows, n_vocab, st, &L);
    if (s != QN_OK) return s;
    if (ws_bytes < L.total) return QN_ERR_INVALID_ARG;
    uint8_t *ws = (uint8_t *)(((uintptr_t)workspace + 255) & ~(uintptr_t)255);
    uint64_t *keys_a = (uint64_t *)ws, *keys_b = (uint64_t *)(ws + L.off_b);
    int32_t *amax = (int32_t *)(ws + L.off_amax);
    void *temp = ws + L.off_temp;

    k_prep<<<(unsigned)n_rows, SMP_PREP_THREADS, 0, st>>>(logits, n_vocab, params, L.ib, 31 + L.ib, keys_a, amax, out);
    QN_CUDA_TRY_LAUNCH();
    cub::DoubleBuffer<uint64_t> db(keys_a, keys_b);
    size_t temp_bytes = L.temp_bytes;
    QN_CUDA_TRY(cub::DeviceRadixSort::SortKeys(temp, temp_bytes, db, n_rows * n_vocab, 0, L.end_bit, st));
    /* the buffer the sort did not end in is free: it holds the probabilities (f32, half its size) */
    k_select<<<(unsigned)n_rows, SMP_SEL_THREADS, 0, st>>>(db.Current(), (float *)db.Alternate(), n_vocab, L.ib,
                                                           params, amax, out);
    QN_CUDA_TRY_LAUNCH();
    return QN_OK;
}
