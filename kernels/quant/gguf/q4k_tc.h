/* q4k_tc.h — the tensor-core GEMM of GGUF Q4_K weights for many tokens on Hopper (q4k_tc_sm90a.cu: wgmma, the
 * dequant in the tile loads, the weights read in their own 144-byte blocks: no repack, no fp16 copy), and its host
 * twin. quant_cuda.cu calls it for path TC and, under AUTO, in qn_q4k_tc_auto's window instead of dequant + cuBLAS.
 *
 * Values: w = fp16(S · q + B) with S = fp16(d · sc), B = fp16(−dmin · m) (one f16x2 FMA per pair of weights on
 * exact integers q); ggml's fp16 dequant rounds d · sc · q − dmin · m once, so the two differ by at most ~1.5 fp16
 * ulp of max(|S q|, |B|) (qn_q4k_tc_dequant_host gives the GEMM's values bit for bit).
 *
 * x order: the GEMM reads x with the columns of each 64-column group (one Q4_K "j" group: 32 bytes of codes per
 * row, low nibbles columns 0..31, high 32..63) permuted so that the k slots of its tensor-core A fragments are the
 * nibbles a lane loads in 8 bytes: slot kk of k16 slice s (0..3) of a group is column
 *   32 (s & 1) + 8 t + 4 (s >> 1) + 2 (kk & 1) + (kk >> 3),  t = (kk & 7) >> 1
 * (qn_q4k_tc_x_col). qn_q4k_tc_prepare_x writes that order (once per x, shared by the matrices on one x). */
#ifndef QN_Q4K_TC_H
#define QN_Q4K_TC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* AUTO takes the GEMM for QN_Q4K_TC_MIN_TOKENS..QN_Q4K_TC_MAX_TOKENS tokens on sm_90a (above the mma kernel's
 * range, quant.h QN_QUANT_MMA_MAX_TOKENS); beyond, dequant + cuBLAS. */
#ifndef QN_Q4K_TC_MIN_TOKENS
#define QN_Q4K_TC_MIN_TOKENS 33
#endif
#ifndef QN_Q4K_TC_MAX_TOKENS
#define QN_Q4K_TC_MAX_TOKENS 4096
#endif
static inline bool qn_q4k_tc_auto(int64_t n) { return n >= QN_Q4K_TC_MIN_TOKENS && n <= QN_Q4K_TC_MAX_TOKENS; }

/* The source column (0..63) of the prepared x's column c (0..63) within a 64-column group (the header comment). */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline int qn_q4k_tc_x_col(int c) {
    const int s = c >> 4, kk = c & 15, t = (kk & 7) >> 1;
    return 32 * (s & 1) + 8 * t + 4 * (s >> 1) + 2 * (kk & 1) + (kk >> 3);
}

/* Host twin: out [n][k] fp16 bits of the GEMM's weight values, in natural column order, from Q4_K rows
 * w [n][k / 256] blocks. QN_ERR_SHAPE unless k is a positive multiple of 256. */
qn_status qn_q4k_tc_dequant_host(const void *w, int64_t n, int64_t k, uint16_t *out);

/* --- GPU (definitions in q4k_tc_sm90a.cu; stubs that refuse in builds without sm_90a code) --- */

/* Whether the GEMM runs N x K Q4_K weights on this device (sm 90 with sm_90a code; N % 16 == 0, K % 256 == 0). */
bool qn_q4k_tc_takes(int sm, int64_t N, int64_t K);
/* xt [n][K] fp16 = x [n][K] fp16 in the GEMM's column order; both 16-byte aligned. */
qn_status qn_q4k_tc_prepare_x(const void *x, int64_t n, int64_t K, void *xt, void *stream);
/* Bytes of split-K sums any call of at most n tokens needs (0 where none splits). */
size_t qn_q4k_tc_part_bytes(int n_sm, int64_t N, int64_t K, int64_t n);
/* y[n][N] f32 = x . W^T, W [N][K / 256] Q4_K blocks (device, 16-byte aligned rows), xt the prepared x; part: the
 * split-K sums (qn_q4k_tc_part_bytes, 16-byte aligned; NULL where it is 0). Deterministic; no allocation or
 * synchronisation (CUDA-graph capturable). QN_ERR_UNSUPPORTED where !qn_q4k_tc_takes. */
qn_status qn_q4k_tc_cuda(int sm, int n_sm, const void *w, int64_t N, int64_t K, const void *xt, int64_t n, float *y,
                         void *part, size_t part_bytes, void *stream);

#ifdef __cplusplus
}
#endif
#endif /* QN_Q4K_TC_H */
