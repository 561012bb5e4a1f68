/* metrics_log.c: append-only writer and tolerant reader of RUN_DIR/metrics.jsonl (cJSON). */
#include "multigrain/metrics_log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"

static const char *const KIND_NAMES[MG_METRICS_KIND_COUNT] = {"step", "epoch", "eval"};

const char *mg_metrics_kind_name(mg_metrics_kind kind) {
    return (kind >= 0 && kind < MG_METRICS_KIND_COUNT) ? KIND_NAMES[kind] : "?";
}

mg_metrics_record mg_metrics_record_empty(mg_metrics_kind kind, int64_t epoch, int64_t step) {
    mg_metrics_record r;
    r.kind = kind;
    r.epoch = epoch;
    r.step = step;
    r.loss = r.loss_ce = r.loss_margin = r.lr = r.beta = r.top1 = r.top5 = r.images_per_s = r.time_s = NAN;
    return r;
}

/* The numeric fields in file order, shared by writer and reader. */
typedef struct num_field {
    const char *name;
    size_t offset;
} num_field;

static const num_field FIELDS[] = {
    {"loss", offsetof(mg_metrics_record, loss)},
    {"loss_ce", offsetof(mg_metrics_record, loss_ce)},
    {"loss_margin", offsetof(mg_metrics_record, loss_margin)},
    {"lr", offsetof(mg_metrics_record, lr)},
    {"beta", offsetof(mg_metrics_record, beta)},
    {"top1", offsetof(mg_metrics_record, top1)},
    {"top5", offsetof(mg_metrics_record, top5)},
    {"images_per_s", offsetof(mg_metrics_record, images_per_s)},
    {"time_s", offsetof(mg_metrics_record, time_s)},
};
#define N_FIELDS ((int)(sizeof FIELDS / sizeof FIELDS[0]))

mg_status mg_metrics_log_open(mg_metrics_log *log, const char *path) {
    log->fp = NULL;
    log->path = strdup(path);
    if (!log->path) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
    log->fp = fopen(path, "a");
    if (!log->fp) {
        mg_status s = MG_FAIL(MG_ERR_IO, "%s: cannot open for appending: %s", path, strerror(errno));
        free(log->path);
        log->path = NULL;
        return s;
    }
    return MG_OK;
}

mg_status mg_metrics_log_append(mg_metrics_log *log, const mg_metrics_record *rec) {
    if (!log || !log->fp) return MG_FAIL(MG_ERR_INVALID_ARG, "metrics log: not open");
    if (rec->kind < 0 || rec->kind >= MG_METRICS_KIND_COUNT)
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: record kind %d is not step, epoch or eval", log->path, (int)rec->kind);
    cJSON *o = cJSON_CreateObject();
    if (!o) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", log->path);
    bool ok = cJSON_AddStringToObject(o, "kind", KIND_NAMES[rec->kind]) &&
              cJSON_AddNumberToObject(o, "epoch", (double)rec->epoch) &&
              cJSON_AddNumberToObject(o, "step", (double)rec->step);
    for (int i = 0; ok && i < N_FIELDS; i++) {
        double v = *(const double *)((const char *)rec + FIELDS[i].offset);
        if (isnan(v)) continue;
        if (!isfinite(v)) {
            /* JSON has no infinity: write it as a string so the line stays valid and visible */
            ok = cJSON_AddStringToObject(o, FIELDS[i].name, v > 0 ? "inf" : "-inf") != NULL;
        } else {
            /* cJSON's own printer accepts a 1-ulp error on its 15-digit form: print the shortest
             * text that reads back exactly instead. */
            char num[40];
            for (int prec = 15; prec <= 17; prec++) {
                snprintf(num, sizeof num, "%.*g", prec, v);
                if (strtod(num, NULL) == v) break;
            }
            ok = cJSON_AddRawToObject(o, FIELDS[i].name, num) != NULL;
        }
    }
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", log->path);
    size_t n = strlen(text);
    /* One write of the whole line (with its newline) keeps a crash from splitting fields. */
    char *line = malloc(n + 2);
    if (!line) {
        cJSON_free(text);
        return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", log->path);
    }
    memcpy(line, text, n);
    line[n] = '\n';
    cJSON_free(text);
    size_t w = fwrite(line, 1, n + 1, log->fp);
    free(line);
    if (w != n + 1 || fflush(log->fp) != 0)
        return MG_FAIL(MG_ERR_IO, "%s: cannot append a record: %s", log->path, strerror(errno));
    return MG_OK;
}

mg_status mg_metrics_log_sync(mg_metrics_log *log) {
    if (!log || !log->fp) return MG_FAIL(MG_ERR_INVALID_ARG, "metrics log: not open");
    if (fflush(log->fp) != 0 || fsync(fileno(log->fp)) != 0)
        return MG_FAIL(MG_ERR_IO, "%s: cannot sync: %s", log->path, strerror(errno));
    return MG_OK;
}

mg_status mg_metrics_log_close(mg_metrics_log *log) {
    mg_status s = MG_OK;
    if (log && log->fp) {
        s = mg_metrics_log_sync(log);
        if (fclose(log->fp) != 0 && s == MG_OK)
            s = MG_FAIL(MG_ERR_IO, "%s: cannot close: %s", log->path, strerror(errno));
        log->fp = NULL;
    }
    if (log) {
        free(log->path);
        log->path = NULL;
    }
    return s;
}

void mg_metrics_print_step_line(FILE *out, int64_t epoch, int64_t step_in_epoch, double loss) {
    /* The reference prints the float32 loss in its shortest round-trip form (numpy repr). */
    char num[40];
    float f = (float)loss;
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(num, sizeof num, "%.*g", prec, (double)f);
        if ((float)strtod(num, NULL) == f) break;
    }
    fprintf(out, "epoch: %" PRId64 " step: %" PRId64 ", loss is %s\n", epoch, step_in_epoch, num);
}

/* ------------------------------------------------------------------------------------------ */

static mg_status parse_line(const char *path, int lineno, const char *line, size_t len, mg_metrics_record *r,
                            bool *keep) {
    *keep = false;
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!o) return MG_FAIL(MG_ERR_FORMAT, "%s: line %d is not valid JSON", path, lineno);
    mg_status s = MG_OK;
    if (!cJSON_IsObject(o)) {
        s = MG_FAIL(MG_ERR_FORMAT, "%s: line %d: expected a JSON object", path, lineno);
        goto done;
    }
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, "kind");
    if (!cJSON_IsString(kind)) {
        s = MG_FAIL(MG_ERR_FORMAT, "%s: line %d: expected a string field 'kind'", path, lineno);
        goto done;
    }
    int k = -1;
    for (int i = 0; i < MG_METRICS_KIND_COUNT; i++)
        if (!strcmp(kind->valuestring, KIND_NAMES[i])) k = i;
    if (k < 0) goto done; /* a kind from a newer version: skipped */
    *r = mg_metrics_record_empty((mg_metrics_kind)k, 0, 0);
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(o, "epoch");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
    if (!cJSON_IsNumber(ep) || !cJSON_IsNumber(st)) {
        s = MG_FAIL(MG_ERR_FORMAT, "%s: line %d: expected numbers 'epoch' and 'step'", path, lineno);
        goto done;
    }
    r->epoch = (int64_t)ep->valuedouble;
    r->step = (int64_t)st->valuedouble;
    for (int i = 0; i < N_FIELDS; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, FIELDS[i].name);
        double *dst = (double *)((char *)r + FIELDS[i].offset);
        if (!f) continue;
        if (cJSON_IsNumber(f)) {
            *dst = f->valuedouble;
        } else if (cJSON_IsString(f) && (!strcmp(f->valuestring, "inf") || !strcmp(f->valuestring, "-inf"))) {
            *dst = f->valuestring[0] == '-' ? -INFINITY : INFINITY;
        } else {
            s = MG_FAIL(MG_ERR_FORMAT, "%s: line %d: field '%s' is not a number", path, lineno, FIELDS[i].name);
            goto done;
        }
    }
    *keep = true;
done:
    cJSON_Delete(o);
    return s;
}

mg_status mg_metrics_read(const char *path, mg_metrics_series *out) {
    memset(out, 0, sizeof *out);
    void *data = NULL;
    size_t size = 0;
    MG_TRY(mg_file_read_all(path, &data, &size));
    const char *text = data;
    size_t cap = 0;
    mg_status s = MG_OK;
    int lineno = 0;
    for (size_t pos = 0; pos < size && s == MG_OK;) {
        const char *nl = memchr(text + pos, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - (text + pos)) : size - pos;
        const char *line = text + pos;
        pos += len + (nl ? 1 : 0);
        lineno++;
        size_t b = 0;
        while (b < len && (line[b] == ' ' || line[b] == '\t' || line[b] == '\r')) b++;
        if (b == len) continue;
        mg_metrics_record r;
        bool keep = false;
        s = parse_line(path, lineno, line, len, &r, &keep);
        if (s != MG_OK && !nl) {
            /* An unterminated last line is a write cut short by a crash: drop it. */
            mg_error_clear();
            s = MG_OK;
            out->skipped_torn = 1;
            break;
        }
        if (s != MG_OK || !keep) continue;
        if (out->count == cap) {
            size_t nc = cap ? cap * 2 : 256;
            mg_metrics_record *nr = realloc(out->records, nc * sizeof *nr);
            if (!nr) {
                s = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            out->records = nr;
            cap = nc;
        }
        out->records[out->count++] = r;
    }
    free(data);
    if (s != MG_OK) mg_metrics_series_free(out);
    return s;
}

void mg_metrics_series_free(mg_metrics_series *s) {
    if (!s) return;
    free(s->records);
    s->records = NULL;
    s->count = 0;
}
