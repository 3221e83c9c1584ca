/* hf_synth.c — synthetic quantized Hugging Face directories (contract in hf_synth.h). The tensor table is built
 * first (names and shapes), then the safetensors writer asks for each tensor in turn and fill() generates it
 * straight into the writer's buffer, the large ones split over the thread pool by rows. */
#include "model/hf_synth.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/threadpool.h"
#include "kernels/common/half.h"
#include "kernels/quant/nf4/nf4_format.h"
#include "model/arch.h"
#include "model/awq_quant.h"
#include "model/gguf.h"
#include "model/gptq_quant.h"
#include "model/hf_export.h"
#include "model/hf_names.h"
#include "model/nf4_quant.h"
#include "model/safetensors_write.h"

#define QN_SYNTH_HF_DEFAULT_GS 128
#define QN_SYNTH_HF_JITTER 0.2 /* scales, absmax: centre · (1 + JITTER·(u − 0.5)), u uniform in [0, 1) */
#define QN_SYNTH_HF_TAB 65536  /* entries of the code-offset table (16 random bits pick one) */

static const char *const QN_SYNTH_HF_NAMES[QN_SYNTH_HF_COUNT] = {
    [QN_SYNTH_HF_GPTQ4] = "gptq4", [QN_SYNTH_HF_GPTQ8] = "gptq8", [QN_SYNTH_HF_GPTQ4_ACT] = "gptq4-act",
    [QN_SYNTH_HF_AWQ4] = "awq4",   [QN_SYNTH_HF_NF4] = "nf4",     [QN_SYNTH_HF_NF4_DQ] = "nf4-dq",
    [QN_SYNTH_HF_FP4] = "fp4"};

bool qn_synth_hf_type_parse(const char *name, qn_synth_hf_type *out) {
    for (int i = 0; name && i < QN_SYNTH_HF_COUNT; i++)
        if (!strcmp(name, QN_SYNTH_HF_NAMES[i])) {
            *out = (qn_synth_hf_type)i;
            return true;
        }
    return false;
}

const char *qn_synth_hf_type_name(qn_synth_hf_type t) {
    return t >= 0 && t < QN_SYNTH_HF_COUNT ? QN_SYNTH_HF_NAMES[t] : "?";
}

const char *qn_synth_hf_type_names(void) { return "gptq4 gptq8 gptq4-act awq4 nf4 nf4-dq fp4"; }

/* ------------------------------------------------------------------------------------------------ */
/* the tensor table                                                                                 */

typedef enum part {
    PART_F16 = 0,            /* N(0, std²) rows: embeddings, lm_head, biases */
    PART_ONES,               /* norms */
    PART_QWEIGHT,            /* GPTQ [K·b/32][N] / AWQ [K][N/8] */
    PART_QZEROS,             /* GPTQ [G][N·b/32] (zero − 1) / AWQ [G][N/8] */
    PART_SCALES,             /* [G][N] f16 */
    PART_G_IDX,              /* GPTQ [K] */
    PART_BNB_WEIGHT,         /* [N·K/2][1] u8 */
    PART_BNB_ABSMAX,         /* [n_blocks] f32, or u8 under double quant */
    PART_BNB_QUANT_MAP,      /* [16] f32 */
    PART_BNB_NESTED_ABSMAX,  /* [ceil(n_blocks/256)] f32 */
    PART_BNB_NESTED_MAP,     /* [256] f32 */
    PART_BNB_STATE,          /* quant_state JSON as u8 */
} part;

typedef struct syn_tensor {
    char name[256];          /* HF name */
    part part;
    uint64_t key;            /* qn_synth_key(seed, GGUF name) of the weight it belongs to */
    uint64_t perm_key;       /* gptq4-act: the key its act-order perm comes from (input_key) */
    int64_t k, n;            /* a linear's in / out features; F16 / ONES: row length, rows (1 for a vector) */
} syn_tensor;

typedef struct syn {
    const qn_synth_params *p;
    const qn_synth_hf_params *h;
    qn_threadpool *tp;
    syn_tensor *t;           /* [n_t] */
    int64_t n_t;
    int32_t bits, gs;        /* GPTQ/AWQ; gs −1 = all of K */
    bool gptq, awq, act, nested;
    float std;
    int16_t *off;            /* [QN_SYNTH_HF_TAB] code − zero, a discretized N(0, σ²) truncated to the code range */
    double scale0;           /* GPTQ/AWQ: centre of the scales */
    double absmax0;          /* bnb: centre of the block absmax (nested: the nested_offset) */
    float nested_map[256];
    /* the current linear's zeros and g_idx: qweight, qzeros and g_idx of one linear are filled one after another */
    uint64_t cur_key;
    int64_t cur_k, cur_n;
    uint8_t *zeros;          /* [G][N] */
    int32_t *g_idx;          /* [K] */
    double t0;
    int64_t n_filled;
    uint64_t bytes;
} syn;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Stateless: the value of index i of a stream named by key. */
static uint64_t hash_at(uint64_t key, uint64_t i) {
    uint64_t s = key ^ (i * 0xd1b54a32d192ed03ull);
    return qn_synth_mix(&s);
}

static double unit_at(uint64_t key, uint64_t i) { return (double)(hash_at(key, i) >> 11) * (1.0 / 9007199254740992.0); }

/* salts: the streams of one weight */
enum { SALT_CODES = 0x51, SALT_ZEROS = 0x52, SALT_SCALES = 0x53, SALT_PERM = 0x54, SALT_ABSMAX = 0x55 };

static uint64_t salted(uint64_t key, uint64_t salt) { return hash_at(key, salt << 56); }

static int64_t groups_of(const syn *s, int64_t k) { return s->gs < 0 ? 1 : (k + s->gs - 1) / s->gs; }
static int64_t gs_of(const syn *s, int64_t k) { return s->gs < 0 ? k : s->gs; }
static int64_t bnb_blocks(int64_t numel) { return (numel + QN_NF4_BLOCKSIZE - 1) / QN_NF4_BLOCKSIZE; }

static const float *bnb_map(const syn *s) {
    return s->h->type == QN_SYNTH_HF_FP4 ? QN_BNB4_FP4_MAP : QN_BNB4_NF4_MAP;
}

/* The quant_state JSON of a bnb weight; returns its length (buf may be NULL with cap 0). */
static int bnb_state(const syn *s, const syn_tensor *t, char *buf, size_t cap) {
    int len = snprintf(buf, cap, "{\"quant_type\": \"%s\", \"blocksize\": %d, \"dtype\": \"float16\", \"shape\": [%lld, %lld]",
                       s->h->type == QN_SYNTH_HF_FP4 ? "fp4" : "nf4", QN_NF4_BLOCKSIZE, (long long)t->n,
                       (long long)t->k);
    if (s->nested)
        len += snprintf(buf ? buf + len : NULL, buf ? cap - (size_t)len : 0,
                        ", \"nested_blocksize\": %d, \"nested_dtype\": \"float32\", \"nested_offset\": %.9g",
                        QN_NF4_NESTED_BLOCKSIZE, (double)(float)s->absmax0);
    len += snprintf(buf ? buf + len : NULL, buf ? cap - (size_t)len : 0, "}");
    return len;
}

static qn_status add(syn *s, const char *name, part pt, uint64_t key, int64_t k, int64_t n, qn_st_dtype dt,
                     uint32_t nd, int64_t d0, int64_t d1, qn_st_writer *w, qn_error *err) {
    syn_tensor *t = &s->t[s->n_t++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->part = pt, t->key = key, t->perm_key = key, t->k = k, t->n = n;
    const int64_t shape[2] = {d0, d1};
    return qn_st_writer_add(w, t->name, dt, nd, shape, err);
}

/* The key of the linear that reads the same input as the GGUF weight `name`: attn_k and attn_v read attn_q's,
 * ffn_up reads ffn_gate's, the others their own. GPTQ's act-order perm is the column order of the Hessian
 * diagonal of that input, so linears on one input share it (and their g_idx). */
static uint64_t input_key(uint64_t seed, const char *name) {
    static const char *const same[][2] = {{".attn_k.", ".attn_q."}, {".attn_v.", ".attn_q."}, {".ffn_up.", ".ffn_gate."}};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        const char *at = strstr(name, same[i][0]);
        if (!at) continue;
        char buf[256];
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - name), name, same[i][1], at + strlen(same[i][0]));
        return qn_synth_key(seed, buf);
    }
    return qn_synth_key(seed, name);
}

/* The tensors of one linear (prefix "model.layers.0.self_attn.q_proj."); perm_key: input_key. */
static qn_status add_linear(syn *s, const char *prefix, uint64_t key, uint64_t perm_key, int64_t k, int64_t n,
                            qn_st_writer *w, qn_error *err) {
    char nm[256];
    qn_status st = QN_OK;
#define ADD(suffix, pt, dt, nd, d0, d1)                                                      \
    do {                                                                                    \
        snprintf(nm, sizeof nm, "%s" suffix, prefix);                                       \
        if (st == QN_OK) st = add(s, nm, pt, key, k, n, dt, nd, d0, d1, w, err);            \
        if (st == QN_OK) s->t[s->n_t - 1].perm_key = perm_key;                              \
    } while (0)
    if (s->gptq) {
        const int64_t pack = 32 / s->bits, G = groups_of(s, k);
        if (k % pack || n % pack)
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "synth: %sweight: shape [%lld, %lld] cannot be packed at "
                                "%d bits (in and out features must be multiples of %lld)", prefix, (long long)n,
                                (long long)k, s->bits, (long long)pack);
        ADD("qweight", PART_QWEIGHT, QN_ST_DTYPE_I32, 2, k / pack, n);
        ADD("qzeros", PART_QZEROS, QN_ST_DTYPE_I32, 2, G, n / pack);
        ADD("scales", PART_SCALES, QN_ST_DTYPE_F16, 2, G, n);
        ADD("g_idx", PART_G_IDX, QN_ST_DTYPE_I32, 1, k, 0);
    } else if (s->awq) {
        if (k % s->gs || n % 8)
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "synth: %sweight: shape [%lld, %lld]: the AWQ GEMM layout "
                                "needs out features %% 8 == 0 and in features a multiple of the group size %d (try "
                                "--group-size 64 or 32)", prefix, (long long)n, (long long)k, s->gs);
        ADD("qweight", PART_QWEIGHT, QN_ST_DTYPE_I32, 2, k, n / 8);
        ADD("qzeros", PART_QZEROS, QN_ST_DTYPE_I32, 2, k / s->gs, n / 8);
        ADD("scales", PART_SCALES, QN_ST_DTYPE_F16, 2, k / s->gs, n);
    } else {
        const int64_t nb = bnb_blocks(n * k);
        if ((n * k) % 2)
            return qn_error_set(err, QN_ERR_UNSUPPORTED, "synth: %sweight: %lld elements, not a whole number of bytes",
                                prefix, (long long)(n * k));
        ADD("weight", PART_BNB_WEIGHT, QN_ST_DTYPE_U8, 2, n * k / 2, 1);
        ADD("weight.absmax", PART_BNB_ABSMAX, s->nested ? QN_ST_DTYPE_U8 : QN_ST_DTYPE_F32, 1, nb, 0);
        ADD("weight.quant_map", PART_BNB_QUANT_MAP, QN_ST_DTYPE_F32, 1, 16, 0);
        if (s->nested) {
            ADD("weight.nested_absmax", PART_BNB_NESTED_ABSMAX, QN_ST_DTYPE_F32, 1,
                (nb + QN_NF4_NESTED_BLOCKSIZE - 1) / QN_NF4_NESTED_BLOCKSIZE, 0);
            ADD("weight.nested_quant_map", PART_BNB_NESTED_MAP, QN_ST_DTYPE_F32, 1, 256, 0);
        }
        const syn_tensor probe = {.k = k, .n = n};
        const int len = bnb_state(s, &probe, NULL, 0);
        if (s->h->type == QN_SYNTH_HF_FP4) ADD("weight.quant_state.bitsandbytes__fp4", PART_BNB_STATE, QN_ST_DTYPE_U8, 1, len, 0);
        else ADD("weight.quant_state.bitsandbytes__nf4", PART_BNB_STATE, QN_ST_DTYPE_U8, 1, len, 0);
    }
#undef ADD
    return st;
}

/* ------------------------------------------------------------------------------------------------ */
/* value distributions                                                                              */

static double norm_cdf(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

/* off[i] = the code offset of quantile (i + 0.5) / TAB of N(0, sigma²) rounded to integers in [lo, hi] (tails
 * folded into the ends); returns E[off²]. */
static double build_offsets(int16_t *off, double sigma, int lo, int hi) {
    int64_t i = 0;
    for (int v = lo; v <= hi; v++) {
        const int64_t end = v == hi ? QN_SYNTH_HF_TAB : (int64_t)llround(QN_SYNTH_HF_TAB * norm_cdf((v + 0.5) / sigma));
        for (; i < end; i++) off[i] = (int16_t)v;
    }
    double e2 = 0;
    for (i = 0; i < QN_SYNTH_HF_TAB; i++) e2 += (double)off[i] * off[i];
    return e2 / QN_SYNTH_HF_TAB;
}

/* E[(1 + JITTER·(u − 0.5))²] for u uniform in [0, 1) */
static double jitter_e2(void) { return 1.0 + QN_SYNTH_HF_JITTER * QN_SYNTH_HF_JITTER / 12.0; }

static double jittered(double centre, uint64_t key, uint64_t i) {
    return centre * (1.0 + QN_SYNTH_HF_JITTER * (unit_at(key, i) - 0.5));
}

/* Sets the tables and centres so that the dequantized weights have standard deviation std. */
static qn_status syn_prepare(syn *s, qn_error *err) {
    if (s->gptq || s->awq) {
        if (!(s->off = malloc(sizeof(int16_t) * QN_SYNTH_HF_TAB)))
            return qn_error_set(err, QN_ERR_NOMEM, "synth: out of memory");
        /* code − zero spans [−(mid − 1), maxq − (mid + 1)] so that every zero in mid ± 1 keeps codes in range;
         * σ as GPTQ/RTN gives Gaussian weights with groups of 128 (scale ≈ 2·2.6σ_w / maxq) */
        const int mid = 1 << (s->bits - 1), maxq = (1 << s->bits) - 1;
        const double sigma = s->bits == 8 ? 49.0 : 2.9;
        const double e2 = build_offsets(s->off, sigma, -(mid - 1), maxq - (mid + 1));
        s->scale0 = s->std / sqrt(e2 * jitter_e2());
        return QN_OK;
    }
    const float *map = bnb_map(s);
    double c2 = 0;
    for (int i = 0; i < 16; i++) c2 += (double)map[i] * map[i] / 16.0;
    double a2 = jitter_e2(); /* E[(A / absmax0)²] */
    if (s->nested) {
        /* A = map[c]·d + absmax0 with d = absmax0 / 10 and c uniform */
        qn_nf4_dynamic_map(s->nested_map);
        a2 = 0;
        for (int i = 0; i < 256; i++) a2 += (1.0 + 0.1 * s->nested_map[i]) * (1.0 + 0.1 * s->nested_map[i]) / 256.0;
    }
    s->absmax0 = s->std / sqrt(c2 * a2);
    return QN_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* fills                                                                                            */

/* zeros [G][N] and g_idx [K] of the linear t, cached across its tensors */
static qn_status linear_state(syn *s, const syn_tensor *t, qn_error *err) {
    if (s->zeros && s->cur_key == t->key && s->cur_k == t->k && s->cur_n == t->n) return QN_OK;
    free(s->zeros), free(s->g_idx);
    s->zeros = NULL, s->g_idx = NULL;
    const int64_t G = groups_of(s, t->k), gs = gs_of(s, t->k), N = t->n, K = t->k;
    int32_t *perm = s->act ? malloc(sizeof(int32_t) * (size_t)K) : NULL;
    s->zeros = malloc((size_t)(G * N));
    s->g_idx = malloc(sizeof(int32_t) * (size_t)K);
    if (!s->zeros || !s->g_idx || (s->act && !perm)) {
        free(perm);
        return qn_error_set(err, QN_ERR_NOMEM, "synth: out of memory");
    }
    const int mid = 1 << (s->bits - 1);
    const bool sym = s->gptq && s->h->sym;
    const uint64_t kz = salted(t->key, SALT_ZEROS);
    for (int64_t i = 0; i < G * N; i++) s->zeros[i] = (uint8_t)(sym ? mid : mid - 1 + (int)(hash_at(kz, (uint64_t)i) % 3));
    if (perm) { /* act-order: columns taken in a random order, groups of gs formed in that order */
        for (int64_t i = 0; i < K; i++) perm[i] = (int32_t)i;
        const uint64_t kp = salted(t->perm_key, SALT_PERM); /* shared by the linears of one input */
        for (int64_t i = K - 1; i > 0; i--) {
            const int64_t j = (int64_t)(hash_at(kp, (uint64_t)i) % (uint64_t)(i + 1));
            const int32_t x = perm[i];
            perm[i] = perm[j], perm[j] = x;
        }
        for (int64_t i = 0; i < K; i++) s->g_idx[perm[i]] = (int32_t)(i / gs);
    } else {
        for (int64_t i = 0; i < K; i++) s->g_idx[i] = (int32_t)(i / gs);
    }
    free(perm);
    s->cur_key = t->key, s->cur_k = K, s->cur_n = N;
    return QN_OK;
}

/* codes of input column k: q[n·stride] = zero(g, n) + offset, n < N */
static void codes_of_column(const syn *s, const syn_tensor *t, int64_t k, uint8_t *q, int64_t stride) {
    const int64_t N = t->n;
    const uint8_t *z = s->zeros + (int64_t)s->g_idx[k] * N;
    uint64_t st = salted(t->key, SALT_CODES) ^ ((uint64_t)k * 0x9e3779b97f4a7c15ull);
    uint64_t r = 0;
    for (int64_t n = 0; n < N; n++) {
        if ((n & 3) == 0) r = qn_synth_mix(&st);
        q[n * stride] = (uint8_t)(z[n] + s->off[r & (QN_SYNTH_HF_TAB - 1)]);
        r >>= 16;
    }
}

typedef struct job {
    const syn *s;
    const syn_tensor *t;
    void *dst;
    int64_t rows;            /* work items, split over the workers */
    qn_status st;            /* NOMEM from a worker */
} job;

/* qweight, R input columns at a time packed by the quantizer's own packer on a K-slice: GPTQ one packed row
 * (R = 32/bits, qn_gptq_pack), AWQ 8 rows of [K][N/8] (qn_awq_pack_gemm); rows = K / R */
static void qweight_task(void *arg, int ith, int nth) {
    job *j = arg;
    const syn *s = j->s;
    const int64_t N = j->t->n, R = s->gptq ? 32 / s->bits : 8;
    long long b, e;
    qn_split_range(j->rows, ith, nth, &b, &e);
    uint8_t *q = malloc((size_t)(N * R));
    if (!q) {
        j->st = QN_ERR_NOMEM;
        return;
    }
    int32_t none = 0;
    for (long long r = b; r < e; r++) {
        for (int64_t c = 0; c < R; c++) codes_of_column(s, j->t, r * R + c, q + c, R);
        if (s->gptq) {
            const qn_gptq_result slice = {.k = R, .n = N, .n_groups = 0, .q = q};
            qn_gptq_pack(&slice, s->bits, false, (int32_t *)j->dst + r * N, &none);
        } else {
            const qn_awq_result slice = {.k = R, .n = N, .n_groups = 0, .q = q};
            qn_awq_pack_gemm(&slice, (int32_t *)j->dst + r * R * (N / 8), &none);
        }
    }
    free(q);
}

/* bnb codes: uniform bytes, 1 MiB chunks each from its own stream */
#define QN_SYNTH_HF_CHUNK ((int64_t)1 << 20)
static void bnb_weight_task(void *arg, int ith, int nth) {
    job *j = arg;
    const int64_t nbytes = j->t->n * j->t->k / 2;
    long long b, e;
    qn_split_range(j->rows, ith, nth, &b, &e);
    for (long long c = b; c < e; c++) {
        uint64_t st = salted(j->t->key, SALT_CODES) ^ ((uint64_t)c * 0x9e3779b97f4a7c15ull);
        uint8_t *o = (uint8_t *)j->dst + c * QN_SYNTH_HF_CHUNK;
        const int64_t n = nbytes - c * QN_SYNTH_HF_CHUNK < QN_SYNTH_HF_CHUNK ? nbytes - c * QN_SYNTH_HF_CHUNK
                                                                             : QN_SYNTH_HF_CHUNK;
        for (int64_t i = 0; i < n; i += 8) {
            const uint64_t r = qn_synth_mix(&st);
            memcpy(o + i, &r, (size_t)(n - i < 8 ? n - i : 8));
        }
    }
}

/* fp16 rows of N(0, std²) (the GGUF writer's values) or ones */
static void f16_task(void *arg, int ith, int nth) {
    job *j = arg;
    const int64_t K = j->t->k;
    long long b, e;
    qn_split_range(j->rows, ith, nth, &b, &e);
    float *row = malloc(sizeof(float) * (size_t)K);
    if (!row) {
        j->st = QN_ERR_NOMEM;
        return;
    }
    for (long long r = b; r < e; r++) {
        uint16_t *o = (uint16_t *)j->dst + r * K;
        if (j->t->part == PART_ONES) {
            for (int64_t i = 0; i < K; i++) o[i] = qn_f32_to_f16(1.0f);
            continue;
        }
        qn_synth_gauss_row(j->t->key, r, K, j->s->std, row);
        for (int64_t i = 0; i < K; i++) o[i] = qn_f32_to_f16(row[i]);
    }
    free(row);
}

static qn_status run_job(syn *s, const syn_tensor *t, void *dst, int64_t rows, qn_task_fn fn, qn_error *err) {
    job j = {.s = s, .t = t, .dst = dst, .rows = rows, .st = QN_OK};
    qn_threadpool_run(s->tp, fn, &j);
    return j.st ? qn_error_set(err, j.st, "synth: %s: out of memory", t->name) : QN_OK;
}

static qn_status fill_part(syn *s, const syn_tensor *t, void *dst, uint64_t nbytes, qn_error *err) {
    const int64_t N = t->n, K = t->k;
    qn_status st;
    switch (t->part) {
    case PART_F16:
    case PART_ONES:
        return run_job(s, t, dst, N, f16_task, err);
    case PART_QWEIGHT:
        if ((st = linear_state(s, t, err))) return st;
        return run_job(s, t, dst, K / (s->gptq ? 32 / s->bits : 8), qweight_task, err);
    case PART_QZEROS: {
        if ((st = linear_state(s, t, err))) return st;
        const int64_t G = groups_of(s, K);
        if (s->awq) {
            const qn_awq_result zr = {.k = 0, .n = N, .n_groups = G, .zeros = s->zeros};
            int32_t none = 0;
            qn_awq_pack_gemm(&zr, &none, dst);
            return QN_OK;
        }
        int32_t *z = malloc(sizeof(int32_t) * (size_t)(G * N)), none = 0;
        if (!z) return qn_error_set(err, QN_ERR_NOMEM, "synth: out of memory");
        for (int64_t i = 0; i < G * N; i++) z[i] = s->zeros[i];
        const qn_gptq_result zr = {.k = 0, .n = N, .n_groups = G, .zeros = z};
        qn_gptq_pack(&zr, s->bits, false, &none, dst); /* v1: zero − 1 */
        free(z);
        return QN_OK;
    }
    case PART_SCALES: {
        const uint64_t ks = salted(t->key, SALT_SCALES);
        uint16_t *o = dst;
        for (uint64_t i = 0; i < nbytes / 2; i++) o[i] = qn_f32_to_f16((float)jittered(s->scale0, ks, i));
        return QN_OK;
    }
    case PART_G_IDX:
        if ((st = linear_state(s, t, err))) return st;
        memcpy(dst, s->g_idx, sizeof(int32_t) * (size_t)K);
        return QN_OK;
    case PART_BNB_WEIGHT:
        return run_job(s, t, dst, (int64_t)((nbytes + QN_SYNTH_HF_CHUNK - 1) / QN_SYNTH_HF_CHUNK), bnb_weight_task, err);
    case PART_BNB_ABSMAX: {
        const uint64_t ka = salted(t->key, SALT_ABSMAX);
        const int64_t nb = bnb_blocks(N * K);
        for (int64_t i = 0; i < nb; i++) {
            if (s->nested) ((uint8_t *)dst)[i] = (uint8_t)(hash_at(ka, (uint64_t)i) & 255);
            else ((float *)dst)[i] = (float)jittered(s->absmax0, ka, (uint64_t)i);
        }
        return QN_OK;
    }
    case PART_BNB_QUANT_MAP:
        memcpy(dst, bnb_map(s), sizeof(float) * 16);
        return QN_OK;
    case PART_BNB_NESTED_ABSMAX:
        for (uint64_t i = 0; i < nbytes / 4; i++) ((float *)dst)[i] = (float)(s->absmax0 / 10);
        return QN_OK;
    case PART_BNB_NESTED_MAP:
        memcpy(dst, s->nested_map, sizeof s->nested_map);
        return QN_OK;
    case PART_BNB_STATE: {
        char js[512];
        const int len = bnb_state(s, t, js, sizeof js);
        if ((uint64_t)len != nbytes) return qn_error_set(err, QN_ERR_INTERNAL, "synth: %s: size changed", t->name);
        memcpy(dst, js, (size_t)len);
        return QN_OK;
    }
    }
    return qn_error_set(err, QN_ERR_INTERNAL, "synth: %s: no generator", t->name);
}

static qn_status fill(void *ud, const char *name, void *dst, uint64_t nbytes, qn_error *err) {
    syn *s = ud;
    const syn_tensor *t = NULL;
    for (int64_t i = 0; i < s->n_t && !t; i++)
        if (!strcmp(s->t[i].name, name)) t = &s->t[i];
    if (!t) return qn_error_set(err, QN_ERR_INTERNAL, "synth: tensor '%s' not in the table", name);
    const qn_status st = fill_part(s, t, dst, nbytes, err);
    if (st) return st;
    s->bytes += nbytes;
    if (s->h->progress) s->h->progress(s->h->progress_ud, s->n_filled, s->n_t, name, nbytes, now_s() - s->t0);
    s->n_filled++;
    return QN_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* config and directory                                                                             */

static char *quant_config_text(const syn *s) {
    json_t *q;
    if (s->gptq)
        q = json_pack("{s:i,s:i,s:b,s:b,s:f,s:b,s:b,s:b,s:s,s:s,s:s,s:{s:s}}", "bits", s->bits, "group_size", s->gs,
                      "desc_act", s->act, "sym", s->h->sym, "damp_percent", 0.01, "static_groups", 0,
                      "true_sequential", 1, "lm_head", 0, "quant_method", "gptq", "checkpoint_format", "gptq",
                      "pack_dtype", "int32", "meta", "quantizer", "quern:synth (random codes)");
    else if (s->awq)
        q = json_pack("{s:s,s:i,s:i,s:b,s:s,s:n}", "quant_method", "awq", "bits", 4, "group_size", s->gs,
                      "zero_point", 1, "version", "gemm", "modules_to_not_convert");
    else
        q = json_pack("{s:s,s:b,s:b,s:b,s:b,s:s,s:b,s:s,s:s,s:n,s:f}", "quant_method", "bitsandbytes",
                      "load_in_4bit", 1, "load_in_8bit", 0, "_load_in_4bit", 1, "_load_in_8bit", 0,
                      "bnb_4bit_quant_type", s->h->type == QN_SYNTH_HF_FP4 ? "fp4" : "nf4",
                      "bnb_4bit_use_double_quant", s->nested, "bnb_4bit_compute_dtype", "float16",
                      "bnb_4bit_quant_storage", "uint8", "llm_int8_skip_modules", "llm_int8_threshold", 6.0);
    char *text = q ? json_dumps(q, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(q);
    return text;
}

/* config.json (+ quantization_config), generation_config.json, the tokenizer files; GPTQ also quantize_config.json */
static qn_status write_meta(const syn *s, const qn_model_config *c, const char *dir, qn_error *err) {
    void *buf = NULL;
    size_t len = 0;
    qn_gguf *g = NULL;
    char *qtext = quant_config_text(s);
    qn_status st = qtext ? QN_OK : qn_error_set(err, QN_ERR_NOMEM, "synth: out of memory");
    if (st == QN_OK) st = qn_synth_meta_gguf(s->p, c, &buf, &len, err);
    if (st == QN_OK) st = qn_gguf_open_memory(buf, len, s->p->vocab_path, &g, err);
    if (st == QN_OK) st = qn_hf_export_meta(g, c, QN_ST_DTYPE_F16, qtext, true, dir, err);
    if (st == QN_OK && s->gptq) {
        char path[4200];
        snprintf(path, sizeof path, "%s/quantize_config.json", dir);
        FILE *f = fopen(path, "w");
        const bool ok = f && fputs(qtext, f) >= 0 && fputc('\n', f) != EOF;
        if ((f && fclose(f) != 0) || !ok) st = qn_error_set(err, QN_ERR_IO, "%s: cannot write", path);
    }
    qn_gguf_close(g);
    free(buf);
    free(qtext);
    return st;
}

/* 1: absent, 0: an empty directory, -1: anything else */
static int dir_state(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) != 0) return errno == ENOENT ? 1 : -1;
    DIR *d = S_ISDIR(sb.st_mode) ? opendir(dir) : NULL;
    if (!d) return -1;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n ? -1 : 0;
}

static void remove_tree(const char *dir) { /* our flat temporary directory */
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4400];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    if (d) closedir(d);
    rmdir(dir);
}

static qn_status check_params(const qn_synth_params *p, const qn_synth_hf_params *h, qn_error *err) {
    if (!p || !h || !p->preset || !p->vocab_path)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "synth: NULL argument (preset, tokenizer file or parameters)");
    if (h->type < 0 || h->type >= QN_SYNTH_HF_COUNT)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "synth: HF type %d is not one of %s", (int)h->type,
                            qn_synth_hf_type_names());
    const bool gptq = h->type <= QN_SYNTH_HF_GPTQ4_ACT, awq = h->type == QN_SYNTH_HF_AWQ4;
    const int32_t gs = h->group_size;
    if (gptq && gs < -1)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "synth: --group-size %d (a positive size or -1)", gs);
    if (awq && (gs < 0 || gs % 8))
        return qn_error_set(err, QN_ERR_INVALID_ARG, "synth: --group-size %d (AWQ: a positive multiple of 8)", gs);
    if (!gptq && !awq && gs != 0)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "synth: --group-size is for gptq and awq types (bitsandbytes "
                            "blocks are %d)", QN_NF4_BLOCKSIZE);
    if (!gptq && h->sym)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "synth: --sym is for gptq types (%s has its own zero points)",
                            qn_synth_hf_type_name(h->type));
    return QN_OK;
}

qn_status qn_synth_hf(const char *out_dir, const qn_synth_params *p, const qn_synth_hf_params *h,
                      qn_quantize_stats *stats, qn_error *err) {
    qn_status st = check_params(p, h, err);
    if (st) return st;
    if (!out_dir) return qn_error_set(err, QN_ERR_INVALID_ARG, "synth: NULL output directory");
    const int os = dir_state(out_dir);
    if (os < 0) return qn_error_set(err, QN_ERR_INVALID_ARG, "%s: exists and is not an empty directory", out_dir);
    syn s = {.p = p, .h = h, .t0 = now_s(), .std = p->std > 0 ? p->std : 0.02f};
    s.gptq = h->type <= QN_SYNTH_HF_GPTQ4_ACT;
    s.awq = h->type == QN_SYNTH_HF_AWQ4;
    s.act = h->type == QN_SYNTH_HF_GPTQ4_ACT;
    s.nested = h->type == QN_SYNTH_HF_NF4_DQ;
    s.bits = h->type == QN_SYNTH_HF_GPTQ8 ? 8 : 4;
    s.gs = h->group_size ? h->group_size : QN_SYNTH_HF_DEFAULT_GS;
    qn_model_config c;
    if ((st = qn_synth_config(p, &c, err))) return st;

    qn_st_writer *w = NULL;
    qn_arch_tensor *list = NULL;
    char tmp[4096], path[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_dir, (long)getpid());
    const int64_t cap = qn_arch_tensor_max(&c);
    int64_t n_all = 0;
    if (!(list = malloc(sizeof *list * (size_t)cap)) || !(s.t = malloc(sizeof *s.t * (size_t)cap * 6))) {
        st = qn_error_set(err, QN_ERR_NOMEM, "synth: out of memory");
        goto done;
    }
    if ((st = syn_prepare(&s, err)) || (st = qn_arch_tensor_list(&c, list, cap, &n_all, err)) ||
        (st = qn_st_writer_create(&w, err)) || (st = qn_st_writer_add_metadata(w, "format", "pt", err)))
        goto done;
    for (int64_t i = 0; i < n_all && st == QN_OK; i++) {
        const qn_arch_tensor *a = &list[i];
        if (!a->required) continue; /* output.weight when tied */
        char hf[192];
        qn_hf_perm perm;
        if (!qn_gguf_to_hf_name(a->name, hf, sizeof hf, &perm)) {
            st = qn_error_set(err, QN_ERR_INTERNAL, "synth: tensor '%s' has no Hugging Face name", a->name);
            break;
        }
        const uint64_t key = qn_synth_key(p->seed, a->name);
        if (a->role == QN_TENSOR_ROLE_MATRIX) {
            hf[strlen(hf) - strlen("weight")] = '\0'; /* the module prefix */
            st = add_linear(&s, hf, key, input_key(p->seed, a->name), a->ne[0], a->ne[1], w, err);
        } else {
            const part pt = a->role == QN_TENSOR_ROLE_NORM ? PART_ONES : PART_F16;
            const int64_t rows = a->n_dims > 1 ? a->ne[1] : 1;
            st = a->n_dims > 1 ? add(&s, hf, pt, key, a->ne[0], rows, QN_ST_DTYPE_F16, 2, rows, a->ne[0], w, err)
                               : add(&s, hf, pt, key, a->ne[0], 1, QN_ST_DTYPE_F16, 1, a->ne[0], 0, w, err);
        }
    }
    if (st) goto done;
    if ((st = qn_threadpool_create(p->n_threads > 0 ? p->n_threads : 1, &s.tp, err))) goto done;
    if (mkdir(tmp, 0755) != 0) {
        st = qn_error_set(err, QN_ERR_IO, "%s: cannot create (%s)", tmp, strerror(errno));
        goto done;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    if ((st = write_meta(&s, &c, tmp, err)) || (st = qn_st_writer_write_file(w, path, fill, &s, err))) goto err_rm;
    if (os == 0) rmdir(out_dir);
    if (rename(tmp, out_dir) != 0) {
        st = qn_error_set(err, QN_ERR_IO, "%s: cannot rename to %s (%s)", tmp, out_dir, strerror(errno));
        goto err_rm;
    }
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->n_tensors = s.n_t;
        stats->n_encoded = s.n_t;
        stats->bytes_out = s.bytes;
        stats->seconds = now_s() - s.t0;
        stats->requant_from = QN_QFORMAT_COUNT;
    }
    goto done;
err_rm:
    remove_tree(tmp);
done:
    qn_threadpool_destroy(s.tp);
    qn_st_writer_destroy(w);
    free(s.zeros), free(s.g_idx), free(s.off), free(s.t);
    free(list);
    return st;
}
