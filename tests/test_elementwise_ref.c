// Independent checks of the CPU concat and dropout: direct formulas in double, backward by
// probing the double reference with unit vectors (so it shares no code with the backward under
// test), dropout statistics and keying, and bad inputs.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/op_impl.h"
#include "runtime/ops.h"
#include "ref_util.h"
#include "runtime/philox.h"

#include "check.h"

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

// ---- bad inputs -----------------------------------------------------------------------------
static void test_bad_inputs(ddx_ctx *c) {
    ddx_ctx_reset(c);
    CHECK(expect_error(c, ddx_concat(c, mk(c, 4, (int64_t[]){1, 4, 4, 2}, NULL, false), mk(c, 4, (int64_t[]){1, 4, 3, 2}, NULL, false)),
                       DDX_E_INPUT, "concat"),
          "concat: mismatched W rejected");
    ddx_ctx_reset(c);
    ddx_clear_error();
}

int main(void) {
    ddx_ctx c;
    if (ddx_ctx_init(&c, DDX_CPU, (size_t)64 << 20) != DDX_OK) {
        printf("elementwise-ref: cannot create a CPU context: %s\n", ddx_last_error());
        return 1;
    }
    c.act.debug = true;   // poison allocations with NaN: an unwritten output element shows up

    test_concat(&c, 4, (int64_t[]){2, 3, 3, 1}, (int64_t[]){2, 3, 3, 5});
    test_concat(&c, 2, (int64_t[]){3, 5}, (int64_t[]){3, 3});
    test_concat(&c, 3, (int64_t[]){1, 7, 1}, (int64_t[]){1, 7, 1});

    test_dropout(&c);
    test_bad_inputs(&c);

    ddx_status gst = ddx_arena_check_guards(&c.act);
    CHECK(gst == DDX_OK, "arena guards intact: %s", ddx_last_error());
    ddx_ctx_free(&c);
    return ddx_test_finish("elementwise-ref");
}
