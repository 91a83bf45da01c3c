// The diffusion process: schedules, the training loss, sampler timesteps and coefficients,
// (models/diffusion.h); the sampling loop is models/sampler.c.
//
// Everything scalar is computed on the host in double and handed to the two fused ops
// (q_sample, sampler_step) as fp32 coefficients, so both devices run the same per-element code.
//
// Conventions checked against diffusers (tests/reference/make_diffusion_fixtures.py):
//   - linear betas: torch.linspace(beta_start, beta_end, T) in float64;
//   - cosine betas: betas_for_alpha_bar with diffusers' 'squaredcos_cap_v2' alpha_bar
//     (Nichol & Dhariwal 2021, s = 0.008), each beta capped at 0.999;
//   - scaled_linear betas: linspace(sqrt(beta_start), sqrt(beta_end), T)^2 (diffusers runs it
//     in float32; ddx in double, like linear);
//   - zero terminal SNR: diffusers' rescale_zero_terminal_snr (Lin et al. 2023, Algorithm 1) in
//     double. diffusers' DDPM and DDIM schedulers keep abar_{T-1} = 0 as it comes out (only its
//     sigma-based schedulers, Euler and DPM-Solver, clamp it to 2^-24 to keep sigma finite), and
//     so does ddx: with v or x0 every loss and DDPM/DDIM coefficient is finite at abar = 0, and
//     eps, whose x0 would divide by sqrt(abar) = 0, is refused (diffusers only warns);
//   - DDPM step (DDPMScheduler.step): posterior-mean coefficients from abar_t and abar_prev
//     with beta'_t = 1 - abar_t / abar_prev (= beta_t for consecutive steps), fixed_large
//     sigma^2 = beta'_t, fixed_small sigma^2 = beta'_t (1 - abar_prev) / (1 - abar_t);
//   - DDIM step (DDIMScheduler.step, set_alpha_to_one=True): abar_prev = 1 past the last step,
//     sigma = eta sqrt((1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev)), direction
//     sqrt(1 - abar_prev - sigma^2) eps with eps taken from the unclipped prediction.
// The last update (t_prev = -1) adds no noise for either sampler. For DDPM this is what both
// Ho et al.'s code (noise masked at t == 0) and diffusers (noise only when t > 0) do; it also
// makes fixedlarge's "posterior variance at t = 0" (Ho et al. substitute beta~_1 there for
// their likelihood terms) irrelevant to sampling: sigma is 0 at that step in every variant.
#include "models/diffusion.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ddx_config.h"
#include "models/model_impl.h"
#include "runtime/op_impl.h"
#include "runtime/philox.h"


// ---- schedules -------------------------------------------------------------------------------
// torch.linspace's CPU kernel: the first half counts up from start, the second half down from
// end, so both endpoints are exact and the result is symmetric.
static void linspace(double start, double end, int n, double *out) {
    if (n == 1) {
        out[0] = start;
        return;
    }
    const double step = (end - start) / (double)(n - 1);
    const int half = n / 2;
    for (int i = 0; i < n; i++) out[i] = i < half ? start + step * (double)i : end - step * (double)(n - 1 - i);
}

// Nichol & Dhariwal's alpha_bar(t), t in [0, 1], s = 0.008; the operation order is Python's
// math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2, so the doubles match diffusers'.
static double cosine_alpha_bar(double t) {
    const double pi = 3.141592653589793;
    const double v = cos((t + 0.008) / 1.008 * pi / 2.0);
    return v * v;
}

void ddx_schedule_free(ddx_schedule *s) {
    if (!s) return;
    free(s->betas);
    free(s->alphas_cumprod);
    free(s->alphas_cumprod_prev);
    free(s->posterior_variance);
    memset(s, 0, sizeof *s);
}

ddx_status ddx_schedule_init(ddx_schedule *s, const ddx_config *cfg) {
    memset(s, 0, sizeof *s);
    const int T = cfg->diffusion.timesteps;
    if (T < 1 || T > (1 << 24))
        return ddx_errorf(DDX_E_INPUT, "diffusion.timesteps: %d is out of range 1..16777216", T);
    s->T = T;
    s->param = cfg->diffusion.parameterization;
    s->variance = cfg->diffusion.variance;
    s->loss_weight = cfg->train.loss_weight;
    s->min_snr_gamma = cfg->train.min_snr_gamma;
    if (s->loss_weight == DDX_LOSS_WEIGHT_MIN_SNR && !(s->min_snr_gamma > 0.0 && isfinite(s->min_snr_gamma)))
        return ddx_errorf(DDX_E_INPUT, "train.min_snr_gamma: %g must be a positive number", s->min_snr_gamma);
    if (cfg->diffusion.rescale_zero_terminal_snr && s->param == DDX_PARAMETERIZATION_EPS)
        return ddx_errorf(DDX_E_INPUT, "diffusion.rescale_zero_terminal_snr: needs diffusion.parameterization v or x0, not eps "
                                       "(at zero SNR a noise prediction does not determine x0)");
    s->betas = malloc((size_t)T * sizeof(double));
    s->alphas_cumprod = malloc((size_t)T * sizeof(double));
    s->alphas_cumprod_prev = malloc((size_t)T * sizeof(double));
    s->posterior_variance = malloc((size_t)T * sizeof(double));
    if (!s->betas || !s->alphas_cumprod || !s->alphas_cumprod_prev || !s->posterior_variance) {
        ddx_schedule_free(s);
        return ddx_errorf(DDX_E_NOMEM, "diffusion schedule: out of host memory for %d timesteps", T);
    }
    switch (cfg->diffusion.beta_schedule) {
    case DDX_BETA_SCHEDULE_LINEAR: {
        const double b0 = cfg->diffusion.beta_start, b1 = cfg->diffusion.beta_end;
        if (!(b0 > 0.0 && b0 < 1.0 && b1 > 0.0 && b1 < 1.0)) {
            ddx_schedule_free(s);
            return ddx_errorf(DDX_E_INPUT,
                              "diffusion.beta_start/beta_end: %g and %g must both lie in (0, 1) for the linear schedule",
                              b0, b1);
        }
        linspace(b0, b1, T, s->betas);
        break;
    }
    case DDX_BETA_SCHEDULE_COSINE:
        for (int i = 0; i < T; i++) {
            const double b = 1.0 - cosine_alpha_bar((double)(i + 1) / T) / cosine_alpha_bar((double)i / T);
            s->betas[i] = b < 0.999 ? b : 0.999;
        }
        break;
    case DDX_BETA_SCHEDULE_SCALED_LINEAR: {
        const double b0 = cfg->diffusion.beta_start, b1 = cfg->diffusion.beta_end;
        if (!(b0 > 0.0 && b0 < 1.0 && b1 > 0.0 && b1 < 1.0)) {
            ddx_schedule_free(s);
            return ddx_errorf(DDX_E_INPUT,
                              "diffusion.beta_start/beta_end: %g and %g must both lie in (0, 1) for the scaled_linear schedule",
                              b0, b1);
        }
        linspace(sqrt(b0), sqrt(b1), T, s->betas);
        for (int i = 0; i < T; i++) s->betas[i] *= s->betas[i];
        break;
    }
    default:
        ddx_schedule_free(s);
        return ddx_errorf(DDX_E_INPUT, "diffusion.beta_schedule: unknown schedule %d", (int)cfg->diffusion.beta_schedule);
    }
    if (cfg->diffusion.rescale_zero_terminal_snr) {
        if (T < 2) {
            ddx_schedule_free(s);
            return ddx_errorf(DDX_E_INPUT, "diffusion.rescale_zero_terminal_snr: needs diffusion.timesteps >= 2, got %d", T);
        }
        // sqrt(abar) into alphas_cumprod, shifted and scaled there, then back to betas. The
        // last ratio is 0 / abar_{T-2}, so beta_{T-1} = 1 and the cumprod below ends at 0 exactly.
        double *sq = s->alphas_cumprod, ab = 1.0;
        for (int i = 0; i < T; i++) {
            ab *= 1.0 - s->betas[i];
            sq[i] = sqrt(ab);
        }
        const double first = sq[0], last = sq[T - 1];
        for (int i = 0; i < T; i++) {
            sq[i] -= last;
            sq[i] *= first / (first - last);
            sq[i] *= sq[i];
        }
        for (int i = T - 1; i > 0; i--) s->betas[i] = 1.0 - sq[i] / sq[i - 1];
        s->betas[0] = 1.0 - sq[0];
    }
    double ab = 1.0;
    for (int i = 0; i < T; i++) {
        s->alphas_cumprod_prev[i] = ab;
        ab *= 1.0 - s->betas[i];
        s->alphas_cumprod[i] = ab;
        s->posterior_variance[i] = s->betas[i] * (1.0 - s->alphas_cumprod_prev[i]) / (1.0 - ab);
    }
    return DDX_OK;
}

// ---- parameterisations -----------------------------------------------------------------------
ddx_param_coefs ddx_param_coefs_at(double abar, ddx_parameterization from) {
    const double sab = sqrt(abar), s1ab = sqrt(1.0 - abar);
    switch (from) {
    case DDX_PARAMETERIZATION_X0: return (ddx_param_coefs){0.0, 1.0, 1.0 / s1ab, -sab / s1ab};
    // x0 = sab x_t - s1ab v and eps = s1ab x_t + sab v (sab^2 + s1ab^2 = 1).
    case DDX_PARAMETERIZATION_V: return (ddx_param_coefs){sab, -s1ab, s1ab, sab};
    default: return (ddx_param_coefs){1.0 / sab, -s1ab / sab, 0.0, 1.0};
    }
}

double ddx_param_convert(double abar, ddx_parameterization from, ddx_parameterization to, double x_t, double pred) {
    if (from == to) return pred;
    const ddx_param_coefs k = ddx_param_coefs_at(abar, from);
    const double sab = sqrt(abar), s1ab = sqrt(1.0 - abar);
    if (to == DDX_PARAMETERIZATION_X0) return k.x0_xt * x_t + k.x0_pred * pred;
    if (to == DDX_PARAMETERIZATION_EPS) return k.eps_xt * x_t + k.eps_pred * pred;
    // v from eps or x0 directly, not through x0 and eps both: one product, one difference and
    // one division, so a round trip loses about an ulp times the pair's conditioning
    // (1 / sqrt(abar) or 1 / sqrt(1 - abar), tests/test_schedules.c) and nothing more.
    if (from == DDX_PARAMETERIZATION_EPS) return (pred - s1ab * x_t) / sab;   // v = (eps - s1ab x_t) / sab
    return (sab * x_t - pred) / s1ab;                                         // v = (sab x_t - x0) / s1ab
}

double ddx_schedule_snr(const ddx_schedule *s, int t) {
    const double ab = s->alphas_cumprod[t];
    return ab / (1.0 - ab);
}

double ddx_diffusion_loss_weight(const ddx_schedule *s, int t) {
    if (s->loss_weight != DDX_LOSS_WEIGHT_MIN_SNR) return 1.0;
    const double snr = ddx_schedule_snr(s, t), m = snr < s->min_snr_gamma ? snr : s->min_snr_gamma;
    switch (s->param) {
    case DDX_PARAMETERIZATION_X0: return m;
    case DDX_PARAMETERIZATION_V: return m / (snr + 1.0);
    default: return m / snr;
    }
}

ddx_status ddx_diffusion_loss_wsqrt(const ddx_schedule *s, int64_t N, const float *t, float *wsqrt) {
    if (!s || !s->alphas_cumprod) return ddx_errorf(DDX_E_INTERNAL, "diffusion_loss: no schedule");
    for (int64_t i = 0; i < N; i++) {
        const int ti = (int)t[i];
        if (!(t[i] >= 0.0f && ti < s->T))
            return ddx_errorf(DDX_E_INTERNAL, "diffusion_loss: timestep %g outside 0..%d", (double)t[i], s->T - 1);
        wsqrt[i] = (float)sqrt(ddx_diffusion_loss_weight(s, ti));
    }
    return DDX_OK;
}

// ---- the training loss -----------------------------------------------------------------------
ddx_status ddx_diffusion_loss_inputs(const ddx_schedule *s, int64_t N, uint64_t seed, uint64_t step, float *tf, float *coef,
                                     float *vcoef) {
    return ddx_diffusion_loss_inputs_at(s, N, seed, step, 0, tf, coef, vcoef);
}

ddx_status ddx_diffusion_loss_inputs_at(const ddx_schedule *s, int64_t N, uint64_t seed, uint64_t step, uint64_t sample0,
                                        float *tf, float *coef, float *vcoef) {
    if (!s || !s->alphas_cumprod) return ddx_errorf(DDX_E_INTERNAL, "diffusion_loss: no schedule");
    if (step > UINT32_MAX)
        return ddx_errorf(DDX_E_INPUT, "diffusion_loss: step %llu does not fit the 32-bit Philox step word",
                          (unsigned long long)step);
    // The uniforms land in tf first and become the timesteps in place.
    DDX_TRY(ddx_philox_uniform(tf, N, seed, DDX_RNG_STREAM_TIMESTEP, step, sample0));
    const int T = s->T;
    for (int64_t i = 0; i < N; i++) {
        // u < 1 always, so floor(u T) <= T - 1; the clamp guards the rounding of the product.
        int t = (int)floor((double)tf[i] * T);
        if (t > T - 1) t = T - 1;
        if (t < 0) t = 0;
        const double ab = s->alphas_cumprod[t];
        tf[i] = (float)t;
        coef[2 * i] = (float)sqrt(ab);
        coef[2 * i + 1] = (float)sqrt(1.0 - ab);
        // v = sqrt(abar) eps - sqrt(1 - abar) x0: a q_sample of x0 with the same noise.
        if (vcoef) {
            vcoef[2 * i] = (float)-sqrt(1.0 - ab);
            vcoef[2 * i + 1] = (float)sqrt(ab);
        }
    }
    return DDX_OK;
}

static bool loss_x0_ok(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, ddx_tensor *x0) {
    if (!ddx_op_ok(c, "diffusion_loss", 1, &x0)) return false;
    if (!m || !s || !s->alphas_cumprod) {
        ddx_op_fail(c, DDX_E_INTERNAL, "diffusion_loss: no model or schedule");
        return false;
    }
    if (x0->ndim != 4 || x0->shape[0] < 1) {
        char b[64];
        ddx_op_fail(c, DDX_E_INPUT, "diffusion_loss: x0 is %s, want [N, H, W, C] with N >= 1", ddx_shape_str(x0, b, sizeof b));
        return false;
    }
    return true;
}

ddx_tensor *ddx_diffusion_loss_from(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, ddx_tensor *x0, ddx_tensor *y,
                                    ddx_tensor *t_t, ddx_tensor *coef_t, ddx_tensor *vcoef_t, ddx_rng_key key) {
    return ddx_diffusion_loss_from_cond(c, m, s, x0, NULL, y, t_t, coef_t, vcoef_t, key);
}

ddx_tensor *ddx_diffusion_loss_from_cond(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, ddx_tensor *x0,
                                         ddx_tensor *cond, ddx_tensor *y, ddx_tensor *t_t, ddx_tensor *coef_t,
                                         ddx_tensor *vcoef_t, ddx_rng_key key) {
    return ddx_diffusion_loss_from_w(c, m, s, x0, cond, y, t_t, coef_t, vcoef_t, NULL, key);
}

ddx_tensor *ddx_diffusion_loss_from_w(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, ddx_tensor *x0,
                                      ddx_tensor *cond, ddx_tensor *y, ddx_tensor *t_t, ddx_tensor *coef_t,
                                      ddx_tensor *vcoef_t, ddx_tensor *wsqrt_t, ddx_rng_key key) {
    if (!loss_x0_ok(c, m, s, x0)) return NULL;
    const bool weighted = s->loss_weight == DDX_LOSS_WEIGHT_MIN_SNR;
    if (weighted && (!wsqrt_t || wsqrt_t->dtype != DDX_F32 || wsqrt_t->ndim != 1 || wsqrt_t->shape[0] != x0->shape[0]))
        return ddx_op_fail(c, DDX_E_INTERNAL, "diffusion_loss: train.loss_weight min_snr needs the [N] f32 weight tensor");
    if (!t_t || !coef_t || (s->param == DDX_PARAMETERIZATION_V && !vcoef_t))
        return ddx_op_fail(c, DDX_E_INTERNAL, "diffusion_loss: missing timestep or coefficient tensors");
    if (cond && (cond->ndim != 4 || cond->shape[0] != x0->shape[0] || cond->shape[1] != x0->shape[1] ||
                 cond->shape[2] != x0->shape[2])) {
        char b[64], b2[64];
        return ddx_op_fail(c, DDX_E_INPUT, "diffusion_loss: conditioning input %s does not match x0 %s",
                           ddx_shape_str(cond, b, sizeof b), ddx_shape_str(x0, b2, sizeof b2));
    }
    ddx_tensor *x_t = ddx_q_sample(c, x0, coef_t, key);        // [N, H, W, C]
    ddx_tensor *xin = cond ? ddx_concat(c, x_t, cond) : x_t;   // [N, H, W, C + Cc]
    ddx_tensor *pred = ddx_model_forward(c, m, xin, t_t, y);   // [N, H, W, C]
    ddx_tensor *target = NULL;
    switch (s->param) {
    case DDX_PARAMETERIZATION_EPS: target = ddx_randn(c, DDX_F32, x0->ndim, x0->shape, key); break;
    case DDX_PARAMETERIZATION_X0: target = x0; break;
    case DDX_PARAMETERIZATION_V: target = ddx_q_sample(c, x0, vcoef_t, key); break;
    default: return ddx_op_fail(c, DDX_E_INPUT, "diffusion_loss: unknown parameterization %d", (int)s->param);
    }
    if (weighted) {
        // mean_i w_i mean_e (pred - target)^2 as the mse of both sides scaled by sqrt(w_i): the
        // existing loss op, and w_i's rounding through sqrt is far below fp32 tolerance.
        ddx_tensor *w = ddx_reshape(c, wsqrt_t, 4, (int64_t[]){x0->shape[0], 1, 1, 1});   // [N, 1, 1, 1]
        pred = ddx_mul(c, pred, w);
        target = ddx_mul(c, target, w);
    }
    return ddx_mse_loss(c, pred, target);
}

ddx_tensor *ddx_diffusion_loss(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, ddx_tensor *x0,
                               ddx_tensor *y, uint64_t seed, uint64_t step) {
    return ddx_diffusion_loss_at(c, m, s, x0, NULL, y, seed, step, 0);
}

ddx_tensor *ddx_diffusion_loss_at(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, ddx_tensor *x0,
                                  ddx_tensor *cond, ddx_tensor *y, uint64_t seed, uint64_t step, uint64_t sample0) {
    if (!loss_x0_ok(c, m, s, x0)) return NULL;
    const int64_t N = x0->shape[0];
    const bool v = s->param == DDX_PARAMETERIZATION_V;
    const bool weighted = s->loss_weight == DDX_LOSS_WEIGHT_MIN_SNR;
    // Host scratch: t as floats, then the [N, 2] coefficient pairs (q_sample's and, for v, the
    // target's), then the [N] loss weights' square roots.
    float *h = malloc((size_t)N * 6 * sizeof(float));
    if (!h) return ddx_op_fail(c, DDX_E_NOMEM, "diffusion_loss: out of host memory for %lld samples", (long long)N);
    float *tf = h, *coef = h + N, *vcoef = h + 3 * N;
    ddx_status st = ddx_diffusion_loss_inputs_at(s, N, seed, step, sample0, tf, coef, v ? vcoef : NULL);
    if (st == DDX_OK && weighted) st = ddx_diffusion_loss_wsqrt(s, N, tf, h + 5 * N);
    if (st != DDX_OK) {
        free(h);
        ddx_ctx_fail(c, st);
        return NULL;
    }
    const int64_t cshape[2] = {N, 2}, tshape[1] = {N};
    ddx_tensor *coef_t = ddx_new(c, DDX_F32, 2, cshape);             // [N, 2]
    ddx_tensor *t_t = ddx_new(c, DDX_F32, 1, tshape);                // [N]
    ddx_tensor *vcoef_t = v ? ddx_new(c, DDX_F32, 2, cshape) : NULL;   // [N, 2]
    ddx_tensor *w_t = weighted ? ddx_new(c, DDX_F32, 1, tshape) : NULL;   // [N]
    if (!coef_t || !t_t || (v && !vcoef_t) || (weighted && !w_t)) {
        free(h);
        return NULL;
    }
    st = ddx_memcpy(coef_t->data, c->device, coef, DDX_CPU, (size_t)N * 2 * sizeof(float));
    if (st == DDX_OK) st = ddx_memcpy(t_t->data, c->device, tf, DDX_CPU, (size_t)N * sizeof(float));
    if (st == DDX_OK && vcoef_t) st = ddx_memcpy(vcoef_t->data, c->device, vcoef, DDX_CPU, (size_t)N * 2 * sizeof(float));
    if (st == DDX_OK && w_t) st = ddx_memcpy(w_t->data, c->device, h + 5 * N, DDX_CPU, (size_t)N * sizeof(float));
    free(h);
    if (st != DDX_OK) {
        ddx_ctx_fail(c, st);
        return NULL;
    }
    // Noise element e of row i is element (sample0 + i) * H*W*C + e of the global batch's draw.
    const uint64_t per = (uint64_t)(ddx_numel(x0) / N);
    if (sample0 > (UINT64_MAX - (uint64_t)ddx_numel(x0)) / per)
        return ddx_op_fail(c, DDX_E_INPUT, "diffusion_loss: sample index %llu overflows the 64-bit Philox index",
                           (unsigned long long)sample0);
    const ddx_rng_key key = {.seed = seed, .stream = DDX_RNG_STREAM_Q_SAMPLE, .step = (uint32_t)step, .offset = sample0 * per};
    return ddx_diffusion_loss_from_w(c, m, s, x0, cond, y, t_t, coef_t, vcoef_t, w_t, key);
}

// ---- sampler timesteps -----------------------------------------------------------------------
// sigma(t) = sqrt((1 - abar_t) / abar_t): the noise level of x_t / sqrt(abar_t) (diffusers' sigmas).
// A zero-terminal-SNR schedule has abar = 0 at t = T-1, an infinite sigma: there, as diffusers'
// Euler and DPM-Solver schedulers do, abar is taken as 2^-24 (sigma about 4096).
static double sigma_of(const ddx_schedule *s, int t) {
    double ab = s->alphas_cumprod[t];
    if (ab <= 0.0) ab = 0x1p-24;
    return sqrt((1.0 - ab) / ab);
}

// diffusers' _sigma_to_t: piecewise-linear interpolation of t in log sigma, clamped to [0, T-1].
static double sigma_to_t(const ddx_schedule *s, double sigma) {
    const int T = s->T;
    if (T < 2) return 0.0;
    const double ls = log(sigma > 1e-10 ? sigma : 1e-10);
    // The last index whose log sigma is <= ls (log sigma increases with t), at most T - 2.
    int lo = 0;
    for (int t = 0; t < T; t++)
        if (ls - log(sigma_of(s, t)) >= 0.0) lo = t;
    if (lo > T - 2) lo = T - 2;
    const double l0 = log(sigma_of(s, lo)), l1 = log(sigma_of(s, lo + 1));
    double w = (l0 - ls) / (l0 - l1);
    w = w < 0.0 ? 0.0 : (w > 1.0 ? 1.0 : w);
    return (1.0 - w) * (double)lo + w * (double)(lo + 1);
}

void ddx_karras_sigmas(const ddx_schedule *s, int n, double *sig, double *t) {
    const double rho = 7.0;
    const double smin = sigma_of(s, 0), smax = sigma_of(s, s->T - 1);
    const double lo = pow(smin, 1.0 / rho), hi = pow(smax, 1.0 / rho);
    for (int k = 0; k < n; k++) {
        const double ramp = n > 1 ? (double)k / (double)(n - 1) : 0.0;
        sig[k] = pow(hi + ramp * (lo - hi), rho);
        t[k] = sigma_to_t(s, sig[k]);
    }
}

int ddx_sampler_timesteps(const ddx_schedule *s, ddx_sampler sampler, int steps, ddx_spacing spacing, int *ts) {
    const int T = s->T;
    if (sampler == DDX_SAMPLER_DDPM) {
        for (int k = 0; k < T; k++) ts[k] = T - 1 - k;
        return T;
    }
    if (steps < 1 || steps > T) return 0;
    int n = 0;
    if (spacing == DDX_SPACING_TRAILING) {
        // diffusers' 'trailing': round(T - k T / steps) - 1 (numpy's round: half to even), so
        // the first step starts at t = T - 1, where the leading spacing starts at most at T - T / steps.
        for (int k = 0; k < steps; k++) {
            const int t = (int)nearbyint((double)T - (double)k * ((double)T / (double)steps)) - 1;
            if (n > 0 && ts[n - 1] == t) continue;
            ts[n++] = t < 0 ? 0 : t;
        }
        return n;
    }
    if (spacing == DDX_SPACING_KARRAS) {
        // The Karras sigmas' timesteps, rounded (diffusers DPMSolverMultistepScheduler); repeats dropped.
        double *sig = malloc(2 * (size_t)steps * sizeof(double));
        if (!sig) return 0;
        ddx_karras_sigmas(s, steps, sig, sig + steps);
        for (int k = 0; k < steps; k++) {
            const int t = (int)nearbyint(sig[steps + k]);
            if (n > 0 && ts[n - 1] == t) continue;
            ts[n++] = t;
        }
        free(sig);
        return n;
    }
    if (spacing == DDX_SPACING_UNIFORM || spacing == DDX_SPACING_LEADING) {
        // diffusers' 'leading' spacing: k * (T // steps), k = 0 .. steps-1.
        const int ratio = T / steps;
        for (int k = steps - 1; k >= 0; k--) ts[n++] = k * ratio;
        return n;
    }
    // Quadratic (DDIM paper appendix D.2, the authors' code): int(linspace(0, sqrt(0.8 T),
    // steps)^2), numpy's linspace (k * step, last point exactly the end). Small k can round to
    // the same integer; a repeated timestep would spend a model call on a step that goes
    // nowhere, so duplicates are dropped and fewer than `steps` timesteps may come back.
    const double end = sqrt((double)T * 0.8);
    const double step = steps > 1 ? end / (double)(steps - 1) : 0.0;
    for (int k = steps - 1; k >= 0; k--) {
        const double v = k == steps - 1 && steps > 1 ? end : (double)k * step;
        int t = (int)(v * v);
        if (t > T - 1) t = T - 1;
        if (n > 0 && ts[n - 1] == t) continue;
        ts[n++] = t;
    }
    return n;
}

// ---- sampler coefficients --------------------------------------------------------------------
ddx_sampler_step_params ddx_sampler_coefs(const ddx_schedule *s, ddx_sampler sampler, int t, int t_prev, double eta) {
    ddx_sampler_step_params p;
    memset(&p, 0, sizeof p);
    if (t < 0 || t >= s->T || t_prev < -1 || t_prev >= t || !(eta >= 0.0)) {
        // Not finite, so ddx_sampler_step refuses it with a message instead of producing garbage.
        p.a = NAN;
        return p;
    }
    const double ab = s->alphas_cumprod[t];
    const double abp = t_prev >= 0 ? s->alphas_cumprod[t_prev] : 1.0;
    const double sab = sqrt(ab), s1ab = sqrt(1.0 - ab);
    // x0 = a x_t + b out and eps = f x_t + g out, by what the network predicts.
    double a, b, f, g;
    switch (s->param) {
    case DDX_PARAMETERIZATION_X0:
        a = 0.0, b = 1.0, f = 1.0 / s1ab, g = -sab / s1ab;
        break;
    case DDX_PARAMETERIZATION_V:
        a = sab, b = -s1ab, f = s1ab, g = sab;
        break;
    default:   // eps
        a = 1.0 / sab, b = -s1ab / sab, f = 0.0, g = 1.0;
        break;
    }
    double c, d, e, var;
    if (sampler == DDX_SAMPLER_DDPM) {
        const double beta = 1.0 - ab / abp, alpha = ab / abp;
        c = sqrt(abp) * beta / (1.0 - ab);
        d = sqrt(alpha) * (1.0 - abp) / (1.0 - ab);
        e = 0.0;
        var = s->variance == DDX_VARIANCE_FIXEDSMALL ? beta * (1.0 - abp) / (1.0 - ab) : beta;
        if (var < 0.0) var = 0.0;
        if (t_prev < 0) var = 0.0;
    } else {
        var = (1.0 - abp) / (1.0 - ab) * (1.0 - ab / abp);
        if (var < 0.0) var = 0.0;
        const double sig = eta * sqrt(var);
        var = sig * sig;
        c = sqrt(abp);
        d = 0.0;
        const double dir = 1.0 - abp - var;
        e = sqrt(dir > 0.0 ? dir : 0.0);
    }
    p.a = (float)a;
    p.b = (float)b;
    p.f = (float)f;
    p.g = (float)g;
    p.c = (float)c;
    p.d = (float)d;
    p.e = (float)e;
    p.sigma = (float)sqrt(var);
    p.clip = true;
    return p;
}

// ---- multistep / two-stage samplers (sampler_step_ms) ------------------------------------------
// Every update is written on ddx's variance-preserving x_t. The sigma-space samplers of diffusers
// (Heun, Euler ancestral) keep x_s = x_t sqrt(1 + sigma^2) and feed the model x_s / sqrt(1 +
// sigma^2) = x_t, so their updates become linear maps of x_t, D and the history after dividing
// by the new level's sqrt(1 + sigma'^2). DPM-Solver++ already works on x_t (alpha = 1 / sqrt(1
// + sigma^2), sigma_t = sigma alpha, lambda = -log sigma).
bool ddx_sampler_is_ms(ddx_sampler sampler) {
    return sampler == DDX_SAMPLER_DPMPP2M || sampler == DDX_SAMPLER_DPMPP3M || sampler == DDX_SAMPLER_HEUN ||
           sampler == DDX_SAMPLER_EULER_A;
}

void ddx_sampler_plan_free(ddx_sampler_plan *pl) {
    if (!pl) return;
    free(pl->t);
    free(pl->p);
    memset(pl, 0, sizeof *pl);
}

// x0 = a x_t + b out at noise level sig (diffusers' convert_model_output / pred_original_sample).
static void x0_coefs(ddx_parameterization param, double sig, ddx_sampler_ms_params *p) {
    const double r = sqrt(1.0 + sig * sig), al = 1.0 / r, sv = sig / r;
    switch (param) {
    case DDX_PARAMETERIZATION_X0: p->a = 0.0f, p->b = 1.0f; break;
    case DDX_PARAMETERIZATION_V: p->a = (float)al, p->b = (float)-sv; break;
    default: p->a = (float)r, p->b = (float)-sig; break;   // eps: (x - sigma_t eps) / alpha_t
    }
}

ddx_status ddx_sampler_plan_init(ddx_sampler_plan *pl, const ddx_schedule *s, ddx_sampler sampler, int steps,
                                 ddx_spacing spacing) {
    memset(pl, 0, sizeof *pl);
    if (!ddx_sampler_is_ms(sampler)) return ddx_errorf(DDX_E_INTERNAL, "sampler plan: not a multistep sampler");
    if (steps < 1 || steps > s->T)
        return ddx_errorf(DDX_E_INPUT, "sample.steps: %d is out of range 1..%d (diffusion.timesteps)", steps, s->T);
    // The noise levels visited, sig[0] > ... > sig[S-1] > sig[S] = 0, and the model's time at each.
    double *sig = malloc(2 * ((size_t)s->T + 1) * sizeof(double));
    int *ts = malloc((size_t)s->T * sizeof(int));
    if (!sig || !ts) {
        free(sig), free(ts);
        return ddx_errorf(DDX_E_NOMEM, "sampler plan: out of host memory");
    }
    double *tm = sig + s->T + 1;
    int S;
    if (spacing == DDX_SPACING_KARRAS) {
        S = steps;
        ddx_karras_sigmas(s, S, sig, tm);
        // diffusers rounds the Karras timesteps for DPM-Solver++ (a linear or scaled-linear
        // schedule) and keeps them fractional for Heun and Euler.
        if (sampler == DDX_SAMPLER_DPMPP2M || sampler == DDX_SAMPLER_DPMPP3M)
            for (int k = 0; k < S; k++) tm[k] = nearbyint(tm[k]);
    } else {
        S = ddx_sampler_timesteps(s, DDX_SAMPLER_DDIM, steps, spacing, ts);
        for (int k = 0; k < S; k++) tm[k] = ts[k], sig[k] = sigma_of(s, ts[k]);
    }
    sig[S] = 0.0;
    free(ts);
    const int n = sampler == DDX_SAMPLER_HEUN ? 2 * S - 1 : S;
    pl->t = malloc((size_t)n * sizeof(double));
    pl->p = calloc((size_t)n, sizeof(ddx_sampler_ms_params));
    if (!pl->t || !pl->p) {
        free(sig);
        ddx_sampler_plan_free(pl);
        return ddx_errorf(DDX_E_NOMEM, "sampler plan: out of host memory");
    }
    pl->n = n, pl->steps = S;
    pl->hist = sampler == DDX_SAMPLER_HEUN ? DDX_PLAN_HIST_STAGE : DDX_PLAN_HIST_MULTISTEP;
    pl->nhist = sampler == DDX_SAMPLER_EULER_A ? 0 : sampler == DDX_SAMPLER_DPMPP2M ? 1 : 2;
    for (int i = 0; i < S; i++) {
        const double s0 = sig[i], s1 = sig[i + 1];
        const double r0 = sqrt(1.0 + s0 * s0), r1 = sqrt(1.0 + s1 * s1);
        if (sampler == DDX_SAMPLER_EULER_A) {
            // sigma_up = sqrt(s1^2 (s0^2 - s1^2) / s0^2), sigma_down = sqrt(s1^2 - sigma_up^2);
            // x_s' = x_s + (x_s - D) / s0 (sigma_down - s0) + sigma_up z.
            ddx_sampler_ms_params *p = &pl->p[i];
            x0_coefs(s->param, s0, p);
            double up2 = s1 * s1 * (s0 * s0 - s1 * s1) / (s0 * s0);
            if (up2 < 0.0) up2 = 0.0;
            double dn2 = s1 * s1 - up2;
            const double dn = sqrt(dn2 > 0.0 ? dn2 : 0.0);
            p->cx = (float)(r0 * dn / (s0 * r1));
            p->cd = (float)((1.0 - dn / s0) / r1);
            p->sigma = (float)(sqrt(up2) / r1);
            pl->t[i] = tm[i];
            continue;
        }
        if (sampler == DDX_SAMPLER_HEUN) {
            // Stage 1 (Euler): x_s' = x_s + d1 dt, d1 = (x_s - D1) / s0, dt = s1 - s0.
            ddx_sampler_ms_params *p = &pl->p[2 * i];
            x0_coefs(s->param, s0, p);
            p->cx = (float)(r0 * s1 / (s0 * r1));
            p->cd = (float)((1.0 - s1 / s0) / r1);
            pl->t[2 * i] = tm[i];
            if (i == S - 1) break;   // to sigma 0: the Euler step alone (diffusers does the same)
            // Stage 2 at s1 (history: h1 = x_t of stage 1, h2 = D1):
            // x_s'' = x_s + dt / 2 (d1 + d2), d2 = (x_s' - D2) / s1.
            ddx_sampler_ms_params *q = &pl->p[2 * i + 1];
            x0_coefs(s->param, s1, q);
            const double dt = s1 - s0;
            q->cx = (float)(dt / (2.0 * s1));
            q->cd = (float)(-dt / (2.0 * s1 * r1));
            q->c1 = (float)(r0 * (1.0 + dt / (2.0 * s0)) / r1);
            q->c2 = (float)(-dt / (2.0 * s0 * r1));
            pl->t[2 * i + 1] = tm[i + 1];
            continue;
        }
        // DPM-Solver++ multistep (diffusers: lower_order_final, final sigma 0): order 1 at the
        // first and the last step, at most 2 at the second and (fewer than 15 steps) the
        // second-to-last step.
        ddx_sampler_ms_params *p = &pl->p[i];
        x0_coefs(s->param, s0, p);
        pl->t[i] = tm[i];
        if (s1 == 0.0) {
            p->cx = 0.0f, p->cd = 1.0f;   // alpha = 1, sigma_t = 0: the prediction itself
            continue;
        }
        const int maxo = sampler == DDX_SAMPLER_DPMPP3M ? 3 : 2;
        int order = i + 1 < maxo ? i + 1 : maxo;
        if (order > 2 && i == S - 2 && S < 15) order = 2;
        const double al1 = 1.0 / r1, sv1 = s1 / r1, sv0 = s0 / r0;
        const double h = log(s0 / s1);                 // lambda_t - lambda_s0
        const double em = -expm1(-h);                  // 1 - exp(-h)
        const double E = al1 * em;                     // the D0 coefficient of every order
        double m[3] = {E, 0.0, 0.0};                   // coefficients of m0 = D, m1 = h1, m2 = h2
        if (order >= 2) {
            const double hh0 = log(sig[i - 1] / s0), q0 = hh0 / h;
            if (order == 2) {
                // D1 = (m0 - m1) / r0; x = ... + 0.5 E D1 (midpoint)
                m[0] += 0.5 * E / q0, m[1] -= 0.5 * E / q0;
            } else {
                const double hh1 = log(sig[i - 2] / sig[i - 1]), q1 = hh1 / h;
                const double F = al1 * (1.0 - em / h);                    // alpha_t ((e^-h - 1) / h + 1)
                const double G = al1 * ((h - em) / (h * h) - 0.5);        // alpha_t ((e^-h - 1 + h) / h^2 - 0.5)
                const double d10[3] = {1.0 / q0, -1.0 / q0, 0.0};
                const double dif[3] = {1.0 / q0, -1.0 / q0 - 1.0 / q1, 1.0 / q1};
                for (int j = 0; j < 3; j++) {
                    const double D1 = d10[j] + q0 / (q0 + q1) * dif[j], D2 = dif[j] / (q0 + q1);
                    m[j] += F * D1 - G * D2;
                }
            }
        }
        p->cx = (float)(sv1 / sv0);
        p->cd = (float)m[0];
        p->c1 = (float)m[1];
        p->c2 = (float)m[2];
    }
    free(sig);
    return DDX_OK;
}
