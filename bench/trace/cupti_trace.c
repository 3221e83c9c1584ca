/* cupti_trace.c — where a CUDA-graph step's time goes, kernel by kernel, on machines where Nsight Systems
 * makes no report (the device machines: .library/device/KINDS.md) and Nsight Compute serialises kernels.
 * A CUDA injection library: the driver loads it from CUDA_INJECTION64_PATH and calls
 * InitializeInjection(); it records every kernel's start and end through CUPTI's activity API
 * (CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, graph-launched kernels included, timestamps in ns) and at exit
 * prints to stderr, for every CUDA graph it saw:
 *   replays, mean span (first start to last end), mean busy (sum of kernel durations) and idle (the rest);
 *   per graph node kind (kernel name): launches per replay, mean duration, mean gap before it (start minus
 *   the previous kernel's end in the same replay).
 * QN_TRACE_CSV=FILE also writes every kernel record (start_ns,end_ns,graph_id,node_id,name).
 * QN_TRACE_SKIP=K drops the first K replays of each graph (warm-up; default 2).
 * QN_TRACE_MEMCPY=1 records memory copies too ("memcpy HtoD", ... as graph 0 in the CSV): what fills, or
 * does not fill, the idle time between kernels.
 * Build and use: bench/trace/cupti_trace.sh (finds CUPTI under the CUDA toolkit or a pip wheel).
 * Owns nothing of quern's; no quern code links it. */
#define _GNU_SOURCE
#include <cupti_activity.h> /* not cupti.h: it pulls runtime-API metadata tied to one toolkit version */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The leading fields of CUPTI's kernel activity record: the same in every CUpti_ActivityKernelN since 4
 * (the header's newest name changes with the CUPTI version; these offsets do not). Read through this. */
typedef struct tr_kernel_prefix {
    CUpti_ActivityKind kind;
    uint8_t cache_config, smem_config;
    uint16_t registers;
    uint32_t pgc_requested, pgc_executed;
    uint64_t start, end, completed;
    uint32_t device_id, context_id, stream_id;
    int32_t grid[3], block[3];
    int32_t static_smem, dynamic_smem;
    uint32_t local_per_thread, local_total;
    uint32_t correlation_id;
    int64_t grid_id;
    const char *name;
} tr_kernel_prefix;

/* The leading fields of CUPTI's memcpy activity record (the same in every CUpti_ActivityMemcpyN). */
typedef struct tr_memcpy_prefix {
    CUpti_ActivityKind kind;
    uint8_t copy_kind, src_kind, dst_kind, flags;
    uint64_t bytes, start, end;
} tr_memcpy_prefix;

typedef struct tr_rec {
    uint64_t start, end;
    uint32_t graph_id;
    uint64_t node_id;
    int name; /* index into tr_names */
} tr_rec;

/* everything the library holds, in one place (the injection API gives no user pointer) */
static struct {
    tr_rec *recs;
    size_t n, cap;
    char **names;
    const char **name_keys;
    int n_names, cap_names;
    int failed;
} T;

static int tr_name(const char *p) {
    for (int i = 0; i < T.n_names; i++) /* few distinct kernels: a scan is enough */
        if (T.name_keys[i] == p || strcmp(T.names[i], p) == 0) return i;
    if (T.n_names == T.cap_names) {
        T.cap_names = T.cap_names ? 2 * T.cap_names : 64;
        T.names = realloc(T.names, sizeof *T.names * (size_t)T.cap_names);
        T.name_keys = realloc(T.name_keys, sizeof *T.name_keys * (size_t)T.cap_names);
        if (!T.names || !T.name_keys) abort();
    }
    T.names[T.n_names] = strdup(p ? p : "?");
    T.name_keys[T.n_names] = p;
    return T.n_names++;
}

static void tr_push(tr_rec r) {
    if (T.n == T.cap) {
        T.cap = T.cap ? 2 * T.cap : 1u << 16;
        T.recs = realloc(T.recs, sizeof *T.recs * T.cap);
        if (!T.recs) abort();
    }
    T.recs[T.n++] = r;
}

static void CUPTIAPI tr_buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    *size = 8u << 20;
    *buffer = aligned_alloc(8, *size);
    *max_records = 0;
    if (!*buffer) *size = 0;
}

static void CUPTIAPI tr_buffer_completed(CUcontext ctx, uint32_t stream_id, uint8_t *buffer, size_t size,
                                         size_t valid) {
    (void)ctx, (void)stream_id, (void)size;
    CUpti_Activity *r = NULL;
    while (cuptiActivityGetNextRecord(buffer, valid, &r) == CUPTI_SUCCESS) {
        if (r->kind == CUPTI_ACTIVITY_KIND_MEMCPY) { /* QN_TRACE_MEMCPY=1: copies as records of graph 0 */
            const tr_memcpy_prefix *m = (const tr_memcpy_prefix *)r;
            static const char *const kinds[] = {"memcpy ?", "memcpy HtoD", "memcpy DtoH", "memcpy HtoA",
                                                "memcpy AtoH", "memcpy AtoA", "memcpy AtoD", "memcpy DtoA",
                                                "memcpy DtoD", "memcpy HtoH", "memcpy PtoP"};
            tr_push((tr_rec){m->start, m->end, 0, 0, tr_name(kinds[m->copy_kind < 11 ? m->copy_kind : 0])});
            continue;
        }
        if (r->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && r->kind != CUPTI_ACTIVITY_KIND_KERNEL) continue;
        const tr_kernel_prefix *k = (const tr_kernel_prefix *)r;
        /* graphNodeId and graphId came with version 5 of the record; later versions append past them */
        const CUpti_ActivityKernel5 *kg = (const CUpti_ActivityKernel5 *)r;
        const uint32_t graph_id = kg->graphId;
        const uint64_t node_id = kg->graphNodeId;
        tr_push((tr_rec){k->start, k->end, graph_id, node_id, tr_name(k->name)});
    }
    free(buffer);
}

static int tr_by_start(const void *a, const void *b) {
    const tr_rec *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* per (graph, kernel name) sums over the replays kept */
typedef struct tr_acc {
    double dur, gap;
    long count;
} tr_acc;

static void tr_report_graph(uint32_t gid, const tr_rec *r, size_t n, int skip) {
    /* a replay starts at every record of the graph's first node */
    const uint64_t first_node = r[0].node_id;
    tr_acc *acc = calloc((size_t)T.n_names, sizeof *acc);
    if (!acc) return;
    long replays = 0, seen = -1;
    double span = 0, busy = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i + 1;
        while (j < n && r[j].node_id != first_node) j++;
        seen++;
        if (seen >= skip) {
            replays++;
            span += (double)(r[j - 1].end - r[i].start);
            for (size_t k = i; k < j; k++) {
                busy += (double)(r[k].end - r[k].start);
                tr_acc *a = &acc[r[k].name];
                a->dur += (double)(r[k].end - r[k].start);
                if (k > i) a->gap += (double)r[k].start - (double)r[k - 1].end;
                a->count++;
            }
        }
        i = j;
    }
    if (replays == 0) {
        free(acc);
        return;
    }
    fprintf(stderr, "cupti_trace: graph %u: %ld replays (first %d skipped), %zu kernels per replay; mean span %.1f us, "
                    "busy %.1f us, idle %.1f us\n",
            gid, replays, skip, n / (size_t)(seen + 1), span / replays / 1e3, busy / replays / 1e3,
            (span - busy) / replays / 1e3);
    fprintf(stderr, "  %-10s %10s %10s %12s  %s\n", "per replay", "mean us", "gap us", "us/replay", "kernel");
    for (int m = 0; m < T.n_names; m++) {
        if (!acc[m].count) continue;
        fprintf(stderr, "  %-10.1f %10.2f %10.2f %12.1f  %.100s\n", (double)acc[m].count / replays,
                acc[m].dur / acc[m].count / 1e3, acc[m].gap / acc[m].count / 1e3, acc[m].dur / replays / 1e3,
                T.names[m]);
    }
    free(acc);
}

static void tr_report(void) {
    cuptiActivityFlushAll(1);
    if (T.failed || T.n == 0) {
        fprintf(stderr, "cupti_trace: no kernel records%s\n", T.failed ? " (CUPTI setup failed)" : "");
        return;
    }
    qsort(T.recs, T.n, sizeof *T.recs, tr_by_start);
    const char *csv = getenv("QN_TRACE_CSV");
    if (csv) {
        FILE *f = fopen(csv, "w");
        if (f) {
            fprintf(f, "start_ns,end_ns,graph_id,node_id,name\n");
            for (size_t i = 0; i < T.n; i++)
                fprintf(f, "%llu,%llu,%u,%llu,%s\n", (unsigned long long)T.recs[i].start,
                        (unsigned long long)T.recs[i].end, T.recs[i].graph_id, (unsigned long long)T.recs[i].node_id,
                        T.names[T.recs[i].name]);
            fclose(f);
        }
    }
    const int skip = getenv("QN_TRACE_SKIP") ? atoi(getenv("QN_TRACE_SKIP")) : 2;
    /* graphs one by one: gather each graph's records (start order) */
    tr_rec *g = malloc(sizeof *g * T.n);
    if (!g) return;
    size_t n_plain = 0;
    for (size_t i = 0; i < T.n; i++) n_plain += T.recs[i].graph_id == 0;
    fprintf(stderr, "cupti_trace: %zu kernel records, %zu outside graphs\n", T.n, n_plain);
    uint32_t ids[64]; /* the graphs, in order of first launch (a run captures a handful) */
    int n_ids = 0;
    for (size_t i = 0; i < T.n && n_ids < 64; i++) {
        const uint32_t gid = T.recs[i].graph_id;
        int k = 0;
        while (k < n_ids && ids[k] != gid) k++;
        if (gid != 0 && k == n_ids) ids[n_ids++] = gid;
    }
    for (int k = 0; k < n_ids; k++) {
        size_t n = 0;
        for (size_t i = 0; i < T.n; i++)
            if (T.recs[i].graph_id == ids[k]) g[n++] = T.recs[i];
        tr_report_graph(ids[k], g, n, skip);
    }
    free(g);
}

int InitializeInjection(void); /* the driver's entry point for CUDA_INJECTION64_PATH */

int InitializeInjection(void) {
    if (cuptiActivityRegisterCallbacks(tr_buffer_requested, tr_buffer_completed) != CUPTI_SUCCESS ||
        cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS ||
        (getenv("QN_TRACE_MEMCPY") && cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY) != CUPTI_SUCCESS)) {
        T.failed = 1;
        fprintf(stderr, "cupti_trace: CUPTI activity setup failed\n");
    }
    atexit(tr_report);
    return 1;
}
