/* status.h: status codes, the per-thread error message, and release-mode asserts.
 *
 * Every library function that can fail returns an mg_status. On failure it records one
 * human-readable line (what went wrong, where, what was expected, what was found, and a hint
 * when one helps) with mg_error_set(); the caller either adds context and returns the status
 * upward, or, in main(), prints mg_error_message() and maps the status to an exit code.
 * Nothing in the library calls exit().
 *
 * MG_ASSERT is for programmer bugs only (a broken invariant, never bad user input): it prints
 * file:line and aborts, and it stays on in release builds. */
#ifndef MULTIGRAIN_STATUS_H
#define MULTIGRAIN_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mg_status {
    MG_OK = 0,
    MG_ERR_USAGE,           /* bad command line: unknown option, malformed value */
    MG_ERR_INVALID_ARG,     /* a library call got an argument it cannot use (null, bad shape) */
    MG_ERR_CONFIG,          /* a configuration file or key is wrong */
    MG_ERR_IO,              /* a file could not be opened, read or written */
    MG_ERR_FORMAT,          /* a file's contents are malformed or inconsistent */
    MG_ERR_NOMEM,           /* an allocation failed */
    MG_ERR_UNSUPPORTED,     /* valid input that this build cannot handle (feature not compiled) */
    MG_ERR_NOT_IMPLEMENTED, /* the feature does not exist yet */
    MG_ERR_NUMERIC,         /* a non-finite value where a finite one is required */
    MG_ERR_INTERRUPTED,     /* stopped on request (SIGINT/SIGTERM) */
    MG_ERR_INTERNAL,        /* an external library reported a failure */
    MG_STATUS_COUNT
} mg_status;

/* Records the message for the calling thread and returns `code` (so `return MG_FAIL(...)`). */
mg_status mg_error_set(mg_status code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prepends "context: " to the current message of the calling thread; returns `code`. */
mg_status mg_error_wrap(mg_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last message recorded on this thread ("" when none). Valid until the next set/clear. */
const char *mg_error_message(void);
/* Source location of the last error (for debug logs), or NULL. */
const char *mg_error_where(void);
mg_status mg_error_code(void);
void mg_error_clear(void);
/* Marks the current error as already shown to the user: a command that had to print it itself (each
 * rank of a data-parallel job, before the process group ends) so that main does not print it again.
 * mg_error_reported() is true until the next set/clear. */
void mg_error_mark_reported(void);
int mg_error_reported(void);

/* Short stable name of a status ("io", "format", ...). */
const char *mg_status_name(mg_status code);
/* Exit code a command-line program should use for a status: 0 ok, 2 usage/config, 1 otherwise. */
int mg_status_exit_code(mg_status code);

#define MG_FAIL(code, ...) mg_error_set((code), __FILE__, __LINE__, __VA_ARGS__)

/* Propagate a failure unchanged. */
#define MG_TRY(expr)                                                                               \
    do {                                                                                           \
        mg_status mg_try_s_ = (expr);                                                              \
        if (mg_try_s_ != MG_OK) return mg_try_s_;                                                  \
    } while (0)

/* Release-mode assert for programmer bugs. */
void mg_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define MG_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) mg_assert_fail(#cond, __FILE__, __LINE__);                                    \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
