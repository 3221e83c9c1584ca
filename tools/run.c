/* run.c — `quern run -m MODEL [-p PROMPT] [--chat] [-n N] [--temp T] [--seed S] [-t THREADS]
 * [--device auto|cpu|cuda]`:
 * tokenizes the prompt (through the chat template with --chat), evaluates it, then samples and
 * streams text to stdout (never splitting a UTF-8 code point). Prompt and generation tokens/s go
 * to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "load_hf.h"
#include "exec/context.h"
#include "exec/sampling.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/vocab.h"

typedef struct run_opts {
    const char *model, *vocab, *prompt, *prompt_file, *system, *isa;
    bool chat, ignore_eos, token_ids, help;
    int n_predict, n_threads, n_ctx, top_k;
    float temp, top_p, min_p, repeat_penalty, presence, frequency;
    int64_t seed;
    qn_tool_device_opts dev;
} run_opts;

static char *build_prompt(const run_opts *o, const qn_model *m, const char *user) {
    if (!o->chat) return strdup(user);
    qn_chat_msg msgs[2];
    size_t n = 0;
    if (o->system) msgs[n++] = (qn_chat_msg){.role = "system", .content = o->system};
    msgs[n++] = (qn_chat_msg){.role = "user", .content = user};
    if (qn_chat_template_is_fallback(m->chat))
        fprintf(stderr, "quern run: warning: unknown chat template, using chatml\n");
    char *out = NULL;
    const qn_status st = qn_chat_template_render(m->chat, msgs, n, true, NULL, &out);
    if (st != QN_OK) fprintf(stderr, "quern run: chat template: %s\n", qn_status_str(st));
    return out;
}

static int generate(const run_opts *o, qn_model *m, qn_ctx *ctx, int32_t *toks, int32_t n_prompt) {
    const int32_t n_vocab = m->cfg.n_vocab;
    float *logits = malloc(sizeof(float) * (size_t)n_vocab);
    qn_sampler_params sp = qn_sampler_params_default();
    sp.temperature = o->temp;
    sp.top_k = o->top_k;
    sp.top_p = o->top_p;
    sp.min_p = o->min_p;
    sp.repetition_penalty = o->repeat_penalty;
    sp.presence_penalty = o->presence;
    sp.frequency_penalty = o->frequency;
    sp.seed = (uint64_t)o->seed;
    qn_sampler smp;
    qn_error err = {0};
    if (!logits || qn_sampler_init(&smp, &sp, n_vocab, &err) != QN_OK) {
        fprintf(stderr, "quern run: %s\n", logits ? err.msg : "out of memory");
        free(logits);
        return 1;
    }
    int rc = 1;
    /* On a GPU without penalties the token is sampled on the device (only its id crosses PCIe), with
     * the uniform draw of the same seeded RNG the host sampler would use. */
    const bool dev_sample = qn_ctx_samples_on_device(ctx) && sp.repetition_penalty == 1.0f &&
                            sp.presence_penalty == 0.0f && sp.frequency_penalty == 0.0f;
    qn_sample_row_params rp = {.temperature = sp.temperature, .top_k = sp.top_k, .top_p = sp.top_p, .min_p = sp.min_p};
    int32_t next = -1;
    double t0 = qn_tool_now_s();
    if (dev_sample) rp.u = sp.temperature > 0 ? qn_sampler_uniform(&smp) : 0.0f;
    if (dev_sample ? qn_ctx_eval_prompt_sample(ctx, toks, n_prompt, &rp, &next, &err) != QN_OK
                   : qn_ctx_eval(ctx, toks, n_prompt, 0, false, logits, &err) != QN_OK) {
        fprintf(stderr, "quern run: %s\n", err.msg);
        goto done;
    }
    const double t_prompt = qn_tool_now_s() - t0;
    qn_detok dt;
    qn_detok_init(&dt, m->vocab, false);
    int32_t n_gen = 0, n_past = n_prompt;
    char buf[256];
    t0 = qn_tool_now_s();
    while (n_gen < o->n_predict) {
        const int32_t id = dev_sample ? next : qn_sampler_sample(&smp, logits, toks, n_past, NULL, NULL, 0);
        if (!o->ignore_eos && qn_vocab_is_eog(m->vocab, id)) break;
        toks[n_past] = id;
        n_gen++;
        if (o->token_ids) fprintf(stderr, "%d ", id);
        int32_t n_out = 0;
        qn_detok_feed(&dt, id, buf, (int32_t)sizeof buf, &n_out);
        fwrite(buf, 1, (size_t)n_out, stdout);
        fflush(stdout);
        if (n_past + 1 >= qn_ctx_n_ctx(ctx) || n_gen >= o->n_predict) break;
        if (dev_sample) rp.u = sp.temperature > 0 ? qn_sampler_uniform(&smp) : 0.0f;
        if (dev_sample ? qn_ctx_eval_sample(ctx, toks[n_past], n_past, &rp, &next, &err) != QN_OK
                       : qn_ctx_eval(ctx, &toks[n_past], 1, n_past, false, logits, &err) != QN_OK) {
            fprintf(stderr, "\nquern run: %s\n", err.msg);
            goto done;
        }
        n_past++;
    }
    int32_t n_fl = 0;
    qn_detok_flush(&dt, buf, (int32_t)sizeof buf, &n_fl);
    fwrite(buf, 1, (size_t)n_fl, stdout);
    printf("\n");
    const double t_gen = qn_tool_now_s() - t0;
    fprintf(stderr, "\nprompt: %d tokens in %.3f s, %.2f tokens/s\n", n_prompt, t_prompt, n_prompt / t_prompt);
    fprintf(stderr, "generation: %d tokens in %.3f s, %.2f tokens/s (%s%s)\n", n_gen, t_gen,
            n_gen > 0 ? n_gen / t_gen : 0.0, qn_ctx_backend_name(ctx), dev_sample ? ", sampling on the GPU" : "");
    rc = 0;
done:
    qn_sampler_free(&smp);
    free(logits);
    return rc;
}

int qn_cmd_run(int argc, char **argv) {
    run_opts o = {.dev = QN_TOOL_DEVICE_OPTS_INIT, .n_predict = 128, .n_threads = qn_tool_default_threads(), .n_ctx = 4096, .top_k = 40,
                  .temp = 0.8f, .top_p = 0.95f, .min_p = 0.05f, .repeat_penalty = 1.0f, .seed = 0x5eed};
    const qn_arg table[] = {
        {"model", NULL, 'm', QN_ARG_STR, &o.model, "GGUF model or HF directory (default: SmolLM2-135M-Instruct Q4_1)"},
        {"vocab", NULL, 0, QN_ARG_STR, &o.vocab, "GGUF to take the tokenizer from (HF directories)"},
        {"prompt", NULL, 'p', QN_ARG_STR, &o.prompt, "prompt text"},
        {"file", NULL, 'f', QN_ARG_STR, &o.prompt_file, "read the prompt from a file"},
        {"chat", NULL, 0, QN_ARG_BOOL, &o.chat, "wrap the prompt in the model's chat template"},
        {"system", NULL, 0, QN_ARG_STR, &o.system, "system message (with --chat)"},
        {"n-predict", "max-tokens", 'n', QN_ARG_INT, &o.n_predict, "tokens to generate (128)"},
        {"temp", "temperature", 0, QN_ARG_FLOAT, &o.temp, "temperature; 0 = greedy (0.8)"},
        {"top-k", NULL, 0, QN_ARG_INT, &o.top_k, "top-k, 0 = off (40)"},
        {"top-p", NULL, 0, QN_ARG_FLOAT, &o.top_p, "top-p (0.95)"},
        {"min-p", NULL, 0, QN_ARG_FLOAT, &o.min_p, "min-p (0.05)"},
        {"repeat-penalty", "repetition-penalty", 0, QN_ARG_FLOAT, &o.repeat_penalty, "repetition penalty (1.0)"},
        {"presence-penalty", NULL, 0, QN_ARG_FLOAT, &o.presence, "presence penalty (0)"},
        {"frequency-penalty", NULL, 0, QN_ARG_FLOAT, &o.frequency, "frequency penalty (0)"},
        {"seed", NULL, 's', QN_ARG_I64, &o.seed, "sampling seed"},
        {"threads", NULL, 't', QN_ARG_INT, &o.n_threads, "CPU threads (all cores)"},
        {"ctx-size", "max-model-len", 'c', QN_ARG_INT, &o.n_ctx, "context length (4096)"},
        {"ignore-eos", NULL, 0, QN_ARG_BOOL, &o.ignore_eos, "keep generating after end-of-generation tokens"},
        {"token-ids", NULL, 0, QN_ARG_BOOL, &o.token_ids, "print generated token ids on stderr"},
        {"isa", NULL, 0, QN_ARG_STR, &o.isa, "CPU kernels: auto|scalar|avx2|avx512|neon"},
        QN_TOOL_DEVICE_ARGS(o.dev),
        {"help", NULL, 'h', QN_ARG_BOOL, &o.help, "this help"},
    };
    const int nt = (int)(sizeof table / sizeof table[0]);
    const char *pos[1];
    int n_pos = 0;
    if (!qn_args_parse("run", argc, argv, table, nt, pos, 1, &n_pos)) return 1;
    if (o.help) {
        qn_args_usage("run", "[-m MODEL] [-p PROMPT] [--chat] [-n N] [--temp T] [--seed S] [-t THREADS]", table, nt);
        return 0;
    }
    if (n_pos == 1 && !o.prompt) o.prompt = pos[0];
    if (o.n_predict < 0 || o.n_threads < 1 || o.n_ctx < 1) {
        fprintf(stderr, "quern run: -n must be >= 0, -t and -c >= 1\n");
        return 1;
    }
    qn_cpu_isa isa;
    if (qn_tool_parse_isa("run", o.isa, &isa) != 0) return 1;
    char *file_text = NULL;
    size_t flen = 0;
    if (o.prompt_file && !(file_text = qn_tool_read_text("run", o.prompt_file, &flen))) return 1;
    const char *user = file_text ? file_text : (o.prompt ? o.prompt : "Once upon a time");
    qn_model *m = qn_tool_load_model_vocab("run", o.model, o.vocab);
    if (!m) {
        free(file_text);
        return 1;
    }
    int rc = 1;
    int32_t *toks = NULL;
    qn_ctx *ctx = NULL;
    char *text = build_prompt(&o, m, user);
    if (!text) goto done;
    const size_t tlen = strlen(text);
    const int32_t cap = (int32_t)tlen + 16 + o.n_predict;
    toks = malloc(sizeof(int32_t) * (size_t)cap);
    int32_t n_prompt = 0;
    if (!toks || qn_vocab_tokenize(m->vocab, text, tlen, true, true, toks, cap, &n_prompt) != QN_OK || n_prompt < 1) {
        fprintf(stderr, "quern run: cannot tokenize the prompt\n");
        goto done;
    }
    if (n_prompt + o.n_predict > o.n_ctx) {
        fprintf(stderr, "quern run: prompt (%d tokens) + -n %d exceeds the context of %d (use -c)\n", n_prompt,
                o.n_predict, o.n_ctx);
        goto done;
    }
    qn_ctx_params cp = qn_ctx_params_default();
    cp.n_ctx = o.n_ctx;
    cp.n_threads = o.n_threads;
    cp.isa = isa;
    if (qn_tool_apply_device("run", &o.dev, &cp) != 0) goto done;
    qn_error err = {0};
    if (qn_ctx_create(m, &cp, &ctx, &err) != QN_OK) {
        fprintf(stderr, "quern run: %s\n", err.msg);
        goto done;
    }
    rc = generate(&o, m, ctx, toks, n_prompt);
done:
    qn_ctx_destroy(ctx);
    free(toks);
    free(text);
    free(file_text);
    qn_model_free(m);
    return rc;
}
