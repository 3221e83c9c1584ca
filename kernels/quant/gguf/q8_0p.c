/* q8_0p.c — the Q8_0 -> Q8_0P repack and its reference dequantizer (q8_0p.h). */
#include "kernels/quant/gguf/q8_0p.h"

#include <string.h>

#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/gguf_ref.h"

enum { SUBS = QN_Q8_0P_BLOCK_ELEMS / QN_QK8_0 }; /* Q8_0 blocks per Q8_0P block: 8 */
QN_STATIC_ASSERT(QN_Q8_0P_BLOCK_BYTES == SUBS * sizeof(qn_block_q8_0) && (2 * SUBS) % 16 == 0, "q8_0p block");

qn_status qn_q8_0p_repack(const void *src, void *dst, int64_t rows, int64_t k) {
    if (rows < 0 || k <= 0 || k % QN_Q8_0P_BLOCK_ELEMS != 0) return QN_ERR_SHAPE;
    if (rows > 0 && (!src || !dst)) return QN_ERR_INVALID_ARG;
    const qn_block_q8_0 *s = src;
    uint8_t *d = dst;
    const int64_t nb = rows * (k / QN_Q8_0P_BLOCK_ELEMS);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *o = d + b * QN_Q8_0P_BLOCK_BYTES;
        for (int j = 0; j < SUBS; j++) {
            memcpy(o + 2 * j, &s[b * SUBS + j].d, 2);
            memcpy(o + 2 * SUBS + QN_QK8_0 * j, s[b * SUBS + j].qs, QN_QK8_0);
        }
    }
    return QN_OK;
}

void qn_dequant_row_q8_0p_ref(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    for (int64_t b = 0; b < n / QN_Q8_0P_BLOCK_ELEMS; b++) {
        const uint8_t *blk = s + b * QN_Q8_0P_BLOCK_BYTES;
        for (int j = 0; j < SUBS; j++) {
            qn_block_q8_0 q; /* the Q8_0 block j, through the Q8_0 reference */
            memcpy(&q.d, blk + 2 * j, 2);
            memcpy(q.qs, blk + 2 * SUBS + QN_QK8_0 * j, QN_QK8_0);
            qn_dequant_row_q8_0_ref(&q, dst + b * QN_Q8_0P_BLOCK_ELEMS + QN_QK8_0 * j, QN_QK8_0);
        }
    }
}
