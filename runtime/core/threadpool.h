/* threadpool.h — a fixed pool of CPU worker threads for the CPU path.
 * Owns: n-1 pthreads (the caller is worker 0). qn_threadpool_run runs fn(arg, ith, nth) on every
 * worker and returns when all are done (a fork-join barrier). Workers spin briefly between jobs
 * (decode issues hundreds of short jobs per token) and sleep on a condition variable when idle.
 * Only one thread may call run at a time. */
#ifndef QN_THREADPOOL_H
#define QN_THREADPOOL_H

#include "quern.h"

typedef void (*qn_task_fn)(void *arg, int ith, int nth);

typedef struct qn_threadpool qn_threadpool;

/* --- lifecycle --- */
qn_status qn_threadpool_create(int n_threads, qn_threadpool **out, qn_error *err);
void qn_threadpool_destroy(qn_threadpool *tp); /* NULL is a no-op */

/* --- use --- */
int qn_threadpool_size(const qn_threadpool *tp);
void qn_threadpool_run(qn_threadpool *tp, qn_task_fn fn, void *arg);

/* Splits [0, n) into nth near-equal chunks; writes worker ith's [*begin, *end). */
static inline void qn_split_range(long long n, int ith, int nth, long long *begin, long long *end) {
    const long long per = (n + nth - 1) / nth;
    long long b = per * ith, e = b + per;
    if (b > n) b = n;
    if (e > n) e = n;
    *begin = b;
    *end = e;
}

#endif
