/* gptq_format.h — one GPTQ linear as stored by AutoGPTQ / GPTQModel (docs/formats.md §3): views of its
 * tensors, the bit layout, the v1/v2 zero-point conventions and g_idx. Shared by the loader, the CPU repack,
 * the tests and (later) the CUDA kernels. Owns nothing: every pointer is a view into the checkpoint.
 *
 * Layout (int32 words, LSB first; b = bits): qweight [K·b/32][N] packs codes along K, qzeros [G][N·b/32] packs
 * zero points along N; value t of a packed run sits at bits [b·t, b·t+b) of the run's little-endian bit
 * string (for b = 3, 32 values fill 3 words and values 10 and 21 straddle words).
 * Dequant: W[n][k] = fp16(scales[g][n] · (q(k,n) − Z(g,n))), g = g_idx[k] (k / group_size when absent).
 *   v1 ("gptq"): Z = stored + 1, NOT reduced mod 2^b — AutoGPTQ's qlinear_cuda (the act-order-capable module),
 *                exllama and vLLM all add 1 to the masked field; a v1 asym zero of 0 was stored as −1 and
 *                corrupts its whole word (why v2 exists). (AutoGPTQ's older qlinear_cuda_old masks after the
 *                add for 2/4/8 bits; the two only differ on such corrupted words.)
 *   v2 ("gptq_v2"): Z = stored. */
#ifndef QN_GPTQ_FORMAT_H
#define QN_GPTQ_FORMAT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kernels/quant/lutq.h"
#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qn_gptq_weight {
    int32_t bits;              /* 2, 3, 4 or 8 */
    int32_t group_size;        /* > 0 (a config's -1 is passed as K) */
    int64_t k, n;              /* in_features (multiple of 32), out_features (multiple of 32/b·… see check) */
    int64_t n_groups;          /* rows of scales / qzeros: ceil(K / group_size) */
    bool v2;                   /* checkpoint_format "gptq_v2": stored zero is the zero itself */
    bool scales_bf16;          /* scales stored as BF16 (rare) instead of F16 */
    const void *qweight;       /* int32 [K·b/32][N] (alignment as the file gives it: read with memcpy) */
    const void *qzeros;        /* int32 [n_groups][N·b/32] */
    const void *scales;        /* f16/bf16 [n_groups][N] */
    const void *g_idx;         /* int32 [K] group of each input column, or NULL (k / group_size) */
} qn_gptq_weight;

static inline uint32_t qn_gptq_rd32(const void *base, int64_t i) {
    uint32_t v;
    memcpy(&v, (const uint8_t *)base + 4 * (size_t)i, 4);
    return v;
}
static inline uint16_t qn_gptq_rd16(const void *base, int64_t i) {
    uint16_t v;
    memcpy(&v, (const uint8_t *)base + 2 * (size_t)i, 2);
    return v;
}

/* Value t (0-based along the packed axis) of a packed run whose word w sits at base[w·stride + col]. */
static inline uint32_t qn_gptq_unpack(const void *base, int64_t stride, int64_t col, int32_t bits, int64_t t) {
    const int64_t p = (int64_t)bits * t, w = p >> 5;
    const int off = (int)(p & 31);
    uint32_t v = qn_gptq_rd32(base, w * stride + col) >> off;
    if (off + bits > 32) v |= qn_gptq_rd32(base, (w + 1) * stride + col) << (32 - off);
    return v & ((1u << bits) - 1u);
}

static inline uint32_t qn_gptq_q(const qn_gptq_weight *w, int64_t k, int64_t n) {
    return qn_gptq_unpack(w->qweight, w->n, n, w->bits, k);
}
/* The zero point Z(g, n) after the v1/v2 convention (v1: stored + 1, up to 2^b). */
static inline int32_t qn_gptq_zero(const qn_gptq_weight *w, int64_t g, int64_t n) {
    const int64_t words = w->n * w->bits / 32;
    const uint32_t z = qn_gptq_unpack((const uint8_t *)w->qzeros + 4 * (size_t)(g * words), 1, 0, w->bits, n);
    return (int32_t)z + (w->v2 ? 0 : 1);
}
static inline int32_t qn_gptq_group(const qn_gptq_weight *w, int64_t k) {
    return w->g_idx ? (int32_t)qn_gptq_rd32(w->g_idx, k) : (int32_t)(k / w->group_size);
}

/* --- checks, reference, repack --- */
/* QN_ERR_UNSUPPORTED / QN_ERR_FORMAT with a message naming the field when the geometry is not one we serve
 * (bits, K or N not multiples of 32/packing, g_idx out of range, n_groups mismatch). */
qn_status qn_gptq_check(const qn_gptq_weight *w, char *why, size_t why_cap);
/* out[n][k] = the peer's dequantized weight (fp16 values, or bf16 with bf16 scales), as floats. */
void qn_gptq_dequant_ref(const qn_gptq_weight *w, float *out);
/* True when g_idx is absent or equals k / group_size (no act-order permutation needed). */
bool qn_gptq_gidx_is_trivial(const qn_gptq_weight *w);
/* Repack into the CPU layout: codes sorted by g_idx (stable), perm set when act-order. buf: qn_gptq_lutq_bytes. */
size_t qn_gptq_lutq_bytes(const qn_gptq_weight *w);
qn_status qn_gptq_to_lutq(const qn_gptq_weight *w, void *buf, qn_lutq_weight *out);

#ifdef __cplusplus
}
#endif
#endif
