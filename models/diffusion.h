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
    ddx_loss_weight loss_weight;   // train.loss_weight
    double min_snr_gamma;          // train.min_snr_gamma
} ddx_schedule;

// linear: betas = linspace(beta_start, beta_end, T) (torch.linspace in double);
// cosine: Nichol & Dhariwal 2021, s = 0.008, betas clipped at 0.999;
// scaled_linear: linspace(sqrt(beta_start), sqrt(beta_end), T)^2 (diffusers, Stable Diffusion).
// rescale_zero_terminal_snr (Lin et al. 2023, Algorithm 1): sqrt(abar) shifted so that its last
// value is 0 and scaled so that its first is unchanged; abar_{T-1} = 0 and beta_{T-1} = 1
// exactly. Refused with eps (x0 cannot be recovered from a noise prediction at SNR 0).
ddx_status ddx_schedule_init(ddx_schedule *s, const ddx_config *cfg);
void ddx_schedule_free(ddx_schedule *s);

// ---- parameterisations (in double) -----------------------------------------------------------
// With x_t = sqrt(abar) x0 + sqrt(1 - abar) eps and v = sqrt(abar) eps - sqrt(1 - abar) x0:
// the coefficients of x0 = x0_xt x_t + x0_pred pred and eps = eps_xt x_t + eps_pred pred for a
// prediction `pred` of kind `from`. Not finite for eps at abar = 0 and x0 at abar = 1 (the
// prediction then does not determine the other quantity); v is finite for every abar in [0, 1].
typedef struct ddx_param_coefs {
    double x0_xt, x0_pred, eps_xt, eps_pred;
} ddx_param_coefs;
ddx_param_coefs ddx_param_coefs_at(double abar, ddx_parameterization from);
// A prediction of kind `from` at x_t re-expressed as kind `to` (the same x0 and eps).
double ddx_param_convert(double abar, ddx_parameterization from, ddx_parameterization to, double x_t, double pred);
// SNR(t) = abar_t / (1 - abar_t) (infinite where abar_t = 1, 0 at zero terminal SNR).
double ddx_schedule_snr(const ddx_schedule *s, int t);
// The training loss's per-sample weight at timestep t: 1 for uniform; for min_snr, diffusers'
// convention (examples/text_to_image/train_text_to_image.py): min(SNR, gamma) / SNR for eps,
// min(SNR, gamma) / (SNR + 1) for v, and Hang et al.'s min(SNR, gamma) for x0 (diffusers has no
// x0 case). Finite for every schedule ddx_schedule_init accepts (SNR is 0 only at zero terminal
// SNR, which refuses eps).
double ddx_diffusion_loss_weight(const ddx_schedule *s, int t);

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
// Per-sample square roots of ddx_diffusion_loss_weight for the timesteps t[N] of the host half
// (floats holding integers), the input wsqrt of ddx_diffusion_loss_from_w. The loss is then
// mean_i w_i mean_e (pred - target)^2, computed as mse(sqrt(w) pred, sqrt(w) target).
ddx_status ddx_diffusion_loss_wsqrt(const ddx_schedule *s, int64_t N, const float *t, float *wsqrt);
// The device half with per-sample loss weights: wsqrt_t [N] f32 on the context's device
// (from ddx_diffusion_loss_wsqrt), required when the schedule's loss_weight is min_snr and
// ignored (may be NULL) for uniform. ddx_diffusion_loss_from_cond is this with NULL.
ddx_tensor *ddx_diffusion_loss_from_w(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, ddx_tensor *x0,
                                      ddx_tensor *cond, ddx_tensor *y, ddx_tensor *t_t, ddx_tensor *coef_t,
                                      ddx_tensor *vcoef_t, ddx_tensor *wsqrt_t, ddx_rng_key key);
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
