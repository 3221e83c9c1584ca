/* sampling.c — the sampler of exec/sampling.h. Order (vLLM's): penalties -> greedy or
 * (temperature -> top-k -> softmax -> top-p -> min-p -> draw). Logprobs are of the raw logits. */
#include "exec/sampling.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

qn_sampler_params qn_sampler_params_default(void) {
    return (qn_sampler_params){.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                                .repetition_penalty = 1.0f, .presence_penalty = 0.0f, .frequency_penalty = 0.0f,
                                .penalty_last_n = 64, .seed = 0x5eed};
}

qn_status qn_sampler_params_validate(const qn_sampler_params *p, qn_error *err) {
    if (!(p->temperature >= 0.0f) || p->temperature > 100.0f)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "temperature: %g not in [0, 100]", p->temperature);
    if (!(p->top_p > 0.0f) || p->top_p > 1.0f) return qn_error_set(err, QN_ERR_INVALID_ARG, "top_p: %g not in (0, 1]", p->top_p);
    if (!(p->min_p >= 0.0f) || p->min_p > 1.0f) return qn_error_set(err, QN_ERR_INVALID_ARG, "min_p: %g not in [0, 1]", p->min_p);
    if (p->top_k < -1) return qn_error_set(err, QN_ERR_INVALID_ARG, "top_k: %d must be -1, 0 or positive", p->top_k);
    if (!(p->repetition_penalty > 0.0f) || p->repetition_penalty > 10.0f)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "repetition_penalty: %g not in (0, 10]", p->repetition_penalty);
    if (!(fabsf(p->presence_penalty) <= 2.0f))
        return qn_error_set(err, QN_ERR_INVALID_ARG, "presence_penalty: %g not in [-2, 2]", p->presence_penalty);
    if (!(fabsf(p->frequency_penalty) <= 2.0f))
        return qn_error_set(err, QN_ERR_INVALID_ARG, "frequency_penalty: %g not in [-2, 2]", p->frequency_penalty);
    return QN_OK;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t *s) {
    const uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
    return r;
}

qn_status qn_sampler_init(qn_sampler *s, const qn_sampler_params *p, int32_t n_vocab, qn_error *err) {
    qn_status st = qn_sampler_params_validate(p, err);
    if (st != QN_OK) return st;
    memset(s, 0, sizeof *s);
    s->p = *p;
    s->n_vocab = n_vocab;
    uint64_t z = p->seed;
    for (int i = 0; i < 4; i++) { /* splitmix64 seeding */
        z += 0x9E3779B97F4A7C15ull;
        uint64_t x = z;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        s->rng[i] = x ^ (x >> 31);
    }
    s->cand = malloc(sizeof(qn_token_prob) * (size_t)n_vocab);
    s->counts = calloc((size_t)n_vocab, sizeof(int32_t));
    if (!s->cand || !s->counts) {
        qn_sampler_free(s);
        return qn_error_set(err, QN_ERR_NOMEM, "sampler: out of memory");
    }
    return QN_OK;
}

void qn_sampler_free(qn_sampler *s) {
    free(s->cand);
    free(s->counts);
    free(s->tmp);
    s->tmp = NULL;
    s->cand = NULL;
    s->counts = NULL;
}

double qn_sampler_uniform(qn_sampler *s) { return (double)(rng_next(s->rng) >> 11) * (1.0 / 9007199254740992.0); }

int32_t qn_argmax_f32(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Sort key of a candidate: ascending keys = descending values (floats ordered through their bits). */
static uint32_t desc_key(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* ascending order of v */
    return ~u;
}

/* Sorts c[0..n) by descending logprob, ties by ascending id (c arrives in ascending id order): a stable
 * LSD radix sort, 4 passes of 8 bits over the key (a pass whose byte is the same everywhere is skipped),
 * through tmp[n]. The order is exactly that of a comparison sort on (-logprob, id), in O(n): a full
 * qsort of a 128K vocabulary cost ~10 ms per token. */
static void sort_desc(qn_token_prob *c, qn_token_prob *tmp, int32_t n) {
    qn_token_prob *src = c, *dst = tmp;
    for (int shift = 0; shift < 32; shift += 8) {
        int32_t count[257] = {0};
        for (int32_t i = 0; i < n; i++) count[((desc_key(src[i].logprob) >> shift) & 255u) + 1]++;
        bool trivial = false;
        for (int b = 1; b <= 256; b++) trivial |= count[b] == n;
        if (trivial) continue;
        for (int b = 1; b <= 256; b++) count[b] += count[b - 1];
        for (int32_t i = 0; i < n; i++) dst[count[(desc_key(src[i].logprob) >> shift) & 255u]++] = src[i];
        qn_token_prob *t = src;
        src = dst, dst = t;
    }
    if (src != c) memcpy(c, src, sizeof *c * (size_t)n);
}

static void apply_penalties(qn_sampler *s, float *logits, const int32_t *hist, int32_t n_hist) {
    const qn_sampler_params *p = &s->p;
    if (p->repetition_penalty == 1.0f && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f) return;
    int32_t start = (p->penalty_last_n < 0 || p->penalty_last_n > n_hist) ? 0 : n_hist - p->penalty_last_n;
    for (int32_t i = start; i < n_hist; i++)
        if (hist[i] >= 0 && hist[i] < s->n_vocab) s->counts[hist[i]]++;
    for (int32_t i = start; i < n_hist; i++) {
        const int32_t t = hist[i];
        if (t < 0 || t >= s->n_vocab || s->counts[t] == 0) continue;
        float l = logits[t];
        l = l > 0 ? l / p->repetition_penalty : l * p->repetition_penalty;
        l -= (float)s->counts[t] * p->frequency_penalty + p->presence_penalty;
        logits[t] = l;
        s->counts[t] = 0; /* each distinct token once; also resets the scratch */
    }
}

static void raw_logprobs(qn_sampler *s, const float *logits, int32_t chosen, float *chosen_lp, qn_token_prob *top,
                         int32_t n_top) {
    const int32_t n = s->n_vocab;
    float mx = logits[qn_argmax_f32(logits, n)];
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    const double lse = mx + log(sum);
    if (chosen_lp) *chosen_lp = (float)(logits[chosen] - lse);
    if (top && n_top > 0) {
        if (n_top > n) n_top = n;
        for (int32_t k = 0; k < n_top; k++) top[k] = (qn_token_prob){-1, -INFINITY};
        for (int32_t i = 0; i < n; i++) { /* insertion into a small sorted list */
            const float lp = (float)(logits[i] - lse);
            if (lp <= top[n_top - 1].logprob) continue;
            int32_t k = n_top - 1;
            while (k > 0 && top[k - 1].logprob < lp) {
                top[k] = top[k - 1];
                k--;
            }
            top[k] = (qn_token_prob){i, lp};
        }
    }
}

int32_t qn_sampler_sample(qn_sampler *s, float *logits, const int32_t *history, int32_t n_history,
                          float *chosen_logprob, qn_token_prob *top, int32_t n_top) {
    const qn_sampler_params *p = &s->p;
    const int32_t n = s->n_vocab;
    int32_t chosen;
    if (chosen_logprob || (top && n_top > 0)) {
        /* logprobs of the raw distribution need the logits before penalties */
        float *raw = malloc(sizeof(float) * (size_t)n);
        if (raw) memcpy(raw, logits, sizeof(float) * (size_t)n);
        apply_penalties(s, logits, history, n_history);
        chosen = qn_sampler_sample(s, logits, NULL, 0, NULL, NULL, 0);
        if (raw) {
            raw_logprobs(s, raw, chosen, chosen_logprob, top, n_top);
            free(raw);
        }
        return chosen;
    }
    apply_penalties(s, logits, history, n_history);
    if (p->temperature <= 0.0f) return qn_argmax_f32(logits, n);

    /* candidates within a useful range of the max: exp(-40) relative mass is below fp32 resolution */
    const float mx = logits[qn_argmax_f32(logits, n)];
    const float inv_t = 1.0f / p->temperature;
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        const float z = (logits[i] - mx) * inv_t;
        if (z > -40.0f) s->cand[m++] = (qn_token_prob){i, z};
    }
    if (!s->tmp && !(s->tmp = malloc(sizeof(qn_token_prob) * (size_t)n))) {
        /* no memory for the sort: greedy on the tempered logits is the only safe answer */
        return qn_argmax_f32(logits, n);
    }
    sort_desc(s->cand, s->tmp, m);
    if (p->top_k > 0 && p->top_k < m) m = p->top_k;
    double sum = 0.0;
    for (int32_t i = 0; i < m; i++) {
        s->cand[i].logprob = expf(s->cand[i].logprob); /* now unnormalised probabilities */
        sum += s->cand[i].logprob;
    }
    if (p->top_p < 1.0f) {
        double cum = 0.0;
        int32_t keep = m;
        for (int32_t i = 0; i < m; i++) {
            cum += s->cand[i].logprob / sum;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        m = keep;
    }
    if (p->min_p > 0.0f) {
        const float thr = p->min_p * s->cand[0].logprob;
        int32_t keep = 1;
        while (keep < m && s->cand[keep].logprob >= thr) keep++;
        m = keep;
    }
    sum = 0.0;
    for (int32_t i = 0; i < m; i++) sum += s->cand[i].logprob;
    const double r = qn_sampler_uniform(s) * sum;
    double acc = 0.0;
    chosen = s->cand[m - 1].id;
    for (int32_t i = 0; i < m; i++) {
        acc += s->cand[i].logprob;
        if (r < acc) {
            chosen = s->cand[i].id;
            break;
        }
    }
    return chosen;
}
