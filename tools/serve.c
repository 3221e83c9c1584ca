/* serve.c — `quern serve [MODEL] [flags]`: the OpenAI-compatible HTTP server (host/) over the serving
 * engine (exec/engine.h), with vllm serve / llama-server flag spellings (serving-api.md §3.1).
 * Start-up order: bind first (a busy port fails at once), then load the model and start the engine on a
 * loader thread while the loop already answers /health with 503; ready -> 200. SIGINT/SIGTERM stop the
 * loop (in-flight clients get an error), then the engine and the model are torn down. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "exec/engine.h"
#include "host/server.h"
#include "serve_engine.h"

typedef struct serve_opts {
    const char *model, *host, *served_name, *kv_mem, *device, *metrics_compat, *max_body, *isa, *root_path;
    const char *cors;
    qn_arg_list api_keys;
    int port, max_model_len, max_num_seqs, max_batched, block_size, threads, tp, timeout_s;
    const char *tp_master; /* multi-host TP flags: accepted only to refuse them clearly */
    int tp_rank, tp_local;
    float gpu_util, sse_ping_s;
    bool no_prefix_cache, enable_prefix_caching, no_enable_prefix_caching, help;
    bool no_graphs, tp_nccl, no_repack;    /* the device flags the other commands take (common.h) */
    bool mmvq_staged, mmvq_direct;
    const char *profile_steps;
} serve_opts;

/* ---------------------------------------------------------------- start-up */

typedef struct serve_loader {
    const serve_opts *o;
    qn_engine_config ec;
    qn_serve_engine *se;
    qn_server *srv;
    qn_model *model;     /* set by the loader; freed by the main thread after the engine */
    atomic_int failed;
} serve_loader;

static void *loader_main(void *arg) {
    serve_loader *L = arg;
    const double t0 = qn_tool_now_s();
    L->model = qn_tool_load_model("serve", L->o->model);
    if (!L->model) goto fail;
    qn_engine *eng = NULL;
    qn_error err = {0};
    if (qn_engine_create(L->model, &L->ec, &eng, &err) != QN_OK) {
        fprintf(stderr, "quern serve: %s\n", err.msg);
        goto fail;
    }
    qn_serve_engine_attach(L->se, L->model, eng);
    fprintf(stderr, "quern serve: %s\n", qn_engine_kv_summary(eng));
    qn_engine_snapshot snap;
    qn_engine_get_stats(eng, &snap);
    if (snap.cuda.n_captures > 0) /* the engine's start-up capture (engine.h capture_graphs_at_start) */
        fprintf(stderr, "quern serve: cuda: %lld decode graphs captured at start in %.2f s\n",
                (long long)snap.cuda.n_captures, snap.cuda.capture_s);
    fprintf(stderr, "quern serve: model %s loaded, engine started in %.2f s (max_model_len %d, %d tokens per step, %s)\n",
            L->model->path ? L->model->path : "?", qn_tool_now_s() - t0, qn_engine_max_model_len(eng),
            qn_engine_max_batched_tokens(eng), qn_engine_backend_name(eng));
    qn_server_set_ready(L->srv, true);
    fprintf(stderr, "quern serve: ready\n");
    return NULL;
fail:
    atomic_store(&L->failed, 1);
    qn_server_stop(L->srv);
    return NULL;
}

/* ---------------------------------------------------------------- signals */

static qn_server *g_srv;            /* for the signal handler only */
static volatile sig_atomic_t g_n_signals;

static void on_signal(int sig) {
    (void)sig;
    if (++g_n_signals > 1) _exit(130); /* a second Ctrl-C does not wait for the graceful path */
    static const char msg[] = "\nquern serve: shutting down (again to force)\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    qn_server_stop(g_srv); /* async-signal-safe */
}

static void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ---------------------------------------------------------------- flags */

/* vLLM-style "non-default args" line: every table entry whose value differs from the default. */
static void print_non_default(const qn_arg *t, int n, const serve_opts *o, const serve_opts *def) {
    char line[2048];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        bool seen = false; /* -np / -tp share their long flag's field: print it once */
        for (int k = 0; k < i && !seen; k++) seen = t[k].dst == t[i].dst;
        if (seen) continue;
        const size_t off = (size_t)((const char *)t[i].dst - (const char *)o);
        const void *cur = (const char *)o + off, *ref = (const char *)def + off;
        char val[256];
        val[0] = '\0';
        switch (t[i].type) {
        case QN_ARG_STR: {
            const char *a = *(const char *const *)cur, *b = *(const char *const *)ref;
            if (a == b || (a && b && !strcmp(a, b))) continue;
            snprintf(val, sizeof val, "%s", a ? a : "(none)");
            break;
        }
        case QN_ARG_INT:
            if (*(const int *)cur == *(const int *)ref) continue;
            snprintf(val, sizeof val, "%d", *(const int *)cur);
            break;
        case QN_ARG_I64:
            if (*(const int64_t *)cur == *(const int64_t *)ref) continue;
            snprintf(val, sizeof val, "%lld", (long long)*(const int64_t *)cur);
            break;
        case QN_ARG_FLOAT:
            if (*(const float *)cur == *(const float *)ref) continue;
            snprintf(val, sizeof val, "%g", (double)*(const float *)cur);
            break;
        case QN_ARG_BOOL:
            if (*(const bool *)cur == *(const bool *)ref) continue;
            snprintf(val, sizeof val, "%s", *(const bool *)cur ? "true" : "false");
            break;
        case QN_ARG_STR_LIST:
            if (((const qn_arg_list *)cur)->n == 0) continue;
            snprintf(val, sizeof val, "[%d hidden]", ((const qn_arg_list *)cur)->n); /* never print keys */
            break;
        }
        len += (size_t)snprintf(line + len, len < sizeof line ? sizeof line - len : 0, "%s%s=%s", len ? " " : "",
                                t[i].name, val);
        if (len >= sizeof line) break;
    }
    if (len) fprintf(stderr, "quern serve: non-default args: %s\n", line);
}

/* API keys from --api-key (repeatable; a comma list also works, as llama-server) and $QUERN_API_KEY. */
static int collect_api_keys(const serve_opts *o, char **store, const char **keys, int cap) {
    int n = 0;
    for (int i = 0; i <= o->api_keys.n; i++) {
        const char *src = i < o->api_keys.n ? o->api_keys.v[i] : (o->api_keys.n == 0 ? qn_tool_env_api_key() : NULL);
        if (!src) continue;
        char *copy = strdup(src);
        if (!copy) continue;
        store[i] = copy;
        for (char *save = NULL, *k = strtok_r(copy, ",", &save); k && n < cap; k = strtok_r(NULL, ",", &save))
            if (*k) keys[n++] = k;
    }
    return n;
}

int qn_cmd_serve(int argc, char **argv) {
    const qn_engine_config edef = qn_engine_config_default();
    serve_opts o;
    memset(&o, 0, sizeof o); /* padding too: print_non_default compares whole fields by offset */
    o.host = "127.0.0.1";
    o.port = 8000;
    o.device = "auto";
    o.threads = qn_tool_default_threads();
    o.max_num_seqs = edef.max_num_seqs;
    o.max_batched = edef.max_num_batched_tokens;
    o.block_size = edef.block_size;
    o.tp = 1;
    o.tp_rank = -1;
    o.gpu_util = 0.9f;
    o.sse_ping_s = 15.0f;
    o.timeout_s = 75;
    const qn_arg table[] = {
        {"model", NULL, 'm', QN_ARG_STR, &o.model, "GGUF model (or positional MODEL; default: SmolLM2-135M-Instruct Q4_1)"},
        {"host", NULL, 0, QN_ARG_STR, &o.host, "bind address (127.0.0.1)"},
        {"port", NULL, 0, QN_ARG_INT, &o.port, "port (8000; 0 = ephemeral, printed at start-up)"},
        {"served-model-name", "alias", 'a', QN_ARG_STR, &o.served_name, "name in /v1/models (default: file name)"},
        {"api-key", NULL, 0, QN_ARG_STR_LIST, &o.api_keys, "require this Bearer key on /v1/* (repeatable; env QUERN_API_KEY)"},
        {"max-model-len", "ctx-size", 'c', QN_ARG_INT, &o.max_model_len, "per-sequence context (min(n_ctx_train, 4096))"},
        {"max-num-seqs", "parallel", 0, QN_ARG_INT, &o.max_num_seqs, "max sequences per step (256); -np alias"},
        {"np", NULL, 0, QN_ARG_INT, &o.max_num_seqs, NULL},
        {"max-num-batched-tokens", NULL, 0, QN_ARG_INT, &o.max_batched, "token budget per step (auto: 8192 on GPUs of >= 70 GiB but A100, else 2048)"},
        {"block-size", NULL, 0, QN_ARG_INT, &o.block_size, "KV block size in tokens (16)"},
        {"kv-cache-mem", NULL, 0, QN_ARG_STR, &o.kv_mem, "KV cache bytes, e.g. 512M, 2G (default: max-num-seqs/8 full sequences)"},
        {"gpu-memory-utilization", NULL, 0, QN_ARG_FLOAT, &o.gpu_util, "GPU memory fraction (0.9; ignored on the CPU path)"},
        {"no-prefix-cache", "no-enable-prefix-caching", 0, QN_ARG_BOOL, &o.no_prefix_cache, "disable prefix caching"},
        {"enable-prefix-caching", NULL, 0, QN_ARG_BOOL, &o.enable_prefix_caching, "enable prefix caching (default)"},
        {"threads", NULL, 't', QN_ARG_INT, &o.threads, "CPU threads (all cores)"},
        {"device", NULL, 0, QN_ARG_STR, &o.device, "auto | cpu | cuda | cuda:N (auto: the GPU when present)"},
        {"tensor-parallel-size", NULL, 0, QN_ARG_INT, &o.tp, "tensor parallel GPUs (1); -tp alias"},
        {"tp", NULL, 0, QN_ARG_INT, &o.tp, NULL},
        {"tp-master", NULL, 0, QN_ARG_STR, &o.tp_master, "multi-host TP: not supported by serve yet (refused)"},
        {"tp-rank", NULL, 0, QN_ARG_INT, &o.tp_rank, NULL},
        {"tp-local", NULL, 0, QN_ARG_INT, &o.tp_local, NULL},
        {"no-cuda-graphs", NULL, 0, QN_ARG_BOOL, &o.no_graphs, "CUDA: launch decode steps kernel by kernel"},
        {"mmvq-staged", NULL, 0, QN_ARG_BOOL, &o.mmvq_staged,
         "CUDA: int8 decode matmuls stage all weights they can through shared memory (A/B; default: where faster)"},
        {"mmvq-direct", NULL, 0, QN_ARG_BOOL, &o.mmvq_direct, "CUDA: int8 decode matmuls read all weights directly (A/B)"},
        {"profile-steps", NULL, 0, QN_ARG_STR, &o.profile_steps,
         "A:B  CUDA: cudaProfilerStart/Stop around engine steps A..B (nsys --capture-range=cudaProfilerApi)"},
        {"tp-nccl", NULL, 0, QN_ARG_BOOL, &o.tp_nccl, "CUDA: the NCCL tensor-parallel path even for -tp 1 (testing)"},
        {"metrics-compat", NULL, 0, QN_ARG_STR, &o.metrics_compat, "also expose vllm:* metric names: vllm"},
        {"max-body-bytes", NULL, 0, QN_ARG_STR, &o.max_body, "request body limit, e.g. 32M (32M)"},
        {"sse-ping-interval", NULL, 0, QN_ARG_FLOAT, &o.sse_ping_s, "seconds of stream silence before a ':' ping (15; 0 = off)"},
        {"timeout", NULL, 0, QN_ARG_INT, &o.timeout_s, "keep-alive idle / read timeout in seconds (75)"},
        {"root-path", "api-prefix", 0, QN_ARG_STR, &o.root_path, "path prefix behind a proxy, e.g. /llm"},
        {"allowed-origins", "cors-origins", 0, QN_ARG_STR, &o.cors, "CORS origins: * or a comma list (* without a key)"},
        {"isa", NULL, 0, QN_ARG_STR, &o.isa, "CPU kernels: auto|scalar|avx2|avx512|neon|neon_dotprod"},
        {"no-repack", NULL, 0, QN_ARG_BOOL, &o.no_repack, "no 8-row CPU repack of K-quant/Q4_0/Q5_x/Q8_0 weights (A/B)"},
        {"help", NULL, 'h', QN_ARG_BOOL, &o.help, "this help"},
    };
    const int nt = (int)(sizeof table / sizeof table[0]);
    serve_opts def;
    memcpy(&def, &o, sizeof def);
    const char *pos[1];
    int n_pos = 0;
    if (!qn_args_parse("serve", argc, argv, table, nt, pos, 1, &n_pos)) return 1;
    if (o.help) {
        qn_args_usage("serve", "[MODEL] [-m MODEL] [--host H] [--port P] [--api-key K] [-c LEN] [-np N] ...", table, nt);
        return 0;
    }
    if (n_pos == 1) {
        if (o.model) {
            fprintf(stderr, "quern serve: give the model either as MODEL or with -m, not both\n");
            return 1;
        }
        o.model = pos[0];
    }

    /* --- validation --- */
    qn_device_kind dev_kind;
    int dev_ordinal = 0;
    qn_error derr = {0};
    if (qn_device_parse(o.device, &dev_kind, &dev_ordinal, &derr) != QN_OK) {
        fprintf(stderr, "quern serve: %s\n", derr.msg);
        return 1;
    }
    if (o.tp < 1) {
        fprintf(stderr, "quern serve: --tensor-parallel-size: %d must be >= 1\n", o.tp);
        return 1;
    }
    if (o.tp_master || o.tp_rank >= 0 || o.tp_local) { /* docs/tensor_parallel.md §4: the processes would have to
                                                       * follow rank 0's steps, which serve does not send yet */
        fprintf(stderr, "quern serve: --tp-master / --tp-rank / --tp-local: multi-host tensor parallel is not "
                        "supported by serve yet (one host: -tp N; across hosts: quern perplexity / logits)\n");
        return 1;
    }
    if (o.port < 0 || o.port > 65535) {
        fprintf(stderr, "quern serve: --port: %d not in [0, 65535]\n", o.port);
        return 1;
    }
    if (o.max_model_len < 0 || o.max_num_seqs < 1 || o.max_batched < 0 || o.block_size < 1 || o.threads < 1 ||
        o.timeout_s < 1 || !(o.sse_ping_s >= 0)) {
        fprintf(stderr, "quern serve: --max-num-seqs, --block-size, --threads and --timeout must be >= 1, "
                        "--max-model-len, --max-num-batched-tokens (0: auto) and --sse-ping-interval >= 0\n");
        return 1;
    }
    if (!(o.gpu_util > 0 && o.gpu_util <= 1)) {
        fprintf(stderr, "quern serve: --gpu-memory-utilization: %g not in (0, 1]\n", (double)o.gpu_util);
        return 1;
    }
    if (o.no_prefix_cache && o.enable_prefix_caching) {
        fprintf(stderr, "quern serve: --enable-prefix-caching and --no-prefix-cache contradict each other\n");
        return 1;
    }
    if (o.metrics_compat && strcmp(o.metrics_compat, "vllm")) {
        fprintf(stderr, "quern serve: --metrics-compat: unknown value '%s' (vllm)\n", o.metrics_compat);
        return 1;
    }
    int64_t kv_bytes = 0, body_bytes = 0;
    if (o.kv_mem && (qn_tool_parse_size(o.kv_mem, &kv_bytes) != 0 || kv_bytes <= 0)) {
        fprintf(stderr, "quern serve: --kv-cache-mem: invalid size '%s' (e.g. 512M, 2G)\n", o.kv_mem);
        return 1;
    }
    if (o.max_body && (qn_tool_parse_size(o.max_body, &body_bytes) != 0 || body_bytes <= 0)) {
        fprintf(stderr, "quern serve: --max-body-bytes: invalid size '%s' (e.g. 1M)\n", o.max_body);
        return 1;
    }
    qn_cpu_isa isa;
    if (qn_tool_parse_isa("serve", o.isa, &isa) != 0) return 1;

    print_non_default(table, nt, &o, &def);
    if (!(o.gpu_util > 0.0f && o.gpu_util <= 1.0f)) {
        fprintf(stderr, "quern serve: --gpu-memory-utilization: %g not in (0, 1]\n", o.gpu_util);
        return 1;
    }

    /* --- engine config --- */
    serve_loader L;
    memset(&L, 0, sizeof L);
    L.o = &o;
    L.ec = edef;
    L.ec.n_threads = o.threads;
    L.ec.isa = isa;
    L.ec.no_repack = o.no_repack;
    L.ec.device = dev_kind;
    L.ec.cuda_device = dev_ordinal;
    const qn_tool_device_opts dv = {.device = o.device, .no_graphs = o.no_graphs, .mmvq_staged = o.mmvq_staged,
                                    .mmvq_direct = o.mmvq_direct,
                                    .profile_steps = o.profile_steps,
                                    .tp = o.tp, .tp_nccl = o.tp_nccl, .tp_rank = -1};
    if (qn_tool_apply_device_engine("serve", &dv, &L.ec) != 0) return 1;
    L.ec.gpu_memory_utilization = o.gpu_util;
    L.ec.tp_size = o.tp;
    L.ec.max_model_len = o.max_model_len;
    L.ec.max_num_seqs = o.max_num_seqs;
    L.ec.max_num_batched_tokens = o.max_batched;
    L.ec.block_size = o.block_size;
    L.ec.kv_cache_bytes = kv_bytes;
    L.ec.enable_prefix_cache = !o.no_prefix_cache;
    atomic_init(&L.failed, 0);

    /* --- server --- */
    const char *path = o.model ? o.model : qn_tool_default_model();
    char default_name[256];
    qn_serve_default_model_name(path, default_name, sizeof default_name);
    L.se = qn_serve_engine_create(default_name);
    char *key_store[QN_ARG_LIST_CAP + 1] = {0};
    const char *keys[64];
    const int n_keys = collect_api_keys(&o, key_store, keys, 64);
    int rc = 1;
    if (!L.se) {
        fprintf(stderr, "quern serve: out of memory\n");
        goto done_keys;
    }
    qn_server_config sc;
    qn_server_config_default(&sc);
    sc.host = o.host;
    sc.port = (uint16_t)o.port;
    sc.served_model_name = o.served_name;
    sc.api_keys = keys;
    sc.n_api_keys = (size_t)n_keys;
    sc.cors_origins = o.cors;
    if (body_bytes > 0) sc.max_body_bytes = (size_t)body_bytes;
    sc.idle_timeout_s = o.timeout_s;
    sc.sse_ping_interval_ms = (int)(o.sse_ping_s * 1000.0f + 0.5f);
    sc.metrics_vllm_compat = o.metrics_compat != NULL;
    sc.api_prefix = o.root_path;
    qn_engine_iface iface;
    qn_serve_engine_iface(L.se, &iface);
    qn_error err = {0};
    if (qn_server_create(&sc, &iface, &L.srv, &err) != QN_OK) {
        fprintf(stderr, "quern serve: %s\n", err.msg);
        goto done_adapter;
    }
    g_srv = L.srv;
    install_signals();
    fprintf(stderr, "quern serve: listening on http://%s:%u (model '%s'%s)\n", o.host, (unsigned)qn_server_port(L.srv),
            o.served_name ? o.served_name : default_name, n_keys ? ", API key required" : "");

    pthread_t loader;
    if (pthread_create(&loader, NULL, loader_main, &L) != 0) {
        fprintf(stderr, "quern serve: cannot start the loader thread\n");
        goto done_server;
    }
    qn_status st = qn_server_run(L.srv);
    pthread_join(loader, NULL);
    rc = atomic_load(&L.failed) || st != QN_OK ? 1 : 0;
    fprintf(stderr, "quern serve: stopped\n");
done_server:
    g_srv = NULL; /* a late signal must not reach a freed server */
    qn_server_destroy(L.srv);
done_adapter:
    qn_serve_engine_destroy(L.se); /* engine first: it borrows the model */
    qn_model_free(L.model);
done_keys:
    for (int i = 0; i <= QN_ARG_LIST_CAP; i++) free(key_store[i]);
    return rc;
}
