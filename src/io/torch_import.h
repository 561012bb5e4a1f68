/* torch_import.h: turns a PyTorch checkpoint (.pth, zip or legacy) holding a torchvision ResNet
 * state dict, a MultiGrain `{'model_state': ...}` dict or a `{'state_dict': ...}` dict (optionally
 * with DataParallel `module.` prefixes) into a multigrain checkpoint. Key mapping: `module.`
 * stripped; `features.X` -> `X`; `classifier.X` -> `fc.X`; `pool.p` kept;
 * `whitening.pca.pca_m` -> `whiten.mean`, `whitening.pca.pca_P` -> `whiten.P`. */
#ifndef MG_IO_TORCH_IMPORT_H
#define MG_IO_TORCH_IMPORT_H

#include "multigrain/status.h"

typedef struct mg_import_opts {
    const char *arch; /* NULL: inferred from the keys and shapes */
    int num_classes;  /* 0: from fc.weight; otherwise must agree with it */
    double p;         /* > 0: GeM exponent to store; else pool.p from the file, else 1 (average pooling) */
    int allow_foreign; /* 1: objects of non-allowlisted classes outside the state dict (e.g. a pickled
                          optimizer) are skipped as inert placeholders instead of refusing the file */
} mg_import_opts;

typedef struct mg_import_report {
    char arch[32];
    int num_classes;
    double p;
    int whitened;
    const char *layout; /* "torchvision", "multigrain" or "state_dict" */
    int n_written;      /* tensors written */
    int n_unexpected;   /* keys in the file that were not written */
    int n_filled;       /* num_batches_tracked / pool.p entries missing from the file and filled in */
    int n_foreign;      /* objects of non-allowlisted classes skipped (allow_foreign only) */
} mg_import_report;

mg_status mg_import_pth(const char *src, const char *dst, const mg_import_opts *opts, mg_import_report *rep);

#endif
