// Independent checks of the CPU attention: forward and backward against direct formulas
// evaluated in double, written without looking at the factored forms the runtime uses
// (backward through the softmax Jacobian), plus a double-precision finite-difference check of
// those formulas themselves, accumulation into existing grads, and the front-end's bad-input
// errors.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/ops.h"
#include "ref_norm_util.h"

// ============================================================================================
// attention
// ============================================================================================

typedef struct att_shape {
    int64_t N, L, C, H;
    double scale;   // resolved
} att_shape;

static void att_probs(const att_shape *s, const double *q, const double *k, int64_t n, int64_t h, int64_t i, double *P) {
    const int64_t d = s->C / s->H;
    double mx = -INFINITY;
    for (int64_t j = 0; j < s->L; j++) {
        double dot = 0.0;
        for (int64_t e = 0; e < d; e++) dot += q[(n * s->L + i) * s->C + h * d + e] * k[(n * s->L + j) * s->C + h * d + e];
        P[j] = dot * s->scale;
        mx = fmax(mx, P[j]);
    }
    double sum = 0.0;
    for (int64_t j = 0; j < s->L; j++) sum += (P[j] = exp(P[j] - mx));
    for (int64_t j = 0; j < s->L; j++) P[j] /= sum;
}

static void att_ref_forward(const att_shape *s, const double *q, const double *k, const double *v, double *o) {
    const int64_t d = s->C / s->H;
    double *P = malloc((size_t)s->L * sizeof *P);
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t h = 0; h < s->H; h++)
            for (int64_t i = 0; i < s->L; i++) {
                att_probs(s, q, k, n, h, i, P);
                for (int64_t e = 0; e < d; e++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < s->L; j++) acc += P[j] * v[(n * s->L + j) * s->C + h * d + e];
                    o[(n * s->L + i) * s->C + h * d + e] = acc;
                }
            }
    free(P);
}

// Per query row i: dv_j += P_j dO_i; dP_j = dO_i . v_j; through the softmax Jacobian
// dP_j/dS_m = P_j (delta_jm - P_m): dS_m = sum_j dP_j P_j (delta_jm - P_m);
// dq_i += scale sum_m dS_m k_m; dk_m += scale dS_m q_i.
static void att_ref_backward(const att_shape *s, const double *q, const double *k, const double *v, const double *dO,
                             double *dq, double *dk, double *dv) {
    const int64_t d = s->C / s->H, numel = s->N * s->L * s->C;
    double *P = malloc((size_t)s->L * sizeof *P), *dP = malloc((size_t)s->L * sizeof *dP), *dS = malloc((size_t)s->L * sizeof *dS);
    memset(dq, 0, (size_t)numel * sizeof *dq);
    memset(dk, 0, (size_t)numel * sizeof *dk);
    memset(dv, 0, (size_t)numel * sizeof *dv);
#define AT(t, n, row, h, e) t[((n) * s->L + (row)) * s->C + (h) * d + (e)]
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t h = 0; h < s->H; h++)
            for (int64_t i = 0; i < s->L; i++) {
                att_probs(s, q, k, n, h, i, P);
                for (int64_t j = 0; j < s->L; j++) {
                    dP[j] = 0.0;
                    for (int64_t e = 0; e < d; e++) {
                        AT(dv, n, j, h, e) += P[j] * AT(dO, n, i, h, e);
                        dP[j] += AT(dO, n, i, h, e) * AT(v, n, j, h, e);
                    }
                }
                for (int64_t m = 0; m < s->L; m++) {
                    dS[m] = 0.0;
                    for (int64_t j = 0; j < s->L; j++) dS[m] += dP[j] * P[j] * ((j == m ? 1.0 : 0.0) - P[m]);
                }
                for (int64_t m = 0; m < s->L; m++)
                    for (int64_t e = 0; e < d; e++) {
                        AT(dq, n, i, h, e) += s->scale * dS[m] * AT(k, n, m, h, e);
                        AT(dk, n, m, h, e) += s->scale * dS[m] * AT(q, n, i, h, e);
                    }
            }
#undef AT
    free(P), free(dP), free(dS);
}

static double att_loss(const att_shape *s, const double *q, const double *k, const double *v, const double *R) {
    const int64_t numel = s->N * s->L * s->C;
    double *o = malloc((size_t)numel * sizeof *o), L = 0.0;
    att_ref_forward(s, q, k, v, o);
    for (int64_t i = 0; i < numel; i++) L += o[i] * R[i];
    free(o);
    return L;
}

static void att_case(int64_t N, int64_t L, int64_t C, int64_t H, float scale, bool shared_qkv) {
    char desc[160];
    snprintf(desc, sizeof desc, "attention [%lld,%lld,%lld] heads=%lld scale=%g%s", (long long)N, (long long)L,
             (long long)C, (long long)H, (double)scale, shared_qkv ? " q=k=v" : "");
    ddx_ctx *c = ctx_new();
    if (!c) {
        g_fail++;
        return;
    }
    const int64_t numel = N * L * C, shape[3] = {N, L, C};
    att_shape s = {N, L, C, H, scale != 0.0f ? (double)scale : 1.0 / sqrt((double)(C / H))};
    ddx_tensor *q = make(c, 3, shape, 0, 0, true);
    ddx_tensor *k = shared_qkv ? q : make(c, 3, shape, 0, 0, true);
    ddx_tensor *v = shared_qkv ? q : make(c, 3, shape, 0, 0, true);
    ddx_tensor *o = ddx_attention(c, q, k, v, (int)H, scale);
    if (!o) {
        check(false, desc, "attention returned NULL: %s", ddx_last_error());
        ddx_ctx_free(c);
        return;
    }
    double *qd = to_double(q), *kd = to_double(k), *vd = to_double(v);
    double *orf = malloc((size_t)numel * sizeof *orf);
    att_ref_forward(&s, qd, kd, vd, orf);
    compare("forward", desc, (const float *)o->data, orf, numel, 2e-6, 2e-6);

    ddx_tensor *R = ddx_new(c, DDX_F32, 3, shape);
    for (int64_t i = 0; i < numel; i++) ((float *)R->data)[i] = (float)rnd_normal();
    ddx_tensor *g0 = ddx_grad_of(c, q);
    for (int64_t i = 0; i < numel; i++) ((float *)g0->data)[i] = 0.25f;
    ddx_status st = ddx_backward_from(c, o, R);
    check(st == DDX_OK, desc, "backward failed: %s", ddx_last_error());
    if (st == DDX_OK) {
        double *Rd = to_double(R);
        double *dq = malloc((size_t)numel * sizeof *dq), *dk = malloc((size_t)numel * sizeof *dk), *dv = malloc((size_t)numel * sizeof *dv);
        att_ref_backward(&s, qd, kd, vd, Rd, dq, dk, dv);
        if (!shared_qkv) {
            // The double formulas against central differences of the double forward.
            double *vars[3] = {qd, kd, vd};
            const double *grads[3] = {dq, dk, dv};
            const char *names[3] = {"dq", "dk", "dv"};
            for (int t = 0; t < 3; t++) {
                double worst = 0.0, mx = 0.0;
                for (int64_t i = 0; i < numel; i++) mx = fmax(mx, fabs(grads[t][i]));
                for (int r = 0; r < 6; r++) {
                    int64_t i = (int64_t)(rnd_uniform() * (double)numel);
                    double old = vars[t][i], h = 1e-6;
                    vars[t][i] = old + h;
                    double lp = att_loss(&s, qd, kd, vd, Rd);
                    vars[t][i] = old - h;
                    double lm = att_loss(&s, qd, kd, vd, Rd);
                    vars[t][i] = old;
                    worst = fmax(worst, fabs((lp - lm) / (2 * h) - grads[t][i]));
                }
                char name[200];
                snprintf(name, sizeof name, "%s double-FD of the double %s formula", desc, names[t]);
                check(worst <= 1e-6 * (1.0 + mx), name, "max error %.3g (max|grad| %.3g)", worst, mx);
            }
            for (int64_t i = 0; i < numel; i++) dq[i] += 0.25;
            compare("dq", desc, (const float *)q->grad->data, dq, numel, 1e-5, 1e-6);
            compare("dk", desc, (const float *)k->grad->data, dk, numel, 1e-5, 1e-6);
            compare("dv", desc, (const float *)v->grad->data, dv, numel, 1e-5, 1e-6);
        } else {
            // One tensor feeding all three inputs receives the sum of the three grads.
            for (int64_t i = 0; i < numel; i++) dq[i] += dk[i] + dv[i] + 0.25;
            compare("dq+dk+dv", desc, (const float *)q->grad->data, dq, numel, 1e-5, 1e-6);
        }
        free(Rd), free(dq), free(dk), free(dv);
    }
    free(qd), free(kd), free(vd), free(orf);
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
    const char *op = "attention";
    ddx_tensor *x4 = make(c, 4, (int64_t[]){2, 3, 3, 12}, 0, 0, true);
    ddx_tensor *q = make(c, 3, (int64_t[]){2, 5, 12}, 0, 0, true), *k = make(c, 3, (int64_t[]){2, 5, 12}, 0, 0, true);
    ddx_tensor *k6 = make(c, 3, (int64_t[]){2, 6, 12}, 0, 0, true);
    switch (which) {
    case 100: out = ddx_attention(c, q, k, q, 5, 0.0f); break;                 // 5 heads, 12 channels
    case 101: out = ddx_attention(c, q, k6, q, 1, 0.0f); break;                // k length differs
    case 102: out = ddx_attention(c, x4, x4, x4, 1, 0.0f); break;              // 4-D
    case 103: out = ddx_attention(c, q, k, q, 0, 0.0f); break;                 // 0 heads
    case 104: out = ddx_attention(c, q, k, q, 2, NAN); break;                  // NaN scale
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
    // attention: 1 head d=8..64, several heads, L = 1, 3, 16, 64, explicit scale, shared q=k=v.
    att_case(2, 1, 8, 1, 0.0f, false);
    att_case(2, 3, 8, 1, 0.0f, false);
    att_case(1, 16, 16, 1, 0.0f, false);
    att_case(1, 16, 64, 1, 0.0f, false);
    att_case(2, 16, 32, 4, 0.0f, false);
    att_case(1, 64, 64, 4, 0.0f, false);
    att_case(3, 5, 24, 3, 0.7f, false);
    att_case(2, 16, 32, 4, 0.0f, true);

    const char *bad_att[] = {"attention heads do not divide C", "attention k shape differs", "attention 4-D input",
                             "attention 0 heads", "attention NaN scale"};
    for (int i = 0; i < 5; i++) bad_case(bad_att[i], 100 + i);

    printf("attention-ref: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
