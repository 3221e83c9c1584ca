/* nf4_quant.h — the bitsandbytes 4-bit NF4 quantizer (docs/formats.md §5: quantize_4bit with blocksize 64,
 * optional double quant of the absmax with the signed 8-bit dynamic map, blocks of 256, offset = mean) that
 * the checkpoint writer (model/hf_quantize.h) stores in transformers' Linear4bit layout. Pure math on caller
 * buffers; the result owns its arrays. Decoding is nf4_format.h's (kernels/quant/nf4). */
#ifndef QN_NF4_QUANT_H
#define QN_NF4_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "quern.h"

#define QN_NF4_BLOCKSIZE 64
#define QN_NF4_NESTED_BLOCKSIZE 256

typedef struct qn_nf4_result {
    int64_t numel;            /* N·K of the flattened weight */
    int32_t blocksize;        /* 64 */
    int64_t n_blocks;         /* ceil(numel / blocksize) */
    uint8_t *codes;           /* [ceil(numel / 2)]: even element in the high nibble */
    float *absmax;            /* [n_blocks] plain absmax (kept also with double quant: the input of it) */
    bool nested;              /* double quant */
    uint8_t *absmax_q;        /* [n_blocks] nested codes, or NULL */
    int64_t n_nested;         /* ceil(n_blocks / 256) */
    float *nested_absmax;     /* [n_nested] */
    float nested_offset;      /* mean of the absmax */
    float nested_map[256];    /* the signed dynamic map */
} qn_nf4_result;

/* w: [numel] f32 (the fp16/bf16 weight as floats). QN_ERR_NOMEM / QN_ERR_INVALID_ARG. */
qn_status qn_nf4_quantize(const float *w, int64_t numel, bool double_quant, qn_nf4_result *out, qn_error *err);
void qn_nf4_result_free(qn_nf4_result *r); /* NULL-safe */

/* bitsandbytes create_dynamic_map(signed=True, 7, 8) in float32 (linspace, midpoints). 214 of 256 entries are
 * bit-equal to the peer's, the rest within 2e-7 relative (torch's linspace/scalar rounding is not reproduced);
 * the map is stored in the checkpoint, so decoding does not depend on it. */
void qn_nf4_dynamic_map(float map[256]);
/* Index of the NF4 code nearest x (x in [-1, 1]; ties to the lower code, as argmin). */
uint8_t qn_nf4_nearest(float x);

#endif
