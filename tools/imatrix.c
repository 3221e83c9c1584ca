/* imatrix.c — `quern imatrix -m MODEL -f TEXT [-o imatrix.gguf] [--ctx 512] [--chunks N] [-t N]
 * [--output-format gguf|dat] [--process-output]`: llama-imatrix's importance matrix. The text is
 * tokenized (BOS per the vocab) and cut into non-overlapping windows of ctx tokens (the first token
 * of each replaced by BOS when the vocab adds one); each window is evaluated from an empty cache on
 * the CPU and every token's matmul inputs add Σx² per column to the weights they feed (all tokens
 * count, not only the second half that perplexity scores). The file is llama.cpp's GGUF (default) or
 * legacy .dat (runtime/model/imatrix.h), and feeds `quern quantize --imatrix` and llama-quantize. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "exec/context.h"
#include "model/imatrix.h"
#include "tokenizer/vocab.h"

int qn_cmd_imatrix(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *out_path = "imatrix.gguf", *format = NULL, *isa = NULL;
    int n_ctx = 512, n_threads = qn_tool_default_threads(), n_chunks = -1;
    bool help = false, process_output = false;
    const qn_arg table[] = {
        {"model", NULL, 'm', QN_ARG_STR, &model_path, "GGUF model (default: SmolLM2-135M-Instruct Q4_1)"},
        {"file", NULL, 'f', QN_ARG_STR, &text_path, "calibration text"},
        {"output", "output-file", 'o', QN_ARG_STR, &out_path, "output file (imatrix.gguf)"},
        {"output-format", NULL, 0, QN_ARG_STR, &format, "gguf|dat (gguf; dat: llama.cpp's legacy format)"},
        {"ctx", "ctx-size", 'c', QN_ARG_INT, &n_ctx, "window size in tokens (512)"},
        {"chunks", NULL, 0, QN_ARG_INT, &n_chunks, "process at most N windows (all)"},
        {"process-output", NULL, 0, QN_ARG_BOOL, &process_output, "also collect output.weight (untied models)"},
        {"threads", NULL, 't', QN_ARG_INT, &n_threads, "CPU threads (all cores)"},
        {"isa", NULL, 0, QN_ARG_STR, &isa, "CPU kernels: auto|scalar|avx2|avx512|neon|neon_dotprod"},
        {"help", NULL, 'h', QN_ARG_BOOL, &help, "this help"},
    };
    const int nt = (int)(sizeof table / sizeof table[0]);
    const char *pos[1];
    int n_pos;
    if (!qn_args_parse("imatrix", argc, argv, table, nt, pos, 0, &n_pos)) return 1;
    if (help) {
        qn_args_usage("imatrix", "-m MODEL -f TEXT [-o imatrix.gguf] [--ctx 512] [--chunks N]", table, nt);
        return 0;
    }
    const bool dat = format && !strcmp(format, "dat");
    if (!text_path || (format && !dat && strcmp(format, "gguf"))) {
        fprintf(stderr, "quern imatrix: -f TEXT is required; --output-format is gguf or dat\n");
        return 1;
    }
    if (n_ctx < 16 || n_threads < 1) {
        fprintf(stderr, "quern imatrix: --ctx must be >= 16 and --threads >= 1\n");
        return 1;
    }
    qn_cpu_isa want = QN_CPU_ISA_AUTO;
    if (qn_tool_parse_isa("imatrix", isa, &want) != 0) return 1;
    size_t len = 0;
    char *text = qn_tool_read_text("imatrix", text_path, &len);
    if (!text) return 1;
    qn_model *m = qn_tool_load_model("imatrix", model_path);
    if (!m) {
        free(text);
        return 1;
    }
    int rc = 1;
    int32_t *tokens = malloc(sizeof(int32_t) * (len + 16)), n_tok = 0;
    float *logits = NULL;
    qn_ctx *ctx = NULL;
    qn_imatrix *im = NULL;
    qn_error err = {0};
    if (!tokens || qn_vocab_tokenize(m->vocab, text, len, true, false, tokens, (int32_t)(len + 16), &n_tok) != QN_OK) {
        fprintf(stderr, "quern imatrix: tokenization failed\n");
        goto done;
    }
    if (n_tok < 2 * n_ctx) { /* llama-imatrix's minimum */
        fprintf(stderr, "quern imatrix: need at least %d tokens for --ctx %d; '%s' has %d\n", 2 * n_ctx, n_ctx,
                text_path, n_tok);
        goto done;
    }
    qn_ctx_params cp = qn_ctx_params_default();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_ctx;
    cp.n_threads = n_threads;
    cp.isa = want;
    cp.device = QN_DEVICE_CPU; /* the tap points that collect the matmul inputs are the CPU forward's */
    if (qn_ctx_create(m, &cp, &ctx, &err) != QN_OK || qn_imatrix_create(&im, &err) != QN_OK ||
        qn_imatrix_add_dataset(im, text_path, &err) != QN_OK) {
        fprintf(stderr, "quern imatrix: %s\n", err.msg);
        goto done;
    }
    if (!(logits = malloc(sizeof(float) * (size_t)n_ctx * (size_t)m->cfg.n_vocab))) {
        fprintf(stderr, "quern imatrix: out of memory\n");
        goto done;
    }
    qn_imatrix_collector col = {.m = im, .process_output = process_output, .has_output = m->output.data != m->tok_embd.data};
    qn_ctx_set_tap(ctx, qn_imatrix_tap, &col);
    int n_chunk = n_tok / n_ctx;
    if (n_chunks > 0 && n_chunks < n_chunk) n_chunk = n_chunks;
    fprintf(stderr, "imatrix: %d tokens, %d chunks of %d\n", n_tok, n_chunk, n_ctx);
    const double t0 = qn_tool_now_s();
    for (int i = 0; i < n_chunk; i++) {
        int32_t *w = tokens + (int64_t)i * n_ctx;
        /* all logits: llama-imatrix asks for every output row (the output norm sees every token) */
        const qn_status st = qn_tool_eval_window(ctx, m, w, n_ctx, 0, logits, &err);
        if (st != QN_OK || col.st != QN_OK) {
            fprintf(stderr, "quern imatrix: %s\n", st != QN_OK ? err.msg : qn_status_str(col.st));
            goto done;
        }
        im->chunk_count = i + 1;
        fprintf(stderr, "\rimatrix: chunk %d/%d, %.1f s", i + 1, n_chunk, qn_tool_now_s() - t0);
    }
    fprintf(stderr, "\n");
    qn_ctx_set_tap(ctx, NULL, NULL);
    im->chunk_size = n_ctx;
    if ((dat ? qn_imatrix_save_dat(im, out_path, &err) : qn_imatrix_save_gguf(im, out_path, &err)) != QN_OK) {
        fprintf(stderr, "quern imatrix: %s\n", err.msg);
        goto done;
    }
    fprintf(stderr, "imatrix: %d entries, %d chunks -> %s\n", im->n, im->chunk_count, out_path);
    rc = 0;
done:
    qn_imatrix_free(im);
    qn_ctx_destroy(ctx);
    free(logits);
    free(tokens);
    free(text);
    qn_model_free(m);
    return rc;
}
