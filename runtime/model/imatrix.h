/* imatrix.h — importance matrices in llama.cpp's formats: per matmul weight, the sum over tokens of
 * the squared inputs of each column (Σ x_j²) and the number of tokens, as llama-imatrix collects them
 * (tools/imatrix/imatrix.cpp) and llama-quantize reads them (--imatrix).
 * Files: GGUF (general.type "imatrix"; imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size;
 * tensors "<weight>.in_sum2" [n_per_mat, n_mat] and "<weight>.counts" [1, n_mat], F32, sorted by
 * name) and the legacy .dat (i32 n_entries; per entry i32 len, name, i32 ncall, i32 nval,
 * f32 (sum/count)*ncall [nval]; then i32 chunk count, i32 len, dataset name).
 * Owns: entries, names, dataset strings. Not: the forward pass (the collector is a tap, see
 * qn_imatrix_tap), the quantizers. */
#ifndef QN_IMATRIX_H
#define QN_IMATRIX_H

#include <stdbool.h>
#include <stdint.h>

#include "quern.h"

typedef struct qn_imatrix_entry {
    char *name;           /* weight name, "blk.0.attn_q.weight" */
    int64_t n_per_mat;    /* columns (the weight's ne[0]) */
    int32_t n_mat;        /* experts; 1 for a dense weight */
    float *sums;          /* [n_mat][n_per_mat]: Σ x² (legacy files: (Σ x² / count) * ncall) */
    int64_t *counts;      /* [n_mat]: tokens (legacy files: ncall) */
} qn_imatrix_entry;

typedef struct qn_imatrix {
    qn_imatrix_entry *e;  /* [n], in insertion order (files are written sorted by name) */
    int32_t n, cap;
    char **datasets;      /* [n_datasets] text files it was computed on */
    int32_t n_datasets;
    int32_t chunk_count;  /* chunks processed */
    int32_t chunk_size;   /* tokens per chunk (0: unknown, legacy files) */
    bool is_legacy;       /* loaded from a .dat file */
    bool has_metadata;    /* GGUF: all three imatrix.* keys present (llama-quantize requires them) */
} qn_imatrix;

qn_status qn_imatrix_create(qn_imatrix **out, qn_error *err);
void qn_imatrix_free(qn_imatrix *m); /* NULL is a no-op */
qn_status qn_imatrix_add_dataset(qn_imatrix *m, const char *path, qn_error *err);
/* The entry of weight `name`, created zeroed (n_per_mat columns, one matrix) when create is set and it
 * is absent; NULL when absent (or out of memory). */
qn_imatrix_entry *qn_imatrix_find(qn_imatrix *m, const char *name, int64_t n_per_mat, bool create);

/* GGUF first, the legacy format when the file is not GGUF. QN_ERR_FORMAT for a malformed file. */
qn_status qn_imatrix_load(const char *path, qn_imatrix **out, qn_error *err);
/* Written as path.tmp, then renamed. */
qn_status qn_imatrix_save_gguf(const qn_imatrix *m, const char *path, qn_error *err);
qn_status qn_imatrix_save_dat(const qn_imatrix *m, const char *path, qn_error *err);

/* The per-column weights llama-quantize hands its quantizers for entry e: [n_mat * n_per_mat]
 * Σx²/count (1 where count is 0); legacy: value/ncall. Caller frees. NULL when out of memory. */
float *qn_imatrix_weights(const qn_imatrix *m, const qn_imatrix_entry *e);

/* --- collecting (quern imatrix) --- */
/* State of qn_imatrix_tap: layer weights are named "blk.N.<w>.weight"; process_output also collects
 * output.weight (llama-imatrix --process-output; a tied model has no output.weight to collect). */
typedef struct qn_imatrix_collector {
    qn_imatrix *m;
    bool process_output;
    bool has_output;      /* the model has its own output.weight */
    qn_status st;         /* first error (out of memory) */
} qn_imatrix_collector;
/* A qn_llama_tap_fn (model/llama_cpu.h): adds Σ x² of the rows of every matmul input to the entries
 * of the weights that consume it, in token order and in fp32, as llama-imatrix's callback does. */
void qn_imatrix_tap(void *user, const char *name, int layer, const float *rows, int64_t n_tokens, int64_t n,
                    int64_t ld);

#endif
