/* q6kp.c — the Q6_K -> Q6_KP repack and its reference dequantizer (q6kp.h). */
#include "kernels/quant/gguf/q6kp.h"

#include <string.h>

#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/gguf_ref.h"

QN_STATIC_ASSERT(QN_Q6KP_BLOCK_BYTES % 16 == 0 && QN_Q6KP_BLOCK_BYTES >= sizeof(qn_block_q6_k), "q6_kp block");

qn_status qn_q6kp_repack(const void *src, void *dst, int64_t rows, int64_t k) {
    if (rows < 0 || k <= 0 || k % QN_QK_K != 0) return QN_ERR_SHAPE;
    if (rows > 0 && (!src || !dst)) return QN_ERR_INVALID_ARG;
    const uint8_t *s = src;
    uint8_t *d = dst;
    const int64_t nb = rows * (k / QN_QK_K);
    for (int64_t b = 0; b < nb; b++) {
        memcpy(d + b * QN_Q6KP_BLOCK_BYTES, s + b * (int64_t)sizeof(qn_block_q6_k), sizeof(qn_block_q6_k));
        memset(d + b * QN_Q6KP_BLOCK_BYTES + sizeof(qn_block_q6_k), 0, QN_Q6KP_BLOCK_BYTES - sizeof(qn_block_q6_k));
    }
    return QN_OK;
}

void qn_dequant_row_q6kp_ref(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    for (int64_t b = 0; b < n / QN_QK_K; b++) qn_dequant_row_q6_k_ref(s + b * QN_Q6KP_BLOCK_BYTES, dst + b * QN_QK_K, QN_QK_K);
}
