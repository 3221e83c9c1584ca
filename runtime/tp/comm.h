/* comm.h — the tensor-parallel communicator: one qn_tp_comm per rank, a C vtable (redis dictType style)
 * over two implementations: NCCL on GPUs (comm_nccl.c, built with QN_HAVE_NCCL && QN_HAVE_CUDA) and an
 * in-process CPU one (comm_cpu.c: N threads of one process, shared memory, pthread barrier) that runs
 * the TP logic on a machine without GPUs.
 * Owns: the collective calls and each implementation's state. Not: threads (the caller runs one thread
 * per rank), device memory of the tensors, the NCCL unique-id exchange (bootstrap.h).
 * Collectives are called by every rank of the group, in the same order, with the same sizes. */
#ifndef QN_TP_COMM_H
#define QN_TP_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "quern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NCCL's ncclUniqueId is 128 opaque bytes (NCCL_UNIQUE_ID_BYTES); comm_nccl.c checks the size. */
#define QN_TP_UNIQUE_ID_BYTES 128
typedef struct qn_tp_unique_id {
    uint8_t bytes[QN_TP_UNIQUE_ID_BYTES];
} qn_tp_unique_id;

typedef struct qn_tp_comm qn_tp_comm;

/* The vtable. Pointers are host pointers for the CPU implementation and device pointers for NCCL;
 * `stream` is a cudaStream_t for NCCL (NULL = legacy default stream) and ignored by the CPU one.
 * NCCL calls are asynchronous on the stream; CPU calls return when the result is in place. */
typedef struct qn_tp_comm_ops {
    const char *name; /* "cpu", "nccl" */
    /* buf: [n] f32, every rank; on return buf = sum over ranks (in place) */
    qn_status (*all_reduce_sum_f32)(qn_tp_comm *c, float *buf, size_t n, void *stream);
    /* send: [n] f32 per rank; recv: [size * n] f32, rank-major (rank r's send at recv + r*n) */
    qn_status (*all_gather_f32)(qn_tp_comm *c, const float *send, float *recv, size_t n, void *stream);
    /* buf: [n_bytes] on every rank; root's bytes are copied to all others */
    qn_status (*broadcast)(qn_tp_comm *c, void *buf, size_t n_bytes, int root, void *stream);
    /* returns when every rank has entered (NCCL: after a 1-element all-reduce completes on the device) */
    qn_status (*barrier)(qn_tp_comm *c);
    void (*destroy)(qn_tp_comm *c);
} qn_tp_comm_ops;

/* Common head of every implementation (embedded as the first member). */
struct qn_tp_comm {
    const qn_tp_comm_ops *ops;
    int rank; /* 0 <= rank < size */
    int size; /* tp_size, >= 1 */
};

/* --- collectives (thin wrappers: argument checks + the NVTX range "tp.allreduce") --- */
qn_status qn_tp_comm_all_reduce_sum_f32(qn_tp_comm *c, float *buf, size_t n, void *stream);
qn_status qn_tp_comm_all_gather_f32(qn_tp_comm *c, const float *send, float *recv, size_t n, void *stream);
qn_status qn_tp_comm_broadcast(qn_tp_comm *c, void *buf, size_t n_bytes, int root, void *stream);
qn_status qn_tp_comm_barrier(qn_tp_comm *c);

/* --- queries --- */
static inline int qn_tp_comm_rank(const qn_tp_comm *c) { return c->rank; }
static inline int qn_tp_comm_size(const qn_tp_comm *c) { return c->size; }
static inline const char *qn_tp_comm_name(const qn_tp_comm *c) { return c->ops->name; }

/* --- lifecycle --- */
/* Destroys one rank's handle; NULL is a no-op. Not a collective for the CPU implementation. */
void qn_tp_comm_destroy(qn_tp_comm *c);

/* --- CPU implementation: N threads of one process ---
 * Create one group for size ranks, then one comm per rank (each used from its own thread only).
 * The group is reference counted: it lives until qn_tp_cpu_group_destroy and every comm made from
 * it are gone, in any order. Sums are taken in rank order 0..size-1 for every element, so results are
 * bit-identical on every rank and from run to run (not equal to NCCL's ring order). A rank that stops
 * calling collectives blocks the others: there is no timeout. */
typedef struct qn_tp_cpu_group qn_tp_cpu_group;
qn_status qn_tp_cpu_group_create(int size, qn_tp_cpu_group **out);
void qn_tp_cpu_group_destroy(qn_tp_cpu_group *g);
qn_status qn_tp_comm_cpu_create(qn_tp_cpu_group *g, int rank, qn_tp_comm **out);

/* --- NCCL implementation (only with QN_HAVE_NCCL && QN_HAVE_CUDA; elsewhere QN_ERR_UNSUPPORTED) ---
 * qn_tp_nccl_get_unique_id: rank 0 calls it once, then hands the id to the others (bootstrap.h).
 * qn_tp_comm_nccl_create: every rank, collectively (blocks until all size ranks have joined);
 * selects `device` with cudaSetDevice on the calling thread and allocates a 4-byte device scratch
 * for the barrier. */
qn_status qn_tp_nccl_get_unique_id(qn_tp_unique_id *id);
qn_status qn_tp_comm_nccl_create(const qn_tp_unique_id *id, int size, int rank, int device, qn_tp_comm **out);

#ifdef __cplusplus
}
#endif
#endif /* QN_TP_COMM_H */
