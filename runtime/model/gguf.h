/* gguf.h — GGUF v2/v3 reader over a read-only mmap (docs/formats.md §1).
 * Owns: the mapping, the parsed metadata table and the tensor-info table. Tensor data pointers are
 * views into the mapping, valid until qn_gguf_close. Every structural problem (bad magic/version,
 * truncation, offsets or sizes out of range, ne[] overflow, unknown type, duplicate names/keys)
 * is reported as QN_ERR_FORMAT / QN_ERR_UNSUPPORTED with a message naming file, key/tensor, field. */
#ifndef QN_GGUF_H
#define QN_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/quant/qformat.h"
#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qn_gguf_type {
    QN_GGUF_TYPE_UINT8 = 0,
    QN_GGUF_TYPE_INT8 = 1,
    QN_GGUF_TYPE_UINT16 = 2,
    QN_GGUF_TYPE_INT16 = 3,
    QN_GGUF_TYPE_UINT32 = 4,
    QN_GGUF_TYPE_INT32 = 5,
    QN_GGUF_TYPE_FLOAT32 = 6,
    QN_GGUF_TYPE_BOOL = 7,
    QN_GGUF_TYPE_STRING = 8,
    QN_GGUF_TYPE_ARRAY = 9,
    QN_GGUF_TYPE_UINT64 = 10,
    QN_GGUF_TYPE_INT64 = 11,
    QN_GGUF_TYPE_FLOAT64 = 12,
    QN_GGUF_TYPE_COUNT
} qn_gguf_type;

/* A string view into the mapping (not NUL-terminated). */
typedef struct qn_gguf_str {
    const char *ptr;
    uint64_t len;
} qn_gguf_str;

/* A tensor: a view into the mapping. ne[0] is the contiguous dimension (GGUF order). */
typedef struct qn_gguf_tensor {
    qn_gguf_str name;
    qn_qformat fmt;
    uint32_t n_dims;
    int64_t ne[4];      /* missing dims are 1 */
    uint64_t offset;    /* relative to the data section */
    uint64_t nbytes;
    const void *data;   /* [ne[3]][ne[2]][ne[1]][row bytes] */
} qn_gguf_tensor;

typedef struct qn_gguf qn_gguf;

/* --- lifecycle --- */
qn_status qn_gguf_open(const char *path, qn_gguf **out, qn_error *err);
/* Parses an in-memory image (no copy; buf must outlive the object). For tests and the fuzzer. */
qn_status qn_gguf_open_memory(const void *buf, size_t len, const char *label, qn_gguf **out, qn_error *err);
void qn_gguf_close(qn_gguf *g); /* NULL is a no-op */
/* The pages wholly inside [p, p + n) stop counting as this process's memory (madvise MADV_DONTNEED) when they
 * lie in the file mapping of qn_gguf_open: a later read faults them back from the file, unchanged. A no-op for
 * memory images and ranges outside the mapping. For bytes copied elsewhere (the CPU forward's repacked weights). */
void qn_gguf_drop_pages(const qn_gguf *g, const void *p, size_t n);

/* --- file-level queries --- */
const char *qn_gguf_path(const qn_gguf *g);
uint32_t qn_gguf_version(const qn_gguf *g);
uint32_t qn_gguf_alignment(const qn_gguf *g);
uint64_t qn_gguf_file_size(const qn_gguf *g);

uint64_t qn_gguf_data_start(const qn_gguf *g); /* absolute offset of the tensor data section */

/* --- value types --- */
const char *qn_gguf_type_name(qn_gguf_type t); /* "u32", "string", ...; "invalid" when out of range */
size_t qn_gguf_type_size(qn_gguf_type t);      /* bytes of a fixed-size type; 0 for string/array */

/* --- metadata --- */
int64_t qn_gguf_n_kv(const qn_gguf *g);
int64_t qn_gguf_find_key(const qn_gguf *g, const char *key); /* index or -1 */
qn_gguf_str qn_gguf_key(const qn_gguf *g, int64_t i);
qn_gguf_type qn_gguf_kv_type(const qn_gguf *g, int64_t i);
/* Raw value bytes of a fixed-size scalar (LE, may be unaligned); NULL for strings and arrays. */
const void *qn_gguf_kv_data(const qn_gguf *g, int64_t i);
/* The value of a STRING record; empty for other types. */
qn_gguf_str qn_gguf_kv_str(const qn_gguf *g, int64_t i);
/* For arrays: element type and count (type ARRAY itself never nests); COUNT / 0 for non-arrays. */
qn_gguf_type qn_gguf_arr_type(const qn_gguf *g, int64_t i);
uint64_t qn_gguf_arr_n(const qn_gguf *g, int64_t i);
/* Raw element pointer for numeric arrays (LE, packed; may be unaligned: memcpy out). */
const void *qn_gguf_arr_data(const qn_gguf *g, int64_t i);
/* j-th string of a string array. */
qn_gguf_str qn_gguf_arr_str(const qn_gguf *g, int64_t i, uint64_t j);

/* Typed getters by key. Integers of any width/signedness convert when the value fits
 * (QN_ERR_FORMAT naming the key otherwise); QN_ERR_NOT_FOUND when absent (err untouched then,
 * so callers can apply defaults). */
qn_status qn_gguf_get_u32(const qn_gguf *g, const char *key, uint32_t *out, qn_error *err);
qn_status qn_gguf_get_i64(const qn_gguf *g, const char *key, int64_t *out, qn_error *err);
qn_status qn_gguf_get_f32(const qn_gguf *g, const char *key, float *out, qn_error *err); /* f32 or f64 */
qn_status qn_gguf_get_bool(const qn_gguf *g, const char *key, bool *out, qn_error *err);
qn_status qn_gguf_get_str(const qn_gguf *g, const char *key, qn_gguf_str *out, qn_error *err);

/* --- tensors --- */
int64_t qn_gguf_n_tensors(const qn_gguf *g);
const qn_gguf_tensor *qn_gguf_tensor_at(const qn_gguf *g, int64_t i);
const qn_gguf_tensor *qn_gguf_find_tensor(const qn_gguf *g, const char *name); /* NULL if absent */

#ifdef __cplusplus
}
#endif
#endif
