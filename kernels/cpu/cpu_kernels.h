/* cpu_kernels.h — the CPU kernel set, one function table per ISA (scalar, AVX2, AVX-512, NEON, NEON+dotprod).
 * Every *_cpu.c under kernels/ is compiled once per ISA with QN_ISA set, giving suffixed symbols
 * (QN_ISA_FN(qn_vec_dot_q4_0) -> qn_vec_dot_q4_0_avx2); cpu_features.c picks the table once at
 * start-up by CPUID. CPU kernels take a row range and own no threads. */
#ifndef QN_CPU_KERNELS_H
#define QN_CPU_KERNELS_H

#include <stdbool.h>

#include "kernels/attention/attention.h"
#include "kernels/ops/vexp.h"
#include "kernels/quant/lutq.h"
#include "kernels/quant/qformat.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qn_cpu_isa {
    QN_CPU_ISA_AUTO = 0,
    QN_CPU_ISA_SCALAR,
    QN_CPU_ISA_AVX2,
    QN_CPU_ISA_AVX512,
    QN_CPU_ISA_NEON,
    QN_CPU_ISA_NEON_DOTPROD, /* NEON + the Armv8.2 SDOT/UDOT instructions (FEAT_DotProd) */
    QN_CPU_ISA_COUNT
} qn_cpu_isa;

/* out[t] = dot(w_row, a row t) for t < 4; a_rows: [4][a_stride bytes] in vec_dot_type(fmt).
 * Decodes each weight block once for four tokens; every out[t] is bit-identical to vec_dot's. */
typedef void (*qn_vec_dot_x4_fn)(int64_t n, float *out, const void *w_row, const void *a_rows, size_t a_stride);

/* y[t * ldy + r] = dot(w row r, a row t) for r < n_rows, t < n_tok; w: [n_rows][w_stride bytes] in fmt,
 * a: [n_tok][a_stride bytes] in vec_dot_type(fmt). A register tile of several rows × several tokens,
 * so each decoded weight block and each loaded activation block serve many outputs; every output is
 * bit-identical to vec_dot's (same per-block products, same accumulation order, same final sum). */
typedef void (*qn_vec_dot_tile_fn)(int64_t n, const void *w, size_t w_stride, int64_t n_rows, const void *a,
                                   size_t a_stride, int64_t n_tok, float *y, int64_t ldy);

/* y[t * ldy + 8g + r] = dot(W row 8g + r, a row t) for g < n_groups, r < 8, t < n_tok; w8: n_groups row groups of
 * a weight repacked 8 rows at a time (Q2_K .. Q6_K, Q4_0, Q5_0, Q5_1, Q8_0: gguf/kx8.h; group g at w8 + g·8·row
 * bytes), a: [n_tok][a_stride bytes] in vec_dot_type(fmt). Every output is bit-identical to the scalar table's vec_dot on W's plain rows (for the
 * K-quants also to this table's; the 32-element formats' 1-row SIMD dots sum in lanes and round otherwise). */
typedef void (*qn_matmul_x8_fn)(int64_t n, const void *w8, int64_t n_groups, const void *a, size_t a_stride,
                                int64_t n_tok, float *y, int64_t ldy);

/* y[t][r] = Σ_k W[r][k]·x[t][k] for r in [row_begin, row_end), t < n_tokens, W a repacked GPTQ/AWQ/bnb weight
 * (lutq.h); x: [n_tokens][ldx] fp32 in the checkpoint's column order; y: [n_tokens][ldy]. */
typedef void (*qn_lutq_matmul_fn)(const qn_lutq_weight *w, const float *x, int64_t ldx, int64_t n_tokens, float *y,
                                  int64_t ldy, int64_t row_begin, int64_t row_end);

/* y[t * ldy + r] = Σ_k W[r][k]·a[t][k] for r in [row_begin, row_end), t < n_tok; w: [rows][w_stride bytes] in fmt
 * (F16, BF16, F32), a: [n_tok][a_stride bytes] in vec_dot_type(fmt) (the same type). x86's panel GEMM
 * (float_gemm_cpu.c): fp32 sums in another order than vec_dot's (not bit-identical). QN_ERR_NOMEM: no memory for its
 * scratch (the caller takes the dot path). */
typedef qn_status (*qn_float_gemm_fn)(int64_t k, const void *w, size_t w_stride, const void *a, size_t a_stride,
                                      int64_t n_tok, float *y, int64_t ldy, int64_t row_begin, int64_t row_end);
/* x86 panel GEMMs (kernels/cpu/panel_x86.h): tokens per block, the rows of their activation scratch */
#define QN_PANEL_TOKEN_BLOCK 192

/* y[i] = e^(x[i] - shift), i < n, in the table's exp form (vexp.h); x, y: [n] (may alias). */
typedef void (*qn_exp_row_fn)(int64_t n, float *y, const float *x, float shift);
/* g[i] = silu(g[i]) * u[i], i < n, as llama.cpp's CPU swiglu on the same ISA (vexp.h); g, u: [n]. */
typedef void (*qn_silu_mul_fn)(int64_t n, float *g, const float *u);

typedef struct qn_cpu_kernels {
    qn_cpu_isa isa;
    const char *isa_name;
    qn_vec_dot_fn vec_dot[QN_QFORMAT_COUNT];       /* weight fmt -> dot with its vec_dot_type row */
    qn_vec_dot_x4_fn vec_dot_x4[QN_QFORMAT_COUNT]; /* 1 row x 4 tokens (NULL: use vec_dot) */
    qn_vec_dot_tile_fn vec_dot_tile[QN_QFORMAT_COUNT]; /* rows x tokens blocks (NULL: use vec_dot_x4) */
    int32_t vec_dot_tile_rows[QN_QFORMAT_COUNT];   /* rows per register tile (row ranges best a multiple) */
    qn_matmul_x8_fn matmul_x8[QN_QFORMAT_COUNT];   /* weights repacked 8 rows at a time (NULL: no repack) */
    int32_t matmul_x8_min_chunk[QN_QFORMAT_COUNT]; /* qn_cpu_matmul_x8 passes at least this many tokens per call
                                                    * (0: its L2 sizing alone; a kernel that decodes each k-slice once
                                                    * per call amortizes that over them) */
    qn_quantize_row_fn from_float[QN_QFORMAT_COUNT]; /* activation quantizers (Q8_0, Q8_1, Q8_K, F16, BF16, F32) */
    qn_dequant_row_fn dequant[QN_QFORMAT_COUNT];   /* fast dequantizers (same results as the ref) */
    qn_float_gemm_fn float_gemm[QN_QFORMAT_COUNT]; /* F16 / BF16 / F32 from float_gemm_min_tokens tokens (NULL: none) */
    int32_t float_gemm_min_tokens[QN_QFORMAT_COUNT];
    qn_lutq_matmul_fn lutq_matmul;                 /* GPTQ / AWQ / bnb-4bit weights after the load-time repack */
    qn_attn_paged_fn attn_paged;                   /* paged attention of n_q query tokens (AVX2: in tiles) */
    qn_attn_paged_fn attn_paged_tokens;            /* the same one query token at a time: attn_paged's twin */
    int32_t attn_lanes_multi;                      /* accumulation lanes when the sequence has >= 2 query */
    int32_t attn_lanes_single;                     /* tokens in the step / exactly 1 (attention_cpu.c) */
    bool attn_single_pairwise;                     /* 1-token reduction tree (0+1)+(2+3) */
    int32_t attn_softmax_lanes;                    /* keys per softmax partial sum */
    qn_vexp_form vexp_form;                        /* exp of the softmax and SiLU (ggml's form on this ISA) */
    int32_t vexp_width;                            /* floats per vector of that form (SiLU tail: libm) */
    qn_exp_row_fn exp_row;                         /* the softmax's exp (attention_cpu.c inlines the same
                                                    * qn_vexp_row_isa; this entry is its tested handle) */
    qn_silu_mul_fn silu_mul;
} qn_cpu_kernels;

/* Whether this CPU has F16C (false off x86). */
bool qn_cpu_has_f16c(void);
/* Best ISA this CPU supports and this build compiled. */
qn_cpu_isa qn_cpu_isa_detect(void);
const char *qn_cpu_isa_name(qn_cpu_isa isa);
/* Fills *out with the table for isa (AUTO = detect). QN_ERR_UNSUPPORTED if the CPU or build lacks it. */
qn_status qn_cpu_kernels_select(qn_cpu_isa isa, qn_cpu_kernels *out);

/* y[t][r] = dot(W row r, x row t) for rows r in [row_begin, row_end) and all tokens t < n_tokens.
 * W: [n_rows][k] in format wfmt (row stride = qn_qformat_row_bytes(wfmt, k));
 * xq: [n_tokens][k] already converted to vec_dot_type(wfmt) (row stride likewise);
 * y: [n_tokens][ldy] floats. Weight rows are streamed once for all tokens. */
qn_status qn_cpu_matmul_rows(const qn_cpu_kernels *kern, qn_qformat wfmt, const void *w, int64_t k,
                             const void *xq, int64_t n_tokens, float *y, int64_t ldy,
                             int64_t row_begin, int64_t row_end);

/* Whether AMX-INT8 can run here: CPUID says AMX-TILE and AMX-INT8, and Linux grants this process the tile data state
 * (arch_prctl ARCH_REQ_XCOMP_PERM, a process-wide permission asked once per call; false elsewhere). */
bool qn_cpu_amx_int8_usable(void);
/* The same for AMX-BF16 (with AVX512_BF16 for the conversions its callers make). */
bool qn_cpu_amx_bf16_usable(void);

/* As qn_cpu_matmul_rows for a weight repacked 8 rows at a time (w8: the whole [n_rows / 8] groups, see
 * qn_matmul_x8_fn): row_begin and row_end must be multiples of 8. QN_ERR_UNSUPPORTED if the table has no
 * matmul_x8 kernel for wfmt. */
qn_status qn_cpu_matmul_x8(const qn_cpu_kernels *kern, qn_qformat wfmt, const void *w8, int64_t k, const void *xq,
                           int64_t n_tokens, float *y, int64_t ldy, int64_t row_begin, int64_t row_end);

#ifdef __cplusplus
}
#endif
#endif
