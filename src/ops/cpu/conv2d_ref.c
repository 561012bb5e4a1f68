/* conv2d_ref.c: the reference 2-D convolution: plain loops that read like the definition, written
 * for clarity and used as the oracle's twin (tests compare the fast paths against it and it
 * against PyTorch). Every output element is a gather with a double accumulator (so backward_data
 * WRITES dx without a zeroing pass and the float version is as accurate as float storage allows);
 * the same source (conv2d_ref_impl.h) is instantiated for float and double (the double one drives the
 * finite-difference gradient test).
 *
 * Index map (PyTorch): y[n,k,oh,ow] = b[k] + sum_{c,r,s} x[n, g*Cg + c, ih, iw] * w[k, c, r, s]
 * with g = k / Kg, ih = oh*stride_h - pad_h + r*dil_h, iw = ow*stride_w - pad_w + s*dil_w, and
 * out-of-range (ih, iw) reading zero. */
#include "ops/cpu/conv2d_internal.h"

#define T float
#define MG_REF_NAME(op) mg_conv2d_ref_##op##_f32
#include "ops/cpu/conv2d_ref_impl.h"
#undef T
#undef MG_REF_NAME

#define T double
#define MG_REF_NAME(op) mg_conv2d_ref_##op##_f64
#include "ops/cpu/conv2d_ref_impl.h"
#undef T
#undef MG_REF_NAME
