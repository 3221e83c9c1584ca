/* logits.c — `quern logits -m MODEL (-p PROMPT | --tokens 1,2,3) [--out FILE] [--greedy N]`: a
 * developer tool for comparing against peers. Prints JSON {"tokens": [...], "greedy": [...]} on
 * stdout and writes the logits of every prompt position as raw f32 [n_tokens][n_vocab] to FILE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "exec/context.h"
#include "exec/sampling.h"
#include "tokenizer/vocab.h"

/* --trace DIR: every tapped stage written as DIR/<name>-<layer>.f32, [n_tokens][n] rows */
static void trace_tap(void *user, const char *name, int layer, const float *rows, int64_t n_tokens, int64_t n,
                      int64_t ld) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-%d.f32", (const char *)user, name, layer);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    for (int64_t t = 0; t < n_tokens; t++) fwrite(rows + t * ld, sizeof(float), (size_t)n, f);
    fclose(f);
}

static int parse_ids(const char *s, int32_t *out, int32_t cap, int32_t *n) {
    *n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || *n >= cap) return -1;
        out[(*n)++] = (int32_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return 0;
}

int qn_cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *ids = NULL, *out_path = NULL, *isa_name = NULL, *trace = NULL;
    int n_greedy = 0, n_threads = qn_tool_default_threads();
    bool help = false, no_special = false;
    qn_tool_device_opts dev = QN_TOOL_DEVICE_OPTS_INIT;
    const qn_arg table[] = {
        {"model", NULL, 'm', QN_ARG_STR, &model_path, "GGUF model"},
        {"prompt", NULL, 'p', QN_ARG_STR, &prompt, "prompt text (tokenized with add_special, parse_special)"},
        {"tokens", NULL, 0, QN_ARG_STR, &ids, "comma-separated token ids instead of a prompt"},
        {"no-special", NULL, 0, QN_ARG_BOOL, &no_special, "tokenize without BOS/EOS and special parsing"},
        {"out", NULL, 'o', QN_ARG_STR, &out_path, "write f32 logits [n_tokens][n_vocab] here"},
        {"trace", NULL, 0, QN_ARG_STR, &trace, "write each layer's intermediate rows to DIR/<stage>-<layer>.f32"},
        {"greedy", NULL, 0, QN_ARG_INT, &n_greedy, "continue greedily for N tokens (ignores EOS)"},
        {"threads", NULL, 't', QN_ARG_INT, &n_threads, "CPU threads"},
        {"isa", NULL, 0, QN_ARG_STR, &isa_name, "CPU kernels: auto|scalar|avx2|avx512|neon|neon_dotprod"},
        QN_TOOL_DEVICE_ARGS(dev),
        {"help", NULL, 'h', QN_ARG_BOOL, &help, "this help"},
    };
    const int nt = (int)(sizeof table / sizeof table[0]);
    const char *pos[1];
    int n_pos;
    if (!qn_args_parse("logits", argc, argv, table, nt, pos, 0, &n_pos)) return 1;
    if (help || (!prompt && !ids)) {
        qn_args_usage("logits", "-m MODEL (-p PROMPT | --tokens IDS) [--out FILE] [--greedy N]", table, nt);
        return help ? 0 : 1;
    }
    qn_cpu_isa isa;
    if (qn_tool_parse_isa("logits", isa_name, &isa) != 0 || n_greedy < 0) return 1;
    qn_model *m = qn_tool_load_model("logits", model_path);
    if (!m) return 1;
    int rc = 1;
    const int32_t cap = (int32_t)((prompt ? strlen(prompt) : strlen(ids)) + 16 + (size_t)n_greedy);
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)cap), n = 0;
    const int32_t n_vocab = m->cfg.n_vocab;
    float *logits = NULL;
    qn_ctx *ctx = NULL;
    qn_error err = {0};
    if (!toks) goto done;
    if (ids ? parse_ids(ids, toks, cap, &n) != 0
            : qn_vocab_tokenize(m->vocab, prompt, strlen(prompt), !no_special, !no_special, toks, cap, &n) != QN_OK) {
        fprintf(stderr, "quern logits: cannot read the tokens\n");
        goto done;
    }
    if (n < 1) {
        fprintf(stderr, "quern logits: empty prompt\n");
        goto done;
    }
    qn_ctx_params cp = qn_ctx_params_default();
    cp.n_ctx = n + n_greedy + 1;
    cp.n_threads = n_threads;
    cp.isa = isa;
    if (qn_tool_apply_device("logits", &dev, &cp) != 0) goto done;
    logits = malloc(sizeof(float) * (size_t)n * (size_t)n_vocab);
    if (!logits || qn_ctx_create(m, &cp, &ctx, &err) != QN_OK) {
        fprintf(stderr, "quern logits: %s\n", logits ? err.msg : "out of memory");
        goto done;
    }
    if (trace) qn_ctx_set_tap(ctx, trace_tap, (void *)trace);
    if (qn_ctx_eval(ctx, toks, n, 0, true, logits, &err) != QN_OK) {
        fprintf(stderr, "quern logits: %s\n", logits ? err.msg : "out of memory");
        goto done;
    }
    if (out_path) {
        FILE *f = fopen(out_path, "wb");
        if (!f || fwrite(logits, sizeof(float) * (size_t)n_vocab, (size_t)n, f) != (size_t)n || fclose(f) != 0) {
            fprintf(stderr, "quern logits: cannot write '%s'\n", out_path);
            goto done;
        }
    }
    qn_ctx_set_tap(ctx, NULL, NULL);
    printf("{\"tokens\": [");
    for (int32_t i = 0; i < n; i++) printf("%s%d", i ? ", " : "", toks[i]);
    printf("], \"greedy\": [");
    const float *last = logits + (int64_t)(n - 1) * n_vocab;
    for (int32_t g = 0; g < n_greedy; g++) {
        const int32_t id = qn_argmax_f32(last, n_vocab);
        printf("%s%d", g ? ", " : "", id);
        toks[n + g] = id;
        if (g + 1 < n_greedy) {
            if (qn_ctx_eval(ctx, &toks[n + g], 1, n + g, false, logits, &err) != QN_OK) {
                fprintf(stderr, "quern logits: %s\n", err.msg);
                goto done;
            }
            last = logits;
        }
    }
    printf("]}\n");
    rc = 0;
done:
    qn_ctx_destroy(ctx);
    free(logits);
    free(toks);
    qn_model_free(m);
    return rc;
}
