/* metrics.c: accuracy, average precision, mAP, N-S score and retrieval ground truth (see metrics.h). */
#include "multigrain/metrics.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"

mg_status mg_metrics_topk(const float *logits, int64_t n, int64_t n_classes, const int64_t *labels,
                          int64_t *correct1, int64_t *correct5) {
    if (!logits || !labels || n < 0 || n_classes < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "accuracy: needs logits [n, classes >= 1] and labels");
    int64_t c1 = 0, c5 = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t y = labels[i];
        if (y < 0 || y >= n_classes)
            return MG_FAIL(MG_ERR_INVALID_ARG, "accuracy: label of sample %lld is %lld, expected [0, %lld)",
                           (long long)i, (long long)y, (long long)n_classes);
        const float *r = logits + i * n_classes;
        float v = r[y];
        int64_t rank = 0; /* classes ranked before the label */
        for (int64_t c = 0; c < n_classes; c++)
            if (r[c] > v || (r[c] == v && c < y)) rank++;
        c1 += rank < 1;
        c5 += rank < 5;
    }
    if (correct1) *correct1 = c1;
    if (correct5) *correct5 = c5;
    return MG_OK;
}

double mg_ap_from_ranks(const int64_t *ranks, int64_t n_found, int64_t n_relevant, mg_ap_kind kind) {
    if (n_relevant <= 0) return 0.0;
    double step = 1.0 / (double)n_relevant, ap = 0.0;
    for (int64_t k = 0; k < n_found; k++) {
        double r = (double)ranks[k];
        double after = (double)(k + 1) / (r + 1.0);
        if (kind == MG_AP_STANDARD) {
            ap += step * after;
        } else {
            double before = ranks[k] == 0 ? 1.0 : (double)k / r;
            ap += step * (before + after) / 2.0;
        }
    }
    return ap;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

mg_status mg_retrieval_query_ap(const int64_t *ranked, int64_t len, int64_t self, const int64_t *relevant,
                                int64_t n_relevant, mg_ap_kind kind, double *ap) {
    if ((!ranked && len > 0) || len < 0 || (!relevant && n_relevant > 0) || n_relevant < 0 || !ap)
        return MG_FAIL(MG_ERR_INVALID_ARG, "AP: invalid arguments");
    int64_t *rel = malloc(((size_t)n_relevant + 1) * sizeof *rel);
    int64_t *ranks = malloc(((size_t)n_relevant + 1) * sizeof *ranks);
    if (!rel || !ranks) {
        free(rel);
        free(ranks);
        return MG_FAIL(MG_ERR_NOMEM, "AP: out of memory");
    }
    int64_t nr = 0;
    for (int64_t i = 0; i < n_relevant; i++)
        if (relevant[i] != self) rel[nr++] = relevant[i];
    qsort(rel, (size_t)nr, sizeof *rel, cmp_i64);
    int64_t u = 0; /* drop duplicates */
    for (int64_t i = 0; i < nr; i++)
        if (u == 0 || rel[u - 1] != rel[i]) rel[u++] = rel[i];
    nr = u;
    if (nr == 0) {
        free(rel);
        free(ranks);
        return MG_FAIL(MG_ERR_INVALID_ARG, "AP: the query has no relevant image (other than itself)");
    }
    int64_t found = 0, r = 0;
    for (int64_t i = 0; i < len && found < nr; i++) {
        if (ranked[i] == self) continue; /* the query is removed from its own list */
        if (bsearch(&ranked[i], rel, (size_t)nr, sizeof *rel, cmp_i64)) ranks[found++] = r;
        r++;
    }
    *ap = mg_ap_from_ranks(ranks, found, nr, kind);
    free(rel);
    free(ranks);
    return MG_OK;
}

void mg_retrieval_gt_free(mg_retrieval_gt *gt) {
    if (!gt) return;
    free(gt->query_self);
    free(gt->rel_start);
    free(gt->rel);
    memset(gt, 0, sizeof *gt);
}

mg_status mg_retrieval_map(const mg_retrieval_gt *gt, const int64_t *ranked, int64_t len, mg_ap_kind kind,
                           double *ap_per_query, double *map) {
    if (!gt || !ranked || len < 1 || !map || gt->n_queries < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "mAP: needs ground truth with queries and rankings");
    double sum = 0;
    for (int64_t q = 0; q < gt->n_queries; q++) {
        double ap;
        mg_status s = mg_retrieval_query_ap(ranked + q * len, len, gt->query_self[q], gt->rel + gt->rel_start[q],
                                            gt->rel_start[q + 1] - gt->rel_start[q], kind, &ap);
        if (s != MG_OK) return mg_error_wrap(s, "mAP: query %lld", (long long)q);
        if (ap_per_query) ap_per_query[q] = ap;
        sum += ap;
    }
    *map = sum / (double)gt->n_queries;
    return MG_OK;
}

/* The leading decimal digits of the basename of `path` (at least `min_digits`), or -1. */
static int64_t basename_id(const char *path, int min_digits) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    while (*b && !isdigit((unsigned char)*b)) b++; /* "ukbench00012.jpg" -> "00012.jpg" */
    int64_t v = 0;
    int nd = 0;
    for (; isdigit((unsigned char)*b) && nd < 18; b++, nd++) v = v * 10 + (*b - '0');
    return nd >= min_digits ? v : -1;
}

static mg_status gt_alloc(mg_retrieval_gt *gt, int64_t nq, int64_t nrel) {
    gt->query_self = malloc(((size_t)nq + 1) * sizeof(int64_t));
    gt->rel_start = malloc(((size_t)nq + 1) * sizeof(int64_t));
    gt->rel = malloc(((size_t)nrel + 1) * sizeof(int64_t));
    if (!gt->query_self || !gt->rel_start || !gt->rel) {
        mg_retrieval_gt_free(gt);
        return MG_FAIL(MG_ERR_NOMEM, "ground truth: out of memory");
    }
    gt->n_queries = nq;
    return MG_OK;
}

mg_status mg_retrieval_gt_holidays(char *const *names, int64_t n, mg_retrieval_gt *gt) {
    memset(gt, 0, sizeof *gt);
    if (!names || n < 1) return MG_FAIL(MG_ERR_INVALID_ARG, "Holidays: no images");
    int64_t *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) return MG_FAIL(MG_ERR_NOMEM, "Holidays: out of memory");
    int64_t nq = 0;
    for (int64_t i = 0; i < n; i++) {
        ids[i] = basename_id(names[i], 6);
        if (ids[i] < 0) {
            free(ids);
            return MG_FAIL(MG_ERR_FORMAT, "Holidays: image %lld '%s': expected a name starting with a 6-digit id",
                           (long long)i, names[i]);
        }
        for (int64_t j = 0; j < i; j++)
            if (ids[j] == ids[i]) {
                long long dup = (long long)ids[i];
                free(ids);
                return MG_FAIL(MG_ERR_FORMAT, "Holidays: image id %lld appears twice ('%s')", dup, names[i]);
            }
        nq += ids[i] % 100 == 0;
    }
    mg_status s = gt_alloc(gt, nq, n);
    if (s != MG_OK) {
        free(ids);
        return s;
    }
    gt->n_db = n;
    int64_t q = 0, nr = 0;
    gt->rel_start[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] % 100 != 0) continue;
        gt->query_self[q] = i;
        for (int64_t j = 0; j < n; j++)
            if (j != i && ids[j] / 100 == ids[i] / 100) gt->rel[nr++] = j;
        gt->rel_start[++q] = nr;
    }
    /* Every image must belong to a group that has a query. */
    for (int64_t j = 0; j < n; j++) {
        int has = 0;
        for (int64_t i = 0; i < n && !has; i++) has = ids[i] / 100 == ids[j] / 100 && ids[i] % 100 == 0;
        if (!has) {
            s = MG_FAIL(MG_ERR_FORMAT, "Holidays: image '%s' (id %lld) has no group query (id %lld missing)",
                        names[j], (long long)ids[j], (long long)(ids[j] / 100 * 100));
            break;
        }
    }
    free(ids);
    if (s != MG_OK) mg_retrieval_gt_free(gt);
    return s;
}

mg_status mg_retrieval_ukbench_groups(char *const *names, int64_t n, int64_t *group) {
    if (!names || n < 1 || !group) return MG_FAIL(MG_ERR_INVALID_ARG, "UKBench: no images");
    int64_t maxg = -1;
    for (int64_t i = 0; i < n; i++) {
        int64_t id = basename_id(names[i], 1);
        if (id < 0)
            return MG_FAIL(MG_ERR_FORMAT, "UKBench: image %lld '%s': expected a name like ukbench00000.jpg",
                           (long long)i, names[i]);
        group[i] = id / 4;
        if (group[i] > maxg) maxg = group[i];
    }
    int *cnt = calloc((size_t)maxg + 1, sizeof *cnt);
    if (!cnt) return MG_FAIL(MG_ERR_NOMEM, "UKBench: out of memory");
    for (int64_t i = 0; i < n; i++) cnt[group[i]]++;
    mg_status s = MG_OK;
    for (int64_t i = 0; i < n; i++)
        if (cnt[group[i]] != 4) {
            s = MG_FAIL(MG_ERR_FORMAT, "UKBench: object %lld (image '%s') has %d images, expected 4",
                        (long long)group[i], names[i], cnt[group[i]]);
            break;
        }
    free(cnt);
    return s;
}

mg_status mg_retrieval_ns_score(const int64_t *group, int64_t n_db, const int64_t *query_group, int64_t nq,
                                const int64_t *ranked, int64_t len, double *ns) {
    if (!group || !query_group || !ranked || !ns || nq < 1 || len < 4)
        return MG_FAIL(MG_ERR_INVALID_ARG, "N-S score: needs >= 1 query and rankings of length >= 4 (found %lld)",
                       (long long)len);
    int64_t total = 0;
    for (int64_t q = 0; q < nq; q++)
        for (int64_t r = 0; r < 4; r++) {
            int64_t id = ranked[q * len + r];
            if (id < 0 || id >= n_db)
                return MG_FAIL(MG_ERR_INVALID_ARG, "N-S score: query %lld rank %lld: database index %lld out of range",
                               (long long)q, (long long)r, (long long)id);
            total += group[id] == query_group[q];
        }
    *ns = (double)total / (double)nq;
    return MG_OK;
}

void mg_retrieval_free_list(char **names, int64_t n) {
    if (!names) return;
    for (int64_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

mg_status mg_retrieval_read_list(const char *path, char ***names, int64_t *n) {
    *names = NULL;
    *n = 0;
    void *buf;
    size_t size;
    MG_TRY(mg_file_read_all(path, &buf, &size));
    char *text = buf;
    int64_t cap = 0, cnt = 0;
    char **out = NULL;
    mg_status s = MG_OK;
    for (char *line = text; line < text + size && s == MG_OK;) {
        char *nl = memchr(line, '\n', (size_t)(text + size - line));
        char *end = nl ? nl : text + size;
        char *next = nl ? nl + 1 : text + size;
        while (end > line && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t')) end--;
        if (end > line) {
            if (cnt == cap) {
                cap = cap ? 2 * cap : 256;
                char **t = realloc(out, (size_t)cap * sizeof *t);
                if (!t) {
                    s = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
                    break;
                }
                out = t;
            }
            out[cnt] = strndup(line, (size_t)(end - line));
            if (!out[cnt]) s = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
            else cnt++;
        }
        line = next;
    }
    free(buf);
    if (s == MG_OK && cnt == 0) s = MG_FAIL(MG_ERR_FORMAT, "%s: the list is empty", path);
    if (s != MG_OK) {
        mg_retrieval_free_list(out, cnt);
        return s;
    }
    *names = out;
    *n = cnt;
    return MG_OK;
}

/* A string -> index hash table (open addressing, FNV-1a) over borrowed names. */
typedef struct name_map {
    int64_t cap;
    int64_t *slot; /* index into names, or -1 */
    char *const *names;
} name_map;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static mg_status name_map_build(name_map *m, char *const *names, int64_t n, const char *what) {
    m->cap = 16;
    while (m->cap < 2 * n) m->cap *= 2;
    m->names = names;
    m->slot = malloc((size_t)m->cap * sizeof *m->slot);
    if (!m->slot) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", what);
    for (int64_t i = 0; i < m->cap; i++) m->slot[i] = -1;
    for (int64_t i = 0; i < n; i++) {
        uint64_t h = fnv1a(names[i]) & (uint64_t)(m->cap - 1);
        while (m->slot[h] >= 0) {
            if (!strcmp(names[m->slot[h]], names[i])) {
                mg_status s = MG_FAIL(MG_ERR_FORMAT, "%s: '%s' is listed twice (lines %lld and %lld)", what,
                                      names[i], (long long)m->slot[h] + 1, (long long)i + 1);
                free(m->slot);
                m->slot = NULL;
                return s;
            }
            h = (h + 1) & (uint64_t)(m->cap - 1);
        }
        m->slot[h] = i;
    }
    return MG_OK;
}

static int64_t name_map_find(const name_map *m, const char *s) {
    uint64_t h = fnv1a(s) & (uint64_t)(m->cap - 1);
    while (m->slot[h] >= 0) {
        if (!strcmp(m->names[m->slot[h]], s)) return m->slot[h];
        h = (h + 1) & (uint64_t)(m->cap - 1);
    }
    return -1;
}

mg_status mg_retrieval_gt_parse(const char *gt_path, char *const *queries, int64_t nq, char *const *db, int64_t ndb,
                                mg_retrieval_gt *gt) {
    memset(gt, 0, sizeof *gt);
    if (!queries || nq < 1 || !db || ndb < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: needs non-empty query and database lists", gt_path);
    name_map mq = {0}, md = {0};
    char **lines = NULL;
    int64_t nlines = 0;
    int64_t *line_of = NULL;
    int64_t *tmp_rel = NULL;
    mg_status s = name_map_build(&mq, queries, nq, "query list");
    if (s == MG_OK) s = name_map_build(&md, db, ndb, "database list");
    if (s == MG_OK) s = mg_retrieval_read_list(gt_path, &lines, &nlines);
    if (s != MG_OK) goto done;
    line_of = malloc((size_t)nq * sizeof *line_of);
    if (!line_of) {
        s = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", gt_path);
        goto done;
    }
    for (int64_t i = 0; i < nq; i++) line_of[i] = -1;
    /* Pass 1: map every line to its query, count relevant names. */
    int64_t total = 0;
    for (int64_t l = 0; l < nlines; l++) {
        char *tab = strchr(lines[l], '\t');
        if (tab) *tab = '\0';
        int64_t qi = name_map_find(&mq, lines[l]);
        if (qi < 0) {
            s = MG_FAIL(MG_ERR_FORMAT, "%s: ground-truth line %lld: query '%s' is not in the query list", gt_path,
                        (long long)l + 1, lines[l]);
            goto done;
        }
        if (line_of[qi] >= 0) {
            s = MG_FAIL(MG_ERR_FORMAT, "%s: ground-truth line %lld: query '%s' already has a line (%lld)", gt_path,
                        (long long)l + 1, lines[l], (long long)line_of[qi] + 1);
            goto done;
        }
        line_of[qi] = l;
        if (tab) *tab = '\t';
        for (char *p = lines[l]; (p = strchr(p, '\t')); p++) total++;
    }
    for (int64_t i = 0; i < nq; i++)
        if (line_of[i] < 0) {
            s = MG_FAIL(MG_ERR_FORMAT, "%s: query '%s' has no ground-truth line", gt_path, queries[i]);
            goto done;
        }
    s = gt_alloc(gt, nq, total);
    if (s != MG_OK) goto done;
    gt->n_db = ndb;
    int64_t nr = 0;
    gt->rel_start[0] = 0;
    for (int64_t qi = 0; qi < nq; qi++) {
        int64_t l = line_of[qi];
        gt->query_self[qi] = name_map_find(&md, queries[qi]);
        char *p = strchr(lines[l], '\t');
        int64_t here = 0;
        while (p) {
            char *name = p + 1;
            char *next = strchr(name, '\t');
            if (next) *next = '\0';
            if (*name) {
                int64_t di = name_map_find(&md, name);
                if (di < 0) {
                    s = MG_FAIL(MG_ERR_FORMAT,
                                "%s: ground-truth line %lld: relevant image '%s' is not in the database list",
                                gt_path, (long long)l + 1, name);
                    goto done;
                }
                if (di != gt->query_self[qi]) {
                    gt->rel[nr++] = di;
                    here++;
                }
            }
            p = next;
        }
        if (here == 0) {
            s = MG_FAIL(MG_ERR_FORMAT, "%s: ground-truth line %lld: query '%s' lists no relevant image (AP undefined)",
                        gt_path, (long long)l + 1, queries[qi]);
            goto done;
        }
        gt->rel_start[qi + 1] = nr;
    }
done:
    free(mq.slot);
    free(md.slot);
    free(line_of);
    free(tmp_rel);
    mg_retrieval_free_list(lines, nlines);
    if (s != MG_OK) mg_retrieval_gt_free(gt);
    return s;
}
