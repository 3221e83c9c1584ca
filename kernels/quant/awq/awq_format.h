/* awq_format.h — one AutoAWQ linear (docs/formats.md §4): views of its tensors, the GEMM interleave and the
 * GEMV layout. Shared by the loader, the CPU repack and the tests. Owns nothing.
 * GEMM ("gemm"): qweight [K][N/8] packs 8 output columns per word along N, nibble i holds column 8c + ORDER[i]
 *   with ORDER = [0,2,4,6,1,3,5,7] (so column j reads nibble R[j], R = [0,4,1,5,2,6,3,7]); qzeros [K/gs][N/8]
 *   the same; scales f16 [K/gs][N].
 * GEMV ("gemv"): qweight [N][K/8] packs along K in natural order; qzeros [N][Wz] packs 8 groups per word in
 *   natural order; scales f16 [N][8·Wz] (zero padded), Wz = calculate_zeros_width(K, gs).
 * Dequant (both): W[n][k] = fp16(scale(g, n) · (q(k, n) − z(g, n))), g = k / gs; zeros are real (no −1). */
#ifndef QN_AWQ_FORMAT_H
#define QN_AWQ_FORMAT_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/quant/gptq/gptq_format.h" /* qn_gptq_rd32 / rd16 */
#include "kernels/quant/lutq.h"
#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qn_awq_layout { QN_AWQ_GEMM = 0, QN_AWQ_GEMV } qn_awq_layout;

static const int QN_AWQ_REVERSE_ORDER[8] = {0, 4, 1, 5, 2, 6, 3, 7};

typedef struct qn_awq_weight {
    qn_awq_layout layout;
    int32_t bits;              /* 4 (the only width AutoAWQ packs) */
    int32_t group_size;        /* K % group_size == 0 */
    int64_t k, n;
    int64_t zeros_width;       /* GEMV: words per qzeros row (Wz); GEMM: N/8 */
    const void *qweight;       /* int32, see above (read with memcpy) */
    const void *qzeros;        /* int32 */
    const void *scales;        /* f16 */
} qn_awq_weight;

/* AutoAWQ's calculate_zeros_width (gemv.py): words per GEMV qzeros row; 0 for unsupported group sizes. */
int64_t qn_awq_gemv_zeros_width(int64_t k, int32_t group_size);

static inline uint32_t qn_awq_q(const qn_awq_weight *w, int64_t k, int64_t n) {
    if (w->layout == QN_AWQ_GEMM)
        return (qn_gptq_rd32(w->qweight, k * (w->n / 8) + n / 8) >> (4 * QN_AWQ_REVERSE_ORDER[n % 8])) & 15u;
    return (qn_gptq_rd32(w->qweight, n * (w->k / 8) + k / 8) >> (4 * (k % 8))) & 15u;
}
static inline uint32_t qn_awq_zero(const qn_awq_weight *w, int64_t g, int64_t n) {
    if (w->layout == QN_AWQ_GEMM)
        return (qn_gptq_rd32(w->qzeros, g * (w->n / 8) + n / 8) >> (4 * QN_AWQ_REVERSE_ORDER[n % 8])) & 15u;
    return (qn_gptq_rd32(w->qzeros, n * w->zeros_width + g / 8) >> (4 * (g % 8))) & 15u;
}
static inline uint16_t qn_awq_scale_bits(const qn_awq_weight *w, int64_t g, int64_t n) {
    return w->layout == QN_AWQ_GEMM ? qn_gptq_rd16(w->scales, g * w->n + n)
                                    : qn_gptq_rd16(w->scales, n * (8 * w->zeros_width) + g);
}

/* --- checks, reference, repack --- */
qn_status qn_awq_check(const qn_awq_weight *w, char *why, size_t why_cap);
void qn_awq_dequant_ref(const qn_awq_weight *w, float *out); /* out [n][k], fp16 values */
size_t qn_awq_lutq_bytes(const qn_awq_weight *w);
qn_status qn_awq_to_lutq(const qn_awq_weight *w, void *buf, qn_lutq_weight *out);

#ifdef __cplusplus
}
#endif
#endif
