/* qformat.c — the format traits table (QN_QFORMATS) and its lookups: ggml id -> enum, row bytes,
 * names. vec_dot_type follows llama.cpp's CPU backend (ggml-cpu type_traits_cpu). Weight-type
 * quantizers (gguf_quantize.h) fill quantize_ref and quantize_weight. */
#include "kernels/quant/qformat.h"

#include <ctype.h>

#include "kernels/quant/gguf/gguf_blocks.h"
#include "kernels/quant/gguf/gguf_quantize.h"
#include "kernels/quant/gguf/gguf_ref.h"
#include "kernels/quant/gguf/q3kp.h"
#include "kernels/quant/gguf/q6kp.h"
#include "kernels/quant/gguf/q8_0p.h"
#include "kernels/quant/lq4m.h"
#include "kernels/quant/lutq_gpu.h"

const qn_qformat_traits QN_QFORMATS[QN_QFORMAT_COUNT] = {
    [QN_QFORMAT_F32] = {.name = "f32", .ggml_type = 0, .block_elems = 1, .block_bytes = 4, .is_quantized = false,
                        .vec_dot_type = QN_QFORMAT_F32, .dequant_ref = qn_dequant_row_f32_ref,
                        .quantize_ref = qn_quantize_row_f32_ref, .quantize_weight = qn_quantize_row_f32_ref},
    [QN_QFORMAT_F16] = {.name = "f16", .ggml_type = 1, .block_elems = 1, .block_bytes = 2, .is_quantized = false,
                        .vec_dot_type = QN_QFORMAT_F16, .dequant_ref = qn_dequant_row_f16_ref,
                        .quantize_ref = qn_quantize_row_f16_ref, .quantize_weight = qn_quantize_row_f16_ref},
    [QN_QFORMAT_BF16] = {.name = "bf16", .ggml_type = 30, .block_elems = 1, .block_bytes = 2, .is_quantized = false,
                         .vec_dot_type = QN_QFORMAT_BF16, .dequant_ref = qn_dequant_row_bf16_ref,
                         .quantize_ref = qn_quantize_row_bf16_ref,
                         .quantize_weight = qn_quantize_row_bf16_ref},
    [QN_QFORMAT_Q4_0] = {.name = "q4_0", .ggml_type = 2, .block_elems = QN_QK4_0,
                         .block_bytes = sizeof(qn_block_q4_0), .is_quantized = true,
                         .vec_dot_type = QN_QFORMAT_Q8_0, .dequant_ref = qn_dequant_row_q4_0_ref,
                         .quantize_ref = qn_quantize_row_q4_0_ref, .quantize_weight = qn_quantize_row_q4_0_ref,
                         .quantize_imatrix = qn_quantize_row_q4_0_imatrix},
    [QN_QFORMAT_Q4_1] = {.name = "q4_1", .ggml_type = 3, .block_elems = QN_QK4_1,
                         .block_bytes = sizeof(qn_block_q4_1), .is_quantized = true,
                         .vec_dot_type = QN_QFORMAT_Q8_1, .dequant_ref = qn_dequant_row_q4_1_ref,
                         .quantize_ref = qn_quantize_row_q4_1_ref, .quantize_weight = qn_quantize_row_q4_1_ref,
                         .quantize_imatrix = qn_quantize_row_q4_1_imatrix},
    [QN_QFORMAT_Q5_0] = {.name = "q5_0", .ggml_type = 6, .block_elems = QN_QK5_0,
                         .block_bytes = sizeof(qn_block_q5_0), .is_quantized = true,
                         .vec_dot_type = QN_QFORMAT_Q8_0, .dequant_ref = qn_dequant_row_q5_0_ref,
                         .quantize_ref = qn_quantize_row_q5_0_ref, .quantize_weight = qn_quantize_row_q5_0_ref,
                         .quantize_imatrix = qn_quantize_row_q5_0_imatrix},
    [QN_QFORMAT_Q5_1] = {.name = "q5_1", .ggml_type = 7, .block_elems = QN_QK5_1,
                         .block_bytes = sizeof(qn_block_q5_1), .is_quantized = true,
                         .vec_dot_type = QN_QFORMAT_Q8_1, .dequant_ref = qn_dequant_row_q5_1_ref,
                         .quantize_ref = qn_quantize_row_q5_1_ref, .quantize_weight = qn_quantize_row_q5_1_ref,
                         .quantize_imatrix = qn_quantize_row_q5_1_imatrix},
    [QN_QFORMAT_Q8_0] = {.name = "q8_0", .ggml_type = 8, .block_elems = QN_QK8_0,
                         .block_bytes = sizeof(qn_block_q8_0), .is_quantized = true,
                         .vec_dot_type = QN_QFORMAT_Q8_0, .dequant_ref = qn_dequant_row_q8_0_ref,
                         .quantize_ref = qn_quantize_row_q8_0_ref,
                         .quantize_weight = qn_quantize_row_q8_0_weight_ref},
    /* activation format: no weight dot product, so its vec_dot_type is itself */
    [QN_QFORMAT_Q8_1] = {.name = "q8_1", .ggml_type = 9, .block_elems = QN_QK8_1,
                         .block_bytes = sizeof(qn_block_q8_1), .is_quantized = true,
                         .vec_dot_type = QN_QFORMAT_Q8_1, .dequant_ref = qn_dequant_row_q8_1_ref,
                         .quantize_ref = qn_quantize_row_q8_1_ref},
    [QN_QFORMAT_Q2_K] = {.name = "q2_K", .ggml_type = 10, .block_elems = QN_QK_K,
                         .block_bytes = sizeof(qn_block_q2_k), .is_quantized = true,
                         .vec_dot_type = QN_QFORMAT_Q8_K, .dequant_ref = qn_dequant_row_q2_k_ref,
                         .quantize_ref = qn_quantize_row_q2_k_ref, .quantize_weight = qn_quantize_row_q2_k_ref,
                         .quantize_imatrix = qn_quantize_row_q2_k_imatrix},
    [QN_QFORMAT_Q3_K] = {.name = "q3_K", .ggml_type = 11, .block_elems = QN_QK_K,
                         .block_bytes = sizeof(qn_block_q3_k), .is_quantized = true,
                         .vec_dot_type = QN_QFORMAT_Q8_K, .dequant_ref = qn_dequant_row_q3_k_ref,
                         .quantize_ref = qn_quantize_row_q3_k_ref, .quantize_weight = qn_quantize_row_q3_k_ref,
                         .quantize_imatrix = qn_quantize_row_q3_k_imatrix},
    [QN_QFORMAT_Q4_K] = {.name = "q4_K", .ggml_type = 12, .block_elems = QN_QK_K,
                         .block_bytes = sizeof(qn_block_q4_k), .is_quantized = true,
                         .vec_dot_type = QN_QFORMAT_Q8_K, .dequant_ref = qn_dequant_row_q4_k_ref,
                         .quantize_ref = qn_quantize_row_q4_k_ref, .quantize_weight = qn_quantize_row_q4_k_ref,
                         .quantize_imatrix = qn_quantize_row_q4_k_imatrix},
    [QN_QFORMAT_Q5_K] = {.name = "q5_K", .ggml_type = 13, .block_elems = QN_QK_K,
                         .block_bytes = sizeof(qn_block_q5_k), .is_quantized = true,
                         .vec_dot_type = QN_QFORMAT_Q8_K, .dequant_ref = qn_dequant_row_q5_k_ref,
                         .quantize_ref = qn_quantize_row_q5_k_ref, .quantize_weight = qn_quantize_row_q5_k_ref,
                         .quantize_imatrix = qn_quantize_row_q5_k_imatrix},
    [QN_QFORMAT_Q6_K] = {.name = "q6_K", .ggml_type = 14, .block_elems = QN_QK_K,
                         .block_bytes = sizeof(qn_block_q6_k), .is_quantized = true,
                         .vec_dot_type = QN_QFORMAT_Q8_K, .dequant_ref = qn_dequant_row_q6_k_ref,
                         .quantize_ref = qn_quantize_row_q6_k_ref, .quantize_weight = qn_quantize_row_q6_k_ref,
                         .quantize_imatrix = qn_quantize_row_q6_k_imatrix},
    [QN_QFORMAT_Q8_K] = {.name = "q8_K", .ggml_type = 15, .block_elems = QN_QK_K,
                         .block_bytes = sizeof(qn_block_q8_k), .is_quantized = true,
                         .vec_dot_type = QN_QFORMAT_Q8_K, .dequant_ref = qn_dequant_row_q8_k_ref,
                         .quantize_ref = qn_quantize_row_q8_k_ref},
};

qn_status qn_qformat_from_ggml(uint32_t ggml_type, qn_qformat *out) {
    for (int f = 0; f < QN_QFORMAT_COUNT; f++)
        if (QN_QFORMATS[f].ggml_type == ggml_type) {
            if (out) *out = (qn_qformat)f;
            return QN_OK;
        }
    return QN_ERR_UNSUPPORTED;
}

size_t qn_qformat_row_bytes(qn_qformat fmt, int64_t n) {
    if (fmt == QN_QFORMAT_Q6_KP) return n >= 0 && n % QN_QK_K == 0 ? (size_t)(n / QN_QK_K) * QN_Q6KP_BLOCK_BYTES : 0;
    if (fmt == QN_QFORMAT_Q3_KP) return n >= 0 && n % QN_QK_K == 0 ? (size_t)(n / QN_QK_K) * QN_Q3KP_BLOCK_BYTES : 0;
    if (fmt == QN_QFORMAT_Q8_0P)
        return n >= 0 && n % QN_Q8_0P_BLOCK_ELEMS == 0 ? (size_t)(n / QN_Q8_0P_BLOCK_ELEMS) * QN_Q8_0P_BLOCK_BYTES : 0;
    if (qn_lq4m_is_format(fmt))
        return n >= 0 && n % QN_LQ4M_COLS == 0 ? (size_t)(n / QN_LQ4M_COLS) * (QN_LQ4M_CHUNK_BYTES / QN_LQ4M_ROWS) : 0;
    if (qn_lutq_gpu_is_format(fmt)) return n >= 0 && n % 32 == 0 ? (size_t)(n / 32) * qn_lutq_gpu_block_bytes(fmt) : 0;
    if ((unsigned)fmt >= QN_QFORMAT_COUNT || n < 0) return 0;
    const qn_qformat_traits *t = &QN_QFORMATS[fmt];
    if (n % t->block_elems) return 0;
    return (size_t)(n / t->block_elems) * (size_t)t->block_bytes;
}

const char *qn_qformat_name(qn_qformat fmt) {
    if (qn_lutq_gpu_is_format(fmt)) return qn_lutq_gpu_format_name(fmt);
    if (fmt == QN_QFORMAT_Q6_KP) return "q6_Kp";
    if (fmt == QN_QFORMAT_Q3_KP) return "q3_Kp";
    if (fmt == QN_QFORMAT_Q8_0P) return "q8_0p";
    return (unsigned)fmt < QN_QFORMAT_COUNT ? QN_QFORMATS[fmt].name : "?";
}

qn_status qn_qformat_parse(const char *name, qn_qformat *out) {
    if (!name) return QN_ERR_INVALID_ARG;
    for (int f = 0; f < QN_QFORMAT_COUNT; f++) {
        const char *a = QN_QFORMATS[f].name, *b = name;
        while (*a && *b && tolower((unsigned char)*a) == tolower((unsigned char)*b)) a++, b++;
        if (!*a && !*b) {
            if (out) *out = (qn_qformat)f;
            return QN_OK;
        }
    }
    return QN_ERR_NOT_FOUND;
}
