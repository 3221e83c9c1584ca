/* hf_calib.h — calibration forward for the post-training quantizers (GPTQ now, AWQ later): calibration text ->
 * tokens (the model's tokenizer) -> n_samples windows of ctx tokens, then the Llama-family decoder run layer by
 * layer in f32 (matmuls and Hessians on the calibration backend, CPU or CUDA: model/calib_backend.h; the rest on
 * the CPU), stopping at each group of linears that share one input so a hook can look at the
 * inputs and replace the weights (AutoGPTQ's sequential, "true_sequential" order, docs/formats.md §6.1 step 1):
 *
 *   QKV      x = RMSNorm(h)·attn_norm           -> q_proj, k_proj, v_proj
 *   O        x = causal GQA attention (NEOX/NORM RoPE as the config says)   -> o_proj
 *   GATE_UP  x = RMSNorm(h + o)·ffn_norm        -> gate_proj, up_proj
 *   DOWN     x = SiLU(gate)·up                  -> down_proj
 *
 * Each stage's outputs are computed with the weights as the hook left them, so the next stage, and the next
 * layer, see the quantized model's activations. Usage:
 *
 *     qn_calib_create(model, text, len, &params, tp, backend, &c, &err);
 *     for (il = 0; il < n_layer; il++) qn_calib_run_layer(c, il, my_hook, my_state, &err);
 *     qn_calib_destroy(c);
 *
 * The AWQ hook (model/hf_quantize.c) leaves the weights alone, so its stream stays in full precision as AutoAWQ's
 * does: at each stage it keeps mean |x| per channel and the Gram matrix of x, and after the DOWN stage searches the
 * layer's scales (model/awq_quant.h); folding the inverse scales into the previous ops is the writer's business.
 * Owns: the token windows, the hidden states [n_tok][n_embd], one layer's f32 weights and the stage buffers.
 * Borrows: the model (weights are read through qn_weight, any plain format), the thread pool and the backend. */
#ifndef QN_HF_CALIB_H
#define QN_HF_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "model/calib_backend.h"
#include "model/model.h"
#include "quern.h"

typedef struct qn_threadpool qn_threadpool;
typedef struct qn_calib qn_calib;

typedef enum qn_calib_stage {
    QN_CALIB_STAGE_QKV = 0,
    QN_CALIB_STAGE_O,
    QN_CALIB_STAGE_GATE_UP,
    QN_CALIB_STAGE_DOWN,
    QN_CALIB_STAGE_COUNT
} qn_calib_stage;

typedef struct qn_calib_params {
    int32_t n_samples; /* windows (fewer when the text is short: at least one full window is required) */
    int32_t ctx;       /* tokens per window; positions restart at 0 in every window */
} qn_calib_params;

qn_calib_params qn_calib_params_default(void); /* 64 x 512 */

/* One linear of a stage: its f32 weight, which the hook may overwrite in place. */
typedef struct qn_calib_linear {
    const char *name;  /* module path inside the layer: "self_attn.q_proj", "mlp.down_proj", ... */
    int64_t k, n;      /* in_features, out_features */
    float *w;          /* [n][k], valid during the hook */
} qn_calib_linear;

/* What a hook sees: the common input x of the stage's linears, also in the backend's X slot for the hook's call. */
typedef struct qn_calib_stage_io {
    int32_t layer;
    qn_calib_stage stage;
    const float *x;        /* [n_tok][k] */
    int64_t n_tok, k;
    qn_calib_linear *lin;  /* [n_lin] */
    int32_t n_lin;
} qn_calib_stage_io;

typedef qn_status (*qn_calib_hook_fn)(void *ud, const qn_calib_stage_io *io, qn_error *err);

/* --- lifecycle --- */
/* Tokenizes text (no BOS/EOS, no special-token parsing) and embeds the windows. QN_ERR_INVALID_ARG when the text
 * has fewer than ctx tokens (the message gives both counts); QN_ERR_UNSUPPORTED for rope scaling other than
 * none/linear. tp, be: borrowed for the object's lifetime (tp NULL = one thread; be NULL = a CPU backend on tp,
 * owned by the object). */
qn_status qn_calib_create(const qn_model *m, const char *text, size_t len, const qn_calib_params *p,
                          qn_threadpool *tp, qn_calib_backend *be, qn_calib **out, qn_error *err);
void qn_calib_destroy(qn_calib *c); /* NULL is a no-op */

/* --- queries --- */
int64_t qn_calib_n_tokens(const qn_calib *c);  /* n_samples · ctx actually used */
int32_t qn_calib_n_samples(const qn_calib *c);

/* --- running --- */
/* Runs layer il (layers in order 0, 1, ...) over the hidden states, calling hook (may be NULL) at every stage
 * before the stage's matmuls; the hidden states then hold the layer's output. */
qn_status qn_calib_run_layer(qn_calib *c, int32_t il, qn_calib_hook_fn hook, void *ud, qn_error *err);

/* --- helpers for hooks --- */
/* h[k][k] = (2 / n_tok)·Σ_t x[t]·x[t]ᵀ (f32) of the stage input io->x, GPTQ's Hessian, on the backend; valid only
 * inside the hook of that stage (x is in the backend's X slot then). */
qn_status qn_calib_stage_hessian(qn_calib *c, const qn_calib_stage_io *io, float *h, qn_error *err);

#endif
