/* llama_cuda.h — the Llama-family forward pass on one CUDA GPU, paged KV in device memory.
 * Owns: the device copy of the weights (GGUF blocks as stored when a kernel takes the format, else
 * dequantized to fp16 once at load), the KV cache, one activation arena sized for max_tokens per
 * step, the stream, the cuBLAS handle and the captured CUDA graphs of decode steps. Borrows the
 * model (host side) only during create. One step at a time; not thread-safe.
 *
 * A step: upload the step arrays (one pinned H2D copy) -> embed -> per layer RMSNorm -> q/k/v
 * matmuls -> bias + RoPE + KV write -> paged attention -> o matmul -> residual + RMSNorm -> gate/up
 * matmuls -> SiLU*up -> down matmul -> residual -> final norm of the wanted rows -> LM head -> either
 * logits to the host or GPU sampling (token ids only cross PCIe). Pure-decode steps (every token its
 * own sequence, every row wanted) replay a CUDA graph captured once per token count.
 * NVTX (when compiled in): model.forward, layer.N, attn, mlp, sample. The build without CUDA has the
 * same functions; create returns QN_ERR_NO_DEVICE. */
#ifndef QN_LLAMA_CUDA_H
#define QN_LLAMA_CUDA_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/sampling/sampling_cuda.h"
#include "model/forward.h"
#include "model/llama_cpu.h"
#include "model/model.h"

typedef struct qn_llama_cuda qn_llama_cuda;

typedef struct qn_llama_cuda_params {
    int device;             /* CUDA ordinal */
    int32_t max_tokens;     /* tokens per step */
    int32_t max_seqs;       /* sequences per step (<= max_tokens) */
    int32_t max_ctx;        /* positions per sequence */
    int32_t n_blocks;       /* KV blocks */
    int32_t block_size;     /* KV block size (16) */
    bool cuda_graphs;       /* capture/replay pure-decode steps */
    int mmvq_stage;         /* int8 decode matmuls' weight loads (quant.h opts.mmvq_stage): 0 = auto (staged
                             * through shared memory where measured faster), 1 = staged where the kernel
                             * can, -1 = direct; bit-identical outputs either way */
    int32_t profile_begin;  /* cudaProfilerStart before step profile_begin, Stop after profile_end */
    int32_t profile_end;    /* (0-based step numbers; begin > end: off) */
    int32_t load_threads;   /* host threads repacking GPTQ/AWQ/bnb (lutq) weights at create; <= 0: online CPUs */
} qn_llama_cuda_params;

qn_llama_cuda_params qn_llama_cuda_params_default(void);

/* Device memory create would allocate (weights as uploaded + KV + activations + workspaces). */
qn_status qn_llama_cuda_plan(const qn_model *m, const qn_llama_cuda_params *p, uint64_t *bytes, qn_error *err);

/* KV bytes the GPU can give after weights and activations for these limits, when the process may use
 * `utilization` of the device's memory (vLLM's gpu_memory_utilization). QN_ERR_DEVICE_OOM if none. */
qn_status qn_llama_cuda_kv_budget(const qn_model *m, int device, int32_t max_tokens, int32_t max_seqs, int32_t max_ctx,
                                  int32_t block_size, float utilization, uint64_t *kv_bytes, qn_error *err);

/* The token budget per step a server on this device gets by default (--max-num-batched-tokens unset):
 * 8192 on a GPU of at least 70 GiB that is not an A100, else 2048 -- the rule `vllm serve` applies
 * (vllm/engine/arg_utils.py, get_batch_defaults). Measured here (H200, Llama-3-8B shape at concurrency 256,
 * bench/results/gpu-serve-2026-12-02.md): 8192 gave +6% (F16) and +7% (Q4_K_M) output tokens/s over 2048.
 * 2048 when there is no such device or no CUDA. */
int32_t qn_llama_cuda_default_batch_tokens(int device);

/* --- lifecycle --- */
/* QN_ERR_NO_DEVICE (no GPU / driver / built without CUDA), QN_ERR_DEVICE_OOM (names need and free). */
qn_status qn_llama_cuda_create(const qn_model *m, const qn_llama_cuda_params *p, qn_llama_cuda **out, qn_error *err);
void qn_llama_cuda_destroy(qn_llama_cuda *f); /* NULL is a no-op */

/* "NVIDIA H200 (sm_90, 132 SMs)" */
const char *qn_llama_cuda_device_name(const qn_llama_cuda *f);
/* Debug tap (names as the CPU path's, model/llama_cpu.h; k and v are not tapped). Disables graphs
 * while set; each tap synchronises and copies the rows to the host. */
void qn_llama_cuda_set_tap(qn_llama_cuda *f, qn_llama_tap_fn fn, void *user);

/* Tensor parallel (tp/forward_cuda.c): all-reduce the o and down partial outputs over comm before each
 * residual add (on the step's stream, so graphs capture it), and write the logits of this rank's LM-head
 * rows, global vocab ids [vocab_begin, vocab_begin + rows), into those columns of the host logits rows.
 * A model whose tok_embd has fewer rows than n_vocab holds the same vocab ids there: other tokens embed
 * as zeros and one more all-reduce per step completes the embeddings (tp/model_shard.h).
 * Sampling on the device is refused while the vocabulary is split. comm NULL: off. */
typedef struct qn_tp_comm qn_tp_comm;
void qn_llama_cuda_set_tp(qn_llama_cuda *f, qn_tp_comm *comm, int64_t vocab_begin);
/* With tp set: seconds between the cudaEvent pair around each all-reduce (NVTX range tp.allreduce), summed
 * over the steps run, and the number of all-reduces (n_calls may be NULL). */
double qn_llama_cuda_allreduce_s(const qn_llama_cuda *f, uint64_t *n_calls);

/* Host time of the steps run so far, by phase (seconds): checking + staging the batch (with any graph
 * capture + instantiation, also counted alone in capture_s), enqueuing its kernels or launching its graph,
 * and blocked in the stream synchronisation at the end of each step. The GPU idles while the host stages
 * the next step. */
typedef struct qn_cuda_host_times {
    double stage_s, launch_s, capture_s, wait_s;
    double graph_stage_s, graph_launch_s, graph_wait_s; /* the same for the steps replayed as graphs */
    int64_t n_steps, n_graph_steps, n_captures;
} qn_cuda_host_times;
void qn_llama_cuda_host_times(const qn_llama_cuda *f, qn_cuda_host_times *out);

/* Captures the sampling graphs of pure-decode steps ahead of use, as vLLM does at start-up: every padded
 * token count (1, 2, 4, then multiples of 8) up to min(max_tokens, max_seqs, the step budget), for both
 * sampling paths (kernels/sampling/sampling_cuda.h). Otherwise the first step of each count captures its
 * graph (~26 ms with the GPU idle, H200, 8B) in the middle of serving. Each capture follows one eager run
 * of the same step on dummy rows (token 0 at position 0 of sequence 0, no KV slot), as vLLM warms
 * up: the KV cache stays untouched; the device logits and sampled-token buffers are overwritten. No-op
 * with graphs off, a tap set, or a split vocabulary (no device sampling); a failed capture turns graphs
 * off as in a step. n_captured: graphs instantiated. */
qn_status qn_llama_cuda_capture_decode_graphs(qn_llama_cuda *f, int32_t max_tokens, int32_t *n_captured,
                                              qn_error *err);

/* --- steps --- */
/* Logits of batch->out_rows into host memory logits [n_out][n_vocab]. */
qn_status qn_llama_cuda_forward(qn_llama_cuda *f, const qn_fwd_batch *batch, float *logits, qn_error *err);
/* Samples one token per out row on the GPU: params [n_out] host memory; tokens [n_out] host memory. */
qn_status qn_llama_cuda_forward_sample(qn_llama_cuda *f, const qn_fwd_batch *batch, const qn_sample_row_params *params,
                                       int32_t *tokens, qn_error *err);
/* Copies KV block src to dst in every layer (copy-on-write). */
qn_status qn_llama_cuda_copy_block(qn_llama_cuda *f, int32_t src, int32_t dst, qn_error *err);

#endif
