/* sampling.h — per-request token sampling on the CPU: repetition/presence/frequency penalties,
 * greedy, temperature, top-k, top-p, min-p, and a per-request seeded RNG (xoshiro256**), so a
 * seeded request samples the same tokens however it is batched. Owns its scratch arrays. */
#ifndef QN_SAMPLING_H
#define QN_SAMPLING_H

#include <stdbool.h>
#include <stdint.h>

#include "quern.h"

typedef struct qn_sampler_params {
    float temperature;          /* 0 = greedy */
    int32_t top_k;              /* <= 0: off */
    float top_p;                /* >= 1: off */
    float min_p;                /* <= 0: off */
    float repetition_penalty;   /* 1: off (llama.cpp/vLLM semantics: logit>0 ? /p : *p) */
    float presence_penalty;     /* 0: off */
    float frequency_penalty;    /* 0: off */
    int32_t penalty_last_n;     /* tokens of history the penalties look at; -1 = all */
    uint64_t seed;
} qn_sampler_params;

qn_sampler_params qn_sampler_params_default(void);
/* QN_ERR_INVALID_ARG with a message naming the field for out-of-range values. */
qn_status qn_sampler_params_validate(const qn_sampler_params *p, qn_error *err);

typedef struct qn_token_prob {
    int32_t id;
    float logprob;
} qn_token_prob;

typedef struct qn_sampler {
    qn_sampler_params p;
    int32_t n_vocab;
    uint64_t rng[4];
    qn_token_prob *cand;        /* [n_vocab] scratch */
    qn_token_prob *tmp;         /* [n_vocab] sort scratch, allocated on the first tempered sample */
    int32_t *counts;            /* [n_vocab] scratch for penalties */
} qn_sampler;

/* --- lifecycle --- */
qn_status qn_sampler_init(qn_sampler *s, const qn_sampler_params *p, int32_t n_vocab, qn_error *err);
void qn_sampler_free(qn_sampler *s);

/* Samples a token from logits [n_vocab] (modified in place). history: the request's tokens so far
 * (prompt + generated) for the penalties. If top/n_top > 0, writes the n_top most likely tokens of
 * the raw distribution with their logprobs; *chosen_logprob gets the chosen token's raw logprob. */
int32_t qn_sampler_sample(qn_sampler *s, float *logits, const int32_t *history, int32_t n_history,
                          float *chosen_logprob, qn_token_prob *top, int32_t n_top);

/* The next uniform draw in [0, 1) of the sampler's RNG, (rng >> 11) * 2^-53: the number
 * qn_sampler_sample draws with, so a GPU sampler (kernels/sampling/sampling_cuda.h) fed with it picks
 * the token the CPU sampler would. Advances the RNG. */
double qn_sampler_uniform(qn_sampler *s);

/* Greedy pick: the lowest id among the maxima. */
int32_t qn_argmax_f32(const float *x, int32_t n);

#endif
