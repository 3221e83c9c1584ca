/* model.h — a loaded Llama-family model: config, weight views and tokenizer.
 * Owns: the GGUF mapping, the vocab, the chat template and the few host buffers made at
 * load (norm vectors converted to f32 when a file stores them otherwise). Weight views point into
 * the mapping and are valid until qn_model_free. Shapes are checked against the config at load. */
#ifndef QN_MODEL_H
#define QN_MODEL_H

#include <stdint.h>

#include "config/model_config.h"
#include "kernels/quant/lutq.h"
#include "kernels/quant/qformat.h"
#include "quern.h"

typedef struct qn_gguf qn_gguf;
typedef struct qn_vocab qn_vocab;
typedef struct qn_chat_template qn_chat_template;
typedef struct qn_st qn_st;

/* A 2-D weight: n rows (output features) of k elements (input features), row-major blocks.
 * HF GPTQ / AWQ / bnb-4bit weights are repacked at load into the lutq layout: then lutq is set, fmt is F32
 * (the activation format their CPU kernel takes) and data = lutq->codes. */
typedef struct qn_weight {
    const char *name;     /* tensor name (points into the file) */
    qn_qformat fmt;
    int64_t k;            /* elements per row (GGUF ne[0]) */
    int64_t n;            /* rows (GGUF ne[1]) */
    const void *data;     /* [n][row_bytes(fmt, k)] */
    const qn_lutq_weight *lutq; /* NULL, or the repacked quantized weight (owned by the model) */
} qn_weight;

typedef struct qn_layer_weights {
    const float *attn_norm;       /* [n_embd] */
    qn_weight wq, wk, wv, wo;     /* q: [n_head*hd][n_embd], k/v: [n_head_kv*hd][n_embd], o: [n_embd][n_head*hd] */
    const float *bq, *bk, *bv;    /* optional biases (qwen2), [rows] */
    const float *ffn_norm;        /* [n_embd] */
    qn_weight w_gate, w_up;       /* [n_ff][n_embd] */
    qn_weight w_down;             /* [n_embd][n_ff] */
} qn_layer_weights;

typedef struct qn_model {
    char *path;
    qn_model_config cfg;
    qn_gguf *gguf;                /* the GGUF model; for HF directories the GGUF the tokenizer comes from */
    qn_st *st;                    /* HF directories: the safetensors checkpoint (NULL for GGUF) */
    qn_weight tok_embd;           /* [n_vocab][n_embd] */
    qn_weight output;             /* [n_vocab][n_embd]; = tok_embd when tied */
    const float *output_norm;     /* [n_embd] */
    const float *rope_freqs;      /* [rope_dim/2] llama3 frequency factors, or NULL */
    qn_layer_weights *layers;     /* [n_layer] */
    qn_vocab *vocab;
    qn_chat_template *chat;       /* from tokenizer.chat_template (chatml fallback when absent/unknown) */
    uint64_t weight_bytes;        /* bytes of all weight tensors */
    uint64_t n_params;
    void **owned;                 /* host buffers made at load, freed with the model */
    int n_owned;
} qn_model;

/* --- lifecycle --- */
/* path: a GGUF file, or a Hugging Face directory (qn_model_load_hf with vocab_gguf = NULL). */
qn_status qn_model_load(const char *path, qn_model **out, qn_error *err);
/* A Hugging Face directory: config.json + model.safetensors (or a sharded index), fp16/bf16/fp32 weights or
 * GPTQ / AWQ / bitsandbytes-4bit linears (repacked once into the lutq CPU layout), NEOX RoPE in HF row order.
 * HF checkpoints carry no GGUF vocab: the tokenizer and chat template come from vocab_gguf, or when NULL from
 * the only *.gguf file in dir (tokenizer.json is not read yet). Implemented in hf_loader.c. */
qn_status qn_model_load_hf(const char *dir, const char *vocab_gguf, qn_model **out, qn_error *err);
/* As qn_model_load_hf, with the GPTQ / AWQ / bnb repacks on n_threads threads (<= 0: the online CPUs, which
 * is what qn_model_load_hf uses). The repacked weights are the same bytes for every n_threads. */
qn_status qn_model_load_hf_threads(const char *dir, const char *vocab_gguf, int n_threads, qn_model **out,
                                   qn_error *err);
void qn_model_free(qn_model *m); /* NULL is a no-op */

/* Dequantizes row `id` of a weight into out[k] (embedding lookup). */
qn_status qn_weight_row_f32(const qn_weight *w, int64_t id, float *out);

#endif
