/* qformat.h — the weight/activation formats Quern knows and their traits table.
 * Owns: the qn_qformat enum, per-format block geometry, the scalar reference dequantizer and
 * reference quantizer of each format. Not: SIMD or CUDA kernels (quant.h, cpu_kernels.h).
 * Dispatch is through QN_QFORMATS[fmt], never a switch on raw ggml type ids. */
#ifndef QN_QFORMAT_H
#define QN_QFORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qn_qformat {
    QN_QFORMAT_F32 = 0,
    QN_QFORMAT_F16,
    QN_QFORMAT_BF16,
    QN_QFORMAT_Q4_0,
    QN_QFORMAT_Q4_1,
    QN_QFORMAT_Q5_0,
    QN_QFORMAT_Q5_1,
    QN_QFORMAT_Q8_0,
    QN_QFORMAT_Q8_1,
    QN_QFORMAT_Q2_K,
    QN_QFORMAT_Q3_K,
    QN_QFORMAT_Q4_K,
    QN_QFORMAT_Q5_K,
    QN_QFORMAT_Q6_K,
    QN_QFORMAT_Q8_K,
    QN_QFORMAT_COUNT,
    /* Device-only block formats (lutq_gpu.h): HF GPTQ/AWQ/bnb weights repacked once at load for the GPU
     * kernels. Outside QN_QFORMATS (no CPU kernels, no GGUF id, never in a file); of the functions below,
     * qn_qformat_row_bytes and qn_qformat_name know them. */
    QN_QFORMAT_LQ4 = 64, /* 32 x 4-bit codes, fp16 scale, integer zero: fp16(d * (q - z)) (GPTQ <= 4 bit, AWQ) */
    QN_QFORMAT_LQ8,      /* 32 x 8-bit codes, fp16 scale, integer zero (GPTQ 8-bit) */
    QN_QFORMAT_LNF4,     /* 32 x 4-bit NF4 codes, f32 absmax: fp16(absmax * nf4[q]) (bitsandbytes) */
    QN_QFORMAT_LFP4,     /* the same with the bitsandbytes FP4 table */
    QN_QFORMAT_LQ4M,     /* LQ4's values in 16-row x 128-column chunks for the tensor-core decode kernel (lq4m.h) */
    QN_QFORMAT_LNF4M,    /* NF4 codes in LQ4M's chunks, fp16 absmax per 64 columns (lq4m.h) */
    QN_QFORMAT_LFP4M,    /* the same with the bitsandbytes FP4 table */
    /* Device-only, GGUF (gguf/q6kp.h): a Q6_K block padded to 224 bytes, so that every block and field of it is
     * 16-byte aligned for the decode kernel's vector loads. Made at upload from Q6_K matmul weights. */
    QN_QFORMAT_Q6_KP = 80,
    /* Device-only, GGUF (gguf/q8_0p.h): eight Q8_0 blocks regrouped into a 272-byte super-block (8 scales, then
     * 256 codes), 16-byte aligned, the same bytes. Made at upload from Q8_0 matmul weights with K % 256 == 0. */
    QN_QFORMAT_Q8_0P = 81,
    /* Device-only, GGUF (gguf/q3kp.h): a Q3_K block padded to 112 bytes (16-byte aligned, +1.8%). Made at upload
     * from Q3_K matmul weights. */
    QN_QFORMAT_Q3_KP = 82,
} qn_qformat;

/* src: [n / block_elems] blocks, dst: [n] floats; n is a multiple of block_elems */
typedef void (*qn_dequant_row_fn)(const void *src, float *dst, int64_t n);
/* src: [n] floats, dst: [n / block_elems] blocks */
typedef void (*qn_quantize_row_fn)(const float *src, void *dst, int64_t n);
/* src: [n] floats (one row), dst: its blocks, qw: [n] importance weights (llama.cpp imatrix) */
typedef void (*qn_quantize_row_imatrix_fn)(const float *src, void *dst, int64_t n, const float *qw);
/* *out = dot(w_row, a_row) over n elements; w in the weight format, a in its vec_dot_type */
typedef void (*qn_vec_dot_fn)(int64_t n, float *out, const void *w_row, const void *a_row);

typedef struct qn_qformat_traits {
    const char *name;          /* ggml spelling: "q4_K", "f16" ... */
    uint32_t ggml_type;        /* id in GGUF tensor infos */
    int32_t block_elems;       /* elements per block (1 for plain types) */
    int32_t block_bytes;       /* bytes per block */
    bool is_quantized;
    qn_qformat vec_dot_type;   /* activation format its CPU dot product consumes (llama.cpp's) */
    qn_dequant_row_fn dequant_ref;   /* scalar reference, exact fp32 formulas of formats.md §2.2 */
    qn_quantize_row_fn quantize_ref; /* reference quantizer (NULL where none); for Q8_0 the activation one */
    /* llama-quantize's quantizer for model files (gguf_quantize.h): = quantize_ref except Q8_0, whose
     * weight rounding (roundf(x/d)) differs from the activation rounding; NULL for activation-only formats */
    qn_quantize_row_fn quantize_weight;
    /* llama-quantize's quantizer when the tensor has importance-matrix data (ggml's
     * quantize_row_*_impl); NULL where llama.cpp ignores the matrix (Q8_0, plain types) */
    qn_quantize_row_imatrix_fn quantize_imatrix;
} qn_qformat_traits;

extern const qn_qformat_traits QN_QFORMATS[QN_QFORMAT_COUNT];

/* Maps a GGUF/ggml type id to our enum; QN_ERR_UNSUPPORTED for ids we do not decode. */
qn_status qn_qformat_from_ggml(uint32_t ggml_type, qn_qformat *out);
/* Bytes of one row of n elements; 0 if n is not a multiple of the block size (device formats included). */
size_t qn_qformat_row_bytes(qn_qformat fmt, int64_t n);
const char *qn_qformat_name(qn_qformat fmt);
/* Parses "q4_0", "Q4_K", "f16", ... (case-insensitive); QN_ERR_NOT_FOUND if unknown. */
qn_status qn_qformat_parse(const char *name, qn_qformat *out);

#ifdef __cplusplus
}
#endif
#endif
