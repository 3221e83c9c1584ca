/* backend.h — one forward-pass backend behind one interface: the CPU path (model/llama_cpu.h with a
 * host KV cache and a thread pool) or the CUDA path (model/llama_cuda.h, KV in device memory).
 * context.c and engine.c drive it; neither knows which device runs the step.
 * Owns: the backend's forward object, KV cache and threads. Borrows the model. */
#ifndef QN_BACKEND_H
#define QN_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/sampling/sampling_cuda.h"
#include "model/forward.h"
#include "model/llama_cuda.h"
#include "model/llama_cpu.h"
#include "model/model.h"
#include "quern.h"

typedef enum qn_device_kind {
    QN_DEVICE_AUTO = 0,   /* CUDA when a GPU is present and this build has CUDA, else CPU */
    QN_DEVICE_CPU,
    QN_DEVICE_CUDA,
} qn_device_kind;

/* "auto", "cpu", "cuda", "cuda:N" -> kind and CUDA ordinal. QN_ERR_INVALID_ARG otherwise. */
qn_status qn_device_parse(const char *s, qn_device_kind *kind, int *ordinal, qn_error *err);

typedef struct qn_backend_params {
    qn_device_kind device;
    int cuda_device;          /* ordinal */
    int32_t n_threads;        /* CPU path */
    qn_cpu_isa isa;           /* CPU path */
    bool no_repack;           /* CPU path: no load-time weight repack (llama_cpu.c; an A/B switch) */
    int32_t max_tokens;       /* per step */
    int32_t max_seqs;         /* per step */
    int32_t max_ctx;          /* positions per sequence */
    int32_t n_blocks, block_size; /* KV cache */
    bool cuda_graphs;         /* CUDA path: graphs for decode steps */
    int mmvq_stage;           /* CUDA path: int8 decode weight loads (llama_cuda.h; 0 = auto) */
    int32_t profile_begin, profile_end; /* CUDA path: cudaProfilerStart/Stop around these steps (begin > end: off) */
    int32_t tp_size;          /* tensor-parallel ranks (1). CPU: in-process ranks (tp/forward_cpu.h), each with
                               * max(1, n_threads / tp_size) threads; CUDA: GPUs cuda_device .. + tp_size - 1,
                               * one rank thread each, NCCL all-reduces (tp/forward_cuda.h) */
    bool tp_nccl;             /* CUDA: take the NCCL tensor-parallel path even for tp_size 1 */
    const char *tp_master;    /* CUDA: "host:port" when the group spans processes (tp/forward_cuda.h placement):
                               * this process runs ranks tp_first_rank .. + tp_local - 1 on GPUs cuda_device..;
                               * no CPU fallback. NULL: every rank here */
    int tp_first_rank, tp_local;
} qn_backend_params;

qn_backend_params qn_backend_params_default(void);

typedef struct qn_backend qn_backend;

/* --- lifecycle --- */
qn_status qn_backend_create(const qn_model *m, const qn_backend_params *p, qn_backend **out, qn_error *err);
void qn_backend_destroy(qn_backend *b); /* NULL is a no-op */

qn_device_kind qn_backend_kind(const qn_backend *b);          /* CPU or CUDA (never AUTO) */
/* "cpu avx512, 2 threads" / "cuda NVIDIA H200 (sm_90, 132 SMs)" */
const char *qn_backend_name(const qn_backend *b);
const char *qn_backend_isa_name(const qn_backend *b);          /* "avx512" / "CUDA" */
int32_t qn_backend_tp_size(const qn_backend *b);
/* Seconds spent in tensor-parallel all-reduces since creation (0 without TP), and their count. */
double qn_backend_allreduce_s(const qn_backend *b, uint64_t *n_calls);
/* Host time of the CUDA steps by phase (llama_cuda.h); zeros on the CPU and tensor-parallel backends. */
void qn_backend_cuda_host_times(const qn_backend *b, qn_cuda_host_times *out);
void qn_backend_set_tap(qn_backend *b, qn_llama_tap_fn fn, void *user);
/* CUDA (one GPU): captures the device-sampling graphs of pure-decode steps up to max_tokens tokens ahead of
 * use (llama_cuda.h qn_llama_cuda_capture_decode_graphs); n_captured 0 and QN_OK elsewhere. */
qn_status qn_backend_capture_decode_graphs(qn_backend *b, int32_t max_tokens, int32_t *n_captured, qn_error *err);

/* --- steps --- */
/* logits: host [n_out][n_vocab]. */
qn_status qn_backend_forward(qn_backend *b, const qn_fwd_batch *batch, float *logits, qn_error *err);
/* Whether forward_sample runs on the device (only token ids cross PCIe). */
bool qn_backend_samples_on_device(const qn_backend *b);
/* One token per out row, sampled where the logits are (CUDA); QN_ERR_UNSUPPORTED on the CPU path,
 * whose callers sample the host logits with exec/sampling.h. params, tokens: host [n_out]. */
qn_status qn_backend_forward_sample(qn_backend *b, const qn_fwd_batch *batch, const qn_sample_row_params *params,
                                    int32_t *tokens, qn_error *err);
/* Copies KV block src to dst in every layer (copy-on-write). */
qn_status qn_backend_copy_block(qn_backend *b, int32_t src, int32_t dst, qn_error *err);

#endif
