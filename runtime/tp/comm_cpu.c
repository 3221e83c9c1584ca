/* comm_cpu.c — the in-process CPU communicator: size threads of one process, one group object they
 * share, one qn_tp_comm handle per thread. Each collective publishes the caller's pointer in the group,
 * meets the others at a reusable barrier, and reads the peers' memory directly (no copies in flight).
 * All-reduce is reduce-scatter + all-gather through a group scratch: rank r sums its 1/size of each
 * piece in rank order 0..size-1 (fixed, so bit-identical everywhere), then every rank copies the piece. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "tp/comm.h"

/* Floats per all-reduce piece: 4 MiB of scratch; 2 barriers per piece, so a 64 MiB reduce pays
 * 32 barrier crossings (~tens of us) against ~10 ms of memory traffic. */
#define QN_TP_CPU_PIECE ((size_t)1 << 20)

struct qn_tp_cpu_group {
    int size; /* ranks, fixed at create */

    /* --- barrier: generation counting, reusable; mutex also orders the published arguments --- */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived;  /* ranks waiting in the current generation, < size */
    uint64_t gen; /* bumps when the last rank arrives */

    int refs;      /* creator + live comms; guarded by mu */
    bool *claimed; /* [size] a comm exists for this rank; guarded by mu */

    /* --- per-collective arguments, written by their rank before the first barrier of a call and
     *     read by all ranks only between that barrier and the call's last one --- */
    const void **ptr; /* [size] */
    size_t *n;        /* [size] elements (bytes for broadcast) */
    int *root;        /* [size] */

    float *scratch; /* [QN_TP_CPU_PIECE] reduced piece; written between a piece's two barriers */
};

typedef struct qn_tp_comm_cpu {
    qn_tp_comm base; /* must be first */
    qn_tp_cpu_group *g;
} qn_tp_comm_cpu;

/* ---------------------------------------------------------------- group */

static void group_free(qn_tp_cpu_group *g) {
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g->claimed);
    free(g->ptr);
    free(g->n);
    free(g->root);
    free(g->scratch);
    free(g);
}

qn_status qn_tp_cpu_group_create(int size, qn_tp_cpu_group **out) {
    if (!out) return QN_ERR_INVALID_ARG;
    *out = NULL;
    if (size < 1 || size > 1024) return QN_ERR_INVALID_ARG;
    qn_tp_cpu_group *g = calloc(1, sizeof *g);
    if (!g) return QN_ERR_NOMEM;
    g->size = size;
    g->refs = 1;
    g->claimed = calloc((size_t)size, sizeof *g->claimed);
    g->ptr = calloc((size_t)size, sizeof *g->ptr);
    g->n = calloc((size_t)size, sizeof *g->n);
    g->root = calloc((size_t)size, sizeof *g->root);
    g->scratch = malloc(QN_TP_CPU_PIECE * sizeof *g->scratch);
    if (!g->claimed || !g->ptr || !g->n || !g->root || !g->scratch) {
        free(g->claimed), free(g->ptr), free(g->n), free(g->root), free(g->scratch), free(g);
        return QN_ERR_NOMEM;
    }
    if (pthread_mutex_init(&g->mu, NULL) != 0) goto err_free;
    if (pthread_cond_init(&g->cv, NULL) != 0) goto err_mutex;
    *out = g;
    return QN_OK;

err_mutex:
    pthread_mutex_destroy(&g->mu);
err_free:
    free(g->claimed), free(g->ptr), free(g->n), free(g->root), free(g->scratch), free(g);
    return QN_ERR_INTERNAL;
}

static void group_unref(qn_tp_cpu_group *g) {
    pthread_mutex_lock(&g->mu);
    const int left = --g->refs;
    pthread_mutex_unlock(&g->mu);
    if (left == 0) group_free(g);
}

void qn_tp_cpu_group_destroy(qn_tp_cpu_group *g) {
    if (g) group_unref(g);
}

/* Every rank must call it; returns when all have. */
static void group_barrier(qn_tp_cpu_group *g) {
    if (g->size == 1) return;
    pthread_mutex_lock(&g->mu);
    const uint64_t my_gen = g->gen;
    if (++g->arrived == g->size) {
        g->arrived = 0;
        g->gen++;
        pthread_cond_broadcast(&g->cv);
    } else {
        while (g->gen == my_gen) pthread_cond_wait(&g->cv, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
}

/* After the first barrier of a call: 1 when every rank passed the same n (and root). Every rank
 * computes the same answer, so all take the same path and none is left waiting. */
static bool args_agree(const qn_tp_cpu_group *g, bool check_root) {
    for (int k = 1; k < g->size; k++) {
        if (g->n[k] != g->n[0]) return false;
        if (check_root && g->root[k] != g->root[0]) return false;
    }
    return true;
}

static qn_status mismatch(qn_tp_cpu_group *g, int rank, const char *what) {
    if (rank == 0) QN_LOGE("tp(cpu): %s: ranks passed different sizes or roots", what);
    group_barrier(g); /* nobody republishes until all have read the arguments */
    return QN_ERR_INVALID_ARG;
}

/* ---------------------------------------------------------------- collectives */

static qn_status cpu_all_reduce(qn_tp_comm *c, float *buf, size_t n, void *stream) {
    (void)stream;
    qn_tp_cpu_group *g = ((qn_tp_comm_cpu *)c)->g;
    const int r = c->rank, size = c->size;
    if (size == 1) return QN_OK;
    g->ptr[r] = buf;
    g->n[r] = n;
    group_barrier(g);
    if (!args_agree(g, false)) return mismatch(g, r, "all_reduce_sum_f32");

    for (size_t off = 0; off < n; off += QN_TP_CPU_PIECE) {
        const size_t len = n - off < QN_TP_CPU_PIECE ? n - off : QN_TP_CPU_PIECE;
        const size_t i0 = len * (size_t)r / (size_t)size, i1 = len * (size_t)(r + 1) / (size_t)size;
        const float *src0 = (const float *)g->ptr[0] + off;
        for (size_t i = i0; i < i1; i++) g->scratch[i] = src0[i];
        for (int k = 1; k < size; k++) { /* rank order: the fixed summation order */
            const float *src = (const float *)g->ptr[k] + off;
            for (size_t i = i0; i < i1; i++) g->scratch[i] += src[i];
        }
        group_barrier(g); /* the piece is reduced; every rank has finished reading it */
        memcpy(buf + off, g->scratch, len * sizeof(float));
        group_barrier(g); /* scratch free for the next piece / call */
    }
    return QN_OK;
}

static qn_status cpu_all_gather(qn_tp_comm *c, const float *send, float *recv, size_t n, void *stream) {
    (void)stream;
    qn_tp_cpu_group *g = ((qn_tp_comm_cpu *)c)->g;
    const int r = c->rank, size = c->size;
    g->ptr[r] = send;
    g->n[r] = n;
    group_barrier(g);
    if (!args_agree(g, false)) return mismatch(g, r, "all_gather_f32");
    for (int k = 0; k < size; k++) /* memmove: send may be recv + r*n (in-place gather) */
        memmove(recv + (size_t)k * n, g->ptr[k], n * sizeof(float));
    group_barrier(g); /* peers' send buffers may be reused after this */
    return QN_OK;
}

static qn_status cpu_broadcast(qn_tp_comm *c, void *buf, size_t n_bytes, int root, void *stream) {
    (void)stream;
    qn_tp_cpu_group *g = ((qn_tp_comm_cpu *)c)->g;
    const int r = c->rank;
    if (c->size == 1) return QN_OK;
    g->ptr[r] = buf;
    g->n[r] = n_bytes;
    g->root[r] = root;
    group_barrier(g);
    if (!args_agree(g, true)) return mismatch(g, r, "broadcast");
    if (r != root) memcpy(buf, g->ptr[root], n_bytes);
    group_barrier(g);
    return QN_OK;
}

static qn_status cpu_barrier(qn_tp_comm *c) {
    group_barrier(((qn_tp_comm_cpu *)c)->g);
    return QN_OK;
}

static void cpu_destroy(qn_tp_comm *c) {
    qn_tp_comm_cpu *cc = (qn_tp_comm_cpu *)c;
    qn_tp_cpu_group *g = cc->g;
    pthread_mutex_lock(&g->mu);
    g->claimed[c->rank] = false;
    pthread_mutex_unlock(&g->mu);
    free(cc);
    group_unref(g);
}

static const qn_tp_comm_ops QN_TP_COMM_CPU_OPS = {
    .name = "cpu",
    .all_reduce_sum_f32 = cpu_all_reduce,
    .all_gather_f32 = cpu_all_gather,
    .broadcast = cpu_broadcast,
    .barrier = cpu_barrier,
    .destroy = cpu_destroy,
};

/* ---------------------------------------------------------------- lifecycle */

qn_status qn_tp_comm_cpu_create(qn_tp_cpu_group *g, int rank, qn_tp_comm **out) {
    if (!out) return QN_ERR_INVALID_ARG;
    *out = NULL;
    if (!g || rank < 0 || rank >= g->size) return QN_ERR_INVALID_ARG;
    qn_tp_comm_cpu *cc = calloc(1, sizeof *cc);
    if (!cc) return QN_ERR_NOMEM;
    pthread_mutex_lock(&g->mu);
    if (g->claimed[rank]) {
        pthread_mutex_unlock(&g->mu);
        free(cc);
        QN_LOGE("tp(cpu): rank %d of this group already has a communicator", rank);
        return QN_ERR_INVALID_ARG;
    }
    g->claimed[rank] = true;
    g->refs++;
    pthread_mutex_unlock(&g->mu);
    cc->base.ops = &QN_TP_COMM_CPU_OPS;
    cc->base.rank = rank;
    cc->base.size = g->size;
    cc->g = g;
    *out = &cc->base;
    return QN_OK;
}
