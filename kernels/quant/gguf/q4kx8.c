/* q4kx8.c — the Q4_K -> Q4_K×8 repack and its inverse (q4kx8.h). */
#include "kernels/quant/gguf/q4kx8.h"

#include <string.h>

#include "kernels/quant/gguf/gguf_blocks.h"

QN_STATIC_ASSERT(QN_Q4KX8_BLOCK_BYTES == QN_Q4KX8_ROWS * sizeof(qn_block_q4_k) && sizeof(qn_block_q4_k) % 4 == 0,
                 "q4_kx8 block");

enum { DWORDS = sizeof(qn_block_q4_k) / 4 };

qn_status qn_q4kx8_check_shape(int64_t rows, int64_t k) {
    return rows >= 0 && rows % QN_Q4KX8_ROWS == 0 && k > 0 && k % QN_QK_K == 0 ? QN_OK : QN_ERR_SHAPE;
}

qn_status qn_q4kx8_repack(const void *src, void *dst, int64_t rows, int64_t k, int64_t g_begin, int64_t g_end) {
    if (qn_q4kx8_check_shape(rows, k) != QN_OK || g_begin < 0 || g_end < g_begin || g_end > rows / QN_Q4KX8_ROWS) return QN_ERR_SHAPE;
    if (g_end > g_begin && (!src || !dst)) return QN_ERR_INVALID_ARG;
    const int64_t nb = k / QN_QK_K;
    const size_t row_bytes = (size_t)nb * sizeof(qn_block_q4_k);
    for (int64_t g = g_begin; g < g_end; g++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *o = (uint8_t *)dst + (size_t)(g * nb + b) * QN_Q4KX8_BLOCK_BYTES;
            for (int r = 0; r < QN_Q4KX8_ROWS; r++) {
                const uint8_t *blk = (const uint8_t *)src + (size_t)(g * QN_Q4KX8_ROWS + r) * row_bytes +
                                     (size_t)b * sizeof(qn_block_q4_k);
                for (int j = 0; j < DWORDS; j++) memcpy(o + 32 * j + 4 * r, blk + 4 * j, 4);
            }
        }
    return QN_OK;
}

qn_status qn_q4kx8_unpack_row(const void *src, void *dst, int64_t rows, int64_t k, int64_t r) {
    if (qn_q4kx8_check_shape(rows, k) != QN_OK || r < 0 || r >= rows) return QN_ERR_SHAPE;
    if (!src || !dst) return QN_ERR_INVALID_ARG;
    const int64_t nb = k / QN_QK_K, g = r / QN_Q4KX8_ROWS;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *in = (const uint8_t *)src + (size_t)(g * nb + b) * QN_Q4KX8_BLOCK_BYTES;
        uint8_t *blk = (uint8_t *)dst + (size_t)b * sizeof(qn_block_q4_k);
        for (int j = 0; j < DWORDS; j++) memcpy(blk + 4 * j, in + 32 * j + 4 * (r % QN_Q4KX8_ROWS), 4);
    }
    return QN_OK;
}
