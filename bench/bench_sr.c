// ddx-bench sr: the cost of a super-resolution sampling step against a plain one at the same
// batch, same run. Two models from one config: the config as given (model.cond lowres,
// in_channels = 2C) and the same network with model.cond none (in_channels = C); both sample
// `--steps` DDIM steps over `--batch` images from random weights (timing does not depend on
// them), alternating, `--reps` times after a warm-up each; reported: the median ms per step of
// each and their ratio. The SR side pays the concat of the conditioning and the wider first
// conv; the upsampling itself is outside the loop (once per image, on the host).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_kernels.h"
#include "models/device.h"
#include "models/lowres.h"
#include "models/sampler.h"
#include "runtime/philox.h"

static double sr_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct side {
    ddx_config cfg;
    ddx_param_store ps;
    ddx_model *m;
    ddx_schedule sch;
    ddx_sampling *sp;
} side;

static ddx_status side_init(side *s, const ddx_config *cfg, ddx_device dev, const ddx_sample_opts *so) {
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    ddx_param_store_init(&s->ps, dev);
    DDX_TRY(ddx_model_create(&s->cfg, &s->ps, &s->m));
    DDX_TRY(ddx_param_store_finalize_inference(&s->ps));
    DDX_TRY(ddx_model_init(s->m, 1));
    DDX_TRY(ddx_schedule_init(&s->sch, &s->cfg));
    return ddx_sampling_create(s->m, &s->sch, so, dev, &s->sp);
}

static void side_free(side *s) {
    ddx_sampling_free(s->sp);
    ddx_schedule_free(&s->sch);
    ddx_model_free(s->m);
    ddx_param_store_free(&s->ps);
}

static int sr_fail(ddx_status st) {
    fprintf(stderr, "ddx-bench sr: %s\n", ddx_last_error());
    return ddx_exit_code(st);
}

int ddx_bench_sr(int argc, char **argv) {
    const char *config = "configs/fashion_mnist_sr4.yaml", *device = "auto";
    int batch = 64, steps = 10, reps = 5;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: ddx-bench sr [--config C.yaml] [--batch B] [--steps S] [--reps R] [--device cpu|cuda|auto]\n"
                   "  C: a model.cond lowres config (default configs/fashion_mnist_sr4.yaml); B images per run (64),\n"
                   "  S DDIM steps per run (10), R timed runs of each side (5)\n");
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ddx-bench sr: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--config")) config = v;
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--device")) device = v;
        else {
            fprintf(stderr, "ddx-bench sr: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (batch < 1 || batch > 4096 || steps < 1 || reps < 1 || reps > 100) {
        fprintf(stderr, "ddx-bench sr: --batch 1..4096, --steps >= 1 and --reps 1..100\n");
        return 2;
    }
    char dset[64];
    snprintf(dset, sizeof dset, "run.device=%s", device);
    const char *sets[] = {dset};
    ddx_config cfg;
    ddx_status st = ddx_config_resolve(&cfg, config, sets, 1);
    if (!st && cfg.model.cond != DDX_COND_LOWRES)
        st = ddx_errorf(DDX_E_INPUT, "%s: model.cond is not lowres; give a super-resolution config", config);
    if (!st && steps > cfg.diffusion.timesteps)
        st = ddx_errorf(DDX_E_INPUT, "--steps %d exceeds diffusion.timesteps %d", steps, cfg.diffusion.timesteps);
    if (st) return sr_fail(st);
    ddx_config plain = cfg;
    plain.model.cond = DDX_COND_NONE;
    plain.model.in_channels = cfg.model.out_channels;
    plain.data.sr_factor = 0;
    ddx_device dev;
    char why[512];
    if ((st = ddx_device_pick(cfg.run.device, &dev, why, sizeof why, NULL))) return sr_fail(st);
    const ddx_sample_opts so = {.sampler = DDX_SAMPLER_DDIM, .steps = steps, .eta = 1.0, .seed = 7, .batch = batch,
                                .graphs = dev == DDX_CUDA};
    side sr = {0}, pl = {0};
    ddx_param_store_init(&sr.ps, DDX_CPU);
    ddx_param_store_init(&pl.ps, DDX_CPU);
    st = side_init(&sr, &cfg, dev, &so);
    if (!st) st = side_init(&pl, &plain, dev, &so);
    const int S = cfg.model.image_size, C = cfg.model.out_channels;
    const size_t per = (size_t)S * S * C;
    float *x0 = malloc((size_t)batch * per * sizeof *x0), *cond = malloc((size_t)batch * per * sizeof *cond);
    float *out = malloc((size_t)batch * per * sizeof *out);
    double *ms_sr = calloc((size_t)reps, sizeof(double)), *ms_pl = calloc((size_t)reps, sizeof(double));
    if (!st && (!x0 || !cond || !out || !ms_sr || !ms_pl)) st = ddx_errorf(DDX_E_NOMEM, "out of host memory");
    if (!st) st = ddx_philox_uniform(x0, (int64_t)((size_t)batch * per), 3, DDX_RNG_STREAM_DATA, 0, 0);
    for (size_t i = 0; !st && i < (size_t)batch * per; i++) x0[i] = 2.0f * x0[i] - 1.0f;
    if (!st) st = ddx_lowres_cond(&cfg, x0, batch, cond);
    if (!st)
        printf("ddx-bench sr: %s on %s (%s); %zu vs %zu parameters; batch %d, %d DDIM steps per run, %d runs each after a "
               "warm-up, alternating\n",
               config, ddx_device_name(dev), why, ddx_param_count(&sr.ps), ddx_param_count(&pl.ps), batch, steps, reps);
    const int nsteps = st ? 0 : ddx_sampling_steps(sr.sp);
    for (int r = -1; r < reps && !st; r++) {
        double t0 = sr_now();
        st = ddx_sampling_run(pl.sp, batch, NULL, NULL, out, NULL, NULL);
        double t1 = sr_now();
        if (!st) st = ddx_sampling_run(sr.sp, batch, NULL, cond, out, NULL, NULL);
        double t2 = sr_now();
        if (r >= 0) ms_pl[r] = 1e3 * (t1 - t0) / nsteps, ms_sr[r] = 1e3 * (t2 - t1) / nsteps;
    }
    if (!st) {
        for (int r = 0; r < reps; r++) printf("  run %d: plain %.2f ms/step, sr %.2f ms/step\n", r + 1, ms_pl[r], ms_sr[r]);
        qsort(ms_pl, (size_t)reps, sizeof *ms_pl, cmp_dbl);
        qsort(ms_sr, (size_t)reps, sizeof *ms_sr, cmp_dbl);
        const double p = ms_pl[reps / 2], q = ms_sr[reps / 2];
        printf("median ms per step: plain %.2f, sr %.2f; sr / plain = %.3f (goal <= 1.05)\n", p, q, q / p);
    }
    free(x0), free(cond), free(out), free(ms_sr), free(ms_pl);
    side_free(&sr);
    side_free(&pl);
    return st ? sr_fail(st) : 0;
}
