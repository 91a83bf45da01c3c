// PyTorch parity: runs conv2d, linear, group_norm (+SiLU), attention and a DDPM AttnBlock on the
// CPU backend and compares the output and every input gradient with values PyTorch computed
// (tests/data/parity/parity.safetensors, made by tests/reference/make_parity_fixtures.py).
//
// The fixture stores conv/group_norm tensors as torch has them (activations NCHW, conv weights
// OIHW); this test converts them to NHWC / OHWI itself because that is exactly the conversion
// checkpoint loading performs, so a wrong permutation fails here. Attention tensors are stored
// in ddx's [N, L, heads * head_dim] layout already. Shapes and op parameters are stated below
// and checked against the file, so a regenerated fixture that drifted fails loudly.
//
// Usage: test_parity [FIXTURE]   (default data/parity/parity.safetensors, run from tests/)
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/ops.h"
#include "runtime/safetensors.h"

static int g_pass, g_fail;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
    g_fail++;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

// ---- cases ----------------------------------------------------------------------------------
// LAY_NCHW: a 4-D torch tensor [A, B, C, D] (NCHW activation or OIHW weight) that ddx holds as
// [A, C, D, B] (NHWC / OHWI). LAY_ASIS: same layout on both sides.
typedef enum lay { LAY_ASIS = 0, LAY_NCHW } lay;

#define MAX_IN 11

typedef struct pin {
    const char *key;
    lay l;
    int ndim;
    int64_t shape[4];   // torch shape, as stored in the file
    // Smallest value of max|ref| the gradient tolerance is scaled by. 0 for most tensors; set
    // for a gradient that is zero in exact arithmetic, where both sides hold only rounding noise
    // of the O(1) terms that cancel, so scaling by max|ref| would demand equal noise.
    double grad_floor;
} pin;

struct pcase;
typedef ddx_tensor *(*apply_fn)(ddx_ctx *c, ddx_tensor *const *in, const struct pcase *pc);

typedef struct pcase {
    const char *name;   // for messages
    const char *fx;     // fixture prefix: tensors are "<fx>.<key>", "<fx>.out", "<fx>.R", "<fx>.grad.<key>"
    int n_in;
    pin in[MAX_IN];
    pin out;            // key unused
    apply_fn apply;
    ddx_conv2d_params conv;
    int groups;
    bool fuse_silu;
    int heads;
    double fwd_rtol, grad_rtol;   // relative to max |ref| of each tensor
} pcase;

static ddx_tensor *apply_conv(ddx_ctx *c, ddx_tensor *const *in, const pcase *pc) {
    return ddx_conv2d(c, in[0], in[1], pc->n_in > 2 ? in[2] : NULL, pc->conv);
}

static ddx_tensor *apply_linear(ddx_ctx *c, ddx_tensor *const *in, const pcase *pc) {
    (void)pc;
    return ddx_linear(c, in[0], in[1], in[2]);
}

static ddx_tensor *apply_gn(ddx_ctx *c, ddx_tensor *const *in, const pcase *pc) {
    return ddx_group_norm(c, in[0], in[1], in[2], pc->groups, 1e-6f, pc->fuse_silu);
}

// The same reference as the fused case, reached by composing group_norm and silu.
static ddx_tensor *apply_gn_then_silu(ddx_ctx *c, ddx_tensor *const *in, const pcase *pc) {
    return ddx_silu(c, ddx_group_norm(c, in[0], in[1], in[2], pc->groups, 1e-6f, false));
}

static ddx_tensor *apply_attn(ddx_ctx *c, ddx_tensor *const *in, const pcase *pc) {
    return ddx_attention(c, in[0], in[1], in[2], pc->heads, 0.0f);
}

// DDPM AttnBlock: x + proj(attention(q(h), k(h), v(h))) with h = GroupNorm(x).
// in: x, gamma, beta, w_q, b_q, w_k, b_k, w_v, b_v, w_proj, b_proj.
static ddx_tensor *apply_attn_block(ddx_ctx *c, ddx_tensor *const *in, const pcase *pc) {
    ddx_tensor *x = in[0];                                                       // [N, H, W, C]
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    ddx_tensor *h = ddx_group_norm(c, x, in[1], in[2], pc->groups, 1e-6f, false);
    h = ddx_reshape(c, h, 3, (int64_t[]){N, H * W, C});                         // [N, L, C]
    ddx_tensor *q = ddx_linear(c, h, in[3], in[4]);                              // [N, L, C]
    ddx_tensor *k = ddx_linear(c, h, in[5], in[6]);
    ddx_tensor *v = ddx_linear(c, h, in[7], in[8]);
    ddx_tensor *a = ddx_attention(c, q, k, v, pc->heads, 0.0f);                  // [N, L, C]
    ddx_tensor *o = ddx_linear(c, a, in[9], in[10]);                             // [N, L, C]
    o = ddx_reshape(c, o, 4, (int64_t[]){N, H, W, C});                          // [N, H, W, C]
    return ddx_add(c, x, o);
}

// Tolerances, relative to the largest |reference| value of each tensor (element-wise relative
// error is meaningless where values are near zero):
//  - forward 1e-5 for single ops: torch and ddx sum the same products in a different order
//    (different GEMM blocking), which costs a few fp32 ulps of the largest partial sums; seen:
//    <= 2.5e-7, except gn_32 at 1.3e-6, whose x - mean (|x| ~ 0.5, std 0.02) is rounded at
//    0.5's ulp and then scaled up by rstd = 50.
//  - gradients 5e-5: weight and bias grads reduce over every output position (N*Ho*Wo terms)
//    and the GroupNorm / softmax backward subtract per-group / per-row means from values of
//    similar size, so cancellation amplifies the same reordering error by a small factor;
//    seen: <= 3e-6 (gn_32 grad.gamma).
//  - the composite AttnBlock chains five ops, each adding its rounding: 3e-5 / 1e-4.
#define FWD_TOL 1e-5
#define GRAD_TOL 5e-5

// Fixture tensor descriptions: torch shape, and whether it is NCHW/OIHW.
#define NCHW(K, A, B, C, D) {.key = K, .l = LAY_NCHW, .ndim = 4, .shape = {A, B, C, D}}
#define T3(K, A, B, C) {.key = K, .ndim = 3, .shape = {A, B, C}}
#define T2(K, A, B) {.key = K, .ndim = 2, .shape = {A, B}}
#define T1(K, A) {.key = K, .ndim = 1, .shape = {A}}

#define CONV_CASE(NAME, KK, HO, WO, STRIDE, PT, PB, PL, PR, BIAS)                                          \
    {.name = NAME, .fx = NAME, .n_in = (BIAS) ? 3 : 2,                                                     \
     .in = {NCHW("x", 2, 5, 6, 5), NCHW("w", 7, 5, KK, KK), T1("b", 7)}, .out = NCHW(NULL, 2, 7, HO, WO), \
     .apply = apply_conv, .conv = {STRIDE, PT, PB, PL, PR}, .fwd_rtol = FWD_TOL, .grad_rtol = GRAD_TOL}

#define LINEAR_CASE(NAME, X, OUT)                                                                           \
    {.name = NAME, .fx = NAME, .n_in = 3, .in = {X, T2("w", 9, 12), T1("b", 9)}, .out = OUT,                \
     .apply = apply_linear, .fwd_rtol = FWD_TOL, .grad_rtol = GRAD_TOL}

#define GN_CASE(NAME, FX, APPLY, SILU, N, C, H, W, G)                                                       \
    {.name = NAME, .fx = FX, .n_in = 3, .in = {NCHW("x", N, C, H, W), T1("gamma", C), T1("beta", C)},      \
     .out = NCHW(NULL, N, C, H, W), .apply = APPLY, .groups = G, .fuse_silu = SILU, .fwd_rtol = FWD_TOL,    \
     .grad_rtol = GRAD_TOL}

#define ATTN_CASE(NAME, N, L, HEADS, D)                                                                     \
    {.name = NAME, .fx = NAME, .n_in = 3,                                                                  \
     .in = {T3("q", N, L, (HEADS) * (D)), T3("k", N, L, (HEADS) * (D)), T3("v", N, L, (HEADS) * (D))},     \
     .out = T3(NULL, N, L, (HEADS) * (D)), .apply = apply_attn, .heads = HEADS, .fwd_rtol = FWD_TOL,       \
     .grad_rtol = GRAD_TOL}

static const pcase g_cases[] = {
    // 3x3 stride 1 pad 1; stride 2 pad 1; stride 2 with TF "SAME" padding (bottom/right only); 1x1 no bias.
    CONV_CASE("conv_s1", 3, 6, 5, 1, 1, 1, 1, 1, true),
    CONV_CASE("conv_s2", 3, 3, 3, 2, 1, 1, 1, 1, true),
    CONV_CASE("conv_s2_tf", 3, 3, 2, 2, 0, 1, 0, 1, true),
    CONV_CASE("conv_1x1", 1, 6, 5, 1, 0, 0, 0, 0, false),
    LINEAR_CASE("linear_2d", T2("x", 5, 12), T2(NULL, 5, 9)),
    LINEAR_CASE("linear_3d", T3("x", 2, 7, 12), T3(NULL, 2, 7, 9)),
    GN_CASE("gn", "gn", apply_gn, false, 2, 12, 5, 3, 4),
    GN_CASE("gn_silu_fused", "gn_silu", apply_gn, true, 2, 12, 5, 3, 4),
    GN_CASE("gn_then_silu", "gn_silu", apply_gn_then_silu, false, 2, 12, 5, 3, 4),
    GN_CASE("gn_32", "gn_32", apply_gn, false, 2, 64, 4, 4, 32),
    ATTN_CASE("attn_h1", 2, 9, 1, 16),
    ATTN_CASE("attn_h4", 2, 12, 4, 8),
    {.name = "attn_block", .fx = "attn_block", .n_in = 11,
     .in = {NCHW("x", 1, 32, 4, 4), T1("gamma", 32), T1("beta", 32), T2("w_q", 32, 32), T1("b_q", 32),
            T2("w_k", 32, 32),
            // Softmax ignores a constant added to a row of logits, and q . b_k is one such constant
            // per query row: d/d b_k is exactly zero, torch's value (~1e-6) is rounding noise.
            {.key = "b_k", .ndim = 1, .shape = {32}, .grad_floor = 1.0}, T2("w_v", 32, 32), T1("b_v", 32),
            T2("w_proj", 32, 32), T1("b_proj", 32)},
     .out = NCHW(NULL, 1, 32, 4, 4), .apply = apply_attn_block, .groups = 32, .heads = 1, .fwd_rtol = 3e-5,
     .grad_rtol = 1e-4},
};

// ---- fixture access ---------------------------------------------------------------------------
static void layout_shape(const pin *p, int64_t out[4]) {
    for (int i = 0; i < p->ndim; i++) out[i] = p->shape[i];
    if (p->l == LAY_NCHW) {   // [A, B, C, D] -> [A, C, D, B]
        out[1] = p->shape[2];
        out[2] = p->shape[3];
        out[3] = p->shape[1];
    }
}

static int64_t numel_of(const pin *p) {
    int64_t n = 1;
    for (int i = 0; i < p->ndim; i++) n *= p->shape[i];
    return n;
}

static const char *shape_str(int ndim, const int64_t *s, char *buf, size_t n) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && at < n; i++) at += (size_t)snprintf(buf + at, n - at, i ? ", %lld" : "%lld", (long long)s[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
    return buf;
}

// The fixture tensor `<fx>.<key>` in ddx layout, malloc'd; NULL (and a FAIL) when it is missing
// or its dtype or shape is not what the case states.
static float *load(const ddx_st_file *f, const char *fx, const char *key, const pin *p) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", fx, key);
    const ddx_st_tensor *t = ddx_st_find(f, name);
    if (!t) {
        fail("%s: tensor '%s' is missing from the fixture (regenerate it with tests/reference/make_parity_fixtures.py)",
             fx, name);
        return NULL;
    }
    char a[96], b[96];
    bool same = t->dtype == DDX_ST_F32 && t->ndim == p->ndim;
    for (int i = 0; same && i < p->ndim; i++) same = t->shape[i] == p->shape[i];
    if (!same) {
        fail("%s: fixture tensor '%s' is %s %s, the test expects F32 %s", fx, name, ddx_st_dtype_name(t->dtype),
             shape_str(t->ndim, t->shape, a, sizeof a), shape_str(p->ndim, p->shape, b, sizeof b));
        return NULL;
    }
    const int64_t n = numel_of(p);
    float *src = malloc((size_t)n * sizeof *src), *dst = malloc((size_t)n * sizeof *dst);
    if (!src || !dst) {
        free(src);
        free(dst);
        fail("%s: out of memory", fx);
        return NULL;
    }
    memcpy(src, t->data, (size_t)n * sizeof *src);   // the file's alignment is not ours to assume
    if (p->l == LAY_ASIS) {
        free(dst);
        return src;
    }
    const int64_t A = p->shape[0], B = p->shape[1], C = p->shape[2], D = p->shape[3];
    for (int64_t ia = 0; ia < A; ia++)
        for (int64_t ib = 0; ib < B; ib++)
            for (int64_t ic = 0; ic < C; ic++)
                for (int64_t id = 0; id < D; id++)
                    dst[((ia * C + ic) * D + id) * B + ib] = src[((ia * B + ib) * C + ic) * D + id];
    free(src);
    return dst;
}

// A ddx tensor holding the fixture tensor, in the context's arena.
static ddx_tensor *load_tensor(ddx_ctx *c, const ddx_st_file *f, const char *fx, const char *key, const pin *p) {
    float *d = load(f, fx, key, p);
    if (!d) return NULL;
    int64_t shape[4];
    layout_shape(p, shape);
    ddx_tensor *t = ddx_new(c, DDX_F32, p->ndim, shape);
    if (t) memcpy(t->data, d, (size_t)numel_of(p) * sizeof *d);
    else fail("%s: cannot allocate '%s': %s", fx, key, ddx_last_error());
    free(d);
    return t;
}

// Compares got (ddx layout) with the fixture tensor `<fx>.<key>`; prints one line either way.
static void compare(const ddx_st_file *f, const pcase *pc, const char *key, const pin *p, const ddx_tensor *got,
                    double rtol, double floor) {
    float *ref = load(f, pc->fx, key, p);
    if (!ref) return;
    int64_t shape[4];
    layout_shape(p, shape);
    char a[96], b[96];
    bool same = got && got->ndim == p->ndim;
    for (int i = 0; same && i < p->ndim; i++) same = got->shape[i] == shape[i];
    if (!same) {
        if (!got) fail("%s %s: ddx produced no tensor", pc->name, key);
        else
            fail("%s %s: ddx shape %s, expected %s", pc->name, key, shape_str(got->ndim, got->shape, a, sizeof a),
                 shape_str(p->ndim, shape, b, sizeof b));
        free(ref);
        return;
    }
    const float *g = (const float *)got->data;
    const int64_t n = numel_of(p);
    double mx = 0.0, worst = 0.0;
    int64_t wi = 0;
    bool finite = true;
    for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)ref[i]));
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(g[i])) {
            finite = false;
            wi = i;
            break;
        }
        double e = fabs((double)g[i] - (double)ref[i]);
        if (e > worst) worst = e, wi = i;
    }
    // The floor keeps an all-zero reference from demanding bit equality of rounding noise.
    const double tol = rtol * fmax(mx, fmax(floor, 1e-6));
    if (!finite) {
        fail("%s %s: element %lld is %g (reference %.8g)", pc->name, key, (long long)wi, (double)g[wi], (double)ref[wi]);
    } else if (worst > tol) {
        fail("%s %s: max|diff| %.3g > tol %.3g (max|ref| %.3g) at element %lld: got %.8g, torch %.8g", pc->name, key,
             worst, tol, mx, (long long)wi, (double)g[wi], (double)ref[wi]);
    } else {
        g_pass++;
        printf("ok   %-14s %-12s max|diff| %.3g  (tol %.3g, max|ref| %.3g)\n", pc->name, key, worst, tol, mx);
    }
    free(ref);
}

static void run_case(const ddx_st_file *f, const pcase *pc) {
    ddx_ctx c;
    ddx_status st = ddx_ctx_init(&c, DDX_CPU, (size_t)4 << 20);
    if (st != DDX_OK) {
        fail("%s: context init: %s", pc->name, ddx_last_error());
        return;
    }
    c.act.debug = true;   // NaN-poisoned outputs and guard bytes: an unwritten element cannot pass
    ddx_ctx_set_grad(&c, true);

    ddx_tensor *in[MAX_IN] = {0};
    bool loaded = true;
    for (int i = 0; i < pc->n_in; i++) {
        in[i] = load_tensor(&c, f, pc->fx, pc->in[i].key, &pc->in[i]);
        if (!in[i]) loaded = false;
        else in[i]->requires_grad = true;
    }
    ddx_tensor *out = loaded ? pc->apply(&c, in, pc) : NULL;
    if (loaded && (!out || ddx_ctx_status(&c) != DDX_OK)) {
        fail("%s: forward failed: %s", pc->name, ddx_last_error());
        out = NULL;
    }
    if (out) {
        compare(f, pc, "out", &pc->out, out, pc->fwd_rtol, 0.0);
        ddx_tensor *R = load_tensor(&c, f, pc->fx, "R", &pc->out);   // [shape of out]
        if (R) {
            st = ddx_backward_from(&c, out, R);
            if (st != DDX_OK) {
                fail("%s: backward failed: %s", pc->name, ddx_last_error());
            } else {
                for (int i = 0; i < pc->n_in; i++) {
                    char key[64];
                    snprintf(key, sizeof key, "grad.%s", pc->in[i].key);
                    compare(f, pc, key, &pc->in[i], in[i]->grad, pc->grad_rtol, pc->in[i].grad_floor);
                }
            }
        }
    }
    if ((st = ddx_arena_check_guards(&c.act)) != DDX_OK) fail("%s: %s", pc->name, ddx_last_error());
    ddx_ctx_free(&c);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "data/parity/parity.safetensors";
    ddx_st_file f;
    ddx_status st = ddx_st_read(path, &f);
    if (st != DDX_OK) {
        fail("parity fixture %s cannot be used: %s (run from tests/, or regenerate it with "
             "tests/reference/make_parity_fixtures.py)",
             path, ddx_last_error());
    } else {
        const char *tv = ddx_st_meta_get(&f, "torch");
        printf("fixture %s (%zu tensors, torch %s)\n", path, f.n_tensors, tv ? tv : "?");
        for (size_t i = 0; i < sizeof g_cases / sizeof g_cases[0]; i++) run_case(&f, &g_cases[i]);
        ddx_st_close(&f);
    }
    printf("parity: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
