/* forward_macs.c: multiply-adds of one image's forward pass, from the model's weight shapes (its
 * state_dict walked in order) and the torchvision ResNet strides (see bench.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"

/* Output side of a convolution or pooling with kernel k, stride s and padding k / 2. */
static int macs_out_side(int in, int k, int s) { return (in + 2 * (k / 2) - k) / s + 1; }

mg_status mg_bench_count_forward_macs(const mg_model *m, int h, int w, int64_t *macs) {
    if (!m || h < 1 || w < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "forward MACs: expected a model and an input of at least 1x1, found %dx%d",
                       h, w);
    int64_t total = 0;
    int cur_layer = -1, cur_block = -1, in_h = h, in_w = w, stride = 1, stride_taken = 0;
    const int n = mg_model_tensor_count(m);
    for (int i = 0; i < n; i++) {
        int kind, ndim;
        int64_t shape[4], count;
        const char *name = mg_model_tensor_info(m, i, &kind, &ndim, shape, &count);
        if (!strcmp(name, "fc.weight") || !strcmp(name, "whiten.P")) {
            total += shape[0] * shape[1];
            continue;
        }
        if (ndim != 4 || kind != 0) continue;
        const int64_t per_pixel = shape[0] * shape[1] * shape[2] * shape[3]; /* K x C/groups x R x S */
        const int k = (int)shape[2];
        if (!strcmp(name, "conv1.weight")) { /* stem: 7x7 stride 2, then the 3x3 stride-2 max pool */
            h = macs_out_side(h, k, 2), w = macs_out_side(w, k, 2);
            total += per_pixel * h * w;
            h = macs_out_side(h, 3, 2), w = macs_out_side(w, 3, 2);
            continue;
        }
        int layer, block, used = 0;
        if (sscanf(name, "layer%d.%d.%n", &layer, &block, &used) != 2 || used == 0)
            return MG_FAIL(MG_ERR_INTERNAL, "forward MACs: unexpected weight '%s' in %s", name, mg_model_arch(m));
        const char *rest = name + used;
        if (layer != cur_layer || block != cur_block) {
            /* a new block: the first block of layer2..4 halves the resolution */
            cur_layer = layer, cur_block = block;
            in_h = h, in_w = w;
            stride = layer > 1 && block == 0 ? 2 : 1;
            stride_taken = 0;
        }
        if (!strncmp(rest, "downsample.", 11)) { /* 1x1 on the block's input, with the block's stride */
            total += per_pixel * macs_out_side(in_h, k, stride) * macs_out_side(in_w, k, stride);
        } else if (!strncmp(rest, "se.", 3)) { /* squeeze-excitation: 1x1 on the pooled vector */
            total += per_pixel;
        } else {
            /* main path: the first convolution with a kernel > 1 carries the stride (conv1 of a basic
             * block, conv2 of a bottleneck: torchvision v1.5) */
            int s = 1;
            if (k > 1 && !stride_taken) s = stride, stride_taken = 1;
            h = macs_out_side(h, k, s), w = macs_out_side(w, k, s);
            total += per_pixel * h * w;
        }
    }
    *macs = total;
    return MG_OK;
}
