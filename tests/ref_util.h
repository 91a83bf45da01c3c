// Helpers of the reference tests of the small families (elementwise, embed, losses, resample):
// an LCG stream of inputs independent of Philox, tolerance checks, backward by probing a double
// reference with unit vectors, pre-set grads, and expected-error checks.
#ifndef DDX_TESTS_REF_UTIL_H
#define DDX_TESTS_REF_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/op_impl.h"
#include "runtime/ops.h"

// ---- helpers ------------------------------------------------------------------------------
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static inline double rnd(void) {   // uniform in [-1, 1), independent of the library's Philox
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * 0x1p-52 - 1.0;
}

static inline ddx_tensor *mk(ddx_ctx *c, int ndim, const int64_t *shape, const float *vals, bool grad) {
    ddx_tensor *t = ddx_new(c, DDX_F32, ndim, shape);
    if (!t) return NULL;
    float *p = ddx_f32(t);
    for (int64_t i = 0; i < ddx_numel(t); i++) p[i] = vals ? vals[i] : (float)rnd();
    t->requires_grad = grad;
    return t;
}

static inline double *to_double(const ddx_tensor *t) {
    double *d = malloc(sizeof(double) * (size_t)ddx_numel(t));
    for (int64_t i = 0; i < ddx_numel(t); i++) d[i] = ddx_f32c(t)[i];
    return d;
}

// |got - ref| <= atol + rtol |ref| everywhere; prints the first mismatch.
static inline bool close_arr(const char *what, const float *got, const double *ref, int64_t n, double atol, double rtol) {
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - ref[i]);
        if (!(e <= atol + rtol * fabs(ref[i]))) {
            printf("  %s: element %lld: got %.9g, want %.9g (err %.3g)\n", what, (long long)i, (double)got[i], ref[i], e);
            return false;
        }
    }
    return true;
}

static inline bool close_arrf(const char *what, const float *got, const float *ref, int64_t n, double atol) {
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
static inline void lin_transpose(lin_fn f, const void *arg, int64_t nin, int64_t nout, const double *g, double *dx) {
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
static inline ddx_tensor *rand_grad_like(ddx_ctx *c, const ddx_tensor *t) { return mk(c, t->ndim, t->shape, NULL, false); }

static inline void preset_grad(ddx_ctx *c, ddx_tensor *t, float v) {
    ddx_tensor *g = ddx_grad_of(c, t);
    for (int64_t i = 0; i < ddx_numel(g); i++) ddx_f32(g)[i] = v;
}

static inline void add_const(double *d, int64_t n, double v) {
    for (int64_t i = 0; i < n; i++) d[i] += v;
}

static inline bool expect_error(ddx_ctx *c, ddx_tensor *out, ddx_status want, const char *needle) {
    bool ok = out == NULL && ddx_ctx_status(c) == want && strstr(ddx_last_error(), needle) != NULL;
    if (!ok)
        printf("  expected %s mentioning \"%s\", got status %s, message \"%s\"\n", ddx_status_name(want), needle,
               ddx_status_name(ddx_ctx_status(c)), ddx_last_error());
    ddx_ctx_reset(c);
    ddx_clear_error();
    return ok;
}

#endif
