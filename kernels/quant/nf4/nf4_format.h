/* nf4_format.h — one bitsandbytes Linear4bit weight as transformers saves it (docs/formats.md §5): the packed
 * codes, the plain or nested (double-quant) absmax, the 16-entry code table and the state from the
 * quant_state JSON. Shared by the loader, the CPU repack and the tests. Owns nothing.
 * Decoding, in the reference order: element e = n·K + k of the flattened [N][K] weight is nibble
 * (e even: byte e/2 >> 4, e odd: byte e/2 & 15); A[b] = absmax[b] (plain) or
 * nested_quant_map[absmax_u8[b]] · nested_absmax[b / nested_blocksize] + nested_offset (two fp32 roundings,
 * never fused); w = fp32(quant_map[code] · A[e / blocksize]) rounded to dtype (fp16/bf16, RN-even). */
#ifndef QN_NF4_FORMAT_H
#define QN_NF4_FORMAT_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/quant/lutq.h"
#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qn_bnb4_type { QN_BNB4_NF4 = 0, QN_BNB4_FP4 } qn_bnb4_type;

/* The bitsandbytes tables (csrc/kernels.cu nf4/fp4 LUTs); a checkpoint's own quant_map is preferred. */
extern const float QN_BNB4_NF4_MAP[16];
extern const float QN_BNB4_FP4_MAP[16];

typedef struct qn_bnb4_weight {
    qn_bnb4_type type;
    int32_t blocksize;            /* 64 by default */
    int64_t k, n;                 /* shape [N][K] of the original weight */
    qn_lutq_round dtype;          /* F16 or BF16: the original / compute dtype the reference rounds to */
    const uint8_t *codes;         /* [ceil(N·K / 2)] */
    const float *quant_map;       /* [16] (alignment as the file gives it: read with memcpy) */
    int64_t n_blocks;             /* ceil(N·K / blocksize) */
    const void *absmax;           /* plain: f32 [n_blocks]; nested: u8 [n_blocks] */
    bool nested;
    int32_t nested_blocksize;     /* 256 */
    const void *nested_absmax;    /* f32 [ceil(n_blocks / nested_blocksize)] */
    const void *nested_quant_map; /* f32 [256] */
    float nested_offset;
} qn_bnb4_weight;

/* --- checks, reference, repack --- */
qn_status qn_bnb4_check(const qn_bnb4_weight *w, char *why, size_t why_cap);
/* Block absmax A[b] exactly as bitsandbytes computes it (plain or nested). */
float qn_bnb4_absmax(const qn_bnb4_weight *w, int64_t b);
void qn_bnb4_dequant_ref(const qn_bnb4_weight *w, float *out); /* out [n][k], dtype values */
/* The repack needs K % blocksize == 0 (blocks inside rows); else QN_ERR_UNSUPPORTED. */
size_t qn_bnb4_lutq_bytes(const qn_bnb4_weight *w);
qn_status qn_bnb4_to_lutq(const qn_bnb4_weight *w, void *buf, qn_lutq_weight *out);

#ifdef __cplusplus
}
#endif
#endif
