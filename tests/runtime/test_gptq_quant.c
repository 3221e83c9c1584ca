/* test_gptq_quant.c — the GPTQ quantizer (model/gptq_quant.h) against a straightforward double-precision GPTQ
 * written here (column by column, every later column updated at once, no lazy batches, H⁻¹ by Cholesky →
 * inverse → upper Cholesky as AutoGPTQ does it), the act-order permutation / g_idx, the packing round trip
 * through the loader's unpacker (kernels/quant/gptq/gptq_format.h) for 2/3/4/8 bits and v1/v2, and the NF4
 * quantizer (model/nf4_quant.h) against formats.md §5 decoding (nf4_format.h) and the peer's nested map. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/quant/gptq/gptq_format.h"
#include "kernels/quant/nf4/nf4_format.h"
#include "model/gptq_quant.h"
#include "model/nf4_quant.h"
#include "model/safetensors.h"

/* a random SPD "Hessian" 2/n Σ x xᵀ with a few dominant columns (so act-order matters) */
static void make_h(qn_rng *r, int64_t k, int64_t n_tok, float *h) {
    float *x = malloc(sizeof(float) * (size_t)(k * n_tok));
    qn_rng_fill_normal(r, x, (size_t)(k * n_tok), 1.0f);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t j = 0; j < k; j++) x[t * k + j] *= (j % 7 == 3) ? 4.0f : 1.0f;
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++) {
            double s = 0;
            for (int64_t t = 0; t < n_tok; t++) s += (double)x[t * k + i] * x[t * k + j];
            h[i * k + j] = (float)(2.0 * s / (double)n_tok);
        }
    free(x);
}

/* ---------------------------------------------------------------- reference (double) */

static void ref_chol_lower(double *a, int64_t k) { /* in place, lower */
    for (int64_t j = 0; j < k; j++) {
        double s = a[j * k + j];
        for (int64_t l = 0; l < j; l++) s -= a[j * k + l] * a[j * k + l];
        a[j * k + j] = sqrt(s);
        for (int64_t i = j + 1; i < k; i++) {
            double t = a[i * k + j];
            for (int64_t l = 0; l < j; l++) t -= a[i * k + l] * a[j * k + l];
            a[i * k + j] = t / a[j * k + j];
        }
        for (int64_t i = 0; i < j; i++) a[i * k + j] = 0;
    }
}

/* U upper with H⁻¹ = UᵀU: L = chol(H); H⁻¹ = L⁻ᵀL⁻¹; U = chol_upper(H⁻¹) = chol_lower(H⁻¹)ᵀ */
static void ref_hinv_upper(const double *h, int64_t k, double *u) {
    double *l = malloc(sizeof(double) * (size_t)(k * k)), *li = calloc((size_t)(k * k), sizeof(double));
    memcpy(l, h, sizeof(double) * (size_t)(k * k));
    ref_chol_lower(l, k);
    for (int64_t j = 0; j < k; j++) { /* li = L⁻¹ */
        li[j * k + j] = 1.0 / l[j * k + j];
        for (int64_t i = j + 1; i < k; i++) {
            double s = 0;
            for (int64_t m = j; m < i; m++) s += l[i * k + m] * li[m * k + j];
            li[i * k + j] = -s / l[i * k + i];
        }
    }
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++) {
            double s = 0;
            for (int64_t m = 0; m < k; m++) s += li[m * k + i] * li[m * k + j];
            u[i * k + j] = s;
        }
    ref_chol_lower(u, k);
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < i; j++) u[j * k + i] = u[i * k + j], u[i * k + j] = 0;
    free(l), free(li);
}

static void ref_params(const double *x, int64_t len, int bits, bool sym, float *scale, int *zero) {
    const int maxq = (1 << bits) - 1;
    float xmin = 0, xmax = 0;
    for (int64_t i = 0; i < len; i++) xmin = fminf(xmin, (float)x[i]), xmax = fmaxf(xmax, (float)x[i]);
    if (sym) {
        xmax = fmaxf(-xmin, xmax);
        if (xmin < 0) xmin = -xmax;
    }
    if (xmin == 0 && xmax == 0) xmin = -1, xmax = 1;
    float s = (xmax - xmin) / (float)maxq;
    int z = sym ? (maxq + 1) / 2 : (int)nearbyintf(-xmin / s);
    if (!sym && z == 0) z = 1, s = xmax / (float)(maxq - 1);
    *scale = qn_f16_to_f32(qn_f32_to_f16(s)), *zero = z;
}

/* column-by-column GPTQ; gs must be a multiple of the lazy block (or -1) for the codes to agree exactly */
static void ref_gptq(const float *w, int64_t n, int64_t k, const float *hf, int bits, int64_t gs, bool sym, bool act,
                     bool stat, double damp, uint8_t *q_out, double *werr) {
    double *h = malloc(sizeof(double) * (size_t)(k * k)), *u = malloc(sizeof(double) * (size_t)(k * k));
    double *wd = malloc(sizeof(double) * (size_t)(n * k));
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)k);
    for (int64_t i = 0; i < k; i++) perm[i] = i;
    if (act) /* insertion sort by descending diagonal, stable */
        for (int64_t i = 1; i < k; i++)
            for (int64_t j = i; j > 0 && hf[perm[j] * k + perm[j]] > hf[perm[j - 1] * k + perm[j - 1]]; j--) {
                const int64_t t = perm[j];
                perm[j] = perm[j - 1], perm[j - 1] = t;
            }
    double mean = 0;
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++) h[i * k + j] = hf[perm[i] * k + perm[j]];
    for (int64_t i = 0; i < k; i++) mean += h[i * k + i] / (double)k;
    for (int64_t i = 0; i < k; i++) h[i * k + i] += damp * mean;
    ref_hinv_upper(h, k, u);
    const int maxq = (1 << bits) - 1;
    if (gs < 0) gs = k;
    double *col = malloc(sizeof(double) * (size_t)n);
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < k; j++) wd[r * k + j] = w[r * k + perm[j]];
    *werr = 0;
    double *orig = malloc(sizeof(double) * (size_t)k);
    for (int64_t r = 0; r < n; r++) {
        double *wr = wd + r * k;
        float s = 0;
        int z = 0;
        for (int64_t j = 0; j < k; j++) orig[j] = w[r * k + j];
        for (int64_t i = 0; i < k; i++) {
            if (stat) /* static groups: the group of the original column, fitted on the original row */
                ref_params(orig + perm[i] / gs * gs, perm[i] / gs * gs + gs < k ? gs : k - perm[i] / gs * gs, bits,
                           sym, &s, &z);
            else if (i % gs == 0) ref_params(wr + i, i + gs < k ? gs : k - i, bits, sym, &s, &z);
            double qv = nearbyint((double)(float)((float)wr[i] / s)) + z;
            qv = qv < 0 ? 0 : qv > maxq ? maxq : qv;
            q_out[r * k + perm[i]] = (uint8_t)qv;
            const double deq = (double)s * (qv - z), e = (wr[i] - deq) / u[i * k + i];
            for (int64_t j = i + 1; j < k; j++) wr[j] -= e * u[i * k + j];
        }
    }
    (void)col;
    free(col), free(h), free(u), free(wd), free(perm), free(orig);
}

/* tr((W − Q) H (W − Q)ᵀ): the proxy loss GPTQ minimizes */
static double hloss(const float *w, const float *q, int64_t n, int64_t k, const float *h) {
    double tot = 0;
    double *d = malloc(sizeof(double) * (size_t)k);
    for (int64_t r = 0; r < n; r++) {
        for (int64_t j = 0; j < k; j++) d[j] = (double)w[r * k + j] - q[r * k + j];
        for (int64_t i = 0; i < k; i++) {
            double s = 0;
            for (int64_t j = 0; j < k; j++) s += h[i * k + j] * d[j];
            tot += d[i] * s;
        }
    }
    free(d);
    return tot;
}

/* ---------------------------------------------------------------- tests */

/* k = 96 (whole blocks of four columns and rows) and 101, 203 (the ragged ends); the AVX2 loops (where this CPU
 * has AVX2) give the same bits as the scalar ones, and both match the double reference */
static void test_hinv_upper(void **state) {
    (void)state;
    static const int64_t ks[] = {96, 101, 203};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        const int64_t k = ks[t];
        qn_rng r;
        qn_rng_seed(&r, 11 + (uint64_t)k);
        float *hf = malloc(sizeof(float) * k * k);
        double *h = malloc(sizeof(double) * k * k), *h2 = malloc(sizeof(double) * k * k);
        double *u = malloc(sizeof(double) * k * k), *us = malloc(sizeof(double) * k * k);
        double *ur = malloc(sizeof(double) * k * k);
        make_h(&r, k, 300, hf);
        for (int64_t i = 0; i < k * k; i++) h[i] = h2[i] = hf[i];
        ref_hinv_upper(h, k, ur);
        for (int64_t i = 0; i < k * k; i++) u[i] = us[i] = NAN; /* poison */
        assert_int_equal(qn_gptq_hinv_upper(h, k, u, NULL), QN_OK);
        assert_int_equal(qn_gptq_hinv_upper_isa(h2, k, us, NULL, true), QN_OK);
        double md = 0, mx = 0;
        for (int64_t i = 0; i < k * k; i++) md = fmax(md, fabs(u[i] - ur[i])), mx = fmax(mx, fabs(ur[i]));
        printf("hinv_upper k %lld: max |U - U_ref| = %.3g (max |U| %.3g)\n", (long long)k, md, mx);
        assert_true(md <= 1e-9 * mx);
        assert_memory_equal(u, us, sizeof(double) * (size_t)(k * k));
        assert_memory_equal(h, h2, sizeof(double) * (size_t)(k * k));
        free(hf), free(h), free(h2), free(u), free(us), free(ur);
    }
}

static void check_gptq(int bits, int gs, bool sym, bool act, bool stat) {
    qn_rng r;
    qn_rng_seed(&r, 1000 + bits * 10 + (gs > 0) + 2 * sym + 4 * act + 8 * stat);
    const int64_t n = 32, k = 384;
    float *w = malloc(sizeof(float) * n * k), *h = malloc(sizeof(float) * k * k);
    float *deq = malloc(sizeof(float) * n * k), *deq_ref = malloc(sizeof(float) * n * k);
    uint8_t *qref = malloc((size_t)(n * k));
    qn_rng_fill_normal(&r, w, (size_t)(n * k), 0.05f);
    make_h(&r, k, 800, h);
    qn_gptq_params p = qn_gptq_params_default();
    p.bits = bits, p.group_size = gs, p.sym = sym, p.act_order = act, p.static_groups = stat;
    qn_gptq_result res;
    qn_error err = {0};
    assert_int_equal(qn_gptq_quantize(w, n, k, h, &p, NULL, &res, &err), QN_OK);
    { /* the scalar loops: the same codes, scales and zeros bit for bit */
        qn_gptq_params ps = p;
        ps.scalar = true;
        qn_gptq_result rs;
        assert_int_equal(qn_gptq_quantize(w, n, k, h, &ps, NULL, &rs, &err), QN_OK);
        const int64_t G = rs.n_groups;
        assert_int_equal(G, res.n_groups);
        assert_memory_equal(rs.q, res.q, (size_t)(n * k));
        assert_memory_equal(rs.scales, res.scales, sizeof(uint16_t) * (size_t)(G * n));
        assert_memory_equal(rs.zeros, res.zeros, sizeof(int32_t) * (size_t)(G * n));
        qn_gptq_result_free(&rs);
    }
    double werr;
    ref_gptq(w, n, k, h, bits, gs, sym, act, stat, p.damp, qref, &werr);
    int64_t same = 0;
    for (int64_t i = 0; i < n * k; i++) same += res.q[i] == qref[i];
    /* reference dequant with our scales (same params in both when codes agree) */
    qn_gptq_result_dequant(&res, deq);
    qn_gptq_result rr = res;
    rr.q = qref;
    qn_gptq_result_dequant(&rr, deq_ref);
    const double lq = hloss(w, deq, n, k, h), lr = hloss(w, deq_ref, n, k, h);
    /* RTN for contrast */
    qn_gptq_result rtn;
    assert_int_equal(qn_gptq_quantize(w, n, k, NULL, &p, NULL, &rtn, &err), QN_OK);
    float *deq_rtn = malloc(sizeof(float) * n * k);
    qn_gptq_result_dequant(&rtn, deq_rtn);
    const double lrtn = hloss(w, deq_rtn, n, k, h);
    printf("gptq b%d g%d %s %s%s: codes equal %.4f, loss %.5g (ref %.5g, rtn %.5g)\n", bits, gs, sym ? "sym" : "asym",
           act ? "act" : "noact", stat ? " static" : "", (double)same / (double)(n * k), lq, lr, lrtn);
    assert_true(same >= (int64_t)(0.995 * (double)(n * k))); /* float vs double: rare rounding-boundary flips */
    assert_true(fabs(lq - lr) <= 0.02 * lr);
    assert_true(lq < lrtn);
    /* g_idx: groups of gs in the order of descending diag(H) (act) or k / gs */
    const int64_t G = gs > 0 ? (k + gs - 1) / gs : 1;
    int64_t *cnt = calloc((size_t)G, sizeof(int64_t));
    for (int64_t j = 0; j < k; j++) {
        assert_true(res.g_idx[j] >= 0 && res.g_idx[j] < G);
        cnt[res.g_idx[j]]++;
        if (!act || stat) assert_int_equal(res.g_idx[j], gs > 0 ? j / gs : 0);
    }
    for (int64_t g = 0; g < G; g++) assert_int_equal(cnt[g], gs > 0 ? (g + 1 < G ? gs : k - g * gs) : k);
    if (stat) /* the grid is RTN's: scale/zero from the original weights of the original groups */
        for (int64_t i = 0; i < G * n; i++)
            assert_true(res.scales[i] == rtn.scales[i] && res.zeros[i] == rtn.zeros[i]);
    if (act && !stat)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++)
                if (res.g_idx[i] < res.g_idx[j]) assert_true(h[i * k + i] >= h[j * k + j]);
    free(cnt), free(w), free(h), free(deq), free(deq_ref), free(qref), free(deq_rtn);
    qn_gptq_result_free(&res), qn_gptq_result_free(&rtn);
}

static void test_gptq_vs_ref(void **state) {
    (void)state;
    check_gptq(4, 128, false, false, false);
    check_gptq(4, 128, true, true, false);
    check_gptq(4, -1, false, true, false);
    check_gptq(3, 128, false, false, false);
    check_gptq(8, 128, true, false, false);
    check_gptq(2, 128, false, true, false);
    check_gptq(4, 128, false, true, true);
    check_gptq(3, 128, true, true, true);
    check_gptq(4, 128, false, false, true);
}

/* --mse: every group's Σ|Q(w) − w|^2.4 is at most the min-max grid's (p = 1 is one of the candidates), and lower
 * somewhere on heavy-tailed weights */
static void test_mse_range(void **state) {
    (void)state;
    qn_rng r;
    qn_rng_seed(&r, 21);
    const int64_t n = 16, k = 256, gs = 64, G = k / gs;
    float *w = malloc(sizeof(float) * n * k), *d0 = malloc(sizeof(float) * n * k), *d1 = malloc(sizeof(float) * n * k);
    qn_rng_fill_normal(&r, w, (size_t)(n * k), 0.02f);
    for (int64_t i = 0; i < n * k; i += 97) w[i] *= 8; /* outliers, so that clipping pays */
    qn_gptq_params p = qn_gptq_params_default();
    p.group_size = (int32_t)gs;
    qn_gptq_result a, b;
    qn_error err = {0};
    assert_int_equal(qn_gptq_quantize(w, n, k, NULL, &p, NULL, &a, &err), QN_OK);
    p.mse = true;
    assert_int_equal(qn_gptq_quantize(w, n, k, NULL, &p, NULL, &b, &err), QN_OK);
    qn_gptq_result_dequant(&a, d0), qn_gptq_result_dequant(&b, d1);
    int lower = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t g = 0; g < G; g++) {
            double e0 = 0, e1 = 0;
            for (int64_t j = g * gs; j < (g + 1) * gs; j++) {
                e0 += pow(fabs((double)d0[i * k + j] - w[i * k + j]), 2.4);
                e1 += pow(fabs((double)d1[i * k + j] - w[i * k + j]), 2.4);
            }
            assert_true(e1 <= e0 * (1 + 1e-3)); /* fp16 rounding of the decoded values is outside the search */
            lower += e1 < 0.99 * e0;
        }
    printf("mse range: %d of %lld groups lower than min-max\n", lower, (long long)(n * G));
    assert_true(lower > 0);
    free(w), free(d0), free(d1);
    qn_gptq_result_free(&a), qn_gptq_result_free(&b);
}

static void test_pack_roundtrip(void **state) {
    (void)state;
    qn_rng r;
    qn_rng_seed(&r, 7);
    const int bits_list[4] = {2, 3, 4, 8};
    for (int bi = 0; bi < 4; bi++)
        for (int v2 = 0; v2 < 2; v2++) {
            const int bits = bits_list[bi], maxq = (1 << bits) - 1;
            const int64_t k = 256, n = 64, gs = 64, G = k / gs;
            qn_gptq_result res = {.k = k, .n = n, .n_groups = G};
            res.q = malloc((size_t)(n * k));
            res.scales = malloc(sizeof(uint16_t) * (size_t)(G * n));
            res.zeros = malloc(sizeof(int32_t) * (size_t)(G * n));
            res.g_idx = malloc(sizeof(int32_t) * (size_t)k);
            for (int64_t i = 0; i < n * k; i++) res.q[i] = (uint8_t)(qn_rng_u64(&r) % (uint64_t)(maxq + 1));
            for (int64_t i = 0; i < G * n; i++) {
                res.zeros[i] = (int32_t)(qn_rng_u64(&r) % (uint64_t)(maxq + 1)) + (v2 ? 0 : 1); /* v1: >= 1 */
                if (res.zeros[i] > maxq) res.zeros[i] = maxq;
                res.scales[i] = qn_f32_to_f16(qn_rng_uniform(&r, 0.001f, 0.02f));
            }
            for (int64_t j = 0; j < k; j++) res.g_idx[j] = (int32_t)((j * 5) % k / gs); /* non-monotone */
            int32_t *qw = malloc(sizeof(int32_t) * (size_t)(k * bits / 32 * n));
            int32_t *qz = malloc(sizeof(int32_t) * (size_t)(G * n * bits / 32));
            qn_gptq_pack(&res, bits, v2, qw, qz);
            const qn_gptq_weight gw = {.bits = bits, .group_size = (int32_t)gs, .k = k, .n = n, .n_groups = G,
                                       .v2 = v2, .qweight = qw, .qzeros = qz, .scales = res.scales, .g_idx = res.g_idx};
            char why[256];
            assert_int_equal(qn_gptq_check(&gw, why, sizeof why), QN_OK);
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < k; j++) assert_int_equal(qn_gptq_q(&gw, j, i), res.q[i * k + j]);
            for (int64_t g = 0; g < G; g++)
                for (int64_t i = 0; i < n; i++) assert_int_equal(qn_gptq_zero(&gw, g, i), res.zeros[g * n + i]);
            float *a = malloc(sizeof(float) * (size_t)(n * k)), *b = malloc(sizeof(float) * (size_t)(n * k));
            qn_gptq_dequant_ref(&gw, a);
            qn_gptq_result_dequant(&res, b);
            assert_memory_equal(a, b, sizeof(float) * (size_t)(n * k));
            free(a), free(b), free(qw), free(qz);
            qn_gptq_result_free(&res);
        }
}

static void test_nf4(void **state) {
    (void)state;
    qn_rng r;
    qn_rng_seed(&r, 5);
    const int64_t n = 48, k = 320, numel = n * k; /* 240 blocks: one partial nested block */
    float *w = malloc(sizeof(float) * (size_t)numel), *out = malloc(sizeof(float) * (size_t)numel);
    qn_rng_fill_normal(&r, w, (size_t)numel, 0.03f);
    for (int64_t i = 0; i < numel; i++) w[i] = qn_f16_to_f32(qn_f32_to_f16(w[i]));
    for (int64_t i = 0; i < 64; i++) w[i] = 0; /* an all-zero block */
    for (int dq = 0; dq < 2; dq++) {
        qn_nf4_result res;
        qn_error err = {0};
        assert_int_equal(qn_nf4_quantize(w, numel, dq, &res, &err), QN_OK);
        const qn_bnb4_weight bw = {.type = QN_BNB4_NF4, .blocksize = 64, .k = k, .n = n, .dtype = QN_LUTQ_ROUND_F16,
                                   .codes = res.codes, .quant_map = QN_BNB4_NF4_MAP, .n_blocks = res.n_blocks,
                                   .absmax = dq ? (const void *)res.absmax_q : res.absmax, .nested = dq,
                                   .nested_blocksize = 256, .nested_absmax = res.nested_absmax,
                                   .nested_quant_map = res.nested_map, .nested_offset = res.nested_offset};
        char why[256];
        assert_int_equal(qn_bnb4_check(&bw, why, sizeof why), QN_OK);
        qn_bnb4_dequant_ref(&bw, out);
        double se = 0, sw = 0;
        for (int64_t e = 0; e < numel; e++) {
            const uint8_t byte = res.codes[e / 2], c = (e & 1) ? byte & 15 : byte >> 4;
            const float am = res.absmax[e / 64];
            if (am > 0) { /* nearest code of x / absmax */
                const float s = w[e] * (1.0f / am);
                for (int cc = 0; cc < 16; cc++) assert_true(fabsf(s - QN_BNB4_NF4_MAP[c]) <= fabsf(s - QN_BNB4_NF4_MAP[cc]));
            } else {
                assert_int_equal(c, 7);
            }
            if (!dq) assert_true(out[e] == qn_f16_to_f32(qn_f32_to_f16(QN_BNB4_NF4_MAP[c] * am)));
            se += (double)(out[e] - w[e]) * (out[e] - w[e]), sw += (double)w[e] * w[e];
        }
        if (dq)
            for (int64_t b = 0; b < res.n_blocks; b++) /* the nested absmax stays close to the plain one */
                assert_true(fabsf(qn_bnb4_absmax(&bw, b) - res.absmax[b]) <= 0.02f * res.nested_absmax[b / 256] + 1e-7f);
        printf("nf4 %s: relative error %.4f\n", dq ? "double-quant" : "plain", sqrt(se / sw));
        assert_true(sqrt(se / sw) < 0.12);
        qn_nf4_result_free(&res);
    }
    free(w), free(out);
}

static void test_nf4_dynamic_map_peer(void **state) {
    (void)state;
    char path[4096];
    const char *fx = getenv("QN_FIXTURES");
    snprintf(path, sizeof path, "%s/quant/bnb.safetensors", fx ? fx : "tests/fixtures");
    qn_st *st = NULL;
    qn_error err = {0};
    if (qn_st_open(path, &st, &err) != QN_OK) skip();
    const qn_st_tensor *t = qn_st_find(st, "bnb.nf4.dq.f16.weight.nested_quant_map");
    assert_non_null(t);
    float map[256], peer[256];
    memcpy(peer, t->data, sizeof peer);
    qn_nf4_dynamic_map(map);
    int same = 0;
    for (int i = 0; i < 256; i++) {
        same += map[i] == peer[i];
        assert_true(fabsf(map[i] - peer[i]) <= 2e-7f * fabsf(peer[i]));
    }
    printf("dynamic map: %d/256 entries bit-equal to bitsandbytes' (the rest within 2e-7 relative)\n", same);
    qn_st_close(st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hinv_upper),   cmocka_unit_test(test_gptq_vs_ref), cmocka_unit_test(test_mse_range),
        cmocka_unit_test(test_pack_roundtrip),
        cmocka_unit_test(test_nf4),          cmocka_unit_test(test_nf4_dynamic_map_peer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
