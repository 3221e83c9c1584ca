/* safetensors_write.h — safetensors writer (docs/formats.md §0) for `quern export-hf` and the tests.
 * Owns: the tensor table (names copied) and the __metadata__ strings; during a write, the output
 * file "<path>.tmp" (renamed to path when complete, removed on any error) and one tensor-sized
 * buffer. Not: tensor data, which the caller's fill callback produces one tensor at a time, so a
 * large model never sits in memory. Layout follows the reference writer: header keys sorted, the
 * JSON padded with spaces to a multiple of 8, data in the order of the sorted names, no holes. */
#ifndef QN_SAFETENSORS_WRITE_H
#define QN_SAFETENSORS_WRITE_H

#include <stdint.h>

#include "model/safetensors.h"

typedef struct qn_st_writer qn_st_writer;

/* Produces the nbytes of tensor `name` (row-major, little-endian) into dst. */
typedef qn_status (*qn_st_fill_fn)(void *ud, const char *name, void *dst, uint64_t nbytes, qn_error *err);

/* --- lifecycle --- */
qn_status qn_st_writer_create(qn_st_writer **out, qn_error *err);
void qn_st_writer_destroy(qn_st_writer *w); /* NULL is a no-op */

/* --- contents --- */
qn_status qn_st_writer_add_metadata(qn_st_writer *w, const char *key, const char *val, qn_error *err);
/* shape in PyTorch order (shape[n_dims-1] contiguous), n_dims 0..QN_ST_MAX_DIMS; names unique. */
qn_status qn_st_writer_add(qn_st_writer *w, const char *name, qn_st_dtype dtype, uint32_t n_dims,
                           const int64_t *shape, qn_error *err);

/* --- output --- */
qn_status qn_st_writer_write_file(const qn_st_writer *w, const char *path, qn_st_fill_fn fill, void *ud,
                                  qn_error *err);

#endif
