/* lq4m.h — LQ4M, the Marlin-style GPU layout of 4-bit GPTQ/AWQ weights (lutq_gpu.h's LQ4 values, another
 * byte order), and LNF4M / LFP4M, the same chunks for bitsandbytes NF4 / FP4 codes: every thread of a warp reads
 * its tensor-core A fragments with one 16-byte load per 64 columns of a 16-row strip, and the scales cost 0.25
 * bit per weight instead of LQ4's / LNF4's 1.0 (4.25 bits per weight, LQ4 and LNF4 5.0, bnb NF4 4.5 or 4.13 with
 * double quant, fp16 16). Owns: the layouts, which weights take them, the host repack and host twin, the GPU
 * entry points (definitions in lq4m_cuda.cu: the mma matmul for few tokens, dequant to fp16 + cuBLAS for many; in
 * lq4m_tc_sm90a.cu: the wgmma GEMM for 33..1024 tokens on Hopper).
 * Not: the integer values (lutq_gpu.h: w = fp16(d · (q − z)), d fp16, q − z an exact small integer), the tables
 * (lutq_gpu.h: qn_lutq_gpu_map), the CPU layout.
 *
 * The "M forms" (qn_lq4m_is_format): LQ4M of a weight qn_lutq_gpu_format gives LQ4, LNF4M of LNF4, LFP4M of LFP4
 * (qn_lq4m_form_of), where qn_lq4m_takes: n % 16 == 0, k % 128 == 0, every group starting on a multiple of 128
 * (LQ4M: group 128, per-channel, act-order with group 128; one (d, z) per row and chunk) or of 64 (LNF4M / LFP4M:
 * bnb blocksize 64, 128, ...; one absmax per row and 64-column half chunk, no act-order perm, every absmax 0 or in
 * fp16's normal range).
 *
 * Layout: strips of 16 rows, each K/128 chunks of QN_LQ4M_CHUNK_BYTES (1088) bytes, strip-major:
 *   chunk (s, c) at byte (s · K/128 + c) · 1088 covers rows 16s..16s+15, kernel columns 128c..128c+127:
 *   [0, 1024)    codes: u32 word[h][lane][i], h < 2, lane < 32, i < 4 (lane's two 16-byte loads, h = 0, 1).
 *                Word (h, lane, i) is the A fragment of lane (g = lane / 4, t = lane % 4) for the 16x16 tile
 *                j = i % 2 of column pair-block p = 2h + i / 2, whose k slots map to kernel columns
 *                k_m = 128c + 32p + 8t + 4j + m (m < 4; the mma's B fragment of lane t is then x[8t .. 8t+7]
 *                of that 32-column block, one 16-byte load). The fragment's registers: a0 = row g (k_0, k_1),
 *                a1 = row g+8 (k_0, k_1), a2 = row g (k_2, k_3), a3 = row g+8 (k_2, k_3). LQ4M's nibbles:
 *                  nibble 0: row g, k_0    nibble 1: row g+8, k_0    nibble 2: row g, k_2    nibble 3: row g+8, k_2
 *                  nibble 4: row g, k_1    nibble 5: row g+8, k_1    nibble 6: row g, k_3    nibble 7: row g+8, k_3
 *                so (word >> 4e) & 0x000F000F | 0x64006400 is the half2 (1024 + q, 1024 + q') of register e.
 *                LNF4M / LFP4M: byte e holds register e's two codes (low nibble the first, k_0 or k_2), so
 *                one table lookup per byte gives the half2 of table values (lq4m_cuda.cu: a 256-entry table).
 *   [1024, 1088) scales: u32 per strip row r < 16. LQ4M: fp16 bits of d (low half) | (0x6400 + z) << 16 (high).
 *                LNF4M / LFP4M: fp16 of the absmax of columns 0..63 (low half) | of columns 64..127 << 16, so
 *                w = fp16(fp16(map[q]) · fp16(absmax)) (one HMUL2; within 2^-9 relative of LNF4's
 *                fp16(absmax · map[q]), test_quant_lq4m).
 * Row bytes (qn_qformat_row_bytes): K / 128 · 68. */
#ifndef QN_LQ4M_H
#define QN_LQ4M_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/quant/lutq.h"
#include "kernels/quant/qformat.h"
#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QN_LQ4M_ROWS 16          /* rows per strip */
#define QN_LQ4M_COLS 128         /* columns per chunk (and per scale) */
#define QN_LQ4M_CHUNK_BYTES 1088 /* 1024 code bytes + 16 scales */

static inline bool qn_lq4m_is_format(qn_qformat f) {
    return f == QN_QFORMAT_LQ4M || f == QN_QFORMAT_LNF4M || f == QN_QFORMAT_LFP4M;
}
/* table formats: codes looked up in a 16-entry table, one absmax per 64 columns */
static inline bool qn_lq4m_is_lut(qn_qformat f) { return f == QN_QFORMAT_LNF4M || f == QN_QFORMAT_LFP4M; }
/* The M form of a lutq_gpu.h block format (LQ4 -> LQ4M, LNF4 -> LNF4M, LFP4 -> LFP4M), else f itself. */
static inline qn_qformat qn_lq4m_form_of(qn_qformat f) {
    return f == QN_QFORMAT_LQ4 ? QN_QFORMAT_LQ4M : f == QN_QFORMAT_LNF4 ? QN_QFORMAT_LNF4M
           : f == QN_QFORMAT_LFP4 ? QN_QFORMAT_LFP4M : f;
}

/* Whether w fits the M form fmt (its block format, qn_lutq_gpu_format, has that M form, and the shape, groups,
 * perm and scales fit); why says what does not (may be NULL). */
bool qn_lq4m_takes(const qn_lutq_weight *w, qn_qformat fmt, char *why, size_t why_cap);

/* Writes rows [r0, r1) of w (r0, r1 multiples of 16, or r1 == w->n) in the M form fmt to out = their strips, the
 * same bytes as that slice of the whole repack (rows back to back at qn_qformat_row_bytes(fmt, k) per row).
 * QN_ERR_INVALID_ARG for unaligned rows, QN_ERR_UNSUPPORTED for a weight qn_lq4m_takes refuses. */
qn_status qn_lq4m_repack_rows(const qn_lutq_weight *w, qn_qformat fmt, int64_t r0, int64_t r1, void *out);

/* The host twin of the device decode: out [n][k] fp16 bits in kernel column order, from the chunks alone
 * (LQ4M: equal to qn_lutq_gpu_dequant_host of the LQ4 blocks of the same weight). */
void qn_lq4m_dequant_host(qn_qformat fmt, const void *chunks, int64_t n, int64_t k, uint16_t *out);

/* The fp16 bits of a table format's 16 values (qn_lutq_gpu_map rounded to fp16); zeros for LQ4M. */
void qn_lq4m_map16(qn_qformat fmt, uint16_t map16[16]);

/* --- GPU (definitions only with QN_HAVE_CUDA) --- */

typedef struct qn_quant_cuda_ctx qn_quant_cuda_ctx;
struct qn_quant_matmul_opts;

/* n <= this under AUTO: the mma kernel (in launches of up to 16 tokens; on sm_90a builds and devices the tensor-core
 * GEMM below takes n >= QN_LQ4M_TC_MIN_TOKENS first); beyond, dequant to fp16 + cuBLAS. Measured
 * on an H100 (bench/results/gpu-lq4m-2026-12-06.md): at n = 48 the mma kernel takes 48.7 / 53.5 us on the 8B MLP
 * shapes against ~100 for dequant + cuBLAS, and is even with it on 4096x4096 (25.1 against 24.9). */
#ifndef QN_LQ4M_MMA_MAX_TOKENS
#define QN_LQ4M_MMA_MAX_TOKENS 48
#endif

/* Workspace bytes of qn_lq4m_matmul_cuda for n tokens on path (AUTO, MMVQ / GEMV = the mma kernel,
 * DEQUANT_CUBLAS) of an N x K weight: the split-K counters (64 KB, zero between calls) and partial tiles, or the
 * fp16 weights; with act_order, the gathered x [n][K] fp16 behind them. 0 for a shape LQ4M does not take. */
size_t qn_lq4m_workspace_size(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, int path /* qn_quant_path */, int64_t N,
                              int64_t K, bool act_order, int64_t n);

/* The same for 1..3 weights of width K on one x (q, k, v; gate, up; one act-order perm or none) in one launch per
 * 16 tokens: their CTAs share the grid (and x is gathered once); the workspace of qn_lq4m_workspace_size_group
 * over their widths. mats[i].y [n][mats[i].N]; qn_quant_mat is quant.h's. */
size_t qn_lq4m_workspace_size_group(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, int path, const int64_t *N, int n_mat,
                                    int64_t K, bool act_order, int64_t n);
struct qn_quant_mat;
qn_status qn_lq4m_matmul_group_cuda(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const struct qn_quant_mat *mats,
                                    int n_mat, int64_t K, const int32_t *perm, const void *x, int64_t n, void *workspace,
                                    size_t ws_bytes, void *stream, const struct qn_quant_matmul_opts *opts);

/* y[n][N] f32 = x[n][K] fp16 (original column order, gathered through perm first when perm != NULL) . W^T,
 * W the chunks of M form fmt at w (device, 16-byte aligned; a table format takes no perm). opts: NULL / AUTO, or
 * path MMVQ / GEMV (the mma kernel, any n), DEQUANT_CUBLAS, TC (qn_lq4m_tc_cuda; QN_ERR_UNSUPPORTED where it does
 * not take the weights); opts->split forces the K split of the mma kernel (1, 2, 4, 8, 16; 0 = auto).
 * Deterministic; no allocation or synchronisation (CUDA-graph capturable). */
qn_status qn_lq4m_matmul_cuda(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, const void *w, const int32_t *perm, int64_t N,
                              int64_t K, const void *x, int64_t n, float *y, void *workspace, size_t ws_bytes,
                              void *stream, const struct qn_quant_matmul_opts *opts);

/* CTAs of fmt's mma kernel resident per SM on the current device (qn_quant_cuda_ctx.lq4m_ctas, lnf4m_ctas), >= 1. */
int qn_lq4m_ctas_per_sm(qn_qformat fmt);

/* The tensor-core GEMM for many tokens (lq4m_tc_sm90a.cu: wgmma, the dequant in the tile loads, no fp16 copy of
 * the weights; path QN_QUANT_PATH_TC): whether it takes fmt (an M form) at N x K on a device of compute capability sm
 * (sm_90 with the build's sm_90a code); xt [n][K] = x [n][K] fp16 (kernel column order) with its k slots in the
 * GEMM's order (qn_lq4m_tc_prepare_x, 16-byte aligned; once for the matrices of a grouped call); and
 * y[n][N] f32 = x . W^T from it. QN_ERR_UNSUPPORTED where it does not take the weight. Deterministic, no
 * allocation or synchronisation (capturable). */
bool qn_lq4m_tc_takes(int sm, qn_qformat fmt, int64_t N, int64_t K);
qn_status qn_lq4m_tc_prepare_x(const void *x, int64_t n, int64_t K, void *xt, void *stream);
/* part: the K split's partial sums where the tiles leave SMs idle (n_sm multiprocessors), part_bytes >=
 * qn_lq4m_tc_part_bytes (0 where it does not split), 16-byte aligned. */
size_t qn_lq4m_tc_part_bytes(int n_sm, int64_t N, int64_t K, int64_t n);
/* The K split of an N x K call on n tokens over n_sm multiprocessors (1..8; steps of 64 columns per split in *cps,
 * even): none where the 128 x 128 tiles fill the SMs, at least 16 steps per split. Host code, no CUDA calls. */
int qn_lq4m_tc_split(int n_sm, int64_t N, int64_t K, int64_t n, int *cps);
qn_status qn_lq4m_tc_cuda(int sm, int n_sm, qn_qformat fmt, const void *w, int64_t N, int64_t K, const void *xt, int64_t n,
                          float *y, void *part, size_t part_bytes, void *stream);
/* QN_LQ4M_TC_MIN_TOKENS <= n <= QN_LQ4M_TC_MAX_TOKENS under AUTO: the tensor-core GEMM where it takes the weights
 * (before the mma kernel and dequant + cuBLAS). Measured on an H100 (bench/results/gpu-lq4m-tc-2026-12-06.md): one
 * 128-token tile costs the same from 1 to 128 tokens, 16.8 / 42.8 / 39.1 us on the 8B q/o, gate/up, down shapes at
 * n = 64 against 23.6 / 101.0 / 103.9 for dequant + cuBLAS and 25.1 / 48.7 / 53.5 for the mma kernel at 48 (17.1 /
 * 32.5 / 36.0 at 32). With the lean step (11d497e; r5, same call): at n = 512 31.6 / 114.8 / 108.9 against 39.2 /
 * 150.2 / 135.3 for dequant + cuBLAS (cuBLAS on fp16 weights 27.2 / 95.5 / 85.7: 78-86% of its rate). At 1024
 * (r5, r6) the GEMM and dequant + cuBLAS are within 5% of each other (q/o and down either way, gate/up 4-10% the
 * GEMM's), 72-79% of cuBLAS for the GEMM in r6. The 8B prefill with the window up to 1024 against 512 (r6, same
 * call): pp1024 28892 against 27825 t/s (+3.8%), pp512 and pp2048 even; against 384 (r5) pp512 1.17-1.22x. */
#ifndef QN_LQ4M_TC_MIN_TOKENS
#define QN_LQ4M_TC_MIN_TOKENS 33
#endif
#ifndef QN_LQ4M_TC_MAX_TOKENS
#define QN_LQ4M_TC_MAX_TOKENS 1024
#endif
static inline bool qn_lq4m_tc_auto(int64_t n) { return n >= QN_LQ4M_TC_MIN_TOKENS && n <= QN_LQ4M_TC_MAX_TOKENS; }

/* out [N][K] fp16 (kernel column order) = the weights, as qn_lq4m_dequant_host. */
qn_status qn_lq4m_dequant_cuda(qn_qformat fmt, const void *w, int64_t N, int64_t K, void *out, void *stream);

#ifdef __cplusplus
}
#endif
#endif /* QN_LQ4M_H */
