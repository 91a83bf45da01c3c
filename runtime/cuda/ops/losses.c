// Host glue of the losses CUDA family: mse_loss, sum and mean to one f32 value. Semantics
// mirror the CPU reference (runtime/ops/losses.c): backward ACCUMULATES into whichever grads
// ddx_in_grad hands out; the scalar output grad is read on the device, never copied to the
// host. Scratch comes from the activation arena and is rewound when the call returns.
#include "cuda/check.h"
#include "cuda/ops/backend.h"
#include "kernels/losses.h"
#include "op_impl.h"

static void *norm_stream(const ddx_ctx *c) { return (void *)ddx_cuda_stream(c->cuda); }

static ddx_status norm_dt(const char *op, const ddx_tensor *t, ddx_k_norm_dt *dt) {
    if (t->dtype == DDX_F32) *dt = DDX_K_NORM_F32;
    else if (t->dtype == DDX_BF16) *dt = DDX_K_NORM_BF16;
    else
        return ddx_errorf(DDX_E_UNSUPPORTED, "%s on CUDA: dtype %s is not supported (f32, bf16)", op,
                          ddx_dtype_name(t->dtype));
    return DDX_OK;
}

// t (when present) must have dtype want.
static ddx_status norm_same(const char *op, const char *what, const ddx_tensor *t, ddx_dtype want) {
    if (t && t->dtype != want)
        return ddx_errorf(DDX_E_UNSUPPORTED, "%s on CUDA: %s is %s, expected %s", op, what, ddx_dtype_name(t->dtype),
                          ddx_dtype_name(want));
    return DDX_OK;
}

// n floats of scratch from the activation arena (the caller rewinds it).
static ddx_status norm_scratch(ddx_ctx *c, int64_t n, const char *what, float **out) {
    ddx_tensor *t = ddx_new(c, DDX_F32, 1, (int64_t[]){n > 0 ? n : 1});   // [n]
    if (!t)
        return ddx_errorf(DDX_E_NOMEM, "%s on CUDA: no activation-arena memory for %lld floats of scratch", what,
                          (long long)n);
    *out = ddx_f32(t);
    return DDX_OK;
}

static ddx_status norm_out_grad(const ddx_node *n, const ddx_tensor **dy) {
    *dy = n->out->grad;
    if (!*dy) return ddx_errorf(DDX_E_INTERNAL, "%s backward on CUDA: the output has no grad", ddx_op_name(n->op));
    return DDX_OK;
}

// ============================================================================================
// mse_loss, sum, mean -> [1] f32
// ============================================================================================

ddx_status ddx_cuda_mse_loss_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *a = n->in[0], *b = n->in[1];
    DDX_TRY(norm_same("mse_loss", "pred", a, DDX_F32));
    DDX_TRY(norm_same("mse_loss", "target", b, DDX_F32));
    DDX_TRY(norm_same("mse_loss", "the output", n->out, DDX_F32));
    const int64_t cnt = ddx_numel(a);
    if (cnt == 0 || ddx_numel(b) != cnt) return ddx_errorf(DDX_E_INTERNAL, "mse_loss on CUDA: empty or mismatched inputs");
    ddx_arena_mark mark = ddx_arena_mark_get(&c->act);
    float *scratch = NULL;
    DDX_TRY(norm_scratch(c, ddx_k_reduce_scratch_floats(), "mse_loss", &scratch));
    DDX_CUDA_CHECK(ddx_k_mse_fwd(ddx_f32(n->out), ddx_f32c(a), ddx_f32c(b), cnt, scratch, norm_stream(c)));
    return ddx_arena_rewind(&c->act, mark);
}

ddx_status ddx_cuda_mse_loss_bwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *a = n->in[0], *b = n->in[1], *dy;
    DDX_TRY(norm_out_grad(n, &dy));
    ddx_tensor *gp = ddx_in_grad(c, n, 0), *gt = ddx_in_grad(c, n, 1);
    if (c->status != DDX_OK) return c->status;
    if (!gp && !gt) return DDX_OK;
    DDX_TRY(norm_same("mse_loss backward", "pred", a, DDX_F32));
    DDX_TRY(norm_same("mse_loss backward", "target", b, DDX_F32));
    DDX_TRY(norm_same("mse_loss backward", "the output grad", dy, DDX_F32));
    DDX_TRY(norm_same("mse_loss backward", "the pred grad", gp, DDX_F32));
    DDX_TRY(norm_same("mse_loss backward", "the target grad", gt, DDX_F32));
    DDX_CUDA_CHECK(ddx_k_mse_bwd(gp ? ddx_f32(gp) : NULL, gt ? ddx_f32(gt) : NULL, ddx_f32c(a), ddx_f32c(b), ddx_f32c(dy),
                                 ddx_numel(a), norm_stream(c)));
    return DDX_OK;
}

// sum (mean = false) or mean of x into the [1] f32 output.
static ddx_status reduce_fwd(ddx_ctx *c, ddx_node *n, bool mean) {
    const char *op = ddx_op_name(n->op);
    const ddx_tensor *x = n->in[0];
    ddx_k_norm_dt dt = DDX_K_NORM_F32;
    DDX_TRY(norm_dt(op, x, &dt));
    DDX_TRY(norm_same(op, "the output", n->out, DDX_F32));
    const int64_t cnt = ddx_numel(x);
    if (cnt == 0) return ddx_errorf(DDX_E_INTERNAL, "%s on CUDA: the input is empty", op);
    ddx_arena_mark mark = ddx_arena_mark_get(&c->act);
    float *scratch = NULL;
    DDX_TRY(norm_scratch(c, ddx_k_reduce_scratch_floats(), op, &scratch));
    DDX_CUDA_CHECK(ddx_k_sum_div(ddx_f32(n->out), x->data, dt, cnt, mean ? (double)cnt : 1.0, scratch, norm_stream(c)));
    return ddx_arena_rewind(&c->act, mark);
}

static ddx_status reduce_bwd(ddx_ctx *c, ddx_node *n, bool mean) {
    const char *op = ddx_op_name(n->op);
    const ddx_tensor *x = n->in[0], *dy;
    DDX_TRY(norm_out_grad(n, &dy));
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (!g) return c->status;
    ddx_k_norm_dt dt = DDX_K_NORM_F32;
    DDX_TRY(norm_dt(op, g, &dt));
    DDX_TRY(norm_same(op, "the input grad", g, x->dtype));
    DDX_TRY(norm_same(op, "the output grad", dy, DDX_F32));
    const int64_t cnt = ddx_numel(x);
    DDX_CUDA_CHECK(ddx_k_scalar_grad_acc(g->data, dt, ddx_f32c(dy), cnt, mean ? (double)cnt : 1.0, norm_stream(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_sum_fwd(ddx_ctx *c, ddx_node *n) { return reduce_fwd(c, n, false); }
ddx_status ddx_cuda_sum_bwd(ddx_ctx *c, ddx_node *n) { return reduce_bwd(c, n, false); }
ddx_status ddx_cuda_mean_fwd(ddx_ctx *c, ddx_node *n) { return reduce_fwd(c, n, true); }
ddx_status ddx_cuda_mean_bwd(ddx_ctx *c, ddx_node *n) { return reduce_bwd(c, n, true); }
