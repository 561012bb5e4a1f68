/* image.c: RGB image buffers and decoding: JPEG through TurboJPEG (DCT-domain n/8 downscaling,
 * grey and CMYK converted like PIL's convert('RGB'), EXIF orientation), PNG through libpng
 * (palette, grey, 16-bit and alpha reduced like PIL), with decompression-bomb limits. */
#include <pthread.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "core/fileio.h"
#include "data/data_internal.h"
#include "multigrain/data.h"

mg_status mg_image_alloc(mg_image *img, int w, int h) {
    if (w <= 0 || h <= 0) return MG_FAIL(MG_ERR_INVALID_ARG, "image: expected a positive size, found %dx%d", w, h);
    size_t bytes = (size_t)w * (size_t)h * 3;
    img->data = malloc(bytes);
    if (!img->data) return MG_FAIL(MG_ERR_NOMEM, "image: cannot allocate %dx%d RGB (%zu bytes)", w, h, bytes);
    img->w = w;
    img->h = h;
    img->stride = 3 * w;
    return MG_OK;
}

void mg_image_free(mg_image *img) {
    if (!img) return;
    free(img->data);
    img->data = NULL;
    img->w = img->h = img->stride = 0;
}

void mg_decode_opts_default(mg_decode_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_width = MG_DECODE_DEFAULT_MAX_SIDE;
    o->max_height = MG_DECODE_DEFAULT_MAX_SIDE;
    o->max_pixels = MG_DECODE_DEFAULT_MAX_PIXELS;
}

static mg_status check_limits(const mg_decode_opts *o, int64_t w, int64_t h) {
    int64_t mw = o && o->max_width > 0 ? o->max_width : MG_DECODE_DEFAULT_MAX_SIDE;
    int64_t mh = o && o->max_height > 0 ? o->max_height : MG_DECODE_DEFAULT_MAX_SIDE;
    int64_t mp = o && o->max_pixels > 0 ? o->max_pixels : MG_DECODE_DEFAULT_MAX_PIXELS;
    if (w <= 0 || h <= 0) return MG_FAIL(MG_ERR_FORMAT, "image size %lldx%lld is empty", (long long)w, (long long)h);
    if (w > mw || h > mh || w * h > mp)
        return MG_FAIL(MG_ERR_FORMAT,
                       "image size %lldx%lld exceeds the decompression-bomb limits (max %lldx%lld, %lld pixels)",
                       (long long)w, (long long)h, (long long)mw, (long long)mh, (long long)mp);
    return MG_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* EXIF orientation                                                                          */

static unsigned rd16(const uint8_t *p, int le) { return le ? p[0] | (p[1] << 8) : (p[0] << 8) | p[1]; }
static uint32_t rd32(const uint8_t *p, int le) {
    return le ? (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24)
              : ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Orientation tag (1..8) of a JPEG's APP1 Exif block, 1 when absent or malformed. */
int data_jpeg_exif_orientation(const uint8_t *b, size_t n) {
    if (n < 4 || b[0] != 0xFF || b[1] != 0xD8) return 1;
    size_t p = 2;
    while (p + 4 <= n) {
        if (b[p] != 0xFF) return 1;
        unsigned marker = b[p + 1];
        if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) { p += 2; continue; }
        if (marker == 0xDA || marker == 0xD9) return 1; /* start of scan: no more metadata */
        size_t len = ((size_t)b[p + 2] << 8) | b[p + 3];
        if (len < 2 || p + 2 + len > n) return 1;
        const uint8_t *s = b + p + 4;
        size_t sl = len - 2;
        if (marker == 0xE1 && sl >= 14 && memcmp(s, "Exif\0\0", 6) == 0) {
            const uint8_t *t = s + 6;
            size_t tl = sl - 6;
            int le;
            if (t[0] == 'I' && t[1] == 'I') le = 1;
            else if (t[0] == 'M' && t[1] == 'M') le = 0;
            else return 1;
            uint32_t ifd = rd32(t + 4, le);
            if ((size_t)ifd + 2 > tl) return 1;
            unsigned count = rd16(t + ifd, le);
            for (unsigned i = 0; i < count; i++) {
                size_t e = (size_t)ifd + 2 + 12 * (size_t)i;
                if (e + 12 > tl) return 1;
                if (rd16(t + e, le) == 0x0112) {
                    unsigned v = rd16(t + e + 8, le);
                    return v >= 1 && v <= 8 ? (int)v : 1;
                }
            }
            return 1;
        }
        p += 2 + len;
    }
    return 1;
}

/* Applies PIL's exif_transpose for orientation o into a new image. */
static mg_status apply_orientation(mg_image *img, int o) {
    if (o <= 1) return MG_OK;
    int w = img->w, h = img->h;
    int swap = o >= 5;
    mg_image out;
    MG_TRY(mg_image_alloc(&out, swap ? h : w, swap ? w : h));
    for (int y = 0; y < out.h; y++) {
        for (int x = 0; x < out.w; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = w - 1 - x; sy = y; break;              /* mirror horizontal */
            case 3: sx = w - 1 - x; sy = h - 1 - y; break;      /* rotate 180 */
            case 4: sx = x; sy = h - 1 - y; break;              /* mirror vertical */
            case 5: sx = y; sy = x; break;                      /* transpose */
            case 6: sx = y; sy = h - 1 - x; break;              /* rotate 270 (90 clockwise) */
            case 7: sx = w - 1 - y; sy = h - 1 - x; break;      /* transverse */
            default: sx = w - 1 - y; sy = x; break;             /* 8: rotate 90 */
            }
            memcpy(out.data + (size_t)y * out.stride + 3 * (size_t)x, img->data + (size_t)sy * img->stride + 3 * (size_t)sx, 3);
        }
    }
    mg_image_free(img);
    *img = out;
    return MG_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* JPEG                                                                                      */

static pthread_key_t tj_key;
static pthread_once_t tj_once = PTHREAD_ONCE_INIT;
static void tj_destroy(void *h) { tjDestroy(h); }
static void tj_key_init(void) { (void)pthread_key_create(&tj_key, tj_destroy); }

static tjhandle tj_handle(void) {
    pthread_once(&tj_once, tj_key_init);
    tjhandle h = pthread_getspecific(tj_key);
    if (!h) {
        h = tjInitDecompress();
        if (h) pthread_setspecific(tj_key, h);
    }
    return h;
}

/* After a failed call a TurboJPEG handle can be left in a state where the next header read
 * reports success without filling the size: start every thread over with a fresh handle. */
static void tj_reset(void) {
    tjhandle h = pthread_getspecific(tj_key);
    if (h) {
        tjDestroy(h);
        pthread_setspecific(tj_key, NULL);
    }
}

static int is_jpeg(const uint8_t *b, size_t n) { return n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }
static int is_png(const uint8_t *b, size_t n) { return n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0; }

static mg_status jpeg_header(const uint8_t *b, size_t n, int *w, int *h, int *cs) {
    tjhandle tj = tj_handle();
    if (!tj) return MG_FAIL(MG_ERR_NOMEM, "jpeg: cannot create a TurboJPEG decompressor");
    int sub = -1;
    *w = *h = 0;
    *cs = -1;
    if (tjDecompressHeader3(tj, b, (unsigned long)n, w, h, &sub, cs) != 0 || *w <= 0 || *h <= 0) {
        mg_status st = MG_FAIL(MG_ERR_FORMAT, "jpeg: bad header: %s", tjGetErrorStr2(tj));
        tj_reset();
        return st;
    }
    return MG_OK;
}

/* Largest n in 1..8 with the n/8-scaled image still >= min_w x min_h (TJSCALED rounds up). */
static int pick_scale(int w, int h, int min_w, int min_h) {
    if (min_w <= 0 && min_h <= 0) return 8;
    int best = 8;
    for (int n = 7; n >= 1; n--) {
        int sw = (w * n + 7) / 8, sh = (h * n + 7) / 8;
        if (sw >= min_w && sh >= min_h) best = n;
        else break;
    }
    return best;
}

static mg_status jpeg_decode(const uint8_t *b, size_t n, const mg_decode_opts *o, mg_image *out, int *scale_num) {
    int w, h, cs;
    MG_TRY(jpeg_header(b, n, &w, &h, &cs));
    MG_TRY(check_limits(o, w, h));
    int orient = o && o->exif_orientation ? data_jpeg_exif_orientation(b, n) : 1;
    int min_w = o ? o->min_w : 0, min_h = o ? o->min_h : 0;
    if (orient >= 5) { int t = min_w; min_w = min_h; min_h = t; }
    int sn = pick_scale(w, h, min_w, min_h);
    int sw = (w * sn + 7) / 8, sh = (h * sn + 7) / 8;
    tjhandle tj = tj_handle();
    int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    mg_image img = {0};
    uint8_t *buf = NULL;
    if (cmyk) {
        buf = malloc((size_t)sw * sh * 4);
        if (!buf) return MG_FAIL(MG_ERR_NOMEM, "jpeg: cannot allocate a %dx%d CMYK buffer", sw, sh);
    }
    mg_status st = mg_image_alloc(&img, sw, sh);
    if (st != MG_OK) { free(buf); return st; }
    int rc = cmyk ? tjDecompress2(tj, b, (unsigned long)n, buf, sw, 4 * sw, sh, TJPF_CMYK, 0)
                  : tjDecompress2(tj, b, (unsigned long)n, img.data, sw, img.stride, sh, TJPF_RGB, 0);
    if (rc != 0) {
        int fatal = tjGetErrorCode(tj) == TJERR_FATAL;
        const char *msg = tjGetErrorStr2(tj);
        int truncated = strstr(msg, "Premature end") != NULL;
        if (fatal || (truncated && !(o && o->allow_truncated))) {
            st = MG_FAIL(MG_ERR_FORMAT, "jpeg: %s%s", truncated ? "truncated file: " : "", msg);
            tj_reset();
            free(buf);
            mg_image_free(&img);
            return st;
        }
        /* other libjpeg warnings (extraneous bytes, ...) are ignored, as PIL does */
    }
    if (cmyk) {
        /* PIL reads JPEG CMYK as "CMYK;I" (Adobe inverted) and converts with
         * R = 255-K' - (255-K')*C'/255 where C' = 255-stored: in stored terms R = k - MULDIV255(255-c, k). */
        for (size_t i = 0, np = (size_t)sw * sh; i < np; i++) {
            const uint8_t *p = buf + 4 * i;
            int k = p[3];
            for (int c = 0; c < 3; c++) {
                int t = (255 - p[c]) * k + 128;
                int v = k - (((t >> 8) + t) >> 8);
                img.data[3 * i + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
        free(buf);
    }
    st = apply_orientation(&img, orient);
    if (st != MG_OK) { mg_image_free(&img); return st; }
    *out = img;
    if (scale_num) *scale_num = sn;
    return MG_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* PNG                                                                                       */

typedef struct png_src {
    const uint8_t *b;
    size_t n, pos;
} png_src;

static void png_read_fn(png_structp p, png_bytep out, png_size_t len) {
    png_src *s = png_get_io_ptr(p);
    if (s->pos + len > s->n) png_error(p, "truncated file");
    memcpy(out, s->b + s->pos, len);
    s->pos += len;
}

static void png_err_fn(png_structp p, png_const_charp msg) {
    char *dst = png_get_error_ptr(p);
    snprintf(dst, 200, "%s", msg);
    png_longjmp(p, 1);
}
static void png_warn_fn(png_structp p, png_const_charp msg) { (void)p; (void)msg; }

typedef struct png_job {
    png_src src;
    const mg_decode_opts *o;
    int header_only;
    int w, h;
    mg_image img;
    png_bytep *rows;
    char err[200];
    mg_status limit_status;
} png_job;

/* All libpng work happens here; no local of this function is modified after setjmp. */
static int png_run(png_job *j) {
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, j->err, png_err_fn, png_warn_fn);
    if (!p) { snprintf(j->err, sizeof j->err, "out of memory"); return -1; }
    png_infop info = png_create_info_struct(p);
    if (!info) { png_destroy_read_struct(&p, NULL, NULL); snprintf(j->err, sizeof j->err, "out of memory"); return -1; }
    if (setjmp(png_jmpbuf(p))) {
        png_destroy_read_struct(&p, &info, NULL);
        return -1;
    }
    png_set_read_fn(p, &j->src, png_read_fn);
    png_set_user_limits(p, 0x7fffffff, 0x7fffffff);
    png_read_info(p, info);
    png_uint_32 w = png_get_image_width(p, info), h = png_get_image_height(p, info);
    j->w = (int)w;
    j->h = (int)h;
    if (check_limits(j->o, (int64_t)w, (int64_t)h) != MG_OK) {
        j->limit_status = MG_ERR_FORMAT;
        snprintf(j->err, sizeof j->err, "%s", mg_error_message());
        png_destroy_read_struct(&p, &info, NULL);
        return -1;
    }
    if (j->header_only) { png_destroy_read_struct(&p, &info, NULL); return 0; }
    int ct = png_get_color_type(p, info), bd = png_get_bit_depth(p, info);
    /* PIL's convert('RGB'): palette expanded, grey replicated, alpha/transparency dropped,
     * 16-bit reduced to the high byte. */
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(p);
    if (ct == PNG_COLOR_TYPE_GRAY && bd < 8) png_set_expand_gray_1_2_4_to_8(p);
    if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(p);
    if (bd == 16) png_set_strip_16(p);
    if (ct & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(p);
    png_set_interlace_handling(p);
    png_read_update_info(p, info);
    if (png_get_rowbytes(p, info) != (size_t)w * 3) png_error(p, "unexpected row layout after conversion");
    for (png_uint_32 y = 0; y < h; y++) j->rows[y] = j->img.data + (size_t)y * j->img.stride;
    png_read_image(p, j->rows);
    png_read_end(p, NULL);
    png_destroy_read_struct(&p, &info, NULL);
    return 0;
}

static mg_status png_decode(const uint8_t *b, size_t n, const mg_decode_opts *o, int header_only, mg_image *out,
                            int *w, int *h) {
    png_job j;
    memset(&j, 0, sizeof j);
    j.src.b = b;
    j.src.n = n;
    j.o = o;
    j.header_only = 1;
    if (png_run(&j) != 0) return MG_FAIL(MG_ERR_FORMAT, "png: %s", j.err);
    *w = j.w;
    *h = j.h;
    if (header_only) return MG_OK;
    MG_TRY(mg_image_alloc(&j.img, j.w, j.h));
    j.rows = malloc(sizeof(png_bytep) * (size_t)j.h);
    if (!j.rows) { mg_image_free(&j.img); return MG_FAIL(MG_ERR_NOMEM, "png: cannot allocate row pointers"); }
    j.header_only = 0;
    j.src.pos = 0;
    int rc = png_run(&j);
    free(j.rows);
    if (rc != 0) {
        mg_image_free(&j.img);
        return MG_FAIL(MG_ERR_FORMAT, "png: %s", j.err);
    }
    *out = j.img;
    return MG_OK;
}

/* ---------------------------------------------------------------------------------------- */

mg_status mg_image_probe_mem(const void *buf, size_t size, const mg_decode_opts *o, int *w, int *h) {
    const uint8_t *b = buf;
    if (size == 0) return MG_FAIL(MG_ERR_FORMAT, "empty file (0 bytes)");
    if (is_jpeg(b, size)) {
        int cs;
        MG_TRY(jpeg_header(b, size, w, h, &cs));
        MG_TRY(check_limits(o, *w, *h));
        if (o && o->exif_orientation && data_jpeg_exif_orientation(b, size) >= 5) { int t = *w; *w = *h; *h = t; }
        return MG_OK;
    }
    if (is_png(b, size)) return png_decode(b, size, o, 1, NULL, w, h);
    return MG_FAIL(MG_ERR_FORMAT, "not a JPEG or PNG file (first bytes %02x %02x %02x %02x)", b[0],
                   size > 1 ? b[1] : 0, size > 2 ? b[2] : 0, size > 3 ? b[3] : 0);
}

mg_status mg_image_decode_mem(const void *buf, size_t size, const mg_decode_opts *o, mg_image *out, int *scale_num) {
    const uint8_t *b = buf;
    if (scale_num) *scale_num = 8;
    if (size == 0) return MG_FAIL(MG_ERR_FORMAT, "empty file (0 bytes)");
    if (is_jpeg(b, size)) return jpeg_decode(b, size, o, out, scale_num);
    if (is_png(b, size)) {
        int w, h;
        return png_decode(b, size, o, 0, out, &w, &h);
    }
    return MG_FAIL(MG_ERR_FORMAT, "not a JPEG or PNG file (first bytes %02x %02x %02x %02x)", b[0],
                   size > 1 ? b[1] : 0, size > 2 ? b[2] : 0, size > 3 ? b[3] : 0);
}

mg_status mg_image_decode_file(const char *path, const mg_decode_opts *o, mg_image *out) {
    void *data;
    size_t size;
    MG_TRY(mg_file_read_all(path, &data, &size));
    mg_status st = mg_image_decode_mem(data, size, o, out, NULL);
    free(data);
    if (st != MG_OK) return mg_error_wrap(st, "%s", path);
    return MG_OK;
}

/* ---------------------------------------------------------------------------------------- */

typedef struct png_wjob {
    FILE *fp;
    const mg_image *img;
    char err[200];
} png_wjob;

static int png_write_run(png_wjob *j) {
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, j->err, png_err_fn, png_warn_fn);
    if (!p) return -1;
    png_infop info = png_create_info_struct(p);
    if (!info || setjmp(png_jmpbuf(p))) {
        png_destroy_write_struct(&p, info ? &info : NULL);
        return -1;
    }
    png_init_io(p, j->fp);
    png_set_IHDR(p, info, (png_uint_32)j->img->w, (png_uint_32)j->img->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    for (int y = 0; y < j->img->h; y++) png_write_row(p, j->img->data + (size_t)y * j->img->stride);
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    return 0;
}

mg_status mg_image_write_png(const char *path, const mg_image *img) {
    png_wjob j;
    memset(&j, 0, sizeof j);
    j.img = img;
    mg_atomic_file af; /* temp file, fsync, rename: a failed write leaves no partial PNG at path */
    MG_TRY(mg_atomic_file_open(&af, path));
    j.fp = af.fp;
    if (png_write_run(&j) != 0) {
        mg_atomic_file_abort(&af);
        return MG_FAIL(MG_ERR_IO, "%s: PNG write failed: %s", path, j.err);
    }
    return mg_atomic_file_commit(&af);
}
