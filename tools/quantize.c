/* quantize.c — `quern quantize [--imatrix FILE] IN.gguf OUT.gguf TYPE [-t THREADS]`: re-encodes a GGUF
 * model with llama.cpp's file types and per-tensor mixes (runtime/model/quantize.h); the tensors match
 * llama-quantize's byte for byte, with or without the same importance matrix (GGUF or legacy .dat). Progress (tensor i/N, ETA) on stderr;
 * the output appears only when complete (written as OUT.tmp, then renamed). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "model/imatrix.h"
#include "model/quantize.h"

typedef struct progress_state {
    bool tty, quiet, warned_requant;
} progress_state;

static void fmt_secs(char *buf, size_t cap, double s) {
    if (s < 0) snprintf(buf, cap, "?");
    else if (s < 90) snprintf(buf, cap, "%.0f s", s);
    else if (s < 5400) snprintf(buf, cap, "%.1f min", s / 60);
    else snprintf(buf, cap, "%.1f h", s / 3600);
}

static void on_progress(void *ud, const qn_quantize_progress *p) {
    progress_state *s = ud;
    if (p->requantized && !s->warned_requant && !p->done && p->rows_done == 0) {
        s->warned_requant = true;
        fprintf(stderr,
                "%squern quantize: warning: requantizing from %s: the result is worse than quantizing from "
                "F16/BF16/F32 (llama-quantize asks for --allow-requantize)\n",
                s->tty ? "\n" : "", QN_QFORMATS[p->from].name);
    }
    if (s->quiet) return;
    if (!s->tty && !p->done) return; /* logs: one line per tensor */
    char el[32], eta[32], what[64];
    fmt_secs(el, sizeof el, p->elapsed_s);
    fmt_secs(eta, sizeof eta, p->eta_s);
    if (p->copied) snprintf(what, sizeof what, "%s (copied)", QN_QFORMATS[p->to].name);
    else
        snprintf(what, sizeof what, "%s -> %s%s", QN_QFORMATS[p->from].name, QN_QFORMATS[p->to].name,
                 p->fell_back ? " (fallback)" : "");
    char pct[16] = "";
    if (!p->done && p->rows > 0) snprintf(pct, sizeof pct, " %3d%%", (int)(100 * p->rows_done / p->rows));
    fprintf(stderr, "%s[%4lld/%4lld] %-32s %-24s %9.2f -> %9.2f MiB%s  %s, ETA %s%s", s->tty ? "\r\033[K" : "",
            (long long)p->index + 1, (long long)p->count, p->name, what, (double)p->bytes_in / (1 << 20),
            (double)p->bytes_out / (1 << 20), pct, el, eta, s->tty ? "" : "\n");
    if (s->tty && p->done && p->index + 1 == p->count) fputc('\n', stderr);
}

/* The third plain argument (flags and the values of flags that take one skipped) names an HF method: gptq, nf4,
 * awq (tools/quantize_hf.c). */
static bool hf_method_requested(int argc, char **argv) {
    static const char *const with_value[] = {"-t", "--threads", "-b", "--bits", "-g", "--group-size", "--damp",
                                             "--calib", "--calib-samples", "--calib-ctx", "--awq-grid"};
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            for (size_t j = 0; j < sizeof with_value / sizeof with_value[0]; j++)
                if (!strcmp(argv[i], with_value[j])) i++;
            continue;
        }
        if (++n == 3) return qn_quantize_is_hf_method(argv[i]);
    }
    return false;
}

int qn_cmd_quantize(int argc, char **argv) {
    if (hf_method_requested(argc, argv)) return qn_cmd_quantize_hf(argc, argv);
    int n_threads = qn_tool_default_threads();
    bool quiet = false, help = false;
    const char *imatrix_path = NULL;
    const qn_arg table[] = {
        {"threads", NULL, 't', QN_ARG_INT, &n_threads, "worker threads (default: all cores)"},
        {"quiet", NULL, 'q', QN_ARG_BOOL, &quiet, "no per-tensor progress"},
        {"imatrix", NULL, 0, QN_ARG_STR, &imatrix_path, "importance matrix (llama-imatrix / quern imatrix, GGUF or .dat)"},
        {"help", NULL, 'h', QN_ARG_BOOL, &help, "show this help"},
    };
    const int n_table = (int)(sizeof table / sizeof table[0]);
    const char *pos[3];
    int n_pos = 0;
    if (!qn_args_parse("quantize", argc, argv, table, n_table, pos, 3, &n_pos)) return 1;
    if (help || n_pos != 3) {
        qn_args_usage("quantize", "[--imatrix FILE] IN.gguf OUT.gguf TYPE", table, n_table);
        fprintf(help ? stdout : stderr, "\nTYPE: %s\n", qn_ftype_names());
        return help ? 0 : 1;
    }
    qn_quantize_params p = qn_quantize_params_default();
    if (qn_ftype_parse(pos[2], &p.ftype) != QN_OK) {
        fprintf(stderr, "quern quantize: unknown type '%s' (one of: %s)\n", pos[2], qn_ftype_names());
        return 1;
    }
    if (n_threads < 1) {
        fprintf(stderr, "quern quantize: --threads must be >= 1\n");
        return 1;
    }
    p.n_threads = n_threads;
    progress_state ps = {.tty = isatty(2) != 0, .quiet = quiet};
    p.progress = on_progress;
    p.progress_ud = &ps;
    qn_quantize_stats stats;
    qn_error err = {0};
    qn_imatrix *im = NULL;
    if (imatrix_path) {
        if (qn_imatrix_load(imatrix_path, &im, &err) != QN_OK) {
            fprintf(stderr, "quern quantize: %s\n", err.msg);
            return 1;
        }
        if (!im->is_legacy && !im->has_metadata) { /* llama-quantize refuses these too */
            fprintf(stderr, "quern quantize: %s: missing imatrix metadata (imatrix.datasets/chunk_count/chunk_size)\n",
                    imatrix_path);
            qn_imatrix_free(im);
            return 1;
        }
        fprintf(stderr, "quern quantize: %d importance matrix entries from %s computed on %d chunks\n", im->n,
                imatrix_path, im->chunk_count);
        p.imatrix = im;
        p.imatrix_file = imatrix_path;
    }
    const qn_status qst = qn_quantize_gguf(pos[0], pos[1], &p, &stats, &err);
    qn_imatrix_free(im);
    if (qst != QN_OK) {
        fprintf(stderr, "%squern quantize: %s\n", ps.tty && !quiet ? "\n" : "", err.msg);
        return 1;
    }
    fprintf(stderr,
            "quern quantize: %s: %s, %lld tensors (%lld encoded, %lld copied, %lld fallbacks), "
            "%.2f MiB -> %.2f MiB in %.1f s\n",
            pos[1], qn_ftype_name(p.ftype), (long long)stats.n_tensors, (long long)stats.n_encoded,
            (long long)stats.n_copied, (long long)stats.n_fallback, (double)stats.bytes_in / (1 << 20),
            (double)stats.bytes_out / (1 << 20), stats.seconds);
    return 0;
}
