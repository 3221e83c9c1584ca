/* synth.c — placeholder, filled in next. */
#include <stdio.h>

#include "commands.h"

int qn_cmd_synth(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "quern synth: not written yet\n");
    return 1;
}
