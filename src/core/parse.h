/* parse.h: strict parsing of numbers and booleans from strings, with range checks and errors
 * that name the option or key ("--batch-size: expected an integer in [1, 1048576], found 'banana'"). */
#ifndef MG_CORE_PARSE_H
#define MG_CORE_PARSE_H

#include <stdbool.h>
#include <stdint.h>

#include "multigrain/status.h"

/* `what` names the source of the value in the error message (an option or config key).
 * On failure returns `code_on_error` (MG_ERR_USAGE for the command line, MG_ERR_CONFIG for files). */
mg_status mg_parse_int64(const char *text, int64_t min, int64_t max, const char *what,
                         mg_status code_on_error, int64_t *out);
mg_status mg_parse_int(const char *text, int min, int max, const char *what, mg_status code_on_error,
                       int *out);
mg_status mg_parse_double(const char *text, double min, double max, const char *what,
                          mg_status code_on_error, double *out);
/* Accepts true/false, yes/no, on/off, 1/0 (case-insensitive). */
mg_status mg_parse_bool(const char *text, const char *what, mg_status code_on_error, bool *out);

#endif
