/* request.h — one generation request as the scheduler sees it: token ids, counts, lifecycle state and
 * its KV block table. Owns: the token array (prompt followed by generated tokens) and the block
 * table's ids array. Does not own: sampling parameters (an opaque pointer kept for the engine), nor
 * the KV blocks themselves (kv/block_pool.h hands them out; the scheduler frees them). */
#ifndef QN_SCHED_REQUEST_H
#define QN_SCHED_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "kv/block_pool.h"
#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qn_req_state {
    QN_REQ_WAITING = 0,         /* queued, never admitted; holds no blocks */
    QN_REQ_RUNNING,             /* admitted; holds blocks for its n_computed tokens */
    QN_REQ_PREEMPTED,           /* was running, blocks freed; back in the waiting queue, recomputes */
    QN_REQ_FINISHED_STOPPED,    /* EOS or stop condition reported by the caller */
    QN_REQ_FINISHED_LENGTH,     /* max_tokens or max_model_len reached */
    QN_REQ_FINISHED_ABORTED,    /* qn_sched_abort (client gone, cancel) */
    QN_REQ_FINISHED_ERROR,      /* the scheduler gave up: `error` says why (cannot fit the whole pool) */
} qn_req_state;

typedef struct qn_request_params {
    uint64_t id;             /* caller's id; qn_sched_abort looks it up */
    const int32_t *prompt;   /* [n_prompt] token ids, copied */
    int32_t n_prompt;        /* >= 1 */
    int32_t max_tokens;      /* generated-token limit; <= 0: only max_model_len limits */
    double arrival_time;     /* caller's monotonic clock, seconds (metrics only) */
    const void *sampling;    /* opaque sampling parameters, borrowed for the request's life */
    void *user;              /* caller's context (stream handle, ...) */
} qn_request_params;

typedef struct qn_request {
    uint64_t id;
    qn_req_state state;
    int32_t *tokens;         /* [cap] prompt then generated ids; first n_tokens valid */
    int32_t n_prompt;
    int32_t n_tokens;        /* n_prompt + generated */
    int32_t cap;
    int32_t max_tokens;
    /* Tokens whose KV is in blocks. Running, between steps: blocks.n_tokens == n_computed, and
     * n_tokens - n_computed tokens remain to compute (1 for a decode). Waiting/preempted: 0. */
    int32_t n_computed;
    int32_t n_cached_prompt; /* prefix-cache hit tokens at first admission (usage.cached_tokens) */
    int32_t n_preemptions;
    uint64_t arrival_seq;    /* priority: arrival order, assigned by qn_sched_add (lower = older) */
    double arrival_time;
    qn_status error;         /* why, when state == QN_REQ_FINISHED_ERROR; QN_OK otherwise */
    const void *sampling;
    void *user;
    qn_seq_blocks blocks;    /* KV block table, managed by the scheduler through the pool */
    bool admitted_once;      /* set at first admission (n_cached_prompt is final) */
} qn_request;

/* --- lifecycle --- */
qn_status qn_request_create(const qn_request_params *params, qn_request **out);
/* The request must hold no KV blocks (finished, or never admitted). NULL is a no-op. */
void qn_request_destroy(qn_request *req);

/* --- mutations --- */
qn_status qn_request_append_token(qn_request *req, int32_t token);

/* --- queries --- */
static inline int32_t qn_request_n_generated(const qn_request *req) { return req->n_tokens - req->n_prompt; }
static inline bool qn_request_is_finished(const qn_request *req) { return req->state >= QN_REQ_FINISHED_STOPPED; }
const char *qn_req_state_str(qn_req_state state);

#ifdef __cplusplus
}
#endif
#endif /* QN_SCHED_REQUEST_H */
