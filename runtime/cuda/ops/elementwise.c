// The CUDA dispatch table: adapts tape nodes to the kernel launchers. Semantics mirror the
// CPU reference in runtime/ops/elementwise.c (backward accumulates, reshape aliases);
// unlike the CPU, f32 and bf16 are both computed natively (bf16 storage, fp32 math).
// Ops without an entry here are reported by dispatch as having no CUDA kernel yet.
#include "cuda/check.h"
#include "kernels/diffusion.h"
#include "kernels/elementwise.h"
#include "op_impl.h"
#include "cuda/ops/backend.h"

static void *stream_of(const ddx_ctx *c) { return (void *)ddx_cuda_stream(c->cuda); }

static ddx_status need_float(const char *op, const ddx_tensor *t) {
    if (t->dtype != DDX_F32 && t->dtype != DDX_BF16)
        return ddx_errorf(DDX_E_UNSUPPORTED, "%s on CUDA: dtype %s is not supported (f32, bf16)", op, ddx_dtype_name(t->dtype));
    return DDX_OK;
}

static ddx_status need_same_dtype(const char *op, const ddx_tensor *a, const ddx_tensor *b) {
    DDX_TRY(need_float(op, a));
    if (a->dtype != b->dtype)
        return ddx_errorf(DDX_E_UNSUPPORTED, "%s on CUDA: mixed dtypes %s and %s", op, ddx_dtype_name(a->dtype),
                          ddx_dtype_name(b->dtype));
    return DDX_OK;
}

// The output's grad every backward starts from; its absence is a tape bug.
static ddx_status out_grad(const ddx_node *n, const ddx_tensor **dy) {
    *dy = n->out->grad;
    if (!*dy) return ddx_errorf(DDX_E_INTERNAL, "%s backward on CUDA: the output has no grad", ddx_op_name(n->op));
    return DDX_OK;
}

// dst += src, any f32/bf16 pair of equal element count.
ddx_status ddx_cuda_accumulate(ddx_ctx *c, ddx_tensor *dst, const ddx_tensor *src) {
    void *s = stream_of(c);
    const int64_t n = ddx_numel(dst);
    if (ddx_numel(src) != n)
        return ddx_errorf(DDX_E_INTERNAL, "CUDA accumulate: %lld elements into %lld", (long long)ddx_numel(src), (long long)n);
    DDX_TRY(need_float("accumulate", dst));
    DDX_TRY(need_float("accumulate", src));
    if (dst->dtype == DDX_F32 && src->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_accumulate_f32(dst->data, src->data, n, s));
    else if (dst->dtype == DDX_BF16 && src->dtype == DDX_BF16) DDX_CUDA_CHECK(ddx_k_accumulate_bf16(dst->data, src->data, n, s));
    else if (dst->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_accumulate_bf16_into_f32(dst->data, src->data, n, s));
    else DDX_CUDA_CHECK(ddx_k_accumulate_f32_into_bf16(dst->data, src->data, n, s));
    return DDX_OK;
}

// ---- fill / copy / cast / reshape ---------------------------------------------------------
static ddx_status cuda_fill_fwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *y = n->out;
    const int64_t cnt = ddx_numel(y);
    const float v = n->p.fill.value;
    switch (y->dtype) {
    case DDX_F32: DDX_CUDA_CHECK(ddx_k_fill_f32(y->data, cnt, v, stream_of(c))); break;
    case DDX_BF16: DDX_CUDA_CHECK(ddx_k_fill_bf16(y->data, cnt, v, stream_of(c))); break;
    case DDX_I32: DDX_CUDA_CHECK(ddx_k_fill_i32(y->data, cnt, (int32_t)v, stream_of(c))); break;
    default: return ddx_errorf(DDX_E_UNSUPPORTED, "fill on CUDA: dtype %s is not supported", ddx_dtype_name(y->dtype));
    }
    return DDX_OK;
}

static ddx_status cuda_copy_fwd(ddx_ctx *c, ddx_node *n) {
    DDX_CUDA_CHECK(ddx_k_copy(n->out->data, n->in[0]->data, (int64_t)ddx_nbytes(n->out), stream_of(c)));
    return DDX_OK;
}

static ddx_status cuda_copy_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (!g) return c->status;
    const ddx_tensor *dy;
    DDX_TRY(out_grad(n, &dy));
    return ddx_cuda_accumulate(c, g, dy);
}

static ddx_status cuda_cast_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *x = n->in[0];
    ddx_tensor *y = n->out;
    DDX_TRY(need_float("cast", x));
    DDX_TRY(need_float("cast", y));
    const int64_t cnt = ddx_numel(y);
    if (x->dtype == y->dtype) DDX_CUDA_CHECK(ddx_k_copy(y->data, x->data, (int64_t)ddx_nbytes(y), stream_of(c)));
    else if (y->dtype == DDX_BF16) DDX_CUDA_CHECK(ddx_k_cast_f32_to_bf16(y->data, x->data, cnt, stream_of(c)));
    else DDX_CUDA_CHECK(ddx_k_cast_bf16_to_f32(y->data, x->data, cnt, stream_of(c)));
    return DDX_OK;
}

static ddx_status cuda_cast_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (!g) return c->status;
    const ddx_tensor *dy;
    DDX_TRY(out_grad(n, &dy));
    return ddx_cuda_accumulate(c, g, dy);
}

static ddx_status cuda_reshape_fwd(ddx_ctx *c, ddx_node *n) {
    // Only reached through the dispatch table (ddx_reshape aliases without dispatch).
    if (n->out->data != n->in[0]->data)
        DDX_CUDA_CHECK(ddx_k_copy(n->out->data, n->in[0]->data, (int64_t)ddx_nbytes(n->out), stream_of(c)));
    return DDX_OK;
}

static ddx_status cuda_reshape_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *x = n->in[0];
    if (!x->requires_grad) return DDX_OK;
    const ddx_tensor *dy;
    DDX_TRY(out_grad(n, &dy));
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
    void *s = stream_of(c), *y = n->out->data;
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
    DDX_CUDA_CHECK(ddx_k_copy(in->grad->data, dy->data, (int64_t)ddx_nbytes(in->grad), stream_of(c)));
    *done = true;
    return DDX_OK;
}

static ddx_status binary_bwd(ddx_ctx *c, ddx_node *n, bool mul) {
    const ddx_tensor *a = n->in[0], *b = n->in[1];
    const ddx_tensor *dy;
    DDX_TRY(out_grad(n, &dy));
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
    void *s = stream_of(c);
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

static ddx_status cuda_add_fwd(ddx_ctx *c, ddx_node *n) { return binary_fwd(c, n, false); }
static ddx_status cuda_add_bwd(ddx_ctx *c, ddx_node *n) { return binary_bwd(c, n, false); }
static ddx_status cuda_mul_fwd(ddx_ctx *c, ddx_node *n) { return binary_fwd(c, n, true); }
static ddx_status cuda_mul_bwd(ddx_ctx *c, ddx_node *n) { return binary_bwd(c, n, true); }

// ---- scale / silu / relu ------------------------------------------------------------------
typedef enum { UN_SCALE, UN_SILU, UN_RELU } unary_kind;

static ddx_status unary_fwd(ddx_ctx *c, ddx_node *n, unary_kind k) {
    const ddx_tensor *x = n->in[0];
    DDX_TRY(need_same_dtype(ddx_op_name(n->op), x, n->out));
    const int64_t cnt = ddx_numel(n->out);
    void *s = stream_of(c), *y = n->out->data;
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
    DDX_TRY(out_grad(n, &dy));
    const char *op = ddx_op_name(n->op);
    DDX_TRY(need_same_dtype(op, g, dy));
    DDX_TRY(need_same_dtype(op, x, dy));
    const int64_t cnt = ddx_numel(g);
    void *s = stream_of(c);
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

static ddx_status cuda_scale_fwd(ddx_ctx *c, ddx_node *n) { return unary_fwd(c, n, UN_SCALE); }
static ddx_status cuda_scale_bwd(ddx_ctx *c, ddx_node *n) { return unary_bwd(c, n, UN_SCALE); }
static ddx_status cuda_silu_fwd(ddx_ctx *c, ddx_node *n) { return unary_fwd(c, n, UN_SILU); }
static ddx_status cuda_silu_bwd(ddx_ctx *c, ddx_node *n) { return unary_bwd(c, n, UN_SILU); }
static ddx_status cuda_relu_fwd(ddx_ctx *c, ddx_node *n) { return unary_fwd(c, n, UN_RELU); }
static ddx_status cuda_relu_bwd(ddx_ctx *c, ddx_node *n) { return unary_bwd(c, n, UN_RELU); }

// ---- randn / q_sample / sampler_step (no backward: not differentiable) --------------------
// c->step_dev (CUDA graphs) goes with every key: the kernels then read the step word there.
static ddx_k_rng_key k_key(const ddx_ctx *c, const ddx_rng_key *k) {
    return (ddx_k_rng_key){
        .seed = k->seed, .stream = k->stream, .step = k->step, .offset = k->offset, .step_dev = c->step_dev};
}

static ddx_status cuda_randn_fwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *y = n->out;
    const ddx_k_rng_key k = k_key(c, &n->p.randn);
    if (y->dtype == DDX_F32) DDX_CUDA_CHECK(ddx_k_randn_f32(y->data, ddx_numel(y), k, stream_of(c)));
    else if (y->dtype == DDX_BF16) DDX_CUDA_CHECK(ddx_k_randn_bf16(y->data, ddx_numel(y), k, stream_of(c)));
    else return ddx_errorf(DDX_E_UNSUPPORTED, "randn on CUDA: dtype %s is not supported (f32, bf16)", ddx_dtype_name(y->dtype));
    return DDX_OK;
}

static ddx_status cuda_q_sample_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *x0 = n->in[0], *coef = n->in[1];
    if (x0->dtype != DDX_F32 || coef->dtype != DDX_F32 || n->out->dtype != DDX_F32)
        return ddx_errorf(DDX_E_UNSUPPORTED, "q_sample on CUDA: f32 only, got x0 %s, coef %s", ddx_dtype_name(x0->dtype),
                          ddx_dtype_name(coef->dtype));
    const int64_t cnt = ddx_numel(x0);
    if (cnt == 0) return DDX_OK;
    DDX_CUDA_CHECK(ddx_k_q_sample_f32(n->out->data, x0->data, coef->data, cnt, cnt / x0->shape[0], k_key(c, &n->p.q_sample),
                                      stream_of(c)));
    return DDX_OK;
}

static ddx_status cuda_sampler_step_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *xt = n->in[0], *o = n->in[1];
    if (xt->dtype != DDX_F32 || o->dtype != DDX_F32 || n->out->dtype != DDX_F32)
        return ddx_errorf(DDX_E_UNSUPPORTED, "sampler_step on CUDA: f32 only, got x_t %s, output %s",
                          ddx_dtype_name(xt->dtype), ddx_dtype_name(o->dtype));
    const ddx_sampler_step_params *p = &n->p.sampler_step;
    const ddx_k_sampler_coefs co = {.a = p->a, .b = p->b, .f = p->f, .g = p->g, .c = p->c, .d = p->d, .e = p->e,
                                    .sigma = p->sigma, .clip = p->clip ? 1 : 0, .dev = p->coefs_dev};
    DDX_CUDA_CHECK(ddx_k_sampler_step_f32(n->out->data, xt->data, o->data, ddx_numel(xt), co, k_key(c, &p->key), stream_of(c)));
    return DDX_OK;
}

const ddx_backend_op ddx_cuda_ops[DDX_OP_COUNT] = {
    [DDX_OP_FILL] = {cuda_fill_fwd, NULL},
    [DDX_OP_COPY] = {cuda_copy_fwd, cuda_copy_bwd},
    [DDX_OP_CAST] = {cuda_cast_fwd, cuda_cast_bwd},
    [DDX_OP_RESHAPE] = {cuda_reshape_fwd, cuda_reshape_bwd},
    [DDX_OP_ADD] = {cuda_add_fwd, cuda_add_bwd},
    [DDX_OP_MUL] = {cuda_mul_fwd, cuda_mul_bwd},
    [DDX_OP_SCALE] = {cuda_scale_fwd, cuda_scale_bwd},
    [DDX_OP_SILU] = {cuda_silu_fwd, cuda_silu_bwd},
    [DDX_OP_RELU] = {cuda_relu_fwd, cuda_relu_bwd},
    [DDX_OP_RANDN] = {cuda_randn_fwd, NULL},
    [DDX_OP_Q_SAMPLE] = {cuda_q_sample_fwd, NULL},
    [DDX_OP_SAMPLER_STEP] = {cuda_sampler_step_fwd, NULL},
    // conv entries (runtime/cuda/cuda_conv.c)
    [DDX_OP_CONV2D] = {ddx_cuda_conv2d_fwd, ddx_cuda_conv2d_bwd},
    // norm/linear entries (runtime/cuda/cuda_norm.c)
    [DDX_OP_GROUP_NORM] = {ddx_cuda_group_norm_fwd, ddx_cuda_group_norm_bwd},
    [DDX_OP_LINEAR] = {ddx_cuda_linear_fwd, ddx_cuda_linear_bwd},
    [DDX_OP_MSE_LOSS] = {ddx_cuda_mse_loss_fwd, ddx_cuda_mse_loss_bwd},
    [DDX_OP_SUM] = {ddx_cuda_sum_fwd, ddx_cuda_sum_bwd},
    [DDX_OP_MEAN] = {ddx_cuda_mean_fwd, ddx_cuda_mean_bwd},
    // attention entries (runtime/cuda/cuda_attention.c)
    [DDX_OP_ATTENTION] = {ddx_cuda_attention_fwd, ddx_cuda_attention_bwd},
    // misc entries (runtime/cuda/cuda_misc.c)
    [DDX_OP_UPSAMPLE2X] = {ddx_cuda_upsample2x_fwd, ddx_cuda_upsample2x_bwd},
    [DDX_OP_POOL2X] = {ddx_cuda_pool2x_fwd, ddx_cuda_pool2x_bwd},
    [DDX_OP_CONCAT] = {ddx_cuda_concat_fwd, ddx_cuda_concat_bwd},
    [DDX_OP_EMBEDDING] = {ddx_cuda_embedding_fwd, ddx_cuda_embedding_bwd},
    [DDX_OP_TIMESTEP_EMB] = {ddx_cuda_timestep_emb_fwd, NULL},
    [DDX_OP_DROPOUT] = {ddx_cuda_dropout_fwd, ddx_cuda_dropout_bwd},
};
