// One training step and the state it needs, shared by ddx-train and `ddx-bench step`.
#ifndef DDX_TRAINER_H
#define DDX_TRAINER_H

#ifdef __cplusplus
extern "C" {
#endif

#include "models/device.h"
#include "models/diffusion.h"
#include "models/model.h"
#include "models/sampler.h"
#include "config/config.h"
#include "train/optim.h"

struct ddx_trainer_graph;   // CUDA graph state (train/trainer.c)
struct ddx_dp;              // data parallelism (train/dp.h)
struct ddx_comm;

// What the log needs, kept where the steps run: on the host for the CPU and the eager CUDA
// step, in device memory for graph-replayed steps (read back only when asked).
typedef struct ddx_trainer_stats {
    double loss_sum;        // sum of (double)loss since the last ddx_trainer_stats_reset
    int64_t loss_n;         // steps in loss_sum
    float last_loss;        // the last step's loss
    double last_grad_norm;  // the last step's grad norm (before clipping)
} ddx_trainer_stats;

typedef struct ddx_trainer {
    ddx_config cfg;
    ddx_device device;
    ddx_param_store ps;
    ddx_model *model;
    ddx_schedule sched;
    ddx_ctx ctx;
    ddx_optim_cfg optim;
    int64_t step;              // optimizer steps done
    size_t batch_elems;        // batch * H * W * C (C = out_channels, the image's)
    // model.cond lowres: the step's conditioning input, made on the host from the batch
    // (models/lowres.h) [batch, H, W, C]; and the one the sample grids use [grid_n, H, W, C].
    float *cond_host;
    float *grid_cond;
    int grid_n;
    // CUDA graphs (runtime/graph.h): the step is run from device-resident inputs, captured on
    // its second run and replayed from then on; the sampler captures one denoising step per
    // batch. Set by init from
    // DDX_CUDA_GRAPHS (1 on, 0 off; unset: DDX_TRAINER_GRAPHS_DEFAULT), CUDA only;
    // ddx_trainer_use_graphs changes it before the first step.
    bool graphs;
    bool sample_graphs;        // the same for ddx_trainer_sample
    struct ddx_trainer_graph *graph;
    ddx_sampling *sampler;         // made by the first ddx_trainer_sample, kept for the next grids
    ddx_sample_opts sampler_opts;  // what it was made with
    ddx_trainer_stats stats;   // host-side stats (CPU and eager steps)
    struct ddx_dp *dp;         // data parallelism (NULL: the whole batch on this process)
    int32_t *labels;           // [batch]: the labels the last step trained on, after label dropout
} ddx_trainer;

// On by default: tests/test_train_devices.sh showed graph and eager runs bit-identical (losses,
// grad norms, sample PNGs) on an H200 on 2026-11-26.
#define DDX_TRAINER_GRAPHS_DEFAULT true

// Builds the model and schedule, finalizes the store, initialises the weights from run.seed
// and copies them into the EMA buffer.
ddx_status ddx_trainer_init(ddx_trainer *t, const ddx_config *cfg, ddx_device dev);
void ddx_trainer_free(ddx_trainer *t);

// One step (step number t->step + 1): x host f32 [batch, S, S, C] in [-1, 1], y host labels
// (0..model.num_classes-1; train.label_dropout replaces some by the null class) or NULL. Loss forward, backward, clip, AdamW, EMA. *loss and *grad_norm (may be NULL) get the
// step's values. Advances t->step only on success.
// With graphs, loss and grad_norm NULL make the step wait for nothing (the host runs up to one
// step ahead of the GPU); asking for them waits for the step. A non-finite grad norm then
// skips that step's update on the device and is reported by the next call that reads the
// statistics (a step with loss/grad_norm, or ddx_trainer_stats_read).
ddx_status ddx_trainer_step(ddx_trainer *t, const float *x, const int32_t *y, float *loss, double *grad_norm);

// Data parallelism over `comm` (runtime/comm.h), before the first step: this rank computes
// its share of each global batch of train.batch_size rows and the gradients are summed over
// the ranks (train/dp.h). ddx_trainer_step still takes the whole global batch (x, y) and
// reads only this rank's rows; loss and grad norm are the global ones. bucket_mb: the size of
// the all-reduce buckets. A comm of world 1 with the single backend changes nothing.
ddx_status ddx_trainer_set_comm(ddx_trainer *t, struct ddx_comm *comm, double bucket_mb);
// Classifier-free guidance label dropout (train.label_dropout = p): label j of step `step` is
// replaced by null_class when Philox uniform j of (seed, DDX_RNG_STREAM_LABEL_DROP, step) is
// below p. Drawn on the host for every device: the labels are uploaded each step anyway (the
// graph step's input buffer included), so the CPU and CUDA runs train on the same labels, and
// keyed by the step, a resumed run draws what the unbroken run would have.
ddx_status ddx_label_dropout(int32_t *y, int n, int null_class, double p, uint64_t seed, uint64_t step);

// Turns CUDA graphs on or off for the training and sampling steps: on CUDA only (dropout,
// like the other noise, reads the captured step's word from device memory). Call
// before the first step.
void ddx_trainer_use_graphs(ddx_trainer *t, bool on);
// The statistics since the last reset (waits for the device when the steps ran as graphs).
ddx_status ddx_trainer_stats_read(ddx_trainer *t, ddx_trainer_stats *out);
// Starts a new sum: loss_sum and loss_n (a resumed run passes its checkpoint's values).
ddx_status ddx_trainer_stats_reset(ddx_trainer *t, double loss_sum, int64_t loss_n);

// n images from the EMA weights (use_ema) or the live ones, with the config's sampler settings
// and `seed`, into host out [n, S, S, C], through the trainer's sampler (models/sampler.h),
// which runs in the training context (no tape, no dropout while it runs; the context's flags
// are restored), so a grid needs no second activation arena. The live weights are restored
// afterwards.
ddx_status ddx_trainer_sample(ddx_trainer *t, bool use_ema, int n, uint64_t seed, float *out);
// model.cond lowres: the clean images x0 [n, S, S, C] in [-1, 1] whose low-res versions the
// sample grids super-resolve (grid image i uses image i % n). Needed before ddx_trainer_sample
// for such a model.
ddx_status ddx_trainer_set_sample_cond(ddx_trainer *t, const float *x0, int n);

#ifdef __cplusplus
}
#endif

#endif
