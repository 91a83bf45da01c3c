// Host glue of the losses CUDA family: mse_loss, sum and mean to one f32 value. Semantics
// mirror the CPU reference (runtime/ops/losses.c): backward ACCUMULATES into whichever grads
// ddx_in_grad hands out; the scalar output grad is read on the device, never copied to the
// host. Scratch comes from the activation arena and is rewound when the call returns.
#include "cuda/check.h"
#include "cuda/ops/backend.h"
#include "kernels/losses.h"
#include "op_impl.h"

// ============================================================================================
// mse_loss, sum, mean -> [1] f32
// ============================================================================================

ddx_status ddx_cuda_mse_loss_fwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *a = n->in[0], *b = n->in[1];
    DDX_TRY(ddx_cuda_need_dtype("mse_loss", a, DDX_F32, "pred"));
    DDX_TRY(ddx_cuda_need_dtype("mse_loss", b, DDX_F32, "target"));
    DDX_TRY(ddx_cuda_need_dtype("mse_loss", n->out, DDX_F32, "the output"));
    const int64_t cnt = ddx_numel(a);
    if (cnt == 0 || ddx_numel(b) != cnt) return ddx_errorf(DDX_E_INTERNAL, "mse_loss on CUDA: empty or mismatched inputs");
    ddx_arena_mark mark = ddx_arena_mark_get(&c->act);
    float *scratch = NULL;
    DDX_TRY(ddx_cuda_scratch_f32(c, ddx_k_reduce_scratch_floats(), "mse_loss", &scratch));
    DDX_CUDA_CHECK(ddx_k_mse_fwd(ddx_f32(n->out), ddx_f32c(a), ddx_f32c(b), cnt, scratch, ddx_cuda_stream_of(c)));
    return ddx_arena_rewind(&c->act, mark);
}

ddx_status ddx_cuda_mse_loss_bwd(ddx_ctx *c, ddx_node *n) {
    const ddx_tensor *a = n->in[0], *b = n->in[1], *dy;
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    ddx_tensor *gp = ddx_in_grad(c, n, 0), *gt = ddx_in_grad(c, n, 1);
    if (c->status != DDX_OK) return c->status;
    if (!gp && !gt) return DDX_OK;
    DDX_TRY(ddx_cuda_need_dtype("mse_loss backward", a, DDX_F32, "pred"));
    DDX_TRY(ddx_cuda_need_dtype("mse_loss backward", b, DDX_F32, "target"));
    DDX_TRY(ddx_cuda_need_dtype("mse_loss backward", dy, DDX_F32, "the output grad"));
    DDX_TRY(ddx_cuda_need_dtype("mse_loss backward", gp, DDX_F32, "the pred grad"));
    DDX_TRY(ddx_cuda_need_dtype("mse_loss backward", gt, DDX_F32, "the target grad"));
    DDX_CUDA_CHECK(ddx_k_mse_bwd(gp ? ddx_f32(gp) : NULL, gt ? ddx_f32(gt) : NULL, ddx_f32c(a), ddx_f32c(b), ddx_f32c(dy),
                                 ddx_numel(a), ddx_cuda_stream_of(c)));
    return DDX_OK;
}

// sum (mean = false) or mean of x into the [1] f32 output.
static ddx_status reduce_fwd(ddx_ctx *c, ddx_node *n, bool mean) {
    const char *op = ddx_op_name(n->op);
    const ddx_tensor *x = n->in[0];
    ddx_k_norm_dt dt = DDX_K_NORM_F32;
    DDX_TRY(ddx_cuda_k_dt(op, x, &dt));
    DDX_TRY(ddx_cuda_need_dtype(op, n->out, DDX_F32, "the output"));
    const int64_t cnt = ddx_numel(x);
    if (cnt == 0) return ddx_errorf(DDX_E_INTERNAL, "%s on CUDA: the input is empty", op);
    ddx_arena_mark mark = ddx_arena_mark_get(&c->act);
    float *scratch = NULL;
    DDX_TRY(ddx_cuda_scratch_f32(c, ddx_k_reduce_scratch_floats(), op, &scratch));
    DDX_CUDA_CHECK(ddx_k_sum_div(ddx_f32(n->out), x->data, dt, cnt, mean ? (double)cnt : 1.0, scratch, ddx_cuda_stream_of(c)));
    return ddx_arena_rewind(&c->act, mark);
}

static ddx_status reduce_bwd(ddx_ctx *c, ddx_node *n, bool mean) {
    const char *op = ddx_op_name(n->op);
    const ddx_tensor *x = n->in[0], *dy;
    DDX_TRY(ddx_cuda_out_grad(n, &dy));
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (!g) return c->status;
    ddx_k_norm_dt dt = DDX_K_NORM_F32;
    DDX_TRY(ddx_cuda_k_dt(op, g, &dt));
    DDX_TRY(ddx_cuda_need_dtype(op, g, x->dtype, "the input grad"));
    DDX_TRY(ddx_cuda_need_dtype(op, dy, DDX_F32, "the output grad"));
    const int64_t cnt = ddx_numel(x);
    DDX_CUDA_CHECK(ddx_k_scalar_grad_acc(g->data, dt, ddx_f32c(dy), cnt, mean ? (double)cnt : 1.0, ddx_cuda_stream_of(c)));
    return DDX_OK;
}

ddx_status ddx_cuda_sum_fwd(ddx_ctx *c, ddx_node *n) { return reduce_fwd(c, n, false); }
ddx_status ddx_cuda_sum_bwd(ddx_ctx *c, ddx_node *n) { return reduce_bwd(c, n, false); }
ddx_status ddx_cuda_mean_fwd(ddx_ctx *c, ddx_node *n) { return reduce_fwd(c, n, true); }
ddx_status ddx_cuda_mean_bwd(ddx_ctx *c, ddx_node *n) { return reduce_bwd(c, n, true); }
