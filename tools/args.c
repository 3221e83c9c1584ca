/* args.c — flag parsing for tools/ (args.h). */
#include "args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const qn_arg *find(const qn_arg *t, int n, const char *name, size_t len, char short_name) {
    for (int i = 0; i < n; i++) {
        if (short_name) {
            if (t[i].short_name == short_name) return &t[i];
            continue;
        }
        if (strlen(t[i].name) == len && !strncmp(t[i].name, name, len)) return &t[i];
        if (t[i].alias && strlen(t[i].alias) == len && !strncmp(t[i].alias, name, len)) return &t[i];
    }
    return NULL;
}

static bool set_value(const char *cmd, const qn_arg *a, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (a->type) {
    case QN_ARG_STR: *(const char **)a->dst = v; return true;
    case QN_ARG_INT: {
        long x = strtol(v, &end, 10);
        if (errno || !*v || *end || x < -2147483647L || x > 2147483647L) break;
        *(int *)a->dst = (int)x;
        return true;
    }
    case QN_ARG_I64: {
        long long x = strtoll(v, &end, 10);
        if (errno || !*v || *end) break;
        *(int64_t *)a->dst = x;
        return true;
    }
    case QN_ARG_FLOAT: {
        float x = strtof(v, &end);
        if (errno || !*v || *end) break;
        *(float *)a->dst = x;
        return true;
    }
    case QN_ARG_BOOL: *(bool *)a->dst = true; return true;
    case QN_ARG_STR_LIST: {
        qn_arg_list *l = a->dst;
        if (l->n >= QN_ARG_LIST_CAP) {
            fprintf(stderr, "quern %s: --%s given more than %d times\n", cmd, a->name, QN_ARG_LIST_CAP);
            return false;
        }
        l->v[l->n++] = v;
        return true;
    }
    }
    fprintf(stderr, "quern %s: --%s: invalid value '%s'\n", cmd, a->name, v);
    return false;
}

bool qn_args_parse(const char *cmd, int argc, char **argv, const qn_arg *table, int n_table, const char **pos,
                   int pos_cap, int *n_pos) {
    *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const qn_arg *a = NULL;
        const char *val = NULL;
        if (s[0] == '-' && s[1] == '-' && s[2]) {
            const char *eq = strchr(s + 2, '=');
            size_t len = eq ? (size_t)(eq - s - 2) : strlen(s + 2);
            a = find(table, n_table, s + 2, len, 0);
            if (eq) val = eq + 1;
        } else if (s[0] == '-' && s[1] && !s[2]) {
            a = find(table, n_table, NULL, 0, s[1]);
        } else if (s[0] == '-' && s[1] && s[1] != '-' && !(s[1] >= '0' && s[1] <= '9') && s[1] != '.') {
            a = find(table, n_table, s + 1, strlen(s + 1), 0); /* -np, -tp: llama-server style */
        } else {
            if (*n_pos >= pos_cap) {
                fprintf(stderr, "quern %s: unexpected argument '%s'\n", cmd, s);
                return false;
            }
            pos[(*n_pos)++] = s;
            continue;
        }
        if (!a) {
            fprintf(stderr, "quern %s: unknown flag '%s' (see quern %s --help)\n", cmd, s, cmd);
            return false;
        }
        if (a->type == QN_ARG_BOOL) {
            if (val) {
                fprintf(stderr, "quern %s: --%s takes no value\n", cmd, a->name);
                return false;
            }
            *(bool *)a->dst = true;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "quern %s: --%s needs a value\n", cmd, a->name);
                return false;
            }
            val = argv[++i];
        }
        if (!set_value(cmd, a, val)) return false;
    }
    return true;
}

void qn_args_usage(const char *cmd, const char *synopsis, const qn_arg *table, int n_table) {
    printf("usage: quern %s %s\n\noptions:\n", cmd, synopsis);
    for (int i = 0; i < n_table; i++) {
        if (!table[i].help) continue;
        char names[64];
        if (table[i].short_name)
            snprintf(names, sizeof names, "-%c, --%s", table[i].short_name, table[i].name);
        else
            snprintf(names, sizeof names, "    --%s", table[i].name);
        printf("  %-28s %s\n", names, table[i].help);
    }
}
