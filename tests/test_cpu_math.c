// runtime/cpu_math.h: ddx_expf and ddx_sigmoidf against double libm, over a dense sweep and
// at the edges (overflow, underflow through the subnormals, infinities, NaN). The sweep runs
// through array loops, the shape GCC vectorises in the ops, so a release build measures the
// vector code the ops run.
#include "cpu_math.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"

// Error of got against the exact value want in units of the float ulp at want (subnormal
// spacing 2^-149 below the normal range).
static double ulp_err(float got, double want) {
    if (isinf(want) || isinf(got)) return (double)got == want ? 0.0 : INFINITY;
    int e;
    frexp(want, &e);
    double ulp = ldexp(1.0, e - 24);
    if (ulp < 0x1p-149) ulp = 0x1p-149;
    return fabs((double)got - want) / ulp;
}

enum { CHUNK = 4096 };

static void test_exp_sweep(void) {
    // 2^23 points over [-88, 88]: every float exponent in the range, steps of ~2e-5.
    const int64_t n = (int64_t)1 << 23;
    const double lo = -88.0, step = 176.0 / (double)n;
    float *x = malloc(CHUNK * sizeof *x), *y = malloc(CHUNK * sizeof *y);
    CHECK(x && y, "out of memory");
    if (!x || !y) return;
    double worst = 0.0, worst_sub = 0.0;
    float at = 0.0f, at_sub = 0.0f;
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        for (int j = 0; j < CHUNK; j++) x[j] = (float)(lo + step * (double)(i0 + j));
        for (int j = 0; j < CHUNK; j++) y[j] = ddx_expf(x[j]);
        for (int j = 0; j < CHUNK; j++) {
            const double want = exp((double)x[j]);
            const double u = ulp_err(y[j], want);
            if (want < 0x1p-126) {
                if (u > worst_sub) worst_sub = u, at_sub = x[j];
            } else if (u > worst) {
                worst = u, at = x[j];
            }
        }
    }
    printf("expf: max error %.3f ulp at %a (normal results), %.3f ulp at %a (subnormal results)\n", worst,
           (double)at, worst_sub, (double)at_sub);
    CHECK(worst <= 2.0, "ddx_expf: %.3f ulp at x = %a, want <= 2", worst, (double)at);
    // Below 2^-126 the spacing is fixed at 2^-149, so a relative error becomes at most one
    // rounding of the single final product.
    CHECK(worst_sub <= 1.0, "ddx_expf (subnormal results): %.3f ulp at x = %a, want <= 1", worst_sub,
          (double)at_sub);
    free(x);
    free(y);
}

static void test_exp_edges(void) {
    CHECK(ddx_expf(0.0f) == 1.0f, "exp(0) = %a, want 1", (double)ddx_expf(0.0f));
    CHECK(ddx_expf(-0.0f) == 1.0f, "exp(-0) = %a, want 1", (double)ddx_expf(-0.0f));
    static const float over[] = {88.73f, 89.0f, 100.0f, 1e10f, 3.0e38f, INFINITY};
    for (size_t i = 0; i < sizeof over / sizeof *over; i++)
        CHECK(isinf(ddx_expf(over[i])) && ddx_expf(over[i]) > 0, "exp(%g) = %g, want +inf", (double)over[i],
              (double)ddx_expf(over[i]));
    static const float under[] = {-103.98f, -104.0f, -200.0f, -1e10f, -3.0e38f, -INFINITY};
    for (size_t i = 0; i < sizeof under / sizeof *under; i++)
        CHECK(ddx_expf(under[i]) == 0.0f, "exp(%g) = %g, want 0", (double)under[i], (double)ddx_expf(under[i]));
    // Largest finite result and the smallest subnormal one.
    CHECK(ulp_err(ddx_expf(88.72f), exp((double)88.72f)) <= 2.0, "exp(88.72) = %a", (double)ddx_expf(88.72f));
    CHECK(ddx_expf(-103.2f) > 0.0f && ddx_expf(-103.2f) <= 0x1p-148f, "exp(-103.2) = %a, want the smallest subnormals",
          (double)ddx_expf(-103.2f));
    CHECK(isnan(ddx_expf(NAN)), "exp(NaN) = %g, want NaN", (double)ddx_expf(NAN));
}

static void test_sigmoid(void) {
    enum { N = 1 << 20 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    CHECK(x && y, "out of memory");
    if (!x || !y) return;
    for (int i = 0; i < N; i++) x[i] = -100.0f + 200.0f * (float)i / (float)N;
    for (int i = 0; i < N; i++) y[i] = ddx_sigmoidf(x[i]);
    double worst = 0.0;
    float at = 0.0f;
    for (int i = 0; i < N; i++) {
        const double want = 1.0 / (1.0 + exp(-(double)x[i]));
        // Where 1 + exp(-x) overflows (x < -88.72) the float result is 0, as with libm expf;
        // judge that region by absolute error.
        const double u = x[i] < -88.5f ? fabs((double)y[i] - want) / 0x1p-149 / 1e10 : ulp_err(y[i], want);
        if (u > worst) worst = u, at = x[i];
    }
    printf("sigmoid: max error %.3f ulp at %a\n", worst, (double)at);
    CHECK(worst <= 3.0, "ddx_sigmoidf: %.3f ulp at x = %a, want <= 3", worst, (double)at);
    CHECK(ddx_sigmoidf(0.0f) == 0.5f, "sigmoid(0) = %a", (double)ddx_sigmoidf(0.0f));
    CHECK(ddx_sigmoidf(100.0f) == 1.0f && ddx_sigmoidf(INFINITY) == 1.0f, "sigmoid(large) must be 1");
    CHECK(ddx_sigmoidf(-100.0f) == 0.0f && ddx_sigmoidf(-INFINITY) == 0.0f, "sigmoid(-large) must be 0");
    CHECK(isnan(ddx_sigmoidf(NAN)), "sigmoid(NaN) must be NaN");
    free(x);
    free(y);
}

int main(void) {
    test_exp_sweep();
    test_exp_edges();
    test_sigmoid();
    return ddx_test_finish("cpu_math");
}
