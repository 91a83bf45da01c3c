// linear against direct loops in double: forward, and backward dX, dW, dBias. The op driver
// only compares the CPU backend with itself, so this is what proves the CPU reference (the
// GEMM job it shares with conv2d) right. Backward grads are pre-filled with known values to prove
// that the ops accumulate (+=) instead of overwriting. Also checks that bad shapes are refused.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/ops.h"
#include "ref_gemm_util.h"

typedef struct linear_spec {
    const char *desc;
    int ndim;
    int64_t shape[4];   // x; last dim is In
    int64_t out;
    bool bias;
} linear_spec;

static void check_linear(const linear_spec *s) {
    ddx_ctx c;
    if (!ctx_open(&c, (size_t)16 << 20, s->desc)) return;
    int64_t in = s->shape[s->ndim - 1];
    ddx_tensor *x = new_rand(&c, s->ndim, s->shape, true);            // [..., In]
    ddx_tensor *w = new_rand(&c, 2, (int64_t[]){s->out, in}, true);   // [Out, In]
    ddx_tensor *b = s->bias ? new_rand(&c, 1, (int64_t[]){s->out}, true) : NULL;   // [Out]
    ddx_tensor *y = ddx_linear(&c, x, w, b);   // [..., Out]
    if (!y || ddx_ctx_status(&c) != DDX_OK) {
        printf("FAIL %s: linear returned an error: %s\n", s->desc, ddx_last_error());
        n_fail++;
        ddx_ctx_free(&c);
        return;
    }
    bool shape_ok = y->ndim == s->ndim && y->shape[s->ndim - 1] == s->out;
    for (int d = 0; d + 1 < s->ndim; d++) shape_ok = shape_ok && y->shape[d] == s->shape[d];
    if (!shape_ok) {
        char buf[64];
        printf("FAIL %s: output shape %s\n", s->desc, ddx_shape_str(y, buf, sizeof buf));
        n_fail++;
        ddx_ctx_free(&c);
        return;
    }
    int64_t rows = ddx_numel(x) / in, ny = ddx_numel(y), nx = ddx_numel(x), nw = ddx_numel(w);
    const float *X = x->data, *Wt = w->data, *B = b ? b->data : NULL;
    ddx_tensor *R = new_rand(&c, y->ndim, y->shape, false);
    const float *Rd = R->data;
    double *ref = calloc((size_t)ny, sizeof(double)), *mag = calloc((size_t)ny, sizeof(double));
    double *rdx = calloc((size_t)nx, sizeof(double)), *mdx = calloc((size_t)nx, sizeof(double));
    double *rdw = calloc((size_t)nw, sizeof(double)), *mdw = calloc((size_t)nw, sizeof(double));
    double *rdb = calloc((size_t)s->out, sizeof(double)), *mdb = calloc((size_t)s->out, sizeof(double));
    if (!ref || !mag || !rdx || !mdx || !rdw || !mdw || !rdb || !mdb) {
        printf("FAIL %s: out of host memory\n", s->desc);
        n_fail++;
        goto done;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < s->out; o++) {
            double acc = B ? B[o] : 0.0, m = B ? fabs(B[o]) : 0.0, g = Rd[r * s->out + o];
            for (int64_t i = 0; i < in; i++) {
                double xv = X[r * in + i], wv = Wt[o * in + i];
                acc += xv * wv;
                m += fabs(xv * wv);
                rdx[r * in + i] += g * wv;
                mdx[r * in + i] += fabs(g * wv);
                rdw[o * in + i] += g * xv;
                mdw[o * in + i] += fabs(g * xv);
            }
            ref[r * s->out + o] = acc;
            mag[r * s->out + o] = m;
            rdb[o] += g;
            mdb[o] += fabs(g);
        }
    compare("linear forward", s->desc, y->data, ref, mag, ny);
    check_backward(&c, "linear", s->desc, y, R, x, w, b, rdx, mdx, rdw, mdw, rdb, mdb);
done:
    free(ref), free(mag), free(rdx), free(mdx), free(rdw), free(mdw), free(rdb), free(mdb);
    ctx_close(&c, s->desc);
}

static void check_bad_input(void) {
    ddx_ctx c;
    if (!ctx_open(&c, (size_t)4 << 20, "linear bad input")) return;
    ddx_tensor *x = new_rand(&c, 4, (int64_t[]){1, 4, 4, 3}, false);
    ddx_tensor *w = new_rand(&c, 4, (int64_t[]){5, 3, 3, 3}, false);
    ddx_tensor *b_bad = new_rand(&c, 1, (int64_t[]){4}, false);
    ddx_tensor *lw = new_rand(&c, 2, (int64_t[]){6, 3}, false);
    ddx_tensor *lw_bad = new_rand(&c, 2, (int64_t[]){6, 4}, false);
    ddx_conv2d_params ok = {.stride = 1, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1};
    struct {
        const char *what, *op;
        int kind;
        ddx_tensor *a, *b, *bias;
        ddx_conv2d_params p;
    } bad[] = {
        {"linear In mismatch", "linear", 1, x, lw_bad, NULL, ok},
        {"linear weight not 2-D", "linear", 1, x, w, NULL, ok},
        {"linear bias wrong length", "linear", 1, x, lw, b_bad, ok},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c.status = DDX_OK;
        ddx_clear_error();
        ddx_tensor *y = bad[i].kind == 0 ? ddx_conv2d(&c, bad[i].a, bad[i].b, bad[i].bias, bad[i].p)
                                         : ddx_linear(&c, bad[i].a, bad[i].b, bad[i].bias);
        const char *msg = ddx_last_error();
        if (y || ddx_ctx_status(&c) != DDX_E_INPUT || !strstr(msg, bad[i].op)) {
            printf("FAIL bad input '%s': got %s, status %s, message '%s'\n", bad[i].what, y ? "a tensor" : "NULL",
                   ddx_status_name(ddx_ctx_status(&c)), msg);
            n_fail++;
        } else {
            n_pass++;
        }
    }
    // Control: a well-formed call on the same inputs goes through.
    c.status = DDX_OK;
    if (ddx_linear(&c, x, lw, NULL) == NULL) {
        printf("FAIL linear [1,4,4,3] x [6,3] refused: %s\n", ddx_last_error());
        n_fail++;
    } else {
        n_pass++;
    }
    // Control: a well-formed call on the same inputs goes through.
    c.status = DDX_OK;
    if (ddx_linear(&c, x, lw, NULL) == NULL) {
        printf("FAIL linear [1,4,4,3] x [6,3] refused: %s\n", ddx_last_error());
        n_fail++;
    } else {
        n_pass++;
    }
    ctx_close(&c, "linear bad input");
}

int main(void) {
    static const linear_spec lins[] = {
        {"[4,7] -> 5, bias", 2, {4, 7}, 5, true},
        {"[3,5] -> 3, no bias", 2, {3, 5}, 3, false},
        {"[7] -> 3 (1-D)", 1, {7}, 3, true},
        {"[2,5,6] -> 4 (3-D)", 3, {2, 5, 6}, 4, true},
        {"[2,3,3,6] -> 5 (4-D)", 4, {2, 3, 3, 6}, 5, true},
        {"[3,2,1,5] -> 3 (4-D), no bias", 4, {3, 2, 1, 5}, 3, false},
        {"time MLP [2,512] -> 128", 2, {2, 512}, 128, true},
        {"time MLP [3,128] -> 512", 2, {3, 128}, 512, true},
    };
    for (size_t i = 0; i < sizeof lins / sizeof lins[0]; i++) check_linear(&lins[i]);

    check_bad_input();

    printf("linear-ref: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
