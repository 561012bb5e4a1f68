/* strbuf.h: a growable string built with printf-style appends; an allocation failure is sticky
 * (checked once at the end through `failed`). */
#ifndef MG_CORE_STRBUF_H
#define MG_CORE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct mg_strbuf {
    char *p; /* NUL-terminated once anything was appended; free() it */
    size_t len, cap;
    bool failed;
} mg_strbuf;

void mg_strbuf_printf(mg_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
