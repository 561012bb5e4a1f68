/* pth.h: reads PyTorch checkpoint files (torch.save) without Python: the zip format of
 * torch >= 1.6 (<name>/data.pkl + <name>/data/<key> storages, via libzip) and the legacy format
 * of torch < 1.6 (magic number, protocol version, sys_info, main pickle, storage keys, raw
 * storages). Pickles go through the restricted unpickler (io/unpickle.h): nothing is executed.
 * Every tensor is materialized as a contiguous little-endian copy (storage offset and strides
 * applied; float16/bfloat16 widened to float32 exactly). */
#ifndef MG_IO_PTH_H
#define MG_IO_PTH_H

#include "io/unpickle.h"
#include "multigrain/status.h"

typedef struct mg_pth {
    char *path;
    int legacy;         /* 1: legacy format, 0: zip */
    mg_pyheap heap;     /* every object, tensors included */
    mg_pyobj *root;     /* the unpickled top-level object */
    void *file;         /* legacy: the whole file */
    uint8_t **blobs;    /* zip: storage bytes read from the archive */
    size_t n_blobs;
} mg_pth;

mg_status mg_pth_open(mg_pth *p, const char *path);
/* allow_foreign = 1: objects of globals outside the allowlist become inert placeholders
 * (MG_PY_FOREIGN) instead of an error; p->heap.n_foreign / first_foreign say what was skipped. */
mg_status mg_pth_open_ex(mg_pth *p, const char *path, int allow_foreign);
void mg_pth_close(mg_pth *p);

#endif
