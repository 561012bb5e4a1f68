/* dataset.c: sample lists: ImageNet folder scan (torchvision ImageFolder order, cached), list
 * files ("path label" or "path"), IDX (Fashion-MNIST) files, and the bad-file policy. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/data_internal.h"
#include "multigrain/data.h"

/* ---------------------------------------------------------------------------------------- */
/* Growable string pool and vectors                                                          */

typedef struct sbuf {
    char *d;
    size_t n, cap;
} sbuf;

static int sbuf_add(sbuf *b, const char *s, size_t len, size_t *off) {
    if (b->n + len + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1 << 16;
        while (nc < b->n + len + 1) nc *= 2;
        char *d = realloc(b->d, nc);
        if (!d) return -1;
        b->d = d;
        b->cap = nc;
    }
    memcpy(b->d + b->n, s, len);
    b->d[b->n + len] = 0;
    *off = b->n;
    b->n += len + 1;
    return 0;
}

typedef struct entry {
    size_t dir_off;  /* folder path (relative to root) in the pool, for the os.walk sort */
    size_t name_off; /* file name */
    size_t path_off; /* relative path */
    int32_t label;
} entry;

typedef struct evec {
    entry *d;
    size_t n, cap;
} evec;

static int evec_push(evec *v, entry e) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 1024;
        entry *d = realloc(v->d, nc * sizeof *d);
        if (!d) return -1;
        v->d = d;
        v->cap = nc;
    }
    v->d[v->n++] = e;
    return 0;
}

static int utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2 : (*p & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0) return 0;
        p++;
        for (int i = 0; i < n; i++, p++)
            if ((*p & 0xC0) != 0x80) return 0;
    }
    return 1;
}

static int has_image_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    return !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png");
}

static int is_dir_entry(const char *parent, struct dirent *e) {
    if (e->d_type == DT_DIR) return 1;
    if (e->d_type != DT_UNKNOWN && e->d_type != DT_LNK) return 0;
    char *p = mg_path_join(parent, e->d_name);
    struct stat st;
    int r = p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
    free(p);
    return r;
}

static int is_file_entry(const char *parent, struct dirent *e) {
    if (e->d_type == DT_REG) return 1;
    if (e->d_type != DT_UNKNOWN && e->d_type != DT_LNK) return 0;
    char *p = mg_path_join(parent, e->d_name);
    struct stat st;
    int r = p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
    free(p);
    return r;
}

typedef struct scan_ctx {
    const char *root;
    sbuf pool;
    evec ents;
    int64_t skipped_ext, non_utf8;
    const char *first_non_utf8;
} scan_ctx;

static const char *pool_str(const scan_ctx *s, size_t off) { return s->pool.d + off; }

/* Walks root/rel (a class folder or one of its sub-folders) collecting image files. */
static mg_status scan_dir(scan_ctx *s, const char *rel, int32_t label, bool recursive, int depth) {
    char *full = mg_path_join(s->root, rel);
    if (!full) return MG_FAIL(MG_ERR_NOMEM, "scan: out of memory");
    DIR *d = opendir(full);
    if (!d) {
        mg_status st = MG_FAIL(MG_ERR_IO, "%s: cannot open folder: %s", full, strerror(errno));
        free(full);
        return st;
    }
    size_t dir_off;
    if (sbuf_add(&s->pool, rel, strlen(rel), &dir_off)) { closedir(d); free(full); return MG_FAIL(MG_ERR_NOMEM, "scan: out of memory"); }
    struct dirent *e;
    char **subs = NULL;
    size_t nsubs = 0;
    mg_status st = MG_OK;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (recursive && depth < 64 && is_dir_entry(full, e)) {
            char **ns = realloc(subs, (nsubs + 1) * sizeof *subs);
            char *sub = mg_path_join(rel, e->d_name);
            if (!ns || !sub) { free(sub); if (ns) subs = ns; st = MG_FAIL(MG_ERR_NOMEM, "scan: out of memory"); break; }
            subs = ns;
            subs[nsubs++] = sub;
            continue;
        }
        if (!has_image_ext(e->d_name)) {
            if (e->d_name[0] != '.') s->skipped_ext++;
            continue;
        }
        if (!is_file_entry(full, e)) continue;
        if (!utf8_valid(e->d_name)) s->non_utf8++;
        entry en = {dir_off, 0, 0, label};
        size_t nl = strlen(e->d_name), rl = strlen(rel);
        if (sbuf_add(&s->pool, e->d_name, nl, &en.name_off)) { st = MG_FAIL(MG_ERR_NOMEM, "scan: out of memory"); break; }
        char *relpath = mg_path_join(rel, pool_str(s, en.name_off));
        if (!relpath || sbuf_add(&s->pool, relpath, rl + 1 + nl, &en.path_off) || evec_push(&s->ents, en)) {
            free(relpath);
            st = MG_FAIL(MG_ERR_NOMEM, "scan: out of memory");
            break;
        }
        free(relpath);
    }
    closedir(d);
    free(full);
    for (size_t i = 0; i < nsubs; i++) {
        if (st == MG_OK) st = scan_dir(s, subs[i], label, recursive, depth + 1);
        free(subs[i]);
    }
    free(subs);
    return st;
}

static const char *g_sort_pool; /* qsort has no context argument; scans are serialised below */
static int cmp_entry(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->label != y->label) return x->label < y->label ? -1 : 1;
    int c = strcmp(g_sort_pool + x->dir_off, g_sort_pool + y->dir_off);
    if (c) return c;
    return strcmp(g_sort_pool + x->name_off, g_sort_pool + y->name_off);
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static mg_status dataset_alloc(mg_dataset *ds, int64_t n, bool labelled) {
    ds->n = n;
    ds->paths = calloc((size_t)(n ? n : 1), sizeof(char *));
    ds->labels = labelled ? calloc((size_t)(n ? n : 1), sizeof(int32_t)) : NULL;
    ds->bad = calloc((size_t)(n ? n : 1), 1);
    ds->max_bad = 100;
    if (!ds->paths || !ds->bad || (labelled && !ds->labels)) return MG_FAIL(MG_ERR_NOMEM, "dataset: cannot allocate %lld samples", (long long)n);
    return MG_OK;
}

void mg_dataset_free(mg_dataset *ds) {
    if (!ds) return;
    free(ds->root);
    free(ds->paths);
    free(ds->labels);
    free(ds->class_names);
    free(ds->bad);
    free(ds->idx_pixels);
    free(ds->strings_);
    memset(ds, 0, sizeof *ds);
}

/* Fingerprint of the folder tree's modification times (root and class folders). */
static uint64_t tree_stamp(const char *root, char **classes, int nc) {
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    struct stat st;
    if (stat(root, &st) == 0) h = mg_hash_u64(h ^ (uint64_t)st.st_mtim.tv_sec * 1000000007ULL ^ (uint64_t)st.st_mtim.tv_nsec);
    for (int i = 0; i < nc; i++) {
        char *p = mg_path_join(root, classes[i]);
        if (p && stat(p, &st) == 0) h = mg_hash_u64(h ^ (uint64_t)st.st_mtim.tv_sec * 1000000007ULL ^ (uint64_t)st.st_mtim.tv_nsec);
        free(p);
    }
    return h;
}

/* Cache: "multigrain-scan 1 <stamp> <root>\n" "<nclasses> <nsamples>\n" then class names, then
 * "<label> <path>" lines. */
static mg_status cache_read(const char *cache, const char *root, uint64_t stamp, mg_dataset *ds, bool *hit) {
    *hit = false;
    void *data;
    size_t size;
    if (!mg_path_exists(cache)) return MG_OK;
    MG_TRY(mg_file_read_all(cache, &data, &size));
    char *s = data, *save = NULL;
    char *line = strtok_r(s, "\n", &save);
    unsigned long long st_read;
    int consumed = 0;
    if (!line || sscanf(line, "multigrain-scan 1 %llx %n", &st_read, &consumed) != 1 || st_read != stamp ||
        strcmp(line + consumed, root) != 0) {
        free(data);
        return MG_OK;
    }
    line = strtok_r(NULL, "\n", &save);
    long long nc, ns;
    if (!line || sscanf(line, "%lld %lld", &nc, &ns) != 2 || nc < 0 || ns < 0 || nc > 100000000 || ns > 1000000000LL) { free(data); return MG_OK; }
    mg_dataset tmp = {0};
    mg_status stt = dataset_alloc(&tmp, ns, true);
    if (stt != MG_OK) { free(data); mg_dataset_free(&tmp); return stt; }
    tmp.n_classes = (int)nc;
    tmp.class_names = calloc((size_t)(nc ? nc : 1), sizeof(char *));
    if (!tmp.class_names) { free(data); mg_dataset_free(&tmp); return MG_FAIL(MG_ERR_NOMEM, "scan cache: out of memory"); }
    for (long long i = 0; i < nc; i++) {
        line = strtok_r(NULL, "\n", &save);
        if (!line) { free(data); mg_dataset_free(&tmp); return MG_OK; }
        tmp.class_names[i] = line;
    }
    for (long long i = 0; i < ns; i++) {
        line = strtok_r(NULL, "\n", &save);
        char *sp = line ? strchr(line, ' ') : NULL;
        if (!sp) { free(data); mg_dataset_free(&tmp); return MG_OK; }
        *sp = 0;
        tmp.labels[i] = (int32_t)atol(line);
        tmp.paths[i] = sp + 1;
        if (tmp.labels[i] < 0 || tmp.labels[i] >= nc) { free(data); mg_dataset_free(&tmp); return MG_OK; }
    }
    tmp.strings_ = data;
    tmp.root = strdup(root);
    if (!tmp.root) { mg_dataset_free(&tmp); return MG_FAIL(MG_ERR_NOMEM, "scan cache: out of memory"); }
    *ds = tmp;
    *hit = true;
    return MG_OK;
}

static mg_status cache_write(const char *cache, const char *root, uint64_t stamp, const mg_dataset *ds) {
    sbuf b = {0};
    char head[64];
    size_t off;
    int bad = 0;
    snprintf(head, sizeof head, "multigrain-scan 1 %llx ", (unsigned long long)stamp);
    bad |= sbuf_add(&b, head, strlen(head), &off);
    b.n--; /* drop the NUL separators: build one text */
    bad |= sbuf_add(&b, root, strlen(root), &off);
    b.n--;
    snprintf(head, sizeof head, "\n%d %lld\n", ds->n_classes, (long long)ds->n);
    bad |= sbuf_add(&b, head, strlen(head), &off);
    b.n--;
    for (int i = 0; i < ds->n_classes && !bad; i++) {
        if (strchr(ds->class_names[i], '\n')) { free(b.d); return MG_OK; }
        bad |= sbuf_add(&b, ds->class_names[i], strlen(ds->class_names[i]), &off);
        b.d[b.n - 1] = '\n';
    }
    for (int64_t i = 0; i < ds->n && !bad; i++) {
        if (strchr(ds->paths[i], '\n')) { free(b.d); return MG_OK; }
        snprintf(head, sizeof head, "%d ", ds->labels[i]);
        bad |= sbuf_add(&b, head, strlen(head), &off);
        b.n--;
        bad |= sbuf_add(&b, ds->paths[i], strlen(ds->paths[i]), &off);
        b.d[b.n - 1] = '\n';
    }
    if (bad) { free(b.d); return MG_FAIL(MG_ERR_NOMEM, "scan cache: out of memory"); }
    mg_status st = mg_file_write_atomic(cache, b.d, b.n);
    free(b.d);
    return st;
}

mg_status mg_dataset_scan_folder(const char *root, const mg_scan_opts *o, mg_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    if (!mg_path_is_dir(root)) return MG_FAIL(MG_ERR_IO, "dataset folder '%s' does not exist or is not a folder", root);
    DIR *d = opendir(root);
    if (!d) return MG_FAIL(MG_ERR_IO, "%s: cannot open folder: %s", root, strerror(errno));
    char **classes = NULL;
    int nc = 0;
    struct dirent *e;
    int64_t loose_files = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!is_dir_entry(root, e)) { loose_files++; continue; }
        char **nc2 = realloc(classes, (size_t)(nc + 1) * sizeof *classes);
        char *name = strdup(e->d_name);
        if (!nc2 || !name) {
            free(name);
            if (nc2) classes = nc2;
            for (int i = 0; i < nc; i++) free(classes[i]);
            free(classes);
            closedir(d);
            return MG_FAIL(MG_ERR_NOMEM, "scan: out of memory");
        }
        classes = nc2;
        classes[nc++] = name;
    }
    closedir(d);
    mg_status st = MG_OK;
    if (nc == 0) {
        st = MG_FAIL(MG_ERR_FORMAT, "dataset folder '%s' has no class sub-folders (expected ROOT/<class>/<image>.jpg%s)", root,
                     loose_files ? "; it holds files directly: use a list file instead" : "");
        free(classes);
        return st;
    }
    qsort(classes, (size_t)nc, sizeof *classes, cmp_str);
    uint64_t stamp = tree_stamp(root, classes, nc);
    if (o && o->cache_path) {
        bool hit;
        st = cache_read(o->cache_path, root, stamp, ds, &hit);
        if (st == MG_OK && hit) {
            for (int i = 0; i < nc; i++) free(classes[i]);
            free(classes);
            mg_log_debug("dataset %s: %lld samples from scan cache %s", root, (long long)ds->n, o->cache_path);
            return MG_OK;
        }
        if (st != MG_OK) mg_log_warn("scan cache %s unusable (%s): rescanning", o->cache_path, mg_error_message());
        st = MG_OK;
    }
    scan_ctx s = {0};
    s.root = root;
    bool recursive = o ? o->recursive : true;
    for (int i = 0; i < nc && st == MG_OK; i++) {
        size_t before = s.ents.n;
        st = scan_dir(&s, classes[i], i, recursive, 0);
        if (st == MG_OK && s.ents.n == before) mg_log_warn("dataset %s: class folder '%s' holds no .jpg/.jpeg/.png file", root, classes[i]);
        if (!utf8_valid(classes[i])) mg_log_warn("dataset %s: class folder name %d is not valid UTF-8 (kept as bytes)", root, i);
    }
    if (st == MG_OK && s.ents.n == 0) st = MG_FAIL(MG_ERR_FORMAT, "dataset folder '%s': no .jpg/.jpeg/.png file in its %d class folders", root, nc);
    if (st == MG_OK) st = dataset_alloc(ds, (int64_t)s.ents.n, true);
    if (st == MG_OK) {
        g_sort_pool = s.pool.d;
        qsort(s.ents.d, s.ents.n, sizeof(entry), cmp_entry);
        /* class names go into the pool too */
        size_t *coff = malloc(sizeof(size_t) * (size_t)nc);
        ds->class_names = calloc((size_t)nc, sizeof(char *));
        ds->root = strdup(root);
        if (!coff || !ds->class_names || !ds->root) st = MG_FAIL(MG_ERR_NOMEM, "scan: out of memory");
        for (int i = 0; i < nc && st == MG_OK; i++)
            if (sbuf_add(&s.pool, classes[i], strlen(classes[i]), &coff[i])) st = MG_FAIL(MG_ERR_NOMEM, "scan: out of memory");
        if (st == MG_OK) {
            ds->n_classes = nc;
            for (int i = 0; i < nc; i++) ds->class_names[i] = s.pool.d + coff[i];
            for (size_t i = 0; i < s.ents.n; i++) {
                ds->paths[i] = s.pool.d + s.ents.d[i].path_off;
                ds->labels[i] = s.ents.d[i].label;
            }
            ds->strings_ = s.pool.d;
            s.pool.d = NULL;
        }
        free(coff);
    }
    if (st == MG_OK) {
        if (s.skipped_ext) mg_log_info("dataset %s: skipped %lld files without a .jpg/.jpeg/.png extension", root, (long long)s.skipped_ext);
        if (s.non_utf8) mg_log_warn("dataset %s: %lld file names are not valid UTF-8 (read as bytes)", root, (long long)s.non_utf8);
        if (o && o->cache_path) {
            mg_status cs = cache_write(o->cache_path, root, stamp, ds);
            if (cs != MG_OK) mg_log_warn("cannot write scan cache: %s", mg_error_message());
        }
    } else {
        mg_dataset_free(ds);
    }
    free(s.pool.d);
    free(s.ents.d);
    for (int i = 0; i < nc; i++) free(classes[i]);
    free(classes);
    return st;
}

/* ---------------------------------------------------------------------------------------- */

mg_status mg_dataset_read_list(const char *list_path, const char *root, mg_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    void *data;
    size_t size;
    MG_TRY(mg_file_read_all(list_path, &data, &size));
    char *s = data;
    /* pass 1: count lines and decide labelled/unlabelled from the first data line */
    int64_t n = 0;
    int labelled = -1;
    mg_status st = MG_OK;
    int64_t lineno = 0;
    char *p = s;
    int32_t max_label = -1;
    char **paths = NULL;
    int32_t *labels = NULL;
    size_t cap = 0;
    while (*p && st == MG_OK) {
        char *nl = strchr(p, '\n');
        char *end = nl ? nl : p + strlen(p);
        char *next = nl ? nl + 1 : end;
        lineno++;
        *end = 0;
        if (end > p && end[-1] == '\r') *--end = 0;
        char *q = p;
        while (*q == ' ' || *q == '\t') q++;
        if (*q == 0 || *q == '#') { p = next; continue; }
        /* trailing whitespace */
        while (end > q && (end[-1] == ' ' || end[-1] == '\t')) *--end = 0;
        char *sep = end;
        while (sep > q && sep[-1] != ' ' && sep[-1] != '\t') sep--;
        int has_label = 0;
        long lab = -1;
        if (sep > q) {
            char *ep;
            errno = 0;
            lab = strtol(sep, &ep, 10);
            has_label = *ep == 0 && errno == 0 && lab >= 0 && lab <= 0x7fffffff;
        }
        if (labelled < 0) labelled = has_label;
        if (labelled && !has_label) {
            st = MG_FAIL(MG_ERR_FORMAT, "%s:%lld: expected 'path label' with an integer label >= 0 (earlier lines have labels), found '%s'",
                         list_path, (long long)lineno, q);
            break;
        }
        if (labelled) {
            char *pe = sep;
            while (pe > q && (pe[-1] == ' ' || pe[-1] == '\t')) pe--;
            *pe = 0;
        }
        if ((size_t)n == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            char **np = realloc(paths, nc * sizeof *np);
            if (np) paths = np;
            int32_t *nlab = realloc(labels, nc * sizeof *nlab);
            if (nlab) labels = nlab;
            if (!np || !nlab) { st = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", list_path); break; }
            cap = nc;
        }
        paths[n] = q;
        labels[n] = labelled ? (int32_t)lab : -1;
        if (labels[n] > max_label) max_label = labels[n];
        n++;
        p = next;
    }
    if (st == MG_OK && n == 0) st = MG_FAIL(MG_ERR_FORMAT, "%s: the list holds no sample (expected 'path label' or 'path' lines)", list_path);
    if (st == MG_OK) st = dataset_alloc(ds, n, labelled > 0);
    if (st == MG_OK) {
        for (int64_t i = 0; i < n; i++) {
            ds->paths[i] = paths[i];
            if (ds->labels) ds->labels[i] = labels[i];
        }
        ds->n_classes = labelled > 0 ? max_label + 1 : 0;
        ds->strings_ = data;
        if (root) ds->root = strdup(root);
        else {
            const char *slash = strrchr(list_path, '/');
            ds->root = slash ? strndup(list_path, (size_t)(slash - list_path)) : strdup(".");
        }
        if (!ds->root) st = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", list_path);
    }
    free(paths);
    free(labels);
    if (st != MG_OK) {
        if (ds->strings_ == data) ds->strings_ = NULL;
        mg_dataset_free(ds);
        free(data);
    }
    return st;
}

/* ---------------------------------------------------------------------------------------- */

static mg_status idx_read(const char *path, int want_dims, uint8_t **out, int64_t dims[3]) {
    void *data;
    size_t size;
    MG_TRY(mg_file_read_all(path, &data, &size));
    const uint8_t *b = data;
    if (size >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
        free(data);
        return MG_FAIL(MG_ERR_UNSUPPORTED, "%s: gzip-compressed IDX file; decompress it first (zcat %s > %s.idx)", path, path, path);
    }
    if (size < 4 || b[0] || b[1] || b[2] != 0x08 || b[3] != want_dims) {
        mg_status st = MG_FAIL(MG_ERR_FORMAT, "%s: expected an IDX file of unsigned bytes with %d dimensions (magic 00 00 08 %02x), found %02x %02x %02x %02x",
                               path, want_dims, want_dims, size > 0 ? b[0] : 0, size > 1 ? b[1] : 0, size > 2 ? b[2] : 0, size > 3 ? b[3] : 0);
        free(data);
        return st;
    }
    size_t total = 1, hdr = 4 + 4 * (size_t)want_dims;
    if (size < hdr) { free(data); return MG_FAIL(MG_ERR_FORMAT, "%s: truncated IDX header", path); }
    for (int i = 0; i < want_dims; i++) {
        const uint8_t *q = b + 4 + 4 * i;
        dims[i] = ((int64_t)q[0] << 24) | (q[1] << 16) | (q[2] << 8) | q[3];
        if (dims[i] <= 0 || dims[i] > 100000000) { free(data); return MG_FAIL(MG_ERR_FORMAT, "%s: bad IDX dimension %lld", path, (long long)dims[i]); }
        total *= (size_t)dims[i];
    }
    if (size != hdr + total) {
        free(data);
        return MG_FAIL(MG_ERR_FORMAT, "%s: expected %zu bytes for the IDX payload, found %zu", path, total, size - hdr);
    }
    uint8_t *px = malloc(total ? total : 1);
    if (!px) { free(data); return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path); }
    memcpy(px, b + hdr, total);
    free(data);
    *out = px;
    return MG_OK;
}

mg_status mg_dataset_read_idx(const char *images_path, const char *labels_path, mg_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    uint8_t *px = NULL, *lb = NULL;
    int64_t di[3], dl[3];
    MG_TRY(idx_read(images_path, 3, &px, di));
    mg_status st = idx_read(labels_path, 1, &lb, dl);
    if (st != MG_OK) { free(px); return st; }
    if (dl[0] != di[0]) {
        free(px);
        free(lb);
        return MG_FAIL(MG_ERR_FORMAT, "%s has %lld images but %s has %lld labels", images_path, (long long)di[0], labels_path, (long long)dl[0]);
    }
    st = dataset_alloc(ds, di[0], true);
    int maxl = -1;
    if (st == MG_OK) {
        for (int64_t i = 0; i < di[0]; i++) {
            ds->labels[i] = lb[i];
            if (lb[i] > maxl) maxl = lb[i];
        }
        ds->n_classes = maxl + 1;
        ds->idx_pixels = px;
        ds->idx_h = (int)di[1];
        ds->idx_w = (int)di[2];
        ds->root = strdup(images_path);
        if (!ds->root) st = MG_FAIL(MG_ERR_NOMEM, "out of memory");
    }
    free(lb);
    if (st != MG_OK) {
        if (ds->idx_pixels != px) free(px);
        mg_dataset_free(ds);
    }
    return st;
}

/* ---------------------------------------------------------------------------------------- */

mg_status mg_dataset_path(const mg_dataset *ds, int64_t i, char *buf, size_t cap) {
    if (i < 0 || i >= ds->n) return MG_FAIL(MG_ERR_INVALID_ARG, "dataset: index %lld outside [0, %lld)", (long long)i, (long long)ds->n);
    int r;
    if (!ds->paths || !ds->paths[i]) r = snprintf(buf, cap, "%s[%lld]", ds->root ? ds->root : "", (long long)i);
    else if (ds->paths[i][0] == '/' || !ds->root || !ds->root[0]) r = snprintf(buf, cap, "%s", ds->paths[i]);
    else r = snprintf(buf, cap, "%s/%s", ds->root, ds->paths[i]);
    if (r < 0 || (size_t)r >= cap) return MG_FAIL(MG_ERR_INVALID_ARG, "dataset: path of sample %lld longer than %zu bytes", (long long)i, cap);
    return MG_OK;
}

mg_status mg_dataset_decode(const mg_dataset *ds, int64_t i, const mg_decode_opts *o, mg_image *out) {
    if (ds->idx_pixels) {
        if (i < 0 || i >= ds->n) return MG_FAIL(MG_ERR_INVALID_ARG, "dataset: index %lld outside [0, %lld)", (long long)i, (long long)ds->n);
        MG_TRY(mg_image_alloc(out, ds->idx_w, ds->idx_h));
        const uint8_t *g = ds->idx_pixels + (size_t)i * ds->idx_w * ds->idx_h;
        for (size_t k = 0; k < (size_t)ds->idx_w * ds->idx_h; k++) out->data[3 * k] = out->data[3 * k + 1] = out->data[3 * k + 2] = g[k];
        return MG_OK;
    }
    char path[4096];
    MG_TRY(mg_dataset_path(ds, i, path, sizeof path));
    return mg_image_decode_file(path, o, out);
}

mg_status mg_dataset_mark_bad(mg_dataset *ds, int64_t i, const char *reason) {
    if (__atomic_exchange_n(&ds->bad[i], 1, __ATOMIC_ACQ_REL) == 0) {
        int64_t nb = __atomic_add_fetch(&ds->n_bad, 1, __ATOMIC_ACQ_REL);
        char path[4096];
        if (mg_dataset_path(ds, i, path, sizeof path) != MG_OK) snprintf(path, sizeof path, "sample %lld", (long long)i);
        mg_log_warn("skipping bad image %s (%s) [%lld bad so far]", path, reason, (long long)nb);
    }
    int64_t nb = __atomic_load_n(&ds->n_bad, __ATOMIC_ACQUIRE);
    if (nb > ds->max_bad)
        return MG_FAIL(MG_ERR_FORMAT, "dataset %s: %lld bad images, more than the allowed %lld (see the warnings above; raise max_bad to continue)",
                       ds->root ? ds->root : "", (long long)nb, (long long)ds->max_bad);
    return MG_OK;
}
