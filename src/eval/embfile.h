/* embfile.h: loading and validating 2-D float32 embedding .npy files for the eval commands. */
#ifndef MG_EVAL_EMBFILE_H
#define MG_EVAL_EMBFILE_H

#include "multigrain/npy.h"
#include "multigrain/status.h"

/* Reads `path` and checks it is a finite float32 [N >= 1, D >= 1] array. `what` names the source in
 * errors (e.g. "--index"). Errors are MG_ERR_FORMAT / MG_ERR_IO naming `what` and the path. */
mg_status mg_embfile_load(const char *what, const char *path, mg_npy *out);

#endif
