/* batch.c — qn_sched_output -> flat host arrays for the forward pass (sched/batch.h). */
#include "sched/batch.h"

#include <stdlib.h>
#include <string.h>

void qn_batch_init(qn_batch *b) { memset(b, 0, sizeof *b); }

void qn_batch_free(qn_batch *b) {
    if (!b) return;
    free(b->token_ids);
    free(b->positions);
    free(b->seq_idx);
    free(b->slot_mapping);
    free(b->cu_seqlens_q);
    free(b->context_lens);
    free(b->block_tables);
    free(b->seq_entry);
    free(b->logits_rows);
    free(b->logits_entry);
    free(b->copy_src);
    free(b->copy_dst);
    qn_batch_init(b);
}

static qn_status resize(int32_t **arrs[], int n_arrs, int32_t *cap, int64_t need) {
    if (need <= *cap) return QN_OK;
    if (need > INT32_MAX / 2) return QN_ERR_OVERFLOW;
    int32_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    for (int i = 0; i < n_arrs; i++) {
        int32_t *p = realloc(*arrs[i], (size_t)c * sizeof *p);
        if (!p) return QN_ERR_NOMEM; /* arrays already grown keep the larger size; cap stays safe */
        *arrs[i] = p;
    }
    *cap = c;
    return QN_OK;
}

qn_status qn_batch_build(qn_batch *b, const qn_sched_output *out, int32_t bs, int32_t max_blocks_per_seq) {
    if (!b || !out || bs < 1 || max_blocks_per_seq < 0) return QN_ERR_INVALID_ARG;
    int32_t n_tok = 0, n_seq = 0, width = 0;
    for (int32_t i = 0; i < out->n_entries; i++) {
        const qn_sched_entry *e = &out->entries[i];
        if (e->cancelled) continue;
        n_tok += e->n_tokens;
        n_seq++;
        const int32_t need = (e->start + e->n_tokens + bs - 1) / bs;
        if (need > e->n_blocks) return QN_ERR_INVALID_ARG; /* the table must cover the step */
        if (need > width) width = need;
    }
    if (max_blocks_per_seq > 0) {
        if (width > max_blocks_per_seq) return QN_ERR_SHAPE;
        width = max_blocks_per_seq;
    }
    if (width < 1) width = 1;

    int32_t **tok_arrs[] = {&b->token_ids, &b->positions, &b->seq_idx, &b->slot_mapping};
    int32_t **seq_arrs[] = {&b->cu_seqlens_q, &b->context_lens, &b->seq_entry, &b->logits_rows, &b->logits_entry};
    int32_t **copy_arrs[] = {&b->copy_src, &b->copy_dst};
    int32_t **table_arrs[] = {&b->block_tables};
    qn_status st = resize(tok_arrs, 4, &b->tok_cap, n_tok);
    if (st == QN_OK) st = resize(seq_arrs, 5, &b->seq_cap, (int64_t)n_seq + 1);
    if (st == QN_OK) st = resize(copy_arrs, 2, &b->copy_cap, out->n_copies);
    if (st == QN_OK) st = resize(table_arrs, 1, &b->table_cap, (int64_t)n_seq * width);
    if (st != QN_OK) return st;

    b->block_size = bs;
    b->max_blocks_per_seq = width;
    b->n_tokens = b->n_seqs = b->n_logits = 0;
    b->max_query_len = b->max_context_len = 0;
    for (int32_t i = 0; i < out->n_entries; i++) {
        const qn_sched_entry *e = &out->entries[i];
        if (e->cancelled) continue;
        const int32_t s = b->n_seqs++;
        const int32_t ctx = e->start + e->n_tokens;
        const int32_t nb = (ctx + bs - 1) / bs;
        b->cu_seqlens_q[s] = b->n_tokens;
        b->context_lens[s] = ctx;
        b->seq_entry[s] = i;
        int32_t *row = b->block_tables + (size_t)s * (size_t)width;
        memcpy(row, e->block_table, (size_t)nb * sizeof *row);
        for (int32_t k = nb; k < width; k++) row[k] = QN_BATCH_BLOCK_PAD;
        for (int32_t k = 0; k < e->n_tokens; k++) {
            const int32_t t = b->n_tokens++;
            const int32_t pos = e->start + k;
            b->token_ids[t] = e->req->tokens[pos];
            b->positions[t] = pos;
            b->seq_idx[t] = s;
            b->slot_mapping[t] = e->block_table[pos / bs] * bs + pos % bs;
        }
        if (e->needs_sample) {
            b->logits_rows[b->n_logits] = b->n_tokens - 1;
            b->logits_entry[b->n_logits] = i;
            b->n_logits++;
        }
        if (e->n_tokens > b->max_query_len) b->max_query_len = e->n_tokens;
        if (ctx > b->max_context_len) b->max_context_len = ctx;
    }
    b->cu_seqlens_q[b->n_seqs] = b->n_tokens;
    b->n_copies = out->n_copies;
    for (int32_t i = 0; i < out->n_copies; i++) {
        b->copy_src[i] = out->copies[i].src;
        b->copy_dst[i] = out->copies[i].dst;
    }
    return QN_OK;
}
