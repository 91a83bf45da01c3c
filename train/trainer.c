// The training step: see train/trainer.h.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddx_config.h"
#include "models/lowres.h"
#include "runtime/cuda.h"
#include "runtime/graph.h"
#include "runtime/philox.h"
#include "train/trainer.h"
#include "train/dp.h"

#include <math.h>

static ddx_status graph_init(ddx_trainer *t);
static void graph_free(ddx_trainer *t);
static ddx_status graph_step(ddx_trainer *t, const float *x, const int32_t *y, int64_t step);
static ddx_status graph_stats(ddx_trainer *t, ddx_trainer_stats *out);
static ddx_status graph_stats_set(ddx_trainer *t, double loss_sum, int64_t loss_n);

// Says once per process why a run that asked for graphs goes on without them.
static void graphs_off(const char *why) {
    static bool said;
    if (said) return;
    said = true;
    fprintf(stderr, "ddx: CUDA graphs off: %s; running the eager step\n", why);
}

ddx_status ddx_trainer_init(ddx_trainer *t, const ddx_config *cfg, ddx_device dev) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->device = dev;
    ddx_param_store_init(&t->ps, dev);
    ddx_status st = ddx_model_create(cfg, &t->ps, &t->model);
    if (!st) st = ddx_param_store_finalize(&t->ps);
    if (!st && dev == DDX_CUDA && cfg->run.precision == DDX_PRECISION_BF16) st = ddx_model_set_compute(t->model, DDX_BF16);
    if (!st) st = ddx_model_init(t->model, cfg->run.seed);
    if (!st) st = ddx_optim_ema_init(&t->ps);
    if (!st) st = ddx_schedule_init(&t->sched, cfg);
    if (!st) st = ddx_ctx_init(&t->ctx, dev, (size_t)64 << 20);
    if (st) {
        ddx_trainer_free(t);
        return st;
    }
    ddx_ctx_set_seed(&t->ctx, cfg->run.seed);
    // The CPU is the fp32 reference whatever run.precision says. On the GPU, bf16 makes the
    // model compute in bf16 (set above); tf32 keeps f32 tensors and lets convs and linears
    // use the TF32 tensor cores.
    ddx_ctx_set_tf32(&t->ctx, dev == DDX_CUDA && cfg->run.precision == DDX_PRECISION_TF32);
    t->optim = ddx_optim_cfg_from(cfg);
    t->batch_elems = (size_t)cfg->train.batch_size * (size_t)cfg->model.image_size * (size_t)cfg->model.image_size *
                     (size_t)cfg->model.out_channels;
    if (cfg->model.cond == DDX_COND_LOWRES && !(t->cond_host = malloc(t->batch_elems * sizeof(float)))) {
        ddx_trainer_free(t);
        return ddx_errorf(DDX_E_NOMEM, "trainer: out of host memory for the low-res conditioning");
    }
    const char *env = getenv("DDX_CUDA_GRAPHS");
    ddx_trainer_use_graphs(t, env && *env ? strcmp(env, "0") != 0 : DDX_TRAINER_GRAPHS_DEFAULT);
    return DDX_OK;
}

void ddx_trainer_use_graphs(ddx_trainer *t, bool on) {
    t->graphs = false;
    t->sample_graphs = false;
    if (!on || t->device != DDX_CUDA) return;
    if (!DDX_HAVE_CUDA) return;
    const char *prof = getenv("DDX_PROFILE");
    if (prof && *prof && strcmp(prof, "0") != 0) {
        graphs_off("DDX_PROFILE times every op on its own, which a replayed graph cannot");
        return;
    }
    t->sample_graphs = true;
    // Dropout, like q_sample, reads the step word from ctx->step_dev while a step is captured.
    t->graphs = true;
}

ddx_status ddx_trainer_stats_read(ddx_trainer *t, ddx_trainer_stats *out) {
    if (t->graph) return graph_stats(t, out);
    *out = t->stats;
    return DDX_OK;
}

ddx_status ddx_trainer_stats_reset(ddx_trainer *t, double loss_sum, int64_t loss_n) {
    t->stats.loss_sum = loss_sum;
    t->stats.loss_n = loss_n;
    if (t->graph) return graph_stats_set(t, loss_sum, loss_n);
    return DDX_OK;
}

ddx_status ddx_trainer_set_comm(ddx_trainer *t, struct ddx_comm *comm, double bucket_mb) {
    if (t->graph || t->step != 0 || t->dp) return ddx_errorf(DDX_E_INTERNAL, "ddx_trainer_set_comm: call it once, before the first step");
    if (!comm || (ddx_comm_world(comm) == 1 && ddx_comm_backend_of(comm) == DDX_COMM_SINGLE)) return DDX_OK;
    if (t->ctx.cuda) ddx_comm_set_compute(comm, t->ctx.cuda);
    return ddx_dp_create(comm, &t->ps, t->cfg.train.batch_size, bucket_mb, &t->dp);
}

void ddx_trainer_free(ddx_trainer *t) {
    ddx_dp_free(t->dp);
    graph_free(t);
    free(t->labels);
    ddx_sampling_free(t->sampler);
    if (t->ctx.act.name) ddx_ctx_free(&t->ctx);
    ddx_schedule_free(&t->sched);
    ddx_model_free(t->model);
    ddx_param_store_free(&t->ps);
    free(t->cond_host);
    free(t->grid_cond);
    memset(t, 0, sizeof *t);
}

ddx_status ddx_label_dropout(int32_t *y, int n, int null_class, double p, uint64_t seed, uint64_t step) {
    if (!(p > 0.0) || n <= 0) return DDX_OK;
    enum { CHUNK = 256 };
    float u[CHUNK];
    for (int j0 = 0; j0 < n; j0 += CHUNK) {
        const int m = n - j0 < CHUNK ? n - j0 : CHUNK;
        DDX_TRY(ddx_philox_uniform(u, m, seed, DDX_RNG_STREAM_LABEL_DROP, step, (uint64_t)j0));
        for (int j = 0; j < m; j++)
            if ((double)u[j] < p) y[j0 + j] = null_class;
    }
    return DDX_OK;
}

// The step's labels: checked (a data set's labels must be classes of the model) and with
// label dropout applied, into t->labels. NULL for an unconditional model.
static ddx_status step_labels(ddx_trainer *t, const int32_t *y, int64_t step, const int32_t **out) {
    const ddx_config *cfg = &t->cfg;
    const int B = cfg->train.batch_size, K = cfg->model.num_classes;
    *out = NULL;
    if (K <= 0) return DDX_OK;
    if (!y) return ddx_errorf(DDX_E_INPUT, "model.num_classes is %d but the data set has no labels", K);
    if (!t->labels && !(t->labels = malloc((size_t)B * sizeof *t->labels)))
        return ddx_errorf(DDX_E_NOMEM, "trainer: out of host memory");
    for (int j = 0; j < B; j++) {
        if (y[j] < 0 || y[j] >= K)
            return ddx_errorf(DDX_E_INPUT, "label %d of image %d of the batch is not a class of the model (0..%d): set "
                                           "model.num_classes to the data set's class count",
                              (int)y[j], j, K - 1);
        t->labels[j] = y[j];
    }
    DDX_TRY(ddx_label_dropout(t->labels, B, K, cfg->train.label_dropout, cfg->run.seed, (uint64_t)step));
    *out = t->labels;
    return DDX_OK;
}

ddx_status ddx_trainer_step(ddx_trainer *t, const float *x, const int32_t *y, float *loss, double *grad_norm) {
    ddx_ctx *c = &t->ctx;
    const ddx_config *cfg = &t->cfg;
    int64_t step = t->step + 1;
    DDX_TRY(step_labels(t, y, step, &y));
    if (t->graphs) {
        if (cfg->model.num_classes > 0 && !y)
            return ddx_errorf(DDX_E_INPUT, "model.num_classes is %d but the data set has no labels", cfg->model.num_classes);
        if (!t->graph) {
            ddx_status st = graph_init(t);
            if (st != DDX_OK) {
                graphs_off(ddx_last_error());
                graph_free(t);
                t->graphs = false;
                return ddx_trainer_step(t, x, y, loss, grad_norm);
            }
        }
        DDX_TRY(graph_step(t, x, y, step));
        if (loss || grad_norm) {
            ddx_trainer_stats s = {0};
            DDX_TRY(graph_stats(t, &s));   // waits for the step; fails on a non-finite norm
            if (loss) *loss = s.last_loss;
            if (grad_norm) *grad_norm = s.last_grad_norm;
        }
        t->step = step;
        return DDX_OK;
    }
    DDX_TRY(ddx_ctx_reset(c));
    ddx_ctx_set_step(c, (uint64_t)step);
    ddx_ctx_set_training(c, true);
    ddx_ctx_set_grad(c, true);
    int64_t B = cfg->train.batch_size, S = cfg->model.image_size, C = cfg->model.out_channels;
    // Data parallel: this rank's rows lo .. lo + B - 1 of the global batch (train/dp.h).
    const int64_t lo = t->dp ? t->dp->lo : 0;
    if (t->dp) B = t->dp->n, x += lo * S * S * C, y = y ? y + lo : NULL;
    ddx_ctx_set_sample0(c, (uint64_t)lo);
    ddx_tensor *x0 = ddx_new(c, DDX_F32, 4, (int64_t[]){B, S, S, C});   // [B, S, S, C]
    if (!x0) return c->status ? c->status : DDX_E_NOMEM;
    DDX_TRY(ddx_memcpy(x0->data, c->device, x, DDX_CPU, (size_t)(B * S * S * C) * sizeof *x));
    ddx_tensor *cond = NULL;
    if (t->cond_host) {
        // The rank's rows only: the low-res image of a row depends on that row alone.
        DDX_TRY(ddx_lowres_cond(cfg, x, B, t->cond_host));
        cond = ddx_new(c, DDX_F32, 4, (int64_t[]){B, S, S, C});   // [B, S, S, C]
        if (!cond) return c->status ? c->status : DDX_E_NOMEM;
        DDX_TRY(ddx_memcpy(cond->data, c->device, t->cond_host, DDX_CPU, (size_t)(B * S * S * C) * sizeof *x));
    }
    ddx_tensor *yt = NULL;
    if (cfg->model.num_classes > 0) {
        if (!y) return ddx_errorf(DDX_E_INPUT, "model.num_classes is %d but the data set has no labels", cfg->model.num_classes);
        yt = ddx_new(c, DDX_I32, 1, (int64_t[]){B});   // [B]
        if (!yt) return c->status ? c->status : DDX_E_NOMEM;
        DDX_TRY(ddx_memcpy(yt->data, c->device, y, DDX_CPU, (size_t)B * sizeof *y));
    }
    ddx_tensor *l = ddx_diffusion_loss_at(c, t->model, &t->sched, x0, cond, yt, cfg->run.seed, (uint64_t)step, (uint64_t)lo);
    DDX_TRY(ddx_ctx_status(c));
    DDX_TRY(ddx_dev_memset(t->device, t->ps.buf[DDX_PBUF_GRAD], 0, t->ps.numel * sizeof(float)));
    if (t->dp) {
        DDX_TRY(ddx_dp_backward_begin(t->dp, c, step));
        ddx_status bst = ddx_backward(c, l, (float)((double)B / (double)cfg->train.batch_size));
        ddx_status est = ddx_dp_backward_end(t->dp, c);
        DDX_TRY(bst);
        DDX_TRY(est);
        l = ddx_dp_global_loss(t->dp, c, l);
        DDX_TRY(ddx_ctx_status(c));
    } else {
        DDX_TRY(ddx_backward(c, l, 1.0f));
    }
    float lv;
    DDX_TRY(ddx_memcpy(&lv, DDX_CPU, l->data, c->device, sizeof lv));
    double gn = 0;
    ddx_status st = ddx_optim_step(&t->ps, &t->optim, step, &gn);
    if (st) return st;
    t->step = step;
    t->stats.loss_sum += (double)lv;
    t->stats.loss_n++;
    t->stats.last_loss = lv;
    t->stats.last_grad_norm = gn;
    if (loss) *loss = lv;
    if (grad_norm) *grad_norm = gn;
    return DDX_OK;
}

ddx_status ddx_trainer_sample(ddx_trainer *t, bool use_ema, int n, uint64_t seed, float *out) {
    const ddx_config *cfg = &t->cfg;
    if (n <= 0) return n == 0 ? DDX_OK : ddx_errorf(DDX_E_INPUT, "sample.n: %d images requested; must be >= 0", n);
    ddx_sample_opts o = {
        .sampler = cfg->sample.sampler,
        .steps = cfg->sample.steps,
        .eta = cfg->sample.eta,
        .spacing = cfg->sample.spacing,
        .seed = seed,
        .batch = n < cfg->train.batch_size ? n : cfg->train.batch_size,
        .graphs = t->sample_graphs,
    };
    // Guided grids run a doubled batch: half the images per forward keeps it within the
    // training step's rows.
    if (cfg->sample.guidance != 1.0 && o.batch > 1) o.batch = (o.batch + 1) / 2;
    // One sampler for every grid of the run; its buffers and graph stay between grids.
    if (t->sampler && (t->sampler_opts.seed != o.seed || t->sampler_opts.batch != o.batch)) {
        ddx_sampling_free(t->sampler);
        t->sampler = NULL;
    }
    if (!t->sampler) {
        // In the training context: the grids reuse the step's activation memory (a forward
        // of at most train.batch_size rows fits it) instead of holding a second arena.
        DDX_TRY(ddx_sampling_create_in(t->model, &t->sched, &o, &t->ctx, &t->sampler));
        t->sampler_opts = o;
        DDX_TRY(ddx_sampling_set_guidance(t->sampler, cfg->sample.guidance));
    }
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
    int32_t *y = NULL;
    if (cfg->model.num_classes > 0) {
        y = malloc((size_t)n * sizeof *y);
        if (!y) {
            if (saved) ddx_dev_free(t->device, saved);
            return ddx_errorf(DDX_E_NOMEM, "sample: out of host memory");
        }
        ddx_class_grid_labels(n, cfg->model.num_classes, y);   // one grid row per class
    }
    float *cond = NULL;
    ddx_status st = DDX_OK;
    if (cfg->model.cond == DDX_COND_LOWRES) {
        // Grid image i super-resolves sample-cond image i % grid_n.
        const size_t img = (size_t)cfg->model.image_size * (size_t)cfg->model.image_size * (size_t)cfg->model.out_channels;
        if (!t->grid_cond || t->grid_n < 1)
            st = ddx_errorf(DDX_E_INTERNAL, "sample: a model.cond lowres model needs ddx_trainer_set_sample_cond first");
        else if (!(cond = malloc((size_t)n * img * sizeof *cond)))
            st = ddx_errorf(DDX_E_NOMEM, "sample: out of host memory");
        for (int i = 0; st == DDX_OK && i < n; i++)
            memcpy(cond + (size_t)i * img, t->grid_cond + (size_t)(i % t->grid_n) * img, img * sizeof *cond);
    }
    if (st == DDX_OK) st = ddx_sampling_run(t->sampler, n, y, cond, out, NULL, NULL);
    free(cond);
    free(y);
    if (saved) {
        ddx_status st2 = ddx_memcpy(t->ps.buf[DDX_PBUF_VALUE], t->device, saved, t->device, bytes);
        ddx_dev_free(t->device, saved);
        if (!st) st = st2;
    }
    return st;
}

ddx_status ddx_trainer_set_sample_cond(ddx_trainer *t, const float *x0, int n) {
    const ddx_config *cfg = &t->cfg;
    if (cfg->model.cond != DDX_COND_LOWRES) return DDX_OK;
    if (n < 1) return ddx_errorf(DDX_E_INPUT, "sample: no images to condition the grids on");
    const size_t img = (size_t)cfg->model.image_size * (size_t)cfg->model.image_size * (size_t)cfg->model.out_channels;
    float *g = malloc((size_t)n * img * sizeof *g);
    if (!g) return ddx_errorf(DDX_E_NOMEM, "sample: out of host memory");
    ddx_status st = ddx_lowres_cond(cfg, x0, n, g);
    if (st != DDX_OK) {
        free(g);
        return st;
    }
    free(t->grid_cond);
    t->grid_cond = g;
    t->grid_n = n;
    return DDX_OK;
}

// ---- CUDA graphs ----------------------------------------------------------------------------
// The step in "device mode": every per-step input (the batch, the labels, the timesteps and
// q_sample coefficients, the Philox step word, the AdamW constants) is written by the host
// into one pinned buffer and uploaded with a single copy before the step; the step itself
// reads them from the device copy, at fixed addresses, and keeps its loss and grad norm in
// device statistics. So the same kernels with the same arguments run every step: the second
// device-mode step is captured (the activation arena coalesces after the first, then its
// addresses repeat) and every later step is one cudaGraphLaunch. The host computes exactly
// what the eager step computes (same functions), and the kernels are the same, so the two
// paths agree bit for bit (tests/test_train_devices.sh checks it on a GPU).
#if DDX_HAVE_CUDA
#include "runtime/cuda/check.h"

typedef struct ddx_trainer_graph {
    ddx_graph_step gs;                // the staged inputs, the capture and its replays
    bool have_gs;
    size_t off_x, off_y, off_t, off_coef, off_vcoef, off_step, off_args, in_bytes;
    size_t off_cond;                  // model.cond lowres: the batch's conditioning input
    size_t off_w;                     // train.loss_weight min_snr: per-sample sqrt(weight)
    ddx_k_train_stats *stats;         // device
    uint64_t step;                    // the step the body runs
} ddx_trainer_graph;

static size_t al256(size_t n) { return (n + 255) & ~(size_t)255; }

static ddx_status graph_init(ddx_trainer *t) {
    ddx_trainer_graph *g = calloc(1, sizeof *g);
    if (!g) return ddx_errorf(DDX_E_NOMEM, "CUDA graph state: out of host memory");
    const size_t B = (size_t)(t->dp ? t->dp->n : t->cfg.train.batch_size);   // this rank's rows
    size_t o = 0;
    g->off_x = o, o = al256(o + t->batch_elems / (size_t)t->cfg.train.batch_size * B * sizeof(float));
    g->off_y = o, o = al256(o + B * sizeof(int32_t));
    g->off_t = o, o = al256(o + B * sizeof(float));
    g->off_coef = o, o = al256(o + 2 * B * sizeof(float));
    g->off_vcoef = o, o = al256(o + 2 * B * sizeof(float));
    g->off_step = o, o = al256(o + sizeof(uint32_t));
    g->off_args = o, o = al256(o + sizeof(ddx_k_adamw_args));
    g->off_cond = o, o = al256(o + (t->cond_host ? t->batch_elems * sizeof(float) : 0));
    g->off_w = o, o = al256(o + B * sizeof(float));
    g->in_bytes = o;
    ddx_status st = ddx_graph_step_init(&g->gs, &t->ctx, true, g->in_bytes, "training step");
    g->have_gs = st == DDX_OK;
    if (st == DDX_OK && !g->gs.graphs) st = ddx_errorf(DDX_E_UNSUPPORTED, "the training context is not a CUDA one");
    if (st == DDX_OK) st = ddx_cuda_malloc(sizeof(ddx_k_train_stats), (void **)&g->stats);
    if (st == DDX_OK) st = ddx_cuda_memset(g->stats, 0, sizeof(ddx_k_train_stats));
    t->graph = g;   // graph_free releases whatever exists
    if (st != DDX_OK) return st;
    return graph_stats_set(t, t->stats.loss_sum, t->stats.loss_n);
}

static void graph_free(ddx_trainer *t) {
    ddx_trainer_graph *g = t->graph;
    if (!g) return;
    if (t->ctx.cuda) (void)ddx_cuda_sync(t->ctx.cuda);   // nothing in flight may use what we free
    if (g->have_gs) ddx_graph_step_free(&g->gs, &t->ctx);
    ddx_cuda_free(g->stats);
    free(g);
    t->graph = NULL;
}

static ddx_status graph_stats(ddx_trainer *t, ddx_trainer_stats *out) {
    ddx_trainer_graph *g = t->graph;
    ddx_k_train_stats d;
    DDX_TRY(ddx_cuda_memcpy(&d, g->stats, sizeof d, DDX_COPY_D2H));
    if (d.bad_steps > 0)
        return ddx_errorf(DDX_E_INPUT, "grad norm is not finite at step %u (%lld such steps, their updates skipped): lower "
                                       "train.lr or check the data",
                          d.first_bad_step, (long long)d.bad_steps);
    out->loss_sum = d.loss_sum;
    out->loss_n = d.loss_n;
    out->last_loss = d.last_loss;
    out->last_grad_norm = sqrt(d.last_sumsq);
    return DDX_OK;
}

static ddx_status graph_stats_set(ddx_trainer *t, double loss_sum, int64_t loss_n) {
    ddx_trainer_graph *g = t->graph;
    ddx_k_train_stats d;
    DDX_TRY(ddx_cuda_memcpy(&d, g->stats, sizeof d, DDX_COPY_D2H));
    d.loss_sum = loss_sum;
    d.loss_n = loss_n;
    return ddx_cuda_memcpy(g->stats, &d, sizeof d, DDX_COPY_H2D);
}

// The step's device work, from the uploaded inputs: run directly, or captured. Only a captured
// body keys its noise by the device step word (run directly, the host step is the same value
// and needs nothing of the CUDA adapters).
static ddx_status device_body(ddx_ctx *c, bool captured, void *arg) {
    ddx_trainer *t = arg;
    ddx_trainer_graph *g = t->graph;
    const uint64_t step = g->step;
    const ddx_config *cfg = &t->cfg;
    ddx_ctx_set_step(c, step);
    ddx_ctx_set_training(c, true);
    ddx_ctx_set_grad(c, true);
    uint8_t *dev = ddx_graph_step_inputs_dev(&g->gs);
    const int64_t B = t->dp ? t->dp->n : cfg->train.batch_size, S = cfg->model.image_size, C = cfg->model.out_channels;
    const int64_t lo = t->dp ? t->dp->lo : 0;
    ddx_ctx_set_sample0(c, (uint64_t)lo);
    ddx_tensor *x0 = ddx_meta_tensor(c), *yt = NULL, *tt = ddx_meta_tensor(c), *coef = ddx_meta_tensor(c);
    ddx_tensor *vcoef = NULL, *cond = NULL, *wsqrt = NULL;
    if (t->sched.loss_weight == DDX_LOSS_WEIGHT_MIN_SNR) {
        if (!(wsqrt = ddx_meta_tensor(c))) return c->status;
        *wsqrt = ddx_tensor_wrap(dev + g->off_w, DDX_F32, DDX_CUDA, 1, (int64_t[]){B});   // [B]
    }
    if (t->cond_host) {
        if (!(cond = ddx_meta_tensor(c))) return c->status;
        *cond = ddx_tensor_wrap(dev + g->off_cond, DDX_F32, DDX_CUDA, 4, (int64_t[]){B, S, S, C});   // [B, S, S, C]
    }
    if (!x0 || !tt || !coef) return c->status ? c->status : DDX_E_NOMEM;
    *x0 = ddx_tensor_wrap(dev + g->off_x, DDX_F32, DDX_CUDA, 4, (int64_t[]){B, S, S, C});   // [B, S, S, C]
    *tt = ddx_tensor_wrap(dev + g->off_t, DDX_F32, DDX_CUDA, 1, (int64_t[]){B});            // [B]
    *coef = ddx_tensor_wrap(dev + g->off_coef, DDX_F32, DDX_CUDA, 2, (int64_t[]){B, 2});    // [B, 2]
    if (cfg->model.num_classes > 0) {
        if (!(yt = ddx_meta_tensor(c))) return c->status;
        *yt = ddx_tensor_wrap(dev + g->off_y, DDX_I32, DDX_CUDA, 1, (int64_t[]){B});   // [B]
    }
    if (t->sched.param == DDX_PARAMETERIZATION_V) {
        if (!(vcoef = ddx_meta_tensor(c))) return c->status;
        *vcoef = ddx_tensor_wrap(dev + g->off_vcoef, DDX_F32, DDX_CUDA, 2, (int64_t[]){B, 2});   // [B, 2]
    }
    const uint32_t *step_dev = (const uint32_t *)(dev + g->off_step);
    const ddx_rng_key key = {.seed = cfg->run.seed, .stream = DDX_RNG_STREAM_Q_SAMPLE, .step = (uint32_t)step,
                             .offset = (uint64_t)(lo * S * S * C)};
    if (captured) ddx_ctx_set_step_dev(c, step_dev);   // the ops key their noise by the uploaded step word
    ddx_tensor *l = ddx_diffusion_loss_from_w(c, t->model, &t->sched, x0, cond, yt, tt, coef, vcoef, wsqrt, key);
    ddx_status st = ddx_ctx_status(c);
    if (st == DDX_OK) st = ddx_dev_memset(DDX_CUDA, t->ps.buf[DDX_PBUF_GRAD], 0, t->ps.numel * sizeof(float));
    if (st == DDX_OK && t->dp) {
        // NCCL on its own stream inside the captured step: each bucket's all-reduce waits on
        // an event of the backward work so far, and the optimizer waits on the last one.
        st = ddx_dp_backward_begin(t->dp, c, step);
        ddx_status bst = st == DDX_OK ? ddx_backward(c, l, (float)((double)B / (double)cfg->train.batch_size)) : st;
        ddx_status est = st == DDX_OK ? ddx_dp_backward_end(t->dp, c) : st;
        st = bst != DDX_OK ? bst : est;
        if (st == DDX_OK && !(l = ddx_dp_global_loss(t->dp, c, l))) st = ddx_ctx_status(c);
    } else if (st == DDX_OK) {
        st = ddx_backward(c, l, 1.0f);
    }
    ddx_ctx_set_step_dev(c, NULL);
    if (st != DDX_OK) return st;
    return ddx_optim_step_dev(&t->ps, &t->optim, (const ddx_k_adamw_args *)(dev + g->off_args), g->stats, l->data, step_dev);
}

static ddx_status graph_step(ddx_trainer *t, const float *x, const int32_t *y, int64_t step) {
    ddx_trainer_graph *g = t->graph;
    ddx_ctx *c = &t->ctx;
    const ddx_config *cfg = &t->cfg;
    const int64_t B = cfg->train.batch_size;
    if (step > (int64_t)UINT32_MAX - 1)
        return ddx_errorf(DDX_E_INPUT, "step %lld does not fit the 32-bit Philox step word", (long long)step);

    // 1. This step's inputs, computed exactly as the eager step computes them.
    uint8_t *h;
    DDX_TRY(ddx_graph_step_inputs(&g->gs, (void **)&h));
    const int64_t lo = t->dp ? t->dp->lo : 0, Bl = t->dp ? t->dp->n : B;   // this rank's rows
    const size_t row = t->batch_elems / (size_t)B;
    memcpy(h + g->off_x, x + (size_t)lo * row, (size_t)Bl * row * sizeof(float));
    if (t->cond_host) DDX_TRY(ddx_lowres_cond(cfg, x + (size_t)lo * row, Bl, (float *)(h + g->off_cond)));
    if (cfg->model.num_classes > 0) memcpy(h + g->off_y, y + lo, (size_t)Bl * sizeof(int32_t));
    DDX_TRY(ddx_diffusion_loss_inputs_at(&t->sched, Bl, cfg->run.seed, (uint64_t)step, (uint64_t)lo, (float *)(h + g->off_t),
                                      (float *)(h + g->off_coef),
                                      t->sched.param == DDX_PARAMETERIZATION_V ? (float *)(h + g->off_vcoef) : NULL));
    if (t->sched.loss_weight == DDX_LOSS_WEIGHT_MIN_SNR)
        DDX_TRY(ddx_diffusion_loss_wsqrt(&t->sched, Bl, (const float *)(h + g->off_t), (float *)(h + g->off_w)));
    const uint32_t step32 = (uint32_t)step;
    memcpy(h + g->off_step, &step32, sizeof step32);
    ddx_k_adamw_args args;
    DDX_TRY(ddx_optim_dev_args(&t->optim, step, &args));
    memcpy(h + g->off_args, &args, sizeof args);

    // 2. Replay, capture or run eagerly (runtime/graph.h: one rule for every graph step).
    g->step = (uint64_t)step;
    return ddx_graph_step_run(&g->gs, c, g->in_bytes, device_body, t);
}
#else
static ddx_status graph_init(ddx_trainer *t) {
    (void)t;
    return ddx_errorf(DDX_E_UNSUPPORTED, "CUDA graphs: %s", ddx_cuda_describe());
}
static void graph_free(ddx_trainer *t) { (void)t; }
static ddx_status graph_step(ddx_trainer *t, const float *x, const int32_t *y, int64_t step) {
    (void)t, (void)x, (void)y, (void)step;
    return ddx_errorf(DDX_E_UNSUPPORTED, "CUDA graphs: %s", ddx_cuda_describe());
}
static ddx_status graph_stats(ddx_trainer *t, ddx_trainer_stats *out) {
    *out = t->stats;
    return DDX_OK;
}
static ddx_status graph_stats_set(ddx_trainer *t, double loss_sum, int64_t loss_n) {
    (void)t, (void)loss_sum, (void)loss_n;
    return DDX_OK;
}
#endif
