/* load_hf.h — model loading with an explicit tokenizer GGUF (`--vocab FILE.gguf`) for Hugging Face directories,
 * which carry no GGUF vocab (tokenizer.json is not read yet). Without --vocab, HF directories take the single
 * *.gguf file inside them (qn_model_load). */
#ifndef QN_TOOLS_LOAD_HF_H
#define QN_TOOLS_LOAD_HF_H

#include "model/model.h"

/* path: GGUF or HF directory (default model when NULL); vocab: NULL, or the GGUF the tokenizer comes from
 * (only valid for an HF directory). Prints a clear error and returns NULL on failure. */
qn_model *qn_tool_load_model_vocab(const char *cmd, const char *path, const char *vocab);

#endif
