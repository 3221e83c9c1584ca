/* device_util.cuh — small device helpers shared by the CUDA kernels: ceil_div, warp reductions,
 * 128-bit global/shared loads, cp.async (Ampere+ async copy with zero fill) and the fp16 tensor-core
 * mma.sync wrapper, programmatic dependent launch (device side and qn_launch). Header-only, CUDA C++ only; owns no state. */
#ifndef QN_DEVICE_UTIL_CUH
#define QN_DEVICE_UTIL_CUH

#include <stdint.h>

#include <cuda/atomic>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define QN_WARP_SIZE 32

template <typename T>
__host__ __device__ constexpr T qn_ceil_div(T a, T b) { return (a + b - 1) / b; }

__device__ __forceinline__ float qn_warp_sum(float v) {
#pragma unroll
    for (int o = QN_WARP_SIZE / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float qn_warp_max(float v) {
#pragma unroll
    for (int o = QN_WARP_SIZE / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* --- 128-bit loads/stores: p must be 16-byte aligned --- */
__device__ __forceinline__ uint4 qn_ldg128(const void *p) {  /* read-only path (ld.global.nc) */
    return __ldg(reinterpret_cast<const uint4 *>(p));
}
__device__ __forceinline__ uint4 qn_lds128(const void *p) { return *reinterpret_cast<const uint4 *>(p); }
/* Coherent, L1-cached (ld.global.ca): for what the kernel before wrote, in a kernel launched as its PDL
 * dependent. ld.global.nc asks that the data stay read-only for the kernel's whole lifetime, and a dependent
 * starts while the kernel before still writes: measured on the H200, the int8 decode kernel read stale
 * activations through .nc after griddepcontrol.wait (bench/results/gpu-staged-2026-12-03.md). */
__device__ __forceinline__ uint4 qn_ldca128(const void *p) { return __ldca(reinterpret_cast<const uint4 *>(p)); }
__device__ __forceinline__ void qn_stg128(void *p, uint4 v) { *reinterpret_cast<uint4 *>(p) = v; }
/* 16 bytes that a kernel reads once per CTA (weights): not kept in L1. volatile: kept in program order with a PDL
 * wait (a kernel may request its first weights before it). */
__device__ __forceinline__ uint4 qn_ldg_stream128(const void *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

/* --- cp.async: global -> shared without a register round trip (sm_80+) ---
 * Copies src_bytes (0..16) from src and zero-fills the rest of the 16-byte destination. Both
 * addresses 16-byte aligned; with src_bytes == 0 nothing is read (src must still be a valid
 * pointer value). .cg: cache in L2 only, the data is used once per CTA. */
__device__ __forceinline__ void qn_cp_async16(void *smem_dst, const void *gmem_src, uint32_t src_bytes) {
    const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(smem_dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(gmem_src), "r"(src_bytes)
                 : "memory");
}
/* Same, on a 32-bit shared-window address (__cvta_generic_to_shared once, outside the loop: on sm_90
 * each generic->shared conversion costs a read of the cluster CTA id). */
__device__ __forceinline__ void qn_cp_async16_s(uint32_t sdst, const void *gmem_src, uint32_t src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sdst), "l"(gmem_src), "r"(src_bytes)
                 : "memory");
}
/* 16 bytes when pred, nothing otherwise. */
__device__ __forceinline__ void qn_cp_async16_if(uint32_t sdst, const void *gmem_src, bool pred) {
    asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %2, 0;\n @p cp.async.cg.shared.global [%0], [%1], 16;\n}\n" ::"r"(sdst),
                 "l"(gmem_src), "r"((int)pred)
                 : "memory");
}
__device__ __forceinline__ void qn_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/* Waits until at most N committed groups are still in flight. */
template <int N>
__device__ __forceinline__ void qn_cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

/* --- sm_90 bulk copies (the TMA engine, 1-D) completing on an mbarrier --- */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ void qn_mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
/* One arrival that also expects tx_bytes more bytes of asynchronous copies on this phase. */
__device__ __forceinline__ void qn_mbar_arrive_tx(uint32_t bar, uint32_t tx_bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(tx_bytes) : "memory");
}
__device__ __forceinline__ void qn_mbar_wait(uint32_t bar, uint32_t parity) {
    asm volatile("{\n .reg .pred p;\n WAIT_%=:\n mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
                 " @!p bra WAIT_%=;\n}\n" ::"r"(bar), "r"(parity)
                 : "memory");
}
/* bytes (a multiple of 16, both addresses 16-byte aligned) from global to shared, counted on bar */
__device__ __forceinline__ void qn_bulk_g2s(uint32_t sdst, const void *gsrc, uint32_t bytes, uint32_t bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(sdst),
                 "l"(gsrc), "r"(bytes), "r"(bar)
                 : "memory");
}
/* Orders this thread's earlier generic-proxy shared accesses before its later async-proxy ones. */
__device__ __forceinline__ void qn_fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
#endif

/* Serial split-K arrival. Every thread of a 1-D CTA calls it once its part of the tile is written: it returns true,
 * in every thread, in the CTA of the tile that arrives last, which may then read the others' parts through L2
 * (__ldcg); that CTA's call also sets the counter back to 0 for the next launch. One release-acquire add by thread
 * 0, ordered after the other threads' writes (and before their later reads) by the CTA barriers: the PTX model's
 * release and acquire are cumulative over a barrier (CUTLASS's semaphore does the same). It replaces a
 * __threadfence() in every thread on both sides (MEMBAR.SC + L1 invalidate), 12% of the stall samples of lq4m's
 * n = 1 kernel on q/o (split 4; bench/results/gpu-lq4m-tc-2026-12-06.md, r5). */
__device__ __forceinline__ bool qn_split_arrive(unsigned *cnt, /* one counter of the tile, 0 between launches */
                                                unsigned split) {
    __shared__ unsigned qn_split_last;
    __syncthreads(); /* every thread's part is written */
    if (threadIdx.x == 0) {
        cuda::atomic_ref<unsigned, cuda::thread_scope_device> c(*cnt);
        const bool last = c.fetch_add(1u, cuda::memory_order_acq_rel) == split - 1;
        if (last) c.store(0u, cuda::memory_order_relaxed); /* every CTA of the tile has arrived */
        qn_split_last = last;
    }
    __syncthreads();
    return qn_split_last != 0;
}

/* --- programmatic dependent launch (sm_90; no-ops below) ---
 * A kernel launched with cudaLaunchAttributeProgrammaticStreamSerialization may start while the kernel
 * before it in the stream still runs, once every CTA of that one has called qn_pdl_trigger() (or ended).
 * It must call qn_pdl_wait() before it reads what the earlier kernel wrote and before its first global
 * write; the wait returns once the earlier kernel has completed and its writes are visible. Every CTA
 * waits before it ends (so that its grid completes after the one before: later kernels rely on that).
 * A kernel launched without the attribute returns from the wait at once.
 * Placement: ptxas (CUDA 13.0, sm_90) may schedule the wait (SASS ACQBULK) ahead of global loads that come
 * before it in the source: it did in the direct int8 matmul (kq_mmvq.cuh) and k_rmsnorm_v4, not in the
 * decode attention's prologue or the act-order quantizer's perm loads; only the SASS tells. cp.async
 * (LDGSTS) and prefetch (CCTL) stayed before it. Prefetching the matmul's first weights that way was
 * measured slower end to end (bench/results/gpu-fixed-cost-2026-12-03.md). */
__device__ __forceinline__ void qn_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void qn_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" :::);
#endif
}

/* Launches kern<<<grid, block, smem, stream>>>(args...), with programmatic dependent launch when pdl
 * (sm_90+; the kernel must then follow the qn_pdl_wait contract above in every CTA). */
template <typename... P, typename... A>
inline cudaError_t qn_launch(void (*kern)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl,
                             A... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr, cfg.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kern, args...);
}

/* --- tensor cores: D = A(16x16 f16, row) * B(16x8 f16, col) + C (f32) ---
 * Fragment ownership (g = lane/4, q = lane%4), each register two halves along k:
 *   a0: row g,   k 2q..2q+1    a1: row g+8, k 2q..2q+1
 *   a2: row g,   k 2q+8..2q+9  a3: row g+8, k 2q+8..2q+9
 *   b0: col g,   k 2q..2q+1    b1: col g,   k 2q+8..2q+9
 *   c0,c1: row g, cols 2q,2q+1    c2,c3: row g+8, cols 2q,2q+1
 * The k index only has to agree between A and B, so a kernel may map (q, register) to any k. */
__device__ __forceinline__ void qn_mma_16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                             uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* --- half2 <-> u32 bit casts (fragments travel as u32) --- */
__device__ __forceinline__ uint32_t qn_h2_bits(__half2 h) { return *reinterpret_cast<uint32_t *>(&h); }
__device__ __forceinline__ __half2 qn_bits_h2(uint32_t u) { return *reinterpret_cast<__half2 *>(&u); }

/* (v & 0x000F000F) | 0x64006400 as one LOP3 (the C form gives two: SASS has one immediate per LOP3): the nibbles
 * at bits 0 and 16 as the half2 (1024 + q, 1024 + q') */
__device__ __forceinline__ uint32_t qn_nib_h2(uint32_t v) {
    uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0xea;\n" : "=r"(r) : "r"(v), "n"(0x000F000F), "r"(0x64006400u));
    return r;
}

#endif /* QN_DEVICE_UTIL_CUH */
