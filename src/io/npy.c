/* npy.c: NumPy .npy reading and atomic writing (see include/multigrain/npy.h). */
#include "multigrain/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"

static const char *g_descr[MG_DTYPE_COUNT] = {"<f4", "<f8", "<i4", "<i8", "|u1", "|b1"};
static const size_t g_size[MG_DTYPE_COUNT] = {4, 8, 4, 8, 1, 1};

size_t mg_dtype_size(mg_dtype t) { return (t >= 0 && t < MG_DTYPE_COUNT) ? g_size[t] : 0; }
const char *mg_dtype_descr(mg_dtype t) { return (t >= 0 && t < MG_DTYPE_COUNT) ? g_descr[t] : "?"; }

void mg_npy_free(mg_npy *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* Finds the value text after 'key': in a Python dict literal. */
static const char *dict_value(const char *hdr, const char *key) {
    const char *p = strstr(hdr, key);
    if (!p) return NULL;
    p += strlen(key);
    while (*p == ' ' || *p == '\'' || *p == '"') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

static mg_status parse_header(const char *path, const char *hdr, mg_npy *out) {
    const char *d = dict_value(hdr, "'descr'");
    if (!d || (*d != '\'' && *d != '"'))
        return MG_FAIL(MG_ERR_FORMAT, "%s: .npy header has no 'descr' field", path);
    char descr[16] = {0};
    size_t i = 0;
    for (d++; *d && *d != '\'' && *d != '"' && i < sizeof descr - 1; d++) descr[i++] = *d;
    int found = -1;
    for (int t = 0; t < MG_DTYPE_COUNT; t++) {
        if (!strcmp(descr, g_descr[t])) found = t;
    }
    if (!strcmp(descr, "<u1") || !strcmp(descr, "u1")) found = MG_DTYPE_U8;
    if (!strcmp(descr, "<b1")) found = MG_DTYPE_BOOL;
    if (found < 0)
        return MG_FAIL(MG_ERR_FORMAT,
                       "%s: unsupported dtype '%s' (expected little-endian float32, float64, int32, "
                       "int64, uint8 or bool)",
                       path, descr);
    out->dtype = (mg_dtype)found;
    const char *f = dict_value(hdr, "'fortran_order'");
    if (!f || strncmp(f, "False", 5) != 0)
        return MG_FAIL(MG_ERR_FORMAT, "%s: Fortran-ordered arrays are not supported (expected C order)", path);
    const char *s = dict_value(hdr, "'shape'");
    if (!s || *s != '(') return MG_FAIL(MG_ERR_FORMAT, "%s: .npy header has no 'shape' tuple", path);
    s++;
    out->ndim = 0;
    out->count = 1;
    for (;;) {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ')') break;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 0 || errno)
            return MG_FAIL(MG_ERR_FORMAT, "%s: malformed shape in .npy header", path);
        if (out->ndim == MG_NPY_MAX_DIMS)
            return MG_FAIL(MG_ERR_FORMAT, "%s: more than %d dimensions", path, MG_NPY_MAX_DIMS);
        out->shape[out->ndim++] = v;
        if (v && out->count > INT64_MAX / v)
            return MG_FAIL(MG_ERR_FORMAT, "%s: shape too large", path);
        out->count *= v;
        s = end;
    }
    return MG_OK;
}

mg_status mg_npy_read(const char *path, mg_npy *out) {
    /* The header is read first and the data straight into its final buffer, so peak memory is the
     * array itself (a 1M x 2048 float32 database is 8 GiB, not 16). */
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "rb");
    if (!fp) return MG_FAIL(MG_ERR_IO, "%s: cannot open for reading: %s", path, strerror(errno));
    mg_status s = MG_OK;
    char *hdr = NULL;
    unsigned char b[12];
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        s = MG_FAIL(MG_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    size_t size = (size_t)st.st_size;
    if (size < 10 || fread(b, 1, 10, fp) != 10 || memcmp(b, "\x93NUMPY", 6) != 0) {
        s = MG_FAIL(MG_ERR_FORMAT, "%s: not a .npy file (bad magic)", path);
        goto done;
    }
    size_t hlen, hstart;
    if (b[6] == 1) {
        hlen = (size_t)b[8] | ((size_t)b[9] << 8);
        hstart = 10;
    } else if ((b[6] == 2 || b[6] == 3) && size >= 12 && fread(b + 10, 1, 2, fp) == 2) {
        hlen = (size_t)b[8] | ((size_t)b[9] << 8) | ((size_t)b[10] << 16) | ((size_t)b[11] << 24);
        hstart = 12;
    } else {
        s = MG_FAIL(MG_ERR_FORMAT, "%s: unsupported .npy version %d.%d", path, b[6], b[7]);
        goto done;
    }
    if (hstart + hlen > size) {
        s = MG_FAIL(MG_ERR_FORMAT, "%s: truncated .npy header", path);
        goto done;
    }
    hdr = malloc(hlen + 1);
    if (!hdr) {
        s = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(hdr, 1, hlen, fp) != hlen) {
        s = MG_FAIL(MG_ERR_IO, "%s: cannot read the .npy header", path);
        goto done;
    }
    hdr[hlen] = '\0';
    s = parse_header(path, hdr, out);
    if (s != MG_OK) goto done;
    size_t bytes = (size_t)out->count * g_size[out->dtype];
    size_t have = size - hstart - hlen;
    if (have != bytes) {
        s = MG_FAIL(MG_ERR_FORMAT, "%s: data is %zu bytes, the header's shape needs %zu", path, have, bytes);
        goto done;
    }
    out->data = malloc(bytes ? bytes : 1);
    if (!out->data) {
        s = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory for %zu bytes", path, bytes);
        goto done;
    }
    if (bytes && fread(out->data, 1, bytes, fp) != bytes)
        s = MG_FAIL(MG_ERR_IO, "%s: read fewer than the %zu data bytes", path, bytes);
done:
    free(hdr);
    fclose(fp);
    if (s != MG_OK) mg_npy_free(out);
    return s;
}

mg_status mg_npy_read_as(const char *path, mg_dtype want, mg_npy *out) {
    MG_TRY(mg_npy_read(path, out));
    if (out->dtype == want) return MG_OK;
    if (want == MG_DTYPE_F64 && out->dtype == MG_DTYPE_F32) {
        double *d = malloc((size_t)(out->count ? out->count : 1) * sizeof *d);
        if (!d) {
            mg_npy_free(out);
            return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
        }
        for (int64_t i = 0; i < out->count; i++) d[i] = ((float *)out->data)[i];
        free(out->data);
        out->data = d;
        out->dtype = MG_DTYPE_F64;
        return MG_OK;
    }
    mg_status s = MG_FAIL(MG_ERR_FORMAT, "%s: expected dtype %s, found %s", path, g_descr[want],
                          g_descr[out->dtype]);
    mg_npy_free(out);
    return s;
}

/* Builds a version 1.0 header padded so the data starts at a multiple of 64. */
static size_t build_header(char *hdr, size_t cap, mg_dtype dtype, int ndim, const int64_t *shape) {
    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", g_descr[dtype]);
    for (int i = 0; i < ndim; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld%s", (long long)shape[i],
                      (ndim == 1 || i < ndim - 1) ? ", " : "");
    if (ndim == 1) n -= 1; /* "(5,)" */
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    size_t total = 10 + (size_t)n + 1;
    size_t padded = (total + 63) / 64 * 64;
    MG_ASSERT(padded <= cap);
    memcpy(hdr, "\x93NUMPY\x01\x00", 8);
    size_t hlen = padded - 10;
    hdr[8] = (char)(hlen & 0xff);
    hdr[9] = (char)(hlen >> 8);
    memcpy(hdr + 10, dict, (size_t)n);
    memset(hdr + 10 + n, ' ', padded - 10 - (size_t)n - 1);
    hdr[padded - 1] = '\n';
    return padded;
}

mg_status mg_npy_write(const char *path, mg_dtype dtype, int ndim, const int64_t *shape, const void *data) {
    if (ndim < 0 || ndim > MG_NPY_MAX_DIMS || dtype < 0 || dtype >= MG_DTYPE_COUNT || (!data && ndim > 0))
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: bad arguments to mg_npy_write", path);
    int64_t count = 1;
    for (int i = 0; i < ndim; i++) count *= shape[i];
    char hdr[640];
    size_t hn = build_header(hdr, sizeof hdr, dtype, ndim, shape);
    mg_atomic_file af;
    MG_TRY(mg_atomic_file_open(&af, path));
    mg_status s = mg_atomic_file_write(&af, hdr, hn);
    if (s == MG_OK) s = mg_atomic_file_write(&af, data, (size_t)count * g_size[dtype]);
    if (s != MG_OK) {
        mg_atomic_file_abort(&af);
        return s;
    }
    return mg_atomic_file_commit(&af);
}

struct mg_npy_writer {
    mg_atomic_file af;
    int64_t rows, cols, written;
};

mg_status mg_npy_writer_open(mg_npy_writer **out, const char *path, int64_t rows, int64_t cols) {
    *out = NULL;
    if (rows < 0 || cols < 0) return MG_FAIL(MG_ERR_INVALID_ARG, "%s: negative array shape", path);
    mg_npy_writer *w = calloc(1, sizeof *w);
    if (!w) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
    w->rows = rows;
    w->cols = cols;
    mg_status s = mg_atomic_file_open(&w->af, path);
    if (s != MG_OK) {
        free(w);
        return s;
    }
    char hdr[640];
    int64_t shape[2] = {rows, cols};
    size_t hn = build_header(hdr, sizeof hdr, MG_DTYPE_F32, 2, shape);
    s = mg_atomic_file_write(&w->af, hdr, hn);
    if (s != MG_OK) {
        mg_npy_writer_abort(w);
        return s;
    }
    *out = w;
    return MG_OK;
}

mg_status mg_npy_writer_append(mg_npy_writer *w, const float *rows, int64_t n_rows) {
    if (w->written + n_rows > w->rows)
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: more rows appended (%lld) than declared (%lld)", w->af.path,
                       (long long)(w->written + n_rows), (long long)w->rows);
    MG_TRY(mg_atomic_file_write(&w->af, rows, (size_t)(n_rows * w->cols) * sizeof(float)));
    w->written += n_rows;
    return MG_OK;
}

mg_status mg_npy_writer_commit(mg_npy_writer *w) {
    if (w->written != w->rows) {
        mg_status s = MG_FAIL(MG_ERR_INVALID_ARG, "%s: %lld rows written, %lld declared", w->af.path,
                              (long long)w->written, (long long)w->rows);
        mg_npy_writer_abort(w);
        return s;
    }
    mg_status s = mg_atomic_file_commit(&w->af);
    free(w);
    return s;
}

void mg_npy_writer_abort(mg_npy_writer *w) {
    if (!w) return;
    mg_atomic_file_abort(&w->af);
    free(w);
}
