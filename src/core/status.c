/* status.c: the per-thread error message behind mg_error_set/mg_error_message, and mg_assert_fail. */
#include "multigrain/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MG_ERROR_MAX 1024

static _Thread_local char g_msg[MG_ERROR_MAX];
static _Thread_local char g_where[256];
static _Thread_local mg_status g_code = MG_OK;
static _Thread_local int g_reported;

mg_status mg_error_set(mg_status code, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    snprintf(g_where, sizeof g_where, "%s:%d", file ? file : "?", line);
    g_code = code;
    g_reported = 0;
    return code;
}

mg_status mg_error_wrap(mg_status code, const char *fmt, ...) {
    char prefix[MG_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Build "prefix: message" by hand, truncating at the buffer size. */
    char joined[MG_ERROR_MAX];
    size_t n = strlen(prefix);
    if (n > sizeof joined - 1) n = sizeof joined - 1;
    memcpy(joined, prefix, n);
    if (g_msg[0] && n + 2 < sizeof joined) {
        memcpy(joined + n, ": ", 2);
        n += 2;
        size_t m = strlen(g_msg);
        if (m > sizeof joined - 1 - n) m = sizeof joined - 1 - n;
        memcpy(joined + n, g_msg, m);
        n += m;
    }
    joined[n] = '\0';
    memcpy(g_msg, joined, n + 1);
    g_code = code;
    return code;
}

const char *mg_error_message(void) { return g_msg; }
const char *mg_error_where(void) { return g_where[0] ? g_where : NULL; }
mg_status mg_error_code(void) { return g_code; }

void mg_error_clear(void) {
    g_msg[0] = '\0';
    g_where[0] = '\0';
    g_code = MG_OK;
    g_reported = 0;
}

void mg_error_mark_reported(void) { g_reported = 1; }
int mg_error_reported(void) { return g_reported; }

const char *mg_status_name(mg_status code) {
    static const char *names[MG_STATUS_COUNT] = {
        [MG_OK] = "ok",
        [MG_ERR_USAGE] = "usage",
        [MG_ERR_INVALID_ARG] = "invalid argument",
        [MG_ERR_CONFIG] = "config",
        [MG_ERR_IO] = "io",
        [MG_ERR_FORMAT] = "format",
        [MG_ERR_NOMEM] = "out of memory",
        [MG_ERR_UNSUPPORTED] = "unsupported",
        [MG_ERR_NOT_IMPLEMENTED] = "not implemented",
        [MG_ERR_NUMERIC] = "numeric",
        [MG_ERR_INTERRUPTED] = "interrupted",
        [MG_ERR_INTERNAL] = "internal",
    };
    if ((int)code < 0 || code >= MG_STATUS_COUNT || !names[code]) return "unknown";
    return names[code];
}

int mg_status_exit_code(mg_status code) {
    switch (code) {
    case MG_OK: return 0;
    case MG_ERR_USAGE:
    case MG_ERR_CONFIG: return 2;
    case MG_ERR_INTERRUPTED: return 130;
    default: return 1;
    }
}

void mg_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "multigrain: internal error (bug): assertion '%s' failed at %s:%d\n", expr, file,
            line);
    fflush(stderr);
    abort();
}
