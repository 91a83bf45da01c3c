// The sampler (models/sampler.h): the DDPM/DDIM loop over batches, one denoising step per
// timestep run through the graph-step helper (runtime/graph.h), so the CPU, the eager GPU and
// the CUDA-graph paths are one loop.
//
// Per-step inputs (the 9 sampler coefficients, the Philox step word, t for every row) sit in
// the helper's input buffer; labels and the conditioning input are copied once per batch into
// buffers of their own, so a captured step reads everything at fixed addresses. A new batch
// changes the noise offset and maybe the row count, which a capture bakes in: each batch
// invalidates the graph (step 1 eager, step 2 captured, the rest replayed).
#include "models/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_impl.h"
#include "runtime/graph.h"
#include "runtime/philox.h"

#define IN_OFF_COEFS 0
#define IN_OFF_KNOWN 128   // the blend's q_sample coefficients (kc0, kc1) of the update
#define IN_OFF_STEP 256
#define IN_OFF_T 512

struct ddx_sampling {
    const ddx_model *m;
    const ddx_schedule *s;
    ddx_sample_opts o;
    ddx_device dev;
    ddx_ctx own;                      // the sampler's context, unless it borrows the caller's
    ddx_ctx *c;                       // the context it runs in: &own or the caller's
    int *ts;                          // the timesteps visited, decreasing
    int S;
    int64_t H, W, C, Cc;              // x is [., H, W, C]; the conditioning input [., H, W, Cc]
    // Guidance: on when w != 1 (class-conditional models only); the unconditional half uses
    // the null class, model.num_classes.
    double w;
    ddx_sampling_post_step_fn post;
    void *user;
    // Inpainting: the caller's host arrays [n, H, W, C], copied per batch into kbuf / mbuf.
    const float *known_h, *mask_h;
    void *kbuf, *mbuf;               // [cap, H, W, C] f32
    bool cap_inpaint;
    // RePaint: the schedule of states (ddx_repaint_schedule); jumps run through their own graph.
    int resample, jump;
    int *sched;
    int64_t L;
    bool have_jgraph;
    ddx_graph_step gj;
    ddx_sampler_step_params pj;
    // Buffers for up to cap images, made by the first run that needs them.
    int cap;
    bool cap_guided, cap_cond, cap_graphs;
    void *xbuf;                       // [cap, H, W, C] f32
    void *ybuf;                       // [cap] or [2 cap] (guided) i32
    void *cbuf;                       // [cap, H, W, Cc] f32
    bool have_graph;
    ddx_graph_step g;
    // The step the body runs.
    int64_t nb, i0;
    int k, t, t_prev;
    ddx_sampler_step_params p;
    // Multistep / two-stage samplers (ddx_sampler_is_ms): the plan of model calls, the history
    // buffers h1, h2 ([cap, H, W, C] f32 each, plan.nhist of them) and the call's update.
    bool ms;
    ddx_sampler_plan plan;
    void *h1buf, *h2buf;
    ddx_sampler_ms_params pm;
};

// The doubled forward runs only where both halves count: w == 1 is the conditional model alone
// and w == 0 the unconditional one alone (the null class for every image, one plain forward,
// so w = 0 is the null-class sample bit for bit: a doubled batch's rows need not round like a
// single batch's in the blocked GEMMs).
static bool guided(const ddx_sampling *sp) { return sp->w != 1.0 && sp->w != 0.0 && sp->m->cfg.model.num_classes > 0; }
static bool unconditional(const ddx_sampling *sp) { return sp->w == 0.0 && sp->m->cfg.model.num_classes > 0; }

static ddx_status create(const ddx_model *m, const ddx_schedule *s, const ddx_sample_opts *o, ddx_device dev,
                         ddx_ctx *borrow, ddx_sampling **out) {
    *out = NULL;
    if (!m || !s || !o || !s->alphas_cumprod)
        return ddx_errorf(DDX_E_INTERNAL, "sampler: NULL model, schedule or options");
    if (o->batch < 1) return ddx_errorf(DDX_E_INPUT, "sampler: batch %d must be >= 1", o->batch);
    const ddx_config *cfg = &m->cfg;
    if (cfg->model.in_channels < cfg->model.out_channels)
        return ddx_errorf(DDX_E_INPUT,
                          "sampler: model.in_channels (%d) is less than model.out_channels (%d): the sampler feeds x_t "
                          "(out_channels) and any conditioning input on the channel axis",
                          cfg->model.in_channels, cfg->model.out_channels);
    if ((o->sampler == DDX_SAMPLER_DDIM || ddx_sampler_is_ms(o->sampler)) && (o->steps < 1 || o->steps > s->T))
        return ddx_errorf(DDX_E_INPUT, "sample.steps: %d is out of range 1..%d (diffusion.timesteps)", o->steps, s->T);
    if (o->sampler == DDX_SAMPLER_DDIM && !(o->eta >= 0.0 && o->eta <= 1.0))
        return ddx_errorf(DDX_E_INPUT, "sample.eta: %g is out of range [0, 1]", o->eta);
    ddx_sampling *sp = calloc(1, sizeof *sp);
    if (!sp || !(sp->ts = malloc((size_t)s->T * sizeof(int)))) {
        free(sp);
        return ddx_errorf(DDX_E_NOMEM, "sampler: out of host memory");
    }
    sp->m = m, sp->s = s, sp->o = *o, sp->dev = dev, sp->w = 1.0;
    sp->H = sp->W = cfg->model.image_size;
    sp->C = cfg->model.out_channels;
    sp->Cc = cfg->model.in_channels - cfg->model.out_channels;
    sp->ms = ddx_sampler_is_ms(o->sampler);
    if (sp->ms) {
        // One "step" of the loop is one model call; ts holds each call's time rounded, for the
        // post-step hook.
        ddx_status st = ddx_sampler_plan_init(&sp->plan, s, o->sampler, o->steps, o->spacing);
        if (st != DDX_OK) {
            free(sp->ts);
            free(sp);
            return st;
        }
        sp->S = sp->plan.n;
        int *ts = realloc(sp->ts, (size_t)sp->S * sizeof(int));
        if (!ts) {
            ddx_sampler_plan_free(&sp->plan);
            free(sp->ts);
            free(sp);
            return ddx_errorf(DDX_E_NOMEM, "sampler: out of host memory");
        }
        sp->ts = ts;
        for (int k = 0; k < sp->S; k++) sp->ts[k] = (int)nearbyint(sp->plan.t[k]);
    } else {
        sp->S = ddx_sampler_timesteps(s, o->sampler, o->steps, o->spacing, sp->ts);
    }
    if (borrow) {
        sp->c = borrow;
    } else {
        ddx_status st = ddx_ctx_init(&sp->own, dev, (size_t)16 << 20);
        if (st != DDX_OK) {
            ddx_sampler_plan_free(&sp->plan);
            free(sp->ts);
            free(sp);
            return st;
        }
        sp->c = &sp->own;
    }
    *out = sp;
    return DDX_OK;
}

ddx_status ddx_sampling_create(const ddx_model *m, const ddx_schedule *s, const ddx_sample_opts *o, ddx_device dev,
                               ddx_sampling **out) {
    return create(m, s, o, dev, NULL, out);
}

ddx_status ddx_sampling_create_in(const ddx_model *m, const ddx_schedule *s, const ddx_sample_opts *o, ddx_ctx *c,
                                  ddx_sampling **out) {
    if (!c) return ddx_errorf(DDX_E_INTERNAL, "sampler: NULL context to run in");
    return create(m, s, o, c->device, c, out);
}

static void free_buffers(ddx_sampling *sp) {
    if (sp->have_graph) ddx_graph_step_free(&sp->g, sp->c);
    sp->have_graph = false;
    if (sp->have_jgraph) ddx_graph_step_free(&sp->gj, sp->c);
    sp->have_jgraph = false;
    ddx_dev_free(sp->dev, sp->kbuf);
    ddx_dev_free(sp->dev, sp->mbuf);
    sp->kbuf = sp->mbuf = NULL;
    ddx_dev_free(sp->dev, sp->xbuf);
    ddx_dev_free(sp->dev, sp->ybuf);
    ddx_dev_free(sp->dev, sp->cbuf);
    sp->xbuf = sp->ybuf = sp->cbuf = NULL;
    ddx_dev_free(sp->dev, sp->h1buf);
    ddx_dev_free(sp->dev, sp->h2buf);
    sp->h1buf = sp->h2buf = NULL;
    sp->cap = 0;
}

void ddx_sampling_free(ddx_sampling *sp) {
    if (!sp) return;
    free_buffers(sp);
    if (sp->c == &sp->own) ddx_ctx_free(&sp->own);
    free(sp->sched);
    ddx_sampler_plan_free(&sp->plan);
    free(sp->ts);
    free(sp);
}

ddx_status ddx_sampling_set_guidance(ddx_sampling *sp, double w) {
    const int nc = sp->m->cfg.model.num_classes;
    if (!(w == w) || w - w != 0.0) return ddx_errorf(DDX_E_INPUT, "sample guidance: scale %g is not finite", w);
    // Below 0 the "guidance" pushes towards the null class and away from the requested one.
    if (w < 0.0)
        return ddx_errorf(DDX_E_INPUT, "sample guidance: scale %g is negative; use 0 (unconditional), 1 (conditional) or more", w);
    if (w != 1.0 && nc <= 0)
        return ddx_errorf(DDX_E_INPUT, "sample guidance: scale %g needs a class-conditional model (model.num_classes is 0)", w);
    if ((float)w - (float)w != 0.0f) return ddx_errorf(DDX_E_INPUT, "sample guidance: scale %g does not fit a float", w);
    sp->w = w;
    return DDX_OK;
}

int ddx_class_grid_labels(int n, int num_classes, int32_t *y) {
    if (num_classes <= 0 || n <= 0) return 0;
    // Every row one class, whatever n: n / K per row, the rows past the K-th cycling again.
    const int cols = n >= num_classes ? n / num_classes : 1;
    for (int i = 0; i < n; i++) y[i] = (i / cols) % num_classes;
    return cols;
}

ddx_status ddx_sampling_run_class(ddx_sampling *sp, int n, int32_t cls, float *out,
                                  void (*progress)(int done, int total, void *arg), void *arg) {
    if (!sp) return ddx_errorf(DDX_E_INTERNAL, "sampler: NULL sampler");
    const int nc = sp->m->cfg.model.num_classes;
    if (nc <= 0) return ddx_errorf(DDX_E_INPUT, "sampler: a class was asked of an unconditional model (model.num_classes 0)");
    if (cls < 0 || cls > nc)
        return ddx_errorf(DDX_E_INPUT, "sampler: class %d is not a class of the model (0..%d, %d: the null class)", (int)cls,
                          nc - 1, nc);
    if (n <= 0) return ddx_sampling_run(sp, n, NULL, NULL, out, progress, arg);
    int32_t *y = malloc((size_t)n * sizeof *y);
    if (!y) return ddx_errorf(DDX_E_NOMEM, "sampler: out of host memory");
    for (int i = 0; i < n; i++) y[i] = cls;
    ddx_status st = ddx_sampling_run(sp, n, y, NULL, out, progress, arg);
    free(y);
    return st;
}

void ddx_sampling_set_post_step(ddx_sampling *sp, ddx_sampling_post_step_fn fn, void *user) {
    sp->post = fn;
    sp->user = user;
}

int ddx_sampling_steps(const ddx_sampling *sp) { return sp->S; }

ddx_status ddx_sampling_set_inpaint(ddx_sampling *sp, const float *known, const float *mask) {
    if ((known == NULL) != (mask == NULL))
        return ddx_errorf(DDX_E_INTERNAL, "sampler inpainting: give both the known image and the mask, or neither");
    // The blend re-noises the known region to each update's level, which a multistep history
    // (earlier x0 predictions of a differently blended x) does not account for.
    if (known && sp->ms)
        return ddx_errorf(DDX_E_INPUT, "sample.sampler: inpainting runs with ddpm or ddim only; set sample.sampler (or "
                                       "--sampler) to one of them");
    sp->known_h = known;
    sp->mask_h = mask;
    return DDX_OK;
}

int64_t ddx_repaint_schedule(int n, int jump, int resample, int *out, int64_t cap) {
    if (n < 1 || jump < 1 || resample < 1) return -1;
    int64_t len = 0;
    int *left = calloc((size_t)n, sizeof *left);   // jumps still to make from each state
    if (!left) return -1;
    for (int j = 0; j + jump < n; j += jump) left[j] = resample - 1;
    int i = n - 1;
    if (out && len < cap) out[len] = i;
    len++;
    while (i > -1) {
        i--;
        if (out && len < cap) out[len] = i;
        len++;
        if (i >= 0 && left[i] > 0) {
            left[i]--;
            i += jump;
            if (out && len < cap) out[len] = i;
            len++;
        }
    }
    free(left);
    return len;
}

ddx_status ddx_sampling_set_repaint(ddx_sampling *sp, int resample, int jump) {
    if (resample < 1 || resample > 1000)
        return ddx_errorf(DDX_E_INPUT, "--resample: %d is out of range 1..1000 (1: no resampling)", resample);
    if (resample > 1 && sp->ms)
        return ddx_errorf(DDX_E_INPUT, "--resample: RePaint runs with ddpm or ddim only; set sample.sampler (or --sampler) "
                                       "to one of them");
    if (resample > 1 && (jump < 1 || jump >= sp->S))
        return ddx_errorf(DDX_E_INPUT, "--jump: %d is out of range 1..%d (less than the %d sampler steps)", jump, sp->S - 1,
                          sp->S);
    free(sp->sched);
    sp->sched = NULL;
    sp->resample = resample, sp->jump = jump;
    if (resample == 1) return DDX_OK;
    const int64_t L = ddx_repaint_schedule(sp->S, jump, resample, NULL, 0);
    if (L < 2 || L > ((int64_t)1 << 31) - 1) return ddx_errorf(DDX_E_INPUT, "--resample %d --jump %d: schedule too long", resample, jump);
    if (!(sp->sched = malloc((size_t)L * sizeof(int)))) return ddx_errorf(DDX_E_NOMEM, "sampler: out of host memory");
    sp->L = ddx_repaint_schedule(sp->S, jump, resample, sp->sched, L);
    return DDX_OK;
}

int ddx_sampling_visits(const ddx_sampling *sp) { return sp->sched ? (int)(sp->L - 1) : sp->S; }

static size_t in_bytes(int cap) { return IN_OFF_T + 2 * (size_t)cap * sizeof(float); }

size_t ddx_sampling_bytes(const ddx_sampling *sp) {
    const size_t cap = (size_t)sp->cap, hw = (size_t)(sp->H * sp->W);
    size_t b = sp->c == &sp->own ? ddx_arena_capacity(&sp->own.act) : 0;
    if (sp->xbuf) b += cap * hw * (size_t)sp->C * sizeof(float);
    if (sp->ybuf) b += (sp->cap_guided ? 2 : 1) * cap * sizeof(int32_t);
    if (sp->cbuf) b += cap * hw * (size_t)sp->Cc * sizeof(float);
    if (sp->kbuf) b += 2 * cap * hw * (size_t)sp->C * sizeof(float);
    if (sp->h1buf) b += cap * hw * (size_t)sp->C * sizeof(float);
    if (sp->h2buf) b += cap * hw * (size_t)sp->C * sizeof(float);
    if (sp->have_graph) b += in_bytes(sp->cap);
    if (sp->have_jgraph) b += in_bytes(sp->cap);
    return b;
}

// Buffers for batches of up to B images with the current hooks.
static ddx_status ensure(ddx_sampling *sp, int B, bool labels, bool cond) {
    const bool g2 = guided(sp), graphs = sp->o.graphs && !sp->post;
    const bool inp = sp->known_h != NULL, jumps = sp->sched != NULL;
    if (sp->cap >= B && sp->cap_guided == g2 && sp->cap_graphs == graphs && (sp->ybuf != NULL) == labels &&
        (sp->cbuf != NULL) == cond && sp->cap_inpaint == inp && sp->have_jgraph == jumps)
        return DDX_OK;
    free_buffers(sp);
    const size_t hw = (size_t)(sp->H * sp->W);
    DDX_TRY(ddx_dev_alloc(sp->dev, (size_t)B * hw * (size_t)sp->C * sizeof(float), &sp->xbuf));
    if (labels) DDX_TRY(ddx_dev_alloc(sp->dev, (g2 ? 2 : 1) * (size_t)B * sizeof(int32_t), &sp->ybuf));
    if (cond) DDX_TRY(ddx_dev_alloc(sp->dev, (size_t)B * hw * (size_t)sp->Cc * sizeof(float), &sp->cbuf));
    if (inp) DDX_TRY(ddx_dev_alloc(sp->dev, (size_t)B * hw * (size_t)sp->C * sizeof(float), &sp->kbuf));
    if (inp) DDX_TRY(ddx_dev_alloc(sp->dev, (size_t)B * hw * (size_t)sp->C * sizeof(float), &sp->mbuf));
    sp->cap_inpaint = inp;
    if (sp->ms && sp->plan.nhist >= 1)
        DDX_TRY(ddx_dev_alloc(sp->dev, (size_t)B * hw * (size_t)sp->C * sizeof(float), &sp->h1buf));
    if (sp->ms && sp->plan.nhist >= 2)
        DDX_TRY(ddx_dev_alloc(sp->dev, (size_t)B * hw * (size_t)sp->C * sizeof(float), &sp->h2buf));
    DDX_TRY(ddx_graph_step_init(&sp->g, sp->c, graphs, in_bytes(B), "sampling step"));
    sp->have_graph = true;
    if (jumps) {
        DDX_TRY(ddx_graph_step_init(&sp->gj, sp->c, graphs, in_bytes(B), "RePaint jump"));
        sp->have_jgraph = true;
    }
    sp->cap = B, sp->cap_guided = g2, sp->cap_graphs = graphs;
    return DDX_OK;
}

static ddx_tensor *wrap(ddx_ctx *c, void *data, ddx_dtype dt, int ndim, const int64_t *shape) {
    ddx_tensor *t = ddx_meta_tensor(c);
    if (t) *t = ddx_tensor_wrap(data, dt, c->device, ndim, shape);
    return t;
}

// The update of a multistep / two-stage sampler after its model call: one sampler_step_ms
// (guidance read inside it from the doubled output), then the history per the plan and x.
static ddx_status ms_update(ddx_sampling *sp, ddx_ctx *c, bool captured, uint8_t *in, ddx_tensor *x, ddx_tensor *pred) {
    const int64_t nb = sp->nb;
    const int64_t shape[4] = {nb, sp->H, sp->W, sp->C};
    ddx_tensor *h1 = sp->h1buf ? wrap(c, sp->h1buf, DDX_F32, 4, shape) : NULL;   // [nb, H, W, C]
    ddx_tensor *h2 = sp->h2buf ? wrap(c, sp->h2buf, DDX_F32, 4, shape) : NULL;   // [nb, H, W, C]
    ddx_sampler_ms_params p = sp->pm;
    if (captured) p.coefs_dev = (const float *)(in + IN_OFF_COEFS);
    ddx_tensor *y = pred ? ddx_sampler_step_ms(c, x, pred, h1, h2, &p) : NULL;   // [2 nb, H, W, C]: x', D
    ddx_ctx_set_step_dev(c, NULL);
    DDX_TRY(ddx_ctx_status(c));
    if (!y) return ddx_errorf(DDX_E_INTERNAL, "sampler: the multistep update returned no tensor");
    const size_t bytes = (size_t)ddx_numel(x) * sizeof(float);
    const uint8_t *d = (const uint8_t *)y->data + bytes;
    if (sp->plan.hist == DDX_PLAN_HIST_STAGE) {
        // Heun: the stage's x_t and D, for the second stage (a second stage's are not read).
        if (sp->h1buf) DDX_TRY(ddx_memcpy(sp->h1buf, c->device, sp->xbuf, c->device, bytes));
        if (sp->h2buf) DDX_TRY(ddx_memcpy(sp->h2buf, c->device, d, c->device, bytes));
    } else {
        if (sp->h2buf) DDX_TRY(ddx_memcpy(sp->h2buf, c->device, sp->h1buf, c->device, bytes));
        if (sp->h1buf) DDX_TRY(ddx_memcpy(sp->h1buf, c->device, d, c->device, bytes));
    }
    ddx_tensor *xp = ddx_meta_tensor(c);
    if (!xp) return ddx_ctx_status(c) != DDX_OK ? ddx_ctx_status(c) : DDX_E_NOMEM;
    *xp = ddx_tensor_slice(y, 0, nb);   // [nb, H, W, C]
    if (sp->post) {
        xp = sp->post(c, xp, sp->k, sp->t, sp->t_prev, sp->i0, sp->user);
        ddx_ctx_set_step_dev(c, NULL);
        DDX_TRY(ddx_ctx_status(c));
        if (!xp) return ddx_errorf(DDX_E_INTERNAL, "sampler: the post-step hook returned no tensor and set no error");
        if (xp->ndim != 4 || ddx_numel(xp) != ddx_numel(x) || xp->dtype != DDX_F32)
            return ddx_errorf(DDX_E_INTERNAL, "sampler: the post-step hook returned a tensor of another shape or dtype");
    }
    return ddx_memcpy(sp->xbuf, c->device, xp->data, c->device, bytes);
}

// One denoising step of the current batch: x <- update(x, model(x [+ cond], t [, y])).
static ddx_status step_body(ddx_ctx *c, bool captured, void *arg) {
    ddx_sampling *sp = arg;
    const bool g2 = guided(sp);
    const int64_t nb = sp->nb, rows = g2 ? 2 * nb : nb, Cin = sp->C + sp->Cc;
    uint8_t *in = ddx_graph_step_inputs_dev(&sp->g);
    ddx_tensor *x = wrap(c, sp->xbuf, DDX_F32, 4, (int64_t[]){nb, sp->H, sp->W, sp->C});   // [nb, H, W, C]
    ddx_tensor *tt = wrap(c, in + IN_OFF_T, DDX_F32, 1, (int64_t[]){rows});               // [rows]
    ddx_tensor *yy = sp->ybuf ? wrap(c, sp->ybuf, DDX_I32, 1, (int64_t[]){rows}) : NULL;  // [rows]
    if (!x || !tt || (sp->ybuf && !yy)) return ddx_ctx_status(c) != DDX_OK ? ddx_ctx_status(c) : DDX_E_NOMEM;
    ddx_sampler_step_params p = sp->p;
    if (captured) {
        p.coefs_dev = (const float *)(in + IN_OFF_COEFS);
        ddx_ctx_set_step_dev(c, (const uint32_t *)(in + IN_OFF_STEP));   // the update's noise key
    }
    ddx_tensor *xin = x;
    if (sp->cbuf) {
        ddx_tensor *ct = wrap(c, sp->cbuf, DDX_F32, 4, (int64_t[]){nb, sp->H, sp->W, sp->Cc});   // [nb, H, W, Cc]
        xin = ddx_concat(c, x, ct);                                                            // [nb, H, W, Cin]
    }
    if (g2 && xin) {
        // The doubled batch: the same x_t for the conditional and the unconditional half.
        ddx_tensor *xd = ddx_new(c, DDX_F32, 4, (int64_t[]){rows, sp->H, sp->W, Cin});   // [2 nb, H, W, Cin]
        const size_t half = (size_t)ddx_numel(xin) * sizeof(float);
        ddx_status st = xd ? ddx_memcpy(xd->data, c->device, xin->data, c->device, half) : ddx_ctx_status(c);
        if (st == DDX_OK) st = ddx_memcpy((uint8_t *)xd->data + half, c->device, xin->data, c->device, half);
        if (st != DDX_OK) {
            ddx_ctx_fail(c, st);
            return st;
        }
        xin = xd;
    }
    ddx_tensor *pred = ddx_model_forward(c, sp->m, xin, tt, yy);   // [rows, H, W, C]
    if (sp->ms) return ms_update(sp, c, captured, in, x, pred);
    // Guided: the update reads both halves of pred and combines them as it goes (also when it
    // blends the known region in).
    p.guided = g2;
    p.guidance = (float)sp->w;
    ddx_tensor *xp;
    if (sp->kbuf) {
        ddx_tensor *kt = wrap(c, sp->kbuf, DDX_F32, 4, (int64_t[]){nb, sp->H, sp->W, sp->C});   // [nb, H, W, C]
        ddx_tensor *mt = wrap(c, sp->mbuf, DDX_F32, 4, (int64_t[]){nb, sp->H, sp->W, sp->C});   // [nb, H, W, C]
        if (captured) p.known_coefs_dev = (const float *)(in + IN_OFF_KNOWN);
        xp = kt && mt ? ddx_sampler_step_blend(c, x, pred, kt, mt, &p) : NULL;   // [nb, H, W, C]
    } else {
        xp = ddx_sampler_step(c, x, pred, &p);   // [nb, H, W, C]
    }
    if (sp->post && xp) xp = sp->post(c, xp, sp->k, sp->t, sp->t_prev, sp->i0, sp->user);
    ddx_ctx_set_step_dev(c, NULL);
    DDX_TRY(ddx_ctx_status(c));
    if (!xp) return ddx_errorf(DDX_E_INTERNAL, "sampler: the post-step hook returned no tensor and set no error");
    if (xp->ndim != 4 || ddx_numel(xp) != ddx_numel(x) || xp->dtype != DDX_F32)
        return ddx_errorf(DDX_E_INTERNAL, "sampler: the post-step hook returned a tensor of another shape or dtype");
    return ddx_memcpy(sp->xbuf, c->device, xp->data, c->device, (size_t)ddx_numel(x) * sizeof(float));
}

// A RePaint jump of the current batch: x <- sqrt(r) x + sqrt(1 - r) z, r = abar_hi / abar_lo,
// one sampler_step with only d and sigma set (no model call).
static ddx_status jump_body(ddx_ctx *c, bool captured, void *arg) {
    ddx_sampling *sp = arg;
    uint8_t *in = ddx_graph_step_inputs_dev(&sp->gj);
    ddx_tensor *x = wrap(c, sp->xbuf, DDX_F32, 4, (int64_t[]){sp->nb, sp->H, sp->W, sp->C});   // [nb, H, W, C]
    if (!x) return ddx_ctx_status(c) != DDX_OK ? ddx_ctx_status(c) : DDX_E_NOMEM;
    ddx_sampler_step_params p = sp->pj;
    if (captured) {
        p.coefs_dev = (const float *)(in + IN_OFF_COEFS);
        ddx_ctx_set_step_dev(c, (const uint32_t *)(in + IN_OFF_STEP));
    }
    ddx_tensor *xp = ddx_sampler_step(c, x, x, &p);   // [nb, H, W, C]
    ddx_ctx_set_step_dev(c, NULL);
    DDX_TRY(ddx_ctx_status(c));
    return ddx_memcpy(sp->xbuf, c->device, xp->data, c->device, (size_t)ddx_numel(x) * sizeof(float));
}

// The timestep of schedule state i (-1: the result).
static int state_t(const ddx_sampling *sp, int i) { return i >= 0 ? sp->ts[sp->S - 1 - i] : -1; }

static ddx_status run_jump(ddx_sampling *sp, ddx_ctx *c, int k, int t_lo, int t_hi, uint64_t off) {
    const double r = sp->s->alphas_cumprod[t_hi] / sp->s->alphas_cumprod[t_lo];
    ddx_sampler_step_params p;
    memset(&p, 0, sizeof p);
    p.d = (float)sqrt(r);
    p.sigma = (float)sqrt(1.0 - r);
    p.key = (ddx_rng_key){.seed = sp->o.seed, .stream = DDX_RNG_STREAM_SAMPLER, .step = (uint32_t)k, .offset = off};
    const float co[9] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, p.d, 0.0f, p.sigma, 0.0f};
    uint8_t *h = NULL;
    DDX_TRY(ddx_graph_step_inputs(&sp->gj, (void **)&h));
    memcpy(h + IN_OFF_COEFS, co, sizeof co);
    const uint32_t k32 = (uint32_t)k;
    memcpy(h + IN_OFF_STEP, &k32, sizeof k32);
    sp->pj = p;
    return ddx_graph_step_run(&sp->gj, c, IN_OFF_STEP + sizeof k32, jump_body, sp);
}

// Model call k (1..plan.n) of a multistep / two-stage sampler.
static ddx_status run_ms_call(ddx_sampling *sp, ddx_ctx *c, int k, int64_t rows, uint64_t off, bool g2) {
    ddx_sampler_ms_params p = sp->plan.p[k - 1];
    p.key = (ddx_rng_key){.seed = sp->o.seed, .stream = DDX_RNG_STREAM_SAMPLER, .step = (uint32_t)k, .offset = off};
    p.guided = g2;
    p.w = (float)sp->w;
    const float co[8] = {p.a, p.b, p.cx, p.cd, p.c1, p.c2, p.sigma, p.clip ? 1.0f : 0.0f};
    // A captured step reads the coefficients from the device, past the op's own checks.
    for (int i = 0; sp->g.graphs && i < 7; i++)
        if (!(co[i] == co[i] && co[i] - co[i] == 0.0f))
            return ddx_errorf(DDX_E_INPUT, "sampler_step_ms: coefficient %d is not finite (%g); check the schedule", i,
                              (double)co[i]);
    uint8_t *h = NULL;
    DDX_TRY(ddx_graph_step_inputs(&sp->g, (void **)&h));
    memcpy(h + IN_OFF_COEFS, co, sizeof co);
    const uint32_t k32 = (uint32_t)k;
    memcpy(h + IN_OFF_STEP, &k32, sizeof k32);
    float *tf = (float *)(h + IN_OFF_T);
    for (int64_t i = 0; i < rows; i++) tf[i] = (float)sp->plan.t[k - 1];
    sp->k = k, sp->t = sp->ts[k - 1], sp->t_prev = k < sp->S ? sp->ts[k] : -1, sp->pm = p;
    return ddx_graph_step_run(&sp->g, c, IN_OFF_T + (size_t)rows * sizeof(float), step_body, sp);
}

ddx_status ddx_sampling_run(ddx_sampling *sp, int n, const int32_t *y, const float *cond, float *out,
                            void (*progress)(int done, int total, void *arg), void *arg) {
    return ddx_sampling_run_at(sp, 0, n, y, cond, out, progress, arg);
}

ddx_status ddx_sampling_run_at(ddx_sampling *sp, int64_t first, int n, const int32_t *y, const float *cond, float *out,
                               void (*progress)(int done, int total, void *arg), void *arg) {
    if (first < 0 || first > INT64_MAX / 2 / (int64_t)DDX_SAMPLER_MAX_HWC)
        return ddx_errorf(DDX_E_INPUT, "sampler: first image index %lld out of range", (long long)first);
    if (!sp || (n > 0 && !out)) return ddx_errorf(DDX_E_INTERNAL, "sampler: NULL sampler or output");
    if (n < 0) return ddx_errorf(DDX_E_INPUT, "sample.n: %d images requested; must be >= 0", n);
    if (n == 0) return DDX_OK;
    const ddx_config *cfg = &sp->m->cfg;
    if (cfg->model.num_classes > 0 && !y)
        return ddx_errorf(DDX_E_INPUT, "sampler: the model is class-conditional (model.num_classes %d); give labels",
                          cfg->model.num_classes);
    if (sp->Cc > 0 && !cond)
        return ddx_errorf(DDX_E_INPUT,
                          "sampler: the model takes %lld conditioning channels (model.in_channels %d - out_channels %d); "
                          "give the conditioning input",
                          (long long)sp->Cc, cfg->model.in_channels, cfg->model.out_channels);
    if (y && cfg->model.num_classes <= 0)
        return ddx_errorf(DDX_E_INPUT, "sampler: labels given to an unconditional model (model.num_classes 0)");
    // Label num_classes is the null class: an unconditional sample of a conditional model.
    for (int i = 0; y && i < n; i++)
        if (y[i] < 0 || y[i] > cfg->model.num_classes)
            return ddx_errorf(DDX_E_INPUT, "sampler: label %d of image %d is not a class of the model (0..%d, %d: the null class)",
                              (int)y[i], i, cfg->model.num_classes - 1, cfg->model.num_classes);
    const int B = sp->o.batch < n ? sp->o.batch : n;
    const bool g2 = guided(sp);
    DDX_TRY(ensure(sp, B, y != NULL, sp->Cc > 0));
    ddx_ctx *c = sp->c;
    // Inference: no tape (nothing is saved for a backward), no dropout. A borrowed context gets
    // its own settings back afterwards.
    const bool grad_was = c->grad_enabled, training_was = c->training, tf32_was = c->tf32;
    const uint64_t seed_was = c->seed;
    ddx_ctx_set_grad(c, false);
    ddx_ctx_set_training(c, false);
    ddx_ctx_set_tf32(c, sp->dev == DDX_CUDA && cfg->run.precision == DDX_PRECISION_TF32);
    ddx_ctx_set_seed(c, sp->o.seed);
    const int64_t hwc = sp->H * sp->W * sp->C, hwcc = sp->H * sp->W * sp->Cc;
    int32_t *yh = y ? malloc(2 * (size_t)B * sizeof *yh) : NULL;
    const int S = sp->S, nbatches = (n + B - 1) / B;
    // The states visited: S-1 .. -1 one by one, or RePaint's schedule.
    const int V = ddx_sampling_visits(sp);
    ddx_status st = y && !yh ? ddx_errorf(DDX_E_NOMEM, "sampler: out of host memory") : DDX_OK;
    for (int b0 = 0, bi = 0; b0 < n && st == DDX_OK; b0 += B, bi++) {
        const int nb = n - b0 < B ? n - b0 : B;
        const int64_t rows = g2 ? 2 * nb : nb;
        const uint64_t off = (uint64_t)(first + b0) * (uint64_t)hwc;   // the noise of image first + b0
        const size_t xbytes = (size_t)((int64_t)nb * hwc) * sizeof(float);
        sp->nb = nb, sp->i0 = first + b0;
        // A new batch: its row count and noise offset are baked into a capture.
        if ((st = ddx_graph_step_invalidate(&sp->g, c)) != DDX_OK || (st = ddx_ctx_reset(c)) != DDX_OK) break;
        if (sp->have_jgraph && (st = ddx_graph_step_invalidate(&sp->gj, c)) != DDX_OK) break;
        const ddx_rng_key k0 = {.seed = sp->o.seed, .stream = DDX_RNG_STREAM_SAMPLER, .step = 0, .offset = off};
        ddx_tensor *xT = ddx_randn(c, DDX_F32, 4, (int64_t[]){nb, sp->H, sp->W, sp->C}, k0);   // [nb, H, W, C]
        if ((st = ddx_ctx_status(c)) != DDX_OK) break;
        st = ddx_memcpy(sp->xbuf, c->device, xT->data, c->device, xbytes);
        if (st == DDX_OK && y) {
            memcpy(yh, y + b0, (size_t)nb * sizeof *yh);
            for (int i = 0; unconditional(sp) && i < nb; i++) yh[i] = cfg->model.num_classes;
            for (int i = 0; g2 && i < nb; i++) yh[nb + i] = cfg->model.num_classes;
            st = ddx_memcpy(sp->ybuf, c->device, yh, DDX_CPU, (size_t)rows * sizeof *yh);
        }
        if (st == DDX_OK && sp->cbuf)
            st = ddx_memcpy(sp->cbuf, c->device, cond + (size_t)b0 * (size_t)hwcc, DDX_CPU,
                            (size_t)((int64_t)nb * hwcc) * sizeof(float));
        if (st == DDX_OK && sp->kbuf)
            st = ddx_memcpy(sp->kbuf, c->device, sp->known_h + off, DDX_CPU, xbytes);
        if (st == DDX_OK && sp->kbuf)
            st = ddx_memcpy(sp->mbuf, c->device, sp->mask_h + off, DDX_CPU, xbytes);
        // A history term a call does not use has coefficient 0, which must not meet a NaN.
        if (st == DDX_OK && sp->h1buf) st = ddx_dev_memset(sp->dev, sp->h1buf, 0, xbytes);
        if (st == DDX_OK && sp->h2buf) st = ddx_dev_memset(sp->dev, sp->h2buf, 0, xbytes);
        for (int k = 1; k <= V && st == DDX_OK; k++) {
            const int from = sp->sched ? sp->sched[k - 1] : S - k, to = sp->sched ? sp->sched[k] : S - k - 1;
            if (to > from) {
                st = run_jump(sp, c, k, state_t(sp, from), state_t(sp, to), off);
                if (st == DDX_OK && progress) progress(bi * V + k, nbatches * V, arg);
                continue;
            }
            if (sp->ms) {
                st = run_ms_call(sp, c, k, rows, off, g2);
                if (st == DDX_OK && progress) progress(bi * V + k, nbatches * V, arg);
                continue;
            }
            const int t = state_t(sp, from), t_prev = state_t(sp, to);
            ddx_sampler_step_params p = ddx_sampler_coefs(sp->s, sp->o.sampler, t, t_prev, sp->o.eta);
            p.key = (ddx_rng_key){.seed = sp->o.seed, .stream = DDX_RNG_STREAM_SAMPLER, .step = (uint32_t)k, .offset = off};
            const float co[9] = {p.a, p.b, p.f, p.g, p.c, p.d, p.e, p.sigma, p.clip ? 1.0f : 0.0f};
            // A captured step reads the coefficients from the device, past the op's own checks.
            for (int i = 0; sp->g.graphs && i < 8 && st == DDX_OK; i++)
                if (!(co[i] == co[i] && co[i] - co[i] == 0.0f))
                    st = ddx_errorf(DDX_E_INPUT, "sampler_step: coefficient %c is not finite (%g); check the schedule",
                                    "abfgcdes"[i], (double)co[i]);
            uint8_t *h = NULL;
            if (st == DDX_OK) st = ddx_graph_step_inputs(&sp->g, (void **)&h);
            if (st != DDX_OK) break;
            memcpy(h + IN_OFF_COEFS, co, sizeof co);
            if (sp->kbuf) {
                // q_sample(known, t_prev): (sqrt(abar), sqrt(1 - abar)); exactly (1, 0) at the end.
                const double ab = t_prev >= 0 ? sp->s->alphas_cumprod[t_prev] : 1.0;
                p.kc0 = t_prev >= 0 ? (float)sqrt(ab) : 1.0f;
                p.kc1 = t_prev >= 0 ? (float)sqrt(1.0 - ab) : 0.0f;
                p.known_stream = DDX_RNG_STREAM_INPAINT;
                const float kc[2] = {p.kc0, p.kc1};
                memcpy(h + IN_OFF_KNOWN, kc, sizeof kc);
            }
            const uint32_t k32 = (uint32_t)k;
            memcpy(h + IN_OFF_STEP, &k32, sizeof k32);
            float *tf = (float *)(h + IN_OFF_T);
            for (int64_t i = 0; i < rows; i++) tf[i] = (float)t;
            sp->k = k, sp->t = t, sp->t_prev = t_prev, sp->p = p;
            st = ddx_graph_step_run(&sp->g, c, IN_OFF_T + (size_t)rows * sizeof(float), step_body, sp);
            if (st == DDX_OK && progress) progress(bi * V + k, nbatches * V, arg);
        }
        if (st == DDX_OK) st = ddx_memcpy(out + (size_t)b0 * (size_t)hwc, DDX_CPU, sp->xbuf, c->device, xbytes);
    }
    free(yh);
    ddx_status rst = ddx_ctx_reset(c);
    ddx_ctx_set_grad(c, grad_was);
    ddx_ctx_set_training(c, training_was);
    ddx_ctx_set_tf32(c, tf32_was);
    ddx_ctx_set_seed(c, seed_was);
    return st != DDX_OK ? st : rst;
}
