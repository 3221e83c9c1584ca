/* model_shard.c — a rank's model (tp/model_shard.h): views for column-parallel and vocab rows (LM head and
 * embedding), re-strided
 * copies for the row-parallel input-col slices of GGUF and lutq weights. */
#include "tp/model_shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- ownership */

static void *shard_alloc(qn_tp_model_shard *s, size_t bytes) {
    void **o = realloc(s->owned, sizeof(void *) * (size_t)(s->n_owned + 1));
    if (!o) return NULL;
    s->owned = o;
    void *p = NULL;
    /* 64 bytes: the SIMD row kernels load whole cache lines */
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0) return NULL;
    s->owned[s->n_owned++] = p;
    return p;
}

/* ---------------------------------------------------------------- slicing */

/* Output rows [r0, r1) of w: a view (rows are contiguous); lutq gets its own header. */
static qn_status slice_rows(qn_tp_model_shard *s, const qn_weight *w, int64_t r0, int64_t r1, qn_weight *out) {
    *out = *w;
    out->n = r1 - r0;
    if (!w->lutq) {
        out->data = (const uint8_t *)w->data + (size_t)r0 * qn_qformat_row_bytes(w->fmt, w->k);
        return QN_OK;
    }
    qn_lutq_weight *lw = shard_alloc(s, sizeof *lw);
    if (!lw) return QN_ERR_NOMEM;
    *lw = *w->lutq;
    lw->n = r1 - r0;
    lw->codes += (size_t)r0 * (size_t)qn_lutq_row_bytes(lw->k, lw->code_bits);
    lw->scale += (size_t)r0 * (size_t)lw->n_groups;
    if (lw->zero) lw->zero += (size_t)r0 * (size_t)lw->n_groups;
    out->lutq = lw;
    out->data = lw->codes;
    return QN_OK;
}

/* Input cols [c0, c1) of a lutq weight. Kernel column j holds original column perm[j] (identity without
 * perm); the shard keeps the j whose original column falls in [c0, c1), in kernel order, so act-order
 * weights split like the others. A group cut by the range keeps its scale and zero for the part kept
 * (exact: the dequantized values do not change); groups left empty are dropped. */
static qn_status slice_cols_lutq(qn_tp_model_shard *s, const qn_weight *w, int64_t c0, int64_t c1, qn_weight *out) {
    const qn_lutq_weight *src = w->lutq;
    const int64_t k = c1 - c0, n = src->n;
#define SRC_COL(j) ((int64_t)(src->perm ? src->perm[j] : (j)))
    int64_t n_groups = 0;
    for (int64_t g = 0; g < src->n_groups; g++) {
        bool any = false;
        for (int64_t j = src->gstart[g]; j < src->gstart[g + 1] && !any; j++) any = SRC_COL(j) >= c0 && SRC_COL(j) < c1;
        n_groups += any;
    }
    qn_lutq_weight *lw = shard_alloc(s, sizeof *lw);
    void *buf = shard_alloc(s, qn_lutq_bytes(k, n, n_groups, src->code_bits, src->perm != NULL, src->zero != NULL));
    if (!lw || !buf) return QN_ERR_NOMEM;
    int32_t *gstart, *perm;
    uint8_t *codes;
    float *scale, *zero;
    qn_status st = qn_lutq_init(lw, buf, k, n, n_groups, src->code_bits, src->perm != NULL, src->zero != NULL, &gstart,
                                &perm, &codes, &scale, &zero);
    if (st != QN_OK) return st;
    lw->lut_identity = src->lut_identity;
    lw->round = src->round;
    memcpy(lw->lut, src->lut, sizeof lw->lut);

    int64_t jn = 0, gn = 0;
    for (int64_t g = 0; g < src->n_groups; g++) {
        const int64_t j_first = jn;
        for (int64_t j = src->gstart[g]; j < src->gstart[g + 1]; j++) {
            const int64_t c = SRC_COL(j);
            if (c < c0 || c >= c1) continue;
            if (perm) perm[jn] = (int32_t)(c - c0);
            for (int64_t r = 0; r < n; r++)
                qn_lutq_set_code(codes, k, src->code_bits, r, jn, qn_lutq_code(src, r, j));
            jn++;
        }
        if (jn == j_first) continue;
        gstart[gn] = (int32_t)j_first;
        for (int64_t r = 0; r < n; r++) {
            scale[r * n_groups + gn] = src->scale[r * src->n_groups + g];
            if (zero) zero[r * n_groups + gn] = src->zero[r * src->n_groups + g];
        }
        gn++;
    }
#undef SRC_COL
    gstart[n_groups] = (int32_t)k;
    if (jn != k || gn != n_groups) return QN_ERR_INTERNAL; /* perm is not a permutation of 0..K-1 */
    *out = *w;
    out->k = k;
    out->lutq = lw;
    out->data = lw->codes;
    return QN_OK;
}

/* Input cols [c0, c1) of every row: an owned copy with row stride row_bytes(fmt, c1 - c0). c0 and c1 are
 * on block boundaries (the ROW rule), so the slice of a quantized row is a byte sub-range of it. */
static qn_status slice_cols(qn_tp_model_shard *s, const qn_weight *w, int64_t c0, int64_t c1, qn_weight *out) {
    if (c0 == 0 && c1 == w->k) {
        *out = *w;
        return QN_OK;
    }
    if (w->lutq) return slice_cols_lutq(s, w, c0, c1, out);
    const size_t rb_src = qn_qformat_row_bytes(w->fmt, w->k), rb = qn_qformat_row_bytes(w->fmt, c1 - c0);
    const size_t off = qn_qformat_row_bytes(w->fmt, c0);
    uint8_t *dst = shard_alloc(s, rb * (size_t)w->n);
    if (!dst) return QN_ERR_NOMEM;
    for (int64_t r = 0; r < w->n; r++)
        memcpy(dst + (size_t)r * rb, (const uint8_t *)w->data + (size_t)r * rb_src + off, rb);
    *out = *w;
    out->k = c1 - c0;
    out->data = dst;
    return QN_OK;
}

/* ---------------------------------------------------------------- rules per tensor */

/* lutq weights are repacked per column with per-column scales/zeros indexable from any range, so only an
 * even split binds; GGUF types must not cut a quant block. */
static qn_tp_weight_geom weight_geom(const qn_weight *w, const char *name) {
    return qn_tp_geom_gguf(name, w->n, w->k, w->lutq ? 1 : QN_QFORMATS[w->fmt].block_elems);
}

/* GGUF names by role: qn_weight.name points into the file without a terminating NUL, and lutq weights
 * have none. */
static const char *wname(int il, const char *role, char *buf, size_t cap) {
    if (il < 0) snprintf(buf, cap, "%s.weight", role);
    else snprintf(buf, cap, "blk.%d.%s.weight", il, role);
    return buf;
}

static qn_status shard_rule(const qn_weight *w, int il, const char *role, qn_tp_split split, int N, int r,
                            qn_tp_shard *sh, qn_error *err) {
    char nb[64];
    const qn_tp_weight_geom g = weight_geom(w, wname(il, role, nb, sizeof nb));
    return qn_tp_shard_weight(&g, split, N, r, sh, err);
}

/* dry: run the shape rules only (nothing sliced, s->m.layers untouched). */
static qn_status build(const qn_model *full, int N, int r, bool dry, qn_tp_model_shard *s, qn_error *err) {
    const qn_model_config *c = &full->cfg;
    qn_status st = qn_tp_split_heads(c->n_head, c->n_head_kv, N, r, &s->heads, err);
    if (st != QN_OK) return st;
    const int64_t hd = c->head_dim;
    const int64_t q0 = s->heads.head_begin * hd, q1 = q0 + s->heads.n_head_local * hd;
    const int64_t kv0 = s->heads.kv_head_begin * hd, kv1 = kv0 + s->heads.n_kv_head_local * hd;

    qn_tp_shard sh;
    if ((st = shard_rule(&full->output, -1, "output", QN_TP_SPLIT_VOCAB, N, r, &sh, err)) != QN_OK) return st;
    s->vocab_begin = sh.row_begin, s->vocab_end = sh.row_end;
    if (!dry && (st = slice_rows(s, &full->output, sh.row_begin, sh.row_end, &s->m.output)) != QN_OK) goto fail;
    /* vocab-parallel embedding over the LM head's rows: a tied model's two views stay one tensor */
    if (full->tok_embd.n != c->n_vocab)
        return qn_error_set(err, QN_ERR_SHAPE, "tp model: token_embd has %lld rows, n_vocab is %d",
                            (long long)full->tok_embd.n, c->n_vocab);
    if (!dry && (st = slice_rows(s, &full->tok_embd, sh.row_begin, sh.row_end, &s->m.tok_embd)) != QN_OK) goto fail;

    for (int il = 0; il < c->n_layer; il++) {
        const qn_layer_weights *F = &full->layers[il];
        qn_layer_weights *L = dry ? NULL : &s->m.layers[il];
        /* q rows follow the q heads; COLUMN on wq checks the same split and names the tensor */
        if ((st = shard_rule(&F->wq, il, "attn_q", QN_TP_SPLIT_COLUMN, N, r, &sh, err)) != QN_OK) return st;
        if (sh.row_begin != q0 || sh.row_end != q1)
            return qn_error_set(err, QN_ERR_INTERNAL, "tp model: layer %d: q rows [%lld, %lld) do not match heads", il,
                                (long long)sh.row_begin, (long long)sh.row_end);
        qn_tp_shard o_sh, ff_sh, dn_sh;
        if ((st = shard_rule(&F->wo, il, "attn_output", QN_TP_SPLIT_ROW, N, r, &o_sh, err)) != QN_OK) return st;
        if ((st = shard_rule(&F->w_gate, il, "ffn_gate", QN_TP_SPLIT_COLUMN, N, r, &ff_sh, err)) != QN_OK) return st;
        if ((st = shard_rule(&F->w_up, il, "ffn_up", QN_TP_SPLIT_COLUMN, N, r, &sh, err)) != QN_OK) return st;
        if ((st = shard_rule(&F->w_down, il, "ffn_down", QN_TP_SPLIT_ROW, N, r, &dn_sh, err)) != QN_OK) return st;
        if (o_sh.col_begin != q0 || dn_sh.col_begin != ff_sh.row_begin || dn_sh.col_end != ff_sh.row_end)
            return qn_error_set(err, QN_ERR_INTERNAL, "tp model: layer %d: row and column shards disagree", il);
        s->ff_begin = ff_sh.row_begin, s->ff_end = ff_sh.row_end;
        if (dry) continue;

        *L = *F;
        if ((st = slice_rows(s, &F->wq, q0, q1, &L->wq)) != QN_OK || (st = slice_rows(s, &F->wk, kv0, kv1, &L->wk)) ||
            (st = slice_rows(s, &F->wv, kv0, kv1, &L->wv)) || (st = slice_cols(s, &F->wo, q0, q1, &L->wo)) ||
            (st = slice_rows(s, &F->w_gate, s->ff_begin, s->ff_end, &L->w_gate)) ||
            (st = slice_rows(s, &F->w_up, s->ff_begin, s->ff_end, &L->w_up)) ||
            (st = slice_cols(s, &F->w_down, s->ff_begin, s->ff_end, &L->w_down)))
            goto fail;
        if (F->bq) L->bq = F->bq + q0;
        if (F->bk) L->bk = F->bk + kv0;
        if (F->bv) L->bv = F->bv + kv0;
    }
    return QN_OK;
fail:
    return qn_error_set(err, st, "tp model: rank %d of %d: %s while slicing weights", r, N, qn_status_str(st));
}

/* ---------------------------------------------------------------- lifecycle */

qn_status qn_tp_model_check(const qn_model *full, int tp_size, qn_error *err) {
    if (!full || tp_size < 1) return qn_error_set(err, QN_ERR_INVALID_ARG, "tp model: bad arguments");
    for (int r = 0; r < tp_size; r++) {
        qn_tp_model_shard s = {0};
        qn_status st = build(full, tp_size, r, true, &s, err);
        if (st != QN_OK) return st;
    }
    return QN_OK;
}

qn_status qn_tp_model_vocab_range(const qn_model *full, int tp_size, int rank, int64_t *begin, int64_t *end,
                                  qn_error *err) {
    qn_tp_shard sh;
    const qn_status st = shard_rule(&full->output, -1, "output", QN_TP_SPLIT_VOCAB, tp_size, rank, &sh, err);
    if (st == QN_OK) *begin = sh.row_begin, *end = sh.row_end;
    return st;
}

qn_status qn_tp_model_shard_create(const qn_model *full, int tp_size, int rank, qn_tp_model_shard **out,
                                   qn_error *err) {
    if (!full || !out || tp_size < 1 || rank < 0 || rank >= tp_size)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "tp model: bad arguments (tp_size %d, rank %d)", tp_size, rank);
    *out = NULL;
    qn_tp_model_shard *s = calloc(1, sizeof *s);
    if (!s) return qn_error_set(err, QN_ERR_NOMEM, "tp model: out of memory");
    s->tp_size = tp_size, s->rank = rank;
    s->m = *full;
    s->m.owned = NULL, s->m.n_owned = 0; /* the full model's buffers stay the full model's */
    s->m.layers = calloc((size_t)full->cfg.n_layer, sizeof *s->m.layers);
    if (!s->m.layers) {
        qn_tp_model_shard_destroy(s);
        return qn_error_set(err, QN_ERR_NOMEM, "tp model: out of memory");
    }
    qn_status st = build(full, tp_size, rank, false, s, err);
    if (st != QN_OK) {
        qn_tp_model_shard_destroy(s);
        return st;
    }
    s->m.cfg.n_head = s->heads.n_head_local;
    s->m.cfg.n_head_kv = s->heads.n_kv_head_local;
    s->m.cfg.n_ff = (int32_t)(s->ff_end - s->ff_begin);
    *out = s;
    return QN_OK;
}

void qn_tp_model_shard_destroy(qn_tp_model_shard *s) {
    if (!s) return;
    for (int i = 0; i < s->n_owned; i++) free(s->owned[i]);
    free(s->owned);
    free(s->m.layers);
    free(s);
}
