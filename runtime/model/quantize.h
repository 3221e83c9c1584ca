/* quantize.h — `quern quantize` as a library: re-encodes a GGUF Llama-family model to one of
 * llama.cpp's file types (llama_ftype, formats.md §2.3) with llama.cpp's per-tensor type mixes
 * (src/llama-quant.cpp: llama_tensor_get_type, tensor_type_fallback) and our reference quantizers
 * (kernels/quant/gguf/gguf_quantize.h), so that without an importance matrix every output tensor
 * has llama-quantize's bytes. Tensors are processed and written in llama.cpp's order (by layer,
 * then by name), metadata is copied with general.file_type / quantization_version updated.
 * Owns: the type-mix rules (qn_quant_mix), the threads and the temporary output file of one call
 * (OUT.tmp, renamed at the end; removed on any error). Not: the block quantizers, the GGUF
 * reader/writer (model/gguf.h, model/gguf_write.h), the imatrix files (model/imatrix.h). With an
 * importance matrix, tensors it has data for use the weighted quantizers (gguf_quantize.h *_imatrix)
 * and the quantize.imatrix.* keys are written, as llama-quantize --imatrix does. */
#ifndef QN_QUANTIZE_H
#define QN_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/quant/qformat.h"
#include "quern.h"

typedef struct qn_threadpool qn_threadpool;
typedef struct qn_imatrix qn_imatrix;

/* llama.cpp's llama_ftype values (what general.file_type holds); only the ones we write. */
typedef enum qn_ftype {
    QN_FTYPE_ALL_F32 = 0,
    QN_FTYPE_MOSTLY_F16 = 1,
    QN_FTYPE_MOSTLY_Q4_0 = 2,
    QN_FTYPE_MOSTLY_Q4_1 = 3,
    QN_FTYPE_MOSTLY_Q8_0 = 7,
    QN_FTYPE_MOSTLY_Q5_0 = 8,
    QN_FTYPE_MOSTLY_Q5_1 = 9,
    QN_FTYPE_MOSTLY_Q2_K = 10,
    QN_FTYPE_MOSTLY_Q3_K_S = 11,
    QN_FTYPE_MOSTLY_Q3_K_M = 12,
    QN_FTYPE_MOSTLY_Q3_K_L = 13,
    QN_FTYPE_MOSTLY_Q4_K_S = 14,
    QN_FTYPE_MOSTLY_Q4_K_M = 15,
    QN_FTYPE_MOSTLY_Q5_K_S = 16,
    QN_FTYPE_MOSTLY_Q5_K_M = 17,
    QN_FTYPE_MOSTLY_Q6_K = 18,
    QN_FTYPE_MOSTLY_BF16 = 32,
} qn_ftype;

/* --- file types --- */
/* "Q4_K_M", "q8_0", "F16", "BF16", "F32", ... (case-insensitive); QN_ERR_NOT_FOUND otherwise. */
qn_status qn_ftype_parse(const char *name, qn_ftype *out);
const char *qn_ftype_name(qn_ftype t);           /* "Q4_K_M"; "?" when not one of ours */
qn_qformat qn_ftype_base_format(qn_ftype t);     /* Q4_K for Q4_K_M, F16 for MOSTLY_F16, ... */
const char *qn_ftype_names(void);                /* "Q4_0 Q4_1 ... F32", for usage lines */

/* --- per-tensor type mixes --- */
/* Model facts the rules read plus the running counters of llama.cpp's quantize_state_impl: feed
 * every tensor of the file to qn_quant_mix_choose once, in qn_quant_order_cmp order. */
typedef struct qn_quant_mix {
    qn_ftype ftype;
    qn_qformat base;
    int n_layer;        /* <arch>.block_count */
    int n_gqa;          /* n_head / n_head_kv */
    int n_expert;       /* 0 or 1: dense */
    bool is_70b;        /* llama.cpp's LLM_TYPE_70B: 80 layers (llama: with GQA; qwen2) */
    bool tied;          /* no output.weight: token_embd takes the output rules */
    int n_attn_v;       /* attn_v tensors in the file */
    int i_attn_v, i_ffn_down, i_ffn_gate, i_ffn_up; /* advanced by choose, in order */
    int n_fallback;     /* tensors that needed tensor_type_fallback */
    bool has_imatrix;   /* an importance matrix is given (changes Q4_0/Q5_0 ffn_down) */
} qn_quant_mix;

void qn_quant_mix_init(qn_quant_mix *m, qn_ftype ftype, int n_layer, int n_head, int n_head_kv, int n_expert,
                       bool is_70b, bool tied, int n_attn_v);
/* The format tensor `name` (ne: GGUF order, missing dims 1; cur: its current format) is written in.
 * *fell_back (may be NULL) tells whether ne[0] forced a fallback type. Tensors llama.cpp never
 * quantizes (1-D, norms, ...) keep cur. */
qn_qformat qn_quant_mix_choose(qn_quant_mix *m, const char *name, const int64_t ne[4], qn_qformat cur,
                               bool *fell_back);
/* llama.cpp's tensor order (llama_model_loader::weights_map): tensors outside "blk.N." first, then by
 * layer number, ties by name (strcmp). */
int qn_quant_order_cmp(const char *a, const char *b);

/* --- row encoding (shared with synth.c) --- */
/* Fills out[n_per_row] with the floats of row `row` (called from worker threads, concurrently). */
typedef void (*qn_row_source_fn)(void *ud, int64_t row, float *out);
/* Encodes rows [row0, row0 + n_rows) from src into dst ([n_rows][row_bytes(fmt, n_per_row)]) with
 * QN_QFORMATS[fmt].quantize_weight, the rows split over tp's threads (tp NULL: this thread).
 * QN_ERR_FORMAT when a source row holds NaN or Inf (*bad_row set to the first such row). */
qn_status qn_quantize_rows(qn_threadpool *tp, qn_qformat fmt, int64_t n_per_row, int64_t row0, int64_t n_rows,
                           qn_row_source_fn src, void *ud, void *dst, int64_t *bad_row);

typedef struct qn_gguf_writer qn_gguf_writer;
/* Encodes one tensor's rows [0, n_rows) from src in slabs of about 64 MiB and appends them to w's
 * open stream (gguf_write.h); on_slab(slab_ud, rows_done) follows every slab but the last (may be
 * NULL). Errors: QN_ERR_FORMAT for a non-finite source row (*bad_row), QN_ERR_NOMEM, the stream's
 * QN_ERR_IO (err set only for the stream's errors; the caller names the tensor). */
qn_status qn_quantize_tensor_to_stream(qn_threadpool *tp, qn_gguf_writer *w, qn_qformat fmt, int64_t n_per_row,
                                       int64_t n_rows, qn_row_source_fn src, void *src_ud,
                                       void (*on_slab)(void *slab_ud, int64_t rows_done), void *slab_ud,
                                       int64_t *bad_row, qn_error *err);

/* --- the whole-file operation --- */
/* One report per tensor start (done = false) and end (done = true), and one per slab of a large
 * tensor in between, from the calling thread. */
typedef struct qn_quantize_progress {
    int64_t index, count;       /* tensor index (0-based, output order) and number of tensors */
    const char *name;
    qn_qformat from, to;
    bool copied;                /* same format: bytes copied unchanged */
    bool requantized;           /* from a quantized format (quality loss, see llama.cpp --allow-requantize) */
    bool fell_back;             /* ne[0] forced a fallback type */
    bool done;
    int64_t rows_done, rows;    /* of this tensor */
    int64_t n_per_row;
    uint64_t bytes_in, bytes_out;
    double elapsed_s;           /* since the call started */
    double eta_s;               /* remaining, from elements encoded so far; < 0 when unknown */
} qn_quantize_progress;
typedef void (*qn_quantize_progress_fn)(void *ud, const qn_quantize_progress *p);

typedef struct qn_quantize_params {
    qn_ftype ftype;
    int n_threads;                     /* <= 0: 1 */
    qn_quantize_progress_fn progress;  /* NULL: silent */
    void *progress_ud;
    const qn_imatrix *imatrix;         /* optional importance matrix (model/imatrix.h) */
    const char *imatrix_file;          /* its path, for quantize.imatrix.file */
} qn_quantize_params;

typedef struct qn_quantize_stats {
    int64_t n_tensors, n_encoded, n_copied, n_requantized, n_fallback;
    uint64_t bytes_in, bytes_out;      /* tensor data only */
    qn_qformat requant_from;           /* format of the first requantized tensor */
    double seconds;
} qn_quantize_stats;

qn_quantize_params qn_quantize_params_default(void);
/* Quantizes in_path into out_path (written as out_path.tmp, renamed when complete). Errors name the
 * file and tensor: QN_ERR_UNSUPPORTED (architecture, tensor type), QN_ERR_FORMAT (missing tensor,
 * shape, non-finite values), QN_ERR_NOT_FOUND (no input), QN_ERR_IO, QN_ERR_INVALID_ARG (out_path =
 * in_path). stats may be NULL. */
qn_status qn_quantize_gguf(const char *in_path, const char *out_path, const qn_quantize_params *p,
                           qn_quantize_stats *stats, qn_error *err);

#endif
