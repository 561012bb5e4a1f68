/* whiten.c: PCA whitening (learn in float64 with LAPACKE_dsyevd, apply, save/load) and the exact
 * folding of a whitening into a linear classifier (see whiten.h for the algebra). */
#include "multigrain/whiten.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "multigrain/checkpoint.h"
#include "multigrain/ops.h"
#include "multigrain/runtime.h"
#include "multigrain/safetensors.h"

#define WHITEN_CHUNK 512

void mg_whiten_free(mg_whiten *w) {
    if (!w) return;
    free(w->mean);
    free(w->P);
    free(w->eigenvalues);
    memset(w, 0, sizeof *w);
}

mg_status mg_whiten_fit(const float *x, int64_t n, int64_t d, int64_t dim_out, double eps_rel, mg_whiten *out) {
    memset(out, 0, sizeof *out);
    if (!x || n < 2 || d < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "whiten: need at least 2 embeddings of dimension >= 1 (covariance uses N-1), found [%lld, %lld]",
                       (long long)n, (long long)d);
    if (dim_out < 0 || dim_out > d)
        return MG_FAIL(MG_ERR_INVALID_ARG, "whiten: output dimension must be in [1, %lld], found %lld", (long long)d,
                       (long long)dim_out);
    if (d > 65536) return MG_FAIL(MG_ERR_INVALID_ARG, "whiten: dimension %lld is too large (max 65536)", (long long)d);
    if (dim_out == 0) dim_out = d;
    if (!(eps_rel > 0)) eps_rel = MG_WHITEN_EPS_REL;
    size_t D = (size_t)d;
    double *mean = calloc(D, sizeof *mean);
    double *C = calloc(D * D, sizeof *C);
    double *chunk = malloc((size_t)WHITEN_CHUNK * D * sizeof *chunk);
    double *lam = malloc(D * sizeof *lam);
    out->mean = malloc(D * sizeof *out->mean);
    out->P = malloc(D * (size_t)dim_out * sizeof *out->P);
    out->eigenvalues = malloc((size_t)dim_out * sizeof *out->eigenvalues);
    mg_status st = MG_OK;
    if (!mean || !C || !chunk || !lam || !out->mean || !out->P || !out->eigenvalues) {
        st = MG_FAIL(MG_ERR_NOMEM, "whiten: out of memory for a %lld x %lld covariance", (long long)d, (long long)d);
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        for (size_t j = 0; j < D; j++) mean[j] += x[(size_t)i * D + j];
    for (size_t j = 0; j < D; j++) mean[j] /= (double)n;
    mg_blas_parallel(mg_ops_get_threads()); /* the covariance and its eigendecomposition: large */
    /* C = sum over chunks of Xc^T Xc (upper triangle), Xc = centred rows in double. */
    for (int64_t r0 = 0; r0 < n; r0 += WHITEN_CHUNK) {
        int64_t m = n - r0 < WHITEN_CHUNK ? n - r0 : WHITEN_CHUNK;
        for (int64_t i = 0; i < m; i++)
            for (size_t j = 0; j < D; j++) chunk[(size_t)i * D + j] = (double)x[(size_t)(r0 + i) * D + j] - mean[j];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)m, 1.0, chunk, (int)d, 1.0, C, (int)d);
    }
    for (size_t i = 0; i < D; i++)
        for (size_t j = i; j < D; j++) C[i * D + j] /= (double)(n - 1);
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)d, C, (lapack_int)d, lam);
    if (info != 0) {
        st = MG_FAIL(MG_ERR_INTERNAL, "whiten: LAPACKE_dsyevd failed (info %d) on the %lld x %lld covariance",
                     (int)info, (long long)d, (long long)d);
        goto done;
    }
    /* lam ascending; eigenvector j is column j of C (row-major C[i*D + j]). */
    double lmax = lam[D - 1];
    if (!(lmax > 0)) {
        st = MG_FAIL(MG_ERR_NUMERIC, "whiten: the %lld embeddings have zero variance (all identical?)", (long long)n);
        goto done;
    }
    double floor_v = eps_rel * lmax;
    out->n_floored = 0;
    for (int64_t jo = 0; jo < dim_out; jo++) {
        size_t col = D - 1 - (size_t)jo;
        /* Sign: the largest-magnitude entry (first one on exact ties) is made positive. */
        size_t arg = 0;
        double best = -1;
        for (size_t i = 0; i < D; i++) {
            double a = fabs(C[i * D + col]);
            if (a > best) {
                best = a;
                arg = i;
            }
        }
        double sign = C[arg * D + col] < 0 ? -1.0 : 1.0;
        double l = lam[col];
        out->eigenvalues[jo] = l;
        if (l < floor_v) {
            l = floor_v;
            out->n_floored++;
        }
        double scale = sign / sqrt(l);
        for (size_t i = 0; i < D; i++) out->P[i * (size_t)dim_out + (size_t)jo] = (float)(C[i * D + col] * scale);
    }
    for (size_t j = 0; j < D; j++) out->mean[j] = (float)mean[j];
    out->dim_in = d;
    out->dim_out = dim_out;
    if (out->n_floored > 0)
        mg_log_warn("whiten: %lld of %lld kept eigenvalues are below %.3g x the largest (%lld embeddings, dimension "
                    "%lld) and were raised to that floor; consider --dim %lld",
                    (long long)out->n_floored, (long long)dim_out, eps_rel, (long long)n, (long long)d,
                    (long long)(dim_out - out->n_floored));
done:
    mg_blas_serial();
    free(mean);
    free(C);
    free(chunk);
    free(lam);
    if (st != MG_OK) mg_whiten_free(out);
    return st;
}

mg_status mg_whiten_project(const mg_whiten *w, const float *x, int64_t n, float *out) {
    if (!w || !w->P || !w->mean || (!x && n > 0) || n < 0)
        return MG_FAIL(MG_ERR_INVALID_ARG, "whiten: project needs a learned whitening and input rows");
    size_t D = (size_t)w->dim_in, Do = (size_t)w->dim_out;
    float *c = malloc((size_t)WHITEN_CHUNK * D * sizeof *c);
    if (!c) return MG_FAIL(MG_ERR_NOMEM, "whiten: out of memory");
    for (int64_t r0 = 0; r0 < n; r0 += WHITEN_CHUNK) {
        int64_t m = n - r0 < WHITEN_CHUNK ? n - r0 : WHITEN_CHUNK;
        for (int64_t i = 0; i < m; i++)
            for (size_t j = 0; j < D; j++) c[(size_t)i * D + j] = x[(size_t)(r0 + i) * D + j] - w->mean[j];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)Do, (int)D, 1.0f, c, (int)D, w->P,
                    (int)Do, 0.0f, out + (size_t)r0 * Do, (int)Do);
    }
    free(c);
    return MG_OK;
}

mg_status mg_whiten_apply(const mg_whiten *w, const float *x, int64_t n, float *out) {
    MG_TRY(mg_whiten_project(w, x, n, out));
    size_t Do = (size_t)w->dim_out;
    for (int64_t i = 0; i < n; i++) {
        float *r = out + (size_t)i * Do;
        double ss = 0;
        for (size_t j = 0; j < Do; j++) ss += (double)r[j] * r[j];
        if (ss > 0) {
            double inv = 1.0 / sqrt(ss);
            for (size_t j = 0; j < Do; j++) r[j] = (float)(r[j] * inv);
        }
    }
    return MG_OK;
}

void mg_whiten_augment(const float *e, int64_t d, float *out) {
    double ss = 1.0;
    for (int64_t j = 0; j < d; j++) ss += (double)e[j] * e[j];
    double inv = 1.0 / (sqrt(ss) + 1e-6); /* MultiGrain's l2n: x / (||x|| + 1e-6), as the model */
    for (int64_t j = 0; j < d; j++) out[j] = (float)(e[j] * inv);
    out[d] = (float)inv;
}

mg_status mg_whiten_fold_classifier(const mg_whiten *w, const float *W, const float *b, int64_t K, int64_t D,
                                    float *W_out, float *b_out) {
    if (!w || !w->P || !W || !W_out || !b_out || K < 1 || D < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "whiten fold: needs a whitening, W [K, D] and outputs");
    if (w->dim_out != w->dim_in)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "whiten fold: the whitening is reduced (%lld -> %lld dims); folding is exact only for a "
                       "full-dimension whitening",
                       (long long)w->dim_in, (long long)w->dim_out);
    int augmented;
    if (w->dim_in == D + 1)
        augmented = 1;
    else if (w->dim_in == D)
        augmented = 0;
    else
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "whiten fold: classifier input dimension %lld does not match the whitening (%lld; expected "
                       "%lld or %lld)",
                       (long long)D, (long long)w->dim_in, (long long)D, (long long)(D + 1));
    size_t n = (size_t)w->dim_in, k = (size_t)K, Dz = (size_t)D;
    double *Pd = malloc(n * n * sizeof *Pd);
    double *Y = malloc(n * k * sizeof *Y); /* A^T in, (A P^-T)^T out: [n, K] */
    lapack_int *ipiv = malloc(n * sizeof *ipiv);
    mg_status st = MG_OK;
    if (!Pd || !Y || !ipiv) {
        st = MG_FAIL(MG_ERR_NOMEM, "whiten fold: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n * n; i++) Pd[i] = w->P[i];
    /* A = [W | b] (augmented) or W (plain), stored transposed. */
    for (size_t c = 0; c < k; c++) {
        for (size_t i = 0; i < Dz; i++) Y[i * k + c] = W[c * Dz + i];
        if (augmented) Y[Dz * k + c] = b ? b[c] : 0.0;
    }
    /* b' = A m */
    for (size_t c = 0; c < k; c++) {
        double acc = 0;
        for (size_t i = 0; i < n; i++) acc += Y[i * k + c] * (double)w->mean[i];
        b_out[c] = (float)acc;
    }
    /* P (A P^-T)^T = A^T */
    lapack_int info = LAPACKE_dgesv(LAPACK_ROW_MAJOR, (lapack_int)n, (lapack_int)k, Pd, (lapack_int)n, ipiv, Y,
                                    (lapack_int)k);
    if (info != 0) {
        st = MG_FAIL(MG_ERR_NUMERIC, "whiten fold: the whitening matrix P is singular (LAPACKE_dgesv info %d)",
                     (int)info);
        goto done;
    }
    /* W_out [K, D + 1]: A P^-T, plus (plain form) the bias as the weight of the 1/||e|| input. */
    for (size_t c = 0; c < k; c++) {
        for (size_t i = 0; i < n; i++) W_out[c * (Dz + 1) + i] = (float)Y[i * k + c];
        if (!augmented) W_out[c * (Dz + 1) + Dz] = b ? b[c] : 0.0f;
    }
done:
    free(Pd);
    free(Y);
    free(ipiv);
    return st;
}

mg_status mg_whiten_fold_checkpoint(const char *in_path, const mg_whiten *w, const char *out_path) {
    if (!w || !w->P) return MG_FAIL(MG_ERR_INVALID_ARG, "whiten fold: no whitening given");
    mg_checkpoint c;
    MG_TRY(mg_checkpoint_open(&c, in_path, NULL, 0));
    mg_status st = MG_OK;
    float *W = NULL, *b = NULL, *W2 = NULL, *b2 = NULL;
    int writer_open = 0;
    mg_checkpoint_writer wr;
    const mg_st_tensor *fw = mg_checkpoint_tensor(&c, "fc.weight");
    if (c.whitened) {
        st = MG_FAIL(MG_ERR_INVALID_ARG, "%s: the checkpoint is already whitened (fold into the unwhitened one)",
                     in_path);
        goto done;
    }
    if (!fw || fw->ndim != 2 || !mg_checkpoint_tensor(&c, "fc.bias")) {
        st = MG_FAIL(MG_ERR_FORMAT, "%s: no classifier tensors fc.weight [K, D] / fc.bias [K]", in_path);
        goto done;
    }
    int64_t K = fw->shape[0], D = fw->shape[1], Da = D + 1;
    if (w->dim_in != Da || w->dim_out != Da) {
        st = MG_FAIL(MG_ERR_INVALID_ARG,
                     "whiten fold: the whitening maps %lld -> %lld dims but folding into %s (classifier input D = "
                     "%lld) needs a full-dimension whitening learned on l2n([e, 1]) (%lld -> %lld): pass the raw "
                     "%lld-d GeM vectors (multigrain embed --pooled) and no --dim",
                     (long long)w->dim_in, (long long)w->dim_out, in_path, (long long)D, (long long)Da,
                     (long long)Da, (long long)D);
        goto done;
    }
    W = malloc(sizeof(float) * (size_t)(K * D));
    b = malloc(sizeof(float) * (size_t)K);
    W2 = malloc(sizeof(float) * (size_t)(K * Da));
    b2 = malloc(sizeof(float) * (size_t)K);
    if (!W || !b || !W2 || !b2) {
        st = MG_FAIL(MG_ERR_NOMEM, "whiten fold: out of memory");
        goto done;
    }
    st = mg_checkpoint_read_f32(&c, "fc.weight", W, K * D);
    if (st == MG_OK) st = mg_checkpoint_read_f32(&c, "fc.bias", b, K);
    if (st == MG_OK) st = mg_whiten_fold_classifier(w, W, b, K, D, W2, b2);
    if (st != MG_OK) goto done;
    mg_checkpoint_meta meta = {.arch = c.arch, .num_classes = c.num_classes, .p = c.p, .epoch = c.epoch,
                               .step = c.step, .class_names_json = c.class_names_json, .config = c.config,
                               .whitened = 1};
    st = mg_checkpoint_writer_init(&wr, &meta);
    if (st != MG_OK) goto done;
    writer_open = 1;
    for (int i = 0; st == MG_OK && i < c.st.n; i++) {
        const mg_st_tensor *t = &c.st.tensors[i];
        if (!strcmp(t->name, "fc.weight") || !strcmp(t->name, "fc.bias") || !strncmp(t->name, "optimizer.", 10) ||
            !strncmp(t->name, "state.", 6))
            continue;
        st = mg_checkpoint_writer_add(&wr, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    int64_t s_w[2] = {K, Da}, s_b[1] = {K}, s_m[1] = {Da}, s_p[2] = {Da, Da};
    if (st == MG_OK) st = mg_checkpoint_writer_add(&wr, "fc.weight", MG_DTYPE_F32, 2, s_w, W2);
    if (st == MG_OK) st = mg_checkpoint_writer_add(&wr, "fc.bias", MG_DTYPE_F32, 1, s_b, b2);
    if (st == MG_OK) st = mg_checkpoint_writer_add(&wr, "whiten.mean", MG_DTYPE_F32, 1, s_m, w->mean);
    if (st == MG_OK) st = mg_checkpoint_writer_add(&wr, "whiten.P", MG_DTYPE_F32, 2, s_p, w->P);
    /* Self-description of the classifier input expected by the folded fc (see whiten.h). */
    if (st == MG_OK)
        st = mg_checkpoint_writer_set_meta(&wr, "whiten.fc_input",
                                           "phi = (l2n([e, 1]) - whiten.mean) whiten.P, l2n(x) = x / (||x|| + 1e-6)");
    if (st == MG_OK) st = mg_checkpoint_writer_commit(&wr, out_path);
done:
    if (writer_open) mg_checkpoint_writer_free(&wr);
    mg_checkpoint_close(&c);
    free(W);
    free(b);
    free(W2);
    free(b2);
    return st;
}

mg_status mg_whiten_save(const mg_whiten *w, const char *path) {
    if (!w || !w->P || !w->mean) return MG_FAIL(MG_ERR_INVALID_ARG, "whiten: nothing to save to %s", path);
    mg_st_writer wr;
    mg_st_writer_init(&wr);
    int64_t sm[1] = {w->dim_in}, sp[2] = {w->dim_in, w->dim_out};
    char buf[64];
    snprintf(buf, sizeof buf, "%lld", (long long)w->dim_in);
    mg_status st = mg_st_writer_add(&wr, "whiten.mean", MG_DTYPE_F32, 1, sm, w->mean);
    if (st == MG_OK) st = mg_st_writer_add(&wr, "whiten.P", MG_DTYPE_F32, 2, sp, w->P);
    if (st == MG_OK) st = mg_st_writer_set_meta(&wr, "format", "multigrain-whiten");
    if (st == MG_OK) st = mg_st_writer_write(&wr, path);
    mg_st_writer_free(&wr);
    return st;
}

mg_status mg_whiten_load(const char *path, mg_whiten *out) {
    memset(out, 0, sizeof *out);
    mg_safetensors f;
    MG_TRY(mg_safetensors_open(&f, path));
    const mg_st_tensor *m = mg_safetensors_find(&f, "whiten.mean");
    const mg_st_tensor *P = mg_safetensors_find(&f, "whiten.P");
    mg_status st = MG_OK;
    if (!m || !P) {
        st = MG_FAIL(MG_ERR_FORMAT, "%s: missing tensor '%s' (a whitening file holds whiten.mean and whiten.P)", path,
                     !m ? "whiten.mean" : "whiten.P");
    } else if (m->dtype != MG_DTYPE_F32 || P->dtype != MG_DTYPE_F32) {
        st = MG_FAIL(MG_ERR_FORMAT, "%s: whiten.mean and whiten.P must be F32", path);
    } else if (m->ndim != 1 || P->ndim != 2 || P->shape[0] != m->shape[0] || P->shape[1] < 1 ||
               P->shape[1] > P->shape[0] || m->shape[0] < 1) {
        st = MG_FAIL(MG_ERR_FORMAT, "%s: expected whiten.mean [D] and whiten.P [D, D'] with 1 <= D' <= D", path);
    } else {
        out->dim_in = m->shape[0];
        out->dim_out = P->shape[1];
        out->mean = malloc(m->nbytes);
        out->P = malloc(P->nbytes);
        if (!out->mean || !out->P) {
            st = MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", path);
        } else {
            mg_st_tensor_copy(m, out->mean);
            mg_st_tensor_copy(P, out->P);
        }
    }
    mg_safetensors_close(&f);
    if (st != MG_OK) mg_whiten_free(out);
    return st;
}
