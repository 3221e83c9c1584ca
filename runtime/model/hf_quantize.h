/* hf_quantize.h — `quern quantize HF_DIR OUT_DIR gptq|awq|nf4` as a library: a Llama-family Hugging Face directory
 * with plain f16/bf16/f32 weights in, a quantized Hugging Face directory out, in the layouts the peers write:
 *   GPTQ (AutoGPTQ / GPTQModel, docs/formats.md §3): q/k/v/o/gate/up/down of every layer as qweight / qzeros /
 *        scales (f16) / g_idx, checkpoint_format "gptq" (v1; zero − 1 stored) or "gptq_v2"; config.json gets
 *        "quantization_config", and quantize_config.json is written beside it. Hessians come from the
 *        calibration forward (model/hf_calib.h); --rtn gives round-to-nearest with the same writer.
 *   AWQ  (AutoAWQ GEMM, §4.1, §6.2): 4-bit asymmetric, qweight / qzeros (interleaved int32) / scales (f16); the
 *        activation-aware scales (model/awq_quant.h) searched on the calibration forward (kept in full precision,
 *        as AutoAWQ does) and folded into input_layernorm (q/k/v), post_attention_layernorm (gate/up), v_proj rows
 *        (o_proj, only without GQA and v bias) and up_proj rows (down_proj); the folded norms replace the stored ones.
 *   NF4  (bitsandbytes Linear4bit as transformers saves it, §5): weight (u8 [numel/2, 1]), absmax (f32, or u8 with
 *        nested_absmax / nested_quant_map under double quant), quant_map and the quant_state JSON; blocksize 64.
 * GPTQ and AWQ run their dense calibration work on params.device (model/calib_backend.h: CUDA when present under
 * AUTO); RTN and NF4 have none and stay on the CPU.
 * Every other tensor (embeddings, norms, lm_head, biases) is copied as stored. Tokenizer and generation files are
 * copied. Owns: one call's model, threads and output; everything is written into OUT_DIR.tmp.<pid> and renamed
 * to OUT_DIR at the end; on any error that directory is removed and OUT_DIR is untouched. */
#ifndef QN_HF_QUANTIZE_H
#define QN_HF_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "model/awq_quant.h"
#include "model/calib_backend.h"
#include "model/gptq_quant.h"
#include "model/hf_calib.h"
#include "quern.h"

typedef enum qn_hfq_method {
    QN_HFQ_GPTQ = 0,
    QN_HFQ_NF4,
    QN_HFQ_AWQ,
} qn_hfq_method;

typedef struct qn_hfq_progress {
    const char *what;   /* "calibration", "layer", "write" */
    int64_t index;      /* 0-based item done (layer) */
    int64_t count;
    double elapsed_s, eta_s;
    double loss;        /* GPTQ: Σ of the layer's per-linear losses */
    const char *device; /* where the calibration work runs: the backend's name ("cpu (4 threads)", "cuda:0 (...)") */
    bool done;          /* the last callback */
} qn_hfq_progress;

typedef void (*qn_hfq_progress_fn)(void *ud, const qn_hfq_progress *p);
/* AWQ: one scaling group's search result (group named by its first linear; err = output error, RTN vs the pick) */
typedef void (*qn_hfq_awq_log_fn)(void *ud, int32_t layer, const char *group, float alpha, double err_rtn,
                                  double err_best);

typedef struct qn_hfq_params {
    qn_hfq_method method;
    qn_gptq_params gptq;     /* bits, group_size, sym, act_order, v2, damp */
    qn_awq_params awq;       /* group_size, n_grid, clip */
    bool rtn;                /* GPTQ layout, round-to-nearest (no calibration, no Hessian) */
    bool double_quant;       /* NF4 */
    const char *calib_text;  /* GPTQ / AWQ: calibration text (not NUL-terminated) */
    size_t calib_len;
    qn_calib_params calib;
    qn_calib_device device;  /* GPTQ / AWQ: calibration forward, Hessians, GPTQ updates, AWQ scale search (AUTO) */
    int32_t n_threads;
    qn_hfq_progress_fn progress;
    qn_hfq_awq_log_fn awq_log;  /* may be NULL; called with progress_ud */
    void *progress_ud;
} qn_hfq_params;

qn_hfq_params qn_hfq_params_default(void);

/* Errors: QN_ERR_NOT_FOUND (no config.json / safetensors), QN_ERR_INVALID_ARG (parameters, OUT_DIR exists and is
 * not empty, calibration text too short), QN_ERR_UNSUPPORTED (an already quantized input, shapes the packing
 * cannot take), QN_ERR_NO_DEVICE (device CUDA without a CUDA build or device), QN_ERR_CUDA, QN_ERR_IO,
 * QN_ERR_NOMEM; the message names the file, tensor or flag. */
qn_status qn_hf_quantize(const char *in_dir, const char *out_dir, const qn_hfq_params *p, qn_error *err);

#endif
