/* matmul_cpu.c — qn_cpu_matmul_rows: y[t][r] = dot(W row r, x row t) through the selected kernel
 * table. ISA-independent: the *_cpu.c glob compiles this file once per ISA, and only the scalar
 * object defines the function. Owns no threads: the caller splits [0, n_rows) across its pool.
 * Loop nest: a tile of weight rows (~32 KiB, stays in L1/L2) × a chunk of tokens (~256 KiB of
 * activations, stays in L2) × 4 tokens at a time through vec_dot_x4, so every weight byte comes
 * from DRAM once and each decoded block is reused for 4 tokens. Where the format has a register
 * tile (vec_dot_tile: several rows × 4 tokens), the row tile is a whole number of its rows and each
 * (row tile, token chunk) goes to it in one call. F16 / BF16 / F32 weights go to the table's float_gemm (x86: a
 * panel GEMM) from float_gemm_min_tokens tokens on. */
#include "kernels/cpu/cpu_kernels.h"

#if !defined(QN_ISA) || defined(QN_ISA_SCALAR)

#define QN_MM_ROW_TILE_BYTES (32 * 1024)
#define QN_MM_TOK_CHUNK_BYTES (256 * 1024)

qn_status qn_cpu_matmul_rows(const qn_cpu_kernels *kern, qn_qformat wfmt, const void *w, int64_t k,
                             const void *xq, int64_t n_tokens, float *y, int64_t ldy,
                             int64_t row_begin, int64_t row_end) {
    if (!kern || (unsigned)wfmt >= QN_QFORMAT_COUNT || k <= 0 || n_tokens < 0 || row_begin < 0 ||
        row_end < row_begin)
        return QN_ERR_INVALID_ARG;
    if (row_end == row_begin || n_tokens == 0) return QN_OK;
    if (!w || !xq || !y || (n_tokens > 1 && ldy < row_end)) return QN_ERR_INVALID_ARG;
    const qn_vec_dot_fn dot = kern->vec_dot[wfmt];
    const qn_vec_dot_x4_fn dot4 = kern->vec_dot_x4[wfmt];
    const qn_vec_dot_tile_fn tile = kern->vec_dot_tile[wfmt];
    if (!dot) return QN_ERR_UNSUPPORTED;
    const size_t wrb = qn_qformat_row_bytes(wfmt, k);
    const size_t arb = qn_qformat_row_bytes(QN_QFORMATS[wfmt].vec_dot_type, k);
    if (!wrb || !arb) return QN_ERR_SHAPE;

    const uint8_t *wb = w, *xb = xq;
    const qn_float_gemm_fn gemm = kern->float_gemm[wfmt];
    if (gemm && n_tokens >= kern->float_gemm_min_tokens[wfmt]) { /* no memory for its scratch: the dot path below */
        const qn_status st = gemm(k, w, wrb, xq, arb, n_tokens, y, ldy, row_begin, row_end);
        if (st != QN_ERR_NOMEM) return st;
    }
    int64_t row_tile = (int64_t)(QN_MM_ROW_TILE_BYTES / wrb), tok_chunk = (int64_t)(QN_MM_TOK_CHUNK_BYTES / arb);
    if (tile) { /* whole register tiles */
        const int64_t tr = kern->vec_dot_tile_rows[wfmt] > 0 ? kern->vec_dot_tile_rows[wfmt] : 1;
        row_tile = row_tile / tr * tr;
        if (row_tile < tr) row_tile = tr;
    }
    if (row_tile < 1) row_tile = 1;
    tok_chunk = tok_chunk < 4 ? 4 : tok_chunk & ~(int64_t)3;

    for (int64_t r0 = row_begin; r0 < row_end; r0 += row_tile) {
        const int64_t r1 = r0 + row_tile < row_end ? r0 + row_tile : row_end;
        for (int64_t t0 = 0; t0 < n_tokens; t0 += tok_chunk) {
            const int64_t t1 = t0 + tok_chunk < n_tokens ? t0 + tok_chunk : n_tokens;
            if (tile && t1 - t0 >= 4) {
                tile(k, wb + (size_t)r0 * wrb, wrb, r1 - r0, xb + (size_t)t0 * arb, arb, t1 - t0, y + t0 * ldy + r0, ldy);
                continue;
            }
            for (int64_t r = r0; r < r1; r++) {
                const uint8_t *wr = wb + (size_t)r * wrb;
                int64_t t = t0;
                if (dot4)
                    for (; t + 4 <= t1; t += 4) {
                        float o[4];
                        dot4(k, o, wr, xb + (size_t)t * arb, arb);
                        for (int i = 0; i < 4; i++) y[(t + i) * ldy + r] = o[i];
                    }
                for (; t < t1; t++) dot(k, &y[t * ldy + r], wr, xb + (size_t)t * arb);
            }
        }
    }
    return QN_OK;
}

qn_status qn_cpu_matmul_x8(const qn_cpu_kernels *kern, qn_qformat wfmt, const void *w8, int64_t k, const void *xq,
                           int64_t n_tokens, float *y, int64_t ldy, int64_t row_begin, int64_t row_end) {
    if (!kern || (unsigned)wfmt >= QN_QFORMAT_COUNT || k <= 0 || n_tokens < 0 || row_begin < 0 ||
        row_end < row_begin || row_begin % 8 || row_end % 8)
        return QN_ERR_INVALID_ARG;
    const qn_matmul_x8_fn mm = kern->matmul_x8[wfmt];
    if (!mm) return QN_ERR_UNSUPPORTED;
    if (row_end == row_begin || n_tokens == 0) return QN_OK;
    if (!w8 || !xq || !y || (n_tokens > 1 && ldy < row_end)) return QN_ERR_INVALID_ARG;
    const size_t wrb = qn_qformat_row_bytes(wfmt, k); /* a group holds 8 rows' bytes */
    const size_t arb = qn_qformat_row_bytes(QN_QFORMATS[wfmt].vec_dot_type, k);
    if (!wrb || !arb) return QN_ERR_SHAPE;
    /* the same blocking as qn_cpu_matmul_rows: ~32 KiB of weight groups (at least one) × ~256 KiB of tokens */
    int64_t g_tile = (int64_t)(QN_MM_ROW_TILE_BYTES / (8 * wrb)), tok_chunk = (int64_t)(QN_MM_TOK_CHUNK_BYTES / arb);
    if (g_tile < 1) g_tile = 1;
    /* Q4_0, Q5_0, Q5_1, Q8_0 (32-element blocks): the kernel makes a table of the tokens' block data once per call, for every
     * group: 8 times the groups (~256 KiB of weights, in L2 beside a 4-token slice of activations) amortize it */
    if (QN_QFORMATS[wfmt].block_elems == 32) g_tile *= 8;
    else g_tile += g_tile & 1; /* the AVX-512 VNNI / AMX K-quant paths (kq_x512_cpu.c) take groups in pairs */
    if (tok_chunk < kern->matmul_x8_min_chunk[wfmt]) tok_chunk = kern->matmul_x8_min_chunk[wfmt];
    tok_chunk = tok_chunk < 4 ? 4 : tok_chunk & ~(int64_t)3;
    const uint8_t *wb = w8, *xb = xq;
    for (int64_t g0 = row_begin / 8; g0 < row_end / 8; g0 += g_tile) {
        const int64_t g1 = g0 + g_tile < row_end / 8 ? g0 + g_tile : row_end / 8;
        for (int64_t t0 = 0; t0 < n_tokens; t0 += tok_chunk) {
            const int64_t t1 = t0 + tok_chunk < n_tokens ? t0 + tok_chunk : n_tokens;
            mm(k, wb + (size_t)g0 * 8 * wrb, g1 - g0, xb + (size_t)t0 * arb, arb, t1 - t0, y + t0 * ldy + g0 * 8, ldy);
        }
    }
    return QN_OK;
}

#else
typedef int qn_matmul_cpu_isa_unused; /* keeps the per-ISA object a valid translation unit */
#endif
