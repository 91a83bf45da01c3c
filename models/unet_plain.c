// unet_plain: the simple seed U-Net. Its definition is the UNetPlain module of
// tests/reference/make_unet_plain_fixtures.py (parameter names are that module's state-dict
// keys); in short, with c1, c2, c3 = ch * ch_mult[0..2] and tdim = 4 * ch:
//   enc1 -> maxpool -> enc2 -> maxpool -> enc3 (bottleneck) * time_mlp(temb [+ label_emb(y)])
//   -> bilinear up, concat skip -> dec2 -> bilinear up, concat skip -> dec1 -> 1x1 out conv,
// each enc/dec block conv3x3 -> ReLU -> conv3x3 -> ReLU. No normalisation, dropout or
// attention, so model.num_res_blocks/attn_resolutions/dropout/groups/norm_eps do not apply.
// With num_classes K > 0 label_emb has K + 1 rows: labels 0..K-1 are the classes, K the null class.
#include <stdio.h>
#include <stdlib.h>

#include "models/model_impl.h"

typedef struct conv_block {
    ddx_tensor *w1, *b1;   // [Co, 3, 3, Ci], [Co]
    ddx_tensor *w2, *b2;   // [Co, 3, 3, Co], [Co]
} conv_block;

typedef struct unet_plain {
    int in_channels, out_channels, num_classes, tdim;
    conv_block enc1, enc2, enc3, dec2, dec1;
    ddx_tensor *t_w1, *t_b1;     // [tdim, tdim], [tdim]
    ddx_tensor *t_w2, *t_b2;     // [c3, tdim], [c3]
    ddx_tensor *label_emb;       // [num_classes + 1, tdim] (the last row: the null class), NULL when unconditional
    ddx_tensor *out_w, *out_b;   // [out_channels, 1, 1, c1], [out_channels]
} unet_plain;

// ddx_param_add reports nothing of its own; running out of host memory is its only failure here
// (names are short and the store is not finalized yet, which ddx_model_create checks).
static ddx_status param_fail(const char *prefix) {
    return ddx_errorf(DDX_E_NOMEM, "unet_plain: could not register parameter %s (out of host memory)", prefix);
}

static ddx_status conv_param(ddx_model *m, const char *prefix, int64_t co, int64_t k, int64_t ci, ddx_tensor **w,
                             ddx_tensor **b) {
    const int64_t fan_in = ci * k * k;
    *w = ddx_model_paramf(m, 4, (int64_t[]){co, k, k, ci}, DDX_INIT_UNIFORM_FAN_IN, fan_in, "%s.weight", prefix);
    if (!*w) return param_fail(prefix);
    *b = ddx_model_paramf(m, 1, (int64_t[]){co}, DDX_INIT_UNIFORM_FAN_IN, fan_in, "%s.bias", prefix);
    return *b ? DDX_OK : param_fail(prefix);
}

static ddx_status linear_param(ddx_model *m, const char *prefix, int64_t out, int64_t in, ddx_tensor **w, ddx_tensor **b) {
    *w = ddx_model_paramf(m, 2, (int64_t[]){out, in}, DDX_INIT_UNIFORM_FAN_IN, in, "%s.weight", prefix);
    if (!*w) return param_fail(prefix);
    *b = ddx_model_paramf(m, 1, (int64_t[]){out}, DDX_INIT_UNIFORM_FAN_IN, in, "%s.bias", prefix);
    return *b ? DDX_OK : param_fail(prefix);
}

static ddx_status block_params(ddx_model *m, const char *name, int64_t ci, int64_t co, conv_block *b) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s.conv1", name);
    DDX_TRY(conv_param(m, prefix, co, 3, ci, &b->w1, &b->b1));
    snprintf(prefix, sizeof prefix, "%s.conv2", name);
    return conv_param(m, prefix, co, 3, co, &b->w2, &b->b2);
}

// A parameter (or f32 tensor) in the dtype the network computes in (models/model_impl.h).
#define W(p) ddx_model_w(c, m, (p))

static ddx_tensor *block_forward(ddx_ctx *c, const ddx_model *m, const conv_block *b, ddx_tensor *x) {
    const ddx_conv2d_params same = {.stride = 1, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1};
    ddx_tensor *h = ddx_relu(c, ddx_conv2d(c, x, W(b->w1), W(b->b1), same));   // [N, H, W, Co]
    return ddx_relu(c, ddx_conv2d(c, h, W(b->w2), W(b->b2), same));             // [N, H, W, Co]
}

static ddx_tensor *unet_plain_forward(ddx_ctx *c, const ddx_model *m, ddx_tensor *x, ddx_tensor *t, ddx_tensor *y) {
    const unet_plain *u = m->impl;
    if (ddx_ctx_status(c) != DDX_OK || !x || !t) {
        if (ddx_ctx_status(c) == DDX_OK) ddx_ctx_fail(c, ddx_errorf(DDX_E_INTERNAL, "unet_plain: x or t is NULL"));
        return NULL;
    }
    char buf[64];
    if (x->ndim != 4 || x->shape[3] != u->in_channels || x->shape[1] % 4 || x->shape[2] % 4 || x->shape[1] <= 0 ||
        x->shape[2] <= 0) {
        ddx_ctx_fail(c, ddx_errorf(DDX_E_INPUT,
                                   "unet_plain: x must be [N, H, W, %d] with H and W positive multiples of 4 (two 2x poolings), got %s",
                                   u->in_channels, ddx_shape_str(x, buf, sizeof buf)));
        return NULL;
    }
    if (t->ndim != 1 || t->shape[0] != x->shape[0]) {
        ddx_ctx_fail(c, ddx_errorf(DDX_E_INPUT, "unet_plain: t must be [%lld] (one timestep per image), got %s",
                                   (long long)x->shape[0], ddx_shape_str(t, buf, sizeof buf)));
        return NULL;
    }
    if ((u->num_classes > 0) != (y != NULL)) {
        ddx_ctx_fail(c, ddx_errorf(DDX_E_INPUT, "unet_plain: %s (model.num_classes is %d)",
                                   y ? "class labels given to an unconditional model" : "class labels are required",
                                   u->num_classes));
        return NULL;
    }
    const int64_t N = x->shape[0];
    ddx_tensor *s1 = block_forward(c, m, &u->enc1, x);                                  // [N, H, W, c1]
    ddx_tensor *s2 = block_forward(c, m, &u->enc2, ddx_pool2x(c, s1, DDX_POOL_MAX));    // [N, H/2, W/2, c2]
    ddx_tensor *h = block_forward(c, m, &u->enc3, ddx_pool2x(c, s2, DDX_POOL_MAX));     // [N, H/4, W/4, c3]

    const ddx_timestep_emb_params tp = {.dim = u->tdim, .freq_shift = 0.0f, .flip_sin_to_cos = true, .max_period = 10000.0f};
    ddx_tensor *e = W(ddx_timestep_emb(c, t, tp));                                   // [N, tdim]
    if (u->label_emb) e = ddx_add(c, e, ddx_embedding(c, y, W(u->label_emb)));       // [N, tdim]
    e = ddx_silu(c, ddx_linear(c, e, W(u->t_w1), W(u->t_b1)));                       // [N, tdim]
    e = ddx_linear(c, e, W(u->t_w2), W(u->t_b2));                                    // [N, c3]
    const int64_t c3 = u->t_w2->shape[0];
    e = ddx_reshape(c, e, 4, (int64_t[]){N, 1, 1, c3});                              // [N, 1, 1, c3]
    h = ddx_mul(c, h, e);                                                            // [N, H/4, W/4, c3]

    h = ddx_concat(c, ddx_upsample2x(c, h, DDX_UPSAMPLE_BILINEAR), s2);             // [N, H/2, W/2, c3 + c2]
    h = block_forward(c, m, &u->dec2, h);                                               // [N, H/2, W/2, c2]
    h = ddx_concat(c, ddx_upsample2x(c, h, DDX_UPSAMPLE_BILINEAR), s1);             // [N, H, W, c2 + c1]
    h = block_forward(c, m, &u->dec1, h);                                               // [N, H, W, c1]
    const ddx_conv2d_params one = {.stride = 1};
    return ddx_conv2d(c, h, W(u->out_w), W(u->out_b), one);                                // [N, H, W, out_channels]
}

static void unet_plain_free(void *impl) { free(impl); }

ddx_status ddx_unet_plain_create(ddx_model *m) {
    const ddx_config *cfg = &m->cfg;
    if (cfg->model.ch_mult.n != 3)
        return ddx_errorf(DDX_E_INPUT, "model.ch_mult: unet_plain has exactly 3 levels (e.g. [1, 2, 4]), got %d entries",
                          cfg->model.ch_mult.n);
    if (cfg->model.ch < 1 || cfg->model.in_channels < 1 || cfg->model.out_channels < 1 || cfg->model.num_classes < 0)
        return ddx_errorf(DDX_E_INPUT, "model: unet_plain needs ch, in_channels and out_channels >= 1 and num_classes >= 0");
    for (int i = 0; i < 3; i++)
        if (cfg->model.ch_mult.v[i] < 1 || (int64_t)cfg->model.ch * cfg->model.ch_mult.v[i] > 65536)
            return ddx_errorf(DDX_E_INPUT, "model.ch_mult: entry %d (%d) must give 1..65536 channels with model.ch %d", i,
                              cfg->model.ch_mult.v[i], cfg->model.ch);
    if (cfg->model.image_size % 4 != 0)
        return ddx_errorf(DDX_E_INPUT, "model.image_size: %d is not a multiple of 4 (unet_plain pools 2x twice)",
                          cfg->model.image_size);
    if ((int64_t)cfg->model.ch * 4 > 65536) return ddx_errorf(DDX_E_INPUT, "model.ch: %d is too large (4 * ch time features)", cfg->model.ch);

    unet_plain *u = calloc(1, sizeof *u);
    if (!u) return ddx_errorf(DDX_E_NOMEM, "unet_plain: out of host memory");
    m->impl = u;
    m->free_impl = unet_plain_free;
    m->forward = unet_plain_forward;
    u->in_channels = cfg->model.in_channels;
    u->out_channels = cfg->model.out_channels;
    u->num_classes = cfg->model.num_classes;
    u->tdim = 4 * cfg->model.ch;
    const int64_t c1 = (int64_t)cfg->model.ch * cfg->model.ch_mult.v[0], c2 = (int64_t)cfg->model.ch * cfg->model.ch_mult.v[1],
                  c3 = (int64_t)cfg->model.ch * cfg->model.ch_mult.v[2];

    // Registration order = the PyTorch module's state-dict order, so init step k is parameter k
    // in both listings.
    DDX_TRY(block_params(m, "enc1", cfg->model.in_channels, c1, &u->enc1));
    DDX_TRY(block_params(m, "enc2", c1, c2, &u->enc2));
    DDX_TRY(block_params(m, "enc3", c2, c3, &u->enc3));
    DDX_TRY(linear_param(m, "time_mlp.linear1", u->tdim, u->tdim, &u->t_w1, &u->t_b1));
    DDX_TRY(linear_param(m, "time_mlp.linear2", c3, u->tdim, &u->t_w2, &u->t_b2));
    if (cfg->model.num_classes > 0) {
        // One row more than there are classes: row num_classes is the null class that
        // classifier-free guidance trains (train.label_dropout) and samples as the unconditional branch.
        u->label_emb = ddx_model_param(m, "label_emb.weight", 2, (int64_t[]){cfg->model.num_classes + 1, u->tdim},
                                       DDX_INIT_NORMAL, 0);
        if (!u->label_emb) return param_fail("label_emb.weight");
    }
    DDX_TRY(block_params(m, "dec2", c3 + c2, c2, &u->dec2));
    DDX_TRY(block_params(m, "dec1", c2 + c1, c1, &u->dec1));
    return conv_param(m, "out", cfg->model.out_channels, 1, c1, &u->out_w, &u->out_b);
}
