/* test_metrics_log.c: metrics.jsonl round trip (values, absent fields, appends), the torn-last-line
 * and malformed-line rules, the reference console line, and the HTML report built from a
 * synthetic metrics file (one inline <svg> per plot, nothing external, text escaped). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "mg_test.h"
#include "multigrain/metrics_log.h"
#include "train/report.h"

static void tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/test_metrics_log_%s", mg_test_tmp_dir(), name);
    remove(buf);
}

static int count(const char *hay, const char *needle) {
    int c = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) c++;
    return c;
}

static void test_roundtrip(void **state) {
    (void)state;
    char path[4096];
    tmp_path(path, sizeof path, "rt.jsonl");
    mg_metrics_log log;
    mg_assert_ok(mg_metrics_log_open(&log, path));
    for (int i = 0; i < 5; i++) {
        mg_metrics_record r = mg_metrics_record_empty(MG_METRICS_STEP, 1, i);
        r.loss = 6.9 - 0.1 * i;
        r.lr = 0.2 / (i + 1); /* not exactly representable: must survive the text round trip */
        if (i == 3) r.images_per_s = 123.5;
        mg_assert_ok(mg_metrics_log_append(&log, &r));
    }
    mg_assert_ok(mg_metrics_log_sync(&log));
    mg_assert_ok(mg_metrics_log_close(&log));
    /* re-open appends */
    mg_assert_ok(mg_metrics_log_open(&log, path));
    mg_metrics_record e = mg_metrics_record_empty(MG_METRICS_EVAL, 1, 4);
    e.top1 = 0.25;
    e.top5 = 0.5;
    mg_assert_ok(mg_metrics_log_append(&log, &e));
    mg_metrics_record inf = mg_metrics_record_empty(MG_METRICS_EPOCH, 1, 4);
    inf.loss = INFINITY;
    mg_assert_ok(mg_metrics_log_append(&log, &inf));
    mg_assert_ok(mg_metrics_log_close(&log));

    mg_metrics_series s;
    mg_assert_ok(mg_metrics_read(path, &s));
    assert_int_equal(s.count, 7);
    assert_int_equal(s.skipped_torn, 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(s.records[i].kind, MG_METRICS_STEP);
        assert_int_equal(s.records[i].step, i);
        assert_int_equal(s.records[i].epoch, 1);
        assert_true(s.records[i].loss == 6.9 - 0.1 * i); /* cJSON prints 17 significant digits when needed */
        assert_true(s.records[i].lr == 0.2 / (i + 1));
        assert_true(isnan(s.records[i].top1));
        assert_true(i == 3 ? s.records[i].images_per_s == 123.5 : isnan(s.records[i].images_per_s));
    }
    assert_int_equal(s.records[5].kind, MG_METRICS_EVAL);
    assert_true(s.records[5].top5 == 0.5);
    assert_true(isinf(s.records[6].loss));
    mg_metrics_series_free(&s);

    /* the file itself: one object per line, absent fields left out */
    void *data;
    size_t size;
    mg_assert_ok(mg_file_read_all(path, &data, &size));
    assert_int_equal(count(data, "\n"), 7);
    assert_int_equal(count(data, "\"top1\""), 1);
    assert_non_null(strstr(data, "{\"kind\":\"step\",\"epoch\":1,\"step\":0,\"loss\":6.9"));
    free(data);
}

static void write_text(const char *path, const char *text) {
    mg_assert_ok(mg_file_write_atomic(path, text, strlen(text)));
}

static void test_torn_and_malformed(void **state) {
    (void)state;
    char path[4096];
    tmp_path(path, sizeof path, "torn.jsonl");
    write_text(path, "{\"kind\":\"step\",\"epoch\":1,\"step\":0,\"loss\":2}\n"
                     "\n"
                     "{\"kind\":\"checkpoint\",\"epoch\":1,\"step\":0,\"path\":\"x\"}\n"
                     "{\"kind\":\"step\",\"epoch\":1,\"step\":1,\"lo");
    mg_metrics_series s;
    mg_assert_ok(mg_metrics_read(path, &s));
    assert_int_equal(s.count, 1); /* the unknown kind is skipped, the torn line dropped */
    assert_int_equal(s.skipped_torn, 1);
    mg_metrics_series_free(&s);

    write_text(path, "{\"kind\":\"step\",\"epoch\":1,\"step\":0}\nnot json\n{\"kind\":\"step\",\"epoch\":1,\"step\":1}\n");
    assert_int_equal(mg_metrics_read(path, &s), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "line 2"));
    write_text(path, "{\"kind\":\"step\",\"epoch\":1,\"step\":0,\"loss\":\"high\"}\n");
    assert_int_equal(mg_metrics_read(path, &s), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "'loss'"));
    tmp_path(path, sizeof path, "missing.jsonl");
    assert_int_equal(mg_metrics_read(path, &s), MG_ERR_IO);
}

static void test_reference_line(void **state) {
    (void)state;
    char path[4096];
    tmp_path(path, sizeof path, "line.txt");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    mg_metrics_print_step_line(f, 2, 995, 4.1976256);
    fclose(f);
    void *data;
    size_t size;
    mg_assert_ok(mg_file_read_all(path, &data, &size));
    /* the format of the reference's log (port README): "epoch: 2 step: 995, loss is 4.1976256" */
    assert_string_equal(data, "epoch: 2 step: 995, loss is 4.1976256\n");
    free(data);
}

static void test_report_html(void **state) {
    (void)state;
    char dir[2048], path[4096];
    snprintf(dir, sizeof dir, "%s/test_metrics_log_run", mg_test_tmp_dir());
    mg_assert_ok(mg_dir_create(dir));
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    remove(path);
    mg_metrics_log log;
    mg_assert_ok(mg_metrics_log_open(&log, path));
    for (int i = 0; i < 5000; i++) { /* more points than the plot keeps: exercises decimation */
        mg_metrics_record r = mg_metrics_record_empty(MG_METRICS_STEP, 1 + i / 1000, i);
        r.loss = 7.0 * exp(-i / 1500.0) + 0.1 * sin(i);
        r.lr = i < 3000 ? 0.2 : 0.02;
        r.images_per_s = 800 + (i % 7);
        mg_assert_ok(mg_metrics_log_append(&log, &r));
    }
    mg_metrics_record ev = mg_metrics_record_empty(MG_METRICS_EVAL, 5, 4999);
    ev.top1 = 0.5;
    ev.top5 = 0.75;
    mg_assert_ok(mg_metrics_log_append(&log, &ev));
    mg_assert_ok(mg_metrics_log_close(&log));
    char cfgp[4096];
    snprintf(cfgp, sizeof cfgp, "%s/config.yaml", dir);
    write_text(cfgp, "arch: resnet50  # <script>alert(1)</script>\n");
    mg_assert_ok(mg_report_write(dir, NULL));
    snprintf(path, sizeof path, "%s/report.html", dir);
    void *data;
    size_t size;
    mg_assert_ok(mg_file_read_all(path, &data, &size));
    const char *html = data;
    /* loss, lr, accuracy, images/s: one inline svg each (no epoch records: no epoch-loss plot) */
    assert_int_equal(count(html, "<svg"), 4);
    assert_int_equal(count(html, "</svg>"), 4);
    assert_non_null(strstr(html, "Learning rate"));
    assert_non_null(strstr(html, "top-1"));
    assert_non_null(strstr(html, "Throughput"));
    /* offline: no scripts, no external resources; config text escaped */
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "src="));
    assert_null(strstr(html, "href="));
    assert_non_null(strstr(html, "&lt;script&gt;"));
    assert_true(size < 2000000); /* decimated, not 5000 points x 3 plots of full text */
    free(data);

    /* without eval records there is no accuracy plot */
    mg_metrics_series s = {0};
    mg_metrics_record r[2] = {mg_metrics_record_empty(MG_METRICS_STEP, 1, 0), mg_metrics_record_empty(MG_METRICS_STEP, 1, 1)};
    r[0].loss = 1;
    r[1].loss = 0.5;
    s.records = r;
    s.count = 2;
    char *h = NULL;
    mg_assert_ok(mg_report_build_html(&s, "t", NULL, &h));
    assert_int_equal(count(h, "<svg"), 1);
    assert_null(strstr(h, "Validation accuracy"));
    free(h);
    assert_int_equal(mg_report_write("/nonexistent/run", NULL), MG_ERR_IO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_torn_and_malformed),
        cmocka_unit_test(test_reference_line),
        cmocka_unit_test(test_report_html),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
