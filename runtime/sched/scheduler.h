/* scheduler.h — continuous batching policy: which requests run this step and how many tokens each.
 * Owns: the waiting queue (FCFS, preempted requests at its front), the running list (admission
 * order), this step's decisions and the requests' block tables (through the block pool).
 * Does not own: the requests (the caller creates them, and destroys them once reported finished),
 * the pool (borrowed for the scheduler's life), tensors or device memory (sched/batch.h turns the
 * decisions into arrays; kv/kv_cache performs the copies). Pure C, no GPU, no threads.
 *
 * One step, vLLM V1 style, one token budget shared by prefill and decode:
 *   1. running requests in admission order: each takes its remaining tokens (1 for a decode, a chunk
 *      for a prefill in progress) up to the budget; when the pool cannot hold them, the last-admitted
 *      running request is preempted (blocks freed, recompute later) until it fits or the request
 *      itself was the one preempted;
 *   2. if nothing was preempted: waiting requests FCFS while budget, max_num_seqs and KV allow,
 *      each starting after its prefix-cache hit.
 * Lack of KV never aborts a request, except one that cannot fit even alone in the whole pool. */
#ifndef QN_SCHED_SCHEDULER_H
#define QN_SCHED_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "kv/block_pool.h"
#include "quern.h"
#include "sched/request.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qn_sched qn_sched;

typedef struct qn_sched_config {
    int32_t max_num_batched_tokens; /* token budget per step (--max-num-batched-tokens) */
    int32_t max_num_seqs;           /* running requests at most (--max-num-seqs) */
    int32_t max_model_len;          /* prompt + generated tokens per request (--max-model-len) */
    int32_t block_size;             /* must equal the pool's */
    bool enable_chunked_prefill;    /* off: a prompt is admitted only when it fits the budget whole,
                                       which needs max_num_batched_tokens >= max_model_len */
    int32_t long_prefill_threshold; /* > 0: a prefill takes at most this many tokens per step, so
                                       several long prompts progress together; 0: off */
} qn_sched_config;

/* 2048 tokens, 256 seqs, max_model_len 4096, block 16, chunked prefill on, threshold off. */
qn_sched_config qn_sched_config_default(void);

/* One decision: compute positions [start, start + n_tokens) of req this step. */
typedef struct qn_sched_entry {
    qn_request *req;            /* borrowed */
    int32_t start;              /* == req->n_computed when scheduled */
    int32_t n_tokens;           /* >= 1 */
    bool is_prefill;            /* false only for a one-token step past the prompt (a decode) */
    bool needs_sample;          /* start + n_tokens == req->n_tokens: the last row's logits are sampled */
    bool cancelled;             /* aborted after the step was built: its results are dropped */
    const int32_t *block_table; /* [n_blocks] == req->blocks.ids, covers start + n_tokens positions;
                                   valid until the next qn_sched_step */
    int32_t n_blocks;
} qn_sched_entry;

/* Owned by the scheduler, valid until the next qn_sched_step. */
typedef struct qn_sched_output {
    qn_sched_entry *entries;   /* [n_entries]: running requests first (admission order), then admissions */
    int32_t n_entries;
    int32_t n_tokens;          /* sum of entries[].n_tokens <= max_num_batched_tokens */
    int32_t n_prefill_tokens;  /* of n_tokens, in entries with is_prefill */
    int32_t n_decode_tokens;
    qn_block_copy *copies;     /* [n_copies] copy-on-write: copy block src -> dst (all layers, K and V)
                                  before this step's KV writes */
    int32_t n_copies;
    qn_request **preempted;    /* [n_preempted] moved back to the waiting queue; their KV is gone */
    int32_t n_preempted;
    qn_request **failed;       /* [n_failed] finished by the scheduler (QN_REQ_FINISHED_ERROR,
                                  error QN_ERR_KV_FULL): they cannot fit even alone in the pool */
    int32_t n_failed;
} qn_sched_output;

typedef enum qn_finish_reason {
    QN_FINISH_NONE = 0,
    QN_FINISH_STOP,   /* EOS, stop token or stop string: QN_REQ_FINISHED_STOPPED */
    QN_FINISH_LENGTH, /* caller-side length limit: QN_REQ_FINISHED_LENGTH */
} qn_finish_reason;

/* Owned by the scheduler, valid until the next qn_sched_step. */
typedef struct qn_sched_update_result {
    qn_request **finished; /* [n_finished] finished by this update; blocks freed, state final */
    int32_t n_finished;
} qn_sched_update_result;

typedef struct qn_sched_stats {
    int32_t n_running;
    int32_t n_waiting;
    int64_t n_steps;
    int64_t n_preemptions;     /* vllm:num_preemptions_total */
    int64_t n_prompt_tokens;   /* prefill tokens computed (recompute included) */
    int64_t n_decode_tokens;
} qn_sched_stats;

/* --- lifecycle --- */
/* Validates cfg (QN_ERR_INVALID_ARG with a message): all sizes > 0, block_size equal to the pool's,
 * max_num_batched_tokens >= max_model_len when chunked prefill is off. pool is borrowed. */
qn_status qn_sched_create(const qn_sched_config *cfg, qn_block_pool *pool, qn_sched **out, qn_error *err);
/* Frees the blocks of requests still held; does not destroy them. NULL is a no-op. */
void qn_sched_destroy(qn_sched *sched);

/* --- requests --- */
/* Queues a fresh request (state WAITING, nothing computed) at the back. QN_ERR_CONTEXT if
 * n_prompt > max_model_len; QN_ERR_KV_FULL if the prompt cannot fit the whole pool. The request must
 * outlive its stay: until it is reported finished (update result, output.failed, abort). */
qn_status qn_sched_add(qn_sched *sched, qn_request *req, qn_error *err);
/* Finishes request `id` as ABORTED, waiting, mid-prefill or decoding, and frees its blocks at once.
 * Between a step and its update the step's entry is marked cancelled. *out (if non-NULL) gets the
 * request, now owned by the caller again. QN_ERR_NOT_FOUND if not queued or running. */
qn_status qn_sched_abort(qn_sched *sched, uint64_t id, qn_request **out);
/* n > 1: child, created with parent's tokens (the last one may differ: another sample from the same
 * logits), joins the running list sharing all of parent's blocks and takes parent's n_prompt; the
 * first write into a shared partial block is copied on write (output.copies). Call between an
 * update and the next step, with parent running and fully computed but its last token.
 * QN_ERR_BUSY when max_num_seqs are running; QN_ERR_INVALID_ARG when the tokens or states differ. */
qn_status qn_sched_fork(qn_sched *sched, qn_request *parent, qn_request *child);

/* --- step --- */
/* Decides this step. *out is owned by the scheduler. Each step must be followed by exactly one
 * qn_sched_update_after_step (QN_ERR_INVALID_ARG otherwise). */
qn_status qn_sched_step(qn_sched *sched, const qn_sched_output **out);
/* Applies the step's results. sampled[i] and finish[i] are indexed like output.entries and read only
 * where entries[i].needs_sample (batch.logits_entry gives the index; finish may be NULL: no
 * caller-side stop; sampled may be NULL only when no entry needs a sample). For each entry: advances
 * n_computed, registers newly full blocks in the prefix cache, appends the sampled token, finishes
 * the request on finish[i], max_tokens or max_model_len and frees its blocks. *out may be NULL. */
qn_status qn_sched_update_after_step(qn_sched *sched, const int32_t *sampled, const qn_finish_reason *finish,
                                     const qn_sched_update_result **out);

/* --- queries --- */
int32_t qn_sched_n_running(const qn_sched *sched);
int32_t qn_sched_n_waiting(const qn_sched *sched);
bool qn_sched_has_work(const qn_sched *sched);
qn_request *qn_sched_running_at(const qn_sched *sched, int32_t i); /* admission order */
qn_request *qn_sched_waiting_at(const qn_sched *sched, int32_t i); /* queue order, 0 = next */
const qn_sched_config *qn_sched_get_config(const qn_sched *sched);
qn_block_pool *qn_sched_pool(const qn_sched *sched);
void qn_sched_get_stats(const qn_sched *sched, qn_sched_stats *out);

/* --- debugging --- */
/* Pool invariants plus: every block's ref == its occurrences in running requests' tables, waiting
 * requests hold none, running ones cover exactly n_computed tokens. QN_ERR_INTERNAL on failure. */
qn_status qn_sched_check(const qn_sched *sched, qn_error *err);

#ifdef __cplusplus
}
#endif
#endif /* QN_SCHED_SCHEDULER_H */
