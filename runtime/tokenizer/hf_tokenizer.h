/* hf_tokenizer.h — the bridge between GGUF tokenizer metadata (formats.md §1.3) and a Hugging Face
 * tokenizer directory (tokenizer.json for the `tokenizers` library, tokenizer_config.json for
 * transformers, tokenizer.model for SentencePiece), both ways, for `quern export-hf` and `quern convert`.
 * Supported: byte-level BPE (tokenizer.ggml.model "gpt2") whose pre-tokenizer is one of the families
 * in the table of hf_tokenizer.c (gpt2, starcoder/smollm, llama3, qwen2), and SentencePiece BPE ("llama":
 * Llama-2, Mistral-7B; hf_tokenizer_spm.c) from tokenizer.model or a byte_fallback tokenizer.json. Not:
 * WordPiece, Unigram — QN_ERR_UNSUPPORTED naming what was found.
 * Import follows llama.cpp's converter (get_vocab_base / _set_vocab_sentencepiece / _set_vocab_llama_hf
 * + gguf-py SpecialVocab): token types from added_tokens, merges in the "a b" form, special ids from
 * tokenizer_config.json then config.json, add_bos/add_eos from the post-processor then
 * tokenizer_config.json; tokenizer.model, when present, gives the tokens, as there. The pre-tokenizer id comes
 * from the pre_tokenizer JSON (llama.cpp hashes a tokenization instead; see hf_tokenizer.c). Deliberate
 * differences are listed in the .c files.
 * Owns nothing beyond a call. */
#ifndef QN_HF_TOKENIZER_H
#define QN_HF_TOKENIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "quern.h"

typedef struct qn_gguf qn_gguf;
typedef struct qn_gguf_writer qn_gguf_writer;

/* Writes dir/tokenizer.json and dir/tokenizer_config.json, and dir/tokenizer.model for SentencePiece (each
 * as NAME.tmp, then renamed) from g's tokenizer.* keys. n_ctx (> 0) becomes model_max_length. */
qn_status qn_hf_tokenizer_export(const qn_gguf *g, int64_t n_ctx, const char *dir, qn_error *err);

/* Reads dir/tokenizer.json (required unless dir/tokenizer.model, which then gives the tokens, is there),
 * dir/tokenizer_config.json (optional) and dir/config.json (optional, for special ids) and adds the
 * tokenizer.* keys to w: n_vocab tokens (ids the files do not name become "[PAD<id>]", type UNUSED).
 * add_space_prefix: also write tokenizer.ggml.add_space_prefix when tokenizer_config.json has
 * add_prefix_space (llama.cpp does so for the llama architecture).
 * Errors name the file and the field. */
qn_status qn_hf_tokenizer_import(const char *dir, int64_t n_vocab, bool add_space_prefix, qn_gguf_writer *w,
                                 qn_error *err);

#endif
