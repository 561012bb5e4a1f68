/* fused.c: the fused inference network in builds without oneDNN: not available, so callers take
 * the per-op path (ops_fused.h). The oneDNN implementation is fused_dnnl.c. */
#include "multigrain/ops_fused.h"

#if !MG_HAVE_ONEDNN
#include <stddef.h>

bool mg_fnet_available(void) { return false; }

mg_status mg_fnet_init(mg_fnet **net, int n, int c, int h, int w) {
    (void)n, (void)c, (void)h, (void)w;
    *net = NULL;
    return MG_FAIL(MG_ERR_UNSUPPORTED, "fused network: this build has no oneDNN");
}
mg_status mg_fnet_init_like(mg_fnet **net, int n, int c, int h, int w, const mg_fnet *donor, int threads) {
    (void)donor, (void)threads;
    return mg_fnet_init(net, n, c, h, w);
}
void mg_fnet_free(mg_fnet *net) { (void)net; }
mg_status mg_fnet_add_conv_cb(mg_fnet *net, int in, int k, int r, int stride, int pad,
                              mg_status (*get_weights)(void *ctx, float *w, float *bias), void *ctx, int residual,
                              int flags, int *out) {
    (void)net, (void)in, (void)k, (void)r, (void)stride, (void)pad, (void)get_weights, (void)ctx, (void)residual,
        (void)flags, (void)out;
    return MG_FAIL(MG_ERR_UNSUPPORTED, "fused network: this build has no oneDNN");
}
mg_status mg_fnet_add_conv(mg_fnet *net, int in, int k, int r, int stride, int pad, const float *w,
                           const float *bias, int residual, int flags, int *out) {
    (void)net, (void)in, (void)k, (void)r, (void)stride, (void)pad, (void)w, (void)bias, (void)residual, (void)flags,
        (void)out;
    return MG_FAIL(MG_ERR_UNSUPPORTED, "fused network: this build has no oneDNN");
}
mg_status mg_fnet_add_maxpool(mg_fnet *net, int in, int r, int stride, int pad, int *out) {
    (void)net, (void)in, (void)r, (void)stride, (void)pad, (void)out;
    return MG_FAIL(MG_ERR_UNSUPPORTED, "fused network: this build has no oneDNN");
}
mg_status mg_fnet_finalize(mg_fnet *net, int output) {
    (void)net, (void)output;
    return MG_FAIL(MG_ERR_UNSUPPORTED, "fused network: this build has no oneDNN");
}
void mg_fnet_value_dims(const mg_fnet *net, int value, int dims[4]) {
    (void)net, (void)value;
    dims[0] = dims[1] = dims[2] = dims[3] = 0;
}
mg_status mg_fnet_run(mg_fnet *net, const float *x, float *y) {
    (void)net, (void)x, (void)y;
    return MG_FAIL(MG_ERR_UNSUPPORTED, "fused network: this build has no oneDNN");
}
int mg_fnet_output_block(const mg_fnet *net) {
    (void)net;
    return 0;
}
mg_status mg_fnet_run_raw(mg_fnet *net, const float *x, const float **y) {
    (void)net, (void)x, (void)y;
    return MG_FAIL(MG_ERR_UNSUPPORTED, "fused network: this build has no oneDNN");
}
size_t mg_fnet_bytes(const mg_fnet *net) {
    (void)net;
    return 0;
}
const char *mg_fnet_value_kernel(const mg_fnet *net, int value) {
    (void)net, (void)value;
    return NULL;
}
int mg_fnet_winograd_count(const mg_fnet *net) {
    (void)net;
    return 0;
}
int mg_fnet_per_image_count(const mg_fnet *net) {
    (void)net;
    return 0;
}
#endif
