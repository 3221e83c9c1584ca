/* hf_loader.c — binds a Hugging Face Llama-family directory to qn_model (model/model.h): config.json,
 * safetensors (single file or sharded index), fp16/bf16/fp32 weights or GPTQ / AWQ / bitsandbytes-4bit linears
 * repacked once into the lutq CPU layout (kernels/quant/lutq.h), HF row order with NEOX RoPE, tied embeddings.
 * The tokenizer comes from a GGUF (argument, or the single *.gguf in the directory), else from tokenizer.json /
 * tokenizer.model (tokenizer/hf_tokenizer.h; byte-level BPE families, SentencePiece). Errors name the tensor and
 * the field.
 * Binding (lookup, checks, allocation) is sequential; the lutq repacks it queues run afterwards on the load's
 * threads (repack_all), each job writing only its own buffer, so the result does not depend on the count. */
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/threadpool.h"
#include "kernels/common/half.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "model/hf_quant.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/vocab.h"

/* One deferred *_to_lutq repack: the source views point into the mapped checkpoint, lw into a model-owned
 * buffer sized at bind time; w gets data = lw->codes once the job has run. */
typedef enum repack_kind { REPACK_GPTQ, REPACK_AWQ, REPACK_BNB4 } repack_kind;

typedef struct repack_job {
    repack_kind kind;
    union {
        qn_gptq_weight gptq;
        qn_awq_weight awq;
        qn_bnb4_weight bnb4;
    } src;
    qn_lutq_weight *lw;    /* header, followed by its bytes-long lutq buffer (owned by the model) */
    size_t bytes;
    qn_weight *w;          /* the model's view, completed after the repack */
    char tensor[512];      /* named in the error: "model.layers.0.self_attn.q_proj.qweight" */
    qn_status st;          /* written only by the worker that ran the job */
} repack_job;

typedef struct hf_ctx {
    qn_model *m;
    qn_hf_quant_config qc;
    int n_threads;         /* repack threads (>= 1) */
    repack_job *jobs;      /* [n_jobs], in binding order */
    int n_jobs, cap_jobs;
} hf_ctx;

static qn_status keep(qn_model *m, void *p) {
    void **o = realloc(m->owned, sizeof(void *) * (size_t)(m->n_owned + 1));
    if (!o) {
        free(p);
        return QN_ERR_NOMEM;
    }
    m->owned = o;
    m->owned[m->n_owned++] = p;
    return QN_OK;
}

static void *owned_alloc(qn_model *m, size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p || keep(m, p) != QN_OK) return NULL;
    return p;
}

/* a float copy of a 1-D F32/F16/BF16 tensor */
static qn_status to_f32(qn_model *m, const qn_st_tensor *t, int64_t n, const float **out, qn_error *err) {
    static const qn_st_dtype ok[] = {QN_ST_DTYPE_F32, QN_ST_DTYPE_F16, QN_ST_DTYPE_BF16};
    if (t->dtype != ok[0] && t->dtype != ok[1] && t->dtype != ok[2])
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s': field dtype %s (F32, F16, BF16)", m->path,
                            t->name, qn_st_dtype_name(t->dtype));
    float *buf = owned_alloc(m, sizeof(float) * (size_t)n);
    if (!buf) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", m->path);
    for (int64_t i = 0; i < n; i++) {
        if (t->dtype == QN_ST_DTYPE_F32) {
            memcpy(&buf[i], (const uint8_t *)t->data + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
            buf[i] = t->dtype == QN_ST_DTYPE_F16 ? qn_f16_to_f32(h) : qn_bf16_to_f32(h);
        }
    }
    *out = buf;
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)n;
    return QN_OK;
}

static qn_status bind_vec(qn_model *m, const char *name, int64_t n, bool required, const float **out, qn_error *err) {
    const qn_st_tensor *t = qn_st_find(m->st, name);
    *out = NULL;
    if (!t) return required ? qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s' is missing", m->path, name) : QN_OK;
    if (t->n_dims != 1 || t->shape[0] != n)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': field shape is not [%lld]", m->path, name, (long long)n);
    return to_f32(m, t, n, out, err);
}

/* A plain [n][k] F16/BF16/F32 matrix as a qn_weight; copied when the file leaves it misaligned for its type. */
static qn_status bind_plain(qn_model *m, const char *name, int64_t k, int64_t n, qn_weight *w, qn_error *err) {
    const qn_st_tensor *t = qn_st_find(m->st, name);
    memset(w, 0, sizeof *w);
    if (!t) return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s' is missing", m->path, name);
    if (t->n_dims != 2 || t->shape[0] != n || t->shape[1] != k)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': field shape is [%lld, %lld], expected [%lld, %lld]",
                            m->path, name, (long long)t->shape[0], (long long)(t->n_dims > 1 ? t->shape[1] : 0),
                            (long long)n, (long long)k);
    qn_qformat fmt;
    if (t->dtype == QN_ST_DTYPE_F16)
        fmt = QN_QFORMAT_F16;
    else if (t->dtype == QN_ST_DTYPE_BF16)
        fmt = QN_QFORMAT_BF16;
    else if (t->dtype == QN_ST_DTYPE_F32)
        fmt = QN_QFORMAT_F32;
    else
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s': field dtype %s (F16, BF16, F32)", m->path, name,
                            qn_st_dtype_name(t->dtype));
    const void *data = t->data;
    const size_t esz = qn_st_dtype_size(t->dtype);
    if ((uintptr_t)data % esz) {
        void *copy = owned_alloc(m, (size_t)t->nbytes);
        if (!copy) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", m->path);
        memcpy(copy, data, (size_t)t->nbytes);
        data = copy;
    }
    w->name = t->name, w->fmt = fmt, w->k = k, w->n = n, w->data = data;
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)(k * n);
    return QN_OK;
}

static bool all_zero(const qn_st_tensor *t) {
    for (uint64_t i = 0; i < t->nbytes; i++) {
        const uint8_t b = ((const uint8_t *)t->data)[i];
        /* +0 or -0 in any float dtype: only the sign bits may be set */
        if (b && !(b == 0x80 && (i + 1) % qn_st_dtype_size(t->dtype) == 0)) return false;
    }
    return true;
}

/* ---------------------------------------------------------------- deferred lutq repacks */

/* A zeroed slot at the end of h->jobs, counted only once bind_linear has filled it (h->n_jobs++). */
static repack_job *push_job(hf_ctx *h) {
    if (h->n_jobs == h->cap_jobs) {
        const int cap = h->cap_jobs ? 2 * h->cap_jobs : 64;
        repack_job *nj = realloc(h->jobs, sizeof *nj * (size_t)cap);
        if (!nj) return NULL;
        h->jobs = nj, h->cap_jobs = cap;
    }
    repack_job *j = &h->jobs[h->n_jobs];
    memset(j, 0, sizeof *j);
    return j;
}

static qn_status run_job(repack_job *j) {
    switch (j->kind) {
    case REPACK_GPTQ: return qn_gptq_to_lutq(&j->src.gptq, j->lw + 1, j->lw);
    case REPACK_AWQ: return qn_awq_to_lutq(&j->src.awq, j->lw + 1, j->lw);
    case REPACK_BNB4: return qn_bnb4_to_lutq(&j->src.bnb4, j->lw + 1, j->lw);
    }
    return QN_ERR_INTERNAL;
}

typedef struct repack_queue {
    repack_job *jobs;
    const int *order;      /* [n]: job indices, largest first (the big MLP weights do not finish last) */
    int n;
    atomic_int next;       /* next position in order to take */
} repack_queue;

static void repack_worker(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    repack_queue *q = arg;
    for (int i; (i = atomic_fetch_add(&q->next, 1)) < q->n;) q->jobs[q->order[i]].st = run_job(&q->jobs[q->order[i]]);
}

/* order[] = job indices by bytes, descending (insertion sort: a few hundred jobs). */
static void order_by_size(const repack_job *jobs, int n, int *order) {
    for (int i = 0; i < n; i++) {
        int p = i;
        while (p > 0 && jobs[order[p - 1]].bytes < jobs[i].bytes) {
            order[p] = order[p - 1];
            p--;
        }
        order[p] = i;
    }
}

/* Runs every queued repack on h->n_threads threads, then completes the weights. The first failed job in
 * binding order is the error, named as the sequential loader named it. */
static qn_status repack_all(hf_ctx *h, qn_error *err) {
    qn_model *m = h->m;
    if (!h->n_jobs) return QN_OK;
    int *order = malloc(sizeof *order * (size_t)h->n_jobs);
    if (!order) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", m->path);
    order_by_size(h->jobs, h->n_jobs, order);
    repack_queue q = {.jobs = h->jobs, .order = order, .n = h->n_jobs};
    atomic_init(&q.next, 0);
    const int nth = h->n_threads < h->n_jobs ? h->n_threads : h->n_jobs;
    qn_threadpool *tp = NULL;
    if (nth > 1 && qn_threadpool_create(nth, &tp, NULL) == QN_OK)
        qn_threadpool_run(tp, repack_worker, &q);
    else
        repack_worker(&q, 0, 1); /* one thread, or no pool: the same jobs on the caller */
    qn_threadpool_destroy(tp);
    free(order);
    for (int i = 0; i < h->n_jobs; i++) {
        const repack_job *j = &h->jobs[i];
        if (j->st != QN_OK) return qn_error_set(err, j->st, "%s: tensor '%s': repack failed", m->path, j->tensor);
        j->w->data = j->lw->codes;
    }
    return QN_OK;
}

/* The module at prefix ("model.layers.0.self_attn.q_proj."): GPTQ/AWQ (qweight), bnb (weight.quant_state.*) or
 * plain (weight). bias: where the forward takes one (NULL: a bias must be absent or all zero). */
static qn_status bind_linear(hf_ctx *h, const char *prefix, int64_t k, int64_t n, const float **bias, qn_weight *w,
                             qn_error *err) {
    qn_model *m = h->m;
    char name[512];
    qn_status st;
    memset(w, 0, sizeof *w);
    snprintf(name, sizeof name, "%sqweight", prefix);
    const qn_st_tensor *qw = qn_st_find(m->st, name);
    snprintf(name, sizeof name, "%sweight.quant_state.bitsandbytes__nf4", prefix);
    const qn_st_tensor *bq = qn_st_find(m->st, name);
    if (!bq) {
        snprintf(name, sizeof name, "%sweight.quant_state.bitsandbytes__fp4", prefix);
        bq = qn_st_find(m->st, name);
    }
    if (qw || bq) {
        repack_job *j = push_job(h);
        if (!j) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", m->path);
        if (qw && h->qc.method == QN_HF_QUANT_GPTQ) {
            j->kind = REPACK_GPTQ;
            if ((st = qn_hf_gptq_bind(m->st, prefix, &h->qc, k, n, &j->src.gptq, err))) return st;
            j->bytes = qn_gptq_lutq_bytes(&j->src.gptq);
        } else if (qw && h->qc.method == QN_HF_QUANT_AWQ) {
            j->kind = REPACK_AWQ;
            if ((st = qn_hf_awq_bind(m->st, prefix, &h->qc, k, n, &j->src.awq, err))) return st;
            j->bytes = qn_awq_lutq_bytes(&j->src.awq);
        } else if (qw) {
            return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%sqweight': the config has no GPTQ/AWQ quantization_config",
                                m->path, prefix);
        } else {
            qn_bnb4_weight *b = &j->src.bnb4;
            j->kind = REPACK_BNB4;
            if ((st = qn_hf_bnb4_bind(m->st, prefix, k, n, b, err))) return st;
            if (k % b->blocksize)
                return qn_error_set(err, QN_ERR_UNSUPPORTED,
                                    "%s: tensor '%sweight': field 'blocksize' %d does not divide in_features %lld (blocks "
                                    "would straddle rows)", m->path, prefix, b->blocksize, (long long)k);
            j->bytes = qn_bnb4_lutq_bytes(b);
        }
        if (!(j->lw = owned_alloc(m, sizeof *j->lw + j->bytes)))
            return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", m->path);
        snprintf(j->tensor, sizeof j->tensor, "%s%s", prefix, qw ? "qweight" : "weight");
        j->w = w;
        h->n_jobs++; /* complete: repack_all runs it */
        w->name = NULL, w->fmt = QN_QFORMAT_F32, w->k = k, w->n = n, w->lutq = j->lw; /* data: after the repack */
        m->weight_bytes += j->bytes;
        m->n_params += (uint64_t)(k * n);
    } else {
        snprintf(name, sizeof name, "%sweight", prefix);
        if ((st = bind_plain(m, name, k, n, w, err))) return st;
    }
    snprintf(name, sizeof name, "%sbias", prefix);
    const qn_st_tensor *bt = qn_st_find(m->st, name);
    if (bias) {
        *bias = NULL;
        if (bt) return bind_vec(m, name, n, true, bias, err);
    } else if (bt && !all_zero(bt)) {
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s': a non-zero bias on this projection is not supported",
                            m->path, name);
    }
    return QN_OK;
}

static qn_status bind_layer(hf_ctx *h, int il, qn_error *err) {
    qn_model *m = h->m;
    const qn_model_config *c = &m->cfg;
    qn_layer_weights *L = &m->layers[il];
    const int64_t E = c->n_embd, HQ = (int64_t)c->n_head * c->head_dim, HK = (int64_t)c->n_head_kv * c->head_dim;
    char p[160], nm[200];
    qn_status st;
    snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", il);
    if ((st = bind_vec(m, nm, E, true, &L->attn_norm, err))) return st;
    snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", il);
    if ((st = bind_vec(m, nm, E, true, &L->ffn_norm, err))) return st;
#define LIN(field, mod, k, n, bias)                                           \
    snprintf(p, sizeof p, "model.layers.%d." mod ".", il);                    \
    if ((st = bind_linear(h, p, k, n, bias, &L->field, err))) return st;
    LIN(wq, "self_attn.q_proj", E, HQ, &L->bq);
    LIN(wk, "self_attn.k_proj", E, HK, &L->bk);
    LIN(wv, "self_attn.v_proj", E, HK, &L->bv);
    LIN(wo, "self_attn.o_proj", HQ, E, NULL);
    LIN(w_gate, "mlp.gate_proj", E, c->n_ff, NULL);
    LIN(w_up, "mlp.up_proj", E, c->n_ff, NULL);
    LIN(w_down, "mlp.down_proj", c->n_ff, E, NULL);
#undef LIN
    if (c->qkv_bias && (!L->bq || !L->bk || !L->bv))
        return qn_error_set(err, QN_ERR_FORMAT, "%s: layer %d: q/k/v biases missing (config says attention_bias)", m->path, il);
    return QN_OK;
}

/* tokenizer.json / tokenizer.model (+ tokenizer_config.json, config.json) -> an in-memory GGUF of the
 * tokenizer.* keys, as `quern convert` writes them (tokenizer/hf_tokenizer.h); the image is owned by the model. */
static qn_status vocab_from_tokenizer_json(qn_model *m, const char *dir, qn_error *err) {
    qn_gguf_writer *w = NULL;
    void *buf = NULL;
    size_t len = 0;
    qn_status st = qn_gguf_writer_create(&w, err);
    if (st == QN_OK) st = qn_hf_tokenizer_import(dir, m->cfg.n_vocab, m->cfg.arch != QN_ARCH_QWEN2, w, err);
    if (st == QN_OK) st = qn_gguf_writer_write_memory(w, &buf, &len, err);
    qn_gguf_writer_destroy(w);
    if (st != QN_OK) return st;
    if (keep(m, buf) != QN_OK) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", dir);
    return qn_gguf_open_memory(buf, len, "tokenizer.json", &m->gguf, err);
}

/* the single *.gguf file in dir */
static qn_status find_vocab(const char *dir, char *out, size_t cap, qn_error *err) {
    DIR *d = opendir(dir);
    if (!d) return qn_error_set(err, QN_ERR_IO, "%s: cannot list the directory", dir);
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const size_t L = strlen(e->d_name);
        if (L > 5 && !strcmp(e->d_name + L - 5, ".gguf")) {
            if (!found) snprintf(out, cap, "%s/%s", dir, e->d_name);
            found++;
        }
    }
    closedir(d);
    if (found == 1) return QN_OK;
    return qn_error_set(err, QN_ERR_NOT_FOUND,
                        "%s: no tokenizer: no tokenizer.json or tokenizer.model, and %s; pass --vocab FILE.gguf",
                        dir, found ? "several *.gguf files (choose one)" : "no *.gguf file");
}

qn_status qn_model_load_hf(const char *dir, const char *vocab_gguf, qn_model **out, qn_error *err) {
    return qn_model_load_hf_threads(dir, vocab_gguf, 0, out, err);
}

qn_status qn_model_load_hf_threads(const char *dir, const char *vocab_gguf, int n_threads, qn_model **out,
                                   qn_error *err) {
    qn_status st;
    qn_model *m = calloc(1, sizeof *m);
    if (!m) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", dir);
    if (n_threads <= 0) {
        const long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
    }
    hf_ctx h = {.m = m, .n_threads = n_threads};
    char path[4096];
    if (!(m->path = strdup(dir))) {
        st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", dir);
        goto err_free;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    if ((st = qn_model_config_from_hf(path, &m->cfg, err))) goto err_free;
    const qn_model_config *c = &m->cfg;
    if (c->head_dim <= 0 || c->head_dim > 512 || c->n_head % c->n_head_kv != 0 || c->rope_dim > c->head_dim) {
        st = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: head_dim %d / n_head %d / n_head_kv %d / rope_dim %d unsupported",
                          dir, c->head_dim, c->n_head, c->n_head_kv, c->rope_dim);
        goto err_free;
    }
    if (c->rope_scaling.type == QN_ROPE_SCALING_LLAMA3) {
        st = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: llama3 rope_scaling from config.json is not supported yet", path);
        goto err_free;
    }
    if ((st = qn_hf_quant_config_read(dir, &h.qc, err))) goto err_free;
    if ((st = qn_st_open(dir, &m->st, err))) goto err_free;
    if ((st = bind_plain(m, "model.embed_tokens.weight", c->n_embd, c->n_vocab, &m->tok_embd, err))) goto err_free;
    const bool has_head = qn_st_find(m->st, "lm_head.weight") || qn_st_find(m->st, "lm_head.qweight");
    if (has_head && !c->tied_embeddings) {
        if ((st = bind_linear(&h, "lm_head.", c->n_embd, c->n_vocab, NULL, &m->output, err))) goto err_free;
    } else {
        m->output = m->tok_embd; /* tied embeddings */
    }
    if ((st = bind_vec(m, "model.norm.weight", c->n_embd, true, &m->output_norm, err))) goto err_free;
    if (!(m->layers = calloc((size_t)c->n_layer, sizeof *m->layers))) {
        st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", dir);
        goto err_free;
    }
    for (int il = 0; il < c->n_layer; il++)
        if ((st = bind_layer(&h, il, err))) goto err_free;
    if ((st = repack_all(&h, err))) goto err_free;
    if (!vocab_gguf) { /* a single *.gguf beside the checkpoint, else the HF tokenizer.json / tokenizer.model */
        char tj[4096], tm[4096];
        snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
        snprintf(tm, sizeof tm, "%s/tokenizer.model", dir);
        qn_error ferr = {0};
        if ((st = find_vocab(dir, path, sizeof path, &ferr)) == QN_OK) {
            vocab_gguf = path;
        } else if (access(tj, R_OK) != 0 && access(tm, R_OK) != 0) {
            if (err) *err = ferr;
            goto err_free;
        }
    }
    if (vocab_gguf ? (st = qn_gguf_open(vocab_gguf, &m->gguf, err)) != QN_OK
                   : (st = vocab_from_tokenizer_json(m, dir, err)) != QN_OK)
        goto err_free;
    if ((st = qn_vocab_from_gguf(m->gguf, &m->vocab, err))) goto err_free;
    if ((st = qn_chat_template_from_gguf(m->gguf, m->vocab, &m->chat, err))) goto err_free;
    free(h.jobs);
    *out = m;
    return QN_OK;
err_free:
    free(h.jobs);
    qn_model_free(m);
    return st;
}
