/* bench.c — `quern bench`: llama-bench-compatible model benchmark. Tests pp<N> (prompt of N tokens
 * from an empty cache, one forward pass per batch) and tg<N> (N single-token steps), repeated -r
 * times after a warm-up; prints mean ± stddev tokens/s as a markdown table (or csv/json/jsonl with
 * llama-bench's field names). Runs through the serving engine, the runtime `quern serve` uses
 * (one_request.h); timing includes greedy sampling (on the device on a GPU: one argmax per step), which
 * llama-bench leaves out. `quern bench kernels [flags]` runs the GPU matmul kernel benchmark instead
 * (bench/kernels/gpu_quant_bench.cu, linked in CUDA builds only). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "bench/kernels/gpu_quant_bench.h"
#include "commands.h"
#include "common.h"
#include "one_request.h"

#define QN_BENCH_MAX_LIST 16

typedef struct bench_test {
    int n_prompt, n_gen;
    double mean_ts, std_ts, avg_ns, std_ns;
    double samples_ns[64];
    int n_samples;
} bench_test;

static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    while (s && *s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 1000000) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

/* One test through the serving engine: pp<N> is a request of N random prompt tokens that samples one
 * token (timed from submission to that token: the prefill steps); tg<N> is a request of one prompt token
 * that generates N (timed from submission to its last token: N single-token steps). Prefix caching is off,
 * so every repetition recomputes. Greedy sampling, on the device where the backend has it. */
static int run_test(qn_engine *e, const qn_model *m, bench_test *t, int reps) {
    const int n = t->n_prompt ? t->n_prompt : 1;
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)n);
    if (!toks) return -1;
    unsigned s = 1234;
    for (int i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        toks[i] = (int32_t)((s >> 8) % (unsigned)m->cfg.n_vocab);
    }
    qn_gen_params gp;
    memset(&gp, 0, sizeof gp);
    gp.sampling = qn_sampler_params_default();
    gp.sampling.temperature = 0;
    gp.max_tokens = t->n_prompt ? 1 : t->n_gen;
    gp.ignore_eos = true;
    gp.n_logprobs = -1;
    t->n_samples = 0;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        qn_one_result res;
        if (qn_one_generate(e, toks, n, &gp, NULL, NULL, &res) != QN_OK) {
            fprintf(stderr, "quern bench: %s\n", res.error_msg[0] ? res.error_msg : qn_status_str(res.error));
            free(toks);
            return -1;
        }
        const double dt = t->n_prompt ? res.t_prefill : res.t_prefill + res.t_decode;
        if (r >= 0 && t->n_samples < 64) t->samples_ns[t->n_samples++] = dt * 1e9;
    }
    const int n_tok = t->n_prompt ? t->n_prompt : t->n_gen;
    double sum_ts = 0, sum2_ts = 0, sum_ns = 0, sum2_ns = 0;
    for (int i = 0; i < t->n_samples; i++) {
        const double ts = n_tok / (t->samples_ns[i] * 1e-9);
        sum_ts += ts, sum2_ts += ts * ts, sum_ns += t->samples_ns[i], sum2_ns += t->samples_ns[i] * t->samples_ns[i];
    }
    const double k = t->n_samples;
    t->mean_ts = sum_ts / k;
    t->avg_ns = sum_ns / k;
    t->std_ts = k > 1 ? sqrt(fmax(0, (sum2_ts - k * t->mean_ts * t->mean_ts) / (k - 1))) : 0;
    t->std_ns = k > 1 ? sqrt(fmax(0, (sum2_ns - k * t->avg_ns * t->avg_ns) / (k - 1))) : 0;
    free(toks);
    return 0;
}

static const char *model_type(const qn_model *m, char *buf, size_t cap) {
    const double p = (double)m->n_params;
    const qn_weight *wq = &m->layers[0].wq;
    char lq[48];
    const char *q = wq->fmt < QN_QFORMAT_COUNT ? QN_QFORMATS[wq->fmt].name : "?";
    if (wq->lutq) { /* HF GPTQ / AWQ / bnb: the repacked layout, not its f32 activation format */
        const qn_lutq_weight *l = wq->lutq;
        if (l->lut_identity)
            snprintf(lq, sizeof lq, "gptq/awq %d-bit g%lld", (int)l->code_bits,
                     (long long)(l->n_groups > 0 ? l->k / l->n_groups : l->k));
        else
            snprintf(lq, sizeof lq, "bnb %d-bit", (int)l->code_bits);
        q = lq;
    }
    if (p >= 1e9)
        snprintf(buf, cap, "%s %.0fB %s", qn_arch_name(m->cfg.arch), p / 1e9, q);
    else
        snprintf(buf, cap, "%s %.0fM %s", qn_arch_name(m->cfg.arch), p / 1e6, q);
    return buf;
}

/* `quern bench kernels ...` (argv[0] = "kernels"): every GPU format x Llama-3-8B shapes x n beside cuBLAS fp16. */
static int bench_kernels(int argc, char **argv) {
#ifdef QN_HAVE_CUDA
    const int rc = qn_bench_kernels_main(argc, argv);
    return rc == QN_BENCH_KERNELS_NO_DEVICE ? 1 : rc;
#else
    (void)argc, (void)argv;
    fprintf(stderr, "quern bench kernels: needs a CUDA build (this quern was built without CUDA: no nvcc at "
                    "configure time, or -DQN_CPU_ONLY=ON)\n");
    return 1;
#endif
}

int qn_cmd_bench(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "kernels")) return bench_kernels(argc - 1, argv + 1);
    const char *model_path = NULL, *p_list = "512", *n_list = "128", *out_fmt = "md", *isa_name = NULL;
    int reps = 5, n_threads = qn_tool_default_threads(), n_batch = 2048;
    bool help = false, no_repack = false;
    qn_tool_device_opts dev = QN_TOOL_DEVICE_OPTS_INIT;
    const qn_arg table[] = {
        {"model", NULL, 'm', QN_ARG_STR, &model_path, "GGUF model (default: SmolLM2-135M-Instruct Q4_1)"},
        {"n-prompt", NULL, 'p', QN_ARG_STR, &p_list, "prompt lengths, comma list (512)"},
        {"n-gen", NULL, 'n', QN_ARG_STR, &n_list, "generation lengths, comma list (128)"},
        {"repetitions", NULL, 'r', QN_ARG_INT, &reps, "repetitions per test (5)"},
        {"threads", NULL, 't', QN_ARG_INT, &n_threads, "CPU threads (all cores)"},
        {"batch-size", NULL, 'b', QN_ARG_INT, &n_batch, "max tokens per forward step (2048)"},
        {"output", NULL, 'o', QN_ARG_STR, &out_fmt, "md | csv | json | jsonl"},
        {"isa", NULL, 0, QN_ARG_STR, &isa_name, "CPU kernels: auto|scalar|avx2|avx512|neon|neon_dotprod"},
        {"no-repack", NULL, 0, QN_ARG_BOOL, &no_repack, "no 8-row CPU repack of K-quant/Q4_0/Q5_x/Q8_0 weights (A/B)"},
        QN_TOOL_DEVICE_ARGS(dev),
        {"help", NULL, 'h', QN_ARG_BOOL, &help, "this help"},
    };
    const int nt = (int)(sizeof table / sizeof table[0]);
    const char *pos[1];
    int n_pos;
    if (!qn_args_parse("bench", argc, argv, table, nt, pos, 0, &n_pos)) return 1;
    if (help) {
        qn_args_usage("bench", "[-m MODEL] [-p 512] [-n 128] [-r 5] [-t N] [-o md|csv|json|jsonl]", table, nt);
        printf("\nquern bench kernels [--quick] [--fmt LIST] [--n LIST] [--json FILE]: GPU matmul kernels vs cuBLAS "
               "fp16 (CUDA builds; quern bench kernels --help)\n");
        return 0;
    }
    int pl[QN_BENCH_MAX_LIST], nl[QN_BENCH_MAX_LIST];
    const int np = parse_list(p_list, pl, QN_BENCH_MAX_LIST), nn = parse_list(n_list, nl, QN_BENCH_MAX_LIST);
    if (np < 0 || nn < 0 || reps < 1 || reps > 64 || n_threads < 1 || n_batch < 1) {
        fprintf(stderr, "quern bench: bad -p/-n list, -r (1..64), -t or -b\n");
        return 1;
    }
    if (strcmp(out_fmt, "md") && strcmp(out_fmt, "csv") && strcmp(out_fmt, "json") && strcmp(out_fmt, "jsonl")) {
        fprintf(stderr, "quern bench: -o must be md, csv, json or jsonl\n");
        return 1;
    }
    qn_cpu_isa isa;
    if (qn_tool_parse_isa("bench", isa_name, &isa) != 0) return 1;
    qn_model *m = qn_tool_load_model("bench", model_path);
    if (!m) return 1;
    int max_n = 1;
    for (int i = 0; i < np; i++) max_n = pl[i] > max_n ? pl[i] : max_n;
    for (int i = 0; i < nn; i++) max_n = nl[i] > max_n ? nl[i] : max_n;
    /* tg<N>: 1 prompt token + N generated; pp<N>: N + the sampled one */
    const qn_one_engine_opts eo = {.n_ctx = max_n + 2, .n_batch = n_batch, .n_threads = n_threads, .isa = isa, .no_repack = no_repack,
                                   .prefix_cache = false};
    bench_test tests[2 * QN_BENCH_MAX_LIST];
    int n_tests = 0, rc = 1;
    qn_engine *eng = qn_one_engine_create("bench", m, &eo, &dev);
    if (!eng) goto done;
    for (int i = 0; i < np; i++)
        if (pl[i] > 0) tests[n_tests++] = (bench_test){.n_prompt = pl[i]};
    for (int i = 0; i < nn; i++)
        if (nl[i] > 0) tests[n_tests++] = (bench_test){.n_gen = nl[i]};
    char mtype[96], tbuf[32];
    model_type(m, mtype, sizeof mtype);
    const double size_mib = (double)m->weight_bytes / (1024.0 * 1024.0);
    const double params_m = (double)m->n_params / 1e6;
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(tbuf, sizeof tbuf, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    const bool gpu = qn_engine_device(eng) == QN_DEVICE_CUDA;
    const char *backend = gpu ? "CUDA" : "CPU";
    const char *gpu_info = gpu ? qn_engine_backend_name(eng) + 5 : ""; /* after "cuda " */
    const char *isa_col = gpu ? gpu_info : qn_engine_isa_name(eng);
    if (!strcmp(out_fmt, "md")) {
        printf("| model | size | params | backend | threads | isa | test | t/s |\n");
        printf("| ----- | ---: | -----: | ------- | ------: | --- | ---: | --: |\n");
    } else if (!strcmp(out_fmt, "csv")) {
        printf("build_commit,cpu_info,gpu_info,backends,model_filename,model_type,model_size,model_n_params,n_batch,"
               "n_threads,n_prompt,n_gen,test_time,avg_ns,stddev_ns,avg_ts,stddev_ts\n");
    } else if (!strcmp(out_fmt, "json")) {
        printf("[\n");
    }
    for (int i = 0; i < n_tests; i++) {
        bench_test *t = &tests[i];
        if (run_test(eng, m, t, reps) != 0) goto done;
        char test[32];
        snprintf(test, sizeof test, t->n_prompt ? "pp%d" : "tg%d", t->n_prompt ? t->n_prompt : t->n_gen);
        if (!strcmp(out_fmt, "md")) {
            printf("| %s | %.2f MiB | %.2f M | %s | %d | %s | %s | %.2f ± %.2f |\n", mtype, size_mib, params_m, backend,
                   n_threads, isa_col, test, t->mean_ts, t->std_ts);
        } else if (!strcmp(out_fmt, "csv")) {
            printf("\"%s\",\"%s\",\"%s\",\"%s\",\"%s\",\"%s\",%llu,%llu,%d,%d,%d,%d,\"%s\",%.0f,%.0f,%.6f,%.6f\n",
                   QN_BUILD_COMMIT, qn_engine_isa_name(eng), gpu_info, backend, m->path, mtype, (unsigned long long)m->weight_bytes,
                   (unsigned long long)m->n_params, n_batch, n_threads, t->n_prompt, t->n_gen, tbuf, t->avg_ns,
                   t->std_ns, t->mean_ts, t->std_ts);
        } else {
            printf("%s{\"build_commit\": \"%s\", \"cpu_info\": \"%s\", \"gpu_info\": \"%s\", \"backends\": \"%s\", "
                   "\"model_filename\": \"%s\", \"model_type\": \"%s\", \"model_size\": %llu, \"model_n_params\": %llu, "
                   "\"n_batch\": %d, \"n_threads\": %d, \"n_prompt\": %d, \"n_gen\": %d, \"test_time\": \"%s\", "
                   "\"avg_ns\": %.0f, \"stddev_ns\": %.0f, \"avg_ts\": %.6f, \"stddev_ts\": %.6f, \"samples_ns\": [",
                   (!strcmp(out_fmt, "json") && i) ? ",\n  " : (!strcmp(out_fmt, "json") ? "  " : ""), QN_BUILD_COMMIT,
                   qn_engine_isa_name(eng), gpu_info, backend, m->path, mtype, (unsigned long long)m->weight_bytes,
                   (unsigned long long)m->n_params, n_batch, n_threads, t->n_prompt, t->n_gen, tbuf, t->avg_ns,
                   t->std_ns, t->mean_ts, t->std_ts);
            for (int k = 0; k < t->n_samples; k++) printf("%s%.0f", k ? ", " : "", t->samples_ns[k]);
            printf("]}%s", !strcmp(out_fmt, "jsonl") ? "\n" : "");
        }
        fflush(stdout);
    }
    if (!strcmp(out_fmt, "json")) printf("\n]\n");
    uint64_t n_ar = 0;
    const double ar_s = qn_engine_allreduce_s(eng, &n_ar);
    qn_engine_snapshot es;
    qn_engine_get_stats(eng, &es);
    if (n_ar > 0 && es.n_forward_steps > 0) /* stderr: the tables on stdout keep llama-bench's columns */
        fprintf(stderr, "quern bench: tensor parallel %d: %llu all-reduces, %.3f ms per forward step (%.1f%% of the forward time)\n",
                dev.tp, (unsigned long long)n_ar, 1e3 * ar_s / (double)es.n_forward_steps,
                es.forward_s > 0 ? 100.0 * ar_s / es.forward_s : 0.0);
    rc = 0;
done:
    qn_engine_destroy(eng);
    qn_model_free(m);
    return rc;
}
