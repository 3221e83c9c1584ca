/* lutq_amx_cpu.c — GPTQ / AWQ / bnb NF4-FP4 prefill (the repacked lutq.h layout) on the AMX-BF16 tile unit, where
 * the CPU has it and the kernel grants this process the tile data; its fill, run after lutq_cpu.c's, replaces
 * the table's lutq_matmul, and everything the tiles do not take goes to that fp32 kernel (qn_cpu_lutq_matmul_f32):
 * fewer than 16 tokens or rows, the last n_tokens mod 16 tokens and rows mod 16 rows, 8-bit codes under a general
 * table, and groups that do not start on a multiple of 32 columns.
 *
 * Same arithmetic class as the fp32 kernel. Each activation is split into three bf16 parts x = hi + mid + lo
 * (exact: 8 + 8 + 8 significant bits of fp32's 24); GPTQ/AWQ codes are integers (exact in bf16); a 16-entry table's
 * values are split the same way, and the six products whose parts add to at least 2^-16 of v·x are formed (the
 * other three are below fp32's rounding of the product). The tile unit forms each product exactly and accumulates
 * in fp32. Per group segment the C tile holds d = Σ value·x for 16 rows × 16 tokens; it is folded into an fp32
 * accumulator as scale·(d − zero·Σx), as the fp32 kernel does (tests/kernels/test_quant_lutq.c, same tolerance;
 * largest error seen there 1.35e-7 of Σ|w·x|, 9.0e-7 with the table's lo part dropped).
 *
 * Tiles: A = 16 weight rows × 32 columns (codes, or a table part, in bf16), B = the activations of 16 tokens in the
 * tile unit's pair layout (row kp: the bf16 pairs of columns 2kp, 2kp+1 of each token, prepared once per
 * 512-column chunk for up to 128 tokens, 3 parts), C = 4 tiles of 16 rows × 16 tokens. GPTQ/AWQ: A tiles of
 * 32 rows (two row blocks share each B load) against token tile pairs; tables: the 3 parts of 16 rows against 4
 * token tiles. A is decoded once per group segment for every token tile. Owns nothing. */
#include <string.h>

#include "kernels/cpu/isa.h"
#include "kernels/quant/lutq.h"

#if defined(QN_SIMD_X86_512) && defined(__x86_64__)
#define QN_LAMX __attribute__((target("amx-tile,amx-bf16,avx512bf16")))
#define QN_LAMX_CHUNK 512 /* columns of activations prepared per pass: 16 k-steps of 32 */
#define QN_LAMX_KS (QN_LAMX_CHUNK / 32)
#define QN_LAMX_TT 8 /* 16-token tiles per pass: each decoded A tile serves 8 · 3 products */

typedef struct lamx_cfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} lamx_cfg;

typedef struct lamx_tile { /* one 16 × 64-byte tile */
    _Alignas(64) uint32_t d[16][16];
} lamx_tile;

/* r[i] (16 dwords each) <- its transpose */
QN_LAMX QN_INLINE void tr16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* u[4q + c], 128-bit lane L: elements (row 4q..4q+3, column 4L + c) */
    for (int q = 0; q < 16; q += 8)
        for (int c = 0; c < 4; c++) {
            t[q + c] = _mm512_shuffle_i32x4(u[q + c], u[q + 4 + c], 0x88);     /* lanes 0, 2 of each */
            t[q + 4 + c] = _mm512_shuffle_i32x4(u[q + c], u[q + 4 + c], 0xdd); /* lanes 1, 3 of each */
        }
    /* t[q + c] (q = 0, 8): lanes (row block q/4, col 4·0 + c), (q/4 + 1, c), (q/4, 8 + c), (q/4 + 1, 8 + c); t[q + 4 + c]
     * the same with columns 4 + c and 12 + c */
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0x88);
        r[8 + c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0xdd);
        r[4 + c] = _mm512_shuffle_i32x4(t[4 + c], t[12 + c], 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(t[4 + c], t[12 + c], 0xdd);
    }
}

/* bf16 (low or high 16 of the 32 in h) back to fp32, exactly */
QN_LAMX QN_INLINE __m512 bf16_lo_ps(__m512i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(h)), 16));
}
QN_LAMX QN_INLINE __m512 bf16_hi_ps(__m512i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(h, 1)), 16));
}

/* 32 fp32 values (x0: 16 low, x1: 16 high) as three bf16 vectors out[0] hi, out[1] mid, out[2] lo, each in the same
 * 32 word lanes, with x = hi + mid + lo exactly (8 + 8 + 8 significant bits) */
QN_LAMX QN_INLINE void split3(__m512 x0, __m512 x1, __m512i out[3]) {
    const __m512i h = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
    const __m512 r0 = _mm512_sub_ps(x0, bf16_lo_ps(h)), r1 = _mm512_sub_ps(x1, bf16_hi_ps(h));
    const __m512i m = (__m512i)_mm512_cvtne2ps_pbh(r1, r0);
    const __m512 s0 = _mm512_sub_ps(r0, bf16_lo_ps(m)), s1 = _mm512_sub_ps(r1, bf16_hi_ps(m));
    out[0] = h, out[1] = m, out[2] = (__m512i)_mm512_cvtne2ps_pbh(s1, s0);
}

/* The B tiles of 16 tokens (xt[t]: its activations from the chunk's first column) over nks k-steps: out[ks][p], parts
 * p = 0 hi, 1 mid, 2 lo, each row kp = the bf16 pairs (2kp, 2kp+1) of the 16 tokens, columns in decode_a's order. */
QN_LAMX static void prep_b(const float *const *xt, int nks, lamx_tile (*out)[3]) {
    for (int ks = 0; ks < nks; ks++) {
        __m512i r[3][16];
        for (int t = 0; t < 16; t++) {
            const float *p = xt[t] + 32 * ks; /* columns 0..7, 16..23 | 8..15, 24..31 */
            const __m512 x0 = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(p)), _mm256_loadu_ps(p + 16), 1);
            const __m512 x1 = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(p + 8)), _mm256_loadu_ps(p + 24), 1);
            __m512i parts[3];
            split3(x0, x1, parts);
            r[0][t] = parts[0], r[1][t] = parts[1], r[2][t] = parts[2];
        }
        for (int p = 0; p < 3; p++) {
            tr16(r[p]);
            for (int kp = 0; kp < 16; kp++) _mm512_store_si512(out[ks][p].d[kp], r[p][kp]);
        }
    }
}

/* The A tile: 16 weight rows (codes[i]) at column j (a multiple of 32), codes widened to bf16. Column order (B's
 * too): 0..7, 16..23, 8..15, 24..31, which is how the two 16-column blocks' 16 bytes widen to words: low nibbles,
 * then high ones (vpermw reads an index's low 5 bits and the table repeats after 16 entries, so the bits above a
 * nibble need no mask). */
QN_LAMX QN_INLINE void decode_a(const uint8_t *const *codes, int bits4, int64_t j, lamx_tile *a) {
    if (bits4) {
        const __m512i tbl = _mm512_set_epi16(0x4170, 0x4160, 0x4150, 0x4140, 0x4130, 0x4120, 0x4110, 0x4100, 0x40e0,
                                             0x40c0, 0x40a0, 0x4080, 0x4040, 0x4000, 0x3f80, 0x0000, 0x4170, 0x4160,
                                             0x4150, 0x4140, 0x4130, 0x4120, 0x4110, 0x4100, 0x40e0, 0x40c0, 0x40a0,
                                             0x4080, 0x4040, 0x4000, 0x3f80, 0x0000); /* bf16 of 0..15, twice */
        for (int i = 0; i < 16; i++) {
            const __m128i v = _mm_loadu_si128((const __m128i *)(codes[i] + (j >> 4) * 8)); /* two 16-column blocks */
            const __m256i c = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
            _mm512_store_si512(a->d[i], _mm512_permutexvar_epi16(_mm512_cvtepu8_epi16(c), tbl));
        }
    } else {
        for (int i = 0; i < 16; i++) { /* the same column order */
            const __m128i lo = _mm_loadu_si128((const __m128i *)(codes[i] + j)), hi = _mm_loadu_si128((const __m128i *)(codes[i] + j + 16));
            const __m128i c0 = _mm_unpacklo_epi64(lo, hi), c1 = _mm_unpackhi_epi64(lo, hi); /* 0..7, 16..23 | 8..15, 24..31 */
            const __m512 f0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(c0)), f1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(c1));
            _mm512_store_si512(a->d[i], (__m512i)_mm512_cvtne2ps_pbh(f1, f0)); /* exact: codes < 256 */
        }
    }
}

/* A tiles of a 16-entry table (bnb NF4/FP4): each value v = hi + mid + lo in bf16 (exact); tbl[p]: part p of the 16
 * values, twice (decode_a's wrap). The three A tiles hold part p of each weight, in decode_a's column order. */
QN_LAMX static void table_parts(const float *lut, __m512i tbl[3]) {
    const __m512 v = _mm512_loadu_ps(lut);
    split3(v, v, tbl);
}

QN_LAMX QN_INLINE void decode_a_table(const uint8_t *const *codes, int64_t j, const __m512i tbl[3], lamx_tile a[3]) {
    for (int i = 0; i < 16; i++) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(codes[i] + (j >> 4) * 8));
        const __m512i c = _mm512_cvtepu8_epi16(_mm256_set_m128i(_mm_srli_epi16(v, 4), v));
        for (int p = 0; p < 3; p++) _mm512_store_si512(a[p].d[i], _mm512_permutexvar_epi16(c, tbl[p]));
    }
}

/* For token tile TT (of the pair starting at tp), part P, k-step ks: B into tile register BT, then C tile 4 + TT'
 * (TT' = TT − tp: a literal, the intrinsics paste it into the instruction) += A0 · B and, with a second row block,
 * C tile 6 + TT' += A1 · B: each B load serves both row blocks. */
#define QN_LAMX_DP(TT, P, BT, C0, C1)                                                                                \
    do {                                                                                                             \
        if (tp + TT < ntt) {                                                                                         \
            _tile_loadd(BT, xb[tp + TT][ks][P].d, 64);                                                               \
            _tile_dpbf16ps(C0, 0, BT);                                                                               \
            if (nr > 1) _tile_dpbf16ps(C1, 1, BT);                                                                   \
        }                                                                                                            \
    } while (0)

/* Table weights, token tile tq + TT into C tile CT: A tiles 0, 1, 2 hold the weights' hi, mid, lo parts, B tile 3
 * the activations' parts in turn; the six products of parts whose sizes add to at least 2^-16 of v·x (the other
 * three are below fp32's rounding of the product), the small ones first. */
#define QN_LAMX_TAB(TT, CT)                                                                                          \
    do {                                                                                                             \
        if (tq + TT < ntt) {                                                                                         \
            _tile_loadd(3, xb[tq + TT][ks][2].d, 64);                                                                \
            _tile_dpbf16ps(CT, 0, 3);                                                                                \
            _tile_loadd(3, xb[tq + TT][ks][1].d, 64);                                                                \
            _tile_dpbf16ps(CT, 1, 3);                                                                                \
            _tile_dpbf16ps(CT, 0, 3);                                                                                \
            _tile_loadd(3, xb[tq + TT][ks][0].d, 64);                                                                \
            _tile_dpbf16ps(CT, 2, 3);                                                                                \
            _tile_dpbf16ps(CT, 1, 3);                                                                                \
            _tile_dpbf16ps(CT, 0, 3);                                                                                \
        }                                                                                                            \
    } while (0)

/* A segment's C tile, folded into acc: acc[tt][q][i] += scale·(C[i] − zero·Σx) of row r + 16q + i */
struct fold_seg {
    const qn_lutq_weight *w;
    int64_t r;
    int s;
    int64_t g;
    const float (*gs)[QN_LAMX_TT * 16];
};
QN_LAMX static void fold_c(const struct fold_seg *f, int ct, lamx_tile *c, int tt, int q,
                           float (*acc)[2][16][16]) {
    switch (ct) {
    case 0: _tile_stored(4, c->d, 64); break;
    case 1: _tile_stored(5, c->d, 64); break;
    case 2: _tile_stored(6, c->d, 64); break;
    default: _tile_stored(7, c->d, 64); break;
    }
    const qn_lutq_weight *w = f->w;
    const __m512 gsv = w->zero ? _mm512_load_ps(f->gs[f->s] + 16 * tt) : _mm512_setzero_ps();
    for (int i = 0; i < 16; i++) {
        const int64_t ri = f->r + 16 * q + i;
        const float sc = w->scale[ri * w->n_groups + f->g];
        __m512 v = _mm512_load_ps(acc[tt][q][i]);
        v = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_load_si512(c->d[i])), _mm512_set1_ps(sc), v);
        if (w->zero) v = _mm512_fnmadd_ps(gsv, _mm512_set1_ps(sc * w->zero[ri * w->n_groups + f->g]), v);
        _mm512_store_ps(acc[tt][q][i], v);
    }
}

/* Rows [r0, r0 + 16·nrb) × tokens [0, 16·ntt) (ntt ≤ QN_LAMX_TT) over every column; y: token t at y + t·ldy. Per
 * 512-column chunk: the B tiles of every token tile; then per row step (32 rows, two row blocks; tables 16 rows) and
 * group segment the A tiles once, and per token group (a pair of token tiles; tables four) the products into C
 * tiles 4..7, folded into acc at the segment's end; at the chunk's end acc goes to y (transposed). */
QN_LAMX static void amx_pass(const qn_lutq_weight *w, const float *x, int64_t ldx, int ntt, float *y, int64_t ldy,
                             int64_t r0, int64_t nrb) {
    _Alignas(64) lamx_tile xb[QN_LAMX_TT][QN_LAMX_KS][3]; /* 384 KiB: the chunk's B tiles */
    _Alignas(64) float xs[16][QN_LAMX_CHUNK];             /* act-order: a token tile's gathered activations */
    _Alignas(64) float gs[QN_LAMX_KS][QN_LAMX_TT * 16];   /* Σx of each segment (zero points) */
    _Alignas(64) float acc[QN_LAMX_TT][2][16][16];        /* [token tile][row block][row][token] */
    _Alignas(64) lamx_tile a[QN_LAMX_KS][3], c; /* A: a segment's decoded weights, 2 row blocks (tables: 3 parts) */
    int64_t sg_g[QN_LAMX_KS], sg_k0[QN_LAMX_KS], sg_k1[QN_LAMX_KS]; /* segments: group, k-steps [k0, k1) */
    const int64_t K = w->k, G = w->n_groups, row_bytes = qn_lutq_row_bytes(K, w->code_bits);
    const int bits4 = w->code_bits == 4, tab = !w->lut_identity;
    __m512i tbl[3];
    if (tab) table_parts(w->lut, tbl);
    int64_t g = 0;
    for (int64_t c0 = 0; c0 < K; c0 += QN_LAMX_CHUNK) {
        const int64_t c1 = c0 + QN_LAMX_CHUNK < K ? c0 + QN_LAMX_CHUNK : K;
        const int nks = (int)((c1 - c0) / 32);
        int n_seg = 0;
        while (w->gstart[g + 1] <= c0) g++;
        for (int64_t gg = g; gg < G && w->gstart[gg] < c1; gg++, n_seg++) {
            const int64_t a0 = w->gstart[gg] > c0 ? w->gstart[gg] : c0, b0 = w->gstart[gg + 1] < c1 ? w->gstart[gg + 1] : c1;
            sg_g[n_seg] = gg, sg_k0[n_seg] = (a0 - c0) / 32, sg_k1[n_seg] = (b0 - c0) / 32;
        }
        for (int tt = 0; tt < ntt; tt++) { /* per token tile: gather (act-order), Σx per segment, B tiles */
            const float *xt[16];
            for (int t = 0; t < 16; t++) {
                const float *xr = x + (16 * tt + t) * ldx;
                if (w->perm) {
                    for (int64_t j = c0; j < c1; j++) xs[t][j - c0] = xr[w->perm[j]];
                    xt[t] = xs[t];
                } else
                    xt[t] = xr + c0;
                if (w->zero)
                    for (int s = 0; s < n_seg; s++) {
                        float sum = 0.0f;
                        for (int64_t j = 32 * sg_k0[s]; j < 32 * sg_k1[s]; j++) sum += xt[t][j];
                        gs[s][16 * tt + t] = sum;
                    }
            }
            prep_b(xt, nks, xb[tt]);
        }
        for (int64_t rb = 0; rb < nrb; rb += 2 - tab) {
            const int nr = !tab && nrb - rb > 1 ? 2 : 1; /* row blocks of this step: 16 or 32 rows (tables: 16) */
            const int64_t r = r0 + 16 * rb;
            const uint8_t *codes[2][16];
            for (int i = 0; i < 16 * nr; i++) codes[i / 16][i % 16] = w->codes + (r + i) * row_bytes;
            { /* the next step's pieces of this chunk: one short piece per row, which the hardware prefetchers miss */
                const int64_t b0 = qn_lutq_row_bytes(c0, w->code_bits), b1 = qn_lutq_row_bytes(c1, w->code_bits);
                for (int64_t i = 16 * nr; i < 32 * nr && r + i < r0 + 16 * nrb; i++)
                    for (int64_t o = b0 & ~(int64_t)63; o < b1; o += 64) _mm_prefetch((const char *)(w->codes + (r + i) * row_bytes + o), _MM_HINT_T0);
            }
            memset(acc, 0, (size_t)ntt * sizeof acc[0]);
            for (int s = 0; s < n_seg; s++) {
                const struct fold_seg fs = {w, r, s, sg_g[s], gs};
                for (int64_t ks = sg_k0[s]; ks < sg_k1[s]; ks++) {
                    if (tab) decode_a_table(codes[0], c0 + 32 * ks, tbl, a[ks]);
                    else
                        for (int q = 0; q < nr; q++) decode_a(codes[q], bits4, c0 + 32 * ks, &a[ks][q]);
                }
                for (int tg = 0; tg < ntt; tg += tab ? 4 : 2) { /* token groups: C tiles 4..7 */
                    _tile_zero(4);
                    _tile_zero(5);
                    _tile_zero(6);
                    _tile_zero(7);
                    for (int64_t ks = sg_k0[s]; ks < sg_k1[s]; ks++) {
                        _tile_loadd(0, a[ks][0].d, 64);
                        if (tab) { /* token tiles tg..tg+3 */
                            const int tq = tg;
                            _tile_loadd(1, a[ks][1].d, 64);
                            _tile_loadd(2, a[ks][2].d, 64);
                            QN_LAMX_TAB(0, 4);
                            QN_LAMX_TAB(1, 5);
                            QN_LAMX_TAB(2, 6);
                            QN_LAMX_TAB(3, 7);
                        } else { /* token tiles tg, tg+1: C tiles 4, 5 (rows 0..15), 6, 7 (16..31) */
                            const int tp = tg;
                            if (nr > 1) _tile_loadd(1, a[ks][1].d, 64);
                            QN_LAMX_DP(0, 2, 2, 4, 6); /* the small parts first */
                            QN_LAMX_DP(1, 2, 3, 5, 7);
                            QN_LAMX_DP(0, 1, 2, 4, 6);
                            QN_LAMX_DP(1, 1, 3, 5, 7);
                            QN_LAMX_DP(0, 0, 2, 4, 6);
                            QN_LAMX_DP(1, 0, 3, 5, 7);
                        }
                    }
                    for (int ct = 0; ct < 4; ct++) { /* C tile 4 + ct: tables token tile tg + ct; else tg + ct % 2, row block ct / 2 */
                        const int tt = tab ? tg + ct : tg + ct % 2, q = tab ? 0 : ct / 2;
                        if (tt < ntt && q < nr) fold_c(&fs, ct, &c, tt, q, acc);
                    }
                }
            }
            for (int tt = 0; tt < ntt; tt++) /* [row][token] -> y's [token][row] */
                for (int q = 0; q < nr; q++) {
                    __m512i v[16];
                    for (int i = 0; i < 16; i++) v[i] = _mm512_load_si512(acc[tt][q][i]);
                    tr16(v);
                    for (int t = 0; t < 16; t++) {
                        float *yp = y + (16 * tt + t) * ldy + r + 16 * q;
                        __m512 o = _mm512_castsi512_ps(v[t]);
                        if (c0 > 0) o = _mm512_add_ps(o, _mm512_loadu_ps(yp));
                        _mm512_storeu_ps(yp, o);
                    }
                }
        }
    }
}
#undef QN_LAMX_DP
#undef QN_LAMX_TAB

/* lutq_matmul with whole 16-token × 16-row tiles on AMX where the weights allow it, the rest on the fp32 kernel */
QN_LAMX static void lutq_matmul_amx(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, float *y,
                                    int64_t ldy, int64_t row_begin, int64_t row_end) {
    bool ok = (w->lut_identity || w->code_bits == 4) && w->k % 32 == 0 && n_tokens >= 16 && row_end - row_begin >= 16;
    for (int64_t g = 0; ok && g <= w->n_groups; g++) ok = w->gstart[g] % 32 == 0;
    if (!ok) {
        QN_ISA_FN(qn_cpu_lutq_matmul_f32)(w, x, ldx, n_tokens, y, ldy, row_begin, row_end);
        return;
    }
    const int64_t t16 = n_tokens / 16 * 16, nrb = (row_end - row_begin) / 16, r16 = row_begin + 16 * nrb;
    lamx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) cfg.rows[i] = 16, cfg.colsb[i] = 64;
    _tile_loadconfig(&cfg);
    for (int64_t t0 = 0; t0 < t16; t0 += 16 * QN_LAMX_TT) {
        const int ntt = (int)((t16 - t0) / 16 < QN_LAMX_TT ? (t16 - t0) / 16 : QN_LAMX_TT);
        amx_pass(w, x + t0 * ldx, ldx, ntt, y + t0 * ldy, ldy, row_begin, nrb);
    }
    _tile_release();
    if (r16 < row_end) QN_ISA_FN(qn_cpu_lutq_matmul_f32)(w, x, ldx, t16, y, ldy, r16, row_end);
    if (t16 < n_tokens)
        QN_ISA_FN(qn_cpu_lutq_matmul_f32)(w, x + t16 * ldx, ldx, n_tokens - t16, y + t16 * ldy, ldy, row_begin, row_end);
}
#endif

void QN_ISA_FN(qn_cpu_fill_lutq_amx)(qn_cpu_kernels *k) {
#if defined(QN_SIMD_X86_512) && defined(__x86_64__)
    if (qn_cpu_amx_bf16_usable()) k->lutq_matmul = lutq_matmul_amx;
#else
    (void)k;
#endif
}
