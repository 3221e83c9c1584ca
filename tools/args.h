/* args.h — a small flag-table parser shared by the subcommands (long and short spellings).
 * Flags: --name VALUE, --name=VALUE, -x VALUE; booleans take no value. A single dash before several
 * letters (-np, -tp) is looked up as a long name, as llama-server spells some flags. Unknown flags,
 * missing or malformed values are reported on stderr with the flag name and make qn_args_parse fail.
 * Table entries with help == NULL are accepted but left out of the usage text (extra spellings). */
#ifndef QN_ARGS_H
#define QN_ARGS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum qn_arg_type { QN_ARG_STR, QN_ARG_INT, QN_ARG_I64, QN_ARG_FLOAT, QN_ARG_BOOL, QN_ARG_STR_LIST } qn_arg_type;

/* A repeatable string flag (QN_ARG_STR_LIST): every occurrence is appended. */
#define QN_ARG_LIST_CAP 32
typedef struct qn_arg_list {
    const char *v[QN_ARG_LIST_CAP];
    int n;
} qn_arg_list;

typedef struct qn_arg {
    const char *name;   /* long name without dashes, e.g. "model" */
    const char *alias;  /* second long name or NULL, e.g. "ctx-size" */
    char short_name;    /* 'm' or 0 */
    qn_arg_type type;
    void *dst;          /* const char ** | int * | int64_t * | float * | bool * | qn_arg_list * */
    const char *help;
} qn_arg;

/* Parses argv[1..argc) against the table; positional arguments are collected into pos (cap n). */
bool qn_args_parse(const char *cmd, int argc, char **argv, const qn_arg *table, int n_table, const char **pos,
                   int pos_cap, int *n_pos);
void qn_args_usage(const char *cmd, const char *synopsis, const qn_arg *table, int n_table);

#endif
