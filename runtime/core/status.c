/* status.c — names of qn_status codes and the qn_error helpers declared in quern.h. */
#include "quern.h"

#include <stdio.h>
#include <string.h>

const char *qn_status_str(qn_status s) {
    switch (s) {
    case QN_OK: return "ok";
    case QN_ERR_INVALID_ARG: return "invalid argument";
    case QN_ERR_NOMEM: return "out of host memory";
    case QN_ERR_IO: return "i/o error";
    case QN_ERR_FORMAT: return "malformed file";
    case QN_ERR_UNSUPPORTED: return "unsupported";
    case QN_ERR_SHAPE: return "unsupported shape";
    case QN_ERR_CUDA: return "cuda error";
    case QN_ERR_KV_FULL: return "kv cache full";
    case QN_ERR_NOT_FOUND: return "not found";
    case QN_ERR_OVERFLOW: return "size overflow";
    case QN_ERR_CONTEXT: return "exceeds context";
    case QN_ERR_BUSY: return "busy";
    case QN_ERR_NO_DEVICE: return "no gpu device";
    case QN_ERR_DEVICE_OOM: return "out of gpu memory";
    case QN_ERR_ABORTED: return "aborted";
    case QN_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

qn_status qn_error_set(qn_error *err, qn_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void qn_error_clear(qn_error *err) {
    if (err) {
        err->code = QN_OK;
        err->msg[0] = '\0';
    }
}
