/* safetensors.h: reading and writing safetensors files (https://github.com/huggingface/safetensors):
 * an 8-byte little-endian header length N, N bytes of JSON header
 * {"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
 * padded with spaces to a multiple of 8 bytes, then the tensor bytes (little-endian, C order).
 *
 * The reader maps the file and validates everything before returning: header length vs file
 * size, JSON, dtypes, shape x dtype size == offset span, offsets inside the data section, tensors
 * non-overlapping and covering the data section, unique names. Errors name the file and tensor.
 * Supported dtypes: F32 F64 I32 I64 U8 BOOL (the mg_dtype set). */
#ifndef MULTIGRAIN_SAFETENSORS_H
#define MULTIGRAIN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "multigrain/npy.h"
#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MG_ST_MAX_DIMS 8
/* Largest header accepted by the reader (the reference implementation uses the same bound). */
#define MG_ST_MAX_HEADER (100u * 1024u * 1024u)

/* "F32" <-> MG_DTYPE_F32 ... ; returns NULL / -1 when unknown. */
const char *mg_st_dtype_name(mg_dtype t);
int mg_st_dtype_from_name(const char *name);

typedef struct mg_st_tensor {
    char *name;
    mg_dtype dtype;
    int ndim;
    int64_t shape[MG_ST_MAX_DIMS];
    int64_t count;      /* elements (1 for 0-d) */
    size_t nbytes;      /* count * dtype size */
    size_t begin, end;  /* data_offsets, relative to the data section */
    const void *data;   /* into the mapping; not necessarily aligned for the dtype */
    int fd1;            /* private, for mg_st_tensor_copy: the open file's descriptor + 1 (0: none), */
    uint64_t file_offset; /* the data's offset in that file, */
    const void *file_data; /* and `data` as opened (a copy whose `data` was changed reads that) */
} mg_st_tensor;

typedef struct mg_safetensors {
    char *path;
    void *map;          /* whole file (mmap, or malloc'd for empty files) */
    size_t map_size;
    int mapped;
    int fd1;             /* the file, kept open for mg_st_tensor_copy's reads: descriptor + 1 (0: none) */
    const uint8_t *data; /* data section */
    size_t data_size;
    int n;               /* tensors, in header order */
    mg_st_tensor *tensors;
    int n_meta;          /* __metadata__ entries, in header order */
    char **meta_keys;
    char **meta_values;
} mg_safetensors;

/* Opens and validates a file; the tensors stay valid until close. */
mg_status mg_safetensors_open(mg_safetensors *st, const char *path);
void mg_safetensors_close(mg_safetensors *st);

/* Tensor by name, or NULL. */
const mg_st_tensor *mg_safetensors_find(const mg_safetensors *st, const char *name);
/* Metadata value by key, or NULL. */
const char *mg_safetensors_meta(const mg_safetensors *st, const char *key);
/* Copies a tensor's bytes into `dst` (which must hold t->nbytes); for unaligned mappings. Reads them
 * from the file (pread) when it was opened from one, which leaves the mapping's pages untouched: on our
 * PVM guest a 100 MB checkpoint then took 149-192 ms to read instead of 204-268 (docs/PERFORMANCE.md,
 * "Start-up"); from the mapping otherwise, or when a read fails. */
void mg_st_tensor_copy(const mg_st_tensor *t, void *dst);

/* Writer: collects tensors (data borrowed until write) and metadata, then writes the file
 * atomically (temporary file + rename). Tensors are written in the order they were added. */
typedef struct mg_st_writer_item {
    char *name;
    mg_dtype dtype;
    int ndim;
    int64_t shape[MG_ST_MAX_DIMS];
    size_t nbytes;
    const void *data;
} mg_st_writer_item;

typedef struct mg_st_writer {
    int n, cap;
    mg_st_writer_item *items;
    int n_meta, meta_cap;
    char **meta_keys;
    char **meta_values;
} mg_st_writer;

void mg_st_writer_init(mg_st_writer *w);
void mg_st_writer_free(mg_st_writer *w);
/* Adds a tensor (`data` must stay valid until mg_st_writer_write); names must be unique. */
mg_status mg_st_writer_add(mg_st_writer *w, const char *name, mg_dtype dtype, int ndim,
                           const int64_t *shape, const void *data);
/* Sets (or replaces) a metadata string. */
mg_status mg_st_writer_set_meta(mg_st_writer *w, const char *key, const char *value);
mg_status mg_st_writer_write(const mg_st_writer *w, const char *path);

#ifdef __cplusplus
}
#endif
#endif
