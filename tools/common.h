/* common.h — what the subcommands share: the default model path (resolved by main.c from the
 * environment, the only place that reads it), thread count default, timing, model loading. */
#ifndef QN_TOOLS_COMMON_H
#define QN_TOOLS_COMMON_H

#include <stdint.h>

#include "model/model.h"

/* ~/.cache/quern/models/SmolLM2-135M-Instruct.Q4_1.gguf, or $QUERN_MODEL when set. */
const char *qn_tool_default_model(void);
/* $QN_CACHE, or ~/.cache/quern (models/, data/, llama.cpp/ as the scripts lay them out). */
const char *qn_tool_cache_dir(void);
int qn_tool_default_threads(void);
double qn_tool_now_s(void);
/* Loads path (default model when NULL), printing a clear error on failure. */
qn_model *qn_tool_load_model(const char *cmd, const char *path);
/* Byte counts with optional binary suffixes: "4096", "512M", "2G", "1.5GiB", "64k" (K/M/G/T = 2^10..2^40,
 * optional "i" and "B"). Returns 0 and *out on success, -1 on a malformed or negative value. */
int qn_tool_parse_size(const char *s, int64_t *out);
/* $QUERN_API_KEY (read once by main.c), or NULL when unset or empty. */
const char *qn_tool_env_api_key(void);
/* Reads a whole text file; NULL (with a message) on failure. */
char *qn_tool_read_text(const char *cmd, const char *path, size_t *len);


#include "kernels/cpu/cpu_kernels.h"
/* Parses --isa NAME (NULL/"auto" = detect); prints an error and returns -1 when unknown. */
int qn_tool_parse_isa(const char *cmd, const char *name, qn_cpu_isa *out);

#endif
