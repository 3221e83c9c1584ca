/* mock_engine.h — a deterministic fake engine behind qn_engine_iface for the host/ server tests.
 * One engine thread "generates" token k of every request as id 1000+k with text "t<k> ", after a prefill
 * delay and then one token per token delay; it records submits and aborts so tests can check that a
 * disconnect reaches the engine. Tokenizer: one token per byte (id = byte + 3; 1 = BOS, 2 = EOS).
 * Prompt markers switch behaviour: "[[stop3]]" stops with stop_str "END" after 3 tokens, "[[error]]"
 * fails after 2 tokens, "[[utf8]]" emits "é" (2 bytes) tokens. Built by #including mock_engine.c. */
#ifndef QN_TEST_MOCK_ENGINE_H
#define QN_TEST_MOCK_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "host/bridge.h"

typedef struct mock_engine mock_engine;

typedef struct mock_engine_config {
    int prefill_ms;        /* delay before the first token */
    int token_ms;          /* delay between tokens */
    int32_t max_model_len; /* reported context */
} mock_engine_config;

mock_engine *mock_engine_create(const mock_engine_config *cfg);
/* Stops the thread; requests still running get FINAL(ABORT) first. */
void mock_engine_destroy(mock_engine *m);
void mock_engine_iface(mock_engine *m, qn_engine_iface *out);
void mock_engine_set_delays(mock_engine *m, int prefill_ms, int token_ms);
void mock_engine_set_busy(mock_engine *m, bool busy); /* submit -> QN_ERR_BUSY */

/* --- observations (thread-safe) --- */
uint64_t mock_engine_last_id(mock_engine *m);               /* last id handed out by submit, 0 = none */
size_t mock_engine_n_submitted(mock_engine *m);
size_t mock_engine_n_aborted(mock_engine *m);
bool mock_engine_was_aborted(mock_engine *m, uint64_t id);
/* Waits up to timeout_ms for abort(id); returns true when it arrived. */
bool mock_engine_wait_abort(mock_engine *m, uint64_t id, int timeout_ms);
size_t mock_engine_n_live(mock_engine *m);                  /* requests not yet finished */
/* The last submitted request's sampling max_tokens and seed. */
int32_t mock_engine_last_max_tokens(mock_engine *m);
uint64_t mock_engine_last_seed(mock_engine *m);

#endif
