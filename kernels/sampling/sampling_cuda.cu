/* sampling_cuda.cu — qn_sample_cuda: the CPU sampler's algorithm (runtime/exec/sampling.c,
 * qn_sampler_sample without penalties) on the GPU, row by row:
 *   greedy (T <= 0): lowest id among the maxima;
 *   else z = (logit - max) * (1/T) in f32, candidates z > -40, sorted by z descending then id
 *   ascending, top-k cut, p = exp(z), top-p cut (first index whose cumulative normalised mass
 *   reaches top_p is kept), min-p cut (p >= min_p * p0), draw r = u * sum(kept p): first i with
 *   r < p0 + .. + pi, else the last kept.
 * Every path starts with k_amax_part: the row's argmax as G = ceil(V / 4096) partial results per
 * row, so that a 128K row is read by 32 CTAs instead of one (one CTA of 1024 threads over 128256
 * logits, twice, was 98 us of the old k_prep).
 * QN_SAMPLE_PATH_FAST (every row greedy or 0 < top_k <= QN_SAMPLE_CUDA_TOPK_MAX), one more launch,
 *   k_topk, one CTA per row: greedy rows finish the argmax and leave (~2 launches, < 10 us per
 *   step); top-k rows radix-select the top_k-th (z, id) key in shared memory (three histogram
 *   passes over the row, which sits in L2), gather exactly the top_k survivors, sort them in
 *   shared memory and run the same selection code as the sort path. No device-wide sort.
 * QN_SAMPLE_PATH_SORT (any other mix): k_prep (G CTAs per row: sort keys), one CUB device-wide
 *   radix sort of all rows (the row index is the key's top field, so rows come out contiguous and
 *   in order), k_select.
 * The path is chosen on the host from the host copy of the params (qn_sample_cuda_path), so a
 * captured CUDA graph holds one path and the caller keys its graphs by it; nothing in either path
 * syncs, allocates or sizes a grid from device data.
 * Owns nothing; scratch is the caller's workspace. */
#include <stdint.h>

#include <cub/block/block_radix_sort.cuh>
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
#define SMP_AMAX_THREADS 256
#define SMP_AMAX_ITEMS 16 /* logits per thread of k_amax_part / k_prep: all loads in flight at once */
#define SMP_CHUNK (SMP_AMAX_THREADS * SMP_AMAX_ITEMS) /* logits per CTA: G = ceil(V / SMP_CHUNK) */
#define SMP_TOPK_ITEMS 4 /* consecutive logits per thread in a k_topk gather tile */
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
 * the argmax: k_amax_part (grid: n_rows x G) writes one partial (value, id) per (row, chunk of SMP_CHUNK logits); the
 * next kernel of the path reduces a row's G partials (smp_row_best). "Lowest id among the maxima"
 * is a total order, so any reduction order gives the same pair. */

struct smp_best {
    float v;
    int32_t i;
};
__device__ __forceinline__ smp_best smp_better(smp_best a, smp_best b) {
    return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
}

/* the best of the CTA's b, to every thread; red: >= 32 entries of shared */
__device__ smp_best smp_block_best(smp_best b, smp_best *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        smp_best c;
        c.v = __shfl_xor_sync(0xffffffffu, b.v, o);
        c.i = __shfl_xor_sync(0xffffffffu, b.i, o);
        b = smp_better(b, c);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads(); /* red may still be read by a previous call */
    if (lane == 0) red[warp] = b;
    __syncthreads();
    smp_best a = red[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++) a = smp_better(a, red[w]);
    return a;
}

__global__ void __launch_bounds__(SMP_AMAX_THREADS)
    k_amax_part(const float *__restrict__ logits, int32_t V, smp_best *__restrict__ part) {
    __shared__ smp_best red[32];
    const int64_t r = blockIdx.x;
    const float *l = logits + r * V;
    const int32_t i0 = (int32_t)blockIdx.y * SMP_CHUNK + (int32_t)threadIdx.x;
    float x[SMP_AMAX_ITEMS];
#pragma unroll
    for (int k = 0; k < SMP_AMAX_ITEMS; k++) {
        const int32_t i = i0 + k * SMP_AMAX_THREADS;
        x[k] = i < V ? l[i] : -INFINITY;
    }
    smp_best b = {-INFINITY, INT32_MAX};
#pragma unroll
    for (int k = 0; k < SMP_AMAX_ITEMS; k++) {
        const int32_t i = i0 + k * SMP_AMAX_THREADS;
        if (i < V) b = smp_better(b, smp_best{x[k], i});
    }
    b = smp_block_best(b, red);
    if (threadIdx.x == 0) part[r * gridDim.y + blockIdx.y] = b;
}

/* the row's argmax from its G partials, to every thread (every logit NaN: id 0, as the CPU's
 * qn_argmax_f32 gives) */
__device__ smp_best smp_row_best(const smp_best *__restrict__ part, int G, smp_best *red) {
    smp_best b = {-INFINITY, INT32_MAX};
    for (int g = threadIdx.x; g < G; g += blockDim.x) b = smp_better(b, part[g]);
    b = smp_block_best(b, red);
    if (b.i == INT32_MAX) b.i = 0;
    return b;
}

/* the sort key field of logit l: |z| bits for a candidate, SMP_ZB_OUT otherwise. z is computed
 * exactly as the CPU does: (l - mx) rounded, times 1/T (an IEEE division in f32) rounded, no FMA. */
__device__ __forceinline__ uint32_t smp_zb(float l, float mx, float inv_t) {
    const float z = __fmul_rn(__fsub_rn(l, mx), inv_t);
    return z > -40.0f ? (__float_as_uint(z) & SMP_ZB_OUT) : SMP_ZB_OUT;
}

/* ------------------------------------------------------------------------------------------------
 * k_prep (sort path): grid (n_rows, G), the chunks of k_amax_part. Greedy pick (written to out[r]
 * for T <= 0 rows, to amax[r] for all rows) by chunk 0, and the chunk's sort keys. */

__global__ void __launch_bounds__(SMP_AMAX_THREADS)
    k_prep(const float *__restrict__ logits, int32_t V, const qn_sample_row_params *__restrict__ params,
           const smp_best *__restrict__ part, int ib, int rb_shift, uint64_t *__restrict__ keys,
           int32_t *__restrict__ amax, int32_t *__restrict__ out) {
    __shared__ smp_best red[32];
    const int64_t r = blockIdx.x;
    const smp_best best = smp_row_best(part + r * gridDim.y, (int)gridDim.y, red);
    const float T = params[r].temperature;
    if (blockIdx.y == 0 && threadIdx.x == 0) {
        amax[r] = best.i;
        if (!(T > 0.0f)) out[r] = best.i;
    }
    const float *l = logits + r * V;
    const float mx = l[best.i];
    const float inv_t = T > 0.0f ? __fdiv_rn(1.0f, T) : 0.0f;
    const uint64_t base = (uint64_t)r << rb_shift;
    uint64_t *k = keys + r * V;
    const int32_t i0 = (int32_t)blockIdx.y * SMP_CHUNK + (int32_t)threadIdx.x;
#pragma unroll
    for (int j = 0; j < SMP_AMAX_ITEMS; j++) {
        const int32_t i = i0 + j * SMP_AMAX_THREADS;
        if (i < V) k[i] = base | (uint64_t)smp_zb(l[i], mx, inv_t) << ib | (uint64_t)i;
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

/* The selection over a row's sorted keys (key: [.. | zb : 31 bits | id : ib bits], candidates
 * first): m = the candidate count (> 0), p: scratch for m floats. Returns the chosen id (every
 * thread). */
__device__ int32_t smp_select_sorted(const uint64_t *key, int m, float *p, int ib, const qn_sample_row_params &prm,
                                     smp_shared &sh) {
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
    return (int32_t)(key[c] & (((uint64_t)1 << ib) - 1));
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

    /* candidates (z > -40) come first in the sorted row */
    const int m = smp_first(0, V, [&](int i) { return ((uint32_t)(key[i] >> ib) & SMP_ZB_OUT) == SMP_ZB_OUT; }, sh);
    if (m == 0) { /* no candidate (NaN/inf logits): the greedy pick */
        if (threadIdx.x == 0) out[r] = amax[r];
        return;
    }
    const int32_t id = smp_select_sorted(key, m, probs + r * V, ib, prm, sh);
    if (threadIdx.x == 0) out[r] = id;
}

/* ------------------------------------------------------------------------------------------------
 * k_topk (fast path): one CTA of SMP_SEL_THREADS per row.
 *   greedy row: the argmax from k_amax_part's partials, done;
 *   top-k row (K = min(top_k, V) <= QN_SAMPLE_CUDA_TOPK_MAX): zt = the K-th smallest zb of the row
 *     (non-candidates count as SMP_ZB_OUT), found by an MSD radix select of three histogram passes
 *     (bits 30..20, 19..9, 8..0) in shared memory. The CPU's first K sorted candidates are then
 *     every candidate with zb < zt, plus the lowest-id `need` of those with zb == zt (a block scan
 *     in id order ranks them); zt == SMP_ZB_OUT means fewer than K candidates: all of them. The
 *     survivors (at most K, keys as the sort path's without the row field) are sorted in shared
 *     memory and go through smp_select_sorted, the sort path's code.
 * Cost of a 128K top-k row: four reads of the row from L2 by one SM (~4 us each) plus a 1024-key
 * block sort, ~20 us, against ~160 us for prep + device sort + select. */

using smp_int_scan = cub::BlockScan<int, SMP_SEL_THREADS>;
using smp_key_sort = cub::BlockRadixSort<uint64_t, SMP_SEL_THREADS, QN_SAMPLE_CUDA_TOPK_MAX / SMP_SEL_THREADS>;
#define SMP_HIST_BINS 2048

struct smp_topk_shared {
    union {
        smp_int_scan::TempStorage scan;
        smp_key_sort::TempStorage sort;
    } cub;
    int hist[SMP_HIST_BINS];
    uint64_t keys[QN_SAMPLE_CUDA_TOPK_MAX];
    float p[QN_SAMPLE_CUDA_TOPK_MAX];
    smp_best red[32];
    int bin, before, count;
};

__global__ void __launch_bounds__(SMP_SEL_THREADS)
    k_topk(const float *__restrict__ logits, int32_t V, int G, int ib, const qn_sample_row_params *__restrict__ params,
           const smp_best *__restrict__ part, int32_t *__restrict__ out) {
    __shared__ smp_shared sh;
    __shared__ smp_topk_shared tk;
    const int64_t r = blockIdx.x;
    const qn_sample_row_params prm = params[r];
    const smp_best best = smp_row_best(part + r * G, G, tk.red);
    /* a row outside the path's contract (qn_sample_cuda_path would have chosen the sort path)
     * gets the greedy pick rather than an undefined token */
    if (!(prm.temperature > 0.0f) || prm.top_k <= 0 || prm.top_k > QN_SAMPLE_CUDA_TOPK_MAX) {
        if (threadIdx.x == 0) out[r] = best.i;
        return;
    }
    const float *l = logits + r * V;
    const float mx = l[best.i];
    const float inv_t = __fdiv_rn(1.0f, prm.temperature);
    const int K = prm.top_k < V ? prm.top_k : V;

    /* radix select: zt = K-th smallest zb (SMP_ZB_OUT when there are fewer than K candidates);
     * `need` = its rank among the zb == zt */
    uint32_t zt = 0;
    int need = K;
    for (int pass = 0; pass < 3; pass++) {
        const int shift = pass == 0 ? 20 : pass == 1 ? 9 : 0;
        const int bins = pass == 2 ? 512 : 2048;
        for (int b = threadIdx.x; b < SMP_HIST_BINS; b += blockDim.x) tk.hist[b] = 0;
        __syncthreads();
        const int hi = shift + (pass == 2 ? 9 : 11); /* bits above the digit must equal zt's */
        /* non-candidates are not counted (on a cold row nearly every logit is one, and they would
         * all hit one bin); a rank past the candidates means "take them all" */
        for (int32_t i = threadIdx.x; i < V; i += blockDim.x) {
            const uint32_t zb = smp_zb(l[i], mx, inv_t);
            if (zb != SMP_ZB_OUT && (zb >> hi) == (zt >> hi))
                atomicAdd(&tk.hist[(zb >> shift) & (uint32_t)(bins - 1)], 1);
        }
        if (threadIdx.x == 0) tk.bin = -1;
        __syncthreads();
        /* the bin holding rank `need`: thread j owns bins [j * per, (j + 1) * per) */
        const int per = bins / SMP_SEL_THREADS;
        int c[SMP_HIST_BINS / SMP_SEL_THREADS], own = 0;
        for (int k = 0; k < per; k++) own += (c[k] = tk.hist[threadIdx.x * per + k]);
        int excl;
        smp_int_scan(tk.cub.scan).ExclusiveSum(own, excl);
        for (int k = 0; k < per; k++) {
            if (excl < need && need <= excl + c[k]) {
                tk.bin = (int)threadIdx.x * per + k;
                tk.before = excl;
            }
            excl += c[k];
        }
        __syncthreads();
        const int bin = tk.bin, before = tk.before;
        __syncthreads(); /* tk.bin, tk.before and the scan storage are rewritten next pass */
        if (bin < 0) { /* fewer than K candidates (only possible in the first pass) */
            zt = SMP_ZB_OUT;
            break;
        }
        zt |= (uint32_t)bin << shift;
        need -= before;
    }

    /* gather the survivors; ties at zt are ranked in id order tile by tile */
    if (threadIdx.x == 0) tk.count = 0;
    __syncthreads();
    int carry = 0;
    for (int32_t base = 0; base < V; base += SMP_SEL_THREADS * SMP_TOPK_ITEMS) {
        const int32_t i0 = base + (int32_t)threadIdx.x * SMP_TOPK_ITEMS;
        uint32_t zb[SMP_TOPK_ITEMS];
        int ties = 0;
#pragma unroll
        for (int k = 0; k < SMP_TOPK_ITEMS; k++) {
            zb[k] = i0 + k < V ? smp_zb(l[i0 + k], mx, inv_t) : SMP_ZB_OUT;
            ties += i0 + k < V && zb[k] == zt && zt != SMP_ZB_OUT;
        }
        int rank, agg;
        smp_int_scan(tk.cub.scan).ExclusiveSum(ties, rank, agg);
        rank += carry;
#pragma unroll
        for (int k = 0; k < SMP_TOPK_ITEMS; k++) {
            if (i0 + k >= V) break;
            bool take = zb[k] < zt;
            if (zb[k] == zt && zt != SMP_ZB_OUT) take = rank++ < need;
            if (take) {
                const int slot = atomicAdd(&tk.count, 1);
                if (slot < QN_SAMPLE_CUDA_TOPK_MAX) tk.keys[slot] = (uint64_t)zb[k] << ib | (uint64_t)(i0 + k);
            }
        }
        carry += agg;
        __syncthreads(); /* the scan storage is reused by the next tile */
    }
    const int m = tk.count < K ? tk.count : K; /* == K, or the candidate count when zt is SMP_ZB_OUT */
    if (m == 0) { /* no candidate (NaN/inf logits): the greedy pick */
        if (threadIdx.x == 0) out[r] = best.i;
        return;
    }

    /* sort the survivors (padding keys sort last), then the sort path's selection */
    constexpr int ITEMS = QN_SAMPLE_CUDA_TOPK_MAX / SMP_SEL_THREADS;
    uint64_t kk[ITEMS];
#pragma unroll
    for (int k = 0; k < ITEMS; k++) {
        const int j = (int)threadIdx.x * ITEMS + k;
        kk[k] = j < m ? tk.keys[j] : ~(uint64_t)0;
    }
    __syncthreads(); /* the union's scan storage becomes the sort's */
    smp_key_sort(tk.cub.sort).Sort(kk, 0, 31 + ib); /* padding (all ones) stays last */
#pragma unroll
    for (int k = 0; k < ITEMS; k++) tk.keys[(int)threadIdx.x * ITEMS + k] = kk[k]; /* blocked: in order */
    __syncthreads();
    const int32_t id = smp_select_sorted(tk.keys, m, tk.p, ib, prm, sh);
    if (threadIdx.x == 0) out[r] = id;
}

/* ------------------------------------------------------------------------------------------------
 * host side */

typedef struct smp_layout {
    int ib, rb, end_bit, G;
    size_t keys_bytes;  /* one key buffer */
    size_t off_b, off_amax, off_part, off_temp, temp_bytes, total;
} smp_layout;

static size_t smp_align(size_t b) { return (b + 255) & ~(size_t)255; }

/* QN_ERR_SHAPE when the keys do not fit 64 bits or the item count an int */
static qn_status smp_plan(int32_t n_rows, int32_t V, cudaStream_t stream, smp_layout *L) {
    if (n_rows <= 0 || V <= 0 || (int64_t)n_rows * V > INT32_MAX) return QN_ERR_SHAPE;
    L->ib = smp_bits((uint32_t)(V - 1));
    L->rb = smp_bits((uint32_t)(n_rows - 1));
    L->end_bit = L->rb + 31 + L->ib;
    if (L->end_bit > 64) return QN_ERR_SHAPE;
    L->G = (int)qn_ceil_div<int64_t>(V, SMP_CHUNK);
    const int n = n_rows * V;
    L->keys_bytes = smp_align(sizeof(uint64_t) * (size_t)n);
    cub::DoubleBuffer<uint64_t> db(NULL, NULL);
    L->temp_bytes = 0;
    QN_CUDA_TRY(cub::DeviceRadixSort::SortKeys(NULL, L->temp_bytes, db, n, 0, L->end_bit, stream));
    L->off_b = L->keys_bytes;
    L->off_amax = L->off_b + L->keys_bytes;
    L->off_part = L->off_amax + smp_align(sizeof(int32_t) * (size_t)n_rows);
    L->off_temp = L->off_part + smp_align(sizeof(smp_best) * (size_t)n_rows * (size_t)L->G);
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

qn_sample_path qn_sample_cuda_path(const qn_sample_row_params *params, int32_t n_rows) {
    for (int32_t r = 0; r < n_rows; r++)
        if (params[r].temperature > 0.0f && !(params[r].top_k > 0 && params[r].top_k <= QN_SAMPLE_CUDA_TOPK_MAX))
            return QN_SAMPLE_PATH_SORT;
    return QN_SAMPLE_PATH_FAST;
}

qn_status qn_sample_cuda(const float *logits, int32_t n_rows, int32_t n_vocab, const qn_sample_row_params *params,
                         qn_sample_path path, int32_t *out, void *workspace, size_t ws_bytes, void *stream) {
    if (n_rows < 0 || (path != QN_SAMPLE_PATH_SORT && path != QN_SAMPLE_PATH_FAST)) return QN_ERR_INVALID_ARG;
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
    smp_best *part = (smp_best *)(ws + L.off_part);
    void *temp = ws + L.off_temp;
    const dim3 chunks((unsigned)n_rows, (unsigned)L.G);

    k_amax_part<<<chunks, SMP_AMAX_THREADS, 0, st>>>(logits, n_vocab, part);
    QN_CUDA_TRY_LAUNCH();
    if (path == QN_SAMPLE_PATH_FAST) {
        k_topk<<<(unsigned)n_rows, SMP_SEL_THREADS, 0, st>>>(logits, n_vocab, L.G, L.ib, params, part, out);
        QN_CUDA_TRY_LAUNCH();
        return QN_OK;
    }
    k_prep<<<chunks, SMP_AMAX_THREADS, 0, st>>>(logits, n_vocab, params, part, L.ib, 31 + L.ib, keys_a, amax, out);
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
