/* synth.h — `quern synth` as a library: writes a GGUF Llama-family model with the real shapes of a
 * known model and seeded random weights, for benchmarks where the real weights cannot be had.
 * Matrices and embeddings are N(0, std²) (std 0.02 by default), norms are 1, biases N(0, std²); each
 * row's values depend only on (seed, tensor name, row), so a --layers N model holds exactly the
 * first N layers of the full one and the thread count never changes the bytes. Tensors are
 * encoded with the file type's llama.cpp mix (quantize.h) and streamed to disk tensor by tensor
 * (an 8B F16 model never sits in memory), in llama.cpp's tensor order.
 * The tokenizer is copied from another GGUF (every tokenizer.* key); when it has fewer tokens than
 * the preset's vocabulary, the token list is padded with "[PAD<id>]" tokens of type UNUSED (score
 * -1000), as llama.cpp's converter pads Qwen2's 151936 tokens to 152064.
 * Owns: the preset table and, during a call, its threads and the temporary output file. */
#ifndef QN_SYNTH_H
#define QN_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/model_config.h"
#include "model/quantize.h"
#include "quern.h"

typedef struct qn_synth_preset {
    const char *name;        /* "llama3-8b" */
    const char *arch;        /* general.architecture: "llama" or "qwen2" */
    const char *model_name;  /* what it stands for: "Meta-Llama-3-8B" */
    const char *tokenizer;   /* the real model's tokenizer family: "llama-bpe", "llama-spm", "qwen2", "smollm2" */
    int32_t n_vocab, n_ctx_train, n_embd, n_layer, n_ff, n_head, n_head_kv, head_dim;
    float rms_eps, rope_theta;
    bool tied;               /* output projection shares token_embd */
    bool qkv_bias;           /* qwen2 */
} qn_synth_preset;

/* --- presets --- */
/* llama3-8b llama2-7b mistral-7b qwen2.5-7b smollm2-135m, and "tiny" (a 16-layer 256-wide llama,
 * not a real model: every ne[0] a multiple of 256, for quick tests of the k-quant mixes). */
const qn_synth_preset *qn_synth_preset_find(const char *name); /* NULL when unknown */
const char *qn_synth_preset_names(void);                       /* space-separated, for usage lines */

/* --- generation --- */
typedef struct qn_synth_params {
    const qn_synth_preset *preset;
    qn_ftype ftype;
    uint64_t seed;
    int n_layer;                       /* 0: the preset's; else 1 .. preset's (a truncated model) */
    float std;                         /* <= 0: 0.02 */
    const char *vocab_path;            /* GGUF whose tokenizer.* keys are copied (required) */
    int n_threads;                     /* <= 0: 1 */
    qn_quantize_progress_fn progress;  /* as for qn_quantize_gguf; NULL: silent */
    void *progress_ud;
} qn_synth_params;

/* --- pieces shared with the Hugging Face writer (model/hf_synth.h) --- */
/* splitmix64: advances *s and returns the next value. */
static inline uint64_t qn_synth_mix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* The generator key of a tensor: seed mixed with its GGUF name. */
uint64_t qn_synth_key(uint64_t seed, const char *name);
/* Row `row` of a N(0, std²) tensor: out[n], a function of (key, row) alone (the values of the GGUF writer). */
void qn_synth_gauss_row(uint64_t key, int64_t row, int64_t n, float std, float *out);
/* The model config of p (preset shapes, --layers applied); QN_ERR_INVALID_ARG for a bad layer count. */
qn_status qn_synth_config(const qn_synth_params *p, qn_model_config *c, qn_error *err);
/* A tensor-less GGUF image of the metadata the GGUF writer would write (tokenizer padded to the vocabulary),
 * for exporting the tokenizer and config.json; *buf is malloc'd (caller frees). */
qn_status qn_synth_meta_gguf(const qn_synth_params *p, const qn_model_config *c, void **buf, size_t *len,
                             qn_error *err);

/* --- GGUF output --- */
/* Writes out_path (as out_path.tmp, renamed when complete). QN_ERR_UNSUPPORTED when the tokenizer
 * has more tokens than the preset's vocabulary, QN_ERR_FORMAT when vocab_path has no tokenizer.
 * stats (may be NULL) counts tensors and bytes as for quantize. */
qn_status qn_synth_gguf(const char *out_path, const qn_synth_params *p, qn_quantize_stats *stats, qn_error *err);

#endif
