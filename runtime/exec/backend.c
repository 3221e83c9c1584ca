/* backend.c — CPU or CUDA forward behind one interface (exec/backend.h). */
#include "exec/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/threadpool.h"
#include "kv/kv_cache.h"
#include "model/llama_cuda.h"
#include "tp/forward_cpu.h"
#include "tp/forward_cuda.h"

struct qn_backend {
    qn_device_kind kind;
    char name[400];
    /* CPU */
    qn_cpu_kernels kern;
    qn_threadpool *tp;
    qn_kv_cache *kv;
    qn_llama_cpu *cpu;
    qn_tp_cpu *tpc;           /* CPU tensor parallel (tp_size > 1) */
    int32_t tp_size;
    /* CUDA */
    qn_llama_cuda *cuda;
    qn_tp_cuda *tpcuda;       /* tensor parallel over GPUs */
};

qn_backend_params qn_backend_params_default(void) {
    return (qn_backend_params){.device = QN_DEVICE_AUTO, .cuda_device = 0, .n_threads = 2, .isa = QN_CPU_ISA_AUTO,
                               .max_tokens = 512, .max_seqs = 1, .max_ctx = 2048, .n_blocks = 128, .block_size = 16,
                               .cuda_graphs = true, .profile_begin = 1, .profile_end = 0, .tp_size = 1};
}

qn_status qn_device_parse(const char *s, qn_device_kind *kind, int *ordinal, qn_error *err) {
    *ordinal = 0;
    if (!strcmp(s, "auto")) *kind = QN_DEVICE_AUTO;
    else if (!strcmp(s, "cpu")) *kind = QN_DEVICE_CPU;
    else if (!strcmp(s, "cuda") || !strcmp(s, "gpu")) *kind = QN_DEVICE_CUDA;
    else if (!strncmp(s, "cuda:", 5)) {
        char *end = NULL;
        const long v = strtol(s + 5, &end, 10);
        if (!*(s + 5) || *end || v < 0 || v > 1024)
            return qn_error_set(err, QN_ERR_INVALID_ARG, "--device: bad CUDA ordinal in '%s'", s);
        *kind = QN_DEVICE_CUDA;
        *ordinal = (int)v;
    } else {
        return qn_error_set(err, QN_ERR_INVALID_ARG, "--device: '%s' is not auto, cpu, cuda or cuda:N", s);
    }
    return QN_OK;
}

static qn_status create_cpu(qn_backend *b, const qn_model *m, const qn_backend_params *p, qn_error *err) {
    const qn_model_config *c = &m->cfg;
    qn_status st = qn_cpu_kernels_select(p->isa, &b->kern);
    if (st != QN_OK)
        return qn_error_set(err, st, "backend: CPU ISA %s not available on this machine/build", qn_cpu_isa_name(p->isa));
    if (p->no_repack) memset(b->kern.matmul_x8, 0, sizeof b->kern.matmul_x8);
    b->tp_size = p->tp_size;
    if (p->tp_size > 1) {
        const int per_rank = p->n_threads / p->tp_size > 1 ? p->n_threads / p->tp_size : 1;
        if ((st = qn_tp_cpu_create(m, &b->kern, p->tp_size, per_rank, p->max_tokens, p->max_ctx, p->block_size,
                                   p->n_blocks, &b->tpc, err)) != QN_OK)
            return st;
        b->kind = QN_DEVICE_CPU;
        snprintf(b->name, sizeof b->name, "cpu %s, tensor parallel %d x %d threads", b->kern.isa_name, p->tp_size, per_rank);
        return QN_OK;
    }
    if ((st = qn_threadpool_create(p->n_threads, &b->tp, err)) != QN_OK ||
        (st = qn_kv_cache_create_cpu(c->n_layer, p->n_blocks, p->block_size, c->n_head_kv, c->head_dim, &b->kv, err)) != QN_OK ||
        (st = qn_llama_cpu_create(m, &b->kern, b->tp, p->max_tokens, p->max_ctx, &b->cpu, err)) != QN_OK)
        return st;
    b->kind = QN_DEVICE_CPU;
    snprintf(b->name, sizeof b->name, "cpu %s, %d threads", b->kern.isa_name, p->n_threads);
    const size_t rp = qn_llama_cpu_repacked_bytes(b->cpu);
    if (rp) QN_LOGI("backend: %.1f MiB of matmul weights repacked 8 rows at a time for %s", rp / 1048576.0, b->kern.isa_name);
    return QN_OK;
}

static qn_status create_cuda(qn_backend *b, const qn_model *m, const qn_backend_params *p, qn_error *err) {
    b->tp_size = p->tp_size;
    qn_llama_cuda_params cp = qn_llama_cuda_params_default();
    cp.device = p->cuda_device;
    cp.max_tokens = p->max_tokens, cp.max_seqs = p->max_seqs, cp.max_ctx = p->max_ctx;
    cp.n_blocks = p->n_blocks, cp.block_size = p->block_size, cp.cuda_graphs = p->cuda_graphs;
    cp.mmvq_stage = p->mmvq_stage;
    cp.profile_begin = p->profile_begin, cp.profile_end = p->profile_end;
    qn_status st;
    if (p->tp_size > 1 || p->tp_nccl) {
        const qn_tp_cuda_placement pl = {.tp_size = p->tp_size, .first_rank = p->tp_master ? p->tp_first_rank : 0,
                                         .n_local = p->tp_master ? p->tp_local : p->tp_size, .master = p->tp_master};
        if ((st = qn_tp_cuda_create_placed(m, &cp, &pl, &b->tpcuda, err)) != QN_OK) return st;
        b->kind = QN_DEVICE_CUDA;
        snprintf(b->name, sizeof b->name, "cuda %s", qn_tp_cuda_name(b->tpcuda));
        return QN_OK;
    }
    if ((st = qn_llama_cuda_create(m, &cp, &b->cuda, err)) != QN_OK) return st;
    b->kind = QN_DEVICE_CUDA;
    snprintf(b->name, sizeof b->name, "cuda %s", qn_llama_cuda_device_name(b->cuda));
    return QN_OK;
}

qn_status qn_backend_create(const qn_model *m, const qn_backend_params *p, qn_backend **out, qn_error *err) {
    if (p->max_tokens < 1 || p->max_seqs < 1 || p->max_ctx < 1 || p->n_blocks < 1 || p->block_size < 1 || p->n_threads < 1 ||
        p->tp_size < 1)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "backend: sizes, thread count and tensor-parallel size must be >= 1");
    qn_backend *b = calloc(1, sizeof *b);
    if (!b) return qn_error_set(err, QN_ERR_NOMEM, "backend: out of memory");
    qn_status st;
    if (p->device == QN_DEVICE_CPU && p->tp_master) {
        st = qn_error_set(err, QN_ERR_INVALID_ARG, "backend: a TP group across processes (--tp-master) needs GPUs");
    } else if (p->device == QN_DEVICE_CPU) {
        st = create_cpu(b, m, p, err);
    } else {
        st = create_cuda(b, m, p, err);
        /* auto: no GPU, or a model/shape the CUDA path does not take (head_dim, rope scaling, no NCCL): the CPU */
        if ((st == QN_ERR_NO_DEVICE || st == QN_ERR_UNSUPPORTED) && p->device == QN_DEVICE_AUTO && !p->tp_master) {
            if (st == QN_ERR_NO_DEVICE) QN_LOGI("backend: %s; running on the CPU", err ? err->msg : "no GPU");
            else QN_LOGW("backend: %s; running on the CPU", err ? err->msg : "the GPU path does not take this model");
            qn_error_clear(err);
            st = create_cpu(b, m, p, err);
        }
    }
    if (st != QN_OK) {
        qn_backend_destroy(b);
        return st;
    }
    *out = b;
    return QN_OK;
}

void qn_backend_destroy(qn_backend *b) {
    if (!b) return;
    qn_llama_cpu_destroy(b->cpu);
    qn_tp_cpu_destroy(b->tpc);
    qn_kv_cache_destroy_cpu(b->kv);
    qn_threadpool_destroy(b->tp);
    qn_llama_cuda_destroy(b->cuda);
    qn_tp_cuda_destroy(b->tpcuda);
    free(b);
}

qn_device_kind qn_backend_kind(const qn_backend *b) { return b->kind; }
const char *qn_backend_name(const qn_backend *b) { return b->name; }
const char *qn_backend_isa_name(const qn_backend *b) { return b->kind == QN_DEVICE_CUDA ? "CUDA" : b->kern.isa_name; }
int32_t qn_backend_tp_size(const qn_backend *b) { return b->tp_size > 0 ? b->tp_size : 1; }

void qn_backend_cuda_host_times(const qn_backend *b, qn_cuda_host_times *out) {
    if (b->cuda) qn_llama_cuda_host_times(b->cuda, out);
    else *out = (qn_cuda_host_times){0};
}

double qn_backend_allreduce_s(const qn_backend *b, uint64_t *n_calls) {
    if (b->tpcuda) return qn_tp_cuda_allreduce_s(b->tpcuda, n_calls);
    qn_tp_cpu_stats s = {0};
    if (b->tpc) qn_tp_cpu_get_stats(b->tpc, &s);
    if (n_calls) *n_calls = s.n_allreduce;
    return s.allreduce_s;
}

void qn_backend_set_tap(qn_backend *b, qn_llama_tap_fn fn, void *user) {
    if (b->cpu) qn_llama_cpu_set_tap(b->cpu, fn, user); /* (not on TP ranks: each sees a shard) */
    if (b->cuda) qn_llama_cuda_set_tap(b->cuda, fn, user);
}

qn_status qn_backend_capture_decode_graphs(qn_backend *b, int32_t max_tokens, int32_t *n_captured, qn_error *err) {
    if (b->cuda) return qn_llama_cuda_capture_decode_graphs(b->cuda, max_tokens, n_captured, err);
    *n_captured = 0;
    return QN_OK;
}

qn_status qn_backend_forward(qn_backend *b, const qn_fwd_batch *batch, float *logits, qn_error *err) {
    if (b->cuda) return qn_llama_cuda_forward(b->cuda, batch, logits, err);
    if (b->tpc) return qn_tp_cpu_forward(b->tpc, batch, logits, err);
    if (b->tpcuda) return qn_tp_cuda_forward(b->tpcuda, batch, logits, err);
    return qn_llama_cpu_forward(b->cpu, b->kv, batch, logits, err);
}

bool qn_backend_samples_on_device(const qn_backend *b) { return b->cuda != NULL; }

qn_status qn_backend_forward_sample(qn_backend *b, const qn_fwd_batch *batch, const qn_sample_row_params *params,
                                    int32_t *tokens, qn_error *err) {
    if (!b->cuda) return qn_error_set(err, QN_ERR_UNSUPPORTED, "backend: the CPU path samples on the host");
    return qn_llama_cuda_forward_sample(b->cuda, batch, params, tokens, err);
}

qn_status qn_backend_copy_block(qn_backend *b, int32_t src, int32_t dst, qn_error *err) {
    if (b->cuda) return qn_llama_cuda_copy_block(b->cuda, src, dst, err);
    if (b->tpcuda) return qn_tp_cuda_copy_block(b->tpcuda, src, dst, err);
    if (b->tpc) {
        if (src < 0 || dst < 0) return qn_error_set(err, QN_ERR_INVALID_ARG, "backend: copy block %d -> %d out of range", src, dst);
        qn_tp_cpu_copy_block(b->tpc, src, dst);
        return QN_OK;
    }
    if (src < 0 || dst < 0 || src >= b->kv->n_blocks || dst >= b->kv->n_blocks)
        return qn_error_set(err, QN_ERR_INVALID_ARG, "backend: copy block %d -> %d out of range", src, dst);
    qn_kv_cache_copy_block_cpu(b->kv, src, dst);
    return QN_OK;
}
