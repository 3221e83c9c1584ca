/* hf_names.c — GGUF <-> HF tensor names and the Q/K row permutation (contract in hf_names.h). */
#include "model/hf_names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct name_pair {
    const char *gguf, *hf; /* per-layer suffixes after "blk.N." / "model.layers.N.", or whole names */
    qn_hf_perm perm;
} name_pair;

static const name_pair QN_GLOBAL_NAMES[] = {
    {"token_embd.weight", "model.embed_tokens.weight", QN_HF_PERM_NONE},
    {"output_norm.weight", "model.norm.weight", QN_HF_PERM_NONE},
    {"output.weight", "lm_head.weight", QN_HF_PERM_NONE},
};

static const name_pair QN_LAYER_NAMES[] = {
    {"attn_norm.weight", "input_layernorm.weight", QN_HF_PERM_NONE},
    {"attn_q.weight", "self_attn.q_proj.weight", QN_HF_PERM_Q},
    {"attn_q.bias", "self_attn.q_proj.bias", QN_HF_PERM_Q},
    {"attn_k.weight", "self_attn.k_proj.weight", QN_HF_PERM_K},
    {"attn_k.bias", "self_attn.k_proj.bias", QN_HF_PERM_K},
    {"attn_v.weight", "self_attn.v_proj.weight", QN_HF_PERM_NONE},
    {"attn_v.bias", "self_attn.v_proj.bias", QN_HF_PERM_NONE},
    {"attn_output.weight", "self_attn.o_proj.weight", QN_HF_PERM_NONE},
    {"ffn_norm.weight", "post_attention_layernorm.weight", QN_HF_PERM_NONE},
    {"ffn_gate.weight", "mlp.gate_proj.weight", QN_HF_PERM_NONE},
    {"ffn_up.weight", "mlp.up_proj.weight", QN_HF_PERM_NONE},
    {"ffn_down.weight", "mlp.down_proj.weight", QN_HF_PERM_NONE},
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Maps name between the two forms; from_prefix/to_prefix are "blk." / "model.layers." or reversed. */
static bool map_name(const char *name, bool to_gguf, char *out, size_t cap, qn_hf_perm *perm) {
    for (size_t i = 0; i < N_OF(QN_GLOBAL_NAMES); i++) {
        const name_pair *p = &QN_GLOBAL_NAMES[i];
        if (!strcmp(name, to_gguf ? p->hf : p->gguf)) {
            snprintf(out, cap, "%s", to_gguf ? p->gguf : p->hf);
            if (perm) *perm = p->perm;
            return true;
        }
    }
    const char *from_prefix = to_gguf ? "model.layers." : "blk.";
    const size_t fl = strlen(from_prefix);
    if (strncmp(name, from_prefix, fl)) return false;
    char *end;
    const long layer = strtol(name + fl, &end, 10);
    if (end == name + fl || *end != '.' || layer < 0 || (end - (name + fl) > 1 && name[fl] == '0')) return false;
    for (size_t i = 0; i < N_OF(QN_LAYER_NAMES); i++) {
        const name_pair *p = &QN_LAYER_NAMES[i];
        if (!strcmp(end + 1, to_gguf ? p->hf : p->gguf)) {
            snprintf(out, cap, "%s%ld.%s", to_gguf ? "blk." : "model.layers.", layer, to_gguf ? p->gguf : p->hf);
            if (perm) *perm = p->perm;
            return true;
        }
    }
    return false;
}

bool qn_hf_to_gguf_name(const char *hf, char *out, size_t cap, qn_hf_perm *perm) {
    return map_name(hf, true, out, cap, perm);
}

bool qn_gguf_to_hf_name(const char *gguf, char *out, size_t cap, qn_hf_perm *perm) {
    return map_name(gguf, false, out, cap, perm);
}

int64_t qn_hf_perm_src_row(int64_t row, int64_t n_rows, int64_t n_heads, bool to_gguf) {
    const int64_t hd = n_rows / n_heads, half = hd / 2;
    const int64_t h = row / hd, r = row % hd;
    if (to_gguf) { /* r = 2i + p  <-  p*half + i */
        const int64_t i = r / 2, p = r % 2;
        return h * hd + p * half + i;
    }
    /* r = p*half + i  <-  2i + p */
    const int64_t p = r / half, i = r % half;
    return h * hd + 2 * i + p;
}
