/* kq_mmvq.h — the int8 decode path (QN_QUANT_PATH_MMVQ): the layout of the quantized activations,
 * their host twin and the two launchers (kq_mmvq.cu), for quant_cuda.cu and the tests.
 * Owns: the q8 activation layout below. Not: shape/alignment checks and path choice (quant_cuda.cu),
 * the weight block layouts (gguf_blocks.h).
 *
 * Activations x[n][K] fp16 are cut into blocks of 32 along K and quantized per block:
 *   amax = max |x|,  d = amax / 127 (f32, IEEE division),  inv = amax > 0 ? 127 / amax : 0,
 *   q = round_half_even(x * inv) (f32 product, no FMA)  in [-127, 127],
 *   s0 = sum q[0..15], s1 = sum q[16..31] (ints; s0 + s1 gives the block sum, the halves serve Q2_K's
 *   16-element mins).
 * Device buffer (16-byte aligned), for n tokens:
 *   qs  [n][K]     int8, at offset 0
 *   rec [n][K/32]  qn_mmvq_xrec, at offset align256(n*K)
 * The kernel and qn_mmvq_quantize_x_ref write the same bits (test_gpu_quant checks it); so do the norms and
 * SiLU*mul of kernels/ops/ops_cuda.h when asked to write this buffer too (the device code of one block is
 * kq_mmvq_x.cuh; test_gpu_ops checks them). quant.h's qn_quant_q8_x_in_workspace says where a matmul
 * workspace holds it. */
#ifndef QN_KQ_MMVQ_H
#define QN_KQ_MMVQ_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/qformat.h"
#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qn_mmvq_xrec {
    float d;         /* amax / 127; 0 for an all-zero block */
    int16_t s0, s1;  /* sums of q over elements 0..15 and 16..31: |s| <= 16 * 127 */
} qn_mmvq_xrec;
QN_STATIC_ASSERT(sizeof(qn_mmvq_xrec) == 8, "mmvq activation record size");

#define QN_MMVQ_QK 32 /* activation block */

/* Byte offset of rec in the buffer, and the buffer's size. */
static inline size_t qn_mmvq_x_rec_offset(int64_t n, int64_t K) {
    return ((size_t)n * (size_t)K + 255) & ~(size_t)255;
}
static inline size_t qn_mmvq_x_bytes(int64_t n, int64_t K) {
    return qn_mmvq_x_rec_offset(n, K) + (size_t)n * (size_t)(K / QN_MMVQ_QK) * sizeof(qn_mmvq_xrec);
}

/* Host twin of the quantizer: x [n][K] fp16 bits, K a multiple of 32 -> qs [n][K], rec [n][K/32]. */
void qn_mmvq_quantize_x_ref(const uint16_t *x, int64_t n, int64_t K, int8_t *qs, qn_mmvq_xrec *rec);

/* --- launchers (CUDA builds; kq_mmvq.cu). The caller has checked format, shape, alignment. --- */

/* x [n][K] fp16 (16-byte aligned) -> the buffer above at xq (qn_mmvq_x_bytes(n, K), 16-byte aligned).
 * kq_mmvq_quantize_x_perm with perm NULL and pdl 0. */
qn_status kq_mmvq_quantize_x(const void *x, int64_t n, int64_t K, void *xq, void *stream);
/* The same for x gathered through an act-order permutation first (lutq_gpu.h): the buffer holds the q8 of
 * x_perm[t][j] = x[t][perm[j]], bit for bit qn_mmvq_quantize_x_ref of that gathered x, in one launch (no fp16
 * copy of x_perm). perm [K] device int32, 16-byte aligned (else QN_ERR_INVALID_ARG); NULL = identity (the
 * plain quantizer). pdl (sm_90 only): launched as a programmatic dependent of the kernel before, so that
 * its launch (and its perm loads) overlap that kernel's end (device_util.cuh). */
qn_status kq_mmvq_quantize_x_perm(const void *x, const int32_t *perm, int64_t n, int64_t K, void *xq, int pdl,
                                  void *stream);

/* Formats the kernel decodes: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, and the GPTQ/AWQ/bnb device blocks
 * LQ4, LQ8, LNF4, LFP4 (lutq_gpu.h; their instances are in lutq_mmvq.cu), F16, BF16 (float_mmvq.cu). */
int kq_mmvq_has_format(qn_qformat fmt);
/* LNF4/LFP4 (values from a float table) and F16/BF16: no integer codes, so the kernel takes x unquantized (fp16);
 * quant.h qn_quant_mmvq_f16_x. */
int kq_mmvq_takes_f16_x(qn_qformat fmt);

/* y[t][r] = sum_k xq[t][k] * W[r][k] for t < n (any n >= 1, in launches of up to 8 tokens), r < N.
 * w: [N][qn_qformat_row_bytes(fmt, K)] blocks, 16-byte aligned; xq: the buffer kq_mmvq_quantize_x wrote
 * for these n tokens, or for kq_mmvq_takes_f16_x formats x itself ([n][K] fp16, 16-byte aligned); y [n][N]
 * f32, overwritten. warps_per_row: 1, 2 or 4 warps split each row's K
 * inside a CTA, 0 picks one from the grid size (n_sm). stage: > 0 stages the weights through shared memory
 * wherever kq_mmvq_stages says the kernel can (2: also as a persistent launch where one warp takes a row, in a
 * build where kq_mmvq_persists), < 0 reads them directly, 0 (auto) stages where that measured faster
 * (kq_mmvq.cu); the outputs are bit-identical either way.
 * pdl (sm_90 only): launched as a
 * programmatic dependent of the kernel before it in the stream, so that its CTAs start and load weights while
 * that one finishes (device_util.cuh). QN_ERR_UNSUPPORTED for a format it lacks. */
qn_status kq_mmvq_matmul(qn_qformat fmt, const void *w, int64_t N, int64_t K, const void *xq, int64_t n, float *y,
                         int n_sm, int warps_per_row, int stage, int pdl, void *stream);

/* Whether a launch of nt (1..8) tokens on (fmt, K) can stage its weights through shared memory (it does
 * with stage > 0, and with stage 0 where kq_mmvq.cu's auto policy says): rows of a multiple of 16 bytes
 * (e.g. Q6_K needs K % 2048 == 0, Q8_0 K % 256 == 0) and a
 * staged instance that fits 48 KB (not Q6_K at nt >= 4). */
int kq_mmvq_stages(qn_qformat fmt, int64_t K, int nt);

/* Whether this build holds the persistent staged launches (kq_mmvq.cuh mq_persist; -DQN_MQ_PERSIST=1 or 2). */
int kq_mmvq_persists(void);

/* One matrix of a grouped call: w [N][row_bytes(fmt, K)] blocks (16-byte aligned), y [n][N] f32. */
typedef struct kq_mmvq_mat {
    const void *w;
    int64_t N;
    float *y;
} kq_mmvq_mat;
#define KQ_MMVQ_MAX_MATS 3

/* kq_mmvq_matmul of 1..KQ_MMVQ_MAX_MATS matrices of the same format and K on the same activations (q, k, v
 * of one normed x; gate and up) in one launch per 8 tokens: the matrices' CTAs follow each other in one
 * grid, so small matrices share the waves of the large one instead of running as their own short launches.
 * Every output is bit-identical to kq_mmvq_matmul of that matrix alone at the same warps_per_row (chosen
 * here from the total rows when 0). */
qn_status kq_mmvq_matmul_group(qn_qformat fmt, const kq_mmvq_mat *mats, int n_mat, int64_t K, const void *xq,
                               int64_t n, int n_sm, int warps_per_row, int stage, int pdl, void *stream);

#ifdef __cplusplus
}
#endif
#endif /* QN_KQ_MMVQ_H */
