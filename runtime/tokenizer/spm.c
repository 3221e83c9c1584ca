/* spm.c — SentencePiece-style BPE (tokenizer.ggml.model "llama"): start from UTF-8 characters, repeatedly merge the
 * adjacent pair whose concatenation is a token with the highest score (leftmost on ties), then emit each symbol's
 * token or, failing that, its bytes as <0xXX> tokens (unk when even those are missing). As llama.cpp's
 * llm_tokenizer_spm_session, whose rev_merge re-segmentation can never fire (every merged text is a token). */
#include <stdlib.h>

#include "tokenizer/tok_internal.h"
#include "tokenizer/utf8.h"

typedef struct spm_sym {
    uint32_t off, len; /* len 0 once merged into the left neighbour */
    int32_t prev, next;
} spm_sym;

typedef struct spm_cand {
    float score;
    int32_t left, right;
    uint32_t size; /* byte length of the pair when queued: a mismatch later means the entry is stale */
} spm_cand;

static bool cand_before(const spm_cand *a, const spm_cand *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

QN_TOK_DEF_HEAP(spm_cand, cand_before)

static void try_pair(const qn_vocab *v, const char *t, const spm_sym *s, int32_t l, int32_t r, spm_cand *h,
                     size_t *nh) {
    if (l < 0 || r < 0) return;
    const uint32_t size = s[l].len + s[r].len;
    const int32_t id = qn_vocab_lookup(v, t + s[l].off, size);
    if (id < 0 || id >= v->n_tokens) return;
    heap_push(h, nh, (spm_cand){v->scores[id], l, r, size});
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

qn_status qn_spm_text(const qn_vocab *v, const char *t, size_t n, qn_merge_work *wk, qn_ids *out) {
    if (n == 0) return QN_OK;
    if (!grow(&wk->sym, &wk->sym_cap, n, sizeof(spm_sym)) || !grow(&wk->heap, &wk->heap_cap, 3 * n, sizeof(spm_cand)))
        return QN_ERR_NOMEM;
    spm_sym *s = wk->sym;
    spm_cand *h = wk->heap;
    size_t nh = 0;

    int32_t ns = 0;
    for (size_t off = 0; off < n;) {
        size_t cl = qn_utf8_lead_len((uint8_t)t[off]);
        if (cl > n - off) cl = n - off;
        s[ns] = (spm_sym){(uint32_t)off, (uint32_t)cl, ns - 1, -1};
        if (ns > 0) s[ns - 1].next = ns;
        ns++;
        off += cl;
    }
    for (int32_t i = 1; i < ns; i++) try_pair(v, t, s, i - 1, i, h, &nh);

    while (nh > 0) {
        const spm_cand c = heap_pop(h, &nh);
        spm_sym *L = &s[c.left], *R = &s[c.right];
        if (L->len == 0 || R->len == 0 || L->len + R->len != c.size) continue; /* stale */
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) s[R->next].prev = c.left;
        try_pair(v, t, s, L->prev, c.left, h, &nh);
        try_pair(v, t, s, c.left, L->next, h, &nh);
    }

    for (int32_t i = 0; i >= 0; i = s[i].next) {
        const int32_t id = qn_vocab_lookup(v, t + s[i].off, s[i].len);
        if (id >= 0 && id < v->n_tokens) {
            if (!qn_ids_push(out, id)) return QN_ERR_NOMEM;
            continue;
        }
        for (uint32_t j = 0; j < s[i].len; j++) {
            int32_t b = v->byte_tok[(uint8_t)t[s[i].off + j]];
            if (b < 0) b = v->unk;
            if (b >= 0 && !qn_ids_push(out, b)) return QN_ERR_NOMEM;
        }
    }
    return QN_OK;
}
