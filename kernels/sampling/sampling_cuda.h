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

/* Scratch bytes for n_rows x n_vocab (two 8-byte sort keys per logit + CUB temp storage); 0 when
 * the shape cannot be sampled (n_rows * n_vocab >= 2^31, or the CUB size query fails). */
size_t qn_sample_cuda_workspace_size(int32_t n_rows, int32_t n_vocab);

/* out[r] = sampled token of logits row r (logits are not modified). */
qn_status qn_sample_cuda(const float *logits, /* [n_rows][n_vocab] */ int32_t n_rows, int32_t n_vocab,
                         const qn_sample_row_params *params, /* [n_rows] device memory */
                         int32_t *out, /* [n_rows] */ void *workspace, size_t ws_bytes, void *stream);

#ifdef __cplusplus
}
#endif
#endif /* QN_SAMPLING_CUDA_H */
