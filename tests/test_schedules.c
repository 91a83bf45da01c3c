// Modern schedules and objectives (models/diffusion.c):
//   - scaled_linear betas and zero-terminal-SNR rescaling (linear / cosine / scaled_linear)
//     against diffusers (tests/data/diffusion/schedule_fixtures.h from
//     tests/reference/make_schedule_fixtures.py): float64 formulas and diffusers' float32 tensors;
//   - DDPM / DDIM steps at zero terminal SNR (t = T-1, v and x0) against diffusers' schedulers;
//   - everything finite at zero terminal SNR: every DDPM / DDIM coefficient, the loss inputs and
//     weights at every t, a sampler step and a loss forced to t = T-1; eps is refused;
//   - the eps / x0 / v conversions round-trip in double at every t, and the sampler's
//     coefficients and the loss's v target are those conversions;
//   - Min-SNR weights: the formulas per parameterisation, and the weighted loss with a stand-in
//     model equals mean_i w_i mean_e (pred - target)^2 computed here in double;
//   - a tiny U-Net trained with v-prediction, cosine schedule and Min-SNR lowers its loss.
// Usage: test_schedules   (run from tests/, where meson runs it)
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/diffusion.h"
#include "models/model_impl.h"
#include "runtime/op_impl.h"
#include "runtime/philox.h"
#include "train/trainer.h"

#include "data/diffusion/schedule_fixtures.h"

#include "check.h"

static const ddx_parameterization PM[3] = {DDX_PARAMETERIZATION_EPS, DDX_PARAMETERIZATION_X0, DDX_PARAMETERIZATION_V};
static const char *const PNAME[3] = {"eps", "x0", "v"};

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double rnd(void) {   // uniform in [-1, 1), independent of the library's Philox
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * 0x1p-52 - 1.0;
}

// schedule: 0 linear (1e-4 .. 0.02), 1 cosine, 2 scaled_linear (Stable Diffusion's 0.00085 .. 0.012).
static void sched_cfg(ddx_config *cfg, int schedule, bool zsnr, ddx_parameterization param, int T) {
    ddx_config_defaults(cfg);
    cfg->diffusion.timesteps = T;
    cfg->diffusion.beta_schedule = schedule == 0   ? DDX_BETA_SCHEDULE_LINEAR
                                   : schedule == 1 ? DDX_BETA_SCHEDULE_COSINE
                                                   : DDX_BETA_SCHEDULE_SCALED_LINEAR;
    cfg->diffusion.beta_start = schedule == 2 ? FS_SD_START : 1e-4;
    cfg->diffusion.beta_end = schedule == 2 ? FS_SD_END : 0.02;
    cfg->diffusion.rescale_zero_terminal_snr = zsnr;
    cfg->diffusion.parameterization = param;
}

static ddx_status make(ddx_schedule *s, int schedule, bool zsnr, ddx_parameterization param, ddx_variance var) {
    ddx_config cfg;
    sched_cfg(&cfg, schedule, zsnr, param, FS_T);
    cfg.diffusion.variance = var;
    return ddx_schedule_init(s, &cfg);
}

// max over t of |got - ref| / (rel |ref| + abs)
static double worst_ratio(const double *got, const double *ref, const float *ref32, int n, double rel, double abs_) {
    double w = 0;
    for (int i = 0; i < n; i++) {
        const double r = ref ? ref[i] : (double)ref32[i];
        const double e = fabs(got[i] - r) / (rel * fabs(r) + abs_);
        if (!(e <= w)) w = e;
    }
    return w;
}

// ---- schedules vs diffusers --------------------------------------------------------------------
static void test_schedules(void) {
    static const char *const names[3] = {"linear", "cosine", "scaled_linear"};
    const double *zb64[3] = {fs_linear_zsnr_betas64, fs_cosine_zsnr_betas64, fs_scaled_linear_zsnr_betas64};
    const double *za64[3] = {fs_linear_zsnr_abar64, fs_cosine_zsnr_abar64, fs_scaled_linear_zsnr_abar64};
    const float *za32[3] = {fs_linear_zsnr_abar32, fs_cosine_zsnr_abar32, fs_scaled_linear_zsnr_abar32};
    // scaled_linear, not rescaled: the float64 formula to a few ulps, diffusers' float32 tensors
    // to their own rounding (betas: a float32 linspace squared; abar: a float32 cumprod).
    ddx_schedule s;
    ddx_status st = make(&s, 2, false, DDX_PARAMETERIZATION_EPS, DDX_VARIANCE_FIXEDLARGE);
    CHECK(st == DDX_OK, "scaled_linear: %s", ddx_last_error());
    if (st == DDX_OK) {
        const double rb = worst_ratio(s.betas, fs_scaled_linear_betas64, NULL, FS_T, 1e-14, 0);
        const double ra = worst_ratio(s.alphas_cumprod, fs_scaled_linear_abar64, NULL, FS_T, 1e-12, 0);
        const double ra32 = worst_ratio(s.alphas_cumprod, NULL, fs_scaled_linear_abar32, FS_T, 1e-4, 0);
        CHECK(rb <= 1 && ra <= 1 && ra32 <= 1, "scaled_linear: betas %.3g, abar %.3g (f64), abar %.3g (diffusers f32) of tolerance",
              rb, ra, ra32);
        CHECK(s.betas[0] == FS_SD_START && fabs(s.betas[FS_T - 1] - FS_SD_END) <= 4 * DBL_EPSILON * FS_SD_END,
              "scaled_linear: ends %.17g %.17g, want beta_start and beta_end", s.betas[0], s.betas[FS_T - 1]);
        printf("  scaled_linear: betas %.2g, abar %.2g (f64), %.2g (f32) of tolerance\n", rb, ra, ra32);
        ddx_schedule_free(&s);
    }
    for (int k = 0; k < 3; k++) {
        st = make(&s, k, true, DDX_PARAMETERIZATION_V, DDX_VARIANCE_FIXEDLARGE);
        CHECK(st == DDX_OK, "%s zsnr: %s", names[k], ddx_last_error());
        if (st != DDX_OK) continue;
        // Shifting sqrt(abar) subtracts nearly equal numbers near t = T-1, so the absolute floor
        // is that of the shift (~1e-16 of sqrt(abar_0) squared), not of abar itself.
        const double rb = worst_ratio(s.betas, zb64[k], NULL, FS_T, 1e-12, 1e-15);
        const double ra = worst_ratio(s.alphas_cumprod, za64[k], NULL, FS_T, 1e-12, 1e-15);
        const double ra32 = worst_ratio(s.alphas_cumprod, NULL, za32[k], FS_T, 1e-4, 1e-7);
        CHECK(rb <= 1 && ra <= 1 && ra32 <= 1, "%s zsnr: betas %.3g, abar %.3g (f64), abar %.3g (diffusers f32) of tolerance",
              names[k], rb, ra, ra32);
        CHECK(s.alphas_cumprod[FS_T - 1] == 0.0 && s.betas[FS_T - 1] == 1.0 && s.alphas_cumprod[FS_T - 2] > 0.0,
              "%s zsnr: abar[T-1] = %g, beta[T-1] = %.17g, abar[T-2] = %g", names[k], s.alphas_cumprod[FS_T - 1],
              s.betas[FS_T - 1], s.alphas_cumprod[FS_T - 2]);
        // The rescaling keeps abar_0 (its sqrt is the scaling's fixed point).
        ddx_schedule plain;
        if (make(&plain, k, false, DDX_PARAMETERIZATION_V, DDX_VARIANCE_FIXEDLARGE) == DDX_OK) {
            CHECK(fabs(s.alphas_cumprod[0] - plain.alphas_cumprod[0]) <= 4 * DBL_EPSILON, "%s zsnr: abar_0 %.17g, was %.17g",
                  names[k], s.alphas_cumprod[0], plain.alphas_cumprod[0]);
            ddx_schedule_free(&plain);
        }
        bool ok = true;
        for (int t = 0; t < FS_T; t++)
            ok &= isfinite(s.posterior_variance[t]) && s.posterior_variance[t] >= 0 && s.betas[t] > 0 && s.betas[t] <= 1;
        CHECK(ok, "%s zsnr: a beta or posterior variance is out of range or not finite", names[k]);
        printf("  %s zero terminal SNR: betas %.2g, abar %.2g (f64), %.2g (f32) of tolerance\n", names[k], rb, ra, ra32);
        ddx_schedule_free(&s);
    }
    // eps at zero terminal SNR is refused, naming the key; bad scaled_linear ends too.
    st = make(&s, 0, true, DDX_PARAMETERIZATION_EPS, DDX_VARIANCE_FIXEDLARGE);
    CHECK(st == DDX_E_INPUT && strstr(ddx_last_error(), "rescale_zero_terminal_snr"), "eps + zsnr: %d %s", (int)st,
          ddx_last_error());
    if (st == DDX_OK) ddx_schedule_free(&s);
    ddx_config cfg;
    sched_cfg(&cfg, 2, false, DDX_PARAMETERIZATION_EPS, 100);
    cfg.diffusion.beta_start = 0;
    st = ddx_schedule_init(&s, &cfg);
    CHECK(st == DDX_E_INPUT && strstr(ddx_last_error(), "beta_start"), "scaled_linear beta_start 0: %s", ddx_last_error());
    if (st == DDX_OK) ddx_schedule_free(&s);
    sched_cfg(&cfg, 0, true, DDX_PARAMETERIZATION_V, 1);
    st = ddx_schedule_init(&s, &cfg);
    CHECK(st == DDX_E_INPUT && strstr(ddx_last_error(), "timesteps"), "zsnr T = 1: %s", ddx_last_error());
    if (st == DDX_OK) ddx_schedule_free(&s);
}

// ---- sampler steps at zero terminal SNR vs diffusers ---------------------------------------------
static void test_zsnr_steps(ddx_ctx *c) {
    double worst = 0;
    for (size_t j = 0; j < sizeof fs_steps / sizeof fs_steps[0]; j++) {
        const fs_step *f = &fs_steps[j];
        ddx_schedule s;
        if (make(&s, f->schedule, true, PM[f->param], f->variance ? DDX_VARIANCE_FIXEDSMALL : DDX_VARIANCE_FIXEDLARGE) != DDX_OK) {
            CHECK(0, "%s: %s", f->desc, ddx_last_error());
            continue;
        }
        ddx_sampler_step_params p = ddx_sampler_coefs(&s, f->sampler ? DDX_SAMPLER_DDIM : DDX_SAMPLER_DDPM, f->t, f->t_prev, f->eta);
        CHECK(fabs((double)p.sigma - f->std) <= 1e-7 * f->std + 1e-12, "%s: sigma %.9g, diffusers std %.9g", f->desc,
              (double)p.sigma, f->std);
        p.key = (ddx_rng_key){.seed = 77, .stream = DDX_RNG_STREAM_SAMPLER, .step = (uint32_t)j + 1, .offset = 0};
        ddx_ctx_reset(c);
        const int64_t sh[4] = {2, 4, 4, 3};
        ddx_tensor *xt = ddx_new(c, DDX_F32, 4, sh), *o = ddx_new(c, DDX_F32, 4, sh);
        if (xt && o) {
            memcpy(xt->data, fs_x_t, sizeof fs_x_t);
            memcpy(o->data, fs_model_out, sizeof fs_model_out);
        }
        ddx_tensor *y = xt && o ? ddx_sampler_step(c, xt, o, &p) : NULL;
        CHECK(y != NULL, "%s: %s", f->desc, ddx_last_error());
        float z[FS_N];
        if (y && ddx_philox_normal(z, FS_N, p.key.seed, p.key.stream, p.key.step, 0) == DDX_OK) {
            double w = 0;
            for (int i = 0; i < FS_N; i++) {
                const double ref = f->mean[i] + f->std * z[i];
                const double e = fabs((double)ddx_f32c(y)[i] - ref);
                CHECK(isfinite(ddx_f32c(y)[i]) && e <= 1e-6 * (1 + fabs(ref) + fabs(fs_x_t[i]) + fabs(fs_model_out[i])),
                      "%s: element %d: ddx %.9g diffusers %.9g", f->desc, i, (double)ddx_f32c(y)[i], ref);
                w = fmax(w, e);
            }
            worst = fmax(worst, w);
        }
        ddx_schedule_free(&s);
    }
    printf("  %zu DDPM/DDIM steps at zero terminal SNR vs diffusers: max |err| %.3g\n", sizeof fs_steps / sizeof fs_steps[0],
           worst);
}

// ---- every coefficient finite at zero terminal SNR ------------------------------------------------
static bool coefs_finite(const ddx_sampler_step_params *p) {
    return isfinite(p->a) && isfinite(p->b) && isfinite(p->f) && isfinite(p->g) && isfinite(p->c) && isfinite(p->d) &&
           isfinite(p->e) && isfinite(p->sigma);
}

static void test_zsnr_finite(void) {
    const int T = 200;
    for (int k = 0; k < 3; k++)
        for (int pi = 1; pi < 3; pi++)   // x0, v (eps is refused)
            for (int lw = 0; lw < 2; lw++) {
                ddx_config cfg;
                sched_cfg(&cfg, k, true, PM[pi], T);
                cfg.train.loss_weight = lw ? DDX_LOSS_WEIGHT_MIN_SNR : DDX_LOSS_WEIGHT_UNIFORM;
                ddx_schedule s;
                if (ddx_schedule_init(&s, &cfg) != DDX_OK) {
                    CHECK(0, "zsnr %d %s: %s", k, PNAME[pi], ddx_last_error());
                    continue;
                }
                bool ok = true;
                for (int t = 0; t < T; t++) {
                    for (int var = 0; var < 2; var++) {
                        s.variance = var ? DDX_VARIANCE_FIXEDSMALL : DDX_VARIANCE_FIXEDLARGE;
                        ddx_sampler_step_params p = ddx_sampler_coefs(&s, DDX_SAMPLER_DDPM, t, t - 1, 0);
                        ok &= coefs_finite(&p);
                    }
                    for (int tp = -1; tp < t; tp += 1 + t / 7) {
                        ddx_sampler_step_params p = ddx_sampler_coefs(&s, DDX_SAMPLER_DDIM, t, tp, 1.0);
                        ok &= coefs_finite(&p);
                    }
                    const float tf = (float)t;
                    float w;
                    // sqrt(w) <= 1, or sqrt(gamma = 5) for x0's min(SNR, gamma).
                    ok &= ddx_diffusion_loss_wsqrt(&s, 1, &tf, &w) == DDX_OK && isfinite(w) && w >= 0 &&
                          w <= (pi == 1 && lw ? sqrtf(5.0f) : 1.0f) * (1 + 1e-6f);
                }
                CHECK(ok, "zsnr schedule %d %s weight %d: a coefficient or weight is not finite", k, PNAME[pi], lw);
                // The loss inputs at every draw of a large batch (t = T-1 among them).
                enum { NB = 4096 };
                static float tf[NB], coef[2 * NB], vcoef[2 * NB], w[NB];
                ddx_status st = ddx_diffusion_loss_inputs(&s, NB, 3, 9, tf, coef, vcoef);
                if (st == DDX_OK) st = ddx_diffusion_loss_wsqrt(&s, NB, tf, w);
                bool fin = st == DDX_OK, last = false;
                for (int i = 0; fin && i < NB; i++) {
                    fin &= isfinite(coef[2 * i]) && isfinite(coef[2 * i + 1]) && isfinite(vcoef[2 * i]) &&
                           isfinite(vcoef[2 * i + 1]) && isfinite(w[i]);
                    last |= tf[i] == (float)(T - 1);
                }
                CHECK(fin && last, "zsnr schedule %d %s: loss inputs not finite (%d) or t = T-1 never drawn (%d)", k, PNAME[pi],
                      (int)fin, (int)last);
                // The sigma-space samplers at every spacing, t = T-1 included (trailing, karras):
                // finite coefficients (abar 0 is taken as 2^-24 there, as diffusers does).
                static const ddx_sampler MS[] = {DDX_SAMPLER_DPMPP2M, DDX_SAMPLER_DPMPP3M, DDX_SAMPLER_HEUN, DDX_SAMPLER_EULER_A};
                static const ddx_spacing SP[] = {DDX_SPACING_UNIFORM, DDX_SPACING_TRAILING, DDX_SPACING_KARRAS};
                for (size_t a = 0; a < sizeof MS / sizeof MS[0]; a++)
                    for (size_t b = 0; b < sizeof SP / sizeof SP[0]; b++) {
                        ddx_sampler_plan pl;
                        st = ddx_sampler_plan_init(&pl, &s, MS[a], 7, SP[b]);
                        bool pf = st == DDX_OK;
                        for (int i = 0; pf && i < pl.n; i++) {
                            const ddx_sampler_ms_params *q = &pl.p[i];
                            pf = isfinite(pl.t[i]) && isfinite(q->a) && isfinite(q->b) && isfinite(q->cx) && isfinite(q->cd) &&
                                 isfinite(q->c1) && isfinite(q->c2) && isfinite(q->sigma);
                        }
                        CHECK(pf, "zsnr schedule %d %s: sampler %d spacing %d: %s", k, PNAME[pi], (int)MS[a], (int)SP[b],
                              st ? ddx_last_error() : "a plan coefficient is not finite");
                        if (st == DDX_OK) ddx_sampler_plan_free(&pl);
                    }
                ddx_schedule_free(&s);
            }
}

// ---- parameterisation conversions ------------------------------------------------------------------
static void test_conversions(void) {
    // linear, cosine, scaled_linear and linear at zero terminal SNR (v only at abar = 0).
    double worst[3][3] = {{0}};
    for (int k = 0; k < 4; k++) {
        ddx_schedule s;
        if (make(&s, k % 3, k == 3, DDX_PARAMETERIZATION_V, DDX_VARIANCE_FIXEDLARGE) != DDX_OK) {
            CHECK(0, "conversion schedule %d: %s", k, ddx_last_error());
            continue;
        }
        bool agree = true, tgt = true;
        for (int t = 0; t < FS_T; t++) {
            const double ab = s.alphas_cumprod[t];
            const bool zero = ab == 0.0;
            for (int r = 0; r < 4; r++) {
                const double x0 = rnd(), eps = 2 * rnd();
                const double x_t = sqrt(ab) * x0 + sqrt(1 - ab) * eps, v = sqrt(ab) * eps - sqrt(1 - ab) * x0;
                const double val[3] = {eps, x0, v};
                for (int a = 0; a < 3; a++)
                    for (int b = 0; b < 3; b++) {
                        if (zero && (a == 0 || b == 0)) continue;   // eps does not determine x0 at abar = 0
                        // a -> b -> a: a few ulps of the terms involved, times the conditioning
                        // of the pair: where sqrt(abar) -> 0, eps says little about x0 or v
                        // (x_t ~ eps), and where sqrt(1 - abar) -> 0, x0 says little about eps
                        // or v (x_t ~ x0); a round trip through the uninformative one loses
                        // 1 / sqrt(abar) or 1 / sqrt(1 - abar) ulps, in any arithmetic.
                        const double there = ddx_param_convert(ab, PM[a], PM[b], x_t, val[a]);
                        const double back = ddx_param_convert(ab, PM[b], PM[a], x_t, there);
                        const double sa = sqrt(ab), s1 = sqrt(1 - ab);
                        const double cond = a == b ? 1 : (a == 0 || b == 0) && (a == 1 || b == 1) ? 1 / fmin(sa, s1)
                                                    : a == 0 || b == 0 ? 1 / sa : 1 / s1;
                        const double scale = fabs(x_t) + fabs(val[a]) + fabs(there);
                        const double e = fabs(back - val[a]) / (scale * DBL_EPSILON * cond);
                        worst[a][b] = fmax(worst[a][b], e);
                        // and a -> b is the true b, to the same conditioning.
                        tgt &= fabs(there - val[b]) <= 16 * DBL_EPSILON * fmax(cond, 1 / fmin(sa > 0 ? sa : 1, s1)) *
                                                           (fabs(x_t) + fabs(x0) + fabs(eps));
                    }
            }
            // The sampler's x0 / eps coefficients are these conversions, rounded once to float.
            for (int a = 0; a < 3; a++) {
                if (zero && a == 0) continue;
                ddx_schedule sp = s;
                sp.param = PM[a];
                const ddx_sampler_step_params p = ddx_sampler_coefs(&sp, DDX_SAMPLER_DDIM, t, t - 1, 0);
                const ddx_param_coefs q = ddx_param_coefs_at(ab, PM[a]);
                agree &= p.a == (float)q.x0_xt && p.b == (float)q.x0_pred && p.f == (float)q.eps_xt && p.g == (float)q.eps_pred;
            }
        }
        CHECK(agree, "schedule %d: ddx_sampler_coefs' x0/eps coefficients differ from ddx_param_coefs_at", k);
        CHECK(tgt, "schedule %d: a conversion does not give the true value", k);
        // The loss's v target coefficients (vcoef) are the x0 -> v conversion of (x0, eps).
        enum { NB = 256 };
        float tf[NB], coef[2 * NB], vcoef[2 * NB];
        bool vok = ddx_diffusion_loss_inputs(&s, NB, 1, 2, tf, coef, vcoef) == DDX_OK;
        for (int i = 0; vok && i < NB; i++) {
            const double ab = s.alphas_cumprod[(int)tf[i]], x0 = rnd(), eps = rnd();
            const double x_t = sqrt(ab) * x0 + sqrt(1 - ab) * eps;
            const double v = ddx_param_convert(ab, DDX_PARAMETERIZATION_X0, DDX_PARAMETERIZATION_V, x_t, x0);
            vok &= fabs((double)vcoef[2 * i] * x0 + (double)vcoef[2 * i + 1] * eps - v) <= 4 * FLT_EPSILON &&
                   coef[2 * i] == (float)sqrt(ab) && coef[2 * i + 1] == (float)sqrt(1 - ab);
        }
        CHECK(vok, "schedule %d: the loss's v target is not the x0 -> v conversion", k);
        ddx_schedule_free(&s);
    }
    double all = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) all = fmax(all, worst[a][b]);
    CHECK(all <= 8, "a round trip lost %.2f ulps (of |x_t| + |values|, times the pair's conditioning), want <= 8", all);
    printf("  eps/x0/v round trips at every t of 4 schedules: worst %.2f ulps x conditioning (eps-x0 %.2f, eps-v %.2f, "
           "x0-v %.2f)\n", all, fmax(worst[0][1], worst[1][0]), fmax(worst[0][2], worst[2][0]), fmax(worst[1][2], worst[2][1]));
}

// ---- Min-SNR weights and the weighted loss ------------------------------------------------------------
static float *seen_t;
static int64_t seen_nt;

// pred = 0.5 x_t + 0.01 t, per sample.
static ddx_tensor *fake_forward(ddx_ctx *c, const ddx_model *m, ddx_tensor *x, ddx_tensor *t, ddx_tensor *y) {
    (void)m, (void)y;
    if (!x || !t) return NULL;
    free(seen_t);
    seen_nt = ddx_numel(t);
    seen_t = malloc((size_t)seen_nt * sizeof(float));
    if (seen_t) ddx_memcpy(seen_t, DDX_CPU, t->data, t->device, (size_t)seen_nt * sizeof(float));
    ddx_tensor *h = ddx_scale(c, x, 0.5f, 0.0f), *tt = ddx_scale(c, t, 0.01f, 0.0f);
    return ddx_add(c, h, ddx_reshape(c, tt, 4, (int64_t[]){ddx_numel(t), 1, 1, 1}));
}

static void test_min_snr(ddx_ctx *c) {
    // The weight formulas (diffusers' convention; Hang et al. for x0).
    for (int pi = 0; pi < 3; pi++) {
        ddx_config cfg;
        sched_cfg(&cfg, 1, false, PM[pi], FS_T);
        cfg.train.loss_weight = DDX_LOSS_WEIGHT_MIN_SNR;
        cfg.train.min_snr_gamma = 5;
        ddx_schedule s;
        if (ddx_schedule_init(&s, &cfg) != DDX_OK) {
            CHECK(0, "min-snr %s: %s", PNAME[pi], ddx_last_error());
            continue;
        }
        bool ok = true, clipped = false, unclipped = false;
        for (int t = 0; t < FS_T; t++) {
            const double ab = s.alphas_cumprod[t], snr = ab / (1 - ab), m = fmin(snr, 5.0);
            const double want = pi == 0 ? m / snr : pi == 1 ? m : m / (snr + 1);
            ok &= fabs(ddx_diffusion_loss_weight(&s, t) - want) <= 1e-15 * want && ddx_schedule_snr(&s, t) == snr;
            clipped |= snr > 5, unclipped |= snr < 5;
        }
        CHECK(ok && clipped && unclipped, "min-snr %s: weights differ from min(SNR, 5) / ...", PNAME[pi]);
        s.loss_weight = DDX_LOSS_WEIGHT_UNIFORM;
        CHECK(ddx_diffusion_loss_weight(&s, 10) == 1.0, "uniform weight is not 1");
        ddx_schedule_free(&s);
    }

    // The weighted loss end to end with the stand-in model, against a double reference.
    ddx_model *m = calloc(1, sizeof *m);
    if (!m) return;
    ddx_config_defaults(&m->cfg);
    m->cfg.model.image_size = 4;
    m->cfg.model.in_channels = m->cfg.model.out_channels = 3;
    m->cfg.model.num_classes = 0;
    m->forward = fake_forward;
    for (int pi = 0; pi < 3; pi++)
        for (int zs = 0; zs < 2; zs++) {
            if (zs && pi == 0) continue;
            ddx_config cfg;
            sched_cfg(&cfg, 1, zs, PM[pi], 50);
            cfg.train.loss_weight = DDX_LOSS_WEIGHT_MIN_SNR;
            cfg.train.min_snr_gamma = 2.5;
            ddx_schedule s;
            if (ddx_schedule_init(&s, &cfg) != DDX_OK) {
                CHECK(0, "loss schedule: %s", ddx_last_error());
                continue;
            }
            const int64_t N = 6, per = 48;
            const uint64_t seed = 4, step = 17;
            ddx_ctx_reset(c);
            ddx_tensor *x0 = ddx_new(c, DDX_F32, 4, (int64_t[]){N, 4, 4, 3});   // [N, 4, 4, 3]
            if (!x0) continue;
            for (int64_t i = 0; i < N * per; i++) ddx_f32(x0)[i] = (float)rnd();
            ddx_tensor *loss = ddx_diffusion_loss(c, m, &s, x0, NULL, seed, step);
            CHECK(loss && seen_nt == N, "min-snr loss %s: %s", PNAME[pi], ddx_last_error());
            float z[6 * 48];
            if (loss && seen_nt == N && ddx_philox_normal(z, N * per, seed, DDX_RNG_STREAM_Q_SAMPLE, step, 0) == DDX_OK) {
                double l = 0;
                for (int64_t i = 0; i < N; i++) {
                    const int t = (int)seen_t[i];
                    const double ab = s.alphas_cumprod[t], w = ddx_diffusion_loss_weight(&s, t);
                    double se = 0;
                    for (int64_t e = 0; e < per; e++) {
                        const double X0 = ddx_f32c(x0)[i * per + e], Z = z[i * per + e];
                        const double xt = sqrt(ab) * X0 + sqrt(1 - ab) * Z;
                        const double target = pi == 0 ? Z : pi == 1 ? X0 : sqrt(ab) * Z - sqrt(1 - ab) * X0;
                        const double d = 0.5 * xt + 0.01 * t - target;
                        se += d * d;
                    }
                    l += w * se / per;
                }
                l /= N;
                const double got = ddx_f32c(loss)[0];
                CHECK(isfinite(got) && fabs(got - l) <= 2e-6 * l, "min-snr loss %s zsnr %d: %.9g, want %.9g", PNAME[pi], zs, got, l);
            }
            // The weights are in: the same draw without them gives another loss.
            s.loss_weight = DDX_LOSS_WEIGHT_UNIFORM;
            ddx_tensor *plain = loss ? ddx_diffusion_loss(c, m, &s, x0, NULL, seed, step) : NULL;
            CHECK(plain && ddx_f32c(plain)[0] != ddx_f32c(loss)[0], "min-snr %s: weighting changed nothing", PNAME[pi]);
            // The device half refuses a missing weight tensor for min_snr.
            s.loss_weight = DDX_LOSS_WEIGHT_MIN_SNR;
            ddx_ctx_reset(c);
            ddx_tensor *tt = ddx_new(c, DDX_F32, 1, (int64_t[]){1}), *co = ddx_new(c, DDX_F32, 2, (int64_t[]){1, 2});
            ddx_tensor *x1 = ddx_new(c, DDX_F32, 4, (int64_t[]){1, 4, 4, 3});
            if (tt && co && x1) {
                memset(tt->data, 0, 4), memset(co->data, 0, 8), memset(x1->data, 0, ddx_nbytes(x1));
                ddx_tensor *r = ddx_diffusion_loss_from_w(c, m, &s, x1, NULL, NULL, tt, co, co, NULL, (ddx_rng_key){0});
                CHECK(!r && strstr(ddx_last_error(), "min_snr"), "min-snr %s: no weights accepted: %s", PNAME[pi], ddx_last_error());
            }
            ddx_ctx_reset(c);
            ddx_schedule_free(&s);
        }
    ddx_model_free(m);

    ddx_config cfg;
    sched_cfg(&cfg, 0, false, DDX_PARAMETERIZATION_V, 100);
    cfg.train.loss_weight = DDX_LOSS_WEIGHT_MIN_SNR;
    cfg.train.min_snr_gamma = 0;
    ddx_schedule s;
    ddx_status st = ddx_schedule_init(&s, &cfg);
    CHECK(st == DDX_E_INPUT && strstr(ddx_last_error(), "min_snr_gamma"), "gamma 0: %s", ddx_last_error());
    if (st == DDX_OK) ddx_schedule_free(&s);
}

// ---- training: v-prediction + cosine + Min-SNR lowers the loss ------------------------------------------
static void test_training(void) {
    ddx_config cfg;
    sched_cfg(&cfg, 1, false, DDX_PARAMETERIZATION_V, 1000);
    cfg.run.seed = 3;
    cfg.model.type = DDX_MODEL_TYPE_UNET_DDPM;
    cfg.model.image_size = cfg.data.image_size = 8;
    cfg.model.in_channels = cfg.model.out_channels = 1;
    cfg.model.ch = 16;
    cfg.model.ch_mult.n = 2, cfg.model.ch_mult.v[0] = 1, cfg.model.ch_mult.v[1] = 2;
    cfg.model.num_res_blocks = 1;
    cfg.model.attn_resolutions.n = 1, cfg.model.attn_resolutions.v[0] = 4;
    cfg.model.groups = 8;
    cfg.model.dropout = 0;
    cfg.model.num_classes = 0;
    cfg.train.batch_size = 16;
    cfg.train.total_steps = 300;
    cfg.train.lr = 2e-3;
    cfg.train.warmup_steps = 10;
    cfg.train.ema_decay = 0;
    cfg.train.loss_weight = DDX_LOSS_WEIGHT_MIN_SNR;
    cfg.train.min_snr_gamma = 5;
    cfg.sample.steps = 10;
    ddx_trainer t;
    ddx_status st = ddx_trainer_init(&t, &cfg, DDX_CPU);
    CHECK(st == DDX_OK, "trainer: %s", ddx_last_error());
    if (st != DDX_OK) return;
    // Fixed data: 16 8x8 images of a bright square at one of 4 places on a dark background.
    enum { B = 16, P = 64 };
    static float x[B * P];
    for (int i = 0; i < B; i++)
        for (int p = 0; p < P; p++) {
            const int r = p / 8, col = p % 8, q = i % 4, r0 = (q / 2) * 4, c0 = (q % 2) * 4;
            x[i * P + p] = r >= r0 && r < r0 + 4 && col >= c0 && col < c0 + 4 ? 0.9f : -0.9f;
        }
    // Per-step losses vary with the drawn timesteps: compare means over windows of steps.
    const int steps = 150, win = 40;
    double first = 0, last = 0;
    for (int s = 0; s < steps && st == DDX_OK; s++) {
        float l = 0;
        st = ddx_trainer_step(&t, x, NULL, &l, NULL);
        CHECK(st == DDX_OK && isfinite(l), "step %d: loss %g: %s", s + 1, (double)l, ddx_last_error());
        if (s < win) first += l;
        if (s >= steps - win) last += l;
    }
    first /= win, last /= win;
    CHECK(st == DDX_OK && last < 0.6 * first, "v + min-SNR training: mean loss of the first %d steps %.4f, of the last %d %.4f "
          "(want < 0.6x)", win, first, win, last);
    printf("  v-prediction + cosine + min-SNR on a tiny U-Net: mean loss %.4f (steps 1-%d) -> %.4f (steps %d-%d)\n", first,
           win, last, steps - win + 1, steps);
    ddx_trainer_free(&t);
}

int main(void) {
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)16 << 20) != DDX_OK) {
        printf("ctx init: %s\n", ddx_last_error());
        return 1;
    }
    ddx_ctx_set_grad(&c, false);
    test_schedules();
    test_zsnr_steps(&c);
    test_zsnr_finite();
    test_conversions();
    test_min_snr(&c);
    ddx_ctx_free(&c);
    free(seen_t);
    test_training();
    return ddx_test_finish("test_schedules");
}
