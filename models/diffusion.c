// The diffusion process: schedules, the training loss, sampler timesteps and coefficients,
// and the sampling loop (models/diffusion.h).
//
// Everything scalar is computed on the host in double and handed to the two fused ops
// (q_sample, sampler_step) as fp32 coefficients, so both devices run the same per-element code.
//
// Conventions checked against diffusers (tests/reference/make_diffusion_fixtures.py):
//   - linear betas: torch.linspace(beta_start, beta_end, T) in float64;
//   - cosine betas: betas_for_alpha_bar with diffusers' 'squaredcos_cap_v2' alpha_bar
//     (Nichol & Dhariwal 2021, s = 0.008), each beta capped at 0.999;
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
#include "runtime/cuda.h"
#include "runtime/op_impl.h"
#include "runtime/philox.h"

#include <stdio.h>

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
    default:
        ddx_schedule_free(s);
        return ddx_errorf(DDX_E_INPUT, "diffusion.beta_schedule: unknown schedule %d", (int)cfg->diffusion.beta_schedule);
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

// ---- the training loss -----------------------------------------------------------------------
ddx_status ddx_diffusion_loss_inputs(const ddx_schedule *s, int64_t N, uint64_t seed, uint64_t step, float *tf, float *coef,
                                     float *vcoef) {
    if (!s || !s->alphas_cumprod) return ddx_errorf(DDX_E_INTERNAL, "diffusion_loss: no schedule");
    if (step > UINT32_MAX)
        return ddx_errorf(DDX_E_INPUT, "diffusion_loss: step %llu does not fit the 32-bit Philox step word",
                          (unsigned long long)step);
    // The uniforms land in tf first and become the timesteps in place.
    DDX_TRY(ddx_philox_uniform(tf, N, seed, DDX_RNG_STREAM_TIMESTEP, step, 0));
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
    if (!loss_x0_ok(c, m, s, x0)) return NULL;
    if (!t_t || !coef_t || (s->param == DDX_PARAMETERIZATION_V && !vcoef_t))
        return ddx_op_fail(c, DDX_E_INTERNAL, "diffusion_loss: missing timestep or coefficient tensors");
    ddx_tensor *x_t = ddx_q_sample(c, x0, coef_t, key);        // [N, H, W, C]
    ddx_tensor *pred = ddx_model_forward(c, m, x_t, t_t, y);   // [N, H, W, C]
    ddx_tensor *target = NULL;
    switch (s->param) {
    case DDX_PARAMETERIZATION_EPS: target = ddx_randn(c, DDX_F32, x0->ndim, x0->shape, key); break;
    case DDX_PARAMETERIZATION_X0: target = x0; break;
    case DDX_PARAMETERIZATION_V: target = ddx_q_sample(c, x0, vcoef_t, key); break;
    default: return ddx_op_fail(c, DDX_E_INPUT, "diffusion_loss: unknown parameterization %d", (int)s->param);
    }
    return ddx_mse_loss(c, pred, target);
}

ddx_tensor *ddx_diffusion_loss(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, ddx_tensor *x0,
                               ddx_tensor *y, uint64_t seed, uint64_t step) {
    if (!loss_x0_ok(c, m, s, x0)) return NULL;
    const int64_t N = x0->shape[0];
    const bool v = s->param == DDX_PARAMETERIZATION_V;
    // Host scratch: t as floats, then the [N, 2] coefficient pairs (q_sample's and, for v, the
    // target's).
    float *h = malloc((size_t)N * 5 * sizeof(float));
    if (!h) return ddx_op_fail(c, DDX_E_NOMEM, "diffusion_loss: out of host memory for %lld samples", (long long)N);
    float *tf = h, *coef = h + N, *vcoef = h + 3 * N;
    ddx_status st = ddx_diffusion_loss_inputs(s, N, seed, step, tf, coef, v ? vcoef : NULL);
    if (st != DDX_OK) {
        free(h);
        ddx_ctx_fail(c, st);
        return NULL;
    }
    const int64_t cshape[2] = {N, 2}, tshape[1] = {N};
    ddx_tensor *coef_t = ddx_new(c, DDX_F32, 2, cshape);             // [N, 2]
    ddx_tensor *t_t = ddx_new(c, DDX_F32, 1, tshape);                // [N]
    ddx_tensor *vcoef_t = v ? ddx_new(c, DDX_F32, 2, cshape) : NULL;   // [N, 2]
    if (!coef_t || !t_t || (v && !vcoef_t)) {
        free(h);
        return NULL;
    }
    st = ddx_memcpy(coef_t->data, c->device, coef, DDX_CPU, (size_t)N * 2 * sizeof(float));
    if (st == DDX_OK) st = ddx_memcpy(t_t->data, c->device, tf, DDX_CPU, (size_t)N * sizeof(float));
    if (st == DDX_OK && vcoef_t) st = ddx_memcpy(vcoef_t->data, c->device, vcoef, DDX_CPU, (size_t)N * 2 * sizeof(float));
    free(h);
    if (st != DDX_OK) {
        ddx_ctx_fail(c, st);
        return NULL;
    }
    const ddx_rng_key key = {.seed = seed, .stream = DDX_RNG_STREAM_Q_SAMPLE, .step = (uint32_t)step, .offset = 0};
    return ddx_diffusion_loss_from(c, m, s, x0, y, t_t, coef_t, vcoef_t, key);
}

// ---- sampler timesteps -----------------------------------------------------------------------
int ddx_sampler_timesteps(const ddx_schedule *s, ddx_sampler sampler, int steps, ddx_spacing spacing, int *ts) {
    const int T = s->T;
    if (sampler == DDX_SAMPLER_DDPM) {
        for (int k = 0; k < T; k++) ts[k] = T - 1 - k;
        return T;
    }
    if (steps < 1 || steps > T) return 0;
    int n = 0;
    if (spacing == DDX_SPACING_UNIFORM) {
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

// ---- the sampling loop -----------------------------------------------------------------------
// With opts.graphs on CUDA the loop runs each denoising step from device-resident per-step
// inputs (t for every sample, the 9 sampler coefficients, the Philox step word) uploaded from
// one pinned buffer before the step; step 1 of a batch runs eagerly (the arena settles), step
// 2 is captured, the rest replay it. Labels are uploaded once per batch.
typedef struct sample_graph {
    bool on, no_capture;
#if DDX_HAVE_CUDA
    struct ddx_cuda_staging *in;      // [9 coefs][pad][step u32][pad][t: B floats]
    struct ddx_cuda_graph *exec;
    void *ybuf;                       // [B] i32 labels of the batch
#endif
} sample_graph;

#define SG_OFF_COEFS 0
#define SG_OFF_STEP 256
#define SG_OFF_T 512

#if DDX_HAVE_CUDA
static void sample_graphs_off(const char *why) {
    static bool said;
    if (said) return;
    said = true;
    fprintf(stderr, "ddx: CUDA graphs off for sampling: %s; running the eager steps\n", why);
}
#endif

static void sample_graph_free(ddx_ctx *c, sample_graph *g) {
#if DDX_HAVE_CUDA
    if (c->cuda && (g->exec || g->in)) (void)ddx_cuda_sync(c->cuda);   // nothing in flight may use what we free
    ddx_cuda_graph_destroy(g->exec);
    ddx_cuda_staging_destroy(g->in);
    ddx_cuda_free(g->ybuf);
    g->exec = NULL, g->in = NULL, g->ybuf = NULL;
#else
    (void)c;
    (void)g;
#endif
}

// One denoising step: from the tensors the caller made (classic) or from the staged inputs.
// Only a captured step reads its coefficients and noise key from the device (run directly,
// the host values are the same and need nothing of the CUDA adapters).
static ddx_status denoise(ddx_ctx *c, const ddx_model *m, sample_graph *g, void *xbuf, const int64_t *xshape,
                          ddx_tensor *tt, ddx_tensor *yy, ddx_sampler_step_params p, size_t xbytes, bool captured) {
    ddx_tensor *x = ddx_meta_tensor(c);
    if (!x) return ddx_ctx_status(c) != DDX_OK ? ddx_ctx_status(c) : DDX_E_NOMEM;
    *x = ddx_tensor_wrap(xbuf, DDX_F32, c->device, 4, xshape);   // [nb, H, W, C]
#if DDX_HAVE_CUDA
    if (g->on) {
        uint8_t *dev = ddx_cuda_staging_dev(g->in);
        const int64_t nshape[1] = {xshape[0]};
        if (!(tt = ddx_meta_tensor(c))) return ddx_ctx_status(c);
        *tt = ddx_tensor_wrap(dev + SG_OFF_T, DDX_F32, c->device, 1, nshape);   // [nb]
        if (g->ybuf) {
            if (!(yy = ddx_meta_tensor(c))) return ddx_ctx_status(c);
            *yy = ddx_tensor_wrap(g->ybuf, DDX_I32, c->device, 1, nshape);   // [nb]
        }
        if (captured) {
            p.coefs_dev = (const float *)(dev + SG_OFF_COEFS);
            c->step_dev = (const uint32_t *)(dev + SG_OFF_STEP);   // the sampler's noise key
        }
    }
#else
    (void)g;
    (void)captured;
#endif
    ddx_tensor *pred = ddx_model_forward(c, m, x, tt, yy);   // [nb, H, W, C]
    ddx_tensor *xp = ddx_sampler_step(c, x, pred, &p);       // [nb, H, W, C]
    c->step_dev = NULL;
    DDX_TRY(ddx_ctx_status(c));
    return ddx_memcpy(xbuf, c->device, xp->data, c->device, xbytes);
}

#if DDX_HAVE_CUDA
// Stages step k's inputs and runs it: replay, capture (k == 2) or eager.
static ddx_status denoise_graph(ddx_ctx *c, const ddx_model *m, sample_graph *g, void *xbuf, const int64_t *xshape,
                                const ddx_sampler_step_params *p, int t, int k, size_t xbytes) {
    // The checks the front-end makes on host coefficients, made here where they are written.
    const float co[9] = {p->a, p->b, p->f, p->g, p->c, p->d, p->e, p->sigma, p->clip ? 1.0f : 0.0f};
    for (int i = 0; i < 8; i++)
        if (!(co[i] == co[i] && co[i] - co[i] == 0.0f))
            return ddx_errorf(DDX_E_INPUT, "sampler_step: coefficient %c is not finite (%g); check the schedule",
                              "abfgcdes"[i], (double)co[i]);
    uint8_t *h;
    DDX_TRY(ddx_cuda_staging_host(g->in, (void **)&h));
    memcpy(h + SG_OFF_COEFS, co, sizeof co);
    const uint32_t k32 = (uint32_t)k;
    memcpy(h + SG_OFF_STEP, &k32, sizeof k32);
    float *tf = (float *)(h + SG_OFF_T);
    for (int64_t i = 0; i < xshape[0]; i++) tf[i] = (float)t;
    DDX_TRY(ddx_cuda_staging_upload(c->cuda, g->in, SG_OFF_T + (size_t)xshape[0] * sizeof(float)));
    if (g->exec) return ddx_cuda_graph_launch(c->cuda, g->exec);
    DDX_TRY(ddx_ctx_reset(c));
    if (k >= 2 && !g->no_capture) {
        ddx_status st = ddx_cuda_capture_begin(c->cuda);
        if (st == DDX_OK) {
            st = denoise(c, m, g, xbuf, xshape, NULL, NULL, *p, xbytes, true);
            st = ddx_cuda_capture_end(c->cuda, st, &g->exec);
        }
        if (st == DDX_OK && c->act.head && c->act.head->next) {
            ddx_cuda_graph_destroy(g->exec);
            g->exec = NULL;
            st = ddx_errorf(DDX_E_INTERNAL, "the activation arena grew during the captured step");
        }
        if (st == DDX_OK) return ddx_cuda_graph_launch(c->cuda, g->exec);
        sample_graphs_off(ddx_last_error());
        g->no_capture = true;
        DDX_TRY(ddx_ctx_reset(c));
    }
    return denoise(c, m, g, xbuf, xshape, NULL, NULL, *p, xbytes, false);
}
#endif

ddx_status ddx_diffusion_sample(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, const ddx_sample_opts *o,
                                int n, const int32_t *y, float *out, void (*progress)(int done, int total, void *arg),
                                void *arg) {
    if (!c || !m || !s || !o || (n > 0 && !out))
        return ddx_errorf(DDX_E_INTERNAL, "diffusion_sample: NULL context, model, schedule, options or output");
    if (n < 0) return ddx_errorf(DDX_E_INPUT, "sample.n: %d images requested; must be >= 0", n);
    if (n == 0) return DDX_OK;
    if (o->batch < 1) return ddx_errorf(DDX_E_INPUT, "diffusion_sample: batch %d must be >= 1", o->batch);
    const ddx_config *cfg = &m->cfg;
    if (cfg->model.out_channels != cfg->model.in_channels)
        return ddx_errorf(DDX_E_INPUT,
                          "diffusion_sample: model.out_channels (%d) must equal model.in_channels (%d): the sampler "
                          "reads the output as one eps/x0/v per pixel",
                          cfg->model.out_channels, cfg->model.in_channels);
    if (cfg->model.num_classes > 0 && !y)
        return ddx_errorf(DDX_E_INPUT, "diffusion_sample: the model is class-conditional (model.num_classes %d); give labels",
                          cfg->model.num_classes);
    if (o->sampler == DDX_SAMPLER_DDIM && (o->steps < 1 || o->steps > s->T))
        return ddx_errorf(DDX_E_INPUT, "sample.steps: %d is out of range 1..%d (diffusion.timesteps)", o->steps, s->T);
    if (o->sampler == DDX_SAMPLER_DDIM && !(o->eta >= 0.0 && o->eta <= 1.0))
        return ddx_errorf(DDX_E_INPUT, "sample.eta: %g is out of range [0, 1]", o->eta);

    const int64_t H = cfg->model.image_size, W = cfg->model.image_size, C = cfg->model.in_channels;
    const int64_t hwc = H * W * C;
    const int B = o->batch < n ? o->batch : n;
    int *ts = malloc((size_t)s->T * sizeof(int));
    if (!ts) return ddx_errorf(DDX_E_NOMEM, "diffusion_sample: out of host memory");
    const int S = ddx_sampler_timesteps(s, o->sampler, o->steps, o->spacing, ts);
    // x survives the per-step arena reset in its own buffer.
    void *xbuf = NULL;
    ddx_status st = ddx_dev_alloc(c->device, (size_t)(B * hwc) * sizeof(float), &xbuf);
    if (st != DDX_OK) {
        free(ts);
        return st;
    }
    sample_graph g = {.on = false};
#if DDX_HAVE_CUDA
    // Fewer than 3 steps leave nothing to replay.
    if (o->graphs && c->device == DDX_CUDA && c->cuda && S >= 3) {
        st = ddx_cuda_staging_create(SG_OFF_T + (size_t)B * sizeof(float), &g.in);
        if (st == DDX_OK && y) st = ddx_dev_alloc(c->device, (size_t)B * sizeof(int32_t), &g.ybuf);
        if (st != DDX_OK) {
            sample_graph_free(c, &g);
            ddx_dev_free(c->device, xbuf);
            free(ts);
            return st;
        }
        g.on = true;
    }
#endif
    const bool grad_was = c->grad_enabled, training_was = c->training;
    c->grad_enabled = false;
    c->training = false;
    const int nbatches = (n + B - 1) / B;
    for (int b0 = 0, bi = 0; b0 < n && st == DDX_OK; b0 += B, bi++) {
        const int nb = n - b0 < B ? n - b0 : B;
        const int64_t xshape[4] = {nb, H, W, C}, nshape[1] = {nb};
        const uint64_t off = (uint64_t)b0 * (uint64_t)hwc;
        const size_t xbytes = (size_t)(nb * hwc) * sizeof(float);
        st = ddx_ctx_reset(c);
        if (st != DDX_OK) break;
        const ddx_rng_key k0 = {.seed = o->seed, .stream = DDX_RNG_STREAM_SAMPLER, .step = 0, .offset = off};
        ddx_tensor *xT = ddx_randn(c, DDX_F32, 4, xshape, k0);   // [nb, H, W, C]
        if ((st = ddx_ctx_status(c)) != DDX_OK) break;
        st = ddx_memcpy(xbuf, c->device, xT->data, c->device, xbytes);
#if DDX_HAVE_CUDA
        // A new batch: its offset and size are baked into a capture, so capture again.
        if (g.on) {
            if (st == DDX_OK) st = ddx_cuda_sync(c->cuda);
            ddx_cuda_graph_destroy(g.exec);
            g.exec = NULL;
            if (st == DDX_OK && g.ybuf) st = ddx_memcpy(g.ybuf, c->device, y + b0, DDX_CPU, (size_t)nb * sizeof(int32_t));
        }
#endif
        for (int k = 1; k <= S && st == DDX_OK; k++) {
            const int t = ts[k - 1], t_prev = k < S ? ts[k] : -1;
            ddx_sampler_step_params p = ddx_sampler_coefs(s, o->sampler, t, t_prev, o->eta);
            p.key = (ddx_rng_key){.seed = o->seed, .stream = DDX_RNG_STREAM_SAMPLER, .step = (uint32_t)k, .offset = off};
#if DDX_HAVE_CUDA
            if (g.on) {
                st = denoise_graph(c, m, &g, xbuf, xshape, &p, t, k, xbytes);
                if (st == DDX_OK && progress) progress(bi * S + k, nbatches * S, arg);
                continue;
            }
#endif
            if ((st = ddx_ctx_reset(c)) != DDX_OK) break;
            ddx_tensor *tt = ddx_fill(c, DDX_F32, 1, nshape, (float)t);   // [nb]
            ddx_tensor *yy = NULL;
            if (y) {
                yy = ddx_new(c, DDX_I32, 1, nshape);   // [nb]
                if (yy && (st = ddx_memcpy(yy->data, c->device, y + b0, DDX_CPU, (size_t)nb * sizeof(int32_t))) != DDX_OK)
                    break;
            }
            st = denoise(c, m, &g, xbuf, xshape, tt, yy, p, xbytes, false);
            if (st == DDX_OK && progress) progress(bi * S + k, nbatches * S, arg);
        }
        if (st == DDX_OK) st = ddx_memcpy(out + off, DDX_CPU, xbuf, c->device, xbytes);
    }
    sample_graph_free(c, &g);
    // Leave the context as the caller had it (its arena holds nothing of ours any more).
    ddx_status rst = ddx_ctx_reset(c);
    if (st == DDX_OK) st = rst;
    c->grad_enabled = grad_was;
    c->training = training_was;
    ddx_dev_free(c->device, xbuf);
    free(ts);
    return st;
}
