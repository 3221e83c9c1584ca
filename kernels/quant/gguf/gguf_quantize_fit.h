/* gguf_quantize_fit.h — the sub-block searches of gguf_quantize_k.c that the 32-element quantizers
 * (gguf_quantize.c) reuse with an importance matrix; internal to kernels/quant/gguf. */
#ifndef QN_GGUF_QUANTIZE_FIT_H
#define QN_GGUF_QUANTIZE_FIT_H

#include <stdbool.h>
#include <stdint.h>

/* Affine fit x ≈ scale*L + min, L in [0, nmax], min <= 0, weights w (n <= 32); codes to L, -min
 * to *neg_min; returns the scale (ggml's make_qkx2/3_quants with weights). */
float qn_kq_fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min, float rmin,
                       float rdelta, int nstep, bool use_mad);
/* Symmetric fit, L = level + nmax in [0, 2*nmax), weights w (NULL: x²); returns the scale (ggml's
 * make_qx_quants with rmse_type 1). */
float qn_kq_fit_sym(int n, int nmax, const float *x, const float *w, int8_t *L);

#endif
