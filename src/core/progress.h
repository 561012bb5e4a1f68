/* progress.h: a one-line live progress bar on a terminal (count/total, rate, ETA and a free-form
 * suffix such as "loss 2.31 lr 0.2"); on a non-terminal it prints nothing, so logs stay clean. */
#ifndef MG_CORE_PROGRESS_H
#define MG_CORE_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct mg_progress {
    char label[64];
    int64_t total;
    int64_t done;
    double start;
    double last_draw;
    bool enabled;
    const char *unit; /* e.g. "img" */
} mg_progress;

/* Monotonic wall time in seconds. */
double mg_time_now(void);

void mg_progress_init(mg_progress *p, const char *label, int64_t total, const char *unit);
/* Sets the count and redraws at most 10 times per second (always on the last item). */
void mg_progress_update(mg_progress *p, int64_t done, const char *suffix);
/* Clears the line so ordinary log lines can follow. */
void mg_progress_clear(mg_progress *p);
void mg_progress_finish(mg_progress *p, const char *suffix);
/* Force on/off (default: on when stderr is a terminal and MG_NO_PROGRESS is unset). */
void mg_progress_set_enabled_default(bool enabled);

#endif
