/* parse.c: strict number/boolean parsing with range checks (see parse.h). */
#include "core/parse.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <strings.h>

static const char *shown(const char *text) { return text ? text : "(nothing)"; }

mg_status mg_parse_int64(const char *text, int64_t min, int64_t max, const char *what,
                         mg_status code_on_error, int64_t *out) {
    if (!text || !*text)
        return MG_FAIL(code_on_error, "%s: expected an integer in [%lld, %lld], found nothing", what,
                       (long long)min, (long long)max);
    errno = 0;
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0')
        return MG_FAIL(code_on_error, "%s: expected an integer in [%lld, %lld], found '%s'", what,
                       (long long)min, (long long)max, shown(text));
    if (errno == ERANGE || v < min || v > max)
        return MG_FAIL(code_on_error, "%s: expected an integer in [%lld, %lld], found %s", what,
                       (long long)min, (long long)max, text);
    *out = (int64_t)v;
    return MG_OK;
}

mg_status mg_parse_int(const char *text, int min, int max, const char *what, mg_status code_on_error,
                       int *out) {
    int64_t v = 0;
    MG_TRY(mg_parse_int64(text, min, max, what, code_on_error, &v));
    *out = (int)v;
    return MG_OK;
}

mg_status mg_parse_double(const char *text, double min, double max, const char *what,
                          mg_status code_on_error, double *out) {
    if (!text || !*text)
        return MG_FAIL(code_on_error, "%s: expected a number in [%g, %g], found nothing", what, min, max);
    errno = 0;
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || !isfinite(v))
        return MG_FAIL(code_on_error, "%s: expected a number in [%g, %g], found '%s'", what, min, max,
                       shown(text));
    if (errno == ERANGE || v < min || v > max)
        return MG_FAIL(code_on_error, "%s: expected a number in [%g, %g], found %s", what, min, max, text);
    *out = v;
    return MG_OK;
}

mg_status mg_parse_bool(const char *text, const char *what, mg_status code_on_error, bool *out) {
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4 && text; i++) {
        if (!strcasecmp(text, yes[i])) { *out = true; return MG_OK; }
        if (!strcasecmp(text, no[i])) { *out = false; return MG_OK; }
    }
    return MG_FAIL(code_on_error, "%s: expected true or false, found '%s'", what, shown(text));
}
