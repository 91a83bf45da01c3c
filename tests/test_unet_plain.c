// unet_plain against its PyTorch definition (UNetPlain in tests/reference/make_unet_plain_fixtures.py,
// fixture tests/data/unet_plain/unet_plain.safetensors): builds the ddx model from a ddx_config
// with the fixture's settings, loads the weights by name (OIHW in the file -> OHWI in memory),
// runs forward + ddx_mse_loss + ddx_backward on the CPU and compares the output, the loss and the
// gradient of every parameter. Also: parameter count and order equal the PyTorch module's,
// ddx_model_init is a function of the seed, bad ch_mult / bad inputs are DDX_E_INPUT, and
// ddx_config_validate accepts small unet_plain settings.
//
// Usage: test_unet_plain [FIXTURE]   (default data/unet_plain/unet_plain.safetensors, run from tests/)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "models/model_impl.h"
#include "runtime/safetensors.h"

// Tolerances, as max|ddx - ref| / max|ref| per tensor. The reference is float64 on the same
// fp32 inputs (see the fixture script), so these bound ddx's own fp32 error. The network is 13
// layers deep with reductions of up to 9 * 48 = 432 terms per conv output; fp32 rounding of a
// few 1e-8 relative per layer adds up to the ~1e-7 (output, loss) and ~7e-7 (gradients, which
// add the backward chain and, for weight grads, sums over N*H*W positions) measured with
// OpenBLAS. The bounds leave 15-20x headroom for another BLAS's summation order, and stay far
// below what a real defect costs: nearest instead of bilinear upsampling in one decoder level
// errs by 4.5e-5 in the output (the bottleneck path is small at init) and 0.15 in enc3's grads.
#define OUT_RTOL 2e-6
#define LOSS_RTOL 1e-6
#define GRAD_RTOL 1e-5

typedef struct tcase {
    const char *name;   // fixture prefix
    int in_channels, out_channels, ch, ch_mult[3], num_classes, size;
    float t[2];
    int y[2];
    int sr_factor;      // > 0: a super-resolution model (model.cond lowres, in = 2 x out)
} tcase;

static const tcase CASES[] = {
    {"gray", 1, 1, 8, {1, 2, 4}, 0, 16, {3.0f, 517.0f}, {0, 0}, 0},
    {"rgb", 3, 3, 8, {1, 2, 3}, 10, 12, {999.0f, 40.0f}, {10, 2}, 0},   // 10: the null class
    {"sr", 2, 1, 8, {1, 2, 2}, 0, 16, {250.0f, 731.0f}, {0, 0}, 4},
};
#define BATCH 2

static void case_config(const tcase *tc, ddx_config *cfg) {
    ddx_config_defaults(cfg);
    cfg->model.type = DDX_MODEL_TYPE_UNET_PLAIN;
    cfg->model.in_channels = tc->in_channels;
    cfg->model.out_channels = tc->out_channels;
    cfg->model.ch = tc->ch;
    cfg->model.ch_mult.n = 3;
    for (int i = 0; i < 3; i++) cfg->model.ch_mult.v[i] = tc->ch_mult[i];
    cfg->model.num_classes = tc->num_classes;
    cfg->model.image_size = tc->size;
    cfg->data.image_size = tc->size;
    cfg->data.dataset = tc->out_channels == 1 ? DDX_DATASET_FASHION_MNIST : DDX_DATASET_CIFAR10;
    cfg->model.cond = tc->sr_factor > 0 ? DDX_COND_LOWRES : DDX_COND_NONE;
    cfg->data.sr_factor = tc->sr_factor;
}

// Same text as settings_string() in the fixture script: a regenerated fixture with other
// settings fails here instead of as a confusing numeric mismatch.
static void settings_string(const tcase *tc, char *buf, size_t n) {
    snprintf(buf, n, "in_channels=%d;out_channels=%d;ch=%d;ch_mult=%d,%d,%d;num_classes=%d;size=%d;batch=%d",
             tc->in_channels, tc->out_channels, tc->ch, tc->ch_mult[0], tc->ch_mult[1], tc->ch_mult[2], tc->num_classes,
             tc->size, BATCH);
}

// The fixture tensor `<prefix>.<key>` as f32 in ddx layout (4-D NCHW/OIHW [A,B,C,D] -> [A,C,D,B]),
// malloc'd; NULL and a FAIL when missing or not F32 of `want_numel` elements.
static float *fixture_f32(const ddx_st_file *f, const char *prefix, const char *key, int64_t want_numel,
                          int64_t shape_out[4], int *ndim_out) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", prefix, key);
    const ddx_st_tensor *t = ddx_st_find(f, name);
    CHECK(t != NULL, "%s: tensor '%s' is missing (regenerate with tests/reference/make_unet_plain_fixtures.py)", prefix,
          name);
    if (!t) return NULL;
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    CHECK(t->dtype == DDX_ST_F32 && n == want_numel && t->ndim <= 4, "%s: '%s' is %s with %lld elements, expected F32 with %lld",
          prefix, name, ddx_st_dtype_name(t->dtype), (long long)n, (long long)want_numel);
    if (t->dtype != DDX_ST_F32 || n != want_numel || t->ndim > 4) return NULL;
    float *src = malloc((size_t)n * sizeof *src), *dst = malloc((size_t)n * sizeof *dst);
    if (!src || !dst) {
        free(src);
        free(dst);
        CHECK(0, "out of memory");
        return NULL;
    }
    memcpy(src, t->data, (size_t)n * sizeof *src);
    if (t->ndim == 4) {
        const int64_t A = t->shape[0], B = t->shape[1], C = t->shape[2], D = t->shape[3];
        for (int64_t a = 0; a < A; a++)
            for (int64_t b = 0; b < B; b++)
                for (int64_t cc = 0; cc < C; cc++)
                    for (int64_t d = 0; d < D; d++) dst[((a * C + cc) * D + d) * B + b] = src[((a * B + b) * C + cc) * D + d];
        if (shape_out) {
            shape_out[0] = A;
            shape_out[1] = C;
            shape_out[2] = D;
            shape_out[3] = B;
        }
    } else {
        memcpy(dst, src, (size_t)n * sizeof *dst);
        for (int i = 0; shape_out && i < t->ndim; i++) shape_out[i] = t->shape[i];
    }
    if (ndim_out) *ndim_out = t->ndim;
    free(src);
    return dst;
}

// max|a - r| / max|r|, and a FAIL line naming the tensor when above rtol.
static double compare(const char *prefix, const char *what, const float *a, const float *r, int64_t n, double rtol) {
    double maxref = 0, maxerr = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        maxref = fmax(maxref, fabs((double)r[i]));
        double e = fabs((double)a[i] - (double)r[i]);
        if (!(e <= maxerr)) {   // NaN counts as the worst error
            maxerr = isnan(e) ? INFINITY : e;
            at = i;
        }
    }
    double rel = maxerr / (maxref > 0 ? maxref : 1.0);
    CHECK(rel <= rtol, "%s %s: max error %.3g (%.3g of max|ref| %.3g) at element %lld (ddx %.8g, torch %.8g), tolerance %.1g",
          prefix, what, maxerr, rel, maxref, (long long)at, (double)a[at], (double)r[at], rtol);
    return rel;
}

static ddx_tensor *input_tensor(ddx_ctx *c, const void *host, ddx_dtype dt, int ndim, const int64_t *shape) {
    ddx_tensor *t = ddx_new(c, dt, ndim, shape);
    if (t && host) memcpy(t->data, host, ddx_nbytes(t));
    return t;
}

static void run_case(const ddx_st_file *f, const tcase *tc) {
    const char *P = tc->name;
    char want[256];
    settings_string(tc, want, sizeof want);
    char key[64];
    snprintf(key, sizeof key, "%s.settings", P);
    const char *got = ddx_st_meta_get(f, key);
    CHECK(got && !strcmp(got, want), "%s: fixture settings '%s' differ from the test's '%s'", P, got ? got : "(none)", want);
    if (!got || strcmp(got, want)) return;

    ddx_config cfg;
    case_config(tc, &cfg);
    ddx_status st = ddx_config_validate(&cfg);
    CHECK(st == DDX_OK, "%s: ddx_config_validate rejects these unet_plain settings: %s", P, ddx_last_error());

    ddx_param_store ps;
    ddx_param_store_init(&ps, DDX_CPU);
    ddx_model *m = NULL;
    st = ddx_model_create(&cfg, &ps, &m);
    CHECK(st == DDX_OK, "%s: ddx_model_create: %s", P, ddx_last_error());
    if (st == DDX_OK) st = ddx_param_store_finalize(&ps);
    CHECK(st == DDX_OK, "%s: finalize: %s", P, ddx_last_error());
    if (st != DDX_OK) goto out;

    // Parameter count and order (= init step order) equal the PyTorch module's.
    snprintf(key, sizeof key, "%s.param_count", P);
    const char *pc = ddx_st_meta_get(f, key);
    CHECK(pc && (size_t)strtoull(pc, NULL, 10) == ddx_param_count(&ps), "%s: %zu parameters, PyTorch has %s", P,
          ddx_param_count(&ps), pc ? pc : "(missing)");
    snprintf(key, sizeof key, "%s.param_names", P);
    const char *names = ddx_st_meta_get(f, key);
    CHECK(names != NULL, "%s: metadata %s missing", P, key);
    if (names) {
        const char *s = names;
        size_t k = 0;
        bool order_ok = true;
        while (*s) {
            size_t len = strcspn(s, ",");
            if (k >= ps.n_params || strlen(ps.params[k]->name) != len || strncmp(ps.params[k]->name, s, len)) {
                CHECK(0, "%s: parameter %zu is '%s', PyTorch's state dict has '%.*s'", P, k,
                      k < ps.n_params ? ps.params[k]->name : "(none)", (int)len, s);
                order_ok = false;
                break;
            }
            k++;
            s += len + (s[len] == ',');
        }
        if (order_ok) CHECK(k == ps.n_params, "%s: ddx has %zu parameters, PyTorch %zu", P, ps.n_params, k);
    }

    // Weights by name.
    for (size_t i = 0; i < ps.n_params; i++) {
        ddx_param *p = ps.params[i];
        char k2[256];
        snprintf(k2, sizeof k2, "param.%s", p->name);
        int64_t shape[4] = {0};
        int nd = 0;
        float *w = fixture_f32(f, P, k2, ddx_numel(&p->value), shape, &nd);
        if (!w) continue;
        bool same = nd == p->value.ndim;
        for (int d = 0; same && d < nd; d++) same = shape[d] == p->value.shape[d];
        char b1[64];
        CHECK(same, "%s: %s has shape %s in ddx, the fixture's differs (OIHW transposed)", P, p->name,
              ddx_shape_str(&p->value, b1, sizeof b1));
        if (same) memcpy(p->value.data, w, ddx_nbytes(&p->value));
        free(w);
    }

    ddx_ctx c;
    st = ddx_ctx_init(&c, DDX_CPU, (size_t)8 << 20);
    CHECK(st == DDX_OK, "ctx init: %s", ddx_last_error());
    if (st != DDX_OK) goto out;
    c.act.debug = true;   // NaN-poisoned fresh tensors and guard bytes: an unwritten element cannot pass

    const int64_t S = tc->size;
    const int64_t xn = BATCH * S * S * tc->in_channels, on = BATCH * S * S * tc->out_channels;
    float *xh = fixture_f32(f, P, "x", xn, NULL, NULL);
    float *nh = fixture_f32(f, P, "noise", on, NULL, NULL);
    float *oh = fixture_f32(f, P, "out", on, NULL, NULL);
    float *lh = fixture_f32(f, P, "loss", 1, NULL, NULL);
    float *th = fixture_f32(f, P, "t", BATCH, NULL, NULL);
    if (th) CHECK(th[0] == tc->t[0] && th[1] == tc->t[1], "%s: fixture timesteps %g %g, test expects %g %g", P, th[0], th[1],
                  tc->t[0], tc->t[1]);
    if (tc->num_classes > 0) {
        snprintf(key, sizeof key, "%s.y", P);
        const ddx_st_tensor *yt = ddx_st_find(f, key);
        int32_t yv[BATCH] = {-1, -1};
        if (yt && yt->dtype == DDX_ST_I32 && yt->nbytes == sizeof yv) memcpy(yv, yt->data, sizeof yv);
        CHECK(yv[0] == tc->y[0] && yv[1] == tc->y[1], "%s: fixture labels missing or differ from %d %d", P, tc->y[0], tc->y[1]);
    }
    if (xh && nh && oh && lh && th) {
        ddx_tensor *x = input_tensor(&c, xh, DDX_F32, 4, (int64_t[]){BATCH, S, S, tc->in_channels});   // [N, H, W, Ci]
        ddx_tensor *t = input_tensor(&c, tc->t, DDX_F32, 1, (int64_t[]){BATCH});                        // [N]
        ddx_tensor *y = tc->num_classes > 0 ? input_tensor(&c, tc->y, DDX_I32, 1, (int64_t[]){BATCH}) : NULL;   // [N]
        ddx_tensor *noise = input_tensor(&c, nh, DDX_F32, 4, (int64_t[]){BATCH, S, S, tc->out_channels});       // [N, H, W, Co]
        ddx_tensor *out = ddx_model_forward(&c, m, x, t, y);   // [N, H, W, Co]
        ddx_tensor *loss = ddx_mse_loss(&c, out, noise);      // [1]
        st = ddx_ctx_status(&c);
        CHECK(st == DDX_OK, "%s: forward: %s", P, ddx_last_error());
        if (st == DDX_OK) {
            st = ddx_backward(&c, loss, 1.0f);
            CHECK(st == DDX_OK, "%s: backward: %s", P, ddx_last_error());
        }
        if (st == DDX_OK) {
            double r_out = compare(P, "output", (const float *)out->data, oh, on, OUT_RTOL);
            double r_loss = compare(P, "loss", (const float *)loss->data, lh, 1, LOSS_RTOL);
            double worst = 0;
            const char *worst_name = "";
            for (size_t i = 0; i < ps.n_params; i++) {
                ddx_param *p = ps.params[i];
                char k2[256];
                snprintf(k2, sizeof k2, "grad.%s", p->name);
                float *g = fixture_f32(f, P, k2, ddx_numel(&p->grad), NULL, NULL);
                if (!g) continue;
                char what[256];
                snprintf(what, sizeof what, "grad %s", p->name);
                double r = compare(P, what, p->grad.data, g, ddx_numel(&p->grad), GRAD_RTOL);
                if (!(r <= worst)) {
                    worst = r;
                    worst_name = p->name;
                }
                free(g);
            }
            printf("%s: output rel err %.2g, loss rel err %.2g, worst grad rel err %.2g (%s), %zu params\n", P, r_out, r_loss,
                   worst, worst_name, ddx_param_count(&ps));
        }
        st = ddx_arena_check_guards(&c.act);
        CHECK(st == DDX_OK, "%s: %s", P, ddx_last_error());
    }
    free(xh);
    free(nh);
    free(oh);
    free(lh);
    free(th);
    ddx_ctx_free(&c);
out:
    ddx_model_free(m);
    ddx_param_store_free(&ps);
}

// ddx_model_init: a function of the seed only, PyTorch's default ranges.
static void test_init(void) {
    ddx_config cfg;
    case_config(&CASES[1], &cfg);   // the conditional one: covers the N(0,1) embedding too
    ddx_param_store ps;
    ddx_param_store_init(&ps, DDX_CPU);
    ddx_model *m = NULL;
    ddx_status st = ddx_model_create(&cfg, &ps, &m);
    if (st == DDX_OK) st = ddx_param_store_finalize(&ps);
    CHECK(st == DDX_OK, "init: create: %s", ddx_last_error());
    if (st != DDX_OK) goto out;
    const size_t bytes = ps.numel * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes);
    if (!a || !b) {
        CHECK(0, "out of memory");
        free(a);
        free(b);
        goto out;
    }
    CHECK(ddx_model_init(m, 1) == DDX_OK, "init seed 1: %s", ddx_last_error());
    memcpy(a, ps.buf[DDX_PBUF_VALUE], bytes);
    CHECK(ddx_model_init(m, 1) == DDX_OK, "init seed 1 again: %s", ddx_last_error());
    memcpy(b, ps.buf[DDX_PBUF_VALUE], bytes);
    CHECK(memcmp(a, b, bytes) == 0, "init: seed 1 twice gave different weights");
    CHECK(ddx_model_init(m, 2) == DDX_OK, "init seed 2: %s", ddx_last_error());
    CHECK(memcmp(a, ps.buf[DDX_PBUF_VALUE], bytes) != 0, "init: seeds 1 and 2 gave the same weights");
    // Every parameter is initialised (not left at zero) and in PyTorch's range.
    for (size_t k = 0; k < m->n_init; k++) {
        const ddx_init_spec *s = &m->init[k];
        const float *v = s->t->data;
        const int64_t n = ddx_numel(s->t);
        double maxabs = 0;
        for (int64_t i = 0; i < n; i++) maxabs = fmax(maxabs, fabs((double)v[i]));
        if (s->kind == DDX_INIT_UNIFORM_FAN_IN) {
            const double bound = 1.0 / sqrt((double)s->fan_in);
            CHECK(maxabs > 0 && maxabs <= bound, "init: %s max|w| %g outside (0, 1/sqrt(fan_in) = %g]", s->t->name, maxabs,
                  bound);
        } else {
            CHECK(s->kind == DDX_INIT_NORMAL && maxabs > 0.5 && maxabs < 6, "init: %s (kind %d) max|w| %g not like N(0, 1)",
                  s->t->name, (int)s->kind, maxabs);
        }
    }
    free(a);
    free(b);
out:
    ddx_model_free(m);
    ddx_param_store_free(&ps);
}

// Settings unet_plain cannot build are DDX_E_INPUT naming the key, from both the validator and
// ddx_model_create (which a caller may reach without validating).
static void test_bad_settings(void) {
    static const int bad_levels[] = {2, 4};
    for (size_t i = 0; i < sizeof bad_levels / sizeof bad_levels[0]; i++) {
        ddx_config cfg;
        case_config(&CASES[0], &cfg);
        cfg.model.ch_mult.n = bad_levels[i];
        for (int j = 0; j < bad_levels[i]; j++) cfg.model.ch_mult.v[j] = 1 << j;
        ddx_param_store ps;
        ddx_param_store_init(&ps, DDX_CPU);
        ddx_model *m = NULL;
        ddx_status st = ddx_model_create(&cfg, &ps, &m);
        CHECK(st == DDX_E_INPUT && m == NULL && strstr(ddx_last_error(), "model.ch_mult"),
              "ch_mult with %d levels: create gave %s '%s', want DDX_E_INPUT naming model.ch_mult", bad_levels[i],
              ddx_status_name(st), ddx_last_error());
        ddx_model_free(m);
        ddx_param_store_free(&ps);
        st = ddx_config_validate(&cfg);
        CHECK(st == DDX_E_INPUT && strstr(ddx_last_error(), "model.ch_mult"),
              "ch_mult with %d levels: validate gave %s '%s', want DDX_E_INPUT naming model.ch_mult", bad_levels[i],
              ddx_status_name(st), ddx_last_error());
    }
    ddx_config cfg;
    case_config(&CASES[0], &cfg);
    cfg.model.image_size = cfg.data.image_size = 18;   // halves once, not twice
    ddx_param_store ps;
    ddx_param_store_init(&ps, DDX_CPU);
    ddx_model *m = NULL;
    ddx_status st = ddx_model_create(&cfg, &ps, &m);
    CHECK(st == DDX_E_INPUT && strstr(ddx_last_error(), "model.image_size"), "image_size 18: create gave %s '%s'",
          ddx_status_name(st), ddx_last_error());
    ddx_model_free(m);
    ddx_param_store_free(&ps);
}

// Inputs the network cannot take fail the context with DDX_E_INPUT, never crash.
static void test_bad_inputs(void) {
    ddx_config cfg;
    case_config(&CASES[1], &cfg);   // conditional: labels required
    ddx_param_store ps;
    ddx_param_store_init(&ps, DDX_CPU);
    ddx_model *m = NULL;
    ddx_ctx c;
    bool have_ctx = false;
    ddx_status st = ddx_model_create(&cfg, &ps, &m);
    if (st == DDX_OK) st = ddx_param_store_finalize(&ps);
    if (st == DDX_OK) st = ddx_model_init(m, 0);
    if (st == DDX_OK) st = ddx_ctx_init(&c, DDX_CPU, (size_t)4 << 20);
    CHECK(st == DDX_OK, "bad inputs: setup: %s", ddx_last_error());
    if (st != DDX_OK) goto out;
    have_ctx = true;
    const float tv[2] = {1, 2};
    const int yv[2] = {0, 9};
    struct {
        const char *what;
        int64_t h, ci;
        bool labels;
    } cases[] = {{"H not a multiple of 4", 10, 3, true}, {"wrong channel count", 12, 1, true}, {"labels missing", 12, 3, false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ddx_ctx_reset(&c);
        ddx_tensor *x = input_tensor(&c, NULL, DDX_F32, 4, (int64_t[]){2, cases[i].h, cases[i].h, cases[i].ci});   // [N, H, W, C]
        if (x) memset(x->data, 0, ddx_nbytes(x));
        ddx_tensor *t = input_tensor(&c, tv, DDX_F32, 1, (int64_t[]){2});   // [N]
        ddx_tensor *y = cases[i].labels ? input_tensor(&c, yv, DDX_I32, 1, (int64_t[]){2}) : NULL;
        ddx_tensor *out = ddx_model_forward(&c, m, x, t, y);
        CHECK(out == NULL && ddx_ctx_status(&c) == DDX_E_INPUT, "bad input (%s): got %s, want DDX_E_INPUT", cases[i].what,
              ddx_status_name(ddx_ctx_status(&c)));
    }
    // Out-of-range label: caught by the embedding op (10 is the null class, 11 is past the table).
    ddx_ctx_reset(&c);
    ddx_tensor *x = input_tensor(&c, NULL, DDX_F32, 4, (int64_t[]){2, 12, 12, 3});   // [N, H, W, C]
    if (x) memset(x->data, 0, ddx_nbytes(x));
    ddx_tensor *t = input_tensor(&c, tv, DDX_F32, 1, (int64_t[]){2});
    ddx_tensor *y = input_tensor(&c, (const int[]){0, 11}, DDX_I32, 1, (int64_t[]){2});
    ddx_tensor *out = ddx_model_forward(&c, m, x, t, y);
    CHECK(out == NULL && ddx_ctx_status(&c) == DDX_E_INPUT, "label 11 of 10 classes + null: got %s, want DDX_E_INPUT",
          ddx_status_name(ddx_ctx_status(&c)));
out:
    if (have_ctx) ddx_ctx_free(&c);
    ddx_model_free(m);
    ddx_param_store_free(&ps);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "data/unet_plain/unet_plain.safetensors";
    ddx_st_file f;
    ddx_status st = ddx_st_read(path, &f);
    CHECK(st == DDX_OK, "cannot read fixture %s (run from tests/ or pass the path): %s", path, ddx_last_error());
    if (st == DDX_OK) {
        for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) run_case(&f, &CASES[i]);
        ddx_st_close(&f);
    }
    test_init();
    test_bad_settings();
    test_bad_inputs();
    return ddx_test_finish("unet_plain");
}
