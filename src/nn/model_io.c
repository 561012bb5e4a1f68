/* model_io.c: saving a model to, and building a model from, a multigrain checkpoint
 * (safetensors with PyTorch state_dict names; see include/multigrain/checkpoint.h). */
#include <string.h>

#include "core/log.h"
#include "core/progress.h"
#include "multigrain/model.h"

mg_status mg_model_checkpoint_add(mg_model *m, mg_checkpoint_writer *w) {
    int n = mg_model_tensor_count(m);
    for (int i = 0; i < n; i++) {
        int kind, ndim;
        int64_t shape[4];
        const char *name = mg_model_tensor_info(m, i, &kind, &ndim, shape, NULL);
        MG_TRY(mg_checkpoint_writer_add(w, name, kind == 2 ? MG_DTYPE_I64 : MG_DTYPE_F32, ndim, shape,
                                        mg_model_tensor_data(m, i)));
    }
    return MG_OK;
}

mg_status mg_model_save(mg_model *m, const char *path, int64_t epoch, int64_t step, const char *class_names_json,
                        const char *config) {
    mg_checkpoint_meta meta = {.arch = mg_model_arch(m),
                               .num_classes = mg_model_num_classes(m),
                               .p = mg_model_get_p(m),
                               .epoch = epoch,
                               .step = step,
                               .class_names_json = class_names_json,
                               .config = config,
                               .whitened = mg_model_whitened_dim(m) > 0};
    mg_checkpoint_writer w;
    MG_TRY(mg_checkpoint_writer_init(&w, &meta));
    mg_status s = mg_model_checkpoint_add(m, &w);
    if (s == MG_OK) s = mg_checkpoint_writer_commit(&w, path);
    mg_checkpoint_writer_free(&w);
    return s;
}

mg_status mg_model_load_tensors(mg_model *m, const mg_checkpoint *c) {
    if (strcmp(c->arch, mg_model_arch(m)) != 0 || c->num_classes != mg_model_num_classes(m))
        return MG_FAIL(MG_ERR_FORMAT, "%s: checkpoint is %s with %d classes, the model is %s with %d",
                       c->st.path, c->arch, c->num_classes, mg_model_arch(m), mg_model_num_classes(m));
    int dim_out = 0;
    if (c->whitened) {
        /* mg_checkpoint_open validated whiten.P [D+1, D'] and fc.weight [K, D']. */
        const mg_st_tensor *P = mg_checkpoint_tensor(c, "whiten.P");
        if (!P || P->ndim != 2 || P->shape[0] != mg_model_pooled_dim(m) + 1 || P->shape[1] < 1 ||
            P->shape[1] > P->shape[0])
            return MG_FAIL(MG_ERR_FORMAT, "%s: tensor 'whiten.P' is missing or not [%d, D'] (D' <= %d)", c->st.path,
                           mg_model_pooled_dim(m) + 1, mg_model_pooled_dim(m) + 1);
        dim_out = (int)P->shape[1];
    }
    MG_TRY(mg_model_set_whitening(m, dim_out));
    int n = mg_model_tensor_count(m);
    for (int i = 0; i < n; i++) {
        int kind;
        int64_t count;
        const char *name = mg_model_tensor_info(m, i, &kind, NULL, NULL, &count);
        const mg_st_tensor *t = mg_checkpoint_tensor(c, name);
        if (!t) return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s' is missing", c->st.path, name);
        mg_dtype want = kind == 2 ? MG_DTYPE_I64 : MG_DTYPE_F32;
        if (t->dtype != want || t->count != count)
            return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': expected %lld %s elements, found %lld %s", c->st.path,
                           name, (long long)count, mg_dtype_descr(want), (long long)t->count,
                           mg_dtype_descr(t->dtype));
        mg_st_tensor_copy(t, mg_model_tensor_data(m, i));
    }
    return mg_model_set_p(m, mg_model_get_p(m)); /* validates the loaded p */
}

mg_status mg_model_load(const char *path, mg_model **model, mg_checkpoint *ckpt) {
    *model = NULL;
    const double t0 = mg_time_now();
    mg_checkpoint c;
    MG_TRY(mg_checkpoint_open(&c, path, NULL, 0));
    mg_model *m = NULL;
    mg_status s = mg_model_init(&m, c.arch, c.num_classes, c.p > 0 ? (float)c.p : 1.0f);
    if (s == MG_OK) s = mg_model_load_tensors(m, &c);
    if (s != MG_OK) {
        mg_model_free(m);
        mg_checkpoint_close(&c);
        return s;
    }
    mg_log_debug("%s: %s model loaded in %.0f ms", path, c.arch, 1e3 * (mg_time_now() - t0));
    if (ckpt)
        *ckpt = c;
    else
        mg_checkpoint_close(&c);
    *model = m;
    return MG_OK;
}
