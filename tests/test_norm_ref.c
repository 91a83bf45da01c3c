// Independent checks of the CPU group_norm: forward and backward against direct formulas
// evaluated in double, written without looking at the factored forms the runtime uses
// (backward through the full per-group Jacobian), plus a double-precision finite-difference
// check of those formulas themselves, accumulation into existing grads, and the front-end's
// bad-input errors.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/ops.h"
#include "ref_norm_util.h"

// ============================================================================================
// group_norm
// ============================================================================================

typedef struct gn_shape {
    int64_t N, S, C, G;   // S = H*W
    double eps;
    bool silu;
} gn_shape;

// y for every element, and the pre-activation a (needed for the SiLU chain rule).
static void gn_ref_forward(const gn_shape *s, const double *x, const double *gamma, const double *beta, double *y,
                           double *a_out, double *xhat_out, double *rstd_out) {
    const int64_t cg = s->C / s->G, M = s->S * cg;
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t g = 0; g < s->G; g++) {
            double mean = 0.0, var = 0.0;
            for (int64_t p = 0; p < s->S; p++)
                for (int64_t j = 0; j < cg; j++) mean += x[(n * s->S + p) * s->C + g * cg + j];
            mean /= (double)M;
            for (int64_t p = 0; p < s->S; p++)
                for (int64_t j = 0; j < cg; j++) {
                    double d = x[(n * s->S + p) * s->C + g * cg + j] - mean;
                    var += d * d;
                }
            var /= (double)M;   // biased, as torch.nn.GroupNorm
            double rstd = 1.0 / sqrt(var + s->eps);
            if (rstd_out) rstd_out[n * s->G + g] = rstd;
            for (int64_t p = 0; p < s->S; p++)
                for (int64_t j = 0; j < cg; j++) {
                    int64_t ch = g * cg + j, i = (n * s->S + p) * s->C + ch;
                    double xh = (x[i] - mean) * rstd;
                    double a = xh * gamma[ch] + beta[ch];
                    if (xhat_out) xhat_out[i] = xh;
                    if (a_out) a_out[i] = a;
                    y[i] = s->silu ? a / (1.0 + exp(-a)) : a;
                }
        }
}

// Backward through the explicit Jacobian of each group:
//   d xhat_j / d x_i = rstd * (delta_ij - 1/M - xhat_i xhat_j / M)
// so dx_i = sum_j dxhat_j * rstd * (delta_ij - 1/M - xhat_i xhat_j / M), an O(M^2) double sum.
static void gn_ref_backward(const gn_shape *s, const double *x, const double *gamma, const double *beta,
                            const double *dy, double *dx, double *dgamma, double *dbeta) {
    const int64_t numel = s->N * s->S * s->C, cg = s->C / s->G, M = s->S * cg;
    double *y = malloc((size_t)numel * sizeof *y), *a = malloc((size_t)numel * sizeof *a);
    double *xh = malloc((size_t)numel * sizeof *xh), *rstd = malloc((size_t)(s->N * s->G) * sizeof *rstd);
    double *dxh = malloc((size_t)numel * sizeof *dxh);
    int64_t *idx = malloc((size_t)M * sizeof *idx);
    gn_ref_forward(s, x, gamma, beta, y, a, xh, rstd);
    memset(dgamma, 0, (size_t)s->C * sizeof *dgamma);
    memset(dbeta, 0, (size_t)s->C * sizeof *dbeta);
    for (int64_t i = 0; i < numel; i++) {
        int64_t ch = i % s->C;
        double sg = 1.0 / (1.0 + exp(-a[i]));
        double da = s->silu ? dy[i] * (sg + a[i] * sg * (1.0 - sg)) : dy[i];
        dbeta[ch] += da;
        dgamma[ch] += da * xh[i];
        dxh[i] = da * gamma[ch];
    }
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t g = 0; g < s->G; g++) {
            int64_t m = 0;
            for (int64_t p = 0; p < s->S; p++)
                for (int64_t j = 0; j < cg; j++) idx[m++] = (n * s->S + p) * s->C + g * cg + j;
            double r = rstd[n * s->G + g];
            for (int64_t u = 0; u < M; u++) {
                double acc = 0.0;
                for (int64_t w = 0; w < M; w++) {
                    double jac = r * ((u == w ? 1.0 : 0.0) - 1.0 / (double)M - xh[idx[u]] * xh[idx[w]] / (double)M);
                    acc += dxh[idx[w]] * jac;
                }
                dx[idx[u]] = acc;
            }
        }
    free(y), free(a), free(xh), free(rstd), free(dxh), free(idx);
}

static double gn_loss(const gn_shape *s, const double *x, const double *gamma, const double *beta, const double *R) {
    const int64_t numel = s->N * s->S * s->C;
    double *y = malloc((size_t)numel * sizeof *y), L = 0.0;
    gn_ref_forward(s, x, gamma, beta, y, NULL, NULL, NULL);
    for (int64_t i = 0; i < numel; i++) L += y[i] * R[i];
    free(y);
    return L;
}

// Validates the double formulas themselves by central differences in double (h = 1e-6 gives
// ~1e-9 relative truncation + rounding error, far below the fp32 comparisons they back).
static void gn_fd_check(const char *desc, const gn_shape *s, double *x, double *gamma, double *beta, const double *R,
                        const double *dx, const double *dgamma, const double *dbeta) {
    const int64_t numel = s->N * s->S * s->C;
    double *vars[3] = {x, gamma, beta};
    const double *grads[3] = {dx, dgamma, dbeta};
    const int64_t sizes[3] = {numel, s->C, s->C};
    const char *names[3] = {"dx", "dgamma", "dbeta"};
    for (int v = 0; v < 3; v++) {
        double worst = 0.0, mx = 0.0;
        for (int64_t i = 0; i < sizes[v]; i++) mx = fmax(mx, fabs(grads[v][i]));
        for (int k = 0; k < 6; k++) {
            int64_t i = (int64_t)(rnd_uniform() * (double)sizes[v]);
            double old = vars[v][i], h = 1e-6;
            vars[v][i] = old + h;
            double lp = gn_loss(s, x, gamma, beta, R);
            vars[v][i] = old - h;
            double lm = gn_loss(s, x, gamma, beta, R);
            vars[v][i] = old;
            worst = fmax(worst, fabs((lp - lm) / (2 * h) - grads[v][i]));
        }
        char name[200];
        snprintf(name, sizeof name, "%s double-FD of the double %s formula", desc, names[v]);
        check(worst <= 1e-6 * (1.0 + mx), name, "max error %.3g (max|grad| %.3g)", worst, mx);
    }
}

static void gn_case(int64_t N, int64_t H, int64_t W, int64_t C, int64_t G, double eps, bool silu, bool three_d) {
    char desc[160];
    snprintf(desc, sizeof desc, "group_norm%s [%lld,%lld,%lld,%lld] G=%lld eps=%g", silu ? "+silu" : "", (long long)N,
             (long long)H, (long long)W, (long long)C, (long long)G, eps);
    ddx_ctx *c = ctx_new();
    if (!c) {
        g_fail++;
        return;
    }
    gn_shape s = {N, H * W, C, G, eps, silu};
    int64_t numel = N * H * W * C;
    ddx_tensor *x = three_d ? make(c, 3, (int64_t[]){N, H * W, C}, 0, 0, true) : make(c, 4, (int64_t[]){N, H, W, C}, 0, 0, true);
    // An offset mean checks that the statistics do not cancel catastrophically.
    for (int64_t i = 0; i < numel; i++) ((float *)x->data)[i] = ((float *)x->data)[i] * 1.5f + 3.0f;
    ddx_tensor *gamma = make(c, 1, (int64_t[]){C}, 0.5, 1.5, false);
    ddx_tensor *beta = make(c, 1, (int64_t[]){C}, 0, 0, true);
    ddx_tensor *y = ddx_group_norm(c, x, gamma, beta, (int)G, (float)eps, silu);
    if (!y) {
        check(false, desc, "group_norm returned NULL: %s", ddx_last_error());
        ddx_ctx_free(c);
        return;
    }
    double *xd = to_double(x), *gd = to_double(gamma), *bd = to_double(beta);
    double *yr = malloc((size_t)numel * sizeof *yr);
    gn_ref_forward(&s, xd, gd, bd, yr, NULL, NULL, NULL);
    compare("forward", desc, (const float *)y->data, yr, numel, 2e-6, 2e-6);

    // Backward, accumulating on top of grads that already hold 0.25.
    ddx_tensor *R = ddx_new(c, DDX_F32, y->ndim, y->shape);
    for (int64_t i = 0; i < numel; i++) ((float *)R->data)[i] = (float)rnd_normal();
    ddx_tensor *ts[3] = {x, gamma, beta};
    for (int t = 0; t < 3; t++) {
        ddx_tensor *g = ddx_grad_of(c, ts[t]);
        for (int64_t i = 0; i < ddx_numel(g); i++) ((float *)g->data)[i] = 0.25f;
    }
    ddx_status st = ddx_backward_from(c, y, R);
    check(st == DDX_OK, desc, "backward failed: %s", ddx_last_error());
    if (st == DDX_OK) {
        double *Rd = to_double(R);
        double *dx = malloc((size_t)numel * sizeof *dx), *dg = malloc((size_t)C * sizeof *dg), *db = malloc((size_t)C * sizeof *db);
        gn_ref_backward(&s, xd, gd, bd, Rd, dx, dg, db);
        gn_fd_check(desc, &s, xd, gd, bd, Rd, dx, dg, db);
        for (int64_t i = 0; i < numel; i++) dx[i] += 0.25;
        for (int64_t i = 0; i < C; i++) dg[i] += 0.25, db[i] += 0.25;
        compare("dx", desc, (const float *)x->grad->data, dx, numel, 1e-5, 1e-6);
        compare("dgamma", desc, (const float *)gamma->grad->data, dg, C, 1e-5, 1e-6);
        compare("dbeta", desc, (const float *)beta->grad->data, db, C, 1e-5, 1e-6);
        free(Rd), free(dx), free(dg), free(db);
    }
    free(xd), free(gd), free(bd), free(yr);
    ddx_ctx_free(c);
}

// ============================================================================================
// group_norm with the fused time-embedding add
// ============================================================================================

// GroupNorm(x + add[n, c]): the forward must be bit-identical to the unfused ddx_add (of add
// broadcast over space) then ddx_group_norm, since the CPU builds x + add in f32 exactly as the
// add op does; the grads of x and add against the double formulas applied to z = x + add, with
// dadd[n, c] = sum over space of dz.
static void gn_add_case(int64_t N, int64_t H, int64_t W, int64_t C, int64_t G, double eps, bool silu) {
    char desc[160];
    snprintf(desc, sizeof desc, "group_norm_add%s [%lld,%lld,%lld,%lld] G=%lld", silu ? "+silu" : "", (long long)N,
             (long long)H, (long long)W, (long long)C, (long long)G);
    ddx_ctx *c = ctx_new();
    if (!c) {
        g_fail++;
        return;
    }
    gn_shape s = {N, H * W, C, G, eps, silu};
    const int64_t numel = N * H * W * C;
    ddx_tensor *x = make(c, 4, (int64_t[]){N, H, W, C}, 0, 0, true);
    ddx_tensor *ad = make(c, 2, (int64_t[]){N, C}, 0, 0, true);
    for (int64_t i = 0; i < N * C; i++) ((float *)ad->data)[i] = ((float *)ad->data)[i] * 2.0f + 1.0f;
    ddx_tensor *gamma = make(c, 1, (int64_t[]){C}, 0.5, 1.5, false), *beta = make(c, 1, (int64_t[]){C}, 0, 0, true);
    ddx_tensor *y = ddx_group_norm_add(c, x, ad, gamma, beta, (int)G, (float)eps, silu);
    ddx_tensor *z = ddx_add(c, x, ddx_reshape(c, ad, 4, (int64_t[]){N, 1, 1, C}));
    ddx_tensor *yu = ddx_group_norm(c, z, gamma, beta, (int)G, (float)eps, silu);
    if (!y || !yu) {
        check(false, desc, "group_norm_add or the unfused sequence returned NULL: %s", ddx_last_error());
        ddx_ctx_free(c);
        return;
    }
    int64_t differ = 0;
    for (int64_t i = 0; i < numel; i++) differ += memcmp((float *)y->data + i, (float *)yu->data + i, sizeof(float)) != 0;
    check(differ == 0, desc, "fused forward differs from add + group_norm in %lld of %lld elements", (long long)differ,
          (long long)numel);

    double *xd = to_double(x), *ad_d = to_double(ad), *gd = to_double(gamma), *bd = to_double(beta);
    double *zd = malloc((size_t)numel * sizeof *zd);
    for (int64_t i = 0; i < numel; i++) zd[i] = (double)(float)(xd[i] + ad_d[(i / (H * W * C)) * C + i % C]);
    double *yr = malloc((size_t)numel * sizeof *yr);
    gn_ref_forward(&s, zd, gd, bd, yr, NULL, NULL, NULL);
    compare("forward", desc, (const float *)y->data, yr, numel, 2e-6, 2e-6);

    // Backward of the fused node alone (yu's branch gets no seed).
    ddx_tensor *R = ddx_new(c, DDX_F32, y->ndim, y->shape);
    for (int64_t i = 0; i < numel; i++) ((float *)R->data)[i] = (float)rnd_normal();
    ddx_status st = ddx_backward_from(c, y, R);
    check(st == DDX_OK, desc, "backward failed: %s", ddx_last_error());
    if (st == DDX_OK) {
        double *Rd = to_double(R);
        double *dz = malloc((size_t)numel * sizeof *dz), *dg = malloc((size_t)C * sizeof *dg);
        double *db = malloc((size_t)C * sizeof *db), *da = calloc((size_t)(N * C), sizeof *da);
        gn_ref_backward(&s, zd, gd, bd, Rd, dz, dg, db);
        for (int64_t i = 0; i < numel; i++) da[(i / (H * W * C)) * C + i % C] += dz[i];
        compare("dx", desc, (const float *)x->grad->data, dz, numel, 1e-5, 1e-6);
        compare("dadd", desc, (const float *)ad->grad->data, da, N * C, 1e-5, 1e-6);
        compare("dgamma", desc, (const float *)gamma->grad->data, dg, C, 1e-5, 1e-6);
        compare("dbeta", desc, (const float *)beta->grad->data, db, C, 1e-5, 1e-6);
        free(Rd), free(dz), free(dg), free(db), free(da);
    }
    free(xd), free(ad_d), free(gd), free(bd), free(zd), free(yr);
    ddx_ctx_free(c);
}

// ============================================================================================
// bad input
// ============================================================================================

static void bad_case(const char *what, int which) {
    ddx_ctx *c = ctx_new();
    if (!c) {
        g_fail++;
        return;
    }
    ddx_tensor *out = NULL;
    const char *op = "group_norm";
    ddx_tensor *x4 = make(c, 4, (int64_t[]){2, 3, 3, 12}, 0, 0, true);
    ddx_tensor *g12 = make(c, 1, (int64_t[]){12}, 0, 0, true), *b12 = make(c, 1, (int64_t[]){12}, 0, 0, true);
    ddx_tensor *g8 = make(c, 1, (int64_t[]){8}, 0, 0, true);
    switch (which) {
    case 0: out = ddx_group_norm(c, x4, g12, b12, 5, 1e-5f, false); break;     // 5 does not divide 12
    case 1: out = ddx_group_norm(c, x4, g8, b12, 4, 1e-5f, false); break;      // gamma wrong size
    case 2: out = ddx_group_norm(c, x4, g12, g8, 4, 1e-5f, true); break;       // beta wrong size
    case 3: out = ddx_group_norm(c, x4, g12, b12, 0, 1e-5f, false); break;     // no groups
    case 4: out = ddx_group_norm(c, x4, g12, b12, 4, 0.0f, false); break;      // eps 0
    case 5: out = ddx_group_norm(c, g12, g12, b12, 4, 1e-5f, false); break;    // 1-D input
    case 6: out = ddx_group_norm_add(c, x4, make(c, 2, (int64_t[]){2, 8}, 0, 0, true), g12, b12, 4, 1e-5f, true); break;
    case 7: out = ddx_group_norm_add(c, x4, make(c, 2, (int64_t[]){1, 12}, 0, 0, true), g12, b12, 4, 1e-5f, true); break;
    case 8: out = ddx_group_norm_add(c, x4, make(c, 4, (int64_t[]){2, 1, 1, 12}, 0, 0, true), g12, b12, 4, 1e-5f, true); break;
    default: break;
    }
    const char *msg = ddx_last_error();
    char name[160];
    snprintf(name, sizeof name, "bad input: %s", what);
    check(out == NULL && ddx_ctx_status(c) == DDX_E_INPUT && strstr(msg, op) != NULL, name,
          "expected NULL and DDX_E_INPUT with a message naming %s; got %s, status %s, message \"%s\"", op,
          out ? "a tensor" : "NULL", ddx_status_name(ddx_ctx_status(c)), msg);
    ddx_clear_error();
    ddx_ctx_free(c);
}

int main(void) {
    // group_norm: U-Net group count, odd groups/channels, 1x1 and odd spatial, batch 1/3, 3-D.
    gn_case(2, 4, 4, 64, 32, 1e-6, false, false);
    gn_case(2, 4, 4, 64, 32, 1e-6, true, false);
    gn_case(1, 3, 5, 128, 32, 1e-5, true, false);
    gn_case(3, 2, 2, 256, 32, 1e-6, true, false);
    gn_case(2, 1, 1, 128, 32, 1e-6, true, false);
    gn_case(2, 3, 5, 8, 1, 1e-5, false, false);
    gn_case(1, 3, 5, 8, 8, 1e-6, true, false);
    gn_case(3, 3, 5, 6, 3, 1e-5, true, false);
    gn_case(2, 4, 4, 6, 3, 1e-6, false, true);
    gn_add_case(2, 4, 4, 64, 32, 1e-6, true);
    gn_add_case(3, 3, 5, 6, 3, 1e-5, false);
    gn_add_case(1, 2, 3, 8, 1, 1e-6, true);

    const char *bad[] = {"group_norm groups do not divide C", "group_norm gamma size", "group_norm beta size",
                         "group_norm 0 groups", "group_norm eps 0", "group_norm 1-D input",
                         "group_norm_add add has the wrong channel count", "group_norm_add add has the wrong batch",
                         "group_norm_add add is [N,1,1,C], not [N,C]"};
    for (int i = 0; i < 9; i++) bad_case(bad[i], i);

    printf("norm-ref: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
