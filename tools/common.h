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


#include "exec/context.h"
#include "exec/engine.h"
/* Evaluates one llama.cpp-style window w[n] from an empty cache (perplexity, imatrix): w[0] replaced
 * by BOS for the call when the vocab adds one; the logits of rows [out_from, n) into logits[n][n_vocab] (the rows
 * before are not computed, as llama-perplexity asks only for the rows it scores). */
qn_status qn_tool_eval_window(qn_ctx *ctx, const qn_model *m, int32_t *w, int32_t n, int32_t out_from, float *logits,
                              qn_error *err);

/* --device / --no-cuda-graphs / --profile-steps, shared by run, bench, perplexity, logits. */
typedef struct qn_tool_device_opts {
    const char *device;         /* auto | cpu | cuda | cuda:N */
    bool no_graphs;
    bool mmvq_staged;           /* CUDA: int8 decode matmuls stage every weight they can (A/B runs) */
    bool mmvq_direct;           /* CUDA: int8 decode matmuls read every weight directly (A/B runs) */
    const char *profile_steps;  /* "A:B" */
    int tp;                     /* tensor-parallel ranks */
    bool tp_nccl;               /* CUDA: NCCL path even for -tp 1 */
    const char *tp_master;      /* "host:port": the TP group spans processes (docs/tensor_parallel.md §4) */
    int tp_rank;                /* this process's first global rank (-1: not given) */
    int tp_local;               /* ranks (GPUs) in this process (0: not given; 1 with --tp-master) */
} qn_tool_device_opts;
#define QN_TOOL_DEVICE_OPTS_INIT {.tp = 1, .tp_rank = -1}
#define QN_TOOL_DEVICE_ARGS(o)                                                                                     \
    {"device", NULL, 0, QN_ARG_STR, &(o).device, "auto | cpu | cuda | cuda:N (auto: the GPU when one is present)"}, \
    {"no-cuda-graphs", NULL, 0, QN_ARG_BOOL, &(o).no_graphs, "CUDA: launch decode steps kernel by kernel"},          \
    {"mmvq-staged", NULL, 0, QN_ARG_BOOL, &(o).mmvq_staged,                                                         \
     "CUDA: int8 decode matmuls stage all weights they can through shared memory (A/B; default: where faster)"},   \
    {"mmvq-direct", NULL, 0, QN_ARG_BOOL, &(o).mmvq_direct,                                                         \
     "CUDA: int8 decode matmuls read all weights directly, never staged (A/B)"},                                   \
    {"profile-steps", NULL, 0, QN_ARG_STR, &(o).profile_steps,                                                      \
     "A:B  CUDA: cudaProfilerStart/Stop around forward steps A..B (nsys --capture-range=cudaProfilerApi)"},        \
    {"tensor-parallel-size", "tp", 0, QN_ARG_INT, &(o).tp, "tensor-parallel ranks (1): CPU ranks, or GPUs over NCCL"}, \
    {"tp-nccl", NULL, 0, QN_ARG_BOOL, &(o).tp_nccl, "CUDA: the NCCL tensor-parallel path even for -tp 1 (testing)"}, \
    {"tp-master", NULL, 0, QN_ARG_STR, &(o).tp_master,                                                             \
     "HOST:PORT  multi-host TP: the process with rank 0 listens there, the others connect"},                       \
    {"tp-rank", NULL, 0, QN_ARG_INT, &(o).tp_rank, "multi-host TP: this process's first global rank"},             \
    {"tp-local", NULL, 0, QN_ARG_INT, &(o).tp_local,                                                               \
     "multi-host TP: ranks (GPUs --device.. ) in this process (1); ranks tp-rank .. tp-rank + tp-local - 1"}
/* The multi-host flags (--tp-master, --tp-rank, --tp-local) against -tp and --device; prints an error and
 * returns -1 when they do not fit. */
int qn_tool_check_tp_hosts(const char *cmd, const qn_tool_device_opts *o);
/* Applies the options to cp; prints an error and returns -1 when malformed. */
int qn_tool_apply_device(const char *cmd, const qn_tool_device_opts *o, qn_ctx_params *cp);
/* The same options onto a serving-engine config (run, bench and serve drive the engine). */
int qn_tool_apply_device_engine(const char *cmd, const qn_tool_device_opts *o, qn_engine_config *ec);
#endif
