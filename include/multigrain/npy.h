/* npy.h: NumPy .npy files (format 1.0/2.0/3.0, C order, little-endian) for embeddings and test
 * references. Reading validates the header (magic, dtype, shape, file size) and converts to the
 * requested element type only where that is exact (float32 from float32, float64 from either). */
#ifndef MULTIGRAIN_NPY_H
#define MULTIGRAIN_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MG_NPY_MAX_DIMS 8

typedef enum mg_dtype {
    MG_DTYPE_F32 = 0,
    MG_DTYPE_F64,
    MG_DTYPE_I32,
    MG_DTYPE_I64,
    MG_DTYPE_U8,
    MG_DTYPE_BOOL,
    MG_DTYPE_COUNT
} mg_dtype;

size_t mg_dtype_size(mg_dtype t);
/* NumPy descr string ("<f4", ...). */
const char *mg_dtype_descr(mg_dtype t);

typedef struct mg_npy {
    mg_dtype dtype;
    int ndim;
    int64_t shape[MG_NPY_MAX_DIMS];
    int64_t count; /* number of elements */
    void *data;    /* malloc'd, count * dtype size bytes */
} mg_npy;

/* Reads any supported .npy file. */
mg_status mg_npy_read(const char *path, mg_npy *out);
/* Reads and checks the dtype; float64 files are refused when float32 is asked (no silent rounding). */
mg_status mg_npy_read_as(const char *path, mg_dtype want, mg_npy *out);
void mg_npy_free(mg_npy *a);

/* Writes an array atomically. */
mg_status mg_npy_write(const char *path, mg_dtype dtype, int ndim, const int64_t *shape, const void *data);

/* Streaming writer for 2-D float32 arrays whose row count is known up front (embeddings):
 * rows are appended in order; commit checks the count and renames the file into place. */
typedef struct mg_npy_writer mg_npy_writer;
mg_status mg_npy_writer_open(mg_npy_writer **w, const char *path, int64_t rows, int64_t cols);
mg_status mg_npy_writer_append(mg_npy_writer *w, const float *rows, int64_t n_rows);
mg_status mg_npy_writer_commit(mg_npy_writer *w);
void mg_npy_writer_abort(mg_npy_writer *w);

#ifdef __cplusplus
}
#endif
#endif
