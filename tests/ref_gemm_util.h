// Helpers of the reference tests of the GEMM-shaped families (test_conv_ref.c, test_linear_ref.c):
// a splitmix64 stream of inputs, grads pre-filled to prove accumulation, a per-element
// tolerance scaled by the magnitude of the terms, debug contexts (NaN-poisoned, guarded), and
// the backward check against double references.
#ifndef DDX_TESTS_REF_GEMM_UTIL_H
#define DDX_TESTS_REF_GEMM_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/ops.h"

static int n_pass, n_fail;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static inline float rnd_uniform(void) {   // U(-1, 1), splitmix64
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static inline ddx_tensor *new_rand(ddx_ctx *c, int ndim, const int64_t *shape, bool grad) {
    ddx_tensor *t = ddx_new(c, DDX_F32, ndim, shape);
    if (!t) return NULL;
    float *p = (float *)t->data;
    for (int64_t i = 0; i < ddx_numel(t); i++) p[i] = rnd_uniform();
    t->requires_grad = grad;
    return t;
}

// Pre-fills t's grad with random values and returns a copy of them (the expected base of +=).
static inline double *prefill_grad(ddx_ctx *c, ddx_tensor *t) {
    ddx_tensor *g = ddx_grad_of(c, t);
    if (!g) return NULL;
    int64_t n = ddx_numel(g);
    double *base = malloc((size_t)n * sizeof(double));
    if (!base) return NULL;
    for (int64_t i = 0; i < n; i++) {
        float v = rnd_uniform();
        ((float *)g->data)[i] = v;
        base[i] = v;
    }
    return base;
}

// got vs ref elementwise; mag[i] = sum of |terms| behind ref[i] bounds fp32 GEMM rounding.
static inline bool compare(const char *what, const char *desc, const float *got, const double *ref, const double *mag,
                    int64_t n) {
    int64_t bad = 0, first = -1;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double tol = 1e-6 + 1e-5 * mag[i];
        double err = fabs((double)got[i] - ref[i]);
        if (!(err <= tol)) {   // NaN fails too
            if (first < 0) first = i;
            bad++;
            if (!(err <= worst)) worst = err;
        }
    }
    if (bad) {
        printf("FAIL %s %s: %lld of %lld elements off (first at %lld: got %.8g want %.8g, worst err %.3g)\n", what,
               desc, (long long)bad, (long long)n, (long long)first, (double)got[first], ref[first], worst);
        n_fail++;
        return false;
    }
    n_pass++;
    return true;
}

// A context whose arena poisons every allocation with NaN (an unwritten output element then
// fails) and puts guard bytes after each one (an out-of-bounds write then fails).
static inline bool ctx_open(ddx_ctx *c, size_t bytes, const char *desc) {
    if (ddx_ctx_init(c, DDX_CPU, bytes) != DDX_OK) {
        printf("FAIL %s: ctx init: %s\n", desc, ddx_last_error());
        n_fail++;
        return false;
    }
    c->act.debug = true;
    return true;
}

static inline void ctx_close(ddx_ctx *c, const char *desc) {
    if (ddx_arena_check_guards(&c->act) != DDX_OK) {
        printf("FAIL %s: %s\n", desc, ddx_last_error());
        n_fail++;
    }
    ddx_ctx_free(c);
}

// Backward of y against references computed in double. Grads are pre-filled with random values
// first (their sum is added to the references), which proves the backward accumulates.
static inline void check_backward(ddx_ctx *c, const char *op, const char *desc, ddx_tensor *y, ddx_tensor *R, ddx_tensor *x,
                           ddx_tensor *w, ddx_tensor *b, double *rdx, double *mdx, double *rdw, double *mdw, double *rdb,
                           double *mdb) {
    int64_t nx = ddx_numel(x), nw = ddx_numel(w), nb = b ? ddx_numel(b) : 0;
    char what[64];
    double *bx = prefill_grad(c, x), *bw = prefill_grad(c, w), *bb = b ? prefill_grad(c, b) : NULL;
    if (!bx || !bw || (b && !bb)) {
        printf("FAIL %s: could not pre-fill grads: %s\n", desc, ddx_last_error());
        n_fail++;
    } else if (ddx_backward_from(c, y, R) != DDX_OK) {
        printf("FAIL %s: backward returned an error: %s\n", desc, ddx_last_error());
        n_fail++;
    } else {
        for (int64_t i = 0; i < nx; i++) rdx[i] += bx[i], mdx[i] += fabs(bx[i]);
        for (int64_t i = 0; i < nw; i++) rdw[i] += bw[i], mdw[i] += fabs(bw[i]);
        snprintf(what, sizeof what, "%s dX", op);
        compare(what, desc, x->grad->data, rdx, mdx, nx);
        snprintf(what, sizeof what, "%s dW", op);
        compare(what, desc, w->grad->data, rdw, mdw, nw);
        if (b) {
            for (int64_t i = 0; i < nb; i++) rdb[i] += bb[i], mdb[i] += fabs(bb[i]);
            snprintf(what, sizeof what, "%s dBias", op);
            compare(what, desc, b->grad->data, rdb, mdb, nb);
        }
    }
    free(bx);
    free(bw);
    free(bb);
}

#endif
