/* llama_cpu.h — the Llama-family forward pass on the CPU (multi-threaded, paged KV).
 * Owns: scratch activations sized for max_tokens per step and max_ctx keys. Borrows the model,
 * the thread pool and the kernel table (all must outlive it). One step at a time. */
#ifndef QN_LLAMA_CPU_H
#define QN_LLAMA_CPU_H

#include "core/threadpool.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kv/kv_cache.h"
#include "model/forward.h"
#include "model/model.h"

typedef struct qn_llama_cpu qn_llama_cpu;

/* --- lifecycle --- */
qn_status qn_llama_cpu_create(const qn_model *m, const qn_cpu_kernels *kern, qn_threadpool *tp,
                              int32_t max_tokens, int32_t max_ctx, qn_llama_cpu **out, qn_error *err);
void qn_llama_cpu_destroy(qn_llama_cpu *f); /* NULL is a no-op */
/* Bytes of matmul weights create repacked for the table's matmul_x8 kernels (Q2_K×8 .. Q6_K×8, Q4_0×8, Q5_0×8,
 * Q5_1×8, Q8_0×8 on x86 SIMD); 0: none. */
size_t qn_llama_cpu_repacked_bytes(const qn_llama_cpu *f);

/* Debug tap (peer comparison, like ggml's eval callback): when set, called after each stage of
 * each layer with name ("attn_norm", "q", "k", "v", "kqv_out", "ffn_inp", "ffn_norm", "ffn_swiglu",
 * "l_out"; llama.cpp's names), layer, rows [n_tokens][n] (row stride ld); then "result_norm" (layer
 * -1, the n_out output rows) before the output matmul. Every matmul input is among them (imatrix.c).
 * Single-threaded, between parallel regions. */
typedef void (*qn_llama_tap_fn)(void *user, const char *name, int layer, const float *rows, int64_t n_tokens,
                                int64_t n, int64_t ld);
void qn_llama_cpu_set_tap(qn_llama_cpu *f, qn_llama_tap_fn fn, void *user);

/* Tensor-parallel hook (tp/forward_cpu.h): when set, called on the partial output rows [n_tokens][n]
 * (contiguous) of the o projection and of the down projection of every layer, before the residual add;
 * it must leave the sum over ranks in place. Called from the forward's thread, between parallel regions.
 * A non-OK return ends the step with that status. Unset (the default), the step is bit-for-bit what it
 * was without the hook: the residual add stays fused into the matmul. */
typedef qn_status (*qn_llama_allreduce_fn)(void *user, float *rows, int64_t n_tokens, int64_t n);
void qn_llama_cpu_set_allreduce(qn_llama_cpu *f, qn_llama_allreduce_fn fn, void *user);
/* Vocab-parallel embedding (tensor parallel): when m->tok_embd holds fewer rows than n_vocab, they are the
 * global vocab ids [row_begin, row_begin + tok_embd.n); a token outside gets a zero row and the all-reduce
 * hook (required then) sums the ranks' rows into the full embeddings, exactly (one rank is non-zero). */
void qn_llama_cpu_set_embd_rows(qn_llama_cpu *f, int64_t row_begin);

/* Runs one step: writes K/V of every token into kv at batch->slot_mapping, and the logits of
 * batch->out_rows into logits [n_out][n_vocab]. */
qn_status qn_llama_cpu_forward(qn_llama_cpu *f, qn_kv_cache *kv, const qn_fwd_batch *batch, float *logits,
                               qn_error *err);

#endif
