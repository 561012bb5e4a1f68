/* torch_import.c: PyTorch state dict -> multigrain checkpoint: key mapping, architecture
 * inference, load_state_dict-style missing/unexpected reports (see torch_import.h). */
#include "io/torch_import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/pth.h"
#include "multigrain/checkpoint.h"
#include "nn/resnet_spec.h"

typedef struct ientry {
    char *src_name; /* key in the file */
    char *name;     /* mapped name */
    mg_pyobj *t;    /* tensor, or NULL when the value is not a tensor */
    int used;
} ientry;

typedef struct ictx {
    const char *path;
    ientry *e;
    int n;
    void **temps; /* converted buffers */
    int n_temps;
} ictx;

static void ictx_free(ictx *c) {
    for (int i = 0; i < c->n; i++) {
        free(c->e[i].src_name);
        free(c->e[i].name);
    }
    free(c->e);
    for (int i = 0; i < c->n_temps; i++) free(c->temps[i]);
    free(c->temps);
}

static char *map_name(const char *k) {
    char buf[512];
    if (!strncmp(k, "module.", 7)) k += 7;
    if (!strncmp(k, "features.", 9)) snprintf(buf, sizeof buf, "%s", k + 9);
    else if (!strncmp(k, "classifier.", 11)) snprintf(buf, sizeof buf, "fc.%s", k + 11);
    else if (!strcmp(k, "whitening.pca.pca_m")) snprintf(buf, sizeof buf, "whiten.mean");
    else if (!strcmp(k, "whitening.pca.pca_P")) snprintf(buf, sizeof buf, "whiten.P");
    else snprintf(buf, sizeof buf, "%s", k);
    size_t n = strlen(buf) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, buf, n);
    return d;
}

static ientry *find(ictx *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->e[i].name, name)) return &c->e[i];
    return NULL;
}

static mg_status collect(ictx *c, const mg_pyobj *sd) {
    c->e = calloc(sd->n / 2 + 1, sizeof *c->e);
    if (!c->e) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", c->path);
    for (size_t i = 0; i + 1 < sd->n; i += 2) {
        const mg_pyobj *k = sd->items[i], *v = sd->items[i + 1];
        if (k->kind != MG_PY_STR)
            return MG_FAIL(MG_ERR_FORMAT, "%s: state dict key %zu is a %s, expected a string", c->path, i / 2,
                           mg_py_kind_name(k->kind));
        if (strlen(k->s) != k->len || k->len > 400)
            return MG_FAIL(MG_ERR_FORMAT, "%s: state dict key %zu is not a plain name", c->path, i / 2);
        ientry *e = &c->e[c->n];
        e->src_name = malloc(k->len + 1);
        e->name = map_name(k->s);
        c->n++;
        if (!e->src_name || !e->name) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", c->path);
        memcpy(e->src_name, k->s, k->len + 1);
        e->t = v->kind == MG_PY_TENSOR ? (mg_pyobj *)v : NULL;
        for (int j = 0; j < c->n - 1; j++)
            if (!strcmp(c->e[j].name, e->name))
                return MG_FAIL(MG_ERR_FORMAT, "%s: keys '%s' and '%s' both map to '%s'", c->path, c->e[j].src_name,
                               e->src_name, e->name);
    }
    return MG_OK;
}

static int layer_blocks(ictx *c, int layer) {
    int mx = -1;
    char pfx[32];
    int pl = snprintf(pfx, sizeof pfx, "layer%d.", layer);
    for (int i = 0; i < c->n; i++) {
        if (strncmp(c->e[i].name, pfx, (size_t)pl)) continue;
        int b = atoi(c->e[i].name + pl);
        if (b > mx && b < 1000) mx = b;
    }
    return mx + 1;
}

static mg_status infer_arch(ictx *c, mg_arch *out) {
    int bl[4];
    for (int l = 0; l < 4; l++) bl[l] = layer_blocks(c, l + 1);
    int bottleneck = find(c, "layer1.0.conv3.weight") != NULL;
    int se = find(c, "layer1.0.se.fc1.weight") != NULL;
    static const int blocks[MG_ARCH_COUNT][4] = {{2, 2, 2, 2}, {3, 4, 6, 3},  {3, 4, 6, 3},
                                                 {3, 4, 23, 3}, {3, 8, 36, 3}, {3, 4, 6, 3}};
    for (int a = 0; a < MG_ARCH_COUNT; a++) {
        int is_bn = a >= MG_ARCH_RESNET50, is_se = a == MG_ARCH_SE_RESNET50;
        if (is_bn != bottleneck || is_se != se) continue;
        if (!memcmp(bl, blocks[a], sizeof bl)) {
            *out = (mg_arch)a;
            return MG_OK;
        }
    }
    return MG_FAIL(MG_ERR_FORMAT,
                   "%s: cannot infer the architecture from the keys (blocks per layer %d,%d,%d,%d, %s%s): pass --arch",
                   c->path, bl[0], bl[1], bl[2], bl[3], bottleneck ? "bottleneck" : "basic blocks",
                   se ? ", squeeze-excitation" : "");
}

static const void *as_type(ictx *c, ientry *e, mg_dtype want, mg_status *s) {
    mg_pyobj *t = e->t;
    if (t->dtype == want) return t->data;
    int ok_conv = (want == MG_DTYPE_F32 && t->dtype == MG_DTYPE_F64) ||
                  (want == MG_DTYPE_I64 && (t->dtype == MG_DTYPE_I32 || t->dtype == MG_DTYPE_U8));
    if (!ok_conv) {
        *s = MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected %s", c->path, e->src_name,
                     mg_dtype_descr(t->dtype), mg_dtype_descr(want));
        return NULL;
    }
    void **tmp = realloc(c->temps, (size_t)(c->n_temps + 1) * sizeof *tmp);
    void *buf = tmp ? malloc(t->count ? (size_t)t->count * mg_dtype_size(want) : 1) : NULL;
    if (tmp) c->temps = tmp;
    if (!buf) {
        *s = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", c->path);
        return NULL;
    }
    c->temps[c->n_temps++] = buf;
    for (int64_t i = 0; i < t->count; i++) {
        if (want == MG_DTYPE_F32) ((float *)buf)[i] = (float)((const double *)t->data)[i];
        else if (t->dtype == MG_DTYPE_I32) ((int64_t *)buf)[i] = ((const int32_t *)t->data)[i];
        else ((int64_t *)buf)[i] = ((const uint8_t *)t->data)[i];
    }
    if (want == MG_DTYPE_F32) mg_log_warn("%s: tensor '%s' converted from float64 to float32", c->path, e->src_name);
    return buf;
}

/* Appends `"name", ` to a bounded list text. */
static void list_add(char *buf, size_t cap, int *count, const char *name) {
    size_t used = strlen(buf);
    if (*count < 8 && used + strlen(name) + 8 < cap)
        snprintf(buf + used, cap - used, "%s\"%s\"", *count ? ", " : "", name);
    else if (*count == 8 && used + 8 < cap)
        snprintf(buf + used, cap - used, ", ...");
    (*count)++;
}

static mg_status do_import(ictx *c, mg_pth *pth, const char *dst, const mg_import_opts *o, mg_import_report *r) {
    const mg_pyobj *root = pth->root, *sd = root;
    if (!root || root->kind != MG_PY_DICT)
        return MG_FAIL(MG_ERR_FORMAT, "%s: top-level object is a %s, expected a dict (state dict)", c->path,
                       root ? mg_py_kind_name(root->kind) : "nothing");
    r->layout = "torchvision";
    const mg_pyobj *v;
    if ((v = mg_py_dict_get(root, "model_state")) && v->kind == MG_PY_DICT) {
        sd = v;
        r->layout = "multigrain";
    } else if ((v = mg_py_dict_get(root, "state_dict")) && v->kind == MG_PY_DICT) {
        sd = v;
        r->layout = "state_dict";
    }
    MG_TRY(collect(c, sd));
    mg_arch arch;
    if (o->arch) MG_TRY(mg_arch_from_name(o->arch, "--arch", &arch));
    else MG_TRY(infer_arch(c, &arch));
    ientry *fcw = find(c, "fc.weight");
    int K = o->num_classes;
    if (fcw && fcw->t && fcw->t->ndim == 2) {
        if (K > 0 && fcw->t->size[0] != K)
            return MG_FAIL(MG_ERR_FORMAT, "%s: wrong class count: '%s' has %lld classes, --num-classes says %d", c->path,
                           fcw->src_name, (long long)fcw->t->size[0], K);
        if (fcw->t->size[0] < 1 || fcw->t->size[0] > 1000000)
            return MG_FAIL(MG_ERR_FORMAT, "%s: '%s' has %lld classes", c->path, fcw->src_name, (long long)fcw->t->size[0]);
        K = (int)fcw->t->size[0];
    }
    if (K <= 0) return MG_FAIL(MG_ERR_FORMAT, "%s: no classifier weight ('fc.weight' / 'classifier.weight') to count the classes: pass --num-classes", c->path);
    ientry *wm = find(c, "whiten.mean"), *wP = find(c, "whiten.P");
    int whitened = wm && wP && wm->t && wP->t;
    ientry *pe = find(c, "pool.p");
    double p = 1.0;
    if (o->p > 0) p = o->p;
    else if (pe && pe->t && pe->t->count == 1 && (pe->t->dtype == MG_DTYPE_F32 || pe->t->dtype == MG_DTYPE_F64))
        p = pe->t->dtype == MG_DTYPE_F32 ? *(const float *)pe->t->data : *(const double *)pe->t->data;
    if (!(p > 0 && p < 1e6)) return MG_FAIL(MG_ERR_FORMAT, "%s: GeM exponent pool.p = %g is not positive", c->path, p);
    float p_store;
    p_store = (float)p;

    mg_resnet_spec spec;
    MG_TRY(mg_resnet_spec_init(&spec, arch, K));
    mg_checkpoint_meta meta = {.arch = mg_arch_name(arch), .num_classes = K, .p = p, .whitened = whitened};
    mg_checkpoint_writer w;
    mg_status s = mg_checkpoint_writer_init(&w, &meta);
    if (s != MG_OK) {
        mg_resnet_spec_free(&spec);
        return s;
    }
    static const int64_t zero64 = 0;
    char missing[1024] = "", mism[1024] = "";
    int n_missing = 0, n_mism = 0;
    int64_t wdim = whitened && wP->t->ndim == 2 ? wP->t->size[1] : 0;
    if (whitened && (wP->t->ndim != 2 || wP->t->size[0] != spec.feature_dim + 1 || wdim < 1 ||
                     wdim > spec.feature_dim + 1)) {
        /* Recipe form (§2.3): the PCA acts on l2n([e, 1]), so P has D + 1 rows. */
        char a[200];
        s = MG_FAIL(MG_ERR_FORMAT, "%s: '%s' (whiten.P): shape %s, expected [%d, D'] with 1 <= D' <= %d for %s", c->path,
                    wP->src_name, mg_shape_format(wP->t->ndim, wP->t->size, a, sizeof a), spec.feature_dim + 1,
                    spec.feature_dim + 1, mg_arch_name(arch));
    }
    for (int i = 0; s == MG_OK && i < spec.n; i++) {
        const mg_spec_entry *se = &spec.entries[i];
        ientry *e = find(c, se->name);
        if (e) e->used = 1;
        if (!strcmp(se->name, "pool.p")) { /* value decided above */
            s = mg_checkpoint_writer_add(&w, se->name, MG_DTYPE_F32, 0, NULL, &p_store);
            if (!pe) r->n_filled++;
            continue;
        }
        if (!e || !e->t) {
            if (se->kind == MG_PARAM_BN_COUNTER) { /* absent in torchvision < 0.4.1 state dicts */
                s = mg_checkpoint_writer_add(&w, se->name, MG_DTYPE_I64, 0, NULL, &zero64);
                r->n_filled++;
            } else {
                list_add(missing, sizeof missing, &n_missing, se->name);
            }
            continue;
        }
        int64_t want[MG_SPEC_MAX_DIMS];
        memcpy(want, se->shape, sizeof want);
        if (whitened && !strcmp(se->name, "fc.weight")) want[1] = wdim; /* W' [K, D'] reads Phi */
        int same = e->t->ndim == se->ndim;
        for (int d = 0; same && d < se->ndim; d++) same = e->t->size[d] == want[d];
        if (!same) {
            char a[200], b[160], item[400];
            snprintf(item, sizeof item, "%s: checkpoint %s, model %s", e->src_name,
                     mg_shape_format(e->t->ndim, e->t->size, a, sizeof a), mg_shape_format(se->ndim, want, b, sizeof b));
            list_add(mism, sizeof mism, &n_mism, item);
            continue;
        }
        const void *data = as_type(c, e, se->kind == MG_PARAM_BN_COUNTER ? MG_DTYPE_I64 : MG_DTYPE_F32, &s);
        if (data) s = mg_checkpoint_writer_add(&w, se->name, se->kind == MG_PARAM_BN_COUNTER ? MG_DTYPE_I64 : MG_DTYPE_F32,
                                               se->ndim, e->t->size, data);
    }
    if (s == MG_OK && whitened) {
        ientry *we[2] = {wm, wP};
        for (int k = 0; k < 2 && s == MG_OK; k++) {
            we[k]->used = 1;
            const void *data = as_type(c, we[k], MG_DTYPE_F32, &s);
            if (data) s = mg_checkpoint_writer_add(&w, we[k]->name, MG_DTYPE_F32, we[k]->t->ndim, we[k]->t->size, data);
        }
    }
    if (s == MG_OK && n_mism)
        s = MG_FAIL(MG_ERR_FORMAT, "%s: size mismatch for %d tensor(s) against %s with %d classes: %s", c->path, n_mism,
                    mg_arch_name(arch), K, mism);
    if (s == MG_OK && n_missing)
        s = MG_FAIL(MG_ERR_FORMAT, "%s: missing key(s) in state_dict for %s (%d): %s", c->path, mg_arch_name(arch),
                    n_missing, missing);
    if (s == MG_OK) {
        char unexpected[1024] = "";
        int n_unexp = 0;
        for (int i = 0; i < c->n; i++)
            if (!c->e[i].used) list_add(unexpected, sizeof unexpected, &n_unexp, c->e[i].src_name);
        if (n_unexp)
            mg_log_warn("%s: unexpected key(s) in state_dict, not converted (%d): %s", c->path, n_unexp, unexpected);
        r->n_unexpected = n_unexp;
        const char *slash = strrchr(c->path, '/');
        s = mg_checkpoint_writer_set_meta(&w, "source", slash ? slash + 1 : c->path);
        if (s == MG_OK) s = mg_checkpoint_writer_set_meta(&w, "source_layout", r->layout);
        if (s == MG_OK) s = mg_checkpoint_writer_commit(&w, dst);
        r->n_written = w.st.n;
    }
    snprintf(r->arch, sizeof r->arch, "%s", mg_arch_name(arch));
    r->num_classes = K;
    r->p = (double)p_store;
    r->whitened = whitened;
    mg_checkpoint_writer_free(&w);
    mg_resnet_spec_free(&spec);
    return s;
}

mg_status mg_import_pth(const char *src, const char *dst, const mg_import_opts *opts, mg_import_report *rep) {
    mg_import_opts o0 = {0};
    mg_import_report r0;
    if (!opts) opts = &o0;
    if (!rep) rep = &r0;
    memset(rep, 0, sizeof *rep);
    mg_pth pth;
    MG_TRY(mg_pth_open_ex(&pth, src, opts->allow_foreign));
    rep->n_foreign = (int)pth.heap.n_foreign;
    if (pth.heap.n_foreign)
        mg_log_warn("%s: skipped %zu object(s) of classes outside the allowlist (first: '%s'); nothing was executed",
                    src, pth.heap.n_foreign, pth.heap.first_foreign);
    ictx c = {.path = src};
    mg_status s = do_import(&c, &pth, dst, opts, rep);
    ictx_free(&c);
    mg_pth_close(&pth);
    return s;
}
