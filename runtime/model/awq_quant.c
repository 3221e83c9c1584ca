/* awq_quant.c — AWQ scale / clip search and the AutoAWQ GEMM packing (model/awq_quant.h). */
#include "model/awq_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "kernels/common/half.h"
#include "kernels/cpu/cpu_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

qn_awq_params qn_awq_params_default(void) {
    return (qn_awq_params){.group_size = 128, .n_grid = 20, .clip = true, .clip_grid = 20, .max_shrink = 0.5f};
}

void qn_awq_result_free(qn_awq_result *r) {
    if (!r) return;
    free(r->q), free(r->scales), free(r->zeros);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------ one group of one row */

static float f16_round(float x) { return qn_f16_to_f32(qn_f32_to_f16(x)); }

/* AutoAWQ pseudo_quantize_tensor (zero_point, 4 bits) on w[0..len): fp16 scale and integer zero */
static void fit_group(const float *w, int64_t len, float *scale, int32_t *zero) {
    float mn = w[0], mx = w[0];
    for (int64_t i = 1; i < len; i++) mn = w[i] < mn ? w[i] : mn, mx = w[i] > mx ? w[i] : mx;
    float s = mx - mn;
    s = f16_round((s < 1e-5f ? 1e-5f : s) / 15.0f);
    int32_t z = (int32_t)-nearbyintf(mn / s);
    *scale = s, *zero = z < 0 ? 0 : z > 15 ? 15 : z;
}

static inline int32_t code(float w, float s, int32_t z) {
    const float q = nearbyintf(w / s) + (float)z;
    return q < 0 ? 0 : q > 15 ? 15 : (int32_t)q;
}

/* out[i] = fp16(s·(q − z)) for the group w[0..len) */
static void fake_group(const float *w, int64_t len, float *out) {
    float s;
    int32_t z;
    fit_group(w, len, &s, &z);
    for (int64_t i = 0; i < len; i++) out[i] = f16_round(s * (float)(code(w[i], s, z) - z));
}

#if defined(__x86_64__)
/* fake_group bit for bit, 8 lanes at a time (len % 8 == 0): min/max in any order give the same range, and the
 * division, round-to-nearest-even, clamp, multiply and F16C's round-to-nearest-even conversion are the scalar
 * code's IEEE operations one lane each. */
__attribute__((target("avx2,f16c"))) static void fake_group_avx2(const float *w, int64_t len, float *out) {
    __m256 mn = _mm256_loadu_ps(w), mx = mn;
    for (int64_t i = 8; i < len; i += 8) {
        const __m256 v = _mm256_loadu_ps(w + i);
        mn = _mm256_min_ps(mn, v), mx = _mm256_max_ps(mx, v);
    }
    float a[8], b[8];
    _mm256_storeu_ps(a, mn), _mm256_storeu_ps(b, mx);
    float lo = a[0], hi = b[0];
    for (int i = 1; i < 8; i++) lo = a[i] < lo ? a[i] : lo, hi = b[i] > hi ? b[i] : hi;
    float s = hi - lo;
    s = f16_round((s < 1e-5f ? 1e-5f : s) / 15.0f);
    int32_t z = (int32_t)-nearbyintf(lo / s);
    z = z < 0 ? 0 : z > 15 ? 15 : z;
    const __m256 sv = _mm256_set1_ps(s), zv = _mm256_set1_ps((float)z), q15 = _mm256_set1_ps(15.0f);
    for (int64_t i = 0; i < len; i += 8) {
        __m256 q = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(w + i), sv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(q, zv), _mm256_setzero_ps()), q15);
        const __m256 d = _mm256_mul_ps(sv, _mm256_sub_ps(q, zv));
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
    }
}
#endif

static bool have_avx2(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx2") && qn_cpu_has_f16c();
#else
    return false;
#endif
}

/* fake_group, on the AVX2 path when there is one (same bits) */
static void fake_group_fast(const float *w, int64_t len, float *out, bool avx2) {
#if defined(__x86_64__)
    if (avx2 && len % 8 == 0) {
        fake_group_avx2(w, len, out);
        return;
    }
#endif
    (void)avx2;
    fake_group(w, len, out);
}

void qn_awq_fake_quant(float *w, int64_t n, int64_t k, int32_t gs) {
    const bool avx2 = have_avx2();
    for (int64_t r = 0; r < n; r++)
        for (int64_t g = 0; g < k; g += gs) fake_group_fast(w + r * k + g, gs, w + r * k + g, avx2);
}

/* ------------------------------------------------------------------ quantize / pack */

qn_status qn_awq_quantize(const float *w, int64_t n, int64_t k, int32_t gs, qn_awq_result *out, qn_error *err) {
    memset(out, 0, sizeof *out);
    if (gs <= 0 || k % gs || n % 8)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "awq: shape [%lld, %lld] with group size %d (needs k %% group "
                            "size == 0 and n %% 8 == 0)", (long long)n, (long long)k, gs);
    const int64_t G = k / gs;
    out->n = n, out->k = k, out->n_groups = G;
    out->q = malloc((size_t)(n * k));
    out->scales = malloc(sizeof(uint16_t) * (size_t)(G * n));
    out->zeros = malloc((size_t)(G * n));
    if (!out->q || !out->scales || !out->zeros) {
        qn_awq_result_free(out);
        return qn_error_set(err, QN_ERR_NOMEM, "awq: out of memory");
    }
    for (int64_t r = 0; r < n; r++)
        for (int64_t g = 0; g < G; g++) {
            const float *wg = w + r * k + g * gs;
            float s;
            int32_t z;
            fit_group(wg, gs, &s, &z);
            out->scales[g * n + r] = qn_f32_to_f16(s), out->zeros[g * n + r] = (uint8_t)z;
            for (int64_t i = 0; i < gs; i++) out->q[r * k + g * gs + i] = (uint8_t)code(wg[i], s, z);
        }
    return QN_OK;
}

void qn_awq_result_dequant(const qn_awq_result *r, float *deq) {
    const int64_t gs = r->k / r->n_groups;
    for (int64_t i = 0; i < r->n; i++)
        for (int64_t j = 0; j < r->k; j++) {
            const int64_t g = j / gs;
            const float s = qn_f16_to_f32(r->scales[g * r->n + i]);
            deq[i * r->k + j] = f16_round(s * (float)((int32_t)r->q[i * r->k + j] - (int32_t)r->zeros[g * r->n + i]));
        }
}

static const int AWQ_ORDER[8] = {0, 2, 4, 6, 1, 3, 5, 7};

void qn_awq_pack_gemm(const qn_awq_result *r, int32_t *qweight, int32_t *qzeros) {
    const int64_t n = r->n, k = r->k, words = n / 8;
    for (int64_t j = 0; j < k; j++)
        for (int64_t c = 0; c < words; c++) {
            uint32_t v = 0;
            for (int i = 0; i < 8; i++) v |= (uint32_t)(r->q[(8 * c + AWQ_ORDER[i]) * k + j] & 15u) << (4 * i);
            qweight[j * words + c] = (int32_t)v;
        }
    for (int64_t g = 0; g < r->n_groups; g++)
        for (int64_t c = 0; c < words; c++) {
            uint32_t v = 0;
            for (int i = 0; i < 8; i++) v |= (uint32_t)(r->zeros[g * n + 8 * c + AWQ_ORDER[i]] & 15u) << (4 * i);
            qzeros[g * words + c] = (int32_t)v;
        }
}

/* ------------------------------------------------------------------ scale search */

qn_status qn_awq_search_scale(qn_calib_backend *be, const float *const *w, const int64_t *n, int n_lin, int64_t k,
                              const float *xmean, const float *h, const qn_awq_params *p, float *s_out,
                              double *err_best, double *err_rtn, float *alpha_out, qn_error *err) {
    int64_t nmax = 0;
    for (int i = 0; i < n_lin; i++) nmax = n[i] > nmax ? n[i] : nmax;
    qn_calib_backend *own = NULL;
    qn_status st;
    if (!be && (st = qn_calib_backend_create(QN_CALIB_DEVICE_CPU, NULL, &own, err)) != QN_OK) return st;
    if (!be) be = own;
    /* the error of a candidate Ŵ is Σ_r d_r·H·d_rᵀ with d = W − Ŵ: H goes to the backend once for the search */
    if ((st = qn_calib_backend_load(be, QN_CALIB_SLOT_H, h, k, k, err)) != QN_OK) {
        qn_calib_backend_destroy(own);
        return st;
    }
    float *s = malloc(sizeof(float) * (size_t)k), *d = malloc(sizeof(float) * (size_t)(nmax * k));
    if (!s || !d) {
        free(s), free(d), qn_calib_backend_destroy(own);
        return qn_error_set(err, QN_ERR_NOMEM, "awq: out of memory (scale search, k %lld)", (long long)k);
    }
    double best = INFINITY;
    float best_alpha = 0;
    const int32_t gs = p->group_size;
    for (int32_t gi = 0; gi < p->n_grid; gi++) {
        const float alpha = (float)gi / (float)p->n_grid;
        float smax = 0, smin = INFINITY;
        for (int64_t j = 0; j < k; j++) {
            float v = gi == 0 ? 1.0f : powf(xmean[j], alpha);
            v = v < 1e-4f ? 1e-4f : v;
            s[j] = v, smax = v > smax ? v : smax, smin = v < smin ? v : smin;
        }
        const float norm = sqrtf(smax * smin);
        for (int64_t j = 0; j < k; j++) s[j] /= norm;
        double e = 0;
        for (int i = 0; i < n_lin; i++) {
            for (int64_t r = 0; r < n[i]; r++)
                for (int64_t j = 0; j < k; j++) d[r * k + j] = w[i][r * k + j] * s[j];
            qn_awq_fake_quant(d, n[i], k, gs);
            for (int64_t r = 0; r < n[i]; r++)
                for (int64_t j = 0; j < k; j++) d[r * k + j] = w[i][r * k + j] - d[r * k + j] / s[j];
            double ei = 0;
            if ((st = qn_calib_backend_quad(be, QN_CALIB_SLOT_H, d, n[i], &ei, err)) != QN_OK) goto done;
            e += ei;
        }
        if (gi == 0 && err_rtn) *err_rtn = e;
        if (e < best) {
            best = e, best_alpha = alpha;
            memcpy(s_out, s, sizeof(float) * (size_t)k);
        }
    }
    if (err_best) *err_best = best;
    if (alpha_out) *alpha_out = best_alpha;
done:
    free(s), free(d), qn_calib_backend_destroy(own);
    return st;
}

/* ------------------------------------------------------------------ clip search */

typedef struct clip_job {
    float *w;
    int64_t n, k;
    const float *h;
    const qn_awq_params *p;
    bool avx2; /* eight rows in lockstep (same bits) */
    bool nomem;
} clip_job;

/* the clip m of try it, from the group's max |w| */
static float clip_at(const clip_job *j, float m0, int64_t it) {
    return m0 * (1.0f - (float)it / (float)j->p->clip_grid);
}

static float group_absmax(const float *w, int64_t gs) {
    float m0 = 0;
    for (int64_t i = 0; i < gs; i++) m0 = fabsf(w[i]) > m0 ? fabsf(w[i]) : m0;
    return m0;
}

static void clip_row(float *w, int64_t gs, float m) {
    for (int64_t i = 0; i < gs; i++) w[i] = w[i] > m ? m : w[i] < -m ? -m : w[i];
}

/* row r, group g0: the clip of lowest d·H_g·dᵀ (d = w − fake_quant(clip(w))), applied. buf [3·gs]. */
static void clip_group(const clip_job *j, int64_t r, int64_t g0, float *buf) {
    const int64_t k = j->k, gs = j->p->group_size, n_try = (int64_t)(j->p->max_shrink * (float)j->p->clip_grid);
    float *w = j->w + r * k + g0, *wc = buf, *d = buf + gs, *t = buf + 2 * gs;
    const float m0 = group_absmax(w, gs);
    double best = INFINITY;
    float best_m = m0;
    for (int64_t it = 0; it < n_try; it++) {
        const float m = clip_at(j, m0, it);
        memcpy(wc, w, sizeof(float) * (size_t)gs);
        clip_row(wc, gs, m);
        fake_group(wc, gs, wc);
        for (int64_t i = 0; i < gs; i++) d[i] = w[i] - wc[i];
        double e = 0; /* d·H_g·dᵀ */
        for (int64_t a = 0; a < gs; a++) {
            const float *hr = j->h + (g0 + a) * k + g0;
            float acc = 0;
            for (int64_t b = 0; b < gs; b++) acc += hr[b] * d[b];
            t[a] = acc;
        }
        for (int64_t a = 0; a < gs; a++) e += (double)d[a] * (double)t[a];
        if (e < best) best = e, best_m = m;
    }
    clip_row(w, gs, best_m);
}

#if defined(__x86_64__)
/* clip_group for rows r..r+7 in lockstep, bit for bit: lane i of a vector is row r + i. dt [gs][8] holds the
 * rows' d transposed, tt [gs][8] their H_g·d; every lane's sums run over b (then a) in clip_group's order, a
 * multiply then an add each, so the errors and the chosen clips are the same. buf [gs + 16·gs]. */
__attribute__((target("avx2,f16c"))) static void clip_group8_avx2(const clip_job *j, int64_t r, int64_t g0,
                                                                   float *buf) {
    const int64_t k = j->k, gs = j->p->group_size, n_try = (int64_t)(j->p->max_shrink * (float)j->p->clip_grid);
    float *wc = buf, *dt = buf + gs, *tt = buf + 9 * gs;
    float m0[8], best_m[8];
    double best[8];
    for (int i = 0; i < 8; i++) m0[i] = best_m[i] = group_absmax(j->w + (r + i) * k + g0, gs), best[i] = INFINITY;
    for (int64_t it = 0; it < n_try; it++) {
        for (int i = 0; i < 8; i++) {
            const float *w = j->w + (r + i) * k + g0;
            memcpy(wc, w, sizeof(float) * (size_t)gs);
            clip_row(wc, gs, clip_at(j, m0[i], it));
            fake_group_fast(wc, gs, wc, true);
            for (int64_t b = 0; b < gs; b++) dt[b * 8 + i] = w[b] - wc[b];
        }
        int64_t a = 0;
        for (; a + 4 <= gs; a += 4) {
            const float *h0 = j->h + (g0 + a) * k + g0, *h1 = h0 + k, *h2 = h1 + k, *h3 = h2 + k;
            __m256 t0 = _mm256_setzero_ps(), t1 = t0, t2 = t0, t3 = t0;
            for (int64_t b = 0; b < gs; b++) {
                const __m256 dv = _mm256_loadu_ps(dt + b * 8);
                t0 = _mm256_add_ps(t0, _mm256_mul_ps(_mm256_broadcast_ss(h0 + b), dv));
                t1 = _mm256_add_ps(t1, _mm256_mul_ps(_mm256_broadcast_ss(h1 + b), dv));
                t2 = _mm256_add_ps(t2, _mm256_mul_ps(_mm256_broadcast_ss(h2 + b), dv));
                t3 = _mm256_add_ps(t3, _mm256_mul_ps(_mm256_broadcast_ss(h3 + b), dv));
            }
            _mm256_storeu_ps(tt + a * 8, t0), _mm256_storeu_ps(tt + a * 8 + 8, t1);
            _mm256_storeu_ps(tt + a * 8 + 16, t2), _mm256_storeu_ps(tt + a * 8 + 24, t3);
        }
        for (; a < gs; a++) {
            const float *h0 = j->h + (g0 + a) * k + g0;
            __m256 t0 = _mm256_setzero_ps();
            for (int64_t b = 0; b < gs; b++)
                t0 = _mm256_add_ps(t0, _mm256_mul_ps(_mm256_broadcast_ss(h0 + b), _mm256_loadu_ps(dt + b * 8)));
            _mm256_storeu_ps(tt + a * 8, t0);
        }
        __m256d e0 = _mm256_setzero_pd(), e1 = e0;
        for (a = 0; a < gs; a++) {
            const __m256 dv = _mm256_loadu_ps(dt + a * 8), tv = _mm256_loadu_ps(tt + a * 8);
            e0 = _mm256_add_pd(e0, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(dv)),
                                                 _mm256_cvtps_pd(_mm256_castps256_ps128(tv))));
            e1 = _mm256_add_pd(e1, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(dv, 1)),
                                                 _mm256_cvtps_pd(_mm256_extractf128_ps(tv, 1))));
        }
        double e[8];
        _mm256_storeu_pd(e, e0), _mm256_storeu_pd(e + 4, e1);
        for (int i = 0; i < 8; i++)
            if (e[i] < best[i]) best[i] = e[i], best_m[i] = clip_at(j, m0[i], it);
    }
    for (int i = 0; i < 8; i++) clip_row(j->w + (r + i) * k + g0, gs, best_m[i]);
}
#endif

static void clip_fn(void *arg, int ith, int nth) {
    clip_job *j = arg;
    const int64_t k = j->k, gs = j->p->group_size;
    long long rb, re;
    qn_split_range(j->n, ith, nth, &rb, &re);
    float *buf = malloc(sizeof(float) * (size_t)gs * 17);
    if (!buf) {
        j->nomem = true;
        return;
    }
    long long r = rb;
#if defined(__x86_64__)
    if (j->avx2)
        for (; r + 8 <= re; r += 8)
            for (int64_t g0 = 0; g0 < k; g0 += gs) clip_group8_avx2(j, r, g0, buf);
#endif
    for (; r < re; r++)
        for (int64_t g0 = 0; g0 < k; g0 += gs) clip_group(j, r, g0, buf);
    free(buf);
}

qn_status qn_awq_search_clip(float *w, int64_t n, int64_t k, const float *h, const qn_awq_params *p,
                             qn_threadpool *tp, qn_error *err) {
    if (p->group_size <= 0 || k % p->group_size)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "awq: k %lld is not a multiple of the group size %d", (long long)k,
                            p->group_size);
    clip_job j = {.w = w, .n = n, .k = k, .h = h, .p = p, .avx2 = !p->scalar && have_avx2()};
    if (tp) qn_threadpool_run(tp, clip_fn, &j);
    else clip_fn(&j, 0, 1);
    return j.nomem ? qn_error_set(err, QN_ERR_NOMEM, "awq: out of memory (clip search)") : QN_OK;
}
