// The resampling family: upsample2x (nearest, bilinear), pool2x (max, average), pool2d (any
// window, stride and padding; max or average) and resize (bilinear to any size).
// Front-ends (shape checks) and the CPU fp32 reference, forward and backward side by side.
// Semantics follow PyTorch (NHWC layout here, NCHW there).
#include <math.h>

#include "op_impl.h"
#include "threads.h"

// =========================================================================================
// upsample2x: nearest, or bilinear with align_corners=False (F.interpolate(scale_factor=2)).
// =========================================================================================
ddx_tensor *ddx_upsample2x(ddx_ctx *c, ddx_tensor *x, ddx_upsample_mode mode) {
    if (!ddx_op_ok(c, "upsample2x", 1, (ddx_tensor *[]){x})) return NULL;
    char sx[DDX_SHAPE_BUF];
    if (x->ndim != 4 || !ddx_is_float_dtype(x->dtype))
        return ddx_op_fail(c, DDX_E_INPUT, "upsample2x: input must be a float [N, H, W, C] tensor, got %s %s",
                           ddx_dtype_name(x->dtype), ddx_shape_str(x, sx, sizeof sx));
    if (mode != DDX_UPSAMPLE_NEAREST && mode != DDX_UPSAMPLE_BILINEAR)
        return ddx_op_fail(c, DDX_E_INPUT, "upsample2x: unknown mode %d (nearest or bilinear)", (int)mode);
    ddx_op_params p = {.upsample2x = {.mode = mode}};
    return ddx_op_run(c, DDX_OP_UPSAMPLE2X, 1, (ddx_tensor *[]){x}, &p, x->dtype, 4,
                      (int64_t[]){x->shape[0], 2 * x->shape[1], 2 * x->shape[2], x->shape[3]});
}

// One output coordinate's two source taps and weights, PyTorch's area_pixel_compute_source_index
// for scale 1/2 with align_corners=False: src = (dst + 0.5) / 2 - 0.5, clamped at 0, the upper
// tap clamped at the edge. All values are exact in fp32 (multiples of 1/4).
typedef struct bilin_tap {
    int64_t i0, i1;
    float w0, w1;
} bilin_tap;

static bilin_tap bilin_tap_of(int64_t dst, int64_t in_size) {
    float src = ((float)dst + 0.5f) * 0.5f - 0.5f;
    if (src < 0.0f) src = 0.0f;
    bilin_tap t;
    t.i0 = (int64_t)src;
    t.i1 = t.i0 + (t.i0 < in_size - 1 ? 1 : 0);
    t.w1 = src - (float)t.i0;
    t.w0 = 1.0f - t.w1;
    return t;
}

ddx_status ddx_cpu_upsample2x_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    const ddx_tensor *xt = n->in[0];
    DDX_TRY(ddx_cpu_need_f32("upsample2x", xt, "input"));
    const int64_t N = xt->shape[0], H = xt->shape[1], W = xt->shape[2], C = xt->shape[3];
    const int64_t Ho = 2 * H, Wo = 2 * W;
    const float *x = ddx_f32c(xt);   // [N, H, W, C]
    float *y = ddx_f32(n->out);      // [N, 2H, 2W, C]
    const bool bilinear = n->p.upsample2x.mode == DDX_UPSAMPLE_BILINEAR;
    for (int64_t b = 0; b < N; b++) {
        const float *xb = x + b * H * W * C;
        for (int64_t oy = 0; oy < Ho; oy++) {
            bilin_tap ty = bilin_tap_of(oy, H);
            for (int64_t ox = 0; ox < Wo; ox++) {
                float *yo = y + ((b * Ho + oy) * Wo + ox) * C;
                if (!bilinear) {
                    const float *xi = xb + ((oy / 2) * W + ox / 2) * C;
                    for (int64_t ch = 0; ch < C; ch++) yo[ch] = xi[ch];
                    continue;
                }
                bilin_tap tx = bilin_tap_of(ox, W);
                const float *p00 = xb + (ty.i0 * W + tx.i0) * C, *p01 = xb + (ty.i0 * W + tx.i1) * C;
                const float *p10 = xb + (ty.i1 * W + tx.i0) * C, *p11 = xb + (ty.i1 * W + tx.i1) * C;
                // Same association as PyTorch's CPU kernel, so fp32 results agree closely.
                for (int64_t ch = 0; ch < C; ch++)
                    yo[ch] = ty.w0 * (tx.w0 * p00[ch] + tx.w1 * p01[ch]) + ty.w1 * (tx.w0 * p10[ch] + tx.w1 * p11[ch]);
            }
        }
    }
    return DDX_OK;
}

ddx_status ddx_cpu_upsample2x_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);
    if (!gx) return DDX_OK;
    const ddx_tensor *xt = n->in[0];
    const int64_t N = xt->shape[0], H = xt->shape[1], W = xt->shape[2], C = xt->shape[3];
    const int64_t Ho = 2 * H, Wo = 2 * W;
    const float *dy = ddx_f32c(n->out->grad);   // [N, 2H, 2W, C]
    float *dx = ddx_f32(gx);                    // [N, H, W, C]
    const bool bilinear = n->p.upsample2x.mode == DDX_UPSAMPLE_BILINEAR;
    for (int64_t b = 0; b < N; b++) {
        float *db = dx + b * H * W * C;
        for (int64_t oy = 0; oy < Ho; oy++) {
            bilin_tap ty = bilin_tap_of(oy, H);
            for (int64_t ox = 0; ox < Wo; ox++) {
                const float *g = dy + ((b * Ho + oy) * Wo + ox) * C;
                if (!bilinear) {
                    float *d = db + ((oy / 2) * W + ox / 2) * C;
                    for (int64_t ch = 0; ch < C; ch++) d[ch] += g[ch];
                    continue;
                }
                bilin_tap tx = bilin_tap_of(ox, W);
                float *d00 = db + (ty.i0 * W + tx.i0) * C, *d01 = db + (ty.i0 * W + tx.i1) * C;
                float *d10 = db + (ty.i1 * W + tx.i0) * C, *d11 = db + (ty.i1 * W + tx.i1) * C;
                const float w00 = ty.w0 * tx.w0, w01 = ty.w0 * tx.w1, w10 = ty.w1 * tx.w0, w11 = ty.w1 * tx.w1;
                // Taps may coincide at the edges; sequential += handles that.
                for (int64_t ch = 0; ch < C; ch++) {
                    d00[ch] += w00 * g[ch];
                    d01[ch] += w01 * g[ch];
                    d10[ch] += w10 * g[ch];
                    d11[ch] += w11 * g[ch];
                }
            }
        }
    }
    return DDX_OK;
}

// =========================================================================================
// pool2x: 2x2 window, stride 2; max or average.
// =========================================================================================
ddx_tensor *ddx_pool2x(ddx_ctx *c, ddx_tensor *x, ddx_pool_mode mode) {
    if (!ddx_op_ok(c, "pool2x", 1, (ddx_tensor *[]){x})) return NULL;
    char sx[DDX_SHAPE_BUF];
    if (x->ndim != 4 || !ddx_is_float_dtype(x->dtype))
        return ddx_op_fail(c, DDX_E_INPUT, "pool2x: input must be a float [N, H, W, C] tensor, got %s %s",
                           ddx_dtype_name(x->dtype), ddx_shape_str(x, sx, sizeof sx));
    if (x->shape[1] % 2 != 0 || x->shape[2] % 2 != 0 || x->shape[1] == 0 || x->shape[2] == 0)
        return ddx_op_fail(c, DDX_E_INPUT, "pool2x: H and W of %s must be even and positive (pad or crop first)",
                           ddx_shape_str(x, sx, sizeof sx));
    if (mode != DDX_POOL_MAX && mode != DDX_POOL_AVG)
        return ddx_op_fail(c, DDX_E_INPUT, "pool2x: unknown mode %d (max or avg)", (int)mode);
    ddx_op_params p = {.pool2x = {.mode = mode}};
    return ddx_op_run(c, DDX_OP_POOL2X, 1, (ddx_tensor *[]){x}, &p, x->dtype, 4,
                      (int64_t[]){x->shape[0], x->shape[1] / 2, x->shape[2] / 2, x->shape[3]});
}

// Window offset (0..3, row-major: (0,0) (0,1) (1,0) (1,1)) of the max. Ties keep the first and
// a NaN wins (`v > best || isnan(v)`, as PyTorch's max_pool2d), so the gradient goes where
// PyTorch sends it.
static int pool_argmax(const float *x00, int64_t row, int64_t C) {
    const float v[4] = {x00[0], x00[C], x00[row], x00[row + C]};
    int best = 0;
    for (int k = 1; k < 4; k++)
        if (v[k] > v[best] || isnan(v[k])) best = k;
    return best;
}

ddx_status ddx_cpu_pool2x_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    const ddx_tensor *xt = n->in[0];
    DDX_TRY(ddx_cpu_need_f32("pool2x", xt, "input"));
    const int64_t N = xt->shape[0], H = xt->shape[1], W = xt->shape[2], C = xt->shape[3];
    const int64_t Ho = H / 2, Wo = W / 2, row = W * C;
    const float *x = ddx_f32c(xt);   // [N, H, W, C]
    float *y = ddx_f32(n->out);      // [N, H/2, W/2, C]
    const bool is_max = n->p.pool2x.mode == DDX_POOL_MAX;
    for (int64_t b = 0; b < N; b++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                const float *xi = x + ((b * H + 2 * oy) * W + 2 * ox) * C;
                float *yo = y + ((b * Ho + oy) * Wo + ox) * C;
                for (int64_t ch = 0; ch < C; ch++) {
                    const float *p = xi + ch;
                    if (is_max) {
                        const int k = pool_argmax(p, row, C);
                        yo[ch] = p[(k >> 1) * row + (k & 1) * C];
                    } else {
                        yo[ch] = ((p[0] + p[C]) + (p[row] + p[row + C])) * 0.25f;
                    }
                }
            }
    return DDX_OK;
}

ddx_status ddx_cpu_pool2x_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);
    if (!gx) return DDX_OK;
    const ddx_tensor *xt = n->in[0];
    const int64_t N = xt->shape[0], H = xt->shape[1], W = xt->shape[2], C = xt->shape[3];
    const int64_t Ho = H / 2, Wo = W / 2, row = W * C;
    const float *x = ddx_f32c(xt);              // [N, H, W, C]
    const float *dy = ddx_f32c(n->out->grad);   // [N, H/2, W/2, C]
    float *dx = ddx_f32(gx);
    const bool is_max = n->p.pool2x.mode == DDX_POOL_MAX;
    for (int64_t b = 0; b < N; b++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                const int64_t base = ((b * H + 2 * oy) * W + 2 * ox) * C;
                const float *g = dy + ((b * Ho + oy) * Wo + ox) * C;
                for (int64_t ch = 0; ch < C; ch++) {
                    float *d = dx + base + ch;
                    if (is_max) {
                        // The argmax is recomputed from the input rather than saved: the input
                        // is alive until the step ends, and this saves an index tensor.
                        const int k = pool_argmax(x + base + ch, row, C);
                        d[(k >> 1) * row + (k & 1) * C] += g[ch];
                    } else {
                        const float q = 0.25f * g[ch];
                        d[0] += q;
                        d[C] += q;
                        d[row] += q;
                        d[row + C] += q;
                    }
                }
            }
    return DDX_OK;
}

// =========================================================================================
// pool2d: kh x kw window, stride, symmetric padding; max or average (PyTorch's max_pool2d /
// avg_pool2d, floor mode).
// =========================================================================================
static int64_t pool_out_size(int64_t in, int k, int s, int pad) { return (in + 2 * (int64_t)pad - k) / s + 1; }

ddx_tensor *ddx_pool2d(ddx_ctx *c, ddx_tensor *x, ddx_pool2d_params p) {
    if (!ddx_op_ok(c, "pool2d", 1, (ddx_tensor *[]){x})) return NULL;
    char sx[DDX_SHAPE_BUF];
    if (x->ndim != 4 || !ddx_is_float_dtype(x->dtype))
        return ddx_op_fail(c, DDX_E_INPUT, "pool2d: input must be a float [N, H, W, C] tensor, got %s %s",
                           ddx_dtype_name(x->dtype), ddx_shape_str(x, sx, sizeof sx));
    if (p.mode != DDX_POOL_MAX && p.mode != DDX_POOL_AVG)
        return ddx_op_fail(c, DDX_E_INPUT, "pool2d: unknown mode %d (max or avg)", (int)p.mode);
    if (p.kh < 1 || p.kw < 1 || p.stride < 1 || p.pad_h < 0 || p.pad_w < 0 || 2 * p.pad_h > p.kh ||
        2 * p.pad_w > p.kw)
        return ddx_op_fail(c, DDX_E_INPUT,
                           "pool2d: kernel %dx%d, stride %d, padding %d,%d: the kernel and stride must be positive "
                           "and the padding at most half the kernel",
                           p.kh, p.kw, p.stride, p.pad_h, p.pad_w);
    if (x->shape[1] + 2 * (int64_t)p.pad_h < p.kh || x->shape[2] + 2 * (int64_t)p.pad_w < p.kw)
        return ddx_op_fail(c, DDX_E_INPUT, "pool2d: kernel %dx%d does not fit input %s with padding %d,%d", p.kh, p.kw,
                           ddx_shape_str(x, sx, sizeof sx), p.pad_h, p.pad_w);
    ddx_op_params op = {.pool2d = p};
    return ddx_op_run(c, DDX_OP_POOL2D, 1, (ddx_tensor *[]){x}, &op, x->dtype, 4,
                      (int64_t[]){x->shape[0], pool_out_size(x->shape[1], p.kh, p.stride, p.pad_h),
                                  pool_out_size(x->shape[2], p.kw, p.stride, p.pad_w), x->shape[3]});
}

ddx_tensor *ddx_global_avg_pool(ddx_ctx *c, ddx_tensor *x) {
    if (!ddx_op_ok(c, "global_avg_pool", 1, (ddx_tensor *[]){x})) return NULL;
    if (x->ndim != 4 || x->shape[1] < 1 || x->shape[2] < 1 || x->shape[1] > INT32_MAX || x->shape[2] > INT32_MAX) {
        char sx[DDX_SHAPE_BUF];
        return ddx_op_fail(c, DDX_E_INPUT, "global_avg_pool: input must be a non-empty [N, H, W, C] tensor, got %s",
                           ddx_shape_str(x, sx, sizeof sx));
    }
    ddx_pool2d_params p = {.mode = DDX_POOL_AVG, .kh = (int)x->shape[1], .kw = (int)x->shape[2], .stride = 1};
    return ddx_pool2d(c, x, p);
}

// The window of output (oy, ox) clipped to the input: rows [y0, y1), columns [x0, x1).
typedef struct pool_win {
    int64_t y0, y1, x0, x1;
} pool_win;

static pool_win pool_win_of(const ddx_pool2d_params *p, int64_t H, int64_t W, int64_t oy, int64_t ox) {
    pool_win w;
    w.y0 = oy * p->stride - p->pad_h;
    w.x0 = ox * p->stride - p->pad_w;
    w.y1 = w.y0 + p->kh < H ? w.y0 + p->kh : H;
    w.x1 = w.x0 + p->kw < W ? w.x0 + p->kw : W;
    if (w.y0 < 0) w.y0 = 0;
    if (w.x0 < 0) w.x0 = 0;
    return w;
}

// PyTorch's divisor: the whole kernel with count_include_pad (the window never reaches past
// the padding in floor mode with pad <= k/2), else the pixels inside the input.
static float pool_divisor(const ddx_pool2d_params *p, const pool_win *w) {
    return p->count_include_pad ? (float)(p->kh * p->kw) : (float)((w->y1 - w->y0) * (w->x1 - w->x0));
}

typedef struct pool2d_job {
    const ddx_pool2d_params *p;
    int64_t H, W, C, Ho, Wo;
    const float *x;
    float *y;
} pool2d_job;

// Output rows [r0, r1) of [N*Ho]: channels innermost so the loops vectorise over C.
static void pool2d_rows(void *arg, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const pool2d_job *j = arg;
    const int64_t H = j->H, W = j->W, C = j->C;
    const bool is_max = j->p->mode == DDX_POOL_MAX;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t b = r / j->Ho, oy = r % j->Ho;
        for (int64_t ox = 0; ox < j->Wo; ox++) {
            const pool_win w = pool_win_of(j->p, H, W, oy, ox);
            float *restrict yo = j->y + (r * j->Wo + ox) * C;
            for (int64_t ch = 0; ch < C; ch++) yo[ch] = is_max ? -INFINITY : 0.0f;
            for (int64_t iy = w.y0; iy < w.y1; iy++)
                for (int64_t ix = w.x0; ix < w.x1; ix++) {
                    const float *restrict xi = j->x + ((b * H + iy) * W + ix) * C;
                    if (is_max) {
                        // A NaN wins, as in PyTorch's max_pool2d. Written as a select (v != v is
                        // isnan) so that GCC vectorises it over the channels.
                        for (int64_t ch = 0; ch < C; ch++) {
                            const float v = xi[ch], m = yo[ch];
                            yo[ch] = (v > m || v != v) ? v : m;
                        }
                    } else {
                        for (int64_t ch = 0; ch < C; ch++) yo[ch] += xi[ch];
                    }
                }
            if (!is_max) {
                const float d = pool_divisor(j->p, &w);
                for (int64_t ch = 0; ch < C; ch++) yo[ch] /= d;
            }
        }
    }
}

ddx_status ddx_cpu_pool2d_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    const ddx_tensor *xt = n->in[0];
    DDX_TRY(ddx_cpu_need_f32("pool2d", xt, "input"));
    pool2d_job j = {.p = &n->p.pool2d,
                    .H = xt->shape[1],
                    .W = xt->shape[2],
                    .C = xt->shape[3],
                    .Ho = n->out->shape[1],
                    .Wo = n->out->shape[2],
                    .x = ddx_f32c(xt),
                    .y = ddx_f32(n->out)};
    ddx_parallel_for(xt->shape[0] * j.Ho, pool2d_rows, &j);
    return DDX_OK;
}

ddx_status ddx_cpu_pool2d_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);
    if (!gx) return DDX_OK;
    const ddx_tensor *xt = n->in[0];
    const ddx_pool2d_params *p = &n->p.pool2d;
    const int64_t N = xt->shape[0], H = xt->shape[1], W = xt->shape[2], C = xt->shape[3];
    const int64_t Ho = n->out->shape[1], Wo = n->out->shape[2];
    const float *x = ddx_f32c(xt);
    const float *dy = ddx_f32c(n->out->grad);
    float *dx = ddx_f32(gx);
    const bool is_max = p->mode == DDX_POOL_MAX;
    for (int64_t b = 0; b < N; b++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                const pool_win w = pool_win_of(p, H, W, oy, ox);
                const float *g = dy + ((b * Ho + oy) * Wo + ox) * C;
                const int64_t base = b * H * W * C;
                for (int64_t ch = 0; ch < C; ch++) {
                    if (is_max) {
                        // The first maximum in row-major window order takes the gradient
                        // (PyTorch's rule; a NaN wins), recomputed from x instead of saved.
                        int64_t best = (w.y0 * W + w.x0) * C + ch;
                        float bv = -INFINITY;
                        for (int64_t iy = w.y0; iy < w.y1; iy++)
                            for (int64_t ix = w.x0; ix < w.x1; ix++) {
                                const int64_t i = (iy * W + ix) * C + ch;
                                const float v = x[base + i];
                                if (v > bv || isnan(v)) {
                                    bv = v;
                                    best = i;
                                }
                            }
                        dx[base + best] += g[ch];
                    } else {
                        const float q = g[ch] / pool_divisor(p, &w);
                        for (int64_t iy = w.y0; iy < w.y1; iy++)
                            for (int64_t ix = w.x0; ix < w.x1; ix++) dx[base + (iy * W + ix) * C + ch] += q;
                    }
                }
            }
    return DDX_OK;
}

// =========================================================================================
// resize: bilinear to any (ho, wo), align_corners=False, no antialiasing.
// =========================================================================================
ddx_tensor *ddx_resize_bilinear(ddx_ctx *c, ddx_tensor *x, int ho, int wo) {
    if (!ddx_op_ok(c, "resize", 1, (ddx_tensor *[]){x})) return NULL;
    char sx[DDX_SHAPE_BUF];
    if (x->ndim != 4 || !ddx_is_float_dtype(x->dtype) || x->shape[1] < 1 || x->shape[2] < 1)
        return ddx_op_fail(c, DDX_E_INPUT, "resize: input must be a non-empty float [N, H, W, C] tensor, got %s %s",
                           ddx_dtype_name(x->dtype), ddx_shape_str(x, sx, sizeof sx));
    if (ho < 1 || wo < 1)
        return ddx_op_fail(c, DDX_E_INPUT, "resize: output size %dx%d must be positive", ho, wo);
    ddx_op_params p = {.resize = {.ho = ho, .wo = wo}};
    return ddx_op_run(c, DDX_OP_RESIZE, 1, (ddx_tensor *[]){x}, &p, x->dtype, 4,
                      (int64_t[]){x->shape[0], ho, wo, x->shape[3]});
}

// PyTorch's area_pixel_compute_source_index with align_corners=False and the scale in/out as
// a float (F.interpolate given a size): src = scale * (dst + 0.5) - 0.5, clamped at 0, all in
// fp32 as PyTorch's CPU kernel does; the upper tap stops at the edge.
static bilin_tap resize_tap_of(int64_t dst, int64_t in_size, float scale) {
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    bilin_tap t;
    t.i0 = (int64_t)src;
    if (t.i0 > in_size - 1) t.i0 = in_size - 1;
    t.i1 = t.i0 + (t.i0 < in_size - 1 ? 1 : 0);
    t.w1 = src - (float)t.i0;
    t.w0 = 1.0f - t.w1;
    return t;
}

typedef struct resize_job {
    int64_t H, W, C, Ho, Wo;
    float sy, sx;
    const float *x;
    float *y;
} resize_job;

static void resize_rows(void *arg, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const resize_job *j = arg;
    const int64_t H = j->H, W = j->W, C = j->C;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t b = r / j->Ho, oy = r % j->Ho;
        const bilin_tap ty = resize_tap_of(oy, H, j->sy);
        const float *xb = j->x + b * H * W * C;
        for (int64_t ox = 0; ox < j->Wo; ox++) {
            const bilin_tap tx = resize_tap_of(ox, W, j->sx);
            const float *p00 = xb + (ty.i0 * W + tx.i0) * C, *p01 = xb + (ty.i0 * W + tx.i1) * C;
            const float *p10 = xb + (ty.i1 * W + tx.i0) * C, *p11 = xb + (ty.i1 * W + tx.i1) * C;
            float *yo = j->y + (r * j->Wo + ox) * C;
            for (int64_t ch = 0; ch < C; ch++)
                yo[ch] = ty.w0 * (tx.w0 * p00[ch] + tx.w1 * p01[ch]) + ty.w1 * (tx.w0 * p10[ch] + tx.w1 * p11[ch]);
        }
    }
}

ddx_status ddx_cpu_resize_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    const ddx_tensor *xt = n->in[0];
    DDX_TRY(ddx_cpu_need_f32("resize", xt, "input"));
    resize_job j = {.H = xt->shape[1],
                    .W = xt->shape[2],
                    .C = xt->shape[3],
                    .Ho = n->out->shape[1],
                    .Wo = n->out->shape[2],
                    .x = ddx_f32c(xt),
                    .y = ddx_f32(n->out)};
    j.sy = (float)j.H / (float)j.Ho;
    j.sx = (float)j.W / (float)j.Wo;
    ddx_parallel_for(xt->shape[0] * j.Ho, resize_rows, &j);
    return DDX_OK;
}

ddx_status ddx_cpu_resize_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);
    if (!gx) return DDX_OK;
    const ddx_tensor *xt = n->in[0];
    const int64_t N = xt->shape[0], H = xt->shape[1], W = xt->shape[2], C = xt->shape[3];
    const int64_t Ho = n->out->shape[1], Wo = n->out->shape[2];
    const float sy = (float)H / (float)Ho, sx = (float)W / (float)Wo;
    const float *dy = ddx_f32c(n->out->grad);
    float *dx = ddx_f32(gx);
    for (int64_t b = 0; b < N; b++) {
        float *db = dx + b * H * W * C;
        for (int64_t oy = 0; oy < Ho; oy++) {
            const bilin_tap ty = resize_tap_of(oy, H, sy);
            for (int64_t ox = 0; ox < Wo; ox++) {
                const bilin_tap tx = resize_tap_of(ox, W, sx);
                const float *g = dy + ((b * Ho + oy) * Wo + ox) * C;
                float *d00 = db + (ty.i0 * W + tx.i0) * C, *d01 = db + (ty.i0 * W + tx.i1) * C;
                float *d10 = db + (ty.i1 * W + tx.i0) * C, *d11 = db + (ty.i1 * W + tx.i1) * C;
                const float w00 = ty.w0 * tx.w0, w01 = ty.w0 * tx.w1, w10 = ty.w1 * tx.w0, w11 = ty.w1 * tx.w1;
                for (int64_t ch = 0; ch < C; ch++) {
                    d00[ch] += w00 * g[ch];
                    d01[ch] += w01 * g[ch];
                    d10[ch] += w10 * g[ch];
                    d11[ch] += w11 * g[ch];
                }
            }
        }
    }
    return DDX_OK;
}
