// The sampler (models/sampler.c) and the graph-step helper (runtime/graph.c) on the CPU:
//   - a frozen copy of the sampling loop the sampler replaced is the reference: the sampler's
//     images equal it bit for bit (unconditional and class-conditional, DDPM and DDIM, batches
//     that do and do not divide n);
//   - guidance: w = 1 equals plain conditional sampling bit for bit; w = 0 equals sampling with
//     the null class bit for bit (a label-dependent stand-in model, and a real U-Net); the fused
//     guided step (one doubled forward, the combine inside sampler_step) equals the two-forward
//     reference (eps_c and eps_u from separate forwards, combined, then the plain update) to
//     fp32 tolerance, with DDPM and DDIM and batches that do not divide n; bad scales refused;
//   - the post-step hook: an inpainting blend keeps the known region exactly, called once per
//     update with the right k, t, t_prev and batch offset;
//   - a conditioning input concatenated on the channel axis (a real U-Net with in_channels =
//     out_channels + Cc) equals the reference loop with the same concat, and changes the images;
//   - the graph helper runs every step eagerly on the CPU, body first, inputs readable.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "models/model_impl.h"
#include "models/sampler.h"
#include "runtime/graph.h"
#include "runtime/philox.h"

// ---- models --------------------------------------------------------------------------------
static ddx_status tiny_unet(int num_classes, int in_ch, int out_ch, ddx_param_store *ps, ddx_model **m) {
    ddx_config cfg;
    ddx_config_defaults(&cfg);
    cfg.model.type = DDX_MODEL_TYPE_UNET_DDPM;
    cfg.model.image_size = 8;
    cfg.model.in_channels = in_ch;
    cfg.model.out_channels = out_ch;
    cfg.model.ch = 8;
    cfg.model.ch_mult = (ddx_int_list){2, {1, 2}};
    cfg.model.num_res_blocks = 1;
    cfg.model.attn_resolutions = (ddx_int_list){1, {4}};
    cfg.model.groups = 4;
    cfg.model.dropout = 0.1;   // inference must not apply it
    cfg.model.num_classes = num_classes;
    cfg.data.image_size = 8;
    cfg.diffusion.timesteps = 40;
    ddx_param_store_init(ps, DDX_CPU);
    *m = NULL;
    ddx_status st = ddx_model_create(&cfg, ps, m);
    if (st == DDX_OK) st = ddx_param_store_finalize_inference(ps);
    if (st == DDX_OK) st = ddx_model_init(*m, 5);
    return st;
}

// out = 0.5 x + 0.01 t + 0.1 (label + 1) per channel: every row depends only on its own inputs.
// Labels 0..num_classes, the last being the null class, as in the real networks.
static ddx_tensor *label_forward(ddx_ctx *c, const ddx_model *m, ddx_tensor *x, ddx_tensor *t, ddx_tensor *y) {
    if (!x || !t || !y) return NULL;
    const int nc = m->cfg.model.num_classes + 1, C = m->cfg.model.out_channels;
    ddx_tensor *table = ddx_new(c, DDX_F32, 2, (int64_t[]){nc, C});   // [nc, C]
    if (!table) return NULL;
    for (int i = 0; i < nc * C; i++) ((float *)table->data)[i] = 0.1f * (float)(i / C + 1);
    const int64_t N = x->shape[0];
    ddx_tensor *e = ddx_reshape(c, ddx_embedding(c, y, table), 4, (int64_t[]){N, 1, 1, C});   // [N, 1, 1, C]
    ddx_tensor *tt = ddx_reshape(c, ddx_scale(c, t, 0.01f, 0.0f), 4, (int64_t[]){N, 1, 1, 1});
    return ddx_add(c, ddx_add(c, ddx_scale(c, x, 0.5f, 0.0f), tt), e);
}

static ddx_model *label_model(int image_size, int C, int nc) {
    ddx_model *m = calloc(1, sizeof *m);
    ddx_config_defaults(&m->cfg);
    m->cfg.model.image_size = image_size;
    m->cfg.model.in_channels = m->cfg.model.out_channels = C;
    m->cfg.model.num_classes = nc;
    m->forward = label_forward;
    return m;
}

static ddx_status make_schedule(ddx_schedule *s, int T) {
    ddx_config cfg;
    ddx_config_defaults(&cfg);
    cfg.diffusion.timesteps = T;
    return ddx_schedule_init(s, &cfg);
}

// ---- the reference: the loop the sampler replaced (CPU, eager), with an optional concat ------
static ddx_status old_sample(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, const ddx_sample_opts *o, int n,
                             const int32_t *y, const float *cond, float *out) {
    const ddx_config *cfg = &m->cfg;
    const int64_t H = cfg->model.image_size, W = H, C = cfg->model.out_channels, Cc = cfg->model.in_channels - C;
    const int64_t hwc = H * W * C;
    const int B = o->batch < n ? o->batch : n;
    int *ts = malloc((size_t)s->T * sizeof(int));
    const int S = ddx_sampler_timesteps(s, o->sampler, o->steps, o->spacing, ts);
    float *xbuf = malloc((size_t)(B * hwc) * sizeof(float));
    ddx_ctx_set_grad(c, false);
    ddx_ctx_set_training(c, false);
    ddx_status st = DDX_OK;
    for (int b0 = 0; b0 < n && st == DDX_OK; b0 += B) {
        const int nb = n - b0 < B ? n - b0 : B;
        const int64_t xshape[4] = {nb, H, W, C}, nshape[1] = {nb};
        const uint64_t off = (uint64_t)b0 * (uint64_t)hwc;
        const size_t xbytes = (size_t)(nb * hwc) * sizeof(float);
        ddx_ctx_reset(c);
        const ddx_rng_key k0 = {.seed = o->seed, .stream = DDX_RNG_STREAM_SAMPLER, .step = 0, .offset = off};
        ddx_tensor *xT = ddx_randn(c, DDX_F32, 4, xshape, k0);
        if ((st = ddx_ctx_status(c)) != DDX_OK) break;
        memcpy(xbuf, xT->data, xbytes);
        for (int k = 1; k <= S && st == DDX_OK; k++) {
            const int t = ts[k - 1], t_prev = k < S ? ts[k] : -1;
            ddx_sampler_step_params p = ddx_sampler_coefs(s, o->sampler, t, t_prev, o->eta);
            p.key = (ddx_rng_key){.seed = o->seed, .stream = DDX_RNG_STREAM_SAMPLER, .step = (uint32_t)k, .offset = off};
            ddx_ctx_reset(c);
            ddx_tensor *tt = ddx_fill(c, DDX_F32, 1, nshape, (float)t);
            ddx_tensor *yy = NULL;
            if (y) {
                yy = ddx_new(c, DDX_I32, 1, nshape);
                memcpy(yy->data, y + b0, (size_t)nb * sizeof(int32_t));
            }
            ddx_tensor *x = ddx_meta_tensor(c);
            *x = ddx_tensor_wrap(xbuf, DDX_F32, DDX_CPU, 4, xshape);
            ddx_tensor *xin = x;
            if (Cc > 0) {
                ddx_tensor *ct = ddx_new(c, DDX_F32, 4, (int64_t[]){nb, H, W, Cc});
                memcpy(ct->data, cond + (size_t)b0 * (size_t)(H * W * Cc), (size_t)(nb * H * W * Cc) * sizeof(float));
                xin = ddx_concat(c, x, ct);
            }
            ddx_tensor *pred = ddx_model_forward(c, m, xin, tt, yy);
            ddx_tensor *xp = ddx_sampler_step(c, x, pred, &p);
            if ((st = ddx_ctx_status(c)) != DDX_OK) break;
            memcpy(xbuf, xp->data, xbytes);
        }
        if (st == DDX_OK) memcpy(out + off, xbuf, xbytes);
    }
    ddx_ctx_reset(c);
    free(xbuf);
    free(ts);
    return st;
}

static ddx_status new_sample(const ddx_model *m, const ddx_schedule *s, const ddx_sample_opts *o, int n, const int32_t *y,
                             const float *cond, float *out) {
    ddx_sampling *sp = NULL;
    ddx_status st = ddx_sampling_create(m, s, o, DDX_CPU, &sp);
    if (st == DDX_OK) st = ddx_sampling_run(sp, n, y, cond, out, NULL, NULL);
    ddx_sampling_free(sp);
    return st;
}

static bool finite_all(const float *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return false;
    return true;
}

// ---- 1. bit-identical to the loop it replaced --------------------------------------------------
static void test_matches_old_loop(ddx_ctx *c) {
    for (int nc = 0; nc <= 3; nc += 3) {
        ddx_param_store ps;
        ddx_model *m = NULL;
        ddx_status st = tiny_unet(nc, 3, 3, &ps, &m);
        CHECK(st == DDX_OK, "tiny unet (classes %d): %s", nc, ddx_last_error());
        CHECK(ps.buf[DDX_PBUF_GRAD] == NULL && ps.buf[DDX_PBUF_ADAM_M] == NULL && ps.buf[DDX_PBUF_EMA] == NULL &&
                  ps.buf[DDX_PBUF_VALUE] != NULL,
              "an inference store holds only the value buffer");
        CHECK(ddx_param_store_bytes(&ps) == ps.numel * sizeof(float), "inference store bytes %zu, want %zu",
              ddx_param_store_bytes(&ps), ps.numel * sizeof(float));
        ddx_schedule s;
        make_schedule(&s, 40);
        const struct { ddx_sampler smp; int steps, batch; double eta; } cases[] = {
            {DDX_SAMPLER_DDIM, 6, 2, 1.0}, {DDX_SAMPLER_DDIM, 5, 3, 0.0}, {DDX_SAMPLER_DDPM, 0, 2, 0.0}};
        enum { N = 3, PER = 8 * 8 * 3 };
        int32_t y[N] = {2, 0, 1};
        for (size_t j = 0; j < sizeof cases / sizeof cases[0] && st == DDX_OK; j++) {
            ddx_sample_opts o = {.sampler = cases[j].smp, .steps = cases[j].steps, .eta = cases[j].eta,
                                 .spacing = DDX_SPACING_UNIFORM, .seed = 77, .batch = cases[j].batch, .graphs = true};
            float a[N * PER], b[N * PER];
            ddx_status s1 = old_sample(c, m, &s, &o, N, nc ? y : NULL, NULL, a);
            ddx_status s2 = new_sample(m, &s, &o, N, nc ? y : NULL, NULL, b);
            CHECK(s1 == DDX_OK && s2 == DDX_OK, "case %zu: %s", j, ddx_last_error());
            CHECK(finite_all(a, N * PER) && memcmp(a, b, sizeof a) == 0,
                  "classes %d case %zu (%s, batch %d): the sampler's images differ from the old loop's", nc, j,
                  cases[j].smp == DDX_SAMPLER_DDIM ? "ddim" : "ddpm", cases[j].batch);
        }
        // A class-conditional model without labels, and out-of-range labels, are input errors.
        if (nc) {
            ddx_sample_opts o = {.sampler = DDX_SAMPLER_DDIM, .steps = 2, .seed = 1, .batch = 2};
            float a[N * PER];
            CHECK(new_sample(m, &s, &o, N, NULL, NULL, a) == DDX_E_INPUT, "no labels accepted");
            int32_t bad[N] = {0, 4, 1};
            CHECK(new_sample(m, &s, &o, N, bad, NULL, a) == DDX_E_INPUT && strstr(ddx_last_error(), "label 4"),
                  "label 4 of a 3-class model (3 is the null class): %s", ddx_last_error());
            bad[1] = -1;
            CHECK(new_sample(m, &s, &o, N, bad, NULL, a) == DDX_E_INPUT && strstr(ddx_last_error(), "label -1"),
                  "label -1 accepted: %s", ddx_last_error());
        }
        ddx_schedule_free(&s);
        ddx_model_free(m);
        ddx_param_store_free(&ps);
    }
}

// ---- 2. guidance -------------------------------------------------------------------------------
static void test_guidance(void) {
    enum { N = 5, PER = 4 * 4 * 2, NC = 4 };
    ddx_model *m = label_model(4, 2, NC);
    ddx_schedule s;
    make_schedule(&s, 30);
    const int32_t y[N] = {0, 1, 2, NC, 1}, ynull[N] = {NC, NC, NC, NC, NC};
    ddx_sample_opts o = {.sampler = DDX_SAMPLER_DDIM, .steps = 6, .eta = 0.5, .seed = 9, .batch = 2};
    float plain[N * PER], nulls[N * PER], g1[N * PER], g0[N * PER], g3[N * PER], cls[N * PER];
    ddx_status st = new_sample(m, &s, &o, N, y, NULL, plain);
    if (st == DDX_OK) st = new_sample(m, &s, &o, N, ynull, NULL, nulls);
    ddx_sampling *sp = NULL;
    if (st == DDX_OK) st = ddx_sampling_create(m, &s, &o, DDX_CPU, &sp);
    if (st == DDX_OK) st = ddx_sampling_set_guidance(sp, 1.0);
    if (st == DDX_OK) st = ddx_sampling_run(sp, N, y, NULL, g1, NULL, NULL);
    if (st == DDX_OK) st = ddx_sampling_set_guidance(sp, 0.0);
    if (st == DDX_OK) st = ddx_sampling_run(sp, N, y, NULL, g0, NULL, NULL);
    if (st == DDX_OK) st = ddx_sampling_set_guidance(sp, 3.0);
    if (st == DDX_OK) st = ddx_sampling_run(sp, N, y, NULL, g3, NULL, NULL);
    CHECK(st == DDX_OK, "guidance: %s", ddx_last_error());
    CHECK(memcmp(g1, plain, sizeof g1) == 0, "guidance w = 1 differs from plain conditional sampling");
    CHECK(memcmp(g0, nulls, sizeof g0) == 0, "guidance w = 0 differs from sampling with the null class");
    // w = 3 moves every image away from its unconditional one (image 3 has the null label
    // itself, so there the guided and plain updates agree).
    bool moved = finite_all(g3, N * PER) && memcmp(g3, plain, PER * sizeof(float)) != 0 &&
                 memcmp(g3, nulls, PER * sizeof(float)) != 0 && memcmp(g3 + 3 * PER, plain + 3 * PER, PER * sizeof(float)) == 0;
    CHECK(moved, "guidance w = 3: images not moved as expected (or the null class changed)");
    // One class for every image: the per-class entry point is the labelled run.
    const int32_t y2[N] = {2, 2, 2, 2, 2};
    float ref2[N * PER];
    st = ddx_sampling_run_class(sp, N, 2, cls, NULL, NULL);
    if (st == DDX_OK) st = ddx_sampling_run(sp, N, y2, NULL, ref2, NULL, NULL);
    CHECK(st == DDX_OK && memcmp(cls, ref2, sizeof cls) == 0, "run_class 2 differs from labels all 2: %s",
          st ? ddx_last_error() : "");
    CHECK(ddx_sampling_run_class(sp, N, NC + 1, cls, NULL, NULL) == DDX_E_INPUT, "class %d of %d accepted", NC + 1, NC);
    CHECK(ddx_sampling_run_class(sp, N, -1, cls, NULL, NULL) == DDX_E_INPUT, "class -1 accepted");
    // Scales that mean nothing are refused and leave the scale as it was.
    CHECK(ddx_sampling_set_guidance(sp, -0.5) == DDX_E_INPUT && strstr(ddx_last_error(), "negative"),
          "negative guidance accepted: %s", ddx_last_error());
    CHECK(ddx_sampling_set_guidance(sp, NAN) == DDX_E_INPUT, "NaN guidance accepted");
    CHECK(ddx_sampling_set_guidance(sp, INFINITY) == DDX_E_INPUT, "infinite guidance accepted");
    CHECK(ddx_sampling_set_guidance(sp, 1e300) == DDX_E_INPUT, "guidance beyond a float accepted");
    st = ddx_sampling_run(sp, N, y, NULL, cls, NULL, NULL);
    CHECK(st == DDX_OK && memcmp(cls, g3, sizeof cls) == 0, "a refused scale changed the sampler's scale");
    ddx_sampling_free(sp);
    ddx_model_free(m);
    // Guidance needs labels to guide by.
    ddx_param_store ps;
    ddx_model *um = NULL;
    if (tiny_unet(0, 3, 3, &ps, &um) == DDX_OK && ddx_sampling_create(um, &s, &o, DDX_CPU, &sp) == DDX_OK) {
        CHECK(ddx_sampling_set_guidance(sp, 2.0) == DDX_E_INPUT, "guidance on an unconditional model accepted");
        CHECK(ddx_sampling_set_guidance(sp, 1.0) == DDX_OK, "w = 1 on an unconditional model refused");
        CHECK(ddx_sampling_run_class(sp, 2, 0, cls, NULL, NULL) == DDX_E_INPUT, "a class of an unconditional model accepted");
        ddx_sampling_free(sp);
    } else {
        CHECK(0, "tiny unet: %s", ddx_last_error());
    }
    ddx_model_free(um);
    ddx_param_store_free(&ps);
    ddx_schedule_free(&s);
    // Grid labels: one class per row whatever n.
    int32_t gl[23];
    CHECK(ddx_class_grid_labels(23, 10, gl) == 2 && gl[0] == 0 && gl[1] == 0 && gl[2] == 1 && gl[19] == 9 && gl[20] == 0 &&
              gl[22] == 1,
          "grid labels for 23 images of 10 classes");
    CHECK(ddx_class_grid_labels(3, 10, gl) == 1 && gl[2] == 2, "grid labels for 3 images of 10 classes");
}

// The two-forward reference of guided sampling: eps_c and eps_u from separate forwards,
// eps = eps_u + w (eps_c - eps_u) computed in double on the host, then the plain update.
static ddx_status two_forward_sample(ddx_ctx *c, const ddx_model *m, const ddx_schedule *s, const ddx_sample_opts *o,
                                     double w, int n, const int32_t *y, float *out) {
    const ddx_config *cfg = &m->cfg;
    const int64_t H = cfg->model.image_size, W = H, C = cfg->model.out_channels, hwc = H * W * C;
    const int B = o->batch < n ? o->batch : n;
    int *ts = malloc((size_t)s->T * sizeof(int));
    const int S = ddx_sampler_timesteps(s, o->sampler, o->steps, o->spacing, ts);
    float *xbuf = malloc((size_t)(B * hwc) * sizeof(float)), *ec = malloc((size_t)(B * hwc) * sizeof(float));
    ddx_ctx_set_grad(c, false);
    ddx_ctx_set_training(c, false);
    ddx_status st = DDX_OK;
    for (int b0 = 0; b0 < n && st == DDX_OK; b0 += B) {
        const int nb = n - b0 < B ? n - b0 : B;
        const int64_t xshape[4] = {nb, H, W, C}, nshape[1] = {nb};
        const uint64_t off = (uint64_t)b0 * (uint64_t)hwc;
        const size_t xbytes = (size_t)(nb * hwc) * sizeof(float);
        ddx_ctx_reset(c);
        const ddx_rng_key k0 = {.seed = o->seed, .stream = DDX_RNG_STREAM_SAMPLER, .step = 0, .offset = off};
        ddx_tensor *xT = ddx_randn(c, DDX_F32, 4, xshape, k0);
        if ((st = ddx_ctx_status(c)) != DDX_OK) break;
        memcpy(xbuf, xT->data, xbytes);
        for (int k = 1; k <= S && st == DDX_OK; k++) {
            const int t = ts[k - 1], t_prev = k < S ? ts[k] : -1;
            ddx_sampler_step_params p = ddx_sampler_coefs(s, o->sampler, t, t_prev, o->eta);
            p.key = (ddx_rng_key){.seed = o->seed, .stream = DDX_RNG_STREAM_SAMPLER, .step = (uint32_t)k, .offset = off};
            ddx_ctx_reset(c);
            ddx_tensor *tt = ddx_fill(c, DDX_F32, 1, nshape, (float)t);
            ddx_tensor *yc = ddx_new(c, DDX_I32, 1, nshape), *yu = ddx_new(c, DDX_I32, 1, nshape);
            ddx_tensor *x = ddx_meta_tensor(c);
            if (!yc || !yu || !x) {
                st = DDX_E_NOMEM;
                break;
            }
            memcpy(yc->data, y + b0, (size_t)nb * sizeof(int32_t));
            for (int i = 0; i < nb; i++) ((int32_t *)yu->data)[i] = cfg->model.num_classes;
            *x = ddx_tensor_wrap(xbuf, DDX_F32, DDX_CPU, 4, xshape);
            ddx_tensor *pc = ddx_model_forward(c, m, x, tt, yc);
            if ((st = ddx_ctx_status(c)) != DDX_OK) break;
            memcpy(ec, pc->data, xbytes);
            ddx_tensor *pu = ddx_model_forward(c, m, x, tt, yu);
            if ((st = ddx_ctx_status(c)) != DDX_OK) break;
            float *e = pu->data;
            for (int64_t i = 0; i < nb * hwc; i++) e[i] = (float)((double)e[i] + w * ((double)ec[i] - (double)e[i]));
            ddx_tensor *xp = ddx_sampler_step(c, x, pu, &p);
            if ((st = ddx_ctx_status(c)) != DDX_OK) break;
            memcpy(xbuf, xp->data, xbytes);
        }
        if (st == DDX_OK) memcpy(out + off, xbuf, xbytes);
    }
    ddx_ctx_reset(c);
    free(ec);
    free(xbuf);
    free(ts);
    return st;
}

static void test_guidance_unet(ddx_ctx *c) {
    enum { NC = 3, N = 5, PER = 8 * 8 * 3 };
    ddx_param_store ps;
    ddx_model *m = NULL;
    if (tiny_unet(NC, 3, 3, &ps, &m) != DDX_OK) {
        CHECK(0, "tiny conditional unet: %s", ddx_last_error());
        return;
    }
    ddx_schedule s;
    make_schedule(&s, 40);
    const int32_t y[N] = {2, 0, 1, 1, NC}, ynull[N] = {NC, NC, NC, NC, NC};
    const struct { ddx_sampler smp; int steps, batch; double eta, w; } cases[] = {
        {DDX_SAMPLER_DDIM, 6, 2, 1.0, 3.0}, {DDX_SAMPLER_DDIM, 5, 3, 0.0, 7.5}, {DDX_SAMPLER_DDPM, 0, 4, 0.0, 2.0}};
    for (size_t j = 0; j < sizeof cases / sizeof cases[0]; j++) {
        ddx_sample_opts o = {.sampler = cases[j].smp, .steps = cases[j].steps, .eta = cases[j].eta,
                             .spacing = DDX_SPACING_UNIFORM, .seed = 31, .batch = cases[j].batch, .graphs = true};
        float fused[N * PER], ref[N * PER];
        ddx_sampling *sp = NULL;
        ddx_status st = ddx_sampling_create(m, &s, &o, DDX_CPU, &sp);
        if (st == DDX_OK) st = ddx_sampling_set_guidance(sp, cases[j].w);
        if (st == DDX_OK) st = ddx_sampling_run(sp, N, y, NULL, fused, NULL, NULL);
        ddx_sampling_free(sp);
        if (st == DDX_OK) st = two_forward_sample(c, m, &s, &o, cases[j].w, N, y, ref);
        CHECK(st == DDX_OK, "guided case %zu: %s", j, ddx_last_error());
        // fp32: the fused combine rounds u + w (c - u) in three float steps, the reference once
        // from double; the difference is a few ulps of eps per step, carried through the steps.
        double worst = 0.0;
        for (int i = 0; i < N * PER; i++) {
            const double d = fabs((double)fused[i] - (double)ref[i]) / (1.0 + fabs((double)ref[i]));
            worst = d > worst || d != d ? d : worst;
        }
        CHECK(finite_all(fused, N * PER) && worst < 2e-5, "guided case %zu (%s, batch %d, w %g): fused vs two forwards: %g",
              j, cases[j].smp == DDX_SAMPLER_DDIM ? "ddim" : "ddpm", cases[j].batch, cases[j].w, worst);
        // w = 0 with a real network: the unconditional half of the doubled batch is exactly the
        // null-class sample (a row of the forward does not depend on the rows beside it).
        float g0[N * PER], un[N * PER];
        st = ddx_sampling_create(m, &s, &o, DDX_CPU, &sp);
        if (st == DDX_OK) st = ddx_sampling_set_guidance(sp, 0.0);
        if (st == DDX_OK) st = ddx_sampling_run(sp, N, y, NULL, g0, NULL, NULL);
        ddx_sampling_free(sp);
        if (st == DDX_OK) st = new_sample(m, &s, &o, N, ynull, NULL, un);
        CHECK(st == DDX_OK && memcmp(g0, un, sizeof g0) == 0, "guided case %zu: w = 0 is not the null-class sample bit for bit%s%s",
              j, st ? ": " : "", st ? ddx_last_error() : "");
    }
    ddx_schedule_free(&s);
    ddx_model_free(m);
    ddx_param_store_free(&ps);
}

// The op alone: the guided step over [x_t; doubled output] equals combining first and then
// the plain step, for every coefficient set the sampler uses, and refuses a wrong shape.
static void test_guided_op(ddx_ctx *c) {
    enum { N = 3, PER = 5 * 3 * 2 };
    ddx_schedule s;
    make_schedule(&s, 50);
    ddx_ctx_reset(c);
    const int64_t xs[4] = {N, 5, 3, 2}, ds[4] = {2 * N, 5, 3, 2};
    ddx_tensor *x = ddx_new(c, DDX_F32, 4, xs), *o2 = ddx_new(c, DDX_F32, 4, ds), *mix = ddx_new(c, DDX_F32, 4, xs);
    if (!x || !o2 || !mix) {
        CHECK(0, "op tensors: %s", ddx_last_error());
        return;
    }
    float *xd = x->data, *od = o2->data, *md = mix->data;
    for (int i = 0; i < N * PER; i++) xd[i] = sinf(0.7f * (float)i);
    for (int i = 0; i < 2 * N * PER; i++) od[i] = cosf(0.3f * (float)i + 0.1f);
    const float ws[] = {0.0f, 1.0f, 3.0f, 7.5f};
    const struct { ddx_sampler smp; int t, t_prev; double eta; } st_[] = {
        {DDX_SAMPLER_DDPM, 30, 29, 0.0}, {DDX_SAMPLER_DDIM, 30, 20, 0.0}, {DDX_SAMPLER_DDIM, 30, 20, 1.0}, {DDX_SAMPLER_DDIM, 5, -1, 0.0}};
    for (size_t a = 0; a < sizeof ws / sizeof ws[0]; a++)
        for (size_t b = 0; b < sizeof st_ / sizeof st_[0]; b++) {
            ddx_sampler_step_params p = ddx_sampler_coefs(&s, st_[b].smp, st_[b].t, st_[b].t_prev, st_[b].eta);
            p.key = (ddx_rng_key){.seed = 4, .stream = DDX_RNG_STREAM_SAMPLER, .step = 2, .offset = 7};
            for (int i = 0; i < N * PER; i++) {
                const double u = od[N * PER + i], cc = od[i];
                md[i] = (float)(u + (double)ws[a] * (cc - u));
            }
            ddx_tensor *ref = ddx_sampler_step(c, x, mix, &p);
            ddx_sampler_step_params pg = p;
            pg.guided = true;
            pg.guidance = ws[a];
            ddx_tensor *got = ddx_sampler_step(c, x, o2, &pg);
            CHECK(ref && got, "guided op w %g: %s", (double)ws[a], ddx_last_error());
            if (!ref || !got) return;
            double worst = 0.0;
            for (int i = 0; i < N * PER; i++) {
                const double d = fabs((double)((float *)got->data)[i] - (double)((float *)ref->data)[i]) /
                                 (1.0 + fabs((double)((float *)ref->data)[i]));
                worst = d > worst || d != d ? d : worst;
            }
            CHECK(worst < 1e-5, "guided op w %g step %zu: fused vs combined-first: %g", (double)ws[a], b, worst);
            // w = 0 reads the unconditional half exactly.
            if (ws[a] == 0.0f) {
                ddx_tensor uh = ddx_tensor_slice(o2, N, 2 * N);
                ddx_tensor *un = ddx_sampler_step(c, x, &uh, &p);
                CHECK(un && memcmp(un->data, got->data, (size_t)(N * PER) * sizeof(float)) == 0,
                      "guided op w 0 step %zu is not the unconditional step bit for bit", b);
            }
        }
    ddx_sampler_step_params p = ddx_sampler_coefs(&s, DDX_SAMPLER_DDIM, 30, 20, 0.0);
    p.guided = true;
    p.guidance = 2.0f;
    CHECK(!ddx_sampler_step(c, x, mix, &p) && ddx_ctx_status(c) == DDX_E_INPUT && strstr(ddx_last_error(), "doubled"),
          "a guided step over an undoubled output accepted: %s", ddx_last_error());
    ddx_ctx_reset(c);
    x = ddx_new(c, DDX_F32, 4, xs), o2 = ddx_new(c, DDX_F32, 4, ds);
    p.guidance = NAN;
    CHECK(!ddx_sampler_step(c, x, o2, &p) && ddx_ctx_status(c) == DDX_E_INPUT, "a NaN guidance scale accepted");
    ddx_ctx_reset(c);
    ddx_schedule_free(&s);
}

// ---- 3. the post-step hook: an inpainting blend -------------------------------------------------
typedef struct blend {
    const float *known, *mask;   // [n, H, W, C] host
    int64_t per;
    int calls, last_k, bad;
    int64_t i0_seen[4];
    int n_i0;
} blend;

static ddx_tensor *blend_hook(ddx_ctx *c, ddx_tensor *x, int k, int t, int t_prev, int64_t i0, void *user) {
    blend *b = user;
    const int64_t nb = x->shape[0];
    if (k == 1 && b->n_i0 < 4) b->i0_seen[b->n_i0++] = i0;
    if (k != (k == 1 ? 1 : b->last_k + 1) || t <= t_prev || (k == 6) != (t_prev == -1)) b->bad++;
    b->last_k = k;
    b->calls++;
    ddx_tensor *kn = ddx_new(c, DDX_F32, 4, x->shape), *m = ddx_new(c, DDX_F32, 4, x->shape);   // [nb, H, W, C]
    if (!kn || !m) return NULL;
    memcpy(kn->data, b->known + i0 * b->per, (size_t)(nb * b->per) * sizeof(float));
    memcpy(m->data, b->mask + i0 * b->per, (size_t)(nb * b->per) * sizeof(float));
    // x = m * known + (1 - m) * x
    return ddx_add(c, ddx_mul(c, m, kn), ddx_mul(c, ddx_scale(c, m, -1.0f, 1.0f), x));
}

static void test_post_step(void) {
    ddx_param_store ps;
    ddx_model *m = NULL;
    if (tiny_unet(0, 3, 3, &ps, &m) != DDX_OK) {
        CHECK(0, "tiny unet: %s", ddx_last_error());
        return;
    }
    enum { N = 3, PER = 8 * 8 * 3 };
    ddx_schedule s;
    make_schedule(&s, 40);
    ddx_sample_opts o = {.sampler = DDX_SAMPLER_DDIM, .steps = 6, .eta = 1.0, .seed = 3, .batch = 2, .graphs = true};
    float known[N * PER], mask[N * PER], out[N * PER], plain[N * PER];
    for (int i = 0; i < N * PER; i++) {
        const int w = (i / 3) % 8;   // NHWC: the column of element i
        known[i] = 0.25f * (float)((i * 7) % 9) / 9.0f - 0.1f;
        mask[i] = w < 4 ? 1.0f : 0.0f;
    }
    blend b = {.known = known, .mask = mask, .per = PER};
    ddx_sampling *sp = NULL;
    ddx_status st = ddx_sampling_create(m, &s, &o, DDX_CPU, &sp);
    if (st == DDX_OK) ddx_sampling_set_post_step(sp, blend_hook, &b);
    if (st == DDX_OK) st = ddx_sampling_run(sp, N, NULL, NULL, out, NULL, NULL);
    CHECK(st == DDX_OK, "post-step run: %s", ddx_last_error());
    const int S = sp ? ddx_sampling_steps(sp) : 0;
    CHECK(S == 6 && b.calls == 2 * S && b.bad == 0, "hook calls %d (want %d), %d with wrong k/t/t_prev", b.calls, 2 * S, b.bad);
    CHECK(b.n_i0 == 2 && b.i0_seen[0] == 0 && b.i0_seen[1] == 2, "hook batch offsets %lld, %lld; want 0, 2",
          (long long)b.i0_seen[0], (long long)b.i0_seen[1]);
    int known_bad = 0, free_same = 0;
    for (int i = 0; i < N * PER; i++) {
        if (mask[i] == 1.0f) known_bad += memcmp(&out[i], &known[i], sizeof(float)) != 0;
        else free_same += out[i] == known[i];
    }
    CHECK(known_bad == 0, "%d known pixels are not the known image after the last blend", known_bad);
    CHECK(free_same < 8 && finite_all(out, N * PER), "the unknown region was overwritten (%d pixels equal the known image)",
          free_same);
    // Without the hook the sampler is the plain one again.
    ddx_sampling_set_post_step(sp, NULL, NULL);
    if (st == DDX_OK) st = ddx_sampling_run(sp, N, NULL, NULL, plain, NULL, NULL);
    CHECK(st == DDX_OK && memcmp(plain, out, sizeof out) != 0 && b.calls == 2 * S, "removing the hook: %s",
          st ? ddx_last_error() : "the hook still ran or changed nothing");
    ddx_sampling_free(sp);
    ddx_schedule_free(&s);
    ddx_model_free(m);
    ddx_param_store_free(&ps);
}

// ---- 4. a conditioning input -------------------------------------------------------------------
static void test_conditioning(ddx_ctx *c) {
    ddx_param_store ps;
    ddx_model *m = NULL;
    if (tiny_unet(0, 3 + 2, 3, &ps, &m) != DDX_OK) {
        CHECK(0, "tiny unet with 5 input channels: %s", ddx_last_error());
        return;
    }
    enum { N = 3, PER = 8 * 8 * 3, PERC = 8 * 8 * 2 };
    ddx_schedule s;
    make_schedule(&s, 40);
    ddx_sample_opts o = {.sampler = DDX_SAMPLER_DDIM, .steps = 5, .eta = 1.0, .seed = 5, .batch = 2};
    float cond[N * PERC], cond2[N * PERC], a[N * PER], b[N * PER], d[N * PER];
    for (int i = 0; i < N * PERC; i++) cond[i] = sinf(0.37f * (float)i), cond2[i] = -cond[i];
    ddx_status st = new_sample(m, &s, &o, N, NULL, cond, a);
    CHECK(st == DDX_OK, "conditioned sampling: %s", ddx_last_error());
    st = old_sample(c, m, &s, &o, N, NULL, cond, b);
    CHECK(st == DDX_OK && finite_all(a, N * PER) && memcmp(a, b, sizeof a) == 0,
          "conditioned sampling differs from the reference loop with the same concat");
    st = new_sample(m, &s, &o, N, NULL, cond2, d);
    CHECK(st == DDX_OK && memcmp(a, d, sizeof a) != 0, "another conditioning input gave the same images");
    CHECK(new_sample(m, &s, &o, N, NULL, NULL, d) == DDX_E_INPUT && strstr(ddx_last_error(), "conditioning"),
          "no conditioning input accepted: %s", ddx_last_error());
    ddx_schedule_free(&s);
    ddx_model_free(m);
    ddx_param_store_free(&ps);
}

// ---- 5. the graph helper on the CPU ------------------------------------------------------------
static int body_calls, body_captured;
static ddx_status count_body(ddx_ctx *c, bool captured, void *arg) {
    body_calls++;
    body_captured += captured;
    const float *in = arg;
    return in[0] == (float)body_calls && c->n_nodes == 0 ? DDX_OK : ddx_errorf(DDX_E_INTERNAL, "inputs or reset wrong");
}

static void test_graph_cpu(ddx_ctx *c) {
    ddx_graph_step g;
    ddx_status st = ddx_graph_step_init(&g, c, true, 64, "test step");
    CHECK(st == DDX_OK && !g.graphs, "a CPU graph step: %s", st ? ddx_last_error() : "graphs claimed on the CPU");
    for (int k = 1; k <= 4 && st == DDX_OK; k++) {
        float *h = NULL;
        st = ddx_graph_step_inputs(&g, (void **)&h);
        if (st == DDX_OK) h[0] = (float)k;
        if (st == DDX_OK) st = ddx_graph_step_run(&g, c, 64, count_body, ddx_graph_step_inputs_dev(&g));
        if (k == 2) st = st ? st : ddx_graph_step_invalidate(&g, c);
    }
    CHECK(st == DDX_OK && body_calls == 4 && body_captured == 0 && g.replays == 0 && g.eager_runs == 2,
          "CPU graph step: %d calls, %d captured, %lld replays, %d eager since invalidate: %s", body_calls, body_captured,
          (long long)g.replays, g.eager_runs, st ? ddx_last_error() : "");
    ddx_graph_step_free(&g, c);
}

// ---- 6. a sampler in the caller's context ------------------------------------------------------
// The trainer's grids run in the training context: the same images as a sampler with its own
// context, and the context's mode flags and seed come back as they were.
static void test_borrowed_ctx(ddx_ctx *c) {
    ddx_param_store ps;
    ddx_model *m = NULL;
    ddx_status st = tiny_unet(0, 3, 3, &ps, &m);
    CHECK(st == DDX_OK, "tiny unet: %s", ddx_last_error());
    if (st != DDX_OK) return;
    ddx_schedule s;
    make_schedule(&s, 40);
    enum { N = 3, PER = 8 * 8 * 3 };
    ddx_sample_opts o = {.sampler = DDX_SAMPLER_DDIM, .steps = 4, .eta = 1.0, .spacing = DDX_SPACING_UNIFORM, .seed = 5,
                         .batch = 2, .graphs = true};
    float a[N * PER], b[N * PER];
    ddx_ctx_set_grad(c, true);
    ddx_ctx_set_training(c, true);
    ddx_ctx_set_seed(c, 1234);
    ddx_sampling *sp = NULL;
    st = ddx_sampling_create_in(m, &s, &o, c, &sp);
    for (int rep = 0; rep < 2 && st == DDX_OK; rep++) st = ddx_sampling_run(sp, N, NULL, NULL, a, NULL, NULL);
    CHECK(st == DDX_OK, "borrowed-context sampler: %s", ddx_last_error());
    CHECK(c->grad_enabled && c->training && c->seed == 1234 && c->n_nodes == 0,
          "the borrowed context's flags are restored and its tape is empty");
    // Its own buffers (x for 2 images, the step inputs) are a few KiB; an own context's arena
    // alone starts at 16 MiB.
    CHECK(ddx_sampling_bytes(sp) < 65536, "a borrowing sampler holds %zu bytes: an arena of its own?",
          ddx_sampling_bytes(sp));
    ddx_sampling_free(sp);
    st = new_sample(m, &s, &o, N, NULL, NULL, b);
    CHECK(st == DDX_OK && finite_all(a, N * PER) && memcmp(a, b, sizeof a) == 0,
          "borrowed and own contexts give the same images");
    ddx_ctx_set_grad(c, false);
    ddx_ctx_set_training(c, false);
    ddx_schedule_free(&s);
    ddx_model_free(m);
    ddx_param_store_free(&ps);
}

int main(void) {
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)16 << 20) != DDX_OK) {
        printf("ctx init: %s\n", ddx_last_error());
        return 1;
    }
    test_matches_old_loop(&c);
    test_guidance();
    test_guidance_unet(&c);
    test_guided_op(&c);
    test_post_step();
    test_conditioning(&c);
    test_graph_cpu(&c);
    test_borrowed_ctx(&c);
    ddx_ctx_free(&c);
    return ddx_test_finish("test_sampler");
}
