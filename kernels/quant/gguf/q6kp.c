/* q6kp.c — the Q6_K -> Q6_KP repack and its reference dequantizer (q6kp.h). */
#include "kernels/quant/gguf/q6kp.h"

#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/gguf_ref.h"
#include "kernels/quant/gguf/kpad.h"

QN_STATIC_ASSERT(QN_Q6KP_BLOCK_BYTES % 16 == 0 && QN_Q6KP_BLOCK_BYTES >= sizeof(qn_block_q6_k), "q6_kp block");

qn_status qn_q6kp_repack(const void *src, void *dst, int64_t rows, int64_t k) {
    return qn_kpad_repack(src, dst, rows, k, sizeof(qn_block_q6_k), QN_Q6KP_BLOCK_BYTES);
}

void qn_dequant_row_q6kp_ref(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    for (int64_t b = 0; b < n / QN_QK_K; b++) qn_dequant_row_q6_k_ref(s + b * QN_Q6KP_BLOCK_BYTES, dst + b * QN_QK_K, QN_QK_K);
}
