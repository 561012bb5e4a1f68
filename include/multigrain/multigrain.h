/* multigrain.h: the umbrella public header of libmultigrain (version and the public modules). */
#ifndef MULTIGRAIN_MULTIGRAIN_H
#define MULTIGRAIN_MULTIGRAIN_H

#include "multigrain/status.h"

#define MG_VERSION_MAJOR 0
#define MG_VERSION_MINOR 1
#define MG_VERSION_PATCH 0
#define MG_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the library actually linked ("0.1.0"). */
const char *mg_version(void);
/* One line per optional feature compiled in, e.g. "oneDNN: yes\nMPI: no\n...". */
const char *mg_build_features(void);

#ifdef __cplusplus
}
#endif
#endif
