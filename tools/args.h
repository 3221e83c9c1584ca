/* args.h — a small flag-table parser shared by the subcommands (long and short spellings).
 * Flags: --name VALUE, --name=VALUE, -x VALUE; booleans take no value. Unknown flags, missing or
 * malformed values are reported on stderr with the flag name and make qn_args_parse fail. */
#ifndef QN_ARGS_H
#define QN_ARGS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum qn_arg_type { QN_ARG_STR, QN_ARG_INT, QN_ARG_I64, QN_ARG_FLOAT, QN_ARG_BOOL } qn_arg_type;

typedef struct qn_arg {
    const char *name;   /* long name without dashes, e.g. "model" */
    const char *alias;  /* second long name or NULL, e.g. "ctx-size" */
    char short_name;    /* 'm' or 0 */
    qn_arg_type type;
    void *dst;          /* const char ** | int * | int64_t * | float * | bool * */
    const char *help;
} qn_arg;

/* Parses argv[1..argc) against the table; positional arguments are collected into pos (cap n). */
bool qn_args_parse(const char *cmd, int argc, char **argv, const qn_arg *table, int n_table, const char **pos,
                   int pos_cap, int *n_pos);
void qn_args_usage(const char *cmd, const char *synopsis, const qn_arg *table, int n_table);

#endif
