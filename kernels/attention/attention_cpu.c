/* attention_cpu.c — CPU paged attention (kernels/attention/attention.h), one query token at a time;
 * compiled once per ISA (QN_ISA_FN suffixes), selected through the qn_cpu_kernels table.
 * Numerics follow llama.cpp's CPU backend (non-flash path) so that logits agree bit for bit:
 *   - q and K in fp16, scores as fp32 dot products accumulated in `lanes` partial sums (lane m takes
 *     elements m, m+lanes, ...: the vector accumulators of its f16 products), then reduced by
 *     halving the lanes down to 4 and adding (0+2)+(1+3) — or (0+1)+(2+3), two horizontal adds;
 *   - softmax: exp(s - max) in ggml's vector exp form of the ISA (vexp.h), summed per chunk of
 *     `softmax_lanes` keys with the same reduction, chunk
 *     sums added in double; probabilities scaled by (float)(1/sum) and rounded to fp16;
 *   - V: per output dim, the same lane-wise accumulation over key positions.
 * The lane loops have compile-time widths so the compiler turns them into vector FMAs; heads that
 * share a KV head (GQA) decode each K/V row from fp16 once. With AVX-512, attn_group_512 computes
 * the same numbers 16 keys at a time (the lane sums of 16 keys reduced by one transpose tree). With
 * AVX2 (8 lanes for prefill, 32 for one decoding token), attn_tile_avx2 computes them for up to
 * QN_ATTN_CPU_TILE tokens × 8 heads per pass over the keys: each K/V row is converted from fp16 once for all
 * of them, the scores of 8 keys come from interleaved fma chains reduced by one transpose tree, and V
 * accumulates its lane rows in registers. attn_paged_tokens (attn_group per token) is its tested twin. */
#include "kernels/attention/attention.h"

#include <math.h>
#include <string.h>

#include "kernels/common/half.h"
#include "kernels/cpu/isa.h"
#include "kernels/ops/vexp_simd.h"

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

#if defined(QN_SIMD_X86) && !defined(QN_SIMD_X86_512) /* the AVX2 tile's (below); unused elsewhere */
/* The slots of consecutive keys from key j, one division in all. */
typedef struct kv_cursor {
    const int32_t *table;
    int32_t bs, blk, off;
} kv_cursor;

static inline kv_cursor kv_cursor_at(const qn_attn_cpu_args *a, int32_t j) {
    return (kv_cursor){a->block_table, a->block_size, j / a->block_size, j % a->block_size};
}

static inline int64_t kv_cursor_next(kv_cursor *c) {
    const int64_t slot = (int64_t)c->table[c->blk] * c->bs + c->off;
    if (++c->off == c->bs) c->off = 0, c->blk++;
    return slot;
}
#endif

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
        qn_vexp_row_isa(n_ctx, sc, sc, mx[g]);
        for (int32_t j0 = 0; j0 < n_ctx; j0 += sm_lanes) {
            for (int m = 0; m < sm_lanes; m++) {
                const int32_t j = j0 + m;
                part[m] = j < n_ctx ? sc[j] : 0.0f;
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

#if defined(QN_SIMD_X86_512)
/* ---------------------------------------------------------------- AVX-512: 16 keys at a time
 * The same numbers as attn_group, with the lane sums of 16 keys reduced together: each key's
 * partial sums are one zmm (fma chains over d as in dot_lanes; 32 or 64 lanes are first folded to
 * 16 by reduce_lanes' halving), and the 16 zmm go through a transpose tree that performs, per key,
 * exactly reduce_lanes' additions. V accumulates lane rows in registers, 16 output dims at a time.
 * Taken when lanes is 16, 32 or 64 and divides head_dim, softmax_lanes is 16, the tree is not the
 * pairwise one and a KV block holds a multiple of 16 slots (keys j0..j0+15 are then adjacent). */

/* Σ of v's 16 lanes in reduce_lanes' order: (a_i + a_i+8) + (a_i+4 + a_i+12) = c_i, (c0 + c2) + (c1 + c3). */
static inline float sum16(__m512 v) {
    const __m256 b = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    const __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
    const __m128 d = _mm_add_ps(c, _mm_movehl_ps(c, c));
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
}

/* Slot s of v holds key KEY_OF_SLOT(s); returns the 16 sums (as sum16 computes them) in key order.
 * Step 1 adds 256-bit halves two keys per vector, step 2 the 128-bit halves four keys per vector,
 * steps 3 and 4 the 64- and 32-bit halves, leaving lane 4q + j = slot 4j + q. */
#define KEY_OF_SLOT(s) (4 * ((s) % 4) + (s) / 4)
static inline __m512 sum16x16(const __m512 v[16]) {
    __m512 z[8], w[4];
    for (int i = 0; i < 8; i++)
        z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xee));
    for (int i = 0; i < 4; i++)
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(z[2 * i], z[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(z[2 * i], z[2 * i + 1], 0xdd));
    __m512 u[2];
    for (int i = 0; i < 2; i++) {
        const __m512d a = _mm512_castps_pd(w[2 * i]), b = _mm512_castps_pd(w[2 * i + 1]);
        u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    return _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], 0x88), _mm512_shuffle_ps(u[0], u[1], 0xdd));
}

/* rows[L][16 dims] of lane partial sums -> reduce_lanes over the L rows, per dim. Destroys rows. */
static inline __m512 reduce_rows(__m512 *rows, int L) {
    for (int n = L; n > 4; n /= 2)
        for (int i = 0; i < n / 2; i++) rows[i] = _mm512_add_ps(rows[i], rows[i + n / 2]);
    return _mm512_add_ps(_mm512_add_ps(rows[0], rows[2]), _mm512_add_ps(rows[1], rows[3]));
}

/* v[s] = the 16-lane partial sums of q·k for the key in slot s: NCH fma chains of
 * 16 lanes over d (lane = d mod 16·NCH), folded to 16 lanes by reduce_lanes' halving. */
QN_INLINE void key_partials(const float *q, const float (*kf)[QN_ATTN_MAX_HD], int nc, const int NCH, __m512 v[16]) {
    if (NCH == 1) { /* 16 independent chains, interleaved */
        for (int s = 0; s < 16; s++) v[s] = _mm512_setzero_ps();
        for (int c = 0; c < nc; c++) {
            const __m512 qc = _mm512_load_ps(q + 16 * c);
            for (int s = 0; s < 16; s++) v[s] = _mm512_fmadd_ps(qc, _mm512_load_ps(kf[s] + 16 * c), v[s]);
        }
        return;
    }
    for (int s = 0; s < 16; s++) {
        __m512 p[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int c = 0; c < nc; c += NCH)
            for (int i = 0; i < NCH; i++)
                p[i] = _mm512_fmadd_ps(_mm512_load_ps(q + 16 * (c + i)), _mm512_load_ps(kf[s] + 16 * (c + i)), p[i]);
        v[s] = NCH == 2 ? _mm512_add_ps(p[0], p[1]) : reduce_rows(p, 4);
    }
}

static bool attn_fast_ok(const qn_attn_cpu_args *a) {
    const int L = a->lanes;
    return (L == 16 || L == 32 || L == 64) && a->head_dim % L == 0 && a->head_dim <= QN_ATTN_MAX_HD &&
           a->softmax_lanes == 16 && !a->pairwise_tree && a->block_size % 16 == 0;
}

static void attn_group_512(const qn_attn_cpu_args *a, int kvh, int h0, int h1) {
    const int hd = a->head_dim, ng = h1 - h0, nc = hd / 16, L = a->lanes, nch = L / 16;
    const int64_t kv_stride = (int64_t)a->n_kv_heads * hd;
    const int32_t n_ctx = a->n_ctx;
    float *scores = a->scratch; /* [ng][n_ctx] */
    _Alignas(64) float qh[QN_ATTN_MAX_GROUP][QN_ATTN_MAX_HD];
    _Alignas(64) float kf[16][QN_ATTN_MAX_HD];
    __m512 mx[QN_ATTN_MAX_GROUP];
    for (int g = 0; g < ng; g++) {
        for (int c = 0; c < nc; c++) {
            const __m512 q = _mm512_loadu_ps(a->q + (int64_t)(h0 + g) * hd + 16 * c);
            _mm512_store_ps(qh[g] + 16 * c, _mm512_cvtph_ps(_mm512_cvtps_ph(q, _MM_FROUND_TO_NEAREST_INT)));
        }
        mx[g] = _mm512_set1_ps(-INFINITY);
    }
    /* scores, 16 keys at a time (one KV block holds them all) */
    for (int32_t j0 = 0; j0 < n_ctx; j0 += 16) {
        const int nk = n_ctx - j0 < 16 ? n_ctx - j0 : 16;
        const __mmask16 km = (__mmask16)((1u << nk) - 1);
        const uint16_t *kb = a->k_cache + slot_of(a, j0) * kv_stride + (int64_t)kvh * hd;
        for (int s = 0; s < 16; s++) /* slots past the last key hold zeros (their lanes are not stored) */
            for (int c = 0; c < nc; c++)
                _mm512_store_ps(kf[s] + 16 * c,
                                KEY_OF_SLOT(s) < nk ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kb + KEY_OF_SLOT(s) * kv_stride + 16 * c)))
                                                    : _mm512_setzero_ps());
        for (int g = 0; g < ng; g++) {
            __m512 v[16];
            switch (nch) {
            case 1: key_partials(qh[g], (const float(*)[QN_ATTN_MAX_HD])kf, nc, 1, v); break;
            case 2: key_partials(qh[g], (const float(*)[QN_ATTN_MAX_HD])kf, nc, 2, v); break;
            default: key_partials(qh[g], (const float(*)[QN_ATTN_MAX_HD])kf, nc, 4, v); break;
            }
            const __m512 sc = _mm512_mul_ps(sum16x16(v), _mm512_set1_ps(a->scale));
            _mm512_mask_storeu_ps(scores + (int64_t)g * n_ctx + j0, km, sc);
            mx[g] = _mm512_mask_max_ps(mx[g], km, mx[g], sc);
        }
    }
    /* softmax: exp in the ISA's vector form (as attn_group), sums of 16 keys added in double, fp16 rounding */
    for (int g = 0; g < ng; g++) {
        float *sc = scores + (int64_t)g * n_ctx;
        const float m = _mm512_reduce_max_ps(mx[g]);
        qn_vexp_row_isa(n_ctx, sc, sc, m);
        double sum = 0.0;
        for (int32_t j0 = 0; j0 < n_ctx; j0 += 16) {
            const int nk = n_ctx - j0 < 16 ? n_ctx - j0 : 16;
            sum += (double)sum16(_mm512_maskz_loadu_ps((__mmask16)((1u << nk) - 1), sc + j0));
        }
        const __m512 inv = _mm512_set1_ps((float)(1.0 / sum));
        for (int32_t j0 = 0; j0 < n_ctx; j0 += 16) {
            const int nk = n_ctx - j0 < 16 ? n_ctx - j0 : 16;
            const __mmask16 km = (__mmask16)((1u << nk) - 1);
            const __m512 pr = _mm512_mul_ps(_mm512_maskz_loadu_ps(km, sc + j0), inv);
            _mm512_mask_storeu_ps(sc + j0, km, _mm512_cvtph_ps(_mm512_cvtps_ph(pr, _MM_FROUND_TO_NEAREST_INT)));
        }
    }
    /* V: for 16 dims at a time, lane row m (keys j ≡ m mod L) accumulates in a register */
    for (int g = 0; g < ng; g++) {
        const float *pg = scores + (int64_t)g * n_ctx;
        for (int c = 0; c < nc; c++) {
            __m512 rows[QN_ATTN_MAX_LANES];
            for (int lg = 0; lg < nch; lg++) {
                __m512 acc[16];
                for (int m = 0; m < 16; m++) acc[m] = _mm512_setzero_ps();
                for (int32_t j0 = 16 * lg; j0 < n_ctx; j0 += L) {
                    const int nk = n_ctx - j0 < 16 ? n_ctx - j0 : 16;
                    const uint16_t *vb = a->v_cache + slot_of(a, j0) * kv_stride + (int64_t)kvh * hd + 16 * c;
                    if (nk == 16)
                        for (int m = 0; m < 16; m++)
                            acc[m] = _mm512_fmadd_ps(_mm512_set1_ps(pg[j0 + m]),
                                                     _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vb + m * kv_stride))), acc[m]);
                    else
                        for (int m = 0; m < nk; m++)
                            acc[m] = _mm512_fmadd_ps(_mm512_set1_ps(pg[j0 + m]),
                                                     _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vb + m * kv_stride))), acc[m]);
                }
                for (int m = 0; m < 16; m++) rows[16 * lg + m] = acc[m];
            }
            _mm512_storeu_ps(a->out + (int64_t)(h0 + g) * hd + 16 * c, reduce_rows(rows, L));
        }
    }
}
#undef KEY_OF_SLOT
#endif /* QN_SIMD_X86_512 */

#if defined(QN_SIMD_X86) && !defined(QN_SIMD_X86_512)
/* ---------------------------------------------------------------- AVX2: a tile of query tokens
 * attn_group's numbers for lanes L = 8, 16, 32 or 64 (dividing head_dim), softmax_lanes = 8, either tree. The
 * partial sums of a key are L/8 ymm (fma chains over d, lane m taking d ≡ m mod L) folded to one ymm by
 * reduce_lanes' halving, and 8 keys' ymm are reduced by a transpose tree performing, per key, exactly
 * reduce_lanes' last additions. V keeps L lane rows of 8 dims, 8 at a time in registers. Queries are (token, head)
 * pairs, token-major; query i of the tile sees n_ctx + t0 + i / ng keys. */

/* x[s] = the 8 lane sums of key s (s < 8); returns, in key order, reduce_lanes' last steps on them: v[i] + v[i+4],
 * then (0+2)+(1+3), or (0+1)+(2+3) when pairwise. */
static inline __m256 sum8x8(const __m256 x[8], bool pairwise) {
    __m256 y[4], u[2];
    for (int i = 0; i < 4; i++) /* v[i] + v[i+4]: key 2i in the low half, key 2i+1 in the high half */
        y[i] = _mm256_add_ps(_mm256_permute2f128_ps(x[2 * i], x[2 * i + 1], 0x20),
                             _mm256_permute2f128_ps(x[2 * i], x[2 * i + 1], 0x31));
    __m256 r;
    if (pairwise) { /* (w0 + w1), (w2 + w3), then their sum: lanes hold keys 0 2 4 6 | 1 3 5 7 */
        u[0] = _mm256_hadd_ps(y[0], y[1]), u[1] = _mm256_hadd_ps(y[2], y[3]);
        r = _mm256_hadd_ps(u[0], u[1]);
    } else {
        for (int i = 0; i < 2; i++) { /* (w0 + w2), (w1 + w3): keys 4i, 4i+2 low, 4i+1, 4i+3 high */
            const __m256d a = _mm256_castps_pd(y[2 * i]), b = _mm256_castps_pd(y[2 * i + 1]);
            u[i] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(a, b)), _mm256_castpd_ps(_mm256_unpackhi_pd(a, b)));
        }
        r = _mm256_add_ps(_mm256_shuffle_ps(u[0], u[1], 0x88), _mm256_shuffle_ps(u[0], u[1], 0xdd));
    }
    return _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* reduce_lanes(8, false) of one ymm's lanes */
static inline float sum8(__m256 v) {
    const __m128 w = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 h = _mm_add_ps(w, _mm_movehl_ps(w, w));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

/* lanes i < n all ones */
static inline __m256i first_lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* reduce_lanes' halving of n ymm of lanes (n a power of two) down to v[0] */
static inline __m256 fold_lanes(__m256 *v, int n) {
    for (; n > 1; n /= 2)
        for (int i = 0; i < n / 2; i++) v[i] = _mm256_add_ps(v[i], v[i + n / 2]);
    return v[0];
}

/* L = 8: the lane sums of two queries against 4 keys: acc[2 * s + qi], s < 4. */
static inline void dots_2x4(const float *q0, const float *q1, const float *kf, int nc, __m256 acc[8]) {
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    for (int c = 0; c < nc; c++) {
        const __m256 a0 = _mm256_load_ps(q0 + 8 * c), a1 = _mm256_load_ps(q1 + 8 * c);
        for (int s = 0; s < 4; s++) {
            const __m256 k = _mm256_load_ps(kf + (size_t)s * QN_ATTN_MAX_HD + 8 * c);
            acc[2 * s] = _mm256_fmadd_ps(a0, k, acc[2 * s]);
            acc[2 * s + 1] = _mm256_fmadd_ps(a1, k, acc[2 * s + 1]);
        }
    }
}

/* L = 8·NCH (NCH = 2, 4, 8; a compile-time constant): one query's lane sums against 8 / NCH keys at a time, each
 * folded to 8 lanes: x[s], s < 8. */
QN_INLINE void dots_wide(const float *q, const float (*kf)[QN_ATTN_MAX_HD], int nc, const int NCH, __m256 x[8]) {
    const int KP = 8 / NCH;
    for (int s0 = 0; s0 < 8; s0 += KP) {
        __m256 acc[8];
        for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
        for (int c = 0; c < nc; c++) {
            const __m256 a = _mm256_load_ps(q + 8 * c);
            for (int s = 0; s < KP; s++)
                acc[s * NCH + c % NCH] = _mm256_fmadd_ps(a, _mm256_load_ps(kf[s0 + s] + 8 * c), acc[s * NCH + c % NCH]);
        }
        for (int s = 0; s < KP; s++) x[s0 + s] = fold_lanes(acc + s * NCH, NCH);
    }
}

static bool attn_tile_ok(const qn_attn_cpu_args *a) {
    const int L = a->lanes;
    return (L == 8 || L == 16 || L == 32 || L == 64) && a->softmax_lanes == 8 && a->head_dim % L == 0 &&
           a->head_dim <= QN_ATTN_MAX_HD;
}

#define QN_ATTN_TILE_Q (QN_ATTN_CPU_TILE * QN_ATTN_MAX_GROUP)

static inline float *qn_attn_align32(float *p) { return (float *)(((uintptr_t)p + 31) & ~(uintptr_t)31); }

/* Query tokens [t0, t0 + nt) (nt <= QN_ATTN_CPU_TILE) of heads [h0, h1), all reading KV head kvh. */
static void attn_tile_avx2(const qn_attn_cpu_args *a, int kvh, int h0, int h1, int t0, int nt) {
    const int hd = a->head_dim, ng = h1 - h0, nc = hd / 8, nq = nt * ng, L = a->lanes, nch = L / 8;
    const bool pw = a->pairwise_tree;
    const int64_t kv_stride = (int64_t)a->n_kv_heads * hd;
    const int32_t ctx0 = a->n_ctx + t0, nmax = ctx0 + nt - 1; /* query i sees ctx0 + i / ng keys */
    float *scores = a->scratch;                                /* [nq][nmax] */
    float *vt = qn_attn_align32(scores + (int64_t)nq * nmax);  /* [nc][QN_ATTN_V_KEYS][8] a block of V rows */
    __m256 *vacc = (__m256 *)(vt + (int64_t)nc * QN_ATTN_V_KEYS * 8); /* [nq][nc][L] V lane rows of 8 dims */
    _Alignas(32) float qh[QN_ATTN_TILE_Q + 1][QN_ATTN_MAX_HD];
    _Alignas(32) float kf[8][QN_ATTN_MAX_HD];
    __m256 mx[QN_ATTN_TILE_Q + 1];
    if (nq < 1 || nq > QN_ATTN_TILE_Q) return; /* callers pass 1..QN_ATTN_CPU_TILE tokens of 1..8 heads */
    for (int i = 0; i < nq; i++) {
        const float *src = a->q + (int64_t)(t0 + i / ng) * a->q_stride + (int64_t)(h0 + i % ng) * hd;
        for (int c = 0; c < nc; c++)
            _mm256_store_ps(qh[i] + 8 * c, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(src + 8 * c),
                                                                           _MM_FROUND_TO_NEAREST_INT)));
        mx[i] = _mm256_set1_ps(-INFINITY);
    }
    memcpy(qh[nq], qh[nq - 1], sizeof qh[0]); /* the partner of an odd last query (its sums are dropped) */
    /* scores, 8 keys at a time; each K row converted once for the whole tile */
    kv_cursor kc = kv_cursor_at(a, 0);
    for (int32_t j0 = 0; j0 < nmax; j0 += 8) {
        const int nk = nmax - j0 < 8 ? nmax - j0 : 8;
        for (int s = 0; s < 8; s++) {
            if (s >= nk) {
                memset(kf[s], 0, sizeof(float) * (size_t)hd);
                continue;
            }
            const uint16_t *kr = a->k_cache + kv_cursor_next(&kc) * kv_stride + (int64_t)kvh * hd;
            for (int c = 0; c < nc; c++)
                _mm256_store_ps(kf[s] + 8 * c, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kr + 8 * c))));
        }
        /* queries whose context ends before j0 are the first ones of the tile: skip them */
        int i0 = 0;
        while (i0 < nq && ctx0 + i0 / ng <= j0) i0++;
        for (int i = i0; i < nq; i += L == 8 ? 2 : 1) {
            __m256 sc[2];
            if (L == 8) {
                __m256 lo[8], hi[8], x0[8], x1[8];
                dots_2x4(qh[i], qh[i + 1], kf[0], nc, lo);
                dots_2x4(qh[i], qh[i + 1], kf[4], nc, hi);
                for (int s = 0; s < 4; s++) {
                    x0[s] = lo[2 * s], x1[s] = lo[2 * s + 1];
                    x0[s + 4] = hi[2 * s], x1[s + 4] = hi[2 * s + 1];
                }
                sc[0] = sum8x8(x0, pw), sc[1] = sum8x8(x1, pw);
            } else {
                __m256 x[8];
                switch (nch) {
                case 2: dots_wide(qh[i], (const float(*)[QN_ATTN_MAX_HD])kf, nc, 2, x); break;
                case 4: dots_wide(qh[i], (const float(*)[QN_ATTN_MAX_HD])kf, nc, 4, x); break;
                default: dots_wide(qh[i], (const float(*)[QN_ATTN_MAX_HD])kf, nc, 8, x); break;
                }
                sc[0] = sum8x8(x, pw);
            }
            for (int e = 0; e < (L == 8 ? 2 : 1) && i + e < nq; e++) {
                const __m256 v = _mm256_mul_ps(sc[e], _mm256_set1_ps(a->scale));
                const __m256i m = first_lanes(ctx0 + (i + e) / ng - j0); /* keys of this block the query sees */
                _mm256_maskstore_ps(scores + (int64_t)(i + e) * nmax + j0, m, v);
                mx[i + e] = _mm256_blendv_ps(mx[i + e], _mm256_max_ps(mx[i + e], v), _mm256_castsi256_ps(m));
            }
        }
    }
    /* softmax: exp in the ISA's vector form, sums of 8 keys added in double, probabilities rounded to fp16 */
    for (int i = 0; i < nq; i++) {
        float *sc = scores + (int64_t)i * nmax;
        const int32_t n = ctx0 + i / ng;
        const __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx[i]), _mm256_extractf128_ps(mx[i], 1));
        const __m128 m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        qn_vexp_row_isa(n, sc, sc, _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2))));
        double sum = 0.0;
        for (int32_t j0 = 0; j0 < n; j0 += 8)
            sum += (double)sum8(_mm256_maskload_ps(sc + j0, first_lanes(n - j0)));
        const __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
        for (int32_t j0 = 0; j0 < n; j0 += 8) {
            const __m256i m = first_lanes(n - j0);
            const __m256 pr = _mm256_mul_ps(_mm256_maskload_ps(sc + j0, m), inv);
            _mm256_maskstore_ps(sc + j0, m, _mm256_cvtph_ps(_mm256_cvtps_ph(pr, _MM_FROUND_TO_NEAREST_INT)));
        }
    }
    /* V, QN_ATTN_V_KEYS keys at a time: their rows converted once, dim-chunk-major (vt); then per query and 8-dim
     * chunk, lane row m (keys j ≡ m mod L) accumulates in a register, 8 lane rows at a time, carried from block to
     * block in vacc; at the end the L rows go through reduce_lanes' steps */
    kv_cursor vc = kv_cursor_at(a, 0);
    for (int32_t kb = 0; kb < nmax; kb += QN_ATTN_V_KEYS) {
        const int32_t kn = nmax - kb < QN_ATTN_V_KEYS ? nmax - kb : QN_ATTN_V_KEYS;
        for (int32_t j = 0; j < kn; j++) {
            const uint16_t *vr = a->v_cache + kv_cursor_next(&vc) * kv_stride + (int64_t)kvh * hd;
            for (int c = 0; c < nc; c++)
                _mm256_store_ps(vt + ((int64_t)c * QN_ATTN_V_KEYS + j) * 8,
                                _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vr + 8 * c))));
        }
        for (int i = 0; i < nq; i++) {
            const int32_t n = ctx0 + i / ng;
            if (n <= kb) continue;
            const float *p = scores + (int64_t)i * nmax;
            for (int c = 0; c < nc; c++) {
                const float *vcol = vt + (int64_t)c * QN_ATTN_V_KEYS * 8; /* key j at vcol + 8 (j - kb) */
                __m256 *rows = vacc + ((int64_t)i * nc + c) * L;
                for (int lg = 0; lg < nch; lg++) {
                    __m256 acc[8];
                    for (int m = 0; m < 8; m++) acc[m] = kb ? rows[8 * lg + m] : _mm256_setzero_ps();
                    int32_t j0 = kb + 8 * lg;
                    for (; j0 + 8 <= n && j0 < kb + kn; j0 += L)
                        for (int m = 0; m < 8; m++)
                            acc[m] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j0 + m), _mm256_load_ps(vcol + 8 * (int64_t)(j0 + m - kb)), acc[m]);
                    for (int m = 0; j0 < kb + kn && j0 + m < n && m < 8; m++)
                        acc[m] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j0 + m), _mm256_load_ps(vcol + 8 * (int64_t)(j0 + m - kb)), acc[m]);
                    for (int m = 0; m < 8; m++) rows[8 * lg + m] = acc[m];
                }
            }
        }
    }
    for (int i = 0; i < nq; i++)
        for (int c = 0; c < nc; c++) {
            __m256 *rows = vacc + ((int64_t)i * nc + c) * L;
            for (int n2 = L; n2 > 4; n2 /= 2)
                for (int m = 0; m < n2 / 2; m++) rows[m] = _mm256_add_ps(rows[m], rows[m + n2 / 2]);
            const __m256 o = pw ? _mm256_add_ps(_mm256_add_ps(rows[0], rows[1]), _mm256_add_ps(rows[2], rows[3]))
                                : _mm256_add_ps(_mm256_add_ps(rows[0], rows[2]), _mm256_add_ps(rows[1], rows[3]));
            _mm256_storeu_ps(a->out + (int64_t)(t0 + i / ng) * a->out_stride + (int64_t)(h0 + i % ng) * hd + 8 * c, o);
        }
}
#endif /* AVX2 */

/* The end of the run of heads from h (< h_end) that read h's KV head, at most QN_ATTN_MAX_GROUP long. */
static inline int group_end(int h, int h_end, int group) {
    int h1 = (h / group + 1) * group;
    if (h1 > h_end) h1 = h_end;
    return h1 - h > QN_ATTN_MAX_GROUP ? h + QN_ATTN_MAX_GROUP : h1;
}

/* One query token at a time: attn_group (or its AVX-512 form) per token and GQA group. scratch must
 * hold min(heads per KV head, 8) * (n_ctx + n_q - 1) floats. */
static void attn_paged_tokens(const qn_attn_cpu_args *a, int h_begin, int h_end) {
    const int group = a->n_heads / a->n_kv_heads;
    const int32_t n_q = a->n_q > 1 ? a->n_q : 1;
    for (int32_t t = 0; t < n_q; t++) {
        qn_attn_cpu_args at = *a;
        at.q = a->q + (int64_t)t * a->q_stride, at.out = a->out + (int64_t)t * a->out_stride;
        at.n_ctx = a->n_ctx + t, at.n_q = 1;
        for (int h = h_begin, h1; h < h_end; h = h1) {
            h1 = group_end(h, h_end, group);
#if defined(QN_SIMD_X86_512)
            if (attn_fast_ok(&at)) {
                attn_group_512(&at, h / group, h, h1);
                continue;
            }
#endif
            attn_group(&at, h / group, h, h1);
        }
    }
}

static void attn_paged(const qn_attn_cpu_args *a, int h_begin, int h_end) {
#if defined(QN_SIMD_X86) && !defined(QN_SIMD_X86_512)
    if (attn_tile_ok(a)) {
        const int group = a->n_heads / a->n_kv_heads;
        const int32_t n_q = a->n_q > 1 ? a->n_q : 1;
        for (int32_t t0 = 0; t0 < n_q; t0 += QN_ATTN_CPU_TILE)
            for (int h = h_begin, h1; h < h_end; h = h1) {
                h1 = group_end(h, h_end, group);
                attn_tile_avx2(a, h / group, h, h1, t0, n_q - t0 < QN_ATTN_CPU_TILE ? n_q - t0 : QN_ATTN_CPU_TILE);
            }
        return;
    }
#endif
    attn_paged_tokens(a, h_begin, h_end);
}

void QN_ISA_FN(qn_cpu_fill_attention)(qn_cpu_kernels *k) {
    k->attn_paged = attn_paged;
    k->attn_paged_tokens = attn_paged_tokens;
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
