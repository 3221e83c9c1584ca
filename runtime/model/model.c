/* model.c — binds a GGUF Llama-family file to qn_model (model/model.h): config, weight views with
 * shape checks (an error names the tensor, the field and the expected shape), tokenizer. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kernels/common/half.h"
#include "model/gguf.h"
#include "model/safetensors.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/vocab.h"

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

static qn_status bind_weight(qn_model *m, const char *name, int64_t k, int64_t n, bool required, qn_weight *w,
                             qn_error *err) {
    const qn_gguf_tensor *t = qn_gguf_find_tensor(m->gguf, name);
    memset(w, 0, sizeof *w);
    if (!t) {
        if (!required) return QN_OK;
        return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s' is missing", m->path, name);
    }
    if (t->n_dims > 2 || t->ne[0] != k || t->ne[1] != n)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': shape [%lld, %lld] (ne), expected [%lld, %lld]",
                            m->path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)k, (long long)n);
    w->name = t->name.ptr;
    w->fmt = t->fmt;
    w->k = k;
    w->n = n;
    w->data = t->data;
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)(k * n);
    return QN_OK;
}

/* 1-D vectors (norms, biases, rope_freqs) as f32; converted into an owned buffer if needed. */
static qn_status bind_vec(qn_model *m, const char *name, int64_t n, bool required, const float **out,
                          qn_error *err) {
    const qn_gguf_tensor *t = qn_gguf_find_tensor(m->gguf, name);
    *out = NULL;
    if (!t) {
        if (!required) return QN_OK;
        return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s' is missing", m->path, name);
    }
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': shape [%lld, %lld], expected [%lld]", m->path,
                            name, (long long)t->ne[0], (long long)t->ne[1], (long long)n);
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)n;
    if (t->fmt == QN_QFORMAT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = t->data;
        return QN_OK;
    }
    const qn_qformat_traits *tr = &QN_QFORMATS[t->fmt];
    if (!tr->dequant_ref || n % tr->block_elems)
        return qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s': type %s not supported for a vector", m->path,
                            name, tr->name);
    float *buf = malloc(sizeof(float) * (size_t)n);
    if (!buf || keep(m, buf) != QN_OK) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", m->path);
    tr->dequant_ref(t->data, buf, n);
    *out = buf;
    return QN_OK;
}

qn_status qn_weight_row_f32(const qn_weight *w, int64_t id, float *out) {
    if (id < 0 || id >= w->n) return QN_ERR_INVALID_ARG;
    if (w->lutq) return QN_ERR_UNSUPPORTED; /* HF quantized linears are never embeddings */
    const qn_qformat_traits *tr = &QN_QFORMATS[w->fmt];
    const size_t rb = qn_qformat_row_bytes(w->fmt, w->k);
    tr->dequant_ref((const uint8_t *)w->data + rb * (size_t)id, out, w->k);
    return QN_OK;
}

static qn_status bind_layer(qn_model *m, int il, qn_error *err) {
    const qn_model_config *c = &m->cfg;
    qn_layer_weights *L = &m->layers[il];
    const int64_t E = c->n_embd, HQ = (int64_t)c->n_head * c->head_dim, HK = (int64_t)c->n_head_kv * c->head_dim;
    char nm[96];
    qn_status st;
#define W(field, suffix, k, n)                                                  \
    snprintf(nm, sizeof nm, "blk.%d." suffix ".weight", il);                    \
    if ((st = bind_weight(m, nm, k, n, true, &L->field, err)) != QN_OK) return st;
#define V(field, suffix, n, req)                                                \
    snprintf(nm, sizeof nm, "blk.%d." suffix, il);                              \
    if ((st = bind_vec(m, nm, n, req, &L->field, err)) != QN_OK) return st;
    V(attn_norm, "attn_norm.weight", E, true);
    W(wq, "attn_q", E, HQ);
    W(wk, "attn_k", E, HK);
    W(wv, "attn_v", E, HK);
    W(wo, "attn_output", HQ, E);
    V(bq, "attn_q.bias", HQ, c->qkv_bias);
    V(bk, "attn_k.bias", HK, c->qkv_bias);
    V(bv, "attn_v.bias", HK, c->qkv_bias);
    V(ffn_norm, "ffn_norm.weight", E, true);
    W(w_gate, "ffn_gate", E, c->n_ff);
    W(w_up, "ffn_up", E, c->n_ff);
    W(w_down, "ffn_down", c->n_ff, E);
#undef W
#undef V
    return QN_OK;
}

qn_status qn_model_load(const char *path, qn_model **out, qn_error *err) {
    qn_status st;
    struct stat sb;
    if (path && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return qn_model_load_hf(path, NULL, out, err);
    qn_model *m = calloc(1, sizeof *m);
    if (!m) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", path);
    m->path = strdup(path);
    if (!m->path) {
        st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", path);
        goto err_free;
    }
    if ((st = qn_gguf_open(path, &m->gguf, err)) != QN_OK) goto err_free;
    if ((st = qn_model_config_from_gguf(m->gguf, &m->cfg, err)) != QN_OK) goto err_free;
    const qn_model_config *c = &m->cfg;
    if (c->head_dim <= 0 || c->head_dim > 256 || c->n_head % c->n_head_kv != 0 || c->rope_dim > c->head_dim) {
        st = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: head_dim %d / n_head %d / n_head_kv %d / rope_dim %d unsupported",
                          path, c->head_dim, c->n_head, c->n_head_kv, c->rope_dim);
        goto err_free;
    }
    if ((st = bind_weight(m, "token_embd.weight", c->n_embd, c->n_vocab, true, &m->tok_embd, err)) != QN_OK)
        goto err_free;
    if ((st = bind_weight(m, "output.weight", c->n_embd, c->n_vocab, false, &m->output, err)) != QN_OK)
        goto err_free;
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */
    if ((st = bind_vec(m, "output_norm.weight", c->n_embd, true, &m->output_norm, err)) != QN_OK) goto err_free;
    if ((st = bind_vec(m, "rope_freqs.weight", c->rope_dim / 2, false, &m->rope_freqs, err)) != QN_OK)
        goto err_free;
    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m->layers) {
        st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", path);
        goto err_free;
    }
    for (int il = 0; il < c->n_layer; il++)
        if ((st = bind_layer(m, il, err)) != QN_OK) goto err_free;
    if ((st = qn_vocab_from_gguf(m->gguf, &m->vocab, err)) != QN_OK) goto err_free;
    if ((st = qn_chat_template_from_gguf(m->gguf, m->vocab, &m->chat, err)) != QN_OK) goto err_free;
    *out = m;
    return QN_OK;
err_free:
    qn_model_free(m);
    return st;
}

void qn_model_free(qn_model *m) {
    if (!m) return;
    free(m->layers);
    qn_vocab_destroy(m->vocab);
    qn_chat_template_destroy(m->chat);
    qn_gguf_close(m->gguf);
    qn_st_close(m->st);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]); /* last: the GGUF may be an owned image */
    free(m->owned);
    free(m->path);
    free(m);
}
