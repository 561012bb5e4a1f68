/* checkpoint.c: the multigrain checkpoint format on top of safetensors, validated against the
 * architecture's parameter table (see include/multigrain/checkpoint.h, docs/formats.md). */
#include "multigrain/checkpoint.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/parse.h"
#include "nn/resnet_spec.h"

typedef struct tview {
    const char *name;
    mg_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data; /* may be unaligned */
} tview;

static const tview *find_view(const tview *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

static int same_shape(int nda, const int64_t *a, int ndb, const int64_t *b) {
    if (nda != ndb) return 0;
    for (int i = 0; i < nda; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static const char *dname(mg_dtype d) {
    const char *s = mg_st_dtype_name(d);
    return s ? s : "?";
}

static mg_status check_tensor(const char *path, const tview *t, mg_dtype want, int ndim, const int64_t *shape,
                              const char *ctx) {
    char a[160], b[160];
    if (t->dtype != want)
        return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': dtype %s, expected %s", path, t->name, dname(t->dtype),
                       dname(want));
    if (!same_shape(t->ndim, t->shape, ndim, shape))
        return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': shape %s, expected %s for %s", path, t->name,
                       mg_shape_format(t->ndim, t->shape, a, sizeof a), mg_shape_format(ndim, shape, b, sizeof b), ctx);
    return MG_OK;
}

/* Checks a set of tensors against the architecture; see docs/formats.md for the rules. */
static mg_status validate(const char *path, const char *arch_name, int num_classes, int whitened, const tview *t,
                          int n) {
    mg_arch arch;
    MG_TRY(mg_arch_from_name(arch_name, path, &arch));
    mg_resnet_spec spec;
    MG_TRY(mg_resnet_spec_init(&spec, arch, num_classes));
    char ctx[96];
    snprintf(ctx, sizeof ctx, "%s with %d classes", arch_name, num_classes);
    mg_status s = MG_OK;
    int64_t wdim = 0;
    char wctx[160] = "";
    const tview *fcw = find_view(t, n, "fc.weight");
    if (fcw && fcw->ndim == 2 && fcw->shape[0] != num_classes)
        s = MG_FAIL(MG_ERR_FORMAT, "%s: wrong class count: tensor 'fc.weight' has %lld classes, expected %d", path,
                    (long long)fcw->shape[0], num_classes);
    if (s == MG_OK && whitened) {
        const tview *m = find_view(t, n, "whiten.mean"), *P = find_view(t, n, "whiten.P");
        if (!m || !P)
            s = MG_FAIL(MG_ERR_FORMAT, "%s: marked whitened but tensor '%s' is missing", path, m ? "whiten.P" : "whiten.mean");
        else if (P->ndim != 2 || P->shape[0] != spec.feature_dim + 1 || P->shape[1] < 1 ||
                 P->shape[1] > spec.feature_dim + 1) {
            /* Recipe form (§2.3): the whitening acts on l2n([e, 1]), so it has D + 1 rows. */
            char a[160];
            s = MG_FAIL(MG_ERR_FORMAT,
                        "%s: tensor 'whiten.P': shape %s, expected [%d, D'] with 1 <= D' <= %d (D + 1 = GeM "
                        "dimension + the appended 1) for %s",
                        path, mg_shape_format(P->ndim, P->shape, a, sizeof a), spec.feature_dim + 1,
                        spec.feature_dim + 1, ctx);
        } else {
            wdim = P->shape[1];
            int64_t ms = spec.feature_dim + 1;
            s = check_tensor(path, P, MG_DTYPE_F32, 2, P->shape, ctx);
            if (s == MG_OK) s = check_tensor(path, m, MG_DTYPE_F32, 1, &ms, ctx);
            snprintf(wctx, sizeof wctx, "%s whitened to D' = %lld (whiten.P)", ctx, (long long)wdim);
        }
    }
    int missing = 0;
    const char *first_missing = NULL;
    for (int i = 0; s == MG_OK && i < spec.n; i++) {
        const mg_spec_entry *e = &spec.entries[i];
        const tview *v = find_view(t, n, e->name);
        if (!v) {
            if (!missing++) first_missing = e->name;
            continue;
        }
        int64_t shape[MG_SPEC_MAX_DIMS];
        memcpy(shape, e->shape, sizeof shape);
        int is_wfc = whitened && !strcmp(e->name, "fc.weight");
        if (is_wfc) shape[1] = wdim; /* the classifier reads Phi [D'] */
        s = check_tensor(path, v, e->kind == MG_PARAM_BN_COUNTER ? MG_DTYPE_I64 : MG_DTYPE_F32, e->ndim, shape,
                         is_wfc ? wctx : ctx);
    }
    if (s == MG_OK && missing)
        s = MG_FAIL(MG_ERR_FORMAT, "%s: missing tensor '%s'%s%.0d%s required by %s", path, first_missing,
                    missing > 1 ? " (and " : "", missing > 1 ? missing - 1 : 0, missing > 1 ? " more)" : "", ctx);
    for (int i = 0; s == MG_OK && i < n; i++) {
        const char *nm = t[i].name;
        if (mg_resnet_spec_find(&spec, nm) >= 0) continue;
        if (whitened && (!strcmp(nm, "whiten.mean") || !strcmp(nm, "whiten.P"))) continue;
        if (!strncmp(nm, "optimizer.momentum.", 19)) {
            const char *pn = nm + 19;
            int k = mg_resnet_spec_find(&spec, pn);
            if (k < 0 || spec.entries[k].kind != MG_PARAM_TRAINABLE) {
                s = MG_FAIL(MG_ERR_FORMAT, "%s: unexpected tensor '%s': '%s' is not a trainable parameter of %s", path,
                            nm, pn, ctx);
                break;
            }
            const tview *param = find_view(t, n, pn);
            if (param) s = check_tensor(path, &t[i], MG_DTYPE_F32, param->ndim, param->shape, "its parameter");
            continue;
        }
        if (!strncmp(nm, "optimizer.", 10) || !strncmp(nm, "state.", 6)) continue;
        s = MG_FAIL(MG_ERR_FORMAT,
                    "%s: unexpected tensor '%s': not a parameter of %s (allowed extras: optimizer.*, state.*%s)", path,
                    nm, ctx, whitened ? ", whiten.mean, whiten.P" : "");
    }
    mg_resnet_spec_free(&spec);
    return s;
}

/* ---------------------------------------------------------------- writer */

mg_status mg_checkpoint_writer_init(mg_checkpoint_writer *w, const mg_checkpoint_meta *m) {
    memset(w, 0, sizeof *w);
    mg_st_writer_init(&w->st);
    mg_arch arch;
    MG_TRY(mg_arch_from_name(m->arch, "checkpoint arch", &arch));
    if (m->num_classes < 1 || m->num_classes > 1000000)
        return MG_FAIL(MG_ERR_INVALID_ARG, "checkpoint: num_classes must be in [1, 1000000], found %d", m->num_classes);
    snprintf(w->arch, sizeof w->arch, "%s", m->arch);
    w->num_classes = m->num_classes;
    w->whitened = m->whitened ? 1 : 0;
    char buf[64];
    mg_status s = mg_st_writer_set_meta(&w->st, "format", MG_CHECKPOINT_FORMAT);
    snprintf(buf, sizeof buf, "%d", MG_CHECKPOINT_VERSION);
    if (s == MG_OK) s = mg_st_writer_set_meta(&w->st, "format_version", buf);
    if (s == MG_OK) s = mg_st_writer_set_meta(&w->st, "arch", m->arch);
    snprintf(buf, sizeof buf, "%d", m->num_classes);
    if (s == MG_OK) s = mg_st_writer_set_meta(&w->st, "num_classes", buf);
    snprintf(buf, sizeof buf, "%.9g", (double)(float)m->p);
    if (s == MG_OK) s = mg_st_writer_set_meta(&w->st, "p", buf);
    snprintf(buf, sizeof buf, "%lld", (long long)m->epoch);
    if (s == MG_OK) s = mg_st_writer_set_meta(&w->st, "epoch", buf);
    snprintf(buf, sizeof buf, "%lld", (long long)m->step);
    if (s == MG_OK) s = mg_st_writer_set_meta(&w->st, "step", buf);
    if (s == MG_OK) s = mg_st_writer_set_meta(&w->st, "class_names", m->class_names_json ? m->class_names_json : "[]");
    if (s == MG_OK) s = mg_st_writer_set_meta(&w->st, "config", m->config ? m->config : "");
    if (s == MG_OK) s = mg_st_writer_set_meta(&w->st, "whitened", w->whitened ? "1" : "0");
    if (s != MG_OK) mg_checkpoint_writer_free(w);
    return s;
}

mg_status mg_checkpoint_writer_add(mg_checkpoint_writer *w, const char *name, mg_dtype dtype, int ndim,
                                   const int64_t *shape, const void *data) {
    return mg_st_writer_add(&w->st, name, dtype, ndim, shape, data);
}

mg_status mg_checkpoint_writer_set_meta(mg_checkpoint_writer *w, const char *key, const char *value) {
    static const char *reserved[] = {"format", "format_version", "arch", "num_classes", "p", "whitened"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (!strcmp(key, reserved[i]))
            return MG_FAIL(MG_ERR_INVALID_ARG, "checkpoint: metadata '%s' is set from mg_checkpoint_meta", key);
    return mg_st_writer_set_meta(&w->st, key, value);
}

mg_status mg_checkpoint_writer_commit(mg_checkpoint_writer *w, const char *path) {
    tview *v = calloc((size_t)(w->st.n ? w->st.n : 1), sizeof *v);
    if (!v) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < w->st.n; i++) {
        const mg_st_writer_item *it = &w->st.items[i];
        v[i] = (tview){it->name, it->dtype, it->ndim, it->shape, it->data};
    }
    mg_status s = validate(path, w->arch, w->num_classes, w->whitened, v, w->st.n);
    free(v);
    if (s != MG_OK) return s;
    return mg_st_writer_write(&w->st, path);
}

void mg_checkpoint_writer_free(mg_checkpoint_writer *w) {
    if (!w) return;
    mg_st_writer_free(&w->st);
    memset(w, 0, sizeof *w);
}

/* ---------------------------------------------------------------- reader */

static mg_status meta_req(const mg_checkpoint *c, const char *key, const char **out) {
    *out = mg_safetensors_meta(&c->st, key);
    if (!*out) return MG_FAIL(MG_ERR_FORMAT, "%s: metadata '%s' is missing", c->st.path, key);
    return MG_OK;
}

static mg_status open_checked(mg_checkpoint *c, const char *path, const char *expect_arch, int expect_classes) {
    MG_TRY(mg_safetensors_open(&c->st, path));
    const char *v;
    char what[600];
    MG_TRY(meta_req(c, "format", &v));
    if (strcmp(v, MG_CHECKPOINT_FORMAT))
        return MG_FAIL(MG_ERR_FORMAT, "%s: metadata format is '%s', expected '%s' (not a multigrain checkpoint)", path, v,
                       MG_CHECKPOINT_FORMAT);
    int version = 0, classes = 0;
    MG_TRY(meta_req(c, "format_version", &v));
    snprintf(what, sizeof what, "%s: metadata format_version", path);
    MG_TRY(mg_parse_int(v, 1, 1000000, what, MG_ERR_FORMAT, &version));
    if (version > MG_CHECKPOINT_VERSION)
        return MG_FAIL(MG_ERR_UNSUPPORTED, "%s: checkpoint format_version %d is newer than this program reads (%d)", path,
                       version, MG_CHECKPOINT_VERSION);
    MG_TRY(meta_req(c, "arch", &v));
    mg_arch arch;
    snprintf(what, sizeof what, "%s: metadata arch", path);
    MG_TRY(mg_arch_from_name(v, what, &arch));
    snprintf(c->arch, sizeof c->arch, "%s", v);
    if (expect_arch && strcmp(expect_arch, c->arch))
        return MG_FAIL(MG_ERR_FORMAT, "%s: checkpoint is a %s, expected %s", path, c->arch, expect_arch);
    MG_TRY(meta_req(c, "num_classes", &v));
    snprintf(what, sizeof what, "%s: metadata num_classes", path);
    MG_TRY(mg_parse_int(v, 1, 1000000, what, MG_ERR_FORMAT, &classes));
    c->num_classes = classes;
    if (expect_classes > 0 && expect_classes != classes)
        return MG_FAIL(MG_ERR_FORMAT, "%s: wrong class count: checkpoint has %d classes, expected %d", path, classes,
                       expect_classes);
    MG_TRY(meta_req(c, "p", &v));
    snprintf(what, sizeof what, "%s: metadata p", path);
    MG_TRY(mg_parse_double(v, 1e-6, 1e6, what, MG_ERR_FORMAT, &c->p));
    v = mg_safetensors_meta(&c->st, "epoch");
    snprintf(what, sizeof what, "%s: metadata epoch", path);
    if (v) MG_TRY(mg_parse_int64(v, 0, INT64_MAX, what, MG_ERR_FORMAT, &c->epoch));
    v = mg_safetensors_meta(&c->st, "step");
    snprintf(what, sizeof what, "%s: metadata step", path);
    if (v) MG_TRY(mg_parse_int64(v, 0, INT64_MAX, what, MG_ERR_FORMAT, &c->step));
    v = mg_safetensors_meta(&c->st, "whitened");
    if (v && strcmp(v, "0") && strcmp(v, "1"))
        return MG_FAIL(MG_ERR_FORMAT, "%s: metadata whitened is '%s', expected 0 or 1", path, v);
    c->whitened = v && !strcmp(v, "1");
    c->config = mg_safetensors_meta(&c->st, "config");
    if (!c->config) c->config = "";
    c->class_names_json = mg_safetensors_meta(&c->st, "class_names");
    if (!c->class_names_json) c->class_names_json = "[]";
    cJSON *names = cJSON_Parse(c->class_names_json);
    int ok = names && cJSON_IsArray(names);
    int nn = ok ? cJSON_GetArraySize(names) : 0;
    for (const cJSON *it = ok ? names->child : NULL; it; it = it->next) ok = ok && cJSON_IsString(it);
    cJSON_Delete(names);
    if (!ok) return MG_FAIL(MG_ERR_FORMAT, "%s: metadata class_names is not a JSON array of strings", path);
    if (nn != 0 && nn != classes)
        return MG_FAIL(MG_ERR_FORMAT, "%s: metadata class_names has %d names for %d classes", path, nn, classes);

    tview *tv = calloc((size_t)(c->st.n ? c->st.n : 1), sizeof *tv);
    if (!tv) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < c->st.n; i++) {
        const mg_st_tensor *t = &c->st.tensors[i];
        tv[i] = (tview){t->name, t->dtype, t->ndim, t->shape, t->data};
    }
    mg_status s = validate(path, c->arch, classes, c->whitened, tv, c->st.n);
    free(tv);
    MG_TRY(s);
    float p;
    MG_TRY(mg_checkpoint_read_f32(c, "pool.p", &p, 1));
    if (p != (float)c->p)
        return MG_FAIL(MG_ERR_FORMAT, "%s: metadata p = %s disagrees with tensor 'pool.p' = %.9g", path,
                       mg_safetensors_meta(&c->st, "p"), (double)p);
    return MG_OK;
}

mg_status mg_checkpoint_open(mg_checkpoint *c, const char *path, const char *expect_arch, int expect_classes) {
    memset(c, 0, sizeof *c);
    mg_status s = open_checked(c, path, expect_arch, expect_classes);
    if (s != MG_OK) {
        size_t n = strlen(mg_error_message()) + 1;
        char *msg = malloc(n);
        if (msg) memcpy(msg, mg_error_message(), n);
        mg_checkpoint_close(c);
        if (msg) mg_error_set(s, __FILE__, __LINE__, "%s", msg);
        free(msg);
    }
    return s;
}

void mg_checkpoint_close(mg_checkpoint *c) {
    if (!c) return;
    mg_safetensors_close(&c->st);
    memset(c, 0, sizeof *c);
}

const mg_st_tensor *mg_checkpoint_tensor(const mg_checkpoint *c, const char *name) {
    return mg_safetensors_find(&c->st, name);
}

mg_status mg_checkpoint_read_f32(const mg_checkpoint *c, const char *name, float *dst, int64_t count) {
    const mg_st_tensor *t = mg_safetensors_find(&c->st, name);
    if (!t) return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s' is missing", c->st.path, name);
    if (t->dtype != MG_DTYPE_F32 || t->count != count)
        return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': %s with %lld elements, expected F32 with %lld", c->st.path, name,
                       dname(t->dtype), (long long)t->count, (long long)count);
    mg_st_tensor_copy(t, dst);
    return MG_OK;
}
