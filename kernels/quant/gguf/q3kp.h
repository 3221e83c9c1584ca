/* q3kp.h — Q3_KP, the device-only padded Q3_K block (QN_QFORMAT_Q3_KP).
 *
 *   block (112 bytes): hmask[32] @0 | qs[64] @32 | scales[12] @96 | d f16 @108 | zero[2] @110
 *
 * Bytes 0..109 are the Q3_K block as it is (gguf_blocks.h), so every value is the Q3_K one. Why: a Q3_K
 * block is 110 bytes, so blocks and rows are only 2-byte aligned, and the int8 decode kernel read each unit's
 * 19 words as realigned 4- and 2-byte loads behind a branch on the alignment (kq_mmvq.cuh mq_span_a2); Nsight
 * Compute counted ~570 instructions per 128-element unit and row on the 8B down projection
 * (bench/results/gpu-persist-2026-12-05.md). Padded, hmask and qs are 16-byte vectors and scales plus d one
 * 16-byte load. The price is 2 bytes per 256 weights (+1.8% of the Q3_K bytes). Made once at upload
 * (runtime/model/llama_cuda.c) from Q3_K matmul weights; never in a file, no CPU kernels. */
#ifndef QN_Q3KP_H
#define QN_Q3KP_H

#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QN_Q3KP_BLOCK_BYTES 112

/* rows x k weights of Q3_K (src: [rows][k / 256] blocks of 110 bytes) -> Q3_KP (dst: [rows][k / 256] blocks of
 * 112 bytes, the pad zeroed). QN_ERR_SHAPE if k is not a positive multiple of 256 or rows < 0. */
qn_status qn_q3kp_repack(const void *src, void *dst, int64_t rows, int64_t k);

/* The scalar reference: one row of n elements (n a multiple of 256) of Q3_KP blocks -> n floats, through
 * the Q3_K reference dequantizer (gguf_ref.h) block by block. */
void qn_dequant_row_q3kp_ref(const void *src, float *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
