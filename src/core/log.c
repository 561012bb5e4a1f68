/* log.c: leveled logging to stderr; one fprintf per line so lines from threads do not interleave. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>

static mg_log_level g_level = MG_LOG_INFO;

void mg_log_set_level(mg_log_level level) { g_level = level; }
mg_log_level mg_log_get_level(void) { return g_level; }

void mg_log(mg_log_level level, const char *fmt, ...) {
    if (level > g_level) return;
    static const char *prefix[] = {"error: ", "warning: ", "", "debug: "};
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s%s\n", prefix[level], line);
}
