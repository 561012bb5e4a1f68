/* progress.c: terminal progress bar (see progress.h). */
#include "core/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_default_enabled = -1; /* -1: decide from the terminal */

double mg_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void mg_progress_set_enabled_default(bool enabled) { g_default_enabled = enabled ? 1 : 0; }

void mg_progress_init(mg_progress *p, const char *label, int64_t total, const char *unit) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->unit = unit ? unit : "it";
    p->start = mg_time_now();
    if (g_default_enabled >= 0)
        p->enabled = g_default_enabled;
    else
        p->enabled = isatty(STDERR_FILENO) && !getenv("MG_NO_PROGRESS");
}

static void format_secs(double s, char *buf, size_t n) {
    if (s < 0 || s > 1e7) {
        snprintf(buf, n, "--:--");
        return;
    }
    int t = (int)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, n, "%02d:%02d", t / 60, t % 60);
}

static void draw(mg_progress *p, const char *suffix) {
    double el = mg_time_now() - p->start;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32], els[32];
    format_secs(p->total > 0 && rate > 0 ? (double)(p->total - p->done) / rate : -1, eta, sizeof eta);
    format_secs(el, els, sizeof els);
    const int width = 24;
    char bar[width + 1];
    int fill = p->total > 0 ? (int)((double)width * (double)p->done / (double)p->total) : 0;
    if (fill > width) fill = width;
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    if (p->total > 0)
        fprintf(stderr, "\r\033[K%s [%s] %lld/%lld %.1f %s/s %s<%s %s", p->label, bar, (long long)p->done,
                (long long)p->total, rate, p->unit, els, eta, suffix ? suffix : "");
    else
        fprintf(stderr, "\r\033[K%s %lld %.1f %s/s %s %s", p->label, (long long)p->done, rate, p->unit, els,
                suffix ? suffix : "");
    fflush(stderr);
}

void mg_progress_update(mg_progress *p, int64_t done, const char *suffix) {
    p->done = done;
    if (!p->enabled) return;
    double now = mg_time_now();
    if (now - p->last_draw < 0.1 && done != p->total) return;
    p->last_draw = now;
    draw(p, suffix);
}

void mg_progress_clear(mg_progress *p) {
    if (!p->enabled) return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
}

void mg_progress_finish(mg_progress *p, const char *suffix) {
    if (!p->enabled) return;
    draw(p, suffix);
    fputc('\n', stderr);
}
