// Independent checks of the CPU mse_loss, sum and mean: direct formulas in double, backward
// by probing the double reference with unit vectors, and bad inputs.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/op_impl.h"
#include "runtime/ops.h"
#include "ref_util.h"

#include "check.h"

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
    CHECK(expect_error(c, ddx_mse_loss(c, mk(c, 1, (int64_t[]){3}, NULL, false), mk(c, 1, (int64_t[]){4}, NULL, false)),
                       DDX_E_INPUT, "shape"),
          "mse_loss: shape mismatch rejected");
    ddx_ctx_reset(c);
    ddx_clear_error();
}

int main(void) {
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)64 << 20) != DDX_OK) {
        printf("losses-ref: cannot create a CPU context: %s\n", ddx_last_error());
        return 1;
    }
    c.act.debug = true;   // poison allocations with NaN: an unwritten output element shows up

    test_reductions(&c, 4, (int64_t[]){2, 8, 8, 3});
    test_reductions(&c, 1, (int64_t[]){1});
    test_reductions(&c, 4, (int64_t[]){2, 32, 32, 128});
    test_bad_inputs(&c);

    ddx_status gst = ddx_arena_check_guards(&c.act);
    CHECK(gst == DDX_OK, "arena guards intact: %s", ddx_last_error());
    ddx_ctx_free(&c);
    return ddx_test_finish("losses-ref");
}
