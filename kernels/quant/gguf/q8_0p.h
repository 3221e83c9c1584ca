/* q8_0p.h — Q8_0P, the device-only Q8_0 super-block (QN_QFORMAT_Q8_0P).
 *
 *   block (272 bytes, 256 elements): d f16[8] @0 | qs i8[8][32] @16
 *
 * Eight Q8_0 blocks (gguf_blocks.h) regrouped: the scale of Q8_0 block j goes to d[j], its 32 codes to
 * qs[j], so element 32j + l is d[j] * qs[j][l], the Q8_0 value. Why: a Q8_0 block is 34 bytes, so blocks
 * and rows are only 2-byte aligned and the int8 decode kernel reads a block's codes as 8 realigned words plus
 * 16-bit halves (kq_mmvq.cuh), or stages them through shared memory; it streamed at ~76-79% of copy
 * bandwidth on the 8B projections (bench/results/gpu-pdl-trigger-2026-12-03.md). Grouped, every field lies on
 * a 16-byte (codes) or 2-byte (scale) boundary of a 16-byte aligned block: two 16-byte loads and one 2-byte
 * load per 32 elements. Same bytes as Q8_0 (8 x 34 = 272). Made once at upload (runtime/model/llama_cuda.c)
 * from Q8_0 matmul weights whose rows are a multiple of 256 long; never in a file, no CPU kernels. */
#ifndef QN_Q8_0P_H
#define QN_Q8_0P_H

#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QN_Q8_0P_BLOCK_ELEMS 256
#define QN_Q8_0P_BLOCK_BYTES 272

/* rows x k weights of Q8_0 (src: [rows][k / 32] blocks of 34 bytes) -> Q8_0P (dst: [rows][k / 256] blocks of
 * 272 bytes). QN_ERR_SHAPE if k is not a positive multiple of 256 or rows < 0. */
qn_status qn_q8_0p_repack(const void *src, void *dst, int64_t rows, int64_t k);

/* The scalar reference: one row of n elements (n a multiple of 256) of Q8_0P blocks -> n floats, each d[j] *
 * qs[j][l] as the Q8_0 reference dequantizer computes it (gguf_ref.h). */
void qn_dequant_row_q8_0p_ref(const void *src, float *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
