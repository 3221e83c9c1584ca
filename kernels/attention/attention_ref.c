/* attention_ref.c — CPU paged attention (kernels/attention/attention.h). One query token at a time:
 * scores over the visible keys (q rounded to fp16 as llama.cpp's f16 K·Q does), softmax in f32,
 * probabilities rounded to fp16 (ggml's f16 V matmul does) and V summed in f32. fp16 is decoded through F16C when the build has it. */
#include "kernels/attention/attention.h"

#include <math.h>
#include <string.h>

#include "kernels/common/half.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

static inline void f16_row_to_f32(const uint16_t *src, float *dst, int n) {
    int i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
    for (; i < n; i++) dst[i] = qn_f16_to_f32(src[i]);
}

void qn_attn_paged_cpu(const qn_attn_cpu_args *a, int h_begin, int h_end) {
    const int hd = a->head_dim;
    const int group = a->n_heads / a->n_kv_heads;
    const int64_t kv_stride = (int64_t)a->n_kv_heads * hd;
    float qh[512], row[512], acc[512]; /* head_dim <= 512 (checked by the model loader) */
    for (int h = h_begin; h < h_end; h++) {
        const int kvh = h / group;
        /* q rounded through fp16 like ggml's f16 vec_dot (its vec_dot_type for f16 K) */
        for (int d = 0; d < hd; d++) qh[d] = qn_f16_to_f32(qn_f32_to_f16(a->q[(int64_t)h * hd + d]));
        float mx = -INFINITY;
        for (int32_t j = 0; j < a->n_ctx; j++) {
            const int64_t slot = (int64_t)a->block_table[j / a->block_size] * a->block_size + j % a->block_size;
            f16_row_to_f32(a->k_cache + slot * kv_stride + (int64_t)kvh * hd, row, hd);
            float s = 0.0f;
            for (int d = 0; d < hd; d++) s += qh[d] * row[d];
            s *= a->scale;
            a->scratch[j] = s;
            if (s > mx) mx = s;
        }
        double sum = 0.0;
        for (int32_t j = 0; j < a->n_ctx; j++) {
            const float e = expf(a->scratch[j] - mx);
            a->scratch[j] = e;
            sum += e;
        }
        const float inv = (float)(1.0 / sum);
        memset(acc, 0, sizeof(float) * (size_t)hd);
        for (int32_t j = 0; j < a->n_ctx; j++) {
            const int64_t slot = (int64_t)a->block_table[j / a->block_size] * a->block_size + j % a->block_size;
            f16_row_to_f32(a->v_cache + slot * kv_stride + (int64_t)kvh * hd, row, hd);
            /* probabilities rounded through fp16, as ggml's f16 V x f32 probs matmul converts them */
            const float p = qn_f16_to_f32(qn_f32_to_f16(a->scratch[j] * inv));
            for (int d = 0; d < hd; d++) acc[d] += p * row[d];
        }
        memcpy(a->out + (int64_t)h * hd, acc, sizeof(float) * (size_t)hd);
    }
}

void qn_kv_write_cpu(uint16_t *k_cache, uint16_t *v_cache, int64_t slot, const float *k, const float *v,
                     int n_kv_heads, int head_dim) {
    const int64_t n = (int64_t)n_kv_heads * head_dim;
    uint16_t *kd = k_cache + slot * n, *vd = v_cache + slot * n;
    for (int64_t i = 0; i < n; i++) {
        kd[i] = qn_f32_to_f16(k[i]);
        vd[i] = qn_f32_to_f16(v[i]);
    }
}
