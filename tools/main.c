/* main.c — `quern` subcommand dispatch; the one place that reads the environment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"

static const char *g_env_api_key; /* $QUERN_API_KEY, read once in main() */

const char *qn_tool_env_api_key(void) { return g_env_api_key && g_env_api_key[0] ? g_env_api_key : NULL; }

typedef struct qn_subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} qn_subcommand;

static const qn_subcommand QN_SUBCOMMANDS[] = {
    {"run", qn_cmd_run, "generate text from a prompt"},
    {"serve", qn_cmd_serve, "OpenAI-compatible HTTP server (vllm serve / llama-server flags)"},
    {"perplexity", qn_cmd_perplexity, "perplexity of a text file (llama.cpp's method)"},
    {"bench", qn_cmd_bench, "llama-bench-compatible benchmark; `quern bench serve`: serving load generator; `quern bench kernels`: GPU matmuls"},
    {"inspect", qn_cmd_inspect, "metadata, tensors and config of a GGUF file or HF directory"},
    {"quantize", qn_cmd_quantize, "re-encode a GGUF model (llama.cpp types and mixes, Q4_0 ... Q6_K, F16)"},
    {"imatrix", qn_cmd_imatrix, "importance matrix of a model on a text (llama-imatrix's GGUF/dat files)"},
    {"convert", qn_cmd_convert, "Hugging Face directory -> GGUF (llama.cpp's converter; --lora merges an adapter)"},
    {"export-hf", qn_cmd_export_hf, "GGUF -> Hugging Face directory (safetensors, config, tokenizer.json)"},
    {"synth", qn_cmd_synth, "write a model of real shapes with seeded random weights (benchmarks)"},
    {"logits", qn_cmd_logits, "developer: dump logits / greedy ids for peer comparison"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: quern <command> [options]   (quern <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof QN_SUBCOMMANDS / sizeof QN_SUBCOMMANDS[0]; i++)
        fprintf(f, "  %-12s %s\n", QN_SUBCOMMANDS[i].name, QN_SUBCOMMANDS[i].help);
}

int main(int argc, char **argv) {
    qn_tool_init_env();
    g_env_api_key = getenv("QUERN_API_KEY");
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "bench") && argc > 2 && !strcmp(argv[2], "serve")) return qn_cmd_bench_serve(argc - 2, argv + 2);
    for (size_t i = 0; i < sizeof QN_SUBCOMMANDS / sizeof QN_SUBCOMMANDS[0]; i++)
        if (!strcmp(argv[1], QN_SUBCOMMANDS[i].name)) return QN_SUBCOMMANDS[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "quern: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
