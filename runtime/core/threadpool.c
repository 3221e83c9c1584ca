/* threadpool.c — fork-join pool: a generation counter publishes each job; workers spin on it for
 * a short while (jobs arrive every few microseconds during decode) and then block on a condvar. */
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define QN_TP_SPIN 20000 /* spins before sleeping: ~tens of µs, longer than a decode op gap */

struct qn_threadpool {
    int n;                       /* workers including the caller */
    pthread_t *threads;          /* [n-1] */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;             /* bumped once per job; workers run when it changes */
    atomic_int n_done;           /* workers (other than 0) finished with the current job */
    atomic_int stop;
    qn_task_fn fn;               /* current job, valid while a run is in flight */
    void *arg;
};

typedef struct worker_arg {
    qn_threadpool *tp;
    int ith;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    free(p);
    qn_threadpool *tp = wa.tp;
    unsigned seen = 0; /* gen starts at 0 before any worker exists, so no job can be missed */
    for (;;) {
        int spins = 0;
        unsigned g;
        while ((g = atomic_load_explicit(&tp->gen, memory_order_acquire)) == seen &&
               !atomic_load(&tp->stop)) {
            if (++spins < QN_TP_SPIN) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&tp->mu);
            while (atomic_load(&tp->gen) == seen && !atomic_load(&tp->stop)) pthread_cond_wait(&tp->cv, &tp->mu);
            pthread_mutex_unlock(&tp->mu);
        }
        if (atomic_load(&tp->stop)) break;
        seen = g;
        tp->fn(tp->arg, wa.ith, tp->n);
        atomic_fetch_add_explicit(&tp->n_done, 1, memory_order_release);
    }
    return NULL;
}

qn_status qn_threadpool_create(int n_threads, qn_threadpool **out, qn_error *err) {
    if (n_threads < 1 || n_threads > 1024) return qn_error_set(err, QN_ERR_INVALID_ARG, "threads: %d out of range 1..1024", n_threads);
    qn_threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return qn_error_set(err, QN_ERR_NOMEM, "threadpool: out of memory");
    tp->n = n_threads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    atomic_init(&tp->gen, 0);
    atomic_init(&tp->n_done, 0);
    atomic_init(&tp->stop, 0);
    tp->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (!tp->threads) {
        free(tp);
        return qn_error_set(err, QN_ERR_NOMEM, "threadpool: out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->tp = tp;
            wa->ith = i;
        }
        if (!wa || pthread_create(&tp->threads[i - 1], NULL, worker_main, wa) != 0) {
            free(wa);
            tp->n = i; /* destroy joins the ones started */
            qn_threadpool_destroy(tp);
            return qn_error_set(err, QN_ERR_INTERNAL, "threadpool: cannot start thread %d", i);
        }
    }
    *out = tp;
    return QN_OK;
}

void qn_threadpool_destroy(qn_threadpool *tp) {
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->stop, 1);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 1; i < tp->n; i++) pthread_join(tp->threads[i - 1], NULL);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->cv);
    free(tp->threads);
    free(tp);
}

int qn_threadpool_size(const qn_threadpool *tp) { return tp->n; }

void qn_threadpool_run(qn_threadpool *tp, qn_task_fn fn, void *arg) {
    if (tp->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    atomic_store_explicit(&tp->n_done, 0, memory_order_relaxed);
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add_explicit(&tp->gen, 1, memory_order_release);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    fn(arg, 0, tp->n);
    int spins = 0;
    while (atomic_load_explicit(&tp->n_done, memory_order_acquire) < tp->n - 1) {
        if (++spins < QN_TP_SPIN)
            cpu_relax();
        else
            sched_yield(); /* oversubscribed machine: let the straggler run */
    }
}
