// One training step and the state it needs, shared by ddx-train and `ddx-bench step`.
#ifndef DDX_TRAINER_H
#define DDX_TRAINER_H

#ifdef __cplusplus
extern "C" {
#endif

#include "models/diffusion.h"
#include "models/model.h"
#include "runtime/config.h"
#include "train/optim.h"

typedef struct ddx_trainer {
    ddx_config cfg;
    ddx_device device;
    ddx_param_store ps;
    ddx_model *model;
    ddx_schedule sched;
    ddx_ctx ctx;
    ddx_optim_cfg optim;
    int64_t step;              // optimizer steps done
    size_t batch_elems;        // batch * H * W * C
} ddx_trainer;

// Which device `run.device` means here. auto takes the GPU when this build has CUDA, a GPU is
// present and every op of the registry has a CUDA kernel; otherwise the CPU, with the reason
// written into why (may be NULL). device: cuda without a usable GPU is DDX_E_INPUT.
ddx_status ddx_trainer_pick_device(ddx_run_device want, ddx_device *out, char *why, size_t why_n);

// Builds the model and schedule, finalizes the store, initialises the weights from run.seed
// and copies them into the EMA buffer.
ddx_status ddx_trainer_init(ddx_trainer *t, const ddx_config *cfg, ddx_device dev);
void ddx_trainer_free(ddx_trainer *t);

// One step (step number t->step + 1): x host f32 [batch, S, S, C] in [-1, 1], y host labels or
// NULL. Loss forward, backward, clip, AdamW, EMA. *loss and *grad_norm (may be NULL) get the
// step's values. Advances t->step only on success.
ddx_status ddx_trainer_step(ddx_trainer *t, const float *x, const int32_t *y, float *loss, double *grad_norm);

// n images from the EMA weights (use_ema) or the live ones, with the config's sampler settings
// and `seed`, into host out [n, S, S, C]. The live weights are restored afterwards.
ddx_status ddx_trainer_sample(ddx_trainer *t, bool use_ema, int n, uint64_t seed, float *out);

#ifdef __cplusplus
}
#endif

#endif
