/* attention_cpu.c — CPU paged attention (kernels/attention/attention.h), one query token at a time;
 * compiled once per ISA (QN_ISA_FN suffixes), selected through the qn_cpu_kernels table.
 * Numerics follow llama.cpp's CPU backend (non-flash path) so that logits agree bit for bit:
 *   - q and K in fp16, scores as fp32 dot products accumulated in `lanes` partial sums (lane m takes
 *     elements m, m+lanes, ...: the vector accumulator of its f16 GEMM), then reduced by halving the
 *     lanes down to 4 and adding (0+2)+(1+3) — the horizontal-add order of the x86 reductions;
 *   - softmax: exp(s - max) summed per chunk of `lanes` keys with the same reduction, chunk sums
 *     added in double; probabilities scaled by (float)(1/sum) and rounded to fp16;
 *   - V: per output dim, the same lane-wise accumulation over key positions.
 * lanes = 1 gives plain sequential sums. fp16 is decoded through F16C when the build has it. */
#include "kernels/attention/attention.h"

#include <math.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/cpu/isa.h"

#define QN_ATTN_MAX_LANES 64

static inline void f16_row_to_f32(const uint16_t *src, float *dst, int n) {
    int i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
    for (; i < n; i++) dst[i] = qn_f16_to_f32(src[i]);
}

/* Horizontal sum of lanes partial sums (lanes a power of two): halve to 4, then (0+2)+(1+3), or
 * (0+1)+(2+3) when pairwise (two horizontal adds). */
static inline float reduce_lanes(float *v, int lanes, bool pairwise) {
    if (lanes == 1) return v[0];
    if (lanes == 2) return v[0] + v[1];
    for (int n = lanes; n > 4; n /= 2)
        for (int i = 0; i < n / 2; i++) v[i] = v[i] + v[i + n / 2];
    return pairwise ? (v[0] + v[1]) + (v[2] + v[3]) : (v[0] + v[2]) + (v[1] + v[3]);
}

static inline int64_t slot_of(const qn_attn_cpu_args *a, int32_t j) {
    return (int64_t)a->block_table[j / a->block_size] * a->block_size + j % a->block_size;
}

static void attn_paged(const qn_attn_cpu_args *a, int h_begin, int h_end) {
    const int hd = a->head_dim;
    const int group = a->n_heads / a->n_kv_heads;
    const int lanes = (a->lanes >= 1 && a->lanes <= QN_ATTN_MAX_LANES) ? a->lanes : 1;
    const int sm_lanes = (a->softmax_lanes >= 1 && a->softmax_lanes <= QN_ATTN_MAX_LANES) ? a->softmax_lanes : 1;
    const bool pw = a->pairwise_tree;
    const int64_t kv_stride = (int64_t)a->n_kv_heads * hd;
    float qh[512], row[512]; /* head_dim <= 512 (checked by the model loader) */
    static _Thread_local float acc[512][QN_ATTN_MAX_LANES]; /* 128 KiB: off the stack */
    float part[QN_ATTN_MAX_LANES];
    for (int h = h_begin; h < h_end; h++) {
        const int kvh = h / group;
        for (int d = 0; d < hd; d++) qh[d] = qn_f16_to_f32(qn_f32_to_f16(a->q[(int64_t)h * hd + d]));
        /* scores */
        float mx = -INFINITY;
        for (int32_t j = 0; j < a->n_ctx; j++) {
            f16_row_to_f32(a->k_cache + slot_of(a, j) * kv_stride + (int64_t)kvh * hd, row, hd);
            for (int m = 0; m < lanes; m++) part[m] = 0.0f;
            for (int d = 0; d < hd; d++) part[d % lanes] = fmaf(qh[d], row[d], part[d % lanes]);
            const float s = reduce_lanes(part, lanes, pw) * a->scale;
            a->scratch[j] = s;
            if (s > mx) mx = s;
        }
        /* softmax: chunk sums of `lanes` keys, added in double */
        double sum = 0.0;
        for (int32_t j0 = 0; j0 < a->n_ctx; j0 += sm_lanes) {
            for (int m = 0; m < sm_lanes; m++) {
                const int32_t j = j0 + m;
                part[m] = j < a->n_ctx ? (a->scratch[j] = expf(a->scratch[j] - mx)) : 0.0f;
            }
            sum += (double)reduce_lanes(part, sm_lanes, false);
        }
        const float inv = (float)(1.0 / sum);
        /* V: lane-wise over key positions, probabilities rounded through fp16 */
        for (int d = 0; d < hd; d++)
            for (int m = 0; m < lanes; m++) acc[d][m] = 0.0f;
        for (int32_t j = 0; j < a->n_ctx; j++) {
            f16_row_to_f32(a->v_cache + slot_of(a, j) * kv_stride + (int64_t)kvh * hd, row, hd);
            const float p = qn_f16_to_f32(qn_f32_to_f16(a->scratch[j] * inv));
            const int m = j % lanes;
            for (int d = 0; d < hd; d++) acc[d][m] = fmaf(p, row[d], acc[d][m]);
        }
        for (int d = 0; d < hd; d++) a->out[(int64_t)h * hd + d] = reduce_lanes(acc[d], lanes, pw);
    }
}

void QN_ISA_FN(qn_cpu_fill_attention)(qn_cpu_kernels *k) {
    k->attn_paged = attn_paged;
    /* The accumulators of llama.cpp's CPU f16 products on the same ISA, so the partial sums and
     * their reduction are the same: with >= 2 query tokens its GEMM (one vector of 16 floats with
     * AVX-512, 8 with AVX2, per output); with one token its f16 dot product (4 such vectors: 64 or
     * 32 lanes, AVX2 finishing with two horizontal adds); the softmax sums one vector of keys at a time. */
#if defined(QN_SIMD_X86_512)
    k->attn_lanes_multi = 16, k->attn_lanes_single = 64, k->attn_single_pairwise = false, k->attn_softmax_lanes = 16;
#elif defined(QN_SIMD_X86)
    k->attn_lanes_multi = 8, k->attn_lanes_single = 32, k->attn_single_pairwise = true, k->attn_softmax_lanes = 8;
#else
    k->attn_lanes_multi = 1, k->attn_lanes_single = 1, k->attn_single_pairwise = false, k->attn_softmax_lanes = 1;
#endif
}
