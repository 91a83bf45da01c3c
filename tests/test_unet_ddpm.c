// The unet_ddpm network (models/unet_ddpm.c) against diffusers' UNet2DModel:
//  - names and shapes: the default (CIFAR-10, Ho et al.) config registers exactly the 328
//    state-dict keys, in order, with the shapes of google/ddpm-cifar10-32's UNet2DModel
//    (data/unet_ddpm/cifar10_names.txt) and 35,746,307 parameters;
//  - parity: tiny UNet2DModels (data/unet_ddpm/<variant>.safetensors, made by
//    tests/reference/make_unet_ddpm_fixtures.py) loaded by name, forward + MSE loss + backward on
//    the CPU; output, loss and the gradient of every parameter compared with PyTorch's. Two use
//    google/ddpm-cifar10-32's settings, four diffusers' others (several attention heads; [cos, sin],
//    freq_shift 0 and Downsample2D padding 1; widths that are not multiples of the first; all
//    together), whose ddx config as tools/convert_torch_checkpoint.py maps it must equal the one
//    set here and validate;
//  - ddx_model_rename_legacy, ddx_model_init determinism, odd feature-map sizes at batch 1 and 3
//    (each batch item independent of the others), and bad settings / inputs rejected.
//
// Usage: test_unet_ddpm   (run from tests/, where meson runs it)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "models/diffusion.h"
#include "models/model.h"
#include "runtime/safetensors.h"

#define DATA "data/unet_ddpm/"

// ---- helpers ------------------------------------------------------------------------------------

static float *fdata(const ddx_tensor *t) { return (float *)t->data; }

static void tiny_cfg(ddx_config *cfg, int size, int in, int out, int ch, int m0, int m1, int nrb, int attn, int groups,
                     int classes) {
    ddx_config_defaults(cfg);
    cfg->model.type = DDX_MODEL_TYPE_UNET_DDPM;
    cfg->model.image_size = size;
    cfg->model.in_channels = in;
    cfg->model.out_channels = out;
    cfg->model.ch = ch;
    cfg->model.ch_mult.n = 2;
    cfg->model.ch_mult.v[0] = m0;
    cfg->model.ch_mult.v[1] = m1;
    cfg->model.num_res_blocks = nrb;
    cfg->model.attn_resolutions.n = 1;
    cfg->model.attn_resolutions.v[0] = attn;
    cfg->model.groups = groups;
    cfg->model.num_classes = classes;
    cfg->model.dropout = 0.0;
    cfg->model.norm_eps = 1e-6;
}

// A model on a fresh CPU store; finalized when asked. NULL (with a FAIL) on error.
static ddx_model *build(const ddx_config *cfg, ddx_param_store *ps, bool finalize) {
    ddx_param_store_init(ps, DDX_CPU);
    ddx_model *m = NULL;
    ddx_status st = ddx_model_create(cfg, ps, &m);
    CHECK(st == DDX_OK, "model create: %s", ddx_last_error());
    if (st != DDX_OK) {
        ddx_param_store_free(ps);
        return NULL;
    }
    if (finalize) {
        st = ddx_param_store_finalize(ps);
        CHECK(st == DDX_OK, "finalize: %s", ddx_last_error());
        if (st != DDX_OK) {
            ddx_model_free(m);
            ddx_param_store_free(ps);
            return NULL;
        }
    }
    return m;
}

static void destroy(ddx_model *m, ddx_param_store *ps) {
    ddx_model_free(m);
    ddx_param_store_free(ps);
}

// The torch shape of a ddx parameter: 4-D tensors are conv weights, OHWI here and OIHW there.
static void torch_shape(const ddx_tensor *t, int64_t out[4]) {
    for (int i = 0; i < t->ndim; i++) out[i] = t->shape[i];
    if (t->ndim == 4) {
        out[1] = t->shape[3];
        out[2] = t->shape[1];
        out[3] = t->shape[2];
    }
}

static bool same_dims(int na, const int64_t *a, int nb, const int64_t *b) {
    if (na != nb) return false;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return false;
    return true;
}

// ---- names and shapes of the CIFAR-10 model ---------------------------------------------------

static void test_cifar10_names(void) {
    ddx_config cfg;
    ddx_config_defaults(&cfg);
    CHECK(cfg.model.type == DDX_MODEL_TYPE_UNET_DDPM, "the default model.type is not unet_ddpm");
    ddx_param_store ps;
    ddx_model *m = build(&cfg, &ps, false);   // not finalized: 35.7M params x 5 buffers is not needed
    if (!m) return;
    CHECK(ddx_param_count(&ps) == 35746307u, "CIFAR-10 model has %zu parameters, diffusers has 35746307",
          ddx_param_count(&ps));

    FILE *f = fopen(DATA "cifar10_names.txt", "r");
    CHECK(f != NULL, "cannot open " DATA "cifar10_names.txt (run from tests/)");
    if (!f) {
        destroy(m, &ps);
        return;
    }
    char line[512];
    size_t k = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char name[256], dims[128];
        if (sscanf(line, "%255s %127s", name, dims) != 2) {
            CHECK(false, "cifar10_names.txt: bad line '%s'", line);
            continue;
        }
        int64_t shape[8];
        int nd = 0;
        for (char *s = dims; *s && nd < 8; nd++) {
            shape[nd] = strtoll(s, &s, 10);
            if (*s == ',') s++;
        }
        ddx_param *p = ddx_param_find(&ps, name);
        if (!p) {
            bad++;
            CHECK(false, "diffusers parameter %s is missing from the ddx model", name);
            k++;
            continue;
        }
        int64_t ts[4];
        torch_shape(&p->value, ts);
        if (!same_dims(p->value.ndim, ts, nd, shape)) {
            bad++;
            char b[64];
            CHECK(false, "%s: ddx shape %s (torch order) differs from diffusers' %s", name,
                  ddx_shape_str(&p->value, b, sizeof b), dims);
        }
        if (k < ps.n_params && strcmp(ps.params[k]->name, name) != 0) {
            bad++;
            CHECK(false, "parameter %zu is %s in ddx, %s in diffusers' state_dict order", k, ps.params[k]->name, name);
        }
        k++;
    }
    fclose(f);
    CHECK(k == 328 && ps.n_params == k, "diffusers lists %zu tensors (expected 328), ddx registers %zu", k,
          ps.n_params);
    CHECK(bad == 0, "%zu of %zu names/shapes differ from diffusers", bad, k);
    destroy(m, &ps);
}

// ---- parity against PyTorch -----------------------------------------------------------------------

// A fixture tensor as f32 in ddx layout (4-D: NCHW/OIHW in the file only for parameters; the
// activations are stored NHWC already). NULL with a FAIL when missing or of the wrong shape.
static float *fx_load(const ddx_st_file *f, const char *name, int ndim, const int64_t *want_torch, bool oihw) {
    const ddx_st_tensor *t = ddx_st_find(f, name);
    if (!t) {
        CHECK(false, "fixture tensor %s is missing (regenerate with tests/reference/make_unet_ddpm_fixtures.py)", name);
        return NULL;
    }
    if (t->dtype != DDX_ST_F32 || !same_dims(t->ndim, t->shape, ndim, want_torch)) {
        CHECK(false, "fixture tensor %s has dtype %s / a shape that differs from the model's", name,
              ddx_st_dtype_name(t->dtype));
        return NULL;
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= want_torch[i];
    float *src = malloc((size_t)n * sizeof *src);
    if (!src) return NULL;
    memcpy(src, t->data, (size_t)n * sizeof *src);
    if (!oihw || ndim != 4) return src;
    float *dst = malloc((size_t)n * sizeof *dst);
    if (!dst) {
        free(src);
        return NULL;
    }
    const int64_t O = want_torch[0], I = want_torch[1], KH = want_torch[2], KW = want_torch[3];
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++)
            for (int64_t y = 0; y < KH; y++)
                for (int64_t x = 0; x < KW; x++)
                    dst[((o * KH + y) * KW + x) * I + i] = src[((o * I + i) * KH + y) * KW + x];
    free(src);
    return dst;
}

typedef struct cmp_stats {
    double worst_ratio;   // max over tensors of max|diff| / tol
    char worst_name[128];
} cmp_stats;

// max|got - ref| <= rtol * max(max|ref|, floor): relative to the tensor's scale, since
// element-wise relative error is meaningless where values cross zero.
static double compare(const char *what, const float *got, const float *ref, int64_t n, double rtol, double floor,
                    cmp_stats *cs) {
    double mx = 0.0, worst = 0.0;
    int64_t wi = 0;
    for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)ref[i]));
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)ref[i]);
        if (!(e <= worst)) {   // NaN lands here too and stays the worst
            worst = e;
            wi = i;
            if (isnan(e)) break;
        }
    }
    const double tol = rtol * fmax(mx, floor);
    CHECK(worst <= tol, "%s: max|diff| %.3g > tol %.3g (max|ref| %.3g) at %lld: ddx %.8g torch %.8g", what, worst, tol,
          mx, (long long)wi, (double)got[wi], (double)ref[wi]);
    if (cs && worst / tol > cs->worst_ratio) {
        cs->worst_ratio = worst / tol;
        snprintf(cs->worst_name, sizeof cs->worst_name, "%s", what);
    }
    return worst / tol;
}

// Tolerances (fp32 on both sides; relative to max|ref| of each tensor):
//  - output 2e-5 and loss 1e-5: the forward chains ~40 ops whose GEMMs and GroupNorm sums torch
//    and ddx order differently; each adds a few ulps that later convs and norms (rstd up to ~10
//    on small-variance groups) pass on. Seen: output 2e-7 / 1.4e-7 relative (tiny / tiny_cond),
//    loss equal to the printed 8 digits.
//  - parameter gradients 2e-4: backward runs the same chain in reverse, and the GroupNorm and
//    softmax backward subtract group / row means from terms of similar size, so the rounding
//    differences are amplified by cancellation; weight grads also sum over N*H*W positions.
//    Seen: <= 8e-6 relative for the worst tensor of either variant (printed below).
//  - to_k.bias: softmax ignores a per-row constant and q . b_k is one, so its gradient is zero
//    in exact arithmetic and both sides hold rounding noise only; it is held to the scale of the
//    same block's to_v.bias gradient instead of its own.
#define OUT_RTOL 2e-5
#define LOSS_RTOL 1e-5
#define GRAD_RTOL 2e-4

static double max_abs_of(const ddx_st_file *f, const char *name) {
    const ddx_st_tensor *t = ddx_st_find(f, name);
    if (!t || t->dtype != DDX_ST_F32) return 0.0;
    double mx = 0.0;
    for (size_t i = 0; i < t->nbytes / 4; i++) {
        float v;
        memcpy(&v, (const char *)t->data + 4 * i, 4);
        mx = fmax(mx, fabs((double)v));
    }
    return mx;
}

// The diffusers settings beyond google/ddpm-cifar10-32's (the 0 / false / empty values are its own).
static void diffusers_cfg(ddx_config *cfg, int head_dim, bool flip, int freq_shift, int down_pad, int n_widths,
                          const int *widths) {
    cfg->model.attention_head_dim = head_dim;
    cfg->model.flip_sin_to_cos = flip;
    cfg->model.freq_shift = freq_shift;
    cfg->model.downsample_padding = down_pad;
    cfg->model.block_out_channels.n = n_widths;
    for (int i = 0; i < n_widths; i++) cfg->model.block_out_channels.v[i] = widths[i];
}

// The fixture's "ddx_config" (the converter's mapping of its diffusers config) against cfg.
static void check_stored_config(const ddx_st_file *f, const char *variant, const ddx_config *cfg) {
    const char *yaml = ddx_st_meta_get(f, "ddx_config");
    if (!yaml) return;   // the google/ddpm-cifar10-32-style variants have none
    ddx_config stored;
    ddx_status st = ddx_config_load_string(yaml, strlen(yaml), variant, &stored);
    CHECK(st == DDX_OK, "%s: the converter's config does not load: %s", variant, ddx_last_error());
    if (st != DDX_OK) return;
    st = ddx_config_validate(&stored);
    CHECK(st == DDX_OK, "%s: the converter's config does not validate: %s", variant, ddx_last_error());
    ddx_config want = *cfg;
    want.data = stored.data;   // the converter also sets data.image_size / data.dataset to validate
    const char *d = ddx_config_diff(&want, &stored);
    CHECK(d == NULL, "%s: the converter's config differs from the test's at %s", variant, d ? d : "-");
    CHECK(stored.data.image_size == cfg->model.image_size, "%s: converter's data.image_size %d", variant,
          stored.data.image_size);
}

// Every parameter gradient against the fixture's grad.<name> (torch layout), at GRAD_RTOL; a
// to_k.bias gradient (zero in exact arithmetic: softmax ignores a per-query constant) is judged
// against the size of its to_v.bias neighbour. Returns how many were compared.
static size_t compare_grads(const ddx_st_file *f, const ddx_param_store *ps, cmp_stats *cs) {
    size_t n_cmp = 0;
    for (size_t i = 0; i < ps->n_params; i++) {
        const ddx_param *p = ps->params[i];
        char name[300];
        int64_t ts[4];
        torch_shape(&p->value, ts);
        snprintf(name, sizeof name, "grad.%s", p->name);
        float *g = fx_load(f, name, p->value.ndim, ts, true);
        if (!g) continue;
        double floor = 1e-6;
        const size_t len = strlen(p->name);
        if (len > 10 && strcmp(p->name + len - 10, ".to_k.bias") == 0) {
            char vb[300];
            snprintf(vb, sizeof vb, "grad.%.*s.to_v.bias", (int)(len - 10), p->name);
            floor = max_abs_of(f, vb);
        }
        n_cmp++;
        compare(p->name, (const float *)p->grad.data, g, ddx_numel(&p->value), GRAD_RTOL, floor, cs);
        free(g);
    }
    return n_cmp;
}

static void test_parity(const char *variant, const ddx_config *cfg, int64_t n_params_expect) {
    char path[256];
    snprintf(path, sizeof path, DATA "%s.safetensors", variant);
    ddx_st_file f;
    ddx_status st = ddx_st_read(path, &f);
    CHECK(st == DDX_OK, "%s: %s (run from tests/)", path, ddx_last_error());
    if (st != DDX_OK) return;
    check_stored_config(&f, variant, cfg);
    ddx_param_store ps;
    ddx_model *m = build(cfg, &ps, true);
    if (!m) {
        ddx_st_close(&f);
        return;
    }
    CHECK((int64_t)ddx_param_count(&ps) == n_params_expect, "%s: ddx has %zu parameters, diffusers %lld", variant,
          ddx_param_count(&ps), (long long)n_params_expect);

    // Weights by name, OIHW -> OHWI; every param.* of the file must be used.
    bool ok = true;
    for (size_t i = 0; i < ps.n_params; i++) {
        ddx_param *p = ps.params[i];
        char name[300];
        int64_t ts[4];
        torch_shape(&p->value, ts);
        snprintf(name, sizeof name, "param.%s", p->name);
        float *w = fx_load(&f, name, p->value.ndim, ts, true);
        if (!w) {
            ok = false;
            continue;
        }
        memcpy(p->value.data, w, ddx_nbytes(&p->value));
        free(w);
    }
    size_t n_file = 0;
    for (size_t i = 0; i < f.n_tensors; i++) n_file += strncmp(f.tensors[i].name, "param.", 6) == 0;
    CHECK(n_file == ps.n_params, "%s: the fixture has %zu parameters, the ddx model %zu", variant, n_file, ps.n_params);

    const int64_t N = 2, S = cfg->model.image_size, Ci = cfg->model.in_channels, Co = cfg->model.out_channels;
    ddx_ctx c;
    st = ddx_ctx_init(&c, DDX_CPU, (size_t)16 << 20);
    CHECK(st == DDX_OK, "ctx: %s", ddx_last_error());
    if (st != DDX_OK || !ok) {
        if (st == DDX_OK) ddx_ctx_free(&c);
        destroy(m, &ps);
        ddx_st_close(&f);
        return;
    }
    c.act.debug = true;   // NaN-poisoned activations and guard bytes
    ddx_ctx_set_grad(&c, true);
    ddx_ctx_set_training(&c, true);    // dropout 0: the training path must still be the identity

    ddx_tensor *x = ddx_new(&c, DDX_F32, 4, (int64_t[]){N, S, S, Ci});    // [N, H, W, Ci]
    ddx_tensor *noise = ddx_new(&c, DDX_F32, 4, (int64_t[]){N, S, S, Co}); // [N, H, W, Co]
    ddx_tensor *t = ddx_new(&c, DDX_F32, 1, (int64_t[]){N});              // [N]
    ddx_tensor *y = cfg->model.num_classes > 0 ? ddx_new(&c, DDX_I32, 1, (int64_t[]){N}) : NULL;
    float *fxx = fx_load(&f, "x", 4, x->shape, false), *fxn = fx_load(&f, "noise", 4, noise->shape, false);
    float *fxt = fx_load(&f, "t", 1, t->shape, false);
    if (fxx && fxn && fxt) {
        memcpy(x->data, fxx, ddx_nbytes(x));
        memcpy(noise->data, fxn, ddx_nbytes(noise));
        memcpy(t->data, fxt, ddx_nbytes(t));
        CHECK(fxt[0] != fxt[1], "%s: the fixture's two timesteps should differ", variant);
    }
    free(fxx);
    free(fxn);
    free(fxt);
    if (y) {
        const ddx_st_tensor *fy = ddx_st_find(&f, "y");
        CHECK(fy && fy->dtype == DDX_ST_I32 && fy->nbytes == (size_t)N * 4, "%s: fixture labels y missing", variant);
        if (fy && fy->nbytes == (size_t)N * 4) memcpy(y->data, fy->data, (size_t)N * 4);
    }

    ddx_tensor *out = ddx_model_forward(&c, m, x, t, y);
    ddx_tensor *loss = ddx_mse_loss(&c, out, noise);
    st = ddx_ctx_status(&c);
    CHECK(st == DDX_OK && out && loss, "%s forward: %s", variant, ddx_last_error());
    cmp_stats cs = {0};
    if (st == DDX_OK && out && loss) {
        char what[320];
        float *ref = fx_load(&f, "out", 4, out->shape, false);
        if (ref) {
            snprintf(what, sizeof what, "%s out", variant);
            const double r = compare(what, fdata(out), ref, ddx_numel(out), OUT_RTOL, 1e-6, NULL);
            printf("%s: output at %.3f of its tolerance\n", variant, r);
        }
        free(ref);
        ref = fx_load(&f, "loss", 1, (int64_t[]){1}, false);
        if (ref) {
            snprintf(what, sizeof what, "%s loss", variant);
            compare(what, fdata(loss), ref, 1, LOSS_RTOL, 1e-6, NULL);
            printf("%s: loss ddx %.8f torch %.8f\n", variant, (double)fdata(loss)[0], (double)ref[0]);
        }
        free(ref);
        st = ddx_backward(&c, loss, 1.0f);
        CHECK(st == DDX_OK, "%s backward: %s", variant, ddx_last_error());
        const size_t n_cmp = st == DDX_OK ? compare_grads(&f, &ps, &cs) : 0;
        CHECK(n_cmp == ps.n_params, "%s: compared %zu of %zu gradients", variant, n_cmp, ps.n_params);
        printf("%s: %zu gradients compared, worst %s at %.3f of its tolerance\n", variant, n_cmp,
               cs.worst_name[0] ? cs.worst_name : "-", cs.worst_ratio);
    }
    st = ddx_arena_check_guards(&c.act);
    CHECK(st == DDX_OK, "%s: %s", variant, ddx_last_error());
    ddx_ctx_free(&c);
    destroy(m, &ps);
    ddx_st_close(&f);
}

// ---- legacy names -------------------------------------------------------------------------------

static void test_rename_legacy(void) {
    ddx_config cfg;
    ddx_config_defaults(&cfg);
    ddx_param_store ps;
    ddx_model *m = build(&cfg, &ps, false);
    if (!m) return;
    // google/ddpm-cifar10-32's checkpoint spells the attention projections the pre-0.15 way.
    static const char *const cases[][2] = {
        {"down_blocks.1.attentions.0.query.weight", "down_blocks.1.attentions.0.to_q.weight"},
        {"down_blocks.1.attentions.1.key.bias", "down_blocks.1.attentions.1.to_k.bias"},
        {"up_blocks.2.attentions.2.value.weight", "up_blocks.2.attentions.2.to_v.weight"},
        {"mid_block.attentions.0.proj_attn.bias", "mid_block.attentions.0.to_out.0.bias"},
    };
    char buf[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *r = ddx_model_rename_legacy(cases[i][0], buf, sizeof buf);
        CHECK(r == buf && strcmp(buf, cases[i][1]) == 0, "rename %s gave %s, expected %s", cases[i][0], r ? r : "NULL",
              cases[i][1]);
        CHECK(ddx_param_find(&ps, cases[i][1]) != NULL, "renamed %s is not a parameter of the model", cases[i][1]);
    }
    CHECK(ddx_model_rename_legacy("down_blocks.1.attentions.0.to_q.weight", buf, sizeof buf) == NULL,
          "a current name was renamed");
    CHECK(ddx_model_rename_legacy("mid_block.resnets.0.conv1.weight", buf, sizeof buf) == NULL,
          "a resnet name was renamed");
    CHECK(ddx_model_rename_legacy("mid_block.attentions.0.proj_attn.bias", buf, 10) == NULL,
          "a rename that does not fit the buffer must return NULL");
    destroy(m, &ps);
}

// ---- init --------------------------------------------------------------------------------------

static void test_init(void) {
    ddx_config cfg;
    tiny_cfg(&cfg, 16, 3, 3, 8, 1, 2, 1, 8, 4, 5);
    ddx_param_store a, b, d;
    ddx_model *ma = build(&cfg, &a, true), *mb = build(&cfg, &b, true), *md = build(&cfg, &d, true);
    if (ma && mb && md) {
        CHECK(ddx_model_init(ma, 42) == DDX_OK && ddx_model_init(mb, 42) == DDX_OK && ddx_model_init(md, 43) == DDX_OK,
              "init: %s", ddx_last_error());
        const size_t bytes = a.numel * sizeof(float);
        CHECK(a.numel == b.numel && memcmp(a.buf[DDX_PBUF_VALUE], b.buf[DDX_PBUF_VALUE], bytes) == 0,
              "the same seed gave different weights");
        CHECK(memcmp(a.buf[DDX_PBUF_VALUE], d.buf[DDX_PBUF_VALUE], bytes) != 0,
              "seeds 42 and 43 gave the same weights");
        size_t n_norm = 0, bad_norm = 0, bad_bound = 0, n_emb = 0;
        double emb_sum = 0.0, emb_sq = 0.0;
        for (size_t i = 0; i < a.n_params; i++) {
            const ddx_param *p = a.params[i];
            const float *v = (const float *)p->value.data;
            const int64_t n = ddx_numel(&p->value);
            const bool is_norm = strstr(p->name, "norm") != NULL;
            if (is_norm) {
                n_norm++;
                const float want = strstr(p->name, ".weight") ? 1.0f : 0.0f;
                for (int64_t j = 0; j < n; j++) bad_norm += v[j] != want;
            } else if (strcmp(p->name, "class_embedding.weight") == 0) {
                for (int64_t j = 0; j < n; j++, n_emb++) {
                    emb_sum += v[j];
                    emb_sq += (double)v[j] * v[j];
                }
            } else {
                // conv/linear: |w| <= 1/sqrt(fan_in), fan_in = Ci*KH*KW or In (the weight's or the
                // bias's module), found from the matching weight.
                char wname[300];
                snprintf(wname, sizeof wname, "%s", p->name);
                char *dot = strrchr(wname, '.');
                if (dot) snprintf(dot, sizeof wname - (size_t)(dot - wname), ".weight");
                const ddx_param *w = ddx_param_find(&a, wname);
                int64_t fan = 1;
                if (w) fan = ddx_numel(&w->value) / w->value.shape[0];
                const double bound = 1.0 / sqrt((double)fan);
                for (int64_t j = 0; j < n; j++) bad_bound += !(fabs((double)v[j]) <= bound * (1 + 1e-6));
            }
        }
        CHECK(n_norm > 0 && bad_norm == 0, "%zu GroupNorm values are not weight 1 / bias 0 (of %zu tensors)", bad_norm,
              n_norm);
        CHECK(bad_bound == 0, "%zu conv/linear values outside U(-1/sqrt(fan_in), 1/sqrt(fan_in))", bad_bound);
        const double mean = emb_sum / (double)n_emb, var = emb_sq / (double)n_emb - mean * mean;
        // (5 classes + the null class) x 32 = 192 N(0,1) draws: mean within 4/sqrt(192) = 0.29,
        // variance within 0.5 of 1.
        CHECK(n_emb == 192 && fabs(mean) < 0.29 && fabs(var - 1.0) < 0.5, "class embedding: %zu values, mean %g var %g",
              n_emb, mean, var);
    }
    if (ma) destroy(ma, &a);
    if (mb) destroy(mb, &b);
    if (md) destroy(md, &d);
}

// ---- odd sizes and batch independence ------------------------------------------------------------

static void fill_pattern(float *p, int64_t n, uint32_t seed) {
    uint32_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 8) * (1.0 / 16777216.0) * 2.0 - 1.0);
    }
}

static void test_odd_sizes(void) {
    // Three levels (12 -> 6 -> 3) with attention at 6: a 12x20 input reaches 3x5 at the bottom.
    ddx_config cfg;
    tiny_cfg(&cfg, 12, 2, 2, 8, 1, 2, 1, 6, 4, 0);
    cfg.model.ch_mult.n = 3;
    cfg.model.ch_mult.v[2] = 2;
    ddx_param_store ps;
    ddx_model *m = build(&cfg, &ps, true);
    if (!m) return;
    CHECK(ddx_model_init(m, 3) == DDX_OK, "init: %s", ddx_last_error());
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)8 << 20) != DDX_OK) {
        CHECK(false, "ctx: %s", ddx_last_error());
        destroy(m, &ps);
        return;
    }
    c.act.debug = true;
    ddx_ctx_set_grad(&c, false);
    const int64_t sizes[][2] = {{12, 12}, {12, 20}, {4, 4}};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int64_t H = sizes[si][0], W = sizes[si][1];
        ddx_tensor *x3 = ddx_new(&c, DDX_F32, 4, (int64_t[]){3, H, W, 2});   // [3, H, W, 2]
        ddx_tensor *t3 = ddx_new(&c, DDX_F32, 1, (int64_t[]){3});            // [3]
        if (!x3 || !t3) break;
        fill_pattern(fdata(x3), ddx_numel(x3), 7 + (uint32_t)si);
        fdata(t3)[0] = 999.0f;
        fdata(t3)[1] = 0.0f;
        fdata(t3)[2] = 421.0f;
        ddx_tensor *o3 = ddx_model_forward(&c, m, x3, t3, NULL);
        // Batch item 2 alone must give the same answer as inside the batch of 3.
        ddx_tensor x1 = ddx_tensor_slice(x3, 2, 3), t1 = ddx_tensor_slice(t3, 2, 3);
        ddx_tensor *o1 = ddx_model_forward(&c, m, &x1, &t1, NULL);
        ddx_status st = ddx_ctx_status(&c);
        CHECK(st == DDX_OK && o1 && o3, "%lldx%lld forward: %s", (long long)H, (long long)W, ddx_last_error());
        if (st != DDX_OK || !o1 || !o3) break;
        CHECK(o3->ndim == 4 && o3->shape[0] == 3 && o3->shape[1] == H && o3->shape[2] == W && o3->shape[3] == 2,
              "%lldx%lld: output shape wrong", (long long)H, (long long)W);
        CHECK(o1->shape[0] == 1 && o1->shape[1] == H && o1->shape[2] == W, "batch-1 output shape wrong");
        const int64_t per = H * W * 2;
        bool finite = true;
        for (int64_t i = 0; i < 3 * per; i++) finite &= isfinite(fdata(o3)[i]) != 0;
        CHECK(finite, "%lldx%lld: non-finite output", (long long)H, (long long)W);
        // Different GEMM shapes sum in different orders: a few ulps of the largest values.
        compare("batch 1 vs item 2 of batch 3", fdata(o1), fdata(o3) + 2 * per, per, 1e-5, 1e-6, NULL);
        ddx_ctx_reset(&c);
    }
    // Sizes the levels cannot halve, and missing/extra labels, fail with DDX_E_INPUT.
    ddx_tensor *xb = ddx_new(&c, DDX_F32, 4, (int64_t[]){1, 6, 12, 2});   // 6 -> 3 -> 1.5
    ddx_tensor *tb = ddx_new(&c, DDX_F32, 1, (int64_t[]){1});
    if (xb && tb) {
        memset(xb->data, 0, ddx_nbytes(xb));
        memset(tb->data, 0, ddx_nbytes(tb));
        CHECK(ddx_model_forward(&c, m, xb, tb, NULL) == NULL && ddx_ctx_status(&c) == DDX_E_INPUT,
              "a 6x12 input to a 3-level U-Net must fail with DDX_E_INPUT");
        CHECK(strstr(ddx_last_error(), "multiples of 4") != NULL, "message: %s", ddx_last_error());
    }
    ddx_ctx_free(&c);
    destroy(m, &ps);
}

static void test_bad_config(void) {
    ddx_config cfg;
    ddx_param_store ps;
    ddx_model *m;

    tiny_cfg(&cfg, 12, 2, 2, 8, 1, 2, 1, 6, 4, 0);
    cfg.model.ch_mult.n = 4;   // 12 cannot be halved 3 times
    cfg.model.ch_mult.v[2] = cfg.model.ch_mult.v[3] = 2;
    ddx_param_store_init(&ps, DDX_CPU);
    CHECK(ddx_model_create(&cfg, &ps, &m) == DDX_E_INPUT && m == NULL && strstr(ddx_last_error(), "model.image_size"),
          "image_size 12 with 4 levels: %s", ddx_last_error());
    ddx_param_store_free(&ps);

    tiny_cfg(&cfg, 16, 3, 3, 12, 1, 2, 1, 8, 8, 0);   // 12 channels, 8 groups
    ddx_param_store_init(&ps, DDX_CPU);
    CHECK(ddx_model_create(&cfg, &ps, &m) == DDX_E_INPUT && m == NULL && strstr(ddx_last_error(), "model.groups"),
          "12 channels in 8 groups: %s", ddx_last_error());
    ddx_param_store_free(&ps);

    tiny_cfg(&cfg, 16, 3, 3, 8, 1, 2, 1, 5, 4, 0);   // no level is 5x5
    ddx_param_store_init(&ps, DDX_CPU);
    CHECK(ddx_model_create(&cfg, &ps, &m) == DDX_E_INPUT && strstr(ddx_last_error(), "model.attn_resolutions"),
          "attention at 5: %s", ddx_last_error());
    ddx_param_store_free(&ps);

    tiny_cfg(&cfg, 16, 3, 3, 7, 1, 2, 1, 8, 7, 0);   // odd timestep embedding width
    ddx_param_store_init(&ps, DDX_CPU);
    CHECK(ddx_model_create(&cfg, &ps, &m) == DDX_E_INPUT && strstr(ddx_last_error(), "model.ch"), "ch 7: %s",
          ddx_last_error());
    ddx_param_store_free(&ps);

    // diffusers settings ddx cannot build: each names its key.
    tiny_cfg(&cfg, 16, 3, 3, 8, 1, 2, 1, 8, 4, 0);
    cfg.model.attention_head_dim = 3;   // 16 channels at the 8x8 level
    cfg.data.image_size = 16;
    ddx_param_store_init(&ps, DDX_CPU);
    CHECK(ddx_model_create(&cfg, &ps, &m) == DDX_E_INPUT && strstr(ddx_last_error(), "model.attention_head_dim"),
          "head_dim 3 of 16 channels: %s", ddx_last_error());
    CHECK(ddx_config_validate(&cfg) == DDX_E_INPUT && strstr(ddx_last_error(), "model.attention_head_dim"),
          "validate, head_dim 3 of 16 channels: %s", ddx_last_error());
    ddx_param_store_free(&ps);

    tiny_cfg(&cfg, 16, 3, 3, 8, 1, 2, 1, 8, 4, 0);
    diffusers_cfg(&cfg, 0, false, 1, 0, 2, (const int[]){12, 20});
    cfg.model.groups = 8;
    ddx_param_store_init(&ps, DDX_CPU);
    CHECK(ddx_model_create(&cfg, &ps, &m) == DDX_E_INPUT && strstr(ddx_last_error(), "model.groups") &&
              strstr(ddx_last_error(), "block_out_channels"),
          "widths 12, 20 in 8 groups: %s", ddx_last_error());
    ddx_param_store_free(&ps);

    tiny_cfg(&cfg, 16, 3, 3, 8, 1, 2, 1, 8, 4, 0);
    cfg.model.freq_shift = 4;   // ch/2 - freq_shift = 0 divides the frequencies by zero
    ddx_param_store_init(&ps, DDX_CPU);
    CHECK(ddx_model_create(&cfg, &ps, &m) == DDX_E_INPUT && strstr(ddx_last_error(), "model.ch") &&
              strstr(ddx_last_error(), "freq_shift"),
          "freq_shift ch/2: %s", ddx_last_error());
    ddx_param_store_free(&ps);

    // unet_plain reads none of these, so a set one is refused rather than ignored.
    ddx_config_defaults(&cfg);
    cfg.model.type = DDX_MODEL_TYPE_UNET_PLAIN;
    cfg.model.ch_mult = (ddx_int_list){3, {1, 2, 4}};
    CHECK(ddx_config_validate(&cfg) == DDX_OK, "unet_plain defaults: %s", ddx_last_error());
    cfg.model.flip_sin_to_cos = true;
    CHECK(ddx_config_validate(&cfg) == DDX_E_INPUT && strstr(ddx_last_error(), "model.flip_sin_to_cos"),
          "unet_plain with flip_sin_to_cos: %s", ddx_last_error());
    cfg.model.flip_sin_to_cos = false;
    cfg.model.block_out_channels = (ddx_int_list){3, {8, 16, 32}};
    CHECK(ddx_config_validate(&cfg) == DDX_E_INPUT && strstr(ddx_last_error(), "model.block_out_channels"),
          "unet_plain with block_out_channels: %s", ddx_last_error());

    // A class-conditional model needs labels; an unconditional one refuses them.
    tiny_cfg(&cfg, 8, 1, 1, 8, 1, 1, 1, 8, 4, 3);
    m = build(&cfg, &ps, true);
    if (!m) return;
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)2 << 20) == DDX_OK) {
        ddx_ctx_set_grad(&c, false);
        ddx_tensor *x = ddx_new(&c, DDX_F32, 4, (int64_t[]){1, 8, 8, 1});
        ddx_tensor *t = ddx_new(&c, DDX_F32, 1, (int64_t[]){1});
        memset(x->data, 0, ddx_nbytes(x));
        memset(t->data, 0, ddx_nbytes(t));
        CHECK(ddx_model_forward(&c, m, x, t, NULL) == NULL && ddx_ctx_status(&c) == DDX_E_INPUT &&
                  strstr(ddx_last_error(), "num_classes"),
              "forward without labels: %s", ddx_last_error());
        ddx_ctx_free(&c);
    }
    destroy(m, &ps);
}

// A config stored before the diffusers settings existed (no such keys) builds the model it built
// then: google/ddpm-cifar10-32's settings, widths ch * ch_mult, time embedding ch wide.
static void test_old_config(void) {
    static const char yaml[] = "model:\n  type: unet_ddpm\n  ch: 8\n  ch_mult: [2, 4]\n  image_size: 16\n"
                               "  attn_resolutions: [8]\n  groups: 4\n  num_res_blocks: 1\n"
                               "data:\n  image_size: 16\n";
    ddx_config cfg;
    ddx_status st = ddx_config_load_string(yaml, strlen(yaml), "old config", &cfg);
    CHECK(st == DDX_OK, "old config: %s", ddx_last_error());
    if (st != DDX_OK) return;
    CHECK(cfg.model.attention_head_dim == 0 && !cfg.model.flip_sin_to_cos && cfg.model.freq_shift == 1 &&
              cfg.model.downsample_padding == 0 && cfg.model.block_out_channels.n == 0,
          "the diffusers settings of an old config are not google/ddpm-cifar10-32's");
    CHECK(ddx_config_levels(&cfg) == 2 && ddx_config_level_width(&cfg, 0) == 16 && ddx_config_level_width(&cfg, 1) == 32 &&
              ddx_config_time_width(&cfg) == 8,
          "old config: levels %d, widths %lld %lld, time width %d", ddx_config_levels(&cfg),
          (long long)ddx_config_level_width(&cfg, 0), (long long)ddx_config_level_width(&cfg, 1), ddx_config_time_width(&cfg));
    ddx_param_store ps;
    ddx_model *m = build(&cfg, &ps, false);
    if (!m) return;
    // ch_mult[0] 2: the time MLP stays 8 -> 32 wide (ch), not 16 -> 64 (the first level's width).
    const ddx_param *l1 = ddx_param_find(&ps, "time_embedding.linear_1.weight");
    CHECK(l1 && l1->value.shape[0] == 32 && l1->value.shape[1] == 8, "old config: time_embedding.linear_1 is not [32, 8]");
    destroy(m, &ps);
}

// ---- one training step with v-prediction and Min-SNR weights vs PyTorch ------------------------
// tests/reference/make_vpred_fixtures.py: the whole ddx_diffusion_loss (Philox timesteps and
// noise, q_sample, the v target, min(SNR, 5) / (SNR + 1) weights as diffusers' training scripts)
// on a tiny U-Net, the loss and every parameter gradient against torch's.
static void test_vpred_minsnr(void) {
    const char *path = DATA "vpred_minsnr.safetensors";
    ddx_st_file f;
    ddx_status st = ddx_st_read(path, &f);
    CHECK(st == DDX_OK, "%s: %s (run from tests/)", path, ddx_last_error());
    if (st != DDX_OK) return;
    const char *ms = ddx_st_meta_get(&f, "seed"), *mt = ddx_st_meta_get(&f, "step"), *mg = ddx_st_meta_get(&f, "gamma");
    CHECK(ms && mt && mg, "%s: seed / step / gamma metadata missing", path);
    ddx_config cfg;
    tiny_cfg(&cfg, 8, 3, 3, 8, 1, 2, 1, 4, 4, 0);   // CFG of the script
    cfg.diffusion.timesteps = 1000;
    cfg.diffusion.beta_schedule = DDX_BETA_SCHEDULE_COSINE;
    cfg.diffusion.parameterization = DDX_PARAMETERIZATION_V;
    cfg.train.loss_weight = DDX_LOSS_WEIGHT_MIN_SNR;
    cfg.train.min_snr_gamma = mg ? atof(mg) : 5.0;
    ddx_schedule sched;
    st = ddx_schedule_init(&sched, &cfg);
    CHECK(st == DDX_OK, "vpred schedule: %s", ddx_last_error());
    ddx_param_store ps;
    ddx_model *m = st == DDX_OK && ms && mt && mg ? build(&cfg, &ps, true) : NULL;
    if (!m) {
        if (st == DDX_OK) ddx_schedule_free(&sched);
        ddx_st_close(&f);
        return;
    }
    const uint64_t seed = strtoull(ms, NULL, 10), step = strtoull(mt, NULL, 10);
    bool ok = true;
    for (size_t i = 0; i < ps.n_params; i++) {
        ddx_param *p = ps.params[i];
        char name[300];
        int64_t ts[4];
        torch_shape(&p->value, ts);
        snprintf(name, sizeof name, "param.%s", p->name);
        float *w = fx_load(&f, name, p->value.ndim, ts, true);
        if (!w) {
            ok = false;
            continue;
        }
        memcpy(p->value.data, w, ddx_nbytes(&p->value));
        free(w);
    }
    const int64_t N = 4, S = 8, C = 3;
    // The timesteps ddx draws for (seed, step) are the fixture's (its Python Philox agrees).
    float tt[4], coef[8], vcoef[8];
    float *fxt = fx_load(&f, "t", 1, (int64_t[]){N}, false);
    st = ddx_diffusion_loss_inputs(&sched, N, seed, step, tt, coef, vcoef);
    CHECK(st == DDX_OK && fxt && memcmp(fxt, tt, sizeof tt) == 0, "vpred: ddx timesteps %g %g %g %g differ from the fixture's",
          (double)tt[0], (double)tt[1], (double)tt[2], (double)tt[3]);
    free(fxt);
    ddx_ctx c;
    st = ddx_ctx_init(&c, DDX_CPU, (size_t)16 << 20);
    CHECK(st == DDX_OK, "ctx: %s", ddx_last_error());
    const bool have_ctx = st == DDX_OK;
    float *x0h = fx_load(&f, "x0", 4, (int64_t[]){N, S, S, C}, false), *lref = fx_load(&f, "loss", 1, (int64_t[]){1}, false);
    if (st == DDX_OK && ok && x0h && lref) {
        c.act.debug = true;
        ddx_ctx_set_grad(&c, true);
        ddx_ctx_set_training(&c, true);
        ddx_tensor *x0 = ddx_new(&c, DDX_F32, 4, (int64_t[]){N, S, S, C});   // [N, S, S, C]
        if (x0) memcpy(x0->data, x0h, ddx_nbytes(x0));
        ddx_tensor *loss = x0 ? ddx_diffusion_loss(&c, m, &sched, x0, NULL, seed, step) : NULL;
        CHECK(loss != NULL, "vpred loss: %s", ddx_last_error());
        if (loss) {
            compare("vpred min-snr loss", fdata(loss), lref, 1, LOSS_RTOL, 1e-6, NULL);
            printf("vpred_minsnr: loss ddx %.8f torch %.8f\n", (double)fdata(loss)[0], (double)lref[0]);
            st = ddx_backward(&c, loss, 1.0f);
            CHECK(st == DDX_OK, "vpred backward: %s", ddx_last_error());
            cmp_stats cs = {0};
            const size_t n_cmp = st == DDX_OK ? compare_grads(&f, &ps, &cs) : 0;
            CHECK(n_cmp == ps.n_params, "vpred: compared %zu of %zu gradients", n_cmp, ps.n_params);
            printf("vpred_minsnr: %zu gradients compared, worst %s at %.3f of its tolerance\n", n_cmp,
                   cs.worst_name[0] ? cs.worst_name : "-", cs.worst_ratio);
        }
        st = ddx_arena_check_guards(&c.act);
        CHECK(st == DDX_OK, "vpred: %s", ddx_last_error());
    }
    free(x0h);
    free(lref);
    if (have_ctx) ddx_ctx_free(&c);
    destroy(m, &ps);
    ddx_schedule_free(&sched);
    ddx_st_close(&f);
}

int main(void) {
    test_cifar10_names();
    test_old_config();
    test_rename_legacy();
    ddx_config cfg;
    // Must match VARIANTS in tests/reference/make_unet_ddpm_fixtures.py.
    tiny_cfg(&cfg, 16, 3, 3, 16, 1, 2, 1, 8, 8, 0);
    test_parity("tiny", &cfg, 177427);
    tiny_cfg(&cfg, 16, 1, 2, 8, 1, 2, 2, 16, 4, 5);
    // num_classes 5: diffusers' num_class_embeds 6, the last row the null class (label 5 in the fixture).
    test_parity("tiny_cond", &cfg, 60378);
    // Super-resolution: in_channels = 2 x out_channels (x_t next to the upsampled low-res image).
    tiny_cfg(&cfg, 16, 6, 3, 8, 1, 2, 1, 8, 4, 0);
    cfg.model.cond = DDX_COND_LOWRES;
    cfg.data.sr_factor = 2;
    cfg.data.image_size = 16;
    CHECK(ddx_config_validate(&cfg) == DDX_OK, "sr: the conditioned settings do not validate: %s", ddx_last_error());
    test_parity("sr", &cfg, 45475);
    // Must match DIFFUSERS in tests/reference/make_unet_ddpm_fixtures.py (the converter writes
    // widths that are multiples of the first as ch * ch_mult).
    tiny_cfg(&cfg, 16, 3, 3, 16, 1, 1, 1, 16, 4, 0);
    diffusers_cfg(&cfg, 8, false, 1, 0, 0, NULL);
    test_parity("heads", &cfg, 72691);
    tiny_cfg(&cfg, 16, 3, 3, 8, 1, 2, 2, 8, 4, 0);
    cfg.model.norm_eps = 1e-5;
    diffusers_cfg(&cfg, 0, true, 0, 1, 0, NULL);
    test_parity("defaults", &cfg, 64483);
    tiny_cfg(&cfg, 16, 1, 1, 12, 1, 1, 1, 8, 4, 0);
    cfg.data.dataset = DDX_DATASET_FASHION_MNIST;
    diffusers_cfg(&cfg, 0, false, 1, 0, 2, (const int[]){12, 20});
    test_parity("widths", &cfg, 76617);
    // num_class_embeds 3: ddx's num_classes 2 plus the null class (label 2 in the fixture).
    tiny_cfg(&cfg, 16, 3, 3, 8, 1, 1, 1, 8, 4, 2);
    cfg.model.ch_mult.n = 3;
    cfg.model.ch_mult.v[2] = 1;
    cfg.model.norm_eps = 1e-5;
    diffusers_cfg(&cfg, 4, true, 0, 1, 3, (const int[]){8, 12, 16});
    test_parity("combined", &cfg, 59611);
    test_vpred_minsnr();
    test_init();
    test_odd_sizes();
    test_bad_config();
    return ddx_test_finish("unet_ddpm");
}
