/* engine.h — the serving engine: one engine thread owns the model's forward pass, the KV cache,
 * the block pool and the scheduler, and runs the step loop
 *   schedule -> build batch -> (CoW copies) -> forward -> sample -> stop checks -> stream out.
 * Other threads only submit and abort (thread-safe queues); results come back through a per-request
 * callback that runs ON THE ENGINE THREAD and must not block (the HTTP host queues and wakes its
 * loop). Sampling is per request with its own seeded RNG, so batching never changes a seeded result.
 * On a backend that samples on the device (CUDA), a step whose rows need nothing but temperature /
 * top-k / top-p / min-p (no penalties, logprobs, logit_bias or min_tokens mask) is sampled there with
 * the request's own uniform draw, so only token ids cross PCIe; other steps copy logits to the host. */
#ifndef QN_ENGINE_H
#define QN_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "exec/backend.h"
#include "exec/sampling.h"
#include "kernels/cpu/cpu_kernels.h"
#include "quern.h"

typedef struct qn_model qn_model;
typedef struct qn_engine qn_engine;

typedef struct qn_engine_config {
    int32_t n_threads;              /* CPU path threads */
    qn_cpu_isa isa;
    bool no_repack;                 /* CPU: no load-time weight repack (exec/backend.h) */
    qn_device_kind device;          /* AUTO: CUDA when a GPU is present */
    int cuda_device;                /* CUDA ordinal */
    int32_t tp_size;                /* tensor-parallel ranks (exec/backend.h); n_threads are split among them */
    float gpu_memory_utilization;   /* CUDA, kv_cache_bytes == 0: KV gets this fraction of the GPU's memory
                                     * less what the weights and activations take (vLLM's knob; 0.9) */
    int32_t max_model_len;          /* per sequence (0: min(n_ctx_train, 4096)) */
    int32_t max_num_seqs;           /* 256 */
    int32_t max_num_batched_tokens; /* 0: auto (8192 on an H100-class GPU, else 2048: llama_cuda.h) */
    int32_t block_size;             /* 16 */
    int64_t kv_cache_bytes;         /* 0: CPU: enough for max_num_seqs/8 sequences of max_model_len, >= 1;
                                     * CUDA: from gpu_memory_utilization */
    bool enable_prefix_cache;       /* true */
    int32_t max_waiting;            /* submissions beyond this many waiting are refused (QN_ERR_BUSY) */
    bool host_sampling;             /* sample every row on the host even where the backend could sample on
                                     * the device (tests compare the two) */
    bool cuda_graphs;               /* CUDA: replay pure-decode steps as graphs (true) */
    int mmvq_stage;                 /* CUDA: int8 decode weight loads (llama_cuda.h; 0 = auto) */
    bool capture_graphs_at_start;   /* CUDA, with cuda_graphs and device sampling: capture the decode graphs of
                                     * every padded step size up to max_num_seqs at create, as vLLM does, instead
                                     * of on first use mid-serving (true; ~26 ms each, two sampling paths) */
    int32_t profile_begin, profile_end; /* CUDA: cudaProfilerStart/Stop around these steps (begin > end: off) */
    bool tp_nccl;                   /* CUDA: the NCCL tensor-parallel path even for tp_size 1 */
    const char *tp_master;          /* CUDA: the TP group spans processes (exec/backend.h); NULL: one process.
                                     * Every process must then run the same requests in the same order. */
    int tp_first_rank, tp_local;    /* with tp_master: this process runs ranks first .. first + local - 1 */
} qn_engine_config;

qn_engine_config qn_engine_config_default(void);
/* KV cache bytes one token takes (K and V, every layer, fp16): kv_cache_bytes for N tokens is N times this. */
size_t qn_engine_kv_bytes_per_token(const qn_model *m);

typedef struct qn_token_bias {
    int32_t token;
    float bias;                     /* added to the logit before sampling */
} qn_token_bias;

/* Zero-initialised fields keep the defaults: no min_tokens, no bias, stop strings cut from the text,
 * control tokens left out of the text. */
typedef struct qn_gen_params {
    qn_sampler_params sampling;
    int32_t max_tokens;             /* <= 0: up to max_model_len */
    bool ignore_eos;
    const char *const *stop;        /* stop strings (not included in the output unless
                                     * include_stop_str_in_output), copied */
    int32_t n_stop;
    const int32_t *stop_token_ids;  /* copied */
    int32_t n_stop_token_ids;
    int32_t n_logprobs;             /* < 0: none; 0: chosen token only; k: chosen + top k */
    int32_t min_tokens;             /* EOS (unless ignore_eos) and stop_token_ids are masked out of the
                                     * logits until this many tokens have been generated */
    const qn_token_bias *logit_bias; /* [n_logit_bias], copied; ids must be < n_vocab */
    int32_t n_logit_bias;
    bool include_stop_str_in_output; /* a matched stop string ends the text delta instead of being cut */
    bool render_special;            /* control tokens appear in the text (skip_special_tokens = false) */
} qn_gen_params;

typedef enum qn_event_kind { QN_EVENT_TOKEN = 0, QN_EVENT_FINISH } qn_event_kind;
typedef enum qn_finish { QN_FINISHED_STOP = 0, QN_FINISHED_LENGTH, QN_FINISHED_ABORT, QN_FINISHED_ERROR } qn_finish;

typedef struct qn_event {
    qn_event_kind kind;
    uint64_t id;
    /* TOKEN */
    int32_t token;
    const char *text;               /* UTF-8-complete text delta (may be empty while held back) */
    size_t text_len;
    float logprob;                  /* when n_logprobs >= 0 */
    const qn_token_prob *top;       /* [n_top] when n_logprobs > 0 */
    int32_t n_top;
    /* FINISH */
    qn_finish finish;
    const char *stop_reason;        /* matched stop string, or NULL */
    int32_t stop_token;             /* matched stop/eos token id, or -1 */
    int32_t n_prompt_tokens, n_completion_tokens, n_cached_tokens;
    qn_status error;
    const char *error_msg;
    /* timing (seconds, engine monotonic clock) */
    double t_arrival, t_first_token, t_now;
} qn_event;

typedef void (*qn_event_fn)(void *user, const qn_event *ev);

typedef struct qn_engine_snapshot {
    int32_t n_running, n_waiting;
    int32_t n_blocks_total, n_blocks_free;
    double kv_usage;                /* 0..1 */
    int64_t prefix_queries, prefix_hits, n_preemptions;
    int64_t n_prompt_tokens, n_generation_tokens, n_steps;
    /* engine-thread time by phase (seconds since start): schedule + batch build, forward (with device
     * sampling when taken), host sampling + stop checks + events; and the steps whose tokens were
     * sampled on the device */
    double sched_s, forward_s, sample_s;
    int64_t n_forward_steps, n_device_sampled_steps, n_step_tokens;
    double loop_s;                  /* engine-thread time between steps: taking new requests and aborts */
    qn_cuda_host_times cuda;        /* inside forward on the CUDA backend (llama_cuda.h); zeros elsewhere */
} qn_engine_snapshot;

/* --- lifecycle --- */
/* Borrows the model (must outlive the engine). Starts the engine thread. Refuses to start, with the
 * numbers, when max_model_len cannot fit the KV budget even once. */
qn_status qn_engine_create(const qn_model *m, const qn_engine_config *cfg, qn_engine **out, qn_error *err);
/* Aborts what is left (FINISH events with ABORT), joins the thread. NULL is a no-op. */
void qn_engine_destroy(qn_engine *e);

/* --- requests (any thread) --- */
/* QN_ERR_CONTEXT if n_prompt + max_tokens > max_model_len (or the prompt alone when max_tokens <= 0),
 * QN_ERR_BUSY when the waiting queue is full, QN_ERR_INVALID_ARG for bad parameters (message names
 * the field). On success *id identifies the request and fn will receive its events, FINISH last. */
qn_status qn_engine_submit(qn_engine *e, const int32_t *prompt, int32_t n_prompt, const qn_gen_params *p,
                           qn_event_fn fn, void *user, uint64_t *id, qn_error *err);
/* Aborts: the request's KV blocks are freed within one engine step; a FINISH/ABORT event follows
 * unless it had already finished. */
void qn_engine_abort(qn_engine *e, uint64_t id);

/* --- queries (any thread) --- */
void qn_engine_get_stats(qn_engine *e, qn_engine_snapshot *out);
int32_t qn_engine_max_model_len(const qn_engine *e);
int32_t qn_engine_max_batched_tokens(const qn_engine *e); /* the token budget per step, auto resolved */
const qn_model *qn_engine_model(const qn_engine *e);
/* Human-readable KV sizing line ("N blocks of 16 = T tokens, max concurrency C at len L"). */
const char *qn_engine_kv_summary(const qn_engine *e);
/* "cpu avx512, 2 threads" / "cuda NVIDIA H200 (sm_90, 132 SMs)" */
const char *qn_engine_backend_name(const qn_engine *e);
qn_device_kind qn_engine_device(const qn_engine *e);  /* CPU or CUDA */
const char *qn_engine_isa_name(const qn_engine *e);    /* "avx512" / "CUDA" */
/* Seconds the backend spent in tensor-parallel all-reduces since the engine started, and their count
 * (0 without tensor parallelism). */
double qn_engine_allreduce_s(const qn_engine *e, uint64_t *n_calls);
/* Whether a request with p (past its min_tokens) has its tokens sampled on the device. */
bool qn_engine_samples_on_device(const qn_engine *e, const qn_gen_params *p);

#endif
