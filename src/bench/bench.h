/* bench.h: measurement routines shared by `multigrain bench` (src/cli/cmd_bench.c) and the bench/
 * programs: the CPU's FP32 FMA peak, the speed of an sgemm and a convolution, the multiply-adds of a
 * network's forward pass, one timed inference forward or training step on random images, and the
 * training loader's throughput.
 * The module sits above src/train, src/nn and src/data (it drives them) and below src/cli. */
#ifndef MG_BENCH_BENCH_H
#define MG_BENCH_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "multigrain/data.h"
#include "multigrain/model.h"
#include "multigrain/ops.h"
#include "multigrain/status.h"

/* ---- FMA peak (fma_peak.c) -------------------------------------------------------------------- */

/* Total FP32 GFLOP/s of `threads` threads (1..1024) each running a register-only loop of 12
 * independent FMA chains (multigrain/cpu.h's mg_cpu_fma_chains) at the CPU's faster width
 * (mg_cpu_fma_width: 16 floats where AVX-512 FMAs run clearly faster than AVX2 ones, else 8) at the
 * same time, each timed in its own thread CPU time (so a neighbour process does not lower it): the
 * best of 3 runs after a warm-up, summed over the threads. seconds <= 0: runs of a fixed 5M
 * 8-wide iterations or the same FLOPs 16-wide (bench_ops' setting, ~10 ms each); seconds > 0: the
 * run length is calibrated so that warm-up and runs take about `seconds`. MG_ERR_UNSUPPORTED on a
 * CPU without AVX2/FMA. */
mg_status mg_bench_measure_fma_peak(int threads, double seconds, double *gflops);

/* ---- single ops (op_timing.c) ----------------------------------------------------------------- */

typedef struct mg_bench_op_result {
    double gflops;    /* 2 x multiply-adds / best time */
    int runs;         /* timed calls */
    const char *impl; /* "openblas", or the convolution plan's mg_conv2d_plan_impl_name (constant) */
} mg_bench_op_result;

/* C[n,n] = A[n,n] B[n,n] with OpenBLAS's cblas_sgemm on `threads` threads (OpenBLAS's own count is
 * restored afterwards): one untimed call, then calls until `seconds` have passed (at least 3);
 * GFLOP/s of the best. */
mg_status mg_bench_time_sgemm(int n, int threads, double seconds, mg_bench_op_result *r);
/* The same for mg_conv2d_forward of a plan for `d` (no bias; the ops' thread count and
 * implementation, mg_ops_set_threads / mg_ops_set_impl). */
mg_status mg_bench_time_conv2d(const mg_conv2d_desc *d, double seconds, mg_bench_op_result *r);

/* ---- forward multiply-adds (forward_macs.c) --------------------------------------------------- */

/* Multiply-adds of one image's forward pass through the convolutions and fully connected layers
 * of `m` (stem, every block's convolutions and downsample, SE layers, whitening, classifier) at an
 * input of h x w, computed from the model's weight shapes and the torchvision ResNet strides.
 * Batch norm, ReLU, pooling and the loss are not counted. FLOPs = 2 x MACs; a training step is
 * counted as 3 x forward. */
mg_status mg_bench_count_forward_macs(const mg_model *m, int h, int w, int64_t *macs);

/* ---- timed model iterations (model_timing.c) -------------------------------------------------- */

typedef struct mg_bench_model_cfg {
    const char *arch;  /* resnet18 ... se_resnet50 */
    int batch, size;   /* images per iteration (train: >= 2), square input side (>= 16) */
    bool train;        /* false: mg_model_forward in MG_MODE_INFER; true: one mg_trainer_step */
    int num_classes;   /* classifier width */
    double lambda;     /* train: classification weight λ of the joint loss */
    int m;             /* train: repeated augmentations (copies of one instance id per batch) */
} mg_bench_model_cfg;

/* bench_infer's settings (1000 classes) or bench_train_step's (10 classes, λ 0.5, m 3). */
void mg_bench_model_cfg_default(mg_bench_model_cfg *c, bool train);

typedef struct mg_bench_model mg_bench_model;

/* Builds the network (torchvision initialisation, seed 1, GeM p = 3), the trainer for train mode,
 * and one batch of N(0, 1) random images (labels and instance ids as bench_train_step: id = i / m,
 * label = id % num_classes). Nothing runs yet: the first mg_bench_model_run plans the shapes and
 * allocates, so callers run it once untimed. */
mg_status mg_bench_model_init(mg_bench_model **b, const mg_bench_model_cfg *c);
/* One iteration (an inference forward, or forward + joint loss + backward + SGD) and its wall time. */
mg_status mg_bench_model_run(mg_bench_model *b, double *seconds);
/* The network (for its memory figures and multiply-adds). */
const mg_model *mg_bench_model_network(const mg_bench_model *b);
/* A value of the last iteration that depends on all of it: the first embedding value (infer) or
 * the loss (train). */
double mg_bench_model_last_value(const mg_bench_model *b);
/* Median, minimum and maximum of n > 0 values (sorts them in place). */
void mg_bench_summarize(double *t, int n, double *median, double *min, double *max);
void mg_bench_model_free(mg_bench_model *b);

/* ---- loader throughput (loader_timing.c) ------------------------------------------------------ */

typedef struct mg_bench_loader_result {
    int64_t images, batches;
    double wall_s;  /* elapsed time from the start of the epoch to the last batch */
    double cpu_s;   /* process CPU time over the same span (workers included) */
    double wait_s;  /* time the consumer waited for the workers */
} mg_bench_loader_result;

/* Pulls batches from a loader over `ds` with configuration `cfg` (its sampler's epoch lengthened
 * so that one epoch holds max_batches batches when needed) until max_batches batches (> 0) or
 * max_seconds (> 0) have passed, whichever comes first (at least one of them must be set). The
 * worker threads are created before the clock starts; the epoch starts with it, so the batches the
 * workers prefetch are part of the measured time. */
mg_status mg_bench_time_loader(mg_dataset *ds, const mg_loader_cfg *cfg, int64_t max_batches, double max_seconds,
                               mg_bench_loader_result *r);

#endif
