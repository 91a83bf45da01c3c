// Super-resolution conditioning (models/lowres.h, model.cond lowres):
//   - area downsampling and bicubic upsampling against PyTorch (F.avg_pool2d, F.interpolate
//     bicubic align_corners=False; fixture tests/data/lowres/lowres.safetensors made by
//     tests/reference/make_lowres_fixtures.py), and the clamped conditioning;
//   - the config rules (data.sr_factor, in_channels = 2 x out_channels) and bad sizes;
//   - shapes through both U-Nets and the sampler for factors 2 and 4;
//   - a few CPU training steps of a conditioned model on one batch lower the loss.
// Usage: test_lowres [FIXTURE]   (run from tests/)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "models/lowres.h"
#include "models/sampler.h"
#include "runtime/safetensors.h"
#include "train/trainer.h"

// The fixture is float64 math on the same fp32 inputs; ddx sums in double and rounds once.
#define TOL 2e-6

static const float *fx(const ddx_st_file *f, const char *name, int64_t want) {
    const ddx_st_tensor *t = ddx_st_find(f, name);
    int64_t n = 1;
    for (int i = 0; t && i < t->ndim; i++) n *= t->shape[i];
    CHECK(t && t->dtype == DDX_ST_F32 && n == want, "fixture tensor %s missing or of another size (want %lld values)", name,
          (long long)want);
    return t && t->dtype == DDX_ST_F32 && n == want ? (const float *)t->data : NULL;
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

typedef struct lcase {
    const char *name;
    int n, h, w, c;
    int factors[3];
    bool square;
} lcase;

static void test_fixture(const char *path) {
    static const lcase CASES[] = {
        {"gray16", 2, 16, 16, 1, {2, 4, 8}, true},
        {"rgb8", 1, 8, 8, 3, {2, 4, 0}, true},
        {"rect", 1, 8, 12, 2, {2, 4, 0}, false},
    };
    ddx_st_file f;
    ddx_status st = ddx_st_read(path, &f);
    CHECK(st == DDX_OK, "cannot read %s (run from tests/): %s", path, ddx_last_error());
    if (st != DDX_OK) return;
    bool overshoot = false;
    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
        const lcase *lc = &CASES[k];
        char nm[64];
        const int64_t nx = (int64_t)lc->n * lc->h * lc->w * lc->c;
        snprintf(nm, sizeof nm, "%s.x", lc->name);
        const float *x = fx(&f, nm, nx);
        for (int j = 0; x && j < 3 && lc->factors[j]; j++) {
            const int fa = lc->factors[j], h = lc->h / fa, w = lc->w / fa;
            const int64_t nl = (int64_t)lc->n * h * w * lc->c;
            float *down = malloc((size_t)nl * sizeof *down), *up = malloc((size_t)nx * sizeof *up);
            snprintf(nm, sizeof nm, "%s.down%d", lc->name, fa);
            const float *rd = fx(&f, nm, nl);
            snprintf(nm, sizeof nm, "%s.up%d", lc->name, fa);
            const float *ru = fx(&f, nm, nx);
            if (down && up && rd && ru) {
                CHECK(ddx_area_downsample(x, lc->n, lc->h, lc->w, lc->c, fa, down) == DDX_OK, "%s x%d: downsample: %s",
                      lc->name, fa, ddx_last_error());
                double e = max_diff(down, rd, nl);
                CHECK(e <= TOL, "%s x%d: area downsample differs from F.avg_pool2d by %g", lc->name, fa, e);
                // Upsample the reference low-res image, so each half is checked on its own.
                CHECK(ddx_bicubic_upsample(rd, lc->n, h, w, lc->c, fa, up) == DDX_OK, "%s x%d: upsample: %s", lc->name,
                      fa, ddx_last_error());
                e = max_diff(up, ru, nx);
                CHECK(e <= TOL, "%s x%d: bicubic upsample differs from F.interpolate(bicubic) by %g", lc->name, fa, e);
                for (int64_t i = 0; i < nx; i++) overshoot |= fabsf(ru[i]) > 1.0f;
                printf("%s x%d: down %dx%d, max err down %.2g up %.2g\n", lc->name, fa, h, w, max_diff(down, rd, nl), e);
            }
            if (lc->square && up) {
                // The conditioning: down, up, clamp, as the trainer makes it.
                ddx_config cfg;
                ddx_config_defaults(&cfg);
                cfg.model.image_size = cfg.data.image_size = lc->h;
                cfg.model.out_channels = lc->c;
                cfg.model.in_channels = 2 * lc->c;
                cfg.model.cond = DDX_COND_LOWRES;
                cfg.data.sr_factor = fa;
                snprintf(nm, sizeof nm, "%s.cond%d", lc->name, fa);
                const float *rc = fx(&f, nm, nx);
                CHECK(ddx_lowres_cond(&cfg, x, lc->n, up) == DDX_OK, "%s x%d: cond: %s", lc->name, fa, ddx_last_error());
                double e = rc ? max_diff(up, rc, nx) : 1.0;
                CHECK(e <= TOL, "%s x%d: the clamped conditioning differs from PyTorch's by %g", lc->name, fa, e);
                float lo = 0, hi = 0;
                for (int64_t i = 0; i < nx; i++) lo = fminf(lo, up[i]), hi = fmaxf(hi, up[i]);
                CHECK(lo >= -1.0f && hi <= 1.0f, "%s x%d: conditioning outside [-1, 1]: [%g, %g]", lc->name, fa, lo, hi);
            }
            free(down);
            free(up);
        }
    }
    // The fixture is built so that the clamp has work to do; otherwise the check above is idle.
    CHECK(overshoot, "no bicubic value of the fixture leaves [-1, 1]: the clamp is untested (regenerate the fixture)");
    ddx_st_close(&f);
}

static void sr_config(ddx_config *cfg, ddx_model_type type, int size, int c, int factor) {
    ddx_config_defaults(cfg);
    cfg->model.type = type;
    cfg->model.cond = DDX_COND_LOWRES;
    cfg->data.sr_factor = factor;
    cfg->model.image_size = cfg->data.image_size = size;
    cfg->model.out_channels = c;
    cfg->model.in_channels = 2 * c;
    cfg->data.dataset = c == 1 ? DDX_DATASET_FASHION_MNIST : DDX_DATASET_CIFAR10;
    cfg->model.ch = 8;
    if (type == DDX_MODEL_TYPE_UNET_PLAIN) {
        cfg->model.ch_mult = (ddx_int_list){3, {1, 2, 2}};
    } else {
        cfg->model.ch_mult = (ddx_int_list){2, {1, 2}};
        cfg->model.num_res_blocks = 1;
        cfg->model.attn_resolutions = (ddx_int_list){1, {size / 2}};
        cfg->model.groups = 4;
        cfg->model.dropout = 0.0;
    }
    cfg->diffusion.timesteps = 20;
    cfg->sample.sampler = DDX_SAMPLER_DDIM;
    cfg->sample.steps = 3;
    cfg->train.batch_size = 8;
    cfg->train.warmup_steps = 0;
    cfg->train.lr = 2e-3;
    cfg->train.ema_decay = 0.0;
}

#define EXPECT_BAD(cfgexpr, key, what)                                                                                    \
    do {                                                                                                                  \
        ddx_config c_;                                                                                                    \
        sr_config(&c_, DDX_MODEL_TYPE_UNET_DDPM, 16, 1, 4);                                                               \
        cfgexpr;                                                                                                          \
        ddx_status s_ = ddx_config_validate(&c_);                                                                         \
        CHECK(s_ == DDX_E_INPUT && strstr(ddx_last_error(), key), "%s: want an error naming %s, got %d: %s", what, key,    \
              (int)s_, s_ ? ddx_last_error() : "accepted");                                                               \
    } while (0)

static void test_config(void) {
    ddx_config cfg;
    sr_config(&cfg, DDX_MODEL_TYPE_UNET_DDPM, 16, 1, 4);
    CHECK(ddx_config_validate(&cfg) == DDX_OK, "a valid SR config is refused: %s", ddx_last_error());
    EXPECT_BAD(c_.data.sr_factor = 3, "data.sr_factor", "factor 3");
    EXPECT_BAD(c_.data.sr_factor = 0, "data.sr_factor", "lowres without a factor");
    EXPECT_BAD((c_.model.image_size = c_.data.image_size = 28, c_.data.sr_factor = 8), "data.sr_factor", "8 does not divide 28");
    EXPECT_BAD(c_.model.in_channels = 1, "model.in_channels", "in_channels = out_channels with lowres");
    EXPECT_BAD((c_.model.cond = DDX_COND_NONE, c_.model.in_channels = 1), "data.sr_factor", "a factor without lowres");
    EXPECT_BAD((c_.model.cond = DDX_COND_NONE, c_.data.sr_factor = 0), "model.in_channels", "in 2 out 1 without lowres");
    // The YAML face: the key names and the enum.
    const char *sets[] = {"model.cond=lowres", "data.sr_factor=2", "model.in_channels=6"};
    ddx_status st = ddx_config_resolve(&cfg, NULL, sets, 3);
    CHECK(st == DDX_OK && cfg.model.cond == DDX_COND_LOWRES && cfg.data.sr_factor == 2,
          "--set model.cond=lowres data.sr_factor=2: %s", st ? ddx_last_error() : "ok");
    const char *bad[] = {"model.cond=highres"};
    CHECK(ddx_config_resolve(&cfg, NULL, bad, 1) == DDX_E_INPUT && strstr(ddx_last_error(), "model.cond"),
          "an unknown model.cond is refused naming the key: %s", ddx_last_error());
    // Sizes the resamplers refuse.
    float x[36] = {0}, o[36];
    CHECK(ddx_area_downsample(x, 1, 6, 6, 1, 4, o) == DDX_E_INPUT, "area downsample of 6x6 by 4 is refused");
    CHECK(ddx_bicubic_upsample(x, 1, 0, 6, 1, 2, o) == DDX_E_INPUT, "bicubic upsample of a 0-row image is refused");
    sr_config(&cfg, DDX_MODEL_TYPE_UNET_DDPM, 16, 1, 4);
    cfg.model.cond = DDX_COND_NONE;
    CHECK(ddx_lowres_cond(&cfg, x, 1, o) == DDX_E_INPUT, "the conditioning of a model without model.cond lowres is refused");
}

// Forward and sampler shapes for factor 2 and 4 on both networks.
static void test_shapes(void) {
    const ddx_model_type types[2] = {DDX_MODEL_TYPE_UNET_PLAIN, DDX_MODEL_TYPE_UNET_DDPM};
    const int factors[2] = {2, 4};
    for (int ti = 0; ti < 2; ti++)
        for (int fi = 0; fi < 2; fi++) {
            const int S = 16, C = ti ? 3 : 1, f = factors[fi], n = 3;
            const char *tn = ti ? "unet_ddpm" : "unet_plain";
            ddx_config cfg;
            sr_config(&cfg, types[ti], S, C, f);
            CHECK(ddx_config_validate(&cfg) == DDX_OK, "%s x%d: config: %s", tn, f, ddx_last_error());
            ddx_param_store ps;
            ddx_param_store_init(&ps, DDX_CPU);
            ddx_model *m = NULL;
            ddx_schedule sch = {0};
            ddx_sampling *sp = NULL;
            ddx_status st = ddx_model_create(&cfg, &ps, &m);
            if (!st) st = ddx_param_store_finalize_inference(&ps);
            if (!st) st = ddx_model_init(m, 3);
            if (!st) st = ddx_schedule_init(&sch, &cfg);
            const ddx_sample_opts so = {.sampler = DDX_SAMPLER_DDIM, .steps = 3, .eta = 0.0, .seed = 5, .batch = 2};
            if (!st) st = ddx_sampling_create(m, &sch, &so, DDX_CPU, &sp);
            CHECK(st == DDX_OK, "%s x%d: setup: %s", tn, f, ddx_last_error());
            const size_t per = (size_t)S * S * C;
            float *x0 = malloc(n * per * sizeof *x0), *cond = malloc(n * per * sizeof *cond), *out = malloc(n * per * sizeof *out);
            float *low = malloc(n * per * sizeof *low);
            for (size_t i = 0; i < n * per; i++) x0[i] = sinf(0.37f * (float)i), out[i] = NAN;
            if (!st) st = ddx_area_downsample(x0, n, S, S, C, f, low);
            if (!st) st = ddx_lowres_cond_from_low(&cfg, low, n, cond);
            CHECK(st == DDX_OK, "%s x%d: conditioning of %dx%d: %s", tn, f, S / f, S / f, ddx_last_error());
            if (!st) {
                st = ddx_sampling_run(sp, n, NULL, cond, out, NULL, NULL);
                CHECK(st == DDX_OK, "%s x%d: sampling with the conditioning: %s", tn, f, ddx_last_error());
                bool finite = true;
                for (size_t i = 0; i < n * per; i++) finite &= isfinite(out[i]) != 0;
                CHECK(finite, "%s x%d: every one of the %d x %dx%dx%d outputs written and finite", tn, f, n, S, S, C);
                CHECK(ddx_sampling_run(sp, n, NULL, NULL, out, NULL, NULL) == DDX_E_INPUT &&
                          strstr(ddx_last_error(), "conditioning"),
                      "%s x%d: sampling without the conditioning is refused: %s", tn, f, ddx_last_error());
                // The forward: [n, S, S, 2C] in, [n, S, S, C] out; an unconditioned input is refused.
                ddx_ctx c;
                if (ddx_ctx_init(&c, DDX_CPU, (size_t)8 << 20) == DDX_OK) {
                    ddx_ctx_set_grad(&c, false);
                    ddx_tensor *xi = ddx_new(&c, DDX_F32, 4, (int64_t[]){n, S, S, 2 * C});
                    ddx_tensor *tt = ddx_new(&c, DDX_F32, 1, (int64_t[]){n});
                    if (xi && tt) {
                        memset(xi->data, 0, ddx_nbytes(xi));
                        memset(tt->data, 0, ddx_nbytes(tt));
                    }
                    ddx_tensor *o = ddx_model_forward(&c, m, xi, tt, NULL);
                    CHECK(o && o->ndim == 4 && o->shape[0] == n && o->shape[1] == S && o->shape[2] == S && o->shape[3] == C,
                          "%s x%d: forward of [%d, %d, %d, %d] gives [%d, %d, %d, %d]", tn, f, n, S, S, 2 * C, n, S, S, C);
                    ddx_tensor *xb = ddx_new(&c, DDX_F32, 4, (int64_t[]){n, S, S, C});
                    CHECK(ddx_model_forward(&c, m, xb, tt, NULL) == NULL && ddx_ctx_status(&c) == DDX_E_INPUT,
                          "%s x%d: a forward of x_t alone (no conditioning channels) is refused", tn, f);
                    ddx_ctx_free(&c);
                }
            }
            free(x0), free(cond), free(out), free(low);
            ddx_sampling_free(sp);
            ddx_schedule_free(&sch);
            ddx_model_free(m);
            ddx_param_store_free(&ps);
        }
}

// Thirty steps (sixty for unet_plain) on one fixed batch: the conditioned model fits it (the mean of the last five
// losses well under that of the first five), on each network.
static void test_training(void) {
    const ddx_model_type types[2] = {DDX_MODEL_TYPE_UNET_PLAIN, DDX_MODEL_TYPE_UNET_DDPM};
    for (int ti = 0; ti < 2; ti++) {
        const char *tn = ti ? "unet_ddpm" : "unet_plain";
        ddx_config cfg;
        sr_config(&cfg, types[ti], 16, 1, 4);
        // unet_plain has no normalisation and scales its bottleneck by the time MLP: it starts slower.
        if (!ti) cfg.train.lr = 3e-3, cfg.model.ch = 16;
        ddx_trainer tr;
        ddx_status st = ddx_trainer_init(&tr, &cfg, DDX_CPU);
        CHECK(st == DDX_OK, "%s: trainer: %s", tn, ddx_last_error());
        if (st) continue;
        const int B = cfg.train.batch_size, S = 16;
        float *x = malloc((size_t)B * S * S * sizeof *x);
        // Smooth images with a per-image phase: structure the low-res image tells about.
        for (int b = 0; b < B; b++)
            for (int i = 0; i < S * S; i++) x[b * S * S + i] = 0.9f * sinf(0.3f * (float)(i % S) + 0.7f * (float)b) * cosf(0.2f * (float)(i / S));
        const int steps = ti ? 30 : 60;
        double first = 0, last = 0;
        for (int k = 0; k < steps && st == DDX_OK; k++) {
            float l = 0;
            st = ddx_trainer_step(&tr, x, NULL, &l, NULL);
            if (k < 5) first += l / 5.0;
            if (k >= steps - 5) last += l / 5.0;
        }
        CHECK(st == DDX_OK, "%s: training step: %s", tn, ddx_last_error());
        CHECK(last < 0.6 * first, "%s: loss over 30 steps on one batch: first five %.4f, last five %.4f", tn, first, last);
        printf("%s: loss first five %.4f, last five %.4f\n", tn, first, last);
        // The grids: refused without images to condition on, then drawn.
        float *out = malloc((size_t)4 * S * S * sizeof *out);
        CHECK(ddx_trainer_sample(&tr, false, 4, 1, out) != DDX_OK, "%s: a grid without sample images is refused", tn);
        st = ddx_trainer_set_sample_cond(&tr, x, 2);
        if (!st) st = ddx_trainer_sample(&tr, false, 4, 1, out);
        CHECK(st == DDX_OK, "%s: a grid of 4 from 2 sample images: %s", tn, ddx_last_error());
        free(out);
        free(x);
        ddx_trainer_free(&tr);
    }
}

int main(int argc, char **argv) {
    test_fixture(argc > 1 ? argv[1] : "data/lowres/lowres.safetensors");
    test_config();
    test_shapes();
    test_training();
    return ddx_test_finish("lowres");
}
