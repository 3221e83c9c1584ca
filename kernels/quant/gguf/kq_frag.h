/* kq_frag.h — the fragment-direct GEMV (kq_frag.cu): Q4_K, Q6_KP and Q5_K weights in their GGUF layout read straight
 * from global memory into tensor-core A fragments, for 1..16 tokens, for quant_cuda.cu (its GEMV path) and the tests.
 * Owns: which calls it takes, its split rule and partial-tile sizing. Not: shape/alignment checks, path choice
 * (quant_cuda.cu, quant.h), the block layout (gguf_blocks.h, formats.md §2.2).
 *
 * Why: the staged GEMV (kq_kernel.cuh) copies every weight through shared memory and decodes it from there; at 16
 * tokens it ran at 2.0-2.3x its one-token time on an H100 (bench/results/gpu-kq-tc-2026-12-07.md). This kernel
 * keeps lq4m_cuda.cu's scheme (a lane's 16-byte loads are its A fragments; x comes in as B fragments with 16-byte
 * loads) on the GGUF bytes themselves: the k order of each mma is a permutation of the block's elements that makes
 * both sides contiguous (kq_frag.cu's comment), so no repack and no second copy of the weights.
 * The weights it decodes are the dequant kernels' fp16 values bit for bit (fp16(d sc), fp16(-dmin m), one HFMA2). */
#ifndef QN_KQ_FRAG_H
#define QN_KQ_FRAG_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/quant/qformat.h"
#include "kernels/quant/quant.h"
#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A build knob, for C and CUDA alike (-DQN_KQ_FRAG=N in CMAKE_C_FLAGS and CMAKE_CUDA_FLAGS): the formats whose GEMV
 * path may take this kernel, bit 0 Q4_K, bit 1 Q6_KP, bit 2 Q5_K; 0 = the staged kernel for every format. Default 3:
 * Q4_K and Q6_KP, as kq_frag_wants() picks the calls (bench/results/gpu-kq-frag-2026-12-07.md). Q5_K (written
 * 2026-12-07, not yet run on a GPU) is off until a GPU run tests it: bench/gpu_frag_ab.sh builds 7 against 0. */
#ifndef QN_KQ_FRAG
#define QN_KQ_FRAG 3
#endif

#define QN_KQ_FRAG_MAX_TOKENS 16 /* per launch: two groups of 8 tokens */
#define QN_KQ_FRAG_MAX_SPLIT 16

/* Its formats' rows of qn_quant_cuda_ctx.kq_frag_ctas (and their QN_KQ_FRAG bits): Q4_K 0, Q6_KP 1, Q5_K 2; -1 for
 * any other format. */
static inline int qn_kq_frag_index(qn_qformat fmt) {
    return fmt == QN_QFORMAT_Q4_K ? 0 : fmt == QN_QFORMAT_Q6_KP ? 1 : fmt == QN_QFORMAT_Q5_K ? 2 : -1;
}

/* Whether the GEMV path of (fmt, sm) may run this kernel: Q4_K, Q6_KP and Q5_K on sm_80+ (their blocks of 144, 224
 * and 176 bytes keep every row and block 16-byte aligned), as QN_KQ_FRAG names them. */
static inline int qn_kq_frag_takes(qn_qformat fmt, int sm) {
    const int i = qn_kq_frag_index(fmt);
    return sm >= 80 && i >= 0 && ((QN_KQ_FRAG >> i) & 1);
}

/* Partial-tile bytes (after the split-K counters) of a call on n tokens at K split `split` (1 = none). */
size_t kq_frag_part_bytes(int64_t N, int64_t n, int split);

/* The fewest CTAs resident per SM on the current device (>= 1) of fmt's instances for ng groups of 8 tokens (1, 2):
 * sizes the split (qn_quant_cuda_ctx.kq_frag_ctas[qn_kq_frag_index][ng - 1]). kq_frag_ctas: the ctx's count for a
 * launch of `take` tokens (1..16), else this. */
int kq_frag_ctas_per_sm(qn_qformat fmt, int ng);
int kq_frag_ctas(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, int64_t take);

/* The K split it takes for a launch of `take` tokens (1..16) without a forced one: the largest power of two whose
 * grid (tiles x split) still fits the resident CTA slots (n_sm x ctas) in one wave, a block per warp at least. On an
 * H100 that was the fastest split of 1..16 at 4, 8 and 16 tokens on 4096x4096, 14336x4096 and 4096x14336, for both
 * formats; a second wave, or a split past one wave, cost 15-40%. ctas: kq_frag_ctas(). */
int kq_frag_split(qn_qformat fmt, int n_sm, int ctas, int64_t N, int64_t K, int64_t take);

/* Whether quant_cuda.cu's GEMV path runs this kernel on y [n][N] = x [n][K] . W^T: qn_kq_frag_takes, K a multiple of
 * 256, and for Q6_KP only where one launch's tiles fit the resident CTA slots in one wave: on an H100 its kernel ran
 * 2-32% under the staged one there (4096x4096, 4096x14336) and 7-10% over it on 14336x4096 (3.4 waves). Q5_K, as
 * Q4_K (unmeasured). */
int kq_frag_wants(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, int64_t N, int64_t K, int64_t n);

/* y [n][N] f32 = x [n][K] fp16 . W^T for W [N][K] blocks of fmt (16-byte aligned, K a multiple of 256), in launches
 * of 16 tokens. split: 0 = kq_frag_split, else 1..16 (a power of two, as the GEMV path's; capped at K/256); a split
 * > 1 sums through ws (the split-K counters, then kq_frag_part_bytes), and without room there falls back to 1
 * unless `must` (QN_ERR_INVALID_ARG then). Deterministic: a fixed summation order at every split. Launched as a PDL
 * dependent on sm_90 (device_util.cuh). stream: cudaStream_t. */
qn_status kq_frag_matmul(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const void *w, int64_t N, int64_t K,
                         const void *x, int64_t n, float *y, int split, int must, void *ws, size_t ws_bytes,
                         void *stream);

#ifdef __cplusplus
}
#endif
#endif /* QN_KQ_FRAG_H */
