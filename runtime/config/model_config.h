/* model_config.h — qn_model_config: the hyperparameters of a Llama-family model, read once from the
 * file (GGUF metadata, docs/formats.md §1.3, or a Hugging Face config.json) and immutable after.
 * Owns nothing (plain values). Not: user knobs (engine_config.h) or tensor shapes (model/).
 * Both constructors validate the result (positive dims, n_head % n_head_kv == 0, even rope dims) and
 * report missing or bad keys as QN_ERR_FORMAT naming the file and the key; unknown architectures
 * are QN_ERR_UNSUPPORTED. */
#ifndef QN_MODEL_CONFIG_H
#define QN_MODEL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qn_gguf qn_gguf;

/* Architecture families; SmolLM is stored as llama (GGUF) / LlamaForCausalLM (HF). */
typedef enum qn_arch {
    QN_ARCH_LLAMA = 0,
    QN_ARCH_MISTRAL,
    QN_ARCH_QWEN2,
    QN_ARCH_COUNT
} qn_arch;

/* Which lanes RoPE rotates together within a head. */
typedef enum qn_rope_style {
    QN_ROPE_STYLE_NORM = 0, /* adjacent pairs (2i, 2i+1): GGUF llama, whose q/k rows are permuted */
    QN_ROPE_STYLE_NEOX,     /* rotate-half (i, i + rope_dim/2): HF checkpoints, qwen2 */
} qn_rope_style;

typedef enum qn_rope_scaling_type {
    QN_ROPE_SCALING_NONE = 0,
    QN_ROPE_SCALING_LINEAR,  /* positions divided by factor */
    QN_ROPE_SCALING_YARN,
    QN_ROPE_SCALING_LLAMA3,  /* per-frequency factors (formats.md §1.3); in GGUF as rope_freqs.weight */
} qn_rope_scaling_type;

typedef struct qn_rope_scaling {
    qn_rope_scaling_type type;
    float factor;            /* 1 when type == NONE */
    int32_t orig_ctx;        /* pre-extension context (yarn, llama3); 0 if unknown */
    float low_freq_factor;   /* llama3 (HF: 1 by default) */
    float high_freq_factor;  /* llama3 (HF: 4 by default) */
    float yarn_beta_fast;    /* yarn (32 by default) */
    float yarn_beta_slow;    /* yarn (1 by default) */
    float attn_factor;       /* yarn magnitude scale; 0 = derive from factor (0.1 ln(factor) + 1) */
} qn_rope_scaling;

typedef struct qn_model_config {
    qn_arch arch;
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_ff;
    int32_t n_head;
    int32_t n_head_kv;       /* divides n_head */
    int32_t head_dim;        /* even; need not equal n_embd / n_head */
    float rms_eps;
    float rope_theta;
    int32_t rope_dim;        /* rotated lanes per head, even, <= head_dim */
    qn_rope_style rope_style;
    qn_rope_scaling rope_scaling;
    bool rope_freqs_tensor;  /* GGUF: per-frequency factors are in the rope_freqs.weight tensor */
    bool tied_embeddings;    /* output projection reuses the token embedding */
    bool qkv_bias;           /* q/k/v projections carry biases (qwen2) */
    int32_t bos_id;          /* -1 when unknown */
    int32_t eos_id;          /* -1 when unknown; the first one when the file lists several */
} qn_model_config;

/* --- constructors --- */
/* From GGUF metadata keyed by general.architecture (llama, mistral, qwen2). */
qn_status qn_model_config_from_gguf(const qn_gguf *g, qn_model_config *out, qn_error *err);
/* From a Hugging Face config.json (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM). */
qn_status qn_model_config_from_hf(const char *config_json_path, qn_model_config *out, qn_error *err);

/* --- names --- */
const char *qn_arch_name(qn_arch a);                          /* "llama", ... */
const char *qn_rope_style_name(qn_rope_style s);              /* "norm", "neox" */
const char *qn_rope_scaling_type_name(qn_rope_scaling_type t); /* "none", "linear", "yarn", "llama3" */

#ifdef __cplusplus
}
#endif
#endif
