/* lutq.h — the CPU serving layout that GPTQ, AWQ and bitsandbytes NF4/FP4 weights are repacked into once,
 * at load (gptq/, awq/, nf4/ each provide a *_to_lutq repack tested against their plain dequantizer):
 *     W[r][perm[j]] = scale[r][g] · (lut[code[r][j]] − zero[r][g])      for j in group g = [gstart[g], gstart[g+1])
 * j runs over the K input columns in kernel order: act-order GPTQ is sorted by g_idx once (perm, exllama's
 * q_perm), so every group is a contiguous run of j and activations are gathered through perm. Codes are 8-bit
 * (one byte per column) or 4-bit in blocks of 16 columns per 8 bytes: byte i of block b holds column 16b + i in its
 * low nibble and column 16b + 8 + i in its high nibble, so one 8-byte load widened to 8 lanes gives columns
 * 16b..16b+7 (& 15) and 16b+8..16b+15 (>> 4) without shuffles; rows are padded to whole blocks. GPTQ/AWQ: lut = identity, zero = the integer zero point;
 * bnb: lut = quant_map, no zero, scale = the block absmax.
 * Owns nothing: the arrays live in one caller buffer carved by qn_lutq_init (sized by qn_lutq_bytes). */
#ifndef QN_LUTQ_H
#define QN_LUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How the reference dequantizer rounds each element (the peer's output dtype). The kernels do not round. */
typedef enum qn_lutq_round {
    QN_LUTQ_ROUND_NONE = 0,
    QN_LUTQ_ROUND_F16,
    QN_LUTQ_ROUND_BF16,
} qn_lutq_round;

typedef struct qn_lutq_weight {
    int64_t k, n;              /* input columns, output rows */
    int32_t code_bits;         /* 4 or 8 */
    int64_t n_groups;          /* groups per row (the same for every row) */
    const int32_t *gstart;     /* [n_groups + 1]: group g is j in [gstart[g], gstart[g+1]); gstart[0] = 0, last = k */
    const int32_t *perm;       /* [k]: original column of kernel column j; NULL = identity */
    const uint8_t *codes;      /* [n][qn_lutq_row_bytes(k, code_bits)] */
    const float *scale;        /* [n][n_groups] */
    const float *zero;         /* [n][n_groups], or NULL when the format has no zero point */
    bool lut_identity;         /* lut[c] == c: kernels convert codes directly */
    qn_lutq_round round;
    float lut[256];            /* code -> value (first 16 entries used for 4-bit codes) */
} qn_lutq_weight;

/* --- layout --- */
/* Bytes of the buffer qn_lutq_init carves (64-byte aligned pieces). */
size_t qn_lutq_bytes(int64_t k, int64_t n, int64_t n_groups, int32_t code_bits, bool has_perm, bool has_zero);
/* Points w's arrays into buf (64-byte aligned, qn_lutq_bytes long) and sets the geometry; the caller fills
 * them through the returned writable pointers (any may be NULL when not wanted). */
qn_status qn_lutq_init(qn_lutq_weight *w, void *buf, int64_t k, int64_t n, int64_t n_groups, int32_t code_bits,
                       bool has_perm, bool has_zero, int32_t **gstart, int32_t **perm, uint8_t **codes,
                       float **scale, float **zero);

/* --- codes --- */
static inline int64_t qn_lutq_row_bytes(int64_t k, int32_t code_bits) {
    return code_bits == 8 ? k : (k + 15) / 16 * 8;
}
/* byte offset and nibble shift of 4-bit column j inside its row */
static inline int64_t qn_lutq_nib_byte(int64_t j) { return (j >> 4) * 8 + (j & 7); }
static inline int qn_lutq_nib_shift(int64_t j) { return (int)((j >> 3) & 1) * 4; }
static inline uint32_t qn_lutq_code(const qn_lutq_weight *w, int64_t r, int64_t j) {
    const uint8_t *row = w->codes + (size_t)r * (size_t)qn_lutq_row_bytes(w->k, w->code_bits);
    return w->code_bits == 8 ? row[j] : (uint32_t)(row[qn_lutq_nib_byte(j)] >> qn_lutq_nib_shift(j)) & 15u;
}
static inline void qn_lutq_set_code(uint8_t *codes, int64_t k, int32_t code_bits, int64_t r, int64_t j, uint32_t c) {
    uint8_t *row = codes + (size_t)r * (size_t)qn_lutq_row_bytes(k, code_bits);
    if (code_bits == 8) {
        row[j] = (uint8_t)c;
    } else {
        uint8_t *b = &row[qn_lutq_nib_byte(j)];
        const int sh = qn_lutq_nib_shift(j);
        *b = (uint8_t)((*b & ~(15u << sh)) | ((c & 15u) << sh));
    }
}

/* --- reference --- */
/* out[r][kk] (original column order, [n][k]) = round(scale·(lut[c] − zero)) with one fp32 product and the
 * rounding of w->round; bit-exact with the peers' dequantizers for the layouts the repacks produce. */
void qn_lutq_dequant_ref(const qn_lutq_weight *w, float *out);
/* Double-precision y[t][r] = Σ_k W[r][k]·x[t][k] (unrounded weights), for the kernel tests. */
void qn_lutq_matmul_ref(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, double *y,
                        int64_t ldy);

#ifdef __cplusplus
}
#endif
#endif
