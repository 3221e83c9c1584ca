/* common.c — helpers shared by the subcommands (tools/common.h). */
#include "common.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tokenizer/vocab.h"
#include "tp/bootstrap.h"

static char g_default_model[1024]; /* set once by qn_tool_init_env in main() */
static char g_cache_dir[1024];     /* likewise */

void qn_tool_init_env(void);
void qn_tool_init_env(void) {
    const char *m = getenv("QUERN_MODEL");
    const char *home = getenv("HOME");
    const char *cache = getenv("QN_CACHE");
    if (cache && *cache) snprintf(g_cache_dir, sizeof g_cache_dir, "%s", cache);
    else snprintf(g_cache_dir, sizeof g_cache_dir, "%s/.cache/quern", home ? home : "/root");
    if (m && *m)
        snprintf(g_default_model, sizeof g_default_model, "%s", m);
    else
        snprintf(g_default_model, sizeof g_default_model, "%s/.cache/quern/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                 home ? home : "/root");
}

const char *qn_tool_default_model(void) { return g_default_model; }

const char *qn_tool_cache_dir(void) { return g_cache_dir; }

int qn_tool_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

double qn_tool_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

qn_model *qn_tool_load_model(const char *cmd, const char *path) {
    if (!path) path = qn_tool_default_model();
    qn_model *m = NULL;
    qn_error err = {0};
    if (qn_model_load(path, &m, &err) != QN_OK) {
        fprintf(stderr, "quern %s: %s\n", cmd, err.msg);
        if (access(path, R_OK) != 0 && path == qn_tool_default_model())
            fprintf(stderr, "quern %s: fetch the default model with scripts/fetch_model.sh, or pass -m MODEL\n", cmd);
        return NULL;
    }
    return m;
}

char *qn_tool_read_text(const char *cmd, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "quern %s: cannot open '%s'\n", cmd, path);
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = (n + 65536 + 1) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                fprintf(stderr, "quern %s: out of memory reading '%s'\n", cmd, path);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 65536, f);
        n += r;
        if (r < 65536) break;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

int qn_tool_parse_isa(const char *cmd, const char *name, qn_cpu_isa *out) {
    static const struct { const char *n; qn_cpu_isa isa; } names[] = {
        {"auto", QN_CPU_ISA_AUTO}, {"scalar", QN_CPU_ISA_SCALAR}, {"avx2", QN_CPU_ISA_AVX2},
        {"avx512", QN_CPU_ISA_AVX512}, {"neon", QN_CPU_ISA_NEON},
        {"neon_dotprod", QN_CPU_ISA_NEON_DOTPROD}};
    *out = QN_CPU_ISA_AUTO;
    if (!name) return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i].n)) {
            *out = names[i].isa;
            return 0;
        }
    fprintf(stderr, "quern %s: --isa: unknown ISA '%s' (auto, scalar, avx2, avx512, neon, neon_dotprod)\n", cmd, name);
    return -1;
}

int qn_tool_parse_size(const char *s, int64_t *out) {
    if (!s || !*s) return -1;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || !(v >= 0) || !isfinite(v)) return -1;
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mul = 1024.0, end++; break;
    case 'M': mul = 1024.0 * 1024, end++; break;
    case 'G': mul = 1024.0 * 1024 * 1024, end++; break;
    case 'T': mul = 1024.0 * 1024 * 1024 * 1024, end++; break;
    default: break;
    }
    if (mul > 1 && (*end == 'i' || *end == 'I')) end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
    const double b = v * mul;
    if (b > 9.0e18) return -1;
    *out = (int64_t)b;
    return 0;
}

int qn_tool_check_tp_hosts(const char *cmd, const qn_tool_device_opts *o) {
    if (!o->tp_master) {
        if (o->tp_rank >= 0 || o->tp_local != 0) {
            fprintf(stderr, "quern %s: --tp-rank / --tp-local need --tp-master HOST:PORT (a group that spans "
                            "processes); one process runs all -tp ranks without them\n", cmd);
            return -1;
        }
        return 0;
    }
    /* every process runs the same command and so the same steps (docs/tensor_parallel.md §4): true of
     * perplexity, logits, and of run and bench (one request at a time, sampled the same way from the same
     * all-gathered logits in every process); serve would need rank 0 to send each step's batch */
    if (!strcmp(cmd, "serve")) {
        fprintf(stderr, "quern %s: --tp-master: multi-host tensor parallel is supported by run, bench, perplexity "
                        "and logits, not by serve yet\n", cmd);
        return -1;
    }
    qn_error err = {0};
    qn_tp_master m;
    if (qn_tp_master_parse(o->tp_master, &m, &err) != QN_OK) {
        fprintf(stderr, "quern %s: --tp-master: %s\n", cmd, err.msg);
        return -1;
    }
    qn_device_kind kind = QN_DEVICE_AUTO;
    int ordinal = 0;
    if (o->device && qn_device_parse(o->device, &kind, &ordinal, &err) == QN_OK && kind == QN_DEVICE_CPU) {
        fprintf(stderr, "quern %s: --tp-master is for GPU ranks over NCCL; --device cpu runs every rank in one "
                        "process (drop --tp-master)\n", cmd);
        return -1;
    }
    const int local = o->tp_local > 0 ? o->tp_local : 1;
    if (o->tp_rank < 0) {
        fprintf(stderr, "quern %s: --tp-master needs --tp-rank R (0 on the master's host)\n", cmd);
        return -1;
    }
    if (o->tp_local < 0 || o->tp_rank + local > o->tp) {
        fprintf(stderr, "quern %s: --tp-rank %d --tp-local %d: ranks %d..%d are outside -tp %d (0..%d)\n", cmd,
                o->tp_rank, local, o->tp_rank, o->tp_rank + local - 1, o->tp, o->tp - 1);
        return -1;
    }
    if (local == o->tp) {
        fprintf(stderr, "quern %s: --tp-master with all %d ranks in this process: nothing spans hosts (drop "
                        "--tp-master / --tp-rank / --tp-local)\n", cmd, o->tp);
        return -1;
    }
    return 0;
}

int qn_tool_apply_device(const char *cmd, const qn_tool_device_opts *o, qn_ctx_params *cp) {
    qn_error err = {0};
    if (o->device && qn_device_parse(o->device, &cp->device, &cp->cuda_device, &err) != QN_OK) {
        fprintf(stderr, "quern %s: %s\n", cmd, err.msg);
        return -1;
    }
    cp->cuda_graphs = !o->no_graphs;
    if (o->mmvq_staged && o->mmvq_direct) {
        fprintf(stderr, "quern %s: --mmvq-staged and --mmvq-direct: give one of them\n", cmd);
        return -1;
    }
    cp->mmvq_stage = o->mmvq_staged ? 1 : o->mmvq_direct ? -1 : 0;
    if (o->tp < 1) {
        fprintf(stderr, "quern %s: --tensor-parallel-size: %d must be >= 1\n", cmd, o->tp);
        return -1;
    }
    cp->tp_size = o->tp;
    cp->tp_nccl = o->tp_nccl;
    if (qn_tool_check_tp_hosts(cmd, o) != 0) return -1;
    cp->tp_master = o->tp_master;
    cp->tp_first_rank = o->tp_master ? o->tp_rank : 0;
    cp->tp_local = o->tp_master ? (o->tp_local > 0 ? o->tp_local : 1) : 0;
    if (o->profile_steps) {
        int a = -1, b = -1;
        char tail = 0;
        if (sscanf(o->profile_steps, "%d:%d%c", &a, &b, &tail) != 2 || a < 0 || b < a) {
            fprintf(stderr, "quern %s: --profile-steps: '%s' is not A:B with 0 <= A <= B\n", cmd, o->profile_steps);
            return -1;
        }
        cp->profile_begin = a, cp->profile_end = b;
    }
    return 0;
}

int qn_tool_apply_device_engine(const char *cmd, const qn_tool_device_opts *o, qn_engine_config *ec) {
    qn_ctx_params cp = qn_ctx_params_default();
    if (qn_tool_apply_device(cmd, o, &cp) != 0) return -1;
    ec->device = cp.device, ec->cuda_device = cp.cuda_device, ec->cuda_graphs = cp.cuda_graphs;
    ec->mmvq_stage = cp.mmvq_stage;
    ec->tp_size = cp.tp_size, ec->tp_nccl = cp.tp_nccl;
    ec->profile_begin = cp.profile_begin, ec->profile_end = cp.profile_end;
    ec->tp_master = cp.tp_master, ec->tp_first_rank = cp.tp_first_rank, ec->tp_local = cp.tp_local;
    return 0;
}

qn_status qn_tool_eval_window(qn_ctx *ctx, const qn_model *m, int32_t *w, int32_t n, int32_t out_from, float *logits,
                              qn_error *err) {
    const int32_t saved = w[0];
    if (qn_vocab_add_bos(m->vocab)) w[0] = qn_vocab_bos(m->vocab);
    qn_ctx_reset(ctx);
    const qn_status st = qn_ctx_eval_from(ctx, w, n, 0, out_from, logits, err);
    w[0] = saved;
    return st;
}
