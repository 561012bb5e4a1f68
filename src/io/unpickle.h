/* unpickle.h: a restricted Python unpickler for PyTorch state dicts. It implements only the
 * opcodes that torch.save emits for tensors and plain containers, resolves globals against a
 * fixed allowlist (collections.OrderedDict, torch._utils._rebuild_tensor[_v2],
 * torch._utils._rebuild_parameter, torch.<T>Storage) and refuses every other global with an
 * error naming it. Nothing is ever executed: REDUCE of an allowed callable builds a plain
 * object (dict, tensor reference) here. Every read is bounds-checked.
 *
 * A lenient mode (mg_pyheap.allow_foreign) turns refused globals into inert placeholders instead.
 *
 * Objects live in an mg_pyheap and are freed together (memo references may share them). */
#ifndef MG_IO_UNPICKLE_H
#define MG_IO_UNPICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "multigrain/npy.h"
#include "multigrain/status.h"

typedef enum mg_py_kind {
    MG_PY_NONE = 0,
    MG_PY_BOOL,
    MG_PY_INT,
    MG_PY_BIGINT, /* integer wider than 64 bits: `s`/`len` hold little-endian two's complement bytes */
    MG_PY_FLOAT,
    MG_PY_STR,
    MG_PY_BYTES,
    MG_PY_TUPLE,
    MG_PY_LIST,
    MG_PY_DICT,   /* items[2i] = key, items[2i+1] = value, in insertion order */
    MG_PY_GLOBAL, /* an allowed global: `global` says which */
    MG_PY_STORAGE,
    MG_PY_TENSOR,
    MG_PY_FOREIGN /* lenient mode only: an object of a refused global, never built; `s` = "module.name" */
} mg_py_kind;

typedef enum mg_py_global {
    MG_PYG_ORDERED_DICT = 0,
    MG_PYG_REBUILD_TENSOR_V2,
    MG_PYG_REBUILD_TENSOR,
    MG_PYG_REBUILD_PARAMETER,
    MG_PYG_STORAGE_TYPE /* torch.<T>Storage: `stype` says which */
} mg_py_global;

/* Element types of torch storages. */
typedef enum mg_torch_stype {
    MG_TS_FLOAT = 0, MG_TS_DOUBLE, MG_TS_HALF, MG_TS_BFLOAT16, MG_TS_LONG, MG_TS_INT, MG_TS_BYTE, MG_TS_BOOL,
    MG_TS_COUNT
} mg_torch_stype;

const char *mg_torch_stype_name(mg_torch_stype t); /* "FloatStorage" */
size_t mg_torch_stype_size(mg_torch_stype t);

#define MG_PY_MAX_DIMS 8

typedef struct mg_pyobj {
    mg_py_kind kind;
    int64_t i;   /* BOOL, INT */
    double f;    /* FLOAT */
    char *s;     /* STR (NUL-terminated), BYTES, BIGINT */
    size_t len;
    struct mg_pyobj **items; /* TUPLE, LIST, DICT */
    size_t n, cap;           /* DICT: n counts key and value slots */
    mg_py_global global;     /* GLOBAL */
    mg_torch_stype stype;    /* GLOBAL storage type, STORAGE, TENSOR (source type) */
    /* STORAGE: key of the serialized storage, declared element count, and the bytes once loaded */
    char *key;
    int64_t numel;
    int64_t view_offset; /* legacy storage views: element offset into the root storage */
    const uint8_t *sdata; /* loaded bytes (owned by the file reader), numel elements */
    int64_t snumel;
    /* TENSOR */
    struct mg_pyobj *storage;
    int64_t offset;
    int ndim;
    int64_t size[MG_PY_MAX_DIMS], stride[MG_PY_MAX_DIMS];
    mg_dtype dtype;  /* materialized: float16/bfloat16 become float32 */
    void *data;      /* materialized contiguous copy (malloc'd, freed with the heap) */
    int64_t count;
} mg_pyobj;

typedef struct mg_pyheap {
    mg_pyobj **objs;
    size_t n, cap;
    /* 0 (default): a global outside the allowlist is an error. 1: it becomes an inert MG_PY_FOREIGN
     * placeholder (calls on it give placeholders, its state and items are dropped); still nothing
     * is executed. For checkpoints whose extras (optimizer objects) pickle foreign classes. */
    int allow_foreign;
    size_t n_foreign;
    char first_foreign[128];
} mg_pyheap;

void mg_pyheap_init(mg_pyheap *h);
void mg_pyheap_free(mg_pyheap *h);
mg_pyobj *mg_pyheap_new(mg_pyheap *h, mg_py_kind kind);

/* Called for BINPERSID with the persistent id object; returns the object to push. */
typedef mg_status (*mg_persistent_load_fn)(void *ctx, mg_pyheap *h, const char *what, mg_pyobj *pid,
                                           mg_pyobj **out);

/* Unpickles one pickle from buf[0..len); *consumed = bytes up to and including STOP.
 * `what` names the source in errors ("x.pth: archive/data.pkl"). */
mg_status mg_unpickle(mg_pyheap *h, const char *what, const uint8_t *buf, size_t len, mg_persistent_load_fn pl,
                      void *ctx, mg_pyobj **out, size_t *consumed);

/* The value of the last string key `key` in a dict, or NULL. */
mg_pyobj *mg_py_dict_get(const mg_pyobj *d, const char *key);
const char *mg_py_kind_name(mg_py_kind k);

#endif
