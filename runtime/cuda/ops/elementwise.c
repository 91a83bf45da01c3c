// Host glue of the elementwise CUDA family: fill, copy, cast, reshape, add, mul, scale, silu,
// relu, concat and dropout, plus ddx_cuda_accumulate (dst += src) for the other families.
// Semantics mirror the CPU reference in runtime/ops/elementwise.c (reshape aliases; add hands
// dy's buffer to one input's grad; the other backwards accumulate; dropout regenerates its
// mask from the Philox key, nothing is saved); unlike the CPU, f32 and bf16 are both computed
// natively (bf16 storage, fp32 math).
#include <math.h>
#include <stdint.h>

#include "cuda/check.h"
#include "cuda/ops/backend.h"
#include "kernels/elementwise.h"
#include "op_impl.h"

static ddx_status need_same_dtype(const char *op, const ddx_tensor *a, const ddx_tensor *b) {
    DDX_TRY(ddx_cuda_need_float(op, a, NULL));
    if (a->dtype != b->dtype)
        return ddx_errorf(DDX_E_UNSUPPORTED, "%s on CUDA: mixed dtypes %s and %s", op, ddx_dtype_name(a->dtype),
                          ddx_dtype_name(b->dtype));
    return DDX_OK;
}

// dst += src, any f32/bf16 pair of equal element count.
ddx_status ddx_cuda_accumulate(ddx_ctx *c, ddx_tensor *dst, const ddx_tensor *src) {
    void *s = ddx_cuda_stream_of(c);
    const int64_t n = ddx_numel(dst);
    if (ddx_numel(src) != n)
        return ddx_errorf(DDX_E_INTERNAL, "CUDA accumulate: %lld elements into %lld", (long long)ddx_numel(src), (long long)n);
    DDX_TRY(ddx_cuda_need_float("accumulate", dst, NULL));
    DDX_TRY(ddx_cuda_need_float("accumulate", src, NULL));
    if (dst->dtype == DDX_F32 && src->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_accumulate_f32(dst->data, src->data, n, s));
    else if (dst->dtype == DDX_BF16 && src->dtype == DDX_BF16) DDX_CUDA_CHECK(ddx_k_accumulate_bf16(dst->data, src->data, n, s));
    else if (dst->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_accumulate_bf16_into_f32(dst->data, src->data, n, s));
    else DDX_CUDA_CHECK(ddx_k_accumulate_f32_into_bf16(dst->data, src->data, n, s));
    return DDX_OK;
}

// ---- fill / copy / cast / reshape ---------------------------------------------------------
ddx_status ddx_cuda_fill_fwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *y = n->out;
    const int64_t cnt = ddx_numel(y);
    const float v = n->p.fill.value;
    switch (y->dtype) {
    case DDX_F32: DDX_CUDA_CHECK(ddx_k_fill_f32(y->data, cnt, v, ddx_cuda_stream_of(c))); break;
    case DDX_BF16: DDX_CUDA_CHECK(ddx_k_fill_bf16(y->data, cnt, v, ddx_cuda_stream_of(c))); break;
    case DDX_I32: DDX_CUDA_CHECK(ddx_k_fill_i32(y->data, cnt, (int32_t)v, ddx_cuda_stream_of(c))); break;
    default: return ddx_errorf(DDX_E_UNSUPPORTED, "fill on CUDA: dtype %s is not supported", ddx_dtype_name(y->dtype));
    }
    return DDX_OK;
}

ddx_status ddx_cuda_copy_fwd(ddx_ctx *c, ddx_node *n) {
    DDX_CUDA_CHECK(ddx_k_copy(n->out->data, n->in[0]->data, (int64_t)ddx_nbytes(n->out), ddx_cuda_stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_copy_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (!g) return c->status;
    const ddx_tensor *dy;
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    return ddx_cuda_accumulate(c, g, dy);
}

ddx_status ddx_cuda_cast_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *x = n->in[0];
    ddx_tensor *y = n->out;
    DDX_TRY(ddx_cuda_need_float("cast", x, NULL));
    DDX_TRY(ddx_cuda_need_float("cast", y, NULL));
    const int64_t cnt = ddx_numel(y);
    if (x->dtype == y->dtype) DDX_CUDA_CHECK(ddx_k_copy(y->data, x->data, (int64_t)ddx_nbytes(y), ddx_cuda_stream_of(c)));
    else if (y->dtype == DDX_BF16) DDX_CUDA_CHECK(ddx_k_cast_f32_to_bf16(y->data, x->data, cnt, ddx_cuda_stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_cast_bf16_to_f32(y->data, x->data, cnt, ddx_cuda_stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_cast_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (!g) return c->status;
    const ddx_tensor *dy;
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    return ddx_cuda_accumulate(c, g, dy);
}

ddx_status ddx_cuda_reshape_fwd(ddx_ctx *c, ddx_node *n) {
    // Only reached through the dispatch table (ddx_reshape aliases without dispatch).
    if (n->out->data != n->in[0]->data)
        DDX_CUDA_CHECK(ddx_k_copy(n->out->data, n->in[0]->data, (int64_t)ddx_nbytes(n->out), ddx_cuda_stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_reshape_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *x = n->in[0];
    if (!x->requires_grad) return DDX_OK;
    const ddx_tensor *dy;
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    if (!x->grad) {
        // As on the CPU: the first grad of x is the output's grad buffer seen in x's shape.
        ddx_tensor *g = ddx_meta_tensor(c);
        if (!g) return c->status;
        *g = ddx_tensor_wrap(dy->data, x->dtype, x->device, x->ndim, x->shape);
        x->grad = g;
        return DDX_OK;
    }
    return ddx_cuda_accumulate(c, x->grad, dy);
}

// ---- add / mul ----------------------------------------------------------------------------
// The same rule as the CPU: b right-aligned against a, each dim 1 or equal; a padded to 4
// dims with trailing 1s (tensors are contiguous, so that is the same memory).
static ddx_status bcast_of(const ddx_node *n, ddx_k_bcast *bc) {
    const ddx_tensor *a = n->in[0], *b = n->in[1];
    int64_t as[4], bs[4];
    const int off = a->ndim - b->ndim;
    for (int i = 0; i < 4; i++) {
        as[i] = i < a->ndim ? a->shape[i] : 1;
        bs[i] = off < 0 || i < off || i >= a->ndim ? 1 : b->shape[i - off];
    }
    if (off < 0 || ddx_k_bcast_make(bc, as, bs) != 0)
        return ddx_errorf(DDX_E_INTERNAL, "%s on CUDA: b does not broadcast into a (the front-end should have refused it)",
                          ddx_op_name(n->op));
    return DDX_OK;
}

static ddx_status binary_fwd(ddx_ctx *c, ddx_node *n, bool mul) {
    const ddx_tensor *a = n->in[0], *b = n->in[1];
    const char *op = ddx_op_name(n->op);
    DDX_TRY(need_same_dtype(op, a, b));
    DDX_TRY(need_same_dtype(op, a, n->out));
    ddx_k_bcast bc;
    DDX_TRY(bcast_of(n, &bc));
    void *s = ddx_cuda_stream_of(c), *y = n->out->data;
    if (a->dtype == DDX_F32) {
        if (mul) DDX_CUDA_CHECK(ddx_k_mul_f32(y, a->data, b->data, &bc, s));
        else DDX_CUDA_CHECK(ddx_k_add_f32(y, a->data, b->data, &bc, s));
    } else {
        if (mul) DDX_CUDA_CHECK(ddx_k_mul_bf16(y, a->data, b->data, &bc, s));
        else DDX_CUDA_CHECK(ddx_k_add_bf16(y, a->data, b->data, &bc, s));
    }
    return DDX_OK;
}

// As on the CPU (runtime/ops/elementwise.c): add passes dy through, so one input whose grad
// nobody has written yet takes dy's buffer (ddx_grad_take); the other, if it has dy's shape
// and no grad yet either, gets a fresh copy (one pass where zeroing and accumulating are two).
static ddx_status grad_copy(ddx_ctx *c, ddx_tensor *in, const ddx_tensor *dy, bool *done) {
    *done = false;
    if (in->dtype != dy->dtype || !ddx_same_shape(in, dy) || !ddx_grad_fresh(c, in)) return c->status;
    DDX_CUDA_CHECK(ddx_k_copy(in->grad->data, dy->data, (int64_t)ddx_nbytes(in->grad), ddx_cuda_stream_of(c)));
    *done = true;
    return DDX_OK;
}

static ddx_status binary_bwd(ddx_ctx *c, ddx_node *n, bool mul) {
    const ddx_tensor *a = n->in[0], *b = n->in[1];
    const ddx_tensor *dy;
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    bool done_a = false, done_b = false;
    if (!mul && n->in[0] != n->in[1]) {
        if (ddx_grad_take(n->in[0], n->out->grad)) {
            done_a = true;
            DDX_TRY(grad_copy(c, n->in[1], dy, &done_b));
        } else if (ddx_grad_take(n->in[1], n->out->grad)) {
            done_b = true;
            DDX_TRY(grad_copy(c, n->in[0], dy, &done_a));
        }
    }
    ddx_tensor *ga = done_a ? NULL : ddx_in_grad(c, n, 0), *gb = done_b ? NULL : ddx_in_grad(c, n, 1);
    if (c->status != DDX_OK) return c->status;
    const char *op = ddx_op_name(n->op);
    DDX_TRY(need_same_dtype(op, a, dy));
    ddx_k_bcast bc;
    DDX_TRY(bcast_of(n, &bc));
    void *s = ddx_cuda_stream_of(c);
    const bool f32 = a->dtype == DDX_F32;
    if (ga) {
        DDX_TRY(need_same_dtype(op, ga, dy));
        if (!mul) DDX_TRY(ddx_cuda_accumulate(c, ga, dy));
        else if (f32) DDX_CUDA_CHECK(ddx_k_mul_bwd_a_f32(ga->data, dy->data, b->data, &bc, s));
        else DDX_CUDA_CHECK(ddx_k_mul_bwd_a_bf16(ga->data, dy->data, b->data, &bc, s));
    }
    if (gb) {
        DDX_TRY(need_same_dtype(op, gb, dy));
        const void *pa = mul ? a->data : NULL;
        if (f32) DDX_CUDA_CHECK(ddx_k_bcast_reduce_f32(gb->data, dy->data, pa, &bc, s));
        else DDX_CUDA_CHECK(ddx_k_bcast_reduce_bf16(gb->data, dy->data, pa, &bc, s));
    }
    return DDX_OK;
}

ddx_status ddx_cuda_add_fwd(ddx_ctx *c, ddx_node *n) { return binary_fwd(c, n, false); }
ddx_status ddx_cuda_add_bwd(ddx_ctx *c, ddx_node *n) { return binary_bwd(c, n, false); }
ddx_status ddx_cuda_mul_fwd(ddx_ctx *c, ddx_node *n) { return binary_fwd(c, n, true); }
ddx_status ddx_cuda_mul_bwd(ddx_ctx *c, ddx_node *n) { return binary_bwd(c, n, true); }

// ---- scale / silu / relu ------------------------------------------------------------------
typedef enum { UN_SCALE, UN_SILU, UN_RELU } unary_kind;

static ddx_status unary_fwd(ddx_ctx *c, ddx_node *n, unary_kind k) {
    const ddx_tensor *x = n->in[0];
    DDX_TRY(need_same_dtype(ddx_op_name(n->op), x, n->out));
    const int64_t cnt = ddx_numel(n->out);
    void *s = ddx_cuda_stream_of(c), *y = n->out->data;
    const float al = n->p.scale.alpha, be = n->p.scale.beta;
    const bool f32 = x->dtype == DDX_F32;
    switch (k) {
    case UN_SCALE:
        if (f32) DDX_CUDA_CHECK(ddx_k_scale_f32(y, x->data, al, be, cnt, s));
        else DDX_CUDA_CHECK(ddx_k_scale_bf16(y, x->data, al, be, cnt, s));
        break;
    case UN_SILU:
        if (f32) DDX_CUDA_CHECK(ddx_k_silu_f32(y, x->data, cnt, s));
        else DDX_CUDA_CHECK(ddx_k_silu_bf16(y, x->data, cnt, s));
        break;
    case UN_RELU:
        if (f32) DDX_CUDA_CHECK(ddx_k_relu_f32(y, x->data, cnt, s));
        else DDX_CUDA_CHECK(ddx_k_relu_bf16(y, x->data, cnt, s));
        break;
    }
    return DDX_OK;
}

static ddx_status unary_bwd(ddx_ctx *c, ddx_node *n, unary_kind k) {
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (!g) return c->status;
    const ddx_tensor *x = n->in[0], *dy;
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    const char *op = ddx_op_name(n->op);
    DDX_TRY(need_same_dtype(op, g, dy));
    DDX_TRY(need_same_dtype(op, x, dy));
    const int64_t cnt = ddx_numel(g);
    void *s = ddx_cuda_stream_of(c);
    const bool f32 = g->dtype == DDX_F32;
    switch (k) {
    case UN_SCALE:
        if (f32) DDX_CUDA_CHECK(ddx_k_axpy_f32(g->data, dy->data, n->p.scale.alpha, cnt, s));
        else DDX_CUDA_CHECK(ddx_k_axpy_bf16(g->data, dy->data, n->p.scale.alpha, cnt, s));
        break;
    case UN_SILU:
        if (f32) DDX_CUDA_CHECK(ddx_k_silu_bwd_f32(g->data, x->data, dy->data, cnt, s));
        else DDX_CUDA_CHECK(ddx_k_silu_bwd_bf16(g->data, x->data, dy->data, cnt, s));
        break;
    case UN_RELU:
        if (f32) DDX_CUDA_CHECK(ddx_k_relu_bwd_f32(g->data, x->data, dy->data, cnt, s));
        else DDX_CUDA_CHECK(ddx_k_relu_bwd_bf16(g->data, x->data, dy->data, cnt, s));
        break;
    }
    return DDX_OK;
}

ddx_status ddx_cuda_scale_fwd(ddx_ctx *c, ddx_node *n) { return unary_fwd(c, n, UN_SCALE); }
ddx_status ddx_cuda_scale_bwd(ddx_ctx *c, ddx_node *n) { return unary_bwd(c, n, UN_SCALE); }
ddx_status ddx_cuda_silu_fwd(ddx_ctx *c, ddx_node *n) { return unary_fwd(c, n, UN_SILU); }
ddx_status ddx_cuda_silu_bwd(ddx_ctx *c, ddx_node *n) { return unary_bwd(c, n, UN_SILU); }
ddx_status ddx_cuda_relu_fwd(ddx_ctx *c, ddx_node *n) { return unary_fwd(c, n, UN_RELU); }
ddx_status ddx_cuda_relu_bwd(ddx_ctx *c, ddx_node *n) { return unary_bwd(c, n, UN_RELU); }

// =========================================================================================
// concat (last dim): two strided row copies forward, two strided row accumulations backward.
// =========================================================================================
// Rows = product of all dims but the last (not numel / C: C may be 0).
static int64_t leading_rows(const ddx_tensor *t) {
    int64_t r = 1;
    for (int d = 0; d < t->ndim - 1; d++) r *= t->shape[d];
    return r;
}

static size_t elem_size(ddx_dtype dt) { return dt == DDX_F32 ? 4 : 2; }

ddx_status ddx_cuda_concat_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *a = n->in[0], *b = n->in[1];   // [.., Ca], [.., Cb]
    ddx_tensor *y = n->out;                          // [.., Ca + Cb]
    DDX_TRY(ddx_cuda_need_float("concat", a, "input a"));
    DDX_TRY(ddx_cuda_need_dtype("concat", b, a->dtype, "input b"));
    DDX_TRY(ddx_cuda_need_dtype("concat", y, a->dtype, "the output"));
    const int64_t rows = leading_rows(a), ca = a->shape[a->ndim - 1], cb = b->shape[b->ndim - 1], co = ca + cb;
    char *yb = (char *)y->data;
    const size_t es = elem_size(a->dtype);
    void *s = ddx_cuda_stream_of(c);
    if (a->dtype == DDX_F32) {
        DDX_CUDA_CHECK(ddx_k_rows_copy_f32((float *)yb, co, a->data, ca, rows, ca, s));
        DDX_CUDA_CHECK(ddx_k_rows_copy_f32((float *)(yb + (size_t)ca * es), co, b->data, cb, rows, cb, s));
    } else {
        DDX_CUDA_CHECK(ddx_k_rows_copy_bf16((uint16_t *)yb, co, a->data, ca, rows, ca, s));
        DDX_CUDA_CHECK(ddx_k_rows_copy_bf16((uint16_t *)(yb + (size_t)ca * es), co, b->data, cb, rows, cb, s));
    }
    return DDX_OK;
}

ddx_status ddx_cuda_concat_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *ga = ddx_in_grad(c, n, 0), *gb = ddx_in_grad(c, n, 1);
    if (c->status != DDX_OK) return c->status;
    if (!ga && !gb) return DDX_OK;
    const ddx_tensor *a = n->in[0], *b = n->in[1], *dy;
    DDX_TRY(ddx_cuda_out_grad(n, &dy));   // [.., Ca + Cb]
    DDX_TRY(ddx_cuda_need_float("concat", dy, "the output grad"));
    if (ga) DDX_TRY(ddx_cuda_need_dtype("concat", ga, dy->dtype, "the grad of a"));
    if (gb) DDX_TRY(ddx_cuda_need_dtype("concat", gb, dy->dtype, "the grad of b"));
    const int64_t rows = leading_rows(a), ca = a->shape[a->ndim - 1], cb = b->shape[b->ndim - 1], co = ca + cb;
    const char *db = (const char *)dy->data;
    const size_t es = elem_size(dy->dtype);
    void *s = ddx_cuda_stream_of(c);
    if (dy->dtype == DDX_F32) {
        if (ga) DDX_CUDA_CHECK(ddx_k_rows_acc_f32(ga->data, ca, (const float *)db, co, rows, ca, s));
        if (gb) DDX_CUDA_CHECK(ddx_k_rows_acc_f32(gb->data, cb, (const float *)(db + (size_t)ca * es), co, rows, cb, s));
    } else {
        if (ga) DDX_CUDA_CHECK(ddx_k_rows_acc_bf16(ga->data, ca, (const uint16_t *)db, co, rows, ca, s));
        if (gb)
            DDX_CUDA_CHECK(ddx_k_rows_acc_bf16(gb->data, cb, (const uint16_t *)(db + (size_t)ca * es), co, rows, cb, s));
    }
    return DDX_OK;
}

// =========================================================================================
// dropout (the front-end returns x itself when !training or p == 0, so no node reaches here)
// =========================================================================================
// The CPU's dropout_key_of and dropout_scale: keep <=> 2 * (bits >> 9) + 1 >= ceil(p * 2^24).
static ddx_status dropout_key_of(const ddx_ctx *c, const ddx_node *n, ddx_k_dropout_key *k) {
    const float p = n->p.dropout.p;
    if (!(p >= 0.0f && p <= 1.0f))
        return ddx_errorf(DDX_E_INTERNAL, "dropout on CUDA: p = %g outside [0, 1] (the front-end should have refused it)",
                          (double)p);
    if (n->p.dropout.counter > UINT32_MAX)
        return ddx_errorf(DDX_E_INTERNAL, "dropout on CUDA: step %llu does not fit the 32-bit Philox step word",
                          (unsigned long long)n->p.dropout.counter);
    *k = (ddx_k_dropout_key){.seed = n->p.dropout.seed,
                             .stream = n->p.dropout.stream,
                             .step = (uint32_t)n->p.dropout.counter,
                             .threshold = (int32_t)ceil((double)p * 16777216.0),
                             .scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f,
                             .step_dev = c->step_dev,   // CUDA graphs: the step word at run time
                             .offset = n->p.dropout.offset};
    return DDX_OK;
}

ddx_status ddx_cuda_dropout_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *x = n->in[0];
    ddx_tensor *y = n->out;
    DDX_TRY(ddx_cuda_need_float("dropout", x, "input"));
    DDX_TRY(ddx_cuda_need_dtype("dropout", y, x->dtype, "the output"));
    ddx_k_dropout_key k = {0};
    DDX_TRY(dropout_key_of(c, n, &k));
    const int64_t cnt = ddx_numel(x);
    if (x->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_dropout_f32(y->data, x->data, cnt, k, ddx_cuda_stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_dropout_bf16(y->data, x->data, cnt, k, ddx_cuda_stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_dropout_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gx = ddx_in_grad(c, n, 0);
    if (!gx) return c->status;
    const ddx_tensor *dy;
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    DDX_TRY(ddx_cuda_need_float("dropout", dy, "the output grad"));
    DDX_TRY(ddx_cuda_need_dtype("dropout", gx, dy->dtype, "the input grad"));
    ddx_k_dropout_key k = {0};
    DDX_TRY(dropout_key_of(c, n, &k));
    const int64_t cnt = ddx_numel(gx);
    if (dy->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_dropout_bwd_f32(gx->data, dy->data, cnt, k, ddx_cuda_stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_dropout_bwd_bf16(gx->data, dy->data, cnt, k, ddx_cuda_stream_of(c)));
    return DDX_OK;
}
