// The diffusion ops and process (runtime/ops/diffusion.c, models/diffusion.c):
//   - randn / q_sample / sampler_step (CPU) against direct double-precision formulas with the
//     noise from ddx_philox_normal, offset slicing of randn, sigma == 0 drawing nothing, and
//     one-line errors for bad inputs;
//   - schedules, DDIM timesteps and single DDPM / DDIM steps against diffusers
//     (tests/data/diffusion/diffusion_fixtures.h from tests/reference/make_diffusion_fixtures.py);
//   - ddx_diffusion_loss's t / noise keying, targets and determinism, and the sampling loop's
//     keying (same bytes for any batch size, a hand-rolled reference loop), both with a stand-in
//     model whose forward is a fixed elementwise map;
//   - with a real tiny U-Net (if models/ can build one): the same seed gives the same bytes,
//     batch 2 and 3 give the same samples.
// Usage: test_diffusion   (run from tests/, where meson runs it)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/diffusion.h"
#include "models/sampler.h"
#include "models/model_impl.h"
#include "runtime/cuda.h"
#include "runtime/op_impl.h"
#include "runtime/philox.h"

#include "data/diffusion/diffusion_fixtures.h"

#include "check.h"

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static double rnd(void) {   // uniform in [-1, 1), independent of the library's Philox
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * 0x1p-52 - 1.0;
}

static ddx_tensor *mk(ddx_ctx *c, int ndim, const int64_t *shape, const float *vals, double scale) {
    ddx_tensor *t = ddx_new(c, DDX_F32, ndim, shape);
    if (!t) return NULL;
    for (int64_t i = 0; i < ddx_numel(t); i++) ddx_f32(t)[i] = vals ? vals[i] : (float)(scale * rnd());
    return t;
}

static double *philox_d(int64_t n, ddx_rng_key k) {
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    double *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    if (ddx_philox_normal(f, n, k.seed, k.stream, k.step, k.offset) != DDX_OK) abort();
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

// ---- ops -----------------------------------------------------------------------------------
static void test_randn(ddx_ctx *c) {
    ddx_ctx_reset(c);
    const int64_t n = 1003, shp[1] = {n};
    const ddx_rng_key k0 = {.seed = 77, .stream = DDX_RNG_STREAM_SAMPLER, .step = 4, .offset = 0};
    ddx_tensor *full = ddx_randn(c, DDX_F32, 1, shp, k0);
    CHECK(full != NULL, "randn [1003]: %s", ddx_last_error());
    if (!full) return;
    double *ref = philox_d(n, k0);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += ddx_f32c(full)[i] != (float)ref[i];
    CHECK(bad == 0, "randn differs from ddx_philox_normal at %d elements", bad);
    free(ref);
    // Offset k gives elements [k, ...) of offset 0, for aligned and unaligned k.
    const uint64_t offs[] = {1, 2, 3, 4, 5, 7, 64, 333};
    for (size_t j = 0; j < sizeof offs / sizeof offs[0]; j++) {
        ddx_rng_key k = k0;
        k.offset = offs[j];
        const int64_t m = n - (int64_t)offs[j], s2[2] = {1, m};
        ddx_tensor *part = ddx_randn(c, DDX_F32, 2, s2, k);
        CHECK(part && memcmp(part->data, ddx_f32c(full) + offs[j], (size_t)m * sizeof(float)) == 0,
              "randn offset %llu is not elements [%llu..) of offset 0", (unsigned long long)offs[j],
              (unsigned long long)offs[j]);
    }
    // Another stream or step is other noise.
    ddx_rng_key k2 = k0;
    k2.step = 5;
    ddx_tensor *other = ddx_randn(c, DDX_F32, 1, shp, k2);
    CHECK(other && memcmp(other->data, full->data, (size_t)n * sizeof(float)) != 0, "randn step 4 and 5 drew the same noise");
    // Moments: n = 1003 standard normals, mean within 4.5 sigma.
    double mu = 0, m2 = 0;
    for (int64_t i = 0; i < n; i++) mu += ddx_f32c(full)[i], m2 += (double)ddx_f32c(full)[i] * ddx_f32c(full)[i];
    mu /= n;
    m2 /= n;
    CHECK(fabs(mu) < 4.5 / sqrt((double)n) && fabs(m2 - 1.0) < 0.2, "randn moments: mean %g, E[z^2] %g", mu, m2);
}

// |got - ref| <= tol[i] everywhere; reports the worst ratio.
static bool within(const char *what, const float *got, const double *ref, const double *tol, int64_t n) {
    double worst = 0;
    int64_t wi = -1;
    for (int64_t i = 0; i < n; i++) {
        const double r = fabs((double)got[i] - ref[i]) / tol[i];
        if (!(r <= worst)) worst = r, wi = i;
    }
    if (!(worst <= 1.0)) {
        printf("  %s: element %lld: got %.9g want %.9g (err %.3g > tol %.3g)\n", what, (long long)wi, (double)got[wi],
               ref[wi], fabs((double)got[wi] - ref[wi]), tol[wi]);
        return false;
    }
    return true;
}

static void test_q_sample(ddx_ctx *c) {
    // fp32: two rounded products and a rounded sum, each off by at most 2^-24 of its magnitude.
    static const int64_t shapes[][4] = {{1, 5, 3, 1}, {3, 7, 5, 3}, {3, 4, 4, 3}, {4, 32, 32, 3}};
    static const uint64_t offs[] = {0, 3, 96, 5};
    for (int s = 0; s < 4; s++) {
        ddx_ctx_reset(c);
        const int64_t N = shapes[s][0];
        const int64_t cs[2] = {N, 2};
        ddx_tensor *x0 = mk(c, 4, shapes[s], NULL, 1.0);
        ddx_tensor *coef = mk(c, 2, cs, NULL, 1.0);
        const ddx_rng_key k = {.seed = 5, .stream = DDX_RNG_STREAM_Q_SAMPLE, .step = 2, .offset = offs[s]};
        ddx_tensor *y = ddx_q_sample(c, x0, coef, k);
        CHECK(y != NULL, "q_sample case %d: %s", s, ddx_last_error());
        if (!y) continue;
        const int64_t n = ddx_numel(x0), per = n / N;
        double *z = philox_d(n, k), *ref = malloc((size_t)n * sizeof *ref), *tol = malloc((size_t)n * sizeof *tol);
        for (int64_t i = 0; i < n; i++) {
            const double c0 = ddx_f32c(coef)[2 * (i / per)], c1 = ddx_f32c(coef)[2 * (i / per) + 1];
            const double a = c0 * ddx_f32c(x0)[i], b = c1 * z[i];
            ref[i] = a + b;
            tol[i] = 0x1p-24 * (fabs(a) + fabs(b) + fabs(a + b)) + 1e-30;
        }
        CHECK(within("q_sample", ddx_f32c(y), ref, tol, n), "q_sample case %d vs coef0*x0 + coef1*randn in double", s);
        free(z);
        free(ref);
        free(tol);
    }
}

static double clampd(double v) { return v < -1 ? -1 : (v > 1 ? 1 : v); }

static void test_sampler_step(ddx_ctx *c) {
    static const int64_t shapes[][4] = {{1, 3, 3, 1}, {3, 5, 7, 3}, {2, 4, 4, 3}};
    const ddx_sampler_step_params ps[] = {
        {.a = 3.6935f, .b = -3.5553f, .f = 0, .g = 1, .c = 0.02106f, .d = 0.99396f, .e = 0, .sigma = 0.11535f, .clip = true},
        {.a = 3.6935f, .b = -3.5553f, .f = 0, .g = 1, .c = 0.28805f, .d = 0, .e = 0.95761f, .sigma = 0, .clip = false},
        {.a = 0.27074f, .b = -0.96265f, .f = 0.96265f, .g = 0.27074f, .c = 0.28805f, .d = 0.1f, .e = 0.95761f,
         .sigma = 0.05f, .clip = true},
    };
    for (int s = 0; s < 3; s++) {
        for (int q = 0; q < 3; q++) {
            ddx_ctx_reset(c);
            ddx_tensor *xt = mk(c, 4, shapes[s], NULL, 2.0), *o = mk(c, 4, shapes[s], NULL, 2.0);
            ddx_sampler_step_params p = ps[q];
            p.key = (ddx_rng_key){.seed = 3, .stream = DDX_RNG_STREAM_SAMPLER, .step = 9, .offset = (uint64_t)(s * 7)};
            ddx_tensor *y = ddx_sampler_step(c, xt, o, &p);
            CHECK(y != NULL, "sampler_step %d/%d: %s", s, q, ddx_last_error());
            if (!y) continue;
            const int64_t n = ddx_numel(xt);
            double *z = philox_d(n, p.key), *ref = malloc((size_t)n * sizeof *ref), *tol = malloc((size_t)n * sizeof *tol);
            for (int64_t i = 0; i < n; i++) {
                const double X = ddx_f32c(xt)[i], O = ddx_f32c(o)[i];
                double x0 = p.a * X + p.b * O;
                if (p.clip) x0 = clampd(x0);
                const double eps = p.f * X + p.g * O;
                ref[i] = p.c * x0 + p.d * X + p.e * eps + p.sigma * z[i];
                // Each fp32 product / sum rounds once (2^-24 relative of its magnitude); x0 and
                // eps carry their own rounding into the final products.
                const double mx0 = fabs(p.a * X) + fabs(p.b * O), meps = fabs(p.f * X) + fabs(p.g * O);
                tol[i] = 4 * 0x1p-24 * (fabs(p.c) * mx0 + fabs(p.d * X) + fabs(p.e) * meps + fabs(p.sigma * z[i])) + 1e-30;
            }
            CHECK(within("sampler_step", ddx_f32c(y), ref, tol, n), "sampler_step shape %d params %d vs double formula", s, q);
            free(z);
            free(ref);
            free(tol);
        }
    }
    // sigma == 0 draws nothing: the key cannot matter.
    ddx_ctx_reset(c);
    const int64_t sh[4] = {2, 3, 3, 3};
    ddx_tensor *xt = mk(c, 4, sh, NULL, 1.0), *o = mk(c, 4, sh, NULL, 1.0);
    ddx_sampler_step_params p = ps[1];
    ddx_tensor *y1 = ddx_sampler_step(c, xt, o, &p);
    p.key = (ddx_rng_key){.seed = 99, .stream = 1, .step = 2, .offset = 3};
    ddx_tensor *y2 = ddx_sampler_step(c, xt, o, &p);
    CHECK(y1 && y2 && memcmp(y1->data, y2->data, ddx_nbytes(y1)) == 0, "sampler_step with sigma 0 depends on the key");
}

static void expect_error(ddx_ctx *c, ddx_tensor *r, ddx_status want, const char *what, const char *needle) {
    const ddx_status got = ddx_ctx_status(c);
    const char *msg = ddx_last_error();
    CHECK(r == NULL && got == want && strstr(msg, needle) && !strchr(msg, '\n'), "%s: want %s mentioning '%s', got %s: %s",
          what, ddx_status_name(want), needle, ddx_status_name(got), msg);
    ddx_ctx_reset(c);
}

static void test_bad_inputs(ddx_ctx *c) {
    ddx_ctx_reset(c);
    const int64_t s4[4] = {2, 3, 3, 1}, s4b[4] = {2, 3, 1, 3}, c2[2] = {2, 2}, c3[2] = {3, 2}, c1[2] = {2, 1};
    const ddx_rng_key k = {0};
    expect_error(c, ddx_randn(c, DDX_BF16, 4, s4, k), DDX_E_UNSUPPORTED, "randn bf16 on CPU", "CUDA");
    expect_error(c, ddx_randn(c, DDX_I32, 4, s4, k), DDX_E_INPUT, "randn i32", "i32");
    expect_error(c, ddx_randn(c, DDX_F32, 5, s4, k), DDX_E_INPUT, "randn ndim 5", "ndim");
    ddx_rng_key big = {.offset = UINT64_MAX - 3};
    expect_error(c, ddx_randn(c, DDX_F32, 4, s4, big), DDX_E_INPUT, "randn offset overflow", "overflows");
    ddx_tensor *x0 = mk(c, 4, s4, NULL, 1.0), *cf = mk(c, 2, c3, NULL, 1.0);
    expect_error(c, ddx_q_sample(c, x0, cf, k), DDX_E_INPUT, "q_sample coef [3,2] for batch 2", "[2, 2]");
    x0 = mk(c, 4, s4, NULL, 1.0), cf = mk(c, 2, c1, NULL, 1.0);
    expect_error(c, ddx_q_sample(c, x0, cf, k), DDX_E_INPUT, "q_sample coef [2,1]", "coef");
    x0 = mk(c, 4, s4, NULL, 1.0), cf = mk(c, 2, c2, NULL, 1.0);
    x0->requires_grad = true;
    ddx_ctx_set_grad(c, true);
    expect_error(c, ddx_q_sample(c, x0, cf, k), DDX_E_INPUT, "q_sample on an input needing grad", "no backward");
    ddx_ctx_set_grad(c, false);
    ddx_tensor *a = mk(c, 4, s4, NULL, 1.0), *b = mk(c, 4, s4b, NULL, 1.0);
    ddx_sampler_step_params p = {.a = 1, .g = 1, .c = 1};
    expect_error(c, ddx_sampler_step(c, a, b, &p), DDX_E_INPUT, "sampler_step shape mismatch", "same shape");
    a = mk(c, 4, s4, NULL, 1.0), b = mk(c, 4, s4, NULL, 1.0);
    p.e = NAN;
    expect_error(c, ddx_sampler_step(c, a, b, &p), DDX_E_INPUT, "sampler_step NaN coefficient", "not finite");
}

// ---- schedules and samplers vs diffusers ------------------------------------------------------
static ddx_status make_schedule(ddx_schedule *s, int cosine, ddx_parameterization param, ddx_variance var, int T) {
    ddx_config cfg;
    ddx_config_defaults(&cfg);
    cfg.diffusion.timesteps = T;
    cfg.diffusion.beta_schedule = cosine ? DDX_BETA_SCHEDULE_COSINE : DDX_BETA_SCHEDULE_LINEAR;
    cfg.diffusion.beta_start = 1e-4;
    cfg.diffusion.beta_end = 0.02;
    cfg.diffusion.parameterization = param;
    cfg.diffusion.variance = var;
    return ddx_schedule_init(s, &cfg);
}

static double max_rel(const double *got, const double *ref, int n, bool f32ref, const float *ref32) {
    double w = 0;
    for (int i = 0; i < n; i++) {
        const double r = f32ref ? (double)ref32[i] : ref[i];
        const double e = fabs(got[i] - r) / fabs(r);
        if (!(e <= w)) w = e;
    }
    return w;
}

static void test_schedules(void) {
    for (int cos_ = 0; cos_ < 2; cos_++) {
        ddx_schedule s;
        ddx_status st = make_schedule(&s, cos_, DDX_PARAMETERIZATION_EPS, DDX_VARIANCE_FIXEDLARGE, FX_T);
        CHECK(st == DDX_OK, "schedule init: %s", ddx_last_error());
        if (st != DDX_OK) continue;
        const char *nm = cos_ ? "cosine" : "linear";
        const double *b64 = cos_ ? fx_cosine_betas64 : fx_linear_betas64, *a64 = cos_ ? fx_cosine_abar64 : fx_linear_abar64;
        const float *b32 = cos_ ? fx_cosine_betas32 : fx_linear_betas32, *a32 = cos_ ? fx_cosine_abar32 : fx_linear_abar32;
        // float64 references: the same formulas in double (linspace / Python math.cos / a
        // sequential cumprod), so only a few ulps of libm / summation-order difference remain.
        const double rb = max_rel(s.betas, b64, FX_T, false, NULL), ra = max_rel(s.alphas_cumprod, a64, FX_T, false, NULL);
        CHECK(rb <= 1e-14, "%s betas vs float64 reference: max rel err %.3g > 1e-14", nm, rb);
        CHECK(ra <= 1e-12, "%s alphas_cumprod vs float64 reference: max rel err %.3g > 1e-12", nm, ra);
        // diffusers' own float32 tensors: betas within float32 rounding of a float32 linspace
        // (a few ulps); alphas_cumprod is a float32 cumprod over 1000 factors, whose rounding
        // grows to ~1e-5 relative where abar is tiny (cosine, t ~ 999).
        const double rb32 = max_rel(s.betas, NULL, FX_T, true, b32), ra32 = max_rel(s.alphas_cumprod, NULL, FX_T, true, a32);
        CHECK(rb32 <= 1e-6, "%s betas vs diffusers float32: max rel err %.3g > 1e-6", nm, rb32);
        CHECK(ra32 <= 1e-4, "%s alphas_cumprod vs diffusers float32: max rel err %.3g > 1e-4", nm, ra32);
        printf("  %s schedule: betas rel err %.2g (f64) %.2g (diffusers f32), abar %.2g (f64) %.2g (f32)\n", nm, rb, rb32,
               ra, ra32);
        CHECK(s.alphas_cumprod_prev[0] == 1.0 && s.posterior_variance[0] == 0.0, "%s: abar_prev[0] %g, post var[0] %g", nm,
              s.alphas_cumprod_prev[0], s.posterior_variance[0]);
        bool ok = true;
        for (int t = 1; t < FX_T; t++) {
            const double pv = s.betas[t] * (1 - s.alphas_cumprod[t - 1]) / (1 - s.alphas_cumprod[t]);
            ok &= s.alphas_cumprod_prev[t] == s.alphas_cumprod[t - 1] && fabs(s.posterior_variance[t] - pv) <= 1e-15 * pv;
        }
        CHECK(ok, "%s: alphas_cumprod_prev / posterior_variance inconsistent", nm);
        ddx_schedule_free(&s);
    }
    ddx_config cfg;
    ddx_config_defaults(&cfg);
    cfg.diffusion.beta_start = 0;
    ddx_schedule s;
    CHECK(ddx_schedule_init(&s, &cfg) == DDX_E_INPUT && strstr(ddx_last_error(), "beta_start"),
          "beta_start 0 accepted or unclear: %s", ddx_last_error());
}

static void test_timesteps(void) {
    ddx_schedule s;
    if (make_schedule(&s, 0, DDX_PARAMETERIZATION_EPS, DDX_VARIANCE_FIXEDLARGE, FX_T) != DDX_OK) {
        CHECK(0, "schedule: %s", ddx_last_error());
        return;
    }
    int *ts = malloc(FX_T * sizeof *ts);
    int n = ddx_sampler_timesteps(&s, DDX_SAMPLER_DDPM, 0, DDX_SPACING_UNIFORM, ts);
    bool ok = n == FX_T;
    for (int k = 0; k < n && ok; k++) ok = ts[k] == FX_T - 1 - k;
    CHECK(ok, "DDPM timesteps are not T-1 .. 0 (n %d)", n);
    for (size_t j = 0; j < sizeof fx_leading / sizeof fx_leading[0]; j++) {
        n = ddx_sampler_timesteps(&s, DDX_SAMPLER_DDIM, fx_leading[j].steps, DDX_SPACING_UNIFORM, ts);
        ok = n == fx_leading[j].n;
        for (int k = 0; k < n && ok; k++) ok = ts[k] == fx_leading[j].ts[k];
        CHECK(ok, "DDIM uniform %d steps differ from diffusers 'leading' (n %d)", fx_leading[j].steps, n);
    }
    for (size_t j = 0; j < sizeof fx_quad / sizeof fx_quad[0]; j++) {
        // The DDIM authors' list, ascending with repeats; ours is the distinct values, descending.
        int want[FX_T], nw = 0;
        for (int k = 0; k < fx_quad[j].n; k++)
            if (nw == 0 || want[nw - 1] != fx_quad[j].ts[k]) want[nw++] = fx_quad[j].ts[k];
        n = ddx_sampler_timesteps(&s, DDX_SAMPLER_DDIM, fx_quad[j].steps, DDX_SPACING_QUADRATIC, ts);
        ok = n == nw;
        for (int k = 0; k < n && ok; k++) ok = ts[k] == want[nw - 1 - k];
        CHECK(ok, "DDIM quadratic %d steps differ from the DDIM paper's spacing (n %d, want %d)", fx_quad[j].steps, n, nw);
    }
    CHECK(ddx_sampler_timesteps(&s, DDX_SAMPLER_DDIM, 0, DDX_SPACING_UNIFORM, ts) == 0 &&
              ddx_sampler_timesteps(&s, DDX_SAMPLER_DDIM, FX_T + 1, DDX_SPACING_UNIFORM, ts) == 0,
          "DDIM accepted 0 or T+1 steps");
    free(ts);
    ddx_schedule_free(&s);
}

static void test_steps_vs_diffusers(ddx_ctx *c) {
    static const ddx_parameterization pm[3] = {DDX_PARAMETERIZATION_EPS, DDX_PARAMETERIZATION_X0, DDX_PARAMETERIZATION_V};
    double worst = 0;
    for (size_t j = 0; j < sizeof fx_steps / sizeof fx_steps[0]; j++) {
        const fx_step *f = &fx_steps[j];
        ddx_schedule s;
        if (make_schedule(&s, f->schedule, pm[f->param], f->variance ? DDX_VARIANCE_FIXEDSMALL : DDX_VARIANCE_FIXEDLARGE,
                          FX_T) != DDX_OK) {
            CHECK(0, "schedule: %s", ddx_last_error());
            continue;
        }
        ddx_sampler_step_params p =
            ddx_sampler_coefs(&s, f->sampler ? DDX_SAMPLER_DDIM : DDX_SAMPLER_DDPM, f->t, f->t_prev, f->eta);
        // sigma is a double rounded once to float.
        CHECK(fabs((double)p.sigma - f->std) <= 1e-7 * f->std + 1e-12, "%s: sigma %.9g, diffusers std %.9g", f->desc,
              (double)p.sigma, f->std);
        p.key = (ddx_rng_key){.seed = 2024, .stream = DDX_RNG_STREAM_SAMPLER, .step = (uint32_t)j + 1, .offset = 0};
        ddx_ctx_reset(c);
        const int64_t sh[4] = {2, 4, 4, 3};
        ddx_tensor *xt = mk(c, 4, sh, fx_x_t, 0), *o = mk(c, 4, sh, fx_model_out, 0);
        ddx_tensor *y = ddx_sampler_step(c, xt, o, &p);
        CHECK(y != NULL, "%s: %s", f->desc, ddx_last_error());
        if (!y) {
            ddx_schedule_free(&s);
            continue;
        }
        double *z = philox_d(FX_N, p.key), ref[FX_N], tol[FX_N];
        for (int i = 0; i < FX_N; i++) {
            ref[i] = f->mean[i] + f->std * z[i];
            // fp32 evaluation of x0 (terms up to |a x_t| ~ 1/sqrt(abar) ~ 3e4 at t = 999 of
            // the cosine schedule), times c, plus fp32 coefficient rounding: 8 ulps of the
            // largest intermediate magnitudes, and 1e-6 absolute.
            const double X = fx_x_t[i], O = fx_model_out[i];
            const double mx0 = fabs(p.a * X) + fabs(p.b * O), meps = fabs(p.f * X) + fabs(p.g * O);
            tol[i] = 8 * 0x1p-24 * (fabs(p.c) * mx0 + fabs(p.d * X) + fabs(p.e) * meps + fabs(p.sigma * z[i]) + fabs(ref[i])) + 1e-6;
        }
        CHECK(within(f->desc, ddx_f32c(y), ref, tol, FX_N), "%s: ddx step != diffusers mean + std * z", f->desc);
        for (int i = 0; i < FX_N; i++) worst = fmax(worst, fabs((double)ddx_f32c(y)[i] - ref[i]));
        free(z);
        ddx_schedule_free(&s);
    }
    printf("  %zu DDPM/DDIM steps vs diffusers: max |err| %.3g\n", sizeof fx_steps / sizeof fx_steps[0], worst);
}

// ---- loss and sampling loop with a stand-in model ------------------------------------------------
// pred = 0.5 x_t + 0.01 t (elementwise and per sample, so batch-size independent); records
// the last x_t and t it saw.
static float *seen_x, *seen_t;
static int64_t seen_nx, seen_nt;

static ddx_tensor *fake_forward(ddx_ctx *c, const ddx_model *m, ddx_tensor *x, ddx_tensor *t, ddx_tensor *y) {
    (void)m;
    (void)y;
    if (!x || !t) return NULL;
    free(seen_x);
    free(seen_t);
    seen_nx = ddx_numel(x), seen_nt = ddx_numel(t);
    seen_x = malloc((size_t)seen_nx * sizeof(float));
    seen_t = malloc((size_t)seen_nt * sizeof(float));
    ddx_memcpy(seen_x, DDX_CPU, x->data, x->device, (size_t)seen_nx * sizeof(float));
    ddx_memcpy(seen_t, DDX_CPU, t->data, t->device, (size_t)seen_nt * sizeof(float));
    ddx_tensor *h = ddx_scale(c, x, 0.5f, 0.0f);
    ddx_tensor *tt = ddx_scale(c, t, 0.01f, 0.0f);
    int64_t sh[4] = {ddx_numel(t), 1, 1, 1};
    return ddx_add(c, h, ddx_reshape(c, tt, 4, sh));
}

static ddx_model *fake_model(int image_size, int C) {
    ddx_model *m = calloc(1, sizeof *m);
    ddx_config_defaults(&m->cfg);
    m->cfg.model.image_size = image_size;
    m->cfg.model.in_channels = m->cfg.model.out_channels = C;
    m->cfg.model.num_classes = 0;
    m->forward = fake_forward;
    return m;
}

static void test_loss(ddx_ctx *c) {
    ddx_model *m = fake_model(4, 3);
    const int64_t sh3[4] = {3, 4, 4, 3}, per = 48;
    for (int pi = 0; pi < 3; pi++) {
        const ddx_parameterization param = (ddx_parameterization)pi;
        ddx_schedule s;
        if (make_schedule(&s, 0, param, DDX_VARIANCE_FIXEDLARGE, 1000) != DDX_OK) {
            CHECK(0, "schedule: %s", ddx_last_error());
            continue;
        }
        const uint64_t seed = 11, step = 123;
        ddx_ctx_reset(c);
        ddx_tensor *x0 = mk(c, 4, sh3, NULL, 1.0);
        float x0h[144];
        memcpy(x0h, x0->data, sizeof x0h);
        ddx_tensor *loss = ddx_diffusion_loss(c, m, &s, x0, NULL, seed, step);
        CHECK(loss != NULL, "loss param %d: %s", pi, ddx_last_error());
        if (!loss) {
            ddx_schedule_free(&s);
            continue;
        }
        const float l1 = ddx_f32c(loss)[0];
        // t_i = floor(u_i T) of Philox (seed, TIMESTEP, step), element i.
        float u[3];
        ddx_philox_uniform(u, 3, seed, DDX_RNG_STREAM_TIMESTEP, step, 0);
        int tk[3];
        bool tok = seen_nt == 3;
        for (int i = 0; i < 3 && tok; i++) {
            tk[i] = (int)floor((double)u[i] * 1000);
            tok = seen_t[i] == (float)tk[i];
        }
        CHECK(tok, "loss: timesteps are not floor(u * T) of the TIMESTEP stream");
        if (!tok) {
            ddx_schedule_free(&s);
            continue;
        }
        // x_t = sqrt(abar) x0 + sqrt(1-abar) z, z from (seed, Q_SAMPLE, step); loss = mean((pred - target)^2).
        const ddx_rng_key kq = {.seed = seed, .stream = DDX_RNG_STREAM_Q_SAMPLE, .step = (uint32_t)step};
        double *z = philox_d(144, kq), ref[144], tol[144], l = 0;
        for (int64_t i = 0; i < 144; i++) {
            const double ab = s.alphas_cumprod[tk[i / per]];
            ref[i] = sqrt(ab) * x0h[i] + sqrt(1 - ab) * z[i];
            tol[i] = 4 * 0x1p-24 * (fabs(x0h[i]) + fabs(z[i])) + 1e-30;
            const double target = param == DDX_PARAMETERIZATION_EPS ? z[i]
                                  : param == DDX_PARAMETERIZATION_X0 ? x0h[i]
                                                                     : sqrt(ab) * z[i] - sqrt(1 - ab) * x0h[i];
            const double pred = 0.5 * ref[i] + 0.01 * tk[i / per];
            l += (pred - target) * (pred - target);
        }
        l /= 144;
        CHECK(seen_nx == 144 && within("loss x_t", seen_x, ref, tol, 144), "loss param %d: x_t is not q_sample keyed (seed, Q_SAMPLE, step)", pi);
        CHECK(fabs(l1 - l) <= 1e-5 * l, "loss param %d: %.9g, want %.9g", pi, (double)l1, l);
        // Same inputs, same bytes; another step, other timesteps and noise.
        ddx_tensor *again = ddx_diffusion_loss(c, m, &s, x0, NULL, seed, step);
        CHECK(again && memcmp(again->data, loss->data, 4) == 0, "loss param %d is not deterministic", pi);
        float t_first[3];
        memcpy(t_first, seen_t, sizeof t_first);
        ddx_tensor *other = ddx_diffusion_loss(c, m, &s, x0, NULL, seed, step + 1);
        CHECK(other && ddx_f32c(other)[0] != l1 && memcmp(t_first, seen_t, sizeof t_first) != 0,
              "loss param %d: step + 1 drew the same timesteps / loss", pi);
        // Sample i's draws do not depend on the batch size: the first 2 of a batch of 3.
        ddx_tensor *x02 = mk(c, 4, (int64_t[]){2, 4, 4, 3}, x0h, 0);
        float xt3[144];
        ddx_diffusion_loss(c, m, &s, x0, NULL, seed, step);
        memcpy(xt3, seen_x, sizeof xt3);
        ddx_diffusion_loss(c, m, &s, x02, NULL, seed, step);
        CHECK(seen_nx == 96 && memcmp(seen_x, xt3, 96 * sizeof(float)) == 0, "loss param %d: batch 2 is not a prefix of batch 3", pi);
        free(z);
        ddx_schedule_free(&s);
    }
    ddx_model_free(m);
}

// n images through a sampler made for the call (models/sampler.h).
static ddx_status sample_n(ddx_device dev, const ddx_model *m, const ddx_schedule *s, const ddx_sample_opts *o, int n,
                           float *out) {
    ddx_sampling *sp = NULL;
    ddx_status st = ddx_sampling_create(m, s, o, dev, &sp);
    if (st == DDX_OK) st = ddx_sampling_run(sp, n, NULL, NULL, out, NULL, NULL);
    ddx_sampling_free(sp);
    return st;
}

// Reference loop: the sampler's keying spelled out, in double.
static void ref_sample(const ddx_schedule *s, const ddx_sample_opts *o, int n, int64_t hwc, double *out) {
    int *ts = malloc((size_t)s->T * sizeof *ts);
    const int S = ddx_sampler_timesteps(s, o->sampler, o->steps, o->spacing, ts);
    for (int i = 0; i < n; i++) {
        double *x = out + i * hwc;
        double *z = philox_d(hwc, (ddx_rng_key){o->seed, DDX_RNG_STREAM_SAMPLER, 0, (uint64_t)i * hwc});
        memcpy(x, z, (size_t)hwc * sizeof *x);
        free(z);
        for (int k = 1; k <= S; k++) {
            const int t = ts[k - 1], tp = k < S ? ts[k] : -1;
            const ddx_sampler_step_params p = ddx_sampler_coefs(s, o->sampler, t, tp, o->eta);
            z = philox_d(hwc, (ddx_rng_key){o->seed, DDX_RNG_STREAM_SAMPLER, (uint32_t)k, (uint64_t)i * hwc});
            for (int64_t e = 0; e < hwc; e++) {
                const double O = 0.5 * x[e] + 0.01 * t;
                double x0 = p.a * x[e] + p.b * O;
                if (p.clip) x0 = clampd(x0);
                const double eps = p.f * x[e] + p.g * O;
                x[e] = p.c * x0 + p.d * x[e] + p.e * eps + p.sigma * z[e];
            }
            free(z);
        }
    }
    free(ts);
}

static void test_sample_loop(ddx_ctx *c) {
    ddx_model *m = fake_model(3, 2);
    const int n = 5;
    const int64_t hwc = 3 * 3 * 2;
    const struct { ddx_sampler sampler; int T, steps; double eta; ddx_spacing sp; const char *name; } cfgs[] = {
        {DDX_SAMPLER_DDPM, 40, 0, 0, DDX_SPACING_UNIFORM, "DDPM T=40"},
        {DDX_SAMPLER_DDIM, 100, 7, 0.5, DDX_SPACING_UNIFORM, "DDIM T=100 7 steps eta 0.5"},
        {DDX_SAMPLER_DDIM, 100, 12, 0.0, DDX_SPACING_QUADRATIC, "DDIM T=100 12 quadratic steps eta 0"},
    };
    for (size_t j = 0; j < sizeof cfgs / sizeof cfgs[0]; j++) {
        ddx_schedule s;
        if (make_schedule(&s, 0, DDX_PARAMETERIZATION_EPS, DDX_VARIANCE_FIXEDLARGE, cfgs[j].T) != DDX_OK) {
            CHECK(0, "schedule: %s", ddx_last_error());
            continue;
        }
        ddx_sample_opts o = {.sampler = cfgs[j].sampler, .steps = cfgs[j].steps, .eta = cfgs[j].eta,
                             .spacing = cfgs[j].sp, .seed = 31337, .batch = 2};
        float a[5 * 18], b[5 * 18], d[5 * 18];
        double ref[5 * 18];
        ddx_ctx_set_grad(c, true);
        ddx_status st = sample_n(DDX_CPU, m, &s, &o, n, a);
        CHECK(st == DDX_OK, "%s: %s", cfgs[j].name, ddx_last_error());
        CHECK(c->grad_enabled, "%s: sampling changed the caller's context", cfgs[j].name);
        o.batch = 3;
        st = sample_n(DDX_CPU, m, &s, &o, n, b);
        o.batch = 5;
        if (st == DDX_OK) st = sample_n(DDX_CPU, m, &s, &o, n, d);
        CHECK(st == DDX_OK && memcmp(a, b, sizeof a) == 0 && memcmp(a, d, sizeof a) == 0,
              "%s: batch 2 / 3 / 5 give different samples", cfgs[j].name);
        ref_sample(&s, &o, n, hwc, ref);
        // Tens of fp32 steps through the same map: errors stay near fp32 rounding of O(1) values.
        double tol[5 * 18];
        for (int i = 0; i < 5 * 18; i++) tol[i] = 1e-4 * (1 + fabs(ref[i]));
        CHECK(within(cfgs[j].name, a, ref, tol, 5 * 18), "%s: sampler loop differs from the keyed reference loop", cfgs[j].name);
        ddx_schedule_free(&s);
    }
    // Bad options are one-line input errors.
    ddx_schedule s;
    make_schedule(&s, 0, DDX_PARAMETERIZATION_EPS, DDX_VARIANCE_FIXEDLARGE, 100);
    ddx_sample_opts o = {.sampler = DDX_SAMPLER_DDIM, .steps = 101, .batch = 2};
    float buf[18];
    CHECK(sample_n(DDX_CPU, m, &s, &o, 1, buf) == DDX_E_INPUT && strstr(ddx_last_error(), "steps"),
          "DDIM 101 steps of T=100: %s", ddx_last_error());
    o.steps = 10, o.batch = 0;
    CHECK(sample_n(DDX_CPU, m, &s, &o, 1, buf) == DDX_E_INPUT, "batch 0 accepted");
    ddx_schedule_free(&s);
    ddx_ctx_set_grad(c, false);
    ddx_model_free(m);
}

// ---- a real tiny network -------------------------------------------------------------------------
static void test_real_model(void) {
    for (int type = 0; type < 2; type++) {
        ddx_config cfg;
        ddx_config_defaults(&cfg);
        cfg.model.type = type ? DDX_MODEL_TYPE_UNET_DDPM : DDX_MODEL_TYPE_UNET_PLAIN;
        cfg.model.image_size = 8;
        cfg.model.in_channels = cfg.model.out_channels = 3;
        cfg.model.ch = 8;
        cfg.model.ch_mult = type ? (ddx_int_list){2, {1, 2}} : (ddx_int_list){3, {1, 2, 2}};
        cfg.model.num_res_blocks = 1;
        cfg.model.attn_resolutions = (ddx_int_list){1, {4}};
        cfg.model.groups = 4;
        cfg.model.dropout = 0.1;
        cfg.model.num_classes = 0;
        cfg.data.image_size = 8;
        cfg.diffusion.timesteps = 50;
        const char *nm = type ? "unet_ddpm" : "unet_plain";
        ddx_param_store ps;
        ddx_param_store_init(&ps, DDX_CPU);
        ddx_model *m = NULL;
        ddx_status st = ddx_model_create(&cfg, &ps, &m);
        if (st == DDX_OK) st = ddx_param_store_finalize(&ps);
        if (st == DDX_OK) st = ddx_model_init(m, 5);
        if (st != DDX_OK) {
            printf("SKIP %s tiny model: %s\n", nm, ddx_last_error());
            n_skip++;
            ddx_model_free(m);
            ddx_param_store_free(&ps);
            continue;
        }
        ddx_schedule s;
        make_schedule(&s, 0, DDX_PARAMETERIZATION_EPS, DDX_VARIANCE_FIXEDLARGE, 50);
        ddx_sample_opts o = {.sampler = DDX_SAMPLER_DDIM, .steps = 5, .eta = 1.0, .seed = 8, .batch = 2};
        enum { NS = 3, PER = 8 * 8 * 3 };
        float *a = malloc(NS * PER * sizeof *a), *b = malloc(NS * PER * sizeof *b), *d = malloc(NS * PER * sizeof *d);
        st = sample_n(DDX_CPU, m, &s, &o, NS, a);
        CHECK(st == DDX_OK, "%s sample: %s", nm, ddx_last_error());
        if (st == DDX_OK) st = sample_n(DDX_CPU, m, &s, &o, NS, b);
        CHECK(st == DDX_OK && memcmp(a, b, NS * PER * sizeof *a) == 0, "%s: the same seed gave different bytes", nm);
        o.batch = 3;
        if (st == DDX_OK) st = sample_n(DDX_CPU, m, &s, &o, NS, d);
        // A network may batch its GEMMs differently for 2 and 3 images (BLAS blocking), so
        // equality is to fp32 rounding rather than bytes.
        double worst = 0;
        bool finite = true;
        for (int i = 0; i < NS * PER; i++) {
            finite &= isfinite(a[i]);
            const double e = fabs((double)a[i] - d[i]);
            if (e > worst) worst = e;
        }
        CHECK(st == DDX_OK && finite && worst <= 1e-4, "%s: batch 2 vs 3 samples differ by %.3g (or non-finite)", nm, worst);
        printf("  %s: DDIM 5 steps, 3 samples: batch 2 vs 3 max |diff| %.3g\n", nm, worst);
        o.sampler = DDX_SAMPLER_DDPM;
        st = sample_n(DDX_CPU, m, &s, &o, 1, a);
        CHECK(st == DDX_OK, "%s DDPM sample: %s", nm, ddx_last_error());
        free(a);
        free(b);
        free(d);
        ddx_schedule_free(&s);
        ddx_model_free(m);
        ddx_param_store_free(&ps);
    }
}

// ---- CUDA: the same seed gives the same samples and losses as on the CPU -------------------------
static void test_cuda_matches_cpu(ddx_ctx *cpu) {
    if (!ddx_cuda_available()) {
        printf("SKIP CUDA vs CPU sampling: no CUDA device\n");
        n_skip++;
        return;
    }
    ddx_ctx g;
    if (ddx_ctx_init(&g, DDX_CUDA, (size_t)16 << 20) != DDX_OK) {
        CHECK(0, "CUDA ctx init: %s", ddx_last_error());
        return;
    }
    ddx_ctx_set_grad(&g, false);
    ddx_model *m = fake_model(4, 3);
    ddx_schedule s;
    make_schedule(&s, 0, DDX_PARAMETERIZATION_EPS, DDX_VARIANCE_FIXEDLARGE, 100);
    for (int smp = 0; smp < 2; smp++) {
        ddx_sample_opts o = {.sampler = smp ? DDX_SAMPLER_DDIM : DDX_SAMPLER_DDPM, .steps = 10, .eta = 0.5, .seed = 4, .batch = 3};
        float a[5 * 48], b[5 * 48];
        ddx_status st = sample_n(DDX_CPU, m, &s, &o, 5, a);
        if (st == DDX_OK) st = sample_n(DDX_CUDA, m, &s, &o, 5, b);
        CHECK(st == DDX_OK, "CUDA sample: %s", ddx_last_error());
        // The diffusion ops are bit-identical across devices; the stand-in model's scale/add
        // may round differently (FMA), which the sampler carries through its steps.
        double worst = 0;
        for (int i = 0; i < 5 * 48 && st == DDX_OK; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
        CHECK(st == DDX_OK && worst <= 1e-4, "%s: CUDA vs CPU samples differ by %.3g", smp ? "DDIM" : "DDPM", worst);
        printf("  %s CUDA vs CPU samples: max |diff| %.3g\n", smp ? "DDIM" : "DDPM", worst);
    }
    // One loss on each device from the same x0.
    ddx_ctx_reset(cpu);
    ddx_ctx_reset(&g);
    const int64_t sh[4] = {3, 4, 4, 3};
    ddx_tensor *xc = mk(cpu, 4, sh, NULL, 1.0);
    ddx_tensor *xg = ddx_new(&g, DDX_F32, 4, sh);
    ddx_memcpy(xg->data, DDX_CUDA, xc->data, DDX_CPU, ddx_nbytes(xc));
    ddx_tensor *lc = ddx_diffusion_loss(cpu, m, &s, xc, NULL, 1, 2), *lg = ddx_diffusion_loss(&g, m, &s, xg, NULL, 1, 2);
    float vg = NAN;
    if (lg) ddx_memcpy(&vg, DDX_CPU, lg->data, DDX_CUDA, 4);
    if (!lg && ddx_ctx_status(&g) == DDX_E_UNSUPPORTED) {
        // Another op of the loss (mse_loss, ...) has no CUDA kernel yet.
        printf("SKIP CUDA loss: %s\n", ddx_last_error());
        n_skip++;
    } else
        CHECK(lc && lg && fabs((double)vg - ddx_f32c(lc)[0]) <= 1e-5 * fabs(ddx_f32c(lc)[0]), "CUDA loss %.9g vs CPU %.9g: %s",
          (double)vg, lc ? (double)ddx_f32c(lc)[0] : NAN, ddx_last_error());
    ddx_schedule_free(&s);
    ddx_model_free(m);
    ddx_ctx_free(&g);
}

int main(void) {
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)16 << 20) != DDX_OK) {
        printf("ctx init: %s\n", ddx_last_error());
        return 1;
    }
    ddx_ctx_set_grad(&c, false);
    test_randn(&c);
    test_q_sample(&c);
    test_sampler_step(&c);
    test_bad_inputs(&c);
    test_schedules();
    test_timesteps();
    test_steps_vs_diffusers(&c);
    test_loss(&c);
    test_sample_loop(&c);
    test_real_model();
    test_cuda_matches_cpu(&c);
    free(seen_x);
    free(seen_t);
    ddx_ctx_free(&c);
    return ddx_test_finish("test_diffusion");
}
