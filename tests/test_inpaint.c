// Inpainting: masks (models/mask.c), the fused blend of the sampler_step op, the sampler's
// inpainting and RePaint modes (models/sampler.c), and PNG input (runtime/image.c).
//   - masks: every kind deterministic by (seed, image index), covering what it says (fill
//     fractions within the documented bounds), bad specs and bad mask files refused;
//   - the op: ddx_sampler_step_blend equals the plain update followed by the blend formula
//     computed here in double from the Philox draws (binary and soft masks, offsets on and off
//     the Philox groups); with the last step's (1, 0) the kept pixels are the known image;
//   - the sampler (a stand-in model out = 0.5 x + 0.01 t, so every step can be recomputed
//     here): after every update the composite equals the reference formula, the known pixels
//     of the result equal the input exactly, an all-keep mask returns the image, batch size
//     does not change a bit (DDPM, DDIM and RePaint); a class-conditional model (with and without
//     guidance) keeps the known pixels exactly and its labels steer the fill;
//   - RePaint: ddx_repaint_schedule equals tests/data/inpaint/repaint_schedules.txt (made by
//     tests/reference/make_repaint_schedule.py from the paper's description), and the sampler
//     runs the denoising updates of that schedule in order.
// With --cuda (gpu suite): the same sampler runs on the GPU with CUDA graphs and must give the
// CPU's images; exits 77 (SKIP) without a GPU.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "models/mask.h"
#include "models/model_impl.h"
#include "models/sampler.h"
#include "runtime/image.h"
#include "runtime/cuda.h"
#include "runtime/op_impl.h"
#include "runtime/philox.h"

// ---- masks ---------------------------------------------------------------------------------
static int64_t filled(const uint8_t *m, int h, int w) { return (int64_t)h * w - ddx_mask_kept(m, h, w); }

static void test_masks(void) {
    const int sizes[][2] = {{28, 28}, {32, 32}, {8, 8}, {7, 12}, {64, 48}};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int h = sizes[si][0], w = sizes[si][1];
        const int64_t np = (int64_t)h * w;
        uint8_t *a = malloc((size_t)np), *b = malloc((size_t)np);
        ddx_mask_spec sp;
        // Fixed kinds: exact fractions.
        CHECK(ddx_mask_parse("center", "--mask", &sp) == DDX_OK, "parse center");
        CHECK(ddx_mask_make(&sp, "--mask", h, w, 1, 0, a) == DDX_OK, "center");
        CHECK(filled(a, h, w) == (int64_t)(h / 2) * (w / 2), "center %dx%d fills %lld", h, w, (long long)filled(a, h, w));
        CHECK(a[(size_t)(h / 2) * w + w / 2] == 0 && a[0] == 1, "center fills the middle and keeps the corner");
        const char *halves[] = {"half:left", "half:right", "half:top", "half:bottom"};
        for (int k = 0; k < 4; k++) {
            CHECK(ddx_mask_parse(halves[k], "--mask", &sp) == DDX_OK, "parse %s", halves[k]);
            CHECK(ddx_mask_make(&sp, "--mask", h, w, 1, 0, a) == DDX_OK, "%s", halves[k]);
            const int64_t want = k < 2 ? (int64_t)(w / 2) * h : (int64_t)(h / 2) * w;
            CHECK(filled(a, h, w) == want, "%s %dx%d fills %lld, want %lld", halves[k], h, w, (long long)filled(a, h, w),
                  (long long)want);
            // The named half: its corner pixel is filled, the opposite corner kept.
            const size_t in = k == 0 ? 0 : k == 1 ? (size_t)w - 1 : k == 2 ? 0 : (size_t)(h - 1) * w;
            const size_t out = k == 0 ? (size_t)w - 1 : k == 1 ? 0 : k == 2 ? (size_t)(h - 1) * w : 0;
            CHECK(a[in] == 0 && a[out] == 1, "%s fills its side", halves[k]);
        }
        CHECK(ddx_mask_parse("box:1,2,3,4", "--mask", &sp) == DDX_OK, "parse box");
        CHECK(ddx_mask_make(&sp, "--mask", h, w, 1, 0, a) == DDX_OK, "given box");
        CHECK(filled(a, h, w) == 12 && a[(size_t)2 * w + 1] == 0 && a[(size_t)5 * w + 3] == 0 && a[(size_t)6 * w + 1] == 1 &&
                  a[(size_t)2 * w + 4] == 1,
              "box:1,2,3,4 fills exactly x 1..3, y 2..5");
        // Random kinds: deterministic by (seed, index), different across them, within bounds.
        const char *rnd[] = {"box", "strokes"};
        for (int k = 0; k < 2; k++) {
            CHECK(ddx_mask_parse(rnd[k], "--mask", &sp) == DDX_OK, "parse %s", rnd[k]);
            int differ = 0;
            double mean = 0;
            for (int s = 0; s < 40; s++) {
                CHECK(ddx_mask_make(&sp, "--mask", h, w, 1234, s, a) == DDX_OK, "%s", rnd[k]);
                CHECK(ddx_mask_make(&sp, "--mask", h, w, 1234, s, b) == DDX_OK, "%s again", rnd[k]);
                CHECK(!memcmp(a, b, (size_t)np), "%s %dx%d: the same seed and index give the same mask", rnd[k], h, w);
                CHECK(ddx_mask_make(&sp, "--mask", h, w, 1235, s, b) == DDX_OK, "%s other seed", rnd[k]);
                differ += memcmp(a, b, (size_t)np) != 0;
                const int64_t f = filled(a, h, w);
                mean += (double)f / (double)np / 40.0;
                if (k == 0) {
                    const int64_t lo = (int64_t)(h / 4 > 1 ? h / 4 : 1) * (w / 4 > 1 ? w / 4 : 1);
                    const int64_t hi = (int64_t)(h / 2) * (w / 2);
                    CHECK(f >= lo && f <= hi, "box %dx%d seed %d fills %lld, outside [%lld, %lld]", h, w, s, (long long)f,
                          (long long)lo, (long long)hi);
                } else {
                    CHECK(f >= 1 && f <= np * 3 / 4, "strokes %dx%d seed %d fills %lld of %lld", h, w, s, (long long)f,
                          (long long)np);
                }
            }
            CHECK(differ >= 35, "%s %dx%d: another seed changes the mask (%d of 40 differ)", rnd[k], h, w, differ);
            if (k == 1 && h >= 28)
                CHECK(mean > 0.05 && mean < 0.6, "strokes %dx%d fill %.3f of the image on average", h, w, mean);
        }
        free(a);
        free(b);
    }
    // The index is a key, not a sequence position: image 5 alone equals image 5 of a run.
    ddx_mask_spec sp;
    uint8_t a[28 * 28], b[28 * 28];
    ddx_mask_parse("strokes", "--mask", &sp);
    ddx_mask_make(&sp, "--mask", 28, 28, 9, 5, a);
    for (int i = 0; i < 5; i++) ddx_mask_make(&sp, "--mask", 28, 28, 9, i, b);
    ddx_mask_make(&sp, "--mask", 28, 28, 9, 5, b);
    CHECK(!memcmp(a, b, sizeof a), "strokes: image 5's mask does not depend on the masks made before it");

    // Bad specs.
    const char *bad[] = {"", "boxes", "box:1,2,3", "box:1,2,3,4,5", "box:a,b,c,d", "half:middle", "file:", "circle"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(ddx_mask_parse(bad[i], "--mask", &sp) == DDX_E_INPUT, "'%s' is refused", bad[i]);
    const char *badbox[] = {"box:0,0,28,28", "box:20,0,9,4", "box:0,0,0,4", "box:-1,0,3,3", "box:0,27,3,2"};
    for (size_t i = 0; i < sizeof badbox / sizeof badbox[0]; i++) {
        CHECK(ddx_mask_parse(badbox[i], "--mask", &sp) == DDX_OK, "parse %s", badbox[i]);
        CHECK(ddx_mask_make(&sp, "--mask", 28, 28, 1, 0, a) == DDX_E_INPUT, "%s on 28x28 is refused", badbox[i]);
    }
}

// Mask files: white keeps, black fills; other sizes, colour, all-keep, all-fill refused.
static void test_mask_files(void) {
    char dir[] = "/tmp/ddx_inpaint_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    char p[256];
    float img[8 * 8 * 3];
    for (int i = 0; i < 64; i++) img[i] = (i % 8) < 3 ? -1.0f : 1.0f;   // left 3 columns black
    snprintf(p, sizeof p, "%s/m.png", dir);
    CHECK(ddx_image_write(p, img, 8, 8, 1, DDX_NORMALIZE_CLIP, NULL) == DDX_OK, "write mask png");
    char spec[300];
    snprintf(spec, sizeof spec, "file:%s", p);
    ddx_mask_spec sp;
    uint8_t m[128];   // room for the 8x9 request below
    CHECK(ddx_mask_parse(spec, "--mask", &sp) == DDX_OK, "parse file:");
    CHECK(ddx_mask_make(&sp, "--mask", 8, 8, 1, 0, m) == DDX_OK, "read mask file: %s", ddx_last_error());
    int ok = 1;
    for (int i = 0; i < 64; i++) ok &= m[i] == ((i % 8) < 3 ? 0 : 1);
    CHECK(ok, "file mask: black fills, white keeps");
    CHECK(ddx_mask_make(&sp, "--mask", 8, 9, 1, 0, m) == DDX_E_INPUT, "file mask of another size is refused");
    // Colour.
    for (int i = 0; i < 64 * 3; i++) img[i] = (i / 3 % 8) < 3 ? -1.0f : 1.0f;
    snprintf(p, sizeof p, "%s/rgb.png", dir);
    ddx_image_write(p, img, 8, 8, 3, DDX_NORMALIZE_CLIP, NULL);
    snprintf(spec, sizeof spec, "file:%s", p);
    ddx_mask_parse(spec, "--mask", &sp);
    CHECK(ddx_mask_make(&sp, "--mask", 8, 8, 1, 0, m) == DDX_E_INPUT, "RGB mask file is refused");
    CHECK(strstr(ddx_last_error(), "RGB") != NULL, "the message says the file is RGB: %s", ddx_last_error());
    // All keep / all fill.
    for (int v = 0; v < 2; v++) {
        for (int i = 0; i < 64; i++) img[i] = v ? 1.0f : -1.0f;
        snprintf(p, sizeof p, "%s/flat%d.png", dir, v);
        ddx_image_write(p, img, 8, 8, 1, DDX_NORMALIZE_CLIP, NULL);
        snprintf(spec, sizeof spec, "file:%s", p);
        ddx_mask_parse(spec, "--mask", &sp);
        CHECK(ddx_mask_make(&sp, "--mask", 8, 8, 1, 0, m) == DDX_E_INPUT, "an all-%s mask file is refused",
              v ? "keep" : "fill");
    }
    // Not a PNG, missing, a folder.
    snprintf(p, sizeof p, "%s/junk.png", dir);
    FILE *f = fopen(p, "w");
    fputs("not a png", f);
    fclose(f);
    uint8_t px[64 * 3];
    CHECK(ddx_image_read_u8(p, "--image", 8, 8, 1, px) == DDX_E_INPUT, "a non-PNG is refused");
    snprintf(p, sizeof p, "%s/missing.png", dir);
    CHECK(ddx_image_read_u8(p, "--image", 8, 8, 1, px) != DDX_OK, "a missing file is refused");
    CHECK(ddx_image_read_u8(dir, "--image", 8, 8, 1, px) == DDX_E_INPUT, "a folder is refused");
    // An RGB image read as RGB: exact bytes back.
    snprintf(p, sizeof p, "%s/rgb.png", dir);
    CHECK(ddx_image_read_u8(p, "--image", 8, 8, 3, px) == DDX_OK, "read RGB");
    CHECK(px[0] == 0 && px[3 * 3] == 255, "RGB pixels read back");
    const char *names[] = {"m.png", "rgb.png", "flat0.png", "flat1.png", "junk.png"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

// ---- the fused op against the formula ---------------------------------------------------------
static double blend_ref(double m, double kn, double v) { return m == 1.0 ? kn : m == 0.0 ? v : m * kn + (1.0 - m) * v; }

static void test_op(void) {
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)4 << 20) != DDX_OK) {
        CHECK(0, "ctx");
        return;
    }
    ddx_ctx_set_grad(&c, false);
    const int64_t shapes[][4] = {{2, 5, 7, 3}, {3, 4, 4, 1}};
    const uint64_t offsets[] = {0, 7, 3072};
    const float kcs[][2] = {{0.8f, 0.6f}, {1.0f, 0.0f}};
    for (int si = 0; si < 2; si++)
        for (int oi = 0; oi < 3; oi++)
            for (int ki = 0; ki < 2; ki++)
                for (int soft = 0; soft < 2; soft++) {
                    ddx_ctx_reset(&c);
                    const int64_t *sh = shapes[si], n = sh[0] * sh[1] * sh[2] * sh[3];
                    ddx_tensor *x = ddx_new(&c, DDX_F32, 4, sh), *o = ddx_new(&c, DDX_F32, 4, sh);
                    ddx_tensor *kn = ddx_new(&c, DDX_F32, 4, sh), *mk = ddx_new(&c, DDX_F32, 4, sh);
                    ddx_philox_normal(ddx_f32(x), n, 1, 7, 1, 0);
                    ddx_philox_normal(ddx_f32(o), n, 1, 7, 2, 0);
                    ddx_philox_uniform(ddx_f32(kn), n, 1, 7, 3, 0);
                    float *mm = ddx_f32(mk);
                    ddx_philox_uniform(mm, n, 1, 7, 4, 0);
                    for (int64_t i = 0; i < n; i++) {
                        ddx_f32(kn)[i] = 2.0f * ddx_f32(kn)[i] - 1.0f;
                        mm[i] = soft ? (mm[i] < 0.3f ? 0.0f : mm[i] < 0.6f ? 1.0f : mm[i]) : (mm[i] < 0.5f ? 0.0f : 1.0f);
                    }
                    ddx_sampler_step_params p = {.a = 3.6935f, .b = -3.5553f, .f = 0.0f, .g = 1.0f, .c = 0.02106f,
                                                 .d = 0.99396f, .e = 0.0f, .sigma = 0.11535f, .clip = true,
                                                 .key = {.seed = 9, .stream = DDX_RNG_STREAM_SAMPLER, .step = 5, .offset = offsets[oi]},
                                                 .kc0 = kcs[ki][0], .kc1 = kcs[ki][1], .known_stream = DDX_RNG_STREAM_INPAINT};
                    ddx_tensor *plain = ddx_sampler_step(&c, x, o, &p);
                    ddx_tensor *bl = ddx_sampler_step_blend(&c, x, o, kn, mk, &p);
                    if (!plain || !bl) {
                        CHECK(0, "op failed: %s", ddx_last_error());
                        continue;
                    }
                    float *z = malloc((size_t)n * sizeof *z);
                    ddx_philox_normal(z, n, 9, DDX_RNG_STREAM_INPAINT, 5, offsets[oi]);
                    double worst = 0;
                    int exact = 1;
                    for (int64_t i = 0; i < n; i++) {
                        const double knv = (double)p.kc0 * ddx_f32(kn)[i] + (double)p.kc1 * z[i];
                        const double ref = blend_ref(mm[i], knv, ddx_f32(plain)[i]);
                        const double err = fabs(ddx_f32(bl)[i] - ref) / (1e-6 + fabs(ref));
                        worst = err > worst ? err : worst;
                        if (ki == 1 && mm[i] == 1.0f) exact &= ddx_f32(bl)[i] == ddx_f32(kn)[i];
                        if (mm[i] == 0.0f) exact &= ddx_f32(bl)[i] == ddx_f32(plain)[i];
                    }
                    CHECK(worst < 1e-5, "blend [%lld,%lld,%lld,%lld] offset %llu kc (%g, %g) %s: rel err %.3g", (long long)sh[0],
                          (long long)sh[1], (long long)sh[2], (long long)sh[3], (unsigned long long)offsets[oi], kcs[ki][0],
                          kcs[ki][1], soft ? "soft" : "binary", worst);
                    CHECK(exact, "blend: generated pixels are the update and, at (1, 0), kept pixels the known image, exactly");
                    free(z);
                }
    // Bad blend inputs.
    ddx_ctx_reset(&c);
    ddx_tensor *x = ddx_fill(&c, DDX_F32, 4, (int64_t[]){1, 2, 2, 1}, 0.5f);
    ddx_tensor *k2 = ddx_fill(&c, DDX_F32, 4, (int64_t[]){1, 2, 2, 2}, 0.5f);
    ddx_sampler_step_params p = {.a = 1.0f, .g = 1.0f, .kc0 = 1.0f};
    CHECK(ddx_sampler_step_blend(&c, x, x, k2, x, &p) == NULL && c.status == DDX_E_INPUT, "a known image of another shape");
    ddx_ctx_reset(&c);
    x = ddx_fill(&c, DDX_F32, 4, (int64_t[]){1, 2, 2, 1}, 0.5f);
    p.kc1 = NAN;
    CHECK(ddx_sampler_step_blend(&c, x, x, x, x, &p) == NULL && c.status == DDX_E_INPUT, "a NaN blend coefficient");
    ddx_ctx_free(&c);
}

// ---- the sampler --------------------------------------------------------------------------
// out = 0.5 x + 0.01 t per row (unconditional): simple enough to recompute every step here.
static ddx_tensor *lin_forward(ddx_ctx *c, const ddx_model *m, ddx_tensor *x, ddx_tensor *t, ddx_tensor *y) {
    (void)m, (void)y;
    if (!x || !t) return NULL;
    const int64_t N = x->shape[0];
    ddx_tensor *tt = ddx_reshape(c, ddx_scale(c, t, 0.01f, 0.0f), 4, (int64_t[]){N, 1, 1, 1});   // [N, 1, 1, 1]
    return ddx_add(c, ddx_scale(c, x, 0.5f, 0.0f), tt);
}

static ddx_model *lin_model(int size, int C) {
    ddx_model *m = calloc(1, sizeof *m);
    ddx_config_defaults(&m->cfg);
    m->cfg.model.image_size = size;
    m->cfg.model.in_channels = m->cfg.model.out_channels = C;
    m->cfg.model.num_classes = 0;
    m->forward = lin_forward;
    return m;
}

// Class-conditional: out = 0.5 x + 0.01 t + 0.1 (label + 1), so the label changes the fill.
static ddx_tensor *label_forward(ddx_ctx *c, const ddx_model *m, ddx_tensor *x, ddx_tensor *t, ddx_tensor *y) {
    if (!x || !t || !y) return NULL;
    const int nc = m->cfg.model.num_classes, C = m->cfg.model.out_channels;
    // nc + 1 rows: row nc is the null class the guided forward's unconditional half uses.
    ddx_tensor *table = ddx_new(c, DDX_F32, 2, (int64_t[]){nc + 1, C});   // [nc + 1, C]
    if (!table) return NULL;
    for (int i = 0; i < (nc + 1) * C; i++) ((float *)table->data)[i] = 0.1f * (float)(i / C + 1);
    const int64_t N = x->shape[0];
    ddx_tensor *e = ddx_reshape(c, ddx_embedding(c, y, table), 4, (int64_t[]){N, 1, 1, C});   // [N, 1, 1, C]
    return ddx_add(c, lin_forward(c, m, x, t, y), e);
}

static void make_inputs(int n, int H, int C, float *known, float *mask, int kind);
static bool known_exact(const float *out, const float *known, const float *mask, int64_t n);

// Inpainting with a class-conditional model, with and without classifier-free guidance: the
// known pixels are the input exactly and the labels steer the filled region.
static void test_conditional(void) {
    const int H = 6, C = 3, n = 4;
    const int64_t tot = (int64_t)n * H * H * C;
    ddx_model *m = lin_model(H, C);
    m->cfg.model.num_classes = 3;
    m->forward = label_forward;
    ddx_schedule s;
    ddx_config cfg;
    ddx_config_defaults(&cfg);
    cfg.diffusion.timesteps = 40;
    ddx_schedule_init(&s, &cfg);
    float *known = malloc((size_t)tot * sizeof(float)), *mask = malloc((size_t)tot * sizeof(float));
    float *a = malloc((size_t)tot * sizeof(float)), *b = malloc((size_t)tot * sizeof(float));
    make_inputs(n, H, C, known, mask, 1);
    const int32_t y0[4] = {0, 0, 0, 0}, y2[4] = {2, 2, 2, 2};
    for (int gi = 0; gi < 2; gi++) {
        const ddx_sample_opts o = {.sampler = DDX_SAMPLER_DDIM, .steps = 8, .eta = 0.0, .spacing = DDX_SPACING_UNIFORM,
                                   .seed = 4, .batch = 3, .graphs = true};
        ddx_sampling *sp = NULL;
        ddx_status st = ddx_sampling_create(m, &s, &o, DDX_CPU, &sp);
        if (!st && gi) st = ddx_sampling_set_guidance(sp, 2.0);
        if (!st) st = ddx_sampling_set_inpaint(sp, known, mask);
        if (!st) st = ddx_sampling_run(sp, n, y0, NULL, a, NULL, NULL);
        if (!st) st = ddx_sampling_run(sp, n, y2, NULL, b, NULL, NULL);
        CHECK(st == DDX_OK, "conditional inpainting%s: %s", gi ? " with guidance" : "", ddx_last_error());
        CHECK(known_exact(a, known, mask, tot) && known_exact(b, known, mask, tot),
              "conditional%s: the known pixels equal the input exactly", gi ? " with guidance" : "");
        int differ = 0;
        for (int64_t i = 0; i < tot; i++) differ += mask[i] == 0.0f && a[i] != b[i];
        CHECK(differ > 0, "conditional%s: another label changes the filled region", gi ? " with guidance" : "");
        ddx_sampling_free(sp);
    }
    free(known), free(mask), free(a), free(b);
    ddx_schedule_free(&s);
    free(m);
}

typedef struct hook_state {
    const ddx_schedule *s;
    ddx_sample_opts o;
    const float *known, *mask;
    int64_t hwc;
    float *prev;          // x before the update, per batch (host)
    int64_t prev_i0;
    double worst;         // composite vs formula
    int calls, order_bad;
    const int *sched;     // RePaint: check the hooked updates follow the schedule
    const int *ts;
    int S, next_k;
    bool check_formula;
} hook_state;

static int st_t(const hook_state *h, int i) { return i >= 0 ? h->ts[h->S - 1 - i] : -1; }

static ddx_tensor *hook(ddx_ctx *c, ddx_tensor *x, int k, int t, int t_prev, int64_t i0, void *user) {
    (void)c;
    hook_state *h = user;
    h->calls++;
    const int64_t nb = x->shape[0], n = nb * h->hwc;
    const float *xv = ddx_f32c(x);
    if (h->sched) {
        // The next denoising update of the schedule.
        int k2 = h->next_k;
        while (h->sched[k2] > h->sched[k2 - 1]) k2++;
        if (k2 != k || t != st_t(h, h->sched[k - 1]) || t_prev != st_t(h, h->sched[k])) h->order_bad++;
        h->next_k = k2 + 1;
        if (t_prev == -1) h->next_k = 1;   // the next batch starts over
    }
    if (h->check_formula) {
        if (k == 1) {
            // x_T of this batch.
            ddx_philox_normal(h->prev, n, h->o.seed, DDX_RNG_STREAM_SAMPLER, 0, (uint64_t)i0 * (uint64_t)h->hwc);
            h->prev_i0 = i0;
        }
        const ddx_sampler_step_params p = ddx_sampler_coefs(h->s, h->o.sampler, t, t_prev, h->o.eta);
        float *zs = malloc((size_t)n * sizeof *zs), *zk = malloc((size_t)n * sizeof *zk);
        const uint64_t off = (uint64_t)i0 * (uint64_t)h->hwc;
        ddx_philox_normal(zs, n, h->o.seed, DDX_RNG_STREAM_SAMPLER, (uint64_t)k, off);
        ddx_philox_normal(zk, n, h->o.seed, DDX_RNG_STREAM_INPAINT, (uint64_t)k, off);
        const double ab = t_prev >= 0 ? h->s->alphas_cumprod[t_prev] : 1.0;
        const double kc0 = t_prev >= 0 ? (double)(float)sqrt(ab) : 1.0, kc1 = t_prev >= 0 ? (double)(float)sqrt(1.0 - ab) : 0.0;
        for (int64_t i = 0; i < n; i++) {
            // The model's output as the model computes it (fp32), then the update in double.
            const double xt = h->prev[i], o = (float)((float)(0.5f * h->prev[i]) + (float)(0.01f * (float)t));
            double x0 = p.a * xt + p.b * o;
            if (p.clip) x0 = x0 < -1 ? -1 : x0 > 1 ? 1 : x0;
            const double eps = p.f * xt + p.g * o;
            const double v = p.c * x0 + p.d * xt + p.e * eps + p.sigma * zs[i];
            const double kn = kc0 * h->known[off + i] + kc1 * zk[i];
            const double ref = blend_ref(h->mask[off + i], kn, v);
            // fp32 tolerance relative to the size of the terms summed (x0 = a x_t + b out can cancel).
            const double scale = fabs(p.c) * (fabs(p.a * xt) + fabs(p.b * o)) + fabs(p.d * xt) +
                                 fabs(p.e) * (fabs(p.f * xt) + fabs(p.g * o)) + fabs(p.sigma * zs[i]) +
                                 fabs(kc0 * h->known[off + i]) + fabs(kc1 * zk[i]) + 1e-6;
            const double err = fabs(xv[i] - ref) / scale;
            h->worst = err > h->worst ? err : h->worst;
        }
        free(zs);
        free(zk);
        memcpy(h->prev, xv, (size_t)n * sizeof *xv);
    }
    return x;
}

typedef struct run_cfg {
    ddx_sampler sampler;
    int steps, batch, resample, jump;
    bool hook, check_formula;
    ddx_device dev;
} run_cfg;

static ddx_status run_inpaint(const ddx_model *m, const ddx_schedule *s, const run_cfg *rc, int n, const float *known,
                              const float *mask, float *out, hook_state *hs) {
    const ddx_sample_opts o = {.sampler = rc->sampler, .steps = rc->steps, .eta = rc->sampler == DDX_SAMPLER_DDIM ? 0.5 : 0.0,
                               .spacing = DDX_SPACING_UNIFORM, .seed = 31, .batch = rc->batch, .graphs = true};
    ddx_sampling *sp = NULL;
    ddx_status st = ddx_sampling_create(m, s, &o, rc->dev, &sp);
    if (!st) st = ddx_sampling_set_inpaint(sp, known, mask);
    if (!st && rc->resample > 1) st = ddx_sampling_set_repaint(sp, rc->resample, rc->jump);
    int *ts = NULL, *sched = NULL;
    if (!st && rc->hook && hs) {
        const int64_t H = m->cfg.model.image_size, C = m->cfg.model.out_channels;
        memset(hs, 0, sizeof *hs);
        hs->s = s, hs->o = o, hs->known = known, hs->mask = mask, hs->hwc = H * H * C;
        hs->prev = malloc((size_t)(rc->batch * hs->hwc) * sizeof(float));
        hs->check_formula = rc->check_formula;
        if (rc->resample > 1) {
            ts = malloc((size_t)s->T * sizeof *ts);
            hs->S = ddx_sampler_timesteps(s, rc->sampler, rc->steps, DDX_SPACING_UNIFORM, ts);
            const int64_t L = ddx_repaint_schedule(hs->S, rc->jump, rc->resample, NULL, 0);
            sched = malloc((size_t)L * sizeof *sched);
            ddx_repaint_schedule(hs->S, rc->jump, rc->resample, sched, L);
            hs->sched = sched, hs->ts = ts, hs->next_k = 1;
        }
        ddx_sampling_set_post_step(sp, hook, hs);
    }
    if (!st) st = ddx_sampling_run(sp, n, NULL, NULL, out, NULL, NULL);
    if (hs && rc->hook) free(hs->prev);
    free(ts);
    free(sched);
    ddx_sampling_free(sp);
    return st;
}

static void make_inputs(int n, int H, int C, float *known, float *mask, int kind) {
    const int64_t hwc = (int64_t)H * H * C;
    ddx_philox_uniform(known, n * hwc, 3, 7, 9, 0);
    for (int64_t i = 0; i < n * hwc; i++) known[i] = 2.0f * known[i] - 1.0f;
    ddx_mask_spec sp;
    ddx_mask_parse(kind == 0 ? "strokes" : kind == 1 ? "half:left" : "center", "test", &sp);
    uint8_t *m = malloc((size_t)H * H);
    for (int i = 0; i < n; i++) {
        ddx_mask_make(&sp, "test", H, H, 5, i, m);
        for (int64_t p = 0; p < (int64_t)H * H; p++)
            for (int ch = 0; ch < C; ch++) mask[i * hwc + p * C + ch] = (float)m[p];
    }
    free(m);
}

static bool known_exact(const float *out, const float *known, const float *mask, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (mask[i] == 1.0f && memcmp(&out[i], &known[i], sizeof(float)) != 0) return false;
    return true;
}

static void test_sampler(void) {
    const int H = 6, C = 3, n = 3;
    const int64_t hwc = H * H * C, tot = n * hwc;
    ddx_model *m = lin_model(H, C);
    ddx_schedule s;
    ddx_config cfg;
    ddx_config_defaults(&cfg);
    cfg.diffusion.timesteps = 40;
    ddx_schedule_init(&s, &cfg);
    float *known = malloc((size_t)tot * sizeof(float)), *mask = malloc((size_t)tot * sizeof(float));
    float *a = malloc((size_t)tot * sizeof(float)), *b = malloc((size_t)tot * sizeof(float));
    const run_cfg cases[] = {
        {DDX_SAMPLER_DDPM, 0, 2, 1, 0, true, true, DDX_CPU},
        {DDX_SAMPLER_DDIM, 10, 3, 1, 0, true, true, DDX_CPU},
        {DDX_SAMPLER_DDIM, 12, 2, 3, 4, true, false, DDX_CPU},   // RePaint
        {DDX_SAMPLER_DDPM, 0, 1, 2, 10, true, false, DDX_CPU},   // RePaint over DDPM
    };
    for (int kind = 0; kind < 3; kind++) {
        make_inputs(n, H, C, known, mask, kind);
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            const run_cfg *rc = &cases[ci];
            hook_state hs;
            ddx_status st = run_inpaint(m, &s, rc, n, known, mask, a, &hs);
            CHECK(st == DDX_OK, "inpaint run %zu: %s", ci, ddx_last_error());
            if (st) continue;
            const char *what = rc->resample > 1 ? "RePaint" : rc->sampler == DDX_SAMPLER_DDIM ? "DDIM" : "DDPM";
            CHECK(known_exact(a, known, mask, tot), "%s mask %d: the known pixels of the result equal the input exactly", what,
                  kind);
            if (rc->check_formula)
                CHECK(hs.worst < 1e-5, "%s mask %d: every step's composite equals the formula (worst err %.3g of the terms)", what,
                      kind, hs.worst);
            if (rc->resample > 1) CHECK(hs.order_bad == 0, "%s: the hooked updates follow the schedule", what);
            // Another batch size: the same bits.
            run_cfg r2 = *rc;
            r2.batch = rc->batch == 1 ? 3 : 1;
            r2.hook = false;
            st = run_inpaint(m, &s, &r2, n, known, mask, b, NULL);
            CHECK(st == DDX_OK && !memcmp(a, b, (size_t)tot * sizeof(float)), "%s mask %d: batch %d and %d give the same bits",
                  what, kind, rc->batch, r2.batch);
            // The generated region did change from the known image (the mask is not all-keep).
            int changed = 0;
            for (int64_t i = 0; i < tot; i++) changed += mask[i] == 0.0f && a[i] != known[i];
            CHECK(changed > 0, "%s: the filled region is generated", what);
        }
    }
    // All keep: the image comes back.
    for (int64_t i = 0; i < tot; i++) mask[i] = 1.0f;
    for (size_t ci = 0; ci < 3; ci++) {
        run_cfg rc = cases[ci];
        rc.hook = false;
        CHECK(run_inpaint(m, &s, &rc, n, known, mask, a, NULL) == DDX_OK && !memcmp(a, known, (size_t)tot * sizeof(float)),
              "all-keep mask returns the image exactly (case %zu)", ci);
    }
    // Bad RePaint settings.
    ddx_sampling *sp = NULL;
    const ddx_sample_opts o = {.sampler = DDX_SAMPLER_DDIM, .steps = 10, .spacing = DDX_SPACING_UNIFORM, .seed = 1, .batch = 1};
    if (ddx_sampling_create(m, &s, &o, DDX_CPU, &sp) == DDX_OK) {
        CHECK(ddx_sampling_set_repaint(sp, 0, 2) == DDX_E_INPUT, "resample 0 refused");
        CHECK(ddx_sampling_set_repaint(sp, 2, 10) == DDX_E_INPUT, "jump >= steps refused");
        CHECK(ddx_sampling_set_repaint(sp, 2, 0) == DDX_E_INPUT, "jump 0 refused");
        CHECK(ddx_sampling_set_repaint(sp, 2, 3) == DDX_OK && ddx_sampling_visits(sp) == 10 + 3 * (1 + 3),
              "visits: 10 steps + 3 jumps (from states 0, 3, 6), each up 1 and down 3 (%d)", ddx_sampling_visits(sp));
        ddx_sampling_free(sp);
    }
    free(known), free(mask), free(a), free(b);
    ddx_schedule_free(&s);
    free(m);
}

// ---- the RePaint schedule against the fixture ------------------------------------------------
static void test_schedule_fixture(void) {
    FILE *f = fopen("data/inpaint/repaint_schedules.txt", "r");
    CHECK(f != NULL, "open data/inpaint/repaint_schedules.txt (run from tests/)");
    if (!f) return;
    static char line[1 << 17];
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        int nn, j, r, used = 0;
        if (sscanf(line, "%d %d %d :%n", &nn, &j, &r, &used) != 3) continue;
        int want[20000], nw = 0;
        for (char *p = line + used, *e; nw < 20000; p = e) {
            long v = strtol(p, &e, 10);
            if (e == p) break;
            want[nw++] = (int)v;
        }
        const int64_t L = ddx_repaint_schedule(nn, j, r, NULL, 0);
        int *got = malloc((size_t)(L > 0 ? L : 1) * sizeof *got);
        ddx_repaint_schedule(nn, j, r, got, L);
        CHECK(L == nw && !memcmp(got, want, (size_t)nw * sizeof(int)), "schedule n %d jump %d resample %d: %lld states, fixture %d",
              nn, j, r, (long long)L, nw);
        free(got);
        cases++;
    }
    fclose(f);
    CHECK(cases >= 9, "the fixture has its 9 cases (%d read)", cases);
    CHECK(ddx_repaint_schedule(0, 1, 1, NULL, 0) == -1 && ddx_repaint_schedule(5, 0, 2, NULL, 0) == -1, "bad arguments");
}

// ---- GPU: the same images with CUDA graphs --------------------------------------------------
static int run_cuda(void) {
    if (!ddx_cuda_available()) {
        printf("SKIP: no CUDA device\n");
        n_skip++;
        return ddx_test_finish("test_inpaint --cuda");
    }
    const int n = 3;
    const int sizes[][2] = {{6, 3}, {5, 3}, {8, 1}};   // 5x5x3: samples not a multiple of 4 elements
    for (int si = 0; si < 3; si++) {
        const int H = sizes[si][0], C = sizes[si][1];
        const int64_t tot = (int64_t)n * H * H * C;
        ddx_model *m = lin_model(H, C);
        ddx_schedule s;
        ddx_config cfg;
        ddx_config_defaults(&cfg);
        cfg.diffusion.timesteps = 40;
        ddx_schedule_init(&s, &cfg);
        float *known = malloc((size_t)tot * sizeof(float)), *mask = malloc((size_t)tot * sizeof(float));
        float *a = malloc((size_t)tot * sizeof(float)), *b = malloc((size_t)tot * sizeof(float));
        make_inputs(n, H, C, known, mask, 0);
        const run_cfg cases[] = {
            {DDX_SAMPLER_DDPM, 0, 2, 1, 0, false, false, DDX_CPU},
            {DDX_SAMPLER_DDIM, 10, 3, 1, 0, false, false, DDX_CPU},
            {DDX_SAMPLER_DDIM, 12, 2, 3, 4, false, false, DDX_CPU},
        };
        for (int ci = 0; ci < 3; ci++) {
            run_cfg rc = cases[ci];
            ddx_status st = run_inpaint(m, &s, &rc, n, known, mask, a, NULL);
            rc.dev = DDX_CUDA;
            if (!st) st = run_inpaint(m, &s, &rc, n, known, mask, b, NULL);
            CHECK(st == DDX_OK, "cuda run: %s", ddx_last_error());
            double worst = 0;
            for (int64_t i = 0; i < tot; i++) {
                const double e = fabs((double)a[i] - b[i]) / (1e-5 + fabs((double)a[i]));
                worst = e > worst ? e : worst;
            }
            CHECK(worst < 1e-4, "size %d C %d case %d: CUDA (graphs) images match the CPU's (worst rel %.3g)", H, C, ci, worst);
            CHECK(known_exact(b, known, mask, tot), "CUDA: the known pixels equal the input exactly");
        }
        free(known), free(mask), free(a), free(b);
        ddx_schedule_free(&s);
        free(m);
    }
    return ddx_test_finish("test_inpaint --cuda");
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--cuda")) return run_cuda();
    test_masks();
    test_mask_files();
    test_op();
    test_sampler();
    test_conditional();
    test_schedule_fixture();
    return ddx_test_finish("test_inpaint");
}
