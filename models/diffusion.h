// The diffusion process: noise schedules (computed in double), the training loss and the
// DDPM / DDIM timesteps and update coefficients (the sampling loop: models/sampler.h).
// Per-step coefficients are computed here on the host; the per-element work is one fused op
// each (ddx_q_sample, ddx_sampler_step), so both devices run the same code.
#ifndef DDX_DIFFUSION_H
#define DDX_DIFFUSION_H

#ifdef __cplusplus
extern "C" {
#endif

#include "config/config.h"
#include "runtime/ops.h"
#include "models/model.h"

typedef struct ddx_schedule {
    int T;
    ddx_parameterization param;
    ddx_variance variance;
    // Each T doubles, index t = 0..T-1 (t = 0 is the least noisy step).
    double *betas;
    double *alphas_cumprod;        // abar_t = prod_{s<=t} (1 - beta_s)
    double *alphas_cumprod_prev;   // abar_{t-1}, 1 at t = 0
    double *posterior_variance;    // beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)
} ddx_schedule;

// linear: betas = linspace(beta_start, beta_end, T) (torch.linspace in double);
// cosine: Nichol & Dhariwal 2021, s = 0.008, betas clipped at 0.999.
ddx_status ddx_schedule_init(ddx_schedule *s, const ddx_config *cfg);
void ddx_schedule_free(ddx_schedule *s);

// One training loss: for x0 [N,H,W,C] (in [-1,1]) and labels y ([N] i32 or NULL):
// t ~ U{0..T-1} per sample from Philox (seed, DDX_RNG_STREAM_TIMESTEP, step), noise from
// (seed, DDX_RNG_STREAM_Q_SAMPLE, step), x_t = q_sample, loss = mean((model(x_t, t) - target)^2)
// with target eps / x0 / v by parameterization. Returns the [1] loss (NULL on error, sticky).
ddx_tensor *ddx_diffusion_loss(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, ddx_tensor *x0,
                               ddx_tensor *y, uint64_t seed, uint64_t step);
// Data parallelism: the same loss for rows sample0 .. sample0 + N - 1 of a global batch: their
// timesteps and noise are the draws the whole batch's loss makes for those rows (Philox offset
// by the global sample index), so a rank's share computes its rows of the 1-rank step.
// cond: as ddx_diffusion_loss_from_cond (NULL: none).
ddx_tensor *ddx_diffusion_loss_at(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, ddx_tensor *x0,
                                  ddx_tensor *cond, ddx_tensor *y, uint64_t seed, uint64_t step, uint64_t sample0);
ddx_status ddx_diffusion_loss_inputs_at(const ddx_schedule *s, int64_t N, uint64_t seed, uint64_t step, uint64_t sample0,
                                        float *t, float *coef, float *vcoef);
// The loss in two halves, for a step whose per-step inputs are staged in device memory
// (a CUDA graph): ddx_diffusion_loss = inputs on the host, copied, then _from.
// Host half: t[N] (as floats), coef[2N] and, for v only, vcoef[2N] (may be NULL otherwise) at
// (seed, step): the same values ddx_diffusion_loss uses.
ddx_status ddx_diffusion_loss_inputs(const ddx_schedule *s, int64_t N, uint64_t seed, uint64_t step, float *t, float *coef,
                                     float *vcoef);
// Device half: t_t [N], coef_t [N, 2], vcoef_t [N, 2] (v only, else NULL) on the context's
// device; key = the noise key (seed, DDX_RNG_STREAM_Q_SAMPLE, step), or with step_dev.
ddx_tensor *ddx_diffusion_loss_from(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, ddx_tensor *x0, ddx_tensor *y,
                                    ddx_tensor *t_t, ddx_tensor *coef_t, ddx_tensor *vcoef_t, ddx_rng_key key);
// The device half for a model that takes a conditioning input (model.cond lowres):
// cond [N, H, W, Cc] on the context's device is concatenated to x_t on the channel axis
// before the forward; no gradient flows into it. cond NULL is the unconditioned loss.
ddx_tensor *ddx_diffusion_loss_from_cond(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, ddx_tensor *x0,
                                         ddx_tensor *cond, ddx_tensor *y, ddx_tensor *t_t, ddx_tensor *coef_t,
                                         ddx_tensor *vcoef_t, ddx_rng_key key);

// The timesteps a sampler visits, in decreasing order: DDPM all T; DDIM `steps` of them with
// uniform = leading (t = k * (T // steps)), quadratic (DDIM paper appendix D.2), trailing
// (round(T - k T / steps) - 1) or karras (the Karras sigmas' timesteps rounded, repeats
// dropped). Returns the count written into ts (capacity T).
int ddx_sampler_timesteps(const ddx_schedule *s, ddx_sampler sampler, int steps, ddx_spacing spacing, int *ts);

// Coefficients of the update from timestep t to t_prev (t_prev = -1: the last step, to x0).
// DDPM: posterior mean, sigma^2 = beta_t (fixedlarge; the posterior variance at t = 0) or
// posterior variance (fixedsmall); x0 clipped to [-1, 1]. DDIM: eta in [0, 1], x0 clipped.
// key is left zero; the caller sets it.
ddx_sampler_step_params ddx_sampler_coefs(const ddx_schedule *s, ddx_sampler sampler, int t, int t_prev, double eta);

// Karras et al. 2022 sigmas (rho = 7) between sigma(0) and sigma(T-1), sigma(t) =
// sqrt((1 - abar_t) / abar_t), decreasing: sig[0..n-1], and each one's timestep t[k] by
// diffusers' _sigma_to_t (linear in log sigma, fractional).
void ddx_karras_sigmas(const ddx_schedule *s, int n, double *sig, double *t);

// The multistep / two-stage samplers (dpmpp2m, dpmpp3m, heun, euler_a) run on sampler_step_ms
// (runtime/ops.h). Their plan lists every model call: its time input t[k] (fractional for
// heun / euler_a with karras spacing) and its update's coefficients p[k] (key left zero),
// computed in double. History: MULTISTEP shifts h2 <- h1, h1 <- D after each call
// (DPM-Solver++: earlier x0 predictions); STAGE sets h1 <- the call's x_t, h2 <- D (Heun's first
// stage, read by the second). Coefficients of a history term a call does not use are 0; the
// sampler zeroes the history at the start of a batch.
typedef enum ddx_plan_hist { DDX_PLAN_HIST_MULTISTEP = 0, DDX_PLAN_HIST_STAGE } ddx_plan_hist;
typedef struct ddx_sampler_plan {
    int n;        // model calls (NFE)
    int steps;    // noise levels visited (heun: n = 2 steps - 1)
    int nhist;    // history tensors the updates read: 0 (euler_a), 1 (dpmpp2m), 2 (dpmpp3m, heun)
    ddx_plan_hist hist;
    double *t;
    ddx_sampler_ms_params *p;
} ddx_sampler_plan;
bool ddx_sampler_is_ms(ddx_sampler sampler);
ddx_status ddx_sampler_plan_init(ddx_sampler_plan *pl, const ddx_schedule *s, ddx_sampler sampler, int steps,
                                 ddx_spacing spacing);
void ddx_sampler_plan_free(ddx_sampler_plan *pl);

#ifdef __cplusplus
}
#endif

#endif
