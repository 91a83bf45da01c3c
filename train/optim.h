// AdamW with linear warmup, global gradient-norm clipping and an EMA of the weights, run
// over the parameter store's flat buffers (value, grad, Adam m, v, EMA share one layout).
#ifndef DDX_OPTIM_H
#define DDX_OPTIM_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

#include "runtime/config.h"
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

#ifdef __cplusplus
}
#endif

#endif
