// The multistep / two-stage samplers (dpmpp2m, dpmpp3m, heun, euler_a) on the CPU:
//   - diffusers fixtures (tests/reference/make_sampler_fixtures.py): for eps / v / x0 models and
//     leading / trailing / karras spacings, the plan's model times equal the schedulers' and
//     ddx's x after every model call (the plan's coefficients through sampler_step_ms, its
//     history kept as models/sampler.c keeps it) equals the scheduler's trajectory;
//     euler_a's noisy steps: ours == diffusers' mean + its std * our Philox draw;
//   - the Karras sigmas against the formula, and the trailing / leading timesteps;
//   - the sampler (models/sampler.c) equals that reference loop bit for bit with a stand-in
//     model, for every new sampler, for batches that do and do not divide n; guidance (the
//     op's guided read of the doubled forward) equals the reference loop, w = 0 the null class;
//   - inpainting and RePaint with a new sampler are refused with a clear error.
// With --cuda (gpu suite): every new sampler on the GPU, eager and with CUDA graphs (the
// coefficients and step word read from device memory, the history copies captured), guided and
// not: graphs equal eager bit for bit, and both equal the CPU within fp32 tolerance (the
// sampler_step_ms op is bit-identical across devices; the stand-in model's adds may round
// differently).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "models/model_impl.h"
#include "models/sampler.h"
#include "runtime/op_impl.h"
#include "runtime/cuda.h"
#include "runtime/philox.h"

#include "data/diffusion/sampler_ms_fixtures.h"

static ddx_status make_schedule(ddx_schedule *s, int T, ddx_parameterization param) {
    ddx_config cfg;
    ddx_config_defaults(&cfg);
    cfg.diffusion.timesteps = T;
    cfg.diffusion.parameterization = param;
    return ddx_schedule_init(s, &cfg);
}

static const char *sampler_name(ddx_sampler s) {
    static const char *const n[] = {"ddpm", "ddim", "dpmpp2m", "dpmpp3m", "heun", "euler_a"};
    return (unsigned)s < 6 ? n[s] : "?";
}

// The fixture's model: 0.7 x + 0.2 sin(x + 0.01 t), in double, rounded to float.
static void fx_model(const float *x, double t, float *out, int n) {
    for (int i = 0; i < n; i++) out[i] = (float)(0.7 * (double)x[i] + 0.2 * sin((double)x[i] + 0.01 * t));
}

static ddx_tensor *host_tensor(ddx_ctx *c, const float *v, const int64_t *shape) {
    ddx_tensor *t = ddx_new(c, DDX_F32, 4, shape);
    if (t) memcpy(t->data, v, (size_t)ddx_numel(t) * sizeof(float));
    return t;
}

// |a - b| <= tol (1 + |b|): the worst ratio, so the report says how close it came.
static double worst(const float *a, const float *b, int n) {
    double w = 0.0;
    for (int i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - (double)b[i]) / (1.0 + fabs((double)b[i]));
        if (!(e <= w)) w = e;   // a NaN wins
    }
    return w;
}

static void test_fixtures(ddx_ctx *c) {
    const int n = MSFX_N;
    // fp32 ~1e-5: every update is a handful of fp32 products of O(1) terms (the coefficients at
    // sigma ~157 are the largest), diffusers steps in float32 too.
    const double tol = 2e-5;
    double max_err = 0.0;
    for (size_t ci = 0; ci < sizeof msfx_cases / sizeof msfx_cases[0]; ci++) {
        const msfx_case *fc = &msfx_cases[ci];
        ddx_schedule s;
        ddx_sampler_plan pl;
        if (make_schedule(&s, 1000, fc->param) != DDX_OK) {
            CHECK(0, "%s: schedule: %s", fc->name, ddx_last_error());
            continue;
        }
        ddx_status st = ddx_sampler_plan_init(&pl, &s, fc->sampler, fc->steps, fc->spacing);
        CHECK(st == DDX_OK, "%s: plan: %s", fc->name, ddx_last_error());
        if (st != DDX_OK) {
            ddx_schedule_free(&s);
            continue;
        }
        CHECK(pl.n == fc->calls, "%s: %d model calls, diffusers makes %d", fc->name, pl.n, fc->calls);
        bool t_ok = pl.n == fc->calls;
        for (int k = 0; t_ok && k < pl.n; k++) t_ok = fabs(pl.t[k] - fc->t[k]) <= 1e-6;
        CHECK(t_ok, "%s: the model times differ from diffusers' (first %g vs %g)", fc->name, pl.t[0], fc->t[0]);
        float x[MSFX_N], h1[MSFX_N] = {0}, h2[MSFX_N] = {0}, out[MSFX_N], want[MSFX_N];
        memcpy(x, msfx_xT, sizeof x);
        double case_err = 0.0;
        int bad_k = -1;
        for (int k = 0; t_ok && k < pl.n; k++) {
            if (fc->in) memcpy(x, fc->in + (size_t)k * n, sizeof x);   // euler_a: diffusers' noisy input
            fx_model(x, pl.t[k], out, n);
            ddx_ctx_reset(c);
            ddx_sampler_ms_params p = pl.p[k];
            p.key = (ddx_rng_key){.seed = 99, .stream = DDX_RNG_STREAM_SAMPLER, .step = (uint32_t)k + 1, .offset = 0};
            ddx_tensor *xt = host_tensor(c, x, msfx_shape), *ot = host_tensor(c, out, msfx_shape);
            ddx_tensor *t1 = pl.nhist >= 1 ? host_tensor(c, h1, msfx_shape) : NULL;
            ddx_tensor *t2 = pl.nhist >= 2 ? host_tensor(c, h2, msfx_shape) : NULL;
            ddx_tensor *y = ddx_sampler_step_ms(c, xt, ot, t1, t2, &p);
            if (!y) {
                CHECK(0, "%s call %d: %s", fc->name, k, ddx_last_error());
                break;
            }
            const float *yn = ddx_f32c(y), *yd = yn + n;
            memcpy(want, fc->out + (size_t)k * n, sizeof want);
            if (fc->std[k] != 0.0) {
                float z[MSFX_N];
                ddx_philox_normal(z, n, p.key.seed, p.key.stream, p.key.step, p.key.offset);
                for (int i = 0; i < n; i++) want[i] = (float)((double)want[i] + fc->std[k] * (double)z[i]);
            }
            const double e = worst(yn, want, n);
            if (!(e <= case_err)) case_err = e;
            if (!(e <= tol) && bad_k < 0) bad_k = k;
            if (pl.hist == DDX_PLAN_HIST_STAGE) {
                memcpy(h1, x, sizeof x);
                memcpy(h2, yd, sizeof h2);
            } else {
                memcpy(h2, h1, sizeof h2);
                memcpy(h1, yd, sizeof h1);
            }
            memcpy(x, yn, sizeof x);
        }
        CHECK(bad_k < 0, "%s: x after call %d differs from diffusers' (worst |d| / (1 + |ref|) %.3g > %.1g)", fc->name,
              bad_k, case_err, tol);
        if (case_err > max_err) max_err = case_err;
        ddx_sampler_plan_free(&pl);
        ddx_schedule_free(&s);
    }
    printf("diffusers fixtures: %zu cases, worst |d| / (1 + |ref|) %.3g\n", sizeof msfx_cases / sizeof msfx_cases[0],
           max_err);
}

// Karras sigmas: the formula's end points, monotone, and t(sigma) inverts sigma(t) on the grid.
static void test_spacings(void) {
    ddx_schedule s;
    if (make_schedule(&s, 1000, DDX_PARAMETERIZATION_EPS) != DDX_OK) {
        CHECK(0, "schedule: %s", ddx_last_error());
        return;
    }
    double sig[10], t[10];
    ddx_karras_sigmas(&s, 10, sig, t);
    const double smax = sqrt((1.0 - s.alphas_cumprod[999]) / s.alphas_cumprod[999]);
    const double smin = sqrt((1.0 - s.alphas_cumprod[0]) / s.alphas_cumprod[0]);
    CHECK(fabs(sig[0] - smax) <= 1e-9 * smax && fabs(sig[9] - smin) <= 1e-9 * smin, "karras ends %g %g, want %g %g", sig[0],
          sig[9], smax, smin);
    CHECK(fabs(t[0] - 999.0) < 1e-9 && fabs(t[9]) < 1e-9, "karras times at the ends %g %g, want 999 and 0", t[0], t[9]);
    bool mono = true;
    for (int k = 1; k < 10; k++) mono = mono && sig[k] < sig[k - 1] && t[k] < t[k - 1];
    CHECK(mono, "karras sigmas and times decrease");
    // Sigma halfway (in rho-space) between the ends sits between the grid times that bracket it.
    const double mid = pow(0.5 * (pow(smax, 1.0 / 7.0) + pow(smin, 1.0 / 7.0)), 7.0);
    double sm[3], tm3[3];
    ddx_karras_sigmas(&s, 3, sm, tm3);
    CHECK(fabs(sm[1] - mid) <= 1e-12 * mid, "karras 3 levels: middle %g, want %g", sm[1], mid);
    int lo = 0;
    while (lo < 998 && sqrt((1.0 - s.alphas_cumprod[lo + 1]) / s.alphas_cumprod[lo + 1]) <= mid) lo++;
    CHECK(tm3[1] >= lo && tm3[1] <= lo + 1, "karras middle time %g outside [%d, %d]", tm3[1], lo, lo + 1);
    // Trailing (diffusers: round(arange(T, 0, -T / n)) - 1) and leading (k * (T // n)).
    int ts[1000];
    int nt = ddx_sampler_timesteps(&s, DDX_SAMPLER_DDIM, 3, DDX_SPACING_TRAILING, ts);
    CHECK(nt == 3 && ts[0] == 999 && ts[1] == 666 && ts[2] == 332, "trailing 3 of 1000: %d [%d %d %d], want 999 666 332",
          nt, ts[0], ts[1], ts[2]);
    nt = ddx_sampler_timesteps(&s, DDX_SAMPLER_DDIM, 3, DDX_SPACING_LEADING, ts);
    CHECK(nt == 3 && ts[0] == 666 && ts[1] == 333 && ts[2] == 0, "leading 3 of 1000: %d [%d %d %d], want 666 333 0", nt,
          ts[0], ts[1], ts[2]);
    nt = ddx_sampler_timesteps(&s, DDX_SAMPLER_DDIM, 10, DDX_SPACING_KARRAS, ts);
    CHECK(nt >= 2 && nt <= 10 && ts[0] == 999 && ts[nt - 1] == 0, "karras (DDIM, rounded): %d steps from %d to %d", nt,
          ts[0], nt > 0 ? ts[nt - 1] : -1);
    ddx_schedule_free(&s);
}

// ---- the sampler vs the reference loop ---------------------------------------------------------
// out = 0.5 x + 0.01 t + 0.1 (label + 1) per channel (labels optional): rows independent.
static ddx_tensor *stand_in_forward(ddx_ctx *c, const ddx_model *m, ddx_tensor *x, ddx_tensor *t, ddx_tensor *y) {
    if (!x || !t) return NULL;
    const int64_t N = x->shape[0];
    ddx_tensor *tt = ddx_reshape(c, ddx_scale(c, t, 0.01f, 0.0f), 4, (int64_t[]){N, 1, 1, 1});
    ddx_tensor *o = ddx_add(c, ddx_scale(c, x, 0.5f, 0.0f), tt);
    if (!y) return o;
    const int nc = m->cfg.model.num_classes + 1, C = m->cfg.model.out_channels;
    ddx_tensor *table = ddx_new(c, DDX_F32, 2, (int64_t[]){nc, C});   // [nc + null, C]
    if (!table) return NULL;
    for (int i = 0; i < nc * C; i++) ((float *)table->data)[i] = 0.1f * (float)(i / C + 1);
    ddx_tensor *e = ddx_reshape(c, ddx_embedding(c, y, table), 4, (int64_t[]){N, 1, 1, C});   // [N, 1, 1, C]
    return ddx_add(c, o, e);
}

// nc > 0: a class-conditional stand-in with nc classes plus the null class nc (the label table
// has nc + 1 rows, as the networks' embedding does).
static ddx_model *stand_in(int image_size, int C, int nc, ddx_parameterization param) {
    ddx_model *m = calloc(1, sizeof *m);
    ddx_config_defaults(&m->cfg);
    m->cfg.model.image_size = image_size;
    m->cfg.model.in_channels = m->cfg.model.out_channels = C;
    m->cfg.model.num_classes = nc;
    m->cfg.diffusion.parameterization = param;
    m->forward = stand_in_forward;
    return m;
}

// The loop the sampler runs, written out eagerly on host arrays: x_T from Philox, each call's
// model output, sampler_step_ms, the history per the plan.
// w: the guidance scale (1: none; otherwise the doubled forward, labels then the null class
// model.num_classes, and the op's guided read).
static ddx_status ref_sample(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, const ddx_sample_opts *o, int n,
                             const int32_t *y, double w, float *out) {
    const bool g2 = w != 1.0;
    ddx_sampler_plan pl;
    DDX_TRY(ddx_sampler_plan_init(&pl, s, o->sampler, o->steps, o->spacing));
    const int64_t H = m->cfg.model.image_size, C = m->cfg.model.out_channels, hwc = H * H * C;
    const int B = o->batch < n ? o->batch : n;
    float *h1 = calloc((size_t)(B * hwc), sizeof(float)), *h2 = calloc((size_t)(B * hwc), sizeof(float));
    float *x = malloc((size_t)(B * hwc) * sizeof(float));
    ddx_ctx_set_grad(c, false);
    ddx_status st = h1 && h2 && x ? DDX_OK : DDX_E_NOMEM;
    for (int b0 = 0; b0 < n && st == DDX_OK; b0 += B) {
        const int nb = n - b0 < B ? n - b0 : B;
        const int64_t shape[4] = {nb, H, H, C};
        const uint64_t off = (uint64_t)b0 * (uint64_t)hwc;
        const size_t bytes = (size_t)(nb * hwc) * sizeof(float);
        memset(h1, 0, bytes), memset(h2, 0, bytes);
        ddx_ctx_reset(c);
        ddx_tensor *xT = ddx_randn(c, DDX_F32, 4, shape, (ddx_rng_key){.seed = o->seed, .stream = DDX_RNG_STREAM_SAMPLER, .offset = off});
        if ((st = ddx_ctx_status(c)) != DDX_OK) break;
        memcpy(x, xT->data, bytes);
        for (int k = 1; k <= pl.n && st == DDX_OK; k++) {
            ddx_ctx_reset(c);
            const int64_t rows = g2 ? 2 * nb : nb;
            ddx_tensor *tt = ddx_fill(c, DDX_F32, 1, (int64_t[]){rows}, (float)pl.t[k - 1]);
            ddx_tensor *yy = NULL;
            if (y) {
                yy = ddx_new(c, DDX_I32, 1, (int64_t[]){rows});
                memcpy(yy->data, y + b0, (size_t)nb * sizeof(int32_t));
                for (int i = 0; g2 && i < nb; i++) ((int32_t *)yy->data)[nb + i] = m->cfg.model.num_classes;
            }
            ddx_tensor *xt = host_tensor(c, x, shape);
            ddx_tensor *xin = xt;
            if (g2) {
                xin = ddx_new(c, DDX_F32, 4, (int64_t[]){rows, H, H, C});
                memcpy(xin->data, x, bytes);
                memcpy((char *)xin->data + bytes, x, bytes);
            }
            ddx_tensor *pred = ddx_model_forward(c, m, xin, tt, yy);
            ddx_sampler_ms_params p = pl.p[k - 1];
            p.guided = g2;
            p.w = (float)w;
            p.key = (ddx_rng_key){.seed = o->seed, .stream = DDX_RNG_STREAM_SAMPLER, .step = (uint32_t)k, .offset = off};
            ddx_tensor *t1 = pl.nhist >= 1 ? host_tensor(c, h1, shape) : NULL;
            ddx_tensor *t2 = pl.nhist >= 2 ? host_tensor(c, h2, shape) : NULL;
            ddx_tensor *yv = ddx_sampler_step_ms(c, xt, pred, t1, t2, &p);
            if ((st = ddx_ctx_status(c)) != DDX_OK) break;
            const float *yn = ddx_f32c(yv), *yd = (const float *)((const char *)yn + bytes);
            if (pl.hist == DDX_PLAN_HIST_STAGE) {
                memcpy(h1, x, bytes);
                memcpy(h2, yd, bytes);
            } else {
                memcpy(h2, h1, bytes);
                memcpy(h1, yd, bytes);
            }
            memcpy(x, yn, bytes);
        }
        memcpy(out + (size_t)b0 * (size_t)hwc, x, bytes);
    }
    free(h1), free(h2), free(x);
    ddx_sampler_plan_free(&pl);
    return st;
}

static void test_sampler_matches_loop(ddx_ctx *c) {
    const ddx_sampler smp[4] = {DDX_SAMPLER_DPMPP2M, DDX_SAMPLER_DPMPP3M, DDX_SAMPLER_HEUN, DDX_SAMPLER_EULER_A};
    const ddx_parameterization prm[3] = {DDX_PARAMETERIZATION_EPS, DDX_PARAMETERIZATION_V, DDX_PARAMETERIZATION_X0};
    const int n = 5, H = 4, C = 3, hwc = H * H * C;
    float *a = malloc((size_t)n * hwc * sizeof(float)), *b = malloc((size_t)n * hwc * sizeof(float));
    for (int si = 0; si < 4; si++)
        for (int pi = 0; pi < 3; pi++)
            for (int batch = 2; batch <= 5; batch += 3) {
                ddx_model *m = stand_in(H, C, 0, prm[pi]);
                ddx_schedule s;
                make_schedule(&s, 50, prm[pi]);
                const ddx_sample_opts o = {.sampler = smp[si], .steps = 6, .spacing = si == 2 ? DDX_SPACING_KARRAS : DDX_SPACING_TRAILING,
                                           .seed = 21, .batch = batch, .graphs = true};
                ddx_sampling *sp = NULL;
                ddx_status st = ddx_sampling_create(m, &s, &o, DDX_CPU, &sp);
                if (st == DDX_OK) st = ddx_sampling_run(sp, n, NULL, NULL, a, NULL, NULL);
                ddx_status rs = st == DDX_OK ? ref_sample(c, m, &s, &o, n, NULL, 1.0, b) : st;
                CHECK(st == DDX_OK && rs == DDX_OK, "%s param %d batch %d: %s", sampler_name(smp[si]), pi, batch,
                      ddx_last_error());
                if (st == DDX_OK && rs == DDX_OK) {
                    CHECK(memcmp(a, b, (size_t)n * hwc * sizeof(float)) == 0, "%s param %d batch %d: the sampler differs from the reference loop",
                          sampler_name(smp[si]), pi, batch);
                    const int want = smp[si] == DDX_SAMPLER_HEUN ? 2 * 6 - 1 : 6;
                    CHECK(ddx_sampling_steps(sp) == want && ddx_sampling_visits(sp) == want,
                          "%s: %d model calls reported, want %d", sampler_name(smp[si]), ddx_sampling_steps(sp), want);
                    bool finite = true;
                    for (int i = 0; i < n * hwc; i++) finite = finite && isfinite(a[i]);
                    CHECK(finite, "%s param %d: non-finite images", sampler_name(smp[si]), pi);
                }
                ddx_sampling_free(sp);
                ddx_schedule_free(&s);
                free(m);
            }
    free(a), free(b);
}

// Guidance through sampler_step_ms's guided read: w = 2.5 equals the reference loop with the
// doubled forward (every new sampler, batches 2 of 3); w = 0 (the unconditional model alone)
// equals the null-class run; w = 2.5 differs from w = 1.
static void test_guidance_ms(ddx_ctx *c) {
    const ddx_sampler smp[4] = {DDX_SAMPLER_DPMPP2M, DDX_SAMPLER_DPMPP3M, DDX_SAMPLER_HEUN, DDX_SAMPLER_EULER_A};
    const int n = 3, H = 4, C = 2, hwc = H * H * C, nc = 4;
    const int32_t y[3] = {0, 2, 1}, ynull[3] = {nc, nc, nc};
    float *a = malloc((size_t)n * hwc * sizeof(float)), *b = malloc((size_t)n * hwc * sizeof(float));
    ddx_model *m = stand_in(H, C, nc, DDX_PARAMETERIZATION_EPS);
    ddx_schedule s;
    make_schedule(&s, 40, DDX_PARAMETERIZATION_EPS);
    for (int si = 0; si < 4; si++) {
        const ddx_sample_opts o = {.sampler = smp[si], .steps = 5, .spacing = DDX_SPACING_UNIFORM, .seed = 8, .batch = 2};
        ddx_sampling *sp = NULL;
        ddx_status st = ddx_sampling_create(m, &s, &o, DDX_CPU, &sp);
        if (st == DDX_OK) st = ddx_sampling_set_guidance(sp, 2.5);
        if (st == DDX_OK) st = ddx_sampling_run(sp, n, y, NULL, a, NULL, NULL);
        ddx_status rs = st == DDX_OK ? ref_sample(c, m, &s, &o, n, y, 2.5, b) : st;
        CHECK(st == DDX_OK && rs == DDX_OK, "%s guided: %s", sampler_name(smp[si]), ddx_last_error());
        if (st == DDX_OK && rs == DDX_OK)
            CHECK(memcmp(a, b, (size_t)n * hwc * sizeof(float)) == 0, "%s guidance 2.5 differs from the reference loop",
                  sampler_name(smp[si]));
        if (st == DDX_OK) st = ddx_sampling_set_guidance(sp, 1.0);
        if (st == DDX_OK) st = ddx_sampling_run(sp, n, y, NULL, b, NULL, NULL);
        CHECK(st == DDX_OK && memcmp(a, b, (size_t)n * hwc * sizeof(float)) != 0, "%s guidance 2.5 equals 1",
              sampler_name(smp[si]));
        if (st == DDX_OK) st = ddx_sampling_set_guidance(sp, 0.0);
        if (st == DDX_OK) st = ddx_sampling_run(sp, n, y, NULL, a, NULL, NULL);
        if (st == DDX_OK) st = ddx_sampling_set_guidance(sp, 1.0);
        if (st == DDX_OK) st = ddx_sampling_run(sp, n, ynull, NULL, b, NULL, NULL);
        CHECK(st == DDX_OK && memcmp(a, b, (size_t)n * hwc * sizeof(float)) == 0,
              "%s guidance 0 differs from the null-class run: %s", sampler_name(smp[si]), st ? ddx_last_error() : "");
        ddx_sampling_free(sp);
    }
    ddx_schedule_free(&s);
    free(m), free(a), free(b);
}

static void test_refusals(void) {
    ddx_model *m = stand_in(4, 1, 0, DDX_PARAMETERIZATION_EPS);
    ddx_schedule s;
    make_schedule(&s, 40, DDX_PARAMETERIZATION_EPS);
    const ddx_sample_opts o = {.sampler = DDX_SAMPLER_HEUN, .steps = 5, .seed = 8, .batch = 2};
    ddx_sampling *sp = NULL;
    ddx_status st = ddx_sampling_create(m, &s, &o, DDX_CPU, &sp);
    CHECK(st == DDX_OK, "heun create: %s", ddx_last_error());
    if (st == DDX_OK) {
        float known[16] = {0}, mask[16] = {0};
        st = ddx_sampling_set_inpaint(sp, known, mask);
        CHECK(st == DDX_E_INPUT && strstr(ddx_last_error(), "ddpm or ddim"), "heun inpainting: %d %s", st, ddx_last_error());
        st = ddx_sampling_set_repaint(sp, 2, 2);
        CHECK(st == DDX_E_INPUT && strstr(ddx_last_error(), "ddpm or ddim"), "heun RePaint: %d %s", st, ddx_last_error());
    }
    ddx_sampling_free(sp);
    const ddx_sample_opts bad = {.sampler = DDX_SAMPLER_DPMPP3M, .steps = 41, .seed = 8, .batch = 2};
    sp = NULL;
    st = ddx_sampling_create(m, &s, &bad, DDX_CPU, &sp);
    CHECK(st == DDX_E_INPUT && sp == NULL && strstr(ddx_last_error(), "sample.steps"), "dpmpp3m with 41 of 40 steps: %d %s",
          st, ddx_last_error());
    ddx_schedule_free(&s);
    free(m);
}

// The op's own checks: a second history without the first, a wrong guided shape.
static void test_op_refusals(ddx_ctx *c) {
    ddx_ctx_reset(c);
    const int64_t sh[4] = {2, 2, 2, 1}, sh2[4] = {4, 2, 2, 1};
    ddx_tensor *x = ddx_fill(c, DDX_F32, 4, sh, 0.5f), *o = ddx_fill(c, DDX_F32, 4, sh, 0.25f);
    ddx_sampler_ms_params p = {.a = 1.0f, .cx = 1.0f};
    CHECK(ddx_sampler_step_ms(c, x, o, NULL, x, &p) == NULL && strstr(ddx_last_error(), "second history"),
          "h2 without h1 accepted: %s", ddx_last_error());
    ddx_ctx_reset(c);
    x = ddx_fill(c, DDX_F32, 4, sh, 0.5f), o = ddx_fill(c, DDX_F32, 4, sh, 0.25f);
    p.guided = true, p.w = 2.0f;
    CHECK(ddx_sampler_step_ms(c, x, o, NULL, NULL, &p) == NULL && strstr(ddx_last_error(), "guided"),
          "guided with an undoubled output accepted: %s", ddx_last_error());
    ddx_ctx_reset(c);
    x = ddx_fill(c, DDX_F32, 4, sh, 0.5f);
    ddx_tensor *o2 = ddx_fill(c, DDX_F32, 4, sh2, 0.25f);
    ddx_tensor *y = ddx_sampler_step_ms(c, x, o2, NULL, NULL, &p);
    // m = 0.25 + 2 (0.25 - 0.25) = 0.25; D = 0.5 + 0 = 0.5; x' = 0.5.
    CHECK(y && y->shape[0] == 4 && ddx_f32c(y)[0] == 0.5f && ddx_f32c(y)[8] == 0.5f, "guided [4,...] output: %s",
          y ? "wrong values" : ddx_last_error());
    ddx_ctx_reset(c);
    p.guided = false, p.cd = NAN;
    x = ddx_fill(c, DDX_F32, 4, sh, 0.5f), o = ddx_fill(c, DDX_F32, 4, sh, 0.25f);
    CHECK(ddx_sampler_step_ms(c, x, o, NULL, NULL, &p) == NULL && strstr(ddx_last_error(), "cd is not finite"),
          "a NaN coefficient accepted: %s", ddx_last_error());
    ddx_ctx_reset(c);
}

// ---- GPU ------------------------------------------------------------------------------------------
static ddx_status run_dev(const ddx_model *m, const ddx_schedule *s, ddx_sample_opts o, ddx_device dev, bool graphs,
                          double w, int n, const int32_t *y, float *out) {
    o.graphs = graphs;
    ddx_sampling *sp = NULL;
    ddx_status st = ddx_sampling_create(m, s, &o, dev, &sp);
    if (st == DDX_OK && w != 1.0) st = ddx_sampling_set_guidance(sp, w);
    if (st == DDX_OK) st = ddx_sampling_run(sp, n, y, NULL, out, NULL, NULL);
    ddx_sampling_free(sp);
    return st;
}

static int run_cuda(void) {
    if (!ddx_cuda_available()) {
        printf("SKIP: no CUDA device\n");
        n_skip++;
        return ddx_test_finish("test_sampler_ms --cuda");
    }
    const ddx_sampler smp[4] = {DDX_SAMPLER_DPMPP2M, DDX_SAMPLER_DPMPP3M, DDX_SAMPLER_HEUN, DDX_SAMPLER_EULER_A};
    const int n = 5, H = 5, C = 3, hwc = H * H * C;   // 75 elements per image: not a multiple of 4
    const int32_t y[5] = {0, 1, 2, 0, 1};
    float *a = malloc((size_t)n * hwc * sizeof(float)), *b = malloc((size_t)n * hwc * sizeof(float));
    float *g = malloc((size_t)n * hwc * sizeof(float));
    for (int si = 0; si < 4; si++)
        for (int guided = 0; guided < 2; guided++) {
            ddx_model *m = stand_in(H, C, guided ? 4 : 0, DDX_PARAMETERIZATION_V);
            ddx_schedule s;
            make_schedule(&s, 50, DDX_PARAMETERIZATION_V);
            const ddx_sample_opts o = {.sampler = smp[si], .steps = 7, .spacing = DDX_SPACING_KARRAS, .seed = 3, .batch = 2};
            const double w = guided ? 2.5 : 1.0;
            const int32_t *yy = guided ? y : NULL;
            ddx_status st = run_dev(m, &s, o, DDX_CPU, false, w, n, yy, a);
            if (st == DDX_OK) st = run_dev(m, &s, o, DDX_CUDA, false, w, n, yy, b);
            if (st == DDX_OK) st = run_dev(m, &s, o, DDX_CUDA, true, w, n, yy, g);
            CHECK(st == DDX_OK, "%s guided %d on CUDA: %s", sampler_name(smp[si]), guided, ddx_last_error());
            if (st == DDX_OK) {
                CHECK(memcmp(b, g, (size_t)n * hwc * sizeof(float)) == 0, "%s guided %d: CUDA graphs differ from eager",
                      sampler_name(smp[si]), guided);
                const double e = worst(b, a, n * hwc);
                CHECK(e <= 1e-4, "%s guided %d: CUDA vs CPU worst |d| / (1 + |ref|) %.3g", sampler_name(smp[si]), guided, e);
                printf("  %s guided %d: CUDA vs CPU %.3g\n", sampler_name(smp[si]), guided, e);
            }
            ddx_schedule_free(&s);
            free(m);
        }
    free(a), free(b), free(g);
    return ddx_test_finish("test_sampler_ms --cuda");
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--cuda")) return run_cuda();
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)16 << 20) != DDX_OK) {
        printf("ctx init: %s\n", ddx_last_error());
        return 1;
    }
    test_fixtures(&c);
    test_spacings();
    test_sampler_matches_loop(&c);
    test_guidance_ms(&c);
    test_refusals();
    test_op_refusals(&c);
    ddx_ctx_free(&c);
    return ddx_test_finish("test_sampler_ms");
}
