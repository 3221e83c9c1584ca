/* bpe.c — byte-pair merging of one pre-token, on string ids: every symbol carries the id of its text in the
 * vocab's string table, so a candidate merge is one probe of the pair map ((left id, right id) -> rank, merged
 * id) and a stale heap entry is recognised by comparing ids. Lowest rank first, then leftmost, as llama.cpp. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "tokenizer/utf8.h"

typedef struct bpe_sym {
    int32_t id;        /* string id of the symbol's text, -1 when the text is in no merge and no token */
    uint32_t off, len; /* bytes of the word; len 0 once merged into its left neighbour */
    int32_t prev, next;
} bpe_sym;

typedef struct bpe_cand {
    int32_t rank;
    int32_t left, right; /* symbol indices */
    int32_t lid, rid;    /* their ids when queued: a mismatch later means the entry is stale */
    int32_t merged;
} bpe_cand;

static bool cand_before(const bpe_cand *a, const bpe_cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

QN_TOK_DEF_HEAP(bpe_cand, cand_before)

static bool pair_find(const qn_vocab *v, int32_t l, int32_t r, int32_t *rank, int32_t *merged) {
    if (!v->pair_key) return false;
    const uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    for (uint32_t i = (uint32_t)h & v->pair_mask;; i = (i + 1) & v->pair_mask) {
        if (v->pair_key[i] == 0) return false;
        if (v->pair_key[i] == key) {
            *rank = v->pair_rank[i];
            *merged = v->pair_merged[i];
            return true;
        }
    }
}

static void try_pair(const qn_vocab *v, const bpe_sym *s, int32_t l, int32_t r, bpe_cand *h, size_t *nh) {
    if (l < 0 || r < 0 || s[l].id < 0 || s[r].id < 0) return;
    int32_t rank, merged;
    if (!pair_find(v, s[l].id, s[r].id, &rank, &merged)) return;
    heap_push(h, nh, (bpe_cand){rank, l, r, s[l].id, s[r].id, merged});
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

void qn_merge_work_free(qn_merge_work *w) {
    free(w->sym);
    free(w->heap);
    memset(w, 0, sizeof *w);
}

qn_status qn_bpe_word(const qn_vocab *v, const char *w, size_t n, qn_merge_work *wk, qn_ids *out) {
    if (n == 0) return QN_OK;
    /* every symbol pair is queued at most once per merge around it: n initial + 2 per merge < 3n */
    if (!grow(&wk->sym, &wk->sym_cap, n, sizeof(bpe_sym)) || !grow(&wk->heap, &wk->heap_cap, 3 * n, sizeof(bpe_cand)))
        return QN_ERR_NOMEM;
    bpe_sym *s = wk->sym;
    bpe_cand *h = wk->heap;
    size_t nh = 0;

    int32_t ns = 0;
    for (size_t off = 0; off < n;) {
        size_t cl = qn_utf8_lead_len((uint8_t)w[off]);
        if (cl > n - off) cl = n - off;
        s[ns] = (bpe_sym){qn_vocab_lookup(v, w + off, cl), (uint32_t)off, (uint32_t)cl, ns - 1, -1};
        if (ns > 0) s[ns - 1].next = ns;
        ns++;
        off += cl;
    }
    for (int32_t i = 1; i < ns; i++) try_pair(v, s, i - 1, i, h, &nh);

    while (nh > 0) {
        const bpe_cand c = heap_pop(h, &nh);
        bpe_sym *L = &s[c.left], *R = &s[c.right];
        if (L->len == 0 || R->len == 0 || L->id != c.lid || R->id != c.rid) continue; /* stale */
        L->id = c.merged;
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) s[R->next].prev = c.left;
        try_pair(v, s, L->prev, c.left, h, &nh);
        try_pair(v, s, c.left, L->next, h, &nh);
    }

    const bool raw = (v->pre_flags & QN_PRETOK_RAW_BYTES) != 0;
    for (int32_t i = 0; i >= 0; i = s[i].next) {
        const bpe_sym *y = &s[i];
        if (y->id >= 0 && y->id < v->n_tokens) {
            if (!qn_ids_push(out, y->id)) return QN_ERR_NOMEM;
            continue;
        }
        /* not a token: one token per byte where the vocabulary has one (llama.cpp drops the others) */
        for (uint32_t j = 0; j < y->len; j++) {
            const uint8_t b = (uint8_t)w[y->off + j];
            int32_t id = raw ? v->byte_tok[b] : qn_vocab_lookup(v, (const char *)&b, 1);
            if (id >= v->n_tokens) id = -1;
            if (id >= 0 && !qn_ids_push(out, id)) return QN_ERR_NOMEM;
        }
    }
    return QN_OK;
}
