/* vexp_ref.c — plain-C twins of the vector exp forms (vexp.h): one lane at a time, every step an
 * explicit fmaf or a single rounding, in the order the vector code runs it. */
#include "kernels/ops/vexp.h"

#include <math.h>
#include <string.h>

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float qn_vexp_ref(float x, qn_vexp_form form) {
    if (form == QN_VEXP_LIBM) return expf(x);
    const float z = fmaf(x, QN_VEXP_LOG2E, QN_VEXP_SHIFTER);
    const float n = z - QN_VEXP_SHIFTER;                             /* round(x·log2e), exact */
    const float r = fmaf(-n, QN_VEXP_LN2_LO, fmaf(-n, QN_VEXP_LN2_HI, x)); /* x - n·ln2 */
    const float r2 = r * r;
    const float hi = fmaf(fmaf(QN_VEXP_C5, r, QN_VEXP_C4), r2, fmaf(QN_VEXP_C3, r, QN_VEXP_C2));
    if (form == QN_VEXP_SCALEF) {
        const float p = fmaf(hi, r2, fmaf(QN_VEXP_C1, r, 1.0f)); /* e^r */
        if (fabsf(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
        if (isnan(n)) return p;
        return ldexpf(p, (int)n); /* vscalefps: p·2^n, one rounding (also into subnormals) */
    }
    const float q = fmaf(hi, r2, QN_VEXP_C1 * r); /* e^r - 1 */
    const uint32_t e = f2u(z) << 23;              /* n in the exponent field (two's complement) */
    const float k = u2f(e + f2u(1.0f));           /* 2^n for |n| <= 126 */
    if (!(fabsf(n) > 126.0f)) return fmaf(q, k, k);
    const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
    const float s1 = u2f(g + 0x7f000000u), s2 = u2f(e - g); /* 2^n = s1·s2, each in range */
    if (fabsf(n) > 192.0f) return s1 * s1;                  /* inf or 0 */
    return fmaf(s2, q, s2) * s1;
}

void qn_silu_mul_ref(float *g, const float *u, int64_t n, qn_vexp_form form, int width) {
    const int64_t body = width > 1 ? n - n % width : n;
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        const float e = qn_vexp_ref(0.0f - x, i < body ? form : QN_VEXP_LIBM);
        g[i] = (x / (1.0f + e)) * u[i];
    }
}
