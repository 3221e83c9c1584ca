/* quantize.c — GGUF re-encoding with llama.cpp's file types and type mixes (contract in quantize.h).
 * The mix rules below are a transcription of the decisions in llama.cpp's src/llama-quant.cpp for
 * the file types we write (K-quant _S/_M/_L recipes, output/embedding rules, ne[0] fallbacks);
 * rules for types we do not write (IQ*, TQ*, MXFP4) are left out. */
#include "model/quantize.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "config/model_config.h"
#include "core/threadpool.h"
#include "model/arch.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "model/imatrix.h"

#define QN_QUANT_VERSION 2                 /* GGML_QNT_VERSION */
#define QN_QUANT_SLAB_BYTES (64u << 20)    /* output bytes encoded per slab: bounds memory */

/* ------------------------------------------------------------------------------------------------ */
/* file types                                                                                       */

static const struct {
    const char *name;
    qn_ftype ftype;
    qn_qformat base;
} QN_FTYPES[] = {
    {"Q4_0", QN_FTYPE_MOSTLY_Q4_0, QN_QFORMAT_Q4_0},     {"Q4_1", QN_FTYPE_MOSTLY_Q4_1, QN_QFORMAT_Q4_1},
    {"Q5_0", QN_FTYPE_MOSTLY_Q5_0, QN_QFORMAT_Q5_0},     {"Q5_1", QN_FTYPE_MOSTLY_Q5_1, QN_QFORMAT_Q5_1},
    {"Q8_0", QN_FTYPE_MOSTLY_Q8_0, QN_QFORMAT_Q8_0},     {"Q2_K", QN_FTYPE_MOSTLY_Q2_K, QN_QFORMAT_Q2_K},
    {"Q3_K_S", QN_FTYPE_MOSTLY_Q3_K_S, QN_QFORMAT_Q3_K}, {"Q3_K_M", QN_FTYPE_MOSTLY_Q3_K_M, QN_QFORMAT_Q3_K},
    {"Q3_K_L", QN_FTYPE_MOSTLY_Q3_K_L, QN_QFORMAT_Q3_K}, {"Q4_K_S", QN_FTYPE_MOSTLY_Q4_K_S, QN_QFORMAT_Q4_K},
    {"Q4_K_M", QN_FTYPE_MOSTLY_Q4_K_M, QN_QFORMAT_Q4_K}, {"Q5_K_S", QN_FTYPE_MOSTLY_Q5_K_S, QN_QFORMAT_Q5_K},
    {"Q5_K_M", QN_FTYPE_MOSTLY_Q5_K_M, QN_QFORMAT_Q5_K}, {"Q6_K", QN_FTYPE_MOSTLY_Q6_K, QN_QFORMAT_Q6_K},
    {"F16", QN_FTYPE_MOSTLY_F16, QN_QFORMAT_F16},        {"BF16", QN_FTYPE_MOSTLY_BF16, QN_QFORMAT_BF16},
    {"F32", QN_FTYPE_ALL_F32, QN_QFORMAT_F32},
};
#define QN_N_FTYPES ((int)(sizeof QN_FTYPES / sizeof QN_FTYPES[0]))

static int ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if ((*a | 0x20) != (*b | 0x20)) return 0;
    return !*a && !*b;
}

qn_status qn_ftype_parse(const char *name, qn_ftype *out) {
    if (!name) return QN_ERR_INVALID_ARG;
    for (int i = 0; i < QN_N_FTYPES; i++)
        if (ieq(name, QN_FTYPES[i].name)) {
            if (out) *out = QN_FTYPES[i].ftype;
            return QN_OK;
        }
    return QN_ERR_NOT_FOUND;
}

const char *qn_ftype_name(qn_ftype t) {
    for (int i = 0; i < QN_N_FTYPES; i++)
        if (QN_FTYPES[i].ftype == t) return QN_FTYPES[i].name;
    return "?";
}

qn_qformat qn_ftype_base_format(qn_ftype t) {
    for (int i = 0; i < QN_N_FTYPES; i++)
        if (QN_FTYPES[i].ftype == t) return QN_FTYPES[i].base;
    return QN_QFORMAT_COUNT;
}

const char *qn_ftype_names(void) {
    return "Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K F16 BF16 F32";
}

/* ------------------------------------------------------------------------------------------------ */
/* type mixes                                                                                       */

typedef enum mix_category {
    CAT_OTHER = 0,
    CAT_OUTPUT,
    CAT_TOKEN_EMBD,
    CAT_ATTN_QKV,
    CAT_ATTN_KV_B,
    CAT_ATTN_V,
    CAT_ATTN_K,
    CAT_ATTN_Q,
    CAT_ATTN_OUTPUT,
    CAT_FFN_UP,
    CAT_FFN_GATE,
    CAT_FFN_DOWN,
} mix_category;

/* Broad category by name, first match wins (llama.cpp's tensor_get_category). */
static mix_category category_of(const char *name) {
    if (!strcmp(name, "output.weight")) return CAT_OUTPUT;
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight")) return CAT_TOKEN_EMBD;
    static const struct {
        const char *sub;
        mix_category cat;
    } subs[] = {
        {"attn_qkv.weight", CAT_ATTN_QKV},       {"attn_kv_b.weight", CAT_ATTN_KV_B}, {"attn_v.weight", CAT_ATTN_V},
        {"attn_k.weight", CAT_ATTN_K},           {"attn_q.weight", CAT_ATTN_Q},
        {"attn_output.weight", CAT_ATTN_OUTPUT}, {"ffn_up", CAT_FFN_UP},              {"ffn_gate", CAT_FFN_GATE},
        {"ffn_down", CAT_FFN_DOWN},
    };
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (strstr(name, subs[i].sub)) return subs[i].cat;
    return CAT_OTHER;
}

static bool is_attn_v_like(mix_category c) { return c == CAT_ATTN_V || c == CAT_ATTN_QKV || c == CAT_ATTN_KV_B; }

static int effective_dims(const int64_t ne[4]) {
    int n = 1;
    for (int i = 1; i < 4; i++)
        if (ne[i] > 1) n = i + 1;
    return n;
}

static bool ends_with(const char *s, const char *suffix) {
    const size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !memcmp(s + a - b, suffix, b);
}

/* Whether llama.cpp quantizes this tensor at all (tensor_allows_quantization): matrices whose name
 * ends in "weight", minus norms, routers and a list of small special tensors of other families. */
static bool allows_quantization(const char *name, const int64_t ne[4]) {
    if (effective_dims(ne) < 2 || !ends_with(name, "weight")) return false;
    static const char *const never[] = {
        "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
        "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
        "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
        "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd",
        "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook",
        "mm.a.code_embd",
    };
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (strstr(name, never[i])) return false;
    return strcmp(name, "position_embd.weight") && strcmp(name, "token_types.weight");
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers and every third in between. */
static bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

void qn_quant_mix_init(qn_quant_mix *m, qn_ftype ftype, int n_layer, int n_head, int n_head_kv, int n_expert,
                       bool is_70b, bool tied, int n_attn_v) {
    memset(m, 0, sizeof *m);
    m->ftype = ftype;
    m->base = qn_ftype_base_format(ftype);
    m->n_layer = n_layer;
    m->n_gqa = n_head_kv > 0 ? n_head / n_head_kv : 0;
    m->n_expert = n_expert > 1 ? n_expert : 1;
    m->is_70b = is_70b;
    m->tied = tied;
    m->n_attn_v = n_attn_v;
}

/* The layer of a per-layer tensor for the ffn rules: the running counter for dense models, the
 * "blk.N." number for MoE files (whose expert tensors are not in layer order). */
static int ffn_layer(const qn_quant_mix *m, int counter, const char *name) {
    int il = counter;
    if (m->n_expert > 1 && sscanf(name, "blk.%d.", &il) != 1) il = counter;
    return il;
}

/* The recipe (llama_tensor_get_type_impl) for a quantized base type. */
static qn_qformat mix_rule(qn_quant_mix *m, const char *name, const int64_t ne[4], mix_category cat) {
    const qn_ftype ft = m->ftype;
    qn_qformat t = m->base;
    if (cat == CAT_OUTPUT || (m->tied && cat == CAT_TOKEN_EMBD)) {
        if (ne[0] % QN_QFORMATS[t].block_elems != 0) t = QN_QFORMAT_Q8_0;
        else if (t != QN_QFORMAT_Q8_0) t = QN_QFORMAT_Q6_K;
    } else if (cat == CAT_TOKEN_EMBD) {
        /* untied embeddings keep the base type for every file type we write */
    } else if (is_attn_v_like(cat)) {
        if (ft == QN_FTYPE_MOSTLY_Q2_K) t = m->n_gqa >= 4 ? QN_QFORMAT_Q4_K : QN_QFORMAT_Q3_K;
        else if (ft == QN_FTYPE_MOSTLY_Q3_K_M) t = m->i_attn_v < 2 ? QN_QFORMAT_Q5_K : QN_QFORMAT_Q4_K;
        else if (ft == QN_FTYPE_MOSTLY_Q3_K_L) t = QN_QFORMAT_Q5_K;
        else if ((ft == QN_FTYPE_MOSTLY_Q4_K_M || ft == QN_FTYPE_MOSTLY_Q5_K_M) && more_bits(m->i_attn_v, m->n_attn_v))
            t = QN_QFORMAT_Q6_K;
        else if (ft == QN_FTYPE_MOSTLY_Q4_K_S && m->i_attn_v < 4) t = QN_QFORMAT_Q5_K;
        /* 70B: attn_v is 8x smaller than attn_q (GQA), so more bits cost little */
        if (m->is_70b && (t == QN_QFORMAT_Q3_K || t == QN_QFORMAT_Q4_K)) t = QN_QFORMAT_Q5_K;
        if (m->n_expert == 8) t = QN_QFORMAT_Q8_0;
        m->i_attn_v++;
    } else if (cat == CAT_ATTN_K) {
        if (m->n_expert == 8) t = QN_QFORMAT_Q8_0;
    } else if (cat == CAT_ATTN_Q) {
        /* only IQ file types change attn_q */
    } else if (cat == CAT_FFN_DOWN) {
        const int i = ffn_layer(m, m->i_ffn_down, name), n = m->n_layer;
        if (ft == QN_FTYPE_MOSTLY_Q2_K) t = QN_QFORMAT_Q3_K;
        else if (ft == QN_FTYPE_MOSTLY_Q3_K_M) t = i < n / 16 ? QN_QFORMAT_Q5_K : QN_QFORMAT_Q4_K;
        else if (ft == QN_FTYPE_MOSTLY_Q3_K_L) t = QN_QFORMAT_Q5_K;
        else if (ft == QN_FTYPE_MOSTLY_Q4_K_M) {
            if (more_bits(i, n)) t = QN_QFORMAT_Q6_K;
        } else if (ft == QN_FTYPE_MOSTLY_Q5_K_M && more_bits(i, n)) t = QN_QFORMAT_Q6_K;
        else if (ft == QN_FTYPE_MOSTLY_Q4_K_S && i < n / 8) t = QN_QFORMAT_Q5_K;
        /* with an importance matrix, the first eighth of ffn_down gets the affine type (llama.cpp's
         * guard against Q4_0/Q5_0 "craziness" there) */
        else if ((ft == QN_FTYPE_MOSTLY_Q4_0 || ft == QN_FTYPE_MOSTLY_Q5_0) && m->has_imatrix && i < n / 8)
            t = ft == QN_FTYPE_MOSTLY_Q4_0 ? QN_QFORMAT_Q4_1 : QN_QFORMAT_Q5_1;
        m->i_ffn_down++;
    } else if (cat == CAT_ATTN_OUTPUT) {
        if (m->n_expert == 8) {
            if (ft == QN_FTYPE_MOSTLY_Q2_K || ft == QN_FTYPE_MOSTLY_Q3_K_S || ft == QN_FTYPE_MOSTLY_Q3_K_M ||
                ft == QN_FTYPE_MOSTLY_Q4_K_S || ft == QN_FTYPE_MOSTLY_Q4_K_M)
                t = QN_QFORMAT_Q5_K;
        } else {
            if (ft == QN_FTYPE_MOSTLY_Q2_K) t = QN_QFORMAT_Q3_K;
            else if (ft == QN_FTYPE_MOSTLY_Q3_K_M) t = QN_QFORMAT_Q4_K;
            else if (ft == QN_FTYPE_MOSTLY_Q3_K_L) t = QN_QFORMAT_Q5_K;
        }
    } else if (cat == CAT_ATTN_QKV) {
        if (ft == QN_FTYPE_MOSTLY_Q3_K_M || ft == QN_FTYPE_MOSTLY_Q3_K_L) t = QN_QFORMAT_Q4_K;
        else if (ft == QN_FTYPE_MOSTLY_Q4_K_M) t = QN_QFORMAT_Q5_K;
        else if (ft == QN_FTYPE_MOSTLY_Q5_K_M) t = QN_QFORMAT_Q6_K;
    } else if (cat == CAT_FFN_GATE) {
        m->i_ffn_gate++;
    } else if (cat == CAT_FFN_UP) {
        m->i_ffn_up++;
    }
    return t;
}

/* ne[0] not a multiple of the block (tensor_type_fallback): a 32-element type of about the same
 * size, F16 when even that does not divide. */
static qn_qformat fallback(qn_quant_mix *m, const int64_t ne[4], qn_qformat t, bool *fell_back) {
    if (ne[0] % QN_QFORMATS[t].block_elems == 0) return t;
    m->n_fallback++;
    if (fell_back) *fell_back = true;
    qn_qformat r = t;
    switch (t) {
    case QN_QFORMAT_Q2_K:
    case QN_QFORMAT_Q3_K: r = QN_QFORMAT_Q4_0; break;
    case QN_QFORMAT_Q4_K: r = QN_QFORMAT_Q5_0; break;
    case QN_QFORMAT_Q5_K: r = QN_QFORMAT_Q5_1; break;
    case QN_QFORMAT_Q6_K: r = QN_QFORMAT_Q8_0; break;
    default: break; /* a 32-element type already: only F16 is left */
    }
    return ne[0] % QN_QFORMATS[r].block_elems == 0 ? r : QN_QFORMAT_F16;
}

qn_qformat qn_quant_mix_choose(qn_quant_mix *m, const char *name, const int64_t ne[4], qn_qformat cur,
                               bool *fell_back) {
    if (fell_back) *fell_back = false;
    if (!allows_quantization(name, ne)) return cur;
    if (!QN_QFORMATS[m->base].is_quantized) return m->base; /* F16 / BF16 / F32 files: no recipe */
    return fallback(m, ne, mix_rule(m, name, ne, category_of(name)), fell_back);
}

int qn_quant_order_cmp(const char *a, const char *b) {
    int la = -1, lb = -1;
    if (sscanf(a, "blk.%d.", &la) != 1) la = -1;
    if (sscanf(b, "blk.%d.", &lb) != 1) lb = -1;
    if (la != lb) return la < lb ? -1 : 1;
    return strcmp(a, b);
}

/* ------------------------------------------------------------------------------------------------ */
/* row encoding                                                                                     */

typedef struct rows_job {
    qn_qformat fmt;
    int64_t n_per_row, row0, n_rows;
    qn_row_source_fn src;
    void *ud;
    uint8_t *dst;
    size_t row_bytes;
    const float *qw;  /* optional importance weights [n_mat][n_per_row] (quantize_imatrix) */
    int64_t rows_per_mat;
    float *scratch;   /* [nth][n_per_row] */
    int64_t *bad;     /* [nth]: first non-finite source row of each worker, or -1 */
} rows_job;

static void rows_task(void *arg, int ith, int nth) {
    rows_job *j = arg;
    long long b, e;
    qn_split_range(j->n_rows, ith, nth, &b, &e);
    float *x = j->scratch + (size_t)ith * (size_t)j->n_per_row;
    const qn_quantize_row_fn q = QN_QFORMATS[j->fmt].quantize_weight;
    const qn_quantize_row_imatrix_fn qi = j->qw ? QN_QFORMATS[j->fmt].quantize_imatrix : NULL;
    j->bad[ith] = -1;
    for (long long r = b; r < e; r++) {
        j->src(j->ud, j->row0 + r, x);
        for (int64_t i = 0; i < j->n_per_row; i++)
            if (!isfinite(x[i])) {
                if (j->bad[ith] < 0) j->bad[ith] = j->row0 + r;
                break;
            }
        if (qi) qi(x, j->dst + (size_t)r * j->row_bytes, j->n_per_row, j->qw + (j->row0 + r) / j->rows_per_mat * j->n_per_row);
        else q(x, j->dst + (size_t)r * j->row_bytes, j->n_per_row);
    }
}

/* qn_quantize_rows with optional importance weights qw ([n_mat][n_per_row], one matrix per
 * rows_per_mat rows). */
static qn_status encode_rows(qn_threadpool *tp, qn_qformat fmt, int64_t n_per_row, int64_t row0, int64_t n_rows,
                             qn_row_source_fn src, void *ud, const float *qw, int64_t rows_per_mat, void *dst,
                             int64_t *bad_row) {
    if ((unsigned)fmt >= QN_QFORMAT_COUNT || !QN_QFORMATS[fmt].quantize_weight || n_per_row <= 0 ||
        n_per_row % QN_QFORMATS[fmt].block_elems || n_rows < 0 || !src || (n_rows && !dst))
        return QN_ERR_INVALID_ARG;
    const int nth = tp ? qn_threadpool_size(tp) : 1;
    rows_job j = {.fmt = fmt, .n_per_row = n_per_row, .row0 = row0, .n_rows = n_rows, .src = src, .ud = ud,
                  .dst = dst, .row_bytes = qn_qformat_row_bytes(fmt, n_per_row), .qw = qw,
                  .rows_per_mat = rows_per_mat > 0 ? rows_per_mat : 1};
    j.scratch = malloc(sizeof(float) * (size_t)n_per_row * (size_t)nth);
    j.bad = malloc(sizeof(int64_t) * (size_t)nth);
    if (!j.scratch || !j.bad) {
        free(j.scratch);
        free(j.bad);
        return QN_ERR_NOMEM;
    }
    if (tp) qn_threadpool_run(tp, rows_task, &j);
    else rows_task(&j, 0, 1);
    int64_t bad = -1;
    for (int i = 0; i < nth; i++)
        if (j.bad[i] >= 0 && (bad < 0 || j.bad[i] < bad)) bad = j.bad[i];
    free(j.scratch);
    free(j.bad);
    if (bad_row) *bad_row = bad;
    return bad >= 0 ? QN_ERR_FORMAT : QN_OK;
}

qn_status qn_quantize_rows(qn_threadpool *tp, qn_qformat fmt, int64_t n_per_row, int64_t row0, int64_t n_rows,
                           qn_row_source_fn src, void *ud, void *dst, int64_t *bad_row) {
    return encode_rows(tp, fmt, n_per_row, row0, n_rows, src, ud, NULL, 0, dst, bad_row);
}

/* qn_quantize_tensor_to_stream with optional importance weights (encode_rows). */
static qn_status encode_to_stream(qn_threadpool *tp, qn_gguf_writer *w, qn_qformat fmt, int64_t n_per_row,
                                  int64_t n_rows, qn_row_source_fn src, void *src_ud, const float *qw,
                                  int64_t rows_per_mat, void (*on_slab)(void *slab_ud, int64_t rows_done),
                                  void *slab_ud, int64_t *bad_row, qn_error *err) {
    const size_t rb = qn_qformat_row_bytes(fmt, n_per_row);
    if (!rb || n_rows < 0) return QN_ERR_INVALID_ARG;
    int64_t slab_rows = (int64_t)(QN_QUANT_SLAB_BYTES / rb);
    if (slab_rows < 1) slab_rows = 1;
    if (slab_rows > n_rows) slab_rows = n_rows;
    uint8_t *slab = malloc(rb * (size_t)(slab_rows ? slab_rows : 1));
    if (!slab) return QN_ERR_NOMEM;
    qn_status st = QN_OK;
    for (int64_t r0 = 0; r0 < n_rows && st == QN_OK; r0 += slab_rows) {
        const int64_t nr = n_rows - r0 < slab_rows ? n_rows - r0 : slab_rows;
        st = encode_rows(tp, fmt, n_per_row, r0, nr, src, src_ud, qw, rows_per_mat, slab, bad_row);
        if (st == QN_OK) st = qn_gguf_writer_stream_put(w, slab, rb * (size_t)nr, err);
        if (st == QN_OK && on_slab && r0 + nr < n_rows) on_slab(slab_ud, r0 + nr);
    }
    free(slab);
    return st;
}

qn_status qn_quantize_tensor_to_stream(qn_threadpool *tp, qn_gguf_writer *w, qn_qformat fmt, int64_t n_per_row,
                                       int64_t n_rows, qn_row_source_fn src, void *src_ud,
                                       void (*on_slab)(void *slab_ud, int64_t rows_done), void *slab_ud,
                                       int64_t *bad_row, qn_error *err) {
    return encode_to_stream(tp, w, fmt, n_per_row, n_rows, src, src_ud, NULL, 0, on_slab, slab_ud, bad_row, err);
}

/* ------------------------------------------------------------------------------------------------ */
/* whole file                                                                                       */

qn_quantize_params qn_quantize_params_default(void) {
    return (qn_quantize_params){.ftype = QN_FTYPE_MOSTLY_Q8_0, .n_threads = 1};
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One input tensor and what becomes of it. */
typedef struct plan_entry {
    char *name;
    const qn_gguf_tensor *t;
    qn_qformat to;
    bool fell_back;
    int64_t n_per_row, rows;
} plan_entry;

static int plan_cmp(const void *a, const void *b) {
    return qn_quant_order_cmp(((const plan_entry *)a)->name, ((const plan_entry *)b)->name);
}

typedef struct dequant_src {
    const uint8_t *data;
    qn_qformat fmt;
    size_t row_bytes;
    int64_t n_per_row;
} dequant_src;

static void dequant_row(void *ud, int64_t row, float *out) {
    const dequant_src *s = ud;
    QN_QFORMATS[s->fmt].dequant_ref(s->data + (size_t)row * s->row_bytes, out, s->n_per_row);
}

static bool same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (!strcmp(a, b)) return true;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static bool skip_key(qn_gguf_str k, bool imatrix) {
    static const char *const keys[] = {"general.quantization_version", "general.file_type", "split.no", "split.count",
                                       "split.tensors.count", /* with an imatrix (rewritten): */ "quantize.imatrix.file",
                                       "quantize.imatrix.dataset", "quantize.imatrix.entries_count",
                                       "quantize.imatrix.chunks_count"};
    for (size_t i = 0; i < (imatrix ? 9 : 5); i++)
        if (k.len == strlen(keys[i]) && !memcmp(k.ptr, keys[i], k.len)) return true;
    return false;
}

/* llama-quantize's quantize.imatrix.* keys (its KV overrides: strings cut at 127 bytes, counts u32),
 * after general.file_type. */
static qn_status add_imatrix_keys(qn_gguf_writer *w, const qn_quantize_params *p, qn_error *err) {
    char buf[128];
    const qn_imatrix *m = p->imatrix;
    snprintf(buf, sizeof buf, "%s", p->imatrix_file ? p->imatrix_file : "");
    qn_status st = qn_gguf_writer_add_str(w, "quantize.imatrix.file", buf, err);
    if (!st && m->n_datasets > 0) {
        snprintf(buf, sizeof buf, "%s", m->datasets[0]);
        st = qn_gguf_writer_add_str(w, "quantize.imatrix.dataset", buf, err);
    }
    if (!st) st = qn_gguf_writer_add_u32(w, "quantize.imatrix.entries_count", (uint32_t)m->n, err);
    if (!st && m->chunk_count > 0)
        st = qn_gguf_writer_add_u32(w, "quantize.imatrix.chunks_count", (uint32_t)m->chunk_count, err);
    return st;
}

/* The importance weights of tensor e (NULL in *qw when the matrix has no entry for it); an entry of
 * the wrong size is an error except for token_embd, as in llama-quantize. */
static qn_status tensor_imatrix(const qn_quantize_params *p, const plan_entry *e, float **qw, qn_error *err) {
    *qw = NULL;
    if (!p->imatrix || !QN_QFORMATS[e->to].quantize_imatrix) return QN_OK;
    const qn_imatrix_entry *ie = qn_imatrix_find((qn_imatrix *)p->imatrix, e->name, 0, false);
    if (!ie) return QN_OK;
    if (ie->n_per_mat * ie->n_mat != e->t->ne[0] * e->t->ne[2]) {
        if (category_of(e->name) == CAT_TOKEN_EMBD) return QN_OK;
        return qn_error_set(err, QN_ERR_FORMAT, "imatrix size %lld is different from tensor size %lld for %s",
                            (long long)(ie->n_per_mat * ie->n_mat), (long long)(e->t->ne[0] * e->t->ne[2]), e->name);
    }
    if (!(*qw = qn_imatrix_weights(p->imatrix, ie))) return qn_error_set(err, QN_ERR_NOMEM, "quantize: out of memory");
    return QN_OK;
}

/* Reads <arch>.expert_count (absent: dense). */
static int expert_count(const qn_gguf *g, const qn_model_config *c) {
    char key[96];
    uint32_t v = 0;
    snprintf(key, sizeof key, "%s.expert_count", qn_arch_name(c->arch));
    return qn_gguf_get_u32(g, key, &v, NULL) == QN_OK ? (int)v : 0;
}

static void report(const qn_quantize_params *p, qn_quantize_progress *pr, double t0, uint64_t done_elems,
                   uint64_t total_elems) {
    if (!p->progress) return;
    pr->elapsed_s = now_s() - t0;
    /* extrapolated from elements encoded; unknown until 1% is done (early tensors are tiny) */
    pr->eta_s = done_elems * 100 >= total_elems && done_elems > 0
                    ? pr->elapsed_s * (double)(total_elems - done_elems) / (double)done_elems
                    : -1.0;
    p->progress(p->progress_ud, pr);
}

/* Progress between the slabs of one tensor. */
typedef struct slab_report {
    const qn_quantize_params *p;
    qn_quantize_progress *pr;
    double t0;
    uint64_t done0, total;
} slab_report;

static void on_slab(void *ud, int64_t rows_done) {
    slab_report *s = ud;
    s->pr->rows_done = rows_done;
    report(s->p, s->pr, s->t0, s->done0 + (uint64_t)(rows_done * s->pr->n_per_row), s->total);
}

qn_status qn_quantize_gguf(const char *in_path, const char *out_path, const qn_quantize_params *p,
                           qn_quantize_stats *stats, qn_error *err) {
    if (!in_path || !out_path || !p)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "quantize: NULL argument");
    const qn_qformat base = qn_ftype_base_format(p->ftype);
    if (base == QN_QFORMAT_COUNT)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "quantize: file type %d is not one of %s", (int)p->ftype,
                            qn_ftype_names());
    if (same_file(in_path, out_path))
        return qn_error_set(err, QN_ERR_INVALID_ARG, "%s: output would replace the input", out_path);
    const double t0 = now_s();
    qn_quantize_stats st_local = {.requant_from = QN_QFORMAT_COUNT};
    qn_status st;
    qn_gguf *g = NULL;
    qn_gguf_writer *w = NULL;
    qn_threadpool *tp = NULL;
    plan_entry *plan = NULL;
    int64_t n = 0;

    if ((st = qn_gguf_open(in_path, &g, err))) return st;
    qn_model_config cfg;
    if ((st = qn_model_config_from_gguf(g, &cfg, err)) || (st = qn_arch_check_tensors(g, &cfg, err))) goto err_close;

    /* plan: every tensor, in llama.cpp's order, with its output format */
    n = qn_gguf_n_tensors(g);
    plan = calloc((size_t)(n ? n : 1), sizeof *plan);
    if (!plan) {
        st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", in_path);
        goto err_close;
    }
    int n_attn_v = 0;
    for (int64_t i = 0; i < n; i++) {
        const qn_gguf_tensor *t = qn_gguf_tensor_at(g, i);
        plan[i].t = t;
        plan[i].name = strndup(t->name.ptr, (size_t)t->name.len);
        if (!plan[i].name) {
            st = qn_error_set(err, QN_ERR_NOMEM, "%s: out of memory", in_path);
            goto err_plan;
        }
        if (is_attn_v_like(category_of(plan[i].name))) n_attn_v++;
    }
    qsort(plan, (size_t)n, sizeof *plan, plan_cmp);
    qn_quant_mix mix;
    const bool is_70b = cfg.n_layer == 80 && ((cfg.arch != QN_ARCH_QWEN2 && cfg.n_head != cfg.n_head_kv) ||
                                              cfg.arch == QN_ARCH_QWEN2);
    qn_quant_mix_init(&mix, p->ftype, cfg.n_layer, cfg.n_head, cfg.n_head_kv, expert_count(g, &cfg), is_70b,
                      qn_gguf_find_tensor(g, "output.weight") == NULL, n_attn_v);
    mix.has_imatrix = p->imatrix != NULL;
    uint64_t total_elems = 0;
    for (int64_t i = 0; i < n; i++) {
        plan_entry *e = &plan[i];
        e->to = qn_quant_mix_choose(&mix, e->name, e->t->ne, e->t->fmt, &e->fell_back);
        e->n_per_row = e->t->ne[0];
        e->rows = e->t->ne[1] * e->t->ne[2] * e->t->ne[3];
        if (e->to != e->t->fmt) {
            if (!QN_QFORMATS[e->t->fmt].dequant_ref || !QN_QFORMATS[e->to].quantize_weight ||
                e->n_per_row % QN_QFORMATS[e->to].block_elems) {
                st = qn_error_set(err, QN_ERR_UNSUPPORTED, "%s: tensor '%s': cannot convert %s to %s", in_path, e->name,
                                  QN_QFORMATS[e->t->fmt].name, QN_QFORMATS[e->to].name);
                goto err_plan;
            }
            total_elems += (uint64_t)(e->n_per_row * e->rows);
        }
    }

    /* output: metadata copied (file type keys last, as llama.cpp writes them), tensor infos */
    if ((st = qn_gguf_writer_create(&w, err))) goto err_plan;
    for (int64_t i = 0; i < qn_gguf_n_kv(g); i++)
        if (!skip_key(qn_gguf_key(g, i), p->imatrix != NULL) && (st = qn_gguf_writer_copy_kv(w, g, i, NULL, err))) goto err_writer;
    if ((st = qn_gguf_writer_add_u32(w, "general.quantization_version", QN_QUANT_VERSION, err)) ||
        (st = qn_gguf_writer_add_u32(w, "general.file_type", (uint32_t)p->ftype, err)) ||
        (p->imatrix && (st = add_imatrix_keys(w, p, err))))
        goto err_writer;
    for (int64_t i = 0; i < n; i++) {
        const plan_entry *e = &plan[i];
        if ((st = qn_gguf_writer_add_tensor(w, e->name, e->to, (uint32_t)effective_dims(e->t->ne), e->t->ne, NULL,
                                            err)))
            goto err_writer;
    }
    if ((st = qn_threadpool_create(p->n_threads > 0 ? p->n_threads : 1, &tp, err))) goto err_writer;
    if ((st = qn_gguf_writer_stream_begin(w, out_path, err))) goto err_pool;

    uint64_t done_elems = 0;
    for (int64_t i = 0; i < n; i++) {
        const plan_entry *e = &plan[i];
        const qn_gguf_tensor *t = e->t;
        qn_quantize_progress pr = {.index = i, .count = n, .name = e->name, .from = t->fmt, .to = e->to,
                                   .copied = e->to == t->fmt, .fell_back = e->fell_back, .rows = e->rows,
                                   .n_per_row = e->n_per_row, .bytes_in = t->nbytes};
        pr.requantized = !pr.copied && QN_QFORMATS[t->fmt].is_quantized;
        const size_t rb_out = qn_qformat_row_bytes(e->to, e->n_per_row);
        pr.bytes_out = rb_out * (uint64_t)e->rows;
        report(p, &pr, t0, done_elems, total_elems);
        if (pr.copied) {
            if ((st = qn_gguf_writer_stream_put(w, t->data, t->nbytes, err))) goto err_pool;
            st_local.n_copied++;
        } else {
            dequant_src src = {.data = t->data, .fmt = t->fmt, .n_per_row = e->n_per_row,
                               .row_bytes = qn_qformat_row_bytes(t->fmt, e->n_per_row)};
            slab_report sr = {.p = p, .pr = &pr, .t0 = t0, .done0 = done_elems, .total = total_elems};
            int64_t bad = -1;
            float *qw = NULL;
            if ((st = tensor_imatrix(p, e, &qw, err))) goto err_pool;
            st = encode_to_stream(tp, w, e->to, e->n_per_row, e->rows, dequant_row, &src, qw, e->t->ne[1], on_slab,
                                  &sr, &bad, err);
            free(qw);
            if (st == QN_ERR_FORMAT) {
                st = qn_error_set(err, QN_ERR_FORMAT, "%s: tensor '%s': row %lld holds NaN or Inf", in_path, e->name,
                                  (long long)bad);
                goto err_pool;
            }
            if (st == QN_ERR_NOMEM) st = qn_error_set(err, st, "%s: tensor '%s': out of memory", in_path, e->name);
            if (st) goto err_pool;
            done_elems += (uint64_t)(e->rows * e->n_per_row);
            st_local.n_encoded++;
            if (pr.requantized) {
                if (!st_local.n_requantized) st_local.requant_from = t->fmt;
                st_local.n_requantized++;
            }
        }
        pr.done = true;
        pr.rows_done = e->rows;
        report(p, &pr, t0, done_elems, total_elems);
        st_local.bytes_in += t->nbytes;
        st_local.bytes_out += pr.bytes_out;
    }
    if ((st = qn_gguf_writer_stream_end(w, err))) goto err_pool;
    st_local.n_tensors = n;
    st_local.n_fallback = mix.n_fallback;
    st_local.seconds = now_s() - t0;
    if (stats) *stats = st_local;
    st = QN_OK;

err_pool:
    qn_threadpool_destroy(tp);
err_writer:
    qn_gguf_writer_destroy(w); /* removes OUT.tmp when the stream did not end */
err_plan:
    for (int64_t i = 0; i < n; i++) free(plan[i].name);
    free(plan);
err_close:
    qn_gguf_close(g);
    return st;
}
