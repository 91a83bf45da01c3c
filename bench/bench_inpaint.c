// ddx-bench inpaint [--config C.yaml] [--set k=v ...] [--batch B] [--steps S] [--reps R] [--resample R --jump J]
//                   [--device cpu|cuda] [--graphs on|off]
//
// The cost of inpainting against plain sampling, same model, batch, device and process:
//   - whole runs of the sampler (DDIM, S steps, one batch of B images): plain, inpainting (the
//     fused blend, a center mask) and RePaint (--resample/--jump); time per update (model call
//     plus sampler_step, or a jump) and per denoising step, and the ratio to plain;
//   - the op alone: sampler_step vs sampler_step with the blend at [B, H, W, C].
// Runs alternate (plain, inpaint, RePaint, plain, ...) so drift of a shared machine hits all
// three alike; the median of R runs is reported. The model is randomly initialised (the cost
// does not depend on the weights).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_kernels.h"
#include "models/device.h"
#include "models/mask.h"
#include "models/sampler.h"
#include "runtime/cuda.h"
#include "runtime/op_impl.h"
#include "runtime/philox.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// CPU time of the whole process (every thread): on a shared machine the work a run does, where
// the wall clock also counts the time other processes held the cores.
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double med(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int bfail(ddx_status st) {
    fprintf(stderr, "ddx-bench inpaint: %s\n", ddx_last_error());
    return ddx_exit_code(st);
}

int ddx_bench_inpaint(int argc, char **argv) {
    const char *config = "configs/fashion_mnist_ddpm.yaml", *device = NULL, *graphs = "on";
    int batch = 16, steps = 20, reps = 5, resample = 3, jump = 5;
    const char *sets[9];
    int n_sets = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: ddx-bench inpaint [--config C.yaml] [--set k=v ...] [--batch B] [--steps S] [--reps R] [--resample R --jump J]\n"
                   "                         [--device cpu|cuda] [--graphs on|off]\n");
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ddx-bench inpaint: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--config")) config = v;
        else if (!strcmp(a, "--set") && n_sets < 8) sets[n_sets++] = v;
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--resample")) resample = atoi(v);
        else if (!strcmp(a, "--jump")) jump = atoi(v);
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--graphs")) graphs = v;
        else {
            fprintf(stderr, "ddx-bench inpaint: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (batch < 1 || batch > 4096 || steps < 2 || reps < 1 || reps > 101 || resample < 2 || jump < 1 || jump >= steps) {
        fprintf(stderr, "ddx-bench inpaint: need batch 1..4096, steps >= 2, reps 1..101, resample >= 2, 1 <= jump < steps\n");
        return 2;
    }
    char dset[64];
    if (device) snprintf(dset, sizeof dset, "run.device=%s", device), sets[n_sets++] = dset;
    ddx_config cfg;
    ddx_status st = ddx_config_resolve(&cfg, config, sets, n_sets);
    if (st) return bfail(st);
    ddx_device dev;
    char why[512];
    ddx_param_store ps;
    ddx_model *m = NULL;
    ddx_schedule sched = {0};
    ddx_param_store_init(&ps, DDX_CPU);
    if (!(st = ddx_device_pick(cfg.run.device, &dev, why, sizeof why, NULL))) {
        ddx_param_store_init(&ps, dev);
        st = ddx_model_create(&cfg, &ps, &m);
    }
    if (!st) st = ddx_param_store_finalize_inference(&ps);
    if (!st && dev == DDX_CUDA && cfg.run.precision == DDX_PRECISION_BF16) st = ddx_model_set_compute(m, DDX_BF16);
    if (!st) st = ddx_model_init(m, 1);
    if (!st) st = ddx_schedule_init(&sched, &cfg);
    if (st) return bfail(st);
    const int S = cfg.model.image_size, C = cfg.model.out_channels;
    const int64_t hwc = (int64_t)S * S * C, tot = (int64_t)batch * hwc;
    float *known = malloc((size_t)tot * sizeof(float)), *mask = malloc((size_t)tot * sizeof(float));
    float *out = malloc((size_t)tot * sizeof(float));
    int32_t *y = calloc((size_t)batch, sizeof *y);
    uint8_t *m8 = malloc((size_t)S * S);
    if (!known || !mask || !out || !y || !m8) return bfail(ddx_errorf(DDX_E_NOMEM, "out of host memory"));
    ddx_philox_uniform(known, tot, 1, DDX_RNG_STREAM_DATA, 0, 0);
    for (int64_t i = 0; i < tot; i++) known[i] = 2.0f * known[i] - 1.0f;
    ddx_mask_spec spec;
    ddx_mask_parse("center", "bench", &spec);
    ddx_mask_make(&spec, "bench", S, S, 1, 0, m8);
    for (int64_t i = 0; i < tot; i++) mask[i] = (float)m8[(i % hwc) / C];
    const int32_t *yy = cfg.model.num_classes > 0 ? y : NULL;
    ddx_sample_opts so = {.sampler = DDX_SAMPLER_DDIM, .steps = steps, .eta = 1.0, .spacing = cfg.sample.spacing, .seed = 3,
                          .batch = batch, .graphs = !strcmp(graphs, "on")};
    // Three samplers, made once (buffers and graphs survive between runs).
    ddx_sampling *sp[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3 && !st; k++) st = ddx_sampling_create(m, &sched, &so, dev, &sp[k]);
    if (!st) st = ddx_sampling_set_inpaint(sp[1], known, mask);
    if (!st) st = ddx_sampling_set_inpaint(sp[2], known, mask);
    if (!st) st = ddx_sampling_set_repaint(sp[2], resample, jump);
    if (st) return bfail(st);
    const int visits[3] = {ddx_sampling_visits(sp[0]), ddx_sampling_visits(sp[1]), ddx_sampling_visits(sp[2])};
    const int nsteps = ddx_sampling_steps(sp[0]);
    printf("ddx-bench inpaint: %s, %zu parameters, batch %d, %dx%dx%d, DDIM %d steps, %s (%s), CUDA graphs %s\n", config,
           ddx_param_count(&ps), batch, S, S, C, nsteps, ddx_device_name(dev), why, graphs);
    printf("RePaint: resample %d jump %d: %d updates (%d denoising steps, %d jumps)\n", resample, jump, visits[2],
           nsteps + (visits[2] - nsteps) / (jump + 1) * jump, (visits[2] - nsteps) / (jump + 1));
    double *t[3], *u[3];
    for (int k = 0; k < 3; k++) t[k] = malloc((size_t)reps * sizeof(double)), u[k] = malloc((size_t)reps * sizeof(double));
    for (int r = -1; r < reps && !st; r++)   // r = -1: warm-up (arena growth, graph capture)
        for (int k = 0; k < 3 && !st; k++) {
            const double t0 = now_s(), c0 = cpu_s();
            st = ddx_sampling_run(sp[k], batch, yy, NULL, out, NULL, NULL);
            if (r >= 0) t[k][r] = now_s() - t0, u[k][r] = cpu_s() - c0;
        }
    if (st) return bfail(st);
    const char *names[3] = {"plain sampling", "inpainting (fused blend)", "RePaint"};
    double per_update[3], per_den[3];
    const int den[3] = {nsteps, nsteps, nsteps + (visits[2] - nsteps) / (jump + 1) * jump};
    double cpu_upd[3];
    printf("%-26s %8s %12s %7s %13s %7s %14s %7s\n", "mode", "run ms", "ms / update", "ratio", "ms / denoise", "ratio",
           "cpu ms / upd", "ratio");
    for (int k = 0; k < 3; k++) {
        const double run = med(t[k], reps);
        per_update[k] = 1e3 * run / visits[k];
        per_den[k] = 1e3 * run / den[k];
        cpu_upd[k] = 1e3 * med(u[k], reps) / visits[k];
        printf("%-26s %8.1f %12.3f %7.3f %13.3f %7.3f %14.3f %7.3f\n", names[k], 1e3 * run, per_update[k],
               per_update[k] / per_update[0], per_den[k], per_den[k] / per_den[0], cpu_upd[k], cpu_upd[k] / cpu_upd[0]);
    }
    // The op alone.
    ddx_ctx c;
    st = ddx_ctx_init(&c, dev, (size_t)64 << 20);
    double op[2] = {0, 0}, opc[2] = {0, 0};
    if (!st) {
        ddx_ctx_set_grad(&c, false);
        const int64_t shape[4] = {batch, S, S, C};
        ddx_tensor *x = ddx_new(&c, DDX_F32, 4, shape), *o = ddx_new(&c, DDX_F32, 4, shape);
        ddx_tensor *kt = ddx_new(&c, DDX_F32, 4, shape), *mt = ddx_new(&c, DDX_F32, 4, shape);
        if (x && o && kt && mt) {
            st = ddx_memcpy(x->data, dev, known, DDX_CPU, (size_t)tot * sizeof(float));
            if (!st) st = ddx_memcpy(o->data, dev, known, DDX_CPU, (size_t)tot * sizeof(float));
            if (!st) st = ddx_memcpy(kt->data, dev, known, DDX_CPU, (size_t)tot * sizeof(float));
            if (!st) st = ddx_memcpy(mt->data, dev, mask, DDX_CPU, (size_t)tot * sizeof(float));
        } else {
            st = ddx_ctx_status(&c);
        }
        ddx_sampler_step_params p = ddx_sampler_coefs(&sched, DDX_SAMPLER_DDPM, 500 % sched.T, 499 % sched.T, 0.0);
        p.key = (ddx_rng_key){.seed = 1, .stream = DDX_RNG_STREAM_SAMPLER, .step = 1};
        p.kc0 = 0.9f, p.kc1 = 0.43f, p.known_stream = DDX_RNG_STREAM_INPAINT;
        const int inner = 50;
        double *ts[2] = {malloc((size_t)reps * sizeof(double)), malloc((size_t)reps * sizeof(double))};
        double *tc[2] = {malloc((size_t)reps * sizeof(double)), malloc((size_t)reps * sizeof(double))};
        const ddx_arena_mark mark = ddx_arena_mark_get(&c.act);
        for (int r = -1; r < reps && !st; r++)
            for (int k = 0; k < 2 && !st; k++) {
                if (c.cuda) st = ddx_cuda_sync(c.cuda);
                const double t0 = now_s(), c0 = cpu_s();
                for (int i = 0; i < inner && !st; i++) {
                    ddx_tensor *yv = k ? ddx_sampler_step_blend(&c, x, o, kt, mt, &p) : ddx_sampler_step(&c, x, o, &p);
                    st = yv ? DDX_OK : ddx_ctx_status(&c);
                    ddx_arena_rewind(&c.act, mark);
                }
                if (!st && c.cuda) st = ddx_cuda_sync(c.cuda);
                if (r >= 0) ts[k][r] = (now_s() - t0) / inner, tc[k][r] = (cpu_s() - c0) / inner;
            }
        if (!st) op[0] = med(ts[0], reps), op[1] = med(ts[1], reps), opc[0] = med(tc[0], reps), opc[1] = med(tc[1], reps);
        for (int k = 0; k < 2; k++) free(ts[k]), free(tc[k]);
        ddx_ctx_free(&c);
    }
    if (st) return bfail(st);
    printf("op alone [%d,%d,%d,%d]: sampler_step %.1f us, with the blend %.1f us (ratio %.3f); CPU time %.1f and %.1f us "
           "(ratio %.3f); the blend's extra CPU time is %.2f%% of plain sampling's CPU time per update\n",
           batch, S, S, C, 1e6 * op[0], 1e6 * op[1], op[1] / op[0], 1e6 * opc[0], 1e6 * opc[1], opc[1] / opc[0],
           100.0 * 1e3 * (opc[1] - opc[0]) / cpu_upd[0]);
    for (int k = 0; k < 3; k++) ddx_sampling_free(sp[k]), free(t[k]), free(u[k]);
    ddx_schedule_free(&sched);
    ddx_model_free(m);
    ddx_param_store_free(&ps);
    free(known), free(mask), free(out), free(y), free(m8);
    return 0;
}
