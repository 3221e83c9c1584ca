/* comm_nccl.c — the NCCL communicator: one ncclComm_t per rank (one GPU each), created from a unique
 * id that rank 0 made and bootstrap.c handed to the others. Pointers are device pointers and `stream`
 * is the caller's cudaStream_t; collectives are enqueued, not waited for (NCCL semantics).
 * Built only with CUDA + NCCL; comm.c supplies QN_ERR_UNSUPPORTED stand-ins otherwise. */
#if defined(QN_HAVE_NCCL) && defined(QN_HAVE_CUDA)

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <nccl.h>

#include "kernels/common/cuda_check.h"
#include "tp/comm.h"

static_assert(sizeof(ncclUniqueId) == QN_TP_UNIQUE_ID_BYTES, "ncclUniqueId size");

/* ncclResult_t through the one generator (style.md §3.4); cuda_check.h covers cudart and cuBLAS. */
#define QN_NCCL_TRY(call) QN_CUDA_TRY_GEN(call, ncclResult_t, ncclSuccess, ncclGetErrorString)
#define QN_NCCL_TRY_GOTO(call, st, label) \
    QN_CUDA_TRY_GEN_GOTO(call, ncclResult_t, ncclSuccess, ncclGetErrorString, st, label)

typedef struct qn_tp_comm_nccl {
    qn_tp_comm base; /* must be first */
    ncclComm_t comm;
    int device;
    float *d_scratch;     /* [1] device float for the barrier's all-reduce */
    cudaStream_t barrier_stream;
} qn_tp_comm_nccl;

static qn_status nccl_all_reduce(qn_tp_comm *c, float *buf, size_t n, void *stream) {
    qn_tp_comm_nccl *nc = (qn_tp_comm_nccl *)c;
    QN_NCCL_TRY(ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, nc->comm, (cudaStream_t)stream));
    return QN_OK;
}

static qn_status nccl_all_gather(qn_tp_comm *c, const float *send, float *recv, size_t n, void *stream) {
    qn_tp_comm_nccl *nc = (qn_tp_comm_nccl *)c;
    QN_NCCL_TRY(ncclAllGather(send, recv, n, ncclFloat32, nc->comm, (cudaStream_t)stream));
    return QN_OK;
}

static qn_status nccl_broadcast(qn_tp_comm *c, void *buf, size_t n_bytes, int root, void *stream) {
    qn_tp_comm_nccl *nc = (qn_tp_comm_nccl *)c;
    QN_NCCL_TRY(ncclBroadcast(buf, buf, n_bytes, ncclUint8, root, nc->comm, (cudaStream_t)stream));
    return QN_OK;
}

/* NCCL has no barrier: a 1-element all-reduce that every rank waits for on the host. */
static qn_status nccl_barrier(qn_tp_comm *c) {
    qn_tp_comm_nccl *nc = (qn_tp_comm_nccl *)c;
    QN_CUDA_TRY(cudaSetDevice(nc->device));
    QN_NCCL_TRY(ncclAllReduce(nc->d_scratch, nc->d_scratch, 1, ncclFloat32, ncclSum, nc->comm,
                              nc->barrier_stream));
    QN_CUDA_TRY(cudaStreamSynchronize(nc->barrier_stream));
    return QN_OK;
}

static void nccl_destroy(qn_tp_comm *c) {
    qn_tp_comm_nccl *nc = (qn_tp_comm_nccl *)c;
    cudaSetDevice(nc->device);
    if (nc->comm) ncclCommDestroy(nc->comm);
    if (nc->barrier_stream) cudaStreamDestroy(nc->barrier_stream);
    if (nc->d_scratch) cudaFree(nc->d_scratch);
    free(nc);
}

static const qn_tp_comm_ops QN_TP_COMM_NCCL_OPS = {
    .name = "nccl",
    .all_reduce_sum_f32 = nccl_all_reduce,
    .all_gather_f32 = nccl_all_gather,
    .broadcast = nccl_broadcast,
    .barrier = nccl_barrier,
    .destroy = nccl_destroy,
};

qn_status qn_tp_nccl_get_unique_id(qn_tp_unique_id *id) {
    if (!id) return QN_ERR_INVALID_ARG;
    ncclUniqueId u;
    QN_NCCL_TRY(ncclGetUniqueId(&u));
    memcpy(id->bytes, u.internal, QN_TP_UNIQUE_ID_BYTES);
    return QN_OK;
}

qn_status qn_tp_comm_nccl_create(const qn_tp_unique_id *id, int size, int rank, int device, qn_tp_comm **out) {
    if (!out) return QN_ERR_INVALID_ARG;
    *out = NULL;
    if (!id || size < 1 || rank < 0 || rank >= size || device < 0) return QN_ERR_INVALID_ARG;
    qn_status st = QN_OK;
    qn_tp_comm_nccl *nc = calloc(1, sizeof *nc);
    if (!nc) return QN_ERR_NOMEM;
    nc->base.ops = &QN_TP_COMM_NCCL_OPS;
    nc->base.rank = rank;
    nc->base.size = size;
    nc->device = device;

    ncclUniqueId u;
    memcpy(u.internal, id->bytes, QN_TP_UNIQUE_ID_BYTES);
    QN_CUDA_TRY_GOTO(cudaSetDevice(device), st, err_free);
    /* The one device allocation outside core/arena: 4 bytes, once per communicator. */
    QN_CUDA_TRY_GOTO(cudaMalloc((void **)&nc->d_scratch, sizeof(float)), st, err_free);
    QN_CUDA_TRY_GOTO(cudaMemset(nc->d_scratch, 0, sizeof(float)), st, err_scratch);
    QN_CUDA_TRY_GOTO(cudaStreamCreateWithFlags(&nc->barrier_stream, cudaStreamNonBlocking), st, err_scratch);
    QN_NCCL_TRY_GOTO(ncclCommInitRank(&nc->comm, size, u, rank), st, err_stream);
    *out = &nc->base;
    return QN_OK;

err_stream:
    cudaStreamDestroy(nc->barrier_stream);
err_scratch:
    cudaFree(nc->d_scratch);
err_free:
    free(nc);
    return st;
}

#else
/* ISO C forbids an empty translation unit. */
typedef int qn_tp_comm_nccl_unused;
#endif /* QN_HAVE_NCCL && QN_HAVE_CUDA */
