// AdamW with linear warmup, global gradient-norm clipping and an EMA of the weights, run
// over the parameter store's flat buffers (value, grad, Adam m, v, EMA share one layout).
#ifndef DDX_OPTIM_H
#define DDX_OPTIM_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

#include "kernels/optim.h"
#include "config/config.h"
#include "runtime/tensor.h"

typedef struct ddx_optim_cfg {
    double lr, beta1, beta2, eps, weight_decay;
    int64_t warmup_steps;    // lr ramps linearly over the first warmup_steps steps
    double grad_clip;        // max global L2 norm of all grads; 0 = no clipping
    double ema_decay;        // 0 = no EMA
    bool ema_warmup;         // effective decay min(ema_decay, (1 + step) / (10 + step)) (diffusers EMAModel warmup)
} ddx_optim_cfg;

// From cfg->train (eps = 1e-8, PyTorch's default).
ddx_optim_cfg ddx_optim_cfg_from(const ddx_config *cfg);
// lr at 1-based step: lr * min(1, step / warmup_steps) (lr when warmup_steps == 0).
double ddx_optim_lr(const ddx_optim_cfg *o, int64_t step);
// Copies the weights into the EMA buffer (at the start of training).
ddx_status ddx_optim_ema_init(ddx_param_store *ps);

// One update at 1-based `step`, PyTorch semantics:
//   norm = ||grad||_2 over all parameters (accumulated in double);
//   clip: grad *= max_norm / (norm + 1e-6) when norm > max_norm (torch.nn.utils.clip_grad_norm_);
//   AdamW (torch.optim.AdamW, amsgrad off): p -= lr * wd * p; m, v moments; bias-corrected step;
//   EMA: ema = decay * ema + (1 - decay) * p (after the update).
// Leaves the grads as they are (the caller zeroes them). *grad_norm (may be NULL) gets the
// norm before clipping. A non-finite norm is DDX_E_INPUT and nothing is updated.
ddx_status ddx_optim_step(ddx_param_store *ps, const ddx_optim_cfg *o, int64_t step, double *grad_norm);

// ---- the same update inside a captured CUDA graph (train/trainer.c) -------------------------
// Nothing is read back: the host writes this step's constants into device memory before each
// launch, and the device computes the norm, the clip and the update from them.
//
// Host part: the step's ddx_k_adamw_args except the clip (made with norm 0; the device
// replaces apply_clip and clip), the same values ddx_optim_step would use.
ddx_status ddx_optim_dev_args(const ddx_optim_cfg *o, int64_t step, ddx_k_adamw_args *a);
// Device part, enqueued on the shared stream (CUDA parameter stores only): the grad norm,
// stats_dev updated with *loss_dev and the norm (see ddx_k_train_stats), then clip + AdamW +
// EMA with the arguments at a_dev. A non-finite norm updates nothing and is counted in
// stats_dev (with *step_dev) instead of being returned: the caller checks when it reads them.
ddx_status ddx_optim_step_dev(ddx_param_store *ps, const ddx_optim_cfg *o, const ddx_k_adamw_args *a_dev,
                              ddx_k_train_stats *stats_dev, const float *loss_dev, const uint32_t *step_dev);

#ifdef __cplusplus
}
#endif

#endif
