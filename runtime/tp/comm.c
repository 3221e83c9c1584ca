/* comm.c — the implementation-independent side of qn_tp_comm: argument checks, the NVTX range
 * "tp.allreduce" around every collective (issue: profiles show TP communication as one range name),
 * and the QN_ERR_UNSUPPORTED stand-ins for the NCCL entry points in builds without CUDA + NCCL. */
#include "tp/comm.h"

#if defined(QN_HAVE_CUDA) && !defined(NVTX_DISABLE)
#include <nvtx3/nvToolsExt.h>
#define QN_TP_RANGE_PUSH() nvtxRangePushA("tp.allreduce")
#define QN_TP_RANGE_POP() nvtxRangePop()
#else
#define QN_TP_RANGE_PUSH() ((void)0)
#define QN_TP_RANGE_POP() ((void)0)
#endif

/* ---------------------------------------------------------------- collectives */

qn_status qn_tp_comm_all_reduce_sum_f32(qn_tp_comm *c, float *buf, size_t n, void *stream) {
    if (!c || (!buf && n)) return QN_ERR_INVALID_ARG;
    if (n == 0) return QN_OK; /* every rank passes the same n, so every rank skips */
    QN_TP_RANGE_PUSH();
    const qn_status st = c->ops->all_reduce_sum_f32(c, buf, n, stream);
    QN_TP_RANGE_POP();
    return st;
}

qn_status qn_tp_comm_all_gather_f32(qn_tp_comm *c, const float *send, float *recv, size_t n, void *stream) {
    if (!c || ((!send || !recv) && n)) return QN_ERR_INVALID_ARG;
    if (n == 0) return QN_OK;
    QN_TP_RANGE_PUSH();
    const qn_status st = c->ops->all_gather_f32(c, send, recv, n, stream);
    QN_TP_RANGE_POP();
    return st;
}

qn_status qn_tp_comm_broadcast(qn_tp_comm *c, void *buf, size_t n_bytes, int root, void *stream) {
    if (!c || (!buf && n_bytes) || root < 0 || root >= c->size) return QN_ERR_INVALID_ARG;
    if (n_bytes == 0) return QN_OK;
    QN_TP_RANGE_PUSH();
    const qn_status st = c->ops->broadcast(c, buf, n_bytes, root, stream);
    QN_TP_RANGE_POP();
    return st;
}

qn_status qn_tp_comm_barrier(qn_tp_comm *c) {
    if (!c) return QN_ERR_INVALID_ARG;
    QN_TP_RANGE_PUSH();
    const qn_status st = c->ops->barrier(c);
    QN_TP_RANGE_POP();
    return st;
}

void qn_tp_comm_destroy(qn_tp_comm *c) {
    if (c) c->ops->destroy(c);
}

/* ---------------------------------------------------------------- builds without NCCL */

#if !(defined(QN_HAVE_NCCL) && defined(QN_HAVE_CUDA))
qn_status qn_tp_nccl_get_unique_id(qn_tp_unique_id *id) {
    (void)id;
    return QN_ERR_UNSUPPORTED;
}

qn_status qn_tp_comm_nccl_create(const qn_tp_unique_id *id, int size, int rank, int device, qn_tp_comm **out) {
    (void)id, (void)size, (void)rank, (void)device;
    if (out) *out = NULL;
    return QN_ERR_UNSUPPORTED;
}
#endif
