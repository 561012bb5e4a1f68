/* report.c: renders a training run's metrics as one self-contained HTML page with inline SVG line
 * plots (no JavaScript, no external CSS or fonts), written atomically. */
#include "train/report.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/strbuf.h"

/* HTML-escapes s into b. */
static void sb_escape(mg_strbuf *b, const char *s) {
    for (; s && *s && !b->failed; s++) {
        switch (*s) {
        case '<': mg_strbuf_printf(b, "&lt;"); break;
        case '>': mg_strbuf_printf(b, "&gt;"); break;
        case '&': mg_strbuf_printf(b, "&amp;"); break;
        case '"': mg_strbuf_printf(b, "&quot;"); break;
        default: mg_strbuf_printf(b, "%c", *s);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Plots                                                                                        */

typedef struct series {
    const char *label;
    const char *color;
    double *x, *y;
    size_t n;
} series;

enum { PLOT_W = 820, PLOT_H = 300, M_LEFT = 78, M_RIGHT = 20, M_TOP = 30, M_BOTTOM = 42, MAX_POINTS = 2000 };

/* A "nice" tick step (1, 2 or 5 times a power of ten) for about `target` ticks over span. */
static double nice_step(double span, int target) {
    if (!(span > 0)) return 1.0;
    double raw = span / target;
    double p = pow(10.0, floor(log10(raw)));
    double f = raw / p;
    double m = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    return m * p;
}

static void fmt_tick(double v, char *buf, size_t n) {
    if (v == 0) {
        snprintf(buf, n, "0");
        return;
    }
    double a = fabs(v);
    if (a >= 1e5 || a < 1e-3)
        snprintf(buf, n, "%.2g", v);
    else
        snprintf(buf, n, "%.6g", v);
}

static void plot_svg(mg_strbuf *b, const char *title, const char *ylabel, const series *ss, int ns) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (size_t i = 0; i < ss[k].n; i++) {
            x0 = fmin(x0, ss[k].x[i]);
            x1 = fmax(x1, ss[k].x[i]);
            y0 = fmin(y0, ss[k].y[i]);
            y1 = fmax(y1, ss[k].y[i]);
        }
    if (!(x1 > x0)) {
        x0 -= 1;
        x1 += 1;
    }
    if (!(y1 > y0)) {
        double d = fabs(y0) > 0 ? fabs(y0) * 0.1 : 1.0;
        y0 -= d;
        y1 += d;
    }
    double ystep = nice_step(y1 - y0, 5);
    y0 = floor(y0 / ystep) * ystep;
    y1 = ceil(y1 / ystep) * ystep;
    double xstep = nice_step(x1 - x0, 8);
    const double pw = PLOT_W - M_LEFT - M_RIGHT, ph = PLOT_H - M_TOP - M_BOTTOM;
#define PX(v) (M_LEFT + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (M_TOP + (1.0 - ((v) - y0) / (y1 - y0)) * ph)
    mg_strbuf_printf(b, "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                 "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"",
              PLOT_W, PLOT_H, PLOT_W, PLOT_H);
    sb_escape(b, title);
    mg_strbuf_printf(b, "\">\n<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", PLOT_W, PLOT_H);
    mg_strbuf_printf(b, "<text x=\"%d\" y=\"18\" font-size=\"14\" font-weight=\"bold\">", M_LEFT);
    sb_escape(b, title);
    mg_strbuf_printf(b, "</text>\n");
    /* grid and tick labels */
    char t[64];
    for (double v = y0; v <= y1 + ystep * 0.5; v += ystep) {
        double py = PY(v);
        fmt_tick(fabs(v) < ystep * 1e-9 ? 0.0 : v, t, sizeof t);
        mg_strbuf_printf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>"
                     "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>\n",
                  M_LEFT, py, PLOT_W - M_RIGHT, py, M_LEFT - 6, py + 4, t);
    }
    for (double v = ceil(x0 / xstep) * xstep; v <= x1 + xstep * 1e-9; v += xstep) {
        double px = PX(v);
        fmt_tick(v, t, sizeof t);
        mg_strbuf_printf(b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#f0f0f0\"/>"
                     "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%s</text>\n",
                  px, M_TOP, px, PLOT_H - M_BOTTOM, px, PLOT_H - M_BOTTOM + 15, t);
    }
    mg_strbuf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#888\"/>\n", M_LEFT,
              M_TOP, pw, ph);
    mg_strbuf_printf(b, "<text x=\"%.0f\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">step</text>\n",
              M_LEFT + pw / 2, PLOT_H - 6);
    mg_strbuf_printf(b, "<text x=\"14\" y=\"%.0f\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 14 %.0f)\">",
              M_TOP + ph / 2, M_TOP + ph / 2);
    sb_escape(b, ylabel);
    mg_strbuf_printf(b, "</text>\n");
    /* lines, decimated to about MAX_POINTS points by keeping each bucket's min and max */
    for (int k = 0; k < ns; k++) {
        const series *s = &ss[k];
        if (!s->n) continue;
        mg_strbuf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", s->color);
        size_t bucket = s->n > MAX_POINTS ? (s->n + MAX_POINTS / 2 - 1) / (MAX_POINTS / 2) : 1;
        for (size_t i = 0; i < s->n; i += bucket) {
            size_t end = i + bucket < s->n ? i + bucket : s->n;
            size_t lo = i, hi = i;
            for (size_t j = i; j < end; j++) {
                if (s->y[j] < s->y[lo]) lo = j;
                if (s->y[j] > s->y[hi]) hi = j;
            }
            size_t a = lo < hi ? lo : hi, c = lo < hi ? hi : lo;
            mg_strbuf_printf(b, "%.1f,%.1f ", PX(s->x[a]), PY(s->y[a]));
            if (c != a) mg_strbuf_printf(b, "%.1f,%.1f ", PX(s->x[c]), PY(s->y[c]));
        }
        mg_strbuf_printf(b, "\"/>\n");
        if (s->n == 1)
            mg_strbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(s->x[0]), PY(s->y[0]), s->color);
        /* legend */
        double ly = M_TOP + 14 + 16 * k;
        mg_strbuf_printf(b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"3\" fill=\"%s\"/>"
                     "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\">",
                  PLOT_W - M_RIGHT - 130.0, ly - 4, s->color, PLOT_W - M_RIGHT - 112.0, ly);
        sb_escape(b, s->label);
        mg_strbuf_printf(b, "</text>\n");
    }
#undef PX
#undef PY
    mg_strbuf_printf(b, "</svg>\n");
}

/* Collects (step, field) of the records of one kind whose field is finite. */
static int collect(const mg_metrics_series *m, mg_metrics_kind kind, size_t field_offset, series *out,
                   const char *label, const char *color) {
    out->label = label;
    out->color = color;
    out->n = 0;
    out->x = malloc((m->count ? m->count : 1) * sizeof(double));
    out->y = malloc((m->count ? m->count : 1) * sizeof(double));
    if (!out->x || !out->y) return -1;
    for (size_t i = 0; i < m->count; i++) {
        const mg_metrics_record *r = &m->records[i];
        double v = *(const double *)((const char *)r + field_offset);
        if (r->kind != kind || !isfinite(v)) continue;
        out->x[out->n] = (double)r->step;
        out->y[out->n] = v;
        out->n++;
    }
    return 0;
}

static void series_free(series *s, int n) {
    for (int i = 0; i < n; i++) {
        free(s[i].x);
        free(s[i].y);
    }
}

typedef struct plot_spec {
    const char *title, *ylabel;
    struct {
        mg_metrics_kind kind;
        size_t offset;
        const char *label, *color;
    } lines[3];
    int n_lines;
} plot_spec;

#define FOFF(f) offsetof(mg_metrics_record, f)

mg_status mg_report_build_html(const mg_metrics_series *m, const char *title, const char *config_yaml,
                               char **html) {
    static const plot_spec PLOTS[] = {
        {"Training loss", "loss",
         {{MG_METRICS_STEP, FOFF(loss), "loss (step)", "#1f77b4"},
          {MG_METRICS_STEP, FOFF(loss_ce), "cross-entropy", "#ff7f0e"},
          {MG_METRICS_STEP, FOFF(loss_margin), "margin loss", "#2ca02c"}},
         3},
        {"Epoch mean loss", "loss", {{MG_METRICS_EPOCH, FOFF(loss), "loss (epoch)", "#1f77b4"}}, 1},
        {"Learning rate", "lr", {{MG_METRICS_STEP, FOFF(lr), "lr", "#9467bd"}}, 1},
        {"Validation accuracy", "accuracy",
         {{MG_METRICS_EVAL, FOFF(top1), "top-1", "#d62728"}, {MG_METRICS_EVAL, FOFF(top5), "top-5", "#8c564b"}},
         2},
        {"Throughput", "images/s", {{MG_METRICS_STEP, FOFF(images_per_s), "images/s", "#17becf"},
                                    {MG_METRICS_EPOCH, FOFF(images_per_s), "images/s (epoch)", "#7f7f7f"}}, 2},
    };
    mg_strbuf b = {0};
    mg_strbuf_printf(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>multigrain report: ");
    sb_escape(&b, title);
    mg_strbuf_printf(&b, "</title>\n<style>\nbody{font-family:sans-serif;margin:24px;color:#222;max-width:880px}"
                  "h1{font-size:20px}h2{font-size:16px;margin-top:28px}svg.plot{border:1px solid #ddd}"
                  "pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:auto}"
                  "td,th{padding:2px 10px;text-align:left}\n</style>\n</head>\n<body>\n");
    mg_strbuf_printf(&b, "<h1>multigrain training run: ");
    sb_escape(&b, title);
    mg_strbuf_printf(&b, "</h1>\n");
    /* summary table */
    size_t counts[MG_METRICS_KIND_COUNT] = {0};
    const mg_metrics_record *last_step = NULL;
    double best_top1 = NAN, best_top5 = NAN;
    for (size_t i = 0; i < m->count; i++) {
        const mg_metrics_record *r = &m->records[i];
        counts[r->kind]++;
        if (r->kind == MG_METRICS_STEP) last_step = r;
        if (r->kind == MG_METRICS_EVAL && isfinite(r->top1) && !(r->top1 <= best_top1)) best_top1 = r->top1;
        if (r->kind == MG_METRICS_EVAL && isfinite(r->top5) && !(r->top5 <= best_top5)) best_top5 = r->top5;
    }
    mg_strbuf_printf(&b, "<table>\n<tr><th>records</th><td>%zu step, %zu epoch, %zu eval</td></tr>\n",
              counts[MG_METRICS_STEP], counts[MG_METRICS_EPOCH], counts[MG_METRICS_EVAL]);
    if (last_step)
        mg_strbuf_printf(&b, "<tr><th>last step</th><td>epoch %lld, step %lld, loss %.6g, lr %.6g</td></tr>\n",
                  (long long)last_step->epoch, (long long)last_step->step, last_step->loss, last_step->lr);
    if (isfinite(best_top1)) mg_strbuf_printf(&b, "<tr><th>best top-1</th><td>%.4f</td></tr>\n", best_top1);
    if (isfinite(best_top5)) mg_strbuf_printf(&b, "<tr><th>best top-5</th><td>%.4f</td></tr>\n", best_top5);
    if (m->skipped_torn) mg_strbuf_printf(&b, "<tr><th>note</th><td>an incomplete last line was ignored</td></tr>\n");
    mg_strbuf_printf(&b, "</table>\n");

    mg_status s = MG_OK;
    int plotted = 0;
    for (size_t p = 0; p < sizeof PLOTS / sizeof PLOTS[0] && s == MG_OK; p++) {
        series ss[3];
        int n = 0;
        memset(ss, 0, sizeof ss);
        for (int l = 0; l < PLOTS[p].n_lines; l++) {
            if (collect(m, PLOTS[p].lines[l].kind, PLOTS[p].lines[l].offset, &ss[n], PLOTS[p].lines[l].label,
                        PLOTS[p].lines[l].color) != 0) {
                series_free(ss, n + 1);
                s = MG_FAIL(MG_ERR_NOMEM, "report: out of memory");
                n = -1;
                break;
            }
            if (ss[n].n)
                n++;
            else
                series_free(&ss[n], 1);
        }
        if (n <= 0) continue;
        mg_strbuf_printf(&b, "<h2>");
        sb_escape(&b, PLOTS[p].title);
        mg_strbuf_printf(&b, "</h2>\n");
        plot_svg(&b, PLOTS[p].title, PLOTS[p].ylabel, ss, n);
        series_free(ss, n);
        plotted++;
    }
    if (!plotted) mg_strbuf_printf(&b, "<p>No plottable records in metrics.jsonl yet.</p>\n");
    if (config_yaml) {
        mg_strbuf_printf(&b, "<h2>Effective configuration</h2>\n<pre>");
        sb_escape(&b, config_yaml);
        mg_strbuf_printf(&b, "</pre>\n");
    }
    mg_strbuf_printf(&b, "</body>\n</html>\n");
    if (s != MG_OK || b.failed) {
        free(b.p);
        return s != MG_OK ? s : MG_FAIL(MG_ERR_NOMEM, "report: out of memory");
    }
    *html = b.p;
    return MG_OK;
}

mg_status mg_report_write(const char *run_dir, const char *out_path) {
    if (!mg_path_is_dir(run_dir))
        return MG_FAIL(MG_ERR_IO, "report: run folder '%s' does not exist or is not a folder", run_dir);
    char *metrics = mg_path_join(run_dir, "metrics.jsonl");
    char *cfg_path = mg_path_join(run_dir, "config.yaml");
    char *def_out = out_path ? NULL : mg_path_join(run_dir, "report.html");
    mg_status s = MG_OK;
    mg_metrics_series series = {0};
    void *cfg_text = NULL;
    char *html = NULL;
    if (!metrics || !cfg_path || (!out_path && !def_out)) {
        s = MG_FAIL(MG_ERR_NOMEM, "report: out of memory");
        goto done;
    }
    if (!mg_path_exists(metrics)) {
        s = MG_FAIL(MG_ERR_IO, "report: %s does not exist (is '%s' a training run folder?)", metrics, run_dir);
        goto done;
    }
    s = mg_metrics_read(metrics, &series);
    if (s != MG_OK) goto done;
    if (mg_path_exists(cfg_path)) {
        size_t n = 0;
        s = mg_file_read_all(cfg_path, &cfg_text, &n);
        if (s != MG_OK) goto done;
    }
    s = mg_report_build_html(&series, run_dir, cfg_text, &html);
    if (s != MG_OK) goto done;
    s = mg_file_write_atomic(out_path ? out_path : def_out, html, strlen(html));
done:
    free(html);
    free(cfg_text);
    mg_metrics_series_free(&series);
    free(metrics);
    free(cfg_path);
    free(def_out);
    return s;
}
