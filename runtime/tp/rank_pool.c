/* rank_pool.c — tensor-parallel rank threads with a generation-counter hand-off (tp/rank_pool.h). */
#include "tp/rank_pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

typedef struct rank_thread {
    qn_tp_rank_pool *p;
    int rank;
    pthread_t thread;
    bool started;
} rank_thread;

struct qn_tp_rank_pool {
    int n;
    rank_thread *threads; /* [n], [0] unused (the caller) */
    pthread_mutex_t mu;
    pthread_cond_t cv_start, cv_done;
    unsigned long long gen;
    int done;
    bool quit;
    qn_tp_rank_fn fn;
    void *ctx;
};

static void *rank_main(void *arg) {
    rank_thread *t = arg;
    qn_tp_rank_pool *p = t->p;
    unsigned long long seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->cv_start, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->gen;
        const qn_tp_rank_fn fn = p->fn;
        void *ctx = p->ctx;
        pthread_mutex_unlock(&p->mu);
        fn(ctx, t->rank);
        pthread_mutex_lock(&p->mu);
        if (++p->done == p->n - 1) pthread_cond_signal(&p->cv_done);
        pthread_mutex_unlock(&p->mu);
    }
}

qn_status qn_tp_rank_pool_create(int n_ranks, qn_tp_rank_pool **out, qn_error *err) {
    if (n_ranks < 1) return qn_error_set(err, QN_ERR_INVALID_ARG, "tp: %d ranks", n_ranks);
    qn_tp_rank_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->threads = calloc((size_t)n_ranks, sizeof *p->threads))) {
        free(p);
        return qn_error_set(err, QN_ERR_NOMEM, "tp: out of memory");
    }
    p->n = n_ranks;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_start, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    for (int r = 1; r < n_ranks; r++) {
        rank_thread *t = &p->threads[r];
        t->p = p, t->rank = r;
        if (pthread_create(&t->thread, NULL, rank_main, t) != 0) {
            qn_tp_rank_pool_destroy(p);
            return qn_error_set(err, QN_ERR_INTERNAL, "tp: cannot start the thread of rank %d", r);
        }
        t->started = true;
    }
    *out = p;
    return QN_OK;
}

void qn_tp_rank_pool_destroy(qn_tp_rank_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->cv_start);
    pthread_mutex_unlock(&p->mu);
    for (int r = 1; r < p->n; r++)
        if (p->threads[r].started) pthread_join(p->threads[r].thread, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_start);
    pthread_cond_destroy(&p->cv_done);
    free(p->threads);
    free(p);
}

void qn_tp_rank_pool_run(qn_tp_rank_pool *p, qn_tp_rank_fn fn, void *ctx) {
    if (p->n > 1) {
        pthread_mutex_lock(&p->mu);
        p->fn = fn, p->ctx = ctx, p->done = 0;
        p->gen++;
        pthread_cond_broadcast(&p->cv_start);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0);
    if (p->n > 1) {
        pthread_mutex_lock(&p->mu);
        while (p->done < p->n - 1) pthread_cond_wait(&p->cv_done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

int qn_tp_rank_pool_size(const qn_tp_rank_pool *p) { return p->n; }
