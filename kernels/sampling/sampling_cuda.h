/* sampling_cuda.h — token selection on the GPU so only token ids cross PCIe: greedy, temperature,
 * top-k, top-p, min-p, then a draw with a uniform number the host's per-request RNG made (the same
 * draw the CPU sampler, runtime/exec/sampling.c, would use: same u, same logits -> same token, up
 * to ties within float rounding). Penalties and logit bias stay on the host path.
 * Every pointer is device memory; work on `stream`. */
#ifndef QN_SAMPLING_CUDA_H
#define QN_SAMPLING_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qn_sample_row_params {
    float temperature;   /* 0: greedy (lowest id among the maxima, as qn_argmax_f32) */
    int32_t top_k;       /* <= 0: off */
    float top_p;         /* >= 1: off */
    float min_p;         /* <= 0: off */
    double u;            /* uniform in [0, 1) for the draw: qn_sampler_uniform() of the request's sampler.
                          * double, not float: the CPU draw uses all 53 bits, and a float u moves the
                          * draw by up to 3e-8 of the mass, enough to change ~0.4% of tokens at 128K
                          * candidates */
} qn_sample_row_params;

/* Largest top_k the fast path takes (its survivors are sorted in shared memory). */
#define QN_SAMPLE_CUDA_TOPK_MAX 1024

/* How qn_sample_cuda works through a call; both give the same tokens.
 *   FAST: every row greedy or 0 < top_k <= QN_SAMPLE_CUDA_TOPK_MAX: an argmax over many CTAs per
 *         row, then a per-row top-k select; no device-wide sort.
 *   SORT: any rows: a device-wide radix sort of every row's keys. */
typedef enum qn_sample_path { QN_SAMPLE_PATH_SORT = 0, QN_SAMPLE_PATH_FAST = 1, QN_SAMPLE_PATH_COUNT } qn_sample_path;

/* The path for these params (host memory, the copy the device params are uploaded from). A CUDA
 * graph holds the path it was captured with: key graphs by it. */
qn_sample_path qn_sample_cuda_path(const qn_sample_row_params *params, int32_t n_rows);

/* Scratch bytes for n_rows x n_vocab (two 8-byte sort keys per logit + CUB temp storage); 0 when
 * the shape cannot be sampled (n_rows * n_vocab >= 2^31, or the CUB size query fails). */
size_t qn_sample_cuda_workspace_size(int32_t n_rows, int32_t n_vocab);

/* out[r] = sampled token of logits row r (logits are not modified). path: qn_sample_cuda_path() of
 * the same params, or QN_SAMPLE_PATH_SORT for any params (a FAST call on a row that needs the sort
 * path gives that row's greedy token). */
qn_status qn_sample_cuda(const float *logits, /* [n_rows][n_vocab] */ int32_t n_rows, int32_t n_vocab,
                         const qn_sample_row_params *params, /* [n_rows] device memory */
                         qn_sample_path path, int32_t *out, /* [n_rows] */ void *workspace, size_t ws_bytes,
                         void *stream);

#ifdef __cplusplus
}
#endif
#endif /* QN_SAMPLING_CUDA_H */
