/* ops_ref.c — portable C implementations of kernels/ops/ops.h (compiled once; simple loops that
 * the compiler vectorises; they are a small share of the forward pass next to the matmuls). */
#include "kernels/ops/ops.h"

#include <math.h>

void qn_rmsnorm_f32(const float *x, const float *w, float *y, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    if (w) {
        for (int64_t i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale;
    }
}

void qn_rope_cache_f32(float *cache, int64_t pos, int rope_dim, float base, float freq_scale,
                       const float *freq_factors) {
    const float theta_scale = powf(base, -2.0f / (float)rope_dim);
    float theta = (float)pos;
    for (int i = 0; i < rope_dim / 2; i++) {
        const float ff = freq_factors ? freq_factors[i] : 1.0f;
        const float t = freq_scale * (theta / ff);
        cache[2 * i + 0] = cosf(t);
        cache[2 * i + 1] = sinf(t);
        theta *= theta_scale;
    }
}

void qn_rope_norm_f32(float *x, const float *cache, int n_heads, int head_dim, int rope_dim) {
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < rope_dim; i += 2) {
            const float c = cache[i], s = cache[i + 1];
            const float x0 = v[i], x1 = v[i + 1];
            v[i] = fmaf(x0, c, -(x1 * s));
            v[i + 1] = fmaf(x0, s, x1 * c);
        }
    }
}

void qn_rope_neox_f32(float *x, const float *cache, int n_heads, int head_dim, int rope_dim) {
    const int half = rope_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            const float c = cache[2 * i], s = cache[2 * i + 1];
            const float x0 = v[i], x1 = v[i + half];
            v[i] = fmaf(x0, c, -(x1 * s));
            v[i + half] = fmaf(x0, s, x1 * c);
        }
    }
}

void qn_silu_mul_f32(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        g[i] = (x / (1.0f + expf(-x))) * u[i];
    }
}

void qn_add_f32(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

double qn_softmax_f32(float *x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float e = expf(x[i] - mx);
        x[i] = e;
        sum += e;
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
    return (double)mx + log(sum);
}
