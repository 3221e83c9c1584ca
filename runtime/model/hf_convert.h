/* hf_convert.h — `quern convert` as a library: a Hugging Face Llama-family directory (config.json,
 * model.safetensors or a sharded index, tokenizer.json and/or tokenizer.model, tokenizer_config.json) -> one
 * GGUF file with the keys, tensor names, Q/K permutation and per-tensor types of llama.cpp's convert_hf_to_gguf.py
 * (LlamaForCausalLM and MistralForCausalLM as arch "llama", permuted; Qwen2ForCausalLM as "qwen2").
 * Optionally merges a PEFT LoRA adapter first: W += (lora_alpha / r) * B·A (alpha / sqrt(r) with
 * use_rslora) on every module the adapter names.
 * Owns: during a call, a thread pool and the temporary output (OUT.tmp, renamed when complete,
 * removed on any error). Every input is checked before the output is opened. */
#ifndef QN_HF_CONVERT_H
#define QN_HF_CONVERT_H

#include "model/quantize.h"
#include "quern.h"

typedef struct qn_hf_convert_params {
    qn_ftype outtype;          /* ALL_F32, MOSTLY_F16, MOSTLY_BF16 or MOSTLY_Q8_0 */
    const char *lora_dir;      /* PEFT adapter directory, or NULL */
    int n_threads;             /* <= 0: 1 */
    qn_quantize_progress_fn progress; /* NULL: silent */
    void *progress_ud;
} qn_hf_convert_params;

typedef struct qn_hf_convert_stats {
    int64_t n_tensors, n_lora_merged;
    uint64_t bytes_out;
    double seconds;
} qn_hf_convert_stats;

/* Errors name the file and the field or tensor: QN_ERR_NOT_FOUND (a missing file), QN_ERR_FORMAT
 * (malformed JSON or safetensors, missing tensor, wrong shape), QN_ERR_UNSUPPORTED (architecture,
 * tokenizer, dtype, adapter option), QN_ERR_IO. stats may be NULL. */
qn_status qn_hf_convert(const char *hf_dir, const char *out_path, const qn_hf_convert_params *p,
                        qn_hf_convert_stats *stats, qn_error *err);

#endif
