/* bench_allreduce.c — all-reduce latency and bandwidth of the TP communicators, 4 KiB .. 64 MiB.
 *   bench_allreduce [--ranks N] [--iters K]          CPU communicator, N threads (default 2)
 *   bench_allreduce --nccl [--ranks N] [--iters K]   NCCL, one thread per GPU (CUDA + NCCL builds); N
 *                                                    defaults to the visible GPUs (1 GPU: the one-rank
 *                                                    NCCL path, a device-local copy; busbw is 0 by definition)
 * Prints one JSON line per size: median/min µs per all-reduce, algbw = bytes / time and
 * busbw = algbw * 2(N-1)/N (nccl-tests' definitions, so the two are comparable). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "bench.h"
#include "tp/comm.h"

#if defined(QN_HAVE_NCCL) && defined(QN_HAVE_CUDA)
#include <cuda_runtime_api.h>
#define HAVE_GPU_COMM 1
#endif

#define MAX_RANKS 16
#define MAX_SAMPLES 200

typedef struct shared {
    int nccl, ranks, iters;
    size_t n; /* floats */
    qn_tp_cpu_group *group;
    qn_tp_unique_id id;
    double t_us[MAX_SAMPLES]; /* rank 0's timings */
    int n_samples;
    int failed;
} shared;

typedef struct rank_arg {
    shared *sh;
    int rank;
    qn_tp_comm *c;
} rank_arg;

static void *rank_main(void *p) {
    rank_arg *a = p;
    shared *sh = a->sh;
    float *buf = NULL;
    void *stream = NULL;
#ifdef HAVE_GPU_COMM
    if (sh->nccl) {
        cudaSetDevice(a->rank);
        if (cudaMalloc((void **)&buf, sh->n * sizeof(float)) != cudaSuccess ||
            cudaMemset(buf, 0, sh->n * sizeof(float)) != cudaSuccess) {
            sh->failed = 1;
            return NULL;
        }
        cudaStreamCreateWithFlags((cudaStream_t *)&stream, cudaStreamNonBlocking);
    }
#endif
    if (!sh->nccl) {
        buf = malloc(sh->n * sizeof(float));
        for (size_t i = 0; i < sh->n; i++) buf[i] = 1e-3f * (float)(i % 97);
    }
    /* 5 warm-up calls, then samples of `iters` back-to-back calls; a barrier aligns the ranks */
    for (int s = -5; s < sh->n_samples; s++) {
        qn_tp_comm_barrier(a->c);
        const double t0 = qn_bench_now_s();
        const int reps = s < 0 ? 1 : sh->iters;
        for (int k = 0; k < reps; k++)
            if (qn_tp_comm_all_reduce_sum_f32(a->c, buf, sh->n, stream) != QN_OK) sh->failed = 1;
#ifdef HAVE_GPU_COMM
        if (sh->nccl) cudaStreamSynchronize((cudaStream_t)stream);
#endif
        const double t1 = qn_bench_now_s();
        if (s >= 0 && a->rank == 0) sh->t_us[s] = (t1 - t0) * 1e6 / reps;
    }
#ifdef HAVE_GPU_COMM
    if (sh->nccl) {
        cudaStreamDestroy((cudaStream_t)stream);
        cudaFree(buf);
        return NULL;
    }
#endif
    free(buf);
    return NULL;
}

static void *create_main(void *p) { /* NCCL init is collective: each rank creates on its own thread */
    rank_arg *a = p;
    if (qn_tp_comm_nccl_create(&a->sh->id, a->sh->ranks, a->rank, a->rank, &a->c) != QN_OK) a->sh->failed = 1;
    return NULL;
}

int main(int argc, char **argv) {
    shared sh = {.ranks = 2, .iters = 0};
    int ranks_given = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--nccl")) sh.nccl = 1;
        else if (!strcmp(argv[i], "--ranks") && i + 1 < argc) sh.ranks = atoi(argv[++i]), ranks_given = 1;
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) sh.iters = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--nccl] [--ranks N] [--iters K]\n", argv[0]);
            return 2;
        }
    }
    if (sh.ranks < 1 || sh.ranks > MAX_RANKS) {
        fprintf(stderr, "--ranks must be 1..%d\n", MAX_RANKS);
        return 2;
    }
    rank_arg args[MAX_RANKS];
    pthread_t th[MAX_RANKS];
    if (sh.nccl) {
#ifdef HAVE_GPU_COMM
        int n_dev = 0;
        if (!ranks_given && cudaGetDeviceCount(&n_dev) == cudaSuccess && n_dev > 0)
            sh.ranks = n_dev < MAX_RANKS ? n_dev : MAX_RANKS;
        if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev < sh.ranks) {
            fprintf(stderr, "bench_allreduce: %d GPU(s) visible, --ranks %d\n", n_dev, sh.ranks);
            return 1;
        }
        if (qn_tp_nccl_get_unique_id(&sh.id) != QN_OK) {
            fprintf(stderr, "bench_allreduce: ncclGetUniqueId failed\n");
            return 1;
        }
        for (int r = 0; r < sh.ranks; r++) {
            args[r] = (rank_arg){.sh = &sh, .rank = r};
            pthread_create(&th[r], NULL, create_main, &args[r]);
        }
        for (int r = 0; r < sh.ranks; r++) pthread_join(th[r], NULL);
        if (sh.failed) {
            fprintf(stderr, "bench_allreduce: creating the NCCL communicators failed\n");
            return 1;
        }
#else
        fprintf(stderr, "bench_allreduce: built without CUDA + NCCL\n");
        return 1;
#endif
    } else {
        if (qn_tp_cpu_group_create(sh.ranks, &sh.group) != QN_OK) return 1;
        for (int r = 0; r < sh.ranks; r++) {
            args[r] = (rank_arg){.sh = &sh, .rank = r};
            if (qn_tp_comm_cpu_create(sh.group, r, &args[r].c) != QN_OK) return 1;
        }
    }
    const int user_iters = sh.iters; /* --iters K holds for every size */
    for (size_t bytes = 4096; bytes <= ((size_t)64 << 20); bytes *= 4) {
        sh.n = bytes / sizeof(float);
        /* enough work per sample to dwarf the clock, few samples for the big sizes on 2 cores */
        const int iters = user_iters > 0 ? user_iters : (bytes <= (1u << 20) ? 50 : (bytes <= (16u << 20) ? 4 : 1));
        sh.iters = iters;
        sh.n_samples = bytes <= (16u << 20) ? 15 : 5;
        for (int r = 0; r < sh.ranks; r++) pthread_create(&th[r], NULL, rank_main, &args[r]);
        for (int r = 0; r < sh.ranks; r++) pthread_join(th[r], NULL);
        if (sh.failed) {
            fprintf(stderr, "bench_allreduce: a collective failed\n");
            return 1;
        }
        double v[MAX_SAMPLES];
        memcpy(v, sh.t_us, sizeof(double) * (size_t)sh.n_samples);
        const double med = qn_bench_median(v, sh.n_samples), mn = v[0];
        const double algbw = (double)bytes / (med * 1e-6) / 1e9;
        const double busbw = algbw * 2.0 * (sh.ranks - 1) / sh.ranks;
        printf("{\"bench\":\"allreduce\",\"comm\":\"%s\",\"ranks\":%d,\"bytes\":%zu,\"median_us\":%.2f,"
               "\"min_us\":%.2f,\"algbw_gbs\":%.3f,\"busbw_gbs\":%.3f,\"iters\":%d,\"samples\":%d}\n",
               sh.nccl ? "nccl" : "cpu", sh.ranks, bytes, med, mn, algbw, busbw, iters, sh.n_samples);
        fflush(stdout);
        sh.iters = 0;
    }
    for (int r = 0; r < sh.ranks; r++) qn_tp_comm_destroy(args[r].c);
    qn_tp_cpu_group_destroy(sh.group);
    return 0;
}
