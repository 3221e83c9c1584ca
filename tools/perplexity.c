/* perplexity.c — `quern perplexity -m MODEL -f TEXT [--ctx 512]`, llama.cpp's method: tokenize the
 * whole text (BOS per the vocab), split into non-overlapping windows of ctx tokens (the first token
 * of each window replaced by BOS when the vocab adds one), evaluate each window from an empty
 * cache and score the second half: logits at position j predict token j+1 for j in
 * [ctx/2, ctx-2]. Prints running estimates and, last, `perplexity: X`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "load_hf.h"
#include "exec/context.h"
#include "tokenizer/vocab.h"

static double nll_of(const float *logits, int32_t n_vocab, int32_t target) {
    float mx = logits[0];
    for (int32_t i = 1; i < n_vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - mx);
    return -((double)logits[target] - mx - log(sum));
}

int qn_cmd_perplexity(int argc, char **argv) {
    const char *model_path = NULL, *vocab = NULL, *text_path = NULL, *isa = NULL;
    int n_ctx = 512, n_threads = qn_tool_default_threads(), n_chunks = -1, n_batch = 512;
    bool help = false, no_repack = false;
    qn_tool_device_opts dev = QN_TOOL_DEVICE_OPTS_INIT;
    const qn_arg table[] = {
        {"model", NULL, 'm', QN_ARG_STR, &model_path, "GGUF model or HF directory (default: SmolLM2-135M-Instruct Q4_1)"},
        {"vocab", NULL, 0, QN_ARG_STR, &vocab, "GGUF to take the tokenizer from (HF directories)"},
        {"file", NULL, 'f', QN_ARG_STR, &text_path, "text file to evaluate"},
        {"ctx", "ctx-size", 'c', QN_ARG_INT, &n_ctx, "window size in tokens (512)"},
        {"batch", "batch-size", 'b', QN_ARG_INT, &n_batch, "tokens per forward step (512)"},
        {"chunks", NULL, 0, QN_ARG_INT, &n_chunks, "evaluate at most N windows (all)"},
        {"threads", NULL, 't', QN_ARG_INT, &n_threads, "CPU threads (all cores)"},
        {"isa", NULL, 0, QN_ARG_STR, &isa, "CPU kernels: auto|scalar|avx2|avx512|neon|neon_dotprod"},
        {"no-repack", NULL, 0, QN_ARG_BOOL, &no_repack, "no 8-row CPU repack of K-quant/Q4_0/Q5_x/Q8_0 weights (A/B)"},
        QN_TOOL_DEVICE_ARGS(dev),
        {"help", NULL, 'h', QN_ARG_BOOL, &help, "this help"},
    };
    const int nt = (int)(sizeof table / sizeof table[0]);
    const char *pos[1];
    int n_pos;
    if (!qn_args_parse("perplexity", argc, argv, table, nt, pos, 0, &n_pos)) return 1;
    if (help) {
        qn_args_usage("perplexity", "-m MODEL -f TEXT [--ctx 512]", table, nt);
        return 0;
    }
    if (!text_path) {
        fprintf(stderr, "quern perplexity: -f TEXT is required\n");
        return 1;
    }
    if (n_ctx < 8 || n_threads < 1 || n_batch < 1) {
        fprintf(stderr, "quern perplexity: --ctx must be >= 8, --threads and --batch >= 1\n");
        return 1;
    }
    qn_cpu_isa want = QN_CPU_ISA_AUTO;
    if (qn_tool_parse_isa("perplexity", isa, &want) != 0) return 1;
    size_t len = 0;
    char *text = qn_tool_read_text("perplexity", text_path, &len);
    if (!text) return 1;
    qn_model *m = qn_tool_load_model_vocab("perplexity", model_path, vocab);
    if (!m) {
        free(text);
        return 1;
    }
    int rc = 1;
    int32_t *tokens = malloc(sizeof(int32_t) * (len + 16));
    float *logits = NULL;
    qn_ctx *ctx = NULL;
    int32_t n_tok = 0;
    qn_error err = {0};
    if (!tokens || qn_vocab_tokenize(m->vocab, text, len, true, false, tokens, (int32_t)(len + 16), &n_tok) != QN_OK) {
        fprintf(stderr, "quern perplexity: tokenization failed\n");
        goto done;
    }
    if (n_tok < 2 * n_ctx) {
        fprintf(stderr, "quern perplexity: need at least %d tokens for --ctx %d; '%s' has %d\n", 2 * n_ctx, n_ctx,
                text_path, n_tok);
        goto done;
    }
    qn_ctx_params cp = qn_ctx_params_default();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch < n_ctx ? n_batch : n_ctx;
    cp.n_threads = n_threads;
    cp.isa = want;
    cp.no_repack = no_repack;
    if (qn_tool_apply_device("perplexity", &dev, &cp) != 0) goto done;
    if (qn_ctx_create(m, &cp, &ctx, &err) != QN_OK) {
        fprintf(stderr, "quern perplexity: %s\n", err.msg);
        goto done;
    }
    const int32_t n_vocab = m->cfg.n_vocab;
    logits = malloc(sizeof(float) * (size_t)n_ctx * (size_t)n_vocab);
    if (!logits) {
        fprintf(stderr, "quern perplexity: out of memory\n");
        goto done;
    }
    int n_chunk = n_tok / n_ctx;
    if (n_chunks > 0 && n_chunks < n_chunk) n_chunk = n_chunks;
    const int first = n_ctx / 2;
    fprintf(stderr, "perplexity: %d tokens, %d chunks of %d, %s\n", n_tok, n_chunk, n_ctx,
            qn_ctx_backend_name(ctx));
    double nll = 0.0, t0 = qn_tool_now_s();
    int64_t count = 0;
    for (int i = 0; i < n_chunk; i++) {
        int32_t *w = tokens + (int64_t)i * n_ctx;
        if (qn_tool_eval_window(ctx, m, w, n_ctx, first, logits, &err) != QN_OK) {
            fprintf(stderr, "quern perplexity: %s\n", err.msg);
            goto done;
        }
        for (int j = first; j < n_ctx - 1; j++) nll += nll_of(logits + (int64_t)j * n_vocab, n_vocab, w[j + 1]);
        count += n_ctx - 1 - first;
        printf("[%d]%.4f,", i + 1, exp(nll / (double)count));
        fflush(stdout);
    }
    const double dt = qn_tool_now_s() - t0;
    printf("\n");
    fprintf(stderr, "perplexity: %.1f s, %.1f tokens/s\n", dt, (double)n_chunk * n_ctx / dt);
    printf("perplexity: %.4f\n", exp(nll / (double)count));
    rc = 0;
done:
    qn_ctx_destroy(ctx);
    free(logits);
    free(tokens);
    free(text);
    qn_model_free(m);
    return rc;
}
