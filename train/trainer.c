// The training step: see train/trainer.h.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda.h"
#include "train/trainer.h"

ddx_status ddx_trainer_pick_device(ddx_run_device want, ddx_device *out, char *why, size_t why_n) {
    char tmp[16];
    if (!why) why = tmp, why_n = sizeof tmp;
    *out = DDX_CPU;
    if (want == DDX_RUN_DEVICE_CPU) {
        snprintf(why, why_n, "run.device: cpu");
        return DDX_OK;
    }
    bool gpu = ddx_cuda_available();
    if (!gpu) {
        if (want == DDX_RUN_DEVICE_CUDA)
            return ddx_errorf(DDX_E_INPUT, "run.device: cuda, but %s; use run.device: auto or cpu", ddx_cuda_describe());
        snprintf(why, why_n, "no GPU (%s)", ddx_cuda_describe());
        return DDX_OK;
    }
    // A run must not stop at its first op without a kernel: auto stays on the CPU until the CUDA
    // backend covers every op.
    char missing[256] = "";
    size_t k = 0;
    int n_missing = 0;
    for (int op = 0; op < DDX_OP_COUNT; op++) {
        if (ddx_cuda_ops[op].fwd && (ddx_cuda_ops[op].bwd || !ddx_op_differentiable((ddx_op)op))) continue;
        if (n_missing++ < 6 && k < sizeof missing)
            k += (size_t)snprintf(missing + k, sizeof missing - k, "%s%s", k ? ", " : "", ddx_op_name((ddx_op)op));
    }
    if (n_missing) {
        if (want == DDX_RUN_DEVICE_CUDA)
            return ddx_errorf(DDX_E_INPUT, "run.device: cuda, but %d ops have no CUDA kernel yet (%s%s); use run.device: cpu",
                              n_missing, missing, n_missing > 6 ? ", ..." : "");
        snprintf(why, why_n, "%s present, but %d ops have no CUDA kernel yet (%s%s)", ddx_cuda_describe(), n_missing, missing,
                 n_missing > 6 ? ", ..." : "");
        return DDX_OK;
    }
    *out = DDX_CUDA;
    snprintf(why, why_n, "%s", ddx_cuda_describe());
    return DDX_OK;
}

ddx_status ddx_trainer_init(ddx_trainer *t, const ddx_config *cfg, ddx_device dev) {
    memset(t, 0, sizeof *t);
    // The CPU is the fp32 reference whatever run.precision says; on the GPU a precision the
    // kernels do not provide must not be silently replaced by fp32.
    if (dev == DDX_CUDA && cfg->run.precision != DDX_PRECISION_FP32)
        return ddx_errorf(DDX_E_INPUT, "run.precision: %s is not implemented on the GPU yet (its kernels compute in fp32); use fp32",
                          cfg->run.precision == DDX_PRECISION_BF16 ? "bf16" : "tf32");
    t->cfg = *cfg;
    t->device = dev;
    ddx_param_store_init(&t->ps, dev);
    ddx_status st = ddx_model_create(cfg, &t->ps, &t->model);
    if (!st) st = ddx_param_store_finalize(&t->ps);
    if (!st) st = ddx_model_init(t->model, cfg->run.seed);
    if (!st) st = ddx_optim_ema_init(&t->ps);
    if (!st) st = ddx_schedule_init(&t->sched, cfg);
    if (!st) st = ddx_ctx_init(&t->ctx, dev, (size_t)64 << 20);
    if (st) {
        ddx_trainer_free(t);
        return st;
    }
    t->ctx.seed = cfg->run.seed;
    t->optim = ddx_optim_cfg_from(cfg);
    t->batch_elems = (size_t)cfg->train.batch_size * (size_t)cfg->model.image_size * (size_t)cfg->model.image_size *
                     (size_t)cfg->model.in_channels;
    return DDX_OK;
}

void ddx_trainer_free(ddx_trainer *t) {
    if (t->ctx.act.name) ddx_ctx_free(&t->ctx);
    ddx_schedule_free(&t->sched);
    ddx_model_free(t->model);
    ddx_param_store_free(&t->ps);
    memset(t, 0, sizeof *t);
}

ddx_status ddx_trainer_step(ddx_trainer *t, const float *x, const int32_t *y, float *loss, double *grad_norm) {
    ddx_ctx *c = &t->ctx;
    const ddx_config *cfg = &t->cfg;
    int64_t step = t->step + 1;
    DDX_TRY(ddx_ctx_reset(c));
    c->step = (uint64_t)step;
    c->training = true;
    c->grad_enabled = true;
    int64_t B = cfg->train.batch_size, S = cfg->model.image_size, C = cfg->model.in_channels;
    ddx_tensor *x0 = ddx_new(c, DDX_F32, 4, (int64_t[]){B, S, S, C});   // [B, S, S, C]
    if (!x0) return c->status ? c->status : DDX_E_NOMEM;
    DDX_TRY(ddx_memcpy(x0->data, c->device, x, DDX_CPU, t->batch_elems * sizeof *x));
    ddx_tensor *yt = NULL;
    if (cfg->model.num_classes > 0) {
        if (!y) return ddx_errorf(DDX_E_INPUT, "model.num_classes is %d but the data set has no labels", cfg->model.num_classes);
        yt = ddx_new(c, DDX_I32, 1, (int64_t[]){B});   // [B]
        if (!yt) return c->status ? c->status : DDX_E_NOMEM;
        DDX_TRY(ddx_memcpy(yt->data, c->device, y, DDX_CPU, (size_t)B * sizeof *y));
    }
    ddx_tensor *l = ddx_diffusion_loss(c, t->model, &t->sched, x0, yt, cfg->run.seed, (uint64_t)step);
    DDX_TRY(ddx_ctx_status(c));
    DDX_TRY(ddx_dev_memset(t->device, t->ps.buf[DDX_PBUF_GRAD], 0, t->ps.numel * sizeof(float)));
    DDX_TRY(ddx_backward(c, l, 1.0f));
    float lv;
    DDX_TRY(ddx_memcpy(&lv, DDX_CPU, l->data, c->device, sizeof lv));
    double gn = 0;
    ddx_status st = ddx_optim_step(&t->ps, &t->optim, step, &gn);
    if (st) return st;
    t->step = step;
    if (loss) *loss = lv;
    if (grad_norm) *grad_norm = gn;
    return DDX_OK;
}

ddx_status ddx_trainer_sample(ddx_trainer *t, bool use_ema, int n, uint64_t seed, float *out) {
    const ddx_config *cfg = &t->cfg;
    size_t bytes = t->ps.numel * sizeof(float);
    void *saved = NULL;
    if (use_ema) {
        DDX_TRY(ddx_dev_alloc(t->device, bytes, &saved));
        ddx_status st = ddx_memcpy(saved, t->device, t->ps.buf[DDX_PBUF_VALUE], t->device, bytes);
        if (!st) st = ddx_memcpy(t->ps.buf[DDX_PBUF_VALUE], t->device, t->ps.buf[DDX_PBUF_EMA], t->device, bytes);
        if (st) {
            ddx_dev_free(t->device, saved);
            return st;
        }
    }
    ddx_sample_opts o = {
        .sampler = cfg->sample.sampler,
        .steps = cfg->sample.steps,
        .eta = cfg->sample.eta,
        .spacing = cfg->sample.spacing,
        .seed = seed,
        .batch = n < cfg->train.batch_size ? n : cfg->train.batch_size,
    };
    int32_t *y = NULL;
    if (cfg->model.num_classes > 0) {
        y = malloc((size_t)n * sizeof *y);
        if (!y) {
            if (saved) ddx_dev_free(t->device, saved);
            return ddx_errorf(DDX_E_NOMEM, "sample: out of host memory");
        }
        for (int i = 0; i < n; i++) y[i] = i % cfg->model.num_classes;   // one class per grid column
    }
    bool training = t->ctx.training, grad = t->ctx.grad_enabled;
    ddx_status st = ddx_diffusion_sample(&t->ctx, t->model, &t->sched, &o, n, y, out, NULL, NULL);
    t->ctx.training = training, t->ctx.grad_enabled = grad;
    free(y);
    if (saved) {
        ddx_status st2 = ddx_memcpy(t->ps.buf[DDX_PBUF_VALUE], t->device, saved, t->device, bytes);
        ddx_dev_free(t->device, saved);
        if (!st) st = st2;
    }
    return st;
}
