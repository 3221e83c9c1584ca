/* lutq_cpu.c — y = x·Wᵀ for the repacked GPTQ / AWQ / bnb layout (lutq.h), compiled once per ISA.
 * Activations stay fp32 (no activation quantization): per group segment, d = Σ lut[c]·x and, with a zero point,
 * y += scale·(d − zero·Σx), so the only roundings are fp32 sums (tolerance: |err| ≲ 1e-5·Σ|w·x|, see
 * tests/kernels/test_quant_lutq.c). Loop nest: 4 tokens × a chunk of ≤ 1024 kernel columns (gathered through
 * perm for act-order, so every group is contiguous) × the caller's rows; each decoded code vector feeds 4 tokens.
 * AVX2 (and AVX-512 objects, which also carry AVX2) decode 8 codes per step: nibbles via a byte shuffle and
 * variable shifts, values via cvt (identity table) or two permutevar8x32 + blend (16-entry table), 8-bit via
 * cvtepu8 (+ gather for a general table). NEON and scalar builds use the scalar loop. */
#include <string.h>

#include "kernels/cpu/isa.h"
#include "kernels/quant/lutq.h"

#define QN_LUTQ_TB 4
#define QN_LUTQ_CHUNK 1024

typedef struct lutq_seg {
    int64_t g, j0, j1; /* group, kernel columns [j0, j1) inside the chunk */
} lutq_seg;

/* d[t] = Σ_{j in [j0, j1)} lut[code j]·x_t[j − j0] for t < nt; codes: the row's code bytes. */
static void seg_dot_scalar(const qn_lutq_weight *w, const uint8_t *codes, int64_t j0, int64_t j1,
                           const float *const *xr, int nt, float *d) {
    float acc[QN_LUTQ_TB] = {0};
    for (int64_t j = j0; j < j1; j++) {
        const uint32_t c = w->code_bits == 8 ? codes[j] : (uint32_t)(codes[j >> 1] >> ((j & 1) * 4)) & 15u;
        const float v = w->lut[c];
        for (int t = 0; t < nt; t++) acc[t] += v * xr[t][j - j0];
    }
    for (int t = 0; t < nt; t++) d[t] = acc[t];
}

#if defined(QN_SIMD_X86)
QN_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static void seg_dot_avx2(const qn_lutq_weight *w, const uint8_t *codes, int64_t j0, int64_t j1,
                         const float *const *xr, int nt, float *d) {
    float head[QN_LUTQ_TB] = {0};
    int64_t j = j0;
    /* 4-bit rows decode whole bytes: an odd start takes one scalar step */
    if (w->code_bits == 4 && (j & 1)) {
        const float v = w->lut[codes[j >> 1] >> 4];
        for (int t = 0; t < nt; t++) head[t] = v * xr[t][0];
        j++;
    }
    __m256 acc[QN_LUTQ_TB];
    for (int t = 0; t < QN_LUTQ_TB; t++) acc[t] = _mm256_setzero_ps();
    const __m256 lut_lo = _mm256_loadu_ps(w->lut), lut_hi = _mm256_loadu_ps(w->lut + 8);
    const __m128i dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m256i shifts = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4), m15 = _mm256_set1_epi32(15);
    const __m256i eight = _mm256_set1_epi32(8);
    for (; j + 8 <= j1; j += 8) {
        __m256i ci;
        if (w->code_bits == 4) {
            uint32_t b4;
            memcpy(&b4, codes + (j >> 1), 4);
            const __m128i bytes = _mm_shuffle_epi8(_mm_cvtsi32_si128((int)b4), dup);
            ci = _mm256_and_si256(_mm256_srlv_epi32(_mm256_cvtepu8_epi32(bytes), shifts), m15);
        } else {
            uint64_t b8;
            memcpy(&b8, codes + j, 8);
            ci = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)b8));
        }
        __m256 v;
        if (w->lut_identity)
            v = _mm256_cvtepi32_ps(ci);
        else if (w->code_bits == 4) {
            const __m256 lo = _mm256_permutevar8x32_ps(lut_lo, ci), hi = _mm256_permutevar8x32_ps(lut_hi, ci);
            const __m256 sel = _mm256_castsi256_ps(_mm256_cmpgt_epi32(eight, ci)); /* c < 8: low half */
            v = _mm256_blendv_ps(hi, lo, sel);
        } else
            v = _mm256_i32gather_ps(w->lut, ci, 4);
        const int64_t o = j - j0;
        switch (nt) { /* unrolled per token count so acc stays in registers */
        case 4: acc[3] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xr[3] + o), acc[3]); /* fall through */
        case 3: acc[2] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xr[2] + o), acc[2]); /* fall through */
        case 2: acc[1] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xr[1] + o), acc[1]); /* fall through */
        default: acc[0] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xr[0] + o), acc[0]);
        }
    }
    float tail[QN_LUTQ_TB] = {0};
    if (j < j1) {
        const float *xt[QN_LUTQ_TB];
        for (int t = 0; t < nt; t++) xt[t] = xr[t] + (j - j0);
        seg_dot_scalar(w, codes, j, j1, xt, nt, tail);
    }
    for (int t = 0; t < nt; t++) d[t] = head[t] + hsum8(acc[t]) + tail[t];
}
#define SEG_DOT seg_dot_avx2
#else
#define SEG_DOT seg_dot_scalar
#endif

static void lutq_matmul(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, float *y,
                        int64_t ldy, int64_t row_begin, int64_t row_end) {
    float xs[QN_LUTQ_TB][QN_LUTQ_CHUNK];
    float gsum[QN_LUTQ_TB][QN_LUTQ_CHUNK];
    lutq_seg seg[QN_LUTQ_CHUNK];
    const int64_t K = w->k, G = w->n_groups, row_bytes = K * w->code_bits / 8;
    for (int64_t t0 = 0; t0 < n_tokens; t0 += QN_LUTQ_TB) {
        const int nt = (int)(n_tokens - t0 < QN_LUTQ_TB ? n_tokens - t0 : QN_LUTQ_TB);
        int64_t g = 0;
        for (int64_t c0 = 0; c0 < K; c0 += QN_LUTQ_CHUNK) {
            const int64_t c1 = c0 + QN_LUTQ_CHUNK < K ? c0 + QN_LUTQ_CHUNK : K;
            const float *xc[QN_LUTQ_TB]; /* x of token t at kernel column c0 */
            for (int t = 0; t < nt; t++) {
                const float *xt = x + (t0 + t) * ldx;
                if (w->perm) {
                    for (int64_t j = c0; j < c1; j++) xs[t][j - c0] = xt[w->perm[j]];
                    xc[t] = xs[t];
                } else
                    xc[t] = xt + c0;
            }
            int n_seg = 0;
            while (g < G && w->gstart[g + 1] <= c0) g++;
            for (int64_t gg = g; gg < G && w->gstart[gg] < c1; gg++) {
                const int64_t a = w->gstart[gg] > c0 ? w->gstart[gg] : c0;
                const int64_t b = w->gstart[gg + 1] < c1 ? w->gstart[gg + 1] : c1;
                if (b > a) seg[n_seg++] = (lutq_seg){gg, a, b};
            }
            if (w->zero)
                for (int t = 0; t < nt; t++)
                    for (int s = 0; s < n_seg; s++) {
                        float sum = 0.0f;
                        for (int64_t j = seg[s].j0; j < seg[s].j1; j++) sum += xc[t][j - c0];
                        gsum[t][s] = sum;
                    }
            for (int64_t r = row_begin; r < row_end; r++) {
                const uint8_t *codes = w->codes + r * row_bytes;
                const float *sc = w->scale + r * G, *zr = w->zero ? w->zero + r * G : NULL;
                float acc[QN_LUTQ_TB] = {0};
                for (int s = 0; s < n_seg; s++) {
                    const float *xr[QN_LUTQ_TB];
                    for (int t = 0; t < nt; t++) xr[t] = xc[t] + (seg[s].j0 - c0);
                    float d[QN_LUTQ_TB];
                    SEG_DOT(w, codes, seg[s].j0, seg[s].j1, xr, nt, d);
                    const float sg = sc[seg[s].g];
                    if (zr) {
                        const float z = zr[seg[s].g];
                        for (int t = 0; t < nt; t++) acc[t] += sg * (d[t] - z * gsum[t][s]);
                    } else
                        for (int t = 0; t < nt; t++) acc[t] += sg * d[t];
                }
                for (int t = 0; t < nt; t++) {
                    float *yp = y + (t0 + t) * ldy + r;
                    *yp = c0 == 0 ? acc[t] : *yp + acc[t];
                }
            }
        }
    }
}

void QN_ISA_FN(qn_cpu_fill_lutq)(qn_cpu_kernels *k) { k->lutq_matmul = lutq_matmul; }
