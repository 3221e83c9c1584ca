/* kx8.h — the CPU-only row-interleaved layouts Q2_K×8 .. Q6_K×8, Q4_0×8, Q5_0×8, Q5_1×8 and Q8_0×8 (a load-time
 * repack, no file format).
 *
 *   group block = the blocks of 8 consecutive rows for one block-wide column span (256 columns for the K-quants, 32
 *   for Q4_0 / Q5_0 / Q5_1 / Q8_0), rows of 32 bytes holding one dword per weight row. rows 8g..8g+7 (group g) ×
 *   the span b: group block g·(k / block elements) + b.
 *   K-quants: dword [j][r] at byte 32j + 4r, j < D, r < 8; then T trailing bytes per row (byte 32D + T·r).
 *   Q2_K×8 (672 bytes): D = 21, T = 0, the block's dwords as they are: scales 0..3 (one byte per 16-element sub-block,
 *     scale | min << 4), qs 4..19 (dword 4 + j holds qs bytes 4j..4j+3), d | dmin << 16 in dword 20.
 *   Q3_K×8 (880 bytes): D = 27, T = 2. The codes re-encoded as c_i(l) = lo + 4·hbit (0..7, the scalar's code + 4) of
 *     element 32i + l (i < 8, l < 32), three per byte so that six of every eight are one shift and one AND away:
 *     dword [8e + l/4] holds bytes l..l+3 of stream e < 3: e0 = c0 | c1 << 3 | (c6 & 3) << 6,
 *     e1 = c2 | c3 << 3 | (c7 & 3) << 6, e2 = c4 | c5 << 3 | (c6 >> 2) << 6 | (c7 >> 2) << 7. Dwords 24..26: the 12
 *     packed scale bytes; then the 8 fp16 d. 96 + 12 + 2 bytes per row, Q3_K's 110.
 *   Q4_K×8 (1152 bytes): D = 36, T = 0; dword [j][r] = dword j of row r's block. Dwords 0..3 are the headers
 *     (d | dmin << 16, then the three 6-bit scale words); dword 4 + 8c + s holds qs bytes 32c + 4s .. +3 (c < 4 code
 *     chunks, s < 8 steps).
 *   Q5_K×8 (1408 bytes): D = 44, T = 0, the same dword transpose: headers 0..3, qh 4..11, qs from dword 12.
 *   Q6_K×8 (1680 bytes): D = 52, T = 2. The 6-bit codes re-encoded so that three of every four are one AND away:
 *     with q_k(l) the code of element 128h + 32k + l (h < 2, k < 4, l < 32), dword [24h + 8c + l/4] holds bytes l..l+3
 *     of stream c < 3: byte = q_c(l) | (bits 2c, 2c+1 of q_3(l)) << 6. Dwords 48..51: the 16 i8 scales (dword j =
 *     scales 4j..4j+3); then the 8 fp16 d. 192 + 16 + 2 bytes per row, Q6_K's 210.
 *   Q4_0×8 (144 bytes) and Q8_0×8 (272 bytes): the 8 rows' fp16 d first (16 bytes), then dword j of row r's qs at
 *     byte 16 + 32j + 4r (j < 4 / 8).
 *   Q5_0×8 (176 bytes) and Q5_1×8 (192 bytes): the 8 fp16 d (Q5_1: then the 8 fp16 m), then one dword row H of the
 *     fifth bits, then the 4 qs dword rows as Q4_0×8's (QN_Q5X8_H_BYTE, QN_Q5X8_QS_BYTE). Row r's H dword is its qh
 *     regrouped by qs dword: byte c (c < 4) holds at bit j the fifth bit of element 4j + c and at bit 4 + j that of
 *     element 16 + 4j + c (j < 4), so that the bits of qs dword j's low nibbles are H << (4 − j) & 0x10 per byte
 *     and those of its high nibbles H >> j & 0x10 (16-bit shifts that move no bit across a byte at bit 4).
 *
 * Why: the AVX2 register tiles keep 8 rows in the 8 i32 lanes (kq_cpu.c, q_legacy_cpu.c); fed plain rows they would
 * transpose every block (an 8×8 dword transpose per 32 bytes) for each 4 tokens. Stored transposed, each 32-byte
 * step is one load. The same bytes, only moved: no memory is added, every value is the format's and every output
 * of the kernels stays bit-identical to vec_dot on the plain rows. Made once when the CPU forward is created
 * (runtime/model/llama_cpu.c) for the matmul weights of these formats whose row count is a multiple of 8. */
#ifndef QN_KX8_H
#define QN_KX8_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/quant/qformat.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QN_KX8_ROWS 8
#define QN_Q40X8_BLOCK_BYTES 144  /* 8 × sizeof(qn_block_q4_0) */
#define QN_Q80X8_BLOCK_BYTES 272  /* 8 × sizeof(qn_block_q8_0) */
#define QN_LX8_QS_BYTE 16         /* Q4_0×8, Q8_0×8: the code dwords after the 8 d (Q5_x×8: below) */
#define QN_Q50X8_BLOCK_BYTES 176  /* 8 × sizeof(qn_block_q5_0) */
#define QN_Q51X8_BLOCK_BYTES 192  /* 8 × sizeof(qn_block_q5_1) */
#define QN_Q5X8_H_BYTE(fmt) ((fmt) == QN_QFORMAT_Q5_1 ? 32 : 16) /* the fifth bits' dword row */
#define QN_Q5X8_QS_BYTE(fmt) (QN_Q5X8_H_BYTE(fmt) + 32)          /* the 4 qs dword rows */
#define QN_Q51X8_M_BYTE 16        /* Q5_1×8: the 8 fp16 m after the 8 d */
#define QN_Q2KX8_BLOCK_BYTES 672  /* 8 × sizeof(qn_block_q2_k) */
#define QN_Q2KX8_D_DWORD 20       /* the rows' d | dmin << 16 */
#define QN_Q3KX8_BLOCK_BYTES 880  /* 8 × sizeof(qn_block_q3_k) */
#define QN_Q3KX8_SC_DWORD 24      /* the packed scales: dwords 24..26 (the code streams: 0..23) */
#define QN_Q3KX8_D_BYTE 864       /* the 8 rows' fp16 d */
#define QN_Q4KX8_BLOCK_BYTES 1152 /* 8 × sizeof(qn_block_q4_k) */
#define QN_Q5KX8_BLOCK_BYTES 1408 /* 8 × sizeof(qn_block_q5_k) */
#define QN_Q6KX8_BLOCK_BYTES 1680 /* 8 × sizeof(qn_block_q6_k) */
#define QN_Q6KX8_SC_DWORD 48      /* first dword row of the scales (the code streams: 0..47) */
#define QN_Q6KX8_D_BYTE 1664      /* the 8 rows' fp16 d */

/* Bytes of one group block of fmt (Q2_K .. Q6_K, Q4_0, Q5_0, Q5_1, Q8_0; 0 for any other format). */
static inline size_t qn_kx8_block_bytes(qn_qformat fmt) {
    return fmt == QN_QFORMAT_Q4_0   ? QN_Q40X8_BLOCK_BYTES
           : fmt == QN_QFORMAT_Q5_0 ? QN_Q50X8_BLOCK_BYTES
           : fmt == QN_QFORMAT_Q5_1 ? QN_Q51X8_BLOCK_BYTES
           : fmt == QN_QFORMAT_Q8_0 ? QN_Q80X8_BLOCK_BYTES
           : fmt == QN_QFORMAT_Q2_K ? QN_Q2KX8_BLOCK_BYTES
           : fmt == QN_QFORMAT_Q3_K ? QN_Q3KX8_BLOCK_BYTES
           : fmt == QN_QFORMAT_Q4_K ? QN_Q4KX8_BLOCK_BYTES
           : fmt == QN_QFORMAT_Q5_K ? QN_Q5KX8_BLOCK_BYTES
           : fmt == QN_QFORMAT_Q6_K ? QN_Q6KX8_BLOCK_BYTES
                                    : 0;
}

/* The legacy tiles (q_legacy_cpu.c) read a table of the tokens' block data made per slice of this many blocks; Q5_1's
 * two sums (Σ s·d_w·d_a and Σ m_w·s_a, added at the end as vec_dot does) cannot carry across slices, so its rows
 * are at most one slice long. */
#define QN_LX8_MAX_BLOCKS 1024

/* QN_OK when a rows × k matrix of fmt can be repacked: fmt one of qn_kx8_block_bytes' (else QN_ERR_UNSUPPORTED), k a
 * positive multiple of its block (256 or 32 elements; Q5_1: at most 32·QN_LX8_MAX_BLOCKS) and rows a multiple of 8
 * (>= 0) (else QN_ERR_SHAPE). */
qn_status qn_kx8_check_shape(qn_qformat fmt, int64_t rows, int64_t k);

/* Rows [g_begin·8, g_end·8) of a rows × k matrix of fmt (src: [rows][k / 256] blocks) -> the groups g_begin..g_end-1
 * of dst (the whole repacked matrix: [rows / 8][k / 256] group blocks, the same bytes as src). qn_kx8_check_shape's
 * errors, and QN_ERR_SHAPE unless 0 <= g_begin <= g_end <= rows / 8. Threads may repack disjoint group ranges of
 * one matrix at once. */
qn_status qn_kx8_repack(qn_qformat fmt, const void *src, void *dst, int64_t rows, int64_t k, int64_t g_begin,
                        int64_t g_end);

/* The inverse: row r (r < rows) of the repacked matrix src back to its plain row (dst: [k / 256] blocks). */
qn_status qn_kx8_unpack_row(qn_qformat fmt, const void *src, void *dst, int64_t rows, int64_t k, int64_t r);

#ifdef __cplusplus
}
#endif
#endif
