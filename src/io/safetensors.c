/* safetensors.c: validating safetensors reader (mmap) and atomic writer (see
 * include/multigrain/safetensors.h). */
#include "multigrain/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"

static const char *g_st_names[MG_DTYPE_COUNT] = {"F32", "F64", "I32", "I64", "U8", "BOOL"};
static const char *g_long_names[MG_DTYPE_COUNT] = {"float32", "float64", "int32", "int64", "uint8", "bool"};

const char *mg_st_dtype_name(mg_dtype t) { return (t >= 0 && t < MG_DTYPE_COUNT) ? g_st_names[t] : NULL; }

int mg_st_dtype_from_name(const char *name) {
    for (int i = 0; i < MG_DTYPE_COUNT; i++)
        if (name && !strcmp(name, g_st_names[i])) return i;
    return -1;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void format_shape(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

/* ---------------------------------------------------------------- reader */

void mg_safetensors_close(mg_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free(st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    if (st->map) {
        if (st->mapped) munmap(st->map, st->map_size);
        else free(st->map);
    }
    if (st->fd1) close(st->fd1 - 1);
    free(st->path);
    memset(st, 0, sizeof *st);
}

/* A JSON number that is an exact integer in [0, 2^53]. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static mg_status parse_tensor(mg_safetensors *st, const cJSON *item, mg_st_tensor *t) {
    const char *path = st->path, *name = item->string;
    if (!cJSON_IsObject(item))
        return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': header entry is not a JSON object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt))
        return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    int d = mg_st_dtype_from_name(dt->valuestring);
    if (d < 0)
        return MG_FAIL(MG_ERR_FORMAT,
                       "%s: tensor '%s': unsupported dtype '%s' (expected F32, F64, I32, I64, U8 or BOOL)",
                       path, name, dt->valuestring);
    t->dtype = (mg_dtype)d;
    if (!cJSON_IsArray(sh))
        return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': missing or non-array \"shape\"", path, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > MG_ST_MAX_DIMS)
        return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': %d dimensions, at most %d supported", path, name, nd,
                       MG_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t count = 1;
    int overflow = 0;
    for (int i = 0; i < nd; i++) {
        uint64_t v;
        if (!json_uint(cJSON_GetArrayItem(sh, i), &v))
            return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", path,
                           name, i);
        t->shape[i] = (int64_t)v;
        if (v && count > UINT64_MAX / 8 / v) overflow = 1;
        else count *= v;
    }
    uint64_t b, e;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(cJSON_GetArrayItem(off, 0), &b) ||
        !json_uint(cJSON_GetArrayItem(off, 1), &e))
        return MG_FAIL(MG_ERR_FORMAT,
                       "%s: tensor '%s': \"data_offsets\" must be two non-negative integers [begin, end]", path,
                       name);
    char shp[160];
    format_shape(nd, t->shape, shp, sizeof shp);
    if (e < b)
        return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before begin", path,
                       name, (unsigned long long)b, (unsigned long long)e);
    uint64_t need = count * mg_dtype_size(t->dtype);
    if (overflow || need != e - b)
        return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] span %llu bytes, shape %s %s needs %s%llu",
                       path, name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)(e - b), shp,
                       g_long_names[t->dtype], overflow ? "more than " : "",
                       (unsigned long long)(overflow ? UINT64_MAX : need));
    if (e > st->data_size)
        return MG_FAIL(MG_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data section (%zu bytes; "
                       "file truncated or header wrong)",
                       path, name, (unsigned long long)b, (unsigned long long)e, st->data_size);
    t->count = (int64_t)count;
    t->nbytes = (size_t)need;
    t->begin = (size_t)b;
    t->end = (size_t)e;
    t->data = st->data + b;
    t->fd1 = st->fd1;
    t->file_offset = (uint64_t)(st->data - (const uint8_t *)st->map) + b;
    t->file_data = t->data;
    return MG_OK;
}

/* qsort comparators over arrays of tensor pointers (no global state: the reader is reentrant). */
static int cmp_by_offset(const void *a, const void *b) {
    const mg_st_tensor *x = *(const mg_st_tensor *const *)a, *y = *(const mg_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}
static int cmp_by_name(const void *a, const void *b) {
    return strcmp((*(const mg_st_tensor *const *)a)->name, (*(const mg_st_tensor *const *)b)->name);
}

static mg_status check_layout(mg_safetensors *st) {
    if (st->n == 0) {
        if (st->data_size)
            return MG_FAIL(MG_ERR_FORMAT, "%s: no tensors but a %zu-byte data section", st->path, st->data_size);
        return MG_OK;
    }
    const mg_st_tensor **idx = malloc((size_t)st->n * sizeof *idx);
    if (!idx) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", st->path);
    for (int i = 0; i < st->n; i++) idx[i] = &st->tensors[i];
    qsort(idx, (size_t)st->n, sizeof *idx, cmp_by_name);
    mg_status s = MG_OK;
    for (int i = 1; i < st->n && s == MG_OK; i++)
        if (!strcmp(idx[i]->name, idx[i - 1]->name))
            s = MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", st->path, idx[i]->name);
    if (s == MG_OK) {
        qsort(idx, (size_t)st->n, sizeof *idx, cmp_by_offset);
        size_t pos = 0;
        const char *prev = NULL;
        for (int i = 0; i < st->n && s == MG_OK; i++) {
            const mg_st_tensor *t = idx[i];
            if (t->begin < pos)
                s = MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': data_offsets [%zu, %zu] overlap tensor '%s' (ends at %zu)",
                            st->path, t->name, t->begin, t->end, prev, pos);
            else if (t->begin > pos)
                s = MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': data_offsets [%zu, %zu] leave a gap of %zu bytes after %s%s%s",
                            st->path, t->name, t->begin, t->end, t->begin - pos, prev ? "tensor '" : "the start",
                            prev ? prev : "", prev ? "'" : "");
            pos = t->end;
            prev = t->name;
        }
        if (s == MG_OK && pos != st->data_size)
            s = MG_FAIL(MG_ERR_FORMAT, "%s: tensors cover %zu bytes but the data section holds %zu (trailing bytes)",
                        st->path, pos, st->data_size);
    }
    free((void *)idx);
    return s;
}

static mg_status parse_header(mg_safetensors *st, const char *json, size_t len) {
    const char *path = st->path;
    size_t k = 0;
    while (k < len && json[k] == ' ') k++;
    if (k == len || json[k] != '{')
        return MG_FAIL(MG_ERR_FORMAT, "%s: header does not start with '{' (not a safetensors file?)", path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        size_t at = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        if (!root) {
            const char *e = cJSON_GetErrorPtr();
            if (e && e >= json && e <= json + len) at = (size_t)(e - json);
        }
        cJSON_Delete(root);
        return MG_FAIL(MG_ERR_FORMAT, "%s: header is not a valid JSON object (error near byte %zu of %zu)", path,
                       at, len);
    }
    for (const char *p = end; p && p < json + len; p++)
        if (*p != ' ' && *p != '\0') {
            cJSON_Delete(root);
            return MG_FAIL(MG_ERR_FORMAT, "%s: unexpected bytes after the JSON header (only space padding allowed)",
                           path);
        }
    int n = cJSON_GetArraySize(root);
    mg_status s = MG_OK;
    st->tensors = calloc((size_t)(n ? n : 1), sizeof *st->tensors);
    if (!st->tensors) s = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory for %d tensors", path, n);
    for (const cJSON *it = root->child; it && s == MG_OK; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) {
            if (!cJSON_IsObject(it)) {
                s = MG_FAIL(MG_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", path);
                break;
            }
            if (st->meta_keys) {
                s = MG_FAIL(MG_ERR_FORMAT, "%s: \"__metadata__\" appears twice in the header", path);
                break;
            }
            int m = cJSON_GetArraySize(it);
            st->meta_keys = calloc((size_t)(m ? m : 1), sizeof(char *));
            st->meta_values = calloc((size_t)(m ? m : 1), sizeof(char *));
            if (!st->meta_keys || !st->meta_values) {
                s = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            for (const cJSON *mv = it->child; mv && s == MG_OK; mv = mv->next) {
                if (!cJSON_IsString(mv)) {
                    s = MG_FAIL(MG_ERR_FORMAT, "%s: metadata '%s' is not a string", path, mv->string);
                    break;
                }
                char *kk = dup_str(mv->string), *vv = dup_str(mv->valuestring);
                st->meta_keys[st->n_meta] = kk;
                st->meta_values[st->n_meta++] = vv;
                if (!kk || !vv) s = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
            }
            continue;
        }
        mg_st_tensor *t = &st->tensors[st->n];
        t->name = dup_str(it->string);
        if (!t->name) {
            s = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        st->n++;
        s = parse_tensor(st, it, t);
    }
    cJSON_Delete(root);
    if (s == MG_OK) s = check_layout(st);
    return s;
}

mg_status mg_safetensors_open(mg_safetensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    st->path = dup_str(path);
    if (!st->path) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        mg_safetensors_close(st);
        return MG_FAIL(MG_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        mg_safetensors_close(st);
        return MG_FAIL(MG_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        mg_safetensors_close(st);
        return MG_FAIL(MG_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length (truncated?)",
                       path, size);
    }
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    st->fd1 = fd + 1; /* closed by mg_safetensors_close */
    if (m == MAP_FAILED) {
        mg_safetensors_close(st);
        return MG_FAIL(MG_ERR_IO, "%s: cannot map %zu bytes: %s", path, size, strerror(e));
    }
    st->map = m;
    st->map_size = size;
    st->mapped = 1;
    const uint8_t *u = m;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | u[i];
    if (hlen > MG_ST_MAX_HEADER || hlen > size - 8) {
        mg_safetensors_close(st);
        return MG_FAIL(MG_ERR_FORMAT,
                       "%s: header length %llu does not fit: the file is %zu bytes (at most %zu header bytes; "
                       "truncated or not a safetensors file)",
                       path, (unsigned long long)hlen, size, size - 8 < MG_ST_MAX_HEADER ? size - 8 : (size_t)MG_ST_MAX_HEADER);
    }
    st->data = u + 8 + hlen;
    st->data_size = size - 8 - (size_t)hlen;
    mg_status s = parse_header(st, (const char *)u + 8, (size_t)hlen);
    if (s != MG_OK) {
        char *msg = dup_str(mg_error_message());
        mg_safetensors_close(st);
        if (msg) mg_error_set(s, __FILE__, __LINE__, "%s", msg);
        free(msg);
    }
    return s;
}

const mg_st_tensor *mg_safetensors_find(const mg_safetensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

const char *mg_safetensors_meta(const mg_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_keys[i], key)) return st->meta_values[i];
    return NULL;
}

void mg_st_tensor_copy(const mg_st_tensor *t, void *dst) {
    size_t done = 0;
    while (t->fd1 && t->data == t->file_data && done < t->nbytes) {
        ssize_t r = pread(t->fd1 - 1, (char *)dst + done, t->nbytes - done, (off_t)(t->file_offset + done));
        if (r <= 0) break; /* an error or a short file: the rest from the mapping */
        done += (size_t)r;
    }
    if (done < t->nbytes) memcpy((char *)dst + done, (const char *)t->data + done, t->nbytes - done);
}

/* ---------------------------------------------------------------- writer */

void mg_st_writer_init(mg_st_writer *w) { memset(w, 0, sizeof *w); }

void mg_st_writer_free(mg_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->items[i].name);
    free(w->items);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->meta_keys);
    free(w->meta_values);
    memset(w, 0, sizeof *w);
}

mg_status mg_st_writer_add(mg_st_writer *w, const char *name, mg_dtype dtype, int ndim, const int64_t *shape,
                           const void *data) {
    if (!name || !*name || !strcmp(name, "__metadata__"))
        return MG_FAIL(MG_ERR_INVALID_ARG, "safetensors writer: invalid tensor name '%s'", name ? name : "(null)");
    if (dtype < 0 || dtype >= MG_DTYPE_COUNT)
        return MG_FAIL(MG_ERR_INVALID_ARG, "safetensors writer: tensor '%s': unknown dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > MG_ST_MAX_DIMS)
        return MG_FAIL(MG_ERR_INVALID_ARG, "safetensors writer: tensor '%s': %d dimensions (0..%d allowed)", name,
                       ndim, MG_ST_MAX_DIMS);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->items[i].name, name))
            return MG_FAIL(MG_ERR_INVALID_ARG, "safetensors writer: tensor '%s' added twice", name);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return MG_FAIL(MG_ERR_INVALID_ARG, "safetensors writer: tensor '%s': negative dimension %lld", name,
                           (long long)shape[i]);
        count *= (size_t)shape[i];
    }
    if (count && !data)
        return MG_FAIL(MG_ERR_INVALID_ARG, "safetensors writer: tensor '%s': no data", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        mg_st_writer_item *it = realloc(w->items, (size_t)cap * sizeof *it);
        if (!it) return MG_FAIL(MG_ERR_NOMEM, "safetensors writer: out of memory");
        w->items = it;
        w->cap = cap;
    }
    mg_st_writer_item *it = &w->items[w->n];
    memset(it, 0, sizeof *it);
    it->name = dup_str(name);
    if (!it->name) return MG_FAIL(MG_ERR_NOMEM, "safetensors writer: out of memory");
    it->dtype = dtype;
    it->ndim = ndim;
    for (int i = 0; i < ndim; i++) it->shape[i] = shape[i];
    it->nbytes = count * mg_dtype_size(dtype);
    it->data = data;
    w->n++;
    return MG_OK;
}

mg_status mg_st_writer_set_meta(mg_st_writer *w, const char *key, const char *value) {
    if (!key || !value) return MG_FAIL(MG_ERR_INVALID_ARG, "safetensors writer: null metadata key or value");
    for (int i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta_keys[i], key)) {
            char *v = dup_str(value);
            if (!v) return MG_FAIL(MG_ERR_NOMEM, "safetensors writer: out of memory");
            free(w->meta_values[i]);
            w->meta_values[i] = v;
            return MG_OK;
        }
    if (w->n_meta == w->meta_cap) {
        int cap = w->meta_cap ? 2 * w->meta_cap : 16;
        char **k = realloc(w->meta_keys, (size_t)cap * sizeof *k);
        if (!k) return MG_FAIL(MG_ERR_NOMEM, "safetensors writer: out of memory");
        w->meta_keys = k;
        char **v = realloc(w->meta_values, (size_t)cap * sizeof *v);
        if (!v) return MG_FAIL(MG_ERR_NOMEM, "safetensors writer: out of memory");
        w->meta_values = v;
        w->meta_cap = cap;
    }
    char *k = dup_str(key), *v = dup_str(value);
    if (!k || !v) {
        free(k);
        free(v);
        return MG_FAIL(MG_ERR_NOMEM, "safetensors writer: out of memory");
    }
    w->meta_keys[w->n_meta] = k;
    w->meta_values[w->n_meta++] = v;
    return MG_OK;
}

static char *build_header(const mg_st_writer *w, size_t *len) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    int ok = 1;
    if (w->n_meta) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        ok = meta != NULL;
        for (int i = 0; ok && i < w->n_meta; i++)
            ok = cJSON_AddStringToObject(meta, w->meta_keys[i], w->meta_values[i]) != NULL;
    }
    size_t off = 0;
    for (int i = 0; ok && i < w->n; i++) {
        const mg_st_writer_item *it = &w->items[i];
        cJSON *t = cJSON_AddObjectToObject(root, it->name);
        cJSON *shape = t ? cJSON_AddArrayToObject(t, "shape") : NULL;
        cJSON *offs = NULL;
        ok = t && cJSON_AddStringToObject(t, "dtype", g_st_names[it->dtype]) && shape;
        for (int d = 0; ok && d < it->ndim; d++) {
            cJSON *v = cJSON_CreateNumber((double)it->shape[d]);
            ok = v && cJSON_AddItemToArray(shape, v);
        }
        if (ok) offs = cJSON_AddArrayToObject(t, "data_offsets");
        ok = ok && offs;
        cJSON *b = ok ? cJSON_CreateNumber((double)off) : NULL;
        ok = ok && b && cJSON_AddItemToArray(offs, b);
        off += it->nbytes;
        cJSON *e = ok ? cJSON_CreateNumber((double)off) : NULL;
        ok = ok && e && cJSON_AddItemToArray(offs, e);
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) return NULL;
    size_t n = strlen(text), padded = (n + 7) / 8 * 8;
    char *out = realloc(text, padded + 1);
    if (!out) {
        free(text);
        return NULL;
    }
    memset(out + n, ' ', padded - n);
    out[padded] = 0;
    *len = padded;
    return out;
}

mg_status mg_st_writer_write(const mg_st_writer *w, const char *path) {
    size_t hlen = 0;
    char *hdr = build_header(w, &hlen);
    if (!hdr) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory building the safetensors header", path);
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    mg_atomic_file af;
    mg_status s = mg_atomic_file_open(&af, path);
    if (s != MG_OK) {
        free(hdr);
        return s;
    }
    s = mg_atomic_file_write(&af, lenbuf, 8);
    if (s == MG_OK) s = mg_atomic_file_write(&af, hdr, hlen);
    for (int i = 0; s == MG_OK && i < w->n; i++)
        if (w->items[i].nbytes) s = mg_atomic_file_write(&af, w->items[i].data, w->items[i].nbytes);
    free(hdr);
    if (s != MG_OK) {
        mg_atomic_file_abort(&af);
        return s;
    }
    return mg_atomic_file_commit(&af);
}
