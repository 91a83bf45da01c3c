// Elementwise ops: fill, copy, cast, reshape, add, mul (with broadcasting), scale, silu, relu,
// dropout, and concat (a row-wise copy). Front-ends and the CPU reference, forward and
// backward side by side.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cpu_math.h"
#include "op_impl.h"
#include "philox.h"
#include "threads.h"

static ddx_status need_f32(const char *op, const ddx_tensor *t) {
    if (t->dtype != DDX_F32)
        return ddx_errorf(DDX_E_UNSUPPORTED, "%s: the CPU backend computes in f32, got %s", op, ddx_dtype_name(t->dtype));
    return DDX_OK;
}

static ddx_status accumulate(ddx_tensor *dst, const ddx_tensor *src) {
    float *d = ddx_f32(dst);
    const float *s = ddx_f32c(src);
    int64_t n = ddx_numel(dst);
    for (int64_t i = 0; i < n; i++) d[i] += s[i];
    return DDX_OK;
}

// ---- fill ------------------------------------------------------------------------------
ddx_tensor *ddx_fill(ddx_ctx *c, ddx_dtype dt, int ndim, const int64_t *shape, float value) {
    if (!ddx_op_ok(c, "fill", 0, NULL)) return NULL;
    if (dt != DDX_F32 && dt != DDX_BF16 && dt != DDX_I32)
        return ddx_op_fail(c, DDX_E_UNSUPPORTED, "fill: dtype %s is not supported", ddx_dtype_name(dt));
    ddx_op_params p = {.fill = {value}};
    return ddx_op_run(c, DDX_OP_FILL, 0, NULL, &p, dt, ndim, shape);
}

ddx_status ddx_cpu_fill_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    int64_t cnt = ddx_numel(n->out);
    float v = n->p.fill.value;
    if (n->out->dtype == DDX_F32) {
        float *y = ddx_f32(n->out);
        for (int64_t i = 0; i < cnt; i++) y[i] = v;
    } else if (n->out->dtype == DDX_BF16) {
        uint16_t *y = n->out->data, h = ddx_f32_to_bf16(v);
        for (int64_t i = 0; i < cnt; i++) y[i] = h;
    } else {
        int32_t *y = n->out->data, iv = (int32_t)v;
        for (int64_t i = 0; i < cnt; i++) y[i] = iv;
    }
    return DDX_OK;
}

// ---- copy ------------------------------------------------------------------------------
ddx_tensor *ddx_copy(ddx_ctx *c, ddx_tensor *x) {
    if (!ddx_op_ok(c, "copy", 1, &x)) return NULL;
    return ddx_op_run(c, DDX_OP_COPY, 1, &x, NULL, x->dtype, x->ndim, x->shape);
}

ddx_status ddx_cpu_copy_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    memcpy(n->out->data, n->in[0]->data, ddx_nbytes(n->out));
    return DDX_OK;
}

ddx_status ddx_cpu_copy_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (!g) return c->status;
    DDX_TRY(need_f32("copy backward", g));
    return accumulate(g, n->out->grad);
}

// ---- cast ------------------------------------------------------------------------------
ddx_tensor *ddx_cast(ddx_ctx *c, ddx_tensor *x, ddx_dtype to) {
    if (!ddx_op_ok(c, "cast", 1, &x)) return NULL;
    bool fx = x->dtype == DDX_F32 || x->dtype == DDX_BF16, ft = to == DDX_F32 || to == DDX_BF16;
    if (!fx || !ft)
        return ddx_op_fail(c, DDX_E_UNSUPPORTED, "cast: %s -> %s is not supported (f32 <-> bf16 only)",
                           ddx_dtype_name(x->dtype), ddx_dtype_name(to));
    ddx_op_params p = {.cast = {to}};
    return ddx_op_run(c, DDX_OP_CAST, 1, &x, &p, to, x->ndim, x->shape);
}

// src -> dst for any f32/bf16 pair; `acc` adds into dst instead of overwriting.
static void convert(void *dst, ddx_dtype dt, const void *src, ddx_dtype st, int64_t n, bool acc) {
    for (int64_t i = 0; i < n; i++) {
        float v = st == DDX_F32 ? ((const float *)src)[i] : ddx_bf16_to_f32(((const uint16_t *)src)[i]);
        if (dt == DDX_F32) {
            float *d = dst;
            d[i] = acc ? d[i] + v : v;
        } else {
            uint16_t *d = dst;
            d[i] = ddx_f32_to_bf16(acc ? ddx_bf16_to_f32(d[i]) + v : v);
        }
    }
}

ddx_status ddx_cpu_cast_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    convert(n->out->data, n->out->dtype, n->in[0]->data, n->in[0]->dtype, ddx_numel(n->out), false);
    return DDX_OK;
}

ddx_status ddx_cpu_cast_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (!g) return c->status;
    convert(g->data, g->dtype, n->out->grad->data, n->out->grad->dtype, ddx_numel(g), true);
    return DDX_OK;
}

// ---- reshape: a view; no data moves in either direction when it can be avoided ----------
ddx_tensor *ddx_reshape(ddx_ctx *c, ddx_tensor *x, int ndim, const int64_t *shape) {
    if (!ddx_op_ok(c, "reshape", 1, &x)) return NULL;
    if (ndim < 1 || ndim > DDX_MAX_DIMS) return ddx_op_fail(c, DDX_E_INPUT, "reshape: ndim %d out of range 1..4", ndim);
    ddx_tensor *y = ddx_meta_tensor(c);
    if (!y) return NULL;
    *y = ddx_tensor_wrap(x->data, x->dtype, x->device, ndim, shape);
    if (ddx_numel(y) != ddx_numel(x)) {
        char a[64], b[64];
        return ddx_op_fail(c, DDX_E_INPUT, "reshape: %s has %lld elements, %s has %lld", ddx_shape_str(x, a, sizeof a),
                           (long long)ddx_numel(x), ddx_shape_str(y, b, sizeof b), (long long)ddx_numel(y));
    }
    if (!ddx_op_record(c, DDX_OP_RESHAPE, 1, &x, NULL, y)) return NULL;
    return y;
}

ddx_status ddx_cpu_reshape_fwd(ddx_ctx *c, ddx_node *n) {
    // Only reached through the dispatch table (ddx_reshape aliases without dispatch).
    (void)c;
    if (n->out->data != n->in[0]->data) memcpy(n->out->data, n->in[0]->data, ddx_nbytes(n->out));
    return DDX_OK;
}

ddx_status ddx_cpu_reshape_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *x = n->in[0];
    if (!x->requires_grad) return DDX_OK;
    if (!x->grad) {
        // Nothing else has written x's grad yet: alias the output's grad buffer (same
        // bytes, x's shape) instead of allocating and copying.
        ddx_tensor *g = ddx_meta_tensor(c);
        if (!g) return c->status;
        *g = ddx_tensor_wrap(n->out->grad->data, x->dtype, x->device, x->ndim, x->shape);
        x->grad = g;
        return DDX_OK;
    }
    DDX_TRY(need_f32("reshape backward", x->grad));
    return accumulate(x->grad, n->out->grad);
}

// ---- add / mul with broadcasting of b into a ---------------------------------------------
// b is right-aligned against a (numpy rules restricted to b broadcasting into a): each of
// b's dims is 1 or equal to a's. bstride gives b's element stride along each of a's 4 dims,
// 0 where b broadcasts.
static bool bcast_strides(const ddx_tensor *a, const ddx_tensor *b, int64_t as[4], int64_t bs[4]) {
    if (b->ndim > a->ndim) return false;
    int64_t bshape[4];
    int off = a->ndim - b->ndim;
    for (int i = 0; i < 4; i++) {
        as[i] = i < a->ndim ? a->shape[i] : 1;
        bshape[i] = i < off || i >= a->ndim ? 1 : b->shape[i - off];
        if (bshape[i] != 1 && bshape[i] != as[i]) return false;
    }
    int64_t s = 1;
    for (int i = 3; i >= 0; i--) {
        bs[i] = bshape[i] == 1 ? 0 : s;
        s *= bshape[i];
    }
    return true;
}

typedef enum { BIN_ADD, BIN_MUL } bin_kind;

static ddx_tensor *binary(ddx_ctx *c, ddx_op op, const char *name, ddx_tensor *a, ddx_tensor *b) {
    ddx_tensor *in[2] = {a, b};
    if (!ddx_op_ok(c, name, 2, in)) return NULL;
    int64_t as[4], bs[4];
    if (a->dtype != b->dtype || !bcast_strides(a, b, as, bs)) {
        char sa[64], sb[64];
        return ddx_op_fail(c, DDX_E_INPUT, "%s: %s %s does not broadcast into %s %s", name, ddx_dtype_name(b->dtype),
                           ddx_shape_str(b, sb, sizeof sb), ddx_dtype_name(a->dtype), ddx_shape_str(a, sa, sizeof sa));
    }
    return ddx_op_run(c, op, 2, in, NULL, a->dtype, a->ndim, a->shape);
}

ddx_tensor *ddx_add(ddx_ctx *c, ddx_tensor *a, ddx_tensor *b) { return binary(c, DDX_OP_ADD, "add", a, b); }
ddx_tensor *ddx_mul(ddx_ctx *c, ddx_tensor *a, ddx_tensor *b) { return binary(c, DDX_OP_MUL, "mul", a, b); }

// Both passes walk a as rows of its last dim. b's row for a's row (i0, i1, i2) starts at
// i0*bs[0] + i1*bs[1] + i2*bs[2]; within the row b either runs along (bs[3] == 1) or is one
// value (bs[3] == 0). Each case gets its own plain loop, which GCC vectorises; one loop
// with a runtime stride and the kind switch inside did not.
typedef struct bin_rows {
    int64_t as[4], bs[4];
    int64_t len;   // row length: a's last dim
} bin_rows;

static bin_rows bin_rows_of(const ddx_tensor *a, const ddx_tensor *b) {
    int64_t as[4], bs[4];
    bcast_strides(a, b, as, bs);
    // bcast_strides pads past a's dims (size 1); move a's dims to the back instead so that
    // the row is a's real last dim whatever its rank (a [M, C] walks M rows of C, not M*C
    // rows of 1).
    bin_rows r;
    const int off = 4 - a->ndim;
    for (int i = 0; i < 4; i++) {
        r.as[i] = i < off ? 1 : as[i - off];
        r.bs[i] = i < off ? 0 : bs[i - off];
    }
    r.len = r.as[3];
    return r;
}

// Calls BODY with `row` (index of the row's first element in a) and `ob` (offset of b's
// matching element or row) for every row of a, in memory order.
#define BIN_FOR_ROWS(r, BODY)                                                                  \
    do {                                                                                       \
        int64_t row = 0;                                                                       \
        for (int64_t i0 = 0; i0 < (r).as[0]; i0++)                                             \
            for (int64_t i1 = 0; i1 < (r).as[1]; i1++)                                         \
                for (int64_t i2 = 0; i2 < (r).as[2]; i2++, row += (r).len) {                   \
                    const int64_t ob = i0 * (r).bs[0] + i1 * (r).bs[1] + i2 * (r).bs[2];       \
                    BODY;                                                                      \
                }                                                                              \
    } while (0)

// Rows [r0, r1) of the row walk (flat index over a's leading dims) as (row, ob) pairs.
#define BIN_FOR_ROW_RANGE(r, r0, r1, BODY)                                                     \
    do {                                                                                       \
        for (int64_t rr = (r0); rr < (r1); rr++) {                                             \
            const int64_t i2 = rr % (r).as[2], i1 = (rr / (r).as[2]) % (r).as[1],              \
                          i0 = rr / ((r).as[2] * (r).as[1]);                                   \
            const int64_t row = rr * (r).len;                                                  \
            const int64_t ob = i0 * (r).bs[0] + i1 * (r).bs[1] + i2 * (r).bs[2];               \
            BODY;                                                                              \
        }                                                                                      \
    } while (0)

// Below this many elements a thread hand-off costs more than the loop.
#define BIN_PAR_MIN ((int64_t)1 << 16)

typedef struct bin_job {
    bin_rows r;
    bin_kind k;
    const float *pa, *pb, *dy;
    float *y;        // forward output, or the gradient being accumulated
    bool flat, along;
} bin_job;

static int64_t bin_nrows(const bin_rows *r) { return r->as[0] * r->as[1] * r->as[2]; }

static void bin_fwd_range(void *arg, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const bin_job *j = arg;
    const bin_rows r = j->r;
    const float *pa = j->pa, *pb = j->pb;
    float *y = j->y;
    const int64_t L = r.len;
    if (j->flat) {
        const int64_t e0 = r0 * L, e1 = r1 * L;
        if (j->k == BIN_ADD)
            for (int64_t i = e0; i < e1; i++) y[i] = pa[i] + pb[i];
        else
            for (int64_t i = e0; i < e1; i++) y[i] = pa[i] * pb[i];
    } else if (j->along) {
        if (j->k == BIN_ADD)
            BIN_FOR_ROW_RANGE(r, r0, r1, for (int64_t i = 0; i < L; i++) y[row + i] = pa[row + i] + pb[ob + i]);
        else
            BIN_FOR_ROW_RANGE(r, r0, r1, for (int64_t i = 0; i < L; i++) y[row + i] = pa[row + i] * pb[ob + i]);
    } else {
        if (j->k == BIN_ADD)
            BIN_FOR_ROW_RANGE(r, r0, r1, const float bv = pb[ob]; for (int64_t i = 0; i < L; i++) y[row + i] = pa[row + i] + bv);
        else
            BIN_FOR_ROW_RANGE(r, r0, r1, const float bv = pb[ob]; for (int64_t i = 0; i < L; i++) y[row + i] = pa[row + i] * bv);
    }
}

// The gradient of a: every row of a is written by exactly one range.
static void bin_da_range(void *arg, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const bin_job *j = arg;
    const bin_rows r = j->r;
    const float *pb = j->pb, *dy = j->dy;
    float *da = j->y;
    const int64_t L = r.len;
    if (j->k == BIN_ADD) {
        for (int64_t i = r0 * L; i < r1 * L; i++) da[i] += dy[i];
    } else if (j->flat) {
        for (int64_t i = r0 * L; i < r1 * L; i++) da[i] += dy[i] * pb[i];
    } else if (j->along) {
        BIN_FOR_ROW_RANGE(r, r0, r1, for (int64_t i = 0; i < L; i++) da[row + i] += dy[row + i] * pb[ob + i]);
    } else {
        BIN_FOR_ROW_RANGE(r, r0, r1, const float bv = pb[ob]; for (int64_t i = 0; i < L; i++) da[row + i] += dy[row + i] * bv);
    }
}

// The gradient of b when b has a's shape (no reduction across rows).
static void bin_db_flat_range(void *arg, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const bin_job *j = arg;
    const int64_t L = j->r.len;
    const float *pa = j->pa, *dy = j->dy;
    float *db = j->y;
    if (j->k == BIN_ADD)
        for (int64_t i = r0 * L; i < r1 * L; i++) db[i] += dy[i];
    else
        for (int64_t i = r0 * L; i < r1 * L; i++) db[i] += dy[i] * pa[i];
}

// db for b [N, 1, 1, C] added along a's rows: items [i0a, i0b), each summing its own rows
// in the same order as the serial loop.
static void bin_db_item_range(void *arg, int64_t i0a, int64_t i0b, int tid) {
    (void)tid;
    const bin_job *j = arg;
    const bin_rows r = j->r;
    const int64_t L = r.len, per = r.as[1] * r.as[2];
    for (int64_t i0 = i0a; i0 < i0b; i0++) {
        float *db = j->y + i0 * r.bs[0];
        for (int64_t q = 0; q < per; q++) {
            const float *d = j->dy + (i0 * per + q) * L;
            for (int64_t i = 0; i < L; i++) db[i] += d[i];
        }
    }
}

static void bin_run(bin_job *j, ddx_parallel_fn fn) {
    const int64_t rows = bin_nrows(&j->r);
    if (rows * j->r.len >= BIN_PAR_MIN) ddx_parallel_for(rows, fn, j);
    else if (rows > 0) fn(j, 0, rows, 0);
}

static ddx_status binary_fwd(ddx_node *n, bin_kind k) {
    const ddx_tensor *a = n->in[0], *b = n->in[1];
    DDX_TRY(need_f32(ddx_op_name(n->op), a));
    bin_job j = {.r = bin_rows_of(a, b), .k = k, .pa = ddx_f32c(a), .pb = ddx_f32c(b), .y = ddx_f32(n->out)};
    j.flat = ddx_numel(b) == ddx_numel(a);
    j.along = j.r.bs[3] != 0;
    bin_run(&j, bin_fwd_range);
    return DDX_OK;
}

// Gradients of a and b are accumulated in separate passes: a and b may be the same tensor
// (x + x, x * x), and then ga and gb are the same buffer.
// add passes dy through unchanged: an input whose grad nobody has written yet takes dy's
// buffer (ddx_grad_take); only one input may, or two grads would share one buffer.

static ddx_status binary_bwd(ddx_ctx *c, ddx_node *n, bin_kind k) {
    const ddx_tensor *a = n->in[0], *b = n->in[1];
    bool took_a = false, took_b = false;
    if (k == BIN_ADD && n->in[0] != n->in[1]) {
        took_a = ddx_grad_take(n->in[0], n->out->grad);
        if (!took_a) took_b = ddx_grad_take(n->in[1], n->out->grad);
    }
    ddx_tensor *ga = took_a ? NULL : ddx_in_grad(c, n, 0), *gb = took_b ? NULL : ddx_in_grad(c, n, 1);
    if (c->status != DDX_OK) return c->status;
    const bin_rows r = bin_rows_of(a, b);
    const float *pa = ddx_f32c(a), *pb = ddx_f32c(b), *dy = ddx_f32c(n->out->grad);
    const int64_t L = r.len;
    const bool flat = ddx_numel(b) == ddx_numel(a), along = r.bs[3] != 0;
    bin_job j = {.r = r, .k = k, .pa = pa, .pb = pb, .dy = dy, .flat = flat, .along = along};
    if (ga) {
        j.y = ddx_f32(ga);
        bin_run(&j, bin_da_range);
    }
    if (gb) {
        float *db = ddx_f32(gb);
        if (flat) {
            j.y = db;
            bin_run(&j, bin_db_flat_range);
        } else if (along && k == BIN_ADD && r.bs[0] != 0 && r.bs[1] == 0 && r.bs[2] == 0) {
            // b [N, 1, 1, C] (a per-item bias such as the time embedding): items own disjoint
            // rows of db, so the reduction splits by item with no shared accumulators.
            j.y = db;
            if (ddx_numel(a) >= BIN_PAR_MIN) ddx_parallel_for(r.as[0], bin_db_item_range, &j);
            else bin_db_item_range(&j, 0, r.as[0], 0);
        } else if (along && k == BIN_ADD)
            BIN_FOR_ROWS(r, for (int64_t i = 0; i < L; i++) db[ob + i] += dy[row + i]);
        else if (along)
            BIN_FOR_ROWS(r, for (int64_t i = 0; i < L; i++) db[ob + i] += dy[row + i] * pa[row + i]);
        else if (k == BIN_ADD)
            BIN_FOR_ROWS(r, float acc = 0.0f; for (int64_t i = 0; i < L; i++) acc += dy[row + i]; db[ob] += acc);
        else
            BIN_FOR_ROWS(r, float acc = 0.0f; for (int64_t i = 0; i < L; i++) acc += dy[row + i] * pa[row + i];
                         db[ob] += acc);
    }
    return DDX_OK;
}

ddx_status ddx_cpu_add_fwd(ddx_ctx *c, ddx_node *n) { (void)c; return binary_fwd(n, BIN_ADD); }
ddx_status ddx_cpu_add_bwd(ddx_ctx *c, ddx_node *n) { return binary_bwd(c, n, BIN_ADD); }
ddx_status ddx_cpu_mul_fwd(ddx_ctx *c, ddx_node *n) { (void)c; return binary_fwd(n, BIN_MUL); }
ddx_status ddx_cpu_mul_bwd(ddx_ctx *c, ddx_node *n) { return binary_bwd(c, n, BIN_MUL); }

// ---- unary: scale, silu, relu -------------------------------------------------------------
static ddx_tensor *unary(ddx_ctx *c, ddx_op op, ddx_tensor *x, const ddx_op_params *p) {
    if (!ddx_op_ok(c, ddx_op_name(op), 1, &x)) return NULL;
    return ddx_op_run(c, op, 1, &x, p, x->dtype, x->ndim, x->shape);
}

ddx_tensor *ddx_scale(ddx_ctx *c, ddx_tensor *x, float alpha, float beta) {
    ddx_op_params p = {.scale = {alpha, beta}};
    return unary(c, DDX_OP_SCALE, x, &p);
}
ddx_tensor *ddx_silu(ddx_ctx *c, ddx_tensor *x) { return unary(c, DDX_OP_SILU, x, NULL); }
ddx_tensor *ddx_relu(ddx_ctx *c, ddx_tensor *x) { return unary(c, DDX_OP_RELU, x, NULL); }

ddx_status ddx_cpu_scale_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(need_f32("scale", n->in[0]));
    const float *x = ddx_f32c(n->in[0]);
    float *y = ddx_f32(n->out), al = n->p.scale.alpha, be = n->p.scale.beta;
    for (int64_t i = 0, m = ddx_numel(n->out); i < m; i++) y[i] = al * x[i] + be;
    return DDX_OK;
}

ddx_status ddx_cpu_scale_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (!g) return c->status;
    const float *dy = ddx_f32c(n->out->grad);
    float *dx = ddx_f32(g), al = n->p.scale.alpha;
    for (int64_t i = 0, m = ddx_numel(g); i < m; i++) dx[i] += al * dy[i];
    return DDX_OK;
}

// ddx_sigmoidf (cpu_math.h) vectorises; libm's expf would keep these loops scalar.
DDX_CPU_CLONES static void silu_fwd_kernel(float *y, const float *x, int64_t m) {
    for (int64_t i = 0; i < m; i++) y[i] = x[i] * ddx_sigmoidf(x[i]);
}

DDX_CPU_CLONES static void silu_bwd_kernel(float *dx, const float *x, const float *dy, int64_t m) {
    for (int64_t i = 0; i < m; i++) {
        float s = ddx_sigmoidf(x[i]);
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

ddx_status ddx_cpu_silu_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(need_f32("silu", n->in[0]));
    const float *x = ddx_f32c(n->in[0]);
    float *y = ddx_f32(n->out);
    silu_fwd_kernel(y, x, ddx_numel(n->out));
    return DDX_OK;
}

ddx_status ddx_cpu_silu_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (!g) return c->status;
    const float *x = ddx_f32c(n->in[0]), *dy = ddx_f32c(n->out->grad);
    float *dx = ddx_f32(g);
    silu_bwd_kernel(dx, x, dy, ddx_numel(g));
    return DDX_OK;
}

ddx_status ddx_cpu_relu_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(need_f32("relu", n->in[0]));
    const float *x = ddx_f32c(n->in[0]);
    float *y = ddx_f32(n->out);
    for (int64_t i = 0, m = ddx_numel(n->out); i < m; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
    return DDX_OK;
}

ddx_status ddx_cpu_relu_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (!g) return c->status;
    const float *x = ddx_f32c(n->in[0]), *dy = ddx_f32c(n->out->grad);
    float *dx = ddx_f32(g);
    for (int64_t i = 0, m = ddx_numel(g); i < m; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
    return DDX_OK;
}

// =========================================================================================
// concat: along the last dim; every other dim must match.
// =========================================================================================
ddx_tensor *ddx_concat(ddx_ctx *c, ddx_tensor *a, ddx_tensor *b) {
    if (!ddx_op_ok(c, "concat", 2, (ddx_tensor *[]){a, b})) return NULL;
    char sa[DDX_SHAPE_BUF], sb[DDX_SHAPE_BUF];
    if (a->dtype != b->dtype || !ddx_is_float_dtype(a->dtype))
        return ddx_op_fail(c, DDX_E_INPUT, "concat: inputs must share a float dtype, got %s and %s",
                           ddx_dtype_name(a->dtype), ddx_dtype_name(b->dtype));
    bool ok = a->ndim == b->ndim && a->ndim >= 1;
    for (int d = 0; ok && d < a->ndim - 1; d++) ok = a->shape[d] == b->shape[d];
    if (!ok)
        return ddx_op_fail(c, DDX_E_INPUT, "concat: %s and %s must agree in every dim but the last",
                           ddx_shape_str(a, sa, sizeof sa), ddx_shape_str(b, sb, sizeof sb));
    int64_t shape[DDX_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) shape[d] = a->shape[d];
    shape[a->ndim - 1] = a->shape[a->ndim - 1] + b->shape[b->ndim - 1];
    return ddx_op_run(c, DDX_OP_CONCAT, 2, (ddx_tensor *[]){a, b}, &(ddx_op_params){0}, a->dtype, a->ndim, shape);
}

typedef struct concat_job {
    int64_t ca, cb;
    const float *pa, *pb;   // forward: the inputs; backward: unused
    float *y;               // forward: the output
    const float *dy;        // backward
    float *ga, *gb;         // backward: NULL when not needed
} concat_job;

static void concat_fwd_range(void *arg, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const concat_job *j = arg;
    const int64_t ca = j->ca, cb = j->cb, co = ca + cb;
    for (int64_t r = r0; r < r1; r++) {
        memcpy(j->y + r * co, j->pa + r * ca, (size_t)ca * sizeof(float));
        memcpy(j->y + r * co + ca, j->pb + r * cb, (size_t)cb * sizeof(float));
    }
}

static void concat_bwd_range(void *arg, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const concat_job *j = arg;
    const int64_t ca = j->ca, cb = j->cb, co = ca + cb;
    for (int64_t r = r0; r < r1; r++) {
        const float *d = j->dy + r * co;
        if (j->ga)
            for (int64_t i = 0; i < ca; i++) j->ga[r * ca + i] += d[i];
        if (j->gb)
            for (int64_t i = 0; i < cb; i++) j->gb[r * cb + i] += d[ca + i];
    }
}

static void concat_run(concat_job *j, int64_t rows, ddx_parallel_fn fn) {
    // Below ~64K elements the thread hand-off costs more than the copy.
    if (rows * (j->ca + j->cb) >= ((int64_t)1 << 16)) ddx_parallel_for(rows, fn, j);
    else if (rows > 0) fn(j, 0, rows, 0);
}

ddx_status ddx_cpu_concat_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    const ddx_tensor *a = n->in[0], *b = n->in[1];
    DDX_TRY(ddx_cpu_need_f32("concat", a, "input"));
    DDX_TRY(ddx_cpu_need_f32("concat", b, "input"));
    concat_job j = {.ca = a->shape[a->ndim - 1], .cb = b->shape[b->ndim - 1], .pa = ddx_f32c(a), .pb = ddx_f32c(b),
                    .y = ddx_f32(n->out)};   // y [rows, Ca + Cb]
    concat_run(&j, ddx_numel(a) / j.ca, concat_fwd_range);
    return DDX_OK;
}

ddx_status ddx_cpu_concat_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *ga = ddx_in_grad(c, n, 0), *gb = ddx_in_grad(c, n, 1);
    if (c->status != DDX_OK) return c->status;
    concat_job j = {.ca = n->in[0]->shape[n->in[0]->ndim - 1], .cb = n->in[1]->shape[n->in[1]->ndim - 1],
                    .dy = ddx_f32c(n->out->grad), .ga = ga ? ddx_f32(ga) : NULL, .gb = gb ? ddx_f32(gb) : NULL};
    if (ga || gb) concat_run(&j, ddx_numel(n->in[0]) / j.ca, concat_bwd_range);
    return DDX_OK;
}

// =========================================================================================
// dropout: inverted dropout; the mask is regenerated from its Philox key in backward.
// =========================================================================================
ddx_tensor *ddx_dropout(ddx_ctx *c, ddx_tensor *x, float p) {
    if (!ddx_op_ok(c, "dropout", 1, (ddx_tensor *[]){x})) return NULL;
    if (!ddx_is_float_dtype(x->dtype))
        return ddx_op_fail(c, DDX_E_INPUT, "dropout: input must be float, got %s", ddx_dtype_name(x->dtype));
    if (!(p >= 0.0f && p <= 1.0f))
        return ddx_op_fail(c, DDX_E_INPUT, "dropout: p must be in [0, 1], got %g", (double)p);
    if (!c->training || p == 0.0f) return x;
    if (c->step > UINT32_MAX)
        return ddx_op_fail(c, DDX_E_INPUT, "dropout: step %llu does not fit the 32-bit Philox step word",
                           (unsigned long long)c->step);
    // Each active call of the step gets its own stream (runtime/philox.h's convention), so two
    // dropouts in one step draw different masks; the key, not the mask, goes on the tape.
    ddx_op_params op = {.dropout = {.p = p, .seed = c->seed, .stream = DDX_RNG_STREAM_DROPOUT + c->rng_calls,
                                    .counter = c->step}};
    // A data-parallel rank's rows start at global sample c->sample0: key each element by its
    // index in the global batch (x is [N, ...], sample-major).
    if (c->sample0 && x->ndim > 0 && x->shape[0] > 0) {
        const uint64_t per = (uint64_t)(ddx_numel(x) / x->shape[0]);
        if (per && c->sample0 > (UINT64_MAX - (uint64_t)ddx_numel(x)) / per)
            return ddx_op_fail(c, DDX_E_INPUT, "dropout: sample index %llu overflows the 64-bit Philox index",
                               (unsigned long long)c->sample0);
        op.dropout.offset = c->sample0 * per;
    }
    c->rng_calls++;
    return ddx_op_run(c, DDX_OP_DROPOUT, 1, (ddx_tensor *[]){x}, &op, x->dtype, x->ndim, x->shape);
}

// The mask is regenerated from the Philox key in backward rather than stored.
//
// Philox is evaluated for DROPOUT_GROUPS consecutive groups at once, lane-parallel (the same
// arithmetic as ddx_philox4x32_10 on arrays, which GCC vectorises), instead of one group per
// call: that is what made dropout run at ~1.5 GB/s. keep_i = (u_i >= p) is decided on the
// integer v_i = 2 * (bits >> 9) + 1: u_i = v_i * 2^-24 exactly (ddx_philox_unit), p * 2^24
// is exact too, so u_i >= p <=> v_i >= ceil(p * 2^24). The mask is bit-identical to
// ddx_philox_uniform(...) >= p (tests/test_elementwise_ref.c checks it).
#define DROPOUT_GROUPS 64
#define DROPOUT_BLOCK (4 * DROPOUT_GROUPS)

typedef struct dropout_key {
    uint32_t k0, k1, stream, step;
    int32_t threshold;   // ceil(p * 2^24), in [0, 2^24]
    uint64_t offset;     // Philox element index of element 0
} dropout_key;

static dropout_key dropout_key_of(const ddx_node *n) {
    const double t = ceil((double)n->p.dropout.p * 16777216.0);
    return (dropout_key){.k0 = (uint32_t)n->p.dropout.seed,
                         .k1 = (uint32_t)(n->p.dropout.seed >> 32),
                         .stream = n->p.dropout.stream,
                         .step = (uint32_t)n->p.dropout.counter,
                         .threshold = (int32_t)t,
                         .offset = n->p.dropout.offset};
}

// keep[e] = all-ones or 0 for elements 4 * g0 + e, e in [0, DROPOUT_BLOCK): element 4g + l is
// word l of group g.
static void dropout_mask_block(const dropout_key *k, uint64_t g0, uint32_t keep[DROPOUT_BLOCK]) {
    uint32_t x0[DROPOUT_GROUPS], x1[DROPOUT_GROUPS], x2[DROPOUT_GROUPS], x3[DROPOUT_GROUPS];
    for (int j = 0; j < DROPOUT_GROUPS; j++) {
        const uint64_t g = g0 + (uint64_t)j;
        x0[j] = (uint32_t)g;
        x1[j] = (uint32_t)(g >> 32);
        x2[j] = k->stream;
        x3[j] = k->step;
    }
    uint32_t k0 = k->k0, k1 = k->k1;
    for (int r = 0; r < 10; r++) {
        for (int j = 0; j < DROPOUT_GROUPS; j++) {
            const uint64_t p0 = (uint64_t)DDX_PHILOX_M0 * x0[j], p1 = (uint64_t)DDX_PHILOX_M1 * x2[j];
            const uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1[j] ^ k0, y2 = (uint32_t)(p0 >> 32) ^ x3[j] ^ k1;
            x0[j] = y0;
            x1[j] = (uint32_t)p1;
            x2[j] = y2;
            x3[j] = (uint32_t)p0;
        }
        k0 += DDX_PHILOX_W0;
        k1 += DDX_PHILOX_W1;
    }
    const int32_t t = k->threshold;
    for (int j = 0; j < DROPOUT_GROUPS; j++) {
        keep[4 * j + 0] = 0u - (uint32_t)((int32_t)(((x0[j] >> 9) << 1) | 1u) >= t);
        keep[4 * j + 1] = 0u - (uint32_t)((int32_t)(((x1[j] >> 9) << 1) | 1u) >= t);
        keep[4 * j + 2] = 0u - (uint32_t)((int32_t)(((x2[j] >> 9) << 1) | 1u) >= t);
        keep[4 * j + 3] = 0u - (uint32_t)((int32_t)(((x3[j] >> 9) << 1) | 1u) >= t);
    }
}

static inline float mask_f32(float v, uint32_t m) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u &= m;
    memcpy(&v, &u, sizeof v);
    return v;
}

// p == 1 keeps nothing (u < 1 always); its scale is 0 rather than inf, like PyTorch's zeros.
static float dropout_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

ddx_status ddx_cpu_dropout_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(ddx_cpu_need_f32("dropout", n->in[0], "input"));
    const float scale = dropout_scale(n->p.dropout.p);
    const int64_t cnt = ddx_numel(n->in[0]);
    const float *x = ddx_f32c(n->in[0]);
    float *y = ddx_f32(n->out);
    const dropout_key key = dropout_key_of(n);
    uint32_t keep[DROPOUT_BLOCK];
    // Blocks start on a Philox group: element e is Philox index offset + e, i.e. block entry
    // e + sh of the blocks counted from group offset / 4.
    const int64_t sh = (int64_t)(key.offset & 3);
    for (int64_t v0 = 0; v0 < cnt + sh; v0 += DROPOUT_BLOCK) {
        dropout_mask_block(&key, (key.offset >> 2) + ((uint64_t)v0 >> 2), keep);
        const int64_t lo = v0 < sh ? sh - v0 : 0, hi = cnt + sh - v0 < DROPOUT_BLOCK ? cnt + sh - v0 : DROPOUT_BLOCK;
        for (int64_t i = lo; i < hi; i++) y[v0 - sh + i] = mask_f32(x[v0 - sh + i] * scale, keep[i]);
    }
    return DDX_OK;
}

ddx_status ddx_cpu_dropout_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);
    if (!gx) return DDX_OK;
    const float scale = dropout_scale(n->p.dropout.p);
    const int64_t cnt = ddx_numel(n->in[0]);
    const float *dy = ddx_f32c(n->out->grad);
    float *dx = ddx_f32(gx);
    const dropout_key key = dropout_key_of(n);
    uint32_t keep[DROPOUT_BLOCK];
    const int64_t sh = (int64_t)(key.offset & 3);   // as in the forward
    for (int64_t v0 = 0; v0 < cnt + sh; v0 += DROPOUT_BLOCK) {
        dropout_mask_block(&key, (key.offset >> 2) + ((uint64_t)v0 >> 2), keep);
        const int64_t lo = v0 < sh ? sh - v0 : 0, hi = cnt + sh - v0 < DROPOUT_BLOCK ? cnt + sh - v0 : DROPOUT_BLOCK;
        const int64_t b = v0 - sh;   // block entry i is element b + i
        // Dropped elements add nothing (not even +0, which would turn a -0 grad into +0).
        for (int64_t i = lo; i < hi; i++) {
            const float add = dx[b + i] + dy[b + i] * scale;
            uint32_t ua, uo;
            memcpy(&ua, &add, sizeof ua);
            memcpy(&uo, &dx[b + i], sizeof uo);
            const uint32_t u = (ua & keep[i]) | (uo & ~keep[i]);
            memcpy(&dx[b + i], &u, sizeof u);
        }
    }
    return DDX_OK;
}
