// The loss and reduction family: mse_loss, sum and mean, each to one f32 value. Front-ends
// and the CPU fp32 reference, forward and backward side by side.

#include "op_impl.h"

// =========================================================================================
// Reductions to [1]: mse_loss (mean of squared difference), sum, mean. Accumulated in double
// so the loss does not depend on the summation order at fp32 precision.
// =========================================================================================
static ddx_tensor *reduce_front(ddx_ctx *c, ddx_op op, const char *name, ddx_tensor *x) {
    if (!ddx_op_ok(c, name, 1, (ddx_tensor *[]){x})) return NULL;
    if (!ddx_is_float_dtype(x->dtype))
        return ddx_op_fail(c, DDX_E_INPUT, "%s: input must be float, got %s", name, ddx_dtype_name(x->dtype));
    if (ddx_numel(x) == 0) return ddx_op_fail(c, DDX_E_INPUT, "%s: input is empty", name);
    return ddx_op_run(c, op, 1, (ddx_tensor *[]){x}, &(ddx_op_params){0}, DDX_F32, 1, (int64_t[]){1});
}

ddx_tensor *ddx_mse_loss(ddx_ctx *c, ddx_tensor *pred, ddx_tensor *target) {
    if (!ddx_op_ok(c, "mse_loss", 2, (ddx_tensor *[]){pred, target})) return NULL;
    char sp[DDX_SHAPE_BUF], st[DDX_SHAPE_BUF];
    if (pred->dtype != DDX_F32 || target->dtype != DDX_F32)
        return ddx_op_fail(c, DDX_E_INPUT, "mse_loss: pred and target must be f32, got %s and %s",
                           ddx_dtype_name(pred->dtype), ddx_dtype_name(target->dtype));
    if (!ddx_same_shape(pred, target))
        return ddx_op_fail(c, DDX_E_INPUT, "mse_loss: pred %s and target %s differ in shape",
                           ddx_shape_str(pred, sp, sizeof sp), ddx_shape_str(target, st, sizeof st));
    if (ddx_numel(pred) == 0) return ddx_op_fail(c, DDX_E_INPUT, "mse_loss: inputs are empty");
    return ddx_op_run(c, DDX_OP_MSE_LOSS, 2, (ddx_tensor *[]){pred, target}, &(ddx_op_params){0}, DDX_F32, 1,
                      (int64_t[]){1});
}

ddx_status ddx_cpu_mse_loss_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(ddx_cpu_need_f32("mse_loss", n->in[0], "pred"));
    DDX_TRY(ddx_cpu_need_f32("mse_loss", n->in[1], "target"));
    const int64_t cnt = ddx_numel(n->in[0]);
    const float *a = ddx_f32c(n->in[0]), *b = ddx_f32c(n->in[1]);
    double acc = 0.0;
    for (int64_t i = 0; i < cnt; i++) {
        const double d = (double)a[i] - (double)b[i];
        acc += d * d;
    }
    ddx_f32(n->out)[0] = (float)(acc / (double)cnt);
    return DDX_OK;
}

ddx_status ddx_cpu_mse_loss_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *gp = ddx_in_grad(c, n, 0), *gt = ddx_in_grad(c, n, 1);
    const int64_t cnt = ddx_numel(n->in[0]);
    const float *a = ddx_f32c(n->in[0]), *b = ddx_f32c(n->in[1]);
    const float k = (float)(2.0 * (double)ddx_f32c(n->out->grad)[0] / (double)cnt);
    float *dp = gp ? ddx_f32(gp) : NULL, *dt = gt ? ddx_f32(gt) : NULL;
    for (int64_t i = 0; i < cnt; i++) {
        const float g = k * (a[i] - b[i]);
        if (dp) dp[i] += g;
        if (dt) dt[i] -= g;
    }
    return DDX_OK;
}

ddx_tensor *ddx_sum(ddx_ctx *c, ddx_tensor *x) { return reduce_front(c, DDX_OP_SUM, "sum", x); }
ddx_tensor *ddx_mean(ddx_ctx *c, ddx_tensor *x) { return reduce_front(c, DDX_OP_MEAN, "mean", x); }

// Eight independent double accumulators: a single one is a chain of dependent adds (one
// element per add latency, ~5 GB/s); lanes let GCC vectorise without reassociating anything
// itself, and the result differs from the sequential double sum only by double roundings.
#define SUM_LANES 8
static double sum_f32(const ddx_tensor *x) {
    const float *p = ddx_f32c(x);
    const int64_t cnt = ddx_numel(x), body = cnt - cnt % SUM_LANES;
    double lane[SUM_LANES] = {0};
    for (int64_t i = 0; i < body; i += SUM_LANES)
        for (int j = 0; j < SUM_LANES; j++) lane[j] += p[i + j];
    double acc = 0.0;
    for (int j = 0; j < SUM_LANES; j++) acc += lane[j];
    for (int64_t i = body; i < cnt; i++) acc += p[i];
    return acc;
}

// Both reductions broadcast one scalar back: dx += dy * w.
static void add_scalar_grad(ddx_tensor *g, float v) {
    float *d = ddx_f32(g);
    const int64_t cnt = ddx_numel(g);
    for (int64_t i = 0; i < cnt; i++) d[i] += v;
}

ddx_status ddx_cpu_sum_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(ddx_cpu_need_f32("sum", n->in[0], "input"));
    ddx_f32(n->out)[0] = (float)sum_f32(n->in[0]);
    return DDX_OK;
}

ddx_status ddx_cpu_sum_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (g) add_scalar_grad(g, ddx_f32c(n->out->grad)[0]);
    return DDX_OK;
}

ddx_status ddx_cpu_mean_fwd(ddx_ctx *c, ddx_node *n) {
    (void)c;
    DDX_TRY(ddx_cpu_need_f32("mean", n->in[0], "input"));
    ddx_f32(n->out)[0] = (float)(sum_f32(n->in[0]) / (double)ddx_numel(n->in[0]));
    return DDX_OK;
}

ddx_status ddx_cpu_mean_bwd(ddx_ctx *c, ddx_node *n) {
    ddx_tensor *g = ddx_in_grad(c, n, 0);
    if (g) add_scalar_grad(g, (float)((double)ddx_f32c(n->out->grad)[0] / (double)ddx_numel(n->in[0])));
    return DDX_OK;
}
