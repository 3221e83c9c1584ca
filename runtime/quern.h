/* quern.h — the public API of the Quern runtime.
 * Owns: status codes, the error record every fallible call fills, and the engine entry points
 * (create/destroy, submit/poll) that host/ and tools/ use. Kernels include this for qn_status only.
 * Compiles as C11 and under nvcc (extern "C"). */
#ifndef QUERN_H
#define QUERN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- status codes: QN_OK = 0, errors negative, expected outcomes named --- */
typedef enum qn_status {
    QN_OK = 0,
    QN_ERR_INVALID_ARG = -1, /* a caller passed something out of contract */
    QN_ERR_NOMEM = -2,       /* host allocation failed */
    QN_ERR_IO = -3,          /* open/read/mmap/write failed */
    QN_ERR_FORMAT = -4,      /* a file is malformed (bad magic, truncated, out of range) */
    QN_ERR_UNSUPPORTED = -5, /* valid input we do not handle (type, arch, layout) */
    QN_ERR_SHAPE = -6,       /* a kernel cannot take this shape */
    QN_ERR_CUDA = -7,        /* a CUDA / cuBLAS / NCCL call failed */
    QN_ERR_KV_FULL = -8,     /* no free KV blocks: an expected outcome, the scheduler preempts */
    QN_ERR_NOT_FOUND = -9,   /* key, tensor, file or request absent */
    QN_ERR_OVERFLOW = -10,   /* size arithmetic would overflow */
    QN_ERR_CONTEXT = -11,    /* prompt (+ max_tokens) exceeds the context */
    QN_ERR_BUSY = -12,       /* queue full: retry later */
    QN_ERR_NO_DEVICE = -13,  /* no GPU, or driver too old */
    QN_ERR_DEVICE_OOM = -14, /* out of GPU memory */
    QN_ERR_ABORTED = -15,    /* the request was cancelled */
    QN_ERR_INTERNAL = -16,   /* a bug of ours that was caught */
} qn_status;

const char *qn_status_str(qn_status s);

/* --- error record: a status plus a human message naming file, tensor/key and field --- */
typedef struct qn_error {
    qn_status code;
    char msg[512];
} qn_error;

/* Sets err (if non-NULL) and returns code, so a failing path reads `return qn_error_set(...)`. */
qn_status qn_error_set(qn_error *err, qn_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void qn_error_clear(qn_error *err);

#ifdef __cplusplus
}
#endif
#endif /* QUERN_H */
