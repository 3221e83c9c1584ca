/* main.c — `quern` subcommand dispatch; the one place that reads the environment. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "quern.h"

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: quern <run|serve|bench|perplexity|quantize|convert|inspect> [args]\n");
        return argc < 2 ? 1 : 0;
    }
    if (!strcmp(argv[1], "inspect")) return qn_cmd_inspect(argc - 1, argv + 1);
    fprintf(stderr, "quern: unknown subcommand '%s'\n", argv[1]);
    return 1;
}
