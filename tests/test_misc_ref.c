// Independent checks of the CPU reference for concat, upsample2x, pool2x, embedding,
// timestep_emb, dropout, mse_loss, sum and mean: direct formulas in double, PyTorch-made tables
// (tests/data/misc_fixtures.h, from tests/reference/make_misc_fixtures.py), backward by probing
// the double reference with unit vectors (so it shares no code with the backward under test),
// dropout statistics and keying, and bad inputs.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/op_impl.h"
#include "runtime/ops.h"
#include "runtime/philox.h"

#include "data/misc_fixtures.h"

#include "check.h"

// ---- helpers ------------------------------------------------------------------------------
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double rnd(void) {   // uniform in [-1, 1), independent of the library's Philox
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * 0x1p-52 - 1.0;
}

static ddx_tensor *mk(ddx_ctx *c, int ndim, const int64_t *shape, const float *vals, bool grad) {
    ddx_tensor *t = ddx_new(c, DDX_F32, ndim, shape);
    if (!t) return NULL;
    float *p = ddx_f32(t);
    for (int64_t i = 0; i < ddx_numel(t); i++) p[i] = vals ? vals[i] : (float)rnd();
    t->requires_grad = grad;
    return t;
}

static double *to_double(const ddx_tensor *t) {
    double *d = malloc(sizeof(double) * (size_t)ddx_numel(t));
    for (int64_t i = 0; i < ddx_numel(t); i++) d[i] = ddx_f32c(t)[i];
    return d;
}

// |got - ref| <= atol + rtol |ref| everywhere; prints the first mismatch.
static bool close_arr(const char *what, const float *got, const double *ref, int64_t n, double atol, double rtol) {
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - ref[i]);
        if (!(e <= atol + rtol * fabs(ref[i]))) {
            printf("  %s: element %lld: got %.9g, want %.9g (err %.3g)\n", what, (long long)i, (double)got[i], ref[i], e);
            return false;
        }
    }
    return true;
}

static bool close_arrf(const char *what, const float *got, const float *ref, int64_t n, double atol) {
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - (double)ref[i]);
        if (!(e <= atol)) {
            printf("  %s: element %lld: got %.9g, want %.9g (err %.3g)\n", what, (long long)i, (double)got[i],
                   (double)ref[i], e);
            return false;
        }
    }
    return true;
}

// A linear map in double, described by a closure, and its transpose by probing unit vectors:
// dx_i = sum_j g_j (f(e_i))_j. Slow, but shares nothing with the backward under test.
typedef void (*lin_fn)(const void *arg, const double *x, double *y);
static void lin_transpose(lin_fn f, const void *arg, int64_t nin, int64_t nout, const double *g, double *dx) {
    double *e = calloc((size_t)nin, sizeof(double)), *y = malloc(sizeof(double) * (size_t)nout);
    for (int64_t i = 0; i < nin; i++) {
        e[i] = 1.0;
        f(arg, e, y);
        double s = 0.0;
        for (int64_t j = 0; j < nout; j++) s += g[j] * y[j];
        dx[i] = s;
        e[i] = 0.0;
    }
    free(e);
    free(y);
}

// Runs backward from `out` with a random upstream grad (returned in *g_out, caller frees) after
// setting every listed input's grad to `pre` (checks that backward accumulates).
static ddx_tensor *rand_grad_like(ddx_ctx *c, const ddx_tensor *t) { return mk(c, t->ndim, t->shape, NULL, false); }

static void preset_grad(ddx_ctx *c, ddx_tensor *t, float v) {
    ddx_tensor *g = ddx_grad_of(c, t);
    for (int64_t i = 0; i < ddx_numel(g); i++) ddx_f32(g)[i] = v;
}

static void add_const(double *d, int64_t n, double v) {
    for (int64_t i = 0; i < n; i++) d[i] += v;
}

static bool expect_error(ddx_ctx *c, ddx_tensor *out, ddx_status want, const char *needle) {
    bool ok = out == NULL && ddx_ctx_status(c) == want && strstr(ddx_last_error(), needle) != NULL;
    if (!ok)
        printf("  expected %s mentioning \"%s\", got status %s, message \"%s\"\n", ddx_status_name(want), needle,
               ddx_status_name(ddx_ctx_status(c)), ddx_last_error());
    ddx_ctx_reset(c);
    ddx_clear_error();
    return ok;
}

// ---- concat ---------------------------------------------------------------------------------
typedef struct { int64_t rows, ca, cb; } concat_arg;
static void ref_concat(const void *arg, const double *x, double *y) {   // x = [a; b] flattened
    const concat_arg *a = arg;
    const double *pa = x, *pb = x + a->rows * a->ca;
    for (int64_t r = 0; r < a->rows; r++)
        for (int64_t j = 0; j < a->ca + a->cb; j++)
            y[r * (a->ca + a->cb) + j] = j < a->ca ? pa[r * a->ca + j] : pb[r * a->cb + j - a->ca];
}

static void test_concat(ddx_ctx *c, int ndim, const int64_t *sa, const int64_t *sb) {
    ddx_ctx_reset(c);
    ddx_tensor *a = mk(c, ndim, sa, NULL, true), *b = mk(c, ndim, sb, NULL, true);
    ddx_tensor *y = ddx_concat(c, a, b);
    CHECK(y != NULL, "concat: %s", ddx_last_error());
    if (!y) return;
    concat_arg arg = {ddx_numel(a) / sa[ndim - 1], sa[ndim - 1], sb[ndim - 1]};
    const int64_t na = ddx_numel(a), nb = ddx_numel(b), ny = ddx_numel(y);
    CHECK(y->ndim == ndim && y->shape[ndim - 1] == sa[ndim - 1] + sb[ndim - 1], "concat: output shape");
    double *x = malloc(sizeof(double) * (size_t)(na + nb)), *ref = malloc(sizeof(double) * (size_t)ny);
    for (int64_t i = 0; i < na; i++) x[i] = ddx_f32c(a)[i];
    for (int64_t i = 0; i < nb; i++) x[na + i] = ddx_f32c(b)[i];
    ref_concat(&arg, x, ref);
    CHECK(close_arr("concat fwd", ddx_f32c(y), ref, ny, 0, 0), "concat forward [%lld rows, %lld + %lld]",
          (long long)arg.rows, (long long)arg.ca, (long long)arg.cb);

    ddx_tensor *g = rand_grad_like(c, y);
    preset_grad(c, a, 0.5f);
    CHECK(ddx_backward_from(c, y, g) == DDX_OK, "concat backward: %s", ddx_last_error());
    double *gd = to_double(g), *dx = malloc(sizeof(double) * (size_t)(na + nb));
    lin_transpose(ref_concat, &arg, na + nb, ny, gd, dx);
    add_const(dx, na, 0.5);
    CHECK(close_arr("concat da", ddx_f32c(a->grad), dx, na, 1e-6, 1e-6), "concat grad a (accumulated onto 0.5)");
    CHECK(close_arr("concat db", ddx_f32c(b->grad), dx + na, nb, 1e-6, 1e-6), "concat grad b");
    free(x), free(ref), free(gd), free(dx);
}

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

// ---- embedding ------------------------------------------------------------------------------
static ddx_tensor *mk_idx(ddx_ctx *c, int64_t n, const int32_t *v) {
    ddx_tensor *t = ddx_new(c, DDX_I32, 1, (int64_t[]){n});
    memcpy(t->data, v, sizeof(int32_t) * (size_t)n);
    return t;
}

static void test_embedding(ddx_ctx *c) {
    ddx_ctx_reset(c);
    const int32_t idx[12] = {3, 0, 9, 3, 3, 7, 1, 0, 9, 2, 5, 3};
    const int64_t V = 10, D = 7, N = 12;
    ddx_tensor *it = mk_idx(c, N, idx), *table = mk(c, 2, (int64_t[]){V, D}, NULL, true);
    ddx_tensor *y = ddx_embedding(c, it, table);
    CHECK(y != NULL && y->shape[0] == N && y->shape[1] == D, "embedding: %s", ddx_last_error());
    if (!y) return;
    double ref[12 * 7], dt[10 * 7];
    for (int64_t i = 0; i < N; i++)
        for (int64_t d = 0; d < D; d++) ref[i * D + d] = ddx_f32c(table)[idx[i] * D + d];
    CHECK(close_arr("embedding fwd", ddx_f32c(y), ref, N * D, 0, 0), "embedding forward V=10 D=7 N=12");
    ddx_tensor *g = rand_grad_like(c, y);
    preset_grad(c, table, 2.0f);
    CHECK(ddx_backward_from(c, y, g) == DDX_OK, "embedding backward: %s", ddx_last_error());
    for (int64_t k = 0; k < V * D; k++) dt[k] = 2.0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t d = 0; d < D; d++) dt[idx[i] * D + d] += ddx_f32c(g)[i * D + d];
    CHECK(close_arr("embedding dtable", ddx_f32c(table->grad), dt, V * D, 1e-6, 1e-6), "embedding scatter-add backward");
    CHECK(it->grad == NULL, "embedding: indices must get no grad");

    // V = 1: every index must be 0.
    ddx_ctx_reset(c);
    ddx_tensor *t1 = mk(c, 2, (int64_t[]){1, 7}, NULL, false);
    ddx_tensor *y1 = ddx_embedding(c, mk_idx(c, 3, (int32_t[]){0, 0, 0}), t1);
    CHECK(y1 && memcmp(ddx_f32c(y1) + 14, ddx_f32c(t1), 7 * sizeof(float)) == 0, "embedding V=1");

    ddx_ctx_reset(c);
    ddx_tensor *tb = mk(c, 2, (int64_t[]){V, D}, NULL, false);
    CHECK(expect_error(c, ddx_embedding(c, mk_idx(c, 3, (int32_t[]){0, 10, 1}), tb), DDX_E_INPUT, "index 10"),
          "embedding: index == V is an input error naming the index");
    tb = mk(c, 2, (int64_t[]){V, D}, NULL, false);
    CHECK(expect_error(c, ddx_embedding(c, mk_idx(c, 2, (int32_t[]){-1, 1}), tb), DDX_E_INPUT, "index -1"),
          "embedding: negative index is an input error");
    tb = mk(c, 2, (int64_t[]){V, D}, NULL, false);
    CHECK(expect_error(c, ddx_embedding(c, mk(c, 1, (int64_t[]){2}, NULL, false), tb), DDX_E_INPUT, "i32"),
          "embedding: f32 indices rejected");
}

// ---- timestep_emb -----------------------------------------------------------------------------
static void test_timestep(ddx_ctx *c) {
    for (size_t k = 0; k < sizeof temb_fixtures / sizeof temb_fixtures[0]; k++) {
        const temb_fixture *f = &temb_fixtures[k];
        ddx_ctx_reset(c);
        ddx_tensor *t = mk(c, 1, (int64_t[]){TEMB_N_T}, temb_t, false);
        ddx_timestep_emb_params p = {.dim = f->dim, .freq_shift = f->freq_shift, .flip_sin_to_cos = f->flip, .max_period = 10000.0f};
        ddx_tensor *y = ddx_timestep_emb(c, t, p);
        CHECK(y && y->shape[0] == TEMB_N_T && y->shape[1] == f->dim, "timestep_emb: %s", ddx_last_error());
        if (!y) continue;
        // PyTorch's fp32 arithmetic, rounded at the same points, agrees to 1e-6 up to t = 1000,
        // except in a column whose frequency PyTorch's vectorised expf (within 1 ulp, not
        // correctly rounded) rounds the other way: there t * freq moves by one ulp of the
        // argument. Those columns must be rare (2 of 64 for dim 128, shift 0, with torch 2.15 on
        // AVX512) and within that bound.
        const int half = f->dim / 2;
        int64_t loose_cols = 0, bad = 0;
        for (int k = 0; k < half; k++) {
            const float freq = (float)exp(-log(10000.0) * k / (half - (double)f->freq_shift));
            bool loose = false;
            for (int i = 0; i < TEMB_N_T; i++) {
                const double targ = (double)temb_t[i] * freq;
                const double bound = 1e-6 + fabs(temb_t[i]) * (nextafterf(freq, INFINITY) - freq) +
                                     (nextafterf((float)targ, INFINITY) - (float)targ);
                for (int half_i = 0; half_i < 2; half_i++) {
                    const int64_t at = (int64_t)i * f->dim + half_i * half + k;
                    const double e = fabs((double)ddx_f32c(y)[at] - (double)f->table[at]);
                    if (e > 1e-6) loose = true;
                    if (e > bound) {
                        if (bad++ == 0)
                            printf("  timestep: t=%g column %lld: got %.9g, want %.9g (err %.3g > %.3g)\n",
                                   (double)temb_t[i], (long long)(half_i * half + k), (double)ddx_f32c(y)[at],
                                   (double)f->table[at], e, bound);
                    }
                }
            }
            loose_cols += loose;
        }
        CHECK(bad == 0 && loose_cols <= 2,
              "timestep_emb dim %d shift %g flip %d matches diffusers get_timestep_embedding (%lld elements out of "
              "bounds, %lld frequencies beyond 1e-6)",
              f->dim, (double)f->freq_shift, f->flip, (long long)bad, (long long)loose_cols);
        // Small timesteps leave no room for an ulp of argument to matter: 1e-6 throughout.
        CHECK(close_arrf("timestep t<=7 vs torch", ddx_f32c(y), f->table, 3 * f->dim, 1e-6),
              "timestep_emb dim %d: t in {0, 1, 7} within 1e-6 of PyTorch", f->dim);
    }
    ddx_timestep_emb_params good = {.dim = 32, .freq_shift = 1.0f, .flip_sin_to_cos = false, .max_period = 10000.0f};
    ddx_ctx_reset(c);
    ddx_timestep_emb_params odd = good;
    odd.dim = 33;
    CHECK(expect_error(c, ddx_timestep_emb(c, mk(c, 1, (int64_t[]){2}, NULL, false), odd), DDX_E_INPUT, "even"),
          "timestep_emb: odd dim rejected");
    CHECK(expect_error(c, ddx_timestep_emb(c, mk(c, 1, (int64_t[]){2}, NULL, true), good), DDX_E_INPUT, "grad"),
          "timestep_emb: t with requires_grad rejected");
    ddx_timestep_emb_params zero = good;
    zero.dim = 2;
    CHECK(expect_error(c, ddx_timestep_emb(c, mk(c, 1, (int64_t[]){2}, NULL, false), zero), DDX_E_INPUT, "freq_shift"),
          "timestep_emb: dim/2 == freq_shift (division by zero) rejected");
}

// ---- dropout --------------------------------------------------------------------------------
#define DROP_N 65536

static ddx_tensor *run_dropout(ddx_ctx *c, ddx_tensor *x, float p) {
    ddx_tensor *y = ddx_dropout(c, x, p);
    CHECK(y != NULL, "dropout: %s", ddx_last_error());
    return y;
}

static void test_dropout(ddx_ctx *c) {
    static float xs[DROP_N], y1[DROP_N], y2[DROP_N];
    for (int i = 0; i < DROP_N; i++) xs[i] = 1.0f + 0.5f * (float)fabs(rnd());   // never 0: y == 0 means dropped
    const float ps[2] = {0.1f, 0.5f};
    for (int k = 0; k < 2; k++) {
        const float p = ps[k], scale = 1.0f / (1.0f - p);
        ddx_ctx_set_training(c, true);
        ddx_ctx_set_seed(c, 1234);
        ddx_ctx_set_step(c, 7);
        ddx_ctx_reset(c);
        ddx_tensor *x = mk(c, 1, (int64_t[]){DROP_N}, xs, true);
        ddx_tensor *y = run_dropout(c, x, p);
        if (!y) return;
        memcpy(y1, ddx_f32c(y), sizeof y1);
        int64_t kept = 0;
        bool values_ok = true;
        for (int i = 0; i < DROP_N; i++) {
            if (y1[i] != 0.0f) {
                kept++;
                values_ok &= y1[i] == xs[i] * scale;
            }
        }
        // Kept fraction ~ Binomial(n, 1-p)/n: 6 sigma bounds.
        const double frac = (double)kept / DROP_N, sigma = sqrt(p * (1.0 - p) / DROP_N);
        CHECK(fabs(frac - (1.0 - p)) < 6 * sigma, "dropout p=%g: kept fraction %.4f, want %.4f +- %.4f", (double)p, frac,
              1.0 - p, 6 * sigma);
        CHECK(values_ok, "dropout p=%g: kept elements must be x / (1 - p) exactly", (double)p);

        // The mask is u_i >= p for the Philox fill keyed (seed, stream 0 + call, step).
        static float u[DROP_N];
        CHECK(ddx_philox_uniform(u, DROP_N, 1234, DDX_RNG_STREAM_DROPOUT + 0, 7, 0) == DDX_OK, "philox fill");
        bool mask_ok = true;
        for (int i = 0; i < DROP_N; i++) mask_ok &= (y1[i] != 0.0f) == (u[i] >= p);
        CHECK(mask_ok, "dropout p=%g: mask must be Philox uniform >= p", (double)p);

        // Backward: dx = g * mask * scale, accumulated.
        ddx_tensor *g = rand_grad_like(c, y);
        preset_grad(c, x, 0.25f);
        CHECK(ddx_backward_from(c, y, g) == DDX_OK, "dropout backward: %s", ddx_last_error());
        bool grad_ok = true;
        for (int i = 0; i < DROP_N && grad_ok; i++) {
            const float want = 0.25f + (y1[i] != 0.0f ? ddx_f32c(g)[i] * scale : 0.0f);
            grad_ok = ddx_f32c(x->grad)[i] == want;
            if (!grad_ok) printf("  dropout dx[%d] = %g, want %g\n", i, (double)ddx_f32c(x->grad)[i], (double)want);
        }
        CHECK(grad_ok, "dropout p=%g: backward regenerates the same mask", (double)p);

        // Same key -> same mask; a second call in the same step -> a different stream.
        ddx_ctx_reset(c);
        x = mk(c, 1, (int64_t[]){DROP_N}, xs, false);
        ddx_tensor *ya = run_dropout(c, x, p), *yb = run_dropout(c, x, p);
        if (!ya || !yb) return;
        CHECK(memcmp(ddx_f32c(ya), y1, sizeof y1) == 0, "dropout p=%g: same (seed, step, call) -> same output", (double)p);
        memcpy(y2, ddx_f32c(yb), sizeof y2);
        int64_t diff = 0;
        for (int i = 0; i < DROP_N; i++) diff += (y1[i] != 0.0f) != (y2[i] != 0.0f);
        // Independent masks disagree on a fraction 2p(1-p) of elements.
        double want = 2.0 * p * (1.0 - p), got = (double)diff / DROP_N;
        CHECK(fabs(got - want) < 0.02, "dropout p=%g: second call in a step differs on %.3f of elements, want ~%.3f",
              (double)p, got, want);

        // Different step -> different mask.
        ddx_ctx_set_step(c, 8);
        ddx_ctx_reset(c);
        x = mk(c, 1, (int64_t[]){DROP_N}, xs, false);
        ddx_tensor *yc = run_dropout(c, x, p);
        if (!yc) return;
        diff = 0;
        for (int i = 0; i < DROP_N; i++) diff += (y1[i] != 0.0f) != (ddx_f32c(yc)[i] != 0.0f);
        got = (double)diff / DROP_N;
        CHECK(fabs(got - want) < 0.02, "dropout p=%g: next step differs on %.3f of elements, want ~%.3f", (double)p, got, want);
    }

    // Identity cases return the input itself and record nothing.
    ddx_ctx_reset(c);
    ddx_tensor *x = mk(c, 1, (int64_t[]){5}, NULL, true);
    ddx_ctx_set_training(c, false);
    CHECK(ddx_dropout(c, x, 0.5f) == x && c->n_nodes == 0, "dropout: identity when not training");
    ddx_ctx_set_training(c, true);
    CHECK(ddx_dropout(c, x, 0.0f) == x && c->n_nodes == 0 && c->rng_calls == 0, "dropout: identity for p = 0");
    ddx_tensor *yz = ddx_dropout(c, x, 1.0f);
    bool zeros = yz != NULL;
    for (int i = 0; zeros && i < 5; i++) zeros = ddx_f32c(yz)[i] == 0.0f;
    CHECK(zeros, "dropout: p = 1 gives zeros");
    CHECK(expect_error(c, ddx_dropout(c, x, 1.5f), DDX_E_INPUT, "p must be"), "dropout: p > 1 rejected");
    ddx_ctx_set_training(c, false);
}

// ---- reductions -----------------------------------------------------------------------------
static void test_reductions(ddx_ctx *c, int ndim, const int64_t *shape) {
    ddx_ctx_reset(c);
    ddx_tensor *a = mk(c, ndim, shape, NULL, true), *b = mk(c, ndim, shape, NULL, true);
    const int64_t n = ddx_numel(a);
    double s = 0.0, sq = 0.0;
    for (int64_t i = 0; i < n; i++) {
        s += ddx_f32c(a)[i];
        double d = (double)ddx_f32c(a)[i] - ddx_f32c(b)[i];
        sq += d * d;
    }
    ddx_tensor *ys = ddx_sum(c, a), *ym = ddx_mean(c, a), *yl = ddx_mse_loss(c, a, b);
    CHECK(ys && ym && yl, "reductions: %s", ddx_last_error());
    if (!ys || !ym || !yl) return;
    CHECK(ys->ndim == 1 && ys->shape[0] == 1 && yl->shape[0] == 1, "reductions: output is [1]");
    CHECK(fabs(ddx_f32c(ys)[0] - s) <= 1e-6 * (1 + fabs(s)), "sum over %lld: got %.9g want %.9g", (long long)n,
          (double)ddx_f32c(ys)[0], s);
    CHECK(fabs(ddx_f32c(ym)[0] - s / n) <= 1e-7 * (1 + fabs(s / n)), "mean over %lld: got %.9g want %.9g", (long long)n,
          (double)ddx_f32c(ym)[0], s / n);
    CHECK(fabs(ddx_f32c(yl)[0] - sq / n) <= 1e-7 * (1 + sq / n), "mse over %lld: got %.9g want %.9g", (long long)n,
          (double)ddx_f32c(yl)[0], sq / n);

    // One backward per loss (the tape holds all three; seed each separately on a fresh tape).
    const float seed = 0.7f;
    double *want = malloc(sizeof(double) * (size_t)n), *wantb = malloc(sizeof(double) * (size_t)n);
    for (int op = 0; op < 3; op++) {
        ddx_ctx_reset(c);
        ddx_tensor *x = mk(c, ndim, shape, NULL, true), *t = mk(c, ndim, shape, NULL, true);
        ddx_tensor *y = op == 0 ? ddx_sum(c, x) : op == 1 ? ddx_mean(c, x) : ddx_mse_loss(c, x, t);
        preset_grad(c, x, 1.0f);
        CHECK(y && ddx_backward(c, y, seed) == DDX_OK, "reduction backward: %s", ddx_last_error());
        if (!y) continue;
        for (int64_t i = 0; i < n; i++) {
            double d = (double)ddx_f32c(x)[i] - ddx_f32c(t)[i];
            want[i] = 1.0 + (op == 0 ? seed : op == 1 ? (double)seed / n : 2.0 * seed * d / n);
            wantb[i] = -2.0 * seed * d / n;
        }
        static const char *names[3] = {"sum", "mean", "mse"};
        CHECK(close_arr(names[op], ddx_f32c(x->grad), want, n, 1e-7, 1e-6), "%s backward over %lld", names[op], (long long)n);
        if (op == 2)
            CHECK(t->grad && close_arr("mse dtarget", ddx_f32c(t->grad), wantb, n, 1e-7, 1e-6), "mse target grad");
    }
    free(want), free(wantb);
}

// ---- bad inputs -----------------------------------------------------------------------------
static void test_bad_inputs(ddx_ctx *c) {
    ddx_ctx_reset(c);
    CHECK(expect_error(c, ddx_pool2x(c, mk(c, 4, (int64_t[]){1, 3, 4, 2}, NULL, false), DDX_POOL_MAX), DDX_E_INPUT, "even"),
          "pool2x: odd H rejected");
    CHECK(expect_error(c, ddx_pool2x(c, mk(c, 4, (int64_t[]){1, 4, 5, 2}, NULL, false), DDX_POOL_AVG), DDX_E_INPUT, "even"),
          "pool2x: odd W rejected");
    CHECK(expect_error(c, ddx_concat(c, mk(c, 4, (int64_t[]){1, 4, 4, 2}, NULL, false), mk(c, 4, (int64_t[]){1, 4, 3, 2}, NULL, false)),
                       DDX_E_INPUT, "concat"),
          "concat: mismatched W rejected");
    CHECK(expect_error(c, ddx_upsample2x(c, mk(c, 2, (int64_t[]){4, 2}, NULL, false), DDX_UPSAMPLE_NEAREST), DDX_E_INPUT, "upsample2x"),
          "upsample2x: 2-D input rejected");
    CHECK(expect_error(c, ddx_mse_loss(c, mk(c, 1, (int64_t[]){3}, NULL, false), mk(c, 1, (int64_t[]){4}, NULL, false)),
                       DDX_E_INPUT, "shape"),
          "mse_loss: shape mismatch rejected");
    // A sticky error makes later ops return NULL without running.
    ddx_tensor *ok = mk(c, 1, (int64_t[]){3}, NULL, false);
    ddx_pool2x(c, mk(c, 4, (int64_t[]){1, 3, 3, 1}, NULL, false), DDX_POOL_MAX);
    CHECK(ddx_sum(c, ok) == NULL && ddx_ctx_status(c) == DDX_E_INPUT, "sticky error propagates");
    ddx_ctx_reset(c);
    ddx_clear_error();
}

int main(void) {
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)64 << 20) != DDX_OK) {
        printf("misc-ref: cannot create a CPU context: %s\n", ddx_last_error());
        return 1;
    }
    c.act.debug = true;   // poison allocations with NaN: an unwritten output element shows up

    test_concat(&c, 4, (int64_t[]){2, 3, 3, 1}, (int64_t[]){2, 3, 3, 5});
    test_concat(&c, 2, (int64_t[]){3, 5}, (int64_t[]){3, 3});
    test_concat(&c, 3, (int64_t[]){1, 7, 1}, (int64_t[]){1, 7, 1});

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

    test_embedding(&c);
    test_timestep(&c);
    test_dropout(&c);

    test_reductions(&c, 4, (int64_t[]){2, 8, 8, 3});
    test_reductions(&c, 1, (int64_t[]){1});
    test_reductions(&c, 4, (int64_t[]){2, 32, 32, 128});
    test_bad_inputs(&c);

    ddx_status gst = ddx_arena_check_guards(&c.act);
    CHECK(gst == DDX_OK, "arena guards intact: %s", ddx_last_error());
    ddx_ctx_free(&c);
    return ddx_test_finish("misc-ref");
}
