/* log.c — stderr logger. The level is set once at start-up by tools/main.c (before threads). */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>

static qn_log_level g_level = QN_LOG_WARN; /* written once at start-up, read-only afterwards */

void qn_log_set_level(qn_log_level lvl) { g_level = lvl; }

void qn_log(qn_log_level lvl, const char *fmt, ...) {
    static const char *const tags[] = {"error", "warn", "info", "debug"};
    if (lvl > g_level) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "quern: %s: ", tags[lvl]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
