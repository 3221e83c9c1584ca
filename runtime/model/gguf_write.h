/* gguf_write.h — GGUF v3 (or v2) writer (docs/formats.md §1), for `quern convert` and the tests.
 * Owns: serialized copies of every key/value and tensor name, and the output file of a stream. Not:
 * tensor data, which is borrowed and must stay valid until the write call (or, when streaming, is
 * handed over piece by piece). Output follows the Python writer: metadata, tensor infos, zero
 * padding to the alignment, then the tensors in info order, each padded to the alignment. */
#ifndef QN_GGUF_WRITE_H
#define QN_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qn_gguf_writer qn_gguf_writer;

/* --- lifecycle --- */
qn_status qn_gguf_writer_create(qn_gguf_writer **out, qn_error *err);
void qn_gguf_writer_destroy(qn_gguf_writer *w); /* NULL is a no-op */
/* 2 or 3 (the default); both share one layout. */
qn_status qn_gguf_writer_set_version(qn_gguf_writer *w, uint32_t version, qn_error *err);

/* --- metadata: keys are unique; a u32 "general.alignment" also sets the padding (power of two) --- */
/* val points at one value of a fixed-size type (not STRING/ARRAY), in host = LE byte order. */
qn_status qn_gguf_writer_add_scalar(qn_gguf_writer *w, const char *key, qn_gguf_type type, const void *val,
                                    qn_error *err);
qn_status qn_gguf_writer_add_u32(qn_gguf_writer *w, const char *key, uint32_t v, qn_error *err);
qn_status qn_gguf_writer_add_i32(qn_gguf_writer *w, const char *key, int32_t v, qn_error *err);
qn_status qn_gguf_writer_add_u64(qn_gguf_writer *w, const char *key, uint64_t v, qn_error *err);
qn_status qn_gguf_writer_add_f32(qn_gguf_writer *w, const char *key, float v, qn_error *err);
qn_status qn_gguf_writer_add_bool(qn_gguf_writer *w, const char *key, bool v, qn_error *err);
qn_status qn_gguf_writer_add_str(qn_gguf_writer *w, const char *key, const char *s, qn_error *err);
/* Numeric or bool array: data = [n] packed elements of type elem. */
qn_status qn_gguf_writer_add_arr(qn_gguf_writer *w, const char *key, qn_gguf_type elem, const void *data,
                                 uint64_t n, qn_error *err);
qn_status qn_gguf_writer_add_arr_str(qn_gguf_writer *w, const char *key, const char *const *strs, uint64_t n,
                                     qn_error *err);
/* Copies record i of a parsed file verbatim (any type, strings with embedded NULs included); key
 * NULL keeps the record's own key. */
qn_status qn_gguf_writer_copy_kv(qn_gguf_writer *w, const qn_gguf *g, int64_t i, const char *key, qn_error *err);

/* --- tensors --- */
/* ne in GGUF order (ne[0] contiguous), n_dims 1..4; data = [nbytes] borrowed, or NULL for zeros. */
qn_status qn_gguf_writer_add_tensor(qn_gguf_writer *w, const char *name, qn_qformat fmt, uint32_t n_dims,
                                    const int64_t *ne, const void *data, qn_error *err);

/* --- output --- */
uint64_t qn_gguf_writer_size(const qn_gguf_writer *w); /* bytes the image will take */
qn_status qn_gguf_writer_write_file(const qn_gguf_writer *w, const char *path, qn_error *err);
/* *buf is malloc'd (caller frees), *len its size. */
qn_status qn_gguf_writer_write_memory(const qn_gguf_writer *w, void **buf, size_t *len, qn_error *err);

/* --- streaming output: files too large to hold in memory (a 16 GB F16 model) ---
 * Add every key and tensor info first (tensor data pointers are ignored), then:
 *   stream_begin  creates "<path>.tmp" and writes header, metadata, tensor infos and padding;
 *   stream_put    appends the next n bytes of tensor data, in info order, in pieces of any size
 *                 (a tensor's padding is written when its last byte arrives);
 *   stream_end    checks that every tensor is complete, flushes, closes and renames the temp file
 *                 to path, so a reader never sees a partial file;
 *   stream_abort  closes and removes the temp file (also done by destroy, and by stream_put /
 *                 stream_end themselves when they fail).
 * Metadata and tensor infos cannot change once the stream has begun. */
qn_status qn_gguf_writer_stream_begin(qn_gguf_writer *w, const char *path, qn_error *err);
qn_status qn_gguf_writer_stream_put(qn_gguf_writer *w, const void *data, uint64_t n, qn_error *err);
qn_status qn_gguf_writer_stream_end(qn_gguf_writer *w, qn_error *err);
void qn_gguf_writer_stream_abort(qn_gguf_writer *w);
/* Tensor the next stream_put byte belongs to (n_tensors once all data is in), for progress. */
uint64_t qn_gguf_writer_stream_tensor(const qn_gguf_writer *w);

#ifdef __cplusplus
}
#endif
#endif
