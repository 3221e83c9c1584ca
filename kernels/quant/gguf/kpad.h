/* kpad.h — the padded device-only K-quant blocks (q3kp.h, q6kp.h): each block of bb bytes copied as it is to
 * the start of a slot of `slot` bytes (a multiple of 16), the rest of the slot zeroed. */
#ifndef QN_KPAD_H
#define QN_KPAD_H

#include <stdint.h>
#include <string.h>

#include "kernels/quant/gguf/gguf_blocks.h" /* QN_QK_K */
#include "quern.h"

/* rows x k weights, src [rows][k / 256] blocks of bb bytes -> dst [rows][k / 256] slots. QN_ERR_SHAPE if k is
 * not a positive multiple of 256 or rows < 0. */
static inline qn_status qn_kpad_repack(const void *src, void *dst, int64_t rows, int64_t k, size_t bb, size_t slot) {
    if (rows < 0 || k <= 0 || k % QN_QK_K != 0) return QN_ERR_SHAPE;
    if (rows > 0 && (!src || !dst)) return QN_ERR_INVALID_ARG;
    const uint8_t *s = (const uint8_t *)src;
    uint8_t *d = (uint8_t *)dst;
    const int64_t nb = rows * (k / QN_QK_K);
    for (int64_t b = 0; b < nb; b++) {
        memcpy(d + b * (int64_t)slot, s + b * (int64_t)bb, bb);
        memset(d + b * (int64_t)slot + bb, 0, slot - bb);
    }
    return QN_OK;
}

#endif
