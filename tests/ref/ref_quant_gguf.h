/* ref_quant_gguf.h — double-precision references and input generators for the GGUF CPU kernels
 * (tests/kernels/test_simd.c, test_dequant_peer.c). Double sums over the _ref dequantizations, so
 * they share no code path with the integer dot products under test. */
#ifndef QN_REF_QUANT_GGUF_H
#define QN_REF_QUANT_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "kernels/quant/qformat.h"

/* Random rows of fmt: random bytes, with every fp16/f32 scale field (d, m, dmin, s) replaced by a
 * finite value. wide = 1: any finite fp16 bit pattern (subnormals included; for bit-exact dequant
 * checks); wide = 0: |scale| in [2^-10, 2^-4] (sane magnitudes for dot-product tolerances).
 * Plain types get finite random values (wide: random finite bit patterns). */
void qn_ref_gguf_random_blocks(qn_rng *rng, qn_qformat fmt, void *dst, int64_t n_elems, int wide);

/* Σ_i w_i·a_i in double over the reference dequantizations of w (wfmt) and a (afmt), n elements.
 * *abs_sum (if non-NULL) = Σ_i |w_i·a_i|, the scale for fp32-rounding tolerances. */
double qn_ref_gguf_dot(qn_qformat wfmt, const void *w, qn_qformat afmt, const void *a, int64_t n,
                       double *abs_sum);

/* For Q4_1/Q5_1 · Q8_1 the kernels use the activation's fp16 s = fp16(d·Σq) in place of d·Σq (as
 * llama.cpp does): this returns Σ_blocks |m_w|·|s − d·Σq|, the exact bound of that difference.
 * 0 for every other format. */
double qn_ref_gguf_s_bound(qn_qformat wfmt, const void *w, const void *a, int64_t n);

#endif
