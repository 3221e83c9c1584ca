/* bench_serve.c — `quern bench serve`: serving load generator (work in progress). */
#include <stdio.h>

#include "commands.h"

int qn_cmd_bench_serve(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "quern bench serve: not implemented yet\n");
    return 1;
}
