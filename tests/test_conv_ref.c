// conv2d against direct loops in double: forward, and backward dX, dW, dBias.
// The op driver only compares the CPU backend with itself, so this is what proves the CPU
// reference (im2col + GEMM) right. Backward grads are pre-filled with known values to prove
// that the ops accumulate (+=) instead of overwriting. Also checks that bad shapes are refused.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/ops.h"
#include "ref_gemm_util.h"

typedef struct conv_spec {
    const char *desc;
    int64_t N, H, W, Ci, Co, KH, KW;
    int stride, pt, pb, pl, pr;
    bool bias;
} conv_spec;

static void check_conv(const conv_spec *s) {
    ddx_ctx c;
    if (!ctx_open(&c, (size_t)64 << 20, s->desc)) return;
    int64_t Ho = (s->H + s->pt + s->pb - s->KH) / s->stride + 1;
    int64_t Wo = (s->W + s->pl + s->pr - s->KW) / s->stride + 1;
    ddx_tensor *x = new_rand(&c, 4, (int64_t[]){s->N, s->H, s->W, s->Ci}, true);     // [N, H, W, Ci]
    ddx_tensor *w = new_rand(&c, 4, (int64_t[]){s->Co, s->KH, s->KW, s->Ci}, true);  // [Co, KH, KW, Ci]
    ddx_tensor *b = s->bias ? new_rand(&c, 1, (int64_t[]){s->Co}, true) : NULL;     // [Co]
    ddx_conv2d_params p = {.stride = s->stride, .pad_top = s->pt, .pad_bottom = s->pb, .pad_left = s->pl, .pad_right = s->pr};
    ddx_tensor *y = ddx_conv2d(&c, x, w, b, p);   // [N, Ho, Wo, Co]
    if (!y || ddx_ctx_status(&c) != DDX_OK) {
        printf("FAIL %s: conv2d returned an error: %s\n", s->desc, ddx_last_error());
        n_fail++;
        ddx_ctx_free(&c);
        return;
    }
    if (y->ndim != 4 || y->shape[0] != s->N || y->shape[1] != Ho || y->shape[2] != Wo || y->shape[3] != s->Co) {
        char buf[64];
        printf("FAIL %s: output shape %s, want [%lld, %lld, %lld, %lld]\n", s->desc, ddx_shape_str(y, buf, sizeof buf),
               (long long)s->N, (long long)Ho, (long long)Wo, (long long)s->Co);
        n_fail++;
        ddx_ctx_free(&c);
        return;
    }
    const float *X = x->data, *Wt = w->data, *B = b ? b->data : NULL;
    int64_t ny = ddx_numel(y), nx = ddx_numel(x), nw = ddx_numel(w);
    double *ref = calloc((size_t)ny, sizeof(double)), *mag = calloc((size_t)ny, sizeof(double));
    double *rdx = calloc((size_t)nx, sizeof(double)), *mdx = calloc((size_t)nx, sizeof(double));
    double *rdw = calloc((size_t)nw, sizeof(double)), *mdw = calloc((size_t)nw, sizeof(double));
    double *rdb = calloc((size_t)s->Co, sizeof(double)), *mdb = calloc((size_t)s->Co, sizeof(double));
    if (!ref || !mag || !rdx || !mdx || !rdw || !mdw || !rdb || !mdb) {
        printf("FAIL %s: out of host memory\n", s->desc);
        n_fail++;
        goto done;
    }
    // The backward's upstream gradient R and the +=-base of every input grad.
    ddx_tensor *R = new_rand(&c, 4, y->shape, false);   // [N, Ho, Wo, Co]
    const float *Rd = R->data;

    // Direct convolution, and its adjoints for R, as 7 nested loops in double.
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++)
                for (int64_t co = 0; co < s->Co; co++) {
                    int64_t yi = ((n * Ho + oh) * Wo + ow) * s->Co + co;
                    double acc = B ? B[co] : 0.0, m = B ? fabs(B[co]) : 0.0;
                    double r = Rd[yi];
                    for (int64_t kh = 0; kh < s->KH; kh++) {
                        int64_t ih = oh * s->stride - s->pt + kh;
                        if (ih < 0 || ih >= s->H) continue;
                        for (int64_t kw = 0; kw < s->KW; kw++) {
                            int64_t iw = ow * s->stride - s->pl + kw;
                            if (iw < 0 || iw >= s->W) continue;
                            for (int64_t ci = 0; ci < s->Ci; ci++) {
                                int64_t xi = ((n * s->H + ih) * s->W + iw) * s->Ci + ci;
                                int64_t wi = ((co * s->KH + kh) * s->KW + kw) * s->Ci + ci;
                                acc += (double)X[xi] * Wt[wi];
                                m += fabs((double)X[xi] * Wt[wi]);
                                rdx[xi] += r * Wt[wi];
                                mdx[xi] += fabs(r * Wt[wi]);
                                rdw[wi] += r * X[xi];
                                mdw[wi] += fabs(r * X[xi]);
                            }
                        }
                    }
                    ref[yi] = acc;
                    mag[yi] = m;
                    rdb[co] += r;
                    mdb[co] += fabs(r);
                }
    compare("conv2d forward", s->desc, y->data, ref, mag, ny);

    check_backward(&c, "conv2d", s->desc, y, R, x, w, b, rdx, mdx, rdw, mdw, rdb, mdb);
done:
    free(ref), free(mag), free(rdx), free(mdx), free(rdw), free(mdw), free(rdb), free(mdb);
    ctx_close(&c, s->desc);
}

// A grad only for the weight (x is data, not a parameter): dX must be skipped, dW still right.
static void check_conv_weight_only(void) {
    ddx_ctx c;
    if (!ctx_open(&c, (size_t)16 << 20, "conv2d weight-only grad")) return;
    ddx_tensor *x = new_rand(&c, 4, (int64_t[]){2, 5, 5, 3}, false);
    ddx_tensor *w = new_rand(&c, 4, (int64_t[]){4, 3, 3, 3}, true);
    ddx_tensor *y = ddx_conv2d(&c, x, w, NULL, (ddx_conv2d_params){.stride = 2, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1});
    ddx_tensor *R = y ? ddx_new_like(&c, y) : NULL;
    if (!R) {
        printf("FAIL conv2d weight-only grad: %s\n", ddx_last_error());
        n_fail++;
        ddx_ctx_free(&c);
        return;
    }
    for (int64_t i = 0; i < ddx_numel(R); i++) ((float *)R->data)[i] = 1.0f;
    if (ddx_backward_from(&c, y, R) != DDX_OK || x->grad != NULL || !w->grad) {
        printf("FAIL conv2d weight-only grad: backward error or a grad was made for x (%s)\n", ddx_last_error());
        n_fail++;
    } else {
        // With R = 1, dW[co, kh, kw, ci] is the sum of x over the pixels tap (kh, kw) reads.
        const float *X = x->data, *G = w->grad->data;
        bool ok = true;
        for (int64_t co = 0; co < 4 && ok; co++)
            for (int64_t kh = 0; kh < 3; kh++)
                for (int64_t kw = 0; kw < 3; kw++)
                    for (int64_t ci = 0; ci < 3; ci++) {
                        double want = 0;
                        for (int64_t n = 0; n < 2; n++)
                            for (int64_t oh = 0; oh < 3; oh++)
                                for (int64_t ow = 0; ow < 3; ow++) {
                                    int64_t ih = oh * 2 - 1 + kh, iw = ow * 2 - 1 + kw;
                                    if (ih >= 0 && ih < 5 && iw >= 0 && iw < 5) want += X[((n * 5 + ih) * 5 + iw) * 3 + ci];
                                }
                        float got = G[((co * 3 + kh) * 3 + kw) * 3 + ci];
                        if (fabs(got - want) > 1e-5 * (1 + fabs(want))) ok = false;
                    }
        if (ok) {
            n_pass++;
        } else {
            printf("FAIL conv2d weight-only grad: dW differs from the direct sum\n");
            n_fail++;
        }
    }
    ctx_close(&c, "conv2d weight-only grad");
}

// Each bad call must return NULL with DDX_E_INPUT and a message naming the op.
static void check_bad_input(void) {
    ddx_ctx c;
    if (!ctx_open(&c, (size_t)4 << 20, "bad input")) return;
    ddx_tensor *x = new_rand(&c, 4, (int64_t[]){1, 4, 4, 3}, false);
    ddx_tensor *w = new_rand(&c, 4, (int64_t[]){5, 3, 3, 3}, false);
    ddx_tensor *w_ci = new_rand(&c, 4, (int64_t[]){5, 3, 3, 4}, false);
    ddx_tensor *w_big = new_rand(&c, 4, (int64_t[]){5, 7, 7, 3}, false);
    ddx_tensor *w3 = new_rand(&c, 3, (int64_t[]){5, 3, 3}, false);
    ddx_tensor *b_bad = new_rand(&c, 1, (int64_t[]){4}, false);
    ddx_conv2d_params ok = {.stride = 1, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1};
    ddx_conv2d_params s3 = ok, neg = ok;
    s3.stride = 3;
    neg.pad_left = -1;
    struct {
        const char *what, *op;
        int kind;
        ddx_tensor *a, *b, *bias;
        ddx_conv2d_params p;
    } bad[] = {
        {"conv2d weight Ci mismatch", "conv2d", 0, x, w_ci, NULL, ok},
        {"conv2d weight not 4-D", "conv2d", 0, x, w3, NULL, ok},
        {"conv2d stride 3", "conv2d", 0, x, w, NULL, s3},
        {"conv2d negative pad", "conv2d", 0, x, w, NULL, neg},
        {"conv2d bias wrong length", "conv2d", 0, x, w, b_bad, ok},
        {"conv2d kernel larger than padded input", "conv2d", 0, x, w_big, NULL, ok},
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
    ctx_close(&c, "bad input");
}

int main(void) {
    static const conv_spec convs[] = {
        {"3x3 s1 p1 [2,5,5,3] -> 5, bias", 2, 5, 5, 3, 5, 3, 3, 1, 1, 1, 1, 1, true},
        {"3x3 s1 p1 [3,4,7,5] -> 3, no bias", 3, 4, 7, 5, 3, 3, 3, 1, 1, 1, 1, 1, false},
        {"3x3 s1 p0 [1,6,5,3] -> 4", 1, 6, 5, 3, 4, 3, 3, 1, 0, 0, 0, 0, true},
        {"3x3 s2 p1 [2,7,6,5] -> 3", 2, 7, 6, 5, 3, 3, 3, 2, 1, 1, 1, 1, true},
        {"3x3 s2 pad (0,1,0,1) [3,8,8,3] -> 5", 3, 8, 8, 3, 5, 3, 3, 2, 0, 1, 0, 1, true},
        {"3x3 s2 pad (0,1,0,1) odd [1,7,5,5] -> 5", 1, 7, 5, 5, 5, 3, 3, 2, 0, 1, 0, 1, false},
        {"1x1 s1 direct [2,4,3,5] -> 3", 2, 4, 3, 5, 3, 1, 1, 1, 0, 0, 0, 0, true},
        {"1x1 s1 direct [1,3,3,7] -> 5, no bias", 1, 3, 3, 7, 5, 1, 1, 1, 0, 0, 0, 0, false},
        {"1x1 s2 [3,5,5,3] -> 5", 3, 5, 5, 3, 5, 1, 1, 2, 0, 0, 0, 0, true},
        {"1x1 s1 p1 (all-padding border) [1,3,4,3] -> 5", 1, 3, 4, 3, 5, 1, 1, 1, 1, 1, 1, 1, true},
        {"3x3 s1 p1 on 1x1 spatial [3,1,1,5] -> 3", 3, 1, 1, 5, 3, 3, 3, 1, 1, 1, 1, 1, true},
        {"3x3 s2 p1 on 1x1 spatial [1,1,1,3] -> 5", 1, 1, 1, 3, 5, 3, 3, 2, 1, 1, 1, 1, false},
        {"3x1 s1 pad (1,1,0,0) [2,4,5,3] -> 5", 2, 4, 5, 3, 5, 3, 1, 1, 1, 1, 0, 0, true},
        {"1x3 s2 pad (0,0,2,1) [1,5,9,4] -> 3", 1, 5, 9, 4, 3, 1, 3, 2, 0, 0, 2, 1, true},
        {"5x5 s1 p2 [1,6,6,3] -> 4", 1, 6, 6, 3, 4, 5, 5, 1, 2, 2, 2, 2, true},
        {"3x3 s1 p1 Ci=33 [1,6,5,33] -> 8", 1, 6, 5, 33, 8, 3, 3, 1, 1, 1, 1, 1, true},
        // 2048 rows x 576 columns of im2col = 4.5 MiB: more than one scratch chunk.
        {"3x3 s1 p1 chunked im2col [2,32,32,64] -> 16", 2, 32, 32, 64, 16, 3, 3, 1, 1, 1, 1, 1, true},
        {"3x3 s2 (0,1,0,1) chunked im2col [3,32,32,96] -> 8", 3, 32, 32, 96, 8, 3, 3, 2, 0, 1, 0, 1, true},
    };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) check_conv(&convs[i]);

    check_conv_weight_only();
    check_bad_input();

    printf("conv-ref: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
