/* attention_cpu.c — CPU paged attention (kernels/attention/attention.h), one query token at a time;
 * compiled once per ISA (QN_ISA_FN suffixes), selected through the qn_cpu_kernels table.
 * Numerics follow llama.cpp's CPU backend (non-flash path) so that logits agree bit for bit:
 *   - q and K in fp16, scores as fp32 dot products accumulated in `lanes` partial sums (lane m takes
 *     elements m, m+lanes, ...: the vector accumulators of its f16 products), then reduced by
 *     halving the lanes down to 4 and adding (0+2)+(1+3) — or (0+1)+(2+3), two horizontal adds;
 *   - softmax: exp(s - max) summed per chunk of `softmax_lanes` keys with the same reduction, chunk
 *     sums added in double; probabilities scaled by (float)(1/sum) and rounded to fp16;
 *   - V: per output dim, the same lane-wise accumulation over key positions.
 * The lane loops have compile-time widths so the compiler turns them into vector FMAs; heads that
 * share a KV head (GQA) decode each K/V row from fp16 once. */
#include "kernels/attention/attention.h"

#include <math.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/cpu/isa.h"

#define QN_ATTN_MAX_LANES 64
#define QN_ATTN_MAX_HD 256   /* model.c refuses larger heads */
#define QN_ATTN_MAX_GROUP 8  /* larger GQA groups are processed 8 heads at a time */

static inline void f16_row_to_f32(const uint16_t *src, float *dst, int n) {
    int i = 0;
#if defined(QN_SIMD_X86)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
    for (; i < n; i++) dst[i] = qn_f16_to_f32(src[i]);
}

/* Horizontal sum of lanes partial sums (lanes a power of two): halve to 4, then (0+2)+(1+3), or
 * (0+1)+(2+3) when pairwise. Destroys v. */
static inline float reduce_lanes(float *v, int lanes, bool pairwise) {
    if (lanes == 1) return v[0];
    if (lanes == 2) return v[0] + v[1];
    for (int n = lanes; n > 4; n /= 2)
        for (int i = 0; i < n / 2; i++) v[i] = v[i] + v[i + n / 2];
    return pairwise ? (v[0] + v[1]) + (v[2] + v[3]) : (v[0] + v[2]) + (v[1] + v[3]);
}

/* part[m] = Σ_{d ≡ m (mod L)} q[d]·k[d] in order of d, for a compile-time L dividing hd. */
#define QN_DEF_DOT_LANES(L)                                                                   \
    static inline void dot_lanes_##L(const float *q, const float *k, int hd, float *part) {   \
        float p[L];                                                                           \
        for (int m = 0; m < L; m++) p[m] = 0.0f;                                              \
        for (int d0 = 0; d0 < hd; d0 += L)                                                    \
            for (int m = 0; m < L; m++) p[m] = fmaf(q[d0 + m], k[d0 + m], p[m]);              \
        memcpy(part, p, sizeof p);                                                            \
    }
QN_DEF_DOT_LANES(8)
QN_DEF_DOT_LANES(16)
QN_DEF_DOT_LANES(32)
QN_DEF_DOT_LANES(64)

static inline void dot_lanes(const float *q, const float *k, int hd, int lanes, float *part) {
    if (hd % lanes == 0) {
        switch (lanes) {
        case 8: dot_lanes_8(q, k, hd, part); return;
        case 16: dot_lanes_16(q, k, hd, part); return;
        case 32: dot_lanes_32(q, k, hd, part); return;
        case 64: dot_lanes_64(q, k, hd, part); return;
        default: break;
        }
    }
    for (int m = 0; m < lanes; m++) part[m] = 0.0f;
    for (int d = 0; d < hd; d++) part[d % lanes] = fmaf(q[d], k[d], part[d % lanes]);
}

static inline int64_t slot_of(const qn_attn_cpu_args *a, int32_t j) {
    return (int64_t)a->block_table[j / a->block_size] * a->block_size + j % a->block_size;
}

/* Heads [h0, h1) all read KV head kvh (h1 - h0 <= QN_ATTN_MAX_GROUP). */
static void attn_group(const qn_attn_cpu_args *a, int kvh, int h0, int h1) {
    const int hd = a->head_dim, ng = h1 - h0;
    const int lanes = (a->lanes >= 1 && a->lanes <= QN_ATTN_MAX_LANES) ? a->lanes : 1;
    const int sm_lanes = (a->softmax_lanes >= 1 && a->softmax_lanes <= QN_ATTN_MAX_LANES) ? a->softmax_lanes : 1;
    const bool pw = a->pairwise_tree;
    const int64_t kv_stride = (int64_t)a->n_kv_heads * hd;
    const int32_t n_ctx = a->n_ctx;
    float qh[QN_ATTN_MAX_GROUP][QN_ATTN_MAX_HD], row[QN_ATTN_MAX_HD], part[QN_ATTN_MAX_LANES];
    static _Thread_local float acc[QN_ATTN_MAX_GROUP][QN_ATTN_MAX_LANES * QN_ATTN_MAX_HD]; /* [g][lane][d] */
    float *scores = a->scratch; /* [ng][n_ctx] */
    float mx[QN_ATTN_MAX_GROUP];
    for (int g = 0; g < ng; g++) {
        for (int d = 0; d < hd; d++) qh[g][d] = qn_f16_to_f32(qn_f32_to_f16(a->q[(int64_t)(h0 + g) * hd + d]));
        mx[g] = -INFINITY;
    }
    /* scores */
    for (int32_t j = 0; j < n_ctx; j++) {
        f16_row_to_f32(a->k_cache + slot_of(a, j) * kv_stride + (int64_t)kvh * hd, row, hd);
        for (int g = 0; g < ng; g++) {
            dot_lanes(qh[g], row, hd, lanes, part);
            const float s = reduce_lanes(part, lanes, pw) * a->scale;
            scores[(int64_t)g * n_ctx + j] = s;
            if (s > mx[g]) mx[g] = s;
        }
    }
    /* softmax: chunk sums of sm_lanes keys, added in double; then probabilities rounded to fp16 */
    for (int g = 0; g < ng; g++) {
        float *sc = scores + (int64_t)g * n_ctx;
        double sum = 0.0;
        for (int32_t j0 = 0; j0 < n_ctx; j0 += sm_lanes) {
            for (int m = 0; m < sm_lanes; m++) {
                const int32_t j = j0 + m;
                part[m] = j < n_ctx ? (sc[j] = expf(sc[j] - mx[g])) : 0.0f;
            }
            sum += (double)reduce_lanes(part, sm_lanes, false);
        }
        const float inv = (float)(1.0 / sum);
        for (int32_t j = 0; j < n_ctx; j++) sc[j] = qn_f16_to_f32(qn_f32_to_f16(sc[j] * inv));
        memset(acc[g], 0, sizeof(float) * (size_t)lanes * (size_t)hd);
    }
    /* V: key j goes to lane j % lanes; each lane row accumulates over d in vector FMAs */
    for (int32_t j = 0; j < n_ctx; j++) {
        f16_row_to_f32(a->v_cache + slot_of(a, j) * kv_stride + (int64_t)kvh * hd, row, hd);
        const int m = j % lanes;
        for (int g = 0; g < ng; g++) {
            const float p = scores[(int64_t)g * n_ctx + j];
            float *ac = acc[g] + (int64_t)m * hd;
            for (int d = 0; d < hd; d++) ac[d] = fmaf(p, row[d], ac[d]);
        }
    }
    for (int g = 0; g < ng; g++)
        for (int d = 0; d < hd; d++) {
            for (int m = 0; m < lanes; m++) part[m] = acc[g][(int64_t)m * hd + d];
            a->out[(int64_t)(h0 + g) * hd + d] = reduce_lanes(part, lanes, pw);
        }
}

/* scratch must hold (heads per KV head) * n_ctx floats. */
static void attn_paged(const qn_attn_cpu_args *a, int h_begin, int h_end) {
    const int group = a->n_heads / a->n_kv_heads;
    for (int h = h_begin; h < h_end;) {
        const int kvh = h / group;
        int h1 = (kvh + 1) * group;
        if (h1 > h_end) h1 = h_end;
        if (h1 - h > QN_ATTN_MAX_GROUP) h1 = h + QN_ATTN_MAX_GROUP;
        attn_group(a, kvh, h, h1);
        h = h1;
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
