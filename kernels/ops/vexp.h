/* vexp.h — the single-precision exp of the CPU softmax and SiLU, in the forms llama.cpp's CPU backend
 * computes it, so that Quern's CPU logits stay bit-identical to llama.cpp's on the same ISA (issue 2: greedy
 * continuations identical). ggml evaluates exp with a vector routine (its "v_expf", adapted from Arm's
 * Optimized Routines expf: round x/ln2 to an integer n, reduce r = x - n·ln2 in two fused steps, a degree-5
 * polynomial for e^r, scale by 2^n) on whole vectors, and libm's expf on the elements left over. The routine
 * exists in two arithmetic forms that differ in their last bits:
 *   - SCALEF (x86 AVX-512): p = 1 + c1·r + ... evaluated with the 1 inside, scaled by vscalefps (p·2^n);
 *   - FMA (x86 AVX2 with FMA, Arm NEON): q = c1·r + ..., the result k + q·k with k = 2^n built in the
 *     exponent field; |n| > 126 goes through a two-factor scale so nothing overflows early.
 * Both are within ~1.5 ulp of e^x; over/underflow as e^x (±inf/0 beyond about 88.7 / -104).
 * Constants and operation order below are the published ones (they decide the bits); the SIMD versions
 * (vexp_simd.h) must equal qn_vexp_ref lane for lane (tests/kernels/test_vexp.c). */
#ifndef QN_VEXP_H
#define QN_VEXP_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qn_vexp_form {
    QN_VEXP_LIBM = 0, /* expf from libm (ggml without SIMD, and every leftover element) */
    QN_VEXP_SCALEF,   /* ggml's AVX-512 form */
    QN_VEXP_FMA,      /* ggml's AVX2+FMA and NEON form */
} qn_vexp_form;

#define QN_VEXP_SHIFTER 0x1.8p23f     /* z = x·log2e + 1.5·2^23 leaves round(x·log2e) in z's low bits */
#define QN_VEXP_LOG2E 0x1.715476p+0f
#define QN_VEXP_LN2_HI 0x1.62e4p-1f   /* ln2 = LN2_HI + LN2_LO, LN2_HI with few mantissa bits */
#define QN_VEXP_LN2_LO 0x1.7f7d1cp-20f
#define QN_VEXP_C1 0x1.ffffecp-1f     /* e^r ~ 1 + C1 r + C2 r^2 + C3 r^3 + C4 r^4 + C5 r^5 on |r| <= ln2/2 */
#define QN_VEXP_C2 0x1.fffdb6p-2f
#define QN_VEXP_C3 0x1.555e66p-3f
#define QN_VEXP_C4 0x1.573e2ep-5f
#define QN_VEXP_C5 0x1.0e4020p-7f

/* e^x as one lane of the given form computes it (plain C, fmaf: the reference for the SIMD versions). */
float qn_vexp_ref(float x, qn_vexp_form form);

/* g[i] = silu(g[i]) * u[i] with silu(x) = x / (1 + e^-x), e^-x in `form` for i < n - n % width and in libm
 * for the rest, as ggml's swiglu with vectors of `width` floats (16 AVX-512, 8 AVX2, 4 NEON); g, u: [n]. */
void qn_silu_mul_ref(float *g, const float *u, int64_t n, qn_vexp_form form, int width);

#ifdef __cplusplus
}
#endif
#endif
