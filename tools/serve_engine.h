/* serve_engine.h — the adapter `quern serve` hands to host/: a qn_engine_iface (host/bridge.h) over the
 * runtime's qn_engine (exec/engine.h), the model's vocab and its chat template.
 * Owns: the adapter state (served name, seed generator) and, once attached, the engine; not the model
 * (the caller frees it after qn_serve_engine_destroy). The server may be created before the model is
 * loaded: until qn_serve_engine_attach the interface reports an unknown context length and refuses work
 * (the server answers 503 then anyway). Mapping: host qn_sampling_params -> qn_gen_params, engine
 * qn_event -> qn_gen_event (token pieces for logprobs, usage, error codes), engine snapshot -> stats. */
#ifndef QN_TOOLS_SERVE_ENGINE_H
#define QN_TOOLS_SERVE_ENGINE_H

#include "exec/engine.h"
#include "host/bridge.h"
#include "model/model.h"

typedef struct qn_serve_engine qn_serve_engine;

/* --- lifecycle --- */
/* model_name: the default served name (copied), e.g. the file name without ".gguf". NULL on OOM. */
qn_serve_engine *qn_serve_engine_create(const char *model_name);
/* Publishes a loaded model and a running engine (any thread; once). Both are borrowed until destroy. */
void qn_serve_engine_attach(qn_serve_engine *se, const qn_model *m, qn_engine *e);
/* Destroys the attached engine (its remaining requests get FINAL/ABORT) and the adapter. NULL: no-op. */
void qn_serve_engine_destroy(qn_serve_engine *se);

/* The vtable for qn_server_create; ctx is se. */
void qn_serve_engine_iface(qn_serve_engine *se, qn_engine_iface *out);

/* "SmolLM2-135M-Instruct.Q4_1" for ".../SmolLM2-135M-Instruct.Q4_1.gguf" (into buf[cap]). */
void qn_serve_default_model_name(const char *path, char *buf, size_t cap);

#endif
