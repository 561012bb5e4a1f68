/* model.h: the MultiGrain network: a torchvision-layout ResNet (18/34/50/101/152, SE-ResNet-50)
 * trunk, GeM pooling, a linear classifier on the raw pooled vector and an L2-normalised embedding
 * (recipe §1.1-§1.2). Forward and backward in training, eval and frozen-BN modes, for any input
 * size (activation memory and op plans are built once per input shape and reused).
 *
 * Parameters, gradients and momentum buffers each live in one contiguous float array over the
 * trainable tensors (in PyTorch state_dict order, `pool.p` included), so zeroing, all-reduce,
 * SGD and checkpointing are flat loops; every tensor is also reachable by its state_dict name.
 * BN running statistics live in a second float array and num_batches_tracked counters in an
 * int64 array. Gradients follow the op rule: backward ACCUMULATES into the gradient array.
 *
 * Whitened models (recipe §1.8, §2.3; docs/formats.md): after mg_model_set_whitening(m, D') (done by
 * mg_model_load_tensors for a checkpoint with whitened = 1) the model also holds the buffers
 * `whiten.mean` [D+1] and `whiten.P` [D+1, D'] (not trainable, listed after fc.bias by the tensor
 * iteration, kind 1), `fc.weight` becomes [K, D'], and the eval-mode forward computes
 *     v = [e, 1],  u = v / (||v|| + 1e-6),  Phi = (u - whiten.mean) . whiten.P,
 *     logits = fc.weight Phi + fc.bias,  embedding = Phi / (||Phi|| + 1e-6),  pooled = e
 * (the same +1e-6 convention as MultiGrain's l2n). Training-mode / frozen-BN forward and backward
 * of a whitened model return MG_ERR_UNSUPPORTED. */
#ifndef MULTIGRAIN_MODEL_H
#define MULTIGRAIN_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mg_model mg_model;

typedef enum mg_model_mode {
    MG_MODE_TRAIN = 0,  /* batch statistics, running statistics updated */
    MG_MODE_EVAL = 1,   /* running statistics; backward still possible */
    MG_MODE_FROZEN_BN = 2, /* running statistics, BN affine still trained (p fine-tuning) */
    MG_MODE_INFER = 3      /* as EVAL, but nothing is kept for backward (embed, classify, eval). With
                              oneDNN and no SE blocks the trunk runs fused (ops_fused.h): BN folded
                              into the convolutions, ReLU and residual sums in their epilogues,
                              activations in the backend's blocked layout; equal to EVAL to float32
                              rounding. Otherwise per op in four rotating buffers, bit-identical to
                              EVAL. Either way a fraction of EVAL's memory. */
} mg_model_mode;

/* arch: "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "se_resnet50". */
mg_status mg_model_init(mg_model **model, const char *arch, int num_classes, float p);
void mg_model_free(mg_model *m);

const char *mg_model_arch(const mg_model *m);
int mg_model_num_classes(const mg_model *m);
/* Embedding dimension: the GeM dimension D (512 for ResNet-18/34, 2048 otherwise), or D' for a
 * whitened model. */
int mg_model_embedding_dim(const mg_model *m);
/* GeM (pooled) dimension D, whitened or not. */
int mg_model_pooled_dim(const mg_model *m);
/* D' of a whitened model, 0 when not whitened. */
int mg_model_whitened_dim(const mg_model *m);
/* dim_out in [1, D+1]: makes the model whitened with D' = dim_out (fc.weight becomes [K, D'] and,
 * like whiten.mean / whiten.P, is zeroed; the other tensors are kept); 0: back to unwhitened
 * (fc.weight [K, D], zeroed). No-op when already in that state. Invalidates pointers into the
 * parameter arrays (mg_model_params, mg_model_tensor, ...). */
mg_status mg_model_set_whitening(mg_model *m, int dim_out);
float mg_model_get_p(const mg_model *m);
mg_status mg_model_set_p(mg_model *m, float p);
/* Whether backward computes the gradient of the GeM exponent (fine-tuning p); default false. */
void mg_model_set_learn_p(mg_model *m, bool learn);
/* Synchronised batch norm for data-parallel training: with reduce != NULL, every training-mode BN layer
 * takes its statistics over the whole batch spread across the processes, calling reduce(ctx, data, n)
 * to sum per-channel partial sums over them (mg_bn2d_forward_sync / mg_bn2d_backward_sync in
 * ops_layers.h; set by the trainer for sync_bn). NULL (the default): statistics of this process's batch. */
void mg_model_set_bn_sync(mg_model *m, mg_status (*reduce)(void *ctx, double *data, size_t n), void *ctx);

/* Inference mode's fused trunk (default on where available; the environment variable MG_FUSED=0
 * turns it off at mg_model_init). Its 3x3 stride-1 convolutions run Winograd F(4x4, 3x3) by default
 * (fewer multiplications; measured ~1e-6 relative difference from eval mode on ResNet-18/50, the
 * same order as plain float32 reordering; docs/ops.md); MG_WINOGRAD=0 or this call turns it off. */
void mg_model_set_fused(mg_model *m, bool on);
void mg_model_set_fused_winograd(mg_model *m, bool on);
/* Whether the last MG_MODE_INFER forward ran fused, and how many of its convolutions ran Winograd. */
bool mg_model_fused_active(const mg_model *m);
int mg_model_fused_winograd_count(const mg_model *m);
/* The thread count the last MG_MODE_INFER forward ran on: mg_ops_get_threads(), or fewer when it
 * was one network (no streams) and other processes kept cores busy (it sheds threads under load;
 * MG_ADAPT_THREADS=0 turns that off); 0 before any inference forward. For benchmarks and logs. */
int mg_model_infer_threads(const mg_model *m);
/* The fused trunk holds a BN-folded copy of the weights, rebuilt on the next inference forward
 * whenever they may have changed: every call handing out a writable pointer (mg_model_params,
 * mg_model_tensor, mg_model_tensor_data) counts as a change, as does a training forward. Code that
 * writes through a pointer kept from before an inference forward calls this afterwards. */
void mg_model_mark_changed(mg_model *m);
/* Bytes of the current plan's activation memory (the fused trunk's weights and buffers included);
 * *workspace (may be NULL) receives the shared convolution workspace's size. For benchmarks. */
size_t mg_model_activation_bytes(const mg_model *m, size_t *workspace);

/* torchvision's initialisation: Kaiming-normal (fan_out, ReLU) convs, BN weight 1 bias 0,
 * nn.Linear's default uniform for the classifier and conv biases; zero_init_last_bn sets the last
 * BN weight of every residual block to 0 (torchvision's zero_init_residual). Deterministic in seed. */
mg_status mg_model_init_weights(mg_model *m, uint64_t seed, bool zero_init_last_bn);

/* Named tensors (state_dict names, plus "pool.p"). Returns a pointer to the float data (or NULL if
 * unknown / not float), and optionally the element count. */
float *mg_model_tensor(mg_model *m, const char *name, int64_t *count);
/* The gradient of a trainable tensor by name, or NULL. */
float *mg_model_tensor_grad(mg_model *m, const char *name);
/* num_batches_tracked counters by name (NULL if unknown). */
int64_t *mg_model_counter(mg_model *m, const char *name);

/* Iteration over every state_dict entry in PyTorch order. kind: 0 trainable, 1 BN buffer,
 * 2 num_batches_tracked (int64). shape has up to 4 dims. */
int mg_model_tensor_count(const mg_model *m);
const char *mg_model_tensor_info(const mg_model *m, int index, int *kind, int *ndim, int64_t shape[4],
                                 int64_t *count);
void *mg_model_tensor_data(mg_model *m, int index);

/* Flat arrays: trainable parameters, their gradients (same layout), element count. */
float *mg_model_params(mg_model *m);
float *mg_model_grads(mg_model *m);
int64_t mg_model_param_count(const mg_model *m);
void mg_model_zero_grad(mg_model *m);

/* Outputs of the last forward, owned by the model, valid until the next forward. */
typedef struct mg_model_outputs {
    int n;            /* batch */
    int dim;          /* embedding dimension (D, or D' for a whitened model) */
    int num_classes;
    const float *pooled;    /* [n, pooled_dim] raw GeM vector e */
    const float *logits;    /* [n, num_classes] W e + b (whitened: W' Phi + b') */
    const float *embedding; /* [n, dim] e / (|e| + 1e-6) (whitened: Phi / (|Phi| + 1e-6)) */
    int pooled_dim;         /* D (== dim unless whitened) */
} mg_model_outputs;

/* x: [n, 3, h, w] normalised images. */
mg_status mg_model_forward(mg_model *m, mg_model_mode mode, const float *x, int n, int h, int w,
                           mg_model_outputs *out);
/* Backward of the last forward. Any of the upstream gradients may be NULL: dlogits [n, K],
 * dembedding [n, dim] (w.r.t. the normalised embedding), dpooled [n, dim] (w.r.t. the raw e).
 * Parameter gradients accumulate into mg_model_grads(). One backward per forward: backward reuses the
 * memory of the values it has finished with, so a second call without a new forward is an error
 * (the outputs of the forward stay valid). */
mg_status mg_model_backward(mg_model *m, const float *dlogits, const float *dembedding, const float *dpooled);

/* An intermediate activation of the last forward: "stem" (after the max pool), "layer1".."layer4"
 * (outputs of the stages). dims receives [n, c, h, w]. NULL when unknown, after a backward, and after
 * an MG_MODE_INFER forward (whose buffers are reused layer after layer). Always NCHW: a stage output
 * the training plan does not keep is recomputed, and one kept in the blocked layout converted, into a
 * buffer valid until the next call. */
const float *mg_model_activation(mg_model *m, const char *name, int dims[4]);

#ifdef __cplusplus
}
#endif
#endif

/* ---- checkpoints (model_io.c) ------------------------------------------------------------------ */
#include "multigrain/checkpoint.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Adds every model tensor (state_dict names + pool.p) to a checkpoint writer; the data is borrowed
 * until the writer commits. The writer's meta (arch, classes, p) must match the model. */
mg_status mg_model_checkpoint_add(mg_model *m, mg_checkpoint_writer *w);
/* Writes a weights-only checkpoint atomically (whitened = 1 with whiten.* for a whitened model).
 * class_names_json and config may be NULL. */
mg_status mg_model_save(mg_model *m, const char *path, int64_t epoch, int64_t step, const char *class_names_json,
                        const char *config);
/* Copies the network tensors of an open checkpoint into a model of the same arch and class count;
 * a whitened checkpoint makes the model whitened (mg_model_set_whitening), an unwhitened one makes
 * it unwhitened. */
mg_status mg_model_load_tensors(mg_model *m, const mg_checkpoint *c);
/* Opens a checkpoint and builds the model it describes (arch, classes, p, weights). When ckpt is not
 * NULL the checkpoint stays open there (metadata, class names, optimizer tensors); close it with
 * mg_checkpoint_close. */
mg_status mg_model_load(const char *path, mg_model **model, mg_checkpoint *ckpt);

#ifdef __cplusplus
}
#endif
