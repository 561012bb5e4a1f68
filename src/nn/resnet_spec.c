/* resnet_spec.c: builds the ordered state_dict table of a torchvision-layout ResNet + GeM head
 * (see resnet_spec.h). */
#include "nn/resnet_spec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *g_arch_names[MG_ARCH_COUNT] = {"resnet18",  "resnet34",  "resnet50",
                                                   "resnet101", "resnet152", "se_resnet50"};

const char *mg_arch_name(mg_arch arch) {
    return (arch >= 0 && arch < MG_ARCH_COUNT) ? g_arch_names[arch] : "?";
}

mg_status mg_arch_from_name(const char *name, const char *what, mg_arch *out) {
    for (int i = 0; i < MG_ARCH_COUNT; i++)
        if (name && !strcmp(name, g_arch_names[i])) {
            *out = (mg_arch)i;
            return MG_OK;
        }
    return MG_FAIL(MG_ERR_INVALID_ARG,
                   "%s: unknown architecture '%s': expected resnet18, resnet34, resnet50, resnet101, "
                   "resnet152 or se_resnet50",
                   what ? what : "arch", name ? name : "(null)");
}

char *mg_shape_format(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t used = 0;
    if (n == 0) return buf;
    buf[0] = 0;
    used += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

typedef struct builder {
    mg_resnet_spec *s;
    int cap;
} builder;

static mg_status add(builder *b, mg_param_kind kind, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static mg_status add(builder *b, mg_param_kind kind, int ndim, const int64_t *shape, const char *fmt, ...) {
    mg_resnet_spec *s = b->s;
    if (s->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 256;
        mg_spec_entry *e = realloc(s->entries, (size_t)cap * sizeof *e);
        if (!e) return MG_FAIL(MG_ERR_NOMEM, "resnet spec: out of memory for %d entries", cap);
        s->entries = e;
        b->cap = cap;
    }
    mg_spec_entry *e = &s->entries[s->n++];
    memset(e, 0, sizeof *e);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    e->ndim = ndim;
    e->count = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        e->count *= shape[i];
    }
    e->kind = kind;
    if (kind == MG_PARAM_TRAINABLE) s->n_trainable += e->count;
    else if (kind == MG_PARAM_BN_BUFFER) s->n_buffers += e->count;
    else s->n_counters++;
    return MG_OK;
}

static mg_status add_conv(builder *b, const char *prefix, int64_t out, int64_t in, int64_t k) {
    int64_t sh[4] = {out, in, k, k};
    return add(b, MG_PARAM_TRAINABLE, 4, sh, "%sweight", prefix);
}

static mg_status add_bn(builder *b, const char *prefix, int64_t c) {
    MG_TRY(add(b, MG_PARAM_TRAINABLE, 1, &c, "%sweight", prefix));
    MG_TRY(add(b, MG_PARAM_TRAINABLE, 1, &c, "%sbias", prefix));
    MG_TRY(add(b, MG_PARAM_BN_BUFFER, 1, &c, "%srunning_mean", prefix));
    MG_TRY(add(b, MG_PARAM_BN_BUFFER, 1, &c, "%srunning_var", prefix));
    return add(b, MG_PARAM_BN_COUNTER, 0, NULL, "%snum_batches_tracked", prefix);
}

static mg_status build(builder *b, mg_arch arch, int num_classes) {
    static const int blocks[MG_ARCH_COUNT][4] = {{2, 2, 2, 2}, {3, 4, 6, 3},  {3, 4, 6, 3},
                                                 {3, 4, 23, 3}, {3, 8, 36, 3}, {3, 4, 6, 3}};
    const int bottleneck = arch >= MG_ARCH_RESNET50;
    const int se = arch == MG_ARCH_SE_RESNET50;
    const int64_t expansion = bottleneck ? 4 : 1;
    char p[MG_SPEC_NAME_MAX];
    MG_TRY(add_conv(b, "conv1.", 64, 3, 7));
    MG_TRY(add_bn(b, "bn1.", 64));
    int64_t inplanes = 64;
    for (int layer = 0; layer < 4; layer++) {
        int64_t planes = 64 << layer;
        int stride = layer == 0 ? 1 : 2;
        for (int blk = 0; blk < blocks[arch][layer]; blk++) {
            int s = blk == 0 ? stride : 1;
            int64_t out = planes * expansion;
#define PFX(...) snprintf(p, sizeof p, __VA_ARGS__)
            if (bottleneck) {
                PFX("layer%d.%d.conv1.", layer + 1, blk); MG_TRY(add_conv(b, p, planes, inplanes, 1));
                PFX("layer%d.%d.bn1.", layer + 1, blk); MG_TRY(add_bn(b, p, planes));
                PFX("layer%d.%d.conv2.", layer + 1, blk); MG_TRY(add_conv(b, p, planes, planes, 3));
                PFX("layer%d.%d.bn2.", layer + 1, blk); MG_TRY(add_bn(b, p, planes));
                PFX("layer%d.%d.conv3.", layer + 1, blk); MG_TRY(add_conv(b, p, out, planes, 1));
                PFX("layer%d.%d.bn3.", layer + 1, blk); MG_TRY(add_bn(b, p, out));
            } else {
                PFX("layer%d.%d.conv1.", layer + 1, blk); MG_TRY(add_conv(b, p, planes, inplanes, 3));
                PFX("layer%d.%d.bn1.", layer + 1, blk); MG_TRY(add_bn(b, p, planes));
                PFX("layer%d.%d.conv2.", layer + 1, blk); MG_TRY(add_conv(b, p, planes, planes, 3));
                PFX("layer%d.%d.bn2.", layer + 1, blk); MG_TRY(add_bn(b, p, planes));
            }
            if (blk == 0 && (s != 1 || inplanes != out)) {
                PFX("layer%d.%d.downsample.0.", layer + 1, blk); MG_TRY(add_conv(b, p, out, inplanes, 1));
                PFX("layer%d.%d.downsample.1.", layer + 1, blk); MG_TRY(add_bn(b, p, out));
            }
            if (se) {
                int64_t r = out / 16;
                int64_t w1[4] = {r, out, 1, 1}, w2[4] = {out, r, 1, 1};
                MG_TRY(add(b, MG_PARAM_TRAINABLE, 4, w1, "layer%d.%d.se.fc1.weight", layer + 1, blk));
                MG_TRY(add(b, MG_PARAM_TRAINABLE, 1, &r, "layer%d.%d.se.fc1.bias", layer + 1, blk));
                MG_TRY(add(b, MG_PARAM_TRAINABLE, 4, w2, "layer%d.%d.se.fc2.weight", layer + 1, blk));
                MG_TRY(add(b, MG_PARAM_TRAINABLE, 1, &out, "layer%d.%d.se.fc2.bias", layer + 1, blk));
            }
#undef PFX
            inplanes = out;
        }
    }
    b->s->feature_dim = (int)inplanes;
    MG_TRY(add(b, MG_PARAM_TRAINABLE, 0, NULL, "pool.p"));
    int64_t fw[2] = {num_classes, inplanes}, fb = num_classes;
    MG_TRY(add(b, MG_PARAM_TRAINABLE, 2, fw, "fc.weight"));
    return add(b, MG_PARAM_TRAINABLE, 1, &fb, "fc.bias");
}

mg_status mg_resnet_spec_init(mg_resnet_spec *s, mg_arch arch, int num_classes) {
    memset(s, 0, sizeof *s);
    if (arch < 0 || arch >= MG_ARCH_COUNT)
        return MG_FAIL(MG_ERR_INVALID_ARG, "resnet spec: unknown architecture id %d", (int)arch);
    if (num_classes < 1 || num_classes > 1000000)
        return MG_FAIL(MG_ERR_INVALID_ARG, "resnet spec: num_classes must be in [1, 1000000], found %d",
                       num_classes);
    s->arch = arch;
    s->num_classes = num_classes;
    builder b = {s, 0};
    mg_status st = build(&b, arch, num_classes);
    if (st != MG_OK) mg_resnet_spec_free(s);
    return st;
}

void mg_resnet_spec_free(mg_resnet_spec *s) {
    if (!s) return;
    free(s->entries);
    memset(s, 0, sizeof *s);
}

int mg_resnet_spec_find(const mg_resnet_spec *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->entries[i].name, name)) return i;
    return -1;
}
