#include "eval/gen.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/checkpoint.h"
#include "models/device.h"

ddx_status ddx_gen_open(ddx_gen *g, const char *ckpt, const char *config, bool no_ema) {
    memset(g, 0, sizeof *g);
    ddx_param_store_init(&g->ps, DDX_CPU);
    ddx_checkpoint ck;
    DDX_TRY(ddx_checkpoint_open(ckpt, &ck));
    ddx_config cfg;
    ddx_status st = DDX_OK;
    if (config) st = ddx_config_resolve(&cfg, config, NULL, 0);
    else if (ck.has_config) cfg = ck.cfg;
    else st = ddx_errorf(DDX_E_INPUT, "%s: has no stored config; pass --config CONFIG.yaml describing its model", ckpt);
    if (!st) st = ddx_gen_from(g, &ck, &cfg, no_ema);
    ddx_checkpoint_close(&ck);
    if (st) ddx_gen_close(g);
    return st;
}

ddx_status ddx_gen_from(ddx_gen *g, const ddx_checkpoint *ck, const ddx_config *cfg, bool no_ema) {
    memset(g, 0, sizeof *g);
    g->cfg = *cfg;
    ddx_param_store_init(&g->ps, DDX_CPU);
    ddx_status st = ddx_device_pick(g->cfg.run.device, &g->dev, g->device_why, sizeof g->device_why, NULL);
    if (!st) {
        ddx_param_store_init(&g->ps, g->dev);
        st = ddx_model_create(&g->cfg, &g->ps, &g->model);
    }
    if (!st) st = ddx_param_store_finalize_inference(&g->ps);
    if (!st && g->dev == DDX_CUDA && g->cfg.run.precision == DDX_PRECISION_BF16) st = ddx_model_set_compute(g->model, DDX_BF16);
    g->ema = !no_ema && (ck->content & DDX_CKPT_EMA);
    if (!st) st = ddx_checkpoint_load_value(ck, &g->ps, g->ema);
    g->step = ck->state.step;
    if (ck->state.class_names) snprintf(g->class_names, sizeof g->class_names, "%s", ck->state.class_names);
    if (!st) st = ddx_schedule_init(&g->sched, &g->cfg);
    return st;
}

bool ddx_gen_graphs(void) {
    const char *gr = getenv("DDX_CUDA_GRAPHS"), *prof = getenv("DDX_PROFILE");
    const bool profiling = prof && *prof && strcmp(prof, "0") != 0;
    return !profiling && (gr && *gr ? strcmp(gr, "0") != 0 : true);
}

void ddx_gen_close(ddx_gen *g) {
    ddx_schedule_free(&g->sched);
    ddx_model_free(g->model);
    g->model = NULL;
    ddx_param_store_free(&g->ps);
}

ddx_status ddx_gen_sampler(ddx_gen *g, ddx_sampler kind, int steps, double eta, uint64_t seed, int batch,
                           ddx_sampling **out) {
    const ddx_sample_opts so = {
        .sampler = kind,
        .steps = steps,
        .eta = eta,
        .spacing = g->cfg.sample.spacing,
        .seed = seed,
        .batch = batch,
        .graphs = ddx_gen_graphs(),
    };
    return ddx_sampling_create(g->model, &g->sched, &so, g->dev, out);
}

void ddx_quantize_u8(const float *x, size_t n, uint8_t *out) {
    // The same float operations as image.c's map_u8 with lo = -1, scale = 0.5, so the values
    // are bit for bit those of a PNG the user saves.
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (isnan(v)) {
            out[i] = 0;
            continue;
        }
        float u = (v - -1.0f) * 0.5f;
        out[i] = !(u > 0.0f) ? 0 : u >= 1.0f ? 255 : (uint8_t)(u * 255.0f + 0.5f);
    }
}

double ddx_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ddx_fmt_duration(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, n, "?");
        return;
    }
    long t = lround(s);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

ddx_status ddx_parse_i64(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi)
        return ddx_errorf(DDX_E_INPUT, "%s: '%s' is not an integer in %lld..%lld", flag, s ? s : "", (long long)lo,
                          (long long)hi);
    *out = v;
    return DDX_OK;
}

ddx_status ddx_parse_f64(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !(v >= lo && v <= hi))
        return ddx_errorf(DDX_E_INPUT, "%s: '%s' is not a number in [%g, %g]", flag, s ? s : "", lo, hi);
    *out = v;
    return DDX_OK;
}
