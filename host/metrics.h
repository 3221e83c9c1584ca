/* metrics.h — request counters and latency histograms, rendered in the Prometheus text format (0.0.4).
 * Owns: host-side counters/histograms (tokens, finished requests by reason, TTFT, inter-token latency,
 * end-to-end latency, prompt/generation lengths). Engine gauges (running/waiting, KV usage, prefix cache,
 * preemptions) are not stored here: the caller passes a qn_engine_stats snapshot to the renderer.
 * Names: quern:<suffix>; with vllm_compat the same families are also rendered as vllm:<suffix> (vLLM V1
 * suffixes, semantics and buckets, serving-api.md §2). Updates are thread-safe (one mutex). */
#ifndef QN_HOST_METRICS_H
#define QN_HOST_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host/bridge.h"

typedef struct qn_metrics qn_metrics;

typedef struct qn_metrics_config {
    const char *model_name; /* the model_name label on every series */
    bool vllm_compat;       /* also render vllm:* names */
    int32_t max_model_len;  /* top of the 1-2-5 token-count buckets; <= 0 -> 1 << 20 */
} qn_metrics_config;

/* --- lifecycle --- */
qn_status qn_metrics_create(const qn_metrics_config *cfg, qn_metrics **out, qn_error *err);
void qn_metrics_destroy(qn_metrics *m);

/* --- updates (any thread) --- */
void qn_metrics_observe_ttft(qn_metrics *m, double seconds);
void qn_metrics_observe_itl(qn_metrics *m, double seconds);
/* One finished engine request: counts request_success_total{finished_reason}, prompt/generation token
 * totals and their histograms, and the end-to-end latency. */
void qn_metrics_request_finished(qn_metrics *m, qn_finish_reason reason, int64_t prompt_tokens,
                                 int64_t generation_tokens, double e2e_seconds);

/* --- rendering --- */
/* Returns the exposition text (malloc'd, NUL-terminated; *len without the NUL), NULL on OOM.
 * stats may be NULL (engine gauges are then omitted). */
char *qn_metrics_render(qn_metrics *m, const qn_engine_stats *stats, size_t *len);

/* --- bucket tables (exposed for tests) --- */
extern const double qn_metrics_ttft_buckets[];
extern const size_t qn_metrics_n_ttft_buckets;
extern const double qn_metrics_itl_buckets[];
extern const size_t qn_metrics_n_itl_buckets;
extern const double qn_metrics_e2e_buckets[];
extern const size_t qn_metrics_n_e2e_buckets;

#endif /* QN_HOST_METRICS_H */
