/* safetensors.h — safetensors reader over read-only mmaps (docs/formats.md §0): one file, or a
 * sharded checkpoint through model.safetensors.index.json (weight_map).
 * Owns: the mappings, the parsed tensor table (names copied) and the __metadata__ strings. Tensor
 * data pointers are views into the mappings, valid until qn_st_close. Every structural problem (bad
 * header size, invalid JSON, offsets out of range / overlapping / not matching dtype x shape,
 * duplicate names) is QN_ERR_FORMAT; dtypes we do not read (F8_*, ...) are QN_ERR_UNSUPPORTED; the
 * message names the file, the tensor and the field. */
#ifndef QN_SAFETENSORS_H
#define QN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QN_ST_MAX_DIMS 8
#define QN_ST_MAX_HEADER 100000000ull /* the reference reader's MAX_HEADER_SIZE */

typedef enum qn_st_dtype {
    QN_ST_DTYPE_F64 = 0,
    QN_ST_DTYPE_F32,
    QN_ST_DTYPE_F16,
    QN_ST_DTYPE_BF16,
    QN_ST_DTYPE_I64,
    QN_ST_DTYPE_I32,
    QN_ST_DTYPE_I16,
    QN_ST_DTYPE_I8,
    QN_ST_DTYPE_U8,
    QN_ST_DTYPE_BOOL,
    QN_ST_DTYPE_COUNT
} qn_st_dtype;

/* A tensor: a view into a shard's mapping. Row-major (C order), little-endian. */
typedef struct qn_st_tensor {
    const char *name;                /* NUL-terminated, owned by the qn_st */
    qn_st_dtype dtype;
    uint32_t n_dims;                 /* 0 = scalar */
    int64_t shape[QN_ST_MAX_DIMS];   /* PyTorch order: shape[n_dims-1] is contiguous; unused dims are 1 */
    uint64_t nbytes;                 /* = element size x prod(shape) */
    uint64_t offset;                 /* absolute byte offset in the shard file */
    const void *data;                /* [nbytes], alignment only as the file gives it */
    const char *shard;               /* path of the shard file (owned by the qn_st) */
} qn_st_tensor;

typedef struct qn_st qn_st;

/* --- lifecycle --- */
/* path: a .safetensors file; a model.safetensors.index.json; or a directory holding either
 * model.safetensors.index.json or model.safetensors. */
qn_status qn_st_open(const char *path, qn_st **out, qn_error *err);
/* Parses one in-memory safetensors image (no copy; buf must outlive the object). Tests and fuzzing. */
qn_status qn_st_open_memory(const void *buf, size_t len, const char *label, qn_st **out, qn_error *err);
void qn_st_close(qn_st *st); /* NULL is a no-op */

/* --- tensors (file order; for shards, shard by shard in the order weight_map first names them) --- */
int64_t qn_st_n_tensors(const qn_st *st);
const qn_st_tensor *qn_st_tensor_at(const qn_st *st, int64_t i);   /* NULL if out of range */
const qn_st_tensor *qn_st_find(const qn_st *st, const char *name); /* NULL if absent */

/* --- shards --- */
int64_t qn_st_n_shards(const qn_st *st);
const char *qn_st_shard_path(const qn_st *st, int64_t i);
const char *qn_st_path(const qn_st *st); /* the path (or label) given to open */

/* --- __metadata__ (string -> string; merged over shards, first shard wins) --- */
const char *qn_st_metadata(const qn_st *st, const char *key); /* NULL if absent */
int64_t qn_st_n_metadata(const qn_st *st);
/* i-th entry in file order; returns 0 and sets *key, *val, or -1 if out of range. */
int qn_st_metadata_at(const qn_st *st, int64_t i, const char **key, const char **val);

/* --- dtypes --- */
const char *qn_st_dtype_name(qn_st_dtype d); /* "F16", ... */
size_t qn_st_dtype_size(qn_st_dtype d);      /* bytes per element; 0 if out of range */

#ifdef __cplusplus
}
#endif
#endif
