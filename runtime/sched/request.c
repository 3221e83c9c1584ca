/* request.c — request creation, token growth and state names (sched/request.h). */
#include "sched/request.h"

#include <stdlib.h>
#include <string.h>

qn_status qn_request_create(const qn_request_params *params, qn_request **out) {
    if (!params || !out || !params->prompt || params->n_prompt < 1) return QN_ERR_INVALID_ARG;
    *out = NULL;
    qn_request *r = calloc(1, sizeof *r);
    if (!r) return QN_ERR_NOMEM;
    int32_t extra = params->max_tokens > 0 && params->max_tokens < 64 ? params->max_tokens : 64;
    if (params->n_prompt > INT32_MAX - extra) extra = INT32_MAX - params->n_prompt;
    r->cap = params->n_prompt + extra;
    r->tokens = malloc((size_t)r->cap * sizeof *r->tokens);
    if (!r->tokens) {
        free(r);
        return QN_ERR_NOMEM;
    }
    memcpy(r->tokens, params->prompt, (size_t)params->n_prompt * sizeof *r->tokens);
    r->id = params->id;
    r->state = QN_REQ_WAITING;
    r->n_prompt = r->n_tokens = params->n_prompt;
    r->max_tokens = params->max_tokens;
    r->arrival_time = params->arrival_time;
    r->sampling = params->sampling;
    r->user = params->user;
    r->error = QN_OK;
    qn_seq_blocks_init(&r->blocks);
    *out = r;
    return QN_OK;
}

void qn_request_destroy(qn_request *r) {
    if (!r) return;
    qn_seq_blocks_free(&r->blocks);
    free(r->tokens);
    free(r);
}

qn_status qn_request_append_token(qn_request *r, int32_t token) {
    if (r->n_tokens == r->cap) {
        if (r->cap == INT32_MAX) return QN_ERR_OVERFLOW;
        const int32_t cap = r->cap > INT32_MAX / 2 ? INT32_MAX : r->cap * 2;
        int32_t *t = realloc(r->tokens, (size_t)cap * sizeof *t);
        if (!t) return QN_ERR_NOMEM;
        r->tokens = t;
        r->cap = cap;
    }
    r->tokens[r->n_tokens++] = token;
    return QN_OK;
}

const char *qn_req_state_str(qn_req_state s) {
    switch (s) {
    case QN_REQ_WAITING: return "waiting";
    case QN_REQ_RUNNING: return "running";
    case QN_REQ_PREEMPTED: return "preempted";
    case QN_REQ_FINISHED_STOPPED: return "stop";
    case QN_REQ_FINISHED_LENGTH: return "length";
    case QN_REQ_FINISHED_ABORTED: return "abort";
    case QN_REQ_FINISHED_ERROR: return "error";
    }
    return "unknown";
}
