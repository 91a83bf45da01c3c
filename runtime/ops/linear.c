// linear: the front-end and the CPU reference, forward and backward side by side. x [..., In]
// against a PyTorch-layout weight [Out, In]: the direct case of conv2d's GEMM job
// (runtime/ops/gemm.h).
#include <limits.h>
#include <string.h>

#include "op_impl.h"
#include "ops/gemm.h"
#include "threads.h"

// ---- linear ------------------------------------------------------------------------------

ddx_tensor *ddx_linear(ddx_ctx *c, ddx_tensor *x, ddx_tensor *w, ddx_tensor *bias) {
    if (!ddx_op_ok(c, "linear", 2, (ddx_tensor *[]){x, w})) return NULL;
    char xs[64], ws[64];
    ddx_shape_str(x, xs, sizeof xs);
    ddx_shape_str(w, ws, sizeof ws);
    if (w->ndim != 2 || w->shape[0] < 1 || w->shape[1] < 1)
        return ddx_op_fail(c, DDX_E_INPUT, "linear: weight %s must be 2-D [Out, In] (PyTorch layout)", ws);
    if (x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
        return ddx_op_fail(c, DDX_E_INPUT, "linear: input %s must end in In = %lld to match weight %s [Out, In]", xs,
                           (long long)w->shape[1], ws);
    if (w->shape[0] > INT_MAX || w->shape[1] > INT_MAX)
        return ddx_op_fail(c, DDX_E_UNSUPPORTED, "linear: weight %s is too large for a BLAS GEMM", ws);
    if (w->dtype != x->dtype)
        return ddx_op_fail(c, DDX_E_INPUT, "linear: weight dtype %s differs from input dtype %s",
                           ddx_dtype_name(w->dtype), ddx_dtype_name(x->dtype));
    if (x->dtype != DDX_F32 && x->dtype != DDX_BF16)
        return ddx_op_fail(c, DDX_E_INPUT, "linear: dtype %s is not a float type", ddx_dtype_name(x->dtype));
    if (!ddx_gemm_bias_ok(c, "linear", "Out", bias, w, x)) return NULL;
    int64_t shape[DDX_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = w->shape[0];
    ddx_op_params op;
    memset(&op, 0, sizeof op);
    return ddx_op_run(c, DDX_OP_LINEAR, 3, (ddx_tensor *[]){x, w, bias}, &op, x->dtype, x->ndim, shape);
}

// linear is conv2d's direct case: rows of x against the [Out, In] weight.
static gemm_job linear_job(const ddx_node *n) {
    gemm_job j;
    memset(&j, 0, sizeof j);
    const ddx_tensor *xt = n->in[0], *wt = n->in[1];
    j.g.K = wt->shape[1];
    j.g.Co = wt->shape[0];
    j.g.rows = ddx_numel(xt) / j.g.K;
    j.g.direct = true;
    j.unit = 1;
    const int64_t T = ddx_threads_count();
    j.chunk = (j.g.rows + T - 1) / T;
    if (j.chunk > DDX_GEMM_MAX_ROWS) j.chunk = DDX_GEMM_MAX_ROWS;
    if (j.chunk < 1) j.chunk = 1;
    j.x = ddx_f32c(xt);   // [rows, In]
    j.w = ddx_f32c(wt);   // [Out, In]
    return j;
}

ddx_status ddx_cpu_linear_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(ddx_gemm_check_f32(n, "linear"));
    gemm_job j = linear_job(n);
    j.b = n->in[2] ? ddx_f32c(n->in[2]) : NULL;   // [Out]
    j.y = ddx_f32(n->out);                         // [rows, Out]
    ddx_parallel_for(j.g.rows, ddx_gemm_fwd_range, &j);
    return DDX_OK;
}

ddx_status ddx_cpu_linear_bwd(ddx_ctx *c, ddx_node *n) {
    DDX_TRY(ddx_gemm_check_f32(n, "linear"));
    if (!n->out->grad) return ddx_errorf(DDX_E_INTERNAL, "linear backward: output has no gradient");
    gemm_job j = linear_job(n);
    j.dy = ddx_f32c(n->out->grad);              // [rows, Out]
    ddx_tensor *gx = ddx_in_grad(c, n, 0);      // [..., In]
    ddx_tensor *gw = ddx_in_grad(c, n, 1);      // [Out, In]
    ddx_tensor *gb = ddx_in_grad(c, n, 2);      // [Out]
    if (j.g.rows == 0 || (!gx && !gw && !gb)) return DDX_OK;
    j.gx = gx ? ddx_f32(gx) : NULL;
    j.gw = gw ? ddx_f32(gw) : NULL;
    ddx_arena_mark mark = ddx_arena_mark_get(&c->act);
    DDX_TRY(ddx_gemm_bwd_scratch(c, &j, gw != NULL, gb != NULL, "linear backward"));
    ddx_gemm_bwd_run(&j, gb ? ddx_f32(gb) : NULL);
    return ddx_arena_rewind(&c->act, mark);
}
