/* transform.c: the recipe's image transforms with PIL/torchvision semantics: PIL's antialiased
 * bilinear resize (bit-exact port of Pillow's fixed-point Resample.c), crops, flip,
 * RandomResizedCrop parameter draws (torchvision 0.2 and >= 0.3 variants), PIL ImageEnhance colour
 * jitter, PCA lighting, ToTensor + clamp + normalisation, and the train/test pipelines. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/rng.h"
#include "data/data_internal.h"
#include "multigrain/data.h"

/* ---------------------------------------------------------------------------------------- */
/* Resize (Pillow 9.x libImaging/Resample.c, bilinear, 8 bits per channel)                   */

#define PRECISION_BITS (32 - 8 - 2)

/* -O2 uses GCC's "very cheap" vectoriser cost model, which leaves these simple pixel loops scalar;
 * ask for the normal cost model on the hot loops (results are unchanged: integer / exact ops). */
#if defined(__GNUC__) && !defined(__clang__)
#define MG_VECTORIZE __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic")))
#else
#define MG_VECTORIZE
#endif

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

/* Integer coefficients and bounds for one axis; returns ksize or -1 on allocation failure. */
static int precompute_coeffs(int in_size, double in0, double in1, int out_size, int **boundsp, int32_t **kkp) {
    double scale = (in1 - in0) / out_size, filterscale = scale;
    if (filterscale < 1.0) filterscale = 1.0;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *kk = malloc((size_t)out_size * ksize * sizeof(double));
    int *bounds = malloc((size_t)out_size * 2 * sizeof(int));
    int32_t *ik = malloc((size_t)out_size * ksize * sizeof(int32_t));
    if (!kk || !bounds || !ik) { free(kk); free(bounds); free(ik); return -1; }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = &kk[(size_t)xx * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double w = bilinear_filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * ksize; i++)
        ik[i] = kk[i] < 0 ? (int32_t)(-0.5 + kk[i] * (1 << PRECISION_BITS)) : (int32_t)(0.5 + kk[i] * (1 << PRECISION_BITS));
    free(kk);
    *boundsp = bounds;
    *kkp = ik;
    return ksize;
}

static inline uint8_t clip8(int32_t in) {
    /* same as Pillow's clip8 (>= 255 << 22 -> 255, <= 0 -> 0, else in >> 22), branch-free */
    int32_t v = in >> PRECISION_BITS;
    v = v < 0 ? 0 : v;
    v = v > 255 ? 255 : v;
    return (uint8_t)v;
}

/* acc[x] += in[x] * k over a row */
MG_VECTORIZE static void row_madd(int32_t *restrict acc, const uint8_t *restrict in, int32_t k, int n) {
    for (int x = 0; x < n; x++) acc[x] += in[x] * k;
}

MG_VECTORIZE static void row_clip(uint8_t *restrict out, const int32_t *restrict acc, int n) {
    for (int x = 0; x < n; x++) out[x] = clip8(acc[x]);
}

/* One row of the horizontal pass for output columns wx..wx+ww-1. Taps past xmax have weight 0, so
 * summing all ksize taps gives the same integers as Pillow's loop to xmax; a constant ksize
 * (inlined for 3, 5, 7) lets the compiler unroll. Windows running past the row end use xmax. */
static inline __attribute__((always_inline)) void hpass_row_k(const uint8_t *in, uint8_t *o, const int *bh, const int32_t *kh, int wx,
                                                              int ww, int iw, int ksize) {
    for (int xo = 0; xo < ww; xo++) {
        int xx = xo + wx;
        int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1];
        const int32_t *k = &kh[(size_t)xx * ksize];
        int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
        const uint8_t *p = in + 3 * (size_t)xmin;
        int taps = xmin + ksize <= iw ? ksize : xmax;
        if (taps == ksize) {
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 8
#endif
            for (int x = 0; x < ksize; x++) {
                s0 += p[3 * x] * k[x];
                s1 += p[3 * x + 1] * k[x];
                s2 += p[3 * x + 2] * k[x];
            }
        } else {
            for (int x = 0; x < taps; x++) {
                s0 += p[3 * x] * k[x];
                s1 += p[3 * x + 1] * k[x];
                s2 += p[3 * x + 2] * k[x];
            }
        }
        o[3 * xo] = clip8(s0);
        o[3 * xo + 1] = clip8(s1);
        o[3 * xo + 2] = clip8(s2);
    }
}

/* Resizes src to ow x oh but computes only the output window (wx, wy, ww, wh), written to dst
 * (3*ww*wh bytes, stride 3*ww): the same pixels as resizing fully and cropping, for less work (every
 * output pixel depends only on its own coefficients). tmp is a reusable scratch buffer. */
static mg_status resize_window(const mg_image *src, int ow, int oh, int wx, int wy, int ww, int wh, uint8_t *dst, uint8_t **tmp,
                               size_t *tmp_cap) {
    int iw = src->w, ih = src->h;
    int need_h = ow != iw, need_v = oh != ih;
    size_t dstride = 3 * (size_t)ww;
    if (!need_h && !need_v) {
        for (int y = 0; y < wh; y++) memcpy(dst + (size_t)y * dstride, src->data + (size_t)(y + wy) * src->stride + 3 * (size_t)wx, dstride);
        return MG_OK;
    }
    int *bh = NULL, *bv = NULL;
    int32_t *kh = NULL, *kv = NULL;
    int ksh = precompute_coeffs(iw, 0, iw, ow, &bh, &kh);
    int ksv = precompute_coeffs(ih, 0, ih, oh, &bv, &kv);
    if (ksh < 0 || ksv < 0) {
        free(bh); free(kh); free(bv); free(kv);
        return MG_FAIL(MG_ERR_NOMEM, "resize: cannot allocate coefficients for %dx%d -> %dx%d", iw, ih, ow, oh);
    }
    /* source rows the vertical pass reads for the window rows */
    int yfirst = bv[wy * 2], ylast = bv[(wy + wh - 1) * 2] + bv[(wy + wh - 1) * 2 + 1];
    const uint8_t *vin = src->data + 3 * (size_t)wx; /* column window when there is no horizontal pass */
    size_t vstride = src->stride;
    int vrow0 = 0;
    if (need_h) {
        int rows = need_v ? ylast - yfirst : wh;
        int r0 = need_v ? yfirst : wy;
        uint8_t *out = dst;
        if (need_v) {
            size_t bytes = (size_t)rows * dstride;
            if (bytes > *tmp_cap) {
                uint8_t *t = realloc(*tmp, bytes);
                if (!t) { free(bh); free(kh); free(bv); free(kv); return MG_FAIL(MG_ERR_NOMEM, "resize: cannot allocate %zu bytes", bytes); }
                *tmp = t;
                *tmp_cap = bytes;
            }
            out = *tmp;
        }
        for (int y = 0; y < rows; y++) {
            const uint8_t *in = src->data + (size_t)(y + r0) * src->stride;
            uint8_t *o = out + (size_t)y * dstride;
            if (ksh == 3) hpass_row_k(in, o, bh, kh, wx, ww, iw, 3);
            else if (ksh == 5) hpass_row_k(in, o, bh, kh, wx, ww, iw, 5);
            else if (ksh == 7) hpass_row_k(in, o, bh, kh, wx, ww, iw, 7);
            else hpass_row_k(in, o, bh, kh, wx, ww, iw, ksh);
        }
        vin = out;
        vstride = dstride;
        vrow0 = r0;
    }
    if (need_v) {
        int rowlen = 3 * ww;
        int32_t acc[4096 * 3];
        int32_t *accp = rowlen <= 4096 * 3 ? acc : malloc(sizeof(int32_t) * rowlen);
        if (!accp) { free(bh); free(kh); free(bv); free(kv); return MG_FAIL(MG_ERR_NOMEM, "resize: cannot allocate a row"); }
        for (int yo = 0; yo < wh; yo++) {
            int yy = yo + wy;
            int ymin = bv[yy * 2] - vrow0, ymax = bv[yy * 2 + 1];
            const int32_t *k = &kv[(size_t)yy * ksv];
            for (int x = 0; x < rowlen; x++) accp[x] = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < ymax; y++) row_madd(accp, vin + (size_t)(y + ymin) * vstride, k[y], rowlen);
            row_clip(dst + (size_t)yo * rowlen, accp, rowlen);
        }
        if (accp != acc) free(accp);
    }
    free(bh); free(kh); free(bv); free(kv);
    return MG_OK;
}

static mg_status resize_into(const mg_image *src, int ow, int oh, uint8_t *dst, uint8_t **tmp, size_t *tmp_cap) {
    return resize_window(src, ow, oh, 0, 0, ow, oh, dst, tmp, tmp_cap);
}

mg_status mg_image_resize(const mg_image *src, int out_w, int out_h, mg_image *dst) {
    if (!src || !src->data || out_w <= 0 || out_h <= 0)
        return MG_FAIL(MG_ERR_INVALID_ARG, "resize: expected an image and a positive size, found %dx%d", out_w, out_h);
    MG_TRY(mg_image_alloc(dst, out_w, out_h));
    uint8_t *tmp = NULL;
    size_t cap = 0;
    mg_status st = resize_into(src, out_w, out_h, dst->data, &tmp, &cap);
    free(tmp);
    if (st != MG_OK) mg_image_free(dst);
    return st;
}

mg_image mg_image_view(const mg_image *src, int x, int y, int w, int h) {
    mg_image v = {w, h, src->stride, src->data + (size_t)y * src->stride + 3 * (size_t)x};
    return v;
}

mg_status mg_image_crop(const mg_image *src, int x, int y, int w, int h, mg_image *dst) {
    if (x < 0 || y < 0 || w <= 0 || h <= 0 || x + w > src->w || y + h > src->h)
        return MG_FAIL(MG_ERR_INVALID_ARG, "crop: box (%d,%d,%dx%d) is not inside the %dx%d image", x, y, w, h, src->w, src->h);
    MG_TRY(mg_image_alloc(dst, w, h));
    for (int r = 0; r < h; r++)
        memcpy(dst->data + (size_t)r * dst->stride, src->data + (size_t)(y + r) * src->stride + 3 * (size_t)x, 3 * (size_t)w);
    return MG_OK;
}

void mg_image_hflip(mg_image *img) {
    for (int y = 0; y < img->h; y++) {
        uint8_t *r = img->data + (size_t)y * img->stride;
        for (int a = 0, b = img->w - 1; a < b; a++, b--) {
            uint8_t t[3];
            memcpy(t, r + 3 * a, 3);
            memcpy(r + 3 * a, r + 3 * b, 3);
            memcpy(r + 3 * b, t, 3);
        }
    }
}

void mg_resize_short_size(int w, int h, int size, int *ow, int *oh) {
    if (w <= h) { *ow = size; *oh = (int)((int64_t)size * h / w); }
    else { *oh = size; *ow = (int)((int64_t)size * w / h); }
}

void mg_resize_long_size(int w, int h, int size, int *ow, int *oh) {
    if (w >= h) { *ow = size; *oh = (int)((int64_t)size * h / w); }
    else { *oh = size; *ow = (int)((int64_t)size * w / h); }
    if (*ow < 1) *ow = 1;
    if (*oh < 1) *oh = 1;
}

void mg_center_crop_box(int w, int h, int tw, int th, int *x, int *y) {
    *y = (int)nearbyint((h - th) / 2.0); /* round half to even, like Python's round() */
    *x = (int)nearbyint((w - tw) / 2.0);
}

/* ---------------------------------------------------------------------------------------- */
/* RandomResizedCrop                                                                         */

void mg_rrc_params_default(mg_rrc_params *p) {
    p->scale_min = 0.08;
    p->scale_max = 1.0;
    p->ratio_min = 3.0 / 4.0;
    p->ratio_max = 4.0 / 3.0;
    p->log_ratio = false;
    p->attempts = 10;
}

static double uni(mg_uniform_fn u, void *c, double a, double b) { return a + (b - a) * u(c); }
static int randint_incl(mg_uniform_fn u, void *c, int lo, int hi) {
    int v = lo + (int)floor(u(c) * (hi - lo + 1));
    return v > hi ? hi : v;
}

void mg_rrc_draw(const mg_rrc_params *p, int w, int h, mg_uniform_fn u, void *uc, int *ox, int *oy, int *ocw, int *och) {
    double area = (double)w * h;
    for (int attempt = 0; attempt < p->attempts; attempt++) {
        double target = area * uni(u, uc, p->scale_min, p->scale_max);
        double ar = p->log_ratio ? exp(uni(u, uc, log(p->ratio_min), log(p->ratio_max))) : uni(u, uc, p->ratio_min, p->ratio_max);
        int cw = (int)nearbyint(sqrt(target * ar)), ch = (int)nearbyint(sqrt(target / ar));
        if (!p->log_ratio && u(uc) < 0.5) { int t = cw; cw = ch; ch = t; }
        if (cw > 0 && ch > 0 && cw <= w && ch <= h) {
            *oy = randint_incl(u, uc, 0, h - ch);
            *ox = randint_incl(u, uc, 0, w - cw);
            *ocw = cw;
            *och = ch;
            return;
        }
    }
    if (!p->log_ratio) {
        int s = w < h ? w : h;
        *ocw = *och = s;
        *oy = (h - s) / 2;
        *ox = (w - s) / 2;
        return;
    }
    double in_ratio = (double)w / h;
    int cw, ch;
    if (in_ratio < p->ratio_min) { cw = w; ch = (int)nearbyint(w / p->ratio_min); }
    else if (in_ratio > p->ratio_max) { ch = h; cw = (int)nearbyint(h * p->ratio_max); }
    else { cw = w; ch = h; }
    *ocw = cw;
    *och = ch;
    *oy = (h - ch) / 2;
    *ox = (w - cw) / 2;
}

/* ---------------------------------------------------------------------------------------- */
/* Colour jitter (PIL ImageEnhance)                                                          */

/* Pillow's ImagingBlend: in1 + alpha * (in2 - in1) in float, truncated; clipped when extrapolating
 * (alpha outside [0, 1]); inside [0, 1] the value is already in range, so clipping always is the same. */
static inline uint8_t blend(int in1, int in2, float alpha) {
    float t = (float)in1 + alpha * (float)(in2 - in1);
    t = t < 0.0f ? 0.0f : t;
    t = t > 255.0f ? 255.0f : t;
    return (uint8_t)(int)t;
}

static inline int luma(const uint8_t *p) { return (p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16; }

void mg_image_adjust_brightness(mg_image *img, float f) {
    if (f == 1.0f) return;
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = blend(0, v, f);
    for (int y = 0; y < img->h; y++) {
        uint8_t *r = img->data + (size_t)y * img->stride;
        for (int x = 0; x < 3 * img->w; x++) r[x] = lut[r[x]];
    }
}

void mg_image_adjust_contrast(mg_image *img, float f) {
    if (f == 1.0f) return;
    uint64_t sum = 0;
    for (int y = 0; y < img->h; y++) {
        const uint8_t *r = img->data + (size_t)y * img->stride;
        for (int x = 0; x < img->w; x++) sum += (uint64_t)luma(r + 3 * x);
    }
    int mean = (int)((double)sum / ((double)img->w * img->h) + 0.5);
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = blend(mean, v, f);
    for (int y = 0; y < img->h; y++) {
        uint8_t *r = img->data + (size_t)y * img->stride;
        for (int x = 0; x < 3 * img->w; x++) r[x] = lut[r[x]];
    }
}

/* out[i] = blend(l3[i], v[i], f) over n values (l3 = the pixel's grey level, repeated per channel) */
MG_VECTORIZE static void blend_row(uint8_t *restrict v, const int32_t *restrict l3, int n, float f) {
    for (int i = 0; i < n; i++) {
        float t = (float)l3[i] + f * (float)((int32_t)v[i] - l3[i]);
        t = t < 0.0f ? 0.0f : t;
        t = t > 255.0f ? 255.0f : t;
        v[i] = (uint8_t)(int32_t)t;
    }
}

static void saturation_row(uint8_t *restrict r, int w, float f, int32_t *l3) {
    for (int x = 0; x < w; x++) l3[3 * x] = l3[3 * x + 1] = l3[3 * x + 2] = luma(r + 3 * x);
    blend_row(r, l3, 3 * w, f);
}

void mg_image_adjust_saturation(mg_image *img, float f) {
    if (f == 1.0f) return;
    int32_t stack[3 * 1024];
    int32_t *l3 = img->w <= 1024 ? stack : malloc(sizeof(int32_t) * 3 * (size_t)img->w);
    if (!l3) { /* out of memory: the slow per-pixel path */
        for (int y = 0; y < img->h; y++) {
            uint8_t *r = img->data + (size_t)y * img->stride;
            for (int x = 0; x < img->w; x++) {
                int l = luma(r + 3 * x);
                for (int c = 0; c < 3; c++) r[3 * x + c] = blend(l, r[3 * x + c], f);
            }
        }
        return;
    }
    for (int y = 0; y < img->h; y++) saturation_row(img->data + (size_t)y * img->stride, img->w, f, l3);
    if (l3 != stack) free(l3);
}

void mg_jitter_draw(float b, float c, float s, mg_uniform_fn u, void *uc, mg_jitter_params *out) {
    float st[3] = {b, c, s};
    for (int i = 0; i < 3; i++) {
        double lo = 1.0 - st[i] > 0 ? 1.0 - st[i] : 0.0;
        out->factor[i] = st[i] > 0 ? (float)uni(u, uc, lo, 1.0 + st[i]) : 1.0f;
        out->order[i] = i;
    }
    for (int i = 2; i > 0; i--) { /* Fisher-Yates, like random.shuffle */
        int j = randint_incl(u, uc, 0, i);
        int t = out->order[i];
        out->order[i] = out->order[j];
        out->order[j] = t;
    }
}

void mg_image_color_jitter(mg_image *img, const mg_jitter_params *p) {
    for (int i = 0; i < 3; i++) {
        int k = p->order[i];
        if (k == 0) mg_image_adjust_brightness(img, p->factor[0]);
        else if (k == 1) mg_image_adjust_contrast(img, p->factor[1]);
        else mg_image_adjust_saturation(img, p->factor[2]);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Lighting, ToTensor, Normalize                                                             */

static const double k_eigval[3] = {0.2175, 0.0188, 0.0045};
static const double k_eigvec[3][3] = {{-0.5675, 0.7192, 0.4009}, {-0.5808, -0.0045, -0.8140}, {-0.5836, -0.6948, 0.4203}};

void mg_lighting_offset(const double alpha[3], float offset[3]) {
    for (int k = 0; k < 3; k++) {
        /* float32 like the reference (eigvec * alpha * eigval summed over j) */
        float s = 0.0f;
        for (int j = 0; j < 3; j++) s += (float)k_eigvec[k][j] * (float)alpha[j] * (float)k_eigval[j];
        offset[k] = s;
    }
}

void mg_image_to_tensor(const mg_image *img, const float *off, float div, bool clamp, const float mean[3], const float std[3],
                        float *out) {
    size_t plane = (size_t)img->w * img->h;
    for (int c = 0; c < 3; c++) {
        float lut[256];
        for (int v = 0; v < 256; v++) {
            float x = (float)v / 255.0f;
            if (off) x = (x + off[c]) / div;
            if (clamp) x = x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x;
            lut[v] = (x - mean[c]) / std[c];
        }
        float *o = out + c * plane;
        for (int y = 0; y < img->h; y++) {
            const uint8_t *r = img->data + (size_t)y * img->stride + c;
            float *oo = o + (size_t)y * img->w;
            for (int x = 0; x < img->w; x++) oo[x] = lut[r[3 * x]];
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Pipelines                                                                                 */

void mg_transform_cfg_default(mg_transform_cfg *c, bool train) {
    memset(c, 0, sizeof *c);
    c->train = train;
    c->level = MG_AUG_FULL;
    c->size = 224;
    c->eval_mode = MG_EVAL_CROP;
    mg_rrc_params_default(&c->rrc);
    c->jitter = 0.3f;
    c->lighting_std = 0.1f;
    c->lighting_div = 1.1f;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(c->mean, mean, sizeof mean);
    memcpy(c->std, std, sizeof std);
    c->dct_scale = train;
    mg_decode_opts_default(&c->decode);
}

mg_status mg_aug_level_parse(const char *t, mg_aug_level *out) {
    if (!strcmp(t, "none")) *out = MG_AUG_NONE;
    else if (!strcmp(t, "torch")) *out = MG_AUG_TORCH;
    else if (!strcmp(t, "full")) *out = MG_AUG_FULL;
    else return MG_FAIL(MG_ERR_CONFIG, "augmentation level: expected none, torch or full, found '%s'", t);
    return MG_OK;
}

const char *mg_aug_level_name(mg_aug_level l) { return l == MG_AUG_NONE ? "none" : l == MG_AUG_TORCH ? "torch" : "full"; }

/* Short side before the centre crop s: int(256/224*s), or floor(s / crop_fraction) when set. */
static int crop_resize(int s, double crop_fraction) {
    return crop_fraction > 0 ? (int)floor(s / crop_fraction + 1e-9) : (int)(256.0 / 224.0 * s);
}

void mg_transform_out_size(const mg_transform_cfg *c, int w, int h, int *ow, int *oh) {
    if (!c->train && c->eval_mode == MG_EVAL_RECT) mg_resize_long_size(w, h, c->size, ow, oh);
    else *ow = *oh = c->size;
}

void mg_transform_ws_free(mg_transform_ws *ws) {
    free(ws->a.data);
    free(ws->b.data);
    memset(ws, 0, sizeof *ws);
}

static double rng_uniform_cb(void *ctx) { return mg_rng_uniform(ctx); }

static mg_status ws_reserve(mg_image *img, size_t *cap, int w, int h) {
    size_t bytes = (size_t)w * h * 3;
    if (bytes > *cap) {
        uint8_t *d = realloc(img->data, bytes);
        if (!d) return MG_FAIL(MG_ERR_NOMEM, "transform: cannot allocate %dx%d", w, h);
        img->data = d;
        *cap = bytes;
    }
    img->w = w;
    img->h = h;
    img->stride = 3 * w;
    return MG_OK;
}

/* Runs the pipeline on encoded bytes (buf) or on an already decoded image (pre, borrowed). */
mg_status data_transform_run(const mg_transform_cfg *c, const void *buf, size_t size, const mg_image *pre, uint64_t seed,
                             uint64_t epoch, uint64_t position, mg_transform_ws *ws, float *out, size_t out_cap, int *pow,
                             int *poh) {
    mg_rng rng;
    mg_rng_init(&rng, seed, epoch, position, MG_RNG_PURPOSE_AUGMENT);
    int w, h;
    if (pre) { w = pre->w; h = pre->h; }
    else MG_TRY(mg_image_probe_mem(buf, size, &c->decode, &w, &h));
    int ow, oh;
    mg_transform_out_size(c, w, h, &ow, &oh);
    if ((size_t)3 * ow * oh > out_cap)
        return MG_FAIL(MG_ERR_INVALID_ARG, "transform: output needs %d floats, buffer holds %zu", 3 * ow * oh, out_cap);
    /* geometry in original (oriented) pixel coordinates: crop box (bx, by, bw, bh) resized to rw x rh,
     * then centre crop ow x oh of that */
    int bx = 0, by = 0, bw = w, bh = h, rw = ow, rh = oh;
    bool random_geo = c->train && c->level != MG_AUG_NONE;
    if (random_geo) {
        mg_rrc_draw(&c->rrc, w, h, rng_uniform_cb, &rng, &bx, &by, &bw, &bh);
    } else if (c->train || c->eval_mode == MG_EVAL_CROP) {
        mg_resize_short_size(w, h, crop_resize(c->size, c->train ? 0 : c->crop_fraction), &rw, &rh);
    }
    mg_decode_opts dopt = c->decode;
    dopt.min_w = dopt.min_h = 0;
    if (c->dct_scale) {
        dopt.min_w = (int)ceil((double)rw * w / bw);
        dopt.min_h = (int)ceil((double)rh * h / bh);
    }
    mg_image img = {0};
    int sn;
    if (pre) img = *pre;
    else MG_TRY(mg_image_decode_mem(buf, size, &dopt, &img, &sn));
    mg_image v = img;
    if (img.w != w || img.h != h) { /* DCT-scaled: map the box to the smaller image */
        double sx = (double)img.w / w, sy = (double)img.h / h;
        int x0 = (int)floor(bx * sx + 0.5), y0 = (int)floor(by * sy + 0.5);
        int x1 = (int)floor((bx + bw) * sx + 0.5), y1 = (int)floor((by + bh) * sy + 0.5);
        if (x1 > img.w) x1 = img.w;
        if (y1 > img.h) y1 = img.h;
        if (x1 <= x0) x1 = x0 + 1;
        if (y1 <= y0) y1 = y0 + 1;
        v = mg_image_view(&img, x0, y0, x1 - x0, y1 - y0);
    } else if (random_geo) {
        v = mg_image_view(&img, bx, by, bw, bh);
    }
    uint8_t *tmp = ws->a.data;
    size_t tcap = ws->cap_a;
    ws->a.data = NULL;
    ws->cap_a = 0;
    /* resize to rw x rh, keeping only the centred ow x oh window (test-time centre crop) */
    int cx = 0, cy = 0;
    if (rw != ow || rh != oh) mg_center_crop_box(rw, rh, ow, oh, &cx, &cy);
    mg_status st = ws_reserve(&ws->b, &ws->cap_b, ow, oh);
    if (st == MG_OK) st = resize_window(&v, rw, rh, cx, cy, ow, oh, ws->b.data, &tmp, &tcap);
    ws->a.data = tmp;
    ws->cap_a = tcap;
    if (!pre) mg_image_free(&img);
    MG_TRY(st);
    mg_image res = ws->b;
    float off[3];
    bool lighting = false;
    if (random_geo) {
        if (mg_rng_uniform(&rng) < 0.5) mg_image_hflip(&res);
        if (c->level == MG_AUG_FULL) {
            mg_jitter_params jp;
            mg_jitter_draw(c->jitter, c->jitter, c->jitter, rng_uniform_cb, &rng, &jp);
            mg_image_color_jitter(&res, &jp);
            double alpha[3];
            for (int k = 0; k < 3; k++) alpha[k] = mg_rng_normal(&rng) * c->lighting_std;
            mg_lighting_offset(alpha, off);
            lighting = true;
        }
    }
    mg_image_to_tensor(&res, lighting ? off : NULL, c->lighting_div, lighting, c->mean, c->std, out);
    if (pow) *pow = ow;
    if (poh) *poh = oh;
    return MG_OK;
}

mg_status mg_transform_apply_mem(const mg_transform_cfg *c, const void *buf, size_t size, uint64_t seed, uint64_t epoch,
                                 uint64_t position, mg_transform_ws *ws, float *out, size_t out_cap, int *ow, int *oh) {
    return data_transform_run(c, buf, size, NULL, seed, epoch, position, ws, out, out_cap, ow, oh);
}

mg_status mg_image_load_tensor(const char *path, mg_eval_mode mode, int s, float **out, int *ow, int *oh) {
    if (s <= 0) return MG_FAIL(MG_ERR_INVALID_ARG, "load tensor: size must be positive, found %d", s);
    mg_transform_cfg c;
    mg_transform_cfg_default(&c, false);
    c.eval_mode = mode;
    c.size = s;
    void *data;
    size_t size;
    MG_TRY(mg_file_read_all(path, &data, &size));
    int w, h;
    mg_status st = mg_image_probe_mem(data, size, &c.decode, &w, &h);
    if (st != MG_OK) { free(data); return mg_error_wrap(st, "%s", path); }
    int tw, th;
    mg_transform_out_size(&c, w, h, &tw, &th);
    size_t n = (size_t)3 * tw * th;
    float *t = malloc(n * sizeof(float));
    if (!t) { free(data); return MG_FAIL(MG_ERR_NOMEM, "%s: cannot allocate a %dx%d tensor", path, tw, th); }
    mg_transform_ws ws = {0};
    st = mg_transform_apply_mem(&c, data, size, 0, 0, 0, &ws, t, n, ow, oh);
    mg_transform_ws_free(&ws);
    free(data);
    if (st != MG_OK) { free(t); return mg_error_wrap(st, "%s", path); }
    *out = t;
    return MG_OK;
}
