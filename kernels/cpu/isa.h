/* isa.h — compile-time helpers for the *_cpu.c files, each compiled once per ISA with QN_ISA set
 * (scalar, avx2, avx512, neon, neon_dotprod; CMakeLists.txt). QN_ISA_FN(name) pastes the ISA suffix so every ISA
 * object exports distinct symbols; QN_SIMD_X86 / QN_SIMD_NEON say which intrinsics may be used.
 * Also declares the per-family table fillers that kernels_table_cpu.c calls. Internal to kernels/cpu
 * and kernels/quant: nothing outside kernels/ includes it. */
#ifndef QN_CPU_ISA_H
#define QN_CPU_ISA_H

#include <stdint.h>

#include "kernels/common/half.h"
#include "kernels/cpu/cpu_kernels.h"

#ifndef QN_ISA
#error "isa.h is for *_cpu.c files, compiled with -DQN_ISA=<isa>"
#endif

#define QN_ISA_PASTE_(a, b) a##_##b
#define QN_ISA_PASTE(a, b) QN_ISA_PASTE_(a, b)
#define QN_ISA_FN(name) QN_ISA_PASTE(name, QN_ISA)

/* AVX-512 objects are also built with -mavx2 -mfma -mf16c, so 256-bit code serves both. */
#if defined(QN_ISA_AVX2) || defined(QN_ISA_AVX512)
#define QN_SIMD_X86 1
#include <immintrin.h>
#endif
#if defined(QN_ISA_AVX512)
#define QN_SIMD_X86_512 1
#endif
#if defined(QN_SIMD_X86)
/* x86: the object's fp32 vector (lv_*), 16 lanes in the AVX-512 objects, 8 in the AVX2 ones (lutq_cpu.c's row kernel
 * and kernels/cpu/panel_x86.h are each written once over it) */
#if defined(QN_SIMD_X86_512)
#define LV_W 16
typedef __m512 lv;
#define lv_zero _mm512_setzero_ps
#define lv_mul _mm512_mul_ps
#define lv_fma _mm512_fmadd_ps
#define lv_add _mm512_add_ps
#define lv_set1 _mm512_set1_ps
#define lv_load _mm512_load_ps
#define lv_loadu _mm512_loadu_ps
#define lv_store _mm512_store_ps
#define lv_storeu _mm512_storeu_ps
#else
#define LV_W 8
typedef __m256 lv;
#define lv_zero _mm256_setzero_ps
#define lv_mul _mm256_mul_ps
#define lv_fma _mm256_fmadd_ps
#define lv_add _mm256_add_ps
#define lv_set1 _mm256_set1_ps
#define lv_load _mm256_load_ps
#define lv_loadu _mm256_loadu_ps
#define lv_store _mm256_store_ps
#define lv_storeu _mm256_storeu_ps
#endif
#endif
#if (defined(QN_ISA_NEON) || defined(QN_ISA_NEON_DOTPROD)) && defined(__ARM_NEON)
#define QN_SIMD_NEON 1
#include <arm_neon.h>
#endif

#if defined(__GNUC__)
#define QN_INLINE static inline __attribute__((always_inline))
#else
#define QN_INLINE static inline
#endif

/* fp16 -> fp32 of one scale: F16C / the FP16 unit where compiled in, else half.h (all exact). */
static inline float qn_cpu_h2f(uint16_t h) {
#if defined(QN_SIMD_X86)
    return _cvtsh_ss(h);
#elif defined(QN_SIMD_NEON)
    __fp16 v;
    __builtin_memcpy(&v, &h, 2);
    return (float)v;
#else
    return qn_f16_to_f32(h);
#endif
}

#if defined(QN_SIMD_NEON)
/* acc + Σ of 4 adjacent s8·s8 products per i32 lane (SDOT where the CPU feature is compiled in, else
 * widening multiplies and pairwise adds); exact integers either way. */
static inline int32x4_t qn_neon_dot_s8x16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_s8(vget_high_s8(a), vget_high_s8(b)));
#endif
}
#endif

/* Per-family fillers (one per *_cpu.c family), each writing its entries of the table. */
void QN_ISA_FN(qn_cpu_fill_float)(qn_cpu_kernels *k);
void QN_ISA_FN(qn_cpu_fill_float_gemm)(qn_cpu_kernels *k); /* x86 only: F16 / BF16 / F32 panel GEMM */
void QN_ISA_FN(qn_cpu_fill_legacy)(qn_cpu_kernels *k);
void QN_ISA_FN(qn_cpu_fill_kquant)(qn_cpu_kernels *k);
void QN_ISA_FN(qn_cpu_fill_kquant_x512)(qn_cpu_kernels *k);
void QN_ISA_FN(qn_cpu_fill_attention)(qn_cpu_kernels *k);
void QN_ISA_FN(qn_cpu_fill_dequant)(qn_cpu_kernels *k);
void QN_ISA_FN(qn_cpu_fill_lutq)(qn_cpu_kernels *k);
void QN_ISA_FN(qn_cpu_fill_lutq_amx)(qn_cpu_kernels *k); /* after fill_lutq: AMX-BF16 where usable */
/* lutq_cpu.c's fp32 kernel, which lutq_amx_cpu.c hands what its tiles do not take: on x86 lutq_gemm_cpu.c's panel
 * GEMM from QN_LUTQ_GEMM_MIN_TOKENS tokens on, else lutq_cpu.c's row kernel (both also called by name by bench_cpu) */
void QN_ISA_FN(qn_cpu_lutq_matmul_f32)(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, float *y,
                                       int64_t ldy, int64_t row_begin, int64_t row_end);
void QN_ISA_FN(qn_cpu_lutq_rows_f32)(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, float *y,
                                     int64_t ldy, int64_t row_begin, int64_t row_end);
/* xp: with act-order (w->perm), scratch for the gathered activations, [min(n_tokens, QN_PANEL_TOKEN_BLOCK)][w->k]
 * floats; else unused (NULL) */
void QN_ISA_FN(qn_cpu_lutq_gemm_f32)(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, float *y,
                                     int64_t ldy, int64_t row_begin, int64_t row_end, float *xp);
void QN_ISA_FN(qn_cpu_fill_vexp)(qn_cpu_kernels *k);

#endif
