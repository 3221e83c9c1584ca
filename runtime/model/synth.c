/* synth.c — synthetic models of real shapes (contract in synth.h). */
#include "model/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/model_config.h"
#include "core/threadpool.h"
#include "model/arch.h"
#include "model/gguf.h"
#include "model/gguf_write.h"

#define QN_SYNTH_STD 0.02f
#define QN_TOKEN_TYPE_UNUSED_ID 5 /* tokenizer.ggml.token_type value of padding tokens */

/* ------------------------------------------------------------------------------------------------ */
/* presets: the shapes of the HF config.json of each model                                          */

static const qn_synth_preset QN_SYNTH_PRESETS[] = {
    {.name = "llama3-8b", .arch = "llama", .model_name = "Meta-Llama-3-8B", .tokenizer = "llama-bpe",
     .n_vocab = 128256, .n_ctx_train = 8192, .n_embd = 4096, .n_layer = 32, .n_ff = 14336, .n_head = 32,
     .n_head_kv = 8, .head_dim = 128, .rms_eps = 1e-5f, .rope_theta = 500000.0f},
    {.name = "llama2-7b", .arch = "llama", .model_name = "Llama-2-7b", .tokenizer = "llama-spm", .n_vocab = 32000,
     .n_ctx_train = 4096, .n_embd = 4096, .n_layer = 32, .n_ff = 11008, .n_head = 32, .n_head_kv = 32,
     .head_dim = 128, .rms_eps = 1e-5f, .rope_theta = 10000.0f},
    {.name = "mistral-7b", .arch = "llama", .model_name = "Mistral-7B-v0.1", .tokenizer = "llama-spm",
     .n_vocab = 32000, .n_ctx_train = 32768, .n_embd = 4096, .n_layer = 32, .n_ff = 14336, .n_head = 32,
     .n_head_kv = 8, .head_dim = 128, .rms_eps = 1e-5f, .rope_theta = 10000.0f},
    {.name = "qwen2.5-7b", .arch = "qwen2", .model_name = "Qwen2.5-7B", .tokenizer = "qwen2", .n_vocab = 152064,
     .n_ctx_train = 32768, .n_embd = 3584, .n_layer = 28, .n_ff = 18944, .n_head = 28, .n_head_kv = 4,
     .head_dim = 128, .rms_eps = 1e-6f, .rope_theta = 1000000.0f, .qkv_bias = true},
    {.name = "smollm2-135m", .arch = "llama", .model_name = "SmolLM2-135M", .tokenizer = "smollm2",
     .n_vocab = 49152, .n_ctx_train = 8192, .n_embd = 576, .n_layer = 30, .n_ff = 1536, .n_head = 9,
     .n_head_kv = 3, .head_dim = 64, .rms_eps = 1e-5f, .rope_theta = 100000.0f, .tied = true},
    /* not a real model: k-quant friendly shapes (ne[0] % 256 == 0 everywhere), GQA 4, untied */
    {.name = "tiny", .arch = "llama", .model_name = "tiny test llama", .tokenizer = "smollm2", .n_vocab = 49152,
     .n_ctx_train = 2048, .n_embd = 256, .n_layer = 16, .n_ff = 768, .n_head = 4, .n_head_kv = 1,
     .head_dim = 64, .rms_eps = 1e-5f, .rope_theta = 10000.0f},
};
#define QN_N_SYNTH_PRESETS ((int)(sizeof QN_SYNTH_PRESETS / sizeof QN_SYNTH_PRESETS[0]))

const qn_synth_preset *qn_synth_preset_find(const char *name) {
    for (int i = 0; name && i < QN_N_SYNTH_PRESETS; i++)
        if (!strcmp(name, QN_SYNTH_PRESETS[i].name)) return &QN_SYNTH_PRESETS[i];
    return NULL;
}

const char *qn_synth_preset_names(void) { return "llama3-8b llama2-7b mistral-7b qwen2.5-7b smollm2-135m tiny"; }

/* ------------------------------------------------------------------------------------------------ */
/* seeded values                                                                                    */

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

uint64_t qn_synth_key(uint64_t seed, const char *name) {
    uint64_t key = seed ^ fnv1a(name);
    qn_synth_mix(&key);
    return key;
}

/* The values of one tensor: row r comes from a generator seeded by (seed, name, r) alone. */
typedef struct synth_src {
    uint64_t key;       /* seed mixed with the tensor name */
    int64_t n_per_row;
    float std;
    bool ones;          /* norms */
} synth_src;

void qn_synth_gauss_row(uint64_t key, int64_t row, int64_t n, float std, float *out) {
    uint64_t st = key ^ ((uint64_t)row * 0xd1b54a32d192ed03ull);
    qn_synth_mix(&st);
    /* Box-Muller, two values per pair of uniforms (u1 in (0, 1] so the log is finite) */
    for (int64_t i = 0; i < n; i += 2) {
        const double u1 = ((double)(qn_synth_mix(&st) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
        const double u2 = (double)(qn_synth_mix(&st) >> 11) * (1.0 / 9007199254740992.0);
        const double r = sqrt(-2.0 * log(u1)) * std, a = 6.283185307179586 * u2;
        out[i] = (float)(r * cos(a));
        if (i + 1 < n) out[i + 1] = (float)(r * sin(a));
    }
}

static void synth_row(void *ud, int64_t row, float *out) {
    const synth_src *s = ud;
    if (s->ones) {
        for (int64_t i = 0; i < s->n_per_row; i++) out[i] = 1.0f;
        return;
    }
    qn_synth_gauss_row(s->key, row, s->n_per_row, s->std, out);
}

/* ------------------------------------------------------------------------------------------------ */
/* tokenizer                                                                                        */

static bool key_is(qn_gguf_str k, const char *lit) { return k.len == strlen(lit) && !memcmp(k.ptr, lit, k.len); }

static bool key_has_prefix(qn_gguf_str k, const char *pre) {
    const size_t n = strlen(pre);
    return k.len >= n && !memcmp(k.ptr, pre, n);
}

/* Copies every tokenizer.* key of v; tokens, token_type and scores padded to n_vocab. */
static qn_status copy_tokenizer(qn_gguf_writer *w, const qn_gguf *v, int64_t n_vocab, qn_error *err) {
    const char *vp = qn_gguf_path(v);
    const int64_t ti = qn_gguf_find_key(v, "tokenizer.ggml.tokens");
    if (ti < 0 || qn_gguf_arr_type(v, ti) != QN_GGUF_TYPE_STRING)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: no tokenizer (string array 'tokenizer.ggml.tokens')", vp);
    const int64_t n_src = (int64_t)qn_gguf_arr_n(v, ti);
    if (n_src > n_vocab)
        return qn_error_set(err, QN_ERR_UNSUPPORTED,
                            "%s: the tokenizer has %lld tokens, more than the preset's vocabulary of %lld", vp,
                            (long long)n_src, (long long)n_vocab);
    qn_status st = QN_OK;
    for (int64_t i = 0; i < qn_gguf_n_kv(v) && st == QN_OK; i++) {
        const qn_gguf_str k = qn_gguf_key(v, i);
        if (!key_has_prefix(k, "tokenizer.")) continue;
        const bool pad = n_src < n_vocab && qn_gguf_kv_type(v, i) == QN_GGUF_TYPE_ARRAY &&
                         (int64_t)qn_gguf_arr_n(v, i) == n_src &&
                         (key_is(k, "tokenizer.ggml.tokens") || key_is(k, "tokenizer.ggml.token_type") ||
                          key_is(k, "tokenizer.ggml.scores"));
        if (!pad) {
            st = qn_gguf_writer_copy_kv(w, v, i, NULL, err);
            continue;
        }
        if (key_is(k, "tokenizer.ggml.tokens")) {
            char **strs = calloc((size_t)n_vocab, sizeof *strs);
            st = strs ? QN_OK : qn_error_set(err, QN_ERR_NOMEM, "synth: out of memory");
            for (int64_t j = 0; j < n_vocab && st == QN_OK; j++) {
                if (j < n_src) {
                    const qn_gguf_str s = qn_gguf_arr_str(v, i, (uint64_t)j);
                    strs[j] = strndup(s.ptr, (size_t)s.len);
                } else {
                    char buf[32];
                    snprintf(buf, sizeof buf, "[PAD%lld]", (long long)j);
                    strs[j] = strdup(buf);
                }
                if (!strs[j]) st = qn_error_set(err, QN_ERR_NOMEM, "synth: out of memory");
            }
            if (st == QN_OK)
                st = qn_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)strs,
                                                (uint64_t)n_vocab, err);
            for (int64_t j = 0; strs && j < n_vocab; j++) free(strs[j]);
            free(strs);
            continue;
        }
        /* numeric arrays: original elements, then the padding value */
        const qn_gguf_type et = qn_gguf_arr_type(v, i);
        const size_t esz = qn_gguf_type_size(et);
        if (esz != 4)
            return qn_error_set(err, QN_ERR_FORMAT, "%s: key '%.*s': element type %s", vp, (int)k.len, k.ptr,
                                qn_gguf_type_name(et));
        uint8_t *buf = malloc(esz * (size_t)n_vocab);
        if (!buf) return qn_error_set(err, QN_ERR_NOMEM, "synth: out of memory");
        memcpy(buf, qn_gguf_arr_data(v, i), esz * (size_t)n_src);
        for (int64_t j = n_src; j < n_vocab; j++) {
            if (et == QN_GGUF_TYPE_FLOAT32) {
                const float f = -1000.0f;
                memcpy(buf + esz * (size_t)j, &f, 4);
            } else {
                const int32_t t = QN_TOKEN_TYPE_UNUSED_ID;
                memcpy(buf + esz * (size_t)j, &t, 4);
            }
        }
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)k.len, k.ptr);
        st = qn_gguf_writer_add_arr(w, key, et, buf, (uint64_t)n_vocab, err);
        free(buf);
    }
    return st;
}

/* ------------------------------------------------------------------------------------------------ */
/* the file                                                                                         */

static int tensor_cmp(const void *a, const void *b) {
    return qn_quant_order_cmp(((const qn_arch_tensor *)a)->name, ((const qn_arch_tensor *)b)->name);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct synth_report {
    const qn_synth_params *p;
    qn_quantize_progress *pr;
    double t0;
    uint64_t done0, total;
} synth_report;

static void report(synth_report *r, uint64_t done) {
    if (!r->p->progress) return;
    r->pr->elapsed_s = now_s() - r->t0;
    r->pr->eta_s = done * 100 >= r->total && done > 0 ? r->pr->elapsed_s * (double)(r->total - done) / (double)done
                                                      : -1.0;
    r->p->progress(r->p->progress_ud, r->pr);
}

static void on_slab(void *ud, int64_t rows_done) {
    synth_report *r = ud;
    r->pr->rows_done = rows_done;
    report(r, r->done0 + (uint64_t)(rows_done * r->pr->n_per_row));
}

qn_status qn_synth_config(const qn_synth_params *p, qn_model_config *c, qn_error *err) {
    const qn_synth_preset *ps = p->preset;
    memset(c, 0, sizeof *c);
    if (!strcmp(ps->arch, "qwen2")) c->arch = QN_ARCH_QWEN2;
    else c->arch = QN_ARCH_LLAMA;
    c->n_vocab = ps->n_vocab;
    c->n_ctx_train = ps->n_ctx_train;
    c->n_embd = ps->n_embd;
    c->n_layer = p->n_layer > 0 ? p->n_layer : ps->n_layer;
    if (c->n_layer > ps->n_layer)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "synth: --layers %d: %s has %d layers", p->n_layer, ps->name,
                            ps->n_layer);
    c->n_ff = ps->n_ff;
    c->n_head = ps->n_head;
    c->n_head_kv = ps->n_head_kv;
    c->head_dim = ps->head_dim;
    c->rope_dim = ps->head_dim;
    c->rms_eps = ps->rms_eps;
    c->rope_theta = ps->rope_theta;
    c->tied_embeddings = ps->tied;
    c->qkv_bias = ps->qkv_bias;
    return QN_OK;
}

static qn_status write_metadata(qn_gguf_writer *w, const qn_synth_params *p, const qn_model_config *c,
                                const qn_gguf *vocab, qn_error *err) {
    const qn_synth_preset *ps = p->preset;
    char name[160], key[128];
    snprintf(name, sizeof name, "%s (synthetic: quern synth --preset %s --seed %llu)", ps->model_name, ps->name,
             (unsigned long long)p->seed);
    qn_status st;
    if ((st = qn_gguf_writer_add_str(w, "general.architecture", ps->arch, err)) ||
        (st = qn_gguf_writer_add_str(w, "general.name", name, err)) ||
        (st = qn_gguf_writer_add_str(w, "quern.synth.preset", ps->name, err)) ||
        (st = qn_gguf_writer_add_u64(w, "quern.synth.seed", p->seed, err)))
        return st;
#define KU32(suffix, v)                                                        \
    snprintf(key, sizeof key, "%s." suffix, ps->arch);                         \
    if ((st = qn_gguf_writer_add_u32(w, key, (uint32_t)(v), err))) return st;
#define KF32(suffix, v)                                                        \
    snprintf(key, sizeof key, "%s." suffix, ps->arch);                         \
    if ((st = qn_gguf_writer_add_f32(w, key, (v), err))) return st;
    KU32("context_length", c->n_ctx_train);
    KU32("embedding_length", c->n_embd);
    KU32("block_count", c->n_layer);
    KU32("feed_forward_length", c->n_ff);
    KU32("attention.head_count", c->n_head);
    KU32("attention.head_count_kv", c->n_head_kv);
    KF32("rope.freq_base", c->rope_theta);
    KF32("attention.layer_norm_rms_epsilon", c->rms_eps);
    KU32("rope.dimension_count", c->rope_dim);
    KU32("vocab_size", c->n_vocab);
    if ((int64_t)c->head_dim * c->n_head != c->n_embd) {
        KU32("attention.key_length", c->head_dim);
        KU32("attention.value_length", c->head_dim);
    }
#undef KU32
#undef KF32
    if ((st = qn_gguf_writer_add_u32(w, "general.file_type", (uint32_t)p->ftype, err)) ||
        (st = qn_gguf_writer_add_u32(w, "general.quantization_version", 2, err)))
        return st;
    return copy_tokenizer(w, vocab, c->n_vocab, err);
}

qn_status qn_synth_gguf(const char *out_path, const qn_synth_params *p, qn_quantize_stats *stats, qn_error *err) {
    if (!out_path || !p || !p->preset || !p->vocab_path)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "synth: NULL argument (output, preset or tokenizer file)");
    if (qn_ftype_base_format(p->ftype) == QN_QFORMAT_COUNT)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "synth: file type %d is not one of %s", (int)p->ftype,
                            qn_ftype_names());
    const double t0 = now_s();
    qn_model_config c;
    qn_status st = qn_synth_config(p, &c, err);
    if (st) return st;
    qn_gguf *vocab = NULL;
    qn_gguf_writer *w = NULL;
    qn_threadpool *tp = NULL;
    qn_quantize_stats s = {.requant_from = QN_QFORMAT_COUNT};
    const int64_t cap = qn_arch_tensor_max(&c);
    qn_arch_tensor *list = malloc(sizeof *list * (size_t)cap);
    qn_qformat *fmt = malloc(sizeof *fmt * (size_t)cap);
    if (!list || !fmt) {
        st = qn_error_set(err, QN_ERR_NOMEM, "synth: out of memory");
        goto err_free;
    }
    int64_t n_all = 0, n = 0;
    if ((st = qn_arch_tensor_list(&c, list, cap, &n_all, err))) goto err_free;
    for (int64_t i = 0; i < n_all; i++) /* keep what the file holds: drops output.weight when tied */
        if (list[i].required) list[n++] = list[i];
    qsort(list, (size_t)n, sizeof *list, tensor_cmp);

    qn_quant_mix mix;
    qn_quant_mix_init(&mix, p->ftype, c.n_layer, c.n_head, c.n_head_kv, 0, false, c.tied_embeddings, c.n_layer);
    uint64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t ne[4] = {list[i].ne[0], list[i].ne[1], 1, 1};
        fmt[i] = qn_quant_mix_choose(&mix, list[i].name, ne, QN_QFORMAT_F32, NULL);
        total += (uint64_t)(ne[0] * ne[1]);
    }

    if ((st = qn_gguf_open(p->vocab_path, &vocab, err))) goto err_free;
    if ((st = qn_gguf_writer_create(&w, err))) goto err_free;
    if ((st = write_metadata(w, p, &c, vocab, err))) goto err_free;
    for (int64_t i = 0; i < n; i++)
        if ((st = qn_gguf_writer_add_tensor(w, list[i].name, fmt[i], list[i].n_dims, list[i].ne, NULL, err)))
            goto err_free;
    if ((st = qn_threadpool_create(p->n_threads > 0 ? p->n_threads : 1, &tp, err))) goto err_free;
    if ((st = qn_gguf_writer_stream_begin(w, out_path, err))) goto err_free;

    uint64_t done = 0;
    for (int64_t i = 0; i < n; i++) {
        const qn_arch_tensor *t = &list[i];
        const int64_t rows = t->ne[1];
        qn_quantize_progress pr = {.index = i, .count = n, .name = t->name, .from = QN_QFORMAT_F32, .to = fmt[i],
                                   .fell_back = false, .rows = rows, .n_per_row = t->ne[0],
                                   .bytes_in = (uint64_t)(t->ne[0] * rows) * 4,
                                   .bytes_out = qn_qformat_row_bytes(fmt[i], t->ne[0]) * (uint64_t)rows};
        synth_report r = {.p = p, .pr = &pr, .t0 = t0, .done0 = done, .total = total};
        report(&r, done);
        synth_src src = {.key = qn_synth_key(p->seed, t->name), .n_per_row = t->ne[0],
                         .std = p->std > 0 ? p->std : QN_SYNTH_STD, .ones = t->role == QN_TENSOR_ROLE_NORM};
        st = qn_quantize_tensor_to_stream(tp, w, fmt[i], t->ne[0], rows, synth_row, &src, on_slab, &r, NULL, err);
        if (st) {
            if (st != QN_ERR_IO) st = qn_error_set(err, st, "synth: tensor '%s': cannot encode", t->name);
            goto err_free;
        }
        done += (uint64_t)(t->ne[0] * rows);
        pr.done = true;
        pr.rows_done = rows;
        report(&r, done);
        s.n_encoded++;
        s.bytes_in += pr.bytes_in;
        s.bytes_out += pr.bytes_out;
    }
    if ((st = qn_gguf_writer_stream_end(w, err))) goto err_free;
    s.n_tensors = n;
    s.n_fallback = mix.n_fallback;
    s.seconds = now_s() - t0;
    if (stats) *stats = s;
    st = QN_OK;
err_free:
    qn_threadpool_destroy(tp);
    qn_gguf_writer_destroy(w); /* removes OUT.tmp unless the stream ended */
    qn_gguf_close(vocab);
    free(fmt);
    free(list);
    return st;
}

qn_status qn_synth_meta_gguf(const qn_synth_params *p, const qn_model_config *c, void **buf, size_t *len,
                             qn_error *err) {
    if (!p || !p->preset || !p->vocab_path || !c || !buf || !len)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "synth: NULL argument (preset, tokenizer file or output)");
    qn_gguf *vocab = NULL;
    qn_gguf_writer *w = NULL;
    qn_status st;
    if ((st = qn_gguf_open(p->vocab_path, &vocab, err)) || (st = qn_gguf_writer_create(&w, err)) ||
        (st = write_metadata(w, p, c, vocab, err)))
        goto done;
    st = qn_gguf_writer_write_memory(w, buf, len, err);
done:
    qn_gguf_writer_destroy(w);
    qn_gguf_close(vocab);
    return st;
}
