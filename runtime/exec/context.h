/* context.h — a single-sequence evaluation context (what `quern run`, `perplexity`, `logits` and
 * `bench` drive) over a CPU or CUDA backend (exec/backend.h): a KV cache whose one sequence owns
 * blocks 0..n-1 in order. Borrows the model; owns everything else. */
#ifndef QN_CONTEXT_H
#define QN_CONTEXT_H

#include <stdint.h>

#include "exec/backend.h"
#include "kernels/cpu/cpu_kernels.h"
#include "model/llama_cpu.h"
#include "model/model.h"
#include "quern.h"

typedef struct qn_ctx_params {
    int32_t n_ctx;       /* max positions (<= n_ctx_train is not enforced) */
    int32_t n_batch;     /* max tokens per forward step */
    int32_t n_threads;
    qn_cpu_isa isa;      /* QN_CPU_ISA_AUTO = best available */
    bool no_repack;      /* CPU: no load-time weight repack (exec/backend.h) */
    int32_t block_size;  /* KV block size (16) */
    qn_device_kind device; /* AUTO: CUDA when a GPU is present */
    int cuda_device;     /* CUDA ordinal */
    bool cuda_graphs;    /* CUDA: replay decode steps as graphs */
    int mmvq_stage;      /* CUDA: int8 decode weight loads (llama_cuda.h; 0 = auto) */
    int32_t profile_begin, profile_end; /* CUDA: cudaProfilerStart/Stop around these forward steps */
    int32_t tp_size;     /* tensor-parallel ranks (exec/backend.h) */
    bool tp_nccl;        /* CUDA: NCCL tensor-parallel path even for tp_size 1 */
    const char *tp_master; /* CUDA: the TP group spans processes (exec/backend.h); NULL: one process */
    int tp_first_rank, tp_local; /* with tp_master: this process runs ranks first .. first + local - 1 */
} qn_ctx_params;

typedef struct qn_ctx qn_ctx;

qn_ctx_params qn_ctx_params_default(void);
/* --- lifecycle --- */
qn_status qn_ctx_create(const qn_model *m, const qn_ctx_params *p, qn_ctx **out, qn_error *err);
void qn_ctx_destroy(qn_ctx *c);

/* --- evaluation --- */
/* Evaluates tokens[0..n) at positions pos0.. (appending to the sequence; pos0 must equal the
 * number of tokens already evaluated, or 0 after qn_ctx_reset). Steps of at most n_batch tokens.
 * logits: [n][n_vocab] when all_logits, else [1][n_vocab] for the last token. */
qn_status qn_ctx_eval(qn_ctx *c, const int32_t *tokens, int32_t n, int32_t pos0, bool all_logits, float *logits,
                      qn_error *err);
/* As qn_ctx_eval with all_logits, but only rows [out_from, n) get logits, into logits[out_from..n) of [n][n_vocab]
 * (the rows before are not written; the LM head runs for the wanted rows only). 0 <= out_from < n. */
qn_status qn_ctx_eval_from(qn_ctx *c, const int32_t *tokens, int32_t n, int32_t pos0, int32_t out_from, float *logits,
                           qn_error *err);
/* One decode step of the token at pos0 that samples on the device (CUDA backends only; see
 * qn_backend_samples_on_device): *token gets the sampled id. */
qn_status qn_ctx_eval_sample(qn_ctx *c, int32_t token, int32_t pos0, const qn_sample_row_params *p, int32_t *out,
                             qn_error *err);
/* Prompt + first sample in one call on the device (the prompt's last row is sampled). */
qn_status qn_ctx_eval_prompt_sample(qn_ctx *c, const int32_t *tokens, int32_t n, const qn_sample_row_params *p,
                                    int32_t *out, qn_error *err);
bool qn_ctx_samples_on_device(const qn_ctx *c);
void qn_ctx_reset(qn_ctx *c);
/* Debug tap on the forward pass (see model/llama_cpu.h); NULL removes it. */
void qn_ctx_set_tap(qn_ctx *c, qn_llama_tap_fn fn, void *user);
int32_t qn_ctx_n_past(const qn_ctx *c);
const char *qn_ctx_isa_name(const qn_ctx *c);      /* "avx512", or "CUDA" */
const char *qn_ctx_backend_name(const qn_ctx *c);  /* "cpu avx512, 2 threads" / "cuda NVIDIA H200 (...)" */
qn_device_kind qn_ctx_device(const qn_ctx *c);
int32_t qn_ctx_n_ctx(const qn_ctx *c);

#endif
