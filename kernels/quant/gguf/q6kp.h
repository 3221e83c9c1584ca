/* q6kp.h — Q6_KP, the device-only padded Q6_K block (QN_QFORMAT_Q6_KP).
 *
 *   block (224 bytes): ql[128] @0 | qh[64] @128 | scales i8[16] @192 | d f16 @208 | zero[14] @210
 *
 * Bytes 0..209 are the Q6_K block as it is (gguf_blocks.h), so every value is the Q6_K one. Why: a Q6_K
 * block is 210 bytes, so blocks and rows are only 2-byte aligned and the int8 decode kernel reads them as
 * 4-byte words realigned by shifts, or stages them through shared memory (kq_mmvq.cuh); it streamed at
 * ~75% of copy bandwidth against 97-106% for the 16-byte aligned Q4_K (bench/results/gpu-fixed-cost-2026-12-03.md).
 * Padded, every field a unit reads lies on a 16-, 8- or 2-byte boundary of a 16-byte aligned block: 2+2
 * 16-byte loads, one 8-byte and one 2-byte load per 64-element unit. The price is 14 bytes per 256
 * weights (+6.7% of the Q6_K bytes). Made once at upload (runtime/model/llama_cuda.c) from Q6_K matmul
 * weights; never in a file, no CPU kernels. */
#ifndef QN_Q6KP_H
#define QN_Q6KP_H

#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QN_Q6KP_BLOCK_BYTES 224

/* rows x k weights of Q6_K (src: [rows][k / 256] blocks of 210 bytes) -> Q6_KP (dst: [rows][k / 256] blocks of
 * 224 bytes, the pad zeroed). QN_ERR_SHAPE if k is not a positive multiple of 256 or rows < 0. */
qn_status qn_q6kp_repack(const void *src, void *dst, int64_t rows, int64_t k);

/* The scalar reference: one row of n elements (n a multiple of 256) of Q6_KP blocks -> n floats, through
 * the Q6_K reference dequantizer (gguf_ref.h) block by block. */
void qn_dequant_row_q6kp_ref(const void *src, float *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
