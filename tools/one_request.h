/* one_request.h — `quern run` and `quern bench` drive the serving engine (exec/engine.h), the same
 * runtime `quern serve` uses, one request at a time: an engine sized for one sequence and a blocking
 * submit-and-wait with the request's timings. */
#ifndef QN_TOOLS_ONE_REQUEST_H
#define QN_TOOLS_ONE_REQUEST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "exec/engine.h"

typedef struct qn_one_engine_opts {
    int32_t n_ctx;          /* max positions of the one sequence */
    int32_t n_batch;        /* max tokens per forward step (prefill chunk) */
    int32_t n_threads;
    qn_cpu_isa isa;
    bool no_repack;
    bool prefix_cache;      /* bench turns it off: every repetition recomputes its prompt */
} qn_one_engine_opts;

/* Prints "quern CMD: ..." and returns NULL on failure. KV for exactly n_ctx tokens. */
qn_engine *qn_one_engine_create(const char *cmd, const qn_model *m, const qn_one_engine_opts *o,
                                const qn_tool_device_opts *dev);

typedef struct qn_one_result {
    int32_t n_tokens;       /* generated */
    qn_finish finish;
    qn_status error;
    char error_msg[512];
    double t_prefill;       /* submit -> first token (prompt steps + the first sample), seconds */
    double t_decode;        /* first -> last token: n_tokens - 1 decode steps */
} qn_one_result;

/* Runs prompt[0..n) with p to its end. text_out (may be NULL): every text delta is written there as it
 * comes (on the engine thread); ids_out (may be NULL): generated ids, space-separated. */
qn_status qn_one_generate(qn_engine *e, const int32_t *prompt, int32_t n, const qn_gen_params *p, FILE *text_out,
                          FILE *ids_out, qn_one_result *res);

#endif
