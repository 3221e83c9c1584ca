/* arch.h — the tensors a Llama-family GGUF file holds (docs/formats.md §1.4): names, GGUF shapes and
 * roles, derived from a qn_model_config, in the converter's order (token_embd, rope_freqs, layer by
 * layer, output_norm, output). Used by `quern quantize` to check its input and by `quern synth` to
 * generate a model. Owns nothing. The loader (model.c) binds the same set. */
#ifndef QN_ARCH_H
#define QN_ARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "config/model_config.h"
#include "quern.h"

typedef struct qn_gguf qn_gguf;

typedef enum qn_tensor_role {
    QN_TENSOR_ROLE_EMBED = 0,   /* token_embd.weight */
    QN_TENSOR_ROLE_OUTPUT,      /* output.weight (absent when tied) */
    QN_TENSOR_ROLE_MATRIX,      /* a layer's projection */
    QN_TENSOR_ROLE_NORM,        /* RMSNorm weight */
    QN_TENSOR_ROLE_BIAS,        /* q/k/v bias (qwen2) */
    QN_TENSOR_ROLE_ROPE_FREQS,  /* llama3 per-frequency factors */
} qn_tensor_role;

typedef struct qn_arch_tensor {
    char name[64];
    qn_tensor_role role;
    int layer;          /* -1 outside the layers */
    uint32_t n_dims;    /* 1 or 2 */
    int64_t ne[2];      /* GGUF order: ne[0] contiguous (a matrix: ne[0] inputs, ne[1] outputs) */
    bool required;      /* false: output (tied), rope_freqs unless the config says it exists */
} qn_arch_tensor;

/* --- queries --- */
/* Upper bound on the number of tensors of a config (for sizing the list). */
int64_t qn_arch_tensor_max(const qn_model_config *c);
/* Fills out[0 .. *n) with every tensor the config implies (optional ones included, marked). */
qn_status qn_arch_tensor_list(const qn_model_config *c, qn_arch_tensor *out, int64_t cap, int64_t *n, qn_error *err);
/* Checks a parsed file: every required tensor present, every listed tensor present with its shape
 * (trailing dims of 1 ignored). QN_ERR_FORMAT naming the file and tensor otherwise. Tensors the list
 * does not know are allowed. */
qn_status qn_arch_check_tensors(const qn_gguf *g, const qn_model_config *c, qn_error *err);

#endif
