/* lutq_gpu.h — the GPU form of HF GPTQ/AWQ/bitsandbytes weights: device block formats that a CPU-layout
 * qn_lutq_weight (lutq.h) is repacked into once, at load, so that the GGUF kernels (kq_kernel.cuh: decode
 * GEMV, tensor-core MMA, dequant to fp16 + cuBLAS) serve them through their kq_fmt traits
 * (lutq_decode.cuh). Owns: the block layouts, the host repack, the host twin of the device decode and the
 * GPU entry points (an optional act-order gather of x, then the quant.h paths). Not: the CPU layout or
 * the peers' formats (lutq.h, gptq/ awq/ nf4/), device memory, the kernels themselves.
 *
 * Blocks cover 32 consecutive columns of a row in kernel order j (lutq.h: act-order columns sorted by
 * g_idx; x is gathered through perm before the matmul). Every block lies inside one group, so groups must
 * start on multiples of 32 (group sizes 32/64/128/..., per-channel -1, act-order with such groups); other
 * g_idx layouts get QN_ERR_UNSUPPORTED and the caller keeps a dequantized fp16 copy. Values, each rounded
 * once to fp16 (RN-even), the same bits as the peers' fp16 dequant (formats.md §3.3, §4.1, §5.2):
 *   LQ4, LQ8:   w = fp16(d · (q − z))   d fp16, q − z an exact small integer, so the product is exact before
 *               its one rounding (the device computes it as one HMUL2 of (1024 + q) − (1024 + z) by d)
 *   LNF4, LFP4: w = fp16(fp32(a · map[q]))  a = the f32 block absmax (double quant already resolved), map =
 *               bitsandbytes' NF4 / FP4 table; checkpoints with another quant_map are refused (a table
 *               that differs only in the sign of a zero entry is taken: its zero weights may then come
 *               out as -0 where the peer has +0, or the reverse)
 * The scale is stored per 32-block (repeated across a group): simplest for every group size and act-order.
 * LQ4M (lq4m.h) holds LQ4's values in 16-row chunks for its own tensor-core kernel (4.25 bits per weight), LNF4M /
 * LFP4M the NF4 / FP4 codes in the same chunks with fp16 absmax per 64 columns (values within 2^-9 of LNF4's).
 * Memory, bits per weight: LQ4 5.0 (GPTQ-4 g128 4.16, so +20%; GPTQ 2/3-bit codes widen to 4 bits: 5.0
 * against 2.1/3.1), LQ8 9.0, LNF4/LFP4 5.0 (bnb 4.5, 4.13 with double quant); fp16 is 16.
 * When the peer's dtype is bf16 (lutq round BF16), the device still rounds to fp16 (the kernels' type):
 * the host twin then equals the unrounded lutq value rounded to fp16, not the peer's bf16.
 * Those fp16 weights are what the tensor-core paths (GEMV, MMA, dequant + cuBLAS) use. The decode path
 * (n <= QN_LUTQ_DECODE_MAX_TOKENS under AUTO, or opts path QN_QUANT_PATH_MMVQ; lutq_mmvq.cu) does not round
 * them: LQ4/LQ8 take x as q8 blocks (kq_mmvq.h) and sum d_w d_x (sum q x8 - z sum x8), integer parts exact,
 * so with the weights d (q - z) unrounded; LNF4/LFP4 keep x fp16 and sum table values (map rounded to fp16)
 * times x in fp16 per 16 products (HFMA2), then a (f32) times the block sum. */
#ifndef QN_LUTQ_GPU_H
#define QN_LUTQ_GPU_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/quant/lq4m.h"
#include "kernels/quant/lutq.h"
#include "kernels/quant/qformat.h"
#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- block layouts (formats.md §3-5 for the sources; all little-endian) --- */

/* LQ4: qs[i] holds column i (low nibble) and column 16 + i (high nibble), as ggml's Q4_0 */
typedef struct qn_block_lq4 {
    uint16_t d;      /* fp16 scale */
    uint16_t zb;     /* fp16 bits of 1024 + z (0x6400 + z): the code offset the decoder subtracts */
    uint8_t qs[16];
} qn_block_lq4;
static_assert(sizeof(qn_block_lq4) == 20, "lq4 block size");

/* LQ8: qs[i] = code of column i */
typedef struct qn_block_lq8 {
    uint16_t d;
    uint16_t zb;     /* 0x6400 + z, z <= 255 */
    uint8_t qs[32];
} qn_block_lq8;
static_assert(sizeof(qn_block_lq8) == 36, "lq8 block size");

/* LNF4 / LFP4: qs[i] holds column 2i (low nibble) and 2i + 1 (high nibble), so 32-bit word w holds
 * columns 8w..8w+7 as nibbles 0..7 (the decoder looks 4 codes up per byte permutation) */
typedef struct qn_block_lnf4 {
    float a;         /* f32 block absmax */
    uint8_t qs[16];
} qn_block_lnf4;
static_assert(sizeof(qn_block_lnf4) == 20, "lnf4 block size");

#define QN_LUTQ_GPU_BLOCK 32 /* columns per block */

static inline bool qn_lutq_gpu_is_format(qn_qformat f) {
    return f == QN_QFORMAT_LQ4 || f == QN_QFORMAT_LQ8 || f == QN_QFORMAT_LNF4 || f == QN_QFORMAT_LFP4 ||
           qn_lq4m_is_format(f); /* the M forms: 16-row chunks (lq4m.h) */
}
/* bytes of one 32-column block; 0 for the M forms (chunks of 16 rows, lq4m.h) and other formats */
static inline size_t qn_lutq_gpu_block_bytes(qn_qformat f) {
    return f == QN_QFORMAT_LQ8 ? sizeof(qn_block_lq8)
           : f == QN_QFORMAT_LQ4 || f == QN_QFORMAT_LNF4 || f == QN_QFORMAT_LFP4 ? sizeof(qn_block_lq4) : 0;
}
static inline const char *qn_lutq_gpu_format_name(qn_qformat f) {
    return f == QN_QFORMAT_LQ4 ? "lq4" : f == QN_QFORMAT_LQ8 ? "lq8" : f == QN_QFORMAT_LNF4 ? "lnf4"
           : f == QN_QFORMAT_LFP4 ? "lfp4" : f == QN_QFORMAT_LQ4M ? "lq4m" : f == QN_QFORMAT_LNF4M ? "lnf4m"
           : f == QN_QFORMAT_LFP4M ? "lfp4m" : "?";
}
/* The 16-entry table of LNF4 / LNF4M (bitsandbytes NF4) or LFP4 / LFP4M (FP4, code 8 = +0); NULL for the others. */
const float *qn_lutq_gpu_map(qn_qformat f);

/* --- host: format choice, repack, twin --- */

/* The device format w repacks into; QN_ERR_UNSUPPORTED (reason in why) when none fits: K or a group start
 * not on a 32-column block, a scale not exact in fp16 (bf16 scales below fp16's normal range), a zero
 * point that is not an integer code, a table other than identity / NF4 / FP4, a weight that overflows fp16.
 * Gives LQ4 for 4-bit integer codes, LNF4 / LFP4 for the tables; the caller may take their M form (LQ4M, LNF4M,
 * LFP4M) instead where qn_lq4m_takes (lq4m.h). */
qn_status qn_lutq_gpu_format(const qn_lutq_weight *w, qn_qformat *fmt, char *why, size_t why_cap);

/* Bytes of w's blocks in fmt: n * (k / 32) blocks (rows back to back, qn_qformat_row_bytes(fmt, k) each). */
size_t qn_lutq_gpu_bytes(const qn_lutq_weight *w, qn_qformat fmt);

/* Writes w's blocks in fmt (from qn_lutq_gpu_format) to out [n][k/32] blocks. The act-order perm is not
 * part of them: the caller uploads w->perm ([k] int32) next to them. */
qn_status qn_lutq_gpu_repack(const qn_lutq_weight *w, qn_qformat fmt, void *out);
/* Rows [r0, r1) only, to out = their (r1 - r0) * (k / 32) blocks: disjoint row ranges may be repacked
 * concurrently (the load splits a weight over its threads); the bytes equal that slice of qn_lutq_gpu_repack.
 * LQ4M (lq4m.h): r0 and r1 on 16-row strips (qn_lutq_gpu_row_unit), else QN_ERR_INVALID_ARG. */
qn_status qn_lutq_gpu_repack_rows(const qn_lutq_weight *w, qn_qformat fmt, int64_t r0, int64_t r1, void *out);

/* Rows a repack_rows range must start on: 16 for the M forms, else 1. */
static inline int64_t qn_lutq_gpu_row_unit(qn_qformat f) { return qn_lq4m_is_format(f) ? QN_LQ4M_ROWS : 1; }

/* The host twin of the device decode: out [n][k] fp16 bits in kernel column order (what
 * qn_quant_dequant_cuda(ctx, fmt, ...) writes for the same blocks), from the blocks alone. */
void qn_lutq_gpu_dequant_host(qn_qformat fmt, const void *blocks, int64_t n, int64_t k, uint16_t *out);

/* --- path choice (as quant.h's qn_quant_use_mmvq) --- */

/* n <= this under AUTO: the decode path (int8 for LQ4/LQ8, the fp16 table GEMV for LNF4/LFP4) instead of
 * the tensor-core GEMV. A first value, not yet measured: bench_gpu_lutq prints both paths at n = 1..16;
 * set it per format from there (the int8 GGUF path won up to n = 8 for the legacy formats). */
#define QN_LUTQ_DECODE_MAX_TOKENS 8
/* Measured on an H200 (bench/results/gpu-kernels-2026-12-02.md, Llama-3-8B shapes): LQ4/LQ8 beat the GEMV up
 * to n = 8; LNF4/LFP4 up to n = 2 (even at 4, slower at 8: 16.9 vs 14.1 us on 4096x4096). */
static inline int qn_lutq_decode_auto_max_tokens(qn_qformat f) {
    if (f == QN_QFORMAT_LNF4 || f == QN_QFORMAT_LFP4) return 2;
    if (qn_lq4m_is_format(f)) return 0; /* their own mma kernel at every n up to QN_LQ4M_MMA_MAX_TOKENS (lq4m.h) */
    return qn_lutq_gpu_is_format(f) ? QN_LUTQ_DECODE_MAX_TOKENS : 0;
}
static inline bool qn_lutq_use_decode(qn_qformat f, int sm, int64_t n_tokens) {
    return sm >= 80 && n_tokens >= 1 && n_tokens <= qn_lutq_decode_auto_max_tokens(f);
}

/* --- GPU (definitions only with QN_HAVE_CUDA; qn_quant_cuda_ctx comes from quant.h) --- */

typedef struct qn_quant_cuda_ctx qn_quant_cuda_ctx;

typedef struct qn_lutq_gpu_weight {
    qn_qformat fmt;        /* LQ4 / LQ8 / LNF4 / LFP4 */
    int64_t n, k;          /* output rows, input columns (k a multiple of 32) */
    const void *blocks;    /* [n][k/32] blocks, device, 16-byte aligned */
    const int32_t *perm;   /* [k] device: original column of kernel column j; NULL = identity */
} qn_lutq_gpu_weight;

/* Workspace bytes for n tokens of an N x K weight in fmt under AUTO: for the decode path the split-K
 * counters (64 KB, untouched) and, for LQ4/LQ8, the q8 activations (qn_mmvq_x_bytes) behind them, else
 * qn_quant_matmul_workspace_size of the blocks; with a perm (act_order), room for the gathered x [n][K]
 * fp16 behind that (never over the counters), except on the LQ4/LQ8 decode path (its quantizer reads x
 * through perm). 0: none needed (LNF4/LFP4 decode without act-order). Zero-fill
 * it once after allocation (quant.h). _path: the same for an explicit path (QN_QUANT_PATH_MMVQ: decode). */
size_t qn_lutq_matmul_workspace_size(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, int64_t N, int64_t K, bool act_order,
                                     int64_t n);
size_t qn_lutq_matmul_workspace_size_path(const qn_quant_cuda_ctx *ctx, qn_qformat fmt, int path /* qn_quant_path */,
                                          int64_t N, int64_t K, bool act_order, int64_t n);

/* y[n][w->n] f32 = x[n][w->k] fp16 (original column order) . W^T, on stream (cudaStream_t). Path: opts NULL
 * or AUTO: the decode path for n <= qn_lutq_decode_auto_max_tokens, else the one quant.h picks; opts
 * QN_QUANT_PATH_MMVQ: the decode path for any n (launches of 8; opts->split: warps per row 0, 1, 2, 4);
 * any other path: that tensor-core / cuBLAS path. With a perm, x is first gathered into the workspace:
 * x_perm[t][j] = x[t][perm[j]]; on the LQ4/LQ8 decode path the q8 quantizer reads x through perm instead
 * (one launch, kq_mmvq_quantize_x_perm), and opts->x_ready says the workspace holds the q8 of x gathered
 * through this same perm (weights of one input share their g_idx, so q, k, v or gate, up share it).
 * No allocation or synchronisation (CUDA-graph capturable).
 * QN_ERR_INVALID_ARG when the workspace is short of the size above for the path taken (no fallback). */
qn_status qn_lutq_matmul_cuda(const qn_quant_cuda_ctx *ctx, const qn_lutq_gpu_weight *w,
                              const void *x, /* [n][k] fp16 */ int64_t n, float *y /* [n][w->n] */,
                              void *workspace, size_t ws_bytes, void *stream);
struct qn_quant_matmul_opts;
qn_status qn_lutq_matmul_cuda_ex(const qn_quant_cuda_ctx *ctx, const qn_lutq_gpu_weight *w, const void *x, int64_t n,
                                 float *y, void *workspace, size_t ws_bytes, void *stream,
                                 const struct qn_quant_matmul_opts *opts);

/* The q8 activations that w's LQ4/LQ8 decode path on n tokens reads (x gathered through w->perm, or as it is
 * without one) written to qn_quant_q8_x_in_workspace(workspace, ws_bytes, n, w->k): a later call on the same
 * x with opts x_ready (this call or the grouped quant.h one, for weights with the same perm) skips its own
 * quantizer. QN_ERR_UNSUPPORTED when that call would not take the q8 path (format, n past the AUTO limit),
 * QN_ERR_INVALID_ARG for a workspace that cannot hold them. One launch; graph-capturable. */
qn_status qn_lutq_quantize_x_cuda(const qn_quant_cuda_ctx *ctx, const qn_lutq_gpu_weight *w, const void *x, int64_t n,
                                  void *workspace, size_t ws_bytes, void *stream);

/* x_perm[t][j] = x[t][perm[j]], t < n, j < k (fp16; x_perm 16-byte aligned, not overlapping x). */
qn_status qn_lutq_gather_cuda(const void *x, const int32_t *perm, int64_t n, int64_t k, void *x_perm, void *stream);
/* The same, launched as a PDL dependent when pdl (sm_90: it starts while the kernel before finishes and lets the
 * matmul after it start, which must then wait for it: lq4m_cuda.cu). */
qn_status qn_lutq_gather_cuda_ex(const void *x, const int32_t *perm, int64_t n, int64_t k, void *x_perm, int pdl,
                                 void *stream);

#ifdef __cplusplus
}
#endif
#endif /* QN_LUTQ_GPU_H */
