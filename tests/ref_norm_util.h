// Helpers of the reference tests of group_norm and attention (test_norm_ref.c,
// test_attention_ref.c): pass/fail counting, an xorshift stream of uniform and normal inputs,
// and a comparison scaled by the largest reference value.
#ifndef DDX_TESTS_REF_NORM_UTIL_H
#define DDX_TESTS_REF_NORM_UTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/ops.h"

static int g_pass, g_fail;

static inline void check(bool ok, const char *what, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline void check(bool ok, const char *what, const char *fmt, ...) {
    if (ok) {
        g_pass++;
        return;
    }
    g_fail++;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s: ", what);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

// ---- deterministic inputs -------------------------------------------------------------------
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static inline double rnd_uniform(void) {   // (0, 1)
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return ((double)(g_rng >> 11) + 0.5) / 9007199254740992.0;
}
static inline double rnd_normal(void) {
    return sqrt(-2.0 * log(rnd_uniform())) * cos(6.283185307179586 * rnd_uniform());
}

static inline ddx_tensor *make(ddx_ctx *c, int ndim, const int64_t *shape, double lo, double hi, bool normal) {
    ddx_tensor *t = ddx_new(c, DDX_F32, ndim, shape);
    if (!t) return NULL;
    float *d = (float *)t->data;
    for (int64_t i = 0; i < ddx_numel(t); i++) d[i] = (float)(normal ? rnd_normal() : lo + (hi - lo) * rnd_uniform());
    t->requires_grad = true;
    return t;
}

static inline double *to_double(const ddx_tensor *t) {
    int64_t n = ddx_numel(t);
    double *d = malloc((size_t)(n > 0 ? n : 1) * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = ((const float *)t->data)[i];
    return d;
}

// max |got - ref| / (atol + rtol * max|ref|) over all elements; <= 1 passes. Scaling by the
// largest reference value rather than per element: grads contain exact-ish zeros (sums of
// cancelling terms) whose fp32 value is pure rounding of the larger terms around them.
static inline void compare(const char *what, const char *desc, const float *got, const double *ref, int64_t n, double rtol,
                    double atol) {
    double mx = 0.0;
    for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs(ref[i]));
    double worst = 0.0;
    int64_t wi = 0;
    bool finite = true;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            finite = false;
            wi = i;
            break;
        }
        double e = fabs(got[i] - ref[i]);
        if (e > worst) worst = e, wi = i;
    }
    double tol = atol + rtol * mx;
    char name[200];
    snprintf(name, sizeof name, "%s %s", desc, what);
    if (!finite)
        check(false, name, "element %lld is %g (expected %.8g)", (long long)wi, (double)got[wi], ref[wi]);
    else
        check(worst <= tol, name, "max error %.3g at element %lld (got %.8g, expected %.8g) > tol %.3g (max|ref| %.3g)",
              worst, (long long)wi, (double)got[wi], ref[wi], tol, mx);
}

static inline ddx_ctx *ctx_new(void) {
    static ddx_ctx c;
    memset(&c, 0, sizeof c);
    ddx_status st = ddx_ctx_init(&c, DDX_CPU, (size_t)64 << 20);
    if (st != DDX_OK) {
        printf("FAIL ctx init: %s\n", ddx_last_error());
        return NULL;
    }
    ddx_ctx_set_grad(&c, true);
    return &c;
}

#endif
