// ddx-bench step --config C.yaml [--set k=v ...] [--batch B] [--steps K] [--sample-batch M] [--device cpu|cuda|auto]
//                [--graphs on|off]
//
// Times the full training step of a config (loss forward, backward, clip, AdamW, EMA), one
// sampling forward pass (no tape) and one DDIM denoising step (forward + sampler update) on
// random, non-zero data: warm-up, then the median of K. --graphs picks CUDA graphs for the
// training and denoising steps (default: the trainer's, DDX_CUDA_GRAPHS); the output says
// which ran.
// Compare with bench/reference/torch_step.py on the same machine and threads for the ratio.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_kernels.h"
#include "runtime/cuda.h"
#include "runtime/philox.h"
#include "train/trainer.h"

static double step_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int step_fail(ddx_status st) {
    fprintf(stderr, "ddx-bench step: %s\n", ddx_last_error());
    return ddx_exit_code(st);
}

int ddx_bench_step(int argc, char **argv) {
    const char *config = NULL, *device = NULL, *graphs = NULL;
    const char **sets = calloc((size_t)argc + 4, sizeof *sets);
    int n_sets = 0, steps = 5, sample_batch = -1, batch = -1;
    if (!sets) return 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: ddx-bench step --config C.yaml [--set k=v ...] [--batch B] [--steps K] [--sample-batch M]\n"
                   "                      [--device cpu|cuda|auto] [--graphs on|off]\n");
            free(sets);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ddx-bench step: %s needs a value\n", a);
            free(sets);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--config")) config = v;
        else if (!strcmp(a, "--set")) sets[n_sets++] = v;
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--sample-batch")) sample_batch = atoi(v);
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--graphs")) graphs = v;
        else {
            fprintf(stderr, "ddx-bench step: unknown option '%s'\n", a);
            free(sets);
            return 2;
        }
    }
    if (graphs && strcmp(graphs, "on") != 0 && strcmp(graphs, "off") != 0) {
        fprintf(stderr, "ddx-bench step: --graphs takes on or off, not '%s'\n", graphs);
        free(sets);
        return 2;
    }
    if (!config || steps < 1 || steps > 10000) {
        fprintf(stderr, "ddx-bench step: needs --config C.yaml (and --steps in [1, 10000])\n");
        free(sets);
        return 2;
    }
    char bset[64], dset[64];
    if (batch > 0) snprintf(bset, sizeof bset, "train.batch_size=%d", batch), sets[n_sets++] = bset;
    if (device) snprintf(dset, sizeof dset, "run.device=%s", device), sets[n_sets++] = dset;
    ddx_config cfg;
    ddx_status st = ddx_config_resolve(&cfg, config, sets, n_sets);
    free(sets);
    if (st) return step_fail(st);
    if (sample_batch < 1) sample_batch = 2 * cfg.train.batch_size;
    ddx_device dev;
    char why[512];
    ddx_trainer tr;
    if ((st = ddx_device_pick(cfg.run.device, &dev, why, sizeof why, NULL)) || (st = ddx_trainer_init(&tr, &cfg, dev)))
        return step_fail(st);
    if (graphs) ddx_trainer_use_graphs(&tr, !strcmp(graphs, "on"));
    int64_t B = cfg.train.batch_size, S = cfg.model.image_size, C = cfg.model.in_channels;
    size_t per = (size_t)(S * S * C);
    size_t nx = (size_t)(sample_batch > B ? sample_batch : B) * per;
    float *x = malloc(nx * sizeof *x);
    int32_t *y = calloc((size_t)(sample_batch > B ? sample_batch : B), sizeof *y);
    double *ms = malloc((size_t)steps * sizeof *ms);
    if (!x || !y || !ms) return step_fail(ddx_errorf(DDX_E_NOMEM, "out of host memory"));
    // Images in [-1, 1] like the loader gives: never time on zeros.
    st = ddx_philox_uniform(x, (int64_t)nx, 1, DDX_RNG_STREAM_DATA, 0, 0);
    for (size_t i = 0; i < nx; i++) x[i] = 2.0f * x[i] - 1.0f;
    const int32_t *yy = cfg.model.num_classes > 0 ? y : NULL;
    printf("ddx-bench step: %s, %zu parameters, batch %lld, %s (%s), CUDA graphs: training %s, sampling %s\n", config,
           ddx_param_count(&tr.ps), (long long)B, ddx_device_name(dev), why, tr.graphs ? "on" : "off",
           tr.sample_graphs ? "on" : "off");
    for (int w = 0; w < 2 && !st; w++) st = ddx_trainer_step(&tr, x, yy, NULL, NULL);
    for (int k = 0; k < steps && !st; k++) {
        double t0 = step_now();
        st = ddx_trainer_step(&tr, x, yy, NULL, NULL);
        if (!st && tr.ctx.cuda) st = ddx_cuda_sync(tr.ctx.cuda);   // waits for the device
        ms[k] = 1e3 * (step_now() - t0);
    }
    if (st) return step_fail(st);
    qsort(ms, (size_t)steps, sizeof *ms, cmp_d);
    double train_ms = ms[steps / 2];
    // The sampling forward: the network on a batch without the tape, as each sampler step runs it.
    ddx_ctx *c = &tr.ctx;
    for (int k = -1; k < steps && !st; k++) {
        double t0 = step_now();
        st = ddx_ctx_reset(c);
        ddx_ctx_set_grad(c, false);
        ddx_ctx_set_training(c, false);
        ddx_tensor *xt = ddx_new(c, DDX_F32, 4, (int64_t[]){sample_batch, S, S, C});   // [M, S, S, C]
        ddx_tensor *tt = ddx_new(c, DDX_F32, 1, (int64_t[]){sample_batch});            // [M]
        ddx_tensor *yt = yy ? ddx_new(c, DDX_I32, 1, (int64_t[]){sample_batch}) : NULL;
        if (!st && xt && tt) {
            float *tv = malloc((size_t)sample_batch * sizeof *tv);
            for (int i = 0; tv && i < sample_batch; i++) tv[i] = (float)((i * 37) % cfg.diffusion.timesteps);
            st = tv ? ddx_memcpy(xt->data, dev, x, DDX_CPU, (size_t)sample_batch * per * sizeof *x) : DDX_E_NOMEM;
            if (!st) st = ddx_memcpy(tt->data, dev, tv, DDX_CPU, (size_t)sample_batch * sizeof *tv);
            if (!st && yt) st = ddx_memcpy(yt->data, dev, y, DDX_CPU, (size_t)sample_batch * sizeof *y);
            free(tv);
        }
        ddx_tensor *out = st ? NULL : ddx_model_forward(c, tr.model, xt, tt, yt);
        if (!st && !out) st = ddx_ctx_status(c);
        if (!st && c->cuda) st = ddx_ctx_reset(c);
        if (k >= 0) ms[k] = 1e3 * (step_now() - t0);
    }
    ddx_ctx_set_grad(c, true);
    if (st) return step_fail(st);
    qsort(ms, (size_t)steps, sizeof *ms, cmp_d);
    double fwd_ms = ms[steps / 2];
    // The denoising step: DDIM with 10 steps over one batch, timed whole and divided (the graph
    // is captured once per batch, so its capture is part of the cost, as in a real run); the
    // median of up to 3 runs after a warm-up, GPU only (the CPU would take minutes).
    const int druns = steps < 3 ? steps : 3;
    ddx_sample_opts so = {.sampler = DDX_SAMPLER_DDIM, .steps = cfg.diffusion.timesteps < 10 ? cfg.diffusion.timesteps : 10,
                          .eta = 1.0, .spacing = DDX_SPACING_UNIFORM, .seed = 7, .batch = sample_batch, .graphs = tr.sample_graphs};
    double den_ms = 0;
    if (dev == DDX_CUDA) {
        float *smp = malloc((size_t)sample_batch * per * sizeof *smp);
        if (!smp) return step_fail(ddx_errorf(DDX_E_NOMEM, "out of host memory"));
        ddx_sampling *sp = NULL;
        st = ddx_sampling_create(tr.model, &tr.sched, &so, dev, &sp);
        for (int k = -1; k < druns && !st; k++) {
            double t0 = step_now();
            st = ddx_sampling_run(sp, sample_batch, yy, NULL, smp, NULL, NULL);
            if (k >= 0) ms[k] = 1e3 * (step_now() - t0) / so.steps;
        }
        ddx_sampling_free(sp);
        free(smp);
        if (st) return step_fail(st);
        qsort(ms, (size_t)druns, sizeof *ms, cmp_d);
        den_ms = ms[druns / 2];
    }
    printf("train step:       %9.2f ms  %8.1f img/s   (batch %lld, median of %d)\n", train_ms, 1e3 * (double)B / train_ms,
           (long long)B, steps);
    printf("sampling forward: %9.2f ms  %8.1f img/s   (batch %d, median of %d)\n", fwd_ms, 1e3 * sample_batch / fwd_ms,
           sample_batch, steps);
    if (dev == DDX_CUDA)
        printf("denoising step:   %9.2f ms  %8.1f img/s   (batch %d, DDIM %d steps, median of %d)\n", den_ms,
               1e3 * sample_batch / den_ms, sample_batch, so.steps, druns);
    printf("{\"framework\":\"ddx\",\"device\":\"%s\",\"batch\":%lld,\"ms_per_step_median\":%.3f,\"sample_batch\":%d,"
           "\"fwd_ms_median\":%.3f,\"denoise_ms_median\":%.3f,\"cuda_graphs\":%s,\"cuda_graphs_sampling\":%s,"
           "\"params\":%zu}\n",
           ddx_device_name(dev), (long long)B, train_ms, sample_batch, fwd_ms, den_ms, tr.graphs ? "true" : "false",
           tr.sample_graphs ? "true" : "false", ddx_param_count(&tr.ps));
    free(x);
    free(y);
    free(ms);
    ddx_trainer_free(&tr);
    return 0;
}
