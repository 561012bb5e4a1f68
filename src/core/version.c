/* version.c: library version and the list of optional features compiled into this build. */
#include "multigrain/multigrain.h"

#if defined(MG_HAVE_ONEDNN) && MG_HAVE_ONEDNN
#define MG_F_ONEDNN "yes"
#else
#define MG_F_ONEDNN "no"
#endif
#if defined(MG_HAVE_MPI) && MG_HAVE_MPI
#define MG_F_MPI "yes"
#else
#define MG_F_MPI "no"
#endif
#if defined(MG_HAVE_CUDA) && MG_HAVE_CUDA
#define MG_F_CUDA "yes"
#else
#define MG_F_CUDA "no"
#endif

const char *mg_version(void) { return MG_VERSION_STRING; }

const char *mg_build_features(void) {
    return "oneDNN: " MG_F_ONEDNN "\nMPI: " MG_F_MPI "\nCUDA: " MG_F_CUDA "\n";
}
