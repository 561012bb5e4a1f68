/* conv2d_ref_impl.h: body of the reference convolution kernels, included by conv2d_ref.c once per
 * element type with T (float or double) and MG_REF_NAME(op) (the function name) defined. */
void MG_REF_NAME(forward)(const mg_conv2d_desc *d, int p, int q, const T *x, const T *w, const T *b, T *y) {
    const int cg = d->c / d->groups, kg = d->k / d->groups;
    for (int n = 0; n < d->n; n++)
        for (int k = 0; k < d->k; k++) {
            const int g = k / kg;
            for (int oh = 0; oh < p; oh++)
                for (int ow = 0; ow < q; ow++) {
                    double acc = b ? (double)b[k] : 0.0;
                    for (int c = 0; c < cg; c++)
                        for (int r = 0; r < d->r; r++) {
                            const int ih = oh * d->stride_h - d->pad_h + r * d->dil_h;
                            if (ih < 0 || ih >= d->h) continue;
                            for (int s = 0; s < d->s; s++) {
                                const int iw = ow * d->stride_w - d->pad_w + s * d->dil_w;
                                if (iw < 0 || iw >= d->w) continue;
                                const T xv = x[(((size_t)n * d->c + g * cg + c) * d->h + ih) * d->w + iw];
                                const T wv = w[(((size_t)k * cg + c) * d->r + r) * d->s + s];
                                acc += (double)xv * (double)wv;
                            }
                        }
                    y[(((size_t)n * d->k + k) * p + oh) * q + ow] = (T)acc;
                }
        }
}

/* dx[n, ci, ih, iw] = sum over (k in ci's group, r, s) with oh = (ih + pad_h - r*dil_h) / stride_h
 * an exact, in-range quotient (w likewise) of dy[n, k, oh, ow] * w[k, ci - g*Cg, r, s]. */
void MG_REF_NAME(backward_data)(const mg_conv2d_desc *d, int p, int q, const T *dy, const T *w, T *dx) {
    const int cg = d->c / d->groups, kg = d->k / d->groups;
    for (int n = 0; n < d->n; n++)
        for (int ci = 0; ci < d->c; ci++) {
            const int g = ci / cg, c = ci - g * cg;
            for (int ih = 0; ih < d->h; ih++)
                for (int iw = 0; iw < d->w; iw++) {
                    double acc = 0.0;
                    for (int k = g * kg; k < (g + 1) * kg; k++)
                        for (int r = 0; r < d->r; r++) {
                            const int th = ih + d->pad_h - r * d->dil_h;
                            if (th < 0 || th % d->stride_h) continue;
                            const int oh = th / d->stride_h;
                            if (oh >= p) continue;
                            for (int s = 0; s < d->s; s++) {
                                const int tw = iw + d->pad_w - s * d->dil_w;
                                if (tw < 0 || tw % d->stride_w) continue;
                                const int ow = tw / d->stride_w;
                                if (ow >= q) continue;
                                acc += (double)dy[(((size_t)n * d->k + k) * p + oh) * q + ow] *
                                       (double)w[(((size_t)k * cg + c) * d->r + r) * d->s + s];
                            }
                        }
                    dx[(((size_t)n * d->c + ci) * d->h + ih) * d->w + iw] = (T)acc;
                }
        }
}

/* dw[k, c, r, s] += sum_{n, oh, ow} dy[n, k, oh, ow] * x[n, g*Cg + c, ih, iw]; db[k] += sum dy. */
void MG_REF_NAME(backward_weights)(const mg_conv2d_desc *d, int p, int q, const T *x, const T *dy, T *dw,
                                   T *db) {
    const int cg = d->c / d->groups, kg = d->k / d->groups;
    for (int k = 0; k < d->k; k++) {
        const int g = k / kg;
        for (int c = 0; c < cg; c++)
            for (int r = 0; r < d->r; r++)
                for (int s = 0; s < d->s; s++) {
                    double acc = 0.0;
                    for (int n = 0; n < d->n; n++)
                        for (int oh = 0; oh < p; oh++) {
                            const int ih = oh * d->stride_h - d->pad_h + r * d->dil_h;
                            if (ih < 0 || ih >= d->h) continue;
                            for (int ow = 0; ow < q; ow++) {
                                const int iw = ow * d->stride_w - d->pad_w + s * d->dil_w;
                                if (iw < 0 || iw >= d->w) continue;
                                acc += (double)dy[(((size_t)n * d->k + k) * p + oh) * q + ow] *
                                       (double)x[(((size_t)n * d->c + g * cg + c) * d->h + ih) * d->w + iw];
                            }
                        }
                    T *dst = &dw[(((size_t)k * cg + c) * d->r + r) * d->s + s];
                    *dst = (T)((double)*dst + acc);
                }
        if (db) {
            double acc = 0.0;
            for (int n = 0; n < d->n; n++)
                for (size_t i = 0; i < (size_t)p * q; i++)
                    acc += (double)dy[((size_t)n * d->k + k) * p * q + i];
            db[k] = (T)((double)db[k] + acc);
        }
    }
}
