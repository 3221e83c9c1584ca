/* ops.h — element-wise and row ops of the Llama forward pass (CPU versions; CUDA twins in *.cu).
 * Owns no memory. Numerics follow ggml's CPU ops where that matters for agreement with llama.cpp:
 * RMSNorm sums squares in double; RoPE angles advance by repeated multiplication (theta *= scale);
 * the rotation is fma(x0, c, -(x1*s)), fma(x0, s, x1*c). */
#ifndef QN_OPS_H
#define QN_OPS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i];  x, y, w: [n] (y may alias x; w may be NULL) */
void qn_rmsnorm_f32(const float *x, const float *w, float *y, int64_t n, float eps);

/* RoPE angle cache for one position: cache[2i] = cos(theta_i), cache[2i+1] = sin(theta_i),
 * theta_i = pos * freq_scale * base^(-2i/rope_dim) / freq_factors[i] (freq_factors may be NULL).
 * cache: [rope_dim] */
void qn_rope_cache_f32(float *cache, int64_t pos, int rope_dim, float base, float freq_scale,
                       const float *freq_factors);
/* Rotates the first rope_dim dims of each of n_heads heads in place.
 * x: [n_heads][head_dim]. NORM pairs (2i, 2i+1); NEOX pairs (i, i + rope_dim/2). */
void qn_rope_norm_f32(float *x, const float *cache, int n_heads, int head_dim, int rope_dim);
void qn_rope_neox_f32(float *x, const float *cache, int n_heads, int head_dim, int rope_dim);

/* g[i] = silu(g[i]) * u[i];  g, u: [n] */
void qn_silu_mul_f32(float *g, const float *u, int64_t n);

/* y[i] += x[i];  [n] */
void qn_add_f32(float *y, const float *x, int64_t n);

/* In-place softmax over [n]; returns log of the normaliser (for logprobs). */
double qn_softmax_f32(float *x, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
