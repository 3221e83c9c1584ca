/* hf_export.h — `quern export-hf` as a library: a Llama-family GGUF model (llama, mistral, qwen2) as
 * a Hugging Face directory: config.json, generation_config.json, model.safetensors (every tensor
 * dequantized to f16, bf16 or f32; llama.cpp's Q/K row permutation undone on llama/mistral files so
 * rows are in HF order; no lm_head when the embeddings are tied), tokenizer.json and
 * tokenizer_config.json, and tokenizer.model for SentencePiece (tokenizer/hf_tokenizer.h).
 * Owns: nothing beyond a call; every file is written as NAME.tmp and renamed when complete, and on
 * an error the files of this call are removed again. */
#ifndef QN_HF_EXPORT_H
#define QN_HF_EXPORT_H

#include <stdbool.h>

#include "config/model_config.h"
#include "model/safetensors.h"
#include "quern.h"

typedef struct qn_gguf qn_gguf;

/* dtype: QN_ST_DTYPE_F16, _BF16 or _F32. out_dir is created when absent. Errors name the file and the
 * key or tensor: QN_ERR_UNSUPPORTED (architecture, tokenizer, llama3 rope factors, unknown tensor),
 * QN_ERR_FORMAT, QN_ERR_IO. */
qn_status qn_hf_export(const char *gguf_path, const char *out_dir, qn_st_dtype dtype, qn_error *err);

/* The files beside the weights: tokenizer.json, tokenizer_config.json, tokenizer.model for SentencePiece (from
 * g's tokenizer.* keys; only when `tokenizer`), config.json (from c, with quant_config, a JSON object text, as "quantization_config" when not
 * NULL) and generation_config.json, into out_dir (which exists). Used by qn_hf_export and `quern synth`
 * (model/hf_synth.h). */
qn_status qn_hf_export_meta(const qn_gguf *g, const qn_model_config *c, qn_st_dtype dtype, const char *quant_config,
                            bool tokenizer, const char *out_dir, qn_error *err);

#endif
