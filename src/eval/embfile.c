/* embfile.c: loading and validating 2-D float32 embedding .npy files (see embfile.h). */
#include "eval/embfile.h"

#include <math.h>
#include <string.h>

mg_status mg_embfile_load(const char *what, const char *path, mg_npy *out) {
    memset(out, 0, sizeof *out);
    mg_status s = mg_npy_read(path, out);
    if (s != MG_OK) return mg_error_wrap(s, "%s", what);
    mg_status err = MG_OK;
    if (out->dtype != MG_DTYPE_F32) {
        err = MG_FAIL(MG_ERR_FORMAT,
                      "%s %s: expected float32 embeddings, found dtype %s (convert with a.astype(np.float32))",
                      what, path, mg_dtype_descr(out->dtype));
    } else if (out->ndim != 2) {
        err = MG_FAIL(MG_ERR_FORMAT, "%s %s: expected a 2-D array [N, D], found %d dimension(s)", what, path,
                      out->ndim);
    } else if (out->shape[0] < 1 || out->shape[1] < 1) {
        err = MG_FAIL(MG_ERR_FORMAT, "%s %s: expected at least one row and one column, found shape [%lld, %lld]",
                      what, path, (long long)out->shape[0], (long long)out->shape[1]);
    } else {
        const float *x = out->data;
        for (int64_t i = 0; i < out->count; i++) {
            if (!isfinite(x[i])) {
                err = MG_FAIL(MG_ERR_FORMAT, "%s %s: non-finite value %g at row %lld, column %lld", what, path,
                              (double)x[i], (long long)(i / out->shape[1]), (long long)(i % out->shape[1]));
                break;
            }
        }
    }
    if (err != MG_OK) mg_npy_free(out);
    return err;
}
