/* run.c — `quern run -m MODEL [-p PROMPT] [--chat] [-n N] [--temp T] [--seed S] [-t THREADS]
 * [--device auto|cpu|cuda]`:
 * tokenizes the prompt (through the chat template with --chat) and generates through the serving
 * engine (the runtime `quern serve` uses, one_request.h), streaming text to stdout (never splitting a
 * UTF-8 code point). Prompt and generation tokens/s go to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "load_hf.h"
#include "one_request.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/vocab.h"

typedef struct run_opts {
    const char *model, *vocab, *prompt, *prompt_file, *system, *isa;
    bool chat, ignore_eos, token_ids, no_repack, help;
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

/* Generates through the serving engine (one_request.h), streaming text to stdout. */
static int generate(const run_opts *o, qn_engine *e, const int32_t *toks, int32_t n_prompt) {
    qn_gen_params gp;
    memset(&gp, 0, sizeof gp);
    gp.sampling = qn_sampler_params_default();
    gp.sampling.temperature = o->temp;
    gp.sampling.top_k = o->top_k;
    gp.sampling.top_p = o->top_p;
    gp.sampling.min_p = o->min_p;
    gp.sampling.repetition_penalty = o->repeat_penalty;
    gp.sampling.presence_penalty = o->presence;
    gp.sampling.frequency_penalty = o->frequency;
    gp.sampling.seed = (uint64_t)o->seed;
    gp.max_tokens = o->n_predict;
    gp.ignore_eos = o->ignore_eos;
    gp.n_logprobs = -1;
    qn_one_result r;
    if (o->n_predict > 0 && qn_one_generate(e, toks, n_prompt, &gp, stdout, o->token_ids ? stderr : NULL, &r) != QN_OK) {
        fprintf(stderr, "\nquern run: %s\n", r.error_msg[0] ? r.error_msg : qn_status_str(r.error));
        return 1;
    }
    if (o->n_predict == 0) return 0;
    printf("\n");
    const int32_t n_dec = r.n_tokens > 1 ? r.n_tokens - 1 : 0;
    fprintf(stderr, "\nprompt: %d tokens in %.3f s, %.2f tokens/s\n", n_prompt, r.t_prefill,
            r.t_prefill > 0 ? n_prompt / r.t_prefill : 0.0);
    fprintf(stderr, "generation: %d tokens (%d decode steps in %.3f s), %.2f tokens/s (%s%s)\n", r.n_tokens, n_dec,
            r.t_decode, r.t_decode > 0 ? n_dec / r.t_decode : 0.0, qn_engine_backend_name(e),
            qn_engine_samples_on_device(e, &gp) ? ", sampling on the GPU" : "");
    return 0;
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
        {"isa", NULL, 0, QN_ARG_STR, &o.isa, "CPU kernels: auto|scalar|avx2|avx512|neon|neon_dotprod"},
        {"no-repack", NULL, 0, QN_ARG_BOOL, &o.no_repack, "no 8-row CPU repack of K-quant/Q4_0/Q5_x/Q8_0 weights (A/B)"},
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
    qn_engine *eng = NULL;
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
    const qn_one_engine_opts eo = {.n_ctx = o.n_ctx, .n_batch = 512, .n_threads = o.n_threads, .isa = isa, .no_repack = o.no_repack,
                                   .prefix_cache = false};
    if (!(eng = qn_one_engine_create("run", m, &eo, &o.dev))) goto done;
    rc = generate(&o, eng, toks, n_prompt);
done:
    qn_engine_destroy(eng);
    free(toks);
    free(text);
    free(file_text);
    qn_model_free(m);
    return rc;
}
