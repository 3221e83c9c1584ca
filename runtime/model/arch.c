/* arch.c — the tensor table of a Llama-family model (contract in arch.h). */
#include "model/arch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"

int64_t qn_arch_tensor_max(const qn_model_config *c) { return 4 + 12 * (int64_t)(c->n_layer > 0 ? c->n_layer : 0); }

typedef struct tensor_sink {
    qn_arch_tensor *out;
    int64_t cap, n;
} tensor_sink;

static void put(tensor_sink *s, qn_tensor_role role, int layer, const char *name, int64_t ne0, int64_t ne1,
                bool required) {
    if (s->n < s->cap) {
        qn_arch_tensor *t = &s->out[s->n];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", name);
        t->role = role;
        t->layer = layer;
        t->n_dims = ne1 > 0 ? 2 : 1;
        t->ne[0] = ne0;
        t->ne[1] = ne1 > 0 ? ne1 : 1;
        t->required = required;
    }
    s->n++;
}

qn_status qn_arch_tensor_list(const qn_model_config *c, qn_arch_tensor *out, int64_t cap, int64_t *n, qn_error *err) {
    if (!c || (!out && cap) || !n) return qn_error_set(err, QN_ERR_INVALID_ARG, "qn_arch_tensor_list: NULL argument");
    tensor_sink s = {.out = out, .cap = cap};
    const int64_t E = c->n_embd, F = c->n_ff, V = c->n_vocab;
    const int64_t HQ = (int64_t)c->n_head * c->head_dim, HK = (int64_t)c->n_head_kv * c->head_dim;
    char nm[64];
    put(&s, QN_TENSOR_ROLE_EMBED, -1, "token_embd.weight", E, V, true);
    if (c->rope_freqs_tensor) put(&s, QN_TENSOR_ROLE_ROPE_FREQS, -1, "rope_freqs.weight", c->rope_dim / 2, 0, true);
    for (int il = 0; il < c->n_layer; il++) {
#define T(role, suffix, ne0, ne1, req)                   \
    snprintf(nm, sizeof nm, "blk.%d." suffix, il);       \
    put(&s, role, il, nm, ne0, ne1, req);
        T(QN_TENSOR_ROLE_NORM, "attn_norm.weight", E, 0, true);
        T(QN_TENSOR_ROLE_MATRIX, "attn_q.weight", E, HQ, true);
        T(QN_TENSOR_ROLE_MATRIX, "attn_k.weight", E, HK, true);
        T(QN_TENSOR_ROLE_MATRIX, "attn_v.weight", E, HK, true);
        if (c->qkv_bias) {
            T(QN_TENSOR_ROLE_BIAS, "attn_q.bias", HQ, 0, true);
            T(QN_TENSOR_ROLE_BIAS, "attn_k.bias", HK, 0, true);
            T(QN_TENSOR_ROLE_BIAS, "attn_v.bias", HK, 0, true);
        }
        T(QN_TENSOR_ROLE_MATRIX, "attn_output.weight", HQ, E, true);
        T(QN_TENSOR_ROLE_NORM, "ffn_norm.weight", E, 0, true);
        T(QN_TENSOR_ROLE_MATRIX, "ffn_gate.weight", E, F, true);
        T(QN_TENSOR_ROLE_MATRIX, "ffn_up.weight", E, F, true);
        T(QN_TENSOR_ROLE_MATRIX, "ffn_down.weight", F, E, true);
#undef T
    }
    put(&s, QN_TENSOR_ROLE_NORM, -1, "output_norm.weight", E, 0, true);
    put(&s, QN_TENSOR_ROLE_OUTPUT, -1, "output.weight", E, V, !c->tied_embeddings);
    *n = s.n;
    if (s.n > cap)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "qn_arch_tensor_list: %lld tensors, room for %lld",
                            (long long)s.n, (long long)cap);
    return QN_OK;
}

qn_status qn_arch_check_tensors(const qn_gguf *g, const qn_model_config *c, qn_error *err) {
    const int64_t cap = qn_arch_tensor_max(c);
    qn_arch_tensor *list = malloc(sizeof *list * (size_t)cap);
    if (!list) return qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", qn_gguf_path(g));
    int64_t n = 0;
    qn_status st = qn_arch_tensor_list(c, list, cap, &n, err);
    for (int64_t i = 0; i < n && st == QN_OK; i++) {
        const qn_arch_tensor *a = &list[i];
        const qn_gguf_tensor *t = qn_gguf_find_tensor(g, a->name);
        if (!t) {
            if (a->required)
                st = qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s' is missing", qn_gguf_path(g), a->name);
            continue;
        }
        if (t->ne[0] != a->ne[0] || t->ne[1] != a->ne[1] || t->ne[2] != 1 || t->ne[3] != 1) {
            if (a->n_dims == 1)
                st = qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': shape [%lld, %lld] (ne), expected [%lld]",
                                  qn_gguf_path(g), a->name, (long long)t->ne[0], (long long)t->ne[1],
                                  (long long)a->ne[0]);
            else
                st = qn_error_set(err, QN_ERR_FORMAT,
                                  "%s: tensor '%s': shape [%lld, %lld] (ne), expected [%lld, %lld]", qn_gguf_path(g),
                                  a->name, (long long)t->ne[0], (long long)t->ne[1], (long long)a->ne[0],
                                  (long long)a->ne[1]);
        }
    }
    free(list);
    return st;
}
