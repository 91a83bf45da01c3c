// Optimizer kernels: the global gradient norm and one fused clip + AdamW + EMA update over the
// parameter store's flat buffers (train/optim.c drives them; its CPU loop is the reference).
//
// Launchers follow kernels/elementwise.h: raw device pointers, a cudaStream_t passed as void*,
// the cudaError_t returned as an int (0 = success). The per-step scalars are computed once on
// the host (ddx_k_adamw_args_make) and shared with the CPU path, so both backends round the
// same float constants.
#ifndef DDX_KERNELS_OPTIM_H
#define DDX_KERNELS_OPTIM_H

#include <math.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Everything the element-wise update needs, already rounded to float the way PyTorch's CPU
// kernels round their Python-float scalars (double arithmetic, then one cast).
typedef struct ddx_k_adamw_args {
    float clip;        // grad multiplier: max_norm / (norm + 1e-6), used only when apply_clip
    float decay;       // 1 - lr * weight_decay                      (param.mul_)
    float w1;          // 1 - beta1                                  (exp_avg.lerp_(grad, w1))
    float beta2, w2;   // beta2, 1 - beta2                           (exp_avg_sq.mul_(b2).addcmul_)
    float bc2_sqrt;    // sqrt(1 - beta2^step)
    float eps;
    float neg_step;    // -lr / (1 - beta1^step)                     (param.addcdiv_)
    float ema_keep;    // ema_decay                                  (ema.mul_(d).add_(p, alpha=1-d))
    float ema_mix;     // 1 - ema_decay
    int apply_clip, apply_ema;
} ddx_k_adamw_args;

// lr: this step's (warmed-up) rate; norm: the global L2 norm of the unclipped grads.
static inline ddx_k_adamw_args ddx_k_adamw_args_make(double lr, double beta1, double beta2, double eps,
                                                     double weight_decay, int64_t step, double max_norm,
                                                     double norm, double ema_decay) {
    ddx_k_adamw_args a;
    // clip_grad_norm_ computes this in float tensors: (1 / (norm + 1e-6)) * max_norm (Python's
    // float / Tensor is reciprocal-then-multiply); the same order here keeps the coefficient
    // within an ulp of PyTorch's.
    const float coef = (1.0f / ((float)norm + 1e-6f)) * (float)max_norm;
    a.apply_clip = max_norm > 0.0 && coef < 1.0f;
    a.clip = a.apply_clip ? coef : 1.0f;
    a.decay = (float)(1.0 - lr * weight_decay);
    a.w1 = (float)(1.0 - beta1);
    a.beta2 = (float)beta2;
    a.w2 = (float)(1.0 - beta2);
    const double bc1 = 1.0 - pow(beta1, (double)step);
    const double bc2 = 1.0 - pow(beta2, (double)step);
    a.bc2_sqrt = (float)sqrt(bc2);
    a.eps = (float)eps;
    a.neg_step = (float)(-(lr / bc1));
    a.apply_ema = ema_decay > 0.0;
    a.ema_keep = (float)ema_decay;
    a.ema_mix = (float)(1.0 - ema_decay);
    return a;
}

// Blocks of the first pass of ddx_k_grad_sumsq: fixed, so the reduction tree (and so the
// result, bit for bit) depends only on n, never on the device or the run.
#define DDX_K_SUMSQ_BLOCKS 1024

// *out_host = sum of x[i]^2 over [0, n), accumulated in double with a fixed tree. Enqueues
// two kernels and one 8-byte device-to-host copy on `stream`, then waits for the stream: this
// is the one point per step where the host learns the norm. Uses a per-device static scratch,
// so two calls must not run concurrently on one device.
int ddx_k_grad_sumsq(const float *x, int64_t n, double *out_host, void *stream);

// For every i in [0, n), with g = grad[i] * clip when apply_clip (grad itself is not written):
//   p = p * decay;  m = fma(w1, g - m, m);  v = fma(w2 * g, g, v * beta2);
//   p = p + neg_step * m / (sqrt(v) / bc2_sqrt + eps);
//   ema = fma(p, ema_mix, ema * ema_keep)                         (when apply_ema)
// Explicit roundings: bit-identical to train/optim.c's CPU loop (which matches PyTorch's
// AVX-512 kernels except for their sqrt) up to the CPU's double-rounding of the fmas.
int ddx_k_adamw_step(float *param, const float *grad, float *m, float *v, float *ema, int64_t n,
                     const ddx_k_adamw_args *a, void *stream);

// ---- CUDA graphs: the same step with nothing read back ------------------------------------
// The host cannot learn the norm inside a captured step, so the clip decision moves to the
// device (the same float operations as ddx_k_adamw_args_make) and the statistics the trainer
// logs stay in device memory until the host asks for them.
typedef struct ddx_k_train_stats {
    double loss_sum;          // sum of (double)loss over the steps since the host cleared it
    double last_sumsq;        // the last step's sum of squared grads (its norm is the sqrt)
    int64_t loss_n;           // steps in loss_sum
    int64_t bad_steps;        // steps whose grad norm was not finite (their update was skipped)
    float last_loss;
    uint32_t first_bad_step;  // the step word of the first such step (0: none)
} ddx_k_train_stats;

// ddx_k_grad_sumsq without the copy and the wait: the sum stays on the device for
// ddx_k_adamw_step_dev and ddx_k_train_stats_update (same scratch, same reduction tree).
int ddx_k_grad_sumsq_dev(const float *x, int64_t n, void *stream);

// st->loss_sum += (double)*loss, loss_n++, last_loss = *loss, last_sumsq = the sum of the
// preceding ddx_k_grad_sumsq_dev; a non-finite norm counts a bad step (*step_dev names it).
int ddx_k_train_stats_update(ddx_k_train_stats *st, const float *loss, const uint32_t *step_dev, void *stream);

// ddx_k_adamw_step with the arguments read from device memory when the kernel runs (a_dev:
// one ddx_k_adamw_args made on the host with norm 0; its clip fields are ignored) and the clip
// computed from the sum of the preceding ddx_k_grad_sumsq_dev exactly as
// ddx_k_adamw_args_make does (clip_on: max_norm > 0). A non-finite norm updates nothing.
// apply_ema must equal a_dev->apply_ema (it decides the alignment check on the host).
int ddx_k_adamw_step_dev(float *param, const float *grad, float *m, float *v, float *ema, int64_t n,
                         const ddx_k_adamw_args *a_dev, int apply_ema, int clip_on, float max_norm, void *stream);

#ifdef __cplusplus
}
#endif

#endif
