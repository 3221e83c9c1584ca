/* hf_synth.h — `quern synth --type gptq4|gptq8|gptq4-act|awq4|nf4|nf4-dq|fp4`: a quantized Hugging Face directory
 * with the real shapes of a preset (model/synth.h) and random codes, written directly: no calibration, no float
 * weight, no fp16 intermediate. The seven linears of every layer are stored in the peers' layouts
 * (docs/formats.md §3 GPTQ v1, §4.1 AWQ GEMM, §5 bitsandbytes 4-bit), packed with the quantizers' own packers
 * (qn_gptq_pack, qn_awq_pack_gemm) and the bnb tables; embeddings, norms (1), biases and an untied lm_head are fp16,
 * with the GGUF writer's values. tokenizer.json / tokenizer_config.json / config.json (with quantization_config) /
 * generation_config.json are those of `quern export-hf` (model/hf_export.h) from the synth tokenizer, so the
 * directory loads on its own (`quern run -m DIR`); a SentencePiece tokenizer (llama2, mistral) also gets
 * tokenizer.model.
 * Values: codes minus zero follow a discretized normal truncated to the code range (GPTQ/AWQ), or are uniform over
 * the 16 codes (NF4/FP4, whose tables are normal quantiles already); zeros (asymmetric), scales and absmax vary by
 * ±10% around a centre chosen so that the dequantized weights have standard deviation p->std. Every value is a
 * function of (seed, tensor, index) alone: the thread count never changes the bytes.
 * Owns: one call's threads and its temporary directory OUT.tmp.<pid>, renamed to OUT at the end and removed on
 * any error (OUT is then untouched). Memory: one tensor-sized buffer (the largest is the embedding). */
#ifndef QN_HF_SYNTH_H
#define QN_HF_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "model/synth.h"
#include "quern.h"

typedef enum qn_synth_hf_type {
    QN_SYNTH_HF_GPTQ4 = 0,   /* GPTQ 4-bit, desc_act false */
    QN_SYNTH_HF_GPTQ8,       /* GPTQ 8-bit */
    QN_SYNTH_HF_GPTQ4_ACT,   /* GPTQ 4-bit, desc_act true: g_idx from a random permutation (act-order groups),
                              * one per input (q/k/v share it, gate/up share it), as GPTQ's Hessian order does */
    QN_SYNTH_HF_AWQ4,        /* AutoAWQ GEMM, zero_point true */
    QN_SYNTH_HF_NF4,         /* bitsandbytes NF4, blocksize 64, f32 absmax */
    QN_SYNTH_HF_NF4_DQ,      /* NF4 with double quant (u8 absmax, nested absmax / map / offset) */
    QN_SYNTH_HF_FP4,         /* bitsandbytes FP4 */
    QN_SYNTH_HF_COUNT,
} qn_synth_hf_type;

/* One tensor written: index of count (in file order), its name and bytes; elapsed since the call started. */
typedef void (*qn_synth_hf_progress_fn)(void *ud, int64_t index, int64_t count, const char *name, uint64_t bytes,
                                        double elapsed_s);

typedef struct qn_synth_hf_params {
    qn_synth_hf_type type;
    int32_t group_size;   /* GPTQ: > 0 or -1 (all of K); AWQ: > 0, a multiple of 8 dividing every K; 0: 128 */
    bool sym;             /* GPTQ only: zero 2^(bits-1) everywhere; else zeros 2^(bits-1) − 1 .. + 1 */
    qn_synth_hf_progress_fn progress;  /* NULL: silent */
    void *progress_ud;
} qn_synth_hf_params;

/* --- types --- */
bool qn_synth_hf_type_parse(const char *name, qn_synth_hf_type *out); /* false when not an HF type */
const char *qn_synth_hf_type_name(qn_synth_hf_type t);
const char *qn_synth_hf_type_names(void);                               /* space-separated, for usage lines */

/* --- output --- */
/* p as for qn_synth_gguf (ftype and progress ignored). Errors: QN_ERR_INVALID_ARG (parameters, OUT exists and
 * is not an empty directory), QN_ERR_UNSUPPORTED (a shape the layout cannot pack, naming the tensor and the
 * constraint; a tokenizer hf_tokenizer.h cannot export), QN_ERR_IO, QN_ERR_NOMEM. stats (may be NULL): tensors, bytes written, seconds. */
qn_status qn_synth_hf(const char *out_dir, const qn_synth_params *p, const qn_synth_hf_params *h,
                      qn_quantize_stats *stats, qn_error *err);

#endif
