/* kq_tc.h — the tensor-core GEMM of GGUF weights (Q2_K, Q4_K, Q5_K; Q3_KP, Q6_KP, Q8_0P: Q3_K, Q6_K, Q8_0 as the
 * runtime uploads them, q3kp.h, q6kp.h, q8_0p.h) for many tokens on Hopper (kq_tc_sm90a.cu: wgmma, the dequant in
 * the tile loads, the weights read in their own blocks: no fp16 copy), and its host twin. quant_cuda.cu calls it
 * for path TC and, under AUTO, in qn_kq_tc_auto's window instead of dequant + cuBLAS.
 *
 * Values: Q2_K, Q4_K, Q5_K  w = fp16(S · q + B), S = fp16(d · sc), B = fp16(−dmin · m) (one f16x2 FMA on exact q);
 *         Q6_KP             w = fp16(S · (q − 32)), S = fp16(d · sc);
 *         Q3_KP             w = fp16(S · (q − 4)), S = fp16(d · (sc − 32)), q the two bits and the hmask bit as bit 2;
 *         Q8_0P             w = fp16(d · q).
 * ggml's fp16 dequant rounds d · sc · q − dmin · m (d · sc · (q − 32), d · (sc − 32) · (q − 4)) once, so for the
 * K-quants the two differ by at most ~1.5 fp16 ulp of max(|S q|, |B|); Q8_0's are ggml's bit for bit
 * (qn_kq_tc_dequant_host gives the GEMM's values bit for bit).
 *
 * x order: the GEMM reads x with the columns of each 64-column group permuted so that the k slots of its
 * tensor-core A fragments are the codes a lane loads in 8 bytes (of each half of the group). Q4_K: a group is one
 * "j" group of a block (32 code bytes per row, low nibbles its columns 0..31, high 32..63); Q5_K the same, the
 * fifth bits from qh[32] (the same bytes in every group); Q6_K: the low (or high) nibbles of one half block's
 * ql[64] (ql[0..31] columns 0..31, ql[32..63] columns 32..63, the top bits from qh[32]); Q3_KP (Q2_K): two 2-bit
 * groups of one half block's qs[32] (the first columns 0..31; Q3_K's third bits from hmask[32]); Q8_0P: two Q8_0
 * blocks (the first columns 0..31). In all, slot kk of k16 slice s (0..3) of a group is column
 *   32 (s & 1) + 8 t + 4 (s >> 1) + 2 (kk & 1) + (kk >> 3),  t = (kk & 7) >> 1
 * (qn_kq_tc_x_col). qn_kq_tc_prepare_x writes that order (once per x, shared by the matrices on one x). */
#ifndef QN_KQ_TC_H
#define QN_KQ_TC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/quant/qformat.h"
#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* AUTO takes the GEMM for QN_KQ_TC_MIN_TOKENS..QN_KQ_TC_MAX_TOKENS tokens on weights of at least QN_KQ_TC_MIN_ROWS
 * rows on sm_90a (above the mma kernel's range, quant.h QN_QUANT_MMA_MAX_TOKENS), for every format it reads
 * (qn_kq_tc_auto_format); elsewhere dequant + cuBLAS.
 * Measured (`quern bench kernels`, Llama-3-8B shapes): H100 (bench/results/gpu-kq-tc-2026-12-06.md, the 128-token
 * tile), GEMM against dequant + cuBLAS: n = 64 and 128 2.4-2.9x faster on the MLP shapes, 1.3-1.5x on 4096 x 4096;
 * n = 512 0.97-1.12x; n = 4096 0.59-0.71x; on 1024 x 4096 (k, v) slower at every n (too few row tiles).
 * H200 (bench/results/gpu-kq-tc-2026-12-07.md, 397ad7c): at n = 128 the 128-token tile is 1.3-2.1x dequant + cuBLAS
 * for all six formats (0.62-0.94x cuBLAS fp16); at n = 512 the 256-token tile 1.0-1.7x the 128-token one on the MLP
 * shapes (0.63-0.92x cuBLAS fp16), 0.89-1.22x of it on 4096 x 4096; Llama-3-8B Q4_K_M pp512 +7.8% over dequant +
 * cuBLAS with the wide tile in AUTO, pp1024 and pp2048 -4% and -6% with the GEMM up to 2048 tokens: hence the
 * window's 512. H100 (same file, round 2, 151ac4f): at n = 1024 the 256-token tile runs at 0.79-1.03x dequant +
 * cuBLAS (which is 0.71-0.79x cuBLAS fp16 there). */
#ifndef QN_KQ_TC_MIN_TOKENS
#define QN_KQ_TC_MIN_TOKENS 33
#endif
#ifndef QN_KQ_TC_MAX_TOKENS
#define QN_KQ_TC_MAX_TOKENS 512
#endif
#ifndef QN_KQ_TC_MIN_ROWS
#define QN_KQ_TC_MIN_ROWS 4096
#endif
/* Every format's A side has run on a GPU (test_kq_tc on an H200, 397ad7c: both tiles, against the exact weights and
 * the twin; compute-sanitizer clean); -DQN_KQ_TC_AUTO_ALL_FORMATS=0 builds the twin that keeps Q2_K, Q5_K, Q3_KP and
 * Q8_0P on dequant + cuBLAS (the A/B measure). */
#ifndef QN_KQ_TC_AUTO_ALL_FORMATS
#define QN_KQ_TC_AUTO_ALL_FORMATS 1
#endif
static inline bool qn_kq_tc_auto_format(qn_qformat f) {
    return f == QN_QFORMAT_Q4_K || f == QN_QFORMAT_Q6_KP ||
           (QN_KQ_TC_AUTO_ALL_FORMATS && (f == QN_QFORMAT_Q2_K || f == QN_QFORMAT_Q5_K || f == QN_QFORMAT_Q3_KP ||
                                          f == QN_QFORMAT_Q8_0P));
}
static inline bool qn_kq_tc_auto(qn_qformat f, int64_t N, int64_t n) {
    return qn_kq_tc_auto_format(f) && N >= QN_KQ_TC_MIN_ROWS && n >= QN_KQ_TC_MIN_TOKENS && n <= QN_KQ_TC_MAX_TOKENS;
}

/* The GEMM's CTA tile: 128 weight rows by 128 tokens, or by 256 (each weight decoded once for twice the tokens;
 * kq_tc_sm90a.cu). A call names one (tile 128 or 256) or takes qn_kq_tc_tile_tokens (tile 0, as AUTO does): 256
 * from QN_KQ_TC_WIDE_MIN_TOKENS tokens on where that is > 0, else 128. 129 by default (H200 figures above: 128 wins
 * at 128 tokens, 256 at 512; H100, round 2 of the same file: 8B pp192 and pp256 1.07-1.31x the build with 257);
 * -DQN_KQ_TC_WIDE_MIN_TOKENS=0 builds the twin with 128 always. test_kq_tc runs both tiles at every n,
 * `quern bench kernels` times both. */
#ifndef QN_KQ_TC_WIDE_MIN_TOKENS
#define QN_KQ_TC_WIDE_MIN_TOKENS 129
#endif
/* Q4_K and Q5_K (one A side, kq_tc_sm90a.cu's a_q4k) keep the 128-token tile on weights of fewer than
 * QN_KQ_TC_WIDE_MIN_ROWS rows (the 8B q/o 4096 x 4096), the other formats take the wide tile on any. H100
 * (bench/results/gpu-kq-tc-2026-12-07.md, rounds 2 and 3), 4096 x 4096, 128-token tile against 256: at n = 256 Q4_K
 * 26.1 against 28.5 us, Q5_K 27.2 / 30.9; at 512 37.9 / 42.5 and 41.2 / 46.2 (H200, round 1: 0.90x and 0.89x at
 * 512); the others within 2.5% either way but Q8_0P (29.6 / 33.5 us at 256 on the wide tile). On 14336 rows the wide
 * tile wins for every format. 0 builds the twin with the wide tile on every N. */
#ifndef QN_KQ_TC_WIDE_MIN_ROWS
#define QN_KQ_TC_WIDE_MIN_ROWS 8192
#endif
static inline bool qn_kq_tc_narrow_below_rows(qn_qformat f) { return f == QN_QFORMAT_Q4_K || f == QN_QFORMAT_Q5_K; }
/* the default tile of a call on n tokens of N x K weights of fmt f */
static inline int qn_kq_tc_tile_tokens(qn_qformat f, int64_t N, int64_t n) {
    if (QN_KQ_TC_WIDE_MIN_TOKENS <= 0 || n < QN_KQ_TC_WIDE_MIN_TOKENS) return 128;
    return N < QN_KQ_TC_WIDE_MIN_ROWS && qn_kq_tc_narrow_below_rows(f) ? 128 : 256;
}
/* the tile of a call that names tile (0: the default, qn_kq_tc_tile_tokens); a tile is 0, 128 or 256 */
static inline bool qn_kq_tc_tile_valid(int tile) { return tile == 0 || tile == 128 || tile == 256; }
static inline int qn_kq_tc_tile_of(int tile, qn_qformat f, int64_t N, int64_t n) {
    return tile ? tile : qn_kq_tc_tile_tokens(f, N, n);
}

/* The formats the GEMM reads. */
static inline bool qn_kq_tc_has_format(qn_qformat f) {
    return f == QN_QFORMAT_Q2_K || f == QN_QFORMAT_Q4_K || f == QN_QFORMAT_Q5_K || f == QN_QFORMAT_Q6_KP ||
           f == QN_QFORMAT_Q3_KP || f == QN_QFORMAT_Q8_0P;
}

/* The source column (0..63) of the prepared x's column c (0..63) within a 64-column group (the header comment). */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline int qn_kq_tc_x_col(int c) {
    const int s = c >> 4, kk = c & 15, t = (kk & 7) >> 1;
    return 32 * (s & 1) + 8 * t + 4 * (s >> 1) + 2 * (kk & 1) + (kk >> 3);
}

/* Host twin: out [n][k] fp16 bits of the GEMM's weight values, in natural column order, from rows w [n][k / 256]
 * of fmt's blocks. QN_ERR_SHAPE unless k is a positive multiple of 256; QN_ERR_UNSUPPORTED for another fmt. */
qn_status qn_kq_tc_dequant_host(qn_qformat fmt, const void *w, int64_t n, int64_t k, uint16_t *out);

/* --- GPU (definitions in kq_tc_sm90a.cu; stubs that refuse in builds without sm_90a code) --- */

/* Whether the GEMM runs N x K weights of fmt on this device (sm 90 with sm_90a code; N % 16 == 0, K % 256 == 0). */
bool qn_kq_tc_takes(int sm, qn_qformat fmt, int64_t N, int64_t K);
/* xt [n][K] fp16 = x [n][K] fp16 in the GEMM's column order; both 16-byte aligned. */
qn_status qn_kq_tc_prepare_x(const void *x, int64_t n, int64_t K, void *xt, void *stream);
/* The K split of a call on n tokens of fmt in tiles of qn_kq_tc_tile_of(tile, fmt, N, n) (a valid tile): none where
 * its tiles fill the SMs, else as many as the idle SMs allow (at most 8, at least 16 steps of 64 columns per split);
 * steps per split, a multiple of 4, in *cps. Returns the number of splits. */
int qn_kq_tc_split(int n_sm, qn_qformat fmt, int64_t N, int64_t K, int64_t n, int tile, int *cps);
/* Bytes of split-K sums any call of at most n tokens needs, on either tile (0 where none splits). */
size_t qn_kq_tc_part_bytes(int n_sm, int64_t N, int64_t K, int64_t n);
/* y[n][N] f32 = x . W^T, W [N][K / 256] blocks of fmt (device, 16-byte aligned rows), xt the prepared x, in CTA tiles
 * of qn_kq_tc_tile_of(tile, fmt, N, n) tokens; part: the split-K sums (qn_kq_tc_part_bytes, 16-byte aligned; NULL
 * where it is 0). Deterministic; no allocation or synchronisation (CUDA-graph capturable). QN_ERR_UNSUPPORTED where
 * !qn_kq_tc_takes; QN_ERR_INVALID_ARG for another tile. */
qn_status qn_kq_tc_cuda(int sm, int n_sm, qn_qformat fmt, const void *w, int64_t N, int64_t K, const void *xt,
                        int64_t n, int tile, float *y, void *part, size_t part_bytes, void *stream);

#ifdef __cplusplus
}
#endif
#endif /* QN_KQ_TC_H */
