// ddx-bench guidance --config C.yaml [--set k=v ...] [--batch B] [--steps S] [--reps R]
//                    [--guidance W] [--device cpu|cuda|auto] [--graphs on|off]
//
// Classifier-free guidance against plain conditional sampling at the same batch: B images of
// one class, DDIM with S steps (eta 1), timed whole and divided by S, the median of R runs
// after a warm-up, the guided and unguided runs alternating so a busy machine slows both
// alike. Guided is one forward of the doubled batch with the combine folded into the sampler
// update, so its ratio to unguided is at most about 2 (the forward's cost at twice the rows);
// also timed is the two-forward form (eps_c and eps_u from separate forwards, combined in
// separate ops, then the update), which is what the fusion replaces. Random weights: the
// timing does not depend on them. Compare with bench/reference/torch_guidance.py (diffusers).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_kernels.h"
#include "runtime/cuda.h"
#include "runtime/philox.h"
#include "train/trainer.h"

static double g_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int g_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int g_fail(ddx_status st) {
    fprintf(stderr, "ddx-bench guidance: %s\n", ddx_last_error());
    return ddx_exit_code(st);
}

// The two-forward form, one DDIM run of n = batch images: separate conditional and null-class
// forwards, eps_u + w (eps_c - eps_u) in three elementwise ops, then the plain update.
static ddx_status two_forward_run(ddx_ctx *c, const ddx_config *cfg, const ddx_model *m, const ddx_schedule *s,
                                  const ddx_sample_opts *o, double w, int n, int32_t cls, float *out) {
    const int64_t S = cfg->model.image_size, C = cfg->model.out_channels;
    int *ts = malloc((size_t)s->T * sizeof(int));
    if (!ts) return ddx_errorf(DDX_E_NOMEM, "out of host memory");
    const int K = ddx_sampler_timesteps(s, o->sampler, o->steps, o->spacing, ts);
    ddx_ctx_set_grad(c, false);
    ddx_ctx_set_training(c, false);
    const int64_t xs[4] = {n, S, S, C}, ns[1] = {n};
    void *xbuf = NULL;
    const size_t xbytes = (size_t)(n * S * S * C) * sizeof(float);
    ddx_status st = ddx_dev_alloc(c->device, xbytes, &xbuf);
    int32_t *yh = malloc(2 * (size_t)n * sizeof *yh);
    if (!yh && !st) st = ddx_errorf(DDX_E_NOMEM, "out of host memory");
    for (int i = 0; yh && i < n; i++) yh[i] = cls, yh[n + i] = cfg->model.num_classes;
    if (!st) st = ddx_ctx_reset(c);
    ddx_tensor *xT = st ? NULL : ddx_randn(c, DDX_F32, 4, xs, (ddx_rng_key){.seed = o->seed, .stream = DDX_RNG_STREAM_SAMPLER});
    if (!st && !(st = ddx_ctx_status(c))) st = ddx_memcpy(xbuf, c->device, xT->data, c->device, xbytes);
    for (int k = 1; k <= K && !st; k++) {
        ddx_sampler_step_params p = ddx_sampler_coefs(s, o->sampler, ts[k - 1], k < K ? ts[k] : -1, o->eta);
        p.key = (ddx_rng_key){.seed = o->seed, .stream = DDX_RNG_STREAM_SAMPLER, .step = (uint32_t)k};
        if ((st = ddx_ctx_reset(c))) break;
        ddx_tensor *tt = ddx_fill(c, DDX_F32, 1, ns, (float)ts[k - 1]);
        ddx_tensor *yc = ddx_new(c, DDX_I32, 1, ns), *yu = ddx_new(c, DDX_I32, 1, ns), *x = ddx_meta_tensor(c);
        if (!yc || !yu || !x) {
            st = ddx_ctx_status(c) ? ddx_ctx_status(c) : DDX_E_NOMEM;
            break;
        }
        if ((st = ddx_memcpy(yc->data, c->device, yh, DDX_CPU, (size_t)n * sizeof *yh)) ||
            (st = ddx_memcpy(yu->data, c->device, yh + n, DDX_CPU, (size_t)n * sizeof *yh)))
            break;
        *x = ddx_tensor_wrap(xbuf, DDX_F32, c->device, 4, xs);
        ddx_tensor *pc = ddx_model_forward(c, m, x, tt, yc), *pu = ddx_model_forward(c, m, x, tt, yu);
        ddx_tensor *e = ddx_add(c, pu, ddx_scale(c, ddx_add(c, pc, ddx_scale(c, pu, -1.0f, 0.0f)), (float)w, 0.0f));
        ddx_tensor *xp = ddx_sampler_step(c, x, e, &p);
        if ((st = ddx_ctx_status(c))) break;
        st = ddx_memcpy(xbuf, c->device, xp->data, c->device, xbytes);
    }
    if (!st) st = ddx_memcpy(out, DDX_CPU, xbuf, c->device, xbytes);
    ddx_ctx_reset(c);
    ddx_dev_free(c->device, xbuf);
    free(yh);
    free(ts);
    return st;
}

int ddx_bench_guidance(int argc, char **argv) {
    const char *config = "configs/fashion_mnist_cond.yaml", *device = NULL, *graphs = NULL;
    const char **sets = calloc((size_t)argc + 4, sizeof *sets);
    int n_sets = 0, steps = 10, reps = 3, batch = 16;
    double w = 3.0;
    if (!sets) return 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: ddx-bench guidance [--config C.yaml] [--set k=v ...] [--batch B] [--steps S] [--reps R]\n"
                   "                          [--guidance W] [--device cpu|cuda|auto] [--graphs on|off]\n");
            free(sets);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ddx-bench guidance: %s needs a value\n", a);
            free(sets);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--config")) config = v;
        else if (!strcmp(a, "--set")) sets[n_sets++] = v;
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--guidance")) w = atof(v);
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--graphs")) graphs = v;
        else {
            fprintf(stderr, "ddx-bench guidance: unknown option '%s'\n", a);
            free(sets);
            return 2;
        }
    }
    if (steps < 1 || steps > 1000 || reps < 1 || reps > 100 || batch < 1 || batch > 4096 || !(w >= 0.0) || w == 1.0 ||
        (graphs && strcmp(graphs, "on") && strcmp(graphs, "off"))) {
        fprintf(stderr, "ddx-bench guidance: --steps 1..1000, --reps 1..100, --batch 1..4096, --guidance >= 0 and not 1, "
                        "--graphs on|off\n");
        free(sets);
        return 2;
    }
    char dset[64];
    if (device) snprintf(dset, sizeof dset, "run.device=%s", device), sets[n_sets++] = dset;
    ddx_config cfg;
    ddx_status st = ddx_config_resolve(&cfg, config, sets, n_sets);
    free(sets);
    if (st) return g_fail(st);
    if (cfg.model.num_classes <= 0)
        return g_fail(ddx_errorf(DDX_E_INPUT, "%s: model.num_classes is 0; guidance needs a class-conditional config", config));
    ddx_device dev;
    char why[512];
    ddx_trainer tr;   // for the model, its weights (random init) and the schedule
    if ((st = ddx_device_pick(cfg.run.device, &dev, why, sizeof why, NULL)) || (st = ddx_trainer_init(&tr, &cfg, dev)))
        return g_fail(st);
    if (graphs) ddx_trainer_use_graphs(&tr, !strcmp(graphs, "on"));
    const int64_t S = cfg.model.image_size;
    const size_t per = (size_t)(S * S * cfg.model.out_channels);
    float *out = malloc((size_t)batch * per * sizeof *out);
    double *ms[3] = {malloc((size_t)reps * sizeof(double)), malloc((size_t)reps * sizeof(double)),
                     malloc((size_t)reps * sizeof(double))};
    if (!out || !ms[0] || !ms[1] || !ms[2]) return g_fail(ddx_errorf(DDX_E_NOMEM, "out of host memory"));
    const ddx_sample_opts so = {.sampler = DDX_SAMPLER_DDIM, .steps = steps < cfg.diffusion.timesteps ? steps : cfg.diffusion.timesteps,
                                .eta = 1.0, .spacing = DDX_SPACING_UNIFORM, .seed = 7, .batch = batch, .graphs = tr.sample_graphs};
    ddx_sampling *plain = NULL, *guided = NULL;
    if (!st) st = ddx_sampling_create(tr.model, &tr.sched, &so, dev, &plain);
    if (!st) st = ddx_sampling_create(tr.model, &tr.sched, &so, dev, &guided);
    if (!st) st = ddx_sampling_set_guidance(guided, w);
    ddx_ctx two;
    bool have_two = false;
    if (!st) st = ddx_ctx_init(&two, dev, (size_t)16 << 20), have_two = !st;
    printf("ddx-bench guidance: %s, %zu parameters, %s (%s), batch %d, DDIM %d steps, w %g, CUDA graphs %s\n", config,
           ddx_param_count(&tr.ps), ddx_device_name(dev), why, batch, so.steps, w, so.graphs ? "on" : "off");
    fflush(stdout);
    for (int r = -1; r < reps && !st; r++) {   // r = -1: the warm-up (arenas grow, graphs first captured)
        for (int which = 0; which < 3 && !st; which++) {
            const double t0 = g_now();
            if (which == 0) st = ddx_sampling_run_class(plain, batch, 0, out, NULL, NULL);
            else if (which == 1) st = ddx_sampling_run_class(guided, batch, 0, out, NULL, NULL);
            else st = two_forward_run(&two, &cfg, tr.model, &tr.sched, &so, w, batch, 0, out);
            if (r >= 0) ms[which][r] = 1e3 * (g_now() - t0) / so.steps;
        }
    }
    ddx_sampling_free(plain);
    ddx_sampling_free(guided);
    if (have_two) ddx_ctx_free(&two);
    if (st) return g_fail(st);
    double med[3];
    for (int k = 0; k < 3; k++) {
        qsort(ms[k], (size_t)reps, sizeof(double), g_cmp);
        med[k] = ms[k][reps / 2];
    }
    printf("unguided (w = 1, batch %d):              %9.2f ms per step (median of %d)\n", batch, med[0], reps);
    printf("guided (one doubled forward, fused):    %9.2f ms per step  %.2fx unguided\n", med[1], med[1] / med[0]);
    printf("guided (two forwards, separate combine): %9.2f ms per step  %.2fx unguided\n", med[2], med[2] / med[0]);
    printf("{\"framework\":\"ddx\",\"device\":\"%s\",\"batch\":%d,\"steps\":%d,\"guidance\":%g,\"unguided_ms\":%.3f,"
           "\"guided_ms\":%.3f,\"two_forward_ms\":%.3f,\"ratio\":%.3f,\"cuda_graphs\":%s}\n",
           ddx_device_name(dev), batch, so.steps, w, med[0], med[1], med[2], med[1] / med[0], so.graphs ? "true" : "false");
    for (int k = 0; k < 3; k++) free(ms[k]);
    free(out);
    ddx_trainer_free(&tr);
    return 0;
}
