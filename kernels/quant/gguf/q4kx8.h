/* q4kx8.h — Q4_K×8, the CPU-only row-interleaved Q4_K layout (load-time repack, no file format).
 *
 *   group block (1152 bytes) = the super-blocks of 8 consecutive rows for one 256-column span, dword-interleaved:
 *     dword [j][r] (byte 32j + 4r) = dword j (bytes 4j..4j+3) of row r's 144-byte Q4_K block, j < 36, r < 8
 *   so dwords 0..3 are the rows' headers (d | dmin << 16, then the three 6-bit scale words) and dword 4 + 8c + s
 *   holds qs bytes 32c + 4s .. 32c + 4s + 3 (c < 4 code chunks, s < 8 steps).
 *   rows 8g..8g+7 (group g) × columns 256b..256b+255: group block g·(k / 256) + b.
 *
 * Why: the AVX2 Q4_K register tile keeps 8 rows in the 8 i32 lanes (kq_cpu.c); fed plain rows it transposes every
 * block (an 8×8 dword transpose per 32 code bytes, a 4×8 one per header) for each 4 tokens. Stored transposed,
 * each 32-byte step is one load. The same bytes, only moved: no memory is added, every value is Q4_K's and every
 * output of the kernels stays bit-identical to vec_dot[Q4_K] on the plain rows. Made once when the CPU forward is
 * created (runtime/model/llama_cpu.c) for the Q4_K matmul weights whose row count is a multiple of 8. */
#ifndef QN_Q4KX8_H
#define QN_Q4KX8_H

#include <stddef.h>
#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QN_Q4KX8_ROWS 8
#define QN_Q4KX8_BLOCK_BYTES 1152 /* 8 × sizeof(qn_block_q4_k) */

/* QN_OK when a rows × k Q4_K matrix can be repacked: k a positive multiple of 256, rows a multiple of 8 (>= 0). */
qn_status qn_q4kx8_check_shape(int64_t rows, int64_t k);

/* Rows [g_begin·8, g_end·8) of a rows × k Q4_K matrix (src: [rows][k / 256] blocks of 144 bytes) -> the groups
 * g_begin..g_end-1 of dst (the whole repacked matrix: [rows / 8][k / 256] group blocks). QN_ERR_SHAPE unless k is a
 * positive multiple of 256 and rows a multiple of 8 with 0 <= g_begin <= g_end <= rows / 8. Threads may repack
 * disjoint group ranges of one matrix at once. */
qn_status qn_q4kx8_repack(const void *src, void *dst, int64_t rows, int64_t k, int64_t g_begin, int64_t g_end);

/* The inverse: row r (r < rows) of the repacked matrix src back to its plain Q4_K row (dst: [k / 256] blocks). */
qn_status qn_q4kx8_unpack_row(const void *src, void *dst, int64_t rows, int64_t k, int64_t r);

#ifdef __cplusplus
}
#endif
#endif
