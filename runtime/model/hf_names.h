/* hf_names.h — tensor names and row order between GGUF (llama.cpp) and Hugging Face checkpoints of
 * the Llama family (docs/formats.md §1.4, §1.5), shared by `quern convert` and `quern export-hf`.
 * Owns: the name table and the Q/K row permutation; nothing else. */
#ifndef QN_HF_NAMES_H
#define QN_HF_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a tensor needs on the way between the two forms. */
typedef enum qn_hf_perm {
    QN_HF_PERM_NONE = 0,
    QN_HF_PERM_Q,   /* q_proj rows (and bias), permuted with n_head heads on llama-arch files */
    QN_HF_PERM_K,   /* k_proj rows (and bias), with n_head_kv heads */
} qn_hf_perm;

/* --- names --- */
/* "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"; false when the name is not one
 * of the table's (then out is untouched). *perm (may be NULL) tells the permutation class. */
bool qn_hf_to_gguf_name(const char *hf, char *out, size_t cap, qn_hf_perm *perm);
/* The reverse: "blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight". */
bool qn_gguf_to_hf_name(const char *gguf, char *out, size_t cap, qn_hf_perm *perm);

/* --- Q/K permutation (llama.cpp's LlamaModel.permute: reshape (heads, 2, hd/2, K), swap axes 1, 2) --- */
/* The source row of output row `row` of a tensor of n_rows rows split into n_heads heads:
 * to_gguf: GGUF row h*hd + 2i + p <- HF row h*hd + p*hd/2 + i; !to_gguf: the inverse. */
int64_t qn_hf_perm_src_row(int64_t row, int64_t n_rows, int64_t n_heads, bool to_gguf);

#endif
