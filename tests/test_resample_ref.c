// Independent checks of the CPU upsample2x, pool2x, pool2d and resize: direct formulas in double,
// PyTorch-made tables (tests/data/resample_fixtures.h, from tests/reference/make_op_fixtures.py),
// backward by probing the double reference with unit vectors (so it shares no code with the
// backward under test), and bad inputs.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/op_impl.h"
#include "runtime/ops.h"
#include "ref_util.h"

#include "data/resample_fixtures.h"

#include "check.h"

// ---- upsample2x -------------------------------------------------------------------------------
typedef struct { int64_t N, H, W, C; bool bilinear; } up_arg;

// PyTorch's upsample_bilinear2d, align_corners=False, written out in double:
// src = max(0, (dst + 0.5) * in/out - 0.5), i0 = floor(src), i1 = min(i0 + 1, in - 1), l = src - i0.
static void ref_up(const void *arg, const double *x, double *y) {
    const up_arg *a = arg;
    const int64_t Ho = 2 * a->H, Wo = 2 * a->W;
    for (int64_t n = 0; n < a->N; n++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++)
                for (int64_t ch = 0; ch < a->C; ch++) {
                    double v;
                    if (!a->bilinear) {
                        v = x[((n * a->H + oy / 2) * a->W + ox / 2) * a->C + ch];
                    } else {
                        double sy = fmax(0.0, (oy + 0.5) * ((double)a->H / Ho) - 0.5);
                        double sx = fmax(0.0, (ox + 0.5) * ((double)a->W / Wo) - 0.5);
                        int64_t y0 = (int64_t)floor(sy), x0 = (int64_t)floor(sx);
                        int64_t y1 = y0 + 1 < a->H ? y0 + 1 : a->H - 1, x1 = x0 + 1 < a->W ? x0 + 1 : a->W - 1;
                        double ly = sy - y0, lx = sx - x0;
#define X(yy, xx) x[((n * a->H + (yy)) * a->W + (xx)) * a->C + ch]
                        v = (1 - ly) * ((1 - lx) * X(y0, x0) + lx * X(y0, x1)) + ly * ((1 - lx) * X(y1, x0) + lx * X(y1, x1));
#undef X
                    }
                    y[((n * Ho + oy) * Wo + ox) * a->C + ch] = v;
                }
}

static void test_upsample(ddx_ctx *c, int64_t N, int64_t H, int64_t W, int64_t C, bool bilinear) {
    ddx_ctx_reset(c);
    ddx_tensor *x = mk(c, 4, (int64_t[]){N, H, W, C}, NULL, true);
    ddx_tensor *y = ddx_upsample2x(c, x, bilinear ? DDX_UPSAMPLE_BILINEAR : DDX_UPSAMPLE_NEAREST);
    CHECK(y != NULL, "upsample: %s", ddx_last_error());
    if (!y) return;
    up_arg arg = {N, H, W, C, bilinear};
    const int64_t nx = ddx_numel(x), ny = ddx_numel(y);
    CHECK(y->shape[1] == 2 * H && y->shape[2] == 2 * W, "upsample: output shape");
    double *xd = to_double(x), *ref = malloc(sizeof(double) * (size_t)ny);
    ref_up(&arg, xd, ref);
    CHECK(close_arr("upsample fwd", ddx_f32c(y), ref, ny, 1e-6, 1e-6), "upsample %s forward [%lld,%lld,%lld,%lld]",
          bilinear ? "bilinear" : "nearest", (long long)N, (long long)H, (long long)W, (long long)C);
    ddx_tensor *g = rand_grad_like(c, y);
    preset_grad(c, x, -1.0f);
    CHECK(ddx_backward_from(c, y, g) == DDX_OK, "upsample backward: %s", ddx_last_error());
    double *gd = to_double(g), *dx = malloc(sizeof(double) * (size_t)nx);
    lin_transpose(ref_up, &arg, nx, ny, gd, dx);
    add_const(dx, nx, -1.0);
    CHECK(close_arr("upsample dx", ddx_f32c(x->grad), dx, nx, 1e-5, 1e-5), "upsample %s backward [%lld,%lld,%lld,%lld]",
          bilinear ? "bilinear" : "nearest", (long long)N, (long long)H, (long long)W, (long long)C);
    free(xd), free(ref), free(gd), free(dx);
}

static void test_upsample_torch(ddx_ctx *c) {
    ddx_ctx_reset(c);
    ddx_tensor *x = mk(c, 4, (int64_t[]){UP_N, UP_H, UP_W, UP_C}, up_x, false);
    ddx_tensor *y = ddx_upsample2x(c, x, DDX_UPSAMPLE_BILINEAR);
    CHECK(y && close_arrf("bilinear vs torch", ddx_f32c(y), up_bilinear, ddx_numel(y), 1e-6),
          "upsample bilinear matches F.interpolate(align_corners=False)");
}

// ---- pool2x -----------------------------------------------------------------------------------
typedef struct { int64_t N, H, W, C; } pool_arg;
static void ref_avgpool(const void *arg, const double *x, double *y) {
    const pool_arg *a = arg;
    for (int64_t n = 0; n < a->N; n++)
        for (int64_t oy = 0; oy < a->H / 2; oy++)
            for (int64_t ox = 0; ox < a->W / 2; ox++)
                for (int64_t ch = 0; ch < a->C; ch++) {
                    double s = 0.0;
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) s += x[((n * a->H + 2 * oy + dy) * a->W + 2 * ox + dx) * a->C + ch];
                    y[((n * (a->H / 2) + oy) * (a->W / 2) + ox) * a->C + ch] = s / 4.0;
                }
}

// Max pool: value and the flat input index of the first maximum (PyTorch's tie rule).
static void ref_maxpool(const pool_arg *a, const float *x, double *y, int64_t *arg_idx) {
    for (int64_t n = 0; n < a->N; n++)
        for (int64_t oy = 0; oy < a->H / 2; oy++)
            for (int64_t ox = 0; ox < a->W / 2; ox++)
                for (int64_t ch = 0; ch < a->C; ch++) {
                    int64_t best = -1;
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) {
                            int64_t i = ((n * a->H + 2 * oy + dy) * a->W + 2 * ox + dx) * a->C + ch;
                            if (best < 0 || x[i] > x[best]) best = i;
                        }
                    int64_t o = ((n * (a->H / 2) + oy) * (a->W / 2) + ox) * a->C + ch;
                    y[o] = x[best];
                    arg_idx[o] = best;
                }
}

static void test_pool(ddx_ctx *c, int64_t N, int64_t H, int64_t W, int64_t C, bool is_max, const float *vals) {
    ddx_ctx_reset(c);
    ddx_tensor *x = mk(c, 4, (int64_t[]){N, H, W, C}, vals, true);
    ddx_tensor *y = ddx_pool2x(c, x, is_max ? DDX_POOL_MAX : DDX_POOL_AVG);
    CHECK(y != NULL, "pool: %s", ddx_last_error());
    if (!y) return;
    pool_arg arg = {N, H, W, C};
    const int64_t nx = ddx_numel(x), ny = ddx_numel(y);
    double *ref = malloc(sizeof(double) * (size_t)ny), *dx = calloc((size_t)nx, sizeof(double));
    int64_t *am = malloc(sizeof(int64_t) * (size_t)ny);
    double *xd = to_double(x);
    ddx_tensor *g = rand_grad_like(c, y);
    double *gd = to_double(g);
    if (is_max) {
        ref_maxpool(&arg, ddx_f32c(x), ref, am);
        for (int64_t o = 0; o < ny; o++) dx[am[o]] += gd[o];
    } else {
        ref_avgpool(&arg, xd, ref);
        lin_transpose(ref_avgpool, &arg, nx, ny, gd, dx);
    }
    CHECK(close_arr("pool fwd", ddx_f32c(y), ref, ny, 1e-6, 1e-6), "pool %s forward [%lld,%lld,%lld,%lld]",
          is_max ? "max" : "avg", (long long)N, (long long)H, (long long)W, (long long)C);
    CHECK(ddx_backward_from(c, y, g) == DDX_OK, "pool backward: %s", ddx_last_error());
    CHECK(close_arr("pool dx", ddx_f32c(x->grad), dx, nx, 1e-6, 1e-6), "pool %s backward [%lld,%lld,%lld,%lld]%s",
          is_max ? "max" : "avg", (long long)N, (long long)H, (long long)W, (long long)C, vals ? " (ties)" : "");
    free(ref), free(dx), free(am), free(xd), free(gd);
}

static void test_pool_torch(ddx_ctx *c) {
    ddx_ctx_reset(c);
    ddx_tensor *x = mk(c, 4, (int64_t[]){1, 2, 4, 2}, pool_x, false);
    ddx_tensor *ym = ddx_pool2x(c, x, DDX_POOL_MAX), *ya = ddx_pool2x(c, x, DDX_POOL_AVG);
    CHECK(ym && close_arrf("max pool vs torch", ddx_f32c(ym), pool_max, 4, 0), "max pool matches F.max_pool2d");
    CHECK(ya && close_arrf("avg pool vs torch", ddx_f32c(ya), pool_avg, 4, 1e-7), "avg pool matches F.avg_pool2d");
}

// ---- bad inputs -----------------------------------------------------------------------------
static void test_bad_inputs(ddx_ctx *c) {
    ddx_ctx_reset(c);
    CHECK(expect_error(c, ddx_pool2x(c, mk(c, 4, (int64_t[]){1, 3, 4, 2}, NULL, false), DDX_POOL_MAX), DDX_E_INPUT, "even"),
          "pool2x: odd H rejected");
    CHECK(expect_error(c, ddx_pool2x(c, mk(c, 4, (int64_t[]){1, 4, 5, 2}, NULL, false), DDX_POOL_AVG), DDX_E_INPUT, "even"),
          "pool2x: odd W rejected");
    CHECK(expect_error(c, ddx_upsample2x(c, mk(c, 2, (int64_t[]){4, 2}, NULL, false), DDX_UPSAMPLE_NEAREST), DDX_E_INPUT, "upsample2x"),
          "upsample2x: 2-D input rejected");
    // A sticky error makes later ops return NULL without running.
    ddx_tensor *ok = mk(c, 1, (int64_t[]){3}, NULL, false);
    ddx_pool2x(c, mk(c, 4, (int64_t[]){1, 3, 3, 1}, NULL, false), DDX_POOL_MAX);
    CHECK(ddx_sum(c, ok) == NULL && ddx_ctx_status(c) == DDX_E_INPUT, "sticky error propagates");
    ddx_ctx_reset(c);
    ddx_clear_error();
}

// ---- pool2d / global average pool / resize vs PyTorch (forward and backward) ----------------------
static void test_pool2d_torch(ddx_ctx *c) {
    for (size_t i = 0; i < sizeof pool2d_fixtures / sizeof pool2d_fixtures[0]; i++) {
        const pool2d_fixture *f = &pool2d_fixtures[i];
        ddx_ctx_reset(c);
        ddx_tensor *x = mk(c, 4, (int64_t[]){f->n, f->h, f->w, f->c}, f->x, true);
        ddx_tensor *y = f->k == 0 ? ddx_global_avg_pool(c, x)
                                  : ddx_pool2d(c, x,
                                               (ddx_pool2d_params){.mode = f->avg ? DDX_POOL_AVG : DDX_POOL_MAX,
                                                                   .kh = f->k, .kw = f->k, .stride = f->s,
                                                                   .pad_h = f->pad, .pad_w = f->pad,
                                                                   .count_include_pad = f->include_pad});
        CHECK(y && y->shape[1] == f->ho && y->shape[2] == f->wo, "pool2d fixture %zu: shape (%s)", i, ddx_last_error());
        if (!y || y->shape[1] != f->ho || y->shape[2] != f->wo) continue;
        const int64_t ny = ddx_numel(y), nx = ddx_numel(x);
        CHECK(close_arrf("pool2d vs torch", ddx_f32c(y), f->y, ny, 1e-6), "pool2d fixture %zu (%s k%d s%d p%d%s) forward",
              i, f->avg ? "avg" : "max", f->k, f->s, f->pad, f->include_pad ? " incl" : "");
        ddx_tensor *g = mk(c, 4, y->shape, f->dy, false);
        CHECK(ddx_backward_from(c, y, g) == DDX_OK, "pool2d backward: %s", ddx_last_error());
        CHECK(x->grad && close_arrf("pool2d dx vs torch", ddx_f32c(x->grad), f->dx, nx, 1e-6),
              "pool2d fixture %zu backward", i);
    }
}

static void test_resize_torch(ddx_ctx *c) {
    for (size_t i = 0; i < sizeof resize_fixtures / sizeof resize_fixtures[0]; i++) {
        const resize_fixture *f = &resize_fixtures[i];
        ddx_ctx_reset(c);
        ddx_tensor *x = mk(c, 4, (int64_t[]){f->n, f->h, f->w, f->c}, f->x, true);
        ddx_tensor *y = ddx_resize_bilinear(c, x, f->ho, f->wo);
        CHECK(y != NULL, "resize fixture %zu: %s", i, ddx_last_error());
        if (!y) continue;
        const int64_t ny = ddx_numel(y), nx = ddx_numel(x);
        CHECK(close_arrf("resize vs torch", ddx_f32c(y), f->y, ny, 1e-6), "resize %dx%d -> %dx%d forward vs F.interpolate",
              f->h, f->w, f->ho, f->wo);
        ddx_tensor *g = mk(c, 4, y->shape, f->dy, false);
        CHECK(ddx_backward_from(c, y, g) == DDX_OK, "resize backward: %s", ddx_last_error());
        CHECK(x->grad && close_arrf("resize dx vs torch", ddx_f32c(x->grad), f->dx, nx, 1e-5),
              "resize %dx%d -> %dx%d backward vs torch", f->h, f->w, f->ho, f->wo);
    }
}

// resize in double (src = max(0, (dst + 0.5) * in/out - 0.5)) against the op, growing and
// shrinking, forward and (by linearity) backward.
typedef struct { int64_t N, H, W, C, Ho, Wo; } rs_arg;
static void ref_resize(const void *arg, const double *x, double *y) {
    const rs_arg *a = arg;
    for (int64_t n = 0; n < a->N; n++)
        for (int64_t oy = 0; oy < a->Ho; oy++)
            for (int64_t ox = 0; ox < a->Wo; ox++) {
                double sy = fmax(0.0, (oy + 0.5) * ((double)a->H / a->Ho) - 0.5);
                double sx = fmax(0.0, (ox + 0.5) * ((double)a->W / a->Wo) - 0.5);
                int64_t y0 = (int64_t)floor(sy), x0 = (int64_t)floor(sx);
                if (y0 > a->H - 1) y0 = a->H - 1;
                if (x0 > a->W - 1) x0 = a->W - 1;
                int64_t y1 = y0 + 1 < a->H ? y0 + 1 : a->H - 1, x1 = x0 + 1 < a->W ? x0 + 1 : a->W - 1;
                double ly = sy - y0, lx = sx - x0;
                for (int64_t ch = 0; ch < a->C; ch++) {
#define X(yy, xx) x[((n * a->H + (yy)) * a->W + (xx)) * a->C + ch]
                    y[((n * a->Ho + oy) * a->Wo + ox) * a->C + ch] =
                        (1 - ly) * ((1 - lx) * X(y0, x0) + lx * X(y0, x1)) + ly * ((1 - lx) * X(y1, x0) + lx * X(y1, x1));
#undef X
                }
            }
}

static void test_resize(ddx_ctx *c, int64_t N, int64_t H, int64_t W, int64_t C, int ho, int wo) {
    ddx_ctx_reset(c);
    ddx_tensor *x = mk(c, 4, (int64_t[]){N, H, W, C}, NULL, true);
    ddx_tensor *y = ddx_resize_bilinear(c, x, ho, wo);
    CHECK(y != NULL, "resize: %s", ddx_last_error());
    if (!y) return;
    rs_arg arg = {N, H, W, C, ho, wo};
    const int64_t nx = ddx_numel(x), ny = ddx_numel(y);
    double *xd = to_double(x), *ref = malloc(sizeof(double) * (size_t)ny);
    ref_resize(&arg, xd, ref);
    CHECK(close_arr("resize fwd", ddx_f32c(y), ref, ny, 1e-5, 1e-5), "resize [%lld,%lld,%lld,%lld] -> %dx%d forward",
          (long long)N, (long long)H, (long long)W, (long long)C, ho, wo);
    ddx_tensor *g = rand_grad_like(c, y);
    preset_grad(c, x, -1.0f);
    CHECK(ddx_backward_from(c, y, g) == DDX_OK, "resize backward: %s", ddx_last_error());
    double *gd = to_double(g), *dx = malloc(sizeof(double) * (size_t)nx);
    lin_transpose(ref_resize, &arg, nx, ny, gd, dx);
    add_const(dx, nx, -1.0);
    CHECK(close_arr("resize dx", ddx_f32c(x->grad), dx, nx, 1e-4, 1e-4), "resize [%lld,%lld,%lld,%lld] -> %dx%d backward",
          (long long)N, (long long)H, (long long)W, (long long)C, ho, wo);
    free(xd), free(ref), free(gd), free(dx);
}

// pool2d in double: every window of the padded input, max over the in-range taps (pad is -inf),
// avg over kh*kw or the in-range count.
typedef struct { int64_t N, H, W, C; ddx_pool2d_params p; } p2_arg;
static void ref_pool2d(const p2_arg *a, const double *x, int64_t Ho, int64_t Wo, double *y, int64_t *am) {
    for (int64_t n = 0; n < a->N; n++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++)
                for (int64_t ch = 0; ch < a->C; ch++) {
                    double s = 0.0, best = -INFINITY;
                    int64_t cnt = 0, bi = -1;
                    for (int ky = 0; ky < a->p.kh; ky++)
                        for (int kx = 0; kx < a->p.kw; kx++) {
                            int64_t iy = oy * a->p.stride - a->p.pad_h + ky, ix = ox * a->p.stride - a->p.pad_w + kx;
                            if (iy < 0 || iy >= a->H || ix < 0 || ix >= a->W) continue;
                            int64_t i = ((n * a->H + iy) * a->W + ix) * a->C + ch;
                            s += x[i];
                            cnt++;
                            if (bi < 0 || x[i] > best) best = x[i], bi = i;
                        }
                    int64_t o = ((n * Ho + oy) * Wo + ox) * a->C + ch;
                    if (a->p.mode == DDX_POOL_MAX) y[o] = best, am[o] = bi;
                    else y[o] = s / (a->p.count_include_pad ? a->p.kh * a->p.kw : cnt), am[o] = -1;
                }
}

static void test_pool2d(ddx_ctx *c, int64_t N, int64_t H, int64_t W, int64_t C, ddx_pool2d_params p) {
    ddx_ctx_reset(c);
    ddx_tensor *x = mk(c, 4, (int64_t[]){N, H, W, C}, NULL, true);
    ddx_tensor *y = ddx_pool2d(c, x, p);
    CHECK(y != NULL, "pool2d: %s", ddx_last_error());
    if (!y) return;
    p2_arg arg = {N, H, W, C, p};
    const int64_t Ho = y->shape[1], Wo = y->shape[2], nx = ddx_numel(x), ny = ddx_numel(y);
    CHECK(Ho == (H + 2 * p.pad_h - p.kh) / p.stride + 1 && Wo == (W + 2 * p.pad_w - p.kw) / p.stride + 1, "pool2d shape");
    double *xd = to_double(x), *ref = malloc(sizeof(double) * (size_t)ny), *dx = calloc((size_t)nx, sizeof(double));
    int64_t *am = malloc(sizeof(int64_t) * (size_t)ny);
    ref_pool2d(&arg, xd, Ho, Wo, ref, am);
    CHECK(close_arr("pool2d fwd", ddx_f32c(y), ref, ny, 1e-6, 1e-6), "pool2d %s k%dx%d s%d p%d,%d%s forward",
          p.mode == DDX_POOL_MAX ? "max" : "avg", p.kh, p.kw, p.stride, p.pad_h, p.pad_w, p.count_include_pad ? " incl" : "");
    ddx_tensor *g = rand_grad_like(c, y);
    double *gd = to_double(g);
    // Backward: max sends dy to the first maximum; avg spreads dy / divisor over the in-range taps.
    for (int64_t n = 0; n < N; n++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++)
                for (int64_t ch = 0; ch < C; ch++) {
                    const int64_t o = ((n * Ho + oy) * Wo + ox) * C + ch;
                    if (p.mode == DDX_POOL_MAX) {
                        dx[am[o]] += gd[o];
                        continue;
                    }
                    int64_t cnt = 0;
                    for (int pass = 0; pass < 2; pass++)
                        for (int ky = 0; ky < p.kh; ky++)
                            for (int kx = 0; kx < p.kw; kx++) {
                                int64_t iy = oy * p.stride - p.pad_h + ky, ix = ox * p.stride - p.pad_w + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                if (pass == 0) cnt++;
                                else dx[((n * H + iy) * W + ix) * C + ch] += gd[o] / (p.count_include_pad ? p.kh * p.kw : cnt);
                            }
                }
    CHECK(ddx_backward_from(c, y, g) == DDX_OK, "pool2d backward: %s", ddx_last_error());
    CHECK(close_arr("pool2d dx", ddx_f32c(x->grad), dx, nx, 1e-6, 1e-6), "pool2d %s k%dx%d s%d p%d,%d backward",
          p.mode == DDX_POOL_MAX ? "max" : "avg", p.kh, p.kw, p.stride, p.pad_h, p.pad_w);
    free(xd), free(ref), free(dx), free(am), free(gd);
}

static void test_pool2d_bad(ddx_ctx *c) {
    ddx_ctx_reset(c);
    ddx_tensor *x = mk(c, 4, (int64_t[]){1, 4, 4, 2}, NULL, false);
    CHECK(expect_error(c, ddx_pool2d(c, x, (ddx_pool2d_params){.mode = DDX_POOL_MAX, .kh = 3, .kw = 3, .stride = 1, .pad_h = 2, .pad_w = 1}),
                       DDX_E_INPUT, "half the kernel"),
          "pool2d: padding over half the kernel rejected");
    ddx_ctx_reset(c);
    x = mk(c, 4, (int64_t[]){1, 2, 2, 2}, NULL, false);
    CHECK(expect_error(c, ddx_pool2d(c, x, (ddx_pool2d_params){.mode = DDX_POOL_AVG, .kh = 3, .kw = 3, .stride = 1}),
                       DDX_E_INPUT, "does not fit"),
          "pool2d: window larger than the input rejected");
    ddx_ctx_reset(c);
    x = mk(c, 4, (int64_t[]){1, 4, 4, 2}, NULL, false);
    CHECK(expect_error(c, ddx_pool2d(c, x, (ddx_pool2d_params){.mode = DDX_POOL_AVG, .kh = 3, .kw = 3, .stride = 0}),
                       DDX_E_INPUT, "stride"),
          "pool2d: stride 0 rejected");
    ddx_ctx_reset(c);
    x = mk(c, 4, (int64_t[]){1, 4, 4, 2}, NULL, false);
    CHECK(expect_error(c, ddx_resize_bilinear(c, x, 0, 5), DDX_E_INPUT, "resize"), "resize: output size 0 rejected");
    ddx_ctx_reset(c);
    ddx_clear_error();
}

int main(void) {
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)64 << 20) != DDX_OK) {
        printf("resample-ref: cannot create a CPU context: %s\n", ddx_last_error());
        return 1;
    }
    c.act.debug = true;   // poison allocations with NaN: an unwritten output element shows up

    test_upsample(&c, 1, 1, 1, 1, false);
    test_upsample(&c, 3, 3, 5, 3, false);
    test_upsample(&c, 1, 1, 1, 3, true);
    test_upsample(&c, 2, 3, 4, 5, true);
    test_upsample(&c, 1, 5, 2, 1, true);
    test_upsample(&c, 1, 8, 8, 2, true);
    test_upsample_torch(&c);

    test_pool(&c, 1, 2, 2, 1, true, NULL);
    test_pool(&c, 3, 4, 6, 5, true, NULL);
    test_pool(&c, 3, 4, 6, 5, false, NULL);
    test_pool(&c, 1, 2, 2, 3, false, NULL);
    // Ties: all equal -> first; two equal maxima at (0,1) and (1,0) -> (0,1).
    test_pool(&c, 1, 2, 2, 1, true, (const float[]){3, 3, 3, 3});
    test_pool(&c, 1, 2, 2, 1, true, (const float[]){1, 5, 5, 2});
    test_pool(&c, 1, 2, 4, 1, true, (const float[]){-1, -1, 0, 7, -1, -1, 7, 7});
    test_pool_torch(&c);

    test_bad_inputs(&c);

    test_pool2d_torch(&c);
    test_resize_torch(&c);
    const ddx_pool2d_params mx32 = {.mode = DDX_POOL_MAX, .kh = 3, .kw = 3, .stride = 2};
    const ddx_pool2d_params mx31 = {.mode = DDX_POOL_MAX, .kh = 3, .kw = 3, .stride = 1, .pad_h = 1, .pad_w = 1};
    const ddx_pool2d_params av31 = {.mode = DDX_POOL_AVG, .kh = 3, .kw = 3, .stride = 1, .pad_h = 1, .pad_w = 1};
    ddx_pool2d_params av31i = av31;
    av31i.count_include_pad = true;
    test_pool2d(&c, 2, 9, 7, 3, mx32);
    test_pool2d(&c, 1, 5, 6, 4, mx31);
    test_pool2d(&c, 1, 1, 1, 2, mx31);
    test_pool2d(&c, 2, 5, 6, 3, av31);
    test_pool2d(&c, 2, 5, 6, 3, av31i);
    test_pool2d(&c, 1, 8, 9, 2, (ddx_pool2d_params){.mode = DDX_POOL_AVG, .kh = 2, .kw = 4, .stride = 3, .pad_h = 1, .pad_w = 2});
    test_pool2d(&c, 1, 8, 9, 2, (ddx_pool2d_params){.mode = DDX_POOL_MAX, .kh = 4, .kw = 2, .stride = 2, .pad_h = 2, .pad_w = 1});
    test_resize(&c, 2, 4, 5, 3, 11, 7);
    test_resize(&c, 1, 13, 9, 2, 4, 5);
    test_resize(&c, 1, 1, 1, 2, 3, 4);
    test_resize(&c, 1, 7, 3, 1, 7, 3);
    test_resize(&c, 1, 28, 28, 1, 299, 299);
    test_pool2d_bad(&c);

    ddx_status gst = ddx_arena_check_guards(&c.act);
    CHECK(gst == DDX_OK, "arena guards intact: %s", ddx_last_error());
    ddx_ctx_free(&c);
    return ddx_test_finish("resample-ref");
}
