/* resnet_spec.h: the parameter table of the ResNet family (torchvision layout, v1.5) with a GeM
 * head: every state_dict entry in PyTorch's order, name and shape, plus the GeM exponent `pool.p`.
 *
 * Order: torchvision's ResNet.state_dict() order (conv1, bn1, layer1..layer4, fc) with `pool.p`
 * (0-d float32) inserted just before `fc.weight`, as in a MultiGrain model (features, pool,
 * classifier). se_resnet50 is torchvision's resnet50 with a squeeze-excitation module `se`
 * appended to every Bottleneck (registered last in the block, i.e. after `downsample`):
 *   layerX.Y.se.fc1.weight [C/16, C, 1, 1], layerX.Y.se.fc1.bias [C/16],
 *   layerX.Y.se.fc2.weight [C, C/16, 1, 1], layerX.Y.se.fc2.bias [C]   (C = planes * 4)
 * applied as x * sigmoid(fc2(relu(fc1(avgpool(bn3(conv3(.))))))) before the residual sum
 * (Hu et al., reduction 16). */
#ifndef MG_NN_RESNET_SPEC_H
#define MG_NN_RESNET_SPEC_H

#include <stdint.h>

#include "multigrain/status.h"

typedef enum mg_arch {
    MG_ARCH_RESNET18 = 0,
    MG_ARCH_RESNET34,
    MG_ARCH_RESNET50,
    MG_ARCH_RESNET101,
    MG_ARCH_RESNET152,
    MG_ARCH_SE_RESNET50,
    MG_ARCH_COUNT
} mg_arch;

typedef enum mg_param_kind {
    MG_PARAM_TRAINABLE = 0, /* conv/bn/fc weight or bias, pool.p: float32, learned */
    MG_PARAM_BN_BUFFER,     /* bn running_mean / running_var: float32, not learned */
    MG_PARAM_BN_COUNTER     /* bn num_batches_tracked: 0-d int64 */
} mg_param_kind;

#define MG_SPEC_NAME_MAX 64
#define MG_SPEC_MAX_DIMS 4

typedef struct mg_spec_entry {
    char name[MG_SPEC_NAME_MAX];
    int ndim; /* 0 for scalars (pool.p, num_batches_tracked) */
    int64_t shape[MG_SPEC_MAX_DIMS];
    int64_t count; /* number of elements (1 for 0-d) */
    mg_param_kind kind;
} mg_spec_entry;

typedef struct mg_resnet_spec {
    mg_arch arch;
    int num_classes;
    int feature_dim;  /* channels entering the GeM pool: 512 (basic blocks) or 2048 (bottleneck) */
    int n;            /* number of entries */
    mg_spec_entry *entries;
    int64_t n_trainable; /* elements in MG_PARAM_TRAINABLE entries (incl. pool.p) */
    int64_t n_buffers;   /* elements in running_mean/var */
    int64_t n_counters;  /* num_batches_tracked entries */
} mg_resnet_spec;

/* "resnet50" -> MG_ARCH_RESNET50; error names the accepted list. `what` names the source. */
mg_status mg_arch_from_name(const char *name, const char *what, mg_arch *out);
const char *mg_arch_name(mg_arch arch);

/* Builds the table for `arch` with a `num_classes`-way classifier (1..1000000). */
mg_status mg_resnet_spec_init(mg_resnet_spec *s, mg_arch arch, int num_classes);
void mg_resnet_spec_free(mg_resnet_spec *s);

/* Index of the entry called `name`, or -1. */
int mg_resnet_spec_find(const mg_resnet_spec *s, const char *name);

/* Formats a shape as "[10, 4]" ("[]" for 0-d) into buf; returns buf. */
char *mg_shape_format(int ndim, const int64_t *shape, char *buf, size_t n);

#endif
