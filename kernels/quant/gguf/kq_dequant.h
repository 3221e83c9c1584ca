/* kq_dequant.h — launchers of the GGUF -> fp16 dequant kernels (kq_dequant.cu), for quant_cuda.cu.
 * Owns nothing: the caller has checked format, shape (qn_quant_check_shape), alignment and sm_80.
 * w: N*K weights of fmt as one run of blocks (rows back to back, K a multiple of the block), 16-byte
 * aligned, nothing past its last block is read; out: N*K fp16, 16-byte aligned. stream: cudaStream_t. */
#ifndef QN_KQ_DEQUANT_H
#define QN_KQ_DEQUANT_H

#include <stdint.h>

#include "kernels/quant/qformat.h"
#include "quern.h"

/* The fast path of qn_quant_dequant_cuda: a warp per 2048 weights, staged, 16-byte stores. n_sm sizes
 * the persistent grid. */
qn_status kq_dequant_fast(qn_qformat fmt, const void *w, int64_t n_weights, void *out, int n_sm, void *stream);

/* Its simpler twin (the test reference): a thread per 32 weights, the same decode. */
qn_status kq_dequant_ref(qn_qformat fmt, const void *w, int64_t n_weights, void *out, void *stream);

#endif /* QN_KQ_DEQUANT_H */
