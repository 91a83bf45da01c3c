// The DDPM U-Net of Ho et al. 2020 with the numerics and state-dict keys of diffusers'
// UNet2DModel. The defaults are google/ddpm-cifar10-32's configuration (freq_shift 1, [sin, cos]
// timestep embedding, Downsample2D padding 0 with the input padded right/bottom, one attention
// head over all channels); GroupNorm eps is norm_eps everywhere.
//
// Config -> diffusers: block_out_channels = model.block_out_channels, or ch * ch_mult[i] when that
// is empty; layers_per_block = num_res_blocks; level i works at image_size >> i and has attention
// (AttnDownBlock2D / AttnUpBlock2D) iff that size is in attn_resolutions; every level but the last
// downsamples, every up block but the last upsamples; up blocks have num_res_blocks + 1 resnets,
// each eating one skip. attention_head_dim (0 = None), flip_sin_to_cos, freq_shift and
// downsample_padding are diffusers' settings of the same names. The sinusoidal timestep
// embedding is ddx_config_time_width() wide and the time MLP 4x that.
//
// Parameters are registered in the state-dict order of UNet2DModel (conv_in, time_embedding,
// class_embedding, down blocks with attentions before resnets, up blocks, mid block, conv_norm_out,
// conv_out) so the flat buffer lines up with torch's parameters() order.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_impl.h"

#define UD_MAX_LEVELS DDX_CONFIG_LIST_MAX

typedef struct ud_conv {
    ddx_tensor *w, *b;   // w [Co, KH, KW, Ci] (OHWI), b [Co]
} ud_conv;

typedef struct ud_resnet {
    int cin, cout;
    ddx_tensor *norm1_w, *norm1_b, *norm2_w, *norm2_b;   // [cin], [cout]
    ud_conv conv1, conv2, shortcut;                       // shortcut.w NULL when cin == cout
    ddx_tensor *temb_w, *temb_b;                          // [cout, temb_dim], [cout]
} ud_resnet;

typedef struct ud_attn {
    ddx_tensor *norm_w, *norm_b;                      // [C]
    ddx_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b;    // [C, C], [C]
    ddx_tensor *o_w, *o_b;                            // to_out.0
} ud_attn;

typedef struct ud_block {
    int n_res;
    ud_resnet *res;    // [n_res]
    ud_attn *attn;     // [n_res] or NULL
    ud_conv sample;    // downsampler / upsampler conv; w NULL when the block has none
} ud_block;

typedef struct ud_net {
    int levels, groups, temb_dim;
    int head_dim;                                     // 0 = one head over all channels
    float eps, dropout;
    ddx_timestep_emb_params time;
    ddx_conv2d_params down_conv;                      // Downsample2D's conv
    ud_conv conv_in, conv_out;
    ddx_tensor *lin1_w, *lin1_b, *lin2_w, *lin2_b;   // time_embedding.linear_1 / linear_2
    ddx_tensor *class_emb;                            // [num_classes + 1, temb_dim] (last: null class) or NULL
    ud_block down[UD_MAX_LEVELS], up[UD_MAX_LEVELS];
    ud_resnet mid_res[2];
    ud_attn mid_attn;
    ddx_tensor *norm_out_w, *norm_out_b;
} ud_net;

static void ud_free(void *p) {
    ud_net *u = p;
    if (!u) return;
    for (int i = 0; i < UD_MAX_LEVELS; i++) {
        free(u->down[i].res);
        free(u->down[i].attn);
        free(u->up[i].res);
        free(u->up[i].attn);
    }
    free(u);
}

// ---- construction ---------------------------------------------------------------------------

// Conv weight + bias "<prefix>.weight" / "<prefix>.bias"; fan_in = Ci * K * K as in PyTorch.
static ddx_status conv_make(ddx_model *m, ud_conv *cv, const char *prefix, int ci, int co, int k) {
    const int64_t fan = (int64_t)ci * k * k;
    cv->w = ddx_model_paramf(m, 4, (int64_t[]){co, k, k, ci}, DDX_INIT_UNIFORM_FAN_IN, fan, "%s.weight", prefix);
    if (!cv->w) return DDX_E_NOMEM;
    cv->b = ddx_model_paramf(m, 1, (int64_t[]){co}, DDX_INIT_UNIFORM_FAN_IN, fan, "%s.bias", prefix);
    return cv->b ? DDX_OK : DDX_E_NOMEM;
}

static ddx_status linear_make(ddx_model *m, ddx_tensor **w, ddx_tensor **b, const char *prefix, int in, int out) {
    *w = ddx_model_paramf(m, 2, (int64_t[]){out, in}, DDX_INIT_UNIFORM_FAN_IN, in, "%s.weight", prefix);
    if (!*w) return DDX_E_NOMEM;
    *b = ddx_model_paramf(m, 1, (int64_t[]){out}, DDX_INIT_UNIFORM_FAN_IN, in, "%s.bias", prefix);
    return *b ? DDX_OK : DDX_E_NOMEM;
}

static ddx_status norm_make(ddx_model *m, ddx_tensor **w, ddx_tensor **b, const char *prefix, int c) {
    *w = ddx_model_paramf(m, 1, (int64_t[]){c}, DDX_INIT_ONES, 0, "%s.weight", prefix);
    if (!*w) return DDX_E_NOMEM;
    *b = ddx_model_paramf(m, 1, (int64_t[]){c}, DDX_INIT_ZEROS, 0, "%s.bias", prefix);
    return *b ? DDX_OK : DDX_E_NOMEM;
}

// A name prefix built with snprintf; the names here are far below the buffer size.
#define PFX(buf, ...) snprintf(buf, sizeof buf, __VA_ARGS__)

// ResnetBlock2D's parameters, in its registration order.
static ddx_status resnet_make(ddx_model *m, ud_resnet *r, const char *prefix, int cin, int cout, int temb) {
    char p[192];
    r->cin = cin;
    r->cout = cout;
    PFX(p, "%s.norm1", prefix);
    DDX_TRY(norm_make(m, &r->norm1_w, &r->norm1_b, p, cin));
    PFX(p, "%s.conv1", prefix);
    DDX_TRY(conv_make(m, &r->conv1, p, cin, cout, 3));
    PFX(p, "%s.time_emb_proj", prefix);
    DDX_TRY(linear_make(m, &r->temb_w, &r->temb_b, p, temb, cout));
    PFX(p, "%s.norm2", prefix);
    DDX_TRY(norm_make(m, &r->norm2_w, &r->norm2_b, p, cout));
    PFX(p, "%s.conv2", prefix);
    DDX_TRY(conv_make(m, &r->conv2, p, cout, cout, 3));
    if (cin != cout) {
        PFX(p, "%s.conv_shortcut", prefix);
        DDX_TRY(conv_make(m, &r->shortcut, p, cin, cout, 1));
    }
    return DDX_OK;
}

static ddx_status attn_make(ddx_model *m, ud_attn *a, const char *prefix, int c) {
    char p[192];
    PFX(p, "%s.group_norm", prefix);
    DDX_TRY(norm_make(m, &a->norm_w, &a->norm_b, p, c));
    PFX(p, "%s.to_q", prefix);
    DDX_TRY(linear_make(m, &a->q_w, &a->q_b, p, c, c));
    PFX(p, "%s.to_k", prefix);
    DDX_TRY(linear_make(m, &a->k_w, &a->k_b, p, c, c));
    PFX(p, "%s.to_v", prefix);
    DDX_TRY(linear_make(m, &a->v_w, &a->v_b, p, c, c));
    PFX(p, "%s.to_out.0", prefix);
    return linear_make(m, &a->o_w, &a->o_b, p, c, c);
}

static ddx_status block_alloc(ud_block *b, int n_res, bool attn) {
    b->n_res = n_res;
    b->res = calloc((size_t)n_res, sizeof *b->res);
    b->attn = attn ? calloc((size_t)n_res, sizeof *b->attn) : NULL;
    if (!b->res || (attn && !b->attn)) return ddx_errorf(DDX_E_NOMEM, "unet_ddpm: out of host memory");
    return DDX_OK;
}

// Settings UNet2DModel cannot be built from; each names the key to fix.
static ddx_status check_cfg(const ddx_config *cfg) {
    const bool own = cfg->model.block_out_channels.n > 0;
    const char *wkey = own ? "model.block_out_channels" : "model.ch_mult";
    const int L = ddx_config_levels(cfg);
    if (L < 1 || L > UD_MAX_LEVELS)
        return ddx_errorf(DDX_E_INPUT, "%s: unet_ddpm needs 1 to %d levels, got %d", wkey, UD_MAX_LEVELS, L);
    if (cfg->model.in_channels < 1 || cfg->model.out_channels < 1)
        return ddx_errorf(DDX_E_INPUT, "model.%s: must be at least 1, got %d",
                          cfg->model.in_channels < 1 ? "in_channels" : "out_channels",
                          cfg->model.in_channels < 1 ? cfg->model.in_channels : cfg->model.out_channels);
    // The sinusoidal embedding has tw/2 sin and tw/2 cos columns and divides by tw/2 - freq_shift.
    const int tw = ddx_config_time_width(cfg);
    if (cfg->model.freq_shift < 0 || tw < 2 || tw % 2 != 0 || tw / 2 == cfg->model.freq_shift)
        return ddx_errorf(DDX_E_INPUT,
                          "%s: the timestep embedding needs an even width whose half differs from model.freq_shift %d, "
                          "got %d",
                          own ? "model.block_out_channels" : "model.ch", cfg->model.freq_shift, tw);
    if (cfg->model.num_res_blocks < 1)
        return ddx_errorf(DDX_E_INPUT, "model.num_res_blocks: must be at least 1, got %d", cfg->model.num_res_blocks);
    if (cfg->model.groups < 1)
        return ddx_errorf(DDX_E_INPUT, "model.groups: must be at least 1, got %d", cfg->model.groups);
    if (cfg->model.num_classes < 0)
        return ddx_errorf(DDX_E_INPUT, "model.num_classes: must be 0 (unconditional) or more, got %d",
                          cfg->model.num_classes);
    if (!(cfg->model.norm_eps > 0.0))
        return ddx_errorf(DDX_E_INPUT, "model.norm_eps: must be positive, got %g", cfg->model.norm_eps);
    if (!(cfg->model.dropout >= 0.0 && cfg->model.dropout < 1.0))
        return ddx_errorf(DDX_E_INPUT, "model.dropout: must be in [0, 1), got %g", cfg->model.dropout);
    if (cfg->model.downsample_padding != 0 && cfg->model.downsample_padding != 1)
        return ddx_errorf(DDX_E_INPUT,
                          "model.downsample_padding: must be 0 (pad right/bottom) or 1 (pad every side), got %d",
                          cfg->model.downsample_padding);
    if (cfg->model.attention_head_dim < 0)
        return ddx_errorf(DDX_E_INPUT, "model.attention_head_dim: must be 0 (one head) or more, got %d",
                          cfg->model.attention_head_dim);
    if (cfg->model.image_size < 1 || cfg->model.image_size % (1 << (L - 1)) != 0)
        return ddx_errorf(DDX_E_INPUT,
                          "model.image_size: %d is not divisible by 2^%d (%s has %d levels, each but the "
                          "last halves the size); pick a multiple of %d or fewer levels",
                          cfg->model.image_size, L - 1, wkey, L, 1 << (L - 1));
    if (tw > 16384)
        return ddx_errorf(DDX_E_INPUT, "%s: %d gives a %lld-wide time embedding; at most 16384",
                          own ? "model.block_out_channels" : "model.ch", tw, 4LL * tw);
    for (int i = 0; i < L; i++) {
        const int64_t c = ddx_config_level_width(cfg, i);
        if ((!own && cfg->model.ch_mult.v[i] < 1) || c < 1 || c > 65536)
            return ddx_errorf(DDX_E_INPUT, "%s: level %d has %lld channels; must be 1 to 65536", wkey, i, (long long)c);
        if (c % cfg->model.groups != 0) {
            if (own)
                return ddx_errorf(DDX_E_INPUT,
                                  "model.groups: %d does not divide the %lld channels of level %d "
                                  "(model.block_out_channels)",
                                  cfg->model.groups, (long long)c, i);
            return ddx_errorf(DDX_E_INPUT,
                              "model.groups: %d does not divide the %lld channels of level %d (model.ch %d x "
                              "ch_mult %d)",
                              cfg->model.groups, (long long)c, i, cfg->model.ch, cfg->model.ch_mult.v[i]);
        }
    }
    for (int j = 0; j < cfg->model.attn_resolutions.n; j++) {
        bool hit = false;
        for (int i = 0; i < L; i++) hit |= (cfg->model.image_size >> i) == cfg->model.attn_resolutions.v[j];
        if (!hit)
            return ddx_errorf(DDX_E_INPUT,
                              "model.attn_resolutions: %d is not the feature-map size of any level (image_size %d, "
                              "%d levels)",
                              cfg->model.attn_resolutions.v[j], cfg->model.image_size, L);
    }
    // diffusers makes channels / head_dim heads of head_dim each; a remainder would change the
    // projections' shapes, which ddx does not model.
    const int hd = cfg->model.attention_head_dim;
    for (int i = 0; hd > 0 && i < L; i++) {
        bool attn = i == L - 1;   // the mid block
        for (int j = 0; j < cfg->model.attn_resolutions.n; j++)
            attn |= (cfg->model.image_size >> i) == cfg->model.attn_resolutions.v[j];
        if (attn && ddx_config_level_width(cfg, i) % hd != 0)
            return ddx_errorf(DDX_E_INPUT,
                              "model.attention_head_dim: %d does not divide the %lld channels of level %d, which has "
                              "attention",
                              hd, (long long)ddx_config_level_width(cfg, i), i);
    }
    return DDX_OK;
}

static bool level_has_attn(const ddx_config *cfg, int level) {
    const int size = cfg->model.image_size >> level;
    for (int j = 0; j < cfg->model.attn_resolutions.n; j++)
        if (cfg->model.attn_resolutions.v[j] == size) return true;
    return false;
}

static ddx_tensor *ud_forward(ddx_ctx *c, const ddx_model *m, ddx_tensor *x, ddx_tensor *t, ddx_tensor *y);

static ddx_status ud_build(ddx_model *m, ud_net *u) {
    const ddx_config *cfg = &m->cfg;
    const int L = ddx_config_levels(cfg), nrb = cfg->model.num_res_blocks, tw = ddx_config_time_width(cfg);
    const int temb = 4 * tw;
    int width[UD_MAX_LEVELS];
    for (int i = 0; i < L; i++) width[i] = (int)ddx_config_level_width(cfg, i);
    u->levels = L;
    u->groups = cfg->model.groups;
    u->temb_dim = temb;
    u->head_dim = cfg->model.attention_head_dim;
    u->eps = (float)cfg->model.norm_eps;
    u->dropout = (float)cfg->model.dropout;
    u->time = (ddx_timestep_emb_params){.dim = tw,
                                        .freq_shift = (float)cfg->model.freq_shift,
                                        .flip_sin_to_cos = cfg->model.flip_sin_to_cos,
                                        .max_period = 10000.0f};
    // Downsample2D: padding 0 pads the input right/bottom by one (F.pad(x, (0, 1, 0, 1))), padding
    // 1 is the conv's own symmetric padding; both halve an even side.
    if (cfg->model.downsample_padding == 0)
        u->down_conv = (ddx_conv2d_params){.stride = 2, .pad_bottom = 1, .pad_right = 1};
    else
        u->down_conv = (ddx_conv2d_params){.stride = 2, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1};

    DDX_TRY(conv_make(m, &u->conv_in, "conv_in", cfg->model.in_channels, width[0], 3));
    DDX_TRY(linear_make(m, &u->lin1_w, &u->lin1_b, "time_embedding.linear_1", tw, temb));
    DDX_TRY(linear_make(m, &u->lin2_w, &u->lin2_b, "time_embedding.linear_2", temb, temb));
    if (cfg->model.num_classes > 0) {
        // diffusers' num_class_embeds is num_classes + 1: the last row is the null class of
        // classifier-free guidance (train.label_dropout trains it; the sampler's unconditional branch uses it).
        u->class_emb = ddx_model_param(m, "class_embedding.weight", 2, (int64_t[]){cfg->model.num_classes + 1, temb},
                                       DDX_INIT_NORMAL, 0);
        if (!u->class_emb) return DDX_E_NOMEM;
    }

    // The skip channels in the order the forward pushes them; up blocks pop from the end.
    int skip[1 + UD_MAX_LEVELS * 65];
    int n_skip = 0;
    skip[n_skip++] = width[0];
    char p[192];
    int cur = width[0];
    for (int i = 0; i < L; i++) {
        ud_block *b = &u->down[i];
        const bool attn = level_has_attn(cfg, i);
        DDX_TRY(block_alloc(b, nrb, attn));
        // diffusers registers attentions before resnets in the Attn blocks.
        for (int r = 0; attn && r < nrb; r++) {
            PFX(p, "down_blocks.%d.attentions.%d", i, r);
            DDX_TRY(attn_make(m, &b->attn[r], p, width[i]));
        }
        for (int r = 0; r < nrb; r++) {
            PFX(p, "down_blocks.%d.resnets.%d", i, r);
            DDX_TRY(resnet_make(m, &b->res[r], p, cur, width[i], temb));
            cur = width[i];
            skip[n_skip++] = cur;
        }
        if (i < L - 1) {
            PFX(p, "down_blocks.%d.downsamplers.0.conv", i);
            DDX_TRY(conv_make(m, &b->sample, p, cur, cur, 3));
            skip[n_skip++] = cur;
        }
    }
    for (int j = 0; j < L; j++) {
        const int lvl = L - 1 - j;
        ud_block *b = &u->up[j];
        const bool attn = level_has_attn(cfg, lvl);
        DDX_TRY(block_alloc(b, nrb + 1, attn));
        for (int r = 0; attn && r <= nrb; r++) {
            PFX(p, "up_blocks.%d.attentions.%d", j, r);
            DDX_TRY(attn_make(m, &b->attn[r], p, width[lvl]));
        }
        for (int r = 0; r <= nrb; r++) {
            PFX(p, "up_blocks.%d.resnets.%d", j, r);
            const int sc = skip[--n_skip];
            DDX_TRY(resnet_make(m, &b->res[r], p, cur + sc, width[lvl], temb));
            cur = width[lvl];
        }
        if (j < L - 1) {
            PFX(p, "up_blocks.%d.upsamplers.0.conv", j);
            DDX_TRY(conv_make(m, &b->sample, p, cur, cur, 3));
        }
    }
    if (n_skip != 0) return ddx_errorf(DDX_E_INTERNAL, "unet_ddpm: %d skip connections left unused", n_skip);
    // UNet2DModel assigns mid_block after up_blocks, which is where state_dict() lists it.
    DDX_TRY(attn_make(m, &u->mid_attn, "mid_block.attentions.0", width[L - 1]));
    DDX_TRY(resnet_make(m, &u->mid_res[0], "mid_block.resnets.0", width[L - 1], width[L - 1], temb));
    DDX_TRY(resnet_make(m, &u->mid_res[1], "mid_block.resnets.1", width[L - 1], width[L - 1], temb));
    DDX_TRY(norm_make(m, &u->norm_out_w, &u->norm_out_b, "conv_norm_out", width[0]));
    DDX_TRY(conv_make(m, &u->conv_out, "conv_out", width[0], cfg->model.out_channels, 3));
    return DDX_OK;
}

ddx_status ddx_unet_ddpm_create(ddx_model *m) {
    DDX_TRY(check_cfg(&m->cfg));
    ud_net *u = calloc(1, sizeof *u);
    if (!u) return ddx_errorf(DDX_E_NOMEM, "unet_ddpm: out of host memory");
    m->impl = u;
    m->free_impl = ud_free;   // ddx_model_create frees a half-built model through this
    m->forward = ud_forward;
    return ud_build(m, u);
}

// ---- forward --------------------------------------------------------------------------------

static const ddx_conv2d_params CONV_SAME = {.stride = 1, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1};
static const ddx_conv2d_params CONV_1X1 = {.stride = 1};

// A parameter (or f32 tensor) in the dtype the network computes in (models/model_impl.h).
#define W(p) ddx_model_w(c, m, (p))

// temb_act: SiLU(temb) [N, temb_dim], shared by every resnet of the pass.
static ddx_tensor *resnet_fwd(ddx_ctx *c, const ddx_model *m, const ud_resnet *r, ddx_tensor *x, ddx_tensor *temb_act) {
    if (!x) return NULL;
    const ud_net *u = m->impl;
    const int64_t N = x->shape[0];
    ddx_tensor *h = ddx_group_norm(c, x, r->norm1_w, r->norm1_b, u->groups, u->eps, true);   // [N, H, W, cin]
    h = ddx_conv2d(c, h, W(r->conv1.w), W(r->conv1.b), CONV_SAME);                          // [N, H, W, cout]
    ddx_tensor *tp = ddx_linear(c, temb_act, W(r->temb_w), W(r->temb_b));                   // [N, cout]
    tp = ddx_reshape(c, tp, 4, (int64_t[]){N, 1, 1, r->cout});                               // [N, 1, 1, cout]
    h = ddx_add(c, h, tp);                                                                   // [N, H, W, cout]
    h = ddx_group_norm(c, h, r->norm2_w, r->norm2_b, u->groups, u->eps, true);
    h = ddx_dropout(c, h, u->dropout);
    ddx_tensor *s = r->shortcut.w ? ddx_conv2d(c, x, W(r->shortcut.w), W(r->shortcut.b), CONV_1X1) : x;
    // conv2(h) + s with the residual added as conv2's output is stored.
    return ddx_conv2d_add(c, h, W(r->conv2.w), W(r->conv2.b), CONV_SAME, s);               // [N, H, W, cout]
}

// diffusers Attention with a GroupNorm, C / head_dim heads (attention_head_dim None -> one head of
// all C channels), scale 1/sqrt(head_dim), residual connection, rescale factor 1.
static ddx_tensor *attn_fwd(ddx_ctx *c, const ddx_model *m, const ud_attn *a, ddx_tensor *x) {
    if (!x) return NULL;
    const ud_net *u = m->impl;
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    ddx_tensor *h = ddx_group_norm(c, x, a->norm_w, a->norm_b, u->groups, u->eps, false);   // [N, H, W, C]
    h = ddx_reshape(c, h, 3, (int64_t[]){N, H * W, C});                                     // [N, L, C]
    ddx_tensor *q = ddx_linear(c, h, W(a->q_w), W(a->q_b));                                 // [N, L, C]
    ddx_tensor *k = ddx_linear(c, h, W(a->k_w), W(a->k_b));                                 // [N, L, C]
    ddx_tensor *v = ddx_linear(c, h, W(a->v_w), W(a->v_b));                                 // [N, L, C]
    const int heads = u->head_dim > 0 ? (int)(C / u->head_dim) : 1;
    ddx_tensor *o = ddx_attention(c, q, k, v, heads, 0.0f);                                 // [N, L, C]
    o = ddx_linear(c, o, W(a->o_w), W(a->o_b));                                             // [N, L, C]
    o = ddx_reshape(c, o, 4, (int64_t[]){N, H, W, C});                                      // [N, H, W, C]
    return ddx_add(c, o, x);
}

static ddx_tensor *fail_input(ddx_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ddx_tensor *fail_input(ddx_ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ddx_status st = ddx_verrorf(DDX_E_INPUT, fmt, ap);
    va_end(ap);
    ddx_ctx_fail(c, st);
    return NULL;
}

static ddx_tensor *ud_forward(ddx_ctx *c, const ddx_model *m, ddx_tensor *x, ddx_tensor *t, ddx_tensor *y) {
    const ud_net *u = m->impl;
    if (ddx_ctx_status(c) != DDX_OK) return NULL;
    if (!x || !t) return fail_input(c, "unet_ddpm forward: x and t are required");
    char bx[64], bt[64];
    const int64_t mult = (int64_t)1 << (u->levels - 1);
    if (x->ndim != 4 || x->shape[3] != m->cfg.model.in_channels || x->shape[1] < 1 || x->shape[2] < 1 ||
        x->shape[1] % mult != 0 || x->shape[2] % mult != 0)
        return fail_input(c,
                          "unet_ddpm forward: x %s must be [N, H, W, %d] with H and W multiples of %lld "
                          "(the U-Net has %d levels)",
                          ddx_shape_str(x, bx, sizeof bx), m->cfg.model.in_channels, (long long)mult, u->levels);
    const int64_t N = x->shape[0];
    if (t->ndim != 1 || t->shape[0] != N)
        return fail_input(c, "unet_ddpm forward: t %s must be [%lld], one timestep per image of x %s",
                          ddx_shape_str(t, bt, sizeof bt), (long long)N, ddx_shape_str(x, bx, sizeof bx));
    if (u->class_emb && !y)
        return fail_input(c, "unet_ddpm forward: model.num_classes is %d, so class labels y [N] are required",
                          m->cfg.model.num_classes);
    if (!u->class_emb && y)
        return fail_input(c, "unet_ddpm forward: class labels given to an unconditional model (model.num_classes 0)");
    if (y && (y->ndim != 1 || y->shape[0] != N || y->dtype != DDX_I32))
        return fail_input(c, "unet_ddpm forward: y must be an i32 [%lld] tensor of class labels, got %s %s",
                          (long long)N, ddx_dtype_name(y->dtype), ddx_shape_str(y, bt, sizeof bt));

    // Time (and class) embedding; SiLU(temb) once, since every resnet projects the same activation.
    ddx_tensor *temb = W(ddx_timestep_emb(c, t, u->time));         // [N, tw], computed in f32
    temb = ddx_linear(c, temb, W(u->lin1_w), W(u->lin1_b));         // [N, 4tw]
    temb = ddx_silu(c, temb);
    temb = ddx_linear(c, temb, W(u->lin2_w), W(u->lin2_b));         // [N, 4tw]
    if (u->class_emb) temb = ddx_add(c, temb, ddx_embedding(c, y, W(u->class_emb)));
    ddx_tensor *temb_act = ddx_silu(c, temb);                       // [N, 4tw]

    ddx_tensor *skip[1 + UD_MAX_LEVELS * 65];
    int n_skip = 0;
    ddx_tensor *h = ddx_conv2d(c, x, W(u->conv_in.w), W(u->conv_in.b), CONV_SAME);   // [N, H, W, C0]
    skip[n_skip++] = h;
    for (int i = 0; i < u->levels; i++) {
        const ud_block *b = &u->down[i];
        for (int r = 0; r < b->n_res; r++) {
            h = resnet_fwd(c, m, &b->res[r], h, temb_act);
            if (b->attn) h = attn_fwd(c, m, &b->attn[r], h);
            skip[n_skip++] = h;
        }
        if (b->sample.w) {
            h = ddx_conv2d(c, h, W(b->sample.w), W(b->sample.b), u->down_conv);   // [N, H/2, W/2, C]
            skip[n_skip++] = h;
        }
    }
    h = resnet_fwd(c, m, &u->mid_res[0], h, temb_act);
    h = attn_fwd(c, m, &u->mid_attn, h);
    h = resnet_fwd(c, m, &u->mid_res[1], h, temb_act);
    for (int j = 0; j < u->levels; j++) {
        const ud_block *b = &u->up[j];
        for (int r = 0; r < b->n_res; r++) {
            h = ddx_concat(c, h, skip[--n_skip]);   // torch.cat([hidden, skip], dim=1)
            h = resnet_fwd(c, m, &b->res[r], h, temb_act);
            if (b->attn) h = attn_fwd(c, m, &b->attn[r], h);
        }
        if (b->sample.w) {
            h = ddx_upsample2x(c, h, DDX_UPSAMPLE_NEAREST);                 // [N, 2H, 2W, C]
            h = ddx_conv2d(c, h, W(b->sample.w), W(b->sample.b), CONV_SAME);
        }
    }
    h = ddx_group_norm(c, h, u->norm_out_w, u->norm_out_b, u->groups, u->eps, true);   // [N, H, W, C0]
    return ddx_conv2d(c, h, W(u->conv_out.w), W(u->conv_out.b), CONV_SAME);             // [N, H, W, out]
}
