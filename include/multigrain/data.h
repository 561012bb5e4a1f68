/* data.h: the image data pipeline: datasets (ImageNet folder layout, list files), image decoding
 * (JPEG via libjpeg-turbo with DCT-domain downscaling, PNG via libpng), the MultiGrain recipe's
 * transforms with torchvision/PIL semantics, the repeated-augmentation sampler, and a threaded
 * loader that fills a bounded ring of batch buffers reproducibly from (seed, epoch, position).
 * See docs/data.md. Images are 8-bit RGB, row-major HWC; tensors are float32 CHW / NCHW. */
#ifndef MULTIGRAIN_DATA_H
#define MULTIGRAIN_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Images and decoding                                                                         */

typedef struct mg_image {
    int w, h;      /* pixels */
    int stride;    /* bytes per row (>= 3*w) */
    uint8_t *data; /* RGB, malloc'd (or borrowed, see mg_image_view) */
} mg_image;

mg_status mg_image_alloc(mg_image *img, int w, int h);
void mg_image_free(mg_image *img);

typedef struct mg_decode_opts {
    int64_t max_width;  /* decompression-bomb limits: refuse larger images (0 = default) */
    int64_t max_height;
    int64_t max_pixels;
    bool exif_orientation;  /* honour the EXIF Orientation tag of JPEGs (PIL's exif_transpose) */
    bool allow_truncated;   /* decode truncated JPEGs (missing rows grey) instead of failing */
    /* DCT-domain downscaling: the decoder may return an image scaled by n/8 (n = 1..8) as long as
     * both sides stay >= min_w x min_h. 0 = decode at full size. */
    int min_w, min_h;
} mg_decode_opts;

#define MG_DECODE_DEFAULT_MAX_SIDE 32768
#define MG_DECODE_DEFAULT_MAX_PIXELS (178956970LL) /* PIL's MAX_IMAGE_PIXELS * 2: its error limit */

void mg_decode_opts_default(mg_decode_opts *o);

/* Reads only the header: size after EXIF orientation (when enabled). */
mg_status mg_image_probe_mem(const void *buf, size_t size, const mg_decode_opts *o, int *w, int *h);
/* Decodes JPEG or PNG (detected from the bytes, not the name) to RGB. Grayscale, palette, 16-bit,
 * alpha and CMYK inputs are converted like PIL's convert('RGB') (alpha dropped). `scale_num` (may
 * be NULL) receives n of the n/8 DCT scaling used (8 = full size). */
mg_status mg_image_decode_mem(const void *buf, size_t size, const mg_decode_opts *o, mg_image *out,
                              int *scale_num);
mg_status mg_image_decode_file(const char *path, const mg_decode_opts *o, mg_image *out);
/* Writes an RGB image as PNG (tests, debugging). */
mg_status mg_image_write_png(const char *path, const mg_image *img);

/* ------------------------------------------------------------------------------------------ */
/* Transforms (each usable on its own; uint8 steps match PIL bit-exactly where stated)         */

/* PIL's Image.resize(BILINEAR) (antialiased: filter support scaled by the downscale factor,
 * 22-bit fixed-point coefficients, horizontal pass then vertical). Same size = exact copy. */
mg_status mg_image_resize(const mg_image *src, int out_w, int out_h, mg_image *dst);
/* Copies the box (x, y, w, h), which must lie inside the image. */
mg_status mg_image_crop(const mg_image *src, int x, int y, int w, int h, mg_image *dst);
/* A borrowed view of a box (no copy; do not free). */
mg_image mg_image_view(const mg_image *src, int x, int y, int w, int h);
void mg_image_hflip(mg_image *img);

/* Test-time geometry. torchvision Resize(int): shorter side to `size`, other int(size*long/short). */
void mg_resize_short_size(int w, int h, int size, int *ow, int *oh);
/* MultiGrain's Resize(largest=True): longer side to `size`, other int(size*short/long). */
void mg_resize_long_size(int w, int h, int size, int *ow, int *oh);
/* CenterCrop box: top = int(round((h - th) / 2)) with Python's round-half-even. */
void mg_center_crop_box(int w, int h, int tw, int th, int *x, int *y);

/* RandomResizedCrop parameters. */
typedef struct mg_rrc_params {
    double scale_min, scale_max; /* area fraction, default 0.08..1 */
    double ratio_min, ratio_max; /* aspect ratio, default 3/4..4/3 */
    bool log_ratio;  /* false: torchvision 0.2 (uniform ratio, w/h swap with p 0.5, square
                      * centre fallback) = the recipe; true: torchvision >= 0.3 (log-uniform
                      * ratio, no swap, ratio-clamped centre fallback) */
    int attempts;    /* 10 */
} mg_rrc_params;
void mg_rrc_params_default(mg_rrc_params *p);

/* A source of uniform numbers for the random transforms: a function returning U[0,1) so tests can
 * feed fixed draws. */
typedef double (*mg_uniform_fn)(void *ctx);
/* Draws a crop box for an image of w x h. Returns the number of draws used. */
void mg_rrc_draw(const mg_rrc_params *p, int w, int h, mg_uniform_fn u, void *uctx, int *x, int *y,
                 int *cw, int *ch);

/* PIL ImageEnhance on uint8 RGB, in place (factor 1 = identity):
 * brightness blends with black, contrast with the grey level int(mean(L)+0.5), saturation with
 * the L (ITU-R 601-2 luma) image; blend truncates like PIL's ImagingBlend. */
void mg_image_adjust_brightness(mg_image *img, float factor);
void mg_image_adjust_contrast(mg_image *img, float factor);
void mg_image_adjust_saturation(mg_image *img, float factor);

typedef struct mg_jitter_params {
    float factor[3]; /* brightness, contrast, saturation factors */
    int order[3];    /* application order: a permutation of 0 (brightness), 1 (contrast), 2 (sat) */
} mg_jitter_params;
void mg_jitter_draw(float brightness, float contrast, float saturation, mg_uniform_fn u, void *uctx,
                    mg_jitter_params *out);
void mg_image_color_jitter(mg_image *img, const mg_jitter_params *p);

/* The recipe's PCA lighting offsets: offset_k = sum_j V[k][j] * alpha_j * lambda_j. */
void mg_lighting_offset(const double alpha[3], float offset[3]);

/* uint8 HWC -> float32 CHW: x = u8/255 (ToTensor); then if lighting: x = (x + offset) / div;
 * if clamp: clamp to [0,1]; then (x - mean) / std. `lighting_offset` NULL = no lighting. */
void mg_image_to_tensor(const mg_image *img, const float *lighting_offset, float lighting_div,
                        bool clamp, const float mean[3], const float std[3], float *out);

/* ------------------------------------------------------------------------------------------ */
/* Pipelines                                                                                   */

typedef enum mg_aug_level { MG_AUG_NONE = 0, MG_AUG_TORCH, MG_AUG_FULL } mg_aug_level;
typedef enum mg_eval_mode { MG_EVAL_CROP = 0, MG_EVAL_RECT } mg_eval_mode;

typedef struct mg_transform_cfg {
    bool train;              /* random training transform vs test-time transform */
    mg_aug_level level;      /* train: none = resize to size x size only; torch = RRC + flip;
                              * full = torch + jitter + lighting */
    int size;                /* train crop / test crop s / rect max side s* (224) */
    mg_eval_mode eval_mode;  /* test: crop (resize short side to int(256/224*s), centre crop s)
                              * or rect (longer side to s, no crop) */
    double crop_fraction;    /* test crop: 0 = the classic 224/256 above; else resize the short
                              * side to floor(s / crop_fraction) (timm's crop_pct), in (0, 1] */
    mg_rrc_params rrc;
    float jitter;            /* brightness = contrast = saturation strength (0.3) */
    float lighting_std;      /* alpha std (0.1) */
    float lighting_div;      /* 1.1 */
    float mean[3], std[3];
    bool dct_scale;          /* use DCT-domain JPEG downscaling when it loses nothing needed */
    mg_decode_opts decode;
} mg_transform_cfg;

void mg_transform_cfg_default(mg_transform_cfg *c, bool train);
mg_status mg_aug_level_parse(const char *text, mg_aug_level *out);
const char *mg_aug_level_name(mg_aug_level l);

/* Output size for an image of w x h (rect mode depends on the image; others are size x size). */
void mg_transform_out_size(const mg_transform_cfg *c, int w, int h, int *ow, int *oh);

/* Scratch buffers reused between calls (one per thread). */
typedef struct mg_transform_ws {
    mg_image a, b;
    size_t cap_a, cap_b;
} mg_transform_ws;
void mg_transform_ws_free(mg_transform_ws *ws);

/* Decodes an encoded image and applies the configured transform into `out` (3*oh*ow floats,
 * with (ow, oh) from mg_transform_out_size of the oriented image size; pass out_cap to check).
 * Random draws come from the stream keyed by (seed, epoch, position). */
mg_status mg_transform_apply_mem(const mg_transform_cfg *c, const void *buf, size_t size,
                                 uint64_t seed, uint64_t epoch, uint64_t position,
                                 mg_transform_ws *ws, float *out, size_t out_cap, int *ow, int *oh);

/* Eval path: decode a file to a float32 CHW normalised tensor (malloc'd into *out), either
 * rect (max side s, no crop) or crop (resize short side to int(256/224*s), centre crop s). */
mg_status mg_image_load_tensor(const char *path, mg_eval_mode mode, int s, float **out, int *ow,
                               int *oh);

/* ------------------------------------------------------------------------------------------ */
/* Datasets                                                                                    */

typedef struct mg_dataset {
    char *root;            /* prefix joined to relative paths ("" for absolute ones) */
    int64_t n;             /* number of samples */
    char **paths;          /* n paths (relative to root, or absolute) */
    int32_t *labels;       /* n labels, or NULL for unlabelled sets */
    int n_classes;
    char **class_names;    /* n_classes names (folder layout), or NULL */
    /* bad-file policy state, shared by loaders over this dataset */
    int64_t max_bad;       /* fail when more than this many files are bad (default 100) */
    int64_t n_bad;         /* updated atomically */
    uint8_t *bad;          /* n flags, 1 = known bad (logged once) */
    /* IDX datasets keep their pixels in memory: n images of idx_h x idx_w grey bytes */
    uint8_t *idx_pixels;
    int idx_w, idx_h;
    char *strings_;        /* internal: storage of paths and class names */
} mg_dataset;

typedef struct mg_scan_opts {
    const char *cache_path; /* NULL = no cache; else reuse/write a scan cache there */
    bool recursive;         /* descend into sub-folders of class folders (ImageFolder does) */
} mg_scan_opts;

/* ImageNet layout: root/<class>/[sub/]name.{jpg,jpeg,png} (case-insensitive); classes sorted by name
 * (byte order = Python's code point order for UTF-8), samples in os.walk sorted order. */
mg_status mg_dataset_scan_folder(const char *root, const mg_scan_opts *o, mg_dataset *ds);
/* "path label" or "path" per line ('#' comments, blank lines skipped); relative paths are taken
 * relative to `root` (NULL = the list file's folder). All lines labelled or none. */
mg_status mg_dataset_read_list(const char *list_path, const char *root, mg_dataset *ds);
/* Fashion-MNIST / MNIST IDX pair (images ubyte 3-D, labels ubyte 1-D), kept in memory. */
mg_status mg_dataset_read_idx(const char *images_path, const char *labels_path, mg_dataset *ds);
/* A split of a dataset root: ROOT/<split>/<class>/... (ImageNet layout, scanned recursively), or,
 * when that folder is absent, the IDX pair ROOT/{train,t10k}-{images-idx3,labels-idx1}-ubyte
 * ("train" -> train, anything else -> t10k). `limit` > 0 keeps only the first `limit` samples. */
mg_status mg_dataset_open_split(const char *root, const char *split, int64_t limit, mg_dataset *ds);
void mg_dataset_free(mg_dataset *ds);
/* Full path of sample i into buf. */
mg_status mg_dataset_path(const mg_dataset *ds, int64_t i, char *buf, size_t cap);
/* Decodes sample i (file or in-memory IDX image) to RGB. */
mg_status mg_dataset_decode(const mg_dataset *ds, int64_t i, const mg_decode_opts *o, mg_image *out);
/* Records that sample i is bad (logs path and reason once); fails when the count exceeds max_bad. */
mg_status mg_dataset_mark_bad(mg_dataset *ds, int64_t i, const char *reason);

/* ------------------------------------------------------------------------------------------ */
/* Repeated-augmentation sampler (recipe §2.4)                                                 */

typedef struct mg_sampler_cfg {
    int64_t n;              /* dataset size */
    int batch;              /* global batch size (all ranks together) */
    int reps;               /* m: copies of each index, consecutive (1 = plain shuffling) */
    double len_factor;      /* epoch = int(n * len_factor) emitted indices */
    bool shuffle;           /* false: identity order (still repeated) */
    bool drop_last;         /* drop the last partial batch */
    int rank, world;        /* data-parallel sharding: each global batch is split into `world`
                             * contiguous parts; this rank gets part `rank` */
    uint64_t seed;
} mg_sampler_cfg;

void mg_sampler_cfg_default(mg_sampler_cfg *c);
/* Number of global batches in an epoch. */
int64_t mg_sampler_num_batches(const mg_sampler_cfg *c);
/* The emitted stream position range [*begin, *end) of this rank's share of batch b. */
void mg_sampler_batch_range(const mg_sampler_cfg *c, int64_t b, int64_t *begin, int64_t *end);
/* Fills the whole epoch stream (int(n*len_factor) indices) for `epoch`. */
mg_status mg_sampler_epoch(const mg_sampler_cfg *c, uint64_t epoch, int64_t **stream, int64_t *len);

/* ------------------------------------------------------------------------------------------ */
/* Threaded loader                                                                             */

typedef struct mg_batch {
    int n;                /* samples in this batch (this rank's share) */
    int c, h, w;          /* 3 x size x size */
    float *images;        /* n*c*h*w */
    int32_t *labels;      /* n (-1 for unlabelled) */
    int64_t *instance;    /* n dataset indices actually used (copies of one image share it) */
    int64_t *position;    /* n stream positions (the augmentation key) */
    int64_t index;        /* batch number within the epoch */
} mg_batch;

typedef struct mg_loader mg_loader;

typedef struct mg_loader_cfg {
    int threads;          /* worker threads (>= 1) */
    int prefetch;         /* batches in flight / ring depth (>= 1) */
    mg_transform_cfg transform; /* must produce fixed-size outputs (no rect mode) */
    mg_sampler_cfg sampler;     /* n is taken from the dataset */
} mg_loader_cfg;

void mg_loader_cfg_default(mg_loader_cfg *c, bool train);
/* The dataset must outlive the loader. */
mg_status mg_loader_init(mg_loader **ld, mg_dataset *ds, const mg_loader_cfg *cfg);
/* Starts an epoch (stops any running one). */
mg_status mg_loader_start_epoch(mg_loader *ld, uint64_t epoch);
/* Next batch of the epoch; *batch points into the ring and stays valid until the next call.
 * Returns MG_OK with *batch = NULL at the end of the epoch. */
mg_status mg_loader_next(mg_loader *ld, const mg_batch **batch);
int64_t mg_loader_num_batches(const mg_loader *ld);
/* Total seconds mg_loader_next spent waiting for workers since init (0 = never the bottleneck). */
double mg_loader_wait_seconds(mg_loader *ld);
void mg_loader_free(mg_loader *ld);

#ifdef __cplusplus
}
#endif
#endif
