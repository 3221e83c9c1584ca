/* hf_quant.h — the quantization side of a Hugging Face checkpoint: the quantization config (config.json
 * "quantization_config", quantize_config.json, quant_config.json; docs/formats.md §3.5, §4.3, §5.3) and the
 * binding of one linear's tensors (GPTQ qweight/qzeros/scales/g_idx, AWQ qweight/qzeros/scales, bnb weight +
 * absmax/quant_map/nested_* + quant_state JSON) into the kernel format descriptors of kernels/quant/{gptq,awq,nf4}.
 * Owns nothing: descriptors view the qn_st mapping. Errors name the tensor and the field. */
#ifndef QN_HF_QUANT_H
#define QN_HF_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/quant/awq/awq_format.h"
#include "kernels/quant/gptq/gptq_format.h"
#include "kernels/quant/nf4/nf4_format.h"
#include "model/safetensors.h"
#include "quern.h"

typedef enum qn_hf_quant_method {
    QN_HF_QUANT_NONE = 0,  /* fp16 / bf16 / fp32 weights */
    QN_HF_QUANT_GPTQ,
    QN_HF_QUANT_AWQ,
    QN_HF_QUANT_BNB4,      /* bitsandbytes 4-bit (NF4 or FP4, type per tensor from its quant_state) */
} qn_hf_quant_method;

typedef struct qn_hf_quant_config {
    qn_hf_quant_method method;
    int32_t bits;          /* GPTQ 2/3/4/8, AWQ 4 */
    int32_t group_size;    /* -1 = whole K (GPTQ) */
    bool sym;              /* GPTQ: informational (zeros are read from qzeros) */
    bool desc_act;         /* GPTQ: informational (g_idx is always honoured) */
    bool gptq_v2;          /* checkpoint_format "gptq_v2" */
    qn_awq_layout awq_layout;
    bool lm_head;          /* GPTQ: lm_head quantized too */
} qn_hf_quant_config;

/* --- config --- */
/* Reads dir/config.json "quantization_config", else dir/quantize_config.json, else dir/quant_config.json;
 * method NONE when none. Unsupported combinations (GPTQ marlin / gptq_p / pack_dtype != int32, AWQ gemv_fast /
 * marlin / bits != 4, bnb 8-bit) are QN_ERR_UNSUPPORTED naming the file and the field. */
qn_status qn_hf_quant_config_read(const char *dir, qn_hf_quant_config *out, qn_error *err);

/* --- per-linear binding (prefix = "model.layers.0.self_attn.q_proj.") --- */
qn_status qn_hf_gptq_bind(const qn_st *st, const char *prefix, const qn_hf_quant_config *qc, int64_t k, int64_t n,
                          qn_gptq_weight *out, qn_error *err);
qn_status qn_hf_awq_bind(const qn_st *st, const char *prefix, const qn_hf_quant_config *qc, int64_t k, int64_t n,
                         qn_awq_weight *out, qn_error *err);
/* prefix names the module ("...q_proj."); tensors are prefix + "weight", "weight.absmax", ... . */
qn_status qn_hf_bnb4_bind(const qn_st *st, const char *prefix, int64_t k, int64_t n, qn_bnb4_weight *out,
                          qn_error *err);

#endif
